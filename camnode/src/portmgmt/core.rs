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
//! 10. No IGD (UPnP off): the election runs all the same; its winner is a LAN representative
//!     with no port to hold, listing the others by inquiry, until an IGD appears (`lanrep.rs`).
//!
//! # Layout
//! This file holds the inputs and outputs, the state, the driver's interface, the timers and
//! shutdown. Each concern has its file under `core/`:
//! - `igd.rs`: the IGD client: discovery, the control request queue, SOAP outcomes with UPnP
//!   errors by name ([`shared::upnp_error::UpnpError`]), the reply dispatch;
//! - `claim.rs`: claiming a port (steps 2, 3 and 6 above);
//! - `walk.rs`: the representative's table walk and the peer list (step 4);
//! - `lan.rs`: the LAN endpoint: one sequence counter for every message type, the notices'
//!   duplicate filter, the own-port notice (step 5);
//! - `rotation.rs`: carrying out the election at the router (step 9);
//! - `lanrep.rs`: the representative without an IGD (a LAN representative);
//! - `names.rs`: automatic names and rename (step 7); `dupid.rs`: two nodes with one id;
//! - `options.rs`: the tunables.

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

mod claim;
mod dupid;
mod igd;
mod lan;
mod lanrep;
mod names;
mod options;
mod rotation;
mod walk;

use super::desc;
pub use super::guard::is_private_or_cgnat;
use super::guard::{self, is_igd_type, usn_uuid};
use crate::config::InternalPortMode;
use crate::directory::{Directory, NodeCommand, Peer, PeerSource, Reachability, Role};
use crate::election::{self, Dest, Election, Event as ElectionEvent};
use crate::identity::{self, Identity, NameOrigin};
use claim::AddWhy;
use igd::{Igd, Op, Outcome, SeenIgd};
use lan::NoticeState;
pub use lan::{MAX_SENDERS, SEQ_RESET_AFTER};
pub use names::MAX_HEARD;
pub use options::Options;
use walk::{PeerState, Walk, WalkPurpose};

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

/// Our mapping at the router.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Mapping {
    external: u16,
    internal: u16,
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
    seq_filter: lan::SeqFilter,
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
    /// Elected with no IGD: the representative with no port to hold ([`lanrep`]).
    lan_rep: bool,
    /// The election started because no IGD answered (not because we hold a port).
    election_without_igd: bool,
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
            seq_filter: lan::SeqFilter::default(),
            heard_names: BTreeMap::new(),
            peers: BTreeMap::new(),
            stats: LanStats::default(),
            dup: dupid::DupState::default(),
            election: None,
            takeover: None,
            reclaim: false,
            rep_wait_since: None,
            rep_lapse: None,
            lan_rep: false,
            election_without_igd: false,
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
            // No IGD: the elected LAN representative lists the others all the same.
            _ if self.lan_rep => Role::Representative,
            None if self.lan_member() => Role::Member,
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

    fn jitter(&mut self, d: Duration) -> Duration {
        // +-10 %, so nodes started together do not search in lock-step.
        let f: f64 = self.rng.random_range(0.9..1.1);
        d.mul_f64(f)
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
                    if matches!(self.reachability, Reachability::Refused { .. }) && !self.claiming()
                    {
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
            Timer::Takeover => self.retry_rep(now),
            Timer::ShutdownDeadline => {
                tracing::warn!(
                    "shutdown: the router did not answer in time; mapping left to expire"
                );
                self.finish();
            }
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

    /// A reply while shutting down: a granted Add still tells which port to delete; the answer
    /// to our DeletePortMapping ends the shutdown.
    fn on_reply_shutting_down(&mut self, op: Op, outcome: Outcome) {
        match (op, outcome) {
            (Op::Add { m, any, .. }, Outcome::Ok(reply)) => {
                self.mapping = Some(Mapping {
                    external: claim::granted_port(&m, any, reply),
                    internal: m.internal_port,
                });
            }
            (Op::Delete(port), outcome) => {
                match outcome {
                    Outcome::Ok(_) => tracing::info!(port, "mapping deleted"),
                    Outcome::Fault(f) => tracing::warn!(port, "DeletePortMapping: {f}"),
                    Outcome::BadReply(e) | Outcome::Failed(e) => {
                        tracing::warn!(port, "DeletePortMapping: {e}")
                    }
                }
                return self.finish();
            }
            _ => {}
        }
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
