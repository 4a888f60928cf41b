//! DHCPv4 messages on the wire (RFC 2131 §2, options RFC 2132), as a plain [`Message`] with
//! [`Message::parse`] and [`Message::emit`]. Parsing never panics: every length is checked
//! before it is read, and malformed input comes back as a [`ParseError`] the caller counts.

use std::net::Ipv4Addr;

/// Byte offsets of the fixed BOOTP header (RFC 2131 §2, figure 1).
mod field {
    use std::ops::Range;
    pub const OP: usize = 0;
    pub const HTYPE: usize = 1;
    pub const HLEN: usize = 2;
    pub const HOPS: usize = 3;
    pub const XID: Range<usize> = 4..8;
    pub const SECS: Range<usize> = 8..10;
    pub const FLAGS: Range<usize> = 10..12;
    pub const CIADDR: Range<usize> = 12..16;
    pub const YIADDR: Range<usize> = 16..20;
    pub const SIADDR: Range<usize> = 20..24;
    pub const GIADDR: Range<usize> = 24..28;
    pub const CHADDR: Range<usize> = 28..44;
    pub const SNAME: Range<usize> = 44..108;
    pub const FILE: Range<usize> = 108..236;
    pub const COOKIE: Range<usize> = 236..240;
    pub const OPTIONS: usize = 240;
}

/// The magic cookie that starts the options field (RFC 2131 §3, RFC 2132 §2).
pub const MAGIC_COOKIE: [u8; 4] = [99, 130, 83, 99];
/// Server port (RFC 2131 §4.1).
pub const SERVER_PORT: u16 = 67;
/// Client port (RFC 2131 §4.1).
pub const CLIENT_PORT: u16 = 68;
/// The BROADCAST bit of `flags` (RFC 2131 §2, figure 2).
pub const FLAG_BROADCAST: u16 = 0x8000;
/// BOOTREQUEST / BOOTREPLY (RFC 2131 §2, `op`).
pub const BOOTREQUEST: u8 = 1;
pub const BOOTREPLY: u8 = 2;
/// Replies are padded to the BOOTP size (RFC 1542 §3.3 / RFC 951: a 300-octet message), which
/// some old clients still expect.
pub const MIN_LEN: usize = 300;

/// Option codes we read or write (RFC 2132).
pub mod opt {
    pub const PAD: u8 = 0; // §3.1
    pub const SUBNET_MASK: u8 = 1; // §3.3
    pub const ROUTER: u8 = 3; // §3.5
    pub const DNS: u8 = 6; // §3.8
    pub const HOST_NAME: u8 = 12; // §3.14
    pub const DOMAIN_NAME: u8 = 15; // §3.17
    pub const BROADCAST: u8 = 28; // §5.3
    pub const REQUESTED_IP: u8 = 50; // §9.1
    pub const LEASE_TIME: u8 = 51; // §9.2
    pub const OVERLOAD: u8 = 52; // §9.3
    pub const MESSAGE_TYPE: u8 = 53; // §9.6
    pub const SERVER_ID: u8 = 54; // §9.7
    pub const PARAM_REQUEST: u8 = 55; // §9.8
    pub const MESSAGE: u8 = 56; // §9.9
    pub const MAX_SIZE: u8 = 57; // §9.10
    pub const RENEWAL_T1: u8 = 58; // §9.11
    pub const REBINDING_T2: u8 = 59; // §9.12
    pub const CLIENT_ID: u8 = 61; // §9.14
    pub const END: u8 = 255; // §3.2
}

/// DHCP message type, option 53 (RFC 2132 §9.6).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MessageType {
    Discover = 1,
    Offer = 2,
    Request = 3,
    Decline = 4,
    Ack = 5,
    Nak = 6,
    Release = 7,
    Inform = 8,
}

impl MessageType {
    pub fn from_u8(v: u8) -> Option<Self> {
        Some(match v {
            1 => Self::Discover,
            2 => Self::Offer,
            3 => Self::Request,
            4 => Self::Decline,
            5 => Self::Ack,
            6 => Self::Nak,
            7 => Self::Release,
            8 => Self::Inform,
            _ => return None,
        })
    }
}

/// Why a datagram is not a DHCP message we can read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    /// Shorter than the fixed header plus the cookie (240 octets).
    #[error("truncated: {0} octets, the header and cookie need 240")]
    Truncated(usize),
    /// The four octets after `file` are not 99.130.83.99 (RFC 2131 §3).
    #[error("bad magic cookie")]
    BadCookie,
    /// `hlen` larger than the 16 octets of `chaddr`.
    #[error("hardware address length {0} > 16")]
    BadHlen(u8),
    /// An option's length runs past the end of its field (RFC 2132 §2).
    #[error("option {code} overruns its field")]
    OptionOverrun { code: u8 },
    /// An option with a length its definition does not allow (e.g. option 53 of length 2).
    #[error("option {code} has a bad length {len}")]
    BadOptionLength { code: u8, len: usize },
}

/// A DHCP message: the BOOTP header fields and the options, in order, with repeated codes
/// concatenated (RFC 3396 §7) and `sname` / `file` already read when option 52 says they hold
/// options (RFC 2132 §9.3).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    pub op: u8,
    pub htype: u8,
    pub hlen: u8,
    pub hops: u8,
    pub xid: u32,
    pub secs: u16,
    pub flags: u16,
    pub ciaddr: Ipv4Addr,
    pub yiaddr: Ipv4Addr,
    pub siaddr: Ipv4Addr,
    pub giaddr: Ipv4Addr,
    pub chaddr: [u8; 16],
    /// Options as (code, data), in first-seen order; PAD, END and OVERLOAD are not listed.
    pub options: Vec<(u8, Vec<u8>)>,
}

fn ip(b: &[u8]) -> Ipv4Addr {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[..4]);
    Ipv4Addr::from(a)
}

/// Reads the options of one field into `out` (RFC 2132 §2: code, length, data; PAD and END
/// have no length). Returns the value of option 52 if seen.
fn read_options(
    data: &[u8],
    out: &mut Vec<(u8, Vec<u8>)>,
    overload: &mut Option<u8>,
) -> Result<(), ParseError> {
    let mut i = 0;
    while i < data.len() {
        let code = data[i];
        match code {
            opt::PAD => {
                i += 1;
                continue;
            }
            opt::END => return Ok(()),
            _ => {}
        }
        let len = *data.get(i + 1).ok_or(ParseError::OptionOverrun { code })? as usize;
        let value = data
            .get(i + 2..i + 2 + len)
            .ok_or(ParseError::OptionOverrun { code })?;
        if code == opt::OVERLOAD {
            if len != 1 {
                return Err(ParseError::BadOptionLength { code, len });
            }
            *overload = Some(value[0]);
        } else if let Some((_, v)) = out.iter_mut().find(|(c, _)| *c == code) {
            // RFC 3396 §7: the parts of a split long option are concatenated.
            v.extend_from_slice(value);
        } else {
            out.push((code, value.to_vec()));
        }
        i += 2 + len;
    }
    // A field that ends without END is accepted (many clients pad to the end instead).
    Ok(())
}

impl Message {
    /// Parses a datagram. The fixed header is 236 octets, then the cookie (RFC 2131 §2-3).
    pub fn parse(b: &[u8]) -> Result<Message, ParseError> {
        if b.len() < field::OPTIONS {
            return Err(ParseError::Truncated(b.len()));
        }
        if b[field::COOKIE] != MAGIC_COOKIE {
            return Err(ParseError::BadCookie);
        }
        let hlen = b[field::HLEN];
        if hlen > 16 {
            return Err(ParseError::BadHlen(hlen));
        }
        let mut options = Vec::new();
        let mut overload = None;
        read_options(&b[field::OPTIONS..], &mut options, &mut overload)?;
        // RFC 2132 §9.3: 1 = `file` holds options, 2 = `sname`, 3 = both, read in that order.
        let mut ignored = None;
        match overload {
            Some(1) => read_options(&b[field::FILE], &mut options, &mut ignored)?,
            Some(2) => read_options(&b[field::SNAME], &mut options, &mut ignored)?,
            Some(3) => {
                read_options(&b[field::FILE], &mut options, &mut ignored)?;
                read_options(&b[field::SNAME], &mut options, &mut ignored)?;
            }
            _ => {}
        }
        let mut chaddr = [0u8; 16];
        chaddr.copy_from_slice(&b[field::CHADDR]);
        let msg = Message {
            op: b[field::OP],
            htype: b[field::HTYPE],
            hlen,
            hops: b[field::HOPS],
            xid: u32::from_be_bytes([b[4], b[5], b[6], b[7]]),
            secs: u16::from_be_bytes([b[field::SECS.start], b[field::SECS.start + 1]]),
            flags: u16::from_be_bytes([b[field::FLAGS.start], b[field::FLAGS.start + 1]]),
            ciaddr: ip(&b[field::CIADDR]),
            yiaddr: ip(&b[field::YIADDR]),
            siaddr: ip(&b[field::SIADDR]),
            giaddr: ip(&b[field::GIADDR]),
            chaddr,
            options,
        };
        msg.check_option_lengths()?;
        Ok(msg)
    }

    /// Fixed-length options must have their length (RFC 2132 §9.1, §9.2, §9.6, §9.7, §9.10),
    /// the client identifier at least 2 octets (§9.14).
    fn check_option_lengths(&self) -> Result<(), ParseError> {
        for (code, v) in &self.options {
            let ok = match *code {
                opt::MESSAGE_TYPE => v.len() == 1,
                opt::REQUESTED_IP | opt::SERVER_ID | opt::LEASE_TIME => v.len() == 4,
                opt::MAX_SIZE => v.len() == 2,
                opt::CLIENT_ID => v.len() >= 2,
                _ => true,
            };
            if !ok {
                return Err(ParseError::BadOptionLength {
                    code: *code,
                    len: v.len(),
                });
            }
        }
        Ok(())
    }

    /// Writes the message: header, cookie, options, END, padded to [`MIN_LEN`]. Options longer
    /// than 255 octets are split into several (RFC 3396).
    pub fn emit(&self) -> Vec<u8> {
        let mut b = vec![0u8; field::OPTIONS];
        b[field::OP] = self.op;
        b[field::HTYPE] = self.htype;
        b[field::HLEN] = self.hlen;
        b[field::HOPS] = self.hops;
        b[field::XID].copy_from_slice(&self.xid.to_be_bytes());
        b[field::SECS].copy_from_slice(&self.secs.to_be_bytes());
        b[field::FLAGS].copy_from_slice(&self.flags.to_be_bytes());
        b[field::CIADDR].copy_from_slice(&self.ciaddr.octets());
        b[field::YIADDR].copy_from_slice(&self.yiaddr.octets());
        b[field::SIADDR].copy_from_slice(&self.siaddr.octets());
        b[field::GIADDR].copy_from_slice(&self.giaddr.octets());
        b[field::CHADDR].copy_from_slice(&self.chaddr);
        b[field::COOKIE].copy_from_slice(&MAGIC_COOKIE);
        for (code, v) in &self.options {
            if v.is_empty() {
                b.extend_from_slice(&[*code, 0]);
            }
            for part in v.chunks(255) {
                b.push(*code);
                b.push(part.len() as u8);
                b.extend_from_slice(part);
            }
        }
        b.push(opt::END);
        if b.len() < MIN_LEN {
            b.resize(MIN_LEN, 0);
        }
        b
    }

    /// The data of option `code`.
    pub fn option(&self, code: u8) -> Option<&[u8]> {
        self.options
            .iter()
            .find(|(c, _)| *c == code)
            .map(|(_, v)| v.as_slice())
    }

    /// Option 53. `None`: absent or an unknown value.
    pub fn message_type(&self) -> Option<MessageType> {
        self.option(opt::MESSAGE_TYPE)
            .and_then(|v| v.first())
            .and_then(|t| MessageType::from_u8(*t))
    }

    /// Option 50, the requested address (RFC 2132 §9.1).
    pub fn requested_ip(&self) -> Option<Ipv4Addr> {
        self.option(opt::REQUESTED_IP).map(ip)
    }

    /// Option 54, the server identifier (RFC 2132 §9.7).
    pub fn server_id(&self) -> Option<Ipv4Addr> {
        self.option(opt::SERVER_ID).map(ip)
    }

    /// Option 51 in a request: the lease time the client asks for (RFC 2132 §9.2).
    pub fn lease_time(&self) -> Option<u32> {
        self.option(opt::LEASE_TIME)
            .map(|v| u32::from_be_bytes([v[0], v[1], v[2], v[3]]))
    }

    /// Option 61 (RFC 2132 §9.14).
    pub fn client_id(&self) -> Option<&[u8]> {
        self.option(opt::CLIENT_ID)
    }

    /// Option 55, the codes the client asks for, in its order of preference (RFC 2132 §9.8).
    pub fn param_request_list(&self) -> &[u8] {
        self.option(opt::PARAM_REQUEST).unwrap_or(&[])
    }

    /// Option 12, made printable: letters, digits, '-', '_' and '.', at most 63 characters
    /// (RFC 2132 §3.14 allows any octets; what we store and show is a host name, RFC 1123).
    pub fn host_name(&self) -> Option<String> {
        let raw = self.option(opt::HOST_NAME)?;
        let name: String = raw
            .iter()
            .take_while(|b| **b != 0)
            .filter(|b| b.is_ascii_alphanumeric() || b"-_.".contains(b))
            .take(63)
            .map(|b| char::from(*b))
            .collect();
        (!name.is_empty()).then_some(name)
    }

    /// The client's hardware address, when it is Ethernet (htype 1, hlen 6).
    pub fn mac(&self) -> Option<[u8; 6]> {
        if self.htype == 1 && self.hlen == 6 {
            let mut m = [0u8; 6];
            m.copy_from_slice(&self.chaddr[..6]);
            Some(m)
        } else {
            None
        }
    }

    /// Whether the client asked for broadcast replies (RFC 2131 §4.1).
    pub fn broadcast(&self) -> bool {
        self.flags & FLAG_BROADCAST != 0
    }

    /// A request with no options, for tests and clients.
    pub fn request(xid: u32, mac: [u8; 6], kind: MessageType) -> Message {
        let mut chaddr = [0u8; 16];
        chaddr[..6].copy_from_slice(&mac);
        Message {
            op: BOOTREQUEST,
            htype: 1,
            hlen: 6,
            hops: 0,
            xid,
            secs: 0,
            flags: 0,
            ciaddr: Ipv4Addr::UNSPECIFIED,
            yiaddr: Ipv4Addr::UNSPECIFIED,
            siaddr: Ipv4Addr::UNSPECIFIED,
            giaddr: Ipv4Addr::UNSPECIFIED,
            chaddr,
            options: vec![(opt::MESSAGE_TYPE, vec![kind as u8])],
        }
    }

    /// Adds (or replaces) an option.
    pub fn set_option(&mut self, code: u8, data: Vec<u8>) {
        match self.options.iter_mut().find(|(c, _)| *c == code) {
            Some((_, v)) => *v = data,
            None => self.options.push((code, data)),
        }
    }
}

/// `aa:bb:cc:dd:ee:ff`.
pub fn format_mac(m: &[u8; 6]) -> String {
    format!(
        "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
        m[0], m[1], m[2], m[3], m[4], m[5]
    )
}

/// Parses `aa:bb:cc:dd:ee:ff` (or with '-').
pub fn parse_mac(s: &str) -> Option<[u8; 6]> {
    let parts: Vec<&str> = s.split([':', '-']).collect();
    if parts.len() != 6 {
        return None;
    }
    let mut m = [0u8; 6];
    for (o, p) in m.iter_mut().zip(parts) {
        if p.len() != 2 {
            return None;
        }
        *o = u8::from_str_radix(p, 16).ok()?;
    }
    Some(m)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A DISCOVER as busybox udhcpc 1.36 sends it (captured fields, padding trimmed): client id
    /// 01+MAC, host name "cam1", parameter request list 1 3 6 12 15 28 42.
    fn udhcpc_discover() -> Vec<u8> {
        let mut b = vec![0u8; 240];
        b[0] = 1;
        b[1] = 1;
        b[2] = 6;
        b[4..8].copy_from_slice(&0x1234_5678u32.to_be_bytes());
        b[28..34].copy_from_slice(&[0x02, 0x4c, 0x41, 0x42, 0, 1]);
        b[236..240].copy_from_slice(&MAGIC_COOKIE);
        b.extend_from_slice(&[53, 1, 1]);
        b.extend_from_slice(&[61, 7, 1, 0x02, 0x4c, 0x41, 0x42, 0, 1]);
        b.extend_from_slice(&[12, 4, b'c', b'a', b'm', b'1']);
        b.extend_from_slice(&[55, 7, 1, 3, 6, 12, 15, 28, 42]);
        b.extend_from_slice(&[57, 2, 0x02, 0x40]);
        b.push(255);
        b
    }

    #[test]
    fn parses_a_discover() {
        let m = Message::parse(&udhcpc_discover()).unwrap();
        assert_eq!(m.message_type(), Some(MessageType::Discover));
        assert_eq!(m.xid, 0x1234_5678);
        assert_eq!(m.mac(), Some([0x02, 0x4c, 0x41, 0x42, 0, 1]));
        assert_eq!(m.host_name().as_deref(), Some("cam1"));
        assert_eq!(m.client_id(), Some(&[1, 0x02, 0x4c, 0x41, 0x42, 0, 1][..]));
        assert_eq!(m.param_request_list(), &[1, 3, 6, 12, 15, 28, 42]);
    }

    #[test]
    fn round_trip() {
        let m = Message::parse(&udhcpc_discover()).unwrap();
        let b = m.emit();
        assert_eq!(b.len(), MIN_LEN);
        assert_eq!(Message::parse(&b).unwrap(), m);
    }

    #[test]
    fn long_options_split_and_join() {
        let mut m = Message::request(1, [2, 0, 0, 0, 0, 1], MessageType::Discover);
        m.set_option(200, vec![7u8; 600]);
        let b = m.emit();
        let back = Message::parse(&b).unwrap();
        assert_eq!(back.option(200).map(<[u8]>::len), Some(600));
    }

    #[test]
    fn overload_reads_file_and_sname() {
        let mut b = udhcpc_discover();
        // Option 52 = 3, and a host name in `file`, a requested IP in `sname`.
        let end = b.len() - 1;
        b.splice(end..end, [52, 1, 3]);
        b[108..114].copy_from_slice(&[12, 3, b'x', b'y', b'z', 255]);
        b[44..51].copy_from_slice(&[50, 4, 192, 168, 1, 150, 255]);
        let m = Message::parse(&b).unwrap();
        // The options field's host name comes first; `file`'s part is appended (RFC 3396).
        assert_eq!(m.option(opt::HOST_NAME), Some(&b"cam1xyz"[..]));
        assert_eq!(m.requested_ip(), Some(Ipv4Addr::new(192, 168, 1, 150)));
    }

    #[test]
    fn malformed() {
        let good = udhcpc_discover();
        assert_eq!(
            Message::parse(&good[..239]),
            Err(ParseError::Truncated(239))
        );
        let mut bad = good.clone();
        bad[236] = 98;
        assert_eq!(Message::parse(&bad), Err(ParseError::BadCookie));
        let mut bad = good.clone();
        bad[2] = 17;
        assert_eq!(Message::parse(&bad), Err(ParseError::BadHlen(17)));
        // Option 55 claims 200 octets.
        let mut bad = good[..good.len() - 1].to_vec();
        bad.extend_from_slice(&[55, 200, 1]);
        assert_eq!(
            Message::parse(&bad),
            Err(ParseError::OptionOverrun { code: 55 })
        );
        // A code with no length octet.
        let mut bad = good[..good.len() - 1].to_vec();
        bad.push(12);
        assert_eq!(
            Message::parse(&bad),
            Err(ParseError::OptionOverrun { code: 12 })
        );
        let mut bad = good[..240].to_vec();
        bad.extend_from_slice(&[53, 2, 1, 1, 255]);
        assert_eq!(
            Message::parse(&bad),
            Err(ParseError::BadOptionLength { code: 53, len: 2 })
        );
    }

    #[test]
    fn macs() {
        assert_eq!(
            parse_mac("02:4c:41:42:00:0A"),
            Some([2, 0x4c, 0x41, 0x42, 0, 10])
        );
        assert_eq!(
            format_mac(&[2, 0x4c, 0x41, 0x42, 0, 10]),
            "02:4c:41:42:00:0a"
        );
        for bad in [
            "",
            "02:4c:41:42:00",
            "02:4c:41:42:00:0g",
            "2:4c:41:42:00:0a:1",
        ] {
            assert_eq!(parse_mac(bad), None, "{bad}");
        }
    }
}
