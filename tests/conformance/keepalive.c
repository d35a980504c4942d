/* Keepalive detects a vanished peer.  Directional: the subject sets
 * SO_KEEPALIVE with TCP_KEEPIDLE 1, TCP_KEEPINTVL 1, TCP_KEEPCNT 3.
 *  1  the peer is there and idle for 3 s: the probes are answered, the
 *     subject's recv (SO_RCVTIMEO 3 s) times out with EAGAIN and the peer
 *     (a kernel socket) saw at least two probes (tcpi_segs_in).
 *  2  the peer vanishes: it takes its own interface down (ioctl
 *     SIOCSIFFLAGS in its namespace; its veth peer loses carrier too).  The
 *     subject's blocking recv fails with ETIMEDOUT within
 *     KEEPIDLE + KEEPINTVL x KEEPCNT = 4 s (accepted: 2-8 s after the
 *     vanishing); then recv 0, send EPIPE. */
#include "common.h"
#include <ifaddrs.h>
#include <net/if.h>

static int segs_in(int fd)
{
	struct tcp_info ti;
	socklen_t tl = sizeof ti;
	memset(&ti, 0, sizeof ti);
	if (getsockopt(fd, IPPROTO_TCP, TCP_INFO, &ti, &tl) < 0)
		return -1;
	return (int)ti.tcpi_segs_in;
}

/* Takes down the interface that holds fd's local address. */
static int vanish(int fd)
{
	struct sockaddr_in me;
	socklen_t ml = sizeof me;
	if (getsockname(fd, (struct sockaddr *)&me, &ml) < 0)
		return -errno;
	struct ifaddrs *ifs, *i;
	if (getifaddrs(&ifs) < 0)
		return -errno;
	char name[IF_NAMESIZE] = "";
	for (i = ifs; i; i = i->ifa_next)
		if (i->ifa_addr && i->ifa_addr->sa_family == AF_INET &&
		    ((struct sockaddr_in *)i->ifa_addr)->sin_addr.s_addr == me.sin_addr.s_addr)
			snprintf(name, sizeof name, "%s", i->ifa_name);
	freeifaddrs(ifs);
	if (!name[0])
		return -ENODEV;
	int s = socket(AF_INET, SOCK_DGRAM, 0);
	struct ifreq ifr;
	memset(&ifr, 0, sizeof ifr);
	snprintf(ifr.ifr_name, sizeof ifr.ifr_name, "%s", name);
	if (ioctl(s, SIOCGIFFLAGS, &ifr) < 0)
		return -errno;
	ifr.ifr_flags &= ~IFF_UP;
	int r = ioctl(s, SIOCSIFFLAGS, &ifr);
	close(s);
	return r < 0 ? -errno : 0;
}

int main(int argc, char **argv)
{
	conf_init(argc, argv, 40);
	char buf[64];
	if (C.server)
		conf_listen(8);
	int fd = conf_pair();
	if (C.subject) {
		step("1");
		say("SO_KEEPALIVE 1: %s", res(set_int(fd, SOL_SOCKET, SO_KEEPALIVE, 1)));
		say("TCP_KEEPIDLE 1: %s", res(set_int(fd, IPPROTO_TCP, TCP_KEEPIDLE, 1)));
		say("TCP_KEEPINTVL 1: %s", res(set_int(fd, IPPROTO_TCP, TCP_KEEPINTVL, 1)));
		say("TCP_KEEPCNT 3: %s", res(set_int(fd, IPPROTO_TCP, TCP_KEEPCNT, 3)));
		say("read back: SO_KEEPALIVE %d KEEPIDLE %d KEEPINTVL %d KEEPCNT %d", get_int(fd, SOL_SOCKET, SO_KEEPALIVE),
		    get_int(fd, IPPROTO_TCP, TCP_KEEPIDLE), get_int(fd, IPPROTO_TCP, TCP_KEEPINTVL),
		    get_int(fd, IPPROTO_TCP, TCP_KEEPCNT));
		say("TCP_KEEPIDLE 0: %s", res(set_int(fd, IPPROTO_TCP, TCP_KEEPIDLE, 0)));
		say("TCP_KEEPCNT 0: %s", res(set_int(fd, IPPROTO_TCP, TCP_KEEPCNT, 0)));
		sync_post("1-set");
		struct timeval tv = { 3, 0 };
		setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
		say("1 recv, peer idle, 3 s: %s", res(recv(fd, buf, sizeof buf, 0)));
		sync_post("1-idle-done");
		step("2");
		sync_wait("2-gone");
		tv.tv_sec = 12;
		setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
		double t0 = now_s();
		ssize_t n = recv(fd, buf, sizeof buf, 0);
		double dt = now_s() - t0;
		say("2 recv after the peer vanished: %s, within 2-8 s: %s", res(n), YN(dt >= 2.0 && dt < 8.0));
		say("2 recv: %s", res(recv(fd, buf, sizeof buf, 0)));
		say("2 send: %s", send_sig(fd, "x", 1, 0));
		sync_post("end");
	} else {
		step("1");
		sync_wait("1-set");
		int s0 = segs_in(fd);
		sync_wait("1-idle-done");
		int s1 = segs_in(fd);
		say("1 peer: keepalive probes seen while idle: at least 2: %s", YN(s1 - s0 >= 2));
		step("2");
		int r = vanish(fd);
		say("2 peer: own interface down: %s", r < 0 ? ename(-r) : "0");
		sync_post("2-gone");
		sync_wait("end");
	}
	close(fd);
	if (C.server)
		close(C.lfd);
	return 0;
}
