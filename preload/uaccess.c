/* User pointers: the kernel answers EFAULT for a bad buffer, the engine
 * would crash on it.  A page is checked the first time a thread meets it,
 * with process_vm_readv/writev on our own process (a bad address is EFAULT,
 * not a signal); each thread then remembers up to 1024 pages found readable
 * and 1024 found writable, so the data path of a busy server makes no system
 * call for it (pagecache.h).  (A buffer unmapped after it was found good is the one case
 * that still faults: see man/libxtcp.7.) */
#define _GNU_SOURCE
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <unistd.h>

#include "pagecache.h"
#include "shim.h"

#define PAGE 4096ul
#define MAX_PAGES 256 /* pages checked per call (IOV_MAX-bounded) */

/* Pages found readable / writable, one table per thread, allocated on first
 * use (pagecache.h: 4-way sets of a hashed page number, 1024 pages of each
 * kind).  A buffer that spans many pages costs one lookup per page once they
 * are known; a server with thousands of connections keeps its buffers' pages
 * here. */
static XP_TLS struct xp_pagecache *okp;

static bool plausible(const void *p, size_t n)
{
	uintptr_t a = (uintptr_t)p;
	return a >= PAGE && a + n >= a && a + n <= 0x800000000000ul;
}

/* Our pid without a system call (glibc no longer caches getpid); a vfork
 * child shares its parent's memory, so the parent's pid reads the same. */
static pid_t self(void)
{
	return xp_fork_pid ? xp_fork_pid : getpid();
}

static pthread_key_t okp_key;
static pthread_once_t okp_once = PTHREAD_ONCE_INIT;

static void okp_free(void *p)
{
	(void)syscall(SYS_munmap, p, sizeof(struct xp_pagecache));
	okp = NULL;
}

static void okp_key_make(void)
{
	(void)pthread_key_create(&okp_key, okp_free);
}

/* Allocated with mmap, not malloc: read() and write() may be called from a
 * signal handler. */
static struct xp_pagecache *table(void)
{
	if (XP_UNLIKELY(!okp)) {
		pthread_once(&okp_once, okp_key_make);
		void *m = (void *)syscall(SYS_mmap, NULL, sizeof(struct xp_pagecache), PROT_READ | PROT_WRITE,
					  MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		if (m == MAP_FAILED)
			return NULL;
		okp = m; /* zeroed: page 0 is never plausible, so empty slots match nothing */
		(void)pthread_setspecific(okp_key, m);
	}
	return okp;
}

static bool known(uintptr_t lo, uintptr_t hi, bool write)
{
	return okp && xp_pc_known(okp, lo, hi, write);
}

static void remember(uintptr_t lo, uintptr_t hi, bool write)
{
	struct xp_pagecache *t = table();
	if (t && hi - lo <= (uintptr_t)MAX_PAGES * PAGE)
		xp_pc_remember(t, lo, hi, write);
}

int xp_copy_in(void *dst, const void *usrc, size_t n)
{
	if (!n)
		return 0;
	if (!plausible(usrc, n))
		return -EFAULT;
	uintptr_t lo = (uintptr_t)usrc, hi = lo + n;
	if (XP_LIKELY(known(lo, hi, false))) {
		memcpy(dst, usrc, n);
		return 0;
	}
	struct iovec l = { dst, n }, r = { (void *)usrc, n };
	if (process_vm_readv(self(), &l, 1, &r, 1, 0) != (ssize_t)n)
		return -EFAULT;
	remember(lo, hi, false);
	return 0;
}

static int copy_out(void *udst, const void *src, size_t n)
{
	if (!n)
		return 0;
	if (!plausible(udst, n))
		return -EFAULT;
	uintptr_t lo = (uintptr_t)udst, hi = lo + n;
	if (XP_LIKELY(known(lo, hi, true))) {
		memcpy(udst, src, n);
		return 0;
	}
	struct iovec l = { (void *)src, n }, r = { udst, n };
	if (process_vm_writev(self(), &l, 1, &r, 1, 0) != (ssize_t)n)
		return -EFAULT;
	remember(lo, hi, true);
	return 0;
}

/* One byte per page of [p, p+n): read it (and, to check writability, write
 * the same byte back). */
static int probe(const void *p, size_t n, bool write)
{
	uintptr_t lo = (uintptr_t)p & ~(PAGE - 1), hi = ((uintptr_t)p + n + PAGE - 1) & ~(PAGE - 1);
	size_t pages = (hi - lo) / PAGE;
	if (pages > MAX_PAGES) /* a huge buffer: check its ends and trust the rest */
		pages = MAX_PAGES;
	struct iovec rem[MAX_PAGES];
	uint8_t bytes[MAX_PAGES];
	struct iovec loc = { bytes, pages };
	for (size_t i = 0; i < pages; i++) {
		uintptr_t a = i == 0 ? (uintptr_t)p : i == pages - 1 ? (uintptr_t)p + n - 1 : lo + i * PAGE;
		rem[i].iov_base = (void *)a;
		rem[i].iov_len = 1;
	}
	pid_t me = self();
	if (process_vm_readv(me, &loc, 1, rem, (unsigned long)pages, 0) != (ssize_t)pages)
		return -EFAULT;
	if (write && process_vm_writev(me, &loc, 1, rem, (unsigned long)pages, 0) != (ssize_t)pages)
		return -EFAULT;
	return 0;
}

static int check(const void *p, size_t n, bool write)
{
	if (!n)
		return 0;
	if (!plausible(p, n))
		return -EFAULT;
	uintptr_t lo = (uintptr_t)p, hi = lo + n;
	if (XP_LIKELY(known(lo, hi, write)))
		return 0;
	if (probe(p, n, write) < 0)
		return -EFAULT;
	remember(lo, hi, write);
	return 0;
}

int xp_check_read(const void *p, size_t n)
{
	return check(p, n, false);
}

int xp_check_write(void *p, size_t n)
{
	return check(p, n, true);
}

int xp_put_addr(struct sockaddr *uaddr, socklen_t *ulen, const struct sockaddr_in *sin)
{
	socklen_t l;
	if (xp_copy_in(&l, ulen, sizeof(l)) < 0)
		return -EFAULT;
	if ((int)l < 0)
		return -EINVAL;
	size_t n = l < sizeof(*sin) ? l : sizeof(*sin);
	if (n && copy_out(uaddr, sin, n) < 0)
		return -EFAULT;
	socklen_t full = sizeof(*sin);
	return copy_out(ulen, &full, sizeof(full));
}
