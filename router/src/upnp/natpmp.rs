//! NAT-PMP (RFC 6886) on UDP 5351 of the LAN address, the port PCP (RFC 6887, [`super::pcp`])
//! shares: the socket loop around [`Core::pmp`], the start-up / address-change announcements
//! of both, and the NAT-PMP requests (sans-IO, on the [`Core`]).

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use shared::igd;
use shared::natpmp::{
    self, NatPmpProtocol, NatPmpRequest, NatPmpResponse, NatPmpResult, PcpOpcode, PcpResponse,
    PcpResult,
};
use socket2::{Domain, Protocol, Socket, Type};
use tokio::net::UdpSocket;
use tokio::sync::watch;

use super::Shared;
use super::core::{Core, PCP_ERROR_LIFETIME};
use super::ssdp::on_lan;
use crate::mapping::{Origin, PmpRequest};
use crate::nat::Nat;

/// Where announcements go: all hosts, the client port (RFC 6886 §3.2.1, RFC 6887 §14.1.3).
pub const ANNOUNCE_TO: SocketAddrV4 = SocketAddrV4::new(Ipv4Addr::new(224, 0, 0, 1), 5350);

/// Opens the server socket on the LAN address, multicast sent from it with TTL 1.
pub fn open(bind: SocketAddrV4) -> std::io::Result<UdpSocket> {
    let s = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP))?;
    s.set_nonblocking(true)?;
    if !bind.ip().is_loopback() {
        s.set_multicast_if_v4(bind.ip())?;
        s.set_multicast_ttl_v4(1)?;
    }
    s.bind(&SocketAddr::V4(bind).into())?;
    UdpSocket::from_std(s.into())
}

/// Serves requests until `stop`. Only LAN sources are answered.
pub(crate) async fn serve(
    sock: Arc<UdpSocket>,
    shared: Arc<Shared>,
    mut stop: watch::Receiver<bool>,
) {
    let mut buf = vec![0u8; 1200];
    loop {
        let (n, src) = tokio::select! {
            _ = stop.changed() => return,
            r = sock.recv_from(&mut buf) => match r {
                Ok(v) => v,
                Err(e) => {
                    tracing::debug!("pmp: recv: {e}");
                    continue;
                }
            },
        };
        let SocketAddr::V4(src) = src else { continue };
        if !on_lan(*src.ip(), shared.lan.0, shared.lan.1) {
            continue;
        }
        shared.stats.pmp_requests.fetch_add(1, Ordering::Relaxed);
        let data = buf.get(..n).unwrap_or(&[]);
        let (reply, malformed) = shared.with_core(|now, core, nat| core.pmp(now, nat, src, data));
        if malformed {
            shared.stats.pmp_malformed.fetch_add(1, Ordering::Relaxed);
        }
        if let Some(r) = reply
            && let Err(e) = sock.send_to(&r, SocketAddr::V4(src)).await
        {
            tracing::debug!("pmp: reply to {src}: {e}");
        }
    }
}

/// Announces the external address and the new epoch: the NAT-PMP external address response
/// and a PCP ANNOUNCE response, ten times at 250 ms doubling (RFC 6886 §3.2.1; RFC 6887
/// §14.1.3 sends ANNOUNCE the same way).
pub(crate) async fn announce(sock: Arc<UdpSocket>, shared: Arc<Shared>) {
    let mut gap = Duration::from_millis(250);
    for _ in 0..10 {
        let (epoch, wan) = {
            let now = shared.clock.now();
            let core = super::lock(&shared.core);
            let nat = super::lock(&shared.nat);
            (core.uptime(now), nat.wan_addr())
        };
        let pmp = NatPmpResponse::ExternalAddress {
            result: if wan.is_unspecified() {
                NatPmpResult::NetworkFailure
            } else {
                NatPmpResult::Success
            },
            epoch,
            addr: wan,
        }
        .emit();
        let pcp = PcpResponse {
            opcode: PcpOpcode::Announce,
            result: PcpResult::Success,
            lifetime: 0,
            epoch,
            map: None,
            options: Vec::new(),
        }
        .emit();
        for m in [pmp, pcp] {
            if let Err(e) = sock.send_to(&m, SocketAddr::V4(ANNOUNCE_TO)).await {
                tracing::debug!("pmp: announcement not sent: {e}");
                return;
            }
        }
        tokio::time::sleep(gap).await;
        gap *= 2;
    }
}

impl Core {
    /// Handles one datagram that arrived on port 5351 from `src`; returns the answer, if any.
    /// The second value says whether the datagram was malformed (for the counters).
    pub fn pmp(
        &mut self,
        now: Instant,
        nat: &mut Nat,
        src: SocketAddrV4,
        data: &[u8],
    ) -> (Option<Vec<u8>>, bool) {
        let epoch = self.uptime(now);
        match natpmp::parse_request(data) {
            Ok(natpmp::Request::NatPmp(r)) => (Some(self.natpmp(now, nat, *src.ip(), r)), false),
            Ok(natpmp::Request::Pcp(r)) => (Some(self.pcp(now, nat, *src.ip(), &r, data)), false),
            Err(e) => (pmp_parse_error(&e, data, epoch), true),
        }
    }

    /// One NAT-PMP request (RFC 6886 §3.2, §3.3).
    fn natpmp(
        &mut self,
        now: Instant,
        nat: &mut Nat,
        client: Ipv4Addr,
        r: NatPmpRequest,
    ) -> Vec<u8> {
        let epoch = self.uptime(now);
        let wan = nat.wan_addr();
        match r {
            // RFC 6886 §3.2: without an external address the answer is 3 NetworkFailure.
            NatPmpRequest::ExternalAddress => NatPmpResponse::ExternalAddress {
                result: if wan.is_unspecified() {
                    NatPmpResult::NetworkFailure
                } else {
                    NatPmpResult::Success
                },
                epoch,
                addr: wan,
            }
            .emit(),
            NatPmpRequest::Map {
                protocol,
                internal_port,
                suggested_external_port,
                lifetime,
            } => {
                let req = PmpRequest {
                    client,
                    origin: Origin::NatPmp,
                    protocol: match protocol {
                        NatPmpProtocol::Udp => igd::Protocol::Udp,
                        NatPmpProtocol::Tcp => igd::Protocol::Tcp,
                    },
                    internal_port,
                    suggested_port: suggested_external_port,
                    lifetime,
                    nonce: None,
                };
                let grant = self.table.map_pmp(now, &req);
                let applied = self.apply_changes(now, nat);
                // RFC 6886 §3.3: on error the ports and lifetime of the answer are zero except
                // the internal port, copied from the request.
                let (result, ext, life) = match (grant, applied) {
                    (Ok(g), Ok(())) => (NatPmpResult::Success, g.external_port, g.lifetime),
                    (Err(e), _) => (e.natpmp_result(), 0, 0),
                    (Ok(_), Err(_)) => (NatPmpResult::OutOfResources, 0, 0),
                };
                NatPmpResponse::Map {
                    protocol,
                    result,
                    epoch,
                    internal_port,
                    external_port: ext,
                    lifetime: life,
                }
                .emit()
            }
        }
    }
}

/// The answer to a datagram that did not parse (RFC 6886 §3.5, RFC 6887 §8.3, §9), if any.
fn pmp_parse_error(e: &natpmp::Error, data: &[u8], epoch: u32) -> Option<Vec<u8>> {
    let version = *data.first()?;
    let opcode = data.get(1).copied().unwrap_or(0) & 0x7f;
    match e {
        // Responses (and our own announcements looping back) are never answered.
        natpmp::Error::Direction => None,
        natpmp::Error::Version(_) if version != natpmp::NATPMP_VERSION && data.len() >= 24 => {
            // RFC 6887 §9: UNSUPP_VERSION, with the version we speak.
            natpmp::pcp_error_response(data, PcpResult::UnsuppVersion, PCP_ERROR_LIFETIME, epoch)
        }
        natpmp::Error::Version(_) => Some(
            NatPmpResponse::Error {
                request_opcode: opcode,
                result: NatPmpResult::UnsupportedVersion,
                epoch,
            }
            .emit(),
        ),
        natpmp::Error::Opcode(_) if version == natpmp::NATPMP_VERSION => Some(
            NatPmpResponse::Error {
                request_opcode: opcode,
                result: NatPmpResult::UnsupportedOpcode,
                epoch,
            }
            .emit(),
        ),
        natpmp::Error::Opcode(_) => {
            natpmp::pcp_error_response(data, PcpResult::UnsuppOpcode, PCP_ERROR_LIFETIME, epoch)
        }
        natpmp::Error::Option => {
            natpmp::pcp_error_response(data, PcpResult::MalformedOption, PCP_ERROR_LIFETIME, epoch)
        }
        // A short NAT-PMP request is dropped (RFC 6886 §3.2 has no error for it); a PCP one
        // of at least a header is MALFORMED_REQUEST (RFC 6887 §8.3).
        natpmp::Error::Length(_) if version == natpmp::PCP_VERSION => {
            natpmp::pcp_error_response(data, PcpResult::MalformedRequest, PCP_ERROR_LIFETIME, epoch)
        }
        natpmp::Error::Length(_) => None,
    }
}
