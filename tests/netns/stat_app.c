/* A program for tests/netns/t_stat.sh, run under xtcp in ns A.
 *
 *   stat_app main DIR PEER   listeners and connections the test then looks
 *                            at with xtcp-stat (see t_stat.sh); writes
 *                            DIR/ready (its pid) when set up, exits 0 when
 *                            DIR/quit appears
 *   stat_app probe IP PORT   connects, prints "local A.B.C.D:PORT", exits 0
 *   stat_app idle DIR        one listener on port 7110, DIR/idle.pid, then
 *                            sleeps (the test kills it)
 *
 * main, on the engine address 10.55.0.3 (ports fixed, the test knows them):
 *   listen 0.0.0.0:7100 backlog 4, never accepted (PEER's clients queue there)
 *   listen 10.55.0.3:7101 backlog 2, never accepted
 *   listen 0.0.0.0:7102 (a rule sends it to the kernel)
 *   listen 0.0.0.0:7105: a thread accepts and reads everything (bulk sink)
 *   connect PEER:7200 and never read (PEER sends 5000 bytes: Recv-Q 5000)
 *   connect PEER:7201 and write until the send buffer is full (PEER never
 *     reads: Send-Q > 0)
 *   connect PEER:7202 (a rule sends it to the kernel)
 *   connect 10.55.0.1:7300 (the kernel's own address: handed to the kernel)
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

static void die(const char *what)
{
	fprintf(stderr, "stat_app: %s: %s\n", what, strerror(errno));
	exit(2);
}

static int listen_on(const char *ip, int port, int backlog)
{
	int fd = socket(AF_INET, SOCK_STREAM, 0), one = 1;
	if (fd < 0)
		die("socket");
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port) };
	inet_pton(AF_INET, ip, &a.sin_addr);
	if (bind(fd, (struct sockaddr *)&a, sizeof(a)) < 0)
		die("bind");
	if (listen(fd, backlog) < 0)
		die("listen");
	return fd;
}

static int connect_to(const char *ip, int port)
{
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	if (fd < 0)
		die("socket");
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port) };
	inet_pton(AF_INET, ip, &a.sin_addr);
	if (connect(fd, (struct sockaddr *)&a, sizeof(a)) < 0) {
		fprintf(stderr, "stat_app: connect %s:%d: %s\n", ip, port, strerror(errno));
		exit(2);
	}
	return fd;
}

static void *drain(void *arg)
{
	int c = (int)(intptr_t)arg;
	char buf[65536];
	while (read(c, buf, sizeof(buf)) > 0)
		;
	close(c);
	return NULL;
}

/* Every connection on its own thread: the test's idle clients must not hold up the bulk one. */
static void *sink(void *arg)
{
	int l = *(int *)arg;
	for (;;) {
		int c = accept(l, NULL, NULL);
		if (c < 0)
			return NULL;
		pthread_t t;
		if (pthread_create(&t, NULL, drain, (void *)(intptr_t)c) == 0)
			pthread_detach(t);
		else
			close(c);
	}
}

static void write_file(const char *dir, const char *name, const char *text)
{
	char path[512], tmp[520];
	snprintf(path, sizeof(path), "%s/%s", dir, name);
	snprintf(tmp, sizeof(tmp), "%s.tmp", path);
	FILE *f = fopen(tmp, "w");
	if (!f || fputs(text, f) < 0 || fclose(f) != 0 || rename(tmp, path) < 0)
		die("write_file");
}

static int run_main(const char *dir, const char *peer)
{
	static int lsink;
	int l0 = listen_on("0.0.0.0", 7100, 4);
	int l1 = listen_on("10.55.0.3", 7101, 2);
	int l2 = listen_on("0.0.0.0", 7102, 8);
	lsink = listen_on("0.0.0.0", 7105, 8);
	pthread_t t;
	if (pthread_create(&t, NULL, sink, &lsink) != 0)
		die("pthread_create");
	int c0 = connect_to(peer, 7200);
	int c1 = connect_to(peer, 7201);
	int c2 = connect_to(peer, 7202);
	int c3 = connect_to("10.55.0.1", 7300);
	/* fill c1's send buffer: PEER never reads */
	fcntl(c1, F_SETFL, O_NONBLOCK);
	static char big[65536];
	memset(big, 'x', sizeof(big));
	long sent = 0;
	for (int i = 0; i < 10000; i++) {
		ssize_t n = write(c1, big, sizeof(big));
		if (n > 0) {
			sent += n;
			continue;
		}
		if (n < 0 && errno != EAGAIN)
			die("write");
		usleep(20000); /* the window may open a little more */
		if (write(c1, big, sizeof(big)) <= 0)
			break;
	}
	char text[64];
	snprintf(text, sizeof(text), "%d %ld\n", (int)getpid(), sent);
	write_file(dir, "ready", text);
	char quit[512];
	snprintf(quit, sizeof(quit), "%s/quit", dir);
	for (int i = 0; i < 6000 && access(quit, F_OK) != 0; i++)
		usleep(20000);
	close(c0);
	close(c1);
	close(c2);
	close(c3);
	close(l0);
	close(l1);
	close(l2);
	return 0;
}

static int run_probe(const char *ip, int port)
{
	int fd = connect_to(ip, port);
	struct sockaddr_in a;
	socklen_t len = sizeof(a);
	char buf[INET_ADDRSTRLEN];
	if (getsockname(fd, (struct sockaddr *)&a, &len) < 0)
		die("getsockname");
	printf("local %s:%u\n", inet_ntop(AF_INET, &a.sin_addr, buf, sizeof(buf)), ntohs(a.sin_port));
	close(fd);
	return 0;
}

static int run_idle(const char *dir)
{
	int l = listen_on("0.0.0.0", 7110, 8);
	(void)l;
	char text[32];
	snprintf(text, sizeof(text), "%d\n", (int)getpid());
	write_file(dir, "idle.pid", text);
	for (;;)
		pause();
}

int main(int argc, char **argv)
{
	setvbuf(stdout, NULL, _IOLBF, 0);
	if (argc == 4 && !strcmp(argv[1], "main"))
		return run_main(argv[2], argv[3]);
	if (argc == 4 && !strcmp(argv[1], "probe"))
		return run_probe(argv[2], atoi(argv[3]));
	if (argc == 3 && !strcmp(argv[1], "idle"))
		return run_idle(argv[2]);
	fprintf(stderr, "usage: stat_app main DIR PEER | probe IP PORT | idle DIR\n");
	return 2;
}
