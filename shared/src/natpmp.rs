//! NAT-PMP (RFC 6886) and PCP (RFC 6887) on UDP 5351: MAP and ANNOUNCE wire formats.
//!
//! Both protocols share the server port; the first byte (version) tells them apart: 0 is
//! NAT-PMP, 2 is PCP (RFC 6887 §9, "Version Negotiation"). [`parse_request`] reads either.
//! Every length is checked before any field is read; nothing here panics on input.
//!
//! Server side: parse a request, emit a response. Client side: emit a request, parse a
//! response. The mapping decisions live in the router's `igd` table.

use std::net::{Ipv4Addr, Ipv6Addr};

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

fn be16(b: &[u8], r: std::ops::Range<usize>) -> u16 {
    let mut a = [0u8; 2];
    a.copy_from_slice(&b[r]);
    u16::from_be_bytes(a)
}

fn be32(b: &[u8], r: std::ops::Range<usize>) -> u32 {
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

// =============================================================================================
// PCP (RFC 6887)

/// PCP result codes (RFC 6887 §7.4).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum PcpResult {
    /// 0.
    Success = 0,
    /// 1.
    UnsuppVersion = 1,
    /// 2.
    NotAuthorized = 2,
    /// 3.
    MalformedRequest = 3,
    /// 4.
    UnsuppOpcode = 4,
    /// 5.
    UnsuppOption = 5,
    /// 6.
    MalformedOption = 6,
    /// 7.
    NetworkFailure = 7,
    /// 8.
    NoResources = 8,
    /// 9.
    UnsuppProtocol = 9,
    /// 10.
    UserExQuota = 10,
    /// 11.
    CannotProvideExternal = 11,
    /// 12.
    AddressMismatch = 12,
    /// 13.
    ExcessiveRemotePeers = 13,
}

impl PcpResult {
    /// From the wire value.
    pub fn from_u8(v: u8) -> Option<PcpResult> {
        use PcpResult::*;
        [
            Success,
            UnsuppVersion,
            NotAuthorized,
            MalformedRequest,
            UnsuppOpcode,
            UnsuppOption,
            MalformedOption,
            NetworkFailure,
            NoResources,
            UnsuppProtocol,
            UserExQuota,
            CannotProvideExternal,
            AddressMismatch,
            ExcessiveRemotePeers,
        ]
        .into_iter()
        .find(|r| *r as u8 == v)
    }
}

/// PCP opcodes we implement (RFC 6887 §19.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PcpOpcode {
    /// 0: ANNOUNCE (§14.1).
    Announce,
    /// 1: MAP (§11).
    Map,
}

impl PcpOpcode {
    fn value(self) -> u8 {
        match self {
            PcpOpcode::Announce => 0,
            PcpOpcode::Map => 1,
        }
    }
}

/// The MAP opcode payload (RFC 6887 §11.1 request, §11.2 response): 36 bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PcpMap {
    /// Mapping nonce; the server echoes it and keys ownership on it (§11.1).
    pub nonce: [u8; 12],
    /// IANA protocol number; 0 = all protocols (§11.1). 6 = TCP, 17 = UDP.
    pub protocol: u8,
    /// Internal port; 0 = all ports (only with protocol 0).
    pub internal_port: u16,
    /// Suggested (request) or assigned (response) external port.
    pub external_port: u16,
    /// Suggested (request) or assigned (response) external address, IPv4 as IPv4-mapped IPv6.
    pub external_addr: Ipv6Addr,
}

/// A PCP option (RFC 6887 §7.3): code and data, padding removed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PcpOption {
    /// Option code. 0..127 must be understood or the request fails (§7.3).
    pub code: u8,
    /// Option data.
    pub data: Vec<u8>,
}

/// Option codes (RFC 6887 §19.3).
pub mod option_code {
    /// THIRD_PARTY (§13.1).
    pub const THIRD_PARTY: u8 = 1;
    /// PREFER_FAILURE (§13.2).
    pub const PREFER_FAILURE: u8 = 2;
    /// FILTER (§13.3).
    pub const FILTER: u8 = 3;
}

mod pcp_field {
    use std::ops::Range;
    pub const VERSION: usize = 0;
    pub const OPCODE: usize = 1; // R bit + opcode
    pub const RESULT: usize = 3;
    pub const LIFETIME: Range<usize> = 4..8;
    pub const CLIENT_ADDR: Range<usize> = 8..24;
    pub const EPOCH: Range<usize> = 8..12;
    pub const HEADER_LEN: usize = 24;
    // MAP payload, relative to the payload start
    pub const NONCE: Range<usize> = 0..12;
    pub const PROTOCOL: usize = 12;
    pub const INTERNAL_PORT: Range<usize> = 16..18;
    pub const EXTERNAL_PORT: Range<usize> = 18..20;
    pub const EXTERNAL_ADDR: Range<usize> = 20..36;
    pub const MAP_LEN: usize = 36;
}

fn ipv6_at(b: &[u8], r: std::ops::Range<usize>) -> Ipv6Addr {
    let mut a = [0u8; 16];
    a.copy_from_slice(&b[r]);
    Ipv6Addr::from(a)
}

fn parse_options(mut b: &[u8]) -> Result<Vec<PcpOption>, Error> {
    let mut out = Vec::new();
    while !b.is_empty() {
        if b.len() < 4 {
            return Err(Error::Option);
        }
        let code = b[0];
        let len = usize::from(u16::from_be_bytes([b[2], b[3]]));
        let padded = len.div_ceil(4) * 4;
        let Some(data) = b.get(4..4 + len) else {
            return Err(Error::Option);
        };
        out.push(PcpOption {
            code,
            data: data.to_vec(),
        });
        b = b.get(4 + padded..).unwrap_or(&[]);
    }
    Ok(out)
}

fn emit_options(out: &mut Vec<u8>, options: &[PcpOption]) {
    for o in options {
        out.push(o.code);
        out.push(0);
        let len = u16::try_from(o.data.len()).unwrap_or(u16::MAX);
        out.extend_from_slice(&len.to_be_bytes());
        out.extend_from_slice(&o.data[..usize::from(len)]);
        out.resize(out.len() + (4 - usize::from(len) % 4) % 4, 0);
    }
}

fn check_pcp_len(len: usize) -> Result<(), Error> {
    // RFC 6887 §8.3: at least the header, at most 1100 octets, a multiple of 4.
    if !(pcp_field::HEADER_LEN..=PCP_MAX_MESSAGE).contains(&len) || !len.is_multiple_of(4) {
        return Err(Error::Length(len));
    }
    Ok(())
}

/// A PCP request (RFC 6887 §7.1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PcpRequest {
    /// Opcode.
    pub opcode: PcpOpcode,
    /// Requested lifetime, seconds (0 deletes a MAP).
    pub lifetime: u32,
    /// The client's address as it sees itself (IPv4-mapped for IPv4); must equal the packet's
    /// source or the answer is ADDRESS_MISMATCH (§8.3).
    pub client_addr: Ipv6Addr,
    /// The MAP payload (MAP only).
    pub map: Option<PcpMap>,
    /// Options after the payload.
    pub options: Vec<PcpOption>,
}

impl PcpRequest {
    /// Parses a PCP request. On [`Error::Version`] answer UNSUPP_VERSION, on
    /// [`Error::Opcode`] UNSUPP_OPCODE, on [`Error::Option`] MALFORMED_OPTION, on
    /// [`Error::Length`] MALFORMED_REQUEST if at least the header is there (else drop).
    pub fn parse(b: &[u8]) -> Result<PcpRequest, Error> {
        if b.len() < 2 {
            return Err(Error::Length(b.len()));
        }
        if b[pcp_field::VERSION] != PCP_VERSION {
            return Err(Error::Version(b[pcp_field::VERSION]));
        }
        if b[pcp_field::OPCODE] & 0x80 != 0 {
            return Err(Error::Direction);
        }
        check_pcp_len(b.len())?;
        let opcode = match b[pcp_field::OPCODE] & 0x7f {
            0 => PcpOpcode::Announce,
            1 => PcpOpcode::Map,
            other => return Err(Error::Opcode(other)),
        };
        let lifetime = be32(b, pcp_field::LIFETIME);
        let client_addr = ipv6_at(b, pcp_field::CLIENT_ADDR);
        let payload = &b[pcp_field::HEADER_LEN..];
        let (map, rest) = match opcode {
            PcpOpcode::Announce => (None, payload),
            PcpOpcode::Map => {
                if payload.len() < pcp_field::MAP_LEN {
                    return Err(Error::Length(b.len()));
                }
                let mut nonce = [0u8; 12];
                nonce.copy_from_slice(&payload[pcp_field::NONCE]);
                let map = PcpMap {
                    nonce,
                    protocol: payload[pcp_field::PROTOCOL],
                    internal_port: be16(payload, pcp_field::INTERNAL_PORT),
                    external_port: be16(payload, pcp_field::EXTERNAL_PORT),
                    external_addr: ipv6_at(payload, pcp_field::EXTERNAL_ADDR),
                };
                (Some(map), &payload[pcp_field::MAP_LEN..])
            }
        };
        Ok(PcpRequest {
            opcode,
            lifetime,
            client_addr,
            map,
            options: parse_options(rest)?,
        })
    }

    /// Writes the request (client side).
    pub fn emit(&self) -> Vec<u8> {
        let mut b = vec![0u8; pcp_field::HEADER_LEN];
        b[pcp_field::VERSION] = PCP_VERSION;
        b[pcp_field::OPCODE] = self.opcode.value();
        b[pcp_field::LIFETIME].copy_from_slice(&self.lifetime.to_be_bytes());
        b[pcp_field::CLIENT_ADDR].copy_from_slice(&self.client_addr.octets());
        if let Some(m) = &self.map {
            emit_map(&mut b, m);
        }
        emit_options(&mut b, &self.options);
        b
    }
}

fn emit_map(b: &mut Vec<u8>, m: &PcpMap) {
    let start = b.len();
    b.resize(start + pcp_field::MAP_LEN, 0);
    let p = &mut b[start..];
    p[pcp_field::NONCE].copy_from_slice(&m.nonce);
    p[pcp_field::PROTOCOL] = m.protocol;
    p[pcp_field::INTERNAL_PORT].copy_from_slice(&m.internal_port.to_be_bytes());
    p[pcp_field::EXTERNAL_PORT].copy_from_slice(&m.external_port.to_be_bytes());
    p[pcp_field::EXTERNAL_ADDR].copy_from_slice(&m.external_addr.octets());
}

/// A PCP response (RFC 6887 §7.2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PcpResponse {
    /// Opcode (R bit added on the wire).
    pub opcode: PcpOpcode,
    /// Result.
    pub result: PcpResult,
    /// Granted lifetime (success) or how long the error is expected to last (§7.2).
    pub lifetime: u32,
    /// Server epoch, seconds (§8.5).
    pub epoch: u32,
    /// The MAP payload (MAP only).
    pub map: Option<PcpMap>,
    /// Options.
    pub options: Vec<PcpOption>,
}

impl PcpResponse {
    /// Writes the response.
    pub fn emit(&self) -> Vec<u8> {
        let mut b = vec![0u8; pcp_field::HEADER_LEN];
        b[pcp_field::VERSION] = PCP_VERSION;
        b[pcp_field::OPCODE] = 0x80 | self.opcode.value();
        b[pcp_field::RESULT] = self.result as u8;
        b[pcp_field::LIFETIME].copy_from_slice(&self.lifetime.to_be_bytes());
        b[pcp_field::EPOCH].copy_from_slice(&self.epoch.to_be_bytes());
        if let Some(m) = &self.map {
            emit_map(&mut b, m);
        }
        emit_options(&mut b, &self.options);
        b
    }

    /// Parses a response (client side).
    pub fn parse(b: &[u8]) -> Result<PcpResponse, Error> {
        if b.len() < 2 {
            return Err(Error::Length(b.len()));
        }
        if b[pcp_field::VERSION] != PCP_VERSION {
            return Err(Error::Version(b[pcp_field::VERSION]));
        }
        if b[pcp_field::OPCODE] & 0x80 == 0 {
            return Err(Error::Direction);
        }
        check_pcp_len(b.len())?;
        let opcode = match b[pcp_field::OPCODE] & 0x7f {
            0 => PcpOpcode::Announce,
            1 => PcpOpcode::Map,
            other => return Err(Error::Opcode(other)),
        };
        let result = PcpResult::from_u8(b[pcp_field::RESULT]).ok_or(Error::Option)?;
        let payload = &b[pcp_field::HEADER_LEN..];
        let (map, rest) = match opcode {
            PcpOpcode::Map if payload.len() >= pcp_field::MAP_LEN => {
                let mut nonce = [0u8; 12];
                nonce.copy_from_slice(&payload[pcp_field::NONCE]);
                let map = PcpMap {
                    nonce,
                    protocol: payload[pcp_field::PROTOCOL],
                    internal_port: be16(payload, pcp_field::INTERNAL_PORT),
                    external_port: be16(payload, pcp_field::EXTERNAL_PORT),
                    external_addr: ipv6_at(payload, pcp_field::EXTERNAL_ADDR),
                };
                (Some(map), &payload[pcp_field::MAP_LEN..])
            }
            PcpOpcode::Map if result == PcpResult::Success => return Err(Error::Length(b.len())),
            _ => (None, payload),
        };
        Ok(PcpResponse {
            opcode,
            result,
            lifetime: be32(b, pcp_field::LIFETIME),
            epoch: be32(b, pcp_field::EPOCH),
            map,
            options: parse_options(rest)?,
        })
    }
}

/// An error response to a request that could not be parsed far enough for a typed response
/// (RFC 6887 §8.3): the header with R set and the result, followed by a copy of the request's
/// payload (truncated to the 1100-octet limit), as the RFC asks. `None` when the request is
/// too short to answer at all (under 24 octets: silently dropped, §8.3).
pub fn pcp_error_response(
    request: &[u8],
    result: PcpResult,
    lifetime: u32,
    epoch: u32,
) -> Option<Vec<u8>> {
    if request.len() < pcp_field::HEADER_LEN {
        return None;
    }
    let mut b = vec![0u8; pcp_field::HEADER_LEN];
    b[pcp_field::VERSION] = PCP_VERSION;
    b[pcp_field::OPCODE] = 0x80 | (request[pcp_field::OPCODE] & 0x7f);
    b[pcp_field::RESULT] = result as u8;
    b[pcp_field::LIFETIME].copy_from_slice(&lifetime.to_be_bytes());
    b[pcp_field::EPOCH].copy_from_slice(&epoch.to_be_bytes());
    let payload_len = (request.len().min(PCP_MAX_MESSAGE) - pcp_field::HEADER_LEN) / 4 * 4;
    b.extend_from_slice(&request[pcp_field::HEADER_LEN..pcp_field::HEADER_LEN + payload_len]);
    Some(b)
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

/// IPv4 address as the IPv4-mapped IPv6 address PCP carries (RFC 6887 §5).
pub fn v4_mapped(a: Ipv4Addr) -> Ipv6Addr {
    a.to_ipv6_mapped()
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

    fn pcp_map_request() -> PcpRequest {
        PcpRequest {
            opcode: PcpOpcode::Map,
            lifetime: 7200,
            client_addr: v4_mapped(Ipv4Addr::new(192, 168, 1, 100)),
            map: Some(PcpMap {
                nonce: *b"0123456789ab",
                protocol: 6,
                internal_port: 80,
                external_port: 8080,
                external_addr: Ipv6Addr::UNSPECIFIED,
            }),
            options: vec![PcpOption {
                code: option_code::PREFER_FAILURE,
                data: vec![],
            }],
        }
    }

    #[test]
    fn pcp_map_round_trip() {
        let req = pcp_map_request();
        let raw = req.emit();
        assert_eq!(raw.len(), 24 + 36 + 4);
        assert_eq!(&raw[..4], &[2, 1, 0, 0]);
        assert_eq!(
            &raw[8..24],
            &v4_mapped(Ipv4Addr::new(192, 168, 1, 100)).octets()
        );
        assert_eq!(parse_request(&raw), Ok(Request::Pcp(req.clone())));
        let resp = PcpResponse {
            opcode: PcpOpcode::Map,
            result: PcpResult::Success,
            lifetime: 3600,
            epoch: 77,
            map: Some(PcpMap {
                external_addr: v4_mapped(Ipv4Addr::new(203, 0, 113, 2)),
                ..req.map.unwrap()
            }),
            options: vec![],
        };
        let raw = resp.emit();
        assert_eq!(raw.len(), 60);
        assert_eq!(raw[1], 0x81);
        assert_eq!(PcpResponse::parse(&raw), Ok(resp));
    }

    #[test]
    fn pcp_announce_and_errors() {
        let ann = PcpRequest {
            opcode: PcpOpcode::Announce,
            lifetime: 0,
            client_addr: v4_mapped(Ipv4Addr::new(192, 168, 1, 5)),
            map: None,
            options: vec![],
        };
        let raw = ann.emit();
        assert_eq!(raw.len(), 24);
        assert_eq!(PcpRequest::parse(&raw), Ok(ann));
        let mut bad = raw.clone();
        bad.push(0);
        assert_eq!(PcpRequest::parse(&bad), Err(Error::Length(25)));
        assert_eq!(PcpRequest::parse(&[2u8, 0x81, 0, 0]), Err(Error::Direction));
        let mut big = raw.clone();
        big.resize(1104, 0);
        assert_eq!(PcpRequest::parse(&big), Err(Error::Length(1104)));
        let mut peer = raw.clone();
        peer[1] = 2;
        assert_eq!(PcpRequest::parse(&peer), Err(Error::Opcode(2)));
        // MAP too short for its payload
        let mut short = raw.clone();
        short[1] = 1;
        assert_eq!(PcpRequest::parse(&short), Err(Error::Length(24)));
        // option claiming more data than there is
        let mut req = pcp_map_request().emit();
        let n = req.len();
        req[n - 2..].copy_from_slice(&[0, 40]);
        assert_eq!(PcpRequest::parse(&req), Err(Error::Option));
        // error response copies the request payload
        let full = pcp_map_request().emit();
        let e = pcp_error_response(&full, PcpResult::UnsuppOption, 30, 9).unwrap();
        assert_eq!(e.len(), full.len());
        assert_eq!(&e[24..], &full[24..]);
        let parsed = PcpResponse::parse(&e).unwrap();
        assert_eq!(parsed.result, PcpResult::UnsuppOption);
        assert_eq!(
            pcp_error_response(&full[..10], PcpResult::MalformedRequest, 0, 0),
            None
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
