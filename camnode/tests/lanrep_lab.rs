//! A representative without an IGD (issue 12) in the lab: three `camnode` processes behind a
//! router that does plain NAT with no UPnP (`--router kernel`). Discovery gives up, the cameras
//! elect a LAN representative whose `status.json` (and page) lists the other two, the others
//! say `member`; SIGKILL of the representative hands the role to a survivor, which lists the
//! remaining camera. Processes are stopped only by the pid `Lab::spawn` returned. Needs root.

use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use serde_json::Value;
use tests::{Lab, LabOptions, RouterKind, require_root};

const CAMNODE: &str = env!("CARGO_BIN_EXE_camnode");

fn start(lab: &Lab, node: &str) -> u32 {
    let state = format!("/tmp/{}-{node}", lab.prefix);
    let log = format!("exec \"$0\" \"$@\" 2>>/tmp/{}-{node}.log", lab.prefix);
    let args = [
        "bash",
        "-c",
        &log,
        CAMNODE,
        "--state-dir",
        &state,
        "--source",
        "synthetic",
        "--fps",
        "2",
        "--width",
        "160",
        "--height",
        "120",
    ];
    lab.spawn(node, &args)
}

/// Each live camera's own `status.json` (None if it does not answer).
fn statuses(lab: &Lab, cams: &[(String, Ipv4Addr, Option<u32>)]) -> Vec<Option<Value>> {
    cams.iter()
        .map(|(node, addr, pid)| {
            pid.as_ref()?;
            let url = format!("http://{addr}:8080/status.json");
            let (ok, out) = lab.try_sh(node, &format!("curl -s -m 1 {url}"));
            ok.then(|| serde_json::from_str(&out).ok()).flatten()
        })
        .collect()
}

fn peers(v: &Value) -> Vec<String> {
    let mut p: Vec<String> = v["peers"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|p| p["lan_addr"].as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default();
    p.sort();
    p
}

/// Waits until exactly one live camera is the representative, listing every other live one,
/// and those say `member`; returns its index and the time it took.
fn wait_one_rep(
    lab: &Lab,
    cams: &[(String, Ipv4Addr, Option<u32>)],
    limit: Duration,
) -> (usize, Duration) {
    let start = Instant::now();
    let mut last = Vec::new();
    while start.elapsed() < limit {
        last = statuses(lab, cams);
        let reps: Vec<usize> = (0..cams.len())
            .filter(|&i| {
                last[i]
                    .as_ref()
                    .is_some_and(|v| v["role"] == "representative")
            })
            .collect();
        if let [rep] = reps[..] {
            let mut want: Vec<String> = (0..cams.len())
                .filter(|&i| i != rep && cams[i].2.is_some())
                .map(|i| cams[i].1.to_string())
                .collect();
            want.sort();
            let members_ok = (0..cams.len())
                .filter(|&i| i != rep && cams[i].2.is_some())
                .all(|i| last[i].as_ref().is_some_and(|v| v["role"] == "member"));
            if peers(last[rep].as_ref().unwrap()) == want && members_ok {
                return (rep, start.elapsed());
            }
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    panic!(
        "no single LAN representative within {limit:?}: {last:?}\n{}",
        lab.status()
    );
}

#[test]
fn lan_representative_behind_a_router_without_upnp() {
    if !require_root() {
        return;
    }
    let lab = Lab::up(&LabOptions::new(RouterKind::Kernel).cams(3)).expect("lab up");
    let mut cams: Vec<(String, Ipv4Addr, Option<u32>)> = (1..=3)
        .map(|i| {
            let node = format!("cam{i}");
            let addr = lab.addr(&node);
            (node, addr, None)
        })
        .collect();
    for c in &mut cams {
        c.2 = Some(start(&lab, &c.0));
        std::thread::sleep(Duration::from_millis(300));
    }
    let (rep, t) = wait_one_rep(&lab, &cams, Duration::from_secs(40));
    println!(
        "  LAN representative {} listing 2 peers after {t:.2?}",
        cams[rep].0
    );
    let v = statuses(&lab, &cams)[rep].clone().unwrap();
    assert_eq!(v["reachability"]["state"], "no-igd", "{v}");
    // The page lists the others too (their LAN addresses are in its links).
    let page = lab.sh(
        &cams[rep].0,
        &format!("curl -s -m 2 http://{}:8080/", cams[rep].1),
    );
    for (i, c) in cams.iter().enumerate().filter(|(i, _)| *i != rep) {
        assert!(
            page.contains(&c.1.to_string()),
            "camera {i} not on the page:\n{page}"
        );
    }
    // SIGKILL: no bye-bye; a survivor takes the role and lists the remaining camera.
    let pid = cams[rep].2.take().unwrap();
    // SAFETY: kill has no memory preconditions; `pid` is the camnode `Lab::spawn` started.
    unsafe { libc::kill(pid as libc::pid_t, libc::SIGKILL) };
    let (new, t) = wait_one_rep(&lab, &cams, Duration::from_secs(15));
    println!("  after SIGKILL: {} took over after {t:.2?}", cams[new].0);
    assert_ne!(new, rep);
    assert!(t < Duration::from_secs(5), "handover took {t:?}");
}
