/* Connection lookup (4-tuple hash), bound ports, bind conflicts and
 * ephemeral port choice. */
#include "tcp.h"

static uint32_t mix(uint32_t a, uint32_t b, uint32_t c)
{
	/* Bob Jenkins' final mix: cheap and spreads the 4-tuple well. */
	c ^= b; c -= (b << 14) | (b >> 18);
	a ^= c; a -= (c << 11) | (c >> 21);
	b ^= a; b -= (a << 25) | (a >> 7);
	c ^= b; c -= (b << 16) | (b >> 16);
	a ^= c; a -= (c << 4) | (c >> 28);
	b ^= a; b -= (a << 14) | (a >> 18);
	c ^= b; c -= (b << 24) | (b >> 8);
	return c;
}

static uint32_t ehash_fn(const struct xt_stack *st, uint32_t lip, uint16_t lport, uint32_t rip,
			 uint16_t rport)
{
	return mix(lip, rip, ((uint32_t)lport << 16) | rport) & st->ehash_mask;
}

void xt_ehash_insert(struct xt_stack *st, struct xt_sock *s)
{
	assert(!s->in_ehash);
	uint32_t h = ehash_fn(st, s->lip, s->lport, s->rip, s->rport);
	s->enext = st->ehash[h];
	st->ehash[h] = s;
	s->in_ehash = 1;
}

void xt_ehash_remove(struct xt_stack *st, struct xt_sock *s)
{
	uint32_t h = ehash_fn(st, s->lip, s->lport, s->rip, s->rport);
	for (struct xt_sock **pp = &st->ehash[h]; *pp; pp = &(*pp)->enext)
		if (*pp == s) {
			*pp = s->enext;
			break;
		}
	s->in_ehash = 0;
	s->enext = NULL;
}

struct xt_sock *xt_ehash_lookup(struct xt_stack *st, uint32_t lip, uint16_t lport, uint32_t rip,
				uint16_t rport)
{
	uint32_t h = ehash_fn(st, lip, lport, rip, rport);
	for (struct xt_sock *s = st->ehash[h]; s; s = s->enext)
		if (s->lport == lport && s->rport == rport && s->rip == rip && s->lip == lip)
			return s;
	return NULL;
}

/* Every socket on a port shares its chain (all of a server's accepted
 * connections and their TIME_WAITs sit with the listener's port), so removal
 * must not walk it: the chain is doubly linked, as Linux's hlist. */
void xt_bhash_insert(struct xt_stack *st, struct xt_sock *s)
{
	uint32_t h = s->lport & st->bhash_mask;
	s->bnext = st->bhash[h];
	if (s->bnext)
		s->bnext->bpprev = &s->bnext;
	st->bhash[h] = s;
	s->bpprev = &st->bhash[h];
	s->bound = 1;
}

void xt_bhash_remove(struct xt_stack *st, struct xt_sock *s)
{
	(void)st;
	if (s->bpprev) {
		*s->bpprev = s->bnext;
		if (s->bnext)
			s->bnext->bpprev = s->bpprev;
	}
	s->bound = 0;
	s->bnext = NULL;
	s->bpprev = NULL;
}

void xt_lhash_insert(struct xt_stack *st, struct xt_sock *s)
{
	uint32_t h = s->lport & st->bhash_mask;
	s->lnext = st->lhash[h];
	st->lhash[h] = s;
	s->in_lhash = 1;
}

void xt_lhash_remove(struct xt_stack *st, struct xt_sock *s)
{
	uint32_t h = s->lport & st->bhash_mask;
	for (struct xt_sock **pp = &st->lhash[h]; *pp; pp = &(*pp)->lnext)
		if (*pp == s) {
			*pp = s->lnext;
			break;
		}
	s->in_lhash = 0;
	s->lnext = NULL;
}

/* Listener for a SYN: an exact local address beats the wildcard; among
 * SO_REUSEPORT listeners the 4-tuple hash picks one, so a flow always lands
 * on the same listener (as Linux's reuseport groups). */
struct xt_sock *xt_listener_lookup(struct xt_stack *st, const struct xt_seg *seg)
{
	struct xt_sock *cand[64];
	int n = 0, exact = 0;
	uint32_t h = seg->dport & st->bhash_mask;
	for (struct xt_sock *s = st->lhash[h]; s; s = s->lnext) {
		if (s->state != XT_LISTEN || s->lport != seg->dport)
			continue;
		if (s->lip != 0 && s->lip != seg->dst)
			continue;
		int is_exact = s->lip != 0;
		if (is_exact && !exact) {
			n = 0;
			exact = 1;
		} else if (!is_exact && exact) {
			continue;
		}
		if (n < 64)
			cand[n++] = s;
	}
	if (n == 0)
		return NULL;
	if (n == 1)
		return cand[0];
	/* The bhash list is newest-first; pick deterministically by flow. */
	uint32_t k = mix(seg->src, seg->dst, ((uint32_t)seg->sport << 16) | seg->dport);
	return cand[k % (uint32_t)n];
}

/* Linux inet_csk_bind_conflict(): sockets on one port conflict when their
 * addresses overlap, unless both set SO_REUSEADDR and the other is not
 * listening (binding, relax) or neither listens, or both set SO_REUSEPORT. */
static bool conflicts(const struct xt_sock *s, const struct xt_sock *o, uint32_t ip, bool listening)
{
	if (o == s || (o->lip && ip && o->lip != ip))
		return false;
	if (s->reuseport && o->reuseport)
		return false;
	(void)listening; /* Linux relaxes the same way for bind() and listen() */
	if (s->reuseaddr && o->reuseaddr && o->state != XT_LISTEN)
		return false;
	return true;
}

int xt_bind_check(struct xt_stack *st, struct xt_sock *s, uint32_t ip, uint16_t port, bool listening)
{
	uint32_t h = port & st->bhash_mask;
	for (struct xt_sock *o = st->bhash[h]; o; o = o->bnext)
		if (o->lport == port && conflicts(s, o, ip, listening))
			return -EADDRINUSE;
	return 0;
}

static bool port_usable_for_connect(struct xt_stack *st, struct xt_sock *s, uint16_t port,
				    uint32_t rip, uint16_t rport)
{
	uint32_t h = port & st->bhash_mask;
	for (struct xt_sock *o = st->bhash[h]; o; o = o->bnext) {
		if (o->lport != port || o == s)
			continue;
		/* A port bound explicitly, or listening, is not shared by connect;
		 * ports taken by connect() are shared across distinct 4-tuples. */
		if (o->state == XT_LISTEN || o->state == XT_CLOSE)
			return false;
		if (o->rip == rip && o->rport == rport)
			return false;
	}
	return true;
}

/* RFC 6056 3.3.3 (double-hash flavour as Linux): start at a keyed hash of the
 * destination and walk the range. */
int xt_ephemeral_port(struct xt_stack *st, struct xt_sock *s, uint32_t rip, uint16_t rport)
{
	uint32_t lo = st->cfg.port_lo, n = (uint32_t)st->cfg.port_hi - lo + 1;
	uint32_t key[3] = { s->lip, rip, rport };
	uint32_t off = (uint32_t)xt_siphash(st->cfg.secret, key, sizeof(key)) + st->port_hint;
	st->port_hint += 2;
	for (uint32_t i = 0; i < n; i++) {
		uint16_t port = (uint16_t)(lo + (off + i) % n);
		if (port_usable_for_connect(st, s, port, rip, rport))
			return port;
	}
	return -EADDRNOTAVAIL;
}
