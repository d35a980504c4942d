/* AF_PACKET backend: TPACKET_V2 mmap rings on any Linux interface.
 *
 * The engine needs an IPv4 address the kernel does not own on that interface
 * (otherwise the kernel answers our peers with RSTs); the engine answers ARP
 * for it.  A classic BPF filter lets through only what the engine can use:
 * ARP, and IPv4 whose destination is cfg.ip.  Our own transmissions are not
 * looped back into the receive ring (PACKET_IGNORE_OUTGOING).
 *
 * Link types: ARPHRD_ETHER gives Ethernet frames; ARPHRD_NONE (tun, wireguard)
 * and ARPHRD_RAWIP give bare IPv4 and set caps.no_link_header.  On a tun the
 * packets we send go to whoever holds the tun fd (a VPN daemon), and what that
 * daemon writes is what we receive: the tun's fd is the wire, not the kernel
 * of this host (see tests/test_packet.c for a reflector playing that part).
 *
 * Receive: frames lent by rx_burst live in the ring and go back to the kernel
 * at the start of the next rx_burst.  A frame larger than a ring slot (GRO on
 * the interface, or a GSO super-packet a veth peer's TCP hands over
 * unsegmented) arrives whole through a second ring of 64 KiB slots, in order
 * behind a marker in the main one (packet.c); without that ring (no_big_ring,
 * or no socket for it) it is read from the socket's queue (PACKET_COPY_THRESH)
 * into a side buffer.  The engine takes segments up to 64 KiB.  Frames whose
 * checksum the kernel left to offload (TP_STATUS_CSUMNOTREADY: locally made
 * packets crossing a veth, with only the pseudo-header sum) or verified
 * (TP_STATUS_CSUM_VALID) reach the engine flagged XT_FRAME_CSUM_OK.  A frame
 * in a slot of either ring carries a ref (caps.rx_hold_window, 32; not the
 * side-buffer copies): the engine may keep its slot past the next rx_burst
 * (rx_hold) until the program has read it (rx_release).  The wake fd stays
 * readable while the newest main-ring frame is not the kernel's, so
 * arm_wake answers -EAGAIN while that one is kept: the caller gives its
 * kept frames back (xt_stack_rx_unhold_all) before it sleeps.
 *
 * Transmit: one sendmmsg() per burst straight from the caller's buffers (the
 * default), or a TX ring: frames copied into ring slots and one send() per
 * burst.  caps.tx_gather: a frame's gathered payload (XT_FRAME_GATHER, the
 * socket's send ring) is one or two more iovecs, so the kernel's copy into
 * its skb is the only one after the engine's send buffer.  On Ethernet in
 * sendmmsg mode every burst goes through a send-only socket with
 * PACKET_VNET_HDR: TCP frames flagged XT_FRAME_CSUM_PARTIAL get
 * VIRTIO_NET_HDR_F_NEEDS_CSUM (caps.tx_csum = XT_TX_CSUM_PARTIAL: the device
 * or the kernel finishes the checksum, and on a veth a local receiver takes
 * it as it is, as for the kernel's own TCP), and unless no_tso a segment
 * flagged XT_FRAME_GSO_SIZE is cut by the kernel (caps.tso_max).  Without
 * that socket the engine computes checksums and sends MSS-sized frames
 * through the main one.  On veth the ring costs ~15% more CPU per frame (measured: user-space
 * copy into the slot, and the kernel copies the slot's pages anyway when the
 * frame is delivered to a local socket); on a real NIC the ring spares the
 * kernel's copy of the payload, so it stays an option.
 *
 * wake_fd is the packet socket: readable while the most recently filled ring
 * slot is still ours (so once more after a burst whose frames are still lent).
 * arm_wake returns a pending socket error (-ENETDOWN when the interface went
 * down or away) and 0 otherwise.
 *
 * Not thread-safe: one thread at a time drives a nic (the engine's lock).
 * After fork() the child shares the parent's rings through the inherited
 * mapping: it must not use the nic, only close it (which touches nothing of
 * the parent's), and open its own.
 */
#ifndef XT_PACKET_H
#define XT_PACKET_H

#include <stdint.h>
#include "nic.h"

enum xt_packet_tx_mode {
	XT_PACKET_TX_SENDMMSG = 0, /* one sendmmsg() per burst, no ring (default) */
	XT_PACKET_TX_RING = 1,     /* PACKET_TX_RING + one send() kick per burst */
};

struct xt_packet_cfg {
	const char *ifname;
	uint32_t ip;        /* host order: the engine's address, for the BPF filter */
	int rx_ring_frames; /* 0: 4 MiB worth (2048 at MTU 1500); rounded up to a whole block */
	int tx_ring_frames; /* 0: 2 MiB worth (1024 at MTU 1500); XT_PACKET_TX_RING only */
	int tx_mode;        /* enum xt_packet_tx_mode */
	int qdisc_bypass;   /* 1: PACKET_QDISC_BYPASS (no qdisc, no backpressure) */
	/* > 0: an AF_PACKET SOCK_RAW socket of protocol 0 opened earlier (only
	 * creating one needs CAP_NET_RAW: a fork child that dropped privileges
	 * uses the one made for it at fork time); taken over, closed on failure. */
	int sock_fd;
	/* 1: no big-frame ring (GRO/GSO frames larger than a slot then take the
	 * copy path: read from the socket queue one system call each). */
	int no_big_ring;
	int big_sock_fd; /* > 0: as sock_fd, for the big-frame ring */
	int no_tso;      /* 1: no TSO (caps.tso_max stays 0); the offload socket still finishes checksums */
	int tso_sock_fd; /* > 0: as sock_fd, for the offload (TSO and checksum) socket */
	/* 1: the engine has a MAC address of its own, mac (not the
	 * interface's): the interface is asked to accept it too
	 * (PACKET_MR_UNICAST, as an extra unicast filter entry; a NIC that
	 * cannot filter one more address goes promiscuous). */
	int have_mac;
	uint8_t mac[6];
};

/* Opens the backend.  Returns 0 and *out, or -errno; the reason, in words, is
 * then available from xt_packet_error() on the same thread:
 *   -EPERM      no CAP_NET_RAW
 *   -ENODEV     no such interface (in this network namespace)
 *   -ENETDOWN   interface is down
 *   -EPROTONOSUPPORT link type other than Ethernet, tun (NONE) or raw IP
 *   -EINVAL     bad cfg; -ENOMEM, or any other socket/mmap failure */
int xt_packet_open(const struct xt_packet_cfg *cfg, struct xt_nic **out);
/* The reason of the last failed xt_packet_open on this thread ("" if none). */
const char *xt_packet_error(void);

struct xt_packet_stats {
	uint64_t rx_frames, rx_bytes;   /* handed to the caller */
	uint64_t tx_frames, tx_bytes;   /* accepted for sending */
	uint64_t rx_drops;       /* kernel: ring full (tp_drops of PACKET_STATISTICS) */
	uint64_t rx_kernel_frames; /* kernel: frames that passed the filter (tp_packets) */
	uint64_t rx_csum_offloaded; /* CSUMNOTREADY/CSUM_VALID: passed on as XT_FRAME_CSUM_OK */
	uint64_t rx_big;         /* larger than a slot: taken from the big-frame ring */
	uint64_t rx_big_lost;    /* ... announced in the ring, but the big ring had no room */
	uint64_t rx_copied;      /* larger than a ring slot: read from the socket queue */
	uint64_t rx_truncated;   /* larger than a ring slot, not queued (queue full): dropped */
	uint64_t tx_gso;         /* TSO segments handed over with a virtio_net_hdr */
	uint64_t tx_calls;       /* send system calls (sendmmsg, TX ring kicks): frames / tx_calls is the batch */
	uint64_t tx_errors;      /* send()/sendmmsg() failures */
	uint64_t tx_full;        /* frames refused: no free TX slot / socket buffer full */
	uint64_t tx_oversize;    /* frames larger than a TX slot: dropped */
	uint64_t wake_errors;    /* socket errors reported through arm_wake */
	uint64_t rx_kept_main;   /* main-ring frames the engine kept (read in place) */
	uint64_t rx_kept_big;    /* big-ring frames the engine kept */
	uint64_t wake_kept;      /* arm_wake refusals: the newest frame was kept (-EAGAIN) */
	uint64_t tcp_switches;   /* xt_packet_set_tcp changes (TCP kept or not) */
};

/* Fills *out (reads and accumulates the kernel's PACKET_STATISTICS, which
 * the kernel resets on each read).  Returns 0, or -EINVAL when nic is not a
 * packet backend. */
int xt_packet_stats(struct xt_nic *nic, struct xt_packet_stats *out);

/* Whether the sockets keep TCP at all (on: yes, as opened).  A member of a
 * fork family with no connection of its own and accepting nowhere turns
 * TCP off, so that it no longer takes in every frame of its siblings'
 * connections; ARP and ICMP still come.  Returns 0, -EINVAL when nic is
 * not a packet backend, or -errno (the filter could not be replaced; the
 * previous one stays). */
int xt_packet_set_tcp(struct xt_nic *nic, bool on);
bool xt_packet_tcp_on(struct xt_nic *nic);

#endif
