//! The port manager's tunables.

use std::net::{Ipv4Addr, SocketAddrV4};
use std::time::Duration;

use shared::lanproto;
use shared::url::HttpUrl;

use crate::config::{Config, InternalPortMode};
use crate::election;

/// Tunables of the port manager. [`Options::from_config`] fills them from the node's
/// configuration; the rest are defaults documented on each field.
#[derive(Clone, Debug)]
pub struct Options {
    /// The well-known external port of the representative (8080).
    pub representative_port: u16,
    /// The first port the other nodes try (8081).
    pub first_other_port: u16,
    /// How many ports a node tries before it reports Refused (default 64).
    pub max_port_tries: u16,
    /// Fig. 8a (internal = external) or 8b (one common internal port).
    pub internal_port_mode: InternalPortMode,
    /// The common internal port for Fig. 8b.
    pub common_internal_port: u16,
    /// The port the web server listens on (reported as `lan_port` until a mapping exists).
    pub web_port: u16,
    /// Requested lease, seconds; 0 = permanent. Renewed at half-life.
    pub lease_seconds: u32,
    /// The IGD's description URL, skipping SSDP.
    pub igd_url: Option<HttpUrl>,
    /// How often the representative walks the router's table (default 5 s).
    pub walk_interval: Duration,
    /// First M-SEARCH retry interval (default 1 s); doubles per attempt.
    pub search_initial: Duration,
    /// Cap of the M-SEARCH retry interval (default 30 s).
    pub search_max: Duration,
    /// After this long without an IGD, report `NoIgd` and pick a fallback name (default 3 s).
    pub no_igd_after: Duration,
    /// Re-check interval for the external address, and retry interval after a refusal or
    /// double NAT (default 30 s).
    pub recheck_interval: Duration,
    /// The LAN protocol's multicast group and port (239.255.77.77:17777).
    pub lan_group: SocketAddrV4,
    /// When a node repeats its own-port notice, as offsets from the first send (stops early
    /// when the representative acknowledges).
    pub notice_schedule: Vec<Duration>,
    /// How long the representative lists a node known only from its notice, without a mapping
    /// in the router's table (default 15 s).
    pub notice_grace: Duration,
    /// The representative election (embodiment 4); None = no rotation (the node that got the
    /// representative port keeps it, as in issue 5).
    pub election: Option<election::Settings>,
    /// The lease of the representative port while the election runs (default 6 s), renewed at
    /// half-life, so that a dead holder's mapping lapses soon on a router that refuses to delete
    /// another host's mapping (secure mode).
    pub representative_lease_seconds: u32,
    /// How often a successor asks for the representative port again while the router refuses
    /// it (secure mode: until the dead holder's lease lapses; default 1 s).
    pub takeover_retry: Duration,
    /// Our LAN address when no IGD tells it (the IGD's answers carry the address the router
    /// sees, which wins): the driver fills it from `listen` or the route to the LAN group. A
    /// node without an IGD needs it to take part in the election as a LAN representative.
    pub lan_addr: Option<Ipv4Addr>,
}

impl Options {
    /// The options for a node's configuration, with the web server on `web_port`.
    pub fn from_config(cfg: &Config, web_port: u16) -> Options {
        Options {
            representative_port: cfg.representative_port,
            first_other_port: cfg.first_other_port,
            internal_port_mode: cfg.internal_port_mode,
            common_internal_port: cfg.common_internal_port,
            lease_seconds: cfg.lease_seconds,
            igd_url: HttpUrl::parse(&cfg.igd_url),
            web_port,
            election: Some(election::Settings::from_config(cfg)),
            representative_lease_seconds: cfg.representative_lease_seconds,
            ..Options::default()
        }
    }
}

impl Default for Options {
    fn default() -> Options {
        Options {
            representative_port: 8080,
            first_other_port: 8081,
            max_port_tries: 64,
            internal_port_mode: InternalPortMode::SameAsExternal,
            common_internal_port: 80,
            web_port: 8080,
            lease_seconds: 3600,
            igd_url: None,
            walk_interval: Duration::from_secs(5),
            search_initial: Duration::from_secs(1),
            search_max: Duration::from_secs(30),
            no_igd_after: Duration::from_secs(3),
            recheck_interval: Duration::from_secs(30),
            lan_group: SocketAddrV4::new(lanproto::DEFAULT_GROUP, lanproto::DEFAULT_PORT),
            notice_schedule: [0, 200, 600, 1400, 3000, 6200]
                .map(Duration::from_millis)
                .to_vec(),
            notice_grace: Duration::from_secs(15),
            election: None,
            representative_lease_seconds: 6,
            takeover_retry: Duration::from_secs(1),
            lan_addr: None,
        }
    }
}
