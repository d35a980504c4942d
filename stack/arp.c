/* ARP for IPv4 over Ethernet (RFC 826), with the host behaviour of RFC 1122
 * section 2.3.2: a bounded cache with aging, requests rate-limited to one per
 * second per address, and a bounded queue of frames waiting for resolution.
 *
 * Entry states:
 *   INCOMPLETE  request sent, no answer yet; output frames are queued.
 *   REACHABLE   MAC known until `expires`.
 *   PROBE       MAC expired but still used while unicast requests confirm it
 *               (RFC 1122 2.3.2.1 "unicast poll"); if none is answered the
 *               entry is deleted and the next output resolves afresh.
 *   STATIC      from xt_arp_add: never ages, never overwritten by the wire.
 * INCOMPLETE and PROBE entries sit on a retry FIFO.  Every (re)schedule puts
 * the entry at the tail with retry_at = now + 1 s, so with a monotonic clock
 * the FIFO is sorted and its head is the earliest deadline: polling and
 * xt_arp_deadline touch only entries that are due.
 *
 * All memory (cache and queue) is allocated in xt_arp_init; nothing on the
 * packet path allocates.  Indices (int32_t, NIL = -1) link everything.
 */
#include "xt_internal.h"

#define ARP_ENTRIES 1024 /* cache capacity */
#define ARP_BUCKETS 1024 /* power of two */
#define ARP_RETRY XT_SEC(1)
#define ARP_TRIES 3
#define NIL (-1)

enum arp_state { ARP_FREE, ARP_INCOMPLETE, ARP_REACHABLE, ARP_PROBE, ARP_STATIC };

struct arp_entry {
	uint32_t ip;
	uint8_t mac[6];
	uint8_t state;
	uint8_t tries;      /* requests sent in this INCOMPLETE/PROBE round */
	uint8_t on_retry;   /* linked on the retry FIFO */
	xt_time_t expires;  /* REACHABLE: MAC trusted until then */
	xt_time_t retry_at; /* INCOMPLETE/PROBE: next request, or give up */
	int32_t hnext;      /* hash chain; free list when FREE */
	int32_t rprev, rnext; /* retry FIFO */
	int32_t qhead, qtail; /* queued frames (INCOMPLETE only) */
};

struct xt_arp {
	struct arp_entry e[ARP_ENTRIES];
	int32_t bucket[ARP_BUCKETS];
	int32_t efree;        /* free entries */
	int32_t rhead, rtail; /* retry FIFO, sorted by retry_at */
	/* Pending-frame pool: cfg.arp_queue_max slots of XT_FRAME_MAX bytes. */
	uint32_t nslots;
	int32_t sfree;
	int32_t *snext;
	uint32_t *slen;
	uint8_t *sdata;
};

static const uint8_t bcast_mac[6] = { 0xff, 0xff, 0xff, 0xff, 0xff, 0xff };

static uint32_t arp_hash(uint32_t ip)
{
	return ((ip * 2654435761u) >> 22) & (ARP_BUCKETS - 1); /* Knuth multiplicative */
}

static uint8_t *slot_data(struct xt_arp *a, int32_t s)
{
	return a->sdata + (size_t)s * XT_FRAME_MAX;
}

/* --- cache bookkeeping --- */

static int32_t arp_find(const struct xt_arp *a, uint32_t ip)
{
	int32_t i = a->bucket[arp_hash(ip)];

	while (i != NIL && a->e[i].ip != ip)
		i = a->e[i].hnext;
	return i;
}

static void hash_unlink(struct xt_arp *a, int32_t i)
{
	int32_t *pp = &a->bucket[arp_hash(a->e[i].ip)];

	while (*pp != i)
		pp = &a->e[*pp].hnext;
	*pp = a->e[i].hnext;
}

static void retry_unlink(struct xt_arp *a, int32_t i)
{
	struct arp_entry *e = &a->e[i];

	if (!e->on_retry)
		return;
	if (e->rprev != NIL)
		a->e[e->rprev].rnext = e->rnext;
	else
		a->rhead = e->rnext;
	if (e->rnext != NIL)
		a->e[e->rnext].rprev = e->rprev;
	else
		a->rtail = e->rprev;
	e->rprev = e->rnext = NIL;
	e->on_retry = 0;
}

/* Appends to the retry FIFO; the entry must not be on it. */
static void retry_append(struct xt_arp *a, int32_t i, xt_time_t at)
{
	struct arp_entry *e = &a->e[i];

	assert(!e->on_retry);
	e->on_retry = 1;
	e->retry_at = at;
	e->rnext = NIL;
	e->rprev = a->rtail;
	if (a->rtail != NIL)
		a->e[a->rtail].rnext = i;
	else
		a->rhead = i;
	a->rtail = i;
}

/* Returns the entry's queued frames to the pool; returns how many. */
static uint32_t queue_release(struct xt_arp *a, struct arp_entry *e)
{
	uint32_t n = 0;

	while (e->qhead != NIL) {
		int32_t s = e->qhead;

		e->qhead = a->snext[s];
		a->snext[s] = a->sfree;
		a->sfree = s;
		n++;
	}
	e->qtail = NIL;
	return n;
}

/* Deletes an entry; returns how many queued frames it dropped. */
static uint32_t entry_release(struct xt_arp *a, int32_t i)
{
	struct arp_entry *e = &a->e[i];
	uint32_t n = queue_release(a, e);

	retry_unlink(a, i);
	hash_unlink(a, i);
	e->state = ARP_FREE;
	e->hnext = a->efree;
	a->efree = i;
	return n;
}

/* With the cache full, the victim is the REACHABLE entry that expires first
 * (an expired one if any).  Static, unresolved and probing entries stay:
 * evicting them would lose queued frames or a retry in progress.  This scan
 * runs only when the cache is full. */
static int32_t arp_evict(struct xt_arp *a)
{
	int32_t victim = NIL;

	for (int32_t i = 0; i < ARP_ENTRIES; i++) {
		const struct arp_entry *e = &a->e[i];

		if (e->state == ARP_REACHABLE &&
		    (victim == NIL || e->expires < a->e[victim].expires))
			victim = i;
	}
	if (victim != NIL)
		entry_release(a, victim);
	return victim;
}

/* A new entry for ip in state `state`, or NIL when the cache is full of
 * entries that must not be evicted. */
static int32_t arp_alloc(struct xt_arp *a, uint32_t ip, uint8_t state)
{
	int32_t i = a->efree;
	uint32_t h = arp_hash(ip);

	if (i == NIL && arp_evict(a) == NIL)
		return NIL;
	i = a->efree;
	a->efree = a->e[i].hnext;
	a->e[i] = (struct arp_entry){
		.ip = ip, .state = state, .hnext = a->bucket[h],
		.rprev = NIL, .rnext = NIL, .qhead = NIL, .qtail = NIL,
	};
	a->bucket[h] = i;
	return i;
}

/* --- frames we build --- */

/* One ARP packet from us (sha = cfg.mac, spa = cfg.ip), RFC 826 format. */
static void arp_send(struct xt_stack *st, uint16_t op, const uint8_t eth_dst[6],
		     const uint8_t tha[6], uint32_t tpa)
{
	static const uint8_t zero_mac[6];
	uint8_t *f = xt_tx_buf(st);
	uint8_t *p = f + XT_ETH_HLEN;

	assert(f != NULL);
	memcpy(f + XT_ETH_DST, eth_dst, 6);
	memcpy(f + XT_ETH_SRC, st->cfg.mac, 6);
	xt_wr16(f + XT_ETH_TYPE_be16, XT_ETHERTYPE_ARP);
	xt_wr16(p + XT_ARP_HTYPE_be16, 1);
	xt_wr16(p + XT_ARP_PTYPE_be16, XT_ETHERTYPE_IPV4);
	p[XT_ARP_HLEN] = 6;
	p[XT_ARP_PLEN] = 4;
	xt_wr16(p + XT_ARP_OP_be16, op);
	memcpy(p + XT_ARP_SHA, st->cfg.mac, 6);
	xt_wr32(p + XT_ARP_SPA_be32, st->cfg.ip);
	memcpy(p + XT_ARP_THA, tha ? tha : zero_mac, 6);
	xt_wr32(p + XT_ARP_TPA_be32, tpa);
	/* 42 bytes: padding to the 60-byte Ethernet minimum is the NIC's job,
	 * as for every short frame we send. */
	xt_tx_commit(st, XT_ETH_HLEN + XT_ARP_LEN);
}

/* INCOMPLETE asks everyone; PROBE asks the cached MAC directly (RFC 1122
 * 2.3.2.1), the way Linux's unicast probes do. */
static void arp_request(struct xt_stack *st, const struct arp_entry *e)
{
	arp_send(st, XT_ARP_OP_REQUEST, e->state == ARP_PROBE ? e->mac : bcast_mac, NULL, e->ip);
	XT_CNT(st, arp_tx_request);
}

/* Sends the frames that waited for this entry, in the order they came. */
static void queue_flush(struct xt_stack *st, struct arp_entry *e)
{
	struct xt_arp *a = st->arp;

	for (int32_t s = e->qhead; s != NIL; s = a->snext[s]) {
		uint8_t *f = xt_tx_buf(st);

		assert(f != NULL);
		memcpy(f, slot_data(a, s), a->slen[s]);
		memcpy(f + XT_ETH_DST, e->mac, 6);
		xt_tx_commit(st, a->slen[s]);
	}
	queue_release(a, e);
}

/* Copies a frame to the tail of the entry's queue; false when the pool is
 * empty. */
static bool queue_push(struct xt_arp *a, struct arp_entry *e, const uint8_t *frame, uint32_t len)
{
	int32_t s = a->sfree;

	if (s == NIL)
		return false;
	a->sfree = a->snext[s];
	memcpy(slot_data(a, s), frame, len);
	a->slen[s] = len;
	a->snext[s] = NIL;
	if (e->qtail != NIL)
		a->snext[e->qtail] = s;
	else
		e->qhead = s;
	e->qtail = s;
	return true;
}

/* --- learning --- */

/* The entry now maps to mac: it becomes REACHABLE and anything waiting goes
 * out. */
static void arp_learn(struct xt_stack *st, int32_t i, const uint8_t mac[6], xt_time_t now)
{
	struct xt_arp *a = st->arp;
	struct arp_entry *e = &a->e[i];

	retry_unlink(a, i);
	memcpy(e->mac, mac, 6);
	e->state = ARP_REACHABLE;
	e->tries = 0;
	e->expires = now + XT_MS(st->cfg.arp_timeout_ms);
	queue_flush(st, e);
}

/* A sender MAC we may answer or learn: unicast and not ours (our own frame
 * looped back, or a forgery). */
static bool sender_mac_usable(const struct xt_stack *st, const uint8_t *sha)
{
	return !(sha[0] & 1) && memcmp(sha, st->cfg.mac, 6) != 0;
}

/* A sender address that could be a neighbour: not broadcast, multicast,
 * loopback or our own (the last is an address conflict, not a neighbour). */
static bool sender_ip_usable(const struct xt_stack *st, uint32_t spa)
{
	return spa != 0xffffffffu && (spa >> 28) != 0xe && (spa >> 24) != 127 && spa != st->cfg.ip;
}

static bool arp_wellformed(const uint8_t *p, uint32_t len)
{
	uint16_t op;

	if (len < XT_ARP_LEN)
		return false;
	if (xt_rd16(p + XT_ARP_HTYPE_be16) != 1 || xt_rd16(p + XT_ARP_PTYPE_be16) != XT_ETHERTYPE_IPV4 ||
	    p[XT_ARP_HLEN] != 6 || p[XT_ARP_PLEN] != 4)
		return false;
	op = xt_rd16(p + XT_ARP_OP_be16);
	return op == XT_ARP_OP_REQUEST || op == XT_ARP_OP_REPLY;
}

/* An RFC 5227 probe (sender address 0) for our address: defend it with a
 * reply to the prober's MAC, but learn nothing. */
static void arp_probe_input(struct xt_stack *st, const uint8_t *p)
{
	const uint8_t *sha = p + XT_ARP_SHA;

	if (xt_rd16(p + XT_ARP_OP_be16) != XT_ARP_OP_REQUEST ||
	    xt_rd32(p + XT_ARP_TPA_be32) != st->cfg.ip) {
		XT_CNT(st, drop_arp_not_for_us);
		return;
	}
	arp_send(st, XT_ARP_OP_REPLY, sha, sha, 0);
	XT_CNT(st, arp_tx_reply);
}

/* pkt is the ARP packet after the Ethernet header. */
void xt_arp_input(struct xt_stack *st, const uint8_t *pkt, uint32_t len, xt_time_t now)
{
	struct xt_arp *a = st->arp;
	const uint8_t *sha = pkt + XT_ARP_SHA;
	uint32_t spa, tpa;
	int32_t i;

	if (a == NULL || !arp_wellformed(pkt, len)) {
		XT_CNT(st, drop_arp_malformed);
		return;
	}
	XT_CNT(st, arp_rx);
	spa = xt_rd32(pkt + XT_ARP_SPA_be32);
	tpa = xt_rd32(pkt + XT_ARP_TPA_be32);
	if (!sender_mac_usable(st, sha)) {
		XT_CNT(st, drop_arp_malformed);
		return;
	}
	if (spa == 0) {
		arp_probe_input(st, pkt);
		return;
	}
	if (!sender_ip_usable(st, spa)) {
		XT_CNT(st, drop_arp_malformed);
		return;
	}
	/* RFC 826 "Packet Reception": merge the sender into an existing entry
	 * whoever the target is; add a new entry only when we are the target.
	 * Static entries are the operator's word and are left alone. */
	i = arp_find(a, spa);
	if (i == NIL && tpa == st->cfg.ip)
		i = arp_alloc(a, spa, ARP_INCOMPLETE);
	if (i != NIL && a->e[i].state != ARP_STATIC)
		arp_learn(st, i, sha, now);
	if (tpa != st->cfg.ip) {
		XT_CNT(st, drop_arp_not_for_us);
		return;
	}
	if (xt_rd16(pkt + XT_ARP_OP_be16) == XT_ARP_OP_REQUEST) {
		arp_send(st, XT_ARP_OP_REPLY, sha, sha, spa);
		XT_CNT(st, arp_tx_reply);
	}
}

/* --- output --- */

/* First frame to an unknown address: a new INCOMPLETE entry, the frame
 * queued, and the first request out. */
static int arp_resolve(struct xt_stack *st, uint32_t nexthop, const uint8_t *frame, uint32_t len,
		       xt_time_t now)
{
	struct xt_arp *a = st->arp;
	int32_t i = arp_alloc(a, nexthop, ARP_INCOMPLETE);
	bool queued;

	if (i == NIL) {
		XT_CNT(st, arp_queue_full);
		return -ENOBUFS;
	}
	/* Copy before building the request: the request may reuse frame's buffer. */
	queued = queue_push(a, &a->e[i], frame, len);
	a->e[i].tries = 1;
	retry_append(a, i, now + ARP_RETRY);
	arp_request(st, &a->e[i]);
	if (!queued) {
		XT_CNT(st, arp_queue_full);
		return -ENOBUFS;
	}
	return 0;
}

/* An expired mapping is still used while it is being confirmed. */
static void arp_start_probe(struct xt_stack *st, int32_t i, xt_time_t now)
{
	struct arp_entry *e = &st->arp->e[i];

	e->state = ARP_PROBE;
	e->tries = 1;
	retry_append(st->arp, i, now + ARP_RETRY);
	arp_request(st, e);
}

int xt_arp_output(struct xt_stack *st, uint32_t nexthop, uint8_t *frame, uint32_t len, xt_time_t now)
{
	struct xt_arp *a = st->arp;
	int32_t i = arp_find(a, nexthop);
	struct arp_entry *e;

	assert(len <= XT_FRAME_MAX || xt_tx_building_big(st));
	e = i == NIL ? NULL : &a->e[i];
	if (!e || e->state == ARP_INCOMPLETE) {
		if (xt_tx_building_big(st)) {
			/* A TSO segment does not go in the queue (which
			 * sends plain frames): lost, TCP resends it once
			 * the neighbour answers. */
			xt_tx_drop_build(st);
			XT_CNT(st, arp_queue_full);
			return -ENOBUFS;
		}
		/* The queue outlives the batch: the frame must be whole. */
		xt_tx_materialize(st, frame, len);
	}
	if (i == NIL)
		return arp_resolve(st, nexthop, frame, len, now);
	if (e->state == ARP_INCOMPLETE) {
		if (!queue_push(a, e, frame, len)) {
			XT_CNT(st, arp_queue_full);
			return -ENOBUFS;
		}
		return 0;
	}
	memcpy(frame + XT_ETH_DST, e->mac, 6);
	xt_tx_commit(st, len);
	/* After the commit: the request takes the next TX buffer, which would
	 * otherwise be frame's. */
	if (e->state == ARP_REACHABLE && now >= e->expires)
		arp_start_probe(st, i, now);
	return 0;
}

/* --- timers --- */

/* RFC 1122 2.3.2.1: at most one request per second per address; after
 * ARP_TRIES unanswered requests the address is given up, and frames that
 * waited for it are dropped. */
static void arp_retry(struct xt_stack *st, int32_t i, xt_time_t now)
{
	struct xt_arp *a = st->arp;
	struct arp_entry *e = &a->e[i];

	retry_unlink(a, i);
	if (e->tries >= ARP_TRIES) {
		st->cnt.arp_resolve_failed += entry_release(a, i);
		return;
	}
	e->tries++;
	retry_append(a, i, now + ARP_RETRY);
	arp_request(st, e);
}

void xt_arp_poll(struct xt_stack *st, xt_time_t now)
{
	struct xt_arp *a = st->arp;

	if (a == NULL)
		return;
	while (a->rhead != NIL && a->e[a->rhead].retry_at <= now)
		arp_retry(st, a->rhead, now);
}

uint32_t xt_arp_forget_queued(struct xt_stack *st)
{
	struct xt_arp *a = st->arp;
	uint32_t n = 0;

	if (a == NULL)
		return 0;
	for (int32_t i = 0; i < ARP_ENTRIES; i++)
		if (a->e[i].state != ARP_FREE)
			n += queue_release(a, &a->e[i]);
	return n;
}

xt_time_t xt_arp_deadline(const struct xt_stack *st)
{
	const struct xt_arp *a = st->arp;

	if (a == NULL || a->rhead == NIL)
		return XT_TIME_NEVER;
	return a->e[a->rhead].retry_at;
}

/* --- setup and the public static-entry call --- */

int xt_arp_add(struct xt_stack *st, uint32_t ip, const uint8_t mac[6], xt_time_t now)
{
	struct xt_arp *a;
	int32_t i;

	if (st == NULL || mac == NULL || ip == 0 || (mac[0] & 1))
		return -EINVAL;
	a = st->arp;
	if (a == NULL)
		return -EOPNOTSUPP; /* no_link_header: there is no ARP */
	i = arp_find(a, ip);
	if (i == NIL && (i = arp_alloc(a, ip, ARP_INCOMPLETE)) == NIL)
		return -ENOSPC;
	arp_learn(st, i, mac, now); /* sends anything that waited for it */
	a->e[i].state = ARP_STATIC;
	return 0;
}

static void arp_pool_init(struct xt_arp *a, uint32_t nslots)
{
	a->nslots = nslots;
	a->sfree = nslots ? 0 : NIL;
	for (uint32_t s = 0; s < nslots; s++)
		a->snext[s] = s + 1 < nslots ? (int32_t)(s + 1) : NIL;
}

int xt_arp_init(struct xt_stack *st)
{
	uint32_t n = st->cfg.arp_queue_max;
	struct xt_arp *a;

	st->arp = NULL;
	if (st->cfg.no_link_header)
		return 0;
	if (n > INT32_MAX / 2)
		return -EINVAL;
	a = calloc(1, sizeof(*a));
	if (a == NULL)
		return -ENOMEM;
	a->snext = calloc(n ? n : 1, sizeof(*a->snext));
	a->slen = calloc(n ? n : 1, sizeof(*a->slen));
	a->sdata = calloc(n ? n : 1, XT_FRAME_MAX);
	if (a->snext == NULL || a->slen == NULL || a->sdata == NULL) {
		st->arp = a;
		xt_arp_free(st);
		return -ENOMEM;
	}
	for (int32_t b = 0; b < ARP_BUCKETS; b++)
		a->bucket[b] = NIL;
	for (int32_t i = 0; i < ARP_ENTRIES; i++)
		a->e[i].hnext = i + 1 < ARP_ENTRIES ? i + 1 : NIL;
	a->efree = 0;
	a->rhead = a->rtail = NIL;
	arp_pool_init(a, n);
	st->arp = a;
	return 0;
}

void xt_arp_free(struct xt_stack *st)
{
	struct xt_arp *a = st->arp;

	if (a == NULL)
		return;
	free(a->snext);
	free(a->slen);
	free(a->sdata);
	free(a);
	st->arp = NULL;
}
