/* Publishing the statistics segment (stats.h) from the shim, capture
 * control (XTCP_PCAP*) and the exit summary (XTCP_EXIT_SUMMARY).
 *
 * The fd column: a lock-free scan of the shim's fd table (fds below
 * XP_STATS_FD_SCAN) maps each struct xp_sock to its lowest fd; engine
 * sockets carry their struct xp_sock as udata.  The scan runs before the
 * engine lock is taken, so dropping a reference (whose last release takes
 * the lock) is safe.
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "shim.h"
#include "stats.h"
#include "stats_seg.h"
#include "../nic/packet.h"
#include "../nic/pcap.h"
#include "../nic/verbs.h"

static void *seg;          /* mapping, NULL: no segment */
static size_t seg_size;
static char seg_name[64];  /* "/xtcp.<pid>" for shm_open / shm_unlink */
static char seg_path[300]; /* XTCP_STAT_DIR/xtcp.<pid> when not /dev/shm */
static pid_t seg_pid;
static atomic_bool closed;
static bool published;
static xt_time_t last_at;  /* engine clock of the last snapshot */
static uint64_t start_mono;

static pthread_mutex_t ho_mu = PTHREAD_MUTEX_INITIALIZER;
static struct xts_handoff ho[XTS_MAX_HANDOFF];
static uint32_t nho;

/* fork(): as xp_fdtab_fork_lock (the progress thread copies the table under
 * ho_mu, and a child that attaches clears it under ho_mu). */
void xp_stats_fork_lock(void) { pthread_mutex_lock(&ho_mu); }
void xp_stats_fork_unlock(void) { pthread_mutex_unlock(&ho_mu); }

void xp_stats_handoff(const char *reason)
{
	if (!reason)
		reason = "unknown";
	pthread_mutex_lock(&ho_mu);
	uint32_t i;
	for (i = 0; i < nho; i++)
		if (strncmp(ho[i].reason, reason, XTS_REASON_LEN - 1) == 0)
			break;
	if (i == nho) {
		if (nho < XTS_MAX_HANDOFF - 1) {
			snprintf(ho[nho].reason, sizeof(ho[nho].reason), "%s", reason);
			nho++;
		} else { /* table full: the last slot counts the rest */
			i = XTS_MAX_HANDOFF - 1;
			if (nho == XTS_MAX_HANDOFF - 1) {
				snprintf(ho[i].reason, sizeof(ho[i].reason), "other");
				nho++;
			}
		}
	}
	ho[i].count++;
	pthread_mutex_unlock(&ho_mu);
}

static void read_comm(char *buf, size_t n)
{
	buf[0] = 0;
	int fd = open("/proc/self/comm", O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return;
	ssize_t r = read(fd, buf, n - 1);
	close(fd);
	if (r <= 0) {
		buf[0] = 0;
		return;
	}
	buf[r] = 0;
	char *nl = strchr(buf, '\n');
	if (nl)
		*nl = 0;
}

/* XTCP_STAT_DIR (tests) instead of /dev/shm: a plain file there. */
static int open_file(const char *dir, pid_t pid)
{
	if (!dir || !*dir || !strcmp(dir, XTS_DEFAULT_DIR)) {
		snprintf(seg_name, sizeof(seg_name), "/" XTS_PATH_PREFIX "%d", (int)pid);
		seg_path[0] = 0;
		return shm_open(seg_name, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	}
	seg_name[0] = 0;
	snprintf(seg_path, sizeof(seg_path), "%s/" XTS_PATH_PREFIX "%d", dir, (int)pid);
	return open(seg_path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
}

static void remove_file(void)
{
	if (seg_name[0])
		shm_unlink(seg_name);
	else if (seg_path[0])
		unlink(seg_path);
}

int xp_stats_open(void)
{
	pid_t pid = getpid();
	if (seg && seg_pid == pid)
		return 0;
	if (seg) { /* a fork child attaching again: the parent's segment is not ours */
		munmap(seg, seg_size);
		seg = NULL;
		pthread_mutex_lock(&ho_mu);
		nho = 0;
		memset(ho, 0, sizeof(ho));
		pthread_mutex_unlock(&ho_mu);
	}
	seg_pid = pid;
	atomic_store(&closed, false);
	published = false;
	start_mono = xp_now();
	if (xp_obs.stat_off)
		return 0;
	xp_in_lib++;
	int r = 0;
	int fd = open_file(xp_obs.stat_dir, pid);
	if (fd < 0) {
		r = -errno;
		xp_log(XP_LOG_WARN, "statistics segment %s: %s; xtcp-stat will not see this process",
		       seg_path[0] ? seg_path : seg_name, strerror(-r));
		goto out;
	}
	/* a file someone else made under our name (the directory is shared,
	 * the pid guessable) is not written: our socket table is private */
	struct stat sb;
	if (fstat(fd, &sb) < 0 || sb.st_uid != geteuid() || !S_ISREG(sb.st_mode) || fchmod(fd, 0600) < 0) {
		r = -EPERM;
		close(fd);
		xp_log(XP_LOG_WARN, "statistics segment %s: exists and is not ours; xtcp-stat will not see this "
				    "process", seg_path[0] ? seg_path : seg_name);
		goto out;
	}
	seg_size = xts_seg_size(XTS_SOCK_MAX);
	if (ftruncate(fd, (off_t)seg_size) < 0) {
		r = -errno;
		goto fail;
	}
	void *m = mmap(NULL, seg_size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (m == MAP_FAILED) {
		r = -errno;
		goto fail;
	}
	close(fd);
	char comm[32];
	read_comm(comm, sizeof(comm));
	struct xts_ident id = {
		.pid = (int)pid,
		.ip = xp_cfg.ip,
		.prefix = (uint32_t)xp_cfg.prefix,
		.max_sockets = xp_cfg.max_sockets,
		.start_realtime_ns = xts_realtime_ns(),
		.proc_start_ticks = xts_proc_start_ticks((int)pid),
		.comm = comm,
		.backend = xp_eng.backend,
		.iface = xp_cfg.iface,
		.pcap_path = xp_obs.pcap[0] ? xp_obs.pcap : NULL,
		.pcap_max_bytes = xp_obs.pcap_max_bytes,
		.pcap_files = xp_obs.pcap_files,
	};
	xts_seg_init(m, seg_size, XTS_SOCK_MAX, &id);
	seg = m;
	XP_LOG(XP_LOG_DEBUG, "statistics segment %s", seg_path[0] ? seg_path : seg_name);
	goto out;
fail:
	xp_log(XP_LOG_WARN, "statistics segment %s: %s; xtcp-stat will not see this process",
	       seg_path[0] ? seg_path : seg_name, strerror(-r));
	close(fd);
	remove_file();
out:
	xp_in_lib--;
	return r;
}

/* --- capture -------------------------------------------------------------- */

struct xt_nic *xp_pcap_setup(struct xt_nic *nic)
{
	static pid_t first; /* the process that opened XTCP_PCAP itself */
	if (!xp_obs.pcap[0])
		return nic;
	pid_t me = getpid();
	if (!first)
		first = me;
	else if (first != me) { /* a fork child attaching: its own file, FILE.<pid> */
		char path[sizeof(xp_obs.pcap)];
		if (snprintf(path, sizeof(path), "%s.%d", xp_obs.pcap, (int)me) >= (int)sizeof(path))
			return nic;
		memcpy(xp_obs.pcap, path, sizeof(path));
		first = me;
	}
	struct timespec rt, mono;
	clock_gettime(CLOCK_REALTIME, &rt);
	clock_gettime(CLOCK_MONOTONIC, &mono);
	struct xt_pcap_cfg c = {
		.path = xp_obs.pcap,
		.max_bytes = xp_obs.pcap_max_bytes,
		.files = xp_obs.pcap_files,
		.ts_offset_ns = ((int64_t)rt.tv_sec - (int64_t)mono.tv_sec) * 1000000000ll +
				((int64_t)rt.tv_nsec - (int64_t)mono.tv_nsec),
	};
	struct xt_nic *p = xt_pcap_open(nic, &c);
	if (!p) {
		xp_log(XP_LOG_WARN, "XTCP_PCAP=\"%s\": %s; no capture", xp_obs.pcap, strerror(errno ? errno : ENOMEM));
		return nic;
	}
	return p;
}

struct xt_nic *xp_nic_base(struct xt_nic *nic)
{
	struct xt_nic *in = xt_pcap_inner(nic);
	return in ? in : nic;
}

/* Engine lock held. */
static void pcap_switch(uint32_t ctl)
{
	if (ctl != XTS_PCAP_ON && ctl != XTS_PCAP_OFF)
		return;
	int r = xt_pcap_set_on(xp_eng.nic, ctl == XTS_PCAP_ON);
	if (r == -EINVAL)
		xp_log(XP_LOG_WARN, "capture switched %s by xtcp-stat, but XTCP_PCAP is not set",
		       ctl == XTS_PCAP_ON ? "on" : "off");
	else if (r < 0)
		xp_log(XP_LOG_WARN, "XTCP_PCAP=\"%s\": %s; capture stays off", xp_obs.pcap, strerror(-r));
	else
		XP_LOG(XP_LOG_INFO, "capture to %s switched %s", xp_obs.pcap, ctl == XTS_PCAP_ON ? "on" : "off");
}

/* --- snapshots -------------------------------------------------------------- */

struct fdpair {
	const void *s;
	int32_t fd;
};
#define FDMAP_MAX 16384
static struct fdpair *fdmap;
static uint32_t nfdmap;

static int fdpair_cmp(const void *a, const void *b)
{
	const struct fdpair *x = a, *y = b;
	if (x->s != y->s)
		return (uintptr_t)x->s < (uintptr_t)y->s ? -1 : 1;
	return x->fd < y->fd ? -1 : x->fd > y->fd;
}

/* Engine lock not held: a reference dropped here may be the last. */
static void map_fds(void)
{
	nfdmap = 0;
	if (!fdmap && !(fdmap = malloc(FDMAP_MAX * sizeof(*fdmap))))
		return;
	for (int fd = 0; fd < XP_STATS_FD_SCAN && nfdmap < FDMAP_MAX; fd++) {
		if (!xp_fd_maybe_ours(fd))
			continue;
		struct xp_sock *s = xp_fd_get(fd);
		if (!s)
			continue;
		if (atomic_load(&s->mode) == XP_ENGINE)
			fdmap[nfdmap++] = (struct fdpair){ s, fd };
		xp_sock_put(s);
	}
	qsort(fdmap, nfdmap, sizeof(*fdmap), fdpair_cmp);
}

static int32_t fd_lookup(void *ctx, const void *udata)
{
	(void)ctx;
	uint32_t lo = 0, hi = nfdmap;
	while (lo < hi) { /* the first pair of udata: its lowest fd */
		uint32_t mid = (lo + hi) / 2;
		if ((uintptr_t)fdmap[mid].s < (uintptr_t)udata)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo < nfdmap && fdmap[lo].s == udata ? fdmap[lo].fd : -1;
}

static const char *const pkt_names[] = {
	"rx_frames", "rx_bytes", "tx_frames", "tx_bytes", "rx_drops", "rx_kernel_frames",
	"rx_csum_offloaded", "rx_big", "rx_big_lost", "rx_copied", "rx_truncated", "tx_gso", "tx_calls",
	"tx_errors",
	"tx_full", "tx_oversize", "wake_errors", "rx_kept_main", "rx_kept_big", "wake_kept",
	"tcp_switches", "tcp_off",
};

/* struct xt_verbs_stats, field by field (every field a uint64_t). */
static const char *const verbs_names[] = {
	"rx_frames", "rx_bytes", "rx_posted", "rx_post_calls", "rx_csum_hw", "rx_csum_sw", "rx_csum_bad",
	"rx_kernel_arp", "rx_kernel_icmp", "tx_frames", "tx_bytes", "tx_inline", "tx_signalled",
	"tx_csum_offload", "tx_tso", "tx_full", "tx_oversize", "tx_post_errors", "tx_link_down",
	"tx_qp_error", "cq_events", "cq_errors", "flush_errors", "qp_recoveries", "qp_recovery_failures",
	"async_events", "port_down", "port_up", "flows_added", "flows_removed", "flow_errors", "rx_kept",
	"tx_zerocopy", "tx_buf_regs", "tx_buf_reg_failures", "tx_buf_deregs", "tx_fence_waits", "tx_fence_failures",
};
_Static_assert(sizeof(struct xt_verbs_stats) == sizeof(verbs_names) / sizeof(verbs_names[0]) * sizeof(uint64_t),
	       "verbs counter names");

/* Engine lock held. */
static void fill_nic(void)
{
	struct xt_packet_stats ps;
	struct xt_verbs_stats vs;
	if (xp_eng.nic && xt_verbs_stats(xp_nic_base(xp_eng.nic), &vs) == 0) {
		uint64_t v[sizeof(verbs_names) / sizeof(verbs_names[0])];
		memcpy(v, &vs, sizeof(v));
		xts_fill_nic(seg, "verbs", verbs_names, v, (uint32_t)(sizeof(v) / sizeof(v[0])));
		return;
	}
	if (!xp_eng.nic || xt_packet_stats(xp_nic_base(xp_eng.nic), &ps) != 0)
		return;
	const uint64_t v[] = { ps.rx_frames, ps.rx_bytes, ps.tx_frames, ps.tx_bytes, ps.rx_drops,
			       ps.rx_kernel_frames, ps.rx_csum_offloaded, ps.rx_big, ps.rx_big_lost,
			       ps.rx_copied, ps.rx_truncated, ps.tx_gso, ps.tx_calls, ps.tx_errors, ps.tx_full,
			       ps.tx_oversize, ps.wake_errors, ps.rx_kept_main, ps.rx_kept_big, ps.wake_kept,
			       ps.tcp_switches, !xt_packet_tcp_on(xp_nic_base(xp_eng.nic)) };
	_Static_assert(sizeof(v) / sizeof(v[0]) == sizeof(pkt_names) / sizeof(pkt_names[0]), "NIC counter names");
	xts_fill_nic(seg, "packet", pkt_names, v, (uint32_t)(sizeof(v) / sizeof(v[0])));
}

/* Engine lock held. */
static void fill_pcap(struct xts_hdr *h)
{
	struct xt_pcap_stats ps;
	if (!xp_eng.nic || xt_pcap_stats(xp_eng.nic, &ps) != 0) {
		h->pcap_state = XTS_PCAP_NONE;
		return;
	}
	xt_pcap_flush(xp_eng.nic); /* a live capture file is readable up to here */
	h->pcap_state = ps.failed ? XTS_PCAP_FAILED : ps.on ? XTS_PCAP_ON : XTS_PCAP_OFF;
	h->pcap_frames = ps.frames;
	h->pcap_bytes = ps.bytes;
	h->pcap_rotations = ps.rotations;
}

xt_time_t xp_stats_tick(xt_time_t now)
{
	if (seg_pid != (xp_fork_pid ? xp_fork_pid : getpid()) || atomic_load_explicit(&closed, memory_order_relaxed))
		return XT_TIME_NEVER;
	if (!seg) { /* XTCP_STAT=0: only the capture's once-a-second write-out */
		if (!xp_obs.pcap[0])
			return XT_TIME_NEVER;
		if (!published || now >= last_at + XP_STATS_IDLE) {
			pthread_mutex_lock(&xp_eng.mu);
			xt_pcap_flush(xp_eng.nic);
			pthread_mutex_unlock(&xp_eng.mu);
			last_at = now;
			published = true;
		}
		return last_at + XP_STATS_IDLE;
	}
	struct xts_hdr *h = seg;
	uint64_t req = __atomic_load_n(&h->req, __ATOMIC_ACQUIRE);
	uint32_t ctl = __atomic_load_n(&h->pcap_ctl, __ATOMIC_ACQUIRE);
	if (published && now < last_at + XP_STATS_IDLE && req == h->req_done && !ctl)
		return now + XP_STATS_POLL;
	if (ctl)
		__atomic_store_n(&h->pcap_ctl, 0, __ATOMIC_RELEASE);
	map_fds();
	uint32_t nh;
	struct xts_handoff hcopy[XTS_MAX_HANDOFF];
	pthread_mutex_lock(&ho_mu);
	nh = nho;
	memcpy(hcopy, ho, sizeof(hcopy));
	pthread_mutex_unlock(&ho_mu);

	pthread_mutex_lock(&xp_eng.mu);
	if (xp_eng.st && !xp_eng.forked_child) {
		pcap_switch(ctl);
		xts_write_begin(seg);
		xts_fill_engine(seg, xp_eng.st, xp_clock(), fd_lookup, NULL);
		uint64_t shim[XTS_NSHIM];
		xp_mux_counters(&shim[0], &shim[1]);
		shim[2] = atomic_load(&xp_ph_shared_n);
		shim[3] = atomic_load(&xp_ph_own_n);
		shim[4] = atomic_load(&xp_sendfile_direct_n);
		shim[5] = atomic_load(&xp_sendfile_bounce_n);
		xts_fill_shim(seg, shim);
		fill_nic();
		fill_pcap(h);
		xts_fill_handoffs(seg, hcopy, nh);
		h->req_done = req;
		xts_write_end(seg);
	}
	pthread_mutex_unlock(&xp_eng.mu);
	last_at = now;
	published = true;
	return now + XP_STATS_POLL;
}

/* --- exit --------------------------------------------------------------------- */

static int append(char *buf, size_t cap, size_t *n, const char *fmt, ...) __attribute__((format(printf, 4, 5)));
static int append(char *buf, size_t cap, size_t *n, const char *fmt, ...)
{
	if (*n >= cap)
		return -1;
	va_list ap;
	va_start(ap, fmt);
	int m = vsnprintf(buf + *n, cap - *n, fmt, ap);
	va_end(ap);
	if (m < 0 || (size_t)m >= cap - *n) {
		buf[*n] = 0; /* did not fit: the caller writes the line out and retries */
		return -1;
	}
	*n += (size_t)m;
	return 0;
}

/* Lines of at most ~400 characters (xp_log's limit): "what: a=1 b=2 ...". */
static void log_list(const char *what, const char *const *names, const uint64_t *v, int n, bool drops_only)
{
	char line[400] = "";
	size_t len = 0;
	bool any = false;
	for (int i = 0; i < n; i++) {
		if (!v[i] || (drops_only && strncmp(names[i], "drop_", 5) != 0))
			continue;
		any = true;
		if (append(line, sizeof(line), &len, " %s=%llu", names[i], (unsigned long long)v[i]) < 0) {
			xp_log(XP_LOG_INFO, "exit summary: %s:%s", what, line);
			len = 0;
			line[0] = 0;
			i--;
		}
	}
	if (len || !any)
		xp_log(XP_LOG_INFO, "exit summary: %s:%s", what, any ? line : " none");
}

static void exit_summary(void)
{
	const struct xt_counters *c = xt_stack_counters(xp_eng.st);
	double secs = (double)(xp_now() - start_mono) / 1e9;
	xp_log(XP_LOG_INFO,
	       "exit summary: %.1f s on %s (%s); connections %llu opened, %llu accepted, %llu failed, %llu reset; "
	       "segments %llu in, %llu out, %llu retransmitted (%llu timeouts, %llu fast); "
	       "frames %llu in, %llu out, %llu not taken by the NIC; socket memory in use %llu bytes",
	       secs, xp_cfg.iface, xp_eng.backend ? xp_eng.backend : "?",
	       (unsigned long long)c->tcp_active_opens, (unsigned long long)c->tcp_passive_opens,
	       (unsigned long long)c->tcp_attempt_fails, (unsigned long long)c->tcp_estab_resets,
	       (unsigned long long)c->tcp_rx_segs, (unsigned long long)c->tcp_tx_segs,
	       (unsigned long long)c->tcp_retrans_segs, (unsigned long long)c->tcp_rto,
	       (unsigned long long)c->tcp_fast_retrans, (unsigned long long)c->rx_frames,
	       (unsigned long long)c->tx_frames, (unsigned long long)c->tx_drop_backend,
	       (unsigned long long)xt_stack_mem_used(xp_eng.st));
	int n = 0;
	while (xt_counter_names[n])
		n++;
	log_list("drops", xt_counter_names, (const uint64_t *)c, n, true);
	struct xt_packet_stats ps;
	struct xt_verbs_stats vs;
	if (xt_verbs_stats(xp_nic_base(xp_eng.nic), &vs) == 0)
		xp_log(XP_LOG_INFO, "exit summary: nic %s (verbs): rx %llu frames, tx %llu frames (%llu sent in place from "
				    "the send buffers), rx bad checksum %llu, "
				    "tx full %llu, tx oversize %llu, tx post errors %llu, error completions %llu, "
				    "QP recoveries %llu, flow errors %llu",
		       xp_cfg.iface, (unsigned long long)vs.rx_frames, (unsigned long long)vs.tx_frames,
		       (unsigned long long)vs.tx_zerocopy,
		       (unsigned long long)vs.rx_csum_bad, (unsigned long long)vs.tx_full,
		       (unsigned long long)vs.tx_oversize, (unsigned long long)vs.tx_post_errors,
		       (unsigned long long)vs.cq_errors, (unsigned long long)vs.qp_recoveries,
		       (unsigned long long)vs.flow_errors);
	else if (xt_packet_stats(xp_nic_base(xp_eng.nic), &ps) == 0)
		xp_log(XP_LOG_INFO, "exit summary: nic %s: rx %llu frames, tx %llu frames, rx ring drops %llu, "
				    "tx errors %llu, tx full %llu, tx oversize %llu",
		       xp_cfg.iface, (unsigned long long)ps.rx_frames, (unsigned long long)ps.tx_frames,
		       (unsigned long long)ps.rx_drops, (unsigned long long)ps.tx_errors,
		       (unsigned long long)ps.tx_full, (unsigned long long)ps.tx_oversize);
	pthread_mutex_lock(&ho_mu);
	char line[400] = "";
	size_t len = 0;
	uint64_t total = 0;
	for (uint32_t i = 0; i < nho; i++) {
		total += ho[i].count;
		if (append(line, sizeof(line), &len, "%s %llu \"%s\"", i ? "," : "", (unsigned long long)ho[i].count,
			   ho[i].reason) < 0)
			break;
	}
	pthread_mutex_unlock(&ho_mu);
	xp_log(XP_LOG_INFO, "exit summary: sockets handed to the kernel: %llu%s%s", (unsigned long long)total,
	       total ? ":" : "", line);
}

void xp_stats_exit(void)
{
	static atomic_bool done;
	if (!xp_eng.st || xp_eng.forked_child || seg_pid != getpid() || atomic_exchange(&done, true))
		return;
	xp_in_lib++;
	pthread_mutex_lock(&xp_eng.mu);
	if (xp_obs.exit_summary) { /* asked for: logged at info whatever XTCP_LOG_LEVEL says */
		int level = xp_log_level;
		xp_log_level = XP_LOG_DEBUG;
		exit_summary();
		xp_log_level = level;
	}
	xt_pcap_flush(xp_eng.nic);
	pthread_mutex_unlock(&xp_eng.mu);
	if (seg && !atomic_exchange(&closed, true))
		remove_file(); /* never unmapped: the progress thread may still look at it */
	xp_in_lib--;
}
