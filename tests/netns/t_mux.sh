#!/usr/bin/env bash
# t_mux.sh — epoll, poll and select mixing engine sockets and kernel fds.
#
# tests/netns/mux_mixed.c runs three times in ns A with a kernel peer
# (mux_peer) in ns B: on the kernel (10.55.0.1), under xtcp (10.55.0.3) with
# XTCP_SPIN_US=0, and under xtcp busy-polling 500 ms before each sleep (so
# signals and timeouts land while it spins: a signal at 100 ms must end the
# wait well before 400 ms).  The transcripts must be
# identical to the kernel's.  Then an idle check: a process under xtcp blocked
# in epoll_wait for 6 s must use well under 10% of a core
# (utime+stime from /proc/PID/stat over 3 s), and SIGINT (Ctrl-C, default
# action) must end such a wait within 0.3 s, sleeping or busy-polling; and
# four threads sharing one epoll set (mux_mt.c) echo every byte of 8
# connections.
#
# Exit 0 = pass.  Everything stays inside the namespaces lib.sh creates.
set -uo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=lib.sh
source "$HERE/lib.sh"
XT_STEP_TIMEOUT=${XT_STEP_TIMEOUT:-60}

OUT=$XT_REPO/build/netns/mux
BIN=$XT_REPO/build/netns
mkdir -p "$OUT"
CFLAGS="-O2 -g -Wall -Wextra -Werror"
for p in mux_mixed mux_peer mux_mt; do
	if [[ ! -x $BIN/$p || $HERE/$p.c -nt $BIN/$p ]]; then
		gcc $CFLAGS -pthread -o "$BIN/$p" "$HERE/$p.c" || { echo "t_mux: cannot build $p"; exit 1; }
	fi
done
if ! xtcp_capable; then
	echo "t_mux: $XT_LIB missing or not interposing: run make first"
	exit 1
fi

PORT=7400
PEER_PORT=7500
fail=0

# run NAME OWN_ADDR [under_xtcp VAR=val...]
run() {
	local name=$1 addr=$2
	shift 2
	local dir=$OUT/$name
	rm -rf "$dir"
	mkdir -p "$dir"
	netns_up || return 1
	run_bg B "$dir/peer.out" "$dir/peer.err" "$BIN/mux_peer" "$dir/ctl" "$XT_ADDR_B" "$PEER_PORT"
	local ppid=$XT_LAST_PID
	run_in A "$@" "$BIN/mux_mixed" "$dir/ctl" "$addr" "$PORT" "$XT_ADDR_B" "$PEER_PORT" \
		>"$dir/out" 2>"$dir/err"
	echo "exit $?" >>"$dir/out"
	wait_pid "$ppid" 10 || echo "peer: exit $?" >>"$dir/out"
	netns_down
}

run kernel "$XT_ADDR_A"
if ! grep -q '^done$' "$OUT/kernel/out"; then
	echo "t_mux: the kernel reference run did not finish:"
	cat "$OUT/kernel/out" "$OUT/kernel/err"
	exit 1
fi
# (the second also with a 100 ms XTCP_KERNEL_POLL_US: a quiet set then surely
# skips its kernel fds in the steps that check what must end the quiet)
for v in "xtcp-spin0 XTCP_SPIN_US=0" "xtcp-spin500ms XTCP_SPIN_US=500000 XTCP_KERNEL_POLL_US=100000"; do
	set -- $v
	run "$1" "$XT_ADDR_X" under_xtcp "${@:2}"
	if diff -u "$OUT/kernel/out" "$OUT/$1/out" >"$OUT/$1/diff"; then
		echo "t_mux: $1 matches the kernel ($(wc -l <"$OUT/kernel/out") lines)"
	else
		echo "t_mux: $1 differs from the kernel:"
		cat "$OUT/$1/diff"
		sed -n '1,20p' "$OUT/$1/err"
		fail=1
	fi
done

# Idle: blocked in epoll_wait under xtcp, spinning off.
dir=$OUT/idle
rm -rf "$dir"
mkdir -p "$dir"
netns_up || exit 1
run_bg A "$dir/out" "$dir/err" under_xtcp XTCP_SPIN_US=0 "$BIN/mux_mixed" idle "$XT_ADDR_X" "$PORT" "$dir/pid"
ipid=$XT_LAST_PID
if wait_file "$dir/pid" 10; then
	pid=$(cat "$dir/pid")
	sleep 0.3
	t0=$(awk '{print $14 + $15}' "/proc/$pid/stat")
	sleep 3
	t1=$(awk '{print $14 + $15}' "/proc/$pid/stat")
	[[ -n $t0 && -n $t1 ]] || { t0=0; t1=999999; echo "t_mux: the idle program ended early"; }
	hz=$(getconf CLK_TCK)
	# percent of one core over 3 s
	pct=$(((t1 - t0) * 100 / (3 * hz)))
	echo "t_mux: idle epoll_wait under xtcp: $((t1 - t0)) ticks in 3 s (${pct}% of a core)"
	if ((pct >= 10)); then
		echo "t_mux: FAIL: an idle epoll_wait burns CPU"
		fail=1
	fi
else
	echo "t_mux: FAIL: the idle program did not start"
	cat "$dir/err"
	fail=1
fi
wait_pid "$ipid" 10
if ! grep -q '^idle: 0$' "$dir/out"; then
	echo "t_mux: FAIL: idle run: $(cat "$dir/out" "$dir/err")"
	fail=1
fi
netns_down

# Threads sharing one epoll set (ONESHOT entries re-armed by MOD): 4 server
# threads under xtcp, 8 kernel clients x 1000 echoed rounds, every byte checked;
# and a pipe in the same set, written every millisecond by a raw system call,
# every byte of which must be read.
dir=$OUT/threads
rm -rf "$dir"
mkdir -p "$dir"
netns_up || exit 1
run_bg A "$dir/srv.out" "$dir/srv.err" under_xtcp XTCP_SPIN_US=0 "$BIN/mux_mt" server "$XT_ADDR_X" 7600 4 8 "$dir/ready"
spid=$XT_LAST_PID
if wait_file "$dir/ready" 10 && run_in B "$BIN/mux_mt" client "$XT_ADDR_X" 7600 8 1000 >"$dir/cli.out" 2>&1 &&
	wait_pid "$spid" 30 && grep -q "^server: 8 connections served and closed, 800000 bytes echoed$" "$dir/srv.out" &&
	grep -q "^server: pipe ticks all read$" "$dir/srv.out"; then
	echo "t_mux: 4 threads on one epoll set served 8 connections x 1000 rounds ($(cat "$dir/srv.err"))"
else
	echo "t_mux: FAIL: threads on one epoll set:"
	cat "$dir/cli.out" "$dir/srv.out" "$dir/srv.err"
	fail=1
fi
netns_down

# XTCP_SPIN_US=auto: busy polling that learns.  One connection echoed
# byte by byte (mux_mixed echo, under xtcp) for a kernel client in ns B.
# With a 50 ms pause between rounds a fixed 40 ms spin burns most of a core,
# auto:40000 next to nothing (every wait outlasts the ceiling, so the spin
# shrinks to 0); back to back, auto:1000 catches nearly every byte spinning
# (under half a sleep per round) where XTCP_SPIN_US=0 sleeps for each.
cat >"$OUT/echo_client.py" <<'EOF'
import socket, sys, time
addr, port, rounds, gap = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
for _ in range(200):
    try:
        s = socket.create_connection((addr, port), timeout=10)
        break
    except OSError:
        time.sleep(0.05)
s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
for _ in range(rounds):
    s.sendall(b"x")
    if s.recv(1) != b"x":
        sys.exit("echo_client: bad echo")
    if gap:
        time.sleep(gap)
print("client: done")
EOF
# echo_run NAME SPIN ROUNDS GAP: sets cpu_ms and sleeps from the server's line
echo_run() {
	local name=$1 spin=$2 rounds=$3 gap=$4
	local dir=$OUT/echo-$name
	rm -rf "$dir"
	mkdir -p "$dir"
	cpu_ms=-1 sleeps=-1
	netns_up || return 1
	run_bg A "$dir/out" "$dir/err" under_xtcp XTCP_SPIN_US="$spin" "$BIN/mux_mixed" echo "$XT_ADDR_X" 7700 \
		"$dir/pid" "$rounds"
	local spid=$XT_LAST_PID
	if wait_file "$dir/pid" 10 &&
		run_in B python3 "$OUT/echo_client.py" "$XT_ADDR_X" 7700 "$rounds" "$gap" >"$dir/cli.out" 2>&1 &&
		wait_pid "$spid" 30; then
		read -r cpu_ms sleeps < <(awk -v r="$rounds" '$1 == "echo:" && $2 == r { print $5, $7 }' "$dir/out")
	fi
	netns_down
	if [[ -z ${sleeps:-} || $sleeps == -1 ]]; then
		echo "t_mux: FAIL: echo run $name did not finish:"
		cat "$dir/cli.out" "$dir/out" "$dir/err"
		fail=1
		return 1
	fi
	echo "t_mux: echo $name (XTCP_SPIN_US=$spin, $rounds rounds, ${gap} s apart): ${cpu_ms} ms of CPU, $sleeps sleeps"
}
if echo_run sparse-fixed 40000 40 0.05 && ((cpu_ms < 500)); then
	echo "t_mux: FAIL: a fixed 40 ms spin between 50 ms rounds should burn over 500 ms of 2 s"
	fail=1
fi
if echo_run sparse-auto auto:40000 40 0.05 && ((cpu_ms >= 200)); then
	echo "t_mux: FAIL: XTCP_SPIN_US=auto:40000 kept spinning through 50 ms pauses"
	fail=1
fi
if echo_run busy-nospin 0 3000 0 && ((sleeps * 2 < 3000)); then
	echo "t_mux: FAIL: without busy polling the echo server should sleep for most rounds"
	fail=1
fi
if echo_run busy-auto auto:1000 3000 0 && ((sleeps * 2 >= 3000)); then
	echo "t_mux: FAIL: XTCP_SPIN_US=auto:1000 slept for most rounds of a back-to-back echo"
	fail=1
fi

# Ctrl-C: SIGINT (default action) ends a wait at once, sleeping or spinning.
for spin in 0 1000000; do
	dir=$OUT/sigint-$spin
	rm -rf "$dir"
	mkdir -p "$dir"
	netns_up || exit 1
	run_bg A "$dir/out" "$dir/err" under_xtcp XTCP_SPIN_US=$spin "$BIN/mux_mixed" idle "$XT_ADDR_X" "$PORT" "$dir/pid"
	if wait_file "$dir/pid" 10; then
		pid=$(cat "$dir/pid")
		sleep 0.1
		t0=${EPOCHREALTIME/./}
		kill -INT "$pid"
		while kill -0 "$pid" 2>/dev/null && ((${EPOCHREALTIME/./} - t0 < 2000000)); do
			sleep 0.005
		done
		ms=$(((${EPOCHREALTIME/./} - t0) / 1000))
		if ((ms < 300)); then # the spin lasts 1 s
			echo "t_mux: SIGINT ends epoll_wait at once (XTCP_SPIN_US=$spin)"
		else
			echo "t_mux: SIGINT took ${ms} ms"
			echo "t_mux: FAIL: SIGINT did not end epoll_wait within 0.3 s (XTCP_SPIN_US=$spin)"
			fail=1
		fi
	else
		echo "t_mux: FAIL: the idle program did not start (XTCP_SPIN_US=$spin)"
		fail=1
	fi
	netns_down
done

((fail)) && exit 1
echo "t_mux: pass"
exit 0
