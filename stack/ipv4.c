/* Ethernet II demultiplexing and IPv4 (RFC 791, host rules of RFC 1122
 * section 3.2.1): validate, then hand TCP and ICMP a parsed struct xt_ip_rx.
 * We never fragment (DF on everything we send) and do not reassemble:
 * fragments are dropped and counted (a deliberate deviation from RFC 1122
 * 3.3.2; TCP's MSS keeps peers from fragmenting towards us).
 */
#include "xt_internal.h"

static bool mac_is_bcast(const uint8_t *m)
{
	return (m[0] & m[1] & m[2] & m[3] & m[4] & m[5]) == 0xff;
}

void xt_eth_input(struct xt_stack *st, const uint8_t *frame, uint32_t len, xt_time_t now)
{
	const uint8_t *dst = frame + XT_ETH_DST;

	if (len < XT_ETH_HLEN) {
		XT_CNT(st, drop_eth_short);
		return;
	}
	if (memcmp(dst, st->cfg.mac, 6) != 0 && !mac_is_bcast(dst)) {
		XT_CNT(st, drop_eth_not_for_us);
		return;
	}
	switch (xt_rd16(frame + XT_ETH_TYPE_be16)) {
	case XT_ETHERTYPE_IPV4:
		xt_ip_input(st, frame + XT_ETH_HLEN, len - XT_ETH_HLEN, now);
		break;
	case XT_ETHERTYPE_ARP:
		xt_arp_input(st, frame + XT_ETH_HLEN, len - XT_ETH_HLEN, now);
		break;
	default:
		XT_CNT(st, drop_eth_type);
		break;
	}
}

/* Martian sources (RFC 1122 3.2.1.3, RFC 1812 5.3.7): "this network" 0/8,
 * limited or directed broadcast, loopback, multicast, and our own address
 * (a spoof or a loop).  /31 (RFC 3021) and /32 subnets have no broadcast. */
static bool ip_src_bad(const struct xt_stack *st, uint32_t src)
{
	uint32_t mask = st->cfg.netmask;

	if ((src >> 24) == 0 || (src >> 24) == 127 || (src >> 28) == 0xe)
		return true;
	if (src == 0xffffffffu || src == st->cfg.ip)
		return true;
	return mask < 0xfffffffeu && src == (st->cfg.ip | ~mask);
}

/* Header checks of RFC 1122 3.2.1.1-3.2.1.2 in the order the counters are
 * documented.  Returns the datagram's total length, or 0 after counting the
 * drop. */
static uint32_t ip_check_header(struct xt_stack *st, const uint8_t *p, uint32_t len)
{
	uint32_t hlen, tot;

	if (len < XT_IP_HLEN) {
		XT_CNT(st, drop_ip_short);
		return 0;
	}
	if (p[XT_IP_VHL] >> 4 != 4) {
		XT_CNT(st, drop_ip_version);
		return 0;
	}
	hlen = (p[XT_IP_VHL] & 0xfu) * 4u;
	if (hlen < XT_IP_HLEN || hlen > len) {
		XT_CNT(st, drop_ip_hdrlen);
		return 0;
	}
	tot = xt_rd16(p + XT_IP_LEN_be16);
	if (tot < hlen || tot > len) {
		XT_CNT(st, drop_ip_len);
		return 0;
	}
	if (!st->rx_csum_ok && xt_csum_fold(xt_csum_add(0, p, hlen)) != 0) {
		XT_CNT(st, drop_ip_csum);
		return 0;
	}
	return tot;
}

/* pkt starts at the IPv4 header; len may include link-layer padding. */
void xt_ip_input(struct xt_stack *st, const uint8_t *pkt, uint32_t len, xt_time_t now)
{
	struct xt_ip_rx ip;
	uint32_t tot = ip_check_header(st, pkt, len);

	if (tot == 0)
		return;
	if (xt_rd16(pkt + XT_IP_FRAG_be16) & (XT_IP_MF | XT_IP_OFFMASK)) {
		XT_CNT(st, drop_ip_frag);
		return;
	}
	ip.dst = xt_rd32(pkt + XT_IP_DST_be32);
	ip.src = xt_rd32(pkt + XT_IP_SRC_be32);
	if (ip.dst != st->cfg.ip) {
		XT_CNT(st, drop_ip_not_for_us);
		return;
	}
	if (ip_src_bad(st, ip.src)) {
		XT_CNT(st, drop_ip_src);
		return;
	}
	ip.proto = pkt[XT_IP_PROTO];
	ip.ttl = pkt[XT_IP_TTL];
	ip.tos = pkt[XT_IP_TOS];
	ip.hdr = pkt;
	ip.hlen = (uint16_t)((pkt[XT_IP_VHL] & 0xfu) * 4u);
	/* Options (RFC 791 3.1) are skipped; the payload ends at the total
	 * length, which trims Ethernet padding. */
	ip.l4 = pkt + ip.hlen;
	ip.l4len = (uint16_t)(tot - ip.hlen);
	switch (ip.proto) {
	case XT_IPPROTO_TCP:
		xt_tcp_input(st, &ip, now);
		break;
	case XT_IPPROTO_ICMP:
		xt_icmp_input(st, &ip, now);
		break;
	default:
		XT_CNT(st, drop_ip_proto);
		break;
	}
}

int xt_ip_route(const struct xt_stack *st, uint32_t dst, uint32_t *nexthop)
{
	uint32_t mask = st->cfg.netmask;

	if ((dst & mask) == (st->cfg.ip & mask)) {
		*nexthop = dst;
		return 0;
	}
	if (st->cfg.gateway != 0) {
		*nexthop = st->cfg.gateway;
		return 0;
	}
	return -ENETUNREACH;
}

/* RFC 791 3.1 header without options.  DF is always set: we do PMTU
 * discovery (RFC 1191) instead of fragmenting, and for such atomic datagrams
 * the ID carries no meaning (RFC 6864 section 4), so a counter will do. */
static void ip_build(struct xt_stack *st, uint8_t *h, uint32_t tot, uint32_t src, uint32_t dst,
		     uint8_t proto)
{
	h[XT_IP_VHL] = 0x45;
	h[XT_IP_TOS] = 0;
	xt_wr16(h + XT_IP_LEN_be16, (uint16_t)tot);
	xt_wr16(h + XT_IP_ID_be16, st->ip_id++);
	xt_wr16(h + XT_IP_FRAG_be16, XT_IP_DF);
	h[XT_IP_TTL] = 64;
	h[XT_IP_PROTO] = proto;
	xt_wr16(h + XT_IP_CSUM_be16, 0);
	xt_wr32(h + XT_IP_SRC_be32, src);
	xt_wr32(h + XT_IP_DST_be32, dst);
	if (st->cfg.tx_csum_offload != XT_TX_CSUM_FULL)
		xt_wr16(h + XT_IP_CSUM_be16, xt_csum_fold(xt_csum_add(0, h, XT_IP_HLEN)));
}

int xt_ip_output(struct xt_stack *st, uint8_t *buf, uint32_t l4len, uint32_t src, uint32_t dst,
		 uint8_t proto, xt_time_t now)
{
	uint32_t l3 = xt_l3_off(st), tot = XT_IP_HLEN + l4len, nexthop;

	assert(l3 + tot - xt_tx_pay_len(st) <= XT_FRAME_MAX && tot <= 65535);
	if (st->cfg.no_link_header) {
		/* Point-to-point: everything leaves through the one link. */
		ip_build(st, buf, tot, src, dst, proto);
		xt_tx_commit(st, tot);
		return 0;
	}
	if (xt_ip_route(st, dst, &nexthop) < 0) {
		XT_CNT(st, drop_no_route);
		return -ENETUNREACH;
	}
	ip_build(st, buf + l3, tot, src, dst, proto);
	memcpy(buf + XT_ETH_SRC, st->cfg.mac, 6);
	xt_wr16(buf + XT_ETH_TYPE_be16, XT_ETHERTYPE_IPV4);
	return xt_arp_output(st, nexthop, buf, l3 + tot, now);
}
