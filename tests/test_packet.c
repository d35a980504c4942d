/* The AF_PACKET backend against the Linux kernel as peer, in network
 * namespaces of its own (tests/packet_env.sh builds and removes them).
 *
 *   ns xtpk-PID-a  veth xtpk0, no address: the engine is 10.77.0.3 on it
 *   ns xtpk-PID-b  veth xtpk1 = 10.77.0.2/24: the kernel peer
 *   ns xtpk-PID-t  tun xtpktun0 = 10.78.0.1/24: the kernel; the engine is
 *                  10.78.0.3 behind the tun (see test_tun)
 *
 * This process enters ns A (setns) and drives one engine on the backend:
 * nonblocking, poll() on the backend's wake fd bounded by the engine's next
 * deadline.  Kernel peers are forked children that setns() into ns B (or T)
 * and use ordinary sockets.  Every wait is bounded; a SIGALRM safety net and
 * atexit remove the namespaces even when a test dies, and no packet leaves
 * the namespaces created here.  Needs root (CAP_NET_ADMIN, CAP_NET_RAW) and
 * iproute2; the tests skip without them.
 *
 * test_rates (frames per second through the backend) and test_latency (TCP
 * ping-pong against a busy-polling engine) print figures and assert none.
 */
#define _GNU_SOURCE
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
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
#include <linux/if_tun.h>
#include <net/if.h>
#include <netinet/in.h>
#include <netinet/ip.h>
#include <netinet/ip_icmp.h>
#include <netinet/tcp.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>

#include "../stack/xtcp.h"
#include "../nic/nic.h"
#include "../nic/packet.h"

#define IP_ENGINE 0x0a4d0003u  /* 10.77.0.3 */
#define IP_PEER 0x0a4d0002u    /* 10.77.0.2 */
#define IP_SINK 0x0a4d0009u    /* 10.77.0.9: nobody's; the rate test's receiver */
#define IP_TUN_ENGINE 0x0a4e0003u /* 10.78.0.3 */
#define IP_TUN_KERNEL 0x0a4e0001u /* 10.78.0.1 */
#define NETMASK 0xffffff00u
#define PORT_ECHO 7000
#define PORT_PEER 7001
#define PORT_TUN 7002
#define ECHO_BYTES (1u << 20)
#define ACTIVE_BYTES (512u * 1024u)
#define TUN_BYTES (256u * 1024u)
#define RX_BURST 64
#define STEP_MS 20           /* longest single wait of the driver */
#define CASE_TIMEOUT_MS 15000
#define CHILD_ALARM_S 20
#define WHOLE_RUN_ALARM_S 58 /* the safety net: the run takes well under this */
#define RATE_MS 1000
#define PORT_LAT 7003
#define LAT_ROUNDS 4000

/* --- environment --------------------------------------------------------- */

static struct {
	bool ok;             /* namespaces built, we are in ns A */
	char why[160];       /* why not */
	char script[PATH_MAX];
	int pid;             /* names the namespaces */
	int home_ns;         /* fd of the namespace we started in */
	bool up;             /* namespaces may exist */
} env = { .home_ns = -1 };

static xt_time_t mono(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (xt_time_t)ts.tv_sec * 1000000000u + (xt_time_t)ts.tv_nsec;
}

static void ns_name(char *buf, size_t len, char which)
{
	snprintf(buf, len, "xtpk-%d-%c", env.pid, which);
}

/* Runs the script with fork/execv/waitpid only, so the signal handler may
 * use it too. */
static int run_script(const char *cmd, const char *tag)
{
	pid_t pid;
	int status;
	char *argv[] = { "bash", env.script, (char *)cmd, (char *)tag, NULL };

	pid = fork();
	if (pid < 0)
		return -1;
	if (pid == 0) {
		execv("/bin/bash", argv);
		_exit(127);
	}
	while (waitpid(pid, &status, 0) < 0)
		if (errno != EINTR)
			return -1;
	return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

static void env_down(void)
{
	char tag[16];

	if (!env.up || getpid() != env.pid)
		return; /* only the test process, never a forked child */
	snprintf(tag, sizeof(tag), "%d", env.pid);
	run_script("down", tag);
	env.up = false;
}

static void on_fatal_signal(int sig)
{
	static const char msg[] = "test_packet: time limit or signal: removing namespaces\n";
	ssize_t r = write(2, msg, sizeof(msg) - 1);

	(void)r;
	env_down();
	_exit(128 + sig);
}

static bool find_script(void)
{
	char exe[PATH_MAX - 64], *slash;
	ssize_t n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
	const char *rel[] = { "/../../tests/packet_env.sh", "/../../../tests/packet_env.sh" };
	const char *src = getenv("XTCP_SRCDIR");

	if (src) {
		snprintf(env.script, sizeof(env.script), "%s/tests/packet_env.sh", src);
		if (access(env.script, R_OK) == 0)
			return true;
	}
	if (n > 0) {
		exe[n] = '\0';
		slash = strrchr(exe, '/');
		if (slash) {
			*slash = '\0';
			for (size_t i = 0; i < sizeof(rel) / sizeof(rel[0]); i++) {
				snprintf(env.script, sizeof(env.script), "%s%s", exe, rel[i]);
				if (access(env.script, R_OK) == 0)
					return true;
			}
		}
	}
	snprintf(env.script, sizeof(env.script), "tests/packet_env.sh");
	return access(env.script, R_OK) == 0;
}

static int enter_ns(char which)
{
	char path[64], name[32];
	int fd, r;

	ns_name(name, sizeof(name), which);
	snprintf(path, sizeof(path), "/run/netns/%s", name);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	r = setns(fd, CLONE_NEWNET);
	close(fd);
	return r < 0 ? -errno : 0;
}

static int group_setup(void **state)
{
	char tag[16];
	struct sigaction sa;

	(void)state;
	env.pid = getpid();
	snprintf(tag, sizeof(tag), "%d", env.pid);
	if (geteuid() != 0) {
		snprintf(env.why, sizeof(env.why), "needs root (namespaces, AF_PACKET)");
		return 0;
	}
	if (access("/sbin/ip", X_OK) != 0 && access("/usr/sbin/ip", X_OK) != 0 &&
	    access("/bin/ip", X_OK) != 0) {
		snprintf(env.why, sizeof(env.why), "needs iproute2 (ip)");
		return 0;
	}
	if (!find_script()) {
		snprintf(env.why, sizeof(env.why), "tests/packet_env.sh not found (set XTCP_SRCDIR)");
		return 0;
	}
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_fatal_signal;
	sigaction(SIGALRM, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGHUP, &sa, NULL);
	atexit(env_down);
	alarm(WHOLE_RUN_ALARM_S);
	run_script("reap", "");
	env.up = true;
	if (run_script("veth", tag) != 0 || run_script("tun", tag) != 0) {
		snprintf(env.why, sizeof(env.why), "could not build the namespaces (tests/packet_env.sh)");
		env_down();
		return 0;
	}
	env.home_ns = open("/proc/self/ns/net", O_RDONLY | O_CLOEXEC);
	if (env.home_ns < 0 || enter_ns('a') < 0) {
		snprintf(env.why, sizeof(env.why), "setns into ns A failed: %s", strerror(errno));
		env_down();
		return 0;
	}
	env.ok = true;
	return 0;
}

static int group_teardown(void **state)
{
	(void)state;
	if (env.home_ns >= 0) {
		if (setns(env.home_ns, CLONE_NEWNET) < 0)
			perror("setns home");
		close(env.home_ns);
		env.home_ns = -1;
	}
	env_down();
	alarm(0);
	return 0;
}

#define NEED_ENV()                                              \
	do {                                                    \
		if (!env.ok) /* a test that cannot run fails */ \
			fail_msg("cannot run: %s", env.why);    \
	} while (0)
/* The veth cases share one engine, opened by test_caps' setup. */
#define NEED_VETH()                                             \
	do {                                                    \
		NEED_ENV();                                     \
		assert_non_null(veth_eng.st);                   \
	} while (0)

/* --- children: the kernel's side ---------------------------------------- */

/* Forks a child that enters namespace `which` and returns fn(arg) as its exit
 * status.  The child never returns into cmocka. */
static pid_t spawn(char which, int (*fn)(void *), void *arg)
{
	pid_t pid = fork();

	if (pid != 0)
		return pid;
	alarm(CHILD_ALARM_S);
	signal(SIGALRM, SIG_DFL);
	signal(SIGTERM, SIG_DFL);
	signal(SIGINT, SIG_DFL);
	if (enter_ns(which) < 0) {
		fprintf(stderr, "child: setns %c: %s\n", which, strerror(errno));
		_exit(90);
	}
	_exit(fn(arg));
}

/* Child status: -1 still running, else the exit code (128 + signal). */
static int reap(pid_t pid)
{
	int status;
	pid_t r = waitpid(pid, &status, WNOHANG);

	if (r == 0)
		return -1;
	if (r < 0)
		return 99;
	return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

static int reap_wait(pid_t pid, int timeout_ms)
{
	xt_time_t end = mono() + XT_MS(timeout_ms);
	int r;

	while ((r = reap(pid)) < 0 && mono() < end)
		usleep(1000);
	if (r < 0) {
		kill(pid, SIGKILL);
		waitpid(pid, NULL, 0);
	}
	return r;
}

/* Byte i of stream seed: not periodic at any small power of two, so a
 * misplaced segment cannot pass for the right one. */
static uint8_t pat(uint32_t seed, uint64_t i)
{
	uint64_t x = (i / 8 + (uint64_t)seed * 0x9e3779b97f4a7c15ull) * 0xbf58476d1ce4e5b9ull;
	x ^= x >> 31;
	return (uint8_t)(x >> (8 * (i % 8)));
}

static void pat_fill(uint32_t seed, uint64_t off, uint8_t *buf, size_t len)
{
	for (size_t i = 0; i < len; i++)
		buf[i] = pat(seed, off + i);
}

static bool pat_check(uint32_t seed, uint64_t off, const uint8_t *buf, size_t len)
{
	for (size_t i = 0; i < len; i++) {
		if (buf[i] != pat(seed, off + i)) {
			fprintf(stderr, "byte %" PRIu64 ": got 0x%02x, want 0x%02x\n", off + i, buf[i],
				pat(seed, off + i));
			return false;
		}
	}
	return true;
}

/* Kernel socket side of a duplex transfer: sends tx_total bytes of tx_seed
 * while receiving rx_total bytes of rx_seed, then shuts down and expects EOF.
 * Returns 0 when every byte matched. */
static int kernel_duplex(int fd, uint32_t tx_seed, uint64_t tx_total, uint32_t rx_seed, uint64_t rx_total)
{
	static uint8_t buf[65536];
	uint64_t sent = 0, recvd = 0;
	bool shut = false, eof = false;

	fcntl(fd, F_SETFL, O_NONBLOCK);
	while (!eof || !shut) {
		struct pollfd p = { fd, (eof ? 0 : POLLIN) | (sent < tx_total ? POLLOUT : 0), 0 };

		if (sent == tx_total && !shut) {
			shutdown(fd, SHUT_WR);
			shut = true;
			continue;
		}
		if (poll(&p, 1, 5000) <= 0) {
			fprintf(stderr, "kernel side: stalled at sent %" PRIu64 " recvd %" PRIu64 "\n", sent, recvd);
			return 10;
		}
		if ((p.revents & (POLLOUT | POLLERR)) && sent < tx_total) {
			size_t n = tx_total - sent < sizeof(buf) ? (size_t)(tx_total - sent) : sizeof(buf);
			ssize_t w;

			pat_fill(tx_seed, sent, buf, n);
			w = write(fd, buf, n);
			if (w < 0 && errno != EAGAIN) {
				perror("kernel side: write");
				return 11;
			}
			if (w > 0)
				sent += (uint64_t)w;
		}
		if (!eof && (p.revents & (POLLIN | POLLHUP | POLLERR))) {
			ssize_t r = read(fd, buf, sizeof(buf));

			if (r < 0 && errno != EAGAIN) {
				perror("kernel side: read");
				return 12;
			}
			if (r == 0)
				eof = true;
			if (r > 0) {
				if (recvd + (uint64_t)r > rx_total || !pat_check(rx_seed, recvd, buf, (size_t)r))
					return 13;
				recvd += (uint64_t)r;
			}
		}
	}
	if (recvd != rx_total) {
		fprintf(stderr, "kernel side: EOF after %" PRIu64 "/%" PRIu64 " bytes\n", recvd, rx_total);
		return 14;
	}
	return 0;
}

struct tcp_peer {
	uint32_t ip;
	uint16_t port;
	uint32_t tx_seed, rx_seed;
	uint64_t tx_total, rx_total;
	int ready_fd; /* server: written once listening */
};

static int kernel_client(void *arg)
{
	struct tcp_peer *t = arg;
	struct sockaddr_in sin = { .sin_family = AF_INET, .sin_port = htons(t->port),
				   .sin_addr.s_addr = htonl(t->ip) };
	int fd = socket(AF_INET, SOCK_STREAM, 0);

	if (fd < 0 || connect(fd, (struct sockaddr *)&sin, sizeof(sin)) < 0) {
		perror("kernel client: connect");
		return 20;
	}
	return kernel_duplex(fd, t->tx_seed, t->tx_total, t->rx_seed, t->rx_total);
}

static int kernel_server(void *arg)
{
	struct tcp_peer *t = arg;
	struct sockaddr_in sin = { .sin_family = AF_INET, .sin_port = htons(t->port),
				   .sin_addr.s_addr = htonl(t->ip) };
	int one = 1, lfd = socket(AF_INET, SOCK_STREAM, 0), fd;

	setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (lfd < 0 || bind(lfd, (struct sockaddr *)&sin, sizeof(sin)) < 0 || listen(lfd, 4) < 0) {
		perror("kernel server: listen");
		return 30;
	}
	if (write(t->ready_fd, "r", 1) != 1)
		return 31;
	fd = accept(lfd, NULL, NULL);
	if (fd < 0) {
		perror("kernel server: accept");
		return 32;
	}
	return kernel_duplex(fd, t->tx_seed, t->tx_total, t->rx_seed, t->rx_total);
}

/* ICMP echo with a raw socket, for hosts without ping(8): three requests,
 * every reply must come back within a second. */
static uint16_t icmp_sum(const void *data, size_t len)
{
	const uint8_t *p = data;
	uint32_t s = 0;

	for (size_t i = 0; i + 1 < len; i += 2)
		s += (uint32_t)(p[i] << 8 | p[i + 1]);
	if (len & 1)
		s += (uint32_t)p[len - 1] << 8;
	while (s >> 16)
		s = (s & 0xffff) + (s >> 16);
	return (uint16_t)~s;
}

static int raw_ping(void *arg)
{
	uint32_t dst = *(uint32_t *)arg;
	struct sockaddr_in sin = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(dst) };
	int fd = socket(AF_INET, SOCK_RAW, IPPROTO_ICMP), got = 0;

	if (fd < 0)
		return 40;
	for (int seq = 1; seq <= 3; seq++) {
		uint8_t req[64] = { ICMP_ECHO, 0 }, rep[256];
		xt_time_t end;
		uint16_t sum;

		req[4] = 0x12; req[5] = 0x34; /* id */
		req[7] = (uint8_t)seq;
		memset(req + 8, 0xa5, sizeof(req) - 8);
		sum = icmp_sum(req, sizeof(req));
		req[2] = (uint8_t)(sum >> 8); req[3] = (uint8_t)sum;
		if (sendto(fd, req, sizeof(req), 0, (struct sockaddr *)&sin, sizeof(sin)) < 0)
			return 41;
		end = mono() + XT_SEC(1);
		while (mono() < end) {
			struct pollfd p = { fd, POLLIN, 0 };
			ssize_t n;

			if (poll(&p, 1, 100) <= 0)
				continue;
			n = recv(fd, rep, sizeof(rep), 0);
			if (n >= 20 + 8 && rep[20] == ICMP_ECHOREPLY && rep[24] == 0x12 && rep[25] == 0x34 &&
			    rep[27] == seq && icmp_sum(rep + 20, (size_t)n - 20) == 0) {
				got++;
				break;
			}
		}
	}
	return got == 3 ? 0 : 42;
}

/* --- the engine on the backend ------------------------------------------- */

struct eng {
	struct xt_stack *st;
	struct xt_nic *nic;
	xt_time_t now;
	int tunfd;        /* tun reflector (test_tun), else -1 */
	int childfd;      /* pidfd of the kernel-side child: wakes on its exit, or -1 */
	uint64_t reflected;
	uint64_t unholds; /* arm_wake said -EAGAIN: kept frames given back before sleeping */
};

static int wake_fd(struct xt_nic *nic) { return nic->ops->wake_fd(nic); }

static int eng_tx(void *ctx, const struct xt_frame *f, int n)
{
	struct eng *e = ctx;
	return xt_nic_tx(e->nic, f, n, e->now);
}

static void eng_rx_hold(void *ctx, uint64_t ref) { xt_nic_rx_hold(((struct eng *)ctx)->nic, ref); }
static void eng_rx_release(void *ctx, uint64_t ref) { xt_nic_rx_release(((struct eng *)ctx)->nic, ref); }

static int open_no_big; /* the next eng_open: cfg.no_big_ring and no_tso */
static const uint8_t *open_mac; /* the next eng_open: the engine's own MAC (cfg.have_mac) */

static void eng_open(struct eng *e, const char *ifname, uint32_t ip, int tx_mode)
{
	struct xt_packet_cfg pc = { .ifname = ifname, .ip = ip, .tx_mode = tx_mode, .no_big_ring = open_no_big,
				    .no_tso = open_no_big };
	struct xt_stack_cfg cfg;
	int r;

	memset(e, 0, sizeof(*e));
	e->tunfd = -1;
	e->childfd = -1;
	if (open_mac) {
		pc.have_mac = 1;
		memcpy(pc.mac, open_mac, 6);
	}
	r = xt_packet_open(&pc, &e->nic);
	if (r < 0)
		fail_msg("xt_packet_open(%s): %s: %s", ifname, strerror(-r), xt_packet_error());
	xt_stack_cfg_defaults(&cfg);
	memcpy(cfg.mac, open_mac ? open_mac : e->nic->caps.mac, 6);
	cfg.ip = ip;
	cfg.netmask = NETMASK;
	cfg.mtu = e->nic->caps.mtu;
	cfg.no_link_header = e->nic->caps.no_link_header;
	cfg.tso_max = e->nic->caps.tso_max;
	cfg.tx_csum_offload = e->nic->caps.tx_csum;
	cfg.tx_gather = e->nic->caps.tx_gather;
	cfg.rx_hold_window = e->nic->caps.rx_hold_window;
	cfg.rx_hold = eng_rx_hold;
	cfg.rx_release = eng_rx_release;
	cfg.rx_ctx = e;
	cfg.max_sockets = 64;
	cfg.secret[0] = 0x0123456789abcdefull ^ (uint64_t)getpid();
	cfg.secret[1] = (uint64_t)mono();
	cfg.tx = eng_tx;
	cfg.tx_ctx = e;
	e->now = mono();
	e->st = xt_stack_new(&cfg, e->now);
	assert_non_null(e->st);
}

static void eng_close(struct eng *e)
{
	if (e->st)
		xt_stack_free(e->st);
	if (e->nic)
		xt_nic_close(e->nic);
	e->st = NULL;
	e->nic = NULL;
}

/* Delivers every received frame, runs due timers. */
static void eng_pump(struct eng *e)
{
	struct xt_frame f[RX_BURST];
	int n;

	e->now = mono();
	do {
		n = xt_nic_rx(e->nic, f, RX_BURST, e->now);
		assert_true(n >= 0);
		for (int i = 0; i < n; i++)
			xt_stack_input_frame(e->st, &f[i], e->now);
	} while (n == RX_BURST);
	xt_stack_flush(e->st);
	xt_stack_poll(e->st, e->now);
}

/* The tun's other end: every packet the kernel (or the engine) sends into
 * the tun comes back out of it as received, as if a VPN peer had bounced it. */
static void reflect(struct eng *e)
{
	uint8_t buf[65536];
	ssize_t n;

	while ((n = read(e->tunfd, buf, sizeof(buf))) > 0) {
		if (write(e->tunfd, buf, (size_t)n) == n)
			e->reflected++;
	}
}

/* Sleeps until a frame arrives, the engine's next deadline, or max_ms. */
static void eng_wait(struct eng *e, int max_ms)
{
	xt_time_t dl = xt_stack_next_deadline(e->st), now = mono();
	struct pollfd p[3] = { { wake_fd(e->nic), POLLIN, 0 }, { e->childfd, POLLIN, 0 }, { e->tunfd, POLLIN, 0 } };
	int ms = max_ms;

	if (dl <= now)
		ms = 0;
	else if (dl != XT_TIME_NEVER && (dl - now + 999999u) / 1000000u < (xt_time_t)max_ms)
		ms = (int)((dl - now + 999999u) / 1000000u);
	int r = e->nic->ops->arm_wake(e->nic);
	if (r == -EAGAIN) { /* a kept frame holds the wake fd readable: as the shim does */
		e->unholds++;
		xt_stack_rx_unhold_all(e->st);
		r = e->nic->ops->arm_wake(e->nic);
	}
	assert_int_equal(r, 0);
	poll(p, 3, ms); /* negative fds are ignored */
	if (e->tunfd >= 0)
		reflect(e);
}

/* The engine's side of a transfer on one connection: echo (send back what
 * arrives) or duplex (send tx_total of tx_seed, expect rx_total of rx_seed). */
struct conn {
	int sock;
	bool echo;
	uint32_t tx_seed, rx_seed;
	uint64_t tx_total, rx_total;
	uint64_t sent, recvd;
	bool eof, shut, bad;
	uint8_t buf[65536];
	uint32_t pend_off, pend_len; /* echo: bytes received, not yet sent back */
};

static void conn_echo(struct eng *e, struct conn *c)
{
	for (;;) {
		long r;

		if (c->pend_off == c->pend_len && !c->eof) {
			r = xt_tcp_recv(e->st, c->sock, c->buf, sizeof(c->buf), 0, e->now);
			if (r == -EAGAIN)
				break;
			if (r < 0) {
				fprintf(stderr, "engine recv: %s\n", strerror((int)-r));
				c->bad = true;
				return;
			}
			if (r == 0) {
				c->eof = true;
				break;
			}
			c->recvd += (uint64_t)r;
			c->pend_off = 0;
			c->pend_len = (uint32_t)r;
		}
		if (c->pend_off == c->pend_len)
			break;
		r = xt_tcp_send(e->st, c->sock, c->buf + c->pend_off, c->pend_len - c->pend_off, 0, e->now);
		if (r == -EAGAIN)
			break;
		if (r <= 0) {
			fprintf(stderr, "engine send: %s\n", strerror((int)-r));
			c->bad = true;
			return;
		}
		c->pend_off += (uint32_t)r;
		c->sent += (uint64_t)r;
	}
	if (c->eof && c->pend_off == c->pend_len && !c->shut) {
		xt_tcp_shutdown(e->st, c->sock, XT_SHUT_WR, e->now);
		c->shut = true;
	}
}

static void conn_duplex(struct eng *e, struct conn *c)
{
	while (c->sent < c->tx_total) {
		uint8_t chunk[16384];
		size_t n = c->tx_total - c->sent < sizeof(chunk) ? (size_t)(c->tx_total - c->sent) : sizeof(chunk);
		long r;

		pat_fill(c->tx_seed, c->sent, chunk, n);
		r = xt_tcp_send(e->st, c->sock, chunk, n, 0, e->now);
		if (r == -EAGAIN)
			break;
		if (r <= 0) {
			fprintf(stderr, "engine send: %s\n", strerror((int)-r));
			c->bad = true;
			return;
		}
		c->sent += (uint64_t)r;
	}
	if (c->sent == c->tx_total && !c->shut) {
		xt_tcp_shutdown(e->st, c->sock, XT_SHUT_WR, e->now);
		c->shut = true;
	}
	while (!c->eof) {
		long r = xt_tcp_recv(e->st, c->sock, c->buf, sizeof(c->buf), 0, e->now);

		if (r == -EAGAIN)
			break;
		if (r < 0) {
			fprintf(stderr, "engine recv: %s\n", strerror((int)-r));
			c->bad = true;
			return;
		}
		if (r == 0) {
			c->eof = true;
			break;
		}
		if (c->recvd + (uint64_t)r > c->rx_total || !pat_check(c->rx_seed, c->recvd, c->buf, (size_t)r)) {
			c->bad = true;
			return;
		}
		c->recvd += (uint64_t)r;
	}
}

static void print_counters(const char *what, struct eng *e)
{
	const struct xt_counters *c = xt_stack_counters(e->st);
	const uint64_t *v = (const uint64_t *)c;
	struct xt_packet_stats ps;

	fprintf(stderr, "%s: engine counters:", what);
	for (int i = 0; xt_counter_names[i]; i++)
		if (v[i])
			fprintf(stderr, " %s=%" PRIu64, xt_counter_names[i], v[i]);
	if (xt_packet_stats(e->nic, &ps) == 0)
		fprintf(stderr,
			"\n%s: packet: rx %" PRIu64 " tx %" PRIu64 " drops %" PRIu64 " csum_offloaded %" PRIu64
			" copied %" PRIu64 " truncated %" PRIu64 " tx_full %" PRIu64
			" tx_errors %" PRIu64,
			what, ps.rx_frames, ps.tx_frames, ps.rx_drops, ps.rx_csum_offloaded,
			ps.rx_copied, ps.rx_truncated, ps.tx_full, ps.tx_errors);
	fputc('\n', stderr);
}

/* Runs the engine's side of one passive (listen) or active (connect)
 * connection against a kernel child until both are done. */
static void run_conn(struct eng *e, struct conn *c, int lsock, pid_t child, const char *what)
{
	xt_time_t start = mono(), end = start + XT_MS(CASE_TIMEOUT_MS);
	int child_rc = -1;
	bool closed = false;

	e->childfd = (int)syscall(SYS_pidfd_open, child, 0);

	while (mono() < end) {
		eng_pump(e);
		if (c->sock < 0 && lsock >= 0) {
			int s = xt_tcp_accept(e->st, lsock, NULL, NULL);
			if (s >= 0)
				c->sock = s;
		}
		if (c->sock >= 0 && !c->bad && !closed) {
			if (c->echo)
				conn_echo(e, c);
			else if (xt_tcp_state(e->st, c->sock) != XT_SYN_SENT)
				conn_duplex(e, c);
			if (c->eof && c->shut) {
				xt_tcp_close(e->st, c->sock, e->now);
				closed = true;
			}
		}
		if (child_rc < 0)
			child_rc = reap(child);
		if ((child_rc >= 0 && closed) || c->bad)
			break;
		if (child_rc >= 0 && child_rc != 0)
			break;
		eng_wait(e, STEP_MS);
	}
	if (child_rc < 0)
		child_rc = reap_wait(child, 2000);
	if (e->childfd >= 0)
		close(e->childfd);
	e->childfd = -1;
	fprintf(stderr, "%s: %.1f ms, engine sent %" PRIu64 " recvd %" PRIu64 ", kernel side exit %d\n", what,
		(double)(mono() - start) / 1e6, c->sent, c->recvd, child_rc);
	if (child_rc != 0 || c->bad || !closed)
		print_counters(what, e);
	assert_int_equal(child_rc, 0);
	assert_false(c->bad);
	assert_true(closed);
}

/* --- cases ----------------------------------------------------------------- */

static struct eng veth_eng; /* shared by the veth cases, in order */

static int veth_setup(void **state)
{
	(void)state;
	if (env.ok && !veth_eng.st)
		eng_open(&veth_eng, "xtpk0", IP_ENGINE, XT_PACKET_TX_SENDMMSG);
	return 0;
}

static void test_open_errors(void **state)
{
	struct xt_packet_cfg pc = { .ifname = "xtpk-none", .ip = IP_ENGINE };
	struct xt_nic *nic = NULL;
	pid_t pid;

	(void)state;
	if (!env.ok && geteuid() != 0) {
		/* What an unprivileged caller gets. */
		assert_int_equal(xt_packet_open(&pc, &nic), -EPERM);
		assert_non_null(strstr(xt_packet_error(), "CAP_NET_RAW"));
		fprintf(stderr, "EPERM: %s (not root: the other cases skip)\n", xt_packet_error());
		return;
	}
	NEED_ENV();
	assert_int_equal(xt_packet_open(&pc, &nic), -ENODEV);
	assert_non_null(strstr(xt_packet_error(), "xtpk-none"));
	fprintf(stderr, "ENODEV: %s\n", xt_packet_error());

	pc.ifname = "lo";
	assert_int_equal(xt_packet_open(&pc, &nic), -EPROTONOSUPPORT);
	fprintf(stderr, "EPROTONOSUPPORT: %s\n", xt_packet_error());

	pc.ifname = "xtpk0";
	pc.ip = 0;
	assert_int_equal(xt_packet_open(&pc, &nic), -EINVAL);
	pc.ip = IP_ENGINE;
	pc.tx_mode = 7;
	assert_int_equal(xt_packet_open(&pc, &nic), -EINVAL);
	pc.tx_mode = 0;

	/* A link that is down: the veth's peer end inside ns A. */
	assert_int_equal(system("ip link add xtpkdn0 type veth peer name xtpkdn1"), 0);
	pc.ifname = "xtpkdn0";
	assert_int_equal(xt_packet_open(&pc, &nic), -ENETDOWN);
	assert_non_null(strstr(xt_packet_error(), "down"));
	fprintf(stderr, "ENETDOWN: %s\n", xt_packet_error());
	assert_int_equal(system("ip link del xtpkdn0"), 0);

	/* Without CAP_NET_RAW (dropped from the effective set in a child). */
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		struct __user_cap_header_struct h = { _LINUX_CAPABILITY_VERSION_3, 0 };
		struct __user_cap_data_struct d[2];
		int r;

		alarm(CHILD_ALARM_S);
		if (syscall(SYS_capget, &h, d) < 0)
			_exit(2);
		d[CAP_NET_RAW / 32].effective &= ~(1u << (CAP_NET_RAW % 32));
		if (syscall(SYS_capset, &h, d) < 0)
			_exit(3);
		pc.ifname = "xtpk0";
		r = xt_packet_open(&pc, &nic);
		fprintf(stderr, "EPERM: %s\n", xt_packet_error());
		_exit(r == -EPERM && strstr(xt_packet_error(), "CAP_NET_RAW") ? 0 : 4);
	}
	assert_int_equal(reap_wait(pid, 5000), 0);
}

static void test_caps(void **state)
{
	(void)state;
	NEED_ENV();
	assert_non_null(veth_eng.nic);
	assert_string_equal(veth_eng.nic->ops->name, "packet");
	assert_int_equal(veth_eng.nic->caps.mtu, 1500);
	assert_int_equal(veth_eng.nic->caps.no_link_header, 0);
	assert_true(veth_eng.nic->caps.mac[0] | veth_eng.nic->caps.mac[1] | veth_eng.nic->caps.mac[5]);
	assert_true(wake_fd(veth_eng.nic) >= 0);
	assert_true(xt_nic_deadline(veth_eng.nic) == XT_TIME_NEVER);
}

/* The interface goes down under the backend: arm_wake reports ENETDOWN
 * once; when it comes back up the socket receives again (test_ping next
 * proves it). */
static void test_link_flap(void **state)
{
	struct eng *e = &veth_eng;

	(void)state;
	NEED_VETH();
	assert_int_equal(e->nic->ops->arm_wake(e->nic), 0);
	assert_int_equal(system("ip link set xtpk0 down"), 0);
	assert_int_equal(e->nic->ops->arm_wake(e->nic), -ENETDOWN);
	assert_int_equal(e->nic->ops->arm_wake(e->nic), 0);
	assert_int_equal(system("ip link set xtpk0 up"), 0);
	eng_pump(e);
}

static bool have_ping(void)
{
	return access("/bin/ping", X_OK) == 0 || access("/usr/bin/ping", X_OK) == 0;
}

static int exec_ping(void *arg)
{
	(void)arg;
	execlp("ping", "ping", "-q", "-c", "3", "-i", "0.2", "-W", "1", "10.77.0.3", (char *)NULL);
	return 127;
}

/* Runs the engine until child pid exits (woken by its pidfd), within
 * CASE_TIMEOUT_MS: its exit code, as reap_wait gives it. */
static int pump_until_exit(struct eng *e, pid_t pid)
{
	xt_time_t end = mono() + XT_MS(CASE_TIMEOUT_MS);
	int rc = -1;

	e->childfd = (int)syscall(SYS_pidfd_open, pid, 0);
	while (mono() < end && (rc = reap(pid)) < 0) {
		eng_pump(e);
		eng_wait(e, STEP_MS);
	}
	if (rc < 0)
		rc = reap_wait(pid, 100);
	if (e->childfd >= 0)
		close(e->childfd);
	e->childfd = -1;
	return rc;
}

/* ping(8) (or a raw ICMP socket) from ns B to the engine: its exit code. */
static int ping_engine(struct eng *e)
{
	uint32_t dst = IP_ENGINE;
	bool ping = have_ping();
	pid_t pid = spawn('b', ping ? exec_ping : raw_ping, &dst);

	assert_true(pid > 0);
	int rc = pump_until_exit(e, pid);
	fprintf(stderr, "ping via %s: exit %d, echo replies %" PRIu64 ", ARP replies %" PRIu64 "\n",
		ping ? "ping(8)" : "a raw ICMP socket", rc, xt_stack_counters(e->st)->icmp_tx_echo_reply,
		xt_stack_counters(e->st)->arp_tx_reply);
	return rc;
}

static void test_ping(void **state)
{
	struct eng *e = &veth_eng;

	(void)state;
	NEED_VETH();
	assert_int_equal(ping_engine(e), 0);
	assert_true(xt_stack_counters(e->st)->icmp_tx_echo_reply >= 3);
	assert_true(xt_stack_counters(e->st)->arp_tx_reply >= 1);
}

/* Kernel client in ns B -> engine listener: 1 MiB out, echoed back. */
/* Engine e listens; a kernel client in ns B sends ECHO_BYTES (pattern seed)
 * and reads them back, every byte checked on both sides. */
static void passive_echo(struct eng *e, uint8_t seed, const char *what)
{
	struct tcp_peer peer = { .ip = IP_ENGINE, .port = PORT_ECHO, .tx_seed = seed, .rx_seed = seed,
				 .tx_total = ECHO_BYTES, .rx_total = ECHO_BYTES };
	static struct conn c;
	int ls;
	pid_t pid;
	xt_time_t t0;

	memset(&c, 0, sizeof(c));
	c.sock = -1;
	c.echo = true;
	ls = xt_tcp_open(e->st);
	assert_true(ls >= 0);
	assert_int_equal(xt_tcp_bind(e->st, ls, IP_ENGINE, PORT_ECHO), 0);
	assert_int_equal(xt_tcp_listen(e->st, ls, 16), 0);
	t0 = mono();
	pid = spawn('b', kernel_client, &peer);
	run_conn(e, &c, ls, pid, what);
	fprintf(stderr, "%s: %u KiB each way in %.1f ms (%.0f Mbit/s each way, with process start-up)\n", what,
		ECHO_BYTES / 1024, (double)(mono() - t0) / 1e6,
		ECHO_BYTES * 8.0 / ((double)(mono() - t0) / 1e9) / 1e6);
	assert_int_equal(c.recvd, ECHO_BYTES);
	assert_int_equal(c.sent, ECHO_BYTES);
	xt_tcp_close(e->st, ls, e->now);
}

static void test_tcp_passive_echo(void **state)
{
	(void)state;
	NEED_VETH();
	passive_echo(&veth_eng, 11, "passive echo");
}

struct try_arg {
	uint32_t ip;
	uint16_t port;
};

/* Child: a connect() to ip:port that gives up after 500 ms.  Exit 0: it did
 * not connect; 1: it did; 2: error. */
static int try_connect(void *arg)
{
	const struct try_arg *t = arg;
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons(t->port), .sin_addr.s_addr = htonl(t->ip) };
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
	if (fd < 0)
		return 2;
	if (connect(fd, (struct sockaddr *)&a, sizeof(a)) == 0)
		return 1;
	if (errno != EINPROGRESS)
		return 2;
	struct pollfd p = { .fd = fd, .events = POLLOUT };
	int r = poll(&p, 1, 500);
	int err = 0;
	socklen_t l = sizeof(err);
	getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &l);
	return r > 0 && !err ? 1 : r == 0 ? 0 : 2;
}

/* With TCP off (xt_packet_set_tcp), a connect() from ns `which` to a
 * listener on ip:port: the child's exit code (0: it did not connect) and
 * the SYNs that reached the listener.  TCP is on again at return. */
static void tcp_off_try(struct eng *e, char which, uint32_t ip, uint16_t port, int *rc_out, uint64_t *syns_out)
{
	struct try_arg t = { ip, port };
	int ls = xt_tcp_open(e->st);
	bool setup = ls >= 0 && xt_tcp_bind(e->st, ls, ip, port) == 0 && xt_tcp_listen(e->st, ls, 4) == 0;
	uint64_t opens = xt_stack_counters(e->st)->tcp_passive_opens;
	pid_t pid = setup ? spawn(which, try_connect, &t) : -1;
	int rc = pid > 0 ? pump_until_exit(e, pid) : -1;
	if (ls >= 0)
		xt_tcp_close(e->st, ls, e->now);
	*rc_out = setup ? rc : -2;
	*syns_out = xt_stack_counters(e->st)->tcp_passive_opens - opens;
	fprintf(stderr, "TCP off: connect %s, SYNs that reached the listener %" PRIu64 "\n",
		rc == 0 ? "did not complete" : rc == 1 ? "completed" : "failed", *syns_out);
}

/* xt_packet_set_tcp: with TCP off the sockets take in no TCP (a SYN to a
 * listener never reaches the engine), while ARP and ICMP still come; on
 * again, a connection works. */
static void test_tcp_off(void **state)
{
	struct eng *e = &veth_eng;
	struct xt_packet_stats ps;

	(void)state;
	NEED_VETH();
	assert_int_equal(xt_packet_stats(e->nic, &ps), 0);
	uint64_t sw = ps.tcp_switches;
	assert_true(xt_packet_tcp_on(e->nic));
	assert_int_equal(xt_packet_set_tcp(e->nic, false), 0);
	assert_false(xt_packet_tcp_on(e->nic));
	assert_int_equal(xt_packet_set_tcp(e->nic, false), 0); /* no change */

	/* Assertions only once TCP is on again: the later cases share the
	 * engine.  A segment of an earlier case's connection (its last ACK)
	 * may still have been on its way when TCP went off: what counts is
	 * that no SYN reached the listener. */
	int rc;
	uint64_t syns;
	tcp_off_try(e, 'b', IP_ENGINE, PORT_ECHO + 1, &rc, &syns);
	int ping_rc = ping_engine(e); /* ARP and ICMP still come */
	int on_rc = xt_packet_set_tcp(e->nic, true);
	assert_int_equal(rc, 0);
	assert_int_equal(syns, 0);
	assert_int_equal(ping_rc, 0);
	assert_int_equal(on_rc, 0);
	assert_true(xt_packet_tcp_on(e->nic));
	passive_echo(e, 13, "TCP on again");
	assert_int_equal(xt_packet_stats(e->nic, &ps), 0);
	assert_int_equal(ps.tcp_switches, sw + 2);
	assert_int_equal(xt_packet_set_tcp(NULL, true), -EINVAL);
}

/* Engine connects out to a kernel server in ns B; both send at once. */
static void test_tcp_active(void **state)
{
	struct eng *e = &veth_eng;
	int pipefd[2];
	struct tcp_peer peer = { .ip = IP_PEER, .port = PORT_PEER, .tx_seed = 22, .rx_seed = 33,
				 .tx_total = ACTIVE_BYTES, .rx_total = ACTIVE_BYTES };
	static struct conn c;
	struct pollfd p;
	char ch;
	pid_t pid;
	int r;

	(void)state;
	NEED_VETH();
	assert_int_equal(pipe(pipefd), 0);
	peer.ready_fd = pipefd[1];
	pid = spawn('b', kernel_server, &peer);
	close(pipefd[1]);
	p = (struct pollfd){ pipefd[0], POLLIN, 0 };
	assert_int_equal(poll(&p, 1, 5000), 1);
	assert_int_equal(read(pipefd[0], &ch, 1), 1);
	close(pipefd[0]);

	memset(&c, 0, sizeof(c));
	c.tx_seed = 33;
	c.rx_seed = 22;
	c.tx_total = c.rx_total = ACTIVE_BYTES;
	c.sock = xt_tcp_open(e->st);
	assert_true(c.sock >= 0);
	e->now = mono();
	r = xt_tcp_connect(e->st, c.sock, IP_PEER, PORT_PEER, e->now);
	assert_true(r == -EINPROGRESS || r == 0);
	run_conn(e, &c, -1, pid, "active");
	assert_int_equal(c.sent, ACTIVE_BYTES);
	assert_int_equal(c.recvd, ACTIVE_BYTES);
}

/* Kernel client in ns B: LAT_ROUNDS blocking 64-byte request/response
 * rounds; reports the round-trip times' median and 99th percentile (ns). */
struct lat_arg {
	int report_fd;
};

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return x < y ? -1 : x > y;
}

static int kernel_pingpong(void *arg)
{
	struct lat_arg *a = arg;
	struct sockaddr_in sin = { .sin_family = AF_INET, .sin_port = htons(PORT_LAT),
				   .sin_addr.s_addr = htonl(IP_ENGINE) };
	static uint64_t rtt[LAT_ROUNDS];
	uint8_t buf[64] = { 0 };
	char line[64];
	int one = 1, fd = socket(AF_INET, SOCK_STREAM, 0);

	if (fd < 0 || connect(fd, (struct sockaddr *)&sin, sizeof(sin)) < 0)
		return 60;
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	for (int i = 0; i < LAT_ROUNDS; i++) {
		xt_time_t t0 = mono();
		size_t got = 0;

		buf[0] = (uint8_t)i;
		if (write(fd, buf, sizeof(buf)) != (ssize_t)sizeof(buf))
			return 61;
		while (got < sizeof(buf)) {
			ssize_t r = read(fd, buf + got, sizeof(buf) - got);
			if (r <= 0)
				return 62;
			got += (size_t)r;
		}
		if (buf[0] != (uint8_t)i)
			return 63;
		rtt[i] = mono() - t0;
	}
	close(fd);
	qsort(rtt, LAT_ROUNDS, sizeof(rtt[0]), cmp_u64);
	snprintf(line, sizeof(line), "%" PRIu64 " %" PRIu64 "\n", rtt[LAT_ROUNDS / 2], rtt[LAT_ROUNDS * 99 / 100]);
	return write(a->report_fd, line, strlen(line)) > 0 ? 0 : 64;
}

/* 64-byte TCP ping-pong, kernel client against the engine busy-polling the
 * backend (no sleeping on our side): a figure, not an assertion. */
static void test_latency(void **state)
{
	struct eng *e = &veth_eng;
	static struct conn c;
	struct lat_arg la;
	int ls, rep[2], rc = -1;
	uint64_t p50 = 0, p99 = 0;
	char line[64] = { 0 };
	xt_time_t end;
	pid_t pid;

	(void)state;
	NEED_VETH();
	memset(&c, 0, sizeof(c));
	c.sock = -1;
	c.echo = true;
	ls = xt_tcp_open(e->st);
	assert_int_equal(xt_tcp_bind(e->st, ls, IP_ENGINE, PORT_LAT), 0);
	assert_int_equal(xt_tcp_listen(e->st, ls, 4), 0);
	assert_int_equal(pipe(rep), 0);
	la.report_fd = rep[1];
	pid = spawn('b', kernel_pingpong, &la);
	close(rep[1]);
	end = mono() + XT_MS(CASE_TIMEOUT_MS);
	while (mono() < end && (rc = reap(pid)) < 0) {
		eng_pump(e);
		if (c.sock < 0)
			c.sock = xt_tcp_accept(e->st, ls, NULL, NULL);
		if (c.sock >= 0 && !c.bad)
			conn_echo(e, &c);
	}
	if (rc < 0)
		rc = reap_wait(pid, 100);
	assert_int_equal(rc, 0);
	assert_true(read(rep[0], line, sizeof(line) - 1) > 0);
	close(rep[0]);
	assert_int_equal(sscanf(line, "%" SCNu64 " %" SCNu64, &p50, &p99), 2);
	fprintf(stderr, "latency: 64 B TCP ping-pong, kernel client (blocking) <-> engine (busy-polling): "
		"RTT p50 %.1f us, p99 %.1f us (half RTT p50 %.1f us)\n", p50 / 1e3, p99 / 1e3, p50 / 2e3);
	for (int i = 0; i < 50; i++) { /* let the FIN exchange finish */
		eng_pump(e);
		conn_echo(e, &c);
		eng_wait(e, 1);
	}
	xt_tcp_close(e->st, c.sock, e->now);
	xt_tcp_close(e->st, ls, e->now);
}

/* The kernel's TCP over veth hands over CHECKSUM_PARTIAL packets; after the
 * cases above the backend must have completed some, and the engine must not
 * have dropped a single TCP segment for its checksum. */
static void test_csum_completion(void **state)
{
	struct eng *e = &veth_eng;
	struct xt_packet_stats ps;

	(void)state;
	NEED_VETH();
	assert_int_equal(xt_packet_stats(e->nic, &ps), 0);
	print_counters("after the veth cases", e);
	assert_int_equal(xt_stack_counters(e->st)->drop_tcp_csum, 0);
	assert_int_equal(xt_stack_counters(e->st)->drop_icmp_csum, 0);
	/* Linux keeps CHECKSUM_PARTIAL across a veth (5.x, 6.x); should a kernel
	 * not, the engine's own verification above is what counts. */
	if (ps.rx_csum_offloaded == 0)
		fprintf(stderr, "note: this kernel's veth delivered no TP_STATUS_CSUMNOTREADY frame\n");
	else
		fprintf(stderr, "%" PRIu64 " of %" PRIu64 " frames came with their checksum offloaded\n",
			ps.rx_csum_offloaded, ps.rx_frames);
	assert_true(ps.rx_frames > 0 && ps.tx_frames > 0);
	assert_int_equal(ps.rx_truncated, 0);
	assert_false(xt_packet_stats(NULL, &ps) == 0);
	eng_close(e);
}

/* Packet sockets of this process (by inode, from /proc/self/fd) with
 * protocol 0 (send-only) that /proc/net/packet shows on interface ifindex
 * (0: unbound). */
static int send_only_socks(int ifindex)
{
	unsigned long inodes[256];
	int ni = 0, n = 0;
	for (int fd = 0; fd < 1024 && ni < 256; fd++) {
		char path[64], link[64];
		snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
		ssize_t l = readlink(path, link, sizeof(link) - 1);
		if (l <= 0)
			continue;
		link[l] = 0;
		if (sscanf(link, "socket:[%lu]", &inodes[ni]) == 1)
			ni++;
	}
	FILE *f = fopen("/proc/net/packet", "r");
	assert_non_null(f);
	char line[256];
	while (fgets(line, sizeof(line), f)) {
		unsigned proto;
		int iface;
		unsigned long inode;
		if (sscanf(line, "%*s %*d %*d %x %d %*d %*u %*u %lu", &proto, &iface, &inode) != 3)
			continue;
		for (int i = 0; i < ni; i++)
			if (inodes[i] == inode && proto == 0 && iface == ifindex)
				n++;
	}
	fclose(f);
	return n;
}

/* GRO/TSO frames up to 64 KiB from the kernel's TCP over veth: with the
 * big-frame ring they arrive whole through it (markers in the main ring),
 * none through the copy path; without it (no_big_ring), through the copy
 * path.  The engine's own sends: TSO segments with a virtio_net_hdr, or
 * (no_tso) MSS-sized frames.  Either way 1 MiB each way is echoed byte for
 * byte. */
static void big_echo(bool big)
{
	struct eng e;
	struct xt_packet_stats ps;
	const char *what = big ? "big-frame ring" : "copy path";

	open_no_big = !big;
	eng_open(&e, "xtpk0", IP_ENGINE, XT_PACKET_TX_SENDMMSG);
	open_no_big = 0;
	passive_echo(&e, 44, what);
	assert_int_equal(xt_packet_stats(e.nic, &ps), 0);
	fprintf(stderr, "%s: rx %" PRIu64 " frames, %" PRIu64 " big, %" PRIu64 " copied, %" PRIu64
		" big lost, %" PRIu64 " truncated; tx %" PRIu64 " frames, %" PRIu64 " TSO, engine TSO segments %"
		PRIu64 "\n", what, ps.rx_frames, ps.rx_big, ps.rx_copied, ps.rx_big_lost, ps.rx_truncated,
		ps.tx_frames, ps.tx_gso, xt_stack_counters(e.st)->tcp_tso_segs);
	assert_int_equal(ps.rx_truncated, 0);
	assert_int_equal(ps.tx_oversize, 0);
	assert_int_equal(ps.tx_gso, xt_stack_counters(e.st)->tcp_tso_segs);
	/* every TCP frame through the offload socket, its checksum left to the
	 * kernel; payload straight from the send ring (no engine copy) */
	assert_int_equal(e.nic->caps.tx_csum, XT_TX_CSUM_PARTIAL);
	assert_true(e.nic->caps.tx_gather);
	/* the offload socket is bound to the device (its sends name no
	 * address, so the kernel looks up no device per frame) */
	assert_true(send_only_socks((int)if_nametoindex("xtpk0")) >= 1);
	assert_int_equal(send_only_socks(0), 0);
	assert_true(xt_stack_counters(e.st)->tcp_tx_gathered > 0);
	fprintf(stderr, "%s: %" PRIu64 " segments read in place (%" PRIu64 " from the main ring, %" PRIu64
		" from the big ring), %" PRIu64 " of them copied later (%" PRIu64 " before sleeping)\n", what,
		xt_stack_counters(e.st)->tcp_rx_held, ps.rx_kept_main, ps.rx_kept_big,
		xt_stack_counters(e.st)->tcp_rx_hold_copied, ps.wake_kept);
	if (big) {
		assert_true(e.nic->caps.rx_hold_window > 0);
		assert_true(xt_stack_counters(e.st)->tcp_rx_held > 0);
		assert_true(ps.rx_big > 0);
		assert_int_equal(ps.rx_copied, 0);
		assert_true(ps.tx_gso > 0);
	} else {
		assert_int_equal(ps.rx_big, 0);
		assert_true(ps.rx_copied > 0);
		assert_int_equal(ps.tx_gso, 0);
	}
	eng_close(&e);
}

static void test_big_frames(void **state)
{
	(void)state;
	NEED_ENV();
	big_echo(true);
	big_echo(false);
}

/* The first line of a command's output that contains key, or "". */
static void cmd_line(const char *cmd, const char *key, char *out, size_t len)
{
	FILE *f = popen(cmd, "r");
	char line[512];
	out[0] = '\0';
	assert_non_null(f);
	while (fgets(line, sizeof(line), f))
		if (!out[0] && strstr(line, key))
			snprintf(out, len, "%s", line);
	pclose(f);
}

static int promiscuity(const char *ifname)
{
	char cmd[128], line[512];
	snprintf(cmd, sizeof(cmd), "ip -d link show %s", ifname);
	cmd_line(cmd, "promiscuity", line, sizeof(line));
	const char *p = strstr(line, "promiscuity ");
	assert_non_null(p);
	return atoi(p + strlen("promiscuity "));
}

/* An engine with a MAC of its own (XTCP_MAC) on the interface: the
 * interface is asked to take frames for it (PACKET_MR_UNICAST: veth has no
 * unicast filter, so it goes promiscuous while the engine runs), the engine
 * answers ARP with it, the kernel peer sends to it, and the kernel of ns A
 * no longer takes the engine's frames for its own (they are for another
 * host: dropped before IP routing). */
static void test_own_mac(void **state)
{
	static const uint8_t mac[6] = { 0x02, 0x58, 0x0a, 0x4d, 0x00, 0x03 };
	char nsb[32], cmd[160], line[512];
	struct eng e;

	(void)state;
	NEED_ENV();
	int before = promiscuity("xtpk0");
	open_mac = mac;
	eng_open(&e, "xtpk0", IP_ENGINE, XT_PACKET_TX_SENDMMSG);
	open_mac = NULL;
	assert_int_equal(promiscuity("xtpk0"), before + 1);
	ns_name(nsb, sizeof(nsb), 'b');
	snprintf(cmd, sizeof(cmd), "ip -n %s neigh flush dev xtpk1", nsb);
	assert_int_equal(system(cmd), 0);
	passive_echo(&e, 44, "passive echo, own MAC");
	snprintf(cmd, sizeof(cmd), "ip -n %s neigh show 10.77.0.3", nsb);
	cmd_line(cmd, "10.77.0.3", line, sizeof(line));
	fprintf(stderr, "peer's neighbour entry: %s", line);
	assert_non_null(strstr(line, "02:58:0a:4d:00:03"));
	assert_int_equal(xt_stack_counters(e.st)->drop_eth_not_for_us, 0);
	eng_close(&e);
	assert_int_equal(promiscuity("xtpk0"), before);
}

/* ARPHRD_NONE: a tun in ns T.  AF_PACKET on a tun is the kernel's view of
 * the device: what it transmits on the tun goes to the tun fd's holder (the
 * VPN daemon), and what that holder writes is received on the tun.  Here
 * this process holds the fd and bounces every packet back, so the kernel's
 * TCP client (10.78.0.1) reaches the engine (10.78.0.3) through the tun and
 * the engine's answers come back the same way. */
static int open_tun(const char *name)
{
	struct ifreq ifr;
	int fd = open("/dev/net/tun", O_RDWR | O_NONBLOCK | O_CLOEXEC);

	if (fd < 0)
		return -errno;
	memset(&ifr, 0, sizeof(ifr));
	strncpy(ifr.ifr_name, name, IFNAMSIZ - 1);
	ifr.ifr_flags = IFF_TUN | IFF_NO_PI;
	if (ioctl(fd, TUNSETIFF, &ifr) < 0) {
		int err = errno;
		close(fd);
		return -err;
	}
	return fd;
}

static void tun_case(int tx_mode, const char *what)
{
	struct eng e;
	struct tcp_peer peer = { .ip = IP_TUN_ENGINE, .port = PORT_TUN, .tx_seed = 44, .rx_seed = 44,
				 .tx_total = TUN_BYTES, .rx_total = TUN_BYTES };
	static struct conn c;
	int ls, tunfd;
	pid_t pid;

	tunfd = open_tun("xtpktun0");
	if (tunfd < 0)
		fail_msg("attach to xtpktun0: %s", strerror(-tunfd));
	eng_open(&e, "xtpktun0", IP_TUN_ENGINE, tx_mode);
	e.tunfd = tunfd;
	assert_int_equal(e.nic->caps.no_link_header, 1);

	memset(&c, 0, sizeof(c));
	c.sock = -1;
	c.echo = true;
	ls = xt_tcp_open(e.st);
	assert_int_equal(xt_tcp_bind(e.st, ls, IP_TUN_ENGINE, PORT_TUN), 0);
	assert_int_equal(xt_tcp_listen(e.st, ls, 4), 0);
	pid = spawn('t', kernel_client, &peer);
	run_conn(&e, &c, ls, pid, what);
	fprintf(stderr, "%s: %" PRIu64 " packets bounced by the tun's holder\n", what, e.reflected);
	assert_int_equal(c.recvd, TUN_BYTES);
	assert_int_equal(xt_stack_counters(e.st)->drop_tcp_csum, 0);
	if (tx_mode == XT_PACKET_TX_SENDMMSG) {
		/* the filter's TCP block on a device without a link header */
		int rc;
		uint64_t syns;
		assert_int_equal(xt_packet_set_tcp(e.nic, false), 0);
		tcp_off_try(&e, 't', IP_TUN_ENGINE, PORT_TUN + 1, &rc, &syns);
		int on_rc = xt_packet_set_tcp(e.nic, true);
		assert_int_equal(rc, 0);
		assert_int_equal(syns, 0);
		assert_int_equal(on_rc, 0);
	}
	eng_close(&e);
	close(tunfd);
}

static void test_tun(void **state)
{
	(void)state;
	NEED_ENV();
	assert_int_equal(enter_ns('t'), 0);
	tun_case(XT_PACKET_TX_SENDMMSG, "tun echo, sendmmsg");
	tun_case(XT_PACKET_TX_RING, "tun echo, tx ring");
}

static int back_to_ns_a(void **state)
{
	(void)state;
	return env.ok ? enter_ns('a') : 0;
}

/* --- rates ---------------------------------------------------------------------- */

/* A 60-byte IPv4 frame to 10.77.0.9 behind a MAC nobody has: the kernel in
 * ns B drops it at once (PACKET_OTHERHOST), the backend there counts it. */
static void rate_frame(uint8_t *f, const uint8_t src_mac[6], uint32_t seq)
{
	static const uint8_t dst[6] = { 0x02, 0x00, 0x00, 0x00, 0x77, 0x09 };

	memset(f, 0, 60);
	memcpy(f, dst, 6);
	memcpy(f + 6, src_mac, 6);
	f[12] = 0x08;
	f[14] = 0x45;
	f[17] = 46;           /* total length */
	f[22] = 64;           /* TTL */
	f[23] = 253;          /* RFC 3692 experimental protocol */
	f[26] = 10; f[27] = 77; f[28] = 0; f[29] = 3;
	f[30] = 10; f[31] = 77; f[32] = 0; f[33] = 9;
	memcpy(f + 34, &seq, 4);
}

struct sink_arg {
	int report_fd;
	int ready_fd;
};

/* ns B: counts the frames that reach a backend on xtpk1, busy-polling from
 * the first frame until 300 ms of quiet. */
static int rate_sink(void *arg)
{
	struct sink_arg *a = arg;
	struct xt_packet_cfg pc = { .ifname = "xtpk1", .ip = IP_SINK, .rx_ring_frames = 8192 };
	struct xt_nic *nic;
	struct xt_frame f[RX_BURST];
	struct xt_packet_stats ps;
	uint64_t got = 0;
	xt_time_t first = 0, last = 0, start;
	char line[160];

	if (xt_packet_open(&pc, &nic) < 0) {
		fprintf(stderr, "sink: %s\n", xt_packet_error());
		return 50;
	}
	if (write(a->ready_fd, "r", 1) != 1)
		return 51;
	start = mono();
	for (;;) {
		int n = xt_nic_rx(nic, f, RX_BURST, 0);
		xt_time_t now = mono();
		struct pollfd p = { wake_fd(nic), POLLIN, 0 };

		if (n > 0) {
			if (!first)
				first = now;
			got += (uint64_t)n;
			last = now;
			continue;
		}
		if (first ? now - last > XT_MS(300) : now - start > XT_SEC(10))
			break;
		if (!first) { /* busy-poll once the traffic has started */
			nic->ops->arm_wake(nic);
			poll(&p, 1, 100);
		}
	}
	xt_packet_stats(nic, &ps);
	snprintf(line, sizeof(line), "%" PRIu64 " %" PRIu64 " %" PRIu64 "\n", got, last - first, ps.rx_drops);
	if (write(a->report_fd, line, strlen(line)) < 0)
		return 52;
	xt_nic_close(nic);
	return 0;
}

static void rate_run(int tx_mode, int bypass, const char *label)
{
	struct xt_packet_cfg pc = { .ifname = "xtpk0", .ip = IP_ENGINE, .tx_mode = tx_mode,
				    .qdisc_bypass = bypass };
	struct xt_packet_stats ps;
	struct xt_nic *nic;
	int rep[2], rdy[2];
	struct sink_arg sa;
	uint8_t frames[RX_BURST][60];
	struct xt_frame f[RX_BURST];
	uint64_t sent = 0, refused = 0, got = 0, span = 0, drops = 0;
	xt_time_t t0, t1;
	char line[160] = { 0 }, ch;
	struct pollfd p;
	pid_t pid;
	ssize_t n;

	assert_int_equal(xt_packet_open(&pc, &nic), 0);
	assert_int_equal(pipe(rep), 0);
	assert_int_equal(pipe(rdy), 0);
	sa.report_fd = rep[1];
	sa.ready_fd = rdy[1];
	pid = spawn('b', rate_sink, &sa);
	close(rep[1]);
	close(rdy[1]);
	p = (struct pollfd){ rdy[0], POLLIN, 0 };
	assert_int_equal(poll(&p, 1, 5000), 1);
	assert_int_equal(read(rdy[0], &ch, 1), 1);
	memset(f, 0, sizeof(f));
	for (int i = 0; i < RX_BURST; i++) {
		f[i].data = frames[i];
		f[i].len = 60;
	}
	t0 = mono();
	do {
		for (int i = 0; i < RX_BURST; i++)
			rate_frame(frames[i], nic->caps.mac, (uint32_t)(sent + (uint64_t)i));
		int r = xt_nic_tx(nic, f, RX_BURST, 0);
		assert_true(r >= 0);
		sent += (uint64_t)r;
		refused += (uint64_t)(RX_BURST - r);
		t1 = mono();
	} while (t1 - t0 < XT_MS(RATE_MS));
	assert_int_equal(reap_wait(pid, 5000), 0);
	n = read(rep[0], line, sizeof(line) - 1);
	assert_true(n > 0);
	assert_int_equal(sscanf(line, "%" SCNu64 " %" SCNu64 " %" SCNu64, &got, &span, &drops), 3);
	close(rep[0]);
	close(rdy[0]);
	assert_int_equal(xt_packet_stats(nic, &ps), 0);
	fprintf(stderr,
		"rate %-15s TX %.2f Mframes/s (%" PRIu64 " taken, %" PRIu64 " refused, %" PRIu64
		" send errors); RX %.2f Mframes/s (%" PRIu64 " received, %" PRIu64 " ring drops)\n",
		label, (double)sent / ((double)(t1 - t0) / 1e9) / 1e6, sent, refused, ps.tx_errors,
		span ? (double)got / ((double)span / 1e9) / 1e6 : 0.0, got, drops);
	xt_nic_close(nic);
	assert_true(got > 0);
}

struct burst_arg {
	uint8_t mac[6];
	uint32_t first, n;
};

/* ns B: n frames of 1000 bytes from xtpk1 to the backend on xtpk0 (its MAC,
 * IP_ENGINE), frame i carrying first + i and a pattern of it. */
static int frame_burst(void *arg)
{
	const struct burst_arg *a = arg;
	struct xt_packet_cfg pc = { .ifname = "xtpk1", .ip = IP_SINK };
	struct xt_nic *nic;
	uint8_t fr[1000];

	if (xt_packet_open(&pc, &nic) < 0)
		return 50;
	for (uint32_t i = 0; i < a->n; i++) {
		uint32_t seq = a->first + i;
		struct xt_frame f = { .data = fr, .len = sizeof(fr) };
		int tries = 0;

		memset(fr, 0, sizeof(fr));
		memcpy(fr, a->mac, 6);
		memcpy(fr + 6, nic->caps.mac, 6);
		fr[12] = 0x08;
		fr[14] = 0x45;
		fr[16] = (uint8_t)((sizeof(fr) - 14) >> 8);
		fr[17] = (uint8_t)(sizeof(fr) - 14);
		fr[22] = 64;
		fr[23] = 253; /* RFC 3692 experimental protocol */
		fr[26] = 10; fr[27] = 77; fr[28] = 0; fr[29] = 9;
		fr[30] = 10; fr[31] = 77; fr[32] = 0; fr[33] = 3;
		memcpy(fr + 34, &seq, 4);
		memset(fr + 38, (int)(seq & 0xff), sizeof(fr) - 38);
		while (xt_nic_tx(nic, &f, 1, 0) < 1)
			if (++tries > 1000)
				return 51;
	}
	xt_nic_close(nic);
	return 0;
}

static uint32_t burst_seq(const struct xt_frame *f)
{
	uint32_t seq;
	assert_int_equal(f->len, 1000);
	memcpy(&seq, f->data + 34, 4);
	for (uint32_t i = 38; i < f->len; i++)
		if (f->data[i] != (uint8_t)seq)
			fail_msg("frame %u: byte %u overwritten", seq, i);
	return seq;
}

static void burst(struct xt_nic *nic, uint32_t first, uint32_t n)
{
	struct burst_arg a = { .first = first, .n = n };
	memcpy(a.mac, nic->caps.mac, 6);
	assert_int_equal(reap_wait(spawn('b', frame_burst, &a), 5000), 0);
}

/* Frames of MTU size are read in place from the main ring too: a kept slot
 * stays the engine's across rx_bursts (and keeps its bytes); while the
 * newest frame is kept, arm_wake refuses (-EAGAIN: the wake fd would stay
 * readable and a sleeper would spin); and when the kernel comes round to a
 * kept slot, that frame is never delivered again: the ring waits (the
 * kernel drops what does not fit) until it is given back. */
static void test_main_ring_holds(void **state)
{
	struct xt_packet_cfg pc = { .ifname = "xtpk0", .ip = IP_ENGINE, .rx_ring_frames = 64 };
	struct xt_packet_stats ps;
	struct xt_frame f[RX_BURST];
	struct xt_nic *nic;

	(void)state;
	NEED_ENV();
	assert_int_equal(xt_packet_open(&pc, &nic), 0);
	assert_true(nic->caps.rx_hold_window > 0);
	burst(nic, 0, 3);
	assert_int_equal(xt_nic_rx(nic, f, RX_BURST, 0), 3);
	for (uint32_t i = 0; i < 3; i++) {
		assert_int_equal(burst_seq(&f[i]), i);
		assert_true(f[i].ref != 0);
	}
	struct xt_frame kept = f[0], newest = f[2];
	nic->ops->rx_hold(nic, kept.ref);
	nic->ops->rx_hold(nic, newest.ref);
	assert_int_equal(xt_nic_rx(nic, f, RX_BURST, 0), 0); /* the lent one goes back */
	assert_int_equal(nic->ops->arm_wake(nic), -EAGAIN);
	nic->ops->rx_release(nic, newest.ref);
	assert_int_equal(nic->ops->arm_wake(nic), 0);
	assert_int_equal(burst_seq(&kept), 0);

	/* 200 more into a 64-slot ring with slot 0 kept */
	burst(nic, 100, 200);
	uint32_t got = 0, n, last = 99;
	while ((n = (uint32_t)xt_nic_rx(nic, f, RX_BURST, 0)) > 0)
		for (uint32_t i = 0; i < n; i++, got++) {
			uint32_t seq = burst_seq(&f[i]);
			assert_true(seq > last); /* never frame 0 again, in order */
			last = seq;
		}
	assert_true(got > 0 && got < 64);
	assert_int_equal(burst_seq(&kept), 0); /* the kernel did not write into it */
	assert_int_equal(xt_packet_stats(nic, &ps), 0);
	assert_true(ps.rx_drops > 0);
	nic->ops->rx_release(nic, kept.ref);
	burst(nic, 1000, 5);
	assert_int_equal(xt_nic_rx(nic, f, RX_BURST, 0), 5);
	for (uint32_t i = 0; i < 5; i++)
		assert_int_equal(burst_seq(&f[i]), 1000 + i);
	assert_int_equal(xt_packet_stats(nic, &ps), 0);
	fprintf(stderr, "main-ring holds: %u frames behind a kept slot, %" PRIu64 " dropped by the kernel meanwhile\n",
		got, ps.rx_drops);
	assert_int_equal(ps.rx_kept_main, 2);
	assert_int_equal(ps.wake_kept, 1);
	xt_nic_close(nic);
}

static void test_rates(void **state)
{
	(void)state;
	NEED_ENV();
	rate_run(XT_PACKET_TX_RING, 0, "tx-ring");
	rate_run(XT_PACKET_TX_SENDMMSG, 0, "sendmmsg");
	rate_run(XT_PACKET_TX_RING, 1, "tx-ring+bypass");
	rate_run(XT_PACKET_TX_SENDMMSG, 1, "sendmmsg+bypass");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_open_errors),
		cmocka_unit_test_setup(test_caps, veth_setup),
		cmocka_unit_test(test_link_flap),
		cmocka_unit_test(test_ping),
		cmocka_unit_test(test_tcp_passive_echo),
		cmocka_unit_test(test_tcp_off),
		cmocka_unit_test(test_tcp_active),
		cmocka_unit_test(test_latency),
		cmocka_unit_test(test_csum_completion),
		cmocka_unit_test(test_big_frames),
		cmocka_unit_test(test_own_mac),
		cmocka_unit_test_teardown(test_tun, back_to_ns_a),
		cmocka_unit_test(test_main_ring_holds),
		cmocka_unit_test(test_rates),
	};

	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
