/* Half-close with SHUT_WR, and SHUT_RD.
 *  1  the client sends a request and shuts down its write side: the server
 *     reads the request, then EOF (again EOF), and can still send its reply,
 *     which the client reads to EOF.  Writing after SHUT_WR: EPIPE + SIGPIPE.
 *     A second SHUT_WR is fine.
 *  2  the server shuts down its read side before anything arrives: recv
 *     returns 0 at once.  Linux still queues data that arrives afterwards
 *     (no RST, unlike what RFC 793/1122 leave room for): FIONREAD shows it
 *     and recv returns it, then 0 again.  The server can still send. */
#include "common.h"

int main(int argc, char **argv)
{
	conf_init(argc, argv, 30);
	char buf[4096];
	memset(buf, 'r', sizeof buf);
	if (C.server) {
		conf_listen(8);
		int fd = conf_accept();
		step("1 server");
		ssize_t n = read_n(fd, buf, sizeof buf);
		say("1 server: read until EOF: %zd bytes", n);
		say("1 server: recv again: %s", res(recv(fd, buf, 1, 0)));
		memset(buf, 'r', sizeof buf);
		sync_wait("wr2");
		say("1 server: send reply: %s", res(write_all(fd, buf, 3000)));
		say("1 server: close: %s", res(close(fd)));

		fd = conf_accept();
		step("2 server");
		say("2 server: shutdown SHUT_RD: %s", res(shutdown(fd, SHUT_RD)));
		say("2 server: recv: %s", res(recv(fd, buf, sizeof buf, 0)));
		say("2 server: shutdown SHUT_RD again: %s", res(shutdown(fd, SHUT_RD)));
		sync_post("rd");
		sync_wait("sent");
		say("2 server: FIONREAD once the client's 5 bytes arrived: %d", wait_fionread(fd, 5, 2000));
		n = recv(fd, buf, sizeof buf, 0);
		say("2 server: recv: %s '%.*s'", res(n), (int)(n > 0 ? n : 0), buf);
		say("2 server: recv: %s", res(recv(fd, buf, sizeof buf, 0)));
		say("2 server: send: %s", res(send(fd, "xyz", 3, 0)));
		say("2 server: shutdown SHUT_WR: %s", res(shutdown(fd, SHUT_WR)));
		sync_wait("done");
		say("2 server: close: %s", res(close(fd)));
		close(C.lfd);
	} else {
		int fd = conf_connect();
		step("1 client");
		say("1 client: send request: %s", res(write_all(fd, buf, 1000)));
		say("1 client: shutdown SHUT_WR: %s", res(shutdown(fd, SHUT_WR)));
		say("1 client: send after SHUT_WR: %s", send_sig(fd, "x", 1, 0));
		say("1 client: shutdown SHUT_WR again: %s", res(shutdown(fd, SHUT_WR)));
		sync_post("wr2");
		int err;
		long n = drain(fd, &err);
		say("1 client: read reply until EOF: %ld bytes, %s", n, err ? ename(err) : "EOF");
		say("1 client: shutdown SHUT_WR after both FINs: %s", res(shutdown(fd, SHUT_WR)));
		say("1 client: close: %s", res(close(fd)));

		fd = conf_connect();
		step("2 client");
		sync_wait("rd");
		say("2 client: send to a peer that did SHUT_RD: %s", res(send(fd, "abcde", 5, 0)));
		sync_post("sent");
		ssize_t r = read_n(fd, buf, 3);
		say("2 client: recv: %zd '%.*s'", r, (int)(r > 0 ? r : 0), buf);
		say("2 client: recv: %s", res(recv(fd, buf, sizeof buf, 0)));
		sync_post("done");
		close(fd);
	}
	return 0;
}
