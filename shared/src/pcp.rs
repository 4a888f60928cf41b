//! PCP (RFC 6887) on UDP 5351: MAP and ANNOUNCE wire formats, request and response, with
//! options. NAT-PMP (RFC 6886) shares the port: [`crate::natpmp::parse_request`] reads either.
//! Every length is checked before any field is read; nothing here panics on input.

use std::net::{Ipv4Addr, Ipv6Addr};

use crate::natpmp::{Error, PCP_MAX_MESSAGE, PCP_VERSION, be16, be32};

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

/// IPv4 address as the IPv4-mapped IPv6 address PCP carries (RFC 6887 §5).
pub fn v4_mapped(a: Ipv4Addr) -> Ipv6Addr {
    a.to_ipv6_mapped()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::natpmp::{Request, parse_request};

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
}
