/* The ibverbs backend (nic/verbs.c) on the libibverbs test double
 * (tests/ibv_double/), with no RDMA hardware.
 *
 * The double is build/ibv_double/libibverbs.so.1 next to the build tree of
 * this binary (or $XTCP_IBVERBS_DOUBLE); when it is missing the test builds
 * it with tests/ibv_double/build.sh, and fails if that fails: never a skip.
 * XTCP_IBVERBS_LIB is pointed at it, so the backend dlopen()s it exactly as
 * it would rdma-core's library; the test dlopen()s the same file for the
 * double's control interface (xtd.h: fault injection, capabilities, stats).
 *
 * Over the in-memory wire (devices xtd0/xtd1 behind netdevs xtdn0/xtdn1):
 * two engines connect and move 4 MiB each way; then every failure path of
 * the backend (library, device, capabilities, post and completion errors,
 * QP error state, async port and device events), flow steering, checksum
 * offload, inline sends, selective signalling, receive batching, TSO and
 * the completion channel in epoll.  The readiness tool runs against the
 * double too.  In a network namespace of its own (needs root and iproute2):
 * over AF_PACKET, an engine on the double on a veth serves a kernel TCP
 * client (test_packet_wire); and the engine on an address the kernel owns
 * (test_shared_address).
 *
 * Time is virtual except in test_packet_wire.
 */
#define _GNU_SOURCE
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <linux/capability.h>
#include <netinet/in.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>

#include "../stack/xtcp.h"
#include "../stack/xt_internal.h" /* wire offsets, xt_csum_* */
#include "../nic/nic.h"
#include "../nic/verbs.h"
#include "../tests/ibv_double/xtd.h"

#define IP_A 0x0a090001u /* 10.9.0.1 on xtdn0 */
#define IP_B 0x0a090002u /* 10.9.0.2 on xtdn1 */
#define NETMASK 0xffffff00u
#define DEV_A 0
#define DEV_B 1
#define PORT_SRV 5000
#define BULK (4u << 20)
#define QPS_RTS 3 /* IBV_QPS_RTS */
#define QPS_ERR 6 /* IBV_QPS_ERR */

/* --- the double ---------------------------------------------------------- */

static struct {
	char path[PATH_MAX];
	char src[PATH_MAX / 2]; /* source tree (for build.sh and packet_env.sh) */
	char tool[PATH_MAX];
	void *h;
	xtd_set_caps_fn set_caps;
	xtd_inject_fn inject;
	xtd_stats_fn stats;
	xtd_wire_input_fn wire_input;
	xtd_reset_fn reset;
	xtd_qp_state_fn qp_state;
	xtd_set_wire_fn set_wire;
	xtd_ndevs_fn ndevs;
} D;

static bool file_exists(const char *p)
{
	struct stat sb;
	return stat(p, &sb) == 0;
}

static int run_wait(char *const argv[])
{
	int status;
	pid_t pid = fork();

	if (pid < 0)
		return -1;
	if (pid == 0) {
		execv(argv[0], argv);
		_exit(127);
	}
	while (waitpid(pid, &status, 0) < 0)
		if (errno != EINTR)
			return -1;
	return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

/* Build tree root (build/ or build/asan/'s parent) and source tree from
 * /proc/self/exe: build/tests/test_verbs or build/asan/tests/test_verbs. */
static void find_paths(char *build, size_t blen)
{
	char exe[PATH_MAX], *slash;
	ssize_t n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
	const char *src = getenv("XTCP_SRCDIR");

	if (n <= 0)
		fail_msg("readlink /proc/self/exe: %s", strerror(errno));
	exe[n] = '\0';
	slash = strrchr(exe, '/');
	*slash = '\0'; /* .../tests */
	slash = strrchr(exe, '/');
	*slash = '\0'; /* build or build/asan */
	if (strlen(exe) > 5 && !strcmp(exe + strlen(exe) - 5, "/asan"))
		exe[strlen(exe) - 5] = '\0';
	snprintf(build, blen, "%.*s", (int)blen - 1, exe);
	if (src && *src)
		snprintf(D.src, sizeof(D.src), "%.*s", (int)sizeof(D.src) - 1, src);
	else
		snprintf(D.src, sizeof(D.src), "%.*s/..", (int)sizeof(D.src) - 4, exe);
}

static void load_double(void)
{
	char build[PATH_MAX - 64], script[PATH_MAX];
	const char *env = getenv("XTCP_IBVERBS_DOUBLE");

	find_paths(build, sizeof(build));
	if (env && *env)
		snprintf(D.path, sizeof(D.path), "%s", env);
	else
		snprintf(D.path, sizeof(D.path), "%s/ibv_double/libibverbs.so.1", build);
	if (!file_exists(D.path)) {
		char out[PATH_MAX];
		snprintf(script, sizeof(script), "%s/tests/ibv_double/build.sh", D.src);
		snprintf(out, sizeof(out), "%s/ibv_double", build);
		char *argv[] = { "/bin/bash", script, out, NULL };
		print_message("test_verbs: building the libibverbs double: %s %s\n", script, out);
		if (run_wait(argv) != 0 || !file_exists(D.path))
			fail_msg("cannot build the libibverbs double with %s (set XTCP_SRCDIR or XTCP_IBVERBS_DOUBLE)",
				 script);
	}
	snprintf(D.tool, sizeof(D.tool), "%s/xtcp-verbs-check", build);
	setenv("XTCP_IBVERBS_LIB", D.path, 1);
	unsetenv("XTCP_DOUBLE_CAPS");
	unsetenv("XTCP_DOUBLE_WIRE");
	D.h = dlopen(D.path, RTLD_NOW | RTLD_LOCAL);
	if (!D.h)
		fail_msg("dlopen %s: %s", D.path, dlerror());
#define RESOLVE(field, name)                                                  \
	do {                                                                  \
		*(void **)&D.field = dlsym(D.h, name);                        \
		if (!D.field)                                                 \
			fail_msg("%s lacks %s: rebuild the double", D.path, name); \
	} while (0)
	RESOLVE(set_caps, "xtd_set_caps");
	RESOLVE(inject, "xtd_inject");
	RESOLVE(stats, "xtd_stats");
	RESOLVE(wire_input, "xtd_wire_input");
	RESOLVE(reset, "xtd_reset");
	RESOLVE(qp_state, "xtd_qp_state");
	RESOLVE(set_wire, "xtd_set_wire");
	RESOLVE(ndevs, "xtd_ndevs");
#undef RESOLVE
}

static int group_setup(void **state)
{
	(void)state;
	load_double();
	assert_int_equal(D.set_wire("mem"), 0);
	assert_int_equal(D.ndevs(), 2);
	return 0;
}

static struct xtd_stats dstats(int dev)
{
	struct xtd_stats s;
	assert_int_equal(D.stats(dev, &s), 0);
	return s;
}

/* --- logging --------------------------------------------------------------- */

static char logbuf[16384];
static size_t loglen;

static void cap_log(void *ctx, int level, const char *msg)
{
	int n;

	(void)ctx;
	n = snprintf(logbuf + loglen, sizeof(logbuf) - loglen, "[%d] %s\n", level, msg);
	if (n > 0 && (size_t)n < sizeof(logbuf) - loglen)
		loglen += (size_t)n;
	if (getenv("XTCP_TEST_VERBOSE"))
		fprintf(stderr, "log: %s\n", msg);
}

static void log_clear(void)
{
	loglen = 0;
	logbuf[0] = '\0';
}

static bool logged(const char *s) { return strstr(logbuf, s) != NULL; }

static int log_lines(void)
{
	int n = 0;
	for (size_t i = 0; i < loglen; i++)
		n += logbuf[i] == '\n';
	return n;
}

/* --- nics -------------------------------------------------------------------- */

static xt_time_t vnow = XT_SEC(100);

static void cfg_init(struct xt_verbs_cfg *c, int dev, int steer)
{
	memset(c, 0, sizeof(*c));
	c->ifname = dev == DEV_A ? "xtdn0" : "xtdn1";
	c->ip = dev == DEV_A ? IP_A : IP_B;
	c->steer = steer;
	c->log = cap_log;
}

static struct xt_nic *vopen_cfg(const struct xt_verbs_cfg *c)
{
	struct xt_nic *nic = NULL;
	int r = xt_verbs_open(c, &nic);

	if (r < 0)
		fail_msg("xt_verbs_open(%s): %d %s", c->ifname, r, xt_verbs_error());
	assert_non_null(nic);
	assert_string_equal(nic->ops->name, "verbs");
	return nic;
}

static struct xt_nic *vopen(int dev, int steer)
{
	struct xt_verbs_cfg c;
	cfg_init(&c, dev, steer);
	return vopen_cfg(&c);
}

/* Every object the backend created is gone after close. */
static void vclose(struct xt_nic *nic)
{
	xt_nic_close(nic);
}

static void assert_no_leaks(void)
{
	for (int d = 0; d < 2; d++) {
		struct xtd_stats s = dstats(d);
		if (s.objects_live != 0)
			fail_msg("device %d: %llu verbs objects left after close", d, (unsigned long long)s.objects_live);
	}
}

static int rx_all(struct xt_nic *nic, struct xt_frame *keep, uint8_t (*copy)[2048], int max)
{
	struct xt_frame f[64];
	int total = 0, n;

	while ((n = xt_nic_rx(nic, f, 64, vnow)) > 0) {
		for (int i = 0; i < n; i++, total++) {
			if (keep && total < max) {
				memcpy(copy[total], f[i].data, f[i].len < 2048 ? f[i].len : 2048);
				keep[total].data = copy[total];
				keep[total].len = f[i].len;
			}
		}
	}
	assert_true(n == 0);
	return total;
}

static int rx_count(struct xt_nic *nic) { return rx_all(nic, NULL, NULL, 0); }

/* A frame from src to dst: Ethernet + IPv4 + TCP with valid checksums. */
static uint32_t tcp_frame(uint8_t *b, const uint8_t dmac[6], const uint8_t smac[6], uint32_t sip, uint32_t dip,
			  uint16_t sport, uint16_t dport, uint32_t seq, uint8_t flags, uint32_t plen)
{
	uint8_t *ip = b + XT_ETH_HLEN, *th = ip + XT_IP_HLEN;
	uint32_t tot = XT_IP_HLEN + XT_TCP_HLEN + plen;

	memset(b, 0, XT_ETH_HLEN + tot);
	memcpy(b + XT_ETH_DST, dmac, 6);
	memcpy(b + XT_ETH_SRC, smac, 6);
	xt_wr16(b + XT_ETH_TYPE_be16, XT_ETHERTYPE_IPV4);
	ip[XT_IP_VHL] = 0x45;
	xt_wr16(ip + XT_IP_LEN_be16, (uint16_t)tot);
	xt_wr16(ip + XT_IP_ID_be16, 0x1234);
	xt_wr16(ip + XT_IP_FRAG_be16, XT_IP_DF);
	ip[XT_IP_TTL] = 64;
	ip[XT_IP_PROTO] = XT_IPPROTO_TCP;
	xt_wr32(ip + XT_IP_SRC_be32, sip);
	xt_wr32(ip + XT_IP_DST_be32, dip);
	xt_wr16(ip + XT_IP_CSUM_be16, xt_csum_fold(xt_csum_add(0, ip, XT_IP_HLEN)));
	xt_wr16(th + XT_TCP_SPORT_be16, sport);
	xt_wr16(th + XT_TCP_DPORT_be16, dport);
	xt_wr32(th + XT_TCP_SEQ_be32, seq);
	th[XT_TCP_OFF] = 5 << 4;
	th[XT_TCP_FLAGS] = flags;
	xt_wr16(th + XT_TCP_WIN_be16, 65535);
	for (uint32_t i = 0; i < plen; i++)
		th[XT_TCP_HLEN + i] = (uint8_t)(seq + i);
	uint32_t s = xt_csum_pseudo(sip, dip, XT_IPPROTO_TCP, (uint16_t)(XT_TCP_HLEN + plen));
	xt_wr16(th + XT_TCP_CSUM_be16, xt_csum_fold(xt_csum_add(s, th, XT_TCP_HLEN + plen)));
	return XT_ETH_HLEN + tot;
}

static bool frame_csums_ok(const uint8_t *f, uint32_t len)
{
	const uint8_t *ip = f + XT_ETH_HLEN, *th = ip + XT_IP_HLEN;
	uint32_t tot = xt_rd16(ip + XT_IP_LEN_be16);

	if (len < XT_ETH_HLEN + tot || xt_csum_fold(xt_csum_add(0, ip, XT_IP_HLEN)) != 0)
		return false;
	uint32_t s = xt_csum_pseudo(xt_rd32(ip + XT_IP_SRC_be32), xt_rd32(ip + XT_IP_DST_be32), XT_IPPROTO_TCP,
				    (uint16_t)(tot - XT_IP_HLEN));
	return xt_csum_fold(xt_csum_add(s, th, tot - XT_IP_HLEN)) == 0;
}

/* The address of a nic on the mem wire, from its MAC (02:00:00:00:d0:0N). */
static uint32_t nic_ip(const struct xt_nic *nic) { return nic->caps.mac[5] == 0 ? IP_A : IP_B; }

static void send_frames(struct xt_nic *from, struct xt_nic *to, int n, uint32_t plen, int expect_taken)
{
	uint8_t b[2048];
	struct xt_frame f = { .data = b, .len = 0, .flags = 0 };

	for (int i = 0; i < n; i++) {
		f.len = tcp_frame(b, to->caps.mac, from->caps.mac, nic_ip(from), nic_ip(to), 40000, 80,
				  (uint32_t)i * 1000u, XT_TH_ACK, plen);
		assert_int_equal(xt_nic_tx(from, &f, 1, vnow), expect_taken);
	}
}

static int test_setup(void **state)
{
	(void)state;
	D.reset();
	log_clear();
	return 0;
}

static int test_teardown(void **state)
{
	(void)state;
	assert_no_leaks();
	D.reset();
	return 0;
}

/* --- engines ------------------------------------------------------------------ */

struct eng {
	struct xt_nic *nic;
	struct xt_stack *st;
	uint32_t ip;
};

static int eng_tx(void *ctx, const struct xt_frame *f, int n)
{
	struct eng *e = ctx;
	return xt_nic_tx(e->nic, f, n, vnow);
}

static void eng_rx_hold(void *ctx, uint64_t ref) { xt_nic_rx_hold(((struct eng *)ctx)->nic, ref); }
static void eng_rx_release(void *ctx, uint64_t ref) { xt_nic_rx_release(((struct eng *)ctx)->nic, ref); }

static void eng_init(struct eng *e, int dev, int steer)
{
	struct xt_stack_cfg sc;

	e->nic = vopen(dev, steer);
	e->ip = dev == DEV_A ? IP_A : IP_B;
	xt_stack_cfg_defaults(&sc);
	memcpy(sc.mac, e->nic->caps.mac, 6);
	sc.ip = e->ip;
	sc.netmask = NETMASK;
	sc.mtu = e->nic->caps.mtu;
	sc.rx_csum_verified = e->nic->caps.rx_csum;
	sc.tx_csum_offload = e->nic->caps.tx_csum;
	sc.tx_gather = e->nic->caps.tx_gather;
	sc.rx_hold_window = e->nic->caps.rx_hold_window;
	sc.rx_hold = eng_rx_hold;
	sc.rx_release = eng_rx_release;
	sc.rx_ctx = e;
	sc.secret[0] = 0x1234u + (uint64_t)dev;
	sc.secret[1] = 0x9876u;
	sc.tx = eng_tx;
	sc.tx_ctx = e;
	e->st = xt_stack_new(&sc, vnow);
	assert_non_null(e->st);
}

static void eng_fini(struct eng *e)
{
	xt_stack_free(e->st);
	vclose(e->nic);
}

static int eng_pump(struct eng *e)
{
	struct xt_frame f[64];
	int total = 0, n;

	while ((n = xt_nic_rx(e->nic, f, 64, vnow)) > 0) {
		for (int i = 0; i < n; i++)
			xt_stack_input_frame(e->st, &f[i], vnow);
		total += n;
	}
	assert_true(n >= 0);
	xt_stack_flush(e->st);
	if (xt_stack_next_deadline(e->st) <= vnow)
		xt_stack_poll(e->st, vnow);
	return total;
}

/* One round of both engines; virtual time moves 10 us per busy round and
 * jumps to the next timer when both are idle. */
static void step(struct eng *a, struct eng *b)
{
	int moved = eng_pump(a) + eng_pump(b);

	if (moved) {
		vnow += XT_US(10);
	} else {
		xt_time_t d = xt_stack_next_deadline(a->st), d2 = xt_stack_next_deadline(b->st);
		if (d2 < d)
			d = d2;
		if (xt_nic_deadline(a->nic) < d)
			d = xt_nic_deadline(a->nic);
		if (xt_nic_deadline(b->nic) < d)
			d = xt_nic_deadline(b->nic);
		vnow = d != XT_TIME_NEVER && d > vnow ? d : vnow + XT_MS(1);
	}
}

static uint8_t pat(uint32_t seed, uint64_t i) { return (uint8_t)((i * 2654435761u >> 13) ^ seed ^ (i >> 8)); }

/* Client on a connects to b's PORT_SRV; both sides then send BULK bytes and
 * check every byte received.  Rules: listen on b, connection on a (before
 * the SYN-ACK can come back), connection on b after accept, then the listen
 * rule goes. */
static void bulk_both_ways(struct eng *a, struct eng *b, bool use_rules)
{
	static uint8_t buf[65536];
	int ls, cs, ss = -1, lflow = -1;
	uint64_t a_tx = 0, a_rx = 0, b_tx = 0, b_rx = 0;
	xt_time_t limit = vnow + XT_SEC(600);

	ls = xt_tcp_open(b->st);
	assert_true(ls >= 0);
	assert_int_equal(xt_tcp_bind(b->st, ls, 0, PORT_SRV), 0);
	assert_int_equal(xt_tcp_listen(b->st, ls, 16), 0);
	if (use_rules) {
		lflow = xt_verbs_flow_add_listen(b->nic, 0, PORT_SRV);
		assert_true(lflow >= 0);
	}
	cs = xt_tcp_open(a->st);
	assert_true(cs >= 0);
	assert_int_equal(xt_tcp_connect(a->st, cs, b->ip, PORT_SRV, vnow), -EINPROGRESS);
	if (use_rules) {
		struct xt_verbs_tuple t = { .local_ip = a->ip, .remote_ip = b->ip, .remote_port = PORT_SRV };
		uint32_t ip;
		assert_int_equal(xt_tcp_getname(a->st, cs, 0, &ip, &t.local_port), 0);
		assert_true(xt_verbs_flow_add_conn(a->nic, &t) >= 0);
	}
	while ((a_rx < BULK || b_rx < BULK) && vnow < limit) {
		long r;

		if (ss < 0) {
			uint32_t pip;
			uint16_t pport;
			ss = xt_tcp_accept(b->st, ls, &pip, &pport);
			if (ss >= 0 && use_rules) {
				struct xt_verbs_tuple t = { b->ip, pip, PORT_SRV, pport };
				assert_true(xt_verbs_flow_add_conn(b->nic, &t) >= 0);
				assert_int_equal(xt_verbs_flow_del(b->nic, lflow), 0);
			}
		}
		if (xt_tcp_state(a->st, cs) == XT_ESTABLISHED && a_tx < BULK) {
			size_t n = BULK - a_tx < sizeof(buf) ? BULK - a_tx : sizeof(buf);
			for (size_t i = 0; i < n; i++)
				buf[i] = pat(1, a_tx + i);
			r = xt_tcp_send(a->st, cs, buf, n, 0, vnow);
			if (r > 0)
				a_tx += (uint64_t)r;
		}
		if (ss >= 0 && b_tx < BULK) {
			size_t n = BULK - b_tx < sizeof(buf) ? BULK - b_tx : sizeof(buf);
			for (size_t i = 0; i < n; i++)
				buf[i] = pat(2, b_tx + i);
			r = xt_tcp_send(b->st, ss, buf, n, 0, vnow);
			if (r > 0)
				b_tx += (uint64_t)r;
		}
		while ((r = xt_tcp_recv(a->st, cs, buf, sizeof(buf), 0, vnow)) > 0) {
			for (long i = 0; i < r; i++)
				if (buf[i] != pat(2, a_rx + (uint64_t)i))
					fail_msg("a: byte %llu differs", (unsigned long long)(a_rx + (uint64_t)i));
			a_rx += (uint64_t)r;
		}
		while (ss >= 0 && (r = xt_tcp_recv(b->st, ss, buf, sizeof(buf), 0, vnow)) > 0) {
			for (long i = 0; i < r; i++)
				if (buf[i] != pat(1, b_rx + (uint64_t)i))
					fail_msg("b: byte %llu differs", (unsigned long long)(b_rx + (uint64_t)i));
			b_rx += (uint64_t)r;
		}
		step(a, b);
	}
	if (a_rx != BULK || b_rx != BULK)
		fail_msg("transfer stalled: a got %llu, b got %llu of %u", (unsigned long long)a_rx,
			 (unsigned long long)b_rx, BULK);
	assert_int_equal(xt_tcp_close(a->st, cs, vnow), 0);
	assert_int_equal(xt_tcp_close(b->st, ss, vnow), 0);
	assert_int_equal(xt_tcp_close(b->st, ls, vnow), 0);
	for (int i = 0; i < 200; i++)
		step(a, b);
}

/* --- the tests ------------------------------------------------------------------- */

static void test_transfer(void **state)
{
	struct eng a, b;
	struct xt_verbs_stats sa, sb;
	struct xt_verbs_info ia;
	struct xtd_stats da, db;

	(void)state;
	eng_init(&a, DEV_A, XT_VERBS_STEER_FLOWS);
	eng_init(&b, DEV_B, XT_VERBS_STEER_FLOWS);
	assert_int_equal(xt_verbs_info(a.nic, &ia), 0);
	assert_string_equal(ia.device, "xtd0");
	assert_int_equal(ia.port, 1);
	assert_true(ia.arp_rule);
	assert_true(ia.icmp_rule);
	assert_int_equal(ia.steer, XT_VERBS_STEER_FLOWS);
	assert_int_equal(ia.qp_state, QPS_RTS);
	assert_true(a.nic->caps.tx_csum && a.nic->caps.rx_csum);
	assert_int_equal(a.nic->caps.mtu, 1500);
	assert_memory_equal(a.nic->caps.mac, ((uint8_t[]){ 2, 0, 0, 0, 0xd0, 0 }), 6);

	bulk_both_ways(&a, &b, true);

	assert_int_equal(xt_verbs_stats(a.nic, &sa), 0);
	assert_int_equal(xt_verbs_stats(b.nic, &sb), 0);
	da = dstats(DEV_A);
	db = dstats(DEV_B);
	print_message("transfer: a sent %llu frames (%llu inline, %llu signalled), b received %llu; "
		      "kernel saw %llu + %llu\n",
		      (unsigned long long)sa.tx_frames, (unsigned long long)sa.tx_inline,
		      (unsigned long long)sa.tx_signalled, (unsigned long long)sb.rx_frames,
		      (unsigned long long)da.kernel_frames, (unsigned long long)db.kernel_frames);
	/* The kernel saw only the ARP copies, never a TCP segment. */
	assert_true(da.kernel_frames + db.kernel_frames <= 4);
	assert_true(da.flow_copies + db.flow_copies >= 2);
	assert_int_equal(da.rx_no_wqe + db.rx_no_wqe, 0);
	/* Checksums in "hardware" both ways; ACKs inline. */
	assert_true(sa.tx_csum_offload > 1000 && sb.tx_csum_offload > 1000);
	assert_true(sa.rx_csum_hw > 1000 && sb.rx_csum_hw > 1000);
	assert_int_equal(sa.rx_csum_bad + sb.rx_csum_bad, 0);
	assert_true(sa.tx_inline > 0 && sb.tx_inline > 0);
	/* Payload gathered from the send rings, read in place from the RX slots. */
	assert_true(xt_stack_counters(a.st)->tcp_tx_gathered > 1000 && xt_stack_counters(b.st)->tcp_tx_gathered > 1000);
	assert_true(sa.rx_kept > 100 && sb.rx_kept > 100);
	assert_int_equal(sb.rx_kept, xt_stack_counters(b.st)->tcp_rx_held);
	/* Selective signalling: exactly one WR in 32. */
	assert_int_equal(sa.tx_signalled, sa.tx_frames / 32);
	assert_int_equal(da.send_signalled, sa.tx_signalled);
	assert_int_equal(da.send_wrs, sa.tx_frames);
	/* Receive WRs in batches of 32. */
	assert_true(sb.rx_posted >= sb.rx_frames);
	assert_true(db.recv_wrs >= 32 * (db.post_recv_calls - 1));
	assert_int_equal(sa.cq_errors + sb.cq_errors + sa.qp_recoveries + sb.qp_recoveries, 0);
	assert_int_equal(sa.flows_added, 3);  /* ICMP + ARP copies, connection */
	assert_int_equal(sb.flows_added, 4);  /* ICMP + ARP copies, listen, connection */
	assert_int_equal(sb.flows_removed, 1);
	eng_fini(&a);
	eng_fini(&b);
	da = dstats(DEV_A);
	assert_int_equal(da.flows_active, 0);
}

/* Zero-copy sends: the engine's send buffers registered with the NIC. */
static uint64_t zc_reg(void *ctx, void *buf, uint32_t len) { return xt_nic_tx_buf_reg(((struct eng *)ctx)->nic, buf, len); }
static void zc_unreg(void *ctx, uint64_t h) { xt_nic_tx_buf_unreg(((struct eng *)ctx)->nic, h); }
static int zc_fence(void *ctx) { return xt_nic_tx_fence(((struct eng *)ctx)->nic); }

static void eng_zc(struct eng *e, bool tso)
{
	xt_stack_set_tso_max(e->st, tso ? e->nic->caps.tso_max : 0);
	xt_stack_set_tx_bufs(e->st, zc_reg, zc_unreg, zc_fence, e);
}

/* Payload goes to the device straight from the registered send buffers
 * (headers from a TX slot or inline in the TSO WR), both with the double
 * reading memory at post time and, as a device does, later (XTD_LATE_DMA:
 * only when the send CQ is polled).  Every byte arrives as sent; no MR is
 * deregistered while a WR points into it; a connection aborted with
 * zero-copy WRs not yet read waits for them (the fence) before its buffer
 * can be reused; and every registration is gone after close. */
static void test_zero_copy_send(void **state)
{
	(void)state;
	for (int run = 0; run < 3; run++) {
		int late = run > 0, tso = run < 2; /* TSO WRs early and late; plain sends late */
		struct eng a, b;
		struct xt_verbs_stats sa, sb;
		struct xt_verbs_info ia;
		struct xtd_stats da;
		static uint8_t buf[65536];

		D.reset();
		assert_int_equal(D.inject(DEV_A, XTD_LATE_DMA, late), 0);
		assert_int_equal(D.inject(DEV_B, XTD_LATE_DMA, late), 0);
		eng_init(&a, DEV_A, XT_VERBS_STEER_AUTO);
		eng_init(&b, DEV_B, XT_VERBS_STEER_AUTO);
		assert_int_equal(xt_verbs_info(a.nic, &ia), 0);
		assert_true(ia.zerocopy);
		assert_true(a.nic->caps.tso_max > 0);
		eng_zc(&a, tso);
		eng_zc(&b, tso);
		bulk_both_ways(&a, &b, false);
		assert_int_equal(xt_verbs_stats(a.nic, &sa), 0);
		assert_int_equal(xt_verbs_stats(b.nic, &sb), 0);
		da = dstats(DEV_A);
		print_message("zero copy (late %d, TSO %d): a sent %llu frames, %llu in place (%llu TSO), %llu registrations; "
			      "double: %llu multi-SGE sends, %llu read late\n",
			      late, tso, (unsigned long long)sa.tx_frames, (unsigned long long)sa.tx_zerocopy,
			      (unsigned long long)sa.tx_tso, (unsigned long long)sa.tx_buf_regs,
			      (unsigned long long)da.send_multi_sge, (unsigned long long)da.late_wrs);
		assert_true(sa.tx_zerocopy > 50 && sb.tx_zerocopy > 50);
		assert_true(sa.tx_buf_regs >= 1 && sb.tx_buf_regs >= 1);
		assert_int_equal(sa.tx_buf_reg_failures + sb.tx_buf_reg_failures, 0);
		if (tso) /* 64 KiB WRs: the headers inline, the payload in place */
			assert_true(sa.tx_tso > 50 && sa.tx_tso == xt_stack_counters(a.st)->tcp_tso_segs);
		else /* headers from a TX slot, the payload in place */
			assert_true(sa.tx_tso == 0 && da.send_multi_sge > 1000);
		assert_int_equal(da.error_cqes, 0);
		if (late)
			assert_true(da.late_wrs > 100);
		else
			assert_int_equal(da.late_wrs, 0);

		/* A connection aborted right after a 64 KiB send: its zero-copy
		 * WRs are posted (and, late, not yet read) when the buffer is
		 * given up. */
		int ls = xt_tcp_open(b.st), cs = xt_tcp_open(a.st), ss = -1;
		assert_int_equal(xt_tcp_bind(b.st, ls, 0, PORT_SRV + 1), 0);
		assert_int_equal(xt_tcp_listen(b.st, ls, 4), 0);
		assert_int_equal(xt_tcp_connect(a.st, cs, b.ip, PORT_SRV + 1, vnow), -EINPROGRESS);
		for (int i = 0; i < 100 && ss < 0; i++) {
			step(&a, &b);
			ss = xt_tcp_accept(b.st, ls, NULL, NULL);
		}
		assert_true(ss >= 0);
		for (size_t i = 0; i < sizeof(buf); i++)
			buf[i] = pat(3, i);
		assert_int_equal(xt_tcp_send(a.st, cs, buf, sizeof(buf), 0, vnow), (long)sizeof(buf));
		xt_stack_flush(a.st);
		assert_int_equal(xt_verbs_stats(a.nic, &sa), 0);
		uint64_t waits = sa.tx_fence_waits;
		if (late)
			assert_true(dstats(DEV_A).late_pending > 0);
		assert_int_equal(xt_tcp_abort(a.st, cs, vnow), 0);
		assert_int_equal(dstats(DEV_A).late_pending, late ? 1 : 0); /* the RST, after the fence */
		assert_int_equal(xt_verbs_stats(a.nic, &sa), 0);
		assert_true(sa.tx_fence_waits == waits + 1);
		assert_int_equal(sa.tx_fence_failures, 0);
		assert_int_equal(xt_stack_counters(a.st)->tx_fence_leaks, 0);
		for (int i = 0; i < 50; i++)
			step(&a, &b);
		assert_int_equal(xt_tcp_close(b.st, ss, vnow), 0);
		assert_int_equal(xt_tcp_close(b.st, ls, vnow), 0);
		for (int i = 0; i < 50; i++)
			step(&a, &b);
		assert_int_equal(dstats(DEV_A).dereg_busy + dstats(DEV_B).dereg_busy, 0);
		eng_fini(&a);
		eng_fini(&b);
		assert_no_leaks(); /* the MRs of the engine's buffers included */
	}
	D.reset();
}

/* Steer IP mode: one rule for the address, no per-flow rules needed. */
static void test_transfer_ip_steering(void **state)
{
	struct eng a, b;
	struct xt_verbs_info ib;

	(void)state;
	eng_init(&a, DEV_A, XT_VERBS_STEER_AUTO);
	eng_init(&b, DEV_B, XT_VERBS_STEER_AUTO);
	assert_int_equal(xt_verbs_info(b.nic, &ib), 0);
	assert_int_equal(ib.steer, XT_VERBS_STEER_IP); /* the kernel does not own 10.9.0.2 */
	assert_false(ib.kernel_owns_ip);
	assert_false(ib.icmp_rule);
	bulk_both_ways(&a, &b, false);
	eng_fini(&a);
	eng_fini(&b);
}

static void test_library_missing(void **state)
{
	struct xt_verbs_cfg c;
	struct xt_nic *nic = NULL;
	char path[PATH_MAX + 16];

	(void)state;
	cfg_init(&c, DEV_A, 0);
	c.lib = "/nonexistent/libibverbs.so.1";
	assert_int_equal(xt_verbs_open(&c, &nic), -ENOENT);
	assert_null(nic);
	assert_non_null(strstr(xt_verbs_error(), "cannot load /nonexistent/libibverbs.so.1"));
	assert_non_null(strstr(xt_verbs_error(), "apt-get install libibverbs1"));
	assert_non_null(strstr(xt_verbs_error(), "XTCP_IBVERBS_LIB"));
	/* The environment variable is the default path. */
	c.lib = NULL;
	setenv("XTCP_IBVERBS_LIB", "/nonexistent/other.so", 1);
	assert_int_equal(xt_verbs_open(&c, &nic), -ENOENT);
	assert_non_null(strstr(xt_verbs_error(), "/nonexistent/other.so"));
	setenv("XTCP_IBVERBS_LIB", D.path, 1);
	/* A library without the versioned symbols. */
	c.lib = "libc.so.6";
	assert_int_equal(xt_verbs_open(&c, &nic), -ENOSYS);
	assert_non_null(strstr(xt_verbs_error(), "ibv_get_device_list@IBVERBS_1.1"));
	/* Same library by another path string works (loaded once per path). */
	snprintf(path, sizeof(path), "%s", D.path);
	c.lib = path;
	nic = vopen_cfg(&c);
	vclose(nic);
}

static void test_no_device(void **state)
{
	struct xt_verbs_cfg c;
	struct xt_nic *nic = NULL;

	(void)state;
	cfg_init(&c, DEV_A, 0);
	c.ifname = "lo";
	assert_int_equal(xt_verbs_open(&c, &nic), -ENODEV);
	assert_non_null(strstr(xt_verbs_error(), "no RDMA device behind lo"));
	assert_non_null(strstr(xt_verbs_error(), "XTCP_NIC=packet"));
	c.ifname = "xtnosuch9";
	assert_int_equal(xt_verbs_open(&c, &nic), -ENODEV);
	assert_non_null(strstr(xt_verbs_error(), "no interface xtnosuch9"));
	c.ifname = "";
	assert_int_equal(xt_verbs_open(&c, &nic), -EINVAL);
	cfg_init(&c, DEV_A, 0);
	c.ip = 0;
	assert_int_equal(xt_verbs_open(&c, &nic), -EINVAL);
	assert_null(nic);
}

/* Opening with a capability missing: the error and its fix, and nothing
 * left behind on the device. */
static void open_fails(unsigned int drop, int err, const char *words)
{
	struct xt_verbs_cfg c;
	struct xt_nic *nic = NULL;
	unsigned int old;

	cfg_init(&c, DEV_A, XT_VERBS_STEER_IP);
	old = D.set_caps(DEV_A, XTD_CAP_ALL & ~drop);
	assert_int_equal(xt_verbs_open(&c, &nic), err);
	if (!strstr(xt_verbs_error(), words))
		fail_msg("error \"%s\" lacks \"%s\"", xt_verbs_error(), words);
	assert_null(nic);
	D.set_caps(DEV_A, old);
	assert_int_equal(dstats(DEV_A).objects_live, 0);
}

static void test_capability_errors(void **state)
{
	(void)state;
	open_fails(XTD_CAP_RAW, -EOPNOTSUPP, "does not support raw packet QPs");
	open_fails(XTD_CAP_NETRAW, -EPERM, "CAP_NET_RAW required");
	open_fails(XTD_CAP_ACCESS, -EACCES, "/dev/infiniband/uverbs");
	open_fails(XTD_CAP_ETH, -EPROTONOSUPPORT, "is InfiniBand");
	open_fails(XTD_CAP_FLOW, -EOPNOTSUPP, "flow steering refused");
	/* Port down at start. */
	assert_int_equal(D.inject(DEV_A, XTD_PORT_DOWN, 0), 0);
	open_fails(0, -ENETDOWN, "port 1 of xtd0 (xtdn0) is DOWN");
	assert_int_equal(D.inject(DEV_A, XTD_PORT_UP, 0), 0);
}

/* The real thing: a process without CAP_NET_RAW (capset in a child). */
static void test_no_cap_net_raw(void **state)
{
	pid_t pid;
	int status;

	(void)state;
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		struct __user_cap_header_struct h = { .version = _LINUX_CAPABILITY_VERSION_3, .pid = 0 };
		struct __user_cap_data_struct d[2];
		struct xt_verbs_cfg c;
		struct xt_nic *nic = NULL;
		int r;

		memset(d, 0, sizeof(d));
		if (syscall(SYS_capget, &h, d) < 0)
			_exit(3);
		d[CAP_NET_RAW / 32].effective &= ~(1u << (CAP_NET_RAW % 32));
		if (syscall(SYS_capset, &h, d) < 0)
			_exit(4);
		cfg_init(&c, DEV_A, XT_VERBS_STEER_IP);
		r = xt_verbs_open(&c, &nic);
		_exit(r == -EPERM && strstr(xt_verbs_error(), "CAP_NET_RAW") ? 0 : 1);
	}
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFEXITED(status));
	assert_int_equal(WEXITSTATUS(status), 0);
}

static void test_no_dont_trap(void **state)
{
	struct xt_nic *b;
	struct xt_verbs_info ib;

	(void)state;
	D.set_caps(DEV_B, XTD_CAP_ALL & ~XTD_CAP_DONT_TRAP);
	b = vopen(DEV_B, XT_VERBS_STEER_FLOWS);
	assert_int_equal(xt_verbs_info(b, &ib), 0);
	assert_false(ib.arp_rule);
	assert_false(ib.icmp_rule);
	assert_true(logged("no ARP copy rule"));
	assert_true(logged("ip neigh add proxy"));
	assert_true(logged("no ICMP copy rule"));
	assert_int_equal(ib.flows, 0);
	vclose(b);
}

static void test_post_send_failure(void **state)
{
	struct xt_nic *a = vopen(DEV_A, XT_VERBS_STEER_IP), *b = vopen(DEV_B, XT_VERBS_STEER_IP);
	struct xt_verbs_stats s;
	uint8_t buf[4][2048];
	struct xt_frame f[4];

	(void)state;
	memset(f, 0, sizeof(f));
	for (int i = 0; i < 4; i++) {
		f[i].data = buf[i];
		f[i].len = tcp_frame(buf[i], b->caps.mac, a->caps.mac, IP_A, IP_B, 1, 2, (uint32_t)i, XT_TH_ACK, 500);
	}
	assert_int_equal(D.inject(DEV_A, XTD_POST_SEND_FAIL, 1), 0);
	assert_int_equal(xt_nic_tx(a, f, 4, vnow), 0); /* refused: the engine counts and TCP resends */
	assert_int_equal(rx_count(b), 0);
	assert_int_equal(xt_verbs_stats(a, &s), 0);
	assert_int_equal(s.tx_post_errors, 1);
	assert_int_equal(s.tx_frames, 0);
	assert_true(logged("ibv_post_send: Cannot allocate memory"));
	assert_int_equal(log_lines(), 1);
	/* The next burst goes out whole. */
	assert_int_equal(xt_nic_tx(a, f, 4, vnow), 4);
	assert_int_equal(rx_count(b), 4);
	assert_int_equal(xt_verbs_stats(a, &s), 0);
	assert_int_equal(s.tx_frames, 4);
	assert_int_equal(s.qp_recoveries, 0);
	vclose(a);
	vclose(b);
}

/* A send completes in error: the QP goes to ERR, the receive queue is
 * flushed, the backend resets the QP and traffic flows both ways again. */
static void test_send_cq_error(void **state)
{
	struct xt_nic *a = vopen(DEV_A, XT_VERBS_STEER_IP), *b = vopen(DEV_B, XT_VERBS_STEER_IP);
	struct xt_verbs_stats s;
	struct xt_verbs_info ia;

	(void)state;
	assert_int_equal(D.inject(DEV_A, XTD_SEND_CQE_ERR, 1), 0);
	send_frames(a, b, 1, 100, 1);
	assert_int_equal(D.qp_state(DEV_A), QPS_ERR);
	assert_int_equal(rx_count(b), 0);
	assert_int_equal(a->ops->arm_wake(a), 0); /* sees the error, recovers */
	assert_int_equal(D.qp_state(DEV_A), QPS_RTS);
	assert_int_equal(xt_verbs_stats(a, &s), 0);
	assert_int_equal(s.cq_errors, 1);
	assert_int_equal(xt_verbs_info(a, &ia), 0);
	assert_int_equal(s.flush_errors, (uint64_t)ia.rx_depth); /* every posted receive came back flushed */
	assert_int_equal(s.qp_recoveries, 1);
	assert_true(logged("send completion error: local QP operation error"));
	assert_true(logged("back in RTS"));
	send_frames(a, b, 3, 100, 1);
	assert_int_equal(rx_count(b), 3);
	send_frames(b, a, 3, 100, 1);
	assert_int_equal(rx_count(a), 3);
	vclose(a);
	vclose(b);
}

static void test_recv_cq_error(void **state)
{
	struct xt_nic *a = vopen(DEV_A, XT_VERBS_STEER_IP), *b = vopen(DEV_B, XT_VERBS_STEER_IP);
	struct xt_verbs_stats s;

	(void)state;
	assert_int_equal(D.inject(DEV_B, XTD_RECV_CQE_ERR, 1), 0);
	send_frames(a, b, 1, 100, 1);
	assert_int_equal(D.qp_state(DEV_B), QPS_ERR);
	assert_int_equal(rx_count(b), 0); /* the error completion; recovered in rx_burst */
	assert_int_equal(D.qp_state(DEV_B), QPS_RTS);
	assert_int_equal(xt_verbs_stats(b, &s), 0);
	assert_int_equal(s.cq_errors, 1);
	assert_int_equal(s.qp_recoveries, 1);
	assert_true(logged("receive completion error: local length error"));
	send_frames(a, b, 5, 100, 1);
	assert_int_equal(rx_count(b), 5);
	vclose(a);
	vclose(b);
}

/* QP fatal (async): the wake fd wakes the sleeper, arm_wake reads the
 * event, flushes are reclaimed, the QP is reset; a reset that fails is
 * retried after next_deadline. */
static void test_qp_fatal_flush(void **state)
{
	struct xt_nic *a = vopen(DEV_A, XT_VERBS_STEER_IP), *b = vopen(DEV_B, XT_VERBS_STEER_IP);
	struct xt_verbs_stats s;
	struct pollfd p = { .events = POLLIN };
	struct xtd_stats ds;

	(void)state;
	p.fd = b->ops->wake_fd(b);
	assert_int_equal(b->ops->arm_wake(b), 0);
	assert_int_equal(poll(&p, 1, 0), 0);
	assert_int_equal(D.inject(DEV_B, XTD_QP_RESET_FAIL, 1), 0);
	assert_int_equal(D.inject(DEV_B, XTD_QP_FATAL, 0), 0);
	assert_int_equal(poll(&p, 1, 0), 1); /* async event and flush completions */
	assert_int_equal(rx_count(b), 0);    /* flushes: need a reset; the first one fails */
	assert_int_equal(xt_verbs_stats(b, &s), 0);
	assert_true(s.flush_errors > 0);
	assert_true(logged("could not be reset"));
	assert_int_equal(b->ops->arm_wake(b), 0);
	assert_int_equal(xt_verbs_stats(b, &s), 0);
	if (s.qp_recoveries == 0) {
		/* Still failing would be retried at the deadline. */
		assert_true(xt_nic_deadline(b) != XT_TIME_NEVER);
		assert_int_equal(b->ops->arm_wake(b), 0);
		assert_int_equal(xt_verbs_stats(b, &s), 0);
	}
	assert_int_equal(s.qp_recovery_failures, 1);
	assert_int_equal(s.qp_recoveries, 1);
	assert_int_equal(xt_nic_deadline(b), XT_TIME_NEVER);
	assert_true(logged("local work queue catastrophic error: resetting the QP"));
	assert_true(logged("back in RTS"));
	assert_int_equal(D.qp_state(DEV_B), QPS_RTS);
	send_frames(a, b, 4, 100, 1);
	assert_int_equal(rx_count(b), 4);
	ds = dstats(DEV_B);
	assert_true(ds.async_read >= 1);
	assert_int_equal(ds.async_read, ds.async_acked); /* every async event acknowledged */
	assert_int_equal(ds.cq_events_acked, ds.cq_events);
	vclose(a);
	vclose(b);
}

static void test_port_down(void **state)
{
	struct xt_nic *a = vopen(DEV_A, XT_VERBS_STEER_IP), *b = vopen(DEV_B, XT_VERBS_STEER_IP);
	struct xt_verbs_stats s;
	struct xt_verbs_info ia;
	struct pollfd p = { .events = POLLIN };

	(void)state;
	p.fd = a->ops->wake_fd(a);
	assert_int_equal(a->ops->arm_wake(a), 0);
	assert_int_equal(D.inject(DEV_A, XTD_PORT_DOWN, 0), 0);
	assert_int_equal(poll(&p, 1, 0), 1);                 /* the async fd is in the wake set */
	assert_int_equal(a->ops->arm_wake(a), -ENETDOWN);    /* said once ... */
	assert_int_equal(a->ops->arm_wake(a), 0);            /* ... not again */
	assert_int_equal(poll(&p, 1, 0), 0);
	assert_true(logged("port went down"));
	assert_int_equal(xt_verbs_info(a, &ia), 0);
	assert_false(ia.link_up);
	send_frames(a, b, 3, 100, 0); /* refused while down: TCP resends later */
	assert_int_equal(xt_verbs_stats(a, &s), 0);
	assert_int_equal(s.tx_link_down, 3);
	assert_int_equal(s.port_down, 1);
	/* Link back: the QP is checked (still RTS here), traffic resumes. */
	assert_int_equal(D.inject(DEV_A, XTD_PORT_UP, 0), 0);
	assert_int_equal(poll(&p, 1, 0), 1);
	assert_int_equal(a->ops->arm_wake(a), 0);
	assert_true(logged("port active again"));
	assert_int_equal(xt_verbs_info(a, &ia), 0);
	assert_true(ia.link_up);
	send_frames(a, b, 3, 100, 1);
	assert_int_equal(rx_count(b), 3);
	assert_int_equal(xt_verbs_stats(a, &s), 0);
	assert_int_equal(s.port_up, 1);
	assert_int_equal(s.qp_recoveries, 0);
	/* Port down with the QP broken meanwhile: recovered when the port is back. */
	assert_int_equal(D.inject(DEV_A, XTD_PORT_DOWN, 0), 0);
	assert_int_equal(a->ops->arm_wake(a), -ENETDOWN);
	/* A QP that went to ERR without an event of its own while the port
	 * was down (no receive is polled meanwhile: only arm_wake runs). */
	assert_int_equal(D.inject(DEV_A, XTD_QP_ERR, 0), 0);
	assert_int_equal(D.inject(DEV_A, XTD_PORT_UP, 0), 0);
	assert_int_equal(a->ops->arm_wake(a), 0);
	assert_int_equal(D.qp_state(DEV_A), QPS_RTS);
	assert_int_equal(xt_verbs_stats(a, &s), 0);
	assert_int_equal(s.qp_recoveries, 1);
	send_frames(a, b, 2, 100, 1);
	assert_int_equal(rx_count(b), 2);
	vclose(a);
	vclose(b);
}

static void test_device_fatal(void **state)
{
	struct xt_nic *a = vopen(DEV_A, XT_VERBS_STEER_IP);
	struct xt_frame f[4];
	struct xt_verbs_info ia;
	struct pollfd p = { .fd = a->ops->wake_fd(a), .events = POLLIN };

	(void)state;

	assert_int_equal(D.inject(DEV_A, XTD_DEVICE_FATAL, 0), 0);
	assert_int_equal(poll(&p, 1, 0), 1);
	assert_int_equal(a->ops->arm_wake(a), -ENODEV);
	assert_int_equal(poll(&p, 1, 0), 0); /* no spinning on a dead device */
	assert_true(logged("device fatal error"));
	assert_true(logged("fall back to another backend"));
	assert_int_equal(xt_nic_rx(a, f, 4, vnow), -ENODEV);
	assert_int_equal(xt_nic_tx(a, f, 0, vnow), -ENODEV);
	assert_int_equal(xt_verbs_flow_add_listen(a, 0, 80), -ENODEV);
	assert_int_equal(xt_verbs_info(a, &ia), 0);
	assert_true(ia.dead);
	assert_int_equal(log_lines(), 1);
	vclose(a); /* the caller's fallback: close, open another backend */
}

static void test_flow_rules(void **state)
{
	struct xt_nic *b = vopen(DEV_B, XT_VERBS_STEER_FLOWS), *c, *ipn;
	uint8_t fr[2048], other_mac[6] = { 2, 0, 0, 0, 0x77, 1 };
	const uint8_t *mac_a = ((const uint8_t[]){ 2, 0, 0, 0, 0xd0, 0 });
	struct xt_verbs_tuple t = { IP_B, 0x0a090007u, 81, 4000 };
	struct xt_verbs_cfg cfg;
	struct xt_verbs_stats s;
	uint64_t k0;
	int lid, cid, lid_c;
	uint32_t len;

	(void)state;
#define INJECT(sip, sport, dport, dmac)                                                          \
	do {                                                                                     \
		len = tcp_frame(fr, dmac, mac_a, sip, IP_B, sport, dport, 1, XT_TH_SYN, 0);      \
		assert_int_equal(D.wire_input(DEV_B, fr, len), 0);                               \
	} while (0)
	k0 = dstats(DEV_B).kernel_frames;
	INJECT(IP_A, 40000, 80, b->caps.mac);
	assert_int_equal(rx_count(b), 0); /* no rule: the kernel's */
	assert_int_equal(dstats(DEV_B).kernel_frames, k0 + 1);
	lid = xt_verbs_flow_add_listen(b, 0, 80);
	assert_true(lid >= 0);
	INJECT(IP_A, 40000, 80, b->caps.mac);
	assert_int_equal(rx_count(b), 1);
	assert_int_equal(dstats(DEV_B).kernel_frames, k0 + 1); /* stolen from the kernel */
	INJECT(IP_A, 40000, 80, other_mac);
	assert_int_equal(rx_count(b), 0);                      /* not our MAC */
	INJECT(IP_A, 40000, 81, b->caps.mac);
	assert_int_equal(rx_count(b), 0);
	assert_int_equal(dstats(DEV_B).kernel_frames, k0 + 3);
	/* A 5-tuple rule, and a listen rule of another QP on the same device:
	 * the connection rule has the higher priority. */
	cfg_init(&cfg, DEV_B, XT_VERBS_STEER_FLOWS);
	cfg.no_arp_rule = 1;
	c = vopen_cfg(&cfg);
	lid_c = xt_verbs_flow_add_listen(c, 0, 81);
	assert_true(lid_c >= 0);
	cid = xt_verbs_flow_add_conn(b, &t);
	assert_true(cid >= 0);
	INJECT(0x0a090007u, 4000, 81, b->caps.mac);
	assert_int_equal(rx_count(b), 1);
	assert_int_equal(rx_count(c), 0);
	INJECT(0x0a090007u, 4001, 81, b->caps.mac); /* other source port: the listener */
	assert_int_equal(rx_count(b), 0);
	assert_int_equal(rx_count(c), 1);
	INJECT(0x0a090008u, 4000, 81, b->caps.mac); /* other source address */
	assert_int_equal(rx_count(c), 1);
	assert_int_equal(xt_verbs_flow_del(c, lid_c), 0);
	INJECT(0x0a090008u, 4000, 81, b->caps.mac);
	assert_int_equal(rx_count(c), 0);
	/* Removal. */
	assert_int_equal(xt_verbs_flow_del(b, lid), 0);
	assert_int_equal(xt_verbs_flow_del(b, lid), -ENOENT);
	assert_int_equal(xt_verbs_flow_del(b, 9999), -ENOENT);
	k0 = dstats(DEV_B).kernel_frames;
	INJECT(IP_A, 40000, 80, b->caps.mac);
	assert_int_equal(rx_count(b), 0);
	assert_int_equal(dstats(DEV_B).kernel_frames, k0 + 1);
	/* ARP: a copy for the engine, and the kernel still gets it. */
	memset(fr, 0, 60);
	memset(fr, 0xff, 6);
	memcpy(fr + 6, mac_a, 6);
	xt_wr16(fr + XT_ETH_TYPE_be16, XT_ETHERTYPE_ARP);
	xt_wr16(fr + XT_ETH_HLEN + XT_ARP_OP_be16, XT_ARP_OP_REQUEST);
	xt_wr32(fr + XT_ETH_HLEN + XT_ARP_TPA_be32, IP_B);
	k0 = dstats(DEV_B).kernel_frames;
	assert_int_equal(D.wire_input(DEV_B, fr, 60), 0);
	assert_int_equal(rx_count(b), 1);
	assert_int_equal(rx_count(c), 0); /* c has no ARP rule */
	assert_int_equal(dstats(DEV_B).kernel_frames, k0 + 1);
	/* Bad arguments. */
	assert_int_equal(xt_verbs_flow_add_listen(b, 0, 0), -EINVAL);
	assert_int_equal(xt_verbs_flow_add_conn(b, NULL), -EINVAL);
	assert_int_equal(xt_verbs_flow_add_listen(NULL, 0, 80), -EINVAL);
	assert_int_equal(xt_verbs_stats(b, &s), 0);
	assert_int_equal(s.flows_added, 4); /* ICMP, ARP, listen, connection */
	assert_int_equal(s.flows_removed, 1);
	vclose(c);
	/* Steer IP: every port to the address. */
	D.set_caps(DEV_B, XTD_CAP_ALL);
	vclose(b);
	ipn = vopen(DEV_B, XT_VERBS_STEER_IP);
	INJECT(IP_A, 1, 12345, ipn->caps.mac);
	INJECT(IP_A, 2, 80, ipn->caps.mac);
	assert_int_equal(rx_count(ipn), 2);
	vclose(ipn);
#undef INJECT
}

/* The vtable's steering hooks (nic.h), as the shim calls them: a listening
 * rule when remote_port is 0, else a 5-tuple; backends without steering
 * answer -EOPNOTSUPP through the inline wrapper. */
static void test_flow_vtable(void **state)
{
	struct xt_nic *b = vopen(DEV_B, XT_VERBS_STEER_FLOWS), *l1, *l2;
	struct xt_loop_cfg lc;
	uint8_t fr[2048];
	const uint8_t *mac_a = ((const uint8_t[]){ 2, 0, 0, 0, 0xd0, 0 });
	struct xt_flow lf = { .local_ip = IP_B, .local_port = 90 };
	struct xt_flow cf = { .local_ip = IP_B, .remote_ip = IP_A, .local_port = 91, .remote_port = 5000 };
	struct xt_verbs_stats s0, s;
	int lid, cid;
	uint32_t len;

	(void)state;
	assert_int_equal(xt_verbs_stats(b, &s0), 0);
	lid = xt_nic_flow_add(b, &lf);
	assert_true(lid >= 0);
	cid = xt_nic_flow_add(b, &cf);
	assert_true(cid >= 0 && cid != lid);
	len = tcp_frame(fr, b->caps.mac, mac_a, IP_A, IP_B, 4000, 90, 1, XT_TH_SYN, 0);
	assert_int_equal(D.wire_input(DEV_B, fr, len), 0);
	len = tcp_frame(fr, b->caps.mac, mac_a, IP_A, IP_B, 5000, 91, 1, XT_TH_ACK, 0);
	assert_int_equal(D.wire_input(DEV_B, fr, len), 0);
	len = tcp_frame(fr, b->caps.mac, mac_a, IP_A, IP_B, 5001, 91, 1, XT_TH_ACK, 0);
	assert_int_equal(D.wire_input(DEV_B, fr, len), 0); /* another connection: the kernel's */
	assert_int_equal(rx_count(b), 2);
	assert_int_equal(xt_nic_flow_del(b, cid), 0);
	assert_int_equal(xt_nic_flow_del(b, lid), 0);
	assert_int_equal(xt_nic_flow_del(b, lid), -ENOENT);
	len = tcp_frame(fr, b->caps.mac, mac_a, IP_A, IP_B, 4000, 90, 1, XT_TH_SYN, 0);
	assert_int_equal(D.wire_input(DEV_B, fr, len), 0);
	assert_int_equal(rx_count(b), 0);
	assert_int_equal(xt_verbs_stats(b, &s), 0);
	assert_int_equal(s.flows_added - s0.flows_added, 2);
	assert_int_equal(s.flows_removed - s0.flows_removed, 2);
	assert_int_equal(xt_nic_flow_add(b, NULL), -EINVAL);
	vclose(b);
	memset(&lc, 0, sizeof(lc));
	assert_int_equal(xt_loop_pair(&lc, &l1, &l2), 0);
	assert_int_equal(xt_nic_flow_add(l1, &lf), -EOPNOTSUPP);
	assert_int_equal(xt_nic_flow_del(l1, 0), -EOPNOTSUPP);
	xt_nic_close(l1);
	xt_nic_close(l2);
}

static void test_checksum_offload(void **state)
{
	struct xt_nic *a = vopen(DEV_A, XT_VERBS_STEER_IP), *b = vopen(DEV_B, XT_VERBS_STEER_IP);
	struct xt_verbs_stats s;
	struct xt_frame got[4];
	uint8_t copy[4][2048], fr[2048];
	struct xt_frame f = { .data = fr, .len = 0, .flags = 0 };
	struct xt_verbs_cfg cfg;
	uint32_t len;

	(void)state;
	assert_true(a->caps.tx_csum && a->caps.rx_csum);
	/* The engine leaves checksums at 0; the device fills them. */
	f.len = tcp_frame(fr, b->caps.mac, a->caps.mac, IP_A, IP_B, 1, 2, 3, XT_TH_ACK, 300);
	xt_wr16(fr + XT_ETH_HLEN + XT_IP_CSUM_be16, 0);
	xt_wr16(fr + XT_ETH_HLEN + XT_IP_HLEN + XT_TCP_CSUM_be16, 0);
	assert_int_equal(xt_nic_tx(a, &f, 1, vnow), 1);
	assert_int_equal(rx_all(b, got, copy, 4), 1);
	assert_true(frame_csums_ok(got[0].data, got[0].len));
	assert_int_equal(dstats(DEV_A).send_ip_csum, 1);
	assert_int_equal(xt_verbs_stats(b, &s), 0);
	assert_int_equal(s.rx_csum_hw, 1);
	/* A corrupt frame from the wire: no IBV_WC_IP_CSUM_OK, checked in
	 * software, dropped. */
	len = tcp_frame(fr, b->caps.mac, a->caps.mac, IP_A, IP_B, 1, 2, 3, XT_TH_ACK, 300);
	fr[len - 1] ^= 0x40;
	assert_int_equal(D.wire_input(DEV_B, fr, len), 0);
	assert_int_equal(rx_count(b), 0);
	assert_int_equal(xt_verbs_stats(b, &s), 0);
	assert_int_equal(s.rx_csum_sw, 1);
	assert_int_equal(s.rx_csum_bad, 1);
	/* A non-TCP/UDP IPv4 frame (no hardware mark) passes the software check. */
	len = tcp_frame(fr, b->caps.mac, a->caps.mac, IP_A, IP_B, 1, 2, 3, XT_TH_ACK, 0);
	fr[XT_ETH_HLEN + XT_IP_PROTO] = 99;
	xt_wr16(fr + XT_ETH_HLEN + XT_IP_CSUM_be16, 0);
	xt_wr16(fr + XT_ETH_HLEN + XT_IP_CSUM_be16, xt_csum_fold(xt_csum_add(0, fr + XT_ETH_HLEN, XT_IP_HLEN)));
	assert_int_equal(D.wire_input(DEV_B, fr, len), 0);
	assert_int_equal(rx_count(b), 1);
	vclose(a);
	vclose(b);

	/* Without the capability: software checksums, no IBV_SEND_IP_CSUM. */
	D.set_caps(DEV_A, XTD_CAP_ALL & ~XTD_CAP_CSUM);
	D.set_caps(DEV_B, XTD_CAP_ALL & ~XTD_CAP_CSUM);
	a = vopen(DEV_A, XT_VERBS_STEER_IP);
	b = vopen(DEV_B, XT_VERBS_STEER_IP);
	assert_false(a->caps.tx_csum || a->caps.rx_csum);
	uint64_t before = dstats(DEV_A).send_ip_csum;
	send_frames(a, b, 2, 100, 1);
	assert_int_equal(dstats(DEV_A).send_ip_csum, before);
	len = tcp_frame(fr, b->caps.mac, a->caps.mac, IP_A, IP_B, 1, 2, 3, XT_TH_ACK, 300);
	fr[len - 1] ^= 0x40;
	assert_int_equal(D.wire_input(DEV_B, fr, len), 0);
	assert_int_equal(rx_count(b), 3); /* passed on: the engine checks */
	assert_int_equal(xt_verbs_stats(b, &s), 0);
	assert_int_equal(s.rx_csum_sw + s.rx_csum_hw + s.rx_csum_bad, 0);
	vclose(a);
	vclose(b);
	/* Offered but declined by configuration. */
	D.reset();
	cfg_init(&cfg, DEV_A, XT_VERBS_STEER_IP);
	cfg.no_csum_offload = 1;
	a = vopen_cfg(&cfg);
	assert_false(a->caps.tx_csum || a->caps.rx_csum);
	vclose(a);
}

static void test_inline_and_signalling(void **state)
{
	struct xt_verbs_cfg cfg;
	struct xt_nic *a, *b;
	struct xt_verbs_stats s;
	struct xt_verbs_info ia;
	struct xtd_stats d0, d1;
	uint8_t runt[16] = { 0 };
	struct xt_frame rf = { .data = runt, .len = sizeof(runt), .flags = 0 };

	(void)state;
	cfg_init(&cfg, DEV_A, XT_VERBS_STEER_IP);
	cfg.signal_every = 8;
	cfg.tx_depth = 64;
	a = vopen_cfg(&cfg);
	b = vopen(DEV_B, XT_VERBS_STEER_IP);
	assert_int_equal(xt_verbs_info(a, &ia), 0);
	assert_int_equal(ia.inline_max, 256);
	assert_int_equal(ia.signal_every, 8);
	d0 = dstats(DEV_A);
	/* 1000 small frames through a 64-entry queue: inline, one in 8
	 * signalled, and the queue never overflows. */
	for (int i = 0; i < 1000; i += 20) {
		send_frames(a, b, 20, 6, 1); /* 60-byte frames */
		assert_int_equal(rx_count(b), 20);
	}
	d1 = dstats(DEV_A);
	assert_int_equal(d1.send_wrs - d0.send_wrs, 1000);
	assert_int_equal(d1.send_inline - d0.send_inline, 1000);
	assert_int_equal(d1.send_signalled - d0.send_signalled, 125);
	assert_int_equal(d1.max_inline_seen, 60);
	/* Large frames are copied into the pool, not inline. */
	send_frames(a, b, 10, 1000, 1);
	assert_int_equal(rx_count(b), 10);
	d0 = dstats(DEV_A);
	assert_int_equal(d0.send_inline - d1.send_inline, 0);
	/* A runt (< 18 bytes: no room for the L2 header) is dropped here. */
	assert_int_equal(xt_nic_tx(a, &rf, 1, vnow), 1);
	assert_int_equal(dstats(DEV_A).send_wrs, d0.send_wrs);
	assert_int_equal(xt_verbs_stats(a, &s), 0);
	assert_int_equal(s.tx_oversize, 1);
	assert_int_equal(s.tx_inline, 1000);
	assert_int_equal(s.tx_signalled, (1000 + 10) / 8);
	assert_int_equal(s.tx_post_errors + s.tx_full, 0);
	vclose(a);
	/* Inline off by configuration, and on a device without it. */
	cfg_init(&cfg, DEV_A, XT_VERBS_STEER_IP);
	cfg.inline_max = -1;
	a = vopen_cfg(&cfg);
	d0 = dstats(DEV_A);
	send_frames(a, b, 5, 6, 1);
	assert_int_equal(dstats(DEV_A).send_inline, d0.send_inline);
	assert_int_equal(rx_count(b), 5);
	vclose(a);
	D.set_caps(DEV_A, XTD_CAP_ALL & ~XTD_CAP_INLINE);
	a = vopen(DEV_A, XT_VERBS_STEER_IP);
	assert_int_equal(xt_verbs_info(a, &ia), 0);
	assert_int_equal(ia.inline_max, 0);
	send_frames(a, b, 5, 6, 1);
	assert_int_equal(rx_count(b), 5);
	vclose(a);
	vclose(b);
}

static void test_rx_batching(void **state)
{
	struct xt_verbs_cfg cfg;
	struct xt_nic *a, *b;
	struct xtd_stats d0, d1;
	struct xt_verbs_stats s;

	(void)state;
	d0 = dstats(DEV_B);
	cfg_init(&cfg, DEV_B, XT_VERBS_STEER_IP);
	cfg.rx_depth = 256;
	cfg.rx_batch = 16;
	b = vopen_cfg(&cfg);
	a = vopen(DEV_A, XT_VERBS_STEER_IP);
	d1 = dstats(DEV_B);
	assert_int_equal(d1.recv_wrs - d0.recv_wrs, 256);
	assert_int_equal(d1.post_recv_calls - d0.post_recv_calls, 16);
	send_frames(a, b, 100, 100, 1);
	assert_int_equal(rx_count(b), 100);
	d0 = dstats(DEV_B);
	assert_int_equal(d0.recv_wrs - d1.recv_wrs, 96);          /* whole batches only */
	assert_int_equal(d0.post_recv_calls - d1.post_recv_calls, 6);
	assert_int_equal(xt_verbs_stats(b, &s), 0);
	assert_int_equal(s.rx_posted, 256 + 96);
	/* More than the queue holds in one go: none lost, since slots beyond
	 * the queue keep it full while a burst is lent. */
	send_frames(a, b, 200, 100, 1);
	assert_int_equal(rx_count(b), 200);
	assert_int_equal(dstats(DEV_B).rx_no_wqe, 0);
	vclose(a);
	vclose(b);
}

static void test_tso(void **state)
{
	struct xt_nic *a = vopen(DEV_A, XT_VERBS_STEER_IP), *b = vopen(DEV_B, XT_VERBS_STEER_IP);
	static uint8_t big[9100];
	struct xt_frame f = { .data = big, .len = 0, .flags = 0 }, got[16];
	static uint8_t copy[16][2048];
	struct xt_verbs_stats s;
	struct xt_verbs_info ia;
	uint32_t next, plen = 8000;
	int n;

	(void)state;
	assert_int_equal(xt_verbs_info(a, &ia), 0);
	assert_int_equal(ia.tso_max, 65536);
	f.len = tcp_frame(big, b->caps.mac, a->caps.mac, IP_A, IP_B, 7, 8, 1000, XT_TH_ACK | XT_TH_PSH | XT_TH_FIN, plen);
	assert_int_equal(xt_nic_tx(a, &f, 1, vnow), 1);
	n = rx_all(b, got, copy, 16);
	assert_int_equal(n, 6); /* ceil(8000 / 1460) */
	next = 1000;
	for (int i = 0; i < n; i++) {
		const uint8_t *th = got[i].data + XT_ETH_HLEN + XT_IP_HLEN;
		uint32_t pl = got[i].len - 54;

		assert_true(got[i].len <= 1514);
		assert_true(frame_csums_ok(got[i].data, got[i].len));
		assert_int_equal(xt_rd32(th + XT_TCP_SEQ_be32), next);
		assert_int_equal(th[XT_TCP_FLAGS] & (XT_TH_PSH | XT_TH_FIN), i == n - 1 ? (XT_TH_PSH | XT_TH_FIN) : 0);
		for (uint32_t k = 0; k < pl; k++)
			assert_int_equal(th[XT_TCP_HLEN + k], (uint8_t)(next + k));
		next += pl;
	}
	assert_int_equal(next, 1000 + plen);
	assert_int_equal(xt_verbs_stats(a, &s), 0);
	assert_int_equal(s.tx_tso, 1);
	vclose(a);
	/* Without TSO the frame is dropped and counted, never sent. */
	D.set_caps(DEV_A, XTD_CAP_ALL & ~XTD_CAP_TSO);
	a = vopen(DEV_A, XT_VERBS_STEER_IP);
	assert_int_equal(xt_verbs_info(a, &ia), 0);
	assert_int_equal(ia.tso_max, 0);
	assert_int_equal(xt_nic_tx(a, &f, 1, vnow), 1);
	assert_int_equal(rx_count(b), 0);
	assert_int_equal(xt_verbs_stats(a, &s), 0);
	assert_int_equal(s.tx_oversize, 1);
	vclose(a);
	vclose(b);
}

/* The wake fd in an epoll set: quiet while nothing arrives, readable when a
 * frame arrives after arm_wake, and also when it arrived before. */
static void test_wake_epoll(void **state)
{
	struct xt_nic *a = vopen(DEV_A, XT_VERBS_STEER_IP), *b = vopen(DEV_B, XT_VERBS_STEER_IP);
	struct epoll_event ev = { .events = EPOLLIN }, out;
	struct xtd_stats ds;
	struct xt_verbs_stats s;
	int ep = epoll_create1(EPOLL_CLOEXEC);

	(void)state;
	assert_true(ep >= 0);
	assert_true(b->ops->wake_fd(b) >= 0);
	assert_int_equal(epoll_ctl(ep, EPOLL_CTL_ADD, b->ops->wake_fd(b), &ev), 0);
	assert_int_equal(b->ops->arm_wake(b), 0);
	assert_int_equal(epoll_wait(ep, &out, 1, 0), 0);
	send_frames(a, b, 1, 100, 1);
	assert_int_equal(epoll_wait(ep, &out, 1, 0), 1);
	assert_int_equal(rx_count(b), 1);
	assert_int_equal(epoll_wait(ep, &out, 1, 0), 0); /* the event was read and acked */
	ds = dstats(DEV_B);
	assert_int_equal(ds.cq_events, 1);
	assert_int_equal(ds.cq_events_acked, 1);
	/* Busy polling: no arm, no events, no wake-ups. */
	send_frames(a, b, 1, 100, 1);
	assert_int_equal(epoll_wait(ep, &out, 1, 0), 0);
	assert_int_equal(rx_count(b), 1);
	/* The race: a frame lands after the last rx_burst, before arm_wake.
	 * The CQ raises no event for it; the backend still wakes. */
	send_frames(a, b, 2, 100, 1);
	assert_int_equal(b->ops->arm_wake(b), 0);
	assert_int_equal(epoll_wait(ep, &out, 1, 0), 1);
	assert_int_equal(rx_count(b), 2);
	assert_int_equal(b->ops->arm_wake(b), 0);
	assert_int_equal(epoll_wait(ep, &out, 1, 0), 0);
	send_frames(a, b, 1, 100, 1);
	assert_int_equal(epoll_wait(ep, &out, 1, 0), 1);
	assert_int_equal(rx_count(b), 1);
	ds = dstats(DEV_B);
	assert_int_equal(ds.cq_events_acked, ds.cq_events);
	assert_int_equal(xt_verbs_stats(b, &s), 0);
	assert_int_equal(s.cq_events, 2);
	close(ep);
	vclose(a);
	vclose(b);
}

/* --- the readiness tool ---------------------------------------------------------- */

static int run_tool(const char *ifname, const char *caps, const char *lib, char *out, size_t outlen)
{
	int p[2], status;
	pid_t pid;
	size_t n = 0;
	ssize_t r;

	assert_int_equal(pipe(p), 0);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		dup2(p[1], 1);
		dup2(p[1], 2);
		close(p[0]);
		if (caps)
			setenv("XTCP_DOUBLE_CAPS", caps, 1);
		if (lib)
			setenv("XTCP_IBVERBS_LIB", lib, 1);
		execl(D.tool, D.tool, ifname, (char *)NULL);
		_exit(127);
	}
	close(p[1]);
	while (n + 1 < outlen && (r = read(p[0], out + n, outlen - 1 - n)) > 0)
		n += (size_t)r;
	out[n] = '\0';
	close(p[0]);
	assert_int_equal(waitpid(pid, &status, 0), pid);
	return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

static void test_check_tool(void **state)
{
	static char out[8192];
	struct xt_verbs_probe p;

	(void)state;
	/* In process first. */
	assert_int_equal(xt_verbs_probe("xtdn1", NULL, &p), 0);
	assert_string_equal(p.device, "xtd1");
	assert_string_equal(p.driver, "xtcp_ibv_double");
	assert_int_equal(p.status[XT_VCHK_RAW_QP], XT_VCHK_OK);
	assert_int_equal(p.status[XT_VCHK_FLOW], XT_VCHK_OK);
	assert_int_equal(p.status[XT_VCHK_DONT_TRAP], XT_VCHK_OK);
	assert_int_equal(p.inline_max, 256);
	assert_int_equal(dstats(DEV_B).objects_live, 0);
	D.set_caps(DEV_B, XTD_CAP_ALL & ~XTD_CAP_FLOW);
	assert_int_equal(xt_verbs_probe("xtdn1", NULL, &p), 1);
	assert_int_equal(p.status[XT_VCHK_FLOW], XT_VCHK_FAIL);
	assert_int_equal(p.err[XT_VCHK_FLOW], EOPNOTSUPP);
	D.set_caps(DEV_B, XTD_CAP_ALL);

	/* The program (built if the tree has not built it yet). */
	if (!file_exists(D.tool)) {
		char script[PATH_MAX];
		snprintf(script, sizeof(script), "%s/tests/ibv_double/build.sh", D.src);
		char *argv[] = { "/bin/bash", script, "--tool", D.tool, NULL };
		if (run_wait(argv) != 0)
			fail_msg("cannot build %s with %s", D.tool, script);
	}
	assert_int_equal(run_tool("xtdn0", NULL, NULL, out, sizeof(out)), 0);
	assert_non_null(strstr(out, "[ ok ] raw packet QP"));
	assert_non_null(strstr(out, "result: ready for XTCP_NIC=verbs on xtdn0 (xtd0 port 1)"));
	assert_int_equal(run_tool("xtdn0", "-raw,-csum", NULL, out, sizeof(out)), 1);
	assert_non_null(strstr(out, "[FAIL] raw packet QP"));
	assert_non_null(strstr(out, "fix: raw packet QPs need a mlx5"));
	assert_non_null(strstr(out, "[warn] checksum offload"));
	assert_non_null(strstr(out, "NOT READY: 1 problem"));
	assert_int_equal(run_tool("xtdn0", "-dont_trap,-tso,-inline", NULL, out, sizeof(out)), 0);
	assert_non_null(strstr(out, "[warn] ARP copy rule"));
	assert_non_null(strstr(out, "ip neigh add proxy"));
	assert_non_null(strstr(out, "with the warnings above"));
	assert_int_equal(run_tool("xtdn0", "-access", NULL, out, sizeof(out)), 1);
	assert_non_null(strstr(out, "/dev/infiniband/uverbs"));
	assert_int_equal(run_tool("lo", NULL, NULL, out, sizeof(out)), 1);
	assert_non_null(strstr(out, "[FAIL] RDMA device: no RDMA device behind lo"));
	assert_int_equal(run_tool("xtdn0", NULL, "/nonexistent/libibverbs.so.1", out, sizeof(out)), 1);
	assert_non_null(strstr(out, "[FAIL] libibverbs"));
	assert_non_null(strstr(out, "apt-get install libibverbs1 ibverbs-providers"));
}

static void test_kernel_helpers(void **state)
{
	uint32_t ip, mask, gw;
	struct xt_verbs_neigh nb[16];

	(void)state;
	assert_int_equal(xt_verbs_kernel_addr("lo", &ip, &mask, &gw), 0);
	assert_int_equal(ip, 0x7f000001u);
	assert_int_equal(mask, 0xff000000u);
	assert_int_equal(xt_verbs_kernel_addr("xtnosuch9", &ip, &mask, &gw), -ENODEV);
	assert_true(xt_verbs_kernel_neigh("lo", nb, 16) >= 0);
	assert_int_equal(xt_verbs_kernel_neigh("lo", NULL, -1), -EINVAL);
}

/* --- over AF_PACKET: the double on a veth, the kernel as peer --------------------- */

static char pk_script[PATH_MAX];
static int pk_home = -1;
static bool pk_up;

static int pk_run(const char *cmd, int tag)
{
	char t[16];
	snprintf(t, sizeof(t), "%d", tag);
	char *argv[] = { "/bin/bash", pk_script, (char *)cmd, t, NULL };
	return run_wait(argv);
}

static int enter_ns(const char *name)
{
	char path[128];
	int fd, r;

	snprintf(path, sizeof(path), "/var/run/netns/%s", name);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -1;
	r = setns(fd, CLONE_NEWNET);
	close(fd);
	return r;
}

static void pk_down(void);

static void pk_on_signal(int sig)
{
	static const char msg[] = "test_verbs: signal: removing the packet-wire namespaces\n";
	ssize_t r = write(2, msg, sizeof(msg) - 1);

	(void)r;
	pk_down();
	_exit(128 + sig);
}

/* Enters the test's network namespace A (built on first use, removed by the
 * group teardown, atexit or a fatal signal).  False when this host cannot
 * build one (not root, no iproute2). */
static bool ns_enter(const char *who)
{
	char name[64];
	bool have_ip = access("/usr/sbin/ip", X_OK) == 0 || access("/sbin/ip", X_OK) == 0 ||
		       access("/usr/bin/ip", X_OK) == 0;

	if (pk_up)
		return true;
	snprintf(pk_script, sizeof(pk_script), "%s/tests/packet_env.sh", D.src);
	if (geteuid() != 0 || !file_exists(pk_script) || !have_ip) {
		print_message("%s: needs root, iproute2 and %s; not run\n", who, pk_script);
		return false;
	}
	pk_home = open("/proc/self/ns/net", O_RDONLY | O_CLOEXEC);
	assert_true(pk_home >= 0);
	pk_up = true;
	atexit(pk_down);
	signal(SIGTERM, pk_on_signal);
	signal(SIGINT, pk_on_signal);
	signal(SIGALRM, pk_on_signal);
	alarm(120); /* the safety net: both cases take a few seconds */
	if (pk_run("veth", getpid()) != 0)
		fail_msg("%s veth failed", pk_script);
	snprintf(name, sizeof(name), "xtpk-%d-a", getpid());
	assert_int_equal(enter_ns(name), 0);
	return true;
}

static int group_teardown(void **state)
{
	(void)state;
	pk_down();
	alarm(0);
	return 0;
}

static void pk_down(void)
{
	if (pk_up) {
		if (pk_home >= 0)
			setns(pk_home, CLONE_NEWNET);
		pk_run("down", getpid());
		pk_up = false;
	}
}

/* Kernel client in ns B: connect, send 256 KiB, read it echoed back. */
static int kernel_echo_client(uint32_t ip, uint16_t port, size_t total)
{
	char name[64];
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons(port), .sin_addr.s_addr = htonl(ip) };
	static uint8_t buf[65536], rbuf[65536];
	size_t sent = 0, got = 0;
	int fd;

	snprintf(name, sizeof(name), "xtpk-%d-b", getppid());
	alarm(30);
	if (enter_ns(name) < 0)
		return 2;
	fd = socket(AF_INET, SOCK_STREAM, 0);
	if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0)
		return 3;
	while (got < total) {
		if (sent < total) {
			size_t n = total - sent < sizeof(buf) ? total - sent : sizeof(buf);
			for (size_t i = 0; i < n; i++)
				buf[i] = pat(5, sent + i);
			ssize_t w = send(fd, buf, n, MSG_DONTWAIT);
			if (w > 0)
				sent += (size_t)w;
		}
		ssize_t r = recv(fd, rbuf, sizeof(rbuf), sent < total ? MSG_DONTWAIT : 0);
		if (r == 0)
			return 4;
		for (ssize_t i = 0; i < r; i++)
			if (rbuf[i] != pat(5, got + (size_t)i))
				return 5;
		if (r > 0)
			got += (size_t)r;
		else
			usleep(200);
	}
	close(fd);
	return 0;
}

static xt_time_t mono(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (xt_time_t)ts.tv_sec * 1000000000u + (xt_time_t)ts.tv_nsec;
}

static int pk_tx(void *ctx, const struct xt_frame *f, int n)
{
	return xt_nic_tx(ctx, f, n, mono());
}

static void test_packet_wire(void **state)
{
	struct xt_verbs_cfg cfg;
	struct xt_nic *nic;
	struct xt_stack_cfg sc;
	struct xt_stack *st;
	struct xt_verbs_stats s;
	struct xt_verbs_info info;
	struct xtd_stats ds;
	static uint8_t buf[65536];
	char name[64];
	int ls, cs = -1, status = -1, flow;
	pid_t child;
	size_t pending = 0, echoed = 0;
	const size_t total = 256 * 1024;
	xt_time_t end;

	(void)state;
	(void)name;
	if (!ns_enter("test_packet_wire"))
		fail_msg("cannot make the test's network namespace (needs root and iproute2)");
	assert_int_equal(D.set_wire("packet:xtpk0"), 0);
	assert_int_equal(D.ndevs(), 1);

	cfg_init(&cfg, 0, XT_VERBS_STEER_AUTO);
	cfg.ifname = "xtpk0";
	cfg.ip = 0x0a4d0003u; /* 10.77.0.3: an address the kernel does not own */
	nic = vopen_cfg(&cfg);
	assert_int_equal(xt_verbs_info(nic, &info), 0);
	assert_int_equal(info.steer, XT_VERBS_STEER_IP);
	xt_stack_cfg_defaults(&sc);
	memcpy(sc.mac, nic->caps.mac, 6);
	sc.ip = cfg.ip;
	sc.netmask = NETMASK;
	sc.rx_csum_verified = nic->caps.rx_csum;
	sc.tx_csum_offload = nic->caps.tx_csum;
	sc.secret[0] = 77;
	sc.tx = pk_tx;
	sc.tx_ctx = nic;
	st = xt_stack_new(&sc, mono());
	assert_non_null(st);
	ls = xt_tcp_open(st);
	assert_int_equal(xt_tcp_bind(st, ls, 0, 7100), 0);
	assert_int_equal(xt_tcp_listen(st, ls, 4), 0);
	flow = xt_verbs_flow_add_listen(nic, 0, 7100); /* redundant with the IP rule; must coexist */
	assert_true(flow >= 0);

	child = fork();
	assert_true(child >= 0);
	if (child == 0)
		_exit(kernel_echo_client(0x0a4d0003u, 7100, total));
	end = mono() + XT_SEC(20);
	/* Until the client has everything back and exits: data the engine
	 * took still has to leave it. */
	while (mono() < end) {
		struct xt_frame f[64];
		struct pollfd p = { .fd = nic->ops->wake_fd(nic), .events = POLLIN };
		xt_time_t now = mono(), dl;
		int n;
		long r;

		while ((n = xt_nic_rx(nic, f, 64, now)) > 0)
			for (int i = 0; i < n; i++)
				xt_stack_input_frame(st, &f[i], now);
		assert_true(n == 0);
		xt_stack_flush(st);
		if (xt_stack_next_deadline(st) <= now)
			xt_stack_poll(st, now);
		if (cs < 0)
			cs = xt_tcp_accept(st, ls, NULL, NULL);
		if (cs >= 0) {
			if (!pending && (r = xt_tcp_recv(st, cs, buf, sizeof(buf), 0, now)) > 0)
				pending = (size_t)r;
			if (pending && (r = xt_tcp_send(st, cs, buf, pending, 0, now)) > 0) {
				memmove(buf, buf + r, pending - (size_t)r);
				pending -= (size_t)r;
				echoed += (size_t)r;
			}
			xt_stack_flush(st);
		}
		if (waitpid(child, &status, WNOHANG) == child) {
			child = -1;
			break;
		}
		if (nic->ops->arm_wake(nic) < 0)
			fail_msg("arm_wake failed on the packet wire");
		dl = xt_stack_next_deadline(st);
		poll(&p, 1, dl == XT_TIME_NEVER ? 20 : (int)((dl > now ? dl - now : 0) / 1000000u) + 1);
	}
	if (child > 0) {
		kill(child, SIGKILL);
		while (waitpid(child, &status, 0) < 0 && errno == EINTR)
			;
	}
	print_message("packet wire: echoed %zu bytes to the kernel client (exit %d)\n", echoed,
		      WIFEXITED(status) ? WEXITSTATUS(status) : -1);
	assert_true(WIFEXITED(status));
	assert_int_equal(WEXITSTATUS(status), 0);
	assert_int_equal(echoed, total);
	assert_int_equal(xt_verbs_stats(nic, &s), 0);
	ds = dstats(0);
	print_message("packet wire: %llu frames in (%llu checksummed by the double), %llu out, %llu cut from GSO\n",
		      (unsigned long long)s.rx_frames, (unsigned long long)s.rx_csum_hw,
		      (unsigned long long)s.tx_frames, (unsigned long long)ds.rx_gso_split);
	assert_true(s.rx_frames > 0 && s.tx_frames > 0);
	assert_int_equal(s.rx_csum_bad, 0);
	assert_true(s.cq_events > 0);
	xt_tcp_close(st, cs, mono());
	xt_tcp_close(st, ls, mono());
	xt_stack_free(st);
	vclose(nic);
	assert_int_equal(dstats(0).objects_live, 0);
	assert_int_equal(D.set_wire("mem"), 0);
}

static int run_ip(const char *args)
{
	char cmd[256];
	snprintf(cmd, sizeof(cmd), "ip %s", args);
	char *argv[] = { "/bin/sh", "-c", cmd, NULL };
	return run_wait(argv);
}

static uint32_t icmp_frame(uint8_t *b, const uint8_t dmac[6], const uint8_t smac[6], uint32_t sip, uint32_t dip,
			   uint8_t type, uint8_t code)
{
	uint8_t *ip = b + XT_ETH_HLEN, *ic = ip + XT_IP_HLEN;
	uint32_t l4 = XT_ICMP_HLEN + 28;

	memset(b, 0, XT_ETH_HLEN + XT_IP_HLEN + l4);
	memcpy(b + XT_ETH_DST, dmac, 6);
	memcpy(b + XT_ETH_SRC, smac, 6);
	xt_wr16(b + XT_ETH_TYPE_be16, XT_ETHERTYPE_IPV4);
	ip[XT_IP_VHL] = 0x45;
	xt_wr16(ip + XT_IP_LEN_be16, (uint16_t)(XT_IP_HLEN + l4));
	ip[XT_IP_TTL] = 64;
	ip[XT_IP_PROTO] = XT_IPPROTO_ICMP;
	xt_wr32(ip + XT_IP_SRC_be32, sip);
	xt_wr32(ip + XT_IP_DST_be32, dip);
	xt_wr16(ip + XT_IP_CSUM_be16, xt_csum_fold(xt_csum_add(0, ip, XT_IP_HLEN)));
	ic[XT_ICMP_TYPE] = type;
	ic[XT_ICMP_CODE] = code;
	xt_wr16(ic + XT_ICMP_CSUM_be16, xt_csum_fold(xt_csum_add(0, ic, l4)));
	return XT_ETH_HLEN + XT_IP_HLEN + l4;
}

static uint32_t arp_frame(uint8_t *b, const uint8_t smac[6], uint16_t op, uint32_t spa, uint32_t tpa)
{
	memset(b, 0, 60);
	memset(b, 0xff, 6);
	memcpy(b + 6, smac, 6);
	xt_wr16(b + XT_ETH_TYPE_be16, XT_ETHERTYPE_ARP);
	xt_wr16(b + XT_ETH_HLEN + XT_ARP_HTYPE_be16, 1);
	xt_wr16(b + XT_ETH_HLEN + XT_ARP_PTYPE_be16, XT_ETHERTYPE_IPV4);
	b[XT_ETH_HLEN + XT_ARP_HLEN] = 6;
	b[XT_ETH_HLEN + XT_ARP_PLEN] = 4;
	xt_wr16(b + XT_ETH_HLEN + XT_ARP_OP_be16, op);
	memcpy(b + XT_ETH_HLEN + XT_ARP_SHA, smac, 6);
	xt_wr32(b + XT_ETH_HLEN + XT_ARP_SPA_be32, spa);
	xt_wr32(b + XT_ETH_HLEN + XT_ARP_TPA_be32, tpa);
	return 60;
}

/* The engine on the interface's own address: the kernel owns 10.9.0.2 on
 * xtdn1 (a veth with the double's MAC, in the test's namespace),
 * so the backend steers per flow, leaves ARP requests for the address and
 * ICMP echo to the kernel, and still passes ARP replies and ICMP errors. */
static void test_shared_address(void **state)
{
	struct xt_nic *b;
	struct xt_verbs_info ib;
	struct xt_verbs_stats s;
	struct xt_verbs_neigh nb[8];
	uint8_t fr[128];
	const uint8_t peer[6] = { 2, 0, 0, 0, 0, 7 };
	uint32_t ip, mask, gw, len;
	int n;

	(void)state;
	if (!ns_enter("test_shared_address"))
		fail_msg("cannot make the test's network namespace (needs root and iproute2)");
	assert_int_equal(run_ip("link add xtdn1 address 02:00:00:00:d0:01 type veth peer name xtdn1p"), 0);
	assert_int_equal(run_ip("addr add 10.9.0.2/24 dev xtdn1"), 0);
	assert_int_equal(run_ip("link set xtdn1p up"), 0);
	assert_int_equal(run_ip("link set xtdn1 up"), 0);
	assert_int_equal(run_ip("route add default via 10.9.0.254 dev xtdn1"), 0);
	assert_int_equal(run_ip("neigh add 10.9.0.7 lladdr 02:00:00:00:00:07 dev xtdn1 nud permanent"), 0);
	/* What the kernel knows, for the socket layer to configure the engine. */
	assert_int_equal(xt_verbs_kernel_addr("xtdn1", &ip, &mask, &gw), 0);
	assert_int_equal(ip, IP_B);
	assert_int_equal(mask, NETMASK);
	assert_int_equal(gw, 0x0a0900feu);
	n = xt_verbs_kernel_neigh("xtdn1", nb, 8);
	assert_int_equal(n, 1);
	assert_int_equal(nb[0].ip, 0x0a090007u);
	assert_memory_equal(nb[0].mac, peer, 6);

	b = vopen(DEV_B, XT_VERBS_STEER_AUTO);
	assert_int_equal(xt_verbs_info(b, &ib), 0);
	assert_true(ib.kernel_owns_ip);
	assert_int_equal(ib.steer, XT_VERBS_STEER_FLOWS);
	assert_true(ib.arp_rule && ib.icmp_rule);
	assert_memory_equal(b->caps.mac, ((uint8_t[]){ 2, 0, 0, 0, 0xd0, 1 }), 6);
	/* ARP: the request for our address is the kernel's to answer; a request
	 * for another address and a reply are the engine's too. */
	len = arp_frame(fr, peer, XT_ARP_OP_REQUEST, 0x0a090007u, IP_B);
	assert_int_equal(D.wire_input(DEV_B, fr, len), 0);
	assert_int_equal(rx_count(b), 0);
	len = arp_frame(fr, peer, XT_ARP_OP_REQUEST, 0x0a090007u, 0x0a090063u);
	assert_int_equal(D.wire_input(DEV_B, fr, len), 0);
	assert_int_equal(rx_count(b), 1);
	len = arp_frame(fr, peer, XT_ARP_OP_REPLY, 0x0a090007u, IP_B);
	assert_int_equal(D.wire_input(DEV_B, fr, len), 0);
	assert_int_equal(rx_count(b), 1);
	/* ICMP: echo to the kernel, errors to both. */
	len = icmp_frame(fr, b->caps.mac, peer, 0x0a090007u, IP_B, XT_ICMP_ECHO, 0);
	assert_int_equal(D.wire_input(DEV_B, fr, len), 0);
	assert_int_equal(rx_count(b), 0);
	len = icmp_frame(fr, b->caps.mac, peer, 0x0a090007u, IP_B, XT_ICMP_DEST_UNREACH, XT_ICMP_FRAG_NEEDED);
	assert_int_equal(D.wire_input(DEV_B, fr, len), 0);
	assert_int_equal(rx_count(b), 1);
	/* TCP only through rules. */
	len = tcp_frame(fr, b->caps.mac, peer, 0x0a090007u, IP_B, 4000, 22, 1, XT_TH_SYN, 0);
	assert_int_equal(D.wire_input(DEV_B, fr, len), 0);
	assert_int_equal(rx_count(b), 0);
	assert_int_equal(xt_verbs_stats(b, &s), 0);
	assert_int_equal(s.rx_kernel_arp, 1);
	assert_int_equal(s.rx_kernel_icmp, 1);
	vclose(b);
	/* A MAC of the engine's own (XTCP_MAC) on the shared address: refused,
	 * since peers reach the address at the kernel's MAC. */
	struct xt_verbs_cfg c;
	struct xt_nic *m = NULL;
	cfg_init(&c, DEV_B, XT_VERBS_STEER_AUTO);
	c.have_mac = 1;
	memcpy(c.mac, ((uint8_t[]){ 2, 0x58, 10, 9, 0, 2 }), 6);
	assert_int_equal(xt_verbs_open(&c, &m), -EINVAL);
	assert_null(m);
	assert_non_null(strstr(xt_verbs_error(), "address of its own"));
	assert_int_equal(run_ip("link del xtdn1"), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_transfer, test_setup, test_teardown),
		cmocka_unit_test_setup_teardown(test_transfer_ip_steering, test_setup, test_teardown),
		cmocka_unit_test_setup_teardown(test_zero_copy_send, test_setup, test_teardown),
		cmocka_unit_test_setup_teardown(test_library_missing, test_setup, test_teardown),
		cmocka_unit_test_setup_teardown(test_no_device, test_setup, test_teardown),
		cmocka_unit_test_setup_teardown(test_capability_errors, test_setup, test_teardown),
		cmocka_unit_test_setup_teardown(test_no_cap_net_raw, test_setup, test_teardown),
		cmocka_unit_test_setup_teardown(test_no_dont_trap, test_setup, test_teardown),
		cmocka_unit_test_setup_teardown(test_post_send_failure, test_setup, test_teardown),
		cmocka_unit_test_setup_teardown(test_send_cq_error, test_setup, test_teardown),
		cmocka_unit_test_setup_teardown(test_recv_cq_error, test_setup, test_teardown),
		cmocka_unit_test_setup_teardown(test_qp_fatal_flush, test_setup, test_teardown),
		cmocka_unit_test_setup_teardown(test_port_down, test_setup, test_teardown),
		cmocka_unit_test_setup_teardown(test_device_fatal, test_setup, test_teardown),
		cmocka_unit_test_setup_teardown(test_flow_rules, test_setup, test_teardown),
		cmocka_unit_test_setup_teardown(test_flow_vtable, test_setup, test_teardown),
		cmocka_unit_test_setup_teardown(test_checksum_offload, test_setup, test_teardown),
		cmocka_unit_test_setup_teardown(test_inline_and_signalling, test_setup, test_teardown),
		cmocka_unit_test_setup_teardown(test_rx_batching, test_setup, test_teardown),
		cmocka_unit_test_setup_teardown(test_tso, test_setup, test_teardown),
		cmocka_unit_test_setup_teardown(test_wake_epoll, test_setup, test_teardown),
		cmocka_unit_test_setup_teardown(test_check_tool, test_setup, test_teardown),
		cmocka_unit_test(test_kernel_helpers),
		cmocka_unit_test_setup_teardown(test_packet_wire, test_setup, test_teardown),
		cmocka_unit_test_setup_teardown(test_shared_address, test_setup, test_teardown),
	};

	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
