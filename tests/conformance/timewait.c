/* A port in TIME_WAIT, on both ends.
 *
 * Server side (ports PORT, PORT+1): the server accepts one connection and
 * closes it first (active close: its end goes to TIME_WAIT once the client's
 * FIN arrives), then closes the listener, and binds the port again: without
 * SO_REUSEADDR -> EADDRINUSE, with it -> bound, and it can listen.  Once with
 * a listener that had SO_REUSEADDR, once with one that had not.
 *
 * Client side (local port PORT+10, servers on PORT+2 and PORT+3): the client
 * binds its local port explicitly (SO_REUSEADDR), connects and closes first;
 * then binds the same local port again: without SO_REUSEADDR -> EADDRINUSE;
 * with it -> bound, and connect() to the same server address:port (the same
 * 4-tuple, still in TIME_WAIT on the client) succeeds: Linux takes over a
 * TIME_WAIT 4-tuple for a connect() from an explicitly bound port when the
 * old connection used timestamps (tcp_twsk_unique() with twp == NULL, no
 * tcp_tw_reuse needed; the new ISN is the old snd_nxt + 65537), so the
 * server sees a second connection on PORT+2.  To another port -> ok. */
#include "common.h"

static int lsock(unsigned short port, int reuse)
{
	int fd = tcp_socket();
	if (reuse)
		set_int(fd, SOL_SOCKET, SO_REUSEADDR, 1);
	struct sockaddr_in s = sin_of(C.local, port);
	if (bind(fd, (struct sockaddr *)&s, sizeof s) < 0 || listen(fd, 8) < 0)
		die("bind/listen");
	return fd;
}

static void rebind(unsigned short port, int reuse)
{
	int fd = tcp_socket();
	if (reuse)
		set_int(fd, SOL_SOCKET, SO_REUSEADDR, 1);
	struct sockaddr_in s = sin_of(C.local, port);
	int r = bind(fd, (struct sockaddr *)&s, sizeof s);
	say("  bind %s SO_REUSEADDR: %s%s%s", reuse ? "with" : "without", res(r), r == 0 ? ", listen: " : "",
	    r == 0 ? res(listen(fd, 8)) : "");
	close(fd);
}

static void server_tw(unsigned short port, int reuse, const char *tag)
{
	char name[64];
	int l = lsock(port, reuse);
	snprintf(name, sizeof name, "listening-%s", tag);
	sync_post(name);
	struct sockaddr_in a;
	socklen_t al = sizeof a;
	int fd = accept(l, (struct sockaddr *)&a, &al);
	if (fd < 0)
		die("accept");
	say("server: listener %s SO_REUSEADDR: accepted, closing first: %s", reuse ? "with" : "without", res(close(fd)));
	snprintf(name, sizeof name, "eof-%s", tag);
	sync_wait(name);
	msleep(SETTLE_MS);
	say("  close listener: %s", res(close(l)));
	rebind(port, 0);
	rebind(port, 1);
	snprintf(name, sizeof name, "rebound-%s", tag);
	sync_post(name);
}

static void client_tw_peer(unsigned short port, const char *tag)
{
	char name[64];
	snprintf(name, sizeof name, "listening-%s", tag);
	sync_wait(name);
	int fd = tcp_socket();
	struct sockaddr_in s = sin_of(C.addr.sin_addr, port);
	if (connect(fd, (struct sockaddr *)&s, sizeof s) < 0)
		die("connect");
	char c;
	say("client: server closed first: recv %s", res(recv(fd, &c, 1, 0)));
	say("  close: %s", res(close(fd)));
	snprintf(name, sizeof name, "eof-%s", tag);
	sync_post(name);
	snprintf(name, sizeof name, "rebound-%s", tag);
	sync_wait(name);
}

int main(int argc, char **argv)
{
	conf_init(argc, argv, 30);
	unsigned short P = C.port, Q = C.port + 10;
	if (C.server) {
		step("server tw reuse");
		server_tw(P, 1, "a");
		step("server tw noreuse");
		server_tw(P + 1, 0, "b");
		/* the client's TIME_WAIT: listeners on P+2, P+3 */
		int l2 = lsock(P + 2, 1), l3 = lsock(P + 3, 1);
		sync_post("listening-c");
		step("client tw");
		int fd = accept(l2, NULL, NULL);
		char c;
		say("server: recv until the client closes: %s", res(recv(fd, &c, 1, 0)));
		say("  close: %s", res(close(fd)));
		sync_post("closed-c");
		sync_wait("done");
		set_nonblock(l2, 1);
		set_nonblock(l3, 1);
		int k2 = 0, k3 = 0, f;
		while ((f = accept(l2, NULL, NULL)) >= 0)
			k2++, close(f);
		while ((f = accept(l3, NULL, NULL)) >= 0)
			k3++, close(f);
		say("server: later connections on PORT+2: %d, on PORT+3: %d", k2, k3);
		close(l2);
		close(l3);
	} else {
		step("server tw reuse");
		client_tw_peer(P, "a");
		step("server tw noreuse");
		client_tw_peer(P + 1, "b");
		step("client tw");
		sync_wait("listening-c");
		int fd = tcp_socket();
		set_int(fd, SOL_SOCKET, SO_REUSEADDR, 1);
		struct sockaddr_in me = sin_of(C.local, Q), s2 = sin_of(C.addr.sin_addr, P + 2),
				   s3 = sin_of(C.addr.sin_addr, P + 3);
		say("client: bind local port %u (SO_REUSEADDR): %s", Q, res(bind(fd, (struct sockaddr *)&me, sizeof me)));
		say("  connect to PORT+2: %s", res(connect(fd, (struct sockaddr *)&s2, sizeof s2)));
		say("  close first: %s", res(close(fd)));
		sync_wait("closed-c");
		msleep(SETTLE_MS);
		fd = tcp_socket();
		say("  bind local port %u again without SO_REUSEADDR: %s", Q, res(bind(fd, (struct sockaddr *)&me, sizeof me)));
		close(fd);
		fd = tcp_socket();
		set_int(fd, SOL_SOCKET, SO_REUSEADDR, 1);
		say("  bind local port %u again with SO_REUSEADDR: %s", Q, res(bind(fd, (struct sockaddr *)&me, sizeof me)));
		say("  connect to PORT+2 (same 4-tuple): %s", res(connect(fd, (struct sockaddr *)&s2, sizeof s2)));
		close(fd);
		fd = tcp_socket();
		set_int(fd, SOL_SOCKET, SO_REUSEADDR, 1);
		say("  bind local port %u again with SO_REUSEADDR: %s", Q, res(bind(fd, (struct sockaddr *)&me, sizeof me)));
		say("  connect to PORT+3: %s", res(connect(fd, (struct sockaddr *)&s3, sizeof s3)));
		close(fd);
		fd = tcp_socket();
		say("  unbound socket, connect to PORT+2 (ephemeral port): %s", res(connect(fd, (struct sockaddr *)&s2, sizeof s2)));
		close(fd);
		msleep(SETTLE_MS);
		sync_post("done");
	}
	return 0;
}
