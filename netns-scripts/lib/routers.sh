# shellcheck shell=bash
# The home routers of the lab (ours, kernel NAT, miniupnpd) and LAN addressing. Sourced by `lab`.

# MAC of LAN node number IDX (1-based: cameras, then the viewer) of home H: stable, so DHCP
# leases and captures read the same on every run; the home is the fifth byte.
lan_mac() { printf '02:4c:41:42:%02x:%02x' "$(($1 - 1))" "$2"; }

setup_lan_node() { # prefix node index home
	local p=$1 node=$2 idx=$3 home=$4 ns lanns mac
	ns=$(ns_name "$p" "$node")
	lanns=$(ns_name "$p" "$(home_prefix "$home")lan")
	ip -n "$lanns" link add "p-$node" type veth peer name eth0 netns "$ns"
	ip -n "$lanns" link set "p-$node" master br0 up
	mac=$(lan_mac "$home" "$idx")
	ip -n "$ns" link set eth0 address "$mac" up
}

static_addr_of() { # node -> address (every home uses the same LAN addresses, as real homes do)
	local node=${1#h[0-9]*-}
	case $node in
	viewer) echo "$LAN_NET.200" ;;
	cam*) echo "$LAN_NET.$((100 + ${node#cam}))" ;;
	esac
}

start_dnsmasq() { # prefix home-prefix
	local p=$1 hp=$2 dir
	dir=$(state_dir "$p")
	in_ns "$(ns_name "$p" "${hp}rtr")" dnsmasq --conf-file=/dev/null --keep-in-foreground --port=0 \
		--interface=lan0 --bind-interfaces --except-interface=lo \
		--dhcp-range="$DHCP_FIRST,$DHCP_LAST,255.255.255.0,12h" \
		--dhcp-option=option:router,"$LAN_ROUTER" --dhcp-authoritative --no-ping \
		--dhcp-leasefile="$dir/${hp}dnsmasq.leases" --pid-file="$dir/${hp}dnsmasq.pid" \
		--log-facility="$dir/${hp}dnsmasq.log" --log-dhcp >>"$dir/${hp}dnsmasq.log" 2>&1 &
}

start_udhcpc() { # prefix node
	local p=$1 node=$2 dir ns
	dir=$(state_dir "$p")
	ns=$(ns_name "$p" "$node")
	# Our own udhcpc script: it sets the address and default route and never writes
	# /etc/resolv.conf.
	in_ns "$ns" udhcpc -f -i eth0 -s "$LAB_DIR/udhcpc-script" -x "hostname:$node" -t 20 -T 1 \
		>>"$dir/udhcpc-$node.log" 2>&1 &
}

nft_kernel_nat() { # prefix wan_ip forward_rules -> ruleset text for --router kernel
	local wan_ip=$2 fwd=$3
	cat <<EOF
table ip lab_nat {
	chain prerouting {
		type nat hook prerouting priority dstnat; policy accept;
$fwd
	}
	chain postrouting {
		type nat hook postrouting priority srcnat; policy accept;
		oifname "wan0" masquerade
		# Hairpin: a LAN host reaching a forward through the WAN address.
		iifname "lan0" oifname "lan0" ct status dnat masquerade
	}
	chain forward {
		type filter hook forward priority filter; policy drop;
		ct state established,related accept
		iifname "lan0" accept
		ct status dnat accept
	}
	chain input {
		type filter hook input priority filter; policy accept;
		iifname "wan0" ct state established,related accept
		iifname "wan0" icmp type echo-request accept
		iifname "wan0" drop
	}
}
EOF
}

nft_miniupnpd() { # wan_ip forward_rules -> ruleset with the chains miniupnpd 2.3 (nftables) expects
	local fwd=$2
	cat <<EOF
table inet filter {
	chain forward {
		type filter hook forward priority filter; policy drop;
		ct state established,related accept
		iifname "lan0" accept
		ct status dnat accept
		jump miniupnpd
	}
	chain miniupnpd {
	}
	chain prerouting {
		type nat hook prerouting priority dstnat; policy accept;
$fwd
		jump prerouting_miniupnpd
	}
	chain postrouting {
		type nat hook postrouting priority srcnat; policy accept;
		jump postrouting_miniupnpd
		oifname "wan0" masquerade
		iifname "lan0" oifname "lan0" ct status dnat masquerade
	}
	chain prerouting_miniupnpd {
	}
	chain postrouting_miniupnpd {
	}
	chain input {
		type filter hook input priority filter; policy accept;
		iifname "wan0" ct state established,related accept
		iifname "wan0" icmp type echo-request accept
		iifname "wan0" drop
	}
}
EOF
}

start_miniupnpd() { # prefix wan_ip secure home-prefix
	local p=$1 wan_ip=$2 secure=$3 hp=$4 dir uuid
	dir=$(state_dir "$p")
	uuid=$(python3 -c 'import uuid,sys; print(uuid.uuid5(uuid.NAMESPACE_DNS, "homenet-lab-"+sys.argv[1]))' "$hp$p")
	cat >"$dir/${hp}miniupnpd.conf" <<EOF
ext_ifname=wan0
listening_ip=lan0
port=5000
enable_natpmp=yes
enable_upnp=yes
secure_mode=$([ "$secure" = on ] && echo yes || echo no)
system_uptime=yes
notify_interval=30
clean_ruleset_interval=600
uuid=$uuid
friendly_name=homenet lab $p (miniupnpd)
lease_file=$dir/${hp}miniupnpd.leases
upnp_table_name=filter
upnp_nat_table_name=filter
upnp_forward_chain=miniupnpd
upnp_nat_chain=prerouting_miniupnpd
upnp_nat_postrouting_chain=postrouting_miniupnpd
allow 1024-65535 $LAN_NET.0/$LAN_LEN 1-65535
deny 0-65535 0.0.0.0/0 0-65535
EOF
	# -d keeps it in the foreground (its messages go to stderr, our log), but it also sends them
	# to syslog, which without /dev/log means opening /dev/console for every line: up to ~1 s
	# per request with many mappings, and noise on the machine's console. `ip netns exec` gives
	# the command its own mount namespace (slave to the host's), so /dev/null is bound over
	# /dev/console only for miniupnpd.
	in_ns "$(ns_name "$p" "${hp}rtr")" sh -c 'mount --bind /dev/null /dev/console 2>/dev/null; exec "$@"' \
		sh miniupnpd -d -f "$dir/${hp}miniupnpd.conf" -P "$dir/${hp}miniupnpd.pid" \
		>>"$dir/${hp}miniupnpd.log" 2>&1 &
}

wait_router_ready() { # prefix home-prefix: until the router logs that it runs (its recipe installed)
	local dir hp=$2 i
	dir=$(state_dir "$1")
	for i in $(seq 1 200); do
		grep -q "router running" "$dir/${hp}router.log" 2>/dev/null && return 0
		kill -0 "$(cat "$dir/${hp}router.pid")" 2>/dev/null || break # exited: no point waiting
		sleep 0.1
	done
	return 1
}

start_router() { # prefix secure upnp home forwards...
	local p=$1 secure=$2 upnp=$3 home=$4 dir bin hp
	shift 4
	hp=$(home_prefix "$home")
	dir=$(state_dir "$p")
	bin=$(router_bin)
	local args=(--wan wan0 --lan lan0)
	local f
	for f in "$@"; do args+=(--forward "$f"); done
	# The router's configuration for this lab: its state (UPnP mappings, BOOTID, uuid) lives
	# with the lab's state, so labs side by side never share it.
	local rdir=$dir/${hp}router-state
	mkdir -p "$rdir"
	# --upnp off: no IGD, NAT-PMP or PCP (router/router.example.toml's [upnp] enabled).
	cat >"$dir/${hp}router.toml" <<EOF
[upnp]
enabled = $([ "$upnp" = on ] && echo true || echo false)
secure_mode = $([ "$secure" = on ] && echo true || echo false)
state_dir = "$rdir"
friendly_name = "homenet lab $p${hp:+ home $home}"
EOF
	# Our DHCP server: leases kept with the lab's state (they survive a router restart), and
	# each LAN node's stable MAC (setup_lan_node) reserved at its static address, so nodes
	# have the same addresses with either addressing mode.
	local cams i
	cams=$(sed -n 's/^cams=//p' "$dir/config")
	{
		printf '[dhcp]\nstate_dir = "%s"\n' "$rdir"
		for i in $(seq 1 $((cams + 1))); do
			printf '[[dhcp.reservation]]\nmac = "%s"\naddr = "%s"\n' "$(lan_mac "$home" "$i")" \
				"$(if [ "$i" -le "$cams" ]; then static_addr_of "cam$i"; else static_addr_of viewer; fi)"
		done
	} >>"$dir/${hp}router.toml"
	args+=(--config "$dir/${hp}router.toml")
	# ROUTER_ARGS: the user's own options (word-split on purpose).
	local extra=()
	read -r -a extra <<<"${ROUTER_ARGS:-}"
	args+=("${extra[@]}")
	echo "$bin ${args[*]}" >"$dir/${hp}router.cmdline"
	# Started directly (not through a shell function), so $! is the router itself: `ip netns
	# exec` execs it in place.
	ip netns exec "$(ns_name "$p" "${hp}rtr")" "$bin" "${args[@]}" >>"$dir/${hp}router.log" 2>&1 &
	echo $! >"$dir/${hp}router.pid"
}

add_router_forward() { # prefix proto:ext=addr:port -> through the running router's API
	local p=$1 f=$2 dir proto ext addr port
	dir=$(state_dir "$p")
	[[ $f =~ ^(tcp|udp):([0-9]+)=([0-9.]+):([0-9]+)$ ]] || die "forward $f: unexpected form"
	proto=${BASH_REMATCH[1]} ext=${BASH_REMATCH[2]} addr=${BASH_REMATCH[3]} port=${BASH_REMATCH[4]}
	in_ns "$(ns_name "$p" rtr)" curl -sf --max-time 5 -o /dev/null -H 'Content-Type: application/json' \
		-d "{\"protocol\":\"$proto\",\"external_port\":$ext,\"internal_addr\":\"$addr\",\"internal_port\":$port,\"description\":\"--forward $f\"}" \
		"http://$LAN_ROUTER/api/forwards" || die "forward $f: the router's API refused it; see $dir/router.log"
	# A restart from router.cmdline brings the forward back.
	sed -i "1s|\$| --forward $f|" "$dir/router.cmdline"
}

resolve_forward() { # prefix spec -> proto:ext=addr:port
	local p=$1 spec=$2 proto rest ext target node port addr
	[[ $spec =~ ^(tcp|udp):([0-9]+)=([A-Za-z0-9.]+)(:([0-9]+))?$ ]] ||
		die "--forward $spec: expected PROTO:EXTPORT=NODE[:PORT], e.g. tcp:8080=cam1:8080"
	proto=${BASH_REMATCH[1]}
	ext=${BASH_REMATCH[2]}
	node=${BASH_REMATCH[3]}
	port=${BASH_REMATCH[5]:-$ext}
	if [[ $node =~ ^[0-9.]+$ ]]; then addr=$node; else
		addr=$(node_addr "$p" "$node")
		[ -n "$addr" ] || die "--forward $spec: node $node has no address (is it in this lab?)"
	fi
	echo "$proto:$ext=$addr:$port"
}

