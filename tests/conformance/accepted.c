/* Accepted sockets are separate sockets: O_NONBLOCK (F_SETFL, FIONBIO) and
 * socket options set on one connection show on that connection (and on its
 * dups, which share its open file description) and on no other; FD_CLOEXEC
 * is per fd; a fork child's setsockopt on its copy of one connection changes
 * no other connection of the parent; a program that closes sockets it did
 * not open (a daemon's "close every stray fd") still accepts working
 * connections.  Under xtcp an accepted fd starts as a dup of a shared
 * template socket, and these are the ways that sharing could show.  The
 * fork also checks that a child leaves its parent's NIC alone (on the verbs
 * backend the child's copy once destroyed the parent's queue and rules, and
 * the parent received nothing more).
 *
 * The client opens SIX connections and sends one byte on each; the server
 * accepts them (a: SOCK_NONBLOCK, b: none, c: SOCK_CLOEXEC, d: both, e, f:
 * none), changes one thing at a time and prints every connection's view;
 * then the client opens a seventh (i) after the server's stray close.  Each
 * connection echoes its byte at the end.  Values that could vary between
 * hosts (buffer defaults) are printed as "unchanged" yes/no. */
#include "common.h"

#include <sys/wait.h>

#define N 6

static const char *fl(int fd)
{
	static char b[8][32];
	static int i;
	char *p = b[i++ & 7];
	int f = fcntl(fd, F_GETFL), d = fcntl(fd, F_GETFD);
	if (f < 0 || d < 0)
		snprintf(p, 32, "%s", ename(errno));
	else
		snprintf(p, 32, "%s%s%s", (f & O_NONBLOCK) ? "nb" : "bl", (f & O_APPEND) ? "+app" : "",
			 (d & FD_CLOEXEC) ? "+cx" : "");
	return p;
}

static int is_stray(int fd, const int *known, int nknown)
{
	for (int i = 0; i < nknown; i++)
		if (known[i] == fd)
			return 0;
	struct stat st;
	if (fstat(fd, &st) < 0 || !S_ISSOCK(st.st_mode))
		return 0;
	if (get_int(fd, SOL_SOCKET, SO_DOMAIN) != AF_INET || get_int(fd, SOL_SOCKET, SO_TYPE) != SOCK_STREAM ||
	    get_int(fd, SOL_SOCKET, SO_ACCEPTCONN) != 0)
		return 0;
	struct sockaddr_in a;
	socklen_t al = sizeof a;
	if (getsockname(fd, (struct sockaddr *)&a, &al) < 0 || a.sin_port != 0)
		return 0;
	al = sizeof a;
	return getpeername(fd, (struct sockaddr *)&a, &al) < 0 && errno == ENOTCONN;
}

static void echo(int fd, const char *name)
{
	char c;
	set_nonblock(fd, 0);
	ssize_t r = read_n(fd, &c, 1);
	ssize_t w = r == 1 ? write(fd, &c, 1) : -1;
	say("server: %s echoes its byte: %s", name, YN(r == 1 && w == 1));
}

int main(int argc, char **argv)
{
	conf_init(argc, argv, 30);
	if (!C.server) {
		int fd[N + 1];
		for (int i = 0; i < N; i++) {
			fd[i] = conf_connect();
			char c = (char)('a' + i);
			write_all(fd[i], &c, 1);
		}
		/* the listener on PORT+1 has keep-alive options to pass on */
		int k = tcp_socket();
		struct sockaddr_in a2 = C.addr;
		a2.sin_port = htons((unsigned short)(C.port + 1));
		if (connect(k, (struct sockaddr *)&a2, sizeof a2) < 0)
			die("connect PORT+1");
		char kc = 'k';
		write_all(k, &kc, 1);
		sync_post("six");
		sync_wait("more");
		fd[N] = conf_connect();
		char c = 'i';
		write_all(fd[N], &c, 1);
		char kr = 0;
		say("client: the PORT+1 connection gets its byte back: %s", YN(read_n(k, &kr, 1) == 1 && kr == 'k'));
		for (int i = 0; i <= N; i++) {
			char r = 0;
			ssize_t n = read_n(fd[i], &r, 1);
			say("client: connection %d gets its byte back: %s", i, YN(n == 1 && r == (i < N ? 'a' + i : 'i')));
		}
		sync_post("echoed");
		sync_wait("done");
		for (int i = 0; i <= N; i++)
			close(fd[i]);
		close(k);
		return 0;
	}

	/* PORT+1: a listener with keep-alive options its connections inherit */
	int l2 = tcp_socket();
	set_int(l2, SOL_SOCKET, SO_REUSEADDR, 1);
	set_int(l2, SOL_SOCKET, SO_KEEPALIVE, 1);
	set_int(l2, IPPROTO_TCP, TCP_KEEPIDLE, 600);
	set_int(l2, IPPROTO_TCP, TCP_KEEPCNT, 4);
	struct sockaddr_in a2 = C.addr;
	a2.sin_port = htons((unsigned short)(C.port + 1));
	if (bind(l2, (struct sockaddr *)&a2, sizeof a2) < 0 || listen(l2, 4) < 0)
		die("listen PORT+1");
	int rc, l = conf_listen(16);
	sync_wait("six");
	step("accept six");
	int a = accept4(l, NULL, NULL, SOCK_NONBLOCK);
	int b = accept(l, NULL, NULL);
	int c = accept4(l, NULL, NULL, SOCK_CLOEXEC);
	int d = accept4(l, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
	int e = accept(l, NULL, NULL);
	int f = accept(l, NULL, NULL);
	if (a < 0 || b < 0 || c < 0 || d < 0 || e < 0 || f < 0)
		die("accept");
	say("server: accepted: a %s, b %s, c %s, d %s, e %s, f %s", fl(a), fl(b), fl(c), fl(d), fl(e), fl(f));
	int rcv_e = get_int(e, SOL_SOCKET, SO_RCVBUF), snd_c = get_int(c, SOL_SOCKET, SO_SNDBUF);

	step("flags");
	rc = fcntl(b, F_SETFL, O_NONBLOCK);
	say("server: F_SETFL O_NONBLOCK on b: %s; a %s, b %s, c %s, d %s", res(rc), fl(a), fl(b), fl(c), fl(d));
	int zero = 0, one = 1;
	rc = ioctl(a, FIONBIO, &zero);
	say("server: FIONBIO 0 on a: %s; a %s, b %s, d %s", res(rc), fl(a), fl(b), fl(d));
	rc = ioctl(e, FIONBIO, &one);
	say("server: FIONBIO 1 on e: %s; e %s, f %s", res(rc), fl(e), fl(f));
	rc = fcntl(c, F_SETFL, O_APPEND | O_NONBLOCK);
	say("server: F_SETFL O_APPEND|O_NONBLOCK on c: %s; c %s, d %s, b %s", res(rc), fl(c), fl(d), fl(b));
	rc = fcntl(e, F_SETFD, FD_CLOEXEC);
	say("server: F_SETFD FD_CLOEXEC on e: %s; e %s, f %s", res(rc), fl(e), fl(f));
	rc = fcntl(e, F_SETFL, 0);
	say("server: F_SETFL 0 on e: %s; e %s, a %s", res(rc), fl(e), fl(a));

	step("options");
	rc = set_int(b, SOL_SOCKET, SO_RCVBUF, 65536);
	say("server: SO_RCVBUF 65536 on b: %s; b reads %d, e unchanged %s", res(rc),
	    get_int(b, SOL_SOCKET, SO_RCVBUF), YN(get_int(e, SOL_SOCKET, SO_RCVBUF) == rcv_e));
	rc = set_int(e, SOL_SOCKET, SO_KEEPALIVE, 1);
	say("server: SO_KEEPALIVE 1 on e: %s; e %d, f %d, a %d", res(rc),
	    get_int(e, SOL_SOCKET, SO_KEEPALIVE), get_int(f, SOL_SOCKET, SO_KEEPALIVE), get_int(a, SOL_SOCKET, SO_KEEPALIVE));

	step("keepalive options");
	int idle_b = get_int(b, IPPROTO_TCP, TCP_KEEPIDLE), cnt_b = get_int(b, IPPROTO_TCP, TCP_KEEPCNT);
	rc = set_int(a, SOL_SOCKET, SO_KEEPALIVE, 7);
	say("server: SO_KEEPALIVE 7 on a: %s; a reads %d, b %d", res(rc), get_int(a, SOL_SOCKET, SO_KEEPALIVE),
	    get_int(b, SOL_SOCKET, SO_KEEPALIVE));
	int vals[][3] = { { TCP_KEEPIDLE, 32767, 32768 }, { TCP_KEEPINTVL, 1, 0 }, { TCP_KEEPCNT, 127, 128 } };
	for (int i = 0; i < 3; i++) {
		int r1 = set_int(a, IPPROTO_TCP, vals[i][0], vals[i][1]);
		const char *s1 = res(r1);
		int r2 = set_int(a, IPPROTO_TCP, vals[i][0], vals[i][2]);
		say("server: TCP option %d on a: %d %s, %d %s; a reads %d", vals[i][0], vals[i][1], s1, vals[i][2],
		    res(r2), get_int(a, IPPROTO_TCP, vals[i][0]));
	}
	short sh = 5;
	rc = setsockopt(a, IPPROTO_TCP, TCP_KEEPIDLE, &sh, sizeof sh);
	say("server: TCP_KEEPIDLE optlen 2 on a: %s", res(rc));
	rc = setsockopt(a, SOL_SOCKET, SO_KEEPALIVE, (void *)16, sizeof(int));
	say("server: SO_KEEPALIVE from a bad pointer on a: %s", res(rc));
	long long big = 9;
	rc = setsockopt(a, IPPROTO_TCP, TCP_KEEPCNT, &big, sizeof big);
	say("server: TCP_KEEPCNT optlen 8 on a: %s; a reads %d", res(rc), get_int(a, IPPROTO_TCP, TCP_KEEPCNT));
	say("server: b's TCP_KEEPIDLE unchanged %s, TCP_KEEPCNT unchanged %s",
	    YN(get_int(b, IPPROTO_TCP, TCP_KEEPIDLE) == idle_b), YN(get_int(b, IPPROTO_TCP, TCP_KEEPCNT) == cnt_b));
	int k = accept(l2, NULL, NULL);
	say("server: accepted on PORT+1: %s; SO_KEEPALIVE %d, TCP_KEEPIDLE %d, TCP_KEEPCNT %d (the listener's)",
	    k >= 0 ? "ok" : ename(errno), get_int(k, SOL_SOCKET, SO_KEEPALIVE), get_int(k, IPPROTO_TCP, TCP_KEEPIDLE),
	    get_int(k, IPPROTO_TCP, TCP_KEEPCNT));

	step("dup");
	int g = dup(f);
	say("server: g = dup(f): %s; g %s", g >= 0 ? "ok" : ename(errno), fl(g));
	rc = fcntl(g, F_SETFL, O_NONBLOCK);
	say("server: F_SETFL O_NONBLOCK on g: %s; f %s, g %s, e %s", res(rc), fl(f), fl(g),
	    fl(e));
	rc = fcntl(f, F_SETFD, FD_CLOEXEC);
	say("server: FD_CLOEXEC on f: %s; f %s, g %s", res(rc), fl(f), fl(g));
	int h = dup2(d, 100);
	say("server: dup2(d, 100): %s; 100 %s", h == 100 ? "ok" : ename(errno), fl(h));
	rc = set_int(h, SOL_SOCKET, SO_SNDBUF, 32768);
	say("server: SO_SNDBUF 32768 on 100: %s; d reads %d, c unchanged %s", res(rc),
	    get_int(d, SOL_SOCKET, SO_SNDBUF), YN(get_int(c, SOL_SOCKET, SO_SNDBUF) == snd_c));
	rc = ioctl(h, FIONBIO, &zero);
	say("server: FIONBIO 0 on 100: %s; d %s, 100 %s", res(rc), fl(d), fl(h));

	step("fork");
	fflush(stdout);
	pid_t pid = fork();
	if (pid == 0) {
		/* the child's copies: a (flags changed only by FIONBIO), f (dup'd) */
		int r1 = set_int(a, SOL_SOCKET, SO_RCVBUF, 8192);
		int r2 = set_int(f, SOL_SOCKET, SO_RCVBUF, 8192);
		_exit(r1 == 0 && r2 == 0 ? 0 : 1);
	}
	int ws = 0;
	waitpid(pid, &ws, 0);
	say("server: a fork child's setsockopt on its a and f: exit %d; e unchanged %s",
	    WIFEXITED(ws) ? WEXITSTATUS(ws) : -1, YN(get_int(e, SOL_SOCKET, SO_RCVBUF) == rcv_e));

	step("stray");
	int known[] = { l, l2, k, a, b, c, d, e, f, g, h };
	int closed = 0;
	for (int fd = 3; fd < 256; fd++)
		if (is_stray(fd, known, (int)(sizeof known / sizeof known[0])))
			closed += close(fd) == 0; /* the kernel: none; xtcp: its templates */
	(void)closed;
	int nul[4]; /* the numbers closed taken by something else */
	for (int i = 0; i < 4; i++)
		nul[i] = open("/dev/null", O_RDONLY | O_CLOEXEC);
	sync_post("more");
	step("accept after stray close");
	int i7 = accept4(l, NULL, NULL, SOCK_NONBLOCK);
	struct stat st;
	say("server: i accepted after closing stray sockets: %s, a socket %s, %s", i7 >= 0 ? "ok" : ename(errno),
	    YN(i7 >= 0 && fstat(i7, &st) == 0 && S_ISSOCK(st.st_mode)), fl(i7));
	int i8 = dup(i7);
	rc = ioctl(i7, FIONBIO, &zero);
	say("server: FIONBIO 0 on i: %s; i %s, dup %s", res(rc), fl(i7), fl(i8));
	close(i8);
	for (int i = 0; i < 4; i++)
		close(nul[i]);

	step("echo");
	echo(a, "a");
	echo(b, "b");
	echo(c, "c");
	echo(d, "d");
	echo(e, "e");
	echo(g, "f (as its dup g)");
	echo(i7, "i");
	echo(k, "the PORT+1 connection");

	/* connect(AF_UNSPEC) turns a connection back into a fresh socket the
	 * program may bind: on its own socket, not on the template a still
	 * shares here (which would keep the port after close) */
	step("disconnect");
	sync_wait("echoed");
	struct sockaddr un = { .sa_family = AF_UNSPEC };
	rc = connect(a, &un, sizeof un);
	say("server: connect(AF_UNSPEC) on a: %s", res(rc));
	struct sockaddr_in a3 = sin_of(any_addr(), (unsigned short)(C.port + 2));
	rc = bind(a, (struct sockaddr *)&a3, sizeof a3);
	say("server: a binds 0.0.0.0:PORT+2: %s", res(rc));
	close(a);
	int n3 = tcp_socket();
	rc = bind(n3, (struct sockaddr *)&a3, sizeof a3);
	say("server: after close(a), a new socket binds 0.0.0.0:PORT+2: %s", res(rc));
	close(n3);
	sync_post("done");
	msleep(SETTLE_MS);
	return 0;
}
