/* NewReno congestion control (RFC 5681, RFC 6582), byte-counted (RFC 3465,
 * L = 2 SMSS in slow start). */
#include "tcp.h"

static void nr_init(struct xt_sock *s)
{
	s->cwnd = XT_INIT_CWND * (uint32_t)s->mss; /* RFC 6928 */
	s->ssthresh = UINT32_MAX / 2;
	s->ca_acc = 0;
}

static void nr_on_ack(struct xt_sock *s, uint32_t acked, xt_time_t now)
{
	(void)now;
	if (s->cwnd < s->ssthresh) { /* slow start (RFC 5681 3.1 eq. 2, ABC) */
		uint32_t inc = acked < 2u * s->mss ? acked : 2u * s->mss;
		s->cwnd += inc;
		return;
	}
	/* congestion avoidance: one SMSS per cwnd of data acknowledged (eq. 3) */
	s->ca_acc += acked;
	if (s->ca_acc >= s->cwnd) {
		s->ca_acc -= s->cwnd;
		s->cwnd += s->mss;
	}
}

static uint32_t nr_ssthresh(struct xt_sock *s)
{
	uint32_t flight = xt_tcp_flight(s);
	uint32_t half = flight / 2;
	return half > 2u * s->mss ? half : 2u * s->mss; /* RFC 5681 eq. 4 */
}

static void nr_on_rto(struct xt_sock *s)
{
	s->ssthresh = nr_ssthresh(s);
	s->cwnd = s->mss; /* loss window, RFC 5681 3.1 */
	s->ca_acc = 0;
}

const struct xt_cc_ops xt_cc_newreno = {
	.name = "reno",
	.init = nr_init,
	.on_ack = nr_on_ack,
	.ssthresh = nr_ssthresh,
	.on_rto = nr_on_rto,
};
