/* TCP timers and sender/receiver algorithms at segment level: retransmission
 * timeout (RFC 6298), SYN retries, delayed ACK (RFC 1122 4.2.3.2, RFC 5681
 * 4.2), Nagle (RFC 896 / RFC 1122 4.2.3.4), TCP_CORK, persist (RFC 9293
 * 3.8.6.1), keepalive (RFC 1122 4.2.3.6), fast retransmit and NewReno
 * (RFC 5681, RFC 6582), slow start (RFC 5681, RFC 6928).  Linux is the
 * reference where the RFCs leave room. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "seg.h"

#define T(fn) cmocka_unit_test_setup_teardown(fn, fx_setup, fx_teardown)

#define MSS 1460

static int collect(struct fx *fx, struct seg *segs, int max)
{
	int n = 0;
	struct seg tmp;
	while (fx_pending(fx)) {
		fx_pop(fx, n < max ? &segs[n] : &tmp);
		n++;
	}
	return n;
}

/* |a - b| <= tol */
static void assert_time_near(xt_time_t a, xt_time_t b, xt_time_t tol)
{
	xt_time_t d = a > b ? a - b : b - a;
	if (d > tol)
		fail_msg("time %.3f ms is not within %.3f ms of %.3f ms", a / 1e6, tol / 1e6, b / 1e6);
}

/* ---------------------------------------------------------------- */
/* retransmission timeout */

/* RFC 6298 2.1: initial RTO 1 s; 5.5: doubles per expiry.  Linux
 * tcp_syn_retries = 6: SYNs at 0, 1, 3, 7, 15, 31, 63 s; the attempt fails
 * with ETIMEDOUT at 127 s, without a RST. */
static void test_syn_retransmit_backoff_etimedout(void **state)
{
	struct fx *fx = *state;
	xt_time_t t = syn_sent(fx);
	fx_run(fx, t + XT_SEC(127) - XT_MS(100));
	static const int at[] = { 1, 3, 7, 15, 31, 63 };
	for (int i = 0; i < 6; i++) {
		const struct seg *s = expect_seg(fx, F_SYN, fx->our_iss, 0);
		assert_time_near(s->t, t + XT_SEC(at[i]), XT_MS(20));
		assert_true(s->opts & OPT_MSS);
	}
	expect_none(fx);
	expect_state(fx, XT_SYN_SENT);
	assert_true(fx_cnt(fx)->tcp_syn_retrans >= 6);
	fx_run(fx, t + XT_SEC(127) + XT_MS(100));
	expect_none(fx);
	expect_state(fx, XT_CLOSE);
	uint32_t ev = app_events(fx);
	assert_true(ev & XT_EV_ERR);
	assert_true(ev & XT_EV_HUP);
	assert_int_equal(app_getopt(fx, XT_SO_ERROR), ETIMEDOUT);
	fx_run(fx, t + XT_SEC(300));
	expect_none(fx);
}

/* The RTO after one RTT sample R is R + 4 * R/2 = 3R (RFC 6298 2.2; Linux
 * too, "make sure rto = 3*rtt"): 300 ms for the fixture's 100 ms handshake.
 * Unacknowledged data is retransmitted from SND.UNA at 300 ms, then after
 * 600, 1200, 2400 ms (RFC 6298 5.5). */
static void test_rto_backoff_doubles(void **state)
{
	struct fx *fx = *state;
	xt_time_t t = established(fx) + XT_MS(1);
	uint32_t snd = fx->our_nxt;
	assert_int_equal(app_send_n(fx, t, 100), 100);
	expect_data(fx, snd, 100);
	fx_run(fx, t + XT_MS(300 + 600 + 1200 + 2400) + XT_MS(50));
	xt_time_t prev = t, interval = XT_MS(300);
	for (int i = 0; i < 4; i++) {
		const struct seg *s = expect_data(fx, snd, 100);
		assert_time_near(s->t - prev, interval, XT_MS(5));
		prev = s->t;
		interval *= 2;
	}
	expect_none(fx);
	assert_true(fx_cnt(fx)->tcp_rto >= 4);
	struct xt_tcp_info ti = app_info(fx);
	assert_true(ti.retransmits >= 4 || ti.backoff >= 4);
	/* The ACK ends it. */
	peer_ack_all(fx, fx->now + XT_MS(1));
	fx_run(fx, fx->now + XT_SEC(20));
	expect_none(fx);
}

/* Karn (RFC 6298 3, 5): no RTT sample from a retransmitted segment, and the
 * backed-off RTO stays until a valid sample.  Without timestamps, an ACK
 * for a retransmitted segment must leave RTO at 600 ms: the next new
 * segment is retransmitted 600 ms after it was sent (a sample from the
 * original send would give ~486 ms, from the retransmission ~336 ms). */
static void test_karn_no_sample_from_retransmission(void **state)
{
	struct fx *fx = *state;
	xt_time_t t = established(fx) + XT_MS(1);
	assert_false(fx->ts_on);
	uint32_t snd = fx->our_nxt;
	app_send_n(fx, t, 100);
	expect_data(fx, snd, 100);
	fx_run(fx, t + XT_MS(300));
	const struct seg *r = expect_data(fx, snd, 100);
	assert_time_near(r->t, t + XT_MS(300), XT_MS(5));
	peer_ack(fx, t + XT_MS(301), snd + 100);
	expect_none(fx);
	xt_time_t t2 = t + XT_MS(400);
	app_send_n(fx, t2, 100);
	expect_data(fx, snd + 100, 100);
	fx_run(fx, t2 + XT_MS(2000));
	r = expect_data(fx, snd + 100, 100);
	assert_time_near(r->t, t2 + XT_MS(600), XT_MS(5));
}

/* With timestamps (RFC 7323 4, RTTM) the ACK of a retransmission echoes
 * the retransmission's own TSval: that is a valid sample, so the backed-off
 * RTO is recomputed at once (compare the Karn test above). */
static void test_rttm_sample_from_retransmission(void **state)
{
	struct fx *fx = *state;
	fx->peer.ts = true;
	xt_time_t t = established(fx) + XT_MS(1);
	assert_true(fx->ts_on);
	uint32_t snd = fx->our_nxt;
	app_send_n(fx, t, 100);
	expect_data(fx, snd, 100);
	fx_run(fx, t + XT_MS(300));
	expect_data(fx, snd, 100);
	peer_ack(fx, t + XT_MS(400), snd + 100); /* 100 ms after the retransmission */
	expect_none(fx);
	xt_time_t t2 = t + XT_MS(500);
	app_send_n(fx, t2, 100);
	expect_data(fx, snd + 100, 100);
	fx_run(fx, t2 + XT_MS(2000));
	const struct seg *r = expect_data(fx, snd + 100, 100);
	/* srtt ~100 ms, RTO = srtt + max(4 rttvar, 200 ms) ~ 300 ms; not 600 */
	assert_true(r->t >= t2 + XT_MS(250) && r->t <= t2 + XT_MS(400));
}

/* After samples of a tiny RTT the RTO bottoms out at 200 ms (Linux
 * TCP_RTO_MIN), not at RFC 6298's 1 s, and not below 200 ms. */
static void test_min_rto_200ms(void **state)
{
	struct fx *fx = *state;
	fx->peer.rtt = XT_MS(1);
	xt_time_t t = established(fx);
	for (int i = 0; i < 8; i++) {
		t += XT_MS(10);
		uint32_t snd = fx->our_nxt;
		app_send_n(fx, t, 100);
		expect_data(fx, snd, 100);
		peer_ack(fx, t + XT_MS(1), snd + 100);
		expect_none(fx);
	}
	t += XT_MS(10);
	uint32_t snd = fx->our_nxt;
	app_send_n(fx, t, 100);
	expect_data(fx, snd, 100);
	fx_run(fx, t + XT_MS(199));
	expect_none(fx);
	fx_run(fx, t + XT_MS(260));
	const struct seg *r = expect_data(fx, snd, 100);
	assert_in_range(r->t, t + XT_MS(200), t + XT_MS(250));
	assert_in_range(app_info(fx).rto_us, 200000, 500000); /* backed off once: 200..500 ms */
}

/* Linux tcp_retries2 = 15: the connection gives up after 15 unanswered
 * retransmissions, once ~924.6 s (tcp_model_timeout with a 200 ms base)
 * have passed since the first one; the error is ETIMEDOUT, and no RST. */
static void test_retransmissions_give_up(void **state)
{
	struct fx *fx = *state;
	xt_time_t t = established(fx) + XT_MS(1);
	uint32_t snd = fx->our_nxt;
	app_send_n(fx, t, 100);
	expect_data(fx, snd, 100);
	fx_run(fx, t + XT_SEC(2000));
	int n = 0;
	xt_time_t last = 0;
	while (fx_pending(fx)) {
		const struct seg *s = expect_next(fx);
		if (s->flags & F_RST)
			fail_msg("RST sent when retransmissions ran out (t=%.3f s)", s->t / 1e9);
		assert_int_equal(s->seq, snd);
		assert_int_equal(s->len, 100);
		last = s->t;
		n++;
	}
	assert_int_equal(n, 15);
	assert_true(last - t < XT_SEC(925));
	expect_state(fx, XT_CLOSE);
	assert_int_equal(app_getopt(fx, XT_SO_ERROR), ETIMEDOUT);
	assert_true(fx_cnt(fx)->tcp_timeouts >= 1);
}

/* RFC 5681 3.1: after an RTO the loss window is one segment. */
static void test_rto_collapses_cwnd(void **state)
{
	struct fx *fx = *state;
	xt_time_t t = established(fx) + XT_MS(1);
	uint32_t snd = fx->our_nxt;
	app_send_n(fx, t, 10 * MSS);
	for (int i = 0; i < 10; i++)
		expect_data(fx, snd + (uint32_t)i * MSS, MSS);
	expect_none(fx);
	fx_run(fx, t + XT_MS(300) + XT_MS(1));
	expect_data(fx, snd, MSS);
	expect_none(fx);
	/* Slow start again: the ACK of that one segment releases two. */
	peer_ack(fx, fx->now + XT_MS(1), snd + MSS);
	expect_data(fx, snd + MSS, MSS);
	expect_data(fx, snd + 2 * MSS, MSS);
	expect_none(fx);
}

/* ---------------------------------------------------------------- */
/* delayed ACK */

/* Runs the connection past Linux's quick-ACK phase (at most 16 quick ACKs
 * at start, tcp_incr_quickack): 32 pairs of full segments, 1 ms apart,
 * each pair read by the application. */
static void warm_up_receiver(struct fx *fx)
{
	uint8_t buf[2 * MSS];
	for (int i = 0; i < 32; i++) {
		peer_data_n(fx, fx->now + XT_MS(1), MSS);
		peer_data_n(fx, fx->now + XT_MS(1), MSS);
		fx_advance(fx, XT_MS(1));
		assert_int_equal(app_recv(fx, fx->now, buf, sizeof buf, 0), 2 * MSS);
		fx_drain(fx);
	}
	fx_advance(fx, XT_MS(1));
	fx_drain(fx);
}

/* RFC 1122 4.2.3.2 / RFC 5681 4.2: a lone segment is not acknowledged at
 * once; the delayed ACK comes within 40 ms (Linux TCP_DELACK_MIN / ATO_MIN). */
static void test_delayed_ack_single_segment(void **state)
{
	struct fx *fx = *state;
	established(fx);
	warm_up_receiver(fx);
	xt_time_t t = fx->now + XT_MS(1);
	peer_data_n(fx, t, MSS);
	expect_none(fx); /* not immediately */
	fx_run(fx, t + XT_MS(40));
	const struct seg *a = expect_ack(fx, fx->our_nxt, fx->peer_seq);
	assert_true(a->t > t);
	assert_true(a->t <= t + XT_MS(40));
	expect_none(fx);
}

/* RFC 5681 4.2: an ACK for at least every second full-sized segment, at once. */
static void test_ack_every_second_full_segment(void **state)
{
	struct fx *fx = *state;
	established(fx);
	warm_up_receiver(fx);
	xt_time_t t = fx->now + XT_MS(1);
	peer_data_n(fx, t, MSS);
	expect_none(fx);
	peer_data_n(fx, t + XT_MS(1), MSS);
	const struct seg *a = expect_ack(fx, fx->our_nxt, fx->peer_seq);
	assert_int_equal(a->t, t + XT_MS(1));
	expect_none(fx);
	fx_run(fx, t + XT_MS(100)); /* and no second ACK for the same data */
	expect_none(fx);
}

/* A delayed ACK rides on data the application sends before it fires. */
static void test_delayed_ack_piggybacked(void **state)
{
	struct fx *fx = *state;
	established(fx);
	warm_up_receiver(fx);
	xt_time_t t = fx->now + XT_MS(1);
	peer_data_n(fx, t, 100);
	uint8_t buf[200];
	assert_int_equal(app_recv(fx, t + XT_MS(2), buf, sizeof buf, 0), 100);
	fx_drain(fx); /* Linux may ACK a read PSH segment at once */
	uint32_t snd = fx->our_nxt;
	app_send_n(fx, t + XT_MS(3), 50);
	expect_data(fx, snd, 50); /* carries ack = everything received */
	fx_run(fx, t + XT_MS(100));
	expect_none(fx); /* no separate pure ACK after the data went out */
}

/* ---------------------------------------------------------------- */
/* Nagle, TCP_NODELAY, TCP_CORK */

/* RFC 1122 4.2.3.4: a small segment waits while data is unacknowledged. */
static void test_nagle_holds_second_small_segment(void **state)
{
	struct fx *fx = *state;
	xt_time_t t = established(fx);
	uint32_t snd = fx->our_nxt;
	assert_int_equal(app_send_n(fx, t + XT_MS(1), 100), 100);
	expect_data(fx, snd, 100);
	assert_int_equal(app_send_n(fx, t + XT_MS(2), 100), 100);
	expect_none(fx);
	fx_run(fx, t + XT_MS(90));
	expect_none(fx);
	peer_ack(fx, t + XT_MS(101), snd + 100);
	expect_data(fx, snd + 100, 100);
	expect_none(fx);
}

/* Full-sized segments are never held by Nagle. */
static void test_nagle_full_segments_go(void **state)
{
	struct fx *fx = *state;
	xt_time_t t = established(fx);
	uint32_t snd = fx->our_nxt;
	app_send_n(fx, t + XT_MS(1), 100);
	expect_data(fx, snd, 100);
	assert_int_equal(app_send_n(fx, t + XT_MS(2), 3000), 3000);
	expect_data(fx, snd + 100, MSS);
	expect_data(fx, snd + 100 + MSS, MSS);
	expect_none(fx); /* the 80-byte tail waits */
	peer_ack(fx, t + XT_MS(101), snd + 100 + 2 * MSS);
	expect_data(fx, snd + 100 + 2 * MSS, 80);
	expect_none(fx);
}

static void test_nodelay_sends_at_once(void **state)
{
	struct fx *fx = *state;
	xt_time_t t = established(fx);
	assert_int_equal(app_setopt(fx, t, XT_TCP_NODELAY, 1), 0);
	assert_int_equal(app_getopt(fx, XT_TCP_NODELAY), 1);
	uint32_t snd = fx->our_nxt;
	app_send_n(fx, t + XT_MS(1), 100);
	expect_data(fx, snd, 100);
	app_send_n(fx, t + XT_MS(2), 100);
	expect_data(fx, snd + 100, 100);
	app_send_n(fx, t + XT_MS(3), 1);
	expect_data(fx, snd + 200, 1);
	expect_none(fx);
}

/* Setting TCP_NODELAY pushes what Nagle was holding (Linux). */
static void test_nodelay_set_flushes(void **state)
{
	struct fx *fx = *state;
	xt_time_t t = established(fx);
	uint32_t snd = fx->our_nxt;
	app_send_n(fx, t + XT_MS(1), 100);
	expect_data(fx, snd, 100);
	app_send_n(fx, t + XT_MS(2), 100);
	expect_none(fx);
	assert_int_equal(app_setopt(fx, t + XT_MS(3), XT_TCP_NODELAY, 1), 0);
	expect_data(fx, snd + 100, 100);
	expect_none(fx);
}

/* TCP_CORK holds partial segments, sends full ones, and uncorking flushes. */
static void test_cork_holds_partial(void **state)
{
	struct fx *fx = *state;
	xt_time_t t = established(fx);
	assert_int_equal(app_setopt(fx, t, XT_TCP_CORK, 1), 0);
	uint32_t snd = fx->our_nxt;
	assert_int_equal(app_send_n(fx, t + XT_MS(1), 100), 100);
	expect_none(fx);
	assert_int_equal(app_send_n(fx, t + XT_MS(2), 3000), 3000);
	expect_data(fx, snd, MSS);
	expect_data(fx, snd + MSS, MSS);
	expect_none(fx);
	fx_run(fx, t + XT_MS(10));
	expect_none(fx);
	assert_int_equal(app_setopt(fx, t + XT_MS(10), XT_TCP_CORK, 0), 0);
	expect_data(fx, snd + 2 * MSS, 180);
	expect_none(fx);
}

/* tcp(7): "there is a 200 millisecond ceiling on the time for which output
 * is corked by TCP_CORK". */
static void test_cork_flushes_after_200ms(void **state)
{
	struct fx *fx = *state;
	fx->peer.rtt = XT_MS(1); /* Linux's ceiling is the RTO, 201 ms here */
	xt_time_t t = established(fx);
	assert_int_equal(app_setopt(fx, t, XT_TCP_CORK, 1), 0);
	uint32_t snd = fx->our_nxt;
	assert_int_equal(app_send_n(fx, t + XT_MS(1), 100), 100);
	fx_run(fx, t + XT_MS(1) + XT_MS(199));
	expect_none(fx);
	fx_run(fx, t + XT_MS(1) + XT_MS(250));
	const struct seg *d = expect_data(fx, snd, 100);
	assert_in_range(d->t, t + XT_MS(1) + XT_MS(200), t + XT_MS(1) + XT_MS(250));
	expect_none(fx);
}

/* MSG_MORE acts as a one-call cork. */
static void test_msg_more_holds(void **state)
{
	struct fx *fx = *state;
	xt_time_t t = established(fx);
	assert_int_equal(app_setopt(fx, t, XT_TCP_NODELAY, 1), 0);
	uint32_t snd = fx->our_nxt;
	uint8_t buf[100];
	pat_fill(buf, 100, 0, PAT_OURS);
	assert_int_equal(app_send_flags(fx, t + XT_MS(1), buf, 100, XT_MSG_MORE), 100);
	expect_none(fx);
	assert_int_equal(app_send_flags(fx, t + XT_MS(2), buf, 50, 0), 50);
	/* Everything goes now (Linux coalesces it into one 150-byte segment). */
	struct seg d[4];
	int n = collect(fx, d, 4);
	assert_true(n >= 1 && n <= 2);
	assert_int_equal(d[0].seq, snd);
	uint32_t bytes = 0;
	for (int i = 0; i < n; i++)
		bytes += d[i].len;
	assert_int_equal(bytes, 150);
}

/* ---------------------------------------------------------------- */
/* persist */

/* RFC 9293 3.8.6.1: a zero window is probed after an RTO, with exponential
 * backoff; when the window opens the data flows at once.  Probes are either
 * Linux's (SEG.SEQ = SND.UNA - 1, no data) or one octet at SND.UNA. */
static void test_zero_window_persist(void **state)
{
	struct fx *fx = *state;
	xt_time_t t = established(fx);
	uint32_t una = fx->our_nxt;
	peer_ack_win(fx, t + XT_MS(1), una, 0);
	expect_none(fx);
	xt_time_t ts = t + XT_MS(2);
	assert_int_equal(app_send_n(fx, ts, 1000), 1000);
	expect_none(fx); /* nothing fits */
	assert_true(app_events(fx) & XT_EV_OUT);
	fx_run(fx, ts + XT_SEC(10));
	struct seg p[16];
	int n = collect(fx, p, 16);
	assert_true(n >= 4 && n <= 16);
	for (int i = 0; i < n; i++) {
		assert_true(p[i].flags & F_ACK);
		assert_false(p[i].flags & (F_SYN | F_FIN | F_RST));
		bool linux_style = p[i].seq == una - 1 && p[i].len == 0;
		bool octet = p[i].seq == una && p[i].len == 1;
		if (!linux_style && !octet)
			fail_msg("probe %d is neither <SND.UNA-1, 0 bytes> nor <SND.UNA, 1 byte>: seq %u len %u", i,
				 p[i].seq, p[i].len);
	}
	xt_time_t d1 = p[0].t - ts;
	assert_in_range(d1, XT_MS(200), XT_MS(1000));
	xt_time_t d2 = p[1].t - p[0].t, d3 = p[2].t - p[1].t, d4 = p[3].t - p[2].t;
	assert_time_near(d2, 2 * d1, XT_MS(10));
	assert_time_near(d3, 2 * d2, XT_MS(10));
	assert_time_near(d4, 2 * d3, XT_MS(20));
	assert_true(fx_cnt(fx)->tcp_persist_probes >= 4);
	expect_state(fx, XT_ESTABLISHED);
	/* The window opens: the queued data goes out now, from SND.UNA. */
	peer_ack_win(fx, fx->now + XT_MS(1), una, 65535);
	xt_time_t topen = fx->now;
	n = collect(fx, p, 16);
	assert_true(n >= 1);
	assert_int_equal(p[0].seq, una);
	uint32_t end = una;
	for (int i = 0; i < n && i < 16; i++) {
		assert_int_equal(p[i].t, topen);
		if (seq_lt(end, p[i].seq + p[i].len))
			end = p[i].seq + p[i].len;
	}
	assert_int_equal(end, una + 1000);
}

/* ---------------------------------------------------------------- */
/* keepalive */

static void keepalive_on(struct fx *fx, xt_time_t t)
{
	assert_int_equal(app_setopt(fx, t, XT_TCP_KEEPIDLE, 10), 0);
	assert_int_equal(app_setopt(fx, t, XT_TCP_KEEPINTVL, 2), 0);
	assert_int_equal(app_setopt(fx, t, XT_TCP_KEEPCNT, 3), 0);
	assert_int_equal(app_setopt(fx, t, XT_SO_KEEPALIVE, 1), 0);
	assert_int_equal(app_getopt(fx, XT_SO_KEEPALIVE), 1);
	assert_int_equal(app_getopt(fx, XT_TCP_KEEPIDLE), 10);
	expect_none(fx);
}

static const struct seg *expect_keepalive(struct fx *fx, xt_time_t at)
{
	const struct seg *k = expect_next(fx);
	assert_true(k->flags == F_ACK);
	assert_int_equal(k->seq, fx->our_nxt - 1); /* SND.UNA - 1 (RFC 1122 4.2.3.6) */
	assert_int_equal(k->ack, fx->peer_seq);
	assert_true(k->len <= 1);
	assert_time_near(k->t, at, XT_MS(5));
	return k;
}

/* Idle 10 s -> probe; every 2 s after; after KEEPCNT (3) unanswered probes
 * the connection is reset (RST) and fails with ETIMEDOUT (Linux
 * tcp_keepalive_timer). */
static void test_keepalive_times_out(void **state)
{
	struct fx *fx = *state;
	xt_time_t t = established(fx);
	keepalive_on(fx, t);
	fx_run(fx, t + XT_SEC(10) - XT_MS(10));
	expect_none(fx);
	fx_run(fx, t + XT_SEC(15));
	expect_keepalive(fx, t + XT_SEC(10));
	expect_keepalive(fx, t + XT_SEC(12));
	expect_keepalive(fx, t + XT_SEC(14));
	expect_none(fx);
	expect_state(fx, XT_ESTABLISHED);
	fx_run(fx, t + XT_SEC(17));
	const struct seg *r = expect_rst(fx, fx->our_nxt);
	assert_time_near(r->t, t + XT_SEC(16), XT_MS(5));
	expect_none(fx);
	expect_state(fx, XT_CLOSE);
	assert_true(app_events(fx) & XT_EV_ERR);
	assert_int_equal(app_getopt(fx, XT_SO_ERROR), ETIMEDOUT);
	assert_int_equal(fx_cnt(fx)->tcp_keepalive_probes, 3);
}

/* An answered probe resets the count; the next probe comes after the idle
 * time measured from the answer. */
static void test_keepalive_answered(void **state)
{
	struct fx *fx = *state;
	xt_time_t t = established(fx);
	keepalive_on(fx, t);
	fx_run(fx, t + XT_SEC(10) + XT_MS(1));
	expect_keepalive(fx, t + XT_SEC(10));
	xt_time_t ans = t + XT_SEC(10) + XT_MS(2);
	peer_ack(fx, ans, fx->our_nxt); /* the peer's duplicate ACK */
	expect_none(fx);
	fx_run(fx, ans + XT_SEC(10) - XT_MS(10));
	expect_none(fx);
	fx_run(fx, ans + XT_SEC(10) + XT_MS(10));
	expect_keepalive(fx, ans + XT_SEC(10));
	expect_none(fx);
	expect_state(fx, XT_ESTABLISHED);
}

/* No keepalive unless asked for. */
static void test_keepalive_off_by_default(void **state)
{
	struct fx *fx = *state;
	xt_time_t t = established(fx);
	assert_int_equal(app_getopt(fx, XT_SO_KEEPALIVE), 0);
	fx_run(fx, t + XT_SEC(3 * 3600));
	expect_none(fx);
	expect_state(fx, XT_ESTABLISHED);
}

/* ---------------------------------------------------------------- */
/* loss recovery and congestion control */

/* Sends 10 full segments (the initial window) and returns SND.UNA. */
static uint32_t send_iw(struct fx *fx, xt_time_t t)
{
	uint32_t snd = fx->our_nxt;
	assert_int_equal(app_send_n(fx, t, 10 * MSS), 10 * MSS);
	for (int i = 0; i < 10; i++)
		expect_data(fx, snd + (uint32_t)i * MSS, MSS);
	expect_none(fx);
	return snd;
}

/* RFC 5681 3.2: the third duplicate ACK triggers one retransmission of the
 * first unacknowledged segment; RFC 6582 3.2: a partial ACK retransmits the
 * next hole at once and a full ACK ends recovery. */
static void test_fast_retransmit_newreno(void **state)
{
	struct fx *fx = *state;
	xt_time_t t = established(fx) + XT_MS(1);
	uint32_t s0 = send_iw(fx, t);
#define S(i) (s0 + (uint32_t)(i) * MSS)
	/* segments 1 and 3 are lost */
	peer_ack(fx, t + XT_MS(100), S(1));
	expect_none(fx);
	peer_ack(fx, t + XT_MS(101), S(1));
	expect_none(fx);
	peer_ack(fx, t + XT_MS(102), S(1));
	expect_none(fx);
	peer_ack(fx, t + XT_MS(103), S(1));
	expect_data(fx, S(1), MSS);
	expect_none(fx);
	assert_true(fx_cnt(fx)->tcp_fast_retrans >= 1);
	for (int i = 0; i < 4; i++) {
		peer_ack(fx, t + XT_MS(104 + i), S(1));
		expect_none(fx); /* no new data to send; nothing else is retransmitted */
	}
	/* the retransmission fills hole 1: ACK up to hole 3 (partial) */
	peer_ack(fx, t + XT_MS(200), S(3));
	expect_data(fx, S(3), MSS);
	expect_none(fx);
	peer_ack(fx, t + XT_MS(250), S(10));
	expect_none(fx);
	assert_int_equal(xt_tcp_outq(fx->st, fx->s), 0);
	fx_run(fx, t + XT_SEC(5));
	expect_none(fx);
#undef S
}

/* With SACK (RFC 2018, RFC 6675): the third duplicate ACK retransmits the
 * first hole; the other hole follows (lost once three segments above it are
 * SACKed, or earlier by NextSeg rule 3 when there is no new data); SACKed
 * segments are never retransmitted; at most one rescue retransmission. */
static void test_sack_recovery(void **state)
{
	struct fx *fx = *state;
	fx->peer.sack_perm = true;
	xt_time_t t = established(fx) + XT_MS(1);
	assert_true(fx->sack_on);
	uint32_t s0 = send_iw(fx, t);
#define S(i) (s0 + (uint32_t)(i) * MSS)
	/* segments 1 and 3 lost; the peer got 0, 2, 4..9 */
	struct seg out[32];
	int n = 0;
	peer_ack(fx, t + XT_MS(100), S(1));
	expect_none(fx);
	static const uint32_t blocks[][2][2] = {
		{ { 2, 3 }, { 0, 0 } }, { { 4, 5 }, { 2, 3 } }, { { 4, 6 }, { 2, 3 } }, { { 4, 7 }, { 2, 3 } },
		{ { 4, 8 }, { 2, 3 } }, { { 4, 9 }, { 2, 3 } }, { { 4, 10 }, { 2, 3 } },
	};
	for (int i = 0; i < 7; i++) {
		uint8_t nb = blocks[i][1][1] ? 2 : 1;
		seg_in(fx, t + XT_MS(101 + i), .flags = F_ACK, .seq = fx->peer_seq, .ack = S(1), .opts = OPT_SACK,
		       .nsack = nb,
		       .sack = { { S(blocks[i][0][0]), S(blocks[i][0][1]) }, { S(blocks[i][1][0]), S(blocks[i][1][1]) } });
		if (i < 2)
			expect_none(fx); /* fewer than three duplicate ACKs */
		if (i == 3) {
			/* TCP_INFO in recovery: 2, 4..6 SACKed; segment 1 retransmitted */
			struct xt_tcp_info ti;
			assert_int_equal(xt_tcp_info(fx->st, fx->s, &ti, FX_T0 + fx->now), 0);
			assert_int_equal(ti.sacked, 4);
			assert_true(ti.retrans >= 1);
			assert_int_equal(ti.ca_state, 3); /* TCP_CA_Recovery */
		}
		if (i == 2) {
			/* the third duplicate ACK: segment 1 first */
			const struct seg *r = expect_data(fx, S(1), MSS);
			(void)r;
			out[n++] = fx->last;
		}
		while (fx_pending(fx) && n < 32) {
			fx_pop(fx, &out[n]);
			n++;
		}
	}
	bool saw1 = false, saw3 = false;
	int rescues = 0;
	for (int i = 0; i < n; i++) {
		uint32_t k = (out[i].seq - s0) / MSS;
		if (out[i].len == 0)
			continue;
		/* RFC 6675 4 NextSeg rule (4): with no new data to send, one
		 * "rescue" retransmission of the highest outstanding unSACKed
		 * segment per recovery keeps the ACK clock from stalling at the
		 * end of a window.  Nothing else may be sent twice. */
		if (k == 9 && !rescues++)
			continue;
		if (k != 1 && k != 3)
			fail_msg("segment %u retransmitted although SACKed (or sent twice)", k);
		saw1 |= k == 1;
		saw3 |= k == 3;
	}
	assert_true(saw1);
	assert_true(saw3); /* 4..9 SACKed above it: lost */
	peer_ack(fx, t + XT_MS(200), S(10));
	expect_none(fx);
	assert_int_equal(xt_tcp_outq(fx->st, fx->s), 0);
#undef S
}

/* A lost retransmission is found without waiting for the RTO: once the
 * peer SACKs data first sent after the retransmission went out, the hole
 * is retransmitted again (Linux RACK; tcp_lost_retrans counts it). */
static void test_sack_lost_retransmission(void **state)
{
	struct fx *fx = *state;
	fx->peer.sack_perm = true;
	xt_time_t t = established(fx) + XT_MS(1);
	assert_true(fx->sack_on);
	uint32_t s0 = fx->our_nxt;
#define S(i) (s0 + (uint32_t)(i) * MSS)
	assert_int_equal(app_send_n(fx, t, 40 * MSS), 40 * MSS);
	struct seg o;
	int sent = 0;
	while (fx_pending(fx)) {
		fx_pop(fx, &o);
		sent++;
	}
	assert_int_equal(sent, 10); /* the initial window */
	/* segment 0 lost: SACKs for 1..k, k = 1..9 */
	int s0_out = 0;
	uint32_t top = S(10); /* the highest octet sent so far */
	for (int k = 1; k <= 9; k++) {
		seg_in(fx, t + XT_MS(100 + k), .flags = F_ACK, .seq = fx->peer_seq, .ack = S(0), .opts = OPT_SACK,
		       .nsack = 1, .sack = { { S(1), S(k + 1) } });
		while (fx_pending(fx)) {
			fx_pop(fx, &o);
			if (o.len && o.seq == S(0))
				s0_out++;
			if (o.len && (int32_t)(o.seq + o.len - top) > 0)
				top = o.seq + o.len;
		}
	}
	assert_int_equal(s0_out, 1); /* fast retransmit of segment 0 */
	assert_int_equal(fx_cnt(fx)->tcp_lost_retrans, 0);
	assert_true((int32_t)(top - S(10)) > 0); /* new data went out after it */
	/* that retransmission is lost too; the new data arrives and is SACKed */
	seg_in(fx, t + XT_MS(150), .flags = F_ACK, .seq = fx->peer_seq, .ack = S(0), .opts = OPT_SACK, .nsack = 1,
	       .sack = { { S(1), top } });
	while (fx_pending(fx)) {
		fx_pop(fx, &o);
		if (o.len && o.seq == S(0))
			s0_out++;
	}
	assert_int_equal(fx_cnt(fx)->tcp_lost_retrans, 1);
	assert_int_equal(s0_out, 2); /* retransmitted again, long before any RTO */
	assert_int_equal(fx_cnt(fx)->tcp_rto, 0);
#undef S
}

/* Two duplicate ACKs are not enough (RFC 5681 3.2, dupthresh 3). */
static void test_two_dupacks_no_retransmit(void **state)
{
	struct fx *fx = *state;
	xt_time_t t = established(fx) + XT_MS(1);
	uint32_t s0 = send_iw(fx, t);
	peer_ack(fx, t + XT_MS(100), s0 + MSS);
	peer_ack(fx, t + XT_MS(101), s0 + MSS);
	peer_ack(fx, t + XT_MS(102), s0 + MSS);
	expect_none(fx);
}

/* RFC 6928: the initial window is 10 segments: exactly 10 full segments go
 * out before the first ACK. */
static void test_initial_window_10(void **state)
{
	struct fx *fx = *state;
	xt_time_t t = established(fx) + XT_MS(1);
	uint32_t snd = fx->our_nxt;
	assert_int_equal(app_send_n(fx, t, 20 * MSS), 20 * MSS);
	for (int i = 0; i < 10; i++)
		expect_data(fx, snd + (uint32_t)i * MSS, MSS);
	expect_none(fx);
	fx_run(fx, t + XT_MS(99));
	expect_none(fx);
	assert_int_equal(app_info(fx).snd_cwnd, 10);
}

/* RFC 5681 3.1 slow start: each ACK of one full segment grows cwnd by one
 * segment, so it releases two. */
static void test_slow_start_growth(void **state)
{
	struct fx *fx = *state;
	xt_time_t t = established(fx) + XT_MS(1);
	uint32_t snd = fx->our_nxt;
	assert_int_equal(app_send_n(fx, t, 40 * MSS), 40 * MSS);
	for (int i = 0; i < 10; i++)
		expect_data(fx, snd + (uint32_t)i * MSS, MSS);
	expect_none(fx);
	uint32_t next = snd + 10 * MSS;
	for (int i = 1; i <= 10; i++) {
		peer_ack(fx, t + XT_MS(100) + XT_US(10 * i), snd + (uint32_t)i * MSS);
		expect_data(fx, next, MSS);
		expect_data(fx, next + MSS, MSS);
		expect_none(fx);
		next += 2 * MSS;
	}
	assert_int_equal(app_info(fx).snd_cwnd, 20);
}

/* Data never exceeds the peer's advertised window. */
static void test_send_limited_by_peer_window(void **state)
{
	struct fx *fx = *state;
	fx->peer.wnd = 4 * MSS;
	xt_time_t t = established(fx) + XT_MS(1);
	uint32_t snd = fx->our_nxt;
	assert_int_equal(app_send_n(fx, t, 10 * MSS), 10 * MSS);
	for (int i = 0; i < 4; i++)
		expect_data(fx, snd + (uint32_t)i * MSS, MSS);
	expect_none(fx);
	peer_ack(fx, t + XT_MS(100), snd + 2 * MSS);
	expect_data(fx, snd + 4 * MSS, MSS);
	expect_data(fx, snd + 5 * MSS, MSS);
	expect_none(fx);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		T(test_syn_retransmit_backoff_etimedout),
		T(test_rto_backoff_doubles),
		T(test_karn_no_sample_from_retransmission),
		T(test_rttm_sample_from_retransmission),
		T(test_min_rto_200ms),
		T(test_retransmissions_give_up),
		T(test_rto_collapses_cwnd),
		T(test_delayed_ack_single_segment),
		T(test_ack_every_second_full_segment),
		T(test_delayed_ack_piggybacked),
		T(test_nagle_holds_second_small_segment),
		T(test_nagle_full_segments_go),
		T(test_nodelay_sends_at_once),
		T(test_nodelay_set_flushes),
		T(test_cork_holds_partial),
		T(test_cork_flushes_after_200ms),
		T(test_msg_more_holds),
		T(test_zero_window_persist),
		T(test_keepalive_times_out),
		T(test_keepalive_answered),
		T(test_keepalive_off_by_default),
		T(test_fast_retransmit_newreno),
		T(test_sack_recovery),
		T(test_sack_lost_retransmission),
		T(test_two_dupacks_no_retransmit),
		T(test_initial_window_10),
		T(test_slow_start_growth),
		T(test_send_limited_by_peer_window),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
