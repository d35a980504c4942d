#!/usr/bin/env bash
# The README's demo: installs what it needs, builds, then runs redis-server
# in one network namespace — once on the kernel, once under xtcp — with
# redis-benchmark in another, prints both results side by side, shows what
# xtcp-stat sees of the running server, and cleans up.
#
#   tools/demo.sh [--quick] [--requests N] [--keep-logs]
#   tools/demo.sh --engine [xtcp-demo options]   the engine-only demo: two
#                 engines exchanging 64 MiB each way over an in-memory wire
#                 (try --loss 1 --seed 3, --pcap /tmp/demo.pcap)
#
# Needs root (namespaces).  Nothing leaves the two namespaces it creates
# (10.57.0.0/24 on a veth pair); they and every process go at exit, whatever
# happens.
set -euo pipefail
cd "$(dirname "$0")/.."

usage() {
	sed -n '2,14p' "$0" | sed 's/^# \{0,1\}//'
}

requests=100000
quick=0
keep=0
while [ $# -gt 0 ]; do
	case $1 in
	--engine)
		shift
		tools/install-deps.sh
		make -j2 all
		exec build/xtcp-demo "$@"
		;;
	--quick) quick=1; requests=20000 ;;
	--requests) requests=$2; shift ;;
	--keep-logs) keep=1 ;;
	-h | --help) usage; exit 0 ;;
	*) echo "demo: unknown option '$1' (see --help)" >&2; exit 2 ;;
	esac
	shift
done

if [ "$(id -u)" -ne 0 ]; then
	echo "demo: run as root: it creates network namespaces (sudo tools/demo.sh)" >&2
	exit 1
fi

say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

say "1/5 dependencies and build"
tools/install-deps.sh
make -j2 all >/dev/null
echo "built build/libxtcp.so and build/xtcp-stat"

NS_S="xtdemo-$$-srv" NS_C="xtdemo-$$-cli"
K_ADDR=10.57.0.1 C_ADDR=10.57.0.2 X_ADDR=10.57.0.3
LOG=$(mktemp -d /tmp/xtcp-demo.XXXXXX)
pids=()

cleanup() {
	local rc=$?
	for p in "${pids[@]}"; do kill -KILL "$p" 2>/dev/null || true; done
	for ns in "$NS_S" "$NS_C"; do
		if [ -e "/run/netns/$ns" ]; then
			for p in $(ip netns pids "$ns" 2>/dev/null); do kill -KILL "$p" 2>/dev/null || true; done
			ip netns del "$ns" 2>/dev/null || true
		fi
	done
	if [ "$keep" = 1 ] || [ "$rc" -ne 0 ]; then
		echo "demo: logs kept in $LOG"
	else
		rm -rf "$LOG"
	fi
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

say "2/5 two network namespaces joined by a veth pair"
for ns in "$NS_S" "$NS_C"; do
	ip netns add "$ns"
	ip -n "$ns" link set lo up
	ip netns exec "$ns" sysctl -qw net.ipv6.conf.all.disable_ipv6=1 >/dev/null 2>&1 || true
done
ip -n "$NS_S" link add veth-s type veth peer name veth-c netns "$NS_C"
ip -n "$NS_S" addr add $K_ADDR/24 dev veth-s
ip -n "$NS_C" addr add $C_ADDR/24 dev veth-c
ip -n "$NS_S" link set veth-s up
ip -n "$NS_C" link set veth-c up
sleep 0.2
echo "server namespace: the kernel has $K_ADDR; xtcp's engine takes $X_ADDR on the same veth (AF_PACKET)"
echo "client namespace: the kernel has $C_ADDR, where redis-benchmark runs"

# start_redis ADDR [env...]: redis-server in the server namespace
start_redis() {
	local addr=$1
	shift
	timeout -k 5 300 ip netns exec "$NS_S" env "$@" redis-server --port 6379 --bind "$addr" --save '' \
		--appendonly no --protected-mode no --dir "$LOG" --logfile "$LOG/redis-$addr.log" &
	pids+=($!)
	SERVER_PID=$!
	local i
	for ((i = 0; i < 100; i++)); do
		if ip netns exec "$NS_C" redis-cli -h "$addr" ping 2>/dev/null | grep -q PONG; then
			return 0
		fi
		sleep 0.1
	done
	echo "demo: redis-server on $addr did not answer; its log:" >&2
	cat "$LOG/redis-$addr.log" >&2 || true
	return 1
}

stop_redis() {
	ip netns exec "$NS_C" redis-cli -h "$1" shutdown nosave >/dev/null 2>&1 || true
	wait "$SERVER_PID" 2>/dev/null || true
}

# bench ADDR: GET and SET, 50 clients; prints "rps p50_ms" per test
bench() {
	timeout -k 5 300 ip netns exec "$NS_C" redis-benchmark -h "$1" -c 50 -n "$requests" -t set,get --csv \
		>"$LOG/bench-$1.csv" 2>&1
	grep -E '^"(SET|GET)"' "$LOG/bench-$1.csv" | tr -d '"' | awk -F, '{print $1, $2, $5}'
}

say "3/5 redis-server on the kernel ($K_ADDR), redis-benchmark -c 50 -n $requests"
start_redis $K_ADDR
bench $K_ADDR | tee "$LOG/kernel.txt"
stop_redis $K_ADDR

say "4/5 the same redis-server under xtcp ($X_ADDR): LD_PRELOAD=build/libxtcp.so"
XENV=(LD_PRELOAD="$PWD/build/libxtcp.so" XTCP_IFACE=veth-s XTCP_IP=$X_ADDR/24 XTCP_LOG_LEVEL=info
	XTCP_LOG_FILE="$LOG/xtcp.log")
start_redis $X_ADDR "${XENV[@]}"
bench $X_ADDR | tee "$LOG/xtcp.txt"
echo "redis-cli under xtcp: SET demo hello, GET demo ->" \
	"$(ip netns exec "$NS_C" redis-cli -h $X_ADDR set demo hello >/dev/null &&
		ip netns exec "$NS_C" redis-cli -h $X_ADDR get demo)"

say "5/5 xtcp-stat: what the running server's engine holds"
# Keep one client connected so there is a connection to see.
timeout 20 ip netns exec "$NS_C" bash -c "exec 3<>/dev/tcp/$X_ADDR/6379; printf 'PING\r\n' >&3; sleep 8" &
pids+=($!)
disown $!
sleep 1
build/xtcp-stat redis-server
echo
build/xtcp-stat -s redis-server | head -30 || true
echo
echo "start-up line of libxtcp.so:"
grep -m1 "attached" "$LOG/xtcp.log" || head -3 "$LOG/xtcp.log"
stop_redis $X_ADDR

say "results (requests per second, p50 latency in ms; higher rps is better)"
printf '%-6s %14s %10s %14s %10s %8s\n' test "kernel rps" "p50 ms" "xtcp rps" "p50 ms" ratio
join <(sort "$LOG/kernel.txt") <(sort "$LOG/xtcp.txt") | while read -r t krps kp50 xrps xp50; do
	ratio=$(awk -v a="$xrps" -v b="$krps" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "-" }')
	printf '%-6s %14s %10s %14s %10s %8s\n' "$t" "$krps" "$kp50" "$xrps" "$xp50" "$ratio"
done
n=$(join <(sort "$LOG/kernel.txt") <(sort "$LOG/xtcp.txt") | wc -l)
if [ "$n" -ne 2 ]; then
	echo "demo: a benchmark did not produce results (logs in $LOG)" >&2
	keep=1
	exit 1
fi
echo
echo "(one run on whatever this machine is doing; for repeated, pinned measurements: make bench)"
