/* The sender's SACK scoreboard (RFC 2018) and SACK-based loss recovery
 * (RFC 6675): what the peer holds above snd_una, which holes are lost,
 * how much is in the network (pipe), and what to retransmit next. */
#include "tcp.h"

#define DUPTHRESH 3

static void drop_range(struct xt_sock *s, int i)
{
	memmove(&s->sacked[i], &s->sacked[i + 1], (size_t)(s->nsacked - i - 1) * sizeof(s->sacked[0]));
	s->nsacked--;
}

/* Inserts [l, r) into the sorted, merged scoreboard. */
static void add_range(struct xt_sock *s, uint32_t l, uint32_t r)
{
	int i = 0;
	while (i < s->nsacked && SEQ_LT(s->sacked[i].end, l))
		i++;
	if (i < s->nsacked && SEQ_LEQ(s->sacked[i].start, r)) {
		if (SEQ_LT(l, s->sacked[i].start))
			s->sacked[i].start = l;
		if (SEQ_GT(r, s->sacked[i].end))
			s->sacked[i].end = r;
		while (i + 1 < s->nsacked && SEQ_LEQ(s->sacked[i + 1].start, s->sacked[i].end)) {
			if (SEQ_GT(s->sacked[i + 1].end, s->sacked[i].end))
				s->sacked[i].end = s->sacked[i + 1].end;
			drop_range(s, i + 1);
		}
		return;
	}
	if (s->nsacked == XT_SACK_MAX) {
		if (i == XT_SACK_MAX)
			return; /* the highest block matters least: keep the lower ones */
		s->nsacked--;
	}
	memmove(&s->sacked[i + 1], &s->sacked[i], (size_t)(s->nsacked - i) * sizeof(s->sacked[0]));
	s->sacked[i].start = l;
	s->sacked[i].end = r;
	s->nsacked++;
}

/* Takes the SACK blocks of an acceptable ACK.  Blocks at or below the
 * cumulative ACK are D-SACKs (RFC 2883): counted, not used.  Blocks outside
 * (snd_una, snd_max] are ignored. */
void xt_sack_input(struct xt_stack *st, struct xt_sock *s, const struct xt_seg *seg)
{
	for (int b = 0; b < seg->nsack; b++) {
		uint32_t l = seg->sack[b][0], r = seg->sack[b][1];
		if (SEQ_LEQ(r, seg->ack) || (b == 0 && seg->nsack > 1 && SEQ_LEQ(seg->sack[1][0], l) &&
					      SEQ_LEQ(r, seg->sack[1][1]))) {
			st->cnt.tcp_dsack_rx++;
			continue;
		}
		if (SEQ_GEQ(l, r) || SEQ_GT(r, s->snd_max) || SEQ_LT(l, s->snd_una))
			continue;
		add_range(s, l, r);
	}
}

/* Forgets what the cumulative ACK now covers. */
void xt_sack_trim(struct xt_sock *s)
{
	while (s->nsacked && SEQ_LEQ(s->sacked[0].end, s->snd_una))
		drop_range(s, 0);
	if (s->nsacked && SEQ_LT(s->sacked[0].start, s->snd_una))
		s->sacked[0].start = s->snd_una;
}

void xt_sack_clear(struct xt_sock *s) { s->nsacked = 0; }

uint32_t xt_sack_bytes(const struct xt_sock *s)
{
	uint32_t n = 0;
	for (int i = 0; i < s->nsacked; i++)
		n += s->sacked[i].end - s->sacked[i].start;
	return n;
}

/* RFC 6675 IsLost(): DupThresh discontiguous SACKed ranges above seq, or
 * more than (DupThresh - 1) * SMSS bytes SACKed above it. */
static bool is_lost(const struct xt_sock *s, uint32_t seq)
{
	uint32_t bytes = 0, ranges = 0;
	for (int i = 0; i < s->nsacked; i++) {
		if (SEQ_LEQ(s->sacked[i].end, seq))
			continue;
		uint32_t from = SEQ_GT(s->sacked[i].start, seq) ? s->sacked[i].start : seq;
		bytes += s->sacked[i].end - from;
		ranges++;
	}
	return ranges >= DUPTHRESH || bytes > (DUPTHRESH - 1) * (uint32_t)s->mss;
}

bool xt_sack_head_lost(const struct xt_sock *s) { return s->nsacked && is_lost(s, s->snd_una); }

/* Calls fn for each hole [a, b) between snd_una and snd_max. */
#define FOR_EACH_HOLE(s, a, b, body)                                                   \
	do {                                                                           \
		uint32_t a = (s)->snd_una;                                             \
		for (int i_ = 0; i_ <= (s)->nsacked; i_++) {                           \
			uint32_t b = i_ < (s)->nsacked ? (s)->sacked[i_].start : (s)->snd_max; \
			if (SEQ_LT(a, b)) {                                            \
				body;                                                  \
			}                                                              \
			if (i_ < (s)->nsacked)                                         \
				a = (s)->sacked[i_].end;                               \
		}                                                                      \
	} while (0)

/* RFC 6675 SetPipe(): octets believed in the network.  A hole below
 * HighRxt was retransmitted (its original is lost): it counts once; above
 * HighRxt it counts unless it is lost. */
uint32_t xt_sack_pipe(const struct xt_sock *s)
{
	uint32_t pipe = 0;
	FOR_EACH_HOLE(s, a, b, {
		uint32_t split = SEQ_LT(s->high_rxt, a) ? a : SEQ_GT(s->high_rxt, b) ? b : s->high_rxt;
		pipe += split - a;
		if (SEQ_LT(split, b) && !is_lost(s, split))
			pipe += b - split;
	});
	return pipe;
}

/* For TCP_INFO: octets deemed lost and not yet retransmitted (Linux
 * lost_out), and retransmitted octets still unacknowledged (retrans_out). */
void xt_sack_loss_counts(const struct xt_sock *s, uint32_t *lost, uint32_t *retrans)
{
	*lost = *retrans = 0;
	if (!s->in_recovery)
		return;
	FOR_EACH_HOLE(s, a, b, {
		uint32_t split = SEQ_LT(s->high_rxt, a) ? a : SEQ_GT(s->high_rxt, b) ? b : s->high_rxt;
		*retrans += split - a;
		if (SEQ_LT(split, b) && s->nsacked && SEQ_LT(split, s->sacked[s->nsacked - 1].start) &&
		    is_lost(s, split))
			*lost += b - split;
	});
}

/* RFC 6675 NextSeg().  Rule 1: the first lost octets above HighRxt.  When
 * there is no new data to send (rule 2 fails): rule 3, the first unSACKed
 * octets above HighRxt below the highest SACKed one, even if not yet lost;
 * rule 4, once per recovery, a rescue retransmission of the last segment. */
bool xt_sack_next_seg(struct xt_sock *s, bool new_data, uint32_t *seq, uint32_t *len)
{
	if (!s->nsacked)
		return false;
	uint32_t top = s->sacked[s->nsacked - 1].start;
	FOR_EACH_HOLE(s, a, b, {
		uint32_t from = SEQ_GT(s->high_rxt, a) ? s->high_rxt : a;
		if (SEQ_LT(from, b) && SEQ_LT(from, top) && is_lost(s, from)) {
			*seq = from;
			*len = b - from;
			return true;
		}
	});
	if (new_data)
		return false;
	FOR_EACH_HOLE(s, a, b, {
		uint32_t from = SEQ_GT(s->high_rxt, a) ? s->high_rxt : a;
		if (SEQ_LT(from, b) && SEQ_LT(from, top)) {
			*seq = from;
			*len = b - from;
			return true;
		}
	});
	uint32_t tail = s->sacked[s->nsacked - 1].end;
	if (!s->rescued && SEQ_LT(tail, s->snd_max)) {
		s->rescued = 1;
		uint32_t n = s->snd_max - tail < s->mss ? s->snd_max - tail : s->mss;
		*seq = s->snd_max - n;
		*len = n;
		return true;
	}
	return false;
}

/* A retransmission of seq went out during SACK recovery: track it if it is
 * the oldest one whose fate is unknown. */
void xt_sack_rxt_sent(struct xt_sock *s, uint32_t seq)
{
	if (s->rxt_track)
		return;
	s->rxt_track = true;
	s->rxt_low = seq;
	s->rxt_fence = s->snd_max;
}

static bool is_sacked(const struct xt_sock *s, uint32_t seq)
{
	for (int i = 0; i < s->nsacked; i++)
		if (SEQ_LEQ(s->sacked[i].start, seq) && SEQ_LT(seq, s->sacked[i].end))
			return true;
	return false;
}

/* Lost retransmissions (what Linux's RACK, and tcp_mark_lost_retrans
 * before it, detects; RFC 6675 alone cannot and waits for the RTO): when
 * the peer SACKs data first sent after a retransmission went out while
 * that retransmission is still missing, it was lost too.  HighRxt moves back
 * so NextSeg() picks the hole again (holes above it whose retransmission
 * may still be in flight can be sent twice: the price of keeping one
 * watermark instead of a per-segment transmit time).  Returns true when a
 * loss was found; the caller's SACK send then repairs it. */
bool xt_sack_lost_rxt(struct xt_stack *st, struct xt_sock *s)
{
	if (!s->rxt_track)
		return false;
	if (SEQ_LT(s->rxt_low, s->snd_una) || is_sacked(s, s->rxt_low)) {
		s->rxt_track = false; /* delivered: the next retransmission is tracked */
		return false;
	}
	if (!s->nsacked || SEQ_LEQ(s->sacked[s->nsacked - 1].end, s->rxt_fence))
		return false;
	st->cnt.tcp_lost_retrans++;
	if (SEQ_LT(s->rxt_low, s->high_rxt))
		s->high_rxt = s->rxt_low;
	s->rxt_track = false;
	return true;
}

/* For go-back-N after an RTO: where the next unSACKed octet at or after seq
 * is, and how much may follow before SACKed data. */
uint32_t xt_sack_skip(const struct xt_sock *s, uint32_t seq, uint32_t *room)
{
	*room = UINT32_MAX;
	for (int i = 0; i < s->nsacked; i++) {
		if (SEQ_LEQ(s->sacked[i].end, seq))
			continue;
		if (SEQ_LEQ(s->sacked[i].start, seq)) {
			seq = s->sacked[i].end;
			continue;
		}
		*room = s->sacked[i].start - seq;
		break;
	}
	return seq;
}
