/* Connection refused: connect to a port nobody listens on, and to a port a
 * socket is bound to without listening: ECONNREFUSED (the peer answers the
 * SYN with RST).  The socket is reusable for another connect; SO_ERROR is 0
 * afterwards (the error was reported by connect); send on it gives EPIPE
 * (Linux; POSIX says ENOTCONN) and SIGPIPE.  The server end only keeps a
 * listener on PORT (so an engine is running) and a bound socket on PORT+1. */
#include "common.h"

int main(int argc, char **argv)
{
	conf_init(argc, argv, 30);
	if (C.server) {
		int b = tcp_socket();
		struct sockaddr_in a = sin_of(C.addr.sin_addr, C.port + 1);
		say("bind PORT+1 (no listen): %s", res(bind(b, (struct sockaddr *)&a, sizeof a)));
		conf_listen(8);
		say("listening on PORT");
		int fd = conf_accept();
		say("accepted the one connection to PORT");
		close(fd);
		sync_wait("done");
		close(b);
		close(C.lfd);
	} else {
		sync_wait("listening");
		struct sockaddr_in nobody = C.addr, bound = C.addr;
		nobody.sin_port = htons(C.port + 2);
		bound.sin_port = htons(C.port + 1);
		int fd = tcp_socket();
		step("connect nobody");
		say("connect to PORT+2 (nothing there): %s", res(connect(fd, (struct sockaddr *)&nobody, sizeof nobody)));
		say("SO_ERROR after: %d", get_int(fd, SOL_SOCKET, SO_ERROR));
		say("connect again, same socket: %s", res(connect(fd, (struct sockaddr *)&nobody, sizeof nobody)));
		char c;
		say("send on refused socket: %s", send_sig(fd, "x", 1, 0));
		say("recv on refused socket: %s", res(recv(fd, &c, 1, MSG_DONTWAIT)));
		close(fd);
		fd = tcp_socket();
		step("connect bound");
		say("connect to PORT+1 (bound, not listening): %s", res(connect(fd, (struct sockaddr *)&bound, sizeof bound)));
		step("connect listening");
		say("connect again to PORT (listening): %s", res(connect(fd, (struct sockaddr *)&C.addr, sizeof C.addr)));
		say("recv until server closes: %s", res(recv(fd, &c, 1, 0)));
		close(fd);
		sync_post("done");
	}
	return 0;
}
