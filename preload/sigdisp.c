/* Signal handlers and dispositions, for the waits of blocked calls
 * (engine.c xp_wait).
 *
 * A blocked recv/accept/send/connect must end with EINTR when a handler
 * without SA_RESTART runs, or any handler if the call has a timeout, and go
 * on otherwise (signal(7)); and so must one that busy-polls (XTCP_SPIN_US).
 * To know that a handler ran, and which kind, the handlers the program
 * installs with sigaction, signal, bsd_signal, ssignal, sysv_signal,
 * __sysv_signal or siginterrupt are wrapped: the kernel runs a trampoline
 * of ours that counts the run in the thread (xp_sig_ran, and
 * xp_sig_ran_norestart for a handler without SA_RESTART) and calls the
 * program's handler with its arguments.  sigaction reports the program's
 * own handler and flags back.  A wait then needs no system call for
 * signals: it sleeps in the kernel's ppoll under the thread's own mask and
 * spins with signals let in, and compares the counts.
 *
 * Not wrapped: handlers of the synchronous faults (SIGSEGV, SIGBUS, SIGILL,
 * SIGFPE, SIGTRAP, SIGSYS: a crash reporter sees its own frame first), and
 * handlers set with sigset() or a raw rt_sigaction system call.  While a
 * handler of the second kind is installed (xp_sig_summary: not all
 * wrapped) a spinning wait blocks every signal and reads what is pending,
 * and so does a sleeping one among handlers that differ on SA_RESTART (two
 * system calls more per wait); if they agree, an interrupted sleep is
 * decided by their kind.
 *
 * The summary (xp_sig_summary) comes from a table of what each signal's
 * action is, kept by these calls as they set it and by the trampoline (a
 * SA_RESETHAND handler resets itself in the kernel), so a program that
 * sets a handler around every write costs no system call for it.  glibc's
 * own signals (SIGCANCEL, SIGSETXID) are neither wrapped nor queried
 * (sigaction refuses them); their handlers have SA_RESTART.
 */
#define _GNU_SOURCE
#include <signal.h>
#include <string.h>

#include "shim.h"

XP_TLS volatile unsigned xp_sig_ran, xp_sig_ran_norestart;

/* The program's handler of each signal, as it gave it: two slots, the one
 * in use named by act_cur, so that a handler being installed never
 * rewrites the record a delivery on another thread may be reading. */
struct act {
	void *fn;
	int flags;
};
static struct act acts[NSIG][2];
static atomic_uchar act_cur[NSIG];

enum { CLS_NONE, CLS_RESTART, CLS_NORESTART, CLS_RAW_RESTART, CLS_RAW_NORESTART };
static void set_cls(int sig, unsigned char c);

static void tramp(int sig, siginfo_t *si, void *uc)
{
	const struct act *a = &acts[sig][atomic_load_explicit(&act_cur[sig], memory_order_acquire) & 1];
	xp_sig_ran++;
	if (!(a->flags & SA_RESTART))
		xp_sig_ran_norestart++;
	if (a->flags & SA_RESETHAND) /* the kernel has reset it to SIG_DFL */
		set_cls(sig, CLS_NONE);
	atomic_signal_fence(memory_order_seq_cst);
	if (a->flags & SA_SIGINFO)
		((void (*)(int, siginfo_t *, void *))a->fn)(sig, si, uc);
	else
		((void (*)(int))a->fn)(sig);
}

static bool sync_fault(int sig)
{
	return sig == SIGSEGV || sig == SIGBUS || sig == SIGILL || sig == SIGFPE || sig == SIGTRAP || sig == SIGSYS;
}

static bool has_handler(const struct sigaction *sa)
{
	return (sa->sa_flags & SA_SIGINFO) || (sa->sa_handler != SIG_DFL && sa->sa_handler != SIG_IGN);
}

/* --- the summary ----------------------------------------------------------- */

/* What each signal's action is, as far as a wait is concerned, kept by the
 * calls below as they set it (no system call), and the summary computed
 * from that by a scan of the table when it changed.  The table is filled
 * from the kernel (a sigaction query per signal) on the first ask, and
 * again after a sleep was interrupted by a handler that was not counted
 * (one set behind our back, or glibc's own). */
static atomic_uchar cls[NSIG];
static atomic_bool cls_known;
static atomic_uint sig_gen = 1; /* bumped after every change of cls */
static atomic_uint sum_cache;   /* gen << 3 | summary, of the last scan */

static unsigned char class_of(int sig, const struct sigaction *sa, int app_flags)
{
	if (sig == SIGKILL || sig == SIGSTOP || sync_fault(sig) || !has_handler(sa))
		return CLS_NONE; /* no handler (or a fault's, left alone): never an EINTR in a wait */
	bool restart = app_flags & SA_RESTART;
	if (sa->sa_sigaction == tramp)
		return restart ? CLS_RESTART : CLS_NORESTART;
	return restart ? CLS_RAW_RESTART : CLS_RAW_NORESTART;
}

static void set_cls(int sig, unsigned char c)
{
	atomic_store_explicit(&cls[sig], c, memory_order_relaxed);
	atomic_fetch_add_explicit(&sig_gen, 1, memory_order_acq_rel);
}

/* One signal's class, from the kernel. */
static void query(int sig)
{
	struct sigaction sa;
	if (xp_real.sigaction(sig, NULL, &sa) < 0) {
		set_cls(sig, CLS_NONE); /* glibc's own, or beyond the kernel's */
		return;
	}
	int flags = sa.sa_flags;
	if (has_handler(&sa) && sa.sa_sigaction == tramp)
		flags = acts[sig][atomic_load(&act_cur[sig]) & 1].flags;
	set_cls(sig, class_of(sig, &sa, flags));
}

void xp_sig_changed(void)
{
	if (xp_real_init() < 0 || !xp_real.sigaction)
		return;
	for (int sig = 1; sig < NSIG; sig++)
		query(sig);
	atomic_store_explicit(&cls_known, true, memory_order_release);
}

unsigned xp_sig_summary(void)
{
	if (XP_UNLIKELY(!atomic_load_explicit(&cls_known, memory_order_acquire))) {
		xp_sig_changed();
		if (!atomic_load(&cls_known))
			return XP_SIGK_MIXED; /* unknown: the exact way */
	}
	unsigned g = atomic_load_explicit(&sig_gen, memory_order_acquire);
	unsigned c = atomic_load_explicit(&sum_cache, memory_order_acquire);
	if (XP_LIKELY(c >> 3 == (g & 0x1fffffffu)))
		return c & 7;
	int with = 0, without = 0;
	bool wrapped = true;
	for (int sig = 1; sig < NSIG; sig++) {
		switch (atomic_load_explicit(&cls[sig], memory_order_relaxed)) {
		case CLS_RAW_RESTART:
			wrapped = false;
			/* fall through */
		case CLS_RESTART:
			with++;
			break;
		case CLS_RAW_NORESTART:
			wrapped = false;
			/* fall through */
		case CLS_NORESTART:
			without++;
			break;
		}
	}
	unsigned k = with && without ? XP_SIGK_MIXED : without ? XP_SIGK_NORESTART : XP_SIGK_RESTART;
	k |= wrapped ? XP_SIGK_WRAPPED : 0;
	atomic_store_explicit(&sum_cache, (g & 0x1fffffffu) << 3 | k, memory_order_release);
	return k;
}

/* --- the calls that set a handler ------------------------------------------ */

/* The kernel's view of an action of ours turned back into the program's. */
static void unwrap(struct sigaction *sa, const struct act *a)
{
	if (has_handler(sa) && sa->sa_sigaction == tramp) {
		sa->sa_sigaction = (void (*)(int, siginfo_t *, void *))a->fn;
		sa->sa_flags = (sa->sa_flags & ~SA_SIGINFO) | (a->flags & SA_SIGINFO);
	}
}

XP_EXPORT int sigaction(int sig, const struct sigaction *act, struct sigaction *old)
{
	ENSURE(sigaction, (errno = ENOSYS, -1));
	if (sig <= 0 || sig >= NSIG) {
		errno = EINVAL;
		return -1;
	}
	unsigned char prev = atomic_load(&act_cur[sig]) & 1;
	struct act was = acts[sig][prev];
	struct sigaction k;
	const struct sigaction *use = act;
	bool wrap = false;
	if (act && sig != SIGKILL && sig != SIGSTOP && !sync_fault(sig) && has_handler(act)) {
		unsigned char next = prev ^ 1;
		acts[sig][next] = (struct act){ (act->sa_flags & SA_SIGINFO) ? (void *)act->sa_sigaction
									   : (void *)act->sa_handler,
						act->sa_flags };
		atomic_store_explicit(&act_cur[sig], next, memory_order_release);
		k = *act;
		k.sa_sigaction = tramp;
		k.sa_flags |= SA_SIGINFO;
		use = &k;
		wrap = true;
	}
	int r = xp_real.sigaction(sig, use, old);
	int e = errno;
	if (r < 0 && wrap)
		atomic_store_explicit(&act_cur[sig], prev, memory_order_release);
	if (r == 0 && old)
		unwrap(old, &was);
	if (r == 0 && act)
		set_cls(sig, class_of(sig, use, act->sa_flags));
	errno = e;
	return r;
}

/* siginterrupt's record (glibc keeps its own, which signal() no longer reads) */
static sigset_t intr_set;

/* signal() and its kin: h for sig with these flags, sig itself held while
 * it runs unless SA_NODEFER; the handler it replaced, or SIG_ERR. */
static __sighandler_t set_handler(int sig, __sighandler_t h, int flags)
{
	struct sigaction a, o;
	if (h == SIG_ERR || sig <= 0 || sig >= NSIG) {
		errno = EINVAL;
		return SIG_ERR;
	}
	memset(&a, 0, sizeof(a));
	a.sa_handler = h;
	sigemptyset(&a.sa_mask);
	if (!(flags & SA_NODEFER))
		sigaddset(&a.sa_mask, sig);
	a.sa_flags = flags;
	if (sigaction(sig, &a, &o) < 0)
		return SIG_ERR;
	return o.sa_handler;
}

XP_EXPORT __sighandler_t signal(int sig, __sighandler_t h)
{
	/* BSD semantics, as glibc's: restarted unless siginterrupt said not */
	bool intr = sig > 0 && sig < NSIG && sigismember(&intr_set, sig) == 1;
	return set_handler(sig, h, intr ? 0 : SA_RESTART);
}

XP_EXPORT __sighandler_t bsd_signal(int sig, __sighandler_t h)
{
	return signal(sig, h);
}

XP_EXPORT __sighandler_t ssignal(int sig, __sighandler_t h)
{
	return signal(sig, h);
}

XP_EXPORT __sighandler_t sysv_signal(int sig, __sighandler_t h)
{
	return set_handler(sig, h, SA_RESETHAND | SA_NODEFER); /* System V: once, not held, not restarted */
}

XP_EXPORT __sighandler_t __sysv_signal(int sig, __sighandler_t h)
{
	return sysv_signal(sig, h);
}

XP_EXPORT int siginterrupt(int sig, int flag)
{
	struct sigaction a;
	if (sig <= 0 || sig >= NSIG) {
		errno = EINVAL;
		return -1;
	}
	if (sigaction(sig, NULL, &a) < 0)
		return -1;
	if (flag) {
		sigaddset(&intr_set, sig);
		a.sa_flags &= ~SA_RESTART;
	} else {
		sigdelset(&intr_set, sig);
		a.sa_flags |= SA_RESTART;
	}
	return sigaction(sig, &a, NULL);
}

/* SysV sigset: glibc's, handler not wrapped (xp_sig_summary says so) */
XP_EXPORT __sighandler_t sigset(int sig, __sighandler_t h)
{
	ENSURE(sigset, (errno = ENOSYS, SIG_ERR));
	__sighandler_t r = xp_real.sigset(sig, h);
	int e = errno;
	if (sig > 0 && sig < NSIG && xp_real.sigaction)
		query(sig);
	errno = e;
	return r;
}
