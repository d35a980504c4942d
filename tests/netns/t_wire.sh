#!/usr/bin/env bash
# The segments xtcp puts on the wire, compared with the kernel's for the
# same program (Linux is the reference): a server in ns A, on the kernel
# (10.55.0.1) and then under xtcp (10.55.0.3), a kernel client in ns B, and
# tcpdump on ns B's veth.  Each capture is normalized by wire_pair.py
# (direction, flags, payload length, relative sequence and acknowledgement
# numbers) and each direction's list must be equal; the window field of the
# server's replies may not change more often under xtcp than on the kernel
# (a changed field sends a Linux peer's segment down its slow path).  Scenarios (wire_pair.py):
#   rr        10 request/reply rounds, then the client closes: the first
#             request is ACKed at once (quick-ACK mode), the others by the
#             reply (interactive mode), and the client's FIN by the
#             server's own FIN (three segments close it)
#   srvclose  a request, a 100-byte reply and the server's close
#   halfclose a request and the client's shutdown(SHUT_WR), then the reply
#             (it carries the ACK of the client's FIN) and the server's close
#   slowreply 3 requests answered 100 ms late: quick or delayed ACKs first
#   pipe      3 rounds, then two requests written 2 ms apart to a server
#             busy elsewhere: the client's Nagle holds the second until the
#             server's delayed ACK of the first (40 ms; it also ends
#             interactive mode), so the second gets a quick ACK; both are
#             answered in one write
# each with the server under xtcp (the client the kernel in ns B), then with
# the client under xtcp (the server the kernel in ns B).
# WIRE_ONLY="SCENARIO:SIDE ..." (e.g. "pipe:server") runs only those.
# The kernel's reference is taken again when xtcp differs from it; xtcp
# then passes if it matches either kernel run (the kernel's own timing can
# move a delayed ACK).
set -uo pipefail
source "$(dirname "$0")/lib.sh"

W=$(mktemp -d /tmp/xt-wire-XXXXXX)
trap 'netns_down; rm -rf "$W"' EXIT
PY=$XT_REPO/tests/netns/wire_pair.py
fails=0
port=7400

fail_note() { echo "FAIL: $*"; fails=$((fails + 1)); }

# capture MODE SCENARIO OUT [client]: one run; the normalized segments land
# in OUT.  MODE (kernel or xtcp) is the server's, in ns A; with "client" it
# is the client's instead, in ns A, and the server is the kernel in ns B.
capture() {
	local mode=$1 sc=$2 out=$3 side=${4:-server} addr sns=A cns=B srv=() cli=()
	port=$((port + 1))
	if [[ $side == client ]]; then
		addr=$XT_ADDR_B sns=B cns=A
		[[ $mode == xtcp ]] && cli=(under_xtcp)
	elif [[ $mode == xtcp ]]; then
		addr=$XT_ADDR_X srv=(under_xtcp)
	else
		addr=$XT_ADDR_A
	fi
	rm -f "$W/ready" "$W/cap.pcap"
	run_bg B "$W/tcpdump.out" "$W/tcpdump.err" tcpdump -i "$XT_IF_B" -nn -U --immediate-mode -w "$W/cap.pcap" "tcp port $port"
	local td=$XT_LAST_PID i
	for ((i = 0; i < 500; i++)); do
		grep -q "listening on" "$W/tcpdump.err" 2>/dev/null && break
		sleep 0.01
	done
	run_bg "$sns" "$W/server.out" "$W/server.err" "${srv[@]}" python3 "$PY" server "$addr" "$port" "$sc" "$W/ready"
	local sp=$XT_LAST_PID
	wait_file "$W/ready" 20 || { cat "$W/server.err"; return 1; }
	run_in "$cns" "${cli[@]}" python3 "$PY" client "$addr" "$port" "$sc" || { echo "client failed"; return 1; }
	wait_pid "$sp" 20 || { echo "server failed: $(cat "$W/server.err")"; return 1; }
	sleep 0.3 # the last ACK
	kill -INT "$td" 2>/dev/null
	wait_pid "$td" 10 >/dev/null 2>&1
	python3 "$PY" segments "$W/cap.pcap" "$port" >"$out" || return 1
	[[ -s $out ]] && grep -q '^S S' "$out" || { echo "nothing captured"; return 1; }
}

win_changes() { sed -n 's/^server window field changes between replies: //p' "$1"; }
# each direction's segments in order (how the two directions interleave is
# the timing of two hosts, not TCP's behaviour)
segs() { grep '^C ' "$1"; grep '^S ' "$1"; }

netns_up || exit 1
for spec in ${WIRE_ONLY:-rr:server srvclose:server halfclose:server slowreply:server pipe:server rr:client srvclose:client halfclose:client slowreply:client pipe:client}; do
	sc=${spec%:*} side=${spec#*:}
	echo "== $sc, the $side under xtcp"
	capture kernel "$sc" "$W/k1" "$side" || { fail_note "$sc: kernel run"; continue; }
	capture xtcp "$sc" "$W/x" "$side" || { fail_note "$sc: xtcp run"; continue; }
	if ! diff -q <(segs "$W/k1") <(segs "$W/x") >/dev/null; then
		capture kernel "$sc" "$W/k2" "$side" || { fail_note "$sc: second kernel run"; continue; }
		if diff -q <(segs "$W/k2") <(segs "$W/x") >/dev/null; then
			echo "   (the kernel's first run differed from its second; xtcp matches the second)"
			cp "$W/k2" "$W/k1"
		else
			diff -u --label kernel <(segs "$W/k1") --label xtcp <(segs "$W/x")
			diff -q <(segs "$W/k1") <(segs "$W/k2") >/dev/null ||
				diff -u --label "kernel run 1" <(segs "$W/k1") --label "kernel run 2" <(segs "$W/k2")
			fail_note "$sc: xtcp's segments differ from the kernel's"
			continue
		fi
	fi
	kw=$(win_changes "$W/k1") xw=$(win_changes "$W/x")
	if [[ $side == server ]] && ((xw > kw)); then
		fail_note "$sc: the server's window field changed $xw times under xtcp, $kw on the kernel"
		continue
	fi
	echo "   ok: $(segs "$W/x" | wc -l) segments, the same as the kernel's; window field changes: kernel $kw, xtcp $xw"
	sed 's/^/     /' "$W/x"
done
((fails == 0)) || { echo "t_wire: $fails failure(s)"; exit 1; }
echo "t_wire: PASS"
