#!/usr/bin/env bash
# nginx under xtcp in ns A (10.55.0.3), master + 2 workers sharing the
# listening socket, driven from the kernel in ns B; once with `sendfile on`
# and `daemon on` (the master is a fork child that never attaches), once
# with `sendfile off` and `daemon off` (the master is the process that
# attached, as in a container):
#   - curl downloads of 0 B, 4 KiB, 1 MiB and 64 MiB files are byte-identical
#     (cmp), with keep-alive and with Connection: close
#   - wrk -c 100 keep-alive on the 4 KiB file and Connection: close on the
#     0 B file, XT_NGINX_WRK_SECS (default 5) each: no socket error, only 2xx
#   - both workers served requests (access log by pid); no alert, crit or
#     emerg line in nginx's error log; the master stops on SIGQUIT
#   - daemon off, under xtcp: during wrk the master's NIC took in under 1%
#     of the frames its workers took in (TCP off in its filter: it has no
#     connection and accepts nowhere), xtcp-stat -j
# nginx runs with its own -p prefix and config under build/ (pid file there).
# XT_APP_KERNEL=1 runs nginx on the kernel instead (same checks).
set -uo pipefail
source "$(dirname "$0")/app_common.sh"

WRK_SECS=${XT_NGINX_WRK_SECS:-5}
NG=$XT_REPO/build/nginx-test-$$
URL=http://$XT_ADDR_X

_ng_exit() {
	local rc=$?
	if ((rc != 0)) && [[ -f $NG/error.log ]]; then
		cp "$NG/error.log" "$APP_DIR/nginx-error.log" 2>/dev/null
	fi
	if [[ -f $NG/nginx.pid ]]; then
		kill -KILL "$(cat "$NG/nginx.pid")" 2>/dev/null
	fi
	rm -rf "$NG"
	(exit "$rc")
	_app_exit
}
trap _ng_exit EXIT

command -v nginx >/dev/null || fail "nginx is not installed (tools/install-deps.sh)"
command -v wrk >/dev/null || fail "wrk is not installed (tools/install-deps.sh)"
mkdir -p "$NG/www" "$NG/tmp" || fail "cannot create $NG"
: >"$NG/www/0b"
head -c 4096 /dev/urandom >"$NG/www/4k"
head -c $((1 << 20)) /dev/urandom >"$NG/www/1m"
head -c $((64 << 20)) /dev/urandom >"$NG/www/64m"
chmod -R a+rX "$NG" # the workers run as nobody

app_up

# wrk_check NAME WRK-ARGS...: no socket errors, only 2xx, some requests
wrk_check() {
	local name=$1 out
	shift
	out=$(run_in B wrk -t2 -c100 -d"${WRK_SECS}s" "$@" 2>&1) || fail "wrk ($name) failed: $out"
	echo "$out" >"$APP_DIR/wrk-$name.log"
	grep -q "Socket errors" <<<"$out" && fail "wrk ($name): $(grep 'Socket errors' <<<"$out")"
	grep -q "Non-2xx" <<<"$out" && fail "wrk ($name): $(grep 'Non-2xx' <<<"$out")"
	local rps
	rps=$(awk '/^Requests\/sec/ {print $2}' <<<"$out")
	[[ -n $rps ]] && awk -v r="$rps" 'BEGIN { exit !(r > 0) }' || fail "wrk ($name): no requests: $out"
	ok "wrk $name: $rps requests/s, $(awk '/requests in/ {print $1}' <<<"$out") requests, no socket error, all 2xx"
}

# nic_rx PID...: per process, "PID NIC_RX_FRAMES TCP_OFF" (xtcp-stat -j)
nic_rx() {
	"$XT_REPO/build/xtcp-stat" -j "$@" | python3 -c '
import json, sys
procs = {p["pid"]: p for p in json.load(sys.stdin)["processes"]}
for pid in map(int, sys.argv[1:]):
    c = procs[pid]["nic"]["counters"]
    print(pid, c["rx_frames"], c.get("tcp_off", 0))
' "$@"
}

# sendfile_bytes PID...: "DIRECT BOUNCE", sendfile's bytes summed over them
sendfile_bytes() {
	"$XT_REPO/build/xtcp-stat" -j "$@" | python3 -c '
import json, sys
procs = {p["pid"]: p for p in json.load(sys.stdin)["processes"]}
c = [procs[pid]["counters"] for pid in map(int, sys.argv[1:]) if pid in procs]
print(sum(x.get("sendfile_direct_bytes", 0) for x in c), sum(x.get("sendfile_bounce_bytes", 0) for x in c))
' "$@"
}

run_mode() {
	local mode=$1 port=$2 daemon=$3 master f i hdr n
	step "nginx, sendfile $mode, daemon $daemon, port $port"
	rm -f "$NG/nginx.pid" "$NG/access.log" "$NG/error.log"
	sed -e "s|@DIR@|$NG|g" -e "s|@ADDR@|$XT_ADDR_X|g" -e "s|@PORT@|$port|g" -e "s|@SENDFILE@|$mode|g" \
		-e "s|@DAEMON@|$daemon|g" "$XT_REPO/tests/netns/nginx.conf.in" >"$NG/nginx.conf"
	if [[ $daemon == on ]]; then
		# the master is a fork child that never attaches: no engine of its own
		app_a nginx -p "$NG/" -c "$NG/nginx.conf" -e "$NG/error.log" ||
			fail "nginx did not start: $(tail -n 5 "$NG/error.log" 2>/dev/null)"
	else
		# the master is the process that attached (as in a container)
		app_srv "nginx-$port" nginx -p "$NG/" -c "$NG/nginx.conf" -e "$NG/error.log"
	fi
	wait_file "$NG/nginx.pid" 15 || fail "no pid file"
	master=$(cat "$NG/nginx.pid")
	for i in $(seq 100); do
		n=$(pgrep -c -P "$master")
		((n == 2)) && break
		sleep 0.1
	done
	((n == 2)) || fail "nginx master $master has $n workers, not 2"
	app_wait_tcp "$port" 15
	ok "master $master, workers $(pgrep -P "$master" | tr '\n' ' ')"

	for hdr in "Connection: keep-alive" "Connection: close"; do
		for f in 0b 4k 1m 64m; do
			rm -f "$APP_DIR/got"
			run_in B curl -sS --fail -H "$hdr" -o "$APP_DIR/got" "$URL:$port/$f" ||
				fail "curl $f ($hdr) failed"
			cmp -s "$APP_DIR/got" "$NG/www/$f" || fail "curl $f ($hdr): the download differs from the file"
		done
		ok "curl 0 B, 4 KiB, 1 MiB, 64 MiB byte-identical ($hdr)"
	done
	# two downloads of 64 MiB at once, one per connection
	run_in B bash -c "curl -sS --fail -o '$APP_DIR/p1' '$URL:$port/64m' & curl -sS --fail -o '$APP_DIR/p2' '$URL:$port/64m'; wait" ||
		fail "parallel downloads failed"
	cmp -s "$APP_DIR/p1" "$NG/www/64m" && cmp -s "$APP_DIR/p2" "$NG/www/64m" || fail "parallel downloads differ"
	rm -f "$APP_DIR/p1" "$APP_DIR/p2" "$APP_DIR/got"
	ok "two parallel 64 MiB downloads byte-identical"
	if [[ $APP_MODE == xtcp ]]; then
		local sf direct bounce
		sf=$(sendfile_bytes $(pgrep -P "$master")) || fail "xtcp-stat -j failed"
		read -r direct bounce <<<"$sf"
		note "sendfile bytes of the workers: straight into the send buffer $direct, through a bounce buffer $bounce"
		if [[ $mode == on ]]; then
			# the files were just written: in the page cache, one copy
			((direct >= 4 * 64 * 1048576)) || fail "sendfile on: only $direct bytes went straight into send buffers"
			ok "sendfile: the cached files' bytes went straight into the send buffers (XTCP_SENDFILE_DIRECT)"
		else
			((direct == 0 && bounce == 0)) || fail "sendfile off, yet sendfile bytes counted: $sf"
		fi
	fi

	local check_master=
	[[ $APP_MODE == xtcp && $daemon == off ]] && check_master=1
	[[ $check_master ]] && nic_rx "$master" $(pgrep -P "$master") >"$APP_DIR/rx0"
	wrk_check "$mode-keepalive-4k" "$URL:$port/4k"
	wrk_check "$mode-close-0b" -H "Connection: close" "$URL:$port/0b"
	if [[ $check_master ]]; then
		# The master accepts nowhere and has no connection: its packet
		# socket takes in no TCP (fork.c), so it does not parse its
		# workers' traffic.  Frames the NIC gave each process during wrk:
		nic_rx "$master" $(pgrep -P "$master") >"$APP_DIR/rx1"
		local rx
		rx=$(paste "$APP_DIR/rx0" "$APP_DIR/rx1" | awk '{printf "%s%s:%d(tcp_off %d) ", NR == 1 ? "master " : "worker ", $1, $5 - $2, $6}')
		note "NIC frames during wrk: $rx"
		paste "$APP_DIR/rx0" "$APP_DIR/rx1" | awk '
			NR == 1 { m = $5 - $2; moff = $6; next }
			{ w += $5 - $2; if ($6) woff = 1 }
			END { exit !(moff == 1 && woff == 0 && w > 10000 && m * 100 < w) }' ||
			fail "the master took in its workers' TCP frames, or a worker took in none: $rx"
		ok "the master took in none of its workers' TCP traffic (TCP off in its filter)"
	fi

	sleep 1.5 # the access log's flush=1s
	local per
	per=$(awk '{n[$1]++} END {for (p in n) printf "%s:%d ", p, n[p]}' "$NG/access.log")
	note "requests per worker pid: $per"
	local workers
	workers=$(awk '{print $1}' "$NG/access.log" | sort -u | wc -l)
	((workers == 2)) || fail "not both workers served requests: $per"
	awk '$2 !~ /^2/ {bad++} END {exit bad > 0}' "$NG/access.log" || fail "non-2xx statuses in the access log"
	ok "both workers served requests, every status 2xx"

	kill -QUIT "$master"
	for i in $(seq 150); do
		kill -0 "$master" 2>/dev/null || break
		sleep 0.1
	done
	kill -0 "$master" 2>/dev/null && fail "nginx master did not stop on SIGQUIT"
	if grep -E "\[(alert|crit|emerg)\]" "$NG/error.log"; then
		fail "nginx logged alerts (above)"
	fi
	ok "nginx stopped; no alert in its error log"
}

run_mode on 8080 on
run_mode off 8081 off
