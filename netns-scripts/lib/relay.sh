# shellcheck shell=bash
# The relays of the lab (seed 003, issue 12): the `relay` binary in P-relay1..N, a per-lab CA and
# certificates, each camera's identity and secret, and the options a camera starts with.
# Sourced by `lab`. Everything lives in the lab's state directory, removed by `down`.

RELAY_UDP_PORT=17780   # docs/relay-protocol.md: device notifications
RELAY_BACK_PORT=17781  # TLS back-connections
RELAY_HTTPS_PORT=443   # viewers
RELAY_HTTP_PORT=80     # viewers, plain HTTP (lab only)

relay_bin() {
	if [ -n "${RELAY_BIN:-}" ]; then
		[ -x "$RELAY_BIN" ] || die "RELAY_BIN=$RELAY_BIN is not an executable"
		echo "$RELAY_BIN"; return
	fi
	local b best=""
	for b in "$REPO_DIR/target/release/relay" "$REPO_DIR/target/debug/relay"; do
		[ -x "$b" ] || continue
		if [ -z "$best" ] || [ "$b" -nt "$best" ]; then best=$b; fi
	done
	if [ -z "$best" ]; then
		command -v cargo >/dev/null || die "no relay binary: build it with 'cargo build --release -p relay' or set RELAY_BIN"
		say "building the relay (cargo build --release -p relay)"
		(cd "$REPO_DIR" && cargo build --release -q -p relay >&2) || die "building the relay failed"
		best=$REPO_DIR/target/release/relay
	fi
	echo "$best"
}

# The lab's CA and one certificate per relay for its address (an IP SAN: cameras connect by
# address and check it), made by the relay itself (`relay gen-certs`).
make_relay_certs() { # prefix relays
	local p=$1 n=$2 d i bin
	d=$(state_dir "$p")/relay
	bin=$(relay_bin)
	mkdir -p "$d"
	chmod 700 "$d" # keys and device secrets
	for i in $(seq 1 "$n"); do
		"$bin" gen-certs --dir "$d" --name "relay$i.lab" --ip "$(relay_addr "$i")" --file "relay$i" \
			>>"$d/gen-certs.log" 2>&1 || die "relay gen-certs failed; see $d/gen-certs.log"
	done
}

# Every camera namespace of every home gets a device id (its node id: written to the identity
# file of the state directory the camera starts with, so a page can link to /d/<id>/) and a
# secret from `relay enrol`, listed in relay/devices as "NODE ID SECRET".
make_device_secrets() { # prefix homes cams
	local p=$1 homes=$2 cams=$3 dir h i node id secret bin
	dir=$(state_dir "$p")
	bin=$(relay_bin)
	: >"$dir/relay/devices"
	for h in $(seq 1 "$homes"); do
		for i in $(seq 1 "$cams"); do
			node=$(home_prefix "$h")cam$i
			id=$(od -An -N8 -tx1 /dev/urandom | tr -d ' \n')
			secret=$("$bin" enrol --device "$id" | sed -n 's/^secret = "\([0-9a-f]*\)"$/\1/p')
			[ ${#secret} -eq 64 ] || die "relay enrol --device $id printed no secret"
			mkdir -p "$dir/$node-state"
			printf 'id = "%s"\n' "$id" >"$dir/$node-state/identity.toml"
			echo "$node $id $secret" >>"$dir/relay/devices"
		done
	done
}

make_relay_credentials() { # prefix relays homes cams
	make_relay_certs "$1" "$2"
	make_device_secrets "$1" "$3" "$4"
}

# relayI's configuration: its certificate, the lab's devices, plain HTTP for the lab.
write_relay_config() { # prefix index
	local p=$1 i=$2 dir addr node id secret
	dir=$(state_dir "$p")
	addr=$(relay_addr "$i")
	{
		cat <<EOF
# relay$i of lab $p (written by netns-scripts/lab up)
udp = "$addr:$RELAY_UDP_PORT"
back = "$addr:$RELAY_BACK_PORT"
https = "$addr:$RELAY_HTTPS_PORT"
http = "$addr:$RELAY_HTTP_PORT"
cert = "$dir/relay/relay$i.pem"
key = "$dir/relay/relay$i.key"
EOF
		local period
		period=$(sed -n 's/^relay_period=//p' "$dir/config")
		if [ -n "$period" ]; then
			echo "period_s = $period"
			# The suggested keep-alive must stay below the period (the relay checks it).
			[ "$period" -gt 20 ] || echo "keepalive_s = $(((period + 2) / 3))"
		fi
		# Behind the lab's carrier NAT a home is its port block, and the ISP's public address is
		# shared (docs/relay-protocol.md, "Same network: the rule"): a camera whose router has no
		# UPnP cannot report that itself.
		if [ "$(sed -n 's/^carrier_nat=//p' "$dir/config")" = on ]; then
			echo "same_network_port_block = $CGN_PORT_BLOCK"
			echo "same_network_shared_prefixes = [\"$(sed -n 's/^public=//p' "$dir/config")/32\"]"
		fi
		# No camera in the lab: an enrolment key, so the relay starts and a device of your own can
		# register (`relay enrol --device ID --config relayI.toml` prints its secret).
		if [ ! -s "$dir/relay/devices" ]; then
			[ -s "$dir/relay/enrol_key" ] || "$(relay_bin)" enrol --new-key | grep '^enrol_key' >"$dir/relay/enrol_key"
			cat "$dir/relay/enrol_key"
		fi
		while read -r node id secret; do
			printf '\n[[device]]\n# %s\nid = "%s"\nsecret = "%s"\n' "$node" "$id" "$secret"
		done <"$dir/relay/devices"
	} >"$dir/relay$i.toml"
	chmod 600 "$dir/relay$i.toml" # device secrets
}

start_relay() { # prefix index
	local p=$1 i=$2 dir bin
	dir=$(state_dir "$p")
	bin=$(relay_bin)
	write_relay_config "$p" "$i"
	local extra=()
	read -r -a extra <<<"${RELAY_ARGS:-}"
	echo "$bin --config $dir/relay$i.toml ${extra[*]}" >"$dir/relay$i.cmdline"
	ip netns exec "$(ns_name "$p" "relay$i")" "$bin" --config "$dir/relay$i.toml" "${extra[@]}" \
		>>"$dir/relay$i.log" 2>&1 &
	echo $! >"$dir/relay$i.pid"
}

start_relays() { # prefix relays: start each, then wait until each answers on its HTTP port
	local p=$1 n=$2 i dir
	dir=$(state_dir "$p")
	for i in $(seq 1 "$n"); do start_relay "$p" "$i"; done
	for i in $(seq 1 "$n"); do
		wait_for 15 "relay$i" in_ns "$(ns_name "$p" inet)" \
			curl -s -o /dev/null -m 1 "http://$(relay_addr "$i"):$RELAY_HTTP_PORT/status.json" || {
			grep -v -E '^ +([0-9]+:|at )' "$dir/relay$i.log" | tail -20 >&2 || true
			die "relay$i did not answer on http://$(relay_addr "$i"):$RELAY_HTTP_PORT/ within 15 s; see $dir/relay$i.log"
		}
	done
}

# The options a camera in NODE starts with: its state directory in the lab's state and, with
# relays, each relay, the camera's secret and the lab's CA.
camnode_args() { # prefix node
	local p=$1 node=$2 dir relays i secret
	dir=$(state_dir "$p")
	echo "--state-dir"
	echo "$dir/$node-state"
	relays=$(sed -n 's/^relays=//p' "$dir/config")
	[ "${relays:-0}" -gt 0 ] || return 0
	secret=$(awk -v n="$node" '$1 == n {print $3}' "$dir/relay/devices")
	[ -n "$secret" ] || die "camnode-args: $node has no relay secret (is it a camera of this lab?)"
	for i in $(seq 1 "$relays"); do
		echo "--relay"
		echo "http://$(relay_addr "$i")"
	done
	echo "--relay-secret"
	echo "$secret"
	echo "--relay-ca"
	echo "$dir/relay/ca.pem"
}

cmd_camnode_args() {
	local prefix=lab node=""
	while [ $# -gt 0 ]; do
		case $1 in
		--prefix) prefix=${2:?--prefix needs a value}; shift 2 ;;
		-*) die "camnode-args: unknown option $1" ;;
		*) node=$1; shift ;;
		esac
	done
	[[ $node =~ ^(h[0-9]+-)?cam[0-9]+$ ]] || die "camnode-args: which camera? usage: lab camnode-args [--prefix P] cam1"
	[ -f "$(state_dir "$prefix")/config" ] || die "no lab with prefix $prefix"
	camnode_args "$prefix" "$node"
}

device_id_of() { # prefix node -> the device id the lab gave the camera in NODE
	awk -v n="$2" '$1 == n {print $2}' "$(state_dir "$1")/relay/devices"
}
