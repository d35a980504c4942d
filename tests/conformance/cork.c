/* What a kernel peer receives with TCP_CORK and TCP_NODELAY.  Directional:
 * the subject sends; the other end (always a kernel socket) observes with
 * FIONREAD at fixed points and counts data segments with TCP_INFO
 * (tcpi_data_segs_in), a fresh connection per test.
 *  1  cork, 10 x 100 bytes, uncork: 1000 bytes in one segment.
 *  2  cork, 100 bytes, wait 600 ms, uncork: observed at +100 ms and +400 ms
 *     (Linux's 200 ms ceiling on corking, tcp(7)).
 *  3  cork, 40 x 100 bytes: the full-sized segments go out while corked,
 *     the 4000 % MSS tail waits for uncork (observed at +100 ms).
 *  4  TCP_NODELAY, 10 x 100 bytes 5 ms apart: 10 segments.
 *  5  corked 100 bytes, then TCP_NODELAY set: Linux pushes the pending data
 *     once; a later 100 bytes (still corked) wait for uncork. */
#include "common.h"

static void obs_report(int fd, const char *tag, int expect)
{
	int have = wait_fionread(fd, expect, 3000);
	msleep(50);
	struct tcp_info ti;
	socklen_t tl = sizeof ti;
	memset(&ti, 0, sizeof ti);
	int r = getsockopt(fd, IPPROTO_TCP, TCP_INFO, &ti, &tl);
	char buf[8192];
	int err;
	(void)have;
	long n = 0;
	set_nonblock(fd, 1);
	ssize_t k;
	while ((k = recv(fd, buf, sizeof buf, 0)) > 0)
		n += k;
	err = errno;
	(void)err;
	say("%s observer: %ld bytes in %u data segments%s", tag, n, ti.tcpi_data_segs_in, r < 0 ? " (TCP_INFO failed)" : "");
	set_nonblock(fd, 0);
}

static int rcv_mss(int fd)
{
	struct tcp_info ti;
	socklen_t tl = sizeof ti;
	memset(&ti, 0, sizeof ti);
	getsockopt(fd, IPPROTO_TCP, TCP_INFO, &ti, &tl);
	return (int)ti.tcpi_rcv_mss;
}

static void segs_of(int fd, int bytes, const char *tag, const char *when)
{
	int mss = rcv_mss(fd);
	if (mss <= 0)
		mss = 1;
	say("%s observer: %s: %d full-sized segments + %d bytes", tag, when, bytes / mss, bytes % mss);
}

int main(int argc, char **argv)
{
	conf_init(argc, argv, 30);
	char buf[4096];
	memset(buf, 'c', sizeof buf);
	if (C.server)
		conf_listen(8);
	int fd;

	/* 1 */
	step("1");
	fd = conf_pair();
	if (C.subject) {
		sync_wait("1-ready");
		say("1 sender: TCP_CORK 1: %s", res(set_int(fd, IPPROTO_TCP, TCP_CORK, 1)));
		say("1 sender: TCP_CORK reads back %d", get_int(fd, IPPROTO_TCP, TCP_CORK));
		int ok = 1;
		for (int i = 0; i < 10; i++)
			ok &= send(fd, buf, 100, 0) == 100;
		say("1 sender: 10 sends of 100 bytes: %s", ok ? "all 100" : "short");
		say("1 sender: TCP_CORK 0: %s", res(set_int(fd, IPPROTO_TCP, TCP_CORK, 0)));
		sync_post("1-sent");
		sync_wait("1-done");
	} else {
		sync_post("1-ready");
		sync_wait("1-sent");
		obs_report(fd, "1", 1000);
		sync_post("1-done");
	}
	close(fd);

	/* 2 */
	step("2");
	fd = conf_pair();
	if (C.subject) {
		sync_wait("2-ready");
		set_int(fd, IPPROTO_TCP, TCP_CORK, 1);
		say("2 sender: corked, send 100: %s", res(send(fd, buf, 100, 0)));
		sync_post("2-written");
		msleep(600);
		say("2 sender: TCP_CORK 0: %s", res(set_int(fd, IPPROTO_TCP, TCP_CORK, 0)));
		sync_post("2-uncorked");
		sync_wait("2-done");
	} else {
		sync_post("2-ready");
		sync_wait("2-written");
		msleep(100);
		int f1 = fionread(fd);
		msleep(300);
		int f2 = fionread(fd);
		say("2 observer: while corked: at +100 ms %d bytes, at +400 ms %d bytes", f1, f2);
		sync_wait("2-uncorked");
		obs_report(fd, "2", 100);
		sync_post("2-done");
	}
	close(fd);

	/* 3 */
	step("3");
	fd = conf_pair();
	if (C.subject) {
		sync_wait("3-ready");
		set_int(fd, IPPROTO_TCP, TCP_CORK, 1);
		int ok = 1;
		for (int i = 0; i < 40; i++)
			ok &= send(fd, buf, 100, 0) == 100;
		say("3 sender: corked, 40 sends of 100 bytes: %s", ok ? "all 100" : "short");
		sync_post("3-written");
		sync_wait("3-checked");
		say("3 sender: TCP_CORK 0: %s", res(set_int(fd, IPPROTO_TCP, TCP_CORK, 0)));
		sync_post("3-uncorked");
		sync_wait("3-done");
	} else {
		sync_post("3-ready");
		sync_wait("3-written");
		msleep(100);
		segs_of(fd, fionread(fd), "3", "while corked, at +100 ms");
		sync_post("3-checked");
		sync_wait("3-uncorked");
		obs_report(fd, "3", 4000);
		sync_post("3-done");
	}
	close(fd);

	/* 4 */
	step("4");
	fd = conf_pair();
	if (C.subject) {
		sync_wait("4-ready");
		say("4 sender: TCP_NODELAY 1: %s", res(set_int(fd, IPPROTO_TCP, TCP_NODELAY, 1)));
		say("4 sender: TCP_NODELAY reads back %d", get_int(fd, IPPROTO_TCP, TCP_NODELAY));
		short two = 0;
		say("4 sender: TCP_CORK with a 2-byte value: %s",
		    res(setsockopt(fd, IPPROTO_TCP, TCP_CORK, &two, sizeof(two))));
		say("4 sender: TCP_CORK from a bad address: %s",
		    res(setsockopt(fd, IPPROTO_TCP, TCP_CORK, (void *)8, sizeof(int))));
		say("4 sender: TCP_CORK still reads back %d", get_int(fd, IPPROTO_TCP, TCP_CORK));
		int ok = 1;
		for (int i = 0; i < 10; i++) {
			ok &= send(fd, buf, 100, 0) == 100;
			msleep(5);
		}
		say("4 sender: 10 sends of 100 bytes: %s", ok ? "all 100" : "short");
		sync_post("4-sent");
		sync_wait("4-done");
	} else {
		sync_post("4-ready");
		sync_wait("4-sent");
		obs_report(fd, "4", 1000);
		sync_post("4-done");
	}
	close(fd);

	/* 5 */
	step("5");
	fd = conf_pair();
	if (C.subject) {
		sync_wait("5-ready");
		set_int(fd, IPPROTO_TCP, TCP_CORK, 1);
		say("5 sender: corked, send 100: %s", res(send(fd, buf, 100, 0)));
		say("5 sender: TCP_NODELAY 1 while corked: %s", res(set_int(fd, IPPROTO_TCP, TCP_NODELAY, 1)));
		sync_post("5-nodelay");
		sync_wait("5-checked");
		say("5 sender: still corked, send 100: %s", res(send(fd, buf, 100, 0)));
		sync_post("5-second");
		sync_wait("5-checked2");
		say("5 sender: TCP_CORK 0: %s", res(set_int(fd, IPPROTO_TCP, TCP_CORK, 0)));
		sync_post("5-uncorked");
		sync_wait("5-done");
	} else {
		sync_post("5-ready");
		sync_wait("5-nodelay");
		msleep(100);
		say("5 observer: 100 ms after TCP_NODELAY: %d bytes", fionread(fd));
		sync_post("5-checked");
		sync_wait("5-second");
		msleep(100);
		say("5 observer: 100 ms after the second send: %d bytes", fionread(fd));
		sync_post("5-checked2");
		sync_wait("5-uncorked");
		obs_report(fd, "5", 200);
		sync_post("5-done");
	}
	close(fd);
	if (C.server)
		close(C.lfd);
	return 0;
}
