//! A representative without an IGD (issue 12): behind a router with UPnP off the cameras elect
//! a LAN representative that lists the others (embodiment 2 by inquiry), hand the role over on
//! a crash, and claim 8080 once an IGD appears.

use super::*;

/// Election options, with the LAN address the driver would find for the next node.
fn lan_opts(sim: &Sim) -> Options {
    Options {
        lan_addr: Some(Ipv4Addr::new(192, 168, 1, 100 + sim.nodes.len() as u8)),
        ..el_opts()
    }
}

/// Three named nodes behind a router without an IGD, settled.
fn three_without_igd() -> Sim {
    let mut sim = Sim::new(FakeIgd::new(false));
    sim.igd_present = false;
    for (id, name) in [(0xa, "front"), (0xb, "garden"), (0xc, "garage")] {
        let o = lan_opts(&sim);
        sim.add(named(id, Some(name)), o);
        sim.run_for(secs(0.3));
    }
    sim.run_for(secs(8.0));
    sim
}

fn peer_names(sim: &Sim, i: usize) -> Vec<String> {
    let mut v: Vec<String> = sim.dir(i).peers.iter().map(|p| p.name.clone()).collect();
    v.sort();
    v
}

#[test]
fn without_an_igd_exactly_one_lan_representative_lists_the_others() {
    let sim = three_without_igd();
    let reps = sim.reps();
    assert_eq!(
        reps.len(),
        1,
        "roles {:?}",
        (0..3).map(|i| sim.dir(i).role).collect::<Vec<_>>()
    );
    let rep = reps[0];
    let others: Vec<usize> = (0..3).filter(|&i| i != rep).collect();
    let mut want: Vec<String> = others.iter().map(|&i| sim.dir(i).name.clone()).collect();
    want.sort();
    assert_eq!(peer_names(&sim, rep), want);
    for p in &sim.dir(rep).peers {
        assert_eq!(p.source, PeerSource::Inquiry);
        assert_eq!(p.external_port, None, "no port forwarded without an IGD");
        assert_eq!(p.lan_port, 8080);
        assert!(others.iter().any(|&i| sim.nodes[i].addr == p.lan_addr));
    }
    let d = sim.dir(rep);
    assert_eq!(d.reachability, Reachability::NoIgd);
    assert_eq!(
        (d.external_port, d.lan_addr),
        (None, Some(sim.nodes[rep].addr))
    );
    for &i in &others {
        assert_eq!(
            sim.dir(i).role,
            Role::Member,
            "a follower of the LAN representative"
        );
        assert!(sim.dir(i).peers.is_empty());
    }
    // Nothing asked a router that is not there.
    assert!(sim.requests.is_empty());
}

#[test]
fn without_an_igd_a_crashed_lan_representative_hands_the_role_over() {
    let mut sim = three_without_igd();
    let old = sim.reps()[0];
    sim.nodes[old].done = true; // SIGKILL: no bye-bye
    let t = sim
        .run_until_pred(secs(5.0), |s| s.reps().len() == 1 && s.reps()[0] != old)
        .expect("a successor within 5 s");
    assert!(t <= secs(2.5), "detection + election took {t:?}");
    // The dead node stops answering: the successor lists the survivor only.
    sim.run_for(secs(6.0));
    let new = sim.reps()[0];
    let survivor = (0..3).find(|&i| i != old && i != new).unwrap();
    assert_eq!(peer_names(&sim, new), [sim.dir(survivor).name.clone()]);
    assert_eq!(sim.dir(survivor).role, Role::Member);
    // A new camera joins once its discovery gives up: a member, listed, no fight.
    let o = lan_opts(&sim);
    let back = sim.add(named(0xd, Some("porch")), o);
    sim.run_for(secs(8.0));
    assert_eq!(sim.reps(), [new]);
    assert_eq!(sim.dir(back).role, Role::Member);
    assert_eq!(sim.dir(new).peers.len(), 2, "{:?}", sim.dir(new).peers);
}

#[test]
fn a_graceful_stop_of_the_lan_representative_hands_over_at_once() {
    let mut sim = three_without_igd();
    let old = sim.reps()[0];
    sim.input(old, Input::Shutdown);
    assert!(sim.nodes[old].done);
    let t = sim
        .run_until_pred(secs(2.0), |s| s.reps().len() == 1)
        .expect("a successor within 2 s");
    assert!(t <= secs(0.5), "bye-bye + election took {t:?}");
}

#[test]
fn an_igd_appearing_later_makes_the_lan_representative_claim_8080() {
    let mut sim = three_without_igd();
    let rep = sim.reps()[0];
    sim.igd_present = true;
    // Discovery backs off to at most 30 s between searches.
    sim.run_for(secs(35.0));
    assert_eq!(sim.holder(8080), Some(sim.nodes[rep].addr));
    assert_eq!(
        sim.reps(),
        [rep],
        "the same representative, now holding 8080"
    );
    let d = sim.dir(rep);
    assert_eq!(
        (d.external_port, &d.reachability),
        (Some(8080), &Reachability::Reachable)
    );
    let mut ports: Vec<Option<u16>> = (0..3).map(|i| sim.dir(i).external_port).collect();
    ports.sort();
    assert_eq!(ports, [Some(8080), Some(8081), Some(8082)]);
    assert_eq!(sim.dir(rep).peers.len(), 2, "{:?}", sim.dir(rep).peers);
    for i in (0..3).filter(|&i| i != rep) {
        assert_eq!(sim.dir(i).role, Role::Member);
    }
}

#[test]
fn lan_representatives_of_a_split_lan_settle_on_one_when_it_heals() {
    let mut sim = Sim::new(FakeIgd::new(false));
    sim.igd_present = false;
    sim.lan_loss = true; // every LAN datagram lost: each camera elects itself
    for (id, name) in [(0xa, "front"), (0xb, "garden"), (0xc, "garage")] {
        let o = lan_opts(&sim);
        sim.add(named(id, Some(name)), o);
    }
    sim.run_for(secs(10.0));
    assert_eq!(sim.reps().len(), 3, "split: one LAN representative each");
    sim.lan_loss = false;
    let t = sim
        .run_until_pred(secs(5.0), |s| {
            let r = s.reps();
            r.len() == 1 && s.dir(r[0]).peers.len() == 2
        })
        .expect("one representative listing both others within 5 s");
    let rep = sim.reps()[0];
    for i in (0..3).filter(|&i| i != rep) {
        assert_eq!(sim.dir(i).role, Role::Member);
        assert!(
            sim.dir(i).peers.is_empty(),
            "a stood-down node lists nobody"
        );
    }
    assert!(t <= secs(2.0), "settled after {t:?}");
}
