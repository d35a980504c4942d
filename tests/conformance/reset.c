/* The peer resets the connection (the server aborts: SO_LINGER {1, 0} and
 * close) while the client is reading, while it is writing, and with data
 * still unread on the client's side.
 *  1  reading: the blocked recv fails with ECONNRESET; then recv returns 0;
 *     send with MSG_NOSIGNAL: EPIPE without SIGPIPE; send: EPIPE + SIGPIPE.
 *  2  writing: the client writes 64 KiB chunks to a server that never reads;
 *     the server aborts: after some successful sends, the blocked one returns
 *     (a short count) or fails, and the first failure is ECONNRESET (no
 *     SIGPIPE); then EPIPE + SIGPIPE.
 *  3  unread data: the server sends 10 bytes, the client lets them arrive,
 *     then the server aborts.  Linux keeps the received data readable after
 *     the RST (RFC 793 says to flush the queues): recv returns the 10 bytes,
 *     then ECONNRESET, then 0. */
#include "common.h"

static void abort_conn(int fd)
{
	say("server: SO_LINGER {1,0}: %s", res(set_linger(fd, 1, 0)));
	say("server: close (abort): %s", res(close(fd)));
}

int main(int argc, char **argv)
{
	conf_init(argc, argv, 30);
	static char buf[65536];
	memset(buf, 'w', sizeof buf);
	if (C.server) {
		conf_listen(8);
		step("1");
		int fd = conf_accept();
		sync_wait("1-reading");
		msleep(SETTLE_MS);
		abort_conn(fd);
		step("2");
		fd = conf_accept();
		sync_wait("2-writing");
		msleep(500);
		abort_conn(fd);
		step("3");
		fd = conf_accept();
		say("server: send: %s", res(send(fd, "0123456789", 10, 0)));
		sync_wait("3-arrived");
		abort_conn(fd);
		sync_post("3-aborted");
		sync_wait("done");
		close(C.lfd);
	} else {
		step("1");
		int fd = conf_connect();
		sync_post("1-reading");
		say("1 client: recv (blocks): %s", res(recv(fd, buf, sizeof buf, 0)));
		say("1 client: recv: %s", res(recv(fd, buf, sizeof buf, 0)));
		say("1 client: send MSG_NOSIGNAL: %s", send_sig(fd, buf, 10, MSG_NOSIGNAL));
		say("1 client: send: %s", send_sig(fd, buf, 10, 0));
		say("1 client: SO_ERROR: %d", get_int(fd, SOL_SOCKET, SO_ERROR));
		close(fd);

		step("2");
		fd = conf_connect();
		sync_post("2-writing");
		long ok = 0, shorts = 0;
		ssize_t r;
		int before = g_sigpipe;
		for (int i = 0; i < 100000; i++) {
			r = send(fd, buf, sizeof buf, 0);
			if (r < 0)
				break;
			if (r < (ssize_t)sizeof buf)
				shorts++;
			ok++;
		}
		int e = errno;
		say("2 client: sends succeeded before the error: %s, short counts: at most one %s", YN(ok > 0), YN(shorts <= 1));
		errno = e;
		say("2 client: first failing send: %s, SIGPIPE %d", res(r), (int)(g_sigpipe - before));
		say("2 client: send: %s", send_sig(fd, buf, 10, 0));
		say("2 client: recv: %s", res(recv(fd, buf, sizeof buf, 0)));
		close(fd);

		step("3");
		fd = conf_connect();
		say("3 client: FIONREAD %d", wait_fionread(fd, 10, 2000));
		sync_post("3-arrived");
		sync_wait("3-aborted");
		msleep(SETTLE_MS);
		r = recv(fd, buf, sizeof buf, 0);
		say("3 client: recv: %s '%.*s'", res(r), (int)(r > 0 ? r : 0), buf);
		say("3 client: recv: %s", res(recv(fd, buf, sizeof buf, 0)));
		say("3 client: recv: %s", res(recv(fd, buf, sizeof buf, 0)));
		close(fd);
		sync_post("done");
	}
	return 0;
}
