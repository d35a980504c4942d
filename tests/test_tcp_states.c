/* TCP connection states (RFC 9293 3.3.2, 3.5, 3.6, 3.10), option negotiation,
 * listen/accept semantics, ports, and the data path, at segment level.
 * Linux is the reference where the RFCs leave room. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "seg.h"
#include "tcp.h" /* xt_sock: where the rings' bytes start */

#define T(fn) cmocka_unit_test_setup_teardown(fn, fx_setup, fx_teardown)

/* Pops every pending frame into segs (at most max); returns the count. */
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

/* Runs for dt and returns the last ACK seen (fails if none). */
static struct seg last_ack_within(struct fx *fx, xt_time_t dt)
{
	fx_advance(fx, dt);
	struct seg s, last;
	bool got = false;
	while (fx_pending(fx)) {
		fx_pop(fx, &s);
		if (s.valid && s.is_tcp && (s.flags & F_ACK)) {
			last = s;
			got = true;
		}
	}
	if (!got)
		fx_fail(fx, "expected an ACK within %.1f ms", dt / 1e6);
	return last;
}

/* ---------------------------------------------------------------- */
/* opening */

/* RFC 9293 3.7.1 / 3.5; RFC 7323; RFC 2018: a default engine offers MSS 1460
 * (MTU 1500 - 40), window scaling, SACK-permitted and timestamps in its SYN. */
static void test_active_open_syn(void **state)
{
	struct fx *fx = *state;
	syn_sent(fx);
	const struct seg *syn = &fx->our_syn;
	assert_true(syn->opts & OPT_MSS);
	assert_int_equal(syn->mss, 1460);
	assert_true(syn->opts & OPT_WS);
	assert_true(syn->ws <= 14); /* RFC 7323 2.3 */
	assert_true(syn->opts & OPT_SACK_PERM);
	assert_true(syn->opts & OPT_TS);
	assert_int_equal(syn->tsecr, 0); /* RFC 7323 3.2: TSecr zero without ACK */
	assert_true(syn->win > 0);
	assert_in_range(syn->sport, 32768, 60999);
	/* Linux tcp_poll: a connecting socket is neither readable nor writable. */
	assert_int_equal(app_events(fx) & (XT_EV_IN | XT_EV_OUT | XT_EV_ERR | XT_EV_HUP), 0);
}

static void test_active_open_established(void **state)
{
	struct fx *fx = *state;
	established_active(fx);
	uint32_t ev = app_events(fx);
	assert_true(ev & XT_EV_OUT);
	assert_false(ev & (XT_EV_IN | XT_EV_ERR | XT_EV_HUP));
	assert_int_equal(fx_cnt(fx)->tcp_active_opens, 1);
	uint32_t ip = 0;
	uint16_t port = 0;
	assert_int_equal(xt_tcp_getname(fx->st, fx->s, 1, &ip, &port), 0);
	assert_int_equal(ip, FX_PEER_IP);
	assert_int_equal(port, FX_REMOTE_PORT);
	assert_int_equal(xt_tcp_getname(fx->st, fx->s, 0, &ip, &port), 0);
	assert_int_equal(ip, FX_OUR_IP);
	assert_int_equal(port, fx->our_port);
}

/* Passive open: SYN -> SYN-ACK mirroring the peer's options -> ACK -> accept. */
static void test_passive_open_accept(void **state)
{
	struct fx *fx = *state;
	int ls = fx_listen(fx, FX_LISTEN_PORT, 16);
	expect_sock_state(fx, ls, XT_LISTEN);
	assert_int_equal(xt_tcp_accept(fx->st, ls, NULL, NULL), -EAGAIN);
	assert_false(xt_tcp_events(fx->st, ls) & XT_EV_IN);

	fx->our_port = FX_LISTEN_PORT;
	fx->peer_port = FX_PEER_PORT;
	seg_in(fx, 0, .flags = F_SYN, .seq = FX_PEER_ISS, .opts = OPT_MSS | OPT_WS | OPT_SACK_PERM | OPT_TS,
	       .mss = 1460, .ws = 7, .tsval = 777, .win = 65535);
	struct seg sa = *expect_next(fx);
	expect_none(fx);
	assert_int_equal(sa.flags, F_SYN | F_ACK);
	assert_int_equal(sa.ack, FX_PEER_ISS + 1);
	assert_int_equal(sa.len, 0);
	assert_true(sa.opts & OPT_MSS);
	assert_int_equal(sa.mss, 1460);
	assert_true(sa.opts & OPT_WS);
	assert_true(sa.opts & OPT_SACK_PERM);
	assert_true(sa.opts & OPT_TS);
	assert_int_equal(sa.tsecr, 777); /* RFC 7323 3.2: echo TSval */

	/* Not accepted before the handshake completes. */
	assert_int_equal(xt_tcp_accept(fx->st, ls, NULL, NULL), -EAGAIN);

	seg_in(fx, XT_MS(100), .flags = F_ACK, .seq = FX_PEER_ISS + 1, .ack = sa.seq + 1, .opts = OPT_TS,
	       .tsval = 800, .tsecr = sa.tsval, .win = 512);
	expect_none(fx);
	assert_true(xt_tcp_events(fx->st, ls) & XT_EV_IN);
	uint32_t ip = 0;
	uint16_t port = 0;
	int s = xt_tcp_accept(fx->st, ls, &ip, &port);
	assert_true(s >= 0);
	assert_int_equal(ip, FX_PEER_IP);
	assert_int_equal(port, FX_PEER_PORT);
	expect_sock_state(fx, s, XT_ESTABLISHED);
	assert_int_equal(xt_tcp_accept(fx->st, ls, NULL, NULL), -EAGAIN);
	assert_false(xt_tcp_events(fx->st, ls) & XT_EV_IN);
	assert_true(xt_tcp_events(fx->st, s) & XT_EV_OUT);
	assert_int_equal(fx_cnt(fx)->tcp_passive_opens, 1);
	expect_sock_state(fx, ls, XT_LISTEN);
}

/* RFC 7323 2.2 / 3.2, RFC 2018 2: a SYN-ACK carries WS, TS, SACK-permitted
 * only when the SYN did. */
static void test_synack_options_only_when_offered(void **state)
{
	struct fx *fx = *state;
	fx_listen(fx, FX_LISTEN_PORT, 16);
	fx->our_port = FX_LISTEN_PORT;
	fx->peer_port = FX_PEER_PORT;
	seg_in(fx, 0, .flags = F_SYN, .seq = 5000, .opts = OPT_MSS, .mss = 1400);
	const struct seg *sa = expect_next(fx);
	assert_int_equal(sa->flags, F_SYN | F_ACK);
	assert_int_equal(sa->ack, 5001);
	assert_true(sa->opts & OPT_MSS);
	assert_false(sa->opts & (OPT_WS | OPT_TS | OPT_SACK_PERM));
	expect_none(fx);

	/* Timestamps alone */
	fx->peer_port = FX_PEER_PORT + 1;
	seg_in(fx, XT_MS(1), .flags = F_SYN, .seq = 9000, .opts = OPT_MSS | OPT_TS, .mss = 1460, .tsval = 42,
	       .sport = FX_PEER_PORT + 1, .dport = FX_LISTEN_PORT);
	sa = expect_next(fx);
	assert_int_equal(sa->flags, F_SYN | F_ACK);
	assert_int_equal(sa->ack, 9001);
	assert_true(sa->opts & OPT_TS);
	assert_int_equal(sa->tsecr, 42);
	assert_false(sa->opts & (OPT_WS | OPT_SACK_PERM));
	expect_none(fx);
}

/* Window scaling, SACK and timestamps are in force only when both SYNs carry
 * them (RFC 7323 2.2, 3.2; RFC 2018 2). */
static void test_options_negotiated_all(void **state)
{
	struct fx *fx = *state;
	fx->peer.ws = 7;
	fx->peer.sack_perm = true;
	fx->peer.ts = true;
	xt_time_t t = established_active(fx);
	/* The handshake ACK echoed the peer's TSval (checked through our_tsval tracking) */
	assert_true(fx->ts_on && fx->ws_on && fx->sack_on);
	struct xt_tcp_info ti = app_info(fx);
	assert_int_equal(ti.options & (XT_TI_OPT_TIMESTAMPS | XT_TI_OPT_SACK | XT_TI_OPT_WSCALE),
			 XT_TI_OPT_TIMESTAMPS | XT_TI_OPT_SACK | XT_TI_OPT_WSCALE);
	assert_int_equal(ti.snd_wscale, 7);
	assert_int_equal(ti.rcv_wscale, fx->our_ws);

	/* Our data carries TS echoing the peer's latest TSval. */
	peer_data_n(fx, t + XT_MS(10), 10);
	uint32_t peer_ts = fx->peer_tsval;
	struct seg a = last_ack_within(fx, XT_MS(200));
	assert_true(a.opts & OPT_TS);
	assert_int_equal(a.tsecr, peer_ts);
	assert_int_equal(a.ack, fx->peer_seq);
}

static void test_options_not_negotiated(void **state)
{
	struct fx *fx = *state;
	xt_time_t t = established_active(fx); /* peer offers MSS only */
	struct xt_tcp_info ti = app_info(fx);
	assert_int_equal(ti.options & (XT_TI_OPT_TIMESTAMPS | XT_TI_OPT_SACK | XT_TI_OPT_WSCALE), 0);
	assert_int_equal(ti.snd_wscale, 0);
	assert_int_equal(ti.rcv_wscale, 0);
	/* No timestamps on later segments. */
	app_send_n(fx, t + XT_MS(1), 100);
	const struct seg *d = expect_data(fx, fx->our_iss + 1, 100);
	assert_false(d->opts & OPT_TS);
	assert_false(d->opts & OPT_WS);
}

/* Timestamps offered by the peer in its SYN-ACK only when we offered them:
 * the SYN-ACK's TS echoes our SYN's TSval, and every later segment echoes
 * the peer's most recent TSval (RFC 7323 4.3). */
static void test_ts_echo(void **state)
{
	struct fx *fx = *state;
	fx->peer.ts = true;
	xt_time_t t = established_active(fx);
	assert_true(fx->ts_on);
	peer_data_n(fx, t + XT_MS(50), 100);
	uint32_t v1 = fx->peer_tsval;
	struct seg a = last_ack_within(fx, XT_MS(200));
	assert_true(a.opts & OPT_TS);
	assert_int_equal(a.tsecr, v1);
	uint32_t our1 = a.tsval;
	peer_data_n(fx, fx->now + XT_MS(300), 100);
	uint32_t v2 = fx->peer_tsval;
	assert_true(v2 != v1);
	a = last_ack_within(fx, XT_MS(200));
	assert_int_equal(a.tsecr, v2);
	assert_true(seq_leq(our1, a.tsval)); /* our clock does not run backwards */
	/* Data we send echoes too. */
	app_send_n(fx, fx->now + XT_MS(1), 10);
	const struct seg *d = expect_next(fx);
	assert_true(d->opts & OPT_TS);
	assert_int_equal(d->tsecr, v2);
}

/* The MSS we announce follows the configured MTU (RFC 9293 3.7.1:
 * MTU - 20 - 20), in SYN and SYN-ACK. */
static void test_mss_follows_mtu(void **state)
{
	struct fx *fx = *state;
	struct xt_stack_cfg cfg;
	fx_default_cfg(&cfg);
	cfg.mtu = 1400;
	fx_restart(fx, &cfg);
	syn_sent(fx);
	assert_int_equal(fx->our_syn.mss, 1360);
	fx_listen(fx, FX_LISTEN_PORT, 8);
	seg_in(fx, XT_MS(1), .flags = F_SYN, .seq = 1, .opts = OPT_MSS, .mss = 1460, .sport = 40500,
	       .dport = FX_LISTEN_PORT, .src_ip = FX_PEER_IP, .dst_ip = FX_OUR_IP);
	const struct seg *sa = expect_tcp(fx);
	assert_int_equal(sa->flags, F_SYN | F_ACK);
	assert_int_equal(sa->mss, 1360);
}

/* The send side scales the peer's window by the shift it announced. */
static void test_wscale_peer_window_scaled(void **state)
{
	struct fx *fx = *state;
	fx->peer.ws = 7;
	xt_time_t t = established_active(fx);
	assert_true(fx->ws_on);
	/* Window field 20 << 7 = 2560 bytes. */
	assert_int_equal(app_setopt(fx, t, XT_TCP_NODELAY, 1), 0);
	peer_ack_win(fx, t + XT_MS(1), fx->our_nxt, 2560);
	expect_none(fx);
	uint32_t base = fx->our_nxt;
	assert_int_equal(app_send_n(fx, t + XT_MS(2), 5000), 5000);
	struct seg segs[16];
	int n = collect(fx, segs, 16);
	uint32_t bytes = 0;
	for (int i = 0; i < n && i < 16; i++) {
		assert_true(seq_leq(base, segs[i].seq));
		bytes += segs[i].len;
		assert_true(seq_leq(segs[i].seq + segs[i].len, base + 2560));
	}
	assert_true(bytes >= 1460); /* a full segment fits: 2560 bytes, not 20 */
	/* Open the window: everything flows. */
	peer_ack_win(fx, t + XT_MS(100), fx->our_nxt, 1u << 20);
	fx_advance(fx, XT_MS(1));
	n = collect(fx, segs, 16);
	for (int i = 0; i < n && i < 16; i++)
		bytes += segs[i].len;
	assert_int_equal(bytes, 5000);
}

/* XTCP_TX_BATCH's engine half: with tx_defer, the application's calls that
 * send (uncorking, shutdown, close) leave their frames in the TX batch until
 * the caller flushes, so one event-loop round's frames leave together;
 * without it each call sends at once. */
static void test_deferred_calls_wait_for_flush(void **state)
{
	struct fx *fx = *state;
	uint8_t a[100], b[100];
	pat_fill(a, sizeof a, 0, PAT_OURS);
	pat_fill(b, sizeof b, sizeof a, PAT_OURS);
	for (int defer = 0; defer < 2; defer++) {
		fx_restart(fx, NULL);
		xt_time_t now = FX_T0 + established(fx);
		fx_drain(fx);
		xt_stack_set_tx_defer(fx->st, defer);
		/* no Nagle for the second write; the cork still holds the first */
		assert_int_equal(xt_tcp_setopt(fx->st, fx->s, XT_TCP_NODELAY, 1, now), 0);
		assert_int_equal(xt_tcp_setopt(fx->st, fx->s, XT_TCP_CORK, 1, now), 0);
		assert_int_equal(xt_tcp_send(fx->st, fx->s, a, sizeof a, 0, now), (long)sizeof a);
		assert_int_equal(fx_pending(fx), 0); /* corked: a part segment waits */
		assert_int_equal(xt_tcp_setopt(fx->st, fx->s, XT_TCP_CORK, 0, now), 0);
		assert_int_equal(fx_pending(fx), defer ? 0 : 1);
		xt_stack_flush(fx->st);
		expect_data(fx, fx->our_iss + 1, sizeof a);
		assert_int_equal(xt_tcp_send(fx->st, fx->s, b, sizeof b, 0, now), (long)sizeof b);
		assert_int_equal(fx_pending(fx), defer ? 0 : 1);
		assert_int_equal(xt_tcp_shutdown(fx->st, fx->s, XT_SHUT_WR, now), 0);
		assert_int_equal(fx_pending(fx), defer ? 0 : 2);
		xt_stack_flush(fx->st);
		expect_data(fx, fx->our_iss + 1 + sizeof a, sizeof a);
		const struct seg *sg = expect_next(fx);
		assert_true(sg->flags & F_FIN);
		assert_int_equal(sg->seq, fx->our_iss + 1 + 2 * sizeof a);
		assert_int_equal(xt_tcp_close(fx->st, fx->s, now), 0);
		assert_int_equal(fx_pending(fx), 0); /* the FIN is out already */
	}
	/* close: the FIN waits for the flush too */
	fx_restart(fx, NULL);
	xt_time_t now = FX_T0 + established(fx);
	fx_drain(fx);
	xt_stack_set_tx_defer(fx->st, true);
	assert_int_equal(xt_tcp_close(fx->st, fx->s, now), 0);
	assert_int_equal(fx_pending(fx), 0);
	xt_stack_flush(fx->st);
	const struct seg *sg = expect_next(fx);
	assert_true(sg->flags & F_FIN);
}

/* Every way of building data segments gives the same valid segments: the
 * payload copied into the frame or gathered from the send ring (split where
 * the 4 KiB ring wraps, at odd offsets too), with the TCP checksum computed
 * here or left as the pseudo-header sum for the device (which the harness
 * completes as a NIC would).  expect_data checks every byte and both
 * checksums.  A TSO limit without gather is ignored (segments stay MSS-sized). */
static void test_tx_gather_and_csum_ways(void **state)
{
	struct fx *fx = *state;
	static const uint8_t csum[] = { XT_TX_CSUM_NONE, XT_TX_CSUM_PARTIAL };
	static const uint32_t sizes[] = { 777, 1, 1460, 2999, 333, 4096, 1461, 7 };

	for (int g = 0; g < 2; g++)
		for (unsigned c = 0; c < sizeof csum; c++) {
			struct xt_stack_cfg cfg;
			fx_default_cfg(&cfg);
			cfg.tx_gather = (uint8_t)g;
			cfg.tso_max = g ? 0 : 65535; /* TSO needs gather: ignored here */
			cfg.tx_csum_offload = csum[c];
			cfg.sndbuf = 4096;
			fx_restart(fx, &cfg);
			xt_time_t t = established(fx);
			assert_int_equal(app_setopt(fx, t, XT_TCP_NODELAY, 1), 0);
			for (int r = 0; r < 5; r++)
				for (unsigned k = 0; k < sizeof sizes / sizeof sizes[0]; k++) {
					uint32_t left = sizes[k];
					t += XT_MS(1);
					assert_int_equal(app_send_n(fx, t, left), left);
					while (left) {
						const struct seg *sg = expect_data(fx, fx->our_nxt, 0 + (left < 1460 ? left : 1460));
						left -= sg->len;
					}
					expect_none(fx);
					peer_ack_all(fx, t);
					expect_none(fx);
				}
			assert_true(g ? fx_cnt(fx)->tcp_tx_gathered > 0 : fx_cnt(fx)->tcp_tx_gathered == 0);
			assert_int_equal(fx_cnt(fx)->tcp_tso_segs, 0);
		}
}

/* RFC 9293 3.7.1: send no segment larger than the peer's MSS. */
static void test_peer_mss_honoured(void **state)
{
	struct fx *fx = *state;
	fx->peer.mss = 536;
	xt_time_t t = established_active(fx);
	assert_int_equal(app_info(fx).snd_mss, 536);
	assert_int_equal(app_send_n(fx, t + XT_MS(1), 3000), 3000);
	struct seg segs[16];
	int n = collect(fx, segs, 16);
	uint32_t bytes = 0;
	for (int i = 0; i < n; i++) {
		assert_true(segs[i].len <= 536);
		bytes += segs[i].len;
	}
	assert_true(n >= 5);
	for (int i = 0; i < 5; i++)
		assert_int_equal(segs[i].len, 536);
	peer_ack_all(fx, t + XT_MS(101));
	n = collect(fx, segs, 16);
	for (int i = 0; i < n; i++) {
		assert_true(segs[i].len <= 536);
		bytes += segs[i].len;
	}
	assert_int_equal(bytes, 3000);
}

/* Our MTU caps the segment size whatever the peer allows. */
static void test_peer_mss_capped_by_mtu(void **state)
{
	struct fx *fx = *state;
	fx->peer.mss = 9000;
	xt_time_t t = established_active(fx);
	assert_int_equal(app_send_n(fx, t + XT_MS(1), 4000), 4000);
	struct seg segs[16];
	int n = collect(fx, segs, 16);
	assert_true(n >= 2);
	assert_int_equal(segs[0].len, 1460);
	assert_int_equal(segs[1].len, 1460);
	for (int i = 0; i < n; i++)
		assert_true(segs[i].len <= 1460);
}

/* RFC 9293 3.7.1 (MUST-15): no MSS option means 536. */
static void test_no_mss_option_means_536(void **state)
{
	struct fx *fx = *state;
	fx->peer.mss = 0;
	xt_time_t t = established_active(fx);
	assert_int_equal(app_send_n(fx, t + XT_MS(1), 2000), 2000);
	struct seg segs[16];
	int n = collect(fx, segs, 16);
	assert_true(n >= 3);
	for (int i = 0; i < n; i++)
		assert_true(segs[i].len <= 536);
	assert_int_equal(segs[0].len, 536);
}

/* RFC 9293 3.7.1: the payload of a full segment leaves room for the options
 * every segment carries: 1460 - 12 bytes of timestamps = 1448. */
static void test_mss_minus_timestamps(void **state)
{
	struct fx *fx = *state;
	fx->peer.ts = true;
	xt_time_t t = established_active(fx);
	assert_int_equal(app_send_n(fx, t + XT_MS(1), 3000), 3000);
	const struct seg *s = expect_next(fx);
	assert_true(s->opts & OPT_TS);
	assert_int_equal(s->len, 1448);
}

/* With the options switched off in the engine's configuration, none is
 * offered or accepted: only MSS appears, whatever the peer sends. */
static void test_options_disabled_by_config(void **state)
{
	struct fx *fx = *state;
	struct xt_stack_cfg cfg;
	fx_default_cfg(&cfg);
	cfg.tcp_timestamps = 0;
	cfg.tcp_sack = 0;
	cfg.tcp_window_scaling = 0;
	fx_restart(fx, &cfg);
	syn_sent(fx);
	assert_int_equal(fx->our_syn.opts, OPT_MSS);
	assert_int_equal(fx->our_syn.mss, 1460);
	fx_listen(fx, FX_LISTEN_PORT, 8);
	seg_in(fx, XT_MS(1), .flags = F_SYN, .seq = 1, .opts = OPT_MSS | OPT_WS | OPT_SACK_PERM | OPT_TS, .mss = 1460,
	       .ws = 7, .tsval = 9, .sport = 40500, .dport = FX_LISTEN_PORT, .src_ip = FX_PEER_IP,
	       .dst_ip = FX_OUR_IP);
	const struct seg *sa = expect_tcp(fx);
	assert_int_equal(sa->flags, F_SYN | F_ACK);
	assert_int_equal(sa->opts, OPT_MSS);
}

/* Readiness changes reach cfg.on_event: writable on connect, readable on
 * data, ERR|HUP on reset. */
static void test_event_callback(void **state)
{
	struct fx *fx = *state;
	established_active(fx);
	int s = fx->s;
	assert_true(s >= 0 && s < FX_EV_SOCKS);
	assert_true(fx->ev_calls[s] > 0);
	assert_true(fx->ev_last[s] & XT_EV_OUT);
	unsigned calls = fx->ev_calls[s];
	peer_data_n(fx, fx->now + XT_MS(1), 10);
	assert_true(fx->ev_calls[s] > calls);
	assert_true(fx->ev_last[s] & XT_EV_IN);
	assert_true(fx->ev_last[s] & XT_EV_NEW);
	assert_int_equal(fx->ev_last[s] & ~XT_EV_NEW, app_events(fx));
	/* More data on a socket that is readable already: the mask does not
	 * change, yet it is a new edge for EPOLLET (Linux sk_data_ready). */
	calls = fx->ev_calls[s];
	peer_data_n(fx, fx->now + XT_MS(1), 10);
	assert_int_equal(fx->ev_calls[s], calls + 1);
	assert_int_equal(fx->ev_last[s], app_events(fx) | XT_EV_NEW);
	/* An ACK alone (no new data) is no edge. */
	calls = fx->ev_calls[s];
	app_send_n(fx, fx->now + XT_MS(1), 10);
	fx_drain(fx);
	peer_ack_all(fx, fx->now + XT_MS(1));
	assert_int_equal(fx->ev_calls[s], calls);
	calls = fx->ev_calls[s];
	peer_rst(fx, fx->now + XT_MS(1), fx->peer_seq);
	assert_true(fx->ev_calls[s] > calls);
	assert_true(fx->ev_last[s] & XT_EV_ERR);
	assert_true(fx->ev_last[s] & XT_EV_HUP);
}

/* Simultaneous open (RFC 9293 3.5, figure 8): SYN_SENT + SYN -> SYN_RECV
 * (SYN-ACK with our original ISS) -> the peer's SYN-ACK -> ESTABLISHED. */
static void test_simultaneous_open(void **state)
{
	struct fx *fx = *state;
	xt_time_t t = syn_recv(fx);
	assert_false(app_events(fx) & XT_EV_OUT);
	/* The peer's own SYN-ACK (seq = its ISS, acking our SYN). */
	seg_in(fx, t + XT_MS(50), .flags = F_SYN | F_ACK, .seq = fx->peer_iss, .ack = fx->our_iss + 1,
	       .opts = OPT_MSS, .mss = 1460);
	expect_state(fx, XT_ESTABLISHED);
	assert_true(app_events(fx) & XT_EV_OUT);
	/* Whatever was sent, it must not be a reset or a new SYN. */
	struct seg segs[4];
	int n = collect(fx, segs, 4);
	for (int i = 0; i < n && i < 4; i++)
		assert_false(segs[i].flags & (F_RST | F_SYN));
	/* The connection works. */
	app_send_n(fx, fx->now + XT_MS(1), 10);
	expect_data(fx, fx->our_iss + 1, 10);
}

static void test_simultaneous_open_plain_ack(void **state)
{
	struct fx *fx = *state;
	xt_time_t t = syn_recv(fx);
	peer_ack(fx, t + XT_MS(50), fx->our_iss + 1);
	expect_none(fx);
	expect_state(fx, XT_ESTABLISHED);
}

/* ---------------------------------------------------------------- */
/* closing */

/* Active close: FIN_WAIT1 -> FIN_WAIT2 -> TIME_WAIT, which lasts 60 s. */
static void test_active_close_time_wait_60s(void **state)
{
	struct fx *fx = *state;
	xt_time_t t = time_wait(fx);
	fx_run(fx, t + XT_SEC(60) - XT_MS(1));
	expect_none(fx);
	expect_state(fx, XT_TIME_WAIT);
	fx_run(fx, t + XT_SEC(60) + XT_MS(1));
	expect_none(fx);
	expect_state(fx, XT_CLOSE);
	assert_int_equal(xt_tcp_close(fx->st, fx->s, fx_abs(fx, fx->now)), 0);
	fx->s = -1;
	fx_flush(fx);
	expect_none(fx);
	/* The tuple is free: a late FIN now meets no socket. */
	uint32_t ack = fx->our_nxt;
	seg_in(fx, fx->now + XT_MS(1), .flags = F_FIN | F_ACK, .seq = fx->peer_seq - 1, .ack = ack);
	const struct seg *r = expect_next(fx);
	assert_int_equal(r->flags, F_RST);
	assert_int_equal(r->seq, ack);
}

/* The same after close(): the orphaned connection goes through TIME_WAIT,
 * still acknowledging a retransmitted FIN, and is gone 60 s later. */
static void test_orphan_time_wait(void **state)
{
	struct fx *fx = *state;
	xt_time_t t = established(fx) + XT_MS(1);
	uint32_t fin = fx->our_nxt;
	assert_int_equal(app_close(fx, t), 0);
	expect_only(fx, F_FIN | F_ACK, fin, fx->peer_seq);
	fx->peer_ack = fin + 1;
	peer_fin(fx, t + XT_MS(100)); /* FIN|ACK acking ours */
	expect_only(fx, F_ACK, fin + 1, fx->peer_seq);
	xt_time_t tw = fx->now;
	seg_in(fx, tw + XT_SEC(10), .flags = F_FIN | F_ACK, .seq = fx->peer_seq - 1, .ack = fin + 1);
	expect_only(fx, F_ACK, fin + 1, fx->peer_seq);
	fx_run(fx, tw + XT_SEC(10) + XT_SEC(60) + XT_MS(10));
	expect_none(fx);
	seg_in(fx, fx->now + XT_MS(1), .flags = F_FIN | F_ACK, .seq = fx->peer_seq - 1, .ack = fin + 1);
	const struct seg *r = expect_next(fx);
	assert_int_equal(r->flags, F_RST);
	assert_int_equal(r->seq, fin + 1);
}

/* A retransmitted FIN in TIME_WAIT is acknowledged and restarts the 2MSL
 * timer (RFC 9293 3.10.7.4 TIME-WAIT; Linux inet_twsk_reschedule). */
static void test_time_wait_fin_restarts_timer(void **state)
{
	struct fx *fx = *state;
	xt_time_t t = time_wait(fx);
	seg_in(fx, t + XT_SEC(30), .flags = F_FIN | F_ACK, .seq = fx->peer_seq - 1, .ack = fx->peer_ack);
	expect_ack(fx, fx->our_nxt, fx->peer_seq);
	expect_none(fx);
	fx_run(fx, t + XT_SEC(90) - XT_MS(1));
	expect_state(fx, XT_TIME_WAIT);
	fx_run(fx, t + XT_SEC(90) + XT_MS(1));
	expect_state(fx, XT_CLOSE);
	expect_none(fx);
}

/* An old duplicate SYN in TIME_WAIT gets an ACK (RFC 9293 3.10.7.4, first
 * check; Linux TCP_TW_ACK), and the connection stays in TIME_WAIT. */
static void test_time_wait_old_syn_acked(void **state)
{
	struct fx *fx = *state;
	xt_time_t t = time_wait(fx);
	seg_in(fx, t + XT_SEC(1), .flags = F_SYN, .seq = fx->peer_iss, .opts = OPT_MSS, .mss = 1460);
	expect_ack(fx, fx->our_nxt, fx->peer_seq);
	expect_none(fx);
	expect_state(fx, XT_TIME_WAIT);
}

/* RFC 1122 4.2.2.13 / Linux tcp_timewait_state_process: a new SYN with a
 * higher sequence number reopens a TIME_WAIT connection through the
 * listener, with an ISN above everything the old incarnation used. */
static void test_time_wait_new_syn_reopens(void **state)
{
	struct fx *fx = *state;
	fx->passive = true;
	xt_time_t t = time_wait(fx);
	int old = fx->s;
	uint32_t old_nxt = fx->our_nxt;
	uint32_t nseq = fx->peer_seq + 100000;
	seg_in(fx, t + XT_SEC(1), .flags = F_SYN, .seq = nseq, .opts = OPT_MSS, .mss = 1460);
	const struct seg *sa = expect_next(fx);
	assert_int_equal(sa->flags, F_SYN | F_ACK);
	assert_int_equal(sa->ack, nseq + 1);
	assert_true(seq_lt(old_nxt, sa->seq));
	uint32_t iss = sa->seq;
	expect_none(fx);
	seg_in(fx, t + XT_SEC(1) + XT_MS(10), .flags = F_ACK, .seq = nseq + 1, .ack = iss + 1);
	expect_none(fx);
	int s = xt_tcp_accept(fx->st, fx->ls, NULL, NULL);
	assert_true(s >= 0);
	assert_int_not_equal(s, old);
	expect_sock_state(fx, s, XT_ESTABLISHED);
	assert_int_equal(fx_cnt(fx)->tcp_timewait_reuse, 1);
}

/* Passive close: FIN -> CLOSE_WAIT, recv() sees EOF, our FIN -> LAST_ACK,
 * its ACK -> CLOSED. */
static void test_passive_close(void **state)
{
	struct fx *fx = *state;
	xt_time_t t = close_wait(fx);
	uint32_t ev = app_events(fx);
	assert_true(ev & XT_EV_IN);
	assert_true(ev & XT_EV_RDHUP);
	assert_true(ev & XT_EV_OUT);
	char buf[16];
	assert_int_equal(app_recv(fx, t + XT_MS(1), buf, sizeof buf, 0), 0);
	assert_int_equal(app_recv(fx, t + XT_MS(1), buf, sizeof buf, 0), 0);
	uint32_t fin = fx->our_nxt;
	assert_int_equal(app_shutdown(fx, t + XT_MS(2), XT_SHUT_WR), 0);
	expect_only(fx, F_FIN | F_ACK, fin, fx->peer_seq);
	expect_state(fx, XT_LAST_ACK);
	peer_ack(fx, t + XT_MS(102), fin + 1);
	expect_none(fx);
	expect_state(fx, XT_CLOSE);
	assert_true(app_events(fx) & XT_EV_HUP);
}

/* close() in CLOSE_WAIT sends FIN; the final ACK ends it silently; later
 * segments for the tuple are answered with RST (no socket). */
static void test_passive_close_by_close(void **state)
{
	struct fx *fx = *state;
	xt_time_t t = close_wait(fx);
	char buf[4];
	assert_int_equal(app_recv(fx, t, buf, sizeof buf, 0), 0);
	uint32_t fin = fx->our_nxt;
	assert_int_equal(app_close(fx, t + XT_MS(1)), 0);
	expect_only(fx, F_FIN | F_ACK, fin, fx->peer_seq);
	peer_ack(fx, t + XT_MS(101), fin + 1);
	expect_none(fx);
	/* RFC 9293 3.10.7.1: the connection is gone; an ACK-bearing segment
	 * gets <SEQ=SEG.ACK><CTL=RST>. */
	peer_ack(fx, t + XT_MS(200), fin + 1);
	const struct seg *r = expect_next(fx);
	assert_int_equal(r->flags, F_RST);
	assert_int_equal(r->seq, fin + 1);
}

/* Linux tcp_fin(): a FIN received in ESTABLISHED puts the connection in
 * interactive mode, so its ACK is delayed; a program that closes at once
 * acknowledges it with its own FIN (three segments close the connection,
 * not four), one that does not sends the ACK alone after the delayed-ACK
 * timeout. */
static void test_fin_ack_rides_on_our_fin(void **state)
{
	struct fx *fx = *state;
	xt_time_t t = established(fx) + XT_MS(1);
	peer_fin(fx, t);
	expect_none(fx);
	expect_state(fx, XT_CLOSE_WAIT);
	char buf[4];
	assert_int_equal(app_recv(fx, t + XT_MS(5), buf, sizeof buf, 0), 0);
	uint32_t fin = fx->our_nxt;
	assert_int_equal(app_close(fx, t + XT_MS(10)), 0);
	expect_only(fx, F_FIN | F_ACK, fin, fx->peer_seq);

	fx_restart(fx, NULL);
	t = established(fx) + XT_MS(1);
	peer_fin(fx, t);
	expect_none(fx);
	fx_advance(fx, XT_MS(39));
	expect_none(fx);
	fx_advance(fx, XT_MS(2));
	expect_ack(fx, fx->our_nxt, fx->peer_seq);
	expect_none(fx);
	assert_int_equal(app_getopt(fx, XT_TCP_QUICKACK), 1);
}

/* LAST_ACK: our FIN is retransmitted when not acknowledged. */
static void test_last_ack_fin_retransmitted(void **state)
{
	struct fx *fx = *state;
	xt_time_t t = last_ack(fx);
	uint32_t fin = fx->our_nxt - 1;
	fx_run(fx, t + XT_SEC(5));
	const struct seg *r = expect_seg(fx, F_FIN | F_ACK, fin, fx->peer_seq);
	assert_true(r->t > t);
	fx_drain(fx);
	peer_ack(fx, fx->now + XT_MS(1), fin + 1);
	expect_state(fx, XT_CLOSE);
}

/* Simultaneous close (RFC 9293 figure 13): FIN_WAIT1 + FIN -> CLOSING,
 * + ACK of our FIN -> TIME_WAIT. */
static void test_simultaneous_close(void **state)
{
	struct fx *fx = *state;
	xt_time_t t = closing(fx);
	peer_ack(fx, t + XT_MS(50), fx->our_nxt);
	expect_none(fx);
	expect_state(fx, XT_TIME_WAIT);
}

/* FIN_WAIT1 receiving FIN|ACK that acks our FIN goes straight to TIME_WAIT. */
static void test_fin_wait_1_finack_to_time_wait(void **state)
{
	struct fx *fx = *state;
	xt_time_t t = fin_wait_1(fx);
	fx->peer_ack = fx->our_nxt;
	peer_fin(fx, t + XT_MS(100));
	expect_ack(fx, fx->our_nxt, fx->peer_seq);
	expect_none(fx);
	expect_state(fx, XT_TIME_WAIT);
}

/* FIN_WAIT1: our FIN is retransmitted after an RTO. */
static void test_fin_wait_1_fin_retransmitted(void **state)
{
	struct fx *fx = *state;
	xt_time_t t = fin_wait_1(fx);
	uint32_t fin = fx->our_nxt - 1;
	fx_run(fx, t + XT_SEC(3));
	const struct seg *r = expect_seg(fx, F_FIN | F_ACK, fin, fx->peer_seq);
	assert_true(r->t >= t + XT_MS(200));
}

/* Half-close: after shutdown(WR) we keep receiving (RFC 9293 3.6). */
static void test_half_close_keeps_receiving(void **state)
{
	struct fx *fx = *state;
	xt_time_t t = fin_wait_2(fx);
	peer_data_n(fx, t + XT_MS(1), 500);
	struct seg a = last_ack_within(fx, XT_MS(200));
	assert_int_equal(a.ack, fx->peer_seq);
	assert_int_equal(a.seq, fx->our_nxt);
	uint8_t buf[1000];
	assert_int_equal(app_recv(fx, fx->now, buf, sizeof buf, 0), 500);
	assert_true(pat_check(buf, 500, 0, PAT_PEER));
	peer_fin(fx, fx->now + XT_MS(1));
	expect_ack(fx, fx->our_nxt, fx->peer_seq);
	expect_state(fx, XT_TIME_WAIT);
	assert_int_equal(app_recv(fx, fx->now, buf, sizeof buf, 0), 0);
}

/* Send after shutdown(WR): EPIPE (Linux). */
static void test_send_after_shutdown_epipe(void **state)
{
	struct fx *fx = *state;
	xt_time_t t = fin_wait_1(fx);
	assert_int_equal(app_send(fx, t + XT_MS(1), "x", 1), -EPIPE);
	expect_none(fx);
	peer_ack(fx, t + XT_MS(100), fx->our_nxt); /* FIN_WAIT2: still EPIPE */
	assert_int_equal(app_send(fx, t + XT_MS(101), "x", 1), -EPIPE);
	expect_none(fx);
}

/* CLOSE_WAIT: the half-closed peer still receives our data. */
static void test_close_wait_can_send(void **state)
{
	struct fx *fx = *state;
	xt_time_t t = close_wait(fx);
	uint32_t snd = fx->our_nxt;
	assert_int_equal(app_send_n(fx, t + XT_MS(1), 300), 300);
	expect_data(fx, snd, 300);
	expect_none(fx);
	peer_ack_all(fx, t + XT_MS(101));
	expect_none(fx);
	expect_state(fx, XT_CLOSE_WAIT);
}

/* An orphaned FIN_WAIT2 lives fin_timeout (60 s) and then disappears: the
 * peer's late FIN meets no socket and is reset (Linux tcp_fin_timeout). */
static void test_orphan_fin_wait_2_times_out(void **state)
{
	struct fx *fx = *state;
	xt_time_t t = established(fx) + XT_MS(1);
	uint32_t fin = fx->our_nxt;
	assert_int_equal(app_close(fx, t), 0);
	expect_only(fx, F_FIN | F_ACK, fin, fx->peer_seq);
	peer_ack(fx, t + XT_MS(100), fin + 1);
	expect_none(fx);
	fx_run(fx, t + XT_SEC(59));
	expect_none(fx);
	fx_run(fx, t + XT_MS(100) + XT_SEC(61));
	expect_none(fx);
	peer_fin(fx, fx->now + XT_MS(1));
	const struct seg *r = expect_next(fx);
	assert_int_equal(r->flags, F_RST);
	assert_int_equal(r->seq, fin + 1);
}

/* An orphaned FIN_WAIT2 still completes normally when the FIN comes. */
static void test_orphan_fin_wait_2_completes(void **state)
{
	struct fx *fx = *state;
	xt_time_t t = established(fx) + XT_MS(1);
	uint32_t fin = fx->our_nxt;
	assert_int_equal(app_close(fx, t), 0);
	expect_only(fx, F_FIN | F_ACK, fin, fx->peer_seq);
	peer_ack(fx, t + XT_MS(100), fin + 1);
	peer_fin(fx, t + XT_SEC(10));
	expect_ack(fx, fin + 1, fx->peer_seq);
	expect_none(fx);
}

/* Linux tcp_close(): closing with unread data sends RST, not FIN. */
static void test_close_with_unread_data_rst(void **state)
{
	struct fx *fx = *state;
	xt_time_t t = established(fx);
	peer_data_n(fx, t + XT_MS(1), 100);
	fx_run(fx, t + XT_MS(300));
	fx_drain(fx);
	uint64_t before = fx_cnt(fx)->tcp_abort_on_close;
	assert_int_equal(app_close(fx, t + XT_MS(301)), 0);
	expect_rst(fx, fx->our_nxt);
	expect_none(fx);
	assert_int_equal(fx_cnt(fx)->tcp_abort_on_close, before + 1);
	/* Nothing is left of the connection: the peer's next segment is reset. */
	peer_data_n(fx, t + XT_MS(400), 10);
	const struct seg *r = expect_next(fx);
	assert_true(r->flags & F_RST);
}

/* SO_LINGER {1, 0}: close aborts with RST. */
static void test_linger_zero_rst(void **state)
{
	struct fx *fx = *state;
	xt_time_t t = established(fx);
	assert_int_equal(app_setopt(fx, t, XT_SO_LINGER, 0), 0);
	assert_int_equal(app_getopt(fx, XT_SO_LINGER), 0);
	app_send_n(fx, t + XT_MS(1), 100); /* unacknowledged data does not matter */
	expect_data(fx, fx->our_iss + 1, 100);
	assert_int_equal(app_close(fx, t + XT_MS(2)), 0);
	expect_rst(fx, fx->our_nxt);
	expect_none(fx);
	fx_run(fx, t + XT_SEC(5)); /* no retransmission, no FIN */
	expect_none(fx);
}

/* A normal close without unread data sends FIN. */
static void test_close_sends_fin(void **state)
{
	struct fx *fx = *state;
	xt_time_t t = established(fx);
	uint32_t fin = fx->our_nxt;
	assert_int_equal(app_close(fx, t + XT_MS(1)), 0);
	expect_only(fx, F_FIN | F_ACK, fin, fx->peer_seq);
}

/* ---------------------------------------------------------------- */
/* refusal */

/* RFC 9293 3.10.7.3 SYN-SENT: an acceptable RST means "connection refused":
 * ECONNREFUSED through SO_ERROR (cleared on read), ERR|HUP in the events. */
static void test_connection_refused(void **state)
{
	struct fx *fx = *state;
	xt_time_t t = syn_sent(fx);
	seg_in(fx, t + XT_MS(10), .flags = F_RST | F_ACK, .seq = 0, .ack = fx->our_iss + 1, .win = WIN_ZERO);
	expect_none(fx);
	expect_state(fx, XT_CLOSE);
	uint32_t ev = app_events(fx);
	assert_true(ev & XT_EV_ERR);
	assert_true(ev & XT_EV_HUP);
	assert_int_equal(app_getopt(fx, XT_SO_ERROR), ECONNREFUSED);
	assert_int_equal(app_getopt(fx, XT_SO_ERROR), 0);
	fx_run(fx, t + XT_SEC(10)); /* no SYN retransmissions */
	expect_none(fx);
}

/* SYN-SENT: RST whose ACK is not acceptable, or RST without ACK, is dropped. */
static void test_syn_sent_bad_rst_ignored(void **state)
{
	struct fx *fx = *state;
	xt_time_t t = syn_sent(fx);
	seg_in(fx, t + XT_MS(10), .flags = F_RST | F_ACK, .seq = 0, .ack = fx->our_iss + 5);
	expect_none(fx);
	expect_state(fx, XT_SYN_SENT);
	seg_in(fx, t + XT_MS(20), .flags = F_RST, .seq = 0);
	expect_none(fx);
	expect_state(fx, XT_SYN_SENT);
	assert_int_equal(app_getopt(fx, XT_SO_ERROR), 0);
}

/* SYN-SENT: a SYN-ACK acknowledging something we never sent is answered by
 * <SEQ=SEG.ACK><CTL=RST> and the attempt goes on (RFC 9293 3.10.7.3). */
static void test_syn_sent_bad_synack_rst(void **state)
{
	struct fx *fx = *state;
	xt_time_t t = syn_sent(fx);
	seg_in(fx, t + XT_MS(10), .flags = F_SYN | F_ACK, .seq = 7777, .ack = fx->our_iss + 1000, .opts = OPT_MSS,
	       .mss = 1460);
	const struct seg *r = expect_next(fx);
	assert_int_equal(r->flags, F_RST);
	assert_int_equal(r->seq, fx->our_iss + 1000);
	expect_none(fx);
	expect_state(fx, XT_SYN_SENT);
}

/* RFC 9293 3.10.7.3 SYN-RECEIVED, passive: an RST returns the connection to
 * LISTEN; nothing is accepted and no reply is sent. */
static void test_syn_recv_rst_back_to_listen(void **state)
{
	struct fx *fx = *state;
	int ls = fx_listen(fx, FX_LISTEN_PORT, 16);
	fx->our_port = FX_LISTEN_PORT;
	fx->peer_port = FX_PEER_PORT;
	seg_in(fx, 0, .flags = F_SYN, .seq = 1000, .opts = OPT_MSS, .mss = 1460);
	const struct seg *sa = expect_next(fx);
	assert_int_equal(sa->flags, F_SYN | F_ACK);
	seg_in(fx, XT_MS(10), .flags = F_RST, .seq = 1001);
	expect_none(fx);
	fx_run(fx, XT_SEC(5)); /* the SYN-ACK is not retransmitted any more */
	expect_none(fx);
	assert_int_equal(xt_tcp_accept(fx->st, ls, NULL, NULL), -EAGAIN);
	expect_sock_state(fx, ls, XT_LISTEN);
}

/* SYN-ACK retransmissions: tcp_synack_retries = 5, at 1, 3, 7, 15, 31 s. */
static void test_synack_retransmissions(void **state)
{
	struct fx *fx = *state;
	fx_listen(fx, FX_LISTEN_PORT, 16);
	fx->our_port = FX_LISTEN_PORT;
	fx->peer_port = FX_PEER_PORT;
	seg_in(fx, 0, .flags = F_SYN, .seq = 1000, .opts = OPT_MSS, .mss = 1460);
	const struct seg *sa = expect_next(fx);
	assert_int_equal(sa->flags, F_SYN | F_ACK);
	assert_int_equal(sa->ack, 1001);
	fx_run(fx, XT_SEC(120));
	static const int at[] = { 1, 3, 7, 15, 31 };
	for (int i = 0; i < 5; i++) {
		const struct seg *r = expect_next(fx);
		assert_int_equal(r->flags, F_SYN | F_ACK);
		assert_int_equal(r->ack, 1001);
		assert_in_range(r->t, XT_SEC(at[i]) - XT_MS(5), XT_SEC(at[i]) + XT_MS(50));
	}
	expect_none(fx);
}

/* ---------------------------------------------------------------- */
/* listen backlog (Linux: the accept queue overflows when its length exceeds
 * min(backlog, somaxconn); a SYN then is dropped, and a handshake's last
 * ACK is dropped without RST so that the SYN-ACK is retransmitted) */

static uint32_t cl_iss(uint16_t port) { return 0x20000000u + (uint32_t)port * 0x10000u; }

static void cl_syn(struct fx *fx, xt_time_t t, uint16_t port)
{
	seg_in(fx, t, .flags = F_SYN, .seq = cl_iss(port), .opts = OPT_MSS, .mss = 1460, .sport = port,
	       .dport = FX_LISTEN_PORT, .src_ip = FX_PEER_IP, .dst_ip = FX_OUR_IP);
}

/* Returns the ISS of the SYN-ACK to port (fails unless that is the only output). */
static uint32_t cl_synack(struct fx *fx, uint16_t port)
{
	const struct seg *s = expect_tcp(fx);
	if (s->flags != (F_SYN | F_ACK) || s->dport != port || s->ack != cl_iss(port) + 1)
		fx_fail(fx, "expected SYN-ACK to port %u, got flags %02x to port %u ack %u", port, s->flags, s->dport,
			s->ack);
	uint32_t iss = s->seq;
	expect_none(fx);
	return iss;
}

static void cl_ack(struct fx *fx, xt_time_t t, uint16_t port, uint32_t iss)
{
	seg_in(fx, t, .flags = F_ACK, .seq = cl_iss(port) + 1, .ack = iss + 1, .sport = port,
	       .dport = FX_LISTEN_PORT, .src_ip = FX_PEER_IP, .dst_ip = FX_OUR_IP);
}

static void cl_connect(struct fx *fx, xt_time_t t, uint16_t port)
{
	cl_syn(fx, t, port);
	uint32_t iss = cl_synack(fx, port);
	cl_ack(fx, t + XT_MS(1), port, iss);
	expect_none(fx);
}

static void test_backlog_holds_backlog_plus_one(void **state)
{
	struct fx *fx = *state;
	int ls = fx_listen(fx, FX_LISTEN_PORT, 2);
	for (uint16_t i = 0; i < 3; i++)
		cl_connect(fx, XT_MS(10 * i), 41000 + i);
	uint64_t ovf = fx_cnt(fx)->drop_tcp_listen_overflow;
	/* The queue holds 3 > backlog: a new SYN is dropped silently. */
	cl_syn(fx, XT_MS(100), 41003);
	expect_none(fx);
	assert_int_equal(fx_cnt(fx)->drop_tcp_listen_overflow, ovf + 1);
	fx_run(fx, XT_SEC(5));
	expect_none(fx);
	for (int i = 0; i < 3; i++) {
		int s = xt_tcp_accept(fx->st, ls, NULL, NULL);
		assert_true(s >= 0);
		expect_sock_state(fx, s, XT_ESTABLISHED);
	}
	assert_int_equal(xt_tcp_accept(fx->st, ls, NULL, NULL), -EAGAIN);
	/* Room again: the client's retransmitted SYN is answered. */
	cl_syn(fx, XT_SEC(6), 41003);
	cl_synack(fx, 41003);
}

static void test_backlog_full_drops_final_ack(void **state)
{
	struct fx *fx = *state;
	int ls = fx_listen(fx, FX_LISTEN_PORT, 2);
	cl_connect(fx, XT_MS(0), 41000);
	cl_connect(fx, XT_MS(10), 41001);
	/* Client 2 gets its SYN-ACK while the queue still has room... */
	cl_syn(fx, XT_MS(20), 41002);
	uint32_t iss2 = cl_synack(fx, 41002);
	/* ...then client 3 completes first and fills it (3 > backlog 2). */
	cl_connect(fx, XT_MS(30), 41003);
	uint64_t ovf = fx_cnt(fx)->drop_tcp_listen_overflow;
	uint64_t rst = fx_cnt(fx)->tcp_rst_tx;
	cl_ack(fx, XT_MS(40), 41002, iss2);
	expect_none(fx); /* dropped: no RST */
	assert_int_equal(fx_cnt(fx)->tcp_rst_tx, rst);
	assert_true(fx_cnt(fx)->drop_tcp_listen_overflow > ovf);
	/* The request survives: its SYN-ACK is retransmitted after 1 s. */
	fx_run(fx, XT_MS(1100));
	const struct seg *s = expect_tcp(fx);
	assert_int_equal(s->flags, F_SYN | F_ACK);
	assert_int_equal(s->dport, 41002);
	assert_int_equal(s->seq, iss2);
	assert_int_equal(s->ack, cl_iss(41002) + 1);
	assert_in_range(s->t, XT_MS(1015), XT_MS(1030));
	expect_none(fx);
	/* The application accepts one; the client's next ACK completes. */
	int a = xt_tcp_accept(fx->st, ls, NULL, NULL);
	assert_true(a >= 0);
	cl_ack(fx, XT_MS(1120), 41002, iss2);
	expect_none(fx);
	int n = 0;
	uint16_t port;
	bool saw2 = false;
	int s2;
	while ((s2 = xt_tcp_accept(fx->st, ls, NULL, &port)) >= 0) {
		n++;
		saw2 |= port == 41002;
	}
	assert_int_equal(s2, -EAGAIN);
	assert_int_equal(n, 3);
	assert_true(saw2);
}

/* somaxconn caps the backlog: listen(100) with somaxconn 1 holds 2. */
static void test_somaxconn_caps_backlog(void **state)
{
	struct fx *fx = *state;
	struct xt_stack_cfg cfg;
	fx_default_cfg(&cfg);
	cfg.somaxconn = 1;
	fx_restart(fx, &cfg);
	int ls = fx_listen(fx, FX_LISTEN_PORT, 100);
	cl_connect(fx, XT_MS(0), 41000);
	cl_connect(fx, XT_MS(10), 41001);
	cl_syn(fx, XT_MS(20), 41002);
	expect_none(fx);
	assert_true(xt_tcp_accept(fx->st, ls, NULL, NULL) >= 0);
	assert_true(xt_tcp_accept(fx->st, ls, NULL, NULL) >= 0);
	assert_int_equal(xt_tcp_accept(fx->st, ls, NULL, NULL), -EAGAIN);
}

/* ---------------------------------------------------------------- */
/* ports */

static void test_ephemeral_port_range(void **state)
{
	struct fx *fx = *state;
	uint16_t seen[8];
	for (int i = 0; i < 8; i++) {
		int s = xt_tcp_open(fx->st);
		assert_true(s >= 0);
		assert_int_equal(xt_tcp_connect(fx->st, s, FX_PEER_IP, FX_REMOTE_PORT, fx_abs(fx, 0)), -EINPROGRESS);
		fx_flush(fx);
		const struct seg *syn = expect_tcp(fx);
		assert_int_equal(syn->flags, F_SYN);
		assert_in_range(syn->sport, 32768, 60999);
		uint32_t ip;
		uint16_t port;
		assert_int_equal(xt_tcp_getname(fx->st, s, 0, &ip, &port), 0);
		assert_int_equal(port, syn->sport);
		assert_int_equal(ip, FX_OUR_IP);
		for (int k = 0; k < i; k++)
			assert_int_not_equal(seen[k], syn->sport);
		seen[i] = syn->sport;
	}
}

/* Linux: no free ephemeral port for the destination -> EADDRNOTAVAIL. */
static void test_ephemeral_port_exhaustion(void **state)
{
	struct fx *fx = *state;
	struct xt_stack_cfg cfg;
	fx_default_cfg(&cfg);
	cfg.port_lo = 50000;
	cfg.port_hi = 50001;
	fx_restart(fx, &cfg);
	unsigned mask = 0;
	for (int i = 0; i < 2; i++) {
		int s = xt_tcp_open(fx->st);
		assert_int_equal(xt_tcp_connect(fx->st, s, FX_PEER_IP, FX_REMOTE_PORT, fx_abs(fx, 0)), -EINPROGRESS);
		fx_flush(fx);
		const struct seg *syn = expect_tcp(fx);
		assert_in_range(syn->sport, 50000, 50001);
		mask |= 1u << (syn->sport - 50000);
	}
	assert_int_equal(mask, 3);
	int s = xt_tcp_open(fx->st);
	assert_int_equal(xt_tcp_connect(fx->st, s, FX_PEER_IP, FX_REMOTE_PORT, fx_abs(fx, 0)), -EADDRNOTAVAIL);
	fx_flush(fx);
	expect_none(fx);
}

static void test_bind_conflict(void **state)
{
	struct fx *fx = *state;
	struct xt_stack *st = fx->st;
	int a = xt_tcp_open(st), b = xt_tcp_open(st), c = xt_tcp_open(st), d = xt_tcp_open(st);
	assert_int_equal(xt_tcp_bind(st, a, 0, 8080), 0);
	assert_int_equal(xt_tcp_bind(st, b, 0, 8080), -EADDRINUSE);
	assert_int_equal(xt_tcp_bind(st, b, FX_OUR_IP, 8080), -EADDRINUSE);
	assert_int_equal(xt_tcp_bind(st, b, 0, 8081), 0);
	assert_int_equal(xt_tcp_listen(st, a, 8), 0);
	/* SO_REUSEADDR does not allow sharing a port with a listener. */
	assert_int_equal(xt_tcp_setopt(st, c, XT_SO_REUSEADDR, 1, fx_abs(fx, 0)), 0);
	assert_int_equal(xt_tcp_bind(st, c, 0, 8080), -EADDRINUSE);
	/* Once the listener is closed, the port is free. */
	assert_int_equal(xt_tcp_close(st, a, fx_abs(fx, 0)), 0);
	assert_int_equal(xt_tcp_bind(st, d, 0, 8080), 0);
	fx_flush(fx);
	expect_none(fx);
}

/* ---------------------------------------------------------------- */
/* data path */

static void test_send_data(void **state)
{
	struct fx *fx = *state;
	xt_time_t t = established(fx);
	uint32_t snd = fx->our_nxt;
	assert_int_equal(app_send_n(fx, t + XT_MS(1), 200), 200);
	const struct seg *d = expect_data(fx, snd, 200);
	assert_true(d->flags & F_PSH); /* the end of a write is pushed (Linux) */
	expect_none(fx);
	assert_int_equal(xt_tcp_outq(fx->st, fx->s), 200);
	peer_ack_all(fx, t + XT_MS(101));
	expect_none(fx);
	assert_int_equal(xt_tcp_outq(fx->st, fx->s), 0);
	/* No retransmission once acknowledged. */
	fx_run(fx, t + XT_SEC(10));
	expect_none(fx);
}

static void test_recv_data(void **state)
{
	struct fx *fx = *state;
	xt_time_t t = established(fx);
	assert_false(app_events(fx) & XT_EV_IN);
	uint8_t buf[4096];
	assert_int_equal(app_recv(fx, t, buf, sizeof buf, 0), -EAGAIN);
	peer_data_n(fx, t + XT_MS(1), 1000);
	assert_true(app_events(fx) & XT_EV_IN);
	assert_int_equal(xt_tcp_inq(fx->st, fx->s), 1000);
	assert_int_equal(app_recv(fx, t + XT_MS(2), buf, 300, 0), 300);
	assert_true(pat_check(buf, 300, 0, PAT_PEER));
	assert_int_equal(app_recv(fx, t + XT_MS(2), buf, sizeof buf, 0), 700);
	assert_true(pat_check(buf, 700, 300, PAT_PEER));
	assert_int_equal(app_recv(fx, t + XT_MS(2), buf, sizeof buf, 0), -EAGAIN);
	assert_false(app_events(fx) & XT_EV_IN);
	struct seg a = last_ack_within(fx, XT_MS(200));
	assert_int_equal(a.ack, fx->peer_seq);
}

static void test_msg_peek(void **state)
{
	struct fx *fx = *state;
	xt_time_t t = established(fx);
	peer_data_n(fx, t + XT_MS(1), 100);
	uint8_t buf[256];
	assert_int_equal(app_recv(fx, t + XT_MS(2), buf, 50, XT_MSG_PEEK), 50);
	assert_true(pat_check(buf, 50, 0, PAT_PEER));
	assert_int_equal(app_recv(fx, t + XT_MS(2), buf, sizeof buf, XT_MSG_PEEK), 100);
	assert_true(pat_check(buf, 100, 0, PAT_PEER));
	assert_int_equal(xt_tcp_inq(fx->st, fx->s), 100);
	assert_int_equal(app_recv(fx, t + XT_MS(2), buf, sizeof buf, 0), 100);
	assert_true(pat_check(buf, 100, 0, PAT_PEER));
	assert_int_equal(app_recv(fx, t + XT_MS(2), buf, sizeof buf, XT_MSG_PEEK), -EAGAIN);
}

/* recv returns the data before the FIN, then 0 for ever. */
static void test_recv_zero_at_fin(void **state)
{
	struct fx *fx = *state;
	xt_time_t t = established(fx);
	peer_data_n(fx, t + XT_MS(1), 100);
	peer_fin(fx, t + XT_MS(2));
	uint8_t buf[256];
	assert_int_equal(app_recv(fx, t + XT_MS(3), buf, sizeof buf, 0), 100);
	assert_int_equal(app_recv(fx, t + XT_MS(3), buf, sizeof buf, 0), 0);
	assert_int_equal(app_recv(fx, t + XT_MS(3), buf, sizeof buf, 0), 0);
	assert_true(app_events(fx) & XT_EV_RDHUP);
	expect_state(fx, XT_CLOSE_WAIT);
}

/* Out-of-order data: immediate duplicate ACK (RFC 5681 4.2), no delivery
 * until the hole is filled, then an immediate ACK for everything. */
static void test_out_of_order_reassembly(void **state)
{
	struct fx *fx = *state;
	xt_time_t t = established(fx);
	uint32_t base = fx->peer_seq;
	uint8_t buf[8192];
	peer_data_at(fx, t + XT_MS(1), base + 1000, 1000);
	const struct seg *a = expect_ack(fx, fx->our_nxt, base);
	assert_false(a->opts & OPT_SACK); /* not negotiated */
	expect_none(fx);
	assert_int_equal(app_recv(fx, t + XT_MS(1), buf, sizeof buf, 0), -EAGAIN);
	peer_data_at(fx, t + XT_MS(2), base + 3000, 500);
	expect_ack(fx, fx->our_nxt, base);
	expect_none(fx);
	peer_data_at(fx, t + XT_MS(3), base, 1000);
	expect_ack(fx, fx->our_nxt, base + 2000);
	expect_none(fx);
	peer_data_at(fx, t + XT_MS(4), base + 2000, 1000);
	expect_ack(fx, fx->our_nxt, base + 3500);
	expect_none(fx);
	fx->peer_seq = base + 3500;
	assert_int_equal(app_recv(fx, t + XT_MS(5), buf, sizeof buf, 0), 3500);
	assert_true(pat_check(buf, 3500, 0, PAT_PEER));
	assert_true(fx_cnt(fx)->tcp_ooo_segs >= 2);
}

/* An empty ring starts again at its first byte (xt_ring_rewind): request and
 * response traffic reuses the same warm lines and pages.  Not while bytes
 * are left (a partial read, a partial ACK): they stay where they are. */
static void test_rings_rewind_when_empty(void **state)
{
	struct fx *fx = *state;
	xt_time_t t = established(fx);
	struct xt_sock *s = xt_sock_get(fx->st, fx->s);
	assert_non_null(s);
	uint8_t buf[4096];
	uint32_t una = fx->our_nxt;
	for (uint32_t i = 0; i < 40; i++) {
		t += XT_MS(1);
		peer_data_n(fx, t, 300);
		assert_int_equal(app_recv(fx, t, buf, 100, 0), 100);
		assert_int_equal(s->rq.head, 100); /* 200 bytes left: in place */
		assert_int_equal(app_recv(fx, t, buf + 100, sizeof buf - 100, 0), 200);
		assert_true(pat_check(buf, 300, i * 300, PAT_PEER));
		assert_int_equal(s->rq.head, 0);
		assert_int_equal(app_send_n(fx, t, 500), 500);
		fx_drain(fx);
		peer_ack(fx, t + XT_US(100), una + 200);
		assert_int_equal(s->sq.head, 200); /* 300 bytes unacknowledged: in place */
		assert_int_equal(s->sq.len, 300);
		una += 500;
		peer_ack(fx, t + XT_US(200), una);
		assert_int_equal(s->sq.len, 0);
		assert_int_equal(s->sq.head, 0);
	}
}

/* The free space of a ring as two spans when it wraps, one when it does not. */
static void test_ring_free_span(void **state)
{
	(void)state;
	uint8_t mem[1000];
	struct xt_ring r;
	xt_ring_init(&r, mem, sizeof mem, 0);
	uint8_t *p[2];
	uint32_t len[2];
	assert_int_equal(xt_ring_free_span(&r, p, len), 1000);
	assert_ptr_equal(p[0], mem);
	assert_int_equal(len[0], 1000);
	assert_int_equal(len[1], 0);
	uint8_t fill[1000] = { 0 };
	assert_int_equal(xt_ring_append(&r, fill, 900), 900);
	xt_ring_consume(&r, 850); /* head 850, 50 held: free are 900..999 and 0..849 */
	assert_int_equal(xt_ring_free_span(&r, p, len), 950);
	assert_ptr_equal(p[0], mem + 900);
	assert_int_equal(len[0], 100);
	assert_ptr_equal(p[1], mem);
	assert_int_equal(len[1], 850);
	assert_int_equal(xt_ring_append(&r, fill, 950), 950);
	assert_int_equal(xt_ring_free_span(&r, p, len), 0);
	assert_int_equal(len[0] + len[1], 0);
}

/* sendfile's one copy: bytes written into the send buffer's free space and
 * queued with xt_tcp_send_commit leave as a send of them would; nothing
 * beyond the free space is taken, and a socket that cannot send offers no
 * space (xt_tcp_send then says why). */
static void test_send_in_place(void **state)
{
	struct fx *fx = *state;
	xt_time_t t = established(fx);
	uint8_t *p[2];
	uint32_t len[2];
	long room = xt_tcp_send_space(fx->st, fx->s, p, len);
	assert_true(room > 3000);
	assert_int_equal((uint32_t)room, len[0] + len[1]);
	pat_fill(p[0], 1000, 0, PAT_OURS);
	assert_int_equal(xt_tcp_send_commit(fx->st, fx->s, 1000, 0, FX_T0 + t), 1000);
	xt_stack_flush(fx->st);
	fx->app_tx_off = 1000;
	uint32_t nxt = fx->our_nxt;
	expect_data(fx, nxt, 1000);
	assert_int_equal(xt_tcp_send_space(fx->st, fx->s, p, len), room - 1000);
	assert_int_equal(xt_tcp_send_commit(fx->st, fx->s, (uint32_t)room, 0, FX_T0 + t), -EINVAL);
	assert_int_equal(xt_tcp_send_commit(fx->st, fx->s, 0, 0, FX_T0 + t), 0);
	expect_none(fx);
	/* full: -EAGAIN, told apart from a socket that cannot send */
	struct xt_sock *s = xt_sock_get(fx->st, fx->s);
	uint32_t held = s->sq.len;
	s->sq.len = s->sq.cap;
	assert_int_equal(xt_tcp_send_space(fx->st, fx->s, p, len), -EAGAIN);
	assert_int_equal(len[0] + len[1], 0);
	s->sq.len = held;
	assert_int_equal(app_shutdown(fx, t + XT_MS(1), XT_SHUT_WR), 0);
	assert_int_equal(xt_tcp_send_space(fx->st, fx->s, p, len), 0);
	assert_int_equal(len[0] + len[1], 0);
	assert_int_equal(xt_tcp_send_commit(fx->st, fx->s, 10, 0, FX_T0 + t), -EINVAL);
	assert_int_equal(app_send_n(fx, t + XT_MS(2), 10), -EPIPE);
	assert_int_equal(xt_tcp_send_space(fx->st, 12345, p, len), -EBADF);
}

/* Out-of-order bytes sit at fixed offsets past the readable ones: a ring
 * read empty while they wait is not rewound, and they arrive intact. */
static void test_ring_kept_with_out_of_order(void **state)
{
	struct fx *fx = *state;
	xt_time_t t = established(fx);
	struct xt_sock *s = xt_sock_get(fx->st, fx->s);
	uint32_t base = fx->peer_seq;
	uint8_t buf[8192];
	peer_data_at(fx, t + XT_MS(1), base, 1000);
	peer_data_at(fx, t + XT_MS(1), base + 2000, 1000); /* a hole: 1000..2000 */
	assert_int_equal(app_recv(fx, t + XT_MS(2), buf, sizeof buf, 0), 1000);
	assert_true(pat_check(buf, 1000, 0, PAT_PEER));
	assert_int_equal(s->rq.len, 0);
	assert_int_equal(s->rq.head, 1000); /* the out-of-order 1000 bytes wait past it */
	peer_data_at(fx, t + XT_MS(3), base + 1000, 1000);
	fx->peer_seq = base + 3000;
	assert_int_equal(app_recv(fx, t + XT_MS(4), buf, sizeof buf, 0), 2000);
	assert_true(pat_check(buf, 2000, 1000, PAT_PEER));
	assert_int_equal(s->rq.head, 0);
}

/* RFC 2018 4: with SACK, duplicate ACKs report the out-of-order blocks, the
 * block holding the most recent segment first. */
static void test_out_of_order_sack_blocks(void **state)
{
	struct fx *fx = *state;
	fx->peer.sack_perm = true;
	xt_time_t t = established(fx);
	assert_true(fx->sack_on);
	uint32_t base = fx->peer_seq;
	peer_data_at(fx, t + XT_MS(1), base + 1000, 1000);
	const struct seg *a = expect_ack(fx, fx->our_nxt, base);
	assert_int_equal(a->nsack, 1);
	assert_int_equal(a->sack[0][0], base + 1000);
	assert_int_equal(a->sack[0][1], base + 2000);
	peer_data_at(fx, t + XT_MS(2), base + 3000, 1000);
	a = expect_ack(fx, fx->our_nxt, base);
	assert_int_equal(a->nsack, 2);
	assert_int_equal(a->sack[0][0], base + 3000);
	assert_int_equal(a->sack[0][1], base + 4000);
	assert_int_equal(a->sack[1][0], base + 1000);
	assert_int_equal(a->sack[1][1], base + 2000);
	/* Filling the gap between the blocks merges them. */
	peer_data_at(fx, t + XT_MS(3), base + 2000, 1000);
	a = expect_ack(fx, fx->our_nxt, base);
	assert_int_equal(a->nsack, 1);
	assert_int_equal(a->sack[0][0], base + 1000);
	assert_int_equal(a->sack[0][1], base + 4000);
	peer_data_at(fx, t + XT_MS(4), base, 1000);
	a = expect_ack(fx, fx->our_nxt, base + 4000);
	assert_int_equal(a->nsack, 0);
	expect_none(fx);
	fx->peer_seq = base + 4000;
	uint8_t buf[8192];
	assert_int_equal(app_recv(fx, t + XT_MS(5), buf, sizeof buf, 0), 4000);
	assert_true(pat_check(buf, 4000, 0, PAT_PEER));
}

/* A duplicate of received data is acknowledged at once and delivered once. */
static void test_duplicate_data_acked(void **state)
{
	struct fx *fx = *state;
	xt_time_t t = established(fx);
	uint32_t base = fx->peer_seq;
	peer_data_n(fx, t + XT_MS(1), 100);
	fx_run(fx, t + XT_MS(300));
	fx_drain(fx);
	peer_data_at(fx, t + XT_MS(301), base, 100);
	expect_ack(fx, fx->our_nxt, base + 100);
	expect_none(fx);
	uint8_t buf[512];
	assert_int_equal(app_recv(fx, t + XT_MS(302), buf, sizeof buf, 0), 100);
	assert_int_equal(app_recv(fx, t + XT_MS(302), buf, sizeof buf, 0), -EAGAIN);
}

/* Overlapping retransmission: only the new part is delivered. */
static void test_overlap_trimmed(void **state)
{
	struct fx *fx = *state;
	xt_time_t t = established(fx);
	uint32_t base = fx->peer_seq;
	peer_data_at(fx, t + XT_MS(1), base, 100);
	peer_data_at(fx, t + XT_MS(2), base + 50, 150);
	fx->peer_seq = base + 200;
	uint8_t buf[512];
	assert_int_equal(app_recv(fx, t + XT_MS(3), buf, sizeof buf, 0), 200);
	assert_true(pat_check(buf, 200, 0, PAT_PEER));
	struct seg a = last_ack_within(fx, XT_MS(200));
	assert_int_equal(a.ack, base + 200);
}

/* The advertised window shrinks as data is buffered, its right edge never
 * moves left (RFC 9293 3.8.6.2.2), a full buffer advertises 0 and answers
 * probes, a small read opens nothing (receiver SWS avoidance, RFC 9293
 * 3.8.6.2.2 / RFC 1122 4.2.3.3), and reading everything sends a window
 * update at once. */
static void recv_window_run(struct fx *fx, int peer_ws, uint32_t rcvbuf)
{
	struct xt_stack_cfg cfg;
	fx_default_cfg(&cfg);
	cfg.rcvbuf = rcvbuf;
	fx_restart(fx, &cfg);
	fx->peer.ws = peer_ws;
	xt_time_t t = established(fx);
	unsigned sh = fx->ws_on ? fx->our_ws : 0;
	/* the window our handshake ACK advertised */
	uint32_t ack = fx->peer_seq, wnd = (uint32_t)fx->last.win << sh;
	assert_true(wnd > 0);
	uint32_t edge = ack + wnd, received = 0;
	int rounds = 0;
	while (wnd > 0) {
		uint32_t room = ack + wnd - fx->peer_seq;
		uint32_t n = room < 1460 ? room : 1460;
		if (n == 0)
			break;
		t = fx->now + XT_MS(1);
		peer_data_n(fx, t, n);
		received += n;
		struct seg a = last_ack_within(fx, XT_MS(200));
		uint32_t w = (uint32_t)a.win << sh;
		if (a.ack != fx->peer_seq)
			fx_fail(fx, "in-window data dropped: %u bytes sent inside the advertised window "
				"(right edge %u), ACK %u covers only %u of them; new window %u",
				n, edge - fx->peer_iss, a.ack - fx->peer_iss, n - (fx->peer_seq - a.ack), w);
		/* RFC 7323 2.4 truncates the scaled window (SEG.WND = RCV.WND >>
		 * shift), so the edge may recede by less than one scaling unit
		 * (appendix F); never by more. */
		if (seq_lt(a.ack + w + ((1u << sh) - 1), edge))
			fx_fail(fx, "the window shrank: right edge %u -> %u", edge - fx->peer_iss,
				a.ack + w - fx->peer_iss);
		if (seq_lt(edge, a.ack + w))
			edge = a.ack + w;
		ack = a.ack;
		wnd = w;
		assert_true(++rounds < 2000);
	}
	assert_int_equal(ack, fx->peer_seq);
	assert_int_equal(wnd, 0);
	assert_true(received <= 2 * rcvbuf + 1460);
	/* A zero-window probe is dropped and answered with the same ACK. */
	peer_data_at(fx, fx->now + XT_MS(1), fx->peer_seq, 1);
	const struct seg *p = expect_ack(fx, fx->our_nxt, fx->peer_seq);
	assert_int_equal(p->win, 0);
	expect_none(fx);
	/* Reading a little opens less than an MSS: no update. */
	uint8_t *buf = malloc(received + 10);
	assert_int_equal(app_recv(fx, fx->now + XT_MS(1), buf, 100, 0), 100);
	assert_true(pat_check(buf, 100, 0, PAT_PEER));
	expect_none(fx);
	fx_advance(fx, XT_MS(300));
	expect_none(fx);
	/* Reading everything: an immediate window update of at least an MSS. */
	assert_int_equal(app_recv(fx, fx->now, buf, received, 0), received - 100);
	assert_true(pat_check(buf, received - 100, 100, PAT_PEER));
	free(buf);
	const struct seg *u = expect_ack(fx, fx->our_nxt, fx->peer_seq);
	assert_true(((uint32_t)u->win << sh) >= 1460);
	expect_none(fx);
}

static void test_recv_window_shrinks_and_reopens(void **state) { recv_window_run(*state, -1, 16384); }

/* The same with window scaling in force: windows are counted in units of
 * 1 << our shift and still never shrink. */
static void test_recv_window_scaled(void **state)
{
	struct fx *fx = *state;
	recv_window_run(fx, 7, 262144);
	assert_true(fx->ws_on);
	assert_true(fx->our_ws > 0); /* a 256 KiB buffer needs scaling */
}

/* A server whose program reads each request as it comes announces the same
 * window field in every reply, as Linux does: the right edge follows the
 * free space while the window is wide open.  A Linux peer keeps a segment
 * on its header-prediction fast path only when the field is the one it
 * last saw (tcp_rcv_established()).  With the buffer filling up, receiver
 * SWS avoidance holds the edge again (test_recv_window_*). */
static void request_reply_run(struct fx *fx, int peer_ws)
{
	struct xt_stack_cfg cfg;
	fx_default_cfg(&cfg);
	cfg.rcvbuf = 262144;
	fx_restart(fx, &cfg);
	fx->peer.ws = peer_ws;
	xt_time_t t = established(fx);
	uint8_t buf[64];
	int first = -1, quick = 0;
	for (int i = 0; i < 100; i++) {
		t += XT_MS(1);
		uint32_t snd = fx->our_nxt;
		fx->peer_ack = snd; /* the request acknowledges the last reply */
		peer_data_n(fx, t, 36);
		assert_int_equal(app_recv(fx, t, buf, sizeof buf, 0), 36);
		assert_int_equal(app_send_n(fx, t, 5), 5);
		/* a quick ACK of the request may go first (the connection's
		 * start), announcing the window less the unread request */
		struct seg segs[4];
		int n = collect(fx, segs, 4), k = n - 1;
		assert_true(n >= 1 && n <= 2);
		assert_int_equal(segs[k].seq, snd);
		assert_int_equal(segs[k].len, 5);
		assert_int_equal(segs[k].ack, fx->peer_seq);
		if (first < 0)
			first = segs[k].win;
		else if (segs[k].win != first)
			fx_fail(fx, "reply %d announces window field %u, the first reply %d", i, segs[k].win, first);
		quick += n - 1;
	}
	assert_true(first > 0);
	assert_true(quick < 50);
}

static void test_request_reply_window_steady(void **state) { request_reply_run(*state, -1); }
static void test_request_reply_window_steady_scaled(void **state)
{
	struct fx *fx = *state;
	request_reply_run(fx, 7);
	assert_true(fx->ws_on && fx->our_ws > 0);
}

/* Linux's interactive (ping-pong) mode: data sent within the ACK timeout
 * of data received turns quick ACKs off, so a request is not ACKed on its
 * own when the reply will carry the ACK; a delayed ACK that had to go out
 * alone turns them back on; TCP_QUICKACK reads back !pingpong and sets it
 * (tcp_event_data_sent(), tcp_delack_timer_handler(),
 * tcp_sock_set_quickack()). */
static void test_pingpong_mode(void **state)
{
	struct fx *fx = *state;
	xt_time_t t = established(fx);
	uint8_t buf[64];
	assert_int_equal(app_getopt(fx, XT_TCP_QUICKACK), 1);
	/* the first request: quick-ACK mode at the connection's start */
	peer_data_n(fx, t + XT_MS(1), 30);
	expect_ack(fx, fx->our_nxt, fx->peer_seq);
	expect_none(fx);
	assert_int_equal(app_recv(fx, t + XT_MS(1), buf, sizeof buf, 0), 30);
	uint32_t snd = fx->our_nxt;
	assert_int_equal(app_send_n(fx, t + XT_MS(2), 10), 10);
	expect_data(fx, snd, 10);
	assert_int_equal(app_getopt(fx, XT_TCP_QUICKACK), 0);
	/* the second: no ACK of its own, the reply carries it */
	fx->peer_ack = fx->our_nxt;
	peer_data_n(fx, t + XT_MS(3), 30);
	expect_none(fx);
	assert_int_equal(app_recv(fx, t + XT_MS(3), buf, sizeof buf, 0), 30);
	snd = fx->our_nxt;
	assert_int_equal(app_send_n(fx, t + XT_MS(4), 10), 10);
	const struct seg *d = expect_data(fx, snd, 10);
	assert_int_equal(d->ack, fx->peer_seq);
	expect_none(fx);
	/* a message with no reply: the delayed ACK, then quick ACKs again */
	fx->peer_ack = fx->our_nxt;
	peer_data_n(fx, t + XT_MS(5), 30);
	expect_none(fx);
	assert_int_equal(app_recv(fx, t + XT_MS(5), buf, sizeof buf, 0), 30);
	expect_none(fx);
	fx_advance(fx, XT_MS(39));
	expect_none(fx);
	fx_advance(fx, XT_MS(2));
	expect_ack(fx, fx->our_nxt, fx->peer_seq);
	assert_int_equal(app_getopt(fx, XT_TCP_QUICKACK), 1);
	peer_data_n(fx, fx->now + XT_MS(1), 30);
	expect_ack(fx, fx->our_nxt, fx->peer_seq);
	expect_none(fx);
	/* the option sets the mode and reads it back */
	assert_int_equal(app_setopt(fx, fx->now, XT_TCP_QUICKACK, 0), 0);
	assert_int_equal(app_getopt(fx, XT_TCP_QUICKACK), 0);
	assert_int_equal(app_setopt(fx, fx->now, XT_TCP_QUICKACK, 1), 0);
	assert_int_equal(app_getopt(fx, XT_TCP_QUICKACK), 1);
}

/* LAST_ACK / FIN_WAIT1 end only when the FIN itself is acknowledged. */
static void test_fin_needs_its_own_ack(void **state)
{
	struct fx *fx = *state;
	xt_time_t t = close_wait(fx);
	uint32_t snd = fx->our_nxt;
	app_send_n(fx, t + XT_MS(1), 100);
	assert_int_equal(app_shutdown(fx, t + XT_MS(1), XT_SHUT_WR), 0);
	struct seg segs[4];
	int n = collect(fx, segs, 4);
	assert_true(n >= 1 && n <= 2);
	assert_true(segs[n - 1].flags & F_FIN);
	assert_int_equal(segs[n - 1].seq + segs[n - 1].len, snd + 100);
	expect_state(fx, XT_LAST_ACK);
	peer_ack(fx, t + XT_MS(100), snd + 100); /* data only */
	expect_state(fx, XT_LAST_ACK);
	peer_ack(fx, t + XT_MS(101), snd + 101);
	expect_state(fx, XT_CLOSE);
	expect_none(fx);
}

/* Events: the listener is readable while connections wait to be accepted. */
static void test_data_both_ways(void **state)
{
	struct fx *fx = *state;
	fx->passive = true;
	xt_time_t t = established(fx);
	uint32_t snd = fx->our_nxt;
	assert_int_equal(app_send_n(fx, t + XT_MS(1), 1000), 1000);
	expect_data(fx, snd, 1000);
	/* The peer's data acks ours. */
	fx->peer_ack = snd + 1000;
	peer_data_n(fx, t + XT_MS(50), 500);
	assert_int_equal(xt_tcp_outq(fx->st, fx->s), 0);
	uint8_t buf[600];
	assert_int_equal(app_recv(fx, t + XT_MS(51), buf, sizeof buf, 0), 500);
	assert_true(pat_check(buf, 500, 0, PAT_PEER));
	fx_drain(fx); /* an ACK may already have gone (quick ACK at start) */
	/* Our reply piggybacks the ACK. */
	snd = fx->our_nxt;
	assert_int_equal(app_send_n(fx, t + XT_MS(52), 10), 10);
	const struct seg *d = expect_next(fx);
	assert_int_equal(d->seq, snd);
	assert_int_equal(d->ack, fx->peer_seq);
	assert_int_equal(d->len, 10);
}

/* Sequence numbers wrap: the peer's ISS just below 2^32. */
static void test_peer_sequence_wraps(void **state)
{
	struct fx *fx = *state;
	fx->peer.iss = 0xfffffe00u;
	established(fx);
	for (int i = 0; i < 4; i++) {
		peer_data_n(fx, fx->now + XT_MS(1), 400);
		fx_advance(fx, XT_MS(100));
		fx_drain(fx);
	}
	uint8_t buf[2000];
	assert_int_equal(app_recv(fx, fx->now, buf, sizeof buf, 0), 1600);
	assert_true(pat_check(buf, 1600, 0, PAT_PEER));
	assert_true(seq_lt(0xfffffe00u, fx->peer_seq));
	assert_true(fx->peer_seq < 0x1000);
}

/* ---------------------------------------------------------------- */
/* more closing and data-path rules */

/* RFC 9293 3.6: the FIN follows every queued byte; shutdown with data
 * still queued moves to FIN_WAIT1 but sends the FIN only after the data. */
static void test_fin_after_queued_data(void **state)
{
	struct fx *fx = *state;
	xt_time_t t = established(fx) + XT_MS(1);
	uint32_t snd = fx->our_nxt;
	assert_int_equal(app_send_n(fx, t, 20 * 1460), 20 * 1460);
	for (int i = 0; i < 10; i++)
		expect_data(fx, snd + (uint32_t)i * 1460, 1460);
	assert_int_equal(app_shutdown(fx, t + XT_MS(1), XT_SHUT_WR), 0);
	expect_none(fx);
	expect_state(fx, XT_FIN_WAIT1);
	uint32_t end = snd + 20 * 1460, fin_seq = 0, hi = snd + 10 * 1460;
	bool fin = false;
	for (int round = 0; round < 10 && !fin; round++) {
		peer_ack(fx, fx->now + XT_MS(100), fx->our_nxt);
		struct seg seg;
		while (fx_pop(fx, &seg)) {
			assert_true(seg.valid);
			assert_false(fin); /* nothing after the FIN */
			if (seg.len) {
				assert_int_equal(seg.seq, hi);
				hi += seg.len;
			}
			if (seg.flags & F_FIN) {
				fin = true;
				fin_seq = seg.seq + seg.len;
			}
		}
	}
	assert_true(fin);
	assert_int_equal(hi, end);
	assert_int_equal(fin_seq, end);
	peer_ack(fx, fx->now + XT_MS(100), end + 1);
	expect_state(fx, XT_FIN_WAIT2);
}

/* A FIN beyond a hole waits for the hole (RFC 9293 3.10.7.4, eighth step:
 * "If the FIN bit is set ... the FIN implies PUSH for any segment text not
 * yet delivered", processed only in sequence). */
static void test_fin_beyond_hole_waits(void **state)
{
	struct fx *fx = *state;
	xt_time_t t = established(fx);
	uint32_t base = fx->peer_seq;
	uint8_t d[1000];
	pat_fill(d, 1000, 1000, PAT_PEER);
	seg_in(fx, t + XT_MS(1), .flags = F_FIN | F_ACK | F_PSH, .seq = base + 1000, .ack = fx->peer_ack, .data = d,
	       .len = 1000);
	expect_ack(fx, fx->our_nxt, base);
	expect_none(fx);
	expect_state(fx, XT_ESTABLISHED);
	uint8_t buf[4000];
	assert_int_equal(app_recv(fx, t + XT_MS(1), buf, sizeof buf, 0), -EAGAIN);
	assert_false(app_events(fx) & XT_EV_RDHUP);
	peer_data_at(fx, t + XT_MS(2), base, 1000);
	fx->peer_seq = base + 2001;
	fx_run(fx, t + XT_MS(300));
	struct seg a;
	bool got = false;
	while (fx_pop(fx, &a))
		got |= a.ack == base + 2001;
	assert_true(got);
	expect_state(fx, XT_CLOSE_WAIT);
	assert_int_equal(app_recv(fx, fx->now, buf, sizeof buf, 0), 2000);
	assert_true(pat_check(buf, 2000, 0, PAT_PEER));
	assert_int_equal(app_recv(fx, fx->now, buf, sizeof buf, 0), 0);
}

/* Data and FIN in one segment. */
static void test_data_with_fin(void **state)
{
	struct fx *fx = *state;
	xt_time_t t = established(fx);
	uint8_t d[100];
	pat_fill(d, 100, 0, PAT_PEER);
	uint32_t base = fx->peer_seq;
	seg_in(fx, t + XT_MS(1), .flags = F_FIN | F_ACK | F_PSH, .seq = base, .ack = fx->peer_ack, .data = d, .len = 100);
	fx->peer_seq = base + 101;
	expect_state(fx, XT_CLOSE_WAIT);
	uint8_t buf[200];
	assert_int_equal(app_recv(fx, t + XT_MS(2), buf, sizeof buf, 0), 100);
	assert_true(pat_check(buf, 100, 0, PAT_PEER));
	assert_int_equal(app_recv(fx, t + XT_MS(2), buf, sizeof buf, 0), 0);
	struct seg a = last_ack_within(fx, XT_MS(200));
	assert_int_equal(a.ack, base + 101);
}

/* A full send buffer: send takes what fits, then -EAGAIN and no XT_EV_OUT;
 * once the peer acknowledges, writable again. */
static void test_send_buffer_full(void **state)
{
	struct fx *fx = *state;
	struct xt_stack_cfg cfg;
	fx_default_cfg(&cfg);
	cfg.sndbuf = 16384;
	fx_restart(fx, &cfg);
	xt_time_t t = established(fx);
	peer_ack_win(fx, t + XT_MS(1), fx->our_nxt, 0);
	long total = 0, r = 0;
	for (int i = 0; i < 100; i++) {
		r = app_send_n(fx, t + XT_MS(2), 8192);
		if (r < 0)
			break;
		assert_true(r > 0);
		total += r;
	}
	assert_int_equal(r, -EAGAIN);
	assert_true(total >= 8192);
	assert_true(total <= 4 * 16384);
	assert_false(app_events(fx) & XT_EV_OUT);
	fx_drain(fx);
	fx->peer.wnd = 65535;
	for (int i = 0; i < 200 && xt_tcp_outq(fx->st, fx->s) > 0; i++) {
		peer_ack(fx, fx->now + XT_MS(10), fx->our_nxt);
		fx_drain(fx);
	}
	assert_int_equal(xt_tcp_outq(fx->st, fx->s), 0);
	assert_int_equal(fx->our_nxt, fx->our_iss + 1 + (uint32_t)total);
	assert_true(app_events(fx) & XT_EV_OUT);
	assert_true(app_send_n(fx, fx->now + XT_MS(1), 100) == 100);
}

/* Linux inet_csk_listen_stop(): closing a listener resets the connections
 * still waiting in its accept queue; half-open requests vanish silently. */
static void test_listener_close_resets_unaccepted(void **state)
{
	struct fx *fx = *state;
	int ls = fx_listen(fx, FX_LISTEN_PORT, 8);
	cl_syn(fx, XT_MS(1), 41000);
	uint32_t iss0 = cl_synack(fx, 41000);
	cl_ack(fx, XT_MS(2), 41000, iss0);
	cl_syn(fx, XT_MS(3), 41001);
	uint32_t iss1 = cl_synack(fx, 41001);
	fx_run(fx, XT_MS(10));
	assert_int_equal(xt_tcp_close(fx->st, ls, fx_abs(fx, fx->now)), 0);
	fx_flush(fx);
	const struct seg *r = expect_tcp(fx);
	assert_true(r->flags & F_RST);
	assert_int_equal(r->dport, 41000);
	assert_int_equal(r->seq, iss0 + 1);
	expect_none(fx);
	fx_run(fx, XT_SEC(5)); /* no SYN-ACK retransmission for the request */
	expect_none(fx);
	cl_ack(fx, XT_SEC(5), 41001, iss1);
	r = expect_tcp(fx);
	assert_int_equal(r->flags, F_RST);
	assert_int_equal(r->seq, iss1 + 1);
}

/* RFC 9293 3.10.7.4 SYN-RECEIVED: an unacceptable ACK gets
 * <SEQ=SEG.ACK><CTL=RST>; the half-open connection survives and the right
 * ACK completes it (Linux tcp_check_req). */
static void test_syn_recv_bad_ack_rst(void **state)
{
	struct fx *fx = *state;
	int ls = fx_listen(fx, FX_LISTEN_PORT, 8);
	cl_syn(fx, XT_MS(1), 41000);
	uint32_t iss = cl_synack(fx, 41000);
	seg_in(fx, XT_MS(2), .flags = F_ACK, .seq = cl_iss(41000) + 1, .ack = iss + 1000, .sport = 41000,
	       .dport = FX_LISTEN_PORT, .src_ip = FX_PEER_IP, .dst_ip = FX_OUR_IP);
	const struct seg *r = expect_tcp(fx);
	assert_int_equal(r->flags, F_RST);
	assert_int_equal(r->seq, iss + 1000);
	expect_none(fx);
	assert_int_equal(xt_tcp_accept(fx->st, ls, NULL, NULL), -EAGAIN);
	cl_ack(fx, XT_MS(3), 41000, iss);
	expect_none(fx);
	assert_true(xt_tcp_accept(fx->st, ls, NULL, NULL) >= 0);
}

/* A retransmitted SYN in SYN-RECEIVED gets the same SYN-ACK again. */
static void test_syn_recv_dup_syn_resends_synack(void **state)
{
	struct fx *fx = *state;
	fx_listen(fx, FX_LISTEN_PORT, 8);
	cl_syn(fx, XT_MS(1), 41000);
	uint32_t iss = cl_synack(fx, 41000);
	cl_syn(fx, XT_MS(600), 41000);
	assert_int_equal(cl_synack(fx, 41000), iss);
}

/* TCP_MAXSEG before connect caps the MSS we announce (Linux user_mss). */
static void test_maxseg_before_connect(void **state)
{
	struct fx *fx = *state;
	int s = xt_tcp_open(fx->st);
	assert_int_equal(xt_tcp_setopt(fx->st, s, XT_TCP_MAXSEG, 1000, fx_abs(fx, 0)), 0);
	assert_int_equal(xt_tcp_connect(fx->st, s, FX_PEER_IP, FX_REMOTE_PORT, fx_abs(fx, 0)), -EINPROGRESS);
	fx_flush(fx);
	const struct seg *syn = expect_tcp(fx);
	assert_int_equal(syn->flags, F_SYN);
	assert_int_equal(syn->mss, 1000);
}

/* ---------------------------------------------------------------- */
/* ICMP errors about our segments (RFC 1122 4.2.3.9, RFC 5927, RFC 1191) */

/* Port unreachable during connect: a hard error, the attempt fails at once
 * with ECONNREFUSED (Linux tcp_v4_err in SYN_SENT). */
static void test_icmp_port_unreach_in_syn_sent(void **state)
{
	struct fx *fx = *state;
	xt_time_t t = syn_sent(fx);
	icmp_in(fx, t + XT_MS(10), 0, XT_ICMP_DEST_UNREACH, 3, 0, &fx->our_syn);
	expect_none(fx);
	expect_state(fx, XT_CLOSE);
	assert_int_equal(app_getopt(fx, XT_SO_ERROR), ECONNREFUSED);
	fx_run(fx, t + XT_SEC(10));
	expect_none(fx);
}

/* On an established connection the same error is soft: nothing breaks. */
static void test_icmp_unreach_established_is_soft(void **state)
{
	struct fx *fx = *state;
	xt_time_t t = established(fx) + XT_MS(1);
	uint32_t snd = fx->our_nxt;
	app_send_n(fx, t, 100);
	struct seg d = *expect_data(fx, snd, 100);
	icmp_in(fx, t + XT_MS(10), 0, XT_ICMP_DEST_UNREACH, 3, 0, &d);
	expect_none(fx);
	expect_state(fx, XT_ESTABLISHED);
	peer_ack(fx, t + XT_MS(100), snd + 100);
	expect_state(fx, XT_ESTABLISHED);
	assert_int_equal(xt_tcp_outq(fx->st, fx->s), 0);
}

/* Fragmentation needed (RFC 1191): the MSS drops to MTU - 40 and the data
 * in flight is resent at once in the smaller size; the frames carry DF. */
static void test_icmp_frag_needed_lowers_mss(void **state)
{
	struct fx *fx = *state;
	xt_time_t t = established(fx) + XT_MS(1);
	uint32_t snd = fx->our_nxt;
	assert_int_equal(app_setopt(fx, t, XT_TCP_NODELAY, 1), 0);
	app_send_n(fx, t, 3000);
	struct seg first = *expect_data(fx, snd, 1460);
	assert_true(first.df);
	fx_drain(fx);
	uint64_t pm = fx_cnt(fx)->tcp_icmp_pmtu;
	icmp_in(fx, t + XT_MS(10), FX_OTHER_IP, XT_ICMP_DEST_UNREACH, XT_ICMP_FRAG_NEEDED, 1000, &first);
	assert_int_equal(fx_cnt(fx)->tcp_icmp_pmtu, pm + 1);
	const struct seg *r = expect_next(fx);
	assert_int_equal(r->seq, snd);
	assert_int_equal(r->len, 960);
	assert_int_equal(r->t, t + XT_MS(10));
	fx_drain(fx);
	peer_ack(fx, t + XT_MS(200), snd + 3000);
	fx_drain(fx);
	assert_int_equal(xt_tcp_outq(fx->st, fx->s), 0);
	app_send_n(fx, t + XT_MS(201), 2000);
	r = expect_next(fx);
	assert_int_equal(r->len, 960);
	assert_int_equal(app_info(fx).snd_mss, 960);
}

/* RFC 5927 4.1: an ICMP error quoting a sequence number outside
 * SND.UNA..SND.NXT is ignored. */
static void test_icmp_out_of_window_ignored(void **state)
{
	struct fx *fx = *state;
	xt_time_t t = established(fx) + XT_MS(1);
	uint32_t snd = fx->our_nxt;
	app_send_n(fx, t, 100);
	struct seg q = *expect_data(fx, snd, 100);
	q.seq = snd - 100000;
	icmp_in(fx, t + XT_MS(10), FX_OTHER_IP, XT_ICMP_DEST_UNREACH, XT_ICMP_FRAG_NEEDED, 1000, &q);
	expect_none(fx);
	peer_ack(fx, t + XT_MS(100), snd + 100);
	app_send_n(fx, t + XT_MS(101), 3000);
	const struct seg *r = expect_next(fx);
	assert_int_equal(r->len, 1460);
	fx_drain(fx);
	/* Also during connect: the SYN attempt is not aborted. */
	(void)q;
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		T(test_rings_rewind_when_empty),
		cmocka_unit_test(test_ring_free_span),
		T(test_send_in_place),
		T(test_ring_kept_with_out_of_order),
		T(test_active_open_syn),
		T(test_active_open_established),
		T(test_passive_open_accept),
		T(test_synack_options_only_when_offered),
		T(test_options_negotiated_all),
		T(test_options_not_negotiated),
		T(test_ts_echo),
		T(test_mss_follows_mtu),
		T(test_wscale_peer_window_scaled),
		T(test_peer_mss_honoured),
		T(test_peer_mss_capped_by_mtu),
		T(test_no_mss_option_means_536),
		T(test_mss_minus_timestamps),
		T(test_options_disabled_by_config),
		T(test_event_callback),
		T(test_simultaneous_open),
		T(test_simultaneous_open_plain_ack),
		T(test_active_close_time_wait_60s),
		T(test_orphan_time_wait),
		T(test_time_wait_fin_restarts_timer),
		T(test_time_wait_old_syn_acked),
		T(test_time_wait_new_syn_reopens),
		T(test_passive_close),
		T(test_passive_close_by_close),
		T(test_fin_ack_rides_on_our_fin),
		T(test_last_ack_fin_retransmitted),
		T(test_simultaneous_close),
		T(test_fin_wait_1_finack_to_time_wait),
		T(test_fin_wait_1_fin_retransmitted),
		T(test_half_close_keeps_receiving),
		T(test_send_after_shutdown_epipe),
		T(test_close_wait_can_send),
		T(test_orphan_fin_wait_2_times_out),
		T(test_orphan_fin_wait_2_completes),
		T(test_close_with_unread_data_rst),
		T(test_linger_zero_rst),
		T(test_close_sends_fin),
		T(test_connection_refused),
		T(test_syn_sent_bad_rst_ignored),
		T(test_syn_sent_bad_synack_rst),
		T(test_syn_recv_rst_back_to_listen),
		T(test_synack_retransmissions),
		T(test_backlog_holds_backlog_plus_one),
		T(test_backlog_full_drops_final_ack),
		T(test_somaxconn_caps_backlog),
		T(test_ephemeral_port_range),
		T(test_ephemeral_port_exhaustion),
		T(test_bind_conflict),
		T(test_send_data),
		T(test_recv_data),
		T(test_msg_peek),
		T(test_recv_zero_at_fin),
		T(test_out_of_order_reassembly),
		T(test_out_of_order_sack_blocks),
		T(test_duplicate_data_acked),
		T(test_overlap_trimmed),
		T(test_recv_window_shrinks_and_reopens),
		T(test_recv_window_scaled),
		T(test_request_reply_window_steady),
		T(test_request_reply_window_steady_scaled),
		T(test_pingpong_mode),
		T(test_fin_needs_its_own_ack),
		T(test_data_both_ways),
		T(test_peer_sequence_wraps),
		T(test_fin_after_queued_data),
		T(test_fin_beyond_hole_waits),
		T(test_data_with_fin),
		T(test_send_buffer_full),
		T(test_listener_close_resets_unaccepted),
		T(test_syn_recv_bad_ack_rst),
		T(test_syn_recv_dup_syn_resends_synack),
		T(test_maxseg_before_connect),
		T(test_icmp_port_unreach_in_syn_sent),
		T(test_icmp_unreach_established_is_soft),
		T(test_icmp_frag_needed_lowers_mss),
		T(test_icmp_out_of_window_ignored),
		T(test_tx_gather_and_csum_ways),
		T(test_deferred_calls_wait_for_flush),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
