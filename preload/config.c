/* XTCP_* environment variables and the log.  Every variable is read once,
 * when the first AF_INET stream socket is created; a bad value gets one log
 * line and the whole process stays on the kernel (man/libxtcp.7). */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <ctype.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "shim.h"

struct xp_config xp_cfg;
int xp_log_level = XP_LOG_WARN;
static int log_fd = 2;

static const char *const level_names[] = { "error", "warn", "info", "debug" };

void xp_log(int level, const char *fmt, ...)
{
	if (level > xp_log_level) /* XP_LOG tests this first; direct calls too */
		return;
	char buf[512];
	int saved = errno;
	int n = 0;
	if (log_fd != 2) { /* XTCP_LOG_FILE: each line starts with the UTC time */
		struct timespec ts;
		struct tm tm;
		clock_gettime(CLOCK_REALTIME, &ts);
		gmtime_r(&ts.tv_sec, &tm);
		n = (int)strftime(buf, 32, "%Y-%m-%dT%H:%M:%S", &tm);
		n += snprintf(buf + n, sizeof(buf) - (size_t)n, ".%06ldZ ", ts.tv_nsec / 1000);
	}
	n += snprintf(buf + n, sizeof(buf) - (size_t)n, "xtcp[%d]: %s: ", (int)getpid(), level_names[level]);
	va_list ap;
	va_start(ap, fmt);
	int m = vsnprintf(buf + n, sizeof(buf) - (size_t)n - 1, fmt, ap);
	va_end(ap);
	if (m < 0)
		m = 0;
	n += m;
	if (n > (int)sizeof(buf) - 2)
		n = (int)sizeof(buf) - 2;
	buf[n++] = '\n';
	/* the raw call: neither our write() nor a cancellation point */
	(void)syscall(SYS_write, log_fd, buf, (size_t)n);
	errno = saved;
}

/* Parses a decimal with an optional k/m/g suffix (binary multiples). */
static int parse_u64(const char *s, uint64_t max, uint64_t *out)
{
	if (!s || !*s)
		return -1;
	char *end;
	errno = 0;
	unsigned long long v = strtoull(s, &end, 10);
	if (errno || end == s || *s == '-')
		return -1;
	uint64_t mul = 1;
	if (*end == 'k' || *end == 'K')
		mul = 1024, end++;
	else if (*end == 'm' || *end == 'M')
		mul = 1024 * 1024, end++;
	else if (*end == 'g' || *end == 'G')
		mul = 1024ull * 1024 * 1024, end++;
	if (*end || (mul > 1 && v > max / mul) || v * mul > max)
		return -1;
	*out = v * mul;
	return 0;
}

static int parse_ip(const char *s, uint32_t *ip)
{
	struct in_addr a;
	if (inet_pton(AF_INET, s, &a) != 1)
		return -1;
	*ip = ntohl(a.s_addr);
	return 0;
}

static int parse_mac(const char *s, uint8_t mac[6])
{
	unsigned v[6];
	char tail;
	if (sscanf(s, "%x:%x:%x:%x:%x:%x%c", &v[0], &v[1], &v[2], &v[3], &v[4], &v[5], &tail) != 6)
		return -1;
	for (int i = 0; i < 6; i++) {
		if (v[i] > 255)
			return -1;
		mac[i] = (uint8_t)v[i];
	}
	if (mac[0] & 1) /* multicast/broadcast cannot be a station address */
		return -1;
	return 0;
}

static int bad(const char *var, const char *val, const char *why)
{
	xp_log(XP_LOG_ERROR, "%s=\"%s\": %s; every socket stays on the kernel", var, val, why);
	return -1;
}

static int load_log(void)
{
	const char *v = getenv("XTCP_LOG_LEVEL");
	if (v && *v) {
		int i;
		for (i = 0; i < 4; i++)
			if (!strcasecmp(v, level_names[i]))
				break;
		if (i == 4)
			return bad("XTCP_LOG_LEVEL", v, "expected error, warn, info or debug");
		xp_log_level = i;
	}
	v = getenv("XTCP_LOG_FILE");
	if (v && *v) {
		int fd = open(v, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
		if (fd < 0) {
			int e = errno;
			xp_log(XP_LOG_ERROR, "XTCP_LOG_FILE=\"%s\": %s; every socket stays on the kernel", v,
			       strerror(e));
			return -1;
		}
		log_fd = fd;
	}
	return 0;
}

static int load_num(const char *var, uint64_t min, uint64_t max, uint64_t *out)
{
	const char *v = getenv(var);
	if (!v || !*v)
		return 0;
	uint64_t x;
	if (parse_u64(v, max, &x) < 0 || x < min) {
		char why[96];
		snprintf(why, sizeof(why), "expected a number from %llu to %llu", (unsigned long long)min,
			 (unsigned long long)max);
		return bad(var, v, why);
	}
	*out = x;
	return 0;
}

int xp_config_load(bool *off)
{
	struct xp_config *c = &xp_cfg;
	memset(c, 0, sizeof(*c));
	*off = false;
	if (load_log() < 0)
		return -1;

	const char *v = getenv("XTCP_NIC");
	c->nic = XP_NIC_AUTO;
	if (v && *v) {
		if (!strcmp(v, "packet"))
			c->nic = XP_NIC_PACKET;
		else if (!strcmp(v, "auto"))
			c->nic = XP_NIC_AUTO;
		else if (!strcmp(v, "kernel"))
			c->nic = XP_NIC_KERNEL;
		else if (!strcmp(v, "verbs"))
			c->nic = XP_NIC_VERBS;
		else
			return bad("XTCP_NIC", v, "expected verbs, packet, auto or kernel");
	}
	if (c->nic == XP_NIC_KERNEL) {
		XP_LOG(XP_LOG_INFO, "XTCP_NIC=kernel: every socket stays on the kernel");
		*off = true;
		return 0;
	}

	v = getenv("XTCP_IFACE");
	if (!v || !*v) {
		xp_log(XP_LOG_WARN, "XTCP_IFACE is not set; every socket stays on the kernel");
		*off = true;
		return 0;
	}
	if (strlen(v) >= 16)
		return bad("XTCP_IFACE", v, "interface names have at most 15 characters");
	snprintf(c->iface, sizeof(c->iface), "%s", v);

	v = getenv("XTCP_IP");
	if ((!v || !*v) && c->nic == XP_NIC_PACKET) {
		xp_log(XP_LOG_ERROR, "XTCP_IP is not set (a.b.c.d/prefix, an address the kernel does not own "
				     "on %s); every socket stays on the kernel", c->iface);
		return -1;
	}
	/* unset with verbs or auto: the verbs backend shares the interface's
	 * address (steer.c); AF_PACKET then refuses to attach */
	if (v && *v) {
		char ipbuf[32];
		const char *slash = strchr(v, '/');
		size_t iplen = slash ? (size_t)(slash - v) : strlen(v);
		uint64_t prefix;
		if (!slash || iplen >= sizeof(ipbuf))
			return bad("XTCP_IP", v, "expected a.b.c.d/prefix");
		memcpy(ipbuf, v, iplen);
		ipbuf[iplen] = 0;
		if (parse_ip(ipbuf, &c->ip) < 0 || parse_u64(slash + 1, 32, &prefix) < 0 || prefix < 1)
			return bad("XTCP_IP", v, "expected a.b.c.d/prefix with a prefix from 1 to 32");
		c->prefix = (int)prefix;
		c->netmask = prefix == 32 ? 0xffffffffu : ~(0xffffffffu >> prefix);
		uint32_t a = c->ip;
		if (a == 0 || (a >> 24) == 127 || (a >> 28) >= 14 || (prefix < 31 && ((a & ~c->netmask) == 0 ||
			(a & ~c->netmask) == ~c->netmask)))
			return bad("XTCP_IP", v, "not a usable unicast host address");
	}

	v = getenv("XTCP_GW");
	if (v && *v) {
		if (parse_ip(v, &c->gw) < 0)
			return bad("XTCP_GW", v, "expected a.b.c.d");
		if (c->ip && ((c->gw & c->netmask) != (c->ip & c->netmask) || c->gw == c->ip))
			return bad("XTCP_GW", v, "the gateway must be another address inside XTCP_IP's subnet");
	}

	v = getenv("XTCP_MAC");
	if (v && *v && strcmp(v, "auto") == 0) {
		/* Locally administered, derived from the address: 02:58:a:b:c:d. */
		if (!c->ip)
			return bad("XTCP_MAC", v, "auto derives the MAC from XTCP_IP, which is not set");
		uint8_t m[6] = { 0x02, 0x58, (uint8_t)(c->ip >> 24), (uint8_t)(c->ip >> 16), (uint8_t)(c->ip >> 8),
				 (uint8_t)c->ip };
		memcpy(c->mac, m, 6);
		c->have_mac = true;
	} else if (v && *v) {
		if (parse_mac(v, c->mac) < 0)
			return bad("XTCP_MAC", v, "expected a unicast MAC address aa:bb:cc:dd:ee:ff, or auto");
		c->have_mac = true;
	}

	uint64_t x;
	c->rcvbuf = 262144;
	c->sndbuf = 262144;
	c->somaxconn = 4096;
	c->max_sockets = 65536;
	x = c->rcvbuf;
	if (load_num("XTCP_RCVBUF", 4096, 64u << 20, &x) < 0)
		return -1;
	c->rcvbuf = (uint32_t)x;
	x = c->sndbuf;
	if (load_num("XTCP_SNDBUF", 4096, 64u << 20, &x) < 0)
		return -1;
	c->sndbuf = (uint32_t)x;
	x = c->somaxconn;
	if (load_num("XTCP_SOMAXCONN", 1, 65535, &x) < 0)
		return -1;
	c->somaxconn = (uint32_t)x;
	x = c->max_sockets;
	if (load_num("XTCP_MAX_SOCKETS", 1, 1u << 24, &x) < 0)
		return -1;
	c->max_sockets = (uint32_t)x;
	/* a number of microseconds, auto (adaptive up to XP_SPIN_AUTO_MAX_US) or
	 * auto:N (up to N) */
	const char *sv = getenv("XTCP_SPIN_US");
	x = 0;
	if (sv && strncmp(sv, "auto", 4) == 0 && (sv[4] == 0 || sv[4] == ':')) {
		c->spin_auto = true;
		x = XP_SPIN_AUTO_MAX_US;
		if (sv[4] == ':' && (parse_u64(sv + 5, 1000000, &x) < 0 || x == 0))
			return bad("XTCP_SPIN_US", sv, "expected auto:N with N from 1 to 1000000");
	} else if (load_num("XTCP_SPIN_US", 0, 1000000, &x) < 0) {
		return -1;
	}
	c->spin_ns = x * 1000;
	x = 500;
	if (load_num("XTCP_KERNEL_POLL_US", 0, 100000, &x) < 0)
		return -1;
	c->kpoll_ns = x * 1000;
	x = 5000;
	if (load_num("XTCP_EXIT_DRAIN_MS", 0, 600000, &x) < 0)
		return -1;
	c->exit_drain_ns = x * 1000000;
	x = 1;
	if (load_num("XTCP_TX_BATCH", 0, 1, &x) < 0)
		return -1;
	c->tx_batch = x != 0;
	x = 1;
	if (load_num("XTCP_SENDFILE_DIRECT", 0, 1, &x) < 0)
		return -1;
	c->sendfile_direct = x != 0;
	x = 1;
	if (load_num("XTCP_TSO", 0, 1, &x) < 0)
		return -1;
	c->tso = x != 0;
	x = 1;
	if (load_num("XTCP_RX_ZEROCOPY", 0, 1, &x) < 0)
		return -1;
	c->rx_zerocopy = x != 0;
	x = 1;
	if (load_num("XTCP_TX_ZEROCOPY", 0, 1, &x) < 0)
		return -1;
	c->tx_zerocopy = x != 0;
	return xp_rules_load(off);
}

int xp_config_num(const char *var, uint64_t min, uint64_t max, uint64_t *out)
{
	return load_num(var, min, max, out);
}

int xp_config_bad(const char *var, const char *val, const char *why)
{
	return bad(var, val, why);
}
