//! One LAN host asking for addresses from fresh MAC addresses (DHCP starvation, as dhcpstarv
//! or yersinia do it): the pool is not held (module `super::super::pressure`). Virtual clock:
//! `now` in seconds.

use super::super::pressure::{NEW_CLIENT_BURST, PRESSURE_LEASE_SECS};
use super::*;

/// A client with a MAC of its own for every `n`.
fn fresh(n: u32, kind: MessageType) -> Message {
    let b = n.to_be_bytes();
    Message::request(0x5000_0000 + n, [0x02, 0xee, b[0], b[1], b[2], b[3]], kind)
}

/// SELECTING: the client asks for what it was offered.
fn request_for(offer: &Reply, mut req: Message) -> Message {
    req.set_option(opt::SERVER_ID, SERVER.octets().to_vec());
    req.set_option(opt::REQUESTED_IP, offer.message.yiaddr.octets().to_vec());
    req
}

#[test]
fn discover_flood_from_fresh_macs_does_not_hold_the_pool() {
    let mut s = server();
    // 1000 DISCOVERs a second for 10 s, each from a new MAC, never REQUESTing.
    let mut n = 0;
    for t in 0..10 {
        for _ in 0..1000 {
            send(&mut s, T0 + t, &fresh(n, MessageType::Discover));
            n += 1;
        }
    }
    assert!(s.counters().drop_count(DropReason::RateLimited) > 9000);
    assert!(s.take_pressure_change().is_some_and(|p| p.under));
    // Right after the flood, a real new client gets an address and keeps it.
    let now = T0 + 10;
    let offer = send(&mut s, now, &msg(1, MessageType::Discover)).expect("an offer");
    let ack = send(
        &mut s,
        now,
        &request_for(&offer, msg(1, MessageType::Request)),
    )
    .unwrap();
    assert_eq!(kind(&ack), MessageType::Ack);
    // A host that already had a lease is served even during the flood.
    let mut s = server();
    let known = lease(&mut s, T0, 2);
    for i in 0..2000 {
        send(&mut s, T0 + 1, &fresh(i, MessageType::Discover));
    }
    let again = send(&mut s, T0 + 2, &msg(2, MessageType::Discover)).expect("offer");
    assert_eq!(again.message.yiaddr, known);
}

#[test]
fn offers_are_reclaimed_oldest_first_but_not_from_a_client_answering_now() {
    let mut s = Server::new(ServerConfig {
        pool_end: ip(101),
        ..ServerConfig::new(SERVER, 24)
    });
    let a = send(&mut s, T0, &fresh(1, MessageType::Discover)).unwrap();
    let b = send(&mut s, T0 + 1, &fresh(2, MessageType::Discover)).unwrap();
    // Both addresses offered just now: a third client waits.
    assert!(send(&mut s, T0 + 1, &fresh(3, MessageType::Discover)).is_none());
    // Two seconds later the oldest offer goes to it.
    let c = send(&mut s, T0 + 2, &fresh(3, MessageType::Discover)).unwrap();
    assert_eq!(c.message.yiaddr, a.message.yiaddr);
    let nak = send(
        &mut s,
        T0 + 2,
        &request_for(&a, fresh(1, MessageType::Request)),
    )
    .unwrap();
    assert_eq!(kind(&nak), MessageType::Nak);
    // The client of the younger offer still gets its address.
    let ack = send(
        &mut s,
        T0 + 2,
        &request_for(&b, fresh(2, MessageType::Request)),
    )
    .unwrap();
    assert_eq!(kind(&ack), MessageType::Ack);
}

#[test]
fn full_exchanges_from_fresh_macs_get_short_leases_under_pressure() {
    let mut s = server();
    let lease_time = s.config().lease_time;
    let mut short = 0;
    let mut bound = 0;
    // 40 exchanges a second from new MACs, for 10 s.
    for t in 0..10 {
        for i in 0..40 {
            let n = t * 40 + i;
            let now = T0 + u64::from(t);
            let Some(offer) = send(&mut s, now, &fresh(n, MessageType::Discover)) else {
                continue;
            };
            let req = request_for(&offer, fresh(n, MessageType::Request));
            let Some(ack) = send(&mut s, now, &req) else {
                continue;
            };
            if kind(&ack) == MessageType::Ack {
                bound += 1;
                if ack.message.lease_time() == Some(PRESSURE_LEASE_SECS) {
                    short += 1;
                }
            }
        }
    }
    // The first seven-eighths of the pool at the configured lease, then a trickle of short
    // ones: the rate limit let through its burst and one per interval, not 40 a second.
    assert!(bound <= 88 + NEW_CLIENT_BURST as usize + 6, "{bound} bound");
    assert!(short >= 1, "{short} short leases");
    let long = s
        .leases()
        .filter(|l| l.expires > T0 + 10 + u64::from(PRESSURE_LEASE_SECS))
        .count();
    assert!(
        (80..=88).contains(&long),
        "{long}: only the leases from before the pressure run the configured {lease_time} s"
    );
    // What the host does not renew comes back after the short lease: a new client is served.
    let later = T0 + 10 + u64::from(PRESSURE_LEASE_SECS) + 1;
    let offer = send(&mut s, later, &msg(7, MessageType::Discover)).expect("an offer");
    let ack = send(
        &mut s,
        later,
        &request_for(&offer, msg(7, MessageType::Request)),
    )
    .unwrap();
    assert_eq!(kind(&ack), MessageType::Ack);
}
