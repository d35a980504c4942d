/* sendfile(2) onto a TCP socket.  Directional: the subject sends a file with
 * sendfile; the other end (always a kernel socket) reads and checks every
 * byte against the file's known content.  A fresh connection per step.
 *  1  with an offset pointer: the count, the offset after, the file
 *     position untouched.
 *  2  without one: the file position moves past the bytes sent.
 *  3  a count past the end of the file: the bytes up to it, then 0.
 *  4  blocking, the whole 3 MiB file in one call.
 *  5  non-blocking against a peer that does not read: partial counts, then
 *     EAGAIN, the offset just past what was sent; the rest after blocking
 *     again, all of it intact.
 *  6  errors: a bad in_fd, a file open only for writing, a negative offset,
 *     an offset pointer that is not mapped, a zero count.
 * Under xtcp, file bytes in the page cache go straight into the send buffer
 * (XTCP_SENDFILE_DIRECT=1, the default; the sendfile case) or through a
 * bounce buffer (the sendfile-bounce case). */
#include "common.h"
#include <sys/sendfile.h>

#define FSZ (3L * 1024 * 1024 + 123)

static unsigned char *content(void)
{
	static unsigned char *c;
	if (c)
		return c;
	c = malloc(FSZ + 8);
	if (!c)
		die("malloc");
	uint64_t x = 0x9e3779b97f4a7c15ull;
	for (long i = 0; i < FSZ; i += 8) {
		x ^= x << 13;
		x ^= x >> 7;
		x ^= x << 17;
		memcpy(c + i, &x, 8);
	}
	return c;
}

/* Reads n bytes and says whether they are the file's bytes [from, from+n). */
static void check(int fd, long from, long n, const char *tag)
{
	unsigned char *buf = malloc((size_t)n + 1);
	if (!buf)
		die("malloc");
	ssize_t got = read_n(fd, buf, (size_t)n);
	int same = got == n && memcmp(buf, content() + from, (size_t)n) == 0;
	say("%s observer: %zd bytes, the file's bytes %ld..%ld: %s", tag, got, from, from + n, YN(same));
	free(buf);
}

static const char *off_s(off_t o)
{
	static char b[4][32];
	static int k;
	char *p = b[k++ & 3];
	snprintf(p, sizeof b[0], "%lld", (long long)o);
	return p;
}

int main(int argc, char **argv)
{
	conf_init(argc, argv, 60);
	char path[] = "/tmp/xt-conf-sendfile-XXXXXX";
	int f = -1;
	if (C.subject) {
		f = mkstemp(path);
		if (f < 0)
			die("mkstemp");
		if (write(f, content(), FSZ) != FSZ)
			die("write");
		lseek(f, 0, SEEK_SET);
	}
	if (C.server)
		conf_listen(8);
	int fd;
	off_t off;

	/* 1 */
	step("1");
	fd = conf_pair();
	if (C.subject) {
		off = 100;
		say("1 sender: sendfile(&off=100, 5000): %s", res(sendfile(fd, f, &off, 5000)));
		say("1 sender: offset %s, file position %s", off_s(off), off_s(lseek(f, 0, SEEK_CUR)));
		sync_post("1-sent");
		sync_wait("1-done");
	} else {
		sync_wait("1-sent");
		check(fd, 100, 5000, "1");
		sync_post("1-done");
	}
	close(fd);

	/* 2 */
	step("2");
	fd = conf_pair();
	if (C.subject) {
		lseek(f, 1000, SEEK_SET);
		say("2 sender: at 1000, sendfile(NULL, 3000): %s", res(sendfile(fd, f, NULL, 3000)));
		say("2 sender: file position %s", off_s(lseek(f, 0, SEEK_CUR)));
		sync_post("2-sent");
		sync_wait("2-done");
	} else {
		sync_wait("2-sent");
		check(fd, 1000, 3000, "2");
		sync_post("2-done");
	}
	close(fd);

	/* 3 */
	step("3");
	fd = conf_pair();
	if (C.subject) {
		off = FSZ - 10;
		say("3 sender: sendfile(&off=size-10, 100): %s", res(sendfile(fd, f, &off, 100)));
		say("3 sender: offset is the size: %s", YN(off == FSZ));
		say("3 sender: again at the end: %s", res(sendfile(fd, f, &off, 100)));
		sync_post("3-sent");
		sync_wait("3-done");
	} else {
		sync_wait("3-sent");
		check(fd, FSZ - 10, 10, "3");
		sync_post("3-done");
	}
	close(fd);

	/* 4 */
	step("4");
	fd = conf_pair();
	if (C.subject) {
		sync_wait("4-ready");
		off = 0;
		ssize_t r = sendfile(fd, f, &off, FSZ);
		say("4 sender: blocking sendfile of the whole file: all of it %s, offset is the size %s", YN(r == FSZ),
		    YN(off == FSZ));
		sync_post("4-sent");
		sync_wait("4-done");
	} else {
		sync_post("4-ready");
		check(fd, 0, FSZ, "4");
		sync_wait("4-sent");
		sync_post("4-done");
	}
	close(fd);

	/* 5 */
	step("5");
	fd = conf_pair();
	if (C.subject) {
		set_int(fd, SOL_SOCKET, SO_SNDBUF, 65536);
		sync_wait("5-ready");
		set_nonblock(fd, 1);
		off = 0;
		long total = 0, calls = 0;
		ssize_t r;
		while ((r = sendfile(fd, f, &off, (size_t)(FSZ - off))) > 0 && calls < 100000) {
			total += r;
			calls++;
		}
		say("5 sender: non-blocking: some calls sent bytes %s, then %s", YN(calls > 0), res(r));
		say("5 sender: less than the file %s, offset just past the bytes sent %s", YN(total < FSZ),
		    YN(off == total));
		sync_post("5-full");
		set_nonblock(fd, 0);
		while (off < FSZ && (r = sendfile(fd, f, &off, (size_t)(FSZ - off))) > 0)
			;
		say("5 sender: blocking again, the rest sent: %s", YN(off == FSZ));
		sync_post("5-sent");
		sync_wait("5-done");
	} else {
		sync_post("5-ready");
		sync_wait("5-full");
		check(fd, 0, FSZ, "5");
		sync_wait("5-sent");
		sync_post("5-done");
	}
	close(fd);

	/* 6 */
	step("6");
	fd = conf_pair();
	if (C.subject) {
		int w = open(path, O_WRONLY | O_CLOEXEC);
		say("6 sender: in_fd -1: %s", res(sendfile(fd, -1, NULL, 10)));
		say("6 sender: a file open for writing only: %s", res(sendfile(fd, w, NULL, 10)));
		off = -1;
		say("6 sender: offset -1: %s", res(sendfile(fd, f, &off, 10)));
		say("6 sender: an unmapped offset pointer: %s", res(sendfile(fd, f, (off_t *)8, 10)));
		off = 0;
		say("6 sender: count 0: %s, offset %s", res(sendfile(fd, f, &off, 0)), off_s(off));
		close(w);
		sync_post("6-sent");
		sync_wait("6-done");
	} else {
		sync_wait("6-sent");
		msleep(SETTLE_MS);
		say("6 observer: bytes queued: %d", fionread(fd));
		sync_post("6-done");
	}
	close(fd);
	if (C.subject) {
		close(f);
		unlink(path);
	}
	say("%s: done", C.role);
	return 0;
}
