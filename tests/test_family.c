/* Fork families (stack/tcp_family.c): two engines behind one address, each
 * seeing every frame, as after fork() under the shim.  A client engine A
 * talks to the family B[0], B[1] over an in-test wire in virtual time; what
 * A sends reaches both members, what either member sends reaches A. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "xtcp.h"

#define IP_A 0x0a000001u
#define IP_B 0x0a000002u
#define PORT 80
#define QMAX 4096
#define FMAX 2048
#define NCONN 16

struct wire {
	uint8_t buf[QMAX][FMAX];
	uint32_t len[QMAX];
	int head, n;
};

struct net {
	struct xt_stack *a, *b[2];
	struct wire to_a, to_b;
	xt_time_t now;
	int owner_calls[2];
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

/* The shim hashes the 4-tuple over the live members; here: a hash of the
 * client port, so the test knows who must take which connection. */
struct member {
	struct net *net;
	int idx;
};
static int owner_of(uint16_t rport) { return (int)(((uint32_t)rport * 2654435761u) >> 31); }
static int syn_owner(void *ctx, uint32_t lip, uint16_t lport, uint32_t rip, uint16_t rport)
{
	struct member *m = ctx;
	(void)lip;
	(void)lport;
	(void)rip;
	m->net->owner_calls[m->idx]++;
	return owner_of(rport) == m->idx;
}

static struct member members[2];

static struct xt_stack *mk(struct net *net, uint32_t ip, xt_tx_fn tx, int member, int cookies)
{
	struct xt_stack_cfg c;
	xt_stack_cfg_defaults(&c);
	memcpy(c.mac, (uint8_t[6]){ 2, 0, 0, 0, 0, member < 0 ? 1 : 2 }, 6);
	c.ip = ip;
	c.netmask = 0xffffff00u;
	c.tx = tx;
	c.tx_ctx = net;
	c.secret[0] = member < 0 ? 0x1111 : 0x2222; /* members: copies, one secret */
	c.secret[1] = 0x5678;
	c.rcvbuf = c.sndbuf = 65536;
	c.tcp_syncookies = (uint8_t)cookies;
	if (member >= 0) {
		members[member] = (struct member){ net, member };
		c.syn_owner = syn_owner;
		c.syn_owner_ctx = &members[member];
	}
	struct xt_stack *st = xt_stack_new(&c, net->now);
	assert_non_null(st);
	return st;
}

static struct net *net_new(int family, int cookies)
{
	struct net *net = calloc(1, sizeof(*net));
	assert_non_null(net);
	net->now = XT_SEC(1000);
	net->a = mk(net, IP_A, tx_a, -1, 1);
	for (int i = 0; i < 2; i++) {
		net->b[i] = mk(net, IP_B, tx_b, i, cookies);
		xt_stack_set_family(net->b[i], family);
		assert_int_equal(xt_stack_family(net->b[i]), family);
		assert_int_equal(xt_arp_add(net->b[i], IP_A, (uint8_t[6]){ 2, 0, 0, 0, 0, 1 }, net->now), 0);
	}
	assert_int_equal(xt_arp_add(net->a, IP_B, (uint8_t[6]){ 2, 0, 0, 0, 0, 2 }, net->now), 0);
	return net;
}

static void net_free(struct net *net)
{
	xt_stack_free(net->a);
	for (int i = 0; i < 2; i++)
		if (net->b[i])
			xt_stack_free(net->b[i]);
	free(net);
}

/* Frames for B reach every member still present. */
static void deliver_b(struct net *net)
{
	struct wire *w = &net->to_b;
	int n = w->n;
	for (int k = 0; k < n; k++) {
		for (int i = 0; i < 2; i++)
			if (net->b[i])
				xt_stack_input(net->b[i], w->buf[w->head], w->len[w->head], net->now);
		w->head = (w->head + 1) % QMAX;
		w->n--;
	}
	for (int i = 0; i < 2; i++)
		if (net->b[i])
			xt_stack_flush(net->b[i]);
}

static void deliver_a(struct net *net)
{
	struct wire *w = &net->to_a;
	int n = w->n;
	for (int k = 0; k < n; k++) {
		xt_stack_input(net->a, w->buf[w->head], w->len[w->head], net->now);
		w->head = (w->head + 1) % QMAX;
		w->n--;
	}
	xt_stack_flush(net->a);
}

static xt_time_t next_deadline(struct net *net)
{
	xt_time_t d = xt_stack_next_deadline(net->a);
	for (int i = 0; i < 2; i++)
		if (net->b[i] && xt_stack_next_deadline(net->b[i]) < d)
			d = xt_stack_next_deadline(net->b[i]);
	return d;
}

static void run(struct net *net, xt_time_t dt)
{
	xt_time_t end = net->now + dt;
	while (net->now <= end) {
		deliver_b(net);
		deliver_a(net);
		xt_stack_poll(net->a, net->now);
		for (int i = 0; i < 2; i++)
			if (net->b[i])
				xt_stack_poll(net->b[i], net->now);
		if (net->to_a.n || net->to_b.n) {
			net->now += XT_US(10);
			continue;
		}
		xt_time_t next = next_deadline(net);
		if (next > end)
			break;
		net->now = next > net->now ? next : net->now + XT_US(10);
	}
	net->now = end;
}

static int listener(struct xt_stack *st)
{
	int l = xt_tcp_open(st);
	assert_true(l >= 0);
	assert_int_equal(xt_tcp_bind(st, l, 0, PORT), 0);
	assert_int_equal(xt_tcp_listen(st, l, 64), 0);
	return l;
}

static void connect_n(struct net *net, int *c, int n, uint16_t port)
{
	for (int i = 0; i < n; i++) {
		c[i] = xt_tcp_open(net->a);
		assert_true(c[i] >= 0);
		assert_int_equal(xt_tcp_connect(net->a, c[i], IP_B, port, net->now), -EINPROGRESS);
	}
}

/* Every connection is accepted by exactly the member syn_owner names; no
 * member resets the other's connections; data flows both ways. */
static void family_splits(int cookies)
{
	struct net *net = net_new(1, cookies);
	int l[2] = { listener(net->b[0]), listener(net->b[1]) }, c[NCONN];
	connect_n(net, c, NCONN, PORT);
	run(net, XT_MS(50));
	int got[2] = { 0, 0 };
	for (int i = 0; i < NCONN; i++) {
		assert_int_equal(xt_tcp_state(net->a, c[i]), XT_ESTABLISHED);
		assert_int_equal(xt_tcp_send(net->a, c[i], "ping", 4, 0, net->now), 4);
	}
	run(net, XT_MS(50));
	for (int m = 0; m < 2; m++) {
		int s;
		while ((s = xt_tcp_accept(net->b[m], l[m], NULL, NULL)) >= 0) {
			uint32_t rip;
			uint16_t rport;
			char buf[8];
			assert_int_equal(xt_tcp_getname(net->b[m], s, 1, &rip, &rport), 0);
			assert_int_equal(owner_of(rport), m);
			assert_int_equal(xt_tcp_recv(net->b[m], s, buf, sizeof(buf), 0, net->now), 4);
			assert_int_equal(xt_tcp_send(net->b[m], s, "pong", 4, 0, net->now), 4);
			got[m]++;
		}
	}
	assert_int_equal(got[0] + got[1], NCONN);
	assert_true(got[0] > 0 && got[1] > 0);
	run(net, XT_MS(50));
	for (int i = 0; i < NCONN; i++) {
		char buf[8];
		assert_int_equal(xt_tcp_recv(net->a, c[i], buf, sizeof(buf), 0, net->now), 4);
		assert_memory_equal(buf, "pong", 4);
	}
	for (int m = 0; m < 2; m++) {
		const struct xt_counters *k = xt_stack_counters(net->b[m]);
		assert_int_equal(k->tcp_rst_tx, 0);
		assert_true(k->drop_tcp_family > 0);
		if (cookies == 2)
			assert_true(k->tcp_syncookies_recv > 0);
	}
	assert_int_equal(xt_stack_counters(net->a)->tcp_rst_rx, 0);
	net_free(net);
}

static void test_family_splits_syns(void **state)
{
	(void)state;
	family_splits(1);
}

/* Cookies only (tcp_syncookies=2): the ACK completing a cookie is taken by
 * the member that owns the 4-tuple, never by both. */
static void test_family_cookies(void **state)
{
	(void)state;
	family_splits(2);
}

/* A segment for no connection: RST from a lone engine, silence and a
 * drop_tcp_family count from a member of a family. */
static void test_family_no_rst_for_unknown(void **state)
{
	(void)state;
	for (int family = 0; family <= 1; family++) {
		struct net *net = net_new(family, 1);
		xt_stack_free(net->b[1]);
		net->b[1] = NULL;
		int c;
		connect_n(net, &c, 1, 81); /* nobody listens on 81 */
		run(net, XT_MS(20));
		const struct xt_counters *k = xt_stack_counters(net->b[0]);
		if (family) {
			assert_int_equal(k->tcp_rst_tx, 0);
			assert_int_equal(k->drop_tcp_family, 1);
			assert_int_equal(xt_tcp_state(net->a, c), XT_SYN_SENT);
		} else {
			assert_int_equal(k->tcp_rst_tx, 1);
			assert_int_equal(k->drop_tcp_family, 0);
			assert_int_equal(xt_tcp_state(net->a, c), XT_CLOSE);
		}
		assert_int_equal(net->owner_calls[0], 0); /* no listener: no owner question */
		net_free(net);
	}
}

struct forgot {
	int n, kept;
	void *udata[8];
};

static void on_forgotten(void *ctx, int sock, void *udata, int kept)
{
	struct forgot *f = ctx;
	(void)sock;
	if (kept) {
		assert_ptr_equal(udata, (void *)0x1);
		f->kept++;
		return;
	}
	if (f->n < 8)
		f->udata[f->n] = udata;
	f->n++;
}

/* The child's copy: established, queued and embryonic connections go without
 * a frame; the listener stays and serves new connections. */
static void test_forget_connections(void **state)
{
	(void)state;
	struct net *net = net_new(0, 1);
	xt_stack_free(net->b[1]);
	net->b[1] = NULL;
	struct xt_stack *b = net->b[0];
	int l = listener(b), c[3];
	xt_tcp_set_udata(b, l, (void *)0x1);
	connect_n(net, c, 3, PORT);
	run(net, XT_MS(20));
	int s = xt_tcp_accept(b, l, NULL, NULL); /* one accepted, two queued */
	assert_true(s >= 0);
	xt_tcp_set_udata(b, s, (void *)0x2);
	int o = xt_tcp_open(b); /* an unconnected socket goes too */
	xt_tcp_set_udata(b, o, (void *)0x3);
	/* one more still in SYN_RECV: its SYN arrives, the final ACK does not yet */
	int late;
	connect_n(net, &late, 1, PORT);
	deliver_b(net);
	net->to_a.n = 0; /* its SYN-ACK is lost */
	uint64_t tx = xt_stack_counters(b)->tx_frames;

	struct forgot f = { 0 };
	assert_int_equal(xt_stack_forget_connections(b, on_forgotten, &f), 5);
	assert_int_equal(f.n, 2);
	assert_int_equal(f.kept, 1);
	assert_true((f.udata[0] == (void *)0x2 && f.udata[1] == (void *)0x3) ||
		    (f.udata[0] == (void *)0x3 && f.udata[1] == (void *)0x2));
	assert_int_equal(xt_tcp_state(b, l), XT_LISTEN);
	assert_int_equal(xt_tcp_state(b, s), -EBADF);
	assert_int_equal(xt_tcp_accept(b, l, NULL, NULL), -EAGAIN);
	assert_int_equal(xt_stack_next_deadline(b), XT_TIME_NEVER);
	xt_stack_poll(b, net->now + XT_SEC(5));
	assert_int_equal(xt_stack_counters(b)->tx_frames, tx); /* not a frame: they are the parent's */

	/* the listener of the copy serves a new client */
	int n;
	connect_n(net, &n, 1, PORT);
	run(net, XT_MS(20));
	assert_int_equal(xt_tcp_state(net->a, n), XT_ESTABLISHED);
	assert_true(xt_tcp_accept(b, l, NULL, NULL) >= 0);
	net_free(net);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_family_splits_syns),
		cmocka_unit_test(test_family_cookies),
		cmocka_unit_test(test_family_no_rst_for_unknown),
		cmocka_unit_test(test_forget_connections),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
