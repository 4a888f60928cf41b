//! The device side of seed 003 as a sans-IO state machine ([`DeviceCore`]), in the style of the
//! election: no socket, no clock. The driver feeds datagrams with [`DeviceCore::handle_datagram`],
//! calls [`DeviceCore::handle_timeout`] at [`DeviceCore::poll_timeout`], sends what
//! [`DeviceCore::poll_transmit`] yields and acts on [`DeviceCore::poll_event`].
//!
//! # What it sends (docs/relay-protocol.md)
//! 1. A **PeriodQuery** to the first configured relay (seed 003: the device first asks the server
//!    for the maximum access confirmation period). Unanswered after `attempts` tries (backing
//!    off from `answer_timeout`), the next relay is asked: failover, round-robin.
//! 2. Once answered, a **Refresh** at once (it sets the last access and the LAN address of seed
//!    004), then one every `period / 3` (so two lost refreshes in a row still leave the device
//!    online at the relay) but at least every `refresh_max` (60 s): refreshes are what is
//!    answered, so they are how a dead relay is noticed, within `refresh_max` plus the retries
//!    (20 s). Every answer repeats the period, so a changed relay setting is learned within one
//!    refresh. A refresh unanswered `attempts` times means the relay is gone: the next relay is
//!    queried.
//! 3. A **KeepAlive** whenever nothing went to the relay for `keepalive` (the shorter of our
//!    setting and the relay's suggestion): it keeps the NAT's UDP binding open, so it must come
//!    more often than the NAT's UDP timeout (30 s on many routers; RFC 4787 REQ-5 asks for at
//!    least 2 min, few follow it). Default 15 s, like ICE's keepalives (RFC 8445 §11).
//!    A restarted relay answers the first keep-alive of a device it does not know, and the device
//!    refreshes at once: it is back within one keep-alive interval.
//! 4. While on a fallback relay, a PeriodQuery to each better relay every `failback`; an answer
//!    moves the device back, so the cameras of a home end up on the same relay.
//!
//! # What it accepts
//! Every datagram must come from a configured relay's address and carry a valid MAC with our
//! secret (else counted as `unknown_source`, `malformed` or `forged`). A PeriodAnswer must echo
//! the counter of one of our recent datagrams to that relay (else `unexpected`); it sets the
//! relay's clock (its counter is its time in microseconds). A **ConnectRequest** is turned into
//! [`Event::Connect`] only if it names our device id, is at most `max_request_age` old by that
//! relay's clock (`stale`), and its session was not seen before. A second copy of a session
//! is either the relay's resend (a new relay counter: `resent`, expected while a back-connection
//! is on its way) or a copy of a datagram already received (the same counter: `replayed`). The
//! back-connection
//! then proves the nonce inside TLS, so even an accepted replay achieves nothing at the relay.

use std::collections::VecDeque;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use shared::relayproto::{
    self as proto, Body, ConnectRequest, NONCE_LEN, Notify, NotifyKind, PeriodAnswer, Repr, Secret,
};

/// Timers and limits.
#[derive(Clone, Debug)]
pub struct Settings {
    /// The longest silence towards the active relay (default 15 s); below the NAT's UDP timeout.
    pub keepalive: Duration,
    /// First wait for an answer to a query or refresh (default 2 s); the n-th try waits n times.
    pub answer_timeout: Duration,
    /// Unanswered tries before a relay counts as gone (default 4).
    pub attempts: u32,
    /// Oldest connection request acted on, by the relay's clock (default 30 s).
    pub max_request_age: Duration,
    /// How far a connection request may be ahead of the relay's clock as we estimate it
    /// (default 2 s: the estimate lags by the answer's one-way delay).
    pub max_request_lead: Duration,
    /// While on a fallback relay, how often the better ones are asked (default 60 s).
    pub failback: Duration,
    /// The longest time between refreshes, whatever the period (default 60 s).
    pub refresh_max: Duration,
}

impl Default for Settings {
    fn default() -> Settings {
        Settings {
            keepalive: Duration::from_secs(15),
            answer_timeout: Duration::from_secs(2),
            attempts: 4,
            max_request_age: Duration::from_secs(30),
            max_request_lead: Duration::from_secs(2),
            failback: Duration::from_secs(60),
            refresh_max: Duration::from_secs(60),
        }
    }
}

/// A datagram to send.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Transmit {
    pub to: SocketAddr,
    pub data: Vec<u8>,
}

/// A valid connection request: open TLS to `back`, send the hello for `session` and `nonce`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Connect {
    /// Index of the relay in the configured list.
    pub relay: usize,
    /// The relay's back-connection address (its UDP address's host, the request's port).
    pub back: SocketAddr,
    pub session: u64,
    pub nonce: [u8; NONCE_LEN],
}

/// What the driver must act on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// Registered with relay `relay`, which sees us at `observed`.
    Registered { relay: usize, observed: SocketAddr },
    /// Relay `relay` stopped answering; the next one is being asked.
    Lost { relay: usize },
    /// Open a back-connection.
    Connect(Connect),
}

/// Counters for the status page.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    pub queries: u64,
    pub keepalives: u64,
    pub refreshes: u64,
    pub answers: u64,
    pub connects: u64,
    pub failovers: u64,
    /// Datagrams from an address that is not a configured relay.
    pub unknown_source: u64,
    /// Bad MAC: forged, corrupted, or another secret.
    pub forged: u64,
    /// Not parseable (truncated, unknown type or version, bad fields).
    pub malformed: u64,
    /// A relay datagram for another device id.
    pub wrong_device: u64,
    /// Answers that echo nothing we sent recently, and types a relay does not send.
    pub unexpected: u64,
    /// Connection requests older than `max_request_age`, from the future, or from a relay whose
    /// clock we do not know yet.
    pub stale: u64,
    /// Connection requests that repeat one already received, counter and all (a replay).
    pub replayed: u64,
    /// The relay's resends of a request already acted on (not counted as dropped).
    pub resent: u64,
}

impl Stats {
    /// Relay datagrams counted and dropped, whatever the reason.
    pub fn dropped(&self) -> u64 {
        self.unknown_source
            + self.forged
            + self.malformed
            + self.wrong_device
            + self.unexpected
            + self.stale
            + self.replayed
    }
}

/// Where the core is, for the status page.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Status {
    pub enabled: bool,
    /// The relay in use (index into the configured list).
    pub relay: usize,
    /// Registered: the relay answered and sees us at `observed`.
    pub registered: bool,
    pub observed: Option<SocketAddr>,
    pub period: Duration,
    pub keepalive: Duration,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Asking {
    Query,
    Refresh,
}

#[derive(Clone, Copy, Debug)]
struct Awaiting {
    asking: Asking,
    attempt: u32,
}

/// A relay's clock: its counter (microseconds since the epoch) when an answer arrived.
#[derive(Clone, Copy, Debug)]
struct Clock {
    relay_us: u64,
    at: Instant,
}

impl Clock {
    fn estimate(&self, now: Instant) -> u64 {
        let elapsed = now.saturating_duration_since(self.at).as_micros();
        self.relay_us
            .saturating_add(u64::try_from(elapsed).unwrap_or(u64::MAX))
    }
}

/// A session acted on: its relay, id, the relay counters of the copies received (a few), and
/// when it can be forgotten (past the age limit).
#[derive(Clone, Debug)]
struct Seen {
    relay: usize,
    session: u64,
    counters: Vec<u64>,
    forget: Instant,
}

/// Copies of one session whose counters are remembered (the relay resends about 5 times).
const MAX_COPIES: usize = 8;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Sent {
    Query,
    Refresh,
    KeepAlive,
}

#[derive(Clone, Copy, Debug)]
struct Pending {
    relay: usize,
    counter: u64,
    kind: Sent,
    at: Instant,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Timer {
    // Before KeepAlive: a refresh due at the same instant resets the keep-alive instead of
    // following it.
    Refresh,
    KeepAlive,
    Answer,
    Failback,
}

/// In the order of the enum (its discriminants index `timers`).
const TIMERS: [Timer; 4] = [
    Timer::Refresh,
    Timer::KeepAlive,
    Timer::Answer,
    Timer::Failback,
];

/// Answers are expected for this long after a datagram leaves.
const PENDING_FOR: Duration = Duration::from_secs(60);
/// Bounds on the memory of sent counters and seen sessions.
const MAX_PENDING: usize = 64;
const MAX_SEEN: usize = 4096;
/// The period assumed until a relay tells its own (seed 003's example, the relay's default).
const DEFAULT_PERIOD: Duration = Duration::from_secs(300);

/// The device core. See the module docs.
#[derive(Debug)]
pub struct DeviceCore {
    s: Settings,
    id: u64,
    secret: Secret,
    relays: Vec<SocketAddr>,
    enabled: bool,
    active: usize,
    registered: bool,
    lan: Option<SocketAddr>,
    router_wan: Option<IpAddr>,
    counter: u64,
    awaiting: Option<Awaiting>,
    period: Duration,
    keepalive: Duration,
    observed: Option<SocketAddr>,
    clocks: Vec<Option<Clock>>,
    /// Our recent datagrams that may be answered.
    pending: VecDeque<Pending>,
    /// (relay, session, forget at) of connection requests acted on.
    seen: VecDeque<Seen>,
    timers: [Option<Instant>; TIMERS.len()],
    out: VecDeque<Transmit>,
    events: VecDeque<Event>,
    stats: Stats,
}

impl DeviceCore {
    /// A core for device `id` with its `secret` and the relays' UDP addresses in order of
    /// preference. `wall_ms` (milliseconds since the Unix epoch) starts the counter above
    /// anything sent before a restart (docs/relay-protocol.md). Starts disabled.
    pub fn new(
        settings: Settings,
        id: u64,
        secret: Secret,
        relays: Vec<SocketAddr>,
        wall_ms: u64,
    ) -> DeviceCore {
        let n = relays.len();
        DeviceCore {
            keepalive: settings.keepalive,
            s: settings,
            id,
            secret,
            relays,
            enabled: false,
            active: 0,
            registered: false,
            lan: None,
            router_wan: None,
            counter: wall_ms,
            awaiting: None,
            period: DEFAULT_PERIOD,
            observed: None,
            clocks: vec![None; n],
            pending: VecDeque::new(),
            seen: VecDeque::new(),
            timers: [None; TIMERS.len()],
            out: VecDeque::new(),
            events: VecDeque::new(),
            stats: Stats::default(),
        }
    }

    /// Start (true) or stop (false) using the relays. Stopping sends nothing: the relay forgets
    /// the device after one period.
    pub fn set_enabled(&mut self, now: Instant, on: bool) {
        if on == self.enabled || self.relays.is_empty() {
            return;
        }
        self.enabled = on;
        self.timers = [None; TIMERS.len()];
        self.awaiting = None;
        self.registered = false;
        if on {
            self.start_query(now, 0);
        }
    }

    /// The LAN address and web port to register (seed 004), and the external address the home
    /// router reports (lets the relay tell a home behind a shared carrier-grade NAT address
    /// apart); sent with the next refresh, at once if they changed while registered.
    pub fn set_lan(&mut self, now: Instant, lan: Option<SocketAddr>, router_wan: Option<IpAddr>) {
        if (lan, router_wan) == (self.lan, self.router_wan) {
            return;
        }
        self.lan = lan;
        self.router_wan = router_wan;
        if self.enabled && self.registered && self.awaiting.is_none() {
            self.send_refresh(now, 1);
        }
    }

    pub fn status(&self) -> Status {
        Status {
            enabled: self.enabled,
            relay: self.active,
            registered: self.enabled && self.registered,
            observed: self.observed.filter(|_| self.registered),
            period: self.period,
            keepalive: self.keepalive,
        }
    }

    pub fn stats(&self) -> Stats {
        self.stats
    }

    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.out.pop_front()
    }

    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    pub fn poll_timeout(&self) -> Option<Instant> {
        self.timers.iter().flatten().min().copied()
    }

    pub fn handle_timeout(&mut self, now: Instant) {
        for (i, t) in TIMERS.iter().enumerate() {
            if self.timers[i].is_some_and(|at| at <= now) {
                self.timers[i] = None;
                self.on_timer(now, *t);
            }
        }
    }

    /// A datagram from `from`.
    pub fn handle_datagram(&mut self, now: Instant, from: SocketAddr, data: &[u8]) {
        if !self.enabled {
            return;
        }
        let Some(relay) = self.relays.iter().position(|r| *r == from) else {
            self.stats.unknown_source += 1;
            return;
        };
        let repr = match Repr::parse(data, &self.secret) {
            Ok(r) => r,
            Err(proto::Error::BadMac) => {
                self.stats.forged += 1;
                return;
            }
            Err(_) => {
                self.stats.malformed += 1;
                return;
            }
        };
        if repr.device_id != self.id {
            self.stats.wrong_device += 1;
            return;
        }
        match repr.body {
            Body::PeriodAnswer(a) => self.on_answer(now, relay, repr.counter, &a),
            Body::ConnectRequest(c) => self.on_connect(now, relay, repr.counter, &c),
            _ => self.stats.unexpected += 1,
        }
    }

    fn timer(&mut self, t: Timer, at: Option<Instant>) {
        self.timers[t as usize] = at;
    }

    fn on_timer(&mut self, now: Instant, t: Timer) {
        match t {
            Timer::KeepAlive => {
                let lan = self.lan;
                self.send(
                    now,
                    self.active,
                    Body::Notify(Notify {
                        kind: NotifyKind::KeepAlive,
                        lan,
                        router_wan: None,
                    }),
                );
                self.stats.keepalives += 1;
            }
            Timer::Refresh => self.send_refresh(now, 1),
            Timer::Answer => {
                let Some(a) = self.awaiting else { return };
                if a.attempt < self.s.attempts {
                    match a.asking {
                        Asking::Query => self.send_query(now, a.attempt + 1),
                        Asking::Refresh => self.send_refresh(now, a.attempt + 1),
                    }
                } else {
                    // Gone (or unreachable from here): the next relay, round-robin.
                    if self.registered {
                        self.events.push_back(Event::Lost { relay: self.active });
                    }
                    self.stats.failovers += 1;
                    let next = (self.active + 1) % self.relays.len();
                    self.start_query(now, next);
                }
            }
            Timer::Failback => {
                for better in 0..self.active {
                    self.send(now, better, Body::PeriodQuery);
                    self.stats.queries += 1;
                }
                self.timer(Timer::Failback, Some(now + self.s.failback));
            }
        }
    }

    fn start_query(&mut self, now: Instant, relay: usize) {
        self.active = relay;
        self.registered = false;
        self.observed = None;
        self.timers = [None; TIMERS.len()];
        self.send_query(now, 1);
    }

    fn send_query(&mut self, now: Instant, attempt: u32) {
        self.send(now, self.active, Body::PeriodQuery);
        self.stats.queries += 1;
        self.await_answer(now, Asking::Query, attempt);
    }

    fn send_refresh(&mut self, now: Instant, attempt: u32) {
        let (lan, router_wan) = (self.lan, self.router_wan);
        self.send(
            now,
            self.active,
            Body::Notify(Notify {
                kind: NotifyKind::Refresh,
                lan,
                router_wan,
            }),
        );
        self.stats.refreshes += 1;
        self.timer(Timer::Refresh, None);
        self.await_answer(now, Asking::Refresh, attempt);
    }

    fn await_answer(&mut self, now: Instant, asking: Asking, attempt: u32) {
        self.awaiting = Some(Awaiting { asking, attempt });
        self.timer(Timer::Answer, Some(now + self.s.answer_timeout * attempt));
    }

    /// Sends `body` to relay `relay` and remembers its counter for the answer.
    fn send(&mut self, now: Instant, relay: usize, body: Body) {
        let body = match body {
            // A refresh must carry the LAN address (the relay refuses one without); until the
            // driver knows it, a keep-alive goes instead.
            Body::Notify(Notify {
                kind: NotifyKind::Refresh,
                lan: None,
                ..
            }) => Body::Notify(Notify {
                kind: NotifyKind::KeepAlive,
                lan: None,
                router_wan: None,
            }),
            other => other,
        };
        let kind = match &body {
            Body::Notify(n) if n.kind == NotifyKind::Refresh => Sent::Refresh,
            Body::Notify(_) => Sent::KeepAlive,
            _ => Sent::Query,
        };
        self.counter = self.counter.saturating_add(1);
        let repr = Repr {
            device_id: self.id,
            counter: self.counter,
            body,
        };
        self.out.push_back(Transmit {
            to: self.relays[relay],
            data: repr.emit(&self.secret),
        });
        self.pending.push_back(Pending {
            relay,
            counter: self.counter,
            kind,
            at: now,
        });
        while self.pending.len() > MAX_PENDING
            || self
                .pending
                .front()
                .is_some_and(|p| now.saturating_duration_since(p.at) > PENDING_FOR)
        {
            self.pending.pop_front();
        }
        if relay == self.active {
            // Anything we send keeps the binding open: the keep-alive counts from here.
            self.timer(Timer::KeepAlive, Some(now + self.keepalive));
        }
    }

    fn on_answer(&mut self, now: Instant, relay: usize, counter: u64, a: &PeriodAnswer) {
        let Some(i) = self
            .pending
            .iter()
            .position(|p| p.relay == relay && p.counter == a.echo)
        else {
            self.stats.unexpected += 1;
            return;
        };
        let Some(Pending {
            kind: answered,
            at: sent_at,
            ..
        }) = self.pending.remove(i)
        else {
            return;
        };
        self.stats.answers += 1;
        if self.clocks[relay].is_none_or(|c| counter > c.relay_us) {
            self.clocks[relay] = Some(Clock {
                relay_us: counter,
                at: now,
            });
        }
        self.counter = self.counter.max(a.counter_floor);
        if relay > self.active {
            return; // a late answer from a relay we left for a better one
        }
        if relay < self.active {
            // A better relay answered the failback query: move to it, registering as after a query.
            self.active = relay;
            self.registered = false;
            self.timers = [None; TIMERS.len()];
            self.awaiting = Some(Awaiting {
                asking: Asking::Query,
                attempt: 1,
            });
        }
        // A query's answer changes nothing at the relay (seed 003 asks first); registered means
        // a notification of ours was answered, so the relay holds the device.
        let was = self.registered;
        self.registered |= answered != Sent::Query;
        self.period = Duration::from_millis(u64::from(a.period_ms)).max(Duration::from_secs(3));
        self.keepalive = match a.keepalive_ms {
            0 => self.s.keepalive,
            ms => self.s.keepalive.min(Duration::from_millis(u64::from(ms))),
        }
        .max(Duration::from_millis(500));
        if self.registered && (!was || self.observed != Some(a.observed)) {
            self.events.push_back(Event::Registered {
                relay,
                observed: a.observed,
            });
        }
        self.observed = Some(a.observed);
        let asking = self.awaiting.map(|w| w.asking);
        match (answered, asking) {
            (Sent::Refresh, Some(Asking::Refresh)) => {
                self.awaiting = None;
                self.timer(Timer::Answer, None);
                // From when it left, so the next refresh replaces a keep-alive rather than
                // following one by a round trip.
                let every = (self.period / 3).min(self.s.refresh_max);
                self.timer(Timer::Refresh, Some(sent_at + every));
                // On a fallback: ask the better relays from now on (a running schedule stays).
                let failback = self.timers[Timer::Failback as usize]
                    .or_else(|| (self.active > 0).then(|| now + self.s.failback));
                self.timer(Timer::Failback, failback);
            }
            // The query's answer; or a keep-alive's, which means the relay had lost us (a
            // restart): the last access and the LAN address are set by a refresh, now.
            (Sent::Query, Some(Asking::Query)) | (Sent::KeepAlive, None) => {
                self.send_refresh(now, 1);
            }
            _ => {} // a late duplicate
        }
    }

    fn on_connect(&mut self, now: Instant, relay: usize, counter: u64, c: &ConnectRequest) {
        let Some(clock) = self.clocks[relay] else {
            self.stats.stale += 1;
            return;
        };
        let est = clock.estimate(now);
        let age = est.saturating_sub(counter);
        let lead = counter.saturating_sub(est);
        if age > micros(self.s.max_request_age) || lead > micros(self.s.max_request_lead) {
            self.stats.stale += 1;
            return;
        }
        while self.seen.front().is_some_and(|s| s.forget <= now) || self.seen.len() >= MAX_SEEN {
            self.seen.pop_front();
        }
        if let Some(seen) = self
            .seen
            .iter_mut()
            .find(|s| s.relay == relay && s.session == c.session)
        {
            if seen.counters.contains(&counter) {
                self.stats.replayed += 1;
            } else {
                self.stats.resent += 1;
                if seen.counters.len() < MAX_COPIES {
                    seen.counters.push(counter);
                }
            }
            return;
        }
        // Remembered for as long as it could pass the age check.
        let forget =
            now + self.s.max_request_age + self.s.max_request_lead + Duration::from_secs(1);
        self.seen.push_back(Seen {
            relay,
            session: c.session,
            counters: vec![counter],
            forget,
        });
        self.stats.connects += 1;
        self.events.push_back(Event::Connect(Connect {
            relay,
            back: SocketAddr::new(self.relays[relay].ip(), c.back_port),
            session: c.session,
            nonce: c.nonce,
        }));
    }
}

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}
