/* ibverbs backend: an IBV_QPT_RAW_PACKET queue pair on the RDMA device behind
 * a network interface (mlx5: ConnectX-4 Lx and later; see "The verbs backend"
 * in README.md).
 *
 * Loading: libibverbs is opened at run time with dlopen() and every function
 * is looked up with dlvsym() at its symbol version (IBVERBS_1.1; IBVERBS_1.0
 * for the completion-channel calls), so libxtcp.so loads on hosts without
 * rdma-core.  The library is cfg.lib, else $XTCP_IBVERBS_LIB, else
 * "libibverbs.so.1" (tests point XTCP_IBVERBS_LIB at the test double in
 * tests/ibv_double/).  The data path (post_send, post_recv, poll_cq,
 * req_notify_cq, create/destroy_flow, query_device_ex) goes through the ops
 * tables of struct ibv_context / struct verbs_context, as the inline
 * functions of verbs.h do; nothing here links against libibverbs.
 *
 * Device: /sys/class/net/IF/device/infiniband/<dev>, else the device whose
 * sysfs entry names IF (<ibdev_path>/ports/N/gid_attrs/ndevs/0, or
 * <ibdev_path>/device/net/IF); the port is the one whose netdev is IF (mlx4
 * has two per device), else dev_port + 1.  The port must be ACTIVE and
 * Ethernet.  MAC and MTU come from the interface in the current network
 * namespace (ioctl: /sys may belong to another namespace after setns), or
 * from the device's sysfs entry when the interface is not visible here.
 *
 * Resources: one PD; one buffer pool (mmap, page aligned) registered once as
 * one MR and split into RX slots, TX slots and a few large TSO slots; RX and
 * TX CQs on one completion channel whose fd is non-blocking; one raw packet
 * QP taken RESET -> INIT (port) -> RTR -> RTS.
 *
 * Receive: every free RX slot is posted; slots come back in batches
 * (cfg.rx_batch WRs per ibv_post_recv).  rx_burst lends the slots of the
 * frames it returns until the next rx_burst (nic.h), then queues them for
 * reposting.  A frame the device marked IBV_WC_IP_CSUM_OK is passed as is;
 * IPv4/TCP frames without the mark are checked in software and dropped when
 * wrong, so caps.rx_csum is true whenever the device verifies checksums.
 *
 * Transmit: tx_burst copies.  Frames up to the inline limit are posted
 * IBV_SEND_INLINE straight from the caller's buffer (no copy into the pool);
 * larger ones are copied into the TX slot of their send-queue entry.  Every
 * cfg.signal_every-th WR is IBV_SEND_SIGNALED and its completion frees every
 * entry before it (completions on one send queue arrive in order).  IPv4
 * frames get IBV_SEND_IP_CSUM when the device offers it (caps.tx_csum: the
 * engine leaves the IP and TCP checksums to the device); otherwise the engine
 * computes them.  A TCP frame longer than MTU + 14 goes out as one IBV_WR_TSO
 * when the QP has TSO, and is dropped (counted) otherwise.
 *
 * Flow steering (ibv_create_flow):
 *   - xt_verbs_flow_add_listen: (dst MAC, dst IP, TCP dst port), priority 1
 *   - xt_verbs_flow_add_conn:   the 5-tuple, priority 0
 *   - steer IP mode: one rule for all IPv4 to cfg.ip, priority 2 (the engine
 *     has an address of its own that the kernel does not use)
 *   - ARP: ethertype 0x0806 with IBV_FLOW_ATTR_FLAGS_DONT_TRAP, so every ARP
 *     frame reaches both the kernel and the engine.  When the kernel owns
 *     cfg.ip (the engine shares the interface's address and MAC) the kernel
 *     answers ARP requests for it, so requests for cfg.ip are dropped here
 *     (one reply, not two) and the engine learns neighbours from replies and
 *     from other requests.  Otherwise the engine answers for its address.
 *     A device without DONT_TRAP: no ARP rule (stealing ARP would break the
 *     kernel's own neighbour resolution); the caller seeds the engine from
 *     the kernel's table (xt_verbs_kernel_neigh) and, with an address of
 *     its own, needs proxy ARP (ip neigh add proxy IP dev IF).
 *   - ICMP to cfg.ip in flows mode: DONT_TRAP too; echo requests are left to
 *     the kernel (which owns the address), errors also reach the engine.
 * Rules live as long as the QP, across error recovery.
 *
 * Waking: wake_fd is an epoll set holding the completion channel's fd, the
 * device's async event fd and an eventfd.  arm_wake requests a notification
 * on the RX CQ (ibv_req_notify_cq), then polls once: completions that were
 * already queued (no event will come for them) are kept and the eventfd is
 * written, so the set is readable exactly when rx_burst has work.  Every CQ
 * event read from the channel is acknowledged (ibv_ack_cq_events).
 *
 * Failures, each reported by one line through cfg.log (and the counters):
 *   - error completion (not a flush) or QP fatal event: the QP is moved to
 *     ERR, its flushed WRs reclaimed, then RESET -> INIT -> RTR -> RTS and
 *     the receive queue refilled; frames in flight are lost (TCP resends)
 *   - ibv_post_send failure: the frames from the failing WR on are refused
 *     (the engine counts tx_drop_backend; TCP resends)
 *   - port down (IBV_EVENT_PORT_ERR): tx_burst refuses frames and arm_wake
 *     returns -ENETDOWN once; port active again: the QP is checked
 *     (ibv_query_qp) and recovered if it is not RTS, and traffic resumes
 *   - device fatal: the nic is dead; every call returns -ENODEV and the
 *     caller falls back (close it, open another backend)
 *
 * Not thread-safe: one thread at a time drives a nic (the engine's lock).
 */
#ifndef XT_VERBS_H
#define XT_VERBS_H

#include <stdint.h>
#include "nic.h"

enum xt_verbs_steer {
	XT_VERBS_STEER_AUTO = 0,  /* FLOWS when the kernel owns cfg.ip on the interface, else IP */
	XT_VERBS_STEER_IP = 1,    /* one rule: all IPv4 to cfg.ip (an address of the engine's own) */
	XT_VERBS_STEER_FLOWS = 2, /* only listen and connection rules (shared address) */
};

enum xt_verbs_log_level { XT_VERBS_LOG_ERROR, XT_VERBS_LOG_WARN, XT_VERBS_LOG_INFO };
typedef void (*xt_verbs_log_fn)(void *ctx, int level, const char *msg);

struct xt_verbs_cfg {
	const char *ifname;
	uint32_t ip;          /* host order: the engine's address */
	const char *lib;      /* NULL: $XTCP_IBVERBS_LIB, else "libibverbs.so.1" */
	int steer;            /* enum xt_verbs_steer */
	int rx_depth;         /* receive WRs kept posted (0: 1024) */
	int tx_depth;         /* send queue entries (0: 1024) */
	int rx_batch;         /* receive WRs per ibv_post_recv (0: 32) */
	int signal_every;     /* one signalled send WR every N (0: 32; <= tx_depth / 2) */
	int inline_max;       /* bytes sent inline (0: up to 256, as the QP allows; -1: never) */
	int no_csum_offload;  /* 1: software checksums even if the device offers them */
	int no_tso;           /* 1: no TSO QP */
	int no_arp_rule;      /* 1: no ARP rule (neighbours from the kernel) */
	int have_mac;         /* 1: the engine's own MAC, mac, is the rules' destination */
	uint8_t mac[6];       /*    (an own address only: -EINVAL if the kernel owns ip) */
	xt_verbs_log_fn log;  /* one line per failure and recovery; NULL: none */
	void *log_ctx;
};

/* Opens the backend.  Returns 0 and *out, or -errno; the reason, in words
 * (what is missing and how to fix it), is then available from
 * xt_verbs_error() on the same thread:
 *   -ENOENT     libibverbs cannot be loaded (rdma-core not installed)
 *   -ENOSYS     the library lacks a symbol at the required version
 *   -ENODEV     no RDMA device behind the interface (or no such interface)
 *   -ENETDOWN   the port is not ACTIVE
 *   -EPROTONOSUPPORT  the port is not Ethernet (InfiniBand link layer)
 *   -EPERM      no CAP_NET_RAW (raw packet QPs need it)
 *   -EOPNOTSUPP the device has no raw packet QPs or no flow steering
 *   -EACCES     /dev/infiniband/uverbsN not accessible
 *   -ENOMEM     memory, or the locked-memory limit (ulimit -l) for the MR
 *   -EINVAL     bad cfg */
int xt_verbs_open(const struct xt_verbs_cfg *cfg, struct xt_nic **out);
const char *xt_verbs_error(void);

/* --- flow steering: called by the socket layer --------------------------- */
/* Also reachable through the vtable (nic.h flow_add/flow_del), which is how
 * the shim uses them (preload/steer.c). */

struct xt_verbs_tuple {
	uint32_t local_ip, remote_ip;     /* host order */
	uint16_t local_port, remote_port; /* host order */
};

/* Steers TCP to (ip, port) to this QP (ip 0: cfg.ip).  Returns a flow id
 * (>= 0) for xt_verbs_flow_del, or -errno (-EOPNOTSUPP: the device refused
 * the rule; -ENOSPC: too many rules; -ENODEV: nic dead). */
int xt_verbs_flow_add_listen(struct xt_nic *nic, uint32_t ip, uint16_t port);
/* Steers one connection to this QP (before the SYN leaves for active opens). */
int xt_verbs_flow_add_conn(struct xt_nic *nic, const struct xt_verbs_tuple *t);
/* Removes a rule; -ENOENT for an unknown id. */
int xt_verbs_flow_del(struct xt_nic *nic, int flow_id);

/* --- introspection ------------------------------------------------------------ */

struct xt_verbs_info {
	char device[64];        /* e.g. mlx5_0 */
	uint8_t port;
	uint8_t link_up;
	uint8_t kernel_owns_ip; /* cfg.ip is one of the interface's kernel addresses */
	uint8_t steer;          /* XT_VERBS_STEER_IP or _FLOWS */
	uint8_t arp_rule;       /* the DONT_TRAP ARP rule is in place */
	uint8_t icmp_rule;
	uint8_t tx_csum, rx_csum;
	uint8_t dead;           /* device fatal */
	uint32_t inline_max;    /* bytes sent inline (0: none) */
	uint32_t tso_max;       /* largest TSO send (0: no TSO) */
	uint8_t zerocopy;       /* sends read registered send buffers in place */
	uint32_t qp_num;
	int qp_state;           /* enum ibv_qp_state as last known */
	int rx_depth, tx_depth, signal_every, rx_batch;
	int flows;              /* rules in place (including ARP/ICMP/IP) */
	uint64_t mr_bytes;      /* size of the registered pool */
};
int xt_verbs_info(struct xt_nic *nic, struct xt_verbs_info *out);

struct xt_verbs_stats {
	uint64_t rx_frames, rx_bytes;
	uint64_t rx_posted, rx_post_calls;  /* receive WRs posted, ibv_post_recv calls */
	uint64_t rx_csum_hw;        /* IBV_WC_IP_CSUM_OK */
	uint64_t rx_csum_sw;        /* checked in software */
	uint64_t rx_csum_bad;       /* dropped: bad checksum */
	uint64_t rx_kernel_arp;     /* ARP requests for a kernel-owned address: left to the kernel */
	uint64_t rx_kernel_icmp;    /* ICMP echo requests: left to the kernel */
	uint64_t tx_frames, tx_bytes;
	uint64_t tx_inline;         /* frames sent inline */
	uint64_t tx_signalled;      /* WRs posted IBV_SEND_SIGNALED */
	uint64_t tx_csum_offload;   /* WRs posted IBV_SEND_IP_CSUM */
	uint64_t tx_tso;            /* IBV_WR_TSO sends */
	uint64_t tx_full;           /* frames refused: send queue full */
	uint64_t tx_oversize;       /* frames dropped: too long, no TSO */
	uint64_t tx_post_errors;    /* ibv_post_send failures */
	uint64_t tx_link_down;      /* frames refused: port down */
	uint64_t tx_qp_error;       /* frames refused: QP in error and its reset failed */
	uint64_t cq_events;         /* completion events read (and acknowledged) */
	uint64_t cq_errors;         /* error completions other than flushes */
	uint64_t flush_errors;      /* IBV_WC_WR_FLUSH_ERR completions */
	uint64_t qp_recoveries;     /* ERR -> RESET -> RTS cycles done */
	uint64_t qp_recovery_failures;
	uint64_t async_events;
	uint64_t port_down, port_up;
	uint64_t flows_added, flows_removed, flow_errors;
	uint64_t rx_kept;           /* frames the engine kept past the next rx_burst (read in place) */
	uint64_t tx_zerocopy;       /* WRs whose payload the device read from the send buffer */
	uint64_t tx_buf_regs;       /* send buffers registered (ibv_reg_mr) */
	uint64_t tx_buf_reg_failures; /* ... refused (locked-memory limit): those copy */
	uint64_t tx_buf_deregs;
	uint64_t tx_fence_waits;    /* fences that found zero-copy WRs not completed yet, and waited */
	uint64_t tx_fence_failures; /* fences that could not confirm (the buffer is kept) */
};
int xt_verbs_stats(struct xt_nic *nic, struct xt_verbs_stats *out);

/* --- what the kernel knows about the interface ------------------------------- */

/* The interface's first IPv4 address and netmask (getifaddrs) and the
 * default gateway through it (/proc/net/route).  Host order; 0 when absent.
 * Returns 0, or -ENODEV when the interface has no IPv4 address. */
int xt_verbs_kernel_addr(const char *ifname, uint32_t *ip, uint32_t *netmask, uint32_t *gw);

struct xt_verbs_neigh {
	uint32_t ip;   /* host order */
	uint8_t mac[6];
};
/* Complete entries of the kernel's neighbour table on ifname (/proc/net/arp),
 * for xt_arp_add.  Returns how many were stored (at most max), or -errno. */
int xt_verbs_kernel_neigh(const char *ifname, struct xt_verbs_neigh *out, int max);

/* --- readiness probe (tools/xtcp-verbs-check) --------------------------------- */

enum xt_verbs_check {
	XT_VCHK_LIBRARY,    /* libibverbs loads, every symbol at its version */
	XT_VCHK_INTERFACE,  /* the interface exists */
	XT_VCHK_DEVICE,     /* an RDMA device behind it */
	XT_VCHK_OPEN,       /* the device opens (/dev/infiniband/uverbsN) */
	XT_VCHK_PORT,       /* port ACTIVE, Ethernet link layer */
	XT_VCHK_CAP_NET_RAW,/* the process has CAP_NET_RAW */
	XT_VCHK_MEMLOCK,    /* the pool can be pinned (RLIMIT_MEMLOCK or CAP_IPC_LOCK) */
	XT_VCHK_RAW_QP,     /* a raw packet QP can be created and brought to RTS */
	XT_VCHK_FLOW,       /* a flow rule can be created */
	XT_VCHK_DONT_TRAP,  /* a DONT_TRAP (copy) rule can be created: ARP shared with the kernel */
	XT_VCHK_CSUM,       /* IP/TCP checksum offload */
	XT_VCHK_TSO,        /* TSO on raw packet QPs */
	XT_VCHK_INLINE,     /* inline sends */
	XT_VCHK_COUNT
};
enum xt_vchk_status { XT_VCHK_SKIP, XT_VCHK_OK, XT_VCHK_WARN, XT_VCHK_FAIL };

struct xt_verbs_probe {
	int status[XT_VCHK_COUNT];  /* enum xt_vchk_status */
	int err[XT_VCHK_COUNT];     /* errno of a failed step, 0 otherwise */
	char detail[XT_VCHK_COUNT][256];
	char device[64];
	char driver[64];            /* kernel driver of the PCI function, if known */
	char lib[128];              /* the library loaded */
	uint8_t port;
	uint32_t inline_max, tso_max;
};
/* Runs every check it can (a failed step skips those that need it). Returns
 * the number of failed checks. */
int xt_verbs_probe(const char *ifname, const char *lib, struct xt_verbs_probe *out);
const char *xt_verbs_check_name(int check);

#endif
