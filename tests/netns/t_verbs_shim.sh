#!/usr/bin/env bash
# The verbs backend inside libxtcp.so (XTCP_NIC=verbs), on the libibverbs test
# double (build/ibv_double) whose raw packet QP sends and receives on veth-a
# through AF_PACKET, with the kernel in the other namespace as peer:
#
#   1. the whole conformance suite with the xtcp end on verbs
#      (run.sh --nic verbs): the same transcripts as the kernel's;
#   2. flow steering: the rules the shim asks for, read from the double's
#      trace (XTCP_DOUBLE_TRACE): one (dst IP, dst port) rule per listening
#      socket, one 5-tuple rule per connection (accepted and connected),
#      every one of them removed again (listener on close, connections once
#      the engine is done with them);
#   3. the interface's own address (XTCP_IP unset): the engine shares
#      10.55.0.1 with the kernel, steering by 5-tuple (the kernel of ns A is
#      kept from answering the steered flows with a blackhole route to the
#      peer: the double, like AF_PACKET, cannot take frames from it);
#   4. failures: XTCP_NIC=verbs with no RDMA device behind the interface, and
#      with no libibverbs at all: one clear error line, every socket on the
#      kernel, the program still works; XTCP_NIC=auto without a device: one
#      line naming the verbs failure and the choice, the engine on AF_PACKET.
#
# Bounded: every step runs under timeout(1) (lib.sh), the conformance suite
# under run.sh's per-run bound.  About two minutes.
set -uo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
export XT_REPO=$REPO
# shellcheck source=lib.sh
source "$HERE/lib.sh"
XT_STEP_TIMEOUT=40

OUT=$REPO/build/verbs-shim
BIN=$OUT/flows
FAILS=0
fail() { echo "FAIL: $*"; FAILS=$((FAILS + 1)); }
ok() { echo "ok: $*"; }

if [[ $(id -u) != 0 ]]; then
	echo "t_verbs_shim: needs root (network namespaces)" >&2
	exit 1
fi
rm -rf "$OUT"
mkdir -p "$OUT"
for f in "$XT_LIB" "$XT_IBV_DOUBLE"; do
	if [[ ! -s $f ]]; then
		echo "t_verbs_shim: $f missing (run make)" >&2
		exit 1
	fi
done
# private copies: other builds may relink the originals meanwhile
cp -p "$XT_LIB" "$OUT/libxtcp.so" && XT_LIB=$OUT/libxtcp.so
mkdir -p "$OUT/ibv_double" && cp -p "$XT_IBV_DOUBLE" "$OUT/ibv_double/libibverbs.so.1" &&
	XT_IBV_DOUBLE=$OUT/ibv_double/libibverbs.so.1
gcc -std=gnu11 -O2 -g -Wall -Wextra -Werror -pthread -o "$BIN" "$REPO/tests/conformance/flows.c" || exit 1
gcc -std=gnu11 -O2 -g -Wall -Wextra -Werror -pthread -o "$OUT/bulk" "$REPO/tests/conformance/bulk.c" || exit 1

# --- 1. the conformance suite on verbs (every case; XT_VERBS_SUBSET=REGEX for fewer) -----
echo "=== conformance suite, XTCP_NIC=verbs"
SUBSET=${XT_VERBS_SUBSET:-.}
if XT_LIB=$XT_LIB XT_IBV_DOUBLE=$XT_IBV_DOUBLE "$REPO/tests/conformance/run.sh" --nic verbs --repeat 1 \
	--require-xtcp --known-diffs "$REPO/tests/conformance/known-diffs" --only "$SUBSET" >"$OUT/conformance.log" 2>&1; then
	ok "conformance suite on verbs: $(tail -n 1 "$OUT/conformance.log")"
else
	fail "conformance suite on verbs: $(tail -n 1 "$OUT/conformance.log")"
	sed -n '/^| behaviour/,$p' "$OUT/conformance.log" | head -n 80
fi

# --- helpers ---------------------------------------------------------------------------
# pair NAME SUBJECT SERVER_NS SERVER_ENV... -- CLIENT_NS CLIENT_ENV... -- ADDR PORT
# runs flows (3 connections) with the server in SERVER_NS and the client in
# CLIENT_NS, each behind its env words (under_xtcp, or env), in fresh
# namespaces; leaves DIR=$OUT/NAME with server.out/.err, client.out/.err and
# the exit codes in SRC/CRC.
pair() {
	local name=$1 subject=$2 sns=$3
	shift 3
	local senv=() cenv=() cns addr port
	while [[ $1 != -- ]]; do senv+=("$1"); shift; done
	shift
	cns=$1
	shift
	while [[ $1 != -- ]]; do cenv+=("$1"); shift; done
	shift
	addr=$1 port=$2
	DIR=$OUT/$name
	mkdir -p "$DIR/sync"
	run_bg "$sns" "$DIR/server.out" "$DIR/server.err" "${senv[@]}" XT_SYNC="$DIR/sync" XT_SUBJECT="$subject" \
		"${PAIR_BIN:-$BIN}" server "$addr" "$port" "$addr"
	local sp=$XT_LAST_PID
	run_bg "$cns" "$DIR/client.out" "$DIR/client.err" "${cenv[@]}" XT_SYNC="$DIR/sync" XT_SUBJECT="$subject" \
		"${PAIR_BIN:-$BIN}" client "$addr" "$port"
	local cp=$XT_LAST_PID
	wait_pid "$sp" 45; SRC=$?
	wait_pid "$cp" 45; CRC=$?
}

# TCP rules (handles) created by pid-less trace lines matching PATTERN
rules_created() { grep " create flow " "$1" | grep -E -- "$2" | awk '{print $6}'; }
was_destroyed() { grep -q " destroy flow $2\$" "$1"; }

# check_rules TRACE WHAT PATTERN COUNT: COUNT rules matching PATTERN were
# created, and each was destroyed
check_rules() {
	local trace=$1 what=$2 pat=$3 want=$4 h n=0 gone=0
	for h in $(rules_created "$trace" "$pat"); do
		n=$((n + 1))
		was_destroyed "$trace" "$h" && gone=$((gone + 1))
	done
	if ((n == want && gone == want)); then
		ok "$what: $n rule(s) created, $gone removed"
	else
		fail "$what: $n rule(s) created (want $want), $gone removed"
		cat "$trace"
	fi
}

# --- 2. flow steering, engine with an address of its own (10.55.0.3) --------------------
echo "=== flow rules (XTCP_NIC=verbs, XTCP_IP=$XT_ADDR_X/$XT_PREFIX)"
netns_up || exit 1
XT_NIC=verbs XT_DOUBLE_TRACE=$OUT/trace-server
pair flows-server server A under_xtcp -- B env -- "$XT_ADDR_X" 7300
if ((SRC == 0 && CRC == 0)) && [[ $(grep -c "from $XT_ADDR_B\$" "$DIR/server.out") == 3 ]]; then
	ok "server under xtcp (verbs) served 3 connections"
else
	fail "server under xtcp (verbs): exit $SRC/$CRC"; cat "$DIR"/server.* "$DIR"/client.*
fi
T=$OUT/trace-server
grep -q "dont_trap ethertype 0x0806" "$T" && ok "ARP copy rule (DONT_TRAP) in place" || fail "no ARP copy rule in $T"
grep -q "ip \* -> $XT_ADDR_X\$" "$T" && ok "own address: one rule for all IPv4 to $XT_ADDR_X" || fail "no address rule in $T"
check_rules "$T" "listening socket" "tcp \*:0 -> $XT_ADDR_X:7300\$" 1
check_rules "$T" "accepted connections" "tcp $XT_ADDR_B:[0-9]+ -> $XT_ADDR_X:7300\$" 3

# the same with a MAC of the engine's own (XTCP_MAC=auto: 02:58 and the
# address): every rule is for it, the peer resolves the address to it
netns_up || exit 1
XT_DOUBLE_TRACE=$OUT/trace-mac
own_mac=$(printf '02:58:%02x:%02x:%02x:%02x' ${XT_ADDR_X//./ })
pair mac-server server A under_xtcp XTCP_MAC=auto -- B env -- "$XT_ADDR_X" 7305
peer_mac=$(ip -n "$XT_NS_B" neigh show "$XT_ADDR_X" | awk '{print $5}')
if ((SRC == 0 && CRC == 0)) && [[ $(grep -c "from $XT_ADDR_B\$" "$DIR/server.out") == 3 ]] &&
	[[ $peer_mac == "$own_mac" ]]; then
	ok "XTCP_MAC=auto: 3 connections, the peer sent to $peer_mac"
else
	fail "XTCP_MAC=auto: exit $SRC/$CRC, the peer's entry for $XT_ADDR_X: ${peer_mac:-none}"
	cat "$DIR"/server.* "$DIR"/client.*
fi
T=$OUT/trace-mac
grep -q "dst $own_mac ip \* -> $XT_ADDR_X\$" "$T" && ok "XTCP_MAC=auto: the address rule is for $own_mac" ||
	fail "XTCP_MAC=auto: no address rule for $own_mac in $T"
check_rules "$T" "listening socket (own MAC)" "dst $own_mac tcp \*:0 -> $XT_ADDR_X:7305\$" 1
if grep " create flow " "$T" | grep " dst " | grep -qv "dst $own_mac"; then
	fail "XTCP_MAC=auto: a rule for another MAC"; cat "$T"
fi

netns_up || exit 1
XT_DOUBLE_TRACE=$OUT/trace-client
pair flows-client client B env -- A under_xtcp -- "$XT_ADDR_B" 7310
if ((SRC == 0 && CRC == 0)) && [[ $(grep -c "from $XT_ADDR_X\$" "$DIR/server.out") == 3 ]]; then
	ok "client under xtcp (verbs) made 3 connections from $XT_ADDR_X"
else
	fail "client under xtcp (verbs): exit $SRC/$CRC"; cat "$DIR"/server.* "$DIR"/client.*
fi
check_rules "$OUT/trace-client" "connected sockets" "tcp $XT_ADDR_B:7310 -> $XT_ADDR_X:[0-9]+\$" 3

# --- 2b. zero-copy sends: 64 MiB each way, the server under xtcp on verbs ------------------
# (the double reads send memory late, as a device does: XTCP_DOUBLE_LATE_DMA=1)
echo "=== zero-copy sends (XTCP_NIC=verbs, registered send buffers)"
netns_up || exit 1
XT_DOUBLE_TRACE=
PAIR_BIN=$OUT/bulk pair zc-server server A under_xtcp XTCP_EXIT_SUMMARY=1 XTCP_DOUBLE_LATE_DMA=1 -- B env -- \
	"$XT_ADDR_X" 7340
zc=$(sed -n 's/.*exit summary: nic .* (verbs): .*(\([0-9]*\) sent in place from the send buffers).*/\1/p' \
	"$DIR/server.err" | head -n 1)
if ((SRC == 0 && CRC == 0)) && [[ -n $zc ]] && ((zc > 100)); then
	ok "64 MiB each way, every byte checked; $zc frames sent in place from the send buffers"
else
	fail "zero-copy bulk: exit $SRC/$CRC, frames sent in place: ${zc:-none}"
	cat "$DIR"/server.* "$DIR"/client.*
fi
netns_down

# --- 3. the interface's own address, shared with the kernel -----------------------------
echo "=== shared address (XTCP_NIC=verbs, XTCP_IP unset: $XT_ADDR_A from the kernel)"
netns_up || exit 1
mac_a=$(ip netns exec "$XT_NS_A" cat /sys/class/net/$XT_IF_A/address)
mac_b=$(ip netns exec "$XT_NS_B" cat /sys/class/net/$XT_IF_B/address)
# ns A's kernel must not answer the steered flows (a NIC would not show them
# to it): its packets to the peer go nowhere.  Neighbours are static on
# both sides (the kernel of ns A cannot resolve through a blackhole route;
# the engine resolves for itself, or takes ns A's entries without DONT_TRAP)
ip -n "$XT_NS_A" route add blackhole "$XT_ADDR_B/32"
ip -n "$XT_NS_A" neigh replace "$XT_ADDR_B" lladdr "$mac_b" dev "$XT_IF_A" nud permanent
ip -n "$XT_NS_B" neigh replace "$XT_ADDR_A" lladdr "$mac_a" dev "$XT_IF_B" nud permanent
XT_DOUBLE_TRACE=$OUT/trace-shared
shared_env=(env LD_PRELOAD="$XT_LIB" XTCP_IFACE="$XT_IF_A" XTCP_NIC=verbs XTCP_IBVERBS_LIB="$XT_IBV_DOUBLE"
	XTCP_DOUBLE_WIRE="packet:$XT_IF_A" XTCP_DOUBLE_TRACE="$OUT/trace-shared" XTCP_LOG_LEVEL=info)
pair shared-client client B env -- A "${shared_env[@]}" -- "$XT_ADDR_B" 7320
if ((SRC == 0 && CRC == 0)) && [[ $(grep -c "from $XT_ADDR_A\$" "$DIR/server.out") == 3 ]] &&
	grep -q "address $XT_ADDR_A/$XT_PREFIX" "$DIR/client.err"; then
	ok "client on the shared address $XT_ADDR_A: 3 connections"
else
	fail "client on the shared address: exit $SRC/$CRC"; cat "$DIR"/server.* "$DIR"/client.*
fi
if grep -Eq "ip \* -> [0-9.]+$" "$OUT/trace-shared"; then
	fail "shared address: an address-wide rule would take the kernel's traffic"; cat "$OUT/trace-shared"
else
	ok "shared address: no address-wide rule"
fi
check_rules "$OUT/trace-shared" "connected sockets (shared address)" "tcp $XT_ADDR_B:7320 -> $XT_ADDR_A:[0-9]+\$" 3
pair shared-server server A "${shared_env[@]}" -- B env -- "$XT_ADDR_A" 7330
if ((SRC == 0 && CRC == 0)) && [[ $(grep -c "from $XT_ADDR_B\$" "$DIR/server.out") == 3 ]]; then
	ok "server on the shared address $XT_ADDR_A: 3 connections"
else
	fail "server on the shared address: exit $SRC/$CRC"; cat "$DIR"/server.* "$DIR"/client.*
fi
check_rules "$OUT/trace-shared" "listening socket (shared address)" "tcp \*:0 -> $XT_ADDR_A:7330\$" 1
check_rules "$OUT/trace-shared" "accepted connections (shared address)" "tcp $XT_ADDR_B:[0-9]+ -> $XT_ADDR_A:7330\$" 3
# a device without DONT_TRAP: no ARP copy rule, the engine starts with the
# kernel's neighbours (the permanent entry for the peer made above)
pair shared-nocopy client B env -- A "${shared_env[@]}" XTCP_DOUBLE_CAPS=-dont_trap \
	XTCP_DOUBLE_TRACE="$OUT/trace-nocopy" -- "$XT_ADDR_B" 7335
if ((SRC == 0 && CRC == 0)) && [[ $(grep -c "from $XT_ADDR_A\$" "$DIR/server.out") == 3 ]] &&
	! grep -q "ethertype 0x0806" "$OUT/trace-nocopy"; then
	ok "no DONT_TRAP (no ARP rule): neighbours from the kernel, 3 connections"
else
	fail "no DONT_TRAP: exit $SRC/$CRC"; cat "$DIR"/server.* "$DIR"/client.* "$OUT/trace-nocopy"
fi

# --- 4. failures ---------------------------------------------------------------------------
echo "=== the redis acceptance test on verbs (tests/netns/t_redis.sh with XT_NIC=verbs)"
if XT_NIC=verbs "$REPO/tests/netns/t_redis.sh" >"$OUT/redis.log" 2>&1; then
	if grep -q 'engine of redis.*: backend verbs' "$OUT/redis.log"; then
		ok "t_redis.sh passes with redis-server on verbs ($(grep -m1 'engine of redis' "$OUT/redis.log" | sed 's/^ *//'))"
	else
		fail "t_redis.sh passed but not on verbs: $(grep -m1 'engine of redis' "$OUT/redis.log")"
	fi
else
	fail "t_redis.sh on verbs: $(tail -n 3 "$OUT/redis.log" | tr '\n' ' ')"
	tail -n 40 "$OUT/redis.log"
fi

echo "=== failure paths"
netns_up || exit 1
# a double whose only device sits on lo: nothing behind veth-a
nodev_env=(env LD_PRELOAD="$XT_LIB" XTCP_IFACE="$XT_IF_A" XTCP_IP="$XT_ADDR_X/$XT_PREFIX"
	XTCP_IBVERBS_LIB="$XT_IBV_DOUBLE" XTCP_DOUBLE_WIRE=packet:lo)
pair nodev server B env -- A "${nodev_env[@]}" XTCP_NIC=verbs -- "$XT_ADDR_B" 7340
if ((SRC == 0 && CRC == 0)) && [[ $(grep -c "from $XT_ADDR_A\$" "$DIR/server.out") == 3 ]]; then
	ok "XTCP_NIC=verbs, no RDMA device: the program works, its sockets on the kernel"
else
	fail "XTCP_NIC=verbs, no RDMA device: exit $SRC/$CRC"; cat "$DIR"/server.* "$DIR"/client.*
fi
if [[ $(grep -c . "$DIR/client.err") == 1 ]] &&
	grep -q "error: cannot attach to $XT_IF_A: XTCP_NIC=verbs: no RDMA device behind $XT_IF_A.*every socket stays on the kernel" "$DIR/client.err"; then
	ok "XTCP_NIC=verbs, no RDMA device: one error line: $(cut -c1-110 "$DIR/client.err")..."
else
	fail "XTCP_NIC=verbs, no RDMA device: expected one clear error line"; cat "$DIR/client.err"
fi

pair nolib server B env -- A "${nodev_env[@]}" XTCP_NIC=verbs XTCP_IBVERBS_LIB=/nonexistent/libibverbs.so.1 -- "$XT_ADDR_B" 7350
if ((SRC == 0 && CRC == 0)) && [[ $(grep -c "from $XT_ADDR_A\$" "$DIR/server.out") == 3 ]] &&
	[[ $(grep -c . "$DIR/client.err") == 1 ]] && grep -q "XTCP_NIC=verbs: .*every socket stays on the kernel" "$DIR/client.err"; then
	ok "XTCP_NIC=verbs, no libibverbs: one error line, the program works: $(cut -c1-110 "$DIR/client.err")..."
else
	fail "XTCP_NIC=verbs, no libibverbs: exit $SRC/$CRC"; cat "$DIR"/server.* "$DIR"/client.*
fi

pair auto server B env -- A "${nodev_env[@]}" XTCP_NIC=auto XTCP_LOG_LEVEL=info -- "$XT_ADDR_B" 7360
if ((SRC == 0 && CRC == 0)) && [[ $(grep -c "from $XT_ADDR_X\$" "$DIR/server.out") == 3 ]] &&
	grep -q "XTCP_NIC=auto: verbs failed (no RDMA device behind $XT_IF_A.*); packet chosen" "$DIR/client.err" &&
	grep -q "attached: backend packet" "$DIR/client.err"; then
	ok "XTCP_NIC=auto without a device: AF_PACKET, said in one line: $(grep -o 'XTCP_NIC=auto: verbs.\{0,90\}' "$DIR/client.err" | head -n 1)..."
else
	fail "XTCP_NIC=auto without a device: exit $SRC/$CRC"; cat "$DIR"/server.* "$DIR"/client.*
fi
netns_down

if ((FAILS)); then
	echo "t_verbs_shim: $FAILS check(s) failed"
	exit 1
fi
echo "t_verbs_shim: all checks passed"
