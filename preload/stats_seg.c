/* The statistics segment's writer core (layout: stats_fmt.h).
 *
 * Depends on the engine API only (xt_tcp_next/xt_tcp_view enumerate every
 * socket, orphans and connections not yet accepted included, in time
 * proportional to the socket table).
 * Nothing here allocates, locks or makes a system call other than
 * clock_gettime: the caller owns the memory and serialises writers.
 */
#define _GNU_SOURCE
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "../stack/xtcp.h"
#include "stats_seg.h"

static uint32_t align8(size_t v)
{
	return (uint32_t)((v + 7) & ~(size_t)7);
}

/* The shim's own counters, after the engine's in the same table. */
static const char *const shim_names[XTS_NSHIM] = { "epoll_kernel_looks", "epoll_kernel_skips",
						    "accept_placeholders_shared", "accept_placeholders_own",
						    "sendfile_direct_bytes", "sendfile_bounce_bytes" };

static uint32_t count_engine_counters(void)
{
	uint32_t n = 0;
	while (xt_counter_names[n])
		n++;
	return n;
}

static uint32_t count_counters(void)
{
	return count_engine_counters() + XTS_NSHIM;
}

size_t xts_seg_size(uint32_t sock_max)
{
	uint32_t nc = count_counters();
	size_t sz = align8(sizeof(struct xts_hdr));
	sz += align8((size_t)nc * XTS_NAME_LEN) + (size_t)nc * 8;
	sz += align8((size_t)XTS_MAX_NIC * XTS_NAME_LEN) + (size_t)XTS_MAX_NIC * 8;
	sz += align8(sizeof(struct xts_handoff) * XTS_MAX_HANDOFF);
	sz += (size_t)sock_max * sizeof(struct xts_sock);
	return sz;
}

static void copy_str(char *dst, size_t n, const char *src)
{
	snprintf(dst, n, "%s", src ? src : "");
}

uint64_t xts_realtime_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

uint64_t xts_proc_start_ticks(int pid)
{
	char path[64], buf[1024];
	snprintf(path, sizeof(path), "/proc/%d/stat", pid);
	FILE *f = fopen(path, "re");
	if (!f)
		return 0;
	size_t n = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	buf[n] = 0;
	/* comm may hold spaces and ')': fields restart after the last ')' */
	char *p = strrchr(buf, ')');
	if (!p)
		return 0;
	unsigned long long v = 0;
	/* after ')': state(3) ppid pgrp session tty_nr tpgid flags minflt cminflt
	 * majflt cmajflt utime stime cutime cstime priority nice num_threads
	 * itrealvalue starttime(22) */
	if (sscanf(p + 1, " %*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %*u %*u %*d %*d %*d %*d %*d %*d %llu",
		   &v) != 1)
		return 0;
	return v;
}

void xts_seg_init(void *mem, size_t size, uint32_t sock_max, const struct xts_ident *id)
{
	struct xts_hdr *h = mem;
	memset(mem, 0, size);
	uint32_t nc = count_counters();
	uint32_t off = align8(sizeof(*h));
	h->counter_names_off = off;
	off += align8((size_t)nc * XTS_NAME_LEN);
	h->counters_off = off;
	off += nc * 8;
	h->nic_names_off = off;
	off += align8((size_t)XTS_MAX_NIC * XTS_NAME_LEN);
	h->nic_off = off;
	off += XTS_MAX_NIC * 8;
	h->handoff_off = off;
	off += align8(sizeof(struct xts_handoff) * XTS_MAX_HANDOFF);
	h->sock_off = off;
	h->sock_max = sock_max;
	h->sock_entry_size = sizeof(struct xts_sock);
	h->ncounters = nc;
	h->nnic_max = XTS_MAX_NIC;
	char *names = (char *)mem + h->counter_names_off;
	uint32_t ne = count_engine_counters();
	for (uint32_t i = 0; i < nc; i++)
		copy_str(names + (size_t)i * XTS_NAME_LEN, XTS_NAME_LEN,
			 i < ne ? xt_counter_names[i] : shim_names[i - ne]);

	h->version = XTS_VERSION;
	h->hdr_size = sizeof(*h);
	h->total_size = size;
	h->pid = id->pid;
	h->ip = id->ip;
	h->prefix = id->prefix;
	h->max_sockets = id->max_sockets;
	copy_str(h->pcap_path, sizeof(h->pcap_path), id->pcap_path);
	h->pcap_max_bytes = id->pcap_max_bytes;
	h->pcap_files = id->pcap_files;
	h->start_realtime_ns = id->start_realtime_ns;
	h->proc_start_ticks = id->proc_start_ticks;
	copy_str(h->comm, sizeof(h->comm), id->comm);
	copy_str(h->backend, sizeof(h->backend), id->backend);
	copy_str(h->iface, sizeof(h->iface), id->iface);
	/* magic last: a reader that sees it sees the rest */
	atomic_thread_fence(memory_order_release);
	h->magic = XTS_MAGIC;
}

void xts_write_begin(void *mem)
{
	struct xts_hdr *h = mem;
	__atomic_store_n(&h->seq, h->seq + 1, __ATOMIC_RELAXED);
	atomic_thread_fence(memory_order_release); /* seq odd before any data store */
}

void xts_write_end(void *mem)
{
	struct xts_hdr *h = mem;
	__atomic_store_n(&h->seq, h->seq + 1, __ATOMIC_RELEASE);
}

void xts_fill_shim(void *mem, const uint64_t vals[XTS_NSHIM])
{
	struct xts_hdr *h = mem;
	uint64_t *dst = (uint64_t *)((char *)mem + h->counters_off);
	memcpy(dst + h->ncounters - XTS_NSHIM, vals, XTS_NSHIM * 8);
}

void xts_fill_nic(void *mem, const char *nic_name, const char *const *names, const uint64_t *vals, uint32_t n)
{
	struct xts_hdr *h = mem;
	if (n > h->nnic_max)
		n = h->nnic_max;
	char *nm = (char *)mem + h->nic_names_off;
	uint64_t *v = (uint64_t *)((char *)mem + h->nic_off);
	for (uint32_t i = 0; i < n; i++) {
		copy_str(nm + (size_t)i * XTS_NAME_LEN, XTS_NAME_LEN, names[i]);
		v[i] = vals[i];
	}
	copy_str(h->nic_name, sizeof(h->nic_name), nic_name);
	h->nnic = n;
}

void xts_fill_handoffs(void *mem, const struct xts_handoff *ho, uint32_t n)
{
	struct xts_hdr *h = mem;
	if (n > XTS_MAX_HANDOFF)
		n = XTS_MAX_HANDOFF;
	memcpy((char *)mem + h->handoff_off, ho, n * sizeof(*ho));
	h->nhandoff = n;
}

static void fill_sock(const struct xt_sock_view *v, int id, int32_t fd, struct xts_sock *e)
{
	const struct xt_tcp_info *ti = &v->info;
	memset(e, 0, sizeof(*e));
	e->fd = fd;
	e->handle = id;
	e->state = v->state;
	e->flags = (v->orphan ? XTS_S_ORPHAN : 0) | (v->pending ? XTS_S_PENDING : 0);
	e->lip = v->lip;
	e->lport = v->lport;
	e->rip = v->rip;
	e->rport = v->rport;
	e->ca_state = ti->ca_state;
	e->retransmits = ti->retransmits;
	e->options = ti->options;
	e->snd_wscale = ti->snd_wscale;
	e->rcv_wscale = ti->rcv_wscale;
	e->recv_q = ti->rcv_queue;
	e->send_q = ti->snd_queue;
	e->rtt_us = ti->rtt_us;
	e->rttvar_us = ti->rttvar_us;
	e->rto_us = ti->rto_us;
	e->snd_cwnd = ti->snd_cwnd;
	e->snd_ssthresh = ti->snd_ssthresh;
	e->snd_mss = ti->snd_mss;
	e->rcv_mss = ti->rcv_mss;
	e->unacked = ti->unacked;
	e->lost = ti->lost;
	e->retrans = ti->retrans;
	e->total_retrans = ti->total_retrans;
	e->segs_out = ti->segs_out;
	e->segs_in = ti->segs_in;
	e->snd_wnd = ti->snd_wnd;
	e->rcv_wnd = ti->rcv_wnd;
	e->notsent_bytes = ti->notsent_bytes;
	e->bytes_acked = ti->bytes_acked;
	e->bytes_received = ti->bytes_received;
}

void xts_fill_engine(void *mem, struct xt_stack *st, xt_time_t now, xts_fd_fn fd_of, void *ctx)
{
	struct xts_hdr *h = mem;
	const uint64_t *c = (const uint64_t *)xt_stack_counters(st);
	uint64_t *dst = (uint64_t *)((char *)mem + h->counters_off);
	memcpy(dst, c, (size_t)(h->ncounters - XTS_NSHIM) * 8);
	h->mem_used = xt_stack_mem_used(st);

	struct xts_sock *tab = (struct xts_sock *)((char *)mem + h->sock_off);
	uint32_t n = 0, total = xt_stack_nsockets(st), seen = 0;
	struct xt_sock_view v;
	for (int id = xt_tcp_next(st, 0); id >= 0 && seen < total && n < h->sock_max;
	     id = xt_tcp_next(st, id + 1)) {
		seen++;
		if (xt_tcp_view(st, id, &v, now) < 0)
			continue;
		int32_t fd = fd_of && v.udata ? fd_of(ctx, v.udata) : -1;
		fill_sock(&v, id, fd, &tab[n++]);
	}
	h->nsock = n;
	h->nsock_total = total;
	h->flags = total > n ? XTS_F_SOCK_TRUNCATED : 0;
	h->publish_engine_ns = now;
	h->publish_realtime_ns = xts_realtime_ns();
	h->publishes++;
}
