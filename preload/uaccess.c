/* User pointers: the kernel answers EFAULT for a bad buffer, the engine
 * would crash on it.  Addresses and option values are copied with
 * process_vm_readv/writev on our own process (a bad address is EFAULT, not a
 * signal).  Data buffers are checked the same way one byte per page, and
 * each thread remembers the last few page ranges found good so a loop over
 * one buffer pays for that once.  (A buffer unmapped after it was found good
 * is the one case that still faults: see man/libxtcp.7.) */
#define _GNU_SOURCE
#include <string.h>
#include <sys/uio.h>
#include <unistd.h>

#include "shim.h"

#define PAGE 4096ul
#define CACHE 8
#define MAX_PAGES 256 /* pages checked per call (IOV_MAX-bounded) */

struct range {
	uintptr_t lo, hi;
};
static XP_TLS struct range okr[CACHE], okw[CACHE];
static XP_TLS unsigned okr_next, okw_next;

static bool plausible(const void *p, size_t n)
{
	uintptr_t a = (uintptr_t)p;
	return a >= PAGE && a + n >= a && a + n <= 0x800000000000ul;
}

int xp_copy_in(void *dst, const void *usrc, size_t n)
{
	if (!n)
		return 0;
	if (!plausible(usrc, n))
		return -EFAULT;
	struct iovec l = { dst, n }, r = { (void *)usrc, n };
	return process_vm_readv(getpid(), &l, 1, &r, 1, 0) == (ssize_t)n ? 0 : -EFAULT;
}

static int copy_out(void *udst, const void *src, size_t n)
{
	if (!n)
		return 0;
	if (!plausible(udst, n))
		return -EFAULT;
	struct iovec l = { (void *)src, n }, r = { udst, n };
	return process_vm_writev(getpid(), &l, 1, &r, 1, 0) == (ssize_t)n ? 0 : -EFAULT;
}

static bool cached(const struct range *c, uintptr_t lo, uintptr_t hi)
{
	for (int i = 0; i < CACHE; i++)
		if (lo >= c[i].lo && hi <= c[i].hi)
			return true;
	return false;
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
	pid_t me = getpid();
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
	struct range *c = write ? okw : okr;
	if (XP_LIKELY(cached(c, lo, hi)))
		return 0;
	if (probe(p, n, write) < 0)
		return -EFAULT;
	unsigned *next = write ? &okw_next : &okr_next;
	c[*next % CACHE] = (struct range){ lo & ~(PAGE - 1), (hi + PAGE - 1) & ~(PAGE - 1) };
	(*next)++;
	return 0;
}

int xp_check_read(const void *p, size_t n)
{
	if (n && plausible(p, n) && cached(okw, (uintptr_t)p, (uintptr_t)p + n))
		return 0;
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
