/* A blocking pre-fork server under xtcp (t_fork.sh): the parent listens and
 * forks N children; each accept()s and answers "hello\n" with "child I\n".
 * The parent never accepts; it waits for its children.
 *   fork_prefork IP PORT N DIR    (DIR/ready.I once child I is about to accept) */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

static void serve(int l, int idx, const char *dir)
{
	/* A poll() of the listener registers this child as accepting (under
	 * xtcp, the family's SYNs then may come here) before it says it is
	 * ready.  Not an accept() with SO_RCVTIMEO or O_NONBLOCK: both belong to
	 * the open file description every child shares, so one child's reset
	 * of a short timeout can leave a sibling's first accept() blocking for
	 * ever, and its short timeout can make a sibling's accept() fail with
	 * EAGAIN (on the kernel too). */
	struct pollfd p = { .fd = l, .events = POLLIN };
	(void)poll(&p, 1, 0);
	char path[512];
	snprintf(path, sizeof(path), "%s/ready.%d", dir, idx);
	FILE *f = fopen(path, "w");
	if (f)
		fclose(f);
	for (;;) {
		int c = accept(l, NULL, NULL);
		if (c < 0) {
			perror("accept");
			_exit(3);
		}
		char buf[64];
		ssize_t n = read(c, buf, sizeof(buf));
		if (n > 0) {
			int len = snprintf(buf, sizeof(buf), "child %d\n", idx);
			if (write(c, buf, (size_t)len) != len)
				perror("write");
		}
		close(c);
	}
}

int main(int argc, char **argv)
{
	if (argc != 5)
		return 2;
	int n = atoi(argv[3]);
	int l = socket(AF_INET, SOCK_STREAM, 0), one = 1;
	setsockopt(l, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons((uint16_t)atoi(argv[2])) };
	inet_pton(AF_INET, argv[1], &a.sin_addr);
	if (bind(l, (struct sockaddr *)&a, sizeof(a)) < 0 || listen(l, 64) < 0) {
		perror("bind/listen");
		return 1;
	}
	pid_t kids[16];
	for (int i = 0; i < n && i < 16; i++) {
		kids[i] = fork();
		if (kids[i] < 0) {
			perror("fork");
			return 1;
		}
		if (kids[i] == 0)
			serve(l, i, argv[4]);
	}
	int st, bad = 0;
	for (int i = 0; i < n && i < 16; i++)
		if (waitpid(kids[i], &st, 0) == kids[i] && !(WIFSIGNALED(st) && WTERMSIG(st) == SIGTERM))
			bad++;
	return bad ? 1 : 0;
}
