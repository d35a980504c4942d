/* The fd table and socket objects.
 *
 * The table is an array of atomic pointers indexed by fd number, published
 * through one atomic pointer so a lookup is two loads and no lock.  It is
 * sized from RLIMIT_NOFILE and grown (under tab_mu) by copying into a larger
 * array; old arrays are never freed, so a reader holding one stays safe.
 * Writers (socket, accept, dup, close of our fds) hold tab_mu.
 *
 * Socket objects come from a pool whose memory is never given back: a lookup
 * that races with the last close may touch a dead object, and its reference
 * count (0 = dead, taken only by compare-and-swap from >0) tells it so.
 */
#define _GNU_SOURCE
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include "shim.h"

struct fdtab {
	size_t n;
	_Atomic(struct xp_sock *) e[];
};

static _Atomic(struct fdtab *) tab;
static pthread_mutex_t tab_mu = PTHREAD_MUTEX_INITIALIZER;

static pthread_mutex_t pool_mu = PTHREAD_MUTEX_INITIALIZER;
static struct xp_sock *pool_free;

/* fork(): another thread may hold either lock at that moment, and in the
 * child it would stay held for ever (its first socket call would hang).
 * The atfork handlers take both (after the engine's lock: both are leaves,
 * never held while another lock is taken) and release them on both sides. */
void xp_fdtab_fork_lock(void)
{
	pthread_mutex_lock(&tab_mu);
	pthread_mutex_lock(&pool_mu);
}

void xp_fdtab_fork_unlock(void)
{
	pthread_mutex_unlock(&pool_mu);
	pthread_mutex_unlock(&tab_mu);
}

void xp_sock_release(struct xp_sock *s); /* sock.c */

static struct fdtab *tab_alloc(size_t n)
{
	struct fdtab *t = calloc(1, sizeof(*t) + n * sizeof(t->e[0]));
	if (t)
		t->n = n;
	return t;
}

int xp_fdtab_init(void)
{
	if (atomic_load_explicit(&tab, memory_order_acquire))
		return 0;
	pthread_mutex_lock(&tab_mu);
	if (!atomic_load_explicit(&tab, memory_order_relaxed)) {
		struct rlimit rl;
		size_t n = 1024;
		if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY && rl.rlim_cur > n)
			n = rl.rlim_cur;
		if (n > (1u << 20))
			n = 1u << 20; /* grown on demand beyond this */
		struct fdtab *t = tab_alloc(n);
		if (t)
			atomic_store_explicit(&tab, t, memory_order_release);
	}
	pthread_mutex_unlock(&tab_mu);
	return atomic_load(&tab) ? 0 : -ENOMEM;
}

/* tab_mu held. */
static struct fdtab *tab_for(int fd)
{
	struct fdtab *t = atomic_load_explicit(&tab, memory_order_relaxed);
	if (!t)
		return NULL;
	if ((size_t)fd < t->n)
		return t;
	size_t n = t->n;
	while (n <= (size_t)fd)
		n *= 2;
	struct fdtab *nt = tab_alloc(n);
	if (!nt)
		return NULL;
	for (size_t i = 0; i < t->n; i++)
		atomic_store_explicit(&nt->e[i], atomic_load_explicit(&t->e[i], memory_order_relaxed),
				      memory_order_relaxed);
	atomic_store_explicit(&tab, nt, memory_order_release);
	return nt; /* t is leaked on purpose: readers may still hold it */
}

static inline struct xp_sock *tab_load(int fd)
{
	struct fdtab *t = atomic_load_explicit(&tab, memory_order_acquire);
	if (XP_UNLIKELY(!t) || (unsigned)fd >= t->n)
		return NULL;
	return atomic_load_explicit(&t->e[fd], memory_order_acquire);
}

bool xp_fd_maybe_ours(int fd)
{
	return tab_load(fd) != NULL;
}

struct xp_sock *xp_fd_get(int fd)
{
	for (int tries = 0; tries < 1000; tries++) {
		struct xp_sock *s = tab_load(fd);
		if (!s)
			return NULL;
		int r = atomic_load_explicit(&s->refs, memory_order_relaxed);
		while (r > 0 && !atomic_compare_exchange_weak(&s->refs, &r, r + 1))
			;
		if (r <= 0)
			continue; /* dead object, the table has moved on */
		if (tab_load(fd) == s)
			return s;
		xp_sock_put(s);
	}
	return NULL;
}

struct xp_sock *xp_fd_set(int fd, struct xp_sock *s)
{
	if (fd < 0)
		return NULL;
	if (s)
		xp_sock_get_ref(s);
	pthread_mutex_lock(&tab_mu);
	struct fdtab *t = tab_for(fd);
	struct xp_sock *old = NULL;
	if (t)
		old = atomic_exchange_explicit(&t->e[fd], s, memory_order_acq_rel);
	pthread_mutex_unlock(&tab_mu);
	if (!t && s) {
		xp_sock_put(s);
		XP_LOG(XP_LOG_ERROR, "fd table: no memory for fd %d", fd);
	}
	return old;
}

struct xp_sock *xp_fd_clear(int fd)
{
	if (fd < 0)
		return NULL;
	struct fdtab *t = atomic_load_explicit(&tab, memory_order_acquire);
	if (!t || (size_t)fd >= t->n || !atomic_load_explicit(&t->e[fd], memory_order_relaxed))
		return NULL;
	pthread_mutex_lock(&tab_mu);
	t = atomic_load_explicit(&tab, memory_order_relaxed);
	struct xp_sock *old = atomic_exchange_explicit(&t->e[fd], NULL, memory_order_acq_rel);
	pthread_mutex_unlock(&tab_mu);
	return old;
}

/* --- socket objects ------------------------------------------------------- */

struct xp_sock *xp_sock_new(void)
{
	struct xp_sock *s;
	pthread_mutex_lock(&pool_mu);
	s = pool_free;
	if (s)
		pool_free = s->free_next;
	pthread_mutex_unlock(&pool_mu);
	if (!s) {
		s = malloc(sizeof(*s));
		if (!s)
			return NULL;
		memset(s, 0, sizeof(*s));
		atomic_init(&s->refs, 0);
		pthread_mutex_init(&s->kaccept_mu, NULL);
	}
	/* refs is 0 here: a racing lookup cannot take it until we publish 1 */
	s->esock = -1;
	s->ss = XP_SS_UNCONNECTED;
	s->bound_any = s->bound = s->listening = s->klisten = s->shut_wr = false;
	s->port = 0;
	s->rcvtimeo_ns = s->sndtimeo_ns = 0;
	s->linger = -1;
	s->eopt_set = 0;
	s->cc_name[0] = 0;
	s->nopt = 0;
	s->waiters = NULL;
	s->free_next = NULL;
	s->ep = NULL;
	s->epis = NULL;
	atomic_store(&s->nonblock, false);
	atomic_store(&s->ph_shared, false);
	atomic_store(&s->mode, XP_UNDECIDED);
	atomic_store_explicit(&s->refs, 1, memory_order_release);
	return s;
}

void xp_sock_get_ref(struct xp_sock *s)
{
	atomic_fetch_add_explicit(&s->refs, 1, memory_order_relaxed);
}

void xp_sock_put(struct xp_sock *s)
{
	if (atomic_fetch_sub_explicit(&s->refs, 1, memory_order_acq_rel) != 1)
		return;
	xp_sock_release(s);
	pthread_mutex_lock(&pool_mu);
	s->free_next = pool_free;
	pool_free = s;
	pthread_mutex_unlock(&pool_mu);
}

void xp_fd_clear_range(unsigned int lo, unsigned int hi)
{
	struct fdtab *t = atomic_load_explicit(&tab, memory_order_acquire);
	if (!t || xp_fork_in_vfork()) /* a vfork child: the table is the parent's */
		return;
	for (size_t fd = lo; fd <= hi && fd < t->n; fd++) {
		if (!atomic_load_explicit(&t->e[fd], memory_order_relaxed))
			continue;
		struct xp_sock *s = xp_fd_clear((int)fd);
		if (s)
			xp_sock_put(s);
	}
}
