//! Issue 11, in a real browser: a LAN user's headless Chromium (run in the viewer's namespace)
//! opens an attacker's page (served from the internet, and from another LAN host) that tries
//! forms, `fetch` and DNS rebinding against the router at 192.168.1.1. Nothing changes and
//! nothing is read; the admin page itself still works, and its delete form with it.

use std::process::Command;

use tests::{Lab, LabOptions, RouterKind, python, repo_root, require_root};

fn assets() -> String {
    repo_root()
        .join("tests/scripts/csrf")
        .to_string_lossy()
        .into_owned()
}

/// Headless Chromium inside `node`'s namespace: its connections start from that LAN host. It
/// lets the page's scripts run for `budget_ms` of virtual time, then prints the DOM.
fn chromium(lab: &Lab, node: &str, budget_ms: u32, extra: &[&str], url: &str) -> String {
    let profile = format!("/tmp/{}-chromium-{node}", lab.prefix);
    let out = Command::new("ip")
        .args(["netns", "exec", &lab.ns(node), "timeout", "60", "chromium"])
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            &format!("--user-data-dir={profile}"),
        ])
        .arg(format!("--virtual-time-budget={budget_ms}"))
        .args(extra)
        .args(["--dump-dom", url])
        .output()
        .expect("chromium runs (netns-scripts/lab deps installs it)");
    let _ = std::fs::remove_dir_all(&profile);
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The status code `curl ARGS` gets from the viewer (a LAN host).
fn http_code(lab: &Lab, args: &str) -> String {
    lab.sh(
        "viewer",
        &format!("curl -sS -m 5 -o /dev/null -w '%{{http_code}}' {args}"),
    )
    .trim()
    .to_string()
}

/// What a user would check on the router: preset, WAN address, forwards, UPnP mappings.
fn router_state(lab: &Lab) -> (String, String, String, Vec<String>) {
    let status = lab.sh(
        "viewer",
        "curl -sS -m 5 --fail-with-body http://192.168.1.1/api/status",
    );
    let v: serde_json::Value = serde_json::from_str(&status).expect("status JSON");
    let mappings = v["upnp"]["mappings"]
        .as_array()
        .map(|a| a.iter().map(|m| m["external_port"].to_string()).collect())
        .unwrap_or_default();
    (
        v["preset"].to_string(),
        v["wan"]["address"].to_string(),
        v["forwards"].to_string(),
        mappings,
    )
}

#[test]
fn pages_elsewhere_cannot_change_or_read_the_router() {
    if !require_root() {
        return;
    }
    let lab = Lab::up(&LabOptions::new(RouterKind::Ours).cams(1)).expect("lab up");
    let cam1 = lab.addr("cam1").to_string();
    lab.sh("cam1", &format!("upnpc -i -e cam -a {cam1} 8080 8080 TCP"));
    // Some traffic, so that sessions exist to be read.
    let _ = lab.try_sh(
        "viewer",
        "curl -s -m 2 -o /dev/null http://198.51.100.10:1/ || true",
    );
    let before = router_state(&lab);
    assert_eq!(before.3, vec!["8080".to_string()], "{before:?}");

    // The attacker's page from the internet, and from another LAN host.
    lab.http_server("inet", "198.51.100.10", 8000, &assets());
    lab.http_server("cam1", &cam1, 8000, &assets());
    for url in [
        "http://198.51.100.10:8000/attack.html".to_string(),
        format!("http://{cam1}:8000/attack.html"),
    ] {
        let dom = chromium(&lab, "viewer", 8000, &[], &url);
        assert!(dom.contains("done"), "the page ran: {dom}");
        // Nothing readable came back: the no-cors answers are opaque, the reads blocked.
        assert!(
            !dom.contains("type=basic") && !dom.contains("type=cors"),
            "{url}: a cross-origin answer was readable:\n{dom}"
        );
        assert_eq!(
            router_state(&lab),
            before,
            "{url} changed the router:\n{dom}"
        );
    }

    // DNS rebinding: the attacker's name first points at its server (here on the viewer's own
    // address), then at the router; same-origin for the browser, a foreign Host for the router.
    let page = format!("{}/rebind.html", assets());
    let script = format!("{}/rebind.py", assets());
    let viewer = lab.addr("viewer").to_string();
    lab.spawn(
        "viewer",
        &[
            python(),
            &script,
            &viewer,
            "8081",
            &page,
            "192.168.1.1",
            "80",
        ],
    );
    lab.wait_tcp("viewer", &viewer, 8081);
    let dom = chromium(
        &lab,
        "viewer",
        8000,
        &[&format!(
            "--host-resolver-rules=MAP rebind.example {viewer}"
        )],
        "http://rebind.example:8081/rebind.html",
    );
    assert!(dom.contains("done"), "the rebinding page ran: {dom}");
    for line in [
        "read status",
        "read sessions",
        "read page",
        "json preset",
        "json forward",
    ] {
        assert!(
            dom.contains(&format!("{line}: status=421")),
            "{line} was not refused as misdirected:\n{dom}"
        );
    }
    assert!(
        !dom.contains("203.0.113.2"),
        "the WAN address leaked:\n{dom}"
    );
    assert_eq!(
        router_state(&lab),
        before,
        "rebinding changed the router:\n{dom}"
    );

    // The admin page itself, in the same browser: it renders, and its delete form (the
    // request the browser sends on a click: same origin, form-encoded, the page's token)
    // deletes the mapping. (Less virtual time than the page's 5 s self-refresh.)
    let dom = chromium(&lab, "viewer", 1000, &[], "http://192.168.1.1/");
    assert!(
        dom.contains("homenet router") && dom.contains("cam"),
        "{dom}"
    );
    let token = dom
        .split("name=\"csrf\" value=\"")
        .nth(1)
        .and_then(|r| r.split('"').next())
        .expect("the delete form carries the page's token")
        .to_string();
    let code = lab.sh(
        "viewer",
        &format!(
            "curl -sS -m 5 -o /dev/null -w '%{{http_code}}' -H 'Origin: http://192.168.1.1' \
             -H 'Sec-Fetch-Site: same-origin' -d 'protocol=tcp&port=8080&csrf={token}' \
             http://192.168.1.1/admin/mappings/delete"
        ),
    );
    assert_eq!(code.trim(), "303");
    assert!(router_state(&lab).3.is_empty(), "the mapping is gone");
}

/// The refusals one by one, as `curl` sees them.
#[test]
fn each_refusal_with_curl() {
    if !require_root() {
        return;
    }
    let lab = Lab::up(&LabOptions::new(RouterKind::Ours)).expect("lab up");
    let code = |args: &str| http_code(&lab, args);
    let json = "-H 'Content-Type: application/json'";
    let api = "http://192.168.1.1/api";
    for (args, want) in [
        (format!("{api}/status"), "200"),
        (format!("-H 'Host: rebind.example' {api}/status"), "421"),
        (
            format!("-H 'Host: 192.168.1.1.rebind.example' {api}/sessions"),
            "421",
        ),
        (format!("-d symmetric {api}/preset"), "415"),
        (
            format!("-H 'Content-Type: text/plain' -d symmetric {api}/preset"),
            "415",
        ),
        (
            format!(
                "{json} -H 'Origin: http://198.51.100.10:8000' -d '\"symmetric\"' {api}/preset"
            ),
            "403",
        ),
        (
            format!("{json} -H 'Origin: null' -X POST {api}/flush"),
            "403",
        ),
        (
            format!("{json} -H 'Sec-Fetch-Site: cross-site' -X POST {api}/flush"),
            "403",
        ),
        (
            format!("-H 'Origin: http://198.51.100.10' -X DELETE {api}/forwards/tcp/1"),
            "403",
        ),
        (
            "-d 'protocol=tcp&port=1' http://192.168.1.1/admin/mappings/delete".to_string(),
            "403",
        ),
        (format!("{json} -d '\"symmetric\"' {api}/preset"), "200"),
        (
            format!("{json} -H 'Origin: http://192.168.1.1' -X POST {api}/flush"),
            "200",
        ),
    ] {
        assert_eq!(code(&args), want, "curl {args}");
    }
    // UPnP control: text/xml, SOAPAction and the router's address in Host.
    let body = "<?xml version=\"1.0\"?><s:Envelope xmlns:s=\"http://schemas.xmlsoap.org/soap/envelope/\"><s:Body><u:GetExternalIPAddress xmlns:u=\"urn:schemas-upnp-org:service:WANIPConnection:2\"/></s:Body></s:Envelope>";
    let sa =
        "-H 'SOAPAction: \"urn:schemas-upnp-org:service:WANIPConnection:2#GetExternalIPAddress\"'";
    let ctl = "http://192.168.1.1:5000/ctl/IPConn";
    for (args, want) in [
        (
            format!("-H 'Content-Type: text/xml; charset=\"utf-8\"' {sa} -d '{body}' {ctl}"),
            "200",
        ),
        (
            format!("-H 'Content-Type: text/xml' {sa} -d '{body}' {ctl}"),
            "200",
        ),
        (
            format!("-H 'Content-Type: text/plain' {sa} -d '{body}' {ctl}"),
            "415",
        ),
        (format!("{sa} -d '{body}' {ctl}"), "415"),
        (
            format!("-H 'Content-Type: text/xml' -d '{body}' {ctl}"),
            "500",
        ),
        (
            format!(
                "-H 'Host: rebind.example:5000' -H 'Content-Type: text/xml' {sa} -d '{body}' {ctl}"
            ),
            "421",
        ),
    ] {
        assert_eq!(code(&args), want, "curl {args}");
    }
}

/// `[admin] password`: the page and the API ask for it; the IGD does not (control points have
/// no password to give). The lab's router is restarted with the section added to its file.
#[test]
fn an_admin_password_protects_the_page_and_the_api() {
    if !require_root() {
        return;
    }
    let lab = Lab::up(&LabOptions::new(RouterKind::Ours)).expect("lab up");
    let dir = format!("/run/homenet-lab/{}", lab.prefix);
    let pid = lab.router_pid().expect("the router's pid");
    let _ = Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status();
    let gone = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while std::path::Path::new(&format!("/proc/{pid}")).exists() {
        assert!(std::time::Instant::now() < gone, "the router did not stop");
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let conf = format!("{dir}/router.toml");
    let mut text = std::fs::read_to_string(&conf).expect("the lab's router.toml");
    text.push_str("\n[admin]\npassword = \"correct horse\"\n");
    std::fs::write(&conf, text).expect("router.toml written");
    let cmdline = std::fs::read_to_string(format!("{dir}/router.cmdline")).expect("cmdline");
    let args: Vec<&str> = cmdline.split_whitespace().collect();
    let pid = lab.spawn("rtr", &args);
    // So that `lab down` stops this one.
    std::fs::write(format!("{dir}/router.pid"), format!("{pid}\n")).expect("pid written");
    lab.wait_tcp("viewer", "192.168.1.1", 80);

    let code = |args: &str| http_code(&lab, args);
    let json = "-H 'Content-Type: application/json'";
    let pw = "-u 'admin:correct horse'";
    for (args, want) in [
        ("http://192.168.1.1/".to_string(), "401"),
        ("http://192.168.1.1/api/status".to_string(), "401"),
        ("http://192.168.1.1/metrics".to_string(), "401"),
        (
            format!("{json} -d '\"symmetric\"' http://192.168.1.1/api/preset"),
            "401",
        ),
        (
            "-u admin:wrong http://192.168.1.1/api/status".to_string(),
            "401",
        ),
        (format!("{pw} http://192.168.1.1/"), "200"),
        (format!("{pw} http://192.168.1.1/api/status"), "200"),
        (
            format!("{pw} {json} -d '\"symmetric\"' http://192.168.1.1/api/preset"),
            "200",
        ),
        ("http://192.168.1.1:5000/rootDesc.xml".to_string(), "200"),
    ] {
        assert_eq!(code(&args), want, "curl {args}");
    }
}
