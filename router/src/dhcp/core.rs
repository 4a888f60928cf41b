//! The DHCP server's decisions, sans-IO: a datagram and `now` (wall-clock seconds) go in, a
//! reply and where to send it come out ([`Server::handle`]). The lease table lives here: the
//! pool, reservations by MAC, offers, bindings, declined addresses, and the counters.
//!
//! Time is Unix seconds passed in by the caller: leases are wall-clock facts (they must
//! survive a restart), and tests move time by passing a larger number.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use serde::Serialize;

use super::pressure::{NewClients, OFFER_RECLAIM_SECS, PRESSURE_LEASE_SECS, Pressure};
use super::wire::{
    self, BOOTREPLY, BOOTREQUEST, Message, MessageType, ParseError, format_mac, opt,
};

/// How long an offered address is held for the client that was offered it (RFC 2131 §4.3.1:
/// the server "need not reserve the offered address", but holding it avoids offering the
/// same address to two clients at once). Short: offers are not leases (module `pressure`).
pub const OFFER_HOLD_SECS: u64 = 10;
/// How long a declined address stays unusable (RFC 2131 §4.3.3 leaves the time to us;
/// dnsmasq uses ten minutes too).
pub const DECLINE_HOLD_SECS: u64 = 600;

/// Server configuration (validated by the caller: the pool lies inside the subnet).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerConfig {
    /// Our address on the LAN: the server identifier (option 54) and the default router.
    pub server_addr: Ipv4Addr,
    /// LAN prefix length (option 1).
    pub prefix: u8,
    /// The dynamic pool, inclusive.
    pub pool_start: Ipv4Addr,
    pub pool_end: Ipv4Addr,
    /// Lease time given to clients, seconds (option 51).
    pub lease_time: u32,
    /// Option 3.
    pub routers: Vec<Ipv4Addr>,
    /// Option 6 (nothing sent when empty).
    pub dns: Vec<Ipv4Addr>,
    /// Option 15.
    pub domain: Option<String>,
    /// Fixed addresses by MAC. They may lie outside the pool but inside the subnet.
    pub reservations: Vec<([u8; 6], Ipv4Addr)>,
}

impl ServerConfig {
    /// A /24 LAN served from `.100`-`.199`, lease 12 h, the server as router, no DNS.
    pub fn new(server_addr: Ipv4Addr, prefix: u8) -> Self {
        let (start, end) = default_pool(server_addr, prefix);
        ServerConfig {
            server_addr,
            prefix,
            pool_start: start,
            pool_end: end,
            lease_time: 12 * 3600,
            routers: vec![server_addr],
            dns: Vec::new(),
            domain: None,
            reservations: Vec::new(),
        }
    }

    fn mask(&self) -> u32 {
        u32::MAX
            .checked_shl(32 - u32::from(self.prefix))
            .unwrap_or(0)
    }

    /// Whether `a` is a usable host address of our subnet (not network, broadcast, or us).
    pub fn in_subnet(&self, a: Ipv4Addr) -> bool {
        let (m, a32, s) = (self.mask(), u32::from(a), u32::from(self.server_addr));
        a32 & m == s & m && a32 & !m != 0 && a32 & !m != !m && a != self.server_addr
    }

    fn in_pool(&self, a: Ipv4Addr) -> bool {
        (self.pool_start..=self.pool_end).contains(&a) && self.in_subnet(a)
    }

    fn reserved_for(&self, mac: Option<[u8; 6]>) -> Option<Ipv4Addr> {
        let mac = mac?;
        self.reservations
            .iter()
            .find(|(m, _)| *m == mac)
            .map(|(_, a)| *a)
    }

    fn reserved_by_other(&self, a: Ipv4Addr, mac: Option<[u8; 6]>) -> bool {
        self.reservations
            .iter()
            .any(|(m, r)| *r == a && Some(*m) != mac)
    }
}

/// `.100`-`.199` of the LAN, or the whole subnet when that range does not fit in it.
pub fn default_pool(addr: Ipv4Addr, prefix: u8) -> (Ipv4Addr, Ipv4Addr) {
    let mask = u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0);
    let net = u32::from(addr) & mask;
    let last = net | !mask;
    if prefix <= 24 {
        (Ipv4Addr::from(net + 100), Ipv4Addr::from(net + 199))
    } else {
        (
            Ipv4Addr::from(net + 1),
            Ipv4Addr::from(last.saturating_sub(1)),
        )
    }
}

/// Where a reply goes (RFC 2131 §4.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Destination {
    /// To the relay agent at `giaddr`, port 67.
    Relay(Ipv4Addr),
    /// To the client's configured address (`ciaddr`), port 68.
    Unicast(Ipv4Addr),
    /// To 255.255.255.255, port 68: the broadcast bit is set, the client has no address
    /// yet (unicasting to `yiaddr` would need an ARP entry we do not add), or a NAK.
    Broadcast,
}

/// A reply to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub message: Message,
    pub to: Destination,
    /// The reply commits the server to a binding: a DHCPACK with a lease, after which the
    /// client uses the address. RFC 2131 §3.1 step 4: the server "commits the binding for the
    /// client to persistent storage and responds with a DHCPACK" (and §1.6: configuration is
    /// to survive server reboots). So the IO shell sends it only once the table as of this
    /// reply is on stable storage; otherwise a restarted server could give the address to
    /// another client. False for an OFFER (§4.3.1: the server "need not reserve the offered
    /// address"), a NAK, and the ACK to an INFORM (§4.3.5: no lease); those go out at once.
    pub commit: bool,
}

/// State of a lease record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LeaseState {
    /// Offered, held for the client until `expires`.
    Offered,
    /// Bound (ACKed) until `expires`.
    Bound,
    /// Released by the client: free, remembered so the client gets it back.
    Released,
    /// Declined (RFC 2131 §4.3.3): unusable until `expires`.
    Declined,
}

/// One address's record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    pub addr: Ipv4Addr,
    /// The client key: option 61 if sent, else htype + chaddr (RFC 2131 §4.2). Empty for a
    /// declined address.
    pub client: Vec<u8>,
    /// chaddr, when Ethernet.
    pub mac: Option<[u8; 6]>,
    /// Option 12 as last sent.
    pub host_name: Option<String>,
    /// Unix seconds.
    pub expires: u64,
    pub state: LeaseState,
}

impl Lease {
    /// Whether the record still holds its address at `now`.
    pub fn active(&self, now: u64) -> bool {
        self.state != LeaseState::Released && self.expires > now
    }
}

/// A lease as the control API shows it.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct LeaseStatus {
    pub addr: Ipv4Addr,
    pub mac: Option<String>,
    pub client_id: String,
    pub host_name: Option<String>,
    pub state: LeaseState,
    /// Seconds left; 0 once expired or released.
    pub expires_in: u64,
    /// Unix seconds.
    pub expires_at: u64,
    pub reserved: bool,
}

macro_rules! drop_reasons {
    ($($(#[$doc:meta])* $v:ident = $name:literal,)*) => {
        /// Why a datagram got no reply.
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub enum DropReason { $($(#[$doc])* $v,)* }
        impl DropReason {
            /// Every reason, in counter order.
            pub const ALL: &'static [DropReason] = &[$(DropReason::$v,)*];
            /// The counter name.
            pub fn name(self) -> &'static str {
                match self { $(DropReason::$v => $name,)* }
            }
        }
    };
}

drop_reasons! {
    /// Shorter than the header and cookie.
    Truncated = "truncated",
    /// Bad magic cookie.
    BadCookie = "bad_cookie",
    /// Bad `hlen`, option overrun or bad option length.
    BadOption = "bad_option",
    /// `op` is not BOOTREQUEST.
    NotRequest = "not_request",
    /// No option 53, or a type a server does not receive.
    BadMessageType = "bad_message_type",
    /// A request without the fields its state needs (RFC 2131 §4.3.2).
    BadRequest = "bad_request",
    /// Addressed to another server (option 54), RFC 2131 §4.3.2 / §4.3.3 / §4.3.4.
    OtherServer = "other_server",
    /// No free address.
    PoolExhausted = "pool_exhausted",
    /// Relayed from a network we do not serve.
    ForeignRelay = "foreign_relay",
    /// DECLINE / RELEASE for an address this client does not hold.
    NotHolder = "not_holder",
    /// A DISCOVER from a new client while the pool is under pressure, beyond the rate limit
    /// (module `pressure`).
    RateLimited = "rate_limited",
}

/// The counters, all since start.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Counters {
    pub received: u64,
    pub offered: u64,
    pub acked: u64,
    pub nacked: u64,
    pub declined: u64,
    pub released: u64,
    pub informed: u64,
    pub dropped: [u64; DropReason::ALL.len()],
}

impl Counters {
    pub fn drop_count(&self, r: DropReason) -> u64 {
        self.dropped[r as usize]
    }
    pub fn dropped_total(&self) -> u64 {
        self.dropped.iter().sum()
    }
    fn drop(&mut self, r: DropReason) -> Option<Reply> {
        self.dropped[r as usize] += 1;
        None
    }
}

/// The server.
#[derive(Debug, Clone)]
pub struct Server {
    cfg: ServerConfig,
    /// Records by address. A linear scan by client is fine for a home LAN's pool.
    leases: BTreeMap<Ipv4Addr, Lease>,
    counters: Counters,
    dirty: bool,
    /// Module `pressure`: the pool's last state, a change not yet taken, the new-client limit.
    pressure: Pressure,
    pressure_change: Option<Pressure>,
    new_clients: NewClients,
    /// Usable addresses in the pool (fixed by the configuration).
    pool_size: usize,
}

/// The client key (RFC 2131 §4.2: "the client identifier, if present, or the client's
/// hardware address").
pub fn client_key(m: &Message) -> Vec<u8> {
    match m.client_id() {
        Some(id) => id.to_vec(),
        None => {
            let n = usize::from(m.hlen).min(16);
            let mut k = vec![m.htype];
            k.extend_from_slice(&m.chaddr[..n]);
            k
        }
    }
}

impl Server {
    pub fn new(cfg: ServerConfig) -> Self {
        let (start, end) = (u32::from(cfg.pool_start), u32::from(cfg.pool_end));
        let pool_size = (start..=end.max(start))
            .filter(|&a| cfg.in_subnet(Ipv4Addr::from(a)))
            .count();
        Server {
            pool_size,
            cfg,
            leases: BTreeMap::new(),
            counters: Counters::default(),
            dirty: false,
            pressure: Pressure::of(1, 1),
            pressure_change: None,
            new_clients: NewClients::default(),
        }
    }

    /// The pool's state when it last entered or left pressure (module `pressure`), once.
    pub fn take_pressure_change(&mut self) -> Option<Pressure> {
        self.pressure_change.take()
    }

    /// Whether the pool is under pressure at `now`; notes a change for the log.
    fn under_pressure(&mut self, now: u64) -> bool {
        let size = self.pool_size;
        let used = self
            .leases
            .values()
            .filter(|l| l.active(now) && self.cfg.in_pool(l.addr))
            .count();
        let p = Pressure::of(size.saturating_sub(used), size);
        if p.under != self.pressure.under {
            self.pressure_change = Some(p);
        }
        self.pressure = p;
        p.under
    }

    /// The lease for `key` (RFC 2131 §3.3): shortened for a client that never held an
    /// address here while the pool is under pressure (module `pressure`).
    fn lease_secs(&self, key: &[u8], under: bool) -> u32 {
        let known = self
            .record_of(key)
            .is_some_and(|l| l.state != LeaseState::Offered);
        if under && !known {
            self.cfg.lease_time.min(PRESSURE_LEASE_SECS)
        } else {
            self.cfg.lease_time
        }
    }

    pub fn config(&self) -> &ServerConfig {
        &self.cfg
    }

    pub fn counters(&self) -> &Counters {
        &self.counters
    }

    /// True once after the table changed in a way worth saving: a binding created or changed
    /// (an ACK; a repeated ACK that changes nothing does not count), a release, a decline, or
    /// a client's records at other addresses dropped (by a REQUEST, or by a DISCOVER that
    /// offers another address). An OFFER itself is not saved ([`super::persist`] skips
    /// offered records).
    pub fn take_dirty(&mut self) -> bool {
        std::mem::take(&mut self.dirty)
    }

    /// Every record, by address.
    pub fn leases(&self) -> impl Iterator<Item = &Lease> {
        self.leases.values()
    }

    /// Puts saved records back (persistence). Records for addresses we no longer serve, or
    /// that have run out, are skipped. Returns how many were kept.
    pub fn restore(&mut self, now: u64, leases: Vec<Lease>) -> usize {
        let mut n = 0;
        for l in leases {
            let usable = self.cfg.in_pool(l.addr) || self.cfg.reserved_for(l.mac) == Some(l.addr);
            if !usable || l.state == LeaseState::Offered {
                continue;
            }
            if l.state == LeaseState::Declined && l.expires <= now {
                continue;
            }
            self.leases.insert(l.addr, l);
            n += 1;
        }
        n
    }

    /// The table as the control API shows it.
    pub fn status(&self, now: u64) -> Vec<LeaseStatus> {
        self.leases
            .values()
            .map(|l| LeaseStatus {
                addr: l.addr,
                mac: l.mac.as_ref().map(format_mac),
                client_id: l.client.iter().map(|b| format!("{b:02x}")).collect(),
                host_name: l.host_name.clone(),
                state: l.state,
                expires_in: if l.active(now) { l.expires - now } else { 0 },
                expires_at: l.expires,
                reserved: self.cfg.reserved_for(l.mac) == Some(l.addr),
            })
            .collect()
    }

    /// Leases bound and not expired at `now`. Nothing needs a timer: records stop being
    /// active when their time passes, and are reused from the oldest.
    pub fn bound_count(&self, now: u64) -> usize {
        self.leases
            .values()
            .filter(|l| l.state == LeaseState::Bound && l.active(now))
            .count()
    }

    /// Handles one datagram received on the LAN. Malformed or unanswerable input is counted
    /// by [`DropReason`] and gets `None`.
    pub fn handle(&mut self, now: u64, datagram: &[u8]) -> Option<Reply> {
        self.counters.received += 1;
        let m = match Message::parse(datagram) {
            Ok(m) => m,
            Err(e) => {
                return self.counters.drop(match e {
                    ParseError::Truncated(_) => DropReason::Truncated,
                    ParseError::BadCookie => DropReason::BadCookie,
                    ParseError::BadHlen(_)
                    | ParseError::OptionOverrun { .. }
                    | ParseError::BadOptionLength { .. } => DropReason::BadOption,
                });
            }
        };
        self.handle_message(now, &m)
    }

    /// Handles a parsed message (counted as received by [`Server::handle`] only).
    pub fn handle_message(&mut self, now: u64, m: &Message) -> Option<Reply> {
        // RFC 2131 §4.1: servers only act on BOOTREQUEST.
        if m.op != BOOTREQUEST {
            return self.counters.drop(DropReason::NotRequest);
        }
        // A relay on another network: we only serve our subnet.
        if !m.giaddr.is_unspecified() && !self.same_subnet(m.giaddr) {
            return self.counters.drop(DropReason::ForeignRelay);
        }
        match m.message_type() {
            Some(MessageType::Discover) => self.discover(now, m),
            Some(MessageType::Request) => self.request(now, m),
            Some(MessageType::Decline) => self.decline(now, m),
            Some(MessageType::Release) => self.release(now, m),
            Some(MessageType::Inform) => self.inform(m),
            _ => self.counters.drop(DropReason::BadMessageType),
        }
    }

    fn same_subnet(&self, a: Ipv4Addr) -> bool {
        let m = self.cfg.mask();
        u32::from(a) & m == u32::from(self.cfg.server_addr) & m
    }

    /// The record holding `addr` for another client at `now`, if any.
    fn held_by_other(&self, now: u64, addr: Ipv4Addr, key: &[u8]) -> bool {
        self.leases
            .get(&addr)
            .is_some_and(|l| l.active(now) && l.client != key)
    }

    /// Whether `addr` may be given to this client now.
    fn allocatable(&self, now: u64, addr: Ipv4Addr, key: &[u8], mac: Option<[u8; 6]>) -> bool {
        if self.cfg.reserved_for(mac) == Some(addr) {
            // A reservation follows the MAC, whatever client id the host sends today.
            return !self
                .leases
                .get(&addr)
                .is_some_and(|l| l.active(now) && l.client != key && l.mac != mac);
        }
        self.cfg.in_pool(addr)
            && !self.cfg.reserved_by_other(addr, mac)
            && !self.held_by_other(now, addr, key)
    }

    /// The client's record (active or not), if any.
    fn record_of(&self, key: &[u8]) -> Option<&Lease> {
        self.leases.values().find(|l| l.client == key)
    }

    /// Address choice for a DISCOVER, in RFC 2131 §4.3.1's order: a reservation (our
    /// static binding), the client's current or previous binding, the requested address,
    /// then a free pool address (never used first, then the longest-expired record).
    fn choose(&self, now: u64, m: &Message, key: &[u8]) -> Option<Ipv4Addr> {
        let mac = m.mac();
        if let Some(r) = self.cfg.reserved_for(mac) {
            return self.allocatable(now, r, key, mac).then_some(r);
        }
        if let Some(l) = self.record_of(key)
            && self.allocatable(now, l.addr, key, mac)
        {
            return Some(l.addr);
        }
        if let Some(r) = m.requested_ip()
            && self.allocatable(now, r, key, mac)
            && !self.leases.contains_key(&r)
        {
            return Some(r);
        }
        let (start, end) = (u32::from(self.cfg.pool_start), u32::from(self.cfg.pool_end));
        let mut oldest: Option<&Lease> = None;
        let mut oldest_offer: Option<&Lease> = None;
        // Offers are not leases (module `pressure`): one made this long ago may be taken.
        let offered_before = (now + OFFER_HOLD_SECS).saturating_sub(OFFER_RECLAIM_SECS);
        for a in start..=end {
            let addr = Ipv4Addr::from(a);
            if !self.cfg.in_subnet(addr) || self.cfg.reserved_by_other(addr, mac) {
                continue;
            }
            match self.leases.get(&addr) {
                None => return Some(addr),
                Some(l) if !l.active(now) => {
                    if oldest.is_none_or(|o| l.expires < o.expires) {
                        oldest = Some(l);
                    }
                }
                Some(l) if l.state == LeaseState::Offered && l.expires <= offered_before => {
                    if oldest_offer.is_none_or(|o| l.expires < o.expires) {
                        oldest_offer = Some(l);
                    }
                }
                Some(_) => {}
            }
        }
        oldest.or(oldest_offer).map(|l| l.addr)
    }

    /// Removes the client's records at other addresses (a client holds one address).
    fn forget_other(&mut self, key: &[u8], keep: Ipv4Addr) {
        let before = self.leases.len();
        self.leases.retain(|a, l| *a == keep || l.client != key);
        if self.leases.len() != before {
            self.dirty = true;
        }
    }

    /// RFC 2131 §4.3.1.
    fn discover(&mut self, now: u64, m: &Message) -> Option<Reply> {
        let key = client_key(m);
        let under = self.under_pressure(now);
        let known = self.record_of(&key).is_some() || self.cfg.reserved_for(m.mac()).is_some();
        if under && !known && !self.new_clients.take(now) {
            return self.counters.drop(DropReason::RateLimited);
        }
        let secs = self.lease_secs(&key, under);
        let Some(addr) = self.choose(now, m, &key) else {
            return self.counters.drop(DropReason::PoolExhausted);
        };
        self.forget_other(&key, addr);
        let host_name = m.host_name();
        let lease = self.leases.entry(addr).or_insert_with(|| Lease {
            addr,
            client: key.clone(),
            mac: m.mac(),
            host_name: None,
            expires: 0,
            state: LeaseState::Offered,
        });
        let bound_here =
            lease.client == key && lease.state == LeaseState::Bound && lease.active(now);
        if !bound_here {
            // A bound lease keeps its expiry until the REQUEST; anything else is held.
            lease.client = key;
            lease.state = LeaseState::Offered;
            lease.expires = now + OFFER_HOLD_SECS;
        }
        lease.mac = m.mac();
        if host_name.is_some() {
            lease.host_name = host_name;
        }
        self.counters.offered += 1;
        Some(self.reply(m, MessageType::Offer, addr, Some(secs)))
    }

    /// RFC 2131 §4.3.2: the client's state follows from which of option 54, option 50 and
    /// `ciaddr` it filled in.
    fn request(&mut self, now: u64, m: &Message) -> Option<Reply> {
        let key = client_key(m);
        let mac = m.mac();
        match (m.server_id(), m.requested_ip(), m.ciaddr.is_unspecified()) {
            // SELECTING: the client answers an OFFER.
            (Some(sid), requested, _) => {
                if sid != self.cfg.server_addr {
                    // It chose another server: our offer is free again.
                    let ours: Vec<Ipv4Addr> = self
                        .leases
                        .values()
                        .filter(|l| l.client == key && l.state == LeaseState::Offered)
                        .map(|l| l.addr)
                        .collect();
                    for a in ours {
                        self.leases.remove(&a);
                    }
                    return self.counters.drop(DropReason::OtherServer);
                }
                let Some(addr) = requested.or((!m.ciaddr.is_unspecified()).then_some(m.ciaddr))
                else {
                    return self.counters.drop(DropReason::BadRequest);
                };
                if self.allocatable(now, addr, &key, mac) && self.right_address(addr, mac) {
                    self.bind(now, m, key, addr)
                } else {
                    self.nak(m, "requested address not available")
                }
            }
            // INIT-REBOOT: the client verifies a remembered address. We are authoritative
            // for this LAN, so an address that is wrong for the network, or someone else's,
            // gets a NAK, and a free valid one is confirmed.
            (None, Some(addr), true) => {
                if self.allocatable(now, addr, &key, mac) && self.right_address(addr, mac) {
                    self.bind(now, m, key, addr)
                } else {
                    self.nak(m, "address not valid for this client or network")
                }
            }
            // RENEWING (unicast) or REBINDING (broadcast): extend the binding of `ciaddr`.
            (None, None, false) => {
                let addr = m.ciaddr;
                if self.allocatable(now, addr, &key, mac) && self.right_address(addr, mac) {
                    self.bind(now, m, key, addr)
                } else {
                    self.nak(m, "lease not renewable")
                }
            }
            _ => self.counters.drop(DropReason::BadRequest),
        }
    }

    /// A client with a reservation is moved to it (NAK elsewhere, then DISCOVER).
    fn right_address(&self, addr: Ipv4Addr, mac: Option<[u8; 6]>) -> bool {
        self.cfg.reserved_for(mac).is_none_or(|r| r == addr)
    }

    fn bind(&mut self, now: u64, m: &Message, key: Vec<u8>, addr: Ipv4Addr) -> Option<Reply> {
        let under = self.under_pressure(now);
        let secs = self.lease_secs(&key, under);
        self.forget_other(&key, addr);
        let prev_host = self
            .leases
            .get(&addr)
            .filter(|l| l.client == key)
            .and_then(|l| l.host_name.clone());
        let lease = Lease {
            addr,
            client: key,
            mac: m.mac(),
            host_name: m.host_name().or(prev_host),
            expires: now + u64::from(secs),
            state: LeaseState::Bound,
        };
        // A retransmitted REQUEST in the same second rebinds to the same record: nothing new
        // to save (the ACK still waits for any earlier unsaved change; see `Reply::commit`).
        if self.leases.get(&addr) != Some(&lease) {
            self.leases.insert(addr, lease);
            self.dirty = true;
        }
        self.counters.acked += 1;
        let mut r = self.reply(m, MessageType::Ack, addr, Some(secs));
        r.commit = true;
        Some(r)
    }

    /// RFC 2131 §4.3.2, table 3: a NAK carries only the type, server id, a message, and the
    /// client id echoed (RFC 6842).
    fn nak(&mut self, m: &Message, why: &str) -> Option<Reply> {
        self.counters.nacked += 1;
        let mut r = self.base_reply(m);
        r.options = vec![
            (opt::MESSAGE_TYPE, vec![MessageType::Nak as u8]),
            (opt::SERVER_ID, self.cfg.server_addr.octets().to_vec()),
            (opt::MESSAGE, why.as_bytes().to_vec()),
        ];
        if let Some(id) = m.client_id() {
            r.options.push((opt::CLIENT_ID, id.to_vec()));
        }
        // RFC 2131 §4.1: with giaddr zero, NAKs are broadcast; through a relay the broadcast
        // bit asks the relay to broadcast it.
        let to = if m.giaddr.is_unspecified() {
            Destination::Broadcast
        } else {
            r.flags |= wire::FLAG_BROADCAST;
            Destination::Relay(m.giaddr)
        };
        Some(Reply {
            message: r,
            to,
            commit: false,
        })
    }

    /// RFC 2131 §4.3.3: the address is in use elsewhere; mark it unusable for a while.
    fn decline(&mut self, now: u64, m: &Message) -> Option<Reply> {
        if m.server_id().is_some_and(|s| s != self.cfg.server_addr) {
            return self.counters.drop(DropReason::OtherServer);
        }
        let Some(addr) = m.requested_ip() else {
            return self.counters.drop(DropReason::BadRequest);
        };
        let key = client_key(m);
        // Only the client we gave the address to may decline it; otherwise any host could
        // take addresses away from the pool.
        if self.leases.get(&addr).is_none_or(|l| l.client != key) {
            return self.counters.drop(DropReason::NotHolder);
        }
        self.leases.insert(
            addr,
            Lease {
                addr,
                client: Vec::new(),
                mac: None,
                host_name: None,
                expires: now + DECLINE_HOLD_SECS,
                state: LeaseState::Declined,
            },
        );
        self.dirty = true;
        self.counters.declined += 1;
        None
    }

    /// RFC 2131 §4.3.4: the client gives `ciaddr` back. The record is kept (released) so the
    /// client gets the same address next time if it is still free.
    fn release(&mut self, now: u64, m: &Message) -> Option<Reply> {
        if m.server_id().is_some_and(|s| s != self.cfg.server_addr) {
            return self.counters.drop(DropReason::OtherServer);
        }
        let key = client_key(m);
        match self.leases.get_mut(&m.ciaddr) {
            Some(l) if l.client == key && l.state == LeaseState::Bound => {
                l.state = LeaseState::Released;
                l.expires = l.expires.min(now);
                self.dirty = true;
                self.counters.released += 1;
                None
            }
            _ => self.counters.drop(DropReason::NotHolder),
        }
    }

    /// RFC 2131 §4.3.5: configuration only, no lease: an ACK without `yiaddr` or lease time,
    /// sent to `ciaddr`.
    fn inform(&mut self, m: &Message) -> Option<Reply> {
        self.counters.informed += 1;
        let mut r = self.reply(m, MessageType::Ack, Ipv4Addr::UNSPECIFIED, None);
        r.message.ciaddr = m.ciaddr;
        Some(r)
    }

    /// The header fields every reply copies from the request (RFC 2131 §4.3.1 table 3).
    fn base_reply(&self, m: &Message) -> Message {
        Message {
            op: BOOTREPLY,
            htype: m.htype,
            hlen: m.hlen,
            hops: 0,
            xid: m.xid,
            secs: 0,
            flags: m.flags,
            ciaddr: Ipv4Addr::UNSPECIFIED,
            yiaddr: Ipv4Addr::UNSPECIFIED,
            siaddr: Ipv4Addr::UNSPECIFIED,
            giaddr: m.giaddr,
            chaddr: m.chaddr,
            options: Vec::new(),
        }
    }

    /// An OFFER or ACK for `addr`: options per RFC 2131 table 3 and, after the required
    /// ones, the client's parameter request list order (RFC 2132 §9.8), then the rest of
    /// what we always send.
    /// A reply; `lease`: the lease time to announce (seconds), none for an INFORM's ACK.
    fn reply(&self, m: &Message, kind: MessageType, addr: Ipv4Addr, lease: Option<u32>) -> Reply {
        let mut r = self.base_reply(m);
        r.yiaddr = addr;
        if kind == MessageType::Ack && !m.ciaddr.is_unspecified() {
            r.ciaddr = m.ciaddr;
        }
        r.options.push((opt::MESSAGE_TYPE, vec![kind as u8]));
        r.options
            .push((opt::SERVER_ID, self.cfg.server_addr.octets().to_vec()));
        if let Some(t) = lease {
            r.options.push((opt::LEASE_TIME, t.to_be_bytes().to_vec()));
            // RFC 2131 §4.4.5: T1 defaults to 0.5 and T2 to 0.875 of the lease.
            r.options
                .push((opt::RENEWAL_T1, (t / 2).to_be_bytes().to_vec()));
            let t2 = (u64::from(t) * 7 / 8) as u32;
            r.options
                .push((opt::REBINDING_T2, t2.to_be_bytes().to_vec()));
        }
        let available = self.parameters();
        for code in m.param_request_list() {
            if let Some((c, v)) = available.iter().find(|(c, _)| c == code)
                && r.option(*c).is_none()
            {
                r.options.push((*c, v.clone()));
            }
        }
        for (c, v) in available {
            if r.option(c).is_none() {
                r.options.push((c, v));
            }
        }
        if let Some(id) = m.client_id() {
            // RFC 6842 §3: echo the client identifier.
            r.options.push((opt::CLIENT_ID, id.to_vec()));
        }
        // RFC 2131 §4.1: relay first, then a configured client, then broadcast (flag set, or
        // no address yet; see [`Destination::Broadcast`]).
        let to = if !m.giaddr.is_unspecified() {
            Destination::Relay(m.giaddr)
        } else if !m.ciaddr.is_unspecified() {
            Destination::Unicast(m.ciaddr)
        } else {
            Destination::Broadcast
        };
        Reply {
            message: r,
            to,
            commit: false,
        }
    }

    /// The configuration options we can give (RFC 2132 §3.3, §3.5, §3.8, §3.17, §5.3).
    fn parameters(&self) -> Vec<(u8, Vec<u8>)> {
        let mask = self.cfg.mask();
        let mut v = vec![(opt::SUBNET_MASK, mask.to_be_bytes().to_vec())];
        if !self.cfg.routers.is_empty() {
            v.push((
                opt::ROUTER,
                self.cfg.routers.iter().flat_map(|a| a.octets()).collect(),
            ));
        }
        if !self.cfg.dns.is_empty() {
            v.push((
                opt::DNS,
                self.cfg.dns.iter().flat_map(|a| a.octets()).collect(),
            ));
        }
        if let Some(d) = &self.cfg.domain {
            v.push((opt::DOMAIN_NAME, d.as_bytes().to_vec()));
        }
        let bcast = u32::from(self.cfg.server_addr) | !mask;
        v.push((opt::BROADCAST, bcast.to_be_bytes().to_vec()));
        v
    }
}
