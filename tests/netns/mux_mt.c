/* Several threads on one epoll set (EPOLLONESHOT entries re-armed with
 * EPOLL_CTL_MOD, the thread-pool pattern): t_mux.sh runs the server under
 * xtcp and the client on the kernel, and checks every byte comes back.
 * The set also holds a pipe that a ticker thread writes a byte to every
 * millisecond with a raw system call (libxtcp does not see it): every tick
 * must be read while the engine sockets keep the set busy.
 *
 *   mux_mt server ADDR PORT THREADS CONNS READY_FILE
 *   mux_mt client ADDR PORT CONNS ROUNDS
 * The server exits after CONNS connections have been served and closed. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

static int L, E, want;
static atomic_int closed, nevents;
static atomic_long bytes;
static int P[2];
static atomic_long ticks_written, ticks_read;
static atomic_bool ticking = true;

static void *ticker(void *arg)
{
	(void)arg;
	while (atomic_load(&ticking)) {
		usleep(1000);
		if (syscall(SYS_write, P[1], "t", 1) != 1) {
			perror("ticker write");
			exit(1);
		}
		atomic_fetch_add(&ticks_written, 1);
	}
	return NULL;
}

static void read_ticks(void)
{
	char b[256];
	ssize_t k;
	while ((k = read(P[0], b, sizeof(b))) > 0)
		atomic_fetch_add(&ticks_read, k);
	struct epoll_event e = { .events = EPOLLIN | EPOLLONESHOT, .data.fd = P[0] };
	if (epoll_ctl(E, EPOLL_CTL_MOD, P[0], &e) < 0) {
		perror("epoll_ctl mod pipe");
		exit(1);
	}
}

static void *worker(void *arg)
{
	(void)arg;
	struct epoll_event ev[16];
	char buf[4096];
	while (atomic_load(&closed) < want || atomic_load(&ticking) ||
	       atomic_load(&ticks_read) < atomic_load(&ticks_written)) {
		int n = epoll_wait(E, ev, 16, 200);
		if (n < 0 && errno != EINTR) {
			perror("epoll_wait");
			exit(1);
		}
		for (int i = 0; i < n; i++) {
			atomic_fetch_add(&nevents, 1);
			int fd = ev[i].data.fd;
			if (fd == P[0]) {
				read_ticks();
				continue;
			}
			if (fd == L) {
				int c;
				while ((c = accept4(L, NULL, NULL, SOCK_NONBLOCK)) >= 0) {
					int one = 1;
					setsockopt(c, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
					struct epoll_event e = { .events = EPOLLIN | EPOLLRDHUP | EPOLLONESHOT, .data.fd = c };
					if (epoll_ctl(E, EPOLL_CTL_ADD, c, &e) < 0) {
						perror("epoll_ctl add");
						exit(1);
					}
				}
				continue;
			}
			bool eof = false;
			for (;;) {
				ssize_t k = recv(fd, buf, sizeof(buf), 0);
				if (k == 0) {
					eof = true;
					break;
				}
				if (k < 0) {
					if (errno == EAGAIN)
						break;
					perror("recv");
					exit(1);
				}
				atomic_fetch_add(&bytes, k);
				for (ssize_t off = 0; off < k;) {
					ssize_t w = send(fd, buf + off, (size_t)(k - off), 0);
					if (w < 0 && errno == EAGAIN)
						continue;
					if (w < 0) {
						perror("send");
						exit(1);
					}
					off += w;
				}
			}
			if (eof) {
				close(fd);
				atomic_fetch_add(&closed, 1);
				continue;
			}
			struct epoll_event e = { .events = EPOLLIN | EPOLLRDHUP | EPOLLONESHOT, .data.fd = fd };
			if (epoll_ctl(E, EPOLL_CTL_MOD, fd, &e) < 0) {
				perror("epoll_ctl mod");
				exit(1);
			}
		}
	}
	return NULL;
}

static struct sockaddr_in addr;
static int rounds;
static atomic_int bad;

static void *client(void *arg)
{
	(void)arg;
	int s = socket(AF_INET, SOCK_STREAM, 0);
	int one = 1;
	setsockopt(s, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	if (connect(s, (struct sockaddr *)&addr, sizeof(addr)) < 0) {
		perror("connect");
		exit(1);
	}
	char out[100], in[100];
	for (int r = 0; r < rounds; r++) {
		for (size_t i = 0; i < sizeof(out); i++)
			out[i] = (char)(r * 7 + i);
		if (send(s, out, sizeof(out), 0) != (ssize_t)sizeof(out)) {
			perror("send");
			exit(1);
		}
		for (size_t got = 0; got < sizeof(in);) {
			ssize_t k = recv(s, in + got, sizeof(in) - got, 0);
			if (k <= 0) {
				fprintf(stderr, "recv: %zd %s\n", k, strerror(errno));
				exit(1);
			}
			got += (size_t)k;
		}
		if (memcmp(in, out, sizeof(in)) != 0)
			atomic_fetch_add(&bad, 1);
	}
	close(s);
	return NULL;
}

int main(int argc, char **argv)
{
	alarm(90);
	if (argc < 6) {
		fprintf(stderr, "usage: mux_mt server ADDR PORT THREADS CONNS READY | client ADDR PORT CONNS ROUNDS\n");
		return 2;
	}
	addr.sin_family = AF_INET;
	addr.sin_port = htons((uint16_t)atoi(argv[3]));
	inet_pton(AF_INET, argv[2], &addr.sin_addr);
	if (strcmp(argv[1], "client") == 0) {
		int n = atoi(argv[4]);
		rounds = atoi(argv[5]);
		pthread_t t[64];
		for (int i = 0; i < n && i < 64; i++)
			pthread_create(&t[i], NULL, client, NULL);
		for (int i = 0; i < n && i < 64; i++)
			pthread_join(t[i], NULL);
		printf("client: %d connections x %d rounds, %d mismatches\n", n, rounds, (int)bad);
		return bad ? 1 : 0;
	}
	int nt = atoi(argv[4]);
	want = atoi(argv[5]);
	L = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
	int one = 1;
	setsockopt(L, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (bind(L, (struct sockaddr *)&addr, sizeof(addr)) < 0 || listen(L, 64) < 0) {
		perror("listen");
		return 1;
	}
	E = epoll_create1(0);
	struct epoll_event e = { .events = EPOLLIN, .data.fd = L };
	epoll_ctl(E, EPOLL_CTL_ADD, L, &e);
	if (pipe2(P, O_NONBLOCK) < 0) {
		perror("pipe");
		return 1;
	}
	e = (struct epoll_event){ .events = EPOLLIN | EPOLLONESHOT, .data.fd = P[0] };
	epoll_ctl(E, EPOLL_CTL_ADD, P[0], &e);
	pthread_t tk;
	pthread_create(&tk, NULL, ticker, NULL);
	FILE *f = fopen(argv[6], "w");
	fclose(f);
	pthread_t t[16];
	for (int i = 0; i < nt && i < 16; i++)
		pthread_create(&t[i], NULL, worker, NULL);
	while (atomic_load(&closed) < want)
		usleep(10000);
	atomic_store(&ticking, false);
	pthread_join(tk, NULL);
	for (int i = 0; i < nt && i < 16; i++)
		pthread_join(t[i], NULL);
	printf("server: %d connections served and closed, %ld bytes echoed\n", (int)closed, (long)bytes);
	printf("server: pipe ticks %s\n", ticks_read == ticks_written && ticks_written > 0 ? "all read" : "missing");
	fprintf(stderr, "server: %ld pipe ticks written, %ld read\n", (long)ticks_written, (long)ticks_read);
	return 0;
}
