//! The camera nodes' LAN protocol: small binary datagrams on UDP multicast (default group
//! 239.255.77.77, port 17777) and unicast among the camnodes of one LAN.
//!
//! The server patent (specs/server-patent.md) leaves the LAN messages to us: the server's own-port
//! notice (claim 6), the representative's inquiry and the answers (claims 3, 4, embodiment 2),
//! bye-bye (claim 13), presence inquiry (claim 15), identification / candidacy (claims 9, 10) and
//! the rotation notice. Issue 5 defined the first two messages ([`MessageType::PortNotice`] and
//! its acknowledgement); issue 6 added types 3-10 for collection by inquiry (embodiment 2) and the
//! representative's rotation (embodiment 4, Fig. 11-14) without changing the header. The format
//! is documented for humans in `docs/lan-protocol.md`.
//!
//! # Layout (all integers big-endian)
//! ```text
//!  0      4      5      6       8              16             24             32
//!  +------+------+------+-------+--------------+--------------+--------------+---------
//!  |magic |ver=1 | type | body  |   node id    |   sequence   |    term      | body:
//!  |"HNCN"|      |      | length|   (u64)      |   (u64)      |   (u64)      | TLVs
//!  +------+------+------+-------+--------------+--------------+--------------+---------
//! ```
//! The body is a list of TLVs: tag (u8), length (u16), value. A receiver skips tags it does not
//! know, so a later revision of version 1 can add fields; a field a message type requires is
//! checked by [`Repr::parse`]. A new version number is for changes old receivers must not read.
//!
//! Two levels, as smoltcp does it: [`Packet`] is a checked view over a byte buffer
//! (`new_checked` verifies magic and lengths so no getter can panic), [`Repr`] is the parsed
//! message with [`Repr::parse`], [`Repr::emit`] and [`Repr::buffer_len`]. Parsing never panics;
//! an unknown version or type is reported as its own error so the receiver can count and drop it.

use std::net::Ipv4Addr;

/// The default multicast group of the camnodes (administratively scoped, RFC 2365).
pub const DEFAULT_GROUP: Ipv4Addr = Ipv4Addr::new(239, 255, 77, 77);
/// The default UDP port.
pub const DEFAULT_PORT: u16 = 17777;
/// The four bytes every message starts with ("HomeNet Camera Node").
pub const MAGIC: [u8; 4] = *b"HNCN";
/// The protocol version this module reads and writes.
pub const VERSION: u8 = 1;
/// Size of the fixed header.
pub const HEADER_LEN: usize = 32;
/// Largest message we send or accept: well under any LAN MTU, so never fragmented.
pub const MAX_MESSAGE: usize = 1200;
/// Longest name carried, in bytes of UTF-8 (names are at most 64 characters, so 256 bytes).
pub const MAX_NAME_BYTES: usize = 256;

/// Byte ranges of the header (smoltcp's `field` module).
mod field {
    use std::ops::Range;
    pub const MAGIC: Range<usize> = 0..4;
    pub const VERSION: usize = 4;
    pub const TYPE: usize = 5;
    pub const BODY_LEN: Range<usize> = 6..8;
    pub const NODE_ID: Range<usize> = 8..16;
    pub const SEQUENCE: Range<usize> = 16..24;
    pub const TERM: Range<usize> = 24..32;
    pub const BODY: usize = 32;
}

/// TLV tags of the body.
pub mod tag {
    /// UTF-8 display name, at most [`super::MAX_NAME_BYTES`].
    pub const NAME: u8 = 1;
    /// IPv4 LAN address, 4 bytes.
    pub const LAN_ADDR: u8 = 2;
    /// Internal (LAN) port the node serves on, u16.
    pub const INTERNAL_PORT: u8 = 3;
    /// External port of its mapping on the router, u16.
    pub const EXTERNAL_PORT: u8 = 4;
    /// The sequence number being acknowledged, u64.
    pub const ACKED_SEQUENCE: u8 = 5;
    /// The router's external IPv4 address as the sender knows it, 4 bytes.
    pub const EXTERNAL_ADDR: u8 = 6;
    /// A node id (another node than the sender), u64.
    pub const NODE_ID: u8 = 7;
    /// An election term (another node's), u64.
    pub const TERM: u8 = 8;
}

/// Message types; see `docs/lan-protocol.md`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MessageType {
    /// 1: a node that did not get the representative port tells its port (claim 6).
    PortNotice,
    /// 2: the representative acknowledges a [`MessageType::PortNotice`] (unicast).
    PortNoticeAck,
    /// 3: the representative's periodic inquiry for the nodes' ports (claims 3, 4, embodiment 2,
    /// Fig. 9), multicast; also its heartbeat (claim 14, Fig. 12).
    Inquiry,
    /// 4: a node's answer to an inquiry, with its ports (embodiment 2), unicast.
    InquiryAnswer,
    /// 5: the representative leaves (claim 13, Fig. 11), multicast and unicast.
    ByeBye,
    /// 6: a node asks the representative whether it is present (claim 15, Fig. 13), unicast.
    PresenceInquiry,
    /// 7: the representative's answer to a presence inquiry, unicast.
    PresenceAnswer,
    /// 8: identification, "I will be the representative" (claims 9-12, Fig. 14), multicast.
    Candidacy,
    /// 9: the winner holds the representative port now (Fig. 14), multicast.
    RotationNotice,
    /// 10: a node heard two representatives: it tells each about the other (unicast), so the
    /// one that loses the (term, node id) comparison stands down at once even when the two do
    /// not hear each other.
    Conflict,
}

impl MessageType {
    /// The number on the wire.
    pub const fn code(self) -> u8 {
        match self {
            MessageType::PortNotice => 1,
            MessageType::PortNoticeAck => 2,
            MessageType::Inquiry => 3,
            MessageType::InquiryAnswer => 4,
            MessageType::ByeBye => 5,
            MessageType::PresenceInquiry => 6,
            MessageType::PresenceAnswer => 7,
            MessageType::Candidacy => 8,
            MessageType::RotationNotice => 9,
            MessageType::Conflict => 10,
        }
    }

    /// The type for a number, if this version knows it.
    pub const fn from_code(code: u8) -> Option<MessageType> {
        match code {
            1 => Some(MessageType::PortNotice),
            2 => Some(MessageType::PortNoticeAck),
            3 => Some(MessageType::Inquiry),
            4 => Some(MessageType::InquiryAnswer),
            5 => Some(MessageType::ByeBye),
            6 => Some(MessageType::PresenceInquiry),
            7 => Some(MessageType::PresenceAnswer),
            8 => Some(MessageType::Candidacy),
            9 => Some(MessageType::RotationNotice),
            10 => Some(MessageType::Conflict),
            _ => None,
        }
    }
}

/// Why a datagram was dropped. Each kind is counted separately by the receiver.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// Shorter than the header, or shorter than the header's body length says.
    #[error("truncated message")]
    Truncated,
    /// Longer than [`MAX_MESSAGE`].
    #[error("message too large")]
    TooLarge,
    /// Not our magic: some other protocol on this group/port.
    #[error("not a camnode message")]
    BadMagic,
    /// A version this node does not speak.
    #[error("unknown version {0}")]
    UnknownVersion(u8),
    /// A message type this version does not know (yet).
    #[error("unknown message type {0}")]
    UnknownType(u8),
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

/// A checked view of a message in a buffer.
#[derive(Debug, Clone)]
pub struct Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Packet<T> {
    /// Wraps a buffer after checking magic, version, size and the body length, so every getter
    /// below is in bounds. The message type is not checked here (see [`Repr::parse`]).
    pub fn new_checked(buffer: T) -> Result<Packet<T>, Error> {
        let b = buffer.as_ref();
        if b.len() > MAX_MESSAGE {
            return Err(Error::TooLarge);
        }
        if b.len() < HEADER_LEN {
            // A short datagram that is not even ours is still "not ours".
            if b.len() >= 4 && b[field::MAGIC] != MAGIC {
                return Err(Error::BadMagic);
            }
            return Err(Error::Truncated);
        }
        if b[field::MAGIC] != MAGIC {
            return Err(Error::BadMagic);
        }
        if b[field::VERSION] != VERSION {
            return Err(Error::UnknownVersion(b[field::VERSION]));
        }
        let p = Packet { buffer };
        if p.buffer.as_ref().len() < field::BODY + usize::from(p.body_len()) {
            return Err(Error::Truncated);
        }
        Ok(p)
    }

    fn u64_at(&self, r: std::ops::Range<usize>) -> u64 {
        let mut a = [0u8; 8];
        a.copy_from_slice(&self.buffer.as_ref()[r]);
        u64::from_be_bytes(a)
    }

    /// The version byte.
    pub fn version(&self) -> u8 {
        self.buffer.as_ref()[field::VERSION]
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
    /// The sender's node id.
    pub fn node_id(&self) -> u64 {
        self.u64_at(field::NODE_ID)
    }
    /// The sender's sequence number.
    pub fn sequence(&self) -> u64 {
        self.u64_at(field::SEQUENCE)
    }
    /// The election term the sender believes current.
    pub fn term(&self) -> u64 {
        self.u64_at(field::TERM)
    }
    /// The body (TLVs); bytes after it are ignored.
    pub fn body(&self) -> &[u8] {
        let end = field::BODY + usize::from(self.body_len());
        &self.buffer.as_ref()[field::BODY..end]
    }
}

/// Iterates over the TLVs of a body; yields `Err(BadTlv)` once and stops on a TLV that runs
/// past the end.
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

/// The header fields every message carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// The sender's persistent node id.
    pub node_id: u64,
    /// Increases with every message the sender sends (also across its restarts: senders start
    /// from their wall clock in milliseconds), so receivers drop duplicates and reordering.
    pub sequence: u64,
    /// The election term the sender believes current (the representative's term; 0 = none
    /// known yet).
    pub term: u64,
}

/// A node's own-port notice (claim 6): who it is, where it serves, which port it got.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortNotice {
    /// Display name.
    pub name: String,
    /// LAN address.
    pub lan_addr: Ipv4Addr,
    /// The port it serves on its LAN address (internal port of its mapping).
    pub internal_port: u16,
    /// Its external port on the router; None if it has no mapping (no IGD, double NAT).
    pub external_port: Option<u16>,
}

/// The representative's acknowledgement of a notice.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortNoticeAck {
    /// The sequence number of the notice acknowledged.
    pub acked_sequence: u64,
    /// The router's external address as the representative knows it.
    pub external_addr: Option<Ipv4Addr>,
}

/// The representative's periodic inquiry (embodiment 2, claim 14). The header's term is the
/// representative's term.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Inquiry {
    /// The representative port it holds (8080).
    pub external_port: u16,
    /// The router's external address as the representative knows it.
    pub external_addr: Option<Ipv4Addr>,
}

/// A node's answer to an [`Inquiry`]: the same fields as its own-port notice (claim 6), plus
/// the inquiry's sequence number.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InquiryAnswer {
    /// The sequence number of the inquiry answered.
    pub acked_sequence: u64,
    /// The node's name, address and ports.
    pub node: PortNotice,
}

/// The representative's answer to a presence inquiry (claim 15).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PresenceAnswer {
    /// The sequence number of the presence inquiry answered.
    pub acked_sequence: u64,
}

/// Identification: "I will be the representative" (claims 9-12). The header's term is the term
/// the candidate saw last; it runs for the next one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidacy {
    /// The candidate's own external port (the rank under the port-order rule, claim 11).
    pub external_port: Option<u16>,
}

/// The winner announces it holds the representative port (Fig. 14). The header's term is the
/// new term.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RotationNotice {
    /// The representative port it holds now.
    pub external_port: u16,
    /// The router's external address.
    pub external_addr: Option<Ipv4Addr>,
}

/// "There is another representative": sent by a node that heard two, to each of them, about
/// the other. The receiver compares (term, node id) with its own: a higher term wins, then the
/// lower node id; the loser stands down, the winner tells the loser directly and makes sure the
/// router maps the representative port to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Conflict {
    /// The other representative's node id.
    pub node_id: u64,
    /// The other representative's term.
    pub term: u64,
    /// The other representative's LAN address (the protocol port is the group's).
    pub lan_addr: Ipv4Addr,
}

/// The typed body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Body {
    /// [`MessageType::PortNotice`].
    PortNotice(PortNotice),
    /// [`MessageType::PortNoticeAck`].
    PortNoticeAck(PortNoticeAck),
    /// [`MessageType::Inquiry`].
    Inquiry(Inquiry),
    /// [`MessageType::InquiryAnswer`].
    InquiryAnswer(InquiryAnswer),
    /// [`MessageType::ByeBye`]: no body.
    ByeBye,
    /// [`MessageType::PresenceInquiry`]: no body.
    PresenceInquiry,
    /// [`MessageType::PresenceAnswer`].
    PresenceAnswer(PresenceAnswer),
    /// [`MessageType::Candidacy`].
    Candidacy(Candidacy),
    /// [`MessageType::RotationNotice`].
    RotationNotice(RotationNotice),
    /// [`MessageType::Conflict`].
    Conflict(Conflict),
}

impl Body {
    /// The message type of this body.
    pub fn msg_type(&self) -> MessageType {
        match self {
            Body::PortNotice(_) => MessageType::PortNotice,
            Body::PortNoticeAck(_) => MessageType::PortNoticeAck,
            Body::Inquiry(_) => MessageType::Inquiry,
            Body::InquiryAnswer(_) => MessageType::InquiryAnswer,
            Body::ByeBye => MessageType::ByeBye,
            Body::PresenceInquiry => MessageType::PresenceInquiry,
            Body::PresenceAnswer(_) => MessageType::PresenceAnswer,
            Body::Candidacy(_) => MessageType::Candidacy,
            Body::RotationNotice(_) => MessageType::RotationNotice,
            Body::Conflict(_) => MessageType::Conflict,
        }
    }
}

/// A parsed message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Repr {
    /// Sender, sequence and term.
    pub header: Header,
    /// What it says.
    pub body: Body,
}

fn ipv4(t: u8, v: &[u8]) -> Result<Ipv4Addr, Error> {
    <[u8; 4]>::try_from(v)
        .map(Ipv4Addr::from)
        .map_err(|_| Error::InvalidField(t))
}

fn u64_field(t: u8, v: &[u8]) -> Result<u64, Error> {
    <[u8; 8]>::try_from(v)
        .map(u64::from_be_bytes)
        .map_err(|_| Error::InvalidField(t))
}

fn port(t: u8, v: &[u8]) -> Result<u16, Error> {
    <[u8; 2]>::try_from(v)
        .map(u16::from_be_bytes)
        .map_err(|_| Error::InvalidField(t))
        .and_then(|p| {
            if p == 0 {
                Err(Error::InvalidField(t))
            } else {
                Ok(p)
            }
        })
}

/// The fields a body may carry, as read from the TLVs (last occurrence wins).
#[derive(Default)]
struct Fields {
    name: Option<String>,
    lan_addr: Option<Ipv4Addr>,
    internal_port: Option<u16>,
    external_port: Option<u16>,
    acked_sequence: Option<u64>,
    external_addr: Option<Ipv4Addr>,
    node_id: Option<u64>,
    term: Option<u64>,
}

impl Fields {
    fn read(body: &[u8]) -> Result<Fields, Error> {
        let mut f = Fields::default();
        for tlv in tlvs(body) {
            let (t, v) = tlv?;
            match t {
                tag::NAME => {
                    if v.len() > MAX_NAME_BYTES {
                        return Err(Error::InvalidField(t));
                    }
                    let s = std::str::from_utf8(v).map_err(|_| Error::InvalidField(t))?;
                    if s.chars().any(char::is_control) {
                        return Err(Error::InvalidField(t));
                    }
                    f.name = Some(s.to_string());
                }
                tag::LAN_ADDR => f.lan_addr = Some(ipv4(t, v)?),
                tag::INTERNAL_PORT => f.internal_port = Some(port(t, v)?),
                tag::EXTERNAL_PORT => f.external_port = Some(port(t, v)?),
                tag::ACKED_SEQUENCE => f.acked_sequence = Some(u64_field(t, v)?),
                tag::NODE_ID => f.node_id = Some(u64_field(t, v)?),
                tag::TERM => f.term = Some(u64_field(t, v)?),
                tag::EXTERNAL_ADDR => f.external_addr = Some(ipv4(t, v)?),
                // Unknown tags: a later revision of version 1 added them; skip.
                _ => {}
            }
        }
        Ok(f)
    }
}

fn push_tlv(out: &mut Vec<u8>, t: u8, v: &[u8]) {
    out.push(t);
    // Values are bounded (names by MAX_NAME_BYTES, the rest fixed size), so this fits a u16.
    out.extend_from_slice(&(v.len().min(usize::from(u16::MAX)) as u16).to_be_bytes());
    out.extend_from_slice(v);
}

/// Cuts a name to at most [`MAX_NAME_BYTES`] at a character boundary.
fn clip_name(name: &str) -> &str {
    if name.len() <= MAX_NAME_BYTES {
        return name;
    }
    let mut end = MAX_NAME_BYTES;
    while !name.is_char_boundary(end) {
        end -= 1;
    }
    &name[..end]
}

impl Repr {
    /// Parses a datagram. Never panics; see [`Error`] for what is refused.
    pub fn parse(data: &[u8]) -> Result<Repr, Error> {
        let p = Packet::new_checked(data)?;
        let ty = MessageType::from_code(p.msg_type()).ok_or(Error::UnknownType(p.msg_type()))?;
        let header = Header {
            node_id: p.node_id(),
            sequence: p.sequence(),
            term: p.term(),
        };
        let f = Fields::read(p.body())?;
        let need = |v: Option<u64>, t: u8| v.ok_or(Error::MissingField(t));
        let node = |f: &Fields| -> Result<PortNotice, Error> {
            Ok(PortNotice {
                name: f.name.clone().ok_or(Error::MissingField(tag::NAME))?,
                lan_addr: f.lan_addr.ok_or(Error::MissingField(tag::LAN_ADDR))?,
                internal_port: f
                    .internal_port
                    .ok_or(Error::MissingField(tag::INTERNAL_PORT))?,
                external_port: f.external_port,
            })
        };
        let body = match ty {
            MessageType::PortNotice => Body::PortNotice(node(&f)?),
            MessageType::PortNoticeAck => Body::PortNoticeAck(PortNoticeAck {
                acked_sequence: need(f.acked_sequence, tag::ACKED_SEQUENCE)?,
                external_addr: f.external_addr,
            }),
            MessageType::Inquiry => Body::Inquiry(Inquiry {
                external_port: f
                    .external_port
                    .ok_or(Error::MissingField(tag::EXTERNAL_PORT))?,
                external_addr: f.external_addr,
            }),
            MessageType::InquiryAnswer => Body::InquiryAnswer(InquiryAnswer {
                acked_sequence: need(f.acked_sequence, tag::ACKED_SEQUENCE)?,
                node: node(&f)?,
            }),
            MessageType::ByeBye => Body::ByeBye,
            MessageType::PresenceInquiry => Body::PresenceInquiry,
            MessageType::PresenceAnswer => Body::PresenceAnswer(PresenceAnswer {
                acked_sequence: need(f.acked_sequence, tag::ACKED_SEQUENCE)?,
            }),
            MessageType::Candidacy => Body::Candidacy(Candidacy {
                external_port: f.external_port,
            }),
            MessageType::RotationNotice => Body::RotationNotice(RotationNotice {
                external_port: f
                    .external_port
                    .ok_or(Error::MissingField(tag::EXTERNAL_PORT))?,
                external_addr: f.external_addr,
            }),
            MessageType::Conflict => Body::Conflict(Conflict {
                node_id: need(f.node_id, tag::NODE_ID)?,
                term: need(f.term, tag::TERM)?,
                lan_addr: f.lan_addr.ok_or(Error::MissingField(tag::LAN_ADDR))?,
            }),
        };
        Ok(Repr { header, body })
    }

    fn body_bytes(&self) -> Vec<u8> {
        let mut b = Vec::with_capacity(64);
        let notice = |b: &mut Vec<u8>, n: &PortNotice| {
            push_tlv(b, tag::NAME, clip_name(&n.name).as_bytes());
            push_tlv(b, tag::LAN_ADDR, &n.lan_addr.octets());
            push_tlv(b, tag::INTERNAL_PORT, &n.internal_port.to_be_bytes());
            if let Some(e) = n.external_port {
                push_tlv(b, tag::EXTERNAL_PORT, &e.to_be_bytes());
            }
        };
        let ext_addr = |b: &mut Vec<u8>, a: Option<Ipv4Addr>| {
            if let Some(e) = a {
                push_tlv(b, tag::EXTERNAL_ADDR, &e.octets());
            }
        };
        match &self.body {
            Body::PortNotice(n) => notice(&mut b, n),
            Body::PortNoticeAck(a) => {
                push_tlv(&mut b, tag::ACKED_SEQUENCE, &a.acked_sequence.to_be_bytes());
                ext_addr(&mut b, a.external_addr);
            }
            Body::Inquiry(i) => {
                push_tlv(&mut b, tag::EXTERNAL_PORT, &i.external_port.to_be_bytes());
                ext_addr(&mut b, i.external_addr);
            }
            Body::InquiryAnswer(a) => {
                push_tlv(&mut b, tag::ACKED_SEQUENCE, &a.acked_sequence.to_be_bytes());
                notice(&mut b, &a.node);
            }
            Body::ByeBye | Body::PresenceInquiry => {}
            Body::PresenceAnswer(a) => {
                push_tlv(&mut b, tag::ACKED_SEQUENCE, &a.acked_sequence.to_be_bytes());
            }
            Body::Candidacy(c) => {
                if let Some(p) = c.external_port {
                    push_tlv(&mut b, tag::EXTERNAL_PORT, &p.to_be_bytes());
                }
            }
            Body::RotationNotice(r) => {
                push_tlv(&mut b, tag::EXTERNAL_PORT, &r.external_port.to_be_bytes());
                ext_addr(&mut b, r.external_addr);
            }
            Body::Conflict(c) => {
                push_tlv(&mut b, tag::NODE_ID, &c.node_id.to_be_bytes());
                push_tlv(&mut b, tag::TERM, &c.term.to_be_bytes());
                push_tlv(&mut b, tag::LAN_ADDR, &c.lan_addr.octets());
            }
        }
        b
    }

    /// The number of bytes [`Repr::emit`] writes.
    pub fn buffer_len(&self) -> usize {
        HEADER_LEN + self.body_bytes().len()
    }

    /// Writes the message.
    pub fn emit(&self) -> Vec<u8> {
        let body = self.body_bytes();
        let mut out = Vec::with_capacity(HEADER_LEN + body.len());
        out.extend_from_slice(&MAGIC);
        out.push(VERSION);
        out.push(self.body.msg_type().code());
        // The body is at most a name plus fixed fields: far below u16::MAX.
        out.extend_from_slice(&(body.len() as u16).to_be_bytes());
        out.extend_from_slice(&self.header.node_id.to_be_bytes());
        out.extend_from_slice(&self.header.sequence.to_be_bytes());
        out.extend_from_slice(&self.header.term.to_be_bytes());
        out.extend_from_slice(&body);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn notice() -> Repr {
        Repr {
            header: Header {
                node_id: 0x0123_4567_89ab_cdef,
                sequence: 7,
                term: 3,
            },
            body: Body::PortNotice(PortNotice {
                name: "camera 2".into(),
                lan_addr: Ipv4Addr::new(192, 168, 1, 101),
                internal_port: 8081,
                external_port: Some(8081),
            }),
        }
    }

    /// The notice above, byte by byte (the fixture `docs/lan-protocol.md` shows).
    const NOTICE_BYTES: &[u8] = &[
        b'H', b'N', b'C', b'N', 1, 1, 0, 28, // magic, version, type, body length
        0x01, 0x23, 0x45, 0x67, 0x89, 0xab, 0xcd, 0xef, // node id
        0, 0, 0, 0, 0, 0, 0, 7, // sequence
        0, 0, 0, 0, 0, 0, 0, 3, // term
        1, 0, 8, b'c', b'a', b'm', b'e', b'r', b'a', b' ', b'2', // NAME
        2, 0, 4, 192, 168, 1, 101, // LAN_ADDR
        3, 0, 2, 0x1f, 0x91, // INTERNAL_PORT 8081
        4, 0, 2, 0x1f, 0x91, // EXTERNAL_PORT 8081
    ];

    #[test]
    fn notice_round_trips_with_fixture() {
        let r = notice();
        assert_eq!(r.emit(), NOTICE_BYTES);
        assert_eq!(r.buffer_len(), NOTICE_BYTES.len());
        assert_eq!(Repr::parse(NOTICE_BYTES), Ok(r));
        let p = Packet::new_checked(NOTICE_BYTES).unwrap();
        assert_eq!(
            (
                p.version(),
                p.msg_type(),
                p.node_id(),
                p.sequence(),
                p.term()
            ),
            (1, 1, 0x0123_4567_89ab_cdef, 7, 3)
        );
    }

    #[test]
    fn ack_round_trips() {
        for ext in [None, Some(Ipv4Addr::new(60, 120, 76, 64))] {
            let r = Repr {
                header: Header {
                    node_id: 1,
                    sequence: u64::MAX,
                    term: 0,
                },
                body: Body::PortNoticeAck(PortNoticeAck {
                    acked_sequence: 42,
                    external_addr: ext,
                }),
            };
            assert_eq!(Repr::parse(&r.emit()), Ok(r));
        }
    }

    /// Every rotation message (issue 6) round-trips; the inquiry is also checked byte by byte.
    #[test]
    fn rotation_messages_round_trip() {
        let node = PortNotice {
            name: "camera 3".into(),
            lan_addr: Ipv4Addr::new(192, 168, 1, 102),
            internal_port: 8082,
            external_port: Some(8082),
        };
        let ext = Some(Ipv4Addr::new(60, 120, 76, 64));
        let bodies = [
            Body::Inquiry(Inquiry {
                external_port: 8080,
                external_addr: ext,
            }),
            Body::Inquiry(Inquiry {
                external_port: 8080,
                external_addr: None,
            }),
            Body::InquiryAnswer(InquiryAnswer {
                acked_sequence: 99,
                node,
            }),
            Body::ByeBye,
            Body::PresenceInquiry,
            Body::PresenceAnswer(PresenceAnswer { acked_sequence: 5 }),
            Body::Candidacy(Candidacy {
                external_port: Some(8081),
            }),
            Body::Candidacy(Candidacy {
                external_port: None,
            }),
            Body::RotationNotice(RotationNotice {
                external_port: 8080,
                external_addr: ext,
            }),
            Body::Conflict(Conflict {
                node_id: 0x0123_4567_89ab_cdef,
                term: 9,
                lan_addr: Ipv4Addr::new(192, 168, 1, 103),
            }),
        ];
        for body in bodies {
            let r = Repr {
                header: Header {
                    node_id: 42,
                    sequence: 1000,
                    term: 7,
                },
                body,
            };
            assert_eq!(Repr::parse(&r.emit()), Ok(r.clone()), "{r:?}");
            assert_eq!(r.emit().len(), r.buffer_len());
        }
        // The fixture in docs/lan-protocol.md: an inquiry from node 1, sequence 2, term 3.
        let inquiry = Repr {
            header: Header {
                node_id: 1,
                sequence: 2,
                term: 3,
            },
            body: Body::Inquiry(Inquiry {
                external_port: 8080,
                external_addr: Some(Ipv4Addr::new(60, 120, 76, 64)),
            }),
        };
        let bytes: &[u8] = &[
            b'H', b'N', b'C', b'N', 1, 3, 0, 12, // magic, version, type 3, body length
            0, 0, 0, 0, 0, 0, 0, 1, // node id
            0, 0, 0, 0, 0, 0, 0, 2, // sequence
            0, 0, 0, 0, 0, 0, 0, 3, // term
            4, 0, 2, 0x1f, 0x90, // EXTERNAL_PORT 8080
            6, 0, 4, 60, 120, 76, 64, // EXTERNAL_ADDR
        ];
        assert_eq!(inquiry.emit(), bytes);
        // Required fields are checked: an inquiry without its port, an answer without a name.
        let mut bare = bytes[..HEADER_LEN].to_vec();
        bare[6..8].copy_from_slice(&[0, 0]);
        assert_eq!(
            Repr::parse(&bare),
            Err(Error::MissingField(tag::EXTERNAL_PORT))
        );
        bare[5] = 4;
        assert_eq!(
            Repr::parse(&bare),
            Err(Error::MissingField(tag::ACKED_SEQUENCE))
        );
        bare[5] = 5;
        assert!(matches!(
            Repr::parse(&bare),
            Ok(Repr {
                body: Body::ByeBye,
                ..
            })
        ));
        bare[5] = 10;
        assert_eq!(Repr::parse(&bare), Err(Error::MissingField(tag::NODE_ID)));
    }

    /// The Conflict fixture in docs/lan-protocol.md: node 2 tells node 1 (sequence 5, term 4)
    /// that node 3, term 4, at 192.168.1.103 is a representative too.
    #[test]
    fn conflict_fixture() {
        let r = Repr {
            header: Header {
                node_id: 2,
                sequence: 5,
                term: 4,
            },
            body: Body::Conflict(Conflict {
                node_id: 3,
                term: 4,
                lan_addr: Ipv4Addr::new(192, 168, 1, 103),
            }),
        };
        let bytes: &[u8] = &[
            b'H', b'N', b'C', b'N', 1, 10, 0, 29, // magic, version, type 10, body length
            0, 0, 0, 0, 0, 0, 0, 2, // node id
            0, 0, 0, 0, 0, 0, 0, 5, // sequence
            0, 0, 0, 0, 0, 0, 0, 4, // term
            7, 0, 8, 0, 0, 0, 0, 0, 0, 0, 3, // NODE_ID 3
            8, 0, 8, 0, 0, 0, 0, 0, 0, 0, 4, // TERM 4
            2, 0, 4, 192, 168, 1, 103, // LAN_ADDR
        ];
        assert_eq!(r.emit(), bytes);
        assert_eq!(Repr::parse(bytes), Ok(r));
        // A wrong-size id is refused.
        let mut bad = bytes.to_vec();
        bad[34] = 7;
        assert!(Repr::parse(&bad).is_err());
    }

    #[test]
    fn odd_names_round_trip_and_long_ones_are_clipped() {
        for name in ["", "Küche ☕", "a;b=c%20", &"é".repeat(64)] {
            let mut r = notice();
            if let Body::PortNotice(n) = &mut r.body {
                n.name = name.to_string();
                n.external_port = None;
            }
            assert_eq!(Repr::parse(&r.emit()), Ok(r), "{name:?}");
        }
        let mut r = notice();
        if let Body::PortNotice(n) = &mut r.body {
            n.name = "☕".repeat(100);
        }
        let Body::PortNotice(n) = Repr::parse(&r.emit()).unwrap().body else {
            panic!()
        };
        assert!(n.name.len() <= MAX_NAME_BYTES && n.name.chars().all(|c| c == '☕'));
    }

    #[test]
    fn unknown_tags_are_skipped() {
        let mut b = NOTICE_BYTES.to_vec();
        b.extend_from_slice(&[200, 0, 3, 9, 9, 9]);
        let len = (b.len() - HEADER_LEN) as u16;
        b[6..8].copy_from_slice(&len.to_be_bytes());
        assert_eq!(Repr::parse(&b), Ok(notice()));
        // Bytes after the declared body are ignored too.
        let mut c = NOTICE_BYTES.to_vec();
        c.extend_from_slice(b"trailer");
        assert_eq!(Repr::parse(&c), Ok(notice()));
    }

    #[test]
    fn malformed_input_is_refused_by_kind() {
        let set = |i: usize, v: u8| {
            let mut b = NOTICE_BYTES.to_vec();
            b[i] = v;
            b
        };
        assert_eq!(Repr::parse(b""), Err(Error::Truncated));
        assert_eq!(
            Repr::parse(b"M-SEARCH * HTTP/1.1\r\n\r\n"),
            Err(Error::BadMagic)
        );
        assert_eq!(Repr::parse(&NOTICE_BYTES[..20]), Err(Error::Truncated));
        assert_eq!(Repr::parse(&NOTICE_BYTES[..40]), Err(Error::Truncated));
        assert_eq!(Repr::parse(&set(4, 2)), Err(Error::UnknownVersion(2)));
        assert_eq!(Repr::parse(&set(5, 11)), Err(Error::UnknownType(11)));
        assert_eq!(Repr::parse(&set(5, 0)), Err(Error::UnknownType(0)));
        assert_eq!(
            Repr::parse(&vec![0u8; MAX_MESSAGE + 1]),
            Err(Error::TooLarge)
        );
        // A TLV whose length runs past the body.
        assert_eq!(Repr::parse(&set(34, 200)), Err(Error::BadTlv));
        // Wrong-size address, zero port, bad UTF-8, control characters.
        assert_eq!(
            Repr::parse(&set(45, 5)),
            Err(Error::InvalidField(tag::LAN_ADDR))
        );
        let mut zero_port = NOTICE_BYTES.to_vec();
        zero_port[53..55].copy_from_slice(&[0, 0]);
        assert_eq!(
            Repr::parse(&zero_port),
            Err(Error::InvalidField(tag::INTERNAL_PORT))
        );
        assert_eq!(
            Repr::parse(&set(35, 0xff)),
            Err(Error::InvalidField(tag::NAME))
        );
        assert_eq!(
            Repr::parse(&set(35, b'\n')),
            Err(Error::InvalidField(tag::NAME))
        );
        // A notice without its required fields.
        let mut bare = NOTICE_BYTES[..HEADER_LEN].to_vec();
        bare[6..8].copy_from_slice(&[0, 0]);
        assert_eq!(Repr::parse(&bare), Err(Error::MissingField(tag::NAME)));
    }

    #[test]
    fn parse_never_panics_on_mutations() {
        // Every single-byte change and every truncation of the fixture: an answer, no panic.
        for i in 0..NOTICE_BYTES.len() {
            for v in [0u8, 1, 0x7f, 0x80, 0xff] {
                let mut b = NOTICE_BYTES.to_vec();
                b[i] = v;
                let _ = Repr::parse(&b);
            }
            let _ = Repr::parse(&NOTICE_BYTES[..i]);
        }
        // A cheap pseudo-random fuzz with the magic and version kept.
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        for _ in 0..20_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let len = HEADER_LEN + (x % 64) as usize;
            let mut b: Vec<u8> = (0..len).map(|k| (x >> (k % 57)) as u8).collect();
            b[..4].copy_from_slice(&MAGIC);
            b[4] = VERSION;
            b[5] = (x % 12) as u8;
            let _ = Repr::parse(&b);
        }
    }
}
