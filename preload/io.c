/* Data transfer on engine sockets: Linux tcp_recvmsg() / tcp_sendmsg()
 * semantics (blocking, timeouts, MSG_* flags, errors, SIGPIPE) over the
 * engine's xt_tcp_recv/xt_tcp_send, and sendfile on top of them. */
#define _GNU_SOURCE
#include <fcntl.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "shim.h"

#define CHUNK (64u * 1024)

atomic_ulong xp_sendfile_direct_n, xp_sendfile_bounce_n;

struct cur {
	const struct iovec *iov;
	int cnt, i;
	size_t off;
};

static void cur_skip(struct cur *c)
{
	while (c->i < c->cnt && c->off >= c->iov[c->i].iov_len) {
		c->i++;
		c->off = 0;
	}
}

static size_t cur_len(struct cur *c)
{
	cur_skip(c);
	return c->i < c->cnt ? c->iov[c->i].iov_len - c->off : 0;
}

static uint8_t *cur_ptr(struct cur *c)
{
	return (uint8_t *)c->iov[c->i].iov_base + c->off;
}

static size_t iov_total(const struct iovec *iov, int cnt)
{
	size_t t = 0;
	for (int i = 0; i < cnt; i++) {
		t += iov[i].iov_len;
		if (t > SSIZE_MAX)
			return SSIZE_MAX;
	}
	return t;
}

static void raise_sigpipe(void)
{
	(void)syscall(SYS_tgkill, getpid(), gettid(), SIGPIPE);
}

/* MSG_PEEK into several buffers: through a bounce buffer (engine lock held). */
static long peek_iov(struct xp_sock *s, struct cur *c, size_t total)
{
	long avail = xt_tcp_inq(xp_eng.st, s->esock);
	if (avail <= 0 || c->cnt == 1)
		return xt_tcp_recv(xp_eng.st, s->esock, cur_ptr(c), cur_len(c), XT_MSG_PEEK, xp_clock());
	size_t n = (size_t)avail < total ? (size_t)avail : total;
	uint8_t *b = malloc(n);
	if (!b)
		return -ENOMEM;
	long r = xt_tcp_recv(xp_eng.st, s->esock, b, n, XT_MSG_PEEK, xp_clock());
	size_t done = 0;
	while (r > 0 && done < (size_t)r) {
		size_t l = cur_len(c), m = (size_t)r - done < l ? (size_t)r - done : l;
		if (xp_check_write(cur_ptr(c), m) < 0) {
			r = done ? (long)done : -EFAULT;
			break;
		}
		memcpy(cur_ptr(c), b + done, m);
		c->off += m;
		done += m;
	}
	free(b);
	return r;
}

/* MSG_TRUNC on TCP: the bytes are consumed, not copied (engine lock held). */
static long discard(struct xp_sock *s, size_t len)
{
	static XP_TLS uint8_t *scratch;
	if (!scratch && !(scratch = malloc(CHUNK)))
		return -ENOMEM;
	return xt_tcp_recv(xp_eng.st, s->esock, scratch, len < CHUNK ? len : CHUNK, 0, xp_clock());
}

ssize_t xp_recv(struct xp_sock *s, const struct iovec *iov, int iovcnt, int flags)
{
	if (flags & MSG_ERRQUEUE)
		return -EAGAIN; /* TCP's error queue: only with SO_TIMESTAMPING/ZEROCOPY (kernel's) */
	if (flags & MSG_OOB)
		return -EINVAL; /* no urgent data is ever pending on the engine */
	struct cur c = { iov, iovcnt, 0, 0 };
	size_t total = iov_total(iov, iovcnt);
	bool peek = flags & MSG_PEEK, trunc = flags & MSG_TRUNC, driven = false;
	ssize_t copied = 0;
	long r;
	struct xp_wait w;

	xp_lock();
	bool nonblock = atomic_load(&s->nonblock) || (flags & MSG_DONTWAIT);
	int lowat = 1;
	xt_tcp_getopt(xp_eng.st, s->esock, XT_SO_RCVLOWAT, &lowat);
	size_t target = (flags & MSG_WAITALL) ? total : ((size_t)lowat < total ? (size_t)lowat : total);
	if (target == 0)
		target = 1;
	xp_wait_init(&w, s, s->rcvtimeo_ns, true);
	for (;;) {
		if (total == 0) {
			/* Linux: returns 0 at once with data, EOF or an error pending, waits otherwise */
			uint8_t b;
			r = xt_tcp_recv(xp_eng.st, s->esock, &b, 1, XT_MSG_PEEK, xp_clock());
			if (r >= 0) {
				r = 0;
				break;
			}
		} else if (copied > 0 && xt_tcp_inq(xp_eng.st, s->esock) == 0 &&
			   (xt_tcp_events(xp_eng.st, s->esock) & (XT_EV_ERR | XT_EV_RDHUP | XT_EV_HUP))) {
			r = copied; /* the error or EOF waits for the next call */
			break;
		} else if (trunc && !peek) {
			r = discard(s, total - (size_t)copied);
		} else if (peek) {
			r = peek_iov(s, &c, total);
		} else {
			long avail = xt_tcp_inq(xp_eng.st, s->esock);
			size_t l = cur_len(&c);
			size_t n = avail > 0 && (size_t)avail < l ? (size_t)avail : l;
			if (avail > 0 && xp_check_write(cur_ptr(&c), n) < 0)
				r = -EFAULT;
			else
				r = xt_tcp_recv(xp_eng.st, s->esock, cur_ptr(&c), n, 0, xp_clock());
		}
		if (r > 0) {
			if (peek) {
				if ((size_t)r >= target || nonblock) {
					copied = r;
					r = copied;
					break;
				}
				/* MSG_PEEK below the target: wait for more and look again */
				c.i = 0;
				c.off = 0;
			} else {
				copied += r;
				if (!trunc)
					c.off += (size_t)r;
				/* Linux copies all that is queued, up to len, past the target */
				if ((size_t)copied >= target &&
				    ((size_t)copied >= total || xt_tcp_inq(xp_eng.st, s->esock) <= 0)) {
					r = copied;
					break;
				}
				continue;
			}
		} else if (r == 0) {
			r = copied; /* end of stream */
			break;
		} else if (r != -EAGAIN) {
			if (copied)
				r = copied;
			break;
		}
		if (nonblock) {
			if (!copied && r == -EAGAIN && !driven) {
				/* A non-blocking read is a poll: take what the NIC holds
				 * (no system call) before saying EAGAIN, so a program that
				 * polls with recv() does not wait for the progress thread. */
				driven = true;
				xp_drive(xp_clock());
				continue;
			}
			r = copied ? copied : r == -EAGAIN || r > 0 ? -EAGAIN : r;
			break;
		}
		int e = xp_wait(&w);
		if (e < 0) {
			r = copied ? copied : e;
			break;
		}
	}
	xp_unlock_lazy(); /* a window update waits for the round's other frames */
	xp_wait_done(&w);
	return r;
}

ssize_t xp_send(struct xp_sock *s, const struct iovec *iov, int iovcnt, int flags, bool is_write)
{
	(void)is_write;
	if (flags & MSG_OOB)
		return -EOPNOTSUPP; /* urgent data: not on the engine (man/libxtcp.7) */
	struct cur c = { iov, iovcnt, 0, 0 };
	size_t total = iov_total(iov, iovcnt);
	ssize_t copied = 0;
	long r;
	struct xp_wait w;

	xp_lock();
	bool nonblock = atomic_load(&s->nonblock) || (flags & MSG_DONTWAIT);
	xp_wait_init(&w, s, s->sndtimeo_ns, true);
	for (;;) {
		size_t l = cur_len(&c);
		if (copied > 0 && (xt_tcp_events(xp_eng.st, s->esock) & XT_EV_ERR)) {
			r = copied; /* the error is for the next call (Linux do_error) */
			break;
		}
		if (l > CHUNK)
			l = CHUNK;
		bool last = (size_t)copied + l >= total;
		int xf = (flags & MSG_MORE) || !last ? XT_MSG_MORE : 0;
		if (l && xp_check_read(cur_ptr(&c), l) < 0)
			r = -EFAULT;
		else
			r = xt_tcp_send(xp_eng.st, s->esock, l ? cur_ptr(&c) : NULL, l, xf, xp_clock());
		if (r > 0) {
			copied += r;
			c.off += (size_t)r;
			if ((size_t)copied >= total) {
				r = copied;
				break;
			}
			continue;
		}
		if (r == 0 && total == 0)
			break;
		if (r != -EAGAIN && r != 0) {
			if (copied)
				r = copied;
			break;
		}
		if (nonblock) {
			r = copied ? copied : -EAGAIN;
			break;
		}
		int e = xp_wait(&w);
		if (e < 0) {
			r = copied ? copied : e;
			break;
		}
	}
	xp_unlock_lazy();
	xp_wait_done(&w);
	if (r == -EPIPE && !(flags & MSG_NOSIGNAL))
		raise_sigpipe();
	return r;
}

/* One piece of sendfile() in a single copy: a read that never waits for the
 * disk (RWF_NOWAIT: the page cache's bytes or EAGAIN, so the engine lock is
 * never held across I/O) straight into the send buffer's free space, queued
 * like a send of it.  Returns the bytes queued; 0 when the normal path must
 * take this piece (the buffer full: *full; the bytes not cached; a socket
 * that cannot send: xp_send then says why).  *eof at the end of the file;
 * *direct false for a file RWF_NOWAIT reads cannot serve (the normal path,
 * and its errors, for the rest of the call). */
static ssize_t sendfile_direct(struct xp_sock *s, int in_fd, off_t pos, size_t left, bool *direct, bool *eof,
			       bool *full)
{
	uint8_t *p[2];
	uint32_t len[2];
	ssize_t r = 0;
	xp_lock();
	long room = xt_tcp_send_space(xp_eng.st, s->esock, p, len);
	*full = room == -EAGAIN;
	if (room > 0) {
		size_t want = left < (size_t)room ? left : (size_t)room;
		struct iovec v[2] = { { p[0], len[0] < want ? len[0] : want }, { p[1], 0 } };
		v[1].iov_len = want - v[0].iov_len;
		ssize_t n = syscall(SYS_preadv2, in_fd, v, v[1].iov_len ? 2 : 1, (long)pos, 0L, RWF_NOWAIT);
		if (n > 0) {
			long c = xt_tcp_send_commit(xp_eng.st, s->esock, (uint32_t)n, (size_t)n < left ? XT_MSG_MORE : 0,
						    xp_clock());
			r = c > 0 ? c : 0; /* not queued: the normal path reads those bytes again */
			if (r > 0)
				atomic_fetch_add(&xp_sendfile_direct_n, (uint64_t)r);
		} else if (n == 0) {
			*eof = true;
		} else if (errno != EAGAIN) {
			*direct = false; /* EOPNOTSUPP, EINVAL, EBADF, ...: the normal path */
		}
	}
	xp_unlock_lazy();
	return r;
}

/* sendfile() onto an engine socket: read the file, send what was read, and
 * leave the file offset where Linux would (just past the bytes sent).  File
 * bytes in the page cache go straight into the send buffer (one copy, as a
 * send's); others through a bounce buffer (two). */
ssize_t xp_sendfile(struct xp_sock *s, int in_fd, off_t *offset, size_t count)
{
	off_t pos = 0;
	bool seekable = true;
	if (offset) {
		if (xp_copy_in(&pos, offset, sizeof(pos)) < 0)
			return -EFAULT;
		if (pos < 0)
			return -EINVAL;
	} else {
		pos = lseek(in_fd, 0, SEEK_CUR);
		if (pos < 0) {
			if (errno == EBADF)
				return -EBADF;
			seekable = false;
		}
	}
	if (count > 0x7ffff000)
		count = 0x7ffff000;
	if (count == 0)
		return 0;
	size_t bufsz = count < CHUNK ? count : CHUNK;
	uint8_t *buf = NULL;
	bool direct = seekable && xp_cfg.sendfile_direct, eof = false, full = false;
	ssize_t sent = 0, ret = 0;
	while ((size_t)sent < count) {
		if (direct) {
			ssize_t d = sendfile_direct(s, in_fd, pos, count - (size_t)sent, &direct, &eof, &full);
			if (eof)
				break;
			if (d > 0) {
				sent += d;
				pos += d;
				continue;
			}
			/* Full after some bytes, not blocking: Linux returns what it
			 * sent (its read of the next piece is thrown away); so do we,
			 * without that read. */
			if (full && sent > 0 && atomic_load(&s->nonblock))
				break;
		}
		if (!buf && !(buf = malloc(bufsz))) {
			ret = -ENOMEM;
			break;
		}
		size_t want = count - (size_t)sent < bufsz ? count - (size_t)sent : bufsz;
		ssize_t n = seekable ? pread(in_fd, buf, want, pos) : xp_real.read(in_fd, buf, want);
		if (n < 0) {
			ret = -errno;
			break;
		}
		if (n == 0)
			break;
		struct iovec v = { buf, (size_t)n };
		bool more = (size_t)sent + (size_t)n < count;
		ssize_t r = xp_send(s, &v, 1, more ? MSG_MORE : 0, false);
		if (r < 0) {
			ret = r;
			break;
		}
		sent += r;
		pos += r;
		atomic_fetch_add(&xp_sendfile_bounce_n, (uint64_t)r);
		if (r < n) {
			if (!seekable) /* a pipe: the unsent bytes are lost, as with Linux splice errors */
				XP_LOG(XP_LOG_WARN, "sendfile: %zd bytes read from a pipe could not be sent",
				       n - r);
			break;
		}
	}
	free(buf);
	if (offset) {
		if (sent > 0 && xp_check_write(offset, sizeof(*offset)) == 0)
			*offset = pos;
	} else if (seekable && sent > 0) {
		lseek(in_fd, pos, SEEK_SET);
	}
	return sent > 0 ? sent : ret;
}
