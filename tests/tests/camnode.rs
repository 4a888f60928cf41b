//! Camera nodes in the lab (issue 5): three `camnode` processes behind our router and behind the
//! reference router (miniupnpd). From the internet, `http://<WAN>:8080/` is the representative's
//! page listing the others with names and working links (page, JPEG snapshot, live MJPEG); the
//! LAN viewer gets LAN links; a camera started later is listed within a second; a rename shows;
//! the mappings are gone after every camera stops.

use std::time::{Duration, Instant};

use tests::{Lab, LabOptions, RouterKind, repo_root, require_root};

/// The camnode binary: `CAMNODE_BIN`, or the workspace's debug build (`cargo test --workspace`
/// builds it).
fn camnode_bin() -> String {
    let path = std::env::var("CAMNODE_BIN").unwrap_or_else(|_| {
        repo_root()
            .join("target/debug/camnode")
            .display()
            .to_string()
    });
    assert!(
        std::path::Path::new(&path).exists(),
        "{path} missing: cargo build -p camnode, or set CAMNODE_BIN"
    );
    path
}

fn start_cam(lab: &Lab, n: u32) -> u32 {
    let state = format!("/tmp/{}-cam{n}-state", lab.prefix);
    lab.spawn(
        &format!("cam{n}"),
        &[&camnode_bin(), "--state-dir", &state, "--fps", "10"],
    )
}

/// The status JSON of `url` as seen from `node`, if it answers.
fn status(lab: &Lab, node: &str, url: &str) -> Option<serde_json::Value> {
    let (ok, out) = lab.try_sh(node, &format!("curl -sS -m 2 {url}status.json"));
    if !ok {
        return None;
    }
    serde_json::from_str(&out).ok()
}

fn peer_names(v: &serde_json::Value) -> Vec<String> {
    v["peers"]
        .as_array()
        .map(|ps| {
            ps.iter()
                .filter_map(|p| p["name"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

fn wait_until<T>(limit: Duration, mut f: impl FnMut() -> Option<T>) -> Option<(T, Duration)> {
    let start = Instant::now();
    while start.elapsed() < limit {
        if let Some(v) = f() {
            return Some((v, start.elapsed()));
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    None
}

/// Two JPEG parts of the MJPEG stream at `url`, fetched from `node`.
fn two_stream_parts(lab: &Lab, node: &str, url: &str) -> (Vec<u8>, Vec<u8>) {
    let file = format!("/tmp/{}-stream-{}", lab.prefix, url.len());
    lab.sh(
        node,
        &format!("curl -sS -m 2 -o {file} {url}stream.mjpg || true"),
    );
    let bytes = std::fs::read(&file).expect("stream captured");
    let _ = std::fs::remove_file(&file);
    let mut parts = Vec::new();
    let mut i = 0;
    while let Some(start) = find(&bytes[i..], b"\xff\xd8").map(|p| p + i) {
        let Some(end) = find(&bytes[start..], b"\xff\xd9").map(|p| p + start + 2) else {
            break;
        };
        parts.push(bytes[start..end].to_vec());
        i = end;
    }
    assert!(
        parts.len() >= 2,
        "the stream delivered {} JPEG parts in 2 s",
        parts.len()
    );
    let headers = String::from_utf8_lossy(&bytes[..bytes.len().min(400)]).to_lowercase();
    assert!(
        headers.contains("content-type: image/jpeg") && headers.contains("content-length:"),
        "{headers}"
    );
    (parts[0].clone(), parts[parts.len() - 1].clone())
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

fn three_cameras(router: RouterKind) {
    if !require_root() {
        return;
    }
    let lab = Lab::up(&LabOptions::new(router).cams(3)).expect("lab up");
    let wan = lab.wan_addr();
    let rep = format!("http://{wan}:8080/");

    let pids = [start_cam(&lab, 1)];
    let (first, took) = wait_until(Duration::from_secs(15), || {
        status(&lab, "inet", &rep).filter(|s| s["role"] == "representative")
    })
    .expect("cam1 became the representative, reachable from the internet");
    eprintln!("cam1 reachable from the internet {took:?} after start");
    let rep_name = first["name"].as_str().unwrap_or_default().to_string();

    // Later cameras are listed within a second of their start (claim 6's own-port notice).
    let mut pids = pids.to_vec();
    for n in [2u32, 3] {
        pids.push(start_cam(&lab, n));
        let (_, took) = wait_until(Duration::from_secs(10), || {
            status(&lab, "inet", &rep).filter(|s| peer_names(s).len() == n as usize - 1)
        })
        .unwrap_or_else(|| panic!("cam{n} never listed"));
        eprintln!("cam{n} listed by the representative {took:?} after its start");
        assert!(
            took <= Duration::from_millis(1000),
            "cam{n} listed after {took:?}, more than a second"
        );
    }

    // The representative's page, from the internet: the other two, by name, with external links.
    let page = lab.sh("inet", &format!("curl -sS -m 3 {rep}"));
    let s = status(&lab, "inet", &rep).expect("status");
    let peers = s["peers"].as_array().expect("peers").clone();
    assert_eq!(peers.len(), 2, "{s}");
    for p in &peers {
        let name = p["name"].as_str().expect("name");
        let url = p["url"].as_str().expect("url").to_string();
        assert!(
            url.starts_with(&format!("http://{wan}:")),
            "an external link for the internet: {url}"
        );
        assert!(page.contains(name), "the page names {name}");
        // Each link: its camera's page, a valid JPEG snapshot, a live MJPEG stream.
        let their = lab.sh("inet", &format!("curl -sS -m 3 {url}"));
        assert!(their.contains(name), "{url} is {name}'s page");
        let jpeg = format!("/tmp/{}-snap.jpg", lab.prefix);
        let ctype = lab.sh(
            "inet",
            &format!("curl -sS -m 3 -o {jpeg} -w '%{{content_type}}' {url}snapshot.jpg"),
        );
        assert_eq!(ctype.trim(), "image/jpeg");
        let bytes = std::fs::read(&jpeg).expect("snapshot");
        let _ = std::fs::remove_file(&jpeg);
        assert!(
            bytes.starts_with(b"\xff\xd8") && bytes.ends_with(b"\xff\xd9") && bytes.len() > 1000,
            "a JPEG"
        );
        let (a, b) = two_stream_parts(&lab, "inet", &url);
        assert_ne!(a, b, "the picture moves");
    }

    // From the LAN, the same page links to LAN addresses.
    let cam1 = lab.addr("cam1");
    let lan = status(&lab, "viewer", &format!("http://{cam1}:8080/")).expect("LAN status");
    for p in lan["peers"].as_array().expect("peers") {
        let url = p["url"].as_str().unwrap_or_default();
        assert!(
            url.starts_with("http://192.168.1."),
            "a LAN link for the LAN viewer: {url}"
        );
        lab.sh(
            "viewer",
            &format!("curl -sS -m 3 -o /dev/null {url}snapshot.jpg"),
        );
    }

    // Rename cam2 from the LAN; the representative's page shows the new name.
    let cam2 = lab.addr("cam2");
    let cam2_url = lan["peers"]
        .as_array()
        .and_then(|ps| ps.iter().find(|p| p["lan_addr"] == cam2.to_string()))
        .and_then(|p| p["url"].as_str())
        .expect("cam2 listed")
        .to_string();
    lab.sh(
        "viewer",
        &format!("curl -sS -m 3 --fail-with-body -X POST -d 'name=porch camera' {cam2_url}name"),
    );
    wait_until(Duration::from_secs(5), || {
        let page = lab.sh("inet", &format!("curl -sS -m 3 {rep}status.json"));
        page.contains("porch camera").then_some(())
    })
    .expect("the representative lists the new name");
    // A rename from the internet without a configured password is refused, clearly.
    let (ok, out) = lab.try_sh(
        "inet",
        &format!("curl -sS -m 3 --fail-with-body -X POST -d 'name=hacked' {rep}name"),
    );
    assert!(!ok && out.to_lowercase().contains("password"), "{out}");
    assert_eq!(
        status(&lab, "inet", &rep).map(|s| s["name"].clone()),
        Some(serde_json::Value::String(rep_name))
    );

    // Every camera stops: their mappings are gone.
    for pid in pids {
        let _ = std::process::Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status();
    }
    let gone = wait_until(Duration::from_secs(10), || {
        let list = lab.sh("viewer", "upnpc -i -l 2>&1");
        (!list.contains("homenet-cam")).then_some(())
    });
    assert!(
        gone.is_some(),
        "mappings left after the cameras stopped:\n{}",
        lab.sh("viewer", "upnpc -i -l 2>&1")
    );
    let _ = std::fs::remove_dir_all(format!("/tmp/{}-cam1-state", lab.prefix));
    let _ = std::fs::remove_dir_all(format!("/tmp/{}-cam2-state", lab.prefix));
    let _ = std::fs::remove_dir_all(format!("/tmp/{}-cam3-state", lab.prefix));
}

#[test]
fn three_cameras_behind_our_router() {
    three_cameras(RouterKind::Ours);
}

#[test]
fn three_cameras_behind_miniupnpd() {
    three_cameras(RouterKind::Miniupnpd);
}

/// Issue 11, the user's steps: `lab up --cams 3`, then `camnode` with no arguments in cam1,
/// cam2 and cam3. All three share the default state directory (`/var/lib/camnode`; here a
/// fresh directory bound over `/var/lib` in each camera's own mount namespace, so the host's is
/// untouched), as cameras in namespaces of one machine do. Each still gets its own id and name
/// (the identity is keyed by the interface's MAC), and the representative lists the other two.
#[test]
fn three_cameras_with_no_arguments_share_a_state_directory_but_not_an_identity() {
    if !require_root() {
        return;
    }
    let lab = Lab::up(&LabOptions::new(RouterKind::Ours).cams(3)).expect("lab up");
    let var_lib = format!("/tmp/{}-var-lib", lab.prefix);
    std::fs::create_dir_all(format!("{var_lib}/camnode")).expect("state dir");
    // An identity.toml left by an earlier version: exactly one camera takes it over.
    std::fs::write(
        format!("{var_lib}/camnode/identity.toml"),
        "id = \"00000000000000aa\"\nname = \"camera 1\"\nname_origin = \"auto\"\n",
    )
    .expect("legacy identity");
    let cams: Vec<String> = (1..=3).map(|n| format!("cam{n}")).collect();
    for cam in &cams {
        let script = format!(
            "mount --bind {var_lib} /var/lib && exec {} 2>>/tmp/{}-{cam}.log",
            camnode_bin(),
            lab.prefix
        );
        lab.spawn(
            cam,
            &[
                "unshare",
                "-m",
                "--propagation",
                "private",
                "sh",
                "-c",
                &script,
            ],
        );
        std::thread::sleep(Duration::from_millis(300));
    }
    let urls: Vec<String> = cams
        .iter()
        .map(|c| format!("http://{}:8080/", lab.addr(c)))
        .collect();
    let rep = wait_until(Duration::from_secs(20), || {
        let all: Vec<serde_json::Value> = urls
            .iter()
            .filter_map(|u| status(&lab, "viewer", u))
            .collect();
        let rep = all.iter().find(|s| s["role"] == "representative")?;
        (all.len() == 3 && peer_names(rep).len() == 2).then(|| (all.clone(), rep.clone()))
    });
    let logs = || {
        cams.iter()
            .map(|c| {
                let log = std::fs::read_to_string(format!("/tmp/{}-{c}.log", lab.prefix));
                format!("--- {c}\n{}", log.unwrap_or_default())
            })
            .collect::<String>()
    };
    let ((all, rep), took) = rep.unwrap_or_else(|| {
        panic!(
            "no representative listing the two others within 20 s\n{}",
            logs()
        )
    });
    eprintln!("representative lists both others {took:?} after the last start");
    let mut ids: Vec<&str> = all.iter().filter_map(|s| s["node_id"].as_str()).collect();
    let mut names: Vec<&str> = all.iter().filter_map(|s| s["name"].as_str()).collect();
    ids.sort_unstable();
    ids.dedup();
    names.sort_unstable();
    names.dedup();
    assert_eq!((ids.len(), names.len()), (3, 3), "{all:?}\n{}", logs());
    assert!(
        ids.contains(&"00000000000000aa"),
        "the old identity is kept by one: {ids:?}"
    );
    let mut listed = peer_names(&rep);
    listed.push(rep["name"].as_str().unwrap_or_default().to_string());
    listed.sort_unstable();
    assert_eq!(listed, names, "{rep}");
    let files: Vec<String> = std::fs::read_dir(format!("{var_lib}/camnode"))
        .expect("state dir")
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n.starts_with("identity") && n.ends_with(".toml"))
        .collect();
    assert_eq!(files.len(), 3, "{files:?}");
    assert!(all.iter().all(|s| s["warning"].is_null()), "{all:?}");
    let prefix = lab.prefix.clone();
    drop(lab);
    let _ = std::fs::remove_dir_all(&var_lib);
    for c in &cams {
        let _ = std::fs::remove_file(format!("/tmp/{prefix}-{c}.log"));
    }
}
