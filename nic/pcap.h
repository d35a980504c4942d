/* Capture wrapper with a size limit, rotation and on/off switching (pcap.c).
 * xt_pcap_wrap() in nic.h is the simple form: one file, no limit, on. */
#ifndef XT_PCAP_H
#define XT_PCAP_H

#include <stdbool.h>
#include <stdint.h>

#include "nic.h"

struct xt_pcap_cfg {
	const char *path;     /* the current file; older ones are path.1, path.2, ... */
	uint64_t max_bytes;   /* a file never grows past this (0: no limit); then rotation */
	uint32_t files;       /* files kept, path included (0 means 1: path is started over) */
	int64_t ts_offset_ns; /* added to `now` in record timestamps (wall clock = monotonic + offset) */
	bool start_off;       /* no file is created until xt_pcap_set_on(nic, true) */
};

struct xt_pcap_stats {
	uint64_t frames, bytes; /* records written (bytes: records and file headers) */
	uint64_t rotations;     /* files started after the first */
	bool on, failed;        /* capturing; a write or open error stopped the capture */
};

/* Returns NULL (inner stays the caller's) when the first file cannot be
 * created or memory is short.  The wrapper owns inner: closing it closes inner. */
struct xt_nic *xt_pcap_open(struct xt_nic *inner, const struct xt_pcap_cfg *cfg);
/* Switches capture on (appending to path, or creating it) or off (the
 * buffered records are written out first).  0, or -errno when the file
 * cannot be opened (capture stays off); -EINVAL if nic is no capture wrapper. */
int xt_pcap_set_on(struct xt_nic *nic, bool on);
/* Writes buffered records out, so readers of the live file see them. */
void xt_pcap_flush(struct xt_nic *nic);
int xt_pcap_stats(struct xt_nic *nic, struct xt_pcap_stats *out);
/* The nic a capture wrapper wraps, or NULL when nic is no capture wrapper. */
struct xt_nic *xt_pcap_inner(struct xt_nic *nic);

#endif
