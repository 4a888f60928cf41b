//! The relay in the lab (issue 12, seeds 003 and 004): cameras behind a carrier-grade NAT or a
//! router with UPnP off, reachable from the internet only through the relay.
//!
//! First the lab's own promises (the topology every relay test stands on): the carrier NAT
//! really translates the homes' 100.64/10 addresses to the ISP's one public address and lets
//! nothing in, homes are isolated from each other, the relays are reachable, UPnP off means no
//! IGD and no NAT-PMP, and `down` removes it all.

use std::time::{Duration, Instant};

use tests::{Lab, LabOptions, RouterKind, require_root};

#[path = "relay/support.rs"]
mod support;
use support::*;

const TERMINAL: &str = "198.51.100.10";
const ISP_PUBLIC: &str = "203.0.113.2";

/// The address a TCP connection from `node` to the terminal arrives from, as the terminal sees
/// it (a one-shot listener in the internet namespace).
fn source_seen_by_terminal(lab: &Lab, node: &str, port: u16) -> String {
    let listener = format!(
        "import socket; s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); \
         s.bind(('{TERMINAL}', {port})); s.listen(); s.settimeout(10); c, a = s.accept(); print(a[0])"
    );
    let inet = lab.ns("inet");
    let child = std::process::Command::new("ip")
        .args(["netns", "exec", &inet, "python3", "-c", &listener])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("listener starts");
    lab.wait_tcp(node, TERMINAL, port);
    let out = child.wait_with_output().expect("listener ends");
    // wait_tcp's probe was the connection the listener accepted.
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

#[test]
fn topology_carrier_nat_homes_relays_and_down() {
    if !require_root() {
        return;
    }
    let lab = relay_lab(
        LabOptions::new(RouterKind::Ours)
            .cams(1)
            .carrier_nat()
            .homes(2)
            .upnp_off()
            .relays(2),
    );

    // Each home router's WAN is in the shared address space (RFC 6598), on its own access link.
    assert_eq!(lab.wan_addr().to_string(), "100.64.1.2");
    let h2_wan = lab.sh(
        "h2-rtr",
        "ip -4 -o addr show dev wan0 | awk '{print $4}' | cut -d/ -f1",
    );
    assert_eq!(h2_wan.trim(), "100.64.2.2");

    // Both homes reach the internet, which sees the ISP's public address for both.
    assert_eq!(source_seen_by_terminal(&lab, "cam1", 9001), ISP_PUBLIC);
    assert_eq!(source_seen_by_terminal(&lab, "h2-cam1", 9002), ISP_PUBLIC);

    // Nothing gets in from the internet: a server on cam1 is unreachable at the public address
    // and at the home router's own address.
    lab.spawn(
        "cam1",
        &[
            "python3",
            "-m",
            "http.server",
            "8080",
            "--directory",
            "/etc",
        ],
    );
    lab.wait_tcp("viewer", "192.168.1.101", 8080);
    for target in [ISP_PUBLIC, "100.64.1.2"] {
        let (ok, out) = lab.try_sh(
            "inet",
            &format!("curl -sS -m 2 -o /dev/null http://{target}:8080/"),
        );
        assert!(!ok, "the internet reached {target}:8080: {out}");
    }

    // Homes are isolated: home 2's viewer asking for 192.168.1.101 reaches its own camera
    // (same LAN addresses in every home), never home 1's.
    lab.spawn(
        "h2-cam1",
        &[
            "python3",
            "-m",
            "http.server",
            "8080",
            "--directory",
            "/proc/self",
        ],
    );
    lab.wait_tcp("h2-viewer", "192.168.1.101", 8080);
    let listing = lab.sh("h2-viewer", "curl -sS -m 3 http://192.168.1.101:8080/");
    assert!(
        listing.contains("cmdline") && !listing.contains("hostname"),
        "home 2's viewer got home 2's camera: {listing}"
    );

    // The relays answer at 198.51.100.20 and .21, from the internet, from both homes, and from
    // each other.
    for (node, relay) in [
        ("inet", 1),
        ("inet", 2),
        ("cam1", 1),
        ("h2-cam1", 2),
        ("relay1", 2),
        ("relay2", 1),
    ] {
        let addr = Lab::relay_addr(relay);
        lab.sh(
            node,
            &format!("curl -sSf -m 3 -o /dev/null http://{addr}/status.json"),
        );
    }

    // UPnP off: no IGD answers discovery, no NAT-PMP answers on the gateway.
    let (ok, out) = lab.try_sh("viewer", "upnpc -i -s");
    assert!(
        !ok || !out.contains("ExternalIPAddress"),
        "an IGD answered with UPnP off: {out}"
    );
    let (_, out) = lab.try_sh("viewer", "timeout 5 natpmpc -g 192.168.1.1");
    assert!(
        !out.contains("Public IP address"),
        "NAT-PMP answered with UPnP off: {out}"
    );

    // `down` removes every namespace, the state (certificates, secrets, logs) and the
    // namespaces' /etc/netns files; no relay or router process is left.
    let prefix = lab.prefix.clone();
    let state = lab.state_dir();
    drop(lab);
    assert_eq!(tests::namespaces_with_prefix(&prefix), Vec::<String>::new());
    assert!(!state.exists(), "{} left", state.display());
    let etc: Vec<String> = std::fs::read_dir("/etc/netns")
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.starts_with(&format!("{prefix}-")))
                .collect()
        })
        .unwrap_or_default();
    assert!(etc.is_empty(), "/etc/netns entries left: {etc:?}");
    let ps = std::process::Command::new("ps")
        .args(["-eo", "args"])
        .output()
        .expect("ps");
    let ps = String::from_utf8_lossy(&ps.stdout);
    assert!(
        !ps.lines().any(|l| l.contains(&format!("/{prefix}/"))),
        "processes of the lab left:\n{ps}"
    );
}

/// Behind a carrier-grade NAT, three cameras: reachable from the internet only through the
/// relay; a viewer at home goes to the LAN; a viewer in a second home behind the same carrier
/// NAT is relayed (the camera reports its router's 100.64 address, so the relay knows the
/// public address is shared, and home 2's flows leave from another port block of the CGN);
/// a camera switched off is refused at once as offline; a restarted relay has every camera back
/// within one keep-alive interval.
#[test]
fn carrier_nat_cameras_through_the_relay() {
    if !require_root() {
        return;
    }
    let lab = relay_lab(
        LabOptions::new(RouterKind::Ours)
            .cams(3)
            .carrier_nat()
            .homes(2)
            .relays(1)
            .arg("--relay-period")
            .arg("12"),
    );
    // Home 2 runs one camera, for the same-network question.
    let keepalive = 5;
    let ka = keepalive.to_string();
    let extra = ["--relay-keepalive-seconds", &ka, "--fps", "10"];
    let cams = start_cams(&lab, &["cam1", "cam2", "cam3", "h2-cam1"], &extra);
    let (home1, home2) = cams.split_at(3);
    wait_online(
        &lab,
        &cams.iter().collect::<Vec<_>>(),
        Duration::from_secs(40),
    );

    internet_sees_cameras_only_through_relay(&lab, home1, ISP_PUBLIC);
    representative_lists_the_others_through_relay(&lab, home1);
    same_home_viewer_goes_to_the_lan(&lab, &home1[1], "viewer");

    // Home 2's viewer shares the public address but not the home: relayed, bytes counted.
    let before = relayed_bytes(&relay_status(&lab), &home1[1].id);
    let (code, page, _) = get(&lab, "h2-viewer", &site(&home1[1].id));
    assert_eq!(code, 200, "home 2's viewer is relayed, not redirected");
    assert!(String::from_utf8_lossy(&page).contains("<html"));
    assert!(relayed_bytes(&relay_status(&lab), &home1[1].id) > before);
    // Seed 004's question as an API: one bit.
    let same = |a: &Cam, b: &Cam| {
        let out = lab.sh(
            "inet",
            &format!(
                "curl -sS -m 3 'http://{RELAY}/api/same-network?a={}&b={}'",
                a.id, b.id
            ),
        );
        let v: serde_json::Value = serde_json::from_str(&out).expect("json");
        assert!(
            !out.contains("203.0.113") && !out.contains("192.168"),
            "{out}"
        );
        v["same"].clone()
    };
    assert_eq!(same(&home1[0], &home1[1]), true);
    assert_eq!(same(&home1[0], &home2[0]), false);

    // cam3 switched off: once the period (12 s) passes, the relay refuses it at once, saying
    // since when.
    let _ = std::process::Command::new("kill")
        .args(["-KILL", &home1[2].pid.to_string()])
        .status();
    let off = Instant::now();
    let refusal = wait_until(Duration::from_secs(20), || {
        let t = Instant::now();
        let (code, body, _) = get(&lab, "inet", &site(&home1[2].id));
        (code == 503).then(|| (String::from_utf8_lossy(&body).into_owned(), t.elapsed()))
    })
    .unwrap_or_else(|| panic!("cam3 never refused as offline\n{}", logs(&lab)));
    assert!(
        off.elapsed() >= Duration::from_secs(8),
        "offline only after the period"
    );
    assert!(
        refusal.0.contains("offline") && refusal.0.contains("Last heard"),
        "a clear refusal: {}",
        refusal.0
    );
    assert!(
        refusal.1 < Duration::from_secs(1),
        "refused at once, not after a connection attempt: {:?}",
        refusal.1
    );

    // The relay restarted: every running camera is back within one keep-alive interval.
    let dir = lab.state_dir();
    let pid = std::fs::read_to_string(dir.join("relay1.pid")).expect("relay1.pid");
    let cmdline = std::fs::read_to_string(dir.join("relay1.cmdline")).expect("relay1.cmdline");
    lab.sh(
        "inet",
        &format!(
            "kill -TERM {pid}; for i in $(seq 50); do kill -0 {pid} 2>/dev/null || exit 0; sleep 0.1; done; exit 1",
            pid = pid.trim()
        ),
    );
    let argv: Vec<&str> = cmdline.split_whitespace().collect();
    lab.spawn_logged("relay1", &argv, &dir.join("relay1.log"));
    let up = wait_until(Duration::from_secs(10), || {
        lab.try_sh(
            "inet",
            &format!("curl -sf -m 1 -o /dev/null http://{RELAY}/status.json"),
        )
        .0
        .then_some(())
    });
    assert!(up.is_some(), "the relay restarted\n{}", logs(&lab));
    let running: Vec<&Cam> = cams.iter().filter(|c| c.node != "cam3").collect();
    let took = wait_online(&lab, &running, Duration::from_secs(30));
    eprintln!("relay restarted: every camera back in {took:?} (keep-alive {keepalive} s)");
    assert!(
        took <= Duration::from_millis(keepalive * 1000 + 1000),
        "every camera back within one keep-alive interval ({keepalive} s): {took:?}"
    );
    let (code, _, _) = get(&lab, "inet", &format!("{}snapshot.jpg", site(&home1[0].id)));
    assert_eq!(code, 200, "and reachable again");
}

/// Behind a router with UPnP off (no IGD, NAT-PMP or PCP), three cameras: reachable from the
/// internet only through the relay; a viewer at home goes to the LAN.
#[test]
fn upnp_off_cameras_through_the_relay() {
    if !require_root() {
        return;
    }
    let (lab, cams) = upnp_off_three_cameras();
    internet_sees_cameras_only_through_relay(&lab, &cams, &lab.wan_addr().to_string());
    same_home_viewer_goes_to_the_lan(&lab, &cams[0], "viewer");
    // Viewers over HTTPS: the relay's certificate verifies against the lab's CA for its address.
    let ca = lab.state_dir().join("relay/ca.pem");
    let snap = lab.sh(
        "inet",
        &format!(
            "curl -sS -m 10 --cacert {} https://{RELAY}/d/{}/snapshot.jpg | head -c 2 | od -An -tx1",
            ca.display(),
            cams[1].id
        ),
    );
    assert_eq!(snap.trim(), "ff d8", "a JPEG over HTTPS through the relay");
}

/// Two homes behind one carrier NAT, both routers with UPnP off: the cameras cannot report
/// their router's address, so the relay knows the public address is shared only from its
/// configuration (the ISP's prefix, `same_network_shared_prefixes`), and tells homes apart by
/// the CGN's port block. Home 1's viewer is sent to the LAN, home 2's is relayed.
#[test]
fn carrier_nat_and_upnp_off_homes_stay_apart() {
    if !require_root() {
        return;
    }
    let lab = relay_lab(
        LabOptions::new(RouterKind::Ours)
            .cams(1)
            .carrier_nat()
            .upnp_off()
            .homes(2)
            .relays(1),
    );
    let cams = start_cams(&lab, &["cam1", "h2-cam1"], &[]);
    wait_online(
        &lab,
        &cams.iter().collect::<Vec<_>>(),
        Duration::from_secs(40),
    );
    same_home_viewer_goes_to_the_lan(&lab, &cams[0], "viewer");
    same_home_viewer_goes_to_the_lan(&lab, &cams[1], "h2-viewer");
    for (viewer, cam) in [("h2-viewer", &cams[0]), ("viewer", &cams[1])] {
        let (code, page, _) = get(&lab, viewer, &site(&cam.id));
        assert_eq!(
            code, 200,
            "{viewer} is relayed to {}, not redirected",
            cam.node
        );
        assert!(String::from_utf8_lossy(&page).contains("<html"));
    }
}

/// Behind a router with UPnP off, the representative's page through the relay lists the other
/// cameras with relay links.
#[test]
fn upnp_off_representative_lists_the_others_through_the_relay() {
    if !require_root() {
        return;
    }
    let (lab, cams) = upnp_off_three_cameras();
    representative_lists_the_others_through_relay(&lab, &cams);
}

/// A lab whose router has UPnP off, a relay, three cameras online at it.
fn upnp_off_three_cameras() -> (Lab, Vec<Cam>) {
    let lab = relay_lab(
        LabOptions::new(RouterKind::Ours)
            .cams(3)
            .upnp_off()
            .relays(1),
    );
    let cams = start_cams(&lab, &["cam1", "cam2", "cam3"], &[]);
    wait_online(
        &lab,
        &cams.iter().collect::<Vec<_>>(),
        Duration::from_secs(40),
    );
    (lab, cams)
}

/// With 10 % loss each way on the home's WAN link (behind the carrier NAT), the camera is still
/// reached through the relay: registration, connection requests (resent) and back-connections
/// (TCP retransmits) all get through, request after request.
#[test]
fn lossy_wan_camera_still_reached_through_the_relay() {
    if !require_root() {
        return;
    }
    let lab = relay_lab(
        LabOptions::new(RouterKind::Ours)
            .cams(1)
            .carrier_nat()
            .relays(1)
            .arg("--loss")
            .arg("10"),
    );
    let cams = start_cams(&lab, &["cam1"], &[]);
    wait_online(&lab, &[&cams[0]], Duration::from_secs(60));
    for i in 0..6 {
        let path = if i % 2 == 0 { "" } else { "snapshot.jpg" };
        let (code, body, _) = get(&lab, "inet", &format!("{}{path}", site(&cams[0].id)));
        assert!(
            code == 200 && !body.is_empty(),
            "request {i} ({path:?}) through the relay over a lossy WAN: {code}\n{}",
            logs(&lab)
        );
    }
}

/// A relay configured, but the router forwards a port (UPnP on, a public WAN address): in auto
/// mode the camera keeps the direct forward and never registers with the relay.
#[test]
fn auto_keeps_a_working_direct_forward() {
    if !require_root() {
        return;
    }
    let lab = relay_lab(LabOptions::new(RouterKind::Ours).cams(1).relays(1));
    let cams = start_cams(&lab, &["cam1"], &[]);
    let wan = lab.wan_addr();
    let direct = wait_until(Duration::from_secs(30), || {
        let (code, body, _) = get(&lab, "inet", &format!("http://{wan}:8080/status.json"));
        (code == 200).then(|| serde_json::from_slice::<serde_json::Value>(&body).ok())?
    })
    .unwrap_or_else(|| {
        panic!(
            "the camera is reachable through the forward\n{}",
            logs(&lab)
        )
    });
    assert_ne!(
        direct["reachability"]["state"], "relay",
        "direct, not via relay: {direct}"
    );
    // Long enough for a registration to have happened if the camera wanted one.
    std::thread::sleep(Duration::from_secs(5));
    let status = relay_status(&lab);
    assert!(
        !online(&status, &cams[0].id),
        "the camera registered with the relay beside a working forward: {status}"
    );
    let (code, _, _) = get(&lab, "inet", &site(&cams[0].id));
    assert_ne!(
        code, 200,
        "the relay does not serve a camera that did not register"
    );
}

/// `lab demo --carrier-nat` as a stakeholder sees it, in a real browser through the demo's
/// 127.0.0.1 proxies: from the internet, the seed's `connect.cgi?ID=` reaches the camera's page
/// through the relay, which lists the other cameras with relay links; another camera's page
/// through the relay shows a moving picture; from the home's LAN the same address lands on the
/// camera's LAN address. Screenshots go to `target/artifacts/`.
#[test]
fn demo_carrier_nat_in_a_real_browser() {
    if !require_root() {
        return;
    }
    let proxy = 20000 + (std::process::id() % 20000) as u16 + 2;
    let relay_bin = workspace_bin("RELAY_BIN", "relay");
    let camnode_bin = workspace_bin("CAMNODE_BIN", "camnode");
    let lab = Lab::demo_with(
        3,
        proxy,
        &["--carrier-nat"],
        &[("RELAY_BIN", &relay_bin), ("CAMNODE_BIN", &camnode_bin)],
    )
    .expect("lab demo --carrier-nat");
    let devices = std::fs::read_to_string(lab.state_dir().join("relay/devices")).expect("devices");
    let id_of = |node: &str| {
        devices
            .lines()
            .find(|l| l.starts_with(&format!("{node} ")))
            .and_then(|l| l.split(' ').nth(1))
            .expect("the camera's id")
            .to_string()
    };
    let shots = tests::repo_root().join("target/artifacts");
    std::fs::create_dir_all(&shots).expect("artifacts dir");
    let profile = format!("/tmp/{}-chromium", lab.prefix);
    // The election and the page's list settle within seconds of the demo's start.
    let ids: Vec<String> = ["cam1", "cam2", "cam3"].iter().map(|n| id_of(n)).collect();
    let rep = wait_until(Duration::from_secs(20), || {
        ids.iter().find(|id| {
            let (_, body, _) = get(&lab, "inet", &format!("{}status.json", site(id)));
            serde_json::from_slice::<serde_json::Value>(&body).is_ok_and(|s| {
                s["role"] == "representative" && s["peers"].as_array().map_or(0, Vec::len) == 2
            })
        })
    })
    .expect("a representative listing the two others")
    .clone();

    let connect = format!("http://{RELAY}/connect.cgi?ID={rep}");
    let dom = tests::chromium(proxy, &profile, &["--dump-dom", &connect]);
    for id in ids.iter().filter(|id| **id != rep) {
        assert!(
            dom.contains(&format!("/d/{id}/")),
            "the representative's page through the relay links {id}:\n{dom}"
        );
    }
    let rep_png = shots.join("demo-cgn-representative.png");
    tests::chromium(
        proxy,
        &profile,
        &[&format!("--screenshot={}", rep_png.display()), &connect],
    );
    assert!(
        std::fs::metadata(&rep_png).is_ok_and(|m| m.len() > 10_000),
        "screenshot written"
    );

    // Another camera through the relay, twice: the picture moves.
    let other = ids.iter().find(|id| **id != rep).expect("another camera");
    let (a, b) = (
        shots.join("demo-cgn-other-1.png"),
        shots.join("demo-cgn-other-2.png"),
    );
    for shot in [&a, &b] {
        tests::chromium(
            proxy,
            &profile,
            &[&format!("--screenshot={}", shot.display()), &site(other)],
        );
        std::thread::sleep(Duration::from_millis(1500));
    }
    let (pa, pb) = (std::fs::read(&a).unwrap(), std::fs::read(&b).unwrap());
    assert!(pa.len() > 10_000 && pb.len() > 10_000, "real pages");
    assert_ne!(pa, pb, "the picture through the relay moves");

    // From the home's LAN the relay sends the browser to the camera's LAN address.
    let dom = tests::chromium(proxy + 1, &profile, &["--dump-dom", &connect]);
    assert!(
        dom.contains("http://192.168.1."),
        "the LAN view of the representative links LAN addresses:\n{dom}"
    );
    let _ = std::fs::remove_dir_all(&profile);
}

/// Behind a home router whose UDP mappings expire after 30 s idle (our router's
/// `--udp-timeout 30`, UPnP off), a camera left alone for over two timeouts is still reached at
/// once: its keep-alives (every 15 s by default) hold the binding the relay's connection
/// requests come in through. Without them the request would be dropped at the router until the
/// camera's next datagram, and the viewer would wait or get the relay's 504.
#[test]
fn keepalives_hold_a_30_s_nat_binding_while_idle() {
    if !require_root() {
        return;
    }
    let lab = relay_lab(
        LabOptions::new(RouterKind::Ours)
            .cams(1)
            .upnp_off()
            .relays(1)
            .router_args("--udp-timeout 30"),
    );
    let cams = start_cams(&lab, &["cam1"], &[]);
    wait_online(&lab, &[&cams[0]], Duration::from_secs(40));
    for idle in [65, 20] {
        std::thread::sleep(Duration::from_secs(idle));
        let start = Instant::now();
        let (code, body, _) = get(&lab, "inet", &format!("{}snapshot.jpg", site(&cams[0].id)));
        let took = start.elapsed();
        assert!(
            code == 200 && body.starts_with(b"\xff\xd8"),
            "after {idle} s idle: {code}\n{}",
            logs(&lab)
        );
        assert!(
            took < Duration::from_secs(3),
            "after {idle} s idle the snapshot took {took:?}: the binding was gone"
        );
    }
}

/// An attacker on the internet replays a real connection request (captured on the way to the
/// carrier NAT) and forges one (no secret: a made-up MAC), both sent from the relay's address
/// and port to the camera's NAT binding, the only source the NAT lets in. The camera drops and
/// counts both, and opens no back-connection: the relay sees no new hello of any kind.
#[test]
fn forged_and_replayed_connection_requests_are_ignored() {
    if !require_root() {
        return;
    }
    let lab = relay_lab(
        LabOptions::new(RouterKind::Ours)
            .cams(1)
            .carrier_nat()
            .relays(1),
    );
    let cams = start_cams(&lab, &["cam1"], &[]);
    let cam = &cams[0];
    wait_online(&lab, &[cam], Duration::from_secs(40));
    let script = tests::repo_root().join("tests/scripts/relay_attack.py");
    let script = script.display().to_string();

    // Capture a real connection request on the internet side of the carrier NAT.
    let inet = lab.ns("inet");
    let mut capture = std::process::Command::new("ip")
        .args([
            "netns", "exec", &inet, "python3", &script, "capture", "isp0", "20",
        ])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("capture starts");
    let mut out = std::io::BufReader::new(capture.stdout.take().expect("stdout"));
    let mut line = String::new();
    std::io::BufRead::read_line(&mut out, &mut line).expect("capture ready");
    assert_eq!(line.trim(), "ready");
    let (code, _, _) = get(&lab, "inet", &format!("{}snapshot.jpg", site(&cam.id)));
    assert_eq!(code, 200, "the camera answers through the relay");
    let mut captured = String::new();
    std::io::Read::read_to_string(&mut out, &mut captured).expect("capture output");
    let _ = capture.wait();
    let captured = captured.trim().to_string();
    let fields: Vec<&str> = captured.split(' ').collect();
    assert_eq!(
        fields.len(),
        5,
        "a connection request captured: {captured:?}"
    );
    let (src, sport, dst, dport, request) = (fields[0], fields[1], fields[2], fields[3], fields[4]);
    assert_eq!(
        (src, dst),
        (RELAY, ISP_PUBLIC),
        "relay -> the NAT's binding"
    );
    std::thread::sleep(Duration::from_secs(1));
    let before = back_connection_counters(&lab);
    let camlog = lab.state_dir().join("camnode-cam1.log");

    // The camera logs its drop totals at once, then at most every 10 s (a flood cannot flood
    // the log): the forgery first, the replay after 10 s, each seen in its own line.
    let dropped = |key: &str| {
        wait_until(Duration::from_secs(15), || {
            let text = std::fs::read_to_string(&camlog).unwrap_or_default();
            let line = strip_ansi(
                text.lines()
                    .rfind(|l| l.contains("relay datagrams dropped"))?,
            );
            let n: u64 = line
                .split(&format!(" {key}="))
                .nth(1)?
                .split(' ')
                .next()?
                .parse()
                .ok()?;
            (n >= 1).then_some(line)
        })
        .unwrap_or_else(|| panic!("the camera counted no {key} request\n{}", logs(&lab)))
    };
    // Forged: a fresh session and nonce, a MAC made without the secret.
    let forged = lab.sh("inet", &format!("python3 {script} forge {}", cam.id));
    let send = |payload: &str| {
        lab.sh(
            "inet",
            &format!("python3 {script} send {src} {sport} {dst} {dport} {payload}"),
        );
    };
    send(forged.trim());
    dropped("forged");
    std::thread::sleep(Duration::from_secs(10));
    // Replayed: the captured request's bytes again.
    send(request);
    dropped("replayed");
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(
        back_connection_counters(&lab),
        before,
        "no back-connection came from the forged or replayed requests"
    );
    // The camera still answers real viewers.
    let (code, _, _) = get(&lab, "inet", &site(&cam.id));
    assert_eq!(code, 200);
}

/// Two relays configured (`--relays 2`: each camera gets both, best first): the camera registers
/// with the first only; when that one stops, the camera moves to the second within a refresh
/// interval plus its retries and is reached there.
#[test]
fn camera_fails_over_to_the_second_relay() {
    if !require_root() {
        return;
    }
    let lab = relay_lab(
        LabOptions::new(RouterKind::Ours)
            .cams(1)
            .carrier_nat()
            .relays(2)
            .arg("--relay-period")
            .arg("12"),
    );
    let cams = start_cams(&lab, &["cam1"], &[]);
    let cam = &cams[0];
    wait_online(&lab, &[cam], Duration::from_secs(40));
    let second = Lab::relay_addr(2).to_string();
    let at_second = |lab: &Lab| relay_status_at(lab, &second).is_some_and(|s| online(&s, &cam.id));
    assert!(!at_second(&lab), "registered with the first relay only");

    let pid = std::fs::read_to_string(lab.state_dir().join("relay1.pid")).expect("relay1.pid");
    lab.sh("relay1", &format!("kill -TERM {}", pid.trim()));
    let moved = wait_until(Duration::from_secs(40), || at_second(&lab).then_some(()));
    assert!(
        moved.is_some(),
        "the camera moved to the second relay\n{}",
        logs(&lab)
    );
    let (code, snap, _) = get(
        &lab,
        "inet",
        &format!("http://{second}/d/{}/snapshot.jpg", cam.id),
    );
    assert!(
        code == 200 && snap.starts_with(b"\xff\xd8"),
        "reached through the second relay: {code}"
    );
}
