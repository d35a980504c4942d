#!/usr/bin/env bash
# Network namespaces for tests/test_packet.c (the AF_PACKET backend).
#
#   packet_env.sh veth TAG   ns xtpk-TAG-a: veth xtpk0, up, no address (the
#                            engine's side); ns xtpk-TAG-b: its peer xtpk1 with
#                            10.77.0.2/24 (the kernel's side)
#   packet_env.sh tun TAG    ns xtpk-TAG-t: tun device xtpktun0 with 10.78.0.1/24,
#                            up (whoever opens it with TUNSETIFF is its wire)
#   packet_env.sh down TAG   deletes every xtpk-TAG-* namespace
#   packet_env.sh reap       deletes xtpk-PID-* namespaces whose PID is gone
#                            (left behind by a test that was killed)
#
# Everything lives inside the namespaces created here: no address, route or
# device of the calling namespace is touched.  TAG is the test's PID.
set -euo pipefail

cmd=${1:?usage: packet_env.sh veth|tun|down TAG | reap}
tag=${2:-}
prefix=xtpk-$tag

need_tag() { [[ $tag =~ ^[0-9]+$ ]] || { echo "packet_env.sh: TAG must be a number" >&2; exit 2; }; }

# The quiet namespace: only what a test asks for, no IPv6 autoconfiguration
# chatter on the links.
new_ns() {
	ip netns add "$1"
	ip -n "$1" link set lo up
	ip netns exec "$1" sysctl -qw net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1 || true
}

case $cmd in
veth)
	need_tag
	new_ns "$prefix-a"
	new_ns "$prefix-b"
	ip -n "$prefix-a" link add xtpk0 type veth peer name xtpk1 netns "$prefix-b"
	ip -n "$prefix-a" link set xtpk0 up
	ip -n "$prefix-b" addr add 10.77.0.2/24 dev xtpk1
	ip -n "$prefix-b" link set xtpk1 up
	;;
tun)
	need_tag
	new_ns "$prefix-t"
	ip -n "$prefix-t" tuntap add dev xtpktun0 mode tun
	ip -n "$prefix-t" addr add 10.78.0.1/24 dev xtpktun0
	ip -n "$prefix-t" link set xtpktun0 up
	;;
down)
	need_tag
	for ns in $(ip netns list | awk '{print $1}'); do
		[[ $ns == "$prefix"-* ]] && ip netns del "$ns"
	done
	true
	;;
reap)
	for ns in $(ip netns list | awk '{print $1}'); do
		if [[ $ns =~ ^xtpk-([0-9]+)-[a-z]+$ ]] && ! kill -0 "${BASH_REMATCH[1]}" 2>/dev/null; then
			ip netns del "$ns"
		fi
	done
	;;
*)
	echo "usage: packet_env.sh veth|tun|down TAG | reap" >&2
	exit 2
	;;
esac
