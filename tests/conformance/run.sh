#!/usr/bin/env bash
# Conformance suite: the same small socket programs (tests/conformance/*.c)
# run on the kernel and under libxtcp.so, in two network namespaces, with the
# kernel as the peer; their transcripts must be identical.
#
#   tests/conformance/run.sh [options]
#     --kernel-only      only the kernel runs (no xtcp columns)
#     --repeat N         run the kernel reference N times and require the
#                        transcripts to be identical (default 2; 1 = no check)
#     --xtcp-repeat N    run each xtcp column N times (default 1); a column
#                        passes only if every run matches; "DIFF k/N" says
#                        how many did not (flaky behaviour shows up here)
#     --only REGEX       only the cases whose name matches REGEX
#     --known-diffs FILE lines "CASE COLUMN [why]" (COLUMN: xtcp-server or
#                        xtcp-client; # comments): such a column that still
#                        differs shows "known" (diff still printed), counted
#                        as skipped, not failed; one that now matches shows
#                        "FIXED" (passed: take it off the list)
#     --require-xtcp     fail (instead of skipping the xtcp columns) when
#                        build/libxtcp.so does not interpose connect()
#     --no-build         do not (re)build the programs
#     --pcap             capture each run's traffic (tcpdump on veth-b in ns B)
#                        to wire.pcap in its run directory
#     --nic NIC          the backend of the xtcp columns (XTCP_NIC): verbs =
#                        the verbs backend over the libibverbs test double
#                        (build/ibv_double) on AF_PACKET; packet, auto; default:
#                        the library's default.  Runs and results of a
#                        --nic run go to runs-NIC/ and results-NIC.md
#     --list             print the case names and exit
#   Environment: XT_LIB (default build/libxtcp.so), XTCP_LOG_LEVEL (passed to
#   the programs under xtcp), CASE_TIMEOUT (seconds per run, default 60).
#
# Each case runs three ways:
#   kernel       server in ns A on 10.55.0.1, client in ns B, both kernel
#   xtcp-server  server under xtcp in ns A on 10.55.0.3, kernel client in ns B
#   xtcp-client  kernel server in ns B on 10.55.0.2, client under xtcp in ns A
# and the transcript (both ends' stdout and exit codes) of each xtcp run is
# compared with the kernel's.  "Directional" cases test one end's behaviour
# with the other end as a kernel observer (XT_SUBJECT): their kernel reference
# is run once per subject, and each xtcp column is compared with the kernel
# run whose subject is the end under xtcp.  Every run gets fresh namespaces.
# When an xtcp column differs, the kernel's reference is run once more: if
# the kernel itself answered differently the second time (its behaviour can
# depend on timing), an xtcp run matching either kernel run passes, and the
# two kernel transcripts are recorded with the failures' diffs.
#
# Output: a table (case x kernel / xtcp-server / xtcp-client: same, DIFF,
# UNSTABLE, skip), the diff of every failure, build/conformance/results.md,
# per-run files under build/conformance/runs/, and a last line
# "N passed, M failed" (", K skipped" when xtcp columns were skipped).
# Exits non-zero if any comparison failed.

set -uo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
export XT_REPO=$REPO
OUT=$REPO/build/conformance
BIN=$OUT/bin

KERNEL_ONLY=0
REPEAT=2
XREPEAT=1
ONLY=
REQUIRE_XTCP=0
KNOWN=
BUILD=1
LIST=0
PCAP=0
NIC=
while (($#)); do
	case $1 in
	--kernel-only) KERNEL_ONLY=1 ;;
	--repeat) REPEAT=$2; shift ;;
	--xtcp-repeat) XREPEAT=$2; shift ;;
	--only) ONLY=$2; shift ;;
	--require-xtcp) REQUIRE_XTCP=1 ;;
	--known-diffs) KNOWN=$2; shift ;;
	--no-build) BUILD=0 ;;
	--list) LIST=1 ;;
	--pcap) PCAP=1 ;;
	--nic) NIC=$2; shift ;;
	-h | --help) sed -n '2,/^$/p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 0 ;;
	*) echo "run.sh: unknown option $1" >&2; exit 2 ;;
	esac
	shift
done
CASE_TIMEOUT=${CASE_TIMEOUT:-60}
case $NIC in
"" | verbs | packet | auto) ;;
*) echo "run.sh: --nic: verbs, packet or auto" >&2; exit 2 ;;
esac
RUNS=$OUT/runs${NIC:+-$NIC}
RESULTS=$OUT/results${NIC:+-$NIC}.md
export XT_NIC=$NIC

# name | program | port | directional (1: kernel reference per subject) | extra args
# (an extra word XTCP_NAME=value is put in both ends' environment instead)
CASES=(
	"handshake|handshake|7000|0|"
	"refused|refused|7010|0|"
	"nonblocking-connect|nbconnect|7020|0|"
	"backlog-1|backlog|7030|0|1 hold"
	"backlog-2|backlog|7040|0|2 hold"
	"backlog-8|backlog|7050|0|8 hold"
	"backlog-1-accepting|backlog|7060|0|1 accepting"
	"backlog-2-accepting|backlog|7070|0|2 accepting"
	"backlog-8-accepting|backlog|7080|0|8 accepting"
	"reuse-bind-rules|reuse|7100|0|"
	"reuse-timewait|timewait|7130|0|"
	"unconnected-ops|unconnected|7150|0|"
	"shutdown|shutdown|7160|0|"
	"close-unread-rst|closerst|7170|1|"
	"linger|linger|7180|1|"
	"write-close-exit|exitclose|7185|1|"
	"peer-reset|reset|7190|0|"
	"recv-flags|recvopts|7200|1|"
	"quickack-mode|quickack|7205|1|"
	"timeouts|timeo|7210|1|"
	"cork-nodelay|cork|7220|1|"
	"keepalive|keepalive|7230|1|"
	"sockname|sockname|7240|0|"
	"bulk-64MiB|bulk|7250|0|"
	"conn-1000|many|7260|0|"
	"epoll-et-new-data|epollet|7270|0|"
	"signals-blocked-call|signals|7290|1|"
	"signals-spinning-call|signals|7300|1|XTCP_SPIN_US=1000000"
	"accepted-fds|accepted|7310|0|"
	"sendfile|sendfile|7320|1|"
	"sendfile-bounce|sendfile|7330|1|XTCP_SENDFILE_DIRECT=0"
)

if ((LIST)); then
	for c in "${CASES[@]}"; do echo "${c%%|*}"; done
	exit 0
fi

if [[ $(id -u) != 0 ]]; then
	echo "run.sh: needs root (network namespaces)" >&2
	exit 2
fi

# shellcheck source=../netns/lib.sh
source "$REPO/tests/netns/lib.sh"
XT_STEP_TIMEOUT=$CASE_TIMEOUT

# --- build -------------------------------------------------------------------
mkdir -p "$BIN" "$RUNS"
if ((BUILD)); then
	for src in "$HERE"/*.c; do
		prog=$(basename "$src" .c)
		if [[ ! -x $BIN/$prog || $src -nt $BIN/$prog || $HERE/common.h -nt $BIN/$prog ]]; then
			gcc -std=gnu11 -O2 -g -Wall -Wextra -Werror -pthread -o "$BIN/$prog" "$src" || {
				echo "run.sh: building $prog failed" >&2
				exit 1
			}
		fi
	done
fi

# A private copy of the library under test: other builds in the same tree may
# relink build/libxtcp.so while the suite runs (the link replaces the file,
# and it is briefly missing).  Waits a bounded time for it to be there.
snapshot() {
	local src=$1 dst=$2 i
	for ((i = 0; i < 120; i++)); do
		if [[ -s $src ]] && cp -p "$src" "$dst.tmp" 2>/dev/null && mv -f "$dst.tmp" "$dst"; then
			return 0
		fi
		sleep 0.5
	done
	return 1
}
if ((!KERNEL_ONLY)); then
	snapshot "$XT_LIB" "$OUT/libxtcp.so" && XT_LIB=$OUT/libxtcp.so
	if [[ $NIC == verbs ]]; then
		mkdir -p "$OUT/ibv_double"
		if ! snapshot "$XT_IBV_DOUBLE" "$OUT/ibv_double/libibverbs.so.1"; then
			echo "run.sh: --nic verbs: no test double at $XT_IBV_DOUBLE (make builds it)" >&2
			exit 1
		fi
		XT_IBV_DOUBLE=$OUT/ibv_double/libibverbs.so.1
	fi
fi

XTCP=1
if ((KERNEL_ONLY)); then
	XTCP=0
elif ! xtcp_capable; then
	if ((REQUIRE_XTCP)); then
		echo "run.sh: $XT_LIB does not interpose connect(); --require-xtcp given" >&2
		exit 1
	fi
	echo "run.sh: $XT_LIB does not interpose connect() (yet): xtcp columns skipped" >&2
	XTCP=0
fi

# --- one run -------------------------------------------------------------------
exit_desc() {
	local rc=$1
	if ((rc == 124)); then echo "killed: run time bound (${CASE_TIMEOUT}s)"
	elif ((rc > 128)); then echo "killed by signal $((rc - 128)) ($(kill -l $((rc - 128)) 2>/dev/null))"
	else echo "$rc"; fi
}

# run_one DIR MODE SUBJECT PROG PORT EXTRA... -> DIR/transcript
run_one() {
	local dir=$1 mode=$2 subject=$3 prog=$4 port=$5
	shift 5
	local extra=() envx=() a
	for a in "$@"; do # XTCP_NAME=value words: the environment (the kernel's runs ignore it)
		if [[ $a =~ ^XTCP_[A-Z_]+= ]]; then envx+=("$a"); else extra+=("$a"); fi
	done
	rm -rf "$dir"
	mkdir -p "$dir/sync"
	local s_ns s_addr c_ns c_addr c_local s_x=env c_x=env
	case $mode in
	kernel) s_ns=A s_addr=$XT_ADDR_A c_ns=B c_addr=$XT_ADDR_A c_local=$XT_ADDR_B ;;
	xtcp-server) s_ns=A s_addr=$XT_ADDR_X c_ns=B c_addr=$XT_ADDR_X c_local=$XT_ADDR_B s_x=under_xtcp ;;
	xtcp-client) s_ns=B s_addr=$XT_ADDR_B c_ns=A c_addr=$XT_ADDR_B c_local=$XT_ADDR_X c_x=under_xtcp ;;
	esac
	if ! netns_up; then
		echo "SETUP FAILED: namespaces" >"$dir/transcript"
		return
	fi
	local tpid=
	if ((PCAP)); then
		run_bg B "$dir/tcpdump.out" "$dir/tcpdump.err" tcpdump -n -U --immediate-mode -i "$XT_IF_B" -s 200 -w "$dir/wire.pcap"
		tpid=$XT_LAST_PID
		local i
		for ((i = 0; i < 300; i++)); do
			grep -q listening "$dir/tcpdump.err" 2>/dev/null && break
			sleep 0.01
		done
	fi
	local t0=$SECONDS
	local envv=(XT_SYNC="$dir/sync" XT_SUBJECT="$subject" "${envx[@]}")
	run_bg "$s_ns" "$dir/server.out" "$dir/server.err" "$s_x" "${envv[@]}" \
		"$BIN/$prog" server "$s_addr" "$port" "$s_addr" "${extra[@]}"
	local spid=$XT_LAST_PID
	run_bg "$c_ns" "$dir/client.out" "$dir/client.err" "$c_x" "${envv[@]}" \
		"$BIN/$prog" client "$c_addr" "$port" "$c_local" "${extra[@]}"
	local cpid=$XT_LAST_PID
	local src crc
	wait_pid "$spid" $((CASE_TIMEOUT + 10)); src=$?
	wait_pid "$cpid" $((CASE_TIMEOUT + 10)); crc=$?
	if [[ -n $tpid ]]; then
		sleep 0.1
		kill -INT "$tpid" 2>/dev/null
		wait_pid "$tpid" 5 >/dev/null
	fi
	netns_down
	echo "$((SECONDS - t0))" >"$dir/seconds" # wall time of the run (not compared)
	{
		echo "--- server"
		cat "$dir/server.out"
		echo "exit: $(exit_desc "$src")"
		echo "--- client"
		cat "$dir/client.out"
		echo "exit: $(exit_desc "$crc")"
	} >"$dir/transcript"
}

# --- the suite -----------------------------------------------------------------
PASS=0 FAIL=0 SKIP=0
ROWS=()
FAILURES=$OUT/failures${NIC:+-$NIC}.txt
: >"$FAILURES"

# record_diff NAME COLUMN REF GOT LABEL: appends the diff (and the ends'
# stderr) to $FAILURES
record_diff() {
	local name=$1 col=$2 ref=$3 got=$4 label=$5 d
	{
		echo "=== $name: $col ($label)"
		diff -u --label "kernel: ${ref#"$OUT"/}" --label "$col: ${got#"$OUT"/}" "$ref" "$got"
		for d in "$(dirname "$got")"/server.err "$(dirname "$got")"/client.err; do
			if [[ -s $d ]]; then
				echo "--- stderr of $(basename "$d" .err) (first 15 lines)"
				head -n 15 "$d"
			fi
		done
		echo
	} >>"$FAILURES"
}

# compare NAME COLUMN REF GOT [LABEL] -> VERDICT=same or LABEL (default
# DIFF); counts it, records the diff of a failure
compare() {
	local name=$1 col=$2 ref=$3 got=$4 label=${5:-DIFF}
	if cmp -s "$ref" "$got"; then
		PASS=$((PASS + 1))
		VERDICT=same
	else
		FAIL=$((FAIL + 1))
		record_diff "$name" "$col" "$ref" "$got" "$label"
		VERDICT=$label
	fi
}

is_known() {
	[[ -n $KNOWN ]] && grep -v '^[[:space:]]*#' "$KNOWN" | awk -v c="$1" -v m="$2" '$1 == c && $2 == m { f = 1 } END { exit !f }'
}

# xtcp_column NAME MODE SUBJECT PROG PORT EXTRA... -> VERDICT; one counted
# result per column, whatever XREPEAT is; the diff of the first differing run
xtcp_column() {
	local name=$1 mode=$2 subj=$3 prog=$4 port=$5
	shift 5
	local ref=$RUNS/$name/kernel-$subj-1/transcript r bad=0 first=
	for ((r = 1; r <= XREPEAT; r++)); do
		local dir=$RUNS/$name/$mode
		((XREPEAT > 1)) && dir=$RUNS/$name/$mode-$r
		run_one "$dir" "$mode" "$subj" "$prog" "$port" "$@"
		if ! cmp -s "$ref" "$dir/transcript"; then
			bad=$((bad + 1))
			[[ -z $first ]] && first=$dir/transcript
		fi
	done
	if ((bad > 0)); then
		# The kernel's own answer may vary with timing (a port found busy
		# or not): run it once more, and if its transcript differs from the
		# first, an xtcp run that matches either is the kernel's behaviour.
		local re=$RUNS/$name/kernel-$subj-recheck
		[[ -f $re/transcript ]] || run_one "$re" kernel "$subj" "$prog" "$port" "$@"
		if ! cmp -s "$ref" "$re/transcript"; then
			echo "conformance: $name: the kernel's reference varied between two runs (subject $subj); $mode compared with both" >&2
			{
				echo "=== $name: kernel reference varied (subject $subj): $mode compared with both runs"
				diff -u --label "kernel run 1" --label "kernel recheck" "$ref" "$re/transcript"
				echo
			} >>"$FAILURES"
			bad=0
			first=
			for ((r = 1; r <= XREPEAT; r++)); do
				local dir=$RUNS/$name/$mode
				((XREPEAT > 1)) && dir=$RUNS/$name/$mode-$r
				if ! cmp -s "$ref" "$dir/transcript" && ! cmp -s "$re/transcript" "$dir/transcript"; then
					bad=$((bad + 1))
					[[ -z $first ]] && first=$dir/transcript
				fi
			done
		fi
	fi
	local frac=
	((XREPEAT > 1)) && frac=" $bad/$XREPEAT"
	if ((bad == 0)); then
		PASS=$((PASS + 1))
		VERDICT=same
		is_known "$name" "$mode" && VERDICT=FIXED
	elif is_known "$name" "$mode"; then
		SKIP=$((SKIP + 1))
		record_diff "$name" "$mode" "$ref" "$first" "known DIFF$frac"
		VERDICT="known$frac"
	else
		FAIL=$((FAIL + 1))
		record_diff "$name" "$mode" "$ref" "$first" "DIFF$frac"
		VERDICT="DIFF$frac"
	fi
}

echo "conformance: programs in $BIN, runs in $RUNS"
for spec in "${CASES[@]}"; do
	IFS='|' read -r name prog port dirl extra <<<"$spec"
	if [[ -n $ONLY && ! $name =~ $ONLY ]]; then continue; fi
	read -r -a xargs_ <<<"$extra"
	subjects=(server)
	((dirl)) && subjects=(server client)
	kcol=same
	for s in "${subjects[@]}"; do
		for ((r = 1; r <= REPEAT; r++)); do
			run_one "$RUNS/$name/kernel-$s-$r" kernel "$s" "$prog" "$port" "${xargs_[@]}"
			if ((r > 1)); then
				compare "$name" "kernel (subject $s, run $r vs 1)" "$RUNS/$name/kernel-$s-1/transcript" \
					"$RUNS/$name/kernel-$s-$r/transcript" UNSTABLE
				[[ $VERDICT != same ]] && kcol=UNSTABLE
			fi
		done
	done
	((REPEAT < 2)) && kcol=ref
	xs=skip xc=skip
	if ((XTCP)); then
		xtcp_column "$name" xtcp-server server "$prog" "$port" "${xargs_[@]}"
		xs=$VERDICT
		cs=server
		((dirl)) && cs=client
		xtcp_column "$name" xtcp-client "$cs" "$prog" "$port" "${xargs_[@]}"
		xc=$VERDICT
	else
		SKIP=$((SKIP + 2))
	fi
	ROWS+=("| $name | $kcol | $xs | $xc |")
	printf '%-22s kernel %-8s xtcp-server %-5s xtcp-client %s\n' "$name" "$kcol" "$xs" "$xc"
done

{
	echo "# xtcp conformance results"
	echo
	echo "repository $(git -C "$REPO" rev-parse --short HEAD 2>/dev/null || echo '?')$(git -C "$REPO" diff --quiet HEAD 2>/dev/null || echo ' (with local changes)'), $(date -u '+%Y-%m-%d %H:%M UTC')"
	if ((XTCP)); then
		echo "library $XT_LIB: $(sha256sum "$XT_LIB" | cut -c1-12), built $(date -u -r "$XT_LIB" '+%Y-%m-%d %H:%M UTC')"
		echo "backend: XTCP_NIC=${NIC:-(default)}${NIC:+ }$([[ $NIC == verbs ]] && echo "(libibverbs test double over AF_PACKET)")"
	else
		echo "xtcp columns skipped"
	fi
	echo
	echo "kernel: transcripts of $REPEAT kernel-vs-kernel runs identical (same), or not (UNSTABLE); ref = a single run."
	echo "xtcp-server / xtcp-client: the run with that end under libxtcp.so ($XREPEAT time(s)), compared with the kernel run:"
	echo "same, DIFF (k/N: k of N runs differed), known (listed in --known-diffs), FIXED (listed, but now the same), skip."
	echo
	echo "| behaviour | kernel | xtcp-server | xtcp-client |"
	echo "| --- | --- | --- | --- |"
	printf '%s\n' "${ROWS[@]}"
	echo
	if [[ -s $FAILURES ]]; then
		echo "## Differences"
		echo
		echo '```'
		cat "$FAILURES"
		echo '```'
	fi
} >"$RESULTS"

echo
echo "| behaviour | kernel | xtcp-server | xtcp-client |"
echo "| --- | --- | --- | --- |"
printf '%s\n' "${ROWS[@]}"
if [[ -s $FAILURES ]]; then
	echo
	cat "$FAILURES"
fi
echo "table: $RESULTS"
if ((SKIP)); then
	echo "$PASS passed, $FAIL failed, $SKIP skipped"
else
	echo "$PASS passed, $FAIL failed"
fi
((FAIL == 0))
