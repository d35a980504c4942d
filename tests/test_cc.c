/* Congestion control modules driven directly: NewReno (RFC 5681/6582) and
 * CUBIC (RFC 9438), in virtual time. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <string.h>

#include "tcp.h"

#define MSS 1000u

static uint32_t rtt_us = 10000;

static void sock_at(struct xt_sock *s, const struct xt_cc_ops *cc, uint32_t cwnd_segs)
{
	memset(s, 0, sizeof(*s));
	s->mss = MSS;
	s->srtt_us = rtt_us;
	s->cc = cc;
	cc->init(s);
	s->cwnd = cwnd_segs * MSS;
	s->ssthresh = 1; /* congestion avoidance */
}

/* ACKs one cwnd's worth, one segment at a time, over one RTT. */
static void ack_one_rtt(struct xt_sock *s, xt_time_t *now)
{
	uint32_t n = s->cwnd / MSS;
	for (uint32_t i = 0; i < n; i++)
		s->cc->on_ack(s, MSS, *now + XT_US(rtt_us) * i / n);
	*now += XT_US(rtt_us);
}

static void test_newreno_halves_flight_and_adds_one_mss_per_rtt(void **state)
{
	(void)state;
	struct xt_sock s;
	sock_at(&s, &xt_cc_newreno, 40);
	s.snd_una = 0;
	s.snd_nxt = 40 * MSS;
	assert_int_equal(xt_cc_newreno.ssthresh(&s), 20 * MSS);
	xt_time_t now = XT_SEC(10);
	ack_one_rtt(&s, &now);
	assert_int_equal(s.cwnd, 41 * MSS);
	ack_one_rtt(&s, &now);
	assert_int_equal(s.cwnd, 42 * MSS);
}

static void test_cubic_cuts_by_beta(void **state)
{
	(void)state;
	struct xt_sock s;
	sock_at(&s, &xt_cc_cubic, 100);
	assert_int_equal(xt_cc_cubic.ssthresh(&s), 70 * MSS);
}

/* After a loss at W_max = 100 segments on a long path (200 ms, where the
 * cubic curve is above the Reno-friendly line), cwnd climbs back concavely
 * to W_max around t = K = cbrt(W_max (1 - beta) / C) and then grows past it
 * convexly (RFC 9438 4.2). */
static void test_cubic_curve(void **state)
{
	(void)state;
	rtt_us = 200000;
	struct xt_sock s;
	sock_at(&s, &xt_cc_cubic, 100);
	s.ssthresh = xt_cc_cubic.ssthresh(&s);
	s.cwnd = s.ssthresh; /* 70 */
	double k = cbrt(100 * 0.3 / 0.4);
	xt_time_t now = XT_SEC(100), start = now;
	double at_half = 0, at_k = 0;
	while (now - start < XT_SEC(2 * k)) {
		ack_one_rtt(&s, &now);
		double t = (double)(now - start) / 1e9;
		if (!at_half && t >= k / 2)
			at_half = (double)s.cwnd / MSS;
		if (!at_k && t >= k)
			at_k = (double)s.cwnd / MSS;
	}
	double at_2k = (double)s.cwnd / MSS;
	/* W_cubic(K/2) = 100 - 0.4 (K/2)^3 = 100 - 3.75 = 96.25 */
	assert_true(at_half > 90 && at_half < 100);
	assert_true(at_k > 97 && at_k < 104);
	/* W_cubic(2K) = 100 + 0.4 K^3 = 130 */
	assert_true(at_2k > 120 && at_2k < 140);
	/* concave then convex: most of the way back in the first half */
	assert_true(at_half - 70 > 2 * (at_k - at_half));
	rtt_us = 10000;
}

/* On a short path the Reno-friendly estimate W_est = beta W_max +
 * 3 (1 - beta) / (1 + beta) t / RTT leads (RFC 9438 4.3): about 0.53
 * segments per RTT, i.e. 70 + 53 t at 10 ms. */
static void test_cubic_reno_friendly(void **state)
{
	(void)state;
	rtt_us = 10000;
	struct xt_sock s;
	sock_at(&s, &xt_cc_cubic, 100);
	s.ssthresh = xt_cc_cubic.ssthresh(&s);
	s.cwnd = s.ssthresh;
	xt_time_t now = XT_SEC(100);
	for (int r = 0; r < 100; r++) /* 1 s */
		ack_one_rtt(&s, &now);
	double w = (double)s.cwnd / MSS;
	assert_true(w > 118 && w < 128);
}

/* RFC 9438 4.7: a loss below the previous W_max lowers W_max further. */
static void test_cubic_fast_convergence(void **state)
{
	(void)state;
	struct xt_sock s;
	sock_at(&s, &xt_cc_cubic, 100);
	xt_cc_cubic.ssthresh(&s);
	s.cwnd = 80 * MSS; /* lost again before reaching 100 */
	uint32_t th = xt_cc_cubic.ssthresh(&s);
	assert_int_equal(th, 56 * MSS);
	double w_max; /* the first field of CUBIC's state */
	memcpy(&w_max, s.cc_priv, sizeof(w_max));
	assert_true(fabs(w_max - 80 * 1.7 / 2) < 1e-9);
}

/* CUBIC is the default, as on Linux; modules are found by name for
 * TCP_CONGESTION. */
static void test_cc_names_and_default(void **state)
{
	(void)state;
	struct xt_stack_cfg cfg;
	xt_stack_cfg_defaults(&cfg);
	assert_int_equal(cfg.tcp_congestion, XT_CC_CUBIC);
	assert_string_equal(xt_cc_name(XT_CC_RENO), "reno");
	assert_string_equal(xt_cc_name(XT_CC_CUBIC), "cubic");
	assert_int_equal(xt_cc_by_name("cubic"), XT_CC_CUBIC);
	assert_int_equal(xt_cc_by_name("bbr"), -1);
	assert_null(xt_cc_name(7));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_newreno_halves_flight_and_adds_one_mss_per_rtt),
		cmocka_unit_test(test_cubic_cuts_by_beta),
		cmocka_unit_test(test_cubic_curve),
		cmocka_unit_test(test_cubic_reno_friendly),
		cmocka_unit_test(test_cubic_fast_convergence),
		cmocka_unit_test(test_cc_names_and_default),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
