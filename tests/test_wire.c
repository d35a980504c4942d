/* Unit tests for the wire side below TCP: checksums, SipHash, Ethernet,
 * ARP, IPv4 and ICMP.  Everything except the checksum and SipHash
 * primitives goes through the public API: frames in with xt_stack_input,
 * frames out captured from cfg.tx, and counters from xt_stack_counters.
 * Input frames are fed from exactly-sized heap copies so that AddressSanitizer
 * catches any read past the end.  Nothing here depends on TCP behaviour.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "xt_internal.h"

#define CAP_MAX 2048
#define T0 XT_SEC(1000)

static const uint8_t MY_MAC[6] = { 0x02, 0x00, 0x00, 0x00, 0x00, 0x01 };
static const uint8_t PEER_MAC[6] = { 0x02, 0x00, 0x00, 0x00, 0x00, 0x02 };
static const uint8_t PEER_MAC2[6] = { 0x02, 0x00, 0x00, 0x00, 0x00, 0x22 };
static const uint8_t GW_MAC[6] = { 0x02, 0x00, 0x00, 0x00, 0x00, 0xfe };
static const uint8_t BCAST[6] = { 0xff, 0xff, 0xff, 0xff, 0xff, 0xff };
static const uint8_t ZERO_MAC[6] = { 0 };

#define IP4(a, b, c, d) (((uint32_t)(a) << 24) | ((uint32_t)(b) << 16) | ((uint32_t)(c) << 8) | (uint32_t)(d))
#define MY_IP IP4(10, 0, 0, 1)
#define PEER_IP IP4(10, 0, 0, 2)
#define PEER_IP2 IP4(10, 0, 0, 3)
#define GW_IP IP4(10, 0, 0, 254)
#define FAR_IP IP4(192, 168, 7, 9)

/* --- fixture: one engine whose output is captured --- */

struct fx {
	struct xt_stack *st;
	struct xt_stack_cfg cfg;
	xt_time_t now;
	int n;                  /* frames captured */
	uint32_t len[CAP_MAX];
	uint8_t f[CAP_MAX][XT_FRAME_MAX];
	struct xt_counters snap; /* counters before the step under test */
};

static int cap_tx(void *ctx, const struct xt_frame *frames, int n)
{
	struct fx *fx = ctx;

	for (int i = 0; i < n; i++) {
		assert_true(fx->n < CAP_MAX);
		assert_true(frames[i].len <= XT_FRAME_MAX);
		memcpy(fx->f[fx->n], frames[i].data, frames[i].len);
		fx->len[fx->n++] = frames[i].len;
	}
	return n;
}

static void fx_cfg(struct fx *fx)
{
	xt_stack_cfg_defaults(&fx->cfg);
	memcpy(fx->cfg.mac, MY_MAC, 6);
	fx->cfg.ip = MY_IP;
	fx->cfg.netmask = 0xffffff00u;
	fx->cfg.gateway = GW_IP;
	fx->cfg.secret[0] = 0x0123456789abcdefull;
	fx->cfg.secret[1] = 0xfedcba9876543210ull;
	fx->cfg.tx = cap_tx;
	fx->cfg.tx_ctx = fx;
}

/* (Re)creates the engine from fx->cfg. */
static void fx_start(struct fx *fx)
{
	xt_stack_free(fx->st);
	fx->now = T0;
	fx->n = 0;
	fx->st = xt_stack_new(&fx->cfg, fx->now);
	assert_non_null(fx->st);
}

static int setup(void **state)
{
	struct fx *fx = calloc(1, sizeof(*fx));

	if (fx == NULL)
		return -1;
	fx_cfg(fx);
	fx_start(fx);
	*state = fx;
	return 0;
}

static int teardown(void **state)
{
	struct fx *fx = *state;

	xt_stack_free(fx->st);
	free(fx);
	return 0;
}

static void snap(struct fx *fx)
{
	fx->snap = *xt_stack_counters(fx->st);
	fx->n = 0;
}

/* Feeds one frame from an exactly-sized heap copy, then flushes output. */
static void feed(struct fx *fx, const uint8_t *frame, size_t len)
{
	uint8_t *copy = malloc(len ? len : 1);

	assert_non_null(copy);
	memcpy(copy, frame, len);
	xt_stack_input(fx->st, copy, len, fx->now);
	free(copy);
	xt_stack_flush(fx->st);
}

static void poll_at(struct fx *fx, xt_time_t t)
{
	fx->now = t;
	xt_stack_poll(fx->st, t);
	xt_stack_flush(fx->st);
}

/* Counters are all uint64_t, in xt_counter_names order. */
static uint64_t cnt_at(const struct xt_counters *c, int idx)
{
	uint64_t v;

	memcpy(&v, (const char *)c + (size_t)idx * sizeof(uint64_t), sizeof(v));
	return v;
}

static int cnt_idx(const char *name)
{
	for (int i = 0; xt_counter_names[i] != NULL; i++)
		if (strcmp(xt_counter_names[i], name) == 0)
			return i;
	fail_msg("no counter %s", name);
	return -1;
}

static uint64_t delta(struct fx *fx, const char *name)
{
	int i = cnt_idx(name);

	return cnt_at(xt_stack_counters(fx->st), i) - cnt_at(&fx->snap, i);
}

static bool is_drop_counter(const char *n)
{
	return strncmp(n, "drop_", 5) == 0 || strcmp(n, "arp_queue_full") == 0 ||
	       strcmp(n, "arp_resolve_failed") == 0;
}

/* Since snap(): exactly one drop, counted under `name` (NULL: no drop). */
static void expect_drop(struct fx *fx, const char *name)
{
	for (int i = 0; xt_counter_names[i] != NULL; i++) {
		const char *n = xt_counter_names[i];
		uint64_t d;

		if (!is_drop_counter(n))
			continue;
		d = cnt_at(xt_stack_counters(fx->st), i) - cnt_at(&fx->snap, i);
		if (name != NULL && strcmp(n, name) == 0) {
			if (d != 1)
				fail_msg("%s moved by %llu, expected 1", n, (unsigned long long)d);
		} else if (d != 0) {
			fail_msg("%s moved by %llu, expected %s", n, (unsigned long long)d,
				 name ? name : "no drop");
		}
	}
}

/* --- frame builders --- */

static uint16_t ref_csum(const uint8_t *p, size_t len)
{
	uint32_t s = 0;

	for (size_t i = 0; i + 1 < len; i += 2)
		s += (uint32_t)(p[i] << 8 | p[i + 1]);
	if (len & 1)
		s += (uint32_t)p[len - 1] << 8;
	while (s >> 16)
		s = (s & 0xffff) + (s >> 16);
	return (uint16_t)~s;
}

static size_t eth_hdr(uint8_t *b, const uint8_t dst[6], const uint8_t src[6], uint16_t type)
{
	memcpy(b, dst, 6);
	memcpy(b + 6, src, 6);
	xt_wr16(b + 12, type);
	return 14;
}

static size_t arp_frame(uint8_t *b, const uint8_t eth_dst[6], uint16_t op, const uint8_t sha[6],
			uint32_t spa, const uint8_t tha[6], uint32_t tpa)
{
	uint8_t *p = b + eth_hdr(b, eth_dst, sha, 0x0806);

	xt_wr16(p, 1);
	xt_wr16(p + 2, 0x0800);
	p[4] = 6;
	p[5] = 4;
	xt_wr16(p + 6, op);
	memcpy(p + 8, sha, 6);
	xt_wr32(p + 14, spa);
	memcpy(p + 18, tha, 6);
	xt_wr32(p + 24, tpa);
	return 42;
}

struct ipspec {
	const uint8_t *dmac, *smac;
	uint32_t src, dst;
	uint8_t proto;
	uint16_t id;
	uint16_t frag;
	uint8_t ttl;
};

/* Ethernet + IPv4 (no options) + l4; returns the frame length. */
static size_t ip_frame(uint8_t *b, const struct ipspec *s, const uint8_t *l4, size_t l4len)
{
	uint8_t *h = b + eth_hdr(b, s->dmac, s->smac, 0x0800);

	h[0] = 0x45;
	h[1] = 0;
	xt_wr16(h + 2, (uint16_t)(20 + l4len));
	xt_wr16(h + 4, s->id);
	xt_wr16(h + 6, s->frag);
	h[8] = s->ttl;
	h[9] = s->proto;
	xt_wr16(h + 10, 0);
	xt_wr32(h + 12, s->src);
	xt_wr32(h + 16, s->dst);
	xt_wr16(h + 10, ref_csum(h, 20));
	memcpy(h + 20, l4, l4len);
	return 14 + 20 + l4len;
}

/* Rewrites the IPv4 header checksum after a test has edited the header. */
static void ip_fix_csum(uint8_t *frame)
{
	uint8_t *h = frame + 14;
	size_t hlen = (size_t)(h[0] & 0xf) * 4;

	xt_wr16(h + 10, 0);
	xt_wr16(h + 10, ref_csum(h, hlen));
}

static size_t icmp_msg(uint8_t *m, uint8_t type, uint8_t code, uint32_t word, const uint8_t *data,
		       size_t n)
{
	m[0] = type;
	m[1] = code;
	xt_wr16(m + 2, 0);
	xt_wr32(m + 4, word);
	if (n)
		memcpy(m + 8, data, n);
	xt_wr16(m + 2, ref_csum(m, 8 + n));
	return 8 + n;
}

static const uint8_t PING_DATA[] = "xtcp ping payload 0123456789";

/* An echo request from src via smac, to us. */
static size_t ping_frame(uint8_t *b, const uint8_t smac[6], uint32_t src, uint16_t id, uint16_t seq)
{
	uint8_t m[64];
	size_t n = icmp_msg(m, 8, 0, (uint32_t)id << 16 | seq, PING_DATA, sizeof(PING_DATA));
	struct ipspec s = { MY_MAC, smac, src, MY_IP, 1, 0x1234, 0x4000, 64 };

	return ip_frame(b, &s, m, n);
}

static void ping(struct fx *fx, const uint8_t smac[6], uint32_t src, uint16_t seq)
{
	uint8_t b[128];

	feed(fx, b, ping_frame(b, smac, src, 0x77, seq));
}

/* Asserts that captured frame i is our echo reply to (dmac, dst) for seq,
 * byte for byte; the IP ID is the engine's choice and is taken from it. */
static void expect_echo_reply(struct fx *fx, int i, const uint8_t dmac[6], uint32_t dst, uint16_t seq)
{
	uint8_t m[64], exp[128];
	size_t n = icmp_msg(m, 0, 0, (uint32_t)0x77 << 16 | seq, PING_DATA, sizeof(PING_DATA));
	struct ipspec s = { dmac, MY_MAC, MY_IP, dst, 1, 0, 0x4000, 64 };
	size_t len;

	assert_true(i < fx->n);
	s.id = xt_rd16(fx->f[i] + 18);
	len = ip_frame(exp, &s, m, n);
	assert_int_equal(fx->len[i], len);
	assert_memory_equal(fx->f[i], exp, len);
}

static void expect_arp_request(struct fx *fx, int i, const uint8_t eth_dst[6], uint32_t tpa)
{
	uint8_t exp[42];

	arp_frame(exp, eth_dst, 1, MY_MAC, MY_IP, ZERO_MAC, tpa);
	assert_true(i < fx->n);
	assert_int_equal(fx->len[i], 42);
	assert_memory_equal(fx->f[i], exp, 42);
}

/* Teaches the engine PEER_MAC for PEER_IP through an ARP request to us. */
static void learn_peer(struct fx *fx)
{
	uint8_t b[42];

	feed(fx, b, arp_frame(b, BCAST, 1, PEER_MAC, PEER_IP, ZERO_MAC, MY_IP));
	fx->n = 0;
}

/* ================= checksum ================= */

static uint32_t rng_state = 12345;
static uint32_t rnd(void)
{
	rng_state = rng_state * 1103515245u + 12345u;
	return rng_state >> 8;
}

static void test_csum_random_alignments(void **state)
{
	uint8_t raw[2048 + 16];

	(void)state;
	for (size_t i = 0; i < sizeof(raw); i++)
		raw[i] = (uint8_t)rnd();
	for (size_t align = 0; align < 16; align++)
		for (size_t len = 0; len <= 300; len++) {
			uint16_t got = xt_csum_fold(xt_csum_add(0, raw + align, len));

			if (got != ref_csum(raw + align, len))
				fail_msg("align %zu len %zu: %04x vs %04x", align, len, got,
					 ref_csum(raw + align, len));
		}
	for (int k = 0; k < 200; k++) {
		size_t align = rnd() % 16, len = rnd() % 2049;

		assert_int_equal(xt_csum_fold(xt_csum_add(0, raw + align, len)), ref_csum(raw + align, len));
	}
}

static void test_csum_extremes(void **state)
{
	static uint8_t ff[65536], zero[64];
	/* RFC 1071 section 3 example: sum of 0001 f203 f4f5 f6f7 is ddf2. */
	static const uint8_t ex[8] = { 0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7 };

	(void)state;
	assert_int_equal(xt_csum_fold(xt_csum_add(0, ex, 8)), (uint16_t)~0xddf2);
	memset(ff, 0xff, sizeof(ff));
	for (size_t len = 0; len < 70; len++)
		assert_int_equal(xt_csum_fold(xt_csum_add(0, ff + 1, len)), ref_csum(ff + 1, len));
	assert_int_equal(xt_csum_fold(xt_csum_add(0, ff, sizeof(ff))), ref_csum(ff, sizeof(ff)));
	assert_int_equal(xt_csum_fold(xt_csum_add(0, zero, sizeof(zero))), 0xffff);
	/* A running sum near the 32-bit limit must not lose its carries. */
	assert_int_equal(xt_csum_fold(xt_csum_add(0xffffffffu, ex, 8)),
			 xt_csum_fold(xt_csum_add(0xffff, ex, 8)));
}

static void test_csum_chained_and_verify(void **state)
{
	uint8_t raw[600];

	(void)state;
	for (size_t i = 0; i < sizeof(raw); i++)
		raw[i] = (uint8_t)rnd();
	for (size_t len = 0; len < 300; len++)
		for (size_t cut = 0; cut <= len; cut += 2) {
			uint32_t s = xt_csum_add(0, raw + 3, cut);

			s = xt_csum_add(s, raw + 3 + cut, len - cut);
			assert_int_equal(xt_csum_fold(s), ref_csum(raw + 3, len));
		}
	/* A buffer carrying its own checksum sums to zero (even lengths). */
	for (size_t len = 4; len < 200; len += 2) {
		uint8_t *p = raw + 1;

		xt_wr16(p + 2, 0);
		xt_wr16(p + 2, xt_csum_fold(xt_csum_add(0, p, len)));
		assert_int_equal(xt_csum_fold(xt_csum_add(0, p, len)), 0);
	}
}

static void test_csum_pseudo(void **state)
{
	uint8_t ph[12 + 41];

	(void)state;
	for (int k = 0; k < 100; k++) {
		uint32_t src = rnd() << 8 ^ rnd(), dst = rnd() << 8 ^ rnd();
		uint16_t len = (uint16_t)(rnd() % 42);

		xt_wr32(ph, src);
		xt_wr32(ph + 4, dst);
		ph[8] = 0;
		ph[9] = 6;
		xt_wr16(ph + 10, len);
		for (int i = 0; i < len; i++)
			ph[12 + i] = (uint8_t)rnd();
		assert_int_equal(xt_csum_fold(xt_csum_add(xt_csum_pseudo(src, dst, 6, len), ph + 12, len)),
				 ref_csum(ph, 12 + (size_t)len));
	}
}

/* ================= SipHash ================= */

static void test_siphash_vectors(void **state)
{
	/* Reference vectors of the SipHash paper, key 00..0f, message 00..n-1. */
	static const uint64_t vec[40] = {
		0x726fdb47dd0e0e31ull, 0x74f839c593dc67fdull, 0x0d6c8009d9a94f5aull, 0x85676696d7fb7e2dull,
		0xcf2794e0277187b7ull, 0x18765564cd99a68dull, 0xcbc9466e58fee3ceull, 0xab0200f58b01d137ull,
		0x93f5f5799a932462ull, 0x9e0082df0ba9e4b0ull, 0x7a5dbbc594ddb9f3ull, 0xf4b32f46226bada7ull,
		0x751e8fbc860ee5fbull, 0x14ea5627c0843d90ull, 0xf723ca908e7af2eeull, 0xa129ca6149be45e5ull,
		0x3f2acc7f57c29bdbull, 0x699ae9f52cbe4794ull, 0x4bc1b3f0968dd39cull, 0xbb6dc91da77961bdull,
		0xbed65cf21aa2ee98ull, 0xd0f2cbb02e3b67c7ull, 0x93536795e3a33e88ull, 0xa80c038ccd5ccec8ull,
		0xb8ad50c6f649af94ull, 0xbce192de8a85b8eaull, 0x17d835b85bbb15f3ull, 0x2f2e6163076bcfadull,
		0xde4daaaca71dc9a5ull, 0xa6a2506687956571ull, 0xad87a3535c49ef28ull, 0x32d892fad841c342ull,
		0x7127512f72f27cceull, 0xa7f32346f95978e3ull, 0x12e0b01abb051238ull, 0x15e034d40fa197aeull,
		0x314dffbe0815a3b4ull, 0x027990f029623981ull, 0xcadcd4e59ef40c4dull, 0x9abfd8766a33735cull,
	};
	static const uint64_t key[2] = { 0x0706050403020100ull, 0x0f0e0d0c0b0a0908ull };
	uint8_t raw[48];

	(void)state;
	for (int i = 0; i < 48; i++)
		raw[i] = (uint8_t)i;
	for (size_t n = 0; n < 40; n++) {
		/* Unaligned copies must hash the same. */
		uint8_t buf[48 + 1];

		memcpy(buf + 1, raw, n);
		assert_int_equal(xt_siphash(key, raw, n), vec[n]);
		assert_int_equal(xt_siphash(key, buf + 1, n), vec[n]);
	}
}

/* ================= Ethernet ================= */

static void test_eth_drops(void **state)
{
	struct fx *fx = *state;
	uint8_t b[128];
	size_t len = ping_frame(b, PEER_MAC, PEER_IP, 1, 1);
	static const uint8_t other[6] = { 0x02, 0, 0, 0, 0, 0x99 };
	static const uint8_t mcast[6] = { 0x01, 0x00, 0x5e, 0, 0, 1 };

	snap(fx);
	feed(fx, b, 13);
	expect_drop(fx, "drop_eth_short");
	snap(fx);
	feed(fx, b, 0);
	expect_drop(fx, "drop_eth_short");

	memcpy(b, other, 6);
	snap(fx);
	feed(fx, b, len);
	expect_drop(fx, "drop_eth_not_for_us");
	memcpy(b, mcast, 6);
	snap(fx);
	feed(fx, b, len);
	expect_drop(fx, "drop_eth_not_for_us");

	memcpy(b, MY_MAC, 6);
	xt_wr16(b + 12, 0x86dd);
	snap(fx);
	feed(fx, b, len);
	expect_drop(fx, "drop_eth_type");
	xt_wr16(b + 12, 0x8100);
	snap(fx);
	feed(fx, b, len);
	expect_drop(fx, "drop_eth_type");
	assert_int_equal(fx->n, 0);
}

/* ================= ARP ================= */

static void test_arp_request_answered(void **state)
{
	struct fx *fx = *state;
	uint8_t b[64], exp[42];

	snap(fx);
	feed(fx, b, arp_frame(b, BCAST, 1, PEER_MAC, PEER_IP, ZERO_MAC, MY_IP));
	expect_drop(fx, NULL);
	assert_int_equal(delta(fx, "arp_rx"), 1);
	assert_int_equal(delta(fx, "arp_tx_reply"), 1);
	assert_int_equal(fx->n, 1);
	arp_frame(exp, PEER_MAC, 2, MY_MAC, MY_IP, PEER_MAC, PEER_IP);
	assert_int_equal(fx->len[0], 42);
	assert_memory_equal(fx->f[0], exp, 42);

	/* Link padding to 60 bytes, and a unicast request, are fine too. */
	memset(b, 0xab, sizeof(b));
	arp_frame(b, MY_MAC, 1, PEER_MAC, PEER_IP, ZERO_MAC, MY_IP);
	snap(fx);
	feed(fx, b, 60);
	expect_drop(fx, NULL);
	assert_int_equal(fx->n, 1);
	assert_memory_equal(fx->f[0], exp, 42);
}

static void test_arp_learned(void **state)
{
	struct fx *fx = *state;

	learn_peer(fx);
	snap(fx);
	ping(fx, PEER_MAC, PEER_IP, 1);
	expect_drop(fx, NULL);
	assert_int_equal(delta(fx, "arp_tx_request"), 0);
	assert_int_equal(fx->n, 1);
	expect_echo_reply(fx, 0, PEER_MAC, PEER_IP, 1);
	assert_int_equal(xt_stack_next_deadline(fx->st), XT_TIME_NEVER);

	/* An ARP reply to us teaches just the same. */
	{
		uint8_t b[42];

		feed(fx, b, arp_frame(b, MY_MAC, 2, PEER_MAC2, PEER_IP2, MY_MAC, MY_IP));
	}
	snap(fx);
	ping(fx, PEER_MAC2, PEER_IP2, 2);
	assert_int_equal(fx->n, 1);
	expect_echo_reply(fx, 0, PEER_MAC2, PEER_IP2, 2);
}

static void test_arp_not_for_us(void **state)
{
	struct fx *fx = *state;
	uint8_t b[42];

	snap(fx);
	feed(fx, b, arp_frame(b, BCAST, 1, PEER_MAC, PEER_IP, ZERO_MAC, IP4(10, 0, 0, 77)));
	expect_drop(fx, "drop_arp_not_for_us");
	assert_int_equal(fx->n, 0);
	/* Not learned: a reply to the peer needs resolution. */
	snap(fx);
	ping(fx, PEER_MAC, PEER_IP, 1);
	assert_int_equal(fx->n, 1);
	expect_arp_request(fx, 0, BCAST, PEER_IP);
}

/* RFC 826 merge: a known sender is updated even when the packet (here a
 * gratuitous ARP) is not addressed to us. */
static void test_arp_merge_updates_existing(void **state)
{
	struct fx *fx = *state;
	uint8_t b[42];

	learn_peer(fx);
	snap(fx);
	feed(fx, b, arp_frame(b, BCAST, 1, PEER_MAC2, PEER_IP, ZERO_MAC, PEER_IP));
	expect_drop(fx, "drop_arp_not_for_us");
	assert_int_equal(fx->n, 0);
	snap(fx);
	ping(fx, PEER_MAC2, PEER_IP, 3);
	assert_int_equal(fx->n, 1);
	expect_echo_reply(fx, 0, PEER_MAC2, PEER_IP, 3);
}

static void test_arp_malformed(void **state)
{
	struct fx *fx = *state;
	uint8_t b[42];
	struct {
		int off;
		uint8_t val;
	} bad[] = {
		{ 14 + 1, 6 },   /* htype 6 */
		{ 14 + 2, 0x86 }, /* ptype 0x8600 */
		{ 14 + 4, 8 },   /* hlen 8 */
		{ 14 + 5, 16 },  /* plen 16 */
		{ 14 + 7, 3 },   /* op 3 (RARP) */
		{ 14 + 8, 0x01 }, /* sender MAC multicast */
		{ 14 + 14, 127 }, /* sender IP loopback */
		{ 14 + 14, 224 }, /* sender IP multicast */
	};

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		arp_frame(b, BCAST, 1, PEER_MAC, PEER_IP, ZERO_MAC, MY_IP);
		b[bad[i].off] = bad[i].val;
		snap(fx);
		feed(fx, b, 42);
		expect_drop(fx, "drop_arp_malformed");
		assert_int_equal(fx->n, 0);
	}
	for (size_t len = 14; len < 42; len++) {
		arp_frame(b, BCAST, 1, PEER_MAC, PEER_IP, ZERO_MAC, MY_IP);
		snap(fx);
		feed(fx, b, len);
		expect_drop(fx, "drop_arp_malformed");
	}
	/* Someone claiming our own address, or our own MAC, is not learned. */
	snap(fx);
	feed(fx, b, arp_frame(b, BCAST, 1, PEER_MAC, MY_IP, ZERO_MAC, MY_IP));
	expect_drop(fx, "drop_arp_malformed");
	snap(fx);
	feed(fx, b, arp_frame(b, BCAST, 1, MY_MAC, PEER_IP, ZERO_MAC, MY_IP));
	expect_drop(fx, "drop_arp_malformed");
	assert_int_equal(fx->n, 0);
}

/* RFC 5227 probe for our address (sender 0.0.0.0): defended, not learned. */
static void test_arp_probe_defended(void **state)
{
	struct fx *fx = *state;
	uint8_t b[42], exp[42];

	snap(fx);
	feed(fx, b, arp_frame(b, BCAST, 1, PEER_MAC, 0, ZERO_MAC, MY_IP));
	expect_drop(fx, NULL);
	assert_int_equal(fx->n, 1);
	arp_frame(exp, PEER_MAC, 2, MY_MAC, MY_IP, PEER_MAC, 0);
	assert_memory_equal(fx->f[0], exp, 42);
	snap(fx);
	feed(fx, b, arp_frame(b, BCAST, 1, PEER_MAC, 0, ZERO_MAC, PEER_IP2));
	expect_drop(fx, "drop_arp_not_for_us");
	/* A probe from a multicast MAC gets no reply. */
	exp[0] = 0x01;
	snap(fx);
	feed(fx, b, arp_frame(b, BCAST, 1, exp, 0, ZERO_MAC, MY_IP));
	expect_drop(fx, "drop_arp_malformed");
	assert_int_equal(fx->n, 0);
}

static void test_arp_resolve_and_flush(void **state)
{
	struct fx *fx = *state;
	uint8_t b[42];

	snap(fx);
	ping(fx, PEER_MAC, PEER_IP, 1);
	ping(fx, PEER_MAC, PEER_IP, 2);
	ping(fx, PEER_MAC, PEER_IP, 3);
	expect_drop(fx, NULL);
	/* One request for three frames: at most one per second per address. */
	assert_int_equal(fx->n, 1);
	assert_int_equal(delta(fx, "arp_tx_request"), 1);
	expect_arp_request(fx, 0, BCAST, PEER_IP);
	assert_int_equal(xt_stack_next_deadline(fx->st), T0 + XT_SEC(1));

	fx->n = 0;
	fx->now += XT_MS(5);
	feed(fx, b, arp_frame(b, MY_MAC, 2, PEER_MAC, PEER_IP, MY_MAC, MY_IP));
	expect_drop(fx, NULL);
	assert_int_equal(fx->n, 3);
	for (int i = 0; i < 3; i++)
		expect_echo_reply(fx, i, PEER_MAC, PEER_IP, (uint16_t)(i + 1));
	/* The IP ID counts up frame by frame. */
	assert_int_equal(xt_rd16(fx->f[1] + 18), (uint16_t)(xt_rd16(fx->f[0] + 18) + 1));
	assert_int_equal(xt_stack_next_deadline(fx->st), XT_TIME_NEVER);
	/* Nothing more is sent when the old retry time passes. */
	fx->n = 0;
	poll_at(fx, T0 + XT_SEC(5));
	assert_int_equal(fx->n, 0);
}

static void test_arp_via_gateway(void **state)
{
	struct fx *fx = *state;
	uint8_t b[42];

	snap(fx);
	ping(fx, GW_MAC, FAR_IP, 9);
	assert_int_equal(fx->n, 1);
	expect_arp_request(fx, 0, BCAST, GW_IP);
	fx->n = 0;
	feed(fx, b, arp_frame(b, MY_MAC, 2, GW_MAC, GW_IP, MY_MAC, MY_IP));
	assert_int_equal(fx->n, 1);
	expect_echo_reply(fx, 0, GW_MAC, FAR_IP, 9);
	expect_drop(fx, NULL);
}

static void test_arp_retry_and_give_up(void **state)
{
	struct fx *fx = *state;

	snap(fx);
	ping(fx, PEER_MAC, PEER_IP, 1);
	assert_int_equal(fx->n, 1);
	fx->n = 0;
	poll_at(fx, T0 + XT_MS(999));
	assert_int_equal(fx->n, 0);
	assert_int_equal(xt_stack_next_deadline(fx->st), T0 + XT_SEC(1));
	poll_at(fx, T0 + XT_SEC(1));
	assert_int_equal(fx->n, 1);
	expect_arp_request(fx, 0, BCAST, PEER_IP);
	assert_int_equal(xt_stack_next_deadline(fx->st), T0 + XT_SEC(2));
	/* More output meanwhile queues but sends no extra request. */
	fx->now = T0 + XT_MS(1500);
	ping(fx, PEER_MAC, PEER_IP, 2);
	assert_int_equal(fx->n, 1);
	poll_at(fx, T0 + XT_SEC(2) + 7);
	assert_int_equal(fx->n, 2);
	expect_arp_request(fx, 1, BCAST, PEER_IP);
	assert_int_equal(xt_stack_next_deadline(fx->st), T0 + XT_SEC(3) + 7);
	assert_int_equal(delta(fx, "arp_tx_request"), 3);
	expect_drop(fx, NULL);

	/* Third request unanswered: both queued frames are dropped. */
	poll_at(fx, T0 + XT_SEC(3) + 6);
	assert_int_equal(delta(fx, "arp_resolve_failed"), 0);
	poll_at(fx, T0 + XT_SEC(3) + 7);
	assert_int_equal(fx->n, 2);
	assert_int_equal(delta(fx, "arp_resolve_failed"), 2);
	assert_int_equal(delta(fx, "arp_tx_request"), 3);
	assert_int_equal(xt_stack_next_deadline(fx->st), XT_TIME_NEVER);

	/* A later frame starts afresh. */
	fx->n = 0;
	ping(fx, PEER_MAC, PEER_IP, 3);
	assert_int_equal(fx->n, 1);
	expect_arp_request(fx, 0, BCAST, PEER_IP);
}

static void test_arp_queue_bound(void **state)
{
	struct fx *fx = *state;
	uint8_t b[42];

	fx->cfg.arp_queue_max = 2;
	fx_start(fx);
	snap(fx);
	ping(fx, PEER_MAC, PEER_IP, 1);
	ping(fx, PEER_MAC2, PEER_IP2, 2);
	expect_drop(fx, NULL);
	snap(fx);
	ping(fx, PEER_MAC, PEER_IP, 3);
	expect_drop(fx, "arp_queue_full");
	snap(fx);
	ping(fx, PEER_MAC2, PEER_IP2, 4);
	expect_drop(fx, "arp_queue_full");
	assert_int_equal(fx->n, 0);

	/* Resolution frees the slot for the next frame. */
	feed(fx, b, arp_frame(b, MY_MAC, 2, PEER_MAC, PEER_IP, MY_MAC, MY_IP));
	assert_int_equal(fx->n, 1);
	expect_echo_reply(fx, 0, PEER_MAC, PEER_IP, 1);
	snap(fx);
	ping(fx, PEER_MAC2, PEER_IP2, 5);
	expect_drop(fx, NULL);
	feed(fx, b, arp_frame(b, MY_MAC, 2, PEER_MAC2, PEER_IP2, MY_MAC, MY_IP));
	assert_int_equal(fx->n, 2);
	expect_echo_reply(fx, 0, PEER_MAC2, PEER_IP2, 2);
	expect_echo_reply(fx, 1, PEER_MAC2, PEER_IP2, 5);
}

static void test_arp_queue_zero(void **state)
{
	struct fx *fx = *state;

	fx->cfg.arp_queue_max = 0;
	fx_start(fx);
	snap(fx);
	ping(fx, PEER_MAC, PEER_IP, 1);
	expect_drop(fx, "arp_queue_full");
	/* The request still goes out, so the next frame may find the MAC. */
	assert_int_equal(fx->n, 1);
	expect_arp_request(fx, 0, BCAST, PEER_IP);
}

static void test_arp_static_entry(void **state)
{
	struct fx *fx = *state;
	uint8_t b[42];

	assert_int_equal(xt_arp_add(fx->st, PEER_IP, PEER_MAC, fx->now), 0);
	fx->now = T0 + XT_SEC(100000);
	snap(fx);
	ping(fx, PEER_MAC, PEER_IP, 1);
	assert_int_equal(fx->n, 1);
	expect_echo_reply(fx, 0, PEER_MAC, PEER_IP, 1);
	/* The wire cannot override it. */
	feed(fx, b, arp_frame(b, BCAST, 1, PEER_MAC2, PEER_IP, ZERO_MAC, MY_IP));
	fx->n = 0;
	ping(fx, PEER_MAC, PEER_IP, 2);
	assert_int_equal(fx->n, 1);
	expect_echo_reply(fx, 0, PEER_MAC, PEER_IP, 2);
	assert_int_equal(xt_stack_next_deadline(fx->st), XT_TIME_NEVER);
}

/* A static entry added while frames wait for the address sends them. */
static void test_arp_static_flushes_queue(void **state)
{
	struct fx *fx = *state;

	ping(fx, PEER_MAC, PEER_IP, 1);
	assert_int_equal(fx->n, 1);
	fx->n = 0;
	assert_int_equal(xt_arp_add(fx->st, PEER_IP, PEER_MAC, fx->now), 0);
	xt_stack_flush(fx->st);
	assert_int_equal(fx->n, 1);
	expect_echo_reply(fx, 0, PEER_MAC, PEER_IP, 1);
	assert_int_equal(xt_stack_next_deadline(fx->st), XT_TIME_NEVER);
	assert_int_equal(xt_arp_add(fx->st, 0, PEER_MAC, fx->now), -EINVAL);
	assert_int_equal(xt_arp_add(fx->st, PEER_IP, BCAST, fx->now), -EINVAL);
}

/* Past arp_timeout_ms the old MAC stays in use while unicast requests
 * confirm it; unanswered, the entry goes and resolution starts afresh. */
static void test_arp_aging_unanswered(void **state)
{
	struct fx *fx = *state;
	xt_time_t t = T0 + XT_MS(60000);

	learn_peer(fx);
	fx->now = t - 1;
	ping(fx, PEER_MAC, PEER_IP, 1);
	assert_int_equal(fx->n, 1); /* still fresh: no request */
	fx->n = 0;
	fx->now = t;
	snap(fx);
	ping(fx, PEER_MAC, PEER_IP, 2);
	assert_int_equal(fx->n, 2);
	expect_echo_reply(fx, 0, PEER_MAC, PEER_IP, 2);
	expect_arp_request(fx, 1, PEER_MAC, PEER_IP);
	assert_int_equal(xt_stack_next_deadline(fx->st), t + XT_SEC(1));
	poll_at(fx, t + XT_SEC(1));
	poll_at(fx, t + XT_SEC(2));
	assert_int_equal(fx->n, 4);
	expect_arp_request(fx, 2, PEER_MAC, PEER_IP);
	expect_arp_request(fx, 3, PEER_MAC, PEER_IP);
	poll_at(fx, t + XT_SEC(3));
	assert_int_equal(fx->n, 4);
	expect_drop(fx, NULL);
	assert_int_equal(xt_stack_next_deadline(fx->st), XT_TIME_NEVER);
	fx->n = 0;
	ping(fx, PEER_MAC, PEER_IP, 3);
	assert_int_equal(fx->n, 1);
	expect_arp_request(fx, 0, BCAST, PEER_IP);
}

static void test_arp_aging_confirmed(void **state)
{
	struct fx *fx = *state;
	xt_time_t t = T0 + XT_MS(60000);
	uint8_t b[42];

	learn_peer(fx);
	fx->now = t;
	ping(fx, PEER_MAC, PEER_IP, 1);
	assert_int_equal(fx->n, 2);
	fx->n = 0;
	fx->now = t + XT_MS(1);
	feed(fx, b, arp_frame(b, MY_MAC, 2, PEER_MAC, PEER_IP, MY_MAC, MY_IP));
	assert_int_equal(xt_stack_next_deadline(fx->st), XT_TIME_NEVER);
	poll_at(fx, t + XT_SEC(5));
	assert_int_equal(fx->n, 0);
	ping(fx, PEER_MAC, PEER_IP, 2);
	assert_int_equal(fx->n, 1);
	expect_echo_reply(fx, 0, PEER_MAC, PEER_IP, 2);
}

/* The cache holds 1024 entries: when full, the learned entry that expires
 * first makes room; unresolved entries are never evicted. */
static void test_arp_cache_full(void **state)
{
	struct fx *fx = *state;
	uint8_t b[64], mac[6] = { 0x02, 0, 0, 0x10, 0, 0 };
	const int n = 1100;

	fx->cfg.netmask = 0xffff0000u;
	fx_start(fx);
	for (int i = 0; i < n; i++) {
		uint32_t ip = IP4(10, 0, 100 + i / 250, 1 + i % 250);

		mac[4] = (uint8_t)(i >> 8);
		mac[5] = (uint8_t)i;
		fx->now = T0 + (xt_time_t)i;
		feed(fx, b, arp_frame(b, BCAST, 1, mac, ip, ZERO_MAC, MY_IP));
		assert_int_equal(fx->n, 1); /* every request answered */
		fx->n = 0;
	}
	snap(fx);
	/* The newest is known, the oldest was evicted. */
	ping(fx, mac, IP4(10, 0, 100 + (n - 1) / 250, 1 + (n - 1) % 250), 1);
	assert_int_equal(fx->n, 1);
	assert_int_equal(xt_rd16(fx->f[0] + 12), 0x0800);
	ping(fx, mac, IP4(10, 0, 100, 1), 2);
	assert_int_equal(fx->n, 2);
	expect_arp_request(fx, 1, BCAST, IP4(10, 0, 100, 1));
	expect_drop(fx, NULL);
}

static void test_arp_cache_full_unresolved(void **state)
{
	struct fx *fx = *state;
	uint8_t mac[6] = { 0x02, 0, 0, 0, 0, 0 };

	fx->cfg.netmask = 0xffff0000u;
	fx_start(fx);
	snap(fx);
	for (int i = 0; i < 1024; i++) {
		ping(fx, mac, IP4(10, 0, 100 + i / 250, 1 + i % 250), 1);
		fx->n = 0;
	}
	assert_int_equal(delta(fx, "arp_tx_request"), 1024);
	assert_int_equal(delta(fx, "arp_queue_full"), 1024 - 256);
	snap(fx);
	ping(fx, mac, IP4(10, 0, 200, 1), 1);
	expect_drop(fx, "arp_queue_full");
	assert_int_equal(delta(fx, "arp_tx_request"), 0);
	/* All of them give up after three tries; the cache is usable again. */
	for (int k = 1; k <= 3; k++) {
		poll_at(fx, T0 + XT_SEC(k));
		fx->n = 0;
	}
	assert_int_equal(delta(fx, "arp_resolve_failed"), 256);
	assert_int_equal(delta(fx, "arp_tx_request"), 2048);
	fx->n = 0;
	ping(fx, mac, IP4(10, 0, 200, 1), 1);
	assert_int_equal(fx->n, 1);
	expect_arp_request(fx, 0, BCAST, IP4(10, 0, 200, 1));
}

/* ================= IPv4 ================= */

static size_t good_ping(struct fx *fx, uint8_t *b)
{
	learn_peer(fx);
	return ping_frame(b, PEER_MAC, PEER_IP, 0x77, 1);
}

static void test_ip_short(void **state)
{
	struct fx *fx = *state;
	uint8_t b[128];
	size_t len = good_ping(fx, b);

	snap(fx);
	feed(fx, b, 14 + 19);
	expect_drop(fx, "drop_ip_short");
	snap(fx);
	feed(fx, b, 14);
	expect_drop(fx, "drop_ip_short");
	/* Cut inside the payload: total length exceeds what arrived. */
	snap(fx);
	feed(fx, b, len - 1);
	expect_drop(fx, "drop_ip_len");
	assert_int_equal(fx->n, 0);
}

static void test_ip_version(void **state)
{
	struct fx *fx = *state;
	uint8_t b[128];
	size_t len = good_ping(fx, b);

	b[14] = 0x65;
	ip_fix_csum(b);
	snap(fx);
	feed(fx, b, len);
	expect_drop(fx, "drop_ip_version");
	assert_int_equal(fx->n, 0);
}

static void test_ip_hdrlen(void **state)
{
	struct fx *fx = *state;
	uint8_t b[128];
	size_t len = good_ping(fx, b);

	for (uint8_t ihl = 0; ihl < 5; ihl++) {
		b[14] = (uint8_t)(0x40 | ihl);
		snap(fx);
		feed(fx, b, len);
		expect_drop(fx, "drop_ip_hdrlen");
	}
	/* IHL 15 = 60 bytes, but only 40 bytes of IP arrive. */
	b[14] = 0x4f;
	snap(fx);
	feed(fx, b, 14 + 40);
	expect_drop(fx, "drop_ip_hdrlen");
	assert_int_equal(fx->n, 0);
}

static void test_ip_total_len(void **state)
{
	struct fx *fx = *state;
	uint8_t b[128];
	size_t len = good_ping(fx, b);
	uint16_t bad[] = { 0, 19, (uint16_t)(len - 14 + 1), 0xffff };

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		good_ping(fx, b);
		xt_wr16(b + 16, bad[i]);
		ip_fix_csum(b);
		snap(fx);
		feed(fx, b, len);
		expect_drop(fx, "drop_ip_len");
	}
	assert_int_equal(fx->n, 0);
}

static void test_ip_csum(void **state)
{
	struct fx *fx = *state;
	uint8_t b[128];
	size_t len = good_ping(fx, b);

	b[14 + 10] ^= 0x01;
	snap(fx);
	feed(fx, b, len);
	expect_drop(fx, "drop_ip_csum");
	assert_int_equal(fx->n, 0);

	/* A backend that verified checksums itself: no check here. */
	fx->cfg.rx_csum_verified = 1;
	fx_start(fx);
	learn_peer(fx);
	snap(fx);
	feed(fx, b, len);
	expect_drop(fx, NULL);
	assert_int_equal(fx->n, 1);
}

static void test_ip_frag(void **state)
{
	struct fx *fx = *state;
	uint8_t b[128];
	size_t len = good_ping(fx, b);
	uint16_t frag[] = { 0x2000, 0x6000, 0x0001, 0x4001, 0x1fff };

	for (size_t i = 0; i < sizeof(frag) / sizeof(frag[0]); i++) {
		xt_wr16(b + 20, frag[i]);
		ip_fix_csum(b);
		snap(fx);
		feed(fx, b, len);
		expect_drop(fx, "drop_ip_frag");
	}
	assert_int_equal(fx->n, 0);
	/* Without DF is fine. */
	xt_wr16(b + 20, 0);
	ip_fix_csum(b);
	snap(fx);
	feed(fx, b, len);
	expect_drop(fx, NULL);
	assert_int_equal(fx->n, 1);
}

static void test_ip_not_for_us(void **state)
{
	struct fx *fx = *state;
	uint8_t b[128];
	size_t len = good_ping(fx, b);
	uint32_t dst[] = { IP4(10, 0, 0, 9), IP4(10, 0, 0, 255), 0xffffffffu, IP4(224, 0, 0, 1) };

	for (size_t i = 0; i < sizeof(dst) / sizeof(dst[0]); i++) {
		xt_wr32(b + 14 + 16, dst[i]);
		ip_fix_csum(b);
		snap(fx);
		feed(fx, b, len);
		expect_drop(fx, "drop_ip_not_for_us");
	}
	assert_int_equal(fx->n, 0);
}

static void test_ip_bad_source(void **state)
{
	struct fx *fx = *state;
	uint8_t b[128];
	size_t len = good_ping(fx, b);
	uint32_t src[] = { 0, IP4(0, 1, 2, 3), 0xffffffffu, IP4(127, 0, 0, 1), IP4(127, 9, 9, 9),
			   IP4(224, 0, 0, 1), IP4(239, 255, 255, 250), MY_IP, IP4(10, 0, 0, 255) };

	for (size_t i = 0; i < sizeof(src) / sizeof(src[0]); i++) {
		xt_wr32(b + 14 + 12, src[i]);
		ip_fix_csum(b);
		snap(fx);
		feed(fx, b, len);
		expect_drop(fx, "drop_ip_src");
	}
	assert_int_equal(fx->n, 0);
}

static void test_ip_proto(void **state)
{
	struct fx *fx = *state;
	uint8_t b[128];
	size_t len = good_ping(fx, b);
	uint8_t proto[] = { 17, 0, 2, 41, 255 };

	for (size_t i = 0; i < sizeof(proto); i++) {
		b[14 + 9] = proto[i];
		ip_fix_csum(b);
		snap(fx);
		feed(fx, b, len);
		expect_drop(fx, "drop_ip_proto");
	}
	assert_int_equal(fx->n, 0);
}

/* Ethernet pads short frames to 60 bytes; the IP total length says where
 * the datagram ends (RFC 894). */
static void test_ip_padding_trimmed(void **state)
{
	struct fx *fx = *state;
	uint8_t b[256];
	size_t len = good_ping(fx, b);

	memset(b + len, 0x5a, sizeof(b) - len);
	snap(fx);
	feed(fx, b, len + 30);
	expect_drop(fx, NULL);
	assert_int_equal(fx->n, 1);
	expect_echo_reply(fx, 0, PEER_MAC, PEER_IP, 1);

	/* A tiny echo (no data) padded to the 60-byte minimum. */
	{
		uint8_t m[8];
		struct ipspec s = { MY_MAC, PEER_MAC, PEER_IP, MY_IP, 1, 1, 0x4000, 64 };
		size_t n = icmp_msg(m, 8, 0, 0x00770009, NULL, 0);
		uint8_t exp[64];

		memset(b, 0xee, 60);
		ip_frame(b, &s, m, n);
		snap(fx);
		feed(fx, b, 60);
		assert_int_equal(fx->n, 1);
		icmp_msg(m, 0, 0, 0x00770009, NULL, 0);
		s = (struct ipspec){ PEER_MAC, MY_MAC, MY_IP, PEER_IP, 1, xt_rd16(fx->f[0] + 18), 0x4000, 64 };
		assert_int_equal(fx->len[0], ip_frame(exp, &s, m, 8));
		assert_memory_equal(fx->f[0], exp, 42);
	}
}

/* IP options are skipped, not interpreted. */
static void test_ip_options_skipped(void **state)
{
	struct fx *fx = *state;
	uint8_t b[128], opt[128];
	size_t len = good_ping(fx, b);

	/* Insert 4 option bytes (NOP NOP NOP EOL) after the 20-byte header. */
	memcpy(opt, b, 34);
	memcpy(opt + 34, "\x01\x01\x01\x00", 4);
	memcpy(opt + 38, b + 34, len - 34);
	opt[14] = 0x46;
	xt_wr16(opt + 16, (uint16_t)(len - 14 + 4));
	ip_fix_csum(opt);
	snap(fx);
	feed(fx, opt, len + 4);
	expect_drop(fx, NULL);
	assert_int_equal(fx->n, 1);
	expect_echo_reply(fx, 0, PEER_MAC, PEER_IP, 1);
}

static void test_ip_no_route(void **state)
{
	struct fx *fx = *state;

	fx->cfg.gateway = 0;
	fx_start(fx);
	snap(fx);
	ping(fx, GW_MAC, FAR_IP, 1);
	expect_drop(fx, "drop_no_route");
	assert_int_equal(delta(fx, "icmp_tx_echo_reply"), 0);
	assert_int_equal(fx->n, 0);
	/* On-link still works without a gateway. */
	learn_peer(fx);
	ping(fx, PEER_MAC, PEER_IP, 2);
	assert_int_equal(fx->n, 1);
}

/* ================= ICMP ================= */

static void test_icmp_echo_exact(void **state)
{
	struct fx *fx = *state;
	static const uint8_t req[] = {
		/* Ethernet */
		0x02, 0x00, 0x00, 0x00, 0x00, 0x01, 0x02, 0x00, 0x00, 0x00, 0x00, 0x02, 0x08, 0x00,
		/* IPv4: len 36, id 0xbeef, no DF, TTL 61, ICMP, 10.0.0.2 -> 10.0.0.1 */
		0x45, 0x00, 0x00, 0x24, 0xbe, 0xef, 0x00, 0x00, 0x3d, 0x01, 0x00, 0x00,
		0x0a, 0x00, 0x00, 0x02, 0x0a, 0x00, 0x00, 0x01,
		/* ICMP echo id 0x1234 seq 0x0005, 8 bytes of data */
		0x08, 0x00, 0x00, 0x00, 0x12, 0x34, 0x00, 0x05,
		0xde, 0xad, 0xbe, 0xef, 0x01, 0x02, 0x03, 0x04,
	};
	uint8_t f[sizeof(req)];
	uint8_t exp[sizeof(req)] = {
		0x02, 0x00, 0x00, 0x00, 0x00, 0x02, 0x02, 0x00, 0x00, 0x00, 0x00, 0x01, 0x08, 0x00,
		0x45, 0x00, 0x00, 0x24, 0x00, 0x00, 0x40, 0x00, 0x40, 0x01, 0x00, 0x00,
		0x0a, 0x00, 0x00, 0x01, 0x0a, 0x00, 0x00, 0x02,
		0x00, 0x00, 0x00, 0x00, 0x12, 0x34, 0x00, 0x05,
		0xde, 0xad, 0xbe, 0xef, 0x01, 0x02, 0x03, 0x04,
	};

	memcpy(f, req, sizeof(f));
	xt_wr16(f + 24, ref_csum(f + 14, 20));
	xt_wr16(f + 36, ref_csum(f + 34, 16));
	learn_peer(fx);
	snap(fx);
	feed(fx, f, sizeof(f));
	expect_drop(fx, NULL);
	assert_int_equal(delta(fx, "icmp_rx"), 1);
	assert_int_equal(delta(fx, "icmp_tx_echo_reply"), 1);
	assert_int_equal(fx->n, 1);
	assert_int_equal(fx->len[0], sizeof(exp));
	/* Echo reply checksum: type 8 -> 0 changes the sum by 0x0800 (RFC 1624). */
	xt_wr16(exp + 36, ref_csum(exp + 34, 16));
	assert_int_equal(xt_rd16(exp + 36), (uint16_t)(xt_rd16(f + 36) + 0x0800));
	/* The IP ID is ours to choose; everything else is fixed. */
	memcpy(exp + 18, fx->f[0] + 18, 2);
	xt_wr16(exp + 24, ref_csum(exp + 14, 20));
	assert_memory_equal(fx->f[0], exp, sizeof(exp));
}

static void test_icmp_drops(void **state)
{
	struct fx *fx = *state;
	uint8_t b[128], m[64];
	struct ipspec s = { MY_MAC, PEER_MAC, PEER_IP, MY_IP, 1, 1, 0x4000, 64 };
	size_t len;

	learn_peer(fx);
	for (size_t n = 0; n < 8; n++) {
		memset(m, 8, sizeof(m));
		snap(fx);
		feed(fx, b, ip_frame(b, &s, m, n));
		expect_drop(fx, "drop_icmp_short");
	}
	len = ping_frame(b, PEER_MAC, PEER_IP, 1, 1);
	b[14 + 20 + 8] ^= 0x40;
	snap(fx);
	feed(fx, b, len);
	expect_drop(fx, "drop_icmp_csum");
	assert_int_equal(delta(fx, "icmp_rx"), 0);
	/* Types we do not handle: echo reply, redirect, timestamp, 200. */
	for (uint8_t t = 0; t < 4; t++) {
		static const uint8_t types[4] = { 0, 5, 13, 200 };

		snap(fx);
		feed(fx, b, ip_frame(b, &s, m, icmp_msg(m, types[t], 0, 0, PING_DATA, 8)));
		expect_drop(fx, "drop_icmp_type");
		assert_int_equal(delta(fx, "icmp_rx"), 1);
	}
	assert_int_equal(fx->n, 0);
}

/* An ICMP error quoting "what": an IPv4 header (ihl words) from us to
 * PEER_IP plus l4n bytes of TCP header. */
static size_t icmp_err_frame(uint8_t *b, uint8_t type, uint8_t code, uint32_t word, uint8_t vihl,
			     uint32_t inner_src, uint8_t inner_proto, size_t quoted)
{
	uint8_t q[128], m[160];
	struct ipspec s = { MY_MAC, GW_MAC, GW_IP, MY_IP, 1, 1, 0, 255 };
	size_t hl = (size_t)(vihl & 0xf) * 4;

	memset(q, 0, sizeof(q));
	q[0] = vihl;
	xt_wr16(q + 2, 40);
	xt_wr16(q + 6, 0x4000);
	q[8] = 64;
	q[9] = inner_proto;
	xt_wr32(q + 12, inner_src);
	xt_wr32(q + 16, PEER_IP);
	if (hl >= 20 && hl + 8 <= sizeof(q)) {
		xt_wr16(q + hl, 40000);    /* sport */
		xt_wr16(q + hl + 2, 80);   /* dport */
		xt_wr32(q + hl + 4, 1000); /* seq */
	}
	assert_true(quoted <= sizeof(q));
	return ip_frame(b, &s, m, icmp_msg(m, type, code, word, q, quoted));
}

static void test_icmp_error_truncated(void **state)
{
	struct fx *fx = *state;
	uint8_t b[256];
	static const uint8_t types[4][2] = { { 3, 1 }, { 4, 0 }, { 11, 0 }, { 12, 0 } };

	for (int t = 0; t < 4; t++) {
		/* Quote shorter than an IP header, or without 8 bytes of L4. */
		for (size_t q = 0; q < 28; q++) {
			snap(fx);
			feed(fx, b, icmp_err_frame(b, types[t][0], types[t][1], 0, 0x45, MY_IP, 6, q));
			expect_drop(fx, "drop_icmp_short");
		}
		/* IHL 6 needs 32 bytes. */
		snap(fx);
		feed(fx, b, icmp_err_frame(b, types[t][0], types[t][1], 0, 0x46, MY_IP, 6, 31));
		expect_drop(fx, "drop_icmp_short");
		/* Bad inner version or IHL, with plenty of bytes. */
		snap(fx);
		feed(fx, b, icmp_err_frame(b, types[t][0], types[t][1], 0, 0x65, MY_IP, 6, 40));
		expect_drop(fx, "drop_icmp_short");
		snap(fx);
		feed(fx, b, icmp_err_frame(b, types[t][0], types[t][1], 0, 0x44, MY_IP, 6, 40));
		expect_drop(fx, "drop_icmp_short");
		/* IHL 15 with only 40 bytes quoted. */
		snap(fx);
		feed(fx, b, icmp_err_frame(b, types[t][0], types[t][1], 0, 0x4f, MY_IP, 6, 40));
		expect_drop(fx, "drop_icmp_short");
	}
	assert_int_equal(fx->n, 0);
}

static void test_icmp_error_dispatch(void **state)
{
	struct fx *fx = *state;
	uint8_t b[256];

	/* Frag needed quoting a TCP segment of ours: counted, passed to TCP. */
	snap(fx);
	feed(fx, b, icmp_err_frame(b, 3, 4, 1400, 0x45, MY_IP, 6, 28));
	expect_drop(fx, NULL);
	assert_int_equal(delta(fx, "icmp_rx"), 1);
	assert_int_equal(delta(fx, "icmp_unreach_rx"), 1);
	assert_int_equal(delta(fx, "icmp_frag_needed_rx"), 1);
	/* Port unreachable, with a long quote. */
	snap(fx);
	feed(fx, b, icmp_err_frame(b, 3, 3, 0, 0x45, MY_IP, 6, 60));
	expect_drop(fx, NULL);
	assert_int_equal(delta(fx, "icmp_unreach_rx"), 1);
	assert_int_equal(delta(fx, "icmp_frag_needed_rx"), 0);
	snap(fx);
	feed(fx, b, icmp_err_frame(b, 11, 0, 0, 0x45, MY_IP, 6, 28));
	expect_drop(fx, NULL);
	assert_int_equal(delta(fx, "icmp_unreach_rx"), 0);
	/* Quoting a datagram someone else sent. */
	snap(fx);
	feed(fx, b, icmp_err_frame(b, 3, 1, 0, 0x45, PEER_IP2, 6, 28));
	expect_drop(fx, "drop_ip_not_for_us");
	/* Quoting UDP, which we never send. */
	snap(fx);
	feed(fx, b, icmp_err_frame(b, 3, 3, 0, 0x45, MY_IP, 17, 28));
	expect_drop(fx, "drop_ip_proto");
	assert_int_equal(fx->n, 0);
}

static void test_icmp_echo_too_big(void **state)
{
	struct fx *fx = *state;
	uint8_t b[1600], m[1500], data[1500];
	struct ipspec s = { MY_MAC, PEER_MAC, PEER_IP, MY_IP, 1, 1, 0x4000, 64 };

	fx->cfg.mtu = 576;
	fx_start(fx);
	learn_peer(fx);
	memset(data, 0x33, sizeof(data));
	snap(fx);
	feed(fx, b, ip_frame(b, &s, m, icmp_msg(m, 8, 0, 1, data, 548)));
	expect_drop(fx, NULL);
	assert_int_equal(fx->n, 1);
	assert_int_equal(fx->len[0], 14 + 576);
	snap(fx);
	feed(fx, b, ip_frame(b, &s, m, icmp_msg(m, 8, 0, 1, data, 549)));
	expect_drop(fx, "drop_ip_len");
	assert_int_equal(fx->n, 0);
}

/* Random damage to ARP, echo and ICMP-error frames, with the IP and ICMP
 * checksums repaired so the damage reaches the deeper parsers.  Every frame
 * is fed from an exactly-sized buffer: ASan flags any over-read. */
static void test_random_frames(void **state)
{
	struct fx *fx = *state;
	uint8_t tmpl[3][256], b[256];
	size_t tlen[3];

	learn_peer(fx);
	tlen[0] = arp_frame(tmpl[0], BCAST, 1, PEER_MAC, PEER_IP, ZERO_MAC, MY_IP);
	tlen[1] = ping_frame(tmpl[1], PEER_MAC, PEER_IP, 1, 1);
	tlen[2] = icmp_err_frame(tmpl[2], 3, 4, 1400, 0x45, MY_IP, 6, 28);
	snap(fx);
	for (int k = 0; k < 30000; k++) {
		int t = (int)(rnd() % 3);
		size_t len = tlen[t];

		memcpy(b, tmpl[t], len);
		for (int m = (int)(rnd() % 4) + 1; m > 0; m--) {
			size_t off = 14 + rnd() % (len - 14);

			if (t > 0 && off == 14 + 9)
				continue; /* keep ICMP: TCP's parser is not under test here */
			b[off] = (uint8_t)rnd();
		}
		if (rnd() % 4 == 0)
			len = 14 + rnd() % (len - 13);
		if (t > 0 && rnd() % 2) {
			size_t hl = (size_t)(b[14] & 0xf) * 4;

			if (hl >= 20 && 14 + hl <= len) {
				ip_fix_csum(b);
				if (14 + hl + 4 <= len) {
					xt_wr16(b + 14 + hl + 2, 0);
					xt_wr16(b + 14 + hl + 2, ref_csum(b + 14 + hl, len - 14 - hl));
				}
			}
		}
		feed(fx, b, len);
		fx->now += XT_MS(1);
		if (k % 1000 == 0)
			poll_at(fx, fx->now);
		fx->n = 0;
	}
	/* The repaired frames got past IP into every handler. */
	assert_true(delta(fx, "arp_rx") > 100);
	assert_true(delta(fx, "icmp_tx_echo_reply") > 100);
	assert_true(delta(fx, "icmp_frag_needed_rx") > 100);
	assert_true(delta(fx, "drop_icmp_short") > 10);
}

/* ================= configurations ================= */

static void test_no_link_header(void **state)
{
	struct fx *fx = *state;
	uint8_t b[128], m[64], exp[128];
	size_t len, n;
	struct ipspec s = { ZERO_MAC, ZERO_MAC, MY_IP, FAR_IP, 1, 0, 0x4000, 64 };

	fx->cfg.no_link_header = 1;
	fx->cfg.gateway = 0; /* point-to-point: no route needed */
	fx_start(fx);
	assert_int_equal(xt_arp_add(fx->st, PEER_IP, PEER_MAC, fx->now), -EOPNOTSUPP);
	assert_int_equal(xt_stack_next_deadline(fx->st), XT_TIME_NEVER);
	len = ping_frame(b, PEER_MAC, FAR_IP, 0x77, 4);
	snap(fx);
	feed(fx, b + 14, len - 14);
	expect_drop(fx, NULL);
	assert_int_equal(fx->n, 1);
	/* A bare IPv4 reply, no Ethernet header and no ARP. */
	n = icmp_msg(m, 0, 0, (uint32_t)0x77 << 16 | 4, PING_DATA, sizeof(PING_DATA));
	s.id = xt_rd16(fx->f[0] + 4);
	len = ip_frame(exp, &s, m, n) - 14;
	assert_int_equal(fx->len[0], len);
	assert_memory_equal(fx->f[0], exp + 14, len);
	assert_int_equal(delta(fx, "arp_tx_request"), 0);
}

static void test_tx_csum_offload(void **state)
{
	struct fx *fx = *state;
	uint8_t b[128];

	fx->cfg.tx_csum_offload = 1;
	fx_start(fx);
	learn_peer(fx);
	snap(fx);
	feed(fx, b, ping_frame(b, PEER_MAC, PEER_IP, 0x77, 1));
	assert_int_equal(fx->n, 1);
	/* The IP checksum is left to the NIC; ICMP's is still ours. */
	assert_int_equal(xt_rd16(fx->f[0] + 24), 0);
	assert_int_equal(ref_csum(fx->f[0] + 34, fx->len[0] - 34), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_csum_random_alignments),
		cmocka_unit_test(test_csum_extremes),
		cmocka_unit_test(test_csum_chained_and_verify),
		cmocka_unit_test(test_csum_pseudo),
		cmocka_unit_test(test_siphash_vectors),
#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)
		T(test_eth_drops),
		T(test_arp_request_answered),
		T(test_arp_learned),
		T(test_arp_not_for_us),
		T(test_arp_merge_updates_existing),
		T(test_arp_malformed),
		T(test_arp_probe_defended),
		T(test_arp_resolve_and_flush),
		T(test_arp_via_gateway),
		T(test_arp_retry_and_give_up),
		T(test_arp_queue_bound),
		T(test_arp_queue_zero),
		T(test_arp_static_entry),
		T(test_arp_static_flushes_queue),
		T(test_arp_aging_unanswered),
		T(test_arp_aging_confirmed),
		T(test_arp_cache_full),
		T(test_arp_cache_full_unresolved),
		T(test_ip_short),
		T(test_ip_version),
		T(test_ip_hdrlen),
		T(test_ip_total_len),
		T(test_ip_csum),
		T(test_ip_frag),
		T(test_ip_not_for_us),
		T(test_ip_bad_source),
		T(test_ip_proto),
		T(test_ip_padding_trimmed),
		T(test_ip_options_skipped),
		T(test_ip_no_route),
		T(test_icmp_echo_exact),
		T(test_icmp_drops),
		T(test_icmp_error_truncated),
		T(test_icmp_error_dispatch),
		T(test_icmp_echo_too_big),
		T(test_random_frames),
		T(test_no_link_header),
		T(test_tx_csum_offload),
#undef T
	};

	return cmocka_run_group_tests_name("wire", tests, NULL, NULL);
}
