/* The NIC under the engine: which backend XTCP_NIC picks (xp_nic_open), and
 * flow steering on the backends that have it (verbs).
 *
 * Backends: verbs (ibverbs raw packet QP, nic/verbs.h), packet (AF_PACKET,
 * nic/packet.h).  auto tries verbs, then packet; when both fail the caller
 * leaves every socket to the kernel.
 *
 * Addresses: AF_PACKET cannot keep frames from the kernel, so its engine
 * needs an address of its own (XTCP_IP, one the kernel does not have).  A
 * verbs engine may share the interface's address: its flows are steered to
 * the QP by the NIC and the kernel never sees them.  Without XTCP_IP the
 * verbs backend takes the interface's first IPv4 address, netmask and
 * default gateway from the kernel.
 *
 * ARP on verbs: the backend installs a DONT_TRAP rule for ARP frames, so the
 * kernel and the engine both see every one (nic/verbs.h); on a shared address
 * the kernel answers the requests for it, on an own address the engine does,
 * and the engine resolves its neighbours itself.  A device without DONT_TRAP
 * leaves ARP to the kernel alone: the engine then starts with the kernel's
 * complete neighbour entries for the interface (/proc/net/arp, as static
 * entries), the only neighbours it can reach.
 *
 * Steering rules (nic.h flow_add/flow_del): one on (engine address, port)
 * for each listening socket, one on the 5-tuple for each connection, made
 * before the connection's first segment leaves (connect) or when it is
 * accepted.  A listener's rule goes when it stops listening.  A connection's
 * rule outlives close(): the engine still exchanges FIN, ACKs and TIME_WAIT
 * segments on it, which the kernel would answer with resets on a shared
 * address.  It is removed once the engine has forgotten the connection (a
 * sweep every second while such rules exist).
 *
 * Everything here runs with the engine lock held, except xp_nic_open (called
 * before the engine exists).
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "shim.h"
#include "../nic/packet.h"
#include "../nic/verbs.h"

/* --- opening ------------------------------------------------------------ */

static void verbs_log(void *ctx, int level, const char *msg)
{
	(void)ctx;
	int l = level == XT_VERBS_LOG_ERROR ? XP_LOG_ERROR : level == XT_VERBS_LOG_WARN ? XP_LOG_WARN : XP_LOG_INFO;
	XP_LOG(l, "verbs on %s: %s", xp_cfg.iface, msg);
}

static int prefix_of(uint32_t mask)
{
	int p = 0;
	while (p < 32 && (mask & (0x80000000u >> p)))
		p++;
	return p;
}

/* No ARP copy rule on the device: the engine cannot resolve neighbours, and
 * starts with the kernel's instead (xp_nic_seed_neighbours). */
static bool seed_neighbours;

static int open_verbs(struct xt_nic **out, char *why, size_t len)
{
	struct xt_verbs_cfg vc;
	uint32_t ip = xp_cfg.ip, mask = xp_cfg.netmask, gw = xp_cfg.gw;
	memset(&vc, 0, sizeof(vc));
	if (!ip) {
		int r = xt_verbs_kernel_addr(xp_cfg.iface, &ip, &mask, &gw);
		if (r < 0 || !ip) {
			snprintf(why, len, "XTCP_IP is not set and %s has no IPv4 address to share", xp_cfg.iface);
			return r < 0 ? r : -EADDRNOTAVAIL;
		}
		if (!mask)
			mask = 0xffffffffu;
		if (xp_cfg.gw)
			gw = xp_cfg.gw;
		if (gw && ((gw & mask) != (ip & mask) || gw == ip))
			gw = 0; /* a route the engine cannot use as its gateway */
	}
	vc.ifname = xp_cfg.iface;
	vc.ip = ip;
	vc.log = verbs_log;
	vc.have_mac = xp_cfg.have_mac;
	memcpy(vc.mac, xp_cfg.mac, 6);
	int r = xt_verbs_open(&vc, out);
	if (r < 0) {
		const char *e = xt_verbs_error();
		snprintf(why, len, "%s", e && *e ? e : strerror(-r));
		return r;
	}
	struct xt_verbs_info vi;
	seed_neighbours = xt_verbs_info(*out, &vi) == 0 && !vi.arp_rule;
	if (!xp_cfg.ip) { /* the interface's address, shared with the kernel */
		xp_cfg.ip = ip;
		xp_cfg.netmask = mask;
		xp_cfg.prefix = prefix_of(mask);
		xp_cfg.gw = gw;
	}
	return 0;
}

static int open_packet(struct xt_nic **out, char *why, size_t len)
{
	char ipbuf[16];
	struct in_addr a = { .s_addr = htonl(xp_cfg.ip) };
	if (!xp_cfg.ip) {
		snprintf(why, len, "XTCP_IP is not set (a.b.c.d/prefix: AF_PACKET needs an address the kernel "
				   "does not own on %s)", xp_cfg.iface);
		return -EADDRNOTAVAIL;
	}
	inet_ntop(AF_INET, &a, ipbuf, sizeof(ipbuf));
	if (xp_is_local_kernel_addr(xp_cfg.ip)) {
		snprintf(why, len, "XTCP_IP=%s/%d: the kernel owns this address (it would reset our peers); "
				   "AF_PACKET needs one it does not own", ipbuf, xp_cfg.prefix);
		return -EADDRINUSE;
	}
	struct xt_packet_cfg pc;
	memset(&pc, 0, sizeof(pc));
	pc.ifname = xp_cfg.iface;
	pc.ip = xp_cfg.ip;
	pc.no_tso = !xp_cfg.tso;
	pc.have_mac = xp_cfg.have_mac;
	memcpy(pc.mac, xp_cfg.mac, 6);
	int r = xt_packet_open(&pc, out);
	if (r < 0) {
		const char *e = xt_packet_error();
		snprintf(why, len, "%s", e && *e ? e : strerror(-r));
	}
	return r;
}

/* Hosts without rdma-core or without an RDMA device: not worth a warning. */
static bool verbs_simply_absent(int err)
{
	return err == -ENOENT || err == -ENODEV;
}

struct xt_nic *xp_nic_open(char *why, size_t len, int *level)
{
	char ev[400], ep[400];
	struct xt_nic *nic = NULL;
	int r;

	why[0] = 0;
	*level = XP_LOG_INFO;
	switch (xp_cfg.nic) {
	case XP_NIC_VERBS:
		if (open_verbs(&nic, ev, sizeof(ev)) == 0)
			return nic;
		snprintf(why, len, "XTCP_NIC=verbs: %s", ev);
		*level = XP_LOG_ERROR;
		return NULL;
	case XP_NIC_PACKET:
		if (open_packet(&nic, ep, sizeof(ep)) == 0)
			return nic;
		snprintf(why, len, "XTCP_NIC=packet: %s", ep);
		*level = XP_LOG_ERROR;
		return NULL;
	default:
		r = open_verbs(&nic, ev, sizeof(ev));
		if (r == 0) {
			snprintf(why, len, "XTCP_NIC=auto: verbs chosen");
			return nic;
		}
		if (!verbs_simply_absent(r))
			*level = XP_LOG_WARN; /* a device is there but unusable: say so */
		if (open_packet(&nic, ep, sizeof(ep)) == 0) {
			snprintf(why, len, "XTCP_NIC=auto: verbs failed (%s); packet chosen", ev);
			return nic;
		}
		snprintf(why, len, "XTCP_NIC=auto: verbs failed (%s); packet failed (%s)", ev, ep);
		*level = XP_LOG_ERROR;
		return NULL;
	}
}

/* Seeds the engine with the kernel's neighbours on the interface: verbs on
 * a device without the ARP copy rule only.  The entries are static (never
 * aged, never overwritten by the wire), so not where ARP works. */
void xp_nic_seed_neighbours(void)
{
	struct xt_verbs_neigh n[64];
	if (!seed_neighbours || !xp_eng.nic || strcmp(xp_eng.nic->ops->name, "verbs") != 0)
		return;
	int k = xt_verbs_kernel_neigh(xp_cfg.iface, n, (int)(sizeof(n) / sizeof(n[0])));
	for (int i = 0; i < k; i++)
		(void)xt_arp_add(xp_eng.st, n[i].ip, n[i].mac, xp_eng.now);
	if (k > 0)
		XP_LOG(XP_LOG_DEBUG, "verbs: %d neighbours of %s taken from the kernel", k, xp_cfg.iface);
}

/* --- transmit hold: a connection's rule goes in before its SYN leaves ---- */

#define HOLD_FRAMES 8
#define HOLD_BYTES 2048

static struct {
	bool on;
	int n;
	size_t used;
	struct xt_frame f[HOLD_FRAMES];
	uint8_t buf[HOLD_BYTES];
} hold;

static void hold_flush(void)
{
	if (hold.n)
		(void)xt_nic_tx(xp_eng.nic, hold.f, hold.n, xp_eng.now);
	hold.n = 0;
	hold.used = 0;
}

int xp_tx_held(const struct xt_frame *frames, int n)
{
	for (int i = 0; i < n; i++) {
		uint32_t len = xt_frame_wire_len(&frames[i]);
		if (hold.n == HOLD_FRAMES || hold.used + len > HOLD_BYTES) {
			/* more than a SYN's worth: keep the order, send the rest now */
			hold_flush();
			int r = xt_nic_tx(xp_eng.nic, frames + i, n - i, xp_eng.now);
			return r < 0 ? i : i + r;
		}
		xt_frame_copy(&frames[i], hold.buf + hold.used);
		hold.f[hold.n] = frames[i];
		hold.f[hold.n].data = hold.buf + hold.used;
		hold.f[hold.n].len = len;
		hold.f[hold.n].flags &= ~XT_FRAME_GATHER;
		hold.used += len;
		hold.n++;
	}
	return n;
}

/* --- rules -------------------------------------------------------------- */

struct deferred {
	int flow, esock;
	struct xt_flow t;
};
static struct deferred *dfr;
static int ndfr, dfr_cap;
static xt_time_t sweep_at = XT_TIME_NEVER;
static bool said_fail;

#define SWEEP_NS 1000000000ull

/* A rule is remembered as (nic generation, id) + 1: a fork child that
 * attaches a NIC of its own must never remove rules by the ids of its
 * parent's (xp_sock copies and the deferred list come with the fork). */
#define FLOW_ID_BITS 20
#define FLOW_ID_MASK ((1 << FLOW_ID_BITS) - 1)
static struct xt_nic *gen_nic;
static int gen;

static int cur_gen(void)
{
	if (gen_nic != xp_eng.nic) {
		gen_nic = xp_eng.nic;
		gen = (gen + 1) & 0x3ff;
	}
	return gen;
}

static bool steering(void)
{
	return xp_eng.nic && xp_eng.nic->ops->flow_add;
}

static void add_rule(struct xp_sock *s, const struct xt_flow *t)
{
	int id = xt_nic_flow_add(xp_eng.nic, t);
	if (id >= 0 && id <= FLOW_ID_MASK) {
		s->flow = ((cur_gen() << FLOW_ID_BITS) | id) + 1;
		return;
	}
	if (id >= 0) { /* more rules than we can name: do without this one */
		(void)xt_nic_flow_del(xp_eng.nic, id);
		id = -ENOSPC;
	}
	if (!said_fail) { /* once: with a shared address the flow will fail */
		said_fail = true;
		xp_log(XP_LOG_WARN, "flow steering rule refused by the NIC (%s): that socket's traffic may reach "
				    "the kernel instead of the engine", strerror(-id));
	}
}

void xp_flow_listen(struct xp_sock *s)
{
	if (!steering() || s->flow || s->esock < 0)
		return;
	struct xt_flow t = { .local_ip = xp_cfg.ip, .local_port = s->port };
	uint32_t ip;
	if (xt_tcp_getname(xp_eng.st, s->esock, 0, &ip, &t.local_port) < 0 || !t.local_port)
		return;
	add_rule(s, &t);
}

/* The connection's 5-tuple in any state the engine still holds it (SYN_SENT
 * and TIME_WAIT included, where getpeername() says ENOTCONN). */
static int conn_tuple(int esock, struct xt_flow *t)
{
	struct xt_sock_view v;
	memset(t, 0, sizeof(*t));
	if (xt_tcp_view(xp_eng.st, esock, &v, xp_eng.now) < 0 || !v.rport)
		return -1;
	t->local_ip = v.lip ? v.lip : xp_cfg.ip;
	t->local_port = v.lport;
	t->remote_ip = v.rip;
	t->remote_port = v.rport;
	return 0;
}

void xp_flow_conn(struct xp_sock *s)
{
	struct xt_flow t;
	if (!steering() || s->flow || s->esock < 0 || conn_tuple(s->esock, &t) < 0)
		return;
	add_rule(s, &t);
}

void xp_tx_hold(void)
{
	if (steering())
		hold.on = true;
}

void xp_tx_release(void)
{
	if (!hold.on)
		return;
	hold.on = false;
	hold_flush();
}

bool xp_tx_holding(void)
{
	return hold.on;
}

/* flow: the stored value - 1 */
static void del_rule(int flow)
{
	if (!xp_eng.nic || (flow >> FLOW_ID_BITS) != cur_gen())
		return; /* another NIC's (the parent's, in a fork child) */
	int r = xt_nic_flow_del(xp_eng.nic, flow & FLOW_ID_MASK);
	if (r < 0 && r != -ENOENT)
		XP_LOG(XP_LOG_DEBUG, "flow rule %d: removal failed: %s", flow & FLOW_ID_MASK, strerror(-r));
}

void xp_flow_release(struct xp_sock *s, bool now)
{
	if (!s->flow)
		return;
	int flow = s->flow - 1;
	s->flow = 0;
	struct xt_flow t;
	if (now || s->listening || s->esock < 0 || conn_tuple(s->esock, &t) < 0) {
		del_rule(flow);
		return;
	}
	if (ndfr == dfr_cap) {
		int cap = dfr_cap ? dfr_cap * 2 : 64;
		struct deferred *d = realloc(dfr, sizeof(*d) * (size_t)cap);
		if (!d) {
			del_rule(flow);
			return;
		}
		dfr = d;
		dfr_cap = cap;
	}
	dfr[ndfr++] = (struct deferred){ .flow = flow, .esock = s->esock, .t = t };
	if (sweep_at == XT_TIME_NEVER)
		sweep_at = xp_eng.now + SWEEP_NS;
}

/* Is the engine done with the connection (handle freed, closed, or reused
 * by another 4-tuple)? */
static bool engine_done(const struct deferred *d)
{
	struct xt_flow t;
	if (conn_tuple(d->esock, &t) < 0) /* freed, or CLOSE */
		return true;
	return memcmp(&t, &d->t, sizeof(t)) != 0;
}

void xp_flow_sweep(xt_time_t now)
{
	if (XP_LIKELY(now < sweep_at))
		return;
	int k = 0;
	for (int i = 0; i < ndfr; i++) {
		if (engine_done(&dfr[i]))
			del_rule(dfr[i].flow);
		else
			dfr[k++] = dfr[i];
	}
	ndfr = k;
	sweep_at = ndfr ? now + SWEEP_NS : XT_TIME_NEVER;
}

xt_time_t xp_flow_deadline(void)
{
	return sweep_at;
}
