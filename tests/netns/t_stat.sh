#!/usr/bin/env bash
# Observability: xtcp-stat, the statistics segment, XTCP_PCAP, offload rules,
# the start-up line and the exit summary.  A program under xtcp in ns A
# (tests/netns/stat_app.c) with a kernel peer in ns B (stat_peer.py):
#   - xtcp-stat PID (text) and -j (JSON, parsed with python3): listeners with
#     their accept-queue length/limit as Recv-Q/Send-Q (3/4 and 1/2), queued
#     connections, ESTAB with 5000 unread bytes as Recv-Q, ESTAB with unacked
#     data as Send-Q, addresses, pid and fd; by name too; -i details; -r
#   - -s: segments in/out, NIC rx/tx non-zero; sockets handed to the kernel
#     by reason: two rules and "destination not reachable through the engine";
#     segments gathered from send rings and read in place (the NIC's offloads)
#   - rules: the ruled connection leaves from the kernel's address; a bad
#     rule keeps the process on the kernel with one error line naming it;
#     XTCP_PROGRAMS and XTCP_CONFIG select as documented
#   - XTCP_PCAP: tcpdump -r reads the SYNs; --pcap off/on leaves out exactly
#     what happened while off; 1 MB x 3 files rotation under a 6 MB transfer;
#     the bulk connection's FINs and the RSTs of the exit in the last file
#   - the segment is gone after a normal exit; a SIGKILLed process's is
#     removed by the next xtcp-stat
#   - XTCP_LOG_LEVEL=info start-up line, XTCP_EXIT_SUMMARY=1 summary,
#     XTCP_LOG_FILE (timestamped lines), XTCP_LOG_LEVEL=error hides warnings
#   - XTCP_MAC=auto and a bad MAC; XTCP_SPIN_US as a number, auto and auto:N
#     in the start-up line, and bad spin or XTCP_KERNEL_POLL_US values (one
#     line, the kernel); -j carries the library's epoll counters
set -uo pipefail
source "$(dirname "$0")/lib.sh" || exit 1

DIR=$(mktemp -d /tmp/xt-stat.XXXXXX)
STAT=$XT_REPO/build/xtcp-stat
T0=$SECONDS
_stat_exit() {
	local rc=$? f
	if ((rc != 0)); then
		for f in "$DIR"/*.out "$DIR"/*.err; do
			[[ -s $f ]] || continue
			echo "--- tail of $(basename "$f")" >&2
			tail -n 20 "$f" | cut -c1-300 >&2
		done
	fi
	netns_down
	rm -rf "$DIR"
	echo "$(basename "$0"): $( ((rc == 0)) && echo PASS || echo "FAIL (exit $rc)") [$((SECONDS - T0))s]" >&2
	exit "$rc"
}
trap _stat_exit EXIT

step() { echo "== [$((SECONDS - T0))s] $*"; }
ok() { echo "   ok: $*"; }
fail() {
	echo "FAIL: $*" >&2
	exit 1
}

xtcp_capable || fail "$XT_LIB is missing or does not interpose connect (run make)"
[[ -x $STAT ]] || fail "$STAT is missing (run make)"
gcc -O1 -g -pthread -o "$DIR/stat_app" "$XT_REPO/tests/netns/stat_app.c" || fail "cannot build stat_app"
PEER=$XT_REPO/tests/netns/stat_peer.py
netns_up || fail "could not create the namespaces"

# --- the scenario --------------------------------------------------------
step "kernel peers in ns B and ns A, then stat_app under xtcp"
run_bg B "$DIR/peer.out" "$DIR/peer.err" python3 "$PEER" servers "$DIR"
run_bg A "$DIR/klisten.out" "$DIR/klisten.err" python3 "$PEER" listen "$XT_ADDR_A" 7300 "$DIR/klisten.ready"
wait_file "$DIR/peer.ready" 10 || fail "peer servers did not start"
wait_file "$DIR/klisten.ready" 10 || fail "kernel listener in ns A did not start"
PCAP=$DIR/cap.pcap
run_bg A "$DIR/app.out" "$DIR/app.err" under_xtcp XTCP_LOG_LEVEL=debug \
	XTCP_RULES="kernel port 7202; kernel port 7102; offload port 7100" \
	XTCP_PCAP="$PCAP" XTCP_PCAP_SIZE_MB=1 XTCP_PCAP_FILES=3 XTCP_EXIT_SUMMARY=1 \
	"$DIR/stat_app" main "$DIR" "$XT_ADDR_B"
APP_TIMEOUT_PID=$XT_LAST_PID
wait_file "$DIR/ready" 30 || fail "stat_app did not get ready"
read -r PID SENT <"$DIR/ready"
ok "stat_app pid $PID, $SENT bytes written to the peer that does not read"
[[ -e /dev/shm/xtcp.$PID ]] || fail "no segment /dev/shm/xtcp.$PID"
ok "segment /dev/shm/xtcp.$PID exists"

step "clients from ns B queue on the listeners (never accepted)"
run_bg B "$DIR/cl0.out" "$DIR/cl0.err" python3 "$PEER" clients "$XT_ADDR_X" 3 7100
run_bg B "$DIR/cl1.out" "$DIR/cl1.err" python3 "$PEER" clients "$XT_ADDR_X" 1 7101 41001
for f in cl0 cl1; do
	for ((i = 0; i < 500; i++)); do
		grep -q connected "$DIR/$f.out" 2>/dev/null && break
		sleep 0.02
	done
	grep -q connected "$DIR/$f.out" || fail "clients $f did not connect"
done
ok "4 connections from $XT_ADDR_B queued"

# --- text ------------------------------------------------------------------
step "xtcp-stat $PID (text)"
"$STAT" "$PID" >"$DIR/stat.txt" 2>"$DIR/stat.err" || fail "xtcp-stat exited $?"
cat "$DIR/stat.txt"
head -1 "$DIR/stat.txt" | grep -q '^State *Recv-Q *Send-Q *Local Address:Port *Peer Address:Port *Process' ||
	fail "no ss-like header"
line() { grep -E "$1" "$DIR/stat.txt" | head -1; }
[[ $(line '^LISTEN +3 +4 +0\.0\.0\.0:7100 +0\.0\.0\.0:\*') ]] || fail "LISTEN 0.0.0.0:7100 with Recv-Q 3 Send-Q 4 missing"
[[ $(line '^LISTEN +1 +2 +10\.55\.0\.3:7101 +0\.0\.0\.0:\* +users:\(\("stat_app",pid='"$PID"',fd=[0-9]+\)\)') ]] ||
	fail "LISTEN 10.55.0.3:7101 with Recv-Q 1 Send-Q 2 and its process missing"
[[ $(line '^ESTAB +5000 +[0-9]+ +10\.55\.0\.3:[0-9]+ +10\.55\.0\.2:7200 ') ]] || fail "ESTAB to :7200 with Recv-Q 5000 missing"
[[ $(line '^ESTAB +0 +[1-9][0-9]* +10\.55\.0\.3:[0-9]+ +10\.55\.0\.2:7201 ') ]] || fail "ESTAB to :7201 with Send-Q > 0 missing"
[[ $(line '^ESTAB +0 +0 +10\.55\.0\.3:7101 +10\.55\.0\.2:41001') ]] || fail "the queued connection 7101 <- 41001 missing"
(($(grep -cE '^ESTAB +0 +0 +10\.55\.0\.3:7100 +10\.55\.0\.2:' "$DIR/stat.txt") == 3)) || fail "3 queued connections on 7100 expected"
grep -qE ':7202|:7102 |:7300' "$DIR/stat.txt" && fail "a socket that went to the kernel is listed"
ok "states, addresses, accept queues 3/4 and 1/2, Recv-Q 5000, Send-Q > 0, process column"

"$STAT" stat_app >"$DIR/byname.txt" 2>&1 || fail "xtcp-stat stat_app exited $?"
grep -q "pid=$PID," "$DIR/byname.txt" || fail "xtcp-stat by name does not show pid $PID"
ok "by name"

"$STAT" -i "$PID" >"$DIR/info.txt" || fail "xtcp-stat -i exited $?"
grep -A1 -E '10\.55\.0\.2:7201' "$DIR/info.txt" | grep -qE 'rto:[0-9.]+ rtt:[0-9.]+/[0-9.]+ mss:[0-9]+ .*cwnd:[0-9]+ .*bytes_acked:[1-9]' ||
	fail "-i details (rtt, cwnd, bytes_acked) missing for :7201"
grep -A1 -E '10\.55\.0\.2:7200' "$DIR/info.txt" | grep -qE '^\s+ ts sack wscale:[0-9]+,[0-9]+ .*bytes_received:5000' ||
	fail "-i negotiated options and bytes_received 5000 missing for :7200"
ok "-i: options, rtt, cwnd, bytes"

"$STAT" -r 0.3 -c 2 "$PID" >"$DIR/refresh.txt" || fail "xtcp-stat -r exited $?"
(($(grep -c '^--- ' "$DIR/refresh.txt") == 2)) || fail "-r 0.3 -c 2: two rounds expected"
ok "refresh mode"

# --- JSON -------------------------------------------------------------------
step "xtcp-stat -j $PID"
"$STAT" -j "$PID" >"$DIR/stat.json" || fail "xtcp-stat -j exited $?"
python3 - "$DIR/stat.json" "$PID" <<'EOF' || fail "JSON checks"
import json, sys
doc = json.load(open(sys.argv[1]))
pid = int(sys.argv[2])
procs = [p for p in doc["processes"] if p["pid"] == pid]
assert len(procs) == 1, "one process expected"
p = procs[0]
assert p["comm"] == "stat_app" and p["address"] == "10.55.0.3" and p["prefix"] == 24, p["comm"]
socks = p["sockets"]
def find(**kw):
    return [s for s in socks if all(s[k] == v for k, v in kw.items())]
l0 = find(state="LISTEN", local_port=7100)
assert len(l0) == 1 and l0[0]["recv_q"] == 3 and l0[0]["send_q"] == 4 and l0[0]["local_addr"] == "0.0.0.0", l0
assert l0[0]["fd"] >= 0
l1 = find(state="LISTEN", local_port=7101)
assert len(l1) == 1 and l1[0]["recv_q"] == 1 and l1[0]["send_q"] == 2 and l1[0]["local_addr"] == "10.55.0.3", l1
q = find(state="ESTAB", local_port=7100)
assert len(q) == 3 and all(s["pending"] and s["fd"] == -1 and s["peer_addr"] == "10.55.0.2" for s in q), q
r = find(state="ESTAB", peer_port=7200)
assert len(r) == 1 and r[0]["recv_q"] == 5000 and r[0]["info"]["bytes_received"] == 5000, r
assert r[0]["info"]["ts"] and r[0]["info"]["sack"] and r[0]["info"]["rtt_us"] > 0, r[0]["info"]
w = find(state="ESTAB", peer_port=7201)
assert len(w) == 1 and w[0]["send_q"] > 0 and w[0]["info"]["cwnd"] > 0 and w[0]["fd"] >= 0, w
assert not [s for s in socks if s["peer_port"] in (7202, 7300) or s["local_port"] == 7102], "kernel sockets listed"
c = p["counters"]
for k in ("tcp_rx_segs", "tcp_tx_segs", "tcp_active_opens", "tcp_passive_opens", "rx_frames", "tx_frames"):
    assert c[k] > 0, k
assert all(k.startswith(("drop_", "tcp_", "rx_", "tx_", "arp_", "icmp_", "epoll_", "accept_", "sendfile_")) for k in c), "counter names"
assert "sendfile_direct_bytes" in c and "sendfile_bounce_bytes" in c, "the shim's sendfile counters"
assert "epoll_kernel_looks" in c and "epoll_kernel_skips" in c, "the shim's epoll counters"
assert "accept_placeholders_shared" in c and "accept_placeholders_own" in c, "the shim's accept counters"
assert p["nic"]["name"] == "packet" and p["nic"]["counters"]["rx_frames"] > 0 and "tx_errors" in p["nic"]["counters"]
h = {x["reason"]: x["count"] for x in p["handoffs"]}
assert h.get('rule "kernel port 7202"') == 1, h
assert h.get('rule "kernel port 7102"') == 1, h
assert h.get("destination not reachable through the engine") == 1, h
assert p["pcap"]["state"] == "on" and p["pcap"]["files"] == 3 and p["pcap"]["max_bytes"] == 1 << 20, p["pcap"]
print("json ok:", len(socks), "sockets,", sum(h.values()), "handed to the kernel")
EOF
ok "JSON: states, queues, Recv-Q/Send-Q, pending children, counters, NIC, hand-offs, capture"

# --- summary and rules -------------------------------------------------------
step "xtcp-stat -s $PID"
"$STAT" -s "$PID" >"$DIR/sum.txt" || fail "xtcp-stat -s exited $?"
cat "$DIR/sum.txt"
grep -qE '^  tcp: [1-9][0-9]* segments received, [1-9][0-9]* sent' "$DIR/sum.txt" || fail "-s: segments in/out"
grep -qE 'rx_frames [1-9]' "$DIR/sum.txt" || fail "-s: NIC rx_frames"
grep -qE '^  handed to the kernel: 3 sockets' "$DIR/sum.txt" || fail "-s: 3 sockets handed to the kernel"
grep -qE '^    1  rule "kernel port 7202"$' "$DIR/sum.txt" || fail "-s: the rule's reason"
grep -qE '^    1  destination not reachable through the engine$' "$DIR/sum.txt" || fail "-s: the unreachable reason"
grep -qE '^  capture: on \(' "$DIR/sum.txt" || fail "-s: capture on"
"$STAT" -s -z "$PID" | grep -qE "tcp_timewait_reuse 0|tcp_syncookies_failed 0" || fail "-s -z: zero counters"
grep -qE "tcp_csum 0" "$DIR/sum.txt" || fail "-s: every drop reason, zero ones too"
# the offloads the engine took from its NIC at attach: sent payload gathered
# from the send rings, the peer's 5000-byte write read in place from the ring
grep -qE "tcp_tx_gathered [1-9]" "$DIR/sum.txt" || fail "-s: no segment gathered from a send ring"
grep -qE "tcp_rx_held [1-9]" "$DIR/sum.txt" || fail "-s: no segment read in place"
ok "-s: segments, NIC, buffers, hand-offs by reason, capture"

ss_b=$(ip netns exec "$XT_NS_B" ss -Htn state established "( sport = :7202 )")
grep -q "$XT_ADDR_A:" <<<"$ss_b" || fail "the 7202 connection should come from the kernel ($XT_ADDR_A): $ss_b"
ok "the ruled connection to :7202 is the kernel's ($XT_ADDR_A)"
grep -q 'handed to the kernel: rule "kernel port 7202"' "$DIR/app.err" || fail "no debug line for the ruled hand-off"
grep -qE 'attached: backend packet \(XTCP_NIC=auto\), interface veth-a \(XTCP_IFACE\), address 10\.55\.0\.3/24 \(XTCP_IP\).*3 offload rules, capture '"$PCAP" "$DIR/app.err" ||
	fail "start-up line missing or incomplete"
ok "debug hand-off line and start-up line in the log"

# --- capture ----------------------------------------------------------------
step "XTCP_PCAP: tcpdump reads it; --pcap off/on"
tcpdump -nn -r "$PCAP" 'tcp[tcpflags] & tcp-syn != 0' >"$DIR/syn.txt" 2>"$DIR/tcpdump.err" || fail "tcpdump -r failed"
grep -qE '10\.55\.0\.3\.[0-9]+ > 10\.55\.0\.2\.7200: Flags \[S\]' "$DIR/syn.txt" || fail "our SYN to :7200 not captured"
grep -qE '10\.55\.0\.2\.41001 > 10\.55\.0\.3\.7101: Flags \[S\]' "$DIR/syn.txt" || fail "the SYN from :41001 not captured"
grep -qE '10\.55\.0\.3\.7101 > 10\.55\.0\.2\.41001: Flags \[S\.\]' "$DIR/syn.txt" || fail "our SYN-ACK to :41001 not captured"
ok "SYN, SYN-ACK of both directions in $PCAP"
"$STAT" --pcap off "$PID" >"$DIR/off.txt" || fail "--pcap off exited $?"
grep -q 'capture off' "$DIR/off.txt" || fail "--pcap off: $(cat "$DIR/off.txt")"
run_bg B "$DIR/cl2.out" "$DIR/cl2.err" python3 "$PEER" clients "$XT_ADDR_X" 1 7105 41002
for ((i = 0; i < 500; i++)); do grep -q connected "$DIR/cl2.out" 2>/dev/null && break; sleep 0.02; done
"$STAT" --pcap on "$PID" >"$DIR/on.txt" || fail "--pcap on exited $?"
grep -q 'capture on' "$DIR/on.txt" || fail "--pcap on: $(cat "$DIR/on.txt")"
run_bg B "$DIR/cl3.out" "$DIR/cl3.err" python3 "$PEER" clients "$XT_ADDR_X" 1 7105 41003
for ((i = 0; i < 500; i++)); do grep -q connected "$DIR/cl3.out" 2>/dev/null && break; sleep 0.02; done
"$STAT" "$PID" >/dev/null # a snapshot flushes the capture
tcpdump -nn -r "$PCAP" 'tcp[tcpflags] & tcp-syn != 0' >"$DIR/syn2.txt" 2>/dev/null || fail "tcpdump -r failed"
grep -q '\.41002 ' "$DIR/syn2.txt" && fail "a SYN sent while capture was off is in the file"
grep -qE '10\.55\.0\.2\.41003 > 10\.55\.0\.3\.7105: Flags \[S\]' "$DIR/syn2.txt" || fail "the SYN after --pcap on is missing"
ok "nothing captured while off, capture again after on"
"$STAT" --pcap on 999999 >/dev/null 2>&1 && fail "--pcap on a pid without a segment should fail"
ok "--pcap on an unknown pid fails"

step "rotation: 6 MB through the engine, XTCP_PCAP_SIZE_MB=1 XTCP_PCAP_FILES=3"
run_in B python3 "$PEER" bulk "$XT_ADDR_X" 7105 6000000 || fail "bulk transfer failed"
"$STAT" -j "$PID" >"$DIR/rot.json" || fail "xtcp-stat -j exited $?"
python3 -c 'import json,sys; p=json.load(open(sys.argv[1]))["processes"][0]["pcap"]; assert p["rotations"] >= 3, p; print("rotations", p["rotations"])' "$DIR/rot.json" ||
	fail "expected at least 3 rotations"
# the sink has accepted 3 connections (cl2, cl3, the bulk one) and only reads
# and closes them: each kept its shared template placeholder
python3 -c 'import json,sys; c=json.load(open(sys.argv[1]))["processes"][0]["counters"]; s, o = c["accept_placeholders_shared"], c["accept_placeholders_own"]; print("placeholders shared", s, "own", o); assert s >= 3 and o == 0' "$DIR/rot.json" ||
	fail "accepted connections did not share template placeholders"
for f in "$PCAP" "$PCAP.1" "$PCAP.2"; do
	[[ -f $f ]] || fail "$f missing"
	size=$(stat -c %s "$f")
	((size <= 1048576)) || fail "$f is $size bytes, above the 1 MB limit"
	tcpdump -nn -r "$f" >/dev/null 2>&1 || fail "tcpdump cannot read $f"
done
[[ -e $PCAP.3 ]] && fail "$PCAP.3 exists: more files than XTCP_PCAP_FILES=3"
ok "3 files of at most 1 MB each, every one readable"

# --- exit -------------------------------------------------------------------
step "normal exit: FIN/RST captured up to the end, summary logged, segment removed"
touch "$DIR/quit"
wait_pid "$APP_TIMEOUT_PID" 20 || fail "stat_app did not exit 0"
[[ -e /dev/shm/xtcp.$PID ]] && fail "segment /dev/shm/xtcp.$PID left after exit"
tcpdump -nn -r "$PCAP" 'tcp[tcpflags] & (tcp-fin|tcp-rst) != 0' >"$DIR/fin.txt" 2>/dev/null || fail "tcpdump -r failed"
grep -qE '10\.55\.0\.2\.[0-9]+ > 10\.55\.0\.3\.7105: Flags \[F' "$DIR/fin.txt" || fail "the bulk sender's FIN is not in $PCAP"
grep -qE '10\.55\.0\.3\.7105 > 10\.55\.0\.2\.[0-9]+: Flags \[F' "$DIR/fin.txt" || fail "our FIN to the bulk sender is not in $PCAP"
# at exit: unread data (:7200) and the queued connections are reset, as Linux does
grep -qE '10\.55\.0\.3\.[0-9]+ > 10\.55\.0\.2\.7200: Flags \[R' "$DIR/fin.txt" || fail "the RST of the exit is not in $PCAP"
grep -qE 'exit summary: .*connections [0-9]+ opened, [0-9]+ accepted' "$DIR/app.err" || fail "no exit summary"
grep -qE 'exit summary: sockets handed to the kernel: 3' "$DIR/app.err" || fail "exit summary without hand-offs"
ok "segment gone, FINs and the exit's RST captured, exit summary in the log"

step "a SIGKILLed process: its stale segment is removed by xtcp-stat"
run_bg A "$DIR/idle.out" "$DIR/idle.err" under_xtcp "$DIR/stat_app" idle "$DIR"
wait_file "$DIR/idle.pid" 20 || fail "idle stat_app did not start"
read -r IPID <"$DIR/idle.pid"
for ((i = 0; i < 100; i++)); do [[ -e /dev/shm/xtcp.$IPID ]] && break; sleep 0.02; done
[[ -e /dev/shm/xtcp.$IPID ]] || fail "no segment for the idle process"
kill -KILL "$IPID"
for ((i = 0; i < 100; i++)); do kill -0 "$IPID" 2>/dev/null || break; sleep 0.02; done
[[ -e /dev/shm/xtcp.$IPID ]] || fail "the segment vanished by itself (expected stale)"
"$STAT" >/dev/null 2>"$DIR/clean.err"
[[ -e /dev/shm/xtcp.$IPID ]] && fail "stale segment /dev/shm/xtcp.$IPID not removed"
grep -q "removed /dev/shm/xtcp.$IPID: process gone" "$DIR/clean.err" || fail "no note about the removal"
ok "stale segment of pid $IPID removed"

# --- rules that select programs, bad rules, XTCP_CONFIG ------------------------
step "rules: XTCP_PROGRAMS, XTCP_CONFIG, a bad rule"
probe() { run_in A under_xtcp "$@" "$DIR/stat_app" probe "$XT_ADDR_B" 7202; }
out=$(probe) || fail "probe failed"
[[ $out == "local $XT_ADDR_X:"* ]] || fail "probe without rules should be offloaded: $out"
out=$(probe XTCP_PROGRAMS=nginx,redis-server) || fail "probe failed"
[[ $out == "local $XT_ADDR_A:"* ]] || fail "XTCP_PROGRAMS=nginx,redis-server should keep stat_app on the kernel: $out"
out=$(probe XTCP_PROGRAMS=stat_app) || fail "probe failed"
[[ $out == "local $XT_ADDR_X:"* ]] || fail "XTCP_PROGRAMS=stat_app should offload it: $out"
printf '# test rules\nkernel addr 10.55.0.0/30   # .1 and .2\noffload all\n' >"$DIR/rules.conf"
out=$(probe XTCP_CONFIG="$DIR/rules.conf") || fail "probe failed"
[[ $out == "local $XT_ADDR_A:"* ]] || fail "XTCP_CONFIG kernel addr rule ignored: $out"
out=$(probe XTCP_RULES="kernel prot 7202" 2>"$DIR/bad.err") || fail "probe failed"
[[ $out == "local $XT_ADDR_A:"* ]] || fail "a bad rule must keep the process on the kernel: $out"
(($(wc -l <"$DIR/bad.err") == 1)) || fail "one log line expected for a bad rule: $(cat "$DIR/bad.err")"
grep -q 'XTCP_RULES: rule "kernel prot 7202": unknown selector' "$DIR/bad.err" || fail "bad rule line: $(cat "$DIR/bad.err")"
out=$(probe XTCP_CONFIG=/nonexistent/xtcp.conf 2>"$DIR/bad2.err") || fail "probe failed"
[[ $out == "local $XT_ADDR_A:"* ]] && grep -q 'XTCP_CONFIG="/nonexistent/xtcp.conf": No such file' "$DIR/bad2.err" ||
	fail "an unreadable XTCP_CONFIG must keep the process on the kernel with one line"
out=$(probe XTCP_EXIT_SUMMARY=1 2>"$DIR/sum.err") || fail "probe failed"
grep -q 'exit summary: .*connections 1 opened' "$DIR/sum.err" || fail "XTCP_EXIT_SUMMARY=1 without a summary"
grep -qx 'xtcp\[[0-9]*\]: info: exit summary: sockets handed to the kernel: 0' "$DIR/sum.err" ||
	fail "exit summary: hand-off line of a process with none: $(grep 'handed' "$DIR/sum.err")"
ok "program selection, config file, bad rules, exit summary"

step "log: XTCP_LOG_FILE with timestamps, XTCP_LOG_LEVEL filters"
out=$(probe XTCP_LOG_LEVEL=info XTCP_LOG_FILE="$DIR/x.log" 2>"$DIR/logfile.err") || fail "probe failed"
[[ ! -s $DIR/logfile.err ]] || fail "with XTCP_LOG_FILE nothing goes to stderr: $(cat "$DIR/logfile.err")"
grep -qE '^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9:]{8}\.[0-9]{6}Z xtcp\[[0-9]+\]: info: attached: backend ' "$DIR/x.log" ||
	fail "no timestamped start-up line in XTCP_LOG_FILE: $(head -3 "$DIR/x.log")"
run_in A under_xtcp env -u XTCP_IFACE "$DIR/stat_app" probe "$XT_ADDR_B" 7202 >/dev/null 2>"$DIR/warn.err" || fail "probe failed"
grep -q 'warn: XTCP_IFACE is not set' "$DIR/warn.err" || fail "the default level shows warnings"
run_in A under_xtcp env -u XTCP_IFACE XTCP_LOG_LEVEL=error "$DIR/stat_app" probe "$XT_ADDR_B" 7202 >/dev/null 2>"$DIR/quiet.err" ||
	fail "probe failed"
[[ ! -s $DIR/quiet.err ]] || fail "XTCP_LOG_LEVEL=error still shows: $(cat "$DIR/quiet.err")"
ok "log file lines carry the time; error level hides warnings"

step "XTCP_MAC: auto, and a bad one"
mac=$(printf '02:58:%02x:%02x:%02x:%02x' ${XT_ADDR_X//./ })
ip -n "$XT_NS_B" neigh flush dev "$XT_IF_B"
out=$(probe XTCP_MAC=auto XTCP_LOG_LEVEL=info 2>"$DIR/mac.err") || fail "probe failed"
[[ $out == "local $XT_ADDR_X:"* ]] || fail "XTCP_MAC=auto: not offloaded: $out"
grep -q "attached: .* mac $mac (XTCP_MAC)" "$DIR/mac.err" || fail "XTCP_MAC=auto: start-up line: $(cat "$DIR/mac.err")"
peer=$(ip -n "$XT_NS_B" neigh show "$XT_ADDR_X" | awk '{print $5}')
[[ $peer == "$mac" ]] || fail "XTCP_MAC=auto: the peer resolved $XT_ADDR_X to ${peer:-nothing}, not $mac"
out=$(probe XTCP_MAC=ff:ff:ff:ff:ff:ff 2>"$DIR/badmac.err") || fail "probe failed"
[[ $out == "local $XT_ADDR_A:"* ]] && (($(wc -l <"$DIR/badmac.err") == 1)) &&
	grep -q 'XTCP_MAC="ff:ff:ff:ff:ff:ff": expected a unicast MAC' "$DIR/badmac.err" ||
	fail "a broadcast XTCP_MAC must keep the process on the kernel with one line: $out $(cat "$DIR/badmac.err")"
ok "XTCP_MAC=auto: $mac, the peer talks to it; a bad one: one line, the kernel"

step "XTCP_SPIN_US (a number, auto, auto:N) and XTCP_KERNEL_POLL_US: good and bad values"
for v in "XTCP_SPIN_US=auto|spin auto, up to 20 us" "XTCP_SPIN_US=auto:300|spin auto, up to 300 us" \
	"XTCP_SPIN_US=7|spin 7 us" "XTCP_KERNEL_POLL_US=0|spin 0 us"; do
	out=$(probe "${v%%|*}" XTCP_LOG_LEVEL=info 2>"$DIR/spin.err") || fail "probe failed"
	[[ $out == "local $XT_ADDR_X:"* ]] && grep -q "attached: .*, ${v#*|};" "$DIR/spin.err" ||
		fail "${v%%|*}: not offloaded, or no '${v#*|}' in the start-up line: $out $(cat "$DIR/spin.err")"
done
for v in "XTCP_SPIN_US=auto:0|expected auto:N with N from 1 to 1000000" \
	"XTCP_SPIN_US=auto:x|expected auto:N with N from 1 to 1000000" \
	"XTCP_SPIN_US=autox|expected a number from 0 to 1000000" \
	"XTCP_KERNEL_POLL_US=100001|expected a number from 0 to 100000"; do
	out=$(probe "${v%%|*}" 2>"$DIR/badspin.err") || fail "probe failed"
	[[ $out == "local $XT_ADDR_A:"* ]] && (($(wc -l <"$DIR/badspin.err") == 1)) &&
		grep -qF "${v#*|}" "$DIR/badspin.err" ||
		fail "${v%%|*} must keep the process on the kernel with one line: $out $(cat "$DIR/badspin.err")"
done
ok "spin and kernel-poll settings: said in the start-up line; bad ones: one line, the kernel"
