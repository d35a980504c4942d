/* Socket life: creation, the offload decision, bind/listen/accept/connect,
 * names, shutdown, close and dup.
 *
 * Offload rules (man/libxtcp.7):
 *  - socket(AF_INET, SOCK_STREAM, 0|IPPROTO_TCP) gets a real kernel socket
 *    and an undecided entry in the fd table: options are applied to the
 *    kernel fd (and remembered for the engine), nothing else happens yet.
 *  - bind to the engine's address: engine.  bind to INADDR_ANY: the kernel
 *    fd is bound too (same port) and the decision waits for listen/connect.
 *    bind to any other address: the kernel, for good.
 *  - connect to an address the engine can reach (its subnet, or anything
 *    with XTCP_GW, never loopback, the kernel's own addresses or multicast):
 *    engine; else the kernel, as long as the socket carries no engine traffic.
 *  - listen on INADDR_ANY: on the engine and on the kernel fd, so local
 *    clients still connect; accept returns whichever is ready.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <fcntl.h>
#include <poll.h>
#include <string.h>
#include <unistd.h>

#include "shim.h"
#include "stats.h"

static void dbg_fd(struct xp_sock *s, const char *what)
{
	XP_LOG(XP_LOG_DEBUG, "socket %p: %s", (void *)s, what);
}

int xp_socket(int domain, int type, int protocol)
{
	int fd = xp_real.socket(domain, type, protocol);
	if (fd < 0)
		return -errno;
	if (!xp_engine_ready() || xp_fdtab_init() < 0)
		return fd;
	/* a vfork child shares our fd table: it must not change it */
	if (XP_UNLIKELY(xp_eng.forked_child) ? !xp_fork_attach() : xp_fork_in_vfork())
		return fd;
	struct xp_sock *s = xp_sock_new();
	if (!s) {
		XP_LOG(XP_LOG_WARN, "fd %d: out of memory for the socket; it stays on the kernel", fd);
		return fd;
	}
	atomic_store(&s->nonblock, (type & SOCK_NONBLOCK) != 0);
	struct xp_sock *old = xp_fd_set(fd, s);
	if (old) /* an fd closed behind our back (fclose, raw syscall) */
		xp_sock_put(old);
	xp_sock_put(s);
	return fd;
}

/* Engine lock held. */
int xp_engine_socket(struct xp_sock *s)
{
	if (s->esock >= 0)
		return 0;
	int id = xt_tcp_open(xp_eng.st);
	if (id < 0)
		return id;
	s->esock = id;
	xt_tcp_set_udata(xp_eng.st, id, s);
	xp_opts_apply_engine(s);
	atomic_store(&s->mode, XP_ENGINE);
	return 0;
}

static void engine_socket_drop(struct xp_sock *s)
{
	if (s->esock < 0)
		return;
	xt_tcp_set_udata(xp_eng.st, s->esock, NULL);
	xt_tcp_close(xp_eng.st, s->esock, xp_clock());
	xp_flow_release(s, false);
	s->esock = -1;
}

/* Engine lock held.  Only while the socket carries no engine traffic. */
void xp_handoff(struct xp_sock *s, const char *why)
{
	engine_socket_drop(s);
	atomic_store(&s->mode, XP_KERNEL);
	if (s->epis)
		xp_mux_handoff(s);
	xp_stats_handoff(why); /* counted by reason: xtcp-stat -s */
	XP_LOG(XP_LOG_DEBUG, "socket %p handed to the kernel: %s", (void *)s, why);
}

static bool can_handoff(const struct xp_sock *s)
{
	int mode = atomic_load(&s->mode);
	if (mode == XP_UNDECIDED)
		return true;
	if (mode != XP_ENGINE || s->listening || s->ss != XP_SS_UNCONNECTED)
		return false;
	/* bound to the engine's own address: the kernel cannot take that */
	return !s->bound || s->bound_any;
}

/* Linux move_addr_to_kernel() + the AF_INET checks. */
static int get_sin(const struct sockaddr *uaddr, socklen_t len, struct sockaddr_in *sin, bool *unspec)
{
	struct sockaddr_storage ss;
	if ((int)len < 0 || len > sizeof(ss))
		return -EINVAL;
	memset(&ss, 0, sizeof(ss));
	if (len && xp_copy_in(&ss, uaddr, len) < 0)
		return -EFAULT;
	*unspec = false;
	if (len >= sizeof(sa_family_t) && ss.ss_family == AF_UNSPEC)
		*unspec = true;
	memcpy(sin, &ss, sizeof(*sin));
	return 0;
}

static uint16_t kernel_port(int fd)
{
	struct sockaddr_in a;
	socklen_t l = sizeof(a);
	if (xp_real.getsockname(fd, (struct sockaddr *)&a, &l) < 0)
		return 0;
	return ntohs(a.sin_port);
}

int xp_bind(int fd, struct xp_sock *s, const struct sockaddr *addr, socklen_t len)
{
	struct sockaddr_in sin;
	bool unspec;
	int r = get_sin(addr, len, &sin, &unspec);
	if (r < 0)
		return r;
	if (len < sizeof(struct sockaddr_in))
		return -EINVAL;
	if (sin.sin_family != AF_INET && !(unspec && sin.sin_addr.s_addr == htonl(INADDR_ANY)))
		return -EAFNOSUPPORT;
	uint32_t ip = ntohl(sin.sin_addr.s_addr);
	uint16_t port = ntohs(sin.sin_port);

	xp_lock();
	if (s->bound || s->listening || s->ss != XP_SS_UNCONNECTED) {
		xp_unlock();
		return -EINVAL;
	}
	const char *rule = xp_rules_kernel(XP_AT_BIND, ip, port); /* XTCP_RULES */
	if (rule && can_handoff(s)) {
		xp_handoff(s, rule);
		xp_unlock();
		r = xp_real.bind(fd, addr, len);
		return r < 0 ? -errno : 0;
	}
	if (ip != 0 && ip != xp_cfg.ip) {
		xp_handoff(s, "bound to an address the engine does not own");
		xp_unlock();
		r = xp_real.bind(fd, addr, len);
		return r < 0 ? -errno : 0;
	}
	if (ip == xp_cfg.ip) {
		r = xp_engine_socket(s);
		if (r == 0)
			r = xt_tcp_bind(xp_eng.st, s->esock, ip, port);
		if (r == 0) {
			uint32_t lip;
			xt_tcp_getname(xp_eng.st, s->esock, 0, &lip, &s->port);
			s->bound = true;
		}
		xp_unlock();
		return r;
	}
	/* INADDR_ANY: the engine's port space first (its conflicts), then the
	 * kernel's, so local clients can reach a later listener too.  A
	 * conflict on the engine address is a conflict on a local address, as
	 * Linux sees it: EADDRINUSE before the kernel socket is touched. */
	if (port && xp_engine_socket(s) == 0 && xt_tcp_bind_check(xp_eng.st, s->esock, 0, port) == -EADDRINUSE) {
		xp_unlock();
		return -EADDRINUSE;
	}
	xp_unlock();
	r = xp_real.bind(fd, addr, len);
	if (r < 0)
		return -errno;
	if (!port)
		port = kernel_port(fd);
	xp_lock();
	r = xp_engine_socket(s);
	if (r == 0)
		r = xt_tcp_bind(xp_eng.st, s->esock, 0, port);
	if (r < 0) {
		/* the kernel has the port: the socket can still live there */
		xp_handoff(s, r == -EADDRINUSE ? "port in use on the engine" : "engine socket unavailable");
		xp_unlock();
		return 0;
	}
	s->bound = s->bound_any = true;
	s->port = port;
	xp_unlock();
	return 0;
}

int xp_listen(int fd, struct xp_sock *s, int backlog)
{
	int r;
	xp_lock();
	if (s->esock >= 0 && xt_tcp_state(xp_eng.st, s->esock) == XT_LISTEN) {
		r = xt_tcp_listen(xp_eng.st, s->esock, backlog);
		bool k = s->klisten;
		xp_unlock();
		if (r == 0 && k && xp_real.listen(fd, backlog) < 0)
			return -errno;
		return r;
	}
	if (s->ss != XP_SS_UNCONNECTED || (s->esock >= 0 && xt_tcp_state(xp_eng.st, s->esock) != XT_CLOSE)) {
		xp_unlock();
		return -EINVAL;
	}
	if (s->bound && !s->bound_any) { /* the engine's own address only */
		r = xt_tcp_listen(xp_eng.st, s->esock, backlog);
		if (r == 0) {
			s->listening = true;
			xp_flow_listen(s);
			xp_fork_listening(s);
		}
		xp_unlock();
		return r;
	}
	/* INADDR_ANY (explicit, or Linux's autobind): both. */
	xp_unlock();
	if (xp_real.listen(fd, backlog) < 0)
		return -errno;
	uint16_t port = s->bound ? s->port : kernel_port(fd);
	xp_lock();
	const char *rule = xp_rules_kernel(XP_AT_LISTEN, 0, port); /* XTCP_RULES */
	if (rule && can_handoff(s)) {
		xp_handoff(s, rule); /* the kernel fd listens already */
		xp_unlock();
		return 0;
	}
	r = xp_engine_socket(s);
	if (r == 0 && !s->bound) {
		r = xt_tcp_bind(xp_eng.st, s->esock, 0, port);
		if (r == 0)
			s->bound = s->bound_any = true, s->port = port;
	}
	if (r == 0)
		r = xt_tcp_listen(xp_eng.st, s->esock, backlog);
	if (r < 0) {
		xp_handoff(s, "the engine cannot listen on this port");
		xp_unlock();
		return 0;
	}
	s->listening = true;
	s->klisten = true;
	xp_flow_listen(s);
	xp_fork_listening(s);
	xp_unlock();
	XP_LOG(XP_LOG_DEBUG, "fd %d listens on port %u (engine and kernel)", fd, port);
	return 0;
}

/* --- placeholders ---------------------------------------------------------
 *
 * An engine connection's fd is a kernel socket too: the number is the
 * program's, and calls the engine does not answer (getsockopt of most
 * options, F_GETFL, fstat) ask that socket, unconnected.  A socket() per
 * accept, and its release at close, were the costliest system calls of a
 * connection-per-request server (nginx with Connection: close: about a tenth
 * of its CPU time).  So an accepted fd is a dup of one of two templates, a
 * blocking and a non-blocking unconnected socket made once: a dup costs an
 * fd table slot.  Nothing may change a template (every fd sharing it would
 * see it), so a call that would change the socket or its open file
 * description first gives the fd a socket of its own (xp_ph_own), with the
 * same O_NONBLOCK and FD_CLOEXEC; one that changes only O_NONBLOCK moves it
 * to the other template.  Reads need neither: a fresh placeholder of its
 * own answered them the same way. */

atomic_int xp_ph_tmpl[2] = { -1, -1 };
atomic_ulong xp_ph_shared_n, xp_ph_own_n;
/* Not the engine lock: taking that attaches a fork child to the family (a
 * child's calls on its copies of the parent's connections must not). */
static pthread_mutex_t ph_mu = PTHREAD_MUTEX_INITIALIZER;

/* The template for nb, made if need be.  ph_mu held. */
static int ph_template_locked(bool nb)
{
	int t = atomic_load(&xp_ph_tmpl[nb]);
	if (t >= 0)
		return t;
	t = xp_real.socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | (nb ? SOCK_NONBLOCK : 0), 0);
	if (t >= 0)
		atomic_store(&xp_ph_tmpl[nb], t);
	return t;
}

/* A new fd for an accepted connection: a dup of a template (*shared), or a
 * socket of its own if there is no template.  Engine lock held. */
static int ph_new(int flags, bool *shared)
{
	bool nb = (flags & SOCK_NONBLOCK) != 0;
	pthread_mutex_lock(&ph_mu);
	int t = ph_template_locked(nb);
	int fd = t < 0 ? -1 : xp_real.fcntl(t, (flags & SOCK_CLOEXEC) ? F_DUPFD_CLOEXEC : F_DUPFD, 0);
	pthread_mutex_unlock(&ph_mu);
	*shared = fd >= 0;
	if (t < 0)
		fd = xp_real.socket(AF_INET, SOCK_STREAM | (flags & (SOCK_NONBLOCK | SOCK_CLOEXEC)), 0);
	return fd;
}

/* fd (sharing a template) now refers to kfd's open file description, with
 * its FD_CLOEXEC kept.  ph_mu held. */
static int ph_replace(int fd, int kfd)
{
	int fdfl = xp_real.fcntl(fd, F_GETFD);
	if (fdfl < 0)
		return -errno;
	if (xp_real.dup3(kfd, fd, (fdfl & FD_CLOEXEC) ? O_CLOEXEC : 0) < 0)
		return -errno;
	return 0;
}

int xp_ph_own(int fd, struct xp_sock *s)
{
	if (XP_LIKELY(!atomic_load(&s->ph_shared)))
		return 0;
	int r = 0;
	pthread_mutex_lock(&ph_mu);
	if (atomic_load(&s->ph_shared)) {
		int fl = xp_real.fcntl(fd, F_GETFL);
		int k = fl < 0 ? -1 : xp_real.socket(AF_INET, SOCK_STREAM | ((fl & O_NONBLOCK) ? SOCK_NONBLOCK : 0), 0);
		if (k < 0) {
			r = -errno; /* EMFILE: the call fails, nothing else changed */
		} else {
			r = ph_replace(fd, k);
			xp_real.close(k);
		}
		if (r == 0) {
			atomic_store(&s->ph_shared, false);
			atomic_fetch_add(&xp_ph_own_n, 1);
		}
	}
	pthread_mutex_unlock(&ph_mu);
	return r;
}

int xp_ph_setnb(int fd, struct xp_sock *s, bool nb)
{
	if (XP_LIKELY(!atomic_load(&s->ph_shared)))
		return 1;
	int r = 1;
	pthread_mutex_lock(&ph_mu);
	if (atomic_load(&s->ph_shared)) {
		int t = ph_template_locked(nb);
		r = t < 0 ? -errno : ph_replace(fd, t);
		if (r == 0)
			atomic_store(&s->nonblock, nb);
	}
	pthread_mutex_unlock(&ph_mu);
	return r;
}

void xp_ph_fork_child(void)
{
	pthread_mutex_init(&ph_mu, NULL); /* another thread may have held it */
}

void xp_ph_before_dup(int fd)
{
	if (xp_in_lib || !xp_fd_maybe_ours(fd))
		return;
	struct xp_sock *s = xp_fd_get(fd);
	if (s) {
		(void)xp_ph_own(fd, s); /* EMFILE: the dup fails the same way */
		xp_sock_put(s);
	}
}

void xp_ph_lost(unsigned int lo, unsigned int hi)
{
	if (xp_in_lib || xp_fork_in_vfork()) /* a vfork child's closes are not ours */
		return;
	for (int i = 0; i < 2; i++) {
		int t = atomic_load(&xp_ph_tmpl[i]);
		if (t >= 0 && (unsigned int)t >= lo && (unsigned int)t <= hi)
			atomic_compare_exchange_strong(&xp_ph_tmpl[i], &t, -1);
	}
}

/* A connection the engine accepted: a placeholder fd (above), options
 * inherited as Linux children inherit them.  Engine lock held. */
static int accept_engine(struct xp_sock *l, int flags, uint32_t *pip, uint16_t *pport, struct xp_sock **stale)
{
	bool shared;
	int pfd = ph_new(flags, &shared);
	if (pfd < 0)
		return -errno; /* EMFILE etc.: the connection stays queued, as in Linux */
	struct xp_sock *c = xp_sock_new();
	if (!c) {
		xp_real.close(pfd);
		return -ENOMEM;
	}
	int id = xt_tcp_accept(xp_eng.st, l->esock, pip, pport);
	if (id < 0) {
		xp_real.close(pfd);
		xp_sock_put(c);
		return id;
	}
	c->esock = id;
	xt_tcp_set_udata(xp_eng.st, id, c);
	xp_flow_conn(c);
	atomic_store(&c->mode, XP_ENGINE);
	c->ss = XP_SS_CONNECTED;
	c->bound = true;
	atomic_store(&c->nonblock, (flags & SOCK_NONBLOCK) != 0);
	atomic_store(&c->ph_shared, shared);
	if (shared)
		atomic_fetch_add(&xp_ph_shared_n, 1);
	c->rcvtimeo_ns = l->rcvtimeo_ns;
	c->sndtimeo_ns = l->sndtimeo_ns;
	c->linger = l->linger;
	memcpy(c->cc_name, l->cc_name, sizeof(c->cc_name));
	c->nopt = l->nopt;
	memcpy(c->opt, l->opt, sizeof(c->opt[0]) * (size_t)l->nopt);
	/* a stale entry (an fd closed behind our back) is released by the caller
	 * once the engine lock is dropped: its release takes the lock */
	*stale = xp_fd_set(pfd, c);
	xp_sock_put(c);
	return pfd;
}

/* Dual listen: a connection the kernel has for us?  Never blocks.  The
 * kernel's poll, not the interposed one: that one reports the engine's side
 * of this fd, and a blocking accept4 would then wait for a kernel connection
 * that never comes. */
static int accept_kernel(int fd, struct xp_sock *s, struct sockaddr *addr, socklen_t *len, int flags)
{
	struct pollfd p = { .fd = fd, .events = POLLIN };
	int r = -EAGAIN;
	xp_in_lib++;
	if (poll(&p, 1, 0) > 0 && (p.revents & POLLIN)) {
		pthread_mutex_lock(&s->kaccept_mu);
		if (poll(&p, 1, 0) > 0 && (p.revents & POLLIN)) {
			r = xp_real.accept4(fd, addr, len, flags);
			if (r < 0)
				r = -errno;
		}
		pthread_mutex_unlock(&s->kaccept_mu);
	}
	xp_in_lib--;
	return r;
}

int xp_accept(int fd, struct xp_sock *s, struct sockaddr *addr, socklen_t *len, int flags)
{
	if (flags & ~(SOCK_NONBLOCK | SOCK_CLOEXEC))
		return -EINVAL;
	struct xp_wait w;
	struct xp_sock *stale = NULL;
	uint32_t pip = 0;
	uint16_t pport = 0;
	bool refreshed = false;
	int r;

	xp_lock();
	xp_fork_accepting(s); /* the family's SYNs may come here */
	xp_wait_init(&w, s, s->rcvtimeo_ns, true);
	for (;;) {
		bool elisten = s->esock >= 0 && xt_tcp_state(xp_eng.st, s->esock) == XT_LISTEN;
		if (!elisten && !s->klisten) {
			r = -EINVAL;
			break;
		}
		if (elisten && (xt_tcp_events(xp_eng.st, s->esock) & XT_EV_IN)) {
			r = accept_engine(s, flags, &pip, &pport, &stale);
			if (r != -EAGAIN)
				break;
		}
		if (s->klisten) {
			xp_unlock();
			r = accept_kernel(fd, s, addr, len, flags);
			xp_lock();
			if (r != -EAGAIN) {
				xp_unlock();
				xp_wait_done(&w);
				if (r >= 0)
					xp_stats_handoff("accepted on the kernel side of a dual listener");
				return r; /* a kernel socket: not ours */
			}
			/* The lock was let go: the progress thread may have queued a
			 * connection (and woken no one: we were not waiting yet). */
			if (elisten && (xt_tcp_events(xp_eng.st, s->esock) & XT_EV_IN))
				continue;
		}
		if (xp_fam_on && !refreshed) {
			/* a listener shared with the family (xp_refresh_shared) */
			refreshed = true;
			xp_unlock();
			xp_wait_done(&w);
			xp_refresh_shared(fd, s);
			xp_lock();
			xp_wait_init(&w, s, s->rcvtimeo_ns, true);
			continue; /* the same: look again before sleeping */
		}
		if (atomic_load(&s->nonblock)) {
			r = -EAGAIN;
			break;
		}
		w.extra_fd = s->klisten ? fd : -1;
		r = xp_wait(&w);
		if (r < 0)
			break;
	}
	xp_unlock_lazy();
	xp_wait_done(&w);
	if (stale)
		xp_sock_put(stale);
	if (r < 0 || !addr)
		return r;
	struct sockaddr_in sin = { .sin_family = AF_INET, .sin_port = htons(pport),
				   .sin_addr.s_addr = htonl(pip) };
	int e = xp_put_addr(addr, len, &sin);
	if (e < 0) { /* Linux: the new socket is dropped */
		xp_close(r);
		return e;
	}
	return r;
}

/* xp_wait_done for a wait that ends with the engine lock held: the lock
 * is let go while the handlers of signals held by a spin run. */
static void wait_done_locked(struct xp_wait *w)
{
	if (w->spin_masked) {
		xp_unlock();
		xp_wait_done(w);
		xp_lock();
	}
}

/* Linux __inet_stream_connect(), with sk_state from the engine. */
static int connect_engine(struct xp_sock *s, uint32_t dst, uint16_t dport)
{
	int r, st;
	switch (s->ss) {
	case XP_SS_CONNECTED:
		return -EISCONN;
	case XP_SS_CONNECTING:
		r = -EALREADY;
		break;
	case XP_SS_UNCONNECTED:
		st = xt_tcp_state(xp_eng.st, s->esock);
		if (st != XT_CLOSE)
			return -EISCONN;
		xp_tx_hold(); /* the SYN waits for the connection's steering rule */
		xp_fork_hear(); /* a fork family's member that took in no TCP */
		r = xt_tcp_connect(xp_eng.st, s->esock, dst, dport, xp_clock());
		if (r == -EINPROGRESS)
			xp_flow_conn(s);
		xp_tx_release();
		if (r != -EINPROGRESS)
			return r;
		s->ss = XP_SS_CONNECTING;
		break;
	default:
		return -EINVAL;
	}
	struct xp_wait w;
	xp_wait_init(&w, s, s->sndtimeo_ns, true);
	for (;;) {
		st = xt_tcp_state(xp_eng.st, s->esock);
		if (st != XT_SYN_SENT && st != XT_SYN_RECV)
			break;
		if (atomic_load(&s->nonblock)) {
			wait_done_locked(&w);
			return r;
		}
		int e = xp_wait(&w);
		if (e == -EAGAIN)
			return r; /* SO_SNDTIMEO: EINPROGRESS, still connecting */
		if (e < 0)
			return e;
	}
	if (w.spin_masked) {
		wait_done_locked(&w);
		st = xt_tcp_state(xp_eng.st, s->esock);
	}
	if (st == XT_CLOSE) {
		int err = 0;
		xt_tcp_getopt(xp_eng.st, s->esock, XT_SO_ERROR, &err);
		s->ss = XP_SS_UNCONNECTED;
		/* Linux __inet_stream_connect(): reporting the failure here
		 * disconnects, so recv() then says ENOTCONN, not end of file */
		xt_tcp_disconnect(xp_eng.st, s->esock, xp_clock());
		xp_flow_release(s, true);
		return err ? -err : -ECONNABORTED;
	}
	s->ss = XP_SS_CONNECTED;
	return 0;
}

int xp_connect(int fd, struct xp_sock *s, const struct sockaddr *addr, socklen_t len)
{
	struct sockaddr_in sin;
	bool unspec;
	int r = get_sin(addr, len, &sin, &unspec);
	if (r < 0)
		return r;
	if (len < sizeof(sa_family_t))
		return -EINVAL;
	if (unspec) { /* AF_UNSPEC: disconnect (tcp_disconnect) */
		/* the socket may be bound, connected, listen: one of its own */
		if ((r = xp_ph_own(fd, s)) < 0)
			return r;
		xp_lock();
		if (s->esock >= 0 && (s->listening || s->ss != XP_SS_UNCONNECTED)) {
			xt_tcp_set_udata(xp_eng.st, s->esock, NULL);
			xt_tcp_abort(xp_eng.st, s->esock, xp_clock());
			xp_flow_release(s, true);
			s->esock = -1;
			s->ss = XP_SS_UNCONNECTED;
			s->listening = false;
			s->bound = s->bound_any;
			atomic_store(&s->mode, XP_UNDECIDED);
		}
		bool k = s->klisten;
		s->klisten = false;
		xp_unlock();
		if (k || atomic_load(&s->mode) == XP_UNDECIDED)
			(void)xp_real.connect(fd, addr, len);
		return 0;
	}
	if (len < sizeof(struct sockaddr_in))
		return -EINVAL;
	if (sin.sin_family != AF_INET)
		return -EAFNOSUPPORT;
	uint32_t dst = ntohl(sin.sin_addr.s_addr);
	uint16_t dport = ntohs(sin.sin_port);

	xp_lock();
	const char *rule = xp_rules_kernel(XP_AT_CONNECT, dst, dport); /* XTCP_RULES */
	if (rule && can_handoff(s)) {
		xp_handoff(s, rule);
		xp_unlock();
		return xp_real.connect(fd, addr, len) < 0 ? -errno : 0;
	}
	if (!xp_engine_serves(dst) && can_handoff(s)) {
		xp_handoff(s, "destination not reachable through the engine");
		xp_unlock();
		return xp_real.connect(fd, addr, len) < 0 ? -errno : 0;
	}
	if (!xp_engine_serves(dst) && s->ss == XP_SS_UNCONNECTED && !s->listening) {
		xp_unlock();
		return -ENETUNREACH; /* bound to the engine's address */
	}
	r = xp_engine_socket(s);
	if (r == 0)
		r = connect_engine(s, dst, dport);
	xp_unlock();
	return r;
}

int xp_getname(int fd, struct xp_sock *s, struct sockaddr *addr, socklen_t *len, int peer)
{
	(void)fd;
	uint32_t ip;
	uint16_t port;
	xp_lock();
	int r = xt_tcp_getname(xp_eng.st, s->esock, peer, &ip, &port);
	/* an owned socket past TIME_WAIT entry is TCP_CLOSE to Linux */
	if (r == 0 && peer && xt_tcp_state(xp_eng.st, s->esock) == XT_TIME_WAIT)
		r = -ENOTCONN;
	xp_unlock_lazy();
	if (r < 0)
		return r;
	struct sockaddr_in sin = { .sin_family = AF_INET, .sin_port = htons(port), .sin_addr.s_addr = htonl(ip) };
	return xp_put_addr(addr, len, &sin);
}

int xp_shutdown(int fd, struct xp_sock *s, int how)
{
	if (how < SHUT_RD || how > SHUT_RDWR)
		return -EINVAL;
	xp_lock();
	int st = xt_tcp_state(xp_eng.st, s->esock);
	if (s->ss == XP_SS_CONNECTING)
		s->ss = (st == XT_SYN_SENT || st == XT_SYN_RECV || st == XT_CLOSE) ? XP_SS_DISCONNECTING
										: XP_SS_CONNECTED;
	int r = xt_tcp_shutdown(xp_eng.st, s->esock, how, xp_clock());
	if (st == XT_SYN_SENT)
		s->ss = XP_SS_UNCONNECTED;
	if (how != SHUT_RD)
		s->shut_wr = true;
	bool k = s->klisten && how != SHUT_WR;
	if (k)
		s->klisten = false;
	xp_unlock_lazy(); /* the FIN joins the round's other frames */
	if (k)
		(void)xp_real.shutdown(fd, how);
	return r;
}

static bool closing(int st)
{
	return st == XT_FIN_WAIT1 || st == XT_CLOSING || st == XT_LAST_ACK;
}

/* The last reference is gone: Linux tcp_close(), with SO_LINGER{1,n}
 * waiting (even on a non-blocking socket, as Linux) for our FIN to be
 * acknowledged, at most n seconds or until a signal. */
void xp_sock_release(struct xp_sock *s)
{
	if (s->ep || s->epis)
		xp_mux_release(s);
	if (atomic_load(&s->mode) == XP_KERNEL || s->esock < 0)
		return;
	if (xp_eng.forked_child) {
		s->flow = 0;   /* the parent's steering rule: not ours */
		/* a fork child not attached yet: its engine copy holds only its
		 * listeners (fork.c), which close without a frame */
		pthread_mutex_lock(&xp_eng.mu);
		engine_socket_drop(s);
		pthread_mutex_unlock(&xp_eng.mu);
		return;
	}
	xp_lock();
	if (s->listening)
		xp_fork_unlisten(s);
	int st = xt_tcp_state(xp_eng.st, s->esock);
	if (s->linger > 0 && (st == XT_ESTABLISHED || st == XT_CLOSE_WAIT) &&
	    xt_tcp_inq(xp_eng.st, s->esock) == 0) {
		struct xp_wait w;
		xt_tcp_shutdown(xp_eng.st, s->esock, XT_SHUT_WR, xp_clock());
		xp_wait_init(&w, NULL, (uint64_t)s->linger * 1000000000ull, false);
		w.spin = false; /* it could hold signals across the release */
		w.s = s;
		w.put_on_cancel = false; /* refs is already 0 */
		for (;;) {
			st = xt_tcp_state(xp_eng.st, s->esock);
			if (st < 0 || !closing(st))
				break;
			if (xp_wait(&w) < 0)
				break;
		}
	}
	engine_socket_drop(s);
	s->waiters = NULL;
	xp_unlock_lazy(); /* the FIN (or RST) joins the round's other frames */
	dbg_fd(s, "released");
}

int xp_close(int fd)
{
	if (XP_UNLIKELY(xp_fork_in_vfork())) /* the parent's table: hands off */
		return xp_real.close(fd) < 0 ? -errno : 0;
	struct xp_sock *s = xp_fd_clear(fd);
	int r = xp_real.close(fd);
	int e = errno;
	if (s)
		xp_sock_put(s);
	return r < 0 ? -e : 0;
}

int xp_dup_install(int oldfd, int newfd)
{
	if (XP_UNLIKELY(xp_fork_in_vfork()))
		return newfd;
	struct xp_sock *s = xp_fd_get(oldfd);
	struct xp_sock *old = s ? xp_fd_set(newfd, s) : xp_fd_clear(newfd);
	if (old)
		xp_sock_put(old);
	if (s)
		xp_sock_put(s);
	return newfd;
}
