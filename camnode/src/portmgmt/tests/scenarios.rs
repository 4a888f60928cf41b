//! Seeded random scenarios of the real port manager's rotation (embodiment 4, Fig. 11-14):
//! nodes join, crash and stop in random order behind a permissive or a secure router whose
//! leases lapse. After every event and a quiet period: exactly one representative, the one the
//! router maps 8080 to, listing every live node; and two representatives never for longer than
//! the collision window. The election's own simulator (`election/sim.rs`) adds loss,
//! reordering and partitions to a model of the router side; here the router side is the real
//! one (takeover, stand-down, reclaim, secure-mode waiting, table walk, notices).

use std::collections::BTreeSet;

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

use super::*;

/// What one scenario saw.
#[derive(Debug, Default)]
struct Seen {
    events: Vec<String>,
    /// Nodes stopped gracefully: their mappings must be gone.
    stopped: Vec<usize>,
    longest_dual: Duration,
}

/// Runs `d` in 50 ms steps, noting the longest time two live nodes both say representative.
fn run_watching(sim: &mut Sim, d: Duration, dual_since: &mut Option<Instant>, seen: &mut Seen) {
    let end = sim.now + d;
    while sim.now < end {
        sim.run_for(secs(0.05));
        if sim.reps().len() > 1 {
            let since = *dual_since.get_or_insert(sim.now);
            seen.longest_dual = seen.longest_dual.max(sim.now - since);
        } else {
            *dual_since = None;
        }
    }
}

fn live(sim: &Sim) -> Vec<usize> {
    (0..sim.nodes.len())
        .filter(|&i| !sim.nodes[i].done)
        .collect()
}

/// The settled state: one representative, holding 8080 at the router, listing every live node.
fn check_settled(sim: &Sim, seen: &Seen) {
    let ctx = || format!("{:?}", seen.events);
    let reps = sim.reps();
    assert_eq!(reps.len(), 1, "representatives {reps:?} after {}", ctx());
    let rep = reps[0];
    assert_eq!(
        sim.holder(8080),
        Some(sim.nodes[rep].addr),
        "8080 at the router after {}",
        ctx()
    );
    let listed: BTreeSet<&str> = sim
        .dir(rep)
        .peers
        .iter()
        .map(|p| p.node_id.as_str())
        .collect();
    for &i in &seen.stopped {
        let addr = sim.nodes[i].addr;
        assert!(
            sim.igd.entries.iter().all(|e| e.internal_client != addr),
            "node {i} stopped but its mapping stays: {:?} after {}",
            sim.igd.entries,
            ctx()
        );
    }
    for i in live(sim).into_iter().filter(|&i| i != rep) {
        let d = sim.dir(i);
        assert_eq!(d.role, Role::Member, "node {i} after {}", ctx());
        assert!(
            d.external_port.is_some_and(|p| p != 8080),
            "node {i}: {d:?}"
        );
        assert!(
            listed.contains(d.node_id.as_str()),
            "node {i} not listed by {rep}: {listed:?} after {}",
            ctx()
        );
    }
}

fn scenario(seed: u64) -> Seen {
    let mut rng = SmallRng::seed_from_u64(seed);
    let mut igd = FakeIgd::new(rng.random_bool(0.5));
    igd.secure = rng.random_bool(0.5);
    igd.leases = true;
    let opt = el_opts();
    let lease = Duration::from_secs(u64::from(opt.representative_lease_seconds));
    // Detection, election, takeover; in secure mode the dead holder's lease and the table walk
    // that lists the others.
    let quiet = if igd.secure {
        lease + secs(10.0)
    } else {
        secs(10.0)
    };
    let window = opt
        .election
        .as_ref()
        .map(|e| e.collision_window)
        .unwrap_or_default();
    let mut sim = Sim::new(igd);
    let mut seen = Seen::default();
    let mut dual_since = None;
    let add = |sim: &mut Sim, rng: &mut SmallRng, seen: &mut Seen| {
        let id = rng.random::<u64>() | 1;
        let i = sim.add(named(id, Some(&format!("cam {id:x}"))), el_opts());
        seen.events.push(format!("start {i}"));
    };
    for _ in 0..rng.random_range(2..=4) {
        add(&mut sim, &mut rng, &mut seen);
        let d = secs(rng.random_range(0.0..1.5));
        run_watching(&mut sim, d, &mut dual_since, &mut seen);
    }
    run_watching(&mut sim, quiet, &mut dual_since, &mut seen);
    check_settled(&sim, &seen);
    for _ in 0..5 {
        let alive = live(&sim);
        let rep = sim.reps()[0];
        // The representative half of the time, else any node.
        let victim = if rng.random_bool(0.5) {
            rep
        } else {
            alive[rng.random_range(0..alive.len())]
        };
        match rng.random_range(0..3) {
            0 if alive.len() > 1 => {
                sim.nodes[victim].done = true; // SIGKILL: no bye-bye, no deletion
                seen.events.push(format!("crash {victim}"));
            }
            1 if alive.len() > 1 => {
                sim.input(victim, Input::Shutdown);
                seen.events.push(format!("stop {victim}"));
                seen.stopped.push(victim);
            }
            _ => add(&mut sim, &mut rng, &mut seen),
        }
        run_watching(&mut sim, quiet, &mut dual_since, &mut seen);
        check_settled(&sim, &seen);
    }
    assert!(
        seen.longest_dual <= window + secs(0.1),
        "two representatives for {:?} after {:?}",
        seen.longest_dual,
        seen.events
    );
    seen
}

#[test]
fn random_join_crash_and_stop_keep_one_representative_holding_the_port() {
    for seed in 0..64 {
        let seen = scenario(seed);
        assert!(seen.events.len() >= 7, "seed {seed}: {:?}", seen.events);
    }
}
