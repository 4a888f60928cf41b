//! Collecting the others (claims 2, 5, 6, 19): the table walk, own-port notices, names.

use super::*;

#[test]
fn table_walk_reads_until_713_and_recognises_ours_among_foreign_entries() {
    let mut igd = FakeIgd::new(false);
    igd.foreign(3074, Protocol::Udp, [192, 168, 1, 40], "Xbox");
    igd.foreign(
        9000,
        Protocol::Tcp,
        [192, 168, 1, 41],
        "homenet-cam-other;id=5",
    );
    igd.foreign(
        9001,
        Protocol::Tcp,
        [192, 168, 1, 42],
        &desc::encode(0x77, "porch"),
    );
    igd.foreign(
        9002,
        Protocol::Udp,
        [192, 168, 1, 43],
        &desc::encode(0x78, "udp is not us"),
    );
    igd.foreign(9003, Protocol::Tcp, [192, 168, 1, 44], "");
    let mut sim = Sim::new(igd);
    let a = sim.add(named(1, Some("rep")), opts());
    sim.run_for(secs(0.1));
    let peers = &sim.dir(a).peers;
    assert_eq!(peers.len(), 1, "{peers:?}");
    assert_eq!(
        (peers[0].node_id.as_str(), peers[0].name.as_str()),
        ("0000000000000077", "porch")
    );
    assert_eq!(
        (peers[0].lan_addr, peers[0].lan_port, peers[0].external_port),
        (Ipv4Addr::new(192, 168, 1, 42), 9001, Some(9001))
    );
    // Indexes 0..=6: five foreign + our own entry, then 713 at index 6.
    let walk = sim.igd.actions("GetGenericPortMappingEntry");
    assert_eq!(walk.len(), 7, "{walk:?}");
    assert_eq!(
        walk.last().map(String::as_str),
        Some("GetGenericPortMappingEntry 6 713")
    );
    // Periodically (claim 2): the next walk after walk_interval drops a vanished entry.
    sim.igd.entries.retain(|e| e.external_port != 9001);
    sim.run_for(secs(5.5));
    assert!(sim.dir(a).peers.is_empty());
    assert!(sim.igd.actions("GetGenericPortMappingEntry").len() >= 13);
}

#[test]
fn notices_merge_with_the_table_and_expire() {
    let mut sim = Sim::new(FakeIgd::new(false));
    let a = sim.add(
        named(1, Some("rep")),
        Options {
            notice_grace: secs(12.0),
            ..opts()
        },
    );
    sim.run_for(secs(0.1));
    // A node without a mapping (e.g. its router refused it) announces itself by hand.
    let notice = lanproto::Repr {
        header: lanproto::Header {
            node_id: 0x99,
            sequence: 5,
            term: 0,
        },
        body: lanproto::Body::PortNotice(lanproto::PortNotice {
            name: "by notice".into(),
            lan_addr: Ipv4Addr::new(192, 168, 1, 77),
            internal_port: 8090,
            external_port: None,
        }),
    };
    let from = SocketAddrV4::new(Ipv4Addr::new(192, 168, 1, 77), 17777);
    sim.input(
        a,
        Input::Lan {
            from,
            data: notice.emit(),
        },
    );
    assert_eq!(sim.dir(a).peers.len(), 1);
    assert_eq!(sim.dir(a).peers[0].external_port, None);
    // A duplicate is dropped and counted.
    sim.input(
        a,
        Input::Lan {
            from,
            data: notice.emit(),
        },
    );
    assert_eq!(sim.nodes[a].pm.lan_stats().duplicates, 1);
    // Not in the router's table: kept for the grace period, then dropped at a walk.
    sim.run_for(secs(10.0));
    assert_eq!(sim.dir(a).peers.len(), 1);
    sim.run_for(secs(6.0));
    assert!(sim.dir(a).peers.is_empty());
    // Malformed and unknown input is counted and dropped.
    let mut v2 = notice.emit();
    v2[4] = 2;
    // Types 3-10 belong to the rotation (issue 6); 11 is unknown.
    let mut t11 = notice.emit();
    t11[5] = 11;
    for data in [b"garbage".to_vec(), v2, t11, notice.emit()[..40].to_vec()] {
        sim.input(a, Input::Lan { from, data });
    }
    let s = sim.nodes[a].pm.lan_stats();
    assert_eq!(
        (s.foreign, s.unknown_version, s.unknown_type, s.malformed),
        (1, 1, 1, 1)
    );
}

#[test]
fn a_lost_notice_is_repeated_and_the_walk_lists_the_node_anyway() {
    let mut sim = Sim::new(FakeIgd::new(false));
    let a = sim.add(named(1, Some("rep")), opts());
    sim.run_for(secs(1.0));
    sim.lan_loss = true;
    let b = sim.add(named(2, Some("member")), opts());
    sim.run_for(secs(0.1));
    assert!(sim.dir(a).peers.is_empty());
    sim.run_for(secs(7.0));
    // Six sends by the schedule, each multicast + unicast to the representative.
    assert_eq!(
        sim.nodes[b].pm.lan_stats().sent,
        11,
        "{:?}",
        sim.nodes[b].pm.lan_stats()
    );
    assert_eq!(
        sim.dir(a).peers.len(),
        1,
        "found by the walk (embodiment 1)"
    );
    assert_eq!(sim.dir(a).peers[0].name, "member");
}

#[test]
fn rename_updates_the_description_and_the_representatives_list() {
    let mut sim = Sim::new(FakeIgd::new(false));
    // Started together: both read an empty table and pick "camera 1"; the member learns the
    // representative's name from its mapping and, having the higher id, picks again.
    let a = sim.add(named(1, None), opts());
    let b = sim.add(named(2, None), opts());
    sim.run_for(secs(0.1));
    assert_eq!(sim.dir(a).name, "camera 1");
    assert_eq!(sim.dir(a).peers[0].name, "camera 2");
    let new = "Garten; hinten = 100% ☕ and a rather long name that will be cut";
    sim.input(b, Input::Command(NodeCommand::Rename(new.into())));
    assert_eq!(sim.dir(b).name, new);
    let saved = sim.nodes[b].saved.clone().unwrap();
    assert_eq!(
        (saved.name.as_deref(), saved.origin),
        (Some(new), NameOrigin::Renamed)
    );
    // The representative shows the full name at once (the notice), and keeps it after walks
    // even though the router's description is cut.
    assert_eq!(sim.dir(a).peers[0].name, new);
    let entry = sim
        .igd
        .entries
        .iter()
        .find(|e| e.external_port == 8081)
        .unwrap();
    let d = desc::parse(&entry.description).unwrap();
    assert!(d.truncated && new.starts_with(&d.name), "{entry:?}");
    sim.run_for(secs(11.0));
    assert_eq!(sim.dir(a).peers[0].name, new);
    // Invalid names are refused.
    sim.input(b, Input::Command(NodeCommand::Rename("bad\nname".into())));
    assert_eq!(sim.dir(b).name, new);
    // The representative's own rename shows in its Directory and the table.
    sim.input(a, Input::Command(NodeCommand::Rename("front door".into())));
    assert_eq!(sim.dir(a).name, "front door");
    assert!(
        sim.igd
            .entries
            .iter()
            .any(|e| desc::parse(&e.description).is_some_and(|d| d.name == "front door"))
    );
}

#[test]
fn automatic_names_are_distinct_even_when_nodes_start_together() {
    // One after the other: camera 1, 2, 3 from the router's table.
    let mut sim = Sim::new(FakeIgd::new(false));
    for id in [0x30, 0x10, 0x20] {
        sim.add(named(id, None), opts());
        sim.run_for(secs(0.5));
    }
    let names: Vec<_> = (0..3).map(|i| sim.dir(i).name.clone()).collect();
    assert_eq!(names, ["camera 1", "camera 2", "camera 3"]);
    // Started together: they read the same (empty) table; the collision is noticed in notices and
    // walks, and the higher id picks again.
    let mut sim = Sim::new(FakeIgd::new(false));
    for id in [0x30, 0x10, 0x20] {
        let n = sim.nodes.len();
        let pm = PortManager::new(opts(), named(id, None), id, 1, sim.now);
        sim.nodes.push(Node {
            pm,
            addr: Ipv4Addr::new(192, 168, 1, 100 + n as u8),
            dir: None,
            saved: None,
            done: false,
            searches: Vec::new(),
        });
    }
    sim.run_for(secs(12.0));
    let mut names: Vec<_> = (0..3).map(|i| sim.dir(i).name.clone()).collect();
    names.sort();
    names.dedup();
    assert_eq!(names.len(), 3, "{names:?}");
    // No router: a fallback name from the id, after no_igd_after.
    let mut sim = Sim::new(FakeIgd::new(false));
    sim.igd_present = false;
    let a = sim.add(named(1234, None), opts());
    sim.run_for(secs(3.5));
    assert_eq!(sim.dir(a).name, format!("camera {}", 100 + 1234 % 900));
    assert_eq!(
        sim.nodes[a].saved.as_ref().and_then(|i| i.name.clone()),
        Some(sim.dir(a).name.clone())
    );
}
