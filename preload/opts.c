/* Socket options, fcntl and ioctl on our sockets.
 *
 * Every setsockopt goes to the socket's own kernel fd first: the kernel
 * checks the arguments (EFAULT, EINVAL, EDOM, ENOPROTOOPT: Linux's errno for
 * free), keeps the value that getsockopt reports (SO_RCVBUF doubled and
 * clamped as Linux does), and a later hand-off to the kernel finds the
 * socket as configured.  Options the engine implements are then applied to
 * the engine socket (or remembered until it exists).  Options the engine
 * cannot honour hand an undecided socket to the kernel, and fail with
 * ENOPROTOOPT on a socket that already carries engine traffic.  The rest
 * (IP_TOS, SO_PRIORITY, ...) are accepted and reported without effect on
 * engine traffic.  The table is in man/libxtcp.7.
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <linux/sockios.h>
#include <net/if.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/time.h>
#include <unistd.h>

#include "shim.h"

#ifndef SO_RCVTIMEO_OLD
#define SO_RCVTIMEO_OLD 20
#define SO_SNDTIMEO_OLD 21
#endif
#ifndef SO_RCVTIMEO_NEW
#define SO_RCVTIMEO_NEW 66
#define SO_SNDTIMEO_NEW 67
#endif
#ifndef TCP_ULP
#define TCP_ULP 31
#endif
#ifndef TCP_INQ
#define TCP_INQ 36
#endif
#ifndef TCP_ZEROCOPY_RECEIVE
#define TCP_ZEROCOPY_RECEIVE 35
#endif
#ifndef TCP_FASTOPEN_CONNECT
#define TCP_FASTOPEN_CONNECT 30
#endif
#ifndef TCP_REPAIR
#define TCP_REPAIR 19
#endif
#ifndef SO_PEEK_OFF
#define SO_PEEK_OFF 42
#endif
#ifndef SO_ZEROCOPY
#define SO_ZEROCOPY 60
#endif
#ifndef SIOCOUTQNSENT
#define SIOCOUTQNSENT 0x894B
#endif

enum cls {
	C_PASS,    /* kernel fd only; accepted, no effect on engine traffic */
	C_ENGINE,  /* kernel fd, then the engine */
	C_KERNEL,  /* the engine cannot do it: hand off, or ENOPROTOOPT */
};

struct optmap {
	int level, name;
	enum cls cls;
	int xt; /* enum xt_opt for C_ENGINE */
};

static const struct optmap optmap[] = {
	{ SOL_SOCKET, SO_REUSEADDR, C_ENGINE, XT_SO_REUSEADDR },
	{ SOL_SOCKET, SO_REUSEPORT, C_ENGINE, XT_SO_REUSEPORT },
	{ SOL_SOCKET, SO_KEEPALIVE, C_ENGINE, XT_SO_KEEPALIVE },
	{ SOL_SOCKET, SO_RCVBUF, C_ENGINE, XT_SO_RCVBUF },
	{ SOL_SOCKET, SO_RCVBUFFORCE, C_ENGINE, XT_SO_RCVBUF },
	{ SOL_SOCKET, SO_SNDBUF, C_ENGINE, XT_SO_SNDBUF },
	{ SOL_SOCKET, SO_SNDBUFFORCE, C_ENGINE, XT_SO_SNDBUF },
	{ SOL_SOCKET, SO_RCVLOWAT, C_ENGINE, XT_SO_RCVLOWAT },
	{ SOL_SOCKET, SO_LINGER, C_ENGINE, XT_SO_LINGER },
	{ IPPROTO_TCP, TCP_NODELAY, C_ENGINE, XT_TCP_NODELAY },
	{ IPPROTO_TCP, TCP_CORK, C_ENGINE, XT_TCP_CORK },
	{ IPPROTO_TCP, TCP_KEEPIDLE, C_ENGINE, XT_TCP_KEEPIDLE },
	{ IPPROTO_TCP, TCP_KEEPINTVL, C_ENGINE, XT_TCP_KEEPINTVL },
	{ IPPROTO_TCP, TCP_KEEPCNT, C_ENGINE, XT_TCP_KEEPCNT },
	{ IPPROTO_TCP, TCP_MAXSEG, C_ENGINE, XT_TCP_MAXSEG },
	{ IPPROTO_TCP, TCP_QUICKACK, C_ENGINE, XT_TCP_QUICKACK },
	{ IPPROTO_TCP, TCP_USER_TIMEOUT, C_ENGINE, XT_TCP_USER_TIMEOUT },
	{ IPPROTO_TCP, TCP_DEFER_ACCEPT, C_ENGINE, XT_TCP_DEFER_ACCEPT },
	/* the engine cannot do these */
	{ SOL_SOCKET, SO_ATTACH_FILTER, C_KERNEL, 0 },
	{ SOL_SOCKET, SO_ATTACH_BPF, C_KERNEL, 0 },
	{ SOL_SOCKET, SO_ATTACH_REUSEPORT_CBPF, C_KERNEL, 0 },
	{ SOL_SOCKET, SO_ATTACH_REUSEPORT_EBPF, C_KERNEL, 0 },
	{ SOL_SOCKET, SO_TIMESTAMP, C_KERNEL, 0 },
	{ SOL_SOCKET, SO_TIMESTAMPNS, C_KERNEL, 0 },
	{ SOL_SOCKET, SO_TIMESTAMPING, C_KERNEL, 0 },
	{ SOL_SOCKET, SO_PEEK_OFF, C_KERNEL, 0 },
	{ SOL_SOCKET, SO_ZEROCOPY, C_KERNEL, 0 },
	{ SOL_SOCKET, SO_OOBINLINE, C_KERNEL, 0 },
	{ IPPROTO_TCP, TCP_ULP, C_KERNEL, 0 },
	{ IPPROTO_TCP, TCP_MD5SIG, C_KERNEL, 0 },
	{ IPPROTO_TCP, TCP_MD5SIG_EXT, C_KERNEL, 0 },
	{ IPPROTO_TCP, TCP_REPAIR, C_KERNEL, 0 },
	{ IPPROTO_TCP, TCP_REPAIR_QUEUE, C_KERNEL, 0 },
	{ IPPROTO_TCP, TCP_REPAIR_OPTIONS, C_KERNEL, 0 },
	{ IPPROTO_TCP, TCP_REPAIR_WINDOW, C_KERNEL, 0 },
	{ IPPROTO_TCP, TCP_QUEUE_SEQ, C_KERNEL, 0 },
	{ IPPROTO_TCP, TCP_INQ, C_KERNEL, 0 },
	{ IPPROTO_TCP, TCP_FASTOPEN_CONNECT, C_KERNEL, 0 },
	{ IPPROTO_TCP, TCP_SAVE_SYN, C_KERNEL, 0 },
	{ IPPROTO_IP, IP_TRANSPARENT, C_KERNEL, 0 },
	{ IPPROTO_IP, IP_FREEBIND, C_KERNEL, 0 },
	{ IPPROTO_IP, IP_OPTIONS, C_KERNEL, 0 },
};

static const struct optmap *find_opt(int level, int name)
{
	for (size_t i = 0; i < sizeof(optmap) / sizeof(optmap[0]); i++)
		if (optmap[i].level == level && optmap[i].name == name)
			return &optmap[i];
	return NULL;
}

/* Engine lock held. */
static int engine_set(struct xp_sock *s, int xt, int val)
{
	s->eopt[xt] = val;
	s->eopt_set |= 1u << xt;
	if (s->esock < 0)
		return 0;
	return xt_tcp_setopt(xp_eng.st, s->esock, xt, val, xp_clock());
}

void xp_opts_apply_engine(struct xp_sock *s)
{
	for (int i = 0; i < XT_OPT_MAX; i++)
		if (s->eopt_set & (1u << i))
			(void)xt_tcp_setopt(xp_eng.st, s->esock, i, s->eopt[i], xp_clock());
}

/* The record of level/name, or s->nopt if there is none. */
static int find_rec(const struct xp_sock *s, int level, int name)
{
	int i;
	for (i = 0; i < s->nopt; i++)
		if (s->opt[i].level == level && s->opt[i].name == name)
			break;
	return i;
}

static void record(struct xp_sock *s, int level, int name, const void *val, socklen_t len)
{
	if (len > XP_OPTVAL_MAX)
		return;
	int i = find_rec(s, level, name);
	if (i == s->nopt) {
		if (s->nopt == XP_OPTREC_MAX)
			return;
		s->nopt++;
	}
	s->opt[i].level = level;
	s->opt[i].name = name;
	s->opt[i].len = len;
	memcpy(s->opt[i].val, val, len);
}

void xp_opts_replay(const struct xp_sock *from, int kfd)
{
	for (int i = 0; i < from->nopt; i++) {
		const struct xp_optrec *o = &from->opt[i];
		if (o->level == IPPROTO_TCP && o->name == TCP_DEFER_ACCEPT)
			continue; /* a listener's option */
		(void)xp_real.setsockopt(kfd, o->level, o->name, o->val, o->len);
	}
}

static bool can_handoff(const struct xp_sock *s)
{
	int mode = atomic_load(&s->mode);
	if (mode == XP_UNDECIDED)
		return true;
	return mode == XP_ENGINE && !s->listening && s->ss == XP_SS_UNCONNECTED && (!s->bound || s->bound_any);
}

static uint64_t timeo_of(int fd, int name)
{
	struct timeval tv;
	socklen_t l = sizeof(tv);
	if (xp_real.getsockopt(fd, SOL_SOCKET, name, &tv, &l) < 0)
		return 0;
	return (uint64_t)tv.tv_sec * 1000000000ull + (uint64_t)tv.tv_usec * 1000ull;
}

/* Options set on an engine socket without the kernel: TCP_NODELAY and
 * TCP_CORK (nginx with tcp_nopush sets and clears TCP_CORK around every
 * response: the placeholder's copy cost two system calls per request), and
 * SO_KEEPALIVE, TCP_KEEPIDLE, TCP_KEEPINTVL, TCP_KEEPCNT (redis sets all
 * four on every connection it accepts: a kernel copy would give the
 * placeholder a socket of its own, five system calls more).  Linux's checks
 * are only these (sk_setsockopt, do_tcp_setsockopt: EINVAL for a length
 * under an int, EFAULT, EINVAL outside 1..32767 for the two intervals and
 * 1..127 for the count); getsockopt answers them from the engine or the
 * record, and a hand-off replays them from the record. */
static bool is_fast_opt(int level, int name)
{
	if (level == SOL_SOCKET)
		return name == SO_KEEPALIVE;
	return level == IPPROTO_TCP && (name == TCP_NODELAY || name == TCP_CORK || name == TCP_KEEPIDLE ||
					name == TCP_KEEPINTVL || name == TCP_KEEPCNT);
}

static bool fast_opt(struct xp_sock *s, int level, int name, const void *val, socklen_t len, int *r)
{
	if (!is_fast_opt(level, name) || atomic_load(&s->mode) != XP_ENGINE)
		return false;
	int ival;
	if (len < sizeof(int)) {
		*r = -EINVAL;
		return true;
	}
	if (xp_copy_in(&ival, val, sizeof(ival)) < 0) {
		*r = -EFAULT;
		return true;
	}
	int max = name == TCP_KEEPCNT ? 127 : 32767;
	if (level == IPPROTO_TCP && (name == TCP_KEEPIDLE || name == TCP_KEEPINTVL || name == TCP_KEEPCNT) &&
	    (ival < 1 || ival > max)) {
		*r = -EINVAL;
		return true;
	}
	if (level == SOL_SOCKET)
		ival = ival != 0; /* SO_KEEPALIVE reads back 0 or 1 */
	xp_lock();
	if (atomic_load(&s->mode) != XP_ENGINE) {
		xp_unlock();
		return false; /* handed to the kernel meanwhile: the slow path */
	}
	*r = engine_set(s, find_opt(level, name)->xt, ival);
	if (*r == 0)
		record(s, level, name, &ival, sizeof(ival));
	xp_unlock_lazy(); /* TCP_CORK off, TCP_NODELAY on: what they push joins the round */
	return true;
}

int xp_setsockopt(int fd, struct xp_sock *s, int level, int name, const void *val, socklen_t len)
{
	int fr;
	if (fast_opt(s, level, name, val, len, &fr))
		return fr;
	if ((fr = xp_ph_own(fd, s)) < 0)
		return fr;
	if (xp_real.setsockopt(fd, level, name, val, len) < 0)
		return -errno;
	/* the kernel read the value: it is readable */
	uint8_t v[XP_OPTVAL_MAX] = { 0 };
	socklen_t vl = len < sizeof(v) ? len : sizeof(v);
	if (vl && xp_copy_in(v, val, vl) < 0)
		return -EFAULT;
	int ival = 0;
	if (vl >= sizeof(int))
		memcpy(&ival, v, sizeof(int));
	else if (vl > 0)
		ival = v[0];

	const struct optmap *m = find_opt(level, name);
	int r = 0;
	xp_lock();
	if (atomic_load(&s->mode) == XP_KERNEL) {
		xp_unlock();
		return 0;
	}
	if (level == SOL_SOCKET && (name == SO_RCVTIMEO_OLD || name == SO_RCVTIMEO_NEW)) {
		s->rcvtimeo_ns = timeo_of(fd, SO_RCVTIMEO_OLD);
	} else if (level == SOL_SOCKET && (name == SO_SNDTIMEO_OLD || name == SO_SNDTIMEO_NEW)) {
		s->sndtimeo_ns = timeo_of(fd, SO_SNDTIMEO_OLD);
	} else if (level == SOL_SOCKET && name == SO_BINDTODEVICE) {
		char dev[IFNAMSIZ] = { 0 };
		memcpy(dev, v, vl < IFNAMSIZ - 1 ? vl : IFNAMSIZ - 1);
		if (dev[0] && strcmp(dev, xp_cfg.iface) != 0) {
			if (can_handoff(s))
				xp_handoff(s, "SO_BINDTODEVICE to another interface");
			else
				XP_LOG(XP_LOG_WARN, "fd %d: SO_BINDTODEVICE %s on a socket already on the engine "
						    "(%s): no effect", fd, dev, xp_cfg.iface);
		}
	} else if (level == IPPROTO_TCP && name == TCP_CONGESTION) {
		char cc[16] = { 0 };
		memcpy(cc, v, vl < sizeof(cc) - 1 ? vl : sizeof(cc) - 1);
		int which = xt_cc_by_name(cc);
		if (which >= 0) {
			memcpy(s->cc_name, cc, sizeof(cc));
			r = engine_set(s, XT_TCP_CONGESTION, which);
		} else if (can_handoff(s)) {
			xp_handoff(s, "TCP_CONGESTION other than reno/cubic");
		} else {
			r = -ENOENT;
		}
	} else if (m && m->cls == C_ENGINE) {
		if (m->xt == XT_SO_LINGER) {
			struct linger lg;
			memcpy(&lg, v, sizeof(lg) <= vl ? sizeof(lg) : vl);
			s->linger = lg.l_onoff ? lg.l_linger : -1;
			ival = s->linger;
		}
		r = engine_set(s, m->xt, ival);
	} else if (m && m->cls == C_KERNEL) {
		bool on = ival != 0 || vl > sizeof(int);
		if (!on && !(level == SOL_SOCKET && (name == SO_ATTACH_FILTER || name == SO_ATTACH_BPF))) {
			/* switching off something the engine never does */
		} else if (can_handoff(s)) {
			xp_handoff(s, "an option the engine does not implement");
		} else {
			XP_LOG(XP_LOG_INFO, "fd %d: option %d/%d is not available on an engine socket", fd,
			       level, name);
			r = -ENOPROTOOPT;
		}
	}
	if (r == 0 && atomic_load(&s->mode) != XP_KERNEL)
		record(s, level, name, v, vl);
	xp_unlock_lazy();
	return r;
}

static void put_int(void *val, socklen_t *len, int x)
{
	/* the kernel has just written min(len, 4) bytes there: writable */
	socklen_t l = *len;
	if (l > sizeof(int))
		l = sizeof(int);
	memcpy(val, &x, l);
}

int xp_getsockopt(int fd, struct xp_sock *s, int level, int name, void *val, socklen_t *len)
{
	if (xp_real.getsockopt(fd, level, name, val, len) < 0)
		return -errno;
	if (atomic_load(&s->mode) != XP_ENGINE)
		return 0;
	int r = 0, x = 0;
	if (level == SOL_SOCKET && name == SO_ERROR) {
		xp_lock();
		if (s->esock >= 0)
			xt_tcp_getopt(xp_eng.st, s->esock, XT_SO_ERROR, &x);
		xp_unlock_lazy();
		put_int(val, len, x);
	} else if (level == SOL_SOCKET && name == SO_ACCEPTCONN) {
		xp_lock();
		x = s->esock >= 0 && xt_tcp_state(xp_eng.st, s->esock) == XT_LISTEN;
		xp_unlock_lazy();
		put_int(val, len, x);
	} else if (level == IPPROTO_TCP && (name == TCP_NODELAY || name == TCP_CORK)) {
		int xt = find_opt(level, name)->xt; /* set on the engine only (fast_opt) */
		xp_lock();
		x = (s->eopt_set >> xt) & 1u ? s->eopt[xt] != 0 : 0;
		if (s->esock >= 0)
			xt_tcp_getopt(xp_eng.st, s->esock, xt, &x);
		xp_unlock_lazy();
		put_int(val, len, x);
	} else if ((level == SOL_SOCKET && name == SO_KEEPALIVE) ||
		   (level == IPPROTO_TCP && (name == TCP_KEEPIDLE || name == TCP_KEEPINTVL || name == TCP_KEEPCNT))) {
		/* set without the kernel (fast_opt), or inherited from the
		 * listener as Linux children inherit them: the record's value;
		 * none: the kernel's default, read above */
		xp_lock();
		int i = find_rec(s, level, name);
		if (i < s->nopt && s->opt[i].len >= sizeof(int)) {
			memcpy(&x, s->opt[i].val, sizeof(int));
			put_int(val, len, level == SOL_SOCKET ? x != 0 : x);
		}
		xp_unlock_lazy();
	} else if (level == IPPROTO_TCP && (name == TCP_MAXSEG || name == TCP_QUICKACK)) {
		/* the connection's own: TCP_QUICKACK reads back interactive mode */
		xp_lock();
		if (s->esock >= 0 && xt_tcp_getopt(xp_eng.st, s->esock, find_opt(level, name)->xt, &x) == 0)
			put_int(val, len, x);
		xp_unlock_lazy();
	} else if (level == IPPROTO_TCP && name == TCP_INFO) {
		r = xp_tcp_info(fd, s, val, len);
	} else if (level == IPPROTO_TCP && name == TCP_CONGESTION) {
		char cc[16] = { 0 };
		xp_lock();
		if (s->esock >= 0 && xt_tcp_getopt(xp_eng.st, s->esock, XT_TCP_CONGESTION, &x) == 0 &&
		    xt_cc_name(x))
			snprintf(cc, sizeof(cc), "%s", xt_cc_name(x));
		xp_unlock_lazy();
		if (cc[0]) {
			socklen_t l = *len < sizeof(cc) ? *len : sizeof(cc);
			memcpy(val, cc, l);
		}
	}
	return r;
}

/* A listener a fork family shares has one open file description and one
 * kernel socket in every member: O_NONBLOCK or SO_RCVTIMEO set by another
 * process applies here too, as on Linux, and the kernel's copies are the
 * truth (every change passes through to them).  accept() reads them again
 * (one system call, two before a wait) before it decides between EAGAIN and
 * sleeping. */
void xp_refresh_shared(int fd, struct xp_sock *s)
{
	int fl = xp_real.fcntl(fd, F_GETFL);
	if (fl >= 0)
		atomic_store(&s->nonblock, (fl & O_NONBLOCK) != 0);
	if (!atomic_load(&s->nonblock)) /* a wait follows: its timeout */
		s->rcvtimeo_ns = timeo_of(fd, SO_RCVTIMEO_OLD);
}

/* F_SETFL's changeable flags other than O_NONBLOCK (Linux SETFL_MASK). */
#define SETFL_OTHER (O_APPEND | O_ASYNC | O_DIRECT | O_NOATIME)

int xp_fcntl(int fd, struct xp_sock *s, int cmd, long arg, bool is64)
{
	int r;
	if (cmd == F_SETFL && !(arg & SETFL_OTHER) && (r = xp_ph_setnb(fd, s, (arg & O_NONBLOCK) != 0)) <= 0)
		return r; /* O_NONBLOCK only: the other template (or its failure) */
	if (cmd != F_GETFL && cmd != F_GETFD && cmd != F_SETFD && (r = xp_ph_own(fd, s)) < 0)
		return r;
	r = is64 ? xp_real.fcntl64(fd, cmd, arg) : xp_real.fcntl(fd, cmd, arg);
	if (r < 0)
		return -errno;
	switch (cmd) {
	case F_DUPFD:
	case F_DUPFD_CLOEXEC:
		xp_dup_install(fd, r);
		break;
	case F_SETFL:
		atomic_store(&s->nonblock, (arg & O_NONBLOCK) != 0);
		break;
	case F_SETOWN:
	case F_SETOWN_EX:
	case F_SETSIG:
		if (atomic_load(&s->mode) == XP_ENGINE)
			XP_LOG(XP_LOG_INFO, "fd %d: SIGIO/SIGURG (fcntl %d) is not raised for engine sockets",
			       fd, cmd);
		break;
	default:
		break;
	}
	return r;
}

static int put_user_int(void *arg, int v)
{
	if (xp_check_write(arg, sizeof(int)) < 0)
		return -EFAULT;
	memcpy(arg, &v, sizeof(int));
	return 0;
}

int xp_ioctl(int fd, struct xp_sock *s, unsigned long req, void *arg)
{
	long v;
	switch (req) {
	case FIONBIO: {
		int on, r;
		if (xp_copy_in(&on, arg, sizeof(on)) < 0)
			return -EFAULT;
		if ((r = xp_ph_setnb(fd, s, on != 0)) <= 0)
			return r; /* the other template (or its failure) */
		if (xp_real.ioctl(fd, req, arg) < 0)
			return -errno;
		int fl = xp_real.fcntl(fd, F_GETFL);
		if (fl >= 0)
			atomic_store(&s->nonblock, (fl & O_NONBLOCK) != 0);
		return 0;
	}
	case FIONREAD: /* == SIOCINQ */
	case SIOCOUTQ: /* == TIOCOUTQ */
	case SIOCOUTQNSENT:
		break;
	default: {
		int r = xp_ph_own(fd, s);
		if (r < 0)
			return r;
		return xp_real.ioctl(fd, req, arg) < 0 ? -errno : 0;
	}
	}
	if (atomic_load(&s->mode) != XP_ENGINE)
		return xp_real.ioctl(fd, req, arg) < 0 ? -errno : 0;
	xp_lock();
	if (s->esock < 0) {
		v = 0;
	} else if (req == FIONREAD) {
		v = xt_tcp_inq(xp_eng.st, s->esock);
		int st = xt_tcp_state(xp_eng.st, s->esock);
		if (v >= 0 && (st == XT_SYN_SENT || st == XT_SYN_RECV))
			v = 0;
	} else if (req == SIOCOUTQ) {
		v = xt_tcp_outq(xp_eng.st, s->esock);
	} else {
		struct xt_tcp_info ti;
		v = xt_tcp_state(xp_eng.st, s->esock) == XT_LISTEN ? -EINVAL
			: xt_tcp_info(xp_eng.st, s->esock, &ti, xp_clock()) < 0 ? 0 : (long)ti.notsent_bytes;
	}
	xp_unlock_lazy();
	if (v < 0)
		return (int)v;
	return put_user_int(arg, (int)v);
}
