/* libFuzzer target: one arbitrary frame into long-lived engines.
 *
 * Covers the Ethernet, ARP, IPv4, ICMP and TCP parsers and whatever they
 * reach with one frame: listeners (SYN queue, SYN cookies), an active open in
 * SYN_SENT, ICMP echo and errors, ARP replies and learning.
 *
 * Two engines, created once:
 *   eth: Ethernet frames, checksums verified by the engine.  Gets the input.
 *   raw: bare IPv4 (no_link_header) with rx_csum_verified = 1, so mutated
 *        frames reach TCP/ICMP without passing a checksum.  Gets the input
 *        minus its first 14 bytes (the corpus is Ethernet frames).
 * Both listen on port 80 and keep an active open towards 10.0.0.2:80.  Each
 * run advances virtual time by 1 ms, so SYN_RECV and TIME_WAIT entries expire
 * as they would and the socket table does not fill up for good.
 *
 * Oracle besides the sanitizers: every frame the engine emits must be well
 * formed (lengths, our addresses, valid IP/TCP/ICMP checksums, sane flags).
 */
#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../stack/xtcp.h"
#include "../../stack/wire.h"

#define US_IP 0x0a000001u   /* 10.0.0.1 */
#define PEER_IP 0x0a000002u /* 10.0.0.2 */
#define MTU 1500

static const uint8_t US_MAC[6] = { 0x02, 0x00, 0x00, 0x00, 0x00, 0x01 };
static const uint8_t PEER_MAC[6] = { 0x02, 0x00, 0x00, 0x00, 0x00, 0x02 };

struct eng {
	const char *name;
	struct xt_stack *st;
	int raw; /* no link header */
	int lsock, asock;
};

static struct eng engines[2] = { { .name = "eth", .raw = 0 }, { .name = "raw", .raw = 1 } };
static xt_time_t now = XT_SEC(1000);

/* ---- output oracle ---- */

static void bad(const struct eng *e, const char *why, const uint8_t *f, uint32_t len)
{
	fprintf(stderr, "fuzz_frame: engine %s emitted a bad frame (%s), %u bytes:\n", e->name, why,
		len);
	for (uint32_t i = 0; i < len && i < 128; i++)
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

static void check_tcp_opts(const struct eng *e, const uint8_t *f, uint32_t flen, const uint8_t *o,
			   uint32_t n)
{
	for (uint32_t i = 0; i < n;) {
		uint8_t k = o[i];
		if (k == XT_TCPOPT_EOL)
			break;
		if (k == XT_TCPOPT_NOP) {
			i++;
			continue;
		}
		if (i + 1 >= n || o[i + 1] < 2 || i + o[i + 1] > n)
			bad(e, "malformed TCP option", f, flen);
		uint8_t l = o[i + 1];
		if ((k == XT_TCPOPT_MSS && l != 4) || (k == XT_TCPOPT_WSCALE && l != 3) ||
		    (k == XT_TCPOPT_SACK_PERM && l != 2) || (k == XT_TCPOPT_TS && l != 10) ||
		    (k == XT_TCPOPT_SACK && (l < 10 || (l - 2) % 8)))
			bad(e, "TCP option with a wrong length", f, flen);
		if (k == XT_TCPOPT_WSCALE && o[i + 2] > 14)
			bad(e, "window scale above 14", f, flen);
		i += l;
	}
}

static void check_frame(const struct eng *e, const uint8_t *f, uint32_t len)
{
	const uint8_t *ip = f;
	uint32_t iplen = len;

	if (!e->raw) {
		if (len < XT_ETH_HLEN)
			bad(e, "short Ethernet frame", f, len);
		if (memcmp(f + XT_ETH_SRC, US_MAC, 6) != 0)
			bad(e, "source MAC is not ours", f, len);
		uint16_t type = xt_rd16(f + XT_ETH_TYPE_be16);
		if (type == XT_ETHERTYPE_ARP) {
			const uint8_t *a = f + XT_ETH_HLEN;
			if (len < XT_ETH_HLEN + XT_ARP_LEN)
				bad(e, "short ARP", f, len);
			uint16_t op = xt_rd16(a + XT_ARP_OP_be16);
			if (xt_rd16(a + XT_ARP_HTYPE_be16) != 1 ||
			    xt_rd16(a + XT_ARP_PTYPE_be16) != XT_ETHERTYPE_IPV4 ||
			    a[XT_ARP_HLEN] != 6 || a[XT_ARP_PLEN] != 4 ||
			    (op != XT_ARP_OP_REQUEST && op != XT_ARP_OP_REPLY))
				bad(e, "bad ARP header", f, len);
			if (xt_rd32(a + XT_ARP_SPA_be32) != US_IP || memcmp(a + XT_ARP_SHA, US_MAC, 6))
				bad(e, "ARP not from us", f, len);
			return;
		}
		if (type != XT_ETHERTYPE_IPV4)
			bad(e, "unknown ethertype sent", f, len);
		ip = f + XT_ETH_HLEN;
		iplen = len - XT_ETH_HLEN;
	}
	if (iplen < XT_IP_HLEN)
		bad(e, "short IP", f, len);
	uint32_t hl = (uint32_t)(ip[XT_IP_VHL] & 0x0f) * 4;
	uint32_t tot = xt_rd16(ip + XT_IP_LEN_be16);
	if (ip[XT_IP_VHL] >> 4 != 4 || hl < XT_IP_HLEN || tot < hl || tot > iplen || tot > MTU)
		bad(e, "bad IP header or length", f, len);
	if (csum_fold(csum_add(0, ip, hl)) != 0)
		bad(e, "bad IP checksum", f, len);
	if (xt_rd32(ip + XT_IP_SRC_be32) != US_IP)
		bad(e, "IP source is not ours", f, len);
	if (xt_rd16(ip + XT_IP_FRAG_be16) & (XT_IP_MF | XT_IP_OFFMASK))
		bad(e, "fragment sent", f, len);
	const uint8_t *l4 = ip + hl;
	uint32_t l4len = tot - hl;
	uint32_t dst = xt_rd32(ip + XT_IP_DST_be32);
	if (ip[XT_IP_PROTO] == XT_IPPROTO_TCP) {
		if (l4len < XT_TCP_HLEN)
			bad(e, "short TCP", f, len);
		uint32_t doff = (uint32_t)(l4[XT_TCP_OFF] >> 4) * 4;
		if (doff < XT_TCP_HLEN || doff > l4len)
			bad(e, "bad TCP data offset", f, len);
		uint32_t sum = csum_add(0, l4, l4len);
		sum += (US_IP >> 16) + (US_IP & 0xffff) + (dst >> 16) + (dst & 0xffff);
		sum += XT_IPPROTO_TCP + l4len;
		if (csum_fold(sum) != 0)
			bad(e, "bad TCP checksum", f, len);
		uint8_t fl = l4[XT_TCP_FLAGS];
		if ((fl & XT_TH_SYN) && (fl & (XT_TH_FIN | XT_TH_RST)))
			bad(e, "SYN with FIN or RST", f, len);
		if ((fl & XT_TH_RST) && ((fl & ~(XT_TH_RST | XT_TH_ACK)) || l4len != doff))
			bad(e, "RST with other flags or data", f, len);
		if (!(fl & (XT_TH_ACK | XT_TH_RST)) && !(fl & XT_TH_SYN))
			bad(e, "segment without ACK", f, len);
		check_tcp_opts(e, f, len, l4 + XT_TCP_HLEN, doff - XT_TCP_HLEN);
	} else if (ip[XT_IP_PROTO] == XT_IPPROTO_ICMP) {
		if (l4len < XT_ICMP_HLEN)
			bad(e, "short ICMP", f, len);
		if (csum_fold(csum_add(0, l4, l4len)) != 0)
			bad(e, "bad ICMP checksum", f, len);
	} else {
		bad(e, "unknown IP protocol sent", f, len);
	}
}

static int tx_cb(void *ctx, const struct xt_frame *frames, int n)
{
	const struct eng *e = ctx;
	for (int i = 0; i < n; i++)
		check_frame(e, frames[i].data, frames[i].len);
	return n;
}

/* ---- engines ---- */

static void reopen_active(struct eng *e)
{
	if (e->asock >= 0) {
		int s = xt_tcp_state(e->st, e->asock);
		if (s == XT_SYN_SENT || s == XT_ESTABLISHED)
			return;
		xt_tcp_close(e->st, e->asock, now);
	}
	e->asock = xt_tcp_open(e->st);
	if (e->asock >= 0)
		xt_tcp_connect(e->st, e->asock, PEER_IP, 80, now);
}

static void eng_init(struct eng *e)
{
	struct xt_stack_cfg cfg;
	xt_stack_cfg_defaults(&cfg);
	memcpy(cfg.mac, US_MAC, 6);
	cfg.ip = US_IP;
	cfg.netmask = 0xffffff00u;
	cfg.gateway = 0x0a0000feu;
	cfg.mtu = MTU;
	cfg.no_link_header = (uint8_t)e->raw;
	cfg.rx_csum_verified = (uint8_t)e->raw;
	cfg.max_sockets = 256;
	cfg.somaxconn = 16;
	cfg.rcvbuf = 32768;
	cfg.sndbuf = 32768;
	cfg.mem_limit = 16u << 20;
	cfg.arp_queue_max = 16;
	cfg.secret[0] = 0x0123456789abcdefull;
	cfg.secret[1] = 0xfedcba9876543210ull;
	cfg.tx = tx_cb;
	cfg.tx_ctx = e;
	e->st = xt_stack_new(&cfg, now);
	if (!e->st) {
		fprintf(stderr, "fuzz_frame: xt_stack_new failed\n");
		abort();
	}
	if (!e->raw)
		xt_arp_add(e->st, PEER_IP, PEER_MAC, now);
	e->lsock = xt_tcp_open(e->st);
	if (e->lsock < 0 || xt_tcp_bind(e->st, e->lsock, 0, 80) != 0 ||
	    xt_tcp_listen(e->st, e->lsock, 8) != 0) {
		fprintf(stderr, "fuzz_frame: listener setup failed\n");
		abort();
	}
	e->asock = -1;
	reopen_active(e);
}

/* The application side: take accepted connections, read, answer, close. */
static void serve(struct eng *e)
{
	uint8_t buf[2048];
	for (int k = 0; k < 4; k++) {
		int s = xt_tcp_accept(e->st, e->lsock, NULL, NULL);
		if (s < 0)
			break;
		long r = xt_tcp_recv(e->st, s, buf, sizeof(buf), 0, now);
		xt_tcp_send(e->st, s, "HTTP/1.0 200 OK\r\n\r\n", 19, 0, now);
		if (r > 0 && (buf[0] & 1))
			xt_tcp_shutdown(e->st, s, XT_SHUT_WR, now);
		xt_tcp_close(e->st, s, now);
	}
	if (e->asock >= 0) {
		long r = xt_tcp_recv(e->st, e->asock, buf, sizeof(buf), 0, now);
		(void)r;
	}
	reopen_active(e);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (!engines[0].st) {
		eng_init(&engines[0]);
		eng_init(&engines[1]);
	}
	now += XT_MS(1);

	xt_stack_input(engines[0].st, data, size, now);
	if (size >= XT_ETH_HLEN)
		xt_stack_input(engines[1].st, data + XT_ETH_HLEN, size - XT_ETH_HLEN, now);

	for (int i = 0; i < 2; i++) {
		struct eng *e = &engines[i];
		xt_stack_flush(e->st);
		serve(e);
		xt_stack_poll(e->st, now);
		xt_time_t d = xt_stack_next_deadline(e->st);
		if (d != XT_TIME_NEVER && d + XT_SEC(3600) < now) {
			fprintf(stderr, "fuzz_frame: engine %s deadline %llu far behind now %llu\n",
				e->name, (unsigned long long)d, (unsigned long long)now);
			abort();
		}
	}
	return 0;
}
