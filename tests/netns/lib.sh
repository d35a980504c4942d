# shellcheck shell=bash
# tests/netns/lib.sh — two network namespaces joined by a veth pair, for tests
# that need a kernel peer for xtcp.  Source it from bash:
#
#   source tests/netns/lib.sh
#   netns_up                        # ns A and B, veth, addresses, lo up
#   run_bg A srv.out srv.err under_xtcp ./server server 10.55.0.3 7000
#                                   # (under_xtcp: LD_PRELOAD + XTCP_* for ns A;
#                                   # XT_NIC=verbs: on the ibverbs test double)
#   wait_file "$dir/listening" 10   # or: wait_listen B 7000 10 (kernel sockets)
#   run_in B ./client client 10.55.0.3 7000
#   netns_down                      # or let the trap do it
#
# Layout (nothing outside these two namespaces is touched, and no traffic
# leaves them):
#
#   ns A  xtct-<pid>-a   veth-a  kernel 10.55.0.1/24; the xtcp engine owns
#                                10.55.0.3 on the same link (the kernel does
#                                not, so it stays silent for it; the engine
#                                answers ARP itself)
#   ns B  xtct-<pid>-b   veth-b  kernel 10.55.0.2/24
#
# Every command runs under timeout(1) (XT_STEP_TIMEOUT seconds, default 60);
# every background process is remembered and killed by netns_down, which the
# EXIT/INT/TERM trap also runs, so namespaces and processes never outlive the
# script, whatever happens.  netns_down followed by netns_up gives a fresh
# pair under the same names (state such as TIME_WAIT does not carry over).

XT_REPO=${XT_REPO:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}
XT_NS_A="xtct-$$-a"
XT_NS_B="xtct-$$-b"
XT_IF_A=veth-a
XT_IF_B=veth-b
XT_ADDR_A=10.55.0.1          # kernel, ns A
XT_ADDR_B=10.55.0.2          # kernel, ns B
XT_ADDR_X=10.55.0.3          # the xtcp engine, ns A
XT_PREFIX=24
XT_STEP_TIMEOUT=${XT_STEP_TIMEOUT:-60}
XT_LIB=${XT_LIB:-$XT_REPO/build/libxtcp.so}
# The backend under_xtcp asks for (XTCP_NIC): empty = the library's default
# (auto); "verbs" = the verbs backend over the libibverbs test double
# (XT_IBV_DOUBLE), whose raw packet QP sends and receives on veth-a through
# AF_PACKET (XTCP_DOUBLE_WIRE=packet:veth-a); XT_DOUBLE_TRACE, if set, is
# the double's trace file (flow rules created and destroyed).
XT_NIC=${XT_NIC:-}
XT_IBV_DOUBLE=${XT_IBV_DOUBLE:-$XT_REPO/build/ibv_double/libibverbs.so.1}
XT_DOUBLE_TRACE=${XT_DOUBLE_TRACE:-}
XT_PIDS=()
XT_NS_IS_UP=0
XT_LAST_PID=

xt_log() { echo "netns: $*" >&2; }

# ns_name A|B -> the namespace's name
ns_name() {
	case $1 in
	A | a) echo "$XT_NS_A" ;;
	B | b) echo "$XT_NS_B" ;;
	*)
		xt_log "unknown namespace '$1' (A or B)"
		return 2
		;;
	esac
}

# A quiet namespace: loopback up, no IPv6 (no autoconfiguration chatter on
# the link for the engine to see).
_xt_new_ns() {
	ip netns add "$1" || return 1
	ip -n "$1" link set lo up || return 1
	ip netns exec "$1" sysctl -qw net.ipv6.conf.all.disable_ipv6=1 \
		net.ipv6.conf.default.disable_ipv6=1 >/dev/null 2>&1 || true
}

netns_up() {
	netns_down
	_xt_new_ns "$XT_NS_A" && _xt_new_ns "$XT_NS_B" &&
		ip -n "$XT_NS_A" link add "$XT_IF_A" type veth peer name "$XT_IF_B" netns "$XT_NS_B" &&
		ip -n "$XT_NS_A" addr add "$XT_ADDR_A/$XT_PREFIX" dev "$XT_IF_A" &&
		ip -n "$XT_NS_B" addr add "$XT_ADDR_B/$XT_PREFIX" dev "$XT_IF_B" &&
		ip -n "$XT_NS_A" link set "$XT_IF_A" up &&
		ip -n "$XT_NS_B" link set "$XT_IF_B" up || {
		xt_log "could not create namespaces $XT_NS_A/$XT_NS_B"
		netns_down
		return 1
	}
	XT_NS_IS_UP=1
	# The veth pair is up once both ends report carrier (bounded).
	local i
	for ((i = 0; i < 200; i++)); do
		if [[ $(ip netns exec "$XT_NS_A" cat /sys/class/net/$XT_IF_A/carrier 2>/dev/null) == 1 &&
			$(ip netns exec "$XT_NS_B" cat /sys/class/net/$XT_IF_B/carrier 2>/dev/null) == 1 ]]; then
			return 0
		fi
		sleep 0.01
	done
	xt_log "veth carrier did not come up"
	return 1
}

# Kills every process we started (and anything still inside our namespaces,
# all of it ours), then deletes the namespaces.  Safe to call repeatedly.
netns_down() {
	local p ns
	for p in "${XT_PIDS[@]}"; do
		kill -TERM -- "$p" 2>/dev/null || true
	done
	for ns in "$XT_NS_A" "$XT_NS_B"; do
		if [[ -e /run/netns/$ns ]]; then
			for p in $(ip netns pids "$ns" 2>/dev/null); do
				kill -KILL "$p" 2>/dev/null || true
			done
		fi
	done
	for p in "${XT_PIDS[@]}"; do
		kill -KILL -- "$p" 2>/dev/null || true
		{ wait "$p"; } 2>/dev/null || true
	done
	XT_PIDS=()
	for ns in "$XT_NS_A" "$XT_NS_B"; do
		[[ -e /run/netns/$ns ]] && ip netns del "$ns" 2>/dev/null
	done
	XT_NS_IS_UP=0
	return 0
}

_xt_trap_exit() {
	local rc=$?
	netns_down
	exit "$rc"
}
trap _xt_trap_exit EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# The environment that puts a program under xtcp on ns A's veth, as the
# engine address 10.55.0.3 (XTCP_LOG_LEVEL passed on if set).
_xt_xtcp_env() {
	XT_XTCP_ENV=(LD_PRELOAD="$XT_LIB" XTCP_IFACE="$XT_IF_A" XTCP_IP="$XT_ADDR_X/$XT_PREFIX")
	case $XT_NIC in
	"") ;;
	verbs)
		XT_XTCP_ENV+=(XTCP_NIC=verbs XTCP_IBVERBS_LIB="$XT_IBV_DOUBLE" XTCP_DOUBLE_WIRE="packet:$XT_IF_A")
		[[ -n $XT_DOUBLE_TRACE ]] && XT_XTCP_ENV+=(XTCP_DOUBLE_TRACE="$XT_DOUBLE_TRACE")
		;;
	*) XT_XTCP_ENV+=(XTCP_NIC="$XT_NIC") ;;
	esac
	[[ -n ${XTCP_LOG_LEVEL:-} ]] && XT_XTCP_ENV+=(XTCP_LOG_LEVEL="$XTCP_LOG_LEVEL")
	return 0
}

# A command line for run_in/run_bg: a leading word `under_xtcp` becomes
# `env <the xtcp environment>` (so VAR=value words may follow it, as with env).
_xt_cmd() {
	if [[ $1 == under_xtcp ]]; then
		shift
		_xt_xtcp_env
		XT_CMD=(env "${XT_XTCP_ENV[@]}" "$@")
	else
		XT_CMD=("$@")
	fi
}

# under_xtcp CMD...  runs CMD under xtcp from a shell that is already inside
# ns A; with run_in/run_bg write `run_in A under_xtcp CMD...`.
under_xtcp() {
	_xt_xtcp_env
	env "${XT_XTCP_ENV[@]}" "$@"
}

# run_in A|B CMD...  runs CMD inside the namespace, bounded by XT_STEP_TIMEOUT
run_in() {
	local ns
	ns=$(ns_name "$1") || return 2
	shift
	_xt_cmd "$@"
	timeout -k 5 "$XT_STEP_TIMEOUT" ip netns exec "$ns" "${XT_CMD[@]}"
}

# run_bg A|B OUT ERR CMD...  the same in the background, stdout to OUT and
# stderr to ERR; the pid (of timeout) lands in XT_LAST_PID and is killed by
# netns_down.  Collect the exit status with wait_pid "$XT_LAST_PID".
run_bg() {
	local ns out=$2 err=$3
	ns=$(ns_name "$1") || return 2
	shift 3
	_xt_cmd "$@"
	timeout -k 5 "$XT_STEP_TIMEOUT" ip netns exec "$ns" "${XT_CMD[@]}" >"$out" 2>"$err" </dev/null &
	XT_LAST_PID=$!
	XT_PIDS+=("$XT_LAST_PID")
}

# xtcp_capable: does libxtcp.so exist and interpose the socket calls?
xtcp_capable() {
	[[ -f $XT_LIB ]] && nm -D --defined-only "$XT_LIB" 2>/dev/null | awk '{print $3}' |
		sed 's/@.*//' | grep -qx connect
}

# wait_listen A|B PORT [SECS]  until a kernel TCP socket listens on PORT in
# that namespace (bounded, default 10 s).  Only kernel sockets show up here:
# for a program under xtcp, use a file it writes (wait_file).
wait_listen() {
	local ns port=$2 secs=${3:-10} end
	ns=$(ns_name "$1") || return 2
	end=$((SECONDS + secs))
	while ((SECONDS <= end)); do
		if [[ -n $(ip netns exec "$ns" ss -Htln "sport = :$port" 2>/dev/null) ]]; then
			return 0
		fi
		sleep 0.02
	done
	xt_log "nothing listens on port $port in $ns after ${secs}s"
	return 1
}

# wait_file PATH [SECS]  until PATH exists (bounded, default 10 s)
wait_file() {
	local path=$1 secs=${2:-10} end
	end=$((SECONDS + secs))
	while ((SECONDS <= end)); do
		[[ -e $path ]] && return 0
		sleep 0.01
	done
	xt_log "$path did not appear after ${secs}s"
	return 1
}

# wait_pid PID [SECS]  waits for a background job (bounded): its exit status,
# or 124 if it had to be killed
wait_pid() {
	local pid=$1 secs=${2:-$XT_STEP_TIMEOUT} end
	end=$((SECONDS + secs))
	while kill -0 "$pid" 2>/dev/null && ((SECONDS <= end)); do
		sleep 0.02
	done
	if kill -0 "$pid" 2>/dev/null; then
		kill -KILL -- "$pid" 2>/dev/null
		{ wait "$pid"; } 2>/dev/null
		return 124
	fi
	wait "$pid"
}

# dump_stacks NAME...  for a step that found a program hung: every thread's
# kernel wait (wchan, the system call it is in) and, with gdb, its user
# stack, for each process whose command name is NAME.  Diagnostics only: it
# decides nothing and always returns 0.
dump_stacks() {
	local name pid t
	for name in "$@"; do
		for pid in $(pgrep -x "$name"); do
			echo "--- process $pid ($name): $(tr '\0' ' ' </proc/"$pid"/cmdline 2>/dev/null)"
			for t in /proc/"$pid"/task/*; do
				echo "  thread ${t##*/}: $(grep -m1 State "$t/status" 2>/dev/null)," \
					"wchan $(cat "$t/wchan" 2>/dev/null), syscall $(cut -d' ' -f1-3 "$t/syscall" 2>/dev/null)"
			done
			if command -v gdb >/dev/null; then
				timeout 20 gdb -p "$pid" -batch -nx -ex 'set pagination off' -ex 'thread apply all bt' 2>/dev/null |
					grep -E '^(Thread|#)' | sed 's/^/  /'
			fi
		done
	done >&2
	return 0
}
