//! Seed corpora, written by the crates' own emitters: what our router, our camera and the
//! clients we interoperate with put on the wire. Each target writes its seeds in its init when
//! `HOMENET_FUZZ_SEEDS` names a directory (`fuzz/run` sets it to the target's corpus), so the
//! seeds always match the code being fuzzed and no binary corpus is kept in the repository.

use std::net::{Ipv4Addr, SocketAddrV4};
use std::path::Path;
use std::time::Instant;

use router::dhcp::wire::{Message, MessageType, opt};
use router::mapping::TableConfig;
use router::nat::{Nat, NatConfig};
use router::upnp::core::Core;
use shared::description::scpds;
use shared::gena::{EventNotify, GenaRequest, SubscribeResponse, Subscription, Timeout};
use shared::igd::{Action, AddPortMapping, MappingKey, PortRange, Protocol, ServiceKind};
use shared::lanproto::{self, Body, Header, PortNotice, Repr};
use shared::natpmp::{NatPmpProtocol, NatPmpRequest, PcpMap, PcpOpcode, PcpRequest};
use shared::soap::{ActionRequest, Fault};
use shared::ssdp::{Nts, SearchRequest};
use shared::upnp_error::UpnpError;
use shared::url::HttpUrl;

use crate::{LAN_ADDR, WAN_ADDR, advertiser};

/// Writes the seeds of `target` into `$HOMENET_FUZZ_SEEDS`, if set (called from each target's
/// init). Errors are reported and otherwise ignored: fuzzing works without seeds.
pub fn write(target: &str) {
    let Some(dir) = std::env::var_os("HOMENET_FUZZ_SEEDS") else {
        return;
    };
    let dir = Path::new(&dir);
    for (i, seed) in of(target).into_iter().enumerate() {
        let path = dir.join(format!("seed-{i:03}"));
        if let Err(e) = std::fs::create_dir_all(dir).and_then(|()| std::fs::write(&path, seed)) {
            eprintln!("seeds: {}: {e}", path.display());
        }
    }
}

/// The seeds of one target (empty for the targets whose input is a structured sequence).
pub fn of(target: &str) -> Vec<Vec<u8>> {
    match target {
        "lanproto" | "election_raw" => lan(),
        "natpmp" => pmp_requests().into_iter().chain(pmp_answers()).collect(),
        "ssdp" => ssdp(),
        "gena" => gena(),
        "soap_request" => soap_requests(),
        "soap_response" => soap_responses(),
        "xml" => xml(),
        "url_head" => url_head(),
        "http_router" => http_requests(),
        "http_camnode" => http_responses(),
        "dhcp_wire" => dhcp(),
        _ => Vec::new(),
    }
}

fn notice(name: &str) -> PortNotice {
    PortNotice {
        name: name.into(),
        lan_addr: Ipv4Addr::new(192, 168, 1, 30),
        internal_port: 8081,
        external_port: Some(8081),
    }
}

/// One message of every type of the LAN protocol.
fn lan() -> Vec<Vec<u8>> {
    let ext = Some(WAN_ADDR);
    let bodies = [
        Body::PortNotice(notice("camera 2")),
        Body::PortNoticeAck(lanproto::PortNoticeAck {
            acked_sequence: 7,
            external_addr: ext,
        }),
        Body::Inquiry(lanproto::Inquiry {
            external_port: 8080,
            external_addr: ext,
        }),
        Body::InquiryAnswer(lanproto::InquiryAnswer {
            acked_sequence: 9,
            node: notice("porch"),
        }),
        Body::ByeBye,
        Body::PresenceInquiry,
        Body::PresenceAnswer(lanproto::PresenceAnswer { acked_sequence: 3 }),
        Body::Candidacy(lanproto::Candidacy {
            external_port: Some(8082),
        }),
        Body::RotationNotice(lanproto::RotationNotice {
            external_port: 8080,
            external_addr: ext,
        }),
        Body::Conflict(lanproto::Conflict {
            node_id: 2,
            term: 4,
            lan_addr: Ipv4Addr::new(192, 168, 1, 31),
        }),
    ];
    bodies
        .into_iter()
        .enumerate()
        .map(|(i, body)| {
            let header = Header {
                node_id: 0x1234,
                sequence: 100 + i as u64,
                term: 3,
            };
            Repr { header, body }.emit()
        })
        .collect()
}

fn pmp_requests() -> Vec<Vec<u8>> {
    let map = |natpmp: bool, lifetime| {
        if natpmp {
            NatPmpRequest::Map {
                protocol: NatPmpProtocol::Tcp,
                internal_port: 8080,
                suggested_external_port: 8080,
                lifetime,
            }
            .emit()
        } else {
            PcpRequest {
                opcode: PcpOpcode::Map,
                lifetime,
                client_addr: shared::natpmp::v4_mapped(Ipv4Addr::new(192, 168, 1, 30)),
                map: Some(PcpMap {
                    nonce: [7; 12],
                    protocol: 6,
                    internal_port: 8080,
                    external_port: 8080,
                    external_addr: std::net::Ipv6Addr::UNSPECIFIED,
                }),
                options: Vec::new(),
            }
            .emit()
        }
    };
    vec![
        NatPmpRequest::ExternalAddress.emit(),
        map(true, 7200),
        map(true, 0),
        map(false, 7200),
        map(false, 0),
        PcpRequest {
            opcode: PcpOpcode::Announce,
            lifetime: 0,
            client_addr: shared::natpmp::v4_mapped(Ipv4Addr::new(192, 168, 1, 30)),
            map: None,
            options: Vec::new(),
        }
        .emit(),
    ]
}

fn igd_core() -> (Core, Nat, Instant) {
    let t0 = Instant::now();
    let core = crate::igd_core(TableConfig::default(), t0);
    (
        core,
        Nat::new(NatConfig::new(WAN_ADDR, LAN_ADDR, 24), 1),
        t0,
    )
}

/// What the router's core answers to the requests above (and to garbage).
fn pmp_answers() -> Vec<Vec<u8>> {
    let (mut core, mut nat, t0) = igd_core();
    let from = SocketAddrV4::new(Ipv4Addr::new(192, 168, 1, 30), 5350);
    pmp_requests()
        .iter()
        .chain([vec![0u8, 99], vec![2u8, 1, 0, 0]].iter())
        .filter_map(|r| core.pmp(t0, &mut nat, from, r).0)
        .collect()
}

fn ssdp() -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    for st in [
        "ssdp:all",
        "upnp:rootdevice",
        "urn:schemas-upnp-org:device:InternetGatewayDevice:1",
        "urn:schemas-upnp-org:service:WANIPConnection:2",
    ] {
        let req = SearchRequest {
            host: "239.255.255.250:1900".into(),
            mx: Some("2".into()),
            st: st.into(),
            user_agent: Some("Linux UPnP/1.1 camnode/0.1".into()),
        };
        out.push(req.emit());
        out.extend(advertiser(2).answers(&req).into_iter().take(2));
    }
    out.extend(advertiser(2).notifies(Nts::Alive).into_iter().take(2));
    out.extend(advertiser(1).notifies(Nts::ByeBye).into_iter().take(1));
    out
}

fn gena() -> Vec<Vec<u8>> {
    let cb = HttpUrl::parse("http://192.168.1.30:49152/evt").expect("url");
    let event = EventNotify {
        sid: "uuid:4f1c2a3b-0000-4000-8000-00000000abcd".into(),
        seq: 0,
        properties: vec![
            ("PortMappingNumberOfEntries".into(), "1".into()),
            ("ExternalIPAddress".into(), WAN_ADDR.to_string()),
        ],
    };
    let sid = "uuid:4f1c2a3b-0000-4000-8000-00000000abcd".to_string();
    let (path, host) = ("/evt/IPConn", "192.168.1.1:5000");
    vec![
        GenaRequest::Subscribe(Subscription {
            callbacks: vec![cb.clone()],
            timeout: Some(Timeout::Seconds(1800)),
            statevar: None,
        })
        .emit(path, host),
        GenaRequest::Renew {
            sid: sid.clone(),
            timeout: Some(Timeout::Infinite),
        }
        .emit(path, host),
        GenaRequest::Unsubscribe { sid: sid.clone() }.emit(path, host),
        SubscribeResponse {
            sid,
            timeout: 1800,
            server: router::upnp::SERVER.into(),
            accepted_statevar: Some(vec!["ExternalIPAddress".into()]),
        }
        .emit(),
        event.emit(&cb),
    ]
}

/// The requests of every kind the camera and the usual clients send.
fn actions() -> Vec<(&'static str, Action)> {
    let add = AddPortMapping {
        remote_host: None,
        external_port: 8080,
        protocol: Protocol::Tcp,
        internal_port: 8080,
        internal_client: Some(Ipv4Addr::new(192, 168, 1, 30)),
        enabled: true,
        description: "homenet-cam v1 0000000000001234 porch & <garden>".into(),
        lease_duration: 3600,
    };
    let key = MappingKey {
        remote_host: None,
        external_port: 8080,
        protocol: Protocol::Tcp,
    };
    let range = PortRange {
        start_port: 1,
        end_port: 65535,
        protocol: Protocol::Tcp,
        manage: false,
    };
    let ip = "WANIPConnection:2";
    vec![
        (ip, Action::AddPortMapping(add.clone())),
        (ip, Action::AddAnyPortMapping(add)),
        (ip, Action::GetSpecificPortMappingEntry(key)),
        (ip, Action::GetGenericPortMappingEntry(0)),
        (ip, Action::GetListOfPortMappings(range, 100)),
        (ip, Action::GetExternalIpAddress),
        (ip, Action::GetStatusInfo),
        (ip, Action::DeletePortMapping(key)),
        (ip, Action::DeletePortMappingRange(range)),
        (
            "WANCommonInterfaceConfig:1",
            Action::GetCommonLinkProperties,
        ),
        ("Layer3Forwarding:1", Action::GetDefaultConnectionService),
        (
            "WANIPConnection:1",
            Action::QueryStateVariable("ExternalIPAddress".into()),
        ),
    ]
}

fn kind_of(st: &str) -> ServiceKind {
    if st.starts_with("WANCommon") {
        ServiceKind::WanCommonInterfaceConfig
    } else if st.starts_with("Layer3") {
        ServiceKind::Layer3Forwarding
    } else {
        ServiceKind::WanIpConnection
    }
}

fn soap_requests() -> Vec<Vec<u8>> {
    actions()
        .into_iter()
        .map(|(st, a)| {
            a.to_request(&format!("urn:schemas-upnp-org:service:{st}"))
                .emit()
        })
        .collect()
}

/// What the router's core answers to those requests, in order, and a fault.
fn soap_responses() -> Vec<Vec<u8>> {
    let (mut core, mut nat, t0) = igd_core();
    let caller = Ipv4Addr::new(192, 168, 1, 30);
    let mut out: Vec<Vec<u8>> = actions()
        .into_iter()
        .filter_map(|(st, a)| {
            let req = a.to_request(&format!("urn:schemas-upnp-org:service:{st}"));
            let req = ActionRequest::parse(&req.emit()).ok()?;
            Some(match core.soap(t0, &mut nat, caller, kind_of(st), &req) {
                Ok(resp) => resp.emit(),
                Err(e) => Fault::from(e).emit(),
            })
        })
        .collect();
    out.push(Fault::from(UpnpError::ConflictInMappingEntry).emit());
    out
}

fn xml() -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    for version in [1, 2] {
        out.push(crate::description(version).into_bytes());
    }
    out.extend(scpds(2).into_iter().map(|(_, s)| s.into_bytes()));
    let event = EventNotify {
        sid: "uuid:x".into(),
        seq: 1,
        properties: vec![("A".into(), "<&>".into())],
    };
    out.push(event.body().into_bytes());
    let entry = shared::igd::PortMappingEntry {
        remote_host: None,
        external_port: 8080,
        protocol: Protocol::Tcp,
        internal_port: 8080,
        internal_client: Ipv4Addr::new(192, 168, 1, 30),
        enabled: true,
        description: "homenet-cam v1 0000000000001234 porch".into(),
        lease_duration: 20,
    };
    out.push(shared::igd::emit_port_listing(&[entry.clone(), entry]).into_bytes());
    out
}

fn url_head() -> Vec<Vec<u8>> {
    let mut out = vec![
        b"http://192.168.1.1:5000/rootDesc.xml\n/ctl/IPConn".to_vec(),
        b"http://[fe80::1]:5000/a/b.xml\n../c?x=1".to_vec(),
        b"HTTP://router.lan/\nhttp://192.168.1.1:80/x".to_vec(),
    ];
    out.extend(ssdp().into_iter().take(3));
    out
}

/// Requests as control points send them to the IGD, behind the target's selector byte.
fn http_requests() -> Vec<Vec<u8>> {
    let body = soap_requests().remove(0);
    let post = |extra: &str, body: &[u8]| {
        let mut v = format!(
            "POST /ctl/IPConn HTTP/1.1\r\nHOST: 192.168.1.1:5000\r\nCONTENT-TYPE: text/xml; charset=\"utf-8\"\r\nSOAPACTION: \"urn:schemas-upnp-org:service:WANIPConnection:2#AddPortMapping\"\r\n{extra}\r\n"
        )
        .into_bytes();
        v.extend_from_slice(body);
        v
    };
    let mut chunked = Vec::new();
    for part in body.chunks(100) {
        chunked.extend_from_slice(format!("{:x};ext=1\r\n", part.len()).as_bytes());
        chunked.extend_from_slice(part);
        chunked.extend_from_slice(b"\r\n");
    }
    chunked.extend_from_slice(b"0\r\nTrailer: x\r\n\r\n");
    let reqs = [
        post(&format!("Content-Length: {}\r\n", body.len()), &body),
        post("Transfer-Encoding: chunked\r\nExpect: 100-continue\r\n", &chunked),
        b"GET /rootDesc.xml HTTP/1.1\r\nHost: 192.168.1.1:5000\r\nConnection: close\r\n\r\n".to_vec(),
        b"SUBSCRIBE /evt/IPConn HTTP/1.1\r\nHOST: 192.168.1.1:5000\r\nCALLBACK: <http://192.168.1.30:1/>\r\nNT: upnp:event\r\nTIMEOUT: Second-1800\r\n\r\n".to_vec(),
        b"GET / HTTP/1.0\n\n".to_vec(),
    ];
    reqs.into_iter()
        .enumerate()
        .map(|(i, r)| {
            let mut v = vec![i as u8];
            v.extend(r);
            v
        })
        .collect()
}

/// Answers as routers send them to the camera.
fn http_responses() -> Vec<Vec<u8>> {
    let body = soap_responses().remove(0);
    let mut with_len = format!(
        "HTTP/1.1 200 OK\r\nContent-Type: text/xml\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    with_len.extend_from_slice(&body);
    let mut chunked = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
    for part in body.chunks(64) {
        chunked.extend_from_slice(format!("{:x}\r\n", part.len()).as_bytes());
        chunked.extend_from_slice(part);
        chunked.extend_from_slice(b"\r\n");
    }
    chunked.extend_from_slice(b"0\r\n\r\n");
    let mut to_eof = b"HTTP/1.0 500 Internal Server Error\nServer: x\n\n".to_vec();
    to_eof.extend(Fault::from(UpnpError::NoSuchEntryInArray).emit());
    vec![with_len, chunked, to_eof]
}

fn dhcp() -> Vec<Vec<u8>> {
    let mac = [2, 0, 0, 0, 0, 1];
    let mut out = Vec::new();
    for kind in [
        MessageType::Discover,
        MessageType::Request,
        MessageType::Decline,
        MessageType::Release,
        MessageType::Inform,
    ] {
        let mut m = Message::request(0x1234, mac, kind);
        m.set_option(opt::REQUESTED_IP, vec![192, 168, 1, 100]);
        m.set_option(opt::SERVER_ID, LAN_ADDR.octets().to_vec());
        m.set_option(opt::HOST_NAME, b"cam-1".to_vec());
        m.set_option(opt::CLIENT_ID, vec![1, 2, 0, 0, 0, 0, 1]);
        m.set_option(opt::PARAM_REQUEST, vec![1, 3, 6, 15, 51, 54]);
        out.push(m.emit());
    }
    out
}
