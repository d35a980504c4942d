/* xtcp-demo: two engines talk TCP over an in-memory wire in virtual time.
 *
 * A (10.0.0.1) connects to B (10.0.0.2:5001); both then send N bytes to each
 * other at once, verify every byte they receive, shut down, and close once
 * the connection has finished (TIME_WAIT or CLOSED).  The wire is a loop
 * pair (latency, bandwidth, bounded queue), optionally behind the seeded
 * fault injector on both ends and a pcap capture on A.
 *
 * The driver is a single-threaded event loop in virtual time: it delivers
 * every frame that has arrived, lets both applications read and write until
 * they would block, runs the engines' timers, and then jumps to the earliest
 * deadline of the engines and the wire.  Nothing sleeps, so a run takes as
 * long as the engine's work, whatever the virtual time.
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "stack/xtcp.h"
#include "nic/nic.h"
#include "nic/loop_priv.h"

#define DEMO_PORT 5001
#define IP_A 0x0a000001u /* 10.0.0.1 */
#define IP_B 0x0a000002u /* 10.0.0.2 */
#define NETMASK 0xffffff00u
#define CHUNK 65536
#define RX_BURST 64
#define START_TIME XT_SEC(1) /* any clock value works; not 0, like a real one */
/* A driver iteration that makes progress stays at the same virtual time;
 * this many in a row means someone spins. */
#define MAX_STEPS_AT_ONE_TIME 1000000

struct opts {
	uint64_t bytes;
	double loss, dup, reorder, corrupt; /* percent */
	uint64_t seed;
	uint64_t latency_us, reorder_delay_us, bandwidth_mbps;
	uint32_t queue;
	const char *pcap;
	uint64_t max_time_s;
	bool verbose;
};

/* One end: engine, nic and the application's side of the transfer. */
struct side {
	const char *name;
	struct xt_stack *st;
	struct xt_nic *nic;   /* outermost wrapper, what the engine talks to */
	struct xt_nic *loop;  /* the wire end, for its counters */
	struct xt_nic *fault; /* NULL without fault injection */
	xt_time_t now;        /* the driver's time, for the engine's tx callback */
	int lsock, sock;
	uint64_t total;
	uint64_t tx_seed, rx_seed; /* streams this side sends and expects */
	uint64_t sent, recvd;
	uint64_t fnv_tx, fnv_rx;
	bool shut_wr, eof, closed;
	int final_state;
	uint8_t txbuf[CHUNK];
	uint64_t txbuf_off;   /* stream offset of txbuf[0] */
	uint32_t txbuf_len;
	uint8_t rxbuf[CHUNK], expect[CHUNK];
};

static bool failed;

static void fail(const char *who, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void fail(const char *who, const char *fmt, ...)
{
	va_list ap;
	fprintf(stderr, "xtcp-demo: %s: ", who);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	failed = true;
}

/* --- the byte streams ------------------------------------------------------ */

static uint64_t mix64(uint64_t z)
{
	z += 0x9e3779b97f4a7c15ull;
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

/* Byte off of the stream named by seed: random-looking, so a misplaced or
 * stale segment cannot pass for the right one, and computable at any offset
 * so the receiver checks it without keeping a copy. */
static void stream_fill(uint64_t seed, uint64_t off, uint8_t *buf, size_t len)
{
	for (size_t i = 0; i < len; i++) {
		uint64_t pos = off + i;
		buf[i] = (uint8_t)(mix64(seed + pos / 8) >> (8 * (pos % 8)));
	}
}

static uint64_t fnv1a(uint64_t h, const uint8_t *p, size_t n)
{
	for (size_t i = 0; i < n; i++)
		h = (h ^ p[i]) * 0x100000001b3ull;
	return h;
}
#define FNV_INIT 0xcbf29ce484222325ull

/* --- plumbing between engine and nic -------------------------------------- */

static int side_tx(void *ctx, const struct xt_frame *frames, int n)
{
	struct side *s = ctx;
	return xt_nic_tx(s->nic, frames, n, s->now);
}

/* Delivers every frame that has arrived by now; true if there was any. */
static bool side_receive(struct side *s, xt_time_t now)
{
	struct xt_frame frames[RX_BURST];
	bool any = false;
	int n;

	s->now = now;
	do {
		n = xt_nic_rx(s->nic, frames, RX_BURST, now);
		for (int i = 0; i < n; i++)
			xt_stack_input_frame(s->st, &frames[i], now);
		any |= n > 0;
	} while (n == RX_BURST);
	if (n < 0)
		fail(s->name, "rx_burst: %s", strerror(-n));
	xt_stack_flush(s->st);
	return any;
}

/* --- the application on each side ------------------------------------------- */

static bool app_accept(struct side *s, xt_time_t now)
{
	int r = xt_tcp_accept(s->st, s->lsock, NULL, NULL);

	if (r == -EAGAIN)
		return false;
	if (r < 0) {
		fail(s->name, "accept: %s", strerror(-r));
		return false;
	}
	s->sock = r;
	xt_tcp_close(s->st, s->lsock, now);
	s->lsock = -1;
	return true;
}

static bool app_send(struct side *s, xt_time_t now)
{
	bool progress = false;

	while (s->sent < s->total) {
		uint64_t left = s->total - s->sent;
		long r;
		if (s->sent >= s->txbuf_off + s->txbuf_len) {
			s->txbuf_off = s->sent;
			s->txbuf_len = left < CHUNK ? (uint32_t)left : CHUNK;
			stream_fill(s->tx_seed, s->txbuf_off, s->txbuf, s->txbuf_len);
		}
		uint32_t at = (uint32_t)(s->sent - s->txbuf_off);
		r = xt_tcp_send(s->st, s->sock, s->txbuf + at, s->txbuf_len - at, 0, now);
		if (r == -EAGAIN)
			break;
		if (r <= 0) {
			fail(s->name, "send at byte %" PRIu64 ": %s", s->sent, r ? strerror((int)-r) : "returned 0");
			break;
		}
		s->fnv_tx = fnv1a(s->fnv_tx, s->txbuf + at, (size_t)r);
		s->sent += (uint64_t)r;
		progress = true;
	}
	return progress;
}

static void verify(struct side *s, size_t n)
{
	stream_fill(s->rx_seed, s->recvd, s->expect, n);
	if (memcmp(s->rxbuf, s->expect, n) == 0)
		return;
	for (size_t i = 0; i < n; i++) {
		if (s->rxbuf[i] != s->expect[i]) {
			fail(s->name, "byte %" PRIu64 " received as 0x%02x, sent as 0x%02x", s->recvd + i,
			     s->rxbuf[i], s->expect[i]);
			return;
		}
	}
}

static bool app_recv(struct side *s, xt_time_t now)
{
	bool progress = false;

	while (!s->eof && !failed) {
		long r = xt_tcp_recv(s->st, s->sock, s->rxbuf, sizeof(s->rxbuf), 0, now);
		if (r == -EAGAIN)
			break;
		if (r < 0) {
			fail(s->name, "recv after %" PRIu64 " bytes: %s", s->recvd, strerror((int)-r));
			break;
		}
		progress = true;
		if (r == 0) {
			s->eof = true;
			if (s->recvd != s->total)
				fail(s->name, "end of stream after %" PRIu64 " of %" PRIu64 " bytes", s->recvd, s->total);
			break;
		}
		if (s->recvd + (uint64_t)r > s->total) {
			fail(s->name, "received more than the %" PRIu64 " bytes sent", s->total);
			break;
		}
		verify(s, (size_t)r);
		s->fnv_rx = fnv1a(s->fnv_rx, s->rxbuf, (size_t)r);
		s->recvd += (uint64_t)r;
	}
	return progress;
}

/* Closes the handle once both directions are finished and the engine says
 * the connection is over (or waiting in TIME_WAIT). */
static bool app_finish(struct side *s, xt_time_t now)
{
	int state;

	if (s->sent == s->total && !s->shut_wr) {
		int r = xt_tcp_shutdown(s->st, s->sock, XT_SHUT_WR, now);
		if (r < 0)
			fail(s->name, "shutdown: %s", strerror(-r));
		s->shut_wr = true;
		return true;
	}
	if (!s->shut_wr || !s->eof || s->closed)
		return false;
	state = xt_tcp_state(s->st, s->sock);
	if (state != XT_TIME_WAIT && state != XT_CLOSE)
		return false;
	s->final_state = state;
	xt_tcp_close(s->st, s->sock, now);
	s->closed = true;
	return true;
}

static bool app_step(struct side *s, xt_time_t now)
{
	bool progress = false;
	int state;

	if (s->sock < 0)
		return s->lsock >= 0 && app_accept(s, now);
	if (s->closed)
		return false;
	state = xt_tcp_state(s->st, s->sock);
	if (state == XT_SYN_SENT || state == XT_SYN_RECV)
		return false;
	progress |= app_send(s, now);
	progress |= app_recv(s, now);
	progress |= app_finish(s, now);
	return progress;
}

/* --- setup ------------------------------------------------------------------- */

static struct xt_stack *stack_for(struct side *s, uint32_t ip, uint64_t seed, xt_time_t now)
{
	struct xt_stack_cfg cfg;

	xt_stack_cfg_defaults(&cfg);
	memcpy(cfg.mac, s->nic->caps.mac, 6);
	cfg.ip = ip;
	cfg.netmask = NETMASK;
	cfg.mtu = s->nic->caps.mtu;
	cfg.secret[0] = mix64(seed ^ ip);
	cfg.secret[1] = mix64(seed + ip);
	cfg.tx = side_tx;
	cfg.tx_ctx = s;
	return xt_stack_new(&cfg, now);
}

static struct xt_nic *wrap_fault(struct xt_nic *nic, const struct opts *o, uint64_t seed)
{
	struct xt_fault_cfg fc = {
		.seed = seed,
		.loss = o->loss / 100.0,
		.dup = o->dup / 100.0,
		.reorder = o->reorder / 100.0,
		.corrupt = o->corrupt / 100.0,
		.reorder_delay = XT_US(o->reorder_delay_us),
	};
	return xt_fault_wrap(nic, &fc);
}

static int setup(struct side *a, struct side *b, const struct opts *o, xt_time_t now)
{
	struct xt_loop_cfg lc = {
		.latency = XT_US(o->latency_us),
		.bandwidth_bps = o->bandwidth_mbps * 1000000u,
		.queue_frames = o->queue,
	};
	bool faults = o->loss > 0 || o->dup > 0 || o->reorder > 0 || o->corrupt > 0;
	int r = xt_loop_pair(&lc, &a->loop, &b->loop);

	if (r < 0) {
		fail("setup", "xt_loop_pair: %s", strerror(-r));
		return -1;
	}
	a->nic = a->loop;
	b->nic = b->loop;
	if (faults) {
		a->nic = a->fault = wrap_fault(a->nic, o, o->seed * 2);
		b->nic = b->fault = wrap_fault(b->nic, o, o->seed * 2 + 1);
		if (!a->nic || !b->nic)
			return fail("setup", "xt_fault_wrap failed"), -1;
	}
	if (o->pcap && !(a->nic = xt_pcap_wrap(a->nic, o->pcap)))
		return fail("setup", "cannot write %s", o->pcap), -1;
	/* connect() below already transmits (ARP, SYN) through side_tx. */
	a->now = b->now = now;
	a->st = stack_for(a, IP_A, o->seed, now);
	b->st = stack_for(b, IP_B, o->seed, now);
	if (!a->st || !b->st)
		return fail("setup", "xt_stack_new failed"), -1;

	b->lsock = xt_tcp_open(b->st);
	if (b->lsock < 0 || xt_tcp_bind(b->st, b->lsock, IP_B, DEMO_PORT) < 0 ||
	    xt_tcp_listen(b->st, b->lsock, 16) < 0)
		return fail("B", "cannot listen on port %d", DEMO_PORT), -1;
	a->sock = xt_tcp_open(a->st);
	if (a->sock < 0)
		return fail("A", "xt_tcp_open: %s", strerror(-a->sock)), -1;
	r = xt_tcp_connect(a->st, a->sock, IP_B, DEMO_PORT, now);
	if (r != -EINPROGRESS && r != 0)
		return fail("A", "connect: %s", strerror(-r)), -1;
	return 0;
}

static void side_init(struct side *s, const char *name, uint64_t total, uint64_t tx_seed, uint64_t rx_seed)
{
	memset(s, 0, sizeof(*s));
	s->name = name;
	s->lsock = s->sock = -1;
	s->total = total;
	s->tx_seed = tx_seed;
	s->rx_seed = rx_seed;
	s->fnv_tx = s->fnv_rx = FNV_INIT;
	s->final_state = -1;
}

/* --- the driver loop ---------------------------------------------------------- */

static xt_time_t min_time(xt_time_t a, xt_time_t b) { return a < b ? a : b; }

static xt_time_t next_event(struct side *a, struct side *b)
{
	xt_time_t t = min_time(xt_stack_next_deadline(a->st), xt_stack_next_deadline(b->st));
	return min_time(t, min_time(xt_nic_deadline(a->nic), xt_nic_deadline(b->nic)));
}

/* One pass at time now: frames in, applications, timers and output. */
static bool step(struct side *a, struct side *b, xt_time_t now)
{
	bool progress = false;

	progress |= side_receive(a, now);
	progress |= side_receive(b, now);
	progress |= app_step(a, now);
	progress |= app_step(b, now);
	xt_stack_poll(a->st, now);
	xt_stack_poll(b->st, now);
	return progress;
}

/* Runs until both sides closed; returns the virtual time reached. */
static xt_time_t run(struct side *a, struct side *b, xt_time_t now, xt_time_t limit)
{
	unsigned steps_here = 0;

	while (!failed && !(a->closed && b->closed)) {
		bool progress = step(a, b, now);
		xt_time_t next = next_event(a, b);
		if (progress || next <= now) {
			/* Something happened, or is due: look again at the same
			 * time, but not forever. */
			if (++steps_here > MAX_STEPS_AT_ONE_TIME) {
				fail("driver", "no progress at virtual time %.6f s (next deadline %" PRIu64 ")",
				     (double)(now - START_TIME) / 1e9, next);
				break;
			}
			continue;
		}
		if (next == XT_TIME_NEVER) {
			fail("driver", "stalled: nothing scheduled and the transfer is not finished");
			break;
		}
		if (next > limit) {
			fail("driver", "virtual time limit reached before the transfer finished");
			break;
		}
		now = next;
		steps_here = 0;
	}
	return now;
}

/* --- report ------------------------------------------------------------------- */

static uint64_t drops_total(const struct xt_counters *c)
{
	const uint64_t *v = (const uint64_t *)c;
	uint64_t sum = 0;

	for (int i = 0; xt_counter_names[i]; i++)
		if (strncmp(xt_counter_names[i], "drop_", 5) == 0)
			sum += v[i];
	return sum;
}

static void print_all_counters(const struct side *s)
{
	const uint64_t *v = (const uint64_t *)xt_stack_counters(s->st);

	printf("  %s counters (nonzero):\n", s->name);
	for (int i = 0; xt_counter_names[i]; i++)
		if (v[i])
			printf("    %-28s %" PRIu64 "\n", xt_counter_names[i], v[i]);
}

static void report_side(const struct side *s, const struct side *peer, double vsec, const struct opts *o)
{
	const struct xt_counters *c = xt_stack_counters(s->st);
	const struct xt_loop_stats *w = xt_loop_stats(s->loop);

	printf("  %s->%s: %" PRIu64 " bytes, fnv1a %016" PRIx64 " sent, %016" PRIx64 " received, %s; "
	       "goodput %.3f Gbit/s\n",
	       s->name, peer->name, s->sent, s->fnv_tx, peer->fnv_rx,
	       s->fnv_tx == peer->fnv_rx && peer->recvd == s->sent ? "verified" : "MISMATCH",
	       vsec > 0 ? (double)peer->recvd * 8 / vsec / 1e9 : 0.0);
	printf("  %s: final state %s; segs out %" PRIu64 " in %" PRIu64 "; retrans %" PRIu64
	       " (fast %" PRIu64 ", rto %" PRIu64 "); dupacks %" PRIu64 "; out-of-order %" PRIu64
	       "; drops %" PRIu64 "\n",
	       s->name, s->final_state >= 0 ? xt_state_name(s->final_state) : "-", c->tcp_tx_segs, c->tcp_rx_segs,
	       c->tcp_retrans_segs, c->tcp_fast_retrans, c->tcp_rto, c->tcp_dupacks, c->tcp_ooo_segs,
	       drops_total(c));
	if (w)
		printf("  wire %s->%s: %" PRIu64 " frames, queue max %u, tail drops %" PRIu64 "\n", s->name,
		       peer->name, w->tx_frames, w->queue_max, w->drop_queue);
	if (s->fault) {
		const struct xt_fault_stats *f = xt_fault_stats(s->fault);
		printf("  faults %s->%s: %" PRIu64 " frames, %" PRIu64 " lost, %" PRIu64 " duplicated, %" PRIu64
		       " reordered, %" PRIu64 " corrupted\n",
		       s->name, peer->name, f->frames, f->lost, f->dupped, f->reordered, f->corrupted);
	}
	if (o->verbose)
		print_all_counters(s);
}

static void report(const struct side *a, const struct side *b, xt_time_t vtime, double wall,
		   const struct opts *o)
{
	double vsec = (double)vtime / 1e9;

	char rate[32] = "unlimited";

	if (o->bandwidth_mbps)
		snprintf(rate, sizeof(rate), "%" PRIu64 " Mbit/s", o->bandwidth_mbps);
	printf("xtcp-demo: %" PRIu64 " bytes each way; link %s, latency %" PRIu64 " us, queue %u; "
	       "loss %g%% dup %g%% reorder %g%% corrupt %g%%; seed %" PRIu64 "\n",
	       o->bytes, rate, o->latency_us, o->queue, o->loss, o->dup, o->reorder, o->corrupt, o->seed);
	report_side(a, b, vsec, o);
	report_side(b, a, vsec, o);
	printf("  virtual time %.6f s; wall clock %.3f s\n", vsec, wall);
	printf("xtcp-demo: %s\n", failed ? "FAILED" : "OK");
}

/* --- options ------------------------------------------------------------------ */

static void usage(FILE *f)
{
	fprintf(f,
		"usage: xtcp-demo [options]\n"
		"Two xtcp engines (A 10.0.0.1, B 10.0.0.2/24) over an in-memory wire in virtual time.\n"
		"B listens, A connects, both send --bytes to each other at once, verify every byte,\n"
		"shut down and close; then a report.  Exit status 0 only if every byte arrived intact\n"
		"and both sides closed cleanly.\n"
		"\n"
		"  --bytes N            bytes each way (suffixes K, M, G: powers of 1024; default 64M)\n"
		"  --loss PCT           drop PCT%% of frames, each direction (default 0)\n"
		"  --dup PCT            duplicate PCT%% of frames\n"
		"  --reorder PCT        hold PCT%% of frames back by --reorder-delay-us\n"
		"  --reorder-delay-us N (default 200)\n"
		"  --corrupt PCT        flip one bit in PCT%% of frames\n"
		"  --seed N             seed of the fault injector and the engines' secrets (default 1)\n"
		"  --latency-us N       one-way delay (default 50)\n"
		"  --bandwidth-mbps N   link rate each way, 0 for unlimited (default 1000)\n"
		"  --queue N            link queue in frames (default 1024)\n"
		"  --pcap FILE          capture A's frames to FILE (tcpdump -r FILE)\n"
		"  --max-time S         give up after S seconds of virtual time (default 600)\n"
		"  -v, --verbose        print every nonzero engine counter\n"
		"  -h, --help           this text\n");
}

static bool parse_u64(const char *s, uint64_t *out, bool suffixes)
{
	char *end;
	unsigned long long v;

	errno = 0;
	v = strtoull(s, &end, 0);
	if (errno || end == s || *s == '-')
		return false;
	if (suffixes && *end) {
		unsigned shift = *end == 'K' || *end == 'k' ? 10 : *end == 'M' || *end == 'm' ? 20
			       : *end == 'G' || *end == 'g' ? 30 : 0;
		if (!shift || end[1] || v > (UINT64_MAX >> shift))
			return false;
		v <<= shift;
		end++;
	}
	*out = v;
	return *end == '\0';
}

static bool parse_pct(const char *s, double *out)
{
	char *end;
	double v = strtod(s, &end);

	if (end == s || *end || !(v >= 0 && v <= 100))
		return false;
	*out = v;
	return true;
}

static int parse_opts(int argc, char **argv, struct opts *o)
{
	static const struct option longopts[] = {
		{ "bytes", 1, 0, 'b' }, { "loss", 1, 0, 'l' }, { "dup", 1, 0, 'd' },
		{ "reorder", 1, 0, 'r' }, { "reorder-delay-us", 1, 0, 'R' }, { "corrupt", 1, 0, 'c' },
		{ "seed", 1, 0, 's' }, { "latency-us", 1, 0, 'L' }, { "bandwidth-mbps", 1, 0, 'B' },
		{ "queue", 1, 0, 'q' }, { "pcap", 1, 0, 'p' }, { "max-time", 1, 0, 'T' },
		{ "verbose", 0, 0, 'v' }, { "help", 0, 0, 'h' }, { 0, 0, 0, 0 },
	};
	uint64_t q = 1024;
	int c, idx = 0;

	*o = (struct opts){ .bytes = 64ull << 20, .seed = 1, .latency_us = 50, .reorder_delay_us = 200,
			    .bandwidth_mbps = 1000, .max_time_s = 600 };
	while ((c = getopt_long(argc, argv, "vh", longopts, &idx)) != -1) {
		bool ok = true;
		switch (c) {
		case 'b': ok = parse_u64(optarg, &o->bytes, true); break;
		case 'l': ok = parse_pct(optarg, &o->loss); break;
		case 'd': ok = parse_pct(optarg, &o->dup); break;
		case 'r': ok = parse_pct(optarg, &o->reorder); break;
		case 'c': ok = parse_pct(optarg, &o->corrupt); break;
		case 'R': ok = parse_u64(optarg, &o->reorder_delay_us, false); break;
		case 's': ok = parse_u64(optarg, &o->seed, false); break;
		case 'L': ok = parse_u64(optarg, &o->latency_us, false); break;
		case 'B': ok = parse_u64(optarg, &o->bandwidth_mbps, false); break;
		case 'q': ok = parse_u64(optarg, &q, false) && q > 0 && q <= (1u << 20); break;
		case 'p': o->pcap = optarg; break;
		case 'T': ok = parse_u64(optarg, &o->max_time_s, false) && o->max_time_s > 0; break;
		case 'v': o->verbose = true; break;
		case 'h': usage(stdout); exit(0);
		default: fprintf(stderr, "see xtcp-demo --help\n"); return -1;
		}
		if (!ok) {
			fprintf(stderr, "xtcp-demo: bad value for --%s: %s (see --help)\n", longopts[idx].name, optarg);
			return -1;
		}
	}
	if (optind != argc) {
		fprintf(stderr, "xtcp-demo: unexpected argument %s\n", argv[optind]);
		return -1;
	}
	o->queue = (uint32_t)q;
	return 0;
}

static double wall_seconds(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

int main(int argc, char **argv)
{
	static struct side a, b; /* large buffers: not on the stack */
	struct opts o;
	xt_time_t end = START_TIME;
	double wall0;

	if (parse_opts(argc, argv, &o) < 0)
		return 2;
	side_init(&a, "A", o.bytes, mix64(o.seed ^ 0xa), mix64(o.seed ^ 0xb));
	side_init(&b, "B", o.bytes, mix64(o.seed ^ 0xb), mix64(o.seed ^ 0xa));
	wall0 = wall_seconds();
	if (setup(&a, &b, &o, START_TIME) == 0)
		end = run(&a, &b, START_TIME, START_TIME + XT_SEC(o.max_time_s));
	if (a.st && b.st)
		report(&a, &b, end - START_TIME, wall_seconds() - wall0, &o);
	xt_stack_free(a.st);
	xt_stack_free(b.st);
	if (a.nic)
		xt_nic_close(a.nic);
	if (b.nic)
		xt_nic_close(b.nic);
	return failed ? 1 : 0;
}
