/* txb_client.c — the client side of t_txbatch.sh (run under xtcp or not).
 *
 *   txb_client rounds ADDR PORT NCONN NROUNDS
 *     NCONN connections; each round writes one 16-byte record on every
 *     connection (record = connection, round, pattern), then waits with
 *     poll() until the peer has answered one byte on every connection.
 *     Prints "rounds: NCONN x NROUNDS done".
 *
 *   txb_client closes ADDR PORT NCONN
 *     NCONN connections; then, between two marker lines written to stderr
 *     ("phase-begin", "phase-end": t_txbatch.sh counts the sendmmsg calls
 *     strace sees between them), one record written on each connection and
 *     every connection closed, as an event loop answers and closes in one
 *     round; then 300 ms of sleep (nanosleep: no call into libxtcp), so the
 *     records and FINs leave with the progress thread.  Prints
 *     "closes: NCONN done".
 *
 *   txb_client leave ADDR PORT NCONN exit|exec
 *     NCONN connections; one record written on each and each closed, then
 *     at once _exit(0), or execl("/bin/true"): neither runs the library's
 *     destructor, and the records and FINs must not be lost with the process
 *     image (the library sends what the batch holds first).
 *
 *   txb_client blocking ADDR PORT NROUNDS sigaction|sigset|perwrite
 *     A SIGINT handler set with sigaction() (no SA_RESTART) or with SysV
 *     sigset(), and a SIGUSR1 handler with SA_RESTART; then one connection:
 *     each round writes one record and waits for the one-byte answer in a
 *     blocking read().  perwrite: as sigaction, and SIGPIPE ignored around
 *     every write (sigaction, then put back), as some programs do.  Prints
 *     "blocking: NROUNDS done".  (t_txbatch.sh counts the rt_sigprocmask
 *     and rt_sigaction calls.)
 *
 *   txb_client hold ADDR PORT SECS
 *     One connection: writes one record, prints the CLOCK_MONOTONIC time of
 *     the write ("wrote SEC.NSEC"), then computes for SECS seconds without a
 *     single system call, then reads the peer's answer, which carries the
 *     time the record arrived.  Prints "arrived after MS ms".
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static void die(const char *what)
{
	fprintf(stderr, "txb_client: %s: %s\n", what, strerror(errno));
	exit(2);
}

static int dial(const char *addr, int port)
{
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port) };
	int fd = socket(AF_INET, SOCK_STREAM, 0);

	if (fd < 0)
		die("socket");
	if (inet_pton(AF_INET, addr, &sa.sin_addr) != 1) {
		fprintf(stderr, "txb_client: bad address %s\n", addr);
		exit(2);
	}
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0)
		die("connect");
	return fd;
}

static void record(uint8_t *r, uint32_t conn, uint32_t round)
{
	memcpy(r, &conn, 4);
	memcpy(r + 4, &round, 4);
	for (int i = 8; i < 16; i++)
		r[i] = (uint8_t)(conn * 7 + round * 13 + (uint32_t)i);
}

static int rounds(const char *addr, int port, int nconn, int nrounds)
{
	int *fd = calloc((size_t)nconn, sizeof(int));
	struct pollfd *p = calloc((size_t)nconn, sizeof(*p));

	if (!fd || !p)
		die("calloc");
	for (int c = 0; c < nconn; c++)
		fd[c] = dial(addr, port);
	for (int r = 0; r < nrounds; r++) {
		for (int c = 0; c < nconn; c++) {
			uint8_t rec[16];

			record(rec, (uint32_t)c, (uint32_t)r);
			if (write(fd[c], rec, sizeof(rec)) != (ssize_t)sizeof(rec))
				die("write");
		}
		int left = nconn;
		for (int c = 0; c < nconn; c++)
			p[c] = (struct pollfd){ .fd = fd[c], .events = POLLIN };
		while (left > 0) {
			if (poll(p, (nfds_t)nconn, 10000) <= 0) {
				fprintf(stderr, "txb_client: round %d: no answer within 10 s\n", r);
				return 1;
			}
			for (int c = 0; c < nconn; c++) {
				char b;

				if (!(p[c].revents & POLLIN))
					continue;
				if (read(fd[c], &b, 1) != 1 || b != 'k') {
					fprintf(stderr, "txb_client: round %d conn %d: bad answer\n", r, c);
					return 1;
				}
				p[c].fd = -1;
				left--;
			}
		}
	}
	for (int c = 0; c < nconn; c++)
		close(fd[c]);
	printf("rounds: %d x %d done\n", nconn, nrounds);
	return 0;
}

static void on_int(int sig)
{
	(void)sig;
}

static int blocking(const char *addr, int port, int nrounds, const char *how)
{
	bool perwrite = strcmp(how, "perwrite") == 0;
	if (strcmp(how, "sigset") == 0) {
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wdeprecated-declarations"
		if (sigset(SIGINT, on_int) == SIG_ERR)
			die("sigset");
#pragma GCC diagnostic pop
	} else {
		struct sigaction sa;
		memset(&sa, 0, sizeof(sa));
		sa.sa_handler = on_int;
		if (sigaction(SIGINT, &sa, NULL) < 0)
			die("sigaction");
	}
	/* and one with SA_RESTART: the handlers differ in kind */
	struct sigaction sr;
	memset(&sr, 0, sizeof(sr));
	sr.sa_handler = on_int;
	sr.sa_flags = SA_RESTART;
	if (sigaction(SIGUSR1, &sr, NULL) < 0)
		die("sigaction");
	int fd = dial(addr, port);
	for (int r = 0; r < nrounds; r++) {
		uint8_t rec[16];
		char b;

		record(rec, 0, (uint32_t)r);
		struct sigaction ign, was;
		if (perwrite) { /* as some programs do around every write */
			memset(&ign, 0, sizeof(ign));
			ign.sa_handler = SIG_IGN;
			sigaction(SIGPIPE, &ign, &was);
		}
		if (write(fd, rec, sizeof(rec)) != (ssize_t)sizeof(rec))
			die("write");
		if (perwrite)
			sigaction(SIGPIPE, &was, NULL);
		if (read(fd, &b, 1) != 1 || b != 'k') {
			fprintf(stderr, "txb_client: round %d: bad answer\n", r);
			return 1;
		}
	}
	close(fd);
	printf("blocking: %d done\n", nrounds);
	return 0;
}

/* One record (round 0) written on each connection, and each closed. */
static void answer_and_close(const int *fd, int nconn)
{
	for (int c = 0; c < nconn; c++) {
		uint8_t rec[16];

		record(rec, (uint32_t)c, 0);
		if (write(fd[c], rec, sizeof(rec)) != (ssize_t)sizeof(rec))
			die("write");
		if (close(fd[c]) < 0)
			die("close");
	}
}

static int closes(const char *addr, int port, int nconn)
{
	int *fd = calloc((size_t)nconn, sizeof(int));
	static const char begin[] = "phase-begin\n", end[] = "phase-end\n";
	struct timespec settle = { 0, 100000000 }, after = { 0, 300000000 };

	if (!fd)
		die("calloc");
	for (int c = 0; c < nconn; c++)
		fd[c] = dial(addr, port);
	nanosleep(&settle, NULL); /* the handshakes' last ACKs are out */
	if (write(2, begin, sizeof(begin) - 1) < 0)
		die("write marker");
	answer_and_close(fd, nconn);
	if (write(2, end, sizeof(end) - 1) < 0)
		die("write marker");
	nanosleep(&after, NULL);
	printf("closes: %d done\n", nconn);
	free(fd);
	return 0;
}

static int leave(const char *addr, int port, int nconn, const char *how)
{
	int *fd = calloc((size_t)nconn, sizeof(int));

	if (!fd)
		die("calloc");
	for (int c = 0; c < nconn; c++)
		fd[c] = dial(addr, port);
	answer_and_close(fd, nconn);
	if (strcmp(how, "exec") == 0) {
		execl("/bin/true", "true", (char *)NULL);
		die("execl");
	}
	_exit(0);
}

static double mono(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int hold(const char *addr, int port, double secs)
{
	int fd = dial(addr, port);
	uint8_t rec[16];
	char ans[64] = { 0 };
	volatile uint64_t x = 1;

	record(rec, 0, 0);
	double t0 = mono();
	if (write(fd, rec, sizeof(rec)) != (ssize_t)sizeof(rec))
		die("write");
	/* Compute: clock_gettime is a vDSO call, not a system call, and
	 * nothing here enters libxtcp. */
	while (mono() - t0 < secs)
		for (int i = 0; i < 100000; i++)
			x = x * 6364136223846793005ull + 1442695040888963407ull;
	ssize_t n = read(fd, ans, sizeof(ans) - 1);
	if (n <= 0)
		die("read");
	double arrived = strtod(ans, NULL);
	printf("arrived after %.1f ms\n", (arrived - t0) * 1e3);
	close(fd);
	return 0;
}

int main(int argc, char **argv)
{
	if (argc == 6 && strcmp(argv[1], "blocking") == 0)
		return blocking(argv[2], atoi(argv[3]), atoi(argv[4]), argv[5]);
	if (argc == 6 && strcmp(argv[1], "rounds") == 0)
		return rounds(argv[2], atoi(argv[3]), atoi(argv[4]), atoi(argv[5]));
	if (argc == 6 && strcmp(argv[1], "leave") == 0)
		return leave(argv[2], atoi(argv[3]), atoi(argv[4]), argv[5]);
	if (argc == 5 && strcmp(argv[1], "closes") == 0)
		return closes(argv[2], atoi(argv[3]), atoi(argv[4]));
	if (argc == 5 && strcmp(argv[1], "hold") == 0)
		return hold(argv[2], atoi(argv[3]), atof(argv[4]));
	fprintf(stderr, "usage: txb_client rounds ADDR PORT NCONN NROUNDS | blocking ADDR PORT NROUNDS sigaction|sigset | closes ADDR PORT NCONN | leave ADDR PORT NCONN exit|exec | hold ADDR PORT SECS\n");
	return 2;
}
