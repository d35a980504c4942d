/* Capture wrapper: every frame received from and sent to the inner nic is
 * written to a classic pcap file (tcpdump -r, wireshark).
 *
 * Timestamps are the `now` of the call plus cfg.ts_offset_ns, so a capture
 * of a virtual-time run shows virtual time (starting near the epoch) and the
 * shim's captures show wall-clock time.  Records go through a large stdio
 * buffer and reach the file on xt_pcap_flush(), on switching off, on
 * rotation, and at the latest on close.  A write error stops the capture,
 * never the traffic.
 *
 * Size limit and rotation (as tcpdump -C/-W, but the newest file keeps the
 * configured name): a record that would take the current file past
 * max_bytes closes it first; with files > 1, path.(k) becomes path.(k+1)
 * (the oldest, path.(files-1), is overwritten) and path becomes path.1;
 * with files == 1 path is started over.  So at most files x max_bytes of
 * disk are used.
 *
 * The wrapper owns inner: closing it closes inner.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "nic.h"
#include "pcap.h"

#define PCAP_MAGIC_US 0xa1b2c3d4u /* microsecond timestamps, writer's byte order */
#define PCAP_SNAPLEN 65535u
#define PCAP_LINKTYPE_ETHERNET 1u
#define PCAP_LINKTYPE_RAW 101u    /* bare IPv4/IPv6 */
#define PCAP_BUFSIZE (1u << 20)

/* File and record headers of the classic format (pcap-savefile(5)), in the
 * writer's native byte order, which the magic number tells readers. */
struct pcap_file_hdr {
	uint32_t magic;
	uint16_t version_major, version_minor;
	int32_t thiszone;
	uint32_t sigfigs, snaplen, linktype;
};

struct pcap_rec_hdr {
	uint32_t ts_sec, ts_usec, incl_len, orig_len;
};

struct pcap_nic {
	struct xt_nic nic; /* first: struct xt_nic * converts to struct pcap_nic * */
	struct xt_nic_ops ops; /* pcap_ops under the inner backend's name, and with its optional ops */
	struct xt_nic *inner;
	FILE *fp;          /* NULL while off */
	char *buf;         /* stdio buffer of fp */
	char *path;
	uint64_t max_bytes, cur_bytes;
	uint32_t files;
	int64_t ts_offset;
	bool on, failed;
	pid_t pid;         /* the process that owns the buffered records */
	struct xt_pcap_stats st;
};

static int pcap_rx(struct xt_nic *nic, struct xt_frame *frames, int n, xt_time_t now);

/* The wrapper is recognised by its rx_burst: its ops carry the inner
 * backend's name, so code that asks which backend runs still gets it. */
static struct pcap_nic *to_pcap(struct xt_nic *nic)
{
	return nic && nic->ops->rx_burst == pcap_rx ? (struct pcap_nic *)nic : NULL;
}

static bool write_file_hdr(FILE *fp, const struct xt_nic_caps *caps)
{
	struct pcap_file_hdr h = {
		.magic = PCAP_MAGIC_US,
		.version_major = 2,
		.version_minor = 4,
		.snaplen = PCAP_SNAPLEN,
		.linktype = caps->no_link_header ? PCAP_LINKTYPE_RAW : PCAP_LINKTYPE_ETHERNET,
	};
	return fwrite(&h, sizeof(h), 1, fp) == 1;
}

static void file_close(struct pcap_nic *p)
{
	if (p->fp && fclose(p->fp) != 0) /* flushes the buffer */
		p->failed = true;
	p->fp = NULL;
}

/* Opens path: appends when it already holds a capture of ours (switched
 * back on), else creates it with a file header.  "e": O_CLOEXEC, so a
 * program that execs does not inherit the capture. */
static int file_open(struct pcap_nic *p, bool truncate)
{
	struct stat sb;
	bool append = !truncate && stat(p->path, &sb) == 0 && S_ISREG(sb.st_mode) &&
		      sb.st_size >= (off_t)sizeof(struct pcap_file_hdr);
	p->fp = fopen(p->path, append ? "abe" : "wbe");
	if (!p->fp)
		return -errno;
	if (setvbuf(p->fp, p->buf, _IOFBF, PCAP_BUFSIZE) != 0) {
		fclose(p->fp);
		p->fp = NULL;
		return -ENOMEM;
	}
	if (append) {
		p->cur_bytes = (uint64_t)sb.st_size;
		return 0;
	}
	if (!write_file_hdr(p->fp, &p->nic.caps)) {
		fclose(p->fp);
		p->fp = NULL;
		return -EIO;
	}
	p->cur_bytes = sizeof(struct pcap_file_hdr);
	p->st.bytes += sizeof(struct pcap_file_hdr);
	return 0;
}

static void rotate(struct pcap_nic *p)
{
	file_close(p);
	if (p->files > 1) {
		size_t n = strlen(p->path) + 16;
		char from[n], to[n];
		for (uint32_t k = p->files - 1; k >= 1; k--) {
			if (k == 1)
				snprintf(from, n, "%s", p->path);
			else
				snprintf(from, n, "%s.%u", p->path, k - 1);
			snprintf(to, n, "%s.%u", p->path, k);
			(void)rename(from, to); /* a missing older file is fine */
		}
	}
	p->st.rotations++;
	if (file_open(p, true) < 0)
		p->failed = true;
}

/* The first n bytes of the frame, gathered payload included. */
static bool write_pieces(FILE *fp, const struct xt_frame *fr, uint32_t n)
{
	const uint8_t *p[3] = { fr->data, NULL, NULL };
	uint32_t l[3] = { fr->len, 0, 0 };

	if (fr->flags & XT_FRAME_GATHER) {
		p[1] = fr->pay[0], l[1] = fr->pay_len[0];
		p[2] = fr->pay[1], l[2] = fr->pay_len[1];
	}
	for (int i = 0; i < 3 && n; i++) {
		uint32_t k = l[i] < n ? l[i] : n;
		if (k && fwrite(p[i], 1, k, fp) != k)
			return false;
		n -= k;
	}
	return true;
}

static void pcap_record(struct pcap_nic *p, const struct xt_frame *fr, xt_time_t now)
{
	if (!p->fp || p->failed)
		return;
	int64_t t = (int64_t)now + p->ts_offset;
	if (t < 0)
		t = 0;
	uint32_t len = xt_frame_wire_len(fr);
	struct pcap_rec_hdr h = {
		.ts_sec = (uint32_t)((uint64_t)t / 1000000000u),
		.ts_usec = (uint32_t)((uint64_t)t % 1000000000u / 1000u),
		.incl_len = len < PCAP_SNAPLEN ? len : PCAP_SNAPLEN,
		.orig_len = len,
	};
	uint64_t rec = sizeof(h) + h.incl_len;
	if (p->max_bytes && p->cur_bytes + rec > p->max_bytes &&
	    p->cur_bytes > sizeof(struct pcap_file_hdr)) {
		rotate(p);
		if (p->failed)
			return;
	}
	if (fwrite(&h, sizeof(h), 1, p->fp) != 1 || !write_pieces(p->fp, fr, h.incl_len)) {
		p->failed = true;
		return;
	}
	p->cur_bytes += rec;
	p->st.frames++;
	p->st.bytes += rec;
}

static int pcap_rx(struct xt_nic *nic, struct xt_frame *frames, int n, xt_time_t now)
{
	struct pcap_nic *p = (struct pcap_nic *)nic;
	int got = xt_nic_rx(p->inner, frames, n, now);

	if (p->on)
		for (int i = 0; i < got; i++)
			pcap_record(p, &frames[i], now);
	return got;
}

/* Only frames the inner nic took were sent, so only those are recorded. */
static int pcap_tx(struct xt_nic *nic, const struct xt_frame *frames, int n, xt_time_t now)
{
	struct pcap_nic *p = (struct pcap_nic *)nic;
	int taken = xt_nic_tx(p->inner, frames, n, now);

	if (p->on)
		for (int i = 0; i < taken; i++)
			pcap_record(p, &frames[i], now);
	return taken;
}

static int pcap_wake_fd(struct xt_nic *nic)
{
	struct xt_nic *in = ((struct pcap_nic *)nic)->inner;
	return in->ops->wake_fd ? in->ops->wake_fd(in) : -1;
}

static int pcap_arm_wake(struct xt_nic *nic)
{
	struct xt_nic *in = ((struct pcap_nic *)nic)->inner;
	return in->ops->arm_wake ? in->ops->arm_wake(in) : 0;
}

static xt_time_t pcap_deadline(struct xt_nic *nic) { return xt_nic_deadline(((struct pcap_nic *)nic)->inner); }

static void pcap_close(struct xt_nic *nic)
{
	struct pcap_nic *p = (struct pcap_nic *)nic;

	/* A fork child closing its copy: the buffered records are the
	 * parent's, and writing them again would duplicate them in the file. */
	if (p->fp && p->pid != getpid())
		close(fileno(p->fp)); /* fclose's write-out then fails, harmlessly */
	file_close(p);
	free(p->buf);
	free(p->path);
	xt_nic_close(p->inner);
	free(p);
}

static int pcap_flow_add(struct xt_nic *nic, const struct xt_flow *flow)
{
	struct xt_nic *in = ((struct pcap_nic *)nic)->inner;
	return in->ops->flow_add(in, flow);
}

static int pcap_flow_del(struct xt_nic *nic, int id)
{
	struct xt_nic *in = ((struct pcap_nic *)nic)->inner;
	return in->ops->flow_del(in, id);
}

static void pcap_rx_hold(struct xt_nic *nic, uint64_t ref) { xt_nic_rx_hold(((struct pcap_nic *)nic)->inner, ref); }
static uint64_t pcap_tx_buf_reg(struct xt_nic *nic, void *buf, uint32_t len)
{ return xt_nic_tx_buf_reg(((struct pcap_nic *)nic)->inner, buf, len); }
static void pcap_tx_buf_unreg(struct xt_nic *nic, uint64_t h) { xt_nic_tx_buf_unreg(((struct pcap_nic *)nic)->inner, h); }
static int pcap_tx_fence(struct xt_nic *nic) { return xt_nic_tx_fence(((struct pcap_nic *)nic)->inner); }
static void pcap_rx_release(struct xt_nic *nic, uint64_t ref)
{
	xt_nic_rx_release(((struct pcap_nic *)nic)->inner, ref);
}

static const struct xt_nic_ops pcap_ops = {
	.name = "pcap",
	.rx_burst = pcap_rx,
	.tx_burst = pcap_tx,
	.wake_fd = pcap_wake_fd,
	.arm_wake = pcap_arm_wake,
	.next_deadline = pcap_deadline,
	.close = pcap_close,
};

struct xt_nic *xt_pcap_open(struct xt_nic *inner, const struct xt_pcap_cfg *cfg)
{
	struct pcap_nic *p;

	if (!inner || !cfg || !cfg->path || !*cfg->path)
		return NULL;
	p = calloc(1, sizeof(*p));
	if (!p)
		return NULL;
	p->buf = malloc(PCAP_BUFSIZE);
	p->path = strdup(cfg->path);
	p->ops = pcap_ops;
	p->ops.name = inner->ops->name;
	if (inner->ops->flow_add)
		p->ops.flow_add = pcap_flow_add, p->ops.flow_del = pcap_flow_del;
	if (inner->caps.rx_hold_window)
		p->ops.rx_hold = pcap_rx_hold, p->ops.rx_release = pcap_rx_release;
	if (inner->ops->tx_buf_reg)
		p->ops.tx_buf_reg = pcap_tx_buf_reg, p->ops.tx_buf_unreg = pcap_tx_buf_unreg,
		p->ops.tx_fence = pcap_tx_fence;
	p->nic.ops = &p->ops;
	p->nic.caps = inner->caps;
	p->max_bytes = cfg->max_bytes;
	p->files = cfg->files ? cfg->files : 1;
	p->ts_offset = cfg->ts_offset_ns;
	if (!p->buf || !p->path || (!cfg->start_off && file_open(p, true) < 0)) {
		free(p->buf);
		free(p->path);
		free(p);
		return NULL;
	}
	p->on = !cfg->start_off;
	p->pid = getpid();
	p->inner = inner;
	return &p->nic;
}

/* Returns NULL (and leaves inner to the caller) when the file cannot be
 * created or memory is short. */
struct xt_nic *xt_pcap_wrap(struct xt_nic *inner, const char *path)
{
	struct xt_pcap_cfg c = { .path = path };
	return xt_pcap_open(inner, &c);
}

int xt_pcap_set_on(struct xt_nic *nic, bool on)
{
	struct pcap_nic *p = to_pcap(nic);
	if (!p)
		return -EINVAL;
	if (on == p->on)
		return 0;
	if (!on) {
		p->on = false;
		file_close(p);
		return 0;
	}
	p->failed = false; /* a new start: e.g. the disk has room again */
	int r = file_open(p, false);
	if (r < 0)
		return r;
	p->on = true;
	return 0;
}

void xt_pcap_flush(struct xt_nic *nic)
{
	struct pcap_nic *p = to_pcap(nic);
	if (p && p->fp && fflush(p->fp) != 0)
		p->failed = true;
}

int xt_pcap_stats(struct xt_nic *nic, struct xt_pcap_stats *out)
{
	struct pcap_nic *p = to_pcap(nic);
	if (!p)
		return -EINVAL;
	*out = p->st;
	out->on = p->on && !p->failed;
	out->failed = p->failed;
	return 0;
}

struct xt_nic *xt_pcap_inner(struct xt_nic *nic)
{
	struct pcap_nic *p = to_pcap(nic);
	return p ? p->inner : NULL;
}
