/* The user pages a thread has found readable or writable (see uaccess.c).
 *
 * A set-associative table: a page number picks one set of XP_PC_WAYS slots
 * through a multiplicative hash, and the newest page of a set pushes out its
 * oldest.  The hash matters: allocators place buffers at power-of-two
 * strides, so a table indexed by the page number's low bits (as this one
 * was) keeps evicting one of two buffers that alias, and every read or write
 * of them costs a system call again (redis's query and reply buffers did, on
 * every request).  Zeroed memory is an empty table: page 0 is never asked
 * for.  Header-only so the unit test uses the very code. */
#ifndef XTCP_PAGECACHE_H
#define XTCP_PAGECACHE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define XP_PC_SET_BITS 8
#define XP_PC_SETS (1u << XP_PC_SET_BITS)
#define XP_PC_WAYS 4
#define XP_PC_PAGE_SHIFT 12

struct xp_pagecache {
	uintptr_t r[XP_PC_SETS][XP_PC_WAYS]; /* readable */
	uintptr_t w[XP_PC_SETS][XP_PC_WAYS]; /* writable (and so readable) */
};

static inline unsigned xp_pc_set(uintptr_t pg)
{
	return (unsigned)(((uint64_t)pg * 0x9e3779b97f4a7c15ull) >> (64 - XP_PC_SET_BITS));
}

_Static_assert(XP_PC_WAYS == 4, "xp_pc_in looks at four ways");

static inline bool xp_pc_in(const uintptr_t *ways, uintptr_t pg)
{
	return ways[0] == pg || ways[1] == pg || ways[2] == pg || ways[3] == pg;
}

/* Are all pages of [lo, hi) known (writable, or readable when !write)?
 * hi > lo. */
static inline bool xp_pc_known(const struct xp_pagecache *t, uintptr_t lo, uintptr_t hi, bool write)
{
	for (uintptr_t pg = lo >> XP_PC_PAGE_SHIFT; pg <= (hi - 1) >> XP_PC_PAGE_SHIFT; pg++) {
		unsigned s = xp_pc_set(pg);
		if (!xp_pc_in(t->w[s], pg) && (write || !xp_pc_in(t->r[s], pg)))
			return false;
	}
	return true;
}

/* Every page of [lo, hi) found readable (or writable); hi > lo. */
static inline void xp_pc_remember(struct xp_pagecache *t, uintptr_t lo, uintptr_t hi, bool write)
{
	for (uintptr_t pg = lo >> XP_PC_PAGE_SHIFT; pg <= (hi - 1) >> XP_PC_PAGE_SHIFT; pg++) {
		uintptr_t *ways = (write ? t->w : t->r)[xp_pc_set(pg)];
		if (xp_pc_in(ways, pg))
			continue;
		for (int i = XP_PC_WAYS - 1; i > 0; i--)
			ways[i] = ways[i - 1];
		ways[0] = pg;
	}
}

#endif
