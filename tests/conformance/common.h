/* Shared helpers of the conformance programs (the .c files beside it).
 *
 * Every program exercises one socket behaviour and prints a transcript of what
 * it observed on stdout: return values, errno names, byte counts, the order of
 * events.  Never timings (a wait is reported as a coarse yes/no against wide
 * bounds), never addresses or ports that vary from run to run.  The same
 * program runs on the kernel and under libxtcp.so; run.sh compares the
 * transcripts.
 *
 * Command line:  PROG server|client ADDR PORT [LOCAL [EXTRA...]]
 *   server: ADDR is the address to bind (PORT the port), LOCAL its own address
 *   client: ADDR:PORT is the server, LOCAL its own address (for bind tests)
 * Environment:
 *   XT_SYNC     a directory both ends share: a file-based side channel that
 *               orders steps between the two processes without any traffic
 *               on the network under test (sync_post / sync_wait below)
 *   XT_SUBJECT  server|client: in "directional" programs, the end whose
 *               behaviour is under test (the other end is a kernel observer);
 *               run.sh sets it to the end that runs under xtcp
 *
 * Everything is bounded: alarm() ends the program (printing the step it was
 * in), every wait on the side channel has its own bound.
 */
#ifndef XT_CONF_COMMON_H
#define XT_CONF_COMMON_H

#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/tcp.h> /* TCP_* options and the full struct tcp_info */
#include <netinet/in.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#define UNUSED __attribute__((unused))

/* Time given to packets already sent to land (an RST, a FIN, data) before the
 * next observation.  Generous: a veth round trip is tens of microseconds. */
#define SETTLE_MS 250

struct conf {
	int server;                 /* role: 1 server, 0 client */
	int subject;                /* 1 if XT_SUBJECT names this role */
	const char *role;
	struct sockaddr_in addr;    /* server: bind address; client: the server */
	struct in_addr local;       /* own address */
	unsigned short port;
	const char *sync;           /* side-channel directory */
	int lfd;                    /* the server's listening socket, or -1 */
	int nextra;
	char **extra;
};

static struct conf C = { .lfd = -1 };
static const char *volatile g_step = "start";
static volatile sig_atomic_t g_sigpipe;

/* --- transcript ------------------------------------------------------------ */

static UNUSED void say(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static UNUSED void say(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	putchar('\n');
	fflush(stdout);
}

static UNUSED const char *ename(int e)
{
	const char *n = strerrorname_np(e);
	return n ? n : "E?";
}

/* "0", "17" or "-1 ECONNRESET": a call's result with its errno.  Call it
 * directly on the call's result so nothing touches errno in between. */
static UNUSED const char *res(long r)
{
	static char bufs[8][48];
	static int k;
	int e = errno;
	char *b = bufs[k++ & 7];
	if (r < 0)
		snprintf(b, sizeof bufs[0], "%ld %s", r, ename(e));
	else
		snprintf(b, sizeof bufs[0], "%ld", r);
	errno = e;
	return b;
}

/* send() and what it did: "5", "-1 EPIPE, SIGPIPE 1" (SIGPIPE counted by a
 * handler; 0 when none arrived) */
static UNUSED const char *send_sig(int fd, const void *buf, size_t n, int flags)
{
	static char bufs[4][80];
	static int k;
	int before = g_sigpipe;
	ssize_t r = send(fd, buf, n, flags);
	const char *s = res(r);
	char *b = bufs[k++ & 3];
	snprintf(b, sizeof bufs[0], "%s, SIGPIPE %d", s, (int)(g_sigpipe - before));
	return b;
}

static UNUSED const char *YN(int v) { return v ? "yes" : "no"; }

static UNUSED void step(const char *s) { g_step = s; }

static void on_alarm(int sig)
{
	(void)sig;
	char buf[256];
	const char *s = g_step;
	int n = snprintf(buf, sizeof buf, "ALARM: time bound exceeded during step '%s'\n", s);
	if (n > 0)
		(void)!write(1, buf, (size_t)n);
	_exit(5);
}

static void on_sigpipe(int sig)
{
	(void)sig;
	g_sigpipe++;
}

static UNUSED void die(const char *what)
{
	say("FATAL: %s: %s", what, ename(errno));
	exit(3);
}

/* --- time --------------------------------------------------------------------- */

static UNUSED void msleep(long ms)
{
	struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };
	while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
		;
}

static UNUSED double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* --- side channel ---------------------------------------------------------------- */

static UNUSED void sync_post(const char *name)
{
	char p[512];
	snprintf(p, sizeof p, "%s/%s", C.sync, name);
	int fd = open(p, O_CREAT | O_WRONLY | O_CLOEXEC, 0644);
	if (fd < 0)
		die("sync_post");
	close(fd);
}

static UNUSED int sync_test(const char *name)
{
	char p[512];
	snprintf(p, sizeof p, "%s/%s", C.sync, name);
	return access(p, F_OK) == 0;
}

/* Waits for the peer's sync_post(name); a missed one is a transcript line. */
static UNUSED int sync_wait_ms(const char *name, long ms)
{
	double end = now_s() + (double)ms / 1000.0;
	while (!sync_test(name)) {
		if (now_s() > end) {
			say("SYNC TIMEOUT waiting for '%s'", name);
			return -1;
		}
		msleep(1);
	}
	return 0;
}

static UNUSED void sync_wait(const char *name)
{
	if (sync_wait_ms(name, 25000) < 0)
		exit(4);
}

/* --- setup ---------------------------------------------------------------------- */

static UNUSED void conf_init(int argc, char **argv, unsigned seconds)
{
	setvbuf(stdout, NULL, _IOLBF, 0);
	if (argc < 4 || (strcmp(argv[1], "server") && strcmp(argv[1], "client"))) {
		fprintf(stderr, "usage: %s server|client ADDR PORT [LOCAL [EXTRA...]]\n", argv[0]);
		exit(2);
	}
	C.role = argv[1];
	C.server = strcmp(argv[1], "server") == 0;
	C.port = (unsigned short)atoi(argv[3]);
	memset(&C.addr, 0, sizeof C.addr);
	C.addr.sin_family = AF_INET;
	C.addr.sin_port = htons(C.port);
	if (inet_pton(AF_INET, argv[2], &C.addr.sin_addr) != 1) {
		fprintf(stderr, "bad address %s\n", argv[2]);
		exit(2);
	}
	if (argc > 4) {
		if (inet_pton(AF_INET, argv[4], &C.local) != 1) {
			fprintf(stderr, "bad address %s\n", argv[4]);
			exit(2);
		}
	} else {
		C.local = C.server ? C.addr.sin_addr : (struct in_addr){ 0 };
	}
	C.nextra = argc > 5 ? argc - 5 : 0;
	C.extra = argv + 5;
	const char *subj = getenv("XT_SUBJECT");
	C.subject = strcmp(subj ? subj : "server", C.role) == 0;
	C.sync = getenv("XT_SYNC");
	if (!C.sync) {
		static char tmpl[] = "/tmp/xt-conf-XXXXXX";
		C.sync = mkdtemp(tmpl);
	}
	struct sigaction sa;
	memset(&sa, 0, sizeof sa);
	sa.sa_handler = on_alarm;
	sigaction(SIGALRM, &sa, NULL);
	sa.sa_handler = on_sigpipe;
	sigaction(SIGPIPE, &sa, NULL);
	alarm(seconds);
}

static UNUSED struct sockaddr_in sin_of(struct in_addr a, unsigned short port)
{
	struct sockaddr_in s;
	memset(&s, 0, sizeof s);
	s.sin_family = AF_INET;
	s.sin_addr = a;
	s.sin_port = htons(port);
	return s;
}

static UNUSED struct in_addr any_addr(void) { return (struct in_addr){ htonl(INADDR_ANY) }; }

static UNUSED int tcp_socket(void)
{
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	if (fd < 0)
		die("socket");
	return fd;
}

static UNUSED int set_int(int fd, int level, int opt, int v)
{
	return setsockopt(fd, level, opt, &v, sizeof v);
}

static UNUSED int get_int(int fd, int level, int opt)
{
	int v = -12345;
	socklen_t l = sizeof v;
	if (getsockopt(fd, level, opt, &v, &l) < 0)
		return -(errno);
	return v;
}

static UNUSED int set_nonblock(int fd, int on)
{
	int fl = fcntl(fd, F_GETFL);
	return fcntl(fd, F_SETFL, on ? fl | O_NONBLOCK : fl & ~O_NONBLOCK);
}

/* The server's listening socket on ADDR:PORT (SO_REUSEADDR); posts
 * "listening" on the side channel once listen() returned. */
static UNUSED int conf_listen(int backlog)
{
	step("listen");
	int fd = tcp_socket();
	set_int(fd, SOL_SOCKET, SO_REUSEADDR, 1);
	if (bind(fd, (struct sockaddr *)&C.addr, sizeof C.addr) < 0)
		die("bind");
	if (listen(fd, backlog) < 0)
		die("listen");
	C.lfd = fd;
	sync_post("listening");
	return fd;
}

static UNUSED int conf_accept(void)
{
	step("accept");
	int fd;
	do
		fd = accept(C.lfd, NULL, NULL);
	while (fd < 0 && errno == EINTR);
	if (fd < 0)
		die("accept");
	return fd;
}

/* Connects fd (a socket the caller may have set options on) to the server. */
static UNUSED void conf_connect_fd(int fd)
{
	static int waited;
	step("connect");
	if (!waited) {
		sync_wait("listening");
		waited = 1;
	}
	if (connect(fd, (struct sockaddr *)&C.addr, sizeof C.addr) < 0)
		die("connect");
}

static UNUSED int conf_connect(void)
{
	int fd = tcp_socket();
	conf_connect_fd(fd);
	return fd;
}

/* One more connection between the two ends: the server accepts, the client
 * connects.  The n-th call on one end pairs with the n-th on the other, as
 * long as each connect completes before the next starts (they do: blocking). */
static UNUSED int conf_pair(void)
{
	return C.server ? conf_accept() : conf_connect();
}

/* --- data --------------------------------------------------------------------- */

static UNUSED int fionread(int fd)
{
	int n = -1;
	if (ioctl(fd, FIONREAD, &n) < 0)
		return -(errno);
	return n;
}

/* Waits (bounded) until at least n bytes are queued; returns FIONREAD. */
static UNUSED int wait_fionread(int fd, int n, long ms)
{
	double end = now_s() + (double)ms / 1000.0;
	int v;
	while ((v = fionread(fd)) < n && now_s() < end)
		msleep(1);
	return v;
}

static UNUSED ssize_t write_all(int fd, const void *buf, size_t n)
{
	size_t done = 0;
	while (done < n) {
		ssize_t r = send(fd, (const char *)buf + done, n - done, MSG_NOSIGNAL);
		if (r < 0) {
			if (errno == EINTR)
				continue;
			return done ? (ssize_t)done : -1;
		}
		done += (size_t)r;
	}
	return (ssize_t)done;
}

/* Reads until n bytes or EOF/error; returns the count (or -1 if nothing). */
static UNUSED ssize_t read_n(int fd, void *buf, size_t n)
{
	size_t done = 0;
	while (done < n) {
		ssize_t r = recv(fd, (char *)buf + done, n - done, 0);
		if (r < 0) {
			if (errno == EINTR)
				continue;
			return done ? (ssize_t)done : -1;
		}
		if (r == 0)
			break;
		done += (size_t)r;
	}
	return (ssize_t)done;
}

/* Reads and discards until EOF or an error; *err gets the errno (0 on EOF). */
static UNUSED long drain(int fd, int *err)
{
	static char buf[65536];
	long total = 0;
	*err = 0;
	for (;;) {
		ssize_t r = recv(fd, buf, sizeof buf, 0);
		if (r < 0) {
			if (errno == EINTR)
				continue;
			*err = errno;
			return total;
		}
		if (r == 0)
			return total;
		total += r;
	}
}

static UNUSED const char *ipstr(struct in_addr a)
{
	static char bufs[4][INET_ADDRSTRLEN];
	static int k;
	char *b = bufs[k++ & 3];
	inet_ntop(AF_INET, &a, b, INET_ADDRSTRLEN);
	return b;
}

static UNUSED int set_linger(int fd, int on, int secs)
{
	struct linger l = { on, secs };
	return setsockopt(fd, SOL_SOCKET, SO_LINGER, &l, sizeof l);
}

#endif
