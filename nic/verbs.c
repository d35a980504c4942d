/* ibverbs backend: raw packet QP, flow steering, completion channel.
 * The contract and the design are in verbs.h; the notes here are about how.
 *
 * Nothing links against libibverbs: the control path goes through function
 * pointers found with dlvsym() (struct vb_lib), the data path through the
 * ops tables of the context, exactly as the inline functions of verbs.h do.
 * The inline functions that fall back to an exported symbol
 * (ibv_query_device_ex, ibv_query_port, ibv_reg_mr) are not used: they would
 * make libxtcp.so depend on libibverbs at link time.
 *
 * Work request ids carry a generation in their upper 32 bits, bumped by every
 * QP recovery, so a completion that surfaces after the reset is recognised
 * as stale and ignored; the lower 32 bits are the RX slot or the send queue
 * index.
 *
 * RX slot life: FREE (queued for posting) -> POSTED (owned by the device) ->
 * LENT (returned by rx_burst, the caller reads it) -> FREE at the next
 * rx_burst.  A flushed or failed receive goes straight back to FREE.  A lent
 * slot the engine keeps (rx_hold: the program reads the payload from it)
 * becomes KEPT_LENT, KEPT at the next rx_burst, and FREE at rx_release
 * (KEPT_LENT goes back to LENT, for the next rx_burst to free).  There are
 * rx_depth + VB_LEND_MAX + VB_HOLD_WINDOW slots, so the receive queue stays
 * full while a burst is lent and a window's worth of frames is kept.
 *
 * Send queue: entries [sq_tail, sq_head) are outstanding.  Entry i uses TX
 * slot i % tx_depth (unless it was inline) and maybe one large TSO slot.  A
 * signalled completion for entry i retires every entry up to i; error and
 * flush completions come for every entry, signalled or not.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <ifaddrs.h>
#include <pthread.h>
#include <sched.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <linux/capability.h>
#include <net/if.h>
#include <netinet/in.h>
#include <sys/epoll.h>
#include <sys/ioctl.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>

#include <infiniband/verbs.h>

#include "verbs.h"
#include "../stack/xt_internal.h" /* xt_csum_*, wire offsets */

#define VB_DEFAULT_LIB "libibverbs.so.1"
#define VB_DEFAULT_RX_DEPTH 1024
#define VB_DEFAULT_TX_DEPTH 1024
#define VB_DEFAULT_RX_BATCH 32
#define VB_DEFAULT_SIGNAL 32
#define VB_DEFAULT_INLINE 256
#define VB_MAX_DEPTH 32768
#define VB_MAX_BATCH 256
#define VB_LEND_MAX 256        /* frames one rx_burst may lend */
#define VB_HOLD_WINDOW 32      /* caps.rx_hold_window: frames the engine may keep */
#define VB_STASH 64            /* RX completions arm_wake may hold */
#define VB_POLL 32             /* completions per ibv_poll_cq */
#define VB_TSO_SLOTS 8
#define VB_TSO_HDR_MAX 128     /* Ethernet + IPv4 + TCP with options, rounded up */
#define VB_TSO_CAP (64u * 1024u)
#define VB_MIN_SGE 18          /* mlx5: the L2 header (with a VLAN tag) of a raw send */
#define VB_FLOW_MAX (1 << 20)
#define VB_ASYNC_EVERY 256     /* rx_bursts between looks at the async fd */
#define VB_RETRY_NS 100000000ull /* a failed recovery is retried after 100 ms */
#define VB_DRAIN_SPINS 2000
#define VB_ZC_SGE 3            /* zero-copy send: headers + two payload pieces */
#define VB_ZC_MIN 512          /* payload bytes below which a copy is cheaper */

#define PRIO_CONN 0
#define PRIO_LISTEN 1
#define PRIO_IP 2
#define PRIO_COPY 0 /* ARP / ICMP copies: they overlap no other rule */

#define WR_ID(gen, idx) (((uint64_t)(gen) << 32) | (uint32_t)(idx))
#define WR_GEN(id) ((uint32_t)((id) >> 32))
#define WR_IDX(id) ((uint32_t)(id))

/* --- the library ------------------------------------------------------------ */

struct vb_lib {
	void *h;
	char path[128];
	struct ibv_device **(*get_device_list)(int *);
	void (*free_device_list)(struct ibv_device **);
	const char *(*get_device_name)(struct ibv_device *);
	struct ibv_context *(*open_device)(struct ibv_device *);
	int (*close_device)(struct ibv_context *);
	int (*query_device)(struct ibv_context *, struct ibv_device_attr *);
	int (*query_port)(struct ibv_context *, uint8_t, struct _compat_ibv_port_attr *);
	struct ibv_pd *(*alloc_pd)(struct ibv_context *);
	int (*dealloc_pd)(struct ibv_pd *);
	struct ibv_mr *(*reg_mr)(struct ibv_pd *, void *, size_t, int);
	int (*dereg_mr)(struct ibv_mr *);
	struct ibv_comp_channel *(*create_comp_channel)(struct ibv_context *);
	int (*destroy_comp_channel)(struct ibv_comp_channel *);
	struct ibv_cq *(*create_cq)(struct ibv_context *, int, void *, struct ibv_comp_channel *, int);
	int (*destroy_cq)(struct ibv_cq *);
	int (*get_cq_event)(struct ibv_comp_channel *, struct ibv_cq **, void **);
	void (*ack_cq_events)(struct ibv_cq *, unsigned int);
	struct ibv_qp *(*create_qp)(struct ibv_pd *, struct ibv_qp_init_attr *);
	int (*modify_qp)(struct ibv_qp *, struct ibv_qp_attr *, int);
	int (*query_qp)(struct ibv_qp *, struct ibv_qp_attr *, int, struct ibv_qp_init_attr *);
	int (*destroy_qp)(struct ibv_qp *);
	int (*get_async_event)(struct ibv_context *, struct ibv_async_event *);
	void (*ack_async_event)(struct ibv_async_event *);
	const char *(*wc_status_str)(enum ibv_wc_status);
	const char *(*event_type_str)(enum ibv_event_type);
};

struct vb_sym {
	const char *name, *version;
	size_t off;
};

#define SYM(field, name, ver) { name, ver, offsetof(struct vb_lib, field) }
static const struct vb_sym vb_syms[] = {
	SYM(get_device_list, "ibv_get_device_list", "IBVERBS_1.1"),
	SYM(free_device_list, "ibv_free_device_list", "IBVERBS_1.1"),
	SYM(get_device_name, "ibv_get_device_name", "IBVERBS_1.1"),
	SYM(open_device, "ibv_open_device", "IBVERBS_1.1"),
	SYM(close_device, "ibv_close_device", "IBVERBS_1.1"),
	SYM(query_device, "ibv_query_device", "IBVERBS_1.1"),
	SYM(query_port, "ibv_query_port", "IBVERBS_1.1"),
	SYM(alloc_pd, "ibv_alloc_pd", "IBVERBS_1.1"),
	SYM(dealloc_pd, "ibv_dealloc_pd", "IBVERBS_1.1"),
	SYM(reg_mr, "ibv_reg_mr", "IBVERBS_1.1"),
	SYM(dereg_mr, "ibv_dereg_mr", "IBVERBS_1.1"),
	SYM(create_comp_channel, "ibv_create_comp_channel", "IBVERBS_1.0"),
	SYM(destroy_comp_channel, "ibv_destroy_comp_channel", "IBVERBS_1.0"),
	SYM(create_cq, "ibv_create_cq", "IBVERBS_1.1"),
	SYM(destroy_cq, "ibv_destroy_cq", "IBVERBS_1.1"),
	SYM(get_cq_event, "ibv_get_cq_event", "IBVERBS_1.1"),
	SYM(ack_cq_events, "ibv_ack_cq_events", "IBVERBS_1.1"),
	SYM(create_qp, "ibv_create_qp", "IBVERBS_1.1"),
	SYM(modify_qp, "ibv_modify_qp", "IBVERBS_1.1"),
	SYM(query_qp, "ibv_query_qp", "IBVERBS_1.1"),
	SYM(destroy_qp, "ibv_destroy_qp", "IBVERBS_1.1"),
	SYM(get_async_event, "ibv_get_async_event", "IBVERBS_1.1"),
	SYM(ack_async_event, "ibv_ack_async_event", "IBVERBS_1.1"),
	SYM(wc_status_str, "ibv_wc_status_str", "IBVERBS_1.1"),
	SYM(event_type_str, "ibv_event_type_str", "IBVERBS_1.1"),
};
#undef SYM

/* Loaded libraries stay loaded (unloading libibverbs with providers attached
 * is not safe); one entry per path, so tests can switch between a double and
 * a missing library. */
#define VB_LIBS 4
static struct vb_lib vb_libs[VB_LIBS];
static int vb_nlibs;
static pthread_mutex_t vb_lib_mu = PTHREAD_MUTEX_INITIALIZER;

static __thread char vb_err[320];

const char *xt_verbs_error(void) { return vb_err; }

static int vb_fail(int err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int vb_fail(int err, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(vb_err, sizeof(vb_err), fmt, ap);
	va_end(ap);
	return err;
}

static const char *lib_path(const char *lib)
{
	const char *env;

	if (lib && *lib)
		return lib;
	env = getenv("XTCP_IBVERBS_LIB");
	return env && *env ? env : VB_DEFAULT_LIB;
}

/* Loads the library at path and resolves every symbol at its version. */
static int vb_load(const char *lib, const struct vb_lib **out)
{
	const char *path = lib_path(lib);
	struct vb_lib L;
	int r = 0;

	pthread_mutex_lock(&vb_lib_mu);
	for (int i = 0; i < vb_nlibs; i++) {
		if (!strcmp(vb_libs[i].path, path)) {
			*out = &vb_libs[i];
			goto out;
		}
	}
	if (strlen(path) >= sizeof(L.path)) {
		r = vb_fail(-ENAMETOOLONG, "libibverbs path too long: %s", path);
		goto out;
	}
	memset(&L, 0, sizeof(L));
	snprintf(L.path, sizeof(L.path), "%s", path);
	L.h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
	if (!L.h) {
		const char *e = dlerror();
		r = vb_fail(-ENOENT,
			    "cannot load %s (%s): install rdma-core's libibverbs1 and ibverbs-providers "
			    "(apt-get install libibverbs1 ibverbs-providers), or set XTCP_IBVERBS_LIB to the library",
			    path, e ? e : "not found");
		goto out;
	}
	for (size_t i = 0; i < sizeof(vb_syms) / sizeof(vb_syms[0]); i++) {
		void *f = dlvsym(L.h, vb_syms[i].name, vb_syms[i].version);

		if (!f) {
			r = vb_fail(-ENOSYS, "%s has no %s@%s: not a libibverbs from rdma-core (need rdma-core 17 or later)",
				    path, vb_syms[i].name, vb_syms[i].version);
			dlclose(L.h);
			goto out;
		}
		memcpy((char *)&L + vb_syms[i].off, &f, sizeof(f));
	}
	if (vb_nlibs == VB_LIBS) {
		/* Never unloaded: a fifth path is refused rather than leaked. */
		r = vb_fail(-EMFILE, "too many different libibverbs paths loaded");
		dlclose(L.h);
		goto out;
	}
	vb_libs[vb_nlibs] = L;
	*out = &vb_libs[vb_nlibs++];
out:
	pthread_mutex_unlock(&vb_lib_mu);
	return r;
}

/* --- sysfs -------------------------------------------------------------------- */

static int read_line(const char *path, char *buf, size_t len)
{
	FILE *f = fopen(path, "re");
	size_t n;

	if (!f)
		return -errno;
	if (!fgets(buf, (int)len, f)) {
		fclose(f);
		return -EIO;
	}
	fclose(f);
	n = strlen(buf);
	while (n && (buf[n - 1] == '\n' || buf[n - 1] == ' '))
		buf[--n] = '\0';
	return 0;
}

static bool path_exists(const char *path)
{
	struct stat sb;
	return stat(path, &sb) == 0;
}

static int parse_mac(const char *s, uint8_t mac[6])
{
	unsigned int b[6];

	if (sscanf(s, "%x:%x:%x:%x:%x:%x", &b[0], &b[1], &b[2], &b[3], &b[4], &b[5]) != 6)
		return -EINVAL;
	for (int i = 0; i < 6; i++) {
		if (b[i] > 255)
			return -EINVAL;
		mac[i] = (uint8_t)b[i];
	}
	return 0;
}

static const char *dev_name(const struct vb_lib *L, struct ibv_device *d)
{
	const char *n = L->get_device_name(d);
	return n ? n : d->name;
}

/* The netdev of port p of device d, from its sysfs entry (RoCE GID table). */
static bool port_has_netdev(struct ibv_device *d, int p, const char *ifname)
{
	char path[IBV_SYSFS_PATH_MAX + 64], buf[64];

	snprintf(path, sizeof(path), "%s/ports/%d/gid_attrs/ndevs/0", d->ibdev_path, p);
	return read_line(path, buf, sizeof(buf)) == 0 && !strcmp(buf, ifname);
}

struct vb_found {
	struct ibv_device *dev;
	int port;            /* 0: decide after querying the device */
	char netdir[IBV_SYSFS_PATH_MAX + 64]; /* sysfs directory of the netdev */
	bool if_exists;      /* the interface exists in this namespace */
};

/* Finds the device (and maybe port) behind ifname.  Returns 0 or -ENODEV
 * with the reason in vb_err. */
static int find_device(const struct vb_lib *L, const char *ifname, struct ibv_device **list, int n,
		       struct vb_found *f)
{
	char path[IBV_SYSFS_PATH_MAX + 64];
	DIR *dir;
	struct dirent *de;

	memset(f, 0, sizeof(f[0]));
	snprintf(f->netdir, sizeof(f->netdir), "/sys/class/net/%s", ifname);
	/* The current network namespace decides; /sys may have been mounted in
	 * another one (setns without remounting). */
	f->if_exists = if_nametoindex(ifname) != 0;
	/* 1: the PCI function of the netdev lists its RDMA device(s). */
	snprintf(path, sizeof(path), "/sys/class/net/%s/device/infiniband", ifname);
	if (f->if_exists && (dir = opendir(path))) {
		while (!f->dev && (de = readdir(dir))) {
			if (de->d_name[0] == '.')
				continue;
			for (int i = 0; i < n; i++)
				if (!strcmp(dev_name(L, list[i]), de->d_name))
					f->dev = list[i];
		}
		closedir(dir);
		if (f->dev)
			return 0;
	}
	/* 2: a device whose sysfs entry names the netdev (a port's RoCE netdev,
	 * or the netdev of its PCI function). */
	for (int i = 0; i < n && !f->dev; i++) {
		for (int p = 1; p <= 4 && !f->dev; p++) {
			if (port_has_netdev(list[i], p, ifname)) {
				f->dev = list[i];
				f->port = p;
			}
		}
		snprintf(path, sizeof(path), "%s/device/net/%s", list[i]->ibdev_path, ifname);
		if (!f->dev && path_exists(path))
			f->dev = list[i];
		if (f->dev && !f->if_exists)
			snprintf(f->netdir, sizeof(f->netdir), "%s/device/net/%s", list[i]->ibdev_path, ifname);
	}
	if (f->dev)
		return 0;
	if (!f->if_exists)
		return vb_fail(-ENODEV, "no interface %s in this network namespace", ifname);
	return vb_fail(-ENODEV,
		       "no RDMA device behind %s (no /sys/class/net/%s/device/infiniband): it is not a "
		       "ConnectX port, or the RDMA driver is not loaded (modprobe mlx5_ib); veth, bridges "
		       "and tun have none (use XTCP_NIC=packet there)",
		       ifname, ifname);
}

/* The port of f->dev whose netdev is ifname; dev_port + 1 otherwise. */
static int pick_port(struct vb_found *f, const char *ifname, int nports)
{
	char path[sizeof(f->netdir) + 16], buf[32];
	long dp;

	if (f->port)
		return f->port;
	for (int p = 1; p <= nports; p++)
		if (port_has_netdev(f->dev, p, ifname))
			return p;
	snprintf(path, sizeof(path), "%s/dev_port", f->netdir);
	if (read_line(path, buf, sizeof(buf)) == 0 && (dp = strtol(buf, NULL, 10)) >= 0 && dp < nports)
		return (int)dp + 1;
	return 1;
}

/* MAC and MTU of a netdev of the current network namespace. */
static int netdev_query(const char *ifname, uint8_t mac[6], long *mtu)
{
	struct ifreq ifr;
	int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0), r = 0;

	if (fd < 0)
		return -errno;
	memset(&ifr, 0, sizeof(ifr));
	snprintf(ifr.ifr_name, sizeof(ifr.ifr_name), "%s", ifname);
	if (ioctl(fd, SIOCGIFHWADDR, &ifr) < 0)
		r = -errno;
	else
		memcpy(mac, ifr.ifr_hwaddr.sa_data, 6);
	if (r == 0 && ioctl(fd, SIOCGIFMTU, &ifr) == 0)
		*mtu = ifr.ifr_mtu;
	close(fd);
	return r;
}

/* The effective capability bit cap of this process. */
static bool have_cap(int cap)
{
	struct __user_cap_header_struct h = { .version = _LINUX_CAPABILITY_VERSION_3, .pid = 0 };
	struct __user_cap_data_struct d[2];

	memset(d, 0, sizeof(d));
	if (syscall(SYS_capget, &h, d) < 0)
		return geteuid() == 0;
	return (d[cap / 32].effective >> (cap % 32)) & 1u;
}

static bool kernel_owns(const char *ifname, uint32_t ip)
{
	struct ifaddrs *ifa = NULL;
	bool owns = false;

	if (getifaddrs(&ifa) < 0)
		return false;
	for (struct ifaddrs *i = ifa; i; i = i->ifa_next) {
		if (!i->ifa_addr || i->ifa_addr->sa_family != AF_INET || strcmp(i->ifa_name, ifname))
			continue;
		if (ntohl(((struct sockaddr_in *)i->ifa_addr)->sin_addr.s_addr) == ip)
			owns = true;
	}
	freeifaddrs(ifa);
	return owns;
}

/* --- device queries ------------------------------------------------------------ */

struct vb_devcaps {
	struct ibv_device_attr_ex ex;
	bool have_ex;
	bool csum;        /* IP/TCP checksum offload on raw packet QPs */
	uint32_t tso_max; /* 0: none */
};

static void query_caps(const struct vb_lib *L, struct ibv_context *ctx, struct vb_devcaps *c)
{
	struct verbs_context *vctx = verbs_get_ctx_op(ctx, query_device_ex);

	memset(c, 0, sizeof(*c));
	if (vctx && vctx->query_device_ex(ctx, NULL, &c->ex, sizeof(c->ex)) == 0) {
		c->have_ex = true;
	} else {
		memset(&c->ex, 0, sizeof(c->ex));
		if (L->query_device(ctx, &c->ex.orig_attr) != 0)
			memset(&c->ex, 0, sizeof(c->ex));
	}
	c->csum = (c->ex.orig_attr.device_cap_flags & IBV_DEVICE_RAW_IP_CSUM) ||
		  (c->ex.raw_packet_caps & IBV_RAW_PACKET_CAP_IP_CSUM);
	if (c->have_ex && (c->ex.tso_caps.supported_qpts & (1u << IBV_QPT_RAW_PACKET)) &&
	    verbs_get_ctx_op(ctx, create_qp_ex))
		c->tso_max = c->ex.tso_caps.max_tso;
}

static int query_port(const struct vb_lib *L, struct ibv_context *ctx, uint8_t port, struct ibv_port_attr *pa)
{
	struct verbs_context *vctx = verbs_get_ctx_op(ctx, query_port);

	memset(pa, 0, sizeof(*pa));
	if (vctx)
		return vctx->query_port(ctx, port, pa, sizeof(*pa));
	return L->query_port(ctx, port, (struct _compat_ibv_port_attr *)pa);
}

static const char *port_state_name(int s)
{
	static const char *const names[] = { "NOP", "DOWN", "INIT", "ARMED", "ACTIVE", "ACTIVE_DEFER" };
	return s >= 0 && s < 6 ? names[s] : "unknown";
}

/* Port must be up and Ethernet.  Returns 0, -ENETDOWN, -EPROTONOSUPPORT. */
static int check_port(const struct vb_lib *L, struct ibv_context *ctx, const char *dname, uint8_t port,
		      const char *ifname, struct ibv_port_attr *pa)
{
	int r = query_port(L, ctx, port, pa);

	if (r)
		return vb_fail(-(r > 0 ? r : EIO), "ibv_query_port %s port %u: %s", dname, port, strerror(r > 0 ? r : EIO));
	if (pa->link_layer != IBV_LINK_LAYER_ETHERNET)
		return vb_fail(-EPROTONOSUPPORT,
			       "port %u of %s is InfiniBand: raw packet QPs need an Ethernet port (ConnectX VPI: "
			       "mlxconfig -d <pci> set LINK_TYPE_P%u=2, then reboot)",
			       port, dname, port);
	if (pa->state != IBV_PORT_ACTIVE)
		return vb_fail(-ENETDOWN,
			       "port %u of %s (%s) is %s: the link is down (cable, switch port, or ip link set %s up)",
			       port, dname, ifname, port_state_name(pa->state), ifname);
	return 0;
}

/* --- the QP ----------------------------------------------------------------- */

/* Creates the raw packet QP; TSO asks for a TSO header room (needs
 * create_qp_ex).  *inl is the inline size asked for, updated to what the QP
 * gives.  Returns NULL with errno set. */
static struct ibv_qp *create_qp(const struct vb_lib *L, struct ibv_context *ctx, struct ibv_pd *pd,
				struct ibv_cq *scq, struct ibv_cq *rcq, int sdepth, int rdepth, uint32_t *inl,
				bool tso, int *sdepth_out, uint32_t sge)
{
	struct ibv_qp *qp;

	if (tso) {
		struct verbs_context *vctx = verbs_get_ctx_op(ctx, create_qp_ex);
		struct ibv_qp_init_attr_ex ax;

		memset(&ax, 0, sizeof(ax));
		ax.send_cq = scq;
		ax.recv_cq = rcq;
		ax.cap.max_send_wr = (uint32_t)sdepth;
		ax.cap.max_recv_wr = (uint32_t)rdepth;
		ax.cap.max_send_sge = sge;
		ax.cap.max_recv_sge = 1;
		ax.cap.max_inline_data = *inl;
		ax.qp_type = IBV_QPT_RAW_PACKET;
		ax.comp_mask = IBV_QP_INIT_ATTR_PD | IBV_QP_INIT_ATTR_MAX_TSO_HEADER;
		ax.pd = pd;
		ax.max_tso_header = VB_TSO_HDR_MAX;
		if (!vctx) {
			errno = EOPNOTSUPP;
			return NULL;
		}
		qp = vctx->create_qp_ex(ctx, &ax);
		if (qp) {
			*inl = ax.cap.max_inline_data;
			*sdepth_out = (int)ax.cap.max_send_wr;
		}
		return qp;
	}
	struct ibv_qp_init_attr a;

	memset(&a, 0, sizeof(a));
	a.send_cq = scq;
	a.recv_cq = rcq;
	a.cap.max_send_wr = (uint32_t)sdepth;
	a.cap.max_recv_wr = (uint32_t)rdepth;
	a.cap.max_send_sge = sge;
	a.cap.max_recv_sge = 1;
	a.cap.max_inline_data = *inl;
	a.qp_type = IBV_QPT_RAW_PACKET;
	qp = L->create_qp(pd, &a);
	if (qp) {
		*inl = a.cap.max_inline_data;
		*sdepth_out = (int)a.cap.max_send_wr;
	}
	return qp;
}

static int qp_error_message(int e, const char *dname)
{
	switch (e) {
	case EPERM:
	case EACCES:
		return vb_fail(-EPERM, "raw packet QP on %s: CAP_NET_RAW required (run as root, or "
				       "setcap cap_net_raw+ep on the program)", dname);
	case EOPNOTSUPP:
	case ENOSYS:
	case EPROTONOSUPPORT:
		return vb_fail(-EOPNOTSUPP, "%s does not support raw packet QPs (%s): use a mlx5 device "
					    "(ConnectX-4 Lx or later) or mlx4 (ConnectX-3)", dname, strerror(e));
	default:
		return vb_fail(-(e ? e : EIO), "ibv_create_qp (raw packet) on %s: %s", dname, strerror(e ? e : EIO));
	}
}

/* RESET -> INIT (port) -> RTR -> RTS.  Returns 0 or a positive errno. */
static int qp_to_rts(const struct vb_lib *L, struct ibv_qp *qp, uint8_t port)
{
	struct ibv_qp_attr a;
	int r;

	memset(&a, 0, sizeof(a));
	a.qp_state = IBV_QPS_INIT;
	a.port_num = port;
	if ((r = L->modify_qp(qp, &a, IBV_QP_STATE | IBV_QP_PORT)))
		return r;
	memset(&a, 0, sizeof(a));
	a.qp_state = IBV_QPS_RTR;
	if ((r = L->modify_qp(qp, &a, IBV_QP_STATE)))
		return r;
	memset(&a, 0, sizeof(a));
	a.qp_state = IBV_QPS_RTS;
	return L->modify_qp(qp, &a, IBV_QP_STATE);
}

static int qp_set_state(const struct vb_lib *L, struct ibv_qp *qp, enum ibv_qp_state s)
{
	struct ibv_qp_attr a;

	memset(&a, 0, sizeof(a));
	a.qp_state = s;
	return L->modify_qp(qp, &a, IBV_QP_STATE);
}

/* --- flow rules --------------------------------------------------------------- */

struct vb_rule {
	struct ibv_flow_attr attr;
	struct ibv_flow_spec_eth eth;
	union {
		struct ibv_flow_spec_ipv4 ip;
		struct ibv_flow_spec_ipv4_ext ipx;
	};
	struct ibv_flow_spec_tcp_udp tcp;
};

enum vb_flow_kind { VBF_FREE, VBF_LISTEN, VBF_CONN, VBF_IP, VBF_ARP, VBF_ICMP, VBF_PROBE };

/* Builds a rule: eth (dst MAC when mac is set, ethertype when set), then an
 * IPv4 spec when dst or src is set (with proto: the IPv4_EXT form), then TCP
 * when a port is set.  Values in network order, as verbs wants them. */
static size_t rule_build(struct vb_rule *r, uint8_t port, uint16_t prio, uint32_t flags, const uint8_t *mac,
			 uint16_t ethertype, uint32_t src, uint32_t dst, uint8_t proto, uint16_t sport, uint16_t dport)
{
	size_t len = sizeof(r->attr);

	memset(r, 0, sizeof(*r));
	r->attr.type = IBV_FLOW_ATTR_NORMAL;
	r->attr.priority = prio;
	r->attr.port = port;
	r->attr.flags = flags;
	r->eth.type = IBV_FLOW_SPEC_ETH;
	r->eth.size = sizeof(r->eth);
	if (mac) {
		memcpy(r->eth.val.dst_mac, mac, 6);
		memset(r->eth.mask.dst_mac, 0xff, 6);
	}
	if (ethertype) {
		r->eth.val.ether_type = htons(ethertype);
		r->eth.mask.ether_type = 0xffff;
	}
	r->attr.num_of_specs = 1;
	len += sizeof(r->eth);
	if (src || dst) {
		if (proto) {
			r->ipx.type = IBV_FLOW_SPEC_IPV4_EXT;
			r->ipx.size = sizeof(r->ipx);
			r->ipx.val.src_ip = htonl(src);
			r->ipx.mask.src_ip = src ? 0xffffffffu : 0;
			r->ipx.val.dst_ip = htonl(dst);
			r->ipx.mask.dst_ip = dst ? 0xffffffffu : 0;
			r->ipx.val.proto = proto;
			r->ipx.mask.proto = 0xff;
			len += sizeof(r->ipx);
		} else {
			r->ip.type = IBV_FLOW_SPEC_IPV4;
			r->ip.size = sizeof(r->ip);
			r->ip.val.src_ip = htonl(src);
			r->ip.mask.src_ip = src ? 0xffffffffu : 0;
			r->ip.val.dst_ip = htonl(dst);
			r->ip.mask.dst_ip = dst ? 0xffffffffu : 0;
			len += sizeof(r->ip);
		}
		r->attr.num_of_specs++;
	}
	if (sport || dport) {
		/* The TCP spec follows the IP spec actually used. */
		struct ibv_flow_spec_tcp_udp *t = (struct ibv_flow_spec_tcp_udp *)((uint8_t *)r + len);

		memset(t, 0, sizeof(*t));
		t->type = IBV_FLOW_SPEC_TCP;
		t->size = sizeof(*t);
		t->val.src_port = htons(sport);
		t->mask.src_port = sport ? 0xffff : 0;
		t->val.dst_port = htons(dport);
		t->mask.dst_port = dport ? 0xffff : 0;
		len += sizeof(*t);
		r->attr.num_of_specs++;
	}
	r->attr.size = (uint16_t)len;
	return len;
}

/* --- the nic ---------------------------------------------------------------- */

enum { RX_FREE, RX_POSTED, RX_LENT, RX_KEPT_LENT, RX_KEPT };

struct vb_flow {
	struct ibv_flow *f;
	uint8_t kind;
	int next_free;
};

struct vb_nic {
	struct xt_nic nic; /* first: struct xt_nic * converts to struct vb_nic * */
	const struct vb_lib *L;
	pid_t pid; /* the process that opened it (vb_free in a fork child) */
	struct xt_verbs_cfg cfg;
	char ifname[IF_NAMESIZE];
	char dname[64];
	uint8_t port;

	struct ibv_context *ctx;
	struct ibv_pd *pd;
	struct ibv_mr *mr;
	struct ibv_comp_channel *ch;
	struct ibv_cq *rx_cq, *tx_cq;
	struct ibv_qp *qp;
	int epfd, evfd;

	uint8_t *pool;
	size_t pool_len;
	uint32_t slot_size;
	uint32_t max_frame;    /* MTU + Ethernet header + VLAN tag */
	uint32_t gen;          /* of work request ids */

	/* receive */
	int rx_depth, rx_batch, nrx;
	uint8_t *rx_base;
	uint8_t *rx_state;
	uint32_t *rx_free;     /* stack of FREE slots */
	int nfree, posted;
	uint32_t lent[VB_LEND_MAX];
	int nlent;
	struct ibv_recv_wr rwr[VB_MAX_BATCH];
	struct ibv_sge rsge[VB_MAX_BATCH];
	struct ibv_wc stash[VB_STASH];
	int nstash, stash_pos;

	/* transmit */
	int tx_depth, signal_every;
	uint8_t *tx_base;
	uint64_t sq_head, sq_tail;
	int unsig_run;         /* unsignalled WRs posted since the last signalled one */
	int8_t *tx_big;        /* per send queue entry: TSO slot + 1, or 0 */
	uint8_t *big_base;
	int big_free[VB_TSO_SLOTS], nbig_free, nbig;
	uint32_t inline_max, tso_max;
	bool tx_csum;
	bool zc;               /* sends read registered send buffers in place */
	uint64_t zc_last;      /* send queue index + 1 of the last zero-copy WR */
	struct vb_reg *regs;   /* registered send buffers (tx_buf_reg) */

	/* state */
	bool armed;            /* RX CQ notification requested, its event not yet read */
	bool kicked;           /* the eventfd was written */
	bool need_recover;
	bool check_qp;
	bool link_up;
	bool netdown_pending;  /* arm_wake owes the caller one -ENETDOWN */
	bool dead;
	bool post_failing;     /* logged the current run of post_send failures */
	bool recover_failing;  /* logged the current run of failed recoveries */
	bool kernel_owns_ip;
	int steer;
	int qp_state;
	unsigned int rx_calls;
	uint64_t rx_pos;       /* frames lent so far (xt_frame.pos) */
	xt_time_t last_now;

	struct vb_flow *flows;
	int nflows_cap, flow_free, nflows;
	int arp_flow, icmp_flow, ip_flow;

	struct xt_verbs_stats st;
};

/* The destination MAC of the steering rules: the engine's own, if it has one. */
static const uint8_t *rule_mac(const struct vb_nic *v)
{
	return v->cfg.have_mac ? v->cfg.mac : v->nic.caps.mac;
}

static const struct xt_nic_ops verbs_ops;

static struct vb_nic *to_vb(struct xt_nic *nic) { return (struct vb_nic *)nic; }

static void vb_log(struct vb_nic *v, int level, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void vb_log(struct vb_nic *v, int level, const char *fmt, ...)
{
	char msg[320];
	va_list ap;
	int n;

	n = snprintf(msg, sizeof(msg), "verbs %s (%s port %u): ", v->ifname, v->dname, v->port);
	va_start(ap, fmt);
	vsnprintf(msg + n, sizeof(msg) - (size_t)n, fmt, ap);
	va_end(ap);
	if (v->cfg.log)
		v->cfg.log(v->cfg.log_ctx, level, msg);
}

static const char *wc_str(struct vb_nic *v, enum ibv_wc_status s)
{
	const char *r = v->L->wc_status_str(s);
	return r ? r : "?";
}

/* --- receive ------------------------------------------------------------------ */

static uint8_t *rx_slot(struct vb_nic *v, uint32_t i) { return v->rx_base + (size_t)i * v->slot_size; }

/* Posts FREE slots: whole batches, and a partial one when force is set or
 * the receive queue runs low. */
static void rx_post(struct vb_nic *v, bool force)
{
	if (v->need_recover)
		return; /* posting to a QP in ERR only produces flushes */
	while (v->nfree > 0 && v->posted < v->rx_depth && !v->dead) {
		int k = v->nfree < v->rx_batch ? v->nfree : v->rx_batch;
		struct ibv_recv_wr *bad = NULL;
		int r, done;

		if (k > v->rx_depth - v->posted)
			k = v->rx_depth - v->posted;
		if (k < v->rx_batch && !force && v->posted >= v->rx_depth / 4)
			return;
		for (int i = 0; i < k; i++) {
			uint32_t s = v->rx_free[v->nfree - 1 - i];

			v->rsge[i].addr = (uintptr_t)rx_slot(v, s);
			v->rsge[i].length = v->slot_size;
			v->rsge[i].lkey = v->mr->lkey;
			v->rwr[i].wr_id = WR_ID(v->gen, s);
			v->rwr[i].sg_list = &v->rsge[i];
			v->rwr[i].num_sge = 1;
			v->rwr[i].next = i + 1 < k ? &v->rwr[i + 1] : NULL;
		}
		r = ibv_post_recv(v->qp, v->rwr, &bad);
		done = r == 0 ? k : (int)(bad - v->rwr);
		if (done < 0 || done > k)
			done = 0;
		for (int i = 0; i < done; i++)
			v->rx_state[v->rx_free[v->nfree - 1 - i]] = RX_POSTED;
		v->nfree -= done;
		v->posted += done;
		v->st.rx_posted += (uint64_t)done;
		v->st.rx_post_calls++;
		if (r) {
			/* The queue is in error or the device refused: recovery
			 * reposts everything. */
			v->need_recover = true;
			return;
		}
	}
}

static void rx_release_lent(struct vb_nic *v)
{
	for (int i = 0; i < v->nlent; i++) {
		if (v->rx_state[v->lent[i]] == RX_KEPT_LENT) {
			v->rx_state[v->lent[i]] = RX_KEPT;
			continue;
		}
		v->rx_state[v->lent[i]] = RX_FREE;
		v->rx_free[v->nfree++] = v->lent[i];
	}
	v->nlent = 0;
}

/* Zero-copy receive: ref is the slot plus one. */
static void vb_rx_hold(struct xt_nic *nic, uint64_t ref)
{
	struct vb_nic *v = to_vb(nic);
	uint32_t s = (uint32_t)(ref - 1);

	if (s < (uint32_t)v->nrx && v->rx_state[s] == RX_LENT) {
		v->rx_state[s] = RX_KEPT_LENT;
		v->st.rx_kept++;
	}
}

static void vb_rx_release(struct xt_nic *nic, uint64_t ref)
{
	struct vb_nic *v = to_vb(nic);
	uint32_t s = (uint32_t)(ref - 1);

	if (s >= (uint32_t)v->nrx)
		return;
	if (v->rx_state[s] == RX_KEPT_LENT) {
		v->rx_state[s] = RX_LENT; /* still in this burst's lent list */
	} else if (v->rx_state[s] == RX_KEPT) {
		v->rx_state[s] = RX_FREE;
		v->rx_free[v->nfree++] = s;
	}
}

static void rx_slot_free(struct vb_nic *v, uint32_t s)
{
	v->rx_state[s] = RX_FREE;
	v->rx_free[v->nfree++] = s;
}

/* IPv4 header, and TCP when it is a whole unfragmented TCP datagram, checked
 * in software.  Frames that are not IPv4 pass. */
static bool csum_ok_sw(const uint8_t *f, uint32_t len)
{
	const uint8_t *ip;
	uint32_t hlen, tot;

	if (len < XT_ETH_HLEN + XT_IP_HLEN || xt_rd16(f + XT_ETH_TYPE_be16) != XT_ETHERTYPE_IPV4)
		return true;
	ip = f + XT_ETH_HLEN;
	hlen = (ip[XT_IP_VHL] & 0xfu) * 4u;
	if (ip[XT_IP_VHL] >> 4 != 4 || hlen < XT_IP_HLEN || hlen > len - XT_ETH_HLEN)
		return true; /* malformed: the engine drops and counts it */
	if (xt_csum_fold(xt_csum_add(0, ip, hlen)) != 0)
		return false;
	tot = xt_rd16(ip + XT_IP_LEN_be16);
	if (ip[XT_IP_PROTO] != XT_IPPROTO_TCP || tot < hlen + XT_TCP_HLEN || tot > len - XT_ETH_HLEN ||
	    (xt_rd16(ip + XT_IP_FRAG_be16) & (XT_IP_MF | XT_IP_OFFMASK)))
		return true;
	uint32_t sum = xt_csum_pseudo(xt_rd32(ip + XT_IP_SRC_be32), xt_rd32(ip + XT_IP_DST_be32), XT_IPPROTO_TCP,
				      (uint16_t)(tot - hlen));
	return xt_csum_fold(xt_csum_add(sum, ip + hlen, tot - hlen)) == 0;
}

/* Frames the kernel answers when it owns our address: ARP requests for it
 * and ICMP echo requests to it (both arrive here through copy rules). */
static bool for_kernel(struct vb_nic *v, const uint8_t *f, uint32_t len)
{
	uint16_t type;

	if (!v->kernel_owns_ip || len < XT_ETH_HLEN)
		return false;
	type = xt_rd16(f + XT_ETH_TYPE_be16);
	if (type == XT_ETHERTYPE_ARP && len >= XT_ETH_HLEN + XT_ARP_LEN) {
		const uint8_t *a = f + XT_ETH_HLEN;
		if (xt_rd16(a + XT_ARP_OP_be16) == XT_ARP_OP_REQUEST && xt_rd32(a + XT_ARP_TPA_be32) == v->cfg.ip) {
			v->st.rx_kernel_arp++;
			return true;
		}
	} else if (type == XT_ETHERTYPE_IPV4 && len >= XT_ETH_HLEN + XT_IP_HLEN + 1) {
		const uint8_t *ip = f + XT_ETH_HLEN;
		uint32_t hlen = (ip[XT_IP_VHL] & 0xfu) * 4u;
		if (ip[XT_IP_PROTO] == XT_IPPROTO_ICMP && hlen >= XT_IP_HLEN && len > XT_ETH_HLEN + hlen &&
		    ip[hlen] == XT_ICMP_ECHO) {
			v->st.rx_kernel_icmp++;
			return true;
		}
	}
	return false;
}

/* One RX completion: returns true and fills *f when it is a frame to lend. */
static bool rx_completion(struct vb_nic *v, const struct ibv_wc *wc, struct xt_frame *f)
{
	uint32_t s = WR_IDX(wc->wr_id);
	uint8_t *data;

	if (WR_GEN(wc->wr_id) != v->gen || s >= (uint32_t)v->nrx || v->rx_state[s] != RX_POSTED)
		return false; /* from before a recovery: its slot was reclaimed then */
	v->posted--;
	if (wc->status != IBV_WC_SUCCESS) {
		rx_slot_free(v, s);
		if (wc->status == IBV_WC_WR_FLUSH_ERR) {
			v->st.flush_errors++;
		} else {
			v->st.cq_errors++;
			vb_log(v, XT_VERBS_LOG_ERROR, "receive completion error: %s (vendor 0x%x); resetting the QP",
			       wc_str(v, wc->status), wc->vendor_err);
		}
		v->need_recover = true;
		return false;
	}
	data = rx_slot(v, s);
	if (wc->byte_len > v->slot_size || wc->byte_len == 0 || for_kernel(v, data, wc->byte_len)) {
		rx_slot_free(v, s);
		return false;
	}
	if (v->nic.caps.rx_csum) {
		if (wc->wc_flags & IBV_WC_IP_CSUM_OK) {
			v->st.rx_csum_hw++;
		} else {
			v->st.rx_csum_sw++;
			if (!csum_ok_sw(data, wc->byte_len)) {
				v->st.rx_csum_bad++;
				rx_slot_free(v, s);
				return false;
			}
		}
	}
	v->rx_state[s] = RX_LENT;
	v->lent[v->nlent++] = s;
	f->data = data;
	f->len = wc->byte_len;
	f->flags = 0; /* with rx_csum the engine trusts every frame (caps) */
	f->ref = (uint64_t)s + 1;
	f->pos = ++v->rx_pos;
	v->st.rx_frames++;
	v->st.rx_bytes += wc->byte_len;
	return true;
}

/* --- transmit completions and recovery ------------------------------------------ */

static void tx_retire_to(struct vb_nic *v, uint64_t end)
{
	for (; v->sq_tail < end; v->sq_tail++) {
		int8_t *b = &v->tx_big[v->sq_tail % (uint64_t)v->tx_depth];
		if (*b) {
			v->big_free[v->nbig_free++] = *b - 1;
			*b = 0;
		}
	}
}

static void tx_poll(struct vb_nic *v)
{
	struct ibv_wc wc[VB_POLL];
	int n;

	do {
		n = ibv_poll_cq(v->tx_cq, VB_POLL, wc);
		for (int i = 0; i < n; i++) {
			uint64_t idx;

			if (WR_GEN(wc[i].wr_id) != v->gen)
				continue;
			/* Full index from its low 32 bits: it lies in [sq_tail, sq_head). */
			idx = v->sq_tail + (uint32_t)(WR_IDX(wc[i].wr_id) - (uint32_t)v->sq_tail);
			if (idx >= v->sq_head)
				continue;
			if (wc[i].status == IBV_WC_WR_FLUSH_ERR) {
				v->st.flush_errors++;
				v->need_recover = true;
			} else if (wc[i].status != IBV_WC_SUCCESS) {
				v->st.cq_errors++;
				v->need_recover = true;
				vb_log(v, XT_VERBS_LOG_ERROR, "send completion error: %s (vendor 0x%x); resetting the QP",
				       wc_str(v, wc[i].status), wc[i].vendor_err);
			}
			tx_retire_to(v, idx + 1);
		}
	} while (n == VB_POLL);
	if (n < 0)
		v->need_recover = true;
}

/* Empties both CQs after the QP went to ERR: every posted WR comes back
 * flushed (the device may take a moment). */
static void drain_after_error(struct vb_nic *v)
{
	struct ibv_wc wc[VB_POLL];
	int idle = 0;

	for (int spin = 0; spin < VB_DRAIN_SPINS && idle < 2; spin++) {
		int n1 = ibv_poll_cq(v->rx_cq, VB_POLL, wc), n2;

		for (int i = 0; i < n1; i++) {
			uint32_t s = WR_IDX(wc[i].wr_id);
			if (WR_GEN(wc[i].wr_id) != v->gen || s >= (uint32_t)v->nrx || v->rx_state[s] != RX_POSTED)
				continue;
			v->posted--;
			rx_slot_free(v, s);
			if (wc[i].status == IBV_WC_WR_FLUSH_ERR)
				v->st.flush_errors++;
		}
		n2 = ibv_poll_cq(v->tx_cq, VB_POLL, wc);
		for (int i = 0; i < n2; i++) {
			if (WR_GEN(wc[i].wr_id) != v->gen)
				continue;
			if (wc[i].status == IBV_WC_WR_FLUSH_ERR)
				v->st.flush_errors++;
			uint64_t idx = v->sq_tail + (uint32_t)(WR_IDX(wc[i].wr_id) - (uint32_t)v->sq_tail);
			if (idx < v->sq_head)
				tx_retire_to(v, idx + 1);
		}
		if (n1 <= 0 && n2 <= 0) {
			if (v->posted == 0 && v->sq_tail == v->sq_head)
				break;
			idle++;
			sched_yield();
		} else {
			idle = 0;
		}
	}
	v->nstash = v->stash_pos = 0;
}

/* ERR -> (flushes reclaimed) -> RESET -> INIT -> RTR -> RTS, receive queue
 * refilled.  Lent RX slots stay lent. */
static void recover(struct vb_nic *v)
{
	int r;

	if (v->dead)
		return;
	(void)qp_set_state(v->L, v->qp, IBV_QPS_ERR);
	v->qp_state = IBV_QPS_ERR;
	drain_after_error(v);
	/* Whatever did not come back is reclaimed now; a late completion
	 * carries the old generation and is ignored. */
	v->gen++;
	for (int s = 0; s < v->nrx; s++)
		if (v->rx_state[s] == RX_POSTED)
			rx_slot_free(v, (uint32_t)s);
	v->posted = 0;
	tx_retire_to(v, v->sq_head);
	v->unsig_run = 0;
	if ((r = qp_set_state(v->L, v->qp, IBV_QPS_RESET)) == 0)
		r = qp_to_rts(v->L, v->qp, v->port);
	if (r) {
		v->st.qp_recovery_failures++;
		if (!v->recover_failing)
			vb_log(v, XT_VERBS_LOG_ERROR, "QP %u could not be reset (%s); retrying every 100 ms",
			       v->qp->qp_num, strerror(r));
		v->recover_failing = true;
		return;
	}
	v->qp_state = IBV_QPS_RTS;
	v->need_recover = false;
	v->check_qp = false;
	v->st.qp_recoveries++;
	vb_log(v, v->recover_failing ? XT_VERBS_LOG_WARN : XT_VERBS_LOG_INFO,
	       "QP %u back in RTS after an error (recovery %llu); frames in flight were lost", v->qp->qp_num,
	       (unsigned long long)v->st.qp_recoveries);
	v->recover_failing = false;
	rx_post(v, true);
}

static void check_qp_state(struct vb_nic *v)
{
	struct ibv_qp_attr a;
	struct ibv_qp_init_attr ia;

	v->check_qp = false;
	if (v->L->query_qp(v->qp, &a, IBV_QP_STATE, &ia) == 0) {
		v->qp_state = a.qp_state;
		if (a.qp_state != IBV_QPS_RTS)
			v->need_recover = true;
	}
}

static void handle_async(struct vb_nic *v)
{
	struct ibv_async_event ev;

	while (!v->dead && v->L->get_async_event(v->ctx, &ev) == 0) {
		v->st.async_events++;
		switch (ev.event_type) {
		case IBV_EVENT_PORT_ERR:
			if (ev.element.port_num == v->port && v->link_up) {
				v->link_up = false;
				v->netdown_pending = true;
				v->st.port_down++;
				vb_log(v, XT_VERBS_LOG_ERROR, "port went down (IBV_EVENT_PORT_ERR): frames are refused "
							       "until it is active again");
			}
			break;
		case IBV_EVENT_PORT_ACTIVE:
			if (ev.element.port_num == v->port && !v->link_up) {
				v->link_up = true;
				v->netdown_pending = false;
				v->check_qp = true;
				v->st.port_up++;
				vb_log(v, XT_VERBS_LOG_INFO, "port active again: traffic resumes");
			}
			break;
		case IBV_EVENT_QP_FATAL:
		case IBV_EVENT_QP_REQ_ERR:
		case IBV_EVENT_QP_ACCESS_ERR:
		case IBV_EVENT_CQ_ERR:
			v->need_recover = true;
			vb_log(v, XT_VERBS_LOG_ERROR, "%s: resetting the QP", v->L->event_type_str(ev.event_type));
			break;
		case IBV_EVENT_DEVICE_FATAL:
			v->dead = true;
			/* Nothing more will be read from the device: keep its fds
			 * from waking the caller over and over. */
			(void)epoll_ctl(v->epfd, EPOLL_CTL_DEL, v->ctx->async_fd, NULL);
			(void)epoll_ctl(v->epfd, EPOLL_CTL_DEL, v->ch->fd, NULL);
			vb_log(v, XT_VERBS_LOG_ERROR, "device fatal error (IBV_EVENT_DEVICE_FATAL): the NIC is "
						      "gone; close it and fall back to another backend");
			break;
		default:
			break;
		}
		v->L->ack_async_event(&ev);
	}
}

/* Reads (and acknowledges) the completion events on the channel. */
static void drain_channel(struct vb_nic *v)
{
	struct ibv_cq *cq;
	void *cctx;
	unsigned int nrx = 0, ntx = 0;

	while (v->L->get_cq_event(v->ch, &cq, &cctx) == 0) {
		v->st.cq_events++;
		if (cq == v->rx_cq) {
			nrx++;
			v->armed = false;
		} else {
			ntx++;
		}
	}
	if (nrx)
		v->L->ack_cq_events(v->rx_cq, nrx);
	if (ntx)
		v->L->ack_cq_events(v->tx_cq, ntx);
}

/* The slow work: async events, a QP check, a recovery. */
static void maintenance(struct vb_nic *v)
{
	handle_async(v);
	if (v->dead)
		return;
	if (v->check_qp)
		check_qp_state(v);
	if (v->need_recover)
		recover(v);
}

/* --- the vtable ------------------------------------------------------------------- */

static int vb_rx(struct xt_nic *nic, struct xt_frame *frames, int n, xt_time_t now)
{
	struct vb_nic *v = to_vb(nic);
	struct ibv_wc wc[VB_POLL];
	int got = 0;

	if (n < 0)
		return -EINVAL;
	v->last_now = now;
	rx_release_lent(v);
	if (v->dead)
		return -ENODEV;
	if (v->armed)
		drain_channel(v);
	if (v->kicked) {
		uint64_t x;
		if (read(v->evfd, &x, sizeof(x)) < 0 && errno != EAGAIN)
			v->kicked = true;
		v->kicked = false;
	}
	if (++v->rx_calls % VB_ASYNC_EVERY == 0 || v->need_recover || v->check_qp)
		maintenance(v);
	if (v->dead)
		return -ENODEV;
	rx_post(v, false);
	if (n > VB_LEND_MAX)
		n = VB_LEND_MAX;
	while (got < n && v->stash_pos < v->nstash)
		if (rx_completion(v, &v->stash[v->stash_pos++], &frames[got]))
			got++;
	if (v->stash_pos == v->nstash)
		v->nstash = v->stash_pos = 0;
	while (got < n) {
		int want = n - got < VB_POLL ? n - got : VB_POLL;
		int k = ibv_poll_cq(v->rx_cq, want, wc);

		if (k < 0) {
			v->need_recover = true;
			break;
		}
		for (int i = 0; i < k; i++)
			if (rx_completion(v, &wc[i], &frames[got]))
				got++;
		if (k < want)
			break;
	}
	if (v->need_recover)
		recover(v);
	rx_post(v, false);
	return got;
}

static bool is_ipv4(const uint8_t *f, uint32_t len)
{
	return len >= XT_ETH_HLEN + XT_IP_HLEN && xt_rd16(f + XT_ETH_TYPE_be16) == XT_ETHERTYPE_IPV4 &&
	       f[XT_ETH_HLEN + XT_IP_VHL] >> 4 == 4;
}

/* Header length of an IPv4/TCP frame (Ethernet + IP + TCP), or 0. */
static uint32_t tcp_hdr_len(const uint8_t *f, uint32_t len)
{
	uint32_t ihl, thl;

	if (!is_ipv4(f, len) || f[XT_ETH_HLEN + XT_IP_PROTO] != XT_IPPROTO_TCP)
		return 0;
	ihl = (f[XT_ETH_HLEN + XT_IP_VHL] & 0xfu) * 4u;
	if (ihl < XT_IP_HLEN || len < XT_ETH_HLEN + ihl + XT_TCP_HLEN)
		return 0;
	thl = (uint32_t)(f[XT_ETH_HLEN + ihl + XT_TCP_OFF] >> 4) * 4u;
	if (thl < XT_TCP_HLEN || len < XT_ETH_HLEN + ihl + thl)
		return 0;
	return XT_ETH_HLEN + ihl + thl;
}

/* A send buffer registered for zero-copy sends (the engine's handle). */
struct vb_reg {
	struct ibv_mr *mr;
	struct vb_reg *prev, *next;
};

/* May frame f go out with its payload read in place? */
static bool zc_ok(const struct vb_nic *v, const struct xt_frame *f, uint32_t wl)
{
	uint32_t pay = wl - f->len;

	if (!v->zc || !(f->flags & XT_FRAME_GATHER) || !f->pay_key || pay < VB_ZC_MIN || f->len < VB_MIN_SGE)
		return false;
	if (wl <= v->max_frame)
		return true;
	return v->tso_max && f->len == tcp_hdr_len(f->data, f->len) && f->len <= VB_TSO_HDR_MAX &&
	       pay <= v->tso_max;
}

struct tx_plan {
	struct ibv_send_wr wr[VB_POLL];
	struct ibv_sge sge[VB_POLL][VB_ZC_SGE];
	int frame[VB_POLL]; /* index in the caller's frames of each WR */
	bool zc[VB_POLL];   /* the WR reads a send buffer in place */
	int nwr;
};

/* Prepares one WR for frames[i] at send queue index idx.  Returns 1 when a
 * WR was added, 0 when the frame was dropped (taken, counted), -1 when it
 * must wait (no TSO slot free). */
static int tx_prepare(struct vb_nic *v, struct tx_plan *p, const struct xt_frame *f, int i, uint64_t idx)
{
	struct ibv_send_wr *wr = &p->wr[p->nwr];
	struct ibv_sge *sge = p->sge[p->nwr];
	uint32_t slot = (uint32_t)(idx % (uint64_t)v->tx_depth);
	uint32_t wl = xt_frame_wire_len(f); /* the headers are in data; payload may be gathered */
	bool sig;

	memset(wr, 0, sizeof(*wr));
	if (wl < VB_MIN_SGE) {
		v->st.tx_oversize++; /* a runt: not an Ethernet frame */
		return 0;
	}
	wr->opcode = IBV_WR_SEND;
	wr->num_sge = 1;
	p->zc[p->nwr] = zc_ok(v, f, wl);
	if (p->zc[p->nwr]) {
		/* The payload straight from the socket's registered send buffer
		 * (it stays put until this WR completes: vb_tx_fence); the
		 * headers from the TX slot, or inline in a TSO WR. */
		struct vb_reg *r = (struct vb_reg *)(uintptr_t)f->pay_key;
		int k = 0;

		if (wl > v->max_frame) {
			wr->opcode = IBV_WR_TSO;
			wr->tso.hdr = (void *)(uintptr_t)f->data; /* copied into the WQE at post */
			wr->tso.hdr_sz = (uint16_t)f->len;
			wr->tso.mss = (uint16_t)(v->max_frame - 4 - f->len);
			v->st.tx_tso++;
		} else {
			uint8_t *b = v->tx_base + (size_t)slot * v->slot_size;
			memcpy(b, f->data, f->len);
			sge[k++] = (struct ibv_sge){ .addr = (uintptr_t)b, .length = f->len, .lkey = v->mr->lkey };
		}
		for (int j = 0; j < 2; j++)
			if (f->pay_len[j])
				sge[k++] = (struct ibv_sge){ .addr = (uintptr_t)f->pay[j], .length = f->pay_len[j],
							     .lkey = r->mr->lkey };
		wr->num_sge = k;
		wr->send_flags |= IBV_SEND_SIGNALED; /* the fence waits for it */
	} else if (wl > v->max_frame) {
		uint32_t hl = tcp_hdr_len(f->data, f->len);
		uint8_t *b;

		if (!v->tso_max || !hl || hl > VB_TSO_HDR_MAX || wl - hl > v->tso_max ||
		    wl > VB_TSO_CAP + VB_TSO_HDR_MAX) {
			v->st.tx_oversize++;
			return 0;
		}
		if (!v->nbig_free)
			return -1;
		int big = v->big_free[--v->nbig_free];
		b = v->big_base + (size_t)big * (VB_TSO_CAP + VB_TSO_HDR_MAX);
		xt_frame_copy(f, b);
		v->tx_big[slot] = (int8_t)(big + 1);
		wr->opcode = IBV_WR_TSO;
		wr->tso.hdr = b;
		wr->tso.hdr_sz = (uint16_t)hl;
		wr->tso.mss = (uint16_t)(v->max_frame - 4 - hl);
		sge->addr = (uintptr_t)(b + hl);
		sge->length = wl - hl;
		sge->lkey = v->mr->lkey;
		v->st.tx_tso++;
	} else if (wl <= v->inline_max && !(f->flags & XT_FRAME_GATHER)) {
		/* Inline: the device copies at post time, so the caller's
		 * buffer is used directly. */
		sge->addr = (uintptr_t)f->data;
		sge->length = wl;
		sge->lkey = v->mr->lkey;
		wr->send_flags |= IBV_SEND_INLINE;
		v->st.tx_inline++;
	} else {
		/* The one copy of a gathered frame: its pieces, straight from
		 * the socket's send ring into the slot. */
		uint8_t *b = v->tx_base + (size_t)slot * v->slot_size;
		xt_frame_copy(f, b);
		sge->addr = (uintptr_t)b;
		sge->length = wl;
		sge->lkey = v->mr->lkey;
		if (wl <= v->inline_max) {
			wr->send_flags |= IBV_SEND_INLINE;
			v->st.tx_inline++;
		}
	}
	if (v->tx_csum && is_ipv4(f->data, f->len)) {
		wr->send_flags |= IBV_SEND_IP_CSUM;
		v->st.tx_csum_offload++;
	}
	/* Selective signalling: at most signal_every - 1 unsignalled WRs trail
	 * a signalled one; a TSO send is signalled so its large slot returns
	 * soon. */
	sig = v->unsig_run + 1 >= v->signal_every || wr->opcode == IBV_WR_TSO ||
	      (wr->send_flags & IBV_SEND_SIGNALED);
	if (sig) {
		wr->send_flags |= IBV_SEND_SIGNALED;
		v->unsig_run = 0;
	} else {
		v->unsig_run++;
	}
	wr->wr_id = WR_ID(v->gen, idx);
	wr->sg_list = sge;
	p->frame[p->nwr] = i;
	if (p->nwr)
		p->wr[p->nwr - 1].next = wr;
	p->nwr++;
	return 1;
}

/* Posts the planned WRs.  Returns how many the device took. */
static int tx_post(struct vb_nic *v, struct tx_plan *p, int unsig_before)
{
	struct ibv_send_wr *bad = NULL;
	int r, done;

	if (!p->nwr)
		return 0;
	r = ibv_post_send(v->qp, p->wr, &bad);
	done = r == 0 ? p->nwr : (int)(bad - p->wr);
	if (done < 0 || done > p->nwr)
		done = 0;
	if (r) {
		v->st.tx_post_errors++;
		if (!v->post_failing)
			vb_log(v, XT_VERBS_LOG_ERROR, "ibv_post_send: %s; frames are refused (TCP resends them)",
			       strerror(r));
		v->post_failing = true;
		/* Undo what the WRs that were not posted claimed. */
		for (int i = done; i < p->nwr; i++) {
			uint64_t idx = v->sq_head + (uint64_t)i;
			int8_t *b = &v->tx_big[idx % (uint64_t)v->tx_depth];
			if (*b) {
				v->big_free[v->nbig_free++] = *b - 1;
				*b = 0;
			}
			if (p->wr[i].send_flags & IBV_SEND_INLINE)
				v->st.tx_inline--;
			if (p->wr[i].send_flags & IBV_SEND_IP_CSUM)
				v->st.tx_csum_offload--;
			if (p->wr[i].opcode == IBV_WR_TSO)
				v->st.tx_tso--;
		}
		v->unsig_run = unsig_before;
		for (int i = 0; i < done; i++)
			v->unsig_run = (p->wr[i].send_flags & IBV_SEND_SIGNALED) ? 0 : v->unsig_run + 1;
		if (r != ENOMEM)
			v->check_qp = true;
	} else {
		v->post_failing = false;
	}
	for (int i = 0; i < done; i++) {
		if (p->wr[i].send_flags & IBV_SEND_SIGNALED)
			v->st.tx_signalled++;
		v->st.tx_frames++;
		uint32_t bytes = p->wr[i].opcode == IBV_WR_TSO ? p->wr[i].tso.hdr_sz : 0;
		for (int k = 0; k < p->wr[i].num_sge; k++)
			bytes += p->sge[i][k].length;
		v->st.tx_bytes += bytes;
		if (p->zc[i]) {
			v->st.tx_zerocopy++;
			v->zc_last = v->sq_head + (uint64_t)i + 1;
		}
	}
	v->sq_head += (uint64_t)done;
	return done;
}

static int vb_tx(struct xt_nic *nic, const struct xt_frame *frames, int n, xt_time_t now)
{
	struct vb_nic *v = to_vb(nic);
	int taken = 0;

	v->last_now = now;
	if (n < 0)
		return -EINVAL;
	if (v->dead)
		return -ENODEV;
	if (!v->link_up) {
		v->st.tx_link_down += (uint64_t)n;
		return 0;
	}
	if (v->need_recover)
		recover(v);
	if (v->need_recover) {
		v->st.tx_qp_error += (uint64_t)n; /* the reset failed: retried at next_deadline */
		return 0;
	}
	if (v->sq_head - v->sq_tail + (uint64_t)n > (uint64_t)v->tx_depth / 2)
		tx_poll(v);
	while (taken < n) {
		struct tx_plan p;
		int unsig_before = v->unsig_run, i = taken, posted, r = 0;

		p.nwr = 0;
		for (; i < n && p.nwr < VB_POLL; i++) {
			uint64_t idx = v->sq_head + (uint64_t)p.nwr;

			if (idx - v->sq_tail >= (uint64_t)v->tx_depth) {
				tx_poll(v);
				if (idx - v->sq_tail >= (uint64_t)v->tx_depth) {
					r = -1;
					break;
				}
			}
			if ((r = tx_prepare(v, &p, &frames[i], i, idx)) < 0) {
				tx_poll(v);
				if ((r = tx_prepare(v, &p, &frames[i], i, idx)) < 0)
					break;
			}
		}
		posted = tx_post(v, &p, unsig_before);
		if (posted < p.nwr) {
			taken = p.frame[posted];
			break;
		}
		taken = i;
		if (r < 0)
			break;
	}
	if (taken < n && !v->post_failing)
		v->st.tx_full += (uint64_t)(n - taken);
	return taken;
}

/* --- zero-copy sends: registered send buffers and the fence ---------------------- */

static uint64_t vb_tx_buf_reg(struct xt_nic *nic, void *buf, uint32_t len)
{
	struct vb_nic *v = to_vb(nic);
	struct vb_reg *r;

	if (!v->zc || v->dead || !buf || !len)
		return 0;
	r = calloc(1, sizeof(*r));
	if (!r)
		return 0;
	/* Local read access is all a send needs. */
	r->mr = v->L->reg_mr(v->pd, buf, len, 0);
	if (!r->mr) {
		int e = errno;
		if (!v->st.tx_buf_reg_failures++)
			vb_log(v, XT_VERBS_LOG_WARN, "ibv_reg_mr of a %u-byte send buffer: %s; sends from such "
						      "buffers are copied (raise ulimit -l to send in place)",
			       len, strerror(e));
		free(r);
		return 0;
	}
	r->next = v->regs;
	if (v->regs)
		v->regs->prev = r;
	v->regs = r;
	v->st.tx_buf_regs++;
	return (uint64_t)(uintptr_t)r;
}

static void reg_drop(struct vb_nic *v, struct vb_reg *r)
{
	if (r->prev)
		r->prev->next = r->next;
	else
		v->regs = r->next;
	if (r->next)
		r->next->prev = r->prev;
	(void)v->L->dereg_mr(r->mr);
	v->st.tx_buf_deregs++;
	free(r);
}

static void vb_tx_buf_unreg(struct xt_nic *nic, uint64_t handle)
{
	if (handle)
		reg_drop(to_vb(nic), (struct vb_reg *)(uintptr_t)handle);
}

/* Returns once the device reads no send buffer for a WR posted so far: every
 * zero-copy WR is signalled, so its completion says so; a QP reset ends
 * them too.  -EIO when that cannot be known (a dead device, completions
 * that never come): the engine then keeps the buffer for good. */
static int vb_tx_fence(struct xt_nic *nic)
{
	struct vb_nic *v = to_vb(nic);
	bool waited = v->sq_tail < v->zc_last;

	for (int spin = 0; v->sq_tail < v->zc_last; spin++) {
		if (v->dead || spin >= VB_DRAIN_SPINS * 16) {
			v->st.tx_fence_failures++;
			return -EIO;
		}
		tx_poll(v);
		if (v->need_recover)
			recover(v); /* the QP goes through RESET: nothing is read after */
		if (v->sq_tail < v->zc_last && spin >= VB_DRAIN_SPINS)
			sched_yield();
	}
	if (waited)
		v->st.tx_fence_waits++;
	return 0;
}

static int vb_wake_fd(struct xt_nic *nic) { return to_vb(nic)->epfd; }

static int vb_arm_wake(struct xt_nic *nic)
{
	struct vb_nic *v = to_vb(nic);

	if (v->dead)
		return -ENODEV;
	maintenance(v);
	if (v->dead)
		return -ENODEV;
	tx_poll(v);
	if (v->need_recover)
		recover(v);
	if (!v->armed) {
		if (ibv_req_notify_cq(v->rx_cq, 0) == 0)
			v->armed = true;
	}
	/* Completions queued before the request raise no event: keep them and
	 * make the wake fd readable through the eventfd. */
	if (v->nstash == 0) {
		int k = ibv_poll_cq(v->rx_cq, VB_STASH, v->stash);
		v->nstash = k > 0 ? k : 0;
		v->stash_pos = 0;
	}
	if (v->nstash > v->stash_pos && !v->kicked) {
		uint64_t one = 1;
		if (write(v->evfd, &one, sizeof(one)) == sizeof(one))
			v->kicked = true;
	}
	if (v->netdown_pending) {
		v->netdown_pending = false;
		return -ENETDOWN;
	}
	return 0;
}

static xt_time_t vb_deadline(struct xt_nic *nic)
{
	struct vb_nic *v = to_vb(nic);

	/* A recovery that failed is retried soon; nothing else needs a timer. */
	if (v->need_recover && !v->dead)
		return v->last_now + VB_RETRY_NS;
	return XT_TIME_NEVER;
}

/* The device's objects: QP, CQs, channel, steering rules, registrations. */
static void vb_free_device(struct vb_nic *v)
{
	const struct vb_lib *L = v->L;

	for (int i = 0; v->flows && i < v->nflows_cap; i++)
		if (v->flows[i].kind != VBF_FREE && v->flows[i].f)
			(void)ibv_destroy_flow(v->flows[i].f);
	if (v->qp)
		L->destroy_qp(v->qp);
	if (v->ch && v->armed)
		drain_channel(v);
	if (v->rx_cq)
		L->destroy_cq(v->rx_cq);
	if (v->tx_cq)
		L->destroy_cq(v->tx_cq);
	if (v->ch)
		L->destroy_comp_channel(v->ch);
	while (v->regs) /* the engine's buffers still registered (it outlives us) */
		reg_drop(v, v->regs);
	if (v->mr)
		L->dereg_mr(v->mr);
	if (v->pd)
		L->dealloc_pd(v->pd);
	if (v->ctx)
		L->close_device(v->ctx);
}

static void vb_free(struct vb_nic *v)
{
	if (v->pid == getpid()) {
		vb_free_device(v);
	} else {
		/* A fork child's copy.  The device's objects belong to the verbs
		 * file the child shares with its parent: a destroy command from
		 * here would tear down the parent's queue and rules, and reading
		 * the completion channel would take the parent's events.  Only
		 * this process's memory and descriptor copies go. */
		while (v->regs) {
			struct vb_reg *r = v->regs;
			v->regs = r->next;
			free(r);
		}
	}
	free(v->flows);
	if (v->pool)
		munmap(v->pool, v->pool_len);
	if (v->epfd >= 0)
		close(v->epfd);
	if (v->evfd >= 0)
		close(v->evfd);
	free(v->rx_state);
	free(v->rx_free);
	free(v->tx_big);
	free(v);
}

static void vb_close(struct xt_nic *nic) { vb_free(to_vb(nic)); }

/* The vtable's steering hooks (nic.h): listening rule or 5-tuple rule. */
static int vb_flow_add(struct xt_nic *nic, const struct xt_flow *f)
{
	if (!f)
		return -EINVAL;
	if (!f->remote_port)
		return xt_verbs_flow_add_listen(nic, f->local_ip, f->local_port);
	struct xt_verbs_tuple t = { .local_ip = f->local_ip, .remote_ip = f->remote_ip,
				    .local_port = f->local_port, .remote_port = f->remote_port };
	return xt_verbs_flow_add_conn(nic, &t);
}

static int vb_flow_del(struct xt_nic *nic, int id) { return xt_verbs_flow_del(nic, id); }

static const struct xt_nic_ops verbs_ops = {
	.name = "verbs",
	.rx_burst = vb_rx,
	.tx_burst = vb_tx,
	.wake_fd = vb_wake_fd,
	.arm_wake = vb_arm_wake,
	.next_deadline = vb_deadline,
	.close = vb_close,
	.flow_add = vb_flow_add,
	.flow_del = vb_flow_del,
	.rx_hold = vb_rx_hold,
	.rx_release = vb_rx_release,
	.tx_buf_reg = vb_tx_buf_reg,
	.tx_buf_unreg = vb_tx_buf_unreg,
	.tx_fence = vb_tx_fence,
};

/* --- flows ------------------------------------------------------------------- */

static struct vb_nic *vb_of(struct xt_nic *nic)
{
	return nic && nic->ops == &verbs_ops ? to_vb(nic) : NULL;
}

static int flow_slot(struct vb_nic *v)
{
	if (v->flow_free < 0) {
		int cap = v->nflows_cap ? v->nflows_cap * 2 : 64;
		struct vb_flow *nf;

		if (cap > VB_FLOW_MAX)
			return -ENOSPC;
		nf = realloc(v->flows, sizeof(*nf) * (size_t)cap);
		if (!nf)
			return -ENOMEM;
		for (int i = v->nflows_cap; i < cap; i++) {
			nf[i].f = NULL;
			nf[i].kind = VBF_FREE;
			nf[i].next_free = i + 1 < cap ? i + 1 : v->flow_free;
		}
		v->flow_free = v->nflows_cap;
		v->flows = nf;
		v->nflows_cap = cap;
	}
	int id = v->flow_free;
	v->flow_free = v->flows[id].next_free;
	return id;
}

static int flow_add(struct vb_nic *v, struct vb_rule *rule, uint8_t kind)
{
	struct ibv_flow *f;
	int id;

	if (v->dead)
		return -ENODEV;
	if ((id = flow_slot(v)) < 0)
		return id;
	errno = 0;
	f = ibv_create_flow(v->qp, &rule->attr);
	if (!f) {
		int e = errno ? errno : EOPNOTSUPP;
		v->flows[id].next_free = v->flow_free;
		v->flow_free = id;
		v->st.flow_errors++;
		return -e;
	}
	v->flows[id].f = f;
	v->flows[id].kind = kind;
	v->nflows++;
	v->st.flows_added++;
	return id;
}

int xt_verbs_flow_add_listen(struct xt_nic *nic, uint32_t ip, uint16_t port)
{
	struct vb_nic *v = vb_of(nic);
	struct vb_rule r;

	if (!v || port == 0)
		return -EINVAL;
	rule_build(&r, v->port, PRIO_LISTEN, 0, rule_mac(v), 0, 0, ip ? ip : v->cfg.ip, 0, 0, port);
	return flow_add(v, &r, VBF_LISTEN);
}

int xt_verbs_flow_add_conn(struct xt_nic *nic, const struct xt_verbs_tuple *t)
{
	struct vb_nic *v = vb_of(nic);
	struct vb_rule r;

	if (!v || !t || !t->local_port || !t->remote_port || !t->remote_ip)
		return -EINVAL;
	rule_build(&r, v->port, PRIO_CONN, 0, rule_mac(v), 0, t->remote_ip, t->local_ip ? t->local_ip : v->cfg.ip,
		   0, t->remote_port, t->local_port);
	return flow_add(v, &r, VBF_CONN);
}

int xt_verbs_flow_del(struct xt_nic *nic, int id)
{
	struct vb_nic *v = vb_of(nic);
	int r;

	if (!v)
		return -EINVAL;
	if (id < 0 || id >= v->nflows_cap || v->flows[id].kind == VBF_FREE)
		return -ENOENT;
	r = v->dead ? 0 : ibv_destroy_flow(v->flows[id].f);
	v->flows[id].f = NULL;
	v->flows[id].kind = VBF_FREE;
	v->flows[id].next_free = v->flow_free;
	v->flow_free = id;
	v->nflows--;
	v->st.flows_removed++;
	if (id == v->arp_flow)
		v->arp_flow = -1;
	if (id == v->icmp_flow)
		v->icmp_flow = -1;
	if (id == v->ip_flow)
		v->ip_flow = -1;
	return r > 0 ? -r : 0;
}

/* --- introspection ------------------------------------------------------------- */

int xt_verbs_info(struct xt_nic *nic, struct xt_verbs_info *o)
{
	struct vb_nic *v = vb_of(nic);

	if (!v || !o)
		return -EINVAL;
	memset(o, 0, sizeof(*o));
	snprintf(o->device, sizeof(o->device), "%s", v->dname);
	o->port = v->port;
	o->link_up = v->link_up;
	o->kernel_owns_ip = v->kernel_owns_ip;
	o->steer = (uint8_t)v->steer;
	o->arp_rule = v->arp_flow >= 0;
	o->icmp_rule = v->icmp_flow >= 0;
	o->tx_csum = v->nic.caps.tx_csum;
	o->rx_csum = v->nic.caps.rx_csum;
	o->dead = v->dead;
	o->inline_max = v->inline_max;
	o->zerocopy = v->zc;
	o->tso_max = v->tso_max;
	o->qp_num = v->qp->qp_num;
	o->qp_state = v->qp_state;
	o->rx_depth = v->rx_depth;
	o->tx_depth = v->tx_depth;
	o->signal_every = v->signal_every;
	o->rx_batch = v->rx_batch;
	o->flows = v->nflows;
	o->mr_bytes = v->pool_len;
	return 0;
}

int xt_verbs_stats(struct xt_nic *nic, struct xt_verbs_stats *out)
{
	struct vb_nic *v = vb_of(nic);

	if (!v || !out)
		return -EINVAL;
	*out = v->st;
	return 0;
}

/* --- open --------------------------------------------------------------------- */

static int check_cfg(const struct xt_verbs_cfg *c)
{
	if (!c || !c->ifname || !*c->ifname || strlen(c->ifname) >= IF_NAMESIZE)
		return vb_fail(-EINVAL, "interface name missing or longer than %d", IF_NAMESIZE - 1);
	if (c->ip == 0)
		return vb_fail(-EINVAL, "engine address (cfg.ip) missing");
	if (c->steer < XT_VERBS_STEER_AUTO || c->steer > XT_VERBS_STEER_FLOWS)
		return vb_fail(-EINVAL, "unknown steer mode %d", c->steer);
	if (c->rx_depth < 0 || c->rx_depth > VB_MAX_DEPTH || c->tx_depth < 0 || c->tx_depth > VB_MAX_DEPTH)
		return vb_fail(-EINVAL, "queue depths must be 0..%d", VB_MAX_DEPTH);
	if (c->rx_batch < 0 || c->rx_batch > VB_MAX_BATCH)
		return vb_fail(-EINVAL, "rx_batch must be 0..%d", VB_MAX_BATCH);
	if (c->signal_every < 0 || c->inline_max < -1 || c->inline_max > 1024)
		return vb_fail(-EINVAL, "signal_every must be >= 0 and inline_max -1..1024");
	return 0;
}

/* Sizes, pool and MR. */
static int setup_pool(struct vb_nic *v)
{
	size_t rx_bytes, tx_bytes, big_bytes;

	v->slot_size = (v->max_frame + 63u) & ~63u;
	if (v->slot_size < 2048)
		v->slot_size = 2048;
	v->nrx = v->rx_depth + VB_LEND_MAX + VB_HOLD_WINDOW;
	v->nbig = v->tso_max ? VB_TSO_SLOTS : 0;
	rx_bytes = (size_t)v->nrx * v->slot_size;
	tx_bytes = (size_t)v->tx_depth * v->slot_size;
	big_bytes = (size_t)v->nbig * (VB_TSO_CAP + VB_TSO_HDR_MAX);
	v->pool_len = (rx_bytes + tx_bytes + big_bytes + 4095u) & ~(size_t)4095u;
	v->pool = mmap(NULL, v->pool_len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (v->pool == MAP_FAILED) {
		v->pool = NULL;
		return vb_fail(-ENOMEM, "mmap of the %zu-byte buffer pool: %s", v->pool_len, strerror(errno));
	}
	v->rx_base = v->pool;
	v->tx_base = v->pool + rx_bytes;
	v->big_base = v->tx_base + tx_bytes;
	v->rx_state = calloc((size_t)v->nrx, 1);
	v->rx_free = calloc((size_t)v->nrx, sizeof(uint32_t));
	v->tx_big = calloc((size_t)v->tx_depth, 1);
	if (!v->rx_state || !v->rx_free || !v->tx_big)
		return vb_fail(-ENOMEM, "out of memory");
	for (int i = 0; i < v->nrx; i++)
		v->rx_free[v->nfree++] = (uint32_t)(v->nrx - 1 - i);
	for (int i = 0; i < v->nbig; i++)
		v->big_free[v->nbig_free++] = i;
	errno = 0;
	v->mr = v->L->reg_mr(v->pd, v->pool, v->pool_len, IBV_ACCESS_LOCAL_WRITE);
	if (!v->mr) {
		int e = errno ? errno : ENOMEM;
		if (e == ENOMEM || e == EPERM || e == EAGAIN)
			return vb_fail(-ENOMEM, "ibv_reg_mr of the %zu-byte pool: %s; raise the locked-memory "
						"limit (ulimit -l, memlock in /etc/security/limits.conf) or grant "
						"CAP_IPC_LOCK", v->pool_len, strerror(e));
		return vb_fail(-e, "ibv_reg_mr of the %zu-byte pool: %s", v->pool_len, strerror(e));
	}
	return 0;
}

static int set_nonblock(int fd)
{
	int fl = fcntl(fd, F_GETFL);
	return fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0 ? -errno : 0;
}

static int setup_queues(struct vb_nic *v, const struct vb_devcaps *dc)
{
	uint32_t inl = 0, want;
	int sdepth = v->tx_depth, e, first_err = 0;

	v->ch = v->L->create_comp_channel(v->ctx);
	if (!v->ch)
		return vb_fail(-(errno ? errno : EIO), "ibv_create_comp_channel: %s", strerror(errno ? errno : EIO));
	if (set_nonblock(v->ch->fd) < 0 || set_nonblock(v->ctx->async_fd) < 0)
		return vb_fail(-errno, "O_NONBLOCK on the completion channel: %s", strerror(errno));
	v->rx_cq = v->L->create_cq(v->ctx, v->rx_depth, v, v->ch, 0);
	v->tx_cq = v->rx_cq ? v->L->create_cq(v->ctx, v->tx_depth, v, v->ch, 0) : NULL;
	if (!v->rx_cq || !v->tx_cq)
		return vb_fail(-(errno ? errno : ENOMEM), "ibv_create_cq: %s", strerror(errno ? errno : ENOMEM));
	want = v->cfg.inline_max < 0 ? 0 : v->cfg.inline_max ? (uint32_t)v->cfg.inline_max : VB_DEFAULT_INLINE;
	/* A device may refuse the inline size (EINVAL) or the TSO header room
	 * it advertised: fall back to less, in that order, and keep the errno of
	 * the first refusal for the message (EPERM, EOPNOTSUPP). */
	/* Zero-copy sends need three gather entries (headers, the payload in
	 * up to two pieces); a device that refuses them gets one, and copies. */
	uint32_t tso_want = v->tso_max;
	static const uint32_t sges[] = { VB_ZC_SGE, 1 };
	for (size_t k = 0; k < sizeof(sges) / sizeof(sges[0]) && !v->qp; k++) {
		uint32_t sge = sges[k];
		v->tso_max = tso_want;
		for (int attempt = 0; attempt < 4 && !v->qp; attempt++) {
			bool tso = v->tso_max > 0 && attempt < 2;

			if ((attempt == 1 || attempt == 3) && (want == 0 || first_err != EINVAL))
				continue;
			if (attempt == 2 && !v->tso_max)
				continue;
			inl = attempt & 1 ? 0 : want;
			errno = 0;
			v->qp = create_qp(v->L, v->ctx, v->pd, v->tx_cq, v->rx_cq, v->tx_depth, v->rx_depth, &inl,
					  tso, &sdepth, sge);
			if (!v->qp && !first_err)
				first_err = errno ? errno : EIO;
			if (v->qp && !tso)
				v->tso_max = 0;
		}
		v->zc = v->qp && sge == VB_ZC_SGE;
	}
	if (!v->qp)
		return qp_error_message(first_err, v->dname);
	(void)dc;
	v->inline_max = inl;
	if (sdepth > 0 && sdepth < v->tx_depth)
		v->tx_depth = sdepth;
	if ((e = qp_to_rts(v->L, v->qp, v->port)))
		return vb_fail(-e, "raw packet QP on %s: RESET->INIT->RTR->RTS failed: %s", v->dname, strerror(e));
	v->qp_state = IBV_QPS_RTS;
	return 0;
}

static int setup_wake(struct vb_nic *v)
{
	struct epoll_event ev = { .events = EPOLLIN };

	v->epfd = epoll_create1(EPOLL_CLOEXEC);
	v->evfd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (v->epfd < 0 || v->evfd < 0)
		return vb_fail(-errno, "epoll/eventfd: %s", strerror(errno));
	ev.data.fd = v->ch->fd;
	if (epoll_ctl(v->epfd, EPOLL_CTL_ADD, v->ch->fd, &ev) < 0)
		return vb_fail(-errno, "epoll_ctl (completion channel): %s", strerror(errno));
	ev.data.fd = v->ctx->async_fd;
	if (epoll_ctl(v->epfd, EPOLL_CTL_ADD, v->ctx->async_fd, &ev) < 0)
		return vb_fail(-errno, "epoll_ctl (async events): %s", strerror(errno));
	ev.data.fd = v->evfd;
	if (epoll_ctl(v->epfd, EPOLL_CTL_ADD, v->evfd, &ev) < 0)
		return vb_fail(-errno, "epoll_ctl (eventfd): %s", strerror(errno));
	return 0;
}

static int setup_rules(struct vb_nic *v)
{
	struct vb_rule r;
	int id;

	if (v->steer == XT_VERBS_STEER_IP) {
		rule_build(&r, v->port, PRIO_IP, 0, rule_mac(v), 0, 0, v->cfg.ip, 0, 0, 0);
		if ((id = flow_add(v, &r, VBF_IP)) < 0)
			return vb_fail(id, "flow steering refused by %s (%s): mlx5 needs firmware with "
					   "flow steering (ConnectX-4 Lx or later); mlx4 needs "
					   "log_num_mgm_entry_size=-1 (options mlx4_core in modprobe.d)",
				       v->dname, strerror(-id));
		v->ip_flow = id;
	} else {
		rule_build(&r, v->port, PRIO_COPY, IBV_FLOW_ATTR_FLAGS_DONT_TRAP, rule_mac(v), 0, 0, v->cfg.ip,
			   XT_IPPROTO_ICMP, 0, 0);
		if ((id = flow_add(v, &r, VBF_ICMP)) >= 0)
			v->icmp_flow = id;
		else
			vb_log(v, XT_VERBS_LOG_WARN, "no ICMP copy rule (%s): ICMP errors for our connections "
						     "stay with the kernel (no path MTU discovery)", strerror(-id));
	}
	if (v->cfg.no_arp_rule)
		return 0;
	rule_build(&r, v->port, PRIO_COPY, IBV_FLOW_ATTR_FLAGS_DONT_TRAP, NULL, XT_ETHERTYPE_ARP, 0, 0, 0, 0, 0);
	if ((id = flow_add(v, &r, VBF_ARP)) >= 0) {
		v->arp_flow = id;
	} else {
		vb_log(v, XT_VERBS_LOG_WARN,
		       "no ARP copy rule (DONT_TRAP refused: %s): ARP stays with the kernel; seed neighbours "
		       "from the kernel's table%s", strerror(-id),
		       v->kernel_owns_ip ? "" : ", and let the kernel answer for the engine's address "
						"(ip neigh add proxy ADDR dev IF)");
	}
	return 0;
}

int xt_verbs_open(const struct xt_verbs_cfg *cfg, struct xt_nic **out)
{
	struct vb_nic *v;
	struct ibv_device **list = NULL;
	struct vb_found found;
	struct vb_devcaps dc;
	struct ibv_port_attr pa;
	char path[IBV_SYSFS_PATH_MAX + 80], buf[64];
	int r, ndev = 0;

	vb_err[0] = '\0';
	if (!out)
		return vb_fail(-EINVAL, "out missing");
	if ((r = check_cfg(cfg)) < 0)
		return r;
	v = calloc(1, sizeof(*v));
	if (!v)
		return vb_fail(-ENOMEM, "out of memory");
	v->nic.ops = &verbs_ops;
	v->cfg = *cfg;
	v->pid = getpid();
	v->epfd = v->evfd = -1;
	v->flow_free = -1;
	v->arp_flow = v->icmp_flow = v->ip_flow = -1;
	snprintf(v->ifname, sizeof(v->ifname), "%s", cfg->ifname);
	v->cfg.ifname = v->ifname;
	v->rx_depth = cfg->rx_depth ? cfg->rx_depth : VB_DEFAULT_RX_DEPTH;
	v->tx_depth = cfg->tx_depth ? cfg->tx_depth : VB_DEFAULT_TX_DEPTH;
	v->rx_batch = cfg->rx_batch ? cfg->rx_batch : VB_DEFAULT_RX_BATCH;
	if (v->rx_batch > v->rx_depth)
		v->rx_batch = v->rx_depth;

	if ((r = vb_load(cfg->lib, &v->L)) < 0)
		goto fail_nolib;
	errno = 0;
	list = v->L->get_device_list(&ndev);
	if (!list || ndev <= 0) {
		int e = errno;
		if (!list && (e == EPERM || e == EACCES))
			r = vb_fail(-EACCES, "ibv_get_device_list: %s (/sys/class/infiniband not readable)", strerror(e));
		else if (!if_nametoindex(v->ifname))
			r = vb_fail(-ENODEV, "no interface %s in this network namespace (and no RDMA devices)", v->ifname);
		else
			r = vb_fail(-ENODEV, "no RDMA device behind %s: this host has none (ibv_get_device_list "
					     "is empty); load the driver (modprobe mlx5_ib) and check ibv_devices, "
					     "or use XTCP_NIC=packet", v->ifname);
		goto fail;
	}
	if ((r = find_device(v->L, v->ifname, list, ndev, &found)) < 0)
		goto fail;
	snprintf(v->dname, sizeof(v->dname), "%s", dev_name(v->L, found.dev));
	errno = 0;
	v->ctx = v->L->open_device(found.dev);
	if (!v->ctx) {
		int e = errno ? errno : EIO;
		r = e == EACCES || e == EPERM
			    ? vb_fail(-EACCES, "cannot open %s: %s; the user needs read/write access to "
					       "/dev/infiniband/uverbs* (root, or a udev rule / the rdma group)",
				      v->dname, strerror(e))
			    : vb_fail(-e, "cannot open %s: %s", v->dname, strerror(e));
		goto fail;
	}
	v->L->free_device_list(list);
	list = NULL;

	query_caps(v->L, v->ctx, &dc);
	v->port = (uint8_t)pick_port(&found, v->ifname, dc.ex.orig_attr.phys_port_cnt ? dc.ex.orig_attr.phys_port_cnt : 1);
	if ((r = check_port(v->L, v->ctx, v->dname, v->port, v->ifname, &pa)) < 0)
		goto fail;
	v->link_up = true;

	{
		long mtu = 0;

		if (netdev_query(v->ifname, v->nic.caps.mac, &mtu) < 0) {
			snprintf(path, sizeof(path), "%s/address", found.netdir);
			if (read_line(path, buf, sizeof(buf)) < 0 || parse_mac(buf, v->nic.caps.mac) < 0) {
				r = vb_fail(-ENODEV, "cannot read the MAC address of %s (%s)", v->ifname, path);
				goto fail;
			}
			snprintf(path, sizeof(path), "%s/mtu", found.netdir);
			mtu = read_line(path, buf, sizeof(buf)) == 0 ? strtol(buf, NULL, 10) : 1500;
		}
		if (mtu < 68)
			mtu = 1500;
		if (mtu > 9600)
			mtu = 9600;
		v->nic.caps.mtu = (uint16_t)mtu;
		v->max_frame = (uint32_t)mtu + XT_ETH_HLEN + 4;
	}

	v->kernel_owns_ip = kernel_owns(v->ifname, cfg->ip);
	if (cfg->have_mac && v->kernel_owns_ip) {
		r = vb_fail(-EINVAL, "a MAC address of the engine's own needs an address of its own: the "
				     "kernel answers ARP for the address it shares with its MAC");
		goto fail;
	}
	v->steer = cfg->steer != XT_VERBS_STEER_AUTO ? cfg->steer
			 : v->kernel_owns_ip ? XT_VERBS_STEER_FLOWS : XT_VERBS_STEER_IP;
	v->tx_csum = dc.csum && !cfg->no_csum_offload;
	v->nic.caps.tx_csum = v->tx_csum;
	v->nic.caps.tx_gather = 1;      /* pieces copied into the TX slot: the only copy */
	v->nic.caps.rx_hold_window = VB_HOLD_WINDOW;
	v->nic.caps.rx_csum = v->tx_csum;
	v->tso_max = cfg->no_tso ? 0 : dc.tso_max;
	if (v->tso_max > VB_TSO_CAP)
		v->tso_max = VB_TSO_CAP;
	if (dc.ex.orig_attr.max_qp_wr > 0) {
		if (v->rx_depth > dc.ex.orig_attr.max_qp_wr)
			v->rx_depth = dc.ex.orig_attr.max_qp_wr;
		if (v->tx_depth > dc.ex.orig_attr.max_qp_wr)
			v->tx_depth = dc.ex.orig_attr.max_qp_wr;
	}

	v->pd = v->L->alloc_pd(v->ctx);
	if (!v->pd) {
		r = vb_fail(-(errno ? errno : ENOMEM), "ibv_alloc_pd on %s: %s", v->dname, strerror(errno ? errno : ENOMEM));
		goto fail;
	}
	if ((r = setup_pool(v)) < 0 || (r = setup_queues(v, &dc)) < 0)
		goto fail;
	/* TSO sends: the payload from the registered send buffer (zero copy)
	 * or copied into one of the large slots; either way up to VB_TSO_CAP. */
	v->nic.caps.tso_max = v->tso_max < VB_TSO_CAP ? v->tso_max : VB_TSO_CAP;
	v->signal_every = cfg->signal_every ? cfg->signal_every : VB_DEFAULT_SIGNAL;
	if (v->signal_every > v->tx_depth / 2)
		v->signal_every = v->tx_depth / 2 > 0 ? v->tx_depth / 2 : 1;
	if (v->rx_batch > v->rx_depth)
		v->rx_batch = v->rx_depth;
	if ((r = setup_wake(v)) < 0)
		goto fail;
	rx_post(v, true);
	if (v->need_recover || v->posted == 0) {
		r = vb_fail(-EIO, "ibv_post_recv on the new QP of %s failed", v->dname);
		goto fail;
	}
	if ((r = setup_rules(v)) < 0)
		goto fail;
	*out = &v->nic;
	return 0;
fail:
	if (list)
		v->L->free_device_list(list);
	{
		char keep[sizeof(vb_err)];
		memcpy(keep, vb_err, sizeof(keep));
		vb_free(v);
		memcpy(vb_err, keep, sizeof(keep));
	}
	return r;
fail_nolib:
	free(v);
	return r;
}

/* --- what the kernel knows ----------------------------------------------------------- */

int xt_verbs_kernel_addr(const char *ifname, uint32_t *ip, uint32_t *netmask, uint32_t *gw)
{
	struct ifaddrs *ifa = NULL;
	FILE *f;
	char line[256];
	bool found = false;

	if (!ifname || !ip || !netmask || !gw)
		return -EINVAL;
	*ip = *netmask = *gw = 0;
	if (getifaddrs(&ifa) < 0)
		return -errno;
	for (struct ifaddrs *i = ifa; i && !found; i = i->ifa_next) {
		if (!i->ifa_addr || i->ifa_addr->sa_family != AF_INET || strcmp(i->ifa_name, ifname))
			continue;
		*ip = ntohl(((struct sockaddr_in *)i->ifa_addr)->sin_addr.s_addr);
		if (i->ifa_netmask)
			*netmask = ntohl(((struct sockaddr_in *)i->ifa_netmask)->sin_addr.s_addr);
		found = true;
	}
	freeifaddrs(ifa);
	if (!found)
		return -ENODEV;
	/* Iface Destination Gateway Flags ...: hex of the network-order value. */
	if ((f = fopen("/proc/net/route", "re"))) {
		while (fgets(line, sizeof(line), f)) {
			char name[IF_NAMESIZE + 1];
			unsigned int dst, g, flags;

			if (sscanf(line, "%16s %x %x %x", name, &dst, &g, &flags) == 4 && !strcmp(name, ifname) &&
			    dst == 0 && (flags & 0x2u)) {
				*gw = ntohl(g);
				break;
			}
		}
		fclose(f);
	}
	return 0;
}

int xt_verbs_kernel_neigh(const char *ifname, struct xt_verbs_neigh *out, int max)
{
	FILE *f;
	char line[256];
	int n = 0;

	if (!ifname || (!out && max > 0) || max < 0)
		return -EINVAL;
	if (!(f = fopen("/proc/net/arp", "re")))
		return -errno;
	/* IP address  HW type  Flags  HW address  Mask  Device */
	while (n < max && fgets(line, sizeof(line), f)) {
		char ips[32], macs[32], mask[32], dev[IF_NAMESIZE + 1];
		unsigned int hw, flags;
		struct in_addr a;

		if (sscanf(line, "%31s 0x%x 0x%x %31s %31s %16s", ips, &hw, &flags, macs, mask, dev) != 6)
			continue;
		if (strcmp(dev, ifname) || !(flags & 0x2u) || inet_pton(AF_INET, ips, &a) != 1 ||
		    parse_mac(macs, out[n].mac) < 0)
			continue;
		out[n].ip = ntohl(a.s_addr);
		n++;
	}
	fclose(f);
	return n;
}

/* --- probe --------------------------------------------------------------------------- */

static const char *const check_names[XT_VCHK_COUNT] = {
	[XT_VCHK_LIBRARY] = "libibverbs",
	[XT_VCHK_INTERFACE] = "interface",
	[XT_VCHK_DEVICE] = "RDMA device",
	[XT_VCHK_OPEN] = "device access",
	[XT_VCHK_PORT] = "port",
	[XT_VCHK_CAP_NET_RAW] = "CAP_NET_RAW",
	[XT_VCHK_MEMLOCK] = "locked memory",
	[XT_VCHK_RAW_QP] = "raw packet QP",
	[XT_VCHK_FLOW] = "flow steering",
	[XT_VCHK_DONT_TRAP] = "ARP copy rule (DONT_TRAP)",
	[XT_VCHK_CSUM] = "checksum offload",
	[XT_VCHK_TSO] = "TSO",
	[XT_VCHK_INLINE] = "inline sends",
};

const char *xt_verbs_check_name(int c)
{
	return c >= 0 && c < XT_VCHK_COUNT ? check_names[c] : "?";
}

static void pset(struct xt_verbs_probe *p, int c, int status, int err, const char *fmt, ...)
	__attribute__((format(printf, 5, 6)));
static void pset(struct xt_verbs_probe *p, int c, int status, int err, const char *fmt, ...)
{
	va_list ap;

	p->status[c] = status;
	p->err[c] = err;
	va_start(ap, fmt);
	vsnprintf(p->detail[c], sizeof(p->detail[c]), fmt, ap);
	va_end(ap);
}

/* Bytes the backend pins with its defaults at MTU 1500. */
static size_t default_pool_bytes(void)
{
	return (size_t)(VB_DEFAULT_RX_DEPTH + VB_LEND_MAX + VB_HOLD_WINDOW + VB_DEFAULT_TX_DEPTH) * 2048u +
	       VB_TSO_SLOTS * (VB_TSO_CAP + VB_TSO_HDR_MAX);
}

static void probe_memlock(struct xt_verbs_probe *p)
{
	struct rlimit rl;
	size_t need = default_pool_bytes();

	if (have_cap(CAP_IPC_LOCK))
		pset(p, XT_VCHK_MEMLOCK, XT_VCHK_OK, 0, "CAP_IPC_LOCK: no limit");
	else if (getrlimit(RLIMIT_MEMLOCK, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY && rl.rlim_cur < need)
		pset(p, XT_VCHK_MEMLOCK, XT_VCHK_FAIL, ENOMEM, "limit %llu KiB, the buffer pool needs %zu KiB",
		     (unsigned long long)rl.rlim_cur / 1024, need / 1024);
	else
		pset(p, XT_VCHK_MEMLOCK, XT_VCHK_OK, 0, "limit allows the %zu KiB pool", need / 1024);
}

/* QP creation, flow rules, inline: on a scratch PD/CQ/QP. */
static void probe_qp(const struct vb_lib *L, struct ibv_context *ctx, struct xt_verbs_probe *p, const uint8_t *mac,
		     uint8_t port, bool tso)
{
	struct ibv_pd *pd = L->alloc_pd(ctx);
	struct ibv_cq *cq = pd ? L->create_cq(ctx, 16, NULL, NULL, 0) : NULL;
	struct ibv_qp *qp = NULL;
	uint32_t inl = VB_DEFAULT_INLINE;
	int sd = 0, e;

	if (!pd || !cq) {
		pset(p, XT_VCHK_RAW_QP, XT_VCHK_FAIL, errno ? errno : ENOMEM, "PD/CQ creation failed: %s",
		     strerror(errno ? errno : ENOMEM));
		goto out;
	}
	errno = 0;
	qp = create_qp(L, ctx, pd, cq, cq, 16, 16, &inl, tso, &sd, 1);
	if (!qp && tso) {
		p->tso_max = 0;
		inl = VB_DEFAULT_INLINE;
		qp = create_qp(L, ctx, pd, cq, cq, 16, 16, &inl, false, &sd, 1);
	}
	if (!qp && errno == EINVAL) {
		inl = 0;
		qp = create_qp(L, ctx, pd, cq, cq, 16, 16, &inl, false, &sd, 1);
	}
	if (!qp) {
		e = errno ? errno : EIO;
		qp_error_message(e, p->device);
		pset(p, XT_VCHK_RAW_QP, XT_VCHK_FAIL, e == EACCES ? EPERM : e, "%s", vb_err);
		goto out;
	}
	if ((e = qp_to_rts(L, qp, port))) {
		pset(p, XT_VCHK_RAW_QP, XT_VCHK_FAIL, e, "created, but RESET->INIT->RTR->RTS failed: %s", strerror(e));
		goto out;
	}
	pset(p, XT_VCHK_RAW_QP, XT_VCHK_OK, 0, "created and brought to RTS (QP %u)", qp->qp_num);
	p->inline_max = inl;
	if (inl >= 64)
		pset(p, XT_VCHK_INLINE, XT_VCHK_OK, 0, "up to %u bytes", inl);
	else
		pset(p, XT_VCHK_INLINE, XT_VCHK_WARN, 0, "%s", inl ? "fewer than 64 bytes: ACKs are copied"
								    : "none: every frame is copied to the pool");
	/* A rule for traffic that cannot exist (TEST-NET-1, port 9), removed at once. */
	{
		struct vb_rule r;
		struct ibv_flow *f;

		rule_build(&r, port, PRIO_LISTEN, 0, mac, 0, 0, 0xc0000201u, 0, 0, 9);
		errno = 0;
		f = ibv_create_flow(qp, &r.attr);
		if (!f) {
			e = errno ? errno : EOPNOTSUPP;
			pset(p, XT_VCHK_FLOW, XT_VCHK_FAIL, e, "ibv_create_flow: %s", strerror(e));
		} else {
			pset(p, XT_VCHK_FLOW, XT_VCHK_OK, 0, "listen/connection rules can be created");
			(void)ibv_destroy_flow(f);
		}
		/* A copy rule on an experimental ethertype (IEEE 802 local). */
		rule_build(&r, port, PRIO_COPY, IBV_FLOW_ATTR_FLAGS_DONT_TRAP, NULL, 0x88b5, 0, 0, 0, 0, 0);
		errno = 0;
		f = ibv_create_flow(qp, &r.attr);
		if (!f) {
			e = errno ? errno : EOPNOTSUPP;
			pset(p, XT_VCHK_DONT_TRAP, XT_VCHK_WARN, e, "refused (%s): ARP stays with the kernel only",
			     strerror(e));
		} else {
			pset(p, XT_VCHK_DONT_TRAP, XT_VCHK_OK, 0, "ARP frames can be shared with the kernel");
			(void)ibv_destroy_flow(f);
		}
	}
out:
	if (qp)
		L->destroy_qp(qp);
	if (cq)
		L->destroy_cq(cq);
	if (pd)
		L->dealloc_pd(pd);
}

int xt_verbs_probe(const char *ifname, const char *lib, struct xt_verbs_probe *p)
{
	const struct vb_lib *L = NULL;
	struct ibv_device **list = NULL;
	struct ibv_context *ctx = NULL;
	struct vb_found found;
	struct vb_devcaps dc;
	struct ibv_port_attr pa;
	uint8_t mac[6] = { 0 };
	char path[IBV_SYSFS_PATH_MAX + 80], buf[128];
	int r, n = 0, nfail = 0;

	if (!p)
		return -EINVAL;
	memset(p, 0, sizeof(*p));
	snprintf(p->lib, sizeof(p->lib), "%s", lib_path(lib));
	if (have_cap(CAP_NET_RAW))
		pset(p, XT_VCHK_CAP_NET_RAW, XT_VCHK_OK, 0, "effective");
	else
		pset(p, XT_VCHK_CAP_NET_RAW, XT_VCHK_FAIL, EPERM, "missing: raw packet QPs and flow rules need it");
	probe_memlock(p);
	if (!ifname || !*ifname || strlen(ifname) >= IF_NAMESIZE) {
		pset(p, XT_VCHK_INTERFACE, XT_VCHK_FAIL, EINVAL, "no interface name given");
		goto done;
	}
	if (if_nametoindex(ifname))
		pset(p, XT_VCHK_INTERFACE, XT_VCHK_OK, 0, "%s exists", ifname);
	if ((r = vb_load(lib, &L)) < 0) {
		pset(p, XT_VCHK_LIBRARY, XT_VCHK_FAIL, -r, "%s", vb_err);
		if (!p->status[XT_VCHK_INTERFACE])
			pset(p, XT_VCHK_INTERFACE, XT_VCHK_FAIL, ENODEV, "no interface %s in this network namespace", ifname);
		goto done;
	}
	pset(p, XT_VCHK_LIBRARY, XT_VCHK_OK, 0, "%s (all %zu symbols at their versions)", p->lib,
	     sizeof(vb_syms) / sizeof(vb_syms[0]));
	errno = 0;
	list = L->get_device_list(&n);
	if (!list || n <= 0) {
		pset(p, XT_VCHK_DEVICE, XT_VCHK_FAIL, ENODEV, "no RDMA devices on this host");
		if (!p->status[XT_VCHK_INTERFACE])
			pset(p, XT_VCHK_INTERFACE, XT_VCHK_FAIL, ENODEV, "no interface %s in this network namespace", ifname);
		goto done;
	}
	if ((r = find_device(L, ifname, list, n, &found)) < 0) {
		if (!found.if_exists && !p->status[XT_VCHK_INTERFACE]) {
			pset(p, XT_VCHK_INTERFACE, XT_VCHK_FAIL, ENODEV, "%s", vb_err);
		} else {
			pset(p, XT_VCHK_DEVICE, XT_VCHK_FAIL, ENODEV, "%s", vb_err);
		}
		goto done;
	}
	if (!p->status[XT_VCHK_INTERFACE])
		pset(p, XT_VCHK_INTERFACE, XT_VCHK_OK, 0, "%s (known from %s's sysfs entry)", ifname, found.dev->ibdev_path);
	snprintf(p->device, sizeof(p->device), "%s", dev_name(L, found.dev));
	snprintf(path, sizeof(path), "%s/device/driver", found.dev->ibdev_path);
	{
		ssize_t k = readlink(path, buf, sizeof(buf) - 1);
		if (k > 0) {
			buf[k] = '\0';
			snprintf(p->driver, sizeof(p->driver), "%.63s", strrchr(buf, '/') ? strrchr(buf, '/') + 1 : buf);
		}
	}
	pset(p, XT_VCHK_DEVICE, XT_VCHK_OK, 0, "%s%s%s%s", p->device, p->driver[0] ? " (driver " : "", p->driver,
	     p->driver[0] ? ")" : "");
	errno = 0;
	ctx = L->open_device(found.dev);
	if (!ctx) {
		int e = errno ? errno : EIO;
		pset(p, XT_VCHK_OPEN, XT_VCHK_FAIL, e, "cannot open %s: %s", p->device, strerror(e));
		goto done;
	}
	pset(p, XT_VCHK_OPEN, XT_VCHK_OK, 0, "opened %s", p->device);
	query_caps(L, ctx, &dc);
	p->port = (uint8_t)pick_port(&found, ifname, dc.ex.orig_attr.phys_port_cnt ? dc.ex.orig_attr.phys_port_cnt : 1);
	r = check_port(L, ctx, p->device, p->port, ifname, &pa);
	if (r < 0)
		pset(p, XT_VCHK_PORT, XT_VCHK_FAIL, -r, "%s", vb_err);
	else
		pset(p, XT_VCHK_PORT, XT_VCHK_OK, 0, "port %u ACTIVE, Ethernet", p->port);
	{
		long mtu;
		snprintf(path, sizeof(path), "%s/address", found.netdir);
		if (netdev_query(ifname, mac, &mtu) < 0 && read_line(path, buf, sizeof(buf)) == 0)
			(void)parse_mac(buf, mac);
	}
	if (dc.csum)
		pset(p, XT_VCHK_CSUM, XT_VCHK_OK, 0, "IPv4/TCP checksums in hardware (send and receive)");
	else
		pset(p, XT_VCHK_CSUM, XT_VCHK_WARN, 0, "none: checksums are computed in software");
	p->tso_max = dc.tso_max;
	if (dc.tso_max)
		pset(p, XT_VCHK_TSO, XT_VCHK_OK, 0, "up to %u bytes per send", dc.tso_max);
	else
		pset(p, XT_VCHK_TSO, XT_VCHK_WARN, 0, "none: large sends are cut by the engine");
	if (r == 0 || r == -ENETDOWN)
		probe_qp(L, ctx, p, mac, p->port, dc.tso_max > 0);
done:
	if (ctx)
		L->close_device(ctx);
	if (list)
		L->free_device_list(list);
	for (int i = 0; i < XT_VCHK_COUNT; i++)
		if (p->status[i] == XT_VCHK_FAIL)
			nfail++;
	return nfail;
}
