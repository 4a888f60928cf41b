//! The port manager as a sans-IO state machine (quinn style, see STYLE.md): no sockets, no clock,
//! no randomness of its own. The driver feeds it [`Input`]s with the current time, calls
//! [`PortManager::handle_timeout`] at [`PortManager::poll_timeout`], and carries out every
//! [`Output`] (send an M-SEARCH, POST a SOAP request, send a LAN datagram, publish the Directory,
//! save the identity).
//!
//! What it does, by the server patent's flows (specs/server-patent.md):
//! 1. Start (Fig. 3): discover the IGD with SSDP M-SEARCH (back-off 1 s doubling to 30 s), fetch
//!    its description and find the WANIPConnection control URL.
//! 2. Claim 1/17: `AddPortMapping(8080)`; granted -> representative. Refused with 718 (or 729,
//!    606) -> the next port from 8081 up (Fig. 8a), or `AddAnyPortMapping` on an IGD:2 with a
//!    common internal port (Fig. 8b). 724 -> internal port = external port; 725 -> a permanent
//!    lease.
//! 3. Claim 18: `GetExternalIPAddress`; a private or carrier-grade NAT address is reported as
//!    double NAT (Reachability::DoubleNat), we keep serving the LAN and keep checking.
//! 4. Claims 2, 5, 19 (embodiments 1, 3): the representative walks the router's table every
//!    `walk_interval` (`GetListOfPortMappings` on IGD:2, else `GetGenericPortMappingEntry` from
//!    index 0 until 713) and keeps the entries whose description is ours ([`super::desc`]).
//! 5. Claim 6: a node that did not get 8080 sends its own-port notice on the LAN at once
//!    (multicast, and unicast to the representative once known), repeated a few times until the
//!    representative acknowledges it. The representative lists it at once.
//! 6. Leases are renewed at half-life; a failed or timed-out control request, an SSDP byebye or a
//!    changed BOOTID sends us back to discovery, after which we ask for the same port again.
//! 7. Rename: persist, re-add the mapping with the new description, send a new notice.
//! 8. Shutdown: `DeletePortMapping` for our own mapping, then [`Output::Done`].
//! 9. Rotation (embodiment 4, claims 9-15, Fig. 11-14): once a node holds a port it runs the
//!    election ([`crate::election::Election`]), fed with the LAN message types 3-10; this module
//!    carries out what the election decides at the router (the takeover of Fig. 14, standing
//!    down, verifying and reclaiming the representative port), merges the inquiry answers
//!    (embodiment 2) with the table walk and the own-port notices, and sends the bye-bye
//!    (claim 13) before the representative's mapping is deleted at shutdown.

use std::collections::{BTreeMap, VecDeque};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::time::{Duration, Instant};

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use shared::description::find_igd_services;
use shared::igd::{
    Action, AddPortMapping, MappingKey, PortMappingEntry, PortRange, Protocol, Reply, ServiceKind,
};
use shared::url::HttpUrl;
use shared::{lanproto, soap, ssdp};

use super::desc;
mod dupid;
pub use super::guard::is_private_or_cgnat;
use super::guard::{self, is_igd_type, usn_uuid};
use crate::config::{Config, InternalPortMode};
use crate::directory::{Directory, NodeCommand, Peer, PeerSource, Reachability, Role};
use crate::election::{self, Dest, Election, Event as ElectionEvent};
use crate::identity::{self, Identity, NameOrigin};

/// The search targets of discovery: the IGD device (both versions) and the connection service
/// (some routers answer only for the service).
pub const SEARCH_TARGETS: [&str; 3] = [
    "urn:schemas-upnp-org:device:InternetGatewayDevice:2",
    "urn:schemas-upnp-org:device:InternetGatewayDevice:1",
    "urn:schemas-upnp-org:service:WANIPConnection:1",
];
/// Most entries one table walk reads (GetGenericPortMappingEntry indexes), a guard against a
/// router that never answers 713.
pub const MAX_WALK_ENTRIES: u32 = 1024;
/// How often a successor asks for the representative port around the lapse of the old
/// holder's lease (secure mode).
pub const REP_FAST_RETRY: Duration = Duration::from_millis(200);

/// Tunables of the port manager. [`Options::from_config`] fills them from the node's
/// configuration; the rest are defaults documented on each field.
#[derive(Clone, Debug)]
pub struct Options {
    /// The well-known external port of the representative (8080).
    pub representative_port: u16,
    /// The first port the other nodes try (8081).
    pub first_other_port: u16,
    /// How many ports a node tries before it reports Refused (default 64).
    pub max_port_tries: u16,
    /// Fig. 8a (internal = external) or 8b (one common internal port).
    pub internal_port_mode: InternalPortMode,
    /// The common internal port for Fig. 8b.
    pub common_internal_port: u16,
    /// The port the web server listens on (reported as `lan_port` until a mapping exists).
    pub web_port: u16,
    /// Requested lease, seconds; 0 = permanent. Renewed at half-life.
    pub lease_seconds: u32,
    /// The IGD's description URL, skipping SSDP.
    pub igd_url: Option<HttpUrl>,
    /// How often the representative walks the router's table (default 5 s).
    pub walk_interval: Duration,
    /// First M-SEARCH retry interval (default 1 s); doubles per attempt.
    pub search_initial: Duration,
    /// Cap of the M-SEARCH retry interval (default 30 s).
    pub search_max: Duration,
    /// After this long without an IGD, report `NoIgd` and pick a fallback name (default 3 s).
    pub no_igd_after: Duration,
    /// Re-check interval for the external address, and retry interval after a refusal or
    /// double NAT (default 30 s).
    pub recheck_interval: Duration,
    /// The LAN protocol's multicast group and port (239.255.77.77:17777).
    pub lan_group: SocketAddrV4,
    /// When a node repeats its own-port notice, as offsets from the first send (stops early
    /// when the representative acknowledges).
    pub notice_schedule: Vec<Duration>,
    /// How long the representative lists a node known only from its notice, without a mapping
    /// in the router's table (default 15 s).
    pub notice_grace: Duration,
    /// The representative election (embodiment 4); None = no rotation (the node that got the
    /// representative port keeps it, as in issue 5).
    pub election: Option<election::Settings>,
    /// The lease of the representative port while the election runs (default 6 s), renewed at
    /// half-life, so that a dead holder's mapping lapses soon on a router that refuses to delete
    /// another host's mapping (secure mode).
    pub representative_lease_seconds: u32,
    /// How often a successor asks for the representative port again while the router refuses
    /// it (secure mode: until the dead holder's lease lapses; default 1 s).
    pub takeover_retry: Duration,
}

impl Options {
    /// The options for a node's configuration, with the web server on `web_port`.
    pub fn from_config(cfg: &Config, web_port: u16) -> Options {
        Options {
            representative_port: cfg.representative_port,
            first_other_port: cfg.first_other_port,
            internal_port_mode: cfg.internal_port_mode,
            common_internal_port: cfg.common_internal_port,
            lease_seconds: cfg.lease_seconds,
            igd_url: HttpUrl::parse(&cfg.igd_url),
            web_port,
            election: Some(election::Settings::from_config(cfg)),
            representative_lease_seconds: cfg.representative_lease_seconds,
            ..Options::default()
        }
    }
}

impl Default for Options {
    fn default() -> Options {
        Options {
            representative_port: 8080,
            first_other_port: 8081,
            max_port_tries: 64,
            internal_port_mode: InternalPortMode::SameAsExternal,
            common_internal_port: 80,
            web_port: 8080,
            lease_seconds: 3600,
            igd_url: None,
            walk_interval: Duration::from_secs(5),
            search_initial: Duration::from_secs(1),
            search_max: Duration::from_secs(30),
            no_igd_after: Duration::from_secs(3),
            recheck_interval: Duration::from_secs(30),
            lan_group: SocketAddrV4::new(lanproto::DEFAULT_GROUP, lanproto::DEFAULT_PORT),
            notice_schedule: [0, 200, 600, 1400, 3000, 6200]
                .map(Duration::from_millis)
                .to_vec(),
            notice_grace: Duration::from_secs(15),
            election: None,
            representative_lease_seconds: 6,
            takeover_retry: Duration::from_secs(1),
        }
    }
}

/// An HTTP request for the driver: GET (no body) or a SOAP POST.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HttpRequest {
    /// Where.
    pub url: HttpUrl,
    /// The SOAPACTION header value for a POST.
    pub soap_action: Option<String>,
    /// The body: None = GET.
    pub body: Option<Vec<u8>>,
}

/// An HTTP response as the driver read it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HttpResponse {
    /// Status code.
    pub status: u16,
    /// The decoded body.
    pub body: Vec<u8>,
    /// Our address on the connection (the LAN address the router sees).
    pub local_addr: Option<Ipv4Addr>,
}

/// What happened outside.
#[derive(Clone, Debug)]
pub enum Input {
    /// An SSDP datagram (search response or NOTIFY).
    Ssdp { from: SocketAddr, data: Vec<u8> },
    /// The answer to [`Output::Http`] `id`, or why there is none (timeout, refused, ...).
    Http {
        id: u64,
        result: Result<HttpResponse, String>,
    },
    /// A LAN protocol datagram.
    Lan { from: SocketAddrV4, data: Vec<u8> },
    /// A command from the web side.
    Command(NodeCommand),
    /// Stop: delete our mappings, then [`Output::Done`].
    Shutdown,
}

/// What the driver must do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Output {
    /// Send this M-SEARCH to the SSDP multicast group (239.255.255.250:1900).
    SsdpSearch(Vec<u8>),
    /// Do this HTTP request and answer with [`Input::Http`] with the same id.
    Http { id: u64, request: HttpRequest },
    /// Send this LAN protocol datagram.
    Lan { to: SocketAddrV4, data: Vec<u8> },
    /// The Directory changed.
    Publish(Directory),
    /// Persist the identity (new name).
    SaveIdentity(Identity),
    /// Our LAN address is now known (send LAN multicast on its interface).
    LanAddr(Ipv4Addr),
    /// Shutdown finished.
    Done,
}

/// Counters of the LAN protocol receiver (malformed input is counted and dropped).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LanStats {
    pub received: u64,
    pub sent: u64,
    pub malformed: u64,
    pub unknown_version: u64,
    pub unknown_type: u64,
    pub foreign: u64,
    pub duplicates: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Timer {
    Search,
    Renew,
    Walk,
    Notice,
    Recheck,
    NameFallback,
    ShutdownDeadline,
    /// Ask for the representative port again during a takeover or a reclaim (secure mode).
    Takeover,
    /// The request in flight has gone unanswered for [`guard::REQUEST_DEADLINE`].
    Request,
}
const TIMERS: [Timer; 9] = [
    Timer::Search,
    Timer::Renew,
    Timer::Walk,
    Timer::Notice,
    Timer::Recheck,
    Timer::NameFallback,
    Timer::ShutdownDeadline,
    Timer::Takeover,
    Timer::Request,
];

#[derive(Clone, Debug)]
struct Igd {
    control_url: HttpUrl,
    service_type: String,
    v2: bool,
}

/// What we heard from the IGD over SSDP, to notice a restart (UDA 1.1 §1.2.2 BOOTID).
#[derive(Clone, Debug, Default)]
struct SeenIgd {
    uuid: String,
    boot_id: Option<u32>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum AddWhy {
    Claim,
    Renew,
    Rename,
    /// Fig. 14: the successor adds the representative port for itself.
    Takeover,
    /// The election asked us to make sure we still hold the representative port (a candidacy
    /// while we hold it): a refusal means we lost it.
    Verify,
    /// We won a conflict with another representative that may hold the port: add ours after
    /// deleting its mapping; a refusal (secure mode) is asked again until it gives it up.
    Reclaim,
}

#[derive(Clone, Debug)]
enum Op {
    Describe(HttpUrl),
    Add {
        m: AddPortMapping,
        any: bool,
        why: AddWhy,
        tries: u16,
    },
    GetExternal,
    GetSpecific(u16),
    List,
    Entry(u32),
    Delete(u16),
    /// GetSpecificPortMappingEntry, then DeletePortMapping if the mapping is ours (a node that
    /// stands down must not delete its successor's mapping on a permissive router).
    DeleteIfOurs(u16),
    /// Takeover and reclaim (Fig. 14): GetSpecificPortMappingEntry of the representative port
    /// (confirms the router: "rediscover"); another node's mapping -> [`Op::DeleteOld`] (and
    /// its remaining lease noted), then AddPortMapping.
    RepCheck(u16),
    /// DeletePortMapping of another node's representative mapping (606 in secure mode).
    DeleteOld(u16),
}

impl Op {
    fn action(&self) -> Option<Action> {
        Some(match self {
            Op::Describe(_) => return None,
            Op::Add { m, any: false, .. } => Action::AddPortMapping(m.clone()),
            Op::Add { m, any: true, .. } => Action::AddAnyPortMapping(m.clone()),
            Op::GetExternal => Action::GetExternalIpAddress,
            Op::GetSpecific(p) | Op::DeleteIfOurs(p) | Op::RepCheck(p) => {
                Action::GetSpecificPortMappingEntry(key(*p))
            }
            // NewManage = 1: every client's mappings, not only ours (WANIPConnection:2 §2.4.20).
            Op::List => Action::GetListOfPortMappings(
                PortRange {
                    start_port: 1,
                    end_port: 65535,
                    protocol: Protocol::Tcp,
                    manage: true,
                },
                shared::igd::MAX_LISTING as u16,
            ),
            Op::Entry(i) => Action::GetGenericPortMappingEntry(*i),
            Op::Delete(p) | Op::DeleteOld(p) => Action::DeletePortMapping(key(*p)),
        })
    }
}

fn key(port: u16) -> MappingKey {
    MappingKey {
        remote_host: None,
        external_port: port,
        protocol: Protocol::Tcp,
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Mapping {
    external: u16,
    internal: u16,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum WalkPurpose {
    /// Before the first claim of an unnamed node: which "camera N" names are taken.
    Naming,
    /// The representative's periodic collection (embodiments 1, 3).
    Collect,
}

#[derive(Clone, Debug)]
struct Walk {
    purpose: WalkPurpose,
    started: Instant,
    entries: Vec<PortMappingEntry>,
}

#[derive(Clone, Debug)]
struct NoticeState {
    started: Instant,
    first_seq: u64,
    step: usize,
    acked: bool,
}

#[derive(Clone, Debug)]
struct PeerState {
    name: String,
    name_at: Instant,
    lan_addr: Ipv4Addr,
    lan_port: u16,
    external_port: Option<u16>,
    source: PeerSource,
    last_seen: Instant,
    in_table: bool,
    notice_at: Option<Instant>,
    /// In the router's table at the last walk.
    listed: bool,
    /// Answers the representative's inquiries (embodiment 2): until the election reports it
    /// lost, the entry stays even without a mapping.
    answering: bool,
}

/// How a SOAP exchange ended.
enum Outcome {
    Ok(Reply),
    Fault(u16, String),
    /// A response we could read but not use (a field we cannot parse).
    BadReply(String),
    /// No usable response: transport error, timeout, not SOAP.
    Failed(String),
}

fn soap_outcome(action: &Action, result: Result<HttpResponse, String>) -> Outcome {
    let resp = match result {
        Ok(r) => r,
        Err(e) => return Outcome::Failed(e),
    };
    match soap::parse_response(&resp.body) {
        Ok(Err(fault)) => Outcome::Fault(fault.code, fault.description),
        Ok(Ok(_)) if resp.status != 200 => {
            Outcome::Failed(format!("HTTP {} with a non-fault body", resp.status))
        }
        Ok(Ok(ar)) => match action.parse_reply(&ar) {
            Ok(r) => Outcome::Ok(r),
            Err(e) => Outcome::BadReply(e.to_string()),
        },
        Err(e) => Outcome::Failed(format!("HTTP {}: not a SOAP response ({e})", resp.status)),
    }
}

/// The port manager. See the module docs.
#[derive(Debug)]
pub struct PortManager {
    opt: Options,
    rng: SmallRng,
    ident: Identity,
    out: VecDeque<Output>,
    timers: [Option<Instant>; TIMERS.len()],
    // Discovery.
    search_backoff: Duration,
    discovering_since: Option<Instant>,
    describing: bool,
    seen: Option<SeenIgd>,
    igd: Option<Igd>,
    // Control requests: one at a time, in order.
    next_id: u64,
    inflight: Option<(u64, Op)>,
    queue: VecDeque<Op>,
    walk: Option<Walk>,
    // Our mapping and what we learnt about the router.
    mapping: Option<Mapping>,
    force_same_port: bool,
    permanent_only: bool,
    any_unsupported: bool,
    list_unsupported: bool,
    reachability: Reachability,
    external_addr: Option<Ipv4Addr>,
    lan_addr: Option<Ipv4Addr>,
    // LAN protocol.
    seq: u64,
    term: u64,
    notice: Option<NoticeState>,
    rep_addr: Option<Ipv4Addr>,
    last_seq: BTreeMap<u64, (u64, Instant)>,
    heard_names: BTreeMap<u64, String>,
    peers: BTreeMap<u64, PeerState>,
    stats: LanStats,
    dup: dupid::DupState,
    // Rotation (embodiment 4).
    election: Option<Election>,
    /// Fig. 14 in progress: the term we run for.
    takeover: Option<u64>,
    /// Making sure the router maps the representative port to us after a won conflict.
    reclaim: bool,
    /// Takeover or reclaim: since when the router refuses us the representative port (another
    /// node's mapping it will not let us delete), and when that mapping lapses by its lease.
    rep_wait_since: Option<Instant>,
    rep_lapse: Option<Instant>,
    // Output state.
    published: Option<Directory>,
    shutting_down: bool,
    done: bool,
}

impl PortManager {
    /// A port manager for `identity` (name None = pick "camera N" once the table is read).
    /// `seed` seeds the jitter; `initial_sequence` is the first LAN sequence number (the driver
    /// passes its wall clock in milliseconds, so a restarted node continues above its old ones).
    pub fn new(
        opt: Options,
        identity: Identity,
        seed: u64,
        initial_sequence: u64,
        now: Instant,
    ) -> PortManager {
        let mut pm = PortManager {
            search_backoff: opt.search_initial,
            opt,
            rng: SmallRng::seed_from_u64(seed),
            ident: identity,
            out: VecDeque::new(),
            timers: [None; TIMERS.len()],
            discovering_since: None,
            describing: false,
            seen: None,
            igd: None,
            next_id: 1,
            inflight: None,
            queue: VecDeque::new(),
            walk: None,
            mapping: None,
            force_same_port: false,
            permanent_only: false,
            any_unsupported: false,
            list_unsupported: false,
            reachability: Reachability::Discovering,
            external_addr: None,
            lan_addr: None,
            seq: initial_sequence,
            term: 0,
            notice: None,
            rep_addr: None,
            last_seq: BTreeMap::new(),
            heard_names: BTreeMap::new(),
            peers: BTreeMap::new(),
            stats: LanStats::default(),
            dup: dupid::DupState::default(),
            election: None,
            takeover: None,
            reclaim: false,
            rep_wait_since: None,
            rep_lapse: None,
            published: None,
            shutting_down: false,
            done: false,
        };
        if pm.ident.name.is_none() {
            pm.set_timer(Timer::NameFallback, now + pm.opt.no_igd_after);
        }
        pm.begin_discovery(now, true);
        pm.publish(now);
        pm
    }

    // -----------------------------------------------------------------------------------------
    // The driver's interface

    /// Feeds one input.
    pub fn handle_input(&mut self, now: Instant, input: Input) {
        if self.done {
            return;
        }
        match input {
            Input::Ssdp { data, .. } => self.on_ssdp(now, &data),
            Input::Http { id, result } => self.on_http(now, id, result),
            Input::Lan { from, data } => self.on_lan(now, from, &data),
            Input::Command(NodeCommand::Rename(name)) => self.rename(now, &name),
            Input::Shutdown => self.shutdown(now),
        }
        self.drive_election(now);
        self.pump(now);
        self.publish(now);
    }

    /// Runs the timers that are due at `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.done {
            return;
        }
        for (i, t) in TIMERS.iter().enumerate() {
            if self.timers[i].is_some_and(|at| at <= now) {
                self.timers[i] = None;
                self.on_timer(now, *t);
            }
        }
        if let Some(e) = &mut self.election
            && e.poll_timeout().is_some_and(|at| at <= now)
        {
            e.handle_timeout(now);
        }
        self.drive_election(now);
        self.pump(now);
        self.publish(now);
    }

    /// When [`PortManager::handle_timeout`] should be called next.
    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.done {
            return None;
        }
        let election = self.election.as_ref().and_then(Election::poll_timeout);
        self.timers.iter().flatten().chain(&election).min().copied()
    }

    /// The next thing to do, if any.
    pub fn poll_output(&mut self) -> Option<Output> {
        self.out.pop_front()
    }

    /// True once shutdown has finished.
    pub fn is_done(&self) -> bool {
        self.done
    }

    /// The current Directory.
    pub fn directory(&self, now: Instant) -> Directory {
        let role = match self.mapping {
            // Elected and taking the representative port (Fig. 14); in secure mode until the
            // old holder's lease lapses, serving meanwhile under our own port if we have one.
            _ if self.takeover.is_some() => Role::TakingOver,
            None => Role::Starting,
            Some(m) if m.external == self.opt.representative_port => Role::Representative,
            Some(_) => Role::Member,
        };
        let mut peers: Vec<Peer> = if role == Role::Representative {
            self.peers
                .iter()
                .map(|(id, p)| Peer {
                    node_id: identity::id_hex(*id),
                    name: p.name.clone(),
                    lan_addr: p.lan_addr,
                    lan_port: p.lan_port,
                    external_port: p.external_port,
                    source: p.source,
                    last_seen: p.last_seen.min(now),
                })
                .collect()
        } else {
            Vec::new()
        };
        peers.sort_by(|a, b| (a.external_port, &a.name).cmp(&(b.external_port, &b.name)));
        Directory {
            node_id: self.ident.id_hex(),
            name: self.ident.name.clone().unwrap_or_default(),
            role,
            reachability: self.reachability.clone(),
            external_addr: self.external_addr,
            lan_addr: self.lan_addr,
            external_port: self.mapping.map(|m| m.external),
            lan_port: self.mapping.map_or(self.opt.web_port, |m| m.internal),
            peers,
            warning: self.dup.warning.clone(),
        }
    }

    /// The node's identity as it stands.
    pub fn identity(&self) -> &Identity {
        &self.ident
    }

    /// LAN protocol counters.
    pub fn lan_stats(&self) -> LanStats {
        self.stats
    }

    /// The election, once this node holds a port (for tests and the status page).
    pub fn election(&self) -> Option<&Election> {
        self.election.as_ref()
    }

    // -----------------------------------------------------------------------------------------
    // Plumbing

    fn set_timer(&mut self, t: Timer, at: Instant) {
        self.timers[t as usize] = Some(at);
    }

    fn clear_timer(&mut self, t: Timer) {
        self.timers[t as usize] = None;
    }

    fn publish(&mut self, now: Instant) {
        let d = self.directory(now);
        // last_seen alone does not make a new Directory (the pages would re-render every walk).
        let strip = |d: &Directory| {
            let mut d = d.clone();
            for p in &mut d.peers {
                p.last_seen = now;
            }
            d
        };
        if self.published.as_ref().map(strip) != Some(strip(&d)) {
            self.published = Some(d.clone());
            self.out.push_back(Output::Publish(d));
        }
    }

    /// Starts the next queued control request if none is in flight.
    fn pump(&mut self, now: Instant) {
        while self.inflight.is_none() {
            let Some(op) = self.queue.pop_front() else {
                return;
            };
            let request = match (&op, op.action(), &self.igd) {
                (Op::Describe(url), _, _) => HttpRequest {
                    url: url.clone(),
                    soap_action: None,
                    body: None,
                },
                (_, Some(action), Some(igd)) => {
                    let req = action.to_request(&igd.service_type);
                    HttpRequest {
                        url: igd.control_url.clone(),
                        soap_action: Some(req.soap_action().header_value()),
                        body: Some(req.emit()),
                    }
                }
                // A control request without an IGD: it was queued before we lost the router.
                _ => continue,
            };
            let id = self.next_id;
            self.next_id += 1;
            self.inflight = Some((id, op));
            self.out.push_back(Output::Http { id, request });
            self.set_timer(Timer::Request, now + guard::REQUEST_DEADLINE);
        }
    }

    fn jitter(&mut self, d: Duration) -> Duration {
        // +-10 %, so nodes started together do not search in lock-step.
        let f: f64 = self.rng.random_range(0.9..1.1);
        d.mul_f64(f)
    }

    fn next_seq(&mut self) -> u64 {
        self.seq = self.seq.wrapping_add(1);
        self.seq
    }

    // -----------------------------------------------------------------------------------------
    // Discovery (Fig. 3; UDA 1.1 §1.3)

    fn begin_discovery(&mut self, now: Instant, immediately: bool) {
        self.igd = None;
        self.describing = false;
        self.discovering_since.get_or_insert(now);
        let at = if immediately {
            now
        } else {
            now + self.search_backoff
        };
        self.set_timer(Timer::Search, at);
    }

    fn search(&mut self, now: Instant) {
        if self.igd.is_some() || self.describing {
            return;
        }
        if let Some(url) = self.opt.igd_url.clone() {
            self.describing = true;
            self.queue.push_back(Op::Describe(url));
        } else {
            for st in SEARCH_TARGETS {
                let req = ssdp::SearchRequest {
                    host: ssdp::MULTICAST_ADDR.to_string(),
                    mx: Some("1".into()),
                    st: st.to_string(),
                    user_agent: Some(format!(
                        "Linux UPnP/1.1 camnode/{}",
                        env!("CARGO_PKG_VERSION")
                    )),
                };
                self.out.push_back(Output::SsdpSearch(req.emit()));
            }
        }
        if self
            .discovering_since
            .is_some_and(|s| now.duration_since(s) >= self.opt.no_igd_after)
            && self.reachability == Reachability::Discovering
        {
            tracing::warn!(
                "no UPnP IGD answered: serving the LAN only, still searching (no internet reachability)"
            );
            self.reachability = Reachability::NoIgd;
        }
        let wait = self.jitter(self.search_backoff);
        self.set_timer(Timer::Search, now + wait);
        self.search_backoff = (self.search_backoff * 2).min(self.opt.search_max);
    }

    fn on_ssdp(&mut self, now: Instant, data: &[u8]) {
        let (uuid, boot_id, location, byebye) = match ssdp::parse(data) {
            Ok(ssdp::Message::Response(r)) if is_igd_type(&r.st) => {
                (usn_uuid(&r.usn), r.boot_id, Some(r.location), false)
            }
            Ok(ssdp::Message::Notify(n)) if is_igd_type(&n.nt) => (
                usn_uuid(&n.usn),
                n.next_boot_id.or(n.boot_id),
                n.location,
                n.nts == ssdp::Nts::ByeBye,
            ),
            _ => return,
        };
        let ours = self.seen.as_ref().is_some_and(|s| s.uuid == uuid);
        if ours && self.igd.is_some() {
            let old_boot = self.seen.as_ref().and_then(|s| s.boot_id);
            if byebye {
                tracing::warn!("the router announced ssdp:byebye; rediscovering");
                self.lose_igd(now);
            } else if boot_id.is_some() && old_boot.is_some() && boot_id != old_boot {
                tracing::warn!(
                    ?old_boot,
                    ?boot_id,
                    "the router restarted (BOOTID changed); rediscovering"
                );
                self.lose_igd(now);
                // It is answering: ask again at once rather than after the back-off.
                self.search_backoff = self.opt.search_initial;
                self.set_timer(Timer::Search, now);
            }
            return;
        }
        if byebye || self.igd.is_some() || self.describing || self.opt.igd_url.is_some() {
            return;
        }
        let Some(url) = location.as_deref().and_then(HttpUrl::parse) else {
            return;
        };
        tracing::debug!(%url, "IGD found by SSDP");
        self.seen = Some(SeenIgd { uuid, boot_id });
        self.describing = true;
        self.clear_timer(Timer::Search);
        self.queue.push_back(Op::Describe(url));
    }

    fn on_describe(&mut self, now: Instant, url: &HttpUrl, result: Result<HttpResponse, String>) {
        self.describing = false;
        let services = match &result {
            Ok(r) if r.status == 200 => find_igd_services(&r.body, url)
                .map_err(|e| e.to_string())
                .and_then(|s| {
                    guard::check_control_url(url, &s.wan_connection.control_url).map(|()| s)
                }),
            Ok(r) => Err(format!("HTTP {}", r.status)),
            Err(e) => Err(e.clone()),
        };
        let s = match services {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(%url, error = %e, "cannot use the IGD description; searching again");
                self.begin_discovery(now, false);
                return;
            }
        };
        let v2 = s
            .wan_connection
            .parsed
            .is_some_and(|p| p.kind == ServiceKind::WanIpConnection && p.version >= 2);
        tracing::info!(
            router = %s.friendly_name, control = %s.wan_connection.control_url, service = %s.wan_connection.service_type,
            "IGD found"
        );
        self.igd = Some(Igd {
            control_url: s.wan_connection.control_url,
            service_type: s.wan_connection.service_type,
            v2,
        });
        self.discovering_since = None;
        if let Some(local) = result.ok().and_then(|r| r.local_addr)
            && self.lan_addr != Some(local)
        {
            self.lan_addr = Some(local);
            self.out.push_back(Output::LanAddr(local));
        }
        if self.reachability == Reachability::NoIgd {
            self.reachability = Reachability::Discovering;
        }
        if self.ident.name.is_none() {
            self.start_walk(now, WalkPurpose::Naming);
        } else {
            self.start_claim();
        }
        self.set_timer(Timer::Recheck, now + self.opt.recheck_interval);
    }

    /// The router is gone or changed: forget it, keep our mapping's port to ask for it again.
    fn lose_igd(&mut self, now: Instant) {
        self.inflight = None;
        self.queue.clear();
        // A reclaim in progress is dropped (the claim after rediscovery asks for our port
        // again); a takeover resumes after it (start_claim).
        self.reclaim = false;
        self.walk = None;
        self.seen = None;
        self.reachability = Reachability::Discovering;
        self.clear_timer(Timer::Walk);
        self.clear_timer(Timer::Renew);
        self.clear_timer(Timer::Recheck);
        self.begin_discovery(now, false);
    }

    fn igd_failed(&mut self, now: Instant, what: &str, why: &str) {
        tracing::warn!(
            action = what,
            error = why,
            "control request to the router failed; rediscovering"
        );
        self.lose_igd(now);
    }

    // -----------------------------------------------------------------------------------------
    // Claims 1, 17: the port request

    fn internal_for(&self, external: u16) -> u16 {
        match self.opt.internal_port_mode {
            InternalPortMode::SameAsExternal => external,
            InternalPortMode::Common if self.force_same_port => external,
            InternalPortMode::Common => self.opt.common_internal_port,
        }
    }

    fn mk_add(&self, external: u16, internal: u16) -> AddPortMapping {
        AddPortMapping {
            remote_host: None,
            external_port: external,
            protocol: Protocol::Tcp,
            internal_port: internal,
            internal_client: self.lan_addr,
            enabled: true,
            description: desc::encode(self.ident.id, self.ident.name.as_deref().unwrap_or("")),
            lease_duration: self.lease_for(external),
        }
    }

    /// The lease to ask for `external`: the short representative lease while the election runs
    /// (so a dead holder's mapping lapses soon in secure mode), the normal one otherwise.
    fn lease_for(&self, external: u16) -> u32 {
        if self.permanent_only {
            0
        } else if external == self.opt.representative_port && self.opt.election.is_some() {
            self.opt.representative_lease_seconds
        } else {
            self.opt.lease_seconds
        }
    }

    /// Ask for the representative port, or (after rediscovery) for the port we held. Once the
    /// election runs, a node without a mapping is either taking over (Fig. 14) or has stood
    /// down, and then asks for a member port (8081 up) as at start.
    fn start_claim(&mut self) {
        if self.takeover.is_some() {
            // After a rediscovery during a takeover: our own port again (we keep serving under
            // it until the representative port is ours), then the takeover.
            if let Some(m) = self.mapping {
                let add = self.mk_add(m.external, m.internal);
                self.queue.push_back(Op::Add {
                    m: add,
                    any: false,
                    why: AddWhy::Claim,
                    tries: 0,
                });
            }
            return self.queue_takeover();
        }
        let first = if self.election.is_some() {
            self.opt.first_other_port
        } else {
            self.opt.representative_port
        };
        let port = self.mapping.map_or(first, |m| m.external);
        let m = self.mk_add(port, self.internal_for(port));
        self.queue.push_back(Op::Add {
            m,
            any: false,
            why: AddWhy::Claim,
            tries: 0,
        });
    }

    fn next_port(&self, cur: u16) -> Option<u16> {
        let mut p = if cur == self.opt.representative_port {
            self.opt.first_other_port
        } else {
            cur.checked_add(1)?
        };
        if p == self.opt.representative_port {
            p = p.checked_add(1)?;
        }
        Some(p)
    }

    fn renew_after(&self, lease: u32) -> Duration {
        if lease == 0 {
            Duration::from_secs(1800)
        } else {
            Duration::from_secs(u64::from(lease / 2).max(1))
        }
    }

    fn on_add(
        &mut self,
        now: Instant,
        m: AddPortMapping,
        any: bool,
        why: AddWhy,
        tries: u16,
        outcome: Outcome,
    ) {
        let fault = match outcome {
            Outcome::Ok(reply) => {
                let external = match (any, reply) {
                    (true, Reply::ReservedPort(p)) if p != 0 => p,
                    _ => m.external_port,
                };
                let before = self.mapping;
                self.mapping = Some(Mapping {
                    external,
                    internal: m.internal_port,
                });
                self.set_timer(Timer::Renew, now + self.renew_after(m.lease_duration));
                match why {
                    AddWhy::Claim => self.on_mapped(now, before),
                    AddWhy::Renew | AddWhy::Verify => {}
                    AddWhy::Reclaim => {
                        if self.reclaim {
                            tracing::info!(
                                port = external,
                                "the representative port is ours again"
                            );
                        }
                        self.end_rep_wait();
                    }
                    AddWhy::Rename => self.start_notice(now),
                    AddWhy::Takeover if self.takeover.is_some() => {
                        let waited = self
                            .rep_wait_since
                            .map(|t| now.saturating_duration_since(t));
                        tracing::info!(
                            port = external,
                            ?waited,
                            "took over the representative port (Fig. 14)"
                        );
                        self.takeover = None;
                        self.end_rep_wait();
                        // Fig. 14's "delete own mapping", now that the representative port is
                        // ours: we kept serving under it until then.
                        if let Some(b) = before.filter(|b| b.external != external) {
                            self.queue.push_back(Op::Delete(b.external));
                        }
                        self.on_mapped(now, before);
                    }
                    AddWhy::Takeover => {
                        // We stood down while the request was in flight: give it back, keep
                        // our own port (renewed now, which re-arms its timer).
                        self.mapping = before;
                        self.clear_timer(Timer::Renew);
                        self.queue.push_front(Op::Delete(external));
                        if before.is_some() {
                            self.renew();
                        } else {
                            self.start_claim();
                        }
                    }
                }
                return;
            }
            Outcome::Fault(code, text) => (code, text),
            Outcome::BadReply(e) | Outcome::Failed(e) => {
                return self.igd_failed(now, "AddPortMapping", &e);
            }
        };
        let (code, text) = fault;
        if matches!(why, AddWhy::Takeover | AddWhy::Verify | AddWhy::Reclaim)
            && !matches!(code, 724 | 725)
        {
            return self.on_rotation_add_refused(now, why, code, &text);
        }
        if why == AddWhy::Renew
            && self.election.is_some()
            && m.external_port == self.opt.representative_port
            && matches!(code, 718 | 729 | 606)
        {
            // Our representative lease lapsed and another node took the port.
            return self.on_rotation_add_refused(now, AddWhy::Verify, code, &text);
        }
        let retry = |pm: &mut Self, m: AddPortMapping, any: bool, tries: u16| {
            pm.queue.push_front(Op::Add { m, any, why, tries });
        };
        match code {
            // 725 OnlyPermanentLeasesSupported (WANIPConnection:1 §2.4.16): ask again, permanent.
            725 if !self.permanent_only => {
                self.permanent_only = true;
                retry(
                    self,
                    AddPortMapping {
                        lease_duration: 0,
                        ..m
                    },
                    any,
                    tries,
                );
            }
            // 724 SamePortValuesRequired: the router wants internal = external (Fig. 8a).
            724 if m.internal_port != m.external_port => {
                self.force_same_port = true;
                let internal = m.external_port;
                retry(
                    self,
                    AddPortMapping {
                        internal_port: internal,
                        ..m
                    },
                    any,
                    tries,
                );
            }
            // 401/602: no AddAnyPortMapping here after all; go on port by port.
            401 | 602 if any => {
                self.any_unsupported = true;
                retry(self, m, false, tries);
            }
            // 718 ConflictInMappingEntry, 729 ConflictWithOtherMechanisms, 606 (another host's
            // mapping in secure mode): this port is someone else's. Claim 1: ask for another.
            718 | 729 | 606 if why == AddWhy::Claim => {
                if m.external_port == self.opt.representative_port {
                    tracing::info!(
                        port = m.external_port,
                        "the representative port is held by another node ({code}); asking for another"
                    );
                }
                let tries = tries + 1;
                let Some(next) = self
                    .next_port(m.external_port)
                    .filter(|_| tries < self.opt.max_port_tries)
                else {
                    return self.refused(
                        now,
                        format!("no free port after {tries} tries (last: {code} {text})"),
                    );
                };
                let internal = self.internal_for(next);
                let m = AddPortMapping {
                    external_port: next,
                    internal_port: internal,
                    lease_duration: self.lease_for(next),
                    ..m
                };
                // IGD:2 lets the router pick (AddAnyPortMapping, WANIPConnection:2 §2.4.18), with
                // the next port in order as the preferred one. Only for Fig. 8b: the router may
                // reserve another external port than preferred, and with Fig. 8a (internal =
                // external) that would break the equality, so there we count up ourselves.
                let any = self.igd.as_ref().is_some_and(|i| i.v2)
                    && !self.any_unsupported
                    && self.opt.internal_port_mode == InternalPortMode::Common;
                retry(self, m, any, tries);
            }
            718 | 729 | 606 => {
                tracing::warn!(
                    port = m.external_port,
                    "our mapping was taken by another host ({code}); claiming again"
                );
                self.mapping = None;
                self.start_claim();
            }
            _ => self.refused(now, format!("{code} {text}")),
        }
    }

    fn refused(&mut self, now: Instant, reason: String) {
        tracing::warn!(%reason, "the router refused our port mapping; serving the LAN only, retrying");
        self.reachability = Reachability::Refused { reason };
        self.set_timer(Timer::Recheck, now + self.opt.recheck_interval);
    }

    fn on_mapped(&mut self, now: Instant, before: Option<Mapping>) {
        let Some(m) = self.mapping else { return };
        self.search_backoff = self.opt.search_initial;
        let rep = m.external == self.opt.representative_port;
        if before != Some(m) {
            tracing::info!(
                external = m.external,
                internal = m.internal,
                role = if rep { "representative" } else { "member" },
                "port mapped"
            );
        }
        self.queue.push_back(Op::GetExternal);
        if rep {
            // Claim 1: we hold the well-known port; collect the others at once (emb. 1, 3).
            if before.map(|b| b.external) != Some(m.external) {
                self.term = self.term.saturating_add(1);
            }
            self.notice = None;
            self.clear_timer(Timer::Notice);
            self.rep_addr = self.lan_addr;
            self.start_walk(now, WalkPurpose::Collect);
            // Claim 1 / Fig. 14: holding the port makes us the representative; the election
            // announces the new term (rotation notice) and starts inquiring (emb. 2).
            self.ensure_election(now);
            if let Some(e) = &mut self.election {
                e.took_over(now);
            }
        } else {
            // Claim 6: tell the representative our port at once; learn where it is.
            self.walk = None;
            self.clear_timer(Timer::Walk);
            self.peers.clear();
            self.start_notice(now);
            self.queue
                .push_back(Op::GetSpecific(self.opt.representative_port));
            self.ensure_election(now);
            // We held the representative port and got another one (someone took it while the
            // router was away): an ordinary node now.
            if let Some(e) = &mut self.election
                && matches!(e.phase(), election::Phase::Representative)
            {
                e.lost_port(now);
            }
        }
    }

    // -----------------------------------------------------------------------------------------
    // Claim 18: the external address

    fn on_external(&mut self, reply: Reply) {
        let Reply::ExternalIpAddress(text) = reply else {
            return;
        };
        let addr = text
            .trim()
            .parse::<Ipv4Addr>()
            .ok()
            .filter(|a| !a.is_unspecified());
        let reach = match addr {
            None => Reachability::Refused {
                reason: "the router reports no external address (WAN down?)".into(),
            },
            Some(a) if is_private_or_cgnat(a) => Reachability::DoubleNat { external: a },
            Some(_) => Reachability::Reachable,
        };
        if reach != self.reachability {
            match &reach {
                Reachability::DoubleNat { external } => tracing::warn!(
                    %external,
                    "DOUBLE NAT: the router's external address is itself private/carrier-grade NAT; \
                     the camera is not reachable from the internet (serving the LAN, still checking)"
                ),
                Reachability::Reachable => {
                    tracing::info!(external = ?addr, "reachable from the internet")
                }
                other => tracing::warn!(?other, "not reachable from the internet"),
            }
        }
        self.reachability = reach;
        self.external_addr = addr;
        if let Some(e) = &mut self.election {
            e.set_external_addr(addr);
        }
    }

    // -----------------------------------------------------------------------------------------
    // Claims 2, 5, 19: the representative's table walk (embodiments 1 and 3)

    fn start_walk(&mut self, now: Instant, purpose: WalkPurpose) {
        if self.walk.is_some() || self.igd.is_none() {
            return;
        }
        self.walk = Some(Walk {
            purpose,
            started: now,
            entries: Vec::new(),
        });
        let v2 = self.igd.as_ref().is_some_and(|i| i.v2);
        self.queue.push_back(if v2 && !self.list_unsupported {
            Op::List
        } else {
            Op::Entry(0)
        });
    }

    fn on_list(&mut self, now: Instant, outcome: Outcome) {
        match outcome {
            Outcome::Ok(Reply::PortListing(entries)) => self.finish_walk(now, entries),
            // 730 PortMappingNotFound: an empty table (WANIPConnection:2 §2.4.20).
            Outcome::Fault(730, _) => self.finish_walk(now, Vec::new()),
            Outcome::Failed(e) => self.igd_failed(now, "GetListOfPortMappings", &e),
            other => {
                let why = match other {
                    Outcome::Fault(c, t) => format!("{c} {t}"),
                    Outcome::BadReply(e) => e,
                    _ => String::new(),
                };
                tracing::info!(%why, "GetListOfPortMappings unusable; walking with GetGenericPortMappingEntry");
                self.list_unsupported = true;
                self.queue.push_front(Op::Entry(0));
            }
        }
    }

    fn on_entry(&mut self, now: Instant, index: u32, outcome: Outcome) {
        let next = match outcome {
            Outcome::Ok(Reply::GenericEntry(e)) => {
                if let Some(w) = &mut self.walk {
                    w.entries.push(e);
                }
                true
            }
            // An entry we cannot read (e.g. protocol UDPLITE): not one of ours, go on.
            Outcome::Ok(_) | Outcome::BadReply(_) => true,
            // 713 SpecifiedArrayIndexInvalid ends the table (WANIPConnection:2 §2.4.14); some
            // routers answer 714 or 402 instead.
            Outcome::Fault(713 | 714 | 402, _) => false,
            Outcome::Fault(code, text) => {
                tracing::warn!(index, "table walk stopped: {code} {text}");
                self.walk = None;
                self.set_timer(Timer::Walk, now + self.opt.walk_interval);
                return;
            }
            Outcome::Failed(e) => return self.igd_failed(now, "GetGenericPortMappingEntry", &e),
        };
        if next && index + 1 < MAX_WALK_ENTRIES {
            self.queue.push_front(Op::Entry(index + 1));
        } else {
            let entries = self
                .walk
                .as_mut()
                .map(|w| std::mem::take(&mut w.entries))
                .unwrap_or_default();
            self.finish_walk(now, entries);
        }
    }

    /// Our cameras among the table's entries (embodiment 3): TCP, with our description, not us.
    fn ours(&self, entries: &[PortMappingEntry]) -> Vec<(desc::CamDescription, PortMappingEntry)> {
        entries
            .iter()
            .filter(|e| e.protocol == Protocol::Tcp)
            .filter_map(|e| desc::parse(&e.description).map(|d| (d, e.clone())))
            .collect()
    }

    fn finish_walk(&mut self, now: Instant, entries: Vec<PortMappingEntry>) {
        let Some(walk) = self.walk.take() else { return };
        let ours = self.ours(&entries);
        let others: Vec<_> = ours
            .iter()
            .filter(|(d, _)| d.node_id != self.ident.id)
            .cloned()
            .collect();
        match walk.purpose {
            WalkPurpose::Naming => {
                if self.ident.name.is_none() {
                    let used: Vec<String> = others
                        .iter()
                        .map(|(d, _)| d.name.clone())
                        .chain(self.heard_names.values().cloned())
                        .collect();
                    let name = identity::lowest_free_camera_name(used.iter().map(String::as_str));
                    tracing::info!(%name, "name assigned");
                    self.set_name(name, NameOrigin::Auto);
                }
                self.start_claim();
            }
            WalkPurpose::Collect => {
                let is_rep = self
                    .mapping
                    .is_some_and(|m| m.external == self.opt.representative_port);
                if !is_rep {
                    return;
                }
                for p in self.peers.values_mut() {
                    p.listed = false;
                }
                for (d, e) in &others {
                    self.upsert_peer(
                        d.node_id,
                        &d.name,
                        d.truncated,
                        walk.started,
                        e.internal_client,
                        e.internal_port,
                        Some(e.external_port),
                        PeerSource::RouterTable,
                    );
                    if let Some(p) = self.peers.get_mut(&d.node_id) {
                        p.in_table = true;
                        p.listed = true;
                    }
                }
                let listed: Vec<u64> = others.iter().map(|(d, _)| d.node_id).collect();
                let grace = self.opt.notice_grace;
                // An entry goes when its mapping has gone AND it stopped answering (emb. 2).
                self.peers.retain(|id, p| {
                    listed.contains(id)
                        || p.answering
                        || p.notice_at.is_some_and(|t| t >= walk.started)
                        || (!p.in_table && now.saturating_duration_since(p.last_seen) < grace)
                });
                for (d, _) in &others {
                    self.check_name_collision(now, d.node_id, &d.name);
                }
                // Our own entry must be there; if the router lost it (restart without a new
                // BOOTID), ask again now rather than at the next renewal.
                if let Some(m) = self.mapping
                    && !ours
                        .iter()
                        .any(|(d, e)| d.node_id == self.ident.id && e.external_port == m.external)
                {
                    tracing::warn!(
                        port = m.external,
                        "our mapping is missing from the router's table; re-adding it"
                    );
                    self.renew();
                }
                self.queue.push_back(Op::GetExternal);
                self.set_timer(Timer::Walk, now + self.opt.walk_interval);
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn upsert_peer(
        &mut self,
        id: u64,
        name: &str,
        truncated: bool,
        at: Instant,
        lan_addr: Ipv4Addr,
        lan_port: u16,
        external_port: Option<u16>,
        source: PeerSource,
    ) {
        let now_seen = at;
        let p = self.peers.entry(id).or_insert_with(|| PeerState {
            name: name.to_string(),
            name_at: at,
            lan_addr,
            lan_port,
            external_port,
            source,
            last_seen: now_seen,
            in_table: false,
            notice_at: None,
            listed: false,
            answering: false,
        });
        // The newer information wins, except that a name cut by the router's description limit
        // never replaces the full one it is a prefix of.
        let cut_of_current = truncated && p.name.starts_with(name);
        if at >= p.name_at && !cut_of_current {
            p.name = name.to_string();
            p.name_at = at;
        }
        if at >= p.last_seen {
            p.lan_addr = lan_addr;
            p.lan_port = lan_port;
            if external_port.is_some() {
                p.external_port = external_port;
            }
            p.source = source;
            p.last_seen = at;
        }
    }

    // -----------------------------------------------------------------------------------------
    // Claim 6 and the LAN protocol

    fn lan_repr(&mut self, body: lanproto::Body) -> Vec<u8> {
        let term = self.election.as_ref().map_or(self.term, Election::term);
        let header = lanproto::Header {
            node_id: self.ident.id,
            sequence: self.next_seq(),
            term,
        };
        lanproto::Repr { header, body }.emit()
    }

    fn start_notice(&mut self, now: Instant) {
        let is_member = self
            .mapping
            .is_some_and(|m| m.external != self.opt.representative_port);
        if !is_member || self.shutting_down {
            return;
        }
        self.notice = Some(NoticeState {
            started: now,
            first_seq: self.seq.wrapping_add(1),
            step: 0,
            acked: false,
        });
        self.send_notice(now);
    }

    fn send_notice(&mut self, now: Instant) {
        let (Some(m), Some(lan_addr), Some(name)) =
            (self.mapping, self.lan_addr, self.ident.name.clone())
        else {
            return;
        };
        let Some(n) = &mut self.notice else { return };
        if n.acked {
            return;
        }
        n.step += 1;
        let next = self.opt.notice_schedule.get(n.step).map(|d| n.started + *d);
        let data = self.lan_repr(lanproto::Body::PortNotice(lanproto::PortNotice {
            name,
            lan_addr,
            internal_port: m.internal,
            external_port: Some(m.external),
        }));
        self.out.push_back(Output::Lan {
            to: self.opt.lan_group,
            data: data.clone(),
        });
        self.stats.sent += 1;
        if let Some(rep) = self.rep_addr.filter(|r| Some(*r) != self.lan_addr) {
            self.out.push_back(Output::Lan {
                to: SocketAddrV4::new(rep, self.opt.lan_group.port()),
                data,
            });
            self.stats.sent += 1;
        }
        match next {
            Some(at) => self.set_timer(Timer::Notice, at.max(now)),
            None => self.clear_timer(Timer::Notice),
        }
    }

    fn on_lan(&mut self, now: Instant, from: SocketAddrV4, data: &[u8]) {
        let r = match lanproto::Repr::parse(data) {
            Ok(r) => r,
            Err(e) => {
                match e {
                    lanproto::Error::UnknownVersion(_) => self.stats.unknown_version += 1,
                    lanproto::Error::UnknownType(_) => self.stats.unknown_type += 1,
                    lanproto::Error::BadMagic => self.stats.foreign += 1,
                    _ => self.stats.malformed += 1,
                }
                tracing::debug!(%from, error = %e, "LAN datagram dropped");
                return;
            }
        };
        let h = r.header;
        if h.node_id == self.ident.id {
            return self.on_own_id(now, from, h); // our own multicast looped back, or a duplicate
        }
        self.stats.received += 1;
        if !matches!(
            r.body,
            lanproto::Body::PortNotice(_) | lanproto::Body::PortNoticeAck(_)
        ) {
            // Types 3-10 belong to the election (emb. 2, 4; claims 9-15), which drops
            // duplicates itself; a node without a port yet takes no part.
            if let Some(e) = &mut self.election {
                e.handle_message(now, from, &r);
            }
            return;
        }
        // Duplicates and reordering: only a higher sequence counts, unless the sender has been
        // silent for a minute (it may have restarted with a wrong clock).
        if let Some((last, at)) = self.last_seq.get(&h.node_id)
            && h.sequence <= *last
            && now.saturating_duration_since(*at) < Duration::from_secs(60)
        {
            self.stats.duplicates += 1;
            return;
        }
        self.last_seq.insert(h.node_id, (h.sequence, now));
        if election::terms::plausible(self.term, h.term) {
            self.term = self.term.max(h.term);
        }
        match r.body {
            lanproto::Body::PortNotice(n) => {
                self.heard_names.insert(h.node_id, n.name.clone());
                let is_rep = self
                    .mapping
                    .is_some_and(|m| m.external == self.opt.representative_port);
                if is_rep {
                    tracing::info!(name = %n.name, addr = %n.lan_addr, port = ?n.external_port, "own-port notice (claim 6)");
                    self.upsert_peer(
                        h.node_id,
                        &n.name,
                        false,
                        now,
                        n.lan_addr,
                        n.internal_port,
                        n.external_port,
                        PeerSource::Notice,
                    );
                    if let Some(p) = self.peers.get_mut(&h.node_id) {
                        p.notice_at = Some(now);
                    }
                    let ack =
                        self.lan_repr(lanproto::Body::PortNoticeAck(lanproto::PortNoticeAck {
                            acked_sequence: h.sequence,
                            external_addr: self.external_addr,
                        }));
                    self.out.push_back(Output::Lan {
                        to: from,
                        data: ack,
                    });
                    self.stats.sent += 1;
                }
                self.check_name_collision(now, h.node_id, &n.name);
            }
            lanproto::Body::PortNoticeAck(a) => {
                if let Some(n) = &mut self.notice
                    && a.acked_sequence >= n.first_seq
                {
                    n.acked = true;
                    self.clear_timer(Timer::Notice);
                }
                self.rep_addr = Some(*from.ip());
            }
            _ => {}
        }
    }

    // -----------------------------------------------------------------------------------------
    // Rotation (embodiment 4, Fig. 11-14; claims 9-15) and collection by inquiry (emb. 2)

    /// Starts the election once the node holds a port (a node without one takes no part).
    fn ensure_election(&mut self, now: Instant) {
        if self.election.is_some() || self.shutting_down {
            return;
        }
        if let Some(cfg) = self.opt.election.clone() {
            let seed = self.rng.random();
            let mut e = Election::new(cfg, self.ident.id, seed, now);
            e.set_external_addr(self.external_addr);
            self.election = Some(e);
        }
    }

    /// Keeps the election's view of us current, then carries out what it decided: its messages
    /// go out with our node id and the one sequence counter of everything this node sends.
    fn drive_election(&mut self, now: Instant) {
        if self.election.is_none() {
            return;
        }
        if let (Some(lan_addr), Some(name)) = (self.lan_addr, self.ident.name.clone()) {
            let info = lanproto::PortNotice {
                name,
                lan_addr,
                internal_port: self.mapping.map_or(self.opt.web_port, |m| m.internal),
                external_port: self.mapping.map(|m| m.external),
            };
            if let Some(e) = &mut self.election {
                e.set_self(info);
            }
        }
        loop {
            let Some(e) = &mut self.election else { return };
            if let Some(t) = e.poll_transmit() {
                let header = lanproto::Header {
                    node_id: self.ident.id,
                    sequence: self.next_seq(),
                    term: t.term,
                };
                let to = match t.to {
                    Dest::Group => self.opt.lan_group,
                    Dest::Node(a) => a,
                };
                let data = lanproto::Repr {
                    header,
                    body: t.body,
                }
                .emit();
                self.out.push_back(Output::Lan { to, data });
                self.stats.sent += 1;
                continue;
            }
            let Some(ev) = e.poll_event() else { return };
            self.on_election_event(now, ev);
        }
    }

    fn on_election_event(&mut self, now: Instant, ev: ElectionEvent) {
        if self.shutting_down {
            return;
        }
        let rep = self.opt.representative_port;
        match ev {
            ElectionEvent::RepresentativeGone { node, reason } => {
                tracing::info!(node = ?node.map(identity::id_hex), ?reason, "representative gone (Fig. 11-13)");
            }
            ElectionEvent::BecomeRepresentative { term } => {
                if self.mapping.is_some_and(|m| m.external == rep) {
                    // We hold it already (claim 1 at start raced the election).
                    if let Some(e) = &mut self.election {
                        e.took_over(now);
                    }
                    return;
                }
                tracing::info!(term, "elected: taking the representative port (Fig. 14)");
                self.takeover = Some(term);
                self.queue_takeover();
            }
            ElectionEvent::StandDown { term } => {
                tracing::info!(term, "standing down: another node is the representative");
                self.takeover = None;
                self.end_rep_wait();
                self.queue.retain(|op| {
                    !matches!(
                        op,
                        Op::Add {
                            why: AddWhy::Takeover | AddWhy::Verify | AddWhy::Reclaim,
                            ..
                        } | Op::RepCheck(_)
                            | Op::DeleteOld(_)
                    )
                });
                if self.mapping.is_some_and(|m| m.external == rep) {
                    // Delete our representative mapping (only if it is still ours: on a
                    // permissive router the successor's would go too), then a member port.
                    self.mapping = None;
                    self.clear_timer(Timer::Renew);
                    self.clear_timer(Timer::Walk);
                    self.walk = None;
                    self.peers.clear();
                    self.queue.push_back(Op::DeleteIfOurs(rep));
                }
                if self.mapping.is_none() && self.igd.is_some() && !self.claiming() {
                    self.start_claim();
                }
            }
            ElectionEvent::Verify => {
                // A candidacy while we hold the port: renew now; a refusal means we lost it.
                // Not while a reclaim asks the router (a refusal there means: wait).
                if let Some(m) = self.mapping.filter(|m| m.external == rep && !self.reclaim) {
                    self.queue_rep_add(m.internal, AddWhy::Verify);
                }
            }
            ElectionEvent::Reclaim => {
                // We won a conflict with another representative, which may hold the port at
                // the router: check, and take it back if so (RepCheck).
                if self.mapping.is_some_and(|m| m.external == rep)
                    && !self.reclaim
                    && self.takeover.is_none()
                    && self.igd.is_some()
                {
                    tracing::info!("another representative: making sure the port is ours");
                    self.reclaim = true;
                    self.queue.push_back(Op::RepCheck(rep));
                }
            }
            ElectionEvent::Following { node, addr, term } => {
                tracing::info!(node = %identity::id_hex(node), %addr, term, "following the representative");
                let first = self.rep_addr != Some(*addr.ip());
                self.rep_addr = Some(*addr.ip());
                if first && self.notice.as_ref().is_some_and(|n| !n.acked) {
                    self.send_notice(now);
                }
            }
            ElectionEvent::PeerAnswered { node, info } => {
                if self.mapping.is_some_and(|m| m.external == rep) {
                    self.upsert_peer(
                        node,
                        &info.name,
                        false,
                        now,
                        info.lan_addr,
                        info.internal_port,
                        info.external_port,
                        PeerSource::Inquiry,
                    );
                    if let Some(p) = self.peers.get_mut(&node) {
                        p.answering = true;
                    }
                    self.heard_names.insert(node, info.name.clone());
                }
            }
            ElectionEvent::PeerLost { node } => {
                // Emb. 2 merged with the table walk: gone once its mapping is gone too.
                if let Some(p) = self.peers.get_mut(&node) {
                    p.answering = false;
                    if !p.listed {
                        self.peers.remove(&node);
                    }
                }
            }
        }
    }

    /// Fig. 14: rediscover the router, delete the old representative mapping, add it for
    /// ourselves, delete our own mapping (then the external address and the table follow from
    /// [`PortManager::on_mapped`]). "Rediscover" is [`Op::RepCheck`]: a
    /// GetSpecificPortMappingEntry of the representative port that confirms the known IGD (a
    /// failure sends us back to SSDP discovery, after which [`PortManager::start_claim`]
    /// resumes the takeover) and tells whose mapping is there and for how long. Without an IGD
    /// the takeover waits for discovery.
    ///
    /// Our own (member) mapping is deleted last, once the router has granted the
    /// representative port: a router that will not let us delete the old holder's mapping
    /// (secure mode: 606) makes us wait for its lease, and meanwhile we keep serving under our
    /// own port (the Directory says [`Role::TakingOver`] with that port).
    ///
    /// # Worst case in secure mode (the holder crashed or was unplugged)
    /// With `L` = `representative_lease_seconds` (default 6 s), renewed at half-life, the
    /// holder's last renewal was at most `L/2` before its departure, so its mapping lapses
    /// between `L/2` and `L` after the departure. The successor starts its takeover after the
    /// detection and the election (at most 1.25 s silence limit or 1.5 s of presence inquiries,
    /// plus 0.4 s back-off and collision window under the random rule: at most 1.65 s, well
    /// before `L/2`), reads the remaining lease from GetSpecificPortMappingEntry (whole
    /// seconds), and asks again every `takeover_retry` (1 s) until one second before the lapse
    /// it read, then with an AddPortMapping alone every [`REP_FAST_RETRY`] (200 ms) until
    /// three seconds after it (covers a router that rounds the remaining lease up or down, or
    /// expires it a little late). So 8080 answers again at most `L` + 0.2 s + one
    /// AddPortMapping round trip (+ the router's own lateness in expiring the mapping) after
    /// the departure, on average after about `3L/4`. With the defaults: at most about 6.2 s,
    /// typically 4.5 s; under `L` unless the holder renewed within the last ~0.2 s before it
    /// went. A graceful stop is as fast as in permissive mode (the holder deletes its own
    /// mapping after its bye-bye). A router that never lets go (a permanent mapping of another
    /// host) is given up `L` + 10 s after its first refusal: an ordinary node again.
    fn queue_takeover(&mut self) {
        if self.igd.is_none() {
            return;
        }
        self.notice = None;
        self.clear_timer(Timer::Notice);
        self.queue
            .push_back(Op::RepCheck(self.opt.representative_port));
    }

    /// True while an AddPortMapping is queued or in flight.
    fn claiming(&self) -> bool {
        self.inflight
            .iter()
            .map(|(_, op)| op)
            .chain(&self.queue)
            .any(|op| matches!(op, Op::Add { .. }))
    }

    fn queue_rep_add(&mut self, internal: u16, why: AddWhy) {
        let rep = self.opt.representative_port;
        let m = AddPortMapping {
            internal_port: internal,
            ..self.mk_add(rep, internal)
        };
        self.queue.push_back(Op::Add {
            m,
            any: false,
            why,
            tries: 0,
        });
    }

    /// The answer to [`Op::RepCheck`]: another node's mapping is deleted first (and its lease
    /// noted), then ours added.
    fn on_rep_check(&mut self, now: Instant, port: u16, outcome: Outcome) {
        let why = if self.takeover.is_some() {
            AddWhy::Takeover
        } else if self.reclaim {
            AddWhy::Reclaim
        } else {
            return;
        };
        let internal = match why {
            AddWhy::Takeover => self.internal_for(port),
            _ => self.mapping.map_or(self.internal_for(port), |m| m.internal),
        };
        let m = AddPortMapping {
            internal_port: internal,
            ..self.mk_add(port, internal)
        };
        // Pushed to the front in reverse order: DeleteOld (if any), then the Add.
        self.queue.push_front(Op::Add {
            m,
            any: false,
            why,
            tries: 0,
        });
        match outcome {
            Outcome::Ok(Reply::SpecificEntry {
                internal_client,
                description,
                lease_duration,
                ..
            }) => {
                let ours = match desc::parse(&description) {
                    Some(d) => d.node_id == self.ident.id,
                    None => Some(internal_client) == self.lan_addr,
                };
                if !ours {
                    self.rep_lapse = (lease_duration > 0)
                        .then(|| now + Duration::from_secs(u64::from(lease_duration)));
                    self.queue.push_front(Op::DeleteOld(port));
                }
            }
            Outcome::Fault(714, _) => self.rep_lapse = None,
            Outcome::Failed(e) => self.igd_failed(now, "GetSpecificPortMappingEntry", &e),
            _ => {}
        }
    }

    /// When to ask for the representative port again while the router refuses it: every
    /// `takeover_retry`, and every [`REP_FAST_RETRY`] from one second before the lapse of the
    /// holder's lease (the remaining lease the router reported, in whole seconds, rounded up
    /// or down) to three seconds after it (a router may expire a little late), and during the
    /// first three seconds of a reclaim.
    fn next_rep_try(&self, now: Instant) -> Instant {
        let normal = now + self.opt.takeover_retry;
        // A reclaim waits for a live rival that was told to stand down: it deletes its own
        // mapping within moments, so ask often at first.
        let rival_leaving = self.reclaim
            && self
                .rep_wait_since
                .is_none_or(|t| now < t + Duration::from_secs(3));
        if rival_leaving {
            return (now + REP_FAST_RETRY).min(normal);
        }
        match self.rep_lapse {
            _ if self.rep_fast_window(now) => (now + REP_FAST_RETRY).min(normal),
            Some(l) if now < l => normal.min(l - Duration::from_secs(1)),
            _ => normal,
        }
    }

    /// True around the lapse of the holder's lease, when we ask every [`REP_FAST_RETRY`] with
    /// an AddPortMapping alone.
    fn rep_fast_window(&self, now: Instant) -> bool {
        self.rep_lapse
            .is_some_and(|l| now + Duration::from_secs(1) >= l && now < l + Duration::from_secs(3))
    }

    /// The takeover or reclaim is over (granted, given up, or we stood down).
    fn end_rep_wait(&mut self) {
        self.reclaim = false;
        self.rep_wait_since = None;
        self.rep_lapse = None;
        self.clear_timer(Timer::Takeover);
    }

    /// The router refused the representative port during a takeover, a reclaim or a
    /// verification.
    fn on_rotation_add_refused(&mut self, now: Instant, why: AddWhy, code: u16, text: &str) {
        let held = matches!(code, 718 | 729 | 606);
        let give_up = self.rep_wait_since.is_some_and(|t| {
            now.saturating_duration_since(t)
                > Duration::from_secs(u64::from(self.opt.representative_lease_seconds) + 10)
        });
        match why {
            AddWhy::Takeover | AddWhy::Reclaim
                if held && !give_up && (self.takeover.is_some() || self.reclaim) =>
            {
                // Secure mode: the old holder's mapping stays until its lease lapses (or a
                // rival that was told to stand down deletes its own).
                let first = self.rep_wait_since.is_none();
                self.rep_wait_since.get_or_insert(now);
                let next = self.next_rep_try(now);
                if first {
                    tracing::info!(
                        code,
                        lapses_in = ?self.rep_lapse.map(|l| l.saturating_duration_since(now)),
                        own_port = ?self.mapping.map(|m| m.external),
                        "the router keeps another node's mapping of the representative port; \
                         asking again when its lease lapses, serving under our own port meanwhile"
                    );
                } else {
                    tracing::debug!(code, "representative port still held; asking again");
                }
                self.set_timer(Timer::Takeover, next);
            }
            AddWhy::Takeover if self.takeover.is_some() => {
                tracing::warn!(code, text, "takeover refused by the router");
                self.takeover = None;
                self.end_rep_wait();
                if let Some(e) = &mut self.election {
                    e.takeover_failed(now);
                }
                // Our own port stays (it is renewed as before); without one, claim one.
                if self.mapping.is_none() {
                    self.start_claim();
                }
            }
            AddWhy::Takeover => {}
            AddWhy::Reclaim if !self.reclaim => {}
            // A renewal refused while a reclaim asks the router: the reclaim decides.
            AddWhy::Verify if self.reclaim => {}
            _ => {
                tracing::warn!(
                    code,
                    text,
                    "the representative port is held by another node now; standing down"
                );
                self.end_rep_wait();
                // The StandDown event that follows (drive_election) gives up the mapping state
                // and asks for a member port.
                if let Some(e) = &mut self.election {
                    e.lost_port(now);
                }
            }
        }
    }

    // -----------------------------------------------------------------------------------------
    // Names

    fn set_name(&mut self, name: String, origin: NameOrigin) {
        self.ident.name = Some(name);
        self.ident.origin = origin;
        self.clear_timer(Timer::NameFallback);
        self.out.push_back(Output::SaveIdentity(self.ident.clone()));
    }

    /// Two nodes that picked the same automatic name at the same time: the one with the higher
    /// id picks again.
    fn check_name_collision(&mut self, now: Instant, other_id: u64, other_name: &str) {
        if self.ident.origin != NameOrigin::Auto
            || self.ident.name.as_deref() != Some(other_name)
            || self.ident.id < other_id
        {
            return;
        }
        let used: Vec<String> = self
            .heard_names
            .values()
            .cloned()
            .chain(self.peers.values().map(|p| p.name.clone()))
            .chain([other_name.to_string()])
            .collect();
        let name = identity::lowest_free_camera_name(used.iter().map(String::as_str));
        tracing::info!(old = other_name, new = %name, "another node has our automatic name; renaming");
        self.set_name(name, NameOrigin::Auto);
        self.readvertise(now);
    }

    fn rename(&mut self, now: Instant, name: &str) {
        let name = name.trim();
        if !identity::valid_name(name) {
            tracing::warn!(?name, "rename refused: use 1 to 64 printable characters");
            return;
        }
        if self.ident.name.as_deref() == Some(name) && self.ident.origin == NameOrigin::Renamed {
            return;
        }
        tracing::info!(%name, "renamed");
        self.set_name(name.to_string(), NameOrigin::Renamed);
        self.readvertise(now);
    }

    /// The name changed: re-add the mapping with the new description (members then send a new
    /// notice once the router has it).
    fn readvertise(&mut self, now: Instant) {
        if self.shutting_down {
            return;
        }
        match (self.mapping, &self.igd) {
            (Some(m), Some(_)) => {
                let add = AddPortMapping {
                    internal_port: m.internal,
                    ..self.mk_add(m.external, m.internal)
                };
                self.queue.push_back(Op::Add {
                    m: add,
                    any: false,
                    why: AddWhy::Rename,
                    tries: 0,
                });
            }
            _ => self.start_notice(now),
        }
    }

    // -----------------------------------------------------------------------------------------
    // Timers, replies, shutdown

    fn renew(&mut self) {
        if let (Some(m), Some(_)) = (self.mapping, &self.igd) {
            let add = AddPortMapping {
                internal_port: m.internal,
                ..self.mk_add(m.external, m.internal)
            };
            self.queue.push_back(Op::Add {
                m: add,
                any: false,
                why: AddWhy::Renew,
                tries: 0,
            });
        }
    }

    fn on_timer(&mut self, now: Instant, t: Timer) {
        if self.shutting_down && !matches!(t, Timer::ShutdownDeadline | Timer::Request) {
            return;
        }
        match t {
            Timer::Request => {
                if let Some((id, _)) = self.inflight {
                    let why = format!("no answer within {:?}", guard::REQUEST_DEADLINE);
                    self.on_http(now, id, Err(why));
                }
            }
            Timer::Search => self.search(now),
            Timer::Renew => self.renew(),
            Timer::Walk => self.start_walk(now, WalkPurpose::Collect),
            Timer::Notice => self.send_notice(now),
            Timer::Recheck => {
                if self.igd.is_some() {
                    let claiming = self
                        .inflight
                        .iter()
                        .map(|(_, op)| op)
                        .chain(&self.queue)
                        .any(|op| matches!(op, Op::Add { .. }));
                    if matches!(self.reachability, Reachability::Refused { .. }) && !claiming {
                        self.start_claim();
                    } else if self.mapping.is_some() {
                        self.queue.push_back(Op::GetExternal);
                        if self.rep_addr.is_none() {
                            self.queue
                                .push_back(Op::GetSpecific(self.opt.representative_port));
                        }
                    }
                    self.set_timer(Timer::Recheck, now + self.opt.recheck_interval);
                }
            }
            Timer::NameFallback => {
                if self.ident.name.is_none() {
                    let name = identity::fallback_camera_name(
                        self.ident.id,
                        self.heard_names.values().map(String::as_str),
                    );
                    tracing::info!(%name, "no router table to pick a name from; using a fallback name");
                    self.set_name(name, NameOrigin::Auto);
                }
            }
            Timer::Takeover => {
                if (self.takeover.is_some() || self.reclaim) && self.igd.is_some() {
                    let rep = self.opt.representative_port;
                    if self.rep_fast_window(now) {
                        let why = if self.takeover.is_some() {
                            AddWhy::Takeover
                        } else {
                            AddWhy::Reclaim
                        };
                        let internal = match (why, self.mapping) {
                            (AddWhy::Reclaim, Some(m)) => m.internal,
                            _ => self.internal_for(rep),
                        };
                        self.queue_rep_add(internal, why);
                    } else {
                        self.queue.push_back(Op::RepCheck(rep));
                    }
                }
            }
            Timer::ShutdownDeadline => {
                tracing::warn!(
                    "shutdown: the router did not answer in time; mapping left to expire"
                );
                self.finish();
            }
        }
    }

    fn on_http(&mut self, now: Instant, id: u64, result: Result<HttpResponse, String>) {
        let op = match self.inflight.take() {
            Some((i, op)) if i == id => op,
            other => {
                self.inflight = other; // a late answer to a request we gave up on
                return;
            }
        };
        if let Some(local) = result.as_ref().ok().and_then(|r| r.local_addr)
            && self.lan_addr.is_none()
        {
            self.lan_addr = Some(local);
            self.out.push_back(Output::LanAddr(local));
        }
        if let Op::Describe(url) = &op {
            if !self.shutting_down {
                self.on_describe(now, url, result);
            }
            return self.continue_shutdown();
        }
        let Some(action) = op.action() else { return };
        let outcome = soap_outcome(&action, result);
        if self.shutting_down {
            match (op, outcome) {
                (Op::Add { m, any, .. }, Outcome::Ok(reply)) => {
                    let external = match (any, reply) {
                        (true, Reply::ReservedPort(p)) if p != 0 => p,
                        _ => m.external_port,
                    };
                    self.mapping = Some(Mapping {
                        external,
                        internal: m.internal_port,
                    });
                }
                (Op::Delete(port), outcome) => {
                    match outcome {
                        Outcome::Ok(_) => tracing::info!(port, "mapping deleted"),
                        Outcome::Fault(c, t) => tracing::warn!(port, "DeletePortMapping: {c} {t}"),
                        Outcome::BadReply(e) | Outcome::Failed(e) => {
                            tracing::warn!(port, "DeletePortMapping: {e}")
                        }
                    }
                    return self.finish();
                }
                _ => {}
            }
            return self.continue_shutdown();
        }
        match op {
            Op::Describe(_) => {}
            Op::Add { m, any, why, tries } => self.on_add(now, m, any, why, tries, outcome),
            Op::GetExternal => match outcome {
                Outcome::Ok(r) => self.on_external(r),
                Outcome::Fault(c, t) => tracing::warn!("GetExternalIPAddress: {c} {t}"),
                Outcome::BadReply(e) | Outcome::Failed(e) => {
                    self.igd_failed(now, "GetExternalIPAddress", &e)
                }
            },
            Op::GetSpecific(_) => match outcome {
                Outcome::Ok(Reply::SpecificEntry {
                    internal_client,
                    description,
                    ..
                }) => {
                    if let Some(d) =
                        desc::parse(&description).filter(|d| d.node_id != self.ident.id)
                    {
                        let first = self.rep_addr.is_none();
                        self.rep_addr = Some(internal_client);
                        if first && self.notice.as_ref().is_some_and(|n| !n.acked) {
                            self.send_notice(now);
                        }
                        // The representative sends no notices; its name comes from its mapping.
                        if !d.truncated {
                            self.heard_names.insert(d.node_id, d.name.clone());
                        }
                        self.check_name_collision(now, d.node_id, &d.name);
                    }
                }
                Outcome::Fault(714, _) => {
                    tracing::info!(
                        port = self.opt.representative_port,
                        "the representative port is not mapped"
                    )
                }
                Outcome::Failed(e) => self.igd_failed(now, "GetSpecificPortMappingEntry", &e),
                _ => {}
            },
            Op::List => self.on_list(now, outcome),
            Op::Entry(i) => self.on_entry(now, i, outcome),
            // Our old member mapping after a takeover, a mapping given back: 714 changes
            // nothing.
            Op::Delete(_) => {}
            Op::RepCheck(port) => self.on_rep_check(now, port, outcome),
            // Fig. 14's deletion of the old holder's mapping: 714 (gone meanwhile) and 606
            // (secure mode: only its own client may delete it) are expected; the Add that
            // follows tells whether the port is free.
            Op::DeleteOld(port) => {
                if let Outcome::Fault(code, _) = outcome {
                    tracing::debug!(port, code, "DeletePortMapping of the old holder's mapping");
                }
            }
            Op::DeleteIfOurs(port) => match outcome {
                Outcome::Ok(Reply::SpecificEntry {
                    internal_client,
                    description,
                    ..
                }) => {
                    // By our description (several nodes may share an address); an entry
                    // without one is ours if it points at us.
                    let ours = match desc::parse(&description) {
                        Some(d) => d.node_id == self.ident.id,
                        None => Some(internal_client) == self.lan_addr,
                    };
                    if ours {
                        self.queue.push_front(Op::Delete(port));
                    }
                }
                Outcome::Failed(e) => self.igd_failed(now, "GetSpecificPortMappingEntry", &e),
                _ => {}
            },
        }
    }

    fn shutdown(&mut self, now: Instant) {
        if self.shutting_down {
            return;
        }
        tracing::info!("shutting down: deleting our port mapping");
        // Claim 13: the representative says bye-bye (multicast and unicast to every member)
        // before its mapping is deleted: the transmits go out ahead of the DeletePortMapping.
        if let Some(e) = &mut self.election {
            e.shutdown(now);
        }
        self.drive_election(now);
        self.takeover = None;
        self.end_rep_wait();
        self.shutting_down = true;
        self.queue.clear();
        self.walk = None;
        self.notice = None;
        self.timers = [None; TIMERS.len()];
        // The control requests below are bounded by the driver's HTTP timeout; this is the cap.
        self.set_timer(Timer::ShutdownDeadline, now + Duration::from_secs(5));
        self.continue_shutdown();
    }

    fn continue_shutdown(&mut self) {
        if !self.shutting_down || self.inflight.is_some() {
            return;
        }
        match (self.mapping, &self.igd) {
            // Home port deletion request: DeletePortMapping (WANIPConnection:2 §2.4.17).
            (Some(m), Some(_)) => self.queue.push_back(Op::Delete(m.external)),
            _ => self.finish(),
        }
    }

    fn finish(&mut self) {
        self.mapping = None;
        self.queue.clear();
        self.inflight = None;
        self.timers = [None; TIMERS.len()];
        if !self.done {
            self.done = true;
            self.out.push_back(Output::Done);
        }
    }
}
