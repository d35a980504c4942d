/* Zero-copy receive (stack/rxhold.c): in-order payload stays in the
 * backend's frame until the application reads it.  The harness gives every
 * injected frame a buffer of its own and poisons it the moment the engine
 * gives it back (or, for a frame not kept, when the input call returns), so
 * a byte read from a frame after that reads garbage and fails the pattern
 * checks below; a hold or release out of turn fails at once. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "seg.h"

static int setup_window(void **state, uint32_t window)
{
	struct xt_stack_cfg cfg;
	fx_default_cfg(&cfg);
	cfg.rx_hold_window = window;
	struct fx *fx = fx_new(&cfg);
	if (!fx)
		return -1;
	*state = fx;
	return 0;
}
static int setup8(void **state) { return setup_window(state, 8); }
static int setup4(void **state) { return setup_window(state, 4); }

#define T8(fn) cmocka_unit_test_setup_teardown(fn, setup8, fx_teardown)
#define T4(fn) cmocka_unit_test_setup_teardown(fn, setup4, fx_teardown)

/* Reads n bytes and checks they are the peer's stream from offset off. */
static void read_check(struct fx *fx, xt_time_t t, uint32_t n, uint32_t off, int flags)
{
	uint8_t *b = malloc(n ? n : 1);
	assert_non_null(b);
	assert_int_equal(app_recv(fx, t, b, n, flags), (long)n);
	assert_true(pat_check(b, n, off, PAT_PEER));
	free(b);
}

static uint32_t inq(struct fx *fx) { return (uint32_t)xt_tcp_inq(fx->st, fx->s); }

/* Kept on arrival, read (peeked first) from the frames, each given back
 * once read through; short segments are copied. */
static void test_kept_until_read(void **state)
{
	struct fx *fx = *state;
	xt_time_t t = established(fx);
	for (int i = 0; i < 3; i++)
		peer_data_n(fx, t, 1000);
	assert_int_equal(fx->rx_holds, 3);
	assert_int_equal(fx->rx_releases, 0);
	assert_int_equal(fx_cnt(fx)->tcp_rx_held, 3);
	assert_int_equal(inq(fx), 3000);
	assert_true(app_events(fx) & XT_EV_IN);
	read_check(fx, t, 2500, 0, XT_MSG_PEEK);
	assert_int_equal(fx->rx_releases, 0);
	read_check(fx, t, 1500, 0, 0);
	assert_int_equal(fx->rx_releases, 1);
	assert_int_equal(inq(fx), 1500);
	read_check(fx, t, 1500, 1500, 0);
	assert_int_equal(fx->rx_releases, 3);
	assert_int_equal(inq(fx), 0);
	peer_data_n(fx, t, 100); /* too short to keep */
	assert_int_equal(fx->rx_holds, 3);
	read_check(fx, t, 100, 3000, 0);
	assert_int_equal(fx_cnt(fx)->tcp_rx_hold_copied, 0);
}

/* The application does not read: once a frame 4 positions newer arrives,
 * the socket's kept frames are copied into its buffer and given back, so
 * the backend's ring is never held up; the stream stays whole. */
static void test_given_back_when_ring_moves(void **state)
{
	struct fx *fx = *state;
	xt_time_t t = established(fx);
	uint64_t first = fx->rx_next_ref;
	for (int i = 0; i < 4; i++)
		peer_data_n(fx, t, 1000);
	assert_int_equal(fx->rx_holds, 4);
	assert_int_equal(fx->rx_releases, 0);
	/* the ACKs so far are frames too; pos counts every frame */
	uint64_t newest = fx->rx_next_ref - 1;
	assert_true(newest - first < 4);
	peer_data_n(fx, t, 1000); /* pos first + 4: the oldest is due */
	assert_int_equal(fx->rx_releases, 4);
	assert_int_equal(fx_cnt(fx)->tcp_rx_hold_copied, 4);
	assert_int_equal(fx->rx_holds, 5);
	assert_int_equal(inq(fx), 5000);
	read_check(fx, t, 5000, 0, 0);
	assert_int_equal(fx->rx_releases, 5);
}

/* Out-of-order data moves the kept bytes into the buffer first (its
 * out-of-order room follows them); in-order data that fills the hole is
 * copied there too, and later in-order data is kept again. */
static void test_out_of_order_after_kept(void **state)
{
	struct fx *fx = *state;
	xt_time_t t = established(fx);
	uint32_t base = fx->peer_seq;
	peer_data_n(fx, t, 1000);
	assert_int_equal(fx->rx_holds, 1);
	peer_data_at(fx, t, base + 2000, 1000); /* a hole at 1000 */
	assert_int_equal(fx->rx_releases, 1);
	assert_int_equal(fx_cnt(fx)->tcp_rx_hold_copied, 1);
	peer_data_at(fx, t, base + 1000, 1000); /* fills it */
	assert_int_equal(fx->rx_holds, 1);
	fx->peer_seq = base + 3000;
	assert_int_equal(inq(fx), 3000);
	peer_data_n(fx, t, 1000);
	assert_int_equal(fx->rx_holds, 2);
	read_check(fx, t, 4000, 0, 0);
	assert_int_equal(fx->rx_releases, 2);
}

/* A short segment after kept ones cannot be kept: the kept bytes go into
 * the buffer ahead of it, in stream order. */
static void test_copy_after_kept_keeps_order(void **state)
{
	struct fx *fx = *state;
	xt_time_t t = established(fx);
	peer_data_n(fx, t, 1000);
	peer_data_n(fx, t, 700);
	peer_data_n(fx, t, 10);
	assert_int_equal(fx->rx_holds, 2);
	assert_int_equal(fx->rx_releases, 2);
	peer_data_n(fx, t, 900);
	assert_int_equal(fx->rx_holds, 3);
	read_check(fx, t, 100, 0, 0);
	read_check(fx, t, 2510, 100, 0);
	assert_int_equal(fx->rx_releases, 3);
}

/* Kept bytes count against the buffer like copied ones: the window the
 * engine announces shrinks by what it holds, and a full buffer drops. */
static void test_window_counts_kept_bytes(void **state)
{
	struct fx *fx = *state;
	fx->peer.ws = 7; /* so the window is not capped at 65535 */
	xt_time_t t = established(fx);
	assert_true(fx->ws_on);
	for (int i = 0; i < 3; i++)
		peer_data_n(fx, t + XT_MS(1), 1448);
	assert_int_equal(fx->rx_holds, 3);
	fx_advance(fx, XT_MS(50)); /* a delayed ACK, if one was owed */
	struct seg sg;
	uint32_t last_win = 0;
	int acks = 0;
	while (fx_pop(fx, &sg)) {
		last_win = (uint32_t)sg.win << fx->our_ws;
		acks++;
	}
	assert_true(acks > 0);
	assert_true(last_win > 0);
	assert_true(last_win <= fx->cfg.rcvbuf - 3 * 1448);
}

/* Closing with unread kept data resets the connection (RFC 2525 2.17, as
 * with copied data) and gives every frame back. */
static void test_close_gives_back(void **state)
{
	struct fx *fx = *state;
	xt_time_t t = established(fx);
	peer_data_n(fx, t, 1000);
	peer_data_n(fx, t, 1000);
	assert_int_equal(fx->rx_holds, 2);
	fx_drain(fx);
	assert_int_equal(app_close(fx, t + XT_MS(1)), 0);
	expect_rst(fx, fx->our_nxt);
	assert_int_equal(fx->rx_releases, 2);
	assert_int_equal(fx_cnt(fx)->tcp_rx_hold_copied, 0);
}

/* Before fork: everything kept is copied and given back, and still read. */
static void test_unhold_all(void **state)
{
	struct fx *fx = *state;
	xt_time_t t = established(fx);
	peer_data_n(fx, t, 1000);
	peer_data_n(fx, t, 2000);
	assert_int_equal(fx->rx_holds, 2);
	xt_stack_rx_unhold_all(fx->st);
	assert_int_equal(fx->rx_releases, 2);
	assert_int_equal(inq(fx), 3000);
	read_check(fx, t, 3000, 0, 0);
	/* and later frames are kept again */
	peer_data_n(fx, t, 1000);
	assert_int_equal(fx->rx_holds, 3);
	read_check(fx, t, 1000, 3000, 0);
}

/* A reset from the peer with kept data: the frames are given back when the
 * socket's buffers go. */
static void test_peer_reset_gives_back(void **state)
{
	struct fx *fx = *state;
	xt_time_t t = established(fx);
	peer_data_n(fx, t, 1000);
	assert_int_equal(fx->rx_holds, 1);
	peer_rst(fx, t + XT_MS(1), fx->peer_seq);
	assert_int_equal(app_close(fx, t + XT_MS(2)), 0);
	assert_int_equal(fx->rx_releases, 1);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		T8(test_kept_until_read),
		T4(test_given_back_when_ring_moves),
		T8(test_out_of_order_after_kept),
		T8(test_copy_after_kept_keeps_order),
		T8(test_window_counts_kept_bytes),
		T8(test_close_gives_back),
		T8(test_unhold_all),
		T8(test_peer_reset_gives_back),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
