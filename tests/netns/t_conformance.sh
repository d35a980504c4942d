#!/usr/bin/env bash
# The conformance suite (tests/conformance/run.sh) as one test of make check:
# every case on the kernel, then with the server and with the client under
# libxtcp.so, the kernel as peer, in fresh network namespaces per run.  Fails
# on any transcript that differs from the kernel's unless the case is listed
# in tests/conformance/known-diffs (with its reason); fails too when
# libxtcp.so cannot be tested (--require-xtcp).  One kernel reference run per
# case (--repeat 1: the kernel's own stability is checked by run.sh's default
# of 2, by hand) keeps it to about two and a half minutes on 2 CPUs; every run
# is bounded by CASE_TIMEOUT (60 s) and the namespaces go with the script.
#   Extra arguments go to run.sh (e.g. --only REGEX, --nic verbs).
set -uo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
exec "$here/../conformance/run.sh" --repeat 1 --require-xtcp \
	--known-diffs "$here/../conformance/known-diffs" "$@"
