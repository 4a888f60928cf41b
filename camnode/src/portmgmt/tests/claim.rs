//! Discovery and claiming a port (claims 1, 17, 18; Fig. 8a/8b): back-off, ports in order,
//! AddAnyPortMapping, double NAT, leases, 724/725, refusal, router restarts, shutdown.

use super::*;

#[test]
fn discovery_backs_off_exponentially_to_the_cap_and_reports_no_igd() {
    let mut sim = Sim::new(FakeIgd::new(false));
    sim.igd_present = false;
    let n = sim.add(named(1, Some("a")), opts());
    sim.run_for(secs(200.0));
    let rounds: Vec<Instant> = sim.nodes[n].searches.chunks(3).map(|c| c[0]).collect();
    assert!(
        sim.nodes[n].searches.len().is_multiple_of(3),
        "three search targets per round"
    );
    let gaps: Vec<f64> = rounds
        .windows(2)
        .map(|w| (w[1] - w[0]).as_secs_f64())
        .collect();
    let expect = [1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0, 30.0];
    for (g, e) in gaps.iter().zip(expect) {
        assert!((g - e).abs() <= e * 0.1 + 1e-9, "gaps {gaps:?}");
    }
    assert_eq!(rounds[0], sim.start, "the first search goes out at once");
    assert_eq!(sim.dir(n).reachability, Reachability::NoIgd);
    assert_eq!(sim.dir(n).role, Role::Starting);
    // The router appears: found at the next search, mapped, reachable.
    sim.igd_present = true;
    sim.run_for(secs(31.0));
    assert_eq!(sim.dir(n).reachability, Reachability::Reachable);
    assert_eq!(sim.dir(n).external_port, Some(8080));
}

#[test]
fn three_nodes_get_8080_8081_8082_and_the_representative_lists_the_others_at_once() {
    let mut sim = Sim::new(FakeIgd::new(false));
    let a = sim.add(named(0xa, None), opts());
    sim.run_for(secs(0.01));
    assert_eq!(sim.dir(a).role, Role::Representative);
    assert_eq!(sim.dir(a).name, "camera 1");
    assert_eq!(
        sim.dir(a).external_addr,
        Some(Ipv4Addr::new(60, 120, 76, 64))
    );
    assert_eq!(sim.dir(a).reachability, Reachability::Reachable);
    sim.run_for(secs(2.0));
    let b = sim.add(named(0xb, None), opts());
    sim.run_for(secs(0.01));
    assert_eq!(
        (
            sim.dir(b).role,
            sim.dir(b).external_port,
            sim.dir(b).lan_port
        ),
        (Role::Member, Some(8081), 8081)
    );
    assert_eq!(sim.dir(b).name, "camera 2");
    // Claim 6: listed without waiting for the next walk.
    let peers = &sim.dir(a).peers;
    assert_eq!(peers.len(), 1);
    assert_eq!(
        (
            peers[0].name.as_str(),
            peers[0].external_port,
            peers[0].lan_port
        ),
        ("camera 2", Some(8081), 8081)
    );
    assert_eq!(peers[0].lan_addr, sim.nodes[b].addr);
    assert_eq!(peers[0].source, PeerSource::Notice);
    sim.run_for(secs(1.0));
    let c = sim.add(named(0xc, None), opts());
    sim.run_for(secs(0.01));
    assert_eq!(
        (sim.dir(c).external_port, sim.dir(c).name.as_str()),
        (Some(8082), "camera 3")
    );
    assert_eq!(
        sim.dir(a)
            .peers
            .iter()
            .map(|p| p.external_port)
            .collect::<Vec<_>>(),
        [Some(8081), Some(8082)]
    );
    // 718 on 8080, then 8081 for the third node (claim 1: refused -> ask for another port).
    let c_addr = sim.nodes[c].addr;
    let adds: Vec<_> = sim
        .igd
        .log
        .iter()
        .filter(|(cl, a)| *cl == c_addr && a.starts_with("AddPortMapping"))
        .map(|(_, a)| a.clone())
        .collect();
    assert_eq!(
        &adds[..3],
        [
            "AddPortMapping 8080 718",
            "AddPortMapping 8081 718",
            "AddPortMapping 8082 ok"
        ]
    );
    // The walk confirms them from the router's table.
    sim.run_for(secs(6.0));
    assert!(
        sim.dir(a)
            .peers
            .iter()
            .all(|p| p.source == PeerSource::RouterTable)
    );
    // The notices stopped once acknowledged: members' sent counters are small.
    assert!(
        sim.nodes[b].pm.lan_stats().sent <= 2,
        "{:?}",
        sim.nodes[b].pm.lan_stats()
    );
    // Members learnt the representative's address (unicast possible) and the external address.
    assert_eq!(
        sim.dir(b).external_addr,
        Some(Ipv4Addr::new(60, 120, 76, 64))
    );
    assert!(sim.dir(b).peers.is_empty());
}

#[test]
fn addany_on_v2_with_a_common_internal_port_and_fallback_when_unsupported() {
    let common = Options {
        internal_port_mode: crate::config::InternalPortMode::Common,
        common_internal_port: 80,
        ..opts()
    };
    let mut igd = FakeIgd::new(true);
    igd.foreign(8081, Protocol::Tcp, [192, 168, 1, 50], "Skype");
    let mut sim = Sim::new(igd);
    let a = sim.add(named(1, Some("a")), common.clone());
    let b = sim.add(named(2, Some("b")), common.clone());
    sim.run_for(secs(0.1));
    assert_eq!(sim.dir(a).external_port, Some(8080));
    assert_eq!(
        sim.dir(b).external_port,
        Some(8082),
        "the router picked past 8081"
    );
    assert_eq!(sim.dir(b).lan_port, 80, "Fig. 8b: the common internal port");
    assert_eq!(
        sim.igd.actions("AddAnyPortMapping"),
        ["AddAnyPortMapping 8081 -> 8082"]
    );
    // v2: the walk uses GetListOfPortMappings.
    assert!(!sim.igd.actions("GetListOfPortMappings").is_empty());
    assert!(sim.igd.actions("GetGenericPortMappingEntry").is_empty());
    assert_eq!(sim.dir(a).peers.len(), 1);

    // Fig. 8a on an IGD:2: port by port, so internal = external holds.
    let mut igd = FakeIgd::new(true);
    igd.foreign(8081, Protocol::Tcp, [192, 168, 1, 50], "Skype");
    let mut sim = Sim::new(igd);
    let _a = sim.add(named(1, Some("a")), opts());
    let b = sim.add(named(2, Some("b")), opts());
    sim.run_for(secs(0.1));
    assert_eq!(
        (sim.dir(b).external_port, sim.dir(b).lan_port),
        (Some(8082), 8082)
    );
    assert!(sim.igd.actions("AddAnyPortMapping").is_empty());

    // No AddAnyPortMapping (401) and no GetListOfPortMappings: port by port, generic walk.
    let mut igd = FakeIgd::new(true);
    igd.any_supported = false;
    igd.list_supported = false;
    let mut sim = Sim::new(igd);
    let _a = sim.add(named(1, Some("a")), common.clone());
    let b = sim.add(named(2, Some("b")), common);
    sim.run_for(secs(6.0));
    assert_eq!(sim.dir(b).external_port, Some(8081));
    assert_eq!(
        sim.igd.actions("AddAnyPortMapping"),
        ["AddAnyPortMapping 8081 401"]
    );
    assert_eq!(
        sim.igd.actions("GetListOfPortMappings").len(),
        1,
        "tried once"
    );
    assert!(!sim.igd.actions("GetGenericPortMappingEntry").is_empty());
    assert_eq!(sim.dir(0).peers.len(), 1);
}

#[test]
fn double_nat_and_private_external_addresses() {
    for (ext, double) in [
        ("100.64.1.2", true),
        ("100.127.255.1", true),
        ("10.0.0.2", true),
        ("172.16.5.5", true),
        ("172.32.0.1", false),
        ("192.168.0.2", true),
        ("169.254.3.3", true),
        ("100.128.0.1", false),
        ("60.120.76.64", false),
    ] {
        let mut igd = FakeIgd::new(false);
        igd.external = ext.into();
        let mut sim = Sim::new(igd);
        let a = sim.add(named(1, Some("a")), opts());
        sim.run_for(secs(0.1));
        let ip: Ipv4Addr = ext.parse().unwrap();
        let want = if double {
            Reachability::DoubleNat { external: ip }
        } else {
            Reachability::Reachable
        };
        assert_eq!(sim.dir(a).reachability, want, "{ext}");
        // Still mapped and serving the LAN.
        assert_eq!(sim.dir(a).external_port, Some(8080));
    }
    // No address at all (WAN down), then one: checked again.
    let mut igd = FakeIgd::new(false);
    igd.external = String::new();
    let mut sim = Sim::new(igd);
    let a = sim.add(named(1, Some("a")), opts());
    sim.run_for(secs(0.1));
    assert!(matches!(
        sim.dir(a).reachability,
        Reachability::Refused { .. }
    ));
    sim.igd.external = "60.120.76.64".into();
    sim.run_for(secs(6.0));
    assert_eq!(sim.dir(a).reachability, Reachability::Reachable);
}

#[test]
fn lease_is_renewed_at_half_life() {
    let mut sim = Sim::new(FakeIgd::new(false));
    let o = Options {
        lease_seconds: 100,
        ..opts()
    };
    let b_only = Options {
        walk_interval: secs(1000.0),
        ..o.clone()
    };
    sim.add(named(1, Some("a")), b_only);
    sim.run_for(secs(160.0));
    assert_eq!(
        sim.igd.actions("AddPortMapping"),
        ["AddPortMapping 8080 ok"; 4],
        "at 0, 50, 100, 150 s"
    );
    // A permanent-only router (725): asked again with lease 0.
    let mut igd = FakeIgd::new(false);
    igd.permanent_only = true;
    let mut sim = Sim::new(igd);
    sim.add(named(1, Some("a")), o);
    sim.run_for(secs(0.1));
    assert_eq!(
        sim.igd.actions("AddPortMapping"),
        ["AddPortMapping 8080 725", "AddPortMapping 8080 ok"]
    );
    assert_eq!(sim.igd.entries[0].lease_duration, 0);
}

#[test]
fn common_internal_port_and_724() {
    let mut sim = Sim::new(FakeIgd::new(false));
    let o = Options {
        internal_port_mode: crate::config::InternalPortMode::Common,
        common_internal_port: 80,
        web_port: 80,
        ..opts()
    };
    let a = sim.add(named(1, Some("a")), o.clone());
    let b = sim.add(named(2, Some("b")), o.clone());
    sim.run_for(secs(0.1));
    assert_eq!(
        (sim.dir(a).external_port, sim.dir(a).lan_port),
        (Some(8080), 80)
    );
    assert_eq!(
        (sim.dir(b).external_port, sim.dir(b).lan_port),
        (Some(8081), 80)
    );
    assert_eq!(sim.dir(a).peers[0].lan_port, 80);
    let mut igd = FakeIgd::new(false);
    igd.same_port_required = true;
    let mut sim = Sim::new(igd);
    let a = sim.add(named(1, Some("a")), o);
    sim.run_for(secs(0.1));
    assert_eq!(
        sim.igd.actions("AddPortMapping"),
        ["AddPortMapping 8080 724", "AddPortMapping 8080 ok"]
    );
    assert_eq!(sim.dir(a).lan_port, 8080, "fell back to Fig. 8a");
}

#[test]
fn a_conflict_on_every_port_is_reported_as_refused_and_retried() {
    let mut igd = FakeIgd::new(false);
    for p in 8080..8090 {
        igd.foreign(p, Protocol::Tcp, [192, 168, 1, 9], "other");
    }
    let mut sim = Sim::new(igd);
    let a = sim.add(
        named(1, Some("a")),
        Options {
            max_port_tries: 5,
            ..opts()
        },
    );
    sim.run_for(secs(0.1));
    assert!(
        matches!(sim.dir(a).reachability, Reachability::Refused { .. }),
        "{:?}",
        sim.dir(a).reachability
    );
    assert_eq!(sim.igd.actions("AddPortMapping").len(), 5);
    sim.igd.entries.retain(|e| e.external_port != 8080);
    sim.run_for(secs(31.0));
    assert_eq!(sim.dir(a).external_port, Some(8080));
    assert_eq!(sim.dir(a).reachability, Reachability::Reachable);
}

#[test]
fn an_igd_url_skips_ssdp() {
    let mut sim = Sim::new(FakeIgd::new(false));
    let o = Options {
        igd_url: shared::url::HttpUrl::parse("http://192.168.1.1:5000/rootDesc.xml"),
        ..opts()
    };
    let a = sim.add(named(1, Some("a")), o);
    sim.run_for(secs(0.1));
    assert!(sim.nodes[a].searches.is_empty());
    assert_eq!(sim.dir(a).external_port, Some(8080));
}

#[test]
fn router_restart_is_noticed_and_the_same_ports_are_claimed_again() {
    let mut sim = Sim::new(FakeIgd::new(false));
    let a = sim.add(named(1, Some("a")), opts());
    let b = sim.add(named(2, Some("b")), opts());
    sim.run_for(secs(1.0));
    // The router reboots: table gone, new BOOTID announced.
    sim.igd.entries.clear();
    sim.igd.boot_id = 2;
    let alive = ssdp::Notify {
        host: ssdp::MULTICAST_ADDR.into(),
        nt: "urn:schemas-upnp-org:device:InternetGatewayDevice:1".into(),
        nts: ssdp::Nts::Alive,
        usn: format!("{UUID}::urn:schemas-upnp-org:device:InternetGatewayDevice:1"),
        location: Some(format!("http://{ROUTER}:5000/rootDesc.xml")),
        max_age: Some(120),
        server: None,
        boot_id: Some(2),
        config_id: Some(1),
        next_boot_id: None,
        search_port: None,
    };
    // Node b hears it first and re-claims 8081 (its own port), not 8080.
    sim.input(
        b,
        Input::Ssdp {
            from: SocketAddr::from((ROUTER, 1900)),
            data: alive.emit(),
        },
    );
    sim.run_for(secs(0.1));
    assert_eq!(
        sim.igd
            .entries
            .iter()
            .map(|e| e.external_port)
            .collect::<Vec<_>>(),
        [8081]
    );
    sim.input(
        a,
        Input::Ssdp {
            from: SocketAddr::from((ROUTER, 1900)),
            data: alive.emit(),
        },
    );
    sim.run_for(secs(0.1));
    let mut ports: Vec<_> = sim.igd.entries.iter().map(|e| e.external_port).collect();
    ports.sort();
    assert_eq!(ports, [8080, 8081]);
    assert_eq!(sim.dir(a).role, Role::Representative);
    assert_eq!(sim.dir(b).role, Role::Member);
    // Lost without a word (no NOTIFY): the representative's walk misses its own entry.
    sim.igd.entries.retain(|e| e.external_port != 8080);
    sim.run_for(secs(5.5));
    assert!(sim.igd.entries.iter().any(|e| e.external_port == 8080));
}

#[test]
fn failing_control_requests_send_us_back_to_discovery() {
    let mut sim = Sim::new(FakeIgd::new(false));
    let a = sim.add(named(1, Some("a")), opts());
    sim.run_for(secs(1.0));
    let searches = sim.nodes[a].searches.len();
    sim.igd.online = false;
    sim.run_for(secs(6.0)); // the next walk fails
    assert_eq!(sim.dir(a).reachability, Reachability::Discovering);
    assert!(sim.nodes[a].searches.len() > searches);
    assert_eq!(
        sim.dir(a).role,
        Role::Representative,
        "the mapping is kept while we look"
    );
    sim.igd.online = true;
    sim.igd.entries.clear();
    sim.run_for(secs(3.0));
    assert_eq!(sim.dir(a).reachability, Reachability::Reachable);
    assert_eq!(sim.igd.entries.len(), 1);
    // An SSDP byebye from our router also triggers rediscovery.
    let bye = ssdp::Notify {
        host: ssdp::MULTICAST_ADDR.into(),
        nt: "urn:schemas-upnp-org:device:InternetGatewayDevice:1".into(),
        nts: ssdp::Nts::ByeBye,
        usn: format!("{UUID}::urn:schemas-upnp-org:device:InternetGatewayDevice:1"),
        location: None,
        max_age: None,
        server: None,
        boot_id: Some(1),
        config_id: None,
        next_boot_id: None,
        search_port: None,
    };
    sim.input(
        a,
        Input::Ssdp {
            from: SocketAddr::from((ROUTER, 1900)),
            data: bye.emit(),
        },
    );
    assert_eq!(sim.dir(a).reachability, Reachability::Discovering);
    sim.run_for(secs(2.0));
    assert_eq!(sim.dir(a).reachability, Reachability::Reachable);
}

#[test]
fn shutdown_deletes_our_mappings() {
    let mut sim = Sim::new(FakeIgd::new(false));
    sim.igd.foreign(22, Protocol::Tcp, [192, 168, 1, 9], "ssh");
    let a = sim.add(named(1, Some("a")), opts());
    let b = sim.add(named(2, Some("b")), opts());
    sim.run_for(secs(1.0));
    assert_eq!(sim.igd.entries.len(), 3);
    sim.input(b, Input::Shutdown);
    assert!(sim.nodes[b].done);
    sim.input(a, Input::Shutdown);
    assert!(sim.nodes[a].done);
    assert_eq!(sim.igd.entries.len(), 1, "only the foreign mapping is left");
    assert_eq!(
        sim.igd.actions("DeletePortMapping"),
        ["DeletePortMapping 8081 ok", "DeletePortMapping 8080 ok"]
    );
    // Without a router, shutdown finishes at once.
    let mut sim = Sim::new(FakeIgd::new(false));
    sim.igd_present = false;
    let a = sim.add(named(1, Some("a")), opts());
    sim.input(a, Input::Shutdown);
    assert!(sim.nodes[a].done);
    // A router that stops answering: the deadline ends it.
    let mut sim = Sim::new(FakeIgd::new(false));
    let a = sim.add(named(1, Some("a")), opts());
    sim.run_for(secs(0.1));
    sim.igd.online = false;
    let Some(Output::Http { .. }) = ({
        sim.nodes[a].pm.handle_input(sim.now, Input::Shutdown);
        sim.nodes[a].pm.poll_output()
    }) else {
        panic!("a DeletePortMapping request")
    };
    sim.run_for(secs(6.0));
    assert!(sim.nodes[a].done);
}
