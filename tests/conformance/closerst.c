/* Closing with unread data, and data arriving after close.  Directional: the
 * subject (XT_SUBJECT) closes; the other end (a kernel observer) reports.
 *  1  the subject has 100 unread bytes and closes: Linux sends RST instead
 *     of FIN (RFC 2525 2.17; RFC 793 would send FIN): the observer's blocking
 *     recv fails with ECONNRESET, the next recv returns 0, send gives EPIPE.
 *  2  the subject closes with nothing unread (FIN); the observer reads EOF
 *     and then sends: the closed end answers the data with RST, so the next
 *     send fails.  Linux: the RST in CLOSE_WAIT sets EPIPE (not ECONNRESET),
 *     with SIGPIPE; recv still returns 0 (the FIN was seen).
 *  3  the subject has unread data, shuts down its write side (a FIN, not a
 *     RST), the observer reads EOF; then the subject closes: RST. */
#include "common.h"

int main(int argc, char **argv)
{
	conf_init(argc, argv, 30);
	char buf[256];
	memset(buf, 'u', sizeof buf);
	if (C.server)
		conf_listen(8);
	int fd;
	const char *me = C.subject ? "closer" : "observer";

	/* 1 */
	fd = conf_pair();
	step("1");
	if (C.subject) {
		sync_wait("1-sent");
		say("1 %s: FIONREAD %d", me, wait_fionread(fd, 100, 2000));
		say("1 %s: close with 100 unread bytes: %s", me, res(close(fd)));
		sync_post("1-closed");
	} else {
		say("1 %s: send: %s", me, res(send(fd, buf, 100, 0)));
		sync_post("1-sent");
		sync_wait("1-closed");
		say("1 %s: recv: %s", me, res(recv(fd, buf, sizeof buf, 0)));
		say("1 %s: recv: %s", me, res(recv(fd, buf, sizeof buf, 0)));
		say("1 %s: send: %s", me, send_sig(fd, buf, 10, 0));
		say("1 %s: SO_ERROR: %d", me, get_int(fd, SOL_SOCKET, SO_ERROR));
		close(fd);
		sync_post("1-done");
	}
	sync_wait("1-done");

	/* 2 */
	fd = conf_pair();
	step("2");
	if (C.subject) {
		say("2 %s: close with nothing unread: %s", me, res(close(fd)));
		sync_post("2-closed");
	} else {
		sync_wait("2-closed");
		say("2 %s: recv: %s", me, res(recv(fd, buf, sizeof buf, 0)));
		say("2 %s: send after EOF: %s", me, send_sig(fd, buf, 10, 0));
		msleep(SETTLE_MS);
		say("2 %s: send again (RST came back): %s", me, send_sig(fd, buf, 10, 0));
		say("2 %s: send again: %s", me, send_sig(fd, buf, 10, 0));
		say("2 %s: recv: %s", me, res(recv(fd, buf, sizeof buf, 0)));
		close(fd);
		sync_post("2-done");
	}
	sync_wait("2-done");

	/* 3 */
	fd = conf_pair();
	step("3");
	if (C.subject) {
		sync_wait("3-sent");
		say("3 %s: FIONREAD %d", me, wait_fionread(fd, 50, 2000));
		say("3 %s: shutdown SHUT_WR with unread data: %s", me, res(shutdown(fd, SHUT_WR)));
		sync_post("3-shut");
		sync_wait("3-eof");
		say("3 %s: close: %s", me, res(close(fd)));
		sync_post("3-closed");
	} else {
		say("3 %s: send: %s", me, res(send(fd, buf, 50, 0)));
		sync_post("3-sent");
		sync_wait("3-shut");
		say("3 %s: recv: %s", me, res(recv(fd, buf, sizeof buf, 0)));
		sync_post("3-eof");
		sync_wait("3-closed");
		msleep(SETTLE_MS);
		say("3 %s: send: %s", me, send_sig(fd, buf, 10, 0));
		say("3 %s: recv: %s", me, res(recv(fd, buf, sizeof buf, 0)));
		close(fd);
		sync_post("3-done");
	}
	sync_wait("3-done");
	if (C.server)
		close(C.lfd);
	return 0;
}
