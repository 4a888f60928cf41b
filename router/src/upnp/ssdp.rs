//! SSDP on the LAN (UDA 1.1 §1): the search responder and the NOTIFY announcer.
//!
//! [`Advertiser`] is pure: which datagrams answer a search, which NOTIFYs announce the device.
//! [`run`] is the IO: one UDP socket bound to port 1900 that joined 239.255.255.250 on the LAN
//! interface only, answers (after the MX delay) unicast to the searcher's address and port,
//! re-announces before max-age runs out and says byebye at shutdown.

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use rand::{Rng, SeedableRng, rngs::SmallRng};
use shared::ssdp::{
    self, IGD_TYPES, IgdIdentity, Message, Notify, Nts, SearchDelay, SearchRequest, SearchResponse,
};
use socket2::{Domain, Protocol, Socket, Type};
use tokio::net::UdpSocket;

use super::Stats;

/// The multicast group of SSDP (UDA 1.1 §1.1.2).
pub const GROUP: Ipv4Addr = Ipv4Addr::new(239, 255, 255, 250);
/// Delayed answers pending at once; searches past it are dropped (a flood of multicast
/// searches must not become a flood of tasks).
const MAX_PENDING: usize = 128;

/// What the device says about itself in SSDP.
#[derive(Debug, Clone)]
pub struct Advertiser {
    /// UDNs and the IGD version offered.
    pub id: IgdIdentity,
    /// LOCATION of the description of the offered version.
    pub location: String,
    /// LOCATION of the IGD:1 description variant (for searches for a `:1` type).
    pub location_v1: String,
    /// SERVER / the product token (UDA 1.1 §1.1.3: `OS/version UPnP/1.1 product/version`).
    pub server: String,
    /// CACHE-CONTROL max-age, seconds.
    pub max_age: u32,
    /// BOOTID.UPNP.ORG (UDA 1.1 §1.2.2): increases on every start.
    pub boot_id: u32,
    /// CONFIGID.UPNP.ORG: changes when the descriptions change.
    pub config_id: u32,
}

impl Advertiser {
    /// LOCATION for an answer to `st` from a client whose M-SEARCH carried `user_agent`.
    ///
    /// An IGD:2 is backward compatible, and control points must accept a higher device version
    /// than the one they searched for (UDA 1.1 §2.1), so every search gets the v2 description,
    /// as miniupnpd answers too: miniupnpc, for one, searches for `InternetGatewayDevice:1` first
    /// but uses the v2 actions (GetListOfPortMappings, AddAnyPortMapping) when the description
    /// offers them. The IGD:1 variant goes, automatically, to clients that only speak v1: a
    /// search for a `:1` type from a UDA 1.0 stack (`UPnP/1.0` in USER-AGENT, which predates
    /// IGD:2; Windows' NAT traversal is one) that is known to reject IGD:2 descriptions.
    pub fn location_for(&self, st: &str, user_agent: Option<&str>) -> &str {
        if self.id.version < 2 {
            return &self.location;
        }
        let v1_search = IGD_TYPES
            .iter()
            .any(|t| t.v2_version >= 2 && st == t.urn(1));
        let v1_only_client = user_agent.is_some_and(|ua| ua.contains("UPnP/1.0"));
        if v1_search && v1_only_client {
            &self.location_v1
        } else {
            &self.location
        }
    }

    /// The answers to a search (UDA 1.1 §1.3.3), one datagram each.
    pub fn answers(&self, req: &SearchRequest) -> Vec<Vec<u8>> {
        ssdp::search_answers(&self.id, &req.st)
            .into_iter()
            .map(|(st, usn)| {
                SearchResponse {
                    max_age: self.max_age,
                    date: None,
                    location: self
                        .location_for(&st, req.user_agent.as_deref())
                        .to_string(),
                    server: self.server.clone(),
                    st,
                    usn,
                    boot_id: Some(self.boot_id),
                    config_id: Some(self.config_id),
                    search_port: None,
                }
                .emit()
            })
            .collect()
    }

    /// The NOTIFY set for `nts` (UDA 1.1 §1.2.2 alive, §1.2.3 byebye), one per advertisement.
    pub fn notifies(&self, nts: Nts) -> Vec<Vec<u8>> {
        let alive = nts == Nts::Alive;
        self.id
            .advertisements()
            .into_iter()
            .map(|(nt, usn)| {
                Notify {
                    host: ssdp::MULTICAST_ADDR.to_string(),
                    nt,
                    nts,
                    usn,
                    location: alive.then(|| self.location.clone()),
                    max_age: alive.then_some(self.max_age),
                    server: alive.then(|| self.server.clone()),
                    boot_id: Some(self.boot_id),
                    config_id: Some(self.config_id),
                    next_boot_id: None,
                    search_port: None,
                }
                .emit()
            })
            .collect()
    }

    /// Re-announcement period: a third of max-age, so two announcements can be lost before
    /// control points forget us (UDA 1.1 §1.2.2: "SHOULD re-send ... before max-age").
    pub fn reannounce_every(&self) -> Duration {
        Duration::from_secs(u64::from((self.max_age / 3).max(1)))
    }
}

/// Whether `src` is on the LAN (`net/prefix`); everything else is dropped unanswered.
pub fn on_lan(src: Ipv4Addr, net: Ipv4Addr, prefix: u8) -> bool {
    let mask = if prefix == 0 {
        0
    } else {
        u32::MAX << (32 - u32::from(prefix.min(32)))
    };
    u32::from(src) & mask == u32::from(net) & mask
}

/// What to do with one received datagram (pure): the delay and the answers, or nothing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Answer after a delay drawn from `[0, max]` (Duration::ZERO: at once).
    Answer(Duration, Vec<Vec<u8>>),
    /// A valid message that needs no answer (NOTIFY, responses, unknown ST, no MX).
    Ignore,
    /// Not an SSDP message: count and drop.
    Malformed,
}

/// Decides about one datagram (UDA 1.1 §1.3.2).
pub fn decide(adv: &Advertiser, data: &[u8]) -> Decision {
    let req = match ssdp::parse(data) {
        Ok(Message::Search(r)) => r,
        Ok(_) => return Decision::Ignore,
        Err(_) => return Decision::Malformed,
    };
    let unicast = !req.host.trim().starts_with("239.255.255.250");
    let max = match ssdp::search_delay(req.mx.as_deref(), unicast) {
        SearchDelay::Immediate => Duration::ZERO,
        SearchDelay::UpTo(d) => d,
        SearchDelay::Discard => return Decision::Ignore,
    };
    let answers = adv.answers(&req);
    if answers.is_empty() {
        Decision::Ignore
    } else {
        Decision::Answer(max, answers)
    }
}

/// Where and how the SSDP socket listens.
#[derive(Debug, Clone)]
pub struct SsdpSocketConfig {
    /// Bind address: 0.0.0.0:1900 for the real service (so multicast arrives), a loopback
    /// address with port 0 in tests.
    pub bind: SocketAddrV4,
    /// Join 239.255.255.250 on this interface address and send NOTIFYs from it; None: no
    /// multicast (tests).
    pub multicast_if: Option<Ipv4Addr>,
}

/// Opens the socket: SO_REUSEADDR (another SSDP stack may listen too), IP_MULTICAST_ALL off
/// (Linux would otherwise deliver groups joined on any interface by any socket), membership
/// and IP_MULTICAST_IF on the LAN address only, TTL 2 (UDA 1.1 §1.1.2: "SHOULD default to 2").
pub fn open(cfg: &SsdpSocketConfig) -> std::io::Result<UdpSocket> {
    let s = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP))?;
    s.set_reuse_address(true)?;
    s.set_nonblocking(true)?;
    if let Some(lan) = cfg.multicast_if {
        set_multicast_all(&s, false)?;
        s.join_multicast_v4(&GROUP, &lan)?;
        s.set_multicast_if_v4(&lan)?;
        s.set_multicast_ttl_v4(2)?;
        s.set_multicast_loop_v4(false)?;
    }
    s.bind(&SocketAddr::V4(cfg.bind).into())?;
    UdpSocket::from_std(s.into())
}

#[cfg(target_os = "linux")]
fn set_multicast_all(s: &Socket, on: bool) -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    let v: libc::c_int = i32::from(on);
    // SAFETY: setsockopt with a valid fd, a c_int option value and its size.
    let r = unsafe {
        libc::setsockopt(
            s.as_raw_fd(),
            libc::IPPROTO_IP,
            libc::IP_MULTICAST_ALL,
            (&v as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if r == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

#[cfg(not(target_os = "linux"))]
fn set_multicast_all(_: &Socket, _: bool) -> std::io::Result<()> {
    Ok(())
}

/// Sends the NOTIFY set for `nts` to the group (no-op without multicast).
pub async fn announce(sock: &UdpSocket, adv: &Advertiser, nts: Nts, multicast: bool) {
    if !multicast {
        return;
    }
    let to = SocketAddr::V4(SocketAddrV4::new(GROUP, ssdp::PORT));
    for m in adv.notifies(nts) {
        if let Err(e) = sock.send_to(&m, to).await {
            tracing::debug!("ssdp: NOTIFY not sent: {e}");
        }
    }
}

/// Serves searches until `shutdown`, announcing alive now and every
/// [`Advertiser::reannounce_every`], byebye at the end.
pub async fn run(
    sock: Arc<UdpSocket>,
    adv: Arc<Advertiser>,
    lan: (Ipv4Addr, u8),
    multicast: bool,
    stats: Arc<Stats>,
    seed: u64,
    shutdown: tokio::sync::watch::Receiver<bool>,
) {
    let mut shutdown = shutdown;
    let mut rng = SmallRng::seed_from_u64(seed);
    let pending = Arc::new(AtomicUsize::new(0));
    let mut buf = vec![0u8; ssdp::MAX_MESSAGE + 1];
    // UDA 1.1 §1.2.2: the advertisements go out at start, then before max-age runs out.
    announce(&sock, &adv, Nts::Alive, multicast).await;
    let mut tick = tokio::time::interval(adv.reannounce_every());
    tick.tick().await;
    loop {
        tokio::select! {
            _ = shutdown.changed() => break,
            _ = tick.tick() => announce(&sock, &adv, Nts::Alive, multicast).await,
            r = sock.recv_from(&mut buf) => {
                let (n, src) = match r {
                    Ok(v) => v,
                    Err(e) => {
                        tracing::debug!("ssdp: recv: {e}");
                        continue;
                    }
                };
                let SocketAddr::V4(src) = src else { continue };
                if !on_lan(*src.ip(), lan.0, lan.1) {
                    stats.ssdp_not_lan.fetch_add(1, Ordering::Relaxed);
                    continue;
                }
                match decide(&adv, buf.get(..n).unwrap_or(&[])) {
                    Decision::Malformed => {
                        stats.ssdp_malformed.fetch_add(1, Ordering::Relaxed);
                    }
                    Decision::Ignore => {}
                    Decision::Answer(max, answers) => {
                        stats.ssdp_searches.fetch_add(1, Ordering::Relaxed);
                        if max.is_zero() {
                            send_all(&sock, &answers, src).await;
                            continue;
                        }
                        if pending.load(Ordering::Relaxed) >= MAX_PENDING {
                            stats.ssdp_dropped.fetch_add(1, Ordering::Relaxed);
                            continue;
                        }
                        let delay = Duration::from_millis(
                            rng.random_range(0..=u64::try_from(max.as_millis()).unwrap_or(5000)),
                        );
                        let (sock, pending) = (sock.clone(), pending.clone());
                        pending.fetch_add(1, Ordering::Relaxed);
                        tokio::spawn(async move {
                            tokio::time::sleep(delay).await;
                            send_all(&sock, &answers, src).await;
                            pending.fetch_sub(1, Ordering::Relaxed);
                        });
                    }
                }
            }
        }
    }
    // UDA 1.1 §1.2.3: byebye for every advertisement when the device leaves.
    announce(&sock, &adv, Nts::ByeBye, multicast).await;
}

async fn send_all(sock: &UdpSocket, answers: &[Vec<u8>], to: SocketAddrV4) {
    for a in answers {
        if let Err(e) = sock.send_to(a, SocketAddr::V4(to)).await {
            tracing::debug!("ssdp: answer to {to} not sent: {e}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn adv(version: u32) -> Advertiser {
        Advertiser {
            id: IgdIdentity {
                root_uuid: "aaaaaaaa-0000-4000-8000-000000000001".into(),
                wan_uuid: "aaaaaaaa-0000-4000-8000-000000000002".into(),
                wan_conn_uuid: "aaaaaaaa-0000-4000-8000-000000000003".into(),
                version,
            },
            location: "http://192.168.1.1:5000/rootDesc.xml".into(),
            location_v1: "http://192.168.1.1:5000/rootDesc1.xml".into(),
            server: "Linux/6 UPnP/1.1 hnib-router/0.1".into(),
            max_age: 1800,
            boot_id: 3,
            config_id: 77,
        }
    }

    fn parse_answers(d: Decision) -> (Duration, Vec<SearchResponse>) {
        let Decision::Answer(max, v) = d else {
            panic!("{d:?}")
        };
        let r = v
            .iter()
            .map(|b| match ssdp::parse(b) {
                Ok(Message::Response(r)) => r,
                other => panic!("{other:?}"),
            })
            .collect();
        (max, r)
    }

    #[test]
    fn v1_search_gets_v1_location_only_from_a_v1_only_client() {
        let a = adv(2);
        // miniupnpc (UPnP/1.1) searches for IGD:1 but uses v2: it gets the v2 description.
        let (_, r) = parse_answers(decide(&a, b"M-SEARCH * HTTP/1.1\r\nHOST: 239.255.255.250:1900\r\nST: urn:schemas-upnp-org:device:InternetGatewayDevice:1\r\nMAN: \"ssdp:discover\"\r\nMX: 2\r\nUSER-AGENT: Debian/12 UPnP/1.1 MiniUPnPc/2.2.4\r\n\r\n"));
        assert_eq!(r[0].location, "http://192.168.1.1:5000/rootDesc.xml");
        // A UDA 1.0 stack searching for IGD:1 gets the v1 variant.
        let (max, r) = parse_answers(decide(&a, b"M-SEARCH * HTTP/1.1\r\nHOST: 239.255.255.250:1900\r\nST: urn:schemas-upnp-org:device:InternetGatewayDevice:1\r\nMAN: \"ssdp:discover\"\r\nMX: 2\r\nUSER-AGENT: Microsoft-Windows/10.0 UPnP/1.0\r\n\r\n"));
        assert_eq!(max, Duration::from_secs(2));
        assert_eq!(r.len(), 1);
        assert_eq!(
            r[0].st,
            "urn:schemas-upnp-org:device:InternetGatewayDevice:1"
        );
        assert_eq!(r[0].location, "http://192.168.1.1:5000/rootDesc1.xml");
        assert_eq!(r[0].boot_id, Some(3));
        assert_eq!(r[0].config_id, Some(77));
        let (_, r) = parse_answers(decide(&a, b"M-SEARCH * HTTP/1.1\r\nHOST: 239.255.255.250:1900\r\nST: urn:schemas-upnp-org:device:InternetGatewayDevice:2\r\nMAN: \"ssdp:discover\"\r\nMX: 9\r\n\r\n"));
        assert_eq!(r[0].location, "http://192.168.1.1:5000/rootDesc.xml");
        // ssdp:all: the v2 set, at the v2 location
        let (max, r) = parse_answers(decide(&a, b"M-SEARCH * HTTP/1.1\r\nHOST: 239.255.255.250:1900\r\nST: ssdp:all\r\nMAN: \"ssdp:discover\"\r\nMX: 9\r\n\r\n"));
        assert_eq!(max, Duration::from_secs(5));
        assert_eq!(r.len(), 10);
        assert!(r.iter().all(|x| x.location.ends_with("/rootDesc.xml")));
        // a v1 device always points at its one description
        let a1 = adv(1);
        assert_eq!(
            a1.location_for("urn:schemas-upnp-org:device:InternetGatewayDevice:1", None),
            a1.location
        );
    }

    #[test]
    fn unicast_at_once_multicast_without_mx_dropped_garbage_counted() {
        let a = adv(2);
        let (max, _) = parse_answers(decide(&a, b"M-SEARCH * HTTP/1.1\r\nHOST: 192.168.1.1:1900\r\nST: upnp:rootdevice\r\nMAN: \"ssdp:discover\"\r\n\r\n"));
        assert_eq!(max, Duration::ZERO);
        assert_eq!(
            decide(&a, b"M-SEARCH * HTTP/1.1\r\nHOST: 239.255.255.250:1900\r\nST: upnp:rootdevice\r\nMAN: \"ssdp:discover\"\r\n\r\n"),
            Decision::Ignore
        );
        assert_eq!(
            decide(&a, b"M-SEARCH * HTTP/1.1\r\nHOST: 239.255.255.250:1900\r\nST: urn:x:device:Printer:1\r\nMAN: \"ssdp:discover\"\r\nMX: 1\r\n\r\n"),
            Decision::Ignore
        );
        assert_eq!(decide(&a, b"\x00\x01garbage"), Decision::Malformed);
        assert_eq!(decide(&a, &[b'A'; 9000]), Decision::Malformed);
    }

    #[test]
    fn notify_sets() {
        let a = adv(2);
        let alive = a.notifies(Nts::Alive);
        assert_eq!(alive.len(), 10);
        for m in &alive {
            let Ok(Message::Notify(n)) = ssdp::parse(m) else {
                panic!()
            };
            assert_eq!(n.max_age, Some(1800));
            assert_eq!(n.location.as_deref(), Some(a.location.as_str()));
            assert_eq!(n.boot_id, Some(3));
        }
        let bye = a.notifies(Nts::ByeBye);
        assert_eq!(bye.len(), 10);
        assert!(
            bye.iter()
                .all(|m| !String::from_utf8_lossy(m).contains("LOCATION"))
        );
        assert_eq!(a.reannounce_every(), Duration::from_secs(600));
    }

    #[test]
    fn lan_filter() {
        let lan = Ipv4Addr::new(192, 168, 1, 1);
        assert!(on_lan(Ipv4Addr::new(192, 168, 1, 77), lan, 24));
        assert!(!on_lan(Ipv4Addr::new(203, 0, 113, 9), lan, 24));
        assert!(on_lan(Ipv4Addr::new(127, 0, 0, 1), Ipv4Addr::LOCALHOST, 8));
        assert!(on_lan(Ipv4Addr::new(1, 2, 3, 4), lan, 0));
    }
}
