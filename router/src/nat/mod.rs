//! NAPT translation engine (RFC 3022), with the behaviours of RFC 4787 (UDP), RFC 5382 (TCP)
//! and RFC 5508 (ICMP). Sans-IO: a packet goes in with `now`, is translated in place, and the
//! caller writes it back; timers are driven by the caller through [`Nat::expire`] and
//! [`Nat::next_deadline`]. No clock reads, no threads, randomness only from the seed.
//!
//! # Flow of one packet ([`Nat::process`])
//! 1. **Parse**: the IPv4 header is validated once (version, IHL, total length, header
//!    checksum; module `wire`); every later access is a checked read at a named offset. Malformed
//!    input is dropped and counted by [`DropReason`], never a panic.
//! 2. **Classify** by the side the packet came in on ([`Side`], told by the caller) and then
//!    its addresses (module `guard`): from the LAN, a LAN source -> outbound (to the WAN
//!    address: hairpinned, outbound then inbound translation, RFC 4787 REQ-9); from the WAN,
//!    a LAN, own or bogon source is a spoof and dropped (RFC 2827, RFC 6890), the WAN address
//!    as destination -> inbound; anything else -> drop.
//! 3. **Fragments** (RFC 791): non-first fragments carry no ports; they reuse the translation
//!    of their datagram's first fragment, or wait for it (module `frag`).
//! 4. **Look up or create**: outbound, (proto, internal, remote) finds the session; a new
//!    session first finds or creates its mapping (per the mapping behaviour, or the port forward
//!    of that internal endpoint), allocating an external port if needed. Inbound,
//!    (proto, external port, remote) finds the session; otherwise the owner of the external port
//!    (a forward or a dynamic mapping) decides, through the filtering behaviour
//!    (RFC 4787 section 5), whether a new session may be created. New sessions are subject
//!    to per-host, per-remote and table limits (module `limits`).
//! 5. **Rewrite** addresses and ports, track TCP state (RFC 5382: SYN/FIN/RST), refresh the
//!    idle timer, and optionally add one to the TTL (see [`NatConfig::ttl_compensation`]).
//! 6. **Checksums** are updated incrementally (RFC 1624 eqn. 3): the IP header checksum for
//!    addresses and TTL, the TCP/UDP checksum for the pseudo-header addresses and the port
//!    (a UDP checksum of 0 means "none" and stays 0, RFC 768), the ICMP checksum for the echo
//!    identifier. ICMP errors (module `icmp`) have their quoted IP header and transport
//!    ports restored too, with the quoted checksums and the outer ICMP checksum fixed
//!    (RFC 5508 section 4).
//!
//! # Data structures (module `table`)
//! A slab of 64-byte sessions, a slab of mappings, three hash indexes with a seeded
//! fold-multiply hasher (outbound key, inbound key, mapping key), a per-protocol array that says
//! which mapping owns each external port (forwards and dynamic mappings share it, so they can
//! never collide), and a lazy min-heap of deadlines. The established path allocates nothing.
//!
//! Memory per session, at 1 M sessions (table capacities are powers of two):
//! session 64 B + outbound index 2 M buckets x 21 B / 1 M = 42 B + inbound index
//! 2 M x 17 B / 1 M = 34 B + heap entry 16 B = 156 B, plus the mappings (32 B + ~50 B of
//! index each, shared by the sessions of a mapping) and a fixed 768 KiB of port-owner arrays.
//! `nat-bench` measures **164 B per session** with a counting allocator (1000 endpoints x
//! 1000 remotes), 10-13 M packets/s on established flows and 1.5 M new sessions/s on
//! one core.

mod behaviour;
mod counters;
mod forward;
mod frag;
mod guard;
mod icmp;
mod limits;
mod rewrite;
mod table;
mod wire;

#[cfg(test)]
mod tests;

use std::{
    collections::{BTreeMap, VecDeque},
    fmt,
    net::{Ipv4Addr, SocketAddrV4},
    ops::RangeInclusive,
    str::FromStr,
    time::{Duration, Instant},
};

use rand::{Rng, SeedableRng, rngs::SmallRng};

pub use behaviour::{
    Behaviour, FilteringBehaviour, MappingBehaviour, ParseNameError, PortAllocation, Preset,
    Timeouts,
};
pub use counters::{Counters, DropReason};
use forward::ForwardEntry;
pub use forward::{Forward, ForwardError};
use frag::Frags;
pub use guard::{Prefix, Side, WanSources, WanSourcesSection};
pub use limits::{DEFAULT_MAX_SESSIONS, Limits, LimitsSection};
use rewrite::{Rewrite, rewrite, tcp_established, tcp_next, tcp_state_name};
use table::{
    CONFIRMED, InKey, KIND_ADM, KIND_APDM, KIND_EIM, KIND_FORWARD, MapKey, NONE, OutKey, Proto,
    SEEN_IN, SEEN_OUT, SeededState, Session, Table,
};
use wire::{Ipv4Header, field, rd8, rd16};

/// The Internet checksum (RFC 1071) of `data`, for the IO shell (checksum offload fallback).
pub(crate) use wire::checksum as inet_checksum;

/// How long fragments of a datagram are tracked (and early ones held) after the first one of
/// them arrived. Linux uses 30 s for reassembly (`ipfrag_time`); RFC 791 suggests 15 s.
pub const FRAGMENT_TIMEOUT: Duration = Duration::from_secs(30);

/// Engine configuration.
#[derive(Clone, Debug, PartialEq)]
pub struct NatConfig {
    /// The external address (the router's address on the WAN link).
    pub wan_addr: Ipv4Addr,
    /// The router's own LAN address; with `lan_prefix` it defines the LAN network.
    pub lan_addr: Ipv4Addr,
    /// LAN prefix length (0..=32).
    pub lan_prefix: u8,
    /// Mapping, filtering, port allocation, hairpin, timeouts.
    pub behaviour: Behaviour,
    /// External ports for dynamic mappings (and ICMP identifiers); port 0 is never used.
    /// Forwards may use any port.
    pub port_range: RangeInclusive<u16>,
    /// Add one to the TTL of every forwarded packet (when below 255). In the deployment each
    /// packet crosses the kernel's forwarding twice (LAN iface -> tun, tun -> WAN iface), which
    /// decrements the TTL twice; this makes the router count as one hop (e.g. in traceroute).
    pub ttl_compensation: bool,
}

impl NatConfig {
    /// A configuration with the default behaviour, ports 1024..=65535, no TTL compensation.
    pub fn new(wan_addr: Ipv4Addr, lan_addr: Ipv4Addr, lan_prefix: u8) -> NatConfig {
        NatConfig {
            wan_addr,
            lan_addr,
            lan_prefix,
            behaviour: Behaviour::default(),
            port_range: 1024..=65535,
            ttl_compensation: false,
        }
    }
}

/// Transport protocol of a port forward.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Protocol {
    Tcp,
    Udp,
}

impl Protocol {
    /// "tcp" or "udp".
    pub fn name(self) -> &'static str {
        match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
        }
    }

    fn proto(self) -> Proto {
        match self {
            Protocol::Tcp => Proto::Tcp,
            Protocol::Udp => Proto::Udp,
        }
    }
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Protocol {
    type Err = ParseNameError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim() {
            t if t.eq_ignore_ascii_case("tcp") => Ok(Protocol::Tcp),
            t if t.eq_ignore_ascii_case("udp") => Ok(Protocol::Udp),
            _ => Err(ParseNameError::protocol(s)),
        }
    }
}

/// What to do with a packet handed to [`Nat::process`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Translated in place: write it back.
    Forward,
    /// Dropped (and counted).
    Drop(DropReason),
    /// A fragment kept until its first fragment arrives; it comes out of
    /// [`Nat::poll_transmit`] later (or is dropped at the fragment timeout).
    Held,
}

/// The state of the transport checksum of a packet handed to [`Nat::process_with`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ChecksumState {
    /// The TCP/UDP/ICMP checksum is complete (or, for UDP, 0 = none, RFC 768): it is updated
    /// with RFC 1624 eqn. 3 for every changed word.
    #[default]
    Complete,
    /// The transport checksum is to be completed later over the final bytes (Linux
    /// `CHECKSUM_PARTIAL`; `VIRTIO_NET_HDR_F_NEEDS_CSUM` from a TUN with `IFF_VNET_HDR`): the
    /// TCP/UDP field holds the folded, uncomplemented pseudo-header sum (RFC 793 section 3.1,
    /// RFC 768), so only address changes touch it; an ICMP checksum (no pseudo-header) and
    /// the outer checksum of an ICMP error are left alone. The field is assumed to be at its
    /// usual place (`csum_start` = the transport header); the caller checks that. Quoted
    /// packets inside ICMP errors are data and are always fixed as complete.
    Partial,
}

/// One row of the session table, for the control API.
#[derive(Clone, Debug)]
pub struct SessionInfo {
    /// "tcp", "udp" or "icmp".
    pub protocol: &'static str,
    pub internal: SocketAddrV4,
    /// On the WAN address (for ICMP: the echo identifier).
    pub external_port: u16,
    pub remote: SocketAddrV4,
    /// "udp", "icmp", or for TCP: "syn-sent", "syn-received", "established", "fin-wait",
    /// "closing", "reset".
    pub state: &'static str,
    pub expires_in: Duration,
    pub packets: u64,
    pub bytes: u64,
    /// Created through a port forward.
    pub forward: bool,
}

/// Direction of a packet, as classified from its addresses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Dir {
    Out,
    In,
    Hairpin,
}

/// The 5-tuple of a packet (ICMP echo: the identifier is `sport` outbound, `dport` inbound,
/// the remote "port" is 0), with where its ports live in the packet.
#[derive(Clone, Copy, Debug)]
struct Flow {
    proto: Proto,
    src: u32,
    sport: u16,
    dst: u32,
    dport: u16,
    tcp_flags: u8,
    sport_at: usize,
    dport_at: usize,
}

/// The NAT engine. See the module docs.
pub struct Nat {
    cfg: NatConfig,
    wan: u32,
    lan_net: u32,
    lan_mask: u32,
    table: Table,
    forwards: BTreeMap<(Protocol, u16), ForwardEntry>,
    frags: Frags,
    tx: VecDeque<Vec<u8>>,
    counters: Counters,
    rng: SmallRng,
    /// Next candidate per protocol for sequential allocation.
    cursor: [u16; 3],
    /// `now` of the first call: times inside the table are milliseconds since then.
    epoch: Option<Instant>,
    /// Session and fragment limits (module `limits`).
    limits: Limits,
    /// Source addresses refused from the WAN besides the LAN's and our own (module `guard`).
    wan_sources: WanSources,
    /// The checksum state of the packet being processed (set by [`Nat::process_with`]).
    csum: ChecksumState,
}

impl fmt::Debug for Nat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Nat")
            .field("wan_addr", &self.cfg.wan_addr)
            .field("behaviour", &self.cfg.behaviour)
            .field("sessions", &self.table.live)
            .field("forwards", &self.forwards.len())
            .finish_non_exhaustive()
    }
}

/// An ICMP error message (RFC 792): destination unreachable, time exceeded, parameter problem.
fn is_icmp_error(pkt: &[u8], ip: &Ipv4Header) -> bool {
    ip.proto == wire::PROTO_ICMP
        && !ip.is_fragment()
        && matches!(
            pkt.get(ip.ihl),
            Some(
                &(wire::ICMP_DEST_UNREACHABLE
                    | wire::ICMP_TIME_EXCEEDED
                    | wire::ICMP_PARAMETER_PROBLEM)
            )
        )
}

fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

impl Nat {
    /// A new engine. `seed` keys the hash indexes and the random port allocator.
    pub fn new(config: NatConfig, seed: u64) -> Nat {
        let prefix = config.lan_prefix.min(32);
        let lan_mask = if prefix == 0 {
            0
        } else {
            u32::MAX << (32 - u32::from(prefix))
        };
        let hasher = SeededState::new(seed);
        let start = (*config.port_range.start()).max(1);
        Nat {
            wan: u32::from(config.wan_addr),
            lan_net: u32::from(config.lan_addr) & lan_mask,
            lan_mask,
            table: Table::new(seed, u32::from(config.lan_addr) & lan_mask, lan_mask),
            forwards: BTreeMap::new(),
            frags: Frags::new(hasher),
            tx: VecDeque::new(),
            counters: Counters::default(),
            rng: SmallRng::seed_from_u64(seed),
            cursor: [start; 3],
            epoch: None,
            limits: Limits::default(),
            wan_sources: WanSources::default(),
            csum: ChecksumState::Complete,
            cfg: config,
        }
    }

    /// Translates one whole IPv4 packet that arrived on `side`, in place (see the module docs
    /// for the flow). `Forward`: write it back (bytes beyond the IP total length, if any, are
    /// left as they were). `Held`: nothing to write now. `Drop`: counted in
    /// [`Counters::drops`].
    pub fn process(&mut self, now: Instant, side: Side, packet: &mut [u8]) -> Verdict {
        self.process_with(now, side, packet, ChecksumState::Complete)
    }

    /// [`Nat::process`] for a packet whose transport checksum is in state `csum` (see
    /// [`ChecksumState`]); with `Partial` it stays partial, for the device to complete. The
    /// packet may be a GSO super-packet (IPv4 total length up to 65535); its IP header
    /// checksum is kept right as for any packet.
    pub fn process_with(
        &mut self,
        now: Instant,
        side: Side,
        packet: &mut [u8],
        csum: ChecksumState,
    ) -> Verdict {
        let now = self.clock(now);
        self.csum = csum;
        match self.process_inner(now, side, packet) {
            Ok(v) => v,
            Err(r) => {
                self.counters.drop(r, 1);
                Verdict::Drop(r)
            }
        }
    }

    /// Extra packets to write (held fragments released). Call after `process` until `None`.
    pub fn poll_transmit(&mut self) -> Option<Vec<u8>> {
        self.tx.pop_front()
    }

    /// Expires idle sessions, fragments whose first fragment never came, and forwards whose
    /// `expires` has passed.
    pub fn expire(&mut self, now: Instant) {
        while self.expire_some(now, usize::MAX) {}
    }

    /// [`Nat::expire`] with a work budget: looks at most at `budget` due timers, then returns
    /// true if more may be due (call again; [`Nat::next_deadline`] is then already past). The
    /// dataplane uses it so that a million sessions timing out at once (~0.6 s of work) never
    /// holds packets back for longer than one budget.
    pub fn expire_some(&mut self, now: Instant, budget: usize) -> bool {
        let now_ms = self.clock(now);
        // Work = entries taken off the timer heap: an expiry, or a session whose deadline
        // moved on and goes back in.
        let mut work = budget;
        while let Some(idx) = self.table.pop_expired(now_ms, &mut work) {
            self.table.remove(idx);
            self.counters.sessions_expired += 1;
        }
        if work == 0 {
            return true;
        }
        while let Some(e) = self.frags.pop_expired(now_ms) {
            self.counters
                .drop(DropReason::FragmentTimeout, e.held.len() as u64);
        }
        let due: Vec<(Protocol, u16)> = self
            .forwards
            .iter()
            .filter(|(_, e)| e.fwd.expires.is_some_and(|t| t <= now))
            .map(|(k, _)| *k)
            .collect();
        for (p, port) in due {
            self.remove_forward(p, port);
        }
        false
    }

    /// When [`Nat::expire`] has work next (never later than needed; may be earlier).
    pub fn next_deadline(&self) -> Option<Instant> {
        let table = self.epoch.and_then(|e| {
            let d = match (self.table.next_deadline(), self.frags.next_deadline()) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
            d.map(|d| e + Duration::from_millis(d))
        });
        let fwd = self.forwards.values().filter_map(|e| e.fwd.expires).min();
        match (table, fwd) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// The current behaviour.
    pub fn behaviour(&self) -> &Behaviour {
        &self.cfg.behaviour
    }

    /// Switches behaviour; existing sessions and mappings stay and keep their ports. New
    /// timeouts apply from each session's next packet.
    pub fn set_behaviour(&mut self, b: Behaviour) {
        self.cfg.behaviour = b;
    }

    /// Drops every session and dynamic mapping (and tracked fragments); forwards stay.
    pub fn flush_sessions(&mut self) {
        self.table.clear_sessions();
        self.frags.clear();
    }

    /// The external address.
    pub fn wan_addr(&self) -> Ipv4Addr {
        self.cfg.wan_addr
    }

    /// Changes the external address (an ISP renumbering). Sessions are flushed when it
    /// changes, as their external address is gone; forwards stay.
    pub fn set_wan_addr(&mut self, addr: Ipv4Addr) {
        if addr != self.cfg.wan_addr {
            self.cfg.wan_addr = addr;
            self.wan = u32::from(addr);
            self.flush_sessions();
        }
    }

    /// The configuration as it is now (behaviour and WAN address included).
    pub fn config(&self) -> &NatConfig {
        &self.cfg
    }

    /// Caps concurrent sessions (default [`DEFAULT_MAX_SESSIONS`]); beyond it a new session
    /// replaces the oldest unestablished inbound one, or is dropped with
    /// [`DropReason::TableFull`].
    pub fn set_max_sessions(&mut self, max: usize) {
        self.limits.max_sessions = max;
    }

    /// Sets the session and fragment limits (default [`Limits::default`]).
    pub fn set_limits(&mut self, limits: Limits) {
        self.limits = limits;
    }

    /// The limits in force.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// Sets which source addresses the WAN side refuses (default [`WanSources::default`]).
    pub fn set_wan_sources(&mut self, filter: WanSources) {
        self.wan_sources = filter;
    }

    /// Counters.
    pub fn counters(&self) -> &Counters {
        &self.counters
    }

    /// Live sessions.
    pub fn session_count(&self) -> usize {
        self.table.live
    }

    /// Live dynamic mappings and forwards.
    pub fn mapping_count(&self) -> usize {
        self.table.mappings.iter().filter(|m| m.live).count()
    }

    /// Heap bytes the session table holds, computed from its capacities.
    pub fn table_bytes(&self) -> usize {
        self.table.heap_bytes()
    }

    /// The session table (sessions whose timer ran out but were not yet expired have
    /// `expires_in` zero).
    pub fn sessions(&self, now: Instant) -> impl Iterator<Item = SessionInfo> + '_ {
        let now_ms = self.now_ms(now);
        self.table
            .sessions
            .iter()
            .filter(|s| s.is_live())
            .map(move |s| self.session_info(s, now_ms))
    }

    /// Up to `limit` live sessions from table slot `from` on, and the slot to go on from (`None`
    /// at the end). A page costs its own slots, never a walk from the start, so a reader that
    /// holds the NAT lock for one page holds it for the same time at any depth of any table
    /// (the dataplane waits meanwhile). At most `limit * 8` slots are looked at, so a table
    /// thinned by expiry gives shorter pages rather than a longer hold.
    pub fn sessions_from(
        &self,
        now: Instant,
        from: usize,
        limit: usize,
    ) -> (Vec<SessionInfo>, Option<usize>) {
        let now_ms = self.now_ms(now);
        let all = &self.table.sessions;
        let end = all
            .len()
            .min(from.saturating_add(limit.saturating_mul(8).max(64)));
        let mut page = Vec::with_capacity(limit.min(end.saturating_sub(from)));
        let mut slot = from;
        while slot < end && page.len() < limit {
            if all[slot].is_live() {
                page.push(self.session_info(&all[slot], now_ms));
            }
            slot += 1;
        }
        (page, (slot < all.len()).then_some(slot))
    }

    fn now_ms(&self, now: Instant) -> u64 {
        self.epoch
            .map_or(0, |e| ms(now.saturating_duration_since(e)))
    }

    fn session_info(&self, s: &table::Session, now_ms: u64) -> SessionInfo {
        let proto = s.proto();
        SessionInfo {
            protocol: proto.name(),
            internal: SocketAddrV4::new(s.int_addr.into(), s.int_port),
            external_port: s.ext_port,
            remote: SocketAddrV4::new(s.rem_addr.into(), s.rem_port),
            state: match proto {
                Proto::Tcp => tcp_state_name(s.tcp),
                Proto::Udp => "udp",
                Proto::Icmp => "icmp",
            },
            expires_in: Duration::from_millis(s.expires.saturating_sub(now_ms)),
            packets: s.packets,
            bytes: s.bytes,
            forward: self.table.mapping(s.mapping).key.kind == KIND_FORWARD,
        }
    }

    // ---- internals -------------------------------------------------------------------------

    fn clock(&mut self, now: Instant) -> u64 {
        let e = *self.epoch.get_or_insert(now);
        ms(now.saturating_duration_since(e))
    }

    fn in_lan(&self, a: u32) -> bool {
        a & self.lan_mask == self.lan_net
    }

    fn process_inner(
        &mut self,
        now: u64,
        side: Side,
        packet: &mut [u8],
    ) -> Result<Verdict, DropReason> {
        let ip = Ipv4Header::parse(packet)?;
        let pkt = packet.get_mut(..ip.total).ok_or(DropReason::Truncated)?;
        if ip.ttl == 0 {
            return Err(DropReason::TtlExpired);
        }
        let dir = match self.classify(side, ip.src, ip.dst) {
            // ICMP errors from an ISP's privately addressed routers (Path MTU discovery,
            // traceroute) pass the configurable part of the bogon filter: they open nothing,
            // they only reach a session whose packet they quote (module `guard`).
            Err(DropReason::WanBogonSource) if ip.dst == self.wan && is_icmp_error(pkt, &ip) => {
                match self.wan_sources.always_refused(ip.src) {
                    true => return Err(DropReason::WanBogonSource),
                    false => Dir::In,
                }
            }
            d => d?,
        };
        if ip.is_fragment() {
            return self.process_fragment(now, pkt, &ip, dir);
        }
        self.translate(now, pkt, &ip, dir)?;
        Ok(Verdict::Forward)
    }

    /// Translates an unfragmented packet or a first fragment.
    pub(crate) fn translate(
        &mut self,
        now: u64,
        pkt: &mut [u8],
        ip: &Ipv4Header,
        dir: Dir,
    ) -> Result<(), DropReason> {
        let proto = Proto::from_ip(ip.proto).ok_or(DropReason::UnsupportedProtocol)?;
        let l4 = ip.ihl;
        let avail = ip.payload_len();
        let mut flow = Flow {
            proto,
            src: ip.src,
            sport: rd16(pkt, l4 + field::SRC_PORT),
            dst: ip.dst,
            dport: rd16(pkt, l4 + field::DST_PORT),
            tcp_flags: 0,
            sport_at: l4 + field::SRC_PORT,
            dport_at: l4 + field::DST_PORT,
        };
        let csum_at = match proto {
            Proto::Tcp => {
                if avail < field::TCP_MIN {
                    return Err(DropReason::Truncated);
                }
                flow.tcp_flags = rd8(pkt, l4 + field::TCP_FLAGS);
                l4 + field::TCP_CHECKSUM
            }
            Proto::Udp => {
                if avail < field::UDP_LEN {
                    return Err(DropReason::Truncated);
                }
                l4 + field::UDP_CHECKSUM
            }
            Proto::Icmp => {
                if avail < field::ICMP_LEN {
                    return Err(DropReason::Truncated);
                }
                let id = rd16(pkt, l4 + field::ICMP_IDENT);
                flow.sport_at = l4 + field::ICMP_IDENT;
                flow.dport_at = l4 + field::ICMP_IDENT;
                match (rd8(pkt, l4 + field::ICMP_TYPE), dir) {
                    (wire::ICMP_ECHO_REQUEST, Dir::Out) => (flow.sport, flow.dport) = (id, 0),
                    (wire::ICMP_ECHO_REPLY, Dir::In) => (flow.sport, flow.dport) = (0, id),
                    (
                        wire::ICMP_DEST_UNREACHABLE
                        | wire::ICMP_TIME_EXCEEDED
                        | wire::ICMP_PARAMETER_PROBLEM,
                        _,
                    ) => return self.translate_icmp_error(pkt, ip, dir),
                    _ => return Err(DropReason::UnsupportedIcmp),
                }
                l4 + field::ICMP_CHECKSUM
            }
        };
        let len = ip.total as u64;
        let mut rw = Rewrite {
            l4_csum: Some((csum_at, proto == Proto::Udp, proto != Proto::Icmp)),
            partial: self.csum == ChecksumState::Partial,
            ttl_inc: self.cfg.ttl_compensation,
            ..Rewrite::default()
        };
        match dir {
            Dir::Out => {
                let ext = self.lookup_out(now, &flow, len)?;
                rw.src = Some(self.wan);
                rw.sport = Some((flow.sport_at, ext));
                self.counters.packets_out += 1;
                self.counters.bytes_out += len;
            }
            Dir::In => {
                let (addr, port) = self.lookup_in(now, &flow, len)?;
                rw.dst = Some(addr);
                rw.dport = Some((flow.dport_at, port));
                self.counters.packets_in += 1;
                self.counters.bytes_in += len;
            }
            Dir::Hairpin => {
                // RFC 4787 REQ-9 / RFC 5382 REQ-8: translate the source as for any outbound
                // packet (so the receiver sees the sender's external endpoint and its replies
                // hairpin too), then the destination as for an inbound one.
                // (ICMP echo never gets here: an echo request to the WAN address is refused
                // above, as the engine does not answer pings itself.)
                let ext = self.lookup_out(now, &flow, len)?;
                let back = Flow {
                    src: self.wan,
                    sport: ext,
                    ..flow
                };
                let (addr, port) = self.lookup_in(now, &back, len)?;
                rw.src = Some(self.wan);
                rw.sport = Some((flow.sport_at, ext));
                rw.dst = Some(addr);
                rw.dport = Some((flow.dport_at, port));
                self.counters.packets_hairpin += 1;
            }
        }
        rewrite(pkt, &rw);
        Ok(())
    }

    /// Outbound lookup; creates the session (and mapping) if needed. Returns the external port.
    fn lookup_out(&mut self, now: u64, f: &Flow, len: u64) -> Result<u16, DropReason> {
        let key = OutKey {
            int_addr: f.src,
            rem_addr: f.dst,
            int_port: f.sport,
            rem_port: f.dport,
            proto: f.proto,
        };
        let idx = match self.table.out_idx.get(&key) {
            Some(&i) => i,
            None => {
                if f.proto == Proto::Tcp
                    && f.tcp_flags & (wire::TCP_SYN | wire::TCP_ACK) != wire::TCP_SYN
                {
                    return Err(DropReason::TcpNoSession);
                }
                self.admit_session(true, f.src, f.dst)?;
                let m = self.mapping_for(f)?;
                self.new_session(
                    now,
                    f,
                    m,
                    true,
                    key.int_addr,
                    key.int_port,
                    key.rem_addr,
                    key.rem_port,
                )?
            }
        };
        self.touch(now, idx, true, f.tcp_flags, len);
        Ok(self.table.session(idx).ext_port)
    }

    /// Inbound lookup; applies forwards and filtering to create a session if needed. Returns
    /// the internal endpoint.
    fn lookup_in(&mut self, now: u64, f: &Flow, len: u64) -> Result<(u32, u16), DropReason> {
        let key = InKey {
            rem_addr: f.src,
            ext_port: f.dport,
            rem_port: f.sport,
            proto: f.proto,
        };
        let idx = match self.table.in_idx.get(&key) {
            Some(&i) => i,
            None => {
                let mut m = self.admit_inbound(f)?;
                let int_addr = self.table.mapping(m).key.key.int_addr;
                if self.admit_session(false, int_addr, f.src)? {
                    // The evicted session may have been the last of that mapping.
                    m = self.admit_inbound(f)?;
                }
                let mk = self.table.mapping(m).key.key;
                // The internal endpoint may already talk to this remote through another of
                // its mappings (dependent mapping, or a forward added later): one session per
                // (internal, remote) pair, so refuse the second path in.
                let out = OutKey {
                    int_addr: mk.int_addr,
                    rem_addr: f.src,
                    int_port: mk.int_port,
                    rem_port: f.sport,
                    proto: f.proto,
                };
                if self.table.out_idx.contains_key(&out) {
                    return Err(DropReason::Filtered);
                }
                self.new_session(now, f, m, false, mk.int_addr, mk.int_port, f.src, f.sport)?
            }
        };
        self.touch(now, idx, false, f.tcp_flags, len);
        let s = self.table.session(idx);
        Ok((s.int_addr, s.int_port))
    }

    /// The mapping a new outbound session uses: the forward of its internal endpoint, or the
    /// mapping per the mapping behaviour (RFC 4787 section 4.1), created if needed.
    fn mapping_for(&mut self, f: &Flow) -> Result<u32, DropReason> {
        if !self.forwards.is_empty() && f.proto != Proto::Icmp {
            let fk = Self::forward_key(f.proto, f.src.into(), f.sport);
            if let Some(&m) = self.table.map_idx.get(&fk) {
                return Ok(m);
            }
        }
        let (kind, rem_addr, rem_port) = match self.cfg.behaviour.mapping {
            MappingBehaviour::EndpointIndependent => (KIND_EIM, 0, 0),
            MappingBehaviour::AddressDependent => (KIND_ADM, f.dst, 0),
            MappingBehaviour::AddressAndPortDependent => (KIND_APDM, f.dst, f.dport),
        };
        let mk = MapKey {
            key: OutKey {
                int_addr: f.src,
                rem_addr,
                int_port: f.sport,
                rem_port,
                proto: f.proto,
            },
            kind,
        };
        if let Some(&m) = self.table.map_idx.get(&mk) {
            return Ok(m);
        }
        let port = self
            .alloc_port(f.proto, f.sport)
            .ok_or(DropReason::PortsExhausted)?;
        Ok(self.table.add_mapping(mk, port))
    }

    /// Whether an inbound packet without a session may open one, and through which mapping:
    /// the forward on its port (with its remote-host restriction), or the dynamic mapping on
    /// its port per the filtering behaviour (RFC 4787 section 5, REQ-8).
    fn admit_inbound(&self, f: &Flow) -> Result<u32, DropReason> {
        if f.proto == Proto::Icmp {
            return Err(DropReason::NoMapping);
        }
        let m = self.table.owner(f.proto, f.dport);
        if m == NONE {
            return Err(DropReason::NoMapping);
        }
        if self.table.mapping(m).key.kind == KIND_FORWARD {
            let protocol = if f.proto == Proto::Tcp {
                Protocol::Tcp
            } else {
                Protocol::Udp
            };
            let allowed = self
                .forwards
                .get(&(protocol, f.dport))
                .is_some_and(|e| e.fwd.remote_host.is_none_or(|h| u32::from(h) == f.src));
            return if allowed {
                Ok(m)
            } else {
                Err(DropReason::Filtered)
            };
        }
        let allowed = match self.cfg.behaviour.filtering {
            FilteringBehaviour::EndpointIndependent => true,
            FilteringBehaviour::AddressDependent => self
                .table
                .mapping_sessions(m)
                .any(|i| self.table.session(i).rem_addr == f.src),
            // An exact (remote address, port) match would have found a session already.
            FilteringBehaviour::AddressAndPortDependent => false,
        };
        if allowed {
            Ok(m)
        } else {
            Err(DropReason::Filtered)
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn new_session(
        &mut self,
        now: u64,
        f: &Flow,
        mapping: u32,
        out: bool,
        int_addr: u32,
        int_port: u16,
        rem_addr: u32,
        rem_port: u16,
    ) -> Result<u32, DropReason> {
        if self.table.live >= self.limits.max_sessions {
            // A mapping created just now for this session must not linger without sessions.
            let m = self.table.mapping(mapping);
            if m.refs == 0 && m.key.kind != KIND_FORWARD {
                self.table.remove_mapping(mapping);
            }
            return Err(DropReason::TableFull);
        }
        let tcp = if f.proto == Proto::Tcp {
            tcp_next(0, f.tcp_flags, out)
        } else {
            0
        };
        let expires = now.saturating_add(self.timeout_ms(f.proto, tcp));
        let idx = self.table.insert(Session {
            int_addr,
            rem_addr,
            int_port,
            rem_port,
            ext_port: self.table.mapping(mapping).ext_port,
            proto: f.proto as u8,
            tcp,
            mapping,
            out,
            prev: NONE,
            next: NONE,
            expires,
            queued: expires,
            packets: 0,
            bytes: 0,
        });
        self.counters.sessions_created += 1;
        Ok(idx)
    }

    fn timeout_ms(&self, proto: Proto, tcp: u8) -> u64 {
        let t = &self.cfg.behaviour.timeouts;
        ms(match proto {
            Proto::Udp => t.udp,
            Proto::Icmp => t.icmp,
            Proto::Tcp if tcp_established(tcp) => t.tcp_established,
            Proto::Tcp => t.tcp_transitory,
        })
    }

    /// Per-packet session update: counters, TCP state, idle timer (refreshed in both
    /// directions; RFC 4787 REQ-6 requires at least outbound refresh).
    #[inline]
    fn touch(&mut self, now: u64, idx: u32, out: bool, flags: u8, len: u64) {
        let s = self.table.session_mut(idx);
        s.packets += 1;
        s.bytes += len;
        let proto = s.proto();
        if proto == Proto::Tcp {
            s.tcp = tcp_next(s.tcp, flags, out);
        } else {
            s.tcp |= if out { SEEN_OUT } else { SEEN_IN };
        }
        // Confirmed (never evicted, module `limits`): the opener spoke again, not a SYN, after
        // the other side answered; a spoofed source never sees that answer.
        let answered = s.tcp & if s.out { SEEN_IN } else { SEEN_OUT } != 0;
        if out == s.out && answered && flags & wire::TCP_SYN == 0 {
            s.tcp |= CONFIRMED;
        }
        let tcp = s.tcp;
        let expires = now.saturating_add(self.timeout_ms(proto, tcp));
        self.table.set_expiry(idx, expires);
    }

    /// A free external port per the allocation behaviour, in the configured range.
    fn alloc_port(&mut self, proto: Proto, want: u16) -> Option<u16> {
        let lo = (*self.cfg.port_range.start()).max(1);
        let hi = *self.cfg.port_range.end();
        if lo > hi {
            return None;
        }
        let range = lo..=hi;
        let free = |t: &Table, p: u16| t.owner(proto, p) == NONE;
        let cursor = self.cursor.get(proto as usize).copied().unwrap_or(lo);
        let start = match self.cfg.behaviour.port_allocation {
            // RFC 4787 REQ-3 (port preservation is a MAY; it must not override REQ-1).
            PortAllocation::Preserve if range.contains(&want) && free(&self.table, want) => {
                return Some(want);
            }
            PortAllocation::Preserve | PortAllocation::Sequential => cursor,
            PortAllocation::Random => {
                for _ in 0..16 {
                    let p = self.rng.random_range(lo..=hi);
                    if free(&self.table, p) {
                        return Some(p);
                    }
                }
                self.rng.random_range(lo..=hi)
            }
        };
        let start = if range.contains(&start) { start } else { lo };
        let span = u32::from(hi - lo) + 1;
        let off = u32::from(start - lo);
        for i in 0..span {
            let p = lo + ((off + i) % span) as u16;
            if free(&self.table, p) {
                if let Some(c) = self.cursor.get_mut(proto as usize) {
                    *c = if p == hi { lo } else { p + 1 };
                }
                return Some(p);
            }
        }
        None
    }
}
