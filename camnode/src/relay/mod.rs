//! The camera's side of the relay (seed 003, with seed 004's LAN address): a camera that port
//! forwarding cannot make reachable (carrier-grade NAT, double NAT, UPnP off) registers with a
//! relay server on the internet over UDP and serves viewers over back-connections it opens itself.
//! The wire format is `shared::relayproto` (docs/relay-protocol.md).
//!
//! Layers:
//! - [`core`]: the sans-IO device state machine ([`DeviceCore`]): period query, keep-alives,
//!   refreshes, failover between relays, checks of connection requests. Virtual-clock tests in
//!   `tests.rs`, with a NAT whose UDP bindings time out.
//! - [`settings`]: the options (`--relay`, `--relay-mode`, `--relay-secret`, `--relay-ca`) and the
//!   `auto` rule ([`settings::wanted`]).
//! - [`back`]: the TLS back-connection, the hello, and the web site served over it.
//! - [`run`]: the tokio driver: one UDP socket, timers, back-connections, and the Directory the
//!   pages read (port management's, with "via relay ..." once registered).

pub mod back;
pub mod core;
pub mod settings;
#[cfg(test)]
mod tests;

use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::Context as _;
use tokio::net::UdpSocket;
use tokio::sync::{Semaphore, watch};
use tokio_rustls::TlsConnector;

pub use self::core::{DeviceCore, Event, Settings, Status};
pub use self::settings::{RelaySettings, RelayTarget};
use crate::directory::{Directory, Reachability};
use crate::identity;
use crate::web::WebState;

/// Back-connections served at once; connection requests beyond are dropped (the relay answers
/// its viewer with 504).
const MAX_BACK_CONNECTIONS: usize = 256;

/// Everything [`run`] needs.
#[derive(Debug)]
pub struct RelayContext {
    pub settings: RelaySettings,
    /// Port management's Directory.
    pub portmgmt: watch::Receiver<Directory>,
    /// Where the Directory the pages read is published.
    pub publish: watch::Sender<Directory>,
    /// The web service, once it exists (connection requests before that are dropped).
    pub web: Arc<OnceLock<Arc<WebState>>>,
    /// Becomes true (or its sender is dropped) to stop.
    pub shutdown: watch::Receiver<bool>,
}

/// The URL of a camera's site on a relay.
pub fn site_url(relay: &RelayTarget, node_id: &str) -> String {
    format!("{}/d/{node_id}/", relay.url)
}

/// Port management's Directory as the pages should see it: reachable "via relay" while
/// registered.
fn merged(pm: &Directory, relay: Option<&RelayTarget>) -> Directory {
    let mut d = pm.clone();
    if let Some(r) = relay {
        d.reachability = Reachability::ViaRelay {
            site: site_url(r, &pm.node_id),
            direct: Box::new(pm.reachability.clone()),
        };
    }
    d
}

/// The rustls provider, named rather than the process default (which is ambiguous when another
/// crate in the binary enables a second one): ring, as the relay uses. rustls 0.23.48 marks it
/// deprecated for lacking post-quantum key exchange; X25519 serves here, offered first: ring's
/// defaults put P-384 first, whose generic code cost ~2 ms of CPU per handshake on the lab's VM
/// (every cold viewer session pays one handshake).
#[allow(deprecated)]
fn tls_provider() -> Arc<rustls::crypto::CryptoProvider> {
    use rustls::crypto::ring::kx_group;
    let mut p = rustls::crypto::ring::default_provider();
    p.kx_groups = vec![kx_group::X25519, kx_group::SECP256R1, kx_group::SECP384R1];
    Arc::new(p)
}

/// Resolves a relay's UDP address, IPv4 (the socket is IPv4: the NATs this is for are IPv4
/// NATs); a name may take a moment, literals never fail.
async fn resolve(t: &RelayTarget) -> Option<SocketAddr> {
    for attempt in 0..5u32 {
        match tokio::net::lookup_host((t.host.as_str(), t.udp_port)).await {
            Ok(mut addrs) => {
                if let Some(a) = addrs.find(SocketAddr::is_ipv4) {
                    return Some(a);
                }
            }
            Err(e) => tracing::warn!(relay = %t.url, error = %e, "cannot resolve the relay"),
        }
        tokio::time::sleep(Duration::from_secs(1 << attempt)).await;
    }
    None
}

/// The address this host sends from towards `to` (the LAN address when port management has
/// not learned one from the router).
fn source_towards(to: SocketAddr) -> Option<IpAddr> {
    let s = std::net::UdpSocket::bind(SocketAddr::from(([0, 0, 0, 0], 0))).ok()?;
    s.connect(to).ok()?;
    s.local_addr().ok().map(|a| a.ip())
}

/// Logs dropped relay datagrams (forged, replayed, stale, ...): the first at once, then at most
/// one summary every 10 s, so a flood of forgeries cannot flood the log.
#[derive(Debug, Default)]
struct DropLog {
    logged: u64,
    at: Option<Instant>,
}

impl DropLog {
    fn note(&mut self, s: &core::Stats, from: SocketAddr) {
        let now = Instant::now();
        if s.dropped() > self.logged
            && self
                .at
                .is_none_or(|t| now.duration_since(t) >= Duration::from_secs(10))
        {
            tracing::warn!(
                %from, forged = s.forged, replayed = s.replayed, stale = s.stale,
                unknown_source = s.unknown_source, malformed = s.malformed,
                wrong_device = s.wrong_device, unexpected = s.unexpected,
                "relay datagrams dropped (totals so far)"
            );
            self.logged = s.dropped();
            self.at = Some(now);
        }
    }
}

/// Runs the relay side until shutdown. Errors only when the UDP socket cannot be opened.
pub async fn run(ctx: RelayContext) -> anyhow::Result<()> {
    let RelayContext {
        settings,
        mut portmgmt,
        publish,
        web,
        mut shutdown,
    } = ctx;
    // The node id is the device id: wait for port management's first Directory.
    let id = loop {
        if let Some(id) = identity::parse_id(&portmgmt.borrow_and_update().node_id) {
            break id;
        }
        publish.send_replace(portmgmt.borrow().clone());
        tokio::select! {
            r = portmgmt.changed() => if r.is_err() { return Ok(()) },
            _ = shutdown.changed() => return Ok(()),
        }
    };
    let mut targets = Vec::new();
    let mut addrs = Vec::new();
    for t in &settings.relays {
        match resolve(t).await {
            Some(a) => {
                targets.push(t.clone());
                addrs.push(a);
            }
            None => tracing::warn!(relay = %t.url, "relay left out: its name does not resolve"),
        }
    }
    let sock = UdpSocket::bind(SocketAddr::from(([0, 0, 0, 0], 0)))
        .await
        .context("opening the relay UDP socket")?;
    let tls = TlsConnector::from(Arc::new(
        rustls::ClientConfig::builder_with_provider(tls_provider())
            .with_safe_default_protocol_versions()
            .context("TLS protocol versions")?
            .with_root_certificates(settings.roots.clone())
            .with_no_client_auth(),
    ));
    let wall_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    let core_settings = Settings {
        keepalive: Duration::from_secs(u64::from(settings.keepalive_seconds)),
        ..Settings::default()
    };
    let mut core = DeviceCore::new(
        core_settings,
        id,
        settings.secret.clone(),
        addrs.clone(),
        wall_ms,
    );
    tracing::info!(id = %identity::id_hex(id), relays = ?targets.iter().map(|t| &t.url).collect::<Vec<_>>(), mode = ?settings.mode, "relay side starting");
    let sessions = Arc::new(Semaphore::new(MAX_BACK_CONNECTIONS));
    let mut want = false;
    let mut shown: Option<Directory> = None;
    let mut buf = vec![0u8; shared::relayproto::MAX_DATAGRAM + 1];
    let mut pm_open = true;
    let mut drops = DropLog::default();
    // Re-read when port management's view changes (DHCP may have moved us).
    let mut route_src = addrs.first().and_then(|a| source_towards(*a));
    loop {
        // Follow port management: the auto rule, the LAN address, the merged Directory.
        let pm = portmgmt.borrow_and_update().clone();
        let now = Instant::now();
        let next_want =
            !addrs.is_empty() && settings::wanted(settings.mode, &pm.reachability, want);
        if next_want != want {
            tracing::info!(use_relay = next_want, reachability = ?pm.reachability, "relay use changes");
            want = next_want;
        }
        let lan_ip = pm.lan_addr.map(IpAddr::V4).or(route_src);
        core.set_lan(
            now,
            lan_ip.map(|ip| SocketAddr::new(ip, pm.lan_port)),
            pm.external_addr.map(IpAddr::V4),
        );
        core.set_enabled(now, want);
        while let Some(t) = core.poll_transmit() {
            if let Err(e) = sock.send_to(&t.data, t.to).await {
                tracing::debug!(to = %t.to, error = %e, "relay datagram not sent");
            }
        }
        while let Some(ev) = core.poll_event() {
            match ev {
                Event::Registered { relay, observed } => tracing::info!(
                    relay = %targets[relay].url, %observed,
                    "registered with the relay: reachable at {}", site_url(&targets[relay], &pm.node_id)
                ),
                Event::Lost { relay } => {
                    tracing::warn!(relay = %targets[relay].url, "the relay stopped answering; trying the next")
                }
                Event::Connect(c) => {
                    let (Some(state), Ok(permit)) =
                        (web.get().cloned(), sessions.clone().try_acquire_owned())
                    else {
                        tracing::warn!(
                            session = c.session,
                            "back-connection not opened: busy or not serving yet"
                        );
                        continue;
                    };
                    let Some(name) = targets[c.relay].server_name() else {
                        continue;
                    };
                    let (tls, secret) = (tls.clone(), settings.secret.clone());
                    tokio::spawn(async move {
                        let session = c.session;
                        if let Err(e) =
                            back::connect_and_serve(state, tls, name, c, id, secret).await
                        {
                            tracing::info!(session, "back-connection: {e:#}");
                        }
                        drop(permit);
                    });
                }
            }
        }
        let st = core.status();
        let via = (st.enabled && st.registered).then(|| &targets[st.relay]);
        let d = merged(&pm, via);
        if shown.as_ref() != Some(&d) {
            publish.send_replace(d.clone());
            shown = Some(d);
        }
        let deadline = core.poll_timeout().map(tokio::time::Instant::from_std);
        tokio::select! {
            _ = async {
                match deadline {
                    Some(d) => tokio::time::sleep_until(d).await,
                    None => std::future::pending().await,
                }
            } => core.handle_timeout(Instant::now()),
            r = sock.recv_from(&mut buf) => match r {
                Ok((n, from)) => {
                    core.handle_datagram(Instant::now(), from, &buf[..n]);
                    drops.note(&core.stats(), from);
                }
                Err(e) => tracing::debug!(error = %e, "relay socket"),
            },
            r = portmgmt.changed(), if pm_open => match r {
                Ok(()) => route_src = addrs.first().and_then(|a| source_towards(*a)),
                Err(_) => pm_open = false,
            },
            r = shutdown.changed() => if r.is_err() || *shutdown.borrow() {
                let s = core.stats();
                tracing::info!(?s, "relay side stopping");
                return Ok(());
            },
        }
    }
}
