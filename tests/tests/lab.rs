//! The lab itself (issue 2): kernel NAT and miniupnpd routers carry traffic both ways, labs
//! coexist, and a failing test leaves no namespace behind.

use std::process::Command;
use std::time::Duration;

use tests::{Lab, LabOptions, RouterKind, lab_script, namespaces_with_prefix, require_root};

const TERMINAL: &str = "198.51.100.10";

/// A file with known content served by the terminal; returns its sha256.
fn serve_file_on_terminal(lab: &Lab, size_kib: u32) -> String {
    let dir = format!("/tmp/{}-www", lab.prefix);
    let sum = lab.sh(
        "inet",
        &format!(
            "mkdir -p {dir} && head -c {}K /dev/urandom > {dir}/blob && sha256sum {dir}/blob | cut -d' ' -f1",
            size_kib
        ),
    );
    lab.http_server("inet", TERMINAL, 8000, &dir);
    sum.trim().to_string()
}

fn lan_host_downloads_from_terminal(router: RouterKind) {
    if !require_root() {
        return;
    }
    let lab = Lab::up(&LabOptions::new(router).cams(1)).expect("lab up");
    let sum = serve_file_on_terminal(&lab, 512);
    let got = lab.sh(
        "cam1",
        &format!("curl -sS -m 10 http://{TERMINAL}:8000/blob | sha256sum | cut -d' ' -f1"),
    );
    assert_eq!(got.trim(), sum, "the download through the NAT is intact");
    // The terminal saw the router's WAN address, not the LAN address (it was translated).
    let wan = lab.wan_addr().to_string();
    let seen = lab.sh(
        "cam1",
        &format!("curl -sS -m 5 -o /dev/null -w '%{{local_ip}}' http://{TERMINAL}:8000/blob"),
    );
    assert!(
        seen.starts_with("192.168.1."),
        "cam1 used its LAN address: {seen}"
    );
    let conns = lab.sh(
        "inet",
        &format!("ss -tn state time-wait '( sport = :8000 )' | grep -c {wan} || true"),
    );
    assert!(
        conns.trim().parse::<u32>().unwrap_or(0) >= 1,
        "the terminal saw connections from {wan}"
    );
    lab.sh("inet", &format!("rm -rf /tmp/{}-www", lab.prefix));
}

#[test]
fn kernel_lan_host_reaches_http_server_on_terminal() {
    lan_host_downloads_from_terminal(RouterKind::Kernel);
}

#[test]
fn miniupnpd_lan_host_reaches_http_server_on_terminal() {
    lan_host_downloads_from_terminal(RouterKind::Miniupnpd);
}

#[test]
fn kernel_terminal_reaches_cam1_through_static_forward() {
    if !require_root() {
        return;
    }
    let lab = Lab::up(
        &LabOptions::new(RouterKind::Kernel)
            .cams(2)
            .forward("tcp:8080=cam1:8080"),
    )
    .expect("lab up");
    let cam1 = lab.addr("cam1").to_string();
    lab.sh(
        "cam1",
        "mkdir -p /tmp/cam1-www-$$ && echo 'hello from cam1' > /tmp/cam1-www-$$/index.html",
    );
    lab.spawn(
        "cam1",
        &[
            "bash",
            "-c",
            "cd $(ls -d /tmp/cam1-www-* | head -1) && exec python3 -m http.server 8080",
        ],
    );
    lab.wait_tcp("cam1", &cam1, 8080);
    let wan = lab.wan_addr();
    let body = lab.sh("inet", &format!("curl -sS -m 5 http://{wan}:8080/"));
    assert_eq!(body.trim(), "hello from cam1");
    // Only the forward is open: another port on the WAN address is not.
    let (ok, _) = lab.try_sh("inet", &format!("curl -sS -m 2 http://{wan}:8000/"));
    assert!(!ok, "an unforwarded port answered from the internet");
    // Hairpin: the viewer on the LAN reaches the forward through the WAN address too.
    let body = lab.sh("viewer", &format!("curl -sS -m 5 http://{wan}:8080/"));
    assert_eq!(body.trim(), "hello from cam1");
    lab.sh("cam1", "rm -rf /tmp/cam1-www-*");
}

#[test]
fn miniupnpd_terminal_reaches_cam1_through_upnpc_mapping() {
    if !require_root() {
        return;
    }
    let lab = Lab::up(&LabOptions::new(RouterKind::Miniupnpd).cams(1)).expect("lab up");
    let cam1 = lab.addr("cam1").to_string();
    lab.spawn(
        "cam1",
        &[
            "python3",
            "-m",
            "http.server",
            "8080",
            "--directory",
            "/etc/iproute2",
        ],
    );
    lab.wait_tcp("cam1", &cam1, 8080);
    let wan = lab.wan_addr();
    // Before the mapping, the internet cannot reach cam1.
    let (ok, _) = lab.try_sh(
        "inet",
        &format!("curl -sS -m 2 -o /dev/null http://{wan}:8080/"),
    );
    assert!(!ok, "cam1 was reachable before any mapping");
    let out = lab.sh(
        "cam1",
        &format!("upnpc -e lab-test -a {cam1} 8080 8080 TCP"),
    );
    assert!(out.contains("is redirected to internal"), "upnpc -a: {out}");
    let code = lab.sh(
        "inet",
        &format!("curl -sS -m 5 -o /dev/null -w '%{{http_code}}' http://{wan}:8080/"),
    );
    assert_eq!(code.trim(), "200");
    assert!(
        lab.status().contains("8080->"),
        "lab status lists the mapping:\n{}",
        lab.status()
    );
    // After deleting it, the port is closed again.
    lab.sh("cam1", "upnpc -d 8080 TCP");
    let (ok, _) = lab.try_sh(
        "inet",
        &format!("curl -sS -m 2 -o /dev/null http://{wan}:8080/"),
    );
    assert!(!ok, "cam1 was reachable after the mapping was deleted");
}

#[test]
fn two_labs_coexist_and_down_removes_only_its_own() {
    if !require_root() {
        return;
    }
    let a = Lab::up(&LabOptions::new(RouterKind::Kernel).cams(1)).expect("lab a");
    let b = Lab::up(&LabOptions::new(RouterKind::Kernel).cams(1)).expect("lab b");
    for lab in [&a, &b] {
        lab.http_server("inet", TERMINAL, 8000, "/etc/iproute2");
        let code = lab.sh(
            "cam1",
            &format!("curl -sS -m 5 -o /dev/null -w '%{{http_code}}' http://{TERMINAL}:8000/"),
        );
        assert_eq!(code.trim(), "200", "lab {} carries traffic", lab.prefix);
    }
    a.down();
    assert!(
        namespaces_with_prefix(&a.prefix).is_empty(),
        "lab a is gone"
    );
    assert_eq!(
        namespaces_with_prefix(&b.prefix).len(),
        5,
        "lab b is intact: inet rtr lan cam1 viewer"
    );
    let code = b.sh(
        "cam1",
        &format!("curl -sS -m 5 -o /dev/null -w '%{{http_code}}' http://{TERMINAL}:8000/"),
    );
    assert_eq!(code.trim(), "200", "lab b still works after a is down");
}

#[test]
fn up_refuses_an_existing_prefix_and_force_replaces_it() {
    if !require_root() {
        return;
    }
    let lab = Lab::up(&LabOptions::new(RouterKind::Kernel).cams(0)).expect("lab up");
    let out = Command::new(lab_script())
        .args([
            "up",
            "--prefix",
            &lab.prefix,
            "--router",
            "kernel",
            "--cams",
            "0",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("exists") && err.contains("--force"),
        "clear message: {err}"
    );
    let out = Command::new(lab_script())
        .args([
            "up",
            "--prefix",
            &lab.prefix,
            "--router",
            "kernel",
            "--cams",
            "2",
            "--force",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(namespaces_with_prefix(&lab.prefix).contains(&lab.ns("cam2")));
}

#[test]
fn down_leaves_namespaces_it_did_not_create_alone() {
    if !require_root() {
        return;
    }
    let prefix = tests::unique_prefix();
    let foreign = format!("{prefix}-inet");
    assert!(
        Command::new("ip")
            .args(["netns", "add", &foreign])
            .status()
            .unwrap()
            .success()
    );
    let down = Command::new(lab_script())
        .args(["down", "--prefix", &prefix])
        .output()
        .unwrap();
    let up = Command::new(lab_script())
        .args(["up", "--prefix", &prefix, "--router", "kernel", "--force"])
        .output()
        .unwrap();
    let still_there = namespaces_with_prefix(&prefix).contains(&foreign);
    let _ = Command::new("ip").args(["netns", "del", &foreign]).status();
    assert!(
        !down.status.success(),
        "down refuses a lab it has no record of"
    );
    assert!(
        !up.status.success(),
        "up --force refuses to remove a namespace it did not create"
    );
    assert!(still_there, "the foreign namespace was not removed");
}

#[test]
fn bad_options_are_named_with_the_fix() {
    for (args, needle) in [
        (
            vec!["up", "--router", "cisco"],
            "choose ours, kernel or miniupnpd",
        ),
        (vec!["up", "--cams", "many"], "choose a number from 0 to 50"),
        (
            vec!["up", "--wan", "203.0.113.0/24"],
            "expected an IPv4 host address",
        ),
        (vec!["up", "--prefix", "Bad_Prefix"], "lowercase letters"),
        (vec!["up", "--forward", "tcp:80"], "PROTO:EXTPORT=NODE"),
        (vec!["exec", "kitchen", "--", "true"], "not a lab node"),
    ] {
        let out = Command::new(lab_script()).args(&args).output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?} must fail");
        assert!(
            err.contains(needle),
            "{args:?}: expected {needle:?} in {err:?}"
        );
    }
}

/// `lab up` stopped half-way (a kill, or Ctrl-C with its output piped into `tee`, which dies
/// first) removes what it had created: namespaces and its state directory; also with a carrier
/// NAT, two homes and a relay (when the relay binary is built).
#[test]
fn up_interrupted_half_way_removes_what_it_made() {
    if !require_root() {
        return;
    }
    let relay = tests::repo_root().join("target/debug/relay");
    // (signal, options, namespaces to wait for before the signal)
    let mut rounds = vec![("TERM", vec![], 2), ("HUP", vec![], 2)];
    if relay.exists() {
        // All 15 namespaces made: the signal comes while routers, credentials or the relay
        // start.
        let big = ["--carrier-nat", "--homes", "2", "--relays", "1"];
        rounds.push(("TERM", big.to_vec(), 15));
    }
    for (signal, extra, made_before) in rounds {
        let prefix = tests::unique_prefix();
        let state = std::path::PathBuf::from(format!("/run/homenet-lab/{prefix}"));
        // The script's output goes into a pipe whose reader is gone by the time the signal
        // comes, as after Ctrl-C on `lab up | tee log`.
        let mut child = Command::new(lab_script())
            .args([
                "up", "--prefix", &prefix, "--router", "kernel", "--cams", "3",
            ])
            .args(&extra)
            .env("RELAY_BIN", &relay)
            .env("LAB_OWNER_PID", std::process::id().to_string())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("lab up");
        drop(child.stdout.take());
        drop(child.stderr.take());
        // Half-way: the first namespaces exist, the LAN nodes not yet.
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        while namespaces_with_prefix(&prefix).len() < made_before {
            assert!(
                std::time::Instant::now() < deadline,
                "lab up made no namespace"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
        let made = namespaces_with_prefix(&prefix).len();
        let status = Command::new("kill")
            .args([&format!("-{signal}"), &child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
        let status = child.wait().unwrap();
        assert!(!status.success(), "SIG{signal}: lab up reported success");
        assert!(
            namespaces_with_prefix(&prefix).is_empty() && !state.exists(),
            "SIG{signal} after {made} namespaces: left {:?}, state dir exists: {}",
            namespaces_with_prefix(&prefix),
            state.exists()
        );
    }
}

/// Run by `a_panicking_test_leaves_no_namespace`: creates a lab, writes its prefix, panics.
#[test]
fn panicking_child() {
    let Ok(path) = std::env::var("LAB_PANIC_CHILD_OUT") else {
        return;
    };
    let lab = Lab::up(&LabOptions::new(RouterKind::Kernel).cams(1)).expect("lab up");
    std::fs::write(path, &lab.prefix).unwrap();
    panic!("deliberate panic with lab {} up", lab.prefix);
}

#[test]
fn a_panicking_test_leaves_no_namespace() {
    if !require_root() {
        return;
    }
    let out_file = std::env::temp_dir().join(format!("lab-panic-{}", std::process::id()));
    let status = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "panicking_child",
            "--nocapture",
            "--test-threads",
            "1",
        ])
        .env("LAB_PANIC_CHILD_OUT", &out_file)
        .output()
        .unwrap();
    assert!(!status.status.success(), "the child test panicked");
    let prefix = std::fs::read_to_string(&out_file).expect("the child created a lab");
    let _ = std::fs::remove_file(&out_file);
    std::thread::sleep(Duration::from_millis(100));
    assert!(
        namespaces_with_prefix(&prefix).is_empty(),
        "namespaces of the panicking test's lab remain: {:?}",
        namespaces_with_prefix(&prefix)
    );
}

#[test]
fn wan_delay_and_loss_are_emulated() {
    if !require_root() {
        return;
    }
    let lab = Lab::up(
        &LabOptions::new(RouterKind::Kernel)
            .cams(1)
            .arg("--delay")
            .arg("20")
            .arg("--loss")
            .arg("20"),
    )
    .expect("lab up");
    // Resolve the neighbours first (ARP crosses the lossy link too, and a failed resolution
    // reports errors rather than loss), then measure.
    lab.sh(
        "cam1",
        &format!(
            "for i in $(seq 10); do ping -q -c 1 -W 2 {TERMINAL} >/dev/null && break; done; true"
        ),
    );
    let out = lab.sh(
        "cam1",
        &format!("ping -q -c 60 -i 0.05 -W 1 {TERMINAL} || true"),
    );
    let loss: f64 = out
        .split(',')
        .find(|p| p.contains("packet loss"))
        .and_then(|p| p.trim().split('%').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no loss figure in {out}"));
    // 20 % each way: about 36 % of round trips fail; allow wide statistical room.
    assert!(
        (10.0..=70.0).contains(&loss),
        "round-trip loss {loss}% with 20% per direction:\n{out}"
    );
    let min_rtt: f64 = out
        .split("= ")
        .nth(1)
        .and_then(|v| v.split('/').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no rtt in {out}"));
    assert!(
        min_rtt >= 39.0,
        "20 ms each way gives an RTT of at least 40 ms, got {min_rtt}"
    );
    assert!(
        lab.status().contains("wan link: delay 20ms loss 20%"),
        "{}",
        lab.status()
    );
    // TCP still gets through a lossy, slow link.
    lab.http_server("inet", TERMINAL, 8000, "/etc/iproute2");
    let code = lab.sh(
        "cam1",
        &format!("curl -sS -m 30 -o /dev/null -w '%{{http_code}}' http://{TERMINAL}:8000/"),
    );
    assert_eq!(code.trim(), "200");
}
