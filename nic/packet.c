/* AF_PACKET backend: TPACKET_V2 RX ring; sendmmsg or a TPACKET_V2 TX ring.
 *
 * Why TPACKET_V2 and not V3: V3 hands whole blocks to user space, and a block
 * is handed over only when it is full or its retire timer (milliseconds)
 * fires, so a lone ACK can wait a millisecond; V2 hands over every frame as
 * soon as it is written and lets us return each one on its own, which is
 * exactly the lend-until-next-rx_burst contract of nic.h.
 *
 * Ring protocol (Documentation/networking/packet_mmap.rst): a slot belongs to
 * the kernel while its tp_status is TP_STATUS_KERNEL (RX) / TP_STATUS_AVAILABLE
 * (TX) and to us otherwise; the status word is read with acquire and written
 * with release ordering, since the other side reads the frame after it.
 *
 * Set-up order matters: the socket is created with protocol 0 (it receives
 * nothing), gets its filter, options and rings, and is only then bound with
 * ETH_P_ALL, so no frame that the filter would refuse is ever queued.
 *
 * Big frames: GRO (and a veth peer's TSO) hand over TCP frames of up to
 * 64 KiB, far more than a slot.  A second packet socket with a ring of
 * 68 KiB slots takes every frame longer than a slot (its filter checks the
 * length); the main ring gets only the first PK_MARK_SNAP bytes of such a
 * frame, a marker that keeps the order of frames and wakes the waiter.  At a
 * marker rx_burst takes the big ring's next frame, checked against the
 * marker's bytes.  The big socket is bound after the main one, and the
 * kernel hands a frame to the newest packet hook first, so its copy is
 * normally there before the marker; if not (hooks re-registered after a
 * link flap), rx_burst waits for it up to PK_MARK_WAIT, and a big frame
 * without a marker (the main ring was full) is skipped at the next marker.
 * Without the big socket (no permission in a fork child, or no_big_ring)
 * such frames take the copy path (TP_STATUS_COPY): one recv() each.
 */
#define _GNU_SOURCE /* sendmmsg */
#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <linux/filter.h>
#include <linux/if_packet.h>
#include <linux/virtio_net.h>
#include <net/ethernet.h>
#include <net/if.h>
#include <net/if_arp.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/socket.h>

#include "packet.h"
#include "../stack/xt_internal.h" /* xt_csum_*, wire offsets */

#ifndef PACKET_IGNORE_OUTGOING
#define PACKET_IGNORE_OUTGOING 23
#endif
#ifndef TP_STATUS_CSUM_VALID
#define TP_STATUS_CSUM_VALID (1 << 7)
#endif
#ifndef ARPHRD_RAWIP
#define ARPHRD_RAWIP 519
#endif

/* Default rings by bytes, so a jumbo-MTU interface gets fewer, larger slots:
 * 2048 RX and 1024 TX frames at MTU 1500. */
#define PK_DEFAULT_RX_BYTES (4u << 20)
#define PK_DEFAULT_TX_BYTES (2u << 20)
#define PK_MIN_DEFAULT_FRAMES 256
#define PK_MAX_RING_FRAMES (1 << 20)
#define PK_BLOCK_SIZE (64u * 1024u)  /* ring block: contiguous kernel allocation */
#define PK_MAX_SLOT (64u * 1024u)    /* larger frames go through the copy path */
#define PK_LEND_MAX 256              /* frames one rx_burst may lend */
#define PK_COPY_BUFS 8               /* oversize frames one rx_burst may lend */
#define PK_COPY_SIZE (65536u + 64u)  /* an IPv4 datagram of 64 KiB plus link header */
#define PK_SNDBATCH 64               /* sendmmsg chunk */
#define PK_KICK_RETRIES 4
#define PK_RCVBUF (4 << 20)          /* socket queue for oversize frames */
#define PK_SNDBUF (4 << 20)          /* frames in flight (veth keeps them charged to us) */
/* TX slots: data starts right after the aligned header (tpacket_snd:
 * tp_hdrlen - sizeof(struct sockaddr_ll)). */
#define PK_TX_DATA_OFF TPACKET_ALIGN(sizeof(struct tpacket2_hdr))
#define PK_BIG_SLOT (17u * 4096u)    /* an IPv4 datagram of 64 KiB, link header, tpacket header */
#define PK_BIG_FRAMES 64             /* big-frame ring: 4.25 MiB */
#define PK_MARK_SNAP 128             /* bytes of a big frame left in the main ring */
#define PK_MARK_WAIT XT_MS(1)        /* longest wait for a marker's big frame */
#define PK_HOLD_WINDOW 32            /* caps.rx_hold_window, at most half the big ring */

struct pk_ring {
	uint8_t *base;          /* first slot */
	uint32_t frame_size, nframes;
	uint32_t head;          /* next slot we look at */
};

struct pk_nic {
	struct xt_nic nic;      /* first: struct xt_nic * converts to struct pk_nic * */
	int fd, ifindex;
	bool no_link;           /* bare IP frames */
	bool tx_ring_mode;
	bool tx_pending;        /* a kick failed: frames may wait in the TX ring */
	uint8_t *map;
	size_t map_len;
	struct pk_ring rx, tx;
	uint32_t tx_cap;        /* largest frame a TX slot takes */
	struct sockaddr_ll txaddr; /* bare IP: send() destination naming the protocol */
	socklen_t txaddr_len;      /* 0: none, the bound device (Ethernet) */
	uint32_t lent[PK_LEND_MAX]; /* RX slots lent by the last rx_burst */
	int nlent;
	uint8_t *copybuf[PK_COPY_BUFS];
	/* The big-frame ring (bfd < 0: none). */
	int bfd;
	uint8_t *bmap;
	size_t bmap_len;
	struct pk_ring big;
	uint32_t blent[PK_LEND_MAX];
	int nblent;
	uint32_t small_cap;     /* longest frame (from the link header) a main slot holds */
	/* Zero-copy receive: slots of either ring the engine keeps past the
	 * next rx_burst (rx_hold), and the receive position: one more for each
	 * main slot taken and each big slot skipped, so neither ring moves
	 * further than the position does and a slot kept for fewer than
	 * rx_hold_window positions is never in the kernel's way.  The wake fd
	 * is readable while the newest main slot is not the kernel's, so a
	 * sleeper must not leave that one kept: arm_wake says -EAGAIN then, and
	 * the caller has the engine give its frames back first (a big frame's
	 * main slot is its marker, given back at once). */
	uint8_t *big_held;  /* per big slot: SLOT_* bits */
	uint8_t *main_held; /* per main slot: SLOT_* bits */
	uint64_t rx_pos;
	uint64_t rx_since_arm;  /* frames taken since the last arm_wake */
	xt_time_t mark_since;   /* a marker waits for its big frame since (0: none) */
	/* TSO: a send-only packet socket with PACKET_VNET_HDR (gfd < 0: none) */
	int gfd;
	struct sockaddr_ll gaddr;
	bool gfd_bound; /* bound to the device: sends name no address */
	uint32_t ip;    /* the filter's address */
	bool no_tcp;    /* the filters keep no TCP (xt_packet_set_tcp) */
	struct xt_packet_stats st;
};

static __thread char pk_err[192];

const char *xt_packet_error(void) { return pk_err; }

static int pk_fail(int err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int pk_fail(int err, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(pk_err, sizeof(pk_err), fmt, ap);
	va_end(ap);
	return err;
}

static struct pk_nic *to_pk(struct xt_nic *nic) { return (struct pk_nic *)nic; }

static struct tpacket2_hdr *slot_hdr(const struct pk_ring *r, uint32_t i)
{
	return (struct tpacket2_hdr *)(r->base + (size_t)i * r->frame_size);
}

static uint32_t ring_next(const struct pk_ring *r, uint32_t i)
{
	return i + 1 == r->nframes ? 0 : i + 1;
}

static uint32_t status_get(const struct tpacket2_hdr *h)
{
	return __atomic_load_n(&h->tp_status, __ATOMIC_ACQUIRE);
}

static void status_set(struct tpacket2_hdr *h, uint32_t v)
{
	__atomic_store_n(&h->tp_status, v, __ATOMIC_RELEASE);
}

/* --- receive ------------------------------------------------------------- */

#define SLOT_LENT 1u /* lent by the last rx_burst: the next one gives it back */
#define SLOT_KEPT 2u /* kept: rx_release gives it back */
#define PK_REF_MAIN (1ull << 40) /* a kept frame's ref: main slot + 1 with this bit, or big slot + 1 */

/* The slots of one ring the last rx_burst lent go back to the kernel, but
 * for those the engine keeps (rx_release gives them back). */
static void give_back_lent(struct pk_ring *r, uint8_t *held, const uint32_t *lent, int n)
{
	for (int i = 0; i < n; i++) {
		uint32_t s = lent[i];
		if (held) {
			held[s] &= (uint8_t)~SLOT_LENT;
			if (held[s] & SLOT_KEPT)
				continue;
		}
		status_set(slot_hdr(r, s), TP_STATUS_KERNEL);
	}
}

static void rx_release_lent(struct pk_nic *p)
{
	give_back_lent(&p->rx, p->main_held, p->lent, p->nlent);
	p->nlent = 0;
	give_back_lent(&p->big, p->big_held, p->blent, p->nblent);
	p->nblent = 0;
}

/* The flags and the ring of a kept frame's ref. */
static uint8_t *held_of(struct pk_nic *p, uint64_t ref, struct pk_ring **ring, uint32_t *slot)
{
	if (ref & PK_REF_MAIN) {
		*ring = &p->rx;
		*slot = (uint32_t)(ref & ~PK_REF_MAIN) - 1;
		return &p->main_held[*slot];
	}
	*ring = &p->big;
	*slot = (uint32_t)ref - 1;
	return &p->big_held[*slot];
}

static void pk_rx_hold(struct xt_nic *nic, uint64_t ref)
{
	struct pk_nic *p = to_pk(nic);
	struct pk_ring *r;
	uint32_t slot;
	*held_of(p, ref, &r, &slot) |= SLOT_KEPT;
	if (r == &p->rx)
		p->st.rx_kept_main++;
	else
		p->st.rx_kept_big++;
}

/* A slot still lent by the last rx_burst goes back with the others at the
 * next; one given back twice could hand the kernel a slot it has refilled
 * meanwhile. */
static void pk_rx_release(struct xt_nic *nic, uint64_t ref)
{
	struct pk_ring *r;
	uint32_t slot;
	uint8_t *h = held_of(to_pk(nic), ref, &r, &slot);

	*h &= (uint8_t)~SLOT_KEPT;
	if (!(*h & SLOT_LENT))
		status_set(slot_hdr(r, slot), TP_STATUS_KERNEL);
}

/* A big slot holding a frame for us to take: the kernel's, not one kept. */
static bool big_ours(const struct pk_nic *p, uint32_t i)
{
	return (status_get(slot_hdr(&p->big, i)) & TP_STATUS_USER) && !(p->big_held && p->big_held[i]);
}

static uint8_t *slot_data(const struct pk_nic *p, struct tpacket2_hdr *h)
{
	return (uint8_t *)h + (p->no_link ? h->tp_net : h->tp_mac);
}

static bool big_matches(const struct pk_nic *p, struct tpacket2_hdr *bh, const struct tpacket2_hdr *mh,
			const uint8_t *mark)
{
	return bh->tp_len == mh->tp_len && bh->tp_snaplen == bh->tp_len &&
	       memcmp(slot_data(p, bh), mark, mh->tp_snaplen) == 0;
}

/* The big frame a marker (main slot mh) announces: its slot index in the big
 * ring, or -1 (not there: *wait says whether it may still come).  Big
 * frames before it whose markers never made it (main ring full) are given
 * back on the way. */
static int big_take(struct pk_nic *p, const struct tpacket2_hdr *mh, const uint8_t *mark, bool *wait)
{
	uint32_t i = p->big.head;

	*wait = false;
	for (uint32_t k = 0; k < p->big.nframes; k++) {
		struct tpacket2_hdr *bh = slot_hdr(&p->big, i);

		if (!big_ours(p, i)) {
			*wait = k == 0; /* nothing ours at all: it may be on its way */
			return -1;
		}
		if (big_matches(p, bh, mh, mark)) {
			/* skipped ones: big frames whose markers were dropped */
			while (p->big.head != i) {
				status_set(slot_hdr(&p->big, p->big.head), TP_STATUS_KERNEL);
				p->big.head = ring_next(&p->big, p->big.head);
				p->rx_pos++;
			}
			p->big.head = ring_next(&p->big, i);
			return (int)i;
		}
		i = ring_next(&p->big, i);
	}
	/* Not there, though big frames are: those that arrived before the
	 * marker lost their own markers and will never be asked for; give them
	 * back, or a big ring full of them would refuse every later frame. */
	while (big_ours(p, p->big.head)) {
		struct tpacket2_hdr *bh = slot_hdr(&p->big, p->big.head);

		if (bh->tp_sec > mh->tp_sec || (bh->tp_sec == mh->tp_sec && bh->tp_nsec > mh->tp_nsec))
			break;
		status_set(bh, TP_STATUS_KERNEL);
		p->big.head = ring_next(&p->big, p->big.head);
		p->rx_pos++;
	}
	return -1;
}

/* The slot of a frame that did not fit: its full copy waits in the socket
 * queue (TP_STATUS_COPY), in the same order as the ring.  Returns the length
 * read into buf, or 0 when the frame is lost. */
static uint32_t rx_copy(struct pk_nic *p, uint8_t *buf)
{
	ssize_t r = recv(p->fd, buf, PK_COPY_SIZE, MSG_DONTWAIT | MSG_TRUNC);

	if (r <= 0 || (size_t)r > PK_COPY_SIZE) {
		p->st.rx_truncated++;
		return 0;
	}
	p->st.rx_copied++;
	return (uint32_t)r;
}

static void tx_kick(struct pk_nic *p, int tries);

static int pk_rx(struct xt_nic *nic, struct xt_frame *frames, int n, xt_time_t now)
{
	struct pk_nic *p = to_pk(nic);
	int got = 0, ncopy = 0;

	if (n < 0)
		return -EINVAL;
	rx_release_lent(p);
	if (p->tx_pending)
		tx_kick(p, 1);
	if (n > PK_LEND_MAX)
		n = PK_LEND_MAX;
	while (got < n) {
		uint32_t idx = p->rx.head;
		struct tpacket2_hdr *h = slot_hdr(&p->rx, idx);
		uint32_t status = status_get(h), len;
		uint8_t *data;
		bool in_slot = true;
		uint64_t ref = 0;

		if (!(status & TP_STATUS_USER) || (p->main_held && p->main_held[idx]))
			break; /* empty, or a kept slot the ring came round to: no new frame */
		data = slot_data(p, h);
		len = h->tp_snaplen;
		if (p->bfd >= 0 && h->tp_snaplen < h->tp_len && !(status & TP_STATUS_COPY)) {
			/* a marker: the frame is in the big ring */
			bool wait;
			int b = big_take(p, h, data, &wait);

			if (b < 0 && wait) {
				if (!p->mark_since)
					p->mark_since = now ? now : 1;
				if (now - p->mark_since < PK_MARK_WAIT)
					break; /* the marker stays ours: the next call looks again */
			}
			p->mark_since = 0;
			p->rx.head = ring_next(&p->rx, idx);
			p->rx_pos++;
			status_set(h, TP_STATUS_KERNEL);
			if (b < 0) {
				p->st.rx_big_lost++;
				continue;
			}
			struct tpacket2_hdr *bh = slot_hdr(&p->big, (uint32_t)b);
			p->blent[p->nblent++] = (uint32_t)b;
			if (p->big_held)
				p->big_held[b] = SLOT_LENT;
			p->st.rx_big++;
			data = slot_data(p, bh);
			len = bh->tp_len;
			status = status_get(bh);
			ref = p->big_held ? (uint64_t)b + 1 : 0;
			goto deliver;
		}
		if (status & TP_STATUS_COPY) {
			if (ncopy == PK_COPY_BUFS)
				break; /* no side buffer left in this burst: next call */
			if (!p->copybuf[ncopy] && !(p->copybuf[ncopy] = malloc(PK_COPY_SIZE)))
				break;
			data = p->copybuf[ncopy];
			in_slot = false;
			len = rx_copy(p, data);
			if (len)
				ncopy++;
		} else if (h->tp_snaplen < h->tp_len) {
			p->st.rx_truncated++; /* too large, and the queue was full */
			len = 0;
		}
		p->rx.head = ring_next(&p->rx, idx);
		p->rx_pos++;
		if (len == 0 || !in_slot) {
			status_set(h, TP_STATUS_KERNEL); /* nothing of the slot is lent */
		} else {
			p->lent[p->nlent++] = idx;
			if (p->main_held) {
				p->main_held[idx] = SLOT_LENT;
				ref = PK_REF_MAIN | ((uint64_t)idx + 1);
			}
		}
		if (len == 0)
			continue;
deliver:
		/* CSUMNOTREADY: CHECKSUM_PARTIAL, made on this host (a veth peer's
		 * TCP) with the checksum left to a device, so the field holds only
		 * the pseudo-header sum; CSUM_VALID: a device or the kernel
		 * verified it.  Either way the engine need not sum the bytes. */
		frames[got].flags = 0;
		if (status & (TP_STATUS_CSUMNOTREADY | TP_STATUS_CSUM_VALID)) {
			frames[got].flags = XT_FRAME_CSUM_OK;
			p->st.rx_csum_offloaded++;
		}
		frames[got].data = data;
		frames[got].len = len;
		frames[got].ref = ref; /* 0: copied frames (side buffer) */
		frames[got].pos = p->rx_pos;
		p->st.rx_frames++;
		p->st.rx_bytes += len;
		got++;
	}
	p->rx_since_arm += (uint64_t)got;
	return got;
}

/* --- transmit -------------------------------------------------------------- */

/* Hands every SEND_REQUEST slot to the kernel.  With MSG_DONTWAIT the kernel
 * walks the ring without waiting for completions.  An error (ENOBUFS: the
 * device or the veth peer's backlog dropped a frame; ENETDOWN) stops its
 * walk, so tx_burst kicks again a few times, and rx_burst and arm_wake once
 * each until one succeeds. */
static void tx_kick(struct pk_nic *p, int tries)
{
	for (int i = 0; i < tries; i++) {
		p->st.tx_calls++;
		if (sendto(p->fd, NULL, 0, MSG_DONTWAIT,
			   p->txaddr_len ? (const struct sockaddr *)&p->txaddr : NULL, p->txaddr_len) >= 0) {
			p->tx_pending = false;
			return;
		}
		if (errno != EINTR)
			p->st.tx_errors++;
	}
	p->tx_pending = true;
}

static int tx_ring(struct pk_nic *p, const struct xt_frame *frames, int n)
{
	int taken = 0;
	bool queued = false;

	for (; taken < n; taken++) {
		const struct xt_frame *f = &frames[taken];
		struct tpacket2_hdr *h;

		uint32_t len = xt_frame_wire_len(f);

		if (len > p->tx_cap) {
			p->st.tx_oversize++;
			continue;
		}
		h = slot_hdr(&p->tx, p->tx.head);
		if (status_get(h) != TP_STATUS_AVAILABLE) {
			p->st.tx_full += (uint64_t)(n - taken);
			break;
		}
		xt_frame_copy(f, (uint8_t *)h + PK_TX_DATA_OFF);
		h->tp_len = len;
		status_set(h, TP_STATUS_SEND_REQUEST);
		p->tx.head = ring_next(&p->tx, p->tx.head);
		p->st.tx_frames++;
		p->st.tx_bytes += len;
		queued = true;
	}
	if (queued || p->tx_pending)
		tx_kick(p, PK_KICK_RETRIES);
	return taken;
}

/* The virtio header of a frame for the offload socket.  The kernel (the
 * device, or software) completes the TCP checksum of a frame flagged
 * CSUM_PARTIAL, or of a TSO segment, from the pseudo-header sum the engine
 * left in the field, and cuts a TSO segment into parts of gso_size payload
 * bytes; any other frame gets an empty header and goes out as it is.  False
 * when such a frame is malformed. */
static bool vnet_hdr_of(const struct xt_frame *f, struct virtio_net_hdr *vh)
{
	const uint8_t *ip = f->data + XT_ETH_HLEN;
	uint32_t ihl, thl;

	memset(vh, 0, sizeof(*vh));
	if (!XT_FRAME_GSO_SIZE(f->flags) && !(f->flags & XT_FRAME_CSUM_PARTIAL))
		return true;
	/* the headers are in data; only payload is gathered */
	if (f->len < XT_ETH_HLEN + XT_IP_HLEN + XT_TCP_HLEN)
		return false;
	ihl = (ip[XT_IP_VHL] & 0xfu) * 4u;
	if (ihl < XT_IP_HLEN || f->len < XT_ETH_HLEN + ihl + XT_TCP_HLEN)
		return false;
	thl = (uint32_t)(ip[ihl + XT_TCP_OFF] >> 4) * 4u;
	vh->flags = VIRTIO_NET_HDR_F_NEEDS_CSUM;
	vh->csum_start = (uint16_t)(XT_ETH_HLEN + ihl);
	vh->csum_offset = 16; /* TCP checksum (RFC 9293 3.1) */
	if (XT_FRAME_GSO_SIZE(f->flags)) {
		vh->gso_type = VIRTIO_NET_HDR_GSO_TCPV4;
		vh->hdr_len = (uint16_t)(XT_ETH_HLEN + ihl + thl); /* little-endian hosts: virtio 1.0 order */
		vh->gso_size = (uint16_t)XT_FRAME_GSO_SIZE(f->flags);
	}
	return true;
}

/* One sendmmsg per PK_SNDBATCH frames, straight from the caller's buffers:
 * through the main socket, or (vnet) through the TSO socket with a virtio
 * header before each frame, for a batch that holds a TSO segment (one
 * system call for a response's 64 KiB segment and its short tail).  A frame
 * the kernel finds malformed is lost, like on a wire; any other error (full
 * socket or device queue, interface down) refuses the rest, which the
 * engine counts and TCP retransmits. */
static int tx_mmsg(struct pk_nic *p, const struct xt_frame *frames, int n, bool vnet)
{
	struct mmsghdr m[PK_SNDBATCH];
	struct iovec iov[PK_SNDBATCH][4]; /* virtio header, data, two gathered pieces */
	struct virtio_net_hdr vh[PK_SNDBATCH];
	int taken = 0;

	while (taken < n) {
		int k = 0, r;

		while (k < PK_SNDBATCH && taken + k < n) {
			const struct xt_frame *f = &frames[taken + k];
			bool gso = vnet && XT_FRAME_GSO_SIZE(f->flags);
			int part = 0;

			if ((vnet && !vnet_hdr_of(f, &vh[k])) || (!gso && xt_frame_wire_len(f) > p->tx_cap)) {
				if (k)
					break; /* send up to it; it is dropped next round */
				p->st.tx_oversize++; /* lost, like on a wire; TCP resends it */
				taken++;
				continue;
			}
			memset(&m[k], 0, sizeof(m[k]));
			if (vnet)
				iov[k][part++] = (struct iovec){ &vh[k], sizeof(vh[k]) };
			iov[k][part++] = (struct iovec){ (void *)f->data, f->len };
			if (f->flags & XT_FRAME_GATHER) {
				/* the kernel copies the payload from the socket's send
				 * ring: the engine made no copy of its own */
				for (int j = 0; j < 2; j++)
					if (f->pay_len[j])
						iov[k][part++] = (struct iovec){ (void *)f->pay[j], f->pay_len[j] };
			}
			m[k].msg_hdr.msg_iov = iov[k];
			m[k].msg_hdr.msg_iovlen = (size_t)part;
			if (vnet && !p->gfd_bound) {
				m[k].msg_hdr.msg_name = &p->gaddr;
				m[k].msg_hdr.msg_namelen = sizeof(p->gaddr);
			} else if (p->txaddr_len) {
				m[k].msg_hdr.msg_name = &p->txaddr;
				m[k].msg_hdr.msg_namelen = p->txaddr_len;
			}
			k++;
		}
		if (k == 0)
			continue;
		p->st.tx_calls++;
		r = sendmmsg(vnet ? p->gfd : p->fd, m, (unsigned)k, MSG_DONTWAIT);
		if (r > 0) {
			for (int i = 0; i < r; i++) {
				p->st.tx_bytes += xt_frame_wire_len(&frames[taken + i]);
				if (vnet && XT_FRAME_GSO_SIZE(frames[taken + i].flags))
					p->st.tx_gso++;
			}
			p->st.tx_frames += (uint64_t)r;
			taken += r;
			continue;
		}
		if (errno == EINTR)
			continue;
		if (errno == EMSGSIZE || errno == EINVAL) {
			p->st.tx_errors++;
			taken++;
			continue;
		}
		if (errno == EAGAIN || errno == ENOBUFS)
			p->st.tx_full += (uint64_t)(n - taken);
		else
			p->st.tx_errors++;
		break;
	}
	return taken;
}

static int pk_tx(struct xt_nic *nic, const struct xt_frame *frames, int n, xt_time_t now)
{
	struct pk_nic *p = to_pk(nic);

	(void)now;
	if (n < 0)
		return -EINVAL;
	if (n == 0)
		return 0;
	/* With the offload socket every TCP frame has its sum left to finish
	 * (caps.tx_csum); without it there is no TSO segment either. */
	if (p->gfd >= 0)
		return tx_mmsg(p, frames, n, true);
	return p->tx_ring_mode ? tx_ring(p, frames, n) : tx_mmsg(p, frames, n, false);
}

/* --- waking, stats, close ------------------------------------------------ */

static int pk_wake_fd(struct xt_nic *nic) { return to_pk(nic)->fd; }

/* Before the caller sleeps: push out frames a failed kick left in the ring,
 * and report (and clear) a socket error, which would otherwise keep the fd
 * readable: ENETDOWN when the interface went down or was removed.  A socket
 * error wakes sleepers (POLLERR) without a frame, so the error is looked for
 * only when no frame came since the last arm: a busy server's sleeps cost no
 * system call for it. */
static int pk_arm_wake(struct xt_nic *nic)
{
	struct pk_nic *p = to_pk(nic);
	int err = 0;
	socklen_t len = sizeof(err);

	if (p->main_held && (p->main_held[p->rx.head ? p->rx.head - 1 : p->rx.nframes - 1] & SLOT_KEPT)) {
		p->st.wake_kept++;
		return -EAGAIN; /* the newest frame is kept: the fd would stay readable */
	}

	if (p->tx_pending)
		tx_kick(p, 1);
	bool quiet = p->rx_since_arm == 0;
	p->rx_since_arm = 0;
	if (!quiet)
		return 0;
	if (getsockopt(p->fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0)
		return -errno;
	if (err) {
		p->st.wake_errors++;
		return -err;
	}
	return 0;
}

static xt_time_t pk_deadline(struct xt_nic *nic)
{
	(void)nic;
	return XT_TIME_NEVER;
}

static void pk_free(struct pk_nic *p)
{
	if (p->map && p->map != MAP_FAILED)
		munmap(p->map, p->map_len);
	if (p->fd >= 0)
		close(p->fd);
	if (p->bmap && p->bmap != MAP_FAILED)
		munmap(p->bmap, p->bmap_len);
	if (p->bfd >= 0)
		close(p->bfd);
	if (p->gfd >= 0)
		close(p->gfd);
	for (int i = 0; i < PK_COPY_BUFS; i++)
		free(p->copybuf[i]);
	free(p->big_held);
	free(p->main_held);
	free(p);
}

static void pk_close(struct xt_nic *nic) { pk_free(to_pk(nic)); }

static const struct xt_nic_ops packet_ops = {
	.name = "packet",
	.rx_burst = pk_rx,
	.tx_burst = pk_tx,
	.wake_fd = pk_wake_fd,
	.arm_wake = pk_arm_wake,
	.next_deadline = pk_deadline,
	.close = pk_close,
	.rx_hold = pk_rx_hold,
	.rx_release = pk_rx_release,
};

enum { FILTER_ALL, FILTER_MAIN, FILTER_BIG };
static int attach_filter(int fd, uint32_t ip, bool no_link, int mode, uint32_t cap, bool no_tcp);

int xt_packet_set_tcp(struct xt_nic *nic, bool on)
{
	if (!nic || nic->ops != &packet_ops)
		return -EINVAL;
	struct pk_nic *p = to_pk(nic);
	if (p->no_tcp == !on)
		return 0;
	int main_mode = p->bfd >= 0 ? FILTER_MAIN : FILTER_ALL;
	/* A big frame whose marker the main socket dropped is skipped later
	 * (big_take); a marker without its big frame is lost.  So the main
	 * socket stops keeping TCP first, and the big one starts first. */
	if (on && p->bfd >= 0 && attach_filter(p->bfd, p->ip, p->no_link, FILTER_BIG, p->small_cap, false) < 0)
		return -errno;
	if (attach_filter(p->fd, p->ip, p->no_link, main_mode, p->small_cap, !on) < 0) {
		int e = -errno;
		if (on && p->bfd >= 0)
			(void)attach_filter(p->bfd, p->ip, p->no_link, FILTER_BIG, p->small_cap, true);
		return e;
	}
	if (!on && p->bfd >= 0)
		(void)attach_filter(p->bfd, p->ip, p->no_link, FILTER_BIG, p->small_cap, true);
	p->no_tcp = !on;
	p->st.tcp_switches++;
	return 0;
}

bool xt_packet_tcp_on(struct xt_nic *nic)
{
	return !nic || nic->ops != &packet_ops || !to_pk(nic)->no_tcp;
}

int xt_packet_stats(struct xt_nic *nic, struct xt_packet_stats *out)
{
	struct pk_nic *p;
	struct tpacket_stats ks;
	socklen_t len = sizeof(ks);

	if (!nic || nic->ops != &packet_ops || !out)
		return -EINVAL;
	p = to_pk(nic);
	/* tp_packets counts every frame that passed the filter, dropped or not. */
	if (getsockopt(p->fd, SOL_PACKET, PACKET_STATISTICS, &ks, &len) == 0) {
		p->st.rx_kernel_frames += ks.tp_packets;
		p->st.rx_drops += ks.tp_drops;
	}
	len = sizeof(ks);
	if (p->bfd >= 0 && getsockopt(p->bfd, SOL_PACKET, PACKET_STATISTICS, &ks, &len) == 0)
		p->st.rx_drops += ks.tp_drops; /* its frames are counted by their markers */
	*out = p->st;
	return 0;
}

/* --- open ------------------------------------------------------------------ */

/* Classic BPF: drop our own transmissions (belt and braces behind
 * PACKET_IGNORE_OUTGOING) and VLAN-tagged frames (the tag is stripped into
 * metadata, so they would look untagged); keep ARP and IPv4 to ip.  The
 * program sees the frame from the link header on (SOCK_RAW), which on a
 * device without one is the IP header.  What is kept then depends on the
 * socket: FILTER_ALL all of it; with a big-frame ring, FILTER_MAIN all of a
 * frame of at most cap bytes and the first PK_MARK_SNAP of a longer one (the
 * marker), FILTER_BIG only the longer ones.  With no_tcp, TCP is not kept at
 * all (xt_packet_set_tcp). */
static int attach_filter(int fd, uint32_t ip, bool no_link, int mode, uint32_t cap, bool no_tcp)
{
	const uint32_t ad_pkttype = (uint32_t)(SKF_AD_OFF + SKF_AD_PKTTYPE);
	const uint32_t ad_vlan = (uint32_t)(SKF_AD_OFF + SKF_AD_VLAN_TAG_PRESENT);
	struct sock_filter prog_buf[24];
	struct sock_filter eth[] = {
		BPF_STMT(BPF_LD | BPF_W | BPF_ABS, ad_pkttype),
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, PACKET_OUTGOING, 8, 0),
		BPF_STMT(BPF_LD | BPF_W | BPF_ABS, ad_vlan),
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, 0, 0, 6),
		BPF_STMT(BPF_LD | BPF_H | BPF_ABS, XT_ETH_TYPE_be16),
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, XT_ETHERTYPE_ARP, 3, 0),
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, XT_ETHERTYPE_IPV4, 0, 3),
		BPF_STMT(BPF_LD | BPF_W | BPF_ABS, XT_ETH_HLEN + XT_IP_DST_be32),
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, ip, 0, 1),
		BPF_JUMP(BPF_JMP | BPF_JA, 1, 0, 0), /* kept: to the tail */
		BPF_STMT(BPF_RET | BPF_K, 0),
	};
	struct sock_filter raw[] = {
		BPF_STMT(BPF_LD | BPF_W | BPF_ABS, ad_pkttype),
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, PACKET_OUTGOING, 6, 0),
		BPF_STMT(BPF_LD | BPF_B | BPF_ABS, XT_IP_VHL),
		BPF_STMT(BPF_ALU | BPF_AND | BPF_K, 0xf0),
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, 0x40, 0, 3),
		BPF_STMT(BPF_LD | BPF_W | BPF_ABS, XT_IP_DST_be32),
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, ip, 0, 1),
		BPF_JUMP(BPF_JMP | BPF_JA, 1, 0, 0), /* kept: to the tail */
		BPF_STMT(BPF_RET | BPF_K, 0),
	};
	/* between the head (what is kept jumps here) and the tail */
	struct sock_filter eth_tcp[] = {
		BPF_STMT(BPF_LD | BPF_H | BPF_ABS, XT_ETH_TYPE_be16),
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, XT_ETHERTYPE_IPV4, 0, 3),
		BPF_STMT(BPF_LD | BPF_B | BPF_ABS, XT_ETH_HLEN + 9), /* IP protocol */
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, IPPROTO_TCP, 0, 1),
		BPF_STMT(BPF_RET | BPF_K, 0),
	};
	struct sock_filter raw_tcp[] = {
		BPF_STMT(BPF_LD | BPF_B | BPF_ABS, 9),
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, IPPROTO_TCP, 0, 1),
		BPF_STMT(BPF_RET | BPF_K, 0),
	};
	struct sock_filter tail_all[] = {
		BPF_STMT(BPF_RET | BPF_K, 0xffffffffu),
	};
	struct sock_filter tail_main[] = {
		BPF_STMT(BPF_LD | BPF_W | BPF_LEN, 0),
		BPF_JUMP(BPF_JMP | BPF_JGT | BPF_K, cap, 1, 0),
		BPF_STMT(BPF_RET | BPF_K, 0xffffffffu),
		BPF_STMT(BPF_RET | BPF_K, PK_MARK_SNAP),
	};
	struct sock_filter tail_big[] = {
		BPF_STMT(BPF_LD | BPF_W | BPF_LEN, 0),
		BPF_JUMP(BPF_JMP | BPF_JGT | BPF_K, cap, 0, 1),
		BPF_STMT(BPF_RET | BPF_K, 0xffffffffu),
		BPF_STMT(BPF_RET | BPF_K, 0),
	};
	const struct sock_filter *head = no_link ? raw : eth;
	size_t nh = no_link ? sizeof(raw) / sizeof(raw[0]) : sizeof(eth) / sizeof(eth[0]);
	const struct sock_filter *tail = mode == FILTER_MAIN ? tail_main : mode == FILTER_BIG ? tail_big : tail_all;
	size_t nt = mode == FILTER_MAIN ? sizeof(tail_main) / sizeof(tail_main[0])
		    : mode == FILTER_BIG ? sizeof(tail_big) / sizeof(tail_big[0])
					 : sizeof(tail_all) / sizeof(tail_all[0]);
	const struct sock_filter *mid = no_link ? raw_tcp : eth_tcp;
	size_t nm = !no_tcp ? 0 : no_link ? sizeof(raw_tcp) / sizeof(raw_tcp[0]) : sizeof(eth_tcp) / sizeof(eth_tcp[0]);
	memcpy(prog_buf, head, nh * sizeof(*head));
	memcpy(prog_buf + nh, mid, nm * sizeof(*mid));
	memcpy(prog_buf + nh + nm, tail, nt * sizeof(*tail));
	struct sock_fprog prog = { .len = (unsigned short)(nh + nm + nt), .filter = prog_buf };

	return setsockopt(fd, SOL_SOCKET, SO_ATTACH_FILTER, &prog, sizeof(prog));
}

/* Slot size for the largest frame the interface carries, as tpacket_rcv lays
 * it out: header, padding so the network header is 16-aligned, frame. */
static uint32_t slot_size(uint32_t mtu, uint32_t hh)
{
	uint32_t netoff = TPACKET_ALIGN(TPACKET2_HDRLEN + (hh > 16 ? hh : 16));
	uint32_t need = netoff + mtu + 4, size = 2048; /* + 4: a VLAN tag left in */

	while (size < need && size < PK_MAX_SLOT)
		size <<= 1;
	return size;
}

static int default_frames(uint32_t bytes, uint32_t frame_size)
{
	uint32_t n = bytes / frame_size;

	return (int)(n < PK_MIN_DEFAULT_FRAMES ? PK_MIN_DEFAULT_FRAMES : n);
}

static void ring_req(struct tpacket_req *req, uint32_t frame_size, int want)
{
	uint32_t block = frame_size > PK_BLOCK_SIZE ? frame_size : PK_BLOCK_SIZE;
	uint32_t per_block = block / frame_size;
	uint32_t nblocks = ((uint32_t)want + per_block - 1) / per_block;

	req->tp_block_size = block;
	req->tp_block_nr = nblocks;
	req->tp_frame_size = frame_size;
	req->tp_frame_nr = nblocks * per_block;
}

struct if_info {
	int ifindex;
	uint16_t type;
	uint8_t mac[6];
	int mtu;
	short flags;
};

static int query_if(int fd, const char *ifname, struct if_info *ii)
{
	struct ifreq ifr;

	memset(&ifr, 0, sizeof(ifr));
	strncpy(ifr.ifr_name, ifname, IFNAMSIZ - 1);
	if (ioctl(fd, SIOCGIFINDEX, &ifr) < 0)
		return errno == ENODEV ? pk_fail(-ENODEV, "no interface %s in this network namespace", ifname)
				       : pk_fail(-errno, "SIOCGIFINDEX %s: %s", ifname, strerror(errno));
	ii->ifindex = ifr.ifr_ifindex;
	if (ioctl(fd, SIOCGIFHWADDR, &ifr) < 0)
		return pk_fail(-errno, "SIOCGIFHWADDR %s: %s", ifname, strerror(errno));
	ii->type = ifr.ifr_hwaddr.sa_family;
	memcpy(ii->mac, ifr.ifr_hwaddr.sa_data, 6);
	if (ioctl(fd, SIOCGIFMTU, &ifr) < 0)
		return pk_fail(-errno, "SIOCGIFMTU %s: %s", ifname, strerror(errno));
	ii->mtu = ifr.ifr_mtu;
	if (ioctl(fd, SIOCGIFFLAGS, &ifr) < 0)
		return pk_fail(-errno, "SIOCGIFFLAGS %s: %s", ifname, strerror(errno));
	ii->flags = ifr.ifr_flags;
	return 0;
}

static int set_opt(int fd, int level, int name, int val, const char *what)
{
	if (setsockopt(fd, level, name, &val, sizeof(val)) < 0)
		return pk_fail(-errno, "setsockopt %s: %s", what, strerror(errno));
	return 0;
}

/* Options, rings and the mapping; p->fd is open, p->no_link and the slot
 * sizes are set. */
static int setup_rings(struct pk_nic *p, const struct xt_packet_cfg *cfg)
{
	struct tpacket_req rx, tx;
	int r, want;

	/* Kernels before 4.20 lack it; the filter drops outgoing frames anyway. */
	(void)set_opt(p->fd, SOL_PACKET, PACKET_IGNORE_OUTGOING, 1, "PACKET_IGNORE_OUTGOING");
	if ((r = set_opt(p->fd, SOL_PACKET, PACKET_VERSION, TPACKET_V2, "PACKET_VERSION")) < 0)
		return r;
	/* Oversize frames: truncated copy in the ring, the whole one queued. */
	if ((r = set_opt(p->fd, SOL_PACKET, PACKET_COPY_THRESH, 1, "PACKET_COPY_THRESH")) < 0)
		return r;
	if (set_opt(p->fd, SOL_SOCKET, SO_RCVBUFFORCE, PK_RCVBUF, "SO_RCVBUFFORCE") < 0)
		(void)set_opt(p->fd, SOL_SOCKET, SO_RCVBUF, PK_RCVBUF, "SO_RCVBUF");
	if (set_opt(p->fd, SOL_SOCKET, SO_SNDBUFFORCE, PK_SNDBUF, "SO_SNDBUFFORCE") < 0)
		(void)set_opt(p->fd, SOL_SOCKET, SO_SNDBUF, PK_SNDBUF, "SO_SNDBUF");
	/* TX: a malformed frame is skipped rather than stopping the ring (must
	 * precede the rings). */
	if (p->tx_ring_mode && (r = set_opt(p->fd, SOL_PACKET, PACKET_LOSS, 1, "PACKET_LOSS")) < 0)
		return r;
	if (cfg->qdisc_bypass &&
	    (r = set_opt(p->fd, SOL_PACKET, PACKET_QDISC_BYPASS, 1, "PACKET_QDISC_BYPASS")) < 0)
		return r;

	want = cfg->rx_ring_frames ? cfg->rx_ring_frames : default_frames(PK_DEFAULT_RX_BYTES, p->rx.frame_size);
	ring_req(&rx, p->rx.frame_size, want);
	if (setsockopt(p->fd, SOL_PACKET, PACKET_RX_RING, &rx, sizeof(rx)) < 0)
		return pk_fail(-errno, "PACKET_RX_RING (%u x %u bytes): %s", rx.tp_frame_nr,
			       rx.tp_frame_size, strerror(errno));
	p->rx.nframes = rx.tp_frame_nr;
	p->map_len = (size_t)rx.tp_block_size * rx.tp_block_nr;
	if (p->tx_ring_mode) {
		want = cfg->tx_ring_frames ? cfg->tx_ring_frames
					   : default_frames(PK_DEFAULT_TX_BYTES, p->tx.frame_size);
		ring_req(&tx, p->tx.frame_size, want);
		if (setsockopt(p->fd, SOL_PACKET, PACKET_TX_RING, &tx, sizeof(tx)) < 0)
			return pk_fail(-errno, "PACKET_TX_RING (%u x %u bytes): %s", tx.tp_frame_nr,
				       tx.tp_frame_size, strerror(errno));
		p->tx.nframes = tx.tp_frame_nr;
		p->map_len += (size_t)tx.tp_block_size * tx.tp_block_nr;
	}
	/* One mapping: the RX ring, then the TX ring. */
	p->map = mmap(NULL, p->map_len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, p->fd, 0);
	if (p->map == MAP_FAILED) {
		p->map = NULL;
		return pk_fail(-errno, "mmap of the rings (%zu bytes): %s", p->map_len, strerror(errno));
	}
	p->rx.base = p->map;
	if (p->tx_ring_mode)
		p->tx.base = p->map + (size_t)rx.tp_block_size * rx.tp_block_nr;
	return 0;
}

/* The big-frame socket (see the top of the file), configured but not bound
 * yet.  Returns 0, or -1 with p->bfd closed: then there is none. */
static int setup_big(struct pk_nic *p, const struct xt_packet_cfg *cfg)
{
	struct tpacket_req req;

	if (p->bfd < 0)
		p->bfd = socket(AF_PACKET, SOCK_RAW | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (p->bfd < 0)
		return -1;
	(void)set_opt(p->bfd, SOL_PACKET, PACKET_IGNORE_OUTGOING, 1, "PACKET_IGNORE_OUTGOING");
	if (set_opt(p->bfd, SOL_PACKET, PACKET_VERSION, TPACKET_V2, "PACKET_VERSION") < 0 ||
	    attach_filter(p->bfd, cfg->ip, p->no_link, FILTER_BIG, p->small_cap, false) < 0)
		goto fail;
	p->big.frame_size = PK_BIG_SLOT;
	ring_req(&req, PK_BIG_SLOT, PK_BIG_FRAMES);
	if (setsockopt(p->bfd, SOL_PACKET, PACKET_RX_RING, &req, sizeof(req)) < 0)
		goto fail;
	p->big.nframes = req.tp_frame_nr;
	p->bmap_len = (size_t)req.tp_block_size * req.tp_block_nr;
	p->bmap = mmap(NULL, p->bmap_len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, p->bfd, 0);
	if (p->bmap == MAP_FAILED) {
		p->bmap = NULL;
		goto fail;
	}
	p->big.base = p->bmap;
	return 0;
fail:
	close(p->bfd);
	p->bfd = -1;
	return -1;
}

/* Checksum offload and TSO through a send-only socket (protocol 0: it
 * receives nothing) with PACKET_VNET_HDR; Ethernet only.  Without it
 * caps.tx_csum stays NONE and caps.tso_max 0; with cfg->no_tso only the
 * latter. */
static void setup_tso(struct pk_nic *p, const struct xt_packet_cfg *cfg)
{
	if (p->no_link || p->tx_ring_mode) {
		if (p->gfd >= 0)
			close(p->gfd);
		p->gfd = -1;
		return;
	}
	if (p->gfd < 0)
		p->gfd = socket(AF_PACKET, SOCK_RAW | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (p->gfd < 0)
		return;
	if (set_opt(p->gfd, SOL_PACKET, PACKET_VNET_HDR, 1, "PACKET_VNET_HDR") < 0) {
		close(p->gfd);
		p->gfd = -1;
		return;
	}
	if (set_opt(p->gfd, SOL_SOCKET, SO_SNDBUFFORCE, PK_SNDBUF, "SO_SNDBUFFORCE") < 0)
		(void)set_opt(p->gfd, SOL_SOCKET, SO_SNDBUF, PK_SNDBUF, "SO_SNDBUF");
	if (cfg->qdisc_bypass)
		(void)set_opt(p->gfd, SOL_PACKET, PACKET_QDISC_BYPASS, 1, "PACKET_QDISC_BYPASS");
	p->gaddr.sll_family = AF_PACKET;
	p->gaddr.sll_ifindex = p->ifindex;
	p->gaddr.sll_protocol = htons(ETH_P_IP);
	/* Bound to the device with protocol 0 (it still receives nothing), a
	 * send needs no address: the kernel takes the bound device instead of
	 * looking the index up (dev_get_by_index) for every frame, and reads
	 * the protocol from the Ethernet header. */
	struct sockaddr_ll b = { .sll_family = AF_PACKET, .sll_ifindex = p->ifindex, .sll_protocol = 0 };
	p->gfd_bound = bind(p->gfd, (struct sockaddr *)&b, sizeof(b)) == 0;
	p->nic.caps.tx_csum = XT_TX_CSUM_PARTIAL;
	if (!cfg->no_tso)
		p->nic.caps.tso_max = 65535u - XT_IP_HLEN - 60u; /* an IPv4 datagram's worth */
}

/* Zero-copy receive of big frames: without a big ring, or the flags' memory,
 * every frame is copied. */
static void setup_hold(struct pk_nic *p)
{
	uint32_t w = PK_HOLD_WINDOW;

	if (p->bfd < 0 || !p->big.nframes)
		return;
	if (w > p->big.nframes / 2)
		w = p->big.nframes / 2;
	p->big_held = calloc(p->big.nframes, 1);
	p->main_held = calloc(p->rx.nframes, 1);
	if (!w || !p->big_held || !p->main_held || p->rx.nframes < 2 * w) {
		free(p->big_held);
		free(p->main_held);
		p->big_held = p->main_held = NULL;
		return;
	}
	p->nic.caps.rx_hold_window = w;
}

static void drop_big(struct pk_nic *p)
{
	if (p->bmap)
		munmap(p->bmap, p->bmap_len);
	p->bmap = NULL;
	if (p->bfd >= 0)
		close(p->bfd);
	p->bfd = -1;
}

static int check_cfg(const struct xt_packet_cfg *cfg)
{
	if (!cfg || !cfg->ifname || !*cfg->ifname || strlen(cfg->ifname) >= IFNAMSIZ)
		return pk_fail(-EINVAL, "interface name missing or longer than %d", IFNAMSIZ - 1);
	if (cfg->ip == 0)
		return pk_fail(-EINVAL, "engine address (cfg.ip) missing");
	if (cfg->rx_ring_frames < 0 || cfg->rx_ring_frames > PK_MAX_RING_FRAMES ||
	    cfg->tx_ring_frames < 0 || cfg->tx_ring_frames > PK_MAX_RING_FRAMES)
		return pk_fail(-EINVAL, "ring sizes must be 0..%d frames", PK_MAX_RING_FRAMES);
	if (cfg->tx_mode != XT_PACKET_TX_RING && cfg->tx_mode != XT_PACKET_TX_SENDMMSG)
		return pk_fail(-EINVAL, "unknown tx_mode %d", cfg->tx_mode);
	return 0;
}

/* Link type, capabilities and slot sizes from the interface. */
static int apply_if(struct pk_nic *p, const struct xt_packet_cfg *cfg, const struct if_info *ii)
{
	uint32_t hh;

	switch (ii->type) {
	case ARPHRD_ETHER:
		p->no_link = false;
		memcpy(p->nic.caps.mac, ii->mac, 6);
		break;
	case ARPHRD_NONE:
	case ARPHRD_RAWIP:
		p->no_link = true;
		break;
	default:
		return pk_fail(-EPROTONOSUPPORT, "%s: link type %u is neither Ethernet nor bare IP",
			       cfg->ifname, ii->type);
	}
	if (!(ii->flags & IFF_UP))
		return pk_fail(-ENETDOWN, "%s is down (ip link set %s up)", cfg->ifname, cfg->ifname);
	if (ii->mtu < 68)
		return pk_fail(-EINVAL, "%s: MTU %d below the IPv4 minimum of 68", cfg->ifname, ii->mtu);
	hh = p->no_link ? 0 : XT_ETH_HLEN;
	p->nic.caps.mtu = ii->mtu > 65535 ? 65535 : (uint16_t)ii->mtu;
	p->nic.caps.no_link_header = p->no_link;
	p->nic.caps.tx_gather = 1; /* sendmmsg takes the pieces; the TX ring copies them */
	p->rx.frame_size = slot_size((uint32_t)ii->mtu, hh);
	p->tx.frame_size = p->rx.frame_size;
	/* tpacket_rcv: the frame starts netoff - hh into the slot */
	p->small_cap = p->rx.frame_size - TPACKET_ALIGN(TPACKET2_HDRLEN + (hh > 16 ? hh : 16)) + hh;
	/* What the kernel takes (packet_snd: MTU + link header, + 4 for a tag). */
	p->tx_cap = (uint32_t)ii->mtu + hh + (p->no_link ? 0 : 4);
	if (p->tx_ring_mode && p->tx_cap > p->tx.frame_size - PK_TX_DATA_OFF)
		p->tx_cap = p->tx.frame_size - PK_TX_DATA_OFF;
	p->ifindex = ii->ifindex;
	/* Ethernet frames go to the bound device, which names their protocol
	 * from the header (packet_parse_headers).  Bare IP has no header to take
	 * it from: name it, or a device that looks (wireguard) drops the frame.
	 * An address costs a device lookup per send, so only here. */
	if (p->no_link) {
		p->txaddr.sll_family = AF_PACKET;
		p->txaddr.sll_ifindex = ii->ifindex;
		p->txaddr.sll_protocol = htons(ETH_P_IP);
		p->txaddr_len = sizeof(p->txaddr);
	}
	return 0;
}

int xt_packet_open(const struct xt_packet_cfg *cfg, struct xt_nic **out)
{
	struct pk_nic *p;
	struct if_info ii = { 0 };
	struct sockaddr_ll sll;
	int r;

	pk_err[0] = '\0';
	if (!out)
		return pk_fail(-EINVAL, "out missing");
	if ((r = check_cfg(cfg)) < 0 || !(p = calloc(1, sizeof(*p)))) {
		if (cfg && cfg->sock_fd > 0)
			close(cfg->sock_fd);
		if (cfg && cfg->big_sock_fd > 0)
			close(cfg->big_sock_fd);
		return r < 0 ? r : pk_fail(-ENOMEM, "out of memory");
	}
	p->nic.ops = &packet_ops;
	p->bfd = cfg->big_sock_fd > 0 ? cfg->big_sock_fd : -1; /* ours from here: pk_free closes it */
	p->gfd = cfg->tso_sock_fd > 0 ? cfg->tso_sock_fd : -1; /* the same */
	p->tx_ring_mode = cfg->tx_mode == XT_PACKET_TX_RING;
	/* Protocol 0: receives nothing until bind() below. */
	p->fd = cfg->sock_fd > 0 ? cfg->sock_fd : socket(AF_PACKET, SOCK_RAW | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (p->fd < 0) {
		r = errno == EPERM || errno == EACCES
			    ? pk_fail(-EPERM, "AF_PACKET socket: CAP_NET_RAW required")
			    : pk_fail(-errno, "AF_PACKET socket: %s", strerror(errno));
		goto fail;
	}
	if ((r = query_if(p->fd, cfg->ifname, &ii)) < 0 || (r = apply_if(p, cfg, &ii)) < 0)
		goto fail;
	if (!cfg->no_big_ring)
		(void)setup_big(p, cfg); /* none: big frames take the copy path */
	else
		drop_big(p);
	p->ip = cfg->ip;
	if (attach_filter(p->fd, cfg->ip, p->no_link, p->bfd >= 0 ? FILTER_MAIN : FILTER_ALL, p->small_cap, false) < 0) {
		r = pk_fail(-errno, "SO_ATTACH_FILTER: %s", strerror(errno));
		goto fail;
	}
	if ((r = setup_rings(p, cfg)) < 0)
		goto fail;
	memset(&sll, 0, sizeof(sll));
	sll.sll_family = AF_PACKET;
	sll.sll_protocol = htons(ETH_P_ALL);
	sll.sll_ifindex = ii.ifindex;
	if (bind(p->fd, (struct sockaddr *)&sll, sizeof(sll)) < 0) {
		r = errno == ENETDOWN ? pk_fail(-ENETDOWN, "%s is down", cfg->ifname)
				      : pk_fail(-errno, "bind to %s: %s", cfg->ifname, strerror(errno));
		goto fail;
	}
	/* After the main socket: the kernel serves the newest hook first, so a
	 * big frame is in its ring before its marker is in the main one. */
	if (p->bfd >= 0 && bind(p->bfd, (struct sockaddr *)&sll, sizeof(sll)) < 0) {
		drop_big(p);
		if (attach_filter(p->fd, cfg->ip, p->no_link, FILTER_ALL, 0, false) < 0) {
			r = pk_fail(-errno, "SO_ATTACH_FILTER: %s", strerror(errno));
			goto fail;
		}
	}
	if (cfg->have_mac && !p->no_link && memcmp(cfg->mac, ii.mac, 6) != 0) {
		/* Dropped with the socket; the kernel counts every member's entry. */
		struct packet_mreq mr = { .mr_ifindex = ii.ifindex, .mr_type = PACKET_MR_UNICAST, .mr_alen = 6 };
		memcpy(mr.mr_address, cfg->mac, 6);
		if (setsockopt(p->fd, SOL_PACKET, PACKET_ADD_MEMBERSHIP, &mr, sizeof(mr)) < 0) {
			r = pk_fail(-errno, "%s: cannot add the engine's MAC to the interface (PACKET_MR_UNICAST): %s",
				    cfg->ifname, strerror(errno));
			goto fail;
		}
	}
	setup_tso(p, cfg);
	setup_hold(p);
	*out = &p->nic;
	return 0;
fail:
	pk_free(p);
	return r;
}
