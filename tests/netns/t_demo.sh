#!/usr/bin/env bash
# The README's demo command, as CI runs it: it must finish, print both
# results and xtcp-stat's view, and leave no namespace behind.
set -uo pipefail
cd "$(dirname "$0")/../.."
out=$(mktemp)
trap 'rm -f "$out"' EXIT
before=$(ip netns list | grep -c '^xtdemo-' || true)
timeout -k 10 300 tools/demo.sh --quick >"$out" 2>&1
rc=$?
cat "$out"
fail=0
check() { if ! grep -Eq "$1" "$out"; then echo "t_demo: missing from the demo's output: $2"; fail=1; fi; }
[ "$rc" -eq 0 ] || { echo "t_demo: tools/demo.sh --quick exited $rc"; fail=1; }
check '^GET +[0-9.]+ +[0-9.]+ +[0-9.]+ +[0-9.]+ +[0-9.]+$' "the GET row (kernel and xtcp figures)"
check '^SET +[0-9.]+ +[0-9.]+ +[0-9.]+ +[0-9.]+ +[0-9.]+$' "the SET row"
check 'GET demo -> hello$' "redis-cli's answer under xtcp"
check '^LISTEN +0 +[0-9]+ +10\.57\.0\.3:6379' "xtcp-stat's LISTEN line for the server"
check '^ESTAB .*10\.57\.0\.3:6379 +10\.57\.0\.2:' "xtcp-stat's connection from the client namespace"
check 'attached: backend packet' "the start-up line"
after=$(ip netns list | grep -c '^xtdemo-' || true)
[ "$after" -le "$before" ] || { echo "t_demo: the demo left a namespace behind"; fail=1; }
[ "$fail" -eq 0 ] && echo "t_demo: ok"
exit "$fail"
