//! Port forwards (static ones from the configuration, and the IGD's leased ones): each owns
//! its external port through a mapping of kind `KIND_FORWARD` (module `table`), so forwards and
//! dynamic mappings can never share a port.

use std::net::{Ipv4Addr, SocketAddrV4};
use std::time::Instant;

use super::table::{KIND_FORWARD, MapKey, NONE, OutKey, Proto};
use super::{Nat, Protocol};

/// A static port forward (from configuration, or added by the IGD with a lease).
#[derive(Clone, Debug, PartialEq)]
pub struct Forward {
    pub protocol: Protocol,
    pub external_port: u16,
    pub internal_addr: Ipv4Addr,
    pub internal_port: u16,
    /// Only this remote address may open sessions through the forward (`None`: anyone).
    pub remote_host: Option<Ipv4Addr>,
    /// Removed by [`Nat::expire`] at this instant (`None`: permanent).
    pub expires: Option<Instant>,
    pub description: String,
}

/// Why a forward cannot be added.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ForwardError {
    #[error("{which} port 0 is not a valid port; use 1..=65535")]
    ZeroPort { which: &'static str },
    #[error(
        "internal address {addr} is not in the LAN {lan}; forwards can only point into the LAN"
    )]
    NotInLan { addr: Ipv4Addr, lan: String },
    #[error(
        "{protocol} port {port} is already forwarded to {internal} ({description:?}); remove that forward first or pick another port"
    )]
    PortForwarded {
        protocol: Protocol,
        port: u16,
        internal: SocketAddrV4,
        description: String,
    },
    #[error(
        "{protocol} port {port} is in use by an active NAT session; pick another port, or flush sessions and retry"
    )]
    PortInUseBySession { protocol: Protocol, port: u16 },
}

#[derive(Debug)]
pub(super) struct ForwardEntry {
    pub fwd: Forward,
    pub mapping: u32,
}

impl Nat {
    /// Adds a port forward. Re-adding the same (protocol, port) with the same internal
    /// endpoint updates it in place (lease renewal) and keeps its sessions.
    pub fn add_forward(&mut self, fwd: Forward) -> Result<(), ForwardError> {
        if fwd.external_port == 0 {
            return Err(ForwardError::ZeroPort { which: "external" });
        }
        if fwd.internal_port == 0 {
            return Err(ForwardError::ZeroPort { which: "internal" });
        }
        if !self.in_lan(u32::from(fwd.internal_addr)) {
            return Err(ForwardError::NotInLan {
                addr: fwd.internal_addr,
                lan: format!(
                    "{}/{}",
                    Ipv4Addr::from(self.lan_net),
                    self.cfg.lan_prefix.min(32)
                ),
            });
        }
        let key = (fwd.protocol, fwd.external_port);
        if let Some(e) = self.forwards.get_mut(&key) {
            if e.fwd.internal_addr == fwd.internal_addr && e.fwd.internal_port == fwd.internal_port
            {
                e.fwd = fwd;
                return Ok(());
            }
            return Err(ForwardError::PortForwarded {
                protocol: fwd.protocol,
                port: fwd.external_port,
                internal: SocketAddrV4::new(e.fwd.internal_addr, e.fwd.internal_port),
                description: e.fwd.description.clone(),
            });
        }
        let proto = fwd.protocol.proto();
        if self.table.owner(proto, fwd.external_port) != NONE {
            return Err(ForwardError::PortInUseBySession {
                protocol: fwd.protocol,
                port: fwd.external_port,
            });
        }
        let mk = Self::forward_key(proto, fwd.internal_addr, fwd.internal_port);
        let mapping = self.table.add_mapping(mk, fwd.external_port);
        self.forwards.insert(key, ForwardEntry { fwd, mapping });
        Ok(())
    }

    /// Removes a forward and the sessions that use it.
    pub fn remove_forward(&mut self, protocol: Protocol, external_port: u16) -> Option<Forward> {
        let e = self.forwards.remove(&(protocol, external_port))?;
        let sessions: Vec<u32> = self.table.mapping_sessions(e.mapping).collect();
        for s in sessions {
            self.table.remove(s);
        }
        self.table.remove_mapping(e.mapping);
        // Another forward of the same internal endpoint takes over outbound new sessions.
        let mk = Self::forward_key(protocol.proto(), e.fwd.internal_addr, e.fwd.internal_port);
        if !self.table.map_idx.contains_key(&mk) {
            if let Some(other) = self.forwards.values().find(|o| {
                o.fwd.protocol == protocol
                    && o.fwd.internal_addr == e.fwd.internal_addr
                    && o.fwd.internal_port == e.fwd.internal_port
            }) {
                self.table.map_idx.insert(mk, other.mapping);
            }
        }
        Some(e.fwd)
    }

    /// Forwards, ordered by (protocol, external port).
    pub fn forwards(&self) -> impl Iterator<Item = &Forward> + '_ {
        self.forwards.values().map(|e| &e.fwd)
    }

    pub(super) fn forward_key(proto: Proto, addr: Ipv4Addr, port: u16) -> MapKey {
        MapKey {
            key: OutKey {
                int_addr: addr.into(),
                rem_addr: 0,
                int_port: port,
                rem_port: 0,
                proto,
            },
            kind: KIND_FORWARD,
        }
    }
}
