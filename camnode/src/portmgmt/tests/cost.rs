//! Issue 11, failover in secure mode: the representative port's lease is 6 s (was 20 s), so a
//! crashed holder's port is free again within about 6.2 s. What the shorter lease costs the
//! router, counted on the fake IGD over ten minutes of three cameras.

use super::*;

/// SOAP requests per second, per camera (by LAN address), over `minutes` with lease `lease`.
fn rates(lease: u32, minutes: u64) -> Vec<f64> {
    let opt = Options {
        representative_lease_seconds: lease,
        ..el_opts()
    };
    let mut sim = Sim::new(FakeIgd::new(true));
    for id in [0xa, 0xb, 0xc] {
        sim.add(named(id, None), opt.clone());
        sim.run_for(secs(1.0));
    }
    sim.run_for(secs(10.0));
    sim.igd.log.clear();
    let span = 60.0 * minutes as f64;
    sim.run_for(secs(span));
    (0..3)
        .map(|i| {
            let addr = sim.nodes[i].addr;
            sim.igd.log.iter().filter(|(c, _)| *c == addr).count() as f64 / span
        })
        .collect()
}

#[test]
fn the_short_representative_lease_costs_the_router_a_quarter_request_per_second() {
    let short = rates(6, 10);
    let long = rates(20, 10);
    eprintln!("requests/s per camera, lease 6 s: {short:.3?}; lease 20 s: {long:.3?}");
    // Only the representative (the first) renews the short lease: one AddPortMapping every
    // 3 s instead of every 10 s; its table walk (every 5 s) is the same either way.
    let extra = short[0] - long[0];
    assert!((extra - (1.0 / 3.0 - 1.0 / 10.0)).abs() < 0.01, "{extra}");
    assert!(short[0] < 0.8, "{short:?}");
    // The members only check the external address every 30 s (their hour-long leases are
    // renewed at half-life: not within ten minutes).
    assert!(short[1] < 0.04 && short[2] < 0.04, "{short:?}");
}
