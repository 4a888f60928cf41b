//! The router's port-mapping service on the LAN: UPnP IGD (SSDP, descriptions, SOAP control,
//! GENA eventing), NAT-PMP and PCP, over one mapping table whose every change goes into the
//! NAT at once and into the state file.
//!
//! Layers:
//! - [`core`]: the protocol decisions, sans-IO (`now` in, NAT engine passed in): SOAP action
//!   dispatch, NAT-PMP / PCP, the NAT side of each table change, the evented variables.
//! - [`events`]: the GENA subscriber table (pure) and the per-subscriber NOTIFY senders.
//! - [`ssdp`]: what to answer a search with (pure) and the SSDP socket loop.
//! - [`http`]: the hyper server for descriptions, SCPDs, control and SUBSCRIBE.
//! - this module: configuration, identity (UUID, BOOTID, CONFIGID, persisted in the state
//!   directory), the [`Clock`] the shell reads time from, and [`UpnpService`], which binds
//!   every socket on the LAN address, restores the mappings, and runs the tasks until
//!   shutdown (byebye, final save).
//!
//! Nothing listens on the WAN: the HTTP and NAT-PMP sockets bind the LAN address; the SSDP
//! socket binds port 1900 on all addresses (multicast needs it) but joins the group on the LAN
//! interface only and drops datagrams whose source is not in the LAN subnet.

pub mod core;
pub mod events;
pub mod http;
pub mod http1;
pub mod natpmp;
pub mod pcp;
pub mod ssdp;

use std::collections::HashMap;
use std::future::Future;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result};
use serde::Serialize;
use shared::description::{self, DeviceInfo, RootConfig};
use shared::igd::{Protocol, ServiceKind};
use shared::ssdp::IgdIdentity;
use tokio::net::{TcpListener, UdpSocket};
use tokio::sync::{Notify, mpsc, watch};

use crate::mapping::{TableConfig, persist};
use crate::nat::Nat;

use self::core::{Core, CoreConfig};
use self::events::{Delivery, SendReport, Subscribers};
use self::ssdp::{Advertiser, SsdpSocketConfig};

/// The service's time source. The real one reads the system clocks; tests use
/// [`ManualClock`] to jump over leases.
pub trait Clock: Send + Sync + std::fmt::Debug + 'static {
    /// Monotonic now.
    fn now(&self) -> Instant;
    /// Wall-clock seconds since the Unix epoch (the state file's timestamps).
    fn unix(&self) -> u64;
}

/// The system clocks.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Instant {
        Instant::now()
    }
    fn unix(&self) -> u64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs())
    }
}

/// A clock that moves only when told to (tests).
#[derive(Debug)]
pub struct ManualClock {
    base: Instant,
    base_unix: u64,
    offset: Mutex<Duration>,
}

impl ManualClock {
    /// Starts at the real now.
    pub fn new() -> Self {
        ManualClock {
            base: Instant::now(),
            base_unix: SystemClock.unix(),
            offset: Mutex::new(Duration::ZERO),
        }
    }

    /// Moves time forward.
    pub fn advance(&self, d: Duration) {
        *self.offset.lock().unwrap_or_else(PoisonError::into_inner) += d;
    }
}

impl Default for ManualClock {
    fn default() -> Self {
        Self::new()
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Instant {
        self.base + *self.offset.lock().unwrap_or_else(PoisonError::into_inner)
    }
    fn unix(&self) -> u64 {
        self.base_unix
            + self
                .offset
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .as_secs()
    }
}

/// Configuration of the service.
#[derive(Debug, Clone)]
pub struct UpnpConfig {
    /// The LAN address: HTTP and NAT-PMP bind it, LOCATION names it.
    pub lan_addr: Ipv4Addr,
    /// The LAN prefix length: sources outside `lan_addr/lan_prefix` are not answered.
    pub lan_prefix: u8,
    /// HTTP port (miniupnpd's 5000 by default; 0 = any, for tests).
    pub http_port: u16,
    /// SSDP socket; None = no SSDP.
    pub ssdp: Option<SsdpSocketConfig>,
    /// NAT-PMP / PCP port (5351); None = off.
    pub pmp_port: Option<u16>,
    /// Send the NAT-PMP / PCP announcements to 224.0.0.1:5350 (RFC 6886 §3.2.1).
    pub pmp_announce: bool,
    /// IGD version offered: 2 (default) or 1.
    pub igd_version: u32,
    /// Mapping table settings (secure mode, rules, limits).
    pub table: TableConfig,
    /// Where the mappings, the UUID and the boot id are kept; None = nothing persists.
    pub state_dir: Option<PathBuf>,
    /// SSDP CACHE-CONTROL max-age, seconds.
    pub max_age: u32,
    /// Description strings.
    pub info: DeviceInfo,
    /// GetCommonLinkProperties bit rates (up, down).
    pub link_bit_rates: (u32, u32),
    /// Seed for the SSDP answer delays (None: random). SIDs and UUIDs always come from the
    /// OS random source.
    pub seed: Option<u64>,
}

/// Our product token (UDA 1.1 §1.1.3: `OS/version UPnP/1.1 product/version`).
pub const SERVER: &str = concat!("Linux UPnP/1.1 hnib-router/", env!("CARGO_PKG_VERSION"));

impl UpnpConfig {
    /// The production defaults on a LAN address: HTTP 5000, SSDP on 1900 with multicast on
    /// the LAN address, NAT-PMP / PCP on 5351 with announcements, IGD:2, secure mode.
    pub fn new(lan_addr: Ipv4Addr, lan_prefix: u8) -> Self {
        UpnpConfig {
            lan_addr,
            lan_prefix,
            http_port: 5000,
            ssdp: Some(SsdpSocketConfig {
                bind: SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, shared::ssdp::PORT),
                multicast_if: Some(lan_addr),
            }),
            pmp_port: Some(shared::natpmp::SERVER_PORT),
            pmp_announce: true,
            igd_version: 2,
            table: TableConfig::default(),
            state_dir: None,
            max_age: 1800,
            info: default_info(),
            link_bit_rates: (1_000_000_000, 1_000_000_000),
            seed: None,
        }
    }

    /// Everything on ephemeral ports of `addr` (a loopback address), no multicast: for tests
    /// and the benchmark.
    pub fn loopback(addr: Ipv4Addr) -> Self {
        UpnpConfig {
            http_port: 0,
            ssdp: Some(SsdpSocketConfig {
                bind: SocketAddrV4::new(addr, 0),
                multicast_if: None,
            }),
            pmp_port: Some(0),
            pmp_announce: false,
            ..UpnpConfig::new(addr, 8)
        }
    }
}

/// `[upnp]` in the router's TOML file. Every field is optional; the service runs by default.
///
/// ```toml
/// [upnp]
/// enabled = true            # the IGD, NAT-PMP and PCP service
/// http_port = 5000          # description / control / events
/// igd_version = 2           # 1: offer only InternetGatewayDevice:1
/// secure_mode = true        # clients map only to themselves
/// natpmp = true             # NAT-PMP and PCP on UDP 5351
/// state_dir = "/var/lib/hnib-router"   # mappings, UUID, BOOTID (unset: nothing persists)
/// max_age = 1800            # SSDP CACHE-CONTROL max-age
/// max_per_client = 256
/// max_total = 1024
/// rules = ["allow 1024-65535 192.168.1.0/24 1024-65535", "deny 0-65535 0.0.0.0/0 0-65535"]
/// friendly_name = "Lab router"
/// ```
#[derive(Debug, Clone, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpnpSection {
    pub enabled: Option<bool>,
    pub http_port: Option<u16>,
    pub igd_version: Option<u32>,
    pub secure_mode: Option<bool>,
    pub natpmp: Option<bool>,
    pub state_dir: Option<PathBuf>,
    pub max_age: Option<u32>,
    pub max_per_client: Option<usize>,
    pub max_total: Option<usize>,
    pub rules: Option<Vec<String>>,
    pub friendly_name: Option<String>,
}

impl UpnpSection {
    /// Checks the values: Err((field, problem, fix)).
    pub fn validate(&self) -> Result<(), (&'static str, String, String)> {
        if let Some(v) = self.igd_version
            && !(1..=2).contains(&v)
        {
            return Err((
                "igd_version",
                format!("{v} is not 1 or 2"),
                "set igd_version = 2 (or 1 for IGD:1 only)".into(),
            ));
        }
        if let Some(m) = self.max_age
            && !(60..=86_400).contains(&m)
        {
            return Err((
                "max_age",
                format!("{m} is outside 60..=86400"),
                "use e.g. max_age = 1800".into(),
            ));
        }
        self.rules().map_err(|e| {
            (
                "rules",
                e.to_string(),
                "write rules as \"allow|deny EXT-PORTS ADDR/MASK INT-PORTS\"".into(),
            )
        })?;
        Ok(())
    }

    fn rules(&self) -> Result<crate::mapping::Rules, crate::mapping::RuleError> {
        crate::mapping::Rules::parse(&self.rules.clone().unwrap_or_default().join("\n"))
    }

    /// Whether the service should run.
    pub fn enabled(&self) -> bool {
        self.enabled.unwrap_or(true)
    }

    /// The service configuration on the LAN address `lan/prefix`.
    pub fn to_config(&self, lan: Ipv4Addr, prefix: u8) -> UpnpConfig {
        let mut c = UpnpConfig::new(lan, prefix);
        if let Some(p) = self.http_port {
            c.http_port = p;
        }
        c.igd_version = self.igd_version.unwrap_or(2);
        c.table.secure_mode = self.secure_mode.unwrap_or(true);
        if let Some(n) = self.max_per_client {
            c.table.max_per_client = n;
        }
        if let Some(n) = self.max_total {
            c.table.max_total = n;
        }
        c.table.rules = self.rules().unwrap_or_default();
        if self.natpmp == Some(false) {
            c.pmp_port = None;
            c.pmp_announce = false;
        }
        c.state_dir = self.state_dir.clone();
        if let Some(m) = self.max_age {
            c.max_age = m;
        }
        if let Some(n) = &self.friendly_name {
            c.info.friendly_name = n.clone();
        }
        c
    }
}

/// The description strings we use unless configured.
pub fn default_info() -> DeviceInfo {
    DeviceInfo {
        friendly_name: "Home network in a box router".into(),
        manufacturer: "hnib".into(),
        manufacturer_url: "https://example.invalid/hnib".into(),
        model_description: "Userspace home router (NAT, UPnP IGD, NAT-PMP, PCP)".into(),
        model_name: "hnib-router".into(),
        model_number: env!("CARGO_PKG_VERSION").into(),
        model_url: "https://example.invalid/hnib/router".into(),
        serial_number: "00000001".into(),
        presentation_url: None,
    }
}

/// Counters of the service, by protocol (malformed input is counted and dropped or answered
/// with the protocol's error).
#[derive(Debug, Default)]
pub struct Stats {
    /// SSDP datagrams that did not parse.
    pub ssdp_malformed: AtomicU64,
    /// SSDP datagrams from outside the LAN subnet (dropped).
    pub ssdp_not_lan: AtomicU64,
    /// Searches answered.
    pub ssdp_searches: AtomicU64,
    /// Searches dropped because too many answers were pending.
    pub ssdp_dropped: AtomicU64,
    /// HTTP requests.
    pub http_requests: AtomicU64,
    /// HTTP requests refused before reaching SOAP / GENA (size, time, method, path).
    pub http_errors: AtomicU64,
    /// Connections closed unanswered: the client (or the server) had its most open.
    pub http_refused: AtomicU64,
    /// SOAP requests answered with a fault.
    pub soap_faults: AtomicU64,
    /// SOAP bodies that did not parse.
    pub soap_malformed: AtomicU64,
    /// GENA requests refused.
    pub gena_refused: AtomicU64,
    /// Events delivered.
    pub events_sent: AtomicU64,
    /// Events not delivered (subscriber dead or slow).
    pub events_failed: AtomicU64,
    /// NAT-PMP / PCP requests.
    pub pmp_requests: AtomicU64,
    /// NAT-PMP / PCP datagrams that did not parse.
    pub pmp_malformed: AtomicU64,
    /// State file writes that failed.
    pub persist_errors: AtomicU64,
}

impl SendReport for Stats {
    fn report(&self, delivered: bool) {
        if delivered {
            self.events_sent.fetch_add(1, Ordering::Relaxed);
        } else {
            self.events_failed.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// A snapshot of [`Stats`] plus table sizes, for the control API.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct StatsSnapshot {
    pub ssdp_malformed: u64,
    pub ssdp_not_lan: u64,
    pub ssdp_searches: u64,
    pub ssdp_dropped: u64,
    pub http_requests: u64,
    pub http_errors: u64,
    pub http_refused: u64,
    pub soap_faults: u64,
    pub soap_malformed: u64,
    pub gena_refused: u64,
    pub events_sent: u64,
    pub events_failed: u64,
    pub pmp_requests: u64,
    pub pmp_malformed: u64,
    pub persist_errors: u64,
    pub mappings: usize,
    pub subscribers: usize,
}

/// One mapping as the control API shows it.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct MappingStatus {
    pub protocol: String,
    pub external_port: u16,
    pub remote_host: Option<Ipv4Addr>,
    pub internal_client: Ipv4Addr,
    pub internal_port: u16,
    pub enabled: bool,
    pub description: String,
    /// Remaining lease, seconds; None = permanent.
    pub lease_remaining: Option<u64>,
    pub origin: &'static str,
    pub owner: Ipv4Addr,
}

/// State shared by the tasks of the service.
#[derive(Debug)]
pub(crate) struct Shared {
    clock: Arc<dyn Clock>,
    core: Mutex<Core>,
    nat: Arc<Mutex<Nat>>,
    subs: Mutex<Subscribers<mpsc::Sender<Delivery>>>,
    stats: Arc<Stats>,
    /// GET path -> document (root descriptions of both variants, SCPDs).
    documents: HashMap<&'static str, String>,
    /// The control and event paths, by service.
    control: Vec<(&'static str, ServiceKind)>,
    events: Vec<(&'static str, ServiceKind)>,
    lan: (Ipv4Addr, u8),
    state_file: Option<PathBuf>,
    persist: Notify,
    wake: Notify,
    /// Where the sockets ended up (ports 0 resolved).
    http_addr: SocketAddr,
    ssdp_addr: Option<SocketAddr>,
    pmp_addr: Option<SocketAddr>,
    pmp_sock: Option<Arc<UdpSocket>>,
    pmp_announce: bool,
    /// The WAN address NAT-PMP / PCP clients were last told about.
    last_wan: Mutex<Ipv4Addr>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Shared {
    /// Runs `f` on the core and the NAT (lock order: core, then NAT), then saves and sends
    /// events if the table or the evented state changed.
    fn with_core<R>(&self, f: impl FnOnce(Instant, &mut Core, &mut Nat) -> R) -> R {
        let now = self.clock.now();
        let mut core = lock(&self.core);
        let mut nat = lock(&self.nat);
        let r = f(now, &mut core, &mut nat);
        if core.take_dirty() {
            self.persist.notify_one();
            self.wake.notify_one();
        }
        let events = core.take_events(now, &nat);
        drop(nat);
        drop(core);
        for (kind, props) in events {
            self.broadcast(now, kind, &props);
        }
        r
    }

    fn broadcast(&self, now: Instant, kind: ServiceKind, props: &[(String, String)]) {
        let mut subs = lock(&self.subs);
        for (tx, d) in subs.broadcast(now, kind, props) {
            if tx.try_send(d).is_err() {
                self.stats.events_failed.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    fn save(&self) {
        let Some(path) = &self.state_file else { return };
        let text = {
            let core = lock(&self.core);
            persist::save(core.table(), self.clock.now(), self.clock.unix())
        };
        if let Err(e) = persist::write_atomic(path, text.as_bytes()) {
            self.stats.persist_errors.fetch_add(1, Ordering::Relaxed);
            tracing::warn!("upnp: cannot save {}: {e}", path.display());
        }
    }
}

/// A handle on a running (or bound) service: status for the control API, the WAN change
/// notifier, and time control for tests.
#[derive(Debug, Clone)]
pub struct UpnpHandle {
    shared: Arc<Shared>,
}

impl UpnpHandle {
    /// The WAN address changed (control API or WAN poll): subscribers get ExternalIPAddress
    /// (and ConnectionStatus if it went up or down), NAT-PMP / PCP clients an announcement
    /// (RFC 6886 §3.2.1, RFC 6887 §14.1.3).
    pub fn wan_changed(&self) {
        self.shared.with_core(|_, _, _| ());
        self.announce_if_wan_changed();
    }

    fn announce_if_wan_changed(&self) {
        let wan = lock(&self.shared.nat).wan_addr();
        {
            let mut last = lock(&self.shared.last_wan);
            if *last == wan {
                return;
            }
            *last = wan;
        }
        if self.shared.pmp_announce
            && let Some(sock) = self.shared.pmp_sock.clone()
        {
            tokio::spawn(natpmp::announce(sock, self.shared.clone()));
        }
    }

    /// Expires leases and subscriptions at the clock's now (the service does this on its own
    /// every second; tests with a [`ManualClock`] call it after advancing).
    pub fn tick(&self) {
        let now = self.shared.clock.now();
        lock(&self.shared.subs).expire(now);
        self.shared
            .with_core(|now, core, nat| core.expire(now, nat));
        self.announce_if_wan_changed();
    }

    /// The counters.
    pub fn stats(&self) -> StatsSnapshot {
        let s = &self.shared.stats;
        let g = |a: &AtomicU64| a.load(Ordering::Relaxed);
        StatsSnapshot {
            ssdp_malformed: g(&s.ssdp_malformed),
            ssdp_not_lan: g(&s.ssdp_not_lan),
            ssdp_searches: g(&s.ssdp_searches),
            ssdp_dropped: g(&s.ssdp_dropped),
            http_requests: g(&s.http_requests),
            http_errors: g(&s.http_errors),
            http_refused: g(&s.http_refused),
            soap_faults: g(&s.soap_faults),
            soap_malformed: g(&s.soap_malformed),
            gena_refused: g(&s.gena_refused),
            events_sent: g(&s.events_sent),
            events_failed: g(&s.events_failed),
            pmp_requests: g(&s.pmp_requests),
            pmp_malformed: g(&s.pmp_malformed),
            persist_errors: g(&s.persist_errors),
            mappings: lock(&self.shared.core).table().iter().count(),
            subscribers: lock(&self.shared.subs).len(),
        }
    }

    /// The mapping table.
    pub fn mappings(&self) -> Vec<MappingStatus> {
        let now = self.shared.clock.now();
        let core = lock(&self.shared.core);
        core.table()
            .iter()
            .map(|m| MappingStatus {
                protocol: m.protocol.to_string(),
                external_port: m.external_port,
                remote_host: m.remote_host,
                internal_client: m.internal_client,
                internal_port: m.internal_port,
                enabled: m.enabled,
                description: m.description.clone(),
                lease_remaining: m
                    .lease_end
                    .map(|e| e.saturating_duration_since(now).as_secs()),
                origin: m.origin.as_str(),
                owner: m.owner,
            })
            .collect()
    }

    /// Deletes a mapping for the administrator (the admin page), whoever owns it; its forward
    /// goes at once and subscribers hear of it. False when there is no such mapping.
    pub fn admin_delete(&self, protocol: shared::igd::Protocol, external_port: u16) -> bool {
        self.shared
            .with_core(|now, core, nat| core.admin_delete(now, nat, protocol, external_port))
    }

    /// Where HTTP listens.
    pub fn http_addr(&self) -> SocketAddr {
        self.shared.http_addr
    }

    /// The root description URL of IGD `version`.
    pub fn location(&self, version: u32) -> String {
        format!(
            "http://{}{}",
            self.shared.http_addr,
            description::root_description_path(version)
        )
    }

    /// Where SSDP listens.
    pub fn ssdp_addr(&self) -> Option<SocketAddr> {
        self.shared.ssdp_addr
    }

    /// Where NAT-PMP / PCP listens.
    pub fn pmp_addr(&self) -> Option<SocketAddr> {
        self.shared.pmp_addr
    }

    /// Switches secure mode (admin).
    pub fn set_secure_mode(&self, on: bool) {
        lock(&self.shared.core).set_secure_mode(on);
    }
}

/// The device's identity, persisted in the state directory so UDNs stay the same and
/// BOOTID.UPNP.ORG increases across restarts (UDA 1.1 §1.2.2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// Root, WANDevice, WANConnectionDevice UUIDs.
    pub uuids: [String; 3],
    /// BOOTID of this run.
    pub boot_id: u32,
}

/// Derives the embedded devices' UUIDs from the root's by its last hex digit.
fn derive_uuids(root: &str) -> [String; 3] {
    let alt = |n: u32| {
        let mut s = root.to_string();
        if let Some(last) = s.pop() {
            let d = last.to_digit(16).unwrap_or(0);
            s.push(char::from_digit((d + n) % 16, 16).unwrap_or('0'));
        }
        s
    };
    [root.to_string(), alt(1), alt(2)]
}

fn valid_uuid(s: &str) -> bool {
    s.len() == 36
        && s.char_indices().all(|(i, c)| {
            if [8, 13, 18, 23].contains(&i) {
                c == '-'
            } else {
                c.is_ascii_hexdigit()
            }
        })
}

/// Loads (or creates) the identity in `dir`: `upnp-uuid` and `upnp-bootid`.
/// A new UUID comes from the OS random source ([`events::os_uuid`]).
pub fn load_identity(dir: Option<&Path>) -> Result<Identity> {
    let Some(dir) = dir else {
        return Ok(Identity {
            uuids: derive_uuids(&events::os_uuid()),
            boot_id: 1,
        });
    };
    std::fs::create_dir_all(dir)
        .with_context(|| format!("cannot create the state directory {}", dir.display()))?;
    let uuid_file = dir.join("upnp-uuid");
    let root = match std::fs::read_to_string(&uuid_file) {
        Ok(s) if valid_uuid(s.trim()) => s.trim().to_string(),
        _ => {
            let u = events::os_uuid();
            persist::write_atomic(&uuid_file, format!("{u}\n").as_bytes())
                .with_context(|| format!("cannot write {}", uuid_file.display()))?;
            u
        }
    };
    let boot_file = dir.join("upnp-bootid");
    let boot_id = std::fs::read_to_string(&boot_file)
        .ok()
        .and_then(|s| s.trim().parse::<u32>().ok())
        .map_or(1, |b| b.wrapping_add(1) & 0x7fff_ffff);
    persist::write_atomic(&boot_file, format!("{boot_id}\n").as_bytes())
        .with_context(|| format!("cannot write {}", boot_file.display()))?;
    Ok(Identity {
        uuids: derive_uuids(&root),
        boot_id,
    })
}

/// CONFIGID.UPNP.ORG / configId: a hash of what the descriptions are made of, in the range
/// UDA 1.1 §1.2.2 allows (0..=16777215), so it changes exactly when they do.
pub fn config_id(version: u32, uuids: &[String; 3], info: &DeviceInfo) -> u32 {
    let mut h: u32 = 0x811c_9dc5;
    let text = format!("{version}|{uuids:?}|{info:?}|{}", env!("CARGO_PKG_VERSION"));
    for b in text.bytes() {
        h = (h ^ u32::from(b)).wrapping_mul(0x0100_0193);
    }
    h & 0x00ff_ffff
}

/// The service, sockets bound, mappings restored, not yet running.
#[derive(Debug)]
pub struct UpnpService {
    shared: Arc<Shared>,
    http: TcpListener,
    ssdp: Option<(Arc<UdpSocket>, bool)>,
    pmp: Option<Arc<UdpSocket>>,
    adv: Arc<Advertiser>,
    seed: u64,
}

impl UpnpService {
    /// Binds every socket on the LAN address, loads the identity and the mappings (and puts
    /// their forwards into the NAT). Errors here come before anything runs.
    pub async fn bind(
        cfg: UpnpConfig,
        nat: Arc<Mutex<Nat>>,
        clock: Arc<dyn Clock>,
    ) -> Result<Self> {
        // Only the SSDP answer delays draw from the seed; SIDs and UUIDs come from the OS.
        let seed = cfg.seed.unwrap_or_else(rand::random);
        let version = if cfg.igd_version >= 2 { 2 } else { 1 };
        let identity = load_identity(cfg.state_dir.as_deref())?;
        let config_id = config_id(version, &identity.uuids, &cfg.info);

        let http = TcpListener::bind(SocketAddrV4::new(cfg.lan_addr, cfg.http_port))
            .await
            .with_context(|| {
                format!("upnp: cannot listen on {}:{}", cfg.lan_addr, cfg.http_port)
            })?;
        let http_addr = http.local_addr()?;
        let ssdp = match &cfg.ssdp {
            None => None,
            Some(s) => Some((
                Arc::new(
                    ssdp::open(s)
                        .with_context(|| format!("upnp: cannot open SSDP on {}", s.bind))?,
                ),
                s.multicast_if.is_some(),
            )),
        };
        let pmp = match cfg.pmp_port {
            None => None,
            Some(port) => Some(Arc::new(
                natpmp::open(SocketAddrV4::new(cfg.lan_addr, port)).with_context(|| {
                    format!("upnp: cannot open NAT-PMP on {}:{port}", cfg.lan_addr)
                })?,
            )),
        };

        // Documents: both root description variants (the v1 one for v1 clients), and SCPDs.
        let mut documents: HashMap<&'static str, String> = HashMap::new();
        for v in 1..=version {
            let root = RootConfig {
                igd_version: v,
                uuids: identity.uuids.clone(),
                info: cfg.info.clone(),
                config_id,
            };
            documents.insert(
                description::root_description_path(v),
                description::root_description(&root),
            );
            for (path, doc) in description::scpds(v) {
                documents.insert(path, doc);
            }
        }
        let kinds = [
            ServiceKind::WanIpConnection,
            ServiceKind::WanCommonInterfaceConfig,
            ServiceKind::Layer3Forwarding,
        ];
        let control = kinds
            .iter()
            .map(|k| (description::service_urls(*k, version).control, *k))
            .collect();
        let events = kinds
            .iter()
            .map(|k| (description::service_urls(*k, version).event, *k))
            .collect();

        // The static forwards are another mechanism's ports (729 on v2).
        let mut table = cfg.table.clone();
        {
            let n = lock(&nat);
            for f in n.forwards() {
                let p = match f.protocol {
                    crate::nat::Protocol::Tcp => Protocol::Tcp,
                    crate::nat::Protocol::Udp => Protocol::Udp,
                };
                table
                    .reserved
                    .push((Some(p), f.external_port, f.external_port));
            }
        }
        let now = clock.now();
        let mut core = Core::new(
            CoreConfig {
                igd_version: version,
                wan_conn_uuid: identity.uuids[2].clone(),
                link_bit_rates: cfg.link_bit_rates,
            },
            table,
            now,
        );
        let state_file = cfg.state_dir.as_ref().map(|d| d.join("igd-mappings"));
        if let Some(path) = &state_file {
            match std::fs::read_to_string(path) {
                Ok(text) => match persist::load(&text, now, clock.unix()) {
                    Ok(ms) => {
                        let mut n = lock(&nat);
                        let restored = core.restore(now, &mut n, ms);
                        tracing::info!(
                            "upnp: restored {restored} mappings from {}",
                            path.display()
                        );
                    }
                    Err(e) => tracing::warn!("upnp: ignoring {}: {e}", path.display()),
                },
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => tracing::warn!("upnp: cannot read {}: {e}", path.display()),
            }
        }
        // Record the evented state now, so the first real change is what gets sent.
        {
            let n = lock(&nat);
            core.take_events(now, &n);
            core.take_dirty();
        }

        let wan_now = lock(&nat).wan_addr();
        let location = |v: u32| {
            format!(
                "http://{http_addr}{}",
                description::root_description_path(v)
            )
        };
        let adv = Arc::new(Advertiser {
            id: IgdIdentity {
                root_uuid: identity.uuids[0].clone(),
                wan_uuid: identity.uuids[1].clone(),
                wan_conn_uuid: identity.uuids[2].clone(),
                version,
            },
            location: location(version),
            location_v1: location(1),
            server: SERVER.to_string(),
            max_age: cfg.max_age,
            boot_id: identity.boot_id,
            config_id,
        });
        let shared = Arc::new(Shared {
            clock,
            core: Mutex::new(core),
            nat,
            subs: Mutex::new(Subscribers::new(events::MAX_SUBSCRIBERS)),
            stats: Arc::new(Stats::default()),
            documents,
            control,
            events,
            lan: (cfg.lan_addr, cfg.lan_prefix),
            state_file,
            persist: Notify::new(),
            wake: Notify::new(),
            http_addr,
            ssdp_addr: ssdp.as_ref().and_then(|(s, _)| s.local_addr().ok()),
            pmp_addr: pmp.as_ref().and_then(|s| s.local_addr().ok()),
            pmp_sock: pmp.clone(),
            pmp_announce: cfg.pmp_announce,
            last_wan: Mutex::new(wan_now),
        });
        Ok(UpnpService {
            shared,
            http,
            ssdp,
            pmp,
            adv,
            seed,
        })
    }

    /// A handle for status and notifications.
    pub fn handle(&self) -> UpnpHandle {
        UpnpHandle {
            shared: self.shared.clone(),
        }
    }

    /// Runs until `shutdown` completes; then byebye, and a last save of the table.
    pub async fn run(self, shutdown: impl Future<Output = ()>) {
        let (stop_tx, stop_rx) = watch::channel(false);
        let shared = self.shared.clone();
        let mut tasks = tokio::task::JoinSet::new();
        tasks.spawn(http::serve(self.http, shared.clone(), stop_rx.clone()));
        if let Some((sock, multicast)) = self.ssdp {
            tasks.spawn(ssdp::run(
                sock,
                self.adv.clone(),
                shared.lan,
                multicast,
                shared.stats.clone(),
                self.seed,
                stop_rx.clone(),
            ));
        }
        if let Some(sock) = self.pmp {
            if shared.pmp_announce {
                tasks.spawn(natpmp::announce(sock.clone(), shared.clone()));
            }
            tasks.spawn(natpmp::serve(sock, shared.clone(), stop_rx.clone()));
        }
        tasks.spawn(housekeeping(shared.clone(), stop_rx.clone()));
        tasks.spawn(persister(shared.clone(), stop_rx));
        tracing::info!(
            "upnp: IGD at http://{}{}, SSDP {:?}, NAT-PMP/PCP {:?}",
            shared.http_addr,
            description::root_description_path(self.adv.id.version),
            shared.ssdp_addr,
            shared.pmp_addr
        );
        shutdown.await;
        let _ = stop_tx.send(true);
        // The tasks see the flag and finish (SSDP sends byebye first); a stuck one is cut off.
        let _ = tokio::time::timeout(Duration::from_secs(2), async {
            while tasks.join_next().await.is_some() {}
        })
        .await;
        tasks.abort_all();
        shared.save();
        tracing::info!("upnp: stopped");
    }
}

/// Expires leases and subscriptions, and notices WAN address changes made behind our back,
/// at the next lease end or once a second, whichever is first.
async fn housekeeping(shared: Arc<Shared>, mut stop: watch::Receiver<bool>) {
    loop {
        let now = shared.clock.now();
        let next = lock(&shared.core)
            .next_deadline()
            .map_or(Duration::from_secs(1), |d| d.saturating_duration_since(now))
            .min(Duration::from_secs(1));
        tokio::select! {
            _ = stop.changed() => return,
            _ = tokio::time::sleep(next) => {}
            _ = shared.wake.notified() => continue,
        }
        UpnpHandle {
            shared: shared.clone(),
        }
        .tick();
    }
}

/// Writes the state file after changes, coalescing bursts (one write in flight at a time,
/// always of the latest table).
async fn persister(shared: Arc<Shared>, mut stop: watch::Receiver<bool>) {
    if shared.state_file.is_none() {
        return;
    }
    loop {
        tokio::select! {
            _ = stop.changed() => return,
            _ = shared.persist.notified() => {}
        }
        let s = shared.clone();
        let _ = tokio::task::spawn_blocking(move || s.save()).await;
    }
}
