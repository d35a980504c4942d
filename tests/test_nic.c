/* Tests of the nic backends that need no hardware: the loop wire, the fault
 * injector and the pcap writer.  Everything runs in virtual time passed as an
 * argument, so no result depends on how fast the machine is. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "nic/nic.h"
#include "nic/loop_priv.h"

#define T0 XT_SEC(1)

/* --- helpers ------------------------------------------------------------ */

/* A test frame whose payload carries its index, so order and identity can be
 * checked after the wire; the rest is a pattern derived from the index. */
static uint32_t make_frame(uint8_t *buf, uint32_t len, uint32_t idx)
{
	for (uint32_t i = 0; i < len; i++)
		buf[i] = (uint8_t)(idx * 31u + i * 7u);
	if (len >= 18) {
		buf[14] = (uint8_t)(idx >> 24);
		buf[15] = (uint8_t)(idx >> 16);
		buf[16] = (uint8_t)(idx >> 8);
		buf[17] = (uint8_t)idx;
	}
	return len;
}

static uint32_t frame_idx(const uint8_t *buf)
{
	return ((uint32_t)buf[14] << 24) | ((uint32_t)buf[15] << 16) | ((uint32_t)buf[16] << 8) | buf[17];
}

static void send_one(struct xt_nic *nic, uint32_t len, uint32_t idx, xt_time_t now)
{
	uint8_t buf[2048];
	struct xt_frame f = { .data = buf, .len = make_frame(buf, len, idx), .flags = 0 };
	assert_int_equal(xt_nic_tx(nic, &f, 1, now), 1);
}

static int rx_count(struct xt_nic *nic, xt_time_t now)
{
	struct xt_frame f[64];
	int total = 0, n;
	while ((n = xt_nic_rx(nic, f, 64, now)) > 0)
		total += n;
	assert_true(n == 0);
	return total;
}

static void pair(const struct xt_loop_cfg *cfg, struct xt_nic **a, struct xt_nic **b)
{
	assert_int_equal(xt_loop_pair(cfg, a, b), 0);
	assert_non_null(*a);
	assert_non_null(*b);
}

/* --- loop ---------------------------------------------------------------- */

static void loop_defaults(void **state)
{
	struct xt_nic *a, *b;
	(void)state;
	pair(NULL, &a, &b);
	assert_int_equal(a->caps.mtu, 1500);
	assert_int_equal(b->caps.mtu, 1500);
	assert_memory_not_equal(a->caps.mac, b->caps.mac, 6);
	assert_int_equal(a->caps.mac[0] & 1, 0); /* unicast */
	assert_int_equal(a->ops->wake_fd(a), -1);
	assert_int_equal(a->ops->arm_wake(a), 0);
	assert_true(xt_nic_deadline(a) == XT_TIME_NEVER);
	assert_null(xt_loop_stats(NULL));
	xt_nic_close(a);
	xt_nic_close(b);
}

static void loop_latency(void **state)
{
	struct xt_loop_cfg cfg = { .latency = XT_US(50) };
	struct xt_nic *a, *b;
	struct xt_frame f[4];
	uint8_t sent[100];
	(void)state;

	pair(&cfg, &a, &b);
	make_frame(sent, sizeof(sent), 7);
	send_one(a, sizeof(sent), 7, T0);
	/* The deadline belongs to the receiving side. */
	assert_true(xt_nic_deadline(b) == T0 + XT_US(50));
	assert_true(xt_nic_deadline(a) == XT_TIME_NEVER);
	assert_int_equal(xt_nic_rx(b, f, 4, T0 + XT_US(50) - 1), 0);
	assert_int_equal(xt_nic_rx(a, f, 4, T0 + XT_SEC(10)), 0);
	assert_int_equal(xt_nic_rx(b, f, 4, T0 + XT_US(50)), 1);
	assert_int_equal(f[0].len, sizeof(sent));
	assert_memory_equal(f[0].data, sent, sizeof(sent));
	assert_true(xt_nic_deadline(b) == XT_TIME_NEVER);
	assert_int_equal(xt_loop_stats(a)->rx_frames, 1);
	assert_int_equal(xt_loop_stats(b)->tx_frames, 0);
	xt_nic_close(a);
	xt_nic_close(b);
}

/* 1250 bytes take 10 us at 1 Gbit/s: three frames sent at once leave one
 * after the other and arrive 10 us apart. */
static void loop_bandwidth(void **state)
{
	struct xt_loop_cfg cfg = { .latency = XT_US(10), .bandwidth_bps = 1000000000 };
	struct xt_nic *a, *b;
	struct xt_frame f[4];
	(void)state;

	pair(&cfg, &a, &b);
	for (uint32_t i = 0; i < 3; i++)
		send_one(a, 1250, i, T0);
	assert_true(xt_nic_deadline(b) == T0 + XT_US(20));
	assert_int_equal(xt_nic_rx(b, f, 4, T0 + XT_US(20) - 1), 0);
	assert_int_equal(xt_nic_rx(b, f, 4, T0 + XT_US(20)), 1);
	assert_true(xt_nic_deadline(b) == T0 + XT_US(30));
	assert_int_equal(xt_nic_rx(b, f, 4, T0 + XT_US(35)), 1);
	assert_int_equal(frame_idx(f[0].data), 1);
	assert_true(xt_nic_deadline(b) == T0 + XT_US(40));
	/* A frame sent later, once the link is idle, is not delayed by them. */
	send_one(a, 1250, 3, T0 + XT_US(100));
	assert_int_equal(xt_nic_rx(b, f, 4, T0 + XT_US(100)), 1);
	assert_int_equal(frame_idx(f[0].data), 2);
	assert_true(xt_nic_deadline(b) == T0 + XT_US(120));
	/* The other direction has its own link. */
	send_one(b, 1250, 9, T0 + XT_US(100));
	assert_true(xt_nic_deadline(a) == T0 + XT_US(120));
	xt_nic_close(a);
	xt_nic_close(b);
}

/* With a bandwidth limit the queue holds frames not yet serialized. */
static void loop_tail_drop_queue(void **state)
{
	struct xt_loop_cfg cfg = { .latency = XT_US(1), .bandwidth_bps = 1000000, .queue_frames = 4 };
	struct xt_nic *a, *b;
	uint8_t buf[10][100];
	struct xt_frame f[10];
	(void)state;

	pair(&cfg, &a, &b);
	for (uint32_t i = 0; i < 10; i++)
		f[i] = (struct xt_frame){ .data = buf[i], .len = make_frame(buf[i], 100, i), .flags = 0 };
	/* Dropped frames count as taken: a full link queue loses them silently. */
	assert_int_equal(xt_nic_tx(a, f, 10, T0), 10);
	assert_int_equal(xt_loop_stats(a)->tx_frames, 4);
	assert_int_equal(xt_loop_stats(a)->drop_queue, 6);
	assert_int_equal(xt_loop_stats(a)->queue_max, 4);
	/* 100 bytes take 800 us at 1 Mbit/s: once one is out there is room. */
	send_one(a, 100, 10, T0 + XT_US(800));
	assert_int_equal(xt_loop_stats(a)->tx_frames, 5);
	send_one(a, 100, 11, T0 + XT_US(800));
	assert_int_equal(xt_loop_stats(a)->drop_queue, 7);
	/* Survivors arrive in order: 0..3 then 10. */
	assert_int_equal(rx_count(b, T0 + XT_SEC(1)), 5);
	xt_nic_close(a);
	xt_nic_close(b);
}

/* Without a bandwidth limit every undelivered frame counts. */
static void loop_tail_drop_unlimited(void **state)
{
	struct xt_loop_cfg cfg = { .latency = XT_MS(1), .queue_frames = 3 };
	struct xt_nic *a, *b;
	(void)state;

	pair(&cfg, &a, &b);
	for (uint32_t i = 0; i < 5; i++)
		send_one(a, 64, i, T0);
	assert_int_equal(xt_loop_stats(a)->drop_queue, 2);
	assert_int_equal(rx_count(b, T0 + XT_MS(1)), 3);
	for (uint32_t i = 0; i < 3; i++)
		send_one(a, 64, i, T0 + XT_MS(1));
	assert_int_equal(xt_loop_stats(a)->drop_queue, 2);
	xt_nic_close(a);
	xt_nic_close(b);
}

static void loop_oversize(void **state)
{
	struct xt_loop_cfg cfg = { .mtu = 1000 };
	struct xt_nic *a, *b;
	(void)state;

	pair(&cfg, &a, &b);
	assert_int_equal(a->caps.mtu, 1000);
	send_one(a, 1014, 0, T0);
	send_one(a, 1015, 1, T0);
	assert_int_equal(xt_loop_stats(a)->drop_oversize, 1);
	assert_int_equal(rx_count(b, T0), 1);
	assert_int_equal(xt_loop_pair(&(struct xt_loop_cfg){ .mtu = 67 }, &a, &b), -EINVAL);
	xt_nic_close(a);
	xt_nic_close(b);
}

/* Received data stays valid, unchanged, until the next rx_burst, however
 * much is sent meanwhile; many rounds check content and order end to end. */
static void loop_frame_validity(void **state)
{
	struct xt_loop_cfg cfg = { .latency = XT_US(5), .queue_frames = 8 };
	struct xt_nic *a, *b;
	struct xt_frame f[8];
	uint8_t copy[8][1514];
	uint32_t next_rx = 0, next_tx = 0;
	(void)state;

	pair(&cfg, &a, &b);
	for (int round = 0; round < 2000; round++) {
		xt_time_t now = T0 + XT_US(5) * (xt_time_t)round;
		int n = xt_nic_rx(b, f, 1 + round % 8, now);
		for (int i = 0; i < n; i++) {
			uint8_t want[1514];
			assert_int_equal(frame_idx(f[i].data), next_rx);
			assert_int_equal(f[i].len, 60 + next_rx % 1455);
			make_frame(want, f[i].len, next_rx);
			assert_memory_equal(f[i].data, want, f[i].len);
			memcpy(copy[i], f[i].data, f[i].len);
			next_rx++;
		}
		/* Fill the wire while the frames are lent out. */
		while (xt_loop_stats(a)->drop_queue == 0 && next_tx < next_rx + 8)
			send_one(a, 60 + next_tx % 1455, next_tx, now), next_tx++;
		for (int i = 0; i < n; i++)
			assert_memory_equal(f[i].data, copy[i], f[i].len);
	}
	assert_true(next_rx > 1000);
	assert_int_equal(xt_loop_stats(a)->drop_queue, 0);
	xt_nic_close(a);
	xt_nic_close(b);
}

/* A receiver that stops polling: the ring fills up and drops, but never
 * reuses the slots of frames it has lent out. */
static void loop_storage_bound(void **state)
{
	struct xt_loop_cfg cfg = { .bandwidth_bps = 1000000000, .queue_frames = 4 };
	struct xt_nic *a, *b;
	struct xt_frame f[256];
	uint8_t copy[256][64];
	uint32_t i;
	xt_time_t now = T0;
	(void)state;

	pair(&cfg, &a, &b);
	for (i = 0; i < 256; i++, now += XT_US(1))
		send_one(a, 64, i, now);
	assert_int_equal(xt_nic_rx(b, f, 256, now), 256);
	for (i = 0; i < 256; i++)
		memcpy(copy[i], f[i].data, 64);
	/* Each frame is serialized before the next, so the queue never fills:
	 * only storage can run out. */
	for (i = 0; i < 2000; i++, now += XT_US(1))
		send_one(a, 64, 1000 + i, now);
	assert_true(xt_loop_stats(a)->drop_queue > 0);
	for (i = 0; i < 256; i++)
		assert_memory_equal(f[i].data, copy[i], 64);
	/* What was kept arrives intact and in order. */
	uint32_t want = 1000;
	int n;
	while ((n = xt_nic_rx(b, f, 64, now)) > 0)
		for (int j = 0; j < n; j++)
			assert_int_equal(frame_idx(f[j].data), want++);
	assert_int_equal(want - 1000, 2000 - xt_loop_stats(a)->drop_queue);
	xt_nic_close(a);
	xt_nic_close(b);
}

static void loop_peer_closed(void **state)
{
	struct xt_nic *a, *b;
	(void)state;

	pair(NULL, &a, &b);
	send_one(a, 64, 0, T0);
	xt_nic_close(b);
	send_one(a, 64, 1, T0);
	assert_int_equal(xt_loop_stats(a)->drop_peer_closed, 1);
	xt_nic_close(a); /* frees the wire; ASan would see a leak otherwise */
}

/* --- fault --------------------------------------------------------------- */

/* Sends n frames one per microsecond through fault-wrapped a, polls both
 * ends as a driver would, and records which frame indexes b received in
 * which order.  Returns the number received. */
static int run_fault(const struct xt_fault_cfg *fc, uint32_t n, uint32_t *seen, int cap)
{
	struct xt_loop_cfg cfg = { .latency = XT_US(10) };
	struct xt_nic *a, *b, *fa;
	struct xt_frame f[64];
	int got = 0, k;
	xt_time_t now = T0;

	pair(&cfg, &a, &b);
	fa = xt_fault_wrap(a, fc);
	assert_non_null(fa);
	for (uint32_t i = 0; i < n || xt_nic_deadline(fa) != XT_TIME_NEVER || xt_nic_deadline(b) != XT_TIME_NEVER;
	     i++, now += XT_US(1)) {
		if (i < n)
			send_one(fa, 200, i, now);
		xt_nic_rx(fa, f, 64, now); /* releases what is due */
		while ((k = xt_nic_rx(b, f, 64, now)) > 0)
			for (int j = 0; j < k; j++, got++)
				if (got < cap)
					seen[got] = frame_idx(f[j].data);
		assert_true(now < T0 + XT_SEC(100)); /* against a hang only */
	}
	assert_int_equal(xt_fault_stats(fa)->frames, n);
	xt_nic_close(fa); /* closes a too */
	xt_nic_close(b);
	return got;
}

static void fault_loss_rate_and_determinism(void **state)
{
	struct xt_fault_cfg fc = { .seed = 42, .loss = 0.1 };
	static uint32_t s1[20000], s2[20000], s3[20000];
	int n1, n2, n3;
	(void)state;

	n1 = run_fault(&fc, 20000, s1, 20000);
	/* 10% of 20000 with binomial sd ~42: 1% is ~5 sd. */
	assert_in_range(n1, 17800, 18200);
	n2 = run_fault(&fc, 20000, s2, 20000);
	assert_int_equal(n1, n2);
	assert_memory_equal(s1, s2, sizeof(uint32_t) * (size_t)n1);
	fc.seed = 43;
	n3 = run_fault(&fc, 20000, s3, 20000);
	assert_true(n3 != n1 || memcmp(s1, s3, sizeof(uint32_t) * (size_t)n1) != 0);
	/* Losses keep the order of the survivors. */
	for (int i = 1; i < n1; i++)
		assert_true(s1[i] > s1[i - 1]);
}

static void fault_passthrough(void **state)
{
	static uint32_t seen[100];
	(void)state;
	assert_int_equal(run_fault(NULL, 100, seen, 100), 100);
	for (uint32_t i = 0; i < 100; i++)
		assert_int_equal(seen[i], i);
}

static int popcount_diff(const uint8_t *x, const uint8_t *y, uint32_t len)
{
	int bits = 0;
	for (uint32_t i = 0; i < len; i++)
		bits += __builtin_popcount((unsigned)(x[i] ^ y[i]));
	return bits;
}

static void fault_corrupt_one_bit(void **state)
{
	struct xt_fault_cfg fc = { .seed = 5, .corrupt = 1.0 };
	struct xt_nic *a, *b, *fa;
	struct xt_frame f[4];
	uint8_t want[300];
	bool spread[2] = { false, false };
	(void)state;

	pair(NULL, &a, &b);
	fa = xt_fault_wrap(a, &fc);
	assert_non_null(fa);
	for (uint32_t i = 0; i < 500; i++) {
		send_one(fa, sizeof(want), i, T0);
		assert_int_equal(xt_nic_rx(b, f, 4, T0), 1);
		assert_int_equal(f[0].len, sizeof(want));
		make_frame(want, sizeof(want), i);
		assert_int_equal(popcount_diff(f[0].data, want, sizeof(want)), 1);
		/* The flipped bit lands anywhere in the frame. */
		spread[memcmp(f[0].data, want, 150) == 0] = true;
	}
	assert_true(spread[0] && spread[1]);
	assert_int_equal(xt_fault_stats(fa)->corrupted, 500);
	xt_nic_close(fa);
	xt_nic_close(b);
}

/* Corrupted frames that are also held back (delay) are flipped in the copy. */
static void fault_corrupt_held(void **state)
{
	struct xt_fault_cfg fc = { .seed = 6, .corrupt = 1.0, .delay = XT_US(3) };
	struct xt_nic *a, *b, *fa;
	struct xt_frame f[4];
	uint8_t want[64];
	(void)state;

	pair(NULL, &a, &b);
	fa = xt_fault_wrap(a, &fc);
	assert_non_null(fa);
	send_one(fa, sizeof(want), 1, T0);
	assert_true(xt_nic_deadline(fa) == T0 + XT_US(3));
	assert_int_equal(xt_nic_rx(fa, f, 4, T0 + XT_US(3)), 0);
	assert_int_equal(xt_nic_rx(b, f, 4, T0 + XT_US(3)), 1);
	make_frame(want, sizeof(want), 1);
	assert_int_equal(popcount_diff(f[0].data, want, sizeof(want)), 1);
	xt_nic_close(fa);
	xt_nic_close(b);
}

static void fault_dup(void **state)
{
	struct xt_fault_cfg fc = { .seed = 9, .dup = 1.0 };
	static uint32_t seen[200];
	(void)state;

	assert_int_equal(run_fault(&fc, 100, seen, 200), 200);
	for (uint32_t i = 0; i < 100; i++) {
		assert_int_equal(seen[2 * i], i);
		assert_int_equal(seen[2 * i + 1], i);
	}
	fc.dup = 0.25;
	int n = run_fault(&fc, 1000, seen, 200);
	assert_in_range(n, 1150, 1350);
}

static void fault_reorder(void **state)
{
	struct xt_fault_cfg fc = { .seed = 11, .reorder = 0.2, .reorder_delay = XT_US(5) };
	static uint32_t seen[2000];
	static bool got[2000];
	int n, inversions = 0;
	(void)state;

	n = run_fault(&fc, 2000, seen, 2000);
	assert_int_equal(n, 2000);
	for (int i = 0; i < n; i++) {
		assert_false(got[seen[i]]);
		got[seen[i]] = true;
		if (i && seen[i] < seen[i - 1])
			inversions++;
	}
	assert_in_range(inversions, 200, 600);
}

static void fault_delay(void **state)
{
	struct xt_fault_cfg fc = { .delay = XT_MS(2) };
	struct xt_loop_cfg cfg = { .latency = XT_US(10) };
	struct xt_nic *a, *b, *fa;
	struct xt_frame f[4];
	(void)state;

	pair(&cfg, &a, &b);
	fa = xt_fault_wrap(a, &fc);
	send_one(fa, 64, 0, T0);
	/* Held by the injector: its deadline, not the wire's, says when. */
	assert_true(xt_nic_deadline(fa) == T0 + XT_MS(2));
	assert_true(xt_nic_deadline(b) == XT_TIME_NEVER);
	assert_int_equal(xt_nic_rx(fa, f, 4, T0 + XT_MS(2) - 1), 0);
	assert_true(xt_nic_deadline(b) == XT_TIME_NEVER);
	/* Released by a later call whose now has reached it (here a tx of nothing). */
	assert_int_equal(xt_nic_tx(fa, f, 0, T0 + XT_MS(2)), 0);
	assert_true(xt_nic_deadline(fa) == XT_TIME_NEVER);
	assert_true(xt_nic_deadline(b) == T0 + XT_MS(2) + XT_US(10));
	assert_int_equal(xt_nic_rx(b, f, 4, T0 + XT_MS(2) + XT_US(10)), 1);
	xt_nic_close(fa);
	xt_nic_close(b);
}

/* A fixed delay holds every frame back by the same time: order is kept. */
static void fault_delay_keeps_order(void **state)
{
	struct xt_fault_cfg fc = { .delay = XT_US(100) };
	static uint32_t seen[500];
	(void)state;

	assert_int_equal(run_fault(&fc, 500, seen, 500), 500);
	for (uint32_t i = 0; i < 500; i++)
		assert_int_equal(seen[i], i);
}

static void fault_burst(void **state)
{
	struct xt_fault_cfg fc = { .burst_start = 5, .burst_len = 3 };
	static uint32_t seen[20];
	static const uint32_t want[] = { 0, 1, 2, 3, 4, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19 };
	(void)state;

	assert_int_equal(run_fault(&fc, 20, seen, 20), 17);
	assert_memory_equal(seen, want, sizeof(want));
}

/* More frames held than the pool has slots: the rest go out at once, none
 * is lost. */
static void fault_pool_full(void **state)
{
	struct xt_fault_cfg fc = { .delay = XT_MS(50) };
	struct xt_loop_cfg cfg = { .queue_frames = 8192 };
	struct xt_nic *a, *b, *fa;
	uint32_t n = 6000;
	(void)state;

	pair(&cfg, &a, &b);
	fa = xt_fault_wrap(a, &fc);
	for (uint32_t i = 0; i < n; i++)
		send_one(fa, 100, i, T0);
	int early = rx_count(b, T0);
	assert_true(early > 0 && early < (int)n);
	assert_true(xt_nic_deadline(fa) == T0 + XT_MS(50));
	assert_int_equal(xt_nic_rx(fa, NULL, 0, T0 + XT_MS(50)), 0);
	assert_int_equal(early + rx_count(b, T0 + XT_MS(50)), (int)n);
	assert_int_equal(xt_fault_stats(fa)->lost, 0);
	xt_nic_close(fa);
	xt_nic_close(b);
}

static void fault_stats_type_check(void **state)
{
	struct xt_nic *a, *b;
	(void)state;
	pair(NULL, &a, &b);
	assert_null(xt_fault_stats(a));
	assert_null(xt_fault_stats(NULL));
	xt_nic_close(a);
	xt_nic_close(b);
}

/* --- pcap ------------------------------------------------------------------ */

struct pcap_rec {
	uint32_t ts_sec, ts_usec, incl_len, orig_len;
};

static char *temp_path(void)
{
	static char path[64];
	int fd;
	snprintf(path, sizeof(path), "/tmp/xtcp-test-nic-XXXXXX");
	fd = mkstemp(path);
	assert_true(fd >= 0);
	close(fd);
	return path;
}

static uint8_t *read_file(const char *path, long *len)
{
	FILE *fp = fopen(path, "rb");
	uint8_t *buf;
	assert_non_null(fp);
	fseek(fp, 0, SEEK_END);
	*len = ftell(fp);
	rewind(fp);
	buf = malloc((size_t)*len + 1);
	assert_int_equal(fread(buf, 1, (size_t)*len, fp), (size_t)*len);
	fclose(fp);
	return buf;
}

static void pcap_records(void **state)
{
	const char *path = temp_path();
	struct xt_nic *a, *b, *pa;
	struct xt_frame f[4];
	static const uint32_t lens[] = { 60, 100, 1514 };
	long len, off = 24;
	uint8_t *file;
	uint32_t hdr[6];
	(void)state;

	pair(NULL, &a, &b);
	pa = xt_pcap_wrap(a, path);
	assert_non_null(pa);
	assert_memory_equal(pa->caps.mac, a->caps.mac, 6);
	for (uint32_t i = 0; i < 3; i++)
		send_one(pa, lens[i], i, XT_SEC(3) + XT_US(250) * i + 999); /* sub-us part is cut */
	send_one(b, 77, 3, XT_SEC(4));
	assert_int_equal(xt_nic_rx(pa, f, 4, XT_SEC(5)), 1);
	assert_int_equal(rx_count(b, XT_SEC(5)), 3); /* capture does not disturb traffic */
	xt_nic_close(pa);
	xt_nic_close(b);

	file = read_file(path, &len);
	memcpy(hdr, file, sizeof(hdr));
	assert_int_equal(hdr[0], 0xa1b2c3d4u);
	assert_int_equal(hdr[1] & 0xffff, 2);  /* version 2.4 */
	assert_int_equal(hdr[1] >> 16, 4);
	assert_int_equal(hdr[4], 65535);       /* snaplen */
	assert_int_equal(hdr[5], 1);           /* LINKTYPE_ETHERNET */
	for (uint32_t i = 0; i < 4; i++) {
		struct pcap_rec r;
		uint32_t want_len = i < 3 ? lens[i] : 77;
		uint8_t want[1514];
		assert_true(off + (long)sizeof(r) <= len);
		memcpy(&r, file + off, sizeof(r));
		off += (long)sizeof(r);
		assert_int_equal(r.incl_len, want_len);
		assert_int_equal(r.orig_len, want_len);
		assert_int_equal(r.ts_sec, i < 3 ? 3 : 5);
		assert_int_equal(r.ts_usec, i < 3 ? 250 * i : 0);
		make_frame(want, want_len, i);
		assert_memory_equal(file + off, want, want_len);
		off += want_len;
	}
	assert_int_equal(off, len);
	free(file);
	unlink(path);
}

static void pcap_raw_linktype(void **state)
{
	const char *path = temp_path();
	struct xt_nic *a, *b, *pa;
	long len;
	uint8_t *file;
	uint32_t linktype;
	(void)state;

	pair(NULL, &a, &b);
	a->caps.no_link_header = 1; /* as a tun-like backend would say */
	pa = xt_pcap_wrap(a, path);
	assert_non_null(pa);
	assert_int_equal(pa->caps.no_link_header, 1);
	xt_nic_close(pa);
	xt_nic_close(b);
	file = read_file(path, &len);
	assert_int_equal(len, 24);
	memcpy(&linktype, file + 20, 4);
	assert_int_equal(linktype, 101);
	free(file);
	unlink(path);
	assert_null(xt_pcap_wrap(NULL, path));
}

static void pcap_bad_path(void **state)
{
	struct xt_nic *a, *b;
	(void)state;
	pair(NULL, &a, &b);
	assert_null(xt_pcap_wrap(a, "/nonexistent-dir/x.pcap"));
	xt_nic_close(a); /* still ours after a failed wrap */
	xt_nic_close(b);
}

/* A minimal Ethernet + IPv4 + UDP frame, so tcpdump has something real to
 * decode. */
static uint32_t udp_frame(uint8_t *p, uint16_t id)
{
	static const uint8_t hdr[42] = {
		0x02, 0, 0, 0, 0, 2, 0x02, 0, 0, 0, 0, 1, 0x08, 0x00,           /* Ethernet */
		0x45, 0, 0, 28 + 4, 0, 0, 0x40, 0, 64, 17, 0, 0,                 /* IPv4 ... */
		10, 0, 0, 1, 10, 0, 0, 2,                                        /* addrs */
		0x30, 0x39, 0x9c, 0x40, 0, 12, 0, 0,                             /* UDP */
	};
	uint32_t sum = 0;
	memcpy(p, hdr, sizeof(hdr));
	p[18] = (uint8_t)(id >> 8);
	p[19] = (uint8_t)id;
	for (int i = 14; i < 34; i += 2)
		sum += (uint32_t)(p[i] << 8 | p[i + 1]);
	while (sum >> 16)
		sum = (sum & 0xffff) + (sum >> 16);
	p[24] = (uint8_t)(~sum >> 8);
	p[25] = (uint8_t)~sum;
	memcpy(p + 42, "xtcp", 4);
	return 46;
}

static void pcap_tcpdump_reads(void **state)
{
	const char *path = temp_path();
	struct xt_nic *a, *b, *pa;
	char cmd[256];
	FILE *out;
	int lines = 0, c, rc;
	(void)state;

	if (system("command -v tcpdump >/dev/null 2>&1") != 0) {
		unlink(path);
		fail_msg("tcpdump is missing: tools/install-deps.sh installs it");
	}
	pair(NULL, &a, &b);
	pa = xt_pcap_wrap(a, path);
	assert_non_null(pa);
	for (uint16_t i = 0; i < 5; i++) {
		uint8_t buf[64];
		struct xt_frame f = { .data = buf, .len = udp_frame(buf, i), .flags = 0 };
		assert_int_equal(xt_nic_tx(pa, &f, 1, XT_SEC(1) + XT_MS(i)), 1);
	}
	xt_nic_close(pa);
	xt_nic_close(b);
	snprintf(cmd, sizeof(cmd), "tcpdump -nn -r %s 2>/dev/null", path);
	out = popen(cmd, "r");
	assert_non_null(out);
	while ((c = fgetc(out)) != EOF)
		lines += c == '\n';
	rc = pclose(out);
	assert_int_equal(rc, 0);
	assert_int_equal(lines, 5);
	snprintf(cmd, sizeof(cmd), "tcpdump -nn -r %s 2>/dev/null | grep -c '10.0.0.1.12345 > 10.0.0.2.40000: UDP, length 4'", path);
	out = popen(cmd, "r");
	assert_int_equal(fscanf(out, "%d", &lines), 1);
	pclose(out);
	assert_int_equal(lines, 5);
	unlink(path);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(loop_defaults),
		cmocka_unit_test(loop_latency),
		cmocka_unit_test(loop_bandwidth),
		cmocka_unit_test(loop_tail_drop_queue),
		cmocka_unit_test(loop_tail_drop_unlimited),
		cmocka_unit_test(loop_oversize),
		cmocka_unit_test(loop_frame_validity),
		cmocka_unit_test(loop_storage_bound),
		cmocka_unit_test(loop_peer_closed),
		cmocka_unit_test(fault_passthrough),
		cmocka_unit_test(fault_loss_rate_and_determinism),
		cmocka_unit_test(fault_corrupt_one_bit),
		cmocka_unit_test(fault_corrupt_held),
		cmocka_unit_test(fault_dup),
		cmocka_unit_test(fault_reorder),
		cmocka_unit_test(fault_delay),
		cmocka_unit_test(fault_delay_keeps_order),
		cmocka_unit_test(fault_burst),
		cmocka_unit_test(fault_pool_full),
		cmocka_unit_test(fault_stats_type_check),
		cmocka_unit_test(pcap_records),
		cmocka_unit_test(pcap_raw_linktype),
		cmocka_unit_test(pcap_bad_path),
		cmocka_unit_test(pcap_tcpdump_reads),
	};
	return cmocka_run_group_tests_name("nic", tests, NULL, NULL);
}
