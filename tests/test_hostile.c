/* Hostile peers: the engine keeps its memory within the configured limits
 * and keeps serving (RFC 1122 4.2.2.17, RFC 5961, Linux's limits). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "seg.h"

#define T(fn) cmocka_unit_test_setup_teardown(fn, fx_setup, fx_teardown)

/* Answers every segment the engine sent with an ACK of ack carrying wnd. */
static int answer_all(struct fx *fx, uint32_t ack, uint32_t wnd, int *probes)
{
	struct seg sg;
	int n = 0;
	while (fx_pop(fx, &sg)) {
		n++;
		if (probes && sg.len <= 1)
			(*probes)++;
		peer_ack_win(fx, fx->now, ack, wnd);
	}
	return n;
}

/* A peer whose window stays closed forever but answers our probes: we keep
 * probing with backoff up to 120 s and never give up (RFC 1122 4.2.2.17);
 * memory stays at the socket's buffers. */
static void test_zero_window_forever(void **state)
{
	struct fx *fx = *state;
	xt_time_t t = established(fx) + XT_MS(1);
	uint32_t una = fx->our_nxt;
	peer_ack_win(fx, t, una, 0);
	long r, queued = 0;
	while ((r = app_send_n(fx, t, 65536)) > 0)
		queued += r;
	assert_int_equal(r, -EAGAIN);
	assert_true(queued >= (long)fx->cfg.sndbuf / 2);
	uint64_t mem = xt_stack_mem_used(fx->st);
	int probes = 0;
	xt_time_t end = t + XT_SEC(1800);
	while (fx->now < end) {
		xt_time_t next = fx_next_timer(fx);
		assert_true(next != XT_TIME_NEVER); /* the persist timer is always armed */
		fx_run(fx, next < end ? next : end);
		answer_all(fx, una, 0, &probes);
	}
	expect_state(fx, XT_ESTABLISHED);
	assert_int_equal(xt_stack_mem_used(fx->st), mem);
	/* 0.2 s doubling to 120 s, then every 120 s: about 23 in 30 minutes */
	assert_true(probes >= 15 && probes <= 40);
	assert_int_equal(xt_stack_counters(fx->st)->tcp_persist_probes, (uint64_t)probes);
	/* the window opens: the queued data flows */
	peer_ack_win(fx, fx->now + XT_MS(1), una, 65535);
	const struct seg *d = expect_next(fx);
	assert_int_equal(d->seq, una);
	assert_true(d->len > 0);
}

/* A peer that only ever sends data above a hole: out-of-order data is kept
 * within the receive buffer and the range table, never more, and is
 * delivered intact once the hole is filled. */
static void test_out_of_order_only(void **state)
{
	struct fx *fx = *state;
	fx->peer.sack_perm = true;
	xt_time_t t = established(fx) + XT_MS(1);
	uint64_t mem = xt_stack_mem_used(fx->st);
	uint32_t hole = fx->peer_seq;
	uint32_t rcvbuf = fx->cfg.rcvbuf;
	/* Every other 1000-byte block across twice the buffer, three times over. */
	for (int pass = 0; pass < 3; pass++)
		for (uint32_t off = 1000; off < 2 * rcvbuf; off += 2000) {
			peer_data_at(fx, t, hole + off, 1000);
			t += XT_US(10);
			fx_drain(fx);
		}
	assert_int_equal(xt_stack_mem_used(fx->st), mem);
	assert_int_equal(xt_tcp_inq(fx->st, fx->s), 0);
	const struct xt_counters *c = xt_stack_counters(fx->st);
	assert_true(c->drop_tcp_reass_full + c->drop_tcp_rcvbuf_full > 0);
	/* Fill the holes within the window, in order: everything readable is the
	 * peer's stream, byte for byte. */
	uint32_t filled = 0;
	for (; filled + 1000 <= rcvbuf / 2; filled += 1000) {
		peer_data_at(fx, t, hole + filled, 1000);
		t += XT_US(10);
		fx_drain(fx);
	}
	long n = xt_tcp_inq(fx->st, fx->s);
	assert_true(n >= (long)filled);
	uint8_t *buf = malloc((size_t)n);
	assert_non_null(buf);
	assert_int_equal(app_recv(fx, t, buf, (size_t)n, 0), n);
	assert_true(pat_check(buf, (uint32_t)n, hole - fx->peer_iss - 1, PAT_PEER));
	free(buf);
}

/* The application never reads while the peer keeps pushing for ten
 * minutes: the window closes, nothing beyond the buffer is kept, and the
 * connection survives; reading later gets the stream intact. */
static void test_app_never_reads(void **state)
{
	struct fx *fx = *state;
	xt_time_t t = established(fx) + XT_MS(1);
	uint64_t mem = xt_stack_mem_used(fx->st);
	uint32_t start = fx->peer_seq;
	for (int i = 0; i < 20000; i++) { /* ~29 MB offered against a 256 KiB buffer */
		peer_data_at(fx, t, fx->peer_seq, 1448);
		struct seg sg;
		uint32_t acked = fx->peer_seq;
		while (fx_pop(fx, &sg))
			acked = sg.ack;
		fx->peer_seq = acked; /* resend whatever was not taken */
		t += XT_MS(30);
	}
	assert_int_equal(xt_stack_mem_used(fx->st), mem);
	long inq = xt_tcp_inq(fx->st, fx->s);
	assert_true(inq > 0 && inq <= (long)fx->cfg.rcvbuf);
	assert_int_equal((uint32_t)inq, fx->peer_seq - start);
	expect_state(fx, XT_ESTABLISHED);
	uint8_t *buf = malloc((size_t)inq);
	assert_non_null(buf);
	assert_int_equal(app_recv(fx, t, buf, (size_t)inq, 0), inq);
	assert_true(pat_check(buf, (uint32_t)inq, start - fx->peer_iss - 1, PAT_PEER));
	free(buf);
	/* reading reopened the window: an update went out */
	const struct seg *w = expect_next(fx);
	assert_true(w->win > 0);
}

/* A peer that acknowledges bytes still waiting in the TX batch (legal: they
 * are below snd_nxt) must not make the engine send other bytes under their
 * sequence numbers.  With gathered payload the batch points into the send
 * ring, and that ACK frees the room the application's next write fills. */
static void test_gather_early_ack(void **state)
{
	struct fx *fx = *state;
	struct xt_stack_cfg cfg;
	uint8_t a[1000], b[4096], ack[256];

	fx_default_cfg(&cfg);
	cfg.tx_gather = 1;
	cfg.sndbuf = 4096;
	cfg.tcp_timestamps = 0;
	fx_restart(fx, &cfg);
	xt_time_t t = established(fx);
	uint32_t first = fx->our_iss + 1;
	pat_fill(a, sizeof a, 0, PAT_OURS);
	memset(b, 0xee, sizeof b);
	/* straight into the engine: the harness would flush between steps */
	xt_stack_set_tx_defer(fx->st, true);
	assert_int_equal(xt_tcp_send(fx->st, fx->s, a, sizeof a, 0, FX_T0 + t), (long)sizeof a);
	size_t n = seg_build(ack, sizeof ack, &(const struct seg_spec){
		.flags = F_ACK, .seq = fx->peer_seq, .ack = first + (uint32_t)sizeof a, .win = 65535,
		.src_ip = fx->peer_ip, .dst_ip = FX_OUR_IP, .sport = fx->peer_port, .dport = fx->our_port });
	xt_stack_input(fx->st, ack, n, FX_T0 + t);
	assert_int_equal(xt_tcp_send(fx->st, fx->s, b, sizeof b, 0, FX_T0 + t), (long)sizeof b);
	xt_stack_flush(fx->st);
	assert_true(fx_cnt(fx)->tcp_tx_gathered >= 2);
	const struct seg *sg = expect_next(fx);
	assert_int_equal(sg->seq, first);
	assert_int_equal(sg->len, sizeof a);
	assert_memory_equal(sg->data, a, sizeof a);
	/* and the rest is the second write, whole, wrapped around the ring */
	uint32_t got = 0;
	while (got < sizeof b) {
		sg = expect_next(fx);
		if (!sg->len)
			continue;
		assert_int_equal(sg->seq, first + sizeof a + got);
		assert_memory_equal(sg->data, b + got, sg->len);
		got += sg->len;
	}
}

/* Peer i (its own port and ISN from the bases) completes a handshake with
 * the listener; the SYN-ACK and anything else sent are drained. */
static void peer_handshake(struct fx *fx, xt_time_t t, uint16_t port_base, uint32_t iss_base, uint32_t i)
{
	uint16_t port = (uint16_t)(port_base + i);
	uint32_t iss = iss_base + i * 100000u;
	seg_in(fx, t, .flags = F_SYN, .seq = iss, .sport = port, .dport = FX_LISTEN_PORT, .opts = OPT_MSS,
	       .mss = 1460);
	struct seg sa;
	if (!fx_pop(fx, &sa) || sa.flags != (F_SYN | F_ACK))
		fail_msg("no SYN-ACK for peer %u", i);
	fx_drain(fx);
	seg_in(fx, t, .flags = F_ACK, .seq = iss + 1, .ack = sa.seq + 1, .sport = port, .dport = FX_LISTEN_PORT);
	fx_drain(fx);
}

/* ... and is accepted: the socket, or < 0. */
static int handshake(struct fx *fx, xt_time_t t, uint32_t i)
{
	peer_handshake(fx, t, 30000, 0x30000000u, i);
	return xt_tcp_accept(fx->st, fx->ls, NULL, NULL);
}

/* Thousands of peers complete handshakes and go silent: established
 * connections stop being accepted once socket buffers would pass the memory
 * limit (counted), memory never passes it, and an existing connection keeps
 * working. */
static void test_many_connections_memory_bounded(void **state)
{
	struct fx *fx = *state;
	struct xt_stack_cfg cfg;
	fx_default_cfg(&cfg);
	cfg.mem_limit = 32u << 20;
	cfg.rcvbuf = cfg.sndbuf = 128u << 10; /* 256 KiB a connection: 128 fit */
	fx_restart(fx, &cfg);
	xt_time_t t = established_passive(fx) + XT_MS(1);
	int keep = fx->s;
	int ls = fx->ls;
	int accepted = 0;
	for (uint32_t i = 0; i < 10000; i++) {
		peer_handshake(fx, t, 20000, 0x20000000u, i);
		int c;
		while ((c = xt_tcp_accept(fx->st, ls, NULL, NULL)) >= 0)
			accepted++;
		assert_true(xt_stack_mem_used(fx->st) <= cfg.mem_limit);
		t += XT_US(100);
	}
	const struct xt_counters *k = xt_stack_counters(fx->st);
	assert_true(accepted >= 100 && accepted < 200);
	assert_true(k->drop_tcp_no_mem > 0);
	/* the first connection still carries data both ways */
	fx->s = keep;
	uint32_t snd = fx->our_nxt;
	fx_run(fx, t);
	assert_int_equal(app_send_n(fx, t + XT_MS(1), 100), 100);
	expect_data(fx, snd, 100);
	peer_data_n(fx, t + XT_MS(2), 100);
	uint8_t buf[100];
	assert_int_equal(app_recv(fx, t + XT_MS(3), buf, sizeof(buf), 0), 100);
}

/* Connections come and go: their freed buffers are kept for the next ones
 * (no malloc, heap growth or fresh pages per connection), reused, and the
 * kept bytes stay within mem_limit / 16 (16 MiB at most), outside mem_used. */
static void test_freed_buffers_kept_bounded(void **state)
{
	struct fx *fx = *state;
	struct xt_stack_cfg cfg;
	fx_default_cfg(&cfg);
	cfg.mem_limit = 32u << 20; /* kept: 2 MiB at most */
	cfg.rcvbuf = cfg.sndbuf = 64u << 10;
	fx_restart(fx, &cfg);
	xt_time_t t = established_passive(fx) + XT_MS(1);
	uint64_t base = xt_stack_mem_used(fx->st);
	int ids[100];
	for (uint32_t i = 0; i < 100; i++) {
		ids[i] = handshake(fx, t, i);
		assert_true(ids[i] >= 0);
	}
	assert_int_equal(xt_stack_mem_cached(fx->st), 0);
	assert_int_equal(xt_stack_mem_used(fx->st), base + 100u * (128u << 10));
	for (int i = 0; i < 100; i++) {
		assert_int_equal(xt_tcp_abort(fx->st, ids[i], FX_T0 + t), 0); /* RST, freed */
		if (i == 0)
			assert_int_equal(xt_stack_mem_cached(fx->st), 128u << 10);
		assert_true(xt_stack_mem_cached(fx->st) <= (2u << 20));
	}
	fx_drain(fx);
	assert_int_equal(xt_stack_mem_cached(fx->st), 2u << 20);
	assert_int_equal(xt_stack_mem_used(fx->st), base);
	/* the next connection takes two of them */
	int c = handshake(fx, t + XT_MS(1), 1000);
	assert_true(c >= 0);
	assert_int_equal(xt_stack_mem_cached(fx->st), (2u << 20) - (128u << 10));
	assert_int_equal(xt_stack_mem_used(fx->st), base + (128u << 10));
	assert_int_equal(xt_tcp_state(fx->st, c), XT_ESTABLISHED);
}

/* The send-buffer hooks (xt_stack_cfg.tx_buf_reg/unreg/fence): a buffer is
 * registered once and keeps its handle in the cache; the fence runs before a
 * send buffer that gathered frames came from is given up, and when it cannot
 * confirm the buffer is never reused (a leak, counted); a registered buffer
 * leaving the cache is unregistered. */
static int hk_reg, hk_unreg, hk_fence, hk_fence_ret;
static uint64_t hk_last_unreg;
static uint64_t hk_reg_fn(void *ctx, void *buf, uint32_t len) { (void)ctx; (void)buf; (void)len; return 0x1000u + (uint64_t)++hk_reg; }
static void hk_unreg_fn(void *ctx, uint64_t h) { (void)ctx; hk_unreg++; hk_last_unreg = h; }
static int hk_fence_fn(void *ctx) { (void)ctx; hk_fence++; return hk_fence_ret; }

static void test_send_buffer_hooks(void **state)
{
	struct fx *fx = *state;
	struct xt_stack_cfg cfg;
	fx_default_cfg(&cfg);
	cfg.tx_gather = 1;
	cfg.rcvbuf = cfg.sndbuf = 64u << 10;
	cfg.mem_limit = 2u << 20; /* kept: 128 KiB, two buffers */
	cfg.tx_buf_reg = hk_reg_fn;
	cfg.tx_buf_unreg = hk_unreg_fn;
	cfg.tx_fence = hk_fence_fn;
	hk_reg = hk_unreg = hk_fence = 0;
	hk_fence_ret = -EIO;
	fx_restart(fx, &cfg);
	xt_time_t t = established_passive(fx) + XT_MS(1);
	assert_int_equal(hk_reg, 1); /* the first connection's send buffer */
	int c = handshake(fx, t, 1);
	assert_true(c >= 0);
	assert_int_equal(hk_reg, 2);
	uint8_t data[3000];
	memset(data, 0x5a, sizeof(data));
	assert_int_equal(xt_tcp_send(fx->st, c, data, sizeof(data), 0, FX_T0 + t), (long)sizeof(data));
	fx_drain(fx);
	/* the fence cannot confirm: the send buffer is kept for good */
	assert_int_equal(xt_tcp_abort(fx->st, c, FX_T0 + t), 0);
	fx_drain(fx);
	assert_int_equal(hk_fence, 1);
	assert_int_equal(xt_stack_counters(fx->st)->tx_fence_leaks, 1);
	assert_int_equal(xt_stack_mem_cached(fx->st), 64u << 10); /* the receive buffer only */
	/* a connection that never sent needs no fence; its registered send
	 * buffer goes to the cache with its handle */
	hk_fence_ret = 0;
	c = handshake(fx, t, 2);
	assert_true(c >= 0);
	assert_int_equal(hk_reg, 3); /* the cached buffer was the receive one: new send buffer */
	assert_int_equal(xt_stack_mem_cached(fx->st), 0);
	assert_int_equal(xt_tcp_abort(fx->st, c, FX_T0 + t), 0);
	fx_drain(fx);
	assert_int_equal(hk_fence, 1);
	assert_int_equal(xt_stack_mem_cached(fx->st), 128u << 10);
	/* the next connection takes both back; no new registration */
	int before = hk_reg;
	c = handshake(fx, t, 3);
	assert_true(c >= 0);
	assert_int_equal(hk_reg, before);
	assert_int_equal(xt_tcp_send(fx->st, c, data, sizeof(data), 0, FX_T0 + t), (long)sizeof(data));
	fx_drain(fx);
	assert_int_equal(xt_tcp_abort(fx->st, c, FX_T0 + t), 0);
	fx_drain(fx);
	assert_int_equal(hk_fence, 2); /* it sent: fenced */
	assert_int_equal(hk_unreg, 0);
	/* a cache that is full lets a registered buffer go: unregistered */
	int c1 = handshake(fx, t, 4), c2 = handshake(fx, t, 5);
	assert_true(c1 >= 0 && c2 >= 0);
	assert_int_equal(xt_tcp_abort(fx->st, c1, FX_T0 + t), 0);
	fx_drain(fx);
	assert_int_equal(xt_tcp_abort(fx->st, c2, FX_T0 + t), 0);
	fx_drain(fx);
	assert_int_equal(xt_stack_mem_cached(fx->st), 128u << 10);
	assert_true(hk_unreg >= 1);
	assert_true(hk_last_unreg > 0x1000u);
	assert_int_equal(xt_stack_counters(fx->st)->tx_fence_leaks, 1);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		T(test_zero_window_forever),
		T(test_out_of_order_only),
		T(test_app_never_reads),
		T(test_many_connections_memory_bounded),
		T(test_gather_early_ack),
		T(test_freed_buffers_kept_bounded),
		T(test_send_buffer_hooks),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
