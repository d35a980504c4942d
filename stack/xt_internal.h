/* Engine internals shared by the files of stack/.  Not installed. */
#ifndef XT_INTERNAL_H
#define XT_INTERNAL_H

#include <assert.h>
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "xtcp.h"
#include "wire.h"

#define XT_TX_BATCH 64
#define XT_FRAME_MAX 2048 /* one frame at MTU <= 1500 plus headers, rounded */

#define XT_CNT(st, name) ((st)->cnt.name++)

struct xt_sock;
struct xt_arp; /* arp.c */

/* A received IPv4 datagram after validation (ipv4.c), handed to TCP/ICMP. */
struct xt_ip_rx {
	uint32_t src, dst; /* host order */
	uint8_t proto, ttl, tos;
	const uint8_t *hdr; /* IP header */
	uint16_t hlen;
	const uint8_t *l4; /* payload, trimmed to the IP total length */
	uint16_t l4len;
};

/* A received frame kept in place (cfg.rx_hold_window): its TCP payload, not
 * yet read, queued on its socket behind the bytes in the socket's buffer. */
struct xt_held {
	const uint8_t *p; /* unread payload */
	uint32_t len;
	int32_t sock;     /* the owner's id; -1: free */
	int32_t next;     /* next of the owner's queue, or of the free list; -1: none */
	uint64_t ref, pos;
};

/* Socket buffers kept after a connection ends, for the next one: at most
 * this many, and XT_BUF_CACHE_BYTES (or mem_limit / 16 if less) in all. */
#define XT_BUF_CACHE 64
#define XT_BUF_CACHE_BYTES (16ull << 20)

struct xt_stack {
	struct xt_stack_cfg cfg;
	struct xt_counters cnt;
	xt_time_t now; /* time of the call in progress */
	bool rx_csum_ok; /* the frame in progress needs no checksum check */

	/* TX batch: frames are built in place and pushed out by xt_stack_flush. */
	uint8_t *txmem; /* XT_TX_BATCH * XT_FRAME_MAX */
	uint32_t txlen[XT_TX_BATCH];
	uint32_t txflags[XT_TX_BATCH]; /* XT_FRAME_* of each queued frame */
	int ntx;
	uint32_t build_gso; /* the frame being built: a TSO segment of this MSS (0: none) */
	/* Gathered payload (cfg.tx_gather) of the frame being built, and of each
	 * queued one: pointers into a socket's send ring.  tx_gen counts
	 * flushes, so a socket knows whether the batch still points into it
	 * (xt_sock.tx_ref_gen). */
	const uint8_t *build_pay[2];
	uint64_t build_pay_key;
	uint32_t build_pay_len[2];
	const uint8_t *txpay[XT_TX_BATCH][2];
	uint64_t txpay_key[XT_TX_BATCH];
	uint32_t txpay_len[XT_TX_BATCH][2];
	uint32_t tx_gen;
	bool build_csum_partial; /* the frame being built leaves its TCP sum to the backend */
	bool tx_defer; /* application calls leave their frames for the caller's flush */
	uint16_t ip_id;

	struct xt_arp *arp;

	/* Zero-copy receive (rxhold.c): a pool of cfg.rx_hold_window records. */
	struct xt_held *held;
	int32_t held_free;      /* free list */
	uint32_t held_n;        /* records in use */
	uint64_t rx_pos;        /* newest frame position seen */
	uint64_t held_min_pos;  /* <= the oldest kept frame's position */
	const struct xt_frame *rx_cur; /* the frame being input, if it may be kept */
	bool rx_cur_held;

	/* Sockets: handle -> socket; free handles chained through free_next. */
	struct xt_sock **socks;
	uint32_t nsocks;     /* handles in use */
	int32_t free_head;
	int32_t *free_next;
	uint32_t sock_cap;

	struct xt_sock **ehash; /* connections by 4-tuple */
	uint32_t ehash_mask;
	struct xt_sock **bhash; /* every bound socket, by local port */
	uint32_t bhash_mask;
	struct xt_sock **lhash; /* listening sockets, by local port (same mask) */

	struct xt_sock **heap; /* timer min-heap on xt_sock.deadline */
	struct xt_sock *tw_head, *tw_tail; /* orphaned TIME_WAIT, by 2MSL end: their timer */
	uint32_t heap_n;

	uint64_t mem_used;
	/* Freed socket buffers kept for the next connection (stack.c buf_get). */
	uint8_t *bc_buf[XT_BUF_CACHE];
	uint64_t bc_key[XT_BUF_CACHE];
	uint32_t bc_cap[XT_BUF_CACHE];
	uint32_t bc_n;
	uint64_t bc_bytes;
	/* Send buffers a failed tx_fence took out of use: freed with the engine. */
	uint8_t **quarantine;
	uint32_t nquarantine;
	/* RFC 5961 challenge-ACK global limit: count within the current second. */
	xt_time_t chack_second;
	uint32_t chack_count;
	uint32_t port_hint;
	uint8_t family; /* xt_stack_set_family */
};

/* The engine's clock never runs backwards, whatever the caller passes: every
 * entry point takes max(now, the latest time seen), so intervals computed
 * inside (RTT samples, idle times) are never negative. */
static inline xt_time_t xt_clock(struct xt_stack *st, xt_time_t now)
{
	if (now < st->now)
		return st->now;
	st->now = now;
	return now;
}

/* Offset of the L3 header in a frame we build, and of the L4 header. */
static inline uint32_t xt_l3_off(const struct xt_stack *st) { return st->cfg.no_link_header ? 0 : XT_ETH_HLEN; }
static inline uint32_t xt_l4_off(const struct xt_stack *st) { return xt_l3_off(st) + XT_IP_HLEN; }

/* stack.c: TX batch.  xt_tx_buf returns a free XT_FRAME_MAX buffer (flushing
 * the batch when full); xt_tx_commit queues it with its full frame length. */
uint8_t *xt_tx_buf(struct xt_stack *st);
void xt_tx_commit(struct xt_stack *st, uint32_t frame_len);
/* The frame being built is a TSO segment (its payload gathered). */
static inline bool xt_tx_building_big(const struct xt_stack *st) { return st->build_gso != 0; }
/* Payload bytes of the frame being built that are gathered, not in its buffer. */
static inline uint32_t xt_tx_pay_len(const struct xt_stack *st)
{
	return st->build_pay_len[0] + st->build_pay_len[1];
}
/* Forgets the frame being built (not committed: lost). */
void xt_tx_drop_build(struct xt_stack *st);
/* Makes the frame being built (frame_len bytes on the wire, not TSO) whole in
 * its buffer, for a frame that must outlive the batch (the ARP queue): copies
 * in the gathered payload and finishes a TCP checksum left to the backend. */
void xt_tx_materialize(struct xt_stack *st, uint8_t *frame, uint32_t frame_len);

/* checksum.c: Internet checksum (RFC 1071) over big-endian 16-bit words.
 * xt_csum_add may be chained; only the last chunk may have odd length.
 * xt_csum_fold returns the value to store (with xt_wr16) in a checksum field;
 * a buffer that includes its correct checksum sums to 0 after xt_csum_fold. */
uint32_t xt_csum_add(uint32_t sum, const void *data, size_t len);
uint16_t xt_csum_fold(uint32_t sum);
uint32_t xt_csum_pseudo(uint32_t src, uint32_t dst, uint8_t proto, uint16_t len);

/* siphash.c: SipHash-2-4 (ISNs per RFC 6528, ephemeral ports per RFC 6056). */
uint64_t xt_siphash(const uint64_t key[2], const void *data, size_t len);

/* ipv4.c */
void xt_eth_input(struct xt_stack *st, const uint8_t *frame, uint32_t len, xt_time_t now);
void xt_ip_input(struct xt_stack *st, const uint8_t *pkt, uint32_t len, xt_time_t now);
/* Next hop for dst: dst itself on our subnet, else the gateway; -ENETUNREACH. */
int xt_ip_route(const struct xt_stack *st, uint32_t dst, uint32_t *nexthop);
/* buf came from xt_tx_buf with l4len bytes of L4 data at xt_l4_off(st).
 * Fills the IPv4 header (DF, TTL 64, checksum unless offloaded) and the
 * Ethernet header, then commits the frame or queues it behind ARP.
 * Returns 0, -ENETUNREACH (no route), -ENOBUFS (ARP queue full). */
int xt_ip_output(struct xt_stack *st, uint8_t *buf, uint32_t l4len, uint32_t src, uint32_t dst,
		 uint8_t proto, xt_time_t now);

/* arp.c */
int xt_arp_init(struct xt_stack *st);
void xt_arp_free(struct xt_stack *st);
void xt_arp_input(struct xt_stack *st, const uint8_t *pkt, uint32_t len, xt_time_t now);
/* frame (len bytes, Ethernet header present, dst MAC unset) goes to nexthop:
 * commits it now if the MAC is known, else copies it to the bounded queue and
 * sends a request.  Returns 0 or -ENOBUFS. */
int xt_arp_output(struct xt_stack *st, uint32_t nexthop, uint8_t *frame, uint32_t len, xt_time_t now);
void xt_arp_poll(struct xt_stack *st, xt_time_t now);
/* Drops every frame waiting for resolution (the entries stay); returns how many. */
uint32_t xt_arp_forget_queued(struct xt_stack *st);
xt_time_t xt_arp_deadline(const struct xt_stack *st);

/* icmp.c */
void xt_icmp_input(struct xt_stack *st, const struct xt_ip_rx *ip, xt_time_t now);

/* tcp_input.c: the TCP entry points the IP layer calls. */
void xt_tcp_input(struct xt_stack *st, const struct xt_ip_rx *ip, xt_time_t now);
/* An ICMP error quoting one of our segments: inner_l4 holds at least 8 bytes
 * of the quoted TCP header; next_mtu is set for fragmentation-needed. */
void xt_tcp_icmp_error(struct xt_stack *st, uint32_t inner_src, uint32_t inner_dst,
		       const uint8_t *inner_l4, uint32_t inner_len, uint8_t type, uint8_t code,
		       uint16_t next_mtu, xt_time_t now);

#endif
