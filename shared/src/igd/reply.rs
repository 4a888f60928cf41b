//! Out-arguments: the typed [`Reply`] of an action, written by the server and read by the
//! client, under the out-argument names of the action's row in [`super::actions`], in order.

use std::net::Ipv4Addr;
use std::str::FromStr;

use super::actions::{Action, ReplyKind};
use super::listing::{emit_port_listing, parse_port_listing};
use super::{Protocol, fmt_bool, fmt_remote_host, parse_bool, parse_remote_host};
use crate::soap::{ActionResponse, CONTROL_NS};
use crate::xml::XmlError;

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

/// Reads out-arguments by their position in the row.
struct Out<'a> {
    resp: &'a ActionResponse,
    names: Vec<&'static str>,
}

impl Out<'_> {
    fn name(&self, i: usize) -> &'static str {
        self.names.get(i).copied().unwrap_or("")
    }
    fn raw_named(&self, name: &'static str) -> Result<&str, ReplyError> {
        self.resp.arg(name).ok_or(ReplyError::Missing(name))
    }
    fn raw(&self, i: usize) -> Result<&str, ReplyError> {
        self.raw_named(self.name(i))
    }
    fn string(&self, i: usize) -> Result<String, ReplyError> {
        self.raw(i).map(|s| s.trim().to_string())
    }
    fn num_named<T: FromStr>(&self, name: &'static str) -> Result<T, ReplyError> {
        self.raw_named(name)?
            .trim()
            .parse()
            .map_err(|_| ReplyError::Invalid(name))
    }
    fn num<T: FromStr>(&self, i: usize) -> Result<T, ReplyError> {
        self.num_named(self.name(i))
    }
    fn boolean(&self, i: usize) -> Result<bool, ReplyError> {
        parse_bool(self.raw(i)?).ok_or(ReplyError::Invalid(self.name(i)))
    }
}

impl Reply {
    /// The out-argument values in spec order, formatted for the wire; the names are the
    /// action's row's.
    pub fn values(&self) -> Vec<String> {
        fn s(v: impl ToString) -> String {
            v.to_string()
        }
        match self {
            Reply::Empty => Vec::new(),
            Reply::ConnectionTypeInfo {
                connection_type,
                possible,
            } => vec![s(connection_type), s(possible)],
            Reply::StatusInfo {
                status,
                last_error,
                uptime,
            } => vec![s(status), s(last_error), s(uptime)],
            Reply::NatRsipStatus {
                rsip_available,
                nat_enabled,
            } => vec![s(fmt_bool(*rsip_available)), s(fmt_bool(*nat_enabled))],
            Reply::ExternalIpAddress(ip) => vec![s(ip)],
            Reply::Seconds(t) => vec![s(t)],
            Reply::GenericEntry(e) => vec![
                fmt_remote_host(e.remote_host),
                s(e.external_port),
                s(e.protocol),
                s(e.internal_port),
                s(e.internal_client),
                s(fmt_bool(e.enabled)),
                s(&e.description),
                s(e.lease_duration),
            ],
            Reply::SpecificEntry {
                internal_port,
                internal_client,
                enabled,
                description,
                lease_duration,
            } => vec![
                s(internal_port),
                s(internal_client),
                s(fmt_bool(*enabled)),
                s(description),
                s(lease_duration),
            ],
            Reply::ReservedPort(p) => vec![s(p)],
            Reply::PortListing(entries) => vec![emit_port_listing(entries)],
            Reply::LinkProperties(l) => vec![
                s(&l.wan_access_type),
                s(l.upstream_max_bit_rate),
                s(l.downstream_max_bit_rate),
                s(&l.physical_link_status),
            ],
            // ui4 counter: wraps (WANCommonInterfaceConfig:1 §2.2).
            Reply::Counter(c) => vec![s(c & u64::from(u32::MAX))],
            Reply::DefaultConnectionService(v) | Reply::StateVariable(v) => vec![s(v)],
        }
    }

    /// The response to `action` on `service_type` carrying this reply (server side).
    pub fn to_response(&self, action: &Action, service_type: &str) -> ActionResponse {
        let def = action.def();
        let args = def
            .outs()
            .zip(self.values())
            .map(|(k, v)| (k.to_string(), v))
            .collect();
        let service_type = match def.service {
            None => CONTROL_NS.to_string(),
            Some(_) => service_type.to_string(),
        };
        ActionResponse {
            service_type,
            action: action.name().to_string(),
            args,
        }
    }

    /// Reads the response to `action` (client side), by the shape its row names.
    pub(super) fn parse(action: &Action, resp: &ActionResponse) -> Result<Reply, ReplyError> {
        if resp.action != action.name() {
            return Err(ReplyError::WrongAction(resp.action.clone()));
        }
        let def = action.def();
        let o = Out {
            resp,
            names: def.outs().collect(),
        };
        Ok(match def.reply {
            ReplyKind::Empty => Reply::Empty,
            ReplyKind::ConnectionTypeInfo => Reply::ConnectionTypeInfo {
                connection_type: o.string(0)?,
                possible: o.string(1)?,
            },
            ReplyKind::StatusInfo => Reply::StatusInfo {
                status: o.string(0)?,
                last_error: o.string(1)?,
                uptime: o.num(2)?,
            },
            ReplyKind::NatRsipStatus => Reply::NatRsipStatus {
                rsip_available: o.boolean(0)?,
                nat_enabled: o.boolean(1)?,
            },
            ReplyKind::ExternalIpAddress => Reply::ExternalIpAddress(o.string(0)?),
            ReplyKind::Seconds => Reply::Seconds(o.num(0)?),
            ReplyKind::GenericEntry => Reply::GenericEntry(PortMappingEntry {
                remote_host: parse_remote_host(o.raw(0)?)
                    .map_err(|_| ReplyError::Invalid(o.name(0)))?,
                external_port: o.num(1)?,
                protocol: o
                    .raw(2)?
                    .parse()
                    .map_err(|_| ReplyError::Invalid(o.name(2)))?,
                internal_port: o.num(3)?,
                internal_client: o.num(4)?,
                enabled: o.boolean(5)?,
                description: o.raw(6)?.to_string(),
                lease_duration: o.num(7)?,
            }),
            ReplyKind::SpecificEntry => Reply::SpecificEntry {
                internal_port: o.num(0)?,
                internal_client: o.num(1)?,
                enabled: o.boolean(2)?,
                description: o.raw(3)?.to_string(),
                lease_duration: o.num(4)?,
            },
            // WANIPConnection:2 §2.4.16 names it NewReservedPort; accept NewExternalPort too,
            // the name miniupnpd 2.3.1's SCPD gives it.
            ReplyKind::ReservedPort => match o.num(0) {
                Err(ReplyError::Missing(_)) => Reply::ReservedPort(o.num_named("NewExternalPort")?),
                other => Reply::ReservedPort(other?),
            },
            ReplyKind::PortListing => Reply::PortListing(
                parse_port_listing(o.raw(0)?.as_bytes()).map_err(ReplyError::Listing)?,
            ),
            ReplyKind::LinkProperties => Reply::LinkProperties(LinkProperties {
                wan_access_type: o.string(0)?,
                upstream_max_bit_rate: o.num(1)?,
                downstream_max_bit_rate: o.num(2)?,
                physical_link_status: o.string(3)?,
            }),
            ReplyKind::Counter => Reply::Counter(o.num(0)?),
            ReplyKind::DefaultConnectionService => Reply::DefaultConnectionService(o.string(0)?),
            ReplyKind::StateVariable => Reply::StateVariable(o.raw(0)?.to_string()),
        })
    }
}

impl Action {
    /// Reads the response to this action (client side).
    pub fn parse_reply(&self, resp: &ActionResponse) -> Result<Reply, ReplyError> {
        Reply::parse(self, resp)
    }
}
