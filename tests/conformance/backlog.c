/* Listen backlog overflow.  EXTRA: BACKLOG hold|accepting.
 *
 * The client opens BACKLOG+3 connections one after another (non-blocking
 * connect; each is given 100 ms to complete, and 100 ms to settle once it
 * has, so the server has seen its last ACK before the next SYN: under xtcp
 * that ACK is the server process's work, and a busy CI host once took over
 * 20 ms over it, letting the next SYN in) and counts
 * those that complete on its side.
 *
 * hold: the server does not accept while they are made.  Linux: the accept
 * queue holds BACKLOG+1; when it is full a SYN is dropped (no SYN-ACK), so
 * exactly BACKLOG+1 complete and the others stay in SYN_SENT.  Then the server
 * accepts one: within the next 1.8 s the first pending SYN's retransmission
 * (1 s initial RTO) gets in and completes -> BACKLOG+2; then the server
 * drains the queue with a non-blocking accept until EAGAIN -> BACKLOG+1.
 *
 * accepting: the server accepts each connection as it arrives: all
 * BACKLOG+3 complete. */
#include "common.h"

static int completed(int fd)
{
	struct sockaddr_in a;
	socklen_t al = sizeof a;
	return getpeername(fd, (struct sockaddr *)&a, &al) == 0;
}

static int count_done(const int *fds, int n)
{
	int k = 0;
	for (int i = 0; i < n; i++)
		k += completed(fds[i]);
	return k;
}

int main(int argc, char **argv)
{
	conf_init(argc, argv, 40);
	if (C.nextra < 2 || atoi(C.extra[0]) < 1 || atoi(C.extra[0]) > 60) {
		fprintf(stderr, "need BACKLOG hold|accepting\n");
		return 2;
	}
	int backlog = atoi(C.extra[0]);
	int hold = strcmp(C.extra[1], "hold") == 0;
	int n = backlog + 3;
	say("backlog %d, %s, %d connections", backlog, hold ? "no accept while connecting" : "accepting as they come", n);
	if (C.server) {
		conf_listen(backlog);
		set_nonblock(C.lfd, 1);
		int fds[64], got = 0;
		if (!hold) {
			step("accepting");
			while (!sync_test("round1") && got < 64) {
				int fd = accept(C.lfd, NULL, NULL);
				if (fd >= 0)
					fds[got++] = fd;
				else
					msleep(1);
			}
			say("accepted %d while the client connected", got);
		} else {
			step("hold");
			sync_wait("round1");
			for (int i = 0; i < 5000 && got == 0; i++) {
				int fd = accept(C.lfd, NULL, NULL);
				if (fd >= 0)
					fds[got++] = fd;
				else
					msleep(1);
			}
			say("accepted %d", got);
			sync_post("one");
			sync_wait("round2");
			int more = 0, fd;
			while ((fd = accept(C.lfd, NULL, NULL)) >= 0 && got < 64) {
				fds[got++] = fd;
				more++;
			}
			say("then drained %d more (queue), then %s", more, res(fd));
		}
		sync_post("drained");
		sync_wait("closed");
		for (int i = 0; i < got; i++)
			close(fds[i]);
		close(C.lfd);
	} else {
		sync_wait("listening");
		int fds[64] = { 0 };
		step("round1");
		for (int i = 0; i < n; i++) {
			fds[i] = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
			int r = connect(fds[i], (struct sockaddr *)&C.addr, sizeof C.addr);
			if (r < 0 && errno != EINPROGRESS)
				say("connect %d: %s", i, res(r));
			double end = now_s() + 0.1;
			while (!completed(fds[i]) && now_s() < end)
				msleep(1);
			if (completed(fds[i]))
				msleep(100);
		}
		int done = count_done(fds, n);
		say("completed %d of %d", done, n);
		sync_post("round1");
		if (hold) {
			step("round2");
			sync_wait("one");
			msleep(1800);
			done = count_done(fds, n);
			say("after the server accepted one, within 1.8 s: completed %d of %d", done, n);
			sync_post("round2");
		}
		sync_wait("drained");
		for (int i = 0; i < n; i++)
			close(fds[i]);
		sync_post("closed");
	}
	return 0;
}
