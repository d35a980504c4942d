#!/usr/bin/env bash
# memcached -t 4 under xtcp in ns A (10.55.0.3, -U 0), clients in ns B:
#   - app_memc.py (text protocol over plain sockets): values of 0 B .. 1,000,000 B
#     set and read back byte-identical with their flags, one multi-get of all,
#     a 2 MiB set refused with SERVER_ERROR on a connection that still serves,
#     6 concurrent connections x 300 set/get identical and 6 x 500 incr on one
#     counter = 3000 with replies exactly 1..3000; curr_items = 1821
#   - memcslap -c 8: 8 x 5000 sets, then 8 x 5000 gets that all hit
#     ("Time to get 40000 keys"), exit 0
#   - memcaslap -T 2 -c 16 for 4 s with 10% of gets verified: gets and sets
#     done, get_misses, verify_misses, verify_failed all 0
#   - memccp of random files (1 B .. 900 KiB), memccat returns them identical
#   - memcached still running, and exits on SIGTERM
# XT_APP_KERNEL=1 runs memcached on the kernel instead (same checks).
set -uo pipefail
source "$(dirname "$0")/app_common.sh"

PORT=11311
S="$XT_ADDR_X:$PORT"

app_need memcached memcstat memcslap memcaslap memccp memccat python3
app_up

step "memcached -t 4 on $S in ns A"
app_srv memcached memcached -u root -t 4 -l "$XT_ADDR_X" -p "$PORT" -U 0 -m 1024 -c 1024
app_wait_tcp "$PORT" 15
app_alive memcached
r=$(run_in B memcstat --servers="$S" 2>&1 | grep -E '^[[:space:]]*(version|threads):' | tr -d ' \t' | paste -sd' ')
[[ $r == *threads:4* ]] || fail "memcstat does not report threads:4 ($r)"
ok "memcstat: $r"

step "values of 0 B .. 1,000,000 B, multi-get, concurrent set/get and incr (app_memc.py)"
XT_STEP_TIMEOUT=90 run_in B python3 "$(dirname "$0")/app_memc.py" "$XT_ADDR_X" "$PORT" >"$APP_DIR/memc.log" 2>&1
rc=$?
sed 's/^/   /' "$APP_DIR/memc.log" | grep -v STAT_
((rc == 0)) || fail "app_memc.py failed (exit $rc)"
r=$(sed -n 's/^STAT_curr_items=//p' "$APP_DIR/memc.log")
[[ $r == 1821 ]] || fail "curr_items is '$r', expected 1821 (20 + 6 x 300 + the counter)"
ok "curr_items 1821"
app_alive memcached

step "memcslap -c 8: 8 x 5000 sets, then 8 x 5000 gets"
XT_STEP_TIMEOUT=60 run_in B memcslap --servers="$S" -c 8 -t set -e 5000 >"$APP_DIR/slap-set.log" 2>&1
rc=$?
sed 's/^/   /' "$APP_DIR/slap-set.log" | grep -E 'Time to set|Time total'
((rc == 0)) || fail "memcslap set exited $rc"
grep -Eq 'Time to set +40000 keys by +8 threads' "$APP_DIR/slap-set.log" ||
	fail "memcslap did not set 40000 keys with 8 threads"
if grep -Eiv '^(Time to|-+$|[[:space:]]*$)' "$APP_DIR/slap-set.log" | grep -q .; then
	fail "memcslap set reported: $(grep -Eiv '^(Time to|-+$|[[:space:]]*$)' "$APP_DIR/slap-set.log" | head -3)"
fi
XT_STEP_TIMEOUT=60 run_in B memcslap --servers="$S" -c 8 -t get -e 5000 >"$APP_DIR/slap-get.log" 2>&1
rc=$?
sed 's/^/   /' "$APP_DIR/slap-get.log" | grep -E 'Time to get|Time total'
((rc == 0)) || fail "memcslap get exited $rc"
grep -Eq 'Time to get +40000 keys by +8 threads' "$APP_DIR/slap-get.log" ||
	fail "memcslap get: not every one of 40000 gets hit ($(grep 'Time to get' "$APP_DIR/slap-get.log"))"
if grep -Eiv '^(Time to|-+$|[[:space:]]*$)' "$APP_DIR/slap-get.log" | grep -q .; then
	fail "memcslap get reported: $(grep -Eiv '^(Time to|-+$|[[:space:]]*$)' "$APP_DIR/slap-get.log" | head -3)"
fi
ok "40000 sets, 40000 gets all hit, no error"
app_alive memcached

step "memcaslap -T 2 -c 16 -t 4s, 10% of gets verified"
XT_STEP_TIMEOUT=30 run_in B memcaslap -s "$S" -T 2 -c 16 -t 4s -v 0.1 >"$APP_DIR/aslap.log" 2>&1
rc=$?
grep -E '^(cmd_get|cmd_set|get_misses|verify_misses|verify_failed|Run time):' "$APP_DIR/aslap.log" |
	sed 's/^/   /' | paste -sd' '
((rc == 0)) || fail "memcaslap exited $rc"
for f in cmd_get cmd_set; do
	v=$(sed -n "s/^$f: *\([0-9]*\)\$/\1/p" "$APP_DIR/aslap.log")
	is_uint "$v" && ((v > 0)) || fail "memcaslap $f is '$v', expected > 0"
done
for f in get_misses verify_misses verify_failed; do
	v=$(sed -n "s/^$f: *\([0-9]*\)\$/\1/p" "$APP_DIR/aslap.log")
	[[ $v == 0 ]] || fail "memcaslap $f is '$v', expected 0"
done
grep -Eq '^Run time: [0-9.]+s Ops: [1-9][0-9]* TPS: [1-9]' "$APP_DIR/aslap.log" ||
	fail "memcaslap printed no 'Run time: ... Ops: ... TPS:' summary"
bad=$(grep -Ei 'error|fail|timeout|refused|reset|broken' "$APP_DIR/aslap.log" | grep -Evi '^(verify_failed|udp_timeout): +0$' | head -3)
[[ -z $bad ]] || fail "memcaslap reported: $bad"
ok "gets and sets done, no miss, no verification failure"
app_alive memcached

step "memccp / memccat of files of 1 B .. 900 KiB"
mkdir -p "$APP_DIR/files"
for n in 1 1000 1448 65536 300000 921600; do
	head -c "$n" /dev/urandom >"$APP_DIR/files/xtf$n"
done
(cd "$APP_DIR/files" && XT_STEP_TIMEOUT=30 run_in B memccp --servers="$S" xtf*) ||
	fail "memccp failed"
for n in 1 1000 1448 65536 300000 921600; do
	XT_STEP_TIMEOUT=30 run_in B memccat --servers="$S" "xtf$n" >"$APP_DIR/files/got$n" ||
		fail "memccat xtf$n failed"
	# memccat ends the value with a newline of its own
	[[ $(stat -c %s "$APP_DIR/files/got$n") == $((n + 1)) ]] ||
		fail "memccat xtf$n returned $(stat -c %s "$APP_DIR/files/got$n") bytes, expected $n + newline"
	cmp -s -n "$n" "$APP_DIR/files/got$n" "$APP_DIR/files/xtf$n" ||
		fail "memccat xtf$n differs from the file: $(cmp -n "$n" "$APP_DIR/files/got$n" "$APP_DIR/files/xtf$n")"
done
ok "6 files identical"

step "memcached still serves, then exits on SIGTERM"
app_alive memcached
r=$(run_in B memcstat --servers="$S" 2>&1 | grep -E '^[[:space:]]*curr_items:' | tr -d ' \t')
[[ -n $r ]] || fail "memcstat after the load gives no curr_items"
ok "memcstat: $r"
pid=$(app_pid memcached)
kill -TERM "$pid"
wait_pid "${APP_SRV_PID[memcached]}" 15
rc=$?
((rc == 0)) || fail "memcached exit status $rc after SIGTERM"
ok "memcached exited 0"
app_counters memcached
