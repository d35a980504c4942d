/* Segment-level test harness for the xtcp engine.
 *
 * One fixture (struct fx) owns one engine configured as 10.0.0.1/24 with MAC
 * 02:00:00:00:00:01 and a static ARP entry for the peer 10.0.0.2
 * (02:00:00:00:00:02), so no ARP traffic ever appears.  The test plays the
 * peer: it builds Ethernet+IPv4+TCP frames (seg_in, peer_*), feeds them to
 * the engine at an explicit time, and inspects what the engine sent
 * (expect_*).  Frames the engine sends are copied into a FIFO together with
 * the time they were sent.
 *
 * Time: tests speak "test time", nanoseconds since the fixture started
 * (FX_T0 on the engine's clock, deliberately not 0).  Every call that takes
 * a time first runs the engine's timers up to it, in deadline order, so
 * frames produced by timers are captured with the time they fired.
 *
 * The fixture follows one connection (fx->s): it remembers both ISNs, the
 * next sequence number the peer sends (peer_seq), what the peer
 * acknowledges (peer_ack), the highest sequence number the engine has used
 * (our_nxt) and the options negotiated, so a test reads like
 *
 *	xt_time_t t = established_active(fx);
 *	uint32_t snd = fx->our_nxt;
 *	app_send_n(fx, t, 3);
 *	expect_data(fx, snd, 3);
 *	peer_ack_all(fx, t + XT_MS(100));
 *	expect_none(fx);
 *
 * Failures go through cmocka's _fail(), reported at the test's line.
 */
#ifndef XT_TEST_SEG_H
#define XT_TEST_SEG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "xtcp.h"
#include "wire.h"

#define FX_OUR_IP 0x0a000001u  /* 10.0.0.1 */
#define FX_PEER_IP 0x0a000002u /* 10.0.0.2 */
#define FX_OTHER_IP 0x0a000003u /* 10.0.0.3: a second peer, added to ARP too */
#define FX_NETMASK 0xffffff00u
#define FX_T0 XT_SEC(1000)     /* engine time at test time 0 */
#define FX_LISTEN_PORT 80      /* our listening port in passive fixtures */
#define FX_PEER_PORT 40000     /* the peer's port when it connects to us */
#define FX_REMOTE_PORT 80      /* the peer's port when we connect to it */
#define FX_PEER_ISS 0x10000000u

extern const uint8_t fx_our_mac[6], fx_peer_mac[6], fx_other_mac[6];

/* Option bits: what a seg_spec carries, and what a parsed seg had. */
#define OPT_MSS 0x01
#define OPT_WS 0x02
#define OPT_SACK_PERM 0x04
#define OPT_TS 0x08
#define OPT_SACK 0x10

/* seg_spec.win: 0 means "the fixture's default"; WIN_ZERO asks for a real 0. */
#define WIN_ZERO 0x10000u

/* Flag shorthands. */
#define F_SYN XT_TH_SYN
#define F_ACK XT_TH_ACK
#define F_FIN XT_TH_FIN
#define F_RST XT_TH_RST
#define F_PSH XT_TH_PSH
#define F_URG XT_TH_URG

/* A segment to build.  Fields left 0 take defaults as documented. */
struct seg_spec {
	uint8_t flags;
	uint32_t seq, ack;
	uint32_t win;   /* raw window field; 0: fixture default; WIN_ZERO: 0 */
	uint8_t opts;   /* OPT_* to include, in Linux's order */
	uint16_t mss;
	uint8_t ws;
	uint32_t tsval, tsecr;
	uint8_t nsack;
	uint32_t sack[4][2]; /* [left, right) */
	const void *data;
	uint32_t len;
	uint16_t urp;
	/* addressing; 0: the fixture's connection (peer -> us) */
	uint32_t src_ip, dst_ip;
	uint16_t sport, dport;
	/* raw option bytes appended after the options above (malformed options) */
	const uint8_t *rawopt;
	uint8_t rawopt_len;
	/* breakage, applied before checksums unless said otherwise */
	bool bad_csum;       /* TCP checksum off by one (applied after computing) */
	bool bad_ip_csum;    /* IP header checksum off by one */
	bool csum_offloaded; /* fed with XT_FRAME_CSUM_OK (a CHECKSUM_PARTIAL frame) */
	uint8_t doff;        /* data offset (words) to write instead of the real one; 16 writes 0 */
	bool cut;            /* IP total length (and the frame) keep only cut_len TCP bytes */
	uint16_t cut_len;
	bool no_auto;        /* peer_seg only: do not add the fixture's timestamps */
};

/* A frame the engine sent, parsed. */
struct seg {
	bool valid;       /* Ethernet/IPv4/TCP well formed, checksums right */
	const char *why;  /* reason when !valid */
	bool is_tcp;
	xt_time_t t;      /* test time it was sent */
	uint8_t dst_mac[6], src_mac[6];
	uint16_t ethertype;
	uint32_t src_ip, dst_ip;
	uint8_t ttl, tos;
	bool df;
	uint16_t ip_id;
	uint16_t sport, dport;
	uint8_t flags;
	uint32_t seq, ack;
	uint16_t win;
	uint8_t opts;     /* OPT_* seen */
	uint16_t mss;
	uint8_t ws;
	uint32_t tsval, tsecr;
	uint8_t nsack;
	uint32_t sack[4][2];
	uint16_t urp;
	uint32_t len;     /* payload bytes */
	uint8_t data[2048];
};

/* What the peer offers in its SYN / SYN-ACK. */
struct fx_peer {
	uint16_t mss;   /* 0: no MSS option */
	int ws;         /* -1: no window scale option, else the shift */
	bool sack_perm;
	bool ts;
	uint32_t wnd;   /* bytes the peer advertises (before its own scaling) */
	uint32_t iss;
	xt_time_t rtt;  /* handshake round trip the fixtures simulate */
};

struct fx_frame {
	uint8_t *data;
	uint32_t len;
	xt_time_t t;
};

struct fx {
	struct xt_stack *st;
	struct xt_stack_cfg cfg;
	xt_time_t now; /* test time */

	/* captured output (FIFO) */
	struct fx_frame *q;
	size_t qhead, qlen, qcap;
	uint64_t total_tx; /* frames captured since start */

	/* Zero-copy receive (cfg.rx_hold_window > 0): every injected frame gets
	 * ref = pos = 1, 2, ... in a buffer of its own, which the harness
	 * poisons and frees as soon as the engine may no longer read it (after
	 * the input call, or at rx_release when the engine kept it); a hold or
	 * release out of turn fails the test. */
	uint8_t **rx_buf;     /* by ref; NULL: given back */
	uint8_t *rx_kept;     /* by ref */
	size_t rx_cap;
	uint64_t rx_next_ref, rx_holds, rx_releases;
	struct seg last;   /* last popped */

	/* the followed connection */
	int s, ls;         /* connection handle, listener handle (-1 if none) */
	bool passive;      /* fixtures open passively (we listen) when set */
	struct fx_peer peer;
	uint32_t peer_ip;
	uint16_t our_port, peer_port;
	uint32_t our_iss, peer_iss;
	uint32_t peer_seq;  /* next sequence number the peer sends */
	uint32_t peer_ack;  /* what the peer acknowledges in its segments */
	uint32_t our_nxt;   /* highest sequence number the engine has used + 1 */
	bool ws_on, sack_on, ts_on;
	uint8_t our_ws;     /* shift we announced (meaningful if ws_on) */
	uint16_t our_mss;   /* MSS option in our SYN / SYN-ACK */
	uint32_t our_tsval; /* latest TSval the engine sent */
	uint32_t peer_tsval;/* latest TSval the peer sent */
	struct seg our_syn; /* our SYN or SYN-ACK */
	/* readiness callbacks (cfg.on_event), per socket handle < FX_EV_SOCKS */
#define FX_EV_SOCKS 256
	uint32_t ev_last[FX_EV_SOCKS];  /* mask of the latest call */
	uint32_t ev_calls[FX_EV_SOCKS]; /* number of calls */
	uint32_t app_tx_off;/* stream offset of the next app_send_n byte */
	bool tx_pattern;    /* everything sent so far came from app_send_n */
};

/* --- lifecycle --- */
void fx_default_cfg(struct xt_stack_cfg *cfg);
struct fx *fx_new(const struct xt_stack_cfg *cfg); /* NULL: fx_default_cfg */
void fx_free(struct fx *fx);
/* Replaces the engine by a fresh one built from cfg (tx/ctx/addresses are the
 * harness's), forgetting all captured frames and connection state. */
void fx_restart(struct fx *fx, const struct xt_stack_cfg *cfg);
/* cmocka-style setup/teardown: *state becomes a default fixture. */
int fx_setup(void **state);
int fx_teardown(void **state);

/* --- time --- */
/* Advances to test time t, running every timer at its own deadline. */
#define fx_run(fx, t) fx_run_((fx), (t), __FILE__, __LINE__)
#define fx_advance(fx, dt) fx_run_((fx), (fx)->now + (dt), __FILE__, __LINE__)
void fx_run_(struct fx *fx, xt_time_t t, const char *file, int line);
/* Test time of the engine's next deadline, or XT_TIME_NEVER. */
xt_time_t fx_next_timer(const struct fx *fx);
void fx_flush(struct fx *fx);
static inline xt_time_t fx_abs(const struct fx *fx, xt_time_t t) { (void)fx; return FX_T0 + t; }

/* --- captured output --- */
size_t fx_pending(const struct fx *fx);
/* Pops the oldest captured frame into *out (and fx->last); false if none.
 * Popping a segment of the followed connection updates our_nxt/our_tsval. */
bool fx_pop(struct fx *fx, struct seg *out);
void fx_drain(struct fx *fx);
/* Prints every pending frame (debugging aid; used on failures). */
void fx_dump(const struct fx *fx);
/* Parses one frame.  check_csum: verify IPv4 and TCP checksums. */
void seg_parse(const uint8_t *frame, size_t len, bool check_csum, struct seg *out);
/* One line, tcpdump-like. */
const char *seg_str(const struct seg *s, char *buf, size_t cap);

/* --- building and injecting --- */
/* Builds a frame from a spec whose addressing is complete. Returns its length. */
size_t seg_build(uint8_t *buf, size_t cap, const struct seg_spec *sp);
/* Fills addressing/window defaults from the fixture and injects at test time t. */
void seg_inject(struct fx *fx, xt_time_t t, const struct seg_spec *sp);
#define seg_in(fx, t, ...) seg_inject((fx), (t), &(const struct seg_spec){ __VA_ARGS__ })
/* Injects an ICMP error from src (0: the peer) quoting one of our segments:
 * its IPv4 header and the first 8 bytes of its TCP header (RFC 792's
 * minimum).  mtu is the next-hop MTU of a fragmentation-needed message. */
void icmp_in(struct fx *fx, xt_time_t t, uint32_t src, uint8_t type, uint8_t code, uint16_t mtu,
	     const struct seg *quoted);
/* Injects a raw frame at test time t. */
void frame_in(struct fx *fx, xt_time_t t, const void *frame, size_t len);
/* Internet checksum helpers (independent of the engine's). */
uint16_t fx_csum(const void *data, size_t len, uint32_t initial);

/* --- the peer, following the fixture's connection ---
 * Each adds the peer's timestamp option when timestamps were negotiated and
 * advertises fx->peer.wnd (scaled by the peer's shift when negotiated). */
void peer_seg(struct fx *fx, xt_time_t t, const struct seg_spec *sp); /* fills TS/win */
void peer_data(struct fx *fx, xt_time_t t, const void *data, uint32_t len); /* ACK|PSH */
/* n bytes of the peer's pattern (stream offset = bytes the peer sent so far). */
void peer_data_n(struct fx *fx, xt_time_t t, uint32_t n);
/* A segment of n pattern bytes at an explicit sequence number (no tracking). */
void peer_data_at(struct fx *fx, xt_time_t t, uint32_t seq, uint32_t n);
void peer_fin(struct fx *fx, xt_time_t t);               /* FIN|ACK */
void peer_ack(struct fx *fx, xt_time_t t, uint32_t ack); /* pure ACK; sets peer_ack */
void peer_ack_all(struct fx *fx, xt_time_t t);           /* acks our_nxt */
void peer_ack_win(struct fx *fx, xt_time_t t, uint32_t ack, uint32_t wnd_bytes);
void peer_rst(struct fx *fx, xt_time_t t, uint32_t seq); /* bare RST */

/* Deterministic stream contents: byte at stream offset off. */
static inline uint8_t pat_byte(uint32_t off, uint8_t seed)
{
	return (uint8_t)(off * 7u + (off >> 8) * 13u + seed);
}
void pat_fill(uint8_t *buf, uint32_t len, uint32_t off, uint8_t seed);
bool pat_check(const uint8_t *buf, uint32_t len, uint32_t off, uint8_t seed);
#define PAT_PEER 0x5a /* seed of the peer's stream */
#define PAT_OURS 0x11 /* seed of what the app sends via app_send_n */

/* --- the application side (fx->s unless a socket is given) --- */
long app_send(struct fx *fx, xt_time_t t, const void *buf, size_t len);
long app_send_flags(struct fx *fx, xt_time_t t, const void *buf, size_t len, int flags);
/* n bytes of our pattern, continuing where the last app_send_n stopped. */
long app_send_n(struct fx *fx, xt_time_t t, size_t n);
long app_recv(struct fx *fx, xt_time_t t, void *buf, size_t len, int flags);
int app_shutdown(struct fx *fx, xt_time_t t, int how);
int app_close(struct fx *fx, xt_time_t t); /* fx->s becomes -1 */
int app_abort(struct fx *fx, xt_time_t t);
int app_setopt(struct fx *fx, xt_time_t t, int opt, int val);
int app_getopt(struct fx *fx, int opt);    /* the value; fails the test on error */
int app_state(struct fx *fx);
uint32_t app_events(struct fx *fx);
struct xt_tcp_info app_info(struct fx *fx);
const struct xt_counters *fx_cnt(const struct fx *fx);

/* --- fixtures: each leaves fx->s in the named state, output drained ---
 * They start at fx->now and return the test time at which they finish.
 * With fx->passive set, the connection is opened by the peer (we listen on
 * FX_LISTEN_PORT and accept). */
xt_time_t established_active(struct fx *fx);
xt_time_t established_passive(struct fx *fx);
xt_time_t established(struct fx *fx); /* active or passive per fx->passive */
xt_time_t syn_sent(struct fx *fx);
xt_time_t syn_recv(struct fx *fx);    /* simultaneous open: SYN_SENT + bare SYN */
xt_time_t fin_wait_1(struct fx *fx);  /* established + shutdown(WR) */
xt_time_t fin_wait_2(struct fx *fx);  /* + our FIN acked */
xt_time_t time_wait(struct fx *fx);   /* + peer FIN */
xt_time_t close_wait(struct fx *fx);  /* established + peer FIN */
xt_time_t last_ack(struct fx *fx);    /* + shutdown(WR) */
xt_time_t closing(struct fx *fx);     /* fin_wait_1 + peer FIN not acking ours */
/* Opens a listener on port with backlog; returns its handle (also fx->ls). */
int fx_listen(struct fx *fx, uint16_t port, int backlog);

/* --- expectations (each fails the test with a dump of what was sent) --- */
/* No frame captured. */
#define expect_none(fx) expect_none_((fx), __FILE__, __LINE__)
/* Pops exactly the next frame, a valid TCP segment of the followed
 * connection; returns it (valid until the next pop). */
#define expect_next(fx) expect_next_((fx), __FILE__, __LINE__)
/* Next frame has exactly these flags (PSH ignored), this seq and (when ACK is
 * among the flags) this ack. */
#define expect_seg(fx, flags, seq, ack) expect_seg_((fx), (flags), (seq), (ack), __FILE__, __LINE__)
/* Next frame is a pure ACK (no data) with this seq and ack. */
#define expect_ack(fx, seq, ack) expect_ack_((fx), (seq), (ack), __FILE__, __LINE__)
/* Next frame carries len bytes at seq, acks fx->peer_seq, flags ACK[|PSH];
 * when everything the app sent came from app_send_n, the bytes must be our
 * pattern at stream offset seq - our_iss - 1. */
#define expect_data(fx, seq, len) expect_data_((fx), (seq), (len), __FILE__, __LINE__)
/* As expect_seg, and no further frame is pending. */
#define expect_only(fx, flags, seq, ack) expect_only_((fx), (flags), (seq), (ack), __FILE__, __LINE__)
/* Next frame is a reset of the followed connection with this seq: RST, or
 * RST|ACK acking fx->peer_seq (RFC 9293 sends RST, Linux RST|ACK). */
#define expect_rst(fx, seq) expect_rst_((fx), (seq), __FILE__, __LINE__)
/* Next frame, any valid TCP segment from us (any connection). */
#define expect_tcp(fx) expect_tcp_((fx), __FILE__, __LINE__)
#define expect_state(fx, state) expect_state_((fx), (fx)->s, (state), __FILE__, __LINE__)
#define expect_sock_state(fx, sock, state) expect_state_((fx), (sock), (state), __FILE__, __LINE__)
/* Fails the test with a message and the pending frames. */
#define fx_fail(fx, ...) fx_fail_((fx), __FILE__, __LINE__, __VA_ARGS__)

void expect_none_(struct fx *fx, const char *file, int line);
const struct seg *expect_next_(struct fx *fx, const char *file, int line);
const struct seg *expect_seg_(struct fx *fx, uint8_t flags, uint32_t seq, uint32_t ack, const char *file, int line);
const struct seg *expect_ack_(struct fx *fx, uint32_t seq, uint32_t ack, const char *file, int line);
const struct seg *expect_data_(struct fx *fx, uint32_t seq, uint32_t len, const char *file, int line);
const struct seg *expect_only_(struct fx *fx, uint8_t flags, uint32_t seq, uint32_t ack, const char *file, int line);
void expect_state_(struct fx *fx, int sock, int state, const char *file, int line);
const struct seg *expect_rst_(struct fx *fx, uint32_t seq, const char *file, int line);
const struct seg *expect_tcp_(struct fx *fx, const char *file, int line);
void fx_fail_(const struct fx *fx, const char *file, int line, const char *fmt, ...)
	__attribute__((format(printf, 4, 5), noreturn));

/* Sequence arithmetic for tests. */
static inline bool seq_lt(uint32_t a, uint32_t b) { return (int32_t)(a - b) < 0; }
static inline bool seq_leq(uint32_t a, uint32_t b) { return (int32_t)(a - b) <= 0; }

#endif
