/* getsockname / getpeername.  The server binds the wildcard address on PORT.
 * The ends exchange what they see over the connection (12 bytes each: own
 * address:port, peer address:port) and check the other's view against their
 * own, so nothing that varies is printed:
 *   server: listener 0.0.0.0:PORT; accept()'s address == getpeername; the
 *   client's local == the server's peer; the server's local == the client's
 *   peer (a specific address, not 0.0.0.0); the client's local address is
 *   its own (LOCAL) and its port is ephemeral, in ip_local_port_range.
 * Also: a truncated addrlen still reports the full length (16). */
#include "common.h"

struct view {
	uint32_t local_addr, peer_addr;
	uint16_t local_port, peer_port;
} __attribute__((packed));

static struct view view_of(int fd)
{
	struct sockaddr_in l, p;
	socklen_t ll = sizeof l, pl = sizeof p;
	memset(&l, 0, sizeof l);
	memset(&p, 0, sizeof p);
	getsockname(fd, (struct sockaddr *)&l, &ll);
	getpeername(fd, (struct sockaddr *)&p, &pl);
	return (struct view){ l.sin_addr.s_addr, p.sin_addr.s_addr, l.sin_port, p.sin_port };
}

static int in_port_range(uint16_t port_n)
{
	unsigned lo = 32768, hi = 60999, p = ntohs(port_n);
	FILE *f = fopen("/proc/sys/net/ipv4/ip_local_port_range", "r");
	if (f) {
		if (fscanf(f, "%u %u", &lo, &hi) != 2)
			lo = 32768, hi = 60999;
		fclose(f);
	}
	return p >= lo && p <= hi;
}

static void truncated(int fd, const char *who)
{
	unsigned char b[16];
	memset(b, 0xee, sizeof b);
	socklen_t l = 4;
	int r = getsockname(fd, (struct sockaddr *)b, &l);
	say("%s: getsockname with addrlen 4: %s, addrlen now %u, bytes past 4 untouched %s", who, res(r), (unsigned)l,
	    YN(b[4] == 0xee && b[15] == 0xee));
	l = 0;
	say("%s: getpeername with addrlen 0: %s, addrlen now %u", who, res(getpeername(fd, (struct sockaddr *)b, &l)), (unsigned)l);
	l = (socklen_t)-1;
	say("%s: getsockname with addrlen -1: %s", who, res(getsockname(fd, (struct sockaddr *)b, &l)));
}

int main(int argc, char **argv)
{
	conf_init(argc, argv, 20);
	struct view mine, theirs;
	if (C.server) {
		step("listen");
		int l = tcp_socket();
		set_int(l, SOL_SOCKET, SO_REUSEADDR, 1);
		struct sockaddr_in any = sin_of(any_addr(), C.port), g;
		socklen_t gl = sizeof g;
		say("server: bind 0.0.0.0:PORT: %s", res(bind(l, (struct sockaddr *)&any, sizeof any)));
		getsockname(l, (struct sockaddr *)&g, &gl);
		say("server: getsockname(bound): %s:%u", ipstr(g.sin_addr), ntohs(g.sin_port));
		say("server: listen: %s", res(listen(l, 8)));
		gl = sizeof g;
		getsockname(l, (struct sockaddr *)&g, &gl);
		say("server: getsockname(listener): %s:%u len %u", ipstr(g.sin_addr), ntohs(g.sin_port), (unsigned)gl);
		gl = sizeof g;
		say("server: getpeername(listener): %s", res(getpeername(l, (struct sockaddr *)&g, &gl)));
		C.lfd = l;
		sync_post("listening");
		struct sockaddr_in a;
		socklen_t al = sizeof a;
		step("accept");
		int fd = accept(l, (struct sockaddr *)&a, &al);
		if (fd < 0)
			die("accept");
		mine = view_of(fd);
		say("server: accept's address == getpeername: %s", YN(a.sin_addr.s_addr == mine.peer_addr && a.sin_port == mine.peer_port));
		say("server: local port == PORT: %s, local address specific (not 0.0.0.0): %s", YN(ntohs(mine.local_port) == C.port),
		    YN(mine.local_addr != 0));
		step("exchange");
		if (read_n(fd, &theirs, sizeof theirs) != sizeof theirs)
			die("read view");
		say("server: client's local == my peer: %s", YN(theirs.local_addr == mine.peer_addr && theirs.local_port == mine.peer_port));
		say("server: client's peer == my local: %s", YN(theirs.peer_addr == mine.local_addr && theirs.peer_port == mine.local_port));
		if (write_all(fd, &mine, sizeof mine) != sizeof mine)
			die("write view");
		truncated(fd, "server");
		char c;
		step("close");
		say("server: recv until the client closes: %s", res(recv(fd, &c, 1, 0)));
		mine = view_of(fd);
		say("server: after the peer's FIN: getpeername still works: %s", YN(mine.peer_port != 0));
		sync_wait("checked");
		close(fd);
		close(l);
	} else {
		int fd = tcp_socket();
		struct sockaddr_in g;
		socklen_t gl = sizeof g;
		getsockname(fd, (struct sockaddr *)&g, &gl);
		say("client: getsockname before connect: %s:%u", ipstr(g.sin_addr), ntohs(g.sin_port));
		conf_connect_fd(fd);
		mine = view_of(fd);
		say("client: local address is LOCAL: %s", YN(mine.local_addr == C.local.s_addr));
		say("client: local port ephemeral, within ip_local_port_range: %s", YN(in_port_range(mine.local_port)));
		say("client: peer == the address connected to: %s", YN(mine.peer_addr == C.addr.sin_addr.s_addr && mine.peer_port == C.addr.sin_port));
		step("exchange");
		if (write_all(fd, &mine, sizeof mine) != sizeof mine)
			die("write view");
		if (read_n(fd, &theirs, sizeof theirs) != sizeof theirs)
			die("read view");
		say("client: server's local == my peer: %s", YN(theirs.local_addr == mine.peer_addr && theirs.local_port == mine.peer_port));
		say("client: server's peer == my local: %s", YN(theirs.peer_addr == mine.local_addr && theirs.peer_port == mine.local_port));
		truncated(fd, "client");
		say("client: shutdown SHUT_WR: %s", res(shutdown(fd, SHUT_WR)));
		struct view after = view_of(fd);
		say("client: after SHUT_WR: getsockname/getpeername unchanged: %s", YN(memcmp(&after, &mine, sizeof after) == 0));
		sync_post("checked");
		char c;
		step("close");
		say("client: recv until the server closes: %s", res(recv(fd, &c, 1, 0)));
		gl = sizeof g;
		say("client: getpeername after both FINs: %s", res(getpeername(fd, (struct sockaddr *)&g, &gl)));
		close(fd);
	}
	return 0;
}
