/* SipHash-2-4 (Aumasson and Bernstein, "SipHash: a fast short-input PRF",
 * 2012), as the reference implementation: the 128-bit key is k0 = key[0],
 * k1 = key[1], message words are read little-endian, and the last word
 * carries the message length in its top byte.  Used for RFC 6528 ISNs and
 * RFC 6056 port selection, where inputs are short and attacker-chosen.
 */
#include "xt_internal.h"

#define ROTL64(x, b) (((x) << (b)) | ((x) >> (64 - (b))))

struct sip_state {
	uint64_t v0, v1, v2, v3;
};

static inline void sip_round(struct sip_state *s)
{
	s->v0 += s->v1;
	s->v1 = ROTL64(s->v1, 13);
	s->v1 ^= s->v0;
	s->v0 = ROTL64(s->v0, 32);
	s->v2 += s->v3;
	s->v3 = ROTL64(s->v3, 16);
	s->v3 ^= s->v2;
	s->v0 += s->v3;
	s->v3 = ROTL64(s->v3, 21);
	s->v3 ^= s->v0;
	s->v2 += s->v1;
	s->v1 = ROTL64(s->v1, 17);
	s->v1 ^= s->v2;
	s->v2 = ROTL64(s->v2, 32);
}

/* Little-endian load of n <= 8 bytes, independent of host byte order. */
static inline uint64_t load_le(const uint8_t *p, size_t n)
{
	uint64_t v = 0;

	for (size_t i = 0; i < n; i++)
		v |= (uint64_t)p[i] << (8 * i);
	return v;
}

/* Compression: c = 2 rounds per message word. */
static inline void sip_absorb(struct sip_state *s, uint64_t m)
{
	s->v3 ^= m;
	sip_round(s);
	sip_round(s);
	s->v0 ^= m;
}

uint64_t xt_siphash(const uint64_t key[2], const void *data, size_t len)
{
	const uint8_t *p = data;
	struct sip_state s = {
		.v0 = key[0] ^ 0x736f6d6570736575ull, /* "somepseu" */
		.v1 = key[1] ^ 0x646f72616e646f6dull, /* "dorandom" */
		.v2 = key[0] ^ 0x6c7967656e657261ull, /* "lygenera" */
		.v3 = key[1] ^ 0x7465646279746573ull, /* "tedbytes" */
	};
	size_t left = len;

	for (; left >= 8; p += 8, left -= 8)
		sip_absorb(&s, load_le(p, 8));
	sip_absorb(&s, load_le(p, left) | ((uint64_t)(len & 0xff) << 56));

	/* Finalization: d = 4 rounds. */
	s.v2 ^= 0xff;
	for (int i = 0; i < 4; i++)
		sip_round(&s);
	return s.v0 ^ s.v1 ^ s.v2 ^ s.v3;
}
