/* xtcp-stat: ss -tanp for the xtcp engines of running processes.
 *
 * Reads the statistics segments libxtcp.so publishes (/dev/shm/xtcp.<pid>,
 * layout preload/stats_fmt.h): sockets with ss's Recv-Q/Send-Q meanings,
 * per-connection details (-i), counters (-s), JSON (-j), a refresh mode
 * (-r), and switches packet capture of a process on or off (--pcap).
 * Segments of processes that are gone (killed, or exited without running
 * the library's exit code) are removed as they are found.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "../preload/stats_fmt.h"
#include "../stack/xtcp.h"

#define WAIT_MS 1500 /* for a fresh snapshot: the library looks every 200 ms */

struct opts {
	bool info, summary, json, zeros, no_clean;
	double refresh; /* seconds, 0: once */
	long count;     /* refresh rounds, 0: until interrupted */
	int pcap;       /* XTS_PCAP_ON/OFF, 0: no switch */
	const char *dir;
	char **targets;
	int ntargets;
};

struct snap {
	int pid;
	struct xts_hdr h;
	void *copy; /* the whole segment, consistent */
	size_t size;
};

static volatile sig_atomic_t stop;

static void on_signal(int sig)
{
	(void)sig;
	stop = 1;
}

static void usage(FILE *f)
{
	fprintf(f,
		"Usage: xtcp-stat [OPTION]... [PID|NAME]...\n"
		"Show the TCP sockets of processes running on the xtcp engine (libxtcp.so),\n"
		"like ss -tanp: state, Recv-Q, Send-Q, local and peer address, process.\n"
		"With no PID or NAME: every xtcp process this user may read.\n"
		"\n"
		"Recv-Q/Send-Q: for LISTEN, the accept queue's length and its limit (the\n"
		"backlog); otherwise unread bytes and bytes not yet acknowledged by the peer.\n"
		"\n"
		"  -i, --info          per-connection details: rtt/rttvar (ms), rto, cwnd,\n"
		"                      ssthresh, mss, retransmits, bytes, segments, windows,\n"
		"                      negotiated options (ts, sack, wscale)\n"
		"  -s, --summary       counters: segments in/out, retransmissions, every drop\n"
		"                      reason (zero or not), the other non-zero counters, NIC\n"
		"                      rx/tx/errors, socket buffer memory, sockets handed to\n"
		"                      the kernel by reason, capture state\n"
		"  -z, --zeros         with -s: the other counters that are zero too\n"
		"  -j, --json          one JSON object (every field, counters included)\n"
		"  -r, --refresh=SEC   print again every SEC seconds (0.1 to 86400) until\n"
		"                      interrupted; with -j, one JSON object per line\n"
		"  -c, --count=N       with -r: N rounds, then exit\n"
		"      --pcap=on|off   switch packet capture (XTCP_PCAP) of the given\n"
		"                      processes on or off, and show its state\n"
		"      --dir=DIR       where the segments are (default: $XTCP_STAT_DIR, else\n"
		"                      /dev/shm)\n"
		"      --no-clean      leave the segments of dead processes in place\n"
		"  -h, --help          this help\n"
		"\n"
		"Exit status: 0, 1 when a named process has no segment or a capture switch\n"
		"was not confirmed, 2 on a usage error.\n"
		"See xtcp-stat(1) and libxtcp(7).\n");
}

/* --- finding and reading segments ------------------------------------------- */

static uint64_t mono_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static void sleep_ms(long ms)
{
	struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };
	nanosleep(&ts, NULL);
}

static void seg_path(const struct opts *o, int pid, char *buf, size_t n)
{
	snprintf(buf, n, "%s/" XTS_PATH_PREFIX "%d", o->dir, pid);
}

/* starttime of /proc/<pid>/stat (as stats_seg.c reads it), 0 if unreadable. */
static uint64_t proc_start_ticks(int pid)
{
	char path[64], buf[1024];
	snprintf(path, sizeof(path), "/proc/%d/stat", pid);
	FILE *f = fopen(path, "re");
	if (!f)
		return 0;
	size_t n = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	buf[n] = 0;
	char *p = strrchr(buf, ')');
	unsigned long long v = 0;
	if (!p || sscanf(p + 1, " %*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %*u %*u %*d %*d %*d %*d %*d %*d %llu",
			 &v) != 1)
		return 0;
	return v;
}

/* Is the segment's process gone (or the pid now someone else's)? */
static bool stale(int pid, const struct xts_hdr *h)
{
	if (kill(pid, 0) < 0 && errno == ESRCH)
		return true;
	uint64_t t = proc_start_ticks(pid);
	if (!t) /* /proc says nothing: gone between the two looks */
		return access("/proc/self", F_OK) == 0 && kill(pid, 0) < 0 && errno == ESRCH;
	return h && h->magic == XTS_MAGIC && h->proc_start_ticks && h->proc_start_ticks != t;
}

static void remove_stale(const struct opts *o, int pid, const char *why)
{
	char path[512];
	seg_path(o, pid, path, sizeof(path));
	if (o->no_clean)
		return;
	if (unlink(path) == 0)
		fprintf(stderr, "xtcp-stat: removed %s: %s\n", path, why);
}

/* Maps the segment of pid (read-write if allowed, to ask for a snapshot). */
static void *map_seg(const struct opts *o, int pid, size_t *size, bool *rw)
{
	char path[512];
	seg_path(o, pid, path, sizeof(path));
	*rw = true;
	int fd = open(path, O_RDWR | O_CLOEXEC | O_NOFOLLOW);
	if (fd < 0 && (errno == EACCES || errno == EPERM || errno == EROFS)) {
		*rw = false;
		fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	}
	if (fd < 0)
		return NULL;
	struct stat sb;
	if (fstat(fd, &sb) < 0 || !S_ISREG(sb.st_mode) || (size_t)sb.st_size < sizeof(struct xts_hdr)) {
		close(fd);
		return NULL;
	}
	void *m = mmap(NULL, (size_t)sb.st_size, *rw ? PROT_READ | PROT_WRITE : PROT_READ, MAP_SHARED, fd, 0);
	close(fd);
	if (m == MAP_FAILED)
		return NULL;
	*size = (size_t)sb.st_size;
	return m;
}

static bool layout_ok(const struct xts_hdr *h, size_t size)
{
	if (h->magic != XTS_MAGIC || h->version != XTS_VERSION || h->total_size > size ||
	    h->sock_entry_size < sizeof(struct xts_sock) || h->ncounters > 4096 || h->nnic_max > 4096)
		return false;
	uint64_t end = (uint64_t)h->sock_off + (uint64_t)h->sock_max * h->sock_entry_size;
	return end <= size && (uint64_t)h->counters_off + h->ncounters * 8ull <= size &&
	       (uint64_t)h->counter_names_off + (uint64_t)h->ncounters * XTS_NAME_LEN <= size &&
	       (uint64_t)h->nic_off + h->nnic_max * 8ull <= size &&
	       (uint64_t)h->nic_names_off + (uint64_t)h->nnic_max * XTS_NAME_LEN <= size &&
	       (uint64_t)h->handoff_off + XTS_MAX_HANDOFF * sizeof(struct xts_handoff) <= size;
}

/* A consistent copy of the segment (seqlock), after asking the process for
 * a fresh snapshot and, with pcap, a capture switch.  Returns 0, -1 when
 * the segment is unusable. */
static int read_seg(const struct opts *o, int pid, struct snap *s, bool *confirmed)
{
	size_t size;
	bool rw;
	void *m = map_seg(o, pid, &size, &rw);
	if (!m)
		return -1;
	struct xts_hdr *h = m;
	if (!layout_ok(h, size)) {
		munmap(m, size);
		return -1;
	}
	if (rw) {
		if (o->pcap)
			__atomic_store_n(&h->pcap_ctl, (uint32_t)o->pcap, __ATOMIC_RELEASE);
		uint64_t want = __atomic_add_fetch(&h->req, 1, __ATOMIC_ACQ_REL);
		uint64_t until = mono_ms() + WAIT_MS;
		while (mono_ms() < until && (int64_t)(__atomic_load_n(&h->req_done, __ATOMIC_ACQUIRE) - want) < 0)
			sleep_ms(10);
		if (confirmed)
			*confirmed = (int64_t)(__atomic_load_n(&h->req_done, __ATOMIC_ACQUIRE) - want) >= 0 &&
				     __atomic_load_n(&h->pcap_ctl, __ATOMIC_ACQUIRE) == 0;
	} else if (confirmed) {
		*confirmed = false;
	}
	s->copy = malloc(size);
	if (!s->copy) {
		munmap(m, size);
		return -1;
	}
	int ok = -1;
	for (int tries = 0; tries < 1000; tries++) {
		uint64_t seq = __atomic_load_n(&h->seq, __ATOMIC_ACQUIRE);
		if (seq & 1) {
			sleep_ms(1);
			continue;
		}
		memcpy(s->copy, m, size);
		__atomic_thread_fence(__ATOMIC_ACQUIRE);
		if (__atomic_load_n(&h->seq, __ATOMIC_RELAXED) == seq) {
			ok = 0;
			break;
		}
	}
	munmap(m, size);
	if (ok < 0 || !layout_ok(s->copy, size)) {
		free(s->copy);
		return -1;
	}
	s->pid = pid;
	s->size = size;
	/* every string NUL-terminated: the segment is another process's memory */
	struct xts_hdr *c = s->copy;
	c->comm[sizeof(c->comm) - 1] = c->backend[sizeof(c->backend) - 1] = 0;
	c->iface[sizeof(c->iface) - 1] = c->pcap_path[sizeof(c->pcap_path) - 1] = 0;
	c->nic_name[sizeof(c->nic_name) - 1] = 0;
	for (uint32_t i = 0; i < c->ncounters; i++)
		((char *)s->copy)[c->counter_names_off + (size_t)i * XTS_NAME_LEN + XTS_NAME_LEN - 1] = 0;
	for (uint32_t i = 0; i < c->nnic_max; i++)
		((char *)s->copy)[c->nic_names_off + (size_t)i * XTS_NAME_LEN + XTS_NAME_LEN - 1] = 0;
	for (uint32_t i = 0; i < XTS_MAX_HANDOFF; i++)
		((struct xts_handoff *)((char *)s->copy + c->handoff_off))[i].reason[XTS_REASON_LEN - 1] = 0;
	if (c->nsock > c->sock_max)
		c->nsock = c->sock_max;
	if (c->nnic > c->nnic_max)
		c->nnic = c->nnic_max;
	if (c->nhandoff > XTS_MAX_HANDOFF)
		c->nhandoff = XTS_MAX_HANDOFF;
	memcpy(&s->h, s->copy, sizeof(s->h));
	return 0;
}

static bool is_number(const char *s)
{
	if (!*s)
		return false;
	for (; *s; s++)
		if (!isdigit((unsigned char)*s))
			return false;
	return true;
}

/* Every pid with a segment in the directory, stale ones removed. */
static int list_pids(const struct opts *o, int **out)
{
	DIR *d = opendir(o->dir);
	int n = 0, cap = 0;
	*out = NULL;
	if (!d)
		return 0;
	struct dirent *e;
	while ((e = readdir(d))) {
		if (strncmp(e->d_name, XTS_PATH_PREFIX, strlen(XTS_PATH_PREFIX)) != 0)
			continue;
		const char *p = e->d_name + strlen(XTS_PATH_PREFIX);
		if (!is_number(p))
			continue;
		int pid = atoi(p);
		if (n == cap) {
			cap = cap ? cap * 2 : 16;
			int *np = realloc(*out, (size_t)cap * sizeof(int));
			if (!np)
				break;
			*out = np;
		}
		(*out)[n++] = pid;
	}
	closedir(d);
	for (int i = 0; i < n; i++) /* sorted, for a stable output */
		for (int j = i + 1; j < n; j++)
			if ((*out)[j] < (*out)[i]) {
				int t = (*out)[i];
				(*out)[i] = (*out)[j];
				(*out)[j] = t;
			}
	return n;
}

/* Looks at a segment's header only: stale?  Removes it if so. */
static bool check_stale(const struct opts *o, int pid)
{
	size_t size;
	bool rw;
	void *m = map_seg(o, pid, &size, &rw);
	struct xts_hdr h;
	memset(&h, 0, sizeof(h));
	if (m) {
		memcpy(&h, m, sizeof(h));
		munmap(m, size);
	}
	if (!stale(pid, m ? &h : NULL))
		return false;
	remove_stale(o, pid, kill(pid, 0) < 0 && errno == ESRCH ? "process gone" : "pid reused by another process");
	return true;
}

/* --- formatting ----------------------------------------------------------- */

static const char *state_name(int st)
{
	static const char *const n[] = {
		[XT_ESTABLISHED] = "ESTAB", [XT_SYN_SENT] = "SYN-SENT", [XT_SYN_RECV] = "SYN-RECV",
		[XT_FIN_WAIT1] = "FIN-WAIT-1", [XT_FIN_WAIT2] = "FIN-WAIT-2", [XT_TIME_WAIT] = "TIME-WAIT",
		[XT_CLOSE] = "UNCONN", [XT_CLOSE_WAIT] = "CLOSE-WAIT", [XT_LAST_ACK] = "LAST-ACK",
		[XT_LISTEN] = "LISTEN", [XT_CLOSING] = "CLOSING",
	};
	return st > 0 && st <= XT_CLOSING && n[st] ? n[st] : "UNKNOWN";
}

static void fmt_ip(uint32_t ip, char *buf, size_t n)
{
	struct in_addr a = { .s_addr = htonl(ip) };
	inet_ntop(AF_INET, &a, buf, (socklen_t)n);
}

static void fmt_ep(uint32_t ip, uint16_t port, bool star, char *buf, size_t n)
{
	char a[INET_ADDRSTRLEN];
	fmt_ip(ip, a, sizeof(a));
	if (star)
		snprintf(buf, n, "%s:*", a);
	else
		snprintf(buf, n, "%s:%u", a, port);
}

static const struct xts_sock *sock_at(const struct snap *s, uint32_t i)
{
	return (const struct xts_sock *)((const char *)s->copy + s->h.sock_off + (size_t)i * s->h.sock_entry_size);
}

static const char *cname(const struct snap *s, uint32_t i)
{
	return (const char *)s->copy + s->h.counter_names_off + (size_t)i * XTS_NAME_LEN;
}

static uint64_t cval(const struct snap *s, uint32_t i)
{
	uint64_t v;
	memcpy(&v, (const char *)s->copy + s->h.counters_off + (size_t)i * 8, 8);
	return v;
}

static uint64_t counter(const struct snap *s, const char *name)
{
	for (uint32_t i = 0; i < s->h.ncounters; i++)
		if (!strcmp(cname(s, i), name))
			return cval(s, i);
	return 0;
}

static const char *nname(const struct snap *s, uint32_t i)
{
	return (const char *)s->copy + s->h.nic_names_off + (size_t)i * XTS_NAME_LEN;
}

static uint64_t nval(const struct snap *s, uint32_t i)
{
	uint64_t v;
	memcpy(&v, (const char *)s->copy + s->h.nic_off + (size_t)i * 8, 8);
	return v;
}

static const struct xts_handoff *handoff(const struct snap *s, uint32_t i)
{
	return (const struct xts_handoff *)((const char *)s->copy + s->h.handoff_off) + i;
}

static const char *pcap_state(uint32_t st)
{
	switch (st) {
	case XTS_PCAP_ON: return "on";
	case XTS_PCAP_OFF: return "off";
	case XTS_PCAP_FAILED: return "failed";
	default: return "not configured";
	}
}

static double age_s(const struct snap *s)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	uint64_t now = (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
	return now > s->h.publish_realtime_ns ? (double)(now - s->h.publish_realtime_ns) / 1e9 : 0;
}

static void text_info(const struct xts_sock *e)
{
	printf("\t");
	if (e->options & XT_TI_OPT_TIMESTAMPS)
		printf(" ts");
	if (e->options & XT_TI_OPT_SACK)
		printf(" sack");
	if (e->options & XT_TI_OPT_WSCALE)
		printf(" wscale:%u,%u", e->snd_wscale, e->rcv_wscale);
	printf(" rto:%g rtt:%g/%g mss:%u rcvmss:%u cwnd:%u", e->rto_us / 1000.0, e->rtt_us / 1000.0,
	       e->rttvar_us / 1000.0, e->snd_mss, e->rcv_mss, e->snd_cwnd);
	if (e->snd_ssthresh && e->snd_ssthresh < 0x7fffffff)
		printf(" ssthresh:%u", e->snd_ssthresh);
	printf(" bytes_acked:%llu bytes_received:%llu segs_out:%u segs_in:%u", (unsigned long long)e->bytes_acked,
	       (unsigned long long)e->bytes_received, e->segs_out, e->segs_in);
	if (e->unacked)
		printf(" unacked:%u", e->unacked);
	printf(" retrans:%u/%u", e->retrans, e->total_retrans);
	if (e->retransmits)
		printf(" retransmits:%u", e->retransmits);
	if (e->lost)
		printf(" lost:%u", e->lost);
	printf(" snd_wnd:%u rcv_wnd:%u", e->snd_wnd, e->rcv_wnd);
	if (e->notsent_bytes)
		printf(" notsent:%u", e->notsent_bytes);
	printf("\n");
}

static void text_sockets(const struct opts *o, const struct snap *s, bool header)
{
	if (header)
		printf("%-11s %-6s %-6s %-25s %-25s %s\n", "State", "Recv-Q", "Send-Q", "Local Address:Port",
		       "Peer Address:Port", "Process");
	const char *comm = s->h.comm;
	for (uint32_t i = 0; i < s->h.nsock; i++) {
		const struct xts_sock *e = sock_at(s, i);
		char l[64], r[64], proc[96] = "";
		if (e->state == XT_CLOSE)
			continue; /* not yet listening or connected: ss does not list these either */
		bool nopeer = e->state == XT_LISTEN || e->state == XT_CLOSE;
		fmt_ep(e->lip, e->lport, false, l, sizeof(l));
		fmt_ep(e->rip, e->rport, nopeer, r, sizeof(r));
		if (e->fd >= 0)
			snprintf(proc, sizeof(proc), "users:((\"%s\",pid=%d,fd=%d))", comm, s->pid, e->fd);
		printf("%-11s %-6u %-6u %-25s %-25s %s\n", state_name(e->state), e->recv_q, e->send_q, l, r, proc);
		if (o->info && e->state != XT_LISTEN)
			text_info(e);
	}
	if (s->h.flags & XTS_F_SOCK_TRUNCATED)
		printf("# pid %d: %u sockets, only the first %u shown\n", s->pid, s->h.nsock_total, s->h.nsock);
}

static void text_summary(const struct opts *o, const struct snap *s)
{
	char ip[INET_ADDRSTRLEN];
	fmt_ip(s->h.ip, ip, sizeof(ip));
	printf("Process %d (%s): engine %s/%u on %s, backend %s; snapshot %.1f s old\n", s->pid, s->h.comm, ip,
	       s->h.prefix, s->h.iface, s->h.backend, age_s(s));
	uint32_t per[XT_CLOSING + 1] = { 0 };
	for (uint32_t i = 0; i < s->h.nsock; i++)
		if (sock_at(s, i)->state <= XT_CLOSING)
			per[sock_at(s, i)->state]++;
	printf("  sockets: %u", s->h.nsock_total);
	if (s->h.flags & XTS_F_SOCK_TRUNCATED)
		printf(" (by state: the %u the segment holds)", s->h.nsock);
	for (int st = 1; st <= XT_CLOSING; st++)
		if (per[st])
			printf(", %s %u", state_name(st), per[st]);
	printf("\n");
	printf("  tcp: %llu segments received, %llu sent, %llu retransmitted (%llu timeouts, %llu fast "
	       "retransmits); %llu active opens, %llu passive opens, %llu failed attempts, %llu resets\n",
	       (unsigned long long)counter(s, "tcp_rx_segs"), (unsigned long long)counter(s, "tcp_tx_segs"),
	       (unsigned long long)counter(s, "tcp_retrans_segs"), (unsigned long long)counter(s, "tcp_rto"),
	       (unsigned long long)counter(s, "tcp_fast_retrans"), (unsigned long long)counter(s, "tcp_active_opens"),
	       (unsigned long long)counter(s, "tcp_passive_opens"),
	       (unsigned long long)counter(s, "tcp_attempt_fails"), (unsigned long long)counter(s, "tcp_estab_resets"));
	printf("  buffers: %llu bytes of socket memory in use\n", (unsigned long long)s->h.mem_used);
	printf("  drops:");
	int shown = 0;
	for (uint32_t i = 0; i < s->h.ncounters; i++) {
		if (strncmp(cname(s, i), "drop_", 5) != 0)
			continue; /* every drop reason, zero or not: what did not happen is news too */
		printf("%s %s %llu", shown++ % 4 ? "," : "\n   ", cname(s, i) + 5, (unsigned long long)cval(s, i));
	}
	printf("%s\n", shown ? "" : " none");
	printf("  counters:");
	shown = 0;
	for (uint32_t i = 0; i < s->h.ncounters; i++) {
		if (!strncmp(cname(s, i), "drop_", 5) || (!cval(s, i) && !o->zeros))
			continue;
		printf("%s %s %llu", shown++ % 4 ? "," : "\n   ", cname(s, i), (unsigned long long)cval(s, i));
	}
	printf("%s\n", shown ? "" : " none");
	if (s->h.nnic) {
		printf("  nic (%s):", s->h.nic_name);
		shown = 0;
		for (uint32_t i = 0; i < s->h.nnic && i < s->h.nnic_max; i++) {
			if (!nval(s, i) && !o->zeros && strcmp(nname(s, i), "tx_errors") != 0)
				continue;
			printf("%s %s %llu", shown++ % 4 ? "," : "\n   ", nname(s, i), (unsigned long long)nval(s, i));
		}
		printf("\n");
	} else {
		printf("  nic: the backend reports no counters\n");
	}
	uint64_t total = 0;
	for (uint32_t i = 0; i < s->h.nhandoff && i < XTS_MAX_HANDOFF; i++)
		total += handoff(s, i)->count;
	printf("  handed to the kernel: %llu sockets\n", (unsigned long long)total);
	for (uint32_t i = 0; i < s->h.nhandoff && i < XTS_MAX_HANDOFF; i++)
		printf("    %llu  %.*s\n", (unsigned long long)handoff(s, i)->count, XTS_REASON_LEN,
		       handoff(s, i)->reason);
	printf("  capture: %s", pcap_state(s->h.pcap_state));
	if (s->h.pcap_path[0])
		printf(" (%.*s, %llu frames, %llu bytes, %llu rotations; limit %llu MB x %u files)",
		       (int)sizeof(s->h.pcap_path), s->h.pcap_path, (unsigned long long)s->h.pcap_frames,
		       (unsigned long long)s->h.pcap_bytes, (unsigned long long)s->h.pcap_rotations,
		       (unsigned long long)(s->h.pcap_max_bytes >> 20), s->h.pcap_files);
	printf("\n");
}

/* --- JSON ---------------------------------------------------------------- */

static void json_str(const char *p, size_t max)
{
	putchar('"');
	for (size_t i = 0; i < max && p[i]; i++) {
		unsigned char c = (unsigned char)p[i];
		if (c == '"' || c == '\\')
			printf("\\%c", c);
		else if (c < 0x20)
			printf("\\u%04x", c);
		else
			putchar(c);
	}
	putchar('"');
}

static void json_ip(uint32_t ip)
{
	char a[INET_ADDRSTRLEN];
	fmt_ip(ip, a, sizeof(a));
	printf("\"%s\"", a);
}

static void json_sock(const struct snap *s, const struct xts_sock *e)
{
	printf("{\"state\":\"%s\",\"recv_q\":%u,\"send_q\":%u,\"local_addr\":", state_name(e->state), e->recv_q,
	       e->send_q);
	json_ip(e->lip);
	printf(",\"local_port\":%u,\"peer_addr\":", e->lport);
	json_ip(e->rip);
	printf(",\"peer_port\":%u,\"pid\":%d,\"fd\":%d,\"orphan\":%s,\"pending\":%s", e->rport, s->pid, e->fd,
	       e->flags & XTS_S_ORPHAN ? "true" : "false", e->flags & XTS_S_PENDING ? "true" : "false");
	printf(",\"info\":{\"ts\":%s,\"sack\":%s,\"wscale\":%s,\"snd_wscale\":%u,\"rcv_wscale\":%u,"
	       "\"rtt_us\":%u,\"rttvar_us\":%u,\"rto_us\":%u,\"cwnd\":%u,\"ssthresh\":%u,\"snd_mss\":%u,"
	       "\"rcv_mss\":%u,\"ca_state\":%u,\"retransmits\":%u,\"unacked\":%u,\"lost\":%u,\"retrans\":%u,"
	       "\"total_retrans\":%u,\"segs_out\":%u,\"segs_in\":%u,\"snd_wnd\":%u,\"rcv_wnd\":%u,"
	       "\"notsent_bytes\":%u,\"bytes_acked\":%llu,\"bytes_received\":%llu}}",
	       e->options & XT_TI_OPT_TIMESTAMPS ? "true" : "false", e->options & XT_TI_OPT_SACK ? "true" : "false",
	       e->options & XT_TI_OPT_WSCALE ? "true" : "false", e->snd_wscale, e->rcv_wscale, e->rtt_us,
	       e->rttvar_us, e->rto_us, e->snd_cwnd, e->snd_ssthresh, e->snd_mss, e->rcv_mss, e->ca_state,
	       e->retransmits, e->unacked, e->lost, e->retrans, e->total_retrans, e->segs_out, e->segs_in,
	       e->snd_wnd, e->rcv_wnd, e->notsent_bytes, (unsigned long long)e->bytes_acked,
	       (unsigned long long)e->bytes_received);
}

static void json_proc(const struct snap *s)
{
	printf("{\"pid\":%d,\"comm\":", s->pid);
	json_str(s->h.comm, sizeof(s->h.comm));
	printf(",\"backend\":");
	json_str(s->h.backend, sizeof(s->h.backend));
	printf(",\"iface\":");
	json_str(s->h.iface, sizeof(s->h.iface));
	printf(",\"address\":");
	json_ip(s->h.ip);
	printf(",\"prefix\":%u,\"max_sockets\":%u,\"start_time_ns\":%llu,\"snapshot_time_ns\":%llu,"
	       "\"snapshot_age_s\":%.3f,\"snapshots\":%llu,\"mem_used\":%llu,\"nsockets\":%u,\"truncated\":%s,",
	       s->h.prefix, s->h.max_sockets, (unsigned long long)s->h.start_realtime_ns,
	       (unsigned long long)s->h.publish_realtime_ns, age_s(s), (unsigned long long)s->h.publishes,
	       (unsigned long long)s->h.mem_used, s->h.nsock_total,
	       s->h.flags & XTS_F_SOCK_TRUNCATED ? "true" : "false");
	printf("\"sockets\":[");
	for (uint32_t i = 0; i < s->h.nsock; i++) {
		if (i)
			putchar(',');
		json_sock(s, sock_at(s, i));
	}
	printf("],\"counters\":{");
	for (uint32_t i = 0; i < s->h.ncounters; i++) {
		if (i)
			putchar(',');
		json_str(cname(s, i), XTS_NAME_LEN);
		printf(":%llu", (unsigned long long)cval(s, i));
	}
	printf("},\"nic\":{\"name\":");
	json_str(s->h.nic_name, sizeof(s->h.nic_name));
	printf(",\"counters\":{");
	for (uint32_t i = 0; i < s->h.nnic && i < s->h.nnic_max; i++) {
		if (i)
			putchar(',');
		json_str(nname(s, i), XTS_NAME_LEN);
		printf(":%llu", (unsigned long long)nval(s, i));
	}
	printf("}},\"handoffs\":[");
	for (uint32_t i = 0; i < s->h.nhandoff && i < XTS_MAX_HANDOFF; i++) {
		printf("%s{\"reason\":", i ? "," : "");
		json_str(handoff(s, i)->reason, XTS_REASON_LEN);
		printf(",\"count\":%llu}", (unsigned long long)handoff(s, i)->count);
	}
	printf("],\"pcap\":{\"state\":\"%s\",\"path\":", pcap_state(s->h.pcap_state));
	json_str(s->h.pcap_path, sizeof(s->h.pcap_path));
	printf(",\"max_bytes\":%llu,\"files\":%u,\"frames\":%llu,\"bytes\":%llu,\"rotations\":%llu}}",
	       (unsigned long long)s->h.pcap_max_bytes, s->h.pcap_files, (unsigned long long)s->h.pcap_frames,
	       (unsigned long long)s->h.pcap_bytes, (unsigned long long)s->h.pcap_rotations);
}

/* --- main ------------------------------------------------------------------ */

/* The pids to show: those named (numbers, or process names matched against
 * the segments' comm), or all.  Returns the count; *missing: a target that
 * matched nothing. */
static int select_pids(const struct opts *o, int **out, bool *missing)
{
	int *all;
	int n = list_pids(o, &all);
	int k = 0;
	*missing = false;
	for (int i = 0; i < n; i++) /* stale ones go first, whatever was asked */
		if (!check_stale(o, all[i]))
			all[k++] = all[i];
	n = k;
	if (!o->ntargets) {
		*out = all;
		return n;
	}
	int *sel = calloc((size_t)n + 1, sizeof(int));
	int m = 0;
	for (int t = 0; t < o->ntargets; t++) {
		const char *tg = o->targets[t];
		bool found = false;
		for (int i = 0; i < n; i++) {
			bool match;
			if (is_number(tg)) {
				match = all[i] == atoi(tg);
			} else {
				char comm[64] = "", path[64];
				snprintf(path, sizeof(path), "/proc/%d/comm", all[i]);
				FILE *f = fopen(path, "re");
				if (f) {
					if (fgets(comm, sizeof(comm), f))
						comm[strcspn(comm, "\n")] = 0;
					fclose(f);
				}
				match = !strcmp(comm, tg);
			}
			if (!match)
				continue;
			found = true;
			bool dup = false;
			for (int j = 0; j < m; j++)
				dup |= sel[j] == all[i];
			if (!dup && sel)
				sel[m++] = all[i];
		}
		if (!found) {
			fprintf(stderr, "xtcp-stat: %s: no xtcp process of that %s (or no segment in %s)\n", tg,
				is_number(tg) ? "pid" : "name", o->dir);
			*missing = true;
		}
	}
	free(all);
	*out = sel;
	return m;
}

static int round_once(const struct opts *o)
{
	int *pids;
	bool missing;
	int n = select_pids(o, &pids, &missing);
	int rc = missing ? 1 : 0;
	if (o->json) {
		struct timespec ts;
		clock_gettime(CLOCK_REALTIME, &ts);
		printf("{\"time_ns\":%llu,\"processes\":[",
		       (unsigned long long)ts.tv_sec * 1000000000ull + (unsigned long long)ts.tv_nsec);
	}
	bool first = true, header = true;
	for (int i = 0; i < n; i++) {
		struct snap s;
		bool confirmed = false;
		if (read_seg(o, pids[i], &s, &confirmed) < 0) {
			int e = errno;
			/* another user's process is only worth a word when asked for */
			if (!check_stale(o, pids[i]) && o->ntargets) {
				fprintf(stderr, "xtcp-stat: pid %d: segment unreadable (%s)\n", pids[i],
					e == EACCES ? "permission denied: its user or root may read it"
							: "not a complete segment");
				rc = 1;
			}
			continue;
		}
		if (o->pcap && !confirmed) {
			fprintf(stderr, "xtcp-stat: pid %d: capture switch not confirmed (no access, or the "
					"process does not run its progress thread)\n", pids[i]);
			rc = 1;
		} else if (o->pcap && s.h.pcap_state != (uint32_t)o->pcap) {
			fprintf(stderr, "xtcp-stat: pid %d: capture is %s%s\n", pids[i], pcap_state(s.h.pcap_state),
				s.h.pcap_state == XTS_PCAP_NONE ? " (start the process with XTCP_PCAP=FILE)" : "");
			rc = 1;
		}
		if (o->json) {
			if (!first)
				putchar(',');
			json_proc(&s);
		} else if (o->pcap) {
			printf("pid %d (%s): capture %s%s%.*s\n", s.pid, s.h.comm, pcap_state(s.h.pcap_state),
			       s.h.pcap_path[0] ? " to " : "", (int)sizeof(s.h.pcap_path), s.h.pcap_path);
		} else if (o->summary) {
			text_summary(o, &s);
		} else {
			text_sockets(o, &s, header);
			header = false;
		}
		first = false;
		free(s.copy);
	}
	if (o->json)
		printf("]}\n");
	else if (header && !o->summary && !o->pcap)
		text_sockets(o, &(struct snap){ 0 }, true); /* an empty table still has its header */
	free(pids);
	fflush(stdout);
	return rc;
}

int main(int argc, char **argv)
{
	static const struct option lo[] = {
		{ "info", no_argument, NULL, 'i' },     { "summary", no_argument, NULL, 's' },
		{ "zeros", no_argument, NULL, 'z' },    { "json", no_argument, NULL, 'j' },
		{ "refresh", required_argument, NULL, 'r' }, { "count", required_argument, NULL, 'c' },
		{ "pcap", required_argument, NULL, 'P' }, { "dir", required_argument, NULL, 'D' },
		{ "no-clean", no_argument, NULL, 'N' }, { "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	struct opts o = { 0 };
	const char *env = getenv("XTCP_STAT_DIR");
	o.dir = env && *env ? env : XTS_DEFAULT_DIR;
	int c;
	while ((c = getopt_long(argc, argv, "iszjr:c:h", lo, NULL)) != -1) {
		char *end;
		switch (c) {
		case 'i': o.info = true; break;
		case 's': o.summary = true; break;
		case 'z': o.zeros = true; break;
		case 'j': o.json = true; break;
		case 'r':
			o.refresh = strtod(optarg, &end);
			if (*end || !(o.refresh >= 0.1 && o.refresh <= 86400)) {
				fprintf(stderr, "xtcp-stat: --refresh: expected seconds from 0.1 to 86400\n");
				return 2;
			}
			break;
		case 'c':
			o.count = strtol(optarg, &end, 10);
			if (*end || o.count < 1) {
				fprintf(stderr, "xtcp-stat: --count: expected a positive number\n");
				return 2;
			}
			break;
		case 'P':
			if (!strcmp(optarg, "on"))
				o.pcap = XTS_PCAP_ON;
			else if (!strcmp(optarg, "off"))
				o.pcap = XTS_PCAP_OFF;
			else {
				fprintf(stderr, "xtcp-stat: --pcap: expected on or off\n");
				return 2;
			}
			break;
		case 'D': o.dir = optarg; break;
		case 'N': o.no_clean = true; break;
		case 'h': usage(stdout); return 0;
		default: usage(stderr); return 2;
		}
	}
	o.targets = argv + optind;
	o.ntargets = argc - optind;
	if (o.pcap && !o.ntargets) {
		fprintf(stderr, "xtcp-stat: --pcap needs the PID or NAME of the processes to switch\n");
		return 2;
	}
	if (o.pcap && o.refresh) {
		fprintf(stderr, "xtcp-stat: --pcap and --refresh do not go together\n");
		return 2;
	}
	if (!o.refresh)
		return round_once(&o);
	signal(SIGINT, on_signal);
	signal(SIGTERM, on_signal);
	int rc = 0;
	for (long round = 0; !stop && (!o.count || round < o.count); round++) {
		if (round) {
			for (long ms = (long)(o.refresh * 1000); ms > 0 && !stop; ms -= 50)
				sleep_ms(ms < 50 ? ms : 50);
			if (stop)
				break;
		}
		if (!o.json) {
			time_t t = time(NULL);
			char ts[64];
			strftime(ts, sizeof(ts), "%Y-%m-%d %H:%M:%S", localtime(&t));
			printf("%s--- %s\n", round ? "\n" : "", ts);
		}
		rc = round_once(&o);
	}
	return rc;
}
