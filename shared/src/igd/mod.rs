//! Typed IGD actions: WANIPConnection:1 and :2, WANCommonInterfaceConfig:1,
//! Layer3Forwarding:1, and QueryStateVariable.
//!
//! Server side: [`parse_action`] turns a generic [`ActionRequest`] into an [`Action`] with typed,
//! validated arguments, or the UPnP error the spec prescribes for it (402 for a missing or
//! ill-typed argument, 716/732 for wildcard ports, 401 for an action the service does not have);
//! [`Reply::to_response`] turns the result into an [`ActionResponse`].
//!
//! Client side (the camera node): [`Action::to_request`] builds the request, and
//! [`Action::parse_reply`] reads the response into the typed [`Reply`] for that action.
//!
//! Argument syntax follows UDA 1.1 §2.5 (data types: `boolean` is `0|1|true|false|yes|no`,
//! `ui2`/`ui4` are unsigned decimals) and WANIPConnection:2 §2.2 (state variables):
//! `NewRemoteHost` empty (or `*`, as several clients send) is the wildcard; `NewProtocol` is
//! `TCP` or `UDP` (accepted in any case); an empty `NewInternalClient` means the caller (issue 4).

use std::fmt;
use std::fmt::Write as _;
use std::net::Ipv4Addr;
use std::str::FromStr;

use crate::soap::{ActionRequest, ActionResponse, CONTROL_NS};
use crate::upnp_error::UpnpError;
use crate::xml::{self, Limits, XmlError, escape};

/// Service type URN prefix of the UPnP forum.
pub const SERVICE_PREFIX: &str = "urn:schemas-upnp-org:service:";
/// Namespace of the `PortMappingList` document (WANIPConnection:2 §2.2.21, schema
/// `WANIPConnection-v2.xsd`).
pub const PORT_LISTING_NS: &str = "urn:schemas-upnp-org:gw:WANIPConnection";
/// Most entries GetListOfPortMappings returns in one call (our cap; WANIPConnection:2 §2.4.20
/// lets the gateway bound the list).
pub const MAX_LISTING: usize = 1000;
/// The lease a v2 gateway gives when asked for 0 / the upper bound of a v2 lease, seconds
/// (WANIPConnection:2 §2.2.9, `PortMappingLeaseDuration` allowed range 0..604800).
pub const V2_MAX_LEASE: u32 = 604_800;

/// The services an IGD offers (IGD:2 §2.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ServiceKind {
    /// `WANIPConnection`.
    WanIpConnection,
    /// `WANPPPConnection` (client side only: some real routers offer it instead).
    WanPppConnection,
    /// `WANCommonInterfaceConfig`.
    WanCommonInterfaceConfig,
    /// `Layer3Forwarding`.
    Layer3Forwarding,
}

impl ServiceKind {
    /// The type name inside the URN.
    pub const fn name(self) -> &'static str {
        match self {
            ServiceKind::WanIpConnection => "WANIPConnection",
            ServiceKind::WanPppConnection => "WANPPPConnection",
            ServiceKind::WanCommonInterfaceConfig => "WANCommonInterfaceConfig",
            ServiceKind::Layer3Forwarding => "Layer3Forwarding",
        }
    }
}

/// A service type with its version, e.g. WANIPConnection:2.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ServiceType {
    /// Which service.
    pub kind: ServiceKind,
    /// Its version.
    pub version: u32,
}

impl ServiceType {
    /// WANIPConnection:1.
    pub const WANIP1: ServiceType = ServiceType {
        kind: ServiceKind::WanIpConnection,
        version: 1,
    };
    /// WANIPConnection:2.
    pub const WANIP2: ServiceType = ServiceType {
        kind: ServiceKind::WanIpConnection,
        version: 2,
    };
    /// WANCommonInterfaceConfig:1.
    pub const WANCIC1: ServiceType = ServiceType {
        kind: ServiceKind::WanCommonInterfaceConfig,
        version: 1,
    };
    /// Layer3Forwarding:1.
    pub const L3F1: ServiceType = ServiceType {
        kind: ServiceKind::Layer3Forwarding,
        version: 1,
    };

    /// Parses `urn:schemas-upnp-org:service:Name:v`.
    pub fn parse(urn: &str) -> Option<ServiceType> {
        let rest = urn.trim().strip_prefix(SERVICE_PREFIX)?;
        let (name, version) = rest.split_once(':')?;
        let version = version.parse().ok().filter(|v| *v > 0)?;
        let kind = [
            ServiceKind::WanIpConnection,
            ServiceKind::WanPppConnection,
            ServiceKind::WanCommonInterfaceConfig,
            ServiceKind::Layer3Forwarding,
        ]
        .into_iter()
        .find(|k| k.name() == name)?;
        Some(ServiceType { kind, version })
    }

    /// The URN.
    pub fn urn(&self) -> String {
        format!("{SERVICE_PREFIX}{}:{}", self.kind.name(), self.version)
    }
}

/// The transport protocol of a mapping (`NewProtocol`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Protocol {
    /// TCP.
    Tcp,
    /// UDP.
    Udp,
}

impl Protocol {
    /// `TCP` or `UDP`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Protocol::Tcp => "TCP",
            Protocol::Udp => "UDP",
        }
    }
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Protocol {
    type Err = UpnpError;
    fn from_str(s: &str) -> Result<Protocol, UpnpError> {
        let s = s.trim();
        if s.eq_ignore_ascii_case("TCP") {
            Ok(Protocol::Tcp)
        } else if s.eq_ignore_ascii_case("UDP") {
            Ok(Protocol::Udp)
        } else {
            Err(UpnpError::InvalidArgs)
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Argument syntax

/// Parses a UPnP `boolean` (UDA 1.1 §2.5).
pub fn parse_bool(s: &str) -> Option<bool> {
    match s.trim() {
        "1" => Some(true),
        "0" => Some(false),
        v if v.eq_ignore_ascii_case("true") || v.eq_ignore_ascii_case("yes") => Some(true),
        v if v.eq_ignore_ascii_case("false") || v.eq_ignore_ascii_case("no") => Some(false),
        _ => None,
    }
}

/// `NewRemoteHost`: empty or `*` is the wildcard (None).
pub fn parse_remote_host(s: &str) -> Result<Option<Ipv4Addr>, UpnpError> {
    let s = s.trim();
    if s.is_empty() || s == "*" {
        return Ok(None);
    }
    s.parse().map(Some).map_err(|_| UpnpError::InvalidArgs)
}

fn fmt_remote_host(h: Option<Ipv4Addr>) -> String {
    h.map(|a| a.to_string()).unwrap_or_default()
}

fn fmt_bool(b: bool) -> &'static str {
    if b { "1" } else { "0" }
}

struct Args<'a>(&'a ActionRequest);

impl Args<'_> {
    fn raw(&self, name: &str) -> Result<&str, UpnpError> {
        self.0.arg(name).ok_or(UpnpError::InvalidArgs)
    }
    fn string(&self, name: &str) -> Result<String, UpnpError> {
        self.raw(name).map(str::to_string)
    }
    fn num<T: FromStr>(&self, name: &str) -> Result<T, UpnpError> {
        self.raw(name)?
            .trim()
            .parse()
            .map_err(|_| UpnpError::InvalidArgs)
    }
    fn boolean(&self, name: &str) -> Result<bool, UpnpError> {
        parse_bool(self.raw(name)?).ok_or(UpnpError::InvalidArgs)
    }
    fn protocol(&self, name: &str) -> Result<Protocol, UpnpError> {
        self.raw(name)?.parse()
    }
    fn remote_host(&self) -> Result<Option<Ipv4Addr>, UpnpError> {
        // Some v1 clients leave NewRemoteHost out altogether; treat that as the wildcard.
        match self.0.arg("NewRemoteHost") {
            None => Ok(None),
            Some(v) => parse_remote_host(v),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Actions

/// The key of a mapping: (remote host, external port, protocol) (WANIPConnection:2 §2.4.15).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct MappingKey {
    /// `NewRemoteHost`; None = wildcard.
    pub remote_host: Option<Ipv4Addr>,
    /// `NewExternalPort`.
    pub external_port: u16,
    /// `NewProtocol`.
    pub protocol: Protocol,
}

/// The in-arguments of AddPortMapping and AddAnyPortMapping (WANIPConnection:2 §2.4.16, §2.4.17).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AddPortMapping {
    /// `NewRemoteHost`; None = wildcard.
    pub remote_host: Option<Ipv4Addr>,
    /// `NewExternalPort` (for AddAnyPortMapping: the preferred port, 0 = any).
    pub external_port: u16,
    /// `NewProtocol`.
    pub protocol: Protocol,
    /// `NewInternalPort`.
    pub internal_port: u16,
    /// `NewInternalClient`; None = empty = the caller.
    pub internal_client: Option<Ipv4Addr>,
    /// `NewEnabled`.
    pub enabled: bool,
    /// `NewPortMappingDescription`.
    pub description: String,
    /// `NewLeaseDuration`, seconds, 0 as sent (its meaning depends on the version).
    pub lease_duration: u32,
}

/// A port range with a protocol and the manage flag (WANIPConnection:2 §2.4.18, §2.4.20).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PortRange {
    /// `NewStartPort`.
    pub start_port: u16,
    /// `NewEndPort`.
    pub end_port: u16,
    /// `NewProtocol`.
    pub protocol: Protocol,
    /// `NewManage`: act on every client's mappings (needs authorisation) rather than the
    /// caller's own.
    pub manage: bool,
}

/// One action with typed in-arguments.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Action {
    // WANIPConnection:1/:2 (WANIPConnection:2 §2.4)
    /// §2.4.1.
    SetConnectionType {
        /// `NewConnectionType`.
        connection_type: String,
    },
    /// §2.4.2.
    GetConnectionTypeInfo,
    /// §2.4.3.
    RequestConnection,
    /// §2.4.4.
    RequestTermination,
    /// §2.4.5.
    ForceTermination,
    /// §2.4.6.
    SetAutoDisconnectTime(u32),
    /// §2.4.7.
    SetIdleDisconnectTime(u32),
    /// §2.4.8.
    SetWarnDisconnectDelay(u32),
    /// §2.4.9.
    GetStatusInfo,
    /// §2.4.10.
    GetAutoDisconnectTime,
    /// §2.4.11.
    GetIdleDisconnectTime,
    /// §2.4.12.
    GetWarnDisconnectDelay,
    /// §2.4.13.
    GetNatRsipStatus,
    /// §2.4.14: `NewPortMappingIndex`, 0-based.
    GetGenericPortMappingEntry(u32),
    /// §2.4.15.
    GetSpecificPortMappingEntry(MappingKey),
    /// §2.4.16.
    AddPortMapping(AddPortMapping),
    /// §2.4.17.
    DeletePortMapping(MappingKey),
    /// §2.4.18 (v2 only).
    DeletePortMappingRange(PortRange),
    /// §2.4.19.
    GetExternalIpAddress,
    /// §2.4.20 (v2 only): range, and `NewNumberOfPorts` (0 = as many as allowed).
    GetListOfPortMappings(PortRange, u16),
    /// §2.4.21 (v2 only).
    AddAnyPortMapping(AddPortMapping),
    // WANCommonInterfaceConfig:1 §2.4
    /// GetCommonLinkProperties.
    GetCommonLinkProperties,
    /// GetTotalBytesSent.
    GetTotalBytesSent,
    /// GetTotalBytesReceived.
    GetTotalBytesReceived,
    /// GetTotalPacketsSent.
    GetTotalPacketsSent,
    /// GetTotalPacketsReceived.
    GetTotalPacketsReceived,
    // Layer3Forwarding:1 §2.4
    /// SetDefaultConnectionService.
    SetDefaultConnectionService(String),
    /// GetDefaultConnectionService.
    GetDefaultConnectionService,
    // UDA 1.0 §3.3.1 (deprecated in UDA 1.1, still sent by old clients)
    /// QueryStateVariable(varName).
    QueryStateVariable(String),
}

impl Action {
    /// The action name on the wire.
    pub fn name(&self) -> &'static str {
        use Action::*;
        match self {
            SetConnectionType { .. } => "SetConnectionType",
            GetConnectionTypeInfo => "GetConnectionTypeInfo",
            RequestConnection => "RequestConnection",
            RequestTermination => "RequestTermination",
            ForceTermination => "ForceTermination",
            SetAutoDisconnectTime(_) => "SetAutoDisconnectTime",
            SetIdleDisconnectTime(_) => "SetIdleDisconnectTime",
            SetWarnDisconnectDelay(_) => "SetWarnDisconnectDelay",
            GetStatusInfo => "GetStatusInfo",
            GetAutoDisconnectTime => "GetAutoDisconnectTime",
            GetIdleDisconnectTime => "GetIdleDisconnectTime",
            GetWarnDisconnectDelay => "GetWarnDisconnectDelay",
            GetNatRsipStatus => "GetNATRSIPStatus",
            GetGenericPortMappingEntry(_) => "GetGenericPortMappingEntry",
            GetSpecificPortMappingEntry(_) => "GetSpecificPortMappingEntry",
            AddPortMapping(_) => "AddPortMapping",
            DeletePortMapping(_) => "DeletePortMapping",
            DeletePortMappingRange(_) => "DeletePortMappingRange",
            GetExternalIpAddress => "GetExternalIPAddress",
            GetListOfPortMappings(..) => "GetListOfPortMappings",
            AddAnyPortMapping(_) => "AddAnyPortMapping",
            GetCommonLinkProperties => "GetCommonLinkProperties",
            GetTotalBytesSent => "GetTotalBytesSent",
            GetTotalBytesReceived => "GetTotalBytesReceived",
            GetTotalPacketsSent => "GetTotalPacketsSent",
            GetTotalPacketsReceived => "GetTotalPacketsReceived",
            SetDefaultConnectionService(_) => "SetDefaultConnectionService",
            GetDefaultConnectionService => "GetDefaultConnectionService",
            QueryStateVariable(_) => "QueryStateVariable",
        }
    }

    /// The in-arguments in spec order, formatted for the wire.
    pub fn args(&self) -> Vec<(String, String)> {
        use Action::*;
        fn a(k: &str, v: impl ToString) -> (String, String) {
            (k.to_string(), v.to_string())
        }
        fn key(k: &MappingKey) -> Vec<(String, String)> {
            vec![
                a("NewRemoteHost", fmt_remote_host(k.remote_host)),
                a("NewExternalPort", k.external_port),
                a("NewProtocol", k.protocol),
            ]
        }
        fn range(r: &PortRange) -> Vec<(String, String)> {
            vec![
                a("NewStartPort", r.start_port),
                a("NewEndPort", r.end_port),
                a("NewProtocol", r.protocol),
                a("NewManage", fmt_bool(r.manage)),
            ]
        }
        match self {
            SetConnectionType { connection_type } => vec![a("NewConnectionType", connection_type)],
            SetAutoDisconnectTime(t) => vec![a("NewAutoDisconnectTime", t)],
            SetIdleDisconnectTime(t) => vec![a("NewIdleDisconnectTime", t)],
            SetWarnDisconnectDelay(t) => vec![a("NewWarnDisconnectDelay", t)],
            GetGenericPortMappingEntry(i) => vec![a("NewPortMappingIndex", i)],
            GetSpecificPortMappingEntry(k) | DeletePortMapping(k) => key(k),
            AddPortMapping(m) | AddAnyPortMapping(m) => vec![
                a("NewRemoteHost", fmt_remote_host(m.remote_host)),
                a("NewExternalPort", m.external_port),
                a("NewProtocol", m.protocol),
                a("NewInternalPort", m.internal_port),
                a(
                    "NewInternalClient",
                    m.internal_client.map(|c| c.to_string()).unwrap_or_default(),
                ),
                a("NewEnabled", fmt_bool(m.enabled)),
                a("NewPortMappingDescription", &m.description),
                a("NewLeaseDuration", m.lease_duration),
            ],
            DeletePortMappingRange(r) => range(r),
            GetListOfPortMappings(r, n) => {
                let mut v = range(r);
                v.push(a("NewNumberOfPorts", n));
                v
            }
            SetDefaultConnectionService(s) => vec![a("NewDefaultConnectionService", s)],
            QueryStateVariable(v) => vec![a("varName", v)],
            _ => Vec::new(),
        }
    }

    /// Builds the request for a service (client side). `service_type` is the URN the router
    /// announced (e.g. WANPPPConnection:1 on some routers); QueryStateVariable always uses the
    /// control namespace (UDA 1.0 §3.3.1).
    pub fn to_request(&self, service_type: &str) -> ActionRequest {
        let service_type = match self {
            Action::QueryStateVariable(_) => CONTROL_NS.to_string(),
            _ => service_type.to_string(),
        };
        ActionRequest {
            service_type,
            action: self.name().to_string(),
            args: self.args(),
        }
    }

    /// Reads the response to this action (client side).
    pub fn parse_reply(&self, resp: &ActionResponse) -> Result<Reply, ReplyError> {
        Reply::parse(self, resp)
    }
}

/// Which service a parsed request addressed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Addressed {
    /// A service by type and version.
    Service(ServiceType),
    /// The control namespace (QueryStateVariable): the service is the one at the control URL.
    Control,
}

fn add_args(args: &Args<'_>, version: u32, any: bool) -> Result<AddPortMapping, UpnpError> {
    let m = AddPortMapping {
        remote_host: args.remote_host()?,
        external_port: args.num("NewExternalPort")?,
        protocol: args.protocol("NewProtocol")?,
        internal_port: args.num("NewInternalPort")?,
        internal_client: match args.raw("NewInternalClient")?.trim() {
            "" => None,
            c => Some(c.parse().map_err(|_| UpnpError::InvalidArgs)?),
        },
        enabled: args.boolean("NewEnabled")?,
        description: args.string("NewPortMappingDescription")?,
        lease_duration: args.num("NewLeaseDuration")?,
    };
    // ExternalPort 0 is the wildcard. WANIPConnection:2 §2.4.16 forbids it in AddPortMapping
    // (716); WANIPConnection:1 allowed it on paper, but no gateway can forward "every port" to
    // one internal port, so we refuse it the same way, as miniupnpd does. AddAnyPortMapping
    // takes 0 as "any port".
    if m.external_port == 0 && !any {
        return Err(UpnpError::WildCardNotPermittedInExtPort);
    }
    // InternalPort 0: v2 has its own code (732, §2.4.16); v1 had none, so 402.
    if m.internal_port == 0 {
        return Err(if version >= 2 {
            UpnpError::WildCardNotPermittedInIntPort
        } else {
            UpnpError::InvalidArgs
        });
    }
    Ok(m)
}

fn range_args(args: &Args<'_>) -> Result<PortRange, UpnpError> {
    let r = PortRange {
        start_port: args.num("NewStartPort")?,
        end_port: args.num("NewEndPort")?,
        protocol: args.protocol("NewProtocol")?,
        manage: args.boolean("NewManage")?,
    };
    // WANIPConnection:2 §2.4.18/§2.4.20: start above end is 733 InconsistentParameters.
    if r.start_port > r.end_port {
        return Err(UpnpError::InconsistentParameters);
    }
    Ok(r)
}

fn key_args(args: &Args<'_>) -> Result<MappingKey, UpnpError> {
    Ok(MappingKey {
        remote_host: args.remote_host()?,
        external_port: args.num("NewExternalPort")?,
        protocol: args.protocol("NewProtocol")?,
    })
}

/// Parses a request into its typed action (server side).
///
/// Errors: 401 for a service or action we do not know, or an action that the addressed
/// version does not have (the v2-only actions on WANIPConnection:1); 402 for missing or
/// ill-typed arguments; 716, 732, 733 as above.
pub fn parse_action(req: &ActionRequest) -> Result<(Addressed, Action), UpnpError> {
    let args = Args(req);
    if req.service_type == CONTROL_NS {
        if req.action != "QueryStateVariable" {
            return Err(UpnpError::InvalidAction);
        }
        return Ok((
            Addressed::Control,
            Action::QueryStateVariable(args.string("varName")?),
        ));
    }
    let st = ServiceType::parse(&req.service_type).ok_or(UpnpError::InvalidAction)?;
    let v = st.version;
    let action = match (st.kind, req.action.as_str()) {
        (ServiceKind::WanIpConnection, name) => match name {
            "SetConnectionType" => Action::SetConnectionType {
                connection_type: args.string("NewConnectionType")?,
            },
            "GetConnectionTypeInfo" => Action::GetConnectionTypeInfo,
            "RequestConnection" => Action::RequestConnection,
            "RequestTermination" => Action::RequestTermination,
            "ForceTermination" => Action::ForceTermination,
            "SetAutoDisconnectTime" => {
                Action::SetAutoDisconnectTime(args.num("NewAutoDisconnectTime")?)
            }
            "SetIdleDisconnectTime" => {
                Action::SetIdleDisconnectTime(args.num("NewIdleDisconnectTime")?)
            }
            "SetWarnDisconnectDelay" => {
                Action::SetWarnDisconnectDelay(args.num("NewWarnDisconnectDelay")?)
            }
            "GetStatusInfo" => Action::GetStatusInfo,
            "GetAutoDisconnectTime" => Action::GetAutoDisconnectTime,
            "GetIdleDisconnectTime" => Action::GetIdleDisconnectTime,
            "GetWarnDisconnectDelay" => Action::GetWarnDisconnectDelay,
            "GetNATRSIPStatus" => Action::GetNatRsipStatus,
            "GetGenericPortMappingEntry" => {
                Action::GetGenericPortMappingEntry(args.num("NewPortMappingIndex")?)
            }
            "GetSpecificPortMappingEntry" => Action::GetSpecificPortMappingEntry(key_args(&args)?),
            "AddPortMapping" => Action::AddPortMapping(add_args(&args, v, false)?),
            "DeletePortMapping" => Action::DeletePortMapping(key_args(&args)?),
            "GetExternalIPAddress" => Action::GetExternalIpAddress,
            "DeletePortMappingRange" if v >= 2 => {
                Action::DeletePortMappingRange(range_args(&args)?)
            }
            "GetListOfPortMappings" if v >= 2 => {
                Action::GetListOfPortMappings(range_args(&args)?, args.num("NewNumberOfPorts")?)
            }
            "AddAnyPortMapping" if v >= 2 => Action::AddAnyPortMapping(add_args(&args, v, true)?),
            _ => return Err(UpnpError::InvalidAction),
        },
        (ServiceKind::WanCommonInterfaceConfig, name) => match name {
            "GetCommonLinkProperties" => Action::GetCommonLinkProperties,
            "GetTotalBytesSent" => Action::GetTotalBytesSent,
            "GetTotalBytesReceived" => Action::GetTotalBytesReceived,
            "GetTotalPacketsSent" => Action::GetTotalPacketsSent,
            "GetTotalPacketsReceived" => Action::GetTotalPacketsReceived,
            _ => return Err(UpnpError::InvalidAction),
        },
        (ServiceKind::Layer3Forwarding, name) => match name {
            "GetDefaultConnectionService" => Action::GetDefaultConnectionService,
            "SetDefaultConnectionService" => {
                Action::SetDefaultConnectionService(args.string("NewDefaultConnectionService")?)
            }
            _ => return Err(UpnpError::InvalidAction),
        },
        (ServiceKind::WanPppConnection, _) => return Err(UpnpError::InvalidAction),
    };
    Ok((Addressed::Service(st), action))
}

/// Whether the service `service_type` has `action` (QueryStateVariable in the control
/// namespace included). For a body that cannot be read: when the SOAPACTION header names an
/// action the service has, the action is identified and what failed is its arguments, so the
/// answer is 402 Invalid Args, as miniupnpd gives; otherwise 401 Invalid Action (UDA 1.1
/// §3.2.2: 401 is "no action by that name at this service").
pub fn has_action(service_type: &str, action: &str) -> bool {
    let probe = ActionRequest {
        service_type: service_type.to_string(),
        action: action.to_string(),
        args: Vec::new(),
    };
    // Without arguments an action we have parses or fails on them (402, 716, ...); one we do
    // not have is 401.
    !matches!(parse_action(&probe), Err(UpnpError::InvalidAction))
}

// ---------------------------------------------------------------------------------------------
// Replies

/// One port mapping as GetGenericPortMappingEntry and GetListOfPortMappings report it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortMappingEntry {
    /// `NewRemoteHost`; None = wildcard.
    pub remote_host: Option<Ipv4Addr>,
    /// `NewExternalPort`.
    pub external_port: u16,
    /// `NewProtocol`.
    pub protocol: Protocol,
    /// `NewInternalPort`.
    pub internal_port: u16,
    /// `NewInternalClient`.
    pub internal_client: Ipv4Addr,
    /// `NewEnabled`.
    pub enabled: bool,
    /// `NewPortMappingDescription`.
    pub description: String,
    /// `NewLeaseDuration`: remaining seconds, 0 = permanent.
    pub lease_duration: u32,
}

/// WANCommonInterfaceConfig:1 GetCommonLinkProperties out-arguments.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkProperties {
    /// `NewWANAccessType`: `DSL`, `POTS`, `Cable`, `Ethernet`.
    pub wan_access_type: String,
    /// `NewLayer1UpstreamMaxBitRate`.
    pub upstream_max_bit_rate: u32,
    /// `NewLayer1DownstreamMaxBitRate`.
    pub downstream_max_bit_rate: u32,
    /// `NewPhysicalLinkStatus`: `Up`, `Down`, `Initializing`, `Unavailable`.
    pub physical_link_status: String,
}

/// The typed out-arguments of an action.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Reply {
    /// No out-arguments.
    Empty,
    /// GetConnectionTypeInfo: `NewConnectionType`, `NewPossibleConnectionTypes`.
    ConnectionTypeInfo {
        /// e.g. `IP_Routed`.
        connection_type: String,
        /// e.g. `IP_Routed`.
        possible: String,
    },
    /// GetStatusInfo: `NewConnectionStatus`, `NewLastConnectionError`, `NewUptime`.
    StatusInfo {
        /// `Connected`, `Disconnected`, ...
        status: String,
        /// `ERROR_NONE`, ...
        last_error: String,
        /// Seconds.
        uptime: u32,
    },
    /// GetNATRSIPStatus: `NewRSIPAvailable`, `NewNATEnabled`.
    NatRsipStatus {
        /// RSIP available.
        rsip_available: bool,
        /// NAT enabled.
        nat_enabled: bool,
    },
    /// GetExternalIPAddress: `NewExternalIPAddress` (may be empty when unknown).
    ExternalIpAddress(String),
    /// GetAutoDisconnectTime / GetIdleDisconnectTime / GetWarnDisconnectDelay: the one value.
    Seconds(u32),
    /// GetGenericPortMappingEntry.
    GenericEntry(PortMappingEntry),
    /// GetSpecificPortMappingEntry (the entry's key is the request's).
    SpecificEntry {
        /// `NewInternalPort`.
        internal_port: u16,
        /// `NewInternalClient`.
        internal_client: Ipv4Addr,
        /// `NewEnabled`.
        enabled: bool,
        /// `NewPortMappingDescription`.
        description: String,
        /// `NewLeaseDuration`.
        lease_duration: u32,
    },
    /// AddAnyPortMapping: `NewReservedPort`.
    ReservedPort(u16),
    /// GetListOfPortMappings: the decoded `NewPortListing`.
    PortListing(Vec<PortMappingEntry>),
    /// GetCommonLinkProperties.
    LinkProperties(LinkProperties),
    /// GetTotalBytesSent/Received, GetTotalPacketsSent/Received: a `ui4` counter on the wire
    /// (WANCommonInterfaceConfig:1 §2.2), emitted modulo 2^32 as the counter wraps.
    Counter(u64),
    /// GetDefaultConnectionService: `NewDefaultConnectionService`.
    DefaultConnectionService(String),
    /// QueryStateVariable: `return`.
    StateVariable(String),
}

/// Why a response could not be read into the reply an action expects (client side).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReplyError {
    /// The response is for another action.
    #[error("response is for {0}, not the action sent")]
    WrongAction(String),
    /// An out-argument is missing.
    #[error("missing out-argument {0}")]
    Missing(&'static str),
    /// An out-argument cannot be read.
    #[error("invalid out-argument {0}")]
    Invalid(&'static str),
    /// The port listing is not a valid PortMappingList.
    #[error("invalid port listing: {0}")]
    Listing(XmlError),
}

struct Out<'a>(&'a ActionResponse);

impl Out<'_> {
    fn raw(&self, name: &'static str) -> Result<&str, ReplyError> {
        self.0.arg(name).ok_or(ReplyError::Missing(name))
    }
    fn string(&self, name: &'static str) -> Result<String, ReplyError> {
        self.raw(name).map(|s| s.trim().to_string())
    }
    fn num<T: FromStr>(&self, name: &'static str) -> Result<T, ReplyError> {
        self.raw(name)?
            .trim()
            .parse()
            .map_err(|_| ReplyError::Invalid(name))
    }
    fn boolean(&self, name: &'static str) -> Result<bool, ReplyError> {
        parse_bool(self.raw(name)?).ok_or(ReplyError::Invalid(name))
    }
    fn ip(&self, name: &'static str) -> Result<Ipv4Addr, ReplyError> {
        self.num(name)
    }
}

impl Reply {
    /// The out-arguments in spec order, formatted for the wire.
    pub fn args(&self) -> Vec<(String, String)> {
        fn a(k: &str, v: impl ToString) -> (String, String) {
            (k.to_string(), v.to_string())
        }
        match self {
            Reply::Empty => Vec::new(),
            Reply::ConnectionTypeInfo {
                connection_type,
                possible,
            } => vec![
                a("NewConnectionType", connection_type),
                a("NewPossibleConnectionTypes", possible),
            ],
            Reply::StatusInfo {
                status,
                last_error,
                uptime,
            } => vec![
                a("NewConnectionStatus", status),
                a("NewLastConnectionError", last_error),
                a("NewUptime", uptime),
            ],
            Reply::NatRsipStatus {
                rsip_available,
                nat_enabled,
            } => vec![
                a("NewRSIPAvailable", fmt_bool(*rsip_available)),
                a("NewNATEnabled", fmt_bool(*nat_enabled)),
            ],
            Reply::ExternalIpAddress(ip) => vec![a("NewExternalIPAddress", ip)],
            Reply::Seconds(_) => Vec::new(), // named per action in `to_response`
            Reply::GenericEntry(e) => vec![
                a("NewRemoteHost", fmt_remote_host(e.remote_host)),
                a("NewExternalPort", e.external_port),
                a("NewProtocol", e.protocol),
                a("NewInternalPort", e.internal_port),
                a("NewInternalClient", e.internal_client),
                a("NewEnabled", fmt_bool(e.enabled)),
                a("NewPortMappingDescription", &e.description),
                a("NewLeaseDuration", e.lease_duration),
            ],
            Reply::SpecificEntry {
                internal_port,
                internal_client,
                enabled,
                description,
                lease_duration,
            } => vec![
                a("NewInternalPort", internal_port),
                a("NewInternalClient", internal_client),
                a("NewEnabled", fmt_bool(*enabled)),
                a("NewPortMappingDescription", description),
                a("NewLeaseDuration", lease_duration),
            ],
            Reply::ReservedPort(p) => vec![a("NewReservedPort", p)],
            Reply::PortListing(entries) => vec![a("NewPortListing", emit_port_listing(entries))],
            Reply::LinkProperties(l) => vec![
                a("NewWANAccessType", &l.wan_access_type),
                a("NewLayer1UpstreamMaxBitRate", l.upstream_max_bit_rate),
                a("NewLayer1DownstreamMaxBitRate", l.downstream_max_bit_rate),
                a("NewPhysicalLinkStatus", &l.physical_link_status),
            ],
            Reply::Counter(_) => Vec::new(), // named per action in `to_response`
            Reply::DefaultConnectionService(s) => vec![a("NewDefaultConnectionService", s)],
            Reply::StateVariable(v) => vec![a("return", v)],
        }
    }

    /// The response to `action` on `service_type` carrying this reply (server side).
    pub fn to_response(&self, action: &Action, service_type: &str) -> ActionResponse {
        let mut args = self.args();
        let single = match (self, action) {
            (Reply::Seconds(_) | Reply::Counter(_), act) => single_out_arg(act),
            _ => None,
        };
        if let Some(name) = single {
            let v = match self {
                Reply::Seconds(s) => s.to_string(),
                // ui4 counter: wraps (WANCommonInterfaceConfig:1 §2.2).
                Reply::Counter(c) => (c & u64::from(u32::MAX)).to_string(),
                _ => String::new(),
            };
            args = vec![(name.to_string(), v)];
        }
        let service_type = match action {
            Action::QueryStateVariable(_) => CONTROL_NS.to_string(),
            _ => service_type.to_string(),
        };
        ActionResponse {
            service_type,
            action: action.name().to_string(),
            args,
        }
    }

    fn parse(action: &Action, resp: &ActionResponse) -> Result<Reply, ReplyError> {
        if resp.action != action.name() {
            return Err(ReplyError::WrongAction(resp.action.clone()));
        }
        let o = Out(resp);
        use Action::*;
        Ok(match action {
            GetConnectionTypeInfo => Reply::ConnectionTypeInfo {
                connection_type: o.string("NewConnectionType")?,
                possible: o.string("NewPossibleConnectionTypes")?,
            },
            GetStatusInfo => Reply::StatusInfo {
                status: o.string("NewConnectionStatus")?,
                last_error: o.string("NewLastConnectionError")?,
                uptime: o.num("NewUptime")?,
            },
            GetNatRsipStatus => Reply::NatRsipStatus {
                rsip_available: o.boolean("NewRSIPAvailable")?,
                nat_enabled: o.boolean("NewNATEnabled")?,
            },
            GetExternalIpAddress => Reply::ExternalIpAddress(o.string("NewExternalIPAddress")?),
            GetAutoDisconnectTime | GetIdleDisconnectTime | GetWarnDisconnectDelay => {
                let name = single_out_arg(action).unwrap_or("");
                Reply::Seconds(o.num(name)?)
            }
            GetGenericPortMappingEntry(_) => Reply::GenericEntry(PortMappingEntry {
                remote_host: parse_remote_host(o.raw("NewRemoteHost")?)
                    .map_err(|_| ReplyError::Invalid("NewRemoteHost"))?,
                external_port: o.num("NewExternalPort")?,
                protocol: o
                    .raw("NewProtocol")?
                    .parse()
                    .map_err(|_| ReplyError::Invalid("NewProtocol"))?,
                internal_port: o.num("NewInternalPort")?,
                internal_client: o.ip("NewInternalClient")?,
                enabled: o.boolean("NewEnabled")?,
                description: o.raw("NewPortMappingDescription")?.to_string(),
                lease_duration: o.num("NewLeaseDuration")?,
            }),
            GetSpecificPortMappingEntry(_) => Reply::SpecificEntry {
                internal_port: o.num("NewInternalPort")?,
                internal_client: o.ip("NewInternalClient")?,
                enabled: o.boolean("NewEnabled")?,
                description: o.raw("NewPortMappingDescription")?.to_string(),
                lease_duration: o.num("NewLeaseDuration")?,
            },
            // WANIPConnection:2 §2.4.16 names it NewReservedPort; accept NewExternalPort too,
            // the name miniupnpd 2.3.1's SCPD gives it.
            AddAnyPortMapping(_) => match o.num("NewReservedPort") {
                Err(ReplyError::Missing(_)) => Reply::ReservedPort(o.num("NewExternalPort")?),
                other => Reply::ReservedPort(other?),
            },
            GetListOfPortMappings(..) => Reply::PortListing(
                parse_port_listing(o.raw("NewPortListing")?.as_bytes())
                    .map_err(ReplyError::Listing)?,
            ),
            GetCommonLinkProperties => Reply::LinkProperties(LinkProperties {
                wan_access_type: o.string("NewWANAccessType")?,
                upstream_max_bit_rate: o.num("NewLayer1UpstreamMaxBitRate")?,
                downstream_max_bit_rate: o.num("NewLayer1DownstreamMaxBitRate")?,
                physical_link_status: o.string("NewPhysicalLinkStatus")?,
            }),
            GetTotalBytesSent
            | GetTotalBytesReceived
            | GetTotalPacketsSent
            | GetTotalPacketsReceived => {
                let name = single_out_arg(action).unwrap_or("");
                Reply::Counter(o.num(name)?)
            }
            GetDefaultConnectionService => {
                Reply::DefaultConnectionService(o.string("NewDefaultConnectionService")?)
            }
            QueryStateVariable(_) => Reply::StateVariable(o.raw("return")?.to_string()),
            _ => Reply::Empty,
        })
    }
}

/// The out-argument name of the actions that return one number.
fn single_out_arg(action: &Action) -> Option<&'static str> {
    Some(match action {
        Action::GetAutoDisconnectTime => "NewAutoDisconnectTime",
        Action::GetIdleDisconnectTime => "NewIdleDisconnectTime",
        Action::GetWarnDisconnectDelay => "NewWarnDisconnectDelay",
        Action::GetTotalBytesSent => "NewTotalBytesSent",
        Action::GetTotalBytesReceived => "NewTotalBytesReceived",
        Action::GetTotalPacketsSent => "NewTotalPacketsSent",
        Action::GetTotalPacketsReceived => "NewTotalPacketsReceived",
        _ => return None,
    })
}

// ---------------------------------------------------------------------------------------------
// PortMappingList (WANIPConnection:2 §2.4.20, schema WANIPConnection-v2.xsd)

/// Writes the `p:PortMappingList` document that GetListOfPortMappings returns in
/// `NewPortListing` (the SOAP layer escapes it once more as the argument's text).
/// The element names are the schema's: `NewDescription` and `NewLeaseTime` (not the action
/// argument names).
pub fn emit_port_listing(entries: &[PortMappingEntry]) -> String {
    let mut s = String::with_capacity(128 + entries.len() * 360);
    let _ = write!(
        s,
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?><p:PortMappingList xmlns:p=\"{PORT_LISTING_NS}\" \
         xmlns:xsi=\"http://www.w3.org/2001/XMLSchema-instance\" xsi:schemaLocation=\"{PORT_LISTING_NS} \
         http://www.upnp.org/schemas/gw/WANIPConnection-v2.xsd\">"
    );
    for e in entries {
        let _ = write!(
            s,
            "<p:PortMappingEntry><p:NewRemoteHost>{}</p:NewRemoteHost>\
             <p:NewExternalPort>{}</p:NewExternalPort><p:NewProtocol>{}</p:NewProtocol>\
             <p:NewInternalPort>{}</p:NewInternalPort><p:NewInternalClient>{}</p:NewInternalClient>\
             <p:NewEnabled>{}</p:NewEnabled><p:NewDescription>{}</p:NewDescription>\
             <p:NewLeaseTime>{}</p:NewLeaseTime></p:PortMappingEntry>",
            fmt_remote_host(e.remote_host),
            e.external_port,
            e.protocol,
            e.internal_port,
            e.internal_client,
            fmt_bool(e.enabled),
            escape(&e.description),
            e.lease_duration,
        );
    }
    s.push_str("</p:PortMappingList>");
    s
}

/// Parses a `PortMappingList` document (client side). Entries that do not parse make the
/// whole listing invalid: a half-read table would mislead the representative's walk.
pub fn parse_port_listing(doc: &[u8]) -> Result<Vec<PortMappingEntry>, XmlError> {
    let limits = Limits {
        max_bytes: 1024 * 1024,
        max_depth: 8,
        max_elements: 16 * 1024,
    };
    let root = xml::parse(doc, limits)?;
    if root.name != "PortMappingList" {
        return Err(XmlError::Malformed("not a PortMappingList".into()));
    }
    let bad = |what: &str| XmlError::Malformed(format!("bad {what} in PortMappingEntry"));
    let mut out = Vec::new();
    for e in root.children_named("PortMappingEntry") {
        let t = |n: &str| e.child_text(n).ok_or_else(|| bad(n));
        out.push(PortMappingEntry {
            remote_host: parse_remote_host(t("NewRemoteHost").unwrap_or(""))
                .map_err(|_| bad("NewRemoteHost"))?,
            external_port: t("NewExternalPort")?
                .parse()
                .map_err(|_| bad("NewExternalPort"))?,
            protocol: t("NewProtocol")?.parse().map_err(|_| bad("NewProtocol"))?,
            internal_port: t("NewInternalPort")?
                .parse()
                .map_err(|_| bad("NewInternalPort"))?,
            internal_client: t("NewInternalClient")?
                .parse()
                .map_err(|_| bad("NewInternalClient"))?,
            enabled: parse_bool(t("NewEnabled")?).ok_or_else(|| bad("NewEnabled"))?,
            description: e
                .child("NewDescription")
                .map(|d| d.text.clone())
                .unwrap_or_default(),
            lease_duration: t("NewLeaseTime")?
                .parse()
                .map_err(|_| bad("NewLeaseTime"))?,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::soap::{self, ActionRequest};

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
        let Ok((_, Action::AddPortMapping(m))) = parse_action(&req(V2, "AddPortMapping", &star))
        else {
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
        let r =
            Reply::Counter(u64::from(u32::MAX) + 11).to_response(&Action::GetTotalBytesSent, "x");
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
}
