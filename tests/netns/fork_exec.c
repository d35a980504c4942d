/* One engine connection survives everything a child can do (t_fork.sh).
 * Accepts one connection, then answers "ping K\n" with "pong K\n"; before
 * answering round K it does step K with the connection and listener open:
 *   1 fork, the child _exit()s at once; then a _Fork() child (no atfork
 *     handlers: before any vfork, this alone must make the library check
 *     the pid) closes both sockets and opens one
 *   2 fork, the child exit()s
 *   3 fork, the child closes both sockets and exit()s
 *   4 fork + exec /bin/true                   5 vfork + exec /bin/true
 *   6 vfork, dup2/close/socket in the child, then exec /bin/true
 *   7 posix_spawn /bin/true
 *   8 fork, the child uses the inherited connection: it is the parent's, so
 *     the child sees an unconnected socket (send EPIPE, recv ENOTCONN); on
 *     the kernel (FORK_EXEC_KERNEL=1) it is shared, and the child only looks
 *   9 fork, the child sleeps 200 ms without a socket call (redis BGSAVE)
 *      while the parent goes on answering
 *  10 fork, the child opens a socket of its own, connects to PEER:PORT2 and
 *     reads one line (a child with its own engine, beside the parent's)
 *  11 fork + exec of CLIENT (fork_client, LD_PRELOAD still set: an engine of
 *     a new program on the same address) that connects to PEER:PORT2 and
 *     stays a second, while rounds 12 to 15 (100 ms each) go on here
 *   fork_exec IP PORT PEER PORT2 READYFILE CLIENT */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

extern char **environ;
static int failures;
static pid_t bgsave; /* step 9's child, reaped at the end */
static const char *client; /* step 11's program */
static pid_t lingering;    /* step 11's child */

static void check_child(pid_t pid, int step)
{
	int st;
	if (pid < 0) {
		fprintf(stderr, "step %d: fork: %s\n", step, strerror(errno));
		failures++;
		return;
	}
	if (waitpid(pid, &st, 0) != pid || !WIFEXITED(st) || WEXITSTATUS(st) != 0) {
		fprintf(stderr, "step %d: child status %#x\n", step, st);
		failures++;
	}
}

static int readline(int fd, char *buf, size_t len)
{
	size_t n = 0;
	while (n + 1 < len) {
		ssize_t r = read(fd, buf + n, 1);
		if (r <= 0)
			return -1;
		if (buf[n++] == '\n')
			break;
	}
	buf[n] = 0;
	return (int)n;
}

static int child_own_socket(const char *peer, int port)
{
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port) };
	inet_pton(AF_INET, peer, &a.sin_addr);
	char line[64];
	if (fd < 0 || connect(fd, (struct sockaddr *)&a, sizeof(a)) < 0 || readline(fd, line, sizeof(line)) <= 0) {
		fprintf(stderr, "step 10: child connect/read: %s\n", strerror(errno));
		return 1;
	}
	close(fd);
	return strcmp(line, "hi\n") ? 1 : 0;
}

static void step(int k, int c, int l, const char *peer, int port2)
{
	pid_t pid;
	char *argv[] = { "/bin/true", NULL };
	switch (k) {
	case 1:
		if ((pid = fork()) == 0)
			_exit(0);
		check_child(pid, k);
		if ((pid = _Fork()) == 0) {
			if (close(c) < 0 || close(l) < 0 || socket(AF_INET, SOCK_STREAM, 0) < 0)
				_exit(126);
			_exit(0);
		}
		check_child(pid, k);
		break;
	case 2:
		if ((pid = fork()) == 0)
			exit(0);
		check_child(pid, k);
		break;
	case 3:
		if ((pid = fork()) == 0) {
			close(c);
			close(l);
			exit(0);
		}
		check_child(pid, k);
		break;
	case 4:
		if ((pid = fork()) == 0) {
			execv("/bin/true", argv);
			_exit(127);
		}
		check_child(pid, k);
		break;
	case 5:
		if ((pid = vfork()) == 0) {
			execv("/bin/true", argv);
			_exit(127);
		}
		check_child(pid, k);
		break;
	case 6:
		if ((pid = vfork()) == 0) {
			if (dup2(c, 60) < 0 || close(c) < 0 || close(l) < 0 || socket(AF_INET, SOCK_STREAM, 0) < 0)
				_exit(126);
			execv("/bin/true", argv);
			_exit(127);
		}
		check_child(pid, k);
		break;
	case 7:
		if (posix_spawn(&pid, "/bin/true", NULL, NULL, argv, environ) != 0)
			pid = -1;
		check_child(pid, k);
		break;
	case 8:
		if ((pid = fork()) == 0) {
			char b;
			if (getenv("FORK_EXEC_KERNEL"))
				_exit(recv(c, &b, 1, MSG_DONTWAIT) < 0 && errno == EAGAIN ? 0 : 1);
			int e1 = send(c, "x", 1, MSG_NOSIGNAL) < 0 ? errno : 0;
			int e2 = recv(c, &b, 1, MSG_DONTWAIT) < 0 ? errno : 0;
			if (e1 != EPIPE || e2 != ENOTCONN) {
				fprintf(stderr, "step 8: child send %s, recv %s\n", strerror(e1), strerror(e2));
				_exit(1);
			}
			_exit(0);
		}
		check_child(pid, k);
		break;
	case 9:
		if ((pid = fork()) == 0) {
			usleep(200000);
			_exit(0);
		}
		bgsave = pid; /* reaped after the next rounds, as redis does */
		break;
	case 10:
		if ((pid = fork()) == 0)
			_exit(child_own_socket(peer, port2));
		check_child(pid, k);
		break;
	case 11:
		if ((pid = fork()) == 0) {
			char p2[16];
			snprintf(p2, sizeof(p2), "%d", port2);
			execl(client, client, "linger", peer, p2, "1000", (char *)NULL);
			_exit(127);
		}
		lingering = pid; /* reaped at the end */
		break;
	case 12:
	case 13:
	case 14:
	case 15:
		usleep(100000);
		break;
	}
}

int main(int argc, char **argv)
{
	if (argc != 7)
		return 2;
	client = argv[6];
	int l = socket(AF_INET, SOCK_STREAM, 0), one = 1;
	setsockopt(l, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons((uint16_t)atoi(argv[2])) };
	inet_pton(AF_INET, argv[1], &a.sin_addr);
	if (bind(l, (struct sockaddr *)&a, sizeof(a)) < 0 || listen(l, 8) < 0) {
		perror("bind/listen");
		return 1;
	}
	FILE *f = fopen(argv[5], "w");
	if (f)
		fclose(f);
	int c = accept(l, NULL, NULL);
	if (c < 0) {
		perror("accept");
		return 1;
	}
	char line[64];
	int k = 0;
	while (readline(c, line, sizeof(line)) > 0) {
		if (sscanf(line, "ping %d", &k) != 1)
			break;
		step(k, c, l, argv[3], atoi(argv[4]));
		int len = snprintf(line, sizeof(line), "pong %d\n", k);
		if (write(c, line, (size_t)len) != len) {
			perror("write");
			return 1;
		}
	}
	if (bgsave)
		check_child(bgsave, 9);
	if (lingering)
		check_child(lingering, 11);
	printf("rounds %d, failures %d\n", k + 1, failures);
	return failures || k < 15 ? 1 : 0;
}
