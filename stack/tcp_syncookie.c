/* SYN cookies (RFC 4987 3.6), in the layout Linux uses: when a listener's
 * SYN queue is full the SYN-ACK's sequence number carries the connection
 * instead of a SYN_RECV socket.
 *
 *   ISN = H(4-tuple) + client ISN + (minute << 24) + ((H(4-tuple, minute) + mssind) mod 2^24)
 *
 * A cookie is good for two minutes.  The MSS is one of four table values;
 * window scale and SACK ride in the low six bits of our timestamp, so a peer
 * without timestamps gets neither (as with Linux). */
#include "tcp.h"

#define COOKIE_BITS 24
#define COOKIE_MASK ((1u << COOKIE_BITS) - 1)
#define COOKIE_MAX_AGE 2  /* minutes */
#define TS_OPT_BITS 6
#define TS_OPT_MASK ((1u << TS_OPT_BITS) - 1)
#define TS_NO_WSCALE 0xfu
#define TS_SACK 0x10u

static const uint16_t mss_table[] = { 536, 1300, 1440, 1460 };

static uint32_t cookie_hash(const struct xt_stack *st, const struct xt_seg *seg, uint32_t minute, uint32_t which)
{
	uint32_t in[5] = { seg->src, seg->dst, ((uint32_t)seg->sport << 16) | seg->dport, minute, which };
	return (uint32_t)xt_siphash(st->cfg.secret, in, sizeof(in));
}

static uint32_t minute_of(xt_time_t now) { return (uint32_t)(now / XT_SEC(60)); }

/* The cookie for a SYN; *mss gets the MSS it encodes (the largest table
 * value not above the peer's). */
uint32_t xt_syncookie_make(const struct xt_stack *st, const struct xt_seg *syn, uint16_t *mss, xt_time_t now)
{
	uint16_t peer = syn->has_mss ? syn->mss : XT_DEFAULT_MSS;
	uint32_t idx = 0;
	for (uint32_t i = 0; i < sizeof(mss_table) / sizeof(mss_table[0]); i++)
		if (mss_table[i] <= peer)
			idx = i;
	*mss = mss_table[idx];
	uint32_t m = minute_of(now);
	return cookie_hash(st, syn, 0, 0) + syn->seq + (m << COOKIE_BITS) +
	       ((cookie_hash(st, syn, m, 1) + idx) & COOKIE_MASK);
}

/* Checks the ACK that completes a cookie handshake; returns the MSS it
 * encodes, or 0 when the cookie is stale or forged. */
uint16_t xt_syncookie_check(const struct xt_stack *st, const struct xt_seg *ack, xt_time_t now)
{
	uint32_t cookie = ack->ack - 1, client_isn = ack->seq - 1;
	cookie -= cookie_hash(st, ack, 0, 0) + client_isn;
	uint32_t m = minute_of(now);
	uint32_t age = (m - (cookie >> COOKIE_BITS)) & (UINT32_MAX >> COOKIE_BITS);
	if (age >= COOKIE_MAX_AGE)
		return 0;
	uint32_t idx = (cookie - cookie_hash(st, ack, m - age, 1)) & COOKIE_MASK;
	return idx < sizeof(mss_table) / sizeof(mss_table[0]) ? mss_table[idx] : 0;
}

/* Timestamp for the cookie SYN-ACK: the clock with the options in its low bits. */
uint32_t xt_syncookie_ts(uint32_t ts_now, const struct xt_seg *syn, bool ws_ok, bool sack_ok)
{
	uint32_t opts = ws_ok && syn->has_ws ? syn->ws : TS_NO_WSCALE;
	if (sack_ok && syn->sack_perm)
		opts |= TS_SACK;
	uint32_t ts = (ts_now & ~TS_OPT_MASK) | opts;
	/* never behind the clock, or the peer's PAWS could drop later segments */
	return ts < ts_now ? ts + (1u << TS_OPT_BITS) : ts;
}

/* Options recovered from the echoed timestamp: peer window scale (-1 none), SACK. */
void xt_syncookie_opts(uint32_t tsecr, int *peer_ws, bool *sack)
{
	uint32_t ws = tsecr & 0xf;
	*peer_ws = ws == TS_NO_WSCALE ? -1 : (int)(ws > XT_MAX_WSCALE ? XT_MAX_WSCALE : ws);
	*sack = tsecr & TS_SACK;
}
