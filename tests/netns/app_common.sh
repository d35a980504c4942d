# shellcheck shell=bash
# tests/netns/app_common.sh — what the application tests (t_redis.sh,
# t_memcached.sh, t_sockperf.sh) share, on top of lib.sh.
#
#   source tests/netns/app_common.sh
#   app_up                                  # namespaces (lib.sh's netns_up)
#   app_srv NAME CMD...                     # server in ns A: under xtcp, or
#                                           # on the kernel with XT_APP_KERNEL=1
#   app_wait_tcp PORT [SECS]                # until 10.55.0.3:PORT accepts (from ns B)
#   step "what"; ok "what"; fail "why"      # output; fail exits 1
#
# XT_APP_KERNEL=1 runs the programs that would run under xtcp on the kernel
# instead, with 10.55.0.3 added to ns A's veth so that every command line is
# the same: the scripts themselves can be checked against the kernel, and the
# kernel's figures printed next to xtcp's.  The default is xtcp.
#
# Every step runs under timeout (lib.sh's run_in/run_bg, XT_STEP_TIMEOUT);
# the EXIT trap prints the tail of every log in the work directory when the
# script fails, then runs lib.sh's netns_down and removes the directory.

source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

XT_APP_KERNEL=${XT_APP_KERNEL:-0}
XT_APP_SRV_TIMEOUT=${XT_APP_SRV_TIMEOUT:-400}   # servers live for the whole script
APP_DIR=$(mktemp -d /tmp/xt-app.XXXXXX)
APP_T0=$SECONDS
if [[ $XT_APP_KERNEL == 1 ]]; then APP_MODE=kernel; else APP_MODE=xtcp; fi

_app_exit() {
	local rc=$? f
	if ((rc != 0)); then
		for f in "$APP_DIR"/*.out "$APP_DIR"/*.err "$APP_DIR"/*.log; do
			[[ -s $f ]] || continue
			echo "--- tail of $(basename "$f")" >&2
			tail -n 15 "$f" | cut -c1-300 >&2
		done
	fi
	netns_down
	[[ -n ${XT_APP_KEEP:-} ]] && echo "work directory kept: $APP_DIR" >&2 || rm -rf "$APP_DIR"
	echo "$(basename "$0"): $( ((rc == 0)) && echo PASS || echo "FAIL (exit $rc)") [$APP_MODE, $((SECONDS - APP_T0))s]" >&2
	exit "$rc"
}
trap _app_exit EXIT

step() { echo "== [$APP_MODE $((SECONDS - APP_T0))s] $*"; }
ok() { echo "   ok: $*"; }
note() { echo "   $*"; }
fail() {
	echo "FAIL: $*" >&2
	exit 1
}

# app_need CMD...: every command must exist (a missing one fails the test,
# it is not a reason to skip: tools/install-deps.sh installs them)
app_need() {
	local c
	for c in "$@"; do
		command -v "$c" >/dev/null || fail "$c is not installed (tools/install-deps.sh installs it)"
	done
}

# app_up: the namespaces; with XT_APP_KERNEL=1 the kernel also owns 10.55.0.3.
app_up() {
	netns_up || fail "could not create the namespaces"
	if [[ $APP_MODE == kernel ]]; then
		ip -n "$XT_NS_A" addr add "$XT_ADDR_X/$XT_PREFIX" dev "$XT_IF_A" ||
			fail "could not add $XT_ADDR_X to ns A (kernel mode)"
	else
		xtcp_capable || fail "$XT_LIB is missing or does not interpose connect (run make)"
	fi
	note "mode $APP_MODE: ns A $XT_NS_A (programs on $XT_ADDR_X), ns B $XT_NS_B (kernel peer $XT_ADDR_B)"
}

# app_run A|B CMD...: run_in, under xtcp when in ns A in xtcp mode
app_a() {
	if [[ $APP_MODE == xtcp ]]; then run_in A under_xtcp "$@"; else run_in A "$@"; fi
}

# app_srv NAME CMD...: a long-lived program in ns A (under xtcp unless kernel
# mode; XTCP_LOG_LEVEL debug unless set, for the counters at exit);
# stdout/stderr in $APP_DIR/NAME.out/.err; its pid (of timeout) in
# APP_SRV_PID[NAME].
declare -A APP_SRV_PID
app_srv() {
	local name=$1
	shift
	if [[ $APP_MODE == xtcp ]]; then
		XT_STEP_TIMEOUT=$XT_APP_SRV_TIMEOUT run_bg A "$APP_DIR/$name.out" "$APP_DIR/$name.err" \
			under_xtcp XTCP_LOG_LEVEL="${XTCP_LOG_LEVEL:-debug}" "$@"
	else
		XT_STEP_TIMEOUT=$XT_APP_SRV_TIMEOUT run_bg A "$APP_DIR/$name.out" "$APP_DIR/$name.err" "$@"
	fi
	APP_SRV_PID[$name]=$XT_LAST_PID
}

# app_counters NAME: prints the engine's counters that NAME logged at exit
# (xtcp mode, XTCP_LOG_LEVEL=debug: the default for app_srv)
app_counters() {
	[[ $APP_MODE == xtcp ]] || return 0
	local c
	c=$(grep -h 'debug: counters:' "$APP_DIR/$1.err" 2>/dev/null | sed 's/.*counters: *//' | paste -sd' ')
	note "engine counters of $1 at exit: ${c:-none logged}"
	c=$(grep -h -m1 'attached: backend' "$APP_DIR/$1.err" 2>/dev/null | sed 's/.*attached: //' | cut -d, -f1)
	note "engine of $1: ${c:-no start-up line}"
}

# app_pid NAME: the pid of the program itself (the child of timeout)
app_pid() {
	local p
	p=$(pgrep -P "${APP_SRV_PID[$1]}" | head -n1)
	[[ -n $p ]] && echo "$p"
}

# app_alive NAME: fails the test when the server has exited
app_alive() {
	kill -0 "${APP_SRV_PID[$1]}" 2>/dev/null && [[ -n $(app_pid "$1") ]] ||
		fail "$1 is no longer running"
}

# app_wait_tcp PORT [SECS] [ADDR] [NS]: until a TCP connection from ns B (or NS) to
# ADDR:PORT (default 10.55.0.3) succeeds, bounded.
app_wait_tcp() {
	local port=$1 secs=${2:-15} addr=${3:-$XT_ADDR_X} ns=${4:-B} end
	end=$((SECONDS + secs))
	while ((SECONDS <= end)); do
		if XT_STEP_TIMEOUT=2 run_in "$ns" bash -c "exec 3<>/dev/tcp/$addr/$port" 2>/dev/null; then
			return 0
		fi
		sleep 0.1
	done
	fail "nothing accepts connections on $addr:$port after ${secs}s"
}

# cpu_ticks PID: utime+stime of the process (all threads), clock ticks
cpu_ticks() {
	local stat
	stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
	stat=${stat##*) }   # fields from 3 (state) on
	# shellcheck disable=SC2086
	set -- $stat
	echo $((${12} + ${13}))
}

# is_uint VALUE
is_uint() { [[ $1 =~ ^[0-9]+$ ]]; }
