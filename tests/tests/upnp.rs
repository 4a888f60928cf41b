//! Our router's IGD in the lab (issue 4): real clients add, list and delete mappings, and traffic
//! from the internet flows through each mapping and stops when it is deleted or expires; none of
//! the IGD's services answer from the internet. The clients:
//!
//! - miniupnpc's `upnpc` (`-s -l -L -a -d -n -N -r`);
//! - the `igd-next` crate, in `tests/src/bin/igd-next-client.rs` (search_gateway,
//!   get_external_ip, add_port, add_any_port, get_generic_port_mapping_entry, remove_port);
//! - libnatpmp's `natpmpc` (NAT-PMP);
//! - `tests/scripts/pcp.py`, a PCP client written from RFC 6887 alone (MAP, and its error paths).
//!
//! Every traffic check is end to end: a TCP server (python's http.server, serving the node's
//! name) or a UDP echo (`tests/scripts/udp.py echo`, which answers with the payload and the source
//! it saw) in a LAN namespace, and a client in the internet namespace (the terminal
//! 198.51.100.10) that connects to the router's WAN address and the mapped port.
//!
//! miniupnpc 2.2 treats an IGD whose external address is reserved (our default WAN address is in
//! the documentation range 203.0.113.0/24) as "not connected" and stops unless given `-i`, so the
//! tests pass `-i`; the router itself serves that address like any other. Discovery (SSDP) costs
//! upnpc 2 s a run, so only the `-s` runs discover; the others name the description URL (`-u`).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use tests::{Lab, LabOptions, RouterKind, python, repo_root, require_root};

/// The internet terminal (the lab's `inet` namespace), where the traffic checks start.
const TERMINAL: &str = "198.51.100.10";
/// The router's description, as SSDP announces it.
const DESC_URL: &str = "http://192.168.1.1:5000/rootDesc.xml";

fn ours() -> LabOptions {
    LabOptions::new(RouterKind::Ours).cams(2)
}

fn script(name: &str) -> String {
    repo_root()
        .join("tests/scripts")
        .join(name)
        .to_string_lossy()
        .into_owned()
}

/// Serve a page on `node`:`port` that names the node.
fn serve_name(lab: &Lab, node: &str, port: u16) {
    let dir = format!("/tmp/{}-{node}-{port}", lab.prefix);
    lab.sh(
        node,
        &format!("mkdir -p {dir} && echo '{node}' > {dir}/index.html"),
    );
    let addr = lab.addr(node).to_string();
    lab.http_server(node, &addr, port, &dir);
}

/// A UDP echo on `node`:`port` (it answers "PAYLOAD SRC_ADDR:SRC_PORT"). No wait: the
/// internet-side client resends until the echo answers.
fn udp_echo(lab: &Lab, node: &str, port: u16) {
    lab.spawn(
        node,
        &[
            python(),
            &script("udp.py"),
            "echo",
            "0.0.0.0",
            &port.to_string(),
        ],
    );
}

/// What the internet sees over TCP on the WAN address and `port`: the page body, or None when
/// nothing answers within `secs` (the router drops what no mapping admits, so a closed port
/// costs the whole timeout).
fn tcp_from_internet(lab: &Lab, port: u16, secs: u32) -> Option<String> {
    let wan = lab.wan_addr();
    let (ok, out) = lab.try_sh(
        "inet",
        &format!(
            "curl -sS --connect-timeout {secs} -m {} http://{wan}:{port}/",
            secs + 2
        ),
    );
    ok.then(|| out.trim().to_string())
}

/// The page behind WAN:`port`, expected to be open (a generous timeout).
fn from_internet(lab: &Lab, port: u16) -> Option<String> {
    tcp_from_internet(lab, port, 5)
}

/// True when a TCP connection from the internet to WAN:`port` does not get through (1 s: the
/// lab's round trip is well under a millisecond).
fn tcp_closed(lab: &Lab, port: u16) -> bool {
    tcp_from_internet(lab, port, 1).is_none()
}

/// A datagram from the terminal's `src_port` to WAN:`port`, resent every 0.5 s for `secs`: the
/// echo's answer, or None.
fn udp_from_internet(lab: &Lab, port: u16, src_port: u16, secs: f32) -> Option<String> {
    let wan = lab.wan_addr();
    let (ok, out) = lab.try_sh(
        "inet",
        &format!(
            "{} {} ask {src_port} {wan} {port} via-{port} {secs} 2>/dev/null",
            python(),
            script("udp.py")
        ),
    );
    ok.then(|| out.trim().to_string())
}

/// Asserts that UDP from the terminal's `src_port` reaches the echo behind WAN:`port`, unchanged
/// and with the terminal's own source (the router translates the destination only).
fn assert_udp_open(lab: &Lab, port: u16, src_port: u16) {
    assert_eq!(
        udp_from_internet(lab, port, src_port, 10.0).as_deref(),
        Some(format!("via-{port} {TERMINAL}:{src_port}").as_str()),
        "UDP to WAN port {port}"
    );
}

/// True when no datagram from the terminal's `src_port` gets an echo through WAN:`port` (two
/// sends, 0.5 s apart).
fn udp_closed(lab: &Lab, port: u16, src_port: u16) -> bool {
    udp_from_internet(lab, port, src_port, 1.0).is_none()
}

/// Polls `check` (each call takes its own time) until it holds or `deadline` passes.
fn eventually(deadline: Instant, mut check: impl FnMut() -> bool) -> bool {
    loop {
        if check() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// upnpc against the description URL (no discovery).
fn upnpc(lab: &Lab, node: &str, args: &str) -> String {
    lab.sh(node, &format!("upnpc -i -u {DESC_URL} {args} 2>&1"))
}

/// upnpc with SSDP discovery first.
fn upnpc_discover(lab: &Lab, node: &str, args: &str) -> String {
    lab.sh(node, &format!("upnpc -i {args} 2>&1"))
}

#[test]
fn upnpc_adds_lists_and_deletes_and_traffic_follows() {
    if !require_root() {
        return;
    }
    let lab = Lab::up(&ours()).expect("lab up");
    let (cam1, cam2) = (lab.addr("cam1").to_string(), lab.addr("cam2").to_string());
    serve_name(&lab, "cam1", 8080);
    serve_name(&lab, "cam2", 8081);
    serve_name(&lab, "cam2", 8084);
    udp_echo(&lab, "cam2", 9085);
    assert!(tcp_closed(&lab, 8080), "nothing is open before a mapping");

    // -s: discovery, then the status with the external address.
    let status = upnpc_discover(&lab, "viewer", "-s");
    assert!(
        status.contains(&format!("ExternalIPAddress = {}", lab.wan_addr())),
        "{status}"
    );
    assert!(status.contains("Connected"), "{status}");

    // -a from each camera, for itself.
    let out = upnpc(&lab, "cam1", &format!("-e cam-one -a {cam1} 8080 8080 TCP"));
    assert!(out.contains("is redirected to internal"), "{out}");
    upnpc(
        &lab,
        "cam2",
        &format!("-e cam-two -a {cam2} 8081 8081 TCP 3600"),
    );
    assert_eq!(from_internet(&lab, 8080).as_deref(), Some("cam1"));
    assert_eq!(from_internet(&lab, 8081).as_deref(), Some("cam2"));

    // -l: the generic walk lists both with their descriptions.
    let list = upnpc(&lab, "viewer", "-l");
    assert!(
        list.contains(&format!("8080->{cam1}:8080")) && list.contains("'cam-one'"),
        "{list}"
    );
    assert!(
        list.contains(&format!("8081->{cam2}:8081")) && list.contains("'cam-two'"),
        "{list}"
    );
    // -L: GetListOfPortMappings (IGDv2) lists them too.
    let listing = upnpc(&lab, "viewer", "-L");
    assert!(
        listing.contains("8080") && listing.contains("8081"),
        "{listing}"
    );

    // Secure mode (the default): the viewer cannot map a port to cam1 (606 on IGD:2).
    let (ok, out) = lab.try_sh(
        "viewer",
        &format!("upnpc -i -u {DESC_URL} -a {cam1} 9090 9090 TCP 2>&1"),
    );
    assert!(
        !ok && out.contains("606"),
        "secure mode let the viewer map cam1: {out}"
    );
    assert!(tcp_closed(&lab, 9090));

    // -n: AddAnyPortMapping (IGDv2) for a port cam2 holds: the router picks another one, and
    // traffic to it reaches cam1 while 8081 still reaches cam2.
    let out = upnpc(
        &lab,
        "cam1",
        &format!("-e any -n {cam1} 8080 8081 TCP 3600"),
    );
    let any: u16 = out
        .lines()
        .find_map(|l| {
            l.strip_prefix(&format!("external {}:", lab.wan_addr()))?
                .strip_suffix(&format!(
                    " TCP is redirected to internal {cam1}:8080 (duration=3600)"
                ))?
                .parse()
                .ok()
        })
        .unwrap_or_else(|| panic!("no port in upnpc -n's answer: {out}"));
    assert_ne!(any, 8081, "AddAnyPortMapping took a port in use: {out}");
    assert_eq!(from_internet(&lab, any).as_deref(), Some("cam1"));
    assert_eq!(from_internet(&lab, 8081).as_deref(), Some("cam2"));

    // -d: deleted, and the port closes; the others stay.
    upnpc(&lab, "cam1", "-d 8080 TCP");
    assert!(tcp_closed(&lab, 8080), "the port closed with its mapping");
    assert_eq!(
        from_internet(&lab, 8081).as_deref(),
        Some("cam2"),
        "the other mapping stays"
    );
    assert_eq!(from_internet(&lab, any).as_deref(), Some("cam1"));

    // -r: redirect a list of ports to the caller, one with its own external port and protocol.
    let out = upnpc(&lab, "cam2", "-r 8084 TCP 9085 19085 UDP");
    assert!(!out.contains("failed"), "{out}");
    let list = upnpc(&lab, "viewer", "-l");
    assert!(
        list.contains(&format!("8084->{cam2}:8084"))
            && list.contains(&format!("19085->{cam2}:9085")),
        "{list}"
    );
    assert_eq!(from_internet(&lab, 8084).as_deref(), Some("cam2"));
    assert_udp_open(&lab, 19085, 40001);

    // -N: DeletePortMappingRange (IGDv2, Manage 0) removes cam2's TCP mappings in 8081-8084,
    // not cam1's (the -n port, if it fell in the range), not the UDP one.
    upnpc(&lab, "cam2", "-N 8081 8084 TCP");
    let list = upnpc(&lab, "viewer", "-l");
    assert!(
        !list.contains("8081->") && !list.contains("8084->"),
        "range deleted: {list}"
    );
    assert!(tcp_closed(&lab, 8081));
    assert!(tcp_closed(&lab, 8084));
    assert_eq!(from_internet(&lab, any).as_deref(), Some("cam1"));
    assert_udp_open(&lab, 19085, 40002);

    // The last two go with -d, and so does their traffic (also the flow that used it).
    upnpc(&lab, "cam2", "-d 19085 UDP");
    assert!(udp_closed(&lab, 19085, 40001));
    upnpc(&lab, "cam1", &format!("-d {any} TCP"));
    assert!(tcp_closed(&lab, any));
    let list = upnpc(&lab, "viewer", "-l");
    assert!(!list.contains("->192.168.1."), "table not empty: {list}");
}

#[test]
fn mapping_with_a_short_lease_expires_and_closes() {
    if !require_root() {
        return;
    }
    let lab = Lab::up(&ours()).expect("lab up");
    let cam1 = lab.addr("cam1").to_string();
    serve_name(&lab, "cam1", 8080);
    let added = Instant::now();
    upnpc(&lab, "cam1", &format!("-e short -a {cam1} 8080 8080 TCP 3"));
    assert_eq!(from_internet(&lab, 8080).as_deref(), Some("cam1"));
    std::thread::sleep(Duration::from_secs(3).saturating_sub(added.elapsed()));
    assert!(
        eventually(added + Duration::from_secs(10), || tcp_closed(&lab, 8080)),
        "the lease expired and the port closed"
    );
    assert!(
        !upnpc(&lab, "viewer", "-l").contains("'short'"),
        "expired mapping still listed"
    );
}

#[test]
fn natpmp_client_maps_and_unmaps() {
    if !require_root() {
        return;
    }
    let lab = Lab::up(&ours()).expect("lab up");
    serve_name(&lab, "cam1", 8090);
    udp_echo(&lab, "cam1", 9091);
    let out = lab.sh("cam1", "natpmpc -g 192.168.1.1 2>&1");
    assert!(
        out.contains(&format!("Public IP address : {}", lab.wan_addr())),
        "{out}"
    );
    let out = lab.sh("cam1", "natpmpc -g 192.168.1.1 -a 8090 8090 tcp 60 2>&1");
    assert!(out.contains("Mapped public port 8090"), "{out}");
    assert_eq!(from_internet(&lab, 8090).as_deref(), Some("cam1"));
    // The same table: upnpc sees the NAT-PMP mapping.
    assert!(upnpc(&lab, "viewer", "-l").contains("8090->"));
    let out = lab.sh("cam1", "natpmpc -g 192.168.1.1 -a 9091 9091 udp 60 2>&1");
    assert!(
        out.contains("Mapped public port 9091 protocol UDP"),
        "{out}"
    );
    assert_udp_open(&lab, 9091, 40011);
    // Lifetime 0 deletes it (RFC 6886 section 3.4), and the traffic stops (also the flow that
    // went through it).
    lab.sh("cam1", "natpmpc -g 192.168.1.1 -a 8090 8090 tcp 0 2>&1");
    assert!(tcp_closed(&lab, 8090));
    lab.sh("cam1", "natpmpc -g 192.168.1.1 -a 9091 9091 udp 0 2>&1");
    assert!(udp_closed(&lab, 9091, 40011));
    assert!(!upnpc(&lab, "viewer", "-l").contains("->192.168.1."));
}

#[test]
fn igd_services_do_not_answer_from_the_internet() {
    if !require_root() {
        return;
    }
    let lab = Lab::up(&ours()).expect("lab up");
    let wan = lab.wan_addr();
    // A hostile neighbour on the WAN link even routes the LAN prefix to the router.
    lab.sh("inet", &format!("ip route add 192.168.1.0/24 via {wan}"));
    for target in [wan.to_string(), "192.168.1.1".to_string()] {
        let (ok, _) = lab.try_sh(
            "inet",
            &format!("curl -sS -m 2 http://{target}:5000/rootDesc.xml"),
        );
        assert!(!ok, "description served to the internet on {target}");
        // SSDP M-SEARCH (unicast), a NAT-PMP external address request and a PCP ANNOUNCE
        // (RFC 6887 section 14.1: header only, the client address IPv4-mapped): no answer.
        let script = format!(
            "import socket\n\
             s=socket.socket(socket.AF_INET,socket.SOCK_DGRAM); s.settimeout(1.5)\n\
             s.sendto(b'M-SEARCH * HTTP/1.1\\r\\nHOST: 239.255.255.250:1900\\r\\nMAN: \"ssdp:discover\"\\r\\nMX: 1\\r\\nST: ssdp:all\\r\\n\\r\\n',('{target}',1900))\n\
             s.sendto(bytes([0,0]),('{target}',5351))\n\
             s.sendto(bytes([2,0,0,0,0,0,0,0]+[0]*10+[255,255]+[198,51,100,10]),('{target}',5351))\n\
             try:\n\
             \x20   print(s.recvfrom(2048)); raise SystemExit(1)\n\
             except socket.timeout:\n\
             \x20   print('silent')\n"
        );
        let out = lab.sh("inet", &format!("python3 -c \"{script}\""));
        assert_eq!(
            out.trim(),
            "silent",
            "SSDP or NAT-PMP answered the internet on {target}"
        );
    }
    // The same requests from the LAN are answered (so the silence above means something).
    let (ok, _) = lab.try_sh(
        "viewer",
        "curl -sS -m 2 -o /dev/null http://192.168.1.1:5000/rootDesc.xml",
    );
    assert!(ok, "the description is served on the LAN");
}

#[test]
fn permissive_mode_lets_any_lan_host_map_for_another() {
    if !require_root() {
        return;
    }
    let lab = Lab::up(&ours().arg("--secure").arg("off")).expect("lab up");
    let cam1 = lab.addr("cam1").to_string();
    serve_name(&lab, "cam1", 8080);
    let out = upnpc(
        &lab,
        "viewer",
        &format!("-e by-viewer -a {cam1} 8080 8080 TCP"),
    );
    assert!(out.contains("is redirected to internal"), "{out}");
    assert_eq!(from_internet(&lab, 8080).as_deref(), Some("cam1"));
    upnpc(&lab, "viewer", "-d 8080 TCP");
    assert!(tcp_closed(&lab, 8080));
}

/// Runs the igd-next client in `node`, discovering the router by a unicast M-SEARCH (answered at
/// once; `search` below discovers it by multicast); its stdout, and whether it succeeded (status 2
/// is a refusal by the IGD, printed as `error: ...`).
fn igd_next(lab: &Lab, node: &str, args: &[&str]) -> (bool, String) {
    let mut cmd = vec![env!("CARGO_BIN_EXE_igd-next-client")];
    if args != ["search"] {
        cmd.extend_from_slice(&["--ssdp", "192.168.1.1:1900"]);
    }
    cmd.extend_from_slice(args);
    let out = lab.exec(node, &cmd);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success() || out.status.code() == Some(2),
        "igd-next-client {args:?} in {node} failed ({}): {text}{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

#[test]
fn igd_next_client_maps_tcp_and_udp_and_traffic_follows() {
    if !require_root() {
        return;
    }
    let lab = Lab::up(&ours()).expect("lab up");
    let (cam1, cam2) = (lab.addr("cam1").to_string(), lab.addr("cam2").to_string());
    let wan = lab.wan_addr();
    serve_name(&lab, "cam1", 8100);
    udp_echo(&lab, "cam1", 9100);

    // search_gateway (multicast SSDP from the LAN namespace) and get_external_ip.
    let (_, out) = igd_next(&lab, "cam1", &["search"]);
    assert!(out.contains("gateway 192.168.1.1:5000 "), "{out}");
    assert!(out.contains(&format!("external-ip {wan}\n")), "{out}");
    assert!(tcp_closed(&lab, 8100), "nothing is open before a mapping");

    // add_port (TCP): the internet reaches cam1's server.
    let local_tcp = format!("{cam1}:8100");
    let (ok, out) = igd_next(
        &lab,
        "cam1",
        &["add", "tcp", "8100", &local_tcp, "600", "igd-next tcp"],
    );
    assert!(
        ok && out.contains(&format!("added TCP 8100 -> {local_tcp}")),
        "{out}"
    );
    assert_eq!(from_internet(&lab, 8100).as_deref(), Some("cam1"));

    // add_any_port (UDP): the IGD assigns the port; the echo answers through it.
    let local_udp = format!("{cam1}:9100");
    let (ok, out) = igd_next(
        &lab,
        "cam1",
        &["add-any", "udp", &local_udp, "600", "igd-next udp"],
    );
    let any: u16 = out
        .strip_prefix("added-any UDP ")
        .and_then(|r| r.split_whitespace().next())
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("add_any_port: {out}"));
    assert!(ok && any != 0, "{out}");
    assert_udp_open(&lab, any, 41000);

    // Secure mode: cam1 may not map a port to cam2.
    let other = format!("{cam2}:8100");
    let (ok, out) = igd_next(&lab, "cam1", &["add", "tcp", "8101", &other, "600", "x"]);
    assert!(!ok && out.contains("ActionNotAuthorized"), "{out}");
    assert!(tcp_closed(&lab, 8101));

    // get_generic_port_mapping_entry: both, then 713 (SpecifiedArrayIndexInvalid) at index 2.
    let (_, list) = igd_next(&lab, "viewer", &["list"]);
    assert!(
        list.contains(&format!("TCP 8100 -> {local_tcp} ")) && list.contains("desc='igd-next tcp'"),
        "{list}"
    );
    assert!(
        list.contains(&format!("UDP {any} -> {local_udp} "))
            && list.contains("desc='igd-next udp'"),
        "{list}"
    );
    assert!(list.contains("end 2 SpecifiedArrayIndexInvalid"), "{list}");

    // remove_port: each mapping's traffic stops, the other's goes on.
    let (ok, out) = igd_next(&lab, "cam1", &["remove", "tcp", "8100"]);
    assert!(ok && out.contains("removed TCP 8100"), "{out}");
    assert!(
        tcp_closed(&lab, 8100),
        "TCP still gets through after remove_port"
    );
    assert_udp_open(&lab, any, 41000);
    let (ok, out) = igd_next(&lab, "cam1", &["remove", "udp", &any.to_string()]);
    assert!(ok, "{out}");
    assert!(
        udp_closed(&lab, any, 41000),
        "UDP (the same flow) still gets through after remove_port"
    );
    assert!(udp_closed(&lab, any, 41001), "a new UDP flow gets through");

    // Removing it again is 714 (NoSuchEntryInArray); the table is empty.
    let (ok, out) = igd_next(&lab, "cam1", &["remove", "tcp", "8100"]);
    assert!(!ok && out.contains("NoSuchPortMapping"), "{out}");
    let (_, list) = igd_next(&lab, "viewer", &["list"]);
    assert!(list.contains("end 0 SpecifiedArrayIndexInvalid"), "{list}");
}

/// Runs `tests/scripts/pcp.py ARGS` in `node` and returns the response's fields, or None when
/// no response came within its `--timeout`.
fn pcp(lab: &Lab, node: &str, args: &str) -> Option<HashMap<String, String>> {
    let (ok, out) = lab.try_sh(node, &format!("{} {} {args}", python(), script("pcp.py")));
    if !ok {
        assert!(out.contains("no-response"), "pcp.py {args}: {out}");
        return None;
    }
    let line = out.lines().find(|l| l.starts_with("result="));
    let line = line.unwrap_or_else(|| panic!("pcp.py {args}: {out}"));
    Some(
        line.split_whitespace()
            .filter_map(|kv| kv.split_once('='))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    )
}

/// A PCP response that must have come; its fields.
fn pcp_ok(lab: &Lab, node: &str, args: &str) -> HashMap<String, String> {
    pcp(lab, node, args).unwrap_or_else(|| panic!("no PCP response to {args}"))
}

/// Asserts a response's result name (RFC 6887 section 7.4) and that it answers our MAP.
fn assert_result(r: &HashMap<String, String>, name: &str) {
    assert_eq!(r["name"], name, "{r:?}");
    assert_eq!(
        (r["version"].as_str(), r["r"].as_str()),
        ("2", "1"),
        "{r:?}"
    );
}

const NONCE_TCP: &str = "0102030405060708090a0b0c";
const NONCE_UDP: &str = "a1a2a3a4a5a6a7a8a9aaabac";
const NONCE_OTHER: &str = "ffeeddccbbaa998877665544";

#[test]
fn pcp_map_traffic_delete_expiry_and_error_paths() {
    if !require_root() {
        return;
    }
    let lab = Lab::up(&ours()).expect("lab up");
    let wan = lab.wan_addr().to_string();
    let cam1 = lab.addr("cam1").to_string();
    serve_name(&lab, "cam1", 8200);
    serve_name(&lab, "cam2", 8200);
    udp_echo(&lab, "cam1", 9200);
    assert!(tcp_closed(&lab, 8200), "nothing is open before a mapping");

    // MAP TCP with a suggested external port: granted as suggested, at the WAN address, with
    // our nonce and the requested lifetime.
    let r = pcp_ok(
        &lab,
        "cam1",
        &format!("--nonce {NONCE_TCP} map tcp 8200 8200 120"),
    );
    assert_result(&r, "SUCCESS");
    assert_eq!(
        (
            r["nonce"].as_str(),
            r["protocol"].as_str(),
            r["internal_port"].as_str(),
            r["external_port"].as_str(),
            r["external_addr"].as_str(),
            r["lifetime"].as_str()
        ),
        (NONCE_TCP, "6", "8200", "8200", wan.as_str(), "120"),
        "{r:?}"
    );
    assert_eq!(from_internet(&lab, 8200).as_deref(), Some("cam1"));
    // MAP UDP without a suggestion: the router assigns a port; the echo answers through it.
    let r = pcp_ok(
        &lab,
        "cam1",
        &format!("--nonce {NONCE_UDP} map udp 9200 0 120"),
    );
    assert_result(&r, "SUCCESS");
    let udp: u16 = r["external_port"].parse().expect("external port");
    assert!(udp != 0 && r["external_addr"] == wan, "{r:?}");
    assert_udp_open(&lab, udp, 42000);
    // The same table as UPnP: upnpc lists both.
    let list = upnpc(&lab, "viewer", "-l");
    assert!(
        list.contains("8200->") && list.contains(&format!("{udp}->")) && list.contains("'PCP'"),
        "{list}"
    );
    // A renewal with the same nonce keeps the port (section 11.3).
    let r = pcp_ok(
        &lab,
        "cam1",
        &format!("--nonce {NONCE_TCP} map tcp 8200 0 120"),
    );
    assert_result(&r, "SUCCESS");
    assert_eq!(r["external_port"], "8200", "{r:?}");

    // Another host suggests the port cam1 holds: it gets another one (section 11.3), which
    // reaches cam2 while 8200 still reaches cam1; with PREFER_FAILURE (section 13.2) it gets
    // CANNOT_PROVIDE_EXTERNAL instead.
    let r = pcp_ok(
        &lab,
        "cam2",
        &format!("--nonce {NONCE_OTHER} --option 2 map tcp 8200 8200 120"),
    );
    assert_result(&r, "CANNOT_PROVIDE_EXTERNAL");
    let r = pcp_ok(
        &lab,
        "cam2",
        &format!("--nonce {NONCE_OTHER} map tcp 8200 8200 120"),
    );
    assert_result(&r, "SUCCESS");
    let cam2_port: u16 = r["external_port"].parse().expect("external port");
    assert_ne!(cam2_port, 8200, "{r:?}");
    assert_eq!(from_internet(&lab, cam2_port).as_deref(), Some("cam2"));
    assert_eq!(from_internet(&lab, 8200).as_deref(), Some("cam1"));

    // Error paths, each with the RFC's result code, none of which touches the mappings.
    // Another nonce for cam1's mapping (section 11.3): NOT_AUTHORIZED.
    let r = pcp_ok(
        &lab,
        "cam1",
        &format!("--nonce {NONCE_OTHER} map tcp 8200 8200 120"),
    );
    assert_result(&r, "NOT_AUTHORIZED");
    // The error's lifetime is what remains of the mapping it may not touch (of 120 s).
    let left: u32 = r["lifetime"].parse().unwrap();
    assert!((60..=120).contains(&left), "{r:?}");
    // ...nor may that nonce delete it: NOT_AUTHORIZED again, and the mapping stays.
    let r = pcp_ok(
        &lab,
        "cam1",
        &format!("--nonce {NONCE_OTHER} map tcp 8200 0 0"),
    );
    assert_result(&r, "NOT_AUTHORIZED");
    assert_eq!(
        from_internet(&lab, 8200).as_deref(),
        Some("cam1"),
        "a foreign nonce deleted the mapping"
    );
    let cases: [(&str, &str); 10] = [
        // Section 9: a version we do not speak; the answer carries ours (2).
        ("--version 3", "UNSUPP_VERSION"),
        ("--version 1", "UNSUPP_VERSION"),
        // Section 8.3: not a multiple of 4 octets, or too short for MAP.
        ("--append 1", "MALFORMED_REQUEST"),
        ("--append 2", "MALFORMED_REQUEST"),
        ("--truncate 24", "MALFORMED_REQUEST"),
        // Section 8.3: the client address is not the packet's source.
        ("--client 192.168.1.250", "ADDRESS_MISMATCH"),
        // An opcode we do not implement (PEER, section 12, and an unassigned one).
        ("--opcode 2", "UNSUPP_OPCODE"),
        ("--opcode 9", "UNSUPP_OPCODE"),
        // Section 7.3: a mandatory option (code < 128) we do not know.
        ("--option 99", "UNSUPP_OPTION"),
        // Section 13.1: THIRD_PARTY, which the router does not offer.
        (
            "--option 1:00000000000000000000ffffc0a801fa",
            "UNSUPP_OPTION",
        ),
    ];
    for (opts, want) in cases {
        let r = pcp_ok(
            &lab,
            "cam1",
            &format!("--nonce {NONCE_TCP} {opts} map tcp 8200 8200 120"),
        );
        assert_result(&r, want);
    }
    // Section 11.1: SCTP cannot be mapped; port 0 ("all ports") with a lifetime is malformed.
    let r = pcp_ok(
        &lab,
        "cam1",
        &format!("--nonce {NONCE_TCP} map 132 8200 8200 120"),
    );
    assert_result(&r, "UNSUPP_PROTOCOL");
    let r = pcp_ok(
        &lab,
        "cam1",
        &format!("--nonce {NONCE_TCP} map tcp 0 0 120"),
    );
    assert_result(&r, "MALFORMED_REQUEST");
    // Section 8.3: a message with the R bit set, or shorter than the header, gets no answer.
    for opts in ["--r-bit", "--truncate 20"] {
        assert!(
            pcp(
                &lab,
                "cam1",
                &format!("--timeout 1 --nonce {NONCE_TCP} {opts} map tcp 8200 8200 120")
            )
            .is_none(),
            "answered {opts}"
        );
    }
    // The router serves on: it runs, the mappings carry traffic, a new MAP works.
    let pid = lab.router_pid().expect("router pid");
    assert!(
        std::path::Path::new(&format!("/proc/{pid}")).exists(),
        "the router died"
    );
    assert_eq!(from_internet(&lab, 8200).as_deref(), Some("cam1"));
    assert_udp_open(&lab, udp, 42001);
    let r = pcp_ok(
        &lab,
        "cam1",
        &format!("--nonce {NONCE_TCP} map tcp 8200 8200 120"),
    );
    assert_result(&r, "SUCCESS");

    // Lifetime 0 with the right nonce deletes (section 15), and the traffic stops, also the
    // UDP flow that went through the mapping.
    let r = pcp_ok(
        &lab,
        "cam1",
        &format!("--nonce {NONCE_TCP} map tcp 8200 0 0"),
    );
    assert_result(&r, "SUCCESS");
    assert_eq!(r["lifetime"], "0", "{r:?}");
    assert!(
        tcp_closed(&lab, 8200),
        "TCP still gets through after the delete"
    );
    let r = pcp_ok(
        &lab,
        "cam1",
        &format!("--nonce {NONCE_UDP} map udp 9200 0 0"),
    );
    assert_result(&r, "SUCCESS");
    assert!(
        udp_closed(&lab, udp, 42000),
        "UDP still gets through after the delete"
    );
    assert_eq!(from_internet(&lab, cam2_port).as_deref(), Some("cam2"));

    // A short lifetime: granted as asked, open at once, closed after it runs out (the router
    // expires leases every second), TCP and UDP.
    let mapped = Instant::now();
    let r = pcp_ok(
        &lab,
        "cam1",
        &format!("--nonce {NONCE_TCP} map tcp 8200 8200 4"),
    );
    assert_result(&r, "SUCCESS");
    assert_eq!(r["lifetime"], "4", "{r:?}");
    let r = pcp_ok(
        &lab,
        "cam1",
        &format!("--nonce {NONCE_UDP} map udp 9200 {udp} 4"),
    );
    assert_result(&r, "SUCCESS");
    assert_eq!(r["external_port"], udp.to_string(), "{r:?}");
    assert_eq!(from_internet(&lab, 8200).as_deref(), Some("cam1"));
    assert_udp_open(&lab, udp, 42002);
    std::thread::sleep(Duration::from_secs(4).saturating_sub(mapped.elapsed()));
    let deadline = mapped + Duration::from_secs(10);
    assert!(
        eventually(deadline, || tcp_closed(&lab, 8200)),
        "TCP still gets through after the lifetime"
    );
    assert!(
        eventually(deadline, || udp_closed(&lab, udp, 42002)),
        "UDP (the same flow) still gets through after the lifetime"
    );
    let list = upnpc(&lab, "viewer", "-l");
    assert!(
        !list.contains(&format!("8200->{cam1}:8200")) && !list.contains(&format!("{udp}->")),
        "expired mapping listed: {list}"
    );
    assert!(list.contains(&format!("{cam2_port}->")), "{list}");
}
