/* Calls on sockets that are not connected (both ends run the same list on
 * their own side, no traffic).  Linux, where POSIX says otherwise: send() on
 * a never-connected TCP socket fails with EPIPE (and raises SIGPIPE), not
 * ENOTCONN; connect() on a listening socket gives EISCONN; listen() without
 * bind() binds an ephemeral port; SO_RCVBUF/SO_SNDBUF read back doubled;
 * shutdown(SHUT_RD) on a listener stops it listening (accept: EINVAL). */
#include "common.h"

int main(int argc, char **argv)
{
	conf_init(argc, argv, 20);
	char c = 'x';
	int fd = tcp_socket();
	step("fresh");
	say("fresh: SO_TYPE stream %s, SO_DOMAIN inet %s, SO_PROTOCOL tcp %s, SO_ACCEPTCONN %d, SO_ERROR %d",
	    YN(get_int(fd, SOL_SOCKET, SO_TYPE) == SOCK_STREAM), YN(get_int(fd, SOL_SOCKET, SO_DOMAIN) == AF_INET),
	    YN(get_int(fd, SOL_SOCKET, SO_PROTOCOL) == IPPROTO_TCP), get_int(fd, SOL_SOCKET, SO_ACCEPTCONN),
	    get_int(fd, SOL_SOCKET, SO_ERROR));
	struct sockaddr_in a;
	socklen_t al = sizeof a;
	int r = getsockname(fd, (struct sockaddr *)&a, &al);
	say("getsockname unbound: %s %s:%u len %u", res(r), ipstr(a.sin_addr), ntohs(a.sin_port), (unsigned)al);
	al = sizeof a;
	say("getpeername: %s", res(getpeername(fd, (struct sockaddr *)&a, &al)));
	say("send MSG_NOSIGNAL: %s", send_sig(fd, &c, 1, MSG_NOSIGNAL));
	say("send: %s", send_sig(fd, &c, 1, 0));
	int before = g_sigpipe;
	r = (int)write(fd, &c, 1);
	say("write: %s, SIGPIPE %d", res(r), (int)(g_sigpipe - before));
	say("recv: %s", res(recv(fd, &c, 1, 0)));
	say("read: %s", res(read(fd, &c, 1)));
	say("recv MSG_DONTWAIT: %s", res(recv(fd, &c, 1, MSG_DONTWAIT)));
	say("shutdown SHUT_RDWR: %s", res(shutdown(fd, SHUT_RDWR)));
	say("shutdown 7: %s", res(shutdown(fd, 7)));
	say("accept (not listening): %s", res(accept(fd, NULL, NULL)));
	say("FIONREAD: %d", fionread(fd));
	say("TCP_NODELAY default: %d, TCP_CORK default: %d", get_int(fd, IPPROTO_TCP, TCP_NODELAY), get_int(fd, IPPROTO_TCP, TCP_CORK));
	say("SO_KEEPALIVE default: %d, SO_REUSEADDR default: %d", get_int(fd, SOL_SOCKET, SO_KEEPALIVE), get_int(fd, SOL_SOCKET, SO_REUSEADDR));
	say("TCP_MAXSEG unconnected: %d", get_int(fd, IPPROTO_TCP, TCP_MAXSEG));
	const char *sr = res(set_int(fd, SOL_SOCKET, SO_RCVBUF, 16384));
	say("SO_RCVBUF set 16384: %s, reads back %d", sr, get_int(fd, SOL_SOCKET, SO_RCVBUF));
	sr = res(set_int(fd, SOL_SOCKET, SO_SNDBUF, 65536));
	say("SO_SNDBUF set 65536: %s, reads back %d", sr, get_int(fd, SOL_SOCKET, SO_SNDBUF));
	short sh = 1;
	say("setsockopt SO_KEEPALIVE optlen 2: %s", res(setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &sh, sizeof sh)));
	say("getsockopt unknown SOL_SOCKET option: %s", res(getsockopt(fd, SOL_SOCKET, 9999, &r, &al)));
	say("getsockopt unknown IPPROTO_TCP option: %s", res(getsockopt(fd, IPPROTO_TCP, 9999, &r, &al)));
	say("setsockopt unknown IPPROTO_TCP option: %s", res(set_int(fd, IPPROTO_TCP, 9999, 1)));
	say("close: %s", res(close(fd)));
	say("close again: %s", res(close(fd)));

	step("listener");
	fd = tcp_socket();
	say("listen without bind: %s", res(listen(fd, 4)));
	al = sizeof a;
	getsockname(fd, (struct sockaddr *)&a, &al);
	say("  bound to 0.0.0.0 %s, ephemeral port %s", YN(a.sin_addr.s_addr == htonl(INADDR_ANY)), YN(a.sin_port != 0));
	say("  SO_ACCEPTCONN: %d", get_int(fd, SOL_SOCKET, SO_ACCEPTCONN));
	struct sockaddr_in self = sin_of(C.local, C.port);
	say("  bind after listen: %s", res(bind(fd, (struct sockaddr *)&self, sizeof self)));
	say("  connect on a listening socket: %s", res(connect(fd, (struct sockaddr *)&self, sizeof self)));
	say("  listen again (new backlog): %s", res(listen(fd, 8)));
	say("  FIONREAD on a listener: %d (%s)", fionread(fd), fionread(fd) < 0 ? ename(-fionread(fd)) : "");
	say("  recv on a listener: %s", res(recv(fd, &c, 1, MSG_DONTWAIT)));
	say("  send on a listener: %s", send_sig(fd, &c, 1, 0));
	al = sizeof a;
	say("  getpeername on a listener: %s", res(getpeername(fd, (struct sockaddr *)&a, &al)));
	set_nonblock(fd, 1);
	say("  accept (empty): %s", res(accept(fd, NULL, NULL)));
	say("  shutdown SHUT_WR: %s", res(shutdown(fd, SHUT_WR)));
	say("  accept (empty): %s", res(accept(fd, NULL, NULL)));
	say("  shutdown SHUT_RD: %s", res(shutdown(fd, SHUT_RD)));
	say("  accept: %s", res(accept(fd, NULL, NULL)));
	say("  SO_ACCEPTCONN: %d", get_int(fd, SOL_SOCKET, SO_ACCEPTCONN));
	say("  listen again: %s", res(listen(fd, 4)));
	say("  accept (empty): %s", res(accept(fd, NULL, NULL)));
	close(fd);

	step("nonblock");
	fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	say("socket SOCK_NONBLOCK|SOCK_CLOEXEC: O_NONBLOCK %s, FD_CLOEXEC %s", YN(fcntl(fd, F_GETFL) & O_NONBLOCK),
	    YN(fcntl(fd, F_GETFD) & FD_CLOEXEC));
	close(fd);
	say("socket type 0x7f: %s", res(socket(AF_INET, 0x7f, 0)));
	say("socket SOCK_STREAM proto UDP: %s", res(socket(AF_INET, SOCK_STREAM, IPPROTO_UDP)));
	return 0;
}
