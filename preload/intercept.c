/* The exported libc symbols.  Each one: calls from inside the library, and
 * fds that are not ours, go to the real function untouched; ours go to
 * sock.c / io.c / opts.c, and errno is set here from their negative return.
 * Before the real functions are known (inside dlsym) the raw system call is
 * used. */
#define _GNU_SOURCE
#include <alloca.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/sendfile.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "shim.h"

extern void __chk_fail(void) __attribute__((noreturn));

/* A socket of ours that is not (or no longer) the kernel's; reference taken. */
static inline struct xp_sock *ours(int fd)
{
	if (XP_LIKELY(xp_in_lib || !xp_fd_maybe_ours(fd)))
		return NULL;
	struct xp_sock *s = xp_fd_get(fd);
	if (s && (atomic_load(&s->mode) == XP_KERNEL ||
		  (XP_UNLIKELY(xp_eng.forked_child) && !xp_fork_attach()))) {
		/* a fork child's copy of a connection: the kernel's from now
		 * on, so not the template every placeholder shares */
		if (XP_UNLIKELY(atomic_load_explicit(&s->ph_shared, memory_order_relaxed)))
			(void)xp_ph_own(fd, s);
		xp_sock_put(s);
		return NULL;
	}
	return s;
}

/* Ours and on the engine (data calls); an undecided socket is an unconnected
 * kernel socket, which the real call handles exactly. */
static inline struct xp_sock *eng(int fd)
{
	struct xp_sock *s = ours(fd);
	if (s && atomic_load(&s->mode) != XP_ENGINE) {
		xp_sock_put(s);
		return NULL;
	}
	return s;
}

/* After a call on a kernel fd that may have made one ready (xp_kgen); not
 * for the backend's own sends (xp_in_lib). */
static inline void kbump(void)
{
	if (!xp_in_lib)
		xp_kgen_bump();
}

static long done(struct xp_sock *s, long r)
{
	xp_sock_put(s);
	if (r < 0) {
		errno = (int)-r;
		return -1;
	}
	return r;
}

/* --- creation and addresses ------------------------------------------------ */

XP_EXPORT int socket(int domain, int type, int protocol)
{
	ENSURE(socket, syscall(SYS_socket, domain, type, protocol));
	if (xp_in_lib || domain != AF_INET || (type & ~(SOCK_NONBLOCK | SOCK_CLOEXEC)) != SOCK_STREAM ||
	    (protocol != 0 && protocol != IPPROTO_TCP))
		return xp_real.socket(domain, type, protocol);
	return xp_ret(xp_socket(domain, type, protocol));
}

XP_EXPORT int socketpair(int domain, int type, int protocol, int sv[2])
{
	ENSURE(socketpair, syscall(SYS_socketpair, domain, type, protocol, sv));
	return xp_real.socketpair(domain, type, protocol, sv);
}

XP_EXPORT int bind(int fd, const struct sockaddr *addr, socklen_t len)
{
	ENSURE(bind, syscall(SYS_bind, fd, addr, len));
	struct xp_sock *s = ours(fd);
	if (!s)
		return xp_real.bind(fd, addr, len);
	return (int)done(s, xp_bind(fd, s, addr, len));
}

XP_EXPORT int listen(int fd, int backlog)
{
	ENSURE(listen, syscall(SYS_listen, fd, backlog));
	struct xp_sock *s = ours(fd);
	if (!s)
		return xp_real.listen(fd, backlog);
	return (int)done(s, xp_listen(fd, s, backlog));
}

XP_EXPORT int accept4(int fd, struct sockaddr *addr, socklen_t *len, int flags)
{
	ENSURE(accept4, syscall(SYS_accept4, fd, addr, len, flags));
	struct xp_sock *s = eng(fd);
	if (!s)
		return xp_real.accept4(fd, addr, len, flags);
	return (int)done(s, xp_accept(fd, s, addr, len, flags));
}

XP_EXPORT int accept(int fd, struct sockaddr *addr, socklen_t *len)
{
	ENSURE(accept, syscall(SYS_accept4, fd, addr, len, 0));
	struct xp_sock *s = eng(fd);
	if (!s)
		return xp_real.accept(fd, addr, len);
	return (int)done(s, xp_accept(fd, s, addr, len, 0));
}

XP_EXPORT int connect(int fd, const struct sockaddr *addr, socklen_t len)
{
	ENSURE(connect, syscall(SYS_connect, fd, addr, len));
	struct xp_sock *s = ours(fd);
	int r = s ? (int)done(s, xp_connect(fd, s, addr, len)) : xp_real.connect(fd, addr, len);
	kbump(); /* a kernel connect to a listener of this process (loopback) */
	return r;
}

XP_EXPORT int getsockname(int fd, struct sockaddr *addr, socklen_t *len)
{
	ENSURE(getsockname, syscall(SYS_getsockname, fd, addr, len));
	struct xp_sock *s = eng(fd);
	if (!s || s->esock < 0) {
		if (s)
			xp_sock_put(s);
		return xp_real.getsockname(fd, addr, len);
	}
	return (int)done(s, xp_getname(fd, s, addr, len, 0));
}

XP_EXPORT int getpeername(int fd, struct sockaddr *addr, socklen_t *len)
{
	ENSURE(getpeername, syscall(SYS_getpeername, fd, addr, len));
	struct xp_sock *s = eng(fd);
	if (!s || s->esock < 0) {
		if (s)
			xp_sock_put(s);
		return xp_real.getpeername(fd, addr, len);
	}
	return (int)done(s, xp_getname(fd, s, addr, len, 1));
}

XP_EXPORT int setsockopt(int fd, int level, int name, const void *val, socklen_t len)
{
	ENSURE(setsockopt, syscall(SYS_setsockopt, fd, level, name, val, len));
	struct xp_sock *s = ours(fd);
	if (!s)
		return xp_real.setsockopt(fd, level, name, val, len);
	return (int)done(s, xp_setsockopt(fd, s, level, name, val, len));
}

XP_EXPORT int getsockopt(int fd, int level, int name, void *val, socklen_t *len)
{
	ENSURE(getsockopt, syscall(SYS_getsockopt, fd, level, name, val, len));
	struct xp_sock *s = ours(fd);
	if (!s)
		return xp_real.getsockopt(fd, level, name, val, len);
	return (int)done(s, xp_getsockopt(fd, s, level, name, val, len));
}

XP_EXPORT int shutdown(int fd, int how)
{
	ENSURE(shutdown, syscall(SYS_shutdown, fd, how));
	struct xp_sock *s = eng(fd);
	if (!s || s->esock < 0) {
		if (s)
			xp_sock_put(s);
		int r = xp_real.shutdown(fd, how);
		kbump();
		return r;
	}
	return (int)done(s, xp_shutdown(fd, s, how));
}

/* --- close and dup ---------------------------------------------------------- */

XP_EXPORT int close(int fd)
{
	ENSURE(close, syscall(SYS_close, fd));
	if (XP_LIKELY(xp_in_lib || !xp_fd_maybe_ours(fd))) {
		int r = xp_real.close(fd);
		kbump(); /* a pipe's last write end: its read end is readable */
		if (fd >= 0)
			xp_ph_closed((unsigned)fd, (unsigned)fd);
		return r;
	}
	return xp_ret(xp_close(fd));
}

XP_EXPORT int dup(int fd)
{
	ENSURE(dup, syscall(SYS_dup, fd));
	xp_ph_before_dup(fd);
	int r = xp_real.dup(fd);
	if (r >= 0 && !xp_in_lib && (xp_fd_maybe_ours(fd) || xp_fd_maybe_ours(r)))
		xp_dup_install(fd, r);
	return r;
}

XP_EXPORT int dup2(int oldfd, int newfd)
{
	ENSURE(dup2, syscall(SYS_dup2, oldfd, newfd));
	if (oldfd != newfd)
		xp_ph_before_dup(oldfd);
	int r = xp_real.dup2(oldfd, newfd);
	if (r >= 0 && oldfd != newfd)
		xp_ph_closed((unsigned)newfd, (unsigned)newfd);
	if (r >= 0 && oldfd != newfd && !xp_in_lib && (xp_fd_maybe_ours(oldfd) || xp_fd_maybe_ours(newfd)))
		xp_dup_install(oldfd, newfd);
	kbump(); /* newfd, if open, was closed */
	return r;
}

XP_EXPORT int dup3(int oldfd, int newfd, int flags)
{
	ENSURE(dup3, syscall(SYS_dup3, oldfd, newfd, flags));
	if (oldfd != newfd)
		xp_ph_before_dup(oldfd);
	int r = xp_real.dup3(oldfd, newfd, flags);
	if (r >= 0)
		xp_ph_closed((unsigned)newfd, (unsigned)newfd);
	if (r >= 0 && !xp_in_lib && (xp_fd_maybe_ours(oldfd) || xp_fd_maybe_ours(newfd)))
		xp_dup_install(oldfd, newfd);
	kbump(); /* newfd, if open, was closed */
	return r;
}

#ifndef CLOSE_RANGE_CLOEXEC
#define CLOSE_RANGE_CLOEXEC (1U << 2)
#endif

XP_EXPORT int close_range(unsigned int first, unsigned int last, int flags)
{
	int r;
	if (xp_real_init() == 0 && xp_real.close_range)
		r = xp_real.close_range(first, last, flags);
	else
		r = (int)syscall(SYS_close_range, first, last, flags);
	if (r == 0 && !xp_in_lib && !(flags & CLOSE_RANGE_CLOEXEC)) {
		xp_fd_clear_range(first, last);
		xp_ph_closed(first, last);
	}
	kbump();
	return r;
}

XP_EXPORT void closefrom(int low)
{
	if (xp_real_init() == 0 && xp_real.closefrom)
		xp_real.closefrom(low);
	else
		(void)syscall(SYS_close_range, (unsigned)low, ~0u, 0);
	if (!xp_in_lib && low >= 0) {
		xp_fd_clear_range((unsigned)low, ~0u);
		xp_ph_closed((unsigned)low, ~0u);
	}
	kbump();
}

/* --- leaving the process image ----------------------------------------------- */

/* What calls left in the TX batch (XTCP_TX_BATCH: a reply, a FIN) would be
 * lost with the process image: out it goes first.  exit() sends it from the
 * library's destructor, which _exit and exec do not run.  (The variadic
 * execl family is built on the real execv/execvp/execve.) */
static __attribute__((noreturn)) void leave_now(int status, bool capital)
{
	xp_flush_before_leaving();
	if (xp_real_init() == 0) {
		void (*real)(int) = capital ? xp_real.Exit_ : xp_real.exit_;
		if (real)
			real(status);
	}
	for (;;)
		(void)syscall(SYS_exit_group, status);
}

XP_EXPORT void _exit(int status) { leave_now(status, false); }
XP_EXPORT void _Exit(int status) { leave_now(status, true); }

XP_EXPORT int execve(const char *path, char *const argv[], char *const envp[])
{
	xp_flush_before_leaving();
	if (xp_real_init() == 0 && xp_real.execve)
		return xp_real.execve(path, argv, envp);
	return (int)syscall(SYS_execve, path, argv, envp);
}

XP_EXPORT int execv(const char *path, char *const argv[])
{
	xp_flush_before_leaving();
	ENSURE(execv, -1);
	return xp_real.execv(path, argv);
}

XP_EXPORT int execvp(const char *file, char *const argv[])
{
	xp_flush_before_leaving();
	ENSURE(execvp, -1);
	return xp_real.execvp(file, argv);
}

XP_EXPORT int execvpe(const char *file, char *const argv[], char *const envp[])
{
	xp_flush_before_leaving();
	ENSURE(execvpe, -1);
	return xp_real.execvpe(file, argv, envp);
}

XP_EXPORT int fexecve(int fd, char *const argv[], char *const envp[])
{
	xp_flush_before_leaving();
	ENSURE(fexecve, -1);
	return xp_real.fexecve(fd, argv, envp);
}

/* argv of execl(path, arg0, ..., NULL) on the stack, counted as glibc
 * counts it (arg0, then up to the NULL). */
#define EXECL_ARGV(argv, arg0)                                                      \
	size_t n_ = 1;                                                              \
	va_list ap_;                                                                \
	va_start(ap_, arg0);                                                        \
	while (va_arg(ap_, char *))                                                 \
		n_++;                                                               \
	va_end(ap_);                                                                \
	char **argv = alloca((n_ + 1) * sizeof(char *));                            \
	argv[0] = (char *)(arg0);                                                   \
	va_start(ap_, arg0);                                                        \
	for (size_t i_ = 1; i_ <= n_; i_++) /* the NULL included */                \
		argv[i_] = va_arg(ap_, char *);

XP_EXPORT int execl(const char *path, const char *arg, ...)
{
	EXECL_ARGV(argv, arg)
	va_end(ap_);
	return execv(path, argv);
}

XP_EXPORT int execlp(const char *file, const char *arg, ...)
{
	EXECL_ARGV(argv, arg)
	va_end(ap_);
	return execvp(file, argv);
}

XP_EXPORT int execle(const char *path, const char *arg, ...)
{
	EXECL_ARGV(argv, arg)
	char *const *envp = va_arg(ap_, char *const *); /* after the NULL */
	va_end(ap_);
	return execve(path, argv, envp);
}

/* --- fcntl and ioctl -------------------------------------------------------- */

static int do_fcntl(int fd, int cmd, long arg, bool is64)
{
	struct xp_sock *s = ours(fd); /* a fork child's placeholder: its own now */
	if (!s) {
		int r = is64 ? xp_real.fcntl64(fd, cmd, arg) : xp_real.fcntl(fd, cmd, arg);
		if (r >= 0 && (cmd == F_DUPFD || cmd == F_DUPFD_CLOEXEC) && !xp_in_lib &&
		    (xp_fd_maybe_ours(fd) || xp_fd_maybe_ours(r))) /* an epoll fd, a handed-off socket */
			xp_dup_install(fd, r);
		return r;
	}
	return (int)done(s, xp_fcntl(fd, s, cmd, arg, is64));
}

XP_EXPORT int fcntl(int fd, int cmd, ...)
{
	va_list ap;
	va_start(ap, cmd);
	long arg = va_arg(ap, long);
	va_end(ap);
	ENSURE(fcntl, syscall(SYS_fcntl, fd, cmd, arg));
	return do_fcntl(fd, cmd, arg, false);
}

XP_EXPORT int fcntl64(int fd, int cmd, ...)
{
	va_list ap;
	va_start(ap, cmd);
	long arg = va_arg(ap, long);
	va_end(ap);
	ENSURE(fcntl64, syscall(SYS_fcntl, fd, cmd, arg));
	return do_fcntl(fd, cmd, arg, true);
}

XP_EXPORT int ioctl(int fd, unsigned long req, ...)
{
	va_list ap;
	va_start(ap, req);
	void *arg = va_arg(ap, void *);
	va_end(ap);
	ENSURE(ioctl, syscall(SYS_ioctl, fd, req, arg));
	struct xp_sock *s = ours(fd);
	if (!s)
		return xp_real.ioctl(fd, req, arg);
	return (int)done(s, xp_ioctl(fd, s, req, arg));
}

/* --- receive ------------------------------------------------------------------ */

/* Copies and checks a user iovec array as Linux's import_iovec(). */
static int get_iov(const struct iovec *uiov, int cnt, struct iovec *small, struct iovec **out)
{
	if (cnt < 0 || cnt > IOV_MAX)
		return -EINVAL;
	struct iovec *v = small;
	if (cnt > 8 && !(v = malloc(sizeof(*v) * (size_t)cnt)))
		return -ENOMEM;
	if (cnt && xp_copy_in(v, uiov, sizeof(*v) * (size_t)cnt) < 0) {
		if (v != small)
			free(v);
		return -EFAULT;
	}
	size_t total = 0;
	for (int i = 0; i < cnt; i++) {
		if (v[i].iov_len > SSIZE_MAX || total + v[i].iov_len > SSIZE_MAX) {
			if (v != small)
				free(v);
			return -EINVAL;
		}
		total += v[i].iov_len;
	}
	*out = v;
	return 0;
}

static void put_iov(struct iovec *v, struct iovec *small)
{
	if (v != small)
		free(v);
}

XP_EXPORT ssize_t read(int fd, void *buf, size_t n)
{
	ENSURE(read, syscall(SYS_read, fd, buf, n));
	struct xp_sock *s = eng(fd);
	if (XP_LIKELY(!s))
		return xp_real.read(fd, buf, n);
	if (n == 0) /* sock_read_iter: "Match SYS5 behaviour" */
		return done(s, 0);
	struct iovec v = { buf, n > SSIZE_MAX ? SSIZE_MAX : n };
	return done(s, xp_recv(s, &v, 1, 0));
}

XP_EXPORT ssize_t __read_chk(int fd, void *buf, size_t n, size_t buflen)
{
	if (n > buflen)
		__chk_fail();
	return read(fd, buf, n);
}

XP_EXPORT ssize_t readv(int fd, const struct iovec *iov, int cnt)
{
	ENSURE(readv, syscall(SYS_readv, fd, iov, cnt));
	struct xp_sock *s = eng(fd);
	if (!s)
		return xp_real.readv(fd, iov, cnt);
	struct iovec small[8], *v;
	int r = get_iov(iov, cnt, small, &v);
	if (r < 0)
		return done(s, r);
	size_t total = 0;
	for (int i = 0; i < cnt; i++)
		total += v[i].iov_len;
	ssize_t n = total ? xp_recv(s, v, cnt, 0) : 0;
	put_iov(v, small);
	return done(s, n);
}

XP_EXPORT ssize_t recv(int fd, void *buf, size_t n, int flags)
{
	ENSURE(recv, syscall(SYS_recvfrom, fd, buf, n, flags, NULL, NULL));
	struct xp_sock *s = eng(fd);
	if (XP_LIKELY(!s))
		return xp_real.recv(fd, buf, n, flags);
	struct iovec v = { buf, n > SSIZE_MAX ? SSIZE_MAX : n };
	return done(s, xp_recv(s, &v, 1, flags));
}

XP_EXPORT ssize_t __recv_chk(int fd, void *buf, size_t n, size_t buflen, int flags)
{
	if (n > buflen)
		__chk_fail();
	return recv(fd, buf, n, flags);
}

/* TCP reports no source address: *addrlen becomes 0 (move_addr_to_user). */
static long zero_addrlen(socklen_t *ulen)
{
	socklen_t l;
	if (xp_copy_in(&l, ulen, sizeof(l)) < 0)
		return -EFAULT;
	if ((int)l < 0)
		return -EINVAL;
	if (xp_check_write(ulen, sizeof(*ulen)) < 0)
		return -EFAULT;
	*ulen = 0;
	return 0;
}

XP_EXPORT ssize_t recvfrom(int fd, void *buf, size_t n, int flags, struct sockaddr *addr, socklen_t *alen)
{
	ENSURE(recvfrom, syscall(SYS_recvfrom, fd, buf, n, flags, addr, alen));
	struct xp_sock *s = eng(fd);
	if (XP_LIKELY(!s))
		return xp_real.recvfrom(fd, buf, n, flags, addr, alen);
	struct iovec v = { buf, n > SSIZE_MAX ? SSIZE_MAX : n };
	long r = xp_recv(s, &v, 1, flags);
	if (r >= 0 && addr) {
		long e = zero_addrlen(alen);
		if (e < 0)
			r = e;
	}
	return done(s, r);
}

XP_EXPORT ssize_t __recvfrom_chk(int fd, void *buf, size_t n, size_t buflen, int flags, struct sockaddr *addr,
				 socklen_t *alen)
{
	if (n > buflen)
		__chk_fail();
	return recvfrom(fd, buf, n, flags, addr, alen);
}

static long recvmsg_one(struct xp_sock *s, struct msghdr *umsg, int flags)
{
	struct msghdr m;
	if (xp_copy_in(&m, umsg, sizeof(m)) < 0)
		return -EFAULT;
	if (m.msg_iovlen > IOV_MAX)
		return -EMSGSIZE;
	struct iovec small[8], *v;
	long r = get_iov(m.msg_iov, (int)m.msg_iovlen, small, &v);
	if (r < 0)
		return r;
	r = xp_recv(s, v, (int)m.msg_iovlen, flags & ~MSG_CMSG_CLOEXEC);
	put_iov(v, small);
	if (r < 0)
		return r;
	if (xp_check_write(umsg, sizeof(*umsg)) < 0)
		return -EFAULT;
	umsg->msg_namelen = 0; /* TCP: no address */
	umsg->msg_controllen = 0;
	umsg->msg_flags = 0;
	return r;
}

XP_EXPORT ssize_t recvmsg(int fd, struct msghdr *msg, int flags)
{
	ENSURE(recvmsg, syscall(SYS_recvmsg, fd, msg, flags));
	struct xp_sock *s = eng(fd);
	if (!s)
		return xp_real.recvmsg(fd, msg, flags);
	return done(s, recvmsg_one(s, msg, flags));
}

XP_EXPORT int recvmmsg(int fd, struct mmsghdr *vec, unsigned int vlen, int flags, struct timespec *tmo)
{
	ENSURE(recvmmsg, syscall(SYS_recvmmsg, fd, vec, vlen, flags, tmo));
	struct xp_sock *s = eng(fd);
	if (!s)
		return xp_real.recvmmsg(fd, vec, vlen, flags, tmo);
	if (vlen > 1024)
		vlen = 1024;
	struct timespec t;
	uint64_t end = UINT64_MAX;
	if (tmo) {
		if (xp_copy_in(&t, tmo, sizeof(t)) < 0)
			return done(s, -EFAULT);
		if (t.tv_sec < 0 || t.tv_nsec < 0 || t.tv_nsec >= 1000000000)
			return done(s, -EINVAL);
		end = xp_now() + (uint64_t)t.tv_sec * 1000000000ull + (uint64_t)t.tv_nsec;
	}
	unsigned int i;
	long r = 0;
	for (i = 0; i < vlen; i++) {
		r = recvmsg_one(s, &vec[i].msg_hdr, flags & ~MSG_WAITFORONE);
		if (r < 0)
			break;
		if (xp_check_write(&vec[i].msg_len, sizeof(vec[i].msg_len)) < 0) {
			r = -EFAULT;
			break;
		}
		vec[i].msg_len = (unsigned int)r;
		if (flags & MSG_WAITFORONE)
			flags |= MSG_DONTWAIT;
		if (tmo && xp_now() >= end) {
			i++;
			break;
		}
	}
	return (int)done(s, i ? (long)i : r);
}

/* --- send ----------------------------------------------------------------------- */

XP_EXPORT ssize_t write(int fd, const void *buf, size_t n)
{
	ENSURE(write, syscall(SYS_write, fd, buf, n));
	struct xp_sock *s = eng(fd);
	if (XP_LIKELY(!s)) {
		ssize_t r = xp_real.write(fd, buf, n);
		kbump();
		return r;
	}
	struct iovec v = { (void *)buf, n > SSIZE_MAX ? SSIZE_MAX : n };
	return done(s, xp_send(s, &v, 1, 0, true));
}

XP_EXPORT ssize_t writev(int fd, const struct iovec *iov, int cnt)
{
	ENSURE(writev, syscall(SYS_writev, fd, iov, cnt));
	struct xp_sock *s = eng(fd);
	if (!s) {
		ssize_t r = xp_real.writev(fd, iov, cnt);
		kbump();
		return r;
	}
	struct iovec small[8], *v;
	int r = get_iov(iov, cnt, small, &v);
	if (r < 0)
		return done(s, r);
	ssize_t n = xp_send(s, v, cnt, 0, true);
	put_iov(v, small);
	return done(s, n);
}

XP_EXPORT ssize_t send(int fd, const void *buf, size_t n, int flags)
{
	ENSURE(send, syscall(SYS_sendto, fd, buf, n, flags, NULL, 0));
	struct xp_sock *s = eng(fd);
	if (XP_LIKELY(!s)) {
		ssize_t r = xp_real.send(fd, buf, n, flags);
		kbump();
		return r;
	}
	struct iovec v = { (void *)buf, n > SSIZE_MAX ? SSIZE_MAX : n };
	return done(s, xp_send(s, &v, 1, flags, false));
}

XP_EXPORT ssize_t sendto(int fd, const void *buf, size_t n, int flags, const struct sockaddr *addr,
			 socklen_t alen)
{
	ENSURE(sendto, syscall(SYS_sendto, fd, buf, n, flags, addr, alen));
	struct xp_sock *s = eng(fd);
	if (XP_LIKELY(!s)) {
		ssize_t r = xp_real.sendto(fd, buf, n, flags, addr, alen);
		kbump();
		return r;
	}
	/* TCP ignores the address of a connected socket */
	struct iovec v = { (void *)buf, n > SSIZE_MAX ? SSIZE_MAX : n };
	return done(s, xp_send(s, &v, 1, flags, false));
}

static long sendmsg_one(struct xp_sock *s, const struct msghdr *umsg, int flags)
{
	struct msghdr m;
	if (xp_copy_in(&m, umsg, sizeof(m)) < 0)
		return -EFAULT;
	if (m.msg_iovlen > IOV_MAX)
		return -EMSGSIZE;
	struct iovec small[8], *v;
	long r = get_iov(m.msg_iov, (int)m.msg_iovlen, small, &v);
	if (r < 0)
		return r;
	r = xp_send(s, v, (int)m.msg_iovlen, flags, false);
	put_iov(v, small);
	return r;
}

XP_EXPORT ssize_t sendmsg(int fd, const struct msghdr *msg, int flags)
{
	ENSURE(sendmsg, syscall(SYS_sendmsg, fd, msg, flags));
	struct xp_sock *s = eng(fd);
	if (!s) {
		ssize_t r = xp_real.sendmsg(fd, msg, flags);
		kbump();
		return r;
	}
	return done(s, sendmsg_one(s, msg, flags));
}

XP_EXPORT int sendmmsg(int fd, struct mmsghdr *vec, unsigned int vlen, int flags)
{
	ENSURE(sendmmsg, syscall(SYS_sendmmsg, fd, vec, vlen, flags));
	struct xp_sock *s = eng(fd);
	if (!s) {
		int r = xp_real.sendmmsg(fd, vec, vlen, flags);
		kbump();
		return r;
	}
	if (vlen > 1024)
		vlen = 1024;
	unsigned int i;
	long r = 0;
	for (i = 0; i < vlen; i++) {
		r = sendmsg_one(s, &vec[i].msg_hdr, flags);
		if (r < 0)
			break;
		if (xp_check_write(&vec[i].msg_len, sizeof(vec[i].msg_len)) < 0) {
			r = -EFAULT;
			break;
		}
		vec[i].msg_len = (unsigned int)r;
	}
	return (int)done(s, i ? (long)i : r);
}

XP_EXPORT ssize_t sendfile(int out_fd, int in_fd, off_t *offset, size_t count)
{
	ENSURE(sendfile, syscall(SYS_sendfile, out_fd, in_fd, offset, count));
	struct xp_sock *s = eng(out_fd);
	if (!s) {
		ssize_t r = xp_real.sendfile(out_fd, in_fd, offset, count);
		kbump();
		return r;
	}
	return done(s, xp_sendfile(s, in_fd, offset, count));
}

XP_EXPORT ssize_t sendfile64(int out_fd, int in_fd, off_t *offset, size_t count)
{
	ENSURE(sendfile64, syscall(SYS_sendfile, out_fd, in_fd, offset, count));
	struct xp_sock *s = eng(out_fd);
	if (!s) {
		ssize_t r = xp_real.sendfile64(out_fd, in_fd, offset, count);
		kbump();
		return r;
	}
	return done(s, xp_sendfile(s, in_fd, offset, count));
}

/* glibc's public double-underscore names of the same calls. */
XP_EXPORT int __close(int fd)
{
	return close(fd);
}

XP_EXPORT int __connect(int fd, const struct sockaddr *addr, socklen_t len)
{
	return connect(fd, addr, len);
}

XP_EXPORT int __dup2(int oldfd, int newfd)
{
	return dup2(oldfd, newfd);
}

XP_EXPORT int __fcntl(int fd, int cmd, ...)
{
	va_list ap;
	va_start(ap, cmd);
	long arg = va_arg(ap, long);
	va_end(ap);
	ENSURE(fcntl, syscall(SYS_fcntl, fd, cmd, arg));
	return do_fcntl(fd, cmd, arg, false);
}

XP_EXPORT ssize_t __read(int fd, void *buf, size_t n)
{
	return read(fd, buf, n);
}

XP_EXPORT ssize_t __send(int fd, const void *buf, size_t n, int flags)
{
	return send(fd, buf, n, flags);
}

XP_EXPORT ssize_t __write(int fd, const void *buf, size_t n)
{
	return write(fd, buf, n);
}

/* --- epoll, poll, select (mux.c) --------------------------------------------- */

XP_EXPORT int epoll_create(int size)
{
	ENSURE(epoll_create, syscall(SYS_epoll_create1, 0));
	int fd = xp_real.epoll_create(size);
	if (fd >= 0 && !xp_in_lib)
		xp_epoll_wrap(fd);
	return fd;
}

XP_EXPORT int epoll_create1(int flags)
{
	ENSURE(epoll_create1, syscall(SYS_epoll_create1, flags));
	int fd = xp_real.epoll_create1(flags);
	if (fd >= 0 && !xp_in_lib)
		xp_epoll_wrap(fd);
	return fd;
}

XP_EXPORT int epoll_ctl(int epfd, int op, int fd, struct epoll_event *ev)
{
	ENSURE(epoll_ctl, syscall(SYS_epoll_ctl, epfd, op, fd, ev));
	if (XP_LIKELY(xp_in_lib || (!xp_fd_maybe_ours(epfd) && !xp_fd_maybe_ours(fd))))
		return xp_real.epoll_ctl(epfd, op, fd, ev);
	return xp_ret(xp_epoll_ctl(epfd, op, fd, ev));
}

/* A caller's signal mask, copied (EFAULT as the kernel's copy would). */
static int get_sigmask(const sigset_t *u, sigset_t *k, const sigset_t **out)
{
	*out = NULL;
	if (!u)
		return 0;
	if (xp_copy_in(k, u, sizeof(*k)) < 0)
		return -EFAULT;
	*out = k;
	return 0;
}

static int epoll_wait_ts(int epfd, struct epoll_event *ev, int max, const struct timespec *ts, const sigset_t *sm)
{
	sigset_t k;
	const sigset_t *m;
	if (get_sigmask(sm, &k, &m) < 0)
		return xp_ret(-EFAULT);
	return xp_ret(xp_epoll_wait(epfd, ev, max, ts, m));
}

static const struct timespec *ms_ts(int ms, struct timespec *ts)
{
	if (ms < 0)
		return NULL;
	ts->tv_sec = ms / 1000;
	ts->tv_nsec = (long)(ms % 1000) * 1000000;
	return ts;
}

XP_EXPORT int epoll_wait(int epfd, struct epoll_event *ev, int max, int timeout)
{
	ENSURE(epoll_wait, syscall(SYS_epoll_wait, epfd, ev, max, timeout));
	if (XP_LIKELY(xp_in_lib || !xp_fd_maybe_ours(epfd)))
		return xp_real.epoll_wait(epfd, ev, max, timeout);
	struct timespec ts;
	return epoll_wait_ts(epfd, ev, max, ms_ts(timeout, &ts), NULL);
}

XP_EXPORT int epoll_pwait(int epfd, struct epoll_event *ev, int max, int timeout, const sigset_t *sm)
{
	ENSURE(epoll_pwait, syscall(SYS_epoll_pwait, epfd, ev, max, timeout, sm, _NSIG / 8));
	if (XP_LIKELY(xp_in_lib || !xp_fd_maybe_ours(epfd)))
		return xp_real.epoll_pwait(epfd, ev, max, timeout, sm);
	struct timespec ts;
	return epoll_wait_ts(epfd, ev, max, ms_ts(timeout, &ts), sm);
}

XP_EXPORT int epoll_pwait2(int epfd, struct epoll_event *ev, int max, const struct timespec *tmo,
			   const sigset_t *sm)
{
	ENSURE(epoll_pwait2, syscall(SYS_epoll_pwait2, epfd, ev, max, tmo, sm, _NSIG / 8));
	if (XP_LIKELY(xp_in_lib || !xp_fd_maybe_ours(epfd)))
		return xp_real.epoll_pwait2(epfd, ev, max, tmo, sm);
	struct timespec ts;
	if (tmo && xp_copy_in(&ts, tmo, sizeof(ts)) < 0)
		return xp_ret(-EFAULT);
	return epoll_wait_ts(epfd, ev, max, tmo ? &ts : NULL, sm);
}

XP_EXPORT int poll(struct pollfd *fds, nfds_t n, int timeout)
{
	ENSURE(poll, syscall(SYS_poll, fds, n, timeout));
	if (xp_in_lib)
		return xp_real.poll(fds, n, timeout);
	struct xp_pcall c = { .kind = XP_POLL, .ms = timeout };
	return xp_ret(xp_poll(fds, n, &c));
}

XP_EXPORT int __poll(struct pollfd *fds, nfds_t n, int timeout)
{
	return poll(fds, n, timeout);
}

XP_EXPORT int __poll_chk(struct pollfd *fds, nfds_t n, int timeout, size_t fdslen)
{
	if (fdslen / sizeof(*fds) < n)
		__chk_fail();
	return poll(fds, n, timeout);
}

XP_EXPORT int ppoll(struct pollfd *fds, nfds_t n, const struct timespec *tmo, const sigset_t *sm)
{
	ENSURE(ppoll, syscall(SYS_ppoll, fds, n, tmo, sm, _NSIG / 8));
	if (xp_in_lib)
		return xp_real.ppoll(fds, n, tmo, sm);
	sigset_t k;
	const sigset_t *m;
	if (get_sigmask(sm, &k, &m) < 0)
		return xp_ret(-EFAULT);
	struct xp_pcall c = { .kind = XP_PPOLL, .ts = tmo, .sigmask = m };
	return xp_ret(xp_poll(fds, n, &c));
}

XP_EXPORT int __ppoll_chk(struct pollfd *fds, nfds_t n, const struct timespec *tmo, const sigset_t *sm,
			  size_t fdslen)
{
	if (fdslen / sizeof(*fds) < n)
		__chk_fail();
	return ppoll(fds, n, tmo, sm);
}

XP_EXPORT int select(int nfds, fd_set *r, fd_set *w, fd_set *e, struct timeval *tv)
{
	ENSURE(select, syscall(SYS_select, nfds, r, w, e, tv));
	if (xp_in_lib)
		return xp_real.select(nfds, r, w, e, tv);
	struct xp_pcall c = { .kind = XP_SELECT, .tv = tv };
	return xp_ret(xp_select(nfds, r, w, e, &c));
}

XP_EXPORT int __select(int nfds, fd_set *r, fd_set *w, fd_set *e, struct timeval *tv)
{
	return select(nfds, r, w, e, tv);
}

XP_EXPORT int pselect(int nfds, fd_set *r, fd_set *w, fd_set *e, const struct timespec *tmo, const sigset_t *sm)
{
	if (XP_UNLIKELY(!xp_real.pselect) && (xp_real_init() < 0 || !xp_real.pselect)) {
		errno = ENOSYS;
		return -1;
	}
	if (xp_in_lib)
		return xp_real.pselect(nfds, r, w, e, tmo, sm);
	sigset_t k;
	const sigset_t *m;
	if (get_sigmask(sm, &k, &m) < 0)
		return xp_ret(-EFAULT);
	struct xp_pcall c = { .kind = XP_PSELECT, .ts = tmo, .sigmask = m };
	return xp_ret(xp_select(nfds, r, w, e, &c));
}
