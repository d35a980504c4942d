/* Byte rings for socket buffers: their memory is the engine's (stack.c,
 * once per connection, never per packet). */
#include "tcp.h"

void xt_ring_init(struct xt_ring *r, uint8_t *buf, uint32_t cap, uint64_t key)
{
	r->buf = buf;
	r->key = key;
	r->cap = cap;
	r->head = 0;
	r->len = 0;
}

/* Copies n bytes to ring position pos (modulo cap), wrapping once. */
static void ring_put(struct xt_ring *r, uint32_t pos, const uint8_t *src, uint32_t n)
{
	pos %= r->cap;
	uint32_t first = r->cap - pos < n ? r->cap - pos : n;
	memcpy(r->buf + pos, src, first);
	if (n > first)
		memcpy(r->buf, src + first, n - first);
}

uint32_t xt_ring_append(struct xt_ring *r, const void *data, uint32_t n)
{
	uint32_t room = r->cap - r->len;
	if (n > room)
		n = room;
	if (n) {
		ring_put(r, r->head + r->len, data, n);
		r->len += n;
	}
	return n;
}

void xt_ring_write_at(struct xt_ring *r, uint32_t off, const void *data, uint32_t n)
{
	assert((uint64_t)r->len + off + n <= r->cap);
	if (n)
		ring_put(r, r->head + r->len + off, data, n);
}

void xt_ring_peek(const struct xt_ring *r, uint32_t off, void *dst, uint32_t n)
{
	assert((uint64_t)off + n <= r->cap);
	if (!n)
		return;
	uint32_t pos = (r->head + off) % r->cap;
	uint32_t first = r->cap - pos < n ? r->cap - pos : n;
	memcpy(dst, r->buf + pos, first);
	if (n > first)
		memcpy((uint8_t *)dst + first, r->buf, n - first);
}

/* The free space after the bytes held, as up to two spans (it wraps). */
uint32_t xt_ring_free_span(struct xt_ring *r, uint8_t *p[2], uint32_t len[2])
{
	uint32_t room = r->cap - r->len;
	uint32_t pos = r->cap ? (r->head + r->len) % r->cap : 0;
	uint32_t first = r->cap - pos < room ? r->cap - pos : room;
	p[0] = r->buf + pos;
	len[0] = first;
	p[1] = r->buf;
	len[1] = room - first;
	return room;
}

void xt_ring_span(const struct xt_ring *r, uint32_t off, uint32_t n, const uint8_t *p[2], uint32_t len[2])
{
	assert((uint64_t)off + n <= r->cap);
	uint32_t pos = (r->head + off) % r->cap;
	uint32_t first = r->cap - pos < n ? r->cap - pos : n;
	p[0] = r->buf + pos;
	len[0] = first;
	p[1] = r->buf;
	len[1] = n - first;
}

void xt_ring_consume(struct xt_ring *r, uint32_t n)
{
	assert(n <= r->len);
	r->head = (r->head + n) % r->cap;
	r->len -= n;
	/* head is not reset when empty here: out-of-order bytes live at fixed
	 * offsets beyond head + len.  Callers that know there are none rewind
	 * (xt_ring_rewind). */
}
