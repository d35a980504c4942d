/* fork() while other threads use the library's locks (t_fork.sh): one
 * thread opens and closes sockets in a loop (the socket pool's and the fd
 * table's locks), the main thread forks children that each open a socket
 * (which takes those locks again in the child, and the statistics' lock when
 * it attaches) and exit.  A lock held by the other thread at the fork would
 * be held for ever in the child: the child hangs, and this reports it.
 *   fork_stress N       exit 0: all N children exited within 10 s each */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static atomic_int stop;

static void *churn(void *arg)
{
	(void)arg;
	while (!atomic_load(&stop)) {
		int s = socket(AF_INET, SOCK_STREAM, 0);
		if (s >= 0)
			close(s);
	}
	return NULL;
}

int main(int argc, char **argv)
{
	int n = argc > 1 ? atoi(argv[1]) : 100, hung = 0, bad = 0;
	int s = socket(AF_INET, SOCK_STREAM, 0); /* the engine starts here */
	if (s < 0)
		return 2;
	pthread_t t;
	if (pthread_create(&t, NULL, churn, NULL) != 0)
		return 2;
	for (int i = 0; i < n; i++) {
		pid_t pid = fork();
		if (pid < 0) {
			perror("fork");
			bad++;
			break;
		}
		if (pid == 0) {
			int c = socket(AF_INET, SOCK_STREAM, 0);
			_exit(c >= 0 && close(c) == 0 ? 0 : 1);
		}
		int st = 0;
		struct timespec t0, now;
		clock_gettime(CLOCK_MONOTONIC, &t0);
		for (;;) {
			pid_t r = waitpid(pid, &st, WNOHANG);
			if (r == pid)
				break;
			clock_gettime(CLOCK_MONOTONIC, &now);
			if (now.tv_sec - t0.tv_sec >= 10) {
				fprintf(stderr, "child %d (fork %d) hung\n", (int)pid, i);
				kill(pid, SIGKILL);
				waitpid(pid, &st, 0);
				hung++;
				break;
			}
			usleep(1000);
		}
		if (!hung && !(WIFEXITED(st) && WEXITSTATUS(st) == 0))
			bad++;
		if (hung)
			break;
	}
	atomic_store(&stop, 1);
	pthread_join(t, NULL);
	printf("forks %d, hung %d, failed %d\n", n, hung, bad);
	return hung || bad ? 1 : 0;
}
