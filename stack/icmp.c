/* ICMP for IPv4 (RFC 792, host rules of RFC 1122 section 3.2.2): we answer
 * echo requests and pass errors that quote one of our TCP segments to TCP.
 * Everything is bounds-checked against ip->l4len, which ipv4.c already
 * trimmed to the datagram's total length.
 */
#include "xt_internal.h"

/* RFC 792 "Echo or Echo Reply" / RFC 1122 3.2.2.6: the reply carries the
 * request's identifier, sequence number and all of its data.  Like Linux we
 * copy the request as is and change only the type. */
static void icmp_echo(struct xt_stack *st, const struct xt_ip_rx *ip, xt_time_t now)
{
	uint32_t off = xt_l4_off(st);
	uint8_t *buf, *m;

	if (off + ip->l4len > XT_FRAME_MAX || XT_IP_HLEN + ip->l4len > st->cfg.mtu) {
		/* Only an unfragmented request larger than our MTU gets here; the
		 * reply could not leave with DF set. */
		XT_CNT(st, drop_ip_len);
		return;
	}
	buf = xt_tx_buf(st);
	assert(buf != NULL);
	m = buf + off;
	memcpy(m, ip->l4, ip->l4len);
	m[XT_ICMP_TYPE] = XT_ICMP_ECHO_REPLY;
	xt_wr16(m + XT_ICMP_CSUM_be16, 0);
	xt_wr16(m + XT_ICMP_CSUM_be16, xt_csum_fold(xt_csum_add(0, m, ip->l4len)));
	if (xt_ip_output(st, buf, ip->l4len, st->cfg.ip, ip->src, XT_IPPROTO_ICMP, now) == 0)
		XT_CNT(st, icmp_tx_echo_reply);
}

/* The datagram an ICMP error quotes (RFC 792: its IP header plus at least
 * 64 bits of its data; RFC 1812 4.3.2.3 routers may quote more). */
struct icmp_quote {
	uint32_t src, dst;
	uint8_t proto;
	const uint8_t *l4;
	uint32_t l4len;
};

/* Parses the quoted header at q (qlen bytes).  Returns false after counting
 * the drop when it is truncated or not a datagram we could have sent. */
static bool icmp_parse_quote(struct xt_stack *st, const uint8_t *q, uint32_t qlen,
			     struct icmp_quote *out)
{
	uint32_t hlen;

	if (qlen < XT_IP_HLEN || q[XT_IP_VHL] >> 4 != 4 || (q[XT_IP_VHL] & 0xfu) < 5) {
		XT_CNT(st, drop_icmp_short);
		return false;
	}
	hlen = (q[XT_IP_VHL] & 0xfu) * 4u;
	if (qlen < hlen + 8) {
		XT_CNT(st, drop_icmp_short);
		return false;
	}
	/* A non-first fragment quotes no L4 header; we never send fragments. */
	if (xt_rd16(q + XT_IP_FRAG_be16) & XT_IP_OFFMASK) {
		XT_CNT(st, drop_ip_frag);
		return false;
	}
	out->src = xt_rd32(q + XT_IP_SRC_be32);
	out->dst = xt_rd32(q + XT_IP_DST_be32);
	out->proto = q[XT_IP_PROTO];
	out->l4 = q + hlen;
	out->l4len = qlen - hlen;
	if (out->src != st->cfg.ip) {
		XT_CNT(st, drop_ip_not_for_us); /* quotes a datagram we did not send */
		return false;
	}
	return true;
}

/* Destination unreachable, source quench, time exceeded, parameter problem:
 * RFC 1122 3.2.2 says they go to the transport protocol that sent the
 * quoted datagram, which decides soft vs hard (RFC 1122 4.2.3.9). */
static void icmp_error(struct xt_stack *st, const struct xt_ip_rx *ip, xt_time_t now)
{
	const uint8_t *m = ip->l4;
	uint8_t type = m[XT_ICMP_TYPE], code = m[XT_ICMP_CODE];
	uint16_t next_mtu = 0;
	struct icmp_quote q;

	if (type == XT_ICMP_DEST_UNREACH) {
		XT_CNT(st, icmp_unreach_rx);
		if (code == XT_ICMP_FRAG_NEEDED) {
			/* RFC 1191 section 4: next-hop MTU in the low 16 bits of the
			 * second word (0 from pre-RFC 1191 routers). */
			XT_CNT(st, icmp_frag_needed_rx);
			next_mtu = xt_rd16(m + 6);
		}
	}
	if (!icmp_parse_quote(st, m + XT_ICMP_HLEN, ip->l4len - XT_ICMP_HLEN, &q))
		return;
	if (q.proto != XT_IPPROTO_TCP) {
		XT_CNT(st, drop_ip_proto);
		return;
	}
	xt_tcp_icmp_error(st, q.src, q.dst, q.l4, q.l4len, type, code, next_mtu, now);
}

void xt_icmp_input(struct xt_stack *st, const struct xt_ip_rx *ip, xt_time_t now)
{
	if (ip->l4len < XT_ICMP_HLEN) {
		XT_CNT(st, drop_icmp_short);
		return;
	}
	/* RFC 1122 3.2.2: silently discard on a bad checksum.  rx_csum_verified
	 * covers IP and TCP only, so ICMP is always checked here. */
	if (xt_csum_fold(xt_csum_add(0, ip->l4, ip->l4len)) != 0) {
		XT_CNT(st, drop_icmp_csum);
		return;
	}
	XT_CNT(st, icmp_rx);
	switch (ip->l4[XT_ICMP_TYPE]) {
	case XT_ICMP_ECHO:
		icmp_echo(st, ip, now);
		break;
	case XT_ICMP_DEST_UNREACH:
	case XT_ICMP_SOURCE_QUENCH:
	case XT_ICMP_TIME_EXCEEDED:
	case XT_ICMP_PARAMPROB:
		icmp_error(st, ip, now);
		break;
	default:
		XT_CNT(st, drop_icmp_type);
		break;
	}
}
