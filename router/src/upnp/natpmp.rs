//! NAT-PMP (RFC 6886) and PCP (RFC 6887) on UDP 5351 of the LAN address: the socket loop
//! around [`super::core::Core::pmp`], and the start-up / address-change announcements.

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use shared::natpmp::{NatPmpResponse, NatPmpResult, PcpOpcode, PcpResponse, PcpResult};
use socket2::{Domain, Protocol, Socket, Type};
use tokio::net::UdpSocket;
use tokio::sync::watch;

use super::Shared;
use super::ssdp::on_lan;

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
