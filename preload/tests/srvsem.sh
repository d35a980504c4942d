#!/bin/bash
# $1 = "shim" or "kernel"
if [ "$1" = shim ]; then PRE="env LD_PRELOAD=/work/main/build/libxtcp.so XTCP_IFACE=veth-a XTCP_IP=10.66.0.3/24"; ME=10.66.0.3; else PRE=""; ME=10.66.0.4; fi
timeout 20 ip netns exec xtshim-t-a $PRE ./srvsem $ME > srvsem.$1.txt 2>&1 &
P=$!
for i in $(seq 50); do grep -q READY srvsem.$1.txt 2>/dev/null && break; sleep 0.1; done
sleep 0.5
timeout 5 ip netns exec xtshim-t-b bash -c "exec 3<>/dev/tcp/$ME/7001; printf 'remote-data-of-32-bytes........!' >&3; head -c 2 <&3 >/dev/null; sleep 0.2"
wait $P; echo rc=$?
