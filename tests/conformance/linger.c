/* The three SO_LINGER modes.  Directional: the subject sends and closes; the
 * other end (a kernel observer) reads after a delay and reports what arrived.
 * How long close() blocked is reported as a coarse class only.
 *  A  no linger (default): close returns at once; the data still arrives,
 *     then EOF.
 *  B  linger {1, 0}: close aborts with RST: the observer (blocked in recv
 *     after reading the 1000 bytes sent before) gets ECONNRESET, then 0.
 *  C1 linger {1, 5}, observer starts reading 0.5 s after close: close blocks
 *     until everything is acknowledged, then returns 0.
 *  C2 linger {1, 1}, observer starts reading 2.5 s after close: close returns
 *     after the linger time -- with 0 on Linux (not EWOULDBLOCK), and the data
 *     is not discarded: the observer still gets all of it, then EOF.
 *  C3 as C2 on a non-blocking socket: Linux lingers all the same.
 * The observer's receive buffer is small (SO_RCVBUF 4096, set before the
 * handshake) so 32 KiB cannot be acknowledged before it reads. */
#include "common.h"

#define DATA (32 * 1024)

static const char *cls(double t)
{
	return t < 0.2 ? "at once (<0.2 s)" : t < 0.8 ? "after 0.2-0.8 s" : t < 2.0 ? "after 0.8-2 s" : "after >2 s";
}

static int pair_observer_small_rcvbuf(void)
{
	if (C.server)
		return conf_accept();
	int fd = tcp_socket();
	if (!C.subject)
		set_int(fd, SOL_SOCKET, SO_RCVBUF, 4096);
	conf_connect_fd(fd);
	return fd;
}

static void subject(const char *tag, int lon, int secs, int nonblock, int nbytes)
{
	static char buf[DATA];
	char name[32];
	memset(buf, 'L', sizeof buf);
	int fd = pair_observer_small_rcvbuf();
	set_int(fd, SOL_SOCKET, SO_SNDBUF, 256 * 1024);
	if (lon >= 0)
		say("%s closer: SO_LINGER {%d, %d}: %s", tag, lon, secs, res(set_linger(fd, lon, secs)));
	if (nonblock)
		say("%s closer: O_NONBLOCK: %s", tag, res(set_nonblock(fd, 1)));
	snprintf(name, sizeof name, "%s-ready", tag);
	sync_wait(name);
	ssize_t n = send(fd, buf, (size_t)nbytes, MSG_NOSIGNAL);
	say("%s closer: send %d: %s", tag, nbytes, res(n));
	if (lon == 1 && secs == 0) {
		/* B: abort once the observer has read the data and waits for more */
		snprintf(name, sizeof name, "%s-read", tag);
		sync_wait(name);
		msleep(50);
	}
	snprintf(name, sizeof name, "%s-closing", tag);
	sync_post(name);
	double t0 = now_s();
	int r = close(fd);
	double dt = now_s() - t0;
	say("%s closer: close: %s, returned %s", tag, res(r), cls(dt));
	snprintf(name, sizeof name, "%s-done", tag);
	sync_wait(name);
}

static void observer(const char *tag, long delay_ms, int first_read)
{
	char name[32];
	int fd = pair_observer_small_rcvbuf();
	char buf[DATA];
	snprintf(name, sizeof name, "%s-ready", tag);
	if (first_read) {
		/* B: read what was sent before the abort, then block */
		sync_post(name);
		ssize_t n = read_n(fd, buf, (size_t)first_read);
		say("%s observer: read %zd", tag, n);
		snprintf(name, sizeof name, "%s-read", tag);
		sync_post(name);
		say("%s observer: recv: %s", tag, res(recv(fd, buf, sizeof buf, 0)));
		say("%s observer: recv: %s", tag, res(recv(fd, buf, sizeof buf, 0)));
	} else {
		sync_post(name);
		snprintf(name, sizeof name, "%s-closing", tag);
		sync_wait(name);
		msleep(delay_ms);
		int err;
		long n = drain(fd, &err);
		say("%s observer: read %ld bytes, then %s", tag, n, err ? ename(err) : "EOF");
	}
	close(fd);
	snprintf(name, sizeof name, "%s-done", tag);
	sync_post(name);
}

int main(int argc, char **argv)
{
	conf_init(argc, argv, 40);
	if (C.server) {
		C.lfd = tcp_socket();
		set_int(C.lfd, SOL_SOCKET, SO_REUSEADDR, 1);
		if (!C.subject)
			set_int(C.lfd, SOL_SOCKET, SO_RCVBUF, 4096);
		if (bind(C.lfd, (struct sockaddr *)&C.addr, sizeof C.addr) < 0 || listen(C.lfd, 8) < 0)
			die("bind/listen");
		sync_post("listening");
	}
	if (C.subject) {
		step("A");
		subject("A", -1, 0, 0, DATA);
		step("B");
		subject("B", 1, 0, 0, 1000);
		step("C1");
		subject("C1", 1, 5, 0, DATA);
		step("C2");
		subject("C2", 1, 1, 0, DATA);
		step("C3");
		subject("C3", 1, 1, 1, DATA);
	} else {
		step("A");
		observer("A", 300, 0);
		step("B");
		observer("B", 0, 1000);
		step("C1");
		observer("C1", 500, 0);
		step("C2");
		observer("C2", 2500, 0);
		step("C3");
		observer("C3", 2500, 0);
	}
	return 0;
}
