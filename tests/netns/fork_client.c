/* Kernel-side client for t_fork.sh (runs in ns B, not under xtcp).
 *   fork_client count IP PORT N   N connections one after another: sends
 *        "hello\n", reads one reply line; prints how many replies each
 *        distinct line got; exit 0 if all N were answered.
 *   fork_client echo IP PORT ROUNDS   one connection: ROUNDS times sends
 *        "ping K\n" and expects "pong K\n" back; exit 0 if all came.
 *   fork_client serve IP PORT N   listens; answers N connections with "hi\n".
 *   fork_client linger IP PORT MS  connects, reads one line, stays MS ms. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

static int dial(const char *ip, int port)
{
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	struct timeval tv = { 5, 0 };
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port) };
	inet_pton(AF_INET, ip, &a.sin_addr);
	if (connect(fd, (struct sockaddr *)&a, sizeof(a)) < 0) {
		perror("connect");
		close(fd);
		return -1;
	}
	return fd;
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

int main(int argc, char **argv)
{
	if (argc != 5)
		return 2;
	const char *ip = argv[2];
	int port = atoi(argv[3]), n = atoi(argv[4]);
	if (!strcmp(argv[1], "count")) {
		char names[16][64];
		int counts[16] = { 0 }, kinds = 0, ok = 0;
		for (int i = 0; i < n; i++) {
			int fd = dial(ip, port);
			char line[64];
			if (fd < 0)
				continue;
			if (write(fd, "hello\n", 6) == 6 && readline(fd, line, sizeof(line)) > 0) {
				int k;
				for (k = 0; k < kinds && strcmp(names[k], line); k++)
					;
				if (k == kinds && kinds < 16)
					strcpy(names[kinds++], line);
				if (k < 16)
					counts[k]++;
				ok++;
			} else {
				fprintf(stderr, "connection %d: no reply\n", i);
			}
			close(fd);
		}
		for (int k = 0; k < kinds; k++)
			printf("%d %s", counts[k], names[k]);
		return ok == n ? 0 : 1;
	}
	if (!strcmp(argv[1], "serve")) {
		int l = socket(AF_INET, SOCK_STREAM, 0), one = 1;
		setsockopt(l, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
		struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port) };
		inet_pton(AF_INET, ip, &a.sin_addr);
		if (bind(l, (struct sockaddr *)&a, sizeof(a)) < 0 || listen(l, 8) < 0) {
			perror("serve: bind/listen");
			return 1;
		}
		for (int i = 0; i < n; i++) {
			int c = accept(l, NULL, NULL);
			if (c < 0 || write(c, "hi\n", 3) != 3)
				return 1;
			close(c);
		}
		return 0;
	}
	if (!strcmp(argv[1], "linger")) {
		int fd = dial(ip, port);
		char line[64];
		if (fd < 0 || readline(fd, line, sizeof(line)) <= 0)
			return 1;
		usleep((useconds_t)n * 1000);
		close(fd);
		return 0;
	}
	if (!strcmp(argv[1], "echo")) {
		int fd = dial(ip, port);
		if (fd < 0)
			return 1;
		for (int i = 0; i < n; i++) {
			char msg[64], want[64], line[64];
			int l = snprintf(msg, sizeof(msg), "ping %d\n", i);
			snprintf(want, sizeof(want), "pong %d\n", i);
			if (write(fd, msg, (size_t)l) != l || readline(fd, line, sizeof(line)) <= 0 ||
			    strcmp(line, want)) {
				fprintf(stderr, "round %d: no pong\n", i);
				return 1;
			}
		}
		printf("echo: %d rounds\n", n);
		return 0;
	}
	return 2;
}
