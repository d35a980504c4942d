/* Segment-level test harness for the xtcp engine: see seg.h. */
#include <errno.h>
#include <inttypes.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "seg.h"

const uint8_t fx_our_mac[6] = { 0x02, 0, 0, 0, 0, 0x01 };
const uint8_t fx_peer_mac[6] = { 0x02, 0, 0, 0, 0, 0x02 };
const uint8_t fx_other_mac[6] = { 0x02, 0, 0, 0, 0, 0x03 };

#define FX_BUILD_MAX 9200

/* ------------------------------------------------------------------ */
/* checksums (RFC 1071), written here so the harness never trusts the engine */

static uint32_t csum_add(uint32_t sum, const uint8_t *p, size_t len)
{
	while (len > 1) {
		sum += (uint32_t)((p[0] << 8) | p[1]);
		p += 2;
		len -= 2;
	}
	if (len)
		sum += (uint32_t)(p[0] << 8);
	return sum;
}

static uint16_t csum_fold(uint32_t sum)
{
	while (sum >> 16)
		sum = (sum & 0xffff) + (sum >> 16);
	return (uint16_t)~sum;
}

uint16_t fx_csum(const void *data, size_t len, uint32_t initial)
{
	return csum_fold(csum_add(initial, data, len));
}

static uint32_t pseudo_sum(uint32_t src, uint32_t dst, uint16_t tcplen)
{
	return (src >> 16) + (src & 0xffff) + (dst >> 16) + (dst & 0xffff) + XT_IPPROTO_TCP + tcplen;
}

/* ------------------------------------------------------------------ */
/* failures */

static void vfail(const struct fx *fx, const char *file, int line, const char *fmt, va_list ap)
	__attribute__((noreturn));
static void vfail(const struct fx *fx, const char *file, int line, const char *fmt, va_list ap)
{
	char msg[1024];
	vsnprintf(msg, sizeof msg, fmt, ap);
	print_error("%s:%d: %s\n", file, line, msg);
	if (fx) {
		print_error("  (test time %.3f ms, %zu frame(s) still pending)\n", fx->now / 1e6, fx->qlen);
		fx_dump(fx);
	}
	_fail(file, line);
	abort(); /* not reached: _fail longjmps out of the test */
}

void fx_fail_(const struct fx *fx, const char *file, int line, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vfail(fx, file, line, fmt, ap);
}

/* ------------------------------------------------------------------ */
/* capture */

/* What a device does for a frame flagged XT_FRAME_CSUM_PARTIAL: sums the TCP
 * segment, whose checksum field holds the pseudo-header sum, and stores the
 * result there.  A wrong pseudo-header sum then fails seg_parse's check. */
static void device_finish_csum(uint8_t *f, uint32_t len)
{
	if (len < 14 + 20 || f[12] != 0x08 || f[13] != 0x00)
		return;
	uint8_t *ip = f + 14;
	uint32_t ihl = (ip[0] & 0xfu) * 4u, tot = (uint32_t)(ip[2] << 8 | ip[3]);
	if (ip[9] != XT_IPPROTO_TCP || tot > len - 14 || tot < ihl + 20)
		return;
	uint16_t c = fx_csum(ip + ihl, tot - ihl, 0);
	ip[ihl + 16] = (uint8_t)(c >> 8);
	ip[ihl + 17] = (uint8_t)c;
}

static int fx_tx(void *ctx, const struct xt_frame *frames, int n)
{
	struct fx *fx = ctx;
	for (int i = 0; i < n; i++) {
		if (fx->qlen == fx->qcap) {
			size_t ncap = fx->qcap ? fx->qcap * 2 : 64;
			struct fx_frame *nq = calloc(ncap, sizeof *nq);
			if (!nq)
				abort();
			for (size_t k = 0; k < fx->qlen; k++)
				nq[k] = fx->q[(fx->qhead + k) % fx->qcap];
			free(fx->q);
			fx->q = nq;
			fx->qcap = ncap;
			fx->qhead = 0;
		}
		struct fx_frame *f = &fx->q[(fx->qhead + fx->qlen) % fx->qcap];
		uint32_t len = xt_frame_wire_len(&frames[i]);
		f->data = malloc(len ? len : 1);
		if (!f->data)
			abort();
		xt_frame_copy(&frames[i], f->data);
		f->len = len;
		if (frames[i].flags & XT_FRAME_CSUM_PARTIAL)
			device_finish_csum(f->data, len);
		f->t = fx->now;
		fx->qlen++;
		fx->total_tx++;
	}
	return n;
}

static void fx_on_event(void *ctx, int sock, uint32_t events)
{
	struct fx *fx = ctx;
	if (sock >= 0 && sock < FX_EV_SOCKS) {
		fx->ev_last[sock] = events;
		fx->ev_calls[sock]++;
	}
}

size_t fx_pending(const struct fx *fx) { return fx->qlen; }

static bool is_followed(const struct fx *fx, const struct seg *s)
{
	return s->valid && s->is_tcp && s->src_ip == FX_OUR_IP && s->dst_ip == fx->peer_ip &&
	       s->dport == fx->peer_port && fx->our_port && s->sport == fx->our_port;
}

bool fx_pop(struct fx *fx, struct seg *out)
{
	if (!fx->qlen)
		return false;
	struct fx_frame *f = &fx->q[fx->qhead];
	seg_parse(f->data, f->len, fx->cfg.tx_csum_offload != XT_TX_CSUM_FULL, out);
	out->t = f->t;
	free(f->data);
	f->data = NULL;
	fx->qhead = (fx->qhead + 1) % fx->qcap;
	fx->qlen--;
	if (is_followed(fx, out)) {
		if (!(out->flags & XT_TH_RST)) {
			uint32_t end = out->seq + out->len + !!(out->flags & XT_TH_SYN) + !!(out->flags & XT_TH_FIN);
			if (seq_lt(fx->our_nxt, end))
				fx->our_nxt = end;
		}
		if (out->opts & OPT_TS)
			fx->our_tsval = out->tsval;
	}
	if (out != &fx->last)
		fx->last = *out;
	return true;
}

void fx_drain(struct fx *fx)
{
	struct seg s;
	while (fx_pop(fx, &s))
		;
}

void fx_dump(const struct fx *fx)
{
	for (size_t k = 0; k < fx->qlen; k++) {
		const struct fx_frame *f = &fx->q[(fx->qhead + k) % fx->qcap];
		struct seg s;
		char buf[512];
		seg_parse(f->data, f->len, fx->cfg.tx_csum_offload != XT_TX_CSUM_FULL, &s);
		s.t = f->t;
		print_error("  pending[%zu]: %s\n", k, seg_str(&s, buf, sizeof buf));
	}
}

/* ------------------------------------------------------------------ */
/* parsing */

void seg_parse(const uint8_t *frame, size_t len, bool check_csum, struct seg *o)
{
	memset(o, 0, offsetof(struct seg, data));
	o->why = "ok";
	if (len < XT_ETH_HLEN) {
		o->why = "frame shorter than Ethernet header";
		return;
	}
	memcpy(o->dst_mac, frame + XT_ETH_DST, 6);
	memcpy(o->src_mac, frame + XT_ETH_SRC, 6);
	o->ethertype = xt_rd16(frame + XT_ETH_TYPE_be16);
	if (o->ethertype != XT_ETHERTYPE_IPV4) {
		o->why = o->ethertype == XT_ETHERTYPE_ARP ? "ARP frame" : "not IPv4";
		return;
	}
	const uint8_t *ip = frame + XT_ETH_HLEN;
	size_t iplen = len - XT_ETH_HLEN;
	if (iplen < XT_IP_HLEN || (ip[XT_IP_VHL] >> 4) != 4) {
		o->why = "bad IPv4 header";
		return;
	}
	uint32_t ihl = (uint32_t)(ip[XT_IP_VHL] & 15) * 4;
	uint32_t tot = xt_rd16(ip + XT_IP_LEN_be16);
	if (ihl < XT_IP_HLEN || tot < ihl || tot > iplen) {
		o->why = "bad IPv4 lengths";
		return;
	}
	o->src_ip = xt_rd32(ip + XT_IP_SRC_be32);
	o->dst_ip = xt_rd32(ip + XT_IP_DST_be32);
	o->ttl = ip[XT_IP_TTL];
	o->tos = ip[XT_IP_TOS];
	o->ip_id = xt_rd16(ip + XT_IP_ID_be16);
	o->df = !!(xt_rd16(ip + XT_IP_FRAG_be16) & XT_IP_DF);
	if (check_csum && fx_csum(ip, ihl, 0) != 0) {
		o->why = "bad IPv4 header checksum";
		return;
	}
	if (ip[XT_IP_PROTO] != XT_IPPROTO_TCP) {
		o->why = "not TCP";
		return;
	}
	if (xt_rd16(ip + XT_IP_FRAG_be16) & (XT_IP_MF | XT_IP_OFFMASK)) {
		o->why = "IPv4 fragment";
		return;
	}
	const uint8_t *th = ip + ihl;
	uint32_t tlen = tot - ihl;
	if (tlen < XT_TCP_HLEN) {
		o->why = "short TCP header";
		return;
	}
	o->is_tcp = true;
	uint32_t doff = (uint32_t)(th[XT_TCP_OFF] >> 4) * 4;
	if (doff < XT_TCP_HLEN || doff > tlen) {
		o->why = "bad TCP data offset";
		return;
	}
	if (check_csum && csum_fold(csum_add(pseudo_sum(o->src_ip, o->dst_ip, (uint16_t)tlen), th, tlen)) != 0) {
		o->why = "bad TCP checksum";
		return;
	}
	o->sport = xt_rd16(th + XT_TCP_SPORT_be16);
	o->dport = xt_rd16(th + XT_TCP_DPORT_be16);
	o->seq = xt_rd32(th + XT_TCP_SEQ_be32);
	o->ack = xt_rd32(th + XT_TCP_ACK_be32);
	o->flags = th[XT_TCP_FLAGS];
	o->win = xt_rd16(th + XT_TCP_WIN_be16);
	o->urp = xt_rd16(th + XT_TCP_URP_be16);
	for (uint32_t i = XT_TCP_HLEN; i < doff;) {
		uint8_t kind = th[i];
		if (kind == XT_TCPOPT_EOL)
			break;
		if (kind == XT_TCPOPT_NOP) {
			i++;
			continue;
		}
		if (i + 1 >= doff || th[i + 1] < 2 || i + th[i + 1] > doff) {
			o->why = "malformed TCP option";
			return;
		}
		uint8_t ol = th[i + 1];
		const uint8_t *v = th + i + 2;
		switch (kind) {
		case XT_TCPOPT_MSS:
			if (ol != 4) { o->why = "MSS option length"; return; }
			o->opts |= OPT_MSS;
			o->mss = xt_rd16(v);
			break;
		case XT_TCPOPT_WSCALE:
			if (ol != 3) { o->why = "WS option length"; return; }
			o->opts |= OPT_WS;
			o->ws = v[0];
			break;
		case XT_TCPOPT_SACK_PERM:
			if (ol != 2) { o->why = "SACK_PERM option length"; return; }
			o->opts |= OPT_SACK_PERM;
			break;
		case XT_TCPOPT_TS:
			if (ol != 10) { o->why = "TS option length"; return; }
			o->opts |= OPT_TS;
			o->tsval = xt_rd32(v);
			o->tsecr = xt_rd32(v + 4);
			break;
		case XT_TCPOPT_SACK:
			if (ol < 10 || (ol - 2) % 8 || (ol - 2) / 8 > 4) { o->why = "SACK option length"; return; }
			o->opts |= OPT_SACK;
			o->nsack = (uint8_t)((ol - 2) / 8);
			for (int b = 0; b < o->nsack; b++) {
				o->sack[b][0] = xt_rd32(v + 8 * b);
				o->sack[b][1] = xt_rd32(v + 8 * b + 4);
			}
			break;
		default:
			break;
		}
		i += ol;
	}
	o->len = tlen - doff;
	if (o->len > sizeof o->data) {
		o->why = "payload larger than the harness buffer";
		return;
	}
	memcpy(o->data, th + doff, o->len);
	o->valid = true;
}

static const char *ipstr(uint32_t ip, char *b)
{
	sprintf(b, "%u.%u.%u.%u", ip >> 24, (ip >> 16) & 255, (ip >> 8) & 255, ip & 255);
	return b;
}

const char *seg_str(const struct seg *s, char *buf, size_t cap)
{
	char a[16], b[16], fl[10], op[200];
	if (!s->is_tcp || !s->valid) {
		snprintf(buf, cap, "t=%.3fms %s frame (%s)", s->t / 1e6, s->is_tcp ? "bad TCP" : "non-TCP", s->why);
		return buf;
	}
	int k = 0;
	static const char names[] = "FSRP.UEC";
	for (int i = 0; i < 8; i++)
		if (s->flags & (1 << i))
			fl[k++] = names[i];
	fl[k] = 0;
	int n = 0;
	op[0] = 0;
	if (s->opts & OPT_MSS)
		n += snprintf(op + n, sizeof op - (size_t)n, "mss %u,", s->mss);
	if (s->opts & OPT_WS)
		n += snprintf(op + n, sizeof op - (size_t)n, "ws %u,", s->ws);
	if (s->opts & OPT_SACK_PERM)
		n += snprintf(op + n, sizeof op - (size_t)n, "sackOK,");
	if (s->opts & OPT_TS)
		n += snprintf(op + n, sizeof op - (size_t)n, "TS %u:%u,", s->tsval, s->tsecr);
	for (int i = 0; i < s->nsack && n < 150; i++)
		n += snprintf(op + n, sizeof op - (size_t)n, "sack %u-%u,", s->sack[i][0], s->sack[i][1]);
	snprintf(buf, cap, "t=%.3fms %s:%u > %s:%u [%s] seq %u ack %u win %u <%s> len %u", s->t / 1e6,
		 ipstr(s->src_ip, a), s->sport, ipstr(s->dst_ip, b), s->dport, fl, s->seq, s->ack, s->win, op,
		 s->len);
	return buf;
}

/* ------------------------------------------------------------------ */
/* building */

size_t seg_build(uint8_t *buf, size_t cap, const struct seg_spec *sp)
{
	uint8_t opt[60];
	size_t ol = 0;
	if (sp->opts & OPT_MSS) {
		opt[ol++] = XT_TCPOPT_MSS;
		opt[ol++] = 4;
		xt_wr16(opt + ol, sp->mss);
		ol += 2;
	}
	if ((sp->opts & OPT_SACK_PERM) && (sp->opts & OPT_TS)) {
		opt[ol++] = XT_TCPOPT_SACK_PERM;
		opt[ol++] = 2;
	} else if (sp->opts & (OPT_SACK_PERM | OPT_TS)) {
		opt[ol++] = XT_TCPOPT_NOP;
		opt[ol++] = XT_TCPOPT_NOP;
		if (sp->opts & OPT_SACK_PERM) {
			opt[ol++] = XT_TCPOPT_SACK_PERM;
			opt[ol++] = 2;
		}
	}
	if (sp->opts & OPT_TS) {
		opt[ol++] = XT_TCPOPT_TS;
		opt[ol++] = 10;
		xt_wr32(opt + ol, sp->tsval);
		xt_wr32(opt + ol + 4, sp->tsecr);
		ol += 8;
	}
	if (sp->opts & OPT_WS) {
		opt[ol++] = XT_TCPOPT_NOP;
		opt[ol++] = XT_TCPOPT_WSCALE;
		opt[ol++] = 3;
		opt[ol++] = sp->ws;
	}
	if ((sp->opts & OPT_SACK) && sp->nsack) {
		uint8_t n = sp->nsack > 4 ? 4 : sp->nsack;
		opt[ol++] = XT_TCPOPT_NOP;
		opt[ol++] = XT_TCPOPT_NOP;
		opt[ol++] = XT_TCPOPT_SACK;
		opt[ol++] = (uint8_t)(2 + 8 * n);
		for (int b = 0; b < n; b++) {
			xt_wr32(opt + ol, sp->sack[b][0]);
			xt_wr32(opt + ol + 4, sp->sack[b][1]);
			ol += 8;
		}
	}
	if (sp->rawopt_len && ol + sp->rawopt_len <= 40) {
		memcpy(opt + ol, sp->rawopt, sp->rawopt_len);
		ol += sp->rawopt_len;
	}
	while (ol % 4)
		opt[ol++] = XT_TCPOPT_EOL;
	if (ol > 40)
		abort();

	size_t thl = XT_TCP_HLEN + ol;
	size_t tlen = thl + sp->len;
	size_t flen = XT_ETH_HLEN + XT_IP_HLEN + tlen;
	if (flen > cap)
		abort();
	memset(buf, 0, XT_ETH_HLEN + XT_IP_HLEN + thl);

	uint8_t *eth = buf;
	memcpy(eth + XT_ETH_DST, fx_our_mac, 6);
	memcpy(eth + XT_ETH_SRC, sp->src_ip == FX_OTHER_IP ? fx_other_mac : fx_peer_mac, 6);
	xt_wr16(eth + XT_ETH_TYPE_be16, XT_ETHERTYPE_IPV4);

	uint8_t *th = buf + XT_ETH_HLEN + XT_IP_HLEN;
	xt_wr16(th + XT_TCP_SPORT_be16, sp->sport);
	xt_wr16(th + XT_TCP_DPORT_be16, sp->dport);
	xt_wr32(th + XT_TCP_SEQ_be32, sp->seq);
	xt_wr32(th + XT_TCP_ACK_be32, sp->ack);
	th[XT_TCP_OFF] = (uint8_t)((sp->doff ? sp->doff : thl / 4) << 4);
	th[XT_TCP_FLAGS] = sp->flags;
	xt_wr16(th + XT_TCP_WIN_be16, (sp->win & WIN_ZERO) ? 0 : (uint16_t)sp->win);
	xt_wr16(th + XT_TCP_URP_be16, sp->urp);
	memcpy(th + XT_TCP_HLEN, opt, ol);
	if (sp->len)
		memcpy(th + thl, sp->data, sp->len);
	uint16_t c = csum_fold(csum_add(pseudo_sum(sp->src_ip, sp->dst_ip, (uint16_t)tlen), th, tlen));
	if (sp->bad_csum)
		c ^= 0x5555;
	xt_wr16(th + XT_TCP_CSUM_be16, c);

	size_t keep = sp->cut ? sp->cut_len : tlen;
	if (keep > tlen)
		keep = tlen;
	uint8_t *ip = buf + XT_ETH_HLEN;
	ip[XT_IP_VHL] = 0x45;
	xt_wr16(ip + XT_IP_LEN_be16, (uint16_t)(XT_IP_HLEN + keep));
	static uint16_t ipid = 1;
	xt_wr16(ip + XT_IP_ID_be16, ipid++);
	xt_wr16(ip + XT_IP_FRAG_be16, XT_IP_DF);
	ip[XT_IP_TTL] = 64;
	ip[XT_IP_PROTO] = XT_IPPROTO_TCP;
	xt_wr32(ip + XT_IP_SRC_be32, sp->src_ip);
	xt_wr32(ip + XT_IP_DST_be32, sp->dst_ip);
	uint16_t ic = fx_csum(ip, XT_IP_HLEN, 0);
	if (sp->bad_ip_csum)
		ic ^= 0x5555;
	xt_wr16(ip + XT_IP_CSUM_be16, ic);
	return XT_ETH_HLEN + XT_IP_HLEN + keep;
}

/* The window field the peer puts in a segment. */
static uint32_t default_win(const struct fx *fx, uint8_t flags)
{
	uint32_t w = fx->peer.wnd;
	if (!(flags & XT_TH_SYN) && fx->ws_on && fx->peer.ws > 0)
		w >>= fx->peer.ws;
	if (w > 65535)
		w = 65535;
	return w ? w : WIN_ZERO;
}

static uint32_t peer_tsval_at(struct fx *fx, xt_time_t t)
{
	uint32_t v = 100000u + (uint32_t)(t / XT_MS(1));
	if (seq_lt(v, fx->peer_tsval))
		v = fx->peer_tsval;
	fx->peer_tsval = v;
	return v;
}

void frame_in(struct fx *fx, xt_time_t t, const void *frame, size_t len)
{
	fx_run_(fx, t, __FILE__, __LINE__);
	xt_stack_input(fx->st, frame, len, FX_T0 + t);
	xt_stack_flush(fx->st);
}

static void rx_give_back(struct fx *fx, uint64_t ref)
{
	memset(fx->rx_buf[ref], 0xdb, FX_BUILD_MAX); /* a late read sees garbage */
	free(fx->rx_buf[ref]);
	fx->rx_buf[ref] = NULL;
}

static void fx_rx_hold(void *ctx, uint64_t ref)
{
	struct fx *fx = ctx;
	if (ref == 0 || ref >= fx->rx_next_ref || !fx->rx_buf[ref] || fx->rx_kept[ref])
		fx_fail(fx, "rx_hold(%" PRIu64 ") out of turn", ref);
	fx->rx_kept[ref] = 1;
	fx->rx_holds++;
}

static void fx_rx_release(void *ctx, uint64_t ref)
{
	struct fx *fx = ctx;
	if (ref == 0 || ref >= fx->rx_next_ref || !fx->rx_kept[ref])
		fx_fail(fx, "rx_release(%" PRIu64 ") of a frame not kept", ref);
	fx->rx_kept[ref] = 0;
	fx->rx_releases++;
	rx_give_back(fx, ref);
}

/* A frame the engine may keep: its own buffer, ref and pos. */
static void rx_frame_in(struct fx *fx, xt_time_t t, const uint8_t *data, size_t n, uint32_t flags)
{
	uint64_t ref = fx->rx_next_ref++;
	if (ref >= fx->rx_cap) {
		size_t cap = fx->rx_cap ? fx->rx_cap * 2 : 1024;
		fx->rx_buf = realloc(fx->rx_buf, cap * sizeof(*fx->rx_buf));
		fx->rx_kept = realloc(fx->rx_kept, cap);
		if (!fx->rx_buf || !fx->rx_kept)
			abort();
		memset(fx->rx_buf + fx->rx_cap, 0, (cap - fx->rx_cap) * sizeof(*fx->rx_buf));
		memset(fx->rx_kept + fx->rx_cap, 0, cap - fx->rx_cap);
		fx->rx_cap = cap;
	}
	fx->rx_buf[ref] = malloc(FX_BUILD_MAX);
	if (!fx->rx_buf[ref])
		abort();
	memcpy(fx->rx_buf[ref], data, n);
	struct xt_frame f = { .data = fx->rx_buf[ref], .len = (uint32_t)n, .flags = flags, .ref = ref, .pos = ref };
	fx_run_(fx, t, __FILE__, __LINE__);
	xt_stack_input_frame(fx->st, &f, FX_T0 + t);
	xt_stack_flush(fx->st);
	if (!fx->rx_kept[ref])
		rx_give_back(fx, ref);
}

void seg_inject(struct fx *fx, xt_time_t t, const struct seg_spec *sp)
{
	static uint8_t buf[FX_BUILD_MAX];
	struct seg_spec s = *sp;
	bool conn = !s.src_ip && !s.dst_ip && !s.sport && !s.dport;
	if (!s.src_ip)
		s.src_ip = fx->peer_ip;
	if (!s.dst_ip)
		s.dst_ip = FX_OUR_IP;
	if (!s.sport)
		s.sport = fx->peer_port;
	if (!s.dport)
		s.dport = fx->our_port;
	if (!s.win)
		s.win = default_win(fx, s.flags);
	if (conn && fx->ts_on && !s.no_auto && !(s.opts & OPT_TS)) {
		s.opts |= OPT_TS;
		s.tsval = peer_tsval_at(fx, t);
		s.tsecr = fx->our_tsval;
	}
	size_t n = seg_build(buf, sizeof buf, &s);
	if (fx->cfg.rx_hold_window) {
		rx_frame_in(fx, t, buf, n, s.csum_offloaded ? XT_FRAME_CSUM_OK : 0);
		return;
	}
	if (s.csum_offloaded) {
		struct xt_frame f = { .data = buf, .len = (uint32_t)n, .flags = XT_FRAME_CSUM_OK };

		fx_run_(fx, t, __FILE__, __LINE__);
		xt_stack_input_frame(fx->st, &f, FX_T0 + t);
		xt_stack_flush(fx->st);
		return;
	}
	frame_in(fx, t, buf, n);
}

void icmp_in(struct fx *fx, xt_time_t t, uint32_t src, uint8_t type, uint8_t code, uint16_t mtu,
	     const struct seg *q)
{
	uint8_t f[XT_ETH_HLEN + XT_IP_HLEN + XT_ICMP_HLEN + XT_IP_HLEN + 8];
	memset(f, 0, sizeof f);
	if (!src)
		src = fx->peer_ip;
	memcpy(f + XT_ETH_DST, fx_our_mac, 6);
	memcpy(f + XT_ETH_SRC, src == FX_OTHER_IP ? fx_other_mac : fx_peer_mac, 6);
	xt_wr16(f + XT_ETH_TYPE_be16, XT_ETHERTYPE_IPV4);
	uint8_t *ip = f + XT_ETH_HLEN;
	ip[XT_IP_VHL] = 0x45;
	xt_wr16(ip + XT_IP_LEN_be16, (uint16_t)(sizeof f - XT_ETH_HLEN));
	xt_wr16(ip + XT_IP_ID_be16, 0x4242);
	ip[XT_IP_TTL] = 64;
	ip[XT_IP_PROTO] = XT_IPPROTO_ICMP;
	xt_wr32(ip + XT_IP_SRC_be32, src);
	xt_wr32(ip + XT_IP_DST_be32, FX_OUR_IP);
	xt_wr16(ip + XT_IP_CSUM_be16, fx_csum(ip, XT_IP_HLEN, 0));
	uint8_t *ic = ip + XT_IP_HLEN;
	ic[XT_ICMP_TYPE] = type;
	ic[XT_ICMP_CODE] = code;
	xt_wr16(ic + 6, mtu);
	/* the quoted datagram: our segment's IPv4 header and 8 bytes of TCP */
	uint8_t *qi = ic + XT_ICMP_HLEN;
	qi[XT_IP_VHL] = 0x45;
	xt_wr16(qi + XT_IP_LEN_be16, (uint16_t)(XT_IP_HLEN + XT_TCP_HLEN + q->len));
	xt_wr16(qi + XT_IP_ID_be16, q->ip_id);
	xt_wr16(qi + XT_IP_FRAG_be16, q->df ? XT_IP_DF : 0);
	qi[XT_IP_TTL] = 63;
	qi[XT_IP_PROTO] = XT_IPPROTO_TCP;
	xt_wr32(qi + XT_IP_SRC_be32, q->src_ip);
	xt_wr32(qi + XT_IP_DST_be32, q->dst_ip);
	xt_wr16(qi + XT_IP_CSUM_be16, fx_csum(qi, XT_IP_HLEN, 0));
	uint8_t *qt = qi + XT_IP_HLEN;
	xt_wr16(qt + XT_TCP_SPORT_be16, q->sport);
	xt_wr16(qt + XT_TCP_DPORT_be16, q->dport);
	xt_wr32(qt + XT_TCP_SEQ_be32, q->seq);
	xt_wr16(ic + XT_ICMP_CSUM_be16, fx_csum(ic, (size_t)(f + sizeof f - ic), 0));
	frame_in(fx, t, f, sizeof f);
}

/* ------------------------------------------------------------------ */
/* the peer */

void peer_seg(struct fx *fx, xt_time_t t, const struct seg_spec *sp) { seg_inject(fx, t, sp); }

void peer_data(struct fx *fx, xt_time_t t, const void *data, uint32_t len)
{
	seg_in(fx, t, .flags = XT_TH_ACK | XT_TH_PSH, .seq = fx->peer_seq, .ack = fx->peer_ack, .data = data,
	       .len = len);
	fx->peer_seq += len;
}

void pat_fill(uint8_t *buf, uint32_t len, uint32_t off, uint8_t seed)
{
	for (uint32_t i = 0; i < len; i++)
		buf[i] = pat_byte(off + i, seed);
}

bool pat_check(const uint8_t *buf, uint32_t len, uint32_t off, uint8_t seed)
{
	for (uint32_t i = 0; i < len; i++)
		if (buf[i] != pat_byte(off + i, seed))
			return false;
	return true;
}

void peer_data_at(struct fx *fx, xt_time_t t, uint32_t seq, uint32_t n)
{
	static uint8_t buf[FX_BUILD_MAX];
	if (n > sizeof buf)
		abort();
	pat_fill(buf, n, seq - fx->peer_iss - 1, PAT_PEER);
	seg_in(fx, t, .flags = XT_TH_ACK | XT_TH_PSH, .seq = seq, .ack = fx->peer_ack, .data = buf, .len = n);
}

void peer_data_n(struct fx *fx, xt_time_t t, uint32_t n)
{
	peer_data_at(fx, t, fx->peer_seq, n);
	fx->peer_seq += n;
}

void peer_fin(struct fx *fx, xt_time_t t)
{
	seg_in(fx, t, .flags = XT_TH_FIN | XT_TH_ACK, .seq = fx->peer_seq, .ack = fx->peer_ack);
	fx->peer_seq++;
}

void peer_ack(struct fx *fx, xt_time_t t, uint32_t ack)
{
	fx->peer_ack = ack;
	seg_in(fx, t, .flags = XT_TH_ACK, .seq = fx->peer_seq, .ack = ack);
}

void peer_ack_all(struct fx *fx, xt_time_t t) { peer_ack(fx, t, fx->our_nxt); }

void peer_ack_win(struct fx *fx, xt_time_t t, uint32_t ack, uint32_t wnd_bytes)
{
	fx->peer.wnd = wnd_bytes;
	peer_ack(fx, t, ack);
}

void peer_rst(struct fx *fx, xt_time_t t, uint32_t seq)
{
	seg_in(fx, t, .flags = XT_TH_RST, .seq = seq);
}

/* ------------------------------------------------------------------ */
/* lifecycle and time */

void fx_default_cfg(struct xt_stack_cfg *cfg)
{
	xt_stack_cfg_defaults(cfg);
	memcpy(cfg->mac, fx_our_mac, 6);
	cfg->ip = FX_OUR_IP;
	cfg->netmask = FX_NETMASK;
	cfg->gateway = 0;
	cfg->secret[0] = 0x0123456789abcdefull;
	cfg->secret[1] = 0x0f1e2d3c4b5a6978ull;
}

static void conn_reset(struct fx *fx)
{
	fx->s = -1;
	fx->ls = -1;
	fx->peer_ip = FX_PEER_IP;
	fx->our_port = 0;
	fx->peer_port = FX_REMOTE_PORT;
	fx->our_iss = fx->peer_iss = 0;
	fx->peer_seq = fx->peer_ack = fx->our_nxt = 0;
	fx->ws_on = fx->sack_on = fx->ts_on = false;
	fx->our_ws = 0;
	fx->our_mss = 0;
	fx->our_tsval = fx->peer_tsval = 0;
	fx->app_tx_off = 0;
	fx->tx_pattern = true;
	memset(&fx->our_syn, 0, sizeof fx->our_syn);
}

static void fx_start(struct fx *fx, const struct xt_stack_cfg *cfg)
{
	if (cfg)
		fx->cfg = *cfg;
	else
		fx_default_cfg(&fx->cfg);
	memcpy(fx->cfg.mac, fx_our_mac, 6);
	fx->cfg.ip = FX_OUR_IP;
	fx->cfg.netmask = FX_NETMASK;
	fx->cfg.tx = fx_tx;
	fx->cfg.tx_ctx = fx;
	if (fx->cfg.rx_hold_window) {
		fx->cfg.rx_hold = fx_rx_hold;
		fx->cfg.rx_release = fx_rx_release;
		fx->cfg.rx_ctx = fx;
		fx->rx_next_ref = 1;
	}
	if (!fx->cfg.on_event) {
		fx->cfg.on_event = fx_on_event;
		fx->cfg.event_ctx = fx;
	}
	memset(fx->ev_last, 0, sizeof fx->ev_last);
	memset(fx->ev_calls, 0, sizeof fx->ev_calls);
	fx->now = 0;
	fx->st = xt_stack_new(&fx->cfg, FX_T0);
	if (!fx->st) {
		print_error("xt_stack_new failed\n");
		abort();
	}
	if (xt_arp_add(fx->st, FX_PEER_IP, fx_peer_mac, FX_T0) < 0 ||
	    xt_arp_add(fx->st, FX_OTHER_IP, fx_other_mac, FX_T0) < 0) {
		print_error("xt_arp_add failed\n");
		abort();
	}
	fx->peer = (struct fx_peer){
		.mss = 1460, .ws = -1, .sack_perm = false, .ts = false,
		.wnd = 65535, .iss = FX_PEER_ISS, .rtt = XT_MS(100),
	};
	conn_reset(fx);
	fx->passive = false;
	xt_stack_flush(fx->st);
}

struct fx *fx_new(const struct xt_stack_cfg *cfg)
{
	struct fx *fx = calloc(1, sizeof *fx);
	if (!fx)
		abort();
	fx_start(fx, cfg);
	return fx;
}

static void fx_stop(struct fx *fx)
{
	if (fx->st)
		xt_stack_free(fx->st);
	fx->st = NULL;
	for (size_t i = 0; i < fx->rx_cap; i++)
		free(fx->rx_buf[i]);
	free(fx->rx_buf);
	free(fx->rx_kept);
	fx->rx_buf = NULL;
	fx->rx_kept = NULL;
	fx->rx_cap = 0;
	fx->rx_holds = fx->rx_releases = 0;
	while (fx->qlen) {
		free(fx->q[fx->qhead].data);
		fx->qhead = (fx->qhead + 1) % fx->qcap;
		fx->qlen--;
	}
	fx->qhead = 0;
}

void fx_free(struct fx *fx)
{
	if (!fx)
		return;
	fx_stop(fx);
	free(fx->q);
	free(fx);
}

void fx_restart(struct fx *fx, const struct xt_stack_cfg *cfg)
{
	fx_stop(fx);
	fx_start(fx, cfg);
}

int fx_setup(void **state)
{
	*state = fx_new(NULL);
	return 0;
}

int fx_teardown(void **state)
{
	fx_free(*state);
	*state = NULL;
	return 0;
}

void fx_flush(struct fx *fx) { xt_stack_flush(fx->st); }

xt_time_t fx_next_timer(const struct fx *fx)
{
	xt_time_t d = xt_stack_next_deadline(fx->st);
	if (d == XT_TIME_NEVER)
		return d;
	return d < FX_T0 ? 0 : d - FX_T0;
}

void fx_run_(struct fx *fx, xt_time_t t, const char *file, int line)
{
	if (t < fx->now)
		fx_fail_(fx, file, line, "test time goes backwards: %.3f ms -> %.3f ms", fx->now / 1e6, t / 1e6);
	unsigned stuck = 0;
	for (;;) {
		xt_time_t d = xt_stack_next_deadline(fx->st);
		if (d == XT_TIME_NEVER || d > FX_T0 + t)
			break;
		xt_time_t at = d < FX_T0 + fx->now ? FX_T0 + fx->now : d;
		if (at - FX_T0 == fx->now) {
			if (++stuck > 10000)
				fx_fail_(fx, file, line, "engine deadline stuck at %.3f ms (polling does not move it)",
					 fx->now / 1e6);
		} else {
			stuck = 0;
		}
		fx->now = at - FX_T0;
		xt_stack_poll(fx->st, at);
		xt_stack_flush(fx->st);
	}
	fx->now = t;
	xt_stack_poll(fx->st, FX_T0 + t);
	xt_stack_flush(fx->st);
}

/* ------------------------------------------------------------------ */
/* the application */

const struct xt_counters *fx_cnt(const struct fx *fx) { return xt_stack_counters(fx->st); }

long app_send_flags(struct fx *fx, xt_time_t t, const void *buf, size_t len, int flags)
{
	fx_run(fx, t);
	long r = xt_tcp_send(fx->st, fx->s, buf, len, flags, FX_T0 + t);
	xt_stack_flush(fx->st);
	fx->tx_pattern = false;
	return r;
}

long app_send(struct fx *fx, xt_time_t t, const void *buf, size_t len)
{
	return app_send_flags(fx, t, buf, len, 0);
}

long app_send_n(struct fx *fx, xt_time_t t, size_t n)
{
	uint8_t *buf = malloc(n ? n : 1);
	if (!buf)
		abort();
	pat_fill(buf, (uint32_t)n, fx->app_tx_off, PAT_OURS);
	fx_run(fx, t);
	long r = xt_tcp_send(fx->st, fx->s, buf, n, 0, FX_T0 + t);
	xt_stack_flush(fx->st);
	if (r > 0)
		fx->app_tx_off += (uint32_t)r;
	free(buf);
	return r;
}

long app_recv(struct fx *fx, xt_time_t t, void *buf, size_t len, int flags)
{
	fx_run(fx, t);
	long r = xt_tcp_recv(fx->st, fx->s, buf, len, flags, FX_T0 + t);
	xt_stack_flush(fx->st);
	return r;
}

int app_shutdown(struct fx *fx, xt_time_t t, int how)
{
	fx_run(fx, t);
	int r = xt_tcp_shutdown(fx->st, fx->s, how, FX_T0 + t);
	xt_stack_flush(fx->st);
	return r;
}

int app_close(struct fx *fx, xt_time_t t)
{
	fx_run(fx, t);
	int r = xt_tcp_close(fx->st, fx->s, FX_T0 + t);
	xt_stack_flush(fx->st);
	fx->s = -1;
	return r;
}

int app_abort(struct fx *fx, xt_time_t t)
{
	fx_run(fx, t);
	int r = xt_tcp_abort(fx->st, fx->s, FX_T0 + t);
	xt_stack_flush(fx->st);
	fx->s = -1;
	return r;
}

int app_setopt(struct fx *fx, xt_time_t t, int opt, int val)
{
	fx_run(fx, t);
	int r = xt_tcp_setopt(fx->st, fx->s, opt, val, FX_T0 + t);
	xt_stack_flush(fx->st);
	return r;
}

int app_getopt(struct fx *fx, int opt)
{
	int v = 0;
	int r = xt_tcp_getopt(fx->st, fx->s, opt, &v);
	if (r < 0)
		fx_fail_(fx, __FILE__, __LINE__, "xt_tcp_getopt(%d) failed: %d", opt, r);
	return v;
}

int app_state(struct fx *fx) { return xt_tcp_state(fx->st, fx->s); }
uint32_t app_events(struct fx *fx) { return xt_tcp_events(fx->st, fx->s); }

struct xt_tcp_info app_info(struct fx *fx)
{
	struct xt_tcp_info ti;
	memset(&ti, 0, sizeof ti);
	int r = xt_tcp_info(fx->st, fx->s, &ti, FX_T0 + fx->now);
	if (r < 0)
		fx_fail_(fx, __FILE__, __LINE__, "xt_tcp_info failed: %d", r);
	return ti;
}

/* ------------------------------------------------------------------ */
/* expectations */

void expect_none_(struct fx *fx, const char *file, int line)
{
	if (fx->qlen)
		fx_fail_(fx, file, line, "expected no output, but %zu frame(s) were sent", fx->qlen);
}

const struct seg *expect_next_(struct fx *fx, const char *file, int line)
{
	if (!fx->qlen)
		fx_fail_(fx, file, line, "expected a segment, but nothing was sent");
	fx_pop(fx, &fx->last);
	const struct seg *s = &fx->last;
	char b[512];
	if (!s->valid || !s->is_tcp)
		fx_fail_(fx, file, line, "expected a TCP segment, got %s", seg_str(s, b, sizeof b));
	if (memcmp(s->dst_mac, fx_peer_mac, 6) || memcmp(s->src_mac, fx_our_mac, 6))
		fx_fail_(fx, file, line, "wrong MAC addresses on %s", seg_str(s, b, sizeof b));
	if (s->src_ip != FX_OUR_IP || s->dst_ip != fx->peer_ip || s->dport != fx->peer_port ||
	    (fx->our_port && s->sport != fx->our_port))
		fx_fail_(fx, file, line, "segment of another connection: %s (expected %u > %u)",
			 seg_str(s, b, sizeof b), fx->our_port, fx->peer_port);
	return s;
}

const struct seg *expect_seg_(struct fx *fx, uint8_t flags, uint32_t seq, uint32_t ack, const char *file, int line)
{
	const struct seg *s = expect_next_(fx, file, line);
	char b[512];
	if ((s->flags & (uint8_t)~XT_TH_PSH) != (flags & (uint8_t)~XT_TH_PSH) || s->seq != seq ||
	    ((flags & XT_TH_ACK) && s->ack != ack))
		fx_fail_(fx, file, line, "expected flags 0x%02x seq %u ack %u, got %s", flags, seq,
			 (flags & XT_TH_ACK) ? ack : 0, seg_str(s, b, sizeof b));
	return s;
}

const struct seg *expect_ack_(struct fx *fx, uint32_t seq, uint32_t ack, const char *file, int line)
{
	const struct seg *s = expect_seg_(fx, XT_TH_ACK, seq, ack, file, line);
	char b[512];
	if (s->len)
		fx_fail_(fx, file, line, "expected a pure ACK, got %s", seg_str(s, b, sizeof b));
	return s;
}

const struct seg *expect_data_(struct fx *fx, uint32_t seq, uint32_t len, const char *file, int line)
{
	const struct seg *s = expect_next_(fx, file, line);
	char b[512];
	if ((s->flags & (uint8_t)~XT_TH_PSH) != XT_TH_ACK || s->seq != seq || s->len != len ||
	    s->ack != fx->peer_seq)
		fx_fail_(fx, file, line, "expected data seq %u len %u ack %u, got %s", seq, len, fx->peer_seq,
			 seg_str(s, b, sizeof b));
	if (fx->tx_pattern && !pat_check(s->data, s->len, s->seq - fx->our_iss - 1, PAT_OURS))
		fx_fail_(fx, file, line, "payload bytes differ from what the application sent: %s",
			 seg_str(s, b, sizeof b));
	return s;
}

const struct seg *expect_only_(struct fx *fx, uint8_t flags, uint32_t seq, uint32_t ack, const char *file, int line)
{
	const struct seg *s = expect_seg_(fx, flags, seq, ack, file, line);
	expect_none_(fx, file, line);
	return s;
}

const struct seg *expect_rst_(struct fx *fx, uint32_t seq, const char *file, int line)
{
	const struct seg *s = expect_next_(fx, file, line);
	char b[512];
	uint8_t f = s->flags & (uint8_t)~XT_TH_PSH;
	if (!((f == XT_TH_RST) || (f == (XT_TH_RST | XT_TH_ACK) && s->ack == fx->peer_seq)) || s->seq != seq ||
	    s->len)
		fx_fail_(fx, file, line, "expected RST seq %u (or RST|ACK ack %u), got %s", seq, fx->peer_seq,
			 seg_str(s, b, sizeof b));
	return s;
}

const struct seg *expect_tcp_(struct fx *fx, const char *file, int line)
{
	if (!fx->qlen)
		fx_fail_(fx, file, line, "expected a segment, but nothing was sent");
	fx_pop(fx, &fx->last);
	const struct seg *s = &fx->last;
	char b[512];
	if (!s->valid || !s->is_tcp || s->src_ip != FX_OUR_IP)
		fx_fail_(fx, file, line, "expected a TCP segment from us, got %s", seg_str(s, b, sizeof b));
	return s;
}

void expect_state_(struct fx *fx, int sock, int state, const char *file, int line)
{
	int got = xt_tcp_state(fx->st, sock);
	if (got != state)
		fx_fail_(fx, file, line, "expected state %s (%d), socket %d is in %s (%d)", xt_state_name(state),
			 state, sock, got > 0 ? xt_state_name(got) : "?", got);
}

/* ------------------------------------------------------------------ */
/* fixtures */

static void negotiate(struct fx *fx, const struct seg *ours)
{
	fx->our_syn = *ours;
	fx->our_mss = ours->mss;
	fx->our_ws = ours->ws;
	fx->ws_on = (ours->opts & OPT_WS) && fx->peer.ws >= 0;
	fx->sack_on = (ours->opts & OPT_SACK_PERM) && fx->peer.sack_perm;
	fx->ts_on = (ours->opts & OPT_TS) && fx->peer.ts;
}

static uint8_t peer_syn_opts(const struct fx *fx)
{
	return (uint8_t)((fx->peer.mss ? OPT_MSS : 0) | (fx->peer.ws >= 0 ? OPT_WS : 0) |
			 (fx->peer.sack_perm ? OPT_SACK_PERM : 0) | (fx->peer.ts ? OPT_TS : 0));
}

int fx_listen(struct fx *fx, uint16_t port, int backlog)
{
	int ls = xt_tcp_open(fx->st);
	if (ls < 0)
		fx_fail_(fx, __FILE__, __LINE__, "xt_tcp_open: %d", ls);
	int r = xt_tcp_bind(fx->st, ls, 0, port);
	if (r < 0)
		fx_fail_(fx, __FILE__, __LINE__, "xt_tcp_bind(%u): %d", port, r);
	r = xt_tcp_listen(fx->st, ls, backlog);
	if (r < 0)
		fx_fail_(fx, __FILE__, __LINE__, "xt_tcp_listen: %d", r);
	xt_stack_flush(fx->st);
	fx->ls = ls;
	return ls;
}

xt_time_t syn_sent(struct fx *fx)
{
	xt_time_t t = fx->now;
	int ls = fx->ls;
	conn_reset(fx);
	fx->ls = ls;
	fx->s = xt_tcp_open(fx->st);
	if (fx->s < 0)
		fx_fail_(fx, __FILE__, __LINE__, "xt_tcp_open: %d", fx->s);
	fx_run(fx, t);
	int r = xt_tcp_connect(fx->st, fx->s, FX_PEER_IP, FX_REMOTE_PORT, FX_T0 + t);
	xt_stack_flush(fx->st);
	if (r != -EINPROGRESS)
		fx_fail_(fx, __FILE__, __LINE__, "xt_tcp_connect returned %d, expected -EINPROGRESS", r);
	const struct seg *syn = expect_next(fx);
	char b[512];
	if (syn->flags != XT_TH_SYN || syn->len)
		fx_fail_(fx, __FILE__, __LINE__, "expected a bare SYN, got %s", seg_str(syn, b, sizeof b));
	fx->our_port = syn->sport;
	fx->our_iss = syn->seq;
	fx->our_nxt = syn->seq + 1;
	fx->our_tsval = syn->tsval;
	negotiate(fx, syn);
	expect_none(fx);
	fx->peer_iss = fx->peer.iss;
	fx->peer_seq = fx->peer_iss;
	fx->peer_ack = fx->our_iss + 1;
	expect_state(fx, XT_SYN_SENT);
	return t;
}

xt_time_t established_active(struct fx *fx)
{
	xt_time_t t = syn_sent(fx) + fx->peer.rtt;
	seg_in(fx, t, .flags = XT_TH_SYN | XT_TH_ACK, .seq = fx->peer_iss, .ack = fx->our_iss + 1,
	       .opts = peer_syn_opts(fx), .mss = fx->peer.mss, .ws = (uint8_t)(fx->peer.ws < 0 ? 0 : fx->peer.ws),
	       .tsval = fx->peer.ts ? peer_tsval_at(fx, t) : 0, .tsecr = fx->peer.ts ? fx->our_syn.tsval : 0);
	fx->peer_seq = fx->peer_iss + 1;
	expect_ack(fx, fx->our_iss + 1, fx->peer_iss + 1);
	expect_none(fx);
	expect_state(fx, XT_ESTABLISHED);
	return t;
}

xt_time_t established_passive(struct fx *fx)
{
	xt_time_t t = fx->now;
	int ls = fx->ls;
	conn_reset(fx);
	fx->ls = ls >= 0 ? ls : fx_listen(fx, FX_LISTEN_PORT, 16);
	fx->our_port = FX_LISTEN_PORT;
	fx->peer_port = FX_PEER_PORT;
	fx->peer_iss = fx->peer.iss;
	seg_in(fx, t, .flags = XT_TH_SYN, .seq = fx->peer_iss, .opts = peer_syn_opts(fx), .mss = fx->peer.mss,
	       .ws = (uint8_t)(fx->peer.ws < 0 ? 0 : fx->peer.ws), .tsval = fx->peer.ts ? peer_tsval_at(fx, t) : 0);
	const struct seg *sa = expect_next(fx);
	char b[512];
	if (sa->flags != (XT_TH_SYN | XT_TH_ACK) || sa->ack != fx->peer_iss + 1 || sa->len)
		fx_fail_(fx, __FILE__, __LINE__, "expected SYN-ACK acking %u, got %s", fx->peer_iss + 1,
			 seg_str(sa, b, sizeof b));
	fx->our_iss = sa->seq;
	fx->our_nxt = sa->seq + 1;
	fx->our_tsval = sa->tsval;
	negotiate(fx, sa);
	expect_none(fx);
	t += fx->peer.rtt;
	fx->peer_seq = fx->peer_iss + 1;
	fx->peer_ack = fx->our_iss + 1;
	seg_in(fx, t, .flags = XT_TH_ACK, .seq = fx->peer_seq, .ack = fx->peer_ack);
	expect_none(fx);
	uint32_t ip = 0;
	uint16_t port = 0;
	fx->s = xt_tcp_accept(fx->st, fx->ls, &ip, &port);
	xt_stack_flush(fx->st);
	if (fx->s < 0)
		fx_fail_(fx, __FILE__, __LINE__, "xt_tcp_accept after the handshake returned %d", fx->s);
	if (ip != FX_PEER_IP || port != FX_PEER_PORT)
		fx_fail_(fx, __FILE__, __LINE__, "accept reports peer %08x:%u", ip, port);
	expect_state(fx, XT_ESTABLISHED);
	return t;
}

xt_time_t established(struct fx *fx) { return fx->passive ? established_passive(fx) : established_active(fx); }

xt_time_t syn_recv(struct fx *fx)
{
	xt_time_t t = syn_sent(fx) + fx->peer.rtt / 2;
	seg_in(fx, t, .flags = XT_TH_SYN, .seq = fx->peer_iss, .opts = peer_syn_opts(fx), .mss = fx->peer.mss,
	       .ws = (uint8_t)(fx->peer.ws < 0 ? 0 : fx->peer.ws), .tsval = fx->peer.ts ? peer_tsval_at(fx, t) : 0);
	fx->peer_seq = fx->peer_iss + 1;
	expect_seg(fx, XT_TH_SYN | XT_TH_ACK, fx->our_iss, fx->peer_iss + 1);
	expect_none(fx);
	expect_state(fx, XT_SYN_RECV);
	return t;
}

xt_time_t fin_wait_1(struct fx *fx)
{
	xt_time_t t = established(fx) + XT_MS(1);
	uint32_t fin = fx->our_nxt;
	int r = app_shutdown(fx, t, XT_SHUT_WR);
	if (r < 0)
		fx_fail_(fx, __FILE__, __LINE__, "shutdown(WR) returned %d", r);
	expect_seg(fx, XT_TH_FIN | XT_TH_ACK, fin, fx->peer_seq);
	expect_none(fx);
	expect_state(fx, XT_FIN_WAIT1);
	return t;
}

xt_time_t fin_wait_2(struct fx *fx)
{
	xt_time_t t = fin_wait_1(fx) + fx->peer.rtt;
	peer_ack(fx, t, fx->our_nxt);
	expect_none(fx);
	expect_state(fx, XT_FIN_WAIT2);
	return t;
}

xt_time_t time_wait(struct fx *fx)
{
	xt_time_t t = fin_wait_2(fx) + XT_MS(1);
	peer_fin(fx, t);
	expect_ack(fx, fx->our_nxt, fx->peer_seq);
	expect_none(fx);
	expect_state(fx, XT_TIME_WAIT);
	return t;
}

xt_time_t close_wait(struct fx *fx)
{
	xt_time_t t = established(fx) + XT_MS(1);
	peer_fin(fx, t);
	/* The FIN may be acknowledged at once or after a delayed-ACK interval. */
	fx_run(fx, t + XT_MS(200));
	expect_ack(fx, fx->our_nxt, fx->peer_seq);
	expect_none(fx);
	expect_state(fx, XT_CLOSE_WAIT);
	return fx->now;
}

xt_time_t last_ack(struct fx *fx)
{
	xt_time_t t = close_wait(fx) + XT_MS(1);
	uint32_t fin = fx->our_nxt;
	int r = app_shutdown(fx, t, XT_SHUT_WR);
	if (r < 0)
		fx_fail_(fx, __FILE__, __LINE__, "shutdown(WR) returned %d", r);
	expect_seg(fx, XT_TH_FIN | XT_TH_ACK, fin, fx->peer_seq);
	expect_none(fx);
	expect_state(fx, XT_LAST_ACK);
	return t;
}

xt_time_t closing(struct fx *fx)
{
	xt_time_t t = fin_wait_1(fx) + XT_MS(1);
	/* The peer's FIN crossed ours: it does not acknowledge our FIN. */
	peer_fin(fx, t);
	expect_ack(fx, fx->our_nxt, fx->peer_seq);
	expect_none(fx);
	expect_state(fx, XT_CLOSING);
	return t;
}
