/* Edge-triggered epoll (EPOLLIN | EPOLLET) on a connected socket: every
 * arrival of new data is an edge, even when data was already queued (Linux
 * ep_poll_callback on each sk_data_ready).  Each end is the receiver once:
 *   1  the server watches, the client sends; 2  the other way round.
 * The receiver sees 100 bytes (one event), reads 10: no event while nothing
 * new arrives; 1 byte more arrives: one event again, though the socket was
 * readable all along; reads the 91 bytes: no event; 1 byte more: one event. */
#include "common.h"
#include <sys/epoll.h>

static char phase = '1';

/* The sync point NAME of the current phase. */
static const char *at(const char *name)
{
	static char b[8][32];
	static int i;
	i = (i + 1) % 8;
	snprintf(b[i], sizeof b[i], "%c%s", phase, name);
	return b[i];
}

static const char *ev_str(int ep)
{
	static char b[64];
	struct epoll_event e[4];
	int n = epoll_wait(ep, e, 4, 300);
	if (n <= 0) {
		snprintf(b, sizeof b, "%s", res(n));
		return b;
	}
	snprintf(b, sizeof b, "%d event(s):%s%s%s", n, (e[0].events & EPOLLIN) ? " IN" : "",
		 (e[0].events & EPOLLOUT) ? " OUT" : "", (e[0].events & EPOLLHUP) ? " HUP" : "");
	return b;
}

static void receiver(int fd, const char *who)
{
	char buf[256];
	int ep = epoll_create1(0);
	struct epoll_event ev = { .events = EPOLLIN | EPOLLET, .data.fd = fd };
	if (ep < 0 || epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev) < 0)
		die("epoll");
	say("%s: nothing sent yet: %s", who, ev_str(ep));
	sync_post(at("r-armed"));
	sync_wait(at("s-100"));
	say("%s: FIONREAD after 100 bytes: %d", who, wait_fionread(fd, 100, 2000));
	say("%s: epoll_wait: %s", who, ev_str(ep));
	say("%s: read 10: %s", who, res(read(fd, buf, 10)));
	say("%s: epoll_wait, nothing new: %s", who, ev_str(ep));
	sync_post(at("r-more"));
	sync_wait(at("s-1"));
	say("%s: FIONREAD after 1 byte more: %d", who, wait_fionread(fd, 91, 2000));
	say("%s: epoll_wait, new data on a readable socket: %s", who, ev_str(ep));
	say("%s: epoll_wait again: %s", who, ev_str(ep));
	say("%s: read all: %s", who, res(read(fd, buf, sizeof buf)));
	say("%s: epoll_wait, drained: %s", who, ev_str(ep));
	sync_post(at("r-last"));
	sync_wait(at("s-last"));
	say("%s: FIONREAD after the last byte: %d", who, wait_fionread(fd, 1, 2000));
	say("%s: epoll_wait: %s", who, ev_str(ep));
	close(ep);
}

static void sender(int fd, const char *who)
{
	char buf[100];
	memset(buf, 'e', sizeof buf);
	sync_wait(at("r-armed"));
	say("%s: send 100: %s", who, res(write_all(fd, buf, 100)));
	sync_post(at("s-100"));
	sync_wait(at("r-more"));
	say("%s: send 1: %s", who, res(send(fd, "x", 1, 0)));
	sync_post(at("s-1"));
	sync_wait(at("r-last"));
	say("%s: send 1: %s", who, res(send(fd, "y", 1, 0)));
	sync_post(at("s-last"));
}

int main(int argc, char **argv)
{
	conf_init(argc, argv, 30);
	if (C.server) {
		conf_listen(8);
		int fd = conf_accept();
		step("1 server");
		receiver(fd, "1 server");
		sync_wait("c1-done");
		step("2 server");
		phase = '2';
		sender(fd, "2 server");
		sync_wait("c2-done");
		close(fd);
		close(C.lfd);
	} else {
		int fd = conf_connect();
		step("1 client");
		sender(fd, "1 client");
		sync_post("c1-done");
		step("2 client");
		phase = '2';
		receiver(fd, "2 client");
		sync_post("c2-done");
		close(fd);
	}
	return 0;
}
