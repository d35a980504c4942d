/* fork, vfork, daemon and exec: families of processes behind one engine
 * address (man/libxtcp.7, FORK AND EXEC).
 *
 * After fork() the child's engine is a copy of the parent's.  The child
 * (atfork handler, xp_fork_child) forgets every connection of the copy at
 * once: they are the parent's, and the child's descriptors for them become
 * plain unconnected kernel sockets.  Listeners stay.  The child also lets go
 * of its copy of the NIC (the AF_PACKET rings are memory shared with the
 * parent: it unmaps them and closes its descriptor, touching nothing) and of
 * the parent's eventfds.  Its first socket call (xp_fork_attach) opens a NIC
 * queue of its own, new eventfds and a progress thread: a child that never
 * touches a socket (redis' BGSAVE, fork+exec) costs nothing more.
 *
 * Every process of the family has its own AF_PACKET socket and therefore
 * sees every frame for the address.  From the moment a child attaches, the
 * family is "active" (a flag in the shared table below) and every engine of
 * it is in family mode (xt_stack_set_family): segments for connections it
 * does not have are another process's, counted as drop_tcp_family and never
 * answered with RST.  Which process takes a new connection is decided by
 * xp_fork_syn_owner(), the engine's syn_owner callback, which every process
 * evaluates identically from a table in a MAP_SHARED anonymous mapping made
 * at attach (so it is inherited by fork, not by exec):
 *
 *   one 64-bit slot per (pid, listening port): pid << 32 | port << 8 | flags
 *     HOLD      the process has the listener in a working engine
 *     ACCEPTING it called accept()/accept4() on it, or polled it
 *               (xp_fork_accepting, the hook for epoll/poll/select)
 *     CREATOR   it called listen() (for the record: xtcp-stat, debugging)
 *
 * The SYN goes to the ACCEPTING member a hash of the 4-tuple names (slot
 * order is the same for everybody); with none, to a lone holder, else to
 * nobody (see xp_fork_syn_owner).  A member found dead
 * (pidfd readable: exited, zombie or not; or no such pid) is removed from
 * the table by whoever notices, and the choice is made again.  Slots change
 * with single compare-and-swaps, so a process killed at any point leaves the
 * table consistent.
 *
 * vfork: the child shares our memory until it execs, and atfork handlers do
 * not run.  Calls that would change the fd table (close, dup2, socket,
 * close_range) check the pid (xp_fork_in_vfork) and then go to the kernel
 * only, so the parent's table is never touched.  The same holds for a child
 * of clone() without CLONE_THREAD and of _Fork() (a copy of our memory, made
 * without the atfork handlers).  getpid is a system call (about 1 us here,
 * and nginx closes two descriptors per request), so the pid is checked only
 * once the process has made such a child: the interposed vfork, __vfork,
 * clone and _Fork set xp_pid_may_differ first.  (A child made with a raw
 * syscall(SYS_vfork / SYS_clone / SYS_clone3) is not seen; glibc's
 * posix_spawn, system and popen make theirs with internal calls that never
 * reach this library.)
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <net/if.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <poll.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/un.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "shim.h"
#include "stats.h"
#include "packet.h"

#ifndef SYS_pidfd_open
#define SYS_pidfd_open 434
#endif

#define FAM_SLOTS 1024
#define F_HOLD 1u
#define F_ACCEPTING 2u
#define F_CREATOR 4u
#define FAM_MAGIC 0x78746366u /* "xtcf" */

struct fam_tab {
	uint32_t magic;
	atomic_int active; /* a child attached: every engine in family mode */
	_Atomic uint64_t slot[FAM_SLOTS];
};

static struct fam_tab *fam;
atomic_int *xp_fam_active;
bool xp_fam_on;
pid_t xp_fork_pid;

/* Ports this process registered as accepting (cheap repeat hooks). */
static uint8_t acc_done[65536 / 8];
/* Listening ports the child keeps, to register once attached. */
static uint16_t kept_ports[256];
static int nkept;
static pthread_mutex_t attach_mu = PTHREAD_MUTEX_INITIALIZER;
/* An AF_PACKET socket made in the atfork handler, while the child still has
 * the parent's privileges: a child that drops them (nginx workers setuid to
 * nobody) before its first socket call can still open its queue. */
static int pre_fds[3] = { -1, -1, -1 }; /* XP_PKT_MAIN, XP_PKT_BIG, XP_PKT_TSO */
static pthread_mutex_t reg_mu = PTHREAD_MUTEX_INITIALIZER;
static bool attach_failed;

static inline uint64_t key_of(pid_t pid, uint16_t port, uint32_t flags)
{
	return (uint64_t)(uint32_t)pid << 32 | (uint64_t)port << 8 | flags;
}
static inline pid_t key_pid(uint64_t k) { return (pid_t)(k >> 32); }
static inline uint16_t key_port(uint64_t k) { return (uint16_t)(k >> 8); }
static inline uint32_t key_flags(uint64_t k) { return (uint32_t)(k & 0xff); }

/* --- finding the family: an abstract unix socket per address ------------------
 *
 * The table lives in a memfd.  The first engine on an interface and address
 * binds the abstract name below (per network namespace, gone with the last
 * descriptor, no file left behind) and the progress threads of the family
 * answer whoever connects with the memfd (SCM_RIGHTS).  So a program exec'd
 * with LD_PRELOAD still set, or any other process of the namespace that
 * attaches to the same address, joins the family instead of resetting its
 * connections: it maps the same table and turns family mode on for all. */

static int rv_fd = -1;     /* the listening rendezvous socket, if we hold the name */
static int fam_memfd = -1; /* the table's memfd (passed on; close-on-exec) */

static socklen_t rv_name(struct sockaddr_un *a)
{
	memset(a, 0, sizeof(*a));
	a->sun_family = AF_UNIX;
	int n = snprintf(a->sun_path + 1, sizeof(a->sun_path) - 1, "xtcp-family-%u-%08x",
			 if_nametoindex(xp_cfg.iface), xp_cfg.ip);
	return (socklen_t)(offsetof(struct sockaddr_un, sun_path) + 1 + (size_t)n);
}

static struct fam_tab *map_table(int fd)
{
	void *m = mmap(NULL, sizeof(struct fam_tab), PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	return m == MAP_FAILED ? NULL : m;
}

/* Connects to the family's name and receives its table; NULL if nobody
 * answers.  *exists: somebody holds the name. */
static struct fam_tab *rv_join(bool *exists)
{
	struct sockaddr_un a;
	socklen_t alen = rv_name(&a);
	int s = (int)syscall(SYS_socket, AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
	*exists = false;
	if (s < 0)
		return NULL;
	struct timeval tv = { 1, 0 }; /* a progress thread answers at once */
	(void)syscall(SYS_setsockopt, s, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	if (syscall(SYS_connect, s, &a, alen) < 0) {
		*exists = errno != ECONNREFUSED && errno != ENOENT;
		(void)syscall(SYS_close, s);
		return NULL;
	}
	*exists = true;
	char b;
	struct iovec iov = { &b, 1 };
	union {
		struct cmsghdr h;
		char buf[CMSG_SPACE(sizeof(int))];
	} u;
	struct msghdr m = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = u.buf, .msg_controllen = sizeof(u.buf) };
	long r = syscall(SYS_recvmsg, s, &m, MSG_CMSG_CLOEXEC);
	(void)syscall(SYS_close, s);
	struct cmsghdr *c = r > 0 ? CMSG_FIRSTHDR(&m) : NULL;
	if (!c || c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS)
		return NULL;
	int fd;
	memcpy(&fd, CMSG_DATA(c), sizeof(fd));
	struct fam_tab *t = map_table(fd);
	if (!t || t->magic != FAM_MAGIC) {
		if (t)
			munmap(t, sizeof(*t));
		(void)syscall(SYS_close, fd);
		return NULL;
	}
	fam_memfd = fd;
	return t;
}

/* A new table, and the name if it is free. */
static struct fam_tab *rv_create(void)
{
	struct fam_tab *t = NULL;
	int fd = (int)syscall(SYS_memfd_create, "xtcp-family", MFD_CLOEXEC);
	if (fd >= 0 && syscall(SYS_ftruncate, fd, (long)sizeof(struct fam_tab)) == 0)
		t = map_table(fd);
	if (!t) {
		if (fd >= 0)
			(void)syscall(SYS_close, fd);
		return NULL;
	}
	fam_memfd = fd;
	t->magic = FAM_MAGIC;
	struct sockaddr_un a;
	socklen_t alen = rv_name(&a);
	int s = (int)syscall(SYS_socket, AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (s >= 0 && syscall(SYS_bind, s, &a, alen) == 0 && syscall(SYS_listen, s, 64) == 0)
		rv_fd = s;
	else if (s >= 0)
		(void)syscall(SYS_close, s);
	return t;
}

void xp_fork_init(void)
{
	xp_fork_pid = (pid_t)syscall(SYS_getpid);
	if (fam)
		return; /* inherited by fork */
	bool exists = false, joined = false;
	for (int tries = 0; tries < 3 && !fam; tries++) {
		fam = rv_join(&exists);
		joined = fam != NULL;
		if (!fam && !exists) {
			fam = rv_create();
			if (fam && rv_fd < 0) { /* somebody bound the name meanwhile */
				munmap(fam, sizeof(*fam));
				(void)syscall(SYS_close, fam_memfd);
				fam_memfd = -1;
				fam = NULL;
			}
		}
	}
	if (!fam) {
		/* nobody answers for the name, or no memfd: a table of our own */
		fam = rv_create();
		if (!fam) {
			XP_LOG(XP_LOG_WARN, "fork table: %s; a forked child will leave its sockets to the kernel",
			       strerror(errno));
			return;
		}
	}
	xp_fam_active = &fam->active;
	if (joined || exists) {
		/* another engine runs on this address: neither may reset the
		 * other's connections */
		atomic_store(&fam->active, 1);
		XP_LOG(XP_LOG_INFO, "another engine serves %s on this address: %s",
		       xp_cfg.iface, joined ? "joined its family" : "it did not answer; no RST to unknown segments");
	}
}

int xp_fork_rendezvous_fd(void)
{
	return rv_fd;
}

/* Progress thread: hands the table to each newcomer. */
void xp_fork_rendezvous(void)
{
	for (;;) {
		int c = (int)syscall(SYS_accept4, rv_fd, NULL, NULL, SOCK_CLOEXEC);
		if (c < 0)
			return;
		char b = 'x';
		struct iovec iov = { &b, 1 };
		union {
			struct cmsghdr h;
			char buf[CMSG_SPACE(sizeof(int))];
		} u;
		memset(&u, 0, sizeof(u));
		struct msghdr m = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = u.buf,
				    .msg_controllen = sizeof(u.buf) };
		struct cmsghdr *h = CMSG_FIRSTHDR(&m);
		h->cmsg_level = SOL_SOCKET;
		h->cmsg_type = SCM_RIGHTS;
		h->cmsg_len = CMSG_LEN(sizeof(int));
		memcpy(CMSG_DATA(h), &fam_memfd, sizeof(int));
		(void)syscall(SYS_sendmsg, c, &m, MSG_NOSIGNAL | MSG_DONTWAIT);
		(void)syscall(SYS_close, c);
	}
}

/* --- children made without the atfork handlers ------------------------------ */

atomic_int xp_pid_may_differ;

bool xp_fork_in_vfork(void)
{
	if (XP_LIKELY(!atomic_load_explicit(&xp_pid_may_differ, memory_order_relaxed)))
		return false;
	return xp_fork_pid && (pid_t)syscall(SYS_getpid) != xp_fork_pid;
}

/* libc's vfork, for the stub below (which calls this only before the real
 * vfork, in the parent, with no frame of its own left when it jumps). */
__attribute__((used)) static void *vfork_next;

__attribute__((used)) static void *vfork_resolve(void)
{
	void *f = dlsym(RTLD_NEXT, "vfork");
	if (!f)
		f = dlsym(RTLD_NEXT, "fork"); /* POSIX allows vfork to be fork */
	__atomic_store_n(&vfork_next, f, __ATOMIC_RELEASE);
	return f;
}

/* vfork and __vfork: set the flag, then jump (not call) to libc's vfork.
 * The child returns from libc's vfork straight to our caller, on the stack
 * it shares with the suspended parent; a C wrapper's frame would be popped
 * by the child and then overwritten before the parent returns through it.
 * The flag is a plain store: the child shares the memory, and the parent's
 * other threads read it with the relaxed load above. */
#if defined(__x86_64__)
__asm__(".text\n"
	".globl vfork\n"
	".type vfork, @function\n"
	".globl __vfork\n"
	".type __vfork, @function\n"
	"vfork:\n"
	"__vfork:\n"
	"	endbr64\n"
	"	movl $1, xp_pid_may_differ(%rip)\n"
	"	movq vfork_next(%rip), %rax\n"
	"	testq %rax, %rax\n"
	"	jz 1f\n"
	"	jmp *%rax\n"
	"1:	subq $8, %rsp\n"
	"	call vfork_resolve\n"
	"	addq $8, %rsp\n"
	"	testq %rax, %rax\n"
	"	jz 2f\n"
	"	jmp *%rax\n"
	"2:	movl $58, %eax\n" /* SYS_vfork, if libc has neither: as glibc does, */
	"	popq %rdi\n"      /* keep the return address out of the shared stack */
	"	syscall\n"
	"	pushq %rdi\n"
	"	cmpq $-4095, %rax\n"
	"	jae 3f\n"
	"	ret\n"
	"3:	movl $-1, %eax\n" /* errno is not set on this last-resort path */
	"	ret\n"
	".size vfork, .-vfork\n"
	".size __vfork, .-__vfork\n");
#else
/* Elsewhere vfork is not interposed: the pid is always checked. */
__attribute__((constructor)) static void pid_always_checked(void)
{
	atomic_store(&xp_pid_may_differ, 1);
}
#endif

__attribute__((visibility("default"))) int clone(int (*fn)(void *), void *stack, int flags, void *arg, ...)
{
	va_list ap;
	va_start(ap, arg);
	pid_t *ptid = va_arg(ap, pid_t *);
	void *tls = va_arg(ap, void *);
	pid_t *ctid = va_arg(ap, pid_t *);
	va_end(ap);
	if (!(flags & CLONE_THREAD))
		atomic_store(&xp_pid_may_differ, 1);
	if ((xp_real_init() < 0 || !xp_real.clone)) {
		errno = ENOSYS;
		return -1;
	}
	return xp_real.clone(fn, stack, flags, arg, ptid, tls, ctid);
}

__attribute__((visibility("default"))) pid_t _Fork(void)
{
	atomic_store(&xp_pid_may_differ, 1);
	if (xp_real_init() == 0 && xp_real.Fork_)
		return xp_real.Fork_();
	return (pid_t)syscall(SYS_clone, SIGCHLD, 0, 0, 0, 0);
}

/* --- the table ------------------------------------------------------------ */

/* Adds and removes flags on this process's slot for port; a slot whose flags
 * become 0 is freed.  reg_mu keeps this process's threads from making two
 * slots for one port; other processes only ever touch their own slots,
 * except to free those of the dead. */
static void slot_update(uint16_t port, uint32_t add, uint32_t del)
{
	if (!fam)
		return;
	pid_t me = xp_fork_pid;
	pthread_mutex_lock(&reg_mu);
	for (int i = 0; i < FAM_SLOTS; i++) {
		uint64_t k = atomic_load(&fam->slot[i]);
		if (!k || key_pid(k) != me || key_port(k) != port)
			continue;
		for (;;) {
			uint32_t f = (key_flags(k) | add) & ~del;
			uint64_t n = f ? key_of(me, port, f) : 0;
			if (atomic_compare_exchange_weak(&fam->slot[i], &k, n))
				break;
		}
		pthread_mutex_unlock(&reg_mu);
		return;
	}
	if (add) {
		for (int i = 0; i < FAM_SLOTS; i++) {
			uint64_t zero = 0;
			if (atomic_compare_exchange_strong(&fam->slot[i], &zero, key_of(me, port, add))) {
				pthread_mutex_unlock(&reg_mu);
				return;
			}
		}
		static bool said;
		if (!said) {
			said = true;
			xp_log(XP_LOG_WARN, "fork table full (%d listeners of the family): port %u "
					    "taken by every member", FAM_SLOTS, port);
		}
	}
	pthread_mutex_unlock(&reg_mu);
}

/* Has pid exited?  A pidfd is readable once the process is gone, zombie or
 * not (a plain kill(pid, 0) would call a zombie alive). */
static bool pid_dead(pid_t pid)
{
	if (pid == xp_fork_pid)
		return false;
	int fd = (int)syscall(SYS_pidfd_open, pid, 0);
	if (fd < 0) {
		if (errno == ESRCH)
			return true;
		return syscall(SYS_kill, pid, 0) < 0 && errno == ESRCH;
	}
	struct pollfd p = { .fd = fd, .events = POLLIN };
	struct timespec zero = { 0, 0 };
	long r = syscall(SYS_ppoll, &p, 1, &zero, NULL, sizeof(sigset_t));
	(void)syscall(SYS_close, fd);
	return r > 0 && (p.revents & POLLIN);
}

static void forget_pid(pid_t pid)
{
	for (int i = 0; i < FAM_SLOTS; i++) {
		uint64_t k = atomic_load(&fam->slot[i]);
		while (k && key_pid(k) == pid && !atomic_compare_exchange_weak(&fam->slot[i], &k, 0))
			;
	}
	XP_LOG(XP_LOG_DEBUG, "fork table: process %d is gone", (int)pid);
}

static uint32_t tuple_hash(uint32_t rip, uint16_t rport, uint16_t lport)
{
	uint32_t h = rip * 0x9e3779b1u ^ ((uint32_t)rport << 16 | lport) * 0x85ebca6bu;
	h ^= h >> 15;
	h *= 0xc2b2ae35u;
	h ^= h >> 13;
	return h;
}

/* The engine's syn_owner callback (engine lock held): does this process take
 * the connection?  Same inputs, same answer in every process.
 *
 * Among the members accepting on the port, the one the 4-tuple's hash names.
 * While nobody accepts on it, a lone holder takes it (a process whose
 * children all exited, a daemon whose parent left); with several holders
 * nobody does: the SYN is dropped and its retransmission comes back once a
 * member accepts.  Handing it to the process that called listen() instead
 * would strand connections in a pre-fork parent that never accepts. */
int xp_fork_syn_owner(void *ctx, uint32_t lip, uint16_t lport, uint32_t rip, uint16_t rport)
{
	(void)ctx;
	(void)lip;
	if (!fam)
		return 1;
	for (int round = 0; round < 16; round++) {
		pid_t acc[64], hold[64];
		int na = 0, nh = 0;
		for (int i = 0; i < FAM_SLOTS; i++) {
			uint64_t k = atomic_load_explicit(&fam->slot[i], memory_order_relaxed);
			if (!k || key_port(k) != lport || !(key_flags(k) & F_HOLD))
				continue;
			if ((key_flags(k) & F_ACCEPTING) && na < 64)
				acc[na++] = key_pid(k);
			if (nh < 64)
				hold[nh++] = key_pid(k);
		}
		if (!nh)
			return 1; /* nobody registered (table full): take it */
		if (na) {
			pid_t owner = acc[(uint64_t)tuple_hash(rip, rport, lport) * (uint32_t)na >> 32];
			if (owner == xp_fork_pid)
				return 1;
			if (!pid_dead(owner))
				return 0;
			forget_pid(owner);
			continue;
		}
		bool pruned = false;
		for (int i = 0; i < nh && !pruned; i++)
			if (pid_dead(hold[i])) {
				forget_pid(hold[i]);
				pruned = true;
			}
		if (!pruned)
			return nh == 1 && hold[0] == xp_fork_pid;
	}
	return 0;
}

/* --- a member with nothing to do with TCP ------------------------------------
 *
 * Every member's packet socket takes in every frame for the address: under
 * nginx, the master (which never accepts) would parse all of its workers'
 * traffic.  A member with no connection of its own (xt_stack_has_conns), that
 * accepts on no port and holds no port that no other live member accepts
 * on (where it may be the lone holder that takes the SYNs) turns TCP off
 * in its socket filter (xt_packet_set_tcp); ARP and ICMP still come.  It
 * turns TCP on again before anything that can start a connection of its
 * own (accept() or a wait on a listener, connect(), listen()), and its
 * progress thread looks again every XP_DEAF_CHECK (a member gone, a
 * connection come). */

#define XP_DEAF_CHECK XT_MS(500)
static xt_time_t deaf_checked;

/* Engine lock held: is TCP off in this process's NIC?  (A fork child's
 * NIC, opened when it attaches, takes TCP in.) */
static bool deaf(void)
{
	return xp_eng.nic && !xt_packet_tcp_on(xp_nic_base(xp_eng.nic));
}

/* Engine lock held. */
static void set_tcp(bool on)
{
	if (!xp_eng.nic || deaf() == !on)
		return;
	if (xt_packet_set_tcp(xp_nic_base(xp_eng.nic), on) != 0)
		return; /* another backend, or the filter stays as it was */
	XP_LOG(XP_LOG_DEBUG, on ? "fork: TCP frames taken in again"
				: "fork: no connection of its own and accepting nowhere: the family's "
				  "TCP frames are no longer taken in");
}

/* Engine lock held: before this process may start a connection. */
void xp_fork_hear(void)
{
	if (XP_UNLIKELY(deaf()))
		set_tcp(true);
}

static bool someone_else_accepts(uint16_t port)
{
	for (int i = 0; i < FAM_SLOTS; i++) {
		uint64_t k = atomic_load_explicit(&fam->slot[i], memory_order_relaxed);
		if (k && key_port(k) == port && key_pid(k) != xp_fork_pid &&
		    (key_flags(k) & (F_HOLD | F_ACCEPTING)) == (F_HOLD | F_ACCEPTING) && !pid_dead(key_pid(k)))
			return true;
	}
	return false;
}

static bool idle_member(void)
{
	if (!fam || !xp_fam_on || !xp_eng.st || !xp_eng.nic || xt_stack_nsockets(xp_eng.st) > 64 ||
	    xt_stack_has_conns(xp_eng.st))
		return false;
	for (int i = 0; i < FAM_SLOTS; i++) {
		uint64_t k = atomic_load_explicit(&fam->slot[i], memory_order_relaxed);
		if (!k || key_pid(k) != xp_fork_pid)
			continue;
		if (key_flags(k) & F_ACCEPTING)
			return false;
		if ((key_flags(k) & F_HOLD) && !someone_else_accepts(key_port(k)))
			return false;
	}
	return true;
}

/* Progress thread, engine lock held: when to look again (XT_TIME_NEVER
 * while TCP is on: the thread runs often enough when frames come). */
xt_time_t xp_fork_idle_check(xt_time_t now)
{
	if (XP_LIKELY(!xp_fam_on) && !deaf())
		return XT_TIME_NEVER;
	if (now >= deaf_checked + XP_DEAF_CHECK) {
		deaf_checked = now;
		set_tcp(!idle_member());
	}
	return deaf() ? deaf_checked + XP_DEAF_CHECK : XT_TIME_NEVER;
}

/* --- hooks from sock.c and mux.c --------------------------------------------- */

void xp_fork_listening(struct xp_sock *s)
{
	xp_fork_hear(); /* it may be the port's lone holder */
	if (s->listening)
		slot_update(s->port, F_HOLD | F_CREATOR, 0);
}

bool xp_fork_is_accepting(const struct xp_sock *s)
{
	return !fam || (__atomic_load_n(&acc_done[s->port >> 3], __ATOMIC_RELAXED) & (1u << (s->port & 7)));
}

/* Engine lock held. */
void xp_fork_accepting(struct xp_sock *s)
{
	if (!fam || !s->listening)
		return;
	uint16_t port = s->port;
	uint8_t bit = (uint8_t)(1u << (port & 7));
	if (__atomic_load_n(&acc_done[port >> 3], __ATOMIC_RELAXED) & bit)
		return;
	__atomic_fetch_or(&acc_done[port >> 3], bit, __ATOMIC_RELAXED);
	xp_fork_hear(); /* before the family hashes SYNs to it */
	slot_update(port, F_HOLD | F_ACCEPTING, 0);
}

void xp_fork_unlisten(struct xp_sock *s)
{
	if (!fam || !s->listening)
		return;
	__atomic_fetch_and(&acc_done[s->port >> 3], (uint8_t)~(1u << (s->port & 7)), __ATOMIC_RELAXED);
	slot_update(s->port, 0, F_HOLD | F_ACCEPTING | F_CREATOR);
}

/* --- the child --------------------------------------------------------------- */

static void child_each(void *ctx, int sock, void *udata, int kept)
{
	(void)ctx;
	(void)sock;
	struct xp_sock *s = udata;
	s->waiters = NULL; /* threads of the parent: none here */
	if (kept) {
		if (nkept < (int)(sizeof(kept_ports) / sizeof(kept_ports[0])))
			kept_ports[nkept++] = s->port;
		return;
	}
	/* The parent's connection: the descriptor is its placeholder kernel
	 * socket from now on (unconnected: ENOTCONN, EPIPE, POLLHUP). */
	s->esock = -1;
	atomic_store(&s->mode, XP_KERNEL);
}

/* atfork child handler (engine lock held, one thread). */
void xp_fork_child(void)
{
	xp_fork_pid = (pid_t)syscall(SYS_getpid);
	xp_ph_fork_child();
	pthread_mutex_init(&attach_mu, NULL);
	pthread_mutex_init(&reg_mu, NULL);
	memset(acc_done, 0, sizeof(acc_done));
	xp_fam_on = false;
	deaf_checked = 0;
	nkept = 0;
	xp_thread_forget();
	if (!xp_eng.st)
		return; /* nothing attached yet: the child attaches as any process */
	xp_eng.forked_child = true;
	xt_stack_forget_connections(xp_eng.st, child_each, NULL);
	xt_stack_set_family(xp_eng.st, 0);
	if (xp_eng.nic) {
		xt_nic_close(xp_eng.nic); /* our copy only: unmaps, closes our fd */
		xp_eng.nic = NULL;
	}
	xp_eng.wake_fd = -1;
	if (xp_eng.prog_evfd >= 0)
		(void)syscall(SYS_close, xp_eng.prog_evfd);
	xp_eng.prog_evfd = -1;
	xp_eng.nic_waiters = 0;
	xp_eng.prog_wake_at = 0;
	if (!fam || !xp_eng.backend || strcmp(xp_eng.backend, "packet") != 0) {
		attach_failed = true; /* no family: the kernel has every socket */
		atomic_store(&xp_eng.state, XP_ENG_OFF);
		return;
	}
	for (int i = 0; i < 3; i++)
		pre_fds[i] = (int)syscall(SYS_socket, AF_PACKET, SOCK_RAW | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
}

/* A socket made at fork (which: XP_PKT_*), if the program has not closed it
 * (or reused its number) since; -1 otherwise. */
int xp_fork_packet_fd(int which)
{
	int fd = pre_fds[which], dom = 0, proto = -1;
	socklen_t l = sizeof(dom);
	pre_fds[which] = -1;
	if (fd < 0)
		return -1;
	if (syscall(SYS_getsockopt, fd, SOL_SOCKET, SO_DOMAIN, &dom, &l) < 0 || dom != AF_PACKET)
		return -1;
	l = sizeof(proto);
	if (syscall(SYS_getsockopt, fd, SOL_SOCKET, SO_PROTOCOL, &proto, &l) < 0 || proto != 0)
		return -1; /* not ours any more: leave it alone */
	return fd;
}

/* The first socket call of a child: a NIC queue, eventfds and a progress
 * thread of its own; then it is a member of the family.  True when the
 * engine is usable. */
bool xp_fork_attach(void)
{
	if (!xp_eng.forked_child)
		return true;
	if (attach_failed || xp_fork_in_vfork())
		return false;
	pthread_mutex_lock(&attach_mu);
	if (xp_eng.forked_child && !attach_failed) {
		/* family mode before the first frame: the parent's segments must
		 * never be answered with RST */
		pthread_mutex_lock(&xp_eng.mu);
		atomic_store(&fam->active, 1);
		xt_stack_set_family(xp_eng.st, 1);
		xp_fam_on = true;
		xt_stack_reseed_ports(xp_eng.st, (uint64_t)xp_fork_pid << 32 ^ xp_now());
		pthread_mutex_unlock(&xp_eng.mu);
		xp_in_lib++;
		int r = xp_engine_reopen();
		xp_in_lib--;
		if (r < 0) {
			attach_failed = true;
			atomic_store(&xp_eng.state, XP_ENG_OFF);
		} else {
			for (int i = 0; i < nkept; i++)
				slot_update(kept_ports[i], F_HOLD, 0);
			XP_LOG(XP_LOG_INFO, "fork: process %d attached its own NIC queue (%d listeners kept)",
			       (int)xp_fork_pid, nkept);
		}
	}
	pthread_mutex_unlock(&attach_mu);
	return !xp_eng.forked_child;
}

/* Engine lock held: a child attached somewhere in the family. */
void xp_fork_family_on(void)
{
	xt_stack_set_family(xp_eng.st, 1);
	xp_fam_on = true;
	XP_LOG(XP_LOG_DEBUG, "fork: family mode (segments of unknown connections are not reset)");
}
