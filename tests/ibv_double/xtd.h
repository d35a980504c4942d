/* Test double of libibverbs: the control interface tests use.
 *
 * build/ibv_double/libibverbs.so.1 (tests/ibv_double/build.sh) exports the
 * symbols of rdma-core's libibverbs that xtcp uses, at their versions
 * (IBVERBS_1.0, IBVERBS_1.1), and fills a real struct verbs_context, so code
 * built against the system's <infiniband/verbs.h> runs on it unchanged.  It
 * implements raw packet QPs over a wire chosen by XTCP_DOUBLE_WIRE:
 *
 *   mem (default)     two devices, xtd0 (netdev xtdn0, MAC 02:00:00:00:d0:00)
 *                     and xtd1 (netdev xtdn1, 02:00:00:00:d0:01), joined by
 *                     an in-memory wire inside the process: a frame sent on
 *                     one is steered on the other during ibv_post_send.
 *   packet:IF[,IF2]   one device per interface (xtd0 on IF, ...), frames
 *                     sent and received with an AF_PACKET socket and a
 *                     receive thread.  The kernel keeps seeing every frame:
 *                     a packet socket cannot steal.
 *
 * Devices are found the way the backend finds real ones: each has a sysfs
 * entry (ibdev_path) in a temporary directory with
 * ports/1/gid_attrs/ndevs/0 naming its netdev and, for the mem wire,
 * device/net/<netdev>/{address,mtu} standing in for the missing netdev.
 *
 * XTCP_DOUBLE_TRACE=FILE appends one line per flow rule created or destroyed
 * (pid, device, handle, priority, match) to FILE, for whole-system tests
 * that cannot call the control functions inside the process under test.
 *
 * XTCP_DOUBLE_LATE_DMA=1 starts every device in the XTD_LATE_DMA mode.
 *
 * XTCP_DOUBLE_CAPS=-csum,-tso,... removes capabilities from every device at
 * start (names as in XTD_CAP_*: raw, csum, tso, flow, dont_trap, inline,
 * access, netraw, eth).
 *
 * The control functions below are exported at version XTCP_DOUBLE_1.0; tests
 * resolve them with dlsym() on the library that XTCP_IBVERBS_LIB names.
 */
#ifndef XTD_H
#define XTD_H

#include <stddef.h>
#include <stdint.h>

/* Capabilities of a device; all on by default. */
#define XTD_CAP_RAW 0x001u       /* raw packet QPs can be created */
#define XTD_CAP_CSUM 0x002u      /* IBV_DEVICE_RAW_IP_CSUM / IBV_RAW_PACKET_CAP_IP_CSUM */
#define XTD_CAP_TSO 0x004u       /* tso_caps for raw packet QPs */
#define XTD_CAP_FLOW 0x008u      /* ibv_create_flow */
#define XTD_CAP_DONT_TRAP 0x010u /* IBV_FLOW_ATTR_FLAGS_DONT_TRAP */
#define XTD_CAP_INLINE 0x020u    /* inline sends (256 bytes) */
#define XTD_CAP_ACCESS 0x040u    /* off: ibv_open_device fails with EACCES */
#define XTD_CAP_NETRAW 0x080u    /* off: behave as if the process lacked CAP_NET_RAW */
#define XTD_CAP_ETH 0x100u       /* off: the port's link layer is InfiniBand */
#define XTD_CAP_ALL 0x1ffu

enum xtd_fault {
	XTD_POST_SEND_FAIL = 1, /* the next count ibv_post_send calls fail with ENOMEM */
	XTD_POST_RECV_FAIL,     /* the next count ibv_post_recv calls fail with ENOMEM */
	XTD_SEND_CQE_ERR,       /* the next count send WRs complete with IBV_WC_LOC_QP_OP_ERR (QP -> ERR) */
	XTD_RECV_CQE_ERR,       /* the next count received frames complete with IBV_WC_LOC_LEN_ERR (QP -> ERR) */
	XTD_QP_FATAL,           /* every QP of the device -> ERR, IBV_EVENT_QP_FATAL */
	XTD_PORT_DOWN,          /* port DOWN, IBV_EVENT_PORT_ERR; frames are lost both ways */
	XTD_PORT_UP,            /* port ACTIVE, IBV_EVENT_PORT_ACTIVE */
	XTD_DEVICE_FATAL,       /* IBV_EVENT_DEVICE_FATAL; every later verb fails */
	XTD_QP_RESET_FAIL,      /* the next count modify_qp to RESET fail with EIO */
	XTD_QP_ERR,             /* every QP of the device -> ERR (receive WRs flushed), no async event */
	XTD_LATE_DMA,           /* count 1: send WRs are read (gathered, put on the wire, completed)
				 * only at the next ibv_poll_cq of any CQ, as a device reads
				 * memory after the post returns; count 0: at post time (default) */
};

struct xtd_stats {
	uint64_t post_send_calls, send_wrs, send_signalled, send_inline, send_ip_csum, send_tso;
	uint64_t post_recv_calls, recv_wrs;
	uint64_t wire_tx_frames, wire_tx_bytes; /* frames put on the wire (after TSO) */
	uint64_t rx_frames;        /* frames written into a receive WR */
	uint64_t rx_csum_ok;       /* ... completed with IBV_WC_IP_CSUM_OK */
	uint64_t rx_no_wqe;        /* dropped: no receive WR posted */
	uint64_t rx_drop_state;    /* dropped: QP not in RTR/RTS */
	uint64_t drop_link;        /* dropped: port down */
	uint64_t kernel_frames;    /* frames no trapping rule took: the kernel's */
	uint64_t flow_copies;      /* deliveries through DONT_TRAP rules */
	uint64_t cqes, error_cqes, flush_cqes;
	uint64_t cq_events, cq_events_acked;
	uint64_t async_events;     /* raised on this device's contexts */
	uint64_t async_read, async_acked; /* process-wide: an event does not name its device */
	uint64_t cq_overruns;
	uint64_t flows_created, flows_destroyed, flows_active;
	uint64_t injected;         /* faults fired */
	uint64_t tx_oversize;      /* non-TSO frames longer than MTU + 18: dropped */
	uint64_t wire_errors;      /* AF_PACKET send failures */
	uint64_t rx_gso_split;     /* oversize frames from the packet wire cut to MTU */
	uint64_t qps_active, qp_to_err;
	uint64_t max_inline_seen;  /* longest inline send */
	uint64_t objects_live;     /* contexts, PDs, MRs, channels, CQs, QPs, flows not yet destroyed */
	uint64_t late_wrs;         /* send WRs read late (XTD_LATE_DMA) */
	uint64_t late_pending;     /* ... posted and not read yet */
	uint64_t dereg_busy;       /* ibv_dereg_mr of an MR a posted, unread WR points into: EBUSY */
	uint64_t send_multi_sge;   /* non-inline send WRs with more than one SGE */
};

typedef int (*xtd_ndevs_fn)(void);
typedef unsigned int (*xtd_set_caps_fn)(int dev, unsigned int caps); /* returns the old caps */
typedef int (*xtd_inject_fn)(int dev, int fault, int count);
typedef int (*xtd_stats_fn)(int dev, struct xtd_stats *out);
typedef int (*xtd_wire_input_fn)(int dev, const void *frame, size_t len);
typedef void (*xtd_reset_fn)(void); /* stats, faults and caps back to defaults */
typedef int (*xtd_qp_state_fn)(int dev); /* state of the device's first QP, or -1 */
typedef int (*xtd_set_wire_fn)(const char *spec); /* -EBUSY while a device is open */
typedef const char *(*xtd_sysfs_root_fn)(void);

#endif
