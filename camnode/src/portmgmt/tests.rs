//! The port manager driven with a virtual clock: several nodes, one fake IGD that speaks the
//! real wire formats (SSDP, description XML, SOAP through `shared`), and a LAN that carries the
//! LAN protocol. Every exchange is instantaneous; time only moves to the next timer.

use std::collections::{BTreeMap, VecDeque};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::time::{Duration, Instant};

use shared::description::{DeviceInfo, RootConfig, root_description};
use shared::igd::{Action, PortMappingEntry, Protocol, Reply, parse_action};
use shared::soap::{ActionRequest, Fault};
use shared::upnp_error::UpnpError;
use shared::{lanproto, ssdp};

use super::core::{HttpRequest, HttpResponse, Input, Options, Output, PortManager};
use super::desc;
use crate::directory::{Directory, NodeCommand, PeerSource, Reachability, Role};
use crate::identity::{Identity, NameOrigin};

mod cost;
mod hostile;

const ROUTER: Ipv4Addr = Ipv4Addr::new(192, 168, 1, 1);
const UUID: &str = "uuid:11111111-2222-3333-4444-555555555555";

/// A fake IGD: a table, a few behaviour switches, a log of the actions it served.
struct FakeIgd {
    v2: bool,
    online: bool,
    boot_id: u32,
    external: String,
    entries: Vec<PortMappingEntry>,
    any_supported: bool,
    list_supported: bool,
    permanent_only: bool,
    same_port_required: bool,
    /// Secure mode: only the mapping's own client may delete it (606 otherwise).
    secure: bool,
    /// Leases count down and lapse (the Sim sets `now` before every request); otherwise a
    /// mapping stays until deleted and reports the lease it was given.
    leases: bool,
    now: Option<Instant>,
    /// When each mapping's lease ends, by external port.
    ends: BTreeMap<u16, Instant>,
    log: Vec<(Ipv4Addr, String)>,
    /// A description served instead of the generated one (a rogue IGD).
    description: Option<String>,
}

impl FakeIgd {
    fn new(v2: bool) -> FakeIgd {
        FakeIgd {
            v2,
            online: true,
            boot_id: 1,
            external: "60.120.76.64".into(),
            entries: Vec::new(),
            any_supported: true,
            list_supported: true,
            permanent_only: false,
            same_port_required: false,
            secure: false,
            leases: false,
            now: None,
            ends: BTreeMap::new(),
            log: Vec::new(),
            description: None,
        }
    }

    /// Drops the mappings whose lease has lapsed (with `leases`).
    fn expire(&mut self) {
        let Some(now) = self.now.filter(|_| self.leases) else {
            return;
        };
        let ends = &mut self.ends;
        self.entries.retain(|e| {
            let gone = ends.get(&e.external_port).is_some_and(|t| *t <= now);
            if gone {
                ends.remove(&e.external_port);
            }
            !gone
        });
    }

    /// Notes a mapping's lease (with `leases`).
    fn lease(&mut self, port: u16, secs: u32) {
        if let Some(now) = self.now.filter(|_| self.leases) {
            if secs == 0 {
                self.ends.remove(&port);
            } else {
                self.ends
                    .insert(port, now + Duration::from_secs(u64::from(secs)));
            }
        }
    }

    fn foreign(&mut self, port: u16, proto: Protocol, client: [u8; 4], desc: &str) {
        self.entries.push(PortMappingEntry {
            remote_host: None,
            external_port: port,
            protocol: proto,
            internal_port: port,
            internal_client: Ipv4Addr::from(client),
            enabled: true,
            description: desc.into(),
            lease_duration: 0,
        });
    }

    fn search_response(&self) -> Vec<u8> {
        ssdp::SearchResponse {
            max_age: 120,
            date: None,
            location: format!("http://{ROUTER}:5000/rootDesc.xml"),
            server: "Linux UPnP/1.1 fake/1".into(),
            st: "urn:schemas-upnp-org:device:InternetGatewayDevice:1".into(),
            usn: format!("{UUID}::urn:schemas-upnp-org:device:InternetGatewayDevice:1"),
            boot_id: Some(self.boot_id),
            config_id: Some(1),
            search_port: None,
        }
        .emit()
    }

    fn actions(&self, name: &str) -> Vec<String> {
        self.log
            .iter()
            .filter(|(_, a)| a.starts_with(name))
            .map(|(_, a)| a.clone())
            .collect()
    }

    fn handle(&mut self, client: Ipv4Addr, req: &HttpRequest) -> Result<HttpResponse, String> {
        if !self.online {
            return Err("timed out".into());
        }
        let ok = |body: Vec<u8>| {
            Ok(HttpResponse {
                status: 200,
                body,
                local_addr: Some(client),
            })
        };
        let Some(body) = &req.body else {
            let cfg = RootConfig {
                igd_version: if self.v2 { 2 } else { 1 },
                ..root_config("fake")
            };
            let text = self.description.clone();
            return ok(text.unwrap_or_else(|| root_description(&cfg)).into_bytes());
        };
        let ar = ActionRequest::parse(body).map_err(|e| e.to_string())?;
        let (_, action) = parse_action(&ar).map_err(|e| e.to_string())?;
        let res = self.act(client, &action);
        self.log.push((
            client,
            format!("{} {}", action.name(), describe(&action, &res)),
        ));
        match res {
            Ok(reply) => ok(reply.to_response(&action, &ar.service_type).emit()),
            Err(e) => Ok(HttpResponse {
                status: 500,
                body: Fault::from(e).emit(),
                local_addr: Some(client),
            }),
        }
    }

    fn act(&mut self, client: Ipv4Addr, action: &Action) -> Result<Reply, UpnpError> {
        self.expire();
        let find = |entries: &[PortMappingEntry], port: u16, proto: Protocol| {
            entries
                .iter()
                .position(|e| e.external_port == port && e.protocol == proto)
        };
        match action {
            Action::AddPortMapping(m) | Action::AddAnyPortMapping(m) => {
                let any = matches!(action, Action::AddAnyPortMapping(_));
                if any && (!self.v2 || !self.any_supported) {
                    return Err(UpnpError::InvalidAction);
                }
                if self.permanent_only && m.lease_duration != 0 {
                    return Err(UpnpError::OnlyPermanentLeasesSupported);
                }
                if self.same_port_required && m.internal_port != m.external_port {
                    return Err(UpnpError::SamePortValuesRequired);
                }
                let owner = m.internal_client.unwrap_or(client);
                let mut port = m.external_port;
                if let Some(i) = find(&self.entries, port, m.protocol) {
                    if self.entries[i].internal_client == owner {
                        self.entries[i].description = m.description.clone();
                        self.entries[i].internal_port = m.internal_port;
                        self.lease(port, m.lease_duration);
                        return Ok(if any {
                            Reply::ReservedPort(port)
                        } else {
                            Reply::Empty
                        });
                    }
                    if !any {
                        return Err(UpnpError::ConflictInMappingEntry);
                    }
                    while find(&self.entries, port, m.protocol).is_some() {
                        port += 1;
                    }
                }
                self.entries.push(PortMappingEntry {
                    remote_host: None,
                    external_port: port,
                    protocol: m.protocol,
                    internal_port: m.internal_port,
                    internal_client: owner,
                    enabled: true,
                    description: m.description.clone(),
                    lease_duration: m.lease_duration,
                });
                self.lease(port, m.lease_duration);
                Ok(if any {
                    Reply::ReservedPort(port)
                } else {
                    Reply::Empty
                })
            }
            Action::GetExternalIpAddress => Ok(Reply::ExternalIpAddress(self.external.clone())),
            Action::GetGenericPortMappingEntry(i) => self
                .entries
                .get(*i as usize)
                .cloned()
                .map(Reply::GenericEntry)
                .ok_or(UpnpError::SpecifiedArrayIndexInvalid),
            Action::GetSpecificPortMappingEntry(k) => {
                find(&self.entries, k.external_port, k.protocol)
                    .map(|i| {
                        let e = &self.entries[i];
                        // The remaining lease, rounded up (as our router reports it).
                        let remaining = match (self.now, self.ends.get(&e.external_port)) {
                            (Some(now), Some(end)) if self.leases => {
                                let d = end.saturating_duration_since(now);
                                (d.as_secs() + u64::from(d.subsec_nanos() > 0)).max(1) as u32
                            }
                            _ => e.lease_duration,
                        };
                        Reply::SpecificEntry {
                            internal_port: e.internal_port,
                            internal_client: e.internal_client,
                            enabled: true,
                            description: e.description.clone(),
                            lease_duration: remaining,
                        }
                    })
                    .ok_or(UpnpError::NoSuchEntryInArray)
            }
            Action::GetListOfPortMappings(r, _) => {
                if !self.list_supported {
                    return Err(UpnpError::InvalidAction);
                }
                let v: Vec<_> = self
                    .entries
                    .iter()
                    .filter(|e| {
                        e.protocol == r.protocol
                            && (r.start_port..=r.end_port).contains(&e.external_port)
                    })
                    .cloned()
                    .collect();
                if v.is_empty() {
                    Err(UpnpError::PortMappingNotFound)
                } else {
                    Ok(Reply::PortListing(v))
                }
            }
            Action::DeletePortMapping(k) => {
                match find(&self.entries, k.external_port, k.protocol) {
                    Some(i) if self.secure && self.entries[i].internal_client != client => {
                        Err(UpnpError::ActionNotAuthorized)
                    }
                    Some(i) => {
                        let e = self.entries.remove(i);
                        self.ends.remove(&e.external_port);
                        Ok(Reply::Empty)
                    }
                    None => Err(UpnpError::NoSuchEntryInArray),
                }
            }
            _ => Err(UpnpError::InvalidAction),
        }
    }
}

/// The fake IGD's device description settings (IGD:1; `friendly_name` as given).
fn root_config(friendly_name: &str) -> RootConfig {
    RootConfig {
        igd_version: 1,
        uuids: [UUID[5..].to_string(), "w".into(), "c".into()],
        info: DeviceInfo {
            friendly_name: friendly_name.into(),
            manufacturer: String::new(),
            manufacturer_url: String::new(),
            model_description: String::new(),
            model_name: String::new(),
            model_number: String::new(),
            model_url: String::new(),
            serial_number: String::new(),
            presentation_url: None,
        },
        config_id: 1,
    }
}

fn describe(a: &Action, res: &Result<Reply, UpnpError>) -> String {
    let arg = match a {
        Action::AddPortMapping(m) | Action::AddAnyPortMapping(m) => format!("{}", m.external_port),
        Action::GetGenericPortMappingEntry(i) => format!("{i}"),
        Action::DeletePortMapping(k) => format!("{}", k.external_port),
        _ => String::new(),
    };
    match res {
        Ok(Reply::ReservedPort(p)) => format!("{arg} -> {p}"),
        Ok(_) => format!("{arg} ok"),
        Err(e) => format!("{arg} {}", e.code()),
    }
}

struct Node {
    pm: PortManager,
    addr: Ipv4Addr,
    dir: Option<Directory>,
    saved: Option<Identity>,
    done: bool,
    searches: Vec<Instant>,
}

struct Sim {
    start: Instant,
    now: Instant,
    igd: FakeIgd,
    igd_present: bool,
    nodes: Vec<Node>,
    lan_loss: bool,
    /// (node, what) in the order the nodes did it: `lan <type>` and `http <action>`.
    trace: Vec<(usize, String)>,
    /// Every HTTP request the nodes asked for, by node.
    requests: Vec<(usize, HttpRequest)>,
    /// Answers to HTTP requests are lost (the driver never reports them).
    lose_http: bool,
}

fn opts() -> Options {
    Options::default()
}

fn named(id: u64, name: Option<&str>) -> Identity {
    Identity {
        id,
        name: name.map(str::to_string),
        origin: if name.is_some() {
            NameOrigin::Config
        } else {
            NameOrigin::Auto
        },
    }
}

impl Sim {
    fn new(igd: FakeIgd) -> Sim {
        let now = Instant::now();
        Sim {
            start: now,
            now,
            igd,
            igd_present: true,
            nodes: Vec::new(),
            lan_loss: false,
            trace: Vec::new(),
            requests: Vec::new(),
            lose_http: false,
        }
    }

    fn add(&mut self, ident: Identity, opt: Options) -> usize {
        let i = self.nodes.len();
        let addr = Ipv4Addr::new(192, 168, 1, 100 + i as u8);
        let pm = PortManager::new(opt, ident, 7 + i as u64, 1000 * (i as u64 + 1), self.now);
        self.nodes.push(Node {
            pm,
            addr,
            dir: None,
            saved: None,
            done: false,
            searches: Vec::new(),
        });
        self.settle();
        i
    }

    fn input(&mut self, i: usize, input: Input) {
        let now = self.now;
        self.nodes[i].pm.handle_input(now, input);
        self.settle();
    }

    /// Carries out outputs until nothing is left.
    fn settle(&mut self) {
        let mut work: VecDeque<(usize, Input)> = VecDeque::new();
        loop {
            for i in 0..self.nodes.len() {
                while let Some(out) = self.nodes[i].pm.poll_output() {
                    match out {
                        Output::SsdpSearch(data) => {
                            assert!(matches!(ssdp::parse(&data), Ok(ssdp::Message::Search(_))));
                            self.nodes[i].searches.push(self.now);
                            if self.igd_present && self.igd.online {
                                let from = SocketAddr::from((ROUTER, 1900));
                                work.push_back((
                                    i,
                                    Input::Ssdp {
                                        from,
                                        data: self.igd.search_response(),
                                    },
                                ));
                            }
                        }
                        Output::Http { id, request } => {
                            let what = request.soap_action.clone().unwrap_or_default();
                            let what = what.rsplit('#').next().unwrap_or("").trim_matches('"');
                            self.trace.push((i, format!("http {what}")));
                            self.requests.push((i, request.clone()));
                            if self.lose_http {
                                continue;
                            }
                            self.igd.now = Some(self.now);
                            let result = if self.igd_present {
                                self.igd.handle(self.nodes[i].addr, &request)
                            } else {
                                Err("connection refused".into())
                            };
                            work.push_back((i, Input::Http { id, result }));
                        }
                        Output::Lan { to, data } => {
                            if let Ok(r) = lanproto::Repr::parse(&data) {
                                let kind = format!("{:?}", r.body);
                                let kind = kind.split(['(', ' ']).next().unwrap_or("").to_string();
                                self.trace.push((i, format!("lan {kind}")));
                            }
                            if self.lan_loss {
                                continue;
                            }
                            let from =
                                SocketAddrV4::new(self.nodes[i].addr, lanproto::DEFAULT_PORT);
                            for j in 0..self.nodes.len() {
                                let hit = if to.ip().is_multicast() {
                                    j != i
                                } else {
                                    *to.ip() == self.nodes[j].addr
                                };
                                if hit && !self.nodes[j].done {
                                    work.push_back((
                                        j,
                                        Input::Lan {
                                            from,
                                            data: data.clone(),
                                        },
                                    ));
                                }
                            }
                        }
                        Output::Publish(d) => self.nodes[i].dir = Some(d),
                        Output::SaveIdentity(id) => self.nodes[i].saved = Some(id),
                        Output::LanAddr(a) => assert_eq!(a, self.nodes[i].addr),
                        Output::Done => self.nodes[i].done = true,
                    }
                }
            }
            let Some((i, input)) = work.pop_front() else {
                return;
            };
            let now = self.now;
            self.nodes[i].pm.handle_input(now, input);
        }
    }

    /// Moves the clock to `t`, running every timer on the way.
    fn run_until(&mut self, t: Instant) {
        loop {
            self.settle();
            let next = self
                .nodes
                .iter()
                .filter(|n| !n.done)
                .filter_map(|n| n.pm.poll_timeout())
                .min();
            match next {
                Some(n) if n <= t => {
                    self.now = self.now.max(n);
                    let now = self.now;
                    for node in &mut self.nodes {
                        // A crashed node (done without shutdown) runs nothing.
                        if !node.done && node.pm.poll_timeout().is_some_and(|x| x <= now) {
                            node.pm.handle_timeout(now);
                        }
                    }
                }
                _ => break,
            }
        }
        self.now = self.now.max(t);
    }

    fn run_for(&mut self, d: Duration) {
        let t = self.now + d;
        self.run_until(t);
    }

    fn dir(&self, i: usize) -> &Directory {
        self.nodes[i].dir.as_ref().expect("published")
    }
}

fn secs(s: f64) -> Duration {
    Duration::from_secs_f64(s)
}

/// Options with the representative election (embodiment 4) as a configured node has it.
fn el_opts() -> Options {
    Options {
        election: Some(crate::election::Settings::default()),
        ..Options::default()
    }
}

impl Sim {
    /// The representatives as the Directories say, and the holder of 8080 at the router.
    fn reps(&self) -> Vec<usize> {
        (0..self.nodes.len())
            .filter(|&i| !self.nodes[i].done && self.dir(i).role == Role::Representative)
            .collect()
    }

    fn holder(&self, port: u16) -> Option<Ipv4Addr> {
        self.igd
            .entries
            .iter()
            .find(|e| e.external_port == port)
            .map(|e| e.internal_client)
    }

    /// Runs in 10 ms steps until `pred`; the time it took.
    fn run_until_pred(&mut self, limit: Duration, pred: impl Fn(&Sim) -> bool) -> Option<Duration> {
        let start = self.now;
        while self.now - start <= limit {
            if pred(self) {
                return Some(self.now - start);
            }
            self.run_for(secs(0.01));
        }
        None
    }

    /// Three nodes with the election: the first gets 8080 and lists the other two.
    fn three_with_election(igd: FakeIgd) -> Sim {
        let mut sim = Sim::new(igd);
        for id in [0xa, 0xb, 0xc] {
            sim.add(named(id, None), el_opts());
            sim.run_for(secs(1.0));
        }
        sim.run_for(secs(2.0));
        assert_eq!(sim.reps(), [0]);
        assert_eq!(sim.dir(0).peers.len(), 2, "{:?}", sim.dir(0).peers);
        assert_eq!(
            sim.igd
                .entries
                .iter()
                .find(|e| e.external_port == 8080)
                .map(|e| e.lease_duration),
            Some(6),
            "the representative port has the short lease"
        );
        sim
    }
}

#[test]
fn graceful_stop_says_bye_bye_before_deleting_and_a_successor_takes_8080() {
    let mut sim = Sim::three_with_election(FakeIgd::new(false));
    sim.trace.clear();
    sim.input(0, Input::Shutdown);
    assert!(sim.nodes[0].done);
    // Claim 13: bye-bye (multicast + unicast to both members) before DeletePortMapping.
    let mine: Vec<&str> = sim
        .trace
        .iter()
        .filter(|(i, _)| *i == 0)
        .map(|(_, w)| w.as_str())
        .collect();
    assert_eq!(
        mine,
        [
            "lan ByeBye",
            "lan ByeBye",
            "lan ByeBye",
            "http DeletePortMapping"
        ]
    );
    let t = sim
        .run_until_pred(secs(1.0), |s| {
            s.reps().len() == 1 && s.holder(8080).is_some()
        })
        .expect("a successor within 1 s");
    assert!(t <= secs(0.45), "election + takeover took {t:?}");
    sim.run_for(secs(0.5));
    let new = sim.reps()[0];
    let other = if new == 1 { 2 } else { 1 };
    // Fig. 14: its own member mapping is gone, 8080 is its own, the survivor is listed.
    assert_eq!(sim.holder(8080), Some(sim.nodes[new].addr));
    assert_eq!(sim.igd.entries.len(), 2, "{:?}", sim.igd.entries);
    assert_eq!(sim.dir(new).external_port, Some(8080));
    assert_eq!(sim.dir(new).lan_port, 8080);
    let peers: Vec<&str> = sim
        .dir(new)
        .peers
        .iter()
        .map(|p| p.node_id.as_str())
        .collect();
    assert_eq!(peers, [sim.dir(other).node_id.as_str()]);
    assert_eq!(sim.dir(other).role, Role::Member);
}

#[test]
fn a_crashed_representative_is_replaced_and_its_mapping_deleted() {
    let mut sim = Sim::three_with_election(FakeIgd::new(false));
    sim.nodes[0].done = true; // SIGKILL: no bye-bye, no deletion
    let t = sim
        .run_until_pred(secs(3.0), |s| {
            s.reps().len() == 1 && s.holder(8080).is_some_and(|h| h != s.nodes[0].addr)
        })
        .expect("a successor within 3 s");
    assert!(t <= secs(1.8), "detection + election + takeover took {t:?}");
    sim.run_for(secs(6.0));
    let new = sim.reps()[0];
    // The dead node's entry: its mapping was replaced, it stopped answering: not listed.
    assert_eq!(sim.dir(new).peers.len(), 1, "{:?}", sim.dir(new).peers);
    // The old representative comes back: it joins as a member and does not fight.
    let back = sim.add(named(0xa, Some("camera 1")), el_opts());
    sim.run_for(secs(3.0));
    assert_eq!(sim.dir(back).role, Role::Member);
    assert_eq!(sim.reps(), [new]);
    assert_eq!(sim.dir(new).peers.len(), 2, "{:?}", sim.dir(new).peers);
}

#[test]
fn in_secure_mode_the_successor_asks_again_until_the_old_lease_lapses() {
    let mut igd = FakeIgd::new(false);
    igd.secure = true;
    let mut sim = Sim::three_with_election(igd);
    let dead = sim.nodes[0].addr;
    sim.nodes[0].done = true;
    sim.run_for(secs(5.0));
    // The successor could not delete the dead holder's mapping (606) and keeps asking.
    assert_eq!(sim.holder(8080), Some(dead));
    assert!(sim.reps().is_empty());
    assert!(
        sim.igd
            .actions("DeletePortMapping 8080")
            .iter()
            .all(|a| a.ends_with("606")),
        "{:?}",
        sim.igd.actions("DeletePortMapping")
    );
    let retries = sim.igd.actions("AddPortMapping 8080").len();
    assert!(
        retries >= 4,
        "AddPortMapping 8080 retried every second: {retries}"
    );
    // Meanwhile the successor serves under its own port, and its status says so.
    let waiting: Vec<usize> = (1..3)
        .filter(|&i| sim.dir(i).role == Role::TakingOver)
        .collect();
    assert_eq!(waiting.len(), 1, "one successor is taking over");
    let succ = waiting[0];
    let own = sim.dir(succ).external_port.expect("its own port");
    assert!(own > 8080, "{own}");
    assert_eq!(sim.holder(own), Some(sim.nodes[succ].addr));
    assert_eq!(sim.dir(succ).lan_port, own);
    // Its lease lapses: within a second the successor holds the port, then drops its own.
    sim.igd.entries.retain(|e| e.internal_client != dead);
    let t = sim
        .run_until_pred(secs(2.0), |s| s.reps().len() == 1)
        .expect("a successor once the lease lapsed");
    assert!(t <= secs(1.05), "{t:?}");
    assert_eq!(sim.reps(), [succ]);
    assert_eq!(sim.holder(8080), Some(sim.nodes[succ].addr));
    assert_eq!(sim.holder(own), None, "its member mapping is deleted");
    assert_eq!(sim.dir(succ).external_port, Some(8080));
}

/// Secure mode with leases that lapse: the successor reads the dead holder's remaining lease
/// (GetSpecificPortMappingEntry) and asks again every 200 ms around it: 8080 is back at most
/// about one lease after the crash, within 0.2 s of the lapse.
#[test]
fn in_secure_mode_the_successor_asks_again_right_when_the_old_lease_lapses() {
    for wait in [0.3, 4.1, 9.7] {
        let mut igd = FakeIgd::new(false);
        igd.secure = true;
        igd.leases = true;
        let mut sim = Sim::three_with_election(igd);
        // Crash at some point of the holder's renewal cycle (renewed every 3 s).
        sim.run_for(secs(wait));
        let dead = sim.nodes[0].addr;
        let lapse = sim.igd.ends[&8080];
        let crash = sim.now;
        sim.nodes[0].done = true;
        let t = sim
            .run_until_pred(secs(25.0), |s| {
                s.reps().len() == 1 && s.holder(8080).is_some_and(|h| h != dead)
            })
            .expect("a successor once the lease lapsed");
        let late = (crash + t).saturating_duration_since(lapse);
        // 200 ms between tries, 10 ms steps of this test.
        assert!(late <= secs(0.21), "{late:?} after the lapse");
        assert!(t <= secs(6.21), "{t:?} after the crash (lease 6 s)");
        // Asked just after the lapse it read, not every second since the start only.
        let adds = sim.igd.actions("AddPortMapping 8080");
        assert!(adds.len() <= 25, "{adds:?}");
    }
}

/// Two nodes; the first holds 8080 and lists the second.
fn two_with_election(igd: FakeIgd) -> Sim {
    let mut sim = Sim::new(igd);
    for id in [0xa, 0xb] {
        sim.add(named(id, None), el_opts());
        sim.run_for(secs(1.0));
    }
    sim.run_for(secs(2.0));
    assert_eq!(sim.reps(), [0]);
    sim
}

/// Issue 6, defect 2: a stale representative holds 8080 on a router in secure mode; the current
/// one's reclaim cannot delete it (606) and the router refuses its AddPortMapping (718). It
/// does not give up: it asks again until the stale one, told to stand down, deletes its own
/// mapping (or its lease lapses).
#[test]
fn a_reclaim_refused_in_secure_mode_waits_for_the_stale_representative() {
    let mut sim = two_with_election(FakeIgd::new(false));
    let (a, b) = (0, 1);
    // The LAN fails: b takes over (permissive router: it deletes a's mapping).
    sim.lan_loss = true;
    sim.run_until_pred(secs(5.0), |s| s.holder(8080) == Some(s.nodes[b].addr))
        .expect("b takes over while cut off");
    sim.run_for(secs(0.5));
    assert_eq!(sim.dir(b).role, Role::Representative);
    let b_term = sim.nodes[b].pm.election().map(|e| e.term()).unwrap_or(0);
    // Meanwhile the stale a got the port back at the router (say its renewal raced), and the
    // router switches to secure mode.
    let e = sim
        .igd
        .entries
        .iter_mut()
        .find(|e| e.external_port == 8080)
        .expect("8080");
    e.internal_client = sim.nodes[a].addr;
    e.description = desc::encode(0xa, "camera 1");
    sim.igd.secure = true;
    sim.igd.log.clear();
    // b hears a's inquiry (a still cannot hear b): b wins (newer term) and reclaims.
    let a_term = sim.nodes[a].pm.election().map(|e| e.term()).unwrap_or(0);
    assert!(a_term < b_term);
    let inquiry = lanproto::Repr {
        header: lanproto::Header {
            node_id: 0xa,
            sequence: u64::MAX / 2,
            term: a_term,
        },
        body: lanproto::Body::Inquiry(lanproto::Inquiry {
            external_port: 8080,
            external_addr: None,
        }),
    };
    let from = SocketAddrV4::new(sim.nodes[a].addr, lanproto::DEFAULT_PORT);
    sim.input(
        b,
        Input::Lan {
            from,
            data: inquiry.emit(),
        },
    );
    sim.run_for(secs(3.0));
    let log: Vec<String> = sim
        .igd
        .log
        .iter()
        .filter(|(c, _)| *c == sim.nodes[b].addr)
        .map(|(_, a)| a.clone())
        .collect();
    assert!(
        log.contains(&"DeletePortMapping 8080 606".to_string()),
        "{log:?}"
    );
    assert!(
        log.contains(&"AddPortMapping 8080 718".to_string()),
        "{log:?}"
    );
    assert!(
        log.iter()
            .filter(|a| a.starts_with("AddPortMapping 8080"))
            .count()
            >= 3,
        "asked again: {log:?}"
    );
    // b did not give up: still the representative.
    assert_eq!(sim.dir(b).role, Role::Representative);
    assert_eq!(sim.holder(8080), Some(sim.nodes[a].addr));
    // The LAN heals: a hears b, stands down and deletes its own mapping; b's next try gets it.
    sim.lan_loss = false;
    let t = sim
        .run_until_pred(secs(3.0), |s| {
            s.holder(8080) == Some(s.nodes[b].addr) && s.dir(a).role == Role::Member
        })
        .expect("b holds the port again, a is a member");
    assert!(t <= secs(1.7), "{t:?}");
    assert_eq!(sim.reps(), [b]);
}

#[test]
fn discovery_backs_off_exponentially_to_the_cap_and_reports_no_igd() {
    let mut sim = Sim::new(FakeIgd::new(false));
    sim.igd_present = false;
    let n = sim.add(named(1, Some("a")), opts());
    sim.run_for(secs(200.0));
    let rounds: Vec<Instant> = sim.nodes[n].searches.chunks(3).map(|c| c[0]).collect();
    assert!(
        sim.nodes[n].searches.len().is_multiple_of(3),
        "three search targets per round"
    );
    let gaps: Vec<f64> = rounds
        .windows(2)
        .map(|w| (w[1] - w[0]).as_secs_f64())
        .collect();
    let expect = [1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0, 30.0];
    for (g, e) in gaps.iter().zip(expect) {
        assert!((g - e).abs() <= e * 0.1 + 1e-9, "gaps {gaps:?}");
    }
    assert_eq!(rounds[0], sim.start, "the first search goes out at once");
    assert_eq!(sim.dir(n).reachability, Reachability::NoIgd);
    assert_eq!(sim.dir(n).role, Role::Starting);
    // The router appears: found at the next search, mapped, reachable.
    sim.igd_present = true;
    sim.run_for(secs(31.0));
    assert_eq!(sim.dir(n).reachability, Reachability::Reachable);
    assert_eq!(sim.dir(n).external_port, Some(8080));
}

#[test]
fn three_nodes_get_8080_8081_8082_and_the_representative_lists_the_others_at_once() {
    let mut sim = Sim::new(FakeIgd::new(false));
    let a = sim.add(named(0xa, None), opts());
    sim.run_for(secs(0.01));
    assert_eq!(sim.dir(a).role, Role::Representative);
    assert_eq!(sim.dir(a).name, "camera 1");
    assert_eq!(
        sim.dir(a).external_addr,
        Some(Ipv4Addr::new(60, 120, 76, 64))
    );
    assert_eq!(sim.dir(a).reachability, Reachability::Reachable);
    sim.run_for(secs(2.0));
    let b = sim.add(named(0xb, None), opts());
    sim.run_for(secs(0.01));
    assert_eq!(
        (
            sim.dir(b).role,
            sim.dir(b).external_port,
            sim.dir(b).lan_port
        ),
        (Role::Member, Some(8081), 8081)
    );
    assert_eq!(sim.dir(b).name, "camera 2");
    // Claim 6: listed without waiting for the next walk.
    let peers = &sim.dir(a).peers;
    assert_eq!(peers.len(), 1);
    assert_eq!(
        (
            peers[0].name.as_str(),
            peers[0].external_port,
            peers[0].lan_port
        ),
        ("camera 2", Some(8081), 8081)
    );
    assert_eq!(peers[0].lan_addr, sim.nodes[b].addr);
    assert_eq!(peers[0].source, PeerSource::Notice);
    sim.run_for(secs(1.0));
    let c = sim.add(named(0xc, None), opts());
    sim.run_for(secs(0.01));
    assert_eq!(
        (sim.dir(c).external_port, sim.dir(c).name.as_str()),
        (Some(8082), "camera 3")
    );
    assert_eq!(
        sim.dir(a)
            .peers
            .iter()
            .map(|p| p.external_port)
            .collect::<Vec<_>>(),
        [Some(8081), Some(8082)]
    );
    // 718 on 8080, then 8081 for the third node (claim 1: refused -> ask for another port).
    let c_addr = sim.nodes[c].addr;
    let adds: Vec<_> = sim
        .igd
        .log
        .iter()
        .filter(|(cl, a)| *cl == c_addr && a.starts_with("AddPortMapping"))
        .map(|(_, a)| a.clone())
        .collect();
    assert_eq!(
        &adds[..3],
        [
            "AddPortMapping 8080 718",
            "AddPortMapping 8081 718",
            "AddPortMapping 8082 ok"
        ]
    );
    // The walk confirms them from the router's table.
    sim.run_for(secs(6.0));
    assert!(
        sim.dir(a)
            .peers
            .iter()
            .all(|p| p.source == PeerSource::RouterTable)
    );
    // The notices stopped once acknowledged: members' sent counters are small.
    assert!(
        sim.nodes[b].pm.lan_stats().sent <= 2,
        "{:?}",
        sim.nodes[b].pm.lan_stats()
    );
    // Members learnt the representative's address (unicast possible) and the external address.
    assert_eq!(
        sim.dir(b).external_addr,
        Some(Ipv4Addr::new(60, 120, 76, 64))
    );
    assert!(sim.dir(b).peers.is_empty());
}

#[test]
fn addany_on_v2_with_a_common_internal_port_and_fallback_when_unsupported() {
    let common = Options {
        internal_port_mode: crate::config::InternalPortMode::Common,
        common_internal_port: 80,
        ..opts()
    };
    let mut igd = FakeIgd::new(true);
    igd.foreign(8081, Protocol::Tcp, [192, 168, 1, 50], "Skype");
    let mut sim = Sim::new(igd);
    let a = sim.add(named(1, Some("a")), common.clone());
    let b = sim.add(named(2, Some("b")), common.clone());
    sim.run_for(secs(0.1));
    assert_eq!(sim.dir(a).external_port, Some(8080));
    assert_eq!(
        sim.dir(b).external_port,
        Some(8082),
        "the router picked past 8081"
    );
    assert_eq!(sim.dir(b).lan_port, 80, "Fig. 8b: the common internal port");
    assert_eq!(
        sim.igd.actions("AddAnyPortMapping"),
        ["AddAnyPortMapping 8081 -> 8082"]
    );
    // v2: the walk uses GetListOfPortMappings.
    assert!(!sim.igd.actions("GetListOfPortMappings").is_empty());
    assert!(sim.igd.actions("GetGenericPortMappingEntry").is_empty());
    assert_eq!(sim.dir(a).peers.len(), 1);

    // Fig. 8a on an IGD:2: port by port, so internal = external holds.
    let mut igd = FakeIgd::new(true);
    igd.foreign(8081, Protocol::Tcp, [192, 168, 1, 50], "Skype");
    let mut sim = Sim::new(igd);
    let _a = sim.add(named(1, Some("a")), opts());
    let b = sim.add(named(2, Some("b")), opts());
    sim.run_for(secs(0.1));
    assert_eq!(
        (sim.dir(b).external_port, sim.dir(b).lan_port),
        (Some(8082), 8082)
    );
    assert!(sim.igd.actions("AddAnyPortMapping").is_empty());

    // No AddAnyPortMapping (401) and no GetListOfPortMappings: port by port, generic walk.
    let mut igd = FakeIgd::new(true);
    igd.any_supported = false;
    igd.list_supported = false;
    let mut sim = Sim::new(igd);
    let _a = sim.add(named(1, Some("a")), common.clone());
    let b = sim.add(named(2, Some("b")), common);
    sim.run_for(secs(6.0));
    assert_eq!(sim.dir(b).external_port, Some(8081));
    assert_eq!(
        sim.igd.actions("AddAnyPortMapping"),
        ["AddAnyPortMapping 8081 401"]
    );
    assert_eq!(
        sim.igd.actions("GetListOfPortMappings").len(),
        1,
        "tried once"
    );
    assert!(!sim.igd.actions("GetGenericPortMappingEntry").is_empty());
    assert_eq!(sim.dir(0).peers.len(), 1);
}

#[test]
fn double_nat_and_private_external_addresses() {
    for (ext, double) in [
        ("100.64.1.2", true),
        ("100.127.255.1", true),
        ("10.0.0.2", true),
        ("172.16.5.5", true),
        ("172.32.0.1", false),
        ("192.168.0.2", true),
        ("169.254.3.3", true),
        ("100.128.0.1", false),
        ("60.120.76.64", false),
    ] {
        let mut igd = FakeIgd::new(false);
        igd.external = ext.into();
        let mut sim = Sim::new(igd);
        let a = sim.add(named(1, Some("a")), opts());
        sim.run_for(secs(0.1));
        let ip: Ipv4Addr = ext.parse().unwrap();
        let want = if double {
            Reachability::DoubleNat { external: ip }
        } else {
            Reachability::Reachable
        };
        assert_eq!(sim.dir(a).reachability, want, "{ext}");
        // Still mapped and serving the LAN.
        assert_eq!(sim.dir(a).external_port, Some(8080));
    }
    // No address at all (WAN down), then one: checked again.
    let mut igd = FakeIgd::new(false);
    igd.external = String::new();
    let mut sim = Sim::new(igd);
    let a = sim.add(named(1, Some("a")), opts());
    sim.run_for(secs(0.1));
    assert!(matches!(
        sim.dir(a).reachability,
        Reachability::Refused { .. }
    ));
    sim.igd.external = "60.120.76.64".into();
    sim.run_for(secs(6.0));
    assert_eq!(sim.dir(a).reachability, Reachability::Reachable);
}

#[test]
fn lease_is_renewed_at_half_life() {
    let mut sim = Sim::new(FakeIgd::new(false));
    let o = Options {
        lease_seconds: 100,
        ..opts()
    };
    let b_only = Options {
        walk_interval: secs(1000.0),
        ..o.clone()
    };
    sim.add(named(1, Some("a")), b_only);
    sim.run_for(secs(160.0));
    assert_eq!(
        sim.igd.actions("AddPortMapping"),
        ["AddPortMapping 8080 ok"; 4],
        "at 0, 50, 100, 150 s"
    );
    // A permanent-only router (725): asked again with lease 0.
    let mut igd = FakeIgd::new(false);
    igd.permanent_only = true;
    let mut sim = Sim::new(igd);
    sim.add(named(1, Some("a")), o);
    sim.run_for(secs(0.1));
    assert_eq!(
        sim.igd.actions("AddPortMapping"),
        ["AddPortMapping 8080 725", "AddPortMapping 8080 ok"]
    );
    assert_eq!(sim.igd.entries[0].lease_duration, 0);
}

#[test]
fn common_internal_port_and_724() {
    let mut sim = Sim::new(FakeIgd::new(false));
    let o = Options {
        internal_port_mode: crate::config::InternalPortMode::Common,
        common_internal_port: 80,
        web_port: 80,
        ..opts()
    };
    let a = sim.add(named(1, Some("a")), o.clone());
    let b = sim.add(named(2, Some("b")), o.clone());
    sim.run_for(secs(0.1));
    assert_eq!(
        (sim.dir(a).external_port, sim.dir(a).lan_port),
        (Some(8080), 80)
    );
    assert_eq!(
        (sim.dir(b).external_port, sim.dir(b).lan_port),
        (Some(8081), 80)
    );
    assert_eq!(sim.dir(a).peers[0].lan_port, 80);
    let mut igd = FakeIgd::new(false);
    igd.same_port_required = true;
    let mut sim = Sim::new(igd);
    let a = sim.add(named(1, Some("a")), o);
    sim.run_for(secs(0.1));
    assert_eq!(
        sim.igd.actions("AddPortMapping"),
        ["AddPortMapping 8080 724", "AddPortMapping 8080 ok"]
    );
    assert_eq!(sim.dir(a).lan_port, 8080, "fell back to Fig. 8a");
}

#[test]
fn table_walk_reads_until_713_and_recognises_ours_among_foreign_entries() {
    let mut igd = FakeIgd::new(false);
    igd.foreign(3074, Protocol::Udp, [192, 168, 1, 40], "Xbox");
    igd.foreign(
        9000,
        Protocol::Tcp,
        [192, 168, 1, 41],
        "homenet-cam-other;id=5",
    );
    igd.foreign(
        9001,
        Protocol::Tcp,
        [192, 168, 1, 42],
        &desc::encode(0x77, "porch"),
    );
    igd.foreign(
        9002,
        Protocol::Udp,
        [192, 168, 1, 43],
        &desc::encode(0x78, "udp is not us"),
    );
    igd.foreign(9003, Protocol::Tcp, [192, 168, 1, 44], "");
    let mut sim = Sim::new(igd);
    let a = sim.add(named(1, Some("rep")), opts());
    sim.run_for(secs(0.1));
    let peers = &sim.dir(a).peers;
    assert_eq!(peers.len(), 1, "{peers:?}");
    assert_eq!(
        (peers[0].node_id.as_str(), peers[0].name.as_str()),
        ("0000000000000077", "porch")
    );
    assert_eq!(
        (peers[0].lan_addr, peers[0].lan_port, peers[0].external_port),
        (Ipv4Addr::new(192, 168, 1, 42), 9001, Some(9001))
    );
    // Indexes 0..=6: five foreign + our own entry, then 713 at index 6.
    let walk = sim.igd.actions("GetGenericPortMappingEntry");
    assert_eq!(walk.len(), 7, "{walk:?}");
    assert_eq!(
        walk.last().map(String::as_str),
        Some("GetGenericPortMappingEntry 6 713")
    );
    // Periodically (claim 2): the next walk after walk_interval drops a vanished entry.
    sim.igd.entries.retain(|e| e.external_port != 9001);
    sim.run_for(secs(5.5));
    assert!(sim.dir(a).peers.is_empty());
    assert!(sim.igd.actions("GetGenericPortMappingEntry").len() >= 13);
}

#[test]
fn notices_merge_with_the_table_and_expire() {
    let mut sim = Sim::new(FakeIgd::new(false));
    let a = sim.add(
        named(1, Some("rep")),
        Options {
            notice_grace: secs(12.0),
            ..opts()
        },
    );
    sim.run_for(secs(0.1));
    // A node without a mapping (e.g. its router refused it) announces itself by hand.
    let notice = lanproto::Repr {
        header: lanproto::Header {
            node_id: 0x99,
            sequence: 5,
            term: 0,
        },
        body: lanproto::Body::PortNotice(lanproto::PortNotice {
            name: "by notice".into(),
            lan_addr: Ipv4Addr::new(192, 168, 1, 77),
            internal_port: 8090,
            external_port: None,
        }),
    };
    let from = SocketAddrV4::new(Ipv4Addr::new(192, 168, 1, 77), 17777);
    sim.input(
        a,
        Input::Lan {
            from,
            data: notice.emit(),
        },
    );
    assert_eq!(sim.dir(a).peers.len(), 1);
    assert_eq!(sim.dir(a).peers[0].external_port, None);
    // A duplicate is dropped and counted.
    sim.input(
        a,
        Input::Lan {
            from,
            data: notice.emit(),
        },
    );
    assert_eq!(sim.nodes[a].pm.lan_stats().duplicates, 1);
    // Not in the router's table: kept for the grace period, then dropped at a walk.
    sim.run_for(secs(10.0));
    assert_eq!(sim.dir(a).peers.len(), 1);
    sim.run_for(secs(6.0));
    assert!(sim.dir(a).peers.is_empty());
    // Malformed and unknown input is counted and dropped.
    let mut v2 = notice.emit();
    v2[4] = 2;
    // Types 3-10 belong to the rotation (issue 6); 11 is unknown.
    let mut t11 = notice.emit();
    t11[5] = 11;
    for data in [b"garbage".to_vec(), v2, t11, notice.emit()[..40].to_vec()] {
        sim.input(a, Input::Lan { from, data });
    }
    let s = sim.nodes[a].pm.lan_stats();
    assert_eq!(
        (s.foreign, s.unknown_version, s.unknown_type, s.malformed),
        (1, 1, 1, 1)
    );
}

#[test]
fn a_lost_notice_is_repeated_and_the_walk_lists_the_node_anyway() {
    let mut sim = Sim::new(FakeIgd::new(false));
    let a = sim.add(named(1, Some("rep")), opts());
    sim.run_for(secs(1.0));
    sim.lan_loss = true;
    let b = sim.add(named(2, Some("member")), opts());
    sim.run_for(secs(0.1));
    assert!(sim.dir(a).peers.is_empty());
    sim.run_for(secs(7.0));
    // Six sends by the schedule, each multicast + unicast to the representative.
    assert_eq!(
        sim.nodes[b].pm.lan_stats().sent,
        11,
        "{:?}",
        sim.nodes[b].pm.lan_stats()
    );
    assert_eq!(
        sim.dir(a).peers.len(),
        1,
        "found by the walk (embodiment 1)"
    );
    assert_eq!(sim.dir(a).peers[0].name, "member");
}

#[test]
fn rename_updates_the_description_and_the_representatives_list() {
    let mut sim = Sim::new(FakeIgd::new(false));
    // Started together: both read an empty table and pick "camera 1"; the member learns the
    // representative's name from its mapping and, having the higher id, picks again.
    let a = sim.add(named(1, None), opts());
    let b = sim.add(named(2, None), opts());
    sim.run_for(secs(0.1));
    assert_eq!(sim.dir(a).name, "camera 1");
    assert_eq!(sim.dir(a).peers[0].name, "camera 2");
    let new = "Garten; hinten = 100% ☕ and a rather long name that will be cut";
    sim.input(b, Input::Command(NodeCommand::Rename(new.into())));
    assert_eq!(sim.dir(b).name, new);
    let saved = sim.nodes[b].saved.clone().unwrap();
    assert_eq!(
        (saved.name.as_deref(), saved.origin),
        (Some(new), NameOrigin::Renamed)
    );
    // The representative shows the full name at once (the notice), and keeps it after walks
    // even though the router's description is cut.
    assert_eq!(sim.dir(a).peers[0].name, new);
    let entry = sim
        .igd
        .entries
        .iter()
        .find(|e| e.external_port == 8081)
        .unwrap();
    let d = desc::parse(&entry.description).unwrap();
    assert!(d.truncated && new.starts_with(&d.name), "{entry:?}");
    sim.run_for(secs(11.0));
    assert_eq!(sim.dir(a).peers[0].name, new);
    // Invalid names are refused.
    sim.input(b, Input::Command(NodeCommand::Rename("bad\nname".into())));
    assert_eq!(sim.dir(b).name, new);
    // The representative's own rename shows in its Directory and the table.
    sim.input(a, Input::Command(NodeCommand::Rename("front door".into())));
    assert_eq!(sim.dir(a).name, "front door");
    assert!(
        sim.igd
            .entries
            .iter()
            .any(|e| desc::parse(&e.description).is_some_and(|d| d.name == "front door"))
    );
}

#[test]
fn shutdown_deletes_our_mappings() {
    let mut sim = Sim::new(FakeIgd::new(false));
    sim.igd.foreign(22, Protocol::Tcp, [192, 168, 1, 9], "ssh");
    let a = sim.add(named(1, Some("a")), opts());
    let b = sim.add(named(2, Some("b")), opts());
    sim.run_for(secs(1.0));
    assert_eq!(sim.igd.entries.len(), 3);
    sim.input(b, Input::Shutdown);
    assert!(sim.nodes[b].done);
    sim.input(a, Input::Shutdown);
    assert!(sim.nodes[a].done);
    assert_eq!(sim.igd.entries.len(), 1, "only the foreign mapping is left");
    assert_eq!(
        sim.igd.actions("DeletePortMapping"),
        ["DeletePortMapping 8081 ok", "DeletePortMapping 8080 ok"]
    );
    // Without a router, shutdown finishes at once.
    let mut sim = Sim::new(FakeIgd::new(false));
    sim.igd_present = false;
    let a = sim.add(named(1, Some("a")), opts());
    sim.input(a, Input::Shutdown);
    assert!(sim.nodes[a].done);
    // A router that stops answering: the deadline ends it.
    let mut sim = Sim::new(FakeIgd::new(false));
    let a = sim.add(named(1, Some("a")), opts());
    sim.run_for(secs(0.1));
    sim.igd.online = false;
    let Some(Output::Http { .. }) = ({
        sim.nodes[a].pm.handle_input(sim.now, Input::Shutdown);
        sim.nodes[a].pm.poll_output()
    }) else {
        panic!("a DeletePortMapping request")
    };
    sim.run_for(secs(6.0));
    assert!(sim.nodes[a].done);
}

#[test]
fn router_restart_is_noticed_and_the_same_ports_are_claimed_again() {
    let mut sim = Sim::new(FakeIgd::new(false));
    let a = sim.add(named(1, Some("a")), opts());
    let b = sim.add(named(2, Some("b")), opts());
    sim.run_for(secs(1.0));
    // The router reboots: table gone, new BOOTID announced.
    sim.igd.entries.clear();
    sim.igd.boot_id = 2;
    let alive = ssdp::Notify {
        host: ssdp::MULTICAST_ADDR.into(),
        nt: "urn:schemas-upnp-org:device:InternetGatewayDevice:1".into(),
        nts: ssdp::Nts::Alive,
        usn: format!("{UUID}::urn:schemas-upnp-org:device:InternetGatewayDevice:1"),
        location: Some(format!("http://{ROUTER}:5000/rootDesc.xml")),
        max_age: Some(120),
        server: None,
        boot_id: Some(2),
        config_id: Some(1),
        next_boot_id: None,
        search_port: None,
    };
    // Node b hears it first and re-claims 8081 (its own port), not 8080.
    sim.input(
        b,
        Input::Ssdp {
            from: SocketAddr::from((ROUTER, 1900)),
            data: alive.emit(),
        },
    );
    sim.run_for(secs(0.1));
    assert_eq!(
        sim.igd
            .entries
            .iter()
            .map(|e| e.external_port)
            .collect::<Vec<_>>(),
        [8081]
    );
    sim.input(
        a,
        Input::Ssdp {
            from: SocketAddr::from((ROUTER, 1900)),
            data: alive.emit(),
        },
    );
    sim.run_for(secs(0.1));
    let mut ports: Vec<_> = sim.igd.entries.iter().map(|e| e.external_port).collect();
    ports.sort();
    assert_eq!(ports, [8080, 8081]);
    assert_eq!(sim.dir(a).role, Role::Representative);
    assert_eq!(sim.dir(b).role, Role::Member);
    // Lost without a word (no NOTIFY): the representative's walk misses its own entry.
    sim.igd.entries.retain(|e| e.external_port != 8080);
    sim.run_for(secs(5.5));
    assert!(sim.igd.entries.iter().any(|e| e.external_port == 8080));
}

#[test]
fn failing_control_requests_send_us_back_to_discovery() {
    let mut sim = Sim::new(FakeIgd::new(false));
    let a = sim.add(named(1, Some("a")), opts());
    sim.run_for(secs(1.0));
    let searches = sim.nodes[a].searches.len();
    sim.igd.online = false;
    sim.run_for(secs(6.0)); // the next walk fails
    assert_eq!(sim.dir(a).reachability, Reachability::Discovering);
    assert!(sim.nodes[a].searches.len() > searches);
    assert_eq!(
        sim.dir(a).role,
        Role::Representative,
        "the mapping is kept while we look"
    );
    sim.igd.online = true;
    sim.igd.entries.clear();
    sim.run_for(secs(3.0));
    assert_eq!(sim.dir(a).reachability, Reachability::Reachable);
    assert_eq!(sim.igd.entries.len(), 1);
    // An SSDP byebye from our router also triggers rediscovery.
    let bye = ssdp::Notify {
        host: ssdp::MULTICAST_ADDR.into(),
        nt: "urn:schemas-upnp-org:device:InternetGatewayDevice:1".into(),
        nts: ssdp::Nts::ByeBye,
        usn: format!("{UUID}::urn:schemas-upnp-org:device:InternetGatewayDevice:1"),
        location: None,
        max_age: None,
        server: None,
        boot_id: Some(1),
        config_id: None,
        next_boot_id: None,
        search_port: None,
    };
    sim.input(
        a,
        Input::Ssdp {
            from: SocketAddr::from((ROUTER, 1900)),
            data: bye.emit(),
        },
    );
    assert_eq!(sim.dir(a).reachability, Reachability::Discovering);
    sim.run_for(secs(2.0));
    assert_eq!(sim.dir(a).reachability, Reachability::Reachable);
}

#[test]
fn automatic_names_are_distinct_even_when_nodes_start_together() {
    // One after the other: camera 1, 2, 3 from the router's table.
    let mut sim = Sim::new(FakeIgd::new(false));
    for id in [0x30, 0x10, 0x20] {
        sim.add(named(id, None), opts());
        sim.run_for(secs(0.5));
    }
    let names: Vec<_> = (0..3).map(|i| sim.dir(i).name.clone()).collect();
    assert_eq!(names, ["camera 1", "camera 2", "camera 3"]);
    // Started together: they read the same (empty) table; the collision is noticed in notices and
    // walks, and the higher id picks again.
    let mut sim = Sim::new(FakeIgd::new(false));
    for id in [0x30, 0x10, 0x20] {
        let n = sim.nodes.len();
        let pm = PortManager::new(opts(), named(id, None), id, 1, sim.now);
        sim.nodes.push(Node {
            pm,
            addr: Ipv4Addr::new(192, 168, 1, 100 + n as u8),
            dir: None,
            saved: None,
            done: false,
            searches: Vec::new(),
        });
    }
    sim.run_for(secs(12.0));
    let mut names: Vec<_> = (0..3).map(|i| sim.dir(i).name.clone()).collect();
    names.sort();
    names.dedup();
    assert_eq!(names.len(), 3, "{names:?}");
    // No router: a fallback name from the id, after no_igd_after.
    let mut sim = Sim::new(FakeIgd::new(false));
    sim.igd_present = false;
    let a = sim.add(named(1234, None), opts());
    sim.run_for(secs(3.5));
    assert_eq!(sim.dir(a).name, format!("camera {}", 100 + 1234 % 900));
    assert_eq!(
        sim.nodes[a].saved.as_ref().and_then(|i| i.name.clone()),
        Some(sim.dir(a).name.clone())
    );
}

#[test]
fn a_conflict_on_every_port_is_reported_as_refused_and_retried() {
    let mut igd = FakeIgd::new(false);
    for p in 8080..8090 {
        igd.foreign(p, Protocol::Tcp, [192, 168, 1, 9], "other");
    }
    let mut sim = Sim::new(igd);
    let a = sim.add(
        named(1, Some("a")),
        Options {
            max_port_tries: 5,
            ..opts()
        },
    );
    sim.run_for(secs(0.1));
    assert!(
        matches!(sim.dir(a).reachability, Reachability::Refused { .. }),
        "{:?}",
        sim.dir(a).reachability
    );
    assert_eq!(sim.igd.actions("AddPortMapping").len(), 5);
    sim.igd.entries.retain(|e| e.external_port != 8080);
    sim.run_for(secs(31.0));
    assert_eq!(sim.dir(a).external_port, Some(8080));
    assert_eq!(sim.dir(a).reachability, Reachability::Reachable);
}

#[test]
fn an_igd_url_skips_ssdp() {
    let mut sim = Sim::new(FakeIgd::new(false));
    let o = Options {
        igd_url: shared::url::HttpUrl::parse("http://192.168.1.1:5000/rootDesc.xml"),
        ..opts()
    };
    let a = sim.add(named(1, Some("a")), o);
    sim.run_for(secs(0.1));
    assert!(sim.nodes[a].searches.is_empty());
    assert_eq!(sim.dir(a).external_port, Some(8080));
}

#[test]
fn after_a_partition_heals_one_representative_remains_and_holds_the_port() {
    let mut sim = Sim::three_with_election(FakeIgd::new(false));
    // The LAN loses everything: each member thinks the representative gone and takes over
    // (deleting the previous 8080 mapping: this fake router is permissive).
    sim.lan_loss = true;
    sim.run_for(secs(4.0));
    assert_ne!(sim.holder(8080), Some(sim.nodes[0].addr));
    // It heals: the representatives meet, the older terms stand down without deleting the
    // port (now another's) and take member ports; the one left lists everybody.
    sim.lan_loss = false;
    sim.run_for(secs(8.0));
    let reps = sim.reps();
    assert_eq!(reps.len(), 1, "{reps:?}");
    let rep = reps[0];
    assert_eq!(sim.holder(8080), Some(sim.nodes[rep].addr));
    for i in (0..3).filter(|&i| i != rep) {
        assert_eq!(sim.dir(i).role, Role::Member);
        assert!(sim.dir(i).external_port.is_some_and(|p| p > 8080));
    }
    assert_eq!(sim.dir(rep).peers.len(), 2, "{:?}", sim.dir(rep).peers);
}
