/* 1,000 concurrent connections: the client opens them one after another and
 * keeps them all open (the server accepts each; backlog 1024); then sends a
 * 4-byte index on every one, the server answers each (index ^ 0x5a5a5a5a) in
 * accept order, the client checks every answer, closes all, and the server
 * reads EOF on every one. */
#include "common.h"

#define N 1000

int main(int argc, char **argv)
{
	conf_init(argc, argv, 50);
	struct rlimit rl;
	getrlimit(RLIMIT_NOFILE, &rl);
	if (rl.rlim_cur < 4096) {
		rl.rlim_cur = rl.rlim_max < 4096 ? rl.rlim_max : 4096;
		setrlimit(RLIMIT_NOFILE, &rl);
	}
	static int fds[N];
	if (C.server) {
		conf_listen(1024);
		int n = 0;
		step("accept");
		for (; n < N; n++) {
			fds[n] = accept(C.lfd, NULL, NULL);
			if (fds[n] < 0) {
				say("accept %d: %s", n, res(-1));
				break;
			}
		}
		say("accepted %d", n);
		step("echo");
		int echoed = 0;
		for (int i = 0; i < n; i++) {
			uint32_t v;
			if (read_n(fds[i], &v, 4) != 4)
				continue;
			v ^= 0x5a5a5a5a;
			if (write_all(fds[i], &v, 4) == 4)
				echoed++;
		}
		say("answered %d", echoed);
		step("eof");
		int eofs = 0;
		for (int i = 0; i < n; i++) {
			char c;
			if (recv(fds[i], &c, 1, 0) == 0)
				eofs++;
			close(fds[i]);
		}
		say("EOF on %d", eofs);
		close(C.lfd);
	} else {
		sync_wait("listening");
		int n = 0;
		step("connect");
		for (; n < N; n++) {
			fds[n] = socket(AF_INET, SOCK_STREAM, 0);
			if (fds[n] < 0 || connect(fds[n], (struct sockaddr *)&C.addr, sizeof C.addr) < 0) {
				say("connect %d: %s", n, res(-1));
				break;
			}
		}
		say("connected %d, all open at once", n);
		step("send");
		int sent = 0, ok = 0;
		for (int i = 0; i < n; i++) {
			uint32_t v = (uint32_t)i;
			if (write_all(fds[i], &v, 4) == 4)
				sent++;
		}
		say("sent an index on %d", sent);
		step("answers");
		for (int i = 0; i < n; i++) {
			uint32_t v;
			if (read_n(fds[i], &v, 4) == 4 && v == ((uint32_t)i ^ 0x5a5a5a5a))
				ok++;
		}
		say("correct answers %d", ok);
		int closed = 0;
		for (int i = 0; i < n; i++)
			closed += close(fds[i]) == 0;
		say("closed %d", closed);
	}
	return 0;
}
