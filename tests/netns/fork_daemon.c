/* daemon() under xtcp (t_fork.sh): listens, then daemon(0, 0) (the parent
 * exits at once), then the daemon serves: "hello\n" gets "daemon\n".
 * Before it serves, a clone(CLONE_VM | CLONE_VFORK) child shares its memory
 * and closes the listener: the library must see from the pid that this is
 * not the daemon (no vfork came before, so only the clone can tell it).
 *   fork_daemon IP PORT PIDFILE */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <unistd.h>

static char child_stack[256 * 1024] __attribute__((aligned(16)));

static int shared_child(void *p)
{
	int l = *(int *)p;
	if (dup2(l, 50) < 0 || close(l) < 0 || socket(AF_INET, SOCK_STREAM, 0) < 0)
		return 126;
	return 0;
}

int main(int argc, char **argv)
{
	if (argc != 4)
		return 2;
	int l = socket(AF_INET, SOCK_STREAM, 0), one = 1;
	setsockopt(l, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons((uint16_t)atoi(argv[2])) };
	inet_pton(AF_INET, argv[1], &a.sin_addr);
	if (bind(l, (struct sockaddr *)&a, sizeof(a)) < 0 || listen(l, 64) < 0) {
		perror("bind/listen");
		return 1;
	}
	if (daemon(0, 0) < 0) {
		perror("daemon");
		return 1;
	}
	/* first accept call registers us before the pid file says we are up */
	struct timeval tv = { 0, 1000 };
	setsockopt(l, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	(void)accept(l, NULL, NULL);
	tv.tv_usec = 0;
	setsockopt(l, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	int st;
	pid_t pid = clone(shared_child, child_stack + sizeof(child_stack), CLONE_VM | CLONE_VFORK | SIGCHLD, &l);
	if (pid < 0 || waitpid(pid, &st, 0) != pid || !WIFEXITED(st) || WEXITSTATUS(st) != 0)
		return 5;
	FILE *f = fopen(argv[3], "w");
	if (f) {
		fprintf(f, "%d\n", (int)getpid());
		fclose(f);
	}
	for (;;) {
		int c = accept(l, NULL, NULL);
		if (c < 0)
			return 3;
		char buf[64];
		if (read(c, buf, sizeof(buf)) > 0 && write(c, "daemon\n", 7) != 7)
			return 4;
		close(c);
	}
}
