/* Write, close, exit.  Directional: the subject writes 256 KiB, closes and
 * returns from main (the process ends) while most of the data cannot have
 * been delivered yet: the observer (a kernel socket) has a small receive
 * buffer (SO_RCVBUF 8192, set before the handshake) and starts reading only
 * 300 ms after the subject posted "closed".  On Linux the socket outlives the
 * process: the observer gets every byte, then EOF.  (A user-space stack has
 * to keep the connection going past exit to do the same.) */
#include "common.h"

#define DATA (256 * 1024)

int main(int argc, char **argv)
{
	conf_init(argc, argv, 40);
	int fd;
	if (C.server) {
		C.lfd = tcp_socket();
		set_int(C.lfd, SOL_SOCKET, SO_REUSEADDR, 1);
		if (!C.subject)
			set_int(C.lfd, SOL_SOCKET, SO_RCVBUF, 8192);
		if (bind(C.lfd, (struct sockaddr *)&C.addr, sizeof C.addr) < 0 || listen(C.lfd, 8) < 0)
			die("bind/listen");
		sync_post("listening");
		fd = conf_accept();
	} else {
		fd = tcp_socket();
		if (!C.subject)
			set_int(fd, SOL_SOCKET, SO_RCVBUF, 8192);
		conf_connect_fd(fd);
	}
	if (C.subject) {
		static char buf[DATA];
		for (int i = 0; i < DATA; i++)
			buf[i] = (char)(i * 7 + 3);
		set_int(fd, SOL_SOCKET, SO_SNDBUF, 1024 * 1024);
		step("write");
		say("writer: write %d: %s", DATA, res(write_all(fd, buf, DATA)));
		say("writer: close: %s", res(close(fd)));
		sync_post("closed");
		say("writer: exit");
		return 0;
	}
	step("wait");
	if (sync_wait_ms("closed", 8000) < 0)
		say("reader: the writer is still blocked in write after 8 s");
	msleep(300);
	step("read");
	struct timeval tv = { 10, 0 };
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
	static char buf[65536];
	long got = 0, bad = 0;
	int err = 0;
	for (;;) {
		ssize_t r = recv(fd, buf, sizeof buf, 0);
		if (r < 0) {
			if (errno == EINTR)
				continue;
			err = errno;
			break;
		}
		if (r == 0)
			break;
		for (ssize_t i = 0; i < r; i++)
			bad += buf[i] != (char)((got + i) * 7 + 3);
		got += r;
	}
	say("reader: read %ld bytes (all as written: %s), then %s", got, YN(bad == 0), err ? ename(err) : "EOF");
	close(fd);
	return 0;
}
