#!/usr/bin/env bash
# Installs the Debian packages xtcp needs to build and test, and only those
# that are missing: a machine that has them all touches no package list.
# Idempotent and non-interactive; run as root (or with sudo available).
set -euo pipefail

packages=(
	build-essential     # gcc, make
	clang               # fuzz targets
	libclang-rt-14-dev  # libFuzzer and the sanitizer runtimes of clang 14
	libcmocka-dev       # unit tests
	libibverbs-dev      # verbs backend headers
	rdma-core
	ibverbs-providers
	tcpdump             # reads our pcap captures in tests
	pkg-config
	iproute2            # namespaces and veth for the AF_PACKET tests
	python3
	redis-server        # application tests: servers under xtcp, clients from the peer
	redis-tools
	nginx-light
	wrk
	curl
	sockperf
	memcached
	libmemcached-tools  # memcslap: load for memcached under xtcp
	iperf3
	strace              # make bench: syscalls per request
	ethtool             # tools/bench.py --two-hosts: GRO/TSO of the veths
	linux-perf
	man-db              # man pages render without warnings
	procps
)

installed() {
	dpkg -s "$1" 2>/dev/null | grep -q '^Status: install ok installed$'
}

missing=()
for p in "${packages[@]}"; do
	installed "$p" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
	echo "install-deps: all ${#packages[@]} packages present"
	exit 0
fi

sudo=()
if [ "$(id -u)" -ne 0 ]; then
	command -v sudo >/dev/null || { echo "install-deps: need root to install: ${missing[*]}" >&2; exit 1; }
	sudo=(sudo)
fi
echo "install-deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
"${sudo[@]}" apt-get update -q
"${sudo[@]}" apt-get install -y -q --no-install-recommends "${missing[@]}"
