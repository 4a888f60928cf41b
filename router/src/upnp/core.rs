//! The protocol core of the IGD service: SOAP action dispatch, the NAT side of every table
//! change, and the evented state. NAT-PMP and PCP are handled by the same core in
//! [`super::natpmp`] and [`super::pcp`]. Sans-IO: every entry point takes
//! `now` and the NAT engine (`&mut Nat`), nothing here reads a clock or touches a socket, so
//! the unit tests drive it with a virtual clock.
//!
//! The run of one request (see [`crate::mapping`]): parse (in `shared`), call the table with
//! `now` and the caller, [`Core::apply_changes`] pushes every logged change into the NAT at
//! once (rolling the table back when the NAT refuses a forward), then the caller of the core
//! drains [`Core::take_events`] for GENA and saves the table when [`Core::take_dirty`] says so.

use std::collections::HashSet;
use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use shared::description::{self, ServiceDef};
use shared::igd::{
    self, Action, Addressed, LinkProperties, MappingKey, Protocol, Reply, ServiceKind, ServiceType,
};
use shared::soap::{ActionRequest, ActionResponse};
use shared::upnp_error::UpnpError;

use crate::mapping::{AddRequest, Change, Mapping, MappingTable, TableConfig, TableError};
use crate::nat::{self, Forward, ForwardError, Nat};

/// The connection type we report (WANIPConnection:2 §2.2.1): a routed IP connection.
const CONNECTION_TYPE: &str = "IP_Routed";
/// How long a PCP error is expected to last, seconds (RFC 6887 §7.2: the lifetime of an error
/// response).
pub(super) const PCP_ERROR_LIFETIME: u32 = 30;

/// What the core needs to know about the device (fixed for a run).
#[derive(Debug, Clone)]
pub struct CoreConfig {
    /// The IGD version offered (1 or 2): WANIPConnection requests above it are 401.
    pub igd_version: u32,
    /// UUID of the WANConnectionDevice (Layer3Forwarding names it).
    pub wan_conn_uuid: String,
    /// GetCommonLinkProperties: upstream and downstream bit rates.
    pub link_bit_rates: (u32, u32),
}

/// The values of the evented variables last sent, to see what changed.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
struct Evented {
    entries: usize,
    wan: Option<Ipv4Addr>,
    connected: bool,
    system_update_id: u32,
}

/// The protocol core. One per service, behind a mutex in the shell.
#[derive(Debug)]
pub struct Core {
    pub(super) cfg: CoreConfig,
    pub(super) table: MappingTable,
    started: Instant,
    /// (protocol, external port) of the forwards this service installed in the NAT, so a
    /// rolled-back or removed mapping never removes a forward someone else owns.
    installed: HashSet<(Protocol, u16)>,
    dirty: bool,
    evented: Option<Evented>,
}

fn nat_proto(p: Protocol) -> nat::Protocol {
    match p {
        Protocol::Tcp => nat::Protocol::Tcp,
        Protocol::Udp => nat::Protocol::Udp,
    }
}

fn forward_of(m: &Mapping) -> Forward {
    Forward {
        protocol: nat_proto(m.protocol),
        external_port: m.external_port,
        internal_addr: m.internal_client,
        internal_port: m.internal_port,
        remote_host: m.remote_host,
        // The table is the one authority on leases: it expires the mapping and the shell
        // removes the forward (a second timer in the NAT could disagree with a virtual clock).
        expires: None,
        description: m.description.clone(),
    }
}

/// Why the NAT refused a table change, as the UPnP error of WANIPConnection `version`.
fn forward_error(e: &ForwardError, version: u32) -> UpnpError {
    match e {
        // A static forward holds the port: another mechanism (WANIPConnection:2 §2.4.16, 729;
        // v1 had no such code, so 718 as miniupnpd answers).
        ForwardError::PortForwarded { .. } if version >= 2 => {
            UpnpError::ConflictWithOtherMechanisms
        }
        ForwardError::PortForwarded { .. } | ForwardError::PortInUseBySession { .. } => {
            UpnpError::ConflictInMappingEntry
        }
        ForwardError::NotInLan { .. } | ForwardError::ZeroPort { .. } => UpnpError::InvalidArgs,
    }
}

impl Core {
    /// A core over an empty table. `table.reserved` should already hold the static forwards.
    pub fn new(cfg: CoreConfig, table: TableConfig, started: Instant) -> Core {
        Core {
            cfg,
            table: MappingTable::new(table),
            started,
            installed: HashSet::new(),
            dirty: false,
            evented: None,
        }
    }

    /// The mapping table (read-only; changes go through the core so the NAT follows).
    pub fn table(&self) -> &MappingTable {
        &self.table
    }

    /// Switches secure mode (admin setting).
    pub fn set_secure_mode(&mut self, on: bool) {
        self.table.set_secure_mode(on);
    }

    /// Seconds since the service started: GetStatusInfo's uptime and the NAT-PMP / PCP epoch
    /// (RFC 6886 §3.6, RFC 6887 §8.5).
    pub fn uptime(&self, now: Instant) -> u32 {
        u32::try_from(now.saturating_duration_since(self.started).as_secs()).unwrap_or(u32::MAX)
    }

    /// Puts back mappings from the state file and installs their forwards. Returns how many.
    pub fn restore(&mut self, now: Instant, nat: &mut Nat, mappings: Vec<Mapping>) -> usize {
        let n = self.table.restore(now, mappings);
        let _ = self.apply_changes(now, nat);
        n
    }

    /// Deletes the mapping of `protocol`/`external_port` for the administrator (the admin page),
    /// whoever owns it, and removes its forward. False when there is no such mapping.
    pub fn admin_delete(
        &mut self,
        now: Instant,
        nat: &mut Nat,
        protocol: Protocol,
        external_port: u16,
    ) -> bool {
        let Some((owner, remote_host)) = self
            .table
            .iter()
            .find(|m| m.protocol == protocol && m.external_port == external_port)
            .map(|m| (m.internal_client, m.remote_host))
        else {
            return false;
        };
        let key = MappingKey {
            remote_host,
            external_port,
            protocol,
        };
        // Acting as the owner: secure mode lets a client delete its own mappings.
        let deleted = self.table.delete(now, owner, &key).is_ok();
        let _ = self.apply_changes(now, nat);
        deleted
    }

    /// Expires leases ended at `now` and removes their forwards.
    pub fn expire(&mut self, now: Instant, nat: &mut Nat) {
        self.table.expire(now);
        let _ = self.apply_changes(now, nat);
    }

    /// The earliest lease end.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.table.next_deadline()
    }

    /// Whether the table changed since the last call (the shell then saves it).
    pub fn take_dirty(&mut self) -> bool {
        std::mem::take(&mut self.dirty)
    }

    fn install(&mut self, nat: &mut Nat, m: &Mapping) -> Result<(), ForwardError> {
        if !m.enabled {
            return Ok(());
        }
        nat.add_forward(forward_of(m))?;
        self.installed.insert((m.protocol, m.external_port));
        Ok(())
    }

    fn uninstall(&mut self, nat: &mut Nat, m: &Mapping) {
        if self.installed.remove(&(m.protocol, m.external_port)) {
            nat.remove_forward(nat_proto(m.protocol), m.external_port);
        }
    }

    /// Applies the table's change log to the NAT, in order. A forward the NAT refuses is
    /// rolled back out of the table (so table and NAT never disagree), and the first such
    /// error is returned.
    pub fn apply_changes(&mut self, now: Instant, nat: &mut Nat) -> Result<(), ForwardError> {
        let mut first_err = None;
        loop {
            let changes = self.table.take_changes();
            if changes.is_empty() {
                break;
            }
            self.dirty = true;
            for c in changes {
                let failed = match c {
                    Change::Added(m) => self.install(nat, &m).err().map(|e| (m, e)),
                    Change::Updated { old, new } => {
                        let same_target = old.internal_client == new.internal_client
                            && old.internal_port == new.internal_port
                            && old.enabled == new.enabled;
                        if !same_target {
                            self.uninstall(nat, &old);
                        }
                        // Same target: add_forward updates in place (description, remote host)
                        // and keeps the sessions.
                        self.install(nat, &new).err().map(|e| (new, e))
                    }
                    Change::Removed(m, _) => {
                        self.uninstall(nat, &m);
                        None
                    }
                };
                if let Some((m, e)) = failed {
                    tracing::debug!(port = m.external_port, error = %e, "NAT refused a mapping");
                    let key = MappingKey {
                        remote_host: None,
                        external_port: m.external_port,
                        protocol: m.protocol,
                    };
                    // The owner may always delete its own mapping: the rollback cannot fail
                    // on policy.
                    let _ = self.table.delete(now, m.internal_client, &key);
                    first_err.get_or_insert(e);
                }
            }
        }
        first_err.map_or(Ok(()), Err)
    }

    // -----------------------------------------------------------------------------------------
    // SOAP (UDA 1.1 §3.2)

    /// Handles a parsed control request that arrived at the control URL of `at` from `caller`.
    pub fn soap(
        &mut self,
        now: Instant,
        nat: &mut Nat,
        caller: Ipv4Addr,
        at: ServiceKind,
        req: &ActionRequest,
    ) -> Result<ActionResponse, UpnpError> {
        let (addressed, action) = igd::parse_action(req)?;
        let service = match addressed {
            Addressed::Service(st) => {
                // The body must address the service at this control URL, at a version we
                // offer (UDA 1.1 §3.2.1; a v2 action on an IGD:1 device is 401).
                if st.kind != at || st.version > self.offered_version(at) {
                    return Err(UpnpError::InvalidAction);
                }
                st
            }
            Addressed::Control => ServiceType {
                kind: at,
                version: self.offered_version(at),
            },
        };
        let reply = self.dispatch(now, nat, caller, service, &action)?;
        Ok(reply.to_response(&action, &req.service_type))
    }

    /// The version of `kind` this device offers.
    pub fn offered_version(&self, kind: ServiceKind) -> u32 {
        match kind {
            ServiceKind::WanIpConnection => self.cfg.igd_version.clamp(1, 2),
            _ => 1,
        }
    }

    fn connected(nat: &Nat) -> bool {
        !nat.wan_addr().is_unspecified()
    }

    /// One handler per row of the action table (`shared::igd::actions`; WANIPConnection:2 §2.4,
    /// WANCommonInterfaceConfig:1 §2.4, Layer3Forwarding:1 §2.4, UDA 1.0 §3.3
    /// QueryStateVariable). The match is exhaustive: a new row does not compile without its
    /// handler.
    fn dispatch(
        &mut self,
        now: Instant,
        nat: &mut Nat,
        caller: Ipv4Addr,
        service: ServiceType,
        action: &Action,
    ) -> Result<Reply, UpnpError> {
        let v = service.version;
        let table_err = |e: TableError| e.upnp_error(v);
        Ok(match action {
            Action::GetConnectionTypeInfo => Reply::ConnectionTypeInfo {
                connection_type: CONNECTION_TYPE.into(),
                possible: CONNECTION_TYPE.into(),
            },
            // §2.4.1: the type can only change while the connection is down (703); ours is a
            // routed connection that is always up while the WAN has an address.
            Action::SetConnectionType { connection_type } => {
                if !["Unconfigured", "IP_Routed", "IP_Bridged"].contains(&connection_type.trim()) {
                    return Err(UpnpError::InvalidArgs);
                }
                if connection_type.trim() == CONNECTION_TYPE {
                    Reply::Empty
                } else if Self::connected(nat) {
                    return Err(UpnpError::InactiveConnectionStateRequired);
                } else {
                    return Err(UpnpError::InvalidConnectionType);
                }
            }
            // §2.4.3: already connected is success; without a WAN address we cannot dial (704).
            Action::RequestConnection => {
                if Self::connected(nat) {
                    Reply::Empty
                } else {
                    return Err(UpnpError::ConnectionSetupFailed);
                }
            }
            // §2.4.4, §2.4.5: a LAN client may not take the WAN down (606); a connection that
            // is down is 711.
            Action::RequestTermination | Action::ForceTermination => {
                if Self::connected(nat) {
                    return Err(UpnpError::ActionNotAuthorized);
                } else {
                    return Err(UpnpError::ConnectionAlreadyTerminated);
                }
            }
            // §2.4.6-§2.4.8: we never disconnect; 0 (disabled) is the only value we accept.
            Action::SetAutoDisconnectTime(t)
            | Action::SetIdleDisconnectTime(t)
            | Action::SetWarnDisconnectDelay(t) => {
                if *t == 0 {
                    Reply::Empty
                } else {
                    return Err(UpnpError::ActionNotAuthorized);
                }
            }
            Action::GetAutoDisconnectTime
            | Action::GetIdleDisconnectTime
            | Action::GetWarnDisconnectDelay => Reply::Seconds(0),
            Action::GetStatusInfo => Reply::StatusInfo {
                status: connection_status(nat).into(),
                last_error: "ERROR_NONE".into(),
                uptime: self.uptime(now),
            },
            Action::GetNatRsipStatus => Reply::NatRsipStatus {
                rsip_available: false,
                nat_enabled: true,
            },
            Action::GetExternalIpAddress => Reply::ExternalIpAddress(external_ip(nat)),
            Action::GetGenericPortMappingEntry(i) => Reply::GenericEntry(
                self.table
                    .get_generic(now, *i)
                    .map_err(table_err)?
                    .to_entry(now),
            ),
            Action::GetSpecificPortMappingEntry(key) => {
                let m = self.table.get_specific(now, key).map_err(table_err)?;
                Reply::SpecificEntry {
                    internal_port: m.internal_port,
                    internal_client: m.internal_client,
                    enabled: m.enabled,
                    description: m.description.clone(),
                    lease_duration: m.remaining_secs(now),
                }
            }
            Action::AddPortMapping(a) => {
                let req = AddRequest::from_action(caller, v, a);
                let r = self.table.add(now, &req);
                let applied = self.apply_changes(now, nat);
                r.map_err(table_err)?;
                applied.map_err(|e| forward_error(&e, v))?;
                Reply::Empty
            }
            Action::AddAnyPortMapping(a) => {
                let req = AddRequest::from_action(caller, v, a);
                let r = self.table.add_any(now, &req);
                let applied = self.apply_changes(now, nat);
                let port = r.map_err(table_err)?;
                applied.map_err(|e| forward_error(&e, v))?;
                Reply::ReservedPort(port)
            }
            Action::DeletePortMapping(key) => {
                let r = self.table.delete(now, caller, key);
                let _ = self.apply_changes(now, nat);
                r.map_err(table_err)?;
                Reply::Empty
            }
            Action::DeletePortMappingRange(r) => {
                let res = self.table.delete_range(
                    now,
                    caller,
                    r.protocol,
                    r.start_port,
                    r.end_port,
                    r.manage,
                );
                let _ = self.apply_changes(now, nat);
                res.map_err(table_err)?;
                Reply::Empty
            }
            Action::GetListOfPortMappings(r, n) => {
                // §2.4.20: NewManage true lists every client's mappings. Listing is read-only
                // and miniupnpc always sends NewManage=1, so secure mode does not restrict it
                // (as miniupnpd); NewManage=0 lists the caller's own.
                let manage = r.manage;
                let list = self
                    .table
                    .list(
                        now,
                        caller,
                        r.protocol,
                        r.start_port,
                        r.end_port,
                        manage,
                        *n,
                    )
                    .map_err(table_err)?;
                Reply::PortListing(list)
            }
            Action::GetCommonLinkProperties => Reply::LinkProperties(LinkProperties {
                wan_access_type: "Ethernet".into(),
                upstream_max_bit_rate: self.cfg.link_bit_rates.0,
                downstream_max_bit_rate: self.cfg.link_bit_rates.1,
                physical_link_status: if Self::connected(nat) { "Up" } else { "Down" }.into(),
            }),
            // WANCommonInterfaceConfig:1 §2.2: sent = toward the WAN (the NAT's out
            // direction), received = from the WAN (in).
            Action::GetTotalBytesSent => Reply::Counter(nat.counters().bytes_out),
            Action::GetTotalBytesReceived => Reply::Counter(nat.counters().bytes_in),
            Action::GetTotalPacketsSent => Reply::Counter(nat.counters().packets_out),
            Action::GetTotalPacketsReceived => Reply::Counter(nat.counters().packets_in),
            Action::GetDefaultConnectionService => {
                Reply::DefaultConnectionService(self.default_connection_service())
            }
            // Layer3Forwarding:1 §2.4.1: there is one connection service; naming it is a no-op.
            Action::SetDefaultConnectionService(s) => {
                if s.contains(&self.cfg.wan_conn_uuid) {
                    Reply::Empty
                } else {
                    return Err(UpnpError::InvalidArgs);
                }
            }
            Action::QueryStateVariable(name) => Reply::StateVariable(
                self.state_variable(now, nat, service, name)
                    .ok_or(UpnpError::InvalidVar)?,
            ),
        })
    }

    fn default_connection_service(&self) -> String {
        // Layer3Forwarding:1 §2.2.1: "uuid:<UDN>:WANConnectionDevice:1,<serviceId>".
        format!(
            "uuid:{}:WANConnectionDevice:1,{}",
            self.cfg.wan_conn_uuid,
            description::service_urls(ServiceKind::WanIpConnection, self.cfg.igd_version)
                .service_id
        )
    }

    /// The value of a state variable of `service` (QueryStateVariable, initial events).
    /// None for variables without a value of their own (the A_ARG_TYPE_ and per-mapping ones).
    pub fn state_variable(
        &mut self,
        now: Instant,
        nat: &Nat,
        service: ServiceType,
        name: &str,
    ) -> Option<String> {
        let c = nat.counters();
        let v = match (service.kind, name) {
            (ServiceKind::WanIpConnection, n) => match n {
                "ConnectionType" | "PossibleConnectionTypes" => CONNECTION_TYPE.to_string(),
                "ConnectionStatus" => connection_status(nat).to_string(),
                "Uptime" => self.uptime(now).to_string(),
                "LastConnectionError" => "ERROR_NONE".to_string(),
                "AutoDisconnectTime" | "IdleDisconnectTime" | "WarnDisconnectDelay" => {
                    "0".to_string()
                }
                "RSIPAvailable" => "0".to_string(),
                "NATEnabled" => "1".to_string(),
                "ExternalIPAddress" => external_ip(nat),
                "PortMappingNumberOfEntries" => self.table.len(now).to_string(),
                "SystemUpdateID" if service.version >= 2 => {
                    self.table.system_update_id().to_string()
                }
                _ => return None,
            },
            (ServiceKind::WanCommonInterfaceConfig, n) => match n {
                "WANAccessType" => "Ethernet".to_string(),
                "Layer1UpstreamMaxBitRate" => self.cfg.link_bit_rates.0.to_string(),
                "Layer1DownstreamMaxBitRate" => self.cfg.link_bit_rates.1.to_string(),
                "PhysicalLinkStatus" => {
                    if Self::connected(nat) { "Up" } else { "Down" }.to_string()
                }
                "TotalBytesSent" => (c.bytes_out & 0xffff_ffff).to_string(),
                "TotalBytesReceived" => (c.bytes_in & 0xffff_ffff).to_string(),
                "TotalPacketsSent" => (c.packets_out & 0xffff_ffff).to_string(),
                "TotalPacketsReceived" => (c.packets_in & 0xffff_ffff).to_string(),
                _ => return None,
            },
            (ServiceKind::Layer3Forwarding, "DefaultConnectionService") => {
                self.default_connection_service()
            }
            _ => return None,
        };
        Some(v)
    }

    /// Every evented variable of a service with its value: the initial event of a new
    /// subscription (UDA 1.1 §4.2.1). The list comes from the service's table in
    /// [`shared::description`].
    pub fn initial_event(
        &mut self,
        now: Instant,
        nat: &Nat,
        kind: ServiceKind,
    ) -> Vec<(String, String)> {
        let Some(def): Option<&ServiceDef> = description::service_def(kind) else {
            return Vec::new();
        };
        let service = ServiceType {
            kind,
            version: self.offered_version(kind),
        };
        def.vars
            .iter()
            .filter(|var| var.events && var.since <= service.version)
            .filter_map(|var| {
                self.state_variable(now, nat, service, var.name)
                    .map(|val| (var.name.to_string(), val))
            })
            .collect()
    }

    /// The evented variables that changed since the last call, by service (UDA 1.1 §4.3:
    /// PortMappingNumberOfEntries, ExternalIPAddress, ConnectionStatus and, on v2,
    /// SystemUpdateID; PhysicalLinkStatus of WANCommonInterfaceConfig). The first call only
    /// records the state (the initial events cover it).
    pub fn take_events(
        &mut self,
        now: Instant,
        nat: &Nat,
    ) -> Vec<(ServiceKind, Vec<(String, String)>)> {
        let cur = Evented {
            entries: self.table.len(now),
            wan: Some(nat.wan_addr()),
            connected: Self::connected(nat),
            system_update_id: self.table.system_update_id(),
        };
        let Some(prev) = self.evented.replace(cur.clone()) else {
            return Vec::new();
        };
        let mut ip = Vec::new();
        let mut cic = Vec::new();
        if prev.connected != cur.connected {
            ip.push(("ConnectionStatus".into(), connection_status(nat).into()));
            cic.push((
                "PhysicalLinkStatus".to_string(),
                if cur.connected { "Up" } else { "Down" }.to_string(),
            ));
        }
        if prev.wan != cur.wan {
            ip.push(("ExternalIPAddress".into(), external_ip(nat)));
        }
        if prev.entries != cur.entries {
            ip.push(("PortMappingNumberOfEntries".into(), cur.entries.to_string()));
        }
        if self.cfg.igd_version >= 2 && prev.system_update_id != cur.system_update_id {
            ip.push(("SystemUpdateID".into(), cur.system_update_id.to_string()));
        }
        let mut out = Vec::new();
        if !ip.is_empty() {
            out.push((ServiceKind::WanIpConnection, ip));
        }
        if !cic.is_empty() {
            out.push((ServiceKind::WanCommonInterfaceConfig, cic));
        }
        out
    }
}

/// `ConnectionStatus` (WANIPConnection:2 §2.2.3).
fn connection_status(nat: &Nat) -> &'static str {
    if nat.wan_addr().is_unspecified() {
        "Disconnected"
    } else {
        "Connected"
    }
}

/// `ExternalIPAddress` (WANIPConnection:2 §2.2.18): empty while there is none.
fn external_ip(nat: &Nat) -> String {
    let a = nat.wan_addr();
    if a.is_unspecified() {
        String::new()
    } else {
        a.to_string()
    }
}

/// A lease expressed in seconds from now (for status output).
pub fn remaining(m: &Mapping, now: Instant) -> Option<Duration> {
    m.lease_end.map(|e| e.saturating_duration_since(now))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nat::NatConfig;
    use shared::igd::{AddPortMapping as Add, Reply};
    use shared::natpmp::{NatPmpProtocol, NatPmpRequest, NatPmpResponse, NatPmpResult};
    use std::net::SocketAddrV4;

    const ME: Ipv4Addr = Ipv4Addr::new(192, 168, 1, 10);

    fn setup() -> (Core, Nat, Instant) {
        let t0 = Instant::now();
        let core = Core::new(
            CoreConfig {
                igd_version: 2,
                wan_conn_uuid: "u3".into(),
                link_bit_rates: (1, 2),
            },
            TableConfig::default(),
            t0,
        );
        let nat = Nat::new(
            NatConfig::new(
                Ipv4Addr::new(60, 120, 76, 64),
                Ipv4Addr::new(192, 168, 1, 1),
                24,
            ),
            1,
        );
        (core, nat, t0)
    }

    fn req(v: u32, action: &Action) -> ActionRequest {
        action.to_request(&format!("urn:schemas-upnp-org:service:WANIPConnection:{v}"))
    }

    fn add(port: u16, lease: u32) -> Action {
        Action::AddPortMapping(Add {
            remote_host: None,
            external_port: port,
            protocol: Protocol::Tcp,
            internal_port: port,
            internal_client: None,
            enabled: true,
            description: "t".into(),
            lease_duration: lease,
        })
    }

    #[test]
    fn add_installs_forward_and_expiry_removes_it() {
        let (mut core, mut nat, t0) = setup();
        let r = core.soap(
            t0,
            &mut nat,
            ME,
            ServiceKind::WanIpConnection,
            &req(2, &add(8080, 60)),
        );
        assert!(r.is_ok(), "{r:?}");
        assert_eq!(nat.forwards().count(), 1);
        assert!(core.take_dirty());
        let ev = core.take_events(t0, &nat);
        assert!(ev.is_empty(), "first call only records");
        core.expire(t0 + Duration::from_secs(59), &mut nat);
        assert_eq!(nat.forwards().count(), 1);
        core.expire(t0 + Duration::from_secs(60), &mut nat);
        assert_eq!(nat.forwards().count(), 0);
        let ev = core.take_events(t0 + Duration::from_secs(60), &nat);
        assert!(
            ev[0]
                .1
                .iter()
                .any(|(k, v)| k == "PortMappingNumberOfEntries" && v == "0")
        );
    }

    #[test]
    fn wrong_service_or_version_is_401_and_counters_come_from_the_nat() {
        let (mut core, mut nat, t0) = setup();
        let r = core.soap(
            t0,
            &mut nat,
            ME,
            ServiceKind::WanCommonInterfaceConfig,
            &req(2, &add(8080, 0)),
        );
        assert_eq!(r, Err(UpnpError::InvalidAction));
        core.cfg.igd_version = 1;
        let r = core.soap(
            t0,
            &mut nat,
            ME,
            ServiceKind::WanIpConnection,
            &req(2, &add(8080, 0)),
        );
        assert_eq!(r, Err(UpnpError::InvalidAction));
        let a = Action::GetTotalBytesSent;
        let r = core
            .soap(
                t0,
                &mut nat,
                ME,
                ServiceKind::WanCommonInterfaceConfig,
                &a.to_request("urn:schemas-upnp-org:service:WANCommonInterfaceConfig:1"),
            )
            .unwrap();
        assert_eq!(r.arg("NewTotalBytesSent"), Some("0"));
        let q = Action::QueryStateVariable("ExternalIPAddress".into());
        let r = core
            .soap(
                t0,
                &mut nat,
                ME,
                ServiceKind::WanIpConnection,
                &q.to_request(""),
            )
            .unwrap();
        assert_eq!(r.arg("return"), Some("60.120.76.64"));
        let q = Action::QueryStateVariable("Nope".into());
        assert_eq!(
            core.soap(
                t0,
                &mut nat,
                ME,
                ServiceKind::WanIpConnection,
                &q.to_request("")
            ),
            Err(UpnpError::InvalidVar)
        );
    }

    #[test]
    fn static_forward_conflict_rolls_back_the_table() {
        let (mut core, mut nat, t0) = setup();
        nat.add_forward(Forward {
            protocol: nat::Protocol::Tcp,
            external_port: 8080,
            internal_addr: Ipv4Addr::new(192, 168, 1, 99),
            internal_port: 80,
            remote_host: None,
            expires: None,
            description: "static".into(),
        })
        .unwrap();
        let r = core.soap(
            t0,
            &mut nat,
            ME,
            ServiceKind::WanIpConnection,
            &req(2, &add(8080, 0)),
        );
        assert_eq!(r, Err(UpnpError::ConflictWithOtherMechanisms));
        assert!(core.table().is_empty());
        // the static forward is untouched by the rollback
        assert_eq!(nat.forwards().count(), 1);
        let r = core.soap(
            t0,
            &mut nat,
            ME,
            ServiceKind::WanIpConnection,
            &req(1, &add(8080, 0)),
        );
        assert_eq!(r, Err(UpnpError::ConflictInMappingEntry));
    }

    #[test]
    fn natpmp_epoch_and_map() {
        let (mut core, mut nat, t0) = setup();
        let src = SocketAddrV4::new(ME, 5350);
        let (r, bad) = core.pmp(
            t0 + Duration::from_secs(7),
            &mut nat,
            src,
            &NatPmpRequest::ExternalAddress.emit(),
        );
        assert!(!bad);
        let r = NatPmpResponse::parse(&r.unwrap()).unwrap();
        assert!(matches!(
            r,
            NatPmpResponse::ExternalAddress {
                epoch: 7,
                result: NatPmpResult::Success,
                ..
            }
        ));
        let m = NatPmpRequest::Map {
            protocol: NatPmpProtocol::Udp,
            internal_port: 4000,
            suggested_external_port: 0,
            lifetime: 100,
        };
        let (r, _) = core.pmp(t0, &mut nat, src, &m.emit());
        let r = NatPmpResponse::parse(&r.unwrap()).unwrap();
        assert!(matches!(
            r,
            NatPmpResponse::Map {
                external_port: 4000,
                lifetime: 100,
                ..
            }
        ));
        assert_eq!(nat.forwards().count(), 1);
        // garbage: short NAT-PMP dropped, counted
        let (r, bad) = core.pmp(t0, &mut nat, src, &[0]);
        assert!(bad && r.is_none());
        // our own announcements (responses) are never answered
        let (r, _) = core.pmp(t0, &mut nat, src, &[0, 128, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
        assert!(r.is_none());
        let _ = Reply::Empty;
    }
}
