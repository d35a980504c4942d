/* libxtcp.so internals: the LD_PRELOAD interposition layer.
 *
 * Files:
 *   real.c      the libc functions we interpose, found with dlsym(RTLD_NEXT)
 *   config.c    XTCP_* environment and the log
 *   fdtab.c     fd -> struct xp_sock table (lock-free lookups) and socket objects
 *   engine.c    the one engine per process: NIC, lock, progress thread, waits
 *   sock.c      socket life: socket/bind/listen/accept/connect/shutdown/close/dup
 *   io.c        send/recv families, readv/writev, sendfile, mmsg
 *   opts.c      setsockopt/getsockopt, fcntl, ioctl
 *   tcpinfo.c   TCP_INFO in Linux's layout
 *   uaccess.c   user-pointer checks (EFAULT instead of a crash)
 *   intercept.c the exported libc symbols
 *
 * Rules: errno is set only in intercept.c (everything below returns negative
 * errno values); the engine is touched only with xp_eng.mu held; a call on an
 * fd we do not own goes to the real libc function untouched.
 */
#ifndef XP_SHIM_H
#define XP_SHIM_H

#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <poll.h>
#include <sys/epoll.h>
#include <sys/select.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <sys/uio.h>

#include "../stack/xtcp.h"
#include "../nic/nic.h"

#define XP_LIKELY(x) __builtin_expect(!!(x), 1)
#define XP_UNLIKELY(x) __builtin_expect(!!(x), 0)
#define XP_TLS __thread __attribute__((tls_model("initial-exec")))

/* --- real.c ------------------------------------------------------------- */

struct mmsghdr;
struct xp_real {
	int (*socket)(int, int, int);
	int (*socketpair)(int, int, int, int[2]);
	int (*bind)(int, const struct sockaddr *, socklen_t);
	int (*listen)(int, int);
	int (*accept)(int, struct sockaddr *, socklen_t *);
	int (*accept4)(int, struct sockaddr *, socklen_t *, int);
	int (*connect)(int, const struct sockaddr *, socklen_t);
	int (*getsockname)(int, struct sockaddr *, socklen_t *);
	int (*getpeername)(int, struct sockaddr *, socklen_t *);
	int (*setsockopt)(int, int, int, const void *, socklen_t);
	int (*getsockopt)(int, int, int, void *, socklen_t *);
	int (*shutdown)(int, int);
	int (*close)(int);
	ssize_t (*read)(int, void *, size_t);
	ssize_t (*readv)(int, const struct iovec *, int);
	ssize_t (*write)(int, const void *, size_t);
	ssize_t (*writev)(int, const struct iovec *, int);
	ssize_t (*recv)(int, void *, size_t, int);
	ssize_t (*recvfrom)(int, void *, size_t, int, struct sockaddr *, socklen_t *);
	ssize_t (*recvmsg)(int, struct msghdr *, int);
	int (*recvmmsg)(int, struct mmsghdr *, unsigned int, int, struct timespec *);
	ssize_t (*send)(int, const void *, size_t, int);
	ssize_t (*sendto)(int, const void *, size_t, int, const struct sockaddr *, socklen_t);
	ssize_t (*sendmsg)(int, const struct msghdr *, int);
	int (*sendmmsg)(int, struct mmsghdr *, unsigned int, int);
	ssize_t (*sendfile)(int, int, off_t *, size_t);
	ssize_t (*sendfile64)(int, int, off_t *, size_t);
	int (*fcntl)(int, int, ...);
	int (*fcntl64)(int, int, ...);
	int (*ioctl)(int, unsigned long, ...);
	int (*dup)(int);
	int (*dup2)(int, int);
	int (*dup3)(int, int, int);
	int (*close_range)(unsigned int, unsigned int, int);
	void (*closefrom)(int);
	ssize_t (*read_chk)(int, void *, size_t, size_t);
	ssize_t (*recv_chk)(int, void *, size_t, size_t, int);
	ssize_t (*recvfrom_chk)(int, void *, size_t, size_t, int, struct sockaddr *, socklen_t *);
	/* mux.c */
	int (*epoll_create)(int);
	int (*epoll_create1)(int);
	int (*epoll_ctl)(int, int, int, struct epoll_event *);
	int (*epoll_wait)(int, struct epoll_event *, int, int);
	int (*epoll_pwait)(int, struct epoll_event *, int, int, const sigset_t *);
	int (*epoll_pwait2)(int, struct epoll_event *, int, const struct timespec *, const sigset_t *);
	int (*poll)(struct pollfd *, unsigned long, int);
	int (*ppoll)(struct pollfd *, unsigned long, const struct timespec *, const sigset_t *);
	int (*select)(int, fd_set *, fd_set *, fd_set *, struct timeval *);
	int (*pselect)(int, fd_set *, fd_set *, fd_set *, const struct timespec *, const sigset_t *);
	/* leaving the process image: intercept.c */
	void (*exit_)(int);
	void (*Exit_)(int);
	int (*execve)(const char *, char *const[], char *const[]);
	int (*execv)(const char *, char *const[]);
	int (*execvp)(const char *, char *const[]);
	int (*execvpe)(const char *, char *const[], char *const[]);
	int (*fexecve)(int, char *const[], char *const[]);
	/* signal dispositions: sigdisp.c */
	int (*sigaction)(int, const struct sigaction *, struct sigaction *);
	__sighandler_t (*sigset)(int, __sighandler_t);
	/* children made without the atfork handlers: fork.c */
	int (*clone)(int (*)(void *), void *, int, void *, ...);
	pid_t (*Fork_)(void);
};
extern struct xp_real xp_real;
extern atomic_int xp_real_ready;
/* Resolves every pointer once; returns -1 when called re-entrantly (from
 * inside dlsym), in which case the caller uses the raw system call. */
int xp_real_init(void);

/* A symbol libxtcp.so exports (libxtcp.map lists them). */
#define XP_EXPORT __attribute__((visibility("default")))

/* In an interposed function: returns fallback when the real one cannot be
 * resolved (from inside dlsym). */
#define ENSURE(field, fallback)                                                             \
	do {                                                                                \
		if (XP_UNLIKELY(!xp_real.field) && (xp_real_init() < 0 || !xp_real.field)) \
			return (fallback);                                                  \
	} while (0)

/* >0 while this thread runs library code that may call interposed symbols
 * (the backend, libc helpers): such calls go straight to the kernel. */
extern XP_TLS int xp_in_lib;

/* --- config.c ----------------------------------------------------------- */

enum xp_log_level { XP_LOG_ERROR, XP_LOG_WARN, XP_LOG_INFO, XP_LOG_DEBUG };
enum xp_nic_kind { XP_NIC_PACKET, XP_NIC_AUTO, XP_NIC_KERNEL, XP_NIC_VERBS };

struct xp_config {
	char iface[64];
	uint32_t ip, netmask, gw; /* host order */
	int prefix;
	uint8_t mac[6];
	bool have_mac;
	int nic;
	uint32_t rcvbuf, sndbuf, somaxconn, max_sockets;
	uint64_t spin_ns;       /* XTCP_SPIN_US: the busy-poll period, or its ceiling when auto */
	bool spin_auto;         /* XTCP_SPIN_US=auto[:N]: adaptive, see xp_spin_until() */
	uint64_t kpoll_ns;      /* XTCP_KERNEL_POLL_US: see mux.c's ep_collect() */
	uint64_t exit_drain_ns; /* XTCP_EXIT_DRAIN_MS */
	bool tx_batch;          /* XTCP_TX_BATCH: a send leaves its frames for the next call */
	bool sendfile_direct;   /* XTCP_SENDFILE_DIRECT: sendfile reads cached bytes into the send buffer */
	bool tso;               /* XTCP_TSO: segments of up to 64 KiB, cut by the kernel/NIC */
	bool rx_zerocopy;       /* XTCP_RX_ZEROCOPY: reads copy from the NIC's frames */
	bool tx_zerocopy;       /* XTCP_TX_ZEROCOPY: the verbs NIC sends from the send buffers */
};
extern struct xp_config xp_cfg;
extern int xp_log_level;
/* Reads every XTCP_* variable; returns 0, or -1 after one log line (then
 * everything stays on the kernel). *off is set when XTCP_IFACE is unset or
 * XTCP_NIC=kernel (not an error). */
int xp_config_load(bool *off);
/* XTCP_SPIN_US=auto's ceiling. */
#define XP_SPIN_AUTO_MAX_US 20
void xp_log(int level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
#define XP_LOG(lvl, ...)                                   \
	do {                                               \
		if (XP_UNLIKELY((lvl) <= xp_log_level))    \
			xp_log((lvl), __VA_ARGS__);        \
	} while (0)

/* --- fdtab.c: sockets and the fd table ------------------------------------ */

enum xp_mode {
	XP_UNDECIDED, /* only the kernel fd exists; options replayed there */
	XP_ENGINE,    /* an engine socket exists: the engine owns the traffic */
	XP_KERNEL,    /* handed to the kernel: every call goes to the real function */
};

/* Linux's struct socket state (SS_*), kept here because the engine only
 * knows the TCP state (sk_state). */
enum xp_ss { XP_SS_UNCONNECTED, XP_SS_CONNECTING, XP_SS_CONNECTED, XP_SS_DISCONNECTING };

struct xp_waiter {
	struct xp_waiter *next, *prev;
	int evfd;
	bool signalled;
};

/* A kernel-level option set on the socket, replayed onto the placeholder fd
 * of every socket accepted from it (Linux children inherit options). */
#define XP_OPTREC_MAX 24
#define XP_OPTVAL_MAX 64
struct xp_optrec {
	int level, name;
	socklen_t len;
	uint8_t val[XP_OPTVAL_MAX];
};

/* One open socket description (what dup'ed fds share).  Memory is never
 * returned to malloc: a racing lookup may touch a dead object, which the
 * reference count (0 = dead) tells apart. */
struct xp_sock {
	atomic_int refs;     /* fd table entries + calls in flight */
	atomic_int mode;     /* enum xp_mode */
	int esock;           /* engine handle, -1 if none (guarded by the engine lock) */
	int ss;              /* enum xp_ss */
	atomic_bool nonblock;/* O_NONBLOCK of the open file description */
	atomic_bool ph_shared;/* accepted: the fd is a dup of a shared placeholder (sock.c) */
	bool bound_any;      /* bound to INADDR_ANY: the kernel fd is bound too */
	bool bound;
	bool listening;
	bool klisten;        /* the kernel fd listens too (dual listen on INADDR_ANY) */
	bool shut_wr;        /* for the EPIPE of a send on a never-connected socket */
	uint16_t port;       /* bound port, host order */
	uint64_t rcvtimeo_ns, sndtimeo_ns; /* 0 = none */
	int linger;          /* seconds, -1 = off */
	int eopt[XT_OPT_MAX];/* engine options set before the engine socket exists */
	uint32_t eopt_set;   /* bit per enum xt_opt */
	char cc_name[16];    /* TCP_CONGESTION as set; "" = default */
	int nopt;
	struct xp_optrec opt[XP_OPTREC_MAX];
	struct xp_waiter *waiters; /* threads blocked on this socket (engine lock) */
	int flow;            /* NIC steering rule (steer.c), 0: none (engine lock) */
	pthread_mutex_t kaccept_mu;/* dual listen: serialises kernel accepts */
	struct xp_sock *free_next;
	struct xp_epoll *ep; /* mux.c: this fd table entry is an epoll fd (mode XP_KERNEL) */
	struct xp_epi *epis; /* mux.c: the epoll entries of this socket (engine lock) */
};

struct xp_sock *xp_sock_new(void); /* refs = 1 */
void xp_sock_get_ref(struct xp_sock *s);
/* Drops one reference; the last one releases the engine socket. */
void xp_sock_put(struct xp_sock *s);
/* Lookup with a reference taken, or NULL: lock-free. */
struct xp_sock *xp_fd_get(int fd);
/* Cheap test, no reference. */
bool xp_fd_maybe_ours(int fd);
/* Installs s at fd (taking a reference); returns the socket that was there (its
 * reference now the caller's) or NULL. */
struct xp_sock *xp_fd_set(int fd, struct xp_sock *s);
struct xp_sock *xp_fd_clear(int fd);
/* close_range/closefrom: forgets every fd in [lo, hi]. */
void xp_fd_clear_range(unsigned int lo, unsigned int hi);
int xp_fdtab_init(void);

/* --- engine.c ---------------------------------------------------------- */

enum xp_eng_state { XP_ENG_UNINIT, XP_ENG_READY, XP_ENG_OFF };

struct xp_engine {
	pthread_mutex_t mu;
	atomic_int state;
	struct xt_stack *st;
	struct xt_nic *nic;
	int wake_fd;   /* the NIC's, or -1 */
	int prog_evfd; /* wakes the progress thread */
	xt_time_t now; /* time of the drive in progress, for the tx callback */
	pthread_t prog;
	bool forked_child; /* this process is a fork child: the engine is not ours */
	int nic_waiters;   /* threads blocked in xp_wait on the NIC's wake fd */
	uint64_t prog_wake_at; /* when the sleeping progress thread looks again (ns) */
	uint64_t app_calls;  /* xp_lock()s, i.e. calls from the application (engine lock held) */
	uint32_t local_ips[64]; /* the kernel's own IPv4 addresses (host order) */
	int nlocal;
	const char *backend;
};
extern struct xp_engine xp_eng;

/* Lazily attaches the NIC on the first AF_INET stream socket; true if the
 * engine is usable. */
bool xp_engine_ready(void);
void xp_lock(void);
/* Unlocks; first hands the engine's queued frames to the NIC. */
void xp_unlock(void);
/* Unlocks at the end of a call that does not wait (a send, a read, a close,
 * shutdown, a socket option): with XTCP_TX_BATCH the frames it queued may
 * stay queued until a call waits or looks for events (epoll, poll, select, a
 * blocking call), so an event loop's round leaves in one send to the NIC, or
 * until the progress thread looks, within XP_PROG_LEASE.  When the progress
 * thread sleeps longer than that they go out now. */
void xp_unlock_lazy(void);
/* Before _exit or exec*: the frames calls left queued (XTCP_TX_BATCH) go to
 * the NIC now, as the kernel would have sent them already.  Skipped when the
 * engine lock is held (a signal handler) or in a vfork child. */
void xp_flush_before_leaving(void);
xt_time_t xp_now(void);
/* Engine time for a call into the engine: engine lock held. */
xt_time_t xp_clock(void);
/* Receives and processes frames, runs due timers (engine lock held). */
void xp_drive(xt_time_t now);
/* Can the engine carry traffic to dst (host order)? */
bool xp_engine_serves(uint32_t dst);
bool xp_is_local_kernel_addr(uint32_t ip);

/* A blocking call's wait: created by the caller, reused across iterations. */
struct xp_wait {
	struct xp_sock *s;
	uint64_t timeo_ns;   /* SO_RCVTIMEO/SO_SNDTIMEO/linger, 0: none */
	uint64_t deadline;   /* absolute ns, UINT64_MAX: none (set by the first wait) */
	uint64_t spin_until; /* (set by the first wait) */
	bool spin;           /* busy-poll first (XTCP_SPIN_US) */
	bool restartable;    /* SA_RESTART restarts it (no timeout set) */
	bool put_on_cancel;  /* the caller's reference on s goes if the thread is cancelled */
	int extra_fd;        /* a kernel fd to watch for POLLIN too (dual listen), or -1 */
	bool started;
	bool ended;          /* xp_wait returned -EAGAIN or -EINTR */
	uint64_t t0;         /* when the first wait began */
	bool spin_masked;    /* spinning with every signal held; spin_old: the thread's mask */
	unsigned spin_iter;
	unsigned ran0, nr0;  /* xp_sig_ran, xp_sig_ran_norestart when the call began */
	sigset_t spin_old;
};
void xp_wait_init(struct xp_wait *w, struct xp_sock *s, uint64_t timeo_ns, bool restartable);
/* With the engine lock held: sleeps until the socket may have changed, the
 * deadline or a signal.  Returns 0 (look again), -EAGAIN (deadline passed),
 * -EINTR (interrupted by a handler, not to be restarted).  Returns with the
 * lock held and the engine driven at the current time.  While it spins
 * (XTCP_SPIN_US) with a handler installed that sigdisp.c could not wrap,
 * every signal stays held between calls: the caller ends every wait it
 * began with xp_wait_done, engine lock not held. */
int xp_wait(struct xp_wait *w);
void xp_wait_done(struct xp_wait *w);
/* Busy polling (XTCP_SPIN_US) for a call that may sleep, begun at now:
 * until when it polls before it sleeps (0: it does not); and, once it ends,
 * how long it waited and whether for an event (not a timeout or a signal),
 * from which XTCP_SPIN_US=auto learns the calling thread's next period. */
uint64_t xp_spin_until(uint64_t now);
void xp_spin_learn(uint64_t waited_ns, bool event);

/* --- sigdisp.c: the program's signal handlers ------------------------------ */

/* What the process's handlers have in common (xp_sig_summary): */
enum {
	XP_SIGK_RESTART = 0,   /* every handler has SA_RESTART (or there is none) */
	XP_SIGK_NORESTART = 1, /* handlers, none with SA_RESTART */
	XP_SIGK_MIXED = 2,     /* some with, some without */
	XP_SIGK_KIND = 3,
	XP_SIGK_WRAPPED = 4,   /* every handler counts its runs (below) */
};
unsigned xp_sig_summary(void);
/* A disposition may have changed behind the interposed calls (a raw
 * rt_sigaction): reads every signal's action from the kernel again. */
void xp_sig_changed(void);
/* Handler runs in this thread, all and those without SA_RESTART. */
extern XP_TLS volatile unsigned xp_sig_ran, xp_sig_ran_norestart;

/* --- steer.c: the NIC backend and flow steering ----------------------------- */

/* Opens the backend XTCP_NIC names on XTCP_IFACE (auto: verbs, then
 * packet).  Returns the nic, or NULL.  *why gets one line naming the
 * backends tried, why each failed and the choice ("" when the configured
 * backend simply worked), to be logged at *level.  The verbs backend without
 * XTCP_IP fills in xp_cfg.ip/netmask/prefix/gw from the interface. */
struct xt_nic *xp_nic_open(char *why, size_t len, int *level);
/* Engine lock held from here on. */
void xp_nic_seed_neighbours(void); /* verbs: the kernel's neighbours into the engine */
void xp_flow_listen(struct xp_sock *s); /* rule for a listening socket */
void xp_flow_conn(struct xp_sock *s);   /* rule for a connection's 5-tuple */
/* Drops s's rule: now (listener, failed or aborted connection), or once the
 * engine has forgotten the connection (FIN, TIME_WAIT still to come). */
void xp_flow_release(struct xp_sock *s, bool now);
void xp_flow_sweep(xt_time_t now);
xt_time_t xp_flow_deadline(void);
/* Frames sent between hold and release wait (copied) until the rule of the
 * connection being opened is in place; only when the NIC steers flows. */
void xp_tx_hold(void);
void xp_tx_release(void);
bool xp_tx_holding(void);
int xp_tx_held(const struct xt_frame *frames, int n);

/* --- sock.c ------------------------------------------------------------ */

int xp_socket(int domain, int type, int protocol);
int xp_bind(int fd, struct xp_sock *s, const struct sockaddr *addr, socklen_t len);
int xp_listen(int fd, struct xp_sock *s, int backlog);
int xp_accept(int fd, struct xp_sock *s, struct sockaddr *addr, socklen_t *len, int flags);
int xp_connect(int fd, struct xp_sock *s, const struct sockaddr *addr, socklen_t len);
int xp_getname(int fd, struct xp_sock *s, struct sockaddr *addr, socklen_t *len, int peer);
int xp_shutdown(int fd, struct xp_sock *s, int how);
int xp_close(int fd);
int xp_dup_install(int oldfd, int newfd);
/* Accepted connections' placeholders: each fd is a dup of one of two
 * unconnected template sockets (blocking, non-blocking) that nothing ever
 * changes, until a call would change it (see sock.c). */
extern atomic_int xp_ph_tmpl[2];
/* Before a call that would change fd's kernel socket or open file
 * description (setsockopt, fcntl, ioctl, dup, disconnect): a socket of its
 * own in place of the shared template.  0 or -errno. */
int xp_ph_own(int fd, struct xp_sock *s);
/* F_SETFL / FIONBIO that change only O_NONBLOCK: the other template.
 * 1 if fd was not sharing one (the caller makes the real call). */
int xp_ph_setnb(int fd, struct xp_sock *s, bool nb);
/* dup, dup2, dup3, F_DUPFD of fd: it gets a socket of its own first, so the
 * copies share a description nobody else has. */
void xp_ph_before_dup(int fd);
void xp_ph_fork_child(void); /* atfork child handler */
/* The program closed or replaced fd (close, dup2/dup3 onto it,
 * close_range, closefrom): a template there is forgotten. */
void xp_ph_lost(unsigned int lo, unsigned int hi);
static inline void xp_ph_closed(unsigned int lo, unsigned int hi)
{
	int a = atomic_load_explicit(&xp_ph_tmpl[0], memory_order_relaxed);
	int b = atomic_load_explicit(&xp_ph_tmpl[1], memory_order_relaxed);
	if (XP_UNLIKELY((a >= 0 && (unsigned int)a >= lo && (unsigned int)a <= hi) ||
			(b >= 0 && (unsigned int)b >= lo && (unsigned int)b <= hi)))
		xp_ph_lost(lo, hi);
}
/* Counters for xtcp-stat: accepts given a shared placeholder, and the
 * placeholders that became sockets of their own. */
extern atomic_ulong xp_ph_shared_n, xp_ph_own_n;
/* sendfile's bytes: read straight into the send buffer, or through a bounce buffer (io.c) */
extern atomic_ulong xp_sendfile_direct_n, xp_sendfile_bounce_n;
/* Makes the engine socket exist (UNDECIDED -> ENGINE); engine lock held. */
int xp_engine_socket(struct xp_sock *s);
/* Hands an undecided socket to the kernel for good. */
void xp_handoff(struct xp_sock *s, const char *why);

/* --- io.c -------------------------------------------------------------- */

ssize_t xp_recv(struct xp_sock *s, const struct iovec *iov, int iovcnt, int flags);
ssize_t xp_send(struct xp_sock *s, const struct iovec *iov, int iovcnt, int flags, bool is_write);
ssize_t xp_sendfile(struct xp_sock *s, int in_fd, off_t *offset, size_t count);

/* --- opts.c ------------------------------------------------------------ */

int xp_setsockopt(int fd, struct xp_sock *s, int level, int name, const void *val, socklen_t len);
int xp_getsockopt(int fd, struct xp_sock *s, int level, int name, void *val, socklen_t *len);
int xp_fcntl(int fd, struct xp_sock *s, int cmd, long arg, bool is64);
void xp_refresh_shared(int fd, struct xp_sock *s);
int xp_ioctl(int fd, struct xp_sock *s, unsigned long req, void *arg);
/* Replays the recorded kernel options of from onto kernel fd kfd. */
void xp_opts_replay(const struct xp_sock *from, int kfd);
void xp_opts_apply_engine(struct xp_sock *s);
int xp_tcp_info(int fd, struct xp_sock *s, void *val, socklen_t *len);

/* --- uaccess.c --------------------------------------------------------- */

/* 0 if [p, p+n) can be read / written by this process, else -EFAULT. */
int xp_check_read(const void *p, size_t n);
int xp_check_write(void *p, size_t n);
/* Copies n bytes from user memory, -EFAULT on a bad pointer. */
int xp_copy_in(void *dst, const void *usrc, size_t n);
/* Copies a sockaddr out with Linux's length rules (min(*ulen, len) bytes,
 * *ulen = len); -EFAULT, -EINVAL on a negative *ulen. */
int xp_put_addr(struct sockaddr *uaddr, socklen_t *ulen, const struct sockaddr_in *sin);

/* --- mux.c: epoll, poll, select -------------------------------------------- */

struct xp_epoll; /* one epoll open file description (dups share it) */
struct xp_epi;   /* an engine socket's entry in an epoll set */

/* eng_event (engine lock held): the socket's XT_EV_* mask is now events. */
void xp_mux_event(struct xp_sock *s, uint32_t events);
/* The last reference to s is gone (no lock held): an epoll set is freed, a
 * socket leaves every set it is in (Linux: the last close removes it). */
void xp_mux_release(struct xp_sock *s);
/* xp_handoff (engine lock held): the socket's entries become registrations
 * of its kernel fd in the kernel epoll of each set. */
void xp_mux_handoff(struct xp_sock *s);
/* A new kernel epoll fd: wrapped unless the engine is off.  Returns fd. */
int xp_epoll_wrap(int fd);
int xp_epoll_ctl(int epfd, int op, int fd, struct epoll_event *uev);
/* Counts the calls by which this process may have made a kernel fd ready
 * itself (a write, send, close, dup2, shutdown or connect on a kernel fd, an
 * epoll_ctl of one, an exposed epoll set's own eventfd): a quiet set's epoll_wait
 * looks at its kernel fds again after any of them (see ep_collect()). */
extern uint64_t xp_kgen;
extern bool xp_kquiet; /* some set has been quiet: until then nothing counts */
static inline void xp_kgen_bump(void)
{
	/* a shared cache line: written only once a set may skip a look */
	if (__atomic_load_n(&xp_kquiet, __ATOMIC_ACQUIRE))
		__atomic_add_fetch(&xp_kgen, 1, __ATOMIC_RELEASE);
}
/* Engine lock held: epoll_wait's looks at kernel fds, and the looks a
 * quiet set left out (xtcp-stat's epoll_kernel_looks, epoll_kernel_skips). */
void xp_mux_counters(uint64_t *looks, uint64_t *skips);
/* tmo: NULL = no timeout. */
int xp_epoll_wait(int epfd, struct epoll_event *uev, int max, const struct timespec *tmo,
		  const sigset_t *sigmask);
/* The syscall a poll-family wrapper stands for, used untouched when no fd is ours. */
enum xp_pkind { XP_POLL, XP_PPOLL, XP_SELECT, XP_PSELECT };
struct xp_pcall {
	enum xp_pkind kind;
	int ms;                      /* poll */
	const struct timespec *ts;   /* ppoll, pselect (NULL: none) */
	struct timeval *tv;          /* select (NULL: none; written back) */
	const sigset_t *sigmask;     /* ppoll, pselect */
};
int xp_poll(struct pollfd *ufds, nfds_t n, const struct xp_pcall *c);
int xp_select(int nfds, fd_set *r, fd_set *w, fd_set *e, const struct xp_pcall *c);

/* engine.c helpers for mux.c */
int xp_thread_evfd(void); /* this thread's wake eventfd, or -errno */
void xp_waiter_add(struct xp_sock *s, struct xp_waiter *w);
void xp_waiter_del(struct xp_sock *s, struct xp_waiter *w);
void xp_nic_sleep_enter(void); /* engine lock held: arms the NIC, counts a NIC waiter */
void xp_nic_sleep_leave(void); /* engine lock held */

static inline int xp_ret(long r)
{
	if (r < 0) {
		errno = (int)-r;
		return -1;
	}
	return (int)r;
}

/* --- rules.c: offload rules and observability settings ------------------ */

struct xp_obs_config {
	char pcap[256];          /* XTCP_PCAP, "" = no capture */
	uint64_t pcap_max_bytes; /* XTCP_PCAP_SIZE_MB (0: no limit) */
	uint32_t pcap_files;     /* XTCP_PCAP_FILES */
	bool exit_summary;       /* XTCP_EXIT_SUMMARY=1 */
	bool stat_off;           /* XTCP_STAT=0: no statistics segment */
	const char *stat_dir;    /* XTCP_STAT_DIR, NULL = /dev/shm */
};
extern struct xp_obs_config xp_obs;
/* From xp_config_load: reads the rules and the settings above; -1 after one
 * log line (everything stays on the kernel); *off when program rules keep
 * this process on the kernel. */
int xp_rules_load(bool *off);
/* Where sock.c decides, and what ip/port then are: the address and port of
 * bind(), the port of listen(), the destination of connect(). */
enum xp_rule_at { XP_AT_BIND, XP_AT_LISTEN, XP_AT_CONNECT };
/* The reason (the rule's text, kept forever) when the first matching rule
 * sends the socket to the kernel; NULL otherwise. */
const char *xp_rules_kernel(int at, uint32_t ip, uint16_t port);
int xp_rules_count(void);
/* config.c's parsers for the variables of other files: same rules, same
 * error line ("every socket stays on the kernel"). */
int xp_config_num(const char *var, uint64_t min, uint64_t max, uint64_t *out);
int xp_config_bad(const char *var, const char *val, const char *why);

/* --- fork.c: fork, vfork, daemon, exec ----------------------------------- */

/* At attach: the family's shared table (inherited by fork, not by exec). */
void xp_fork_init(void);
/* The engine's cfg.syn_owner: does this process take the new connection? */
int xp_fork_syn_owner(void *ctx, uint32_t lip, uint16_t lport, uint32_t rip, uint16_t rport);
/* Hooks: listen() succeeded; accept()/accept4() on a listener, or the
 * listener is polled by epoll/poll/select (mux.c: call it whenever a
 * listening socket is waited on; repeated calls are cheap); a listener goes. */
void xp_fork_listening(struct xp_sock *s);
void xp_fork_accepting(struct xp_sock *s);
bool xp_fork_is_accepting(const struct xp_sock *s);
void xp_fork_hear(void);
xt_time_t xp_fork_idle_check(xt_time_t now);
void xp_fork_unlisten(struct xp_sock *s);
/* atfork child handler (engine lock held). */
void xp_fork_child(void);
/* A child's first engine call: its own NIC queue and threads.  True when the
 * engine is usable (always, outside a fork child). */
bool xp_fork_attach(void);
/* In a vfork child (our memory shared with the parent)?  A system call. */
bool xp_fork_in_vfork(void);
/* fdtab.c, stats.c: their leaf locks, held across fork() (atfork handlers). */
void xp_fdtab_fork_lock(void);
void xp_fdtab_fork_unlock(void);
void xp_stats_fork_lock(void);
void xp_stats_fork_unlock(void);
extern atomic_int xp_pid_may_differ; /* vfork/clone/_Fork was called: check the pid */
void xp_fork_family_on(void);
extern atomic_int *xp_fam_active; /* the table's flag: a child has attached */
extern bool xp_fam_on;            /* this engine is in family mode */
extern pid_t xp_fork_pid;         /* the process whose memory this is */
/* engine.c for fork.c: a NIC queue, eventfds and a progress thread for the
 * engine copy of a child; the dead parent threads' per-thread state. */
int xp_engine_reopen(void);
void xp_thread_forget(void);
/* The AF_PACKET socket made for the child at fork time, or -1. */
enum { XP_PKT_MAIN, XP_PKT_BIG, XP_PKT_TSO };
int xp_fork_packet_fd(int which);
/* The progress thread also polls this fd (POLLIN; -1: none) and then calls
 * xp_fork_rendezvous(): a new engine on our address asks for the family. */
int xp_fork_rendezvous_fd(void);
void xp_fork_rendezvous(void);

#endif
