/* libFuzzer target: the TCP state machine with live connections.
 *
 * Each input gets a fresh engine (so runs are independent and leaks show up
 * under LeakSanitizer) set up, by driving handshakes with hand-built
 * segments, with:
 *   C0  passive, ESTABLISHED: 10.0.0.2:40000 -> us:80, accepted
 *   C1  active,  ESTABLISHED: us:eph -> 10.0.0.2:5000
 *   C2  active,  SYN_SENT:    us:eph -> 10.0.0.3:6000
 *   C3..C6  no connection yet: 10.0.0.2:40001..40004 -> us:80 (the listener)
 * and a listener on port 80 (backlog 8).
 *
 * The input is then a program.  Byte 0 picks the setup variant (bits 0-2:
 * engine without timestamps/SACK/window scaling; bits 3-5: the peer offers
 * none of them; bits 6-7: MTU 1500, 1500 with SYN cookies always, 1280,
 * 576; the parity of bits 0-3 gathers sent payload from the send ring, that
 * of bits 2-5 keeps received frames in place (each frame then has a buffer of
 * its own, poisoned when the engine gives it back)); then each operation
 * starts with one
 * byte (op % 8):
 *   0-3  inject a TCP segment towards a connection: flags, seq, ack, window,
 *        options and payload length come from the input; seq/ack are mostly
 *        relative to the mirror of the connection (what the peer has sent,
 *        what the engine sent and expects); checksums are right 15 times in 16
 *   4    advance virtual time (µs .. days), optionally stepping through each
 *        engine deadline in turn as a real driver would
 *   5,6  an application call: send/recv/peek/shutdown/close/abort/setopt/
 *        getopt/info/accept/connect/listen, ...
 *   7    an ICMP error quoting one of the connection's segments
 * Missing bytes read as 0, so every input is a valid program.
 *
 * The mirror is kept by parsing every frame the engine emits (tx callback).
 * Oracles besides the sanitizers:
 *   - every emitted frame is well formed (lengths, checksums, flags, options);
 *   - payload the peer sends at sequence number s is always ppat(s), so bytes
 *     the application reads must equal ppat(irs + 1 + offset) whenever the
 *     connection's initial sequence number is known for sure;
 *   - the application sends epat(offset) at stream offset `offset`, so every
 *     data byte the engine emits must be one the application sent, at the
 *     right offset, and a FIN must come exactly after the last byte sent;
 *   - the engine never acknowledges sequence space the peer has not sent
 *     (unless the input sent raw sequence numbers to that 4-tuple);
 *   - recv returns no data after it returned end of stream (without
 *     SHUT_RD), send takes nothing after shutdown(SHUT_WR), and one recv
 *     returns what FIONREAD said was readable;
 *   - listen() fails on a live connection.
 *
 * Replay one input with every segment printed:
 *   FUZZ_TRACE=1 build/fuzz/fuzz_tcp_stateful <file>
 * tests/fuzz/mkcorpus.py writes the seed corpus in this byte code.
 */
#include <errno.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../stack/xtcp.h"
#include "../../stack/wire.h"

#define US_IP 0x0a000001u
#define P2_IP 0x0a000002u
#define P3_IP 0x0a000003u
#define ROUTER_IP 0x0a0000feu
#define LPORT 80
#define NCONN 7
#define FRAME_MAX 4096
#define HOLD_WINDOW 8 /* frames the engine may keep (cfg.rx_hold_window) */

static const uint8_t US_MAC[6] = { 0x02, 0x00, 0x00, 0x00, 0x00, 0x01 };
static const uint8_t PEER_MAC[6] = { 0x02, 0x00, 0x00, 0x00, 0x00, 0x02 };

#define SEQ_LT(a, b) ((int32_t)((uint32_t)(a) - (uint32_t)(b)) < 0)
#define SEQ_LEQ(a, b) ((int32_t)((uint32_t)(a) - (uint32_t)(b)) <= 0)
#define SEQ_GT(a, b) SEQ_LT(b, a)

/* ---- input reader: missing bytes are 0 ---- */

struct rd {
	const uint8_t *p;
	size_t n;
};

static uint8_t g8(struct rd *r)
{
	if (!r->n)
		return 0;
	r->n--;
	return *r->p++;
}
static uint16_t g16(struct rd *r) { uint16_t h = g8(r); return (uint16_t)(h << 8 | g8(r)); }
static uint32_t g32(struct rd *r) { uint32_t h = g16(r); return h << 16 | g16(r); }

/* ---- payload patterns ---- */

static inline uint32_t mix32(uint32_t x)
{
	x ^= x >> 16;
	x *= 0x7feb352du;
	x ^= x >> 15;
	x *= 0x846ca68bu;
	x ^= x >> 16;
	return x;
}
/* The peer's byte at sequence number s. */
static inline uint8_t ppat(uint32_t s) { return (uint8_t)mix32(s ^ 0x5eedu); }
/* The application's byte at stream offset o. */
static inline uint8_t epat(uint64_t o) { return (uint8_t)mix32((uint32_t)o * 2654435761u + 17u); }

/* ---- the world ---- */

struct conn {
	uint32_t pip;
	uint16_t pport, lport;
	bool active;        /* we connect (C1, C2) */
	bool lport_known;
	int sock;           /* engine handle or -1 */

	/* The peer's send side. */
	uint32_t p_iss, p_nxt, last_ack;
	uint32_t p_max;  /* highest end of anything the peer sent (for the ACK oracle) */
	bool wild;       /* a raw seq or a wrong data offset went out: p_max is unsure */
	uint32_t syn_seq;
	bool syn_any, syn_consistent; /* SYNs sent since the last accept */
	bool p_syn_ts, p_syn_sack, p_syn_ws;
	uint8_t p_ws;

	/* The engine's send side, as seen on the wire. */
	bool e_iss_known;
	uint32_t e_iss, e_max, e_ack, e_tsval;
	bool e_ack_valid, e_syn_ts, e_syn_sack, e_syn_ws;
	uint8_t e_ws;
	uint16_t e_win;

	/* Oracles. */
	bool irs_known;
	uint32_t irs;
	uint64_t rx_stream, tx_stream;
	uint64_t tx_offered; /* during xt_tcp_send: bytes offered (may go out before it returns) */
	bool eof, shut_rd, shut_wr; /* of the current handle */
	/* A SYN-cookie ACK made the connection: the engine took ISS = ack - 1
	 * and IRS = seq - 1 from that ACK (as Linux cookie_v4_check does). */
	bool cookie_pending;
	uint32_t cookie_irs;
};

struct fz {
	struct xt_stack *st;
	xt_time_t now;
	uint16_t mtu;
	int lsock;
	struct conn c[NCONN];
	uint8_t frame[FRAME_MAX];
	uint8_t buf[70000];
	uint8_t txcopy[70000]; /* a gathered frame, whole */
	uint32_t ts_base;
	/* received frames kept by the engine (rx_hold), by ref */
	bool hold;
	uint64_t next_ref;
	uint8_t *cur;          /* the buffer of the frame being input */
	uint64_t kept_ref[HOLD_WINDOW];
	uint8_t *kept_buf[HOLD_WINDOW];
};

static struct fz Z;

static void rx_hold_cb(void *ctx, uint64_t ref)
{
	(void)ctx;
	for (int i = 0; i < HOLD_WINDOW; i++)
		if (!Z.kept_buf[i]) {
			Z.kept_ref[i] = ref;
			Z.kept_buf[i] = Z.cur;
			Z.cur = NULL;
			return;
		}
	abort(); /* more kept than the window allows */
}

static void rx_release_cb(void *ctx, uint64_t ref)
{
	(void)ctx;
	for (int i = 0; i < HOLD_WINDOW; i++)
		if (Z.kept_buf[i] && Z.kept_ref[i] == ref) {
			memset(Z.kept_buf[i], 0xdb, FRAME_MAX); /* a late read sees garbage */
			free(Z.kept_buf[i]);
			Z.kept_buf[i] = NULL;
			return;
		}
	abort(); /* released what was not kept */
}

/* Every frame towards the engine: with hold, in a buffer of its own. */
static void feed(const uint8_t *f, uint32_t len)
{
	if (!Z.hold) {
		xt_stack_input(Z.st, f, len, Z.now);
		return;
	}
	Z.cur = malloc(FRAME_MAX);
	if (!Z.cur)
		abort();
	memcpy(Z.cur, f, len);
	uint64_t ref = ++Z.next_ref;
	struct xt_frame fr = { .data = Z.cur, .len = len, .flags = 0, .ref = ref, .pos = ref };
	xt_stack_input_frame(Z.st, &fr, Z.now);
	if (Z.cur) { /* not kept */
		memset(Z.cur, 0xdb, len);
		free(Z.cur);
		Z.cur = NULL;
	}
}
static int trace = -1; /* FUZZ_TRACE=1: print every TCP segment in and out */

static void trace_seg(const char *dir, const uint8_t *f, uint32_t len)
{
	if (trace < 0)
		trace = getenv("FUZZ_TRACE") && *getenv("FUZZ_TRACE") == '1';
	if (!trace)
		return;
	if (len < XT_ETH_HLEN + XT_IP_HLEN + XT_TCP_HLEN || xt_rd16(f + XT_ETH_TYPE_be16) != XT_ETHERTYPE_IPV4 ||
	    f[XT_ETH_HLEN + XT_IP_PROTO] != XT_IPPROTO_TCP) {
		fprintf(stderr, "%10.6f %s %u bytes (not TCP)\n", (double)Z.now / 1e9, dir, len);
		return;
	}
	const uint8_t *ip = f + XT_ETH_HLEN, *t = ip + (ip[0] & 15) * 4;
	int plen = (int)xt_rd16(ip + XT_IP_LEN_be16) - (ip[0] & 15) * 4 - (t[XT_TCP_OFF] >> 4) * 4;
	uint8_t fl = t[XT_TCP_FLAGS];
	fprintf(stderr, "%10.6f %s %u>%u %s%s%s%s%s seq %08x ack %08x win %u len %d\n", (double)Z.now / 1e9, dir,
		xt_rd16(t), xt_rd16(t + 2), fl & XT_TH_SYN ? "S" : "", fl & XT_TH_FIN ? "F" : "",
		fl & XT_TH_RST ? "R" : "", fl & XT_TH_PSH ? "P" : "", fl & XT_TH_ACK ? "." : "",
		xt_rd32(t + 4), xt_rd32(t + 8), xt_rd16(t + 14), plen);
}

static void print_counters(void);

static void die(const char *fmt, const char *what, const uint8_t *f, uint32_t len)
{
	if (trace > 0)
		print_counters();
	fprintf(stderr, "fuzz_tcp_stateful: ");
	fprintf(stderr, fmt, what);
	fprintf(stderr, "\n");
	for (uint32_t i = 0; f && i < len && i < 160; i++)
		fprintf(stderr, "%02x%s", f[i], (i % 16 == 15) ? "\n" : " ");
	fprintf(stderr, "\n");
	abort();
}

static uint32_t csum_add(uint32_t sum, const uint8_t *p, size_t n)
{
	while (n > 1) {
		sum += (uint32_t)(p[0] << 8 | p[1]);
		p += 2;
		n -= 2;
	}
	if (n)
		sum += (uint32_t)p[0] << 8;
	return sum;
}

static uint16_t csum_fold(uint32_t sum)
{
	while (sum >> 16)
		sum = (sum & 0xffff) + (sum >> 16);
	return (uint16_t)~sum;
}

static uint32_t csum_pseudo(uint32_t src, uint32_t dst, uint8_t proto, uint32_t len)
{
	return (src >> 16) + (src & 0xffff) + (dst >> 16) + (dst & 0xffff) + proto + len;
}

static uint32_t peer_ts(void) { return Z.ts_base + (uint32_t)(Z.now / 1000000u); }

/* ---- engine output: oracle and mirror ---- */

struct opts {
	bool mss, ws, sackp, ts;
	uint8_t wsv;
	uint32_t tsval;
};

static void parse_opts(const uint8_t *o, uint32_t n, struct opts *po, const uint8_t *f, uint32_t flen)
{
	memset(po, 0, sizeof(*po));
	for (uint32_t i = 0; i < n;) {
		uint8_t k = o[i];
		if (k == XT_TCPOPT_EOL)
			break;
		if (k == XT_TCPOPT_NOP) {
			i++;
			continue;
		}
		if (i + 1 >= n || o[i + 1] < 2 || i + o[i + 1] > n)
			die("%s", "engine sent a malformed TCP option", f, flen);
		uint8_t l = o[i + 1];
		if ((k == XT_TCPOPT_MSS && l != 4) || (k == XT_TCPOPT_WSCALE && l != 3) ||
		    (k == XT_TCPOPT_SACK_PERM && l != 2) || (k == XT_TCPOPT_TS && l != 10) ||
		    (k == XT_TCPOPT_SACK && (l < 10 || (l - 2) % 8)))
			die("%s", "engine sent a TCP option with a wrong length", f, flen);
		if (k == XT_TCPOPT_MSS)
			po->mss = true;
		if (k == XT_TCPOPT_WSCALE) {
			po->ws = true;
			po->wsv = o[i + 2];
			if (po->wsv > 14)
				die("%s", "engine sent window scale > 14", f, flen);
		}
		if (k == XT_TCPOPT_SACK_PERM)
			po->sackp = true;
		if (k == XT_TCPOPT_TS) {
			po->ts = true;
			po->tsval = xt_rd32(o + i + 2);
		}
		i += l;
	}
}

static struct conn *conn_for(uint32_t pip, uint16_t pport, uint16_t lport, uint8_t flags)
{
	for (int i = 0; i < NCONN; i++) {
		struct conn *c = &Z.c[i];
		if (c->pip != pip || c->pport != pport)
			continue;
		if (c->lport_known && c->lport == lport)
			return c;
		/* An active open shows its port in its first SYN. */
		if (c->active && !c->lport_known && (flags & (XT_TH_SYN | XT_TH_ACK)) == XT_TH_SYN) {
			c->lport = lport;
			c->lport_known = true;
			return c;
		}
	}
	return NULL;
}

static void engine_tcp(const uint8_t *f, uint32_t flen, uint32_t dst, const uint8_t *t, uint32_t l4len)
{
	uint32_t doff = (uint32_t)(t[XT_TCP_OFF] >> 4) * 4;
	uint8_t fl = t[XT_TCP_FLAGS];
	uint32_t seq = xt_rd32(t + XT_TCP_SEQ_be32), ack = xt_rd32(t + XT_TCP_ACK_be32);
	uint32_t plen = l4len - doff;
	struct opts o;

	if ((fl & XT_TH_SYN) && (fl & (XT_TH_FIN | XT_TH_RST)))
		die("%s", "engine sent SYN with FIN or RST", f, flen);
	if ((fl & XT_TH_RST) && ((fl & ~(XT_TH_RST | XT_TH_ACK)) || plen))
		die("%s", "engine sent RST with other flags or data", f, flen);
	if (!(fl & (XT_TH_ACK | XT_TH_RST | XT_TH_SYN)))
		die("%s", "engine sent a segment without ACK", f, flen);
	if ((fl & XT_TH_SYN) && plen)
		die("%s", "engine sent data on a SYN", f, flen);
	parse_opts(t + XT_TCP_HLEN, doff - XT_TCP_HLEN, &o, f, flen);

	struct conn *c = conn_for(dst, xt_rd16(t + XT_TCP_DPORT_be16), xt_rd16(t + XT_TCP_SPORT_be16), fl);
	if (!c || (fl & XT_TH_RST))
		return;
	if (fl & XT_TH_SYN) {
		if (!c->e_iss_known || c->e_iss != seq) {
			/* A new incarnation on this 4-tuple. */
			c->e_iss = seq;
			c->e_max = seq + 1;
			c->e_iss_known = true;
			c->tx_stream = 0;
			c->cookie_pending = false;
		}
		c->e_syn_ts = o.ts;
		c->e_syn_sack = o.sackp;
		c->e_syn_ws = o.ws;
		c->e_ws = o.wsv;
	}
	uint32_t end = seq + plen + !!(fl & XT_TH_SYN) + !!(fl & XT_TH_FIN);
	if (!c->e_iss_known)
		return;
	if (SEQ_GT(end, c->e_max))
		c->e_max = end;
	if (fl & XT_TH_ACK) {
		c->e_ack = ack;
		c->e_ack_valid = true;
		/* The engine acknowledges only what the peer sent (RFC 9293 3.4).
		 * p_max spans every incarnation on this 4-tuple, so only the
		 * upper bound holds across a reset and a new SYN. */
		if (!c->wild && SEQ_GT(ack, c->p_max))
			die("%s", "engine acknowledged sequence space the peer never sent", f, flen);
	}
	c->e_win = xt_rd16(t + XT_TCP_WIN_be16);
	if (o.ts)
		c->e_tsval = o.tsval;

	/* Data oracle: the bytes are the application's, at their offsets. */
	uint32_t data_seq = seq + !!(fl & XT_TH_SYN);
	uint32_t off = data_seq - c->e_iss - 1;
	if (plen) {
		if ((uint64_t)off + plen > c->tx_stream + c->tx_offered)
			die("%s", "engine sent data the application never sent", f, flen);
		const uint8_t *p = t + doff;
		for (uint32_t i = 0; i < plen; i++)
			if (p[i] != epat((uint64_t)off + i))
				die("%s", "engine sent wrong data bytes", f, flen);
	}
	if ((fl & XT_TH_FIN) && ((uint64_t)off + plen < c->tx_stream ||
				 (uint64_t)off + plen > c->tx_stream + c->tx_offered))
		die("%s", "engine's FIN is not right after the last byte sent", f, flen);
}

static void engine_frame(const uint8_t *f, uint32_t len)
{
	if (len < XT_ETH_HLEN)
		die("%s", "short frame", f, len);
	if (memcmp(f + XT_ETH_SRC, US_MAC, 6) != 0)
		die("%s", "source MAC is not ours", f, len);
	uint16_t type = xt_rd16(f + XT_ETH_TYPE_be16);
	if (type == XT_ETHERTYPE_ARP) {
		if (len < XT_ETH_HLEN + XT_ARP_LEN)
			die("%s", "short ARP", f, len);
		return;
	}
	if (type != XT_ETHERTYPE_IPV4)
		die("%s", "unknown ethertype sent", f, len);
	const uint8_t *ip = f + XT_ETH_HLEN;
	uint32_t iplen = len - XT_ETH_HLEN;
	if (iplen < XT_IP_HLEN)
		die("%s", "short IP", f, len);
	uint32_t hl = (uint32_t)(ip[XT_IP_VHL] & 0x0f) * 4;
	uint32_t tot = xt_rd16(ip + XT_IP_LEN_be16);
	if (ip[XT_IP_VHL] >> 4 != 4 || hl < XT_IP_HLEN || tot < hl || tot > iplen || tot > Z.mtu)
		die("%s", "bad IP header or length (or above the MTU)", f, len);
	if (csum_fold(csum_add(0, ip, hl)) != 0)
		die("%s", "bad IP checksum", f, len);
	if (xt_rd32(ip + XT_IP_SRC_be32) != US_IP)
		die("%s", "IP source is not ours", f, len);
	uint32_t dst = xt_rd32(ip + XT_IP_DST_be32);
	const uint8_t *l4 = ip + hl;
	uint32_t l4len = tot - hl;
	if (ip[XT_IP_PROTO] == XT_IPPROTO_ICMP) {
		if (l4len < XT_ICMP_HLEN || csum_fold(csum_add(0, l4, l4len)) != 0)
			die("%s", "bad ICMP", f, len);
		return;
	}
	if (ip[XT_IP_PROTO] != XT_IPPROTO_TCP)
		die("%s", "unknown IP protocol sent", f, len);
	if (l4len < XT_TCP_HLEN)
		die("%s", "short TCP", f, len);
	uint32_t doff = (uint32_t)(l4[XT_TCP_OFF] >> 4) * 4;
	if (doff < XT_TCP_HLEN || doff > l4len)
		die("%s", "bad TCP data offset", f, len);
	if (csum_fold(csum_add(csum_pseudo(US_IP, dst, XT_IPPROTO_TCP, l4len), l4, l4len)) != 0)
		die("%s", "bad TCP checksum", f, len);
	engine_tcp(f, len, dst, l4, l4len);
}

static int tx_cb(void *ctx, const struct xt_frame *frames, int n)
{
	(void)ctx;
	for (int i = 0; i < n; i++) {
		const uint8_t *d = frames[i].data;
		uint32_t len = xt_frame_wire_len(&frames[i]);
		if (frames[i].flags & XT_FRAME_GATHER) {
			if (len > sizeof(Z.txcopy))
				die("%s", "gathered frame too long", d, frames[i].len);
			xt_frame_copy(&frames[i], Z.txcopy);
			d = Z.txcopy;
		}
		trace_seg("out", d, len);
		engine_frame(d, len);
	}
	return n;
}

/* ---- frames towards the engine ---- */

static uint32_t put_ip(uint8_t *f, uint32_t src, uint8_t proto, uint32_t l4len, uint16_t id)
{
	memcpy(f + XT_ETH_DST, US_MAC, 6);
	memcpy(f + XT_ETH_SRC, PEER_MAC, 6);
	xt_wr16(f + XT_ETH_TYPE_be16, XT_ETHERTYPE_IPV4);
	uint8_t *ip = f + XT_ETH_HLEN;
	memset(ip, 0, XT_IP_HLEN);
	ip[XT_IP_VHL] = 0x45;
	xt_wr16(ip + XT_IP_LEN_be16, (uint16_t)(XT_IP_HLEN + l4len));
	xt_wr16(ip + XT_IP_ID_be16, id);
	xt_wr16(ip + XT_IP_FRAG_be16, XT_IP_DF);
	ip[XT_IP_TTL] = 64;
	ip[XT_IP_PROTO] = proto;
	xt_wr32(ip + XT_IP_SRC_be32, src);
	xt_wr32(ip + XT_IP_DST_be32, US_IP);
	xt_wr16(ip + XT_IP_CSUM_be16, csum_fold(csum_add(0, ip, XT_IP_HLEN)));
	return XT_ETH_HLEN + XT_IP_HLEN;
}

struct seg {
	uint32_t seq, ack;
	uint8_t flags;
	uint16_t win;
	uint8_t opt[40];
	uint32_t optlen;   /* padded to 4 by inject() */
	int doff;          /* -1: right; else the raw 4-bit field */
	uint32_t plen;
	bool bad_csum;
	bool wild; /* seq not derived from the mirror */
};

static void inject_seg(struct conn *c, struct seg *s)
{
	uint8_t *f = Z.frame;
	while (s->optlen % 4)
		s->opt[s->optlen++] = XT_TCPOPT_EOL;
	uint32_t thl = XT_TCP_HLEN + s->optlen;
	uint32_t maxp = FRAME_MAX - XT_ETH_HLEN - XT_IP_HLEN - thl;
	if (s->plen > maxp)
		s->plen = maxp;
	uint32_t l4len = thl + s->plen;
	uint32_t off = put_ip(f, c->pip, XT_IPPROTO_TCP, l4len, (uint16_t)s->seq);
	uint8_t *t = f + off;
	xt_wr16(t + XT_TCP_SPORT_be16, c->pport);
	xt_wr16(t + XT_TCP_DPORT_be16, c->lport);
	xt_wr32(t + XT_TCP_SEQ_be32, s->seq);
	xt_wr32(t + XT_TCP_ACK_be32, s->ack);
	t[XT_TCP_OFF] = (uint8_t)((s->doff >= 0 ? (uint32_t)s->doff : thl / 4) << 4);
	t[XT_TCP_FLAGS] = s->flags;
	xt_wr16(t + XT_TCP_WIN_be16, s->win);
	xt_wr16(t + XT_TCP_CSUM_be16, 0);
	xt_wr16(t + XT_TCP_URP_be16, 0);
	memcpy(t + XT_TCP_HLEN, s->opt, s->optlen);
	uint32_t dseq = s->seq + !!(s->flags & XT_TH_SYN);
	for (uint32_t i = 0; i < s->plen; i++)
		t[thl + i] = ppat(dseq + i);
	uint16_t cs = csum_fold(csum_add(csum_pseudo(c->pip, US_IP, XT_IPPROTO_TCP, l4len), t, l4len));
	if (s->bad_csum)
		cs ^= 0x0100;
	xt_wr16(t + XT_TCP_CSUM_be16, cs);

	/* Mirror of the peer's own send state. */
	uint32_t end = dseq + s->plen + !!(s->flags & XT_TH_FIN);
	if (!s->bad_csum && !(s->flags & XT_TH_RST)) {
		if (s->flags & XT_TH_SYN) {
			c->p_nxt = end;
			if ((s->flags & XT_TH_ACK) == 0) {
				if (c->syn_any && c->syn_seq != s->seq)
					c->syn_consistent = false;
				c->syn_any = true;
				c->syn_seq = s->seq;
			}
		} else if (SEQ_LEQ(s->seq, c->p_nxt) && SEQ_GT(end, c->p_nxt)) {
			c->p_nxt = end;
		}
		if (s->flags & XT_TH_ACK)
			c->last_ack = s->ack;
		/* A raw seq says nothing about the stream and may sit anywhere
		 * in sequence space: it disables the ACK oracle instead. */
		if (s->wild)
			c->wild = true;
		else if (SEQ_GT(end, c->p_max))
			c->p_max = end;
	}

	/* A wrong data offset moves the boundary between options and payload:
	 * what the engine reads as data is no longer ppat() of its seq. */
	if (s->doff >= 0 && (uint32_t)s->doff * 4 != thl && !s->bad_csum) {
		c->irs_known = false;
		c->wild = true;
	}

	int before = c->sock >= 0 ? xt_tcp_state(Z.st, c->sock) : -1;
	uint64_t cookies = xt_stack_counters(Z.st)->tcp_syncookies_recv;
	trace_seg(s->bad_csum ? "in(bad csum)" : "in ", f, off + l4len);
	feed(f, off + l4len);
	if (xt_stack_counters(Z.st)->tcp_syncookies_recv != cookies) {
		/* Any (seq + d, ack + d) passes a cookie check: the connection's
		 * sequence spaces start where this ACK says, not at our SYN. */
		c->e_iss = s->ack - 1;
		c->e_max = s->ack;
		c->e_iss_known = true;
		c->tx_stream = 0;
		c->cookie_pending = true;
		c->cookie_irs = s->seq - 1;
	}
	xt_stack_flush(Z.st);
	if (before == XT_SYN_SENT && (s->flags & XT_TH_SYN) && !s->bad_csum) {
		int after = xt_tcp_state(Z.st, c->sock);
		if (after != XT_SYN_SENT && after != XT_CLOSE && after >= 0) {
			/* This very segment synchronized us: its seq is the IRS. */
			c->irs = s->seq;
			c->irs_known = true;
			c->rx_stream = 0;
		}
	}
}

static void add_ts(struct seg *s, struct conn *c, uint32_t tsval)
{
	uint8_t *o = s->opt + s->optlen;
	o[0] = XT_TCPOPT_NOP;
	o[1] = XT_TCPOPT_NOP;
	o[2] = XT_TCPOPT_TS;
	o[3] = 10;
	xt_wr32(o + 4, tsval);
	xt_wr32(o + 8, c->e_tsval);
	s->optlen += 12;
}

/* SYN options; which ones and their values. */
static void add_syn_opts(struct seg *s, struct conn *c, bool mss, uint16_t mssv, bool ws, uint8_t wsv,
			 bool sackp, bool ts)
{
	uint8_t *o = s->opt;
	uint32_t n = 0;
	if (mss) {
		o[n++] = XT_TCPOPT_MSS;
		o[n++] = 4;
		xt_wr16(o + n, mssv);
		n += 2;
	}
	if (sackp) {
		o[n++] = XT_TCPOPT_NOP;
		o[n++] = XT_TCPOPT_NOP;
		o[n++] = XT_TCPOPT_SACK_PERM;
		o[n++] = 2;
	}
	if (ws) {
		o[n++] = XT_TCPOPT_NOP;
		o[n++] = XT_TCPOPT_WSCALE;
		o[n++] = 3;
		o[n++] = wsv;
	}
	s->optlen = n;
	if (ts)
		add_ts(s, c, peer_ts());
	c->p_syn_ts = ts;
	c->p_syn_sack = sackp;
	c->p_syn_ws = ws;
	c->p_ws = ws ? (wsv > 14 ? 14 : wsv) : 0;
}

static bool ts_ok(const struct conn *c) { return c->p_syn_ts && c->e_syn_ts; }
static bool sack_ok(const struct conn *c) { return c->p_syn_sack && c->e_syn_sack; }

/* ---- setup ---- */

static void conn_init(struct conn *c, uint32_t pip, uint16_t pport, bool active, uint32_t p_iss)
{
	memset(c, 0, sizeof(*c));
	c->pip = pip;
	c->pport = pport;
	c->active = active;
	c->sock = -1;
	c->lport = LPORT;
	c->lport_known = !active;
	c->p_iss = c->p_nxt = c->p_max = p_iss;
	c->syn_consistent = true;
}

static void setup_fail(const char *what)
{
	fprintf(stderr, "fuzz_tcp_stateful: setup failed: %s\n", what);
	abort();
}

/* Assigns an accepted socket to its connection. */
static void adopt(int s)
{
	uint32_t ip = 0;
	uint16_t port = 0;
	if (xt_tcp_getname(Z.st, s, 1, &ip, &port) != 0) {
		xt_tcp_close(Z.st, s, Z.now);
		return;
	}
	for (int i = 0; i < NCONN; i++) {
		struct conn *c = &Z.c[i];
		if (c->active || c->pip != ip || c->pport != port)
			continue;
		if (c->sock >= 0)
			xt_tcp_close(Z.st, c->sock, Z.now);
		c->sock = s;
		c->irs_known = c->syn_any && c->syn_consistent;
		c->irs = c->syn_seq;
		if (c->cookie_pending) {
			c->irs_known = true;
			c->irs = c->cookie_irs;
			c->cookie_pending = false;
		}
		c->rx_stream = 0;
		c->tx_stream = 0;
		c->eof = c->shut_rd = c->shut_wr = false;
		c->syn_any = false;
		c->syn_consistent = true;
		return;
	}
	xt_tcp_close(Z.st, s, Z.now);
}

static void setup(uint8_t v)
{
	static const uint16_t mtus[4] = { 1500, 1500, 1280, 576 };
	struct xt_stack_cfg cfg;

	memset(&Z, 0, offsetof(struct fz, frame)); /* not the big scratch buffers */
	Z.now = XT_SEC(100);
	Z.mtu = mtus[v >> 6];
	Z.ts_base = 0x10000000u;
	xt_stack_cfg_defaults(&cfg);
	memcpy(cfg.mac, US_MAC, 6);
	cfg.ip = US_IP;
	cfg.netmask = 0xffffff00u;
	cfg.gateway = ROUTER_IP;
	cfg.mtu = Z.mtu;
	cfg.max_sockets = 64;
	cfg.somaxconn = 16;
	cfg.rcvbuf = 16384;
	cfg.sndbuf = 16384;
	cfg.mem_limit = 4u << 20;
	cfg.arp_queue_max = 8;
	cfg.tcp_timestamps = !(v & 1);
	cfg.tcp_sack = !(v & 2);
	cfg.tcp_window_scaling = !(v & 4);
	if ((v >> 6) == 1)
		cfg.tcp_syncookies = 2; /* every passive open through a cookie */
	cfg.secret[0] = 0x1111222233334444ull;
	cfg.secret[1] = 0x5555666677778888ull;
	cfg.tx = tx_cb;
	cfg.tx_gather = (uint8_t)(__builtin_popcount(v & 0x0fu) & 1);
	Z.hold = __builtin_popcount(v & 0x3cu) & 1;
	Z.cur = NULL;
	if (Z.hold) {
		cfg.rx_hold_window = HOLD_WINDOW;
		cfg.rx_hold = rx_hold_cb;
		cfg.rx_release = rx_release_cb;
	}
	Z.st = xt_stack_new(&cfg, Z.now);
	if (!Z.st)
		setup_fail("xt_stack_new");
	xt_arp_add(Z.st, P2_IP, PEER_MAC, Z.now);
	xt_arp_add(Z.st, P3_IP, PEER_MAC, Z.now);
	xt_arp_add(Z.st, ROUTER_IP, PEER_MAC, Z.now);

	conn_init(&Z.c[0], P2_IP, 40000, false, 0x1000);
	conn_init(&Z.c[1], P2_IP, 5000, true, 0x7ffffff0u); /* wraps soon */
	conn_init(&Z.c[2], P3_IP, 6000, true, 0xfffffff0u);
	for (int i = 3; i < NCONN; i++)
		conn_init(&Z.c[i], P2_IP, (uint16_t)(40000 + i - 2), false, 0x20000000u * (uint32_t)i);

	bool pts = !(v & 8), psack = !(v & 16), pws = !(v & 32);
	Z.lsock = xt_tcp_open(Z.st);
	if (Z.lsock < 0 || xt_tcp_bind(Z.st, Z.lsock, 0, LPORT) || xt_tcp_listen(Z.st, Z.lsock, 8))
		setup_fail("listener");

	/* C0: passive handshake. */
	struct conn *c = &Z.c[0];
	struct seg s;
	memset(&s, 0, sizeof(s));
	s.doff = -1;
	s.seq = c->p_iss;
	s.flags = XT_TH_SYN;
	s.win = 65535;
	add_syn_opts(&s, c, true, 1460, pws, 7, psack, pts);
	inject_seg(c, &s);
	if (!c->e_iss_known)
		setup_fail("no SYN-ACK for C0");
	memset(&s, 0, sizeof(s));
	s.doff = -1;
	s.seq = c->p_nxt;
	s.ack = c->e_iss + 1;
	s.flags = XT_TH_ACK;
	s.win = 65535;
	if (ts_ok(c))
		add_ts(&s, c, peer_ts());
	inject_seg(c, &s);
	int a = xt_tcp_accept(Z.st, Z.lsock, NULL, NULL);
	if (a < 0)
		setup_fail("accept C0");
	adopt(a);

	/* C1: active handshake. */
	c = &Z.c[1];
	c->sock = xt_tcp_open(Z.st);
	if (c->sock < 0 || xt_tcp_connect(Z.st, c->sock, c->pip, c->pport, Z.now) != -EINPROGRESS)
		setup_fail("connect C1");
	xt_stack_flush(Z.st);
	if (!c->e_iss_known)
		setup_fail("no SYN from C1");
	memset(&s, 0, sizeof(s));
	s.doff = -1;
	s.seq = c->p_iss;
	s.ack = c->e_iss + 1;
	s.flags = XT_TH_SYN | XT_TH_ACK;
	s.win = 65535;
	add_syn_opts(&s, c, true, 1460, pws && c->e_syn_ws, 9, psack && c->e_syn_sack,
		     pts && c->e_syn_ts);
	inject_seg(c, &s);
	if (xt_tcp_state(Z.st, c->sock) != XT_ESTABLISHED)
		setup_fail("C1 not established");

	/* C2: left in SYN_SENT. */
	c = &Z.c[2];
	c->sock = xt_tcp_open(Z.st);
	if (c->sock < 0 || xt_tcp_connect(Z.st, c->sock, c->pip, c->pport, Z.now) != -EINPROGRESS)
		setup_fail("connect C2");
	xt_stack_flush(Z.st);
}

static void print_counters(void)
{
	const uint64_t *v = (const uint64_t *)xt_stack_counters(Z.st);
	fprintf(stderr, "counters:");
	for (int i = 0; xt_counter_names[i]; i++)
		if (v[i])
			fprintf(stderr, " %s=%llu", xt_counter_names[i], (unsigned long long)v[i]);
	fprintf(stderr, "\n");
}

static void teardown(void)
{
	for (int i = 0; i < NCONN; i++)
		if (Z.c[i].sock >= 0)
			xt_tcp_close(Z.st, Z.c[i].sock, Z.now);
	if (Z.lsock >= 0)
		xt_tcp_close(Z.st, Z.lsock, Z.now);
	xt_stack_poll(Z.st, Z.now);
	xt_stack_rx_unhold_all(Z.st); /* gives back every kept frame: none may be left */
	for (int i = 0; i < HOLD_WINDOW; i++)
		if (Z.kept_buf[i])
			abort();
	xt_stack_free(Z.st);
	Z.st = NULL;
}

/* ---- operations ---- */

static void op_inject(struct rd *r)
{
	static const uint8_t flag_table[16] = {
		XT_TH_ACK, XT_TH_ACK | XT_TH_PSH, XT_TH_ACK, XT_TH_ACK | XT_TH_FIN,
		XT_TH_RST, XT_TH_RST | XT_TH_ACK, XT_TH_SYN, XT_TH_SYN | XT_TH_ACK,
		XT_TH_ACK | XT_TH_PSH | XT_TH_FIN, XT_TH_ACK, XT_TH_ACK | XT_TH_PSH, 0,
		0 /* raw */, XT_TH_SYN | XT_TH_FIN, XT_TH_ACK | XT_TH_URG, XT_TH_ACK | XT_TH_ECE | XT_TH_CWR,
	};
	struct conn *c = &Z.c[g8(r) % NCONN];
	struct seg s;
	memset(&s, 0, sizeof(s));
	s.doff = -1;

	uint8_t fb = g8(r);
	s.flags = flag_table[fb & 15];
	if ((fb & 15) == 12)
		s.flags = g8(r);

	uint8_t m = g8(r);
	uint32_t base = c->p_nxt;
	switch (m & 7) {
	case 3: base = c->e_ack_valid ? c->e_ack : c->p_nxt; break;
	case 4: base = c->p_nxt + (uint32_t)(int32_t)(int8_t)g8(r); break;
	case 5: base = c->p_nxt + g16(r); break;
	case 6: base = c->p_nxt - g16(r); break;
	case 7: base = g32(r); s.wild = true; break;
	default: break;
	}
	/* A SYN starts the peer's sequence space again: keep its ISN fixed
	 * (so the IRS oracle holds) unless the input asks for a raw/offset one. */
	if ((s.flags & XT_TH_SYN) && (m & 7) != 4 && (m & 7) != 7)
		base = c->p_iss;
	s.seq = base;

	uint32_t emax = c->e_iss_known ? c->e_max : 0;
	switch ((m >> 3) & 7) {
	case 3: s.ack = emax - g8(r); break;
	case 4: s.ack = c->last_ack; break;
	case 5: s.ack = emax + g8(r); break;
	case 6: s.ack = c->e_iss + g16(r); break;
	case 7: s.ack = g32(r); break;
	default: s.ack = emax; break;
	}

	uint8_t wb = g8(r);
	switch (wb >> 6) {
	case 2: s.win = g8(r); break;
	case 3: s.win = g16(r); break;
	default: s.win = 65535; break;
	}

	uint8_t lb = g8(r);
	switch (lb & 3) {
	case 0: s.plen = 0; break;
	case 1: s.plen = g8(r); break;
	case 2: {
		static const uint16_t sizes[4] = { 536, 1448, 1460, 1 };
		s.plen = sizes[(lb >> 2) & 3];
		break;
	}
	default: s.plen = g16(r) % 3000; break;
	}

	uint8_t ob = g8(r);
	uint32_t tsval = peer_ts();
	if ((ob & 3) == 3)
		tsval -= g32(r) % 0x80000000u; /* old: PAWS */
	switch ((ob >> 2) & 3) {
	case 0: /* what this peer would send */
		if (s.flags & XT_TH_SYN) {
			uint8_t so = g8(r);
			static const uint16_t msss[4] = { 1460, 536, 64, 65535 };
			add_syn_opts(&s, c, !(so & 1), msss[(so >> 4) & 3], !(so & 2), (uint8_t)(so >> 6) * 5,
				     !(so & 4), !(so & 8));
		} else if (ts_ok(c)) {
			add_ts(&s, c, tsval);
		}
		break;
	case 1: /* with SACK blocks over the engine's data */
		if (ts_ok(c))
			add_ts(&s, c, tsval);
		if (sack_ok(c) || (ob & 0x80)) {
			unsigned nb = 1 + (g8(r) % (ts_ok(c) ? 3 : 4));
			uint8_t *o = s.opt + s.optlen;
			o[0] = XT_TCPOPT_NOP;
			o[1] = XT_TCPOPT_NOP;
			o[2] = XT_TCPOPT_SACK;
			o[3] = (uint8_t)(2 + 8 * nb);
			for (unsigned i = 0; i < nb; i++) {
				uint32_t left = c->e_ack_valid ? s.ack : emax;
				left += g16(r) % 20000;
				uint32_t right = left + 1 + g16(r) % 8000;
				xt_wr32(o + 4 + 8 * i, left);
				xt_wr32(o + 8 + 8 * i, right);
			}
			s.optlen += 4 + 8 * nb;
		}
		break;
	case 2: /* none */
		break;
	default: { /* raw bytes, any length */
		uint32_t n = g8(r) % 41;
		for (uint32_t i = 0; i < n; i++)
			s.opt[i] = g8(r);
		s.optlen = n;
		break;
	}
	}

	uint8_t misc = g8(r);
	s.bad_csum = (misc & 15) == 0;
	if ((misc & 0x30) == 0x30)
		s.doff = g8(r) & 15;
	inject_seg(c, &s);
}

static void step_time(xt_time_t target)
{
	/* As a driver would: wake at every deadline on the way. */
	for (int i = 0; i < 2000; i++) {
		xt_time_t d = xt_stack_next_deadline(Z.st);
		if (d > target)
			break;
		if (d > Z.now)
			Z.now = d;
		xt_stack_poll(Z.st, Z.now);
	}
	Z.now = target;
	xt_stack_poll(Z.st, Z.now);
}

static void op_time(struct rd *r)
{
	static const xt_time_t unit[8] = { XT_US(1), XT_US(100), XT_MS(1), XT_MS(10),
					   XT_MS(100), XT_SEC(1), XT_SEC(60), XT_SEC(3600) };
	uint8_t b = g8(r);
	xt_time_t d = unit[b & 7] * (xt_time_t)(g8(r) + 1);
	if (b & 8) {
		step_time(Z.now + d);
	} else {
		Z.now += d;
		xt_stack_poll(Z.st, Z.now);
	}
}

static void check_recv(struct conn *c, long n, size_t asked, bool peek)
{
	if (n > (long)asked)
		die("%s", "recv returned more than asked", NULL, 0);
	if (n == 0 && !peek)
		c->eof = true;
	if (n > 0 && c->eof && !c->shut_rd)
		die("%s", "recv returned data after it returned end of stream", NULL, 0);
	if (n <= 0)
		return;
	if (c->irs_known) {
		uint32_t s = c->irs + 1 + (uint32_t)c->rx_stream;
		for (long i = 0; i < n; i++)
			if (Z.buf[i] != ppat(s + (uint32_t)i)) {
				for (long k = i; trace > 0 && k < n; k++) {
					long e = k;
					while (e < n && Z.buf[e] != ppat(s + (uint32_t)e))
						e++;
					if (e > k)
						fprintf(stderr, "  wrong bytes at [%ld, %ld) of %ld\n", k, e, n);
					k = e;
				}
				fprintf(stderr, "fuzz_tcp_stateful: recv offset %llu+%ld irs %08x: got %02x want %02x\n",
					(unsigned long long)c->rx_stream, i, c->irs, Z.buf[i],
					ppat(s + (uint32_t)i));
				die("%s", "application read bytes the peer never sent there", NULL, 0);
			}
	}
	if (!peek)
		c->rx_stream += (uint64_t)n;
}

static void do_send(struct conn *c, size_t len, int flags)
{
	if (len > sizeof(Z.buf))
		len = sizeof(Z.buf);
	for (size_t i = 0; i < len; i++)
		Z.buf[i] = epat(c->tx_stream + i);
	c->tx_offered = len;
	long n = xt_tcp_send(Z.st, c->sock, Z.buf, len, flags, Z.now);
	c->tx_offered = 0;
	if (n > (long)len)
		die("%s", "send took more than offered", NULL, 0);
	if (n > 0 && c->shut_wr)
		die("%s", "send succeeded after shutdown(SHUT_WR)", NULL, 0);
	if (n > 0)
		c->tx_stream += (uint64_t)n;
	xt_stack_flush(Z.st);
}

static void op_app(struct rd *r)
{
	uint8_t ci = g8(r);
	struct conn *c = &Z.c[ci % NCONN];
	uint8_t act = g8(r);
	int v;

	switch (act % 20) {
	case 0:
	case 1:
		if (c->sock >= 0)
			do_send(c, g16(r) % 40000, (act & 0x20) ? XT_MSG_MORE : 0);
		break;
	case 2:
		if (c->sock >= 0)
			do_send(c, 1 + g8(r) % 16, 0);
		break;
	case 3:
	case 4: {
		if (c->sock < 0)
			break;
		size_t len = 1 + g16(r) % sizeof(Z.buf);
		bool peek = act & 0x20;
		long n = xt_tcp_recv(Z.st, c->sock, Z.buf, len, peek ? XT_MSG_PEEK : 0, Z.now);
		check_recv(c, n, len, peek);
		xt_stack_flush(Z.st);
		break;
	}
	case 5:
		if (c->sock >= 0) {
			int how = g8(r) % 3;
			if (xt_tcp_shutdown(Z.st, c->sock, how, Z.now) == 0) {
				if (how != XT_SHUT_WR)
					c->shut_rd = true;
				if (how != XT_SHUT_RD)
					c->shut_wr = true;
			}
			xt_stack_flush(Z.st);
		}
		break;
	case 6:
		if (c->sock >= 0) {
			xt_tcp_close(Z.st, c->sock, Z.now);
			c->sock = -1;
			xt_stack_flush(Z.st);
		}
		break;
	case 7:
		if (c->sock >= 0) {
			xt_tcp_abort(Z.st, c->sock, Z.now);
			c->sock = -1;
			xt_stack_flush(Z.st);
		}
		break;
	case 8:
	case 9: {
		int opt = 1 + g8(r) % (XT_OPT_MAX - 1);
		uint8_t vs = g8(r);
		switch (vs & 3) {
		case 0: v = vs >> 2; break;
		case 1: v = (int)(int8_t)g8(r); break;
		case 2: v = (int)g16(r); break;
		default: v = (int)g32(r); break;
		}
		int s = (act & 0x20) || c->sock < 0 ? Z.lsock : c->sock;
		if (s >= 0)
			xt_tcp_setopt(Z.st, s, opt, v, Z.now);
		xt_stack_flush(Z.st);
		break;
	}
	case 10: {
		static const int common[8][2] = {
			{ XT_TCP_NODELAY, 1 }, { XT_TCP_CORK, 1 }, { XT_TCP_CORK, 0 }, { XT_SO_LINGER, 0 },
			{ XT_SO_RCVBUF, 2048 }, { XT_SO_KEEPALIVE, 1 }, { XT_TCP_USER_TIMEOUT, 1000 },
			{ XT_TCP_QUICKACK, 1 },
		};
		unsigned k = g8(r) & 7;
		if (c->sock >= 0)
			xt_tcp_setopt(Z.st, c->sock, common[k][0], common[k][1], Z.now);
		xt_stack_flush(Z.st);
		break;
	}
	case 11: {
		int s = c->sock >= 0 ? c->sock : Z.lsock;
		if (s < 0)
			break;
		struct xt_tcp_info ti;
		uint32_t ip;
		uint16_t port;
		for (int opt = 1; opt < XT_OPT_MAX; opt++)
			xt_tcp_getopt(Z.st, s, opt, &v);
		xt_tcp_info(Z.st, s, &ti, Z.now);
		xt_tcp_getname(Z.st, s, 0, &ip, &port);
		xt_tcp_getname(Z.st, s, 1, &ip, &port);
		(void)xt_tcp_events(Z.st, s);
		if (xt_tcp_inq(Z.st, s) < 0 && c->sock >= 0 && xt_tcp_state(Z.st, s) == XT_ESTABLISHED)
			die("%s", "FIONREAD negative on an established socket", NULL, 0);
		(void)xt_tcp_outq(Z.st, s);
		break;
	}
	case 12:
	case 13:
		if (Z.lsock >= 0) {
			int a = xt_tcp_accept(Z.st, Z.lsock, NULL, NULL);
			if (a >= 0)
				adopt(a);
		}
		break;
	case 14:
		/* An active connection opens again (new port). */
		if (c->active && c->sock < 0) {
			c->sock = xt_tcp_open(Z.st);
			if (c->sock < 0)
				break;
			c->lport_known = false;
			c->e_iss_known = false;
			c->irs_known = false;
			c->tx_stream = c->rx_stream = 0;
			c->p_nxt = c->p_iss;
			c->eof = c->shut_rd = c->shut_wr = false;
			c->wild = false;
			c->p_max = c->p_iss;
			int rc = xt_tcp_connect(Z.st, c->sock, c->pip, c->pport, Z.now);
			if (rc != -EINPROGRESS) {
				xt_tcp_close(Z.st, c->sock, Z.now);
				c->sock = -1;
			}
			xt_stack_flush(Z.st);
		}
		break;
	case 15:
		if (Z.lsock >= 0) {
			xt_tcp_close(Z.st, Z.lsock, Z.now);
			Z.lsock = -1;
		} else {
			Z.lsock = xt_tcp_open(Z.st);
			if (Z.lsock >= 0 && (xt_tcp_bind(Z.st, Z.lsock, 0, LPORT) ||
					     xt_tcp_listen(Z.st, Z.lsock, g8(r) % 4))) {
				xt_tcp_close(Z.st, Z.lsock, Z.now);
				Z.lsock = -1;
			}
		}
		xt_stack_flush(Z.st);
		break;
	case 16:
		/* Drain everything readable. */
		if (c->sock >= 0) {
			long q = xt_tcp_inq(Z.st, c->sock);
			for (int k = 0; k < 16; k++) {
				long n = xt_tcp_recv(Z.st, c->sock, Z.buf, sizeof(Z.buf), 0, Z.now);
				check_recv(c, n, sizeof(Z.buf), false);
				/* FIONREAD is what one read returns (Linux tcp_recvmsg takes all). */
				if (k == 0 && q > 0 && n != (q < (long)sizeof(Z.buf) ? q : (long)sizeof(Z.buf))) {
					fprintf(stderr, "fuzz_tcp_stateful: inq %ld, recv %ld\n", q, n);
					die("%s", "recv returned other than FIONREAD said was readable", NULL, 0);
				}
				if (n <= 0)
					break;
			}
			xt_stack_flush(Z.st);
		}
		break;
	case 17:
		xt_stack_poll(Z.st, Z.now);
		break;
	case 18:
		/* listen() on a live connection must fail (Linux: EINVAL). */
		if (c->sock >= 0) {
			int stt = xt_tcp_state(Z.st, c->sock);
			int rc = xt_tcp_listen(Z.st, c->sock, 4);
			if (rc == 0 && stt != XT_CLOSE)
				die("%s", "listen() succeeded on a live connection", NULL, 0);
			if (rc == 0) { /* the handle is a listener now: drop it */
				xt_tcp_close(Z.st, c->sock, Z.now);
				c->sock = -1;
			}
		}
		break;
	default:
		if (c->sock >= 0)
			do_send(c, g16(r) % 2000, 0);
		break;
	}
}

static void op_icmp(struct rd *r)
{
	static const uint8_t tc[10][2] = {
		{ 3, 4 }, { 3, 4 }, { 3, 1 }, { 3, 3 }, { 3, 0 }, { 3, 2 }, { 11, 0 }, { 4, 0 }, { 12, 0 }, { 3, 13 },
	};
	struct conn *c = &Z.c[g8(r) % NCONN];
	uint8_t k = g8(r);
	uint8_t type, code;
	if (k % 11 == 10) {
		type = g8(r);
		code = g8(r);
	} else {
		type = tc[k % 11][0];
		code = tc[k % 11][1];
	}
	uint16_t mtu = g16(r);
	uint8_t qm = g8(r);
	uint32_t qseq;
	switch (qm & 3) {
	case 0: qseq = c->e_ack_valid ? c->e_max - 1 : c->e_iss; break;
	case 1: qseq = c->e_iss; break;
	case 2: qseq = c->e_max; break;
	default: qseq = g32(r); break;
	}
	static const uint32_t qlens[4] = { 8, 20, 28, 4 };
	uint32_t qlen = qlens[(qm >> 2) & 3];

	uint8_t *f = Z.frame;
	uint32_t l4len = XT_ICMP_HLEN + XT_IP_HLEN + qlen;
	uint32_t src = (qm & 0x10) ? ROUTER_IP : c->pip;
	uint32_t off = put_ip(f, src, XT_IPPROTO_ICMP, l4len, 7);
	uint8_t *ic = f + off;
	memset(ic, 0, l4len);
	ic[XT_ICMP_TYPE] = type;
	ic[XT_ICMP_CODE] = code;
	xt_wr16(ic + 6, mtu); /* next-hop MTU for fragmentation-needed */
	uint8_t *qip = ic + XT_ICMP_HLEN;
	qip[XT_IP_VHL] = 0x45;
	xt_wr16(qip + XT_IP_LEN_be16, (uint16_t)(XT_IP_HLEN + 20 + (qm >> 5) * 100));
	xt_wr16(qip + XT_IP_FRAG_be16, XT_IP_DF);
	qip[XT_IP_TTL] = 1;
	qip[XT_IP_PROTO] = (qm & 0x80) ? XT_IPPROTO_ICMP : XT_IPPROTO_TCP;
	xt_wr32(qip + XT_IP_SRC_be32, US_IP);
	xt_wr32(qip + XT_IP_DST_be32, c->pip);
	xt_wr16(qip + XT_IP_CSUM_be16, csum_fold(csum_add(0, qip, XT_IP_HLEN)));
	uint8_t q[28] = { 0 };
	xt_wr16(q + XT_TCP_SPORT_be16, c->lport);
	xt_wr16(q + XT_TCP_DPORT_be16, c->pport);
	xt_wr32(q + XT_TCP_SEQ_be32, qseq);
	xt_wr32(q + XT_TCP_ACK_be32, c->last_ack);
	q[XT_TCP_OFF] = 0x50;
	q[XT_TCP_FLAGS] = XT_TH_ACK;
	memcpy(qip + XT_IP_HLEN, q, qlen);
	uint16_t cs = csum_fold(csum_add(0, ic, l4len));
	if ((g8(r) & 15) == 0)
		cs ^= 1;
	xt_wr16(ic + XT_ICMP_CSUM_be16, cs);
	feed(f, off + l4len);
	xt_stack_flush(Z.st);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct rd r = { data, size };

	setup(g8(&r));
	for (int ops = 0; r.n && ops < 4096; ops++) {
		uint8_t op = g8(&r);
		switch (op % 8) {
		case 0:
		case 1:
		case 2:
		case 3: op_inject(&r); break;
		case 4: op_time(&r); break;
		case 5:
		case 6: op_app(&r); break;
		default: op_icmp(&r); break;
		}
	}
	teardown();
	return 0;
}
