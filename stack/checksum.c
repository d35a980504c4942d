/* Internet checksum (RFC 1071).
 *
 * The one's-complement sum is independent of byte order and of word size
 * (RFC 1071 section 2 (B) and (C)): we add the buffer as native 64-bit words
 * with end-around carry, fold to 16 bits, and byte-swap once at the end on a
 * little-endian host.  Loads go through memcpy, so any alignment is correct
 * (and is a plain unaligned load on x86 and arm64).
 *
 * Chained calls must start each chunk at an even offset of the whole
 * datagram (only the last chunk may be odd), so word pairing restarts cleanly
 * at every chunk.
 */
#include "xt_internal.h"

/* 64-bit one's-complement addition: the carry out wraps around into bit 0.
 * r + 1 cannot overflow after a carry because then r <= 2^64 - 2. */
static inline uint64_t oc_add64(uint64_t a, uint64_t b)
{
	uint64_t r;

	if (__builtin_add_overflow(a, b, &r))
		r++;
	return r;
}

static inline uint64_t load64(const uint8_t *p)
{
	uint64_t v;

	memcpy(&v, p, sizeof(v));
	return v;
}

/* Folds a 64-bit one's-complement sum to 16 bits without losing carries. */
static inline uint32_t fold64(uint64_t s)
{
	s = (s & 0xffffffffu) + (s >> 32);
	s = (s & 0xffffffffu) + (s >> 32);
	s = (s & 0xffffu) + (s >> 16);
	s = (s & 0xffffu) + (s >> 16);
	s = (s & 0xffffu) + (s >> 16);
	return (uint32_t)s;
}

/* Sum of the buffer in native byte order, as 16 bits. */
static uint32_t sum_native(const uint8_t *p, size_t len)
{
	uint64_t a = 0, b = 0;

	/* Two independent carry chains keep both adders busy. */
	for (; len >= 32; p += 32, len -= 32) {
		a = oc_add64(a, load64(p));
		b = oc_add64(b, load64(p + 8));
		a = oc_add64(a, load64(p + 16));
		b = oc_add64(b, load64(p + 24));
	}
	for (; len >= 8; p += 8, len -= 8)
		a = oc_add64(a, load64(p));
	if (len) {
		/* The tail keeps its byte positions inside a zeroed word, so an odd
		 * last byte becomes the high byte of a zero-padded 16-bit word
		 * (RFC 1071 section 4.1). */
		uint8_t tail[8] = { 0 };

		memcpy(tail, p, len);
		b = oc_add64(b, load64(tail));
	}
	return fold64(oc_add64(a, b));
}

uint32_t xt_csum_add(uint32_t sum, const void *data, size_t len)
{
	uint32_t s = sum_native(data, len);

#if __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
	s = (uint32_t)__builtin_bswap16((uint16_t)s);
#endif
	/* Fold the caller's running sum too, so the result stays <= 0xffff and
	 * callers may keep adding a few 16-bit words by hand. */
	return fold64((uint64_t)sum + s);
}

uint16_t xt_csum_fold(uint32_t sum)
{
	return (uint16_t)~fold64(sum);
}

/* The TCP/UDP pseudo-header (RFC 9293 section 3.1; RFC 768): source and
 * destination address, zero, protocol and L4 length, as 16-bit words. */
uint32_t xt_csum_pseudo(uint32_t src, uint32_t dst, uint8_t proto, uint16_t len)
{
	uint64_t s = (uint64_t)(src >> 16) + (src & 0xffffu) + (dst >> 16) + (dst & 0xffffu) +
		     proto + len;

	return fold64(s);
}
