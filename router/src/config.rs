//! Configuration: command-line flags ([`Args`]) layered over an optional TOML file
//! ([`FileConfig`]), validated into one [`Config`].
//!
//! Precedence, lowest first: built-in defaults, the preset (`--preset` or `nat.preset`, default
//! `home`), the file's individual fields, the flags' individual fields. Every error names the
//! field (`config field "nat.timeouts.udp"` or `option --udp-timeout`) and says how to fix it.

use std::fmt;
use std::net::{Ipv4Addr, SocketAddr};
use std::ops::RangeInclusive;
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::Parser;
use serde::Deserialize;

use crate::nat::{
    Behaviour, FilteringBehaviour, Forward, MappingBehaviour, PortAllocation, Preset, Protocol,
};

/// Default dynamic port range: the unprivileged ports.
pub const DEFAULT_PORT_RANGE: RangeInclusive<u16> = 1024..=65535;
/// Port of the control API (and later the admin page), on the LAN address.
pub const DEFAULT_CONTROL_PORT: u16 = 80;

/// A userspace home router: NAPT on a TUN device, port forwards, and a LAN-only control API.
///
/// The router reads its WAN and LAN addresses from the two interfaces, creates the TUN device,
/// installs policy-routing rules that steer every packet crossing between LAN and WAN through it,
/// translates those packets, and removes everything it added when it exits (SIGINT, SIGTERM or an
/// error). Run it as root inside the router's network namespace (or on a Linux box whose two
/// interfaces face the ISP and the home network).
#[derive(Parser, Debug, Clone, Default)]
#[command(
    name = "router",
    version,
    override_usage = "router --wan IFACE --lan IFACE [--config FILE] [OPTIONS]",
    after_long_help = "\
EXAMPLES:
  router --wan wan0 --lan lan0
  router --wan wan0 --lan lan0 --preset symmetric --udp-timeout 30
  router --wan wan0 --lan lan0 --forward tcp:8080=192.168.1.101:8080 --pcap-wan /tmp/wan.pcap
  router --config router.toml --print-config

CONTROL API (LAN only, default http://<LAN address>:80):
  GET  /api/status  /api/sessions  /api/forwards  /metrics
  POST /api/preset (body: preset name)   POST /api/behaviour (JSON fields)   POST /api/flush
  POST /api/wan (body: ADDR/LEN)         POST /api/forwards (JSON)   DELETE /api/forwards/PROTO/PORT
  POSTs need Content-Type: application/json; [admin] password adds HTTP Basic auth

PRESETS:
  home             endpoint-independent mapping, address-and-port-dependent filtering,
                   port preservation, hairpin (a typical Linux home router; the default)
  fullcone         endpoint-independent mapping and filtering
  restricted       endpoint-independent mapping, address-dependent filtering
  port-restricted  the same translation as home, under its classic STUN name
  symmetric        address-and-port-dependent mapping and filtering, random ports
All presets: hairpin on, default timeouts. Individual options override the preset."
)]
pub struct Args {
    /// WAN interface (faces the ISP). Required here or as `wan` in the config file.
    #[arg(long, value_name = "IFACE")]
    pub wan: Option<String>,
    /// LAN interface (faces the home network). Required here or as `lan` in the config file.
    #[arg(long, value_name = "IFACE")]
    pub lan: Option<String>,
    /// TOML configuration file (see router/router.example.toml). Flags override its fields.
    #[arg(long, short = 'c', value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Override the WAN address (default: the first IPv4 address of the WAN interface, followed
    /// when it changes).
    #[arg(long, value_name = "ADDR")]
    pub wan_addr: Option<Ipv4Addr>,
    /// Override the LAN address and prefix (default: read from the LAN interface).
    #[arg(long, value_name = "ADDR/LEN", value_parser = parse_lan_addr_flag)]
    pub lan_addr: Option<(Ipv4Addr, u8)>,

    /// NAT behaviour preset: home, fullcone, restricted, port-restricted, symmetric.
    #[arg(long, value_name = "NAME")]
    pub preset: Option<Preset>,
    /// Mapping behaviour (RFC 4787 section 4.1): endpoint-independent, address-dependent,
    /// address-and-port-dependent.
    #[arg(long, value_name = "KIND")]
    pub mapping: Option<MappingBehaviour>,
    /// Filtering behaviour (RFC 4787 section 5): endpoint-independent, address-dependent,
    /// address-and-port-dependent.
    #[arg(long, value_name = "KIND")]
    pub filtering: Option<FilteringBehaviour>,
    /// External port choice (RFC 4787 section 4.2): preserve, sequential, random.
    #[arg(long, value_name = "KIND")]
    pub port_allocation: Option<PortAllocation>,
    /// Hairpinning (RFC 4787 section 6): true or false.
    #[arg(long, value_name = "BOOL")]
    pub hairpin: Option<bool>,
    /// UDP mapping timeout in seconds (default 120, RFC 4787 REQ-5).
    #[arg(long, value_name = "SECS", value_parser = parse_secs_flag, allow_negative_numbers = true)]
    pub udp_timeout: Option<Duration>,
    /// TCP established-connection timeout in seconds (default 7440, RFC 5382 REQ-5).
    #[arg(long, value_name = "SECS", value_parser = parse_secs_flag, allow_negative_numbers = true)]
    pub tcp_established_timeout: Option<Duration>,
    /// TCP transitory (handshake/closing) timeout in seconds (default 240, RFC 5382).
    #[arg(long, value_name = "SECS", value_parser = parse_secs_flag, allow_negative_numbers = true)]
    pub tcp_transitory_timeout: Option<Duration>,
    /// ICMP query timeout in seconds (default 60, RFC 5508 REQ-1).
    #[arg(long, value_name = "SECS", value_parser = parse_secs_flag, allow_negative_numbers = true)]
    pub icmp_timeout: Option<Duration>,
    /// Dynamic external port range, LOW-HIGH (default 1024-65535).
    #[arg(long, value_name = "LOW-HIGH", value_parser = parse_port_range_flag)]
    pub port_range: Option<RangeInclusive<u16>>,
    /// Static port forward `PROTO:EXT_PORT=INT_ADDR[:INT_PORT]`, repeatable; adds to the file's
    /// `[[forward]]` entries. Example: tcp:8080=192.168.1.101:8080.
    #[arg(long = "forward", value_name = "SPEC", value_parser = parse_forward_flag)]
    pub forwards: Vec<ForwardSpec>,

    /// Control API listen address (default: the LAN address, port 80). Keep it on the LAN.
    #[arg(long, value_name = "ADDR:PORT")]
    pub listen: Option<SocketAddr>,
    /// Write the LAN-side view (outbound before, inbound after translation) to this pcap file.
    #[arg(long, value_name = "FILE")]
    pub pcap_lan: Option<PathBuf>,
    /// Write the WAN-side view (outbound after, inbound before translation) to this pcap file.
    #[arg(long, value_name = "FILE")]
    pub pcap_wan: Option<PathBuf>,
    /// Name of the LAN side's TUN device to create (default tun0, at most 14 characters); the
    /// WAN side's is the same name with a `w` (tun0w).
    #[arg(long, value_name = "NAME")]
    pub tun: Option<String>,
    /// Routing table that sends the LAN side's packets to its TUN device (default 100); the WAN
    /// side uses the next one (101).
    #[arg(long, value_name = "N")]
    pub table: Option<u32>,
    /// Seed for the NAT's port randomisation (default: random, logged at start).
    #[arg(long, value_name = "N")]
    pub seed: Option<u64>,
    /// Open the TUN device without checksum and segmentation offloads (every packet then
    /// crosses the TUN at most 1500 bytes long, with a complete checksum).
    #[arg(long)]
    pub no_offload: bool,
    /// Keep looking for packets this many microseconds after the last one instead of sleeping
    /// (default 200; 0 turns it off, leaving the core idle between packets).
    #[arg(long, value_name = "US")]
    pub busy_poll_us: Option<u64>,
    /// Log filter: error, warn, info, debug, trace, or tracing directives (default info, or
    /// RUST_LOG when set).
    #[arg(long, value_name = "LEVEL")]
    pub log_level: Option<String>,
    /// Remove the rules a crashed earlier run left in this namespace and restore the sysctls it
    /// had changed, then start. Needed only for rules with no owner record: a start after a
    /// crash or `kill -9` removes them by itself once their recorded owner is gone.
    #[arg(long)]
    pub cleanup_stale: bool,
    /// Validate the configuration, print the effective settings and exit (no root needed).
    #[arg(long)]
    pub print_config: bool,
}

/// A configuration error: which field, what is wrong, how to fix it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ConfigError {
    /// `config field "nat.timeouts.udp"`, `option --udp-timeout`, `config file "x.toml"`.
    pub field: String,
    /// What is wrong, including the offending value.
    pub problem: String,
    /// How to fix it, e.g. `set e.g. udp = 120`.
    pub fix: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.problem)?;
        if !self.fix.is_empty() {
            write!(f, "; {}", self.fix)?;
        }
        Ok(())
    }
}

fn field_err(field: &str, problem: impl Into<String>, fix: impl Into<String>) -> ConfigError {
    ConfigError {
        field: format!("config field \"{field}\""),
        problem: problem.into(),
        fix: fix.into(),
    }
}

fn flag_err(flag: &str, problem: impl Into<String>, fix: impl Into<String>) -> ConfigError {
    ConfigError {
        field: format!("option --{flag}"),
        problem: problem.into(),
        fix: fix.into(),
    }
}

/// The TOML file. Every table denies unknown fields so a typo is an error, not a silent default.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    pub wan: Option<String>,
    pub lan: Option<String>,
    pub wan_addr: Option<String>,
    pub lan_addr: Option<String>,
    pub tun: Option<String>,
    pub seed: Option<u64>,
    pub log_level: Option<String>,
    #[serde(default)]
    pub nat: NatSection,
    #[serde(default)]
    pub control: ControlSection,
    #[serde(default)]
    pub capture: CaptureSection,
    #[serde(default)]
    pub dataplane: DataplaneSection,
    #[serde(default)]
    pub routing: RoutingSection,
    #[serde(default, rename = "forward")]
    pub forwards: Vec<ForwardEntry>,
    #[serde(default)]
    pub upnp: crate::upnp::UpnpSection,
    #[serde(default)]
    pub dhcp: crate::dhcp::DhcpSection,
    #[serde(default)]
    pub admin: crate::access::AdminSection,
}

/// `[nat]`: the behaviour. Enum values are strings so that a bad value names its field.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NatSection {
    pub preset: Option<String>,
    pub port_range: Option<String>,
    pub mapping: Option<String>,
    pub filtering: Option<String>,
    pub port_allocation: Option<String>,
    pub hairpin: Option<bool>,
    pub timeouts: Option<TimeoutsPatch>,
    /// `[nat.wan_sources]`: source ranges refused from the WAN (nat/guard.rs).
    pub wan_sources: Option<crate::nat::WanSourcesSection>,
    /// `[nat.limits]`: session and fragment limits (nat/limits.rs).
    pub limits: Option<crate::nat::LimitsSection>,
}

impl NatSection {
    /// The behaviour fields of this section.
    pub fn behaviour(&self) -> BehaviourPatch {
        BehaviourPatch {
            preset: None,
            mapping: self.mapping.clone(),
            filtering: self.filtering.clone(),
            port_allocation: self.port_allocation.clone(),
            hairpin: self.hairpin,
            timeouts: self.timeouts.clone(),
        }
    }
}

/// Behaviour fields, shared by `[nat]` in the file and `POST /api/behaviour`.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BehaviourPatch {
    /// Only used by the API: start from this preset, then apply the other fields.
    pub preset: Option<String>,
    pub mapping: Option<String>,
    pub filtering: Option<String>,
    pub port_allocation: Option<String>,
    pub hairpin: Option<bool>,
    pub timeouts: Option<TimeoutsPatch>,
}

/// `[nat.timeouts]`, in seconds. Signed so that `-5` gets our message, not serde's.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TimeoutsPatch {
    pub udp: Option<i64>,
    pub tcp_established: Option<i64>,
    pub tcp_transitory: Option<i64>,
    pub icmp: Option<i64>,
}

/// `[control]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ControlSection {
    pub listen: Option<String>,
}

/// `[capture]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CaptureSection {
    pub lan: Option<PathBuf>,
    pub wan: Option<PathBuf>,
}

/// `[dataplane]`: how packets cross the TUN device.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DataplaneSection {
    /// Checksum and segmentation offloads on the TUN (default true).
    pub offload: Option<bool>,
    /// Busy polling after a packet, in microseconds (default 200; 0: off).
    pub busy_poll_us: Option<i64>,
}

/// Longest busy-polling window accepted: beyond a few milliseconds the loop just burns a core.
pub const MAX_BUSY_POLL_US: u64 = 10_000;

/// `[routing]`: the table and rule preferences of the recipe (DESIGN.md).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RoutingSection {
    pub table: Option<i64>,
    pub pref_wan: Option<i64>,
    pub pref_wan_local: Option<i64>,
    pub pref_wan_other: Option<i64>,
    pub pref_hairpin: Option<i64>,
    pub pref_lan_local: Option<i64>,
    pub pref_lan: Option<i64>,
    pub pref_local: Option<i64>,
}

/// `[[forward]]`, also the body of `POST /api/forwards`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ForwardEntry {
    pub protocol: String,
    pub external_port: i64,
    pub internal_addr: String,
    pub internal_port: Option<i64>,
    pub remote_host: Option<String>,
    pub description: Option<String>,
}

/// A validated static forward.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ForwardSpec {
    pub protocol: Protocol,
    pub external_port: u16,
    pub internal_addr: Ipv4Addr,
    pub internal_port: u16,
    pub remote_host: Option<Ipv4Addr>,
    pub description: String,
}

impl ForwardSpec {
    /// The engine's form: a static forward never expires.
    pub fn to_forward(&self) -> Forward {
        Forward {
            protocol: self.protocol,
            external_port: self.external_port,
            internal_addr: self.internal_addr,
            internal_port: self.internal_port,
            remote_host: self.remote_host,
            expires: None,
            description: self.description.clone(),
        }
    }
}

/// Table and rule preferences of the routing recipe.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoutingConfig {
    /// Table holding `default dev tun0` (DESIGN.md: 100).
    pub table: u32,
    /// `iif WAN ipproto tcp|udp|icmp lookup TABLE` (DESIGN.md: 10).
    pub pref_wan: u32,
    /// `iif WAN to WAN_IP lookup local`, so ARP for the WAN address is answered.
    pub pref_wan_local: u32,
    /// `iif WAN lookup TABLE`: every other protocol from the WAN also goes to the TUN.
    pub pref_wan_other: u32,
    /// `iif LAN to WAN_IP lookup TABLE`: hairpin (DESIGN.md: 14).
    pub pref_hairpin: u32,
    /// `iif LAN lookup local`: the router's own LAN services (DESIGN.md: 15).
    pub pref_lan_local: u32,
    /// `iif LAN lookup TABLE`: LAN to internet (DESIGN.md: 20).
    pub pref_lan: u32,
    /// Where the `lookup local` rule moves from preference 0 (DESIGN.md: 100).
    pub pref_local: u32,
}

impl Default for RoutingConfig {
    fn default() -> Self {
        RoutingConfig {
            table: 100,
            pref_wan: 10,
            pref_wan_local: 11,
            pref_wan_other: 12,
            pref_hairpin: 14,
            pref_lan_local: 15,
            pref_lan: 20,
            pref_local: 100,
        }
    }
}

/// The effective configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub wan_iface: String,
    pub lan_iface: String,
    /// `None`: read from the WAN interface and follow its changes.
    pub wan_addr: Option<Ipv4Addr>,
    /// `None`: read from the LAN interface.
    pub lan_addr: Option<(Ipv4Addr, u8)>,
    /// The preset the behaviour started from.
    pub preset: Preset,
    pub behaviour: Behaviour,
    pub port_range: RangeInclusive<u16>,
    pub forwards: Vec<ForwardSpec>,
    /// `None`: the LAN address, port 80.
    pub listen: Option<SocketAddr>,
    pub pcap_lan: Option<PathBuf>,
    pub pcap_wan: Option<PathBuf>,
    pub tun_name: String,
    /// `[nat.wan_sources]`, validated.
    pub wan_sources: crate::nat::WanSources,
    /// `[nat.limits]`, validated.
    pub limits: crate::nat::Limits,
    /// TUN offloads wanted (the device falls back to none when the kernel refuses them).
    pub offload: bool,
    /// Busy-polling window of the dataplane loop ([`crate::dataplane::BUSY_POLL`] by default).
    pub busy_poll: Duration,
    pub routing: RoutingConfig,
    pub seed: Option<u64>,
    pub log_level: Option<String>,
    pub cleanup_stale: bool,
    /// `[upnp]`: the IGD / NAT-PMP / PCP service (validated).
    pub upnp: crate::upnp::UpnpSection,
    /// `[dhcp]`: the DHCP server (validated; the subnet checks also run at start, once the
    /// LAN address is read from the interface).
    pub dhcp: crate::dhcp::DhcpSection,
    /// `[admin]`: password, host names and connection caps of the control API (validated).
    pub admin: crate::access::AdminSection,
}

impl Config {
    /// Reads the file named by `--config` (if any) and merges the flags over it.
    pub fn load(args: &Args) -> Result<Config, ConfigError> {
        let file = match &args.config {
            Some(path) => read_file(path)?,
            None => FileConfig::default(),
        };
        Config::merge(args, file)
    }

    /// Merges flags over an already parsed file.
    pub fn merge(args: &Args, file: FileConfig) -> Result<Config, ConfigError> {
        let wan_iface = args.wan.clone().or(file.wan).ok_or_else(|| ConfigError {
            field: "option --wan".into(),
            problem: "no WAN interface given".into(),
            fix: "pass --wan IFACE (e.g. --wan wan0) or set wan = \"wan0\" in the config file"
                .into(),
        })?;
        let lan_iface = args.lan.clone().or(file.lan).ok_or_else(|| ConfigError {
            field: "option --lan".into(),
            problem: "no LAN interface given".into(),
            fix: "pass --lan IFACE (e.g. --lan lan0) or set lan = \"lan0\" in the config file"
                .into(),
        })?;
        check_iface_name("wan", &wan_iface)?;
        check_iface_name("lan", &lan_iface)?;

        let wan_addr = match (args.wan_addr, file.wan_addr) {
            (Some(a), _) => Some(a),
            (None, Some(s)) => Some(s.parse::<Ipv4Addr>().map_err(|_| {
                field_err(
                    "wan_addr",
                    format!("expected an IPv4 address, got {s:?}"),
                    "set e.g. wan_addr = \"203.0.113.2\" or remove it to read the interface",
                )
            })?),
            (None, None) => None,
        };
        let lan_addr = match (args.lan_addr, file.lan_addr) {
            (Some(a), _) => Some(a),
            (None, Some(s)) => Some(parse_addr_len(&s).map_err(|p| {
                field_err(
                    "lan_addr",
                    p,
                    "set e.g. lan_addr = \"192.168.1.1/24\" or remove it to read the interface",
                )
            })?),
            (None, None) => None,
        };

        // Behaviour: preset, then the file's fields, then the flags' fields.
        let preset = match (args.preset, &file.nat.preset) {
            (Some(p), _) => p,
            (None, Some(s)) => parse_preset(s)
                .map_err(|p| field_err("nat.preset", p, "set e.g. preset = \"home\""))?,
            (None, None) => Preset::Home,
        };
        let mut behaviour = preset.behaviour();
        file.nat
            .behaviour()
            .apply(&mut behaviour, "nat.")
            .map_err(|(f, p, fix)| field_err(&f, p, fix))?;
        if let Some(m) = args.mapping {
            behaviour.mapping = m;
        }
        if let Some(f) = args.filtering {
            behaviour.filtering = f;
        }
        if let Some(p) = args.port_allocation {
            behaviour.port_allocation = p;
        }
        if let Some(h) = args.hairpin {
            behaviour.hairpin = h;
        }
        if let Some(t) = args.udp_timeout {
            behaviour.timeouts.udp = t;
        }
        if let Some(t) = args.tcp_established_timeout {
            behaviour.timeouts.tcp_established = t;
        }
        if let Some(t) = args.tcp_transitory_timeout {
            behaviour.timeouts.tcp_transitory = t;
        }
        if let Some(t) = args.icmp_timeout {
            behaviour.timeouts.icmp = t;
        }

        let port_range = match (&args.port_range, &file.nat.port_range) {
            (Some(r), _) => r.clone(),
            (None, Some(s)) => parse_port_range(s).map_err(|p| {
                field_err("nat.port_range", p, "set e.g. port_range = \"1024-65535\"")
            })?,
            (None, None) => DEFAULT_PORT_RANGE,
        };

        let mut forwards = Vec::new();
        for (i, entry) in file.forwards.iter().enumerate() {
            forwards.push(
                entry
                    .validate()
                    .map_err(|(f, p, fix)| field_err(&format!("forward[{i}].{f}"), p, fix))?,
            );
        }
        forwards.extend(args.forwards.iter().cloned());
        check_forward_duplicates(&forwards)?;

        let listen = match (args.listen, &file.control.listen) {
            (Some(a), _) => Some(a),
            (None, Some(s)) => Some(s.parse::<SocketAddr>().map_err(|_| {
                field_err(
                    "control.listen",
                    format!("expected ADDR:PORT, got {s:?}"),
                    "set e.g. listen = \"192.168.1.1:80\" or remove it for the LAN address, port 80",
                )
            })?),
            (None, None) => None,
        };

        let tun_name = args
            .tun
            .clone()
            .or(file.tun)
            .unwrap_or_else(|| "tun0".into());
        check_iface_name("tun", &tun_name)?;
        if tun_name.len() > 14 {
            return Err(ConfigError {
                field: "config field \"tun\" / option --tun".into(),
                problem: format!(
                    "{tun_name:?} leaves no room for the WAN side's device {tun_name}w"
                ),
                fix: "use at most 14 characters".into(),
            });
        }
        let wan_sources = file
            .nat
            .wan_sources
            .clone()
            .unwrap_or_default()
            .to_filter()
            .map_err(|(f, p, fix)| field_err(&format!("nat.wan_sources.{f}"), p, fix))?;
        let limits = file
            .nat
            .limits
            .clone()
            .unwrap_or_default()
            .to_limits()
            .map_err(|(f, p, fix)| field_err(&format!("nat.limits.{f}"), p, fix))?;

        let offload = !args.no_offload && file.dataplane.offload.unwrap_or(true);
        let busy_poll_us = args
            .busy_poll_us
            .map(i128::from)
            .or(file.dataplane.busy_poll_us.map(i128::from))
            .unwrap_or(crate::dataplane::BUSY_POLL.as_micros() as i128);
        if !(0..=i128::from(MAX_BUSY_POLL_US)).contains(&busy_poll_us) {
            let problem = format!("{busy_poll_us} is out of range");
            let fix = format!("use 0 (off) to {MAX_BUSY_POLL_US} microseconds; the default is 200");
            return Err(if args.busy_poll_us.is_some() {
                flag_err("busy-poll-us", problem, fix)
            } else {
                field_err("dataplane.busy_poll_us", problem, fix)
            });
        }

        let routing = file.routing.validate(args.table)?;
        file.upnp
            .validate()
            .map_err(|(field, problem, fix)| field_err(&format!("upnp.{field}"), problem, fix))?;
        file.dhcp
            .validate(lan_addr)
            .map_err(|(field, problem, fix)| field_err(&format!("dhcp.{field}"), problem, fix))?;
        file.admin
            .validate()
            .map_err(|(field, problem, fix)| field_err(&format!("admin.{field}"), problem, fix))?;

        Ok(Config {
            wan_iface,
            lan_iface,
            wan_addr,
            lan_addr,
            preset,
            behaviour,
            port_range,
            forwards,
            listen,
            pcap_lan: args.pcap_lan.clone().or(file.capture.lan),
            pcap_wan: args.pcap_wan.clone().or(file.capture.wan),
            tun_name,
            wan_sources,
            limits,
            offload,
            busy_poll: Duration::from_micros(busy_poll_us as u64),
            routing,
            seed: args.seed.or(file.seed),
            log_level: args.log_level.clone().or(file.log_level),
            cleanup_stale: args.cleanup_stale,
            upnp: file.upnp,
            dhcp: file.dhcp,
            admin: file.admin,
        })
    }
}

/// Reads and parses a TOML file; syntax and type errors carry toml's line and column.
pub fn read_file(path: &Path) -> Result<FileConfig, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
        field: format!("config file {:?}", path.display().to_string()),
        problem: format!("cannot read it: {e}"),
        fix: "check the path given to --config".into(),
    })?;
    parse_file(&text).map_err(|mut e| {
        if e.field.is_empty() {
            e.field = format!("config file {:?}", path.display().to_string());
        }
        e
    })
}

/// Parses TOML text. An unknown or mistyped field is reported with its name and position.
pub fn parse_file(text: &str) -> Result<FileConfig, ConfigError> {
    toml::from_str(text).map_err(|e| ConfigError {
        field: String::new(),
        problem: e.to_string().trim_end().replace('\n', "\n  "),
        fix: "see router/router.example.toml for every field".into(),
    })
}

/// The field path error of a patch: (field, problem, fix).
pub type FieldError = (String, String, String);

impl BehaviourPatch {
    /// Applies the set fields to `b`. `prefix` is prepended to field names in errors ("nat.").
    pub fn apply(&self, b: &mut Behaviour, prefix: &str) -> Result<(), FieldError> {
        if let Some(s) = &self.preset {
            *b = parse_preset(s)
                .map_err(|p| {
                    (
                        format!("{prefix}preset"),
                        p,
                        "use e.g. \"home\"".to_string(),
                    )
                })?
                .behaviour();
        }
        if let Some(s) = &self.mapping {
            b.mapping = s.parse().map_err(|_| {
                (
                    format!("{prefix}mapping"),
                    format!("unknown mapping behaviour {s:?}"),
                    "use endpoint-independent, address-dependent or address-and-port-dependent"
                        .to_string(),
                )
            })?;
        }
        if let Some(s) = &self.filtering {
            b.filtering = s.parse().map_err(|_| {
                (
                    format!("{prefix}filtering"),
                    format!("unknown filtering behaviour {s:?}"),
                    "use endpoint-independent, address-dependent or address-and-port-dependent"
                        .to_string(),
                )
            })?;
        }
        if let Some(s) = &self.port_allocation {
            b.port_allocation = s.parse().map_err(|_| {
                (
                    format!("{prefix}port_allocation"),
                    format!("unknown port allocation {s:?}"),
                    "use preserve, sequential or random".to_string(),
                )
            })?;
        }
        if let Some(h) = self.hairpin {
            b.hairpin = h;
        }
        if let Some(t) = &self.timeouts {
            let p = format!("{prefix}timeouts.");
            if let Some(v) = t.udp {
                b.timeouts.udp = secs(&p, "udp", v, 120)?;
            }
            if let Some(v) = t.tcp_established {
                b.timeouts.tcp_established = secs(&p, "tcp_established", v, 7440)?;
            }
            if let Some(v) = t.tcp_transitory {
                b.timeouts.tcp_transitory = secs(&p, "tcp_transitory", v, 240)?;
            }
            if let Some(v) = t.icmp {
                b.timeouts.icmp = secs(&p, "icmp", v, 60)?;
            }
        }
        Ok(())
    }
}

/// Longest accepted timeout: a week (also keeps `Instant + timeout` far from overflow).
const MAX_TIMEOUT_SECS: i64 = 7 * 24 * 3600;

fn secs(prefix: &str, name: &str, v: i64, example: u64) -> Result<Duration, FieldError> {
    if v <= 0 || v > MAX_TIMEOUT_SECS {
        return Err((
            format!("{prefix}{name}"),
            format!("expected seconds > 0 and <= {MAX_TIMEOUT_SECS}, got {v}"),
            format!("set e.g. {name} = {example}"),
        ));
    }
    Ok(Duration::from_secs(v as u64))
}

impl ForwardEntry {
    /// Validates one forward; errors carry the field name within the entry.
    pub fn validate(&self) -> Result<ForwardSpec, FieldError> {
        let e = |f: &str, p: String, fix: &str| (f.to_string(), p, fix.to_string());
        let protocol: Protocol = self.protocol.parse().map_err(|_| {
            e(
                "protocol",
                format!("unknown protocol {:?}", self.protocol),
                "use \"tcp\" or \"udp\"",
            )
        })?;
        let external_port = port(self.external_port).ok_or_else(|| {
            e(
                "external_port",
                format!("expected a port 1..=65535, got {}", self.external_port),
                "set e.g. external_port = 8080",
            )
        })?;
        let internal_addr: Ipv4Addr = self.internal_addr.parse().map_err(|_| {
            e(
                "internal_addr",
                format!("expected an IPv4 address, got {:?}", self.internal_addr),
                "set e.g. internal_addr = \"192.168.1.101\"",
            )
        })?;
        let internal_port = match self.internal_port {
            None => external_port,
            Some(p) => port(p).ok_or_else(|| {
                e(
                    "internal_port",
                    format!("expected a port 1..=65535, got {p}"),
                    "set e.g. internal_port = 8080",
                )
            })?,
        };
        let remote_host = match &self.remote_host {
            None => None,
            Some(s) if s.is_empty() || s == "*" => None,
            Some(s) => Some(s.parse::<Ipv4Addr>().map_err(|_| {
                e(
                    "remote_host",
                    format!("expected an IPv4 address, got {s:?}"),
                    "set e.g. remote_host = \"198.51.100.10\" or remove it to allow any host",
                )
            })?),
        };
        Ok(ForwardSpec {
            protocol,
            external_port,
            internal_addr,
            internal_port,
            remote_host,
            description: self.description.clone().unwrap_or_default(),
        })
    }
}

fn port(v: i64) -> Option<u16> {
    u16::try_from(v).ok().filter(|p| *p != 0)
}

impl RoutingSection {
    fn validate(&self, table_flag: Option<u32>) -> Result<RoutingConfig, ConfigError> {
        let d = RoutingConfig::default();
        let get =
            |name: &str, v: Option<i64>, default: u32, max: i64| -> Result<u32, ConfigError> {
                match v {
                    None => Ok(default),
                    Some(v) if (1..=max).contains(&v) => Ok(v as u32),
                    Some(v) => Err(field_err(
                        &format!("routing.{name}"),
                        format!("expected 1..={max}, got {v}"),
                        format!("set e.g. {name} = {default}"),
                    )),
                }
            };
        // Tables 253..=255 are the kernel's default, main and local tables.
        let table = match table_flag {
            Some(t) if (1..=252).contains(&t) || t > 255 => t,
            Some(t) => {
                return Err(flag_err(
                    "table",
                    format!("table {t} is reserved (0, 253 default, 254 main, 255 local)"),
                    "use e.g. --table 100",
                ));
            }
            None => {
                let t = get("table", self.table, d.table, u32::MAX as i64)?;
                if (253..=255).contains(&t) {
                    return Err(field_err(
                        "routing.table",
                        format!("table {t} is reserved (253 default, 254 main, 255 local)"),
                        "set e.g. table = 100",
                    ));
                }
                t
            }
        };
        // The WAN side's TUN uses the next table (routing.rs): it must be free too.
        if matches!(table.wrapping_add(1), 0 | 253..=255) {
            let problem = format!(
                "table {table}: the WAN side uses table {}, which is reserved",
                table.wrapping_add(1)
            );
            return Err(match table_flag {
                Some(_) => flag_err("table", problem, "use e.g. --table 100"),
                None => field_err("routing.table", problem, "set e.g. table = 100"),
            });
        }
        let max = 32765; // below the main table's rule
        let r = RoutingConfig {
            table,
            pref_wan: get("pref_wan", self.pref_wan, d.pref_wan, max)?,
            pref_wan_local: get("pref_wan_local", self.pref_wan_local, d.pref_wan_local, max)?,
            pref_wan_other: get("pref_wan_other", self.pref_wan_other, d.pref_wan_other, max)?,
            pref_hairpin: get("pref_hairpin", self.pref_hairpin, d.pref_hairpin, max)?,
            pref_lan_local: get("pref_lan_local", self.pref_lan_local, d.pref_lan_local, max)?,
            pref_lan: get("pref_lan", self.pref_lan, d.pref_lan, max)?,
            pref_local: get("pref_local", self.pref_local, d.pref_local, max)?,
        };
        // The recipe only works in this order (see routing.rs).
        let order = [
            ("pref_wan", r.pref_wan),
            ("pref_wan_local", r.pref_wan_local),
            ("pref_wan_other", r.pref_wan_other),
            ("pref_hairpin", r.pref_hairpin),
            ("pref_lan_local", r.pref_lan_local),
            ("pref_lan", r.pref_lan),
            ("pref_local", r.pref_local),
        ];
        for w in order.windows(2) {
            if w[0].1 >= w[1].1 {
                return Err(field_err(
                    &format!("routing.{}", w[1].0),
                    format!(
                        "must be greater than {} ({}), got {}",
                        w[0].0, w[0].1, w[1].1
                    ),
                    "keep the order pref_wan < pref_wan_local < pref_wan_other < pref_hairpin \
                     < pref_lan_local < pref_lan < pref_local (defaults 10 11 12 14 15 20 100)",
                ));
            }
        }
        Ok(r)
    }
}

fn check_iface_name(field: &str, name: &str) -> Result<(), ConfigError> {
    // IFNAMSIZ is 16 including the NUL (netdevice(7)).
    let ok = !name.is_empty()
        && name.len() < 16
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.@".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(ConfigError {
            field: format!("config field \"{field}\" / option --{field}"),
            problem: format!("{name:?} is not a valid interface name"),
            fix: "use 1 to 15 characters of letters, digits, '-', '_' or '.' (e.g. wan0)".into(),
        })
    }
}

fn check_forward_duplicates(forwards: &[ForwardSpec]) -> Result<(), ConfigError> {
    for (i, a) in forwards.iter().enumerate() {
        if forwards[..i]
            .iter()
            .any(|b| b.protocol == a.protocol && b.external_port == a.external_port)
        {
            return Err(ConfigError {
                field: "config field \"forward\" / option --forward".into(),
                problem: format!("two forwards for {}:{}", a.protocol, a.external_port),
                fix: "keep one forward per protocol and external port".into(),
            });
        }
    }
    Ok(())
}

fn parse_preset(s: &str) -> Result<Preset, String> {
    s.parse::<Preset>().map_err(|_| {
        let names: Vec<String> = Preset::ALL.iter().map(|p| p.to_string()).collect();
        format!("unknown preset {s:?}, expected one of {}", names.join(", "))
    })
}

/// `ADDR/LEN`, e.g. `192.168.1.1/24`.
pub fn parse_addr_len(s: &str) -> Result<(Ipv4Addr, u8), String> {
    let (a, l) = s
        .split_once('/')
        .ok_or_else(|| format!("expected ADDR/LEN, got {s:?}"))?;
    let addr: Ipv4Addr = a
        .trim()
        .parse()
        .map_err(|_| format!("expected an IPv4 address before '/', got {a:?}"))?;
    let len: u8 = l
        .trim()
        .parse()
        .ok()
        .filter(|l| (1..=32).contains(l))
        .ok_or_else(|| format!("expected a prefix length 1..=32 after '/', got {l:?}"))?;
    Ok((addr, len))
}

/// `LOW-HIGH`, e.g. `1024-65535`.
pub fn parse_port_range(s: &str) -> Result<RangeInclusive<u16>, String> {
    let bad = || format!("expected LOW-HIGH with 1 <= LOW <= HIGH <= 65535, got {s:?}");
    let (lo, hi) = s.split_once('-').ok_or_else(bad)?;
    let lo: u16 = lo.trim().parse().map_err(|_| bad())?;
    let hi: u16 = hi.trim().parse().map_err(|_| bad())?;
    if lo == 0 || lo > hi {
        return Err(bad());
    }
    Ok(lo..=hi)
}

/// `PROTO:EXT_PORT=INT_ADDR[:INT_PORT]`, e.g. `tcp:8080=192.168.1.101:8080`.
pub fn parse_forward(s: &str) -> Result<ForwardSpec, String> {
    let bad = |why: &str| format!("{why} in {s:?}; expected e.g. tcp:8080=192.168.1.101:8080");
    let (ext, int) = s.split_once('=').ok_or_else(|| bad("missing '='"))?;
    let (proto, ext_port) = ext.split_once(':').ok_or_else(|| bad("missing PROTO:"))?;
    let (int_addr, int_port) = match int.split_once(':') {
        Some((a, p)) => (a, Some(p)),
        None => (int, None),
    };
    let entry = ForwardEntry {
        protocol: proto.to_ascii_lowercase(),
        external_port: ext_port.parse().map_err(|_| bad("bad external port"))?,
        internal_addr: int_addr.to_string(),
        internal_port: match int_port {
            Some(p) => Some(p.parse().map_err(|_| bad("bad internal port"))?),
            None => None,
        },
        remote_host: None,
        description: Some(format!("--forward {s}")),
    };
    entry.validate().map_err(|(_, p, _)| bad(&p))
}

fn parse_secs_flag(s: &str) -> Result<Duration, String> {
    let v: i64 = s
        .parse()
        .map_err(|_| format!("expected whole seconds > 0, got {s:?}; pass e.g. 120"))?;
    secs("", "timeout", v, 120).map_err(|(_, p, _)| format!("{p}; pass e.g. 120"))
}

fn parse_port_range_flag(s: &str) -> Result<RangeInclusive<u16>, String> {
    parse_port_range(s).map_err(|e| format!("{e}; pass e.g. 1024-65535"))
}

fn parse_lan_addr_flag(s: &str) -> Result<(Ipv4Addr, u8), String> {
    parse_addr_len(s).map_err(|e| format!("{e}; pass e.g. 192.168.1.1/24"))
}

fn parse_forward_flag(s: &str) -> Result<ForwardSpec, String> {
    parse_forward(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(extra: &[&str]) -> Args {
        let mut v = vec!["router", "--wan", "wan0", "--lan", "lan0"];
        v.extend_from_slice(extra);
        Args::try_parse_from(v).unwrap()
    }

    fn merge_text(a: &Args, text: &str) -> Result<Config, ConfigError> {
        Config::merge(a, parse_file(text)?)
    }

    #[test]
    fn defaults_are_the_home_preset_and_design_routing() {
        let c = Config::merge(&args(&[]), FileConfig::default()).unwrap();
        assert_eq!(c.behaviour, Behaviour::default());
        assert_eq!(c.preset, Preset::Home);
        assert_eq!(c.port_range, DEFAULT_PORT_RANGE);
        assert_eq!(c.routing, RoutingConfig::default());
        assert_eq!(c.tun_name, "tun0");
        assert!(c.listen.is_none() && c.forwards.is_empty());
    }

    #[test]
    fn example_file_parses() {
        let text = include_str!("../router.example.toml");
        let c = merge_text(&Args::default(), text).unwrap();
        assert_eq!(c.wan_iface, "wan0");
        assert_eq!(c.forwards.len(), 1);
        assert_eq!(c.behaviour.timeouts.udp, Duration::from_secs(120));
    }

    #[test]
    fn flags_override_file_and_file_overrides_preset() {
        let text = r#"
            [nat]
            preset = "symmetric"
            filtering = "endpoint-independent"
            [nat.timeouts]
            udp = 30
        "#;
        let c = merge_text(&args(&["--udp-timeout", "5"]), text).unwrap();
        let sym = Preset::Symmetric.behaviour();
        assert_eq!(c.behaviour.mapping, sym.mapping);
        assert_eq!(
            c.behaviour.filtering,
            FilteringBehaviour::EndpointIndependent
        );
        assert_eq!(c.behaviour.timeouts.udp, Duration::from_secs(5));
    }

    #[test]
    fn negative_timeout_names_field_and_fix() {
        let e = merge_text(&args(&[]), "[nat.timeouts]\nudp = -5\n").unwrap_err();
        assert_eq!(
            e.to_string(),
            "config field \"nat.timeouts.udp\": expected seconds > 0 and <= 604800, got -5; \
             set e.g. udp = 120"
        );
    }

    #[test]
    fn dataplane_switches_come_from_file_and_flags() {
        let c = merge_text(&args(&[]), "").unwrap();
        assert!(c.offload);
        assert_eq!(c.busy_poll, crate::dataplane::BUSY_POLL);
        let c = merge_text(
            &args(&[]),
            "[dataplane]\noffload = false\nbusy_poll_us = 50\n",
        )
        .unwrap();
        assert!(!c.offload);
        assert_eq!(c.busy_poll, Duration::from_micros(50));
        let c = merge_text(&args(&["--no-offload", "--busy-poll-us", "7"]), "").unwrap();
        assert!(!c.offload);
        assert_eq!(c.busy_poll, Duration::from_micros(7));
        let e = merge_text(&args(&[]), "[dataplane]\nbusy_poll_us = -1\n").unwrap_err();
        assert_eq!(e.field, "config field \"dataplane.busy_poll_us\"", "{e}");
        assert!(e.fix.contains("10000"), "{e}");
        let e = merge_text(&args(&["--busy-poll-us", "20000"]), "").unwrap_err();
        assert_eq!(e.field, "option --busy-poll-us", "{e}");
    }

    #[test]
    fn unknown_fields_are_named() {
        let e = parse_file("[nat]\nmaping = \"x\"\n").unwrap_err();
        assert!(e.to_string().contains("maping"), "{e}");
        let e = parse_file("[nat.timeouts]\nudpp = 3\n").unwrap_err();
        assert!(e.to_string().contains("udpp"), "{e}");
        let e = parse_file("wann = \"x\"\n").unwrap_err();
        assert!(e.to_string().contains("wann"), "{e}");
        let e = parse_file("[[forward]]\nprotocol = \"tcp\"\nexternal_port = 1\ninternal_addr = \"1.2.3.4\"\ncolour = 1\n").unwrap_err();
        assert!(e.to_string().contains("colour"), "{e}");
    }

    #[test]
    fn bad_values_name_their_field() {
        let cases = [
            ("[nat]\nmapping = \"cone\"\n", "nat.mapping"),
            ("[nat]\nfiltering = \"x\"\n", "nat.filtering"),
            ("[nat]\nport_allocation = \"x\"\n", "nat.port_allocation"),
            ("[nat]\npreset = \"x\"\n", "nat.preset"),
            ("[nat]\nport_range = \"9-3\"\n", "nat.port_range"),
            ("[nat.timeouts]\nicmp = 0\n", "nat.timeouts.icmp"),
            ("wan_addr = \"x\"\n", "wan_addr"),
            ("lan_addr = \"192.168.1.1\"\n", "lan_addr"),
            ("[control]\nlisten = \"x\"\n", "control.listen"),
            ("[admin]\npassword = \"\"\n", "admin.password"),
            ("[admin]\nhosts = [\"http://r\"]\n", "admin.hosts"),
            (
                "[admin]\nmax_connections_per_client = 0\n",
                "admin.max_connections_per_client",
            ),
            ("[routing]\ntable = 254\n", "routing.table"),
            ("[routing]\npref_lan = 5\n", "routing.pref_lan"),
            (
                "[[forward]]\nprotocol = \"sctp\"\nexternal_port = 1\ninternal_addr = \"1.2.3.4\"\n",
                "forward[0].protocol",
            ),
            (
                "[[forward]]\nprotocol = \"tcp\"\nexternal_port = 70000\ninternal_addr = \"1.2.3.4\"\n",
                "forward[0].external_port",
            ),
            (
                "[[forward]]\nprotocol = \"tcp\"\nexternal_port = 80\ninternal_addr = \"1.2.3\"\n",
                "forward[0].internal_addr",
            ),
        ];
        for (text, field) in cases {
            let e = merge_text(&args(&[]), text).unwrap_err();
            assert_eq!(e.field, format!("config field \"{field}\""), "{text}: {e}");
            assert!(!e.fix.is_empty(), "{text}: no fix in {e}");
        }
    }

    #[test]
    fn dhcp_section_fields_are_named() {
        let c = merge_text(&args(&[]), "[dhcp]\n").unwrap();
        assert!(c.dhcp.enabled());
        let text = "lan_addr = \"192.168.1.1/24\"\n[dhcp]\npool_start = \"10.0.0.5\"\n";
        let e = merge_text(&args(&[]), text).unwrap_err();
        assert_eq!(e.field, "config field \"dhcp.pool_start\"", "{e}");
        let text = "[dhcp]\nlease_time = 0\n";
        let e = merge_text(&args(&[]), text).unwrap_err();
        assert_eq!(e.field, "config field \"dhcp.lease_time\"", "{e}");
        let text = "[[dhcp.reservation]]\nmac = \"zz\"\naddr = \"192.168.1.9\"\n";
        let e = merge_text(&args(&[]), text).unwrap_err();
        assert_eq!(e.field, "config field \"dhcp.reservation[0].mac\"", "{e}");
        let e = parse_file("[dhcp]\npool = 1\n").unwrap_err();
        assert!(e.to_string().contains("pool"), "{e}");
    }

    #[test]
    fn missing_interfaces_say_how_to_fix() {
        let e = Config::merge(&Args::default(), FileConfig::default()).unwrap_err();
        assert!(e.to_string().contains("--wan"), "{e}");
        let e = Config::merge(
            &args(&["--tun", "this-name-is-too-long"]),
            FileConfig::default(),
        )
        .unwrap_err();
        assert!(e.to_string().contains("tun"), "{e}");
    }

    #[test]
    fn forward_flag_syntax() {
        let f = parse_forward("tcp:8080=192.168.1.101:80").unwrap();
        assert_eq!(
            (
                f.protocol,
                f.external_port,
                f.internal_addr,
                f.internal_port
            ),
            (Protocol::Tcp, 8080, Ipv4Addr::new(192, 168, 1, 101), 80)
        );
        let f = parse_forward("UDP:5000=192.168.1.7").unwrap();
        assert_eq!((f.protocol, f.internal_port), (Protocol::Udp, 5000));
        for bad in [
            "tcp8080=1.2.3.4",
            "tcp:8080",
            "tcp:0=1.2.3.4",
            "icmp:1=1.2.3.4",
            "tcp:1=x",
        ] {
            assert!(parse_forward(bad).is_err(), "{bad}");
        }
        let e = Args::try_parse_from(["router", "--forward", "tcp:80"]).unwrap_err();
        assert!(e.to_string().contains("--forward"), "{e}");
    }

    #[test]
    fn duplicate_forwards_are_refused() {
        let e = Config::merge(
            &args(&[
                "--forward",
                "tcp:80=192.168.1.2",
                "--forward",
                "tcp:80=192.168.1.3",
            ]),
            FileConfig::default(),
        )
        .unwrap_err();
        assert!(e.to_string().contains("tcp:80"), "{e}");
    }

    #[test]
    fn flag_values_are_checked() {
        for bad in [
            &["--udp-timeout", "-5"][..],
            &["--udp-timeout", "x"],
            &["--port-range", "5-1"],
            &["--lan-addr", "1.2.3.4"],
            &["--preset", "cone"],
            &["--mapping", "x"],
        ] {
            let mut v = vec!["router"];
            v.extend_from_slice(bad);
            let e = Args::try_parse_from(v).unwrap_err().to_string();
            assert!(e.contains(bad[0]), "{bad:?}: {e}");
        }
    }
}
