/* TCP input: parse, demultiplex, and the per-state SEGMENT ARRIVES rules of
 * RFC 9293 3.10.7, with RFC 5961 mitigations and Linux's choices where the
 * RFC leaves room.  Incoming segments never produce errors: each is accepted,
 * answered (ACK/RST) or dropped with a counter. */
#include "tcp.h"

/* --- parsing --- */

/* Options (RFC 9293 3.2).  A structurally broken option list (length < 2 or
 * past the header) drops the segment; a known option with a wrong length is
 * ignored, as Linux does. */
static int parse_options(const uint8_t *o, uint32_t n, struct xt_seg *seg)
{
	uint32_t i = 0;
	while (i < n) {
		uint8_t kind = o[i];
		if (kind == XT_TCPOPT_EOL)
			break;
		if (kind == XT_TCPOPT_NOP) {
			i++;
			continue;
		}
		if (i + 1 >= n)
			return -1;
		uint8_t len = o[i + 1];
		if (len < 2 || i + len > n)
			return -1;
		const uint8_t *v = o + i + 2;
		switch (kind) {
		case XT_TCPOPT_MSS:
			if (len == 4 && (seg->flags & XT_TH_SYN)) {
				seg->has_mss = 1;
				seg->mss = xt_rd16(v);
			}
			break;
		case XT_TCPOPT_WSCALE:
			if (len == 3 && (seg->flags & XT_TH_SYN)) {
				seg->has_ws = 1;
				seg->ws = v[0] > XT_MAX_WSCALE ? XT_MAX_WSCALE : v[0]; /* RFC 7323 2.3 */
			}
			break;
		case XT_TCPOPT_SACK_PERM:
			if (len == 2 && (seg->flags & XT_TH_SYN))
				seg->sack_perm = 1;
			break;
		case XT_TCPOPT_TS:
			if (len == 10) {
				seg->has_ts = 1;
				seg->tsval = xt_rd32(v);
				seg->tsecr = xt_rd32(v + 4);
			}
			break;
		case XT_TCPOPT_SACK:
			if (len >= 10 && (len - 2) % 8 == 0 && !(seg->flags & XT_TH_SYN)) {
				seg->nsack = 0;
				for (uint32_t b = 0; b < (uint32_t)(len - 2) / 8 && b < 4; b++) {
					seg->sack[b][0] = xt_rd32(v + 8 * b);
					seg->sack[b][1] = xt_rd32(v + 8 * b + 4);
					seg->nsack++;
				}
			}
			break;
		default:
			break;
		}
		i += len;
	}
	return 0;
}

int xt_tcp_parse(const struct xt_ip_rx *ip, struct xt_seg *seg, struct xt_counters *cnt,
		 bool csum_verified)
{
	memset(seg, 0, sizeof(*seg));
	if (ip->l4len < XT_TCP_HLEN) {
		cnt->drop_tcp_short++;
		return -1;
	}
	const uint8_t *th = ip->l4;
	uint32_t off = (uint32_t)(th[XT_TCP_OFF] >> 4) * 4;
	if (off < XT_TCP_HLEN || off > ip->l4len) {
		cnt->drop_tcp_hdrlen++;
		return -1;
	}
	if (!csum_verified) {
		uint32_t sum = xt_csum_pseudo(ip->src, ip->dst, XT_IPPROTO_TCP, ip->l4len);
		if (xt_csum_fold(xt_csum_add(sum, th, ip->l4len)) != 0) {
			cnt->drop_tcp_csum++;
			return -1;
		}
	}
	seg->src = ip->src;
	seg->dst = ip->dst;
	seg->sport = xt_rd16(th + XT_TCP_SPORT_be16);
	seg->dport = xt_rd16(th + XT_TCP_DPORT_be16);
	seg->seq = xt_rd32(th + XT_TCP_SEQ_be32);
	seg->ack = xt_rd32(th + XT_TCP_ACK_be32);
	seg->flags = th[XT_TCP_FLAGS];
	seg->wnd = xt_rd16(th + XT_TCP_WIN_be16);
	if (parse_options(th + XT_TCP_HLEN, off - XT_TCP_HLEN, seg) < 0) {
		cnt->drop_tcp_opt++;
		return -1;
	}
	seg->data = th + off;
	seg->len = ip->l4len - off;
	seg->end_seq = seg->seq + seg->len + !!(seg->flags & XT_TH_SYN) + !!(seg->flags & XT_TH_FIN);
	return 0;
}

/* --- helpers --- */

static uint8_t choose_rcv_wscale(uint32_t rcvbuf)
{
	uint8_t ws = 0;
	while (ws < XT_MAX_WSCALE && (65535u << ws) < rcvbuf)
		ws++;
	return ws;
}

/* Window-scale, SACK and timestamps are used only when both ends offer them
 * (RFC 7323 1.3 and 3.2, RFC 2018 2). */
static void negotiate_options(struct xt_stack *st, struct xt_sock *s, const struct xt_seg *seg,
			      xt_time_t now)
{
	s->peer_mss = seg->has_mss ? seg->mss : XT_DEFAULT_MSS;
	s->ws_ok = s->ws_ok && seg->has_ws;
	if (s->ws_ok) {
		s->snd_ws = seg->ws;
	} else {
		s->snd_ws = 0;
		s->rcv_ws = 0;
	}
	s->sack_ok = s->sack_ok && seg->sack_perm;
	s->ts_ok = s->ts_ok && seg->has_ts;
	if (s->ts_ok) {
		s->ts_recent = seg->tsval;
		s->ts_recent_stamp = now;
	}
	xt_tcp_update_mss(st, s);
}

/* RFC 9293 3.10.7.4 first check, in Linux's form (tcp_sequence): the segment
 * must overlap [rcv_nxt, rcv_nxt + window], zero-length ones included. */
static bool seq_acceptable(const struct xt_sock *s, const struct xt_seg *seg)
{
	uint32_t wnd = SEQ_GT(s->rcv_adv, s->rcv_nxt) ? s->rcv_adv - s->rcv_nxt : 0;
	return !SEQ_LT(seg->end_seq, s->rcv_wup) && !SEQ_GT(seg->seq, s->rcv_nxt + wnd);
}

/* An out-of-window segment gets a duplicate ACK; pure ACKs and SYNs only
 * every 500 ms, to break ACK loops (Linux tcp_oow_rate_limited). */
static void oow_ack(struct xt_stack *st, struct xt_sock *s, const struct xt_seg *seg, xt_time_t now)
{
	bool data = seg->len || (seg->flags & XT_TH_FIN);
	if (!data && s->last_oow_ack && now - s->last_oow_ack < XT_OOW_RATE_NS)
		return;
	if (!data)
		s->last_oow_ack = now;
	xt_tcp_send_ack(st, s, now);
}

static void update_ts_recent(struct xt_sock *s, const struct xt_seg *seg, xt_time_t now)
{
	/* RFC 7323 4.3: remember TSval of a segment that covers rcv_wup. */
	if (s->ts_ok && seg->has_ts && SEQ_LEQ(seg->seq, s->rcv_wup) &&
	    (int32_t)(seg->tsval - s->ts_recent) >= 0) {
		s->ts_recent = seg->tsval;
		s->ts_recent_stamp = now;
	}
}

/* RFC 7323 5.3 PAWS, with the 24-day idle rule. */
static bool paws_reject(const struct xt_sock *s, const struct xt_seg *seg, xt_time_t now)
{
	if (!s->ts_ok || !seg->has_ts || (seg->flags & XT_TH_RST))
		return false;
	if ((int32_t)(seg->tsval - s->ts_recent) >= 0)
		return false;
	return now - s->ts_recent_stamp < XT_SEC(24ull * 24 * 3600);
}

/* --- connection establishment --- */

static void establish(struct xt_stack *st, struct xt_sock *s, const struct xt_seg *seg, xt_time_t now)
{
	s->snd_wnd = (uint32_t)seg->wnd << ((seg->flags & XT_TH_SYN) ? 0 : s->snd_ws);
	s->max_snd_wnd = s->snd_wnd;
	s->snd_wl1 = seg->seq;
	s->snd_wl2 = seg->ack;
	if (s->retransmits == 0 && s->rtt_time)
		xt_tcp_rtt_sample(s, (uint32_t)((now - s->rtt_time) / 1000));
	s->rtt_pending = 0;
	s->retransmits = 0;
	s->backoff = 0;
	s->retrans_stamp = 0;
	xt_timer_clear(st, s, XT_T_RTO);
	s->cc->init(s);
	s->recover = s->iss; /* RFC 6582 3.2 step 1 */
	s->ever_connected = 1;
	s->last_rx = now;
	st->cnt.tcp_conn_established++;
	/* closed or shut down while the handshake was in flight: FIN goes next */
	if (s->fin_queued)
		s->snd_fin_seq = s->snd_una + s->sq.len;
	xt_tcp_set_state(st, s, s->fin_queued ? XT_FIN_WAIT1 : XT_ESTABLISHED);
	xt_tcp_arm_keepalive(st, s, now);
}

/* A connection socket for a listener's peer, inheriting the listener's
 * options; addresses, options and receive sequence from the segment. */
static void child_setup(struct xt_stack *st, struct xt_sock *l, const struct xt_seg *seg, struct xt_sock *c)
{
	c->lip = seg->dst;
	c->lport = seg->dport;
	c->rip = seg->src;
	c->rport = seg->sport;
	c->parent = l;
	c->reuseaddr = l->reuseaddr;
	c->keepalive = l->keepalive;
	c->nodelay = l->nodelay;
	c->rcvbuf = l->rcvbuf;
	c->sndbuf = l->sndbuf;
	c->rcvlowat = l->rcvlowat;
	c->linger = l->linger;
	c->keepidle_s = l->keepidle_s;
	c->keepintvl_s = l->keepintvl_s;
	c->keepcnt = l->keepcnt;
	c->user_timeout_ms = l->user_timeout_ms;
	c->user_mss = l->user_mss;
	c->cc = l->cc;
	c->ws_ok = st->cfg.tcp_window_scaling;
	c->sack_ok = st->cfg.tcp_sack;
	c->ts_ok = st->cfg.tcp_timestamps;
	c->rcv_ws = c->ws_ok ? choose_rcv_wscale(c->rcvbuf) : 0;
	c->adv_mss = xt_tcp_wire_mss(st, c);
}

static struct xt_sock *child_new(struct xt_stack *st, struct xt_sock *l, const struct xt_seg *seg)
{
	struct xt_sock *c = xt_sock_new(st);
	if (c)
		child_setup(st, l, seg, c);
	return c;
}

/* SYN queue full: answer with a cookie and keep no state (Linux
 * tcp_conn_request with want_cookie). */
static void send_cookie(struct xt_stack *st, struct xt_sock *l, const struct xt_seg *seg, xt_time_t now)
{
	struct xt_sock tmp, *c = &tmp;
	xt_sock_init(st, c);
	child_setup(st, l, seg, c);
	uint16_t mss;
	c->iss = xt_syncookie_make(st, seg, &mss, now);
	negotiate_options(st, c, seg, now);
	if (c->ts_ok) {
		uint32_t ts_now = (uint32_t)(now / 1000000u);
		c->ts_offset = xt_syncookie_ts(ts_now, seg, c->ws_ok, c->sack_ok) - ts_now;
	}
	c->irs = seg->seq;
	c->rcv_nxt = seg->seq + 1;
	c->snd_una = c->snd_max = c->iss;
	c->state = XT_SYN_RECV;
	c->parent = NULL;
	xt_tcp_send_syn(st, c, now); /* the cookie is the only state kept */
	l->synq_overflow_t = now;
	st->cnt.tcp_syncookies_sent++;
}

/* A SYN for a listener: a SYN_RECV child, a cookie, or a counted drop
 * (Linux tcp_conn_request: the SYN is dropped while the accept queue is full). */
static void listen_syn(struct xt_stack *st, struct xt_sock *l, const struct xt_seg *seg, xt_time_t now)
{
	if (l->aq_len > l->backlog) {
		st->cnt.drop_tcp_listen_overflow++;
		return;
	}
	if (st->cfg.tcp_syncookies == 2 || l->synq_len >= l->backlog) {
		if (st->cfg.tcp_syncookies)
			send_cookie(st, l, seg, now);
		else
			st->cnt.drop_tcp_synq_full++;
		return;
	}
	struct xt_sock *c = child_new(st, l, seg);
	if (!c) {
		st->cnt.drop_tcp_no_mem++;
		return;
	}
	negotiate_options(st, c, seg, now);
	c->irs = seg->seq;
	c->rcv_nxt = seg->seq + 1;
	c->rcv_wup = c->rcv_nxt;
	c->iss = xt_tcp_isn(st, c->lip, c->lport, c->rip, c->rport, now);
	c->ts_offset = (uint32_t)(c->iss * 2654435761u);
	c->snd_una = c->iss;
	c->snd_max = c->iss;
	c->snd_wnd = seg->wnd;
	c->state = XT_SYN_RECV;
	xt_ehash_insert(st, c);
	xt_synq_add(l, c);
	st->cnt.tcp_passive_opens++;
	c->rtt_time = now;
	xt_tcp_send_syn(st, c, now);
	xt_tcp_rearm_rto(st, c, now);
}

static void synchronized_input(struct xt_stack *st, struct xt_sock *s, struct xt_seg *seg, xt_time_t now);

/* An ACK for a listener may complete a cookie handshake (Linux
 * cookie_v4_check); cookies are honoured only for two minutes after the
 * listener last sent one.  Returns false when it is no valid cookie. */
static bool cookie_ack(struct xt_stack *st, struct xt_sock *l, struct xt_seg *seg, xt_time_t now)
{
	if (!st->cfg.tcp_syncookies || !l->synq_overflow_t || now - l->synq_overflow_t > XT_SEC(120))
		return false;
	uint16_t mss = xt_syncookie_check(st, seg, now);
	if (!mss) {
		st->cnt.tcp_syncookies_failed++;
		return false;
	}
	st->cnt.tcp_syncookies_recv++;
	if (l->aq_len > l->backlog) {
		st->cnt.drop_tcp_listen_overflow++;
		return true;
	}
	struct xt_sock *c = child_new(st, l, seg);
	if (!c || xt_sock_bufs_alloc(st, c) < 0) {
		st->cnt.drop_tcp_no_mem++;
		if (c)
			xt_sock_free(st, c);
		return true;
	}
	int peer_ws = -1;
	bool sack = false;
	c->ts_ok = c->ts_ok && seg->has_ts && seg->tsecr;
	if (c->ts_ok)
		xt_syncookie_opts(seg->tsecr, &peer_ws, &sack);
	c->ws_ok = c->ws_ok && peer_ws >= 0;
	c->snd_ws = c->ws_ok ? (uint8_t)peer_ws : 0;
	if (!c->ws_ok)
		c->rcv_ws = 0;
	c->sack_ok = c->sack_ok && sack;
	if (c->ts_ok) {
		c->ts_offset = seg->tsecr - (uint32_t)(now / 1000000u);
		c->ts_recent = seg->tsval;
		c->ts_recent_stamp = now;
	}
	c->peer_mss = mss;
	xt_tcp_update_mss(st, c);
	c->iss = seg->ack - 1;
	c->irs = seg->seq - 1;
	c->rcv_nxt = seg->seq;
	c->rcv_wup = c->rcv_nxt;
	c->rcv_adv = c->rcv_nxt + xt_tcp_window_now(c);
	c->snd_una = c->snd_nxt = c->snd_max = seg->ack;
	c->state = XT_SYN_RECV;
	xt_ehash_insert(st, c);
	st->cnt.tcp_passive_opens++;
	establish(st, c, seg, now);
	xt_bhash_insert(st, c);
	xt_acceptq_add(st, l, c);
	/* the ACK may carry data or FIN: process it as on any connection */
	if (seg->len || (seg->flags & XT_TH_FIN))
		synchronized_input(st, c, seg, now);
	return true;
}

/* Family mode: is the new connection seg asks for this engine's? */
static bool family_takes(struct xt_stack *st, const struct xt_seg *seg)
{
	return !st->cfg.syn_owner ||
	       st->cfg.syn_owner(st->cfg.syn_owner_ctx, seg->dst, seg->dport, seg->src, seg->sport);
}

/* Family mode: an ACK for a listener is some other engine's connection,
 * unless it completes a cookie this engine sent (checked only while cookies
 * are live, so other engines' traffic costs no owner lookup). */
static void family_listen_ack(struct xt_stack *st, struct xt_sock *l, struct xt_seg *seg, xt_time_t now)
{
	bool live = st->cfg.tcp_syncookies && l->synq_overflow_t && now - l->synq_overflow_t <= XT_SEC(120);
	if ((seg->flags & XT_TH_SYN) || !live || !family_takes(st, seg) || !cookie_ack(st, l, seg, now))
		st->cnt.drop_tcp_family++;
}

static void listen_input(struct xt_stack *st, struct xt_sock *l, struct xt_seg *seg, xt_time_t now)
{
	if (seg->flags & XT_TH_RST) {
		st->cnt.drop_tcp_bad_rst++;
		return;
	}
	if ((seg->flags & XT_TH_ACK) && st->family) {
		family_listen_ack(st, l, seg, now);
		return;
	}
	if (seg->flags & XT_TH_ACK) { /* no connection for it: RFC 9293 3.10.7.2 */
		if ((seg->flags & XT_TH_SYN) || !cookie_ack(st, l, seg, now)) {
			st->cnt.drop_tcp_no_socket++;
			xt_tcp_send_rst_reply(st, seg, now);
		}
		return;
	}
	if (!(seg->flags & XT_TH_SYN) || (seg->flags & XT_TH_FIN)) {
		st->cnt.drop_tcp_flags++;
		return;
	}
	if (st->family && !family_takes(st, seg)) {
		st->cnt.drop_tcp_family++; /* another engine of the family takes it */
		return;
	}
	listen_syn(st, l, seg, now);
}

/* Moves a child from the SYN queue to the accept queue (passive open done).
 * Returns false, leaving it in SYN_RECV, when the accept queue is full:
 * Linux drops that ACK and lets the SYN-ACK retransmission try again. */
static bool child_complete(struct xt_stack *st, struct xt_sock *c, const struct xt_seg *seg, xt_time_t now)
{
	struct xt_sock *l = c->parent;
	if (l && l->aq_len > l->backlog) {
		st->cnt.drop_tcp_listen_overflow++;
		c->acked_overflow = 1;
		return false;
	}
	if (xt_sock_bufs_alloc(st, c) < 0) {
		st->cnt.drop_tcp_no_mem++;
		return false;
	}
	c->snd_una = seg->ack;
	if (SEQ_LT(c->snd_nxt, c->snd_una))
		c->snd_nxt = c->snd_una;
	establish(st, c, seg, now);
	if (!l)
		return true;
	xt_bhash_insert(st, c); /* the child holds the port too (Linux inet_inherit_port) */
	xt_acceptq_add(st, l, c); /* from the SYN queue into the accept queue */
	return true;
}

/* RFC 9293 3.10.7.3 */
static void syn_sent_input(struct xt_stack *st, struct xt_sock *s, struct xt_seg *seg, xt_time_t now)
{
	bool has_ack = seg->flags & XT_TH_ACK;
	if (has_ack && (SEQ_LEQ(seg->ack, s->iss) || SEQ_GT(seg->ack, s->snd_max))) {
		st->cnt.drop_tcp_bad_ack++;
		xt_tcp_send_rst_reply(st, seg, now);
		return;
	}
	if (seg->flags & XT_TH_RST) {
		if (!has_ack) {
			st->cnt.drop_tcp_bad_rst++;
			return;
		}
		st->cnt.tcp_rst_rx++;
		st->cnt.tcp_attempt_fails++;
		xt_tcp_done(st, s, ECONNREFUSED);
		return;
	}
	if (!(seg->flags & XT_TH_SYN)) {
		st->cnt.drop_tcp_flags++;
		return;
	}
	s->irs = seg->seq;
	s->rcv_nxt = seg->seq + 1;
	s->rcv_wup = s->rcv_nxt;
	/* Our SYN's window was unscaled and anchored before we knew their ISN. */
	s->rcv_adv = s->rcv_nxt + (s->rcvbuf < 65535 ? s->rcvbuf : 65535);
	negotiate_options(st, s, seg, now);
	if (!has_ack) { /* simultaneous open (RFC 9293 3.5 figure 7) */
		xt_tcp_set_state(st, s, XT_SYN_RECV);
		s->snd_wnd = seg->wnd;
		xt_tcp_send_syn(st, s, now);
		xt_tcp_rearm_rto(st, s, now);
		return;
	}
	s->snd_una = seg->ack;
	establish(st, s, seg, now);
	s->ack_pending = 1;
	xt_tcp_send_ack(st, s, now);
	xt_tcp_output(st, s, now);
}

/* --- ACK processing --- */

/* RFC 6582 3.2 step 2 and RFC 5681 3.2 steps 2-4; with SACK, RFC 6675 5
 * steps 4.1-4.3 (cwnd = ssthresh, then the pipe decides what goes out). */
static void enter_recovery(struct xt_stack *st, struct xt_sock *s, xt_time_t now)
{
	st->cnt.tcp_fast_retrans++;
	s->ssthresh = s->cc->ssthresh(s);
	s->recover = s->snd_max;
	s->in_recovery = 1;
	s->high_rxt = s->snd_una;
	s->rescued = 0;
	s->rxt_track = false;
	if (s->sack_ok) {
		s->cwnd = s->ssthresh;
		xt_tcp_retransmit_head(st, s, false, now);
		xt_sack_rxt_sent(s, s->snd_una);
		s->high_rxt = s->snd_una + (s->sq.len < xt_tcp_cur_mss(s) ? s->sq.len : xt_tcp_cur_mss(s));
		if (s->nsacked && SEQ_LT(s->sacked[0].start, s->high_rxt))
			s->high_rxt = s->sacked[0].start;
		xt_tcp_sack_send(st, s, now);
		return;
	}
	s->cwnd = s->ssthresh + 3u * s->mss;
	xt_tcp_retransmit_head(st, s, false, now);
}

static void on_dupack(struct xt_stack *st, struct xt_sock *s, xt_time_t now)
{
	st->cnt.tcp_dupacks++;
	s->dupacks++;
	if (s->in_recovery) {
		if (s->sack_ok)
			xt_tcp_sack_send(st, s, now);
		else
			s->cwnd += s->mss; /* inflation, RFC 5681 3.2 step 4 */
		return;
	}
	/* RFC 6582 4.1: only when the ACK covers more than recover, so an RTO's
	 * go-back-N retransmissions do not trigger another reduction.  With
	 * SACK, RFC 6675 5 step 4: also when IsLost(HighACK + 1). */
	bool trigger = s->dupacks == 3 || (s->sack_ok && s->dupacks < 3 && xt_sack_head_lost(s));
	if (trigger && SEQ_GT(s->snd_una, s->recover))
		enter_recovery(st, s, now);
}

static void on_new_ack(struct xt_stack *st, struct xt_sock *s, uint32_t acked, xt_time_t now)
{
	if (s->in_recovery) {
		if (SEQ_GEQ(s->snd_una, s->recover)) { /* full ACK: RFC 6582 3.2 step 3 */
			uint32_t f = xt_tcp_flight(s) + s->mss;
			s->cwnd = s->ssthresh < f ? s->ssthresh : f;
			s->in_recovery = 0;
			s->dupacks = 0;
		} else if (s->sack_ok) { /* RFC 6675: the pipe drives retransmission */
			st->cnt.tcp_recovery_partial++;
			if (SEQ_LT(s->high_rxt, s->snd_una))
				s->high_rxt = s->snd_una;
			xt_tcp_sack_send(st, s, now);
		} else { /* partial ACK: step 4 */
			st->cnt.tcp_recovery_partial++;
			xt_tcp_retransmit_head(st, s, false, now);
			s->cwnd = s->cwnd > acked ? s->cwnd - acked : s->mss;
			if (acked >= s->mss)
				s->cwnd += s->mss;
		}
		return;
	}
	s->dupacks = 0;
	s->cc->on_ack(s, acked, now);
}

/* Returns false when the segment is to be dropped. */
static bool ack_input(struct xt_stack *st, struct xt_sock *s, const struct xt_seg *seg, xt_time_t now)
{
	if (SEQ_GT(seg->ack, s->snd_max)) { /* Linux drops without answering */
		st->cnt.drop_tcp_ack_unsent++;
		return false;
	}
	if (SEQ_LT(seg->ack, s->snd_una - s->max_snd_wnd)) { /* RFC 5961 5.2 */
		st->cnt.drop_tcp_old_ack++;
		xt_tcp_challenge_ack(st, s, now);
		return false;
	}
	s->last_ack_rx = now;
	s->probes_out = 0;
	/* RFC 7323 2.2: the window of a SYN segment is never scaled */
	uint32_t wnd = (uint32_t)seg->wnd << ((seg->flags & XT_TH_SYN) ? 0 : s->snd_ws);
	bool wnd_changed = false;
	/* RFC 9293 3.10.7.4: window update from newer segments only. */
	if (SEQ_LT(s->snd_wl1, seg->seq) || (s->snd_wl1 == seg->seq && SEQ_LEQ(s->snd_wl2, seg->ack))) {
		wnd_changed = wnd != s->snd_wnd;
		s->snd_wnd = wnd;
		if (wnd > s->max_snd_wnd)
			s->max_snd_wnd = wnd;
		s->snd_wl1 = seg->seq;
		s->snd_wl2 = seg->ack;
	}
	if (s->sack_ok && seg->nsack)
		xt_sack_input(st, s, seg);
	if (SEQ_LEQ(seg->ack, s->snd_una)) {
		/* RFC 5681 2: duplicate ACK */
		if (seg->ack == s->snd_una && !seg->len && !(seg->flags & (XT_TH_SYN | XT_TH_FIN)) &&
		    !wnd_changed && s->snd_una != s->snd_max) {
			if (s->in_recovery && s->sack_ok)
				xt_sack_lost_rxt(st, s);
			on_dupack(st, s, now);
		}
		return true;
	}
	uint32_t acked = seg->ack - s->snd_una;
	uint32_t data = acked > s->sq.len ? s->sq.len : acked;
	xt_tx_unref(st, s, s->snd_una + data);
	xt_ring_consume(&s->sq, data);
	xt_ring_rewind(&s->sq); /* xt_tx_unref above: no batched frame reads it */
	s->bytes_acked += data;
	s->snd_una = seg->ack;
	if (SEQ_LT(s->snd_nxt, s->snd_una))
		s->snd_nxt = s->snd_una;
	xt_sack_trim(s);
	/* RFC 7323 4 (RTTM): every ACK of new data that echoes our timestamp is
	 * an RTT sample, valid even for a retransmission.  The clock ticks in
	 * milliseconds, so below 2 ms the microsecond timed segment is better. */
	uint32_t ts_rtt = s->ts_ok && seg->has_ts && seg->tsecr ? xt_tcp_ts_now(s, now) - seg->tsecr : 0;
	if (ts_rtt >= 2 && ts_rtt < 60000) {
		xt_tcp_rtt_sample(s, ts_rtt * 1000);
		s->rtt_pending = 0;
	} else if (s->rtt_pending && SEQ_GEQ(seg->ack, s->rtt_seq)) {
		xt_tcp_rtt_sample(s, (uint32_t)((now - s->rtt_time) / 1000));
		s->rtt_pending = 0;
	}
	s->backoff = 0;
	s->retransmits = 0;
	s->retrans_stamp = 0;
	s->soft_err = 0;
	if (s->in_recovery && s->sack_ok)
		xt_sack_lost_rxt(st, s);
	on_new_ack(st, s, acked, now);
	if (s->snd_una == s->snd_max)
		xt_timer_clear(st, s, XT_T_RTO);
	else
		xt_tcp_rearm_rto(st, s, now); /* RFC 6298 5.3 */
	if (s->tmr[XT_T_PERSIST] != XT_TIME_NEVER && s->snd_wnd >= s->mss)
		xt_timer_clear(st, s, XT_T_PERSIST);
	return true;
}

static bool our_fin_acked(const struct xt_sock *s)
{
	return s->fin_queued && SEQ_GT(s->snd_una, s->snd_fin_seq) && xt_state_fin_out(s->state);
}

/* --- data and FIN --- */

static void reass_merge(struct xt_sock *s)
{
	/* Pull in ranges that now touch rcv_nxt. */
	while (s->nreass && SEQ_LEQ(s->reass[0].start, s->rcv_nxt)) {
		if (SEQ_GT(s->reass[0].end, s->rcv_nxt)) {
			uint32_t n = s->reass[0].end - s->rcv_nxt;
			s->rq.len += n;
			s->rcv_nxt += n;
		}
		memmove(&s->reass[0], &s->reass[1], (size_t)(s->nreass - 1) * sizeof(s->reass[0]));
		s->nreass--;
	}
}

/* Records [start, end) as held out of order; keeps the list sorted and merged. */
static bool reass_add(struct xt_sock *s, uint32_t start, uint32_t end)
{
	int i = 0;
	while (i < s->nreass && SEQ_LT(s->reass[i].end, start))
		i++;
	if (i < s->nreass && SEQ_LEQ(s->reass[i].start, end)) {
		/* overlaps or touches range i: widen it, then absorb followers */
		if (SEQ_LT(start, s->reass[i].start))
			s->reass[i].start = start;
		if (SEQ_GT(end, s->reass[i].end))
			s->reass[i].end = end;
		while (i + 1 < s->nreass && SEQ_LEQ(s->reass[i + 1].start, s->reass[i].end)) {
			if (SEQ_GT(s->reass[i + 1].end, s->reass[i].end))
				s->reass[i].end = s->reass[i + 1].end;
			memmove(&s->reass[i + 1], &s->reass[i + 2],
				(size_t)(s->nreass - i - 2) * sizeof(s->reass[0]));
			s->nreass--;
		}
		return true;
	}
	if (s->nreass == XT_REASS_MAX)
		return false;
	memmove(&s->reass[i + 1], &s->reass[i], (size_t)(s->nreass - i) * sizeof(s->reass[0]));
	s->reass[i].start = start;
	s->reass[i].end = end;
	s->nreass++;
	return true;
}

/* Linux's delayed-ACK rule: ACK at once in quick-ACK mode or when more than
 * one full segment is unacknowledged; otherwise within 40 ms.  Quick ACKs
 * are off in interactive (ping-pong) mode, entered when we send data
 * within the ACK timeout of data received (Linux tcp_event_data_sent()):
 * the reply carries the ACK, so an ACK of its own is a wasted segment. */
static void schedule_ack(struct xt_stack *st, struct xt_sock *s, xt_time_t now)
{
	s->ack_pending++;
	if (s->quickack && !s->pingpong) {
		s->quickack--;
		xt_tcp_send_ack(st, s, now);
	} else if (s->rcv_nxt - s->rcv_wup > s->rcv_mss) {
		xt_tcp_send_ack(st, s, now);
	} else if (s->tmr[XT_T_DELACK] == XT_TIME_NEVER) {
		xt_timer_set(st, s, XT_T_DELACK, now + XT_DELACK_NS);
	}
}

/* Queues payload; returns true when an immediate ACK is due (out of order,
 * or a hole was filled: RFC 5681 4.2). */
static bool data_input(struct xt_stack *st, struct xt_sock *s, const struct xt_seg *seg, xt_time_t now)
{
	uint32_t seq = seg->seq + !!(seg->flags & XT_TH_SYN);
	const uint8_t *p = seg->data;
	uint32_t len = seg->len;
	if (SEQ_LT(seq, s->rcv_nxt)) { /* drop what we already have */
		uint32_t dup = s->rcv_nxt - seq;
		if (dup >= len)
			return true;
		p += dup;
		len -= dup;
		seq = s->rcv_nxt;
	}
	uint32_t off = seq - s->rcv_nxt;
	uint32_t room = xt_rq_room(s);
	uint32_t wnd = SEQ_GT(s->rcv_adv, s->rcv_nxt) ? s->rcv_adv - s->rcv_nxt : 0;
	if (wnd < room)
		room = wnd; /* beyond the window we announced: Linux TCPZEROWINDOWDROP */
	if (off >= room) {
		st->cnt.drop_tcp_rcvbuf_full++;
		return true;
	}
	if (len > room - off)
		len = room - off; /* beyond our buffer: the peer will resend it */
	if (len > s->rcv_mss && len <= s->adv_mss)
		s->rcv_mss = (uint16_t)len;
	s->bytes_received += len;
	s->last_data_rx = now;
	st->cnt.tcp_rx_bytes += len;
	if (!s->quickack && s->bytes_received == len) { /* Linux: quick ACKs at start */
		uint32_t q = s->rcvbuf / (2u * s->adv_mss);
		s->quickack = (uint8_t)(q < XT_MAX_QUICKACKS ? q : XT_MAX_QUICKACKS);
	}
	if (off == 0) {
		bool had_holes = s->nreass != 0;
		if (!xt_rx_try_hold(st, s, p, len)) {
			if (s->held_bytes)
				xt_rx_compact(st, s); /* the stream's order: ring, then kept */
			xt_ring_write_at(&s->rq, 0, p, len);
			s->rq.len += len;
		}
		s->rcv_nxt += len;
		s->ev_new = 1; /* an edge for EPOLLET even if already readable */
		reass_merge(s);
		return had_holes;
	}
	st->cnt.tcp_ooo_segs++;
	if (s->held_bytes)
		xt_rx_compact(st, s); /* out-of-order room follows the ring's bytes */
	if (!reass_add(s, seq, seq + len)) {
		st->cnt.drop_tcp_reass_full++;
		return true;
	}
	xt_ring_write_at(&s->rq, off, p, len);
	s->sack_recent = seq;
	return true;
}

/* may_delay: the FIN came in order, with nothing else asking for an ACK
 * at once (a filled hole does). */
static void fin_input(struct xt_stack *st, struct xt_sock *s, xt_time_t now, bool may_delay)
{
	s->rcv_nxt++;
	s->fin_rcvd = 1;
	s->fin_ooo = 0;
	s->shut |= XT_RCV_SHUTDOWN;
	s->done = 1;
	switch (s->state) {
	case XT_SYN_RECV:
	case XT_ESTABLISHED:
		xt_tcp_set_state(st, s, XT_CLOSE_WAIT);
		/* Linux tcp_fin(): interactive mode, so the ACK is delayed and
		 * the program's close() usually carries it on its own FIN (a
		 * close in three segments, not four) */
		s->pingpong = 1;
		if (may_delay) {
			schedule_ack(st, s, now);
			return;
		}
		break;
	case XT_FIN_WAIT1:
		xt_tcp_set_state(st, s, XT_CLOSING);
		break;
	case XT_FIN_WAIT2:
		xt_tcp_send_ack(st, s, now);
		xt_tcp_enter_time_wait(st, s, now);
		return;
	default:
		break;
	}
	xt_tcp_send_ack(st, s, now);
}

/* Linux: data arriving after the application closed (or shut down reading
 * on) a socket in FIN_WAIT aborts the connection with RST. */
static bool abort_on_data(struct xt_stack *st, struct xt_sock *s, const struct xt_seg *seg, xt_time_t now)
{
	if (!(s->shut & XT_RCV_SHUTDOWN) || !seg->len || s->fin_rcvd)
		return false;
	if (s->state != XT_FIN_WAIT1 && s->state != XT_FIN_WAIT2)
		return false;
	if (!SEQ_GT(seg->end_seq - !!(seg->flags & XT_TH_FIN), s->rcv_nxt))
		return false;
	st->cnt.tcp_abort_on_data++;
	xt_tcp_send_rst_sock(st, s, now);
	xt_tcp_done(st, s, ECONNRESET);
	return true;
}

/* --- synchronized states (and SYN_RECV) --- */

static bool rst_input(struct xt_stack *st, struct xt_sock *s, const struct xt_seg *seg, xt_time_t now)
{
	/* RFC 5961 3.2: only an exact match resets; in-window gets a challenge. */
	bool exact = seg->seq == s->rcv_nxt;
	bool after_fin = seg->seq == s->rcv_nxt - 1 &&
			 (s->state == XT_CLOSE_WAIT || s->state == XT_LAST_ACK || s->state == XT_CLOSING);
	if (!exact && !after_fin) {
		xt_tcp_challenge_ack(st, s, now);
		return true;
	}
	st->cnt.tcp_rst_rx++;
	if (s->state == XT_SYN_RECV && s->parent) { /* back to LISTEN: forget the child */
		xt_tcp_done(st, s, 0);
		return true;
	}
	if (s->state == XT_ESTABLISHED || s->state == XT_CLOSE_WAIT)
		st->cnt.tcp_estab_resets++;
	/* Linux tcp_reset(): EPIPE in CLOSE_WAIT, ECONNREFUSED in SYN states. */
	int err = s->state == XT_CLOSE_WAIT ? EPIPE : s->state == XT_SYN_RECV ? ECONNREFUSED : ECONNRESET;
	xt_tcp_done(st, s, err);
	return true;
}

/* Steps after the ACK: our FIN's fate moves the state on (RFC 9293 3.10.7.4
 * fifth check).  Returns true when s is gone. */
static bool fin_acked_transitions(struct xt_stack *st, struct xt_sock *s, xt_time_t now)
{
	if (!our_fin_acked(s))
		return false;
	switch (s->state) {
	case XT_FIN_WAIT1:
		xt_tcp_set_state(st, s, XT_FIN_WAIT2);
		if (s->orphan)
			xt_timer_set(st, s, XT_T_2MSL, now + XT_MS(st->cfg.fin_timeout_ms));
		return false;
	case XT_CLOSING:
		xt_tcp_enter_time_wait(st, s, now);
		return false;
	case XT_LAST_ACK:
		xt_tcp_done(st, s, 0);
		return true;
	default:
		return false;
	}
}

static bool simultaneous_synack(const struct xt_sock *s, const struct xt_seg *seg)
{
	return s->state == XT_SYN_RECV && !s->parent && (seg->flags & XT_TH_ACK) && !seg->len &&
	       !(seg->flags & XT_TH_FIN) && seg->seq + 1 == s->rcv_nxt && seg->ack == s->snd_nxt;
}

static void synchronized_input(struct xt_stack *st, struct xt_sock *s, struct xt_seg *seg, xt_time_t now)
{
	s->segs_in++;
	if (paws_reject(s, seg, now)) {
		st->cnt.drop_tcp_paws++;
		oow_ack(st, s, seg, now);
		return;
	}
	if (!seq_acceptable(s, seg)) {
		st->cnt.drop_tcp_out_of_window++;
		if (seg->flags & XT_TH_RST)
			return;
		if (seg->flags & XT_TH_SYN)
			xt_tcp_challenge_ack(st, s, now);
		else
			oow_ack(st, s, seg, now);
		return;
	}
	if (seg->flags & XT_TH_RST) {
		rst_input(st, s, seg, now);
		return;
	}
	if ((seg->flags & XT_TH_SYN) && simultaneous_synack(s, seg)) {
		/* the peer's SYN-ACK in a simultaneous open: use its ACK (Linux
		 * tcp_validate_incoming lets exactly this one through) */
	} else if (seg->flags & XT_TH_SYN) {
		if (s->state == XT_SYN_RECV && seg->seq == s->irs) { /* retransmitted SYN */
			xt_tcp_send_syn(st, s, now);
			return;
		}
		xt_tcp_challenge_ack(st, s, now); /* RFC 5961 4.2 */
		return;
	}
	if (!(seg->flags & XT_TH_ACK)) {
		st->cnt.drop_tcp_flags++;
		return;
	}
	s->last_rx = now;
	if (s->state == XT_SYN_RECV) {
		if (SEQ_LEQ(seg->ack, s->iss) || SEQ_GT(seg->ack, s->snd_max)) {
			if (st->family && s->parent) {
				/* the peer completed its handshake with another engine
				 * of the family (ownership moved): forget ours quietly */
				st->cnt.drop_tcp_family++;
				xt_tcp_done(st, s, 0);
				return;
			}
			st->cnt.drop_tcp_bad_ack++;
			xt_tcp_send_rst_reply(st, seg, now);
			return;
		}
		if (!child_complete(st, s, seg, now))
			return;
	}
	update_ts_recent(s, seg, now);
	if (!ack_input(st, s, seg, now))
		return;
	if (fin_acked_transitions(st, s, now))
		return;
	if (s->state == XT_TIME_WAIT)
		return;
	if (abort_on_data(st, s, seg, now))
		return;
	bool ack_now = false;
	bool fin = seg->flags & XT_TH_FIN;
	if (seg->len && xt_state_accepts_data(s->state)) {
		uint32_t before = s->rcv_nxt;
		ack_now = data_input(st, s, seg, now);
		if (s->rcv_nxt != before && !ack_now && !fin)
			schedule_ack(st, s, now);
		/* the application hears of the data with the rest below: the
		 * one way out before that wake, into TIME_WAIT, wakes too */
	} else if (seg->len) {
		ack_now = true; /* data after their FIN: just ACK what we have */
	}
	if (fin && !s->fin_rcvd) {
		uint32_t fin_seq = seg->end_seq - 1;
		if (fin_seq == s->rcv_nxt) {
			fin_input(st, s, now, !ack_now && !s->nreass);
			ack_now = false;
		} else if (SEQ_GT(fin_seq, s->rcv_nxt)) {
			s->fin_ooo = 1;
			s->rcv_fin_seq = fin_seq;
			ack_now = true;
		}
	} else if (fin) {
		ack_now = true; /* retransmitted FIN: our ACK was lost */
	}
	if (s->fin_ooo && !s->fin_rcvd && s->rcv_nxt == s->rcv_fin_seq) {
		fin_input(st, s, now, false);
		ack_now = false;
	}
	if (s->state == XT_TIME_WAIT)
		return;
	if (ack_now)
		xt_tcp_send_ack(st, s, now);
	xt_tcp_output(st, s, now);
	xt_sock_wake(st, s);
}

/* --- TIME_WAIT (Linux tcp_timewait_state_process) --- */

/* Returns true when the segment should be handed to a listener (a new SYN
 * reusing the 4-tuple: RFC 9293 3.6.1 / RFC 6191). */
static bool timewait_input(struct xt_stack *st, struct xt_sock *s, const struct xt_seg *seg, xt_time_t now)
{
	if (seg->flags & XT_TH_RST) {
		st->cnt.tcp_rst_rx++;
		xt_tcp_done(st, s, 0);
		return false;
	}
	if ((seg->flags & (XT_TH_SYN | XT_TH_ACK)) == XT_TH_SYN) {
		bool newer = SEQ_GT(seg->seq, s->rcv_nxt) ||
			     (s->ts_ok && seg->has_ts && (int32_t)(seg->tsval - s->ts_recent) > 0);
		if (newer) {
			st->cnt.tcp_timewait_reuse++;
			xt_tcp_done(st, s, 0);
			return true;
		}
	}
	st->cnt.drop_tcp_timewait++;
	if ((seg->flags & XT_TH_FIN) && seg->end_seq == s->rcv_nxt) {
		/* Their FIN again: our last ACK was lost. Re-ACK, restart 2MSL. */
		xt_tcp_send_ack(st, s, now);
		xt_timer_set(st, s, XT_T_2MSL, now + XT_MS(st->cfg.time_wait_ms));
	} else if (seg->len || !seq_acceptable(s, seg)) {
		oow_ack(st, s, seg, now);
	}
	return false;
}

/* --- entry --- */

void xt_tcp_input(struct xt_stack *st, const struct xt_ip_rx *ip, xt_time_t now)
{
	struct xt_seg seg;
	if (xt_tcp_parse(ip, &seg, &st->cnt, st->rx_csum_ok) < 0)
		return;
	st->cnt.tcp_rx_segs++;
	if (!seg.sport || !seg.dport) {
		st->cnt.drop_tcp_bad_addr++;
		return;
	}
	if ((seg.flags & (XT_TH_SYN | XT_TH_RST)) == (XT_TH_SYN | XT_TH_RST)) {
		st->cnt.drop_tcp_flags++;
		return;
	}
	struct xt_sock *s = xt_ehash_lookup(st, seg.dst, seg.dport, seg.src, seg.sport);
	if (s && s->state == XT_TIME_WAIT) {
		if (!timewait_input(st, s, &seg, now))
			return;
		s = NULL;
	}
	if (!s) {
		struct xt_sock *l = xt_listener_lookup(st, &seg);
		if (l) {
			listen_input(st, l, &seg, now);
			return;
		}
		if (st->family) { /* another engine's connection: no RST (man/libxtcp.7) */
			st->cnt.drop_tcp_family++;
			return;
		}
		st->cnt.drop_tcp_no_socket++;
		xt_tcp_send_rst_reply(st, &seg, now);
		return;
	}
	if (s->state == XT_SYN_SENT)
		syn_sent_input(st, s, &seg, now);
	else
		synchronized_input(st, s, &seg, now);
}

/* RFC 5927 / Linux tcp_v4_err(): ICMP errors about our segments. */
void xt_tcp_icmp_error(struct xt_stack *st, uint32_t inner_src, uint32_t inner_dst,
		       const uint8_t *inner_l4, uint32_t inner_len, uint8_t type, uint8_t code,
		       uint16_t next_mtu, xt_time_t now)
{
	if (inner_len < 8)
		return;
	uint16_t sport = xt_rd16(inner_l4), dport = xt_rd16(inner_l4 + 2);
	uint32_t seq = xt_rd32(inner_l4 + 4);
	struct xt_sock *s = xt_ehash_lookup(st, inner_src, sport, inner_dst, dport);
	if (!s || s->state == XT_TIME_WAIT)
		return;
	/* RFC 5927 4.1: the quoted sequence number must be in flight. */
	if (SEQ_LT(seq, s->snd_una) || SEQ_GT(seq, s->snd_max))
		return;
	int err;
	if (type == XT_ICMP_DEST_UNREACH && code == XT_ICMP_FRAG_NEEDED) {
		/* RFC 1191 path MTU discovery: shrink and resend at once. */
		st->cnt.tcp_icmp_pmtu++;
		if (next_mtu >= XT_MIN_PMTU && next_mtu < s->pmtu) {
			s->pmtu = next_mtu;
			xt_tcp_update_mss(st, s);
			if (s->cwnd < s->mss)
				s->cwnd = s->mss;
			if (xt_state_synchronized(s->state))
				xt_tcp_retransmit_head(st, s, true, now);
		}
		return;
	}
	if (type == XT_ICMP_SOURCE_QUENCH)
		return; /* RFC 6633: ignored */
	if (type == XT_ICMP_DEST_UNREACH) {
		static const uint8_t fatal[16] = { 0, 0, 1, 1, 0, 0, 1, 1, 1, 1, 1, 0, 0, 1, 1, 1 };
		static const int errs[16] = { ENETUNREACH, EHOSTUNREACH, ENOPROTOOPT, ECONNREFUSED,
					      EMSGSIZE, EOPNOTSUPP, ENETUNREACH, EHOSTDOWN, ENONET,
					      ENETUNREACH, EHOSTUNREACH, ENETUNREACH, EHOSTUNREACH,
					      EHOSTUNREACH, EHOSTUNREACH, EHOSTUNREACH };
		if (code > 15)
			return;
		err = errs[code];
		(void)fatal;
	} else if (type == XT_ICMP_TIME_EXCEEDED) {
		err = EHOSTUNREACH;
	} else if (type == XT_ICMP_PARAMPROB) {
		err = EPROTO;
	} else {
		return;
	}
	if (s->state == XT_SYN_SENT || (s->state == XT_SYN_RECV && !s->parent)) {
		st->cnt.tcp_icmp_hard_err++;
		xt_tcp_done(st, s, err);
		return;
	}
	if (s->state == XT_SYN_RECV)
		return; /* an embryonic child: its SYN-ACK timer will give up */
	st->cnt.tcp_icmp_soft_err++;
	s->soft_err = err;
}
