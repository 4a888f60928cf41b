//! The relay protocol (seed 003, with seed 004's same-network question): small authenticated UDP
//! datagrams between a device (a camera) and a relay server on the internet, and the hello that
//! starts a device's TLS back-connection. Documented for humans in `docs/relay-protocol.md`.
//!
//! # UDP datagrams (all integers big-endian)
//! ```text
//!  0      4      5      6       8              16             24          24+len      +32
//!  +------+------+------+-------+--------------+--------------+------------+-----------+
//!  |magic |ver=1 | type | body  |  device id   |   counter    | body: TLVs |    MAC    |
//!  |"HNRL"|      |      | length|   (u64)      |   (u64)      |            | HMAC-SHA256|
//!  +------+------+------+-------+--------------+--------------+------------+-----------+
//! ```
//! Every datagram, both ways, ends with HMAC-SHA256 keyed with the device's secret over all the
//! bytes before the MAC (header and body). The relay reads the device id from the header, looks
//! the secret up and checks the MAC before it parses the body; a device checks the relay's
//! datagrams with its own secret. So nobody without the secret can register as a device, move
//! its observed address, or make it connect (seed 003's secure variant).
//!
//! The counter: a device's counter increases with every datagram it sends; it starts above both
//! its wall clock in milliseconds and the floor the relay reports ([`PeriodAnswer::counter_floor`]),
//! so a relay drops any notification whose counter is not above the last one it accepted (a
//! replay). The relay's counter is its clock in microseconds since the Unix epoch, made strictly
//! increasing; a device uses it to judge how old a connection request is.
//!
//! Device datagrams the relay may answer are padded to at least [`MIN_DEVICE_DATAGRAM`] bytes, and
//! every relay answer is shorter than that, so a spoofed source address gains no amplification.
//!
//! # The back-connection hello
//! After the device opened TCP to the relay's back-connection port and completed TLS (checking
//! the relay's certificate), it sends a fixed 56-byte [`Hello`]; the relay answers with an
//! 8-byte [`HelloAnswer`]. From then on the stream is plain HTTP/1.1 with the relay as client.
//!
//! Two levels, as smoltcp does it: [`Packet`] is a checked view (magic, version, lengths), [`Repr`]
//! the parsed message with [`Repr::parse`] and [`Repr::emit`]. Parsing never panics.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use hmac::{Hmac, Mac};
use sha2::Sha256;

/// The default UDP port of a relay (notifications, period queries).
pub const DEFAULT_UDP_PORT: u16 = 17780;
/// The default TCP port for devices' TLS back-connections.
pub const DEFAULT_BACK_PORT: u16 = 17781;
/// The four bytes every UDP datagram starts with ("HomeNet ReLay").
pub const MAGIC: [u8; 4] = *b"HNRL";
/// The four bytes the back-connection hello and its answer start with ("HomeNet Relay Back").
pub const BACK_MAGIC: [u8; 4] = *b"HNRB";
/// The protocol version this module reads and writes.
pub const VERSION: u8 = 1;
/// Size of the fixed UDP header.
pub const HEADER_LEN: usize = 24;
/// Size of the MAC at the end of every datagram (HMAC-SHA256, untruncated).
pub const MAC_LEN: usize = 32;
/// Largest datagram we send or accept.
pub const MAX_DATAGRAM: usize = 512;
/// Device datagrams the relay may answer are padded to at least this many bytes; every relay
/// answer is shorter (tested), so answering never amplifies.
pub const MIN_DEVICE_DATAGRAM: usize = 128;
/// Length of the nonce in a connection request.
pub const NONCE_LEN: usize = 16;
/// Length of a device secret.
pub const SECRET_LEN: usize = 32;
/// Size of [`Hello`] on the wire.
pub const HELLO_LEN: usize = 56;
/// Size of [`HelloAnswer`] on the wire.
pub const HELLO_ANSWER_LEN: usize = 8;

pub(crate) type HmacSha256 = Hmac<Sha256>;

/// Byte ranges of the UDP header (smoltcp's `field` module).
mod field {
    use std::ops::Range;
    pub const MAGIC: Range<usize> = 0..4;
    pub const VERSION: usize = 4;
    pub const TYPE: usize = 5;
    pub const BODY_LEN: Range<usize> = 6..8;
    pub const DEVICE_ID: Range<usize> = 8..16;
    pub const COUNTER: Range<usize> = 16..24;
    pub const BODY: usize = 24;
}

/// TLV tags of the body.
pub mod tag {
    /// u64: the counter of the device datagram being answered.
    pub const ECHO: u8 = 1;
    /// u32: the maximum access confirmation period in milliseconds (seed 003).
    pub const PERIOD_MS: u8 = 2;
    /// Socket address (6 bytes IPv4 + port, or 18 bytes IPv6 + port): where the relay saw the
    /// device's datagram come from (its NAT's public address and port).
    pub const OBSERVED: u8 = 3;
    /// u64: the highest counter the relay has accepted from this device (0: none).
    pub const COUNTER_FLOOR: u8 = 4;
    /// u16, not 0: the relay's TCP port for TLS back-connections.
    pub const BACK_PORT: u8 = 5;
    /// u32: the keep-alive interval the relay suggests, in milliseconds.
    pub const KEEPALIVE_MS: u8 = 6;
    /// u8: notification kind, 1 = keep-alive, 2 = refresh.
    pub const KIND: u8 = 7;
    /// Socket address: the device's LAN address and web port (seed 004's local address).
    pub const LAN: u8 = 8;
    /// u64: a session id.
    pub const SESSION: u8 = 9;
    /// 16 bytes: the nonce of a connection request.
    pub const NONCE: u8 = 10;
    /// u64: another device's id.
    pub const PEER: u8 = 11;
    /// u8: same network? 0 = no, 1 = yes, 2 = unknown (the peer is not registered or offline).
    pub const SAME: u8 = 12;
    /// IP address (4 or 16 bytes): the external address the device's own home router reports
    /// (IGD GetExternalIPAddress), when it knows one. Differs from the observed address when a
    /// further NAT (carrier-grade) shares the public address with other homes (seed 004).
    pub const ROUTER_WAN: u8 = 13;
    /// Any bytes: padding, ignored.
    pub const PAD: u8 = 255;
}

/// Message types; see `docs/relay-protocol.md`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MessageType {
    /// 1: device -> relay: what is the period? (seed 003: asked first). Changes no state.
    PeriodQuery,
    /// 2: relay -> device: the period, the observed address; answers a query or a refresh.
    PeriodAnswer,
    /// 3: device -> relay: a notification, keep-alive or refresh.
    Notify,
    /// 4: relay -> device: open a back-connection for this session.
    ConnectRequest,
    /// 5: device -> relay: is that device on my network? (seed 004)
    SameNetworkQuery,
    /// 6: relay -> device: one bit (or unknown).
    SameNetworkAnswer,
}

impl MessageType {
    /// The number on the wire.
    pub const fn code(self) -> u8 {
        match self {
            MessageType::PeriodQuery => 1,
            MessageType::PeriodAnswer => 2,
            MessageType::Notify => 3,
            MessageType::ConnectRequest => 4,
            MessageType::SameNetworkQuery => 5,
            MessageType::SameNetworkAnswer => 6,
        }
    }

    /// The type for a number, if this version knows it.
    pub const fn from_code(code: u8) -> Option<MessageType> {
        match code {
            1 => Some(MessageType::PeriodQuery),
            2 => Some(MessageType::PeriodAnswer),
            3 => Some(MessageType::Notify),
            4 => Some(MessageType::ConnectRequest),
            5 => Some(MessageType::SameNetworkQuery),
            6 => Some(MessageType::SameNetworkAnswer),
            _ => None,
        }
    }

    /// Whether a device sends this type (the relay sends the others).
    pub const fn from_device(self) -> bool {
        matches!(
            self,
            MessageType::PeriodQuery | MessageType::Notify | MessageType::SameNetworkQuery
        )
    }
}

/// Why a datagram or hello was dropped. Each kind is counted separately by the receiver.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// Shorter than the header, or than header + body length + MAC.
    #[error("truncated message")]
    Truncated,
    /// Longer than [`MAX_DATAGRAM`].
    #[error("message too large")]
    TooLarge,
    /// Not our magic.
    #[error("not a relay protocol message")]
    BadMagic,
    /// A version we do not speak.
    #[error("unknown version {0}")]
    UnknownVersion(u8),
    /// A message type this version does not know.
    #[error("unknown message type {0}")]
    UnknownType(u8),
    /// The MAC does not match (forged, corrupted, or the wrong secret).
    #[error("bad MAC")]
    BadMac,
    /// A TLV runs past the end of the body.
    #[error("malformed field list")]
    BadTlv,
    /// A field this message type needs is missing.
    #[error("missing field {0}")]
    MissingField(u8),
    /// A field has the wrong length or an invalid value.
    #[error("invalid field {0}")]
    InvalidField(u8),
}

/// A device secret: 32 bytes shared by the device and the relay's config, written as 64 hex
/// digits. `Debug` does not print it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(pub [u8; SECRET_LEN]);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(..)")
    }
}

impl Secret {
    /// Parses 64 hex digits (either case; surrounding spaces are trimmed).
    pub fn from_hex(s: &str) -> Option<Secret> {
        let s = s.trim().as_bytes();
        if s.len() != 2 * SECRET_LEN {
            return None;
        }
        let mut out = [0u8; SECRET_LEN];
        for (i, pair) in s.chunks(2).enumerate() {
            let hi = (pair[0] as char).to_digit(16)?;
            let lo = (pair[1] as char).to_digit(16)?;
            out[i] = (hi * 16 + lo) as u8;
        }
        Some(Secret(out))
    }

    /// 64 lowercase hex digits.
    pub fn to_hex(&self) -> String {
        self.0.iter().map(|b| format!("{b:02x}")).collect()
    }

    /// The secret of `device_id` under an enrolment key: HMAC-SHA256(key, "HNRL device" ||
    /// device id). A relay configured with the key accepts every device id whose datagrams carry
    /// this secret, without a list; whoever enrols a device (`relay enrol`) gives it its secret,
    /// never the key.
    pub fn derive(enrol_key: &Secret, device_id: u64) -> Secret {
        let mut m = enrol_key.mac();
        m.update(b"HNRL device");
        m.update(&device_id.to_be_bytes());
        Secret(m.finalize().into_bytes().into())
    }

    pub(crate) fn mac(&self) -> HmacSha256 {
        // HMAC takes keys of any length; 32 bytes never fails.
        <HmacSha256 as Mac>::new_from_slice(&self.0).expect("HMAC accepts any key length")
    }
}

/// A device id as shown in URLs and logs: 16 lowercase hex digits (the camera's node id).
pub fn format_device_id(id: u64) -> String {
    format!("{id:016x}")
}

/// Parses a device id: 1 to 16 hex digits, either case.
pub fn parse_device_id(s: &str) -> Option<u64> {
    if s.is_empty() || s.len() > 16 || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    u64::from_str_radix(s, 16).ok()
}

/// A checked view of a datagram in a buffer.
#[derive(Debug, Clone)]
pub struct Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Packet<T> {
    /// Wraps a buffer after checking size, magic, version and that header, body and MAC are all
    /// there, so no getter below can panic. Type and MAC are checked later
    /// ([`Packet::verify`], [`Repr::parse`]).
    pub fn new_checked(buffer: T) -> Result<Packet<T>, Error> {
        let b = buffer.as_ref();
        if b.len() > MAX_DATAGRAM {
            return Err(Error::TooLarge);
        }
        if b.len() >= 4 && b[field::MAGIC] != MAGIC {
            return Err(Error::BadMagic);
        }
        if b.len() < HEADER_LEN + MAC_LEN {
            return Err(Error::Truncated);
        }
        if b[field::VERSION] != VERSION {
            return Err(Error::UnknownVersion(b[field::VERSION]));
        }
        let p = Packet { buffer };
        if p.buffer.as_ref().len() < p.mac_end() {
            return Err(Error::Truncated);
        }
        Ok(p)
    }

    fn u64_at(&self, r: std::ops::Range<usize>) -> u64 {
        let mut a = [0u8; 8];
        a.copy_from_slice(&self.buffer.as_ref()[r]);
        u64::from_be_bytes(a)
    }

    fn mac_end(&self) -> usize {
        field::BODY + usize::from(self.body_len()) + MAC_LEN
    }

    /// The raw message type.
    pub fn msg_type(&self) -> u8 {
        self.buffer.as_ref()[field::TYPE]
    }
    /// The body length.
    pub fn body_len(&self) -> u16 {
        let b = self.buffer.as_ref();
        u16::from_be_bytes([b[field::BODY_LEN.start], b[field::BODY_LEN.start + 1]])
    }
    /// The device id (the sender's for device datagrams, the addressee's for the relay's).
    pub fn device_id(&self) -> u64 {
        self.u64_at(field::DEVICE_ID)
    }
    /// The sender's counter.
    pub fn counter(&self) -> u64 {
        self.u64_at(field::COUNTER)
    }
    /// The body (TLVs).
    pub fn body(&self) -> &[u8] {
        let end = field::BODY + usize::from(self.body_len());
        &self.buffer.as_ref()[field::BODY..end]
    }
    /// Checks the MAC with the device's secret, in constant time. Bytes after the MAC are
    /// ignored (they are not authenticated, and nothing reads them).
    pub fn verify(&self, secret: &Secret) -> Result<(), Error> {
        let b = self.buffer.as_ref();
        let signed = self.mac_end() - MAC_LEN;
        let mut m = secret.mac();
        m.update(&b[..signed]);
        m.verify_slice(&b[signed..self.mac_end()])
            .map_err(|_| Error::BadMac)
    }
}

/// Iterates over the TLVs of a body; yields `Err(BadTlv)` once and stops on a TLV that runs past
/// the end.
fn tlvs(body: &[u8]) -> impl Iterator<Item = Result<(u8, &[u8]), Error>> + '_ {
    let mut pos = 0usize;
    let mut failed = false;
    std::iter::from_fn(move || {
        if failed || pos >= body.len() {
            return None;
        }
        let rest = &body[pos..];
        if rest.len() < 3 {
            failed = true;
            return Some(Err(Error::BadTlv));
        }
        let t = rest[0];
        let len = usize::from(u16::from_be_bytes([rest[1], rest[2]]));
        let Some(value) = rest.get(3..3 + len) else {
            failed = true;
            return Some(Err(Error::BadTlv));
        };
        pos += 3 + len;
        Some(Ok((t, value)))
    })
}

/// Notification kinds (seed 003's variant with two kinds).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum NotifyKind {
    /// Frequent: keeps the NAT's UDP binding and the relay's observed address current. Does not
    /// refresh the last access, except for a device the relay holds no live entry for (after a
    /// relay restart), which it registers and answers.
    KeepAlive,
    /// Rarer: also refreshes the last access and the LAN address; always answered with a
    /// [`PeriodAnswer`].
    Refresh,
}

impl NotifyKind {
    const fn code(self) -> u8 {
        match self {
            NotifyKind::KeepAlive => 1,
            NotifyKind::Refresh => 2,
        }
    }
}

/// Seed 004's answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Same {
    /// Different networks.
    No,
    /// Same network (registered global addresses equal under the relay's mask).
    Yes,
    /// The peer is not registered, or offline.
    Unknown,
}

impl Same {
    const fn code(self) -> u8 {
        match self {
            Same::No => 0,
            Same::Yes => 1,
            Same::Unknown => 2,
        }
    }
}

/// Relay -> device: the answer to a [`MessageType::PeriodQuery`] or a refresh.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeriodAnswer {
    /// The counter of the datagram answered.
    pub echo: u64,
    /// The maximum access confirmation period: a device not refreshed within it is offline.
    pub period_ms: u32,
    /// The device's address and port as the relay saw them.
    pub observed: SocketAddr,
    /// The highest counter accepted from this device; the device continues above it.
    pub counter_floor: u64,
    /// The relay's TCP port for back-connections (same host as the relay's UDP address).
    pub back_port: u16,
    /// The keep-alive interval the relay suggests (the device may go shorter for its NAT).
    pub keepalive_ms: u32,
}

/// Device -> relay: a notification.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notify {
    /// Keep-alive or refresh.
    pub kind: NotifyKind,
    /// The device's LAN address and web port (seed 004); required for a refresh.
    pub lan: Option<SocketAddr>,
    /// The external address its home router reports, if known ([`tag::ROUTER_WAN`]).
    pub router_wan: Option<IpAddr>,
}

/// Relay -> device: open a back-connection and prove the nonce (seed 003).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectRequest {
    /// The session the back-connection will carry.
    pub session: u64,
    /// Random; proven inside TLS by the [`Hello`]'s MAC.
    pub nonce: [u8; NONCE_LEN],
    /// The relay's TCP port for back-connections.
    pub back_port: u16,
}

/// Relay -> device: seed 004's one bit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SameNetworkAnswer {
    /// The counter of the query answered.
    pub echo: u64,
    /// The device asked about.
    pub peer: u64,
    /// The answer.
    pub same: Same,
}

/// The typed body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Body {
    /// [`MessageType::PeriodQuery`]: no fields.
    PeriodQuery,
    /// [`MessageType::PeriodAnswer`].
    PeriodAnswer(PeriodAnswer),
    /// [`MessageType::Notify`].
    Notify(Notify),
    /// [`MessageType::ConnectRequest`].
    ConnectRequest(ConnectRequest),
    /// [`MessageType::SameNetworkQuery`]: the peer's device id.
    SameNetworkQuery {
        /// The device asked about.
        peer: u64,
    },
    /// [`MessageType::SameNetworkAnswer`].
    SameNetworkAnswer(SameNetworkAnswer),
}

impl Body {
    /// The message type of this body.
    pub fn msg_type(&self) -> MessageType {
        match self {
            Body::PeriodQuery => MessageType::PeriodQuery,
            Body::PeriodAnswer(_) => MessageType::PeriodAnswer,
            Body::Notify(_) => MessageType::Notify,
            Body::ConnectRequest(_) => MessageType::ConnectRequest,
            Body::SameNetworkQuery { .. } => MessageType::SameNetworkQuery,
            Body::SameNetworkAnswer(_) => MessageType::SameNetworkAnswer,
        }
    }
}

/// A parsed datagram (after its MAC was checked).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Repr {
    /// The device the datagram is from (device datagrams) or for (relay datagrams).
    pub device_id: u64,
    /// The sender's counter (see the module docs).
    pub counter: u64,
    /// What it says.
    pub body: Body,
}

fn fixed<const N: usize>(t: u8, v: &[u8]) -> Result<[u8; N], Error> {
    <[u8; N]>::try_from(v).map_err(|_| Error::InvalidField(t))
}

fn nonzero_port(t: u8, v: &[u8]) -> Result<u16, Error> {
    match u16::from_be_bytes(fixed(t, v)?) {
        0 => Err(Error::InvalidField(t)),
        p => Ok(p),
    }
}

fn sockaddr(t: u8, v: &[u8]) -> Result<SocketAddr, Error> {
    let ip = match v.len() {
        6 => IpAddr::V4(Ipv4Addr::from(fixed::<4>(t, &v[..4])?)),
        18 => IpAddr::V6(Ipv6Addr::from(fixed::<16>(t, &v[..16])?)),
        _ => return Err(Error::InvalidField(t)),
    };
    let port = nonzero_port(t, &v[v.len() - 2..])?;
    Ok(SocketAddr::new(ip, port))
}

fn sockaddr_bytes(a: &SocketAddr) -> Vec<u8> {
    let mut v = match a.ip() {
        IpAddr::V4(ip) => ip.octets().to_vec(),
        IpAddr::V6(ip) => ip.octets().to_vec(),
    };
    v.extend_from_slice(&a.port().to_be_bytes());
    v
}

/// The fields a body may carry, as read from the TLVs (last occurrence wins).
#[derive(Default)]
struct Fields {
    echo: Option<u64>,
    period_ms: Option<u32>,
    observed: Option<SocketAddr>,
    counter_floor: Option<u64>,
    back_port: Option<u16>,
    keepalive_ms: Option<u32>,
    kind: Option<NotifyKind>,
    lan: Option<SocketAddr>,
    router_wan: Option<IpAddr>,
    session: Option<u64>,
    nonce: Option<[u8; NONCE_LEN]>,
    peer: Option<u64>,
    same: Option<Same>,
}

impl Fields {
    fn read(body: &[u8]) -> Result<Fields, Error> {
        let mut f = Fields::default();
        for tlv in tlvs(body) {
            let (t, v) = tlv?;
            let u64v = || fixed::<8>(t, v).map(u64::from_be_bytes);
            let u32v = || fixed::<4>(t, v).map(u32::from_be_bytes);
            match t {
                tag::ECHO => f.echo = Some(u64v()?),
                tag::PERIOD_MS => f.period_ms = Some(u32v()?),
                tag::OBSERVED => f.observed = Some(sockaddr(t, v)?),
                tag::COUNTER_FLOOR => f.counter_floor = Some(u64v()?),
                tag::BACK_PORT => f.back_port = Some(nonzero_port(t, v)?),
                tag::KEEPALIVE_MS => f.keepalive_ms = Some(u32v()?),
                tag::KIND => {
                    f.kind = Some(match fixed::<1>(t, v)?[0] {
                        1 => NotifyKind::KeepAlive,
                        2 => NotifyKind::Refresh,
                        _ => return Err(Error::InvalidField(t)),
                    })
                }
                tag::LAN => f.lan = Some(sockaddr(t, v)?),
                tag::ROUTER_WAN => {
                    f.router_wan = Some(match v.len() {
                        4 => IpAddr::V4(Ipv4Addr::from(fixed::<4>(t, v)?)),
                        16 => IpAddr::V6(Ipv6Addr::from(fixed::<16>(t, v)?)),
                        _ => return Err(Error::InvalidField(t)),
                    })
                }
                tag::SESSION => f.session = Some(u64v()?),
                tag::NONCE => f.nonce = Some(fixed(t, v)?),
                tag::PEER => f.peer = Some(u64v()?),
                tag::SAME => {
                    f.same = Some(match fixed::<1>(t, v)?[0] {
                        0 => Same::No,
                        1 => Same::Yes,
                        2 => Same::Unknown,
                        _ => return Err(Error::InvalidField(t)),
                    })
                }
                // Unknown tags (a later revision of version 1) and PAD: skip.
                _ => {}
            }
        }
        Ok(f)
    }
}

fn need<T>(v: Option<T>, t: u8) -> Result<T, Error> {
    v.ok_or(Error::MissingField(t))
}

fn push_tlv(out: &mut Vec<u8>, t: u8, v: &[u8]) {
    out.push(t);
    // Values are at most 18 bytes, or padding below MIN_DEVICE_DATAGRAM: fits a u16.
    out.extend_from_slice(&(v.len() as u16).to_be_bytes());
    out.extend_from_slice(v);
}

impl Repr {
    /// Parses a datagram and checks its MAC with `secret` (look it up by
    /// [`Packet::device_id`] first). Never panics; see [`Error`] for what is refused.
    pub fn parse(data: &[u8], secret: &Secret) -> Result<Repr, Error> {
        let p = Packet::new_checked(data)?;
        let ty = MessageType::from_code(p.msg_type()).ok_or(Error::UnknownType(p.msg_type()))?;
        p.verify(secret)?;
        let f = Fields::read(p.body())?;
        let body = match ty {
            MessageType::PeriodQuery => Body::PeriodQuery,
            MessageType::PeriodAnswer => Body::PeriodAnswer(PeriodAnswer {
                echo: need(f.echo, tag::ECHO)?,
                period_ms: need(f.period_ms, tag::PERIOD_MS)?,
                observed: need(f.observed, tag::OBSERVED)?,
                counter_floor: need(f.counter_floor, tag::COUNTER_FLOOR)?,
                back_port: need(f.back_port, tag::BACK_PORT)?,
                keepalive_ms: need(f.keepalive_ms, tag::KEEPALIVE_MS)?,
            }),
            MessageType::Notify => {
                let kind = need(f.kind, tag::KIND)?;
                if kind == NotifyKind::Refresh && f.lan.is_none() {
                    return Err(Error::MissingField(tag::LAN));
                }
                Body::Notify(Notify {
                    kind,
                    lan: f.lan,
                    router_wan: f.router_wan,
                })
            }
            MessageType::ConnectRequest => Body::ConnectRequest(ConnectRequest {
                session: need(f.session, tag::SESSION)?,
                nonce: need(f.nonce, tag::NONCE)?,
                back_port: need(f.back_port, tag::BACK_PORT)?,
            }),
            MessageType::SameNetworkQuery => Body::SameNetworkQuery {
                peer: need(f.peer, tag::PEER)?,
            },
            MessageType::SameNetworkAnswer => Body::SameNetworkAnswer(SameNetworkAnswer {
                echo: need(f.echo, tag::ECHO)?,
                peer: need(f.peer, tag::PEER)?,
                same: need(f.same, tag::SAME)?,
            }),
        };
        Ok(Repr {
            device_id: p.device_id(),
            counter: p.counter(),
            body,
        })
    }

    fn body_bytes(&self) -> Vec<u8> {
        let mut b = Vec::with_capacity(MIN_DEVICE_DATAGRAM);
        match &self.body {
            Body::PeriodQuery => {}
            Body::PeriodAnswer(a) => {
                push_tlv(&mut b, tag::ECHO, &a.echo.to_be_bytes());
                push_tlv(&mut b, tag::PERIOD_MS, &a.period_ms.to_be_bytes());
                push_tlv(&mut b, tag::OBSERVED, &sockaddr_bytes(&a.observed));
                push_tlv(&mut b, tag::COUNTER_FLOOR, &a.counter_floor.to_be_bytes());
                push_tlv(&mut b, tag::BACK_PORT, &a.back_port.to_be_bytes());
                push_tlv(&mut b, tag::KEEPALIVE_MS, &a.keepalive_ms.to_be_bytes());
            }
            Body::Notify(n) => {
                push_tlv(&mut b, tag::KIND, &[n.kind.code()]);
                if let Some(lan) = &n.lan {
                    push_tlv(&mut b, tag::LAN, &sockaddr_bytes(lan));
                }
                match n.router_wan {
                    Some(IpAddr::V4(ip)) => push_tlv(&mut b, tag::ROUTER_WAN, &ip.octets()),
                    Some(IpAddr::V6(ip)) => push_tlv(&mut b, tag::ROUTER_WAN, &ip.octets()),
                    None => {}
                }
            }
            Body::ConnectRequest(c) => {
                push_tlv(&mut b, tag::SESSION, &c.session.to_be_bytes());
                push_tlv(&mut b, tag::NONCE, &c.nonce);
                push_tlv(&mut b, tag::BACK_PORT, &c.back_port.to_be_bytes());
            }
            Body::SameNetworkQuery { peer } => {
                push_tlv(&mut b, tag::PEER, &peer.to_be_bytes());
            }
            Body::SameNetworkAnswer(a) => {
                push_tlv(&mut b, tag::ECHO, &a.echo.to_be_bytes());
                push_tlv(&mut b, tag::PEER, &a.peer.to_be_bytes());
                push_tlv(&mut b, tag::SAME, &[a.same.code()]);
            }
        }
        if self.body.msg_type().from_device() {
            // Anti-amplification: a device datagram is at least MIN_DEVICE_DATAGRAM long.
            let have = HEADER_LEN + b.len() + MAC_LEN;
            if have < MIN_DEVICE_DATAGRAM {
                let pad = MIN_DEVICE_DATAGRAM.saturating_sub(have + 3);
                push_tlv(&mut b, tag::PAD, &vec![0u8; pad]);
            }
        }
        b
    }

    /// The number of bytes [`Repr::emit`] writes.
    pub fn buffer_len(&self) -> usize {
        HEADER_LEN + self.body_bytes().len() + MAC_LEN
    }

    /// Writes the datagram, MAC'd with the device's secret.
    pub fn emit(&self, secret: &Secret) -> Vec<u8> {
        let body = self.body_bytes();
        let mut out = Vec::with_capacity(HEADER_LEN + body.len() + MAC_LEN);
        out.extend_from_slice(&MAGIC);
        out.push(VERSION);
        out.push(self.body.msg_type().code());
        // At most a few fixed fields or padding to MIN_DEVICE_DATAGRAM: far below u16::MAX.
        out.extend_from_slice(&(body.len() as u16).to_be_bytes());
        out.extend_from_slice(&self.device_id.to_be_bytes());
        out.extend_from_slice(&self.counter.to_be_bytes());
        out.extend_from_slice(&body);
        let mut m = secret.mac();
        m.update(&out);
        out.extend_from_slice(&m.finalize().into_bytes());
        out
    }
}

/// HTTP request headers the relay adds when it forwards a viewer's request over a
/// back-connection, so the camera's pages build links that work through the relay.
pub mod headers {
    /// The path prefix of the device's site on the relay, with a trailing slash:
    /// `/d/<device id>/`. The relay strips it from the request path before forwarding.
    pub const RELAY_BASE: &str = "x-relay-base";
    /// The viewer's address as the relay saw it (RFC 7239's older de-facto form).
    pub const FORWARDED_FOR: &str = "x-forwarded-for";
    /// `https` or `http`: how the viewer reached the relay.
    pub const FORWARDED_PROTO: &str = "x-forwarded-proto";
    /// The Host the viewer used for the relay (the relay's public name and port).
    pub const FORWARDED_HOST: &str = "x-forwarded-host";
}

mod back;
#[cfg(test)]
mod tests;

pub use back::{Hello, HelloStatus};
