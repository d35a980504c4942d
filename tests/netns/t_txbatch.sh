#!/usr/bin/env bash
# t_txbatch.sh — XTCP_TX_BATCH (on by default): the frames of a write wait
# for the next call into libxtcp, so the writes of one event-loop round
# leave in one AF_PACKET send; and a frame never waits for a call that does
# not come.
#
#  1. txb_client (under xtcp, ns A) writes one 16-byte record on each of 16
#     connections, then polls for the kernel peer's (ns B, txb_peer.py)
#     one-byte answers; 200 rounds, every record checked by the peer.  Under
#     strace -c: with XTCP_TX_BATCH=1 the process makes fewer sendmmsg calls
#     than half its 3200 writes; with XTCP_TX_BATCH=0 at least one per write
#     (so the check can fail).
#  2. Not only writes: txb_client writes a record on each of 16 connections
#     and closes each, as an event loop answers and closes in one round.
#     Between the round's two stderr markers strace must see fewer sendmmsg
#     calls than connections with XTCP_TX_BATCH=1 (the records and FINs wait
#     for the progress thread), and at least one per write and one per close
#     with XTCP_TX_BATCH=0; the kernel peer checks every record and EOF.
#  3. _exit and exec run no destructor: txb_client writes a record on each
#     of 16 connections, closes each and at once calls _exit(0), then again
#     with execl("/bin/true"); the peer must get every record and EOF (the
#     library sends what its batch holds before the process image goes).
#  4. txb_client writes one record, then computes for 2 s without a system
#     call; the record must reach the peer well before the computing ends
#     (bound 1 s; the progress thread sends it within its 2 ms lease).
#  5. A wait costs no system call for signals: txb_client, with a SIGINT
#     handler set by sigaction() and a SIGUSR1 handler with SA_RESTART,
#     writes a record and waits for the answer in a blocking read(), 200
#     times.  strace must count fewer
#     rt_sigprocmask calls than a quarter of the rounds (the handler is
#     wrapped, libxtcp(7) SEMANTICS); with the SIGINT handler set by
#     sigset() (not wrapped, and the handlers differ on SA_RESTART: every
#     signal is held around each sleep) at least one per round, so the
#     count can fail.  And a program that sets SIGPIPE's action around every
#     write (2 rt_sigaction calls a round) makes fewer than 3 a round: the
#     library keeps what it knows of the handlers without asking the kernel.
#
# AF_PACKET only (the count is of its send calls).  Exit 0 = pass.
set -uo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=lib.sh
source "$HERE/lib.sh"
XT_STEP_TIMEOUT=${XT_STEP_TIMEOUT:-60}

OUT=$XT_REPO/build/netns/txbatch
BIN=$XT_REPO/build/netns
mkdir -p "$OUT" "$BIN"
if [[ ! -x $BIN/txb_client || $HERE/txb_client.c -nt $BIN/txb_client ]]; then
	gcc -O2 -g -Wall -Wextra -Werror -o "$BIN/txb_client" "$HERE/txb_client.c" ||
		{ echo "t_txbatch: cannot build txb_client"; exit 1; }
fi
if ! xtcp_capable; then
	echo "t_txbatch: $XT_LIB missing or not interposing: run make first"
	exit 1
fi
command -v strace >/dev/null || { echo "t_txbatch: strace missing: run tools/install-deps.sh"; exit 1; }

PORT=7700
NCONN=16
NROUNDS=200
WRITES=$((NCONN * NROUNDS))
fail=0

# traced DIR BATCH CLIENT_LINE PEER_LINE "STRACE OPTIONS" "PEER ARGS" "CLIENT ARGS":
# txb_peer.py in ns B, txb_client under xtcp (XTCP_TX_BATCH=BATCH) and strace
# (to DIR/strace) in ns A, in fresh namespaces; both must exit 0 and print
# their line.  Returns non-zero otherwise, saying why on stderr.
traced() {
	local dir=$1 batch=$2 cline=$3 pline=$4 sopts=$5 pargs=$6 cargs=$7
	rm -rf "$dir"
	mkdir -p "$dir"
	netns_up || return 1
	# shellcheck disable=SC2086 # the option and argument lists are words
	run_bg B "$dir/peer.out" "$dir/peer.err" python3 "$HERE/txb_peer.py" $pargs "$dir/ready"
	local ppid=$XT_LAST_PID
	wait_file "$dir/ready" 10 || { netns_down; return 1; }
	_xt_xtcp_env
	# shellcheck disable=SC2086
	run_in A strace -f -qq $sopts -o "$dir/strace" \
		env "${XT_XTCP_ENV[@]}" XTCP_TX_BATCH="$batch" "$BIN/txb_client" $cargs >"$dir/out" 2>"$dir/err"
	local rc=$?
	wait_pid "$ppid" 20
	local prc=$?
	netns_down
	if ((rc != 0 || prc != 0)) || ! grep -qxF "$cline" "$dir/out" || ! grep -qxF "$pline" "$dir/peer.out"; then
		echo "t_txbatch: ${dir##*/}: client exit $rc, peer exit $prc" >&2
		cat "$dir/out" "$dir/err" "$dir/peer.out" "$dir/peer.err" >&2
		return 1
	fi
}

# strace_count CALL FILE: the calls strace -c counted (0 when none)
strace_count() {
	awk -v c="$1" '$NF == c { print $4; found = 1 } END { if (!found) print 0 }' "$2"
}

# rounds BATCH: prints the sendmmsg count, or "fail"
rounds() {
	local dir=$OUT/rounds-$1
	traced "$dir" "$1" "rounds: $NCONN x $NROUNDS done" "peer: $NCONN x $NROUNDS records checked" \
		"-c -e trace=sendmmsg" "rounds $XT_ADDR_B $PORT $NCONN $NROUNDS" \
		"rounds $XT_ADDR_B $PORT $NCONN $NROUNDS" || { echo fail; return; }
	strace_count sendmmsg "$dir/strace"
}

on=$(rounds 1)
off=$(rounds 0)
echo "t_txbatch: $WRITES writes in $NROUNDS rounds: sendmmsg calls $on batched, $off unbatched"
if [[ $on == fail || $off == fail ]]; then
	fail=1
elif ((on * 2 >= WRITES)); then
	echo "t_txbatch: FAIL: with XTCP_TX_BATCH=1 the writes were not batched"
	fail=1
elif ((off < WRITES)); then
	echo "t_txbatch: FAIL: with XTCP_TX_BATCH=0 fewer sends than writes ($off < $WRITES): the count proves nothing"
	fail=1
fi

# closes BATCH: prints the sendmmsg count between the markers, or "fail"
closes() {
	local dir=$OUT/closes-$1
	traced "$dir" "$1" "closes: $NCONN done" "peer: $NCONN records and ends checked" \
		"-e trace=sendmmsg,write" "closes $XT_ADDR_B $PORT $NCONN" "closes $XT_ADDR_B $PORT $NCONN" ||
		{ echo fail; return; }
	if ! grep -q 'phase-end' "$dir/strace"; then
		echo "t_txbatch: closes-$1: no phase markers in the trace" >&2
		echo fail
		return
	fi
	awk '/phase-begin/ { on = 1; next } /phase-end/ { on = 0 } on && /sendmmsg\(/ { n++ } END { print n + 0 }' \
		"$dir/strace"
}

con=$(closes 1)
coff=$(closes 0)
echo "t_txbatch: $NCONN writes and closes in one round: sendmmsg calls $con batched, $coff unbatched"
if [[ $con == fail || $coff == fail ]]; then
	fail=1
elif ((con >= NCONN)); then
	echo "t_txbatch: FAIL: with XTCP_TX_BATCH=1 the closes were not batched"
	fail=1
elif ((coff < 2 * NCONN)); then
	echo "t_txbatch: FAIL: with XTCP_TX_BATCH=0 fewer sends than writes and closes ($coff < $((2 * NCONN)))"
	fail=1
fi

# Records and FINs queued when the process image goes (_exit, exec).
for how in exit exec; do
	dir=$OUT/leave-$how
	rm -rf "$dir"
	mkdir -p "$dir"
	netns_up || exit 1
	run_bg B "$dir/peer.out" "$dir/peer.err" python3 "$HERE/txb_peer.py" closes "$XT_ADDR_B" "$PORT" "$NCONN" \
		"$dir/ready"
	ppid=$XT_LAST_PID
	if wait_file "$dir/ready" 10 &&
		run_in A under_xtcp "$BIN/txb_client" leave "$XT_ADDR_B" "$PORT" "$NCONN" "$how" >"$dir/out" 2>"$dir/err" &&
		wait_pid "$ppid" 40 && grep -q "^peer: $NCONN records and ends checked$" "$dir/peer.out"; then
		echo "t_txbatch: $NCONN records and FINs sent before $how"
	else
		echo "t_txbatch: FAIL: records or FINs lost at $how:"
		cat "$dir/out" "$dir/err" "$dir/peer.out" "$dir/peer.err"
		fail=1
	fi
	netns_down
done

# A write followed by 2 s of computing: the record must not wait for it.
dir=$OUT/hold
rm -rf "$dir"
mkdir -p "$dir"
netns_up || exit 1
run_bg B "$dir/peer.out" "$dir/peer.err" python3 "$HERE/txb_peer.py" hold "$XT_ADDR_B" "$PORT" "$dir/ready"
ppid=$XT_LAST_PID
if wait_file "$dir/ready" 10 &&
	run_in A under_xtcp XTCP_TX_BATCH=1 "$BIN/txb_client" hold "$XT_ADDR_B" "$PORT" 2 >"$dir/out" 2>"$dir/err" &&
	wait_pid "$ppid" 10; then
	ms=$(sed -n 's/^arrived after \([0-9.-]*\) ms$/\1/p' "$dir/out")
	echo "t_txbatch: a record written before 2 s of computing arrived after ${ms:-?} ms"
	if [[ -z $ms ]] || ! awk -v m="$ms" 'BEGIN { exit !(m >= 0 && m < 1000) }'; then
		echo "t_txbatch: FAIL: the record waited for the computing to end"
		fail=1
	fi
else
	echo "t_txbatch: FAIL: hold run:"
	cat "$dir/out" "$dir/err" "$dir/peer.out" "$dir/peer.err"
	fail=1
fi
netns_down

# sigmasks HOW [CALL]: prints the count of CALL (default rt_sigprocmask) in
# NSIG rounds of blocking reads with the SIGINT handler set by HOW, or "fail"
NSIG=200
sigmasks() {
	local dir=$OUT/sigmask-$1 call=${2:-rt_sigprocmask}
	traced "$dir" 1 "blocking: $NSIG done" "peer: 1 x $NSIG records checked" \
		"-c -e trace=$call" "rounds $XT_ADDR_B $PORT 1 $NSIG" \
		"blocking $XT_ADDR_B $PORT $NSIG $1" || { echo fail; return; }
	strace_count "$call" "$dir/strace"
}
wrapped=$(sigmasks sigaction)
held=$(sigmasks sigset)
echo "t_txbatch: $NSIG blocking reads: rt_sigprocmask calls $wrapped (handler wrapped), $held (sigset handler)"
if [[ $wrapped == fail || $held == fail ]]; then
	fail=1
elif ((wrapped * 4 >= NSIG)); then
	echo "t_txbatch: FAIL: the waits of a program whose handlers are wrapped still mask signals"
	fail=1
elif ((held < NSIG)); then
	echo "t_txbatch: FAIL: with a sigset() handler fewer mask changes than waits ($held < $NSIG): the count proves nothing"
	fail=1
fi
acts=$(sigmasks perwrite rt_sigaction)
echo "t_txbatch: $NSIG blocking reads, SIGPIPE set and put back around each write: rt_sigaction calls $acts"
if [[ $acts == fail ]]; then
	fail=1
elif ((acts < 2 * NSIG || acts >= 3 * NSIG)); then
	echo "t_txbatch: FAIL: expected the program's 2 rt_sigaction calls a round and few more ($acts for $NSIG rounds)"
	fail=1
fi
exit $fail
