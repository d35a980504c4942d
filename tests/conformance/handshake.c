/* Handshake and accept: a blocking connect/accept with a request and a reply;
 * accept on an empty non-blocking listener (EAGAIN); O_NONBLOCK of the
 * listener is not inherited by accept() (Linux; BSD inherits it); accept4()
 * flags; accept4 with a bad flag. */
#include "common.h"

static const char *flags_of(int fd)
{
	static char b[64];
	int fl = fcntl(fd, F_GETFL), fd_fl = fcntl(fd, F_GETFD);
	snprintf(b, sizeof b, "O_NONBLOCK=%s FD_CLOEXEC=%s", YN(fl & O_NONBLOCK), YN(fd_fl & FD_CLOEXEC));
	return b;
}

/* accept on a non-blocking listener, waiting (bounded) for a connection */
static int accept_wait(int lfd, int flags4, int use4)
{
	for (int i = 0; i < 5000; i++) {
		struct sockaddr_in a;
		socklen_t al = sizeof a;
		int fd = use4 ? accept4(lfd, (struct sockaddr *)&a, &al, flags4) : accept(lfd, (struct sockaddr *)&a, &al);
		if (fd >= 0) {
			say("accept: fd ok, family %s, addrlen %u", a.sin_family == AF_INET ? "AF_INET" : "?", (unsigned)al);
			return fd;
		}
		if (errno != EAGAIN) {
			say("accept: %s", res(-1));
			return -1;
		}
		msleep(1);
	}
	say("accept: nothing within 5 s");
	return -1;
}

int main(int argc, char **argv)
{
	conf_init(argc, argv, 30);
	char buf[64];
	if (C.server) {
		conf_listen(8);
		/* 1: blocking accept, request/reply, then the client's EOF */
		struct sockaddr_in a;
		socklen_t al = sizeof a;
		step("accept 1");
		int fd = accept(C.lfd, (struct sockaddr *)&a, &al);
		say("accept: %s, family %s, addrlen %u", fd >= 0 ? "fd ok" : res(fd), a.sin_family == AF_INET ? "AF_INET" : "?", (unsigned)al);
		say("accepted socket: %s", flags_of(fd));
		step("recv 1");
		ssize_t n = read_n(fd, buf, 5);
		say("recv request: %zd '%.*s'", n, (int)(n > 0 ? n : 0), buf);
		say("send reply: %s", res(send(fd, "world", 5, 0)));
		n = recv(fd, buf, sizeof buf, 0);
		say("recv after client close: %s", res(n));
		say("close: %s", res(close(fd)));

		/* 2: the listener non-blocking: EAGAIN on an empty queue, and the
		 * accepted socket does not inherit O_NONBLOCK */
		step("accept 2");
		say("listener O_NONBLOCK: %s", res(set_nonblock(C.lfd, 1)));
		say("accept on empty queue: %s", res(accept(C.lfd, NULL, NULL)));
		sync_post("c2");
		fd = accept_wait(C.lfd, 0, 0);
		say("accepted socket: %s", flags_of(fd));
		say("close: %s", res(close(fd)));

		/* 3: accept4 with SOCK_NONBLOCK|SOCK_CLOEXEC; a bad flag */
		step("accept 3");
		say("accept4 bad flags: %s", res(accept4(C.lfd, NULL, NULL, 0x4000000)));
		sync_post("c3");
		fd = accept_wait(C.lfd, SOCK_NONBLOCK | SOCK_CLOEXEC, 1);
		say("accepted socket: %s", flags_of(fd));
		say("recv on it (no data yet): %s", res(recv(fd, buf, sizeof buf, 0)));
		say("close: %s", res(close(fd)));
		sync_wait("done");
		say("close listener: %s", res(close(C.lfd)));
	} else {
		int fd = tcp_socket();
		step("connect 1");
		sync_wait("listening");
		say("connect: %s", res(connect(fd, (struct sockaddr *)&C.addr, sizeof C.addr)));
		say("SO_ERROR: %d", get_int(fd, SOL_SOCKET, SO_ERROR));
		say("send request: %s", res(send(fd, "hello", 5, 0)));
		step("recv reply");
		ssize_t n = read_n(fd, buf, 5);
		say("recv reply: %zd '%.*s'", n, (int)(n > 0 ? n : 0), buf);
		say("close: %s", res(close(fd)));

		step("connect 2");
		sync_wait("c2");
		fd = tcp_socket();
		say("connect: %s", res(connect(fd, (struct sockaddr *)&C.addr, sizeof C.addr)));
		say("recv until server closes: %s", res(recv(fd, buf, sizeof buf, 0)));
		close(fd);

		step("connect 3");
		sync_wait("c3");
		fd = tcp_socket();
		say("connect: %s", res(connect(fd, (struct sockaddr *)&C.addr, sizeof C.addr)));
		say("recv until server closes: %s", res(recv(fd, buf, sizeof buf, 0)));
		close(fd);
		sync_post("done");
	}
	return 0;
}
