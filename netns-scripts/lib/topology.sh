# shellcheck shell=bash
# The lab's links and addresses: the internet, the homes, the carrier-grade NAT, the relays'
# links. Sourced by `lab`; README.md ("The lab") has the picture.

# The internet namespace: the ISP gateway (first address of the public WAN network) on isp0, the
# terminals as host addresses on lo (no kernel module needed), each usable as a source.
setup_inet() { # prefix public_cidr relays
	local p=$1 wan=$2 relays=$3 gw len ns h
	ns=$(ns_name "$p" inet)
	gw=$(first_addr_of "$wan")
	len=${wan#*/}
	ip -n "$ns" addr add "$gw/$len" dev isp0
	ip -n "$ns" link set isp0 up
	for h in "${INET_HOSTS[@]}"; do ip -n "$ns" addr add "$h/32" dev lo; done
	# Without relay namespaces the relay's address stays a host address here (as before --relays).
	[ "$relays" -gt 0 ] || ip -n "$ns" addr add "$RELAY_FIRST/32" dev lo
	# Traffic from the internet towards the WAN network leaves from the terminal's address, as
	# it would from a host behind the ISP gateway; bind to another host address to change it.
	ip -n "$ns" route replace "$(network_of "$wan")" dev isp0 proto kernel scope link src "${INET_HOSTS[0]}"
	in_ns "$ns" sysctl -qw net.ipv4.ip_forward=1
}

addr_plus() { # 203.0.113.2/24 N -> 203.0.113.(2+N)/24, failing outside the network
	python3 -c '
import ipaddress, sys
i = ipaddress.ip_interface(sys.argv[1]); a = i.ip + int(sys.argv[2])
assert a in i.network and a != i.network.broadcast_address
print(f"{a}/{i.network.prefixlen}")' "$1" "$2" 2>/dev/null
}

# The WAN of home H: "ADDR/LEN GATEWAY UPSTREAM_NODE UPSTREAM_DEV". Behind the carrier-grade NAT
# each home has its own access link isp:subH <-> hH-rtr:wan0 in 100.64.H.0/24 (RFC 6598 shared
# address space); otherwise home H has the public address H-1 above --wan's, on inet:isp0 (home
# 1, as before) or its own link inet:ispH.
home_wan() { # home public_cidr carrier_nat
	local h=$1 pub=$2 cgn=$3
	if [ "$cgn" = 1 ]; then
		echo "100.64.$h.2/24 100.64.$h.1 isp sub$h"
	else
		local dev=isp0
		[ "$h" -eq 1 ] || dev=isp$h
		echo "$(addr_plus "$pub" $((h - 1))) $(first_addr_of "$pub") inet $dev"
	fi
}

# Namespaces, links and addresses of home H (nothing runs yet): its router's WAN link to the
# upstream (through the P-wan emulator for home 1 when WANEM is set), its LAN bridge, its
# cameras and viewer.
create_home() { # prefix home cams public_cidr carrier_nat wanem
	local p=$1 h=$2 cams=$3 pub=$4 cgn=$5 wanem=$6 hp rtr lan up wan gw upnode updev node i
	hp=$(home_prefix "$h")
	read -r wan gw upnode updev <<<"$(home_wan "$h" "$pub" "$cgn")"
	[ -n "$wan" ] || die "--homes: no address for home $h in ${pub} (choose a larger --wan network or fewer homes)"
	create_ns "$p" "${hp}rtr"
	create_ns "$p" "${hp}lan"
	for i in $(seq 1 "$cams"); do create_ns "$p" "${hp}cam$i"; done
	create_ns "$p" "${hp}viewer"
	rtr=$(ns_name "$p" "${hp}rtr")
	lan=$(ns_name "$p" "${hp}lan")
	up=$(ns_name "$p" "$upnode")
	if [ "$h" -eq 1 ] && [ -n "$wanem" ]; then
		create_ns "$p" wan
		local wanns
		wanns=$(ns_name "$p" wan)
		ip -n "$rtr" link add wan0 type veth peer name wr netns "$wanns"
		ip -n "$wanns" link add wi type veth peer name "$updev" netns "$up"
		ip -n "$wanns" link set wr up
		ip -n "$wanns" link set wi up
		# Frames cross the relay as they are, so the senders must finish checksums and segment
		# in software (no partial checksums or GSO super-frames on the wire).
		in_ns "$rtr" ethtool -K wan0 tx off tso off gso off >/dev/null 2>&1 || true
		in_ns "$up" ethtool -K "$updev" tx off tso off gso off >/dev/null 2>&1 || true
	else
		ip -n "$rtr" link add wan0 type veth peer name "$updev" netns "$up"
	fi
	ip -n "$rtr" link add lan0 type veth peer name p-rtr netns "$lan"
	ip -n "$rtr" addr add "$wan" dev wan0
	ip -n "$rtr" link set wan0 up
	ip -n "$rtr" route add default via "$gw" dev wan0
	ip -n "$rtr" link set lan0 address "02:4c:41:42:ff:$(printf %02x "$h")"
	ip -n "$rtr" addr add "$LAN_ROUTER/$LAN_LEN" dev lan0
	ip -n "$rtr" link set lan0 up
	ip -n "$lan" link add br0 type bridge
	ip -n "$lan" link set br0 up
	ip -n "$lan" link set p-rtr master br0 up
	for i in $(seq 1 "$cams"); do setup_lan_node "$p" "${hp}cam$i" "$i" "$h"; done
	setup_lan_node "$p" "${hp}viewer" $((cams + 1)) "$h"
}

# The upstream side of home H's WAN link (after setup_inet, which owns inet:isp0).
connect_home_upstream() { # prefix home public_cidr carrier_nat homes
	local p=$1 h=$2 pub=$3 cgn=$4 homes=$5 wan gw upnode updev up
	read -r wan gw upnode updev <<<"$(home_wan "$h" "$pub" "$cgn")"
	up=$(ns_name "$p" "$upnode")
	if [ "$cgn" = 1 ]; then
		ip -n "$up" addr add "$gw/24" dev "$updev"
		ip -n "$up" link set "$updev" up
		return
	fi
	[ "$h" -eq 1 ] || {
		ip -n "$up" link set "$updev" up
		ip -n "$up" route add "${wan%/*}/32" dev "$updev" src "${INET_HOSTS[0]}"
	}
	# Homes share one public network but sit on separate links: the ISP answers ARP for the
	# other homes' addresses (proxy ARP), so home 1 reaches home 2 through the ISP's routing.
	[ "$homes" -gt 1 ] && in_ns "$up" sysctl -qw "net.ipv4.conf.$updev.proxy_arp=1"
	return 0
}

# The carrier-grade NAT: P-isp between the homes and the internet, its public address on up0
# (peer inet:isp0), and no way in for connections from the internet (a CGN has no port
# forwards, which is what the relay is for). Each home's TCP and UDP leave from its own block of
# CGN_PORT_BLOCK ports (home H: H*4096 .. H*4096+4095), as a deterministic CGN allots them (RFC
# 6888 REQ-14, RFC 7422): the address is shared, the block is the home's.
CGN_PORT_BLOCK=4096
setup_carrier_nat() { # prefix public_cidr homes
	local p=$1 pub=$2 homes=$3 isp inet h rules=""
	for h in $(seq 1 "$homes"); do
		rules+="		iifname \"sub$h\" oifname \"up0\" meta l4proto { tcp, udp } snat to ${pub%/*}:$((h * CGN_PORT_BLOCK))-$((h * CGN_PORT_BLOCK + CGN_PORT_BLOCK - 1))"$'\n'
		rules+="		iifname \"sub$h\" oifname \"up0\" snat to ${pub%/*}"$'\n'
	done
	isp=$(ns_name "$p" isp)
	inet=$(ns_name "$p" inet)
	ip -n "$isp" link add up0 type veth peer name isp0 netns "$inet"
	ip -n "$isp" addr add "$pub" dev up0
	ip -n "$isp" link set up0 up
	ip -n "$isp" route add default via "$(first_addr_of "$pub")" dev up0
	in_ns "$isp" sysctl -qw net.ipv4.ip_forward=1
	in_ns "$isp" nft -f - <<EOF
table ip lab_cgn {
	chain postrouting {
		type nat hook postrouting priority srcnat; policy accept;
$rules	}
	chain forward {
		type filter hook forward priority filter; policy drop;
		ct state established,related accept
		iifname "sub*" accept
	}
}
EOF
}

# The relays' links: P-relayI's eth0 holds 198.51.100.(19+I)/32, linked to inet:rlyI; each side
# routes the other's addresses over the link (the relay's default route goes to the terminal's
# address on-link, which inet owns).
setup_relay_links() { # prefix relays
	local p=$1 n=$2 i ns inet addr
	inet=$(ns_name "$p" inet)
	for i in $(seq 1 "$n"); do
		ns=$(ns_name "$p" "relay$i")
		addr=$(relay_addr "$i")
		ip -n "$inet" link add "rly$i" type veth peer name eth0 netns "$ns"
		ip -n "$inet" link set "rly$i" up
		ip -n "$ns" addr add "$addr/32" dev eth0
		ip -n "$ns" link set eth0 up
		ip -n "$ns" route add default via "${INET_HOSTS[0]}" dev eth0 onlink
		ip -n "$inet" route add "$addr/32" dev "rly$i" src "${INET_HOSTS[0]}"
	done
}

relay_addr() { # I -> 198.51.100.(19+I)
	echo "${RELAY_FIRST%.*}.$((${RELAY_FIRST##*.} + $1 - 1))"
}

# WAN emulation on home 1's WAN link: tc netem where the kernel has it, else the userspace relay
# in P-wan (create_home made it when WANEM was set).
start_wan_emulation() { # prefix loss delay wanem carrier_nat
	local p=$1 loss=$2 delay=$3 wanem=$4 cgn=$5 dir
	dir=$(state_dir "$p")
	[ -n "$loss" ] || [ -n "$delay" ] || return 0
	if [ -n "$wanem" ]; then
		rm -f "$dir/wanem.ready"
		WANEM_READY="$dir/wanem.ready" in_ns "$(ns_name "$p" wan)" python3 "$LAB_DIR/wanem.py" \
			wr wi "${delay:-0}" "${loss:-0}" >>"$dir/wanem.log" 2>&1 &
		# Wait until the relay has its sockets open: until then the WAN link drops everything.
		wait_for 10 "WAN emulator" test -s "$dir/wanem.ready" ||
			die "the WAN emulator did not start within 10 s; see $dir/wanem.log"
		echo "wan_emulation=userspace relay (no sch_netem in this kernel)" >>"$dir/config"
		return
	fi
	local netem=(netem) upnode=inet updev=isp0
	[ -n "$delay" ] && netem+=(delay "${delay}ms")
	[ -n "$loss" ] && netem+=(loss "${loss}%")
	[ "$cgn" = 1 ] && upnode=isp updev=sub1
	in_ns "$(ns_name "$p" rtr)" tc qdisc add dev wan0 root "${netem[@]}"
	in_ns "$(ns_name "$p" "$upnode")" tc qdisc add dev "$updev" root "${netem[@]}"
	echo "wan_emulation=tc netem" >>"$dir/config"
}

# Addressing, router and static forwards of home H (forwards: home 1 only).
start_home() { # prefix home router addressing secure upnp forwards...
	local p=$1 h=$2 router=$3 addressing=$4 secure=$5 upnp=$6 dir hp rtr node wan_ip
	shift 6
	local forwards=("$@")
	dir=$(state_dir "$p")
	hp=$(home_prefix "$h")
	rtr=$(ns_name "$p" "${hp}rtr")
	wan_ip=$(ip -n "$rtr" -4 -o addr show dev wan0 | awk '{print $4}' | cut -d/ -f1 | head -1)
	local cams lan_nodes=()
	cams=$(sed -n 's/^cams=//p' "$dir/config")
	for node in $(seq 1 "$cams"); do lan_nodes+=("${hp}cam$node"); done
	lan_nodes+=("${hp}viewer")

	case $router in kernel | miniupnpd) in_ns "$rtr" sysctl -qw net.ipv4.ip_forward=1 ;; esac

	local dhcp_log=$dir/${hp}dnsmasq.log
	if [ "$addressing" = dhcp ] && [ "$router" = ours ]; then
		# Our router serves DHCP itself, so it starts before the clients; static forwards are
		# added through its API once the nodes have addresses.
		dhcp_log=$dir/${hp}router.log
		start_router "$p" "$secure" "$upnp" "$h"
		if ! wait_router_ready "$p" "$hp"; then
			tail -20 "$dir/${hp}router.log" >&2 || true
			die "our router did not come up; see $dir/${hp}router.log"
		fi
	elif [ "$addressing" = dhcp ]; then
		start_dnsmasq "$p" "$hp"
		wait_for 5 dnsmasq test -s "$dir/${hp}dnsmasq.pid" || die "dnsmasq did not start; see $dir/${hp}dnsmasq.log"
	fi
	if [ "$addressing" = dhcp ]; then
		for node in "${lan_nodes[@]}"; do start_udhcpc "$p" "$node"; done
		for node in "${lan_nodes[@]}"; do
			wait_for 30 "lease for $node" has_addr "$p" "$node" ||
				die "$node got no DHCP lease; see $dir/udhcpc-$node.log and $dhcp_log"
		done
	else
		for node in "${lan_nodes[@]}"; do
			ip -n "$(ns_name "$p" "$node")" addr add "$(static_addr_of "$node")/$LAN_LEN" dev eth0
			ip -n "$(ns_name "$p" "$node")" route add default via "$LAN_ROUTER"
		done
	fi

	# Static forwards, now that nodes have addresses.
	local resolved=() f fwd_rules=""
	for f in "${forwards[@]}"; do resolved+=("$(resolve_forward "$p" "$f")"); done
	for f in "${resolved[@]}"; do
		local proto=${f%%:*} ext=${f#*:}
		ext=${ext%%=*}
		fwd_rules+="		ip daddr $wan_ip $proto dport $ext dnat to ${f#*=}"$'\n'
		echo "forward=$f" >>"$dir/config"
	done

	case $router in
	kernel)
		nft_kernel_nat "$p" "$wan_ip" "$fwd_rules" | in_ns "$rtr" nft -f -
		;;
	miniupnpd)
		nft_miniupnpd "$wan_ip" "$fwd_rules" | in_ns "$rtr" nft -f -
		# --upnp off: the same kernel NAT, without the IGD.
		if [ "$upnp" = on ]; then
			start_miniupnpd "$p" "$wan_ip" "$secure" "$hp"
			wait_for 5 miniupnpd in_ns "$rtr" bash -c "exec 3<>/dev/tcp/$LAN_ROUTER/5000" ||
				die "miniupnpd did not start; see $dir/${hp}miniupnpd.log"
		fi
		;;
	ours)
		if [ "$addressing" = dhcp ]; then
			for f in "${resolved[@]}"; do add_router_forward "$p" "$f"; done
		else
			start_router "$p" "$secure" "$upnp" "$h" "${resolved[@]}"
		fi
		if ! wait_router_ready "$p" "$hp"; then
			tail -20 "$dir/${hp}router.log" >&2 || true
			die "our router did not come up; see $dir/${hp}router.log"
		fi
		;;
	esac
}
