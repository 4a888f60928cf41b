//! The node's view of the camera set: who it is, its role, the router's external address and the
//! other cameras. Port management (`portmgmt`) writes it; the web pages (`web`) read it through a
//! `tokio::sync::watch` channel and re-render when it changes.

use std::net::Ipv4Addr;
use std::time::Instant;

/// This node's role in the server patent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// Discovering the router or asking for a port.
    Starting,
    /// Holds the well-known port (8080) and lists the others (claim 1).
    Representative,
    /// Holds another port and has told the representative (claim 6).
    Member,
    /// Elected representative and taking the well-known port (Fig. 14). On a router that will
    /// not let it delete the old holder's mapping (secure mode) this lasts until that mapping's
    /// lease lapses; meanwhile the node keeps serving under its own port (`external_port`).
    TakingOver,
}

impl Role {
    pub fn name(self) -> &'static str {
        match self {
            Role::Starting => "starting",
            Role::Representative => "representative",
            Role::Member => "member",
            Role::TakingOver => "taking-over",
        }
    }
}

/// Whether the internet can reach this node, and if not, why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reachability {
    /// Looking for the router's IGD.
    Discovering,
    /// Mapped on an IGD whose external address is public.
    Reachable,
    /// No IGD answered; serving the LAN only, still retrying.
    NoIgd,
    /// The IGD's external address is itself private or carrier-grade NAT space (double NAT).
    DoubleNat { external: Ipv4Addr },
    /// The IGD refused every port we asked for.
    Refused { reason: String },
    /// Registered with a relay (seed 003): viewers reach the camera at `site`
    /// (`<relay URL>/d/<node id>/`); `direct` is what port forwarding achieved.
    ViaRelay {
        site: String,
        direct: Box<Reachability>,
    },
}

/// Where an entry about another camera came from (patent embodiments 1-3, claim 6).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PeerSource {
    /// The router's port mapping table (GetGenericPortMappingEntry walk / GetListOfPortMappings).
    RouterTable,
    /// The node's own-port notice on the LAN (claim 6).
    Notice,
    /// The node's answer to the representative's inquiry (embodiment 2).
    Inquiry,
}

/// Another camera node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Peer {
    /// Stable node id (persisted by each node).
    pub node_id: String,
    /// Its display name ("camera 2" until renamed).
    pub name: String,
    /// Its LAN address.
    pub lan_addr: Ipv4Addr,
    /// The port it serves on its LAN address (the internal port of its mapping).
    pub lan_port: u16,
    /// Its external port on the router, if mapped.
    pub external_port: Option<u16>,
    pub source: PeerSource,
    pub last_seen: Instant,
}

/// Everything the pages and the status endpoint show about the camera set.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Directory {
    pub node_id: String,
    pub name: String,
    pub role: Role,
    pub reachability: Reachability,
    /// The router's external address (GetExternalIPAddress), once known.
    pub external_addr: Option<Ipv4Addr>,
    /// This node's LAN address as the router sees it.
    pub lan_addr: Option<Ipv4Addr>,
    /// This node's external port (8080 on the representative), once mapped.
    pub external_port: Option<u16>,
    /// The port this node serves on its LAN address.
    pub lan_port: u16,
    /// The other cameras (on the representative: all it knows; on members: possibly empty).
    pub peers: Vec<Peer>,
    /// Something the user should know about the node itself (another node had its id).
    pub warning: Option<String>,
}

/// Requests from the web side to port management.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NodeCommand {
    /// Rename this node; persisted, re-announced, and the mapping description updated.
    Rename(String),
}
