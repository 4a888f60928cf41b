#!/bin/bash
# Capture miniupnpd 2.3.1 descriptions inside a private network namespace (run as root):
#   ./capture.sh [outdir]   then copy rootDesc.xml and the SCPDs here.
set -u
NS=upnptest$$
OUT=${1:-$(mktemp -d)}
mkdir -p "$OUT"
cleanup() {
  if [ -n "${PID:-}" ]; then ip netns exec $NS kill $PID 2>/dev/null; sleep 0.3; fi
  ip netns pids $NS 2>/dev/null | xargs -r kill 2>/dev/null
  ip netns del $NS 2>/dev/null
  rm -rf /etc/netns/$NS
}
trap cleanup EXIT
ip netns add $NS || exit 1
mkdir -p /etc/netns/$NS && echo "nameserver 127.0.0.1" > /etc/netns/$NS/resolv.conf
ip netns exec $NS ip link set lo up
ip netns exec $NS ip link add wan0 type veth peer name wanp
ip netns exec $NS ip link add lan0 type veth peer name lanp
ip netns exec $NS ip link set lan0 multicast on
ip netns exec $NS ip addr add 60.120.76.64/24 dev wan0
ip netns exec $NS ip addr add 192.168.1.1/24 dev lan0
ip netns exec $NS ip link set wan0 up
ip netns exec $NS ip link set lan0 up; ip netns exec $NS ip link set lanp up; ip netns exec $NS ip link set wanp up
ip netns exec $NS ip route add default via 60.120.76.1 dev wan0
cat > "$OUT/miniupnpd.conf" <<CONF
ext_ifname=wan0
listening_ip=lan0
http_port=5000
enable_natpmp=no
enable_upnp=yes
secure_mode=yes
system_uptime=yes
uuid=3d3cec3a-8cf0-11e0-98ee-001a6bd2d07b
serial=12345678
model_number=1
allow 1024-65535 192.168.0.0/16 1024-65535
deny 0-65535 0.0.0.0/0 0-65535
CONF
ip netns exec $NS /usr/sbin/miniupnpd -d -f "$OUT/miniupnpd.conf" -P "$OUT/pid" > "$OUT/log" 2>&1 &
PID=$!
sleep 1.5
for p in /rootDesc.xml /WANIPCn.xml /WANCfg.xml /L3F.xml; do
  ip netns exec $NS curl -s -m 3 "http://192.168.1.1:5000$p" -o "$OUT/$(basename $p)"
done
ls -la "$OUT"
