//! The relay's protocol logic, sans-IO (quinn's shape): datagrams, viewer requests and
//! back-connection hellos go in with `now`; datagrams to send come out of
//! [`Core::poll_transmit`], session ends out of [`Core::poll_event`], and [`Core::poll_timeout`]
//! says when to call [`Core::handle_timeout`]. No sockets, no clock, randomness from a seeded
//! generator, so every behaviour is tested with a virtual clock (`tests.rs`).
//!
//! Seed 003 step by step:
//! 1. A device's notifications (MAC'd, counter above the last) record its observed address; a
//!    refresh also its last access ([`Core::handle_datagram`]).
//! 2. A viewer asks for the device ([`Core::open_session`]): refused at once if it was not
//!    refreshed within the period; sent to its LAN address if on the same network (seed 004);
//!    otherwise a session id and nonce are made and a connection request goes to the observed
//!    address, resent with back-off until the back-connection arrives or the set-up time ends.
//! 3. The back-connection's hello proves the nonce ([`Core::back_hello`]); the session is active
//!    until either side closes ([`Core::session_closed`]) or its maximum time ends.

pub mod presence;
pub mod samenet;
mod status;
#[cfg(test)]
mod tests;

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use rand::{Rng, rngs::StdRng};
use shared::relayproto::{
    self as proto, Body, ConnectRequest, Hello, HelloStatus, NotifyKind, Packet, PeriodAnswer,
    Repr, Same, SameNetworkAnswer, Secret,
};

use presence::{Entry, Presence};
use samenet::{Party, Rule};
pub use status::{Counters, DeviceInfo, SessionInfo};

/// Protocol settings (from the config file).
#[derive(Clone, Debug)]
pub struct Settings {
    /// The maximum access confirmation period (seed 003): a device not refreshed within it is
    /// offline.
    pub period: Duration,
    /// The keep-alive interval suggested to devices.
    pub keepalive: Duration,
    /// The TCP port for back-connections, told to devices.
    pub back_port: u16,
    /// How long a viewer waits for the back-connection.
    pub setup_timeout: Duration,
    /// The first resend of a connection request; doubles after each.
    pub resend: Duration,
    /// A session's maximum time.
    pub session_max: Duration,
    /// Sessions (pending and active) per device at once.
    pub max_sessions_per_device: usize,
    /// Pending sessions in total (bounds memory under a flood of viewers).
    pub max_pending: usize,
    /// New sessions per device per second: each makes the camera open a TLS connection, so
    /// viewers opening and closing connections in a loop cannot make it open hundreds.
    pub max_new_sessions_per_second: u16,
    /// Seed 004's rule.
    pub same_network: Rule,
    /// The shortest time between two answers to one device's period queries.
    pub query_gap: Duration,
}

impl Default for Settings {
    fn default() -> Settings {
        Settings {
            period: Duration::from_secs(300),
            keepalive: Duration::from_secs(20),
            back_port: proto::DEFAULT_BACK_PORT,
            setup_timeout: Duration::from_secs(5),
            resend: Duration::from_millis(250),
            session_max: Duration::from_secs(3600),
            max_sessions_per_device: 32,
            max_pending: 4096,
            max_new_sessions_per_second: 50,
            same_network: Rule::default(),
            query_gap: Duration::from_millis(200),
        }
    }
}

/// Who may register: listed devices, and any device holding a secret derived from the enrolment
/// key.
#[derive(Clone, Debug, Default)]
pub struct Keys {
    /// Listed devices and their secrets.
    pub devices: HashMap<u64, Secret>,
    /// The enrolment key, if configured.
    pub enrol_key: Option<Secret>,
}

impl Keys {
    /// The secret a device's datagrams must carry, if it may register at all.
    pub fn secret_for(&self, id: u64) -> Option<Secret> {
        self.devices
            .get(&id)
            .cloned()
            .or_else(|| self.enrol_key.as_ref().map(|k| Secret::derive(k, id)))
    }

    /// Whether the device may register (listed by id, or any id under an enrolment key).
    pub fn listed(&self, id: u64) -> bool {
        self.enrol_key.is_some() || self.devices.contains_key(&id)
    }
}

/// A datagram to send.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Transmit {
    /// Where to.
    pub to: SocketAddr,
    /// The bytes.
    pub bytes: Vec<u8>,
}

/// Why a session ended on the relay's side.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EndReason {
    /// No back-connection within the set-up time: the viewer gets 504.
    SetupTimeout,
    /// The session reached its maximum time: the shell closes both sides.
    MaxTime,
}

/// Something the shell must act on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Event {
    /// A session ended.
    SessionEnded {
        /// The session id.
        session: u64,
        /// Why.
        reason: EndReason,
    },
}

/// What to do with a viewer's request for a device.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Not a device this relay knows or accepts: 404.
    Unknown,
    /// Not refreshed within the period (or never heard since the relay started): 503 with the
    /// last access in wall-clock milliseconds.
    Offline {
        /// Wall-clock milliseconds of its last access, if it was ever heard.
        last_access_unix_ms: Option<u64>,
    },
    /// Seed 004: the viewer is on the device's network: send it to the LAN address.
    SameNetwork {
        /// The device's LAN address and web port.
        lan: SocketAddr,
    },
    /// Too many sessions for that device (or pending in total): 503, try later.
    Busy,
    /// A session was made and the connection request sent: wait for its back-connection.
    Connect {
        /// The session id.
        session: u64,
    },
}

#[derive(Clone, Debug)]
struct Pending {
    device: u64,
    nonce: [u8; proto::NONCE_LEN],
    created: Instant,
    next_send: Instant,
    interval: Duration,
}

#[derive(Clone, Debug)]
struct Active {
    device: u64,
    started: Instant,
    bytes_up: u64,
    bytes_down: u64,
}

/// The relay's state.
#[derive(Debug)]
pub struct Core {
    settings: Settings,
    keys: Keys,
    presence: Presence,
    pending: HashMap<u64, Pending>,
    active: HashMap<u64, Active>,
    /// Session ids that ended recently (answer a late hello with "expired"), oldest first.
    ended: VecDeque<(Instant, u64)>,
    rng: StdRng,
    start: Instant,
    start_unix_us: u64,
    last_relay_counter: u64,
    counters: Counters,
    transmits: VecDeque<Transmit>,
    events: VecDeque<Event>,
}

/// How long a late hello is answered "expired" rather than "unknown session".
const ENDED_MEMORY: Duration = Duration::from_secs(60);
const ENDED_MAX: usize = 4096;

impl Core {
    /// A relay started at `now`, whose wall clock then read `start_unix_us`. `rng` makes session
    /// ids and nonces: the shell seeds it from the OS, tests with a fixed seed.
    pub fn new(
        settings: Settings,
        keys: Keys,
        now: Instant,
        start_unix_us: u64,
        rng: StdRng,
    ) -> Core {
        Core {
            settings,
            keys,
            presence: Presence::default(),
            pending: HashMap::new(),
            active: HashMap::new(),
            ended: VecDeque::new(),
            rng,
            start: now,
            start_unix_us,
            last_relay_counter: 0,
            counters: Counters::default(),
            transmits: VecDeque::new(),
            events: VecDeque::new(),
        }
    }

    /// The settings in force.
    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// The counters.
    pub fn counters(&self) -> &Counters {
        &self.counters
    }

    /// The counters, for the shell's own drop reasons (TLS failures, malformed hellos).
    pub fn counters_mut(&mut self) -> &mut Counters {
        &mut self.counters
    }

    /// The presence table.
    pub fn presence(&self) -> &Presence {
        &self.presence
    }

    fn unix_us(&self, now: Instant) -> u64 {
        self.start_unix_us
            .saturating_add(now.saturating_duration_since(self.start).as_micros() as u64)
    }

    /// Wall-clock milliseconds at `now`.
    pub fn unix_ms(&self, now: Instant) -> u64 {
        self.unix_us(now) / 1000
    }

    /// The relay's counter: its clock in microseconds, strictly increasing.
    fn next_counter(&mut self, now: Instant) -> u64 {
        let c = self.unix_us(now).max(self.last_relay_counter + 1);
        self.last_relay_counter = c;
        c
    }

    fn online(&self, e: &Entry, now: Instant) -> bool {
        now.saturating_duration_since(e.last_access) <= self.settings.period
    }

    fn sessions_of(&self, device: u64) -> usize {
        self.pending.values().filter(|p| p.device == device).count()
            + self.active.values().filter(|a| a.device == device).count()
    }

    /// A datagram arrived on the UDP socket from `from`.
    pub fn handle_datagram(&mut self, now: Instant, from: SocketAddr, data: &[u8]) {
        self.counters.datagrams += 1;
        let packet = match Packet::new_checked(data) {
            Ok(p) => p,
            Err(proto::Error::BadMagic) => {
                self.counters.foreign += 1;
                return;
            }
            Err(_) => {
                self.counters.malformed += 1;
                return;
            }
        };
        match proto::MessageType::from_code(packet.msg_type()) {
            Some(t) if t.from_device() => {}
            Some(_) => {
                self.counters.wrong_direction += 1;
                return;
            }
            None => {
                self.counters.malformed += 1;
                return;
            }
        }
        let id = packet.device_id();
        let Some(secret) = self.keys.secret_for(id) else {
            self.counters.unknown_device += 1;
            return;
        };
        let repr = match Repr::parse(data, &secret) {
            Ok(r) => r,
            Err(proto::Error::BadMac) => {
                self.counters.bad_mac += 1;
                return;
            }
            Err(_) => {
                self.counters.malformed += 1;
                return;
            }
        };
        match repr.body {
            Body::PeriodQuery => self.on_period_query(now, from, id, repr.counter, &secret),
            Body::Notify(n) => {
                if self.replayed(id, repr.counter) {
                    return;
                }
                self.on_notify(now, from, id, repr.counter, n, &secret)
            }
            Body::SameNetworkQuery { peer } => {
                if self.replayed(id, repr.counter) {
                    return;
                }
                self.counters.same_network_queries += 1;
                let same = match self.same_network(now, id, peer) {
                    Some(true) => Same::Yes,
                    Some(false) => Same::No,
                    None => Same::Unknown,
                };
                if let Some(e) = self.presence.get_mut(id) {
                    e.last_counter = repr.counter;
                }
                let body = Body::SameNetworkAnswer(SameNetworkAnswer {
                    echo: repr.counter,
                    peer,
                    same,
                });
                self.send(now, from, id, body, &secret);
            }
            // Relay-to-device types were refused above.
            Body::PeriodAnswer(_) | Body::ConnectRequest(_) | Body::SameNetworkAnswer(_) => {}
        }
    }

    /// A counter not above the last accepted one from a known device: a replay (counted).
    fn replayed(&mut self, id: u64, counter: u64) -> bool {
        let old = self
            .presence
            .get(id)
            .is_some_and(|e| counter <= e.last_counter);
        if old {
            self.counters.replayed += 1;
        }
        old
    }

    fn send(&mut self, now: Instant, to: SocketAddr, id: u64, body: Body, secret: &Secret) {
        let counter = self.next_counter(now);
        let bytes = Repr {
            device_id: id,
            counter,
            body,
        }
        .emit(secret);
        self.transmits.push_back(Transmit { to, bytes });
    }

    fn answer_period(&mut self, now: Instant, to: SocketAddr, id: u64, echo: u64, secret: &Secret) {
        self.counters.period_answers += 1;
        let floor = self.presence.get(id).map_or(0, |e| e.last_counter);
        let body = Body::PeriodAnswer(PeriodAnswer {
            echo,
            period_ms: u32::try_from(self.settings.period.as_millis()).unwrap_or(u32::MAX),
            observed: to,
            counter_floor: floor,
            back_port: self.settings.back_port,
            keepalive_ms: u32::try_from(self.settings.keepalive.as_millis()).unwrap_or(u32::MAX),
        });
        self.send(now, to, id, body, secret);
    }

    fn on_period_query(
        &mut self,
        now: Instant,
        from: SocketAddr,
        id: u64,
        echo: u64,
        secret: &Secret,
    ) {
        // Changes nothing but the rate limit: a replayed query only reflects an answer no
        // larger than itself, at most once per query gap.
        if let Some(e) = self.presence.get_mut(id) {
            if e.last_query_answer
                .is_some_and(|t| now.saturating_duration_since(t) < self.settings.query_gap)
            {
                self.counters.rate_limited += 1;
                return;
            }
            e.last_query_answer = Some(now);
        }
        self.answer_period(now, from, id, echo, secret);
    }

    fn on_notify(
        &mut self,
        now: Instant,
        from: SocketAddr,
        id: u64,
        counter: u64,
        n: proto::Notify,
        secret: &Secret,
    ) {
        let unix_ms = self.unix_ms(now);
        let live = self.presence.get(id).is_some_and(|e| self.online(e, now));
        let refresh = n.kind == NotifyKind::Refresh || !live;
        match n.kind {
            NotifyKind::KeepAlive => self.counters.keepalives += 1,
            NotifyKind::Refresh => self.counters.refreshes += 1,
        }
        match self.presence.get_mut(id) {
            Some(e) => {
                if e.observed != from || refresh {
                    e.updated_unix_ms = unix_ms;
                }
                e.observed = from;
                e.last_heard = now;
                e.last_counter = counter;
                if refresh {
                    e.last_access = now;
                    e.last_access_unix_ms = unix_ms;
                    e.lan = n.lan.or(e.lan);
                    e.router_wan = n.router_wan.or(e.router_wan);
                }
                if !live {
                    self.counters.registrations += 1;
                }
            }
            None => {
                self.counters.registrations += 1;
                self.presence.insert(
                    id,
                    Entry {
                        observed: from,
                        lan: n.lan,
                        router_wan: n.router_wan,
                        last_access: now,
                        last_heard: now,
                        last_counter: counter,
                        updated_unix_ms: unix_ms,
                        last_access_unix_ms: unix_ms,
                        last_query_answer: None,
                        bytes_up: 0,
                        bytes_down: 0,
                        lan_redirects: 0,
                        new_sessions: (now, 0),
                    },
                );
            }
        }
        if refresh {
            self.answer_period(now, from, id, counter, secret);
        }
    }

    fn party(&self, id: u64) -> Option<Party> {
        self.presence.get(id).map(|e| Party {
            observed: e.observed,
            router_wan: e.router_wan,
        })
    }

    /// Seed 004 between two registered devices: None if either is unknown or offline.
    pub fn same_network(&self, now: Instant, a: u64, b: u64) -> Option<bool> {
        let online = |id| self.presence.get(id).is_some_and(|e| self.online(e, now));
        if !online(a) || !online(b) {
            return None;
        }
        Some(samenet::same_network(
            &self.party(a)?,
            &self.party(b)?,
            &self.settings.same_network,
        ))
    }

    /// A viewer at `viewer` asks for `device`. With `allow_lan`, a same-network viewer is sent to
    /// the LAN address (seed 004); otherwise (or if no LAN address is registered) it is relayed.
    pub fn open_session(
        &mut self,
        now: Instant,
        device: u64,
        viewer: SocketAddr,
        allow_lan: bool,
    ) -> Decision {
        let Some(e) = self.presence.get(device) else {
            return if self.keys.listed(device) {
                self.counters.viewer_offline += 1;
                Decision::Offline {
                    last_access_unix_ms: None,
                }
            } else {
                self.counters.viewer_unknown += 1;
                Decision::Unknown
            };
        };
        if !self.online(e, now) {
            self.counters.viewer_offline += 1;
            return Decision::Offline {
                last_access_unix_ms: Some(e.last_access_unix_ms),
            };
        }
        let viewer_party = Party {
            observed: viewer,
            router_wan: None,
        };
        let device_party = Party {
            observed: e.observed,
            router_wan: e.router_wan,
        };
        if allow_lan
            && let Some(lan) = e.lan
            && samenet::same_network(&device_party, &viewer_party, &self.settings.same_network)
        {
            self.counters.lan_redirects += 1;
            if let Some(e) = self.presence.get_mut(device) {
                e.lan_redirects += 1;
            }
            return Decision::SameNetwork { lan };
        }
        let observed = e.observed;
        let (window, made) = e.new_sessions;
        let made = if now.saturating_duration_since(window) >= Duration::from_secs(1) {
            0
        } else {
            made
        };
        if self.pending.len() >= self.settings.max_pending
            || self.sessions_of(device) >= self.settings.max_sessions_per_device
            || made >= self.settings.max_new_sessions_per_second
        {
            self.counters.viewer_busy += 1;
            return Decision::Busy;
        }
        if let Some(e) = self.presence.get_mut(device) {
            e.new_sessions = if made == 0 {
                (now, 1)
            } else {
                (window, made + 1)
            };
        }
        let mut session = self.rng.random::<u64>();
        while session == 0
            || self.pending.contains_key(&session)
            || self.active.contains_key(&session)
        {
            session = self.rng.random();
        }
        let mut nonce = [0u8; proto::NONCE_LEN];
        self.rng.fill(&mut nonce[..]);
        self.pending.insert(
            session,
            Pending {
                device,
                nonce,
                created: now,
                next_send: now + self.settings.resend,
                interval: self.settings.resend,
            },
        );
        self.counters.connect_requests += 1;
        self.send_connect(now, observed, device, session, nonce);
        Decision::Connect { session }
    }

    fn send_connect(
        &mut self,
        now: Instant,
        to: SocketAddr,
        device: u64,
        session: u64,
        nonce: [u8; proto::NONCE_LEN],
    ) {
        let Some(secret) = self.keys.secret_for(device) else {
            return;
        };
        let body = Body::ConnectRequest(ConnectRequest {
            session,
            nonce,
            back_port: self.settings.back_port,
        });
        self.send(now, to, device, body, &secret);
    }

    /// A back-connection presented its hello (inside TLS). On success the session is active and
    /// its id returned; otherwise the status to answer (counted).
    pub fn back_hello(&mut self, now: Instant, hello: &Hello) -> Result<u64, HelloStatus> {
        let Some(p) = self.pending.get(&hello.session) else {
            if self.ended.iter().any(|(_, s)| *s == hello.session) {
                self.counters.hello_expired += 1;
                return Err(HelloStatus::Expired);
            }
            self.counters.hello_unknown_session += 1;
            return Err(HelloStatus::UnknownSession);
        };
        if p.device != hello.device_id {
            self.counters.hello_unknown_session += 1;
            return Err(HelloStatus::UnknownSession);
        }
        let secret = self.keys.secret_for(p.device);
        if secret.is_none_or(|s| hello.verify(&p.nonce, &s).is_err()) {
            // The pending session stays: a wrong proof from someone else cannot cancel it.
            self.counters.hello_bad_proof += 1;
            return Err(HelloStatus::BadProof);
        }
        let device = p.device;
        self.pending.remove(&hello.session);
        self.active.insert(
            hello.session,
            Active {
                device,
                started: now,
                bytes_up: 0,
                bytes_down: 0,
            },
        );
        self.counters.hello_ok += 1;
        Ok(hello.session)
    }

    /// Bytes carried for an active session (viewer -> device, device -> viewer).
    pub fn add_bytes(&mut self, session: u64, up: u64, down: u64) {
        let Some(a) = self.active.get_mut(&session) else {
            return;
        };
        a.bytes_up += up;
        a.bytes_down += down;
        self.counters.bytes_up += up;
        self.counters.bytes_down += down;
        if let Some(e) = self.presence.get_mut(a.device) {
            e.bytes_up += up;
            e.bytes_down += down;
        }
    }

    /// A session ended on the shell's side: the viewer or the device closed, or the viewer gave
    /// up waiting. Unknown ids (already ended) are ignored.
    pub fn session_closed(&mut self, now: Instant, session: u64) {
        if self.pending.remove(&session).is_some() || self.active.remove(&session).is_some() {
            self.counters.sessions_closed += 1;
            self.remember_ended(now, session);
        }
    }

    fn remember_ended(&mut self, now: Instant, session: u64) {
        self.ended.push_back((now, session));
        while self.ended.len() > ENDED_MAX
            || self
                .ended
                .front()
                .is_some_and(|(t, _)| now.saturating_duration_since(*t) > ENDED_MEMORY)
        {
            self.ended.pop_front();
        }
    }

    /// The next datagram to send.
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.transmits.pop_front()
    }

    /// The next event for the shell.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// When [`Core::handle_timeout`] should run next.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let pending = self
            .pending
            .values()
            .map(|p| p.next_send.min(p.created + self.settings.setup_timeout));
        let active = self
            .active
            .values()
            .map(|a| a.started + self.settings.session_max);
        pending.chain(active).min()
    }

    /// Resends connection requests, ends sessions whose set-up or maximum time is over.
    pub fn handle_timeout(&mut self, now: Instant) {
        let setup = self.settings.setup_timeout;
        let expired: Vec<u64> = self
            .pending
            .iter()
            .filter(|(_, p)| now >= p.created + setup)
            .map(|(s, _)| *s)
            .collect();
        for session in expired {
            self.pending.remove(&session);
            self.counters.setup_timeouts += 1;
            self.remember_ended(now, session);
            self.events.push_back(Event::SessionEnded {
                session,
                reason: EndReason::SetupTimeout,
            });
        }
        let mut resend = Vec::new();
        for (s, p) in self.pending.iter_mut() {
            if now >= p.next_send {
                p.interval *= 2;
                p.next_send = now + p.interval;
                resend.push((*s, p.device, p.nonce));
            }
        }
        for (session, device, nonce) in resend {
            // The device may have moved (a new NAT binding): send to where it is now.
            if let Some(to) = self.presence.get(device).map(|e| e.observed) {
                self.counters.connect_resends += 1;
                self.send_connect(now, to, device, session, nonce);
            }
        }
        let max = self.settings.session_max;
        let over: Vec<u64> = self
            .active
            .iter()
            .filter(|(_, a)| now >= a.started + max)
            .map(|(s, _)| *s)
            .collect();
        for session in over {
            self.active.remove(&session);
            self.counters.max_time_ends += 1;
            self.remember_ended(now, session);
            self.events.push_back(Event::SessionEnded {
                session,
                reason: EndReason::MaxTime,
            });
        }
    }

    /// The number of pending and active sessions.
    pub fn session_counts(&self) -> (usize, usize) {
        (self.pending.len(), self.active.len())
    }
}
