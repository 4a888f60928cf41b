# shellcheck shell=bash
# Shared helpers of the lab: messages, dependencies, state, teardown, addresses. Sourced by `lab`.

die() { echo "lab: $*" >&2; exit 1; }
say() { echo "lab: $*" >&2; }
# At the start of a cleanup trap: nothing may cut it short, not another Ctrl-C, nor a closed
# output pipe (`lab demo | tee log`: Ctrl-C ends tee first, and the next message would
# otherwise kill the script with SIGPIPE before it removed anything), nor a failing command.
quiet_cleanup() { trap '' INT TERM HUP PIPE; set +e; }

# ---------------------------------------------------------------------------------------------
# Dependencies

# command -> Debian package
DEPS=(
	"ip:iproute2" "nft:nftables" "tc:iproute2" "miniupnpd:miniupnpd-nftables" "upnpc:miniupnpc"
	"dnsmasq:dnsmasq-base" "udhcpc:udhcpc" "dhclient:isc-dhcp-client" "iperf3:iperf3" "curl:curl"
	"ping:iputils-ping" "traceroute:traceroute" "python3:python3" "tshark:tshark"
	"sha256sum:coreutils" "ethtool:ethtool" "natpmpc:natpmpc" "chromium:chromium"
	"ffmpeg:ffmpeg" "ffprobe:ffmpeg" "openssl:openssl"
)

cmd_deps() {
	local missing=() d
	for d in "${DEPS[@]}"; do
		command -v "${d%%:*}" >/dev/null 2>&1 || [ -x "/usr/sbin/${d%%:*}" ] || missing+=("${d#*:}")
	done
	[ ${#missing[@]} -eq 0 ] && return 0
	[ "$(id -u)" -eq 0 ] || die "missing tools (${missing[*]}); run as root to install them"
	command -v apt-get >/dev/null || die "missing tools (${missing[*]}) and no apt-get to install them"
	say "installing: $(printf '%s\n' "${missing[@]}" | sort -u | tr '\n' ' ')"
	export DEBIAN_FRONTEND=noninteractive
	# Keep the packages' own daemons from starting in the host namespace.
	echo "miniupnpd miniupnpd/start_daemon boolean false" | debconf-set-selections 2>/dev/null || true
	echo "iperf3 iperf3/start_daemon boolean false" | debconf-set-selections 2>/dev/null || true
	apt-get update -qq >/dev/null
	# shellcheck disable=SC2046
	apt-get install -y -qq --no-install-recommends $(printf '%s\n' "${missing[@]}" | sort -u) >/dev/null
}

# ---------------------------------------------------------------------------------------------
# State: /run/homenet-lab/P/{namespaces,config,owner,*.pid,logs}

state_dir() { echo "$STATE_ROOT/$1"; }
ns_name() { echo "$1-$2"; }

# Node names a lab may create; anything else with the prefix is not ours.
# Home 1's nodes keep plain names; home H>1's are prefixed hH- (h2-rtr, h2-cam1); isp is the
# carrier-grade NAT, relayN the relay servers.
is_lab_node() { [[ $1 =~ ^(inet|wan|isp|relay[0-9]+|(h[0-9]+-)?(rtr|lan|viewer|cam[0-9]+))$ ]]; }

# The node-name prefix of home H: none for home 1 (today's names), hH- for the others.
home_prefix() { if [ "$1" -eq 1 ]; then echo ""; else echo "h$1-"; fi; }

ns_exists() { ip netns list 2>/dev/null | awk '{print $1}' | grep -qx "$1"; }

lab_exists() {
	local p=$1
	[ -d "$(state_dir "$p")" ] && return 0
	local n
	for n in inet rtr lan viewer; do ns_exists "$(ns_name "$p" "$n")" && return 0; done
	return 1
}

create_ns() { # prefix node
	local ns
	ns=$(ns_name "$1" "$2")
	ns_exists "$ns" && die "namespace $ns exists but this lab did not create it; remove it yourself or choose another --prefix"
	# Recorded before it is made: a signal right after `ip netns add` must not leave it behind
	# (teardown skips a recorded namespace that does not exist).
	echo "$ns" >>"$(state_dir "$1")/namespaces"
	ip netns add "$ns"
	# Its own resolv.conf, so reverse lookups fail at once instead of waiting on the host's
	# resolver, which is unreachable from here (DESIGN.md).
	mkdir -p "/etc/netns/$ns"
	echo "nameserver 127.0.0.1" >"/etc/netns/$ns/resolv.conf"
	printf '127.0.0.1 localhost\n::1 localhost\n' >"/etc/netns/$ns/hosts"
	ip -n "$ns" link set lo up
}

in_ns() { local ns=$1; shift; ip netns exec "$ns" "$@"; }

# ---------------------------------------------------------------------------------------------
# Teardown

teardown() { # prefix
	local p=$1 dir ns pid
	dir=$(state_dir "$p")
	[ -f "$dir/namespaces" ] || { rm -rf "$dir"; return 0; }
	# Stop every process that lives in our namespaces (router, daemons, tests' servers).
	while read -r ns; do
		[ -n "$ns" ] && ns_exists "$ns" || continue
		for pid in $(ip netns pids "$ns" 2>/dev/null); do kill -TERM "$pid" 2>/dev/null || true; done
	done <"$dir/namespaces"
	# Give the router time to remove its rules and mappings (it leaves the namespace as found).
	local i
	for i in $(seq 1 30); do
		local alive=0
		while read -r ns; do
			[ -n "$ns" ] && ns_exists "$ns" || continue
			[ -n "$(ip netns pids "$ns" 2>/dev/null)" ] && alive=1
		done <"$dir/namespaces"
		[ $alive -eq 0 ] && break
		sleep 0.1
	done
	while read -r ns; do
		[ -n "$ns" ] && ns_exists "$ns" || continue
		for pid in $(ip netns pids "$ns" 2>/dev/null); do kill -KILL "$pid" 2>/dev/null || true; done
	done <"$dir/namespaces"
	while read -r ns; do
		[ -n "$ns" ] || continue
		ns_exists "$ns" && ip netns del "$ns" 2>/dev/null || true
		rm -rf "/etc/netns/$ns"
	done <"$dir/namespaces"
	rm -rf "$dir"
}

cmd_down() {
	local prefix=lab
	while [ $# -gt 0 ]; do
		case $1 in
		--prefix) prefix=${2:?--prefix needs a value}; shift 2 ;;
		*) die "down: unknown option $1 (see lab help)" ;;
		esac
	done
	need_root
	if [ ! -d "$(state_dir "$prefix")" ]; then
		lab_exists "$prefix" && die "namespaces named $prefix-* exist but no lab state was recorded for them; they were not created by this lab, so they are left alone"
		say "no lab with prefix $prefix"
		return 0
	fi
	teardown "$prefix"
	say "lab $prefix removed"
}

cmd_list() {
	[ -d "$STATE_ROOT" ] || return 0
	local d
	for d in "$STATE_ROOT"/*/; do
		[ -d "$d" ] || continue
		local p
		p=$(basename "$d")
		echo "$p $(grep -h '^router=' "$d/config" 2>/dev/null | cut -d= -f2) owner=$(cat "$d/owner" 2>/dev/null || echo -)"
	done
}

cmd_gc() {
	need_root
	[ -d "$STATE_ROOT" ] || return 0
	local d p owner
	for d in "$STATE_ROOT"/*/; do
		[ -d "$d" ] || continue
		p=$(basename "$d")
		owner=$(cat "$d/owner" 2>/dev/null || true)
		[ -n "$owner" ] || continue
		if ! kill -0 "$owner" 2>/dev/null; then
			say "removing lab $p (owner $owner has exited)"
			teardown "$p"
		fi
	done
}

need_root() { [ "$(id -u)" -eq 0 ] || die "must run as root (network namespaces need CAP_NET_ADMIN)"; }

# ---------------------------------------------------------------------------------------------
# Up

first_addr_of() { # 203.0.113.2/24 -> 203.0.113.1 (the first host address of the network)
	python3 -c 'import ipaddress,sys; n=ipaddress.ip_interface(sys.argv[1]).network; print(next(n.hosts()))' "$1"
}

network_of() { # 203.0.113.2/24 -> 203.0.113.0/24
	python3 -c 'import ipaddress,sys; print(ipaddress.ip_interface(sys.argv[1]).network)' "$1"
}

valid_cidr() {
	python3 -c 'import ipaddress,sys; i=ipaddress.ip_interface(sys.argv[1]); assert i.version==4 and i.network.prefixlen<31 and i.ip!=i.network.network_address and i.ip!=i.network.broadcast_address' "$1" 2>/dev/null
}

node_addr() { # prefix node -> first IPv4 address of eth0 (or lan0 for a router)
	local ns dev=eth0
	ns=$(ns_name "$1" "$2")
	[[ $2 =~ ^(h[0-9]+-)?rtr$ ]] && dev=lan0
	ip -n "$ns" -4 -o addr show dev "$dev" 2>/dev/null | awk '{print $4}' | cut -d/ -f1 | head -1
}

has_addr() { [ -n "$(node_addr "$1" "$2")" ]; }

router_bin() {
	if [ -n "${ROUTER_BIN:-}" ]; then
		[ -x "$ROUTER_BIN" ] || die "ROUTER_BIN=$ROUTER_BIN is not an executable"
		echo "$ROUTER_BIN"; return
	fi
	local b best=""
	for b in "$REPO_DIR/target/release/router" "$REPO_DIR/target/debug/router"; do
		[ -x "$b" ] || continue
		if [ -z "$best" ] || [ "$b" -nt "$best" ]; then best=$b; fi
	done
	if [ -z "$best" ]; then
		command -v cargo >/dev/null || die "no router binary: build it with 'cargo build --release -p router' or set ROUTER_BIN"
		say "building the router (cargo build --release -p router)"
		(cd "$REPO_DIR" && cargo build --release -q -p router >&2) || die "building the router failed"
		best=$REPO_DIR/target/release/router
	fi
	echo "$best"
}

wait_for() { # seconds description command...
	local secs=$1 what=$2 i
	shift 2
	for i in $(seq 1 $((secs * 10))); do
		"$@" >/dev/null 2>&1 && return 0
		sleep 0.1
	done
	return 1
}

