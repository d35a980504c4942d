/* 64 MiB each way at once: both ends send a deterministic pseudo-random
 * stream (seeded by role) from a second thread while reading the other's in
 * the main thread, then shut down writing; the receiver checks every byte
 * against the expected stream and its FNV-1a 64 hash, and reads EOF.  Neither
 * end closes or exits before the other has read everything. */
#include "common.h"
#include <pthread.h>

#define TOTAL (64L * 1024 * 1024)

struct gen {
	uint64_t s;
};

static uint64_t next(struct gen *g)
{
	uint64_t x = g->s;
	x ^= x << 13;
	x ^= x >> 7;
	x ^= x << 17;
	return g->s = x;
}

/* the stream is 8-byte words; fill(g, buf, n) with n % 8 == 0 */
static void fill(struct gen *g, unsigned char *b, size_t n)
{
	for (size_t i = 0; i < n; i += 8) {
		uint64_t v = next(g);
		memcpy(b + i, &v, 8);
	}
}

static uint64_t fnv(uint64_t h, const unsigned char *b, size_t n)
{
	for (size_t i = 0; i < n; i++)
		h = (h ^ b[i]) * 0x100000001b3ULL;
	return h;
}

static int g_fd;
static long g_sent;
static int g_send_err;
static uint64_t g_send_hash;

static void *sender(void *arg)
{
	(void)arg;
	static unsigned char buf[65536];
	struct gen g = { C.server ? 0x5e55e5e5a11ULL : 0xc11e47c11e47ULL };
	uint64_t h = 0xcbf29ce484222325ULL;
	while (g_sent < TOTAL) {
		fill(&g, buf, sizeof buf);
		h = fnv(h, buf, sizeof buf);
		ssize_t r = write_all(g_fd, buf, sizeof buf);
		if (r != (ssize_t)sizeof buf) {
			g_send_err = errno ? errno : EIO;
			if (r > 0)
				g_sent += r;
			return NULL;
		}
		g_sent += r;
	}
	g_send_hash = h;
	if (shutdown(g_fd, SHUT_WR) < 0)
		g_send_err = errno;
	return NULL;
}

int main(int argc, char **argv)
{
	conf_init(argc, argv, 50);
	if (C.server)
		conf_listen(8);
	g_fd = conf_pair();
	step("transfer");
	pthread_t th;
	pthread_create(&th, NULL, sender, NULL);
	static unsigned char rbuf[65536 + 8], exp[65536 + 8];
	struct gen g = { C.server ? 0xc11e47c11e47ULL : 0x5e55e5e5a11ULL };
	uint64_t h = 0xcbf29ce484222325ULL, eh = 0xcbf29ce484222325ULL;
	long got = 0, first_bad = -1;
	size_t have_exp = 0, exp_off = 0; /* expected bytes buffered: exp[exp_off .. have_exp) */
	int rerr = 0;
	for (;;) {
		ssize_t r = recv(g_fd, rbuf, 65536, 0);
		if (r < 0) {
			if (errno == EINTR)
				continue;
			rerr = errno;
			break;
		}
		if (r == 0)
			break;
		h = fnv(h, rbuf, (size_t)r);
		size_t done = 0;
		while (done < (size_t)r) {
			if (exp_off == have_exp) {
				fill(&g, exp, 65536);
				eh = fnv(eh, exp, 65536);
				have_exp = 65536;
				exp_off = 0;
			}
			size_t k = (size_t)r - done;
			if (k > have_exp - exp_off)
				k = have_exp - exp_off;
			if (first_bad < 0 && memcmp(rbuf + done, exp + exp_off, k) != 0) {
				for (size_t i = 0; i < k; i++)
					if (rbuf[done + i] != exp[exp_off + i]) {
						first_bad = got + (long)(done + i);
						break;
					}
			}
			done += k;
			exp_off += k;
		}
		got += r;
	}
	pthread_join(th, NULL);
	say("sent %ld bytes, send error %s", g_sent, g_send_err ? ename(g_send_err) : "none");
	say("received %ld bytes, then %s", got, rerr ? ename(rerr) : "EOF");
	say("every byte as expected: %s", YN(first_bad < 0 && got == TOTAL));
	if (first_bad >= 0)
		say("first wrong byte at offset %ld", first_bad);
	say("fnv1a64 of received: %016llx, expected %016llx, match %s", (unsigned long long)h, (unsigned long long)eh,
	    YN(h == eh && got == TOTAL));
	(void)g_send_hash;
	/* Both ends stay until both have read everything: what a process exit
	 * right after close does to data in flight is write-close-exit's case. */
	step("wait for the peer");
	sync_post(C.server ? "server-done" : "client-done");
	sync_wait(C.server ? "client-done" : "server-done");
	close(g_fd);
	if (C.server)
		close(C.lfd);
	return 0;
}
