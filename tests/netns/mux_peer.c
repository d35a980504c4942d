/* The kernel peer of mux_mixed (tests/netns/t_mux.sh): runs in the other
 * namespace and does what the program under test asks over a unix socket,
 * one command per line, answering "ok [N]" when done:
 *   C ip port   connect to the program (new connection, N = its index)
 *   A           accept the program's connection (N = its index)
 *   S i n       send n bytes on connection i
 *   D i n       read exactly n bytes from connection i
 *   F i         shutdown(SHUT_WR)
 *   R i         close with SO_LINGER {1, 0}: RST
 *   X i         close
 *   Q           quit
 * Usage: mux_peer CTL_PATH LISTEN_ADDR PORT */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

static int conns[64], nconns;

static void die(const char *what)
{
	perror(what);
	exit(1);
}

int main(int argc, char **argv)
{
	if (argc != 4) {
		fprintf(stderr, "usage: mux_peer CTL LISTEN_ADDR PORT\n");
		return 2;
	}
	alarm(120);
	int l = socket(AF_INET, SOCK_STREAM, 0);
	int one = 1;
	setsockopt(l, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons((uint16_t)atoi(argv[3])) };
	inet_pton(AF_INET, argv[2], &a.sin_addr);
	if (bind(l, (struct sockaddr *)&a, sizeof(a)) < 0 || listen(l, 16) < 0)
		die("peer listen");
	int u = socket(AF_UNIX, SOCK_STREAM, 0);
	struct sockaddr_un ua = { .sun_family = AF_UNIX };
	snprintf(ua.sun_path, sizeof(ua.sun_path), "%s", argv[1]);
	unlink(argv[1]);
	if (bind(u, (struct sockaddr *)&ua, sizeof(ua)) < 0 || listen(u, 1) < 0)
		die("peer ctl");
	int c = accept(u, NULL, NULL);
	if (c < 0)
		die("peer ctl accept");
	FILE *in = fdopen(c, "r");
	char line[256];
	static char buf[1 << 16];
	while (fgets(line, sizeof(line), in)) {
		char cmd = line[0];
		int i = 0;
		long n = 0;
		char ip[64];
		int port;
		int r = -1;
		switch (cmd) {
		case 'C':
			if (sscanf(line + 1, "%63s %d", ip, &port) != 2)
				break;
			struct sockaddr_in d = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port) };
			inet_pton(AF_INET, ip, &d.sin_addr);
			conns[nconns] = socket(AF_INET, SOCK_STREAM, 0);
			if (connect(conns[nconns], (struct sockaddr *)&d, sizeof(d)) < 0)
				die("peer connect");
			r = nconns++;
			break;
		case 'A':
			conns[nconns] = accept(l, NULL, NULL);
			if (conns[nconns] < 0)
				die("peer accept");
			r = nconns++;
			break;
		case 'S':
			sscanf(line + 1, "%d %ld", &i, &n);
			memset(buf, 'x', sizeof(buf));
			for (long done = 0; done < n;) {
				long k = send(conns[i], buf, (size_t)(n - done > (long)sizeof(buf) ? (long)sizeof(buf) : n - done), 0);
				if (k <= 0)
					die("peer send");
				done += k;
			}
			r = 0;
			break;
		case 'D':
			sscanf(line + 1, "%d %ld", &i, &n);
			for (long done = 0; done < n;) {
				long k = recv(conns[i], buf, (size_t)(n - done > (long)sizeof(buf) ? (long)sizeof(buf) : n - done), 0);
				if (k <= 0)
					die("peer recv");
				done += k;
			}
			r = 0;
			break;
		case 'F':
			sscanf(line + 1, "%d", &i);
			shutdown(conns[i], SHUT_WR);
			r = 0;
			break;
		case 'R': {
			sscanf(line + 1, "%d", &i);
			struct linger lg = { 1, 0 };
			setsockopt(conns[i], SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
			close(conns[i]);
			r = 0;
			break;
		}
		case 'X':
			sscanf(line + 1, "%d", &i);
			close(conns[i]);
			r = 0;
			break;
		case 'Q':
			dprintf(c, "ok\n");
			return 0;
		}
		if (r < 0) {
			fprintf(stderr, "peer: bad command %s", line);
			return 1;
		}
		dprintf(c, "ok %d\n", r);
	}
	return 0;
}
