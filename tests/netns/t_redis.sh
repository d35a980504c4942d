#!/usr/bin/env bash
# redis-server under xtcp in ns A (10.55.0.3), driven from the kernel in ns B:
#   - redis-cli PING answers PONG, INFO names the server (version, port, pid)
#   - an idle server uses well under 10% of a core (utime+stime over 3 s),
#     after start and again after the load
#   - 3000 keys of 1 B to 512 KiB loaded with redis-cli --pipe (errors 0)
#   - redis-benchmark -c 50 -n 200000 -t set,get,incr,lpush,lpop,mset, without
#     and with -P 16: every result line present, no error line, exit 0
#   - the benchmark's own effects: counter:__rand_int__ = 2 x 200000 INCRs,
#     mylist empty again (as many LPOPs as LPUSHes), key:__rand_int__ of 3 bytes
#   - every loaded key read back with redis-cli and compared byte for byte
#   - 6 concurrent clients x 1000 INCR give 6000; 4 concurrent clients x 500
#     LPUSH give a list of 2000 with 500 of each; DBSIZE as expected
#   - SHUTDOWN NOSAVE: the server exits 0 within 15 s
# XT_APP_KERNEL=1 runs redis-server on the kernel instead (same checks).
# XT_REDIS_N (default 200000) sets the benchmark's request count.
set -uo pipefail
source "$(dirname "$0")/app_common.sh"

PORT=6390
NKEYS=3000
NBENCH=${XT_REDIS_N:-200000}
H=(-h "$XT_ADDR_X" -p "$PORT")

cli() { run_in B redis-cli "${H[@]}" "$@"; }

idle_check() {
	local pid t0 t1 hz used pct
	pid=$(app_pid redis) || fail "no redis-server pid"
	hz=$(getconf CLK_TCK)
	t0=$(cpu_ticks "$pid") || fail "cannot read /proc/$pid/stat"
	sleep 3
	t1=$(cpu_ticks "$pid") || fail "redis-server exited during the idle check"
	used=$((t1 - t0))
	pct=$((used * 100 * 100 / (3 * hz)))   # hundredths of a percent of one core
	note "idle redis-server ($1): $used ticks of ${hz}/s in 3 s = $((pct / 100)).$(printf %02d $((pct % 100)))% of a core"
	((pct < 1000)) || fail "idle redis-server ($1) used $((pct / 100))% of a core (limit 10%)"
	ok "idle CPU below 10% of a core ($1)"
}

# bench LABEL ARGS...: one redis-benchmark run, parsed and checked
bench() {
	local label=$1 t0 rc out err line tests n
	shift
	out=$APP_DIR/bench-$label.out
	err=$APP_DIR/bench-$label.err
	t0=$EPOCHREALTIME
	XT_STEP_TIMEOUT=170 run_in B redis-benchmark "${H[@]}" -c 50 -n "$NBENCH" \
		-t set,get,incr,lpush,lpop,mset --csv "$@" >"$out" 2>"$err"
	rc=$?
	note "redis-benchmark $label: $(awk -v a="$t0" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.1f", b - a }') s, exit $rc"
	((rc == 0)) || fail "redis-benchmark $label exited $rc ($( ((rc == 124)) && echo "timed out after 170 s"))"
	# stderr: nothing but blank lines and progress
	if grep -v '^[[:space:]]*$' "$err" | grep -q .; then
		fail "redis-benchmark $label wrote to stderr: $(grep -v '^[[:space:]]*$' "$err" | head -3)"
	fi
	# stdout: the CSV header and one line per test, nothing else (an error reply
	# makes redis-benchmark 7 print "Error from server: ..." and exit 1)
	while IFS= read -r line; do
		line=${line%$'\r'}
		[[ -z $line ]] && continue
		[[ $line == '"test","rps",'* ]] && continue
		[[ $line =~ ^\"(SET|GET|INCR|LPUSH|LPOP|MSET \(10 keys\))\",\"[0-9.]+\" ]] && continue
		fail "redis-benchmark $label: unexpected output line: $line"
	done < <(tr '\r' '\n' <"$out")
	for tests in SET GET INCR LPUSH LPOP 'MSET (10 keys)'; do
		line=$(grep -F "\"$tests\"," "$out" | head -n1)
		[[ -n $line ]] || fail "redis-benchmark $label: no result line for $tests"
		n=$(echo "$line" | cut -d, -f2 | tr -d '"')
		awk -v r="$n" 'BEGIN { exit !(r > 0) }' || fail "redis-benchmark $label: $tests rps '$n'"
		note "$(printf '%-15s %10.0f rps  p50 %s ms  p99 %s ms' "$tests" "$n" \
			"$(echo "$line" | cut -d, -f5 | tr -d '"')" "$(echo "$line" | cut -d, -f7 | tr -d '"')")"
	done
	ok "redis-benchmark $label: 6 result lines, no errors"
}

app_need redis-server redis-cli redis-benchmark python3 getconf strace
app_up
mkdir -p "$APP_DIR/redis"

step "redis-server on $XT_ADDR_X:$PORT in ns A"
app_srv redis redis-server --port "$PORT" --bind "$XT_ADDR_X" --save '' --appendonly no \
	--daemonize no --dir "$APP_DIR/redis" --protected-mode no --loglevel notice
app_wait_tcp "$PORT" 15
app_alive redis
ok "accepts connections"

step "redis-cli PING and INFO"
r=$(cli PING) || fail "redis-cli PING failed"
[[ $r == PONG ]] || fail "PING answered '$r', not PONG"
ok "PING -> PONG"
cli INFO server >"$APP_DIR/info.txt" || fail "redis-cli INFO failed"
grep -q '^redis_version:7' "$APP_DIR/info.txt" || fail "INFO has no redis_version:7.x"
grep -q "^tcp_port:$PORT"$'\r'"\?$" "$APP_DIR/info.txt" || fail "INFO tcp_port is not $PORT"
ipid=$(sed -n 's/^process_id:\([0-9]*\).*/\1/p' "$APP_DIR/info.txt")
[[ $ipid == "$(app_pid redis)" ]] || fail "INFO process_id $ipid is not the server's pid $(app_pid redis)"
ok "INFO: $(grep '^redis_version' "$APP_DIR/info.txt" | tr -d '\r'), tcp_port:$PORT, process_id:$ipid"

step "idle CPU after start"
idle_check "after start"

step "load $NKEYS keys (1 B .. 512 KiB) with redis-cli --pipe"
bytes=$(python3 "$(dirname "$0")/app_redis_data.py" "$NKEYS" "$APP_DIR") || fail "data generator failed"
note "$bytes bytes of values"
run_in B redis-cli "${H[@]}" --pipe <"$APP_DIR/load.resp" >"$APP_DIR/pipe.out" 2>&1 ||
	fail "redis-cli --pipe failed: $(tail -n 2 "$APP_DIR/pipe.out")"
grep -q "^errors: 0, replies: $NKEYS\$" <(tr -d '\r' <"$APP_DIR/pipe.out") ||
	fail "redis-cli --pipe did not report 'errors: 0, replies: $NKEYS': $(tail -n 1 "$APP_DIR/pipe.out")"
ok "errors: 0, replies: $NKEYS"

step "redis-benchmark -c 50 -n $NBENCH, no pipelining"
bench plain
app_alive redis
step "redis-benchmark -c 50 -n $NBENCH -P 16"
bench P16 -P 16
app_alive redis

# The library's own housekeeping costs no system call per request: with 50
# clients (50 different buffers) the user-pointer checks must find their
# pages known (no process_vm_readv/writev) and take our pid from memory (no
# getpid).  Counted with strace -c on the running server; counts, not time:
# at most one per two requests.
# Only on AF_PACKET: on the verbs test double the count varies from run to
# run (801 to 5133 seen) for a reason not found yet, see the issue notes.
if [[ $APP_MODE == xtcp && ${XT_NIC:-} != verbs ]]; then
	step "system calls of redis-server under xtcp for 20000 GETs (strace -c)"
	spid=$(app_pid redis) || fail "no redis-server pid"
	strace -f -qq -c -o "$APP_DIR/strace.txt" -p "$spid" &
	stpid=$!
	sleep 1 # strace attaches to every thread
	XT_STEP_TIMEOUT=120 run_in B redis-benchmark "${H[@]}" -c 50 -n 20000 -t get -q >"$APP_DIR/strace-bench.out" 2>&1 ||
		fail "redis-benchmark under strace failed: $(tail -n 2 "$APP_DIR/strace-bench.out")"
	kill -INT "$stpid"
	wait_pid "$stpid" 20 || true
	calls() { awk -v c="$1" '$NF == c { print $4 }' "$APP_DIR/strace.txt" | head -n1; }
	total=$(calls total)
	# strace did count: the replies went out (sendmmsg; batched per event
	# loop round with XTCP_TX_BATCH, so fewer calls than requests)
	is_uint "$total" && is_uint "$(calls sendmmsg)" && (($(calls sendmmsg) > 0)) ||
		fail "strace counted '${total}' system calls, '$(calls sendmmsg)' sendmmsg, for 20000 requests"
	for c in getpid process_vm_readv process_vm_writev; do
		k=$(calls "$c")
		# new connections bring new buffer pages, checked once each: the
		# count follows pages, not requests (19 to 272 seen on AF_PACKET); a
		# call per request would be 20000 or more (23880 getpid before the
		# page table)
		((${k:-0} <= 10000)) || fail "$c: $k calls for 20000 requests (a system call per request)"
	done
	ok "20000 GETs: $total system calls in all, sendmmsg $(calls sendmmsg); getpid $(calls getpid), process_vm_readv $(calls process_vm_readv), process_vm_writev $(calls process_vm_writev)"
fi

# What redis does to every connection it accepts (O_NONBLOCK by F_SETFL,
# TCP_NODELAY, SO_KEEPALIVE, TCP_KEEPIDLE/INTVL/CNT) needs no socket of the
# connection's own: each keeps its shared template placeholder
# (man/libxtcp.7, SOCKET OPTIONS).
if [[ $APP_MODE == xtcp ]]; then
	step "accepted connections keep their shared placeholders (xtcp-stat -j)"
	spid=$(app_pid redis) || fail "no redis-server pid"
	"$XT_REPO/build/xtcp-stat" -j "$spid" >"$APP_DIR/stat.json" || fail "xtcp-stat -j $spid failed"
	read -r shared own < <(python3 -c 'import json,sys; c=json.load(open(sys.argv[1]))["processes"][0]["counters"]; print(c["accept_placeholders_shared"], c["accept_placeholders_own"])' "$APP_DIR/stat.json") ||
		fail "no placeholder counters in xtcp-stat -j"
	((shared >= 100)) || fail "only $shared accepted connections shared a placeholder"
	((own == 0)) || fail "$own of $shared accepted connections needed a socket of their own"
	ok "$shared connections accepted, every one on a shared placeholder"
fi

step "the benchmark's effects"
r=$(cli GET 'counter:__rand_int__')
[[ $r == $((2 * NBENCH)) ]] || fail "counter:__rand_int__ is '$r' after 2 x $NBENCH INCRs"
ok "counter:__rand_int__ = $r"
r=$(cli LLEN mylist)
[[ $r == 0 ]] || fail "mylist has $r elements after as many LPOPs as LPUSHes"
ok "mylist empty (LPUSH and LPOP counts equal)"
r=$(cli STRLEN 'key:__rand_int__')
[[ $r == 3 ]] || fail "key:__rand_int__ has length '$r', not the benchmark's 3"
ok "key:__rand_int__ has the benchmark's 3 bytes"

step "read back $NKEYS keys with redis-cli and compare"
run_in B redis-cli "${H[@]}" <"$APP_DIR/gets.txt" >"$APP_DIR/got.txt" 2>"$APP_DIR/got.err" ||
	fail "redis-cli GETs failed: $(head -n 2 "$APP_DIR/got.err")"
cmp -s "$APP_DIR/got.txt" "$APP_DIR/expect.txt" ||
	fail "values read back differ: $(cmp "$APP_DIR/got.txt" "$APP_DIR/expect.txt" 2>&1 | head -n1) (got $(wc -l <"$APP_DIR/got.txt") lines)"
ok "$NKEYS values identical ($(stat -c %s "$APP_DIR/got.txt") bytes)"

step "6 concurrent clients x 1000 INCR xt:ctr"
pids=()
for i in 1 2 3 4 5 6; do
	run_bg B "$APP_DIR/incr$i.out" "$APP_DIR/incr$i.err" redis-cli "${H[@]}" -r 1000 INCR xt:ctr
	pids+=("$XT_LAST_PID")
done
for i in "${!pids[@]}"; do
	wait_pid "${pids[$i]}" 60 || fail "INCR client $((i + 1)) failed (exit $?)"
done
r=$(cli GET xt:ctr)
[[ $r == 6000 ]] || fail "xt:ctr is '$r', expected 6000"
ok "xt:ctr = 6000"

step "4 concurrent clients x 500 LPUSH xt:list"
pids=()
for i in 1 2 3 4; do
	run_bg B "$APP_DIR/push$i.out" "$APP_DIR/push$i.err" redis-cli "${H[@]}" -r 500 LPUSH xt:list "c$i"
	pids+=("$XT_LAST_PID")
done
for i in "${!pids[@]}"; do
	wait_pid "${pids[$i]}" 60 || fail "LPUSH client $((i + 1)) failed (exit $?)"
done
r=$(cli LLEN xt:list)
[[ $r == 2000 ]] || fail "LLEN xt:list is '$r', expected 2000"
cli LRANGE xt:list 0 -1 >"$APP_DIR/lrange.txt" || fail "LRANGE failed"
[[ $(wc -l <"$APP_DIR/lrange.txt") == 2000 ]] || fail "LRANGE returned $(wc -l <"$APP_DIR/lrange.txt") elements"
for i in 1 2 3 4; do
	n=$(grep -cx "c$i" "$APP_DIR/lrange.txt")
	[[ $n == 500 ]] || fail "LRANGE has $n elements c$i, expected 500"
done
ok "LLEN 2000, LRANGE 2000 elements, 500 from each client"
r=$(cli DBSIZE)
[[ $r == $((NKEYS + 4)) ]] || fail "DBSIZE is '$r', expected $((NKEYS + 4))"
ok "DBSIZE $r"

step "idle CPU after the load"
idle_check "after the load"

step "SHUTDOWN NOSAVE"
cli SHUTDOWN NOSAVE >/dev/null 2>&1
wait_pid "${APP_SRV_PID[redis]}" 15
rc=$?
((rc == 0)) || fail "redis-server exit status $rc after SHUTDOWN NOSAVE"
ok "redis-server exited 0"
app_counters redis
