/* The application side of TCP: the socket API, connection life (state
 * changes, done, TIME_WAIT), ISNs, and readiness (Linux tcp_poll()). */
#include "tcp.h"

const char *xt_state_name(int state)
{
	static const char *const names[] = {
		[XT_ESTABLISHED] = "ESTAB",    [XT_SYN_SENT] = "SYN-SENT",   [XT_SYN_RECV] = "SYN-RECV",
		[XT_FIN_WAIT1] = "FIN-WAIT-1", [XT_FIN_WAIT2] = "FIN-WAIT-2", [XT_TIME_WAIT] = "TIME-WAIT",
		[XT_CLOSE] = "UNCONN",         [XT_CLOSE_WAIT] = "CLOSE-WAIT", [XT_LAST_ACK] = "LAST-ACK",
		[XT_LISTEN] = "LISTEN",        [XT_CLOSING] = "CLOSING",
	};
	if (state < XT_ESTABLISHED || state > XT_CLOSING)
		return "?";
	return names[state];
}

/* RFC 6528: ISN = M + F(4-tuple, secret), M a 4 microsecond clock. */
uint32_t xt_tcp_isn(const struct xt_stack *st, uint32_t lip, uint16_t lport, uint32_t rip,
		    uint16_t rport, xt_time_t now)
{
	uint32_t t[3] = { lip, rip, ((uint32_t)lport << 16) | rport };
	return (uint32_t)xt_siphash(st->cfg.secret, t, sizeof(t)) + (uint32_t)(now / 4000);
}

void xt_tcp_set_state(struct xt_stack *st, struct xt_sock *s, int state)
{
	s->state = (uint8_t)state;
	xt_sock_wake(st, s);
}

static void clear_timers(struct xt_stack *st, struct xt_sock *s)
{
	for (int i = 0; i < XT_T_NUM; i++)
		xt_timer_clear(st, s, i);
}

/* Linux tcp_done(): the connection is over.  The socket stays for its owner
 * (to read the error); an orphan or an embryonic child is freed.  Callers
 * must not touch s afterwards. */
void xt_tcp_done(struct xt_stack *st, struct xt_sock *s, int err)
{
	if (err)
		s->err = err;
	xt_tw_del(st, s);
	s->state = XT_CLOSE;
	s->shut = XT_SHUTDOWN_MASK;
	s->connecting = 0;
	clear_timers(st, s);
	if (s->in_ehash)
		xt_ehash_remove(st, s);
	if (s->bound && !s->user_bound)
		xt_bhash_remove(st, s);
	if (s->parent && s->in_synq) {
		xt_listen_unlink(s);
		xt_sock_free(st, s);
		return;
	}
	if (s->orphan) {
		xt_sock_free(st, s);
		return;
	}
	xt_sock_wake(st, s);
	if (s->parent)
		xt_sock_wake(st, s->parent);
}

void xt_tcp_enter_time_wait(struct xt_stack *st, struct xt_sock *s, xt_time_t now)
{
	clear_timers(st, s);
	s->state = XT_TIME_WAIT;
	s->shut = XT_SHUTDOWN_MASK;
	s->done = 1;
	if (s->orphan) {
		xt_sock_bufs_free(st, s);
		xt_tw_add(st, s);
	}
	xt_timer_set(st, s, XT_T_2MSL, now + XT_MS(st->cfg.time_wait_ms));
	xt_sock_wake(st, s);
}

/* --- readiness --- */

static bool writeable(const struct xt_sock *s)
{
	if (!s->sq.buf)
		return true;
	uint32_t used = s->sq.len, free = s->sq.cap - s->sq.len;
	return free >= used / 2 && free > 0; /* Linux sk_stream_is_writeable */
}

/* Linux tcp_poll(). */
uint32_t xt_tcp_events_of(const struct xt_sock *s)
{
	int state = s->state == XT_TIME_WAIT ? XT_CLOSE : s->state;
	if (state == XT_LISTEN)
		return s->aq_len ? XT_EV_IN | XT_EV_RDNORM : 0;
	uint32_t m = 0;
	if (s->shut == XT_SHUTDOWN_MASK || state == XT_CLOSE)
		m |= XT_EV_HUP;
	if (s->shut & XT_RCV_SHUTDOWN)
		m |= XT_EV_IN | XT_EV_RDNORM | XT_EV_RDHUP;
	if (state != XT_SYN_SENT && state != XT_SYN_RECV) {
		uint32_t lowat = s->rcvlowat ? s->rcvlowat : 1;
		if (s->rq.buf && xt_rq_avail(s) >= lowat)
			m |= XT_EV_IN | XT_EV_RDNORM;
		if (!(s->shut & XT_SEND_SHUTDOWN)) {
			if (writeable(s))
				m |= XT_EV_OUT | XT_EV_WRNORM;
		} else {
			m |= XT_EV_OUT | XT_EV_WRNORM;
		}
	}
	if (s->err)
		m |= XT_EV_ERR;
	return m;
}

uint32_t xt_tcp_events(struct xt_stack *st, int id)
{
	struct xt_sock *s = xt_sock_get(st, id);
	return s ? xt_tcp_events_of(s) : XT_EV_ERR | XT_EV_HUP;
}

/* --- the API --- */

/* The end of a call from the application: its frames go out now, or with
 * tx_defer wait for the caller's flush (xt_stack_set_tx_defer). */
static void user_flush(struct xt_stack *st)
{
	if (!st->tx_defer)
		xt_stack_flush(st);
}

int xt_tcp_open(struct xt_stack *st)
{
	struct xt_sock *s = xt_sock_new(st);
	return s ? s->id : -ENOBUFS;
}

int xt_tcp_state(struct xt_stack *st, int id)
{
	struct xt_sock *s = xt_sock_get(st, id);
	return s ? s->state : -EBADF;
}

void xt_tcp_set_udata(struct xt_stack *st, int id, void *udata)
{
	struct xt_sock *s = xt_sock_get(st, id);
	if (s)
		s->udata = udata;
}

void *xt_tcp_udata(struct xt_stack *st, int id)
{
	struct xt_sock *s = xt_sock_get(st, id);
	return s ? s->udata : NULL;
}

static int pick_free_port(struct xt_stack *st, struct xt_sock *s, uint32_t ip)
{
	uint32_t lo = st->cfg.port_lo, n = (uint32_t)st->cfg.port_hi - lo + 1;
	uint32_t start = st->port_hint++;
	for (uint32_t i = 0; i < n; i++) {
		uint16_t port = (uint16_t)(lo + (start + i) % n);
		if (xt_bind_check(st, s, ip, port, false) == 0)
			return port;
	}
	return -EADDRINUSE;
}

int xt_tcp_bind(struct xt_stack *st, int id, uint32_t ip, uint16_t port)
{
	struct xt_sock *s = xt_sock_get(st, id);
	if (!s)
		return -EBADF;
	if (s->state != XT_CLOSE || s->bound || s->ever_connected)
		return -EINVAL;
	if (ip && ip != st->cfg.ip)
		return -EADDRNOTAVAIL;
	if (!port) {
		int p = pick_free_port(st, s, ip);
		if (p < 0)
			return p;
		port = (uint16_t)p;
	} else if (xt_bind_check(st, s, ip, port, false) < 0) {
		return -EADDRINUSE;
	}
	s->lip = ip;
	s->lport = port;
	s->user_bound = 1;
	xt_bhash_insert(st, s);
	return 0;
}

int xt_tcp_bind_check(struct xt_stack *st, int id, uint32_t ip, uint16_t port)
{
	struct xt_sock *s = xt_sock_get(st, id);
	if (!s)
		return -EBADF;
	if (ip && ip != st->cfg.ip)
		return -EADDRNOTAVAIL;
	return port ? xt_bind_check(st, s, ip, port, false) : 0;
}

int xt_tcp_listen(struct xt_stack *st, int id, int backlog)
{
	struct xt_sock *s = xt_sock_get(st, id);
	if (!s)
		return -EBADF;
	/* Linux: a negative backlog, cast to unsigned, is capped to somaxconn. */
	uint32_t bl = (uint32_t)backlog;
	if (bl > st->cfg.somaxconn)
		bl = st->cfg.somaxconn;
	if (s->state == XT_LISTEN) {
		s->backlog = bl;
		return 0;
	}
	if (s->state != XT_CLOSE || s->ever_connected || s->connecting)
		return -EINVAL;
	if (!s->bound) {
		int p = pick_free_port(st, s, 0);
		if (p < 0)
			return p;
		s->lport = (uint16_t)p;
		xt_bhash_insert(st, s);
		s->user_bound = 1;
	} else if (xt_bind_check(st, s, s->lip, s->lport, true) < 0) {
		return -EADDRINUSE;
	}
	s->backlog = bl;
	s->shut = 0;
	s->state = XT_LISTEN;
	xt_lhash_insert(st, s);
	xt_sock_wake(st, s);
	return 0;
}

int xt_tcp_accept(struct xt_stack *st, int id, uint32_t *peer_ip, uint16_t *peer_port)
{
	struct xt_sock *l = xt_sock_get(st, id);
	if (!l)
		return -EBADF;
	if (l->state != XT_LISTEN)
		return -EINVAL;
	struct xt_sock *c = xt_acceptq_pop(l);
	if (!c)
		return -EAGAIN;
	if (peer_ip)
		*peer_ip = c->rip;
	if (peer_port)
		*peer_port = c->rport;
	xt_sock_wake(st, l);
	c->events = ~0u; /* report the child's first mask */
	xt_sock_wake(st, c);
	return c->id;
}

int xt_tcp_connect(struct xt_stack *st, int id, uint32_t ip, uint16_t port, xt_time_t now)
{
	struct xt_sock *s = xt_sock_get(st, id);
	if (!s)
		return -EBADF;
	now = xt_clock(st, now);
	if (s->state == XT_SYN_SENT || s->state == XT_SYN_RECV)
		return -EALREADY;
	if (s->state != XT_CLOSE || s->ever_connected)
		return -EISCONN;
	if (s->connecting) { /* an earlier attempt failed: report it once */
		int err = s->err ? s->err : ECONNABORTED;
		s->err = 0;
		s->connecting = 0;
		return -err;
	}
	uint32_t nh;
	if (!ip || !port)
		return !port ? -ECONNREFUSED : -ENETUNREACH;
	if (xt_ip_route(st, ip, &nh) < 0)
		return -ENETUNREACH;
	if (!s->lip)
		s->lip = st->cfg.ip;
	if (!s->lport) {
		int p = xt_ephemeral_port(st, s, ip, port);
		if (p < 0)
			return p;
		s->lport = (uint16_t)p;
		xt_bhash_insert(st, s);
	}
	struct xt_sock *tw = xt_ehash_lookup(st, s->lip, s->lport, ip, port);
	uint32_t tw_snd_nxt = 0, tw_ts_recent = 0;
	xt_time_t tw_ts_stamp = 0;
	if (tw) {
		/* Linux __inet_hash_connect() on a bound port: the 4-tuple in
		 * TIME_WAIT is taken over when timestamps were in use there
		 * (tcp_twsk_unique() with twp == NULL: PAWS protects the new
		 * connection, whatever net.ipv4.tcp_tw_reuse says); anything
		 * else holding the 4-tuple is EADDRNOTAVAIL. */
		if (tw->state != XT_TIME_WAIT || !tw->ts_ok || !tw->ts_recent_stamp)
			return -EADDRNOTAVAIL;
		tw_snd_nxt = tw->snd_nxt;
		tw_ts_recent = tw->ts_recent;
		tw_ts_stamp = tw->ts_recent_stamp;
		xt_tcp_done(st, tw, 0);
	}
	if (xt_sock_bufs_alloc(st, s) < 0)
		return -ENOBUFS;
	s->rip = ip;
	s->rport = port;
	s->ws_ok = st->cfg.tcp_window_scaling;
	s->sack_ok = st->cfg.tcp_sack;
	s->ts_ok = st->cfg.tcp_timestamps;
	s->rcv_ws = 0;
	if (s->ws_ok)
		while (s->rcv_ws < XT_MAX_WSCALE && (65535u << s->rcv_ws) < s->rcvbuf)
			s->rcv_ws++;
	s->adv_mss = xt_tcp_wire_mss(st, s);
	s->iss = xt_tcp_isn(st, s->lip, s->lport, ip, port, now);
	if (tw_ts_stamp) { /* tcp_twsk_unique(): above the old connection's space */
		s->iss = tw_snd_nxt + 65535 + 2;
		if (!s->iss)
			s->iss = 1;
		s->ts_recent = tw_ts_recent;
		s->ts_recent_stamp = tw_ts_stamp;
	}
	s->ts_offset = (uint32_t)(s->iss * 2654435761u);
	s->snd_una = s->iss;
	s->snd_max = s->iss;
	s->rcv_nxt = 0;
	s->err = 0;
	s->shut = 0;
	s->connecting = 1;
	s->state = XT_SYN_SENT;
	xt_ehash_insert(st, s);
	st->cnt.tcp_active_opens++;
	s->rtt_time = now;
	xt_tcp_send_syn(st, s, now);
	xt_tcp_rearm_rto(st, s, now);
	xt_sock_wake(st, s);
	user_flush(st);
	return -EINPROGRESS;
}

/* n bytes just queued in s's send buffer: out they go, as far as allowed. */
static long sent_queued(struct xt_stack *st, struct xt_sock *s, uint32_t n, int flags, xt_time_t now)
{
	s->more = (flags & XT_MSG_MORE) ? 1 : 0;
	xt_tcp_output(st, s, now);
	xt_sock_wake(st, s);
	user_flush(st);
	return n;
}

long xt_tcp_send(struct xt_stack *st, int id, const void *buf, size_t len, int flags, xt_time_t now)
{
	struct xt_sock *s = xt_sock_get(st, id);
	if (!s)
		return -EBADF;
	now = xt_clock(st, now);
	if (!xt_state_can_send(s->state)) {
		/* Linux sk_stream_wait_connect() */
		if (s->err) {
			int e = s->err;
			s->err = 0;
			return -e;
		}
		if (s->state == XT_SYN_SENT || s->state == XT_SYN_RECV)
			return -EAGAIN;
		return -EPIPE;
	}
	if (s->err || (s->shut & XT_SEND_SHUTDOWN)) {
		int e = s->err ? s->err : EPIPE;
		s->err = 0;
		return -e;
	}
	if (len == 0)
		return 0;
	uint32_t n = xt_ring_append(&s->sq, buf, len > UINT32_MAX ? UINT32_MAX : (uint32_t)len);
	if (n == 0)
		return -EAGAIN;
	return sent_queued(st, s, n, flags, now);
}

/* Bytes may be queued now (what xt_tcp_send checks before it reports why not). */
static bool can_queue(const struct xt_sock *s)
{
	return xt_state_can_send(s->state) && !s->err && !(s->shut & XT_SEND_SHUTDOWN) && s->sq.buf;
}

long xt_tcp_send_space(struct xt_stack *st, int id, uint8_t *p[2], uint32_t len[2])
{
	p[0] = p[1] = NULL;
	len[0] = len[1] = 0;
	struct xt_sock *s = xt_sock_get(st, id);
	if (!s)
		return -EBADF;
	if (!can_queue(s))
		return 0;
	long room = xt_ring_free_span(&s->sq, p, len);
	return room ? room : -EAGAIN;
}

long xt_tcp_send_commit(struct xt_stack *st, int id, uint32_t n, int flags, xt_time_t now)
{
	struct xt_sock *s = xt_sock_get(st, id);
	if (!s)
		return -EBADF;
	if (!n)
		return 0;
	if (!can_queue(s) || n > xt_ring_free_space(&s->sq))
		return -EINVAL;
	now = xt_clock(st, now);
	s->sq.len += n; /* the bytes are in place: xt_ring_append without the copy */
	return sent_queued(st, s, n, flags, now);
}

/* Linux tcp_cleanup_rbuf(): after reading, announce a window that at least
 * doubled once the advertised one fell to half the buffer or less. */
static void window_update(struct xt_stack *st, struct xt_sock *s, xt_time_t now)
{
	if (!xt_state_synchronized(s->state) || s->state == XT_TIME_WAIT || (s->shut & XT_RCV_SHUTDOWN))
		return;
	uint32_t cur = SEQ_GT(s->rcv_adv, s->rcv_nxt) ? s->rcv_adv - s->rcv_nxt : 0;
	if (2 * cur > s->rcvbuf)
		return;
	uint32_t w = xt_tcp_window_now(s);
	if (w && w >= 2 * cur)
		xt_tcp_send_ack(st, s, now);
}

long xt_tcp_recv(struct xt_stack *st, int id, void *buf, size_t len, int flags, xt_time_t now)
{
	struct xt_sock *s = xt_sock_get(st, id);
	if (!s)
		return -EBADF;
	now = xt_clock(st, now);
	if (s->state == XT_LISTEN)
		return -ENOTCONN;
	if (len == 0)
		return 0;
	uint32_t avail = s->rq.buf ? xt_rq_avail(s) : 0;
	if (avail) {
		uint32_t n = len < avail ? (uint32_t)len : avail;
		uint32_t from_ring = n < s->rq.len ? n : s->rq.len;
		bool peek = flags & XT_MSG_PEEK;
		xt_ring_peek(&s->rq, 0, buf, from_ring);
		if (n > from_ring) /* then straight from the kept frames */
			(void)xt_rx_read(st, s, (uint8_t *)buf + from_ring, n - from_ring, peek);
		if (!peek) {
			xt_ring_consume(&s->rq, from_ring);
			if (!s->nreass)
				xt_ring_rewind(&s->rq);
			window_update(st, s, now);
			xt_sock_wake(st, s);
			user_flush(st);
		}
		return n;
	}
	/* Linux tcp_recvmsg_locked(), nothing copied: */
	if (s->fin_rcvd)
		return 0;
	if (s->err) {
		int e = s->err;
		s->err = 0;
		xt_sock_wake(st, s);
		return -e;
	}
	if (s->shut & XT_RCV_SHUTDOWN)
		return 0;
	if (s->state == XT_CLOSE)
		return -ENOTCONN;
	return -EAGAIN;
}

/* Queues our FIN: Linux tcp_close_state() + tcp_send_fin(). */
static void queue_fin(struct xt_stack *st, struct xt_sock *s, xt_time_t now)
{
	switch (s->state) {
	case XT_SYN_RECV: /* the FIN follows the handshake: establish() sends it */
		s->fin_queued = 1;
		return;
	case XT_ESTABLISHED:
		xt_tcp_set_state(st, s, XT_FIN_WAIT1);
		break;
	case XT_CLOSE_WAIT:
		xt_tcp_set_state(st, s, XT_LAST_ACK);
		break;
	default:
		return;
	}
	s->fin_queued = 1;
	s->snd_fin_seq = s->snd_una + (s->sq.buf ? s->sq.len : 0);
	xt_tcp_output(st, s, now);
}

static void listener_stop(struct xt_stack *st, struct xt_sock *l, xt_time_t now)
{
	while (l->synq) {
		struct xt_sock *c = l->synq;
		xt_listen_unlink(c);
		c->orphan = 1;
		xt_tcp_done(st, c, 0);
	}
	while (l->aq_head) {
		struct xt_sock *c = l->aq_head;
		xt_listen_unlink(c);
		c->orphan = 1;
		if (c->state != XT_CLOSE) { /* Linux inet_child_forget(): RST */
			xt_tcp_send_rst_sock(st, c, now);
			xt_tcp_done(st, c, 0);
		} else {
			xt_sock_free(st, c);
		}
	}
	if (l->in_lhash)
		xt_lhash_remove(st, l);
	l->state = XT_CLOSE;
}

int xt_tcp_shutdown(struct xt_stack *st, int id, int how, xt_time_t now)
{
	struct xt_sock *s = xt_sock_get(st, id);
	if (!s)
		return -EBADF;
	if (how < XT_SHUT_RD || how > XT_SHUT_RDWR)
		return -EINVAL;
	now = xt_clock(st, now);
	uint8_t bits = (uint8_t)(how + 1); /* SHUT_RD -> RCV_SHUTDOWN ... */
	int ret = 0;
	switch (s->state) {
	case XT_CLOSE:
	case XT_TIME_WAIT: /* the owner's socket is CLOSE on Linux by then */
		ret = -ENOTCONN;
		s->shut |= bits;
		break;
	case XT_LISTEN:
		if (bits & XT_RCV_SHUTDOWN)
			listener_stop(st, s, now);
		break;
	case XT_SYN_SENT: /* Linux tcp_disconnect(): the attempt is dropped */
		xt_ehash_remove(st, s);
		clear_timers(st, s);
		s->state = XT_CLOSE;
		s->connecting = 0;
		break;
	default:
		s->shut |= bits;
		if (bits & XT_SEND_SHUTDOWN)
			queue_fin(st, s, now);
		break;
	}
	xt_sock_wake(st, s);
	user_flush(st);
	return ret;
}

/* Drops a connection with RST and releases the handle. */
static void abort_conn(struct xt_stack *st, struct xt_sock *s, xt_time_t now)
{
	if (xt_state_synchronized(s->state) && s->state != XT_TIME_WAIT)
		xt_tcp_send_rst_sock(st, s, now);
	s->orphan = 1;
	xt_tcp_done(st, s, 0);
}

/* Linux tcp_close(). */
int xt_tcp_close(struct xt_stack *st, int id, xt_time_t now)
{
	struct xt_sock *s = xt_sock_get(st, id);
	if (!s)
		return -EBADF;
	now = xt_clock(st, now);
	s->shut = XT_SHUTDOWN_MASK;
	if (s->state == XT_LISTEN) {
		listener_stop(st, s, now);
		xt_sock_free(st, s);
		user_flush(st);
		return 0;
	}
	if (s->state == XT_CLOSE || s->state == XT_SYN_SENT) {
		xt_sock_free(st, s);
		user_flush(st);
		return 0;
	}
	if (s->state == XT_TIME_WAIT) {
		s->orphan = 1;
		xt_sock_bufs_free(st, s);
		xt_tw_add(st, s);
		return 0;
	}
	if (s->rq.buf && xt_rq_avail(s)) { /* RFC 2525 2.17: unread data means RST */
		st->cnt.tcp_abort_on_close++;
		abort_conn(st, s, now);
	} else if (s->linger == 0) {
		st->cnt.tcp_abort_on_linger++;
		abort_conn(st, s, now);
	} else {
		s->orphan = 1;
		queue_fin(st, s, now);
		if (s->state == XT_FIN_WAIT2 && s->tmr[XT_T_2MSL] == XT_TIME_NEVER)
			xt_timer_set(st, s, XT_T_2MSL, now + XT_MS(st->cfg.fin_timeout_ms));
	}
	user_flush(st);
	return 0;
}

/* Linux tcp_disconnect(): back to a fresh, unconnected socket (RST to a
 * synchronized peer, data dropped, shutdown flags cleared, the port kept
 * only if bind() chose it).  connect(AF_UNSPEC), and connect() reporting a
 * failed attempt, do this. */
int xt_tcp_disconnect(struct xt_stack *st, int id, xt_time_t now)
{
	struct xt_sock *s = xt_sock_get(st, id);
	if (!s)
		return -EBADF;
	now = xt_clock(st, now);
	if (s->state == XT_LISTEN) {
		listener_stop(st, s, now);
	} else if (s->state != XT_CLOSE) {
		if (xt_state_synchronized(s->state) && s->state != XT_TIME_WAIT)
			xt_tcp_send_rst_sock(st, s, now);
		clear_timers(st, s);
		if (s->in_ehash)
			xt_ehash_remove(st, s);
	}
	if (s->bound && !s->user_bound) {
		xt_bhash_remove(st, s);
		s->lip = 0;
		s->lport = 0;
	}
	xt_sock_bufs_free(st, s);
	s->state = XT_CLOSE;
	s->shut = 0;
	s->done = s->fin_rcvd = s->fin_ooo = s->fin_queued = 0;
	s->connecting = s->ever_connected = 0;
	s->in_recovery = 0;
	s->nreass = s->nsacked = 0;
	s->rip = 0;
	s->rport = 0;
	s->retransmits = s->backoff = s->probes_out = 0;
	s->rto_us = XT_RTO_INIT_US;
	s->srtt_us = s->rttvar_us = 0;
	xt_sock_wake(st, s);
	user_flush(st);
	return 0;
}

int xt_tcp_abort(struct xt_stack *st, int id, xt_time_t now)
{
	now = xt_clock(st, now);
	struct xt_sock *s = xt_sock_get(st, id);
	if (!s)
		return -EBADF;
	if (s->state == XT_LISTEN) {
		listener_stop(st, s, now);
		xt_sock_free(st, s);
	} else if (s->state == XT_CLOSE || s->state == XT_SYN_SENT) {
		xt_sock_free(st, s);
	} else {
		abort_conn(st, s, now);
	}
	user_flush(st);
	return 0;
}

static int set_buf(struct xt_sock *s, uint32_t *field, int val)
{
	if (val < 0)
		return -EINVAL;
	uint32_t v = (uint32_t)val;
	if (v < 4096)
		v = 4096;
	if (v > (64u << 20))
		v = 64u << 20;
	if (!s->rq.buf) /* rings are sized once, when the connection starts */
		*field = v;
	return 0;
}

static int set_keep(uint32_t *field, int val, int max)
{
	if (val < 1 || val > max)
		return -EINVAL;
	*field = (uint32_t)val;
	return 0;
}

int xt_tcp_setopt(struct xt_stack *st, int id, int opt, int val, xt_time_t now)
{
	struct xt_sock *s = xt_sock_get(st, id);
	if (!s)
		return -EBADF;
	now = xt_clock(st, now);
	int ret = 0;
	switch (opt) {
	case XT_SO_REUSEADDR: s->reuseaddr = !!val; break;
	case XT_SO_REUSEPORT: s->reuseport = !!val; break;
	case XT_SO_KEEPALIVE:
		s->keepalive = !!val;
		xt_tcp_arm_keepalive(st, s, now);
		break;
	case XT_SO_RCVBUF: ret = set_buf(s, &s->rcvbuf, val); break;
	case XT_SO_SNDBUF: ret = set_buf(s, &s->sndbuf, val); break;
	case XT_SO_RCVLOWAT: s->rcvlowat = val < 0 ? INT32_MAX : val == 0 ? 1 : (uint32_t)val; break;
	case XT_SO_LINGER: s->linger = val < 0 ? -1 : val; break;
	case XT_TCP_NODELAY:
		s->nodelay = !!val;
		if (val) {
			/* Linux __tcp_sock_set_nodelay(): TCP_NAGLE_PUSH sends
			 * what is queued once, even while corked; the next write
			 * clears it (skb_entail()), so later data is corked again
			 * and its 200 ms ceiling starts with it. */
			uint8_t cork = s->cork, more = s->more;
			s->cork = s->more = 0;
			xt_tcp_output(st, s, now);
			s->cork = cork;
			s->more = more;
			if (s->sq.len <= xt_tcp_flight(s))
				xt_timer_clear(st, s, XT_T_CORK);
		}
		break;
	case XT_TCP_CORK:
		s->cork = !!val;
		if (!val) {
			xt_timer_clear(st, s, XT_T_CORK);
			xt_tcp_output(st, s, now);
		}
		break;
	case XT_TCP_KEEPIDLE:
		ret = set_keep(&s->keepidle_s, val, 32767);
		if (!ret)
			xt_tcp_arm_keepalive(st, s, now);
		break;
	case XT_TCP_KEEPINTVL: ret = set_keep(&s->keepintvl_s, val, 32767); break;
	case XT_TCP_KEEPCNT: ret = set_keep(&s->keepcnt, val, 127); break;
	case XT_TCP_MAXSEG:
		if (val && (val < 88 || val > 32767))
			return -EINVAL;
		s->user_mss = (uint16_t)val;
		if (xt_state_synchronized(s->state))
			xt_tcp_update_mss(st, s);
		break;
	case XT_TCP_QUICKACK:
		/* Linux: 1 leaves interactive mode, 0 enters it, and reading it
		 * back tells which (tcp_sock_set_quickack()) */
		s->pingpong = !val;
		if (val) {
			s->quickack = XT_MAX_QUICKACKS;
			if (s->ack_pending && xt_state_synchronized(s->state))
				xt_tcp_send_ack(st, s, now);
		} else {
			s->quickack = 0;
		}
		break;
	case XT_TCP_USER_TIMEOUT:
		if (val < 0)
			return -EINVAL;
		s->user_timeout_ms = (uint32_t)val;
		break;
	case XT_TCP_DEFER_ACCEPT: s->defer_accept_s = val < 0 ? 0 : (uint32_t)val; break;
	case XT_TCP_CONGESTION: {
		const struct xt_cc_ops *cc = xt_cc_get(val);
		if (!cc)
			return -ENOENT; /* Linux: unknown algorithm */
		if (cc != s->cc) {
			s->cc = cc;
			if (xt_state_synchronized(s->state)) { /* as Linux tcp_reinit_congestion_control */
				uint32_t cwnd = s->cwnd, ssthresh = s->ssthresh;
				cc->init(s);
				s->cwnd = cwnd;
				s->ssthresh = ssthresh;
			}
		}
		break;
	}
	default: return -ENOPROTOOPT;
	}
	xt_sock_wake(st, s);
	user_flush(st);
	return ret;
}

int xt_tcp_getopt(struct xt_stack *st, int id, int opt, int *val)
{
	struct xt_sock *s = xt_sock_get(st, id);
	if (!s)
		return -EBADF;
	switch (opt) {
	case XT_SO_REUSEADDR: *val = s->reuseaddr; break;
	case XT_SO_REUSEPORT: *val = s->reuseport; break;
	case XT_SO_KEEPALIVE: *val = s->keepalive; break;
	case XT_SO_RCVBUF: *val = (int)s->rcvbuf; break;
	case XT_SO_SNDBUF: *val = (int)s->sndbuf; break;
	case XT_SO_RCVLOWAT: *val = (int)s->rcvlowat; break;
	case XT_SO_LINGER: *val = s->linger; break;
	case XT_SO_ERROR: /* Linux: sk_err, else sk_err_soft; both cleared */
		*val = s->err ? s->err : s->soft_err;
		if (s->err)
			s->err = 0;
		else
			s->soft_err = 0;
		xt_sock_wake(st, s);
		break;
	case XT_TCP_NODELAY: *val = s->nodelay; break;
	case XT_TCP_CORK: *val = s->cork; break;
	case XT_TCP_KEEPIDLE: *val = (int)s->keepidle_s; break;
	case XT_TCP_KEEPINTVL: *val = (int)s->keepintvl_s; break;
	case XT_TCP_KEEPCNT: *val = (int)s->keepcnt; break;
	case XT_TCP_MAXSEG:
		*val = xt_state_synchronized(s->state) ? s->mss : s->user_mss ? s->user_mss : XT_DEFAULT_MSS;
		break;
	case XT_TCP_QUICKACK: *val = !s->pingpong; break;
	case XT_TCP_USER_TIMEOUT: *val = (int)s->user_timeout_ms; break;
	case XT_TCP_DEFER_ACCEPT: *val = (int)s->defer_accept_s; break;
	case XT_TCP_CONGESTION: *val = s->cc == &xt_cc_cubic ? XT_CC_CUBIC : XT_CC_RENO; break;
	default: return -ENOPROTOOPT;
	}
	return 0;
}

int xt_tcp_getname(struct xt_stack *st, int id, int peer, uint32_t *ip, uint16_t *port)
{
	struct xt_sock *s = xt_sock_get(st, id);
	if (!s)
		return -EBADF;
	if (peer) {
		/* Linux: the owner's socket is CLOSE once its connection went to
		 * TIME_WAIT, so it has no peer any more */
		if ((!xt_state_synchronized(s->state) && s->state != XT_SYN_RECV) || s->state == XT_TIME_WAIT)
			return -ENOTCONN;
		*ip = s->rip;
		*port = s->rport;
	} else {
		*ip = s->lip;
		*port = s->lport;
	}
	return 0;
}

long xt_tcp_inq(struct xt_stack *st, int id)
{
	struct xt_sock *s = xt_sock_get(st, id);
	if (!s)
		return -EBADF;
	if (s->state == XT_LISTEN)
		return -EINVAL;
	return s->rq.buf ? xt_rq_avail(s) : 0;
}

long xt_tcp_outq(struct xt_stack *st, int id)
{
	struct xt_sock *s = xt_sock_get(st, id);
	if (!s)
		return -EBADF;
	if (s->state == XT_LISTEN)
		return -EINVAL;
	return s->sq.buf ? s->sq.len : 0;
}

static uint32_t ms_since(xt_time_t t, xt_time_t now)
{
	return t && now > t ? (uint32_t)((now - t) / 1000000u) : 0;
}

static void tcp_info_of(const struct xt_sock *s, struct xt_tcp_info *ti, xt_time_t now)
{
	memset(ti, 0, sizeof(*ti));
	ti->state = s->state == XT_TIME_WAIT ? XT_CLOSE : s->state;
	ti->ca_state = s->in_recovery ? 3 : s->retransmits ? 4 : 0; /* TCP_CA_Recovery / Loss */
	ti->retransmits = s->retransmits;
	ti->probes = s->probes_out;
	ti->backoff = s->backoff;
	ti->options = (s->ts_ok ? XT_TI_OPT_TIMESTAMPS : 0) | (s->sack_ok ? XT_TI_OPT_SACK : 0) |
		      (s->ws_ok ? XT_TI_OPT_WSCALE : 0);
	ti->snd_wscale = s->snd_ws;
	ti->rcv_wscale = s->rcv_ws;
	ti->rto_us = s->rto_us;
	ti->ato_us = 40000;
	ti->snd_mss = s->mss;
	ti->rcv_mss = s->rcv_mss;
	ti->unacked = s->mss ? (xt_tcp_flight(s) + s->mss - 1) / s->mss : 0;
	ti->sacked = s->mss ? xt_sack_bytes(s) / s->mss : 0;
	if (s->mss) {
		uint32_t lost, retrans;
		xt_sack_loss_counts(s, &lost, &retrans);
		ti->lost = (lost + s->mss - 1) / s->mss;
		ti->retrans = (retrans + s->mss - 1) / s->mss;
	}
	ti->last_data_sent_ms = ms_since(s->last_data_tx, now);
	ti->last_data_recv_ms = ms_since(s->last_data_rx, now);
	ti->last_ack_recv_ms = ms_since(s->last_ack_rx, now);
	ti->pmtu = s->pmtu;
	ti->rcv_ssthresh = s->rcvbuf;
	ti->rtt_us = s->srtt_us;
	ti->rttvar_us = s->rttvar_us;
	ti->snd_ssthresh = s->mss ? (s->ssthresh >= UINT32_MAX / 2 ? 0x7fffffff : s->ssthresh / s->mss) : 0;
	ti->snd_cwnd = s->mss ? s->cwnd / s->mss : 0;
	ti->advmss = s->adv_mss;
	ti->reordering = 3;
	ti->rcv_space = s->rcvbuf;
	ti->total_retrans = s->total_retrans;
	ti->bytes_acked = s->bytes_acked;
	ti->bytes_received = s->bytes_received;
	ti->segs_out = s->segs_out;
	ti->segs_in = s->segs_in;
	ti->snd_wnd = s->snd_wnd;
	ti->rcv_wnd = SEQ_GT(s->rcv_adv, s->rcv_nxt) ? s->rcv_adv - s->rcv_nxt : 0;
	uint32_t flight = xt_tcp_flight(s);
	uint32_t q = s->sq.buf ? s->sq.len : 0;
	ti->notsent_bytes = q > flight ? q - flight : 0;
	ti->rcv_queue = s->state == XT_LISTEN ? s->aq_len : s->rq.buf ? xt_rq_avail(s) : 0;
	ti->snd_queue = s->state == XT_LISTEN ? s->backlog : q;
}

int xt_tcp_info(struct xt_stack *st, int id, struct xt_tcp_info *ti, xt_time_t now)
{
	now = xt_clock(st, now);
	struct xt_sock *s = xt_sock_get(st, id);
	if (!s)
		return -EBADF;
	tcp_info_of(s, ti, now);
	return 0;
}

/* --- enumeration, for observability tools (no effect on any socket) --- */

uint32_t xt_stack_nsockets(const struct xt_stack *st)
{
	return st->nsocks;
}

bool xt_stack_has_conns(const struct xt_stack *st)
{
	uint32_t seen = 0;
	for (uint32_t i = 0; i < st->sock_cap && seen < st->nsocks; i++) {
		const struct xt_sock *s = st->socks[i];
		if (!s)
			continue;
		if (s->state != XT_LISTEN && s->state != XT_CLOSE)
			return true;
		seen++;
	}
	return false;
}

int xt_tcp_next(const struct xt_stack *st, int from)
{
	for (uint32_t id = from < 0 ? 0 : (uint32_t)from; id < st->sock_cap; id++)
		if (st->socks[id])
			return (int)id;
	return -1;
}

int xt_tcp_view(struct xt_stack *st, int id, struct xt_sock_view *v, xt_time_t now)
{
	now = xt_clock(st, now);
	if (id < 0 || (uint32_t)id >= st->sock_cap || !st->socks[id])
		return -EBADF;
	const struct xt_sock *s = st->socks[id];
	memset(v, 0, sizeof(*v));
	v->state = s->state;
	v->orphan = s->orphan;
	v->pending = s->in_aq || s->in_synq;
	v->lip = s->lip;
	v->lport = s->lport;
	if (s->state != XT_LISTEN && s->state != XT_CLOSE) {
		v->rip = s->rip;
		v->rport = s->rport;
	}
	v->udata = s->orphan ? NULL : s->udata;
	tcp_info_of(s, &v->info, now);
	v->info.state = s->state;
	return 0;
}

