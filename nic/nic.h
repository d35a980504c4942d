/* NIC backends behind one small vtable.
 *
 * A backend embeds struct xt_nic as its first member.  Wrappers (fault
 * injection, pcap capture) are backends that forward to an inner one, so
 * they stack on any backend.
 */
#ifndef XT_NIC_H
#define XT_NIC_H

#include <errno.h>
#include <stdint.h>
#include "../stack/xtcp.h"

struct xt_nic;

/* A flow to steer (host order); see flow_add below. */
struct xt_flow {
	uint32_t local_ip, remote_ip;
	uint16_t local_port, remote_port;
};

struct xt_nic_caps {
	uint8_t mac[6];
	uint16_t mtu;          /* IP MTU */
	uint8_t rx_csum;       /* backend verifies checksums on receive */
	uint8_t tx_csum;       /* XT_TX_CSUM_*: which checksums the backend fills on send */
	uint8_t tx_gather;     /* takes frames whose payload follows in pieces (XT_FRAME_GATHER) */
	uint32_t rx_hold_window; /* > 0: received frames carry ref and pos, and a frame may be
				  * kept (rx_hold) while fewer than this many newer ones
				  * arrived; see xt_stack_cfg.rx_hold_window */
	uint8_t no_link_header;/* frames are bare IP (tun) */
	uint32_t tso_max;      /* > 0: takes TCP segments of up to this much payload
				* flagged XT_FRAME_GSO_SIZE and cuts them (TSO/GSO) */
};

struct xt_nic_ops {
	const char *name;
	/* Up to n received frames; frames[i].data stays valid until the next
	 * rx_burst on this nic or its close.  Returns the count, or -errno. */
	int (*rx_burst)(struct xt_nic *nic, struct xt_frame *frames, int n, xt_time_t now);
	/* Takes (copies) up to n frames; returns how many it took, or -errno.
	 * A frame flagged XT_FRAME_GATHER (only if caps.tx_gather) continues
	 * in its pay pieces. */
	int (*tx_burst)(struct xt_nic *nic, const struct xt_frame *frames, int n, xt_time_t now);
	/* fd that becomes readable when frames arrive after arm_wake, or -1.
	 * arm_wake returns -EAGAIN when a frame the engine keeps (rx_hold)
	 * would keep that fd readable: the caller gives the kept frames back
	 * (xt_stack_rx_unhold_all) and arms again. */
	int (*wake_fd)(struct xt_nic *nic);
	int (*arm_wake)(struct xt_nic *nic);
	/* When a frame held back (delay, bandwidth) becomes receivable somewhere
	 * behind this nic, or XT_TIME_NEVER. */
	xt_time_t (*next_deadline)(struct xt_nic *nic);
	void (*close)(struct xt_nic *nic);
	/* Flow steering (optional; NULL: the backend sees every frame of the
	 * link anyway, as AF_PACKET does).  flow_add steers TCP of one flow to
	 * this nic: a listening socket's (local ip, local port) when
	 * remote_port is 0, else a connection's 5-tuple.  Returns an id >= 0
	 * for flow_del, or -errno.  Wrappers forward both to their inner nic. */
	int (*flow_add)(struct xt_nic *nic, const struct xt_flow *flow);
	int (*flow_del)(struct xt_nic *nic, int id);
	/* Zero-copy receive (caps.rx_hold_window > 0): the frame of ref, lent
	 * by rx_burst, stays the caller's past the next rx_burst (rx_hold),
	 * until rx_release.  Wrappers forward both. */
	void (*rx_hold)(struct xt_nic *nic, uint64_t ref);
	void (*rx_release)(struct xt_nic *nic, uint64_t ref);
	/* Zero-copy send (optional; NULL: gathered payload is copied): the
	 * engine's xt_stack_cfg.tx_buf_reg, tx_buf_unreg and tx_fence, which
	 * see.  Wrappers forward all three. */
	uint64_t (*tx_buf_reg)(struct xt_nic *nic, void *buf, uint32_t len);
	void (*tx_buf_unreg)(struct xt_nic *nic, uint64_t handle);
	int (*tx_fence)(struct xt_nic *nic);
};

struct xt_nic {
	const struct xt_nic_ops *ops;
	struct xt_nic_caps caps;
};

static inline int xt_nic_rx(struct xt_nic *n, struct xt_frame *f, int cnt, xt_time_t now)
{ return n->ops->rx_burst(n, f, cnt, now); }
static inline int xt_nic_tx(struct xt_nic *n, const struct xt_frame *f, int cnt, xt_time_t now)
{ return n->ops->tx_burst(n, f, cnt, now); }
static inline void xt_nic_rx_hold(struct xt_nic *n, uint64_t ref) { n->ops->rx_hold(n, ref); }
static inline void xt_nic_rx_release(struct xt_nic *n, uint64_t ref) { n->ops->rx_release(n, ref); }
static inline uint64_t xt_nic_tx_buf_reg(struct xt_nic *n, void *buf, uint32_t len)
{ return n->ops->tx_buf_reg ? n->ops->tx_buf_reg(n, buf, len) : 0; }
static inline void xt_nic_tx_buf_unreg(struct xt_nic *n, uint64_t handle)
{ if (n->ops->tx_buf_unreg) n->ops->tx_buf_unreg(n, handle); }
static inline int xt_nic_tx_fence(struct xt_nic *n) { return n->ops->tx_fence ? n->ops->tx_fence(n) : 0; }
static inline xt_time_t xt_nic_deadline(struct xt_nic *n) { return n->ops->next_deadline(n); }
static inline void xt_nic_close(struct xt_nic *n) { n->ops->close(n); }
/* -EOPNOTSUPP when the backend has no steering (nothing to do). */
static inline int xt_nic_flow_add(struct xt_nic *n, const struct xt_flow *f)
{ return n->ops->flow_add ? n->ops->flow_add(n, f) : -EOPNOTSUPP; }
static inline int xt_nic_flow_del(struct xt_nic *n, int id)
{ return n->ops->flow_del ? n->ops->flow_del(n, id) : -EOPNOTSUPP; }

/* loop.c: two ends of an in-memory wire in virtual time.  Each direction has
 * a propagation delay and an optional bandwidth (frames queue behind each
 * other; a bounded queue drops at the tail like a real link). */
struct xt_loop_cfg {
	xt_time_t latency;     /* one-way delay, ns */
	uint64_t bandwidth_bps;/* 0: unlimited */
	uint32_t queue_frames; /* per direction (default 1024) */
	uint16_t mtu;          /* default 1500 */
	uint8_t mac_a[6], mac_b[6];
};
int xt_loop_pair(const struct xt_loop_cfg *cfg, struct xt_nic **a, struct xt_nic **b);

/* fault.c: seeded, deterministic fault injection on the TX side of inner. */
struct xt_fault_cfg {
	uint64_t seed;
	double loss;      /* probability a frame is dropped */
	double dup;       /* ... is sent twice */
	double reorder;   /* ... is held back by reorder_delay */
	double corrupt;   /* ... has one random bit flipped */
	xt_time_t delay;  /* added to every frame */
	xt_time_t reorder_delay;
	/* drop frames [burst_start, burst_start + burst_len) counted from the
	 * first frame sent, for burst-loss tests (burst_len 0: off) */
	uint64_t burst_start, burst_len;
};
struct xt_fault_stats { uint64_t frames, lost, dupped, reordered, corrupted; };
struct xt_nic *xt_fault_wrap(struct xt_nic *inner, const struct xt_fault_cfg *cfg);
const struct xt_fault_stats *xt_fault_stats(struct xt_nic *fault_nic);

/* pcap.c: writes every frame received and sent to a pcap file (LINKTYPE_ETHERNET,
 * or LINKTYPE_RAW when caps.no_link_header). */
struct xt_nic *xt_pcap_wrap(struct xt_nic *inner, const char *path);

#endif
