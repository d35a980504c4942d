/* Signals during a blocked call (signal(7)).  Directional: the subject blocks
 * in recv/accept while a thread of its own sends it a signal (pthread_kill);
 * the other end is a kernel peer that sends data only after the signal, on
 * cue.  Under xtcp the three ways a blocked call can sleep are all met: every
 * handler of the process with SA_RESTART (1-3), none with it (4-7), some with
 * and some without (8-9).
 *  1  SA_RESTART handler: recv goes on waiting and returns the data that
 *     comes after the signal; the handler ran once.
 *  2  signal() (BSD semantics: SA_RESTART): the same.
 *  3  the signal ignored (SIG_IGN): recv goes on waiting, returns the data.
 *  4  handler without SA_RESTART: recv fails with EINTR.
 *  5  SA_RESTART wanted but siginterrupt(sig, 1): EINTR.
 *  6  handler without SA_RESTART, the signal blocked by the thread: recv
 *     returns the data; the handler runs once the signal is unblocked.
 *  7  accept on a listener of the subject's own, handler without SA_RESTART:
 *     EINTR.
 *  8  one handler with SA_RESTART (SIGUSR1), one without (SIGUSR2): SIGUSR1
 *     alone, recv goes on and returns the data.
 *  9  the same handlers, SIGUSR1 then SIGUSR2: EINTR; both handlers ran.
 * 10  SA_RESTART handler, SO_RCVTIMEO 5 s on the socket: EINTR (Linux never
 *     restarts a call with a timeout).
 * 11  a SysV sigset() handler (no SA_RESTART; xtcp does not wrap these): EINTR.
 * 12  a SA_SIGINFO handler gets its signal's number and code (SI_TKILL);
 *     sigaction reports back the handler and flags as they were set (0 0: the
 *     setting, then what the kernel resets a SA_RESETHAND handler to). */
#include "common.h"

#include <pthread.h>

static volatile sig_atomic_t n_usr1, n_usr2;
static pthread_t g_main;
static volatile sig_atomic_t g_si_signo, g_si_code;

static void on_info(int sig, siginfo_t *si, void *uc)
{
	(void)sig;
	(void)uc;
	g_si_signo = si->si_signo;
	g_si_code = si->si_code;
}

/* what sigaction says of sig's action */
static void report(const char *name, int sig, void *fn)
{
	struct sigaction o;
	memset(&o, 0, sizeof o);
	sigaction(sig, NULL, &o);
	void *h = (o.sa_flags & SA_SIGINFO) ? (void *)o.sa_sigaction : (void *)o.sa_handler;
	say("%s handler %s, SA_SIGINFO %s, SA_RESTART %s, SA_RESETHAND %s, SA_NODEFER %s", name,
	    h == fn ? "as set" : h == (void *)SIG_DFL ? "SIG_DFL" : h == (void *)SIG_IGN ? "SIG_IGN" : "other",
	    YN(o.sa_flags & SA_SIGINFO), YN(o.sa_flags & SA_RESTART), YN(o.sa_flags & SA_RESETHAND),
	    YN(o.sa_flags & SA_NODEFER));
}

static void on_usr1(int sig)
{
	(void)sig;
	n_usr1++;
}

static void on_usr2(int sig)
{
	(void)sig;
	n_usr2++;
}

/* the handler of sig, flags: SA_RESTART or 0 */
static void handle(int sig, void (*h)(int), int flags)
{
	struct sigaction sa;
	memset(&sa, 0, sizeof sa);
	sa.sa_handler = h;
	sa.sa_flags = flags;
	if (sigaction(sig, &sa, NULL) < 0)
		die("sigaction");
}

/* The safety net's SIGALRM handler with or without SA_RESTART, so that the
 * process's handlers all agree or not as each step wants. */
static void alarm_flags(int flags)
{
	handle(SIGALRM, on_alarm, flags);
}

struct kick {
	int sig1, sig2; /* sig2 0: none */
	char cue[32];
};

/* 300 ms after it starts: sig1 (and 300 ms later sig2) to the main thread,
 * then the cue for the peer */
static void *kicker(void *arg)
{
	struct kick *k = arg;
	msleep(300);
	pthread_kill(g_main, k->sig1);
	if (k->sig2) {
		msleep(300);
		pthread_kill(g_main, k->sig2);
	}
	sync_post(k->cue);
	return NULL;
}

static pthread_t kick(struct kick *k, int sig1, int sig2, const char *cue)
{
	pthread_t t;
	k->sig1 = sig1;
	k->sig2 = sig2;
	snprintf(k->cue, sizeof k->cue, "%s", cue);
	if (pthread_create(&t, NULL, kicker, k) != 0)
		die("pthread_create");
	return t;
}

/* recv under a signal: what it returned (data or error) and the handlers' counts */
static void blocked_recv(int fd, const char *name, int sig1, int sig2)
{
	char buf[64], cue[32];
	struct kick k;
	snprintf(cue, sizeof cue, "%s-sig", name);
	n_usr1 = n_usr2 = 0;
	step(name);
	pthread_t t = kick(&k, sig1, sig2, cue);
	ssize_t n = recv(fd, buf, sizeof buf, 0);
	int e = errno;
	pthread_join(t, NULL);
	errno = e;
	say("%s recv: %s '%.*s', SIGUSR1 handled %d, SIGUSR2 handled %d", name, res(n), (int)(n > 0 ? n : 0), buf,
	    (int)n_usr1, (int)n_usr2);
	if (n < 0) {
		/* the peer sends anyway: take it, so the next step starts clean */
		char done[40];
		snprintf(done, sizeof done, "%s-sent", name);
		sync_wait(done);
		n = read_n(fd, buf, 4);
		say("%s then recv: %s", name, res(n));
	}
}

int main(int argc, char **argv)
{
	conf_init(argc, argv, 60);
	static const char *steps[] = { "1", "2", "3", "4", "5", "6", "7", "8", "9", "10", "11" };
	unsigned short P1 = C.port + 1;
	if (C.server)
		conf_listen(8);
	int fd = conf_pair();
	if (C.subject) {
		g_main = pthread_self();
		signal(SIGPIPE, SIG_IGN);

		/* every handler with SA_RESTART */
		alarm_flags(SA_RESTART);
		handle(SIGUSR1, on_usr1, SA_RESTART);
		blocked_recv(fd, "1", SIGUSR1, 0);
		signal(SIGUSR2, on_usr2);
		blocked_recv(fd, "2", SIGUSR2, 0);
		signal(SIGUSR1, SIG_IGN);
		blocked_recv(fd, "3", SIGUSR1, 0);

		/* none with it */
		alarm_flags(0);
		handle(SIGUSR1, on_usr1, 0);
		signal(SIGUSR2, SIG_DFL);
		blocked_recv(fd, "4", SIGUSR1, 0);
		signal(SIGUSR2, on_usr2);
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wdeprecated-declarations"
		say("5 siginterrupt: %s", res(siginterrupt(SIGUSR2, 1)));
#pragma GCC diagnostic pop
		blocked_recv(fd, "5", SIGUSR2, 0);
		sigset_t usr2;
		sigemptyset(&usr2);
		sigaddset(&usr2, SIGUSR2);
		pthread_sigmask(SIG_BLOCK, &usr2, NULL);
		blocked_recv(fd, "6", SIGUSR2, 0);
		pthread_sigmask(SIG_UNBLOCK, &usr2, NULL);
		say("6 unblocked: SIGUSR2 handled %d", (int)n_usr2);

		step("7");
		int l = tcp_socket();
		struct sockaddr_in me = sin_of(C.local, P1);
		if (bind(l, (struct sockaddr *)&me, sizeof me) < 0 || listen(l, 4) < 0)
			die("bind/listen own");
		struct kick k;
		n_usr1 = 0;
		pthread_t t = kick(&k, SIGUSR1, 0, "7-sig");
		int a = accept(l, NULL, NULL);
		int e = errno;
		pthread_join(t, NULL);
		errno = e;
		say("7 accept: %s, SIGUSR1 handled %d", res(a), (int)n_usr1);
		close(l);

		/* some with, some without */
		handle(SIGUSR1, on_usr1, SA_RESTART);
		handle(SIGUSR2, on_usr2, 0);
		blocked_recv(fd, "8", SIGUSR1, 0);
		blocked_recv(fd, "9", SIGUSR1, SIGUSR2);

		/* a timeout: never restarted */
		alarm_flags(SA_RESTART);
		handle(SIGUSR2, on_usr2, SA_RESTART);
		struct timeval tv = { 5, 0 };
		say("10 SO_RCVTIMEO 5 s: %s", res(setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv)));
		blocked_recv(fd, "10", SIGUSR1, 0);
		tv.tv_sec = 0;
		setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);

#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wdeprecated-declarations"
		say("11 sigset: %s", sigset(SIGUSR1, on_usr1) == SIG_ERR ? "SIG_ERR" : "ok");
#pragma GCC diagnostic pop
		blocked_recv(fd, "11", SIGUSR1, 0);

		step("12");
		struct sigaction sa;
		memset(&sa, 0, sizeof sa);
		sa.sa_sigaction = on_info;
		sa.sa_flags = SA_SIGINFO | SA_RESTART | SA_RESETHAND;
		say("12 sigaction SA_SIGINFO: %s", res(sigaction(SIGUSR2, &sa, NULL)));
		report("12 set:", SIGUSR2, (void *)on_info);
		pthread_kill(g_main, SIGUSR2);
		say("12 si_signo is SIGUSR2 %s, si_code is SI_TKILL %s", YN(g_si_signo == SIGUSR2), YN(g_si_code == SI_TKILL));
		report("12 after:", SIGUSR2, (void *)on_info);
		report("12 SIGUSR1 by signal():", (signal(SIGUSR1, on_usr1), SIGUSR1), (void *)on_usr1);
		report("12 SIGTERM by sysv_signal():", (sysv_signal(SIGTERM, on_usr1), SIGTERM), (void *)on_usr1);
		sync_post("end");
	} else {
		char cue[32], msg[8];
		for (unsigned i = 0; i < sizeof steps / sizeof steps[0]; i++) {
			step(steps[i]);
			if (strcmp(steps[i], "7") == 0) {
				sync_wait("7-sig");
				continue;
			}
			snprintf(cue, sizeof cue, "%s-sig", steps[i]);
			sync_wait(cue);
			msleep(200);
			snprintf(msg, sizeof msg, "s%-3s", steps[i]);
			say("%s send: %s", steps[i], res(send(fd, msg, 4, 0)));
			snprintf(cue, sizeof cue, "%s-sent", steps[i]);
			sync_post(cue);
		}
		sync_wait("end");
	}
	close(fd);
	if (C.server)
		close(C.lfd);
	return 0;
}
