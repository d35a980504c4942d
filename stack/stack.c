/* The engine object: configuration, the TX batch, the socket table, the timer
 * heap and readiness events. */
#include "tcp.h"

const char *const xt_counter_names[] = {
#define XT_CNT_NAME(name) #name,
	XT_COUNTERS(XT_CNT_NAME)
#undef XT_CNT_NAME
	NULL,
};

void xt_stack_cfg_defaults(struct xt_stack_cfg *cfg)
{
	memset(cfg, 0, sizeof(*cfg));
	cfg->mtu = 1500;
	cfg->max_sockets = 65536;
	cfg->somaxconn = 4096;
	cfg->rcvbuf = 262144;
	cfg->sndbuf = 262144;
	cfg->mem_limit = 1ull << 30;
	cfg->arp_timeout_ms = 60000;
	cfg->arp_queue_max = 256;
	cfg->port_lo = 32768;
	cfg->port_hi = 60999;
	cfg->tcp_timestamps = 1;
	cfg->tcp_sack = 1;
	cfg->tcp_window_scaling = 1;
	cfg->tcp_syncookies = 1;
	cfg->tcp_congestion = XT_CC_CUBIC;
	cfg->tcp_syn_retries = 6;
	cfg->tcp_synack_retries = 5;
	cfg->tcp_retries2 = 15;
	cfg->time_wait_ms = 60000;
	cfg->fin_timeout_ms = 60000;
}

static uint32_t pow2_at_least(uint32_t n)
{
	uint32_t p = 1;
	while (p < n && p < (1u << 30))
		p <<= 1;
	return p;
}

static int cfg_valid(const struct xt_stack_cfg *c)
{
	if (!c->tx || c->mtu < 576 || c->mtu > XT_FRAME_MAX - XT_ETH_HLEN)
		return 0;
	if (!c->max_sockets || c->max_sockets > (1u << 24) || !c->somaxconn)
		return 0;
	if (!xt_cc_get(c->tcp_congestion))
		return 0;
	if (c->rcvbuf < 4096 || c->sndbuf < 4096 || c->port_lo == 0 || c->port_lo > c->port_hi)
		return 0;
	if (c->tx_csum_offload > XT_TX_CSUM_PARTIAL)
		return 0;
	return 1;
}

struct xt_stack *xt_stack_new(const struct xt_stack_cfg *cfg, xt_time_t now)
{
	if (!cfg || !cfg_valid(cfg))
		return NULL;
	struct xt_stack *st = calloc(1, sizeof(*st));
	if (!st)
		return NULL;
	st->cfg = *cfg;
	st->now = now;
	st->sock_cap = cfg->max_sockets;
	st->txmem = malloc((size_t)XT_TX_BATCH * XT_FRAME_MAX);
	st->tx_gen = 1; /* a new socket's tx_ref_gen (0) matches no batch */
	xt_stack_set_tso_max(st, cfg->tso_max);
	st->socks = calloc(st->sock_cap, sizeof(*st->socks));
	st->free_next = malloc(st->sock_cap * sizeof(*st->free_next));
	st->ehash_mask = pow2_at_least(st->sock_cap) - 1;
	st->ehash = calloc(st->ehash_mask + 1, sizeof(*st->ehash));
	st->bhash_mask = 4095;
	st->bhash = calloc(st->bhash_mask + 1, sizeof(*st->bhash));
	st->lhash = calloc(st->bhash_mask + 1, sizeof(*st->lhash));
	st->heap = malloc(st->sock_cap * sizeof(*st->heap));
	if (!st->lhash || !st->txmem || !st->socks || !st->free_next || !st->ehash || !st->bhash || !st->heap ||
	    xt_arp_init(st) < 0) {
		xt_stack_free(st);
		return NULL;
	}
	for (uint32_t i = 0; i < st->sock_cap; i++)
		st->free_next[i] = i + 1 < st->sock_cap ? (int32_t)(i + 1) : -1;
	st->free_head = 0;
	st->port_hint = (uint32_t)xt_siphash(cfg->secret, "port", 4);
	(void)xt_rxhold_init(st); /* without memory: every payload is copied */
	return st;
}

static void buf_release(struct xt_stack *st, uint8_t *b, uint64_t key);

void xt_stack_free(struct xt_stack *st)
{
	if (!st)
		return;
	st->ntx = 0; /* unsent frames die with the engine */
	/* and so do the backend's hooks: it may be closed already (it releases
	 * its own registrations) */
	st->cfg.tx_fence = NULL;
	st->cfg.tx_buf_unreg = NULL;
	if (st->socks) {
		for (uint32_t i = 0; i < st->sock_cap; i++)
			if (st->socks[i]) {
				/* kept frames die with the engine, not given back to
				 * a backend that may be gone */
				st->socks[i]->held_head = -1;
				st->socks[i]->held_bytes = 0;
				xt_sock_bufs_free(st, st->socks[i]);
				free(st->socks[i]);
			}
	}
	if (st->arp)
		xt_arp_free(st);
	xt_rxhold_free(st);
	for (uint32_t i = 0; i < st->bc_n; i++)
		buf_release(st, st->bc_buf[i], st->bc_key[i]);
	for (uint32_t i = 0; i < st->nquarantine; i++)
		free(st->quarantine[i]);
	free(st->quarantine);
	free(st->txmem);
	free(st->socks);
	free(st->free_next);
	free(st->ehash);
	free(st->bhash);
	free(st->lhash);
	free(st->heap);
	free(st);
}

const char *xt_cc_name(int which)
{
	const struct xt_cc_ops *cc = xt_cc_get(which);
	return cc ? cc->name : NULL;
}

int xt_cc_by_name(const char *name)
{
	for (int i = 0; xt_cc_get(i); i++)
		if (name && strcmp(name, xt_cc_get(i)->name) == 0)
			return i;
	return -1;
}

const struct xt_counters *xt_stack_counters(const struct xt_stack *st) { return &st->cnt; }
uint64_t xt_stack_mem_used(const struct xt_stack *st) { return st->mem_used; }
uint64_t xt_stack_mem_cached(const struct xt_stack *st) { return st->bc_bytes; }

/* --- TX batch --- */

static void build_reset(struct xt_stack *st)
{
	st->build_csum_partial = false;
	st->build_gso = 0;
	st->build_pay_len[0] = st->build_pay_len[1] = 0;
}

uint8_t *xt_tx_buf(struct xt_stack *st)
{
	if (st->ntx == XT_TX_BATCH)
		xt_stack_flush(st);
	build_reset(st);
	return st->txmem + (size_t)st->ntx * XT_FRAME_MAX;
}

void xt_tx_drop_build(struct xt_stack *st) { build_reset(st); }

void xt_tx_materialize(struct xt_stack *st, uint8_t *frame, uint32_t frame_len)
{
	uint32_t l0 = st->build_pay_len[0], l1 = st->build_pay_len[1], at = frame_len - l0 - l1;

	assert(!st->build_gso && frame_len <= XT_FRAME_MAX);
	if (l0)
		memcpy(frame + at, st->build_pay[0], l0);
	if (l1)
		memcpy(frame + at + l0, st->build_pay[1], l1);
	st->build_pay_len[0] = st->build_pay_len[1] = 0;
	if (st->build_csum_partial) {
		/* the field holds the pseudo-header sum: finish it here */
		uint8_t *th = frame + xt_l4_off(st);
		uint32_t sum = xt_csum_add(0, th, frame_len - xt_l4_off(st));
		xt_wr16(th + XT_TCP_CSUM_be16, xt_csum_fold(sum));
		st->build_csum_partial = false;
	}
}

void xt_tx_commit(struct xt_stack *st, uint32_t frame_len)
{
	uint32_t pay = xt_tx_pay_len(st), i = (uint32_t)st->ntx;

	assert(st->ntx < XT_TX_BATCH && frame_len >= pay &&
	       frame_len - pay <= XT_FRAME_MAX);
	st->txflags[i] = st->build_gso << XT_FRAME_GSO_SHIFT;
	if (pay) {
		st->txflags[i] |= XT_FRAME_GATHER;
		st->txpay[i][0] = st->build_pay[0];
		st->txpay[i][1] = st->build_pay[1];
		st->txpay_len[i][0] = st->build_pay_len[0];
		st->txpay_len[i][1] = st->build_pay_len[1];
		st->txpay_key[i] = st->build_pay_key;
	}
	if (st->build_csum_partial)
		st->txflags[i] |= XT_FRAME_CSUM_PARTIAL;
	build_reset(st);
	st->txlen[st->ntx++] = frame_len - pay;
	st->cnt.tx_frames++;
	st->cnt.tx_bytes += frame_len;
}

void xt_stack_set_tx_defer(struct xt_stack *st, bool on) { st->tx_defer = on; }

/* Also at creation.  The limit is what one IPv4 datagram carries after the
 * largest headers. */
void xt_stack_set_tso_max(struct xt_stack *st, uint32_t max)
{
	const uint32_t ip_max = 65535u - XT_IP_HLEN - 60u; /* 60: TCP header with every option */

	xt_stack_flush(st);
	st->cfg.tso_max = max > ip_max ? ip_max : max;
}

void xt_stack_set_tx_offload(struct xt_stack *st, uint8_t csum, uint8_t gather)
{
	xt_stack_flush(st);
	st->cfg.tx_csum_offload = csum > XT_TX_CSUM_PARTIAL ? XT_TX_CSUM_NONE : csum;
	st->cfg.tx_gather = gather != 0;
}

void xt_stack_flush(struct xt_stack *st)
{
	struct xt_frame f[XT_TX_BATCH];
	int n = st->ntx;
	if (!n)
		return;
	for (int i = 0; i < n; i++) {
		f[i].data = st->txmem + (size_t)i * XT_FRAME_MAX;
		f[i].len = st->txlen[i];
		f[i].flags = st->txflags[i];
		if (f[i].flags & XT_FRAME_GATHER) { /* the pieces are read only then */
			f[i].pay[0] = st->txpay[i][0];
			f[i].pay[1] = st->txpay[i][1];
			f[i].pay_len[0] = st->txpay_len[i][0];
			f[i].pay_len[1] = st->txpay_len[i][1];
			f[i].pay_key = st->txpay_key[i];
		}
	}
	st->tx_gen++; /* no frame points into a send ring any more */
	int sent = st->cfg.tx(st->cfg.tx_ctx, f, n);
	if (sent < 0)
		sent = 0;
	if (sent < n)
		st->cnt.tx_drop_backend += (uint64_t)(n - sent);
	st->ntx = 0;
}

/* --- input and timers --- */

void xt_stack_input(struct xt_stack *st, const void *frame, size_t len, xt_time_t now)
{
	struct xt_frame f = { .data = frame, .len = len > UINT32_MAX ? UINT32_MAX : (uint32_t)len, .flags = 0 };

	xt_stack_input_frame(st, &f, now);
}

void xt_stack_input_frame(struct xt_stack *st, const struct xt_frame *fr, xt_time_t now)
{
	const uint8_t *frame = fr->data;
	uint32_t len = fr->len;

	now = xt_clock(st, now);
	st->cnt.rx_frames++;
	st->cnt.rx_bytes += len;
	if (len > XT_FRAME_MAX * 32) { /* larger than any frame we handle (incl. GRO) */
		st->cnt.drop_ip_len++;
		return;
	}
	st->rx_csum_ok = st->cfg.rx_csum_verified || (fr->flags & XT_FRAME_CSUM_OK);
	if (fr->ref && st->held) { /* rx_cur: NULL between calls */
		if (fr->pos > st->rx_pos)
			st->rx_pos = fr->pos;
		xt_rx_evict(st);
		st->rx_cur = fr;
		st->rx_cur_held = false;
	}
	if (st->cfg.no_link_header)
		xt_ip_input(st, frame, len, now);
	else
		xt_eth_input(st, frame, len, now);
	st->rx_cur = NULL;
}

/* Min-heap of sockets keyed on their earliest timer. */
static void heap_swap(struct xt_stack *st, uint32_t a, uint32_t b)
{
	struct xt_sock *t = st->heap[a];
	st->heap[a] = st->heap[b];
	st->heap[b] = t;
	st->heap[a]->heap_idx = a;
	st->heap[b]->heap_idx = b;
}

static void heap_up(struct xt_stack *st, uint32_t i)
{
	while (i > 0) {
		uint32_t p = (i - 1) / 2;
		if (st->heap[p]->deadline <= st->heap[i]->deadline)
			break;
		heap_swap(st, i, p);
		i = p;
	}
}

static void heap_down(struct xt_stack *st, uint32_t i)
{
	for (;;) {
		uint32_t l = 2 * i + 1, r = l + 1, m = i;
		if (l < st->heap_n && st->heap[l]->deadline < st->heap[m]->deadline)
			m = l;
		if (r < st->heap_n && st->heap[r]->deadline < st->heap[m]->deadline)
			m = r;
		if (m == i)
			return;
		heap_swap(st, i, m);
		i = m;
	}
}

static void heap_remove(struct xt_stack *st, struct xt_sock *s)
{
	uint32_t i = s->heap_idx;
	if (i == XT_NO_HEAP)
		return;
	s->heap_idx = XT_NO_HEAP;
	if (i != --st->heap_n) {
		st->heap[i] = st->heap[st->heap_n];
		st->heap[i]->heap_idx = i;
		heap_down(st, i);
		heap_up(st, i);
	}
}

/* The heap's key for a socket, s->deadline, is never later than its earliest
 * timer (the 2MSL timer of a socket on the TIME_WAIT list excepted: the
 * list keeps those, see xt_tw_add) but may be earlier: a timer that is
 * cleared or moved later (the
 * retransmission timer, on nearly every ACK) leaves the key where it was,
 * and the key is corrected only when it reaches the top of the heap.  Linux
 * likewise leaves a cleared retransmission timer pending to fire for
 * nothing.  Arming a timer earlier than the key moves the key up at once. */
static xt_time_t earliest(const struct xt_sock *s)
{
	xt_time_t d = XT_TIME_NEVER;
	for (int i = 0; i < XT_T_NUM; i++)
		if (s->tmr[i] < d && !(i == XT_T_2MSL && s->in_tw))
			d = s->tmr[i];
	return d;
}

/* Sets s's key to its earliest timer exactly and restores the heap. */
static void heap_update(struct xt_stack *st, struct xt_sock *s)
{
	xt_time_t d = earliest(s);
	s->deadline = d;
	if (d == XT_TIME_NEVER) {
		heap_remove(st, s);
		return;
	}
	if (s->heap_idx == XT_NO_HEAP) {
		s->heap_idx = st->heap_n;
		st->heap[st->heap_n++] = s;
	}
	heap_down(st, s->heap_idx);
	heap_up(st, s->heap_idx);
}

/* The top socket's key was stale: its earliest timer is d, later. */
static void heap_fix_top(struct xt_stack *st, xt_time_t d)
{
	struct xt_sock *s = st->heap[0];

	s->deadline = d;
	if (d == XT_TIME_NEVER)
		heap_remove(st, s);
	else
		heap_down(st, 0);
}

/* Corrects stale keys at the top until the top's key is exact: then it is
 * the engine's true next deadline. */
static void heap_settle(struct xt_stack *st)
{
	while (st->heap_n) {
		xt_time_t d = earliest(st->heap[0]);
		if (d == st->heap[0]->deadline)
			return;
		heap_fix_top(st, d);
	}
}

/* Brings s's key down to when (if earlier), inserting s if needed. */
static void heap_lower(struct xt_stack *st, struct xt_sock *s, xt_time_t when)
{
	if (when >= s->deadline)
		return; /* later than the key: corrected when the key comes up */
	s->deadline = when;
	if (s->heap_idx == XT_NO_HEAP) {
		s->heap_idx = st->heap_n;
		st->heap[st->heap_n++] = s;
	}
	heap_up(st, s->heap_idx);
}

static void tw_unlink(struct xt_stack *st, struct xt_sock *s);
static bool tw_append(struct xt_stack *st, struct xt_sock *s);

void xt_timer_set(struct xt_stack *st, struct xt_sock *s, int t, xt_time_t when)
{
	s->tmr[t] = when;
	if (t == XT_T_2MSL && s->in_tw) { /* the TIME_WAIT list's, not the heap's */
		tw_unlink(st, s);
		if (tw_append(st, s))
			return;
		s->in_tw = 0; /* it would end before the list's tail: the heap times it */
	}
	heap_lower(st, s, when);
}

void xt_stack_poll(struct xt_stack *st, xt_time_t now)
{
	now = xt_clock(st, now);
	/* Each socket's handler re-arms or clears what fired, so this ends. */
	while (st->heap_n && st->heap[0]->deadline <= now) {
		struct xt_sock *s = st->heap[0];
		xt_time_t d = earliest(s);
		if (d > now) { /* a stale key: nothing of s is due */
			heap_fix_top(st, d);
			continue;
		}
		xt_tcp_timers(st, s, now);
		/* s may be gone (TIME_WAIT ends): touch it only if still on top */
		if (st->heap_n && st->heap[0] == s)
			heap_update(st, s);
		if (st->heap_n && st->heap[0] == s && s->deadline <= now) {
			/* A handler that left a due timer would spin: defer it. */
			assert(!"timer handler left a due timer");
			xt_timer_set(st, s, 0, now + XT_MS(1));
			heap_update(st, s);
		}
	}
	/* TIME_WAITs that are over, in the order they end. */
	while (st->tw_head && st->tw_head->tmr[XT_T_2MSL] <= now) {
		struct xt_sock *s = st->tw_head;
		xt_tcp_timers(st, s, now);
		if (st->tw_head == s) { /* on_2msl frees it: never here */
			assert(!"TIME_WAIT survived its timer");
			xt_tw_del(st, s);
		}
	}
	xt_arp_poll(st, now);
	xt_stack_flush(st);
}

xt_time_t xt_stack_next_deadline(struct xt_stack *st)
{
	heap_settle(st); /* the top key is exact now, and so is the bound */
	return xt_stack_deadline_hint(st);
}

xt_time_t xt_stack_deadline_hint(const struct xt_stack *st)
{
	xt_time_t d = st->heap_n ? st->heap[0]->deadline : XT_TIME_NEVER; /* never later than exact */
	if (st->tw_head && st->tw_head->tmr[XT_T_2MSL] < d)
		d = st->tw_head->tmr[XT_T_2MSL];
	xt_time_t a = xt_arp_deadline(st);
	return a < d ? a : d;
}

/* Connections whose data or FIN the peer has not acknowledged yet: what a
 * process must wait for before it exits, since the engine dies with it. */
uint32_t xt_stack_unfinished(const struct xt_stack *st)
{
	uint32_t n = 0;
	for (uint32_t i = 0; i < st->sock_cap; i++) {
		const struct xt_sock *s = st->socks[i];
		if (!s)
			continue;
		bool fin_out = s->state == XT_FIN_WAIT1 || s->state == XT_CLOSING || s->state == XT_LAST_ACK;
		bool data_out = s->sq.buf && s->sq.len && xt_state_synchronized(s->state) && s->state != XT_TIME_WAIT;
		n += fin_out || data_out;
	}
	return n;
}

/* --- sockets --- */

struct xt_sock *xt_sock_get(struct xt_stack *st, int id)
{
	if (id < 0 || (uint32_t)id >= st->sock_cap)
		return NULL;
	struct xt_sock *s = st->socks[id];
	return s && !s->orphan ? s : NULL;
}

/* Orphaned TIME_WAIT sockets (and FIN_WAIT_2 ones that became TIME_WAIT)
 * are a list in the order their 2MSL timers end, not heap entries: a server
 * that closes first keeps one per connection for time_wait_ms (tens of
 * thousands), and in the heap they made every other socket's timer update
 * walk a tree that deep.  Every TIME_WAIT gets the same length, so a new one
 * (or one whose timer restarts) ends after every one before it and goes at
 * the tail, in constant time.  One that would end before the tail (a socket
 * closed long after its TIME_WAIT began) stays in the heap instead, as any
 * other socket: no walk, whatever the application does.  The list's head is
 * also the one a full socket table gives up first (xt_sock_new). */
static void tw_unlink(struct xt_stack *st, struct xt_sock *s)
{
	if (s->tw_prev)
		s->tw_prev->tw_next = s->tw_next;
	else
		st->tw_head = s->tw_next;
	if (s->tw_next)
		s->tw_next->tw_prev = s->tw_prev;
	else
		st->tw_tail = s->tw_prev;
	s->tw_next = s->tw_prev = NULL;
}

/* Appends s if it ends no earlier than the tail; false (and s not linked)
 * otherwise. */
static bool tw_append(struct xt_stack *st, struct xt_sock *s)
{
	struct xt_sock *t = st->tw_tail;
	if (t && t->tmr[XT_T_2MSL] > s->tmr[XT_T_2MSL])
		return false;
	s->tw_next = NULL;
	s->tw_prev = t;
	if (t)
		t->tw_next = s;
	else
		st->tw_head = s;
	st->tw_tail = s;
	return true;
}

void xt_tw_add(struct xt_stack *st, struct xt_sock *s)
{
	if (s->in_tw || !tw_append(st, s))
		return; /* already, or out of order: the heap keeps its timer */
	s->in_tw = 1;
	heap_update(st, s); /* its 2MSL timer no longer counts there */
}

void xt_tw_del(struct xt_stack *st, struct xt_sock *s)
{
	if (!s->in_tw)
		return;
	tw_unlink(st, s);
	s->in_tw = 0;
	heap_lower(st, s, s->tmr[XT_T_2MSL]); /* back to the heap, if still set */
}

/* With every slot taken, the oldest orphaned TIME_WAIT gives its slot up:
 * a busy server that closes first (HTTP with Connection: close) holds a
 * TIME_WAIT per connection for time_wait_ms, and new connections must not
 * fail for them.  Linux instead caps TIME_WAITs (tcp_max_tw_buckets) and
 * skips TIME_WAIT beyond the cap; taking the oldest keeps the newest, which
 * matter most, and only under pressure. */
struct xt_sock *xt_sock_new(struct xt_stack *st)
{
	if (st->free_head < 0 && st->tw_head) {
		st->cnt.tcp_tw_recycled++;
		xt_sock_free(st, st->tw_head);
	}
	if (st->free_head < 0)
		return NULL;
	struct xt_sock *s = calloc(1, sizeof(*s));
	if (!s)
		return NULL;
	int id = st->free_head;
	st->free_head = st->free_next[id];
	st->socks[id] = s;
	st->nsocks++;
	xt_sock_init(st, s);
	s->id = id;
	return s;
}

/* Defaults of a new socket; also used for the stateless cookie SYN-ACK. */
void xt_sock_init(struct xt_stack *st, struct xt_sock *s)
{
	memset(s, 0, sizeof(*s));
	s->id = -1;
	s->state = XT_CLOSE;
	s->heap_idx = XT_NO_HEAP;
	for (int i = 0; i < XT_T_NUM; i++)
		s->tmr[i] = XT_TIME_NEVER;
	s->deadline = XT_TIME_NEVER;
	s->held_head = s->held_tail = -1;
	s->rcvbuf = st->cfg.rcvbuf;
	s->sndbuf = st->cfg.sndbuf;
	s->rcvlowat = 1;
	s->linger = -1;
	s->keepidle_s = XT_KEEPIDLE_S;
	s->keepintvl_s = XT_KEEPINTVL_S;
	s->keepcnt = XT_KEEPCNT;
	s->rto_us = XT_RTO_INIT_US;
	s->cc = xt_cc_get(st->cfg.tcp_congestion);
	s->pmtu = st->cfg.mtu;
	s->rcv_mss = XT_DEFAULT_MSS;
}

void xt_sock_free(struct xt_stack *st, struct xt_sock *s)
{
	if (s->in_tw) { /* off the list; no stop in the heap on the way out */
		tw_unlink(st, s);
		s->in_tw = 0;
	}
	heap_remove(st, s);
	if (s->in_ehash)
		xt_ehash_remove(st, s);
	if (s->bound)
		xt_bhash_remove(st, s);
	if (s->in_lhash)
		xt_lhash_remove(st, s);
	xt_sock_bufs_free(st, s);
	st->socks[s->id] = NULL;
	st->free_next[s->id] = st->free_head;
	st->free_head = s->id;
	st->nsocks--;
	free(s);
}

/* Socket buffers come from a small cache of those freed before, most
 * recently freed first (their pages are resident and likely cached), so a
 * short connection costs no malloc and free of two rings, no heap growth and
 * trimming and no page faults on fresh memory.  The cache is bounded
 * (XT_BUF_CACHE, XT_BUF_CACHE_BYTES or mem_limit / 16) and outside mem_used,
 * which counts the buffers of live sockets.  A send buffer prefers one the
 * backend has registered, a receive buffer one it has not. */
static uint8_t *buf_get(struct xt_stack *st, uint32_t cap, uint64_t *key, bool registered)
{
	uint32_t pick = UINT32_MAX;
	for (uint32_t i = st->bc_n; i-- > 0;) {
		if (st->bc_cap[i] != cap)
			continue;
		if ((st->bc_key[i] != 0) == registered) {
			pick = i;
			break;
		}
		if (pick == UINT32_MAX)
			pick = i; /* the newest of the right size, if none is better */
	}
	if (pick == UINT32_MAX) {
		*key = 0;
		return malloc(cap);
	}
	uint8_t *b = st->bc_buf[pick];
	*key = st->bc_key[pick];
	st->bc_n--;
	st->bc_buf[pick] = st->bc_buf[st->bc_n];
	st->bc_key[pick] = st->bc_key[st->bc_n];
	st->bc_cap[pick] = st->bc_cap[st->bc_n];
	st->bc_bytes -= cap;
	return b;
}

/* A buffer registered with the backend keeps its registration in the cache
 * (the next connection's send buffer needs none); it is released only with
 * the buffer. */
static void buf_release(struct xt_stack *st, uint8_t *b, uint64_t key)
{
	if (key && st->cfg.tx_buf_unreg)
		st->cfg.tx_buf_unreg(st->cfg.buf_ctx, key);
	free(b);
}

static void buf_put(struct xt_stack *st, uint8_t *b, uint32_t cap, uint64_t key)
{
	uint64_t max = st->cfg.mem_limit / 16 < XT_BUF_CACHE_BYTES ? st->cfg.mem_limit / 16 : XT_BUF_CACHE_BYTES;
	if (!b)
		return;
	if (st->bc_n == XT_BUF_CACHE || st->bc_bytes + cap > max) {
		buf_release(st, b, key);
		return;
	}
	st->bc_buf[st->bc_n] = b;
	st->bc_key[st->bc_n] = key;
	st->bc_cap[st->bc_n] = cap;
	st->bc_n++;
	st->bc_bytes += cap;
}

void xt_stack_set_tx_bufs(struct xt_stack *st, uint64_t (*reg)(void *, void *, uint32_t),
			  void (*unreg)(void *, uint64_t), int (*fence)(void *), void *ctx)
{
	/* the old backend's handles are forgotten, not released: they are not
	 * this one's (a fork child's NIC is its own) */
	for (uint32_t i = 0; i < st->bc_n; i++)
		st->bc_key[i] = 0;
	for (uint32_t i = 0; i < st->sock_cap; i++)
		if (st->socks[i])
			st->socks[i]->rq.key = st->socks[i]->sq.key = 0;
	st->cfg.tx_buf_reg = reg;
	st->cfg.tx_buf_unreg = unreg;
	st->cfg.tx_fence = fence;
	st->cfg.buf_ctx = ctx;
}

/* A send buffer the device may still read: never reused; freed with the
 * engine (after its backend), or lost if even the list cannot grow. */
static void quarantine(struct xt_stack *st, uint8_t *b)
{
	st->cnt.tx_fence_leaks++;
	uint8_t **q = realloc(st->quarantine, sizeof(*q) * (st->nquarantine + 1));
	if (!q)
		return;
	st->quarantine = q;
	q[st->nquarantine++] = b;
}

int xt_sock_bufs_alloc(struct xt_stack *st, struct xt_sock *s)
{
	if (s->rq.buf)
		return 0;
	uint64_t need = (uint64_t)s->rcvbuf + s->sndbuf;
	if (st->mem_used + need > st->cfg.mem_limit)
		return -ENOBUFS;
	uint64_t rk, sk;
	uint8_t *rb = buf_get(st, s->rcvbuf, &rk, false);
	uint8_t *sb = rb ? buf_get(st, s->sndbuf, &sk, true) : NULL;
	if (!sb) {
		if (rb)
			buf_put(st, rb, s->rcvbuf, rk);
		return -ENOBUFS;
	}
	if (!sk && st->cfg.tx_gather && st->cfg.tx_buf_reg)
		sk = st->cfg.tx_buf_reg(st->cfg.buf_ctx, sb, s->sndbuf); /* 0: the backend copies */
	xt_ring_init(&s->rq, rb, s->rcvbuf, rk);
	xt_ring_init(&s->sq, sb, s->sndbuf, sk);
	st->mem_used += need;
	return 0;
}

void xt_sock_bufs_free(struct xt_stack *st, struct xt_sock *s)
{
	if (!s->rq.buf)
		return;
	xt_tx_unref(st, s, s->snd_una + s->sq.cap);
	xt_rx_drop(st, s);
	st->mem_used -= (uint64_t)s->rq.cap + s->sq.cap;
	buf_put(st, s->rq.buf, s->rq.cap, s->rq.key);
	/* Frames gathered from the send buffer may still be read by the device
	 * (a backend that sends in place completes later): wait for it, or
	 * never let the buffer go. */
	if (s->tx_ref_gen && st->cfg.tx_fence && st->cfg.tx_fence(st->cfg.buf_ctx) < 0)
		quarantine(st, s->sq.buf);
	else
		buf_put(st, s->sq.buf, s->sq.cap, s->sq.key);
	memset(&s->rq, 0, sizeof(s->rq));
	memset(&s->sq, 0, sizeof(s->sq));
}

/* Reports a changed event mask to the caller, for handles it still owns. */
void xt_sock_wake(struct xt_stack *st, struct xt_sock *s)
{
	uint32_t ev = xt_tcp_events_of(s);
	bool fresh = s->ev_new;
	if (ev == s->events && !fresh)
		return;
	s->events = ev;
	s->ev_new = 0;
	if (!s->orphan && !s->parent && st->cfg.on_event)
		st->cfg.on_event(st->cfg.event_ctx, s->id, fresh && (ev & XT_EV_IN) ? ev | XT_EV_NEW : ev);
}
