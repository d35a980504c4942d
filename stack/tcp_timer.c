/* TCP timers: retransmission (RFC 6298), delayed ACK, persist, keepalive,
 * TIME_WAIT / FIN_WAIT_2 and cork.  Each is an absolute deadline in the
 * connection; stack.c keeps connections in a heap on the earliest one. */
#include "tcp.h"

/* RFC 6298 2.2-2.4 with Linux's bound: RTO = SRTT + max(4 RTTVAR, 200 ms). */
void xt_tcp_rtt_sample(struct xt_sock *s, uint32_t rtt_us)
{
	if (rtt_us == 0)
		rtt_us = 1;
	if (!s->srtt_us) {
		s->srtt_us = rtt_us;
		s->rttvar_us = rtt_us / 2;
	} else {
		uint32_t delta = s->srtt_us > rtt_us ? s->srtt_us - rtt_us : rtt_us - s->srtt_us;
		s->rttvar_us = (3 * s->rttvar_us + delta) / 4;
		s->srtt_us = (uint32_t)(((uint64_t)s->srtt_us * 7 + rtt_us) / 8);
	}
	uint64_t var = 4ull * s->rttvar_us;
	if (var < XT_RTO_MIN_US)
		var = XT_RTO_MIN_US;
	uint64_t rto = s->srtt_us + var;
	s->rto_us = rto > XT_RTO_MAX_US ? XT_RTO_MAX_US : (uint32_t)rto;
}

void xt_tcp_rearm_rto(struct xt_stack *st, struct xt_sock *s, xt_time_t now)
{
	xt_timer_set(st, s, XT_T_RTO, now + XT_US(s->rto_us));
}

/* RFC 6298 5.5: back off by doubling the RTO itself.  It stays doubled until
 * a valid RTT sample recomputes it (5.7, and Karn's algorithm), as Linux's
 * icsk_rto; backoff only counts the doublings (TCP_INFO, persist). */
static void back_off(struct xt_sock *s)
{
	uint64_t t = (uint64_t)s->rto_us * 2;
	s->rto_us = t > XT_RTO_MAX_US ? XT_RTO_MAX_US : (uint32_t)t;
	s->backoff++;
}

void xt_tcp_arm_keepalive(struct xt_stack *st, struct xt_sock *s, xt_time_t now)
{
	if (!s->keepalive || !xt_state_synchronized(s->state) || s->state == XT_TIME_WAIT) {
		xt_timer_clear(st, s, XT_T_KEEPALIVE);
		return;
	}
	xt_time_t base = s->last_rx > now ? now : s->last_rx;
	xt_time_t when = base + XT_SEC(s->probes_out ? s->keepintvl_s : s->keepidle_s);
	xt_timer_set(st, s, XT_T_KEEPALIVE, when > now ? when : now + XT_SEC(s->keepintvl_s));
}

/* TCP_USER_TIMEOUT: how long data may stay unacknowledged (RFC 5482). */
static bool user_timeout_expired(const struct xt_sock *s, xt_time_t now)
{
	return s->user_timeout_ms && s->retrans_stamp &&
	       now - s->retrans_stamp >= XT_MS(s->user_timeout_ms);
}

/* Linux tcp_write_err(): the soft error, if any, explains the timeout. */
static void write_err(struct xt_stack *st, struct xt_sock *s)
{
	st->cnt.tcp_timeouts++;
	xt_tcp_done(st, s, s->soft_err ? s->soft_err : ETIMEDOUT);
}

static bool on_rto_handshake(struct xt_stack *st, struct xt_sock *s, xt_time_t now)
{
	uint8_t limit = s->state == XT_SYN_SENT ? st->cfg.tcp_syn_retries : st->cfg.tcp_synack_retries;
	if (!s->retrans_stamp)
		s->retrans_stamp = now;
	if (s->retransmits >= limit || user_timeout_expired(s, now)) {
		if (s->state == XT_SYN_SENT) {
			st->cnt.tcp_attempt_fails++;
			write_err(st, s);
		} else {
			xt_tcp_done(st, s, 0); /* an embryonic child just goes */
		}
		return true;
	}
	s->retransmits++;
	back_off(s);
	if (s->state == XT_SYN_SENT)
		st->cnt.tcp_syn_retrans++;
	else
		st->cnt.tcp_synack_retrans++;
	xt_tcp_send_syn(st, s, now);
	xt_tcp_rearm_rto(st, s, now);
	return false;
}

static bool on_rto(struct xt_stack *st, struct xt_sock *s, xt_time_t now)
{
	if (s->state == XT_SYN_SENT || s->state == XT_SYN_RECV)
		return on_rto_handshake(st, s, now);
	if (s->snd_una == s->snd_max)
		return false; /* everything was acknowledged meanwhile */
	if (!s->retrans_stamp)
		s->retrans_stamp = now;
	if (s->retransmits >= st->cfg.tcp_retries2 || user_timeout_expired(s, now)) {
		write_err(st, s);
		return true;
	}
	st->cnt.tcp_rto++;
	/* Linux tcp_enter_loss(): ssthresh is cut once per loss episode; a
	 * repeated RTO of the same data only collapses cwnd again. */
	if (s->retransmits == 0)
		s->cc->on_rto(s);
	else
		s->cwnd = s->mss;
	s->in_recovery = 0;
	s->dupacks = 0;
	s->recover = s->snd_max; /* RFC 6582 4.1: no fast retransmit for old data */
	/* RFC 2018 8: a receiver may renege on SACKed data; after a second RTO
	 * in a row stop trusting the scoreboard (Linux: reneging detection). */
	if (s->retransmits > 0)
		xt_sack_clear(s);
	s->high_rxt = s->snd_una;
	s->rxt_track = false;
	s->retransmits++;
	back_off(s);
	xt_tcp_rearm_rto(st, s, now);
	xt_tcp_retransmit_head(st, s, true, now);
	return false;
}

static bool on_persist(struct xt_stack *st, struct xt_sock *s, xt_time_t now)
{
	if (!xt_state_synchronized(s->state) || xt_tcp_flight(s)) {
		s->probes_out = 0;
		return false;
	}
	if (s->snd_wnd) {
		/* RFC 1122 4.2.3.4: when the override timer expires, send as much
		 * as the offered window takes, small or not. */
		s->max_snd_wnd = s->snd_wnd;
		xt_tcp_output(st, s, now);
		if (xt_tcp_flight(s))
			return false;
	}
	/* RFC 1122 4.2.2.17: keep probing while the peer answers; give up after
	 * tcp_retries2 unanswered probes or the user timeout. */
	if (!s->retrans_stamp)
		s->retrans_stamp = now;
	if (s->probes_out >= st->cfg.tcp_retries2 || user_timeout_expired(s, now)) {
		write_err(st, s);
		return true;
	}
	st->cnt.tcp_persist_probes++;
	s->probes_out++;
	s->backoff++;
	xt_tcp_send_probe(st, s, now);
	uint64_t base = s->rto_us < XT_RTO_MIN_US ? XT_RTO_MIN_US : s->rto_us;
	uint64_t t = base << (s->backoff < 16 ? s->backoff : 16);
	if (t > XT_RTO_MAX_US)
		t = XT_RTO_MAX_US;
	xt_timer_set(st, s, XT_T_PERSIST, now + XT_US(t));
	return false;
}

static bool on_keepalive(struct xt_stack *st, struct xt_sock *s, xt_time_t now)
{
	if (!s->keepalive || !xt_state_synchronized(s->state) || s->state == XT_TIME_WAIT)
		return false;
	if (xt_tcp_flight(s) || s->sq.len) { /* the RTO watches a busy connection */
		xt_timer_set(st, s, XT_T_KEEPALIVE, now + XT_SEC(s->keepidle_s));
		return false;
	}
	xt_time_t idle = now - s->last_rx;
	if (idle < XT_SEC(s->keepidle_s) && !s->probes_out) {
		xt_timer_set(st, s, XT_T_KEEPALIVE, s->last_rx + XT_SEC(s->keepidle_s));
		return false;
	}
	bool ut = s->user_timeout_ms && s->probes_out && idle >= XT_MS(s->user_timeout_ms);
	if (s->probes_out >= s->keepcnt || ut) {
		xt_tcp_send_rst_sock(st, s, now);
		write_err(st, s);
		return true;
	}
	st->cnt.tcp_keepalive_probes++;
	s->probes_out++;
	xt_tcp_send_probe(st, s, now);
	xt_timer_set(st, s, XT_T_KEEPALIVE, now + XT_SEC(s->keepintvl_s));
	return false;
}

static bool on_2msl(struct xt_stack *st, struct xt_sock *s, xt_time_t now)
{
	/* TIME_WAIT over; or an orphan's FIN_WAIT_2 ran out of fin_timeout, which
	 * Linux (fin_timeout <= TIME_WAIT length) spends as a FIN_WAIT_2
	 * time-wait socket that expires silently. */
	(void)now;
	xt_tcp_done(st, s, 0);
	return true;
}

static bool on_delack(struct xt_stack *st, struct xt_sock *s, xt_time_t now)
{
	if (xt_state_synchronized(s->state) || s->state == XT_SYN_RECV) {
		/* no reply came to carry the ACK: the exchange is no longer
		 * ping-pong (Linux tcp_delack_timer_handler()) */
		s->pingpong = 0;
		st->cnt.tcp_delayed_acks++;
		xt_tcp_send_ack(st, s, now);
	}
	return false;
}

/* The cork ceiling passed: push the partial segment out (Linux's TCP_CORK
 * documentation: 200 ms). */
static bool on_cork(struct xt_stack *st, struct xt_sock *s, xt_time_t now)
{
	uint8_t cork = s->cork, more = s->more;
	s->cork = 0;
	s->more = 0;
	xt_tcp_output(st, s, now);
	s->cork = cork;
	s->more = 0;
	(void)more;
	return false;
}

typedef bool (*timer_fn)(struct xt_stack *, struct xt_sock *, xt_time_t);
static const timer_fn handlers[XT_T_NUM] = {
	[XT_T_RTO] = on_rto,
	[XT_T_DELACK] = on_delack,
	[XT_T_PERSIST] = on_persist,
	[XT_T_KEEPALIVE] = on_keepalive,
	[XT_T_2MSL] = on_2msl,
	[XT_T_CORK] = on_cork,
};

/* Runs every due timer of s.  A handler returns true when s is gone. */
void xt_tcp_timers(struct xt_stack *st, struct xt_sock *s, xt_time_t now)
{
	for (int i = 0; i < XT_T_NUM; i++) {
		if (s->tmr[i] > now)
			continue;
		xt_timer_clear(st, s, i);
		if (handlers[i](st, s, now))
			return;
	}
	xt_sock_wake(st, s);
}
