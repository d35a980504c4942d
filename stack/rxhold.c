/* Zero-copy receive: received frames kept in place until read.
 *
 * A data segment that arrives in order (no hole waiting to be filled) in a
 * frame the backend lets us keep is not copied into the socket's receive
 * ring: a record of its payload is queued on the socket, behind the ring's
 * bytes, and the application's read copies it straight from the frame, once
 * per byte from NIC buffer to user buffer (DESIGN.md).  The ring still
 * reserves the room (window and memory accounting are unchanged), so a kept
 * frame can always be moved into it:
 *   - when out-of-order data arrives (the ring's out-of-order room sits right
 *     after its readable bytes), or a segment that cannot be kept follows;
 *   - when the backend needs the frame's slot back: a frame is kept only
 *     until a frame rx_hold_window positions newer arrives, so a ring that
 *     lends frames in order is never blocked by one the application does not
 *     read (Linux has no such concern: its skbs are its own memory);
 *   - before fork (xt_stack_rx_unhold_all), as a child gets new rings.
 * The pool has rx_hold_window records: no allocation per packet.
 */
#include "tcp.h"

int xt_rxhold_init(struct xt_stack *st)
{
	uint32_t n = st->cfg.rx_hold_window;

	st->held = NULL;
	st->held_free = -1;
	st->held_n = 0;
	if (!n || !st->cfg.rx_hold || !st->cfg.rx_release) {
		st->cfg.rx_hold_window = 0;
		return 0;
	}
	if (n > 4096)
		n = st->cfg.rx_hold_window = 4096;
	st->held = calloc(n, sizeof(*st->held));
	if (!st->held) {
		st->cfg.rx_hold_window = 0;
		return -ENOMEM;
	}
	for (uint32_t i = 0; i < n; i++) {
		st->held[i].sock = -1;
		st->held[i].next = i + 1 < n ? (int32_t)(i + 1) : -1;
	}
	st->held_free = 0;
	return 0;
}

void xt_rxhold_free(struct xt_stack *st)
{
	free(st->held);
	st->held = NULL;
	st->held_free = -1;
	st->held_n = 0;
}

static void rec_free(struct xt_stack *st, int32_t i)
{
	st->cfg.rx_release(st->cfg.rx_ctx, st->held[i].ref);
	st->held[i].sock = -1;
	st->held[i].next = st->held_free;
	st->held_free = i;
	st->held_n--;
}

bool xt_rx_hold_seg(struct xt_stack *st, struct xt_sock *s, const uint8_t *p, uint32_t len)
{
	const struct xt_frame *f = st->rx_cur;
	int32_t i = st->held_free;

	if (st->rx_cur_held || i < 0 || s->nreass) /* rx_cur and XT_HOLD_MIN: checked inline */
		return false;
	if (p < f->data || p + len > f->data + f->len)
		return false; /* not in the frame (cannot happen; be sure) */
	struct xt_held *h = &st->held[i];
	st->held_free = h->next;
	st->held_n++;
	*h = (struct xt_held){ .p = p, .len = len, .sock = s->id, .next = -1, .ref = f->ref, .pos = f->pos };
	if (s->held_tail >= 0)
		st->held[s->held_tail].next = i;
	else
		s->held_head = i;
	s->held_tail = i;
	s->held_bytes += len;
	if (st->held_n == 1 || f->pos < st->held_min_pos)
		st->held_min_pos = f->pos;
	st->rx_cur_held = true;
	st->cnt.tcp_rx_held++;
	st->cfg.rx_hold(st->cfg.rx_ctx, f->ref);
	return true;
}

void xt_rx_compact(struct xt_stack *st, struct xt_sock *s)
{
	int32_t i = s->held_head;

	while (i >= 0) {
		struct xt_held *h = &st->held[i];
		int32_t next = h->next;
		uint32_t n = xt_ring_append(&s->rq, h->p, h->len);

		assert(n == h->len); /* the ring reserved the room */
		(void)n;
		s->held_bytes -= h->len;
		st->cnt.tcp_rx_hold_copied++;
		rec_free(st, i);
		i = next;
	}
	s->held_head = s->held_tail = -1;
	assert(s->held_bytes == 0);
}

void xt_rx_drop(struct xt_stack *st, struct xt_sock *s)
{
	int32_t i = s->held_head;

	while (i >= 0) {
		int32_t next = st->held[i].next;
		rec_free(st, i);
		i = next;
	}
	s->held_head = s->held_tail = -1;
	s->held_bytes = 0;
}

uint32_t xt_rx_read(struct xt_stack *st, struct xt_sock *s, uint8_t *dst, uint32_t n, bool peek)
{
	uint32_t done = 0;
	int32_t i = s->held_head;

	while (i >= 0 && done < n) {
		struct xt_held *h = &st->held[i];
		int32_t next = h->next;
		uint32_t k = n - done < h->len ? n - done : h->len;

		memcpy(dst + done, h->p, k);
		done += k;
		if (!peek) {
			h->p += k;
			h->len -= k;
			s->held_bytes -= k;
			if (!h->len) {
				s->held_head = next;
				if (next < 0)
					s->held_tail = -1;
				rec_free(st, i);
			}
		}
		i = next;
	}
	return done;
}

/* Copies the kept frames at positions below end into their sockets'
 * buffers: all of each owner's, so its stream stays in order.  A scan of the
 * small pool. */
static void compact_below(struct xt_stack *st, uint64_t end)
{
	for (uint32_t i = 0; st->held_n && i < st->cfg.rx_hold_window; i++) {
		if (st->held[i].sock >= 0 && st->held[i].pos < end) {
			struct xt_sock *s = xt_sock_get(st, st->held[i].sock);
			assert(s);
			if (s)
				xt_rx_compact(st, s);
		}
	}
}

void xt_rx_evict(struct xt_stack *st)
{
	uint64_t win = st->cfg.rx_hold_window, min = UINT64_MAX;

	if (!st->held_n || st->held_min_pos + win > st->rx_pos)
		return;
	compact_below(st, st->rx_pos - win + 1); /* rare: the application reads late */
	for (uint32_t i = 0; i < win; i++)
		if (st->held[i].sock >= 0 && st->held[i].pos < min)
			min = st->held[i].pos;
	st->held_min_pos = min;
}

void xt_stack_rx_unhold_all(struct xt_stack *st) { compact_below(st, UINT64_MAX); }

int xt_stack_set_rx_hold(struct xt_stack *st, uint32_t window, void (*hold)(void *, uint64_t),
			 void (*release)(void *, uint64_t), void *ctx)
{
	xt_stack_rx_unhold_all(st);
	xt_rxhold_free(st);
	st->cfg.rx_hold_window = window;
	st->cfg.rx_hold = hold;
	st->cfg.rx_release = release;
	st->cfg.rx_ctx = ctx;
	st->rx_pos = 0;
	return xt_rxhold_init(st);
}
