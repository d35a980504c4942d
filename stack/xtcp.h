/* xtcp engine: public API.
 *
 * The engine is pure: it reads no clock (time is an argument), owns no file
 * descriptors, never touches errno and keeps no global state.  Several engines
 * may live in one process.  Functions return 0 / a count on success and a
 * negative errno value (-EAGAIN, -ECONNRESET, ...) on failure; only preload/
 * turns those into errno.
 *
 * Addresses and ports cross this API in host byte order.
 */
#ifndef XTCP_H
#define XTCP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Time: nanoseconds on the caller's monotonic clock. */
typedef uint64_t xt_time_t;
#define XT_TIME_NEVER UINT64_MAX
#define XT_US(x) ((xt_time_t)(x) * 1000ull)
#define XT_MS(x) ((xt_time_t)(x) * 1000000ull)
#define XT_SEC(x) ((xt_time_t)(x) * 1000000000ull)

struct xt_stack;

/* One link-layer frame.  data is only borrowed for the duration of a call. */
struct xt_frame {
	const uint8_t *data;
	uint32_t len;   /* bytes at data */
	uint32_t flags; /* XT_FRAME_*: CSUM_OK on input, the GSO size on output */
	/* Output, with XT_FRAME_GATHER in flags only: TCP payload that follows
	 * data on the wire, read in place from the socket's send buffer (two
	 * pieces when that ring wraps).  Borrowed like data. */
	const uint8_t *pay[2];
	uint32_t pay_len[2];
	/* ... and the handle tx_buf_reg gave for the send buffer they are in
	 * (0: none, the backend copies them). */
	uint64_t pay_key;
	/* Input, with xt_stack_cfg.rx_hold_window: ref nonzero means the engine
	 * may keep the frame past the call (payload read in place by the
	 * application, see rx_hold) until it calls rx_release(ref); pos is the
	 * backend's receive position, which grows by at least one per frame. */
	uint64_t ref, pos;
};
/* The IPv4 and TCP checksums need no check: the frame was made on this host
 * with checksum offload (Linux CHECKSUM_PARTIAL, e.g. from a veth peer), so
 * its checksum field may hold only the pseudo-header sum, or a device
 * verified it.  Set by receiving backends; the engine then skips both sums. */
#define XT_FRAME_CSUM_OK 0x1u
/* Output: a TCP segment longer than one MSS, to be cut by the backend into
 * segments of XT_FRAME_GSO_SIZE(flags) payload bytes each (TSO/GSO); its
 * TCP checksum field holds the pseudo-header sum (Linux CHECKSUM_PARTIAL).
 * Only sent when xt_stack_cfg.tso_max and tx_gather are set (its payload is
 * always gathered). */
#define XT_FRAME_GSO_SHIFT 16
#define XT_FRAME_GSO_SIZE(flags) ((flags) >> XT_FRAME_GSO_SHIFT)
/* Output: the frame continues in pay[0] and pay[1] (xt_stack_cfg.tx_gather). */
#define XT_FRAME_GATHER 0x2u
/* Output: the TCP checksum field holds the pseudo-header sum for the backend
 * to complete over the segment (xt_stack_cfg.tx_csum_offload ==
 * XT_TX_CSUM_PARTIAL); set on every TCP frame, TSO or not. */
#define XT_FRAME_CSUM_PARTIAL 0x4u

/* Length of the frame on the wire: data and any gathered payload. */
static inline uint32_t xt_frame_wire_len(const struct xt_frame *f)
{
	return (f->flags & XT_FRAME_GATHER) ? f->len + f->pay_len[0] + f->pay_len[1] : f->len;
}

/* Copies the whole frame (xt_frame_wire_len bytes) to dst: for backends and
 * wrappers that copy frames anyway and so take gathered ones for free. */
static inline void xt_frame_copy(const struct xt_frame *f, uint8_t *dst)
{
	__builtin_memcpy(dst, f->data, f->len);
	if (f->flags & XT_FRAME_GATHER) {
		__builtin_memcpy(dst + f->len, f->pay[0], f->pay_len[0]);
		if (f->pay_len[1])
			__builtin_memcpy(dst + f->len + f->pay_len[0], f->pay[1], f->pay_len[1]);
	}
}

/* Output: called with a batch of frames; returns how many the backend took
 * (it copies them).  Frames it did not take are counted as tx_drop_backend
 * and left to TCP's retransmission. */
typedef int (*xt_tx_fn)(void *ctx, const struct xt_frame *frames, int n);

/* Readiness: called when a socket's event mask (XT_EV_*) changes, and when
 * new data or a new connection arrives (with XT_EV_NEW added). */
typedef void (*xt_event_fn)(void *ctx, int sock, uint32_t events);

/* Event bits: the same values as EPOLL* / POLL*, so preload/ passes them on. */
#define XT_EV_IN 0x001u
#define XT_EV_PRI 0x002u
#define XT_EV_OUT 0x004u
#define XT_EV_ERR 0x008u
#define XT_EV_HUP 0x010u
#define XT_EV_RDNORM 0x040u
#define XT_EV_WRNORM 0x100u
#define XT_EV_RDHUP 0x2000u
/* Not a readiness bit: set in an on_event call when new data (or, on a
 * listener, a new connection) arrived since the last call, even if the mask
 * did not change; edge-triggered epoll reports such an arrival again, as
 * Linux does on every sk_data_ready. */
#define XT_EV_NEW 0x08000000u

/* xt_stack_cfg.tx_csum_offload: the engine computes every checksum (NONE);
 * the backend fills the IPv4 and TCP ones (FULL, a verbs device); or the
 * engine fills the IPv4 one and leaves in the TCP field the pseudo-header
 * sum, which the backend completes over the segment (PARTIAL: Linux
 * CHECKSUM_PARTIAL, a virtio_net_hdr with VIRTIO_NET_HDR_F_NEEDS_CSUM). */
#define XT_TX_CSUM_NONE 0
#define XT_TX_CSUM_FULL 1
#define XT_TX_CSUM_PARTIAL 2

struct xt_stack_cfg {
	uint8_t mac[6];
	uint32_t ip;      /* our IPv4 address */
	uint32_t netmask; /* e.g. 0xffffff00 */
	uint32_t gateway; /* 0: no default route */
	uint16_t mtu;     /* IP MTU (default 1500) */
	uint8_t no_link_header; /* 1: frames are bare IPv4 (tun, ARPHRD_NONE) */
	uint8_t rx_csum_verified; /* 1: backend verified IP/TCP checksums */
	uint8_t tx_csum_offload;  /* XT_TX_CSUM_*: who fills IP/TCP checksums */
	uint8_t tx_gather;        /* 1: TCP payload goes to the backend in place
				   * (XT_FRAME_GATHER), not copied into the frame */
	uint32_t tso_max;         /* 0: none; else the most TCP payload of one segment
				   * the backend cuts into MSS-sized ones (XT_FRAME_GSO_SIZE);
				   * capped to what one IPv4 datagram carries; used only
				   * with tx_gather */

	uint32_t max_sockets;     /* sockets of every state (default 65536) */
	uint32_t somaxconn;       /* cap on listen backlog (default 4096) */
	uint32_t rcvbuf;          /* default receive buffer, bytes (default 262144) */
	uint32_t sndbuf;          /* default send buffer, bytes (default 262144) */
	uint64_t mem_limit;       /* all socket buffers together (default 1 GiB) */
	uint32_t arp_timeout_ms;  /* ARP cache entry lifetime (default 60000) */
	uint32_t arp_queue_max;   /* frames waiting for ARP, whole engine (default 256) */
	uint16_t port_lo, port_hi;/* ephemeral range (default 32768..60999) */
	uint8_t tcp_timestamps;   /* negotiate RFC 7323 timestamps (default 1) */
	uint8_t tcp_sack;         /* negotiate RFC 2018 SACK (default 1) */
	uint8_t tcp_window_scaling; /* negotiate RFC 7323 window scale (default 1) */
	uint8_t tcp_syncookies;   /* 0 never, 1 when the SYN queue is full (default), 2 always */
	uint8_t tcp_congestion;   /* XT_CC_* (default XT_CC_CUBIC, as Linux) */
	uint8_t tcp_syn_retries;  /* default 6 as Linux */
	uint8_t tcp_synack_retries; /* default 5 as Linux */
	uint8_t tcp_retries2;     /* default 15 as Linux */
	uint32_t time_wait_ms;    /* default 60000 */
	uint32_t fin_timeout_ms;  /* orphaned FIN_WAIT_2 lifetime (default 60000) */

	uint64_t secret[2]; /* key for ISNs (RFC 6528) and port choice: caller supplies randomness */

	xt_tx_fn tx;
	void *tx_ctx;
	/* Zero-copy receive (0: every payload is copied into the socket's
	 * buffer on arrival).  A frame with a ref whose in-order payload fills
	 * no hole may stay where the backend put it, queued on its socket, until
	 * the application has read it; rx_hold(ref) says so, rx_release(ref)
	 * gives it back.  The backend's ring must not wait for a frame long: a
	 * kept frame is copied into its socket's buffer, and released, once a
	 * frame at pos + rx_hold_window or later arrives (or before fork, see
	 * xt_stack_rx_unhold_all), so at most rx_hold_window frames are kept. */
	uint32_t rx_hold_window;
	void (*rx_hold)(void *ctx, uint64_t ref);
	void (*rx_release)(void *ctx, uint64_t ref);
	void *rx_ctx;
	/* Send buffers a device reads in place (with tx_gather; all optional).
	 * tx_buf_reg offers each socket's send buffer to the backend when it is
	 * taken into use; the nonzero handle it returns (0: not registered)
	 * travels with every frame gathered from that buffer (pay_key), so a
	 * backend that must register memory for its device (ibverbs) can send
	 * the payload without copying it.  tx_buf_unreg(handle) comes before the
	 * buffer is freed.  tx_fence: before a send buffer that gathered frames
	 * came from is reused or freed, the engine calls it; it returns 0 once
	 * the device reads no frame handed to it so far, or -errno when it
	 * cannot tell (the buffer is then never reused, and freed only by
	 * xt_stack_free: counted in tx_fence_leaks). */
	uint64_t (*tx_buf_reg)(void *ctx, void *buf, uint32_t len);
	void (*tx_buf_unreg)(void *ctx, uint64_t handle);
	int (*tx_fence)(void *ctx);
	void *buf_ctx;
	xt_event_fn on_event; /* may be NULL */
	void *event_ctx;

	/* Family mode (xt_stack_set_family): which engine of the family takes a
	 * new connection.  Called for a SYN (and a SYN-cookie ACK) to one of our
	 * listeners; returns nonzero when this engine takes it.  Every engine of
	 * the family must give the same answer.  NULL: this engine takes all. */
	int (*syn_owner)(void *ctx, uint32_t lip, uint16_t lport, uint32_t rip, uint16_t rport);
	void *syn_owner_ctx;
};

/* Linux's TCP state numbers (include/net/tcp_states.h), as TCP_INFO reports them. */
enum xt_tcp_state {
	XT_ESTABLISHED = 1,
	XT_SYN_SENT = 2,
	XT_SYN_RECV = 3,
	XT_FIN_WAIT1 = 4,
	XT_FIN_WAIT2 = 5,
	XT_TIME_WAIT = 6,
	XT_CLOSE = 7,
	XT_CLOSE_WAIT = 8,
	XT_LAST_ACK = 9,
	XT_LISTEN = 10,
	XT_CLOSING = 11,
};
const char *xt_state_name(int state);

/* Socket options, each an int value unless noted. */
enum xt_opt {
	XT_SO_REUSEADDR = 1,
	XT_SO_REUSEPORT,
	XT_SO_KEEPALIVE,
	XT_SO_RCVBUF,
	XT_SO_SNDBUF,
	XT_SO_RCVLOWAT,
	XT_SO_LINGER,      /* seconds, or -1 for off */
	XT_SO_ERROR,       /* get: pending error (positive errno), cleared */
	XT_TCP_NODELAY,
	XT_TCP_CORK,
	XT_TCP_KEEPIDLE,   /* seconds */
	XT_TCP_KEEPINTVL,  /* seconds */
	XT_TCP_KEEPCNT,
	XT_TCP_MAXSEG,
	XT_TCP_QUICKACK,
	XT_TCP_USER_TIMEOUT, /* milliseconds, 0 = system default */
	XT_TCP_DEFER_ACCEPT, /* seconds */
	XT_TCP_CONGESTION,   /* XT_CC_* */
	XT_OPT_MAX
};

/* Congestion control modules (XT_TCP_CONGESTION, cfg.tcp_congestion). */
#define XT_CC_RENO 0
#define XT_CC_CUBIC 1
/* "reno" / "cubic" for XT_CC_*, NULL for others; and back (-1: unknown). */
const char *xt_cc_name(int which);
int xt_cc_by_name(const char *name);

/* Option bits in xt_tcp_info.options, as Linux's tcpi_options. */
#define XT_TI_OPT_TIMESTAMPS 1
#define XT_TI_OPT_SACK 2
#define XT_TI_OPT_WSCALE 4

struct xt_tcp_info {
	uint8_t state;
	uint8_t ca_state;
	uint8_t retransmits;   /* consecutive unrecovered RTOs */
	uint8_t probes;
	uint8_t backoff;
	uint8_t options;       /* XT_TI_OPT_* */
	uint8_t snd_wscale, rcv_wscale;
	uint32_t rto_us, ato_us, snd_mss, rcv_mss;
	uint32_t unacked, sacked, lost, retrans, fackets;
	uint32_t last_data_sent_ms, last_data_recv_ms, last_ack_recv_ms;
	uint32_t pmtu, rcv_ssthresh, rtt_us, rttvar_us, snd_ssthresh, snd_cwnd, advmss, reordering;
	uint32_t rcv_space;
	uint32_t total_retrans;
	uint64_t bytes_acked, bytes_received;
	uint32_t segs_out, segs_in;
	uint32_t snd_wnd, rcv_wnd;
	uint32_t notsent_bytes;
	uint32_t rcv_queue, snd_queue; /* unread bytes; bytes not yet acked (ss Recv-Q/Send-Q) */
};

/* Counters: every drop has a reason; every reason has a counter. */
#define XT_COUNTERS(X)                                                          \
	X(rx_frames) X(rx_bytes) X(tx_frames) X(tx_bytes) X(tx_drop_backend)    \
	X(drop_eth_short) X(drop_eth_not_for_us) X(drop_eth_type)               \
	X(arp_rx) X(arp_tx_request) X(arp_tx_reply) X(drop_arp_malformed)       \
	X(drop_arp_not_for_us) X(arp_queue_full) X(arp_resolve_failed)          \
	X(drop_ip_short) X(drop_ip_version) X(drop_ip_hdrlen) X(drop_ip_len)    \
	X(drop_ip_csum) X(drop_ip_frag) X(drop_ip_not_for_us) X(drop_ip_proto)  \
	X(drop_ip_src) X(drop_no_route)                                         \
	X(icmp_rx) X(icmp_tx_echo_reply) X(drop_icmp_short) X(drop_icmp_csum)   \
	X(drop_icmp_type) X(icmp_unreach_rx) X(icmp_frag_needed_rx)             \
	X(tcp_rx_segs) X(tcp_tx_segs) X(tcp_rx_bytes) X(tcp_tx_bytes)           \
	X(drop_tcp_short) X(drop_tcp_csum) X(drop_tcp_hdrlen) X(drop_tcp_opt)   \
	X(drop_tcp_bad_addr) X(drop_tcp_no_socket) X(drop_tcp_flags)            \
	X(drop_tcp_out_of_window) X(drop_tcp_bad_ack) X(drop_tcp_old_ack)       \
	X(drop_tcp_ack_unsent) X(drop_tcp_paws) X(drop_tcp_reass_full)          \
	X(drop_tcp_rcvbuf_full) X(drop_tcp_after_close) X(drop_tcp_syn_bad)     \
	X(drop_tcp_listen_overflow) X(drop_tcp_synq_full) X(drop_tcp_no_mem)    \
	X(drop_tcp_bad_rst) X(drop_tcp_timewait) X(drop_tcp_family)             \
	X(tcp_rst_tx) X(tcp_rst_rx) X(tcp_challenge_ack) X(tcp_challenge_ack_limited) \
	X(tcp_active_opens) X(tcp_passive_opens) X(tcp_attempt_fails)           \
	X(tcp_estab_resets) X(tcp_conn_established) X(tcp_retrans_segs)         \
	X(tcp_rto) X(tcp_fast_retrans) X(tcp_recovery_partial) X(tcp_dupacks)   \
	X(tcp_ooo_segs) X(tcp_delayed_acks) X(tcp_persist_probes)               \
	X(tcp_keepalive_probes) X(tcp_timeouts) X(tcp_timewait_reuse)           \
	X(tcp_synack_retrans) X(tcp_syn_retrans) X(tcp_abort_on_data)           \
	X(tcp_abort_on_close) X(tcp_abort_on_linger) X(tcp_icmp_pmtu)           \
	X(tcp_icmp_soft_err) X(tcp_icmp_hard_err) X(tcp_dsack_rx)                \
	X(tcp_syncookies_sent) X(tcp_syncookies_recv) X(tcp_syncookies_failed)   \
	X(tcp_lost_retrans) X(tcp_tw_recycled) X(tcp_tso_segs) X(tcp_tx_gathered)  \
	X(tcp_rx_held) X(tcp_rx_hold_copied) X(tx_fence_leaks)

struct xt_counters {
#define XT_CNT_FIELD(name) uint64_t name;
	XT_COUNTERS(XT_CNT_FIELD)
#undef XT_CNT_FIELD
};
/* Names of the counters, in struct order; NULL-terminated. */
extern const char *const xt_counter_names[];

/* --- the engine --- */
void xt_stack_cfg_defaults(struct xt_stack_cfg *cfg);
/* Returns NULL when cfg is invalid or memory is short. */
struct xt_stack *xt_stack_new(const struct xt_stack_cfg *cfg, xt_time_t now);
void xt_stack_free(struct xt_stack *st);
/* One received frame (Ethernet, or bare IPv4 with no_link_header). Never fails:
 * anything wrong is dropped and counted. */
void xt_stack_input(struct xt_stack *st, const void *frame, size_t len, xt_time_t now);
/* The same for a frame from a backend, honouring its XT_FRAME_* flags. */
void xt_stack_input_frame(struct xt_stack *st, const struct xt_frame *f, xt_time_t now);
/* Runs due timers and flushes queued output. */
void xt_stack_poll(struct xt_stack *st, xt_time_t now);
/* Pushes out frames batched during input. */
void xt_stack_flush(struct xt_stack *st);
/* Deferred transmission: with on, the calls of the application (xt_tcp_send,
 * _recv, _connect, _shutdown, _close, _disconnect, _abort, _setopt) queue
 * their frames in the engine's TX batch (up to 64; a full batch goes out by
 * itself) and return without handing them to the backend, so that what one
 * event-loop round sends leaves in one batch.  The caller then owns the flush: xt_stack_flush,
 * xt_stack_poll or any other call that ends in one, soon.  Off by default. */
void xt_stack_set_tx_defer(struct xt_stack *st, bool on);
/* The backend's offloads, after xt_stack_new or for a new backend behind the
 * engine (a fork child's): its TSO limit (0: none; used with tx_gather). */
void xt_stack_set_tso_max(struct xt_stack *st, uint32_t max);
/* ... and its checksum offload (XT_TX_CSUM_*) and whether it takes gathered
 * frames, as in xt_stack_cfg.  Queued frames go out first. */
void xt_stack_set_tx_offload(struct xt_stack *st, uint8_t csum, uint8_t gather);
/* Copies every kept received frame (cfg.rx_hold_window) into its socket's
 * buffer and releases it: before fork, or before the backend goes.  */
void xt_stack_rx_unhold_all(struct xt_stack *st);
/* ... and sets a new window (0: keep none) with new callbacks, for a new
 * backend.  Returns 0, or -ENOMEM (then no frame is kept). */
int xt_stack_set_rx_hold(struct xt_stack *st, uint32_t window, void (*hold)(void *, uint64_t),
			 void (*release)(void *, uint64_t), void *ctx);
/* Absolute time of the next timer, or XT_TIME_NEVER. */
xt_time_t xt_stack_next_deadline(struct xt_stack *st);
/* A lower bound of xt_stack_next_deadline in constant time (a timer that was
 * cleared or moved later may still count): when it is not earlier than t,
 * nothing is due before t. */
xt_time_t xt_stack_deadline_hint(const struct xt_stack *st);
const struct xt_counters *xt_stack_counters(const struct xt_stack *st);
/* Connections whose data or FIN is not acknowledged yet (for a drain at exit). */
uint32_t xt_stack_unfinished(const struct xt_stack *st);
/* Bytes of socket buffer memory in use. */
uint64_t xt_stack_mem_used(const struct xt_stack *st);
/* Bytes of freed socket buffers kept for the next connections (bounded by
 * 16 MiB, or mem_limit / 16 if less, and 64 buffers; not in mem_used). */
uint64_t xt_stack_mem_cached(const struct xt_stack *st);
/* The send-buffer hooks of cfg (tx_buf_reg, tx_buf_unreg, tx_fence,
 * buf_ctx) for the backend now behind the engine (NULLs: none), at attach
 * or in a fork child with a NIC of its own: the handles the one before gave
 * are forgotten, not released, and buffers taken into use from now on are
 * offered to the new one. */
void xt_stack_set_tx_bufs(struct xt_stack *st, uint64_t (*reg)(void *, void *, uint32_t),
			  void (*unreg)(void *, uint64_t), int (*fence)(void *), void *ctx);
/* Family mode: several engines (one per process of a fork family) share one
 * address and each sees every frame.  On: a segment for no connection of
 * ours is another engine's (dropped as drop_tcp_family, never answered with
 * RST), and cfg.syn_owner decides which engine takes a new connection.
 * RFC 9293 3.10.7.1 would have us send RST: a deliberate deviation. */
void xt_stack_set_family(struct xt_stack *st, int on);
int xt_stack_family(const struct xt_stack *st);
/* After fork, in the child's copy of the engine: every socket but the
 * listeners is forgotten silently (no FIN, no RST: they are the parent's),
 * listeners lose their SYN and accept queues, frames batched or waiting for
 * ARP are discarded.  each(ctx, handle, udata, kept) is called first for
 * every socket the application holds (udata set, not an orphan): kept = 1
 * for a listener that stays, 0 for a socket whose handle is then invalid.
 * Returns how many sockets went. */
uint32_t xt_stack_forget_connections(struct xt_stack *st,
				     void (*each)(void *ctx, int sock, void *udata, int kept), void *ctx);
/* Another member's engine is a copy of this one: without a new seed both
 * would pick the same ephemeral ports for the same destinations. */
void xt_stack_reseed_ports(struct xt_stack *st, uint64_t seed);
/* Adds a static ARP entry (tests, or a backend that reads the kernel's neighbours). */
int xt_arp_add(struct xt_stack *st, uint32_t ip, const uint8_t mac[6], xt_time_t now);

/* --- sockets: small integer handles --- */
int xt_tcp_open(struct xt_stack *st);
int xt_tcp_bind(struct xt_stack *st, int s, uint32_t ip, uint16_t port);
/* Would bind(ip, port) conflict (-EADDRINUSE)?  Binds nothing. */
int xt_tcp_bind_check(struct xt_stack *st, int s, uint32_t ip, uint16_t port);
int xt_tcp_listen(struct xt_stack *st, int s, int backlog);
/* Returns the new socket, or -EAGAIN; peer may be NULL. */
int xt_tcp_accept(struct xt_stack *st, int s, uint32_t *peer_ip, uint16_t *peer_port);
/* Returns -EINPROGRESS once the SYN is out; completion shows as XT_EV_OUT. */
int xt_tcp_connect(struct xt_stack *st, int s, uint32_t ip, uint16_t port, xt_time_t now);
#define XT_MSG_PEEK 0x02
#define XT_MSG_MORE 0x8000
/* Returns bytes taken (possibly fewer than len), -EAGAIN, -EPIPE, -ECONNRESET, ... */
long xt_tcp_send(struct xt_stack *st, int s, const void *buf, size_t len, int flags, xt_time_t now);
/* Writing into the send buffer in place (sendfile's one copy):
 * xt_tcp_send_space gives the free space of s's send buffer as up to two
 * spans p[0], len[0] and p[1], len[1] (it wraps) and returns their total;
 * -EAGAIN when the buffer is full, 0 when s cannot send now (xt_tcp_send
 * then says why).  The caller writes n of those bytes, in order from p[0],
 * and queues them with xt_tcp_send_commit, with nothing else done to the
 * stack in between; it returns n, or -EINVAL when n exceeds the free space. */
long xt_tcp_send_space(struct xt_stack *st, int s, uint8_t *p[2], uint32_t len[2]);
long xt_tcp_send_commit(struct xt_stack *st, int s, uint32_t n, int flags, xt_time_t now);
/* Returns bytes read, 0 at end of stream, -EAGAIN, -ENOTCONN, -ECONNRESET, ... */
long xt_tcp_recv(struct xt_stack *st, int s, void *buf, size_t len, int flags, xt_time_t now);
#define XT_SHUT_RD 0
#define XT_SHUT_WR 1
#define XT_SHUT_RDWR 2
int xt_tcp_shutdown(struct xt_stack *st, int s, int how, xt_time_t now);
/* Releases the handle.  TCP goes on closing in the background (FIN, or RST
 * when unread data remains or linger is 0). */
int xt_tcp_close(struct xt_stack *st, int s, xt_time_t now);
/* Linux tcp_disconnect(): RST to a synchronized peer, then a fresh
 * unconnected socket on the same handle (connect(AF_UNSPEC), or after
 * connect() reported a failed attempt). */
int xt_tcp_disconnect(struct xt_stack *st, int s, xt_time_t now);
/* Immediate abort: RST to the peer, handle released. */
int xt_tcp_abort(struct xt_stack *st, int s, xt_time_t now);
int xt_tcp_setopt(struct xt_stack *st, int s, int opt, int val, xt_time_t now);
int xt_tcp_getopt(struct xt_stack *st, int s, int opt, int *val);
int xt_tcp_getname(struct xt_stack *st, int s, int peer, uint32_t *ip, uint16_t *port);
int xt_tcp_info(struct xt_stack *st, int s, struct xt_tcp_info *info, xt_time_t now);

/* Enumeration for observability (tools/xtcp-stat): every socket the engine
 * holds, owned or not: connections not accepted yet, and orphans the
 * application closed that TCP still runs down (FIN_WAIT, TIME_WAIT). */
struct xt_sock_view {
	uint8_t state;   /* enum xt_tcp_state, TIME_WAIT as such */
	uint8_t orphan;  /* closed by the application */
	uint8_t pending; /* a child not accepted yet (SYN_RECV or in an accept queue) */
	uint32_t lip, rip;
	uint16_t lport, rport;
	void *udata;     /* xt_tcp_set_udata's, NULL for orphans */
	struct xt_tcp_info info; /* rcv_queue/snd_queue as ss shows them */
};
/* Sockets held, in every state. */
uint32_t xt_stack_nsockets(const struct xt_stack *st);
/* Is any socket neither listening nor closed (a connection in any state, a
 * handshake, a TIME_WAIT, an orphan)?  A walk of the socket table up to the
 * last socket held. */
bool xt_stack_has_conns(const struct xt_stack *st);
/* The lowest socket handle >= from, or -1. */
int xt_tcp_next(const struct xt_stack *st, int from);
/* One socket by handle, orphans included; -EBADF if there is none. */
int xt_tcp_view(struct xt_stack *st, int s, struct xt_sock_view *v, xt_time_t now);
/* Current XT_EV_* mask, with Linux tcp_poll() semantics. */
uint32_t xt_tcp_events(struct xt_stack *st, int s);
int xt_tcp_state(struct xt_stack *st, int s);
/* Readable bytes (FIONREAD) and bytes sent but unacknowledged (SIOCOUTQ). */
long xt_tcp_inq(struct xt_stack *st, int s);
long xt_tcp_outq(struct xt_stack *st, int s);
void xt_tcp_set_udata(struct xt_stack *st, int s, void *udata);
void *xt_tcp_udata(struct xt_stack *st, int s);

#ifdef __cplusplus
}
#endif
#endif
