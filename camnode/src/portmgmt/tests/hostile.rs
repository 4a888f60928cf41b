//! Issue 11: the port manager against a hostile or broken router side: answers that never come,
//! and descriptions that point the camera's requests elsewhere.

use super::*;

/// The generated description with every controlURL replaced by `control` (XML-escaped as a
/// rogue IGD would send it).
fn rogue_description(control: &str) -> String {
    let text = root_description(&root_config("rogue"));
    let mut out = String::new();
    let mut rest = text.as_str();
    while let Some(i) = rest.find("<controlURL>") {
        out.push_str(&rest[..i + "<controlURL>".len()]);
        rest = &rest[i + "<controlURL>".len()..];
        let end = rest.find("</controlURL>").expect("closed");
        out.push_str(control);
        rest = &rest[end..];
    }
    out.push_str(rest);
    out
}

/// Issue 11: a request whose answer the driver never delivers (the request task panicked on a
/// chunk size near `u64::MAX`) blocked every later request: no renewal for an hour. With the
/// core's deadline it counts as a failed request: rediscovery, and the mapping is renewed.
#[test]
fn a_lost_answer_is_an_error_not_a_stall() {
    let mut sim = Sim::new(FakeIgd::new(false));
    let a = sim.add(named(1, Some("a")), opts());
    sim.run_for(secs(1.0));
    assert_eq!(sim.dir(a).role, Role::Representative);
    let adds = sim.igd.actions("AddPortMapping").len();
    // The renewal at half-life (1800 s) gets no answer.
    sim.lose_http = true;
    sim.run_for(secs(1801.0));
    let asked = sim.requests.len();
    assert!(asked > 0);
    sim.lose_http = false;
    sim.run_for(secs(30.0));
    assert!(
        sim.requests.len() > asked,
        "no request after the lost answer: port management stalled"
    );
    assert!(
        sim.igd.actions("AddPortMapping").len() > adds,
        "the mapping is renewed after rediscovery: {:?}",
        sim.igd.log
    );
    assert_eq!(sim.dir(a).reachability, Reachability::Reachable);
}

/// Issue 11: a rogue IGD's description named a control URL on another host, with CR LF
/// (`&#13;&#10;`) in it: the camera sent `POST /x\r\nX-Injected: yes` to 192.168.1.50:8445.
/// Such descriptions are refused: no request leaves for any host but the description's, and
/// none carries a control character.
#[test]
fn a_rogue_control_url_is_refused() {
    for control in [
        "http://192.168.1.50:8445/x&#13;&#10;X-Injected: yes",
        "http://192.168.1.50:8445/x",
        "/ctl/IPConn&#13;&#10;X-Injected: yes",
        "/ctl/IP Conn",
    ] {
        let mut igd = FakeIgd::new(false);
        igd.description = Some(rogue_description(control));
        let mut sim = Sim::new(igd);
        let a = sim.add(named(1, Some("a")), opts());
        sim.run_for(secs(10.0));
        assert!(!sim.requests.is_empty());
        for (_, r) in &sim.requests {
            assert_eq!(r.url.host, ROUTER.to_string(), "{control}: {:?}", r.url);
            assert!(
                !r.url.path.bytes().any(|b| b <= b' ' || b == 0x7f),
                "{control}: {:?}",
                r.url
            );
            assert!(r.body.is_none(), "{control}: a control request was sent");
        }
        assert!(sim.igd.log.is_empty(), "{control}: {:?}", sim.igd.log);
        assert_ne!(sim.dir(a).reachability, Reachability::Reachable);
    }
    // The same description with a control URL on the router itself is used.
    let mut igd = FakeIgd::new(false);
    igd.description = Some(rogue_description("http://192.168.1.1:5000/ctl/IPConn"));
    let mut sim = Sim::new(igd);
    let a = sim.add(named(1, Some("a")), opts());
    sim.run_for(secs(2.0));
    assert_eq!(sim.dir(a).reachability, Reachability::Reachable);
}

/// Issue 11: two nodes with one id (here: the same state file) dropped each other's messages
/// as their own loopback, and the representative listed no other camera. The node that hears
/// its id from another address says so, takes a new id, stores it, and from then on both are
/// distinct: the representative lists the other.
#[test]
fn a_node_that_hears_its_own_id_from_another_address_takes_a_new_one() {
    let mut sim = Sim::new(FakeIgd::new(true));
    let a = sim.add(named(5, None), el_opts());
    sim.run_for(secs(1.0));
    let b = sim.add(named(5, None), el_opts());
    sim.run_for(secs(5.0));
    let (ia, ib) = (sim.nodes[a].pm.identity().id, sim.nodes[b].pm.identity().id);
    assert_ne!(ia, ib, "still one id for two nodes");
    let changed = if ia != 5 { a } else { b };
    let saved = sim.nodes[changed]
        .saved
        .as_ref()
        .expect("the new id is stored");
    assert_eq!(saved.id, sim.nodes[changed].pm.identity().id);
    let warning = sim
        .dir(changed)
        .warning
        .clone()
        .expect("the status says so");
    assert!(warning.contains("0000000000000005"), "{warning}");
    sim.run_for(secs(6.0));
    assert_eq!(sim.reps(), [a]);
    assert_eq!(sim.dir(a).peers.len(), 1, "{:?}", sim.dir(a).peers);
    assert_ne!(sim.dir(a).name, sim.dir(b).name);
    // Our own multicast, looped back, is not a duplicate.
    assert_eq!(sim.nodes[a].pm.identity().id, ia);
    assert_eq!(sim.nodes[b].pm.identity().id, ib);
}

/// Forged own-port notices, each with a new node id (no LAN key): the representative lists at
/// most `MAX_HEARD` nodes from notices, so the flood cannot grow its memory or its page without
/// bound; a real node's mapping is still listed from the router's table.
#[test]
fn a_flood_of_notices_with_new_ids_lists_a_bounded_number() {
    let mut sim = Sim::new(FakeIgd::new(false));
    let a = sim.add(named(1, Some("rep")), opts());
    sim.run_for(secs(1.0));
    let b = sim.add(named(2, Some("member")), opts());
    sim.run_for(secs(1.0));
    assert_eq!(sim.dir(a).peers.len(), 1);
    let from = SocketAddrV4::new(Ipv4Addr::new(192, 168, 1, 77), 17777);
    let max = super::super::core::MAX_HEARD;
    for id in 0..max as u64 + 64 {
        let r = lanproto::Repr {
            header: lanproto::Header {
                node_id: 0x1000 + id,
                sequence: 1,
                term: 0,
            },
            body: lanproto::Body::PortNotice(lanproto::PortNotice {
                name: format!("forged {id}"),
                lan_addr: *from.ip(),
                internal_port: 9000,
                external_port: None,
            }),
        };
        sim.input(
            a,
            Input::Lan {
                from,
                data: r.emit(),
            },
        );
    }
    sim.run_for(secs(0.1));
    let peers = &sim.dir(a).peers;
    assert_eq!(peers.len(), max, "listed from notices: at most MAX_HEARD");
    assert!(
        peers.iter().any(|p| p.name == "member"),
        "the real member stays listed"
    );
    // The forged ones are not in the table and go after the grace period.
    sim.run_for(secs(20.0));
    let names: Vec<_> = sim.dir(a).peers.iter().map(|p| p.name.clone()).collect();
    assert_eq!(names, ["member"]);
    let _ = b;
}
