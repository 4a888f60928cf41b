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

mod claim;
mod collect;
mod cost;
mod fake_igd;
mod hostile;
mod lan;
mod lanrep;
mod rotation;
mod scenarios;

use fake_igd::{FakeIgd, root_config};

const ROUTER: Ipv4Addr = Ipv4Addr::new(192, 168, 1, 1);
const UUID: &str = "uuid:11111111-2222-3333-4444-555555555555";

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
