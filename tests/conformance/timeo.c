/* SO_RCVTIMEO and SO_SNDTIMEO.  Directional: the subject sets the timeouts;
 * the other end is a kernel peer.
 *  1  SO_RCVTIMEO 300 ms reads back as set; a recv on an idle connection
 *     fails with EAGAIN after it (and not much before); the connection is
 *     fine afterwards (the peer's 3 bytes arrive).  An out-of-range tv_usec
 *     is EDOM (Linux); a short optlen EINVAL.
 *  2  SO_RCVTIMEO on a listening socket (the subject's own, on its address):
 *     accept fails with EAGAIN after the timeout.
 *  3  SO_SNDTIMEO 300 ms, the peer never reads: sends succeed until the
 *     buffers are full, then one fails with EAGAIN (possibly after a short
 *     count) after the timeout.
 *  4  SO_SNDTIMEO on connect: the peer's listener (backlog 1, two connections
 *     queued, not accepted) drops the SYN; connect gives up after the timeout
 *     with EINPROGRESS (Linux), and the attempt goes on in the background. */
#include "common.h"

static const char *waited(double t, double lo, double hi)
{
	return t >= lo && t < hi ? "yes" : "no";
}

int main(int argc, char **argv)
{
	conf_init(argc, argv, 40);
	static char buf[65536];
	memset(buf, 't', sizeof buf);
	unsigned short P1 = C.port + 1, P2 = C.port + 2;
	if (C.server)
		conf_listen(8);
	int fd = conf_pair();
	if (C.subject) {
		step("1");
		struct timeval tv = { 0, 300000 }, got = { 0, 0 };
		socklen_t gl = sizeof got;
		say("1 SO_RCVTIMEO 300 ms: %s", res(setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv)));
		getsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &got, &gl);
		say("1 reads back %ld.%06ld, optlen %u", (long)got.tv_sec, (long)got.tv_usec, (unsigned)gl);
		struct timeval bad = { 0, 1000000 };
		say("1 SO_RCVTIMEO tv_usec 1000000: %s", res(setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &bad, sizeof bad)));
		say("1 SO_RCVTIMEO optlen 4: %s", res(setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, 4)));
		double t0 = now_s();
		ssize_t n = recv(fd, buf, sizeof buf, 0);
		double dt = now_s() - t0;
		say("1 recv on idle connection: %s, after the timeout (0.25-1 s): %s", res(n), waited(dt, 0.25, 1.0));
		sync_post("1-timedout");
		n = read_n(fd, buf, 3);
		say("1 recv: %zd '%.*s'", n, (int)(n > 0 ? n : 0), buf);

		step("2");
		int l = tcp_socket();
		struct sockaddr_in me = sin_of(C.local, P1);
		if (bind(l, (struct sockaddr *)&me, sizeof me) < 0 || listen(l, 4) < 0)
			die("bind/listen own");
		say("2 SO_RCVTIMEO 300 ms on a listener: %s", res(setsockopt(l, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv)));
		t0 = now_s();
		int a = accept(l, NULL, NULL);
		dt = now_s() - t0;
		say("2 accept: %s, after the timeout: %s", res(a), waited(dt, 0.25, 1.0));
		close(l);

		step("3");
		say("3 SO_SNDTIMEO 300 ms: %s", res(setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv)));
		long ok = 0;
		int e = 0;
		for (int i = 0; i < 100000; i++) {
			t0 = now_s();
			n = send(fd, buf, sizeof buf, MSG_NOSIGNAL);
			dt = now_s() - t0;
			if (n < 0) {
				e = errno;
				break;
			}
			ok++;
		}
		errno = e;
		say("3 sends succeeded first: %s; then send: %s, after the timeout: %s", YN(ok > 0), res(n), waited(dt, 0.25, 1.0));

		step("4");
		sync_wait("4-full");
		struct sockaddr_in pa;
		socklen_t pl = sizeof pa;
		getpeername(fd, (struct sockaddr *)&pa, &pl);
		struct sockaddr_in full = sin_of(pa.sin_addr, P2);
		int f1 = tcp_socket(), f2 = tcp_socket(), f3 = tcp_socket();
		say("4 fill the peer's queue: %s %s", res(connect(f1, (struct sockaddr *)&full, sizeof full)),
		    res(connect(f2, (struct sockaddr *)&full, sizeof full)));
		msleep(50);
		say("4 SO_SNDTIMEO 300 ms: %s", res(setsockopt(f3, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv)));
		t0 = now_s();
		int r = connect(f3, (struct sockaddr *)&full, sizeof full);
		dt = now_s() - t0;
		say("4 connect to the full queue: %s, after the timeout: %s", res(r), waited(dt, 0.25, 1.0));
		say("4 connect again: %s", res(connect(f3, (struct sockaddr *)&full, sizeof full)));
		close(f1);
		close(f2);
		close(f3);
		sync_post("end");
	} else {
		step("1");
		sync_wait("1-timedout");
		say("1 send: %s", res(send(fd, "abc", 3, 0)));
		/* 2, 3: nothing to do (never read) */
		step("4");
		struct sockaddr_in me = sin_of(C.local, P2);
		int l = tcp_socket();
		if (bind(l, (struct sockaddr *)&me, sizeof me) < 0 || listen(l, 1) < 0)
			die("bind/listen own");
		sync_post("4-full");
		sync_wait("end");
		close(l);
	}
	close(fd);
	if (C.server)
		close(C.lfd);
	return 0;
}
