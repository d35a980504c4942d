#!/usr/bin/env bash
# man pages and --help (no namespaces needed):
#   - every page in man/ renders with `man --warnings -l` and nothing on stderr
#   - every XTCP_* variable the code reads (a "XTCP_..." string in preload/,
#     nic/ or tools/) has an entry (.TP tag) in man/libxtcp.7
#   - every tool in tools/*.c has a page man/<tool>.1, and `<tool> --help`
#     exits 0 and prints its usage on standard output
set -uo pipefail
REPO=$(cd "$(dirname "$0")/../.." && pwd)
cd "$REPO" || exit 1
fails=0
bad() {
	echo "FAIL: $*" >&2
	fails=$((fails + 1))
}

command -v man >/dev/null || bad "man is not installed (apt-get install man-db)"
for page in man/*.[1-8]; do
	err=$(MANWIDTH=80 timeout 30 man --warnings -l "$page" 2>&1 >/dev/null)
	rc=$?
	if ((rc != 0)) || [[ -n $err ]]; then
		bad "$page: man --warnings (exit $rc): $err"
	else
		echo "ok: $page renders without warnings"
	fi
done

# Variables the code reads: string literals "XTCP_NAME".
mapfile -t vars < <(grep -rhoE '"XTCP_[A-Z0-9_]+"' preload/ nic/ tools/*.c | tr -d '"' | sort -u)
((${#vars[@]} > 10)) || bad "found only ${#vars[@]} XTCP_* variables in the code"
# Entries of libxtcp.7: the tag line after each .TP (".B XTCP_A\fR, \fBXTCP_B" names two).
documented=$(awk 'prev == ".TP" { print } { prev = $0 }' man/libxtcp.7 | grep -oE 'XTCP_[A-Z0-9_]+' | sort -u)
for v in "${vars[@]}"; do
	if grep -qx "$v" <<<"$documented"; then
		echo "ok: $v documented"
	else
		bad "$v is read by the code but has no entry in man/libxtcp.7"
	fi
done

for src in tools/*.c; do
	tool=$(basename "$src" .c)
	[[ -f man/$tool.1 ]] || bad "tools/$tool.c has no man page man/$tool.1"
	bin=build/$tool
	if [[ ! -x $bin ]]; then
		bad "$bin is not built (run make)"
		continue
	fi
	out=$(timeout 10 "$bin" --help 2>/dev/null)
	rc=$?
	if ((rc != 0)) || ! grep -qi '^usage:' <<<"$out"; then
		bad "$tool --help: exit $rc, no usage line on stdout"
	else
		echo "ok: $tool --help"
	fi
done

if ((fails)); then
	echo "t_man.sh: FAIL ($fails)" >&2
	exit 1
fi
echo "t_man.sh: PASS" >&2
