/* Not a conformance case (run.sh does not list it): the program that
 * tests/netns/t_verbs_shim.sh runs under xtcp on the verbs backend to see the
 * shim's flow-steering rules come and go.  EXTRA: N (connections, default 3).
 *
 * Each connection carries 4 bytes each way, then the other end (the kernel
 * observer) closes first: the subject (XT_SUBJECT, the end under xtcp)
 * closes passively, so its engine forgets the connection at once (no
 * TIME_WAIT on its side).  The server prints each peer's address (which
 * address the client's connections came from: the engine's or the kernel's).  Then the subject closes everything (the listener
 * too) and lives on for LINGER_MS, so that the shim's sweep (once a second)
 * removes the rules of the connections the engine has finished, before the
 * process exits. */
#include "common.h"

#define LINGER_MS 2600

static void exchange(int fd, int close_first)
{
	char b[4] = { 'p', 'i', 'n', 'g' }, r[4];
	if (write_all(fd, b, 4) != 4 || read_n(fd, r, 4) != 4)
		die("exchange");
	if (close_first) {
		close(fd);
		return;
	}
	char c;
	ssize_t k = recv(fd, &c, 1, 0);
	if (k != 0)
		say("expected EOF, got %s", res(k));
	close(fd);
}

int main(int argc, char **argv)
{
	conf_init(argc, argv, 30);
	int n = C.nextra > 0 ? atoi(C.extra[0]) : 3;
	if (n < 1 || n > 50)
		n = 3;
	if (C.server) {
		conf_listen(8);
		for (int i = 0; i < n; i++) {
			int fd = conf_accept();
			struct sockaddr_in p;
			socklen_t pl = sizeof p;
			if (getpeername(fd, (struct sockaddr *)&p, &pl) == 0)
				say("server: connection %d from %s", i + 1, ipstr(p.sin_addr));
			exchange(fd, !C.subject);
		}
		close(C.lfd);
	} else {
		for (int i = 0; i < n; i++)
			exchange(conf_connect(), !C.subject);
	}
	say("%s: %d connections done", C.role, n);
	if (C.subject) {
		step("linger");
		msleep(LINGER_MS);
	}
	return 0;
}
