#!/usr/bin/env bash
# sockperf over TCP, xtcp at either end:
#   1. `sockperf sr --tcp` under xtcp in ns A (10.55.0.3); from the kernel in
#      ns B: ping-pong with 64 B and 1 KiB messages, throughput with 64 B and
#      1 KiB, then ping-pong once more (the server still answers after the
#      floods)
#   2. a sockperf client under xtcp in ns A (--client_ip 10.55.0.3, seen as
#      the peer by ns B's kernel) against a kernel `sockperf sr` in ns B:
#      ping-pong and throughput, 64 B and 1 KiB, while the server of part 1
#      still runs (two processes' engines on one address and link)
#   3. the server of part 1 answers a last ping-pong and exits 0 on SIGINT
# Every run must exit 0 and report: ping-pong: observations > 0, sent and
# received counts within 1 of each other, 0 dropped, duplicated and
# out-of-order messages, a latency summary; throughput: messages sent > 0, a
# message rate and a bandwidth > 0.  Nothing in the output may say error.
# Latency avg/p50/p99 and throughput are printed (not judged).
# XT_APP_KERNEL=1 runs the xtcp side on the kernel instead (same checks).
# XT_SOCKPERF_SECS (default 2) sets each run's duration.
set -uo pipefail
source "$(dirname "$0")/app_common.sh"

PORT_X=11111   # server under xtcp, ns A
PORT_K=11112   # kernel server, ns B
SECS=${XT_SOCKPERF_SECS:-2}

# check_pp LOG LABEL: asserts a ping-pong report and prints its figures
check_pp() {
	local log=$1 label=$2 line sent recv obs avg p50 p99
	line=$(grep -F '[Valid Duration]' "$log" | tail -n1)
	sent=$(sed -n 's/.*SentMessages=\([0-9]*\).*/\1/p' <<<"$line")
	recv=$(sed -n 's/.*ReceivedMessages=\([0-9]*\).*/\1/p' <<<"$line")
	is_uint "$sent" && is_uint "$recv" || fail "$label: no [Valid Duration] SentMessages/ReceivedMessages line"
	((recv > 0)) || fail "$label: no message received"
	((sent - recv <= 1 && recv - sent <= 1)) || fail "$label: sent $sent, received $recv"
	grep -q '# dropped messages = 0; # duplicated messages = 0; # out-of-order messages = 0' "$log" ||
		fail "$label: $(grep -F 'dropped messages' "$log" || echo 'no dropped/duplicated/out-of-order line')"
	obs=$(sed -n 's/.*Total \([0-9]*\) observations.*/\1/p' "$log")
	is_uint "$obs" && ((obs > 0)) || fail "$label: no observations reported"
	avg=$(sed -n 's/.*Summary: Latency is \([0-9.]*\) usec.*/\1/p' "$log")
	[[ -n $avg ]] || fail "$label: no 'Summary: Latency is' line"
	p50=$(sed -n 's/.*percentile 50.000 = *\([0-9.]*\).*/\1/p' "$log")
	p99=$(sed -n 's/.*percentile 99.000 = *\([0-9.]*\).*/\1/p' "$log")
	[[ -n $p50 && -n $p99 ]] || fail "$label: no 50th/99th percentile lines"
	note "$(printf '%-34s %8d observations  half-RTT avg %8s  p50 %8s  p99 %8s usec' "$label" "$obs" "$avg" "$p50" "$p99")"
}

# check_tp LOG LABEL: asserts a throughput report and prints its figures
check_tp() {
	local log=$1 label=$2 n rate bw
	n=$(sed -n 's/.*Total of \([0-9]*\) messages sent.*/\1/p' "$log")
	is_uint "$n" && ((n > 0)) || fail "$label: no 'Total of N messages sent' line"
	rate=$(sed -n 's/.*Summary: Message Rate is \([0-9]*\) .*/\1/p' "$log")
	is_uint "$rate" && ((rate > 0)) || fail "$label: no message rate"
	bw=$(sed -n 's/.*Summary: BandWidth is \([0-9.]*\) MBps (\([0-9.]*\) Mbps).*/\2/p' "$log")
	awk -v b="$bw" 'BEGIN { exit !(b > 0) }' || fail "$label: no bandwidth"
	note "$(printf '%-34s %10d msgs  %8d msg/s  %10s Mbit/s' "$label" "$n" "$rate" "$bw")"
}

# client NS MODE SIZE LABEL ARGS...: one sockperf client run, checked
client() {
	local ns=$1 mode=$2 size=$3 label=$4 log rc
	shift 4
	log=$APP_DIR/$(tr -c 'a-zA-Z0-9\n' _ <<<"$label").log
	if [[ $ns == A ]]; then
		XT_STEP_TIMEOUT=$((SECS + 20)) app_a sockperf "$mode" --tcp -m "$size" -t "$SECS" "$@" >"$log.raw" 2>&1
	else
		XT_STEP_TIMEOUT=$((SECS + 20)) run_in B sockperf "$mode" --tcp -m "$size" -t "$SECS" "$@" >"$log.raw" 2>&1
	fi
	rc=$?
	sed 's/\x1b\[[0-9;]*m//g' "$log.raw" >"$log"
	((rc == 0)) || fail "$label: sockperf exited $rc$( ((rc == 124)) && echo " (timed out)")"
	# (the library's own log lines, "xtcp[pid]: ...", are not sockperf's)
	if grep -v '^xtcp\[' "$log" | grep -Eiq 'error|fail|refused|reset|broken|abort'; then
		fail "$label: $(grep -v '^xtcp\[' "$log" | grep -Ei 'error|fail|refused|reset|broken|abort' | head -n2)"
	fi
	if [[ $mode == ping-pong ]]; then check_pp "$log" "$label"; else check_tp "$log" "$label"; fi
}

app_need sockperf ss
app_up

step "sockperf server on $XT_ADDR_X:$PORT_X in ns A ($APP_MODE), clients in ns B"
app_srv sps sockperf sr --tcp -i "$XT_ADDR_X" -p "$PORT_X"
app_wait_tcp "$PORT_X" 15
app_alive sps
for size in 64 1024; do
	client B ping-pong "$size" "pp $size B, server $APP_MODE" -i "$XT_ADDR_X" -p "$PORT_X"
done
for size in 64 1024; do
	client B throughput "$size" "tp $size B, server $APP_MODE" -i "$XT_ADDR_X" -p "$PORT_X"
done
client B ping-pong 64 "pp 64 B again, server $APP_MODE" -i "$XT_ADDR_X" -p "$PORT_X"
app_alive sps
if cat "$APP_DIR/sps.out" "$APP_DIR/sps.err" | grep -v '^xtcp\[' | grep -Eiq 'error|fail|abort'; then
	fail "sockperf server: $(cat "$APP_DIR/sps.out" "$APP_DIR/sps.err" | grep -v '^xtcp\[' | grep -Ei 'error|fail|abort' | head -n2)"
fi
ok "5 runs against the server ($APP_MODE)"

step "sockperf client in ns A ($APP_MODE, source $XT_ADDR_X), kernel server on $XT_ADDR_B:$PORT_K"
XT_STEP_TIMEOUT=$XT_APP_SRV_TIMEOUT run_bg B "$APP_DIR/kserver.out" "$APP_DIR/kserver.err" \
	sockperf sr --tcp -i "$XT_ADDR_B" -p "$PORT_K"
wait_listen B "$PORT_K" 10 || fail "the kernel sockperf server in ns B does not listen"
# the first run in the background, to see the connection's source address from ns B
log=$APP_DIR/src.log
if [[ $APP_MODE == xtcp ]]; then
	XT_STEP_TIMEOUT=$((SECS + 20)) run_bg A "$log" "$log.err" under_xtcp \
		sockperf ping-pong --tcp -m 64 -t "$SECS" -i "$XT_ADDR_B" -p "$PORT_K" --client_ip "$XT_ADDR_X"
else
	XT_STEP_TIMEOUT=$((SECS + 20)) run_bg A "$log" "$log.err" \
		sockperf ping-pong --tcp -m 64 -t "$SECS" -i "$XT_ADDR_B" -p "$PORT_K" --client_ip "$XT_ADDR_X"
fi
bgpid=$XT_LAST_PID
peer=
for ((i = 0; i < 100; i++)); do
	peer=$(ip netns exec "$XT_NS_B" ss -Htn state established "( sport = :$PORT_K )" | awk '{print $4}' | head -n1)
	[[ -n $peer ]] && break
	sleep 0.05
done
[[ ${peer%:*} == "$XT_ADDR_X" ]] || fail "ns B sees the client's connection from '${peer:-nothing}', not $XT_ADDR_X"
ok "ns B's kernel sees the client as $peer"
wait_pid "$bgpid" $((SECS + 20)) || fail "the first client run exited $?: $(tail -n 2 "$log.err")"
sed 's/\x1b\[[0-9;]*m//g' "$log" >"$log.clean"
check_pp "$log.clean" "pp 64 B, client $APP_MODE"
client A ping-pong 1024 "pp 1024 B, client $APP_MODE" -i "$XT_ADDR_B" -p "$PORT_K" --client_ip "$XT_ADDR_X"
for size in 64 1024; do
	client A throughput "$size" "tp $size B, client $APP_MODE" -i "$XT_ADDR_B" -p "$PORT_K" --client_ip "$XT_ADDR_X"
done
ok "4 client runs ($APP_MODE) against the kernel server"

# The server of part 1 ran on all along: two unrelated engines on one address
# and link (one family, see libxtcp.7) must not reset each other's connections.
step "the server of part 1 still answers, then exits on SIGINT"
client B ping-pong 64 "pp 64 B after the client runs, server $APP_MODE" -i "$XT_ADDR_X" -p "$PORT_X"
app_alive sps
kill -INT "$(app_pid sps)" 2>/dev/null
wait_pid "${APP_SRV_PID[sps]}" 10
rc=$?
((rc == 0)) || fail "the sockperf server's exit status after SIGINT is $rc$( ((rc == 124)) && echo " (still running after 10 s)")"
ok "the server exits 0 on SIGINT"
app_counters sps
