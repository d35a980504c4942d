/* Offload rules (XTCP_RULES, XTCP_CONFIG, XTCP_PROGRAMS) and the
 * observability settings (XTCP_PCAP*, XTCP_EXIT_SUMMARY, XTCP_STAT*).
 *
 * A rule is "ACTION SELECTOR":
 *   ACTION    kernel | offload
 *   SELECTOR  port N | port N-M | addr A.B.C.D[/PREFIX] | program NAME | all
 * Rules are separated by ';' or newlines; '#' starts a comment.  XTCP_RULES
 * comes first, then the rules of the XTCP_CONFIG file, then one
 * "offload program NAME" per name of XTCP_PROGRAMS (comma-separated).
 *
 * Program rules decide for the whole process, once, when the engine would
 * attach: a matching "kernel program" rule, or "offload program" rules none
 * of which matches, keep every socket on the kernel.  NAME matches the
 * basename of argv[0] or of /proc/self/exe.
 *
 * Socket rules (port, addr, all) are looked at in order where sock.c
 * decides: bind (the address and port given), listen (the port listened
 * on) and connect (the destination).  The first match wins: "kernel" hands
 * the socket to the kernel (reason: the rule), "offload" leaves the usual
 * decision (an offload rule cannot make the engine reach loopback or the
 * kernel's own addresses).  No match: the usual decision.
 *
 * A bad rule (or an unreadable XTCP_CONFIG) gets one error line naming it
 * and what is wrong, and every socket of the process stays on the kernel:
 * a misspelt "kernel" rule must not offload what it meant to protect.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "shim.h"

struct xp_obs_config xp_obs;

enum { SEL_PORT, SEL_ADDR, SEL_PROGRAM, SEL_ALL };

struct rule {
	bool kernel;
	int sel;
	uint16_t lo, hi;      /* SEL_PORT */
	uint32_t net, mask;   /* SEL_ADDR */
	char name[64];        /* SEL_PROGRAM */
	char why[96];         /* the hand-off reason: rule "kernel port 22" */
};

#define RULES_MAX 64
static struct rule rules[RULES_MAX];
static int nrules;

static char *trim(char *s)
{
	while (*s == ' ' || *s == '\t' || *s == '\r')
		s++;
	size_t n = strlen(s);
	while (n && (s[n - 1] == ' ' || s[n - 1] == '\t' || s[n - 1] == '\r'))
		s[--n] = 0;
	return s;
}

static int bad_rule(const char *src, const char *text, const char *why)
{
	xp_log(XP_LOG_ERROR, "%s: rule \"%s\": %s; every socket stays on the kernel", src, text, why);
	return -1;
}

static int parse_port(const char *s, uint16_t *out)
{
	char *end;
	errno = 0;
	unsigned long v = strtoul(s, &end, 10);
	if (errno || end == s || *end || *s == '-' || *s == '+' || v > 65535)
		return -1;
	*out = (uint16_t)v;
	return 0;
}

/* One rule's text (trimmed, not empty); src names where it came from. */
static int parse_rule(const char *src, char *text)
{
	char buf[256];
	if (strlen(text) >= sizeof(buf))
		return bad_rule(src, text, "too long");
	snprintf(buf, sizeof(buf), "%s", text);
	char *save, *act = strtok_r(buf, " \t", &save);
	char *sel = strtok_r(NULL, " \t", &save);
	char *arg = strtok_r(NULL, " \t", &save);
	char *extra = strtok_r(NULL, " \t", &save);
	struct rule r = { 0 };
	if (!act || (strcmp(act, "kernel") && strcmp(act, "offload")))
		return bad_rule(src, text, "expected \"kernel\" or \"offload\" first");
	r.kernel = act[0] == 'k';
	if (!sel)
		return bad_rule(src, text, "expected port, addr, program or all after the action");
	if (!strcmp(sel, "all")) {
		if (arg)
			return bad_rule(src, text, "\"all\" takes no value");
		r.sel = SEL_ALL;
	} else if (!arg) {
		return bad_rule(src, text, "missing value");
	} else if (extra) {
		return bad_rule(src, text, "one value only (write one rule per selector)");
	} else if (!strcmp(sel, "port")) {
		r.sel = SEL_PORT;
		char *dash = strchr(arg, '-');
		if (dash)
			*dash = 0;
		if (parse_port(arg, &r.lo) < 0 || (dash && parse_port(dash + 1, &r.hi) < 0))
			return bad_rule(src, text, "expected a port 0-65535 or a range N-M");
		if (!dash)
			r.hi = r.lo;
		if (r.hi < r.lo)
			return bad_rule(src, text, "empty port range");
	} else if (!strcmp(sel, "addr")) {
		r.sel = SEL_ADDR;
		char *slash = strchr(arg, '/');
		unsigned long prefix = 32;
		if (slash) {
			char *end;
			*slash = 0;
			errno = 0;
			prefix = strtoul(slash + 1, &end, 10);
			if (errno || end == slash + 1 || *end || prefix > 32)
				return bad_rule(src, text, "expected a prefix length 0-32 after '/'");
		}
		struct in_addr a;
		if (inet_pton(AF_INET, arg, &a) != 1)
			return bad_rule(src, text, "expected an IPv4 address a.b.c.d[/prefix]");
		r.mask = prefix ? ~0u << (32 - prefix) : 0;
		r.net = ntohl(a.s_addr) & r.mask;
	} else if (!strcmp(sel, "program")) {
		r.sel = SEL_PROGRAM;
		if (strlen(arg) >= sizeof(r.name))
			return bad_rule(src, text, "program name too long");
		snprintf(r.name, sizeof(r.name), "%s", arg);
	} else {
		return bad_rule(src, text, "unknown selector (port, addr, program or all)");
	}
	if (nrules == RULES_MAX)
		return bad_rule(src, text, "too many rules (at most 64)");
	snprintf(r.why, sizeof(r.why), "rule \"%.80s\"", text);
	rules[nrules++] = r;
	return 0;
}

/* Rules separated by ';' and newlines, '#' comments to the end of a line. */
static int parse_rules(const char *src, char *text)
{
	char *line, *save_l;
	for (line = strtok_r(text, "\n", &save_l); line; line = strtok_r(NULL, "\n", &save_l)) {
		char *hash = strchr(line, '#');
		if (hash)
			*hash = 0;
		char *save_r;
		for (char *r = strtok_r(line, ";", &save_r); r; r = strtok_r(NULL, ";", &save_r)) {
			char *t = trim(r);
			if (*t && parse_rule(src, t) < 0)
				return -1;
		}
	}
	return 0;
}

static int load_file(const char *path)
{
	FILE *f = fopen(path, "re");
	if (!f) {
		xp_log(XP_LOG_ERROR, "XTCP_CONFIG=\"%s\": %s; every socket stays on the kernel", path, strerror(errno));
		return -1;
	}
	char *text = NULL;
	size_t cap = 0;
	ssize_t n = getdelim(&text, &cap, 0, f); /* the whole file */
	bool err = ferror(f) || (n < 0 && !feof(f));
	fclose(f);
	if (err) {
		free(text);
		xp_log(XP_LOG_ERROR, "XTCP_CONFIG=\"%s\": read error; every socket stays on the kernel", path);
		return -1;
	}
	char src[300];
	snprintf(src, sizeof(src), "XTCP_CONFIG=%s", path);
	int r = n > 0 ? parse_rules(src, text) : 0;
	free(text);
	return r;
}

static bool program_matches(const char *name)
{
	if (!strcmp(name, program_invocation_short_name))
		return true;
	char exe[4096];
	ssize_t n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
	if (n <= 0)
		return false;
	exe[n] = 0;
	const char *base = strrchr(exe, '/');
	return !strcmp(name, base ? base + 1 : exe);
}

/* Program rules: may this process offload at all? */
static bool program_allowed(void)
{
	bool any_offload = false, matched = false;
	for (int i = 0; i < nrules; i++) {
		const struct rule *r = &rules[i];
		if (r->sel != SEL_PROGRAM)
			continue;
		bool m = program_matches(r->name);
		if (r->kernel && m) {
			XP_LOG(XP_LOG_INFO, "%s: this program (%s) stays on the kernel", r->why,
			       program_invocation_short_name);
			return false;
		}
		if (!r->kernel) {
			any_offload = true;
			matched |= m;
		}
	}
	if (any_offload && !matched) {
		XP_LOG(XP_LOG_INFO, "no \"offload program\" rule names this program (%s): it stays on the kernel",
		       program_invocation_short_name);
		return false;
	}
	return true;
}

const char *xp_rules_kernel(int at, uint32_t ip, uint16_t port)
{
	for (int i = 0; i < nrules; i++) {
		const struct rule *r = &rules[i];
		bool m;
		switch (r->sel) {
		case SEL_PORT:
			m = port && port >= r->lo && port <= r->hi;
			break;
		case SEL_ADDR:
			m = (at == XP_AT_CONNECT || ip != 0) && (ip & r->mask) == r->net;
			break;
		case SEL_ALL:
			m = true;
			break;
		default:
			continue;
		}
		if (m)
			return r->kernel ? r->why : NULL;
	}
	return NULL;
}

int xp_rules_count(void)
{
	return nrules;
}

static int load_obs(void)
{
	uint64_t x;
	const char *v = getenv("XTCP_PCAP");
	if (v && *v) {
		if (strlen(v) >= sizeof(xp_obs.pcap))
			return xp_config_bad("XTCP_PCAP", v, "path too long");
		snprintf(xp_obs.pcap, sizeof(xp_obs.pcap), "%s", v);
	}
	x = 100;
	if (xp_config_num("XTCP_PCAP_SIZE_MB", 0, 1u << 20, &x) < 0)
		return -1;
	xp_obs.pcap_max_bytes = x << 20;
	x = 2;
	if (xp_config_num("XTCP_PCAP_FILES", 1, 1000, &x) < 0)
		return -1;
	xp_obs.pcap_files = (uint32_t)x;
	x = 0;
	if (xp_config_num("XTCP_EXIT_SUMMARY", 0, 1, &x) < 0)
		return -1;
	xp_obs.exit_summary = x == 1;
	x = 1;
	if (xp_config_num("XTCP_STAT", 0, 1, &x) < 0)
		return -1;
	xp_obs.stat_off = x == 0;
	v = getenv("XTCP_STAT_DIR");
	xp_obs.stat_dir = v && *v ? v : NULL;
	return 0;
}

int xp_rules_load(bool *off)
{
	memset(&xp_obs, 0, sizeof(xp_obs));
	nrules = 0;
	if (load_obs() < 0)
		return -1;
	const char *v = getenv("XTCP_RULES");
	if (v && *v) {
		char *t = strdup(v);
		int r = t ? parse_rules("XTCP_RULES", t) : -1;
		free(t);
		if (r < 0)
			return -1;
	}
	v = getenv("XTCP_CONFIG");
	if (v && *v && load_file(v) < 0)
		return -1;
	v = getenv("XTCP_PROGRAMS");
	if (v && *v) {
		char *t = strdup(v), *save;
		if (!t)
			return -1;
		for (char *p = strtok_r(t, ",", &save); p; p = strtok_r(NULL, ",", &save)) {
			char rule[128];
			char *name = trim(p);
			if (!*name)
				continue;
			snprintf(rule, sizeof(rule), "offload program %.100s", name);
			if (parse_rule("XTCP_PROGRAMS", rule) < 0) {
				free(t);
				return -1;
			}
		}
		free(t);
	}
	if (!program_allowed())
		*off = true;
	return 0;
}
