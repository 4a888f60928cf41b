//! Typed IGD actions: WANIPConnection:1 and :2, WANCommonInterfaceConfig:1,
//! Layer3Forwarding:1, and QueryStateVariable.
//!
//! Every action is one row of [`actions`] (the IGD action table): its variant, wire name,
//! version, arguments and reply shape. The rest of this module is derived from those rows:
//! - [`codec`]: in-arguments, server side ([`parse_action`]) and client side
//!   ([`Action::to_request`]);
//! - [`reply`]: out-arguments ([`Reply`]);
//! - [`listing`]: the `PortMappingList` document of GetListOfPortMappings;
//! - the SCPDs' action lists ([`crate::description::scpd`]).
//!
//! Server side: [`parse_action`] turns a generic [`crate::soap::ActionRequest`] into an [`Action`] with typed,
//! validated arguments, or the UPnP error the spec prescribes for it (402 for a missing or
//! ill-typed argument, 716/732 for wildcard ports, 401 for an action the service does not have);
//! [`Reply::to_response`] turns the result into an [`crate::soap::ActionResponse`].
//!
//! Client side (the camera node): [`Action::to_request`] builds the request, and
//! [`Action::parse_reply`] reads the response into the typed [`Reply`] for that action.
//!
//! Argument syntax follows UDA 1.1 §2.5 (data types: `boolean` is `0|1|true|false|yes|no`,
//! `ui2`/`ui4` are unsigned decimals) and WANIPConnection:2 §2.2 (state variables):
//! `NewRemoteHost` empty (or `*`, as several clients send) is the wildcard; `NewProtocol` is
//! `TCP` or `UDP` (accepted in any case); an empty `NewInternalClient` means the caller (issue 4).

use std::fmt;
use std::net::Ipv4Addr;
use std::str::FromStr;

use crate::upnp_error::UpnpError;

pub mod actions;
pub mod codec;
pub mod listing;
pub mod reply;
#[cfg(test)]
mod tests;

pub use actions::{Action, ActionDef, ArgDef, Direction, ReplyKind};
pub use codec::{Addressed, has_action, parse_action};
pub use listing::{emit_port_listing, parse_port_listing};
pub use reply::{LinkProperties, PortMappingEntry, Reply, ReplyError};

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

pub(crate) fn fmt_remote_host(h: Option<Ipv4Addr>) -> String {
    h.map(|a| a.to_string()).unwrap_or_default()
}

pub(crate) fn fmt_bool(b: bool) -> &'static str {
    if b { "1" } else { "0" }
}

// ---------------------------------------------------------------------------------------------
// Payloads of the actions (WANIPConnection:2 §2.4)

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
