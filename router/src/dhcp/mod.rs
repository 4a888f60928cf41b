//! The router's DHCPv4 server on the LAN (RFC 2131, options RFC 2132).
//!
//! Layers:
//! - [`wire`]: the message format, parse and emit, never a panic on input.
//! - [`core`]: the decisions, sans-IO: a datagram and `now` (Unix seconds) in, a reply and its
//!   [`Destination`] out. The pool, reservations by MAC, offers, bindings, DECLINE / RELEASE /
//!   INFORM, and the counters (every dropped datagram is counted by reason).
//! - [`persist`]: the lease file.
//! - this module: the `[dhcp]` configuration section, and [`DhcpService`], which binds UDP
//!   port 67 on the LAN interface only (`SO_BINDTODEVICE`, with `SO_BROADCAST` for replies to
//!   clients that have no address yet), restores the lease file, answers until shutdown, and
//!   saves the table after every change and at the end.
//!
//! Durability (RFC 2131 §3.1 step 4: the server "commits the binding for the client to
//! persistent storage and responds with a DHCPACK"): an ACK that creates or extends a binding
//! ([`Reply::commit`]) leaves only after a lease-file write covering it has finished, so a
//! crash cannot leave a client holding an address the restarted server would give away.
//! Group commit keeps the throughput: one write is in flight at a time, always of the latest
//! table; the changes made meanwhile are all covered by the next write, and each finished write
//! releases every ACK it covers (a burst of 200 bindings costs a few writes, not 200). OFFERs,
//! NAKs and INFORM's ACK go out at once; so does everything without a `state_dir`.
//!
//! Replies follow RFC 2131 §4.1: to the relay (`giaddr`), else to `ciaddr`, else broadcast.
//! Unicasting an OFFER / ACK to a client without an address would need an ARP entry for
//! `yiaddr`; broadcasting instead is allowed and every client accepts it.

pub mod core;
pub mod persist;
pub mod pressure;
pub mod wire;

use std::collections::VecDeque;
use std::future::Future;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use anyhow::{Context, Result};
use serde::Serialize;
use socket2::{Domain, Protocol, Socket, Type};
use tokio::net::UdpSocket;
use tokio::sync::{Notify, watch};

use crate::mapping::persist::write_atomic;
use crate::upnp::Clock;

pub use self::core::{
    Counters, Destination, DropReason, Lease, LeaseState, LeaseStatus, Reply, Server, ServerConfig,
};

/// Name of the lease file in the state directory.
pub const LEASE_FILE: &str = "dhcp-leases";
/// Longest lease we hand out (and accept in the config): a week.
pub const MAX_LEASE_SECS: i64 = 7 * 24 * 3600;
/// Shortest: a minute.
pub const MIN_LEASE_SECS: i64 = 60;

/// Configuration of the service.
#[derive(Debug, Clone)]
pub struct DhcpConfig {
    pub server: ServerConfig,
    /// The LAN interface the socket is bound to (`SO_BINDTODEVICE`); None = any (tests).
    pub iface: Option<String>,
    /// Address to bind: 0.0.0.0:67 in production (broadcasts arrive at 0.0.0.0 only).
    pub bind: SocketAddrV4,
    /// Port replies to clients go to (68).
    pub client_port: u16,
    /// Where the lease file is kept; None = nothing persists.
    pub state_dir: Option<PathBuf>,
}

impl DhcpConfig {
    /// Production defaults for a LAN interface and address.
    pub fn new(iface: &str, server: ServerConfig) -> Self {
        DhcpConfig {
            server,
            iface: Some(iface.to_string()),
            bind: SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, wire::SERVER_PORT),
            client_port: wire::CLIENT_PORT,
            state_dir: None,
        }
    }
}

/// `[[dhcp.reservation]]`.
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReservationEntry {
    pub mac: String,
    pub addr: String,
}

/// `[dhcp]` in the router's TOML file. Every field is optional; the server runs by default.
///
/// ```toml
/// [dhcp]
/// enabled = true
/// pool_start = "192.168.1.100"   # default .100 of the LAN
/// pool_end = "192.168.1.199"     # default .199 of the LAN
/// lease_time = 43200             # seconds (default 12 h)
/// dns_servers = ["192.168.1.1"]  # option 6 (default: none; the router runs no DNS)
/// domain_name = "home.arpa"      # option 15
/// state_dir = "/var/lib/hnib-router"   # the lease file (unset: nothing persists)
/// [[dhcp.reservation]]
/// mac = "02:4c:41:42:00:01"
/// addr = "192.168.1.10"
/// ```
#[derive(Debug, Clone, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DhcpSection {
    pub enabled: Option<bool>,
    pub pool_start: Option<String>,
    pub pool_end: Option<String>,
    pub lease_time: Option<i64>,
    pub dns_servers: Option<Vec<String>>,
    pub domain_name: Option<String>,
    pub state_dir: Option<PathBuf>,
    #[serde(default, rename = "reservation")]
    pub reservations: Vec<ReservationEntry>,
}

/// A field error of `[dhcp]`: (field within the section, problem, fix).
pub type SectionError = (String, String, String);

fn parse_ip(field: &str, s: &str, example: &str) -> Result<Ipv4Addr, SectionError> {
    s.trim().parse().map_err(|_| {
        (
            field.to_string(),
            format!("expected an IPv4 address, got {s:?}"),
            format!("set e.g. {field} = \"{example}\""),
        )
    })
}

impl DhcpSection {
    /// Whether the server should run.
    pub fn enabled(&self) -> bool {
        self.enabled.unwrap_or(true)
    }

    /// Checks the values. With the LAN address known (`lan_addr` in the file or flags, or at
    /// start from the interface) the addresses are also checked against the subnet.
    pub fn validate(&self, lan: Option<(Ipv4Addr, u8)>) -> Result<(), SectionError> {
        match lan {
            Some((a, p)) => self.to_server_config(a, p).map(|_| ()),
            // Any /24 shape works for the syntax checks; subnet checks wait for the address.
            None => self.parse_fields().map(|_| ()),
        }
    }

    #[allow(clippy::type_complexity)]
    fn parse_fields(
        &self,
    ) -> Result<
        (
            Option<Ipv4Addr>,
            Option<Ipv4Addr>,
            u32,
            Vec<Ipv4Addr>,
            Vec<([u8; 6], Ipv4Addr)>,
        ),
        SectionError,
    > {
        let start = match &self.pool_start {
            Some(s) => Some(parse_ip("pool_start", s, "192.168.1.100")?),
            None => None,
        };
        let end = match &self.pool_end {
            Some(s) => Some(parse_ip("pool_end", s, "192.168.1.199")?),
            None => None,
        };
        let lease = match self.lease_time {
            None => 12 * 3600,
            Some(t) if (MIN_LEASE_SECS..=MAX_LEASE_SECS).contains(&t) => t as u32,
            Some(t) => {
                return Err((
                    "lease_time".into(),
                    format!("expected seconds {MIN_LEASE_SECS}..={MAX_LEASE_SECS}, got {t}"),
                    "set e.g. lease_time = 43200 (12 hours)".into(),
                ));
            }
        };
        let mut dns = Vec::new();
        for (i, s) in self.dns_servers.iter().flatten().enumerate() {
            dns.push(parse_ip(&format!("dns_servers[{i}]"), s, "192.168.1.1")?);
        }
        if let Some(d) = &self.domain_name {
            let ok = !d.is_empty()
                && d.len() <= 253
                && d.split('.').all(|l| {
                    !l.is_empty()
                        && l.len() <= 63
                        && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
                });
            if !ok {
                return Err((
                    "domain_name".into(),
                    format!("{d:?} is not a domain name"),
                    "set e.g. domain_name = \"home.arpa\" (RFC 8375) or remove it".into(),
                ));
            }
        }
        let mut res: Vec<([u8; 6], Ipv4Addr)> = Vec::new();
        for (i, r) in self.reservations.iter().enumerate() {
            let f = format!("reservation[{i}]");
            let mac = wire::parse_mac(&r.mac).ok_or_else(|| {
                (
                    format!("{f}.mac"),
                    format!("expected a MAC address, got {:?}", r.mac),
                    "set e.g. mac = \"02:4c:41:42:00:01\"".to_string(),
                )
            })?;
            let addr = parse_ip(&format!("{f}.addr"), &r.addr, "192.168.1.10")?;
            if res.iter().any(|(m, _)| *m == mac) {
                return Err((
                    format!("{f}.mac"),
                    format!("{} is reserved twice", r.mac),
                    "keep one reservation per MAC".into(),
                ));
            }
            if res.iter().any(|(_, a)| *a == addr) {
                return Err((
                    format!("{f}.addr"),
                    format!("{addr} is reserved twice"),
                    "give each reservation its own address".into(),
                ));
            }
            res.push((mac, addr));
        }
        Ok((start, end, lease, dns, res))
    }

    /// The server configuration on the LAN address `lan/prefix`, every field checked.
    pub fn to_server_config(
        &self,
        lan: Ipv4Addr,
        prefix: u8,
    ) -> Result<ServerConfig, SectionError> {
        let (start, end, lease, dns, reservations) = self.parse_fields()?;
        let mut c = ServerConfig::new(lan, prefix);
        let net = format!("the LAN {lan}/{prefix}");
        for (field, a) in [("pool_start", start), ("pool_end", end)] {
            if let Some(a) = a
                && !c.in_subnet(a)
            {
                return Err((
                    field.into(),
                    format!("{a} is not a host address of {net} other than the router's"),
                    format!("choose an address inside {net}, e.g. the default .100-.199"),
                ));
            }
        }
        c.pool_start = start.unwrap_or(c.pool_start);
        c.pool_end = end.unwrap_or(c.pool_end);
        if c.pool_start > c.pool_end {
            return Err((
                "pool_end".into(),
                format!("{} is before pool_start {}", c.pool_end, c.pool_start),
                "set pool_end >= pool_start".into(),
            ));
        }
        for (i, (_, a)) in reservations.iter().enumerate() {
            if !c.in_subnet(*a) {
                return Err((
                    format!("reservation[{i}].addr"),
                    format!("{a} is not a host address of {net} other than the router's"),
                    format!("choose an address inside {net}"),
                ));
            }
        }
        c.lease_time = lease;
        c.dns = dns;
        c.domain = self.domain_name.clone();
        c.reservations = reservations;
        Ok(c)
    }

    /// The service configuration on interface `iface` with address `lan/prefix`.
    pub fn to_config(&self, iface: &str, lan: Ipv4Addr, prefix: u8) -> Result<DhcpConfig> {
        let server = self
            .to_server_config(lan, prefix)
            .map_err(|(f, p, fix)| anyhow::anyhow!("config field \"dhcp.{f}\": {p}; {fix}"))?;
        let mut c = DhcpConfig::new(iface, server);
        c.state_dir = self.state_dir.clone();
        Ok(c)
    }
}

/// Counters of the service and table sizes, for the control API.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct DhcpStats {
    pub received: u64,
    pub offered: u64,
    pub acked: u64,
    pub nacked: u64,
    pub declined: u64,
    pub released: u64,
    pub informed: u64,
    pub dropped_total: u64,
    /// By reason ([`DropReason::name`]).
    pub dropped: std::collections::BTreeMap<&'static str, u64>,
    pub send_errors: u64,
    pub persist_errors: u64,
    /// Lease-file writes that succeeded (each: write, fsync, rename, fsync of the directory).
    pub lease_writes: u64,
    /// ACKs that waited for a lease-file write before they were sent.
    pub acks_held: u64,
    pub bound: usize,
    pub pool_start: Ipv4Addr,
    pub pool_end: Ipv4Addr,
    pub lease_time: u32,
}

#[derive(Debug)]
struct Shared {
    clock: Arc<dyn Clock>,
    core: Mutex<Server>,
    state_file: Option<PathBuf>,
    /// How many times the table changed in a way worth saving ([`Server::take_dirty`]).
    /// Changed only with `core` locked, so a snapshot taken under the lock knows exactly which
    /// changes it holds.
    changes: AtomicU64,
    /// `changes` as of the last lease-file write that succeeded.
    written: AtomicU64,
    /// Wakes the persister: the table changed.
    persist: Notify,
    send_errors: AtomicU64,
    persist_errors: AtomicU64,
    lease_writes: AtomicU64,
    acks_held: AtomicU64,
    local: SocketAddr,
    /// Tests hold this (write) to stall lease-file writes, as a slow disk would.
    #[cfg(test)]
    save_gate: tokio::sync::RwLock<()>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Shared {
    /// Writes the latest table to the lease file (write, fsync, rename: [`write_atomic`]),
    /// unless the last successful write already holds every change. Blocking; one call at a
    /// time (the persister's, then the last one at shutdown). Returns the change number the
    /// attempt covered: the ACKs waiting for changes up to it may go, whether the write
    /// succeeded or not (see [`persister`]).
    fn save(&self) -> u64 {
        let Some(path) = &self.state_file else {
            return self.changes.load(Ordering::Relaxed);
        };
        #[cfg(test)]
        let _gate = self.save_gate.blocking_read();
        let (text, upto) = {
            let core = lock(&self.core);
            let upto = self.changes.load(Ordering::Relaxed);
            if upto == self.written.load(Ordering::Relaxed) {
                return upto;
            }
            (persist::save(core.leases(), self.clock.unix()), upto)
        };
        match write_atomic(path, text.as_bytes()) {
            Ok(()) => {
                self.written.store(upto, Ordering::Relaxed);
                self.lease_writes.fetch_add(1, Ordering::Relaxed);
            }
            Err(e) => {
                self.persist_errors.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(
                    "dhcp: cannot save {}: {e} (answering anyway; the file is behind until a \
                     write succeeds)",
                    path.display()
                );
            }
        }
        upto
    }
}

/// A handle for the control API and tests.
#[derive(Debug, Clone)]
pub struct DhcpHandle {
    shared: Arc<Shared>,
}

impl DhcpHandle {
    /// The lease table.
    pub fn leases(&self) -> Vec<LeaseStatus> {
        lock(&self.shared.core).status(self.shared.clock.unix())
    }

    /// The counters.
    pub fn stats(&self) -> DhcpStats {
        let core = lock(&self.shared.core);
        let c = core.counters();
        let cfg = core.config();
        DhcpStats {
            received: c.received,
            offered: c.offered,
            acked: c.acked,
            nacked: c.nacked,
            declined: c.declined,
            released: c.released,
            informed: c.informed,
            dropped_total: c.dropped_total(),
            dropped: DropReason::ALL
                .iter()
                .map(|r| (r.name(), c.drop_count(*r)))
                .collect(),
            send_errors: self.shared.send_errors.load(Ordering::Relaxed),
            persist_errors: self.shared.persist_errors.load(Ordering::Relaxed),
            lease_writes: self.shared.lease_writes.load(Ordering::Relaxed),
            acks_held: self.shared.acks_held.load(Ordering::Relaxed),
            bound: core.bound_count(self.shared.clock.unix()),
            pool_start: cfg.pool_start,
            pool_end: cfg.pool_end,
            lease_time: cfg.lease_time,
        }
    }

    /// Where the socket is bound.
    pub fn local_addr(&self) -> SocketAddr {
        self.shared.local
    }
}

/// The service: socket bound, leases restored, not yet running.
#[derive(Debug)]
pub struct DhcpService {
    shared: Arc<Shared>,
    sock: UdpSocket,
    client_port: u16,
}

/// Receive buffer of the server socket.
const RECV_BUFFER: libc::c_int = 1 << 20;

/// Sets the receive buffer to `size` bytes, past net.core.rmem_max when we may
/// (CAP_NET_ADMIN, SO_RCVBUFFORCE), else as far as it allows.
pub(crate) fn grow_recv_buffer(s: &Socket, size: libc::c_int) -> std::io::Result<()> {
    // SAFETY: setsockopt on our own socket with a c_int option value of the right size.
    let forced = unsafe {
        libc::setsockopt(
            std::os::fd::AsRawFd::as_raw_fd(s),
            libc::SOL_SOCKET,
            libc::SO_RCVBUFFORCE,
            std::ptr::addr_of!(size).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    } == 0;
    if !forced {
        s.set_recv_buffer_size(size as usize)?;
    }
    Ok(())
}

/// Opens the server socket: `SO_REUSEADDR`, `SO_BROADCAST`, bound to the interface.
fn open(cfg: &DhcpConfig) -> std::io::Result<std::net::UdpSocket> {
    let s = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP))?;
    s.set_reuse_address(true)?;
    s.set_broadcast(true)?;
    // Room for a burst (every device of the house booting after a power cut).
    grow_recv_buffer(&s, RECV_BUFFER)?;
    if let Some(iface) = &cfg.iface {
        s.bind_device(Some(iface.as_bytes()))?;
    }
    s.bind(&SocketAddr::V4(cfg.bind).into())?;
    s.set_nonblocking(true)?;
    Ok(s.into())
}

impl DhcpService {
    /// Loads the lease file and binds the socket. Errors here come before anything runs.
    pub async fn bind(cfg: DhcpConfig, clock: Arc<dyn Clock>) -> Result<Self> {
        let mut server = Server::new(cfg.server.clone());
        let state_file = match &cfg.state_dir {
            None => None,
            Some(dir) => {
                std::fs::create_dir_all(dir).with_context(|| {
                    format!("dhcp: cannot create the state directory {}", dir.display())
                })?;
                Some(dir.join(LEASE_FILE))
            }
        };
        if let Some(path) = &state_file {
            match std::fs::read_to_string(path) {
                Ok(text) => match persist::load(&text) {
                    Ok(leases) => {
                        let n = server.restore(clock.unix(), leases);
                        tracing::info!("dhcp: restored {n} leases from {}", path.display());
                    }
                    Err(e) => tracing::warn!("dhcp: ignoring {}: {e}", path.display()),
                },
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => tracing::warn!("dhcp: cannot read {}: {e}", path.display()),
            }
        }
        let std_sock = open(&cfg).with_context(|| {
            format!(
                "dhcp: cannot open UDP {} on {}",
                cfg.bind,
                cfg.iface.as_deref().unwrap_or("any interface")
            )
        })?;
        let sock = UdpSocket::from_std(std_sock)?;
        let local = sock.local_addr()?;
        Ok(DhcpService {
            shared: Arc::new(Shared {
                clock,
                core: Mutex::new(server),
                state_file,
                changes: AtomicU64::new(0),
                written: AtomicU64::new(0),
                persist: Notify::new(),
                send_errors: AtomicU64::new(0),
                persist_errors: AtomicU64::new(0),
                lease_writes: AtomicU64::new(0),
                acks_held: AtomicU64::new(0),
                local,
                #[cfg(test)]
                save_gate: tokio::sync::RwLock::new(()),
            }),
            sock,
            client_port: cfg.client_port,
        })
    }

    pub fn handle(&self) -> DhcpHandle {
        DhcpHandle {
            shared: self.shared.clone(),
        }
    }

    /// Answers until `shutdown` completes, then saves the table a last time and sends the
    /// ACKs still waiting for it.
    pub async fn run(self, shutdown: impl Future<Output = ()>) {
        let (stop_tx, stop_rx) = watch::channel(false);
        let (written_tx, mut written_rx) = watch::channel(0u64);
        let persister = tokio::spawn(persister(self.shared.clone(), stop_rx, written_tx));
        // ACKs wait for the lease file only when there is one.
        let mut durable = self.shared.state_file.is_some();
        // ACKs waiting for a write, oldest first, each with the change number it waits for
        // (non-decreasing along the queue).
        let mut held: VecDeque<(u64, SocketAddr, Reply)> = VecDeque::new();
        let c = lock(&self.shared.core).config().clone();
        tracing::info!(
            "dhcp: serving {}-{} (lease {} s) on {}",
            c.pool_start,
            c.pool_end,
            c.lease_time,
            self.shared.local
        );
        tokio::pin!(shutdown);
        let mut buf = vec![0u8; 4096];
        loop {
            let (n, from) = tokio::select! {
                biased;
                _ = &mut shutdown => break,
                // A write finished: send the ACKs it covers.
                r = written_rx.changed(), if !held.is_empty() => {
                    if r.is_err() {
                        // The persister ends only at shutdown; should it die, answering beats
                        // holding every ACK forever.
                        tracing::error!("dhcp: the lease writer stopped; ACKs no longer wait");
                        durable = false;
                        for (_, from, reply) in std::mem::take(&mut held) {
                            self.send(from, reply).await;
                        }
                        continue;
                    }
                    let upto = *written_rx.borrow_and_update();
                    while held.front().is_some_and(|(c, _, _)| *c <= upto) {
                        if let Some((_, from, reply)) = held.pop_front() {
                            self.send(from, reply).await;
                        }
                    }
                    continue;
                }
                r = self.sock.recv_from(&mut buf) => match r {
                    Ok(x) => x,
                    Err(e) => {
                        tracing::debug!("dhcp: recv: {e}");
                        continue;
                    }
                },
            };
            let Some(datagram) = buf.get(..n) else {
                continue;
            };
            let now = self.shared.clock.unix();
            let (reply, dirty, change) = {
                let mut core = lock(&self.shared.core);
                let r = core.handle(now, datagram);
                let dirty = core.take_dirty();
                if let Some(p) = core.take_pressure_change() {
                    log_pressure(p);
                }
                let mut change = self.shared.changes.load(Ordering::Relaxed);
                if dirty {
                    change += 1;
                    self.shared.changes.store(change, Ordering::Relaxed);
                }
                (r, dirty, change)
            };
            if dirty {
                self.shared.persist.notify_one();
            }
            let Some(reply) = reply else { continue };
            // RFC 2131 §3.1 step 4: the binding is on stable storage before its DHCPACK. The
            // ACK waits for the write that covers the latest change, its own or an earlier
            // unsaved one (which may be its binding's, when this ACK changed nothing). OFFER
            // (§4.3.1), NAK and INFORM's ACK (§4.3.5) promise no binding and go now.
            if reply.commit && durable && change > *written_rx.borrow() {
                self.shared.acks_held.fetch_add(1, Ordering::Relaxed);
                held.push_back((change, from, reply));
                continue;
            }
            self.send(from, reply).await;
        }
        let _ = stop_tx.send(true);
        let _ = persister.await;
        // The last write, then the ACKs still waiting (sent even if that write failed, as
        // during the run; a send error is counted in `send_errors`).
        let s = self.shared.clone();
        if let Err(e) = tokio::task::spawn_blocking(move || s.save()).await {
            self.shared.persist_errors.fetch_add(1, Ordering::Relaxed);
            tracing::error!("dhcp: the last lease-file write failed: {e}");
        }
        let waiting = held.len();
        for (_, from, reply) in held {
            self.send(from, reply).await;
        }
        if waiting > 0 {
            tracing::info!("dhcp: sent {waiting} ACKs after the last lease-file write");
        }
        tracing::info!("dhcp: stopped");
    }

    /// Sends a reply where RFC 2131 §4.1 says ([`Destination`]).
    async fn send(&self, from: SocketAddr, reply: Reply) {
        let to = match reply.to {
            Destination::Relay(g) => SocketAddrV4::new(g, wire::SERVER_PORT),
            Destination::Unicast(a) => SocketAddrV4::new(a, self.client_port),
            Destination::Broadcast => SocketAddrV4::new(Ipv4Addr::BROADCAST, self.client_port),
        };
        tracing::debug!(
            "dhcp: {from} xid {:08x}: {:?} {} to {to}",
            reply.message.xid,
            reply.message.message_type(),
            reply.message.yiaddr
        );
        if let Err(e) = self.sock.send_to(&reply.message.emit(), to).await {
            self.shared.send_errors.fetch_add(1, Ordering::Relaxed);
            tracing::debug!("dhcp: send to {to}: {e}");
        }
    }
}

/// Writes the lease file after changes, one write in flight, always of the latest table: the
/// changes made while a write is in flight are all covered by the next one (group commit).
/// After each attempt it publishes on `written` the change number the attempt covered, and
/// [`DhcpService::run`] sends the ACKs waiting for changes up to it.
///
/// A failed write is counted (`persist_errors`) and logged, and the ACKs it covered are sent
/// anyway: the server keeps serving with its lease file behind (as before durability was
/// added) rather than leave clients unanswered; the next change retries the write.
async fn persister(
    shared: Arc<Shared>,
    mut stop: watch::Receiver<bool>,
    written: watch::Sender<u64>,
) {
    if shared.state_file.is_none() {
        return;
    }
    loop {
        tokio::select! {
            biased;
            _ = stop.changed() => return,
            _ = shared.persist.notified() => {}
        }
        let s = shared.clone();
        let upto = match tokio::task::spawn_blocking(move || s.save()).await {
            Ok(upto) => upto,
            Err(e) => {
                // The write panicked: a failed write, as above.
                shared.persist_errors.fetch_add(1, Ordering::Relaxed);
                tracing::error!("dhcp: lease-file write failed: {e}");
                let _core = lock(&shared.core);
                shared.changes.load(Ordering::Relaxed)
            }
        };
        written.send_replace(upto);
    }
}

#[cfg(test)]
mod tests;

/// Says in the log when the pool enters or leaves pressure (module `pressure`).
fn log_pressure(p: pressure::Pressure) {
    if p.under {
        tracing::warn!(
            "dhcp: pool under pressure: {} of {} addresses free; new clients are rate-limited \
             and get {} s leases until it recovers (a host requesting addresses from many MACs?)",
            p.free,
            p.size,
            pressure::PRESSURE_LEASE_SECS
        );
    } else {
        tracing::info!(
            "dhcp: pool no longer under pressure: {} of {} addresses free",
            p.free,
            p.size
        );
    }
}
