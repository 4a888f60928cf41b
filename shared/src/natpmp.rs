//! NAT-PMP (RFC 6886) on UDP 5351: MAP and ANNOUNCE wire formats; PCP (RFC 6887) is
//! [`crate::pcp`], re-exported here.
//!
//! Both protocols share the server port; the first byte (version) tells them apart: 0 is
//! NAT-PMP, 2 is PCP (RFC 6887 §9, "Version Negotiation"). [`parse_request`] reads either.
//! Every length is checked before any field is read; nothing here panics on input.
//!
//! Server side: parse a request, emit a response. Client side: emit a request, parse a
//! response. The mapping decisions live in the router's mapping table (`router/src/mapping/`).

use std::net::Ipv4Addr;

pub use crate::pcp::{
    PcpMap, PcpOpcode, PcpOption, PcpRequest, PcpResponse, PcpResult, option_code,
    pcp_error_response, v4_mapped,
};

/// The server port of NAT-PMP and PCP (RFC 6886 §3.1, RFC 6887 §19.1).
pub const SERVER_PORT: u16 = 5351;
/// NAT-PMP version (RFC 6886 §3.2).
pub const NATPMP_VERSION: u8 = 0;
/// PCP version (RFC 6887 §7.1).
pub const PCP_VERSION: u8 = 2;
/// Largest PCP message (RFC 6887 §7).
pub const PCP_MAX_MESSAGE: usize = 1100;

/// Why a datagram was not understood.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// Shorter than its fixed part, or (PCP) not a multiple of 4 / over 1100 bytes.
    #[error("bad length {0}")]
    Length(usize),
    /// A response where a request was expected, or the reverse.
    #[error("wrong direction")]
    Direction,
    /// A version we do not speak (answer NAT-PMP result 1 / PCP UNSUPP_VERSION).
    #[error("unsupported version {0}")]
    Version(u8),
    /// An opcode we do not implement (answer NAT-PMP result 5 / PCP UNSUPP_OPCODE).
    #[error("unsupported opcode {0}")]
    Opcode(u8),
    /// A malformed PCP option (answer MALFORMED_OPTION).
    #[error("malformed PCP option")]
    Option,
}

// =============================================================================================
// NAT-PMP (RFC 6886)

/// NAT-PMP result codes (RFC 6886 §3.5).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u16)]
pub enum NatPmpResult {
    /// 0.
    Success = 0,
    /// 1: unsupported version.
    UnsupportedVersion = 1,
    /// 2: not authorized / refused (e.g. the box supports mapping but the user turned it off).
    NotAuthorized = 2,
    /// 3: network failure (e.g. no external address yet).
    NetworkFailure = 3,
    /// 4: out of resources (no more mappings).
    OutOfResources = 4,
    /// 5: unsupported opcode.
    UnsupportedOpcode = 5,
}

impl NatPmpResult {
    fn from_u16(v: u16) -> Option<NatPmpResult> {
        use NatPmpResult::*;
        [
            Success,
            UnsupportedVersion,
            NotAuthorized,
            NetworkFailure,
            OutOfResources,
            UnsupportedOpcode,
        ]
        .into_iter()
        .find(|r| *r as u16 == v)
    }
}

/// Transport of a NAT-PMP mapping: opcode 1 is UDP, 2 is TCP (RFC 6886 §3.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NatPmpProtocol {
    /// Opcode 1.
    Udp,
    /// Opcode 2.
    Tcp,
}

impl NatPmpProtocol {
    fn opcode(self) -> u8 {
        match self {
            NatPmpProtocol::Udp => 1,
            NatPmpProtocol::Tcp => 2,
        }
    }
}

/// A NAT-PMP request (RFC 6886 §3.2, §3.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NatPmpRequest {
    /// Opcode 0: external address request (2 bytes).
    ExternalAddress,
    /// Opcode 1/2: mapping request (12 bytes). Lifetime 0 deletes; internal port 0 with
    /// lifetime 0 deletes all the client's mappings of that protocol (RFC 6886 §3.4).
    Map {
        /// UDP or TCP.
        protocol: NatPmpProtocol,
        /// Internal port.
        internal_port: u16,
        /// Suggested external port (0 = no preference).
        suggested_external_port: u16,
        /// Requested lifetime, seconds (RFC 6886 recommends 7200).
        lifetime: u32,
    },
}

mod pmp_field {
    use std::ops::Range;
    pub const VERSION: usize = 0;
    pub const OPCODE: usize = 1;
    pub const REQ_INTERNAL_PORT: Range<usize> = 4..6;
    pub const REQ_EXTERNAL_PORT: Range<usize> = 6..8;
    pub const REQ_LIFETIME: Range<usize> = 8..12;
    pub const RESULT: Range<usize> = 2..4;
    pub const EPOCH: Range<usize> = 4..8;
    pub const EXTERNAL_ADDR: Range<usize> = 8..12;
    pub const RESP_INTERNAL_PORT: Range<usize> = 8..10;
    pub const RESP_EXTERNAL_PORT: Range<usize> = 10..12;
    pub const RESP_LIFETIME: Range<usize> = 12..16;
}

pub(crate) fn be16(b: &[u8], r: std::ops::Range<usize>) -> u16 {
    let mut a = [0u8; 2];
    a.copy_from_slice(&b[r]);
    u16::from_be_bytes(a)
}

pub(crate) fn be32(b: &[u8], r: std::ops::Range<usize>) -> u32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[r]);
    u32::from_be_bytes(a)
}

impl NatPmpRequest {
    /// Parses a NAT-PMP request. Callers check the length before indexing: every field read
    /// below is inside the length checked first.
    pub fn parse(b: &[u8]) -> Result<NatPmpRequest, Error> {
        if b.len() < 2 {
            return Err(Error::Length(b.len()));
        }
        if b[pmp_field::VERSION] != NATPMP_VERSION {
            return Err(Error::Version(b[pmp_field::VERSION]));
        }
        let op = b[pmp_field::OPCODE];
        if op >= 128 {
            return Err(Error::Direction);
        }
        match op {
            0 => Ok(NatPmpRequest::ExternalAddress),
            1 | 2 => {
                if b.len() < 12 {
                    return Err(Error::Length(b.len()));
                }
                Ok(NatPmpRequest::Map {
                    protocol: if op == 1 {
                        NatPmpProtocol::Udp
                    } else {
                        NatPmpProtocol::Tcp
                    },
                    internal_port: be16(b, pmp_field::REQ_INTERNAL_PORT),
                    suggested_external_port: be16(b, pmp_field::REQ_EXTERNAL_PORT),
                    lifetime: be32(b, pmp_field::REQ_LIFETIME),
                })
            }
            other => Err(Error::Opcode(other)),
        }
    }

    /// Writes the request (client side).
    pub fn emit(&self) -> Vec<u8> {
        match *self {
            NatPmpRequest::ExternalAddress => vec![NATPMP_VERSION, 0],
            NatPmpRequest::Map {
                protocol,
                internal_port,
                suggested_external_port,
                lifetime,
            } => {
                let mut b = vec![0u8; 12];
                b[pmp_field::OPCODE] = protocol.opcode();
                b[pmp_field::REQ_INTERNAL_PORT].copy_from_slice(&internal_port.to_be_bytes());
                b[pmp_field::REQ_EXTERNAL_PORT]
                    .copy_from_slice(&suggested_external_port.to_be_bytes());
                b[pmp_field::REQ_LIFETIME].copy_from_slice(&lifetime.to_be_bytes());
                b
            }
        }
    }
}

/// A NAT-PMP response (RFC 6886 §3.2, §3.3, §3.5).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NatPmpResponse {
    /// Opcode 128: 12 bytes.
    ExternalAddress {
        /// Result.
        result: NatPmpResult,
        /// Seconds since the mapping table was (re)initialised (RFC 6886 §3.6).
        epoch: u32,
        /// External address (0.0.0.0 on error).
        addr: Ipv4Addr,
    },
    /// Opcode 129/130: 16 bytes.
    Map {
        /// UDP or TCP.
        protocol: NatPmpProtocol,
        /// Result.
        result: NatPmpResult,
        /// Epoch.
        epoch: u32,
        /// Internal port (copied from the request).
        internal_port: u16,
        /// Mapped external port.
        external_port: u16,
        /// Granted lifetime.
        lifetime: u32,
    },
    /// An answer to a request we could not serve (unsupported version or opcode): the
    /// 8-byte header only, opcode = request opcode + 128 (RFC 6886 §3.5).
    Error {
        /// The request's opcode.
        request_opcode: u8,
        /// Result.
        result: NatPmpResult,
        /// Epoch.
        epoch: u32,
    },
}

impl NatPmpResponse {
    /// Writes the response.
    pub fn emit(&self) -> Vec<u8> {
        let (op, result, epoch, len) = match *self {
            NatPmpResponse::ExternalAddress { result, epoch, .. } => (128, result, epoch, 12),
            NatPmpResponse::Map {
                protocol,
                result,
                epoch,
                ..
            } => (128 + protocol.opcode(), result, epoch, 16),
            NatPmpResponse::Error {
                request_opcode,
                result,
                epoch,
            } => (request_opcode.wrapping_add(128) | 0x80, result, epoch, 8),
        };
        let mut b = vec![0u8; len];
        b[pmp_field::OPCODE] = op;
        b[pmp_field::RESULT].copy_from_slice(&(result as u16).to_be_bytes());
        b[pmp_field::EPOCH].copy_from_slice(&epoch.to_be_bytes());
        match *self {
            NatPmpResponse::ExternalAddress { addr, .. } => {
                b[pmp_field::EXTERNAL_ADDR].copy_from_slice(&addr.octets());
            }
            NatPmpResponse::Map {
                internal_port,
                external_port,
                lifetime,
                ..
            } => {
                b[pmp_field::RESP_INTERNAL_PORT].copy_from_slice(&internal_port.to_be_bytes());
                b[pmp_field::RESP_EXTERNAL_PORT].copy_from_slice(&external_port.to_be_bytes());
                b[pmp_field::RESP_LIFETIME].copy_from_slice(&lifetime.to_be_bytes());
            }
            NatPmpResponse::Error { .. } => {}
        }
        b
    }

    /// Parses a response (client side).
    pub fn parse(b: &[u8]) -> Result<NatPmpResponse, Error> {
        if b.len() < 8 {
            return Err(Error::Length(b.len()));
        }
        if b[pmp_field::VERSION] != NATPMP_VERSION {
            return Err(Error::Version(b[pmp_field::VERSION]));
        }
        let op = b[pmp_field::OPCODE];
        if op < 128 {
            return Err(Error::Direction);
        }
        let raw = be16(b, pmp_field::RESULT);
        let result = NatPmpResult::from_u16(raw).ok_or(Error::Opcode(op))?;
        let epoch = be32(b, pmp_field::EPOCH);
        match (op - 128, b.len()) {
            (0, n) if n >= 12 => Ok(NatPmpResponse::ExternalAddress {
                result,
                epoch,
                addr: Ipv4Addr::from(be32(b, pmp_field::EXTERNAL_ADDR)),
            }),
            (1 | 2, n) if n >= 16 => Ok(NatPmpResponse::Map {
                protocol: if op == 129 {
                    NatPmpProtocol::Udp
                } else {
                    NatPmpProtocol::Tcp
                },
                result,
                epoch,
                internal_port: be16(b, pmp_field::RESP_INTERNAL_PORT),
                external_port: be16(b, pmp_field::RESP_EXTERNAL_PORT),
                lifetime: be32(b, pmp_field::RESP_LIFETIME),
            }),
            (req, _) if result != NatPmpResult::Success => Ok(NatPmpResponse::Error {
                request_opcode: req,
                result,
                epoch,
            }),
            _ => Err(Error::Length(b.len())),
        }
    }
}

/// Either protocol's request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    /// Version 0.
    NatPmp(NatPmpRequest),
    /// Version 2.
    Pcp(PcpRequest),
}

/// Reads a request arriving on port 5351, dispatching on the version byte (RFC 6887 §9).
pub fn parse_request(b: &[u8]) -> Result<Request, Error> {
    match b.first() {
        None => Err(Error::Length(0)),
        Some(&NATPMP_VERSION) => NatPmpRequest::parse(b).map(Request::NatPmp),
        Some(&PCP_VERSION) => PcpRequest::parse(b).map(Request::Pcp),
        Some(&v) => Err(Error::Version(v)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn natpmp_requests() {
        assert_eq!(
            parse_request(&[0, 0]),
            Ok(Request::NatPmp(NatPmpRequest::ExternalAddress))
        );
        // natpmpc -a 8080 80 tcp 3600: map TCP internal 80 -> suggested 8080, lifetime 3600
        let raw = [0, 2, 0, 0, 0, 80, 0x1f, 0x90, 0, 0, 0x0e, 0x10];
        let r = NatPmpRequest::parse(&raw).unwrap();
        assert_eq!(
            r,
            NatPmpRequest::Map {
                protocol: NatPmpProtocol::Tcp,
                internal_port: 80,
                suggested_external_port: 8080,
                lifetime: 3600
            }
        );
        assert_eq!(r.emit(), raw);
        assert_eq!(NatPmpRequest::parse(&raw[..11]), Err(Error::Length(11)));
        assert_eq!(NatPmpRequest::parse(&[0]), Err(Error::Length(1)));
        assert_eq!(NatPmpRequest::parse(&[0, 3]), Err(Error::Opcode(3)));
        assert_eq!(NatPmpRequest::parse(&[0, 128]), Err(Error::Direction));
        assert_eq!(parse_request(&[1, 0]), Err(Error::Version(1)));
        assert_eq!(parse_request(&[]), Err(Error::Length(0)));
    }

    #[test]
    fn natpmp_responses() {
        let ext = NatPmpResponse::ExternalAddress {
            result: NatPmpResult::Success,
            epoch: 1000,
            addr: Ipv4Addr::new(203, 0, 113, 2),
        };
        let raw = ext.emit();
        assert_eq!(raw, [0, 128, 0, 0, 0, 0, 0x03, 0xe8, 203, 0, 113, 2]);
        assert_eq!(NatPmpResponse::parse(&raw), Ok(ext));
        let map = NatPmpResponse::Map {
            protocol: NatPmpProtocol::Udp,
            result: NatPmpResult::Success,
            epoch: 5,
            internal_port: 5000,
            external_port: 5001,
            lifetime: 7200,
        };
        let raw = map.emit();
        assert_eq!(raw.len(), 16);
        assert_eq!(raw[1], 129);
        assert_eq!(NatPmpResponse::parse(&raw), Ok(map));
        let err = NatPmpResponse::Error {
            request_opcode: 9,
            result: NatPmpResult::UnsupportedOpcode,
            epoch: 5,
        };
        let raw = err.emit();
        assert_eq!(raw, [0, 137, 0, 5, 0, 0, 0, 5]);
        assert_eq!(NatPmpResponse::parse(&raw), Ok(err));
        assert!(NatPmpResponse::parse(&raw[..7]).is_err());
        assert_eq!(
            NatPmpResponse::parse(&[0, 1, 0, 0, 0, 0, 0, 0]),
            Err(Error::Direction)
        );
    }

    #[test]
    fn never_panics_on_short_or_random_input() {
        let mut x: u32 = 12345;
        for len in 0..200 {
            let mut buf = vec![0u8; len];
            for b in &mut buf {
                x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
                *b = (x >> 16) as u8;
            }
            for v in [0u8, 2] {
                if let Some(first) = buf.first_mut() {
                    *first = v;
                }
                let _ = parse_request(&buf);
                let _ = NatPmpResponse::parse(&buf);
                let _ = PcpResponse::parse(&buf);
                let _ = pcp_error_response(&buf, PcpResult::MalformedRequest, 0, 0);
            }
        }
    }
}
