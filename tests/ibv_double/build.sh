#!/usr/bin/env bash
# Builds the libibverbs test double: OUT/libibverbs.so.1 (default OUT:
# build/ibv_double under the source tree).  The Makefile calls this; tests
# call it too when the library is missing.
#
#   tests/ibv_double/build.sh [OUTDIR]
#   tests/ibv_double/build.sh --tool OUTFILE   tools/xtcp-verbs-check, for a
#                                             test that finds it unbuilt
#
# CC and CFLAGS are honoured.  The double is never built with sanitizers: it
# is loaded with dlopen into sanitized and plain test binaries alike.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
src=$(cd "$here/../.." && pwd)
cc=${CC:-gcc}

# Everything is built to a temporary name and renamed into place, so a
# concurrent reader never sees half a file.
if [[ ${1:-} == --tool ]]; then
	out=${2:?usage: build.sh --tool OUTFILE}
	mkdir -p "$(dirname "$out")"
	tmp=$(mktemp "$out.XXXXXX")
	trap 'rm -f "$tmp"' EXIT
	"$cc" -std=gnu11 -Wall -Wextra -Werror ${CFLAGS:--O2 -g} -I"$src" -I"$src/stack" -I"$src/nic" \
		-o "$tmp" "$src/tools/xtcp-verbs-check.c" "$src/nic/verbs.c" "$src/stack/checksum.c"
	mv -f "$tmp" "$out"
	trap - EXIT
	exit 0
fi

out=${1:-$src/build/ibv_double}
mkdir -p "$out"
tmp=$(mktemp "$out/.libibverbs.so.1.XXXXXX")
trap 'rm -f "$tmp"' EXIT
"$cc" -std=gnu11 -Wall -Wextra -Werror ${CFLAGS:--O2 -g} -fPIC -fvisibility=hidden -shared \
	-o "$tmp" "$here/ibv_double.c" \
	-Wl,--version-script="$here/libibverbs.map" -Wl,-soname,libibverbs.so.1 \
	-Wl,-z,defs -Wl,-z,now -lpthread
mv -f "$tmp" "$out/libibverbs.so.1"
trap - EXIT
