//! Device and service descriptions (UDA 1.1 §2), generated from tables, and parsed on the
//! client side.
//!
//! Server side:
//! - [`root_description`]: the root device description of UDA 1.1 §2.3, an
//!   InternetGatewayDevice (:1 or :2) containing a WANDevice containing a WANConnectionDevice
//!   (IGD:2 §2.1, IGD:1 §2.1), with Layer3Forwarding, WANCommonInterfaceConfig and
//!   WANIPConnection in their serviceLists. URLs are path-absolute (UDA 1.1 §2.3: relative
//!   URLs resolve against the description's own URL; no URLBase, deprecated in UDA 1.1).
//! - [`scpd`]: the service description of UDA 1.1 §2.5 (actionList with every argument's
//!   name, direction and relatedStateVariable; serviceStateTable with data types, defaults,
//!   allowed values and ranges), from one table per service: [`WANIP_CONNECTION`],
//!   [`WAN_COMMON_INTERFACE_CONFIG`], [`LAYER3_FORWARDING`]. Their actions are the service's
//!   rows of the IGD action table ([`crate::igd::actions`]); the state variables are here.
//!
//! Client side (the camera node):
//! - [`find_igd_services`]: in any router's root description, the WANIPConnection (or
//!   WANPPPConnection) service and WANCommonInterfaceConfig, with URLs resolved against
//!   URLBase or the LOCATION the description was fetched from.
//! - [`parse_scpd`]: the actions of a service description.

use std::fmt::Write as _;

pub use crate::igd::actions::{ActionDef, ArgDef, Direction};
use crate::igd::actions::{L3F_ACTIONS, WANCIC_ACTIONS, WANIP_ACTIONS};
use crate::igd::{ServiceKind, ServiceType};
use crate::url::HttpUrl;
use crate::xml::{self, Element, Limits, XmlError, escape};

/// Namespace of device descriptions (UDA 1.1 §2.3).
pub const DEVICE_NS: &str = "urn:schemas-upnp-org:device-1-0";
/// Namespace of service descriptions (UDA 1.1 §2.5).
pub const SERVICE_NS: &str = "urn:schemas-upnp-org:service-1-0";

// =============================================================================================
// Service tables

/// One state variable (UDA 1.1 §2.5).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VarDef {
    /// Name.
    pub name: &'static str,
    /// UPnP data type (`string`, `ui2`, `ui4`, `boolean`).
    pub data_type: &'static str,
    /// `sendEvents`.
    pub events: bool,
    /// `defaultValue`.
    pub default: Option<&'static str>,
    /// `allowedValueList`.
    pub allowed: &'static [&'static str],
    /// `allowedValueRange` (minimum, maximum).
    pub range: Option<(u32, u32)>,
    /// First version with this variable.
    pub since: u32,
}

/// A service's table: actions (its rows of the IGD action table, [`crate::igd::actions`]) and
/// state variables.
#[derive(Debug, Clone, Copy)]
pub struct ServiceDef {
    /// Service kind.
    pub kind: ServiceKind,
    /// Actions.
    pub actions: &'static [ActionDef],
    /// State variables.
    pub vars: &'static [VarDef],
}

const fn var(name: &'static str, data_type: &'static str) -> VarDef {
    VarDef {
        name,
        data_type,
        events: false,
        default: None,
        allowed: &[],
        range: None,
        since: 1,
    }
}

/// The WANIPConnection:1/:2 table (WANIPConnection:2 §2.2 state variables, §2.4 actions).
pub const WANIP_CONNECTION: ServiceDef = ServiceDef {
    kind: ServiceKind::WanIpConnection,
    actions: WANIP_ACTIONS,
    vars: &[
        VarDef {
            default: Some("IP_Routed"),
            ..var("ConnectionType", "string")
        },
        VarDef {
            events: true,
            allowed: &["Unconfigured", "IP_Routed", "IP_Bridged"],
            ..var("PossibleConnectionTypes", "string")
        },
        VarDef {
            events: true,
            allowed: &[
                "Unconfigured",
                "Connecting",
                "Connected",
                "PendingDisconnect",
                "Disconnecting",
                "Disconnected",
            ],
            ..var("ConnectionStatus", "string")
        },
        var("Uptime", "ui4"),
        VarDef {
            default: Some("ERROR_NONE"),
            allowed: &[
                "ERROR_NONE",
                "ERROR_COMMAND_ABORTED",
                "ERROR_NOT_ENABLED_FOR_INTERNET",
                "ERROR_USER_DISCONNECT",
                "ERROR_ISP_DISCONNECT",
                "ERROR_IDLE_DISCONNECT",
                "ERROR_FORCED_DISCONNECT",
                "ERROR_NO_CARRIER",
                "ERROR_IP_CONFIGURATION",
                "ERROR_UNKNOWN",
            ],
            ..var("LastConnectionError", "string")
        },
        var("AutoDisconnectTime", "ui4"),
        var("IdleDisconnectTime", "ui4"),
        var("WarnDisconnectDelay", "ui4"),
        var("RSIPAvailable", "boolean"),
        var("NATEnabled", "boolean"),
        VarDef {
            events: true,
            ..var("ExternalIPAddress", "string")
        },
        VarDef {
            events: true,
            ..var("PortMappingNumberOfEntries", "ui2")
        },
        var("PortMappingEnabled", "boolean"),
        VarDef {
            range: Some((0, 604_800)),
            ..var("PortMappingLeaseDuration", "ui4")
        },
        var("RemoteHost", "string"),
        var("ExternalPort", "ui2"),
        VarDef {
            range: Some((1, 65535)),
            ..var("InternalPort", "ui2")
        },
        VarDef {
            allowed: &["TCP", "UDP"],
            ..var("PortMappingProtocol", "string")
        },
        var("InternalClient", "string"),
        var("PortMappingDescription", "string"),
        VarDef {
            events: true,
            since: 2,
            ..var("SystemUpdateID", "ui4")
        },
        VarDef {
            since: 2,
            ..var("A_ARG_TYPE_Manage", "boolean")
        },
        VarDef {
            since: 2,
            ..var("A_ARG_TYPE_PortListing", "string")
        },
    ],
};

/// The WANCommonInterfaceConfig:1 table (WANCommonInterfaceConfig:1 §2.2, §2.4), the actions
/// we implement.
pub const WAN_COMMON_INTERFACE_CONFIG: ServiceDef = ServiceDef {
    kind: ServiceKind::WanCommonInterfaceConfig,
    actions: WANCIC_ACTIONS,
    vars: &[
        VarDef {
            allowed: &["DSL", "POTS", "Cable", "Ethernet"],
            ..var("WANAccessType", "string")
        },
        var("Layer1UpstreamMaxBitRate", "ui4"),
        var("Layer1DownstreamMaxBitRate", "ui4"),
        VarDef {
            events: true,
            allowed: &["Up", "Down", "Initializing", "Unavailable"],
            ..var("PhysicalLinkStatus", "string")
        },
        var("TotalBytesSent", "ui4"),
        var("TotalBytesReceived", "ui4"),
        var("TotalPacketsSent", "ui4"),
        var("TotalPacketsReceived", "ui4"),
    ],
};

/// The Layer3Forwarding:1 table (Layer3Forwarding:1 §2.2, §2.4).
pub const LAYER3_FORWARDING: ServiceDef = ServiceDef {
    kind: ServiceKind::Layer3Forwarding,
    actions: L3F_ACTIONS,
    vars: &[VarDef {
        events: true,
        ..var("DefaultConnectionService", "string")
    }],
};

/// The table for a service kind (None for WANPPPConnection, which we do not serve).
pub fn service_def(kind: ServiceKind) -> Option<&'static ServiceDef> {
    match kind {
        ServiceKind::WanIpConnection => Some(&WANIP_CONNECTION),
        ServiceKind::WanCommonInterfaceConfig => Some(&WAN_COMMON_INTERFACE_CONFIG),
        ServiceKind::Layer3Forwarding => Some(&LAYER3_FORWARDING),
        ServiceKind::WanPppConnection => None,
    }
}

/// Writes the SCPD of `def` at service `version` (UDA 1.1 §2.5).
pub fn scpd(def: &ServiceDef, version: u32) -> String {
    let mut s = String::with_capacity(8192);
    s.push_str("<?xml version=\"1.0\"?>\n");
    let _ = writeln!(s, "<scpd xmlns=\"{SERVICE_NS}\">");
    s.push_str("  <specVersion><major>1</major><minor>1</minor></specVersion>\n");
    s.push_str("  <actionList>\n");
    for a in def.actions.iter().filter(|a| a.since <= version) {
        let _ = writeln!(s, "    <action>\n      <name>{}</name>", a.name);
        if !a.args.is_empty() {
            s.push_str("      <argumentList>\n");
            for arg in a.args {
                let dir = match arg.direction {
                    Direction::In => "in",
                    Direction::Out => "out",
                };
                let _ = writeln!(
                    s,
                    "        <argument><name>{}</name><direction>{dir}</direction>\
                     <relatedStateVariable>{}</relatedStateVariable></argument>",
                    arg.name, arg.related
                );
            }
            s.push_str("      </argumentList>\n");
        }
        s.push_str("    </action>\n");
    }
    s.push_str("  </actionList>\n  <serviceStateTable>\n");
    for v in def.vars.iter().filter(|v| v.since <= version) {
        let _ = write!(
            s,
            "    <stateVariable sendEvents=\"{}\"><name>{}</name><dataType>{}</dataType>",
            if v.events { "yes" } else { "no" },
            v.name,
            v.data_type
        );
        if let Some(d) = v.default {
            let _ = write!(s, "<defaultValue>{}</defaultValue>", escape(d));
        }
        if !v.allowed.is_empty() {
            s.push_str("<allowedValueList>");
            for a in v.allowed {
                let _ = write!(s, "<allowedValue>{}</allowedValue>", escape(a));
            }
            s.push_str("</allowedValueList>");
        }
        if let Some((min, max)) = v.range {
            let _ = write!(
                s,
                "<allowedValueRange><minimum>{min}</minimum><maximum>{max}</maximum></allowedValueRange>"
            );
        }
        s.push_str("</stateVariable>\n");
    }
    s.push_str("  </serviceStateTable>\n</scpd>\n");
    s
}

// =============================================================================================
// Root description

/// Where a service lives on our HTTP server (path-absolute URLs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServiceUrls {
    /// `serviceId`.
    pub service_id: &'static str,
    /// `SCPDURL`.
    pub scpd: &'static str,
    /// `controlURL`.
    pub control: &'static str,
    /// `eventSubURL`.
    pub event: &'static str,
}

/// Path of the root description for an IGD version; the v1 variant has its own path so one
/// server can offer both (issue 4: a v1-only variant for clients that only speak v1).
pub fn root_description_path(igd_version: u32) -> &'static str {
    if igd_version >= 2 {
        "/rootDesc.xml"
    } else {
        "/rootDesc1.xml"
    }
}

/// The URLs of a service in the IGD of `igd_version`. Control and event URLs are shared by
/// both variants (the SOAP body names the version); SCPD URLs differ where the SCPD does.
pub fn service_urls(kind: ServiceKind, igd_version: u32) -> ServiceUrls {
    let v2 = igd_version >= 2;
    match kind {
        ServiceKind::Layer3Forwarding => ServiceUrls {
            service_id: "urn:upnp-org:serviceId:L3Forwarding1",
            scpd: "/L3F.xml",
            control: "/ctl/L3F",
            event: "/evt/L3F",
        },
        ServiceKind::WanCommonInterfaceConfig => ServiceUrls {
            service_id: "urn:upnp-org:serviceId:WANCommonIFC1",
            scpd: "/WANCfg.xml",
            control: "/ctl/CmnIfCfg",
            event: "/evt/CmnIfCfg",
        },
        ServiceKind::WanIpConnection | ServiceKind::WanPppConnection => ServiceUrls {
            service_id: "urn:upnp-org:serviceId:WANIPConn1",
            scpd: if v2 { "/WANIPCn.xml" } else { "/WANIPCn1.xml" },
            control: "/ctl/IPConn",
            event: "/evt/IPConn",
        },
    }
}

/// The services of the IGD tree, by device (IGD:2 §2.1), with their versions in an IGD:2.
const ROOT_SERVICES: &[ServiceType] = &[ServiceType::L3F1];
const WAN_SERVICES: &[ServiceType] = &[ServiceType::WANCIC1];
const WAN_CONN_SERVICES: &[ServiceType] = &[ServiceType::WANIP2];

/// Every SCPD the server must serve for an IGD version: (path, document).
pub fn scpds(igd_version: u32) -> Vec<(&'static str, String)> {
    ROOT_SERVICES
        .iter()
        .chain(WAN_SERVICES)
        .chain(WAN_CONN_SERVICES)
        .filter_map(|st| {
            let def = service_def(st.kind)?;
            let version = st.version.min(igd_version);
            Some((service_urls(st.kind, igd_version).scpd, scpd(def, version)))
        })
        .collect()
}

/// The product strings of the description (UDA 1.1 §2.3).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceInfo {
    /// `friendlyName` of the root device.
    pub friendly_name: String,
    /// `manufacturer`.
    pub manufacturer: String,
    /// `manufacturerURL`.
    pub manufacturer_url: String,
    /// `modelDescription`.
    pub model_description: String,
    /// `modelName`.
    pub model_name: String,
    /// `modelNumber`.
    pub model_number: String,
    /// `modelURL`.
    pub model_url: String,
    /// `serialNumber`.
    pub serial_number: String,
    /// `presentationURL`: the admin page (absolute, e.g. `http://192.168.1.1/`).
    pub presentation_url: Option<String>,
}

/// What the root description is generated from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RootConfig {
    /// IGD version, 1 or 2.
    pub igd_version: u32,
    /// UUIDs (without `uuid:`) of the three devices: root, WANDevice, WANConnectionDevice.
    pub uuids: [String; 3],
    /// Product strings.
    pub info: DeviceInfo,
    /// `configId` (UDA 1.1 §2.3; the same value as CONFIGID.UPNP.ORG in SSDP).
    pub config_id: u32,
}

fn write_device_head(
    s: &mut String,
    ind: &str,
    dtype: &str,
    name: &str,
    info: &DeviceInfo,
    uuid: &str,
) {
    let _ = writeln!(s, "{ind}<deviceType>{}</deviceType>", escape(dtype));
    let _ = writeln!(s, "{ind}<friendlyName>{}</friendlyName>", escape(name));
    let _ = writeln!(
        s,
        "{ind}<manufacturer>{}</manufacturer>",
        escape(&info.manufacturer)
    );
    let _ = writeln!(
        s,
        "{ind}<manufacturerURL>{}</manufacturerURL>",
        escape(&info.manufacturer_url)
    );
    let _ = writeln!(
        s,
        "{ind}<modelDescription>{}</modelDescription>",
        escape(&info.model_description)
    );
    let _ = writeln!(
        s,
        "{ind}<modelName>{}</modelName>",
        escape(&info.model_name)
    );
    let _ = writeln!(
        s,
        "{ind}<modelNumber>{}</modelNumber>",
        escape(&info.model_number)
    );
    let _ = writeln!(s, "{ind}<modelURL>{}</modelURL>", escape(&info.model_url));
    let _ = writeln!(
        s,
        "{ind}<serialNumber>{}</serialNumber>",
        escape(&info.serial_number)
    );
    let _ = writeln!(s, "{ind}<UDN>uuid:{}</UDN>", escape(uuid));
}

fn write_services(s: &mut String, ind: &str, services: &[ServiceType], igd_version: u32) {
    let _ = writeln!(s, "{ind}<serviceList>");
    for st in services {
        let v = st.version.min(igd_version);
        let urls = service_urls(st.kind, igd_version);
        let _ = writeln!(
            s,
            "{ind}  <service><serviceType>{}</serviceType><serviceId>{}</serviceId>\
             <SCPDURL>{}</SCPDURL><controlURL>{}</controlURL><eventSubURL>{}</eventSubURL></service>",
            ServiceType {
                kind: st.kind,
                version: v
            }
            .urn(),
            urls.service_id,
            urls.scpd,
            urls.control,
            urls.event
        );
    }
    let _ = writeln!(s, "{ind}</serviceList>");
}

/// Writes the root device description (UDA 1.1 §2.3) for IGD:1 or IGD:2.
pub fn root_description(cfg: &RootConfig) -> String {
    let v = if cfg.igd_version >= 2 { 2 } else { 1 };
    let info = &cfg.info;
    let mut s = String::with_capacity(4096);
    s.push_str("<?xml version=\"1.0\"?>\n");
    let _ = writeln!(
        s,
        "<root xmlns=\"{DEVICE_NS}\" configId=\"{}\">",
        cfg.config_id
    );
    s.push_str("  <specVersion><major>1</major><minor>1</minor></specVersion>\n");
    s.push_str("  <device>\n");
    let dev = |name: &str| format!("urn:schemas-upnp-org:device:{name}:{v}");
    write_device_head(
        &mut s,
        "    ",
        &dev("InternetGatewayDevice"),
        &info.friendly_name,
        info,
        &cfg.uuids[0],
    );
    write_services(&mut s, "    ", ROOT_SERVICES, v);
    s.push_str("    <deviceList>\n      <device>\n");
    write_device_head(
        &mut s,
        "        ",
        &dev("WANDevice"),
        "WANDevice",
        info,
        &cfg.uuids[1],
    );
    write_services(&mut s, "        ", WAN_SERVICES, v);
    s.push_str("        <deviceList>\n          <device>\n");
    write_device_head(
        &mut s,
        "            ",
        &dev("WANConnectionDevice"),
        "WANConnectionDevice",
        info,
        &cfg.uuids[2],
    );
    write_services(&mut s, "            ", WAN_CONN_SERVICES, v);
    s.push_str("          </device>\n        </deviceList>\n      </device>\n    </deviceList>\n");
    if let Some(p) = &info.presentation_url {
        let _ = writeln!(s, "    <presentationURL>{}</presentationURL>", escape(p));
    }
    s.push_str("  </device>\n</root>\n");
    s
}

// =============================================================================================
// Client side

/// Why a description could not be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DescriptionError {
    /// Not XML we accept.
    #[error(transparent)]
    Xml(#[from] XmlError),
    /// Not a root device description / SCPD.
    #[error("not a {0}")]
    NotDescription(&'static str),
    /// No WANIPConnection or WANPPPConnection service anywhere in the tree.
    #[error("no WAN connection service")]
    NoWanConnection,
    /// A URL in the description cannot be resolved.
    #[error("bad URL {0:?}")]
    BadUrl(String),
}

/// A service found in a description, URLs resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceRef {
    /// The service type URN as the router announced it (use it in SOAPACTION).
    pub service_type: String,
    /// Parsed type, if it is one we know.
    pub parsed: Option<ServiceType>,
    /// Absolute control URL.
    pub control_url: HttpUrl,
    /// Absolute event subscription URL, if given.
    pub event_url: Option<HttpUrl>,
    /// Absolute SCPD URL, if given.
    pub scpd_url: Option<HttpUrl>,
}

/// What a control point needs from an IGD's description.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IgdServices {
    /// The root device's `friendlyName`.
    pub friendly_name: String,
    /// The root device's UDN.
    pub udn: String,
    /// The connection service: the highest WANIPConnection, else WANPPPConnection.
    pub wan_connection: ServiceRef,
    /// WANCommonInterfaceConfig, if present.
    pub common_interface: Option<ServiceRef>,
}

fn all_services(dev: &Element, out: &mut Vec<Element>) {
    if let Some(list) = dev.child("serviceList") {
        out.extend(list.children_named("service").cloned());
    }
    if let Some(list) = dev.child("deviceList") {
        for d in list.children_named("device") {
            all_services(d, out);
        }
    }
}

/// Finds the IGD's services in a root description fetched from `location` (client side).
/// Relative URLs resolve against `URLBase` if present (UDA 1.0 §2.1), else against `location`
/// (UDA 1.1 §2.3).
pub fn find_igd_services(desc: &[u8], location: &HttpUrl) -> Result<IgdServices, DescriptionError> {
    let root = xml::parse(
        desc,
        Limits {
            max_bytes: 256 * 1024,
            ..Limits::default()
        },
    )?;
    if root.name != "root" {
        return Err(DescriptionError::NotDescription("root description"));
    }
    let base = match root.child_text("URLBase").filter(|b| !b.is_empty()) {
        Some(b) => HttpUrl::parse(b).ok_or_else(|| DescriptionError::BadUrl(b.to_string()))?,
        None => location.clone(),
    };
    let device = root
        .child("device")
        .ok_or(DescriptionError::NotDescription("root description"))?;
    let mut services = Vec::new();
    all_services(device, &mut services);
    let resolve = |s: &Element, name: &str| -> Result<Option<HttpUrl>, DescriptionError> {
        match s.child_text(name).filter(|u| !u.is_empty()) {
            None => Ok(None),
            Some(u) => base
                .join(u)
                .map(Some)
                .ok_or_else(|| DescriptionError::BadUrl(u.to_string())),
        }
    };
    let to_ref = |s: &Element| -> Result<Option<ServiceRef>, DescriptionError> {
        let st = s.child_text("serviceType").unwrap_or("").to_string();
        let Some(control_url) = resolve(s, "controlURL")? else {
            return Ok(None);
        };
        Ok(Some(ServiceRef {
            parsed: ServiceType::parse(&st),
            service_type: st,
            control_url,
            event_url: resolve(s, "eventSubURL")?,
            scpd_url: resolve(s, "SCPDURL")?,
        }))
    };
    let mut refs = Vec::new();
    for s in &services {
        if let Some(r) = to_ref(s)? {
            refs.push(r);
        }
    }
    // Preference: WANIPConnection (highest version first), then WANPPPConnection.
    let rank = |r: &ServiceRef| match r.parsed {
        Some(ServiceType {
            kind: ServiceKind::WanIpConnection,
            version,
        }) => Some(100 + version),
        Some(ServiceType {
            kind: ServiceKind::WanPppConnection,
            version,
        }) => Some(version),
        _ => None,
    };
    let wan_connection = refs
        .iter()
        .filter_map(|r| rank(r).map(|k| (k, r)))
        .max_by_key(|(k, _)| *k)
        .map(|(_, r)| r.clone())
        .ok_or(DescriptionError::NoWanConnection)?;
    let common_interface = refs
        .iter()
        .find(|r| {
            r.parsed
                .is_some_and(|p| p.kind == ServiceKind::WanCommonInterfaceConfig)
        })
        .cloned();
    Ok(IgdServices {
        friendly_name: device.child_text("friendlyName").unwrap_or("").to_string(),
        udn: device.child_text("UDN").unwrap_or("").to_string(),
        wan_connection,
        common_interface,
    })
}

/// One action of a parsed SCPD.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScpdAction {
    /// Name.
    pub name: String,
    /// Arguments: (name, direction, relatedStateVariable).
    pub args: Vec<(String, Direction, String)>,
}

/// A parsed SCPD: its actions and state variable names with data types.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scpd {
    /// Actions in document order.
    pub actions: Vec<ScpdAction>,
    /// (name, dataType) of each state variable.
    pub vars: Vec<(String, String)>,
}

/// Parses a service description (UDA 1.1 §2.5).
pub fn parse_scpd(doc: &[u8]) -> Result<Scpd, DescriptionError> {
    let root = xml::parse(
        doc,
        Limits {
            max_bytes: 256 * 1024,
            ..Limits::default()
        },
    )?;
    if root.name != "scpd" {
        return Err(DescriptionError::NotDescription("service description"));
    }
    let actions = root
        .child("actionList")
        .map(|l| {
            l.children_named("action")
                .map(|a| ScpdAction {
                    name: a.child_text("name").unwrap_or("").to_string(),
                    args: a
                        .child("argumentList")
                        .map(|al| {
                            al.children_named("argument")
                                .map(|g| {
                                    let dir = if g.child_text("direction") == Some("out") {
                                        Direction::Out
                                    } else {
                                        Direction::In
                                    };
                                    (
                                        g.child_text("name").unwrap_or("").to_string(),
                                        dir,
                                        g.child_text("relatedStateVariable")
                                            .unwrap_or("")
                                            .to_string(),
                                    )
                                })
                                .collect()
                        })
                        .unwrap_or_default(),
                })
                .collect()
        })
        .unwrap_or_default();
    let vars = root
        .child("serviceStateTable")
        .map(|t| {
            t.children_named("stateVariable")
                .map(|v| {
                    (
                        v.child_text("name").unwrap_or("").to_string(),
                        v.child_text("dataType").unwrap_or("").to_string(),
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    Ok(Scpd { actions, vars })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_are_consistent() {
        for def in [
            &WANIP_CONNECTION,
            &WAN_COMMON_INTERFACE_CONFIG,
            &LAYER3_FORWARDING,
        ] {
            for a in def.actions {
                let mut seen_out = false;
                for arg in a.args {
                    let v = def.vars.iter().find(|v| v.name == arg.related);
                    let v = v.unwrap_or_else(|| panic!("{}: no variable {}", a.name, arg.related));
                    assert!(
                        v.since <= a.since,
                        "{} uses {} before it exists",
                        a.name,
                        v.name
                    );
                    // UDA 1.1 §2.5: all in-arguments before any out-argument
                    if arg.direction == Direction::Out {
                        seen_out = true;
                    } else {
                        assert!(!seen_out, "{}: in after out", a.name);
                    }
                }
            }
        }
    }

    #[test]
    fn v1_scpd_has_no_v2_actions() {
        let v1 = parse_scpd(scpd(&WANIP_CONNECTION, 1).as_bytes()).unwrap();
        assert!(v1.actions.iter().all(|a| a.name != "AddAnyPortMapping"));
        assert!(v1.vars.iter().all(|(n, _)| n != "SystemUpdateID"));
        let v2 = parse_scpd(scpd(&WANIP_CONNECTION, 2).as_bytes()).unwrap();
        assert_eq!(v2.actions.len(), WANIP_CONNECTION.actions.len());
    }

    fn location() -> HttpUrl {
        HttpUrl::parse("http://192.168.1.1:5000/rootDesc.xml").unwrap()
    }

    #[test]
    fn urlbase_and_relative_urls() {
        let doc = br#"<?xml version="1.0"?>
<root xmlns="urn:schemas-upnp-org:device-1-0">
 <URLBase>http://10.0.0.138:49152/</URLBase>
 <device><friendlyName>Old router</friendlyName><UDN>uuid:x</UDN>
  <deviceList><device><deviceList><device><serviceList>
   <service><serviceType>urn:schemas-upnp-org:service:WANPPPConnection:1</serviceType>
    <controlURL>upnp/control/WANPPPConn1</controlURL><eventSubURL>/evt/ppp</eventSubURL><SCPDURL>ppp.xml</SCPDURL></service>
  </serviceList></device></deviceList></device></deviceList>
 </device></root>"#;
        let s = find_igd_services(doc, &location()).unwrap();
        assert_eq!(
            s.wan_connection.service_type,
            "urn:schemas-upnp-org:service:WANPPPConnection:1"
        );
        assert_eq!(
            s.wan_connection.control_url.to_string(),
            "http://10.0.0.138:49152/upnp/control/WANPPPConn1"
        );
        assert_eq!(s.wan_connection.event_url.unwrap().path, "/evt/ppp");
        assert!(s.common_interface.is_none());
        assert_eq!(s.friendly_name, "Old router");
    }

    #[test]
    fn prefers_ip_connection_and_higher_version() {
        let doc = br#"<root xmlns="urn:schemas-upnp-org:device-1-0"><device><serviceList>
 <service><serviceType>urn:schemas-upnp-org:service:WANPPPConnection:1</serviceType><controlURL>/ppp</controlURL></service>
 <service><serviceType>urn:schemas-upnp-org:service:WANIPConnection:1</serviceType><controlURL>/ip1</controlURL></service>
 <service><serviceType>urn:schemas-upnp-org:service:WANIPConnection:2</serviceType><controlURL>/ip2</controlURL></service>
 </serviceList></device></root>"#;
        let s = find_igd_services(doc, &location()).unwrap();
        assert_eq!(s.wan_connection.control_url.path, "/ip2");
        let none = br#"<root xmlns="urn:schemas-upnp-org:device-1-0"><device/></root>"#;
        assert_eq!(
            find_igd_services(none, &location()),
            Err(DescriptionError::NoWanConnection)
        );
        assert!(find_igd_services(b"<scpd/>", &location()).is_err());
        let bad_base = br#"<root><URLBase>ftp://x/</URLBase><device/></root>"#;
        assert!(matches!(
            find_igd_services(bad_base, &location()),
            Err(DescriptionError::BadUrl(_))
        ));
    }
}
