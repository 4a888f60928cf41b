#!/bin/bash
# Capture the SOAP requests miniupnpc (upnpc) sends, in a private network namespace.
# Run from this directory: it serves ../rootDesc-igd2.xml and writes captured-<Action>.xml.
NS=upnpctest$$
trap 'ip netns pids $NS 2>/dev/null | xargs -r kill 2>/dev/null; ip netns del $NS 2>/dev/null' EXIT
ip netns add $NS || exit 1
ip netns exec $NS ip link set lo up
ip netns exec $NS python3 capture-server.py & sleep 0.7
U=http://127.0.0.1:5000/rootDesc.xml
ip netns exec $NS timeout 5 upnpc -u $U -a 192.168.1.100 8080 8080 TCP >/dev/null 2>&1
ip netns exec $NS timeout 5 upnpc -u $U -d 8080 TCP >/dev/null 2>&1
ip netns exec $NS timeout 5 upnpc -u $U -L >/dev/null 2>&1
