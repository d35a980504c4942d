/* The one engine of the process: attached lazily on the first AF_INET stream
 * socket, protected by one mutex, kept running by a progress thread, and the
 * waits of blocking calls.
 *
 * Progress: the progress thread sleeps in ppoll() on the NIC's wake fd and an
 * eventfd, with the engine's next deadline as timeout; it receives frames and
 * runs timers whenever the application does not call in.  Threads blocked in
 * a call (recv, accept, connect, send, close with linger) also ppoll() the NIC
 * wake fd themselves, so a reply wakes them directly; whoever takes the lock
 * first processes the frames, and the engine's on_event callback writes the
 * eventfd of each thread waiting on a socket whose readiness changed.
 *
 * Signals (sigdisp.c wraps the program's handlers): a waiting thread sleeps
 * in ppoll under its own mask, and a handler's run ends the wait with -EINTR
 * or lets it go on as the kernel would (signal(7)): restart under SA_RESTART
 * unless the socket has a timeout.  Only when a handler that is not wrapped
 * exists and the handlers differ on SA_RESTART does the thread block every
 * signal around the sleep and watch a signalfd of the ones it had unblocked,
 * to learn which one came (xp_wait).
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <fcntl.h>
#include <ifaddrs.h>
#include <net/if.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/random.h>
#include <sys/signalfd.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "shim.h"
#include "../nic/packet.h"
#include "stats.h"

struct xp_engine xp_eng = {
	.mu = PTHREAD_MUTEX_INITIALIZER,
	.wake_fd = -1,
	.prog_evfd = -1,
};

static pthread_once_t init_once = PTHREAD_ONCE_INIT;

xt_time_t xp_now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (xt_time_t)ts.tv_sec * 1000000000ull + (xt_time_t)ts.tv_nsec;
}

/* The engine's time: read under the lock and never behind the last value
 * the engine saw (threads read the clock before they get the lock). */
xt_time_t xp_clock(void)
{
	xt_time_t t = xp_now();
	if (t < xp_eng.now)
		t = xp_eng.now;
	xp_eng.now = t;
	return t;
}

void xp_lock(void)
{
	xp_in_lib++;
	if (XP_UNLIKELY(xp_eng.forked_child))
		(void)xp_fork_attach(); /* a fork child's first call: its own NIC */
	pthread_mutex_lock(&xp_eng.mu);
	xp_eng.app_calls++; /* the progress thread's sign of a busy application */
}

#define XP_PROG_LEASE XT_MS(2)

static void unlock_kick(void);

void xp_unlock(void)
{
	if (xp_eng.st)
		xt_stack_flush(xp_eng.st);
	unlock_kick();
}

void xp_unlock_lazy(void)
{
	/* Deferring needs someone to look soon: the progress thread while it
	 * sleeps at most a lease (the application is busy calling in). */
	if (xp_eng.st &&
	    !(xp_cfg.tx_batch && xp_eng.prog_evfd >= 0 && xp_eng.prog_wake_at <= xp_eng.now + XP_PROG_LEASE))
		xt_stack_flush(xp_eng.st);
	unlock_kick();
}

void xp_flush_before_leaving(void)
{
	if (!xp_eng.st || xp_eng.forked_child || xp_in_lib)
		return;
	if (pthread_mutex_trylock(&xp_eng.mu) != 0)
		return; /* this thread holds it (a handler), or another one does */
	if (!xp_fork_in_vfork())
		xt_stack_flush(xp_eng.st);
	pthread_mutex_unlock(&xp_eng.mu);
}

static void unlock_kick(void)
{
	/* A call may have armed an engine timer earlier than the progress
	 * thread's sleep (TCP_CORK's 200 ms, a delayed ACK, a first RTO): wake
	 * it so the timer fires on time even if nothing else happens. */
	bool kick = xp_eng.st && xp_eng.prog_evfd >= 0 &&
		    xt_stack_deadline_hint(xp_eng.st) < xp_eng.prog_wake_at && /* cheap, usually false */
		    xt_stack_next_deadline(xp_eng.st) < xp_eng.prog_wake_at;
	if (kick)
		xp_eng.prog_wake_at = 0; /* one kick until the thread sleeps again */
	pthread_mutex_unlock(&xp_eng.mu);
	if (kick) {
		uint64_t one = 1;
		(void)syscall(SYS_write, xp_eng.prog_evfd, &one, sizeof(one));
	}
	xp_in_lib--;
}

/* --- engine <-> NIC ------------------------------------------------------- */

static int eng_tx(void *ctx, const struct xt_frame *frames, int n)
{
	(void)ctx;
	if (XP_UNLIKELY(!xp_eng.nic))
		return 0; /* a fork child not attached yet */
	if (XP_UNLIKELY(xp_tx_holding()))
		return xp_tx_held(frames, n);
	return xt_nic_tx(xp_eng.nic, frames, n, xp_eng.now);
}

/* Zero-copy receive: the engine keeps a frame, and gives it back. */
static void eng_rx_hold(void *ctx, uint64_t ref)
{
	(void)ctx;
	if (xp_eng.nic)
		xt_nic_rx_hold(xp_eng.nic, ref);
}

static void eng_rx_release(void *ctx, uint64_t ref)
{
	(void)ctx;
	if (xp_eng.nic)
		xt_nic_rx_release(xp_eng.nic, ref);
}

/* What the engine takes from its NIC's offloads (at attach, and for a fork
 * child's new NIC): TSO, checksums, gathered sends, kept receives. */
/* Zero-copy send: the NIC registers send buffers and says when it no
 * longer reads them. */
static uint64_t eng_tx_buf_reg(void *ctx, void *buf, uint32_t len)
{
	(void)ctx;
	return xp_eng.nic ? xt_nic_tx_buf_reg(xp_eng.nic, buf, len) : 0;
}

static void eng_tx_buf_unreg(void *ctx, uint64_t handle)
{
	(void)ctx;
	if (xp_eng.nic)
		xt_nic_tx_buf_unreg(xp_eng.nic, handle);
}

static int eng_tx_fence(void *ctx)
{
	(void)ctx;
	return xp_eng.nic ? xt_nic_tx_fence(xp_eng.nic) : 0;
}

static void use_nic_offloads(struct xt_nic *nic)
{
	if (nic->ops->tx_buf_reg && xp_cfg.tx_zerocopy)
		xt_stack_set_tx_bufs(xp_eng.st, eng_tx_buf_reg, eng_tx_buf_unreg, eng_tx_fence, NULL);
	else
		xt_stack_set_tx_bufs(xp_eng.st, NULL, NULL, NULL, NULL);
	xt_stack_set_tso_max(xp_eng.st, xp_cfg.tso ? nic->caps.tso_max : 0);
	xt_stack_set_tx_offload(xp_eng.st, nic->caps.tx_csum, nic->caps.tx_gather);
	(void)xt_stack_set_rx_hold(xp_eng.st, xp_cfg.rx_zerocopy ? nic->caps.rx_hold_window : 0, eng_rx_hold,
				   eng_rx_release, NULL); /* without memory: copies */
}

static void wake_waiters(struct xp_sock *s)
{
	uint64_t one = 1;
	for (struct xp_waiter *w = s->waiters; w; w = w->next) {
		if (w->signalled)
			continue;
		w->signalled = true;
		(void)syscall(SYS_write, w->evfd, &one, sizeof(one));
	}
}

static void eng_event(void *ctx, int sock, uint32_t events)
{
	(void)ctx;
	struct xp_sock *s = xt_tcp_udata(xp_eng.st, sock);
	if (s) {
		wake_waiters(s);
		if (s->epis)
			xp_mux_event(s, events);
	}
}

#define RX_BURST 64
#define RX_ROUNDS 16

void xp_drive(xt_time_t now)
{
	struct xt_frame f[RX_BURST];
	if (now < xp_eng.now)
		now = xp_eng.now;
	xp_eng.now = now;
	if (XP_UNLIKELY(!xp_fam_on) && xp_fam_active &&
	    atomic_load_explicit(xp_fam_active, memory_order_relaxed))
		xp_fork_family_on();
	if (XP_UNLIKELY(!xp_eng.nic))
		return; /* a fork child whose NIC queue could not be opened */
	/* Until rx_burst returns nothing: that also hands the last lent slots
	 * back, which is what makes the wake fd quiet again. */
	for (int round = 0; round < RX_ROUNDS; round++) {
		int n = xt_nic_rx(xp_eng.nic, f, RX_BURST, now);
		if (n <= 0)
			break;
		for (int i = 0; i < n; i++)
			xt_stack_input_frame(xp_eng.st, &f[i], now);
	}
	xt_stack_flush(xp_eng.st);
	if (xt_stack_deadline_hint(xp_eng.st) <= now) /* poll skips what is not due */
		xt_stack_poll(xp_eng.st, now);
	xp_flow_sweep(now);
}

static xt_time_t next_deadline(void)
{
	xt_time_t d = xt_stack_next_deadline(xp_eng.st);
	if (XP_UNLIKELY(!xp_eng.nic))
		return d;
	xt_time_t n = xt_nic_deadline(xp_eng.nic);
	xt_time_t f = xp_flow_deadline();
	if (f < n)
		n = f;
	return n < d ? n : d;
}

/* Arms the NIC's wake fd; false if frames came in meanwhile (drive again). */
static bool arm_nic(xt_time_t now)
{
	if (xp_eng.nic && xp_eng.nic->ops->arm_wake) {
		int r = xp_eng.nic->ops->arm_wake(xp_eng.nic);
		if (r == -EAGAIN && xp_eng.st) {
			/* a frame the program has not read keeps the wake fd
			 * readable: its payload is copied, the frame goes back */
			xt_stack_rx_unhold_all(xp_eng.st);
			r = xp_eng.nic->ops->arm_wake(xp_eng.nic);
		}
		if (r < 0 && r != -EAGAIN) {
			static bool said;
			if (!said) {
				said = true;
				xp_log(XP_LOG_ERROR, "NIC %s: %s", xp_cfg.iface, strerror(-r));
			}
		}
	}
	(void)now;
	return true;
}

static int timeout_ms_until(xt_time_t deadline, xt_time_t now, struct timespec *ts)
{
	if (deadline == XT_TIME_NEVER || deadline == UINT64_MAX)
		return -1;
	xt_time_t d = deadline > now ? deadline - now : 0;
	ts->tv_sec = (time_t)(d / 1000000000ull);
	ts->tv_nsec = (long)(d % 1000000000ull);
	return 0;
}

/* --- exit ------------------------------------------------------------------ */

/* When a process exits the kernel closes its sockets and goes on sending what
 * they hold.  The engine dies with the process, so do that here: close every
 * engine socket still open (FIN, or RST with unread data) and run the engine
 * until the peers have acknowledged data and FINs, for XTCP_EXIT_DRAIN_MS at
 * most.  _exit() and signals that kill skip this, and lose unsent data. */
__attribute__((destructor)) static void exit_drain(void)
{
	if (!xp_eng.st || xp_eng.forked_child || !xp_cfg.exit_drain_ns) {
		if (xp_eng.st && !xp_eng.forked_child) { /* what the last sends left queued */
			pthread_mutex_lock(&xp_eng.mu);
			xt_stack_flush(xp_eng.st);
			pthread_mutex_unlock(&xp_eng.mu);
		}
		xp_stats_exit();
		return;
	}
	xp_in_lib++;
	xp_fd_clear_range(0, ~0u);
	xt_time_t end = xp_clock() + xp_cfg.exit_drain_ns;
	for (;;) {
		pthread_mutex_lock(&xp_eng.mu);
		xt_time_t now = xp_clock();
		xp_drive(now);
		uint32_t left = xt_stack_unfinished(xp_eng.st);
		xt_time_t dl = next_deadline();
		pthread_mutex_unlock(&xp_eng.mu);
		if (!left || now >= end)
			break;
		if (dl > end)
			dl = end;
		if (dl > now + XT_MS(10))
			dl = now + XT_MS(10);
		struct pollfd p = { .fd = xp_eng.wake_fd, .events = POLLIN };
		struct timespec ts;
		timeout_ms_until(dl, now, &ts);
		(void)ppoll(&p, xp_eng.wake_fd >= 0 ? 1 : 0, &ts, NULL);
	}
	xp_stats_exit(); /* summary, last capture records, segment removed */
	xp_in_lib--;
}

/* --- the progress thread ------------------------------------------------ */

static void *progress_main(void *arg)
{
	(void)arg;
	xp_in_lib = 1; /* everything this thread calls goes to the kernel */
	bool skip_drive = false;
	uint64_t seen_calls = 0;
	for (;;) {
		pthread_mutex_lock(&xp_eng.mu);
		if (xp_eng.forked_child) {
			pthread_mutex_unlock(&xp_eng.mu);
			return NULL;
		}
		xt_time_t now = xp_clock();
		if (!skip_drive) {
			xp_drive(now);
			arm_nic(now);
			xp_drive(now);
		} else if (xp_eng.st) {
			xt_stack_flush(xp_eng.st); /* frames a send left (xp_unlock_lazy) */
		}
		xt_time_t dl = next_deadline();
		xt_time_t fdl = xp_fork_idle_check(now); /* fork.c: a member without TCP */
		if (fdl < dl)
			dl = fdl;
		/* The application handles the NIC itself while a thread of it
		 * sleeps on the wake fd, or keeps calling in (epoll/poll/select
		 * and non-blocking reads take what the NIC holds): then stay out
		 * of its way (no lock contention, no context switch per frame) and
		 * look again after XP_PROG_LEASE.  An application that stops
		 * calling in gets its frames and timers run by this thread within
		 * the lease; an idle process pays one wake-up, then this thread
		 * sleeps on the NIC again. */
		uint64_t calls = xp_eng.app_calls;
		bool active = calls != seen_calls;
		seen_calls = calls;
		bool excl = (skip_drive && xp_eng.nic_waiters > 0) || active;
		if (excl && dl > now + XP_PROG_LEASE)
			dl = now + XP_PROG_LEASE;
		xp_eng.prog_wake_at = dl;
		pthread_mutex_unlock(&xp_eng.mu);
		xt_time_t sdl = xp_stats_tick(now); /* xtcp-stat's snapshots, outside the lock */
		if (sdl < dl)
			dl = sdl;

		struct pollfd p[3] = {
			{ .fd = xp_eng.prog_evfd, .events = POLLIN },
			{ .fd = xp_eng.wake_fd, .events = POLLIN },
			{ .fd = xp_fork_rendezvous_fd(), .events = POLLIN },
		};
		int nfds = xp_eng.wake_fd >= 0 && !excl ? 2 : 1;
		if (p[2].fd >= 0) { /* fork.c: a new engine on our address asks in */
			if (nfds == 1)
				p[1].fd = -1;
			nfds = 3;
		}
		struct timespec ts, *tsp = NULL;
		if (timeout_ms_until(dl, now, &ts) == 0)
			tsp = &ts;
		else if (xp_eng.wake_fd < 0) {
			ts.tv_sec = 0;
			ts.tv_nsec = 1000000; /* no wake fd: look every millisecond */
			tsp = &ts;
		}
		int r = ppoll(p, (nfds_t)nfds, tsp, NULL);
		skip_drive = false;
		if (r > 0 && nfds == 3 && (p[2].revents & POLLIN))
			xp_fork_rendezvous();
		if (r > 0 && (p[0].revents & POLLIN)) {
			uint64_t v;
			(void)syscall(SYS_read, xp_eng.prog_evfd, &v, sizeof(v));
		} else if (r > 0 && nfds >= 2 && p[1].fd >= 0 && (p[1].revents & POLLIN) &&
			   __atomic_load_n(&xp_eng.nic_waiters, __ATOMIC_RELAXED) > 0) {
			skip_drive = true; /* a blocked thread takes these frames */
		}
	}
	return NULL;
}

/* --- attaching ------------------------------------------------------------- */

static void load_local_addrs(void)
{
	struct ifaddrs *ifa = NULL;
	xp_eng.nlocal = 0;
	if (getifaddrs(&ifa) < 0)
		return;
	for (struct ifaddrs *i = ifa; i; i = i->ifa_next) {
		if (!i->ifa_addr || i->ifa_addr->sa_family != AF_INET)
			continue;
		if (xp_eng.nlocal < (int)(sizeof(xp_eng.local_ips) / sizeof(xp_eng.local_ips[0])))
			xp_eng.local_ips[xp_eng.nlocal++] =
				ntohl(((struct sockaddr_in *)i->ifa_addr)->sin_addr.s_addr);
	}
	freeifaddrs(ifa);
}

bool xp_is_local_kernel_addr(uint32_t ip)
{
	for (int i = 0; i < xp_eng.nlocal; i++)
		if (xp_eng.local_ips[i] == ip)
			return true;
	return false;
}

bool xp_engine_serves(uint32_t dst)
{
	const struct xp_config *c = &xp_cfg;
	if (dst == 0 || (dst >> 24) == 127 || (dst >> 28) >= 14 || dst == c->ip)
		return false;
	if (xp_is_local_kernel_addr(dst))
		return false;
	if ((dst & c->netmask) == (c->ip & c->netmask))
		return c->prefix >= 31 || (dst & ~c->netmask) != ~c->netmask;
	return c->gw != 0;
}

static void fmt_ip(uint32_t ip, char *buf, size_t len)
{
	struct in_addr a = { .s_addr = htonl(ip) };
	inet_ntop(AF_INET, &a, buf, (socklen_t)len);
}

static void atfork_prepare(void)
{
	pthread_mutex_lock(&xp_eng.mu);
	/* Frames a send left queued (XTCP_TX_BATCH) leave now, from the parent,
	 * not later as copies from the child; and received frames the engine
	 * keeps are copied into its socket buffers, since the child's copy of
	 * the engine loses the parent's rings. */
	if (xp_eng.st && xp_eng.nic && !xp_eng.forked_child) {
		xt_stack_flush(xp_eng.st);
		xt_stack_rx_unhold_all(xp_eng.st);
	}
	/* The leaf locks other threads take outside the engine's lock: held
	 * across the fork, so that the child's copies are free. */
	xp_fdtab_fork_lock();
	xp_stats_fork_lock();
}

static void atfork_parent(void)
{
	xp_stats_fork_unlock();
	xp_fdtab_fork_unlock();
	pthread_mutex_unlock(&xp_eng.mu);
}

/* The child shares the NIC's rings with the parent: fork.c drops its copy of
 * them and of every connection; the child's first socket call opens its own
 * NIC queue (xp_fork_attach). */
static void atfork_child(void)
{
	xp_stats_fork_unlock();
	xp_fdtab_fork_unlock();
	xp_fork_child();
	pthread_mutex_unlock(&xp_eng.mu);
}

/* XTCP_LOG_LEVEL=debug: the engine's non-zero counters when the process exits. */
static void dump_counters(void)
{
	if (xp_eng.forked_child || pthread_mutex_trylock(&xp_eng.mu) != 0)
		return;
	const uint64_t *c = (const uint64_t *)xt_stack_counters(xp_eng.st);
	char line[400];
	size_t n = 0;
	line[0] = 0;
	for (int i = 0; xt_counter_names[i]; i++) {
		if (!c[i])
			continue;
		int m = snprintf(line + n, sizeof(line) - n, " %s=%llu", xt_counter_names[i],
				 (unsigned long long)c[i]);
		if (m < 0 || (size_t)m >= sizeof(line) - n) {
			xp_log(XP_LOG_DEBUG, "counters:%s", line);
			n = 0;
			line[0] = 0;
			i--;
			continue;
		}
		n += (size_t)m;
	}
	if (n)
		xp_log(XP_LOG_DEBUG, "counters:%s", line);
	pthread_mutex_unlock(&xp_eng.mu);
}

/* The progress thread, with every signal blocked. */
static int start_progress(void)
{
	xp_stats_open(); /* the segment xtcp-stat reads; failure only warns */

	sigset_t all, old;
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	pthread_attr_t a;
	pthread_attr_init(&a);
	pthread_attr_setdetachstate(&a, PTHREAD_CREATE_DETACHED);
	pthread_attr_setstacksize(&a, 256 * 1024);
	int r = pthread_create(&xp_eng.prog, &a, progress_main, NULL);
	pthread_attr_destroy(&a);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	return r;
}

/* A fork child's engine copy gets a NIC queue (AF_PACKET: the only backend a
 * family runs on), an eventfd and a progress thread of its own (fork.c); the
 * stack, its listeners and settings stay. */
int xp_engine_reopen(void)
{
	struct xt_packet_cfg pc = { 0 };
	pc.ifname = xp_cfg.iface;
	pc.ip = xp_cfg.ip;
	pc.sock_fd = xp_fork_packet_fd(XP_PKT_MAIN);
	pc.big_sock_fd = xp_fork_packet_fd(XP_PKT_BIG);
	pc.tso_sock_fd = xp_fork_packet_fd(XP_PKT_TSO);
	pc.no_tso = !xp_cfg.tso;
	pc.have_mac = xp_cfg.have_mac;
	memcpy(pc.mac, xp_cfg.mac, 6);
	struct xt_nic *nic = NULL;
	int r = xt_packet_open(&pc, &nic);
	if (r < 0) {
		const char *why = xt_packet_error();
		xp_log(XP_LOG_ERROR, "fork child: cannot attach to %s: %s; its sockets stay on the kernel",
		       xp_cfg.iface, why && *why ? why : strerror(-r));
		return -1;
	}
	nic = xp_pcap_setup(nic); /* XTCP_PCAP: the child's own file, FILE.<pid> */
	int evfd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (evfd < 0) {
		xp_log(XP_LOG_ERROR, "fork child: eventfd: %s; its sockets stay on the kernel", strerror(errno));
		xt_nic_close(nic);
		return -1;
	}
	pthread_mutex_lock(&xp_eng.mu);
	xp_eng.nic = nic;
	use_nic_offloads(nic); /* this child's NIC */
	xp_eng.wake_fd = nic->ops->wake_fd ? nic->ops->wake_fd(nic) : -1;
	xp_eng.prog_evfd = evfd;
	xp_eng.now = xp_clock();
	xp_eng.forked_child = false; /* the progress thread runs only then */
	pthread_mutex_unlock(&xp_eng.mu);
	r = start_progress();
	if (r) {
		xp_log(XP_LOG_ERROR, "fork child: progress thread: %s; its sockets stay on the kernel", strerror(r));
		pthread_mutex_lock(&xp_eng.mu);
		xp_eng.forked_child = true;
		xp_eng.nic = NULL;
		xp_eng.wake_fd = -1;
		xp_eng.prog_evfd = -1;
		pthread_mutex_unlock(&xp_eng.mu);
		xt_nic_close(nic);
		(void)syscall(SYS_close, evfd);
		return -1;
	}
	return 0;
}

static int attach(void)
{
	char ipbuf[16], gwbuf[16];
	bool off;

	if (xp_config_load(&off) < 0 || off)
		return -1;
	if (!if_nametoindex(xp_cfg.iface)) {
		xp_log(XP_LOG_ERROR, "XTCP_IFACE=%s: no such interface in this network namespace; every "
				     "socket stays on the kernel", xp_cfg.iface);
		return -1;
	}
	load_local_addrs();

	char why[900];
	int level, r;
	struct xt_nic *nic = xp_nic_open(why, sizeof(why), &level);
	if (!nic) {
		xp_log(level, "cannot attach to %s: %s; every socket stays on the kernel", xp_cfg.iface, why);
		return -1;
	}
	if (why[0])
		XP_LOG(level, "%s", why);
	xp_eng.backend = nic->ops->name;
	nic = xp_pcap_setup(nic); /* XTCP_PCAP: a capture wrapper around the backend */
	fmt_ip(xp_cfg.ip, ipbuf, sizeof(ipbuf));

	struct xt_stack_cfg sc;
	xt_stack_cfg_defaults(&sc);
	memcpy(sc.mac, xp_cfg.have_mac ? xp_cfg.mac : nic->caps.mac, 6);
	sc.ip = xp_cfg.ip;
	sc.netmask = xp_cfg.netmask;
	sc.gateway = xp_cfg.gw;
	if (nic->caps.mtu)
		sc.mtu = nic->caps.mtu > 1500 ? 1500 : nic->caps.mtu;
	sc.no_link_header = nic->caps.no_link_header;
	sc.rx_csum_verified = nic->caps.rx_csum;
	sc.max_sockets = xp_cfg.max_sockets;
	sc.somaxconn = xp_cfg.somaxconn;
	sc.rcvbuf = xp_cfg.rcvbuf;
	sc.sndbuf = xp_cfg.sndbuf;
	if (getrandom(sc.secret, sizeof(sc.secret), GRND_NONBLOCK) != sizeof(sc.secret)) {
		sc.secret[0] = xp_now() ^ ((uint64_t)getpid() << 32);
		sc.secret[1] = (uint64_t)(uintptr_t)&sc * 0x9e3779b97f4a7c15ull;
	}
	sc.tx = eng_tx;
	sc.on_event = eng_event;
	sc.syn_owner = xp_fork_syn_owner;
	xp_fork_init();
	xp_eng.nic = nic;
	xp_eng.now = xp_now();
	xp_eng.st = xt_stack_new(&sc, xp_eng.now);
	if (xp_eng.st) {
		xt_stack_set_tx_defer(xp_eng.st, xp_cfg.tx_batch);
		use_nic_offloads(nic);
	}
	if (!xp_eng.st) {
		xp_log(XP_LOG_ERROR, "engine: invalid configuration or out of memory (XTCP_MAX_SOCKETS=%u); "
				     "every socket stays on the kernel", xp_cfg.max_sockets);
		xt_nic_close(nic);
		xp_eng.nic = NULL;
		return -1;
	}
	xp_nic_seed_neighbours();
	xp_eng.wake_fd = nic->ops->wake_fd ? nic->ops->wake_fd(nic) : -1;
	xp_eng.prog_evfd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (xp_eng.prog_evfd < 0) {
		xp_log(XP_LOG_ERROR, "eventfd: %s; every socket stays on the kernel", strerror(errno));
		goto fail;
	}

	r = start_progress();
	if (r) {
		xp_log(XP_LOG_ERROR, "progress thread: %s; every socket stays on the kernel", strerror(r));
		goto fail;
	}
	pthread_atfork(atfork_prepare, atfork_parent, atfork_child);
	if (xp_log_level >= XP_LOG_DEBUG)
		atexit(dump_counters);

	const uint8_t *m = sc.mac;
	if (xp_cfg.gw)
		fmt_ip(xp_cfg.gw, gwbuf, sizeof(gwbuf));
	else
		snprintf(gwbuf, sizeof(gwbuf), "none");
	const char *nicv = getenv("XTCP_NIC"), *ipv = getenv("XTCP_IP");
	XP_LOG(XP_LOG_INFO,
	       "attached: backend %s (XTCP_NIC=%s), interface %s (XTCP_IFACE), address %s/%d (%s), gateway %s (%s), "
	       "mac %02x:%02x:%02x:%02x:%02x:%02x (%s), mtu %u, spin %s%llu us; %d offload rules, capture %s",
	       xp_eng.backend, nicv && *nicv ? nicv : "auto", xp_cfg.iface, ipbuf, xp_cfg.prefix,
	       ipv && *ipv ? "XTCP_IP" : "the interface's", gwbuf, xp_cfg.gw ? "XTCP_GW" : "XTCP_GW unset",
	       m[0], m[1], m[2], m[3], m[4], m[5], xp_cfg.have_mac ? "XTCP_MAC" : "the interface's", sc.mtu,
	       xp_cfg.spin_auto ? "auto, up to " : "", (unsigned long long)(xp_cfg.spin_ns / 1000), xp_rules_count(),
	       xp_obs.pcap[0] ? xp_obs.pcap : "off");
	return 0;
fail:
	if (xp_eng.prog_evfd >= 0)
		close(xp_eng.prog_evfd);
	xp_eng.prog_evfd = -1;
	xt_stack_free(xp_eng.st);
	xp_eng.st = NULL;
	xt_nic_close(nic);
	xp_eng.nic = NULL;
	return -1;
}

static void init_once_fn(void)
{
	xp_in_lib++;
	int r = attach();
	xp_in_lib--;
	atomic_store(&xp_eng.state, r == 0 ? XP_ENG_READY : XP_ENG_OFF);
}

bool xp_engine_ready(void)
{
	int s = atomic_load_explicit(&xp_eng.state, memory_order_acquire);
	if (XP_LIKELY(s != XP_ENG_UNINIT))
		return s == XP_ENG_READY;
	pthread_once(&init_once, init_once_fn);
	return atomic_load(&xp_eng.state) == XP_ENG_READY;
}

/* --- waits ------------------------------------------------------------------ */

struct xp_thread {
	bool init;
	int evfd, sigfd;
	sigset_t sigfd_mask;
};
static XP_TLS struct xp_thread th;
static pthread_key_t th_key;
static pthread_once_t th_key_once = PTHREAD_ONCE_INIT;

static void th_destroy(void *p)
{
	(void)p;
	if (th.evfd >= 0)
		(void)syscall(SYS_close, th.evfd);
	if (th.sigfd >= 0)
		(void)syscall(SYS_close, th.sigfd);
	th.evfd = th.sigfd = -1;
	th.init = false;
}

/* fork child: the parent's threads and their eventfds are not ours. */
void xp_thread_forget(void)
{
	if (th.init) {
		(void)syscall(SYS_close, th.evfd);
		(void)syscall(SYS_close, th.sigfd);
	}
	th.evfd = th.sigfd = -1;
	th.init = false;
}

static void th_key_make(void)
{
	pthread_key_create(&th_key, th_destroy);
}

static int th_setup(void)
{
	if (XP_LIKELY(th.init))
		return 0;
	pthread_once(&th_key_once, th_key_make);
	th.evfd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (th.evfd < 0)
		return -errno;
	memset(&th.sigfd_mask, 0, sizeof(th.sigfd_mask));
	sigemptyset(&th.sigfd_mask);
	th.sigfd = signalfd(-1, &th.sigfd_mask, SFD_NONBLOCK | SFD_CLOEXEC);
	if (th.sigfd < 0) {
		int e = errno;
		(void)syscall(SYS_close, th.evfd);
		return -e;
	}
	th.init = true;
	pthread_setspecific(th_key, &th);
	return 0;
}

void xp_wait_init(struct xp_wait *w, struct xp_sock *s, uint64_t timeo_ns, bool restartable)
{
	w->s = s;
	w->timeo_ns = timeo_ns;
	w->deadline = UINT64_MAX; /* both set when the call first waits: most never do */
	w->spin_until = 0;
	w->spin = true;
	w->restartable = restartable && !timeo_ns;
	w->put_on_cancel = true;
	w->extra_fd = -1;
	w->started = false;
	w->ended = false;
	w->t0 = 0;
	w->spin_masked = false;
	w->spin_iter = 0;
	w->ran0 = xp_sig_ran;
	w->nr0 = xp_sig_ran_norestart;
}

static void waiter_add(struct xp_sock *s, struct xp_waiter *w)
{
	w->prev = NULL;
	w->next = s->waiters;
	if (s->waiters)
		s->waiters->prev = w;
	s->waiters = w;
}

static void waiter_del(struct xp_sock *s, struct xp_waiter *w)
{
	if (w->prev)
		w->prev->next = w->next;
	else if (s->waiters == w)
		s->waiters = w->next;
	if (w->next)
		w->next->prev = w->prev;
	w->next = w->prev = NULL;
}

void xp_waiter_add(struct xp_sock *s, struct xp_waiter *w)
{
	waiter_add(s, w);
}

void xp_waiter_del(struct xp_sock *s, struct xp_waiter *w)
{
	waiter_del(s, w);
}

int xp_thread_evfd(void)
{
	int r = th_setup();
	return r < 0 ? r : th.evfd;
}

/* Would a handler run for one of the signals in pend, and does it stop this
 * call?  Dispositions are read while the signals are still blocked, so a
 * SA_RESETHAND handler is seen as it is before it runs. */
static bool interrupts(const sigset_t *pend, const sigset_t *mask, bool restartable)
{
	bool intr = false;
	for (int sig = 1; sig < NSIG; sig++) {
		if (!sigismember(pend, sig) || sigismember(mask, sig))
			continue;
		struct sigaction sa;
		if (sigaction(sig, NULL, &sa) < 0)
			continue;
		if (!(sa.sa_flags & SA_SIGINFO) && (sa.sa_handler == SIG_DFL || sa.sa_handler == SIG_IGN))
			continue; /* no handler runs: the kernel restarts transparently */
		if (!restartable || !(sa.sa_flags & SA_RESTART))
			intr = true;
	}
	return intr;
}

/* Did a handler (a wrapped one, sigdisp.c) run since the call began, and
 * does that end the call?  Looks once per run. */
static bool ran_ends(struct xp_wait *w)
{
	unsigned ran = xp_sig_ran, nr = xp_sig_ran_norestart;
	if (ran == w->ran0)
		return false;
	bool end = !w->restartable || nr != w->nr0;
	w->ran0 = ran;
	w->nr0 = nr;
	return end;
}

/* Is one of the signals in pend let in by mask? */
static bool lets_in(const sigset_t *pend, const sigset_t *mask)
{
	for (int sig = 1; sig < NSIG; sig++)
		if (sigismember(pend, sig) && !sigismember(mask, sig))
			return true;
	return false;
}

/* The end of a spin with signals held (engine lock not held): the thread's
 * mask back, so the handlers of what came meanwhile run; true if one of
 * them ends the call. */
static bool spin_release(struct xp_wait *w)
{
	sigset_t pend;
	bool intr = false;
	sigemptyset(&pend);
	sigpending(&pend);
	if (lets_in(&pend, &w->spin_old))
		intr = interrupts(&pend, &w->spin_old, w->restartable);
	pthread_sigmask(SIG_SETMASK, &w->spin_old, NULL); /* handlers run here */
	w->spin_masked = false;
	return intr;
}

void xp_wait_done(struct xp_wait *w)
{
	if (w->spin_masked)
		(void)spin_release(w);
	if (w->started && w->spin)
		xp_spin_learn(xp_now() - w->t0, !w->ended);
}

/* XTCP_SPIN_US=auto: each thread's period, adapted as the halt-polling of
 * a KVM guest (Linux's cpuidle-haltpoll governor) adapts its own.  A wait
 * longer than the period but within the ceiling would have ended in a spin
 * one step longer: the period doubles (from a quarter of the ceiling).  A
 * wait longer than the ceiling (a sparse or idle load, a peer that needs this
 * CPU to answer) could not have: it halves, and below 1 us it is 0, so an
 * idle process sleeps at once.  A wait that ended within the period keeps
 * it. */
static XP_TLS uint64_t spin_cur = UINT64_MAX; /* UINT64_MAX: a quarter of the ceiling */

uint64_t xp_spin_until(uint64_t now)
{
	if (!xp_cfg.spin_auto)
		return xp_cfg.spin_ns ? now + xp_cfg.spin_ns : 0;
	if (spin_cur == UINT64_MAX)
		spin_cur = xp_cfg.spin_ns / 4;
	return spin_cur ? now + spin_cur : 0;
}

void xp_spin_learn(uint64_t waited_ns, bool event)
{
	uint64_t max = xp_cfg.spin_ns;
	if (!xp_cfg.spin_auto || spin_cur == UINT64_MAX || waited_ns <= spin_cur)
		return;
	if (waited_ns > max) {
		spin_cur /= 2;
		if (spin_cur < 1000)
			spin_cur = 0;
	} else if (event) {
		spin_cur = spin_cur * 2 < max / 4 ? max / 4 : spin_cur * 2 > max ? max : spin_cur * 2;
	}
}

/* Engine lock held. */
/* No wake-up of the progress thread here: a request loop leaves its wait
 * once per request, and a wake-up each time would be a context switch per
 * request on the application's core.  The excluded progress thread looks
 * again after XP_PROG_LEASE at the latest (see progress_main). */
static void nic_waiter_leave(void)
{
	__atomic_sub_fetch(&xp_eng.nic_waiters, 1, __ATOMIC_RELAXED);
}

/* mux.c: a thread about to sleep on the NIC's wake fd itself (engine lock
 * held), and back from it. */
void xp_nic_sleep_enter(void)
{
	arm_nic(xp_eng.now);
	__atomic_add_fetch(&xp_eng.nic_waiters, 1, __ATOMIC_RELAXED);
}

void xp_nic_sleep_leave(void)
{
	nic_waiter_leave();
}

struct wait_cleanup {
	struct xp_wait *w;
	struct xp_waiter *me;
	sigset_t *old;
	bool masked;
};

/* The thread was cancelled inside ppoll(): undo the wait and give up the
 * caller's reference on the socket (see xp_wait's contract). */
static void wait_cancelled(void *arg)
{
	struct wait_cleanup *c = arg;
	if (c->masked)
		pthread_sigmask(SIG_SETMASK, c->old, NULL);
	pthread_mutex_lock(&xp_eng.mu);
	if (c->w->s)
		waiter_del(c->w->s, c->me);
	if (xp_eng.wake_fd >= 0)
		nic_waiter_leave();
	pthread_mutex_unlock(&xp_eng.mu);
	xp_in_lib = 0;
	if (c->w->s && c->w->put_on_cancel)
		xp_sock_put(c->w->s);
}

static int wait_turn(struct xp_wait *w)
{
	xt_time_t now = xp_now();
	if (!w->started) {
		w->started = true;
		w->t0 = now;
		if (w->timeo_ns)
			w->deadline = now + w->timeo_ns;
		if (w->spin)
			w->spin_until = xp_spin_until(now);
	}
	if (w->deadline != UINT64_MAX && now >= w->deadline) {
		if (w->spin_masked) {
			xp_unlock();
			bool intr = spin_release(w);
			xp_lock();
			if (intr)
				return -EINTR;
		}
		return -EAGAIN;
	}
	/* Signals (sigdisp.c): with every handler wrapped, a run is counted and
	 * the wait needs nothing more: it spins and sleeps with signals let in. */
	unsigned sum = xp_sig_summary();
	bool counted = (sum & XP_SIGK_WRAPPED) && !w->spin_masked;
	if (counted && ran_ends(w))
		return -EINTR;
	if (now < w->spin_until) { /* XTCP_SPIN_US: busy-poll before sleeping */
		int r = 0;
		xp_unlock();
		if (counted) {
			/* nothing held: a handler's run shows at the next turn */
		} else if (!w->spin_masked) {
			sigset_t all;
			sigfillset(&all);
			pthread_sigmask(SIG_SETMASK, &all, &w->spin_old);
			w->spin_masked = true;
		} else if ((++w->spin_iter & 15) == 0) {
			sigset_t pend;
			sigemptyset(&pend);
			sigpending(&pend);
			if (lets_in(&pend, &w->spin_old) && spin_release(w))
				r = -EINTR;
		}
		if (r == 0)
			__builtin_ia32_pause();
		xp_lock();
		xp_drive(xp_clock());
		return r;
	}
	if (w->spin_masked) { /* the spin is over: the caller looks once more */
		xp_unlock();
		bool intr = spin_release(w);
		xp_lock();
		xp_drive(xp_clock());
		return intr ? -EINTR : 0;
	}
	int r = th_setup();
	if (r < 0) {
		XP_LOG(XP_LOG_ERROR, "waiting thread: %s", strerror(-r));
		return r;
	}
	if (!arm_nic(now))
		return 0;
	xt_time_t dl = next_deadline();
	if (w->deadline < dl)
		dl = w->deadline;

	struct xp_waiter me = { .evfd = th.evfd };
	if (w->s)
		waiter_add(w->s, &me);
	if (xp_eng.wake_fd >= 0)
		__atomic_add_fetch(&xp_eng.nic_waiters, 1, __ATOMIC_RELAXED);
	xp_unlock();

	/* Signals: the sleep is the kernel's ppoll under the thread's own mask
	 * when a handler's run is counted, or when every handler agrees on
	 * SA_RESTART (an EINTR then means that a handler ran, and which one does
	 * not matter); otherwise every signal is blocked around the sleep, a
	 * signalfd watches the ones the thread lets in, and what is pending
	 * says which came. */
	unsigned kind = sum & XP_SIGK_KIND;
	bool exact = !counted && kind == XP_SIGK_MIXED;
	sigset_t all, old, pend;
	if (exact) {
		sigfillset(&all);
		pthread_sigmask(SIG_SETMASK, &all, &old);
		/* the signalfd watches what this thread normally lets in */
		sigset_t want;
		/* glibc's sigfillset/sigemptyset touch only the first 8 bytes of the
		 * 128-byte sigset_t: clear it all, or the comparison below sees stack
		 * garbage and calls signalfd() on every wait. */
		memset(&want, 0, sizeof(want));
		sigfillset(&want);
		for (int sig = 1; sig < NSIG; sig++)
			if (sigismember(&old, sig))
				sigdelset(&want, sig);
		if (memcmp(&want, &th.sigfd_mask, sizeof(want)) != 0) {
			th.sigfd_mask = want;
			(void)signalfd(th.sigfd, &th.sigfd_mask, 0);
		}
	}

	struct pollfd p[4];
	int n = 0, sigp = -1;
	p[n++] = (struct pollfd){ .fd = th.evfd, .events = POLLIN };
	if (exact) {
		sigp = n;
		p[n++] = (struct pollfd){ .fd = th.sigfd, .events = POLLIN };
	}
	if (xp_eng.wake_fd >= 0)
		p[n++] = (struct pollfd){ .fd = xp_eng.wake_fd, .events = POLLIN };
	if (w->extra_fd >= 0)
		p[n++] = (struct pollfd){ .fd = w->extra_fd, .events = POLLIN };
	struct timespec ts, *tsp = NULL;
	if (timeout_ms_until(dl, now, &ts) == 0)
		tsp = &ts;
	else if (xp_eng.wake_fd < 0) {
		ts.tv_sec = 0;
		ts.tv_nsec = 1000000;
		tsp = &ts;
	}

	struct wait_cleanup cl = { .w = w, .me = &me, .old = &old, .masked = exact };
	int pr;
	pthread_cleanup_push(wait_cancelled, &cl);
	pr = xp_real.ppoll(p, (nfds_t)n, tsp, NULL); /* a cancellation point */
	pthread_cleanup_pop(0);
	int perr = errno;

	bool intr = false;
	if (exact) {
		if ((pr > 0 && (p[sigp].revents & POLLIN)) || (pr < 0 && perr == EINTR)) {
			sigemptyset(&pend);
			sigpending(&pend);
			intr = interrupts(&pend, &old, w->restartable);
		}
		pthread_sigmask(SIG_SETMASK, &old, NULL); /* handlers run here */
	} else if (counted && xp_sig_ran != w->ran0) {
		intr = ran_ends(w);
	} else if (pr < 0 && perr == EINTR) {
		/* a handler ran in ppoll: glibc's own (SA_RESTART), or (not
		 * counted) one of the program's, all of one kind */
		intr = !w->restartable || (!counted && kind == XP_SIGK_NORESTART);
		xp_sig_changed(); /* one set behind our back may have changed */
	}
	if (pr > 0 && (p[0].revents & POLLIN)) {
		uint64_t v;
		(void)syscall(SYS_read, th.evfd, &v, sizeof(v));
	}

	xp_lock();
	if (w->s)
		waiter_del(w->s, &me);
	if (xp_eng.wake_fd >= 0)
		nic_waiter_leave();
	xp_drive(xp_clock());
	return intr ? -EINTR : 0;
}

int xp_wait(struct xp_wait *w)
{
	int r = wait_turn(w);
	if (r < 0)
		w->ended = true; /* the deadline, or a signal */
	return r;
}
