//! Issue 11: one LAN host holding 1000 connections to each of the router's HTTP servers (the
//! control API and admin page on :80, the UPnP IGD on :5000), each sending a request head a
//! line a second and never finishing it (slowloris), does not keep another LAN host from
//! being served. The router runs with the file limit a systemd service gets by default
//! (1024 soft), as on a real device.

use std::time::{Duration, Instant};

use tests::{Lab, LabOptions, RouterKind, python, repo_root, require_root};

const ATTACK_SECS: u64 = 40;

#[test]
fn a_slowloris_from_one_lan_host_does_not_starve_another() {
    if !require_root() {
        return;
    }
    let lab = Lab::up(&LabOptions::new(RouterKind::Ours).cams(1)).expect("lab up");
    let pid = lab.router_pid().expect("the router's pid");
    let out = std::process::Command::new("prlimit")
        .args(["--pid", &pid.to_string(), "--nofile=1024:1024"])
        .output()
        .expect("prlimit runs");
    assert!(out.status.success(), "{out:?}");
    let urls = [
        "http://192.168.1.1/api/status",
        "http://192.168.1.1:5000/rootDesc.xml",
    ];
    let get = |url: &str| {
        lab.try_sh(
            "viewer",
            &format!("curl -sS -m 3 -o /dev/null -w '%{{http_code}} %{{time_total}}' {url}"),
        )
    };
    for url in urls {
        let (ok, out) = get(url);
        assert!(
            ok && out.starts_with("200"),
            "{url} before the attack: {out}"
        );
    }

    let status = format!("/tmp/{}-slowloris", lab.prefix);
    let _ = std::fs::remove_file(&status);
    let script = repo_root().join("tests/scripts/slowloris.py");
    lab.spawn(
        "cam1",
        &[
            python(),
            &script.to_string_lossy(),
            "192.168.1.1",
            "80,5000",
            "1000",
            &ATTACK_SECS.to_string(),
            &status,
        ],
    );
    let ready = Instant::now() + Duration::from_secs(20);
    while !std::fs::read_to_string(&status).is_ok_and(|s| s.contains("open ")) {
        assert!(Instant::now() < ready, "the attacker did not start");
        std::thread::sleep(Duration::from_millis(200));
    }
    // Long enough for the servers' head timeouts (5 s, 10 s) to have come and gone while the
    // attacker reopens what is closed.
    let end = Instant::now() + Duration::from_secs(15);
    let mut answered = 0;
    while Instant::now() < end {
        for url in urls {
            let (ok, out) = get(url);
            let log = std::fs::read_to_string(&status).unwrap_or_default();
            let last = log.lines().last().unwrap_or_default().to_string();
            assert!(
                ok && out.starts_with("200"),
                "{url} during the attack ({last}): {out}"
            );
            answered += 1;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    let log = std::fs::read_to_string(&status).unwrap_or_default();
    let held = log
        .lines()
        .filter_map(|l| {
            l.strip_prefix("open ")?
                .split(' ')
                .next()?
                .parse::<u32>()
                .ok()
        })
        .max()
        .unwrap_or(0);
    eprintln!("{answered} requests answered; the attacker held up to {held} connections");
    // The attack was real: it held the router's share for one host on both servers.
    assert!(held >= 32 + 16, "{log}");
    let _ = std::fs::remove_file(&status);
}
