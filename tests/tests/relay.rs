//! The relay in the lab (issue 12, seeds 003 and 004): cameras behind a carrier-grade NAT or a
//! router with UPnP off, reachable from the internet only through the relay.
//!
//! First the lab's own promises (the topology every relay test stands on): the carrier NAT
//! really translates the homes' 100.64/10 addresses to the ISP's one public address and lets
//! nothing in, homes are isolated from each other, UPnP off means no IGD and no NAT-PMP.

use tests::{Lab, LabOptions, RouterKind, require_root};

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
fn carrier_nat_translates_homes_to_one_public_address_and_lets_nothing_in() {
    if !require_root() {
        return;
    }
    let lab = Lab::up(
        &LabOptions::new(RouterKind::Ours)
            .cams(1)
            .carrier_nat()
            .homes(2)
            .upnp_off(),
    )
    .expect("lab up");

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
}
