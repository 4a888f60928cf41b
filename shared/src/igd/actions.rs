//! The table of IGD actions: one row per action, from which everything else is derived.
//!
//! A row gives the [`Action`] variant and its typed in-arguments, the name on the wire, the
//! first service version that has it, the shape of its [`Reply`](super::Reply), and its
//! in- and out-arguments with their related state variables (UDA 1.1 §2.5). From the rows
//! come: the `Action` enum, [`Action::name`], [`Action::args`] (client side),
//! [`parse_action`](super::parse_action) with its version gate (server side), the reply codec
//! (positional out-argument names), and the `actionList` of every SCPD
//! ([`crate::description::scpd`]).
//!
//! Adding an action: one row here (with a payload type implementing
//! [`InArg`] if it takes a new kind of argument), and one handler in the
//! router's `dispatch` (router/src/upnp/core.rs), which the compiler asks for: the enum is
//! exhaustive.

use super::codec::{InArg, Reader, Writer};
use super::{AddPortMapping, MappingKey, PortRange, ServiceKind};
use crate::upnp_error::UpnpError;

/// Argument direction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// In-argument.
    In,
    /// Out-argument.
    Out,
}

/// One argument of an action (UDA 1.1 §2.5).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ArgDef {
    /// Name.
    pub name: &'static str,
    /// Direction.
    pub direction: Direction,
    /// The state variable that gives its type.
    pub related: &'static str,
}

/// The typed shape of an action's out-arguments: which [`Reply`](super::Reply) variant it
/// returns. The out-argument names come from the row, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplyKind {
    /// No out-arguments.
    Empty,
    /// `Reply::ConnectionTypeInfo`.
    ConnectionTypeInfo,
    /// `Reply::StatusInfo`.
    StatusInfo,
    /// `Reply::NatRsipStatus`.
    NatRsipStatus,
    /// `Reply::ExternalIpAddress`.
    ExternalIpAddress,
    /// `Reply::Seconds`.
    Seconds,
    /// `Reply::GenericEntry`.
    GenericEntry,
    /// `Reply::SpecificEntry`.
    SpecificEntry,
    /// `Reply::ReservedPort`.
    ReservedPort,
    /// `Reply::PortListing`.
    PortListing,
    /// `Reply::LinkProperties`.
    LinkProperties,
    /// `Reply::Counter`.
    Counter,
    /// `Reply::DefaultConnectionService`.
    DefaultConnectionService,
    /// `Reply::StateVariable`.
    StateVariable,
}

/// One action of a service; `since` is the first service version that has it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ActionDef {
    /// Name on the wire.
    pub name: &'static str,
    /// First version with this action.
    pub since: u32,
    /// The service; None for the control namespace (QueryStateVariable, UDA 1.0 §3.3.1).
    pub service: Option<ServiceKind>,
    /// Arguments, in-arguments first, in order.
    pub args: &'static [ArgDef],
    /// The reply's shape.
    pub reply: ReplyKind,
}

impl ActionDef {
    /// The in-argument names, in order.
    pub fn ins(&self) -> impl Iterator<Item = &'static str> + use<> {
        let args = self.args;
        args.iter()
            .filter(|a| a.direction == Direction::In)
            .map(|a| a.name)
    }

    /// The out-argument names, in order.
    pub fn outs(&self) -> impl Iterator<Item = &'static str> + use<> {
        let args = self.args;
        args.iter()
            .filter(|a| a.direction == Direction::Out)
            .map(|a| a.name)
    }
}

/// Declares the table: the `Action` enum, the per-service [`ActionDef`] slices, and the
/// glue between a variant and its row. Variants are unit, tuple `Name(binding: Type, ..)` or
/// struct `Name { field: Type, .. }`; every payload type is an [`InArg`] that reads and writes
/// the row's in-arguments in order.
macro_rules! igd_actions {
    ($(
        $(#[$gdoc:meta])*
        $group:ident = $svc:expr => {
            $(
                $(#[$doc:meta])*
                $var:ident
                $( ( $($f:ident : $t:ty),+ ) )?
                $( { $( $(#[$fdoc:meta])* $sf:ident : $st:ty ),+ } )?
                = $name:literal since $since:literal -> $reply:ident,
                in [ $($ia:ident : $ir:ident),* ], out [ $($oa:ident : $or:ident),* ];
            )*
        }
    )*) => {
        /// One row per action, named after its variant.
        #[allow(non_upper_case_globals)]
        mod rows {
            use super::*;
            $($(
                pub(super) const $var: ActionDef = ActionDef {
                    name: $name,
                    since: $since,
                    service: $svc,
                    args: &[
                        $(ArgDef { name: stringify!($ia), direction: Direction::In, related: stringify!($ir) },)*
                        $(ArgDef { name: stringify!($oa), direction: Direction::Out, related: stringify!($or) },)*
                    ],
                    reply: ReplyKind::$reply,
                };
            )*)*
        }

        $(
            $(#[$gdoc])*
            pub const $group: &[ActionDef] = &[$( rows::$var, )*];
        )*

        /// One action with typed in-arguments. Exhaustive on purpose: a new row makes every
        /// server-side `match` (the router's dispatch) name its handler.
        #[derive(Debug, Clone, PartialEq, Eq)]
        pub enum Action {
            $($(
                $(#[$doc])*
                $var $( ( $($t),+ ) )? $( { $( $(#[$fdoc])* $sf: $st ),+ } )?,
            )*)*
        }

        impl Action {
            /// The action name on the wire.
            pub fn name(&self) -> &'static str {
                self.def().name
            }

            /// This action's row in the table.
            pub fn def(&self) -> &'static ActionDef {
                match self {
                    $($( Action::$var { .. } => &rows::$var, )*)*
                }
            }

            /// Writes the in-arguments through `w`, in the row's order.
            pub(super) fn write_ins(&self, w: &mut Writer) {
                match self {
                    $($(
                        Action::$var $( ( $($f),+ ) )? $( { $($sf),+ } )? => {
                            $( $( InArg::write($f, w); )+ )?
                            $( $( InArg::write($sf, w); )+ )?
                        }
                    )*)*
                }
            }

            /// Builds the action of the row `name` from its in-arguments (server side); None
            /// when no row has that name.
            pub(super) fn read(name: &str, r: &mut Reader<'_>) -> Result<Option<Action>, UpnpError> {
                Ok(Some(match name {
                    $($(
                        $name => Action::$var
                            $( ( $( <$t as InArg>::read(r)? ),+ ) )?
                            $( { $( $sf: <$st as InArg>::read(r)? ),+ } )?,
                    )*)*
                    _ => return Ok(None),
                }))
            }
        }
    };
}

igd_actions! {
    /// WANIPConnection:1/:2 (WANIPConnection:2 §2.4, state variables §2.2).
    WANIP_ACTIONS = Some(ServiceKind::WanIpConnection) => {
        /// §2.4.1.
        SetConnectionType {
            /// `NewConnectionType`.
            connection_type: String
        } = "SetConnectionType" since 1 -> Empty,
            in [NewConnectionType: ConnectionType], out [];
        /// §2.4.2.
        GetConnectionTypeInfo = "GetConnectionTypeInfo" since 1 -> ConnectionTypeInfo,
            in [], out [NewConnectionType: ConnectionType,
                NewPossibleConnectionTypes: PossibleConnectionTypes];
        /// §2.4.3.
        RequestConnection = "RequestConnection" since 1 -> Empty, in [], out [];
        /// §2.4.4.
        RequestTermination = "RequestTermination" since 1 -> Empty, in [], out [];
        /// §2.4.5.
        ForceTermination = "ForceTermination" since 1 -> Empty, in [], out [];
        /// §2.4.6.
        SetAutoDisconnectTime(t: u32) = "SetAutoDisconnectTime" since 1 -> Empty,
            in [NewAutoDisconnectTime: AutoDisconnectTime], out [];
        /// §2.4.7.
        SetIdleDisconnectTime(t: u32) = "SetIdleDisconnectTime" since 1 -> Empty,
            in [NewIdleDisconnectTime: IdleDisconnectTime], out [];
        /// §2.4.8.
        SetWarnDisconnectDelay(t: u32) = "SetWarnDisconnectDelay" since 1 -> Empty,
            in [NewWarnDisconnectDelay: WarnDisconnectDelay], out [];
        /// §2.4.9.
        GetStatusInfo = "GetStatusInfo" since 1 -> StatusInfo,
            in [], out [NewConnectionStatus: ConnectionStatus,
                NewLastConnectionError: LastConnectionError, NewUptime: Uptime];
        /// §2.4.10.
        GetAutoDisconnectTime = "GetAutoDisconnectTime" since 1 -> Seconds,
            in [], out [NewAutoDisconnectTime: AutoDisconnectTime];
        /// §2.4.11.
        GetIdleDisconnectTime = "GetIdleDisconnectTime" since 1 -> Seconds,
            in [], out [NewIdleDisconnectTime: IdleDisconnectTime];
        /// §2.4.12.
        GetWarnDisconnectDelay = "GetWarnDisconnectDelay" since 1 -> Seconds,
            in [], out [NewWarnDisconnectDelay: WarnDisconnectDelay];
        /// §2.4.13.
        GetNatRsipStatus = "GetNATRSIPStatus" since 1 -> NatRsipStatus,
            in [], out [NewRSIPAvailable: RSIPAvailable, NewNATEnabled: NATEnabled];
        /// §2.4.14: `NewPortMappingIndex`, 0-based.
        GetGenericPortMappingEntry(index: u32) = "GetGenericPortMappingEntry" since 1
            -> GenericEntry,
            in [NewPortMappingIndex: PortMappingNumberOfEntries],
            out [NewRemoteHost: RemoteHost, NewExternalPort: ExternalPort,
                NewProtocol: PortMappingProtocol, NewInternalPort: InternalPort,
                NewInternalClient: InternalClient, NewEnabled: PortMappingEnabled,
                NewPortMappingDescription: PortMappingDescription,
                NewLeaseDuration: PortMappingLeaseDuration];
        /// §2.4.15.
        GetSpecificPortMappingEntry(key: MappingKey) = "GetSpecificPortMappingEntry" since 1
            -> SpecificEntry,
            in [NewRemoteHost: RemoteHost, NewExternalPort: ExternalPort,
                NewProtocol: PortMappingProtocol],
            out [NewInternalPort: InternalPort, NewInternalClient: InternalClient,
                NewEnabled: PortMappingEnabled,
                NewPortMappingDescription: PortMappingDescription,
                NewLeaseDuration: PortMappingLeaseDuration];
        /// §2.4.16.
        AddPortMapping(m: AddPortMapping) = "AddPortMapping" since 1 -> Empty,
            in [NewRemoteHost: RemoteHost, NewExternalPort: ExternalPort,
                NewProtocol: PortMappingProtocol, NewInternalPort: InternalPort,
                NewInternalClient: InternalClient, NewEnabled: PortMappingEnabled,
                NewPortMappingDescription: PortMappingDescription,
                NewLeaseDuration: PortMappingLeaseDuration],
            out [];
        /// §2.4.17.
        DeletePortMapping(key: MappingKey) = "DeletePortMapping" since 1 -> Empty,
            in [NewRemoteHost: RemoteHost, NewExternalPort: ExternalPort,
                NewProtocol: PortMappingProtocol],
            out [];
        /// §2.4.18 (v2 only).
        DeletePortMappingRange(r: PortRange) = "DeletePortMappingRange" since 2 -> Empty,
            in [NewStartPort: ExternalPort, NewEndPort: ExternalPort,
                NewProtocol: PortMappingProtocol, NewManage: A_ARG_TYPE_Manage],
            out [];
        /// §2.4.19.
        GetExternalIpAddress = "GetExternalIPAddress" since 1 -> ExternalIpAddress,
            in [], out [NewExternalIPAddress: ExternalIPAddress];
        /// §2.4.20 (v2 only): range, and `NewNumberOfPorts` (0 = as many as allowed).
        GetListOfPortMappings(r: PortRange, n: u16) = "GetListOfPortMappings" since 2
            -> PortListing,
            in [NewStartPort: ExternalPort, NewEndPort: ExternalPort,
                NewProtocol: PortMappingProtocol, NewManage: A_ARG_TYPE_Manage,
                NewNumberOfPorts: PortMappingNumberOfEntries],
            out [NewPortListing: A_ARG_TYPE_PortListing];
        /// §2.4.21 (v2 only).
        AddAnyPortMapping(m: AddPortMapping) = "AddAnyPortMapping" since 2 -> ReservedPort,
            in [NewRemoteHost: RemoteHost, NewExternalPort: ExternalPort,
                NewProtocol: PortMappingProtocol, NewInternalPort: InternalPort,
                NewInternalClient: InternalClient, NewEnabled: PortMappingEnabled,
                NewPortMappingDescription: PortMappingDescription,
                NewLeaseDuration: PortMappingLeaseDuration],
            out [NewReservedPort: ExternalPort];
    }

    /// WANCommonInterfaceConfig:1 (§2.4), the actions we implement.
    WANCIC_ACTIONS = Some(ServiceKind::WanCommonInterfaceConfig) => {
        /// GetCommonLinkProperties.
        GetCommonLinkProperties = "GetCommonLinkProperties" since 1 -> LinkProperties,
            in [], out [NewWANAccessType: WANAccessType,
                NewLayer1UpstreamMaxBitRate: Layer1UpstreamMaxBitRate,
                NewLayer1DownstreamMaxBitRate: Layer1DownstreamMaxBitRate,
                NewPhysicalLinkStatus: PhysicalLinkStatus];
        /// GetTotalBytesSent.
        GetTotalBytesSent = "GetTotalBytesSent" since 1 -> Counter,
            in [], out [NewTotalBytesSent: TotalBytesSent];
        /// GetTotalBytesReceived.
        GetTotalBytesReceived = "GetTotalBytesReceived" since 1 -> Counter,
            in [], out [NewTotalBytesReceived: TotalBytesReceived];
        /// GetTotalPacketsSent.
        GetTotalPacketsSent = "GetTotalPacketsSent" since 1 -> Counter,
            in [], out [NewTotalPacketsSent: TotalPacketsSent];
        /// GetTotalPacketsReceived.
        GetTotalPacketsReceived = "GetTotalPacketsReceived" since 1 -> Counter,
            in [], out [NewTotalPacketsReceived: TotalPacketsReceived];
    }

    /// Layer3Forwarding:1 (§2.4).
    L3F_ACTIONS = Some(ServiceKind::Layer3Forwarding) => {
        /// SetDefaultConnectionService.
        SetDefaultConnectionService(s: String) = "SetDefaultConnectionService" since 1 -> Empty,
            in [NewDefaultConnectionService: DefaultConnectionService], out [];
        /// GetDefaultConnectionService.
        GetDefaultConnectionService = "GetDefaultConnectionService" since 1
            -> DefaultConnectionService,
            in [], out [NewDefaultConnectionService: DefaultConnectionService];
    }

    /// The control namespace (UDA 1.0 §3.3.1, deprecated in UDA 1.1, still sent by old
    /// clients): addressed to whatever service owns the control URL.
    CONTROL_ACTIONS = None => {
        /// QueryStateVariable(varName).
        QueryStateVariable(name: String) = "QueryStateVariable" since 1 -> StateVariable,
            in [varName: A_ARG_TYPE_VarName], out [return: A_ARG_TYPE_VarValue];
    }
}

/// Every row, services first, then the control namespace.
pub fn all() -> impl Iterator<Item = &'static ActionDef> {
    WANIP_ACTIONS
        .iter()
        .chain(WANCIC_ACTIONS)
        .chain(L3F_ACTIONS)
        .chain(CONTROL_ACTIONS)
}

/// The row of `action` at `service` (None = the control namespace), whatever its version.
pub fn find(service: Option<ServiceKind>, action: &str) -> Option<&'static ActionDef> {
    all().find(|d| d.service == service && d.name == action)
}

impl Action {
    /// Cross-argument rules checked once every argument has been read (WANIPConnection:2
    /// §2.4.16, §2.4.21).
    pub(super) fn check(&self, version: u32) -> Result<(), UpnpError> {
        let (m, any) = match self {
            Action::AddPortMapping(m) => (m, false),
            Action::AddAnyPortMapping(m) => (m, true),
            _ => return Ok(()),
        };
        // ExternalPort 0 is the wildcard. WANIPConnection:2 §2.4.16 forbids it in
        // AddPortMapping (716); WANIPConnection:1 allowed it on paper, but no gateway can
        // forward "every port" to one internal port, so we refuse it the same way, as
        // miniupnpd does. AddAnyPortMapping takes 0 as "any port".
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
        Ok(())
    }
}
