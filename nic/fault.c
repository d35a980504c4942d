/* Seeded, deterministic fault injection on the TX side of any nic.
 *
 * Every frame handed to tx_burst gets an index (0, 1, 2, ... from the first
 * frame sent) and its fate is drawn from a counter-based generator keyed by
 * (seed, index), never from rand(): the same seed and the same frame sequence
 * give the same losses, copies, delays and bit flips, whatever else runs in
 * the process, and changing one probability does not reshuffle the others.
 *
 * Frames that must wait (delay, reordering) are copied into a preallocated
 * pool and released to the inner nic, in due order, by a later tx_burst or
 * rx_burst whose now has reached their time; next_deadline reports the
 * earliest.  When the pool is full a frame goes out at once rather than being
 * lost: the injector must not add losses nobody asked for.
 *
 * The wrapper owns inner: closing it closes inner.
 */
#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "nic.h"

#define FAULT_POOL 4096  /* frames held back at once */
#define FAULT_BATCH 64   /* frames forwarded per inner tx_burst */

struct held {
	xt_time_t due;
	uint64_t seq;    /* ties on due leave in the order they were held */
	uint32_t slot;
	uint32_t len;
	uint32_t flags;  /* the frame's, less XT_FRAME_GATHER: it is whole in its slot */
};

struct fault_nic {
	struct xt_nic nic; /* first: struct xt_nic * converts to struct fault_nic * */
	struct xt_nic *inner;
	struct xt_fault_cfg cfg;
	struct xt_fault_stats stats;
	uint64_t seq;
	uint32_t slot_size;
	uint8_t *pool;        /* FAULT_POOL * slot_size */
	uint32_t *free_slots; /* stack of free pool slots */
	uint32_t nfree;
	struct held *heap;    /* min-heap on (due, seq) */
	uint32_t nheld;
	uint8_t *scratch;     /* two corrupted copies sent at once */
};

/* What happens to one frame. */
struct verdict {
	bool lost, dup, hold, corrupt;
	uint64_t bit; /* which bit to flip when corrupt */
	xt_time_t due;
};

static const struct xt_nic_ops fault_ops;

static struct fault_nic *to_fault(struct xt_nic *nic) { return (struct fault_nic *)nic; }

/* splitmix64's finalizer: a bijection that spreads every input bit. */
static uint64_t mix64(uint64_t z)
{
	z += 0x9e3779b97f4a7c15ull;
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

/* The k-th random draw for frame idx. */
static uint64_t frame_rand(const struct fault_nic *f, uint64_t idx, unsigned k)
{
	return mix64(f->cfg.seed ^ mix64(idx * 8u + k));
}

static bool chance(uint64_t r, double p)
{
	if (!(p > 0.0)) /* also false for NaN */
		return false;
	return (double)(r >> 11) * 0x1.0p-53 < p;
}

static bool in_burst(const struct xt_fault_cfg *c, uint64_t idx)
{
	return c->burst_len && idx >= c->burst_start && idx - c->burst_start < c->burst_len;
}

static struct verdict decide(struct fault_nic *f, const struct xt_frame *fr, xt_time_t now)
{
	const struct xt_fault_cfg *c = &f->cfg;
	uint64_t idx = f->stats.frames++;
	struct verdict v = { 0 };
	uint32_t wlen = xt_frame_wire_len(fr);
	bool reorder;

	v.lost = in_burst(c, idx) || chance(frame_rand(f, idx, 0), c->loss);
	if (v.lost) {
		f->stats.lost++;
		return v;
	}
	v.dup = chance(frame_rand(f, idx, 1), c->dup);
	reorder = chance(frame_rand(f, idx, 2), c->reorder);
	v.corrupt = wlen > 0 && chance(frame_rand(f, idx, 3), c->corrupt);
	v.bit = wlen ? frame_rand(f, idx, 4) % ((uint64_t)wlen * 8u) : 0;
	/* Frames too big for a pool slot pass untouched (inner drops them). */
	if (wlen > f->slot_size)
		reorder = v.corrupt = false;
	v.due = now + c->delay + (reorder ? c->reorder_delay : 0);
	v.hold = wlen <= f->slot_size && (reorder || c->delay > 0);
	f->stats.dupped += v.dup;
	f->stats.reordered += reorder;
	f->stats.corrupted += v.corrupt;
	return v;
}

static void flip_bit(uint8_t *data, uint64_t bit)
{
	data[bit / 8] ^= (uint8_t)(0x80u >> (bit % 8));
}

static bool held_before(const struct held *a, const struct held *b)
{
	return a->due < b->due || (a->due == b->due && a->seq < b->seq);
}

static void heap_swap(struct held *h, uint32_t i, uint32_t j)
{
	struct held t = h[i];
	h[i] = h[j];
	h[j] = t;
}

static void heap_push(struct fault_nic *f, struct held item)
{
	uint32_t i = f->nheld++;

	f->heap[i] = item;
	while (i > 0 && held_before(&f->heap[i], &f->heap[(i - 1) / 2])) {
		heap_swap(f->heap, i, (i - 1) / 2);
		i = (i - 1) / 2;
	}
}

static void heap_pop(struct fault_nic *f)
{
	uint32_t i = 0;

	f->heap[0] = f->heap[--f->nheld];
	for (;;) {
		uint32_t l = 2 * i + 1, r = l + 1, m = i;
		if (l < f->nheld && held_before(&f->heap[l], &f->heap[m]))
			m = l;
		if (r < f->nheld && held_before(&f->heap[r], &f->heap[m]))
			m = r;
		if (m == i)
			return;
		heap_swap(f->heap, i, m);
		i = m;
	}
}

static uint8_t *slot_data(struct fault_nic *f, uint32_t slot)
{
	return f->pool + (size_t)slot * f->slot_size;
}

/* Holds copies of fr until v->due; false when the pool has no room. */
static bool hold(struct fault_nic *f, const struct xt_frame *fr, const struct verdict *v)
{
	int copies = v->dup ? 2 : 1;

	if (f->nfree < (uint32_t)copies)
		return false;
	for (int i = 0; i < copies; i++) {
		uint32_t slot = f->free_slots[--f->nfree];
		xt_frame_copy(fr, slot_data(f, slot));
		if (v->corrupt)
			flip_bit(slot_data(f, slot), v->bit);
		heap_push(f, (struct held){ .due = v->due, .seq = f->seq++, .slot = slot,
					    .len = xt_frame_wire_len(fr), .flags = fr->flags & ~XT_FRAME_GATHER });
	}
	return true;
}

/* Sends every held frame that is due by now.  A frame the inner nic refuses
 * stays held and is retried on the next call. */
static void release_due(struct fault_nic *f, xt_time_t now)
{
	while (f->nheld && f->heap[0].due <= now) {
		struct held h = f->heap[0];
		struct xt_frame fr = { .data = slot_data(f, h.slot), .len = h.len, .flags = h.flags };
		if (xt_nic_tx(f->inner, &fr, 1, now) < 1)
			return;
		heap_pop(f);
		f->free_slots[f->nfree++] = h.slot;
	}
}

/* Frames going straight to the inner nic, with the index of the caller's
 * frame each came from (to report how many were taken). */
struct batch {
	struct xt_frame fr[FAULT_BATCH];
	int orig[FAULT_BATCH];
	int n;
};

/* Returns -1 when everything was taken, else the caller's index of the first
 * frame the inner nic refused. */
static int batch_flush(struct fault_nic *f, struct batch *b, xt_time_t now)
{
	int taken = b->n ? xt_nic_tx(f->inner, b->fr, b->n, now) : 0;
	int refused = -1;

	if (taken < 0)
		taken = 0;
	if (taken < b->n)
		refused = b->orig[taken];
	b->n = 0;
	return refused;
}

/* A corrupted frame that is not held goes out alone from scratch, since the
 * caller's frame is const and batched frames point at it.  Returns false if
 * the inner nic refused it. */
static bool send_corrupted(struct fault_nic *f, const struct xt_frame *fr, const struct verdict *v,
			   xt_time_t now)
{
	struct xt_frame out[2];
	int copies = v->dup ? 2 : 1;

	xt_frame_copy(fr, f->scratch);
	flip_bit(f->scratch, v->bit);
	out[0] = out[1] = (struct xt_frame){
		.data = f->scratch, .len = xt_frame_wire_len(fr), .flags = fr->flags & ~XT_FRAME_GATHER };
	return xt_nic_tx(f->inner, out, copies, now) >= 1;
}

/* Queues fr (twice when duplicated) for the inner nic; returns the caller's
 * index of a refused frame, or -1. */
static int batch_add(struct fault_nic *f, struct batch *b, const struct xt_frame *fr, int i, bool dup,
		     xt_time_t now)
{
	int refused;

	for (int c = 0; c < (dup ? 2 : 1); c++) {
		if (b->n == FAULT_BATCH && (refused = batch_flush(f, b, now)) >= 0)
			return refused;
		b->fr[b->n] = *fr;
		b->orig[b->n++] = i;
	}
	return -1;
}

/* If the inner nic refuses a frame, the count returned stops there; frames
 * after it may already have been held or dropped, and the caller sends them
 * again, which TCP sees as duplication by the network. */
static int fault_tx(struct xt_nic *nic, const struct xt_frame *frames, int n, xt_time_t now)
{
	struct fault_nic *f = to_fault(nic);
	struct batch b = { .n = 0 };
	int refused = -1;

	if (n < 0)
		return -EINVAL;
	release_due(f, now);
	for (int i = 0; i < n && refused < 0; i++) {
		struct verdict v = decide(f, &frames[i], now);
		if (v.lost || (v.hold && hold(f, &frames[i], &v)))
			continue;
		if (v.corrupt) {
			if ((refused = batch_flush(f, &b, now)) < 0 && !send_corrupted(f, &frames[i], &v, now))
				refused = i;
			continue;
		}
		refused = batch_add(f, &b, &frames[i], i, v.dup, now);
	}
	if (refused < 0)
		refused = batch_flush(f, &b, now);
	return refused < 0 ? n : refused;
}

static int fault_rx(struct xt_nic *nic, struct xt_frame *frames, int n, xt_time_t now)
{
	struct fault_nic *f = to_fault(nic);

	release_due(f, now);
	return xt_nic_rx(f->inner, frames, n, now);
}

static int fault_wake_fd(struct xt_nic *nic) { return to_fault(nic)->inner->ops->wake_fd(to_fault(nic)->inner); }
static int fault_arm_wake(struct xt_nic *nic) { return to_fault(nic)->inner->ops->arm_wake(to_fault(nic)->inner); }

static xt_time_t fault_deadline(struct xt_nic *nic)
{
	struct fault_nic *f = to_fault(nic);
	xt_time_t inner = xt_nic_deadline(f->inner);

	if (f->nheld && f->heap[0].due < inner)
		return f->heap[0].due;
	return inner;
}

static void fault_free(struct fault_nic *f)
{
	free(f->pool);
	free(f->free_slots);
	free(f->heap);
	free(f->scratch);
	free(f);
}

static void fault_close(struct xt_nic *nic)
{
	struct fault_nic *f = to_fault(nic);

	xt_nic_close(f->inner);
	fault_free(f);
}

static void fault_rx_hold(struct xt_nic *nic, uint64_t ref) { xt_nic_rx_hold(to_fault(nic)->inner, ref); }
static void fault_rx_release(struct xt_nic *nic, uint64_t ref) { xt_nic_rx_release(to_fault(nic)->inner, ref); }
/* Held, duplicated and corrupted frames are copies (not gathered): only the
 * frames passed on as they are read the send buffers in place. */
static uint64_t fault_tx_buf_reg(struct xt_nic *nic, void *buf, uint32_t len)
{ return xt_nic_tx_buf_reg(to_fault(nic)->inner, buf, len); }
static void fault_tx_buf_unreg(struct xt_nic *nic, uint64_t h) { xt_nic_tx_buf_unreg(to_fault(nic)->inner, h); }
static int fault_tx_fence(struct xt_nic *nic) { return xt_nic_tx_fence(to_fault(nic)->inner); }

static const struct xt_nic_ops fault_ops = {
	.name = "fault",
	.rx_burst = fault_rx,
	.tx_burst = fault_tx,
	.wake_fd = fault_wake_fd,
	.arm_wake = fault_arm_wake,
	.next_deadline = fault_deadline,
	.close = fault_close,
	.rx_hold = fault_rx_hold,
	.rx_release = fault_rx_release,
	.tx_buf_reg = fault_tx_buf_reg,
	.tx_buf_unreg = fault_tx_buf_unreg,
	.tx_fence = fault_tx_fence,
};

/* Returns NULL (and leaves inner to the caller) when memory is short. */
struct xt_nic *xt_fault_wrap(struct xt_nic *inner, const struct xt_fault_cfg *cfg)
{
	struct fault_nic *f;

	if (!inner)
		return NULL;
	f = calloc(1, sizeof(*f));
	if (!f)
		return NULL;
	f->nic.ops = &fault_ops;
	f->nic.caps = inner->caps;
	f->nic.caps.tso_max = 0; /* its slots hold one MTU */
	/* A bit it flips must reach the peer as a bad checksum, so it never
	 * leaves a checksum for the inner device to finish after the flip. */
	if (f->nic.caps.tx_csum == XT_TX_CSUM_PARTIAL)
		f->nic.caps.tx_csum = XT_TX_CSUM_NONE;
	f->inner = inner;
	if (cfg)
		f->cfg = *cfg;
	/* A backend that leaves mtu unset is taken to carry 1500. */
	f->slot_size = (uint32_t)(inner->caps.mtu ? inner->caps.mtu : 1500) + (inner->caps.no_link_header ? 0 : 14);
	f->pool = malloc((size_t)FAULT_POOL * f->slot_size);
	f->free_slots = malloc(FAULT_POOL * sizeof(*f->free_slots));
	f->heap = malloc(FAULT_POOL * sizeof(*f->heap));
	f->scratch = malloc(f->slot_size);
	if (!f->pool || !f->free_slots || !f->heap || !f->scratch) {
		fault_free(f);
		return NULL;
	}
	for (uint32_t i = 0; i < FAULT_POOL; i++)
		f->free_slots[i] = FAULT_POOL - 1 - i;
	f->nfree = FAULT_POOL;
	return &f->nic;
}

const struct xt_fault_stats *xt_fault_stats(struct xt_nic *fault_nic)
{
	if (!fault_nic || fault_nic->ops != &fault_ops)
		return NULL;
	return &to_fault(fault_nic)->stats;
}
