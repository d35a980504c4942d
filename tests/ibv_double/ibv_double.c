/* Test double of libibverbs (rdma-core 44): raw packet QPs over an in-memory
 * wire or AF_PACKET.  What it models and how tests drive it: xtd.h.
 *
 * Semantics kept from real devices (mlx5 and the IB spec), because the
 * backend must cope with them:
 *   - QP state table: RESET -> INIT (needs IBV_QP_PORT) -> RTR -> RTS; any ->
 *     RESET or ERR; anything else is EINVAL.  Receive WRs may be posted from
 *     INIT on, sends only in RTS.  Frames reach a QP only in RTR/RTS.
 *   - ERR flushes every posted receive WR (IBV_WC_WR_FLUSH_ERR), and WRs
 *     posted while in ERR complete flushed at once, signalled or not.  An
 *     error completion moves the QP to ERR.
 *   - Send queue occupancy is released only when a completion is polled: a
 *     signalled CQE frees every WR up to it (as the mlx5 provider does), so a
 *     sender that never signals fills its queue and gets ENOMEM.
 *   - SGEs are checked against registered MRs (lkey, bounds): a bad one
 *     completes with IBV_WC_LOC_PROT_ERR; a frame longer than the receive
 *     WR completes with IBV_WC_LOC_LEN_ERR.  The first SGE of a non-inline
 *     send must hold at least 18 bytes (mlx5's inline L2 header); inline
 *     sends must fit max_inline_data.
 *   - A CQ raises one event on its channel for the first completion after
 *     ibv_req_notify_cq (completions already queued raise none); events read
 *     must be acknowledged before ibv_destroy_cq (EBUSY here, a hang on real
 *     devices).  A full CQ overruns: IBV_EVENT_CQ_ERR.
 *   - Flow rules match Ethernet, IPv4 (and IPv4_EXT proto), TCP and UDP
 *     specs by mask; rules are tried by priority (lower first) then age; a
 *     rule without DONT_TRAP takes the frame, a DONT_TRAP rule copies it and
 *     matching goes on; what no trapping rule takes goes to the kernel
 *     (counted; on the packet wire the kernel has it anyway).  A QP gets a
 *     frame at most once.  A QP with rules cannot be destroyed (EBUSY).
 *   - Raw packet QPs and flow rules need CAP_NET_RAW (capget) -> EPERM.
 *   - IBV_SEND_IP_CSUM fills the IPv4 header checksum and the TCP/UDP
 *     checksum in software; IBV_WR_TSO cuts the payload into mss-sized
 *     segments (IP id, TCP sequence, FIN/PSH on the last, CWR on the first);
 *     received IPv4 TCP/UDP frames whose checksums verify complete with
 *     IBV_WC_IP_CSUM_OK.
 *
 * One mutex guards everything; the packet wire's receive thread takes it to
 * deliver.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <endian.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <poll.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <linux/capability.h>
#include <linux/if_packet.h>
#include <net/ethernet.h>
#include <net/if.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>

#include <infiniband/verbs.h>
#include "xtd.h"

/* The header turns these names into macros or inline wrappers; the library
 * defines the real functions. */
#undef ibv_get_device_list
#undef ibv_reg_mr
#undef ibv_query_port

#define EXPORT __attribute__((visibility("default")))

#define XD_MAXDEV 4
#define XD_MAX_WR 8192
#define XD_MAX_SGE 4
#define XD_MAX_CQE 65536
#define XD_INLINE 256
#define XD_TSO_MAX (256u * 1024u)
#define XD_TSO_HDR 256
#define XD_MIN_SGE 18
#define XD_BUF (XD_TSO_MAX + XD_TSO_HDR)
#define XD_QPN0 0x100

struct xd_ctx;
struct xd_qp;

struct xd_flow {
	struct ibv_flow flow; /* handed out */
	struct xd_qp *qp;
	uint16_t priority;
	uint32_t flags;
	uint64_t seq;
	bool has_eth, has_ip, has_l4;
	int l4_type;          /* IBV_FLOW_SPEC_TCP / _UDP */
	struct ibv_flow_eth_filter eth_v, eth_m;
	struct ibv_flow_ipv4_ext_filter ip_v, ip_m;
	struct ibv_flow_tcp_udp_filter l4_v, l4_m;
	struct xd_flow *next;
};

struct xd_dev {
	struct ibv_device ibdev;
	int idx;
	char ifname[IF_NAMESIZE];
	uint8_t mac[6];
	int mtu;
	unsigned int caps;
	int port_state;
	int peer;             /* mem wire: the other device */
	bool packet;          /* packet wire */
	int pkt_fd, ifindex;
	int stop[2];
	pthread_t thr;
	bool thr_on;
	int nopen;
	bool fatal;
	struct xd_ctx *ctxs;
	struct xd_flow *flows; /* sorted by priority, then age */
	int f_post_send, f_post_recv, f_send_cqe, f_recv_cqe, f_reset;
	bool late_dma;
	int64_t live;          /* contexts, PDs, MRs, channels, CQs, QPs, flows alive */
	struct xtd_stats st;
};

struct xd_ctx {
	struct verbs_context vctx; /* context is its last member: handed out */
	struct xd_dev *dev;
	int async_wr;
	struct xd_qp *qps;
	struct xd_ctx *next;
};

struct xd_pd {
	struct ibv_pd pd;
	struct xd_ctx *c;
};

struct xd_mr {
	struct ibv_mr mr;
	struct xd_mr *next;
};

struct xd_chan {
	struct ibv_comp_channel ch;
	int wfd;
	int ncq;
};

struct xd_cqe {
	struct ibv_wc wc;
	struct xd_qp *sq_owner; /* send completion: frees the send queue up to sq_seq */
	uint64_t sq_seq;
};

struct xd_cq {
	struct ibv_cq cq;
	struct xd_ctx *c;
	struct xd_cqe *ring;
	int cap, head, count;
	bool armed;
	uint64_t ev_read, ev_acked;
	int nqp;
};

struct xd_rwr {
	uint64_t wr_id;
	int nsge;
	struct ibv_sge sge[XD_MAX_SGE];
};

/* A send WR kept for later (XTD_LATE_DMA): what the device took at post
 * time (the WR, its SGE list, inline data and the TSO header, both copied
 * into the WQE), not the memory the SGEs point to. */
struct xd_lwr {
	struct ibv_send_wr wr;
	struct ibv_sge sge[XD_MAX_SGE];
	uint8_t *copy;   /* inline data or TSO header */
	uint64_t seq;
};

struct xd_qp {
	struct ibv_qp qp;
	struct xd_ctx *c;
	struct xd_cq *scq, *rcq;
	uint32_t max_send_wr, max_recv_wr, max_send_sge, max_recv_sge, max_inline, max_tso_hdr;
	int sq_sig_all;
	uint8_t port;
	uint64_t sq_posted, sq_done;
	struct xd_lwr *lq;     /* XTD_LATE_DMA: posted send WRs not read yet, in order */
	uint32_t lq_head, lq_count, lq_cap;
	struct xd_rwr *rq;
	uint32_t rq_head, rq_count;
	int nflows;
	struct xd_qp *next;
};

static pthread_mutex_t g_mu = PTHREAD_MUTEX_INITIALIZER;
static struct xd_dev g_dev[XD_MAXDEV];
static int g_ndev = -1; /* -1: not built yet */
static char g_root[128];
static pid_t g_root_pid;
static struct xd_mr *g_mrs;
static uint32_t g_next_key = 0x1000, g_next_qpn = XD_QPN0, g_next_handle = 1;
static uint64_t g_flow_seq;
static uint64_t g_async_read, g_async_acked;
static unsigned int g_default_caps = XTD_CAP_ALL;
static bool g_default_late; /* XTCP_DOUBLE_LATE_DMA */
static uint8_t g_buf[XD_BUF];  /* gather buffer of one send (under g_mu) */
static uint8_t g_seg[XD_BUF];  /* one TSO segment */

static void lock(void) { pthread_mutex_lock(&g_mu); }
static void unlock(void) { pthread_mutex_unlock(&g_mu); }

/* --- checksums, TSO ------------------------------------------------------------ */

static uint16_t rd16(const uint8_t *p) { return (uint16_t)((p[0] << 8) | p[1]); }
static uint32_t rd32(const uint8_t *p)
{
	return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3];
}
static void wr16(uint8_t *p, uint16_t v) { p[0] = (uint8_t)(v >> 8); p[1] = (uint8_t)v; }
static void wr32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)(v >> 24); p[1] = (uint8_t)(v >> 16); p[2] = (uint8_t)(v >> 8); p[3] = (uint8_t)v;
}

static uint32_t sum16(uint32_t s, const uint8_t *p, size_t len)
{
	for (; len >= 2; p += 2, len -= 2)
		s += rd16(p);
	if (len)
		s += (uint32_t)p[0] << 8;
	while (s >> 16)
		s = (s & 0xffffu) + (s >> 16);
	return s;
}

static uint16_t fold(uint32_t s)
{
	while (s >> 16)
		s = (s & 0xffffu) + (s >> 16);
	return (uint16_t)~s;
}

struct l34 {
	bool ipv4, l4;       /* IPv4; a whole TCP/UDP datagram */
	uint32_t ihl, tot, l4len;
	uint8_t proto;
	uint8_t *ip, *l4p;
};

static struct l34 parse_l34(uint8_t *f, uint32_t len)
{
	struct l34 r;

	memset(&r, 0, sizeof(r));
	if (len < 34 || rd16(f + 12) != 0x0800 || (f[14] >> 4) != 4)
		return r;
	r.ip = f + 14;
	r.ihl = (r.ip[0] & 0xfu) * 4u;
	r.tot = rd16(r.ip + 2);
	if (r.ihl < 20 || r.tot < r.ihl || r.tot > len - 14)
		return r;
	r.ipv4 = true;
	r.proto = r.ip[9];
	if ((r.proto == 6 || r.proto == 17) && !(rd16(r.ip + 6) & 0x3fff)) {
		r.l4p = r.ip + r.ihl;
		r.l4len = r.tot - r.ihl;
		r.l4 = r.l4len >= (r.proto == 6 ? 20u : 8u);
	}
	return r;
}

static uint32_t pseudo(const struct l34 *r)
{
	uint32_t s = 0;
	s = sum16(s, r->ip + 12, 8);
	s += r->proto;
	s += r->l4len;
	return s;
}

/* IBV_SEND_IP_CSUM: fills the IPv4 header checksum and the TCP/UDP one. */
static void fill_csum(uint8_t *f, uint32_t len)
{
	struct l34 r = parse_l34(f, len);
	uint32_t coff;
	uint16_t c;

	if (!r.ipv4)
		return;
	wr16(r.ip + 10, 0);
	wr16(r.ip + 10, fold(sum16(0, r.ip, r.ihl)));
	if (!r.l4)
		return;
	coff = r.proto == 6 ? 16 : 6;
	wr16(r.l4p + coff, 0);
	c = fold(sum16(pseudo(&r), r.l4p, r.l4len));
	if (r.proto == 17 && c == 0)
		c = 0xffff;
	wr16(r.l4p + coff, c);
}

/* What a device checks before it sets IBV_WC_IP_CSUM_OK. */
static bool csum_verifies(uint8_t *f, uint32_t len)
{
	struct l34 r = parse_l34(f, len);

	if (!r.ipv4 || !r.l4 || fold(sum16(0, r.ip, r.ihl)) != 0)
		return false;
	if (r.proto == 17 && rd16(r.l4p + 6) == 0)
		return true;
	return fold(sum16(pseudo(&r), r.l4p, r.l4len)) == 0;
}

typedef void (*emit_fn)(struct xd_dev *d, uint8_t *frame, uint32_t len);

/* TCP segmentation of frame (headers hl bytes, then payload) into segments
 * of at most mss payload bytes, each with valid checksums. */
static void tcp_segment(struct xd_dev *d, const uint8_t *frame, uint32_t len, uint32_t hl, uint32_t mss, emit_fn emit)
{
	uint32_t plen = len - hl, off = 0, seq0, k = 0;
	uint16_t id0;
	uint8_t flags0;

	seq0 = rd32(frame + 14 + ((frame[14] & 0xfu) * 4u) + 4);
	id0 = rd16(frame + 14 + 4);
	flags0 = frame[14 + (frame[14] & 0xfu) * 4u + 13];
	do {
		uint32_t n = plen - off < mss ? plen - off : mss;
		uint8_t *s = g_seg, *ip = s + 14, *th;
		uint32_t ihl = (frame[14] & 0xfu) * 4u;
		bool last = off + n >= plen, first = off == 0;

		memcpy(s, frame, hl);
		memcpy(s + hl, frame + hl + off, n);
		th = ip + ihl;
		wr16(ip + 2, (uint16_t)(hl - 14 + n));
		wr16(ip + 4, (uint16_t)(id0 + k));
		wr32(th + 4, seq0 + off);
		th[13] = flags0;
		if (!last)
			th[13] &= (uint8_t)~0x09; /* FIN, PSH on the last segment only */
		if (!first)
			th[13] &= (uint8_t)~0x80; /* CWR on the first only */
		fill_csum(s, hl + n);
		emit(d, s, hl + n);
		off += n;
		k++;
	} while (off < plen);
}

/* --- capabilities ------------------------------------------------------------- */

static bool proc_has_net_raw(void)
{
	struct __user_cap_header_struct h = { .version = _LINUX_CAPABILITY_VERSION_3, .pid = 0 };
	struct __user_cap_data_struct dd[2];

	memset(dd, 0, sizeof(dd));
	if (syscall(SYS_capget, &h, dd) < 0)
		return geteuid() == 0;
	return (dd[CAP_NET_RAW / 32].effective >> (CAP_NET_RAW % 32)) & 1u;
}

static bool net_raw_ok(struct xd_dev *d)
{
	return (d->caps & XTD_CAP_NETRAW) && proc_has_net_raw();
}

static unsigned int parse_caps(const char *s, unsigned int caps)
{
	static const struct { const char *name; unsigned int bit; } names[] = {
		{ "raw", XTD_CAP_RAW }, { "csum", XTD_CAP_CSUM }, { "tso", XTD_CAP_TSO },
		{ "flow", XTD_CAP_FLOW }, { "dont_trap", XTD_CAP_DONT_TRAP }, { "inline", XTD_CAP_INLINE },
		{ "access", XTD_CAP_ACCESS }, { "netraw", XTD_CAP_NETRAW }, { "eth", XTD_CAP_ETH },
	};
	char buf[256], *save = NULL, *t;

	if (!s)
		return caps;
	snprintf(buf, sizeof(buf), "%s", s);
	for (t = strtok_r(buf, ", ", &save); t; t = strtok_r(NULL, ", ", &save)) {
		bool off = *t == '-';
		if (*t == '-' || *t == '+')
			t++;
		for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
			if (!strcmp(t, names[i].name))
				caps = off ? caps & ~names[i].bit : caps | names[i].bit;
	}
	return caps;
}

/* --- completion queues ---------------------------------------------------------- */

static void raise_async(struct xd_ctx *c, enum ibv_event_type type, void *elem, int port)
{
	struct ibv_async_event ev;

	memset(&ev, 0, sizeof(ev));
	ev.event_type = type;
	if (type == IBV_EVENT_PORT_ERR || type == IBV_EVENT_PORT_ACTIVE)
		ev.element.port_num = port;
	else if (type == IBV_EVENT_CQ_ERR)
		ev.element.cq = elem;
	else
		ev.element.qp = elem;
	if (write(c->async_wr, &ev, sizeof(ev)) == (ssize_t)sizeof(ev))
		c->dev->st.async_events++;
}

static void cq_push(struct xd_cq *cq, const struct ibv_wc *wc, struct xd_qp *owner, uint64_t seq)
{
	struct xd_dev *d = cq->c->dev;
	struct xd_cqe *e;

	if (cq->count == cq->cap) {
		d->st.cq_overruns++;
		raise_async(cq->c, IBV_EVENT_CQ_ERR, &cq->cq, 0);
		return;
	}
	e = &cq->ring[(cq->head + cq->count) % cq->cap];
	e->wc = *wc;
	e->sq_owner = owner;
	e->sq_seq = seq;
	cq->count++;
	d->st.cqes++;
	if (wc->status == IBV_WC_WR_FLUSH_ERR)
		d->st.flush_cqes++;
	else if (wc->status != IBV_WC_SUCCESS)
		d->st.error_cqes++;
	if (cq->armed && cq->cq.channel) {
		struct xd_chan *ch = (struct xd_chan *)cq->cq.channel;
		void *p = &cq->cq;

		cq->armed = false;
		if (write(ch->wfd, &p, sizeof(p)) == (ssize_t)sizeof(p))
			d->st.cq_events++;
	}
}

static void wc_fill(struct ibv_wc *wc, struct xd_qp *qp, uint64_t wr_id, enum ibv_wc_status st, enum ibv_wc_opcode op)
{
	memset(wc, 0, sizeof(*wc));
	wc->wr_id = wr_id;
	wc->status = st;
	wc->opcode = op;
	wc->qp_num = qp->qp.qp_num;
	wc->vendor_err = st == IBV_WC_SUCCESS || st == IBV_WC_WR_FLUSH_ERR ? 0 : 0x51;
}

static void qp_flush_rq(struct xd_qp *qp)
{
	struct ibv_wc wc;

	while (qp->rq_count) {
		struct xd_rwr *r = &qp->rq[qp->rq_head];
		wc_fill(&wc, qp, r->wr_id, IBV_WC_WR_FLUSH_ERR, IBV_WC_RECV);
		cq_push(qp->rcq, &wc, NULL, 0);
		qp->rq_head = (qp->rq_head + 1) % qp->max_recv_wr;
		qp->rq_count--;
	}
}

static void qp_to_err(struct xd_qp *qp)
{
	if (qp->qp.state == IBV_QPS_ERR)
		return;
	qp->qp.state = IBV_QPS_ERR;
	qp->c->dev->st.qp_to_err++;
	qp_flush_rq(qp);
}

/* --- the wire -------------------------------------------------------------------- */

static struct xd_mr *mr_find(uint32_t lkey)
{
	for (struct xd_mr *m = g_mrs; m; m = m->next)
		if (m->mr.lkey == lkey)
			return m;
	return NULL;
}

static bool sge_ok(struct xd_qp *qp, const struct ibv_sge *s)
{
	struct xd_mr *m = mr_find(s->lkey);
	uintptr_t lo, hi;

	if (!m || m->mr.pd != qp->qp.pd)
		return false;
	lo = (uintptr_t)m->mr.addr;
	hi = lo + m->mr.length;
	return s->addr >= lo && s->addr <= hi && s->length <= hi - s->addr;
}

/* Writes a frame into the next receive WR of qp. */
static void qp_deliver(struct xd_qp *qp, const uint8_t *f, uint32_t len, bool csum_ok)
{
	struct xd_dev *d = qp->c->dev;
	struct xd_rwr *r;
	struct ibv_wc wc;
	uint32_t left = len, off = 0;
	enum ibv_wc_status st = IBV_WC_SUCCESS;

	if (qp->qp.state != IBV_QPS_RTR && qp->qp.state != IBV_QPS_RTS) {
		d->st.rx_drop_state++;
		return;
	}
	if (!qp->rq_count) {
		d->st.rx_no_wqe++;
		return;
	}
	r = &qp->rq[qp->rq_head];
	qp->rq_head = (qp->rq_head + 1) % qp->max_recv_wr;
	qp->rq_count--;
	for (int i = 0; i < r->nsge && left; i++) {
		uint32_t n = left < r->sge[i].length ? left : r->sge[i].length;
		if (!sge_ok(qp, &r->sge[i])) {
			st = IBV_WC_LOC_PROT_ERR;
			break;
		}
		memcpy((void *)(uintptr_t)r->sge[i].addr, f + off, n);
		off += n;
		left -= n;
	}
	if (st == IBV_WC_SUCCESS && left)
		st = IBV_WC_LOC_LEN_ERR;
	if (st == IBV_WC_SUCCESS && d->f_recv_cqe > 0) {
		d->f_recv_cqe--;
		d->st.injected++;
		st = IBV_WC_LOC_LEN_ERR;
	}
	wc_fill(&wc, qp, r->wr_id, st, IBV_WC_RECV);
	if (st == IBV_WC_SUCCESS) {
		wc.byte_len = len;
		if (csum_ok) {
			wc.wc_flags |= IBV_WC_IP_CSUM_OK;
			d->st.rx_csum_ok++;
		}
		d->st.rx_frames++;
	}
	cq_push(qp->rcq, &wc, NULL, 0);
	if (st != IBV_WC_SUCCESS)
		qp_to_err(qp);
}

static bool mask_eq(const void *val, const void *mask, const void *have, size_t n)
{
	const uint8_t *v = val, *m = mask, *h = have;

	for (size_t i = 0; i < n; i++)
		if ((h[i] & m[i]) != (v[i] & m[i]))
			return false;
	return true;
}

struct hdrs {
	struct ibv_flow_eth_filter eth;
	struct ibv_flow_ipv4_ext_filter ip;
	struct ibv_flow_tcp_udp_filter l4;
	bool ipv4;
	int l4_type;
};

static void parse_hdrs(const uint8_t *f, uint32_t len, struct hdrs *h)
{
	memset(h, 0, sizeof(*h));
	if (len < 14)
		return;
	memcpy(h->eth.dst_mac, f, 6);
	memcpy(h->eth.src_mac, f + 6, 6);
	memcpy(&h->eth.ether_type, f + 12, 2);
	if (rd16(f + 12) != 0x0800 || len < 34 || (f[14] >> 4) != 4)
		return;
	h->ipv4 = true;
	memcpy(&h->ip.src_ip, f + 26, 4);
	memcpy(&h->ip.dst_ip, f + 30, 4);
	h->ip.proto = f[23];
	h->ip.tos = f[15];
	h->ip.ttl = f[22];
	uint32_t ihl = (f[14] & 0xfu) * 4u;
	if ((f[23] == 6 || f[23] == 17) && len >= 14 + ihl + 4 && !(rd16(f + 20) & 0x1fff)) {
		h->l4_type = f[23] == 6 ? IBV_FLOW_SPEC_TCP : IBV_FLOW_SPEC_UDP;
		memcpy(&h->l4.src_port, f + 14 + ihl, 2);
		memcpy(&h->l4.dst_port, f + 14 + ihl + 2, 2);
	}
}

static bool flow_match(const struct xd_flow *fl, const struct hdrs *h)
{
	if (fl->has_eth && !mask_eq(&fl->eth_v, &fl->eth_m, &h->eth, sizeof(h->eth)))
		return false;
	if (fl->has_ip && (!h->ipv4 || !mask_eq(&fl->ip_v, &fl->ip_m, &h->ip, sizeof(h->ip))))
		return false;
	if (fl->has_l4 && (h->l4_type != fl->l4_type || !mask_eq(&fl->l4_v, &fl->l4_m, &h->l4, sizeof(h->l4))))
		return false;
	return true;
}

/* A frame from the wire reaches device d: flow steering. */
static void wire_in(struct xd_dev *d, uint8_t *f, uint32_t len)
{
	struct hdrs h;
	struct xd_qp *got[16];
	int ngot = 0;
	bool trapped = false, csum_ok;

	if (d->port_state != IBV_PORT_ACTIVE || d->fatal) {
		d->st.drop_link++;
		return;
	}
	parse_hdrs(f, len, &h);
	csum_ok = (d->caps & XTD_CAP_CSUM) && csum_verifies(f, len);
	for (struct xd_flow *fl = d->flows; fl && !trapped; fl = fl->next) {
		bool dup = false;

		if (!flow_match(fl, &h))
			continue;
		for (int i = 0; i < ngot; i++)
			dup |= got[i] == fl->qp;
		if (!dup) {
			qp_deliver(fl->qp, f, len, csum_ok);
			if (ngot < 16)
				got[ngot++] = fl->qp;
			if (fl->flags & IBV_FLOW_ATTR_FLAGS_DONT_TRAP)
				d->st.flow_copies++;
		}
		if (!(fl->flags & IBV_FLOW_ATTR_FLAGS_DONT_TRAP))
			trapped = true;
	}
	if (!trapped)
		d->st.kernel_frames++;
}

/* A frame leaves device d. */
static void wire_out(struct xd_dev *d, uint8_t *f, uint32_t len)
{
	if (d->port_state != IBV_PORT_ACTIVE) {
		d->st.drop_link++;
		return;
	}
	d->st.wire_tx_frames++;
	d->st.wire_tx_bytes += len;
	if (d->packet) {
		if (syscall(SYS_sendto, d->pkt_fd, f, (size_t)len, MSG_DONTWAIT, NULL, 0) < 0)
			d->st.wire_errors++;
		return;
	}
	if (d->peer >= 0 && d->peer < g_ndev)
		wire_in(&g_dev[d->peer], f, len);
}

/* --- AF_PACKET wire ---------------------------------------------------------------- */

/* A frame a veth peer's kernel handed over with CHECKSUM_PARTIAL: the TCP/UDP
 * field holds the pseudo-header sum only; complete it as a NIC would have. */
static void csum_partial_complete(uint8_t *f, uint32_t len)
{
	struct l34 r = parse_l34(f, len);
	uint32_t coff;
	uint16_t c;

	if (!r.l4)
		return;
	coff = r.proto == 6 ? 16 : 6;
	c = fold(sum16(0, r.l4p, r.l4len));
	if (r.proto == 17 && c == 0)
		c = 0xffff;
	wr16(r.l4p + coff, c);
}

static void deliver_seg(struct xd_dev *d, uint8_t *f, uint32_t len) { wire_in(d, f, len); }

static void *pkt_thread(void *arg)
{
	struct xd_dev *d = arg;
	uint8_t *buf = malloc(XD_BUF);

	if (!buf)
		return NULL;
	for (;;) {
		struct pollfd p[2] = { { .fd = d->pkt_fd, .events = POLLIN }, { .fd = d->stop[0], .events = POLLIN } };
		char cbuf[CMSG_SPACE(sizeof(struct tpacket_auxdata))];
		struct iovec iov = { buf, XD_BUF };
		struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = cbuf, .msg_controllen = sizeof(cbuf) };
		bool partial = false;
		ssize_t n;

		/* Raw system calls: under LD_PRELOAD=libxtcp.so this thread must
		 * not run through the interposed poll/recvmsg. */
		if ((syscall(SYS_ppoll, p, 2, NULL, NULL, (size_t)8) < 0 && errno != EINTR) || p[1].revents) {
			free(buf);
			return NULL;
		}
		if (!(p[0].revents & POLLIN))
			continue;
		n = syscall(SYS_recvmsg, d->pkt_fd, &mh, MSG_DONTWAIT);
		if (n <= 0 || (size_t)n > XD_BUF)
			continue;
		for (struct cmsghdr *c = CMSG_FIRSTHDR(&mh); c; c = CMSG_NXTHDR(&mh, c)) {
			if (c->cmsg_level == SOL_PACKET && c->cmsg_type == PACKET_AUXDATA) {
				struct tpacket_auxdata aux;
				memcpy(&aux, CMSG_DATA(c), sizeof(aux));
				partial = aux.tp_status & TP_STATUS_CSUMNOTREADY;
			}
		}
		if (partial)
			csum_partial_complete(buf, (uint32_t)n);
		lock();
		if ((uint32_t)n > (uint32_t)d->mtu + 18) {
			/* A GSO super-packet from a local kernel: what the wire
			 * would carry is MTU-sized segments. */
			struct l34 r = parse_l34(buf, (uint32_t)n);
			uint32_t thl = r.l4 && r.proto == 6 ? (uint32_t)(r.l4p[12] >> 4) * 4u : 0;
			if (thl >= 20) {
				uint32_t hl = 14 + r.ihl + thl;
				d->st.rx_gso_split++;
				tcp_segment(d, buf, 14 + r.tot, hl, (uint32_t)d->mtu - r.ihl - thl, deliver_seg);
			}
		} else {
			wire_in(d, buf, (uint32_t)n);
		}
		unlock();
	}
}

static int pkt_open(struct xd_dev *d)
{
	struct sockaddr_ll sll;
	int one = 1, big = 4 << 20;

	d->pkt_fd = socket(AF_PACKET, SOCK_RAW | SOCK_CLOEXEC, htons(ETH_P_ALL));
	if (d->pkt_fd < 0)
		return -errno;
#ifndef PACKET_IGNORE_OUTGOING
#define PACKET_IGNORE_OUTGOING 23
#endif
	(void)setsockopt(d->pkt_fd, SOL_PACKET, PACKET_IGNORE_OUTGOING, &one, sizeof(one));
	(void)setsockopt(d->pkt_fd, SOL_PACKET, PACKET_AUXDATA, &one, sizeof(one));
	if (setsockopt(d->pkt_fd, SOL_SOCKET, SO_RCVBUFFORCE, &big, sizeof(big)) < 0)
		(void)setsockopt(d->pkt_fd, SOL_SOCKET, SO_RCVBUF, &big, sizeof(big));
	memset(&sll, 0, sizeof(sll));
	sll.sll_family = AF_PACKET;
	sll.sll_protocol = htons(ETH_P_ALL);
	sll.sll_ifindex = d->ifindex;
	if (bind(d->pkt_fd, (struct sockaddr *)&sll, sizeof(sll)) < 0 || pipe2(d->stop, O_CLOEXEC) < 0) {
		int e = errno;
		close(d->pkt_fd);
		d->pkt_fd = -1;
		return -e;
	}
	if (pthread_create(&d->thr, NULL, pkt_thread, d) != 0) {
		close(d->pkt_fd);
		close(d->stop[0]);
		close(d->stop[1]);
		d->pkt_fd = -1;
		return -EAGAIN;
	}
	d->thr_on = true;
	return 0;
}

/* Called without g_mu: the thread takes it to deliver. */
static void pkt_close(struct xd_dev *d)
{
	if (!d->thr_on)
		return;
	if (write(d->stop[1], "x", 1) < 0)
		return;
	pthread_join(d->thr, NULL);
	close(d->stop[0]);
	close(d->stop[1]);
	close(d->pkt_fd);
	d->pkt_fd = -1;
	d->thr_on = false;
}

/* --- devices ----------------------------------------------------------------------- */

static int write_file(const char *path, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int write_file(const char *path, const char *fmt, ...)
{
	FILE *f = fopen(path, "we");
	va_list ap;

	if (!f)
		return -1;
	va_start(ap, fmt);
	vfprintf(f, fmt, ap);
	va_end(ap);
	return fclose(f);
}

static int mkpath(const char *path)
{
	char tmp[512];

	snprintf(tmp, sizeof(tmp), "%s", path);
	for (char *p = tmp + 1; *p; p++) {
		if (*p == '/') {
			*p = '\0';
			if (mkdir(tmp, 0755) < 0 && errno != EEXIST)
				return -1;
			*p = '/';
		}
	}
	return mkdir(tmp, 0755) < 0 && errno != EEXIST ? -1 : 0;
}

static int rm_entry(const char *p, const struct stat *sb, int flag, struct FTW *ftw)
{
	(void)sb;
	(void)flag;
	(void)ftw;
	return remove(p);
}

static void remove_root(void)
{
	if (g_root[0] && g_root_pid == getpid())
		nftw(g_root, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
	g_root[0] = '\0';
}

__attribute__((destructor)) static void xd_fini(void) { remove_root(); }

/* The sysfs entry of device d: what the backend reads to find it. */
static void make_sysfs(struct xd_dev *d)
{
	char p[512];
	const uint8_t *m = d->mac;

	snprintf(d->ibdev.ibdev_path, sizeof(d->ibdev.ibdev_path), "%s/%s", g_root, d->ibdev.name);
	snprintf(p, sizeof(p), "%s/ports/1/gid_attrs/ndevs", d->ibdev.ibdev_path);
	mkpath(p);
	snprintf(p, sizeof(p), "%s/ports/1/gid_attrs/ndevs/0", d->ibdev.ibdev_path);
	write_file(p, "%s\n", d->ifname);
	snprintf(p, sizeof(p), "%s/device", d->ibdev.ibdev_path);
	mkpath(p);
	snprintf(p, sizeof(p), "%s/device/driver", d->ibdev.ibdev_path);
	if (symlink("../../../bus/pci/drivers/xtcp_ibv_double", p) < 0 && errno != EEXIST)
		return;
	if (d->packet)
		return;
	snprintf(p, sizeof(p), "%s/device/net/%s", d->ibdev.ibdev_path, d->ifname);
	mkpath(p);
	snprintf(p, sizeof(p), "%s/device/net/%s/address", d->ibdev.ibdev_path, d->ifname);
	write_file(p, "%02x:%02x:%02x:%02x:%02x:%02x\n", m[0], m[1], m[2], m[3], m[4], m[5]);
	snprintf(p, sizeof(p), "%s/device/net/%s/mtu", d->ibdev.ibdev_path, d->ifname);
	write_file(p, "%d\n", d->mtu);
	snprintf(p, sizeof(p), "%s/device/net/%s/dev_port", d->ibdev.ibdev_path, d->ifname);
	write_file(p, "0\n");
}

static void dev_init(struct xd_dev *d, int idx, const char *ifname)
{
	memset(d, 0, sizeof(*d));
	d->idx = idx;
	d->ibdev.node_type = IBV_NODE_CA;
	d->ibdev.transport_type = IBV_TRANSPORT_IB;
	snprintf(d->ibdev.name, sizeof(d->ibdev.name), "xtd%d", idx);
	snprintf(d->ibdev.dev_name, sizeof(d->ibdev.dev_name), "uverbs%d", idx);
	snprintf(d->ibdev.dev_path, sizeof(d->ibdev.dev_path), "/sys/class/infiniband_verbs/uverbs%d", idx);
	snprintf(d->ifname, sizeof(d->ifname), "%s", ifname);
	d->caps = g_default_caps;
	d->late_dma = g_default_late;
	d->port_state = IBV_PORT_ACTIVE;
	d->peer = -1;
	d->pkt_fd = -1;
	d->mtu = 1500;
}

/* Reads MAC and MTU of a real interface. */
static int if_query(struct xd_dev *d)
{
	struct ifreq ifr;
	int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);

	if (fd < 0)
		return -errno;
	memset(&ifr, 0, sizeof(ifr));
	snprintf(ifr.ifr_name, sizeof(ifr.ifr_name), "%s", d->ifname);
	if (ioctl(fd, SIOCGIFINDEX, &ifr) < 0) {
		close(fd);
		return -ENODEV;
	}
	d->ifindex = ifr.ifr_ifindex;
	if (ioctl(fd, SIOCGIFHWADDR, &ifr) == 0)
		memcpy(d->mac, ifr.ifr_hwaddr.sa_data, 6);
	if (ioctl(fd, SIOCGIFMTU, &ifr) == 0)
		d->mtu = ifr.ifr_mtu;
	close(fd);
	return 0;
}

/* Builds the device table from spec ("mem", "packet:IF[,IF]"). */
static int build_devs(const char *spec)
{
	char tmpl[] = "/tmp/xtcp-ibv-double-XXXXXX";

	remove_root();
	g_ndev = 0;
	if (!mkdtemp(tmpl))
		return -errno;
	snprintf(g_root, sizeof(g_root), "%s", tmpl);
	g_root_pid = getpid();
	if (!spec || !*spec || !strcmp(spec, "mem")) {
		for (int i = 0; i < 2; i++) {
			char ifn[16];
			snprintf(ifn, sizeof(ifn), "xtdn%d", i);
			dev_init(&g_dev[i], i, ifn);
			uint8_t mac[6] = { 0x02, 0, 0, 0, 0xd0, (uint8_t)i };
			memcpy(g_dev[i].mac, mac, 6);
			g_dev[i].peer = 1 - i;
			make_sysfs(&g_dev[i]);
		}
		g_ndev = 2;
		return 0;
	}
	if (strncmp(spec, "packet:", 7))
		return -EINVAL;
	char buf[128], *save = NULL;
	snprintf(buf, sizeof(buf), "%s", spec + 7);
	for (char *t = strtok_r(buf, ",", &save); t && g_ndev < XD_MAXDEV; t = strtok_r(NULL, ",", &save)) {
		struct xd_dev *d = &g_dev[g_ndev];
		dev_init(d, g_ndev, t);
		d->packet = true;
		if (if_query(d) < 0)
			continue; /* no such interface: no device for it */
		make_sysfs(d);
		g_ndev++;
	}
	return 0;
}

static void ensure_devs(void)
{
	if (g_ndev >= 0)
		return;
	g_default_caps = parse_caps(getenv("XTCP_DOUBLE_CAPS"), XTD_CAP_ALL);
	g_default_late = getenv("XTCP_DOUBLE_LATE_DMA") && atoi(getenv("XTCP_DOUBLE_LATE_DMA")) > 0;
	build_devs(getenv("XTCP_DOUBLE_WIRE"));
}

static struct xd_ctx *to_ctx(struct ibv_context *c)
{
	return (struct xd_ctx *)((uint8_t *)c - offsetof(struct verbs_context, context) -
				 offsetof(struct xd_ctx, vctx));
}

static struct xd_dev *dev_of(struct ibv_context *c) { return to_ctx(c)->dev; }

/* --- exported: devices ------------------------------------------------------------- */

EXPORT struct ibv_device **ibv_get_device_list(int *num)
{
	struct ibv_device **list;

	lock();
	ensure_devs();
	list = calloc((size_t)g_ndev + 1, sizeof(*list));
	if (list)
		for (int i = 0; i < g_ndev; i++)
			list[i] = &g_dev[i].ibdev;
	if (num)
		*num = list ? g_ndev : 0;
	unlock();
	if (!list)
		errno = ENOMEM;
	return list;
}

EXPORT void ibv_free_device_list(struct ibv_device **list) { free(list); }

EXPORT const char *ibv_get_device_name(struct ibv_device *d) { return d ? d->name : NULL; }

EXPORT __be64 ibv_get_device_guid(struct ibv_device *d)
{
	struct xd_dev *x = (struct xd_dev *)d;
	return htobe64(0x0002c90300d00000ull | (uint64_t)x->idx);
}

EXPORT int ibv_fork_init(void) { return 0; }

EXPORT const char *ibv_node_type_str(enum ibv_node_type t) { return t == IBV_NODE_CA ? "InfiniBand channel adapter" : "unknown"; }

EXPORT const char *ibv_port_state_str(enum ibv_port_state s)
{
	static const char *const n[] = { "PORT_NOP", "PORT_DOWN", "PORT_INIT", "PORT_ARMED", "PORT_ACTIVE", "PORT_ACTIVE_DEFER" };
	return s <= IBV_PORT_ACTIVE_DEFER ? n[s] : "invalid state";
}

EXPORT const char *ibv_event_type_str(enum ibv_event_type e)
{
	static const char *const n[] = {
		"CQ error", "local work queue catastrophic error", "invalid request local work queue error",
		"local access violation work queue error", "communication established", "send queue drained",
		"path migrated", "path migration request error", "local catastrophic error", "port active",
		"port error", "LID change", "P_Key change", "SM change", "SRQ catastrophic error",
		"SRQ limit reached", "last WQE reached", "client reregistration", "GID table change",
		"WQ fatal",
	};
	return (unsigned int)e < sizeof(n) / sizeof(n[0]) ? n[e] : "unknown";
}

EXPORT const char *ibv_wc_status_str(enum ibv_wc_status s)
{
	static const char *const n[] = {
		"success", "local length error", "local QP operation error", "local EE context operation error",
		"local protection error", "Work Request Flushed Error", "memory management operation error",
		"bad response error", "local access error", "remote invalid request error",
		"remote access error", "remote operation error", "transport retry counter exceeded",
		"RNR retry counter exceeded", "local RDD violation error", "remote invalid RD request",
		"aborted error", "invalid EE context number", "invalid EE context state",
		"fatal error", "response timeout error", "general error", "TM error", "TM rendezvous error",
	};
	return (unsigned int)s < sizeof(n) / sizeof(n[0]) ? n[s] : "unknown";
}

static int xd_poll_cq(struct ibv_cq *cq, int n, struct ibv_wc *wc);
static int xd_req_notify(struct ibv_cq *cq, int solicited);
static int xd_post_send(struct ibv_qp *qp, struct ibv_send_wr *wr, struct ibv_send_wr **bad);
static void late_run(struct xd_qp *qp, bool discard);
static bool late_uses(const struct xd_mr *m);
static int xd_post_recv(struct ibv_qp *qp, struct ibv_recv_wr *wr, struct ibv_recv_wr **bad);
static int xd_query_device_ex(struct ibv_context *c, const struct ibv_query_device_ex_input *in,
			      struct ibv_device_attr_ex *attr, size_t size);
static int xd_query_port(struct ibv_context *c, uint8_t port, struct ibv_port_attr *pa, size_t len);
static struct ibv_flow *xd_create_flow(struct ibv_qp *qp, struct ibv_flow_attr *attr);
static int xd_destroy_flow(struct ibv_flow *f);
static struct ibv_qp *xd_create_qp_ex(struct ibv_context *c, struct ibv_qp_init_attr_ex *a);

EXPORT struct ibv_context *ibv_open_device(struct ibv_device *dev)
{
	struct xd_dev *d = (struct xd_dev *)dev;
	struct xd_ctx *c;
	int p[2];

	lock();
	if (d->fatal) {
		unlock();
		errno = EIO;
		return NULL;
	}
	if (!(d->caps & XTD_CAP_ACCESS)) {
		unlock();
		errno = EACCES;
		return NULL;
	}
	c = calloc(1, sizeof(*c));
	if (!c || pipe2(p, O_CLOEXEC) < 0) {
		free(c);
		unlock();
		errno = ENOMEM;
		return NULL;
	}
	c->dev = d;
	c->async_wr = p[1];
	fcntl(p[1], F_SETFL, O_NONBLOCK);
	c->vctx.sz = sizeof(struct verbs_context);
	c->vctx.query_device_ex = xd_query_device_ex;
	c->vctx.query_port = xd_query_port;
	c->vctx.ibv_create_flow = xd_create_flow;
	c->vctx.ibv_destroy_flow = xd_destroy_flow;
	c->vctx.create_qp_ex = xd_create_qp_ex;
	c->vctx.context.device = dev;
	c->vctx.context.cmd_fd = -1;
	c->vctx.context.async_fd = p[0];
	c->vctx.context.num_comp_vectors = 1;
	c->vctx.context.abi_compat = __VERBS_ABI_IS_EXTENDED;
	c->vctx.context.ops.poll_cq = xd_poll_cq;
	c->vctx.context.ops.req_notify_cq = xd_req_notify;
	c->vctx.context.ops.post_send = xd_post_send;
	c->vctx.context.ops.post_recv = xd_post_recv;
	pthread_mutex_init(&c->vctx.context.mutex, NULL);
	if (d->packet && d->nopen == 0) {
		int r = pkt_open(d);
		if (r < 0) {
			close(p[0]);
			close(p[1]);
			free(c);
			unlock();
			errno = -r;
			return NULL;
		}
	}
	d->nopen++;
	d->live++;
	c->next = d->ctxs;
	d->ctxs = c;
	unlock();
	return &c->vctx.context;
}

EXPORT int ibv_close_device(struct ibv_context *ctx)
{
	struct xd_ctx *c = to_ctx(ctx);
	struct xd_dev *d = c->dev;
	bool last;

	lock();
	for (struct xd_ctx **pp = &d->ctxs; *pp; pp = &(*pp)->next) {
		if (*pp == c) {
			*pp = c->next;
			break;
		}
	}
	last = --d->nopen == 0;
	d->live--;
	unlock();
	if (last && d->packet)
		pkt_close(d);
	close(ctx->async_fd);
	close(c->async_wr);
	pthread_mutex_destroy(&ctx->mutex);
	free(c);
	return 0;
}

static void fill_attr(struct xd_dev *d, struct ibv_device_attr *a)
{
	memset(a, 0, sizeof(*a));
	snprintf(a->fw_ver, sizeof(a->fw_ver), "xtcp-ibv-double");
	a->node_guid = ibv_get_device_guid(&d->ibdev);
	a->sys_image_guid = a->node_guid;
	a->max_mr_size = ~0ull;
	a->page_size_cap = 4096;
	a->vendor_id = 0;
	a->max_qp = 64;
	a->max_qp_wr = XD_MAX_WR;
	a->device_cap_flags = (d->caps & XTD_CAP_CSUM) ? IBV_DEVICE_RAW_IP_CSUM : 0;
	a->max_sge = XD_MAX_SGE;
	a->max_cq = 64;
	a->max_cqe = XD_MAX_CQE;
	a->max_mr = 64;
	a->max_pd = 16;
	a->phys_port_cnt = 1;
}

EXPORT int ibv_query_device(struct ibv_context *ctx, struct ibv_device_attr *a)
{
	lock();
	fill_attr(dev_of(ctx), a);
	unlock();
	return 0;
}

static int xd_query_device_ex(struct ibv_context *ctx, const struct ibv_query_device_ex_input *in,
			      struct ibv_device_attr_ex *attr, size_t size)
{
	struct ibv_device_attr_ex a;
	struct xd_dev *d = dev_of(ctx);

	if (in && in->comp_mask)
		return EINVAL;
	if (size < sizeof(a.orig_attr))
		return EINVAL;
	memset(&a, 0, sizeof(a));
	lock();
	fill_attr(d, &a.orig_attr);
	if (d->caps & XTD_CAP_CSUM)
		a.raw_packet_caps = IBV_RAW_PACKET_CAP_IP_CSUM;
	if (d->caps & XTD_CAP_TSO) {
		a.tso_caps.max_tso = XD_TSO_MAX;
		a.tso_caps.supported_qpts = 1u << IBV_QPT_RAW_PACKET;
	}
	a.phys_port_cnt_ex = 1;
	unlock();
	memcpy(attr, &a, size < sizeof(a) ? size : sizeof(a));
	return 0;
}

static int port_attr(struct xd_dev *d, uint8_t port, struct ibv_port_attr *pa)
{
	if (port != 1)
		return EINVAL;
	memset(pa, 0, sizeof(*pa));
	pa->state = (enum ibv_port_state)d->port_state;
	pa->max_mtu = IBV_MTU_4096;
	pa->active_mtu = IBV_MTU_1024;
	pa->gid_tbl_len = 1;
	pa->max_msg_sz = 1u << 30;
	pa->pkey_tbl_len = 1;
	pa->active_width = 2;
	pa->active_speed = 32;
	pa->phys_state = d->port_state == IBV_PORT_ACTIVE ? 5 : 3;
	pa->link_layer = (d->caps & XTD_CAP_ETH) ? IBV_LINK_LAYER_ETHERNET : IBV_LINK_LAYER_INFINIBAND;
	return 0;
}

static int xd_query_port(struct ibv_context *ctx, uint8_t port, struct ibv_port_attr *pa, size_t len)
{
	struct ibv_port_attr a;
	int r;

	lock();
	r = port_attr(dev_of(ctx), port, &a);
	unlock();
	if (!r)
		memcpy(pa, &a, len < sizeof(a) ? len : sizeof(a));
	return r;
}

/* The compat entry point fills the part of the struct old callers know:
 * everything up to and including link_layer. */
EXPORT int ibv_query_port(struct ibv_context *ctx, uint8_t port, struct _compat_ibv_port_attr *pa)
{
	return xd_query_port(ctx, port, (struct ibv_port_attr *)pa, offsetof(struct ibv_port_attr, flags));
}

EXPORT int ibv_query_gid(struct ibv_context *ctx, uint8_t port, int index, union ibv_gid *gid)
{
	(void)ctx;
	if (port != 1 || index != 0)
		return -1;
	memset(gid, 0, sizeof(*gid));
	return 0;
}

EXPORT int ibv_query_pkey(struct ibv_context *ctx, uint8_t port, int index, __be16 *pkey)
{
	(void)ctx;
	if (port != 1 || index != 0)
		return -1;
	*pkey = htons(0xffff);
	return 0;
}

/* --- exported: PD, MR ------------------------------------------------------------ */

EXPORT struct ibv_pd *ibv_alloc_pd(struct ibv_context *ctx)
{
	struct xd_pd *p = calloc(1, sizeof(*p));

	if (!p) {
		errno = ENOMEM;
		return NULL;
	}
	lock();
	p->pd.context = ctx;
	p->pd.handle = g_next_handle++;
	p->c = to_ctx(ctx);
	p->c->dev->live++;
	unlock();
	return &p->pd;
}

EXPORT int ibv_dealloc_pd(struct ibv_pd *pd)
{
	lock();
	for (struct xd_mr *m = g_mrs; m; m = m->next) {
		if (m->mr.pd == pd) {
			unlock();
			return EBUSY;
		}
	}
	((struct xd_pd *)pd)->c->dev->live--;
	unlock();
	free(pd);
	return 0;
}

EXPORT struct ibv_mr *ibv_reg_mr(struct ibv_pd *pd, void *addr, size_t len, int access)
{
	struct xd_mr *m;

	if (!addr || !len || (access & ~(IBV_ACCESS_LOCAL_WRITE | IBV_ACCESS_REMOTE_WRITE | IBV_ACCESS_REMOTE_READ |
					 IBV_ACCESS_REMOTE_ATOMIC | IBV_ACCESS_RELAXED_ORDERING))) {
		errno = EINVAL;
		return NULL;
	}
	m = calloc(1, sizeof(*m));
	if (!m) {
		errno = ENOMEM;
		return NULL;
	}
	lock();
	m->mr.context = pd->context;
	m->mr.pd = pd;
	m->mr.addr = addr;
	m->mr.length = len;
	m->mr.handle = g_next_handle++;
	m->mr.lkey = g_next_key++ * 0x100u + 0x5a;
	m->mr.rkey = m->mr.lkey;
	m->next = g_mrs;
	g_mrs = m;
	to_ctx(pd->context)->dev->live++;
	unlock();
	return &m->mr;
}

EXPORT int ibv_dereg_mr(struct ibv_mr *mr)
{
	lock();
	for (struct xd_mr **pp = &g_mrs; *pp; pp = &(*pp)->next) {
		if (&(*pp)->mr == mr) {
			struct xd_mr *m = *pp;
			if (late_uses(m)) { /* a device would read freed memory */
				to_ctx(m->mr.context)->dev->st.dereg_busy++;
				unlock();
				return EBUSY;
			}
			*pp = m->next;
			to_ctx(m->mr.context)->dev->live--;
			unlock();
			free(m);
			return 0;
		}
	}
	unlock();
	return EINVAL;
}

/* --- exported: channels, CQs ---------------------------------------------------------- */

EXPORT struct ibv_comp_channel *ibv_create_comp_channel(struct ibv_context *ctx)
{
	struct xd_chan *ch = calloc(1, sizeof(*ch));
	int p[2];

	if (!ch || pipe2(p, O_CLOEXEC) < 0) {
		free(ch);
		errno = ENOMEM;
		return NULL;
	}
	fcntl(p[1], F_SETFL, O_NONBLOCK);
	ch->ch.context = ctx;
	ch->ch.fd = p[0];
	ch->ch.refcnt = 0;
	ch->wfd = p[1];
	lock();
	dev_of(ctx)->live++;
	unlock();
	return &ch->ch;
}

EXPORT int ibv_destroy_comp_channel(struct ibv_comp_channel *c)
{
	struct xd_chan *ch = (struct xd_chan *)c;

	lock();
	if (ch->ncq) {
		unlock();
		return EBUSY;
	}
	dev_of(c->context)->live--;
	unlock();
	close(ch->ch.fd);
	close(ch->wfd);
	free(ch);
	return 0;
}

EXPORT struct ibv_cq *ibv_create_cq(struct ibv_context *ctx, int cqe, void *cq_context, struct ibv_comp_channel *channel,
				    int vector)
{
	struct xd_cq *cq;

	if (cqe < 1 || cqe > XD_MAX_CQE || vector != 0) {
		errno = EINVAL;
		return NULL;
	}
	cq = calloc(1, sizeof(*cq));
	if (cq)
		cq->ring = calloc((size_t)cqe, sizeof(*cq->ring));
	if (!cq || !cq->ring) {
		if (cq)
			free(cq);
		errno = ENOMEM;
		return NULL;
	}
	lock();
	cq->c = to_ctx(ctx);
	cq->cap = cqe;
	cq->cq.context = ctx;
	cq->cq.channel = channel;
	cq->cq.cq_context = cq_context;
	cq->cq.handle = g_next_handle++;
	cq->cq.cqe = cqe;
	pthread_mutex_init(&cq->cq.mutex, NULL);
	pthread_cond_init(&cq->cq.cond, NULL);
	if (channel)
		((struct xd_chan *)channel)->ncq++;
	cq->c->dev->live++;
	unlock();
	return &cq->cq;
}

EXPORT int ibv_destroy_cq(struct ibv_cq *c)
{
	struct xd_cq *cq = (struct xd_cq *)c;

	lock();
	if (cq->nqp || cq->ev_read != cq->ev_acked) {
		/* Real devices block here until every event read is acked. */
		unlock();
		return EBUSY;
	}
	if (c->channel)
		((struct xd_chan *)c->channel)->ncq--;
	cq->c->dev->live--;
	unlock();
	pthread_mutex_destroy(&c->mutex);
	pthread_cond_destroy(&c->cond);
	free(cq->ring);
	free(cq);
	return 0;
}

EXPORT int ibv_get_cq_event(struct ibv_comp_channel *c, struct ibv_cq **cq, void **cq_context)
{
	void *p;
	ssize_t n = read(c->fd, &p, sizeof(p));

	if (n != (ssize_t)sizeof(p)) {
		if (n >= 0)
			errno = EIO;
		return -1;
	}
	lock();
	*cq = p;
	*cq_context = (*cq)->cq_context;
	((struct xd_cq *)p)->ev_read++;
	unlock();
	return 0;
}

EXPORT void ibv_ack_cq_events(struct ibv_cq *c, unsigned int n)
{
	struct xd_cq *cq = (struct xd_cq *)c;

	lock();
	cq->ev_acked += n;
	cq->c->dev->st.cq_events_acked += n;
	unlock();
}

static int xd_poll_cq(struct ibv_cq *c, int n, struct ibv_wc *wc)
{
	struct xd_cq *cq = (struct xd_cq *)c;
	int got = 0;

	if (n < 0)
		return -1;
	lock();
	for (int i = 0; i < g_ndev; i++)
		for (struct xd_ctx *ctx = g_dev[i].ctxs; ctx; ctx = ctx->next)
			for (struct xd_qp *qp = ctx->qps; qp; qp = qp->next)
				if (qp->lq_count)
					late_run(qp, false);
	while (got < n && cq->count) {
		struct xd_cqe *e = &cq->ring[cq->head];

		wc[got++] = e->wc;
		if (e->sq_owner && e->sq_seq + 1 > e->sq_owner->sq_done)
			e->sq_owner->sq_done = e->sq_seq + 1;
		cq->head = (cq->head + 1) % cq->cap;
		cq->count--;
	}
	unlock();
	return got;
}

static int xd_req_notify(struct ibv_cq *c, int solicited)
{
	struct xd_cq *cq = (struct xd_cq *)c;

	(void)solicited;
	if (!c->channel)
		return EINVAL;
	lock();
	cq->armed = true;
	unlock();
	return 0;
}

/* --- exported: async events -------------------------------------------------------------- */

EXPORT int ibv_get_async_event(struct ibv_context *ctx, struct ibv_async_event *ev)
{
	ssize_t n = read(ctx->async_fd, ev, sizeof(*ev));

	if (n != (ssize_t)sizeof(*ev)) {
		if (n >= 0)
			errno = EIO;
		return -1;
	}
	lock();
	g_async_read++;
	unlock();
	return 0;
}

/* An event does not say its device: reads and acks are counted process-wide. */
EXPORT void ibv_ack_async_event(struct ibv_async_event *ev)
{
	(void)ev;
	lock();
	g_async_acked++;
	unlock();
}

/* --- exported: QPs ------------------------------------------------------------------------- */

static struct ibv_qp *qp_new(struct ibv_pd *pd, struct ibv_qp_init_attr_ex *a)
{
	struct xd_ctx *c = to_ctx(pd->context);
	struct xd_dev *d = c->dev;
	struct xd_qp *qp;
	int e = 0;

	if (a->qp_type != IBV_QPT_RAW_PACKET)
		e = EOPNOTSUPP; /* the double only does raw packet QPs */
	else if (!(d->caps & XTD_CAP_RAW))
		e = EOPNOTSUPP;
	else if (!net_raw_ok(d))
		e = EPERM;
	else if (!a->send_cq || !a->recv_cq || a->srq || a->cap.max_send_wr > XD_MAX_WR ||
		 a->cap.max_recv_wr > XD_MAX_WR || a->cap.max_send_wr == 0 || a->cap.max_recv_wr == 0 ||
		 a->cap.max_send_sge > XD_MAX_SGE || a->cap.max_recv_sge > XD_MAX_SGE ||
		 a->cap.max_inline_data > ((d->caps & XTD_CAP_INLINE) ? XD_INLINE : 0u) ||
		 a->max_tso_header > XD_TSO_HDR)
		e = EINVAL;
	else if (a->max_tso_header && !(d->caps & XTD_CAP_TSO))
		e = EINVAL;
	if (e) {
		errno = e;
		return NULL;
	}
	qp = calloc(1, sizeof(*qp));
	if (qp)
		qp->rq = calloc(a->cap.max_recv_wr, sizeof(*qp->rq));
	if (!qp || !qp->rq) {
		if (qp)
			free(qp);
		errno = ENOMEM;
		return NULL;
	}
	qp->c = c;
	qp->scq = (struct xd_cq *)a->send_cq;
	qp->rcq = (struct xd_cq *)a->recv_cq;
	qp->max_send_wr = a->cap.max_send_wr;
	qp->max_recv_wr = a->cap.max_recv_wr;
	qp->max_send_sge = a->cap.max_send_sge ? a->cap.max_send_sge : 1;
	qp->max_recv_sge = a->cap.max_recv_sge ? a->cap.max_recv_sge : 1;
	qp->max_inline = a->cap.max_inline_data;
	qp->max_tso_hdr = a->max_tso_header;
	qp->sq_sig_all = a->sq_sig_all;
	qp->qp.context = pd->context;
	qp->qp.qp_context = a->qp_context;
	qp->qp.pd = pd;
	qp->qp.send_cq = a->send_cq;
	qp->qp.recv_cq = a->recv_cq;
	qp->qp.handle = g_next_handle++;
	qp->qp.qp_num = g_next_qpn++;
	qp->qp.state = IBV_QPS_RESET;
	qp->qp.qp_type = IBV_QPT_RAW_PACKET;
	pthread_mutex_init(&qp->qp.mutex, NULL);
	pthread_cond_init(&qp->qp.cond, NULL);
	qp->scq->nqp++;
	qp->rcq->nqp++;
	qp->next = c->qps;
	c->qps = qp;
	d->st.qps_active++;
	d->live++;
	return &qp->qp;
}

EXPORT struct ibv_qp *ibv_create_qp(struct ibv_pd *pd, struct ibv_qp_init_attr *a)
{
	struct ibv_qp_init_attr_ex ax;
	struct ibv_qp *qp;

	memset(&ax, 0, sizeof(ax));
	ax.qp_context = a->qp_context;
	ax.send_cq = a->send_cq;
	ax.recv_cq = a->recv_cq;
	ax.srq = a->srq;
	ax.cap = a->cap;
	ax.qp_type = a->qp_type;
	ax.sq_sig_all = a->sq_sig_all;
	lock();
	qp = qp_new(pd, &ax);
	unlock();
	if (qp)
		a->cap = ax.cap;
	return qp;
}

static struct ibv_qp *xd_create_qp_ex(struct ibv_context *ctx, struct ibv_qp_init_attr_ex *a)
{
	struct ibv_qp *qp;

	if (!(a->comp_mask & IBV_QP_INIT_ATTR_PD) || !a->pd || a->pd->context != ctx) {
		errno = EINVAL;
		return NULL;
	}
	if (a->comp_mask & ~(uint32_t)(IBV_QP_INIT_ATTR_PD | IBV_QP_INIT_ATTR_MAX_TSO_HEADER)) {
		errno = EOPNOTSUPP;
		return NULL;
	}
	if (!(a->comp_mask & IBV_QP_INIT_ATTR_MAX_TSO_HEADER))
		a->max_tso_header = 0;
	lock();
	qp = qp_new(a->pd, a);
	unlock();
	return qp;
}

EXPORT int ibv_modify_qp(struct ibv_qp *q, struct ibv_qp_attr *a, int mask)
{
	struct xd_qp *qp = (struct xd_qp *)q;
	struct xd_dev *d = qp->c->dev;
	enum ibv_qp_state cur, to;
	int r = 0;

	lock();
	if (d->fatal) {
		unlock();
		return EIO;
	}
	if (!(mask & IBV_QP_STATE)) {
		unlock();
		return EINVAL;
	}
	cur = q->state;
	to = a->qp_state;
	if ((mask & IBV_QP_CUR_STATE) && a->cur_qp_state != cur) {
		r = EINVAL;
	} else if (to == IBV_QPS_RESET) {
		if (d->f_reset > 0) {
			d->f_reset--;
			d->st.injected++;
			r = EIO;
		} else {
			late_run(qp, true);
			qp->rq_head = qp->rq_count = 0;
			qp->sq_done = qp->sq_posted;
			q->state = IBV_QPS_RESET;
		}
	} else if (to == IBV_QPS_ERR) {
		qp_to_err(qp);
	} else if (to == IBV_QPS_INIT && (cur == IBV_QPS_RESET || cur == IBV_QPS_INIT)) {
		if (cur == IBV_QPS_RESET && (!(mask & IBV_QP_PORT) || a->port_num != 1))
			r = EINVAL;
		else {
			if (mask & IBV_QP_PORT)
				qp->port = a->port_num;
			q->state = IBV_QPS_INIT;
		}
	} else if (to == IBV_QPS_RTR && cur == IBV_QPS_INIT) {
		q->state = IBV_QPS_RTR;
	} else if (to == IBV_QPS_RTS && (cur == IBV_QPS_RTR || cur == IBV_QPS_RTS)) {
		q->state = IBV_QPS_RTS;
	} else {
		r = EINVAL;
	}
	unlock();
	return r;
}

EXPORT int ibv_query_qp(struct ibv_qp *q, struct ibv_qp_attr *a, int mask, struct ibv_qp_init_attr *ia)
{
	struct xd_qp *qp = (struct xd_qp *)q;

	(void)mask;
	lock();
	memset(a, 0, sizeof(*a));
	a->qp_state = q->state;
	a->cur_qp_state = q->state;
	a->port_num = qp->port;
	a->cap.max_send_wr = qp->max_send_wr;
	a->cap.max_recv_wr = qp->max_recv_wr;
	a->cap.max_send_sge = qp->max_send_sge;
	a->cap.max_recv_sge = qp->max_recv_sge;
	a->cap.max_inline_data = qp->max_inline;
	if (ia) {
		memset(ia, 0, sizeof(*ia));
		ia->send_cq = q->send_cq;
		ia->recv_cq = q->recv_cq;
		ia->cap = a->cap;
		ia->qp_type = q->qp_type;
		ia->sq_sig_all = qp->sq_sig_all;
	}
	unlock();
	return 0;
}

EXPORT int ibv_destroy_qp(struct ibv_qp *q)
{
	struct xd_qp *qp = (struct xd_qp *)q;
	struct xd_ctx *c = qp->c;

	lock();
	if (qp->nflows) {
		unlock();
		return EBUSY;
	}
	for (struct xd_qp **pp = &c->qps; *pp; pp = &(*pp)->next) {
		if (*pp == qp) {
			*pp = qp->next;
			break;
		}
	}
	qp->scq->nqp--;
	qp->rcq->nqp--;
	c->dev->st.qps_active--;
	c->dev->live--;
	/* Completions of a destroyed QP stay in its CQs: the owner must not
	 * point at freed memory. */
	for (struct xd_cq *cq = qp->scq; cq; cq = cq == qp->scq && qp->rcq != qp->scq ? qp->rcq : NULL)
		for (int i = 0; i < cq->count; i++)
			if (cq->ring[(cq->head + i) % cq->cap].sq_owner == qp)
				cq->ring[(cq->head + i) % cq->cap].sq_owner = NULL;
	unlock();
	pthread_mutex_destroy(&q->mutex);
	pthread_cond_destroy(&q->cond);
	lock();
	late_run(qp, true);
	unlock();
	free(qp->lq);
	free(qp->rq);
	free(qp);
	return 0;
}

/* --- data path --------------------------------------------------------------------------- */

static void send_cqe(struct xd_qp *qp, uint64_t wr_id, enum ibv_wc_status st, enum ibv_wc_opcode op, uint64_t seq)
{
	struct ibv_wc wc;

	wc_fill(&wc, qp, wr_id, st, op);
	cq_push(qp->scq, &wc, qp, seq);
}

/* Gathers one send WR into g_buf.  Returns the length, or -1 after an
 * error completion (bad lkey/bounds: the QP goes to ERR). */
static long gather(struct xd_qp *qp, const struct ibv_send_wr *wr, bool inl)
{
	size_t len = 0;

	for (int i = 0; i < wr->num_sge; i++) {
		const struct ibv_sge *s = &wr->sg_list[i];
		if (len + s->length > sizeof(g_buf))
			return -1;
		if (!inl && !sge_ok(qp, s))
			return -1;
		memcpy(g_buf + len, (const void *)(uintptr_t)s->addr, s->length);
		len += s->length;
	}
	return (long)len;
}

static void tso_emit(struct xd_dev *d, uint8_t *f, uint32_t len) { wire_out(d, f, len); }

/* What a device checks of a send WR at post time: 0, or an errno for
 * ibv_post_send to return. */
static int send_check(struct xd_qp *qp, const struct ibv_send_wr *wr)
{
	struct xd_dev *d = qp->c->dev;
	bool inl = wr->send_flags & IBV_SEND_INLINE;
	bool tso = wr->opcode == IBV_WR_TSO;
	size_t total = 0;

	if (wr->opcode != IBV_WR_SEND && !tso)
		return EINVAL;
	if (wr->num_sge < 0 || (uint32_t)wr->num_sge > qp->max_send_sge || (wr->num_sge == 0 && !tso))
		return EINVAL;
	for (int i = 0; i < wr->num_sge; i++)
		total += wr->sg_list[i].length;
	if (inl && (tso || total > qp->max_inline))
		return EINVAL;
	if (!inl && !tso && (wr->num_sge == 0 || wr->sg_list[0].length < XD_MIN_SGE))
		return EINVAL; /* mlx5: the L2 header must be in the first SGE */
	if (tso && (!qp->max_tso_hdr || wr->tso.hdr_sz > qp->max_tso_hdr || wr->tso.hdr_sz < 14 + 20 + 20 ||
		    !wr->tso.hdr || wr->tso.mss == 0))
		return EINVAL;
	if ((wr->send_flags & IBV_SEND_IP_CSUM) && !(d->caps & XTD_CAP_CSUM))
		return EINVAL;
	return 0;
}

/* The device reads send WR seq (checked): gathers it, puts it on the wire,
 * completes it. */
static void send_exec(struct xd_qp *qp, const struct ibv_send_wr *wr, uint64_t seq)
{
	struct xd_dev *d = qp->c->dev;
	bool inl = wr->send_flags & IBV_SEND_INLINE, sig = (wr->send_flags & IBV_SEND_SIGNALED) || qp->sq_sig_all;
	bool tso = wr->opcode == IBV_WR_TSO;
	size_t total = 0;
	long len;

	for (int i = 0; i < wr->num_sge; i++)
		total += wr->sg_list[i].length;
	if (!inl && wr->num_sge > 1)
		d->st.send_multi_sge++;
	d->st.send_wrs++;
	if (sig)
		d->st.send_signalled++;
	if (inl) {
		d->st.send_inline++;
		if (total > d->st.max_inline_seen)
			d->st.max_inline_seen = total;
	}
	if (wr->send_flags & IBV_SEND_IP_CSUM)
		d->st.send_ip_csum++;
	if (d->f_send_cqe > 0) {
		d->f_send_cqe--;
		d->st.injected++;
		send_cqe(qp, wr->wr_id, IBV_WC_LOC_QP_OP_ERR, tso ? IBV_WC_TSO : IBV_WC_SEND, seq);
		qp_to_err(qp);
		return;
	}
	if (tso) {
		memcpy(g_buf, wr->tso.hdr, wr->tso.hdr_sz);
		total = wr->tso.hdr_sz;
		for (int i = 0; i < wr->num_sge; i++) {
			const struct ibv_sge *s = &wr->sg_list[i];
			if (total + s->length > sizeof(g_buf) || !sge_ok(qp, s)) {
				send_cqe(qp, wr->wr_id, IBV_WC_LOC_PROT_ERR, IBV_WC_TSO, seq);
				qp_to_err(qp);
				return;
			}
			memcpy(g_buf + total, (const void *)(uintptr_t)s->addr, s->length);
			total += s->length;
		}
		d->st.send_tso++;
		if (parse_l34(g_buf, (uint32_t)total).l4)
			tcp_segment(d, g_buf, (uint32_t)total, wr->tso.hdr_sz, wr->tso.mss, tso_emit);
	} else {
		len = gather(qp, wr, inl);
		if (len < 0) {
			send_cqe(qp, wr->wr_id, IBV_WC_LOC_PROT_ERR, IBV_WC_SEND, seq);
			qp_to_err(qp);
			return;
		}
		if ((uint32_t)len > (uint32_t)d->mtu + 18) {
			d->st.tx_oversize++;
		} else {
			if (wr->send_flags & IBV_SEND_IP_CSUM)
				fill_csum(g_buf, (uint32_t)len);
			wire_out(d, g_buf, (uint32_t)len);
		}
	}
	if (sig)
		send_cqe(qp, wr->wr_id, IBV_WC_SUCCESS, tso ? IBV_WC_TSO : IBV_WC_SEND, seq);
}

/* One WR in RTS: read now, or (XTD_LATE_DMA) kept until the next poll of
 * any CQ (the device works while the program does something else).  Returns 0, or an errno for ibv_post_send to return. */
static int send_one(struct xd_qp *qp, struct ibv_send_wr *wr)
{
	int r = send_check(qp, wr);

	if (r)
		return r;
	if (!qp->c->dev->late_dma && !qp->lq_count) {
		send_exec(qp, wr, qp->sq_posted++);
		return 0;
	}
	if (qp->lq_count == qp->lq_cap) {
		uint32_t cap = qp->lq_cap ? qp->lq_cap * 2 : 64;
		struct xd_lwr *n = calloc(cap, sizeof(*n));
		if (!n)
			return ENOMEM;
		for (uint32_t k = 0; k < qp->lq_count; k++)
			n[k] = qp->lq[(qp->lq_head + k) % qp->lq_cap];
		free(qp->lq);
		qp->lq = n;
		qp->lq_cap = cap;
		qp->lq_head = 0;
	}
	struct xd_lwr *l = &qp->lq[(qp->lq_head + qp->lq_count) % qp->lq_cap];
	memset(l, 0, sizeof(*l));
	l->wr = *wr;
	l->wr.next = NULL;
	l->wr.sg_list = l->sge;
	if (wr->send_flags & IBV_SEND_INLINE) { /* copied into the WQE now */
		size_t total = 0;
		for (int k = 0; k < wr->num_sge; k++)
			total += wr->sg_list[k].length;
		l->copy = malloc(total ? total : 1);
		if (!l->copy)
			return ENOMEM;
		total = 0;
		for (int k = 0; k < wr->num_sge; k++) {
			memcpy(l->copy + total, (const void *)(uintptr_t)wr->sg_list[k].addr, wr->sg_list[k].length);
			total += wr->sg_list[k].length;
		}
		l->sge[0] = (struct ibv_sge){ .addr = (uintptr_t)l->copy, .length = (uint32_t)total };
		l->wr.num_sge = 1;
	} else {
		memcpy(l->sge, wr->sg_list, sizeof(*wr->sg_list) * (size_t)wr->num_sge);
		if (wr->opcode == IBV_WR_TSO) { /* the header is copied into the WQE too */
			l->copy = malloc(wr->tso.hdr_sz);
			if (!l->copy)
				return ENOMEM;
			memcpy(l->copy, wr->tso.hdr, wr->tso.hdr_sz);
			l->wr.tso.hdr = l->copy;
		}
	}
	l->seq = qp->sq_posted++;
	qp->lq_count++;
	return 0;
}

static struct xd_lwr *late_pop(struct xd_qp *qp)
{
	struct xd_lwr *l = &qp->lq[qp->lq_head];
	qp->lq_head = (qp->lq_head + 1) % qp->lq_cap;
	qp->lq_count--;
	return l;
}

/* The device reads what it kept: in RTS as posted, in ERR flushed; RESET
 * (or destroy) discards them. */
static void late_run(struct xd_qp *qp, bool discard)
{
	while (qp->lq_count) {
		struct xd_lwr *l = late_pop(qp);
		if (!discard && qp->qp.state == IBV_QPS_RTS) {
			qp->c->dev->st.late_wrs++;
			send_exec(qp, &l->wr, l->seq);
		} else if (!discard) {
			send_cqe(qp, l->wr.wr_id, IBV_WC_WR_FLUSH_ERR,
				 l->wr.opcode == IBV_WR_TSO ? IBV_WC_TSO : IBV_WC_SEND, l->seq);
		}
		free(l->copy);
		l->copy = NULL;
	}
}

/* Does a kept WR point into m? */
static bool late_uses(const struct xd_mr *m)
{
	for (int i = 0; i < g_ndev; i++)
		for (struct xd_ctx *c = g_dev[i].ctxs; c; c = c->next)
			for (struct xd_qp *qp = c->qps; qp; qp = qp->next)
				for (uint32_t k = 0; k < qp->lq_count; k++) {
					const struct xd_lwr *l = &qp->lq[(qp->lq_head + k) % qp->lq_cap];
					if (l->wr.send_flags & IBV_SEND_INLINE)
						continue;
					for (int j = 0; j < l->wr.num_sge; j++)
						if (l->sge[j].lkey == m->mr.lkey)
							return true;
				}
	return false;
}


static int xd_post_send(struct ibv_qp *q, struct ibv_send_wr *wr, struct ibv_send_wr **bad)
{
	struct xd_qp *qp = (struct xd_qp *)q;
	struct xd_dev *d = qp->c->dev;
	int r = 0;

	lock();
	d->st.post_send_calls++;
	for (; wr; wr = wr->next) {
		if (d->fatal) {
			r = EIO;
		} else if (d->f_post_send > 0) {
			d->f_post_send--;
			d->st.injected++;
			r = ENOMEM;
		} else if (qp->sq_posted - qp->sq_done >= qp->max_send_wr) {
			r = ENOMEM;
		} else if (q->state == IBV_QPS_ERR) {
			late_run(qp, false);
			uint64_t seq = qp->sq_posted++;
			d->st.send_wrs++;
			send_cqe(qp, wr->wr_id, IBV_WC_WR_FLUSH_ERR, IBV_WC_SEND, seq);
			continue;
		} else if (q->state != IBV_QPS_RTS) {
			r = EINVAL;
		} else {
			r = send_one(qp, wr);
		}
		if (r)
			break;
	}
	if (r && bad)
		*bad = wr;
	unlock();
	return r;
}

static int xd_post_recv(struct ibv_qp *q, struct ibv_recv_wr *wr, struct ibv_recv_wr **bad)
{
	struct xd_qp *qp = (struct xd_qp *)q;
	struct xd_dev *d = qp->c->dev;
	int r = 0;

	lock();
	d->st.post_recv_calls++;
	for (; wr; wr = wr->next) {
		if (d->fatal) {
			r = EIO;
		} else if (d->f_post_recv > 0) {
			d->f_post_recv--;
			d->st.injected++;
			r = ENOMEM;
		} else if (q->state == IBV_QPS_RESET) {
			r = EINVAL;
		} else if (wr->num_sge < 0 || (uint32_t)wr->num_sge > qp->max_recv_sge) {
			r = EINVAL;
		} else if (qp->rq_count >= qp->max_recv_wr) {
			r = ENOMEM;
		} else if (q->state == IBV_QPS_ERR) {
			struct ibv_wc wc;
			d->st.recv_wrs++;
			wc_fill(&wc, qp, wr->wr_id, IBV_WC_WR_FLUSH_ERR, IBV_WC_RECV);
			cq_push(qp->rcq, &wc, NULL, 0);
			continue;
		} else {
			struct xd_rwr *rw = &qp->rq[(qp->rq_head + qp->rq_count) % qp->max_recv_wr];
			rw->wr_id = wr->wr_id;
			rw->nsge = wr->num_sge;
			memcpy(rw->sge, wr->sg_list, sizeof(struct ibv_sge) * (size_t)wr->num_sge);
			qp->rq_count++;
			d->st.recv_wrs++;
		}
		if (r)
			break;
	}
	if (r && bad)
		*bad = wr;
	unlock();
	return r;
}

/* --- flows ----------------------------------------------------------------------------- */

/* XTCP_DOUBLE_TRACE=FILE: one line per flow rule created or destroyed,
 * appended to FILE (whole-system tests read it: the process under test
 * cannot be asked for its counters), e.g.
 *   pid 42 xtd0 create flow 7 prio 0 tcp 10.55.0.2:7000 -> 10.55.0.3:40001
 *   pid 42 xtd0 destroy flow 7 */
static void trace(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void trace(const char *fmt, ...)
{
	const char *path = getenv("XTCP_DOUBLE_TRACE");
	char line[256];
	va_list ap;
	int n, fd;

	if (!path || !*path)
		return;
	n = snprintf(line, sizeof(line), "pid %d ", (int)getpid());
	va_start(ap, fmt);
	n += vsnprintf(line + n, sizeof(line) - (size_t)n - 1, fmt, ap);
	va_end(ap);
	if (n > (int)sizeof(line) - 2)
		n = (int)sizeof(line) - 2;
	line[n++] = '\n';
	fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
	if (fd < 0)
		return;
	if (write(fd, line, (size_t)n) != n) {
		/* a trace is best effort */
	}
	close(fd);
}

static void trace_create(const struct xd_dev *d, const struct xd_flow *fl)
{
	char what[160] = "", a[16], b[16];
	size_t n = 0;

	if (fl->flags & IBV_FLOW_ATTR_FLAGS_DONT_TRAP)
		n += (size_t)snprintf(what + n, sizeof(what) - n, " dont_trap");
	if (fl->has_eth && memcmp(fl->eth_m.dst_mac, "\0\0\0\0\0\0", 6) != 0) {
		const uint8_t *m = fl->eth_v.dst_mac;
		n += (size_t)snprintf(what + n, sizeof(what) - n, " dst %02x:%02x:%02x:%02x:%02x:%02x", m[0], m[1],
				      m[2], m[3], m[4], m[5]);
	}
	if (fl->has_eth && fl->eth_m.ether_type)
		n += (size_t)snprintf(what + n, sizeof(what) - n, " ethertype 0x%04x", ntohs(fl->eth_v.ether_type));
	if (fl->has_ip) {
		struct in_addr sa = { fl->ip_v.src_ip & fl->ip_m.src_ip }, da = { fl->ip_v.dst_ip & fl->ip_m.dst_ip };
		inet_ntop(AF_INET, &sa, a, sizeof(a));
		inet_ntop(AF_INET, &da, b, sizeof(b));
		if (fl->has_l4)
			n += (size_t)snprintf(what + n, sizeof(what) - n, " %s %s:%u -> %s:%u",
					      fl->l4_type == IBV_FLOW_SPEC_TCP ? "tcp" : "udp",
					      fl->ip_m.src_ip ? a : "*", ntohs(fl->l4_v.src_port & fl->l4_m.src_port),
					      fl->ip_m.dst_ip ? b : "*", ntohs(fl->l4_v.dst_port & fl->l4_m.dst_port));
		else
			n += (size_t)snprintf(what + n, sizeof(what) - n, " ip %s -> %s%s", fl->ip_m.src_ip ? a : "*",
					      fl->ip_m.dst_ip ? b : "*",
					      fl->ip_m.proto ? (fl->ip_v.proto == 1 ? " icmp" : " proto") : "");
	}
	trace("%s create flow %u prio %u%s", d->ibdev.name, fl->flow.handle, fl->priority, what);
}

static struct ibv_flow *xd_create_flow(struct ibv_qp *q, struct ibv_flow_attr *attr)
{
	struct xd_qp *qp = (struct xd_qp *)q;
	struct xd_dev *d = qp->c->dev;
	struct xd_flow *fl;
	const uint8_t *p = (const uint8_t *)(attr + 1), *end = (const uint8_t *)attr + attr->size;
	int e = 0;

	if (!(d->caps & XTD_CAP_FLOW))
		e = EOPNOTSUPP;
	else if (!net_raw_ok(d))
		e = EPERM;
	else if (attr->comp_mask || attr->port != 1 || attr->size < sizeof(*attr))
		e = EINVAL;
	else if (attr->type != IBV_FLOW_ATTR_NORMAL)
		e = EOPNOTSUPP;
	else if (attr->flags & ~(uint32_t)(IBV_FLOW_ATTR_FLAGS_DONT_TRAP | IBV_FLOW_ATTR_FLAGS_EGRESS))
		e = EINVAL;
	else if ((attr->flags & IBV_FLOW_ATTR_FLAGS_EGRESS) ||
		 ((attr->flags & IBV_FLOW_ATTR_FLAGS_DONT_TRAP) && !(d->caps & XTD_CAP_DONT_TRAP)))
		e = EOPNOTSUPP;
	if (e) {
		errno = e;
		return NULL;
	}
	fl = calloc(1, sizeof(*fl));
	if (!fl) {
		errno = ENOMEM;
		return NULL;
	}
	for (int i = 0; i < attr->num_of_specs; i++) {
		struct { uint32_t type; uint16_t size; } h;

		if (p + 8 > end) {
			e = EINVAL;
			break;
		}
		memcpy(&h.type, p, 4);
		memcpy(&h.size, p + 4, 2);
		if (p + h.size > end || h.size < 8) {
			e = EINVAL;
			break;
		}
		if (h.type == IBV_FLOW_SPEC_ETH && h.size == sizeof(struct ibv_flow_spec_eth)) {
			const struct ibv_flow_spec_eth *s = (const void *)p;
			fl->has_eth = true;
			fl->eth_v = s->val;
			fl->eth_m = s->mask;
		} else if (h.type == IBV_FLOW_SPEC_IPV4 && h.size == sizeof(struct ibv_flow_spec_ipv4)) {
			const struct ibv_flow_spec_ipv4 *s = (const void *)p;
			fl->has_ip = true;
			fl->ip_v.src_ip = s->val.src_ip;
			fl->ip_v.dst_ip = s->val.dst_ip;
			fl->ip_m.src_ip = s->mask.src_ip;
			fl->ip_m.dst_ip = s->mask.dst_ip;
		} else if (h.type == IBV_FLOW_SPEC_IPV4_EXT && h.size == sizeof(struct ibv_flow_spec_ipv4_ext)) {
			const struct ibv_flow_spec_ipv4_ext *s = (const void *)p;
			fl->has_ip = true;
			fl->ip_v = s->val;
			fl->ip_m = s->mask;
			fl->ip_m.flags = 0;
		} else if ((h.type == IBV_FLOW_SPEC_TCP || h.type == IBV_FLOW_SPEC_UDP) &&
			   h.size == sizeof(struct ibv_flow_spec_tcp_udp)) {
			const struct ibv_flow_spec_tcp_udp *s = (const void *)p;
			fl->has_l4 = true;
			fl->l4_type = (int)h.type;
			fl->l4_v = s->val;
			fl->l4_m = s->mask;
		} else if (h.type == IBV_FLOW_SPEC_ETH || h.type == IBV_FLOW_SPEC_IPV4 || h.type == IBV_FLOW_SPEC_IPV4_EXT ||
			   h.type == IBV_FLOW_SPEC_TCP || h.type == IBV_FLOW_SPEC_UDP) {
			e = EINVAL; /* wrong size for its type */
			break;
		} else {
			e = EOPNOTSUPP;
			break;
		}
		p += h.size;
	}
	if (e) {
		free(fl);
		errno = e;
		return NULL;
	}
	lock();
	fl->qp = qp;
	fl->priority = attr->priority;
	fl->flags = attr->flags;
	fl->seq = g_flow_seq++;
	fl->flow.context = q->context;
	fl->flow.handle = g_next_handle++;
	{
		struct xd_flow **pp = &d->flows;
		while (*pp && (*pp)->priority <= fl->priority)
			pp = &(*pp)->next;
		fl->next = *pp;
		*pp = fl;
	}
	qp->nflows++;
	d->st.flows_created++;
	d->st.flows_active++;
	d->live++;
	trace_create(d, fl);
	unlock();
	return &fl->flow;
}

static int xd_destroy_flow(struct ibv_flow *f)
{
	struct xd_flow *fl = (struct xd_flow *)f;
	struct xd_dev *d = fl->qp->c->dev;

	lock();
	for (struct xd_flow **pp = &d->flows; *pp; pp = &(*pp)->next) {
		if (*pp == fl) {
			*pp = fl->next;
			fl->qp->nflows--;
			d->st.flows_destroyed++;
			d->st.flows_active--;
			d->live--;
			trace("%s destroy flow %u", d->ibdev.name, fl->flow.handle);
			unlock();
			free(fl);
			return 0;
		}
	}
	unlock();
	return EINVAL;
}

/* --- control interface ------------------------------------------------------------------ */

static struct xd_dev *ctl_dev(int i)
{
	ensure_devs();
	return i >= 0 && i < g_ndev ? &g_dev[i] : NULL;
}

EXPORT int xtd_ndevs(void)
{
	int n;

	lock();
	ensure_devs();
	n = g_ndev;
	unlock();
	return n;
}

EXPORT unsigned int xtd_set_caps(int dev, unsigned int caps)
{
	struct xd_dev *d;
	unsigned int old = 0;

	lock();
	if ((d = ctl_dev(dev))) {
		old = d->caps;
		d->caps = caps & XTD_CAP_ALL;
	}
	unlock();
	return old;
}

static void port_event(struct xd_dev *d, int state)
{
	d->port_state = state;
	for (struct xd_ctx *c = d->ctxs; c; c = c->next)
		raise_async(c, state == IBV_PORT_ACTIVE ? IBV_EVENT_PORT_ACTIVE : IBV_EVENT_PORT_ERR, NULL, 1);
}

EXPORT int xtd_inject(int dev, int fault, int count)
{
	struct xd_dev *d;
	int r = 0;

	lock();
	d = ctl_dev(dev);
	if (!d) {
		unlock();
		return -ENODEV;
	}
	switch (fault) {
	case XTD_POST_SEND_FAIL: d->f_post_send = count; break;
	case XTD_POST_RECV_FAIL: d->f_post_recv = count; break;
	case XTD_SEND_CQE_ERR: d->f_send_cqe = count; break;
	case XTD_RECV_CQE_ERR: d->f_recv_cqe = count; break;
	case XTD_QP_RESET_FAIL: d->f_reset = count; break;
	case XTD_LATE_DMA: d->late_dma = count > 0; break;
	case XTD_QP_FATAL:
		d->st.injected++;
		for (struct xd_ctx *c = d->ctxs; c; c = c->next) {
			for (struct xd_qp *qp = c->qps; qp; qp = qp->next) {
				qp_to_err(qp);
				raise_async(c, IBV_EVENT_QP_FATAL, &qp->qp, 0);
			}
		}
		break;
	case XTD_QP_ERR:
		d->st.injected++;
		for (struct xd_ctx *c = d->ctxs; c; c = c->next)
			for (struct xd_qp *qp = c->qps; qp; qp = qp->next)
				qp_to_err(qp);
		break;
	case XTD_PORT_DOWN:
		d->st.injected++;
		port_event(d, IBV_PORT_DOWN);
		break;
	case XTD_PORT_UP:
		d->st.injected++;
		port_event(d, IBV_PORT_ACTIVE);
		break;
	case XTD_DEVICE_FATAL:
		d->st.injected++;
		d->fatal = true;
		for (struct xd_ctx *c = d->ctxs; c; c = c->next)
			raise_async(c, IBV_EVENT_DEVICE_FATAL, NULL, 0);
		break;
	default:
		r = -EINVAL;
	}
	unlock();
	return r;
}

EXPORT int xtd_stats(int dev, struct xtd_stats *out)
{
	struct xd_dev *d;

	lock();
	d = ctl_dev(dev);
	if (d && out) {
		*out = d->st;
		out->async_read = g_async_read;
		out->async_acked = g_async_acked;
		out->objects_live = (uint64_t)d->live;
		out->late_pending = 0;
		for (struct xd_ctx *c = d->ctxs; c; c = c->next)
			for (struct xd_qp *qp = c->qps; qp; qp = qp->next)
				out->late_pending += qp->lq_count;
	}
	unlock();
	return d ? 0 : -ENODEV;
}

EXPORT int xtd_wire_input(int dev, const void *frame, size_t len)
{
	struct xd_dev *d;

	if (len > sizeof(g_seg))
		return -EMSGSIZE;
	lock();
	d = ctl_dev(dev);
	if (d) {
		memcpy(g_seg, frame, len);
		wire_in(d, g_seg, (uint32_t)len);
	}
	unlock();
	return d ? 0 : -ENODEV;
}

EXPORT void xtd_reset(void)
{
	lock();
	ensure_devs();
	for (int i = 0; i < g_ndev; i++) {
		struct xd_dev *d = &g_dev[i];
		memset(&d->st, 0, sizeof(d->st));
		g_async_read = g_async_acked = 0;
		for (struct xd_flow *f = d->flows; f; f = f->next)
			d->st.flows_active++;
		for (struct xd_ctx *c = d->ctxs; c; c = c->next)
			for (struct xd_qp *qp = c->qps; qp; qp = qp->next)
				d->st.qps_active++;
		d->f_post_send = d->f_post_recv = d->f_send_cqe = d->f_recv_cqe = d->f_reset = 0;
		d->caps = g_default_caps;
		d->late_dma = g_default_late;
		d->port_state = IBV_PORT_ACTIVE;
		d->fatal = false;
	}
	unlock();
}

EXPORT int xtd_qp_state(int dev)
{
	struct xd_dev *d;
	int s = -1;

	lock();
	d = ctl_dev(dev);
	for (struct xd_ctx *c = d ? d->ctxs : NULL; c && s < 0; c = c->next)
		if (c->qps)
			s = c->qps->qp.state;
	unlock();
	return s;
}

EXPORT int xtd_set_wire(const char *spec)
{
	int r;

	lock();
	for (int i = 0; i < g_ndev; i++) {
		if (g_dev[i].nopen) {
			unlock();
			return -EBUSY;
		}
	}
	if (g_ndev < 0) {
		g_default_caps = parse_caps(getenv("XTCP_DOUBLE_CAPS"), XTD_CAP_ALL);
		g_default_late = getenv("XTCP_DOUBLE_LATE_DMA") && atoi(getenv("XTCP_DOUBLE_LATE_DMA")) > 0;
	}
	r = build_devs(spec);
	unlock();
	return r;
}

EXPORT const char *xtd_sysfs_root(void)
{
	lock();
	ensure_devs();
	unlock();
	return g_root;
}
