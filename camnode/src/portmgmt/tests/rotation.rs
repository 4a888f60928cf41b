//! Rotation (embodiment 4, Fig. 11-14): graceful stop, crash, secure mode, reclaim, partition.

use super::*;

#[test]
fn graceful_stop_says_bye_bye_before_deleting_and_a_successor_takes_8080() {
    let mut sim = Sim::three_with_election(FakeIgd::new(false));
    sim.trace.clear();
    sim.input(0, Input::Shutdown);
    assert!(sim.nodes[0].done);
    // Claim 13: bye-bye (multicast + unicast to both members) before DeletePortMapping.
    let mine: Vec<&str> = sim
        .trace
        .iter()
        .filter(|(i, _)| *i == 0)
        .map(|(_, w)| w.as_str())
        .collect();
    assert_eq!(
        mine,
        [
            "lan ByeBye",
            "lan ByeBye",
            "lan ByeBye",
            "http DeletePortMapping"
        ]
    );
    let t = sim
        .run_until_pred(secs(1.0), |s| {
            s.reps().len() == 1 && s.holder(8080).is_some()
        })
        .expect("a successor within 1 s");
    assert!(t <= secs(0.45), "election + takeover took {t:?}");
    sim.run_for(secs(0.5));
    let new = sim.reps()[0];
    let other = if new == 1 { 2 } else { 1 };
    // Fig. 14: its own member mapping is gone, 8080 is its own, the survivor is listed.
    assert_eq!(sim.holder(8080), Some(sim.nodes[new].addr));
    assert_eq!(sim.igd.entries.len(), 2, "{:?}", sim.igd.entries);
    assert_eq!(sim.dir(new).external_port, Some(8080));
    assert_eq!(sim.dir(new).lan_port, 8080);
    let peers: Vec<&str> = sim
        .dir(new)
        .peers
        .iter()
        .map(|p| p.node_id.as_str())
        .collect();
    assert_eq!(peers, [sim.dir(other).node_id.as_str()]);
    assert_eq!(sim.dir(other).role, Role::Member);
}

#[test]
fn a_crashed_representative_is_replaced_and_its_mapping_deleted() {
    let mut sim = Sim::three_with_election(FakeIgd::new(false));
    sim.nodes[0].done = true; // SIGKILL: no bye-bye, no deletion
    let t = sim
        .run_until_pred(secs(3.0), |s| {
            s.reps().len() == 1 && s.holder(8080).is_some_and(|h| h != s.nodes[0].addr)
        })
        .expect("a successor within 3 s");
    assert!(t <= secs(1.8), "detection + election + takeover took {t:?}");
    sim.run_for(secs(6.0));
    let new = sim.reps()[0];
    // The dead node's entry: its mapping was replaced, it stopped answering: not listed.
    assert_eq!(sim.dir(new).peers.len(), 1, "{:?}", sim.dir(new).peers);
    // The old representative comes back: it joins as a member and does not fight.
    let back = sim.add(named(0xa, Some("camera 1")), el_opts());
    sim.run_for(secs(3.0));
    assert_eq!(sim.dir(back).role, Role::Member);
    assert_eq!(sim.reps(), [new]);
    assert_eq!(sim.dir(new).peers.len(), 2, "{:?}", sim.dir(new).peers);
}

#[test]
fn in_secure_mode_the_successor_asks_again_until_the_old_lease_lapses() {
    let mut igd = FakeIgd::new(false);
    igd.secure = true;
    let mut sim = Sim::three_with_election(igd);
    let dead = sim.nodes[0].addr;
    sim.nodes[0].done = true;
    sim.run_for(secs(5.0));
    // The successor could not delete the dead holder's mapping (606) and keeps asking.
    assert_eq!(sim.holder(8080), Some(dead));
    assert!(sim.reps().is_empty());
    assert!(
        sim.igd
            .actions("DeletePortMapping 8080")
            .iter()
            .all(|a| a.ends_with("606")),
        "{:?}",
        sim.igd.actions("DeletePortMapping")
    );
    let retries = sim.igd.actions("AddPortMapping 8080").len();
    assert!(
        retries >= 4,
        "AddPortMapping 8080 retried every second: {retries}"
    );
    // Meanwhile the successor serves under its own port, and its status says so.
    let waiting: Vec<usize> = (1..3)
        .filter(|&i| sim.dir(i).role == Role::TakingOver)
        .collect();
    assert_eq!(waiting.len(), 1, "one successor is taking over");
    let succ = waiting[0];
    let own = sim.dir(succ).external_port.expect("its own port");
    assert!(own > 8080, "{own}");
    assert_eq!(sim.holder(own), Some(sim.nodes[succ].addr));
    assert_eq!(sim.dir(succ).lan_port, own);
    // Its lease lapses: within a second the successor holds the port, then drops its own.
    sim.igd.entries.retain(|e| e.internal_client != dead);
    let t = sim
        .run_until_pred(secs(2.0), |s| s.reps().len() == 1)
        .expect("a successor once the lease lapsed");
    assert!(t <= secs(1.05), "{t:?}");
    assert_eq!(sim.reps(), [succ]);
    assert_eq!(sim.holder(8080), Some(sim.nodes[succ].addr));
    assert_eq!(sim.holder(own), None, "its member mapping is deleted");
    assert_eq!(sim.dir(succ).external_port, Some(8080));
}

/// Secure mode with leases that lapse: the successor reads the dead holder's remaining lease
/// (GetSpecificPortMappingEntry) and asks again every 200 ms around it: 8080 is back at most
/// about one lease after the crash, within 0.2 s of the lapse.
#[test]
fn in_secure_mode_the_successor_asks_again_right_when_the_old_lease_lapses() {
    for wait in [0.3, 4.1, 9.7] {
        let mut igd = FakeIgd::new(false);
        igd.secure = true;
        igd.leases = true;
        let mut sim = Sim::three_with_election(igd);
        // Crash at some point of the holder's renewal cycle (renewed every 3 s).
        sim.run_for(secs(wait));
        let dead = sim.nodes[0].addr;
        let lapse = sim.igd.ends[&8080];
        let crash = sim.now;
        sim.nodes[0].done = true;
        let t = sim
            .run_until_pred(secs(25.0), |s| {
                s.reps().len() == 1 && s.holder(8080).is_some_and(|h| h != dead)
            })
            .expect("a successor once the lease lapsed");
        let late = (crash + t).saturating_duration_since(lapse);
        // 200 ms between tries, 10 ms steps of this test.
        assert!(late <= secs(0.21), "{late:?} after the lapse");
        assert!(t <= secs(6.21), "{t:?} after the crash (lease 6 s)");
        // Asked just after the lapse it read, not every second since the start only.
        let adds = sim.igd.actions("AddPortMapping 8080");
        assert!(adds.len() <= 25, "{adds:?}");
    }
}

/// Two nodes; the first holds 8080 and lists the second.
fn two_with_election(igd: FakeIgd) -> Sim {
    let mut sim = Sim::new(igd);
    for id in [0xa, 0xb] {
        sim.add(named(id, None), el_opts());
        sim.run_for(secs(1.0));
    }
    sim.run_for(secs(2.0));
    assert_eq!(sim.reps(), [0]);
    sim
}

/// Issue 6, defect 2: a stale representative holds 8080 on a router in secure mode; the current
/// one's reclaim cannot delete it (606) and the router refuses its AddPortMapping (718). It
/// does not give up: it asks again until the stale one, told to stand down, deletes its own
/// mapping (or its lease lapses).
#[test]
fn a_reclaim_refused_in_secure_mode_waits_for_the_stale_representative() {
    let mut sim = two_with_election(FakeIgd::new(false));
    let (a, b) = (0, 1);
    // The LAN fails: b takes over (permissive router: it deletes a's mapping).
    sim.lan_loss = true;
    sim.run_until_pred(secs(5.0), |s| s.holder(8080) == Some(s.nodes[b].addr))
        .expect("b takes over while cut off");
    sim.run_for(secs(0.5));
    assert_eq!(sim.dir(b).role, Role::Representative);
    let b_term = sim.nodes[b].pm.election().map(|e| e.term()).unwrap_or(0);
    // Meanwhile the stale a got the port back at the router (say its renewal raced), and the
    // router switches to secure mode.
    let e = sim
        .igd
        .entries
        .iter_mut()
        .find(|e| e.external_port == 8080)
        .expect("8080");
    e.internal_client = sim.nodes[a].addr;
    e.description = desc::encode(0xa, "camera 1");
    sim.igd.secure = true;
    sim.igd.log.clear();
    // b hears a's inquiry (a still cannot hear b): b wins (newer term) and reclaims.
    let a_term = sim.nodes[a].pm.election().map(|e| e.term()).unwrap_or(0);
    assert!(a_term < b_term);
    let inquiry = lanproto::Repr {
        header: lanproto::Header {
            node_id: 0xa,
            sequence: u64::MAX / 2,
            term: a_term,
        },
        body: lanproto::Body::Inquiry(lanproto::Inquiry {
            external_port: 8080,
            external_addr: None,
        }),
    };
    let from = SocketAddrV4::new(sim.nodes[a].addr, lanproto::DEFAULT_PORT);
    sim.input(
        b,
        Input::Lan {
            from,
            data: inquiry.emit(),
        },
    );
    sim.run_for(secs(3.0));
    let log: Vec<String> = sim
        .igd
        .log
        .iter()
        .filter(|(c, _)| *c == sim.nodes[b].addr)
        .map(|(_, a)| a.clone())
        .collect();
    assert!(
        log.contains(&"DeletePortMapping 8080 606".to_string()),
        "{log:?}"
    );
    assert!(
        log.contains(&"AddPortMapping 8080 718".to_string()),
        "{log:?}"
    );
    assert!(
        log.iter()
            .filter(|a| a.starts_with("AddPortMapping 8080"))
            .count()
            >= 3,
        "asked again: {log:?}"
    );
    // b did not give up: still the representative.
    assert_eq!(sim.dir(b).role, Role::Representative);
    assert_eq!(sim.holder(8080), Some(sim.nodes[a].addr));
    // The LAN heals: a hears b, stands down and deletes its own mapping; b's next try gets it.
    sim.lan_loss = false;
    let t = sim
        .run_until_pred(secs(3.0), |s| {
            s.holder(8080) == Some(s.nodes[b].addr) && s.dir(a).role == Role::Member
        })
        .expect("b holds the port again, a is a member");
    assert!(t <= secs(1.7), "{t:?}");
    assert_eq!(sim.reps(), [b]);
}

#[test]
fn after_a_partition_heals_one_representative_remains_and_holds_the_port() {
    let mut sim = Sim::three_with_election(FakeIgd::new(false));
    // The LAN loses everything: each member thinks the representative gone and takes over
    // (deleting the previous 8080 mapping: this fake router is permissive).
    sim.lan_loss = true;
    sim.run_for(secs(4.0));
    assert_ne!(sim.holder(8080), Some(sim.nodes[0].addr));
    // It heals: the representatives meet, the older terms stand down without deleting the
    // port (now another's) and take member ports; the one left lists everybody.
    sim.lan_loss = false;
    sim.run_for(secs(8.0));
    let reps = sim.reps();
    assert_eq!(reps.len(), 1, "{reps:?}");
    let rep = reps[0];
    assert_eq!(sim.holder(8080), Some(sim.nodes[rep].addr));
    for i in (0..3).filter(|&i| i != rep) {
        assert_eq!(sim.dir(i).role, Role::Member);
        assert!(sim.dir(i).external_port.is_some_and(|p| p > 8080));
    }
    assert_eq!(sim.dir(rep).peers.len(), 2, "{:?}", sim.dir(rep).peers);
}
