/* SO_REUSEADDR / SO_REUSEPORT bind rules, on this end's own address (LOCAL)
 * and the wildcard; both ends run the same table on their own side, no
 * traffic.  Each rule: socket A (options, bind, maybe listen), then socket B
 * (options, bind, maybe listen), a fresh port per rule.  Linux semantics
 * (unlike BSD): with SO_REUSEADDR on both, two sockets may share a port as
 * long as neither listens, and wildcard vs specific address conflicts once
 * one of them listens; SO_REUSEPORT needs the option on every socket (same
 * user) and allows several listeners. */
#include "common.h"

#define RA 1 /* SO_REUSEADDR */
#define RP 2 /* SO_REUSEPORT */
#define LI 4 /* listen after bind */
#define ANY 8 /* bind the wildcard address instead of LOCAL */
#define LO 16 /* bind 127.0.0.1 instead of LOCAL */

static char desc[128];

static const char *d(int f)
{
	snprintf(desc, sizeof desc, "%s%s%s%s", f & ANY ? "0.0.0.0" : f & LO ? "127.0.0.1" : "LOCAL",
		 f & RA ? " REUSEADDR" : "", f & RP ? " REUSEPORT" : "", f & LI ? " +listen" : "");
	return desc;
}

static int sock_with(int f, unsigned short port, const char **bind_res, const char **listen_res)
{
	int fd = tcp_socket();
	if (f & RA)
		set_int(fd, SOL_SOCKET, SO_REUSEADDR, 1);
	if (f & RP)
		set_int(fd, SOL_SOCKET, SO_REUSEPORT, 1);
	struct in_addr a = f & ANY ? any_addr() : f & LO ? (struct in_addr){ htonl(INADDR_LOOPBACK) } : C.local;
	struct sockaddr_in s = sin_of(a, port);
	int r = bind(fd, (struct sockaddr *)&s, sizeof s);
	*bind_res = res(r);
	*listen_res = "";
	if (r == 0 && (f & LI))
		*listen_res = res(listen(fd, 4));
	return fd;
}

static unsigned short port;

static void rule(const char *name, int fa, int fb)
{
	const char *ba, *la, *bb, *lb;
	port++;
	int a = sock_with(fa, port, &ba, &la);
	char sa[160];
	snprintf(sa, sizeof sa, "A[%s] bind %s%s%s", d(fa), ba, *la ? " listen " : "", la);
	int b = sock_with(fb, port, &bb, &lb);
	say("%-34s %s; B[%s] bind %s%s%s", name, sa, d(fb), bb, *lb ? " listen " : "", lb);
	close(a);
	close(b);
}

int main(int argc, char **argv)
{
	conf_init(argc, argv, 20);
	port = C.port;
	step("rules");
	rule("same addr, no options", 0, 0);
	rule("wildcard then specific", ANY, 0);
	rule("specific then wildcard", 0, ANY);
	rule("different specific addresses", 0, LO);
	rule("REUSEADDR both, none listening", RA, RA);
	rule("REUSEADDR both, A listening", RA | LI, RA);
	rule("REUSEADDR both, B listens", RA, RA | LI);
	rule("REUSEADDR both, both listen", RA | LI, RA | LI);
	rule("REUSEADDR only on B", LI, RA);
	rule("REUSEADDR: wildcard listening", RA | ANY | LI, RA);
	rule("REUSEADDR: specific listening", RA | LI, RA | ANY);
	rule("REUSEADDR: wildcard bound only", RA | ANY, RA);
	rule("REUSEPORT both, both listen", RP | LI, RP | LI);
	rule("REUSEPORT only on A", RP | LI, 0);
	rule("REUSEPORT only on B", LI, RP);
	rule("REUSEPORT: wildcard + specific", RP | ANY | LI, RP | LI);
	rule("REUSEADDR+REUSEPORT both listen", RA | RP | LI, RA | RP | LI);

	/* one socket */
	int fd = tcp_socket();
	struct sockaddr_in s = sin_of(C.local, ++port);
	say("bind: %s", res(bind(fd, (struct sockaddr *)&s, sizeof s)));
	s.sin_port = htons(++port);
	say("bind the same socket again: %s", res(bind(fd, (struct sockaddr *)&s, sizeof s)));
	close(fd);
	fd = tcp_socket();
	struct in_addr foreign;
	inet_pton(AF_INET, "10.55.0.99", &foreign);
	s = sin_of(foreign, ++port);
	say("bind an address nobody owns: %s", res(bind(fd, (struct sockaddr *)&s, sizeof s)));
	s = sin_of(C.local, port);
	say("bind with addrlen 8: %s", res(bind(fd, (struct sockaddr *)&s, 8)));
	close(fd);
	int a = tcp_socket(), b = tcp_socket();
	struct sockaddr_in z = sin_of(C.local, 0), ga, gb;
	socklen_t la = sizeof ga, lb = sizeof gb;
	say("bind port 0 (A): %s", res(bind(a, (struct sockaddr *)&z, sizeof z)));
	say("bind port 0 (B): %s", res(bind(b, (struct sockaddr *)&z, sizeof z)));
	getsockname(a, (struct sockaddr *)&ga, &la);
	getsockname(b, (struct sockaddr *)&gb, &lb);
	say("ephemeral ports: nonzero %s, distinct %s", YN(ga.sin_port && gb.sin_port), YN(ga.sin_port != gb.sin_port));
	close(a);
	close(b);
	return 0;
}
