//! The core with a virtual clock: a test device speaks the protocol through `shared::relayproto`,
//! time jumps to the core's next deadline.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use rand::SeedableRng;
use shared::relayproto::{Notify, SECRET_LEN};

use super::*;

const CAM: u64 = 0x0123_4567_89ab_cdef;
const CAM2: u64 = 0x0000_0000_0000_0002;

fn secret(b: u8) -> Secret {
    Secret([b; SECRET_LEN])
}

fn keys() -> Keys {
    let mut devices = HashMap::new();
    devices.insert(CAM, secret(1));
    devices.insert(CAM2, secret(2));
    Keys {
        devices,
        enrol_key: None,
    }
}

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

/// The NAT's public side of the camera's home (the relay sees this).
const HOME: &str = "203.0.113.2:40000";
const LAN: &str = "192.168.1.101:8081";
const T0_US: u64 = 1_800_000_000_000_000;

struct Dev {
    id: u64,
    secret: Secret,
    counter: u64,
}

impl Dev {
    fn new(id: u64, s: u8) -> Dev {
        Dev {
            id,
            secret: secret(s),
            counter: 1000,
        }
    }
    fn datagram(&mut self, body: Body) -> Vec<u8> {
        self.counter += 1;
        Repr {
            device_id: self.id,
            counter: self.counter,
            body,
        }
        .emit(&self.secret)
    }
    fn refresh(&mut self) -> Vec<u8> {
        self.datagram(Body::Notify(Notify {
            kind: NotifyKind::Refresh,
            lan: Some(addr(LAN)),
            router_wan: None,
        }))
    }
    fn keepalive(&mut self) -> Vec<u8> {
        self.datagram(Body::Notify(Notify {
            kind: NotifyKind::KeepAlive,
            lan: None,
            router_wan: None,
        }))
    }
    fn read(&self, t: &Transmit) -> Repr {
        Repr::parse(&t.bytes, &self.secret).expect("the relay's datagram verifies")
    }
}

fn core(now: Instant) -> Core {
    Core::new(
        Settings::default(),
        keys(),
        now,
        T0_US,
        StdRng::seed_from_u64(7),
    )
}

fn drain(c: &mut Core) -> Vec<Transmit> {
    std::iter::from_fn(|| c.poll_transmit()).collect()
}

/// Registers `dev` from HOME at `now` and returns the answer.
fn register(c: &mut Core, dev: &mut Dev, now: Instant) -> PeriodAnswer {
    let d = dev.refresh();
    c.handle_datagram(now, addr(HOME), &d);
    let out = drain(c);
    assert_eq!(out.len(), 1, "a refresh is answered");
    match dev.read(&out[0]).body {
        Body::PeriodAnswer(a) => a,
        b => panic!("{b:?}"),
    }
}

fn connect_request(c: &mut Core, dev: &Dev) -> ConnectRequest {
    let out = drain(c);
    assert_eq!(out.len(), 1);
    assert_eq!(
        out[0].to,
        addr(HOME),
        "sent where the notifications came from"
    );
    match dev.read(&out[0]).body {
        Body::ConnectRequest(r) => r,
        b => panic!("{b:?}"),
    }
}

#[test]
fn period_query_then_refresh_registers_and_a_viewer_gets_a_session() {
    let t = Instant::now();
    let mut c = core(t);
    let mut dev = Dev::new(CAM, 1);
    let q = dev.datagram(Body::PeriodQuery);
    c.handle_datagram(t, addr(HOME), &q);
    let out = drain(&mut c);
    let Body::PeriodAnswer(a) = dev.read(&out[0]).body else {
        panic!()
    };
    assert_eq!(a.echo, dev.counter);
    assert_eq!(a.period_ms, 300_000);
    assert_eq!(a.observed, addr(HOME));
    assert_eq!(a.counter_floor, 0, "a query registers nothing");
    assert_eq!(a.back_port, proto::DEFAULT_BACK_PORT);
    assert!(c.presence().is_empty());

    let a = register(&mut c, &mut dev, t);
    assert_eq!(a.counter_floor, dev.counter);
    assert_eq!(c.counters().registrations, 1);

    let viewer = addr("198.51.100.10:50000");
    let Decision::Connect { session } = c.open_session(t, CAM, viewer, true) else {
        panic!()
    };
    let req = connect_request(&mut c, &dev);
    assert_eq!(req.session, session);
    let hello = Hello::new(CAM, session, &req.nonce, &dev.secret);
    assert_eq!(c.back_hello(t, &hello), Ok(session));
    assert_eq!(c.session_counts(), (0, 1));
    // The same hello again (a replay inside another TLS connection): no session.
    assert_eq!(c.back_hello(t, &hello), Err(HelloStatus::UnknownSession));
    c.add_bytes(session, 10, 1000);
    c.session_closed(t, session);
    assert_eq!(c.session_counts(), (0, 0));
    let d = &c.devices(t)[0];
    assert_eq!((d.bytes_up, d.bytes_down, d.state), (10, 1000, "online"));
}

#[test]
fn offline_after_the_period_keepalives_do_not_refresh() {
    let t0 = Instant::now();
    let mut c = core(t0);
    let mut dev = Dev::new(CAM, 1);
    register(&mut c, &mut dev, t0);
    let viewer = addr("198.51.100.10:50000");
    // Keep-alives every 20 s keep the NAT binding but not the last access.
    for k in 1..=14u64 {
        let ka = dev.keepalive();
        c.handle_datagram(t0 + Duration::from_secs(20 * k), addr(HOME), &ka);
        assert!(
            drain(&mut c).is_empty(),
            "a live device's keep-alive is not answered"
        );
    }
    let at = t0 + Duration::from_secs(299);
    assert!(matches!(
        c.open_session(at, CAM, viewer, true),
        Decision::Connect { .. }
    ));
    drain(&mut c);
    let late = t0 + Duration::from_secs(301);
    assert_eq!(
        c.open_session(late, CAM, viewer, true),
        Decision::Offline {
            last_access_unix_ms: Some(T0_US / 1000)
        }
    );
    assert!(
        drain(&mut c).is_empty(),
        "no connection request to an offline device"
    );
    assert_eq!(c.devices(late)[0].state, "offline");
    // A listed device never heard, and a device nobody enrolled.
    assert_eq!(
        c.open_session(late, CAM2, viewer, true),
        Decision::Offline {
            last_access_unix_ms: None
        }
    );
    assert_eq!(c.open_session(late, 99, viewer, true), Decision::Unknown);
    assert_eq!(c.counters().viewer_offline, 2);
}

#[test]
fn forged_foreign_and_replayed_datagrams_are_counted_and_change_nothing() {
    let t = Instant::now();
    let mut c = core(t);
    let mut dev = Dev::new(CAM, 1);
    // Someone without the secret tries to register as the camera.
    let mut forger = Dev::new(CAM, 9);
    c.handle_datagram(t, addr("192.0.2.66:1000"), &forger.refresh());
    assert_eq!(c.counters().bad_mac, 1);
    assert!(c.presence().is_empty() && drain(&mut c).is_empty());
    // An id nobody enrolled, other protocols, garbage, a relay-to-device type.
    c.handle_datagram(t, addr("192.0.2.66:1000"), &Dev::new(77, 1).refresh());
    c.handle_datagram(t, addr("192.0.2.66:1000"), b"M-SEARCH * HTTP/1.1\r\n\r\n");
    c.handle_datagram(t, addr("192.0.2.66:1000"), b"HNRL");
    let wrong_way = dev.datagram(Body::ConnectRequest(ConnectRequest {
        session: 1,
        nonce: [0; 16],
        back_port: 1,
    }));
    c.handle_datagram(t, addr("192.0.2.66:1000"), &wrong_way);
    let k = c.counters();
    assert_eq!(
        (k.unknown_device, k.foreign, k.malformed, k.wrong_direction),
        (1, 1, 1, 1)
    );
    assert!(c.presence().is_empty() && drain(&mut c).is_empty());

    // A captured refresh replayed from the attacker's address does not move the device.
    let captured = dev.refresh();
    c.handle_datagram(t, addr(HOME), &captured);
    drain(&mut c);
    c.handle_datagram(
        t + Duration::from_secs(1),
        addr("192.0.2.66:1000"),
        &captured,
    );
    assert_eq!(c.counters().replayed, 1);
    assert!(drain(&mut c).is_empty());
    assert_eq!(c.presence().get(CAM).unwrap().observed, addr(HOME));
    // An older counter is a replay too; the next real one is accepted.
    let older = Repr {
        device_id: CAM,
        counter: 5,
        body: Body::Notify(Notify {
            kind: NotifyKind::KeepAlive,
            lan: None,
            router_wan: None,
        }),
    }
    .emit(&dev.secret);
    c.handle_datagram(t, addr("192.0.2.66:1000"), &older);
    assert_eq!(c.counters().replayed, 2);
    c.handle_datagram(t, addr("203.0.113.2:40001"), &dev.keepalive());
    assert_eq!(
        c.presence().get(CAM).unwrap().observed,
        addr("203.0.113.2:40001"),
        "a keep-alive follows a new NAT binding"
    );
}

#[test]
fn forged_hellos_achieve_nothing_and_the_session_survives_them() {
    let t = Instant::now();
    let mut c = core(t);
    let mut dev = Dev::new(CAM, 1);
    let mut dev2 = Dev::new(CAM2, 2);
    register(&mut c, &mut dev, t);
    register(&mut c, &mut dev2, t);
    let viewer = addr("198.51.100.10:50000");
    let Decision::Connect { session } = c.open_session(t, CAM, viewer, true) else {
        panic!()
    };
    let req = connect_request(&mut c, &dev);
    // Wrong nonce, wrong secret, another device claiming the session, a session never made.
    let bad = [
        Hello::new(CAM, session, &[0; 16], &dev.secret),
        Hello::new(CAM, session, &req.nonce, &secret(9)),
    ];
    for h in &bad {
        assert_eq!(c.back_hello(t, h), Err(HelloStatus::BadProof));
    }
    let other = Hello::new(CAM2, session, &req.nonce, &dev2.secret);
    assert_eq!(c.back_hello(t, &other), Err(HelloStatus::UnknownSession));
    let never = Hello::new(CAM, session ^ 1, &req.nonce, &dev.secret);
    assert_eq!(c.back_hello(t, &never), Err(HelloStatus::UnknownSession));
    let k = c.counters();
    assert_eq!((k.hello_bad_proof, k.hello_unknown_session), (2, 2));
    // The real device still gets through.
    let good = Hello::new(CAM, session, &req.nonce, &dev.secret);
    assert_eq!(c.back_hello(t, &good), Ok(session));
}

#[test]
fn connection_requests_are_resent_then_the_session_expires() {
    let t0 = Instant::now();
    let mut c = core(t0);
    let mut dev = Dev::new(CAM, 1);
    register(&mut c, &mut dev, t0);
    let Decision::Connect { session } = c.open_session(t0, CAM, addr("198.51.100.10:50000"), true)
    else {
        panic!()
    };
    let first = connect_request(&mut c, &dev);
    // Jump from deadline to deadline (a virtual clock), collecting resends.
    let mut resends = Vec::new();
    let mut now = t0;
    let mut ended = None;
    while let Some(next) = c.poll_timeout() {
        now = next;
        c.handle_timeout(now);
        for tx in drain(&mut c) {
            resends.push((now - t0, dev.read(&tx)));
        }
        if let Some(e) = c.poll_event() {
            ended = Some((now - t0, e));
            break;
        }
    }
    // 250 ms, then doubling: 0.25, 0.75, 1.75, 3.75 s; the set-up time ends at 5 s.
    let at: Vec<u128> = resends.iter().map(|(d, _)| d.as_millis()).collect();
    assert_eq!(at, [250, 750, 1750, 3750]);
    for (_, r) in &resends {
        assert_eq!(
            r.body,
            Body::ConnectRequest(first.clone()),
            "same session and nonce"
        );
    }
    assert_eq!(
        ended,
        Some((
            Duration::from_secs(5),
            Event::SessionEnded {
                session,
                reason: EndReason::SetupTimeout
            }
        ))
    );
    // A late back-connection is told so.
    let late = Hello::new(CAM, session, &first.nonce, &dev.secret);
    assert_eq!(c.back_hello(now, &late), Err(HelloStatus::Expired));
    assert_eq!(c.counters().setup_timeouts, 1);
}

#[test]
fn sessions_end_at_their_maximum_time_and_several_run_in_parallel() {
    let t0 = Instant::now();
    let mut c = core(t0);
    let mut dev = Dev::new(CAM, 1);
    register(&mut c, &mut dev, t0);
    let viewer = addr("198.51.100.10:50000");
    let mut sessions = Vec::new();
    for _ in 0..3 {
        let Decision::Connect { session } = c.open_session(t0, CAM, viewer, true) else {
            panic!()
        };
        let req = connect_request(&mut c, &dev);
        sessions.push((session, req.nonce));
    }
    // Back-connections arrive in another order.
    for (s, n) in sessions.iter().rev() {
        assert_eq!(
            c.back_hello(t0, &Hello::new(CAM, *s, n, &dev.secret)),
            Ok(*s)
        );
    }
    assert_eq!(c.session_counts(), (0, 3));
    assert_eq!(c.poll_timeout(), Some(t0 + Duration::from_secs(3600)));
    c.handle_timeout(t0 + Duration::from_secs(3600));
    let ends: Vec<Event> = std::iter::from_fn(|| c.poll_event()).collect();
    assert_eq!(ends.len(), 3);
    assert!(ends.iter().all(|e| matches!(
        e,
        Event::SessionEnded {
            reason: EndReason::MaxTime,
            ..
        }
    )));
    assert_eq!(c.session_counts(), (0, 0));
}

#[test]
fn too_many_sessions_for_one_device_are_refused() {
    let t = Instant::now();
    let settings = Settings {
        max_sessions_per_device: 2,
        ..Settings::default()
    };
    let mut c = Core::new(settings, keys(), t, T0_US, StdRng::seed_from_u64(1));
    let mut dev = Dev::new(CAM, 1);
    register(&mut c, &mut dev, t);
    let v = addr("198.51.100.10:50000");
    assert!(matches!(
        c.open_session(t, CAM, v, true),
        Decision::Connect { .. }
    ));
    assert!(matches!(
        c.open_session(t, CAM, v, true),
        Decision::Connect { .. }
    ));
    assert_eq!(c.open_session(t, CAM, v, true), Decision::Busy);
}

#[test]
fn a_restarted_relay_has_a_device_back_at_its_next_keepalive() {
    let t0 = Instant::now();
    let mut dev = Dev::new(CAM, 1);
    {
        let mut old = core(t0);
        register(&mut old, &mut dev, t0);
    }
    // The relay restarts: its table is empty. The device's next keep-alive registers it and is
    // answered, so the device sends its refresh (LAN address) at once.
    let t1 = t0 + Duration::from_secs(30);
    let mut c = Core::new(
        Settings::default(),
        keys(),
        t1,
        T0_US + 30_000_000,
        StdRng::seed_from_u64(8),
    );
    let viewer = addr("198.51.100.10:50000");
    assert!(matches!(
        c.open_session(t1, CAM, viewer, true),
        Decision::Offline { .. }
    ));
    let ka = dev.keepalive();
    c.handle_datagram(t1, addr(HOME), &ka);
    let out = drain(&mut c);
    let Body::PeriodAnswer(a) = dev.read(&out[0]).body else {
        panic!()
    };
    assert_eq!((a.echo, a.counter_floor), (dev.counter, dev.counter));
    assert!(matches!(
        c.open_session(t1, CAM, viewer, true),
        Decision::Connect { .. }
    ));
}

#[test]
fn same_network_viewers_go_to_the_lan_and_carrier_nat_homes_do_not() {
    let t = Instant::now();
    let mut c = core(t);
    let mut dev = Dev::new(CAM, 1);
    register(&mut c, &mut dev, t);
    let home_viewer = addr("203.0.113.2:51000");
    assert_eq!(
        c.open_session(t, CAM, home_viewer, true),
        Decision::SameNetwork { lan: addr(LAN) }
    );
    assert!(
        drain(&mut c).is_empty(),
        "no connection request for a LAN viewer"
    );
    assert!(matches!(
        c.open_session(t, CAM, home_viewer, false),
        Decision::Connect { .. }
    ));
    drain(&mut c);
    assert!(matches!(
        c.open_session(t, CAM, addr("198.51.100.10:50000"), true),
        Decision::Connect { .. }
    ));
    drain(&mut c);
    assert_eq!(c.devices(t)[0].lan_redirects, 1);

    // Behind a carrier NAT: the router's WAN is 100.64.0.2, the relay sees 198.51.100.1.
    let mut cgn = Dev::new(CAM2, 2);
    let d = cgn.datagram(Body::Notify(Notify {
        kind: NotifyKind::Refresh,
        lan: Some(addr(LAN)),
        router_wan: Some(IpAddr::V4(Ipv4Addr::new(100, 64, 0, 2))),
    }));
    c.handle_datagram(t, addr("198.51.100.1:20010"), &d);
    drain(&mut c);
    let neighbour = addr("198.51.100.1:24100");
    assert!(matches!(
        c.open_session(t, CAM2, neighbour, true),
        Decision::Connect { .. }
    ));
    drain(&mut c);
    // The two devices are in different homes; the device-to-device bit says so.
    assert_eq!(c.same_network(t, CAM, CAM2), Some(false));
    assert_eq!(c.same_network(t, CAM, 99), None);
    let q = dev.datagram(Body::SameNetworkQuery { peer: CAM2 });
    c.handle_datagram(t, addr(HOME), &q);
    let out = drain(&mut c);
    assert_eq!(
        dev.read(&out[0]).body,
        Body::SameNetworkAnswer(SameNetworkAnswer {
            echo: dev.counter,
            peer: CAM2,
            same: Same::No
        })
    );
    assert!(out[0].bytes.len() < proto::MIN_DEVICE_DATAGRAM);
}

#[test]
fn period_queries_are_rate_limited_per_device() {
    let t = Instant::now();
    let mut c = core(t);
    let mut dev = Dev::new(CAM, 1);
    register(&mut c, &mut dev, t);
    let q = dev.datagram(Body::PeriodQuery);
    for _ in 0..10 {
        c.handle_datagram(t, addr("192.0.2.66:9"), &q);
    }
    assert_eq!(drain(&mut c).len(), 1);
    assert_eq!(c.counters().rate_limited, 9);
    c.handle_datagram(t + Duration::from_millis(250), addr(HOME), &q);
    assert_eq!(drain(&mut c).len(), 1);
}

#[test]
fn an_enrolment_key_admits_derived_secrets_only() {
    let t = Instant::now();
    let key = secret(0x42);
    let keys = Keys {
        devices: HashMap::new(),
        enrol_key: Some(key.clone()),
    };
    let mut c = Core::new(
        Settings::default(),
        keys,
        t,
        T0_US,
        StdRng::seed_from_u64(3),
    );
    let mut good = Dev {
        id: 555,
        secret: Secret::derive(&key, 555),
        counter: 1,
    };
    let mut bad = Dev {
        id: 556,
        secret: Secret::derive(&key, 555),
        counter: 1,
    };
    c.handle_datagram(t, addr(HOME), &good.refresh());
    c.handle_datagram(t, addr(HOME), &bad.refresh());
    assert_eq!(c.presence().len(), 1);
    assert_eq!(c.counters().bad_mac, 1);
    // Under a key any id may exist: one never heard is offline, not unknown.
    assert_eq!(
        c.open_session(t, 556, addr(HOME), false),
        Decision::Offline {
            last_access_unix_ms: None
        }
    );
}

/// Hostile bytes: random datagrams (some with our magic and version, some with a valid MAC over
/// random bodies) never panic the core; each is counted.
#[test]
fn random_datagrams_never_panic() {
    let t = Instant::now();
    let mut c = core(t);
    let mut x: u64 = 0x2545_f491_4f6c_dd1d;
    for k in 0..20_000u32 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let len = (x % 200) as usize;
        let mut b: Vec<u8> = (0..len).map(|i| (x >> (i % 61)) as u8).collect();
        if k % 2 == 0 && b.len() >= 24 {
            b[..4].copy_from_slice(&proto::MAGIC);
            b[4] = proto::VERSION;
            b[5] = (x % 8) as u8;
            b[8..16].copy_from_slice(&CAM.to_be_bytes());
            if k % 4 == 0 {
                // A correct MAC over random TLVs: the body parser sees them.
                let body_len = b.len() - 24;
                b[6..8].copy_from_slice(&(body_len as u16).to_be_bytes());
                let mut m =
                    <hmac::Hmac<sha2::Sha256> as hmac::Mac>::new_from_slice(&[1; 32]).unwrap();
                hmac::Mac::update(&mut m, &b);
                b.extend_from_slice(&hmac::Mac::finalize(m).into_bytes());
            }
        }
        c.handle_datagram(t, addr("192.0.2.66:1000"), &b);
    }
    drain(&mut c);
    let k = c.counters();
    assert_eq!(k.datagrams, 20_000);
    assert!(
        k.foreign + k.malformed + k.bad_mac + k.wrong_direction > 10_000,
        "{k:?}"
    );
}

/// Viewers opening and closing connections in a loop: at most 50 new sessions (so 50 TLS
/// connections from the camera) per second.
#[test]
fn new_sessions_per_device_are_rate_limited() {
    let t0 = Instant::now();
    let mut c = core(t0);
    let mut dev = Dev::new(CAM, 1);
    register(&mut c, &mut dev, t0);
    let v = addr("198.51.100.10:50000");
    let mut made = 0;
    for k in 0..200u64 {
        let now = t0 + Duration::from_millis(5 * k);
        if let Decision::Connect { session } = c.open_session(now, CAM, v, true) {
            made += 1;
            c.session_closed(now, session);
        }
    }
    assert_eq!(made, 50, "50 in the first second, none in the rest of it");
    let later = t0 + Duration::from_millis(1000);
    assert!(matches!(
        c.open_session(later, CAM, v, true),
        Decision::Connect { .. }
    ));
}
