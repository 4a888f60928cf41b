//! Unit tests of the action table, its codecs and the port listing.

use super::*;
use crate::soap::{self, ActionRequest, CONTROL_NS};

fn req(st: &str, action: &str, args: &[(&str, &str)]) -> ActionRequest {
    ActionRequest {
        service_type: st.to_string(),
        action: action.to_string(),
        args: args
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    }
}

const V1: &str = "urn:schemas-upnp-org:service:WANIPConnection:1";
const V2: &str = "urn:schemas-upnp-org:service:WANIPConnection:2";

fn add_args<'a>(ext: &'a str, int: &'a str, client: &'a str) -> Vec<(&'a str, &'a str)> {
    vec![
        ("NewRemoteHost", ""),
        ("NewExternalPort", ext),
        ("NewProtocol", "tcp"),
        ("NewInternalPort", int),
        ("NewInternalClient", client),
        ("NewEnabled", "true"),
        ("NewPortMappingDescription", "cam 1"),
        ("NewLeaseDuration", "3600"),
    ]
}

#[test]
fn has_action_by_service() {
    let ip1 = "urn:schemas-upnp-org:service:WANIPConnection:1";
    let ip2 = "urn:schemas-upnp-org:service:WANIPConnection:2";
    assert!(has_action(ip1, "AddPortMapping"));
    assert!(has_action(ip1, "GetExternalIPAddress"));
    assert!(has_action(ip2, "AddAnyPortMapping"));
    assert!(!has_action(ip1, "AddAnyPortMapping"), "v2 only");
    assert!(!has_action(ip1, "Frobnicate"));
    assert!(!has_action("urn:x", "AddPortMapping"));
    assert!(has_action(CONTROL_NS, "QueryStateVariable"));
    assert!(has_action(
        "urn:schemas-upnp-org:service:Layer3Forwarding:1",
        "GetDefaultConnectionService"
    ));
}

#[test]
fn upnpc_add_port_mapping() {
    let r = ActionRequest::parse(soap::tests::UPNPC_ADD).unwrap();
    let (addr, act) = parse_action(&r).unwrap();
    assert_eq!(addr, Addressed::Service(ServiceType::WANIP1));
    let Action::AddPortMapping(m) = act.clone() else {
        panic!()
    };
    assert_eq!(m.external_port, 8080);
    assert_eq!(m.protocol, Protocol::Tcp);
    assert_eq!(m.internal_client, Some(Ipv4Addr::new(192, 168, 1, 100)));
    assert_eq!(m.lease_duration, 0);
    assert!(m.remote_host.is_none());
    // client-side builder produces the same request
    assert_eq!(act.to_request(V1), r);
}

#[test]
fn add_validation() {
    let ok = req(V2, "AddPortMapping", &add_args("8080", "80", ""));
    let Ok((_, Action::AddPortMapping(m))) = parse_action(&ok) else {
        panic!()
    };
    assert_eq!(
        m.internal_client, None,
        "empty NewInternalClient = the caller"
    );
    assert!(m.enabled);
    type Case<'a> = (&'a str, Vec<(&'a str, &'a str)>, UpnpError);
    let cases: &[Case<'_>] = &[
        (
            V1,
            add_args("0", "80", ""),
            UpnpError::WildCardNotPermittedInExtPort,
        ),
        (
            V2,
            add_args("0", "80", ""),
            UpnpError::WildCardNotPermittedInExtPort,
        ),
        (
            V2,
            add_args("80", "0", ""),
            UpnpError::WildCardNotPermittedInIntPort,
        ),
        (V1, add_args("80", "0", ""), UpnpError::InvalidArgs),
        (V2, add_args("70000", "80", ""), UpnpError::InvalidArgs),
        (V2, add_args("-1", "80", ""), UpnpError::InvalidArgs),
        (V2, add_args("x", "80", ""), UpnpError::InvalidArgs),
        (
            V2,
            add_args("80", "80", "not-an-ip"),
            UpnpError::InvalidArgs,
        ),
        (
            V2,
            add_args("80", "80", "")[..7].to_vec(),
            UpnpError::InvalidArgs,
        ),
    ];
    for (st, args, want) in cases {
        assert_eq!(
            parse_action(&req(st, "AddPortMapping", args)),
            Err(*want),
            "{args:?}"
        );
    }
    let mut bad_proto = add_args("80", "80", "");
    bad_proto[2].1 = "SCTP";
    assert_eq!(
        parse_action(&req(V2, "AddPortMapping", &bad_proto)),
        Err(UpnpError::InvalidArgs)
    );
    let mut bad_bool = add_args("80", "80", "");
    bad_bool[5].1 = "maybe";
    assert_eq!(
        parse_action(&req(V2, "AddPortMapping", &bad_bool)),
        Err(UpnpError::InvalidArgs)
    );
    let mut star = add_args("80", "80", "");
    star[0].1 = "*";
    assert!(parse_action(&req(V2, "AddPortMapping", &star)).is_ok());
    star[0].1 = "198.51.100.10";
    let Ok((_, Action::AddPortMapping(m))) = parse_action(&req(V2, "AddPortMapping", &star)) else {
        panic!()
    };
    assert_eq!(m.remote_host, Some(Ipv4Addr::new(198, 51, 100, 10)));
    // AddAnyPortMapping takes 0 as "any", and only exists in v2.
    let any = req(V2, "AddAnyPortMapping", &add_args("0", "80", ""));
    assert!(matches!(
        parse_action(&any),
        Ok((_, Action::AddAnyPortMapping(_)))
    ));
    let any_v1 = req(V1, "AddAnyPortMapping", &add_args("0", "80", ""));
    assert_eq!(parse_action(&any_v1), Err(UpnpError::InvalidAction));
}

#[test]
fn unknown_things_are_401() {
    assert_eq!(
        parse_action(&req(V2, "Frobnicate", &[])),
        Err(UpnpError::InvalidAction)
    );
    assert_eq!(
        parse_action(&req(
            "urn:schemas-upnp-org:service:Nope:1",
            "GetStatusInfo",
            &[]
        )),
        Err(UpnpError::InvalidAction)
    );
    assert_eq!(
        parse_action(&req(V1, "GetListOfPortMappings", &[])),
        Err(UpnpError::InvalidAction)
    );
    assert_eq!(
        parse_action(&req(CONTROL_NS, "Other", &[])),
        Err(UpnpError::InvalidAction)
    );
}

#[test]
fn every_action_round_trips_through_the_builder() {
    let key = MappingKey {
        remote_host: None,
        external_port: 8081,
        protocol: Protocol::Udp,
    };
    let range = PortRange {
        start_port: 1,
        end_port: 65535,
        protocol: Protocol::Tcp,
        manage: true,
    };
    let add = AddPortMapping {
        remote_host: Some(Ipv4Addr::new(198, 51, 100, 1)),
        external_port: 8080,
        protocol: Protocol::Tcp,
        internal_port: 80,
        internal_client: Some(Ipv4Addr::new(192, 168, 1, 100)),
        enabled: false,
        description: "a <b> & 'c'".into(),
        lease_duration: 3600,
    };
    let wanip = [
        Action::SetConnectionType {
            connection_type: "IP_Routed".into(),
        },
        Action::GetConnectionTypeInfo,
        Action::RequestConnection,
        Action::RequestTermination,
        Action::ForceTermination,
        Action::SetAutoDisconnectTime(1),
        Action::SetIdleDisconnectTime(2),
        Action::SetWarnDisconnectDelay(3),
        Action::GetStatusInfo,
        Action::GetAutoDisconnectTime,
        Action::GetIdleDisconnectTime,
        Action::GetWarnDisconnectDelay,
        Action::GetNatRsipStatus,
        Action::GetGenericPortMappingEntry(7),
        Action::GetSpecificPortMappingEntry(key),
        Action::AddPortMapping(add.clone()),
        Action::DeletePortMapping(key),
        Action::DeletePortMappingRange(range),
        Action::GetExternalIpAddress,
        Action::GetListOfPortMappings(range, 100),
        Action::AddAnyPortMapping(add),
    ];
    for a in &wanip {
        let bytes = a.to_request(V2).emit();
        let parsed = ActionRequest::parse(&bytes).unwrap();
        assert_eq!(
            parse_action(&parsed),
            Ok((Addressed::Service(ServiceType::WANIP2), a.clone()))
        );
    }
    let cic = "urn:schemas-upnp-org:service:WANCommonInterfaceConfig:1";
    for a in [
        Action::GetCommonLinkProperties,
        Action::GetTotalBytesSent,
        Action::GetTotalBytesReceived,
        Action::GetTotalPacketsSent,
        Action::GetTotalPacketsReceived,
    ] {
        let parsed = ActionRequest::parse(&a.to_request(cic).emit()).unwrap();
        assert_eq!(parse_action(&parsed).unwrap().1, a);
    }
    let l3f = "urn:schemas-upnp-org:service:Layer3Forwarding:1";
    for a in [
        Action::GetDefaultConnectionService,
        Action::SetDefaultConnectionService(
            "uuid:x:WANConnectionDevice:1,urn:upnp-org:serviceId:WANIPConn1".into(),
        ),
    ] {
        let parsed = ActionRequest::parse(&a.to_request(l3f).emit()).unwrap();
        assert_eq!(parse_action(&parsed).unwrap().1, a);
    }
    let q = Action::QueryStateVariable("PortMappingNumberOfEntries".into());
    let parsed = ActionRequest::parse(&q.to_request(V2).emit()).unwrap();
    assert_eq!(parse_action(&parsed), Ok((Addressed::Control, q)));
}

#[test]
fn range_validation() {
    let args = [
        ("NewStartPort", "9000"),
        ("NewEndPort", "8000"),
        ("NewProtocol", "UDP"),
        ("NewManage", "0"),
    ];
    assert_eq!(
        parse_action(&req(V2, "DeletePortMappingRange", &args)),
        Err(UpnpError::InconsistentParameters)
    );
    assert_eq!(
        parse_action(&req(V2, "GetListOfPortMappings", &args)),
        Err(UpnpError::InconsistentParameters)
    );
    let ok_range = [
        ("NewStartPort", "8000"),
        ("NewEndPort", "9000"),
        ("NewProtocol", "UDP"),
        ("NewManage", "1"),
    ];
    // NewNumberOfPorts missing
    assert_eq!(
        parse_action(&req(V2, "GetListOfPortMappings", &ok_range)),
        Err(UpnpError::InvalidArgs)
    );
    assert!(parse_action(&req(V2, "DeletePortMappingRange", &ok_range)).is_ok());
}

fn entry(port: u16, desc: &str) -> PortMappingEntry {
    PortMappingEntry {
        remote_host: None,
        external_port: port,
        protocol: Protocol::Tcp,
        internal_port: port,
        internal_client: Ipv4Addr::new(192, 168, 1, 100),
        enabled: true,
        description: desc.into(),
        lease_duration: 3599,
    }
}

#[test]
fn replies_round_trip() {
    let cases = vec![
        (
            Action::GetGenericPortMappingEntry(0),
            Reply::GenericEntry(entry(8080, "hnib cam <1>")),
        ),
        (
            Action::GetSpecificPortMappingEntry(MappingKey {
                remote_host: None,
                external_port: 8080,
                protocol: Protocol::Tcp,
            }),
            Reply::SpecificEntry {
                internal_port: 80,
                internal_client: Ipv4Addr::new(192, 168, 1, 101),
                enabled: true,
                description: "x".into(),
                lease_duration: 0,
            },
        ),
        (
            Action::GetExternalIpAddress,
            Reply::ExternalIpAddress("203.0.113.2".into()),
        ),
        (
            Action::GetStatusInfo,
            Reply::StatusInfo {
                status: "Connected".into(),
                last_error: "ERROR_NONE".into(),
                uptime: 42,
            },
        ),
        (
            Action::GetConnectionTypeInfo,
            Reply::ConnectionTypeInfo {
                connection_type: "IP_Routed".into(),
                possible: "IP_Routed".into(),
            },
        ),
        (
            Action::GetNatRsipStatus,
            Reply::NatRsipStatus {
                rsip_available: false,
                nat_enabled: true,
            },
        ),
        (Action::GetWarnDisconnectDelay, Reply::Seconds(5)),
        (Action::GetTotalBytesSent, Reply::Counter(1234)),
        (
            Action::GetListOfPortMappings(
                PortRange {
                    start_port: 0,
                    end_port: 65535,
                    protocol: Protocol::Tcp,
                    manage: false,
                },
                0,
            ),
            Reply::PortListing(vec![entry(8080, "a&b"), entry(8081, "<cam 2>")]),
        ),
        (
            Action::GetCommonLinkProperties,
            Reply::LinkProperties(LinkProperties {
                wan_access_type: "Ethernet".into(),
                upstream_max_bit_rate: 1_000_000_000,
                downstream_max_bit_rate: 1_000_000_000,
                physical_link_status: "Up".into(),
            }),
        ),
        (
            Action::GetDefaultConnectionService,
            Reply::DefaultConnectionService("x".into()),
        ),
        (
            Action::QueryStateVariable("ExternalIPAddress".into()),
            Reply::StateVariable("1.2.3.4".into()),
        ),
        (
            Action::DeletePortMapping(MappingKey {
                remote_host: None,
                external_port: 1,
                protocol: Protocol::Udp,
            }),
            Reply::Empty,
        ),
    ];
    for (action, reply) in cases {
        let resp = reply.to_response(&action, V2);
        let bytes = resp.emit();
        let Ok(Ok(back)) = soap::parse_response(&bytes) else {
            panic!("{action:?}")
        };
        assert_eq!(action.parse_reply(&back), Ok(reply), "{action:?}");
    }
    // counters wrap as ui4
    let r = Reply::Counter(u64::from(u32::MAX) + 11).to_response(&Action::GetTotalBytesSent, "x");
    assert_eq!(r.arg("NewTotalBytesSent"), Some("10"));
    // wrong action
    let resp = Reply::Empty.to_response(&Action::GetStatusInfo, V2);
    assert!(matches!(
        Action::GetExternalIpAddress.parse_reply(&resp),
        Err(ReplyError::WrongAction(_))
    ));
}

/// GetGenericPortMappingEntry response in miniupnpd 2.3's layout (upnpsoap.c; from its source).
const MINIUPNPD_GENERIC: &[u8] = b"<?xml version=\"1.0\"?>\r\n<s:Envelope xmlns:s=\"http://schemas.xmlsoap.org/soap/envelope/\" s:encodingStyle=\"http://schemas.xmlsoap.org/soap/encoding/\"><s:Body><u:GetGenericPortMappingEntryResponse xmlns:u=\"urn:schemas-upnp-org:service:WANIPConnection:1\"><NewRemoteHost></NewRemoteHost><NewExternalPort>8080</NewExternalPort><NewProtocol>TCP</NewProtocol><NewInternalPort>8080</NewInternalPort><NewInternalClient>192.168.1.100</NewInternalClient><NewEnabled>1</NewEnabled><NewPortMappingDescription>libminiupnpc</NewPortMappingDescription><NewLeaseDuration>3598</NewLeaseDuration></u:GetGenericPortMappingEntryResponse></s:Body></s:Envelope>\r\n";

#[test]
fn miniupnpd_generic_entry() {
    let Ok(Ok(resp)) = soap::parse_response(MINIUPNPD_GENERIC) else {
        panic!()
    };
    let r = Action::GetGenericPortMappingEntry(0)
        .parse_reply(&resp)
        .unwrap();
    let Reply::GenericEntry(e) = &r else { panic!() };
    assert_eq!(e.lease_duration, 3598);
    assert_eq!(e.description, "libminiupnpc");
    // our emitter writes the same bytes
    assert_eq!(
        r.to_response(&Action::GetGenericPortMappingEntry(0), V1)
            .emit(),
        MINIUPNPD_GENERIC
    );
}

#[test]
fn port_listing_document() {
    let doc = emit_port_listing(&[entry(8080, "cam & co")]);
    assert!(doc.contains("<p:NewDescription>cam &amp; co</p:NewDescription>"));
    assert_eq!(
        parse_port_listing(doc.as_bytes()).unwrap(),
        vec![entry(8080, "cam & co")]
    );
    assert_eq!(
        parse_port_listing(emit_port_listing(&[]).as_bytes()).unwrap(),
        vec![]
    );
    // inside a SOAP response the document is escaped a second time
    let resp = Reply::PortListing(vec![entry(1, "<x>")]).to_response(
        &Action::GetListOfPortMappings(
            PortRange {
                start_port: 0,
                end_port: 1,
                protocol: Protocol::Tcp,
                manage: false,
            },
            0,
        ),
        V2,
    );
    let text = String::from_utf8(resp.emit()).unwrap();
    assert!(text.contains("&lt;p:PortMappingList"));
    assert!(text.contains("&amp;lt;x&amp;gt;"));
    assert!(parse_port_listing(b"<other/>").is_err());
    assert!(parse_port_listing(b"<p:PortMappingList xmlns:p=\"x\"><p:PortMappingEntry><p:NewExternalPort>x</p:NewExternalPort></p:PortMappingEntry></p:PortMappingList>").is_err());
}

#[test]
fn booleans_and_protocols() {
    for (s, b) in [
        ("1", true),
        ("0", false),
        ("true", true),
        ("False", false),
        ("yes", true),
        ("NO", false),
    ] {
        assert_eq!(parse_bool(s), Some(b));
    }
    assert_eq!(parse_bool("2"), None);
    assert_eq!("udp".parse::<Protocol>(), Ok(Protocol::Udp));
    assert_eq!(" Tcp ".parse::<Protocol>(), Ok(Protocol::Tcp));
    assert!("icmp".parse::<Protocol>().is_err());
    assert_eq!(ServiceType::parse(V2), Some(ServiceType::WANIP2));
    assert_eq!(
        ServiceType::parse("urn:schemas-upnp-org:service:WANIPConnection:0"),
        None
    );
    assert_eq!(
        ServiceType::WANCIC1.urn(),
        "urn:schemas-upnp-org:service:WANCommonInterfaceConfig:1"
    );
}

/// The rows drive the server side: an action exists from its row's version on, is 401 below
/// it, and without arguments is 402 exactly when its row lists in-arguments.
#[test]
fn every_row_gates_and_reads_its_action() {
    let mut names = std::collections::HashSet::new();
    for def in actions::all() {
        assert!(
            names.insert(def.name),
            "{} twice: names are the key",
            def.name
        );
        let at = match def.service {
            None => CONTROL_NS.to_string(),
            Some(kind) => ServiceType {
                kind,
                version: def.since,
            }
            .urn(),
        };
        assert!(has_action(&at, def.name), "{}", def.name);
        let bare = parse_action(&req(&at, def.name, &[]));
        if def.ins().next().is_none() {
            let (_, action) = bare.unwrap_or_else(|e| panic!("{}: {e}", def.name));
            assert_eq!(action.name(), def.name);
            assert_eq!(action.def(), def);
        } else {
            assert_eq!(bare, Err(UpnpError::InvalidArgs), "{}", def.name);
        }
        if let Some(kind) = def.service.filter(|_| def.since > 1) {
            let below = ServiceType {
                kind,
                version: def.since - 1,
            }
            .urn();
            assert!(!has_action(&below, def.name), "{}", def.name);
            assert_eq!(
                parse_action(&req(&below, def.name, &[])),
                Err(UpnpError::InvalidAction)
            );
        }
    }
}
