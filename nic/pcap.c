/* Capture wrapper: every frame received from and sent to the inner nic is
 * written to a classic pcap file (tcpdump -r, wireshark).
 *
 * Timestamps are the `now` of the call, so a capture of a virtual-time run
 * shows virtual time (starting near the epoch).  Records go through a large
 * stdio buffer and reach the file at the latest on close.  A write error
 * stops the capture, never the traffic.
 *
 * The wrapper owns inner: closing it closes inner.
 */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>

#include "nic.h"

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
	struct xt_nic *inner;
	FILE *fp;
	char *buf;         /* stdio buffer of fp */
	bool failed;
};

static struct pcap_nic *to_pcap(struct xt_nic *nic) { return (struct pcap_nic *)nic; }

static void pcap_record(struct pcap_nic *p, const struct xt_frame *fr, xt_time_t now)
{
	struct pcap_rec_hdr h = {
		.ts_sec = (uint32_t)(now / 1000000000u),
		.ts_usec = (uint32_t)(now % 1000000000u / 1000u),
		.incl_len = fr->len < PCAP_SNAPLEN ? fr->len : PCAP_SNAPLEN,
		.orig_len = fr->len,
	};

	if (p->failed)
		return;
	if (fwrite(&h, sizeof(h), 1, p->fp) != 1 || fwrite(fr->data, 1, h.incl_len, p->fp) != h.incl_len)
		p->failed = true;
}

static int pcap_rx(struct xt_nic *nic, struct xt_frame *frames, int n, xt_time_t now)
{
	struct pcap_nic *p = to_pcap(nic);
	int got = xt_nic_rx(p->inner, frames, n, now);

	for (int i = 0; i < got; i++)
		pcap_record(p, &frames[i], now);
	return got;
}

/* Only frames the inner nic took were sent, so only those are recorded. */
static int pcap_tx(struct xt_nic *nic, const struct xt_frame *frames, int n, xt_time_t now)
{
	struct pcap_nic *p = to_pcap(nic);
	int taken = xt_nic_tx(p->inner, frames, n, now);

	for (int i = 0; i < taken; i++)
		pcap_record(p, &frames[i], now);
	return taken;
}

static int pcap_wake_fd(struct xt_nic *nic) { return to_pcap(nic)->inner->ops->wake_fd(to_pcap(nic)->inner); }
static int pcap_arm_wake(struct xt_nic *nic) { return to_pcap(nic)->inner->ops->arm_wake(to_pcap(nic)->inner); }
static xt_time_t pcap_deadline(struct xt_nic *nic) { return xt_nic_deadline(to_pcap(nic)->inner); }

static void pcap_close(struct xt_nic *nic)
{
	struct pcap_nic *p = to_pcap(nic);

	fclose(p->fp); /* flushes the buffer */
	free(p->buf);
	xt_nic_close(p->inner);
	free(p);
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

/* Returns NULL (and leaves inner to the caller) when the file cannot be
 * created or memory is short. */
struct xt_nic *xt_pcap_wrap(struct xt_nic *inner, const char *path)
{
	struct pcap_nic *p;

	if (!inner || !path)
		return NULL;
	p = calloc(1, sizeof(*p));
	if (!p)
		return NULL;
	/* "e": O_CLOEXEC, so a program that execs does not inherit the capture. */
	p->fp = fopen(path, "wbe");
	p->buf = malloc(PCAP_BUFSIZE);
	if (!p->fp || !p->buf || setvbuf(p->fp, p->buf, _IOFBF, PCAP_BUFSIZE) != 0 ||
	    !write_file_hdr(p->fp, &inner->caps)) {
		if (p->fp)
			fclose(p->fp);
		free(p->buf);
		free(p);
		return NULL;
	}
	p->nic.ops = &pcap_ops;
	p->nic.caps = inner->caps;
	p->inner = inner;
	return &p->nic;
}
