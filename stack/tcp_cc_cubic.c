/* CUBIC congestion control (RFC 9438), Linux's default.  Slow start as
 * RFC 5681; in congestion avoidance cwnd follows
 *   W_cubic(t) = C (t - K)^3 + W_max,  K = cbrt(W_max (1 - beta) / C)
 * or the Reno-friendly estimate W_est when that is larger (RFC 9438 4.3).
 * Windows are in segments inside the formulas, bytes in the socket. */
#include <math.h>

#include "tcp.h"

#define CUBIC_C 0.4
#define CUBIC_BETA 0.7

struct cubic {
	double w_max;      /* segments, before the last reduction */
	double w_last_max; /* for fast convergence (RFC 9438 4.7) */
	double k;          /* seconds */
	double w_est;      /* segments */
	xt_time_t epoch;   /* start of the current congestion-avoidance epoch, 0: none */
	double acc;        /* fractional segments of growth not yet applied */
};

_Static_assert(sizeof(struct cubic) <= sizeof(((struct xt_sock *)0)->cc_priv), "cubic state fits");

/* The state lives in the socket's cc_priv bytes; copied in and out so no
 * pointer of another type aliases them. */
static struct cubic load(const struct xt_sock *s)
{
	struct cubic c;
	memcpy(&c, s->cc_priv, sizeof(c));
	return c;
}

static void store(struct xt_sock *s, const struct cubic *c) { memcpy(s->cc_priv, c, sizeof(*c)); }

static void cubic_init(struct xt_sock *s)
{
	memset(s->cc_priv, 0, sizeof(s->cc_priv));
	s->cwnd = XT_INIT_CWND * (uint32_t)s->mss;
	s->ssthresh = UINT32_MAX / 2;
	s->ca_acc = 0;
}

static void epoch_start(struct xt_sock *s, struct cubic *c, xt_time_t now)
{
	double cwnd = (double)s->cwnd / s->mss;
	c->epoch = now ? now : 1;
	if (c->w_max < cwnd) { /* no reduction seen yet, or cwnd already above it */
		c->k = 0;
		c->w_max = cwnd;
	} else {
		c->k = cbrt(c->w_max * (1 - CUBIC_BETA) / CUBIC_C);
	}
	c->w_est = cwnd;
	c->acc = 0;
}

static void cubic_on_ack(struct xt_sock *s, uint32_t acked, xt_time_t now)
{
	if (s->cwnd < s->ssthresh) { /* slow start, RFC 5681 with ABC (L = 2) */
		s->cwnd += acked < 2u * s->mss ? acked : 2u * s->mss;
		return;
	}
	struct cubic cs = load(s), *c = &cs;
	if (!c->epoch)
		epoch_start(s, c, now);
	double segs = (double)acked / s->mss;
	double cwnd = (double)s->cwnd / s->mss;
	double rtt = s->srtt_us ? s->srtt_us / 1e6 : 0.1;
	double t = (double)(now - c->epoch) / 1e9;
	/* RFC 9438 4.3: Reno-friendly region, alpha = 3 (1 - beta) / (1 + beta) */
	c->w_est += 3.0 * (1 - CUBIC_BETA) / (1 + CUBIC_BETA) * segs / cwnd;
	double target = CUBIC_C * pow(t + rtt - c->k, 3) + c->w_max; /* 4.2: one RTT ahead */
	if (target < cwnd)
		target = cwnd;
	if (target > 1.5 * cwnd)
		target = 1.5 * cwnd;
	double grow = c->w_est > target ? c->w_est - cwnd : (target - cwnd) / cwnd * segs;
	if (grow > 0)
		c->acc += grow;
	if (c->acc >= 1) {
		uint32_t whole = (uint32_t)c->acc;
		c->acc -= whole;
		s->cwnd += whole * (uint32_t)s->mss;
	}
	store(s, c);
}

/* On loss: remember W_max (fast convergence, 4.7) and cut by beta (4.6). */
static uint32_t cubic_ssthresh(struct xt_sock *s)
{
	struct cubic cs = load(s), *c = &cs;
	double cwnd = (double)s->cwnd / s->mss;
	c->w_max = cwnd < c->w_last_max ? cwnd * (1 + CUBIC_BETA) / 2 : cwnd;
	c->w_last_max = cwnd;
	c->epoch = 0;
	store(s, c);
	double th = cwnd * CUBIC_BETA * s->mss;
	return th > 2.0 * s->mss ? (uint32_t)th : 2u * s->mss;
}

static void cubic_on_rto(struct xt_sock *s)
{
	s->ssthresh = cubic_ssthresh(s);
	s->cwnd = s->mss;
	s->ca_acc = 0;
}

/* A new epoch starts with the next ACK: no growth credited for idle time. */
static void cubic_on_idle(struct xt_sock *s)
{
	struct cubic c = load(s);
	c.epoch = 0;
	store(s, &c);
}

const struct xt_cc_ops xt_cc_cubic = {
	.name = "cubic",
	.init = cubic_init,
	.on_ack = cubic_on_ack,
	.ssthresh = cubic_ssthresh,
	.on_rto = cubic_on_rto,
	.on_idle = cubic_on_idle,
};

/* Modules by XT_CC_* number, for configuration and TCP_CONGESTION. */
const struct xt_cc_ops *xt_cc_get(int which)
{
	switch (which) {
	case XT_CC_RENO: return &xt_cc_newreno;
	case XT_CC_CUBIC: return &xt_cc_cubic;
	default: return NULL;
	}
}
