/* The table of user pages the shim found readable or writable
 * (preload/pagecache.h).  What it must do: remember every page of a range,
 * keep buffers whose addresses lie a power of two apart (allocators place
 * them so; a table indexed by the low bits of the page number evicted one
 * of every such pair), tell writable from readable, and stay bounded. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "preload/pagecache.h"

#define PG(n) ((uintptr_t)(n) << XP_PC_PAGE_SHIFT)

static int setup(void **state)
{
	*state = calloc(1, sizeof(struct xp_pagecache));
	return *state ? 0 : -1;
}

static int teardown(void **state)
{
	free(*state);
	return 0;
}

static void test_empty_knows_nothing(void **state)
{
	struct xp_pagecache *t = *state;
	assert_false(xp_pc_known(t, PG(1), PG(1) + 1, false));
	assert_false(xp_pc_known(t, PG(0x7f0000000ul), PG(0x7f0000000ul) + 100, false));
	assert_false(xp_pc_known(t, PG(0x7f0000000ul), PG(0x7f0000000ul) + 100, true));
}

static void test_range_spans_pages(void **state)
{
	struct xp_pagecache *t = *state;
	uintptr_t lo = PG(0x7f4a253e2ul) + 4000, hi = lo + 3 * 4096; /* 4 pages */
	xp_pc_remember(t, lo, hi, true);
	assert_true(xp_pc_known(t, lo, hi, true));
	assert_true(xp_pc_known(t, lo, hi, false)); /* writable is readable */
	assert_true(xp_pc_known(t, PG(0x7f4a253e2ul), PG(0x7f4a253e6ul), true));
	assert_false(xp_pc_known(t, lo, hi + 4096, false)); /* one page past */
	assert_false(xp_pc_known(t, lo - 4096, hi, false)); /* one page before */
}

static void test_readable_is_not_writable(void **state)
{
	struct xp_pagecache *t = *state;
	uintptr_t a = PG(0x55555555aul);
	xp_pc_remember(t, a, a + 64, false);
	assert_true(xp_pc_known(t, a, a + 64, false));
	assert_false(xp_pc_known(t, a, a + 64, true));
}

/* Redis's query and reply buffers, as seen under strace: pages 0x7f4a253e2,
 * 0x7f4a27fe2, ... (2^10 pages apart and more).  Sixteen buffers of four
 * pages each at strides of 2^10, 2^12 and 2^21 pages all stay known. */
static void test_power_of_two_strides_kept(void **state)
{
	struct xp_pagecache *t = *state;
	const uintptr_t strides[] = { 1ul << 10, 1ul << 12, 1ul << 21 };
	for (size_t k = 0; k < sizeof(strides) / sizeof(strides[0]); k++) {
		memset(t, 0, sizeof(*t));
		for (uintptr_t i = 0; i < 16; i++) {
			uintptr_t lo = PG(0x7f4a253e2ul + i * strides[k]);
			xp_pc_remember(t, lo, lo + 4 * 4096, i & 1);
		}
		for (uintptr_t i = 0; i < 16; i++) {
			uintptr_t lo = PG(0x7f4a253e2ul + i * strides[k]);
			assert_true(xp_pc_known(t, lo, lo + 4 * 4096, i & 1));
		}
	}
}

/* Bounded: a fifth page of one set pushes out the oldest of the four. */
static void test_set_evicts_oldest(void **state)
{
	struct xp_pagecache *t = *state;
	uintptr_t same[XP_PC_WAYS + 1];
	unsigned set = xp_pc_set(0x600000ul);
	int n = 0;
	for (uintptr_t pg = 0x600000ul; n < XP_PC_WAYS + 1; pg++)
		if (xp_pc_set(pg) == set)
			same[n++] = pg;
	for (int i = 0; i < XP_PC_WAYS; i++)
		xp_pc_remember(t, PG(same[i]), PG(same[i]) + 1, false);
	for (int i = 0; i < XP_PC_WAYS; i++)
		assert_true(xp_pc_known(t, PG(same[i]), PG(same[i]) + 1, false));
	xp_pc_remember(t, PG(same[0]), PG(same[0]) + 1, false); /* known: no change */
	xp_pc_remember(t, PG(same[XP_PC_WAYS]), PG(same[XP_PC_WAYS]) + 1, false);
	assert_false(xp_pc_known(t, PG(same[0]), PG(same[0]) + 1, false));
	for (int i = 1; i <= XP_PC_WAYS; i++)
		assert_true(xp_pc_known(t, PG(same[i]), PG(same[i]) + 1, false));
}

/* The hash spreads consecutive pages over the sets. */
static void test_sets_used_evenly(void **state)
{
	(void)state;
	unsigned count[XP_PC_SETS] = { 0 };
	for (uintptr_t pg = 0x7f0000000ul; pg < 0x7f0000000ul + 16 * XP_PC_SETS; pg++)
		count[xp_pc_set(pg)]++;
	for (unsigned s = 0; s < XP_PC_SETS; s++) {
		assert_true(count[s] >= 8);
		assert_true(count[s] <= 24);
	}
}

int main(void)
{
#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)
	const struct CMUnitTest tests[] = {
		T(test_empty_knows_nothing),
		T(test_range_spans_pages),
		T(test_readable_is_not_writable),
		T(test_power_of_two_strides_kept),
		T(test_set_evicts_oldest),
		T(test_sets_used_evenly),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
