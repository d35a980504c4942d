/* The real libc functions behind the ones we export, found with
 * dlsym(RTLD_NEXT).  dlsym may itself allocate, and an allocator may read a
 * file: a call that arrives while this thread resolves gets -1 from
 * xp_real_init and the caller falls back to the raw system call. */
#define _GNU_SOURCE
#include <dlfcn.h>

#include "shim.h"

struct xp_real xp_real;
atomic_int xp_real_ready;
XP_TLS int xp_in_lib;
static XP_TLS int resolving;
static pthread_mutex_t resolve_mu = PTHREAD_MUTEX_INITIALIZER;

static void *find(const char *name)
{
	return dlsym(RTLD_NEXT, name);
}

int xp_real_init(void)
{
	if (atomic_load_explicit(&xp_real_ready, memory_order_acquire))
		return 0;
	if (resolving)
		return -1;
	resolving = 1;
	pthread_mutex_lock(&resolve_mu);
	if (!atomic_load_explicit(&xp_real_ready, memory_order_relaxed)) {
		struct xp_real r;
#define R(field, name) r.field = (__typeof__(r.field))find(name)
		R(socket, "socket");
		R(socketpair, "socketpair");
		R(bind, "bind");
		R(listen, "listen");
		R(accept, "accept");
		R(accept4, "accept4");
		R(connect, "connect");
		R(getsockname, "getsockname");
		R(getpeername, "getpeername");
		R(setsockopt, "setsockopt");
		R(getsockopt, "getsockopt");
		R(shutdown, "shutdown");
		R(close, "close");
		R(read, "read");
		R(readv, "readv");
		R(write, "write");
		R(writev, "writev");
		R(recv, "recv");
		R(recvfrom, "recvfrom");
		R(recvmsg, "recvmsg");
		R(recvmmsg, "recvmmsg");
		R(send, "send");
		R(sendto, "sendto");
		R(sendmsg, "sendmsg");
		R(sendmmsg, "sendmmsg");
		R(sendfile, "sendfile");
		R(sendfile64, "sendfile64");
		R(fcntl, "fcntl");
		R(fcntl64, "fcntl64");
		R(ioctl, "ioctl");
		R(dup, "dup");
		R(dup2, "dup2");
		R(dup3, "dup3");
		R(close_range, "close_range");
		R(closefrom, "closefrom");
		R(read_chk, "__read_chk");
		R(recv_chk, "__recv_chk");
		R(recvfrom_chk, "__recvfrom_chk");
		R(epoll_create, "epoll_create");
		R(epoll_create1, "epoll_create1");
		R(epoll_ctl, "epoll_ctl");
		R(epoll_wait, "epoll_wait");
		R(epoll_pwait, "epoll_pwait");
		R(epoll_pwait2, "epoll_pwait2");
		R(poll, "poll");
		R(ppoll, "ppoll");
		R(select, "select");
		R(pselect, "pselect");
		R(sigaction, "sigaction");
		R(sigset, "sigset");
		R(exit_, "_exit");
		R(Exit_, "_Exit");
		R(execve, "execve");
		R(execv, "execv");
		R(execvp, "execvp");
		R(execvpe, "execvpe");
		R(fexecve, "fexecve");
		R(clone, "clone");
		R(Fork_, "_Fork");
#undef R
		if (!r.fcntl64)
			r.fcntl64 = r.fcntl;
		if (!r.sendfile64)
			r.sendfile64 = r.sendfile;
		xp_real = r;
		atomic_store_explicit(&xp_real_ready, 1, memory_order_release);
	}
	pthread_mutex_unlock(&resolve_mu);
	resolving = 0;
	return 0;
}

/* Resolve early when the library is loaded (nothing else is touched). */
__attribute__((constructor)) static void real_ctor(void)
{
	xp_real_init();
}
