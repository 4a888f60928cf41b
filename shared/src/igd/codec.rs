//! In-arguments on the wire, both ways, driven by the rows of [`super::actions`].
//!
//! Server side: [`parse_action`] finds the row of the addressed service and action, applies its
//! version gate, and reads the payload types ([`InArg`]) from the row's in-argument names in
//! order. Client side: [`Action::args`] and [`Action::to_request`] write them the same way.
//!
//! Argument syntax follows UDA 1.1 §2.5 (data types: `boolean` is `0|1|true|false|yes|no`,
//! `ui2`/`ui4` are unsigned decimals) and WANIPConnection:2 §2.2 (state variables):
//! `NewRemoteHost` empty (or `*`, as several clients send) is the wildcard; `NewProtocol` is
//! `TCP` or `UDP` (accepted in any case); an empty `NewInternalClient` means the caller.

use std::net::Ipv4Addr;
use std::str::FromStr;

use super::actions::{self, Action, ArgDef, Direction};
use super::{
    AddPortMapping, MappingKey, PortRange, Protocol, ServiceType, fmt_bool, fmt_remote_host,
    parse_bool, parse_remote_host,
};
use crate::soap::{ActionRequest, CONTROL_NS};
use crate::upnp_error::UpnpError;

/// Reads a request's in-arguments in the order of a row.
#[derive(Debug)]
pub struct Reader<'a> {
    req: &'a ActionRequest,
    args: &'static [ArgDef],
    next: usize,
}

impl<'a> Reader<'a> {
    /// The next in-argument's name; "" past the row's end, which reads as missing (402).
    fn name(&mut self) -> &'static str {
        let arg = self
            .args
            .get(self.next)
            .filter(|a| a.direction == Direction::In);
        self.next += 1;
        arg.map_or("", |a| a.name)
    }
    fn raw(&mut self) -> Result<&'a str, UpnpError> {
        let name = self.name();
        self.req.arg(name).ok_or(UpnpError::InvalidArgs)
    }
    fn num<T: FromStr>(&mut self) -> Result<T, UpnpError> {
        self.raw()?
            .trim()
            .parse()
            .map_err(|_| UpnpError::InvalidArgs)
    }
    fn boolean(&mut self) -> Result<bool, UpnpError> {
        parse_bool(self.raw()?).ok_or(UpnpError::InvalidArgs)
    }
    fn protocol(&mut self) -> Result<Protocol, UpnpError> {
        self.raw()?.parse()
    }
    fn remote_host(&mut self) -> Result<Option<Ipv4Addr>, UpnpError> {
        // Some v1 clients leave NewRemoteHost out altogether; treat that as the wildcard.
        let name = self.name();
        match self.req.arg(name) {
            None => Ok(None),
            Some(v) => parse_remote_host(v),
        }
    }
}

/// Writes in-arguments under the names of a row, in order.
#[derive(Debug)]
pub struct Writer {
    names: std::vec::IntoIter<&'static str>,
    out: Vec<(String, String)>,
}

impl Writer {
    fn push(&mut self, value: impl ToString) {
        let name = self.names.next().unwrap_or("");
        self.out.push((name.to_string(), value.to_string()));
    }
}

/// A payload type of an [`Action`] variant: it spans one or more consecutive in-arguments.
pub trait InArg: Sized {
    /// Reads its in-arguments (server side): 402 for a missing or ill-typed one.
    fn read(r: &mut Reader<'_>) -> Result<Self, UpnpError>;
    /// Writes them (client side).
    fn write(&self, w: &mut Writer);
}

impl InArg for u32 {
    fn read(r: &mut Reader<'_>) -> Result<u32, UpnpError> {
        r.num()
    }
    fn write(&self, w: &mut Writer) {
        w.push(self);
    }
}

impl InArg for u16 {
    fn read(r: &mut Reader<'_>) -> Result<u16, UpnpError> {
        r.num()
    }
    fn write(&self, w: &mut Writer) {
        w.push(self);
    }
}

impl InArg for String {
    fn read(r: &mut Reader<'_>) -> Result<String, UpnpError> {
        r.raw().map(str::to_string)
    }
    fn write(&self, w: &mut Writer) {
        w.push(self);
    }
}

impl InArg for MappingKey {
    fn read(r: &mut Reader<'_>) -> Result<MappingKey, UpnpError> {
        Ok(MappingKey {
            remote_host: r.remote_host()?,
            external_port: r.num()?,
            protocol: r.protocol()?,
        })
    }
    fn write(&self, w: &mut Writer) {
        w.push(fmt_remote_host(self.remote_host));
        w.push(self.external_port);
        w.push(self.protocol);
    }
}

impl InArg for AddPortMapping {
    /// The cross-argument rules (716, 732) are `Action::check`'s: they depend on the action.
    fn read(r: &mut Reader<'_>) -> Result<AddPortMapping, UpnpError> {
        Ok(AddPortMapping {
            remote_host: r.remote_host()?,
            external_port: r.num()?,
            protocol: r.protocol()?,
            internal_port: r.num()?,
            internal_client: match r.raw()?.trim() {
                "" => None,
                c => Some(c.parse().map_err(|_| UpnpError::InvalidArgs)?),
            },
            enabled: r.boolean()?,
            description: r.raw()?.to_string(),
            lease_duration: r.num()?,
        })
    }
    fn write(&self, w: &mut Writer) {
        w.push(fmt_remote_host(self.remote_host));
        w.push(self.external_port);
        w.push(self.protocol);
        w.push(self.internal_port);
        w.push(
            self.internal_client
                .map(|c| c.to_string())
                .unwrap_or_default(),
        );
        w.push(fmt_bool(self.enabled));
        w.push(&self.description);
        w.push(self.lease_duration);
    }
}

impl InArg for PortRange {
    fn read(r: &mut Reader<'_>) -> Result<PortRange, UpnpError> {
        let range = PortRange {
            start_port: r.num()?,
            end_port: r.num()?,
            protocol: r.protocol()?,
            manage: r.boolean()?,
        };
        // WANIPConnection:2 §2.4.18/§2.4.20: start above end is 733 InconsistentParameters,
        // before any later argument is read.
        if range.start_port > range.end_port {
            return Err(UpnpError::InconsistentParameters);
        }
        Ok(range)
    }
    fn write(&self, w: &mut Writer) {
        w.push(self.start_port);
        w.push(self.end_port);
        w.push(self.protocol);
        w.push(fmt_bool(self.manage));
    }
}

impl Action {
    /// The in-arguments in spec order, formatted for the wire.
    pub fn args(&self) -> Vec<(String, String)> {
        let names: Vec<&'static str> = self.def().ins().collect();
        let mut w = Writer {
            out: Vec::with_capacity(names.len()),
            names: names.into_iter(),
        };
        self.write_ins(&mut w);
        w.out
    }

    /// Builds the request for a service (client side). `service_type` is the URN the router
    /// announced (e.g. WANPPPConnection:1 on some routers); QueryStateVariable always uses the
    /// control namespace (UDA 1.0 §3.3.1).
    pub fn to_request(&self, service_type: &str) -> ActionRequest {
        let service_type = match self.def().service {
            None => CONTROL_NS.to_string(),
            Some(_) => service_type.to_string(),
        };
        ActionRequest {
            service_type,
            action: self.name().to_string(),
            args: self.args(),
        }
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

/// The row a request addresses, and how: 401 for a service or action we do not know, or an
/// action that the addressed version does not have (the v2-only actions on WANIPConnection:1).
fn addressed_row(
    req: &ActionRequest,
) -> Result<(Addressed, &'static actions::ActionDef), UpnpError> {
    let (addressed, kind, version) = if req.service_type == CONTROL_NS {
        (Addressed::Control, None, 1)
    } else {
        let st = ServiceType::parse(&req.service_type).ok_or(UpnpError::InvalidAction)?;
        (Addressed::Service(st), Some(st.kind), st.version)
    };
    let def = actions::find(kind, &req.action)
        .filter(|d| d.since <= version)
        .ok_or(UpnpError::InvalidAction)?;
    Ok((addressed, def))
}

/// Parses a request into its typed action (server side).
///
/// Errors: 401 for a service or action we do not know, or an action that the addressed
/// version does not have; 402 for missing or ill-typed arguments; 716, 732 (AddPortMapping,
/// `Action::check`), 733 (a range whose start is above its end).
pub fn parse_action(req: &ActionRequest) -> Result<(Addressed, Action), UpnpError> {
    let (addressed, def) = addressed_row(req)?;
    let version = match addressed {
        Addressed::Service(st) => st.version,
        Addressed::Control => 1,
    };
    let mut r = Reader {
        req,
        args: def.args,
        next: 0,
    };
    let action = Action::read(def.name, &mut r)?.ok_or(UpnpError::InvalidAction)?;
    action.check(version)?;
    Ok((addressed, action))
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
    addressed_row(&probe).is_ok()
}
