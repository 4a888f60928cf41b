//! What the engine counts: traffic, sessions, fragments, and every drop by its reason (the
//! reasons and their metric labels declared together).

macro_rules! drop_reasons {
    ($($(#[$doc:meta])* $v:ident => $name:literal,)*) => {
        /// Why a packet was dropped. `name()` is the Prometheus label value.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        pub enum DropReason { $($(#[$doc])* $v,)* }
        impl DropReason {
            /// Every reason, in `Counters::drops` index order.
            pub const ALL: &'static [DropReason] = &[$(DropReason::$v,)*];
            /// Number of reasons.
            pub const COUNT: usize = [$(DropReason::$v,)*].len();
            /// snake_case label.
            pub fn name(self) -> &'static str {
                match self { $(DropReason::$v => $name,)* }
            }
        }
    };
}

drop_reasons! {
    /// Shorter than the IPv4 header, its IHL, or the transport header it needs.
    Truncated => "truncated",
    /// Not IPv4.
    BadVersion => "bad_version",
    /// IHL below 5.
    BadHeaderLength => "bad_header_length",
    /// Total length below the header length or beyond the bytes received.
    BadTotalLength => "bad_total_length",
    /// IPv4 header checksum wrong.
    BadChecksum => "bad_checksum",
    /// TTL 0.
    TtlExpired => "ttl_expired",
    /// Neither TCP, UDP nor ICMP.
    UnsupportedProtocol => "unsupported_protocol",
    /// An ICMP type the engine does not translate in that direction (e.g. an echo request
    /// to the WAN address).
    UnsupportedIcmp => "unsupported_icmp",
    /// An ICMP error whose quoted packet is malformed or not one of ours.
    BadIcmp => "bad_icmp",
    /// From the LAN with a source outside the LAN, LAN to LAN, from the WAN to another address
    /// than ours, or to a special-purpose destination.
    NotForUs => "not_for_us",
    /// From the WAN with a LAN source address or our own WAN address (spoofed: RFC 2827).
    WanLanSource => "wan_lan_source",
    /// From the WAN with an RFC 6890 special-purpose source that cannot come from the
    /// internet (module `guard`).
    WanBogonSource => "wan_bogon_source",
    /// LAN to the WAN address while hairpinning is off.
    HairpinDisabled => "hairpin_disabled",
    /// Refused by the filtering behaviour or a forward's remote-host restriction.
    Filtered => "filtered",
    /// Inbound to a port with no mapping or forward.
    NoMapping => "no_mapping",
    /// An outbound TCP segment other than a SYN (without ACK) with no session (RFC 5382 §5: a session
    /// starts with a SYN). A FIN or RST that a LAN server sends after its forward was removed
    /// must not open a new mapping on the forward's port, or the port stays taken.
    TcpNoSession => "tcp_no_session",
    /// No free external port in the range.
    PortsExhausted => "ports_exhausted",
    /// The session cap is reached and no unestablished inbound session could give way.
    TableFull => "table_full",
    /// The LAN host has its share of sessions ([`super::Limits::sessions_per_host`]).
    HostSessionLimit => "host_session_limit",
    /// The internet address has its share of inbound sessions
    /// ([`super::Limits::sessions_per_remote`]).
    RemoteSessionLimit => "remote_session_limit",
    /// A held fragment whose first fragment never came.
    FragmentTimeout => "fragment_timeout",
    /// Too many fragments held for one datagram, or a fragment larger than the whole buffer.
    FragmentBufferFull => "fragment_buffer_full",
    /// The source has its share of fragmented datagrams tracked
    /// ([`super::Limits::fragments_per_source`]).
    FragmentSourceLimit => "fragment_source_limit",
}

/// Traffic counters. "out" = LAN -> WAN, "in" = WAN -> LAN.
#[derive(Clone, Debug, Default)]
pub struct Counters {
    pub packets_out: u64,
    pub bytes_out: u64,
    pub packets_in: u64,
    pub bytes_in: u64,
    /// LAN -> WAN address -> LAN packets (counted here only, not in out/in).
    pub packets_hairpin: u64,
    pub sessions_created: u64,
    pub sessions_expired: u64,
    /// Unestablished inbound sessions removed to make room (module `limits`).
    pub sessions_evicted: u64,
    pub fragments_held: u64,
    /// Held fragments dropped when their datagram gave way to a newer one.
    pub fragments_evicted: u64,
    /// Indexed by `DropReason as usize`.
    pub drops: [u64; DropReason::COUNT],
}

impl Counters {
    /// All drops.
    pub fn drops_total(&self) -> u64 {
        self.drops.iter().sum()
    }
    /// Drops for one reason.
    pub fn drop_count(&self, r: DropReason) -> u64 {
        self.drops.get(r as usize).copied().unwrap_or(0)
    }
    pub(super) fn drop(&mut self, r: DropReason, n: u64) {
        if let Some(c) = self.drops.get_mut(r as usize) {
            *c += n;
        }
    }
}
