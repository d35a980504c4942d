/* A listener shared through fork(): O_NONBLOCK (of the open file description)
 * and SO_RCVTIMEO (of the socket) set by the parent after the fork apply to
 * the child's accept(), as on Linux (t_fork.sh).
 *   fork_shared IP PORT
 * The child registers with poll(), then, each time the parent says go:
 *   1. the parent set O_NONBLOCK: accept() fails with EAGAIN at once;
 *   2. the parent cleared it and set SO_RCVTIMEO 200 ms: accept() fails
 *      with EAGAIN (the timeout), instead of blocking for ever.
 * alarm() bounds every wait of the child: a child that blocks is killed and
 * the step reported as failed.  Prints one line per step; exit 0 when both
 * passed. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <unistd.h>

static void child(int l, int go, int rep)
{
	struct pollfd p = { .fd = l, .events = POLLIN };
	(void)poll(&p, 1, 0);
	char c = 'r';
	if (write(rep, &c, 1) != 1)
		_exit(2);
	for (int step = 1; step <= 2; step++) {
		if (read(go, &c, 1) != 1)
			_exit(2);
		alarm(3);
		int r = accept(l, NULL, NULL);
		int e = errno;
		alarm(0);
		c = r < 0 && e == EAGAIN ? 'y' : 'n';
		if (write(rep, &c, 1) != 1)
			_exit(2);
	}
	_exit(0);
}

int main(int argc, char **argv)
{
	if (argc != 3)
		return 2;
	setvbuf(stdout, NULL, _IOLBF, 0);
	int l = socket(AF_INET, SOCK_STREAM, 0), one = 1;
	setsockopt(l, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons((uint16_t)atoi(argv[2])) };
	inet_pton(AF_INET, argv[1], &a.sin_addr);
	if (bind(l, (struct sockaddr *)&a, sizeof(a)) < 0 || listen(l, 16) < 0) {
		perror("bind/listen");
		return 1;
	}
	int go[2], rep[2];
	if (pipe(go) < 0 || pipe(rep) < 0)
		return 1;
	pid_t pid = fork();
	if (pid < 0)
		return 1;
	if (pid == 0) {
		close(go[1]);
		close(rep[0]);
		child(l, go[0], rep[1]);
	}
	close(go[0]);
	close(rep[1]); /* a dead child reads as EOF */
	char c;
	int ok = 0;
	if (read(rep[0], &c, 1) != 1) {
		printf("the child never got ready\n");
		return 1;
	}
	const char *what[] = { "", "O_NONBLOCK set by the parent: the child's accept() fails with EAGAIN",
			       "SO_RCVTIMEO 200 ms set by the parent: the child's accept() times out with EAGAIN" };
	for (int step = 1; step <= 2; step++) {
		if (step == 1) {
			fcntl(l, F_SETFL, fcntl(l, F_GETFL) | O_NONBLOCK);
		} else {
			fcntl(l, F_SETFL, fcntl(l, F_GETFL) & ~O_NONBLOCK);
			struct timeval tv = { 0, 200000 };
			setsockopt(l, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
		}
		c = 'g';
		if (write(go[1], &c, 1) != 1)
			return 1;
		if (read(rep[0], &c, 1) != 1) {
			printf("step %d: the child died (it blocked in accept: killed by alarm)\n", step);
			break;
		}
		printf("step %d: %s: %s\n", step, what[step], c == 'y' ? "yes" : "no");
		ok += c == 'y';
	}
	kill(pid, SIGKILL);
	waitpid(pid, NULL, 0);
	return ok == 2 ? 0 : 1;
}
