#!/usr/bin/env bash
# fork, vfork, daemon and exec under xtcp (man/libxtcp.7, FORK AND EXEC), with
# the kernel in ns B as peer:
#   - prefork: a blocking server forks 2 children that accept(); 40
#     connections from ns B are all answered, each child answers some, the
#     parent (which never accepts) none
#   - daemon: listen, daemon(0, 0) (the parent exits), a clone(CLONE_VM |
#     CLONE_VFORK) child closes its copy of the listener, then serve: 100
#     connections answered by the daemon
#   - a listener shared through fork: O_NONBLOCK and SO_RCVTIMEO set by
#     the parent after the fork apply to the child's accept()
#   - 200 fork()s while another thread opens and closes sockets: every
#     child's first socket call (and its attach) returns
#   - one established connection survives a child that _exit()s, exit()s,
#     closes its copies, a _Fork() child that closes it (before any vfork),
#     fork+exec and vfork+exec of /bin/true (vfork with dup2/close/socket in
#     the child), posix_spawn, a child using the inherited connection (it
#     sees an unconnected socket: EPIPE, ENOTCONN), a BGSAVE-like child, a child with a connection of its own beside the parent's, and
#     an exec'd program (LD_PRELOAD still set) with an engine connection of
#     its own that lives while the parent's connection carries traffic
#   - redis-server BGSAVE of 200000 keys: the child writes the dump and
#     _exit()s, a client connected before the fork gets all its answers
# XT_APP_KERNEL=1 runs the same on the kernel (checks the script itself).
set -uo pipefail
source "$(dirname "$0")/app_common.sh"

BIN=$XT_REPO/build/tests/netns
mkdir -p "$BIN"
for p in fork_client fork_prefork fork_daemon fork_exec fork_stress fork_shared; do
	gcc -std=gnu11 -O2 -g -Wall -Wextra -Werror -pthread -o "$BIN/$p" "$XT_REPO/tests/netns/$p.c" ||
		fail "cannot build $p"
done

app_up

step "prefork: 2 children accept() on the parent's listener"
app_srv prefork "$BIN/fork_prefork" "$XT_ADDR_X" 7100 2 "$APP_DIR"
if ! { wait_file "$APP_DIR/ready.0" 15 && wait_file "$APP_DIR/ready.1" 15; }; then
	dump_stacks fork_prefork
	fail "children not ready"
fi
out=$(run_in B "$BIN/fork_client" count "$XT_ADDR_X" 7100 40) || fail "not every connection answered: $out"
note "$(echo "$out" | tr '\n' ';')"
c0=$(echo "$out" | awk '$2 == "child" && $3 == 0 {print $1}')
c1=$(echo "$out" | awk '$2 == "child" && $3 == 1 {print $1}')
((${c0:-0} + ${c1:-0} == 40)) || fail "replies not all from the children: $out"
((${c0:-0} > 0 && ${c1:-0} > 0)) || fail "one child served nothing: $out"
app_alive prefork
ok "40 connections: child 0 answered $c0, child 1 answered $c1"

step "daemon(): the parent exits, the daemon serves"
app_a "$BIN/fork_daemon" "$XT_ADDR_X" 7200 "$APP_DIR/daemon.pid" || fail "fork_daemon's parent failed"
wait_file "$APP_DIR/daemon.pid" 15 || fail "the daemon did not start"
dpid=$(cat "$APP_DIR/daemon.pid")
# 100 connections: a blocking accept() in a family member looked at its
# queue, let the lock go (for the family's shared O_NONBLOCK/SO_RCVTIMEO) and
# slept, missing a connection the progress thread queued meanwhile; about
# one connection in a hundred waited for the peer's next segment
out=$(run_in B "$BIN/fork_client" count "$XT_ADDR_X" 7200 100) || fail "daemon: not every connection answered: $out"
[[ $out == "100 daemon" ]] || fail "daemon: unexpected replies: $out"
kill -0 "$dpid" 2>/dev/null || fail "the daemon died"
kill "$dpid"
ok "100 connections answered by daemon $dpid"

step "a listener shared through fork: the parent's O_NONBLOCK and SO_RCVTIMEO apply to the child's accept()"
out=$(app_a "$BIN/fork_shared" "$XT_ADDR_X" 7250 2>&1) || fail "fork_shared: $out"
note "$(echo "$out" | tr '\n' ';')"
ok "both settings seen by the child"

step "fork while another thread opens and closes sockets: no child inherits a held lock"
out=$(app_a "$BIN/fork_stress" 200 2>&1) || fail "fork_stress: $out"
ok "$out"

step "one connection through fork, exit, exec, vfork, posix_spawn and a child of its own"
run_bg B "$APP_DIR/peer.out" "$APP_DIR/peer.err" "$BIN/fork_client" serve "$XT_ADDR_B" 7301 2
wait_listen B 7301 10 || fail "peer server not listening"
[[ $APP_MODE == kernel ]] && export FORK_EXEC_KERNEL=1
app_srv keep "$BIN/fork_exec" "$XT_ADDR_X" 7300 "$XT_ADDR_B" 7301 "$APP_DIR/keep.ready" "$BIN/fork_client"
wait_file "$APP_DIR/keep.ready" 15 || fail "fork_exec did not start"
run_in B "$BIN/fork_client" echo "$XT_ADDR_X" 7300 16 || fail "the connection did not survive every step"
wait_pid "${APP_SRV_PID[keep]}" 20 || fail "fork_exec: $(cat "$APP_DIR/keep.err")"
note "$(cat "$APP_DIR/keep.out")"
ok "16 rounds, every step's child as expected, the parent's connection intact"

step "redis BGSAVE: the child writes the dump and _exit()s; the server goes on serving"
app_srv redis redis-server --port 6391 --bind "$XT_ADDR_X" --save '' --appendonly no \
	--dir "$APP_DIR" --dbfilename fork.rdb --daemonize no --protected-mode no --enable-debug-command yes
app_wait_tcp 6391 15
rcli() { run_in B redis-cli -h "$XT_ADDR_X" -p 6391 "$@"; }
run_in B redis-cli -h "$XT_ADDR_X" -p 6391 DEBUG POPULATE 200000 key 100 >/dev/null || fail "DEBUG POPULATE"
# a client connected before the fork keeps working through it
run_bg B "$APP_DIR/long.out" "$APP_DIR/long.err" bash -c \
	"for i in \$(seq 100); do echo PING; sleep 0.01; done | redis-cli -h $XT_ADDR_X -p 6391"
[[ $(rcli BGSAVE) == *started* ]] || fail "BGSAVE did not start"
for i in $(seq 150); do
	[[ $(rcli INFO persistence) == *rdb_bgsave_in_progress:0* ]] && break
	[[ $(rcli SET k$i v$i) == OK ]] || fail "SET during BGSAVE"
	sleep 0.1
done
info=$(rcli INFO persistence)
[[ $info == *rdb_bgsave_in_progress:0* && $info == *rdb_last_bgsave_status:ok* ]] ||
	fail "BGSAVE did not finish well: $(grep bgsave <<<"$info" | tr '\r\n' '  ')"
[[ -s $APP_DIR/fork.rdb ]] || fail "no dump file"
[[ $(rcli DBSIZE) -ge 200000 ]] || fail "DBSIZE after BGSAVE: $(rcli DBSIZE)"
wait_pid "$XT_LAST_PID" 60 || fail "the long-lived client failed: $(cat "$APP_DIR/long.err")"
[[ $(grep -c PONG "$APP_DIR/long.out") == 100 ]] || fail "the connected client lost answers"
[[ $(rcli PING) == PONG ]] || fail "no PONG after BGSAVE"
app_alive redis
ok "BGSAVE ok ($(stat -c %s "$APP_DIR/fork.rdb") bytes), 100 PINGs through the fork answered"

if [[ $APP_MODE == xtcp ]]; then
	grep -q "attached its own NIC queue" "$APP_DIR/prefork.err" ||
		fail "the prefork children did not attach NIC queues of their own"
	ok "children attached their own NIC queues"
fi
