#!/usr/bin/env bash
# The demo of the README: dependencies, build, then two engines exchanging
# 64 MiB each way over an in-memory wire.  Arguments go to xtcp-demo
# (try --help, --loss 1 --seed 3, --pcap /tmp/demo.pcap).
set -euo pipefail
cd "$(dirname "$0")/.."
tools/install-deps.sh
make -j2 all
exec build/xtcp-demo "$@"
