# shellcheck shell=bash
# `lab demo` and `lab tour`: cameras, the 127.0.0.1 proxies, the scripted tour. Sourced by `lab`.

cmd_demo() {
	local prefix=demo cams=3 proxy_port=8118 lan_port=8119 args=() wait=1 relayed=0 relays="" video=""
	while [ $# -gt 0 ]; do
		case $1 in
		# Behind a carrier NAT or a router without UPnP only a relay reaches the cameras.
		--carrier-nat) relayed=1; args+=("$1"); shift ;;
		--upnp) [ "${2:-}" = off ] && relayed=1; args+=("$1" "${2:-}"); shift 2 ;;
		--relays) relays=${2:?--relays needs a number}; shift 2 ;;
		--prefix) prefix=${2:?--prefix needs a value}; shift 2 ;;
		--cams) cams=${2:?--cams needs a number}; shift 2 ;;
		--video) video=${2:?--video needs a file, or none}; shift 2 ;;
		--proxy-port) proxy_port=${2:?--proxy-port needs a port}; shift 2 ;;
		--lan-proxy-port) lan_port=${2:?--lan-proxy-port needs a port}; shift 2 ;;
		--no-wait) wait=0; shift ;;
		*) args+=("$1"); shift ;;
		esac
	done
	need_root
	[[ $cams =~ ^[0-9]+$ ]] && [ "$cams" -ge 1 ] && [ "$cams" -le 20 ] || die "demo --cams $cams: choose 1 to 20"
	if [ -n "$video" ] && [ "$video" != none ]; then
		[ -r "$video" ] || die "demo --video $video: no such readable file"
		command -v ffmpeg >/dev/null || die "demo --video: camnode plays files through ffmpeg; install it with '$0 deps'"
		video=$(realpath "$video")
	fi
	# Ctrl-C, a terminal closing or a kill: everything the demo created goes.
	[ $wait -eq 1 ] && trap 'quiet_cleanup; echo; say "stopping the demo"; teardown "'"$prefix"'"; exit 0' INT TERM HUP
	# One spare camera namespace, started by `lab tour` to show a camera joining.
	[ -n "$relays" ] || relays=$relayed
	[ "$relays" != 0 ] || [ $relayed -eq 0 ] || die "demo: a camera behind --carrier-nat or --upnp off needs --relays 1 or more"
	args+=(--relays "$relays")
	(cmd_up --prefix "$prefix" --force --cams $((cams + 1)) "${args[@]}") >/dev/null || exit 1
	local dir wan bin i
	dir=$(state_dir "$prefix")
	wan=$(sed -n 's/^wan=//p' "$dir/config")
	wan=${wan%/*}
	bin=$(camnode_bin)
	# One camera shows real footage: the --video file, or a clip made here with ffmpeg's test
	# sources (no media files in the repository).
	local video_cam=cam$((cams >= 2 ? 2 : 1))
	if [ -z "$video" ] && command -v ffmpeg >/dev/null; then
		video=$dir/demo-clip.mkv
		ffmpeg -hide_banner -nostdin -loglevel error -y -f lavfi -i testsrc2=size=640x480:rate=15 \
			-t 10 -c:v mpeg4 -q:v 4 "$video" || video=none
	fi
	for i in $(seq 1 "$cams"); do
		if [ "cam$i" = "$video_cam" ] && [ -n "$video" ] && [ "$video" != none ]; then
			start_camnode "$prefix" "cam$i" --source "file:$video"
		else
			start_camnode "$prefix" "cam$i"
		fi
		sleep 0.3
	done
	[ -n "$video" ] && [ "$video" != none ] && echo "video_cam=$video_cam video=$video" >>"$dir/config"
	echo "spare_cam=cam$((cams + 1))" >>"$dir/config"
	# The views for a browser on this machine: only 127.0.0.1 on the host side.
	start_nsproxy "$prefix" inet "$proxy_port"
	start_nsproxy "$prefix" viewer "$lan_port"
	if [ $relayed -eq 1 ]; then
		demo_relay_banner "$prefix" "$cams" "$proxy_port" "$lan_port"
	else
		wait_for 15 "representative" in_ns "$(ns_name "$prefix" inet)" curl -sf -m 1 -o /dev/null "http://$wan:8080/" ||
			die "no camera answered on http://$wan:8080/ within 15 s; see $dir/camnode-cam1.log"
		demo_banner "$prefix" "$cams" "$proxy_port" "$lan_port" "$wan"
	fi
	[ $wait -eq 1 ] || return 0
	echo "Press Ctrl-C to stop; everything the demo created is removed."
	while true; do sleep 3600 & wait $!; done
}

demo_banner() { # prefix cams proxy_port lan_port wan
	local prefix=$1 cams=$2 proxy_port=$3 lan_port=$4 wan=$5
	cat <<EOF

The demo lab "$prefix" is up: our router, $cams cameras (camnode), a LAN viewer.
$(sed -n 's/^video_cam=\([^ ]*\) video=\(.*\)/\1 plays \2 in a loop (ffmpeg); the others draw the synthetic scene./p' "$(state_dir "$prefix")/config")

What an internet user sees (a browser whose HTTP proxy is 127.0.0.1:$proxy_port):
  chromium --proxy-server=http://127.0.0.1:$proxy_port http://$wan:8080/
  curl -x http://127.0.0.1:$proxy_port http://$wan:8080/status.json
What a LAN user sees, and the router's admin page (proxy 127.0.0.1:$lan_port):
  chromium --proxy-server=http://127.0.0.1:$lan_port http://192.168.1.1/
  curl -x http://127.0.0.1:$lan_port http://$(node_addr "$prefix" cam1):8080/
A scripted tour (rename a camera, add one fronting cam2's stream, stop the representative):
  $0 tour --prefix $prefix
More: $0 status --prefix $prefix; $0 exec --prefix $prefix cam1 -- traceroute -n 198.51.100.10
EOF
}

# The cameras are behind a carrier NAT (or a router without UPnP): wait until cam1 answers
# through relay 1, then say where to look.
demo_relay_banner() { # prefix cams proxy_port lan_port
	local prefix=$1 cams=$2 proxy_port=$3 lan_port=$4 dir relay id public behind
	dir=$(state_dir "$prefix")
	relay=$(relay_addr 1)
	id=$(device_id_of "$prefix" cam1)
	public=$(sed -n 's/^public=//p' "$dir/config")
	behind="a router without UPnP"
	[ "$(sed -n 's/^carrier_nat=//p' "$dir/config")" = on ] &&
		behind="a carrier-grade NAT (the home router's WAN is $(sed -n 's/^wan=//p' "$dir/config"), the internet sees $public)"
	wait_for 30 "cam1 through the relay" in_ns "$(ns_name "$prefix" inet)" \
		curl -sf -m 2 -o /dev/null "http://$relay/d/$id/" ||
		die "cam1 did not answer through the relay (http://$relay/d/$id/) within 30 s; see $dir/camnode-cam1.log and $dir/relay1.log"
	cat <<EOF

The demo lab "$prefix" is up: $cams cameras (camnode) behind $behind,
reachable from the internet only through the relay at $relay.

What an internet user sees (a browser whose HTTP proxy is 127.0.0.1:$proxy_port):
  chromium --proxy-server=http://127.0.0.1:$proxy_port "http://$relay/connect.cgi?ID=$id"
  curl -x http://127.0.0.1:$proxy_port http://$relay/status     # the relay: devices, sessions, bytes
  (HTTPS too: https://$relay/, certificate from the lab's CA $dir/relay/ca.pem)
What a LAN user sees (proxy 127.0.0.1:$lan_port): the relay sends a viewer on the camera's
own network to the camera's LAN address (seed 004); no picture byte crosses the relay:
  chromium --proxy-server=http://127.0.0.1:$lan_port "http://$relay/connect.cgi?ID=$id"
A scripted tour (each camera through the relay, rename, a camera joining, the representative off):
  $0 tour --prefix $prefix
More: $0 status --prefix $prefix
EOF
}

camnode_bin() {
	if [ -n "${CAMNODE_BIN:-}" ]; then
		[ -x "$CAMNODE_BIN" ] || die "CAMNODE_BIN=$CAMNODE_BIN is not an executable"
		echo "$CAMNODE_BIN"; return
	fi
	local b best=""
	for b in "$REPO_DIR/target/release/camnode" "$REPO_DIR/target/debug/camnode"; do
		[ -x "$b" ] || continue
		if [ -z "$best" ] || [ "$b" -nt "$best" ]; then best=$b; fi
	done
	if [ -z "$best" ]; then
		command -v cargo >/dev/null || die "no camnode binary: build it with 'cargo build --release -p camnode' or set CAMNODE_BIN"
		say "building the camera node (cargo build --release -p camnode)"
		(cd "$REPO_DIR" && cargo build --release -q -p camnode >&2) || die "building camnode failed"
		best=$REPO_DIR/target/release/camnode
	fi
	echo "$best"
}

start_camnode() { # prefix node [camnode options]: a camera node with its state in the lab's state
	local p=$1 node=$2 dir
	shift 2
	dir=$(state_dir "$p")
	local args=()
	mapfile -t args < <(camnode_args "$p" "$node")
	ip netns exec "$(ns_name "$p" "$node")" "$(camnode_bin)" "${args[@]}" "$@" \
		>>"$dir/camnode-$node.log" 2>&1 &
	echo $! >"$dir/camnode-$node.pid"
}

start_nsproxy() { # prefix node port: 127.0.0.1:port on the host, connections from inside node
	local p=$1 node=$2 port=$3 dir
	dir=$(state_dir "$p")
	python3 "$LAB_DIR/nsproxy.py" --listen "127.0.0.1:$port" --netns "$(ns_name "$p" "$node")" \
		>>"$dir/nsproxy-$node.log" 2>&1 &
	wait_for 5 "proxy on 127.0.0.1:$port" grep -q nsproxy "$dir/nsproxy-$node.log" ||
		die "the proxy on 127.0.0.1:$port did not start (port in use? --proxy-port); see $dir/nsproxy-$node.log"
}

cmd_tour() {
	local prefix=demo step_wait=6
	while [ $# -gt 0 ]; do
		case $1 in
		--prefix) prefix=${2:?--prefix needs a value}; shift 2 ;;
		--pause) step_wait=${2:?--pause needs seconds}; shift 2 ;;
		*) die "tour: unknown option $1" ;;
		esac
	done
	need_root
	local dir wan inet spare rep_pid relays port
	dir=$(state_dir "$prefix")
	[ -f "$dir/config" ] || die "no lab $prefix: start it with 'lab demo --prefix $prefix'"
	wan=$(sed -n 's/^wan=//p' "$dir/config")
	wan=${wan%/*}
	inet=$(ns_name "$prefix" inet)
	relays=$(sed -n 's/^relays=//p' "$dir/config")
	[ "$(sed -n 's/^carrier_nat=//p' "$dir/config")" = on ] || [ "$(sed -n 's/^upnp=//p' "$dir/config")" = off ] || relays=0
	show() {
		[ "${relays:-0}" -eq 0 ] || { tour_show_relay "$prefix"; return; }
		echo "   http://$wan:8080/ lists:"
		in_ns "$inet" curl -s -m 3 "http://$wan:8080/status.json" |
			python3 -c 'import json,sys; d=json.load(sys.stdin); print("     representative:", d["name"]); [print("     -", p["name"], p["url"]) for p in d["peers"]]' 2>/dev/null ||
			echo "     (no answer on :8080)"
	}
	echo "1. The cameras as the internet sees them."; show
	if [ "${relays:-0}" -gt 0 ]; then
		local id
		id=$(device_id_of "$prefix" cam1)
		echo "   A viewer in the cameras' home asks the relay for cam1 (seed 004):"
		in_ns "$(ns_name "$prefix" viewer)" curl -s -m 5 -o /dev/null -w '     %{http_code} to %{redirect_url} (the LAN address: no picture byte crosses the relay)\n' \
			"http://$(relay_addr 1)/d/$id/" || true
	fi
	echo "2. Rename cam2 to \"garden\" (from the LAN)."
	# cam2's web port: 8081 with port forwarding; behind a relay, as it reports it.
	port=8081
	[ "${relays:-0}" -eq 0 ] || port=$(in_ns "$inet" curl -s -m 8 "http://$(relay_addr 1)/d/$(device_id_of "$prefix" cam2)/status.json" |
		python3 -c 'import json,sys; print(json.load(sys.stdin)["ports"]["lan"])' 2>/dev/null || echo 8080)
	in_ns "$(ns_name "$prefix" viewer)" curl -s -m 3 -o /dev/null -d 'name=garden' "http://$(node_addr "$prefix" cam2):$port/name" || true
	sleep 2; show
	spare=$(sed -n 's/^spare_cam=//p' "$dir/config")
	if [ -n "$spare" ] && [ ! -f "$dir/camnode-$spare.pid" ]; then
		# Every camnode listens on 8080 on the LAN (Fig. 8a), whatever port it maps.
		local upstream="http://$(node_addr "$prefix" cam2):8080/stream.mjpg"
		echo "3. A new camera joins ($spare); it names itself with the lowest free automatic name."
		echo "   It has no camera of its own: it fronts $upstream, as camnode fronts an IP camera"
		echo "   (the JPEGs pass through unchanged, fetched only while someone watches)."
		start_camnode "$prefix" "$spare" --source "$upstream"; sleep 2; show
		local viewer spare_addr
		viewer=$(ns_name "$prefix" viewer)
		spare_addr=$(node_addr "$prefix" "$spare")
		in_ns "$viewer" curl -s -m 5 -o /dev/null "http://$spare_addr:8080/snapshot.jpg" || true
		in_ns "$viewer" curl -s -m 3 "http://$spare_addr:8080/status.json" |
			python3 -c 'import json,sys; c=json.load(sys.stdin)["camera"]; print("   ", c["source"], "- JPEGs passed through:", c["passthrough"], "encoded here:", c["encodes"])' 2>/dev/null || true
	fi
	rep_pid=$(cat "$dir/camnode-cam1.pid" 2>/dev/null || true)
	if [ -n "$rep_pid" ] && kill -0 "$rep_pid" 2>/dev/null; then
		echo "4. The representative (cam1) is switched off; another camera takes over$([ "${relays:-0}" -gt 0 ] && echo " (and lists the others through the relay)" || echo " :8080")."
		kill -TERM "$rep_pid"
		sleep "$step_wait"; show
	fi
}


# The tour's view through the relay: each running camera's site on relay 1, its name, its role
# and how many cameras its page lists.
tour_show_relay() { # prefix
	local p=$1 dir relay node id pid
	dir=$(state_dir "$p")
	relay=$(relay_addr 1)
	echo "   through the relay (http://$relay/d/<id>/):"
	while read -r node id _; do
		pid=$(cat "$dir/camnode-$node.pid" 2>/dev/null || true)
		[ -n "$pid" ] && kill -0 "$pid" 2>/dev/null || continue
		in_ns "$(ns_name "$p" inet)" curl -s -m 8 "http://$relay/d/$id/status.json" |
			python3 -c 'import json,sys; d=json.load(sys.stdin); print("     - %s: %s, %s, lists %d other(s); %s" % (sys.argv[1], d["name"], d["role"], len(d["peers"]), d["reachability"]["text"]))' "$node" 2>/dev/null ||
			echo "     - $node: (no answer through the relay)"
	done <"$dir/relay/devices"
}
