//! Golden files: the descriptions we generate, byte for byte, and real devices' descriptions
//! that our client-side parsers must read.
//!
//! `UPDATE_GOLDEN=1 cargo test -p shared --test golden` rewrites the generated files under
//! `tests/golden/`; review the diff before committing. The `miniupnpd-2.3.1/` fixtures were
//! captured from the real daemon with `tests/golden/miniupnpd-2.3.1/capture.sh` (run inside a
//! private network namespace) and are never rewritten.

use std::path::PathBuf;

use shared::description::{
    self, DeviceInfo, Direction, RootConfig, find_igd_services, parse_scpd, root_description, scpds,
};
use shared::igd::{Action, ServiceKind, ServiceType};
use shared::url::HttpUrl;

fn golden_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests")
        .join("golden")
}

/// Compares `actual` with the golden file, or rewrites it when UPDATE_GOLDEN is set.
fn check(name: &str, actual: &str) {
    let path = golden_dir().join(name);
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(&path, actual).expect("write golden file");
        return;
    }
    let expected = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e} (run with UPDATE_GOLDEN=1 to create)",
            path.display()
        )
    });
    assert!(
        expected == actual,
        "{name} differs from its golden file; rerun with UPDATE_GOLDEN=1 and review the diff"
    );
}

fn config(version: u32) -> RootConfig {
    RootConfig {
        igd_version: version,
        uuids: [
            "6b1c3f1e-0000-4000-8000-000000000001".into(),
            "6b1c3f1e-0000-4000-8000-000000000002".into(),
            "6b1c3f1e-0000-4000-8000-000000000003".into(),
        ],
        info: DeviceInfo {
            friendly_name: "Home network in a box router".into(),
            manufacturer: "hnib".into(),
            manufacturer_url: "http://192.168.1.1/".into(),
            model_description: "Userspace home router & IGD".into(),
            model_name: "hnib-router".into(),
            model_number: "0.1".into(),
            model_url: "http://192.168.1.1/".into(),
            serial_number: "0001".into(),
            presentation_url: Some("http://192.168.1.1/".into()),
        },
        config_id: 1,
    }
}

#[test]
fn generated_descriptions_match_golden_files() {
    check("rootDesc-igd2.xml", &root_description(&config(2)));
    check("rootDesc-igd1.xml", &root_description(&config(1)));
    for version in [1, 2] {
        for (path, doc) in scpds(version) {
            let file = format!("scpd-igd{version}-{}", path.trim_start_matches('/'));
            check(&file, &doc);
        }
    }
}

#[test]
fn our_descriptions_parse_with_our_client() {
    let loc = HttpUrl::parse("http://192.168.1.1:5000/rootDesc.xml").unwrap();
    for version in [1, 2] {
        let doc = root_description(&config(version));
        let s = find_igd_services(doc.as_bytes(), &loc).unwrap();
        assert_eq!(
            s.wan_connection.parsed,
            Some(ServiceType {
                kind: ServiceKind::WanIpConnection,
                version
            })
        );
        assert_eq!(
            s.wan_connection.control_url.to_string(),
            "http://192.168.1.1:5000/ctl/IPConn"
        );
        assert_eq!(
            s.common_interface.unwrap().control_url.path,
            "/ctl/CmnIfCfg"
        );
        assert_eq!(s.udn, "uuid:6b1c3f1e-0000-4000-8000-000000000001");
        // every SCPD is well-formed and its actions match the table
        for (_, scpd) in scpds(version) {
            parse_scpd(scpd.as_bytes()).unwrap();
        }
    }
}

#[test]
fn miniupnpd_root_description() {
    let doc = std::fs::read(golden_dir().join("miniupnpd-2.3.1/rootDesc.xml")).unwrap();
    let loc = HttpUrl::parse("http://192.168.1.1:5000/rootDesc.xml").unwrap();
    let s = find_igd_services(&doc, &loc).unwrap();
    assert_eq!(
        s.wan_connection.service_type,
        "urn:schemas-upnp-org:service:WANIPConnection:2"
    );
    assert_eq!(
        s.wan_connection.control_url.to_string(),
        "http://192.168.1.1:5000/ctl/IPConn"
    );
    assert_eq!(s.wan_connection.event_url.unwrap().path, "/evt/IPConn");
    assert_eq!(s.wan_connection.scpd_url.unwrap().path, "/WANIPCn.xml");
    assert_eq!(
        s.common_interface.unwrap().control_url.path,
        "/ctl/CmnIfCfg"
    );
    assert_eq!(s.friendly_name, "Debian router");
}

/// Our WANIPConnection:2 SCPD offers every action miniupnpd 2.3.1 offers, with the same
/// arguments in the same order and the same related state variables.
#[test]
fn our_scpd_covers_miniupnpd() {
    let theirs =
        parse_scpd(&std::fs::read(golden_dir().join("miniupnpd-2.3.1/WANIPCn.xml")).unwrap())
            .unwrap();
    let ours = parse_scpd(description::scpd(&description::WANIP_CONNECTION, 2).as_bytes()).unwrap();
    for a in &theirs.actions {
        let o = ours.actions.iter().find(|o| o.name == a.name);
        let o = o.unwrap_or_else(|| panic!("we lack {}", a.name));
        if a.name == "AddAnyPortMapping" {
            // miniupnpd 2.3.1's SCPD names the out-argument NewExternalPort; WANIPConnection:2
            // §2.4.16 names it NewReservedPort (and miniupnpd's response body uses that name).
            let n = a.args.len() - 1;
            assert_eq!(o.args[..n], a.args[..n]);
            assert_eq!(o.args[n].0, "NewReservedPort");
            continue;
        }
        assert_eq!(o.args, a.args, "{}", a.name);
    }
    for (name, ty) in &theirs.vars {
        assert!(
            ours.vars.iter().any(|(n, t)| n == name && t == ty),
            "variable {name} {ty}"
        );
    }
    let cfg = parse_scpd(&std::fs::read(golden_dir().join("miniupnpd-2.3.1/WANCfg.xml")).unwrap())
        .unwrap();
    let ours =
        parse_scpd(description::scpd(&description::WAN_COMMON_INTERFACE_CONFIG, 1).as_bytes())
            .unwrap();
    for a in &cfg.actions {
        assert!(
            ours.actions
                .iter()
                .any(|o| o.name == a.name && o.args == a.args),
            "{}",
            a.name
        );
    }
}

/// The SCPD tables and the typed actions agree: every in-argument the table lists is what
/// `Action::args` sends, in order.
#[test]
fn scpd_tables_match_typed_actions() {
    use shared::igd::{AddPortMapping, MappingKey, PortRange, Protocol};
    let key = MappingKey {
        remote_host: None,
        external_port: 1,
        protocol: Protocol::Tcp,
    };
    let range = PortRange {
        start_port: 1,
        end_port: 2,
        protocol: Protocol::Tcp,
        manage: false,
    };
    let add = AddPortMapping {
        remote_host: None,
        external_port: 1,
        protocol: Protocol::Tcp,
        internal_port: 1,
        internal_client: None,
        enabled: true,
        description: String::new(),
        lease_duration: 0,
    };
    let actions = [
        Action::SetConnectionType {
            connection_type: "IP_Routed".into(),
        },
        Action::GetConnectionTypeInfo,
        Action::RequestConnection,
        Action::RequestTermination,
        Action::ForceTermination,
        Action::SetAutoDisconnectTime(0),
        Action::SetIdleDisconnectTime(0),
        Action::SetWarnDisconnectDelay(0),
        Action::GetStatusInfo,
        Action::GetAutoDisconnectTime,
        Action::GetIdleDisconnectTime,
        Action::GetWarnDisconnectDelay,
        Action::GetNatRsipStatus,
        Action::GetGenericPortMappingEntry(0),
        Action::GetSpecificPortMappingEntry(key),
        Action::AddPortMapping(add.clone()),
        Action::DeletePortMapping(key),
        Action::DeletePortMappingRange(range),
        Action::GetExternalIpAddress,
        Action::GetListOfPortMappings(range, 0),
        Action::AddAnyPortMapping(add),
        Action::GetCommonLinkProperties,
        Action::GetTotalBytesSent,
        Action::GetTotalBytesReceived,
        Action::GetTotalPacketsSent,
        Action::GetTotalPacketsReceived,
        Action::SetDefaultConnectionService(String::new()),
        Action::GetDefaultConnectionService,
    ];
    let tables = [
        &description::WANIP_CONNECTION,
        &description::WAN_COMMON_INTERFACE_CONFIG,
        &description::LAYER3_FORWARDING,
    ];
    let mut listed = 0;
    for t in tables {
        listed += t.actions.len();
    }
    assert_eq!(
        listed,
        actions.len(),
        "every table action has a typed action"
    );
    for a in &actions {
        let def = tables
            .iter()
            .flat_map(|t| t.actions.iter())
            .find(|d| d.name == a.name())
            .unwrap_or_else(|| panic!("{} not in any table", a.name()));
        let ins: Vec<&str> = def
            .args
            .iter()
            .filter(|g| g.direction == Direction::In)
            .map(|g| g.name)
            .collect();
        let sent: Vec<String> = a.args().into_iter().map(|(k, _)| k).collect();
        assert_eq!(ins, sent, "{}", a.name());
    }
}

/// Requests captured from the real upnpc (miniupnpc 2.2.4) against our description with
/// `tests/golden/miniupnpc-2.2.4/capture.sh`: they parse into the typed actions, and our
/// client-side builder produces the same bytes.
#[test]
fn miniupnpc_requests() {
    use shared::igd::{Addressed, parse_action};
    use shared::soap::ActionRequest;
    let dir = golden_dir().join("miniupnpc-2.2.4");
    for name in [
        "AddPortMapping",
        "DeletePortMapping",
        "GetExternalIPAddress",
        "GetListOfPortMappings",
    ] {
        let raw = std::fs::read(dir.join(format!("{name}.xml"))).unwrap();
        let req = ActionRequest::parse(&raw).unwrap();
        let (addressed, action) = parse_action(&req).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(addressed, Addressed::Service(ServiceType::WANIP2));
        assert_eq!(action.name(), name);
        assert_eq!(
            action.to_request(&req.service_type).emit(),
            raw,
            "{name}: builder bytes"
        );
    }
}
