/* TCP output: building segments, the send loop (windows, Nagle, cork), ACKs,
 * RSTs and probes. */
#include "tcp.h"

uint32_t xt_tcp_ts_now(const struct xt_sock *s, xt_time_t now)
{
	/* 1 kHz timestamp clock as Linux; a per-connection offset (RFC 7323 5.4). */
	return (uint32_t)(now / 1000000u) + s->ts_offset;
}

/* The MSS we announce: the interface MTU less IP and TCP headers (RFC 9293 3.7.1). */
uint16_t xt_tcp_wire_mss(const struct xt_stack *st, const struct xt_sock *s)
{
	uint32_t m = st->cfg.mtu - XT_IP_HLEN - XT_TCP_HLEN;
	if (s->user_mss && s->user_mss < m)
		m = s->user_mss;
	return (uint16_t)m;
}

/* Payload per segment: the smallest of the peer's MSS, the path MTU and
 * TCP_MAXSEG, less the options every segment carries (RFC 9293 3.7.1). */
void xt_tcp_update_mss(struct xt_stack *st, struct xt_sock *s)
{
	uint32_t m = s->peer_mss ? s->peer_mss : XT_DEFAULT_MSS;
	uint32_t path = (uint32_t)s->pmtu - XT_IP_HLEN - XT_TCP_HLEN;
	if (path < m)
		m = path;
	if (s->user_mss && s->user_mss < m)
		m = s->user_mss;
	if (s->ts_ok)
		m -= XT_TS_OPT_LEN;
	if (m < 64)
		m = 64;
	(void)st;
	s->mss = (uint16_t)m;
}

/* Payload that fits in the next segment: the MSS less the SACK blocks we
 * will attach (Linux tcp_current_mss()), so no segment outgrows the MTU. */
uint32_t xt_tcp_cur_mss(const struct xt_sock *s)
{
	if (!s->sack_ok || !s->nreass)
		return s->mss;
	uint32_t blocks = s->nreass < (s->ts_ok ? 3u : 4u) ? s->nreass : (s->ts_ok ? 3u : 4u);
	uint32_t opt = 4 + 8 * blocks;
	return s->mss > opt + 64 ? s->mss - opt : 64;
}

/* Window to announce, already scaled.  Receiver silly-window avoidance
 * (RFC 1122 4.2.3.3): the right edge moves only by min(buffer/2, MSS) or
 * more; and it never moves left (RFC 9293 3.8.6.2.2), so we round up.
 * SWS is a small window's disease, though: while the window announced is
 * still at least half of all we could offer, the edge follows the free
 * space by any amount, as Linux's does (__tcp_select_window() in units of
 * the scale).  A server whose program reads each request at once then
 * announces the same window field segment after segment, and a Linux peer
 * stays on its header-prediction fast path (tcp_rcv_established(): a
 * changed window sends every segment down the slow path). */
uint32_t xt_tcp_window_now(const struct xt_sock *s)
{
	uint32_t free = s->rq.buf ? xt_rq_room(s) : s->rcvbuf;
	uint32_t cur = SEQ_GT(s->rcv_adv, s->rcv_nxt) ? s->rcv_adv - s->rcv_nxt : 0;
	uint32_t maxw = 65535u << s->rcv_ws;
	uint32_t wnd = free < maxw ? free : maxw;
	uint32_t full = s->rcvbuf < maxw ? s->rcvbuf : maxw;
	uint32_t step = s->rcvbuf / 2 < s->adv_mss ? s->rcvbuf / 2 : s->adv_mss;
	if (wnd > cur && wnd - cur < step && cur < full / 2)
		wnd = cur;
	return wnd < cur ? cur : wnd;
}

uint32_t xt_tcp_select_window(struct xt_sock *s)
{
	/* RFC 7323 2.4: SEG.WND = RCV.WND >> Rcv.Wind.Shift.  The truncation
	 * may pull the announced edge back by less than one scaling unit
	 * (appendix F); rcv_adv keeps the furthest edge announced, and data up
	 * to it is still accepted: it always fits in the buffer.  Rounding up
	 * instead (Linux) creeps past a hard buffer limit ACK after ACK. */
	uint32_t w = xt_tcp_window_now(s) >> s->rcv_ws;
	if (w > 65535)
		w = 65535;
	uint32_t edge = s->rcv_nxt + (w << s->rcv_ws);
	if (SEQ_GT(edge, s->rcv_adv) || w == 0)
		s->rcv_adv = edge; /* a zero window closes it for real (RFC 9293 3.8.6.2.2) */
	s->rcv_wup = s->rcv_nxt;
	return w;
}

static uint8_t *put_ts(uint8_t *o, const struct xt_sock *s, xt_time_t now)
{
	o[0] = XT_TCPOPT_NOP;
	o[1] = XT_TCPOPT_NOP;
	o[2] = XT_TCPOPT_TS;
	o[3] = 10;
	xt_wr32(o + 4, xt_tcp_ts_now(s, now));
	xt_wr32(o + 8, s->ts_recent);
	return o + 12;
}

/* SYN options in Linux's order: MSS, SACK-permitted + TS, NOP + WS. */
static uint8_t *put_syn_opts(uint8_t *o, const struct xt_stack *st, const struct xt_sock *s,
			     xt_time_t now)
{
	o[0] = XT_TCPOPT_MSS;
	o[1] = 4;
	xt_wr16(o + 2, s->adv_mss);
	o += 4;
	if (s->ts_ok) {
		if (s->sack_ok) {
			o[0] = XT_TCPOPT_SACK_PERM;
			o[1] = 2;
		} else {
			o[0] = XT_TCPOPT_NOP;
			o[1] = XT_TCPOPT_NOP;
		}
		o[2] = XT_TCPOPT_TS;
		o[3] = 10;
		xt_wr32(o + 4, xt_tcp_ts_now(s, now));
		xt_wr32(o + 8, s->state == XT_SYN_RECV ? s->ts_recent : 0);
		o += 12;
	} else if (s->sack_ok) {
		o[0] = XT_TCPOPT_NOP;
		o[1] = XT_TCPOPT_NOP;
		o[2] = XT_TCPOPT_SACK_PERM;
		o[3] = 2;
		o += 4;
	}
	if (s->ws_ok) {
		o[0] = XT_TCPOPT_NOP;
		o[1] = XT_TCPOPT_WSCALE;
		o[2] = 3;
		o[3] = s->rcv_ws;
		o += 4;
	}
	(void)st;
	return o;
}

/* SACK blocks for our out-of-order data, the most recent arrival first
 * (RFC 2018 4). */
static uint8_t *put_sack(uint8_t *o, const struct xt_sock *s)
{
	int max = s->ts_ok ? 3 : 4, n = 0, first = -1;
	for (int i = 0; i < s->nreass; i++)
		if (SEQ_LEQ(s->reass[i].start, s->sack_recent) && SEQ_LT(s->sack_recent, s->reass[i].end))
			first = i;
	uint8_t *b = o + 4;
	if (first >= 0) {
		xt_wr32(b, s->reass[first].start);
		xt_wr32(b + 4, s->reass[first].end);
		b += 8;
		n++;
	}
	for (int i = 0; i < s->nreass && n < max; i++) {
		if (i == first)
			continue;
		xt_wr32(b, s->reass[i].start);
		xt_wr32(b + 4, s->reass[i].end);
		b += 8;
		n++;
	}
	o[0] = XT_TCPOPT_NOP;
	o[1] = XT_TCPOPT_NOP;
	o[2] = XT_TCPOPT_SACK;
	o[3] = (uint8_t)(2 + 8 * n);
	return b;
}

/* Adds len bytes that start at an odd offset of the segment: their sum is
 * the byte-swapped sum they would have at an even one (RFC 1071 2(B)). */
static uint32_t csum_add_odd(uint32_t sum, const uint8_t *p, uint32_t len)
{
	uint32_t s = (uint16_t)~xt_csum_fold(xt_csum_add(0, p, len));
	return sum + (((s >> 8) | (s << 8)) & 0xffffu);
}

/* l4len counts the whole segment; with a gathered payload only the header is
 * in buf. */
static void finish_and_send(struct xt_stack *st, uint8_t *buf, uint32_t l4len, uint32_t src,
			    uint32_t dst, xt_time_t now)
{
	uint8_t *th = buf + xt_l4_off(st);
	xt_wr16(th + XT_TCP_CSUM_be16, 0);
	if (xt_tx_building_big(st) || st->cfg.tx_csum_offload == XT_TX_CSUM_PARTIAL) {
		/* TSO, or a backend that finishes checksums: the pseudo-header
		 * sum, which the device (or the segmentation, for each part)
		 * completes (Linux __tcp_v4_send_check, CHECKSUM_PARTIAL) */
		uint32_t sum = xt_csum_pseudo(src, dst, XT_IPPROTO_TCP, (uint16_t)l4len);
		xt_wr16(th + XT_TCP_CSUM_be16, (uint16_t)~xt_csum_fold(sum));
		st->build_csum_partial = true;
	} else if (st->cfg.tx_csum_offload == XT_TX_CSUM_NONE) {
		uint32_t pay = xt_tx_pay_len(st), l0 = st->build_pay_len[0];
		uint32_t sum = xt_csum_pseudo(src, dst, XT_IPPROTO_TCP, (uint16_t)l4len);
		sum = xt_csum_add(sum, th, l4len - pay); /* the header: a multiple of 4 */
		if (pay) {
			sum = xt_csum_add(sum, st->build_pay[0], l0);
			if (st->build_pay_len[1])
				sum = (l0 & 1u) ? csum_add_odd(sum, st->build_pay[1], st->build_pay_len[1])
						: xt_csum_add(sum, st->build_pay[1], st->build_pay_len[1]);
		}
		xt_wr16(th + XT_TCP_CSUM_be16, xt_csum_fold(sum));
	}
	st->cnt.tcp_tx_segs++;
	xt_ip_output(st, buf, l4len, src, dst, XT_IPPROTO_TCP, now);
}

/* Builds and sends one segment of connection s: seq, flags, and len payload
 * bytes taken from the send ring at seq.  Every segment but a bare SYN
 * carries the ACK and so settles any pending delayed ACK. */
static void tcp_xmit(struct xt_stack *st, struct xt_sock *s, uint32_t seq, uint8_t flags,
		     uint32_t len, xt_time_t now)
{
	uint32_t mss = xt_tcp_cur_mss(s);
	bool gather = len && st->cfg.tx_gather;
	uint8_t *buf = xt_tx_buf(st);
	assert(gather || len <= mss); /* TSO segments are gathered (send_data) */
	if (len > mss) {
		st->cnt.tcp_tso_segs++;
		st->build_gso = mss; /* cut into mss-sized parts by the backend */
	}
	uint8_t *th = buf + xt_l4_off(st);
	uint8_t *o = th + XT_TCP_HLEN;
	if (flags & XT_TH_SYN) {
		o = put_syn_opts(o, st, s, now);
	} else {
		if (s->ts_ok)
			o = put_ts(o, s, now);
		if (s->sack_ok && s->nreass && !(flags & XT_TH_RST))
			o = put_sack(o, s);
	}
	uint32_t hlen = (uint32_t)(o - th);
	xt_wr16(th + XT_TCP_SPORT_be16, s->lport);
	xt_wr16(th + XT_TCP_DPORT_be16, s->rport);
	xt_wr32(th + XT_TCP_SEQ_be32, seq);
	xt_wr32(th + XT_TCP_ACK_be32, (flags & XT_TH_ACK) ? s->rcv_nxt : 0);
	th[XT_TCP_OFF] = (uint8_t)((hlen / 4) << 4);
	th[XT_TCP_FLAGS] = flags;
	uint32_t w;
	if (flags & XT_TH_SYN) { /* RFC 7323 2.2: the window in a SYN is never scaled */
		uint32_t free = s->rcvbuf;
		w = free > 65535 ? 65535 : free;
		s->rcv_adv = s->rcv_nxt + w;
	} else {
		w = xt_tcp_select_window(s);
	}
	xt_wr16(th + XT_TCP_WIN_be16, (uint16_t)w);
	xt_wr16(th + XT_TCP_URP_be16, 0);
	if (gather) {
		/* in place: the batch points into the send ring until the
		 * next flush (see tx_ref_gen) */
		xt_ring_span(&s->sq, seq - s->snd_una, len, st->build_pay, st->build_pay_len);
		st->build_pay_key = s->sq.key;
		st->cnt.tcp_tx_gathered++;
		if (s->tx_ref_gen != st->tx_gen || SEQ_LT(seq, s->tx_ref_seq))
			s->tx_ref_seq = seq;
		s->tx_ref_gen = st->tx_gen;
	}
	if (len) {
		if (!gather)
			xt_ring_peek(&s->sq, seq - s->snd_una, th + hlen, len);
		st->cnt.tcp_tx_bytes += len;
		s->last_data_tx = now;
		if (s->bytes_received && now - s->last_data_rx < XT_DELACK_NS)
			s->pingpong = 1; /* a reply: Linux tcp_event_data_sent() */
	}
	if (flags & XT_TH_ACK) {
		s->ack_pending = 0;
		if (s->tmr[XT_T_DELACK] != XT_TIME_NEVER)
			xt_timer_clear(st, s, XT_T_DELACK);
	}
	uint32_t parts = len > mss ? (len + mss - 1) / mss : 1;
	s->segs_out += parts;
	st->cnt.tcp_tx_segs += parts - 1; /* finish_and_send counts one */
	finish_and_send(st, buf, hlen + len, s->lip, s->rip, now);
}

/* Segments without data carry the highest sequence number sent (Linux's
 * snd_nxt, our snd_max): after an RTO pulls snd_nxt back, an older number
 * would fall below the peer's window and the peer would discard the ACK. */
void xt_tcp_send_ack(struct xt_stack *st, struct xt_sock *s, xt_time_t now)
{
	tcp_xmit(st, s, s->snd_max, XT_TH_ACK, 0, now);
}

void xt_tcp_send_syn(struct xt_stack *st, struct xt_sock *s, xt_time_t now)
{
	uint8_t flags = s->state == XT_SYN_RECV ? XT_TH_SYN | XT_TH_ACK : XT_TH_SYN;
	tcp_xmit(st, s, s->iss, flags, 0, now);
	if (SEQ_LT(s->snd_max, s->iss + 1))
		s->snd_max = s->iss + 1;
	s->snd_nxt = s->iss + 1;
}

/* Zero-window probe and keepalive: an old sequence number (snd_una - 1)
 * with no data makes the peer answer with an ACK (Linux tcp_xmit_probe_skb). */
void xt_tcp_send_probe(struct xt_stack *st, struct xt_sock *s, xt_time_t now)
{
	tcp_xmit(st, s, s->snd_una - 1, XT_TH_ACK, 0, now);
}

void xt_tcp_send_rst_sock(struct xt_stack *st, struct xt_sock *s, xt_time_t now)
{
	st->cnt.tcp_rst_tx++;
	tcp_xmit(st, s, s->snd_max, XT_TH_RST | XT_TH_ACK, 0, now);
}

/* RST for a segment that has no connection (RFC 9293 3.10.7.1). */
void xt_tcp_send_rst_reply(struct xt_stack *st, const struct xt_seg *seg, xt_time_t now)
{
	if (seg->flags & XT_TH_RST)
		return;
	uint8_t *buf = xt_tx_buf(st);
	uint8_t *th = buf + xt_l4_off(st);
	memset(th, 0, XT_TCP_HLEN);
	xt_wr16(th + XT_TCP_SPORT_be16, seg->dport);
	xt_wr16(th + XT_TCP_DPORT_be16, seg->sport);
	if (seg->flags & XT_TH_ACK) {
		xt_wr32(th + XT_TCP_SEQ_be32, seg->ack);
		th[XT_TCP_FLAGS] = XT_TH_RST;
	} else {
		xt_wr32(th + XT_TCP_ACK_be32, seg->end_seq);
		th[XT_TCP_FLAGS] = XT_TH_RST | XT_TH_ACK;
	}
	th[XT_TCP_OFF] = (XT_TCP_HLEN / 4) << 4;
	st->cnt.tcp_rst_tx++;
	finish_and_send(st, buf, XT_TCP_HLEN, seg->dst, seg->src, now);
}

/* RFC 5961 7: challenge ACKs, limited per connection like Linux
 * (tcp_invalid_ratelimit) and per engine (XT_CHACK_PER_SEC). */
void xt_tcp_challenge_ack(struct xt_stack *st, struct xt_sock *s, xt_time_t now)
{
	if (s->last_oow_ack && now - s->last_oow_ack < XT_OOW_RATE_NS) {
		st->cnt.tcp_challenge_ack_limited++;
		return;
	}
	if (now / XT_SEC(1) != st->chack_second) {
		st->chack_second = now / XT_SEC(1);
		st->chack_count = 0;
	}
	if (++st->chack_count > XT_CHACK_PER_SEC) {
		st->cnt.tcp_challenge_ack_limited++;
		return;
	}
	s->last_oow_ack = now;
	st->cnt.tcp_challenge_ack++;
	xt_tcp_send_ack(st, s, now);
}

static void arm_rto_if_idle(struct xt_stack *st, struct xt_sock *s, xt_time_t now)
{
	if (s->tmr[XT_T_RTO] == XT_TIME_NEVER)
		xt_tcp_rearm_rto(st, s, now);
	if (s->tmr[XT_T_PERSIST] != XT_TIME_NEVER)
		xt_timer_clear(st, s, XT_T_PERSIST);
}

/* One data segment [seq, seq+len) (plus FIN when fin); accounts for
 * retransmission and RTT timing (Karn: never time a retransmission). */
static void send_data(struct xt_stack *st, struct xt_sock *s, uint32_t seq, uint32_t len, bool fin,
		      bool push, xt_time_t now)
{
	uint8_t flags = XT_TH_ACK | (push ? XT_TH_PSH : 0) | (fin ? XT_TH_FIN : 0);
	uint32_t end = seq + len + (fin ? 1 : 0);
	bool retrans = SEQ_LT(seq, s->snd_max);
	if (retrans) {
		st->cnt.tcp_retrans_segs++;
		s->total_retrans++;
	} else if (!s->rtt_pending && len) {
		s->rtt_pending = 1;
		s->rtt_seq = end;
		s->rtt_time = now;
	}
	tcp_xmit(st, s, seq, flags, len, now);
	if (SEQ_GT(end, s->snd_max))
		s->snd_max = end;
	arm_rto_if_idle(st, s, now);
}

/* Linux tcp_nagle_check() with Minshall's variant: a partial segment waits
 * while an earlier partial segment is unacknowledged. */
static bool nagle_blocks(const struct xt_sock *s)
{
	if (s->nodelay)
		return false;
	return SEQ_GT(s->snd_sml, s->snd_una) && SEQ_LEQ(s->snd_sml, s->snd_nxt);
}

/* RFC 5681 4.1 as Linux tcp_cwnd_restart(): after an idle period longer
 * than the RTO, halve cwnd per RTO elapsed, down to the initial window. */
static void restart_after_idle(struct xt_sock *s, xt_time_t now)
{
	uint32_t iw = XT_INIT_CWND * (uint32_t)s->mss;
	uint64_t idle = now - s->last_data_tx, rto = XT_US(s->rto_us);
	uint32_t cwnd = s->cwnd;
	while (idle > rto && cwnd > iw) {
		cwnd >>= 1;
		idle -= rto;
	}
	s->cwnd = cwnd > iw ? cwnd : (s->cwnd < iw ? s->cwnd : iw);
	if (s->cc->on_idle)
		s->cc->on_idle(s);
}

/* Sends what the windows, Nagle and cork allow (RFC 5681, RFC 1122 4.2.3.4). */
void xt_tcp_output(struct xt_stack *st, struct xt_sock *s, xt_time_t now)
{
	if (!xt_state_synchronized(s->state) || s->state == XT_TIME_WAIT || !s->sq.buf)
		return;
	if (!xt_tcp_flight(s) && s->last_data_tx && now - s->last_data_tx > XT_US(s->rto_us) &&
	    s->sq.len)
		restart_after_idle(s, now);
	/* snd_fin_seq, not snd_una + sq.len: once the FIN is acked that sum
	 * points past it, and a recomputed FIN would go out again. */
	uint32_t fin_seq = s->snd_fin_seq;
	uint32_t mss = xt_tcp_cur_mss(s);
	for (;;) {
		uint32_t off = s->snd_nxt - s->snd_una;
		if (s->fin_queued && SEQ_GT(s->snd_nxt, fin_seq))
			break; /* FIN already sent */
		if (SEQ_LT(s->snd_nxt, s->snd_max) && s->nsacked) {
			/* go-back-N after an RTO: never resend what the peer SACKed */
			uint32_t room;
			s->snd_nxt = xt_sack_skip(s, s->snd_nxt, &room);
			if (SEQ_GT(s->snd_nxt, s->snd_max))
				s->snd_nxt = s->snd_max;
			off = s->snd_nxt - s->snd_una;
			if (s->fin_queued && SEQ_GT(s->snd_nxt, fin_seq))
				break;
			if (room < mss)
				mss = room ? room : mss;
		}
		uint32_t avail = off < s->sq.len ? s->sq.len - off : 0;
		uint32_t flight = xt_tcp_pipe(s);
		uint32_t rwnd = SEQ_GT(s->snd_una + s->snd_wnd, s->snd_nxt) ? s->snd_una + s->snd_wnd - s->snd_nxt : 0;
		uint32_t cwnd = s->cwnd > flight ? s->cwnd - flight : 0;
		if (avail == 0) {
			/* A bare FIN needs one byte of window, as in Linux. */
			if (s->fin_queued && rwnd >= 1 && (cwnd || !flight)) {
				s->snd_nxt++; /* the FIN occupies one sequence number */
				send_data(st, s, s->snd_nxt - 1, 0, true, false, now);
			}
			break;
		}
		uint32_t len = avail < mss ? avail : mss;
		/* TSO: whole MSS-sized parts of new data in one segment, as far
		 * as both windows and the backend allow (Linux tcp_tso_autosize
		 * without the pacing part). */
		if (st->cfg.tso_max && st->cfg.tx_gather && len == mss && !s->in_recovery &&
		    !SEQ_LT(s->snd_nxt, s->snd_max)) {
			uint32_t room = avail < rwnd ? avail : rwnd;
			if (cwnd < room)
				room = cwnd;
			if (room > st->cfg.tso_max) /* fits one IPv4 datagram (xt_stack_set_tso_max) */
				room = st->cfg.tso_max;
			if (room >= 2 * mss)
				len = room / mss * mss;
		}
		if (len > rwnd) {
			/* Sender SWS avoidance (RFC 1122 4.2.3.4): a window-limited
			 * segment goes only if it is at least half the largest window. */
			if (rwnd == 0 || rwnd < s->max_snd_wnd / 2)
				break;
			len = rwnd;
		}
		/* cwnd counts whole segments (as Linux's packet count): never split
		 * a segment for it, but always allow one when nothing is in flight. */
		if (len > cwnd && flight)
			break;
		bool last = len == avail;
		bool fin = s->fin_queued && last && rwnd > len;
		bool retrans = SEQ_LT(s->snd_nxt, s->snd_max);
		if (len < mss && !s->fin_queued && !retrans) {
			if (s->cork || s->more) {
				/* Linux's 200 ms ceiling is its probe timer, armed by
				 * a push that sends nothing while nothing is in flight
				 * (tcp_check_probe_timer()) and replaced by the RTO
				 * timer when data goes out: it runs from the last such
				 * push (a write, or the ACK of the last segment). */
				if (s->tmr[XT_T_CORK] == XT_TIME_NEVER && !xt_tcp_flight(s))
					xt_timer_set(st, s, XT_T_CORK, now + XT_CORK_NS);
				break;
			}
			if (nagle_blocks(s))
				break;
		}
		if (len < mss)
			s->snd_sml = s->snd_nxt + len;
		if (s->tmr[XT_T_CORK] != XT_TIME_NEVER)
			xt_timer_clear(st, s, XT_T_CORK);
		uint32_t seq = s->snd_nxt;
		s->snd_nxt += len + (fin ? 1 : 0);
		send_data(st, s, seq, len, fin, last, now);
	}
	/* Data waits on a closed window with nothing in flight: probe it. */
	bool waiting = s->sq.len > xt_tcp_flight(s) || (s->fin_queued && !SEQ_GT(s->snd_nxt, fin_seq));
	if (waiting && xt_tcp_flight(s) == 0 && s->tmr[XT_T_RTO] == XT_TIME_NEVER &&
	    s->tmr[XT_T_PERSIST] == XT_TIME_NEVER && s->snd_wnd < mss && !s->cork && !s->more) {
		uint64_t base = s->rto_us < XT_RTO_MIN_US ? XT_RTO_MIN_US : s->rto_us;
		uint64_t t = base << (s->backoff < 10 ? s->backoff : 10);
		if (t > XT_RTO_MAX_US)
			t = XT_RTO_MAX_US;
		xt_timer_set(st, s, XT_T_PERSIST, now + XT_US(t));
	}
}

/* Octets in the network: RFC 6675 pipe during SACK recovery, else all
 * that was sent and not acknowledged. */
uint32_t xt_tcp_pipe(const struct xt_sock *s)
{
	if (s->in_recovery && s->sack_ok)
		return xt_sack_pipe(s);
	return xt_tcp_flight(s);
}

/* RFC 6675 5 (C): while the window allows, retransmit lost holes first,
 * then send new data. */
void xt_tcp_sack_send(struct xt_stack *st, struct xt_sock *s, xt_time_t now)
{
	uint32_t mss = xt_tcp_cur_mss(s), seq, len;
	for (int guard = 0; guard < 64; guard++) {
		uint32_t pipe = xt_sack_pipe(s);
		uint32_t unsent = s->sq.len > s->snd_max - s->snd_una ? s->sq.len - (s->snd_max - s->snd_una) : 0;
		uint32_t rwnd_room = SEQ_GT(s->snd_una + s->snd_wnd, s->snd_max) ? s->snd_una + s->snd_wnd - s->snd_max : 0;
		bool new_data = unsent && rwnd_room;
		if (s->cwnd < pipe || s->cwnd - pipe < mss || !xt_sack_next_seg(s, new_data, &seq, &len))
			break;
		uint32_t data_end = s->snd_una + s->sq.len;
		uint32_t dlen = SEQ_LT(seq, data_end) ? data_end - seq : 0;
		if (dlen > len)
			dlen = len;
		if (dlen > mss)
			dlen = mss;
		bool fin = s->fin_queued && seq + dlen == s->snd_fin_seq && SEQ_GT(seq + len, s->snd_fin_seq);
		if (!dlen && !fin)
			break;
		if (SEQ_GT(seq + dlen + (fin ? 1 : 0), s->high_rxt))
			s->high_rxt = seq + dlen + (fin ? 1 : 0);
		xt_sack_rxt_sent(s, seq);
		s->rtt_pending = 0; /* Karn */
		send_data(st, s, seq, dlen, fin, true, now);
	}
	xt_tcp_output(st, s, now);
}

/* Retransmits the first unacknowledged segment regardless of the windows
 * (fast retransmit, partial ACK, RTO).  With rewind, sending restarts from
 * there (RTO: RFC 6298 5.4 and go-back-N as Linux marks everything lost). */
void xt_tcp_retransmit_head(struct xt_stack *st, struct xt_sock *s, bool rewind, xt_time_t now)
{
	uint32_t outstanding = s->snd_max - s->snd_una;
	uint32_t mss = xt_tcp_cur_mss(s);
	uint32_t len = s->sq.len < mss ? s->sq.len : mss;
	if (len > outstanding)
		len = outstanding;
	if (s->nsacked && SEQ_LT(s->sacked[0].start, s->snd_una + len))
		len = s->sacked[0].start - s->snd_una; /* stop at SACKed data */
	uint32_t fin_seq = s->snd_fin_seq;
	bool fin = s->fin_queued && s->snd_una + len == fin_seq && SEQ_GT(s->snd_max, fin_seq);
	if (!len && !fin)
		return;
	s->rtt_pending = 0; /* Karn */
	if (rewind)
		s->snd_nxt = s->snd_una + len + (fin ? 1 : 0);
	send_data(st, s, s->snd_una, len, fin, true, now);
}
