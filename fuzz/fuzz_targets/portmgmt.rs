//! The camera's port manager (camnode/src/portmgmt/core.rs) against the router's real IGD core
//! (router/src/upnp/core.rs over a NAT engine) in memory, with the network in the fuzzer's
//! hands: each HTTP request gets the real answer, any status and body, an error, or waits;
//! SSDP and LAN datagrams arrive, good or raw; renames, timers and shutdown. Never a panic, and:
//! - every request it would send is a single clean request: no control character or space in
//!   the URL's host or path or the SOAPAction value (no header injection), a POST body that
//!   parses as a SOAP request;
//! - every LAN datagram it sends parses;
//! - its timers make progress (handling the due timer never leaves it due forever).
#![no_main]
use std::collections::VecDeque;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::time::{Duration, Instant};

use arbitrary::Arbitrary;
use camnode::config::Config;
use camnode::directory::NodeCommand;
use camnode::identity::{Identity, NameOrigin};
use camnode::portmgmt::core::{HttpRequest, HttpResponse, Input, Options, Output, PortManager};
use homenet_fuzz::{LAN_ADDR, WAN_ADDR};
use libfuzzer_sys::fuzz_target;
use router::mapping::TableConfig;
use router::nat::{Nat, NatConfig};
use router::upnp::core::Core;
use shared::igd::ServiceKind;
use shared::lanproto::Repr;
use shared::soap::{ActionRequest, Fault};
use shared::ssdp::SearchResponse;

const CAMERA: Ipv4Addr = Ipv4Addr::new(192, 168, 1, 30);

#[derive(Arbitrary, Debug)]
enum Answer {
    /// What the router answers.
    Real,
    Raw {
        status: u16,
        body: Vec<u8>,
    },
    Fault(u16),
    Fail,
}

#[derive(Arbitrary, Debug)]
enum Step {
    Answer(Answer),
    SsdpGood { v2: bool, boot_id: u8 },
    SsdpRaw(Vec<u8>),
    Lan { peer: u8, data: Vec<u8> },
    Rename(String),
    Shutdown,
    Timeout,
    AdvanceMs(u16),
}

struct Router {
    core: Core,
    nat: Nat,
    v2: bool,
}

impl Router {
    fn answer(&mut self, now: Instant, req: &HttpRequest) -> Result<HttpResponse, String> {
        let ok = |status, body| {
            Ok(HttpResponse {
                status,
                body,
                local_addr: Some(CAMERA),
            })
        };
        let Some(body) = &req.body else {
            let desc = homenet_fuzz::description(if self.v2 { 2 } else { 1 });
            return ok(200, desc.into_bytes());
        };
        let Ok(areq) = ActionRequest::parse(body) else {
            return ok(
                500,
                Fault::from(shared::upnp_error::UpnpError::InvalidAction).emit(),
            );
        };
        let kind = if req.url.path.contains("CIC") || areq.service_type.contains("Common") {
            ServiceKind::WanCommonInterfaceConfig
        } else {
            ServiceKind::WanIpConnection
        };
        match self.core.soap(now, &mut self.nat, CAMERA, kind, &areq) {
            Ok(resp) => ok(200, resp.emit()),
            Err(e) => ok(500, Fault::from(e).emit()),
        }
    }
}

fn clean(s: &str) -> bool {
    !s.chars().any(|c| c.is_control() || c == ' ')
}

fuzz_target!(|input: (u8, Vec<Step>)| {
    let (setup, steps) = input;
    let t0 = Instant::now();
    let mut now = t0;
    let mut router = Router {
        core: homenet_fuzz::igd_core(TableConfig::default(), t0),
        nat: Nat::new(NatConfig::new(WAN_ADDR, LAN_ADDR, 24), 3),
        v2: setup & 1 != 0,
    };
    let identity = Identity {
        id: 0x1234_5678_9abc_def0,
        name: (setup & 2 != 0).then(|| "porch".to_string()),
        origin: NameOrigin::Config,
    };
    let opt = Options::from_config(&Config::default(), 8080);
    let mut pm = PortManager::new(opt, identity, u64::from(setup), 1, now);
    let mut pending: VecDeque<(u64, HttpRequest)> = VecDeque::new();
    for step in steps.iter().take(96) {
        match step {
            Step::Answer(a) => {
                let Some((id, req)) = pending.pop_front() else {
                    continue;
                };
                let result = match a {
                    Answer::Real => router.answer(now, &req),
                    Answer::Raw { status, body } => Ok(HttpResponse {
                        status: *status,
                        body: body.clone(),
                        local_addr: Some(CAMERA),
                    }),
                    Answer::Fault(code) => Ok(HttpResponse {
                        status: 500,
                        body: Fault {
                            code: *code,
                            description: "fuzz".into(),
                        }
                        .emit(),
                        local_addr: Some(CAMERA),
                    }),
                    Answer::Fail => Err("connection refused".into()),
                };
                pm.handle_input(now, Input::Http { id, result });
            }
            Step::SsdpGood { v2, boot_id } => {
                let v = if *v2 { 2 } else { 1 };
                let data = SearchResponse {
                    max_age: 120,
                    date: None,
                    location: format!("http://{LAN_ADDR}:5000/rootDesc.xml"),
                    server: router::upnp::SERVER.into(),
                    st: format!("urn:schemas-upnp-org:device:InternetGatewayDevice:{v}"),
                    usn: format!(
                        "uuid:{}::urn:schemas-upnp-org:device:InternetGatewayDevice:{v}",
                        homenet_fuzz::UUIDS[0]
                    ),
                    boot_id: Some(u32::from(*boot_id % 3)),
                    config_id: Some(1),
                    search_port: None,
                }
                .emit();
                let from = SocketAddr::from((LAN_ADDR, 1900));
                pm.handle_input(now, Input::Ssdp { from, data });
            }
            Step::SsdpRaw(data) => {
                let from = SocketAddr::from((LAN_ADDR, 1900));
                pm.handle_input(
                    now,
                    Input::Ssdp {
                        from,
                        data: data.clone(),
                    },
                );
            }
            Step::Lan { peer, data } => {
                let from = SocketAddrV4::new(Ipv4Addr::new(192, 168, 1, 40 + peer % 4), 17777);
                pm.handle_input(
                    now,
                    Input::Lan {
                        from,
                        data: data.clone(),
                    },
                );
            }
            Step::Rename(name) => {
                pm.handle_input(now, Input::Command(NodeCommand::Rename(name.clone())));
            }
            Step::Shutdown => pm.handle_input(now, Input::Shutdown),
            Step::Timeout => {
                if let Some(at) = pm.poll_timeout() {
                    now = now.max(at);
                }
            }
            Step::AdvanceMs(ms) => now += Duration::from_millis(u64::from(*ms)),
        }
        let mut turns = 0;
        while pm.poll_timeout().is_some_and(|at| at <= now) {
            pm.handle_timeout(now);
            turns += 1;
            assert!(turns < 1000, "the timer stays due at {:?}", now - t0);
        }
        while let Some(out) = pm.poll_output() {
            match out {
                Output::Http { id, request } => {
                    let u = &request.url;
                    assert!(clean(&u.host) && clean(&u.path), "unclean URL {u:?}");
                    if let Some(a) = &request.soap_action {
                        assert!(!a.contains(['\r', '\n']), "SOAPAction {a:?}");
                    }
                    if let Some(body) = &request.body {
                        ActionRequest::parse(body).expect("our SOAP request parses");
                    }
                    pending.push_back((id, request));
                }
                Output::Lan { data, .. } => {
                    Repr::parse(&data).expect("our LAN datagram parses");
                }
                _ => {}
            }
        }
    }
});
