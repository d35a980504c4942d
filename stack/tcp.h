/* TCP internals: the connection block, parsed segments, and the functions the
 * tcp_*.c files share. */
#ifndef XT_TCP_H
#define XT_TCP_H

#include "xt_internal.h"

/* Sequence-number comparison, modulo 2^32 (RFC 9293 3.4). Use only these. */
#define SEQ_LT(a, b) ((int32_t)((uint32_t)(a) - (uint32_t)(b)) < 0)
#define SEQ_LEQ(a, b) ((int32_t)((uint32_t)(a) - (uint32_t)(b)) <= 0)
#define SEQ_GT(a, b) SEQ_LT(b, a)
#define SEQ_GEQ(a, b) SEQ_LEQ(b, a)
#define SEQ_MAX(a, b) (SEQ_GT(a, b) ? (a) : (b))
#define SEQ_MIN(a, b) (SEQ_LT(a, b) ? (a) : (b))

/* Linux's constants (include/net/tcp.h), the behavioural reference. */
#define XT_RTO_MIN_US 200000u
#define XT_RTO_MAX_US 120000000u
#define XT_RTO_INIT_US 1000000u
#define XT_DELACK_NS XT_MS(40)
#define XT_CORK_NS XT_MS(200)
#define XT_INIT_CWND 10         /* RFC 6928 */
#define XT_MAX_QUICKACKS 16
#define XT_DEFAULT_MSS 536      /* RFC 9293 3.7.1: when the peer sends none */
#define XT_MIN_PMTU 552         /* Linux ip_rt_min_pmtu */
#define XT_KEEPIDLE_S 7200
#define XT_KEEPINTVL_S 75
#define XT_KEEPCNT 9
#define XT_MAX_WSCALE 14
#define XT_OOW_RATE_NS XT_MS(500) /* Linux sysctl_tcp_invalid_ratelimit */
#define XT_CHACK_PER_SEC 1000     /* Linux sysctl_tcp_challenge_ack_limit (pre-6.0) */
#define XT_TS_OPT_LEN 12          /* NOP NOP TS */
#define XT_REASS_MAX 16           /* out-of-order ranges kept per connection */
#define XT_SACK_MAX 8             /* SACKed ranges kept by the sender */

/* sk_shutdown bits */
#define XT_RCV_SHUTDOWN 1
#define XT_SEND_SHUTDOWN 2
#define XT_SHUTDOWN_MASK 3

enum xt_timer_id {
	XT_T_RTO,       /* retransmission, also SYN/SYN-ACK */
	XT_T_DELACK,
	XT_T_PERSIST,   /* zero-window probes */
	XT_T_KEEPALIVE,
	XT_T_2MSL,      /* TIME_WAIT, and orphaned FIN_WAIT_2 */
	XT_T_CORK,      /* TCP_CORK / MSG_MORE ceiling */
	XT_T_NUM
};

/* A byte ring; data lives in [head, head+len) modulo cap. */
struct xt_ring {
	uint8_t *buf;
	uint32_t cap, head, len;
	uint64_t key; /* the backend's handle for buf (cfg.tx_buf_reg), 0: none */
};

/* A received TCP segment after parsing, host order. */
struct xt_seg {
	uint32_t src, dst;
	uint16_t sport, dport;
	uint32_t seq, ack;
	uint8_t flags;
	uint16_t wnd; /* raw, unscaled */
	const uint8_t *data;
	uint32_t len;     /* payload bytes */
	uint32_t end_seq; /* seq + len + SYN + FIN */
	uint8_t has_mss : 1, has_ws : 1, sack_perm : 1, has_ts : 1;
	uint16_t mss;
	uint8_t ws;
	uint32_t tsval, tsecr;
	uint8_t nsack;
	uint32_t sack[4][2];
};

struct xt_range {
	uint32_t start, end; /* sequence space, [start, end) */
};

struct xt_sock;

/* Congestion control module (RFC 5681 / 6582 NewReno; CUBIC later). cwnd
 * and ssthresh are in bytes. */
struct xt_cc_ops {
	const char *name;
	void (*init)(struct xt_sock *s);
	/* New data acknowledged outside recovery. */
	void (*on_ack)(struct xt_sock *s, uint32_t acked, xt_time_t now);
	/* Loss detected by duplicate ACKs: returns the new ssthresh. */
	uint32_t (*ssthresh)(struct xt_sock *s);
	/* After a retransmission timeout. */
	void (*on_rto)(struct xt_sock *s);
	/* Sending resumes after an idle period (may be NULL). */
	void (*on_idle)(struct xt_sock *s);
};
extern const struct xt_cc_ops xt_cc_newreno;
extern const struct xt_cc_ops xt_cc_cubic;
const struct xt_cc_ops *xt_cc_get(int which);

struct xt_sock {
	int id;
	uint8_t state;    /* enum xt_tcp_state */
	uint8_t shut;     /* XT_*_SHUTDOWN */
	uint8_t done : 1,        /* Linux SOCK_DONE: FIN received or connection finished */
		orphan : 1,      /* the application closed its handle */
		reuseaddr : 1, reuseport : 1, keepalive : 1, nodelay : 1, cork : 1, more : 1,
		bound : 1, user_bound : 1, in_ehash : 1, fin_queued : 1, ts_ok : 1, sack_ok : 1, ws_ok : 1,
		acked_overflow : 1, in_lhash : 1, /* final ACK dropped on accept-queue overflow */
		rtt_pending : 1, in_recovery : 1, ever_connected : 1, in_aq : 1, in_synq : 1,
		fin_rcvd : 1, fin_ooo : 1, connecting : 1, rescued : 1,
		pingpong : 1; /* Linux's interactive mode: no quick ACKs (see schedule_ack) */
	uint8_t snd_ws, rcv_ws;
	uint8_t backoff;      /* RTO exponent */
	uint8_t retransmits;  /* RTOs since progress */
	uint8_t probes_out;   /* keepalive or zero-window probes unanswered */
	uint8_t quickack;     /* segments still to ACK at once */
	uint8_t ack_pending;  /* in-order segments received but not ACKed */
	uint8_t dupacks;

	uint32_t lip, rip;
	uint16_t lport, rport;
	struct xt_sock *enext; /* ehash chain */
	struct xt_sock *bnext; /* bhash chain */
	struct xt_sock **bpprev; /* the pointer to us in that chain: O(1) removal */
	struct xt_sock *tw_next, *tw_prev; /* orphaned TIME_WAIT, by 2MSL end (st->tw_head) */
	uint8_t in_tw;
	struct xt_sock *lnext; /* lhash chain (listeners) */

	/* Listener side. */
	struct xt_sock *parent;          /* a child's listener */
	struct xt_sock *aq_head, *aq_tail, *aq_next; /* accept queue */
	struct xt_sock *sq_prev, *sq_next;           /* SYN_RECV children */
	struct xt_sock *synq;
	uint32_t aq_len, synq_len, backlog;
	xt_time_t synq_overflow_t; /* last SYN answered with a cookie */

	/* Send sequence space (RFC 9293 3.3.1). snd_max is the highest sequence
	 * ever sent; snd_nxt is pulled back to snd_una by an RTO. */
	uint32_t iss, snd_una, snd_nxt, snd_max, snd_wnd, max_snd_wnd, snd_wl1, snd_wl2;
	uint32_t snd_fin_seq; /* sequence number of our FIN, once fin_queued */
	uint32_t snd_sml; /* end of the last small segment sent (Minshall's Nagle) */
	/* Receive sequence space. rcv_adv is the right edge we advertised. */
	uint32_t irs, rcv_nxt, rcv_adv, rcv_wup;
	uint16_t mss;      /* payload bytes per segment, options excluded */
	uint16_t peer_mss; /* MSS the peer announced */
	uint16_t adv_mss;  /* MSS we announce */
	uint16_t user_mss; /* TCP_MAXSEG, 0: unset */
	uint16_t pmtu;
	uint16_t rcv_mss;  /* largest segment received, for the delayed-ACK rule */
	uint32_t rcv_fin_seq; /* sequence of a FIN that arrived out of order */

	struct xt_ring sq, rq; /* send bytes from snd_una; readable bytes, then out-of-order room */
	/* With cfg.tx_gather: while tx_ref_gen equals the engine's tx_gen, the TX
	 * batch holds frames whose payload is read from sq at or above
	 * tx_ref_seq, so those bytes must stay put until the flush. */
	uint32_t tx_ref_gen, tx_ref_seq;
	/* Received payload still in the backend's frames (rxhold.c): it follows
	 * the rq bytes in the stream.  Only while no out-of-order data is held. */
	int32_t held_head, held_tail; /* st->held records, -1: none */
	uint32_t held_bytes;
	uint32_t sndbuf, rcvbuf, rcvlowat;
	struct xt_range reass[XT_REASS_MAX];
	uint8_t nreass;
	uint32_t sack_recent; /* start of the latest out-of-order arrival (RFC 2018 4) */

	/* RTT (RFC 6298), microseconds. */
	uint32_t srtt_us, rttvar_us, rto_us;
	uint32_t rtt_seq;
	xt_time_t rtt_time;
	xt_time_t retrans_stamp; /* first retransmission of the current episode */

	/* Congestion control, bytes. */
	uint32_t cwnd, ssthresh, recover, ca_acc;
	struct xt_range sacked[XT_SACK_MAX]; /* the peer's SACK blocks above snd_una */
	uint8_t nsacked;
	uint32_t high_rxt; /* RFC 6675 HighRxt */
	/* Lost-retransmission detection: the oldest retransmission not yet
	 * known delivered (rxt_low) and snd_max when it went out (rxt_fence). */
	uint32_t rxt_low, rxt_fence;
	bool rxt_track;
	const struct xt_cc_ops *cc;
	uint64_t cc_priv[8];

	/* Timestamps (RFC 7323). */
	uint32_t ts_recent, ts_offset;
	xt_time_t ts_recent_stamp;

	uint32_t keepidle_s, keepintvl_s, keepcnt, user_timeout_ms, defer_accept_s;
	int linger; /* -1: off */
	xt_time_t last_rx, last_data_rx, last_data_tx, last_ack_rx, last_oow_ack;

	xt_time_t tmr[XT_T_NUM];
	xt_time_t deadline;
	uint32_t heap_idx; /* UINT32_MAX: not in the heap */

	int err, soft_err; /* positive errno values, as Linux sk_err / sk_err_soft */
	uint32_t events;
	uint8_t ev_new;       /* new data or connection since the last on_event (XT_EV_NEW) */
	void *udata;

	uint64_t bytes_acked, bytes_received;
	uint32_t segs_in, segs_out, total_retrans;
};

#define XT_NO_HEAP UINT32_MAX

/* State capabilities (STYLE.md: ask capabilities, not state lists). */
static inline bool xt_state_synchronized(int st)
{
	return st != XT_CLOSE && st != XT_LISTEN && st != XT_SYN_SENT && st != XT_SYN_RECV;
}
static inline bool xt_state_can_send(int st) { return st == XT_ESTABLISHED || st == XT_CLOSE_WAIT; }
static inline bool xt_state_accepts_data(int st)
{
	return st == XT_ESTABLISHED || st == XT_FIN_WAIT1 || st == XT_FIN_WAIT2;
}
/* Our FIN has been queued for sending in these states. */
static inline bool xt_state_fin_out(int st)
{
	return st == XT_FIN_WAIT1 || st == XT_FIN_WAIT2 || st == XT_CLOSING || st == XT_LAST_ACK ||
	       st == XT_TIME_WAIT;
}

/* ring.c */
void xt_ring_init(struct xt_ring *r, uint8_t *buf, uint32_t cap, uint64_t key);
uint32_t xt_ring_append(struct xt_ring *r, const void *data, uint32_t n);
/* Writes n bytes at offset off past the end of the readable data (out of order). */
void xt_ring_write_at(struct xt_ring *r, uint32_t off, const void *data, uint32_t n);
void xt_ring_peek(const struct xt_ring *r, uint32_t off, void *dst, uint32_t n);
/* The free space after the bytes held: p[0]/len[0], then (wrapped) p[1]/len[1]. */
uint32_t xt_ring_free_span(struct xt_ring *r, uint8_t *p[2], uint32_t len[2]);
/* Where the n bytes at off lie: p[0]/len[0], then (wrapped) p[1]/len[1]. */
void xt_ring_span(const struct xt_ring *r, uint32_t off, uint32_t n, const uint8_t *p[2], uint32_t len[2]);
void xt_ring_consume(struct xt_ring *r, uint32_t n);
/* An empty ring with nothing stored beyond it (no out-of-order bytes; on a
 * send ring, no frame of the TX batch reading it: xt_tx_unref) starts again
 * at its first byte: request/response traffic keeps reusing the same few
 * warm cache lines and pages instead of walking the whole ring (fewer cache
 * misses, and a new connection faults in only the pages it needs). */
static inline void xt_ring_rewind(struct xt_ring *r)
{
	if (!r->len)
		r->head = 0;
}
static inline uint32_t xt_ring_free_space(const struct xt_ring *r) { return r->cap - r->len; }

/* stack.c: socket table, memory, timers, events. */
struct xt_sock *xt_sock_get(struct xt_stack *st, int id);
struct xt_sock *xt_sock_new(struct xt_stack *st);
void xt_sock_init(struct xt_stack *st, struct xt_sock *s);
void xt_sock_free(struct xt_stack *st, struct xt_sock *s);
int xt_sock_bufs_alloc(struct xt_stack *st, struct xt_sock *s);
void xt_sock_bufs_free(struct xt_stack *st, struct xt_sock *s);
void xt_timer_set(struct xt_stack *st, struct xt_sock *s, int t, xt_time_t when);
static inline void xt_timer_clear(struct xt_stack *st, struct xt_sock *s, int t)
{
	xt_timer_set(st, s, t, XT_TIME_NEVER);
}
void xt_sock_wake(struct xt_stack *st, struct xt_sock *s);

/* tcp_table.c: lookup tables and port allocation. */
void xt_ehash_insert(struct xt_stack *st, struct xt_sock *s);
void xt_ehash_remove(struct xt_stack *st, struct xt_sock *s);
struct xt_sock *xt_ehash_lookup(struct xt_stack *st, uint32_t lip, uint16_t lport, uint32_t rip,
				uint16_t rport);
void xt_bhash_insert(struct xt_stack *st, struct xt_sock *s);
void xt_bhash_remove(struct xt_stack *st, struct xt_sock *s);
void xt_lhash_insert(struct xt_stack *st, struct xt_sock *s);
void xt_lhash_remove(struct xt_stack *st, struct xt_sock *s);
struct xt_sock *xt_listener_lookup(struct xt_stack *st, const struct xt_seg *seg);
int xt_bind_check(struct xt_stack *st, struct xt_sock *s, uint32_t ip, uint16_t port, bool listening);
int xt_ephemeral_port(struct xt_stack *st, struct xt_sock *s, uint32_t rip, uint16_t rport);

/* tcp_output.c */
void xt_tcp_output(struct xt_stack *st, struct xt_sock *s, xt_time_t now);
void xt_tcp_send_ack(struct xt_stack *st, struct xt_sock *s, xt_time_t now);
void xt_tcp_send_syn(struct xt_stack *st, struct xt_sock *s, xt_time_t now);
void xt_tcp_send_rst_sock(struct xt_stack *st, struct xt_sock *s, xt_time_t now);
void xt_tcp_send_rst_reply(struct xt_stack *st, const struct xt_seg *seg, xt_time_t now);
void xt_tcp_send_probe(struct xt_stack *st, struct xt_sock *s, xt_time_t now);
void xt_tcp_retransmit_head(struct xt_stack *st, struct xt_sock *s, bool rewind, xt_time_t now);
void xt_tcp_challenge_ack(struct xt_stack *st, struct xt_sock *s, xt_time_t now);
uint32_t xt_tcp_select_window(struct xt_sock *s);
uint32_t xt_tcp_window_now(const struct xt_sock *s);
uint32_t xt_tcp_cur_mss(const struct xt_sock *s);
uint16_t xt_tcp_wire_mss(const struct xt_stack *st, const struct xt_sock *s);
void xt_tcp_update_mss(struct xt_stack *st, struct xt_sock *s);
uint32_t xt_tcp_ts_now(const struct xt_sock *s, xt_time_t now);
/* Before the send-ring bytes of s below seq are freed or reused: flushes the
 * batch if a frame in it still reads from them (cfg.tx_gather). */
static inline void xt_tx_unref(struct xt_stack *st, struct xt_sock *s, uint32_t seq)
{
	if (st->ntx && s->tx_ref_gen == st->tx_gen && SEQ_LT(s->tx_ref_seq, seq))
		xt_stack_flush(st);
}

/* rxhold.c: zero-copy receive. */
int xt_rxhold_init(struct xt_stack *st);
void xt_rxhold_free(struct xt_stack *st);
/* Before a frame is input: copies kept frames the backend needs back. */
void xt_rx_evict(struct xt_stack *st);
/* Queues len in-order payload bytes at p (in st->rx_cur) on s without a
 * copy; false when it may not (then the caller copies).  Shorter payloads
 * are copied: the record would cost more than the copy. */
#define XT_HOLD_MIN 512u
bool xt_rx_hold_seg(struct xt_stack *st, struct xt_sock *s, const uint8_t *p, uint32_t len);
static inline bool xt_rx_try_hold(struct xt_stack *st, struct xt_sock *s, const uint8_t *p, uint32_t len)
{
	return st->rx_cur && len >= XT_HOLD_MIN && xt_rx_hold_seg(st, s, p, len);
}
/* Moves s's kept payload into its receive ring, releasing the frames. */
void xt_rx_compact(struct xt_stack *st, struct xt_sock *s);
/* Releases s's kept frames, their bytes dropped (the buffers go). */
void xt_rx_drop(struct xt_stack *st, struct xt_sock *s);
/* Copies up to n kept bytes of s to dst (after the ring's bytes), consuming
 * them unless peek; returns the count. */
uint32_t xt_rx_read(struct xt_stack *st, struct xt_sock *s, uint8_t *dst, uint32_t n, bool peek);
/* Readable bytes: the ring's and the kept ones. */
static inline uint32_t xt_rq_avail(const struct xt_sock *s) { return s->rq.len + s->held_bytes; }
/* Receive buffer room left. */
static inline uint32_t xt_rq_room(const struct xt_sock *s) { return s->rq.cap - s->rq.len - s->held_bytes; }

static inline uint32_t xt_tcp_flight(const struct xt_sock *s) { return s->snd_nxt - s->snd_una; }
uint32_t xt_tcp_pipe(const struct xt_sock *s);
void xt_tcp_sack_send(struct xt_stack *st, struct xt_sock *s, xt_time_t now);

/* tcp_listen.c */
void xt_synq_add(struct xt_sock *l, struct xt_sock *c);
void xt_acceptq_add(struct xt_stack *st, struct xt_sock *l, struct xt_sock *c);
struct xt_sock *xt_acceptq_pop(struct xt_sock *l);
void xt_listen_unlink(struct xt_sock *c);

/* tcp_sack.c */
void xt_sack_input(struct xt_stack *st, struct xt_sock *s, const struct xt_seg *seg);
void xt_sack_trim(struct xt_sock *s);
void xt_sack_clear(struct xt_sock *s);
uint32_t xt_sack_bytes(const struct xt_sock *s);
bool xt_sack_head_lost(const struct xt_sock *s);
uint32_t xt_sack_pipe(const struct xt_sock *s);
void xt_sack_loss_counts(const struct xt_sock *s, uint32_t *lost, uint32_t *retrans);
bool xt_sack_next_seg(struct xt_sock *s, bool new_data, uint32_t *seq, uint32_t *len);
void xt_sack_rxt_sent(struct xt_sock *s, uint32_t seq);
bool xt_sack_lost_rxt(struct xt_stack *st, struct xt_sock *s);
uint32_t xt_sack_skip(const struct xt_sock *s, uint32_t seq, uint32_t *room);

/* tcp_syncookie.c */
uint32_t xt_syncookie_make(const struct xt_stack *st, const struct xt_seg *syn, uint16_t *mss, xt_time_t now);
uint16_t xt_syncookie_check(const struct xt_stack *st, const struct xt_seg *ack, xt_time_t now);
uint32_t xt_syncookie_ts(uint32_t ts_now, const struct xt_seg *syn, bool ws_ok, bool sack_ok);
void xt_syncookie_opts(uint32_t tsecr, int *peer_ws, bool *sack);

/* tcp_input.c */
int xt_tcp_parse(const struct xt_ip_rx *ip, struct xt_seg *seg, struct xt_counters *cnt,
		 bool csum_verified);

/* tcp_timer.c */
void xt_tcp_timers(struct xt_stack *st, struct xt_sock *s, xt_time_t now);
void xt_tcp_rtt_sample(struct xt_sock *s, uint32_t rtt_us);
void xt_tcp_rearm_rto(struct xt_stack *st, struct xt_sock *s, xt_time_t now);
void xt_tcp_arm_keepalive(struct xt_stack *st, struct xt_sock *s, xt_time_t now);

/* tcp_user.c / tcp_input.c: connection life. */
void xt_tcp_set_state(struct xt_stack *st, struct xt_sock *s, int state);
/* stack.c: the list of orphaned TIME_WAIT sockets, in the order their 2MSL
 * timers end (the list, not the heap, runs those timers; one that would end
 * before the list's tail is not added and stays the heap's). */
void xt_tw_add(struct xt_stack *st, struct xt_sock *s);
void xt_tw_del(struct xt_stack *st, struct xt_sock *s);
/* Connection ends: Linux tcp_done(). err > 0 is reported to the application. */
void xt_tcp_done(struct xt_stack *st, struct xt_sock *s, int err);
void xt_tcp_enter_time_wait(struct xt_stack *st, struct xt_sock *s, xt_time_t now);
void xt_tcp_init_conn(struct xt_stack *st, struct xt_sock *s, xt_time_t now);
uint32_t xt_tcp_isn(const struct xt_stack *st, uint32_t lip, uint16_t lport, uint32_t rip,
		    uint16_t rport, xt_time_t now);
uint32_t xt_tcp_events_of(const struct xt_sock *s);

#endif
