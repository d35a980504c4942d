/* Writer core of the statistics segment (stats_seg.c); layout in stats_fmt.h. */
#ifndef XTCP_STATS_SEG_H
#define XTCP_STATS_SEG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "../stack/xtcp.h"
#include "stats_fmt.h"

struct xts_ident {
	int pid;
	uint32_t ip, prefix, max_sockets;
	uint64_t start_realtime_ns, proc_start_ticks;
	const char *comm, *backend, *iface;
	const char *pcap_path;      /* NULL: no capture configured */
	uint64_t pcap_max_bytes;
	uint32_t pcap_files;
};

/* The process's fd of a socket's udata (preload: struct xp_sock *), or -1. */
typedef int32_t (*xts_fd_fn)(void *ctx, const void *udata);

/* Bytes of a segment with sock_max socket entries. */
size_t xts_seg_size(uint32_t sock_max);
/* Lays out a zeroed segment of size bytes and writes its static part. */
void xts_seg_init(void *mem, size_t size, uint32_t sock_max, const struct xts_ident *id);
/* The seqlock around every snapshot (the caller serialises writers). */
void xts_write_begin(void *mem);
void xts_write_end(void *mem);
/* Between begin and end: the engine's counters, memory and every socket
 * (fd_of may be NULL: no fd column). */
void xts_fill_engine(void *mem, struct xt_stack *st, xt_time_t now, xts_fd_fn fd_of, void *ctx);
/* The shim's counters (XTS_NSHIM, named in stats_seg.c). */
#define XTS_NSHIM 6
void xts_fill_shim(void *mem, const uint64_t vals[XTS_NSHIM]);
void xts_fill_nic(void *mem, const char *nic_name, const char *const *names, const uint64_t *vals, uint32_t n);
void xts_fill_handoffs(void *mem, const struct xts_handoff *ho, uint32_t n);

uint64_t xts_realtime_ns(void);
/* starttime of /proc/<pid>/stat, 0 if unreadable. */
uint64_t xts_proc_start_ticks(int pid);

#endif
