//! The IGD core (router/src/upnp/core.rs over router/src/igd/): SOAP actions (typed, or any
//! envelope) and NAT-PMP / PCP datagrams from a few LAN hosts, admin deletions, the WAN address
//! changing and leases running out, against a real NAT engine. Never a panic, and after every
//! step:
//! - the mapping table and the NAT's forwards agree: every enabled mapping is a forward to
//!   the same internal endpoint, every forward is a mapping or one of the static forwards,
//!   which nothing touches;
//! - secure mode holds: a mapping's internal client is the host that asked for it, and a
//!   request from one host never adds, changes or removes another host's mapping;
//! - every answer parses: SOAP responses as the action's reply, NAT-PMP / PCP answers as such
//!   (answers to any datagram are responses, never requests, and fit in 1100 bytes).
#![no_main]
use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::time::{Duration, Instant};

use arbitrary::Arbitrary;
use homenet_fuzz::{LAN_ADDR, WAN_ADDR};
use libfuzzer_sys::fuzz_target;
use router::mapping::{Mapping, TableConfig};
use router::nat::{self, Forward, Nat, NatConfig};
use router::upnp::core::Core;
use shared::igd::{Action, AddPortMapping, MappingKey, PortRange, Protocol, ServiceKind};
use shared::natpmp::{
    NatPmpProtocol, NatPmpRequest, NatPmpResponse, PcpMap, PcpOpcode, PcpRequest, PcpResponse,
};
use shared::soap::ActionRequest;

const HOSTS: [Ipv4Addr; 3] = [
    Ipv4Addr::new(192, 168, 1, 100),
    Ipv4Addr::new(192, 168, 1, 101),
    Ipv4Addr::new(192, 168, 1, 102),
];
/// Internal clients a request may name: the hosts, the router, outside the LAN, "any".
const CLIENTS: [Ipv4Addr; 6] = [
    Ipv4Addr::new(192, 168, 1, 100),
    Ipv4Addr::new(192, 168, 1, 101),
    LAN_ADDR,
    Ipv4Addr::new(198, 51, 100, 9),
    Ipv4Addr::UNSPECIFIED,
    Ipv4Addr::new(192, 168, 1, 255),
];
const PORTS: [u16; 7] = [8080, 8081, 22, 1024, 65535, 5000, 0];
/// Held by static forwards (from the configuration): the IGD must refuse them.
const STATIC_PORT: u16 = 22;

#[derive(Arbitrary, Debug)]
enum Act {
    Add {
        any: bool,
        remote: Option<u8>,
        ext: u8,
        udp: bool,
        int: u8,
        client: Option<u8>,
        enabled: bool,
        lease: u32,
        desc: String,
    },
    Delete {
        remote: Option<u8>,
        ext: u8,
        udp: bool,
    },
    DeleteRange {
        start: u8,
        end: u8,
        udp: bool,
        manage: bool,
    },
    GetSpecific {
        ext: u8,
        udp: bool,
    },
    GetGeneric(u8),
    List {
        start: u8,
        end: u8,
        udp: bool,
        n: u16,
    },
    Other(u8),
}

#[derive(Arbitrary, Debug)]
enum Step {
    Soap {
        caller: u8,
        v: bool,
        act: Act,
    },
    SoapRaw {
        caller: u8,
        at: u8,
        body: Vec<u8>,
    },
    NatPmp {
        caller: u8,
        udp: bool,
        int: u8,
        ext: u8,
        lifetime: u32,
    },
    Pcp {
        caller: u8,
        udp: bool,
        int: u8,
        ext: u8,
        lifetime: u32,
        nonce: u8,
        client: u8,
    },
    PmpRaw {
        caller: u8,
        data: Vec<u8>,
    },
    AdminDelete {
        ext: u8,
        udp: bool,
    },
    AdvanceSecs(u16),
    Expire,
    SetWan(bool),
}

fn pick<T: Copy>(v: &[T], i: u8) -> T {
    v[usize::from(i) % v.len()]
}

fn proto(udp: bool) -> Protocol {
    if udp { Protocol::Udp } else { Protocol::Tcp }
}

fn action(act: &Act) -> Action {
    let key = |remote: Option<u8>, ext: u8, udp: bool| MappingKey {
        remote_host: remote.map(|r| Ipv4Addr::new(198, 51, 100, r % 4)),
        external_port: pick(&PORTS, ext),
        protocol: proto(udp),
    };
    let range = |start: u8, end: u8, udp: bool, manage: bool| PortRange {
        start_port: pick(&PORTS, start),
        end_port: pick(&PORTS, end),
        protocol: proto(udp),
        manage,
    };
    match act {
        Act::Add {
            any,
            remote,
            ext,
            udp,
            int,
            client,
            enabled,
            lease,
            desc,
        } => {
            let a = AddPortMapping {
                remote_host: remote.map(|r| Ipv4Addr::new(198, 51, 100, r % 4)),
                external_port: pick(&PORTS, *ext),
                protocol: proto(*udp),
                internal_port: pick(&PORTS, *int),
                internal_client: client.map(|c| pick(&CLIENTS, c)),
                enabled: *enabled,
                description: desc.chars().take(300).collect(),
                lease_duration: *lease % 1_000_000,
            };
            if *any {
                Action::AddAnyPortMapping(a)
            } else {
                Action::AddPortMapping(a)
            }
        }
        Act::Delete { remote, ext, udp } => Action::DeletePortMapping(key(*remote, *ext, *udp)),
        Act::DeleteRange {
            start,
            end,
            udp,
            manage,
        } => Action::DeletePortMappingRange(range(*start, *end, *udp, *manage)),
        Act::GetSpecific { ext, udp } => Action::GetSpecificPortMappingEntry(key(None, *ext, *udp)),
        Act::GetGeneric(i) => Action::GetGenericPortMappingEntry(u32::from(*i % 8)),
        Act::List { start, end, udp, n } => {
            Action::GetListOfPortMappings(range(*start, *end, *udp, false), *n)
        }
        Act::Other(i) => match i % 6 {
            0 => Action::GetExternalIpAddress,
            1 => Action::GetStatusInfo,
            2 => Action::GetCommonLinkProperties,
            3 => Action::QueryStateVariable("PortMappingNumberOfEntries".into()),
            4 => Action::GetTotalBytesSent,
            _ => Action::GetDefaultConnectionService,
        },
    }
}

/// The table, by (protocol, external port).
fn snapshot(core: &Core) -> BTreeMap<(Protocol, u16), Mapping> {
    core.table()
        .iter()
        .map(|m| ((m.protocol, m.external_port), m.clone()))
        .collect()
}

fn check_agreement(core: &Core, nat: &Nat, statics: &[Forward]) {
    let table = snapshot(core);
    for m in table.values() {
        assert_eq!(
            m.internal_client, m.owner,
            "secure mode: {m:?} maps to another host"
        );
    }
    let mut forwards = 0;
    for f in nat.forwards() {
        if statics.contains(f) {
            continue;
        }
        forwards += 1;
        let p = match f.protocol {
            nat::Protocol::Tcp => Protocol::Tcp,
            nat::Protocol::Udp => Protocol::Udp,
        };
        let m = table
            .get(&(p, f.external_port))
            .unwrap_or_else(|| panic!("forward {f:?} has no mapping"));
        assert!(m.enabled, "forward {f:?} for a disabled mapping");
        assert_eq!(
            (m.internal_client, m.internal_port),
            (f.internal_addr, f.internal_port)
        );
        assert_eq!(m.remote_host, f.remote_host);
    }
    assert_eq!(
        forwards,
        table.values().filter(|m| m.enabled).count(),
        "mappings without forwards"
    );
    for s in statics {
        assert!(
            nat.forwards().any(|f| f == s),
            "static forward {s:?} was removed"
        );
    }
}

/// A request from `caller` may only touch the caller's own mappings (secure mode).
fn check_own(
    caller: Ipv4Addr,
    now: Instant,
    before: &BTreeMap<(Protocol, u16), Mapping>,
    after: &BTreeMap<(Protocol, u16), Mapping>,
) {
    for (k, m) in after {
        if before.get(k) != Some(m) {
            assert_eq!(m.internal_client, caller, "{caller} added or changed {m:?}");
        }
    }
    for (k, m) in before {
        let expired = m.lease_end.is_some_and(|e| e <= now);
        if !after.contains_key(k) && !expired {
            assert_eq!(m.internal_client, caller, "{caller} removed {m:?}");
        }
    }
}

fuzz_target!(|steps: Vec<Step>| {
    let t0 = Instant::now();
    let mut now = t0;
    let statics = vec![Forward {
        protocol: nat::Protocol::Tcp,
        external_port: STATIC_PORT,
        internal_addr: Ipv4Addr::new(192, 168, 1, 10),
        internal_port: 22,
        remote_host: None,
        expires: None,
        description: "ssh".into(),
    }];
    let mut nat = Nat::new(NatConfig::new(WAN_ADDR, LAN_ADDR, 24), 7);
    for f in &statics {
        nat.add_forward(f.clone()).expect("static forward");
    }
    let table = TableConfig {
        reserved: vec![(Some(Protocol::Tcp), STATIC_PORT, STATIC_PORT)],
        max_total: 8,
        max_per_client: 4,
        ..TableConfig::default()
    };
    let mut core = homenet_fuzz::igd_core(table, t0);
    for step in steps.iter().take(64) {
        let before = snapshot(&core);
        let mut caller = None;
        match step {
            Step::Soap { caller: c, v, act } => {
                let c = pick(&HOSTS, *c);
                caller = Some(c);
                let a = action(act);
                let (st, at) = match &a {
                    Action::GetCommonLinkProperties | Action::GetTotalBytesSent => (
                        "WANCommonInterfaceConfig:1",
                        ServiceKind::WanCommonInterfaceConfig,
                    ),
                    Action::GetDefaultConnectionService => {
                        ("Layer3Forwarding:1", ServiceKind::Layer3Forwarding)
                    }
                    _ if *v => ("WANIPConnection:2", ServiceKind::WanIpConnection),
                    _ => ("WANIPConnection:1", ServiceKind::WanIpConnection),
                };
                let st = format!("urn:schemas-upnp-org:service:{st}");
                let req = ActionRequest::parse(&a.to_request(&st).emit()).expect("own request");
                if let Ok(resp) = core.soap(now, &mut nat, c, at, &req) {
                    let back = shared::soap::parse_response(&resp.emit()).expect("own response");
                    let back = back.expect("a response, not a fault");
                    if let Err(e) = a.parse_reply(&back) {
                        panic!("{a:?}: our answer {back:?} does not read back: {e:?}");
                    }
                }
            }
            Step::SoapRaw {
                caller: c,
                at,
                body,
            } => {
                let c = pick(&HOSTS, *c);
                caller = Some(c);
                let at = pick(
                    &[
                        ServiceKind::WanIpConnection,
                        ServiceKind::WanCommonInterfaceConfig,
                        ServiceKind::Layer3Forwarding,
                    ],
                    *at,
                );
                if let Ok(req) = ActionRequest::parse(body) {
                    let _ = core.soap(now, &mut nat, c, at, &req);
                }
            }
            Step::NatPmp {
                caller: c,
                udp,
                int,
                ext,
                lifetime,
            } => {
                let c = pick(&HOSTS, *c);
                caller = Some(c);
                let req = NatPmpRequest::Map {
                    protocol: if *udp {
                        NatPmpProtocol::Udp
                    } else {
                        NatPmpProtocol::Tcp
                    },
                    internal_port: pick(&PORTS, *int),
                    suggested_external_port: pick(&PORTS, *ext),
                    lifetime: *lifetime,
                };
                let (answer, _) = core.pmp(now, &mut nat, SocketAddrV4::new(c, 5350), &req.emit());
                let answer = answer.expect("NAT-PMP MAP gets an answer");
                NatPmpResponse::parse(&answer).expect("our NAT-PMP answer parses");
            }
            Step::Pcp {
                caller: c,
                udp,
                int,
                ext,
                lifetime,
                nonce,
                client,
            } => {
                let c = pick(&HOSTS, *c);
                caller = Some(c);
                let req = PcpRequest {
                    opcode: PcpOpcode::Map,
                    lifetime: *lifetime,
                    client_addr: shared::natpmp::v4_mapped(pick(&CLIENTS, *client)),
                    map: Some(PcpMap {
                        nonce: [*nonce; 12],
                        protocol: if *udp { 17 } else { 6 },
                        internal_port: pick(&PORTS, *int),
                        external_port: pick(&PORTS, *ext),
                        external_addr: std::net::Ipv6Addr::UNSPECIFIED,
                    }),
                    options: Vec::new(),
                };
                let (answer, _) = core.pmp(now, &mut nat, SocketAddrV4::new(c, 5350), &req.emit());
                let answer = answer.expect("PCP MAP gets an answer");
                PcpResponse::parse(&answer).expect("our PCP answer parses");
            }
            Step::PmpRaw { caller: c, data } => {
                let c = pick(&HOSTS, *c);
                caller = Some(c);
                if let (Some(answer), _) = core.pmp(now, &mut nat, SocketAddrV4::new(c, 5350), data)
                {
                    // An answer to anything is a response (the R bit, RFC 6886 §3.5 and RFC 6887
                    // §7.1: two servers never answer each other), at most 1100 bytes (§7);
                    // error answers echo opcodes our own parsers do not know.
                    assert!(answer.len() >= 8 && answer.len() <= 1100, "{answer:02x?}");
                    assert!(
                        answer[1] & 0x80 != 0,
                        "answer {answer:02x?} is not a response"
                    );
                }
            }
            Step::AdminDelete { ext, udp } => {
                core.admin_delete(now, &mut nat, proto(*udp), pick(&PORTS, *ext));
            }
            Step::AdvanceSecs(s) => now += Duration::from_secs(u64::from(*s)),
            Step::Expire => core.expire(now, &mut nat),
            Step::SetWan(up) => {
                nat.set_wan_addr(if *up { WAN_ADDR } else { Ipv4Addr::UNSPECIFIED })
            }
        }
        // As the shell does after every request, and its timer at every lease end.
        let _ = core.take_events(now, &nat);
        let _ = core.take_dirty();
        core.expire(now, &mut nat);
        if let Some(c) = caller {
            check_own(c, now, &before, &snapshot(&core));
        }
        check_agreement(&core, &nat, &statics);
    }
});
