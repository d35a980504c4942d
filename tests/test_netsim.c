/* Network simulation: two engines over a lossy in-memory wire, in virtual time.
 *
 * Engine A (10.0.0.1) connects to engine B (10.0.0.2) over xt_loop_pair, each
 * direction wrapped by xt_fault_wrap (seeded loss, duplication, reordering,
 * single-bit corruption, extra delay) behind a 1 Gbit/s, 100 us link.  Both
 * sides send and receive at the same time over one connection, nonblocking.
 * Each byte stream comes from a counter-based PRNG, so the receiver checks
 * every byte against the generator at its stream offset, and both ends keep a
 * hash of the whole stream.  Then both sides shut down, read EOF, and close;
 * the simulation runs on until both engines have no timer left (TIME_WAIT
 * expired) and all socket memory is returned.
 *
 * Time never advances inside the loop while anything is making progress, and
 * never stands still when nothing is: the driver jumps to the earliest of the
 * engines' and the nics' deadlines.  Everything is seeded: a case run twice
 * produces the same frames (checked by a trace hash).
 *
 * Checked per case besides the bytes: both ends reach TIME_WAIT or CLOSED,
 * recv returns 0 only after the last byte, corrupted frames are dropped as
 * checksum failures, retransmissions stay proportional to the faults (no
 * storms), no engine deadline is left due after polling, virtual time stays
 * under VTIME_LIMIT, and all socket memory is returned.
 *
 * Environment (all optional):
 *   NETSIM_SEEDS=n    seeds per loss rate (default 5)
 *   NETSIM_MIB=n      MiB each way (default 64; less only for debugging)
 *   NETSIM_ONLY=s     run only the cases whose name contains s
 *   NETSIM_RESULTS=f  results table (default build/netsim-results.txt)
 *   NETSIM_VERBOSE=1  print engine counters and fault statistics per case
 *   NETSIM_TRACE=1    one line per TCP frame sent/received, to stderr
 */
#define _GNU_SOURCE
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "../stack/xtcp.h"
#include "../nic/nic.h"
#include "../nic/loop_priv.h"

#define IP_A 0x0a000001u
#define IP_B 0x0a000002u
#define PORT_B 5000
#define VTIME_LIMIT XT_SEC(3600)
#define TX_CHUNK (256u * 1024u)
#define RX_CHUNK (64u * 1024u)
/* Iterations at one instant with progress every time; beyond this the engine
 * (or this driver) is livelocked. */
#define MAX_SAME_INSTANT 1000000u
#define MAX_STALE_DEADLINES 10000u

static const uint8_t MAC_A[6] = { 0x02, 0, 0, 0, 0, 0x01 };
static const uint8_t MAC_B[6] = { 0x02, 0, 0, 0, 0, 0x02 };

/* ---- case table ---- */

struct ncase {
	char name[64];
	double loss, dup, reorder, corrupt;
	uint64_t seed;
	uint32_t rcvbuf;  /* 0: engine default */
	bool dyn_arp;     /* no static ARP entries: let ARP run */
	uint64_t bytes;   /* each way */
	int cc;           /* XT_CC_* (default CUBIC) */
	bool no_sack;     /* negotiate no SACK */
	bool copy_tx;     /* payload copied into each frame, not gathered from the send ring */
	bool copy_rx;     /* payload copied on arrival, no frame kept in place */
	uint64_t burst_start, burst_len; /* frames A->B dropped in a row (0: none) */
};

struct nresult {
	const struct ncase *c;
	bool done, ok;
	double vtime_data_s, vtime_total_s, goodput_ab_mbps, goodput_ba_mbps, wall_s;
	uint64_t retrans, fast_retrans, rto, csum_drops, stale;
	struct xt_fault_stats fs[2];
	uint64_t trace_hash; /* frames sent up to both closes */
};

#define MAX_CASES 96
static struct ncase cases[MAX_CASES];
static struct nresult results[MAX_CASES];
static int ncases;

/* ---- byte stream: counter-based PRNG, and a chunking-independent hash ---- */

static inline uint64_t mix64(uint64_t z)
{
	z += 0x9e3779b97f4a7c15ull;
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

/* Byte at stream offset o is byte (o % 8) of mix64(seed ^ (o / 8)). */
static void stream_fill(uint64_t seed, uint64_t off, uint8_t *buf, size_t n)
{
	while (n) {
		uint64_t w = mix64(seed ^ (off >> 3));
		unsigned k = (unsigned)(off & 7);
		for (; k < 8 && n; k++, n--, off++)
			*buf++ = (uint8_t)(w >> (8 * k));
	}
}

struct shash {
	uint64_t h, acc, len;
	unsigned n;
};

static inline uint64_t shash_word(uint64_t h, uint64_t w)
{
	h ^= w;
	h = (h << 29) | (h >> 35);
	return h * 0x9fb21c651e98df25ull;
}

static void shash_update(struct shash *s, const uint8_t *p, size_t n)
{
	s->len += n;
	while (n && s->n) {
		s->acc |= (uint64_t)*p++ << (8 * s->n);
		n--;
		if (++s->n == 8) {
			s->h = shash_word(s->h, s->acc);
			s->acc = 0;
			s->n = 0;
		}
	}
	while (n >= 8) {
		uint64_t w = 0;
		for (unsigned k = 0; k < 8; k++)
			w |= (uint64_t)p[k] << (8 * k);
		s->h = shash_word(s->h, w);
		p += 8;
		n -= 8;
	}
	while (n) {
		s->acc |= (uint64_t)*p++ << (8 * s->n);
		s->n++;
		n--;
	}
}

static uint64_t shash_final(const struct shash *s)
{
	return mix64(shash_word(s->h, s->acc) ^ s->len);
}

/* ---- the simulated world ---- */

struct sim;

struct side {
	const char *name;
	struct sim *sim;
	struct xt_stack *st;
	struct xt_nic *nic; /* fault wrapper over one end of the loop */
	uint32_t ip;
	int lsock, sock;

	uint64_t tx_seed, rx_seed;
	uint64_t tx_off;        /* bytes the engine has taken */
	uint8_t *txbuf;         /* generated stream [txbuf_base, txbuf_base + txbuf_len) */
	uint64_t txbuf_base;
	size_t txbuf_len;
	uint64_t rx_off;        /* bytes received and verified */
	uint8_t *rxbuf, *expbuf;
	struct shash tx_hash, rx_hash;

	bool established, shut_wr, eof, closed;
	xt_time_t t_eof;
	int final_state;
};

struct sim {
	const struct ncase *c;
	xt_time_t now, start;
	uint64_t total;
	struct side s[2];
	struct xt_nic *loop[2];
	uint64_t trace;
	uint64_t stale;
	char err[512];
};

static int trace_on = -1;

/* NETSIM_TRACE=1: one line per TCP frame sent (>) and received (<). */
static void trace_frame(const struct sim *sim, const char *who, const char *dir,
			const uint8_t *f, uint32_t len)
{
	if (len < 14 + 20 + 20 || f[12] != 0x08 || f[13] != 0x00 || f[14 + 9] != 6) {
		fprintf(stderr, "%12.6f %s%s len %u (not TCP)\n", (double)(sim->now - sim->start) / 1e9,
			who, dir, len);
		return;
	}
	const uint8_t *t = f + 14 + (f[14] & 15) * 4;
	uint32_t iplen = (uint32_t)(f[16] << 8 | f[17]);
	uint32_t doff = (uint32_t)(t[12] >> 4) * 4;
	uint32_t seq = (uint32_t)t[4] << 24 | (uint32_t)t[5] << 16 | (uint32_t)t[6] << 8 | t[7];
	uint32_t ack = (uint32_t)t[8] << 24 | (uint32_t)t[9] << 16 | (uint32_t)t[10] << 8 | t[11];
	uint8_t fl = t[13];
	fprintf(stderr, "%12.6f %s%s %s%s%s%s%s seq %u ack %u win %u len %d optlen %u\n",
		(double)(sim->now - sim->start) / 1e9, who, dir, fl & 2 ? "S" : "", fl & 1 ? "F" : "",
		fl & 4 ? "R" : "", fl & 8 ? "P" : "", fl & 16 ? "." : "", seq, ack,
		(unsigned)(t[14] << 8 | t[15]), (int)iplen - (int)(f[14] & 15) * 4 - (int)doff, doff - 20);
}

static int sim_tx(void *ctx, const struct xt_frame *frames, int n)
{
	struct side *sd = ctx;
	struct sim *sim = sd->sim;

	for (int i = 0; i < n; i++) {
		/* Fingerprint of the output for the determinism check: when,
		 * who, how long, and the headers (TCP seq/ack/flags included). */
		uint64_t h = sim->trace ^ sim->now ^ ((uint64_t)xt_frame_wire_len(&frames[i]) << 48) ^ sd->ip;
		uint32_t k = frames[i].len < 66 ? frames[i].len : 66;
		for (uint32_t j = 0; j + 8 <= k; j += 8) {
			uint64_t w;
			memcpy(&w, frames[i].data + j, 8);
			h = shash_word(h, w);
		}
		sim->trace = mix64(h);
	}
	if (trace_on)
		for (int i = 0; i < n; i++)
			trace_frame(sim, sd->name, ">", frames[i].data, frames[i].len);
	int r = xt_nic_tx(sd->nic, frames, n, sim->now);
	return r < 0 ? 0 : r;
}

static void side_rx_hold(void *ctx, uint64_t ref) { xt_nic_rx_hold(((struct side *)ctx)->nic, ref); }
static void side_rx_release(void *ctx, uint64_t ref) { xt_nic_rx_release(((struct side *)ctx)->nic, ref); }

static void side_free(struct side *sd)
{
	if (sd->st)
		xt_stack_free(sd->st);
	if (sd->nic)
		xt_nic_close(sd->nic);
	free(sd->txbuf);
	free(sd->rxbuf);
	free(sd->expbuf);
	memset(sd, 0, sizeof(*sd));
}

static void sim_free(struct sim *sim)
{
	side_free(&sim->s[0]);
	side_free(&sim->s[1]);
	free(sim);
}

static struct sim *sim_new(const struct ncase *c)
{
	struct sim *sim = calloc(1, sizeof(*sim));
	assert_non_null(sim);
	sim->c = c;
	sim->total = c->bytes;
	sim->now = sim->start = XT_SEC(1);

	struct xt_loop_cfg lc;
	memset(&lc, 0, sizeof(lc));
	lc.latency = XT_US(100);
	lc.bandwidth_bps = 1000000000ull;
	lc.queue_frames = 1000;
	lc.mtu = 1500;
	memcpy(lc.mac_a, MAC_A, 6);
	memcpy(lc.mac_b, MAC_B, 6);
	assert_int_equal(xt_loop_pair(&lc, &sim->loop[0], &sim->loop[1]), 0);
	assert_non_null(sim->loop[0]);
	assert_non_null(sim->loop[1]);

	for (int i = 0; i < 2; i++) {
		struct side *sd = &sim->s[i];
		sd->sim = sim;
		sd->name = i ? "B" : "A";
		sd->ip = i ? IP_B : IP_A;
		sd->lsock = sd->sock = -1;
		sd->tx_seed = mix64(c->seed * 2 + (uint64_t)i + 0x1234);
		sd->txbuf = malloc(TX_CHUNK);
		sd->rxbuf = malloc(RX_CHUNK);
		sd->expbuf = malloc(RX_CHUNK);
		assert_non_null(sd->txbuf);
		assert_non_null(sd->rxbuf);
		assert_non_null(sd->expbuf);

		struct xt_fault_cfg fc;
		memset(&fc, 0, sizeof(fc));
		fc.seed = mix64(c->seed * 31 + (uint64_t)i * 7 + 1);
		fc.loss = c->loss;
		fc.dup = c->dup;
		fc.reorder = c->reorder;
		fc.corrupt = c->corrupt;
		fc.delay = XT_US(20);
		fc.reorder_delay = XT_US(60);
		if (i == 0) {
			fc.burst_start = c->burst_start;
			fc.burst_len = c->burst_len;
		}
		sd->nic = xt_fault_wrap(sim->loop[i], &fc);
		assert_non_null(sd->nic);
	}
	sim->s[0].rx_seed = sim->s[1].tx_seed;
	sim->s[1].rx_seed = sim->s[0].tx_seed;

	for (int i = 0; i < 2; i++) {
		struct side *sd = &sim->s[i];
		struct xt_stack_cfg cfg;
		xt_stack_cfg_defaults(&cfg);
		memcpy(cfg.mac, i ? MAC_B : MAC_A, 6);
		cfg.ip = sd->ip;
		cfg.netmask = 0xffffff00u;
		cfg.mtu = 1500;
		if (c->rcvbuf)
			cfg.rcvbuf = c->rcvbuf;
		cfg.tcp_congestion = (uint8_t)c->cc;
		cfg.tcp_sack = !c->no_sack;
		cfg.secret[0] = mix64(c->seed + 100 + (uint64_t)i);
		cfg.secret[1] = mix64(c->seed + 200 + (uint64_t)i);
		cfg.tx_gather = !c->copy_tx && sd->nic->caps.tx_gather;
		if (!c->copy_rx) {
			cfg.rx_hold_window = sd->nic->caps.rx_hold_window;
			cfg.rx_hold = side_rx_hold;
			cfg.rx_release = side_rx_release;
			cfg.rx_ctx = sd;
		}
		cfg.tx = sim_tx;
		cfg.tx_ctx = sd;
		sd->st = xt_stack_new(&cfg, sim->now);
		assert_non_null(sd->st);
	}
	if (!c->dyn_arp) {
		assert_int_equal(xt_arp_add(sim->s[0].st, IP_B, MAC_B, sim->now), 0);
		assert_int_equal(xt_arp_add(sim->s[1].st, IP_A, MAC_A, sim->now), 0);
	}
	return sim;
}

static bool sim_fail(struct sim *sim, const char *fmt, ...)
{
	va_list ap;
	if (sim->err[0])
		return false;
	va_start(ap, fmt);
	vsnprintf(sim->err, sizeof(sim->err), fmt, ap);
	va_end(ap);
	return false;
}

/* Receive side of one application: read everything available, check it.
 * Returns false (with sim->err set) on any error. */
static bool app_recv(struct side *sd, uint64_t *progress)
{
	struct sim *sim = sd->sim;

	while (!sd->eof) {
		long r = xt_tcp_recv(sd->st, sd->sock, sd->rxbuf, RX_CHUNK, 0, sim->now);
		if (r == -EAGAIN)
			return true;
		if (r < 0)
			return sim_fail(sim, "%s: recv at offset %" PRIu64 ": error %ld", sd->name,
					sd->rx_off, r);
		if (r == 0) {
			if (sd->rx_off != sim->total)
				return sim_fail(sim, "%s: EOF after %" PRIu64 " of %" PRIu64 " bytes",
						sd->name, sd->rx_off, sim->total);
			sd->eof = true;
			sd->t_eof = sim->now;
			(*progress)++;
			return true;
		}
		if ((uint64_t)r > sim->total - sd->rx_off)
			return sim_fail(sim, "%s: %ld bytes past the end of the stream", sd->name, r);
		stream_fill(sd->rx_seed, sd->rx_off, sd->expbuf, (size_t)r);
		if (memcmp(sd->rxbuf, sd->expbuf, (size_t)r) != 0) {
			long i = 0;
			while (sd->rxbuf[i] == sd->expbuf[i])
				i++;
			return sim_fail(sim,
					"%s: corrupted byte delivered at stream offset %" PRIu64
					": got 0x%02x, want 0x%02x",
					sd->name, sd->rx_off + (uint64_t)i, sd->rxbuf[i], sd->expbuf[i]);
		}
		shash_update(&sd->rx_hash, sd->rxbuf, (size_t)r);
		sd->rx_off += (uint64_t)r;
		*progress += (uint64_t)r;
	}
	return true;
}

static bool app_send(struct side *sd, uint64_t *progress)
{
	struct sim *sim = sd->sim;

	while (sd->tx_off < sim->total) {
		if (sd->tx_off >= sd->txbuf_base + sd->txbuf_len) {
			uint64_t left = sim->total - sd->tx_off;
			sd->txbuf_base = sd->tx_off;
			sd->txbuf_len = left < TX_CHUNK ? (size_t)left : TX_CHUNK;
			stream_fill(sd->tx_seed, sd->txbuf_base, sd->txbuf, sd->txbuf_len);
		}
		size_t at = (size_t)(sd->tx_off - sd->txbuf_base);
		size_t n = sd->txbuf_len - at;
		long r = xt_tcp_send(sd->st, sd->sock, sd->txbuf + at, n, 0, sim->now);
		if (r == -EAGAIN)
			return true;
		if (r <= 0 || (size_t)r > n)
			return sim_fail(sim, "%s: send of %zu at offset %" PRIu64 " returned %ld",
					sd->name, n, sd->tx_off, r);
		shash_update(&sd->tx_hash, sd->txbuf + at, (size_t)r);
		sd->tx_off += (uint64_t)r;
		*progress += (uint64_t)r;
	}
	if (!sd->shut_wr) {
		int r = xt_tcp_shutdown(sd->st, sd->sock, XT_SHUT_WR, sim->now);
		if (r != 0)
			return sim_fail(sim, "%s: shutdown(WR) returned %d", sd->name, r);
		sd->shut_wr = true;
		(*progress)++;
	}
	return true;
}

static bool app_step(struct side *sd, uint64_t *progress)
{
	struct sim *sim = sd->sim;

	if (sd->closed)
		return true;
	if (sd->sock < 0) { /* passive side: accept */
		uint32_t pip = 0;
		uint16_t pport = 0;
		int s = xt_tcp_accept(sd->st, sd->lsock, &pip, &pport);
		if (s == -EAGAIN)
			return true;
		if (s < 0)
			return sim_fail(sim, "%s: accept returned %d", sd->name, s);
		if (pip != sd->sim->s[0].ip)
			return sim_fail(sim, "%s: accepted peer 0x%08x", sd->name, pip);
		sd->sock = s;
		if (xt_tcp_close(sd->st, sd->lsock, sim->now) != 0)
			return sim_fail(sim, "%s: close(listener) failed", sd->name);
		sd->lsock = -1;
		(*progress)++;
	}
	if (!sd->established) {
		int state = xt_tcp_state(sd->st, sd->sock);
		if (state == XT_SYN_SENT || state == XT_SYN_RECV)
			return true;
		if (state != XT_ESTABLISHED)
			return sim_fail(sim, "%s: connection ended in state %s during the handshake",
					sd->name, xt_state_name(state));
		sd->established = true;
		(*progress)++;
	}
	if (!app_send(sd, progress) || !app_recv(sd, progress))
		return false;
	if (sd->eof && sd->shut_wr) {
		int state = xt_tcp_state(sd->st, sd->sock);
		if (state == XT_TIME_WAIT || state == XT_CLOSE) {
			long inq = xt_tcp_inq(sd->st, sd->sock);
			long outq = xt_tcp_outq(sd->st, sd->sock);
			if (inq != 0 || outq != 0)
				return sim_fail(sim, "%s: in %s with inq %ld outq %ld", sd->name,
						xt_state_name(state), inq, outq);
			sd->final_state = state;
			int r = xt_tcp_close(sd->st, sd->sock, sim->now);
			if (r != 0)
				return sim_fail(sim, "%s: close returned %d", sd->name, r);
			sd->sock = -1;
			sd->closed = true;
			(*progress)++;
		}
	}
	return true;
}

static xt_time_t min_t(xt_time_t a, xt_time_t b) { return a < b ? a : b; }

static void sim_dump(struct sim *sim)
{
	fprintf(stderr, "  at virtual %.6f s:\n", (double)(sim->now - sim->start) / 1e9);
	for (int i = 0; i < 2; i++) {
		struct side *sd = &sim->s[i];
		fprintf(stderr, "  %s: tx %" PRIu64 " rx %" PRIu64 " est %d shut %d eof %d closed %d",
			sd->name, sd->tx_off, sd->rx_off, sd->established, sd->shut_wr, sd->eof,
			sd->closed);
		if (sd->sock >= 0) {
			struct xt_tcp_info ti;
			memset(&ti, 0, sizeof(ti));
			xt_tcp_info(sd->st, sd->sock, &ti, sim->now);
			fprintf(stderr,
				" state %s inq %ld outq %ld cwnd %u ssthresh %u rto %u us snd_wnd %u "
				"rcv_wnd %u unacked %u retransmits %u",
				xt_state_name(xt_tcp_state(sd->st, sd->sock)),
				xt_tcp_inq(sd->st, sd->sock), xt_tcp_outq(sd->st, sd->sock),
				ti.snd_cwnd, ti.snd_ssthresh, ti.rto_us, ti.snd_wnd, ti.rcv_wnd,
				ti.unacked, ti.retransmits);
		}
		fprintf(stderr, " next deadline %" PRIu64 " mem %" PRIu64 "\n",
			xt_stack_next_deadline(sd->st), xt_stack_mem_used(sd->st));
		const struct xt_fault_stats *fs = xt_fault_stats(sd->nic);
		const struct xt_loop_stats *ls = xt_loop_stats(sim->loop[i]);
		if (fs)
			fprintf(stderr, "  %s fault: frames %" PRIu64 " lost %" PRIu64 " dup %" PRIu64
				" reordered %" PRIu64 " corrupted %" PRIu64 "\n", sd->name, fs->frames,
				fs->lost, fs->dupped, fs->reordered, fs->corrupted);
		if (ls)
			fprintf(stderr, "  %s wire: tx %" PRIu64 " rx %" PRIu64 " drop queue %" PRIu64
				" oversize %" PRIu64 " peer closed %" PRIu64 " queue max %u\n", sd->name,
				ls->tx_frames, ls->rx_frames, ls->drop_queue, ls->drop_oversize,
				ls->drop_peer_closed, ls->queue_max);
	}
}

static void print_counters(const char *who, const struct xt_counters *c)
{
	const uint64_t *v = (const uint64_t *)c;
	printf("    %s:", who);
	for (int i = 0, col = 0; xt_counter_names[i]; i++) {
		if (!v[i])
			continue;
		printf("%s%s=%" PRIu64, col % 6 ? " " : "\n      ", xt_counter_names[i], v[i]);
		col++;
	}
	printf("\n");
}

/* One instant: deliver every receivable frame, let both applications act,
 * run both engines' timers; repeat while anything moved. */
static bool sim_instant(struct sim *sim)
{
	struct xt_frame fr[64];

	for (unsigned iter = 0;; iter++) {
		uint64_t progress = 0;
		if (iter >= MAX_SAME_INSTANT)
			return sim_fail(sim, "livelock: %u rounds at one instant", iter);
		for (int i = 0; i < 2; i++) {
			struct side *sd = &sim->s[i];
			for (;;) {
				int n = xt_nic_rx(sd->nic, fr, 64, sim->now);
				if (n < 0)
					return sim_fail(sim, "%s: rx_burst returned %d", sd->name, n);
				if (n == 0)
					break;
				for (int k = 0; k < n; k++) {
					if (trace_on)
						trace_frame(sim, sd->name, "<", fr[k].data, fr[k].len);
					xt_stack_input_frame(sd->st, &fr[k], sim->now);
				}
				xt_stack_flush(sd->st);
				progress += (uint64_t)n;
			}
		}
		for (int i = 0; i < 2; i++)
			if (!app_step(&sim->s[i], &progress))
				return false;
		for (int i = 0; i < 2; i++)
			xt_stack_poll(sim->s[i].st, sim->now);
		if (!progress)
			return true;
	}
}

static bool sim_done(const struct sim *sim, bool drain)
{
	if (!sim->s[0].closed || !sim->s[1].closed)
		return false;
	if (!drain)
		return true;
	for (int i = 0; i < 2; i++)
		if (xt_stack_next_deadline(sim->s[i].st) != XT_TIME_NEVER ||
		    xt_nic_deadline(sim->s[i].nic) != XT_TIME_NEVER)
			return false;
	return true;
}

/* Runs until done (drain: also until every timer has expired). */
static bool sim_run(struct sim *sim, bool drain)
{
	unsigned stale_run = 0;

	for (;;) {
		if (!sim_instant(sim))
			return false;
		if (sim_done(sim, drain))
			return true;
		xt_time_t next = XT_TIME_NEVER;
		for (int i = 0; i < 2; i++) {
			next = min_t(next, xt_stack_next_deadline(sim->s[i].st));
			next = min_t(next, xt_nic_deadline(sim->s[i].nic));
		}
		if (next == XT_TIME_NEVER)
			return sim_fail(sim, "deadlock: nothing to do and no deadline");
		if (next <= sim->now) {
			/* A deadline that polling at that instant did not consume:
			 * step 1 ns so time still moves, and count it. */
			sim->stale++;
			if (++stale_run > MAX_STALE_DEADLINES)
				return sim_fail(sim, "deadline %" PRIu64 " <= now %" PRIu64
						" stays due after polling", next, sim->now);
			next = sim->now + 1;
		} else {
			stale_run = 0;
		}
		if (next - sim->start > VTIME_LIMIT)
			return sim_fail(sim, "virtual time limit of %.0f s exceeded",
					(double)VTIME_LIMIT / 1e9);
		sim->now = next;
	}
}

static double wall_now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static bool getenv_flag(const char *name)
{
	const char *v = getenv(name);
	return v && *v && *v != '0';
}

static void run_case(void **state)
{
	const struct ncase *c = *state;
	struct nresult *res = &results[c - cases];
	double w0 = wall_now();
	struct sim *sim = sim_new(c);
	struct side *A = &sim->s[0], *B = &sim->s[1];

	res->c = c;
	/* B listens, A connects. */
	B->lsock = xt_tcp_open(B->st);
	assert_true(B->lsock >= 0);
	assert_int_equal(xt_tcp_bind(B->st, B->lsock, IP_B, PORT_B), 0);
	assert_int_equal(xt_tcp_listen(B->st, B->lsock, 16), 0);
	A->sock = xt_tcp_open(A->st);
	assert_true(A->sock >= 0);
	assert_int_equal(xt_tcp_connect(A->st, A->sock, IP_B, PORT_B, sim->now), -EINPROGRESS);

	bool ok = sim_run(sim, false);
	xt_time_t t_closed = sim->now;
	uint64_t trace_closed = sim->trace;
	if (ok)
		ok = sim_run(sim, true);
	if (!ok) {
		fprintf(stderr, "netsim %s: %s\n", c->name, sim->err);
		sim_dump(sim);
		print_counters("A", xt_stack_counters(A->st));
		print_counters("B", xt_stack_counters(B->st));
	}
	assert_true(ok);

	const struct xt_counters *ca = xt_stack_counters(A->st), *cb = xt_stack_counters(B->st);
	res->fs[0] = *xt_fault_stats(A->nic);
	res->fs[1] = *xt_fault_stats(B->nic);
	res->csum_drops = ca->drop_ip_csum + ca->drop_tcp_csum + cb->drop_ip_csum + cb->drop_tcp_csum;
	uint64_t corrupted = res->fs[0].corrupted + res->fs[1].corrupted;
	uint64_t faults = 0;
	for (int i = 0; i < 2; i++)
		faults += res->fs[i].lost + res->fs[i].corrupted + res->fs[i].reordered + res->fs[i].dupped;
	xt_time_t t_data = A->t_eof > B->t_eof ? A->t_eof : B->t_eof;
	res->vtime_data_s = (double)(t_data - sim->start) / 1e9;
	res->vtime_total_s = (double)(t_closed - sim->start) / 1e9;
	res->goodput_ab_mbps = (double)sim->total * 8 / ((double)(B->t_eof - sim->start) / 1e9) / 1e6;
	res->goodput_ba_mbps = (double)sim->total * 8 / ((double)(A->t_eof - sim->start) / 1e9) / 1e6;
	res->retrans = ca->tcp_retrans_segs + cb->tcp_retrans_segs;
	res->fast_retrans = ca->tcp_fast_retrans + cb->tcp_fast_retrans;
	res->rto = ca->tcp_rto + cb->tcp_rto;
	res->stale = sim->stale;
	res->trace_hash = trace_closed;
	res->wall_s = wall_now() - w0;
	res->done = true;

	printf("  netsim %-28s loss %4.1f%% seed %-3" PRIu64
	       " vtime %8.3f s (closed %8.3f s) goodput A->B %7.1f B->A %7.1f Mbit/s"
	       " retrans %6" PRIu64 " fast %5" PRIu64 " rto %4" PRIu64 " csum-drops %4" PRIu64
	       "/%4" PRIu64 " final %s/%s wall %.2f s\n",
	       c->name, c->loss * 100, c->seed, res->vtime_data_s, res->vtime_total_s,
	       res->goodput_ab_mbps, res->goodput_ba_mbps, res->retrans, res->fast_retrans,
	       res->rto, res->csum_drops, corrupted, xt_state_name(A->final_state),
	       xt_state_name(B->final_state), res->wall_s);
	fflush(stdout);

	/* Every byte arrived intact (checked on receipt) and in full. */
	assert_int_equal(A->rx_off, sim->total);
	assert_int_equal(B->rx_off, sim->total);
	assert_true(shash_final(&A->tx_hash) == shash_final(&B->rx_hash));
	assert_true(shash_final(&B->tx_hash) == shash_final(&A->rx_hash));
	/* Every timer expired (TIME_WAIT included) and all memory came back. */
	assert_int_equal(xt_stack_mem_used(A->st), 0);
	assert_int_equal(xt_stack_mem_used(B->st), 0);
	/* A flipped bit lands in the Ethernet header (14 of at least 54 bytes)
	 * at most a quarter of the time; everything else must fail a checksum. */
	if (corrupted >= 20) {
		assert_true(res->csum_drops > 0);
		assert_true(res->csum_drops * 2 >= corrupted);
	}
	/* Retransmissions answer faults: a storm (e.g. a segment resent on every
	 * ACK) shows up as far more retransmissions than the wire caused. */
	if (res->retrans > 4 * faults + 256) {
		fprintf(stderr, "netsim %s: %" PRIu64 " retransmissions for %" PRIu64
			" frames lost, corrupted, reordered or duplicated\n", c->name, res->retrans, faults);
		print_counters("A", ca);
		print_counters("B", cb);
	}
	assert_true(res->retrans <= 4 * faults + 256);
	/* After a poll at t the engine must not report a deadline <= t: a
	 * real driver would spin on it. */
	assert_int_equal(res->stale, 0);
	res->ok = true;

	if (res->stale)
		printf("    note: %" PRIu64 " deadlines were still due after polling\n", res->stale);
	if (getenv_flag("NETSIM_VERBOSE")) {
		print_counters("A", ca);
		print_counters("B", cb);
		printf("    faults A->B: frames %" PRIu64 " lost %" PRIu64 " dup %" PRIu64
		       " reordered %" PRIu64 " corrupted %" PRIu64 "\n",
		       res->fs[0].frames, res->fs[0].lost, res->fs[0].dupped, res->fs[0].reordered,
		       res->fs[0].corrupted);
		printf("    faults B->A: frames %" PRIu64 " lost %" PRIu64 " dup %" PRIu64
		       " reordered %" PRIu64 " corrupted %" PRIu64 "\n",
		       res->fs[1].frames, res->fs[1].lost, res->fs[1].dupped, res->fs[1].reordered,
		       res->fs[1].corrupted);
	}
	sim_free(sim);
}

/* The same case twice gives the same frames at the same instants. */
/* Runs case c again and checks it sent exactly what the first run of
 * first_case sent: the same frames (length, headers and TCP checksum, which
 * covers the payload) at the same virtual times. */
static void rerun_same(const struct ncase *c, const struct ncase *first_case, const char *what,
		       struct xt_counters *cnt)
{
	const struct nresult *first = &results[first_case - cases];
	if (!first->done)
		skip();
	struct sim *sim = sim_new(c);
	struct side *A = &sim->s[0], *B = &sim->s[1];
	B->lsock = xt_tcp_open(B->st);
	assert_int_equal(xt_tcp_bind(B->st, B->lsock, IP_B, PORT_B), 0);
	assert_int_equal(xt_tcp_listen(B->st, B->lsock, 16), 0);
	A->sock = xt_tcp_open(A->st);
	assert_int_equal(xt_tcp_connect(A->st, A->sock, IP_B, PORT_B, sim->now), -EINPROGRESS);
	bool ok = sim_run(sim, false);
	if (!ok)
		fprintf(stderr, "netsim %s %s: %s\n", what, c->name, sim->err);
	assert_true(ok);
	double vt = (double)(sim->now - sim->start) / 1e9;
	printf("  netsim %s %s: vtime %.6f s vs %.6f s, trace %016" PRIx64 " vs %016" PRIx64
	       "\n", what, c->name, vt, first->vtime_total_s, sim->trace, first->trace_hash);
	assert_true(sim->trace == first->trace_hash);
	assert_true(vt == first->vtime_total_s);
	if (cnt)
		*cnt = *xt_stack_counters(B->st);
	sim_free(sim);
}

/* The same seed must give the same run. */
static void determinism(void **state)
{
	const struct ncase *c = *state;
	rerun_same(c, c, "determinism", NULL);
}

/* Frames whose payload is gathered from the send ring must be the very
 * frames that copying builds, under loss, reordering, corruption and ARP. */
static void gather_matches_copy(void **state)
{
	const struct ncase *c = *state;
	struct ncase v = *c;
	v.copy_tx = !c->copy_tx;
	rerun_same(&v, c, c->copy_tx ? "gathered-tx" : "copied-tx", NULL);
}

/* Keeping received frames in place, until read or until the wire needs them
 * back, must not change what either side sends, nor (sim_run checks every
 * byte) what the application reads. */
static void hold_matches_copy(void **state)
{
	const struct ncase *c = *state;
	struct ncase v = *c;
	v.copy_rx = !c->copy_rx;
	struct xt_counters cnt;
	rerun_same(&v, c, c->copy_rx ? "held-rx" : "copied-rx", &cnt);
	printf("  receiver: %" PRIu64 " segments kept in place, %" PRIu64 " of them copied later\n",
	       cnt.tcp_rx_held, cnt.tcp_rx_hold_copied);
	if (v.copy_rx)
		assert_int_equal(cnt.tcp_rx_held, 0);
	else
		assert_true(cnt.tcp_rx_held > 1000);
}

static void add_case(double loss, uint64_t seed, uint32_t rcvbuf, bool dyn_arp, double corrupt,
		     uint64_t bytes)
{
	if (ncases >= MAX_CASES)
		return;
	struct ncase *c = &cases[ncases++];
	c->loss = loss;
	c->dup = 0.005;
	c->reorder = 0.01;
	c->corrupt = corrupt;
	c->seed = seed;
	c->rcvbuf = rcvbuf;
	c->dyn_arp = dyn_arp;
	c->bytes = bytes;
	c->copy_tx = seed & 1; /* both ways of building frames, under the same faults */
	c->copy_rx = (seed >> 1) & 1; /* and of receiving them */
	snprintf(c->name, sizeof(c->name), "loss%g%%_seed%" PRIu64 "%s%s%s", loss * 100, seed,
		 rcvbuf ? "_rcvbuf64k_arp" : "", c->copy_tx ? "_copytx" : "", c->copy_rx ? "_copyrx" : "");
}

static const char *results_path(void)
{
	const char *p = getenv("NETSIM_RESULTS");
	if (p && *p)
		return p;
	struct stat sb;
	if (stat("build", &sb) == 0 && S_ISDIR(sb.st_mode))
		return "build/netsim-results.txt";
	return "netsim-results.txt";
}

static int write_results(void **state)
{
	(void)state;
	const char *path = results_path();
	FILE *f = fopen(path, "w");
	if (!f) {
		fprintf(stderr, "netsim: cannot write %s\n", path);
		return 0;
	}
	fprintf(f, "xtcp netsim: two engines, loop wire 1 Gbit/s, 100 us one-way latency + 20 us "
		   "fault delay,\nqueue 1000 frames; faults on both directions: dup 0.5%%, reorder "
		   "1%% (by 60 us), corrupt 0.1%% (one bit);\n%" PRIu64
		   " MiB each way at the same time over one connection, then shutdown/close.\n"
		   "vtime: virtual seconds until both sides read EOF; goodput per direction, "
		   "virtual.\n\n",
		cases[0].bytes >> 20);
	fprintf(f, "| case | loss | seed | vtime s | A->B Mbit/s | B->A Mbit/s | retrans | "
		   "fast retr | RTOs | lost | csum drops/corrupted | wall s |\n");
	fprintf(f, "|---|---|---|---|---|---|---|---|---|---|---|---|\n");
	for (int i = 0; i < ncases; i++) {
		const struct nresult *r = &results[i];
		const struct ncase *c = &cases[i];
		if (!r->done) {
			fprintf(f, "| %s | %.1f%% | %" PRIu64 " | FAILED | | | | | | | | |\n", c->name,
				c->loss * 100, c->seed);
			continue;
		}
		fprintf(f,
			"| %s%s | %.1f%% | %" PRIu64 " | %.3f | %.1f | %.1f | %" PRIu64 " | %" PRIu64
			" | %" PRIu64 " | %" PRIu64 " | %" PRIu64 "/%" PRIu64 " | %.2f |\n",
			c->name, r->ok ? "" : " (FAILED a check)", c->loss * 100, c->seed, r->vtime_data_s, r->goodput_ab_mbps,
			r->goodput_ba_mbps, r->retrans, r->fast_retrans, r->rto,
			r->fs[0].lost + r->fs[1].lost, r->csum_drops,
			r->fs[0].corrupted + r->fs[1].corrupted, r->wall_s);
	}
	/* Per loss rate, over the default-buffer cases. */
	fprintf(f, "\nPer loss rate (mean over seeds, default 256 KiB buffers):\n\n");
	fprintf(f, "| loss | cases | vtime s | goodput Mbit/s (per direction) | retrans | fast retr "
		   "| RTOs |\n|---|---|---|---|---|---|---|\n");
	static const double rates[] = { 0, 0.01, 0.05, 0.10 };
	for (unsigned k = 0; k < sizeof(rates) / sizeof(rates[0]); k++) {
		int n = 0;
		double vt = 0, gp = 0, rt = 0, fr = 0, ro = 0;
		for (int i = 0; i < ncases; i++) {
			const struct nresult *r = &results[i];
			if (!r->done || cases[i].rcvbuf || cases[i].loss != rates[k])
				continue;
			n++;
			vt += r->vtime_data_s;
			gp += (r->goodput_ab_mbps + r->goodput_ba_mbps) / 2;
			rt += (double)r->retrans;
			fr += (double)r->fast_retrans;
			ro += (double)r->rto;
		}
		if (!n)
			continue;
		fprintf(f, "| %.0f%% | %d | %.3f | %.1f | %.0f | %.0f | %.0f |\n", rates[k] * 100, n,
			vt / n, gp / n, rt / n, fr / n, ro / n);
	}
	fclose(f);
	printf("  netsim: results written to %s\n", path);
	return 0;
}

/* ---- recovery quality (the TCP-completeness issue) ---- */

static struct ncase *add_variant(double loss, uint64_t seed, int cc, bool no_sack, uint64_t bytes,
				 const char *tag)
{
	add_case(loss, seed, 0, false, 0, bytes);
	struct ncase *c = &cases[ncases - 1];
	c->cc = cc;
	c->no_sack = no_sack;
	c->dup = 0;
	c->reorder = 0;
	snprintf(c->name, sizeof(c->name), "%s_loss%g%%_seed%" PRIu64, tag, loss * 100, seed);
	return c;
}

/* Single transfers at 1% loss differ by a factor of 5 from seed to seed (one
 * RTO more or less): with 3 seeds a 6% larger receive ring reversed the 1%
 * comparison, with 8 it holds either way (about 1.2 s more). */
#define CMP_SEEDS 8
static struct ncase *cmp_cases[2][2][CMP_SEEDS]; /* [loss 1%, 5%][sack+cubic, reno][seed] */

/* With SACK and CUBIC, goodput under 1% and 5% random loss is at least what
 * NewReno without SACK reaches on the same seeds (mean over the seeds). */
static void sack_cubic_vs_newreno(void **state)
{
	(void)state;
	static const double loss[2] = { 0.01, 0.05 };
	for (int l = 0; l < 2; l++) {
		double gp[2] = { 0, 0 };
		for (int v = 0; v < 2; v++)
			for (int k = 0; k < CMP_SEEDS; k++) {
				struct ncase *c = cmp_cases[l][v][k];
				void *st = c;
				run_case(&st);
				const struct nresult *r = &results[c - cases];
				gp[v] += (r->goodput_ab_mbps + r->goodput_ba_mbps) / 2 / CMP_SEEDS;
			}
		printf("  netsim recovery at %.0f%% loss: SACK+CUBIC %.1f Mbit/s, NewReno without SACK %.1f Mbit/s\n",
		       loss[l] * 100, gp[0], gp[1]);
		assert_true(gp[0] >= gp[1]);
	}
}

static struct ncase *burst_case;

/* 30 consecutive segments lost in the middle of a transfer are repaired by
 * SACK recovery, without a retransmission timeout. */
static void burst_loss_no_rto(void **state)
{
	(void)state;
	void *st = burst_case;
	run_case(&st);
	const struct nresult *r = &results[burst_case - cases];
	assert_int_equal(r->fs[0].lost, 30);
	assert_int_equal(r->rto, 0);
	assert_true(r->fast_retrans >= 1);
}

int main(void)
{
	int seeds = 5;
	uint64_t mib = 64;
	const char *e;
	trace_on = getenv_flag("NETSIM_TRACE");
	if ((e = getenv("NETSIM_SEEDS")) && atoi(e) > 0)
		seeds = atoi(e);
	if ((e = getenv("NETSIM_MIB")) && atoi(e) > 0)
		mib = (uint64_t)atoi(e);
	static const double rates[] = { 0, 0.01, 0.05, 0.10 };
	for (int s = 0; s < seeds; s++)
		for (unsigned k = 0; k < sizeof(rates) / sizeof(rates[0]); k++)
			add_case(rates[k], (uint64_t)s + 1, 0, false, 0.001, mib << 20);
	/* A small receive window (64 KiB) at 1% loss, with ARP resolving
	 * dynamically (no corruption here: ARP has no checksum, and a flipped
	 * sender MAC would poison the cache like on a real wire). */
	int small = ncases;
	/* NETSIM_ONLY=substring: run only the matching cases. */
	const char *only = getenv("NETSIM_ONLY");
	add_case(0.01, 7, 65536, true, 0, mib << 20);
	int fixed = ncases;
	static const double cmp_loss[2] = { 0.01, 0.05 };
	for (int l = 0; l < 2; l++)
		for (int k = 0; k < CMP_SEEDS; k++) {
			cmp_cases[l][0][k] = add_variant(cmp_loss[l], (uint64_t)k + 11, XT_CC_CUBIC, false, 8u << 20, "sackcubic");
			cmp_cases[l][1][k] = add_variant(cmp_loss[l], (uint64_t)k + 11, XT_CC_RENO, true, 8u << 20, "renonosack");
		}
	burst_case = add_variant(0, 21, XT_CC_CUBIC, false, 16u << 20, "burst30");
	burst_case->burst_start = 3000;
	burst_case->burst_len = 30;
	burst_case->corrupt = 0;

	struct CMUnitTest tests[MAX_CASES + 5];
	int nt = 0;
	for (int i = 0; i < fixed; i++) {
		if (only && *only && !strstr(cases[i].name, only))
			continue;
		memset(&tests[nt], 0, sizeof(tests[nt]));
		tests[nt].name = cases[i].name;
		tests[nt].test_func = run_case;
		tests[nt].initial_state = &cases[i];
		nt++;
	}
	/* Repeat the small case: the same seed must give the same run. */
	memset(&tests[nt], 0, sizeof(tests[nt]));
	tests[nt].name = "determinism";
	tests[nt].test_func = determinism;
	tests[nt].initial_state = &cases[small];
	nt++;
	/* The small case (ARP queue) and a corrupting 5% loss one, each built
	 * the other way. */
	int other[2] = { small, -1 };
	for (int i = 0; i < small; i++)
		if (cases[i].loss == 0.05 && cases[i].copy_tx == !cases[small].copy_tx)
			other[1] = i;
	for (int k = 0; k < 2; k++) {
		if (other[k] < 0 || (only && *only && !strstr(cases[other[k]].name, only)))
			continue;
		memset(&tests[nt], 0, sizeof(tests[nt]));
		tests[nt].name = k ? "gather_matches_copy_loss5" : "gather_matches_copy_arp";
		tests[nt].test_func = gather_matches_copy;
		tests[nt].initial_state = &cases[other[k]];
		nt++;
		memset(&tests[nt], 0, sizeof(tests[nt]));
		tests[nt].name = k ? "hold_matches_copy_loss5" : "hold_matches_copy_arp";
		tests[nt].test_func = hold_matches_copy;
		tests[nt].initial_state = &cases[other[k]];
		nt++;
	}
	if (!only || !*only || strstr("sack_cubic_vs_newreno", only)) {
		memset(&tests[nt], 0, sizeof(tests[nt]));
		tests[nt].name = "sack_cubic_vs_newreno";
		tests[nt].test_func = sack_cubic_vs_newreno;
		nt++;
	}
	if (!only || !*only || strstr("burst_loss_no_rto", only)) {
		memset(&tests[nt], 0, sizeof(tests[nt]));
		tests[nt].name = "burst_loss_no_rto";
		tests[nt].test_func = burst_loss_no_rto;
		nt++;
	}
	return _cmocka_run_group_tests("netsim", tests, (size_t)nt, NULL, write_results);
}
