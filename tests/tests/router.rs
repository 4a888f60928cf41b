//! Our router in the lab (issue 3): traffic from the LAN, forwards and hairpin, each filtering
//! and mapping behaviour seen from the internet side, session expiry, runtime control, and a
//! namespace left as it was found.

use std::time::Duration;

use tests::{Lab, LabOptions, RouterKind, repo_root, require_root};

const TERMINAL: &str = "198.51.100.10";
const TERMINAL2: &str = "198.51.100.11";

fn udp_py() -> String {
    repo_root()
        .join("tests/scripts/udp.py")
        .display()
        .to_string()
}

fn ours(cams: u32) -> LabOptions {
    LabOptions::new(RouterKind::Ours).cams(cams)
}

/// POST to the router's control API from the viewer (the API is LAN-only).
fn api_post(lab: &Lab, path: &str, body: &str) -> String {
    lab.sh(
        "viewer",
        &format!(
            "curl -sS -m 5 --fail-with-body -H 'Content-Type: application/json' -X POST --data-raw '{body}' http://192.168.1.1{path}"
        ),
    )
}

fn api_get(lab: &Lab, path: &str) -> String {
    lab.sh(
        "viewer",
        &format!("curl -sS -m 5 --fail-with-body http://192.168.1.1{path}"),
    )
}

#[test]
fn lan_host_gets_tcp_udp_ping_and_traceroute_through_our_nat() {
    if !require_root() {
        return;
    }
    let lab = Lab::up(&ours(1)).expect("lab up");
    let dir = format!("/tmp/{}-www", lab.prefix);
    let sum = lab.sh("inet", &format!("mkdir -p {dir} && head -c 32M /dev/urandom > {dir}/big && sha256sum {dir}/big | cut -d' ' -f1"));
    lab.http_server("inet", TERMINAL, 8000, &dir);

    // A large TCP download arrives intact.
    let got = lab.sh(
        "cam1",
        &format!("curl -sS -m 60 http://{TERMINAL}:8000/big | sha256sum | cut -d' ' -f1"),
    );
    assert_eq!(
        got.trim(),
        sum.trim(),
        "32 MiB through the NAT, same sha256"
    );

    // UDP: the terminal's echo sees the router's WAN address as the source, and answers.
    lab.spawn("inet", &["python3", &udp_py(), "echo", TERMINAL, "7000"]);
    std::thread::sleep(Duration::from_millis(300));
    let reply = lab.sh(
        "cam1",
        &format!("python3 {} ask 40000 {TERMINAL} 7000 ping-udp", udp_py()),
    );
    let wan = lab.wan_addr();
    assert_eq!(
        reply.trim(),
        format!("ping-udp {wan}:40000"),
        "translated source, preserved port, reply delivered"
    );

    // ICMP echo.
    lab.sh("cam1", &format!("ping -c 3 -i 0.2 -W 2 {TERMINAL}"));

    // traceroute: the router is exactly one hop, then the destination.
    let trace = lab.sh("cam1", &format!("traceroute -n -q 1 -w 2 -m 5 {TERMINAL}"));
    let hops: Vec<&str> = trace
        .lines()
        .skip(1)
        .filter_map(|l| l.split_whitespace().nth(1))
        .collect();
    assert_eq!(hops, vec!["192.168.1.1", TERMINAL], "traceroute:\n{trace}");
    // UDP traceroute needs translated ICMP errors for its probes; check with ICMP probes too.
    let trace = lab.sh(
        "cam1",
        &format!("traceroute -I -n -q 1 -w 2 -m 5 {TERMINAL}"),
    );
    let hops: Vec<&str> = trace
        .lines()
        .skip(1)
        .filter_map(|l| l.split_whitespace().nth(1))
        .collect();
    assert_eq!(
        hops,
        vec!["192.168.1.1", TERMINAL],
        "traceroute -I:\n{trace}"
    );

    lab.sh("inet", &format!("rm -rf {dir}"));
}

#[test]
fn static_forward_reaches_cam1_and_hairpins_from_the_lan() {
    if !require_root() {
        return;
    }
    let lab = Lab::up(
        &ours(2)
            .forward("tcp:8080=cam1:8080")
            .forward("udp:9000=cam2:9000"),
    )
    .expect("lab up");
    let cam1 = lab.addr("cam1").to_string();
    let dir = format!("/tmp/{}-cam1", lab.prefix);
    lab.sh(
        "cam1",
        &format!("mkdir -p {dir} && echo 'cam1 says hi' > {dir}/index.html"),
    );
    lab.http_server("cam1", &cam1, 8080, &dir);
    let wan = lab.wan_addr();

    assert_eq!(
        lab.sh("inet", &format!("curl -sS -m 5 http://{wan}:8080/"))
            .trim(),
        "cam1 says hi"
    );
    // Hairpin: the viewer reaches the forward through the WAN address, and cam1 sees the
    // connection coming from the WAN address (RFC 4787 REQ-9: the external source).
    assert_eq!(
        lab.sh("viewer", &format!("curl -sS -m 5 http://{wan}:8080/"))
            .trim(),
        "cam1 says hi"
    );
    // cam2 reaches its own neighbour through the router's WAN address too.
    assert_eq!(
        lab.sh("cam2", &format!("curl -sS -m 5 http://{wan}:8080/"))
            .trim(),
        "cam1 says hi"
    );

    // The UDP forward: the terminal's datagram reaches cam2.
    lab.spawn("cam2", &["python3", &udp_py(), "echo", "0.0.0.0", "9000"]);
    std::thread::sleep(Duration::from_millis(300));
    let reply = lab.sh(
        "inet",
        &format!("python3 {} ask 5555 {wan} 9000 via-forward", udp_py()),
    );
    assert_eq!(
        reply.trim(),
        format!("via-forward {TERMINAL}:5555"),
        "cam2 saw the terminal's real address"
    );

    // Nothing else is open from the internet.
    for port in [22u16, 80, 5000, 8081] {
        let (ok, _) = lab.try_sh(
            "inet",
            &format!("curl -sS -m 2 -o /dev/null http://{wan}:{port}/"),
        );
        assert!(!ok, "port {port} answered from the internet");
    }
    lab.sh("cam1", &format!("rm -rf {dir}"));
}

/// cam1 opens a mapping by sending from `port` to the terminal, then three probes arrive from
/// the internet, in this order: another address, the same address from another port, the same
/// endpoint. Returns which of them reached cam1. The listener stops at the last probe (or after
/// 15 s), so a slow machine does not turn into a missed probe.
fn probes_reaching_cam1(lab: &Lab, port: u16) -> [bool; 3] {
    let out = format!("/tmp/{}-udp-{port}", lab.prefix);
    let _ = std::fs::remove_file(&out);
    let pid = lab.spawn(
        "cam1",
        &[
            "python3",
            &udp_py(),
            "listen",
            &port.to_string(),
            "15",
            "--open",
            &format!("{TERMINAL}:5000"),
            "--out",
            &out,
            "--until",
            "same-endpoint",
        ],
    );
    // Wait until the opener has gone out (the listener writes "ready" right after it).
    for _ in 0..500 {
        if std::fs::read_to_string(&out)
            .map(|s| s.starts_with("ready"))
            .unwrap_or(false)
        {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(100));
    let wan = lab.wan_addr();
    lab.sh(
        "inet",
        &format!(
            "python3 {} send {TERMINAL2} 5000 {wan} {port} other-address {TERMINAL} 5001 other-port {TERMINAL} 5000 same-endpoint",
            udp_py()
        ),
    );
    // The listener exits when the last probe arrives; a filtered last probe means waiting 15 s.
    for _ in 0..160 {
        if !std::path::Path::new(&format!("/proc/{pid}")).exists()
            || std::fs::read_to_string(&out)
                .unwrap_or_default()
                .contains("same-endpoint")
        {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let seen = std::fs::read_to_string(&out).unwrap_or_default();
    let _ = std::fs::remove_file(&out);
    [
        seen.contains("other-address"),
        seen.contains("other-port"),
        seen.contains("same-endpoint"),
    ]
}

#[test]
fn each_filtering_behaviour_shows_from_the_internet() {
    if !require_root() {
        return;
    }
    let lab = Lab::up(&ours(1)).expect("lab up");
    // (preset, [other address, other port, same endpoint]) per RFC 4787 section 5.
    for (i, (preset, expected)) in [
        ("fullcone", [true, true, true]),
        ("restricted", [false, true, true]),
        ("port-restricted", [false, false, true]),
        ("home", [false, false, true]),
    ]
    .into_iter()
    .enumerate()
    {
        api_post(&lab, "/api/preset", preset);
        api_post(&lab, "/api/flush", "");
        let got = probes_reaching_cam1(&lab, 41000 + i as u16);
        assert_eq!(
            got, expected,
            "preset {preset}: [other address, other port, same endpoint]"
        );
    }
}

/// The external ports the two terminals see for one LAN socket sending to both.
fn ports_seen_by_two_terminals(lab: &Lab, sport: u16) -> (String, String) {
    // Resends until the echo answers (it may still be starting on a loaded machine).
    let script = format!(
        "import socket\n\
         s=socket.socket(socket.AF_INET,socket.SOCK_DGRAM); s.bind(('0.0.0.0',{sport})); s.settimeout(0.5)\n\
         out=[]\n\
         for dst in ('{TERMINAL}','{TERMINAL2}'):\n\
         \x20   for i in range(20):\n\
         \x20       s.sendto(b'm',(dst,7000))\n\
         \x20       try: out.append(s.recvfrom(2048)[0].decode().split()[-1]); break\n\
         \x20       except socket.timeout: pass\n\
         print(' '.join(out))\n"
    );
    let out = lab.sh("cam1", &format!("python3 -c \"{script}\""));
    let mut it = out.split_whitespace().map(str::to_string);
    (it.next().unwrap_or_default(), it.next().unwrap_or_default())
}

#[test]
fn mapping_behaviour_endpoint_independent_vs_symmetric() {
    if !require_root() {
        return;
    }
    let lab = Lab::up(&ours(1)).expect("lab up");
    lab.spawn("inet", &["python3", &udp_py(), "echo", TERMINAL, "7000"]);
    lab.spawn("inet", &["python3", &udp_py(), "echo", TERMINAL2, "7000"]);
    std::thread::sleep(Duration::from_millis(300));
    let wan = lab.wan_addr();

    let (a, b) = ports_seen_by_two_terminals(&lab, 42000);
    assert_eq!(a, format!("{wan}:42000"), "home: port preserved");
    assert_eq!(
        a, b,
        "home (endpoint-independent mapping): both terminals see one mapping"
    );

    api_post(&lab, "/api/preset", "symmetric");
    api_post(&lab, "/api/flush", "");
    let (a, b) = ports_seen_by_two_terminals(&lab, 42001);
    assert_ne!(a, b, "symmetric: one mapping per destination");
    assert!(a.starts_with(&format!("{wan}:")) && b.starts_with(&format!("{wan}:")));
}

#[test]
fn idle_udp_session_expires_and_closes_the_mapping() {
    if !require_root() {
        return;
    }
    let lab = Lab::up(&ours(1)).expect("lab up");
    api_post(&lab, "/api/preset", "fullcone");
    api_post(&lab, "/api/behaviour", r#"{"timeouts":{"udp":2}}"#);
    let before = api_get(&lab, "/metrics");
    let expired_before = metric(&before, "router_sessions_expired_total");

    // Open a mapping, and see the session listed.
    let got = probes_reaching_cam1(&lab, 43000);
    assert_eq!(
        got,
        [true, true, true],
        "fullcone lets every probe in while the mapping lives"
    );
    // Idle for longer than the 2 s timeout since the last probe.
    std::thread::sleep(Duration::from_millis(3500));
    let sessions = api_get(&lab, "/api/sessions");
    assert!(
        !sessions.contains(":43000"),
        "the idle session is gone: {sessions}"
    );
    let after = api_get(&lab, "/metrics");
    assert!(
        metric(&after, "router_sessions_expired_total") > expired_before,
        "expiry counted"
    );

    // Now a probe from the internet to the old mapping is dropped.
    let out = format!("/tmp/{}-late", lab.prefix);
    lab.spawn(
        "cam1",
        &["python3", &udp_py(), "listen", "43000", "4", "--out", &out],
    );
    for _ in 0..500 {
        if std::fs::read_to_string(&out).is_ok_and(|s| s.starts_with("ready")) {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let wan = lab.wan_addr();
    lab.sh(
        "inet",
        &format!(
            "python3 {} send {TERMINAL} 5000 {wan} 43000 too-late",
            udp_py()
        ),
    );
    std::thread::sleep(Duration::from_millis(4200));
    let seen = std::fs::read_to_string(&out).unwrap_or_default();
    let _ = std::fs::remove_file(&out);
    assert!(
        !seen.contains("too-late"),
        "an expired mapping let a packet in: {seen}"
    );
}

fn metric(text: &str, name: &str) -> u64 {
    text.lines()
        .find(|l| l.starts_with(name) && !l.starts_with('#'))
        .and_then(|l| l.split_whitespace().last())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("metric {name} missing in:\n{text}"))
}

#[test]
fn control_api_is_lan_only_and_wan_change_takes_effect() {
    if !require_root() {
        return;
    }
    let lab = Lab::up(&ours(1).forward("tcp:8080=cam1:8080")).expect("lab up");
    let wan = lab.wan_addr();
    assert!(api_get(&lab, "/api/status").contains(&wan.to_string()));
    // From the internet: neither the WAN address nor (with a hostile route) the LAN address.
    let (ok, _) = lab.try_sh("inet", &format!("curl -sS -m 2 http://{wan}/api/status"));
    assert!(!ok, "control API reachable on the WAN address");
    lab.sh("inet", &format!("ip route add 192.168.1.0/24 via {wan}"));
    let (ok, _) = lab.try_sh("inet", "curl -sS -m 2 http://192.168.1.1/api/status");
    assert!(
        !ok,
        "control API reachable from the internet through a route to the LAN"
    );

    // The ISP reassigns the WAN address: the forward follows.
    let cam1 = lab.addr("cam1").to_string();
    lab.http_server("cam1", &cam1, 8080, "/etc/iproute2");
    api_post(&lab, "/api/wan", "203.0.113.7/24");
    let code = lab.sh(
        "inet",
        "curl -sS -m 5 -o /dev/null -w '%{http_code}' http://203.0.113.7:8080/",
    );
    assert_eq!(
        code.trim(),
        "200",
        "the forward works on the new WAN address"
    );
    let (ok, _) = lab.try_sh(
        "inet",
        &format!("curl -sS -m 2 -o /dev/null http://{wan}:8080/"),
    );
    assert!(!ok, "the old WAN address still answers");
}

#[test]
fn router_leaves_its_namespace_as_it_found_it() {
    if !require_root() {
        return;
    }
    let lab = Lab::up(&ours(1)).expect("lab up");
    let with_router = lab.sh("rtr", "ip rule");
    assert!(
        with_router.contains("lookup 100"),
        "the recipe is installed:\n{with_router}"
    );
    // The router's own pid, as the lab recorded it (the PID namespace is shared with other labs).
    let pid = lab.router_pid().expect("the lab recorded the router's pid");
    lab.sh("rtr", &format!("kill -TERM {pid}; for i in $(seq 50); do kill -0 {pid} 2>/dev/null || exit 0; sleep 0.1; done; exit 1"));
    let rules = lab.sh("rtr", "ip rule");
    assert_eq!(
        rules
            .lines()
            .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
            .collect::<Vec<_>>(),
        vec![
            "0: from all lookup local",
            "32766: from all lookup main",
            "32767: from all lookup default"
        ],
        "ip rule is back to the kernel's defaults"
    );
    assert_eq!(
        lab.sh("rtr", "ip route show table 100").trim(),
        "",
        "table 100 is empty"
    );
    let (tun_exists, _) = lab.try_sh("rtr", "ip link show tun0");
    assert!(!tun_exists, "tun0 is gone");
}
