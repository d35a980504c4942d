/* Wire formats: offsets and byte-order-explicit accessors.
 *
 * Frames are read and written through these helpers only, never by casting a
 * byte pointer to a struct: input is untrusted and may be unaligned.
 * rd16/rd32 read big-endian (network order) fields, wr16/wr32 write them.
 */
#ifndef XT_WIRE_H
#define XT_WIRE_H

#include <stdint.h>
#include <string.h>

static inline uint16_t xt_rd16(const uint8_t *p) { return (uint16_t)((p[0] << 8) | p[1]); }
static inline uint32_t xt_rd32(const uint8_t *p)
{
	return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3];
}
static inline void xt_wr16(uint8_t *p, uint16_t v) { p[0] = (uint8_t)(v >> 8); p[1] = (uint8_t)v; }
static inline void xt_wr32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)(v >> 24); p[1] = (uint8_t)(v >> 16); p[2] = (uint8_t)(v >> 8); p[3] = (uint8_t)v;
}

/* Ethernet II */
#define XT_ETH_HLEN 14
#define XT_ETH_DST 0
#define XT_ETH_SRC 6
#define XT_ETH_TYPE_be16 12
#define XT_ETHERTYPE_IPV4 0x0800
#define XT_ETHERTYPE_ARP 0x0806

/* ARP for IPv4 over Ethernet (RFC 826) */
#define XT_ARP_LEN 28
#define XT_ARP_HTYPE_be16 0
#define XT_ARP_PTYPE_be16 2
#define XT_ARP_HLEN 4
#define XT_ARP_PLEN 5
#define XT_ARP_OP_be16 6
#define XT_ARP_SHA 8
#define XT_ARP_SPA_be32 14
#define XT_ARP_THA 18
#define XT_ARP_TPA_be32 24
#define XT_ARP_OP_REQUEST 1
#define XT_ARP_OP_REPLY 2

/* IPv4 (RFC 791) */
#define XT_IP_HLEN 20
#define XT_IP_VHL 0
#define XT_IP_TOS 1
#define XT_IP_LEN_be16 2
#define XT_IP_ID_be16 4
#define XT_IP_FRAG_be16 6
#define XT_IP_TTL 8
#define XT_IP_PROTO 9
#define XT_IP_CSUM_be16 10
#define XT_IP_SRC_be32 12
#define XT_IP_DST_be32 16
#define XT_IP_DF 0x4000
#define XT_IP_MF 0x2000
#define XT_IP_OFFMASK 0x1fff
#define XT_IPPROTO_ICMP 1
#define XT_IPPROTO_TCP 6

/* ICMP (RFC 792) */
#define XT_ICMP_HLEN 8
#define XT_ICMP_TYPE 0
#define XT_ICMP_CODE 1
#define XT_ICMP_CSUM_be16 2
#define XT_ICMP_ECHO_REPLY 0
#define XT_ICMP_DEST_UNREACH 3
#define XT_ICMP_SOURCE_QUENCH 4
#define XT_ICMP_ECHO 8
#define XT_ICMP_TIME_EXCEEDED 11
#define XT_ICMP_PARAMPROB 12
#define XT_ICMP_FRAG_NEEDED 4 /* code of DEST_UNREACH */

/* TCP (RFC 9293) */
#define XT_TCP_HLEN 20
#define XT_TCP_SPORT_be16 0
#define XT_TCP_DPORT_be16 2
#define XT_TCP_SEQ_be32 4
#define XT_TCP_ACK_be32 8
#define XT_TCP_OFF 12 /* data offset in the high nibble */
#define XT_TCP_FLAGS 13
#define XT_TCP_WIN_be16 14
#define XT_TCP_CSUM_be16 16
#define XT_TCP_URP_be16 18
#define XT_TH_FIN 0x01
#define XT_TH_SYN 0x02
#define XT_TH_RST 0x04
#define XT_TH_PSH 0x08
#define XT_TH_ACK 0x10
#define XT_TH_URG 0x20
#define XT_TH_ECE 0x40
#define XT_TH_CWR 0x80
#define XT_TCPOPT_EOL 0
#define XT_TCPOPT_NOP 1
#define XT_TCPOPT_MSS 2
#define XT_TCPOPT_WSCALE 3
#define XT_TCPOPT_SACK_PERM 4
#define XT_TCPOPT_SACK 5
#define XT_TCPOPT_TS 8

#endif
