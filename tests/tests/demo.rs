//! The demo as a stakeholder sees it (issue 7), in a real browser: headless Chromium, through the
//! demo's 127.0.0.1 proxy into the internet namespace, loads the representative's page, finds a
//! non-empty list of cameras, follows a link to another camera and sees its picture move; through
//! the LAN proxy, the links are LAN addresses. Screenshots go to `target/artifacts/`.

use std::path::PathBuf;
use std::process::Command;

use tests::{Lab, repo_root, require_root};

fn artifacts() -> PathBuf {
    let dir = repo_root().join("target/artifacts");
    std::fs::create_dir_all(&dir).expect("artifacts dir");
    dir
}

/// Headless Chromium through `proxy`, with the flags this machine needs (no sandbox as root, no
/// background networking: the machine has no internet).
fn chromium(proxy: u16, profile: &str, args: &[&str]) -> String {
    // A fresh profile per run: Chromium hands a URL to a running instance that shares its
    // profile, and that one may have the other proxy.
    static RUN: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let profile = format!(
        "{profile}/{}",
        RUN.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    );
    let out = Command::new("chromium")
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--window-size=1100,900",
            &format!("--user-data-dir={profile}"),
            &format!("--proxy-server=http://127.0.0.1:{proxy}"),
            // Lets the page's script run (it polls status.json to fill in the camera list).
            "--virtual-time-budget=4000",
        ])
        .args(args)
        .output()
        .expect("chromium runs (netns-scripts/lab deps installs it)");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn hrefs(dom: &str, prefix: &str) -> Vec<String> {
    dom.split("href=\"")
        .skip(1)
        .filter_map(|s| s.split('"').next())
        .filter(|h| h.starts_with(prefix))
        .map(str::to_string)
        .collect()
}

#[test]
fn stakeholder_demo_in_a_real_browser() {
    if !require_root() {
        return;
    }
    let proxy = 20000 + (std::process::id() % 20000) as u16;
    let lab = Lab::demo(3, proxy).expect("lab demo");
    let wan = lab.wan_addr();
    let rep = format!("http://{wan}:8080/");
    let profile = format!("/tmp/{}-chromium", lab.prefix);
    let shots = artifacts();

    // The representative's page, as the internet sees it: a list of the other cameras.
    let dom = chromium(proxy, &profile, &["--dump-dom", &rep]);
    let links = hrefs(&dom, &format!("http://{wan}:"));
    let others: Vec<&String> = links.iter().filter(|l| !l.starts_with(&rep)).collect();
    assert!(
        others.len() >= 2,
        "the page lists the other cameras with external links: {links:?}\n{dom}"
    );
    assert!(
        dom.contains("camera 2") || dom.contains("camera 3"),
        "names on the page"
    );
    let rep_png = shots.join("demo-representative.png");
    chromium(
        proxy,
        &profile,
        &[&format!("--screenshot={}", rep_png.display()), &rep],
    );
    assert!(
        std::fs::metadata(&rep_png)
            .map(|m| m.len() > 10_000)
            .unwrap_or(false),
        "screenshot written"
    );

    // Follow a link: the other camera's page, twice: the picture moves.
    let other = others[0].clone();
    let a = shots.join("demo-other-camera-1.png");
    let b = shots.join("demo-other-camera-2.png");
    chromium(
        proxy,
        &profile,
        &[&format!("--screenshot={}", a.display()), &other],
    );
    std::thread::sleep(std::time::Duration::from_millis(1500));
    chromium(
        proxy,
        &profile,
        &[&format!("--screenshot={}", b.display()), &other],
    );
    let (pa, pb) = (
        std::fs::read(&a).expect("first shot"),
        std::fs::read(&b).expect("second shot"),
    );
    assert!(
        pa.len() > 10_000 && pb.len() > 10_000,
        "real pages, not error pages"
    );
    assert_ne!(
        pa, pb,
        "two screenshots of {other} differ: the picture moves"
    );

    // The LAN view: the same representative, reached at its LAN address, links to LAN addresses.
    // Which camera that is comes from its own status (usually cam1, the first one started, but
    // the election does not promise it).
    let status = lab.sh(
        "inet",
        &format!("curl -sS -m 5 http://{wan}:8080/status.json"),
    );
    let status: serde_json::Value = serde_json::from_str(&status).expect("status.json");
    let rep_lan = status["lan_addr"]
        .as_str()
        .expect("the representative's lan_addr")
        .to_string();
    let dom = chromium(
        proxy + 1,
        &profile,
        &["--dump-dom", &format!("http://{rep_lan}:8080/")],
    );
    let lan_links = hrefs(&dom, "http://192.168.1.");
    assert!(
        lan_links.iter().filter(|l| !l.contains(&rep_lan)).count() >= 2,
        "LAN links of {rep_lan}: {lan_links:?}\n{dom}"
    );
    let lan_png = shots.join("demo-lan-view.png");
    chromium(
        proxy + 1,
        &profile,
        &[
            &format!("--screenshot={}", lan_png.display()),
            &format!("http://{rep_lan}:8080/"),
        ],
    );

    // The router's admin page, through the LAN view.
    let admin_png = shots.join("demo-router-admin.png");
    let dom = chromium(proxy + 1, &profile, &["--dump-dom", "http://192.168.1.1/"]);
    assert!(
        dom.contains("homenet router") && dom.contains("DHCP leases"),
        "{dom}"
    );
    chromium(
        proxy + 1,
        &profile,
        &[
            &format!("--screenshot={}", admin_png.display()),
            "http://192.168.1.1/",
        ],
    );

    let _ = std::fs::remove_dir_all(&profile);
    eprintln!("screenshots in {}", shots.display());
}
