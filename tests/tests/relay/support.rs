//! What the relay tests share: starting cameras with the lab's options, asking the relay, and
//! the checks a user would make (each camera only through the relay, the representative's relay
//! links, a home viewer sent to the LAN).

use std::time::{Duration, Instant};

use tests::{Lab, LabOptions};

pub const RELAY: &str = "198.51.100.20";

/// A binary of the workspace: `ENV` if set, else the debug build (`cargo test --workspace`
/// builds it).
pub fn workspace_bin(env: &str, name: &str) -> String {
    let path = std::env::var(env).unwrap_or_else(|_| {
        tests::repo_root()
            .join("target/debug")
            .join(name)
            .display()
            .to_string()
    });
    assert!(
        std::path::Path::new(&path).exists(),
        "{path} missing: cargo build -p {name}, or set {env}"
    );
    path
}

/// `lab up` with relays, using the workspace's relay binary.
pub fn relay_lab(opts: LabOptions) -> Lab {
    Lab::up(&opts.env("RELAY_BIN", &workspace_bin("RELAY_BIN", "relay"))).expect("lab up")
}

pub struct Cam {
    pub node: String,
    pub id: String,
    pub pid: u32,
}

/// Starts camnode in each node with the lab's options for it (`lab camnode-args`: its
/// provisioned identity, the relay, its secret, the CA) plus `extra`; logs in the lab's state.
pub fn start_cams(lab: &Lab, nodes: &[&str], extra: &[&str]) -> Vec<Cam> {
    let bin = workspace_bin("CAMNODE_BIN", "camnode");
    nodes
        .iter()
        .map(|node| {
            let mut args = vec![bin.clone()];
            args.extend(lab.camnode_args(node));
            args.extend(extra.iter().map(|s| s.to_string()));
            let argv: Vec<&str> = args.iter().map(String::as_str).collect();
            let log = lab.state_dir().join(format!("camnode-{node}.log"));
            let pid = lab.spawn_logged(node, &argv, &log);
            let identity = std::fs::read_to_string(
                lab.state_dir().join(format!("{node}-state/identity.toml")),
            )
            .expect("the lab provisioned an identity");
            let id = identity
                .split('"')
                .nth(1)
                .expect("id = \"...\"")
                .to_string();
            std::thread::sleep(Duration::from_millis(200));
            Cam {
                node: node.to_string(),
                id,
                pid,
            }
        })
        .collect()
}

/// The relay's status JSON, asked from the internet.
pub fn relay_status(lab: &Lab) -> serde_json::Value {
    relay_status_at(lab, RELAY).expect("relay 1 answers its status")
}

/// The status JSON of the relay at `addr`, if it answers.
pub fn relay_status_at(lab: &Lab, addr: &str) -> Option<serde_json::Value> {
    let (ok, out) = lab.try_sh("inet", &format!("curl -sS -m 3 http://{addr}/status.json"));
    ok.then(|| serde_json::from_str(&out).ok()).flatten()
}

pub fn device<'a>(status: &'a serde_json::Value, id: &str) -> Option<&'a serde_json::Value> {
    status["devices"].as_array()?.iter().find(|d| d["id"] == id)
}

pub fn online(status: &serde_json::Value, id: &str) -> bool {
    device(status, id).is_some_and(|d| d["state"] == "online")
}

/// Bytes the relay carried for a device, both ways.
pub fn relayed_bytes(status: &serde_json::Value, id: &str) -> u64 {
    device(status, id).map_or(0, |d| {
        d["bytes_up"].as_u64().unwrap_or(0) + d["bytes_down"].as_u64().unwrap_or(0)
    })
}

/// Waits until every camera is online at the relay; returns how long it took.
pub fn wait_online(lab: &Lab, cams: &[&Cam], limit: Duration) -> Duration {
    let start = Instant::now();
    loop {
        let s = relay_status(lab);
        if cams.iter().all(|c| online(&s, &c.id)) {
            return start.elapsed();
        }
        assert!(
            start.elapsed() < limit,
            "not every camera online at the relay within {limit:?}: {s}\n{}",
            logs(lab)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The tails of the cameras' and the relay's logs, for a failure message.
pub fn logs(lab: &Lab) -> String {
    let mut out = String::new();
    if let Ok(dir) = std::fs::read_dir(lab.state_dir()) {
        for e in dir.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if name.ends_with(".log") && (name.starts_with("camnode") || name.starts_with("relay"))
            {
                let text = std::fs::read_to_string(e.path()).unwrap_or_default();
                let tail: Vec<&str> = text.lines().rev().take(8).collect();
                out += &format!("--- {name}\n");
                for l in tail.into_iter().rev() {
                    out += l;
                    out.push('\n');
                }
            }
        }
    }
    out
}

/// GET `url` from `node`: (status code, body, redirect target).
pub fn get(lab: &Lab, node: &str, url: &str) -> (u16, Vec<u8>, String) {
    let file = format!("/tmp/{}-get-{}", lab.prefix, std::process::id());
    let (_, out) = lab.try_sh(
        node,
        &format!("curl -sS -m 10 -o {file} -w '%{{http_code}} %{{redirect_url}}' '{url}'"),
    );
    let body = std::fs::read(&file).unwrap_or_default();
    let _ = std::fs::remove_file(&file);
    let mut it = out.trim().splitn(2, ' ');
    let code = it.next().and_then(|c| c.parse().ok()).unwrap_or(0);
    (code, body, it.next().unwrap_or("").to_string())
}

/// JPEG pictures in `bytes` (SOI ... EOI).
pub fn jpegs(bytes: &[u8]) -> usize {
    let find = |hay: &[u8], n: &[u8]| hay.windows(2).position(|w| w == n);
    let (mut i, mut n) = (0, 0);
    while let Some(s) = find(&bytes[i..], b"\xff\xd8") {
        let Some(e) = find(&bytes[i + s..], b"\xff\xd9") else {
            break;
        };
        n += 1;
        i += s + e + 2;
    }
    n
}

pub fn site(id: &str) -> String {
    format!("http://{RELAY}/d/{id}/")
}

/// From the internet, each camera's page, snapshot and MJPEG stream work through the relay and
/// not directly.
pub fn internet_sees_cameras_only_through_relay(lab: &Lab, cams: &[Cam], public: &str) {
    for cam in cams {
        let (code, page, _) = get(lab, "inet", &site(&cam.id));
        assert_eq!(
            code,
            200,
            "{} page through the relay\n{}",
            cam.node,
            logs(lab)
        );
        assert!(String::from_utf8_lossy(&page).contains("<html"), "a page");
        let (code, snap, _) = get(lab, "inet", &format!("{}snapshot.jpg", site(&cam.id)));
        assert_eq!(code, 200, "{} snapshot", cam.node);
        assert!(
            snap.starts_with(b"\xff\xd8"),
            "{} snapshot is a JPEG",
            cam.node
        );
        let file = format!("/tmp/{}-mjpg", lab.prefix);
        lab.sh(
            "inet",
            &format!(
                "curl -sS -m 3 -o {file} {}stream.mjpg || true",
                site(&cam.id)
            ),
        );
        let stream = std::fs::read(&file).unwrap_or_default();
        let _ = std::fs::remove_file(&file);
        assert!(
            jpegs(&stream) >= 2,
            "{}: the MJPEG stream through the relay delivered {} pictures in 3 s",
            cam.node,
            jpegs(&stream)
        );
    }
    // Not directly: nothing answers at the public address or the home router's.
    for target in [public, &lab.wan_addr().to_string()] {
        for port in [8080, 8081, 8082] {
            let (ok, _) = lab.try_sh(
                "inet",
                &format!("curl -sS -m 1 -o /dev/null http://{target}:{port}/"),
            );
            assert!(!ok, "{target}:{port} answered directly");
        }
    }
}

/// Through the relay, the representative's page lists the other cameras with links on the
/// relay, and they work.
pub fn representative_lists_the_others_through_relay(lab: &Lab, cams: &[Cam]) {
    let status = |cam: &Cam| -> Option<serde_json::Value> {
        let (_, body, _) = get(lab, "inet", &format!("{}status.json", site(&cam.id)));
        serde_json::from_slice(&body).ok()
    };
    // The election and the directory settle within seconds of the last camera's start.
    let names = wait_until(Duration::from_secs(20), || {
        let all: Vec<serde_json::Value> = cams.iter().filter_map(status).collect();
        let settled = all.len() == cams.len()
            && all.iter().any(|s| {
                s["role"] == "representative"
                    && s["peers"].as_array().map_or(0, Vec::len) == cams.len() - 1
            });
        settled.then_some(all)
    })
    .unwrap_or_else(|| {
        let all: Vec<serde_json::Value> = cams.iter().filter_map(status).collect();
        panic!("no representative listing the others through the relay: {all:?}")
    });
    let rep = cams
        .iter()
        .zip(&names)
        .find(|(_, s)| s["role"] == "representative")
        .map(|(c, _)| c)
        .expect("a representative");
    let (_, page, _) = get(lab, "inet", &site(&rep.id));
    let page = String::from_utf8_lossy(&page);
    for (cam, status) in cams.iter().zip(&names) {
        if cam.id == rep.id {
            continue;
        }
        let link = format!("/d/{}/", cam.id);
        assert!(
            page.contains(&format!("href=\"{link}\""))
                || page.contains(&format!("href=\"http://{RELAY}{link}\"")),
            "the representative's page links {} through the relay: {page}",
            cam.node
        );
        let (code, theirs, _) = get(lab, "inet", &format!("http://{RELAY}{link}"));
        let name = status["name"].as_str().unwrap_or("?");
        assert!(
            code == 200 && String::from_utf8_lossy(&theirs).contains(name),
            "the link to {} ({name}) works: {code}",
            cam.node
        );
    }
}

/// A viewer in the camera's own home is sent to the camera's LAN address (seed 004) and the
/// relay carries no byte for it.
pub fn same_home_viewer_goes_to_the_lan(lab: &Lab, cam: &Cam, viewer: &str) {
    let before = relay_status(lab);
    let (code, _, location) = get(lab, viewer, &site(&cam.id));
    assert_eq!(
        code,
        302,
        "the same-home viewer is redirected\n{}",
        logs(lab)
    );
    let lan = lab.addr(&cam.node).to_string();
    assert!(
        location.starts_with(&format!("http://{lan}:"))
            || location.starts_with(&format!("http://{lan}/")),
        "to {}'s LAN address {lan}: {location}",
        cam.node
    );
    let (code, page, _) = get(lab, viewer, &location);
    assert!(
        code == 200 && String::from_utf8_lossy(&page).contains("<html"),
        "the LAN address answers the viewer: {code}"
    );
    let (code, snap, _) = get(lab, viewer, &format!("{location}snapshot.jpg"));
    assert!(
        code == 200 && snap.starts_with(b"\xff\xd8"),
        "snapshot on the LAN"
    );
    let after = relay_status(lab);
    assert_eq!(
        relayed_bytes(&after, &cam.id),
        relayed_bytes(&before, &cam.id),
        "the relay carried bytes for a same-home viewer"
    );
    assert!(
        device(&after, &cam.id).unwrap()["lan_redirects"].as_u64()
            > device(&before, &cam.id).unwrap()["lan_redirects"].as_u64(),
        "the relay counted the LAN redirect"
    );
}

pub fn wait_until<T>(limit: Duration, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let start = Instant::now();
    loop {
        if let Some(v) = f() {
            return Some(v);
        }
        if start.elapsed() > limit {
            return None;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The relay's counters that a back-connection moves.
pub fn back_connection_counters(lab: &Lab) -> Vec<(String, u64)> {
    let s = relay_status(lab);
    [
        "hello_ok",
        "hello_unknown_session",
        "hello_bad_proof",
        "hello_expired",
        "hello_malformed",
        "back_tls_failures",
        "back_unclaimed",
    ]
    .iter()
    .map(|k| (k.to_string(), s["counters"][k].as_u64().unwrap_or(u64::MAX)))
    .collect()
}

/// A log line without its terminal colours.
pub fn strip_ansi(line: &str) -> String {
    let mut out = String::new();
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c == '\x1b' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}
