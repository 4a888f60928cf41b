//! Virtual-clock tests of the device core: the core, relays that behave as
//! docs/relay-protocol.md says, and between them a NAT whose UDP bindings time out (30 s unless a
//! test says otherwise) and a link that loses datagrams with a seeded probability.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use shared::relayproto::{
    Body, ConnectRequest, NotifyKind, PeriodAnswer, Repr, SECRET_LEN, Secret,
};

use super::core::{DeviceCore, Event, Settings, Stats};

const ID: u64 = 0x00c0_ffee_0000_0001;
const PERIOD: Duration = Duration::from_secs(300);
const ONE_WAY: Duration = Duration::from_millis(20);
/// 2026-12-08 in microseconds since the epoch: the relays' clocks.
const EPOCH_US: u64 = 1_796_688_000_000_000;
/// Session ids of the second relay start here (the tests use two at most).
const SESSIONS_PER_RELAY: u64 = 1 << 32;

fn secret() -> Secret {
    Secret([0x5a; SECRET_LEN])
}

fn lan() -> SocketAddr {
    SocketAddr::from(([192, 168, 1, 100], 8080))
}

/// A relay as the protocol document describes it, for one device.
struct SimRelay {
    addr: SocketAddr,
    up: bool,
    /// (observed, last access) once registered.
    entry: Option<(SocketAddr, Instant)>,
    floor: u64,
    last_us: u64,
    next_session: u64,
    /// The keep-alive interval it suggests.
    keepalive_ms: u32,
}

impl SimRelay {
    fn new(addr: SocketAddr) -> SimRelay {
        SimRelay {
            addr,
            up: true,
            entry: None,
            floor: 0,
            last_us: 0,
            // Distinct per relay.
            next_session: SESSIONS_PER_RELAY * u64::from(addr.ip().to_string().ends_with(".21"))
                + 1,
            keepalive_ms: 20_000,
        }
    }

    fn clock(&mut self, w: &World0) -> u64 {
        let us = EPOCH_US + w.now.duration_since(w.t0).as_micros() as u64;
        self.last_us = us.max(self.last_us + 1);
        self.last_us
    }

    fn online(&self, now: Instant) -> bool {
        self.entry
            .is_some_and(|(_, at)| now.duration_since(at) <= PERIOD)
    }

    /// A device datagram from `from` (after the NAT); the answer, if any.
    fn receive(&mut self, w: &World0, from: SocketAddr, data: &[u8]) -> Option<Vec<u8>> {
        if !self.up {
            return None;
        }
        let r = Repr::parse(data, &secret()).ok()?;
        let live = self.online(w.now);
        let answer = match r.body {
            Body::PeriodQuery => true,
            Body::Notify(n) => {
                if r.counter <= self.floor {
                    return None; // replay
                }
                self.floor = r.counter;
                let refresh = n.kind == NotifyKind::Refresh || !live;
                let last = match (refresh, self.entry) {
                    (false, Some((_, at))) => at,
                    _ => w.now,
                };
                self.entry = Some((from, last));
                refresh
            }
            _ => false,
        };
        answer.then(|| {
            let counter = self.clock(w);
            Repr {
                device_id: ID,
                counter,
                body: Body::PeriodAnswer(PeriodAnswer {
                    echo: r.counter,
                    period_ms: PERIOD.as_millis() as u32,
                    observed: from,
                    counter_floor: self.floor,
                    back_port: 17781,
                    keepalive_ms: self.keepalive_ms,
                }),
            }
            .emit(&secret())
        })
    }

    /// A viewer asks: a connection request to the observed address, or None when offline.
    fn connect_request(&mut self, w: &World0, session: u64) -> Option<(SocketAddr, Vec<u8>)> {
        if !self.up || !self.online(w.now) {
            return None;
        }
        let to = self.entry?.0;
        let counter = self.clock(w);
        let data = Repr {
            device_id: ID,
            counter,
            body: Body::ConnectRequest(ConnectRequest {
                session,
                nonce: [session as u8; 16],
                back_port: 17781,
            }),
        }
        .emit(&secret());
        Some((to, data))
    }
}

/// A NAT with one endpoint-independent UDP binding (RFC 4787 REQ-1) that lapses after
/// `timeout` without outbound traffic (outbound refresh, REQ-6); a new binding gets a new port.
struct Nat {
    timeout: Duration,
    port: u16,
    last_out: Option<Instant>,
}

impl Nat {
    fn public(&self) -> SocketAddr {
        SocketAddr::from(([100, 64, 0, 2], self.port))
    }

    fn outbound(&mut self, now: Instant) -> SocketAddr {
        if !self.alive(now) {
            self.port += 1;
        }
        self.last_out = Some(now);
        self.public()
    }

    fn alive(&self, now: Instant) -> bool {
        self.last_out
            .is_some_and(|t| now.duration_since(t) < self.timeout)
    }
}

/// Clock and dice, borrowed by the relays.
struct World0 {
    t0: Instant,
    now: Instant,
}

enum Flight {
    /// Device -> relay `usize`.
    Up(usize, SocketAddr, Vec<u8>),
    /// Relay `usize` -> the NAT's public address.
    Down(usize, SocketAddr, Vec<u8>),
}

struct World {
    w: World0,
    core: DeviceCore,
    relays: Vec<SimRelay>,
    nat: Nat,
    rng: SmallRng,
    loss: f64,
    flights: Vec<(Instant, Flight)>,
    /// Sessions the device acted on.
    connected: Vec<u64>,
    registered: Vec<usize>,
    lost: usize,
}

impl World {
    fn new(
        relays: usize,
        settings: Settings,
        nat_timeout: Duration,
        loss: f64,
        seed: u64,
    ) -> World {
        let t0 = Instant::now();
        let addrs: Vec<SocketAddr> = (0..relays)
            .map(|i| SocketAddr::from(([198, 51, 100, 20 + i as u8], 17780)))
            .collect();
        let mut core = DeviceCore::new(settings, ID, secret(), addrs.clone(), 1_000);
        core.set_lan(t0, Some(lan()), None);
        World {
            w: World0 { t0, now: t0 },
            core,
            relays: addrs.into_iter().map(SimRelay::new).collect(),
            nat: Nat {
                timeout: nat_timeout,
                port: 40000,
                last_out: None,
            },
            rng: SmallRng::seed_from_u64(seed),
            loss,
            flights: Vec::new(),
            connected: Vec::new(),
            registered: Vec::new(),
            lost: 0,
        }
    }

    fn lossy(&mut self) -> bool {
        self.rng.random_bool(self.loss)
    }

    /// Hands the core's output to the network and collects its events.
    fn drain(&mut self) {
        while let Some(t) = self.core.poll_transmit() {
            let from = self.nat.outbound(self.w.now);
            let relay = self.relays.iter().position(|r| r.addr == t.to);
            if let Some(i) = relay
                && !self.lossy()
            {
                self.flights
                    .push((self.w.now + ONE_WAY, Flight::Up(i, from, t.data)));
            }
        }
        while let Some(e) = self.core.poll_event() {
            match e {
                Event::Connect(c) => self.connected.push(c.session),
                Event::Registered { relay, .. } => self.registered.push(relay),
                Event::Lost { .. } => self.lost += 1,
            }
        }
    }

    fn send_down(&mut self, relay: usize, to: SocketAddr, data: Vec<u8>) {
        if !self.lossy() {
            self.flights
                .push((self.w.now + ONE_WAY, Flight::Down(relay, to, data)));
        }
    }

    /// Runs until `until`, calling `each_second` at every whole second of virtual time.
    fn run(&mut self, until: Instant, mut each_second: impl FnMut(&mut World)) {
        let mut next_tick = self.w.now + Duration::from_secs(1);
        loop {
            self.drain();
            let next_flight = self.flights.iter().map(|f| f.0).min();
            let next = [self.core.poll_timeout(), next_flight, Some(next_tick)]
                .into_iter()
                .flatten()
                .min()
                .unwrap_or(until);
            if next > until {
                self.w.now = until;
                return;
            }
            self.w.now = next;
            if next == next_tick {
                next_tick += Duration::from_secs(1);
                each_second(self);
            }
            let now = self.w.now;
            let due: Vec<Flight> = {
                let (due, rest): (Vec<_>, Vec<_>) =
                    self.flights.drain(..).partition(|f| f.0 <= now);
                self.flights = rest;
                due.into_iter().map(|f| f.1).collect()
            };
            for f in due {
                match f {
                    Flight::Up(i, from, data) => {
                        if let Some(answer) = self.relays[i].receive(&self.w, from, &data) {
                            self.send_down(i, from, answer);
                        }
                    }
                    Flight::Down(i, to, data) => {
                        // The NAT lets it in only on a live binding for that port.
                        if self.nat.alive(now) && to == self.nat.public() {
                            let src = self.relays[i].addr;
                            self.core.handle_datagram(now, src, &data);
                        }
                    }
                }
            }
            if self.core.poll_timeout().is_some_and(|t| t <= now) {
                self.core.handle_timeout(now);
            }
        }
    }

    /// A viewer at relay `i`: the connection request, resent as the relay does (250 ms, then
    /// doubling, within 5 s) until the device acts on it. True if it did.
    fn view(&mut self, i: usize) -> bool {
        let session = self.relays[i].next_session;
        self.relays[i].next_session += 1;
        let mut wait = Duration::from_millis(250);
        let deadline = self.w.now + Duration::from_secs(5);
        while self.w.now < deadline {
            if self.connected.contains(&session) {
                return true;
            }
            if let Some((to, data)) = self.relays[i].connect_request(&self.w, session) {
                self.send_down(i, to, data);
            }
            let until = (self.w.now + wait).min(deadline);
            self.run(until, |_| {});
            wait *= 2;
        }
        self.connected.contains(&session)
    }

    fn stats(&self) -> Stats {
        self.core.stats()
    }
}

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

/// Hours idle behind a router whose UDP timeout is 30 s: every viewer gets through, the relay
/// never sees the camera offline, and the traffic is one small datagram per keep-alive interval.
#[test]
fn hours_idle_behind_a_30_s_udp_timeout_stays_reachable() {
    let mut w = World::new(1, Settings::default(), secs(30), 0.0, 1);
    w.core.set_enabled(w.w.now, true);
    let start = w.w.now;
    let mut offline = 0;
    let mut reached = 0;
    for hour in 0..6 {
        for view in 0..8 {
            let until = start + secs(hour * 3600 + view * 450 + 7);
            w.run(until, |w| {
                if !w.relays[0].online(w.w.now) && w.w.now > start + secs(1) {
                    offline += 1;
                }
            });
            reached += usize::from(w.view(0));
        }
    }
    assert_eq!(reached, 48, "every viewer reaches the camera");
    assert_eq!(offline, 0, "the relay never saw the camera offline");
    let s = w.stats();
    // One binding the whole time: the NAT never had to make a new one.
    assert_eq!(w.nat.port, 40001);
    // One datagram per 15 s, 1440 in 6 h: keep-alives, and every fourth a refresh instead.
    let sent = s.keepalives + s.refreshes + s.queries;
    assert!((1400..=1500).contains(&sent), "{s:?}");
    assert_eq!((s.forged, s.stale, s.unexpected), (0, 0, 0), "{s:?}");
}

/// The same model with keep-alives slower than the NAT's timeout loses the camera: the test
/// does model the NAT.
#[test]
fn keepalives_slower_than_the_nat_timeout_lose_the_camera() {
    let settings = Settings {
        keepalive: secs(45),
        ..Settings::default()
    };
    let mut w = World::new(1, settings, secs(30), 0.0, 2);
    w.relays[0].keepalive_ms = 60_000;
    w.core.set_enabled(w.w.now, true);
    let start = w.w.now;
    let mut reached = 0;
    let mut closed = 0;
    for view in 0..20 {
        w.run(start + secs(600 + view * 37), |w| {
            closed += usize::from(!w.nat.alive(w.w.now));
        });
        reached += usize::from(w.view(0));
    }
    // Closed 15 s of every 45 s (minus refreshes): viewers then wait for the next keep-alive.
    assert!(closed > 200, "binding closed for {closed} of 1300 s");
    assert!(reached <= 17, "reached {reached} of 20");
    assert!(w.nat.port > 40010, "bindings kept lapsing: {}", w.nat.port);
}

/// 10 % loss each way: refreshes are retried, keep-alives come often enough that one lost copy
/// does not lapse the binding, and the relay's resent connection requests get through.
#[test]
fn ten_percent_loss_still_reaches_the_camera() {
    let mut w = World::new(1, Settings::default(), secs(30), 0.10, 3);
    w.core.set_enabled(w.w.now, true);
    let start = w.w.now;
    let mut offline = 0;
    let mut reached = 0;
    let views = 120;
    for view in 0..views {
        w.run(start + secs(60 + view * 89), |w| {
            if !w.relays[0].online(w.w.now) && w.w.now > start + secs(60) {
                offline += 1;
            }
        });
        reached += usize::from(w.view(0));
    }
    assert_eq!(offline, 0, "offline at the relay for {offline} s");
    assert!(
        reached >= views as usize - 2,
        "reached {reached} of {views}"
    );
}

/// Forged, foreign, replayed and stale connection requests are counted and dropped; only the
/// fresh one becomes a back-connection.
#[test]
fn forged_replayed_and_stale_requests_are_dropped() {
    let mut w = World::new(1, Settings::default(), secs(30), 0.0, 4);
    w.core.set_enabled(w.w.now, true);
    let t = w.w.now + secs(10);
    w.run(t, |_| {});
    assert_eq!(w.registered, vec![0]);
    let relay = w.relays[0].addr;
    let now = w.w.now;
    let (_, good) = w.relays[0].connect_request(&w.w, 77).unwrap();
    // Forged: another secret.
    let forged = Repr::parse(&good, &secret())
        .unwrap()
        .emit(&Secret([1; SECRET_LEN]));
    w.core.handle_datagram(now, relay, &forged);
    // From somewhere else than the relay.
    w.core
        .handle_datagram(now, SocketAddr::from(([203, 0, 113, 66], 17780)), &good);
    // Garbage.
    w.core
        .handle_datagram(now, relay, b"GET / HTTP/1.1\r\n\r\n");
    // Another device's.
    let mut other = Repr::parse(&good, &secret()).unwrap();
    other.device_id = ID + 1;
    w.core.handle_datagram(now, relay, &other.emit(&secret()));
    // Stale: a relay clock 40 s in the past.
    let mut old = Repr::parse(&good, &secret()).unwrap();
    old.counter -= 40_000_000;
    if let Body::ConnectRequest(c) = &mut old.body {
        c.session = 78;
    }
    w.core.handle_datagram(now, relay, &old.emit(&secret()));
    // The fresh one, then the same again (a replay), then the relay's resend (a new counter).
    assert!(w.connected.is_empty());
    w.core.handle_datagram(now, relay, &good);
    w.core.handle_datagram(now, relay, &good);
    let (_, resend) = w.relays[0].connect_request(&w.w, 77).unwrap();
    w.core.handle_datagram(now, relay, &resend);
    w.drain();
    assert_eq!(w.connected, vec![77]);
    assert_eq!(w.stats().resent, 1);
    let s = w.stats();
    assert_eq!(
        (
            s.forged,
            s.unknown_source,
            s.malformed,
            s.wrong_device,
            s.stale,
            s.replayed
        ),
        (1, 1, 1, 1, 1, 1),
        "{s:?}"
    );
    // Replayed later, after its age ran out: stale, not a second connection.
    w.run(now + secs(40), |_| {});
    w.core.handle_datagram(w.w.now, relay, &good);
    w.drain();
    assert_eq!(w.connected, vec![77]);
    assert_eq!(w.stats().stale, 2);
}

/// A relay that does not answer: the device moves to the next; when the first is back it
/// returns within the failback interval, so the cameras of a home meet on the same relay.
#[test]
fn failover_to_the_second_relay_and_back() {
    let mut w = World::new(2, Settings::default(), secs(30), 0.0, 5);
    w.relays[0].up = false;
    w.core.set_enabled(w.w.now, true);
    let start = w.w.now;
    w.run(start + secs(30), |_| {});
    assert_eq!(w.registered, vec![1], "on the second relay");
    assert!(w.core.status().registered);
    assert!(w.view(1));
    assert!(!w.view(0));
    w.relays[0].up = true;
    w.run(start + secs(100), |_| {});
    assert_eq!(w.registered, vec![1, 0], "back on the first");
    assert!(w.view(0));
    // The first dies while registered: the refresh goes unanswered, then the second takes over,
    // within one refresh interval (60 s) and the retries (20 s).
    w.relays[0].up = false;
    let died = w.w.now;
    let mut moved = None;
    w.run(start + secs(400), |w| {
        if moved.is_none() && w.registered.len() == 3 {
            moved = Some(w.w.now);
        }
    });
    assert_eq!(w.registered, vec![1, 0, 1]);
    let took = moved.expect("moved").duration_since(died);
    assert!(took <= secs(81), "took {took:?}");
    assert_eq!(w.lost, 1);
    assert!(w.view(1));
}

/// A restarted relay (empty table, counters gone) has the camera back within one keep-alive
/// interval: it answers the first keep-alive of a device it does not know, and the device
/// refreshes at once.
#[test]
fn relay_restart_back_within_one_keepalive() {
    let mut w = World::new(1, Settings::default(), secs(30), 0.0, 6);
    w.core.set_enabled(w.w.now, true);
    let start = w.w.now;
    w.run(start + secs(50), |_| {});
    w.relays[0] = SimRelay::new(w.relays[0].addr);
    let restarted = w.w.now;
    let mut back = None;
    w.run(restarted + secs(60), |w| {
        if back.is_none() && w.relays[0].online(w.w.now) {
            back = Some(w.w.now);
        }
    });
    let took = back.expect("back").duration_since(restarted);
    assert!(took <= secs(16), "took {took:?}");
    assert!(w.view(0));
}

/// Disabled (auto mode with a working port forward): nothing is sent; enabling asks the period.
#[test]
fn disabled_sends_nothing() {
    let mut w = World::new(1, Settings::default(), secs(30), 0.0, 7);
    let start = w.w.now;
    w.run(start + secs(120), |_| {});
    assert_eq!(w.stats().queries + w.stats().keepalives, 0);
    assert!(!w.core.status().registered);
    w.core.set_enabled(w.w.now, true);
    w.run(start + secs(125), |_| {});
    assert!(w.core.status().registered);
    w.core.set_enabled(w.w.now, false);
    let sent = w.stats().keepalives + w.stats().refreshes;
    w.run(start + secs(400), |_| {});
    assert_eq!(w.stats().keepalives + w.stats().refreshes, sent);
}
