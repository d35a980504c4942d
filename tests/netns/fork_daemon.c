/* daemon() under xtcp (t_fork.sh): listens, then daemon(0, 0) (the parent
 * exits at once), then the daemon serves: "hello\n" gets "daemon\n".
 *   fork_daemon IP PORT PIDFILE */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

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
