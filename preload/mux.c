/* epoll, poll and select over engine sockets and kernel fds in one call.
 *
 * epoll: an epoll fd is a real kernel epoll (kfd); the fd table maps it to an
 * xp_sock in mode XP_KERNEL whose ep points at a struct xp_epoll (so dup'ed
 * fds share it, as they share the open file description, and every other
 * call on it goes to the kernel).  Kernel fds are registered in kfd itself.
 * Engine sockets get an entry (struct xp_epi) linked in the set and in the
 * socket; the engine's readiness callback (eng_event -> xp_mux_event, engine
 * lock held) puts entries on the set's ready list.  Each set that holds
 * engine sockets owns an eventfd registered in kfd with a marker value; it is
 * written when a thread sleeps on the set and an entry becomes ready, and,
 * once the set has been placed in another epoll, poll or select ("exposed"),
 * it is kept readable exactly while the ready list is non-empty, so nesting
 * works through the kernel.  A dual-listening socket's kernel fd is also in
 * kfd, with a tag value naming its entry, for the connections the kernel
 * accepts.  epoll_wait collects kernel events (epoll_wait(kfd, 0)), then the
 * ready list (each entry's mask recomputed: Linux tcp_poll; LT entries stay
 * listed, ET entries leave, ONESHOT entries are disabled as in
 * ep_send_events), spins for XTCP_SPIN_US, then sleeps in the kernel on kfd
 * itself while the progress thread drives the engine.  A set whose kernel
 * fds have been quiet skips the epoll_wait(kfd, 0) while the engine has
 * events for it, up to XTCP_KERNEL_POLL_US (kernel_quiet(); xp_kgen ends
 * the quiet at once when this process may have made a kernel fd ready).
 *
 * poll/select: engine readiness computed under the engine lock, kernel fds
 * polled with a zero timeout (skipped as epoll's while the thread's same
 * kernel fds stay quiet: pquiet); then the sleep is a ppoll on the kernel fds
 * and this thread's eventfd, registered as a waiter on every engine socket.
 *
 * Signals: the sleeps are the kernel's own (epoll_pwait2/ppoll with the
 * caller's mask), so a handler interrupts them with EINTR exactly as in
 * Linux, which never restarts these calls.  While spinning, a call without a
 * mask of its own in a process whose handlers are all wrapped (sigdisp.c)
 * lets signals in and returns EINTR once the count of handler runs moves;
 * otherwise signals are blocked and sigpending() is checked now and then: a
 * pending signal the call lets in is delivered at once and the call returns
 * EINTR if a handler ran.
 *
 * Locking: entries, ready lists and the eventfd state live under the engine
 * lock; kfd calls are made without it.
 */
#define _GNU_SOURCE
#include <limits.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "shim.h"

#define EP_PRIVATE (EPOLLWAKEUP | EPOLLONESHOT | EPOLLET | EPOLLEXCLUSIVE)
#define EP_EXCL_OK (EPOLLIN | EPOLLOUT | EPOLLERR | EPOLLHUP | EPOLLWAKEUP | EPOLLET | EPOLLEXCLUSIVE)
#define EP_MAX_EVENTS ((int)(INT_MAX / sizeof(struct epoll_event)))
/* tcp_poll() of a TCP socket that has never been connected or listened */
#define UNDECIDED_MASK (EPOLLOUT | EPOLLWRNORM | EPOLLHUP)

struct xp_epi {
	struct xp_epoll *ep;
	struct xp_sock *s;
	int fd;                 /* the fd number it was added with (the key, with s) */
	uint32_t events;        /* requested | EPOLLERR | EPOLLHUP; private bits only once a ONESHOT fired */
	uint64_t data;
	uint32_t seen;          /* the socket's mask at the last callback (ET edges) */
	bool on_rdy;
	bool kreg;              /* its kernel fd is in kfd too (dual listen), with tag data */
	bool may_listen;        /* added before listen(): may become a dual listener */
	struct xp_epi *s_next, *s_prev;
	struct xp_epi *e_next, *e_prev;
	struct xp_epi *r_next, *r_prev;
};

struct xp_epoll {
	int kfd;          /* an fd of the kernel epoll: the last one a caller used */
	int evfd;         /* -1 until the first engine entry */
	int sfd;          /* private epoll: kfd + the NIC's wake fd, where threads sleep (-1: none yet) */
	bool ev_sig;      /* evfd holds a count */
	bool exposed;     /* kfd was put in another epoll, poll or select */
	int sleepers;     /* threads asleep in epoll_wait on kfd */
	atomic_int nkernel; /* kernel fds added through us (a hint: collect from kfd) */
	atomic_int nengine; /* engine entries */
	int nrdy;
	struct xp_epi *all;
	struct xp_epi rdy; /* ready list head */
	struct xp_epi **kregs; /* entries with kreg (few: listeners) */
	int nkregs, kcap;
	int nmay;         /* entries with may_listen */
	/* The kernel side's quiet (ep_collect), atomics written under the
	 * engine lock and read without it: */
	uint32_t kempty;  /* looks at kfd in a row that found nothing */
	uint64_t kempty_at, kempty_gen; /* the last one's time and xp_kgen */
	uint64_t kevent_at; /* the last look that found something */
	pid_t pid;        /* the process that made it: a fork child sees only its kernel fds */
};

static inline uint64_t marker_of(struct xp_epoll *ep)
{
	return (uint64_t)(uintptr_t)ep;
}

static inline uint64_t tag_of(struct xp_epi *e)
{
	return (uint64_t)(uintptr_t)e | 1;
}

/* Whether a sleeping epoll_wait/poll/select watches the NIC itself (one wake-up from a
 * frame to the caller) rather than leaving it to the progress thread (two). */
static bool mux_nic = true;

__attribute__((constructor)) static void mux_cfg(void)
{
	const char *v = getenv("XTCP_MUX_NIC");
	if (v && *v == '0')
		mux_nic = false;
}

/* --- the eventfd --------------------------------------------------------- */

static inline bool mine(const struct xp_epoll *ep)
{
	return ep->pid == xp_fork_pid;
}

static void ev_signal(struct xp_epoll *ep)
{
	if (ep->evfd < 0 || ep->ev_sig || !mine(ep)) /* a set inherited across fork: the parent's */
		return;
	uint64_t one = 1;
	(void)syscall(SYS_write, ep->evfd, &one, sizeof(one));
	ep->ev_sig = true;
	if (ep->exposed)
		xp_kgen_bump(); /* a kernel fd of an enclosing set is ready */
}

static void ev_drain(struct xp_epoll *ep)
{
	if (!ep->ev_sig || !mine(ep))
		return;
	uint64_t v;
	(void)syscall(SYS_read, ep->evfd, &v, sizeof(v));
	ep->ev_sig = false;
}

/* Engine lock held. */
static int ev_create(struct xp_epoll *ep)
{
	if (ep->evfd >= 0)
		return 0;
	int fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (fd < 0)
		return -errno;
	struct epoll_event ev = { .events = EPOLLIN, .data.u64 = marker_of(ep) };
	if (xp_real.epoll_ctl(ep->kfd, EPOLL_CTL_ADD, fd, &ev) < 0) {
		int e = errno;
		(void)syscall(SYS_close, fd);
		return -e;
	}
	ep->evfd = fd;
	return 0;
}

/* --- lists (engine lock held) -------------------------------------------- */

static void rdy_add(struct xp_epi *e)
{
	struct xp_epoll *ep = e->ep;
	e->r_prev = ep->rdy.r_prev;
	e->r_next = &ep->rdy;
	ep->rdy.r_prev->r_next = e;
	ep->rdy.r_prev = e;
	e->on_rdy = true;
	ep->nrdy++;
	if (ep->sleepers || ep->exposed)
		ev_signal(ep);
}

static void rdy_unlink(struct xp_epi *e)
{
	e->r_prev->r_next = e->r_next;
	e->r_next->r_prev = e->r_prev;
	e->r_next = e->r_prev = NULL;
	e->on_rdy = false;
	e->ep->nrdy--;
}

static void rdy_del(struct xp_epi *e)
{
	rdy_unlink(e);
	if (!e->ep->nrdy && e->ep->exposed)
		ev_drain(e->ep);
}

static void rdy_to_tail(struct xp_epi *e)
{
	struct xp_epoll *ep = e->ep;
	rdy_unlink(e);
	e->r_prev = ep->rdy.r_prev;
	e->r_next = &ep->rdy;
	ep->rdy.r_prev->r_next = e;
	ep->rdy.r_prev = e;
	e->on_rdy = true;
	ep->nrdy++;
}

static void kreg_forget(struct xp_epoll *ep, struct xp_epi *e)
{
	for (int i = 0; i < ep->nkregs; i++)
		if (ep->kregs[i] == e) {
			ep->kregs[i] = ep->kregs[--ep->nkregs];
			break;
		}
	e->kreg = false;
}

static bool kreg_known(struct xp_epoll *ep, struct xp_epi *e)
{
	for (int i = 0; i < ep->nkregs; i++)
		if (ep->kregs[i] == e)
			return true;
	return false;
}

/* A dual-listening socket: its kernel fd goes into kfd too, tagged. */
static void kreg_add(struct xp_epi *e)
{
	struct xp_epoll *ep = e->ep;
	if (ep->nkregs == ep->kcap) {
		int cap = ep->kcap ? ep->kcap * 2 : 4;
		struct xp_epi **k = realloc(ep->kregs, sizeof(*k) * (size_t)cap);
		if (!k)
			return;
		ep->kregs = k;
		ep->kcap = cap;
	}
	struct epoll_event ev = { .events = EPOLLIN | (e->events & EPOLLET), .data.u64 = tag_of(e) };
	if (xp_real.epoll_ctl(ep->kfd, EPOLL_CTL_ADD, e->fd, &ev) < 0)
		return;
	ep->kregs[ep->nkregs++] = e;
	e->kreg = true;
}

/* kdel: also remove the kernel registration (not when the fd is gone). */
static void epi_free(struct xp_epi *e, bool kdel)
{
	struct xp_epoll *ep = e->ep;
	if (e->on_rdy)
		rdy_del(e);
	if (e->may_listen)
		ep->nmay--;
	if (e->kreg) {
		if (kdel)
			(void)xp_real.epoll_ctl(ep->kfd, EPOLL_CTL_DEL, e->fd, NULL);
		kreg_forget(ep, e);
	}
	if (e->s_prev)
		e->s_prev->s_next = e->s_next;
	else
		e->s->epis = e->s_next;
	if (e->s_next)
		e->s_next->s_prev = e->s_prev;
	if (e->e_prev)
		e->e_prev->e_next = e->e_next;
	else
		ep->all = e->e_next;
	if (e->e_next)
		e->e_next->e_prev = e->e_prev;
	atomic_fetch_sub(&ep->nengine, 1);
	free(e);
}

static struct xp_epi *epi_find(struct xp_sock *s, struct xp_epoll *ep, int fd)
{
	for (struct xp_epi *e = s->epis; e; e = e->s_next)
		if (e->ep == ep && e->fd == fd)
			return e;
	return NULL;
}

/* --- readiness ----------------------------------------------------------- */

static uint32_t kernel_poll(int fd, short events)
{
	struct pollfd p = { .fd = fd, .events = events };
	if (xp_real.poll(&p, 1, 0) <= 0)
		return 0;
	return (uint16_t)p.revents;
}

/* The socket's current poll mask (engine lock held); with kin, a dual
 * listener's kernel side is asked too. */
static uint32_t sock_mask(struct xp_sock *s, int fd, bool kin)
{
	uint32_t m;
	int mode = atomic_load(&s->mode);
	if (mode == XP_ENGINE && s->esock >= 0)
		m = xt_tcp_events(xp_eng.st, s->esock);
	else if (mode == XP_KERNEL)
		return kernel_poll(fd, POLLIN | POLLPRI | POLLOUT | POLLRDHUP | POLLRDNORM | POLLWRNORM);
	else
		m = UNDECIDED_MASK;
	if (kin && s->klisten && (kernel_poll(fd, POLLIN) & POLLIN))
		m |= EPOLLIN | EPOLLRDNORM;
	return m;
}

void xp_mux_event(struct xp_sock *s, uint32_t events)
{
	for (struct xp_epi *e = s->epis; e; e = e->s_next) {
		if (XP_UNLIKELY(s->klisten && !e->kreg))
			kreg_add(e); /* added before it listened on INADDR_ANY */
		uint32_t m = events & e->events & ~EP_PRIVATE & ~XT_EV_NEW;
		uint32_t rose = m & ~e->seen;
		if (events & XT_EV_NEW)
			rose |= m & (EPOLLIN | EPOLLRDNORM); /* new data: an edge (Linux) */
		e->seen = events & ~XT_EV_NEW;
		if (!m) {
			if (e->on_rdy && !e->kreg)
				rdy_del(e);
		} else if (!e->on_rdy && (!(e->events & EPOLLET) || rose)) {
			rdy_add(e);
		}
	}
}

/* --- the fd table side ----------------------------------------------------- */

int xp_epoll_wrap(int fd)
{
	if (atomic_load(&xp_eng.state) == XP_ENG_OFF || xp_fdtab_init() < 0)
		return fd;
	struct xp_epoll *ep = calloc(1, sizeof(*ep));
	struct xp_sock *s = ep ? xp_sock_new() : NULL;
	if (!s) {
		free(ep);
		XP_LOG(XP_LOG_WARN, "epoll fd %d: out of memory; engine sockets in it will not be seen", fd);
		return fd;
	}
	ep->kfd = fd;
	/* xp_fork_pid is set when the engine attaches, maybe after this */
	ep->pid = xp_fork_pid ? xp_fork_pid : (pid_t)syscall(SYS_getpid);
	ep->evfd = -1;
	ep->sfd = -1;
	ep->rdy.r_next = ep->rdy.r_prev = &ep->rdy;
	atomic_store(&s->mode, XP_KERNEL);
	s->ep = ep;
	struct xp_sock *old = xp_fd_set(fd, s);
	if (old)
		xp_sock_put(old);
	xp_sock_put(s);
	return fd;
}

void xp_mux_release(struct xp_sock *s)
{
	struct xp_epoll *ep = s->ep;
	if (ep) {
		s->ep = NULL;
		if (atomic_load(&ep->nengine) > 0 || ep->evfd >= 0) {
			xp_lock();
			while (ep->all)
				epi_free(ep->all, false); /* kfd is closed already */
			xp_unlock_lazy();
		}
		if (ep->evfd >= 0)
			(void)syscall(SYS_close, ep->evfd);
		if (ep->sfd >= 0)
			(void)syscall(SYS_close, ep->sfd);
		free(ep->kregs);
		free(ep);
		return;
	}
	xp_lock();
	while (s->epis) /* its fd is closed: the kernel has dropped its registrations */
		epi_free(s->epis, false);
	xp_unlock_lazy();
}

void xp_mux_handoff(struct xp_sock *s)
{
	while (s->epis) {
		struct xp_epi *e = s->epis;
		struct epoll_event ev = { .events = e->events, .data.u64 = e->data };
		struct xp_sock *cur = xp_fd_get(e->fd);
		if (cur == s && xp_real.epoll_ctl(e->ep->kfd, EPOLL_CTL_ADD, e->fd, &ev) == 0) {
			atomic_fetch_add(&e->ep->nkernel, 1);
			xp_kgen_bump();
		} else {
			XP_LOG(XP_LOG_WARN, "fd %d: its epoll registration could not follow it to the kernel", e->fd);
		}
		if (cur)
			xp_sock_put(cur); /* never the last reference: the caller holds one */
		epi_free(e, true);
	}
}

/* An epoll fd of ours placed in another set, or in poll/select: from now on
 * its eventfd says exactly whether the ready list holds anything. */
static void expose(struct xp_epoll *ep)
{
	if (ep->exposed && atomic_load(&ep->nengine) == 0)
		return;
	xp_lock();
	ep->exposed = true;
	if (xp_eng.st && ep->evfd >= 0) {
		xp_drive(xp_clock());
		/* drop entries that are no longer ready */
		int cnt = ep->nrdy;
		for (struct xp_epi *e = ep->rdy.r_next; cnt-- > 0 && e != &ep->rdy;) {
			struct xp_epi *next = e->r_next;
			if (!(sock_mask(e->s, e->fd, true) & e->events & ~EP_PRIVATE))
				rdy_unlink(e);
			e = next;
		}
		if (ep->nrdy)
			ev_signal(ep);
		else
			ev_drain(ep);
	}
	xp_unlock_lazy();
}

/* The xp_epoll behind fd, reference taken on its xp_sock, or NULL. */
static struct xp_sock *epoll_of(int fd)
{
	if (!xp_fd_maybe_ours(fd))
		return NULL;
	struct xp_sock *s = xp_fd_get(fd);
	if (s && !s->ep) {
		xp_sock_put(s);
		return NULL;
	}
	return s;
}

/* --- epoll_ctl ------------------------------------------------------------- */

static int ctl_engine(struct xp_epoll *ep, int op, int fd, struct xp_sock *s, const struct epoll_event *ev)
{
	int r = 0;
	xp_lock();
	if (op != EPOLL_CTL_DEL)
		xp_fork_accepting(s); /* a listener waited on: fork.c */
	struct xp_epi *e = epi_find(s, ep, fd);
	switch (op) {
	case EPOLL_CTL_ADD:
		if (e) {
			r = -EEXIST;
			break;
		}
		r = ev_create(ep);
		if (r < 0)
			break;
		e = calloc(1, sizeof(*e));
		if (!e) {
			r = -ENOMEM;
			break;
		}
		e->ep = ep;
		e->s = s;
		e->fd = fd;
		e->events = ev->events | EPOLLERR | EPOLLHUP;
		e->data = ev->data.u64;
		e->s_next = s->epis;
		if (s->epis)
			s->epis->s_prev = e;
		s->epis = e;
		e->e_next = ep->all;
		if (ep->all)
			ep->all->e_prev = e;
		ep->all = e;
		atomic_fetch_add(&ep->nengine, 1);
		if (s->klisten)
			kreg_add(e);
		else if (!s->listening && s->ss == XP_SS_UNCONNECTED)
			e->may_listen = true, ep->nmay++;
		e->seen = sock_mask(s, fd, false);
		if (sock_mask(s, fd, true) & e->events & ~EP_PRIVATE)
			rdy_add(e);
		break;
	case EPOLL_CTL_MOD:
		if (!e) {
			r = -ENOENT;
			break;
		}
		if (e->events & EPOLLEXCLUSIVE) {
			r = -EINVAL;
			break;
		}
		e->events = ev->events | EPOLLERR | EPOLLHUP;
		e->data = ev->data.u64;
		if (e->kreg) {
			struct epoll_event kev = { .events = EPOLLIN | (e->events & EPOLLET), .data.u64 = tag_of(e) };
			(void)xp_real.epoll_ctl(ep->kfd, EPOLL_CTL_MOD, fd, &kev);
		}
		e->seen = sock_mask(s, fd, false);
		if (sock_mask(s, fd, true) & e->events & ~EP_PRIVATE) {
			if (!e->on_rdy)
				rdy_add(e);
		} else if (e->on_rdy) {
			rdy_del(e);
		}
		break;
	case EPOLL_CTL_DEL:
		if (!e)
			r = -ENOENT;
		else
			epi_free(e, true);
		break;
	default:
		r = -EINVAL;
	}
	xp_unlock_lazy();
	return r;
}

int xp_epoll_ctl(int epfd, int op, int fd, struct epoll_event *uev)
{
	struct epoll_event ev = { 0 };
	if (op != EPOLL_CTL_DEL && xp_copy_in(&ev, uev, sizeof(ev)) < 0)
		return -EFAULT;
	struct xp_sock *es = epoll_of(epfd);
	if (es)
		es->ep->kfd = epfd; /* the fd it was created with may be closed, a dup open */
	struct xp_sock *s = xp_fd_maybe_ours(fd) ? xp_fd_get(fd) : NULL;
	int r;
	if (s && s->ep) { /* an epoll fd of ours goes in: the kernel checks loops */
		expose(s->ep);
		r = xp_real.epoll_ctl(epfd, op, fd, uev) < 0 ? -errno : 0;
		xp_kgen_bump();
		goto out;
	}
	bool engine = s && es && xp_fork_attach() && mine(es->ep) && atomic_load(&s->mode) != XP_KERNEL &&
		      atomic_load(&xp_eng.state) == XP_ENG_READY;
	if (!engine) {
		r = xp_real.epoll_ctl(epfd, op, fd, uev) < 0 ? -errno : 0;
		if (r == 0 && !es && s && atomic_load(&s->mode) != XP_KERNEL && op == EPOLL_CTL_ADD) {
			static bool said;
			if (!said) {
				said = true;
				XP_LOG(XP_LOG_WARN, "fd %d added to an epoll set libxtcp did not create: "
						    "it will never be reported ready", fd);
			}
		}
		xp_kgen_bump(); /* Linux's epoll_ctl() queues an fd that is ready already */
		if (r == 0 && es && op == EPOLL_CTL_ADD)
			atomic_fetch_add(&es->ep->nkernel, 1);
		else if (r == 0 && es && op == EPOLL_CTL_DEL)
			atomic_fetch_sub(&es->ep->nkernel, 1);
		goto out;
	}
	/* Linux do_epoll_ctl()'s checks, in its order (both fds are valid and
	 * a socket supports poll) */
	if (epfd == fd) {
		r = -EINVAL;
		goto out;
	}
	if (op != EPOLL_CTL_DEL && (ev.events & EPOLLEXCLUSIVE)) {
		if (op == EPOLL_CTL_MOD || (op == EPOLL_CTL_ADD && (ev.events & ~EP_EXCL_OK))) {
			r = -EINVAL;
			goto out;
		}
	}
	r = ctl_engine(es->ep, op, fd, s, &ev);
out:
	if (s)
		xp_sock_put(s);
	if (es)
		xp_sock_put(es);
	return r;
}

/* --- spinning with signals held, or counted ---------------------------------- */

/* A call without a mask of its own, in a process whose handlers are all
 * wrapped (sigdisp.c), spins with signals let in and ends when the count of
 * handler runs moves; otherwise signals are held while it spins. */
struct spin {
	bool on;      /* signals held; old: the thread's mask */
	bool counted; /* watching xp_sig_ran (from ran0) */
	unsigned iter;
	unsigned ran0;
	sigset_t old;
};

/* Would one of the signals pending (and let in by callmask) run a handler? */
static bool handler_pending(const sigset_t *pend, const sigset_t *callmask, bool *any)
{
	bool h = false;
	*any = false;
	for (int sig = 1; sig < NSIG; sig++) {
		if (!sigismember(pend, sig) || sigismember(callmask, sig))
			continue;
		*any = true;
		struct sigaction sa;
		if (sigaction(sig, NULL, &sa) < 0)
			continue;
		if ((sa.sa_flags & SA_SIGINFO) || (sa.sa_handler != SIG_DFL && sa.sa_handler != SIG_IGN))
			h = true;
	}
	return h;
}

/* One turn of busy-polling; -EINTR when a handler ran. */
static int spin_step(struct spin *sp, const sigset_t *sigmask)
{
	sigset_t all;
	if (!sp->on && !sp->counted && !sigmask && (xp_sig_summary() & XP_SIGK_WRAPPED)) {
		sp->counted = true;
		sp->ran0 = xp_sig_ran;
	}
	if (sp->counted) {
		if (xp_sig_ran != sp->ran0)
			return -EINTR; /* these calls are never restarted */
		__builtin_ia32_pause();
		return 0;
	}
	if (!sp->on) {
		sigfillset(&all);
		pthread_sigmask(SIG_SETMASK, &all, &sp->old);
		sp->on = true;
	}
	if ((++sp->iter & 15) == 0) {
		sigset_t pend;
		bool any;
		sigemptyset(&pend);
		sigpending(&pend);
		const sigset_t *cm = sigmask ? sigmask : &sp->old;
		bool h = handler_pending(&pend, cm, &any);
		if (any) {
			pthread_sigmask(SIG_SETMASK, cm, NULL); /* the handlers run here */
			sigfillset(&all);
			pthread_sigmask(SIG_SETMASK, &all, NULL);
			if (h)
				return -EINTR;
		}
	}
	__builtin_ia32_pause();
	return 0;
}

static void spin_end(struct spin *sp)
{
	if (sp->on) {
		pthread_sigmask(SIG_SETMASK, &sp->old, NULL);
		sp->on = false;
	}
}

static uint64_t ts_ns(const struct timespec *ts)
{
	if ((uint64_t)ts->tv_sec >= UINT64_MAX / 1000000000ull / 2)
		return UINT64_MAX / 2;
	return (uint64_t)ts->tv_sec * 1000000000ull + (uint64_t)ts->tv_nsec;
}

static struct timespec ns_ts(uint64_t ns)
{
	return (struct timespec){ .tv_sec = (time_t)(ns / 1000000000ull), .tv_nsec = (long)(ns % 1000000000ull) };
}

/* --- epoll_wait ----------------------------------------------------------------- */

/* Removes our marker and tags from n kernel events in out; tags are noted
 * in tags[] (ntags may exceed the array: then every kreg entry is looked at). */
#define NTAGS 16
static int kfilter(struct xp_epoll *ep, struct epoll_event *out, int n, uint64_t *tags, int *ntags)
{
	int k = 0;
	for (int i = 0; i < n; i++) {
		uint64_t d = out[i].data.u64;
		if (d == marker_of(ep))
			continue;
		if ((d & 1) && ep->nkregs) {
			bool mine = false;
			for (int j = 0; j < ep->nkregs && !mine; j++)
				mine = tag_of(ep->kregs[j]) == d;
			if (mine) {
				if (*ntags < NTAGS)
					tags[*ntags] = d;
				(*ntags)++;
				continue;
			}
		}
		if (k != i)
			out[k] = out[i];
		k++;
	}
	return k;
}

/* Engine lock held. */
static void apply_tags(struct xp_epoll *ep, const uint64_t *tags, int ntags)
{
	if (ntags > NTAGS) {
		for (int j = 0; j < ep->nkregs; j++)
			if (!ep->kregs[j]->on_rdy)
				rdy_add(ep->kregs[j]);
		return;
	}
	for (int i = 0; i < ntags; i++) {
		struct xp_epi *e = (struct xp_epi *)(uintptr_t)(tags[i] & ~1ull);
		if (kreg_known(ep, e) && !e->on_rdy)
			rdy_add(e);
	}
}

/* Engine lock held: entries added before their socket listened (xp_listen
 * sets klisten after the engine's callback has run). */
static void late_listeners(struct xp_epoll *ep)
{
	for (struct xp_epi *e = ep->all; e && ep->nmay; e = e->e_next) {
		if (!e->may_listen)
			continue;
		if (e->s->klisten) {
			kreg_add(e);
			if (!e->on_rdy && (e->events & EPOLLIN))
				rdy_add(e); /* a kernel connection may be waiting already */
		} else if (!e->s->listening && e->s->ss == XP_SS_UNCONNECTED &&
			   atomic_load(&e->s->mode) != XP_KERNEL) {
			continue;
		}
		e->may_listen = false;
		ep->nmay--;
	}
}

/* Engine lock held: reports ready entries into out (Linux ep_send_events). */
static int eng_collect(struct xp_epoll *ep, struct epoll_event *out, int max)
{
	int n = 0;
	int cnt = ep->nrdy;
	if (cnt && max > 0 && xp_check_write(out, (size_t)max * sizeof(*out)) < 0)
		return -EFAULT; /* nothing taken off the list */
	while (cnt-- > 0 && n < max && ep->nrdy) {
		struct xp_epi *e = ep->rdy.r_next;
		uint32_t m = sock_mask(e->s, e->fd, true) & e->events & ~EP_PRIVATE;
		if (!m) {
			rdy_unlink(e);
			continue;
		}
		out[n].events = m;
		out[n].data.u64 = e->data;
		n++;
		if (e->events & EPOLLONESHOT) {
			e->events &= EP_PRIVATE;
			rdy_unlink(e);
		} else if (e->events & EPOLLET) {
			rdy_unlink(e);
		} else {
			rdy_to_tail(e);
		}
	}
	/* Entries left ready (LT) wake another thread asleep on the set, as
	 * Linux's ep_done_scan(); otherwise only an exposed set keeps it set. */
	if (ep->nrdy && (ep->exposed || ep->sleepers))
		ev_signal(ep);
	else
		ev_drain(ep);
	return n;
}

uint64_t xp_kgen;
bool xp_kquiet;
static uint64_t klooks, kskips; /* engine lock */

void xp_mux_counters(uint64_t *looks, uint64_t *skips)
{
	*looks = klooks;
	*skips = kskips;
}

/* Looks at kfd (zero timeout) for this many calls in a row finding nothing,
 * and none that found something for KQUIET_HOLD, before the set counts as
 * quiet on the kernel side: kernel fds with events every few milliseconds
 * (an upstream connection of a proxy) are looked at in every call. */
#define KQUIET_LOOKS 8
#define KQUIET_HOLD XT_MS(20)

/* Whether ep_collect may leave kfd alone this time: its kernel fds were
 * quiet for KQUIET_LOOKS looks, the last less than XTCP_KERNEL_POLL_US ago,
 * and nothing this process did since could have made one ready (xp_kgen).
 * A readiness that comes from elsewhere (another process, the network on a
 * kernel socket, a timer) is then reported up to that long after Linux
 * would, and only while the engine has events in every call: a call that
 * returns none has looked at kfd, and a sleep watches it (enum klook). */
static bool kernel_quiet(struct xp_epoll *ep, uint64_t now)
{
	if (!xp_cfg.kpoll_ns || __atomic_load_n(&ep->kempty, __ATOMIC_RELAXED) < KQUIET_LOOKS ||
	    now - __atomic_load_n(&ep->kevent_at, __ATOMIC_RELAXED) < KQUIET_HOLD)
		return false;
	uint64_t at = __atomic_load_n(&ep->kempty_at, __ATOMIC_RELAXED);
	return now - at < xp_cfg.kpoll_ns &&
	       __atomic_load_n(&xp_kgen, __ATOMIC_ACQUIRE) == __atomic_load_n(&ep->kempty_gen, __ATOMIC_RELAXED);
}

/* Empty looks in a row after one more look (prev before it); counted:
 * xp_kquiet was set before the look read xp_kgen. */
static uint32_t kempty_next(uint32_t prev, bool empty, bool counted)
{
	uint32_t n = empty ? prev + (prev < UINT32_MAX) : 0;
	if (n >= KQUIET_LOOKS && !counted) {
		/* the bumps count from now on, and only a look whose gen was read
		 * after that may make the set quiet */
		__atomic_store_n(&xp_kquiet, true, __ATOMIC_SEQ_CST);
		n = KQUIET_LOOKS - 1;
	}
	return n;
}

/* Engine lock held: a look at kfd, taken at now after xp_kgen was gen. */
static void kernel_looked(struct xp_epoll *ep, bool empty, uint64_t now, uint64_t gen, bool counted)
{
	klooks++;
	uint32_t n = kempty_next(__atomic_load_n(&ep->kempty, __ATOMIC_RELAXED), empty, counted);
	__atomic_store_n(&ep->kempty, n, __ATOMIC_RELAXED);
	if (!empty)
		__atomic_store_n(&ep->kevent_at, now, __ATOMIC_RELAXED);
	__atomic_store_n(&ep->kempty_at, now, __ATOMIC_RELAXED);
	__atomic_store_n(&ep->kempty_gen, gen, __ATOMIC_RELAXED);
}

/* Whether ep_collect may leave a quiet kfd alone: */
enum klook {
	KL_SKIP,   /* yes: a spin or a sleep that watches kfd follows if the engine has nothing */
	KL_EVENTS, /* only if the engine has events: the call returns next */
	KL_ALWAYS, /* no: kfd woke the thread, or the call ends */
};

/* Kernel events (zero timeout), then engine ones. */
static int ep_collect(struct xp_epoll *ep, struct epoll_event *out, int max, enum klook kl)
{
	int k = 0, ntags = 0;
	uint64_t tags[NTAGS];
	bool kset = atomic_load(&ep->nkernel) > 0 || ep->nkregs > 0;
	if (kset && kl != KL_ALWAYS && kernel_quiet(ep, xp_now())) {
		xp_lock();
		xp_drive(xp_clock());
		if (XP_UNLIKELY(ep->nmay))
			late_listeners(ep);
		int n = eng_collect(ep, out, max);
		bool skip = n != 0 || kl == KL_SKIP;
		kskips += skip;
		xp_unlock();
		if (skip)
			return n;
	}
	bool counted = __atomic_load_n(&xp_kquiet, __ATOMIC_SEQ_CST);
	uint64_t gen = __atomic_load_n(&xp_kgen, __ATOMIC_SEQ_CST), t = 0;
	if (kset) {
		int room = ep->nrdy ? (max + 1) / 2 : max;
		t = xp_now();
		k = xp_real.epoll_wait(ep->kfd, out, room, 0);
		if (k < 0)
			return -errno;
		k = kfilter(ep, out, k, tags, &ntags);
	}
	xp_lock();
	if (kset)
		kernel_looked(ep, k == 0 && ntags == 0, t, gen, counted);
	xp_drive(xp_clock());
	if (XP_UNLIKELY(ep->nmay))
		late_listeners(ep);
	if (ntags)
		apply_tags(ep, tags, ntags);
	int n = eng_collect(ep, out + k, max - k);
	xp_unlock();
	return n < 0 ? (k ? k : n) : k + n;
}

struct sleep_cleanup {
	struct xp_epoll *ep;
	struct xp_sock *es;
	int kfd;
	bool nic;
};

static void sleep_cancelled(void *arg)
{
	struct sleep_cleanup *c = arg;
	pthread_mutex_lock(&xp_eng.mu);
	c->ep->sleepers--;
	if (c->nic)
		xp_nic_sleep_leave();
	pthread_mutex_unlock(&xp_eng.mu);
	xp_in_lib = 0;
	xp_sock_put(c->es);
}

static int kwait(int kfd, struct epoll_event *out, int max, uint64_t left, const sigset_t *sigmask)
{
	struct timespec ts = ns_ts(left), *tsp = left == UINT64_MAX ? NULL : &ts;
	if (xp_real.epoll_pwait2) {
		int r = xp_real.epoll_pwait2(kfd, out, max, tsp, sigmask);
		if (r >= 0 || errno != ENOSYS)
			return r;
	}
	int ms = tsp ? (int)((left + 999999) / 1000000 > INT_MAX ? INT_MAX : (left + 999999) / 1000000) : -1;
	return xp_real.epoll_pwait(kfd, out, max, ms, sigmask);
}

static __attribute__((noinline)) int kwait_cancellable(struct sleep_cleanup *cl, struct epoll_event *out,
							int max, uint64_t left, const sigset_t *sigmask)
{
	int k;
	pthread_cleanup_push(sleep_cancelled, cl);
	k = kwait(cl->kfd, out, max, left, sigmask);
	pthread_cleanup_pop(0);
	return k;
}

/* Engine lock held: the private epoll a thread sleeps in, {kfd, the NIC's
 * wake fd}; the NIC fd is EPOLLEXCLUSIVE so a frame wakes one sleeping set,
 * whose thread drives the engine and so wakes the others through their
 * eventfds. */
static int sleep_fd(struct xp_epoll *ep)
{
	if (ep->sfd >= 0)
		return 0;
	int fd = xp_real.epoll_create1(EPOLL_CLOEXEC);
	if (fd < 0)
		return -errno;
	struct epoll_event a = { .events = EPOLLIN, .data.u64 = 0 };
	struct epoll_event b = { .events = EPOLLIN | EPOLLEXCLUSIVE, .data.u64 = 1 };
	if (xp_real.epoll_ctl(fd, EPOLL_CTL_ADD, ep->kfd, &a) < 0 ||
	    xp_real.epoll_ctl(fd, EPOLL_CTL_ADD, xp_eng.wake_fd, &b) < 0) {
		int e = errno;
		(void)syscall(SYS_close, fd);
		return -e;
	}
	ep->sfd = fd;
	return 0;
}

/* Sleeps in the kernel on kfd.  Returns user kernel events, 0 to look
 * again, or -errno (-EINTR); *kwoke: kfd may have events (not only the
 * NIC woke the thread). */
static int ep_sleep(struct xp_sock *es, struct epoll_event *out, int max, uint64_t deadline,
		    const sigset_t *sigmask, bool *kwoke)
{
	struct xp_epoll *ep = es->ep;
	*kwoke = false;
	xp_lock();
	if (ep->nrdy) {
		xp_unlock();
		return 0;
	}
	ev_drain(ep);
	ep->sleepers++;
	struct sleep_cleanup cl = { ep, es, ep->kfd, false };
	if (mux_nic && xp_eng.wake_fd >= 0 && sleep_fd(ep) == 0) {
		cl.kfd = ep->sfd;
		cl.nic = true;
		xp_nic_sleep_enter();
	}
	xp_unlock();
	uint64_t now = xp_now();
	uint64_t left = deadline == UINT64_MAX ? UINT64_MAX : deadline > now ? deadline - now : 0;
	struct epoll_event se[2];
	int k = cl.nic ? kwait_cancellable(&cl, se, 2, left, sigmask) : kwait_cancellable(&cl, out, max, left, sigmask);
	int err = errno;
	int ntags = 0;
	uint64_t tags[NTAGS];
	*kwoke = !cl.nic || k <= 0 || se[0].data.u64 == 0 || (k > 1 && se[1].data.u64 == 0);
	if (k > 0 && cl.nic)
		k = 0; /* kfd or the NIC: the caller collects */
	if (k > 0)
		k = kfilter(ep, out, k, tags, &ntags);
	xp_lock();
	ep->sleepers--;
	if (cl.nic)
		xp_nic_sleep_leave();
	if (ntags)
		apply_tags(ep, tags, ntags);
	xp_unlock();
	return k < 0 ? -err : k;
}

/* An epoll set with no engine socket in it (or in a fork child, where the
 * engine is the parent's): the kernel's call, without our marker and tags. */
static int plain_wait(struct xp_epoll *ep, struct epoll_event *out, int max, uint64_t deadline,
		      const sigset_t *sigmask)
{
	for (;;) {
		uint64_t now = xp_now();
		uint64_t left = deadline == UINT64_MAX ? UINT64_MAX : deadline > now ? deadline - now : 0;
		int k = kwait(ep->kfd, out, max, left, sigmask);
		if (k <= 0)
			return k < 0 ? -errno : 0;
		int ntags = 0;
		uint64_t tags[NTAGS];
		int n = kfilter(ep, out, k, tags, &ntags);
		if (n > 0 || left == 0)
			return n;
		if (mine(ep) && n < k) { /* our marker, left signalled after the last entry went */
			xp_lock();
			ev_drain(ep);
			xp_unlock();
			continue;
		}
		if (!mine(ep)) { /* the parent's marker, readable in a shared set: do not spin on it */
			struct timespec ms = { 0, 1000000 };
			nanosleep(&ms, NULL);
		}
	}
}

int xp_epoll_wait(int epfd, struct epoll_event *out, int max, const struct timespec *tmo, const sigset_t *sigmask)
{
	if (max <= 0 || max > EP_MAX_EVENTS)
		return -EINVAL;
	uintptr_t a = (uintptr_t)out, len = (uintptr_t)max * sizeof(*out);
	if (a + len < a || a + len > 0x800000000000ul) /* access_ok() */
		return -EFAULT;
	uint64_t now = xp_now();
	uint64_t deadline = UINT64_MAX;
	if (tmo) {
		if (tmo->tv_sec < 0 || tmo->tv_nsec < 0 || tmo->tv_nsec >= 1000000000)
			return -EINVAL;
		deadline = now + ts_ns(tmo);
	}
	struct xp_sock *es = epoll_of(epfd);
	if (!es) { /* raced with a close: the kernel answers */
		struct timespec ts = tmo ? *tmo : (struct timespec){ 0, 0 };
		int r = xp_real.epoll_pwait2 ? xp_real.epoll_pwait2(epfd, out, max, tmo ? &ts : NULL, sigmask)
					     : xp_real.epoll_pwait(epfd, out, max, tmo ? (int)(ts_ns(tmo) / 1000000) : -1,
								   sigmask);
		return r < 0 ? -errno : r;
	}
	struct xp_epoll *ep = es->ep;
	ep->kfd = epfd;
	int n;
	if (atomic_load(&ep->nengine) == 0 || !mine(ep) || !xp_fork_attach() || !xp_eng.st) {
		n = plain_wait(ep, out, max, deadline, sigmask);
		xp_sock_put(es);
		return n;
	}
	uint64_t t0 = now, spin_until = deadline > now ? xp_spin_until(now) : 0;
	struct spin sp = { 0 };
	enum klook kl = deadline > now ? KL_SKIP : KL_EVENTS;
	for (;;) {
		n = ep_collect(ep, out, max, kl);
		if (n != 0)
			break;
		now = xp_now();
		if (now >= deadline) {
			if (kl != KL_SKIP)
				break;
			kl = KL_ALWAYS; /* a call that returns nothing has looked at kfd */
			continue;
		}
		if (now < spin_until) {
			n = spin_step(&sp, sigmask);
			if (n < 0)
				break;
			kl = KL_SKIP;
			continue;
		}
		bool kwoke;
		n = ep_sleep(es, out, max, deadline, sp.on && !sigmask ? &sp.old : sigmask, &kwoke);
		if (n != 0)
			break;
		kl = kwoke ? KL_ALWAYS : KL_SKIP;
	}
	spin_end(&sp);
	if (deadline > t0)
		xp_spin_learn(xp_now() - t0, n > 0);
	xp_sock_put(es);
	return n;
}

/* --- poll and select ------------------------------------------------------------ */

/* One fd of the call. */
struct pitem {
	int fd;
	short events;
	short revents;
	uint8_t sel;          /* select: 1 read, 2 write, 4 except */
	bool muted;           /* select: reported only bits it does not count */
	int kidx;             /* index in the kernel pollfd array, or -1 */
	struct xp_sock *s;    /* an engine socket (reference held), or NULL */
	struct xp_waiter w;
};

struct pset {
	struct pitem *it;
	int n;
	struct pollfd *kp; /* kernel fds, +2 slots: the eventfd, the NIC's wake fd */
	int nk;
	int neng;
	bool select;
};

#define SEL_IN (POLLRDNORM | POLLRDBAND | POLLIN | POLLHUP | POLLERR)
#define SEL_OUT (POLLWRBAND | POLLWRNORM | POLLOUT | POLLERR)
#define SEL_EX (POLLPRI)

static int counted(const struct pitem *it)
{
	int c = 0;
	if ((it->sel & 1) && (it->revents & SEL_IN))
		c++;
	if ((it->sel & 2) && (it->revents & SEL_OUT))
		c++;
	if ((it->sel & 4) && (it->revents & SEL_EX))
		c++;
	return c;
}

/* Engine lock held. */
static void eng_revents(struct pset *ps)
{
	for (int i = 0; i < ps->n; i++) {
		struct pitem *it = &ps->it[i];
		if (!it->s)
			continue;
		uint32_t m = sock_mask(it->s, it->fd, false);
		it->revents = (short)(m & ((uint16_t)it->events | POLLERR | POLLHUP));
	}
}

/* Merges kernel revents; returns the call's result so far. */
static int pset_count(struct pset *ps)
{
	int c = 0;
	for (int i = 0; i < ps->n; i++) {
		struct pitem *it = &ps->it[i];
		if (it->kidx >= 0) {
			short kr = ps->kp[it->kidx].revents;
			it->revents = it->s ? (short)(it->revents | (kr & POLLIN) | (kr & POLLRDNORM)) : kr;
		}
		if (!ps->select) {
			c += it->revents != 0;
			continue;
		}
		int k = counted(it);
		if (!k && it->revents && it->kidx >= 0 && !it->s) { /* POLLNVAL: beyond the kernel's fd table */
			it->muted = true; /* e.g. POLLHUP on an fd only in exceptfds: */
			ps->kp[it->kidx].fd = -1; /* do not wake on it again */
		}
		c += k;
	}
	return c;
}

struct pwait_cleanup {
	struct pset *ps;
	bool nic;
};

static void pwait_unregister(struct pset *ps)
{
	for (int i = 0; i < ps->n; i++)
		if (ps->it[i].s)
			xp_waiter_del(ps->it[i].s, &ps->it[i].w);
}

static void pset_release(struct pset *ps)
{
	for (int i = 0; i < ps->n; i++)
		if (ps->it[i].s) {
			xp_sock_put(ps->it[i].s);
			ps->it[i].s = NULL;
		}
}

static void pwait_cancelled(void *arg)
{
	struct pwait_cleanup *c = arg;
	pthread_mutex_lock(&xp_eng.mu);
	pwait_unregister(c->ps);
	if (c->nic)
		xp_nic_sleep_leave();
	pthread_mutex_unlock(&xp_eng.mu);
	xp_in_lib = 0;
	pset_release(c->ps);
	/* the arrays are the caller's stack or heap: a cancelled call leaks the heap ones */
}

static __attribute__((noinline)) int ppoll_cancellable(struct pset *ps, bool nic, const struct timespec *ts,
							const sigset_t *sigmask)
{
	struct pwait_cleanup cl = { ps, nic };
	int r;
	pthread_cleanup_push(pwait_cancelled, &cl);
	r = xp_real.ppoll(ps->kp, (nfds_t)ps->nk + 1 + nic, ts, sigmask);
	pthread_cleanup_pop(0);
	return r;
}

/* poll and select keep no set between calls: a thread's quiet kernel fds
 * are those of its last calls with the same kernel fds and events (key),
 * under the rules of kernel_quiet(). */
static XP_TLS struct {
	uint64_t key, at, gen, event_at;
	uint32_t empty;
} pquiet;

static uint64_t pset_key(const struct pset *ps)
{
	uint64_t h = 1469598103934665603ull ^ (uint64_t)ps->nk;
	for (int i = 0; i < ps->nk; i++) {
		h = (h ^ (uint32_t)ps->kp[i].fd) * 1099511628211ull;
		h = (h ^ (uint16_t)ps->kp[i].events) * 1099511628211ull;
	}
	return h;
}

static bool pset_quiet(uint64_t key, uint64_t now)
{
	return xp_cfg.kpoll_ns && pquiet.key == key && pquiet.empty >= KQUIET_LOOKS && now - pquiet.at < xp_cfg.kpoll_ns &&
	       now - pquiet.event_at >= KQUIET_HOLD && __atomic_load_n(&xp_kgen, __ATOMIC_ACQUIRE) == pquiet.gen;
}

/* A look at the kernel fds (their revents filled): 0 or -errno. */
static int pset_look(struct pset *ps, uint64_t key)
{
	bool cnt = __atomic_load_n(&xp_kquiet, __ATOMIC_SEQ_CST);
	uint64_t gen = __atomic_load_n(&xp_kgen, __ATOMIC_SEQ_CST), t = xp_now();
	int r = xp_real.poll(ps->kp, (nfds_t)ps->nk, 0);
	if (r < 0)
		return -errno;
	pquiet.empty = kempty_next(pquiet.key == key ? pquiet.empty : 0, r == 0, cnt);
	pquiet.key = key;
	if (r > 0)
		pquiet.event_at = t;
	pquiet.at = t;
	pquiet.gen = gen;
	return 0;
}

/* The loop: returns the count, 0 on timeout, or -errno. */
static int pset_wait(struct pset *ps, uint64_t deadline, const sigset_t *sigmask)
{
	uint64_t now = xp_now(), t0 = now;
	uint64_t spin_until = deadline > now ? xp_spin_until(now) : 0;
	struct spin sp = { 0 };
	bool kfresh = false, kskipped = false;
	uint64_t key = ps->nk > 0 ? pset_key(ps) : 0;
	int c;
	for (;;) {
		kskipped = false;
		if (!kfresh && ps->nk > 0) {
			if (pset_quiet(key, now)) {
				for (int i = 0; i < ps->nk; i++)
					ps->kp[i].revents = 0;
				kskipped = true;
			} else if ((c = pset_look(ps, key)) < 0) {
				break;
			}
		}
		kfresh = false;
		xp_lock();
		xp_drive(xp_clock());
		eng_revents(ps);
		xp_unlock();
		c = pset_count(ps);
		if (c != 0)
			break;
		now = xp_now();
		if (now >= deadline && kskipped) {
			/* a call that returns nothing has looked at the kernel fds */
			if ((c = pset_look(ps, key)) < 0)
				break;
			c = pset_count(ps);
			break;
		}
		if (now >= deadline)
			break;
		if (now < spin_until) {
			c = spin_step(&sp, sigmask);
			if (c < 0)
				break;
			continue;
		}
		int evfd = xp_thread_evfd();
		if (evfd < 0) {
			c = evfd;
			break;
		}
		xp_lock();
		for (int i = 0; i < ps->n; i++)
			if (ps->it[i].s) {
				ps->it[i].w = (struct xp_waiter){ .evfd = evfd };
				xp_waiter_add(ps->it[i].s, &ps->it[i].w);
			}
		eng_revents(ps); /* anything between the look and the registration? */
		bool ready = false;
		for (int i = 0; i < ps->n; i++)
			if (ps->it[i].s && ps->it[i].revents)
				ready = true;
		bool nic = !ready && mux_nic && xp_eng.wake_fd >= 0;
		if (nic) {
			xp_nic_sleep_enter();
			ps->kp[ps->nk + 1] = (struct pollfd){ .fd = xp_eng.wake_fd, .events = POLLIN };
		}
		xp_unlock();
		int r = 0, err = 0;
		if (!ready) {
			ps->kp[ps->nk] = (struct pollfd){ .fd = evfd, .events = POLLIN };
			uint64_t left = deadline == UINT64_MAX ? 0 : deadline > now ? deadline - now : 0;
			struct timespec ts = ns_ts(left);
			r = ppoll_cancellable(ps, nic, deadline == UINT64_MAX ? NULL : &ts,
					      sp.on && !sigmask ? &sp.old : sigmask);
			err = errno;
		}
		xp_lock();
		pwait_unregister(ps);
		if (nic)
			xp_nic_sleep_leave();
		xp_unlock();
		if (r < 0) {
			c = -err;
			break;
		}
		if (r > 0 && (ps->kp[ps->nk].revents & POLLIN)) {
			uint64_t v;
			(void)syscall(SYS_read, evfd, &v, sizeof(v));
		}
		kfresh = !ready;
	}
	spin_end(&sp);
	if (deadline > t0)
		xp_spin_learn(xp_now() - t0, c > 0);
	return c;
}

static int pset_add(struct pset *ps, int fd, short events, uint8_t sel)
{
	struct pitem *it = &ps->it[ps->n++];
	*it = (struct pitem){ .fd = fd, .events = events, .sel = sel, .kidx = -1 };
	if (fd < 0)
		return 0;
	if (xp_fd_maybe_ours(fd)) {
		struct xp_sock *s = xp_fd_get(fd);
		if (s && s->ep) {
			expose(s->ep);
			xp_sock_put(s);
			s = NULL;
		} else if (s && (atomic_load(&s->mode) == XP_KERNEL || !xp_fork_attach() || !xp_eng.st)) {
			xp_sock_put(s);
			s = NULL;
		}
		it->s = s;
	}
	if (it->s) {
		ps->neng++;
		if ((events & (POLLIN | POLLRDNORM)) && it->s->listening && !xp_fork_is_accepting(it->s)) {
			xp_lock(); /* fork.c: a listener waited on (once per port) */
			xp_fork_accepting(it->s);
			xp_unlock();
		}
		if (!it->s->klisten || !(events & (POLLIN | POLLRDNORM)))
			return 1;
		events = POLLIN; /* a dual listener: the kernel side's connections too */
	}
	it->kidx = ps->nk;
	ps->kp[ps->nk++] = (struct pollfd){ .fd = fd, .events = events };
	return it->s ? 1 : 0;
}

int xp_poll(struct pollfd *ufds, nfds_t n, const struct xp_pcall *c)
{
	struct rlimit rl;
	if (n > 256 && getrlimit(RLIMIT_NOFILE, &rl) == 0 && n > rl.rlim_cur) /* a limit below 256: not checked */
		return -EINVAL;
	if (n && xp_check_read(ufds, n * sizeof(*ufds)) < 0)
		return -EFAULT;
	bool any = false;
	for (nfds_t i = 0; i < n && !any; i++)
		any = ufds[i].fd >= 0 && xp_fd_maybe_ours(ufds[i].fd);
	if (!any) {
		int r = c->kind == XP_POLL ? xp_real.poll(ufds, n, c->ms) : xp_real.ppoll(ufds, n, c->ts, c->sigmask);
		return r < 0 ? -errno : r;
	}
	uint64_t deadline = UINT64_MAX;
	if (c->kind == XP_POLL && c->ms >= 0)
		deadline = xp_now() + (uint64_t)c->ms * 1000000ull;
	if (c->kind == XP_PPOLL && c->ts) {
		struct timespec t;
		if (xp_copy_in(&t, c->ts, sizeof(t)) < 0)
			return -EFAULT;
		if (t.tv_sec < 0 || t.tv_nsec < 0 || t.tv_nsec >= 1000000000)
			return -EINVAL;
		deadline = xp_now() + ts_ns(&t);
	}
	struct pitem small_it[16];
	struct pollfd small_kp[18];
	struct pset ps = { .it = small_it, .kp = small_kp };
	if (n > 16) {
		ps.it = malloc(sizeof(*ps.it) * n);
		ps.kp = malloc(sizeof(*ps.kp) * (n + 2));
		if (!ps.it || !ps.kp) {
			free(ps.it);
			free(ps.kp);
			return -ENOMEM;
		}
	}
	int neng = 0;
	for (nfds_t i = 0; i < n; i++)
		neng += pset_add(&ps, ufds[i].fd, ufds[i].events, 0);
	int r;
	if (!neng) { /* only epoll fds of ours, now exact: the kernel's call */
		pset_release(&ps);
		r = c->kind == XP_POLL ? xp_real.poll(ufds, n, c->ms) : xp_real.ppoll(ufds, n, c->ts, c->sigmask);
		r = r < 0 ? -errno : r;
	} else {
		r = pset_wait(&ps, deadline, c->kind == XP_PPOLL ? c->sigmask : NULL);
		pset_release(&ps);
		if (r >= 0) {
			if (xp_check_write(ufds, n * sizeof(*ufds)) < 0)
				r = -EFAULT;
			else
				for (nfds_t i = 0; i < n; i++)
					ufds[i].revents = ps.it[i].revents;
		}
	}
	if (ps.it != small_it) {
		free(ps.it);
		free(ps.kp);
	}
	return r;
}

#define LBITS (8 * (int)sizeof(unsigned long))

static bool bit_of(const unsigned long *set, int fd)
{
	return set && (set[fd / LBITS] >> (fd % LBITS)) & 1ul;
}

int xp_select(int nfds, fd_set *r, fd_set *w, fd_set *e, const struct xp_pcall *c)
{
	if (nfds < 0)
		return -EINVAL;
	size_t words = ((size_t)nfds + LBITS - 1) / LBITS;
	size_t bytes = words * sizeof(unsigned long);
	unsigned long *sets[3] = { (unsigned long *)r, (unsigned long *)w, (unsigned long *)e };
	for (int k = 0; k < 3; k++)
		if (sets[k] && bytes && xp_check_read(sets[k], bytes) < 0)
			return -EFAULT;
	uint64_t left = UINT64_MAX;
	struct timespec t;
	if (c->kind == XP_SELECT && c->tv) {
		struct timeval tv;
		if (xp_copy_in(&tv, c->tv, sizeof(tv)) < 0)
			return -EFAULT;
		if (tv.tv_sec < 0 || tv.tv_usec < 0)
			return -EINVAL;
		t.tv_sec = tv.tv_sec + tv.tv_usec / 1000000;
		t.tv_nsec = (tv.tv_usec % 1000000) * 1000;
		left = ts_ns(&t);
	} else if (c->kind == XP_PSELECT && c->ts) {
		if (xp_copy_in(&t, c->ts, sizeof(t)) < 0)
			return -EFAULT;
		if (t.tv_sec < 0 || t.tv_nsec < 0 || t.tv_nsec >= 1000000000)
			return -EINVAL;
		left = ts_ns(&t);
	}
	int cnt = 0;
	bool any = false, all = true;
	for (int fd = 0; fd < nfds; fd++) {
		if (!bit_of(sets[0], fd) && !bit_of(sets[1], fd) && !bit_of(sets[2], fd))
			continue;
		cnt++;
		bool o = xp_fd_maybe_ours(fd);
		any = any || o;
		all = all && o;
	}
	if (!any) {
		int x = c->kind == XP_SELECT ? xp_real.select(nfds, r, w, e, c->tv)
					     : xp_real.pselect(nfds, r, w, e, c->ts, c->sigmask);
		return x < 0 ? -errno : x;
	}
	/* Linux's EBADF for a set bit on a closed fd (and its clipping of nfds to
	 * the fd table's size, which only the kernel knows): its own select,
	 * zero timeout, on copies of the sets */
	unsigned long small_cp[3][16], *cp = &small_cp[0][0];
	if (all) /* every fd is in our table: open, nothing to check */
		goto checked;
	if (bytes > sizeof(small_cp[0]) && !(cp = malloc(3 * bytes)))
		return -ENOMEM;
	for (int k = 0; k < 3; k++)
		if (sets[k])
			memcpy((char *)cp + (size_t)k * bytes, sets[k], bytes);
	struct timeval zero = { 0, 0 };
	int v = xp_real.select(nfds, sets[0] ? (fd_set *)cp : NULL, sets[1] ? (fd_set *)((char *)cp + bytes) : NULL,
			       sets[2] ? (fd_set *)((char *)cp + 2 * bytes) : NULL, &zero);
	int verr = errno;
	if (cp != &small_cp[0][0])
		free(cp);
	if (v < 0 && verr == EBADF)
		return -EBADF;
checked:;
	uint64_t start = xp_now();
	uint64_t deadline = left == UINT64_MAX ? UINT64_MAX : start + left;
	struct pitem small_it[16];
	struct pollfd small_kp[18];
	struct pset ps = { .it = small_it, .kp = small_kp, .select = true };
	if (cnt > 16) {
		ps.it = malloc(sizeof(*ps.it) * (size_t)cnt);
		ps.kp = malloc(sizeof(*ps.kp) * ((size_t)cnt + 2));
		if (!ps.it || !ps.kp) {
			free(ps.it);
			free(ps.kp);
			return -ENOMEM;
		}
	}
	int neng = 0;
	for (int fd = 0; fd < nfds; fd++) {
		uint8_t sel = (uint8_t)(bit_of(sets[0], fd) | bit_of(sets[1], fd) << 1 | bit_of(sets[2], fd) << 2);
		if (!sel)
			continue;
		short ev = (short)(((sel & 1) ? (POLLIN | POLLRDNORM | POLLRDBAND) : 0) |
				   ((sel & 2) ? (POLLOUT | POLLWRNORM | POLLWRBAND) : 0) | ((sel & 4) ? POLLPRI : 0));
		neng += pset_add(&ps, fd, ev, sel);
	}
	int res;
	if (!neng) {
		pset_release(&ps);
		res = c->kind == XP_SELECT ? xp_real.select(nfds, r, w, e, c->tv)
					   : xp_real.pselect(nfds, r, w, e, c->ts, c->sigmask);
		res = res < 0 ? -errno : res;
	} else {
		res = pset_wait(&ps, deadline, c->kind == XP_PSELECT ? c->sigmask : NULL);
		pset_release(&ps);
		if (res >= 0) {
			for (int k = 0; k < 3; k++)
				if (sets[k] && bytes && xp_check_write(sets[k], bytes) < 0)
					res = -EFAULT;
		}
		if (res >= 0) {
			for (int k = 0; k < 3; k++)
				if (sets[k])
					memset(sets[k], 0, bytes);
			for (int i = 0; i < ps.n; i++) {
				struct pitem *it = &ps.it[i];
				unsigned long bit = 1ul << (it->fd % LBITS);
				if ((it->sel & 1) && (it->revents & SEL_IN))
					sets[0][it->fd / LBITS] |= bit;
				if ((it->sel & 2) && (it->revents & SEL_OUT))
					sets[1][it->fd / LBITS] |= bit;
				if ((it->sel & 4) && (it->revents & SEL_EX))
					sets[2][it->fd / LBITS] |= bit;
			}
		}
		if (c->kind == XP_SELECT && c->tv) { /* Linux writes back the time left */
			uint64_t now = xp_now(), rem = deadline > now ? deadline - now : 0;
			if (res > 0 || res == -EINTR || res == 0) {
				struct timeval tv = { .tv_sec = (time_t)(rem / 1000000000ull),
						      .tv_usec = (suseconds_t)(rem % 1000000000ull / 1000) };
				if (xp_check_write(c->tv, sizeof(tv)) == 0)
					*c->tv = tv;
			}
		}
	}
	if (ps.it != small_it) {
		free(ps.it);
		free(ps.kp);
	}
	return res;
}
