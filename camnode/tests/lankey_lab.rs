//! Issue 11: LAN messages are unauthenticated, so one forged Inquiry with a high term made the
//! representative stand down for an attacker. In the lab (our router, two camnodes): without a
//! LAN key the forged Inquiry from the viewer's host does exactly that; with `--lan-key` on
//! both cameras, the cameras still find each other (sealed messages), and the same forged
//! Inquiry changes nothing. Needs root.

use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use serde_json::Value;
use shared::lanproto::{self, Body, Header, Repr};
use tests::{Lab, LabOptions, RouterKind, require_root};

const CAMNODE: &str = env!("CARGO_BIN_EXE_camnode");

fn start(lab: &Lab, node: &str, extra: &[&str]) -> u32 {
    let state = format!("/tmp/{}-{node}", lab.prefix);
    let log = format!("exec \"$0\" \"$@\" 2>>/tmp/{}-{node}.log", lab.prefix);
    let mut args = vec![
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
    args.extend_from_slice(extra);
    lab.spawn(node, &args)
}

fn status(lab: &Lab, addr: Ipv4Addr) -> Option<Value> {
    let (ok, out) = lab.try_sh(
        "viewer",
        &format!("curl -s -m 1 http://{addr}:8080/status.json"),
    );
    ok.then(|| serde_json::from_str(&out).ok()).flatten()
}

/// Waits until one of `cams` is the representative listing the other; its address.
fn wait_representative(lab: &Lab, cams: [Ipv4Addr; 2]) -> Ipv4Addr {
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(30) {
        for cam in cams {
            if let Some(s) = status(lab, cam)
                && s["role"] == "representative"
                && s["peers"].as_array().is_some_and(|p| p.len() == 1)
            {
                return cam;
            }
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("no representative listing the other camera within 30 s");
}

/// Waits until the process `pid` has gone (its mapping deleted on the way out).
fn wait_gone(pid: u32) {
    let start = Instant::now();
    while std::path::Path::new(&format!("/proc/{pid}/cmdline"))
        .metadata()
        .is_ok_and(|_| {
            std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .is_ok_and(|st| !st.contains(") Z "))
        })
        && start.elapsed() < Duration::from_secs(10)
    {
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Sends forged Inquiries (node 0x666, term 1000) from the viewer, to the group and to `to`.
fn forge(lab: &Lab, to: Ipv4Addr) {
    for k in 0..5u64 {
        let data = Repr {
            header: Header {
                node_id: 0x666,
                sequence: u64::from(u32::MAX) + k,
                term: 1000,
            },
            body: Body::Inquiry(lanproto::Inquiry {
                external_port: 8080,
                external_addr: None,
            }),
        }
        .emit();
        let hex: String = data.iter().map(|b| format!("{b:02x}")).collect();
        lab.sh(
            "viewer",
            &format!(
                "python3 -c 'import socket,sys; s=socket.socket(socket.AF_INET,socket.SOCK_DGRAM); \
                 d=bytes.fromhex(sys.argv[1]); [s.sendto(d,(a,17777)) for a in sys.argv[2:]]' \
                 {hex} {} {to}",
                lanproto::DEFAULT_GROUP
            ),
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The roles the representative reports during the 1.5 s after a forgery, polled every
/// 100 ms: a node that followed the forged Inquiry shows "member" until its presence checks
/// find the forger silent and it wins the port back (~1.7 s), so one late look can miss it.
fn roles_after_forgery(lab: &Lab, rep: Ipv4Addr) -> Vec<String> {
    forge(lab, rep);
    let start = Instant::now();
    let mut roles = Vec::new();
    while start.elapsed() < Duration::from_millis(1500) {
        if let Some(s) = status(lab, rep) {
            roles.push(s["role"].as_str().unwrap_or_default().to_string());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    roles
}

#[test]
fn a_forged_inquiry_is_ignored_with_a_lan_key() {
    if !require_root() {
        return;
    }
    let lab = Lab::up(&LabOptions::new(RouterKind::Ours).cams(2)).expect("lab up");
    let (cam1, cam2) = (lab.addr("cam1"), lab.addr("cam2"));
    let key = ["--lan-key", "0123456789abcdef-lab-key"];

    // With the key: the cameras hear each other, the forgery changes nothing.
    let pids = [start(&lab, "cam1", &key), 0];
    std::thread::sleep(Duration::from_millis(500));
    let pids = [pids[0], start(&lab, "cam2", &key)];
    let rep = wait_representative(&lab, [cam1, cam2]);
    let roles = roles_after_forgery(&lab, rep);
    assert!(
        !roles.is_empty() && roles.iter().all(|r| r == "representative"),
        "with a key the forgery changes nothing: {roles:?}"
    );
    std::thread::sleep(Duration::from_secs(2));
    let s = status(&lab, rep).expect("status");
    assert_eq!(s["role"], "representative", "{s}");
    assert_eq!(s["peers"].as_array().map(Vec::len), Some(1), "{s}");
    for pid in pids {
        // SAFETY: kill has no memory preconditions; the pids are the camnodes we spawned.
        unsafe { libc::kill(pid as libc::pid_t, libc::SIGTERM) };
    }
    pids.into_iter().for_each(wait_gone);

    // Without a key (as before): the same forgery makes the representative stand down.
    start(&lab, "cam1", &[]);
    std::thread::sleep(Duration::from_millis(500));
    start(&lab, "cam2", &[]);
    let rep = wait_representative(&lab, [cam1, cam2]);
    let roles = roles_after_forgery(&lab, rep);
    assert!(
        roles.iter().any(|r| r == "member"),
        "control: without a key the forged Inquiry is followed: {roles:?}"
    );
    for node in ["cam1", "cam2"] {
        let _ = std::fs::remove_dir_all(format!("/tmp/{}-{node}", lab.prefix));
        let _ = std::fs::remove_file(format!("/tmp/{}-{node}.log", lab.prefix));
    }
}
