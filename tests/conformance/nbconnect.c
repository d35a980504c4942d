/* Non-blocking connect, without poll/epoll (the shim interposes those in a
 * later issue): completion is observed with getpeername()/SO_ERROR polled
 * with nanosleep.
 *  A  EINPROGRESS; once connected the next connect() returns 0 (Linux reports
 *     the completion once), then EISCONN.
 *  B  the server's accept queue is full (backlog 1 holds 2): the SYN is
 *     dropped, the connect stays in progress: EALREADY, SO_ERROR 0,
 *     getpeername ENOTCONN, send/recv EAGAIN; after the server accepts one,
 *     the retransmitted SYN completes it.
 *  C  refused: SO_ERROR ECONNREFUSED; the next connect() then gives
 *     ECONNABORTED (Linux: the error was already consumed); the one after
 *     that starts a new attempt: EINPROGRESS, ECONNREFUSED again. */
#include "common.h"

/* 1 connected, -errno failed, 0 still in progress after ms */
static int wait_connect(int fd, long ms)
{
	double end = now_s() + (double)ms / 1000.0;
	for (;;) {
		int e = get_int(fd, SOL_SOCKET, SO_ERROR);
		if (e)
			return -e;
		struct sockaddr_in a;
		socklen_t al = sizeof a;
		if (getpeername(fd, (struct sockaddr *)&a, &al) == 0)
			return 1;
		if (now_s() > end)
			return 0;
		msleep(1);
	}
}

static const char *wc(int r)
{
	static char b[64];
	if (r > 0)
		return "connected";
	if (r == 0)
		return "still in progress";
	snprintf(b, sizeof b, "failed %s", ename(-r));
	return b;
}

static int nb_socket(void)
{
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
	if (fd < 0)
		die("socket");
	return fd;
}

int main(int argc, char **argv)
{
	conf_init(argc, argv, 40);
	if (C.server) {
		conf_listen(1);
		sync_wait("A");
		int a1 = conf_accept();
		say("accepted connection A");
		sync_post("A-accepted");
		sync_wait("full");
		int a2 = conf_accept();
		say("accepted one more (queue was full)");
		sync_post("accepted");
		sync_wait("done");
		set_nonblock(C.lfd, 1);
		int n = 0, fd;
		while ((fd = accept(C.lfd, NULL, NULL)) >= 0) {
			n++;
			close(fd);
		}
		say("then accepted %d more, then %s", n, res(-1));
		close(a1);
		close(a2);
		close(C.lfd);
	} else {
		sync_wait("listening");
		struct sockaddr *sa = (struct sockaddr *)&C.addr;
		char c;
		step("A");
		int fa = nb_socket();
		say("A connect: %s", res(connect(fa, sa, sizeof C.addr)));
		say("A wait: %s", wc(wait_connect(fa, 5000)));
		say("A connect again: %s", res(connect(fa, sa, sizeof C.addr)));
		say("A connect again: %s", res(connect(fa, sa, sizeof C.addr)));
		say("A SO_ERROR: %d", get_int(fa, SOL_SOCKET, SO_ERROR));
		sync_post("A");
		sync_wait("A-accepted");

		step("B fill");
		int f1 = tcp_socket(), f2 = tcp_socket();
		say("B fill 1 (blocking): %s", res(connect(f1, sa, sizeof C.addr)));
		say("B fill 2 (blocking): %s", res(connect(f2, sa, sizeof C.addr)));
		msleep(50);
		step("B");
		int fb = nb_socket();
		say("B connect: %s", res(connect(fb, sa, sizeof C.addr)));
		say("B wait 300 ms: %s", wc(wait_connect(fb, 300)));
		say("B connect again: %s", res(connect(fb, sa, sizeof C.addr)));
		say("B SO_ERROR: %d", get_int(fb, SOL_SOCKET, SO_ERROR));
		struct sockaddr_in pa;
		socklen_t pl = sizeof pa;
		say("B getpeername: %s", res(getpeername(fb, (struct sockaddr *)&pa, &pl)));
		say("B send: %s", res(send(fb, "x", 1, MSG_NOSIGNAL)));
		say("B recv: %s", res(recv(fb, &c, 1, 0)));
		sync_post("full");
		sync_wait("accepted");
		say("B wait after the server accepted one: %s", wc(wait_connect(fb, 5000)));
		say("B connect again: %s", res(connect(fb, sa, sizeof C.addr)));
		say("B connect again: %s", res(connect(fb, sa, sizeof C.addr)));

		step("C");
		struct sockaddr_in nobody = C.addr;
		nobody.sin_port = htons(C.port + 1);
		int fc = nb_socket();
		say("C connect to a closed port: %s", res(connect(fc, (struct sockaddr *)&nobody, sizeof nobody)));
		say("C wait: %s", wc(wait_connect(fc, 5000)));
		say("C SO_ERROR again: %d", get_int(fc, SOL_SOCKET, SO_ERROR));
		say("C connect again: %s", res(connect(fc, (struct sockaddr *)&nobody, sizeof nobody)));
		say("C connect again: %s", res(connect(fc, (struct sockaddr *)&nobody, sizeof nobody)));
		say("C wait: %s", wc(wait_connect(fc, 5000)));
		say("C connect again: %s", res(connect(fc, (struct sockaddr *)&nobody, sizeof nobody)));
		close(fc);
		close(fa);
		close(fb);
		close(f1);
		close(f2);
		sync_post("done");
	}
	return 0;
}
