//! Port management in the lab against the reference router (miniupnpd): three camera nodes
//! started one after the other get 8080, 8081 and 8082 (claims 1, 17); the representative lists
//! the other two with their names within a second of their start (claim 6) and from the router's
//! table (claims 2, 5); every mapping answers from the internet (Fig. 8a: internal = external);
//! a rename shows on the representative; every mapping is gone after the nodes stop.
//!
//! Each node runs `examples/portmgmt_probe` (built by `cargo test`), which prints its Directory
//! as JSON lines. Needs root (network namespaces); see `tests::require_root`.

use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;
use tests::{Lab, LabOptions, RouterKind, require_root};

fn probe_path() -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    // target/<profile>/deps/portmgmt_lab-<hash> -> target/<profile>/examples/portmgmt_probe
    let p = exe
        .parent()
        .and_then(|d| d.parent())
        .map(|d| d.join("examples/portmgmt_probe"))
        .expect("target layout");
    assert!(
        p.exists(),
        "{} is missing: run the whole `cargo test -p camnode` (it builds the examples) or \
         `cargo build -p camnode --example portmgmt_probe` first",
        p.display()
    );
    p
}

/// One probe process in a camera namespace. Dropping it kills the process (a test that fails
/// half-way leaves nothing running; the Lab guard then removes the namespaces).
struct Probe {
    node: String,
    child: Child,
    stdin: Option<ChildStdin>,
    lines: Arc<Mutex<Vec<(Instant, Value)>>>,
    started: Instant,
}

impl Probe {
    fn start(lab: &Lab, node: &str, state_dir: &str) -> Probe {
        let started = Instant::now();
        let mut child = Command::new("ip")
            .args(["netns", "exec", &lab.ns(node)])
            .arg(probe_path())
            .args(["--state-dir", state_dir, "--walk-interval", "2"])
            .env("RUST_LOG", "info")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn the probe");
        let stdout = child.stdout.take().expect("piped stdout");
        let lines = Arc::new(Mutex::new(Vec::new()));
        let sink = lines.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if let Ok(v) = serde_json::from_str::<Value>(&line) {
                    sink.lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .push((Instant::now(), v));
                }
            }
        });
        let stdin = child.stdin.take();
        Probe {
            node: node.to_string(),
            child,
            stdin,
            lines,
            started,
        }
    }

    /// The first Directory (and when it was printed) that satisfies `pred`, waiting up to
    /// `timeout`.
    fn wait_for(
        &self,
        timeout: Duration,
        what: &str,
        pred: impl Fn(&Value) -> bool,
    ) -> (Instant, Value) {
        let deadline = Instant::now() + timeout;
        loop {
            {
                let lines = self.lines.lock().unwrap_or_else(|e| e.into_inner());
                if let Some((t, v)) = lines.iter().find(|(_, v)| pred(v)) {
                    return (*t, v.clone());
                }
                if Instant::now() > deadline {
                    panic!(
                        "{}: never saw {what}; its Directories:\n{:#?}",
                        self.node,
                        lines.iter().map(|(_, v)| v).collect::<Vec<_>>()
                    );
                }
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    fn command(&mut self, line: &str) {
        let stdin = self.stdin.as_mut().expect("stdin open");
        writeln!(stdin, "{line}").expect("write to the probe");
        stdin.flush().expect("flush");
    }

    /// SIGTERM, then wait (10 s at most) for it to delete its mapping and exit.
    fn stop(&mut self) -> ExitStatus {
        // SAFETY: kill has no memory preconditions; the pid is our child's (`ip netns exec`
        // execs the probe, so it is the probe itself).
        unsafe { libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(s) = self.child.try_wait().expect("wait") {
                return s;
            }
            assert!(
                Instant::now() < deadline,
                "{} did not stop within 10 s of SIGTERM",
                self.node
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Probe {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn peer_named<'a>(dir: &'a Value, id: &str) -> Option<&'a Value> {
    dir["peers"].as_array()?.iter().find(|p| p["id"] == id)
}

/// The camnode mappings in the router's table, as `upnpc -l` from the viewer sees them.
fn our_mappings(lab: &Lab) -> Vec<String> {
    let out = lab.exec("viewer", &["upnpc", "-l"]);
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.contains("homenet-cam"))
        .map(str::to_string)
        .collect()
}

#[test]
fn miniupnpd_three_nodes_ports_names_notices_rename_and_cleanup() {
    if !require_root() {
        return;
    }
    let lab = Lab::up(&LabOptions::new(RouterKind::Miniupnpd).cams(3)).expect("lab up");
    let states: Vec<String> = (1..=3)
        .map(|i| format!("/tmp/{}-cam{i}-state", lab.prefix))
        .collect();
    for s in &states {
        let _ = std::fs::remove_dir_all(s);
    }
    struct RemoveDirs(Vec<String>);
    impl Drop for RemoveDirs {
        fn drop(&mut self) {
            for d in &self.0 {
                let _ = std::fs::remove_dir_all(d);
            }
        }
    }
    let _dirs = RemoveDirs(states.clone());

    // The first node becomes the representative (claim 1).
    let mut cam1 = Probe::start(&lab, "cam1", &states[0]);
    let (t1, d1) = cam1.wait_for(Duration::from_secs(20), "the representative port", |d| {
        d["role"] == "representative"
            && d["external_port"] == 8080
            && d["reachability"] == "Reachable"
    });
    assert_eq!(d1["name"], "camera 1");
    assert_eq!(d1["external_addr"], lab.wan_addr().to_string());
    eprintln!(
        "cam1 representative {:?} after its start",
        t1 - cam1.started
    );

    // The others get 8081 and 8082 and are listed within a second of their start (claim 6).
    let mut members = Vec::new();
    for (i, port) in [(2usize, 8081u16), (3, 8082)] {
        let node = format!("cam{i}");
        let p = Probe::start(&lab, &node, &states[i - 1]);
        let (_, d) = p.wait_for(Duration::from_secs(10), "its mapping", |d| {
            d["external_port"] == port
        });
        assert_eq!(
            (d["role"].as_str(), d["lan_port"].as_u64()),
            (Some("member"), Some(u64::from(port)))
        );
        let id = d["id"].as_str().expect("id").to_string();
        let name = format!("camera {i}");
        let (t, rep) = cam1.wait_for(Duration::from_secs(5), &format!("{node} listed"), |r| {
            peer_named(r, &id).is_some_and(|p| p["name"] == name.as_str())
        });
        let listed_after = t - p.started;
        eprintln!("{node}: listed by the representative {listed_after:?} after its start");
        assert!(
            listed_after < Duration::from_secs(1),
            "{node} listed after {listed_after:?}"
        );
        let peer = peer_named(&rep, &id).expect("listed");
        assert_eq!(peer["external_port"], port);
        assert_eq!(peer["lan_addr"], lab.addr(&node).to_string());
        members.push((p, id));
    }

    // The table walk (embodiments 1, 3) confirms both from the router's table.
    cam1.wait_for(
        Duration::from_secs(6),
        "both peers from the router's table",
        |r| {
            r["peers"]
                .as_array()
                .is_some_and(|ps| ps.len() == 2 && ps.iter().all(|p| p["source"] == "RouterTable"))
        },
    );
    assert_eq!(our_mappings(&lab).len(), 3, "{:?}", our_mappings(&lab));

    // Every mapping answers from the internet, each on its own node (Fig. 8a).
    let wan = lab.wan_addr();
    for (port, name) in [(8080, "camera 1"), (8081, "camera 2"), (8082, "camera 3")] {
        let body = lab.sh("inet", &format!("curl -sS -m 5 http://{wan}:{port}/"));
        assert_eq!(body.trim(), format!("camnode {name}"), "port {port}");
    }

    // A rename shows on the representative's list.
    let (cam3, id3) = &mut members[1];
    let sent = Instant::now();
    cam3.command("rename Porch ☕ cam");
    let (t, _) = cam1.wait_for(Duration::from_secs(5), "the new name", |r| {
        peer_named(r, id3).is_some_and(|p| p["name"] == "Porch ☕ cam")
    });
    eprintln!("rename listed after {:?}", t - sent);
    assert!(t - sent < Duration::from_secs(1));
    // One identity file per LAN interface (identity-<mac>.toml, issue 11).
    let file = std::fs::read_dir(&states[2])
        .expect("state dir")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("identity-") && n.ends_with(".toml"))
        })
        .expect("identity file");
    let saved = std::fs::read_to_string(file).expect("identity saved");
    assert!(saved.contains("Porch ☕ cam"), "{saved}");

    // All stop: every mapping is deleted (DeletePortMapping on shutdown).
    for (p, _) in &mut members {
        assert!(p.stop().success());
    }
    assert!(cam1.stop().success());
    let left = our_mappings(&lab);
    assert!(left.is_empty(), "mappings left behind: {left:?}");
}
