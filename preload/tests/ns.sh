#!/bin/bash
# usage: ns.sh up|down TAG
TAG=${2:-t}
A=xtshim-$TAG-a; B=xtshim-$TAG-b
case $1 in
up)
  ip netns add $A; ip netns add $B
  ip link add xva-$TAG type veth peer name xvb-$TAG
  ip link set xva-$TAG netns $A; ip link set xvb-$TAG netns $B
  ip -n $A link set lo up; ip -n $B link set lo up
  ip -n $A link set xva-$TAG name veth-a; ip -n $B link set xvb-$TAG name veth-b
  ip -n $A link set veth-a up; ip -n $B link set veth-b up
  ip -n $B addr add 10.66.0.2/24 dev veth-b
  ;;
down)
  ip netns del $A 2>/dev/null; ip netns del $B 2>/dev/null ;;
esac
