#!/usr/bin/env bash
# Runs test programs one after another and reports one closing line
#   LABEL: N passed, N failed
# exiting non-zero when anything failed (or nothing ran at all).
#
# usage: run-tests.sh [--label L] [--cmocka BIN...] [--cmd "COMMAND"...] [--fuzz BIN...]
#   --cmocka  cmocka test binaries: each test case counts
#   --cmd     shell commands (e.g. the demo): each counts as one test
#   --fuzz    libFuzzer targets, run FUZZ_SECONDS (default 30) each over a
#             temporary copy of tests/fuzz/corpus/<name>/ (the repo is never
#             written); crash inputs are kept in build/fuzz/artifacts/
#
# Timeouts (TEST_TIMEOUT, default 900 s per program) only catch hangs; they
# are far above any normal run time.
set -uo pipefail

label=tests
mode=
passed=0
failed=0
failures=()
times=()
TEST_TIMEOUT=${TEST_TIMEOUT:-900}
FUZZ_SECONDS=${FUZZ_SECONDS:-30}
ran_fuzz_section=0

export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}

fail() { failed=$((failed + 1)); failures+=("$1"); }

# Counts the test cases of one cmocka binary from its summary lines.
run_cmocka() {
	local bin=$1 log rc p f
	log=$(mktemp)
	echo "=== $bin"
	timeout -k 10 "$TEST_TIMEOUT" "$bin" 2>&1 | tee "$log"
	rc=${PIPESTATUS[0]}
	p=$(sed -n 's/^\[  PASSED  \] \([0-9]*\) test.*/\1/p' "$log" | awk '{s += $1} END {print s + 0}')
	f=$(sed -n 's/^\[  FAILED  \] \([0-9]*\) test.*/\1/p' "$log" | awk '{s += $1} END {print s + 0}')
	rm -f "$log"
	passed=$((passed + p))
	failed=$((failed + f))
	if [ "$f" -gt 0 ]; then
		failures+=("$bin ($f failed)")
	elif [ "$rc" -ne 0 ]; then
		# Crashed, timed out or failed without cmocka's summary.
		fail "$bin (exit $rc)"
	elif [ "$p" -eq 0 ]; then
		fail "$bin (ran no test)"
	fi
}

run_cmd() {
	local cmd=$1 rc t0=$SECONDS
	echo "=== $cmd"
	timeout -k 10 "$TEST_TIMEOUT" bash -c "$cmd"
	rc=$?
	times+=("$((SECONDS - t0)) s  $cmd")
	if [ "$rc" -eq 0 ]; then passed=$((passed + 1)); else fail "$cmd (exit $rc)"; fi
}

run_fuzz() {
	local bin=$1 name tmp art log rc args
	name=$(basename "$bin")
	tmp=$(mktemp -d)
	art=build/fuzz/artifacts
	log=build/fuzz/logs/$name.log
	mkdir -p "$tmp/corpus" "$art" "$(dirname "$log")"
	if [ -d "tests/fuzz/corpus/$name" ]; then
		cp -r "tests/fuzz/corpus/$name/." "$tmp/corpus/"
	fi
	args=(-max_total_time="$FUZZ_SECONDS" -timeout=25 -rss_limit_mb=4096
	      -artifact_prefix="$art/$name-" -print_final_stats=1)
	[ -f "tests/fuzz/$name.dict" ] && args+=(-dict="tests/fuzz/$name.dict")
	echo "=== fuzz $name for ${FUZZ_SECONDS}s over $(find "$tmp/corpus" -type f | wc -l) corpus inputs (log: $log)"
	timeout -k 10 $((FUZZ_SECONDS + TEST_TIMEOUT)) "$bin" "${args[@]}" "$tmp/corpus" >"$log" 2>&1
	rc=$?
	rm -rf "$tmp"
	if [ "$rc" -eq 0 ]; then
		grep -E '^stat::number_of_executed_units|^Done ' "$log" | head -2
		passed=$((passed + 1))
	else
		tail -n 60 "$log"
		fail "fuzz $name (exit $rc; crash input in $art/)"
	fi
}

while [ $# -gt 0 ]; do
	case $1 in
	--label) label=$2; shift 2; continue ;;
	--cmocka|--cmd) mode=${1#--} ;;
	--fuzz) mode=fuzz; ran_fuzz_section=1 ;;
	*)
		case $mode in
		cmocka) run_cmocka "$1" ;;
		cmd) run_cmd "$1" ;;
		fuzz) run_fuzz "$1" ;;
		*) echo "run-tests.sh: $1: say --cmocka, --cmd or --fuzz first" >&2; exit 2 ;;
		esac
		;;
	esac
	shift
done

# Nothing is skipped silently: an empty fuzz section is said out loud.
if [ "$ran_fuzz_section" = 1 ] && ! ls tests/fuzz/fuzz_*.c >/dev/null 2>&1; then
	echo "(no fuzz targets in tests/fuzz/ yet)"
fi
if [ ${#times[@]} -gt 0 ]; then
	echo "time per command:"
	for t in "${times[@]}"; do echo "  $t"; done
fi
for f in "${failures[@]}"; do echo "FAILED: $f"; done
echo "$label: $passed passed, $failed failed"
[ "$failed" -eq 0 ] && [ "$passed" -gt 0 ]
