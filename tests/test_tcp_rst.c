/* Resets and hostile input: RFC 9293 3.10.7 (segment arrives), 3.5.2/3.5.3
 * (reset generation and processing), RFC 5961 (blind RST, SYN and data
 * injection), RFC 7323 5 (PAWS); malformed segments are dropped, counted,
 * and never crash the engine. */
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

/* Reset the connection is in, and how the application sees it. */
static void assert_reset(struct fx *fx, xt_time_t t)
{
	expect_state(fx, XT_CLOSE);
	uint32_t ev = app_events(fx);
	assert_true(ev & XT_EV_ERR);
	assert_true(ev & XT_EV_HUP);
	uint8_t buf[16];
	/* Linux: the pending error is reported once, then EOF; writes get EPIPE. */
	assert_int_equal(app_recv(fx, t, buf, sizeof buf, 0), -ECONNRESET);
	assert_int_equal(app_recv(fx, t, buf, sizeof buf, 0), 0);
	assert_int_equal(app_send(fx, t, "x", 1), -EPIPE);
	expect_none(fx);
}

/* ---------------------------------------------------------------- */
/* RST processing (RFC 5961 3.2) */

static void test_rst_exact_seq_resets(void **state)
{
	struct fx *fx = *state;
	xt_time_t t = established(fx);
	uint64_t estab = fx_cnt(fx)->tcp_estab_resets, rx = fx_cnt(fx)->tcp_rst_rx;
	peer_rst(fx, t + XT_MS(1), fx->peer_seq);
	expect_none(fx);
	assert_true(fx_cnt(fx)->tcp_rst_rx > rx);
	assert_int_equal(fx_cnt(fx)->tcp_estab_resets, estab + 1);
	assert_reset(fx, t + XT_MS(2));
	/* The tuple is free: the peer's next segment meets no socket. */
	peer_ack(fx, t + XT_MS(3), fx->our_nxt);
	const struct seg *r = expect_next(fx);
	assert_int_equal(r->flags, F_RST);
	assert_int_equal(r->seq, fx->our_nxt);
}

/* An RST may carry ACK; it is judged by its sequence number. */
static void test_rst_ack_exact_seq_resets(void **state)
{
	struct fx *fx = *state;
	xt_time_t t = established(fx);
	seg_in(fx, t + XT_MS(1), .flags = F_RST | F_ACK, .seq = fx->peer_seq, .ack = fx->our_nxt);
	expect_none(fx);
	assert_reset(fx, t + XT_MS(2));
}

/* In the window but not RCV.NXT: a challenge ACK, the connection stays; the
 * legitimate peer's answer (an RST at RCV.NXT) then resets it. */
static void test_rst_in_window_challenge_ack(void **state)
{
	struct fx *fx = *state;
	xt_time_t t = established(fx);
	uint64_t ch = fx_cnt(fx)->tcp_challenge_ack;
	peer_rst(fx, t + XT_MS(1), fx->peer_seq + 100);
	expect_only(fx, F_ACK, fx->our_nxt, fx->peer_seq);
	expect_state(fx, XT_ESTABLISHED);
	assert_int_equal(fx_cnt(fx)->tcp_challenge_ack, ch + 1);
	assert_false(app_events(fx) & XT_EV_ERR);
	peer_rst(fx, t + XT_MS(2), fx->peer_seq);
	expect_none(fx);
	expect_state(fx, XT_CLOSE);
}

static void test_rst_out_of_window_ignored(void **state)
{
	struct fx *fx = *state;
	xt_time_t t = established(fx);
	peer_rst(fx, t + XT_MS(1), fx->peer_seq + 10000000u);
	expect_none(fx);
	expect_state(fx, XT_ESTABLISHED);
	peer_rst(fx, t + XT_SEC(2), fx->peer_seq - 1);
	expect_none(fx);
	expect_state(fx, XT_ESTABLISHED);
	peer_rst(fx, t + XT_SEC(4), fx->peer_seq - 100000u);
	expect_none(fx);
	expect_state(fx, XT_ESTABLISHED);
	/* still fully working */
	uint32_t snd = fx->our_nxt;
	app_send_n(fx, t + XT_SEC(5), 10);
	expect_data(fx, snd, 10);
}

/* RFC 5961 4.2 / RFC 9293 3.10.7.4: a SYN on a synchronized connection, in
 * window or not, gets a challenge ACK and changes nothing.  (The probes are
 * 1 s apart: Linux limits challenge ACKs to one per 500 ms per socket.) */
static void test_syn_in_established_challenge_ack(void **state)
{
	struct fx *fx = *state;
	xt_time_t t = established(fx);
	seg_in(fx, t + XT_MS(1), .flags = F_SYN, .seq = fx->peer_seq + 10, .opts = OPT_MSS, .mss = 1460);
	expect_only(fx, F_ACK, fx->our_nxt, fx->peer_seq);
	expect_state(fx, XT_ESTABLISHED);
	seg_in(fx, t + XT_SEC(2), .flags = F_SYN, .seq = fx->peer_seq - 5000000u, .opts = OPT_MSS, .mss = 1460);
	expect_only(fx, F_ACK, fx->our_nxt, fx->peer_seq);
	expect_state(fx, XT_ESTABLISHED);
	seg_in(fx, t + XT_SEC(4), .flags = F_SYN | F_ACK, .seq = fx->peer_iss, .ack = fx->our_nxt, .opts = OPT_MSS,
	       .mss = 1460);
	expect_only(fx, F_ACK, fx->our_nxt, fx->peer_seq);
	expect_state(fx, XT_ESTABLISHED);
	assert_false(app_events(fx) & XT_EV_ERR);
}

/* RST in the other synchronized states. */
static void test_rst_in_fin_wait_2(void **state)
{
	struct fx *fx = *state;
	xt_time_t t = fin_wait_2(fx);
	peer_rst(fx, t + XT_MS(1), fx->peer_seq);
	expect_none(fx);
	expect_state(fx, XT_CLOSE);
}

static void test_rst_in_close_wait(void **state)
{
	struct fx *fx = *state;
	xt_time_t t = close_wait(fx);
	peer_rst(fx, t + XT_MS(1), fx->peer_seq);
	expect_none(fx);
	expect_state(fx, XT_CLOSE);
	assert_true(app_events(fx) & XT_EV_HUP);
}

static void test_rst_in_last_ack(void **state)
{
	struct fx *fx = *state;
	xt_time_t t = last_ack(fx);
	peer_rst(fx, t + XT_MS(1), fx->peer_seq);
	expect_none(fx);
	expect_state(fx, XT_CLOSE);
	fx_run(fx, t + XT_SEC(10)); /* no FIN retransmissions */
	expect_none(fx);
}

/* Simultaneous-open SYN_RECV reset: the connection attempt fails. */
static void test_rst_in_syn_recv_active(void **state)
{
	struct fx *fx = *state;
	xt_time_t t = syn_recv(fx);
	peer_rst(fx, t + XT_MS(1), fx->peer_seq);
	expect_none(fx);
	expect_state(fx, XT_CLOSE);
	int err = app_getopt(fx, XT_SO_ERROR);
	assert_true(err == ECONNREFUSED || err == ECONNRESET);
	fx_run(fx, t + XT_SEC(10));
	expect_none(fx);
}

/* ---------------------------------------------------------------- */
/* segments that meet no connection (RFC 9293 3.10.7.1) */

static void test_closed_port_ack_gets_rst_seq_ack(void **state)
{
	struct fx *fx = *state;
	fx->peer_port = 40123;
	fx->our_port = 9999;
	uint64_t ns = fx_cnt(fx)->drop_tcp_no_socket, tx = fx_cnt(fx)->tcp_rst_tx;
	uint8_t d[10] = { 0 };
	seg_in(fx, XT_MS(1), .flags = F_ACK | F_PSH, .seq = 500, .ack = 123456, .data = d, .len = 10);
	const struct seg *r = expect_next(fx);
	assert_int_equal(r->flags, F_RST);
	assert_int_equal(r->seq, 123456);
	assert_int_equal(r->len, 0);
	assert_int_equal(r->sport, 9999);
	assert_int_equal(r->dport, 40123);
	expect_none(fx);
	assert_int_equal(fx_cnt(fx)->drop_tcp_no_socket, ns + 1);
	assert_int_equal(fx_cnt(fx)->tcp_rst_tx, tx + 1);
}

static void test_closed_port_noack_gets_rst_ack(void **state)
{
	struct fx *fx = *state;
	fx->peer_port = 40123;
	fx->our_port = 9999;
	/* SYN: SEG.LEN counts the SYN */
	seg_in(fx, XT_MS(1), .flags = F_SYN, .seq = 1000, .opts = OPT_MSS, .mss = 1460);
	const struct seg *r = expect_next(fx);
	assert_int_equal(r->flags, F_RST | F_ACK);
	assert_int_equal(r->seq, 0);
	assert_int_equal(r->ack, 1001);
	expect_none(fx);
	/* data without ACK: SEG.LEN counts the bytes */
	uint8_t d[10] = { 0 };
	seg_in(fx, XT_MS(2), .flags = F_PSH, .seq = 2000, .data = d, .len = 10);
	r = expect_next(fx);
	assert_int_equal(r->flags, F_RST | F_ACK);
	assert_int_equal(r->seq, 0);
	assert_int_equal(r->ack, 2010);
	/* FIN without ACK: counts one */
	seg_in(fx, XT_MS(3), .flags = F_FIN, .seq = 3000);
	r = expect_next(fx);
	assert_int_equal(r->flags, F_RST | F_ACK);
	assert_int_equal(r->ack, 3001);
	expect_none(fx);
}

static void test_closed_port_rst_not_answered(void **state)
{
	struct fx *fx = *state;
	fx->peer_port = 40123;
	fx->our_port = 9999;
	seg_in(fx, XT_MS(1), .flags = F_RST, .seq = 1000);
	seg_in(fx, XT_MS(2), .flags = F_RST | F_ACK, .seq = 1000, .ack = 5);
	expect_none(fx);
}

/* A SYN to a port nobody listens on, next to one that is listened on. */
static void test_syn_to_unlistened_port_refused(void **state)
{
	struct fx *fx = *state;
	fx_listen(fx, FX_LISTEN_PORT, 8);
	fx->peer_port = 40123;
	fx->our_port = FX_LISTEN_PORT + 1;
	seg_in(fx, XT_MS(1), .flags = F_SYN, .seq = 77, .opts = OPT_MSS, .mss = 1460);
	const struct seg *r = expect_next(fx);
	assert_int_equal(r->flags, F_RST | F_ACK);
	assert_int_equal(r->ack, 78);
	expect_none(fx);
}

/* RFC 9293 3.10.7.2 LISTEN: an ACK gets <SEQ=SEG.ACK><CTL=RST>; an RST is
 * ignored; SYN|RST and SYN|FIN start nothing (Linux drops them). */
static void test_listen_state_rules(void **state)
{
	struct fx *fx = *state;
	int ls = fx_listen(fx, FX_LISTEN_PORT, 8);
	fx->peer_port = 40123;
	fx->our_port = FX_LISTEN_PORT;
	seg_in(fx, XT_MS(1), .flags = F_ACK, .seq = 10, .ack = 99999);
	const struct seg *r = expect_next(fx);
	assert_int_equal(r->flags, F_RST);
	assert_int_equal(r->seq, 99999);
	expect_none(fx);
	seg_in(fx, XT_MS(2), .flags = F_RST, .seq = 10);
	expect_none(fx);
	seg_in(fx, XT_MS(3), .flags = F_SYN | F_RST, .seq = 10);
	expect_none(fx);
	seg_in(fx, XT_MS(4), .flags = F_SYN | F_FIN, .seq = 10);
	expect_none(fx);
	fx_run(fx, XT_SEC(5));
	expect_none(fx);
	assert_int_equal(xt_tcp_accept(fx->st, ls, NULL, NULL), -EAGAIN);
	expect_sock_state(fx, ls, XT_LISTEN);
}

/* ---------------------------------------------------------------- */
/* ACK validation (RFC 9293 3.10.7.4 fifth check, RFC 5961 5) */

/* An ACK for data never sent: the segment is dropped (its data is not
 * taken); RFC 9293 also answers with an ACK (Linux stays silent). */
static void test_ack_of_unsent_data_dropped(void **state)
{
	struct fx *fx = *state;
	xt_time_t t = established(fx);
	uint64_t c = fx_cnt(fx)->drop_tcp_ack_unsent;
	uint32_t seq = fx->peer_seq;
	uint8_t d[10];
	pat_fill(d, 10, 0, PAT_PEER);
	seg_in(fx, t + XT_MS(1), .flags = F_ACK | F_PSH, .seq = seq, .ack = fx->our_nxt + 1000, .data = d, .len = 10);
	if (fx_pending(fx))
		expect_only(fx, F_ACK, fx->our_nxt, seq); /* does not ack the data */
	assert_int_equal(xt_tcp_inq(fx->st, fx->s), 0);
	assert_int_equal(fx_cnt(fx)->drop_tcp_ack_unsent, c + 1);
	expect_state(fx, XT_ESTABLISHED);
	fx_run(fx, t + XT_MS(300));
	expect_none(fx);
	/* The same data with a sane ACK is taken. */
	peer_data(fx, t + XT_SEC(1), d, 10);
	uint8_t buf[32];
	assert_int_equal(app_recv(fx, t + XT_SEC(1), buf, sizeof buf, 0), 10);
}

/* An old duplicate ACK (SND.UNA - MAX.SND.WND <= SEG.ACK < SND.UNA) is
 * ignored: nothing sent, nothing changed. */
static void test_old_ack_ignored(void **state)
{
	struct fx *fx = *state;
	xt_time_t t = established(fx);
	uint32_t snd = fx->our_nxt;
	app_send_n(fx, t + XT_MS(1), 1000);
	expect_data(fx, snd, 1000);
	peer_ack(fx, t + XT_MS(100), snd + 500);
	expect_none(fx);
	assert_int_equal(xt_tcp_outq(fx->st, fx->s), 500);
	peer_ack(fx, t + XT_MS(110), snd + 300);
	expect_none(fx);
	assert_int_equal(xt_tcp_outq(fx->st, fx->s), 500);
	expect_state(fx, XT_ESTABLISHED);
	/* the remaining 500 bytes are still retransmitted from SND.UNA */
	fx_run(fx, t + XT_SEC(2));
	const struct seg *r = expect_next(fx);
	assert_int_equal(r->seq, snd + 500);
	assert_int_equal(r->len, 500);
}

/* RFC 5961 5.2: an ACK older than SND.UNA - MAX.SND.WND is dropped with a
 * challenge ACK. */
static void test_ancient_ack_challenged(void **state)
{
	struct fx *fx = *state;
	xt_time_t t = established(fx);
	uint8_t d[10] = { 1, 2, 3 };
	seg_in(fx, t + XT_MS(1), .flags = F_ACK | F_PSH, .seq = fx->peer_seq, .ack = fx->our_nxt - 200000u, .data = d,
	       .len = 10);
	expect_only(fx, F_ACK, fx->our_nxt, fx->peer_seq);
	assert_int_equal(xt_tcp_inq(fx->st, fx->s), 0);
	expect_state(fx, XT_ESTABLISHED);
}

/* RFC 9293 3.10.7.4: a segment without ACK on a synchronized connection is
 * dropped. */
static void test_segment_without_ack_dropped(void **state)
{
	struct fx *fx = *state;
	xt_time_t t = established(fx);
	uint8_t d[10] = { 0 };
	seg_in(fx, t + XT_MS(1), .flags = F_PSH, .seq = fx->peer_seq, .data = d, .len = 10);
	expect_none(fx);
	assert_int_equal(xt_tcp_inq(fx->st, fx->s), 0);
	expect_state(fx, XT_ESTABLISHED);
}

/* Data entirely outside the receive window: not taken, answered with an ACK
 * (RFC 9293 3.10.7.4 first check). */
static void test_data_out_of_window_acked(void **state)
{
	struct fx *fx = *state;
	xt_time_t t = established(fx);
	peer_data_at(fx, t + XT_MS(1), fx->peer_seq + 10000000u, 100);
	expect_only(fx, F_ACK, fx->our_nxt, fx->peer_seq);
	assert_int_equal(xt_tcp_inq(fx->st, fx->s), 0);
	peer_data_at(fx, t + XT_MS(2), fx->peer_seq - 1000, 100); /* old */
	expect_only(fx, F_ACK, fx->our_nxt, fx->peer_seq);
	assert_int_equal(xt_tcp_inq(fx->st, fx->s), 0);
}

/* RFC 7323 5.3: with timestamps, a segment whose TSval is older than
 * TS.Recent is dropped and acknowledged (PAWS). */
static void test_paws_drops_old_timestamp(void **state)
{
	struct fx *fx = *state;
	fx->peer.ts = true;
	xt_time_t t = established(fx);
	assert_true(fx->ts_on);
	peer_data_n(fx, t + XT_MS(100), 10); /* TS.Recent := current TSval */
	fx_run(fx, t + XT_MS(300));
	fx_drain(fx);
	uint8_t buf[64];
	assert_int_equal(app_recv(fx, t + XT_MS(300), buf, sizeof buf, 0), 10);
	uint64_t paws = fx_cnt(fx)->drop_tcp_paws;
	uint8_t d[10] = { 0 };
	seg_in(fx, t + XT_MS(301), .flags = F_ACK | F_PSH, .seq = fx->peer_seq, .ack = fx->peer_ack, .data = d,
	       .len = 10, .opts = OPT_TS, .tsval = fx->peer_tsval - 1000, .tsecr = fx->our_tsval);
	const struct seg *a = expect_ack(fx, fx->our_nxt, fx->peer_seq);
	assert_true(a->opts & OPT_TS);
	expect_none(fx);
	assert_int_equal(xt_tcp_inq(fx->st, fx->s), 0);
	assert_int_equal(fx_cnt(fx)->drop_tcp_paws, paws + 1);
	/* A current timestamp is accepted. */
	peer_data_n(fx, t + XT_MS(400), 10);
	assert_int_equal(xt_tcp_inq(fx->st, fx->s), 10);
}

/* ---------------------------------------------------------------- */
/* malformed segments: dropped, counted, no reply, no state change */

static void check_dropped(struct fx *fx, uint64_t before, uint64_t after, const char *what)
{
	if (after != before + 1)
		fx_fail(fx, "%s: drop counter went %llu -> %llu, expected +1", what, (unsigned long long)before,
			(unsigned long long)after);
	if (fx_pending(fx))
		fx_fail(fx, "%s: the engine answered a malformed segment", what);
	if (xt_tcp_inq(fx->st, fx->s) != 0)
		fx_fail(fx, "%s: data of a malformed segment was delivered", what);
	if (xt_tcp_state(fx->st, fx->s) != XT_ESTABLISHED)
		fx_fail(fx, "%s: state changed", what);
}

static void test_bad_checksum_dropped(void **state)
{
	struct fx *fx = *state;
	xt_time_t t = established(fx);
	uint8_t d[100];
	pat_fill(d, 100, 0, PAT_PEER);
	uint64_t c = fx_cnt(fx)->drop_tcp_csum;
	seg_in(fx, t + XT_MS(1), .flags = F_ACK | F_PSH, .seq = fx->peer_seq, .ack = fx->peer_ack, .data = d,
	       .len = 100, .bad_csum = true);
	check_dropped(fx, c, fx_cnt(fx)->drop_tcp_csum, "bad TCP checksum");
	/* also a RST and a SYN with bad checksums do nothing */
	c = fx_cnt(fx)->drop_tcp_csum;
	seg_in(fx, t + XT_MS(2), .flags = F_RST, .seq = fx->peer_seq, .bad_csum = true);
	check_dropped(fx, c, fx_cnt(fx)->drop_tcp_csum, "RST with bad checksum");
	c = fx_cnt(fx)->drop_ip_csum;
	seg_in(fx, t + XT_MS(3), .flags = F_RST, .seq = fx->peer_seq, .bad_ip_csum = true);
	check_dropped(fx, c, fx_cnt(fx)->drop_ip_csum, "RST with bad IP checksum");
	/* the intact segment is then accepted */
	peer_data(fx, t + XT_MS(4), d, 100);
	assert_int_equal(xt_tcp_inq(fx->st, fx->s), 100);
}

/* A frame the backend marks XT_FRAME_CSUM_OK (CHECKSUM_PARTIAL from a veth
 * peer: the field holds only the pseudo-header sum) is not summed again, and
 * the next unmarked frame is checked as before. */
static void test_offloaded_checksum_trusted(void **state)
{
	struct fx *fx = *state;
	xt_time_t t = established(fx);
	uint8_t d[100];
	pat_fill(d, 100, 0, PAT_PEER);
	uint64_t c = fx_cnt(fx)->drop_tcp_csum, ci = fx_cnt(fx)->drop_ip_csum;
	seg_in(fx, t + XT_MS(1), .flags = F_ACK | F_PSH, .seq = fx->peer_seq, .ack = fx->peer_ack, .data = d,
	       .len = 100, .bad_csum = true, .bad_ip_csum = true, .csum_offloaded = true);
	assert_int_equal(fx_cnt(fx)->drop_tcp_csum, c);
	assert_int_equal(fx_cnt(fx)->drop_ip_csum, ci);
	assert_int_equal(xt_tcp_inq(fx->st, fx->s), 100);
	seg_in(fx, t + XT_MS(2), .flags = F_ACK | F_PSH, .seq = fx->peer_seq + 100, .ack = fx->peer_ack,
	       .data = d, .len = 100, .bad_csum = true);
	assert_int_equal(fx_cnt(fx)->drop_tcp_csum, c + 1);
	assert_int_equal(xt_tcp_inq(fx->st, fx->s), 100);
}

static void test_truncated_header_dropped(void **state)
{
	struct fx *fx = *state;
	xt_time_t t = established(fx);
	static const uint16_t cuts[] = { 0, 1, 10, 19 };
	for (unsigned i = 0; i < sizeof cuts / sizeof cuts[0]; i++) {
		uint64_t c = fx_cnt(fx)->drop_tcp_short;
		seg_in(fx, t + XT_MS(1 + i), .flags = F_RST, .seq = fx->peer_seq, .cut = true, .cut_len = cuts[i]);
		check_dropped(fx, c, fx_cnt(fx)->drop_tcp_short, "truncated TCP header");
	}
}

static void test_bad_data_offset_dropped(void **state)
{
	struct fx *fx = *state;
	xt_time_t t = established(fx);
	/* below the minimum of 5 words (doff 16 writes a 0 nibble) */
	for (uint8_t off = 0; off < 5; off++) {
		uint64_t c = fx_cnt(fx)->drop_tcp_hdrlen;
		seg_in(fx, t + XT_MS(1 + off), .flags = F_RST, .seq = fx->peer_seq, .doff = off ? off : 16);
		check_dropped(fx, c, fx_cnt(fx)->drop_tcp_hdrlen, "data offset below 5");
	}
	/* beyond the segment: 60-byte header claimed, 20 present */
	uint64_t c = fx_cnt(fx)->drop_tcp_hdrlen;
	seg_in(fx, t + XT_MS(10), .flags = F_RST, .seq = fx->peer_seq, .doff = 15);
	check_dropped(fx, c, fx_cnt(fx)->drop_tcp_hdrlen, "data offset past the segment");
	/* 24-byte header claimed on a 20-byte segment */
	c = fx_cnt(fx)->drop_tcp_hdrlen;
	seg_in(fx, t + XT_MS(11), .flags = F_RST, .seq = fx->peer_seq, .doff = 6);
	check_dropped(fx, c, fx_cnt(fx)->drop_tcp_hdrlen, "data offset 6 on 20 bytes");
}

static void test_bogus_option_lengths_dropped(void **state)
{
	struct fx *fx = *state;
	xt_time_t t = established(fx);
	uint8_t d[20];
	pat_fill(d, 20, 0, PAT_PEER);
	static const struct {
		uint8_t b[8];
		uint8_t n;
		const char *what;
	} bad[] = {
		{ { XT_TCPOPT_MSS, 0, 0, 0 }, 4, "option length 0" },
		{ { XT_TCPOPT_WSCALE, 1, XT_TCPOPT_NOP, XT_TCPOPT_NOP }, 4, "option length 1" },
		{ { XT_TCPOPT_NOP, XT_TCPOPT_NOP, XT_TCPOPT_TS, 10 }, 4, "option longer than the header" },
		{ { XT_TCPOPT_NOP, XT_TCPOPT_NOP, XT_TCPOPT_NOP, XT_TCPOPT_MSS }, 4, "option cut before its length" },
		{ { 99, 40, 0, 0 }, 4, "unknown option longer than the header" },
	};
	for (unsigned i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		uint64_t c = fx_cnt(fx)->drop_tcp_opt;
		seg_in(fx, t + XT_MS(1 + i), .flags = F_ACK | F_PSH, .seq = fx->peer_seq, .ack = fx->peer_ack,
		       .data = d, .len = 20, .rawopt = bad[i].b, .rawopt_len = bad[i].n);
		check_dropped(fx, c, fx_cnt(fx)->drop_tcp_opt, bad[i].what);
	}
	/* Unknown options of sane length are skipped, not fatal (RFC 9293 3.1, MUST-6). */
	static const uint8_t unk[] = { 99, 4, 0xab, 0xcd };
	seg_in(fx, t + XT_MS(20), .flags = F_ACK | F_PSH, .seq = fx->peer_seq, .ack = fx->peer_ack, .data = d,
	       .len = 20, .rawopt = unk, .rawopt_len = 4);
	fx->peer_seq += 20;
	assert_int_equal(xt_tcp_inq(fx->st, fx->s), 20);
}

/* A few thousand mutated frames: whatever they do to the connection, the
 * engine must not crash and must stay usable for new connections. */
static void test_mutated_frames_never_crash(void **state)
{
	struct fx *fx = *state;
	fx->passive = true;
	xt_time_t t = established(fx);
	uint8_t base[200], f[200];
	uint8_t d[40];
	pat_fill(d, 40, 0, PAT_PEER);
	struct seg_spec sp = {
		.flags = F_ACK | F_PSH, .seq = fx->peer_seq, .ack = fx->peer_ack, .win = 1000,
		.opts = OPT_MSS | OPT_WS | OPT_SACK_PERM | OPT_TS | OPT_SACK, .mss = 1460, .ws = 7,
		.tsval = 5, .tsecr = 6, .nsack = 2, .sack = { { 1, 2 }, { 3, 4 } },
		.data = d, .len = 40,
		.src_ip = FX_PEER_IP, .dst_ip = FX_OUR_IP, .sport = fx->peer_port, .dport = fx->our_port,
	};
	size_t n = seg_build(base, sizeof base, &sp);
	uint64_t x = 0x9e3779b97f4a7c15ull;
	for (int i = 0; i < 5000; i++) {
		memcpy(f, base, n);
		int flips = 1 + (int)(x % 4);
		for (int k = 0; k < flips; k++) {
			x ^= x << 13;
			x ^= x >> 7;
			x ^= x << 17;
			size_t pos = XT_ETH_HLEN + (size_t)(x % (n - XT_ETH_HLEN));
			f[pos] = (uint8_t)(x >> 24);
		}
		x ^= x << 13;
		x ^= x >> 7;
		x ^= x << 17;
		size_t len = (x & 7) == 0 ? (size_t)(x >> 8) % (n + 1) : n;
		frame_in(fx, t + XT_US(i), f, len);
		fx_drain(fx);
	}
	fx_run(fx, t + XT_SEC(200));
	fx_drain(fx);
	/* A new client still gets in. */
	fx->peer_port = FX_PEER_PORT + 7;
	fx->peer.iss = 0x77777777u;
	xt_time_t t2 = fx->now + XT_MS(1);
	seg_in(fx, t2, .flags = F_SYN, .seq = 0x77777777u, .opts = OPT_MSS, .mss = 1460);
	const struct seg *sa = expect_next(fx);
	assert_int_equal(sa->flags, F_SYN | F_ACK);
	assert_int_equal(sa->ack, 0x77777778u);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		T(test_rst_exact_seq_resets),
		T(test_rst_ack_exact_seq_resets),
		T(test_rst_in_window_challenge_ack),
		T(test_rst_out_of_window_ignored),
		T(test_syn_in_established_challenge_ack),
		T(test_rst_in_fin_wait_2),
		T(test_rst_in_close_wait),
		T(test_rst_in_last_ack),
		T(test_rst_in_syn_recv_active),
		T(test_closed_port_ack_gets_rst_seq_ack),
		T(test_closed_port_noack_gets_rst_ack),
		T(test_closed_port_rst_not_answered),
		T(test_syn_to_unlistened_port_refused),
		T(test_listen_state_rules),
		T(test_ack_of_unsent_data_dropped),
		T(test_old_ack_ignored),
		T(test_ancient_ack_challenged),
		T(test_segment_without_ack_dropped),
		T(test_data_out_of_window_acked),
		T(test_paws_drops_old_timestamp),
		T(test_bad_checksum_dropped),
		T(test_offloaded_checksum_trusted),
		T(test_truncated_header_dropped),
		T(test_bad_data_offset_dropped),
		T(test_bogus_option_lengths_dropped),
		T(test_mutated_frames_never_crash),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
