//! PCP (RFC 6887) MAP and ANNOUNCE on the [`Core`], sans-IO. The datagrams arrive on the
//! socket NAT-PMP shares ([`super::natpmp`]), which hands version-2 requests here.

use std::net::Ipv4Addr;
use std::time::Instant;

use shared::igd::{MappingKey, Protocol};
use shared::natpmp::{self, PcpMap, PcpOpcode, PcpRequest, PcpResponse, PcpResult};

use super::core::{Core, PCP_ERROR_LIFETIME};
use crate::mapping::{Origin, PmpRequest};
use crate::nat::Nat;

impl Core {
    /// One PCP request; `raw` is the datagram, echoed in error responses (RFC 6887 §8.3).
    pub(super) fn pcp(
        &mut self,
        now: Instant,
        nat: &mut Nat,
        client: Ipv4Addr,
        r: &PcpRequest,
        raw: &[u8],
    ) -> Vec<u8> {
        let epoch = self.uptime(now);
        let fail = |result: PcpResult| {
            natpmp::pcp_error_response(raw, result, PCP_ERROR_LIFETIME, epoch).unwrap_or_default()
        };
        // RFC 6887 §8.3: the client address field must be the packet's source (no NAT
        // between client and server), else ADDRESS_MISMATCH.
        if r.client_addr != natpmp::v4_mapped(client) {
            return fail(PcpResult::AddressMismatch);
        }
        // RFC 6887 §7.3: options 0-127 must be understood. THIRD_PARTY and FILTER we do not
        // implement (§13.1, §13.3 allow UNSUPP_OPTION); PREFER_FAILURE we honour (§13.2).
        let mut prefer_failure = false;
        for o in &r.options {
            match o.code {
                natpmp::option_code::PREFER_FAILURE => prefer_failure = true,
                c if c < 128 => return fail(PcpResult::UnsuppOption),
                _ => {}
            }
        }
        let map = match (r.opcode, r.map) {
            // §14.1: ANNOUNCE is answered with success and lifetime 0.
            (PcpOpcode::Announce, _) => {
                return PcpResponse {
                    opcode: PcpOpcode::Announce,
                    result: PcpResult::Success,
                    lifetime: 0,
                    epoch,
                    map: None,
                    options: Vec::new(),
                }
                .emit();
            }
            (PcpOpcode::Map, Some(m)) => m,
            (PcpOpcode::Map, None) => return fail(PcpResult::MalformedRequest),
        };
        let protocol = match map.protocol {
            6 => Protocol::Tcp,
            17 => Protocol::Udp,
            // §11.1: protocol 0 (all) and others we cannot forward.
            _ => return fail(PcpResult::UnsuppProtocol),
        };
        if map.internal_port == 0 && r.lifetime != 0 {
            return fail(PcpResult::MalformedRequest);
        }
        let wan = nat.wan_addr();
        if wan.is_unspecified() && r.lifetime != 0 {
            return fail(PcpResult::NetworkFailure);
        }
        if prefer_failure && r.lifetime != 0 {
            // §13.2: the suggested port or nothing.
            let key = MappingKey {
                remote_host: None,
                external_port: map.external_port,
                protocol,
            };
            if map.external_port == 0 {
                return fail(PcpResult::MalformedOption);
            }
            if let Ok(m) = self.table.get_specific(now, &key)
                && (m.internal_client != client || m.internal_port != map.internal_port)
            {
                return fail(PcpResult::CannotProvideExternal);
            }
        }
        let req = PmpRequest {
            client,
            origin: Origin::Pcp,
            protocol,
            internal_port: map.internal_port,
            suggested_port: map.external_port,
            lifetime: r.lifetime,
            nonce: Some(map.nonce),
        };
        let grant = self.table.map_pmp(now, &req);
        let applied = self.apply_changes(now, nat);
        let (result, ext, life) = match (grant, applied) {
            (Ok(g), Ok(())) => (PcpResult::Success, g.external_port, g.lifetime),
            (Err(e), _) => (e.pcp_result(), 0, PCP_ERROR_LIFETIME),
            (Ok(_), Err(_)) => (PcpResult::CannotProvideExternal, 0, PCP_ERROR_LIFETIME),
        };
        if result == PcpResult::NotAuthorized {
            // §11.3: the error's lifetime is the remaining lifetime of the mapping that
            // another nonce holds.
            let remaining = self
                .table
                .iter()
                .find(|m| {
                    m.internal_client == client
                        && m.protocol == protocol
                        && (map.internal_port == 0 || m.internal_port == map.internal_port)
                })
                .and_then(|m| m.lease_end)
                .map_or(PCP_ERROR_LIFETIME, |end| {
                    u32::try_from(end.saturating_duration_since(now).as_secs()).unwrap_or(u32::MAX)
                });
            return natpmp::pcp_error_response(raw, result, remaining, epoch).unwrap_or_default();
        }
        if result != PcpResult::Success {
            return fail(result);
        }
        PcpResponse {
            opcode: PcpOpcode::Map,
            result,
            lifetime: life,
            epoch,
            map: Some(PcpMap {
                external_port: if r.lifetime == 0 {
                    map.external_port
                } else {
                    ext
                },
                external_addr: natpmp::v4_mapped(wan),
                ..map
            }),
            options: Vec::new(),
        }
        .emit()
    }
}
