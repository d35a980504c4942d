/* In-memory wire between two nics, in virtual time.
 *
 * Each direction models a link: a bounded transmit queue drained at
 * bandwidth_bps (serialization), then a fixed propagation delay.  A frame
 * sent at `now` leaves the queue at
 *     depart = max(now, link_free_at) + len * 8 / bandwidth
 * and can be received from
 *     arrive = depart + latency.
 * Arrivals never go backwards, so each direction is one FIFO ring.
 *
 * Storage: every direction preallocates a ring of fixed-size slots (no malloc
 * per frame).  A slot is used from tx_burst until the receiver's next
 * rx_burst after the one that delivered it (nic.h: received data stays valid
 * until the next rx_burst), so the ring has room for the queue, the frames in
 * flight and the frames lent to the receiver.
 */
#include <assert.h>
#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "nic.h"
#include "loop_priv.h"

#define LOOP_DEFAULT_QUEUE 1024
#define LOOP_DEFAULT_MTU 1500
#define LOOP_ETH_HLEN 14
#define LOOP_MIN_FRAME 60        /* shortest Ethernet frame without FCS */
#define LOOP_LEND_MAX 256        /* frames one rx_burst may lend out */
#define LOOP_HOLD_WINDOW 32      /* caps.rx_hold_window: a receiver keeps frames in place */
#define LOOP_INFLIGHT_MAX 65536  /* cap on slots for frames in flight */
#define LOOP_QUEUE_MAX (1u << 20)

struct loop_dir {
	uint8_t *mem;         /* nslots * slot_size bytes */
	xt_time_t *arrive;    /* per slot */
	xt_time_t *depart;    /* per slot: when serialization ends */
	uint32_t *len;        /* per slot */
	uint8_t *held;        /* per slot: kept by the receiver (rx_hold) */
	uint32_t nslots, slot_size;
	/* Monotonic indexes, slot = index % nslots, lent <= head <= tail and
	 * ser_head <= tail.  [lent, head): delivered, data lent to the receiver
	 * (from lend_from on by the last rx_burst; before it, only up to a slot
	 * still held, which blocks the wire like a full ring); [head, tail): not
	 * yet delivered; [ser_head, tail): still serializing. */
	uint64_t lent, lend_from, head, ser_head, tail;
	xt_time_t link_free_at;  /* when the link finishes the last frame */
	xt_time_t last_arrive;
	struct xt_loop_stats stats;
};

struct loop_wire;

struct loop_end {
	struct xt_nic nic; /* first: struct xt_nic * converts to struct loop_end * */
	struct loop_wire *wire;
	int idx;           /* sends on dir[idx], receives from dir[1 - idx] */
	bool open;
};

struct loop_wire {
	struct loop_end end[2];
	struct loop_dir dir[2];
	xt_time_t latency;
	uint64_t bandwidth_bps;
	uint32_t queue_frames;
	uint32_t max_frame;    /* mtu + Ethernet header */
};

static const struct xt_nic_ops loop_ops;

static struct loop_end *to_end(struct xt_nic *nic) { return (struct loop_end *)nic; }
static struct loop_dir *tx_dir(struct loop_end *e) { return &e->wire->dir[e->idx]; }
static struct loop_dir *rx_dir(struct loop_end *e) { return &e->wire->dir[1 - e->idx]; }
static uint32_t slot_of(const struct loop_dir *d, uint64_t i) { return (uint32_t)(i % d->nslots); }
static uint8_t *slot_data(struct loop_dir *d, uint64_t i)
{
	return d->mem + (size_t)slot_of(d, i) * d->slot_size;
}

/* Time to clock len bytes onto the link. */
static xt_time_t ser_time(const struct loop_wire *w, uint32_t len)
{
	if (w->bandwidth_bps == 0)
		return 0;
	return (xt_time_t)len * 8u * 1000000000u / w->bandwidth_bps;
}

/* Frames the link can hold in flight at once (bandwidth-delay product in
 * shortest frames); without a bandwidth limit every frame in flight counts
 * against the queue instead (see queue_len). */
static uint32_t inflight_slots(const struct loop_wire *w)
{
	if (w->bandwidth_bps == 0)
		return 0;
	/* latency * bps overflows 64 bits for long delays on fast links,
	 * hence whole seconds and nanoseconds apart. */
	uint64_t bytes_per_sec = w->bandwidth_bps / 8u;
	uint64_t sec = w->latency / 1000000000u, ns = w->latency % 1000000000u;
	uint64_t bdp = sec * bytes_per_sec + ns * bytes_per_sec / 1000000000u;
	uint64_t frames = bdp / LOOP_MIN_FRAME + 1;
	return frames > LOOP_INFLIGHT_MAX ? LOOP_INFLIGHT_MAX : (uint32_t)frames;
}

/* Frames waiting in the transmit queue at now.  With a bandwidth limit, a
 * frame leaves the queue once it is serialized; without one it never queues,
 * so the bound applies to all undelivered frames (the only way to keep a
 * link without bandwidth bounded). */
static uint64_t queue_len(const struct loop_wire *w, struct loop_dir *d, xt_time_t now)
{
	if (w->bandwidth_bps == 0)
		return d->tail - d->head;
	while (d->ser_head < d->tail && d->depart[slot_of(d, d->ser_head)] <= now)
		d->ser_head++;
	return d->tail - d->ser_head;
}

static bool dir_full(const struct loop_wire *w, struct loop_dir *d, xt_time_t now)
{
	return queue_len(w, d, now) >= w->queue_frames || d->tail - d->lent >= d->nslots;
}

static void dir_push(struct loop_wire *w, struct loop_dir *d, const struct xt_frame *f, xt_time_t now)
{
	uint32_t s = slot_of(d, d->tail);
	xt_time_t start = now > d->link_free_at ? now : d->link_free_at;
	uint32_t len = xt_frame_wire_len(f);
	xt_time_t depart = start + ser_time(w, len);
	xt_time_t arrive = depart + w->latency;

	/* A caller whose clock went backwards must not reorder the wire. */
	if (arrive < d->last_arrive)
		arrive = d->last_arrive;
	xt_frame_copy(f, d->mem + (size_t)s * d->slot_size);
	d->len[s] = len;
	d->depart[s] = depart;
	d->arrive[s] = arrive;
	d->link_free_at = depart;
	d->last_arrive = arrive;
	d->tail++;
	d->stats.tx_frames++;
	d->stats.tx_bytes += len;
	if (queue_len(w, d, now) > d->stats.queue_max)
		d->stats.queue_max = (uint32_t)queue_len(w, d, now);
}

/* Every frame is "taken": frames lost to a full queue, an oversize frame or
 * a closed peer are losses on the wire, not a refusal by the NIC. */
static int loop_tx(struct xt_nic *nic, const struct xt_frame *frames, int n, xt_time_t now)
{
	struct loop_end *e = to_end(nic);
	struct loop_wire *w = e->wire;
	struct loop_dir *d = tx_dir(e);
	bool peer_open = w->end[1 - e->idx].open;

	if (n < 0)
		return -EINVAL;
	for (int i = 0; i < n; i++) {
		if (!peer_open)
			d->stats.drop_peer_closed++;
		else if (xt_frame_wire_len(&frames[i]) > w->max_frame)
			d->stats.drop_oversize++;
		else if (dir_full(w, d, now))
			d->stats.drop_queue++;
		else
			dir_push(w, d, &frames[i], now);
	}
	return n;
}

static void dir_return(struct loop_dir *d, uint64_t upto)
{
	while (d->lent < upto && !d->held[slot_of(d, d->lent)])
		d->lent++;
}

static void loop_rx_hold(struct xt_nic *nic, uint64_t ref)
{
	struct loop_dir *d = rx_dir(to_end(nic));

	assert(ref > d->lent && ref <= d->head);
	d->held[slot_of(d, ref - 1)] = 1;
}

static void loop_rx_release(struct xt_nic *nic, uint64_t ref)
{
	struct loop_dir *d = rx_dir(to_end(nic));

	assert(ref > d->lent && ref <= d->head && d->held[slot_of(d, ref - 1)]);
	d->held[slot_of(d, ref - 1)] = 0;
	dir_return(d, d->lend_from);
}

static int loop_rx(struct xt_nic *nic, struct xt_frame *frames, int n, xt_time_t now)
{
	struct loop_dir *d = rx_dir(to_end(nic));
	int got = 0;

	if (n < 0)
		return -EINVAL;
	/* The frames lent by the previous call are returned now, but for kept
	 * ones (and what follows them). */
	dir_return(d, d->head);
	d->lend_from = d->head;
	if (n > LOOP_LEND_MAX)
		n = LOOP_LEND_MAX;
	while (got < n && d->head < d->tail && d->arrive[slot_of(d, d->head)] <= now) {
		frames[got].data = slot_data(d, d->head);
		frames[got].len = d->len[slot_of(d, d->head)];
		frames[got].flags = 0;
		frames[got].ref = d->head + 1;
		frames[got].pos = d->head;
		d->stats.rx_frames++;
		d->stats.rx_bytes += frames[got].len;
		d->head++;
		got++;
	}
	return got;
}

static int loop_wake_fd(struct xt_nic *nic)
{
	(void)nic;
	return -1; /* virtual time: the driver knows when to look (next_deadline) */
}

static int loop_arm_wake(struct xt_nic *nic)
{
	(void)nic;
	return 0;
}

/* Earliest arrival of a frame travelling toward this nic: the time its owner
 * must next call rx_burst.  May be in the past if it has not done so yet. */
static xt_time_t loop_deadline(struct xt_nic *nic)
{
	struct loop_dir *d = rx_dir(to_end(nic));

	if (d->head == d->tail)
		return XT_TIME_NEVER;
	return d->arrive[slot_of(d, d->head)];
}

static void dir_free(struct loop_dir *d)
{
	free(d->mem);
	free(d->arrive);
	free(d->depart);
	free(d->len);
	free(d->held);
}

static void loop_close(struct xt_nic *nic)
{
	struct loop_end *e = to_end(nic);
	struct loop_wire *w = e->wire;

	e->open = false;
	if (w->end[0].open || w->end[1].open)
		return;
	dir_free(&w->dir[0]);
	dir_free(&w->dir[1]);
	free(w);
}

static const struct xt_nic_ops loop_ops = {
	.name = "loop",
	.rx_burst = loop_rx,
	.tx_burst = loop_tx,
	.wake_fd = loop_wake_fd,
	.arm_wake = loop_arm_wake,
	.next_deadline = loop_deadline,
	.close = loop_close,
	.rx_hold = loop_rx_hold,
	.rx_release = loop_rx_release,
};

const struct xt_loop_stats *xt_loop_stats(struct xt_nic *nic)
{
	if (!nic || nic->ops != &loop_ops)
		return NULL;
	return &tx_dir(to_end(nic))->stats;
}

static int dir_init(struct loop_dir *d, uint32_t nslots, uint32_t max_frame)
{
	/* Slots start on cache lines; calloc'ed pages are only touched (and so
	 * only really allocated) as the ring reaches them. */
	d->slot_size = (max_frame + 63u) & ~63u;
	d->nslots = nslots;
	d->mem = calloc(nslots, d->slot_size);
	d->arrive = calloc(nslots, sizeof(*d->arrive));
	d->depart = calloc(nslots, sizeof(*d->depart));
	d->len = calloc(nslots, sizeof(*d->len));
	d->held = calloc(nslots, 1);
	if (!d->mem || !d->arrive || !d->depart || !d->len || !d->held)
		return -ENOMEM;
	return 0;
}

static bool mac_is_zero(const uint8_t mac[6])
{
	static const uint8_t zero[6];
	return memcmp(mac, zero, 6) == 0;
}

static void end_init(struct loop_wire *w, int idx, const uint8_t mac[6], uint16_t mtu)
{
	struct loop_end *e = &w->end[idx];

	e->nic.ops = &loop_ops;
	e->nic.caps.mtu = mtu;
	e->nic.caps.tx_gather = 1; /* it copies each frame anyway */
	e->nic.caps.rx_hold_window = LOOP_HOLD_WINDOW;
	if (mac_is_zero(mac)) {
		/* Locally administered unicast: 02:00:00:00:00:01 and :02. */
		uint8_t def[6] = { 0x02, 0, 0, 0, 0, (uint8_t)(idx + 1) };
		memcpy(e->nic.caps.mac, def, 6);
	} else {
		memcpy(e->nic.caps.mac, mac, 6);
	}
	e->wire = w;
	e->idx = idx;
	e->open = true;
}

int xt_loop_pair(const struct xt_loop_cfg *cfg, struct xt_nic **a, struct xt_nic **b)
{
	static const struct xt_loop_cfg defaults;
	struct loop_wire *w;
	uint16_t mtu;
	uint32_t nslots;

	if (!a || !b)
		return -EINVAL;
	if (!cfg)
		cfg = &defaults;
	mtu = cfg->mtu ? cfg->mtu : LOOP_DEFAULT_MTU;
	if (mtu < 68) /* RFC 791: every host must take 68-byte datagrams */
		return -EINVAL;
	if (cfg->queue_frames > LOOP_QUEUE_MAX)
		return -EINVAL;
	w = calloc(1, sizeof(*w));
	if (!w)
		return -ENOMEM;
	w->latency = cfg->latency;
	w->bandwidth_bps = cfg->bandwidth_bps;
	w->queue_frames = cfg->queue_frames ? cfg->queue_frames : LOOP_DEFAULT_QUEUE;
	w->max_frame = (uint32_t)mtu + LOOP_ETH_HLEN;
	nslots = w->queue_frames + inflight_slots(w) + LOOP_LEND_MAX + LOOP_HOLD_WINDOW;
	for (int i = 0; i < 2; i++) {
		if (dir_init(&w->dir[i], nslots, w->max_frame) < 0) {
			dir_free(&w->dir[0]);
			dir_free(&w->dir[1]);
			free(w);
			return -ENOMEM;
		}
	}
	end_init(w, 0, cfg->mac_a, mtu);
	end_init(w, 1, cfg->mac_b, mtu);
	*a = &w->end[0].nic;
	*b = &w->end[1].nic;
	return 0;
}
