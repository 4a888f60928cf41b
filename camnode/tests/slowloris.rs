//! Issue 11: one LAN host opening 1000 idle connections (slowloris; here 2000, more than the
//! node has file descriptors) must not stop another host
//! from being served. A real `camnode` (synthetic source, no router) with the file descriptor
//! limit a service gets by default (1024), in a network namespace of its own (`unshare -n`:
//! loopback only, gone when the test ends); the attacker connects from 127.0.0.2 and sends half
//! a request head on each connection, the viewer fetches `/status.json` from 127.0.0.3.
//! Before the connection caps the node accepted until it ran out of descriptors and the
//! viewer's connection was never accepted. Needs root (unshare).

use std::process::Command;

use tests::{repo_root, require_root};

const SCRIPT: &str = r#"
set -u
ip link set lo up
state=$(mktemp -d)
prlimit --nofile=1024:1024 "$CAMNODE" --source synthetic --listen 127.0.0.1 --web-port 18080 \
    --state-dir "$state" --fps 5 2>"$state/log" &
cam=$!
for i in $(seq 1 100); do
    curl -s -m 1 --interface 127.0.0.3 -o /dev/null http://127.0.0.1:18080/status.json && break
    sleep 0.1
done
python3 - >"$state/attacker" <<'PY' &
import socket, time
socks = []
for i in range(2000):
    try:
        s = socket.socket()
        s.bind(("127.0.0.2", 0))
        s.setblocking(False)
        s.connect_ex(("127.0.0.1", 18080))
        socks.append(s)
    except OSError:
        pass
time.sleep(1)
for s in socks:
    try:
        s.send(b"GET / HTTP/1.1\r\nHost: x\r\n")
    except OSError:
        pass
print("attacker holds", len(socks), "connections", flush=True)
time.sleep(30)
PY
attacker=$!
for i in $(seq 1 200); do grep -q holds "$state/attacker" && break; sleep 0.1; done
cat "$state/attacker"
sleep 1
code=$(curl -sS -m 3 --interface 127.0.0.3 -o /dev/null -w '%{http_code}' http://127.0.0.1:18080/status.json)
echo "viewer got: $code"
echo "camnode fds: $(ls /proc/$cam/fd | wc -l)"
kill $attacker $cam 2>/dev/null
wait $cam 2>/dev/null
rm -rf "$state"
[ "$code" = 200 ]
"#;

#[test]
fn thousands_of_idle_connections_from_one_host_do_not_stop_another() {
    if !require_root() {
        return;
    }
    let camnode =
        std::env::var("CAMNODE_BIN").unwrap_or_else(|_| env!("CARGO_BIN_EXE_camnode").to_string());
    let out = Command::new("unshare")
        .args(["-n", "bash", "-c", SCRIPT])
        .env("CAMNODE", &camnode)
        .current_dir(repo_root())
        .output()
        .expect("unshare runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    eprintln!("{text}");
    assert!(out.status.success(), "the viewer was not served:\n{text}");
}
