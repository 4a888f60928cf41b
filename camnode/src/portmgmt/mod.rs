//! Port management against the router's IGD (server patent claims 1, 2, 5, 6, 17-19).
//!
//! Layers:
//! - [`core`]: the sans-IO state machine ([`PortManager`]): discovery, port claim, leases, the
//!   representative's table walk, the own-port notice, rename, shutdown, one file per concern
//!   under `core/`. Takes `now` and a seed; tested with a virtual clock (`tests.rs` and
//!   `tests/`, by topic).
//! - [`desc`]: the mapping description string that marks our cameras in the router's table.
//! - [`guard`]: what is refused from the router (unsafe URLs, a control URL on another host) and
//!   the deadline of every request.
//! - [`http`]: a minimal HTTP/1.1 client for the description and SOAP.
//! - [`listen`]: an extra listener on the mapped port for Fig. 8a.
//! - [`run`]: the tokio driver: SSDP and LAN sockets, HTTP requests, timers, the Directory.
//!
//! # Wiring (main.rs)
//! ```ignore
//! let (dir_tx, dir_rx) = watch::channel(camnode::portmgmt::placeholder_directory(web_port));
//! let (cmd_tx, cmd_rx) = mpsc::channel(8);
//! let (stop_tx, stop_rx) = watch::channel(false);
//! let ctx = PortMgmtContext::new(config.clone(), web_port, dir_tx, cmd_rx, stop_rx);
//! let pm = tokio::spawn(camnode::portmgmt::run(ctx));
//! // Fig. 8a: serve the same web service on Directory::lan_port too.
//! tokio::spawn(camnode::portmgmt::listen::follow_lan_port(config.listen, web_port, dir_rx.clone(), conn_tx));
//! ... on SIGINT/SIGTERM: stop_tx.send(true); pm.await  // deletes our mapping first
//! ```

pub mod core;
pub mod desc;
pub mod guard;
pub mod http;
pub mod listen;
#[cfg(test)]
mod tests;

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::Context as _;
use shared::ssdp;
use socket2::{Domain, Protocol as SockProtocol, SockAddr, SockRef, Socket, Type};
use tokio::net::UdpSocket;
use tokio::sync::{mpsc, watch};

pub use self::core::{Input, LanStats, Options, Output, PortManager};
use crate::config::Config;
use crate::directory::{Directory, NodeCommand};
use crate::election::auth::LanAuth;
use crate::identity::IdentityStore;

/// The SSDP multicast group (UDA 1.1 §1.1.2).
const SSDP_GROUP: Ipv4Addr = Ipv4Addr::new(239, 255, 255, 250);

/// A Directory to create the watch channel with; [`run`] replaces it at once.
pub fn placeholder_directory(web_port: u16) -> Directory {
    Directory {
        node_id: String::new(),
        name: String::new(),
        role: crate::directory::Role::Starting,
        reachability: crate::directory::Reachability::Discovering,
        external_addr: None,
        lan_addr: None,
        external_port: None,
        lan_port: web_port,
        peers: Vec::new(),
        warning: None,
    }
}

/// Everything [`run`] needs.
#[derive(Debug)]
pub struct PortMgmtContext {
    /// The node's configuration (state_dir and name are read here; the rest via `options`).
    pub config: Config,
    /// Tunables, from the config by [`PortMgmtContext::new`]; adjust before calling [`run`].
    pub options: Options,
    /// How long one HTTP exchange with the IGD may take (default 3 s).
    pub http_timeout: Duration,
    /// Where the Directory is published.
    pub directory: watch::Sender<Directory>,
    /// Commands from the web side (rename).
    pub commands: mpsc::Receiver<NodeCommand>,
    /// Becomes true (or its sender is dropped) to stop: our mappings are deleted first.
    pub shutdown: watch::Receiver<bool>,
}

impl PortMgmtContext {
    /// A context with options from `config` and the web server on `web_port` (the port it
    /// actually listens on).
    pub fn new(
        config: Config,
        web_port: u16,
        directory: watch::Sender<Directory>,
        commands: mpsc::Receiver<NodeCommand>,
        shutdown: watch::Receiver<bool>,
    ) -> PortMgmtContext {
        PortMgmtContext {
            options: Options::from_config(&config, web_port),
            config,
            http_timeout: Duration::from_secs(3),
            directory,
            commands,
            shutdown,
        }
    }
}

fn udp_socket(port: u16) -> std::io::Result<UdpSocket> {
    let s = Socket::new(Domain::IPV4, Type::DGRAM, Some(SockProtocol::UDP))?;
    // Other control points (SSDP) and other camnodes on this host (LAN protocol) share the port.
    s.set_reuse_address(true)?;
    s.set_nonblocking(true)?;
    s.bind(&SockAddr::from(SocketAddrV4::new(
        Ipv4Addr::UNSPECIFIED,
        port,
    )))?;
    UdpSocket::from_std(s.into())
}

/// Receives on a socket that may not exist (a best-effort listener).
async fn recv_opt(
    sock: &Option<UdpSocket>,
    buf: &mut [u8],
) -> std::io::Result<(usize, SocketAddr)> {
    match sock {
        Some(s) => s.recv_from(buf).await,
        None => std::future::pending().await,
    }
}

/// The wall clock in milliseconds since the Unix epoch (sequence numbers, LAN key timestamps).
fn wall_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Runs port management until shutdown; returns after our mapping is deleted (or the router
/// did not answer within the shutdown deadline). Errors only when the sockets cannot be opened.
pub async fn run(ctx: PortMgmtContext) -> anyhow::Result<()> {
    let PortMgmtContext {
        config,
        options,
        http_timeout,
        directory,
        mut commands,
        mut shutdown,
    } = ctx;
    let lan_group = options.lan_group;

    // Identity: made once, kept in the state directory under the LAN interface's MAC, so nodes
    // sharing a directory (one machine, several namespaces) are distinct.
    let lan_if = crate::web::netif::lan_interface(config.listen);
    let store = IdentityStore::for_mac(&config.state_dir, lan_if.as_ref().and_then(|i| i.mac));
    if store.adopt_legacy() {
        tracing::info!(path = %store.path().display(), "took over the identity file of an earlier version ({})", crate::identity::FILE_NAME);
    }
    let _identity_lock = match store.lock().map_err(anyhow::Error::msg)? {
        Ok(f) => Some(f),
        Err(why) => {
            tracing::warn!(error = %why, "cannot lock the identity file; not checking for another camnode using it");
            None
        }
    };
    let (identity, dirty, err) = store.load_or_create(&config.name, crate::identity::new_id);
    if let Some(e) = err {
        tracing::warn!(path = %store.path().display(), error = %e, "identity file unreadable; starting a new identity");
    }
    if dirty && let Err(e) = store.save(&identity) {
        tracing::warn!(path = %store.path().display(), error = %e, "cannot save the identity; it will not survive a restart");
    }
    tracing::info!(id = %identity.id_hex(), name = ?identity.name, interface = ?lan_if.as_ref().map(|i| &i.name), file = %store.path().display(), "port management starting");

    // Sockets: SSDP search (ephemeral port, unicast answers), SSDP NOTIFY listener (1900, best
    // effort), the LAN protocol (group port).
    let ssdp = udp_socket(0).context("opening the SSDP socket")?;
    let _ = ssdp.set_multicast_ttl_v4(2); // UDA 1.1 §1.1.2: TTL 2 by default
    let notify = match udp_socket(ssdp::PORT).and_then(|s| {
        s.join_multicast_v4(SSDP_GROUP, Ipv4Addr::UNSPECIFIED)
            .map(|_| s)
    }) {
        Ok(s) => Some(s),
        Err(e) => {
            tracing::info!(error = %e, "not listening for SSDP NOTIFY (router restarts are then noticed by failed requests)");
            None
        }
    };
    let lan = udp_socket(lan_group.port()).with_context(|| {
        format!(
            "opening the LAN protocol socket on port {}",
            lan_group.port()
        )
    })?;
    if let Err(e) = lan.join_multicast_v4(*lan_group.ip(), Ipv4Addr::UNSPECIFIED) {
        tracing::warn!(group = %lan_group.ip(), error = %e, "cannot join the LAN multicast group; only unicast notices will arrive");
    }
    let _ = lan.set_multicast_loop_v4(true); // other camnodes on this host; our own are ignored by id

    // Our LAN address when no IGD tells it (a LAN representative needs one to be reached).
    let mut options = options;
    if options.lan_addr.is_none() {
        options.lan_addr = if config.listen.is_unspecified() {
            lan_if.as_ref().and_then(|i| i.v4.first().copied())
        } else {
            Some(config.listen)
        };
    }

    let initial_seq = wall_ms();
    let mut pm = PortManager::new(
        options,
        identity,
        crate::identity::new_id(),
        initial_seq,
        Instant::now(),
    );
    let (http_tx, mut http_rx) = mpsc::channel::<(u64, Result<core::HttpResponse, String>)>(16);
    let mut commands_open = true;
    let mut shutdown_sent = false;
    let mut ssdp_buf = vec![0u8; shared::ssdp::MAX_MESSAGE];
    let mut notify_buf = vec![0u8; shared::ssdp::MAX_MESSAGE];
    let mut lan_buf = vec![0u8; shared::lanproto::MAX_MESSAGE + 1];
    // The LAN key (election::auth): seal what we send, drop what is not sealed with it.
    let mut lan_auth =
        (!config.lan_key.is_empty()).then(|| LanAuth::new(config.lan_key.as_bytes()));
    if lan_auth.is_some() {
        tracing::info!("LAN messages are authenticated with the LAN key");
    }

    loop {
        while let Some(out) = pm.poll_output() {
            match out {
                Output::SsdpSearch(data) => {
                    if let Err(e) = ssdp
                        .send_to(&data, SocketAddrV4::new(SSDP_GROUP, ssdp::PORT))
                        .await
                    {
                        tracing::debug!(error = %e, "M-SEARCH not sent");
                    }
                }
                Output::Http { id, request } => {
                    let tx = http_tx.clone();
                    tokio::spawn(async move {
                        let result = http::request(&request, http_timeout).await;
                        let _ = tx.send((id, result)).await;
                    });
                }
                Output::Lan { to, mut data } => {
                    if let Some(a) = &lan_auth {
                        a.seal(&mut data, wall_ms());
                    }
                    if let Err(e) = lan.send_to(&data, to).await {
                        tracing::debug!(%to, error = %e, "LAN message not sent");
                    }
                }
                Output::Publish(d) => {
                    directory.send_replace(d);
                }
                Output::SaveIdentity(i) => {
                    if let Err(e) = store.save(&i) {
                        tracing::warn!(path = %store.path().display(), error = %e, "cannot save the identity");
                    }
                }
                Output::LanAddr(addr) => {
                    // Send the LAN protocol on the LAN interface, and listen on it explicitly.
                    if let Err(e) = SockRef::from(&lan).set_multicast_if_v4(&addr) {
                        tracing::debug!(%addr, error = %e, "IP_MULTICAST_IF");
                    }
                    let _ = lan.join_multicast_v4(*lan_group.ip(), addr);
                }
                Output::Done => return Ok(()),
            }
        }
        let deadline = pm.poll_timeout().map(tokio::time::Instant::from_std);
        let input = tokio::select! {
            _ = async {
                match deadline {
                    Some(d) => tokio::time::sleep_until(d).await,
                    None => std::future::pending().await,
                }
            } => {
                pm.handle_timeout(Instant::now());
                continue;
            }
            r = ssdp.recv_from(&mut ssdp_buf) => match r {
                Ok((n, from)) => Input::Ssdp { from, data: ssdp_buf[..n].to_vec() },
                Err(_) => continue,
            },
            r = recv_opt(&notify, &mut notify_buf) => match r {
                Ok((n, from)) => Input::Ssdp { from, data: notify_buf[..n].to_vec() },
                Err(_) => continue,
            },
            r = lan.recv_from(&mut lan_buf) => match r {
                Ok((n, SocketAddr::V4(from))) => {
                    let mut data = lan_buf[..n].to_vec();
                    if let Some(a) = &mut lan_auth {
                        match a.open(&data, wall_ms()) {
                            Ok(len) => data.truncate(len),
                            Err(e) => {
                                tracing::debug!(%from, error = %e, stats = ?a.stats(), "LAN datagram dropped (LAN key)");
                                continue;
                            }
                        }
                    }
                    Input::Lan { from, data }
                }
                _ => continue,
            },
            Some((id, result)) = http_rx.recv() => Input::Http { id, result },
            cmd = commands.recv(), if commands_open => match cmd {
                Some(c) => Input::Command(c),
                None => { commands_open = false; continue; }
            },
            changed = shutdown.changed(), if !shutdown_sent => {
                if changed.is_ok() && !*shutdown.borrow_and_update() {
                    continue;
                }
                shutdown_sent = true;
                Input::Shutdown
            },
        };
        pm.handle_input(Instant::now(), input);
    }
}
