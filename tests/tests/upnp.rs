//! Our router's IGD in the lab (issue 4): real clients (miniupnpc's `upnpc`, libnatpmp's
//! `natpmpc`) add, list and delete mappings; traffic flows through each mapping and stops when it
//! is deleted or expires; none of the IGD's services answer from the internet.
//!
//! miniupnpc 2.2 treats an IGD whose external address is reserved (our default WAN address is in
//! the documentation range 203.0.113.0/24) as "not connected" and stops unless given `-i`, so the
//! tests pass `-i`; the router itself serves that address like any other.

use std::time::Duration;

use tests::{Lab, LabOptions, RouterKind, require_root};

fn ours() -> LabOptions {
    LabOptions::new(RouterKind::Ours).cams(2)
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

/// What the internet sees on the WAN address and `port`: the page body, or None.
fn from_internet(lab: &Lab, port: u16) -> Option<String> {
    let wan = lab.wan_addr();
    let (ok, out) = lab.try_sh("inet", &format!("curl -sS -m 3 http://{wan}:{port}/"));
    ok.then(|| out.trim().to_string())
}

fn upnpc(lab: &Lab, node: &str, args: &str) -> String {
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
    assert_eq!(
        from_internet(&lab, 8080),
        None,
        "nothing is open before a mapping"
    );

    // -s: status, with the external address.
    let status = upnpc(&lab, "viewer", "-s");
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
        list.contains("8080->") && list.contains("'cam-one'"),
        "{list}"
    );
    assert!(
        list.contains("8081->") && list.contains("'cam-two'"),
        "{list}"
    );
    // -L: GetListOfPortMappings (IGDv2) lists them too.
    let listing = upnpc(&lab, "viewer", "-L");
    assert!(
        listing.contains("8080") && listing.contains("8081"),
        "{listing}"
    );

    // Secure mode (the default): the viewer cannot map a port to cam1 (606 on IGD:2).
    let (ok, out) = lab.try_sh("viewer", &format!("upnpc -i -a {cam1} 9090 9090 TCP 2>&1"));
    assert!(
        !ok && out.contains("606"),
        "secure mode let the viewer map cam1: {out}"
    );
    assert_eq!(from_internet(&lab, 9090), None);

    // -d: deleted, and the port closes.
    upnpc(&lab, "cam1", "-d 8080 TCP");
    assert_eq!(
        from_internet(&lab, 8080),
        None,
        "the port closed with its mapping"
    );
    assert_eq!(
        from_internet(&lab, 8081).as_deref(),
        Some("cam2"),
        "the other mapping stays"
    );

    // -r: redirect several ports at once, then -N deletes a range (IGDv2).
    upnpc(&lab, "cam2", "-r 8082 TCP 8083 TCP");
    let list = upnpc(&lab, "viewer", "-l");
    assert!(list.contains("8082->") && list.contains("8083->"), "{list}");
    upnpc(&lab, "cam2", "-N 8081 8083 TCP");
    let list = upnpc(&lab, "viewer", "-l");
    assert!(
        !list.contains("8081->") && !list.contains("8083->"),
        "range deleted: {list}"
    );
    assert_eq!(from_internet(&lab, 8081), None);

    // -n: a mapping whose external and internal ports differ.
    upnpc(&lab, "cam1", &format!("-n {cam1} 8080 18080 TCP 3600"));
    assert_eq!(from_internet(&lab, 18080).as_deref(), Some("cam1"));
}

#[test]
fn mapping_with_a_short_lease_expires_and_closes() {
    if !require_root() {
        return;
    }
    let lab = Lab::up(&ours()).expect("lab up");
    let cam1 = lab.addr("cam1").to_string();
    serve_name(&lab, "cam1", 8080);
    upnpc(&lab, "cam1", &format!("-e short -a {cam1} 8080 8080 TCP 3"));
    assert_eq!(from_internet(&lab, 8080).as_deref(), Some("cam1"));
    std::thread::sleep(Duration::from_secs(5));
    assert_eq!(
        from_internet(&lab, 8080),
        None,
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
    // Lifetime 0 deletes it (RFC 6886 section 3.4).
    lab.sh("cam1", "natpmpc -g 192.168.1.1 -a 8090 8090 tcp 0 2>&1");
    assert_eq!(from_internet(&lab, 8090), None);
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
        // SSDP M-SEARCH (unicast) and NAT-PMP external address request: no answer.
        let script = format!(
            "import socket\n\
             s=socket.socket(socket.AF_INET,socket.SOCK_DGRAM); s.settimeout(1.5)\n\
             s.sendto(b'M-SEARCH * HTTP/1.1\\r\\nHOST: 239.255.255.250:1900\\r\\nMAN: \"ssdp:discover\"\\r\\nMX: 1\\r\\nST: ssdp:all\\r\\n\\r\\n',('{target}',1900))\n\
             s.sendto(bytes([0,0]),('{target}',5351))\n\
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
    assert_eq!(from_internet(&lab, 8080), None);
}
