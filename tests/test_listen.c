/* Listen queues, Linux backlog semantics and SYN cookies: two engines joined
 * by a minimal in-test wire (no loss, 10 us hops) in virtual time. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "xtcp.h"
#include "wire.h"

#define IP_A 0x0a000001u
#define IP_B 0x0a000002u
#define PORT 80
#define QMAX 8192
#define FMAX 2048

struct wire {
	uint8_t buf[QMAX][FMAX];
	uint32_t len[QMAX];
	int head, n;
};

struct net {
	struct xt_stack *a, *b;
	struct wire to_a, to_b;
	xt_time_t now;
	uint64_t spoof_seq;
};

static int push(struct wire *w, const struct xt_frame *f, int n)
{
	int i;
	for (i = 0; i < n && w->n < QMAX; i++) {
		int slot = (w->head + w->n) % QMAX;
		memcpy(w->buf[slot], f[i].data, f[i].len);
		w->len[slot] = f[i].len;
		w->n++;
	}
	return i;
}

static int tx_a(void *ctx, const struct xt_frame *f, int n) { return push(&((struct net *)ctx)->to_b, f, n); }
static int tx_b(void *ctx, const struct xt_frame *f, int n) { return push(&((struct net *)ctx)->to_a, f, n); }

static uint32_t bufsize = 65536; /* socket buffers of the next net_new() */
static uint32_t b_max_sockets;    /* nonzero: max_sockets of the next net_new()'s server b */

static struct xt_stack *mk(struct net *net, uint32_t ip, uint8_t last, xt_tx_fn tx, int cookies)
{
	struct xt_stack_cfg c;
	xt_stack_cfg_defaults(&c);
	memcpy(c.mac, (uint8_t[6]){ 2, 0, 0, 0, 0, last }, 6);
	c.ip = ip;
	c.netmask = 0xffffff00u;
	c.tx = tx;
	c.tx_ctx = net;
	c.secret[0] = 0x1234 + last;
	c.secret[1] = 0x5678;
	c.rcvbuf = c.sndbuf = bufsize;
	c.tcp_syncookies = (uint8_t)cookies;
	if (last == 2 && b_max_sockets)
		c.max_sockets = b_max_sockets;
	struct xt_stack *st = xt_stack_new(&c, net->now);
	assert_non_null(st);
	return st;
}

static struct net *net_new(int cookies)
{
	struct net *net = calloc(1, sizeof(*net));
	assert_non_null(net);
	net->now = XT_SEC(1000);
	net->a = mk(net, IP_A, 1, tx_a, 1);
	net->b = mk(net, IP_B, 2, tx_b, cookies);
	assert_int_equal(xt_arp_add(net->a, IP_B, (uint8_t[6]){ 2, 0, 0, 0, 0, 2 }, net->now), 0);
	assert_int_equal(xt_arp_add(net->b, IP_A, (uint8_t[6]){ 2, 0, 0, 0, 0, 1 }, net->now), 0);
	return net;
}

static void net_free(struct net *net)
{
	xt_stack_free(net->a);
	xt_stack_free(net->b);
	free(net);
}

static void deliver(struct xt_stack *st, struct wire *w, xt_time_t now)
{
	int n = w->n;
	for (int i = 0; i < n; i++) {
		xt_stack_input(st, w->buf[w->head], w->len[w->head], now);
		w->head = (w->head + 1) % QMAX;
		w->n--;
	}
	xt_stack_flush(st);
}

/* Runs the network for dt of virtual time. */
static void run(struct net *net, xt_time_t dt)
{
	xt_time_t end = net->now + dt;
	while (net->now <= end) {
		deliver(net->b, &net->to_b, net->now);
		deliver(net->a, &net->to_a, net->now);
		xt_stack_poll(net->a, net->now);
		xt_stack_poll(net->b, net->now);
		if (net->to_a.n || net->to_b.n) {
			net->now += XT_US(10);
			continue;
		}
		xt_time_t d = xt_stack_next_deadline(net->a), e = xt_stack_next_deadline(net->b);
		xt_time_t next = d < e ? d : e;
		if (next > end)
			break;
		net->now = next > net->now ? next : net->now + XT_US(10);
	}
	net->now = end;
}

static int listener(struct net *net, int backlog)
{
	int l = xt_tcp_open(net->b);
	assert_true(l >= 0);
	assert_int_equal(xt_tcp_bind(net->b, l, 0, PORT), 0);
	assert_int_equal(xt_tcp_listen(net->b, l, backlog), 0);
	return l;
}

static void connect_n(struct net *net, int *c, int n)
{
	for (int i = 0; i < n; i++) {
		c[i] = xt_tcp_open(net->a);
		assert_true(c[i] >= 0);
		assert_int_equal(xt_tcp_connect(net->a, c[i], IP_B, PORT, net->now), -EINPROGRESS);
	}
}

static int count_state(struct xt_stack *st, const int *c, int n, int state)
{
	int k = 0;
	for (int i = 0; i < n; i++)
		k += xt_tcp_state(st, c[i]) == state;
	return k;
}

static int accept_all(struct net *net, int l, int *got, int max)
{
	int n = 0, s;
	while (n < max && (s = xt_tcp_accept(net->b, l, NULL, NULL)) >= 0)
		got[n++] = s;
	return n;
}

/* Linux: the accept queue holds backlog+1 connections; further final ACKs
 * are dropped, the client still believes it is connected. */
static void test_backlog_holds_backlog_plus_one(void **state)
{
	(void)state;
	for (int backlog = 0; backlog <= 8; backlog += (backlog < 2 ? 1 : 6)) {
		struct net *net = net_new(1);
		int l = listener(net, backlog), c[16];
		connect_n(net, c, 12);
		run(net, XT_MS(50));
		assert_int_equal(count_state(net->a, c, 12, XT_ESTABLISHED), 12);
		struct xt_tcp_info ti;
		assert_int_equal(xt_tcp_info(net->b, l, &ti, net->now), 0);
		assert_int_equal(ti.rcv_queue, backlog + 1);
		assert_int_equal(ti.snd_queue, backlog);
		assert_true(xt_stack_counters(net->b)->drop_tcp_listen_overflow > 0);
		net_free(net);
	}
}

/* With cookies, every client of an overflowing listener gets in once the
 * application accepts: the SYN_RECV child through SYN-ACK retransmission,
 * the cookie ones with their first data segment. */
static void test_cookies_let_every_client_in(void **state)
{
	(void)state;
	struct net *net = net_new(1);
	int l = listener(net, 1), c[10], got[16], n = 0, sent[10] = { 0 };
	connect_n(net, c, 10);
	for (int round = 0; round < 200 && n < 10; round++) {
		run(net, XT_MS(100));
		for (int i = 0; i < 10; i++)
			if (!sent[i] && xt_tcp_state(net->a, c[i]) == XT_ESTABLISHED)
				sent[i] = xt_tcp_send(net->a, c[i], "x", 1, 0, net->now) == 1;
		n += accept_all(net, l, got + n, 16 - n);
	}
	assert_int_equal(n, 10);
	run(net, XT_MS(100));
	for (int i = 0; i < n; i++) {
		char ch;
		assert_int_equal(xt_tcp_recv(net->b, got[i], &ch, 1, 0, net->now), 1);
		assert_int_equal(ch, 'x');
	}
	const struct xt_counters *k = xt_stack_counters(net->b);
	assert_true(k->tcp_syncookies_sent > 0);
	assert_true(k->tcp_syncookies_recv > 0);
	net_free(net);
}

/* Without cookies (Linux tcp_syncookies=0) SYNs beyond the SYN queue are
 * dropped; simultaneous clients retry in lockstep, so each retry wave lets
 * one more in and the rest may run out of SYN retries: every client ends
 * accepted or with ETIMEDOUT, never anything else. */
static void test_no_cookies_synq_drops(void **state)
{
	(void)state;
	struct net *net = net_new(0);
	int l = listener(net, 1), c[10], got[16], n = 0;
	connect_n(net, c, 10);
	for (int round = 0; round < 1500; round++) {
		run(net, XT_MS(100));
		n += accept_all(net, l, got + n, 16 - n);
	}
	int timed_out = 0;
	for (int i = 0; i < 10; i++) {
		int st = xt_tcp_state(net->a, c[i]), err = 0;
		if (st == XT_CLOSE) {
			assert_int_equal(xt_tcp_getopt(net->a, c[i], XT_SO_ERROR, &err), 0);
			assert_int_equal(err, ETIMEDOUT);
			timed_out++;
		} else {
			assert_int_equal(st, XT_ESTABLISHED);
		}
	}
	assert_int_equal(n + timed_out, 10);
	assert_true(n >= 5);
	assert_true(xt_stack_counters(net->b)->drop_tcp_synq_full > 0);
	assert_int_equal(xt_stack_counters(net->b)->tcp_syncookies_sent, 0);
	net_free(net);
}

/* A forged or stale cookie ACK is answered with RST and creates nothing. */
static void test_bad_cookie_rejected(void **state)
{
	(void)state;
	struct net *net = net_new(1);
	int l = listener(net, 0), c[3];
	connect_n(net, c, 3); /* overflow, so cookies are in use */
	run(net, XT_MS(20));
	assert_true(xt_stack_counters(net->b)->tcp_syncookies_sent > 0);
	/* a forged ACK from a fresh port of A */
	uint8_t f[54] = { 0 };
	memcpy(f, (uint8_t[6]){ 2, 0, 0, 0, 0, 2 }, 6);
	memcpy(f + 6, (uint8_t[6]){ 2, 0, 0, 0, 0, 1 }, 6);
	xt_wr16(f + 12, XT_ETHERTYPE_IPV4);
	uint8_t *ip = f + 14, *th = ip + 20;
	ip[0] = 0x45;
	xt_wr16(ip + 2, 40);
	ip[8] = 64;
	ip[9] = 6;
	xt_wr32(ip + 12, IP_A);
	xt_wr32(ip + 16, IP_B);
	uint32_t sum = 0;
	for (int i = 0; i < 20; i += 2)
		sum += xt_rd16(ip + i);
	while (sum >> 16)
		sum = (sum & 0xffff) + (sum >> 16);
	xt_wr16(ip + 10, (uint16_t)~sum);
	xt_wr16(th, 40000);
	xt_wr16(th + 2, PORT);
	xt_wr32(th + 4, 12345);
	xt_wr32(th + 8, 0xdeadbeef);
	th[12] = 5 << 4;
	th[13] = XT_TH_ACK;
	xt_wr16(th + 14, 1000);
	sum = (IP_A >> 16) + (IP_A & 0xffff) + (IP_B >> 16) + (IP_B & 0xffff) + 6 + 20;
	for (int i = 0; i < 20; i += 2)
		sum += xt_rd16(th + i);
	while (sum >> 16)
		sum = (sum & 0xffff) + (sum >> 16);
	xt_wr16(th + 16, (uint16_t)~sum);
	uint64_t rst = xt_stack_counters(net->b)->tcp_rst_tx;
	xt_stack_input(net->b, f, sizeof(f), net->now);
	xt_stack_flush(net->b);
	assert_int_equal(xt_stack_counters(net->b)->tcp_syncookies_failed, 1);
	assert_int_equal(xt_stack_counters(net->b)->tcp_rst_tx, rst + 1);
	struct xt_tcp_info ti;
	xt_tcp_info(net->b, l, &ti, net->now);
	assert_true(ti.rcv_queue <= 1);
	net_free(net);
}

/* 100,000 spoofed SYNs: state stays bounded by the backlog, and a real
 * client still connects (through a cookie). */
static void test_syn_flood_bounded(void **state)
{
	(void)state;
	struct net *net = net_new(1);
	int l = listener(net, 64);
	uint8_t f[66];
	for (uint32_t i = 0; i < 100000; i++) {
		memset(f, 0, sizeof(f));
		memcpy(f, (uint8_t[6]){ 2, 0, 0, 0, 0, 2 }, 6);
		memcpy(f + 6, (uint8_t[6]){ 2, 0, 0, 0, 0, 9 }, 6);
		xt_wr16(f + 12, XT_ETHERTYPE_IPV4);
		uint8_t *ip = f + 14, *th = ip + 20;
		uint32_t src = 0x0a000000u | (3 + i % 250);
		ip[0] = 0x45;
		xt_wr16(ip + 2, 52);
		ip[8] = 64;
		ip[9] = 6;
		xt_wr32(ip + 12, src);
		xt_wr32(ip + 16, IP_B);
		uint32_t sum = 0;
		for (int k = 0; k < 20; k += 2)
			sum += xt_rd16(ip + k);
		while (sum >> 16)
			sum = (sum & 0xffff) + (sum >> 16);
		xt_wr16(ip + 10, (uint16_t)~sum);
		xt_wr16(th, (uint16_t)(1024 + i % 60000));
		xt_wr16(th + 2, PORT);
		xt_wr32(th + 4, i * 7919u);
		th[12] = 8 << 4;
		th[13] = XT_TH_SYN;
		xt_wr16(th + 14, 65535);
		th[20] = XT_TCPOPT_MSS;
		th[21] = 4;
		xt_wr16(th + 22, 1460);
		th[24] = XT_TCPOPT_NOP;
		th[25] = XT_TCPOPT_WSCALE;
		th[26] = 3;
		th[27] = 7;
		sum = (src >> 16) + (src & 0xffff) + (IP_B >> 16) + (IP_B & 0xffff) + 6 + 32;
		for (int k = 0; k < 32; k += 2)
			sum += xt_rd16(th + k);
		while (sum >> 16)
			sum = (sum & 0xffff) + (sum >> 16);
		xt_wr16(th + 16, (uint16_t)~sum);
		xt_stack_input(net->b, f, sizeof(f), net->now);
		if (i % 64 == 0) {
			net->to_a.n = 0; /* the spoofed sources never answer */
			xt_stack_flush(net->b);
		}
	}
	xt_stack_flush(net->b);
	net->to_a.n = 0;
	net->to_a.head = 0;
	assert_true(xt_stack_counters(net->b)->tcp_syncookies_sent >= 100000 - 128); /* 64 children; 64 SYNs repeat their 4-tuples and get challenge ACKs */
	/* no per-SYN state beyond the SYN queue */
	assert_true(xt_stack_mem_used(net->b) == 0);
	int c;
	connect_n(net, &c, 1);
	run(net, XT_MS(50));
	assert_int_equal(xt_tcp_state(net->a, c), XT_ESTABLISHED);
	assert_int_equal(xt_tcp_send(net->a, c, "hello", 5, 0, net->now), 5);
	run(net, XT_MS(50));
	int got[1] = { -1 };
	assert_int_equal(accept_all(net, l, got, 1), 1);
	char buf[8];
	assert_int_equal(xt_tcp_recv(net->b, got[0], buf, sizeof(buf), 0, net->now), 5);
	assert_memory_equal(buf, "hello", 5);
	net_free(net);
}

/* A caller whose clock steps backwards (a data point taken before the
 * lock, another clock source) must not poison the RTT: the engine's clock is
 * monotonic. */
static void test_clock_never_runs_backwards(void **state)
{
	(void)state;
	struct net *net = net_new(1);
	int l = listener(net, 4), c;
	assert_false(xt_stack_has_conns(net->b)); /* a listener only */
	connect_n(net, &c, 1);
	run(net, XT_MS(10));
	int got[1] = { -1 };
	assert_int_equal(accept_all(net, l, got, 1), 1);
	assert_true(xt_stack_has_conns(net->b));
	xt_time_t past = net->now - XT_SEC(100);
	assert_int_equal(xt_tcp_send(net->a, c, "late", 4, 0, past), 4); /* times the segment at "past" */
	run(net, XT_MS(10));
	struct xt_tcp_info ti;
	assert_int_equal(xt_tcp_info(net->a, c, &ti, past), 0);
	assert_true(ti.rtt_us < 100000);
	assert_true(ti.rto_us <= 300000);
	char buf[8];
	assert_int_equal(xt_tcp_recv(net->b, got[0], buf, sizeof(buf), 0, net->now), 4);
	net_free(net);
}

/* RFC 7323: 16 MiB buffers need window scale 9 (65535 << 8 is just short); the window opens
 * that far: 12 MiB sent to a receiver that does not read all sit in its
 * buffer, none dropped, none retransmitted. */
static void test_16mib_window(void **state)
{
	(void)state;
	bufsize = 16u << 20;
	struct net *net = net_new(1);
	bufsize = 65536;
	int l = listener(net, 4), c;
	connect_n(net, &c, 1);
	run(net, XT_MS(10));
	int got[1] = { -1 };
	assert_int_equal(accept_all(net, l, got, 1), 1);
	struct xt_tcp_info ti;
	assert_int_equal(xt_tcp_info(net->a, c, &ti, net->now), 0);
	assert_int_equal(ti.rcv_wscale, 9);
	assert_int_equal(ti.snd_wscale, 9);
	static uint8_t chunk[1 << 16];
	for (uint32_t i = 0; i < sizeof(chunk); i++)
		chunk[i] = (uint8_t)(i * 7 + 3);
	uint64_t sent = 0;
	for (int round = 0; round < 2000 && sent < (12u << 20); round++) {
		long r = xt_tcp_send(net->a, c, chunk, sizeof(chunk), 0, net->now);
		if (r > 0)
			sent += (uint64_t)r;
		run(net, XT_MS(1));
	}
	run(net, XT_MS(100));
	assert_int_equal(sent, 12u << 20);
	assert_int_equal(xt_tcp_inq(net->b, got[0]), (long)(12u << 20));
	assert_int_equal(xt_tcp_outq(net->a, c), 0);
	assert_int_equal(xt_stack_counters(net->a)->tcp_retrans_segs, 0);
	assert_int_equal(xt_tcp_info(net->a, c, &ti, net->now), 0);
	assert_true(ti.snd_wnd >= (3u << 20)); /* ~4 MiB left of B's window, less rounding */
	net_free(net);
}

/* A refused connect reported by connect() leaves, after the disconnect
 * Linux does then, a fresh socket: recv is ENOTCONN, and it can connect
 * again. */
static void test_disconnect_after_refusal(void **state)
{
	(void)state;
	struct net *net = net_new(1);
	int c = xt_tcp_open(net->a);
	assert_int_equal(xt_tcp_connect(net->a, c, IP_B, 81, net->now), -EINPROGRESS);
	run(net, XT_MS(10));
	assert_int_equal(xt_tcp_state(net->a, c), XT_CLOSE);
	int err = 0;
	assert_int_equal(xt_tcp_getopt(net->a, c, XT_SO_ERROR, &err), 0);
	assert_int_equal(err, ECONNREFUSED);
	char ch;
	assert_int_equal(xt_tcp_recv(net->a, c, &ch, 1, 0, net->now), 0); /* shutdown: EOF, as Linux */
	assert_int_equal(xt_tcp_disconnect(net->a, c, net->now), 0);
	assert_int_equal(xt_tcp_recv(net->a, c, &ch, 1, 0, net->now), -ENOTCONN);
	int l = listener(net, 4);
	assert_int_equal(xt_tcp_connect(net->a, c, IP_B, PORT, net->now), -EINPROGRESS);
	run(net, XT_MS(10));
	assert_int_equal(xt_tcp_state(net->a, c), XT_ESTABLISHED);
	int got[1] = { -1 };
	assert_int_equal(accept_all(net, l, got, 1), 1);
	/* on a connected socket it resets the peer */
	assert_int_equal(xt_tcp_disconnect(net->a, c, net->now), 0);
	run(net, XT_MS(10));
	assert_int_equal(xt_tcp_recv(net->b, got[0], &ch, 1, 0, net->now), -ECONNRESET);
	net_free(net);
}

/* Linux: accepted connections hold the listener's port (inet_inherit_port),
 * so after the listener closes a bind without SO_REUSEADDR fails until they
 * are gone, TIME_WAIT included; shutdown in TIME_WAIT is ENOTCONN. */
static void test_port_held_by_connections(void **state)
{
	(void)state;
	struct net *net = net_new(1);
	int l = listener(net, 4), c;
	connect_n(net, &c, 1);
	run(net, XT_MS(10));
	int got[1] = { -1 };
	assert_int_equal(accept_all(net, l, got, 1), 1);
	assert_int_equal(xt_tcp_close(net->b, l, net->now), 0);
	int n = xt_tcp_open(net->b);
	assert_int_equal(xt_tcp_bind(net->b, n, 0, PORT), -EADDRINUSE);
	assert_int_equal(xt_tcp_bind_check(net->b, n, 0, PORT), -EADDRINUSE);
	/* B closes first and ends in TIME_WAIT: the port stays taken */
	assert_int_equal(xt_tcp_send(net->b, got[0], "x", 1, 0, net->now), 1);
	assert_true(xt_stack_unfinished(net->b) >= 1);
	assert_int_equal(xt_tcp_shutdown(net->b, got[0], XT_SHUT_WR, net->now), 0);
	run(net, XT_MS(10));
	char ch;
	assert_int_equal(xt_tcp_recv(net->a, c, &ch, 1, 0, net->now), 1);
	assert_int_equal(xt_tcp_close(net->a, c, net->now), 0);
	run(net, XT_MS(10));
	assert_int_equal(xt_stack_unfinished(net->b), 0);
	assert_int_equal(xt_tcp_state(net->b, got[0]), XT_TIME_WAIT);
	assert_int_equal(xt_tcp_shutdown(net->b, got[0], XT_SHUT_WR, net->now), -ENOTCONN);
	assert_int_equal(xt_tcp_close(net->b, got[0], net->now), 0);
	assert_int_equal(xt_tcp_bind(net->b, n, 0, PORT), -EADDRINUSE);
	assert_true(xt_stack_has_conns(net->b)); /* an orphaned TIME_WAIT */
	run(net, XT_SEC(61)); /* TIME_WAIT over */
	assert_false(xt_stack_has_conns(net->b)); /* n is closed, unbound */
	assert_int_equal(xt_tcp_bind(net->b, n, 0, PORT), 0);
	net_free(net);
}

/* A server that closes first keeps a TIME_WAIT per connection; with every
 * socket slot taken by them, a new connection takes the oldest one's slot
 * instead of failing (tcp_tw_recycled). */
static void test_timewait_recycled_when_full(void **state)
{
	(void)state;
	b_max_sockets = 8;
	struct net *net = net_new(1);
	b_max_sockets = 0;
	int l = listener(net, 16);
	for (int i = 0; i < 30; i++) {
		int c;
		connect_n(net, &c, 1);
		run(net, XT_MS(5));
		assert_int_equal(xt_tcp_state(net->a, c), XT_ESTABLISHED);
		int s = xt_tcp_accept(net->b, l, NULL, NULL);
		assert_true(s >= 0);
		assert_int_equal(xt_tcp_close(net->b, s, net->now), 0); /* the server closes first */
		run(net, XT_MS(5));
		assert_int_equal(xt_tcp_close(net->a, c, net->now), 0);
		run(net, XT_MS(5));
	}
	const struct xt_counters *cb = xt_stack_counters(net->b);
	/* 1 listener + 7 TIME_WAITs fill the 8 slots; the other 23 connections
	 * each took the oldest TIME_WAIT's slot */
	assert_int_equal(cb->tcp_tw_recycled, 23);
	assert_int_equal(cb->tcp_passive_opens, 30);
	assert_int_equal(cb->drop_tcp_no_mem, 0);
	net_free(net);
}

/* Closed-first connections' TIME_WAITs are kept in the order they end, not
 * in the order they were closed: a socket that went into TIME_WAIT while
 * its owner still held it, and was closed much later, ends first.  Each ends
 * 60 s after it began, neither later (stuck behind younger ones) nor earlier,
 * and the engine's next deadline is the first of them. */
static void connect_accept(struct net *net, int l, int *c, int *s)
{
	connect_n(net, c, 1);
	run(net, XT_MS(5));
	assert_int_equal(xt_tcp_state(net->a, *c), XT_ESTABLISHED);
	*s = xt_tcp_accept(net->b, l, NULL, NULL);
	assert_true(*s >= 0);
}

static void test_timewait_ends_in_order(void **state)
{
	(void)state;
	struct net *net = net_new(1);
	int l = listener(net, 64);
	int c[25], s[25];
	/* 5 that enter TIME_WAIT while the server still holds them */
	for (int i = 0; i < 5; i++) {
		connect_accept(net, l, &c[i], &s[i]);
		assert_int_equal(xt_tcp_shutdown(net->b, s[i], XT_SHUT_WR, net->now), 0);
		run(net, XT_MS(5));
		assert_int_equal(xt_tcp_close(net->a, c[i], net->now), 0);
		run(net, XT_MS(5));
		assert_int_equal(xt_tcp_state(net->b, s[i]), XT_TIME_WAIT);
	}
	xt_time_t t0 = net->now; /* their TIME_WAITs began in the 100 ms before */
	run(net, XT_SEC(10));
	/* 20 closed first by the server, 100 ms apart */
	for (int i = 5; i < 25; i++) {
		connect_accept(net, l, &c[i], &s[i]);
		assert_int_equal(xt_tcp_close(net->b, s[i], net->now), 0);
		run(net, XT_MS(5));
		assert_int_equal(xt_tcp_close(net->a, c[i], net->now), 0);
		run(net, XT_MS(90));
	}
	xt_time_t t1 = net->now; /* theirs began in the 2 s before */
	run(net, XT_SEC(5));
	for (int i = 0; i < 5; i++) /* now the first 5 are orphans too */
		assert_int_equal(xt_tcp_close(net->b, s[i], net->now), 0);
	run(net, XT_MS(1));
	assert_int_equal(xt_stack_nsockets(net->b), 1 + 25);
	xt_time_t d = xt_stack_next_deadline(net->b);
	assert_true(d > t0 + XT_SEC(60) - XT_MS(200) && d <= t0 + XT_SEC(60));
	run(net, t0 + XT_SEC(60) - XT_MS(200) - net->now);
	assert_int_equal(xt_stack_nsockets(net->b), 1 + 25);
	run(net, XT_MS(300));
	assert_int_equal(xt_stack_nsockets(net->b), 1 + 20);
	run(net, t1 - XT_SEC(2) + XT_SEC(60) - XT_MS(100) - net->now);
	assert_int_equal(xt_stack_nsockets(net->b), 1 + 20);
	run(net, XT_SEC(1)); /* half of them */
	uint32_t n = xt_stack_nsockets(net->b);
	assert_true(n > 1 && n < 1 + 20);
	run(net, XT_SEC(2));
	assert_int_equal(xt_stack_nsockets(net->b), 1);
	assert_int_equal(xt_stack_next_deadline(net->b), XT_TIME_NEVER);
	net_free(net);
}

/* xt_stack_deadline_hint is a lower bound of xt_stack_next_deadline (equal
 * once that has settled the heap), and a bound that is not due means
 * nothing is: a timer armed earlier than the hint lowers it at once. */
static void check_hint(struct xt_stack *st)
{
	xt_time_t h = xt_stack_deadline_hint(st);
	xt_time_t d = xt_stack_next_deadline(st);
	assert_true(h <= d);
	assert_int_equal(xt_stack_deadline_hint(st), d);
}

static void test_deadline_hint(void **state)
{
	(void)state;
	struct net *net = net_new(1);
	int l = listener(net, 8), c, s;
	check_hint(net->b);
	connect_accept(net, l, &c, &s);
	check_hint(net->a);
	check_hint(net->b);
	char buf[1000] = { 0 };
	for (int i = 0; i < 20; i++) {
		assert_int_equal(xt_tcp_send(net->a, c, buf, sizeof(buf), 0, net->now), (long)sizeof(buf));
		/* the RTO was just armed: the hint says so before any settling */
		assert_true(xt_stack_deadline_hint(net->a) <= net->now + XT_SEC(1));
		run(net, XT_MS(50)); /* delivered and acknowledged: the RTO key goes stale */
		check_hint(net->a);
		check_hint(net->b);
		assert_int_equal(xt_tcp_recv(net->b, s, buf, sizeof(buf), 0, net->now), (long)sizeof(buf));
	}
	assert_int_equal(xt_tcp_close(net->b, s, net->now), 0);
	run(net, XT_MS(50)); /* the FIN's ACK is delayed (Linux tcp_fin()) */
	check_hint(net->b); /* an orphan FIN_WAIT2's end counts */
	assert_true(xt_stack_deadline_hint(net->b) > net->now + XT_SEC(59));
	net_free(net);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_backlog_holds_backlog_plus_one),
		cmocka_unit_test(test_cookies_let_every_client_in),
		cmocka_unit_test(test_no_cookies_synq_drops),
		cmocka_unit_test(test_bad_cookie_rejected),
		cmocka_unit_test(test_syn_flood_bounded),
		cmocka_unit_test(test_clock_never_runs_backwards),
		cmocka_unit_test(test_16mib_window),
		cmocka_unit_test(test_disconnect_after_refusal),
		cmocka_unit_test(test_port_held_by_connections),
		cmocka_unit_test(test_timewait_recycled_when_full),
		cmocka_unit_test(test_timewait_ends_in_order),
		cmocka_unit_test(test_deadline_hint),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
