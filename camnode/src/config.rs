//! The camera node's configuration: defaults, then a TOML file (`--config`), then flags.
//! Every error names the field and how to fix it.

use std::net::Ipv4Addr;
use std::path::PathBuf;

use clap::{Parser, ValueEnum};
use serde::{Deserialize, Serialize};

/// Where pictures come from.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum SourceKind {
    /// A webcam if one is found, else the synthetic source.
    Auto,
    /// A moving test scene with the node's name and a clock; needs no hardware.
    Synthetic,
    /// A webcam (V4L2 through nokhwa); fails if none is found.
    Webcam,
    /// A network camera: an `http://` or `https://` URL of an MJPEG stream or a snapshot.
    Url(String),
    /// A video file played in a loop through ffmpeg (`file:PATH`, or a path).
    File(PathBuf),
}

impl std::str::FromStr for SourceKind {
    type Err = String;

    fn from_str(s: &str) -> Result<SourceKind, String> {
        let lower = s.to_ascii_lowercase();
        Ok(match lower.as_str() {
            "auto" => SourceKind::Auto,
            "synthetic" => SourceKind::Synthetic,
            "webcam" => SourceKind::Webcam,
            _ if lower.starts_with("http://") || lower.starts_with("https://") => {
                SourceKind::Url(s.to_owned())
            }
            _ if lower.starts_with("file:") && s.len() > 5 => SourceKind::File(s[5..].into()),
            _ if s.contains('/') || s.contains('.') => SourceKind::File(s.into()),
            _ => {
                return Err(format!(
                    "{s:?} is not a source; use auto, synthetic, webcam, an http:// or https:// \
                     URL (a network camera), or file:PATH (a video file)"
                ));
            }
        })
    }
}

impl std::fmt::Display for SourceKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SourceKind::Auto => f.write_str("auto"),
            SourceKind::Synthetic => f.write_str("synthetic"),
            SourceKind::Webcam => f.write_str("webcam"),
            SourceKind::Url(url) => f.write_str(url),
            SourceKind::File(path) => write!(f, "file:{}", path.display()),
        }
    }
}

impl TryFrom<String> for SourceKind {
    type Error = String;

    fn try_from(s: String) -> Result<SourceKind, String> {
        s.parse()
    }
}

impl From<SourceKind> for String {
    fn from(s: SourceKind) -> String {
        s.to_string()
    }
}

/// How internal ports are chosen for the router's port mappings (patent Fig. 8a / 8b).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum InternalPortMode {
    /// The internal port equals the external port (Fig. 8a): the node listens on each port it maps.
    SameAsExternal,
    /// Every node uses one common internal port (Fig. 8b), e.g. 80, behind different external ports.
    Common,
}

/// How the next representative is chosen when the current one leaves (server patent,
/// embodiment 4; see `camnode::election`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum SuccessionRule {
    /// Claim 10: random back-off, collision detection and retry.
    Random,
    /// Claim 11: the lowest port after the representative port goes first.
    PortOrder,
    /// Claim 12: a delay derived from the node id.
    NodeValue,
}

/// When the camera registers with its relays (seed 003; `camnode::relay`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum RelayMode {
    /// Only when port forwarding cannot make the camera reachable: no IGD, mappings refused, or
    /// the router's external address is private or carrier-grade NAT space.
    Auto,
    /// Always, also beside a working port forward.
    Always,
    /// Never.
    Off,
}

/// The effective configuration.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// The node's name shown on pages; empty = assigned automatically ("camera 1", ...).
    pub name: String,
    /// The well-known external port the representative holds.
    pub representative_port: u16,
    /// The first external port tried by the other nodes.
    pub first_other_port: u16,
    /// How internal ports are chosen.
    pub internal_port_mode: InternalPortMode,
    /// The common internal port when `internal_port_mode = "common"`.
    pub common_internal_port: u16,
    /// Port mapping lease in seconds (renewed at half-life); 0 asks for a permanent mapping.
    pub lease_seconds: u32,
    /// The IGD's description URL; empty = discover with SSDP.
    pub igd_url: String,
    /// Picture source.
    pub source: SourceKind,
    /// Webcam index when `source` is webcam or auto.
    pub device: u32,
    /// Frame width in pixels.
    pub width: u32,
    /// Frame height in pixels.
    pub height: u32,
    /// Frames per second.
    pub fps: u32,
    /// JPEG quality, 1-100.
    pub quality: u8,
    /// A domain name that stands in for the router's external address in links.
    pub domain: String,
    /// Password for changes (rename, PTZ) from outside the LAN; empty = refused from outside.
    pub password: String,
    /// Where the node keeps its name and id across restarts.
    pub state_dir: PathBuf,
    /// The address the web server binds.
    pub listen: Ipv4Addr,
    /// The port the web server listens on; 0 = the representative port with
    /// `internal_port_mode = "same-as-external"` (Fig. 8a), the common internal port with "common"
    /// (Fig. 8b). Port management adds a listener on the mapped port when it differs.
    pub web_port: u16,
    /// MJPEG streams served at once; more get 503.
    pub max_streams: usize,
    /// Threads per JPEG encode: 1, or more to encode large pictures in strips in parallel
    /// (lower latency on an idle multi-core machine; no gain when the cores are busy); 0 = one
    /// per core, at most 4.
    pub encode_threads: usize,
    /// The representative's succession rule.
    pub succession: SuccessionRule,
    /// The representative's inquiry interval in milliseconds (embodiment 2; its heartbeat).
    pub inquiry_interval_ms: u64,
    /// Missed inquiries before the representative counts as gone (claim 14): 2 or 3.
    pub missed_inquiries: u32,
    /// How often a node asks the representative whether it is present, in ms (claim 15).
    pub presence_interval_ms: u64,
    /// How long a candidate listens for a colliding candidacy, in ms (claim 10).
    pub collision_window_ms: u64,
    /// Lease of the representative port mapping while held, in seconds, renewed at half-life:
    /// short, so that a dead holder's mapping lapses soon when the router (secure mode) does
    /// not let the successor delete it.
    pub representative_lease_seconds: u32,
    /// A key shared by the camnodes of one LAN: every LAN protocol message is authenticated
    /// with it (HMAC-SHA256, replays dropped); empty = unauthenticated, as before.
    pub lan_key: String,
    /// Relay servers (seed 003), best first: `https://HOST[:PORT]`, `?udp=PORT` when the
    /// relay's UDP port is not 17780. Empty: no relay.
    pub relay: Vec<String>,
    /// When to use them.
    pub relay_mode: RelayMode,
    /// This camera's secret at the relays (64 hex digits, from `relay enrol`).
    pub relay_secret: String,
    /// PEM file with the CA certificate that signed the relays' certificates.
    pub relay_ca: PathBuf,
    /// Longest silence towards the relay, in seconds: below the NAT's UDP timeout.
    pub relay_keepalive_seconds: u32,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            name: String::new(),
            representative_port: 8080,
            first_other_port: 8081,
            internal_port_mode: InternalPortMode::SameAsExternal,
            common_internal_port: 80,
            lease_seconds: 3600,
            igd_url: String::new(),
            source: SourceKind::Auto,
            device: 0,
            width: 640,
            height: 480,
            fps: 10,
            quality: 80,
            domain: String::new(),
            password: String::new(),
            state_dir: PathBuf::from("/var/lib/camnode"),
            listen: Ipv4Addr::UNSPECIFIED,
            web_port: 0,
            max_streams: 200,
            encode_threads: 1,
            succession: SuccessionRule::Random,
            inquiry_interval_ms: 500,
            missed_inquiries: 2,
            presence_interval_ms: 1000,
            collision_window_ms: 100,
            representative_lease_seconds: 6,
            lan_key: String::new(),
            relay: Vec::new(),
            relay_mode: RelayMode::Auto,
            relay_secret: String::new(),
            relay_ca: PathBuf::new(),
            relay_keepalive_seconds: 15,
        }
    }
}

/// A camera node of the home network in a box: serves its camera's pictures over HTTP and makes
/// itself reachable from the internet through the home router's UPnP IGD. One node holds the
/// well-known port (8080) and lists every other camera on its page.
///
/// Every option can also be set in the TOML file given with --config (same names, with
/// underscores); flags override the file.
#[derive(Debug, Parser)]
#[command(name = "camnode", version)]
pub struct Args {
    /// TOML configuration file.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Print the effective configuration as TOML and exit.
    #[arg(long)]
    pub print_config: bool,
    /// The node's name on pages [default: assigned, "camera N"].
    #[arg(long)]
    pub name: Option<String>,
    /// The well-known external port of the representative [default: 8080].
    #[arg(long, value_name = "PORT")]
    pub representative_port: Option<u16>,
    /// The first external port the other nodes try [default: 8081].
    #[arg(long, value_name = "PORT")]
    pub first_other_port: Option<u16>,
    /// Internal port equal to the external one (Fig. 8a) or one common port (Fig. 8b)
    /// [default: same-as-external].
    #[arg(long, value_enum)]
    pub internal_port_mode: Option<InternalPortMode>,
    /// The common internal port for --internal-port-mode common [default: 80].
    #[arg(long, value_name = "PORT")]
    pub common_internal_port: Option<u16>,
    /// Port mapping lease in seconds, renewed at half-life; 0 = permanent [default: 3600].
    #[arg(long, value_name = "SECONDS")]
    pub lease_seconds: Option<u32>,
    /// The IGD's description URL (skips SSDP discovery).
    #[arg(long, value_name = "URL")]
    pub igd_url: Option<String>,
    /// Picture source: auto (a webcam if found, else synthetic), synthetic, webcam, an http:// or
    /// https:// URL of a network camera's MJPEG stream or snapshot (user:password@ in the URL
    /// for cameras that ask), or file:PATH (a video file, looped, through ffmpeg) [default: auto].
    #[arg(long, value_name = "SOURCE")]
    pub source: Option<SourceKind>,
    /// Webcam index [default: 0].
    #[arg(long)]
    pub device: Option<u32>,
    /// Frame width [default: 640].
    #[arg(long)]
    pub width: Option<u32>,
    /// Frame height [default: 480].
    #[arg(long)]
    pub height: Option<u32>,
    /// Frames per second [default: 10].
    #[arg(long)]
    pub fps: Option<u32>,
    /// JPEG quality 1-100 [default: 80].
    #[arg(long)]
    pub quality: Option<u8>,
    /// A domain name to use in links instead of the router's external address.
    #[arg(long)]
    pub domain: Option<String>,
    /// Password for changes from outside the LAN (without one they are refused).
    #[arg(long, env = "CAMNODE_PASSWORD", hide_env_values = true)]
    pub password: Option<String>,
    /// Directory for the node's persistent state (name, id) [default: /var/lib/camnode].
    #[arg(long, value_name = "DIR")]
    pub state_dir: Option<PathBuf>,
    /// Address the web server binds [default: 0.0.0.0].
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<Ipv4Addr>,
    /// Port the web server listens on [default: 0 = the representative port (Fig. 8a) or the
    /// common internal port (Fig. 8b)].
    #[arg(long, value_name = "PORT")]
    pub web_port: Option<u16>,
    /// MJPEG streams served at once; more get 503 [default: 200].
    #[arg(long, value_name = "N")]
    pub max_streams: Option<usize>,
    /// Threads per JPEG encode; 0 = one per core, at most 4 [default: 1].
    #[arg(long, value_name = "N")]
    pub encode_threads: Option<usize>,
    /// How the next representative is chosen [default: random].
    #[arg(long, value_enum)]
    pub succession: Option<SuccessionRule>,
    /// The representative's inquiry interval in ms [default: 500].
    #[arg(long, value_name = "MS")]
    pub inquiry_interval_ms: Option<u64>,
    /// Missed inquiries before the representative counts as gone, 2 or 3 [default: 2].
    #[arg(long, value_name = "N")]
    pub missed_inquiries: Option<u32>,
    /// Presence inquiry interval in ms [default: 1000].
    #[arg(long, value_name = "MS")]
    pub presence_interval_ms: Option<u64>,
    /// Collision window of the election in ms [default: 100].
    #[arg(long, value_name = "MS")]
    pub collision_window_ms: Option<u64>,
    /// Lease of the representative port while held, seconds: a crashed holder's port is free
    /// again at most this long after it went, on a router that will not let the successor
    /// delete it (secure mode) [default: 6].
    #[arg(long, value_name = "SECONDS")]
    pub representative_lease_seconds: Option<u32>,
    /// A key shared by the LAN's camnodes (at least 16 characters): LAN messages without it are
    /// dropped [default: none, messages unauthenticated].
    #[arg(
        long,
        value_name = "KEY",
        env = "CAMNODE_LAN_KEY",
        hide_env_values = true
    )]
    pub lan_key: Option<String>,
    /// A relay server for when port forwarding cannot reach the camera (repeatable, best
    /// first): https://HOST[:PORT], plus ?udp=PORT if its UDP port is not 17780.
    #[arg(long = "relay", value_name = "URL")]
    pub relay: Vec<String>,
    /// auto: use the relay only when port forwarding cannot make the camera reachable; always;
    /// off [default: auto].
    #[arg(long, value_enum)]
    pub relay_mode: Option<RelayMode>,
    /// This camera's secret at the relays, 64 hex digits (`relay enrol` prints it).
    #[arg(
        long,
        env = "CAMNODE_RELAY_SECRET",
        hide_env_values = true,
        value_name = "HEX"
    )]
    pub relay_secret: Option<String>,
    /// PEM file of the CA that signed the relays' certificates.
    #[arg(long, value_name = "FILE")]
    pub relay_ca: Option<PathBuf>,
    /// Longest silence towards the relay in seconds; below the NAT's UDP timeout [default: 15].
    #[arg(long, value_name = "SECONDS")]
    pub relay_keepalive_seconds: Option<u32>,
}

/// A configuration error, naming the field and the fix.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config file {path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("config field \"{field}\": {problem}; {fix}")]
    Invalid {
        field: &'static str,
        problem: String,
        fix: &'static str,
    },
}

impl Config {
    /// Defaults, then the file named by `--config`, then the flags; then validation.
    pub fn from_args(args: &Args) -> Result<Config, ConfigError> {
        let mut cfg = match &args.config {
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                    path: path.clone(),
                    source,
                })?;
                Config::from_toml(&text).map_err(|message| ConfigError::Parse {
                    path: path.clone(),
                    message,
                })?
            }
            None => Config::default(),
        };
        macro_rules! overlay {
            ($($field:ident),*) => { $( if let Some(v) = &args.$field { cfg.$field = v.clone(); } )* };
        }
        overlay!(
            name,
            representative_port,
            first_other_port,
            internal_port_mode,
            common_internal_port,
            lease_seconds,
            igd_url,
            source,
            device,
            width,
            height,
            fps,
            quality,
            domain,
            password,
            state_dir,
            listen,
            web_port,
            max_streams,
            encode_threads,
            succession,
            inquiry_interval_ms,
            missed_inquiries,
            presence_interval_ms,
            collision_window_ms,
            representative_lease_seconds,
            lan_key,
            relay_mode,
            relay_secret,
            relay_ca,
            relay_keepalive_seconds
        );
        if !args.relay.is_empty() {
            cfg.relay = args.relay.clone();
        }
        cfg.validate()?;
        Ok(cfg)
    }

    /// Parse a TOML document; unknown fields are errors that name the field.
    pub fn from_toml(text: &str) -> Result<Config, String> {
        toml::from_str(text).map_err(|e| e.to_string())
    }

    /// The port the web server listens on (`web_port`, or its automatic choice).
    pub fn effective_web_port(&self) -> u16 {
        match (self.web_port, self.internal_port_mode) {
            (0, InternalPortMode::SameAsExternal) => self.representative_port,
            (0, InternalPortMode::Common) => self.common_internal_port,
            (port, _) => port,
        }
    }

    /// Check values that types cannot.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |field, problem: String, fix| {
            Err(ConfigError::Invalid {
                field,
                problem,
                fix,
            })
        };
        if self.representative_port == 0 {
            return invalid(
                "representative_port",
                "port 0 is not a port".into(),
                "use e.g. 8080",
            );
        }
        if self.first_other_port == 0 || self.first_other_port == self.representative_port {
            return invalid(
                "first_other_port",
                format!("{} cannot be used", self.first_other_port),
                "use a port other than 0 and the representative port, e.g. 8081",
            );
        }
        if self.internal_port_mode == InternalPortMode::Common && self.common_internal_port == 0 {
            return invalid(
                "common_internal_port",
                "port 0 is not a port".into(),
                "use e.g. 80",
            );
        }
        if !(8..=8192).contains(&self.width) || !self.width.is_multiple_of(8) {
            return invalid(
                "width",
                format!("{} pixels", self.width),
                "use a multiple of 8 from 8 to 8192, e.g. 640",
            );
        }
        if !(8..=8192).contains(&self.height) || !self.height.is_multiple_of(8) {
            return invalid(
                "height",
                format!("{} pixels", self.height),
                "use a multiple of 8 from 8 to 8192, e.g. 480",
            );
        }
        if !(1..=60).contains(&self.fps) {
            return invalid(
                "fps",
                format!("{} frames per second", self.fps),
                "use 1 to 60, e.g. 10",
            );
        }
        if !(1..=100).contains(&self.quality) {
            return invalid(
                "quality",
                format!("{}", self.quality),
                "use 1 to 100, e.g. 80",
            );
        }
        if !(1..=10_000).contains(&self.max_streams) {
            return invalid(
                "max_streams",
                format!("{}", self.max_streams),
                "use 1 to 10000, e.g. 200",
            );
        }
        if self.encode_threads > 16 {
            return invalid(
                "encode_threads",
                format!("{}", self.encode_threads),
                "use 0 (one per core) to 16, e.g. 1",
            );
        }
        if !(100..=10_000).contains(&self.inquiry_interval_ms) {
            return invalid(
                "inquiry_interval_ms",
                format!("{} ms", self.inquiry_interval_ms),
                "use 100 to 10000, e.g. 500",
            );
        }
        if !(2..=3).contains(&self.missed_inquiries) {
            return invalid(
                "missed_inquiries",
                format!("{}", self.missed_inquiries),
                "use 2 or 3 (claim 14)",
            );
        }
        if !(100..=60_000).contains(&self.presence_interval_ms) {
            return invalid(
                "presence_interval_ms",
                format!("{} ms", self.presence_interval_ms),
                "use 100 to 60000, e.g. 1000",
            );
        }
        if !(10..=2_000).contains(&self.collision_window_ms)
            || self.collision_window_ms >= self.inquiry_interval_ms
        {
            return invalid(
                "collision_window_ms",
                format!(
                    "{} ms (inquiry interval {} ms)",
                    self.collision_window_ms, self.inquiry_interval_ms
                ),
                "use 10 to 2000 and less than inquiry_interval_ms, e.g. 100",
            );
        }
        if !(4..=3600).contains(&self.representative_lease_seconds) {
            return invalid(
                "representative_lease_seconds",
                format!("{} s", self.representative_lease_seconds),
                "use 4 to 3600, e.g. 6 (short: a dead holder's mapping lapses after it)",
            );
        }
        if !self.lan_key.is_empty()
            && self.lan_key.chars().count() < crate::election::auth::MIN_KEY_LEN
        {
            return invalid(
                "lan_key",
                format!("{} characters", self.lan_key.chars().count()),
                "use at least 16 characters, the same on every camnode of the LAN (e.g. `openssl rand -hex 16`), or leave it empty",
            );
        }
        if !self.igd_url.is_empty() {
            let checked = shared::url::HttpUrl::parse(&self.igd_url)
                .ok_or_else(|| "not an http:// URL".to_string())
                .and_then(|u| crate::portmgmt::guard::check_url(&u));
            if let Err(problem) = checked {
                return invalid(
                    "igd_url",
                    format!("{:?}: {problem}", self.igd_url),
                    "use the router's description URL, e.g. http://192.168.1.1:5000/rootDesc.xml, or leave it empty to discover it",
                );
            }
        }
        if self.name.chars().count() > 64 || self.name.chars().any(char::is_control) {
            return invalid(
                "name",
                format!("{:?}", self.name),
                "use at most 64 printable characters",
            );
        }
        crate::relay::settings::validate(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(list: &[&str]) -> Args {
        Args::try_parse_from(std::iter::once("camnode").chain(list.iter().copied())).unwrap()
    }

    #[test]
    fn defaults_follow_design_md() {
        let c = Config::from_args(&args(&[])).unwrap();
        assert_eq!(
            (c.representative_port, c.first_other_port, c.lease_seconds),
            (8080, 8081, 3600)
        );
        assert_eq!(c.internal_port_mode, InternalPortMode::SameAsExternal);
        assert_eq!(c.source, SourceKind::Auto);
    }

    #[test]
    fn flags_override_the_file() {
        let dir = std::env::temp_dir().join(format!("camnode-cfg-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("c.toml");
        std::fs::write(
            &file,
            "name = \"porch\"\nfps = 5\ninternal_port_mode = \"common\"\n",
        )
        .unwrap();
        let c =
            Config::from_args(&args(&["--config", file.to_str().unwrap(), "--fps", "12"])).unwrap();
        assert_eq!(c.name, "porch");
        assert_eq!(c.fps, 12);
        assert_eq!(c.internal_port_mode, InternalPortMode::Common);
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn web_port_follows_the_port_mode() {
        assert_eq!(
            Config::from_args(&args(&[])).unwrap().effective_web_port(),
            8080
        );
        let c = Config::from_args(&args(&[
            "--internal-port-mode",
            "common",
            "--common-internal-port",
            "8000",
        ]))
        .unwrap();
        assert_eq!(c.effective_web_port(), 8000);
        assert_eq!(
            Config::from_args(&args(&["--web-port", "9000"]))
                .unwrap()
                .effective_web_port(),
            9000
        );
        let err = Config::from_args(&args(&["--max-streams", "0"]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("\"max_streams\""), "{err}");
    }

    #[test]
    fn sources_parse_from_flags_and_toml() {
        let src = |flag: &str| {
            Config::from_args(&args(&["--source", flag]))
                .unwrap()
                .source
        };
        assert_eq!(src("synthetic"), SourceKind::Synthetic);
        assert_eq!(
            src("http://u:p@192.0.2.9/video.mjpg"),
            SourceKind::Url("http://u:p@192.0.2.9/video.mjpg".into())
        );
        assert_eq!(src("file:clip.mkv"), SourceKind::File("clip.mkv".into()));
        assert_eq!(src("/media/a.mp4"), SourceKind::File("/media/a.mp4".into()));
        let err = Args::try_parse_from(["camnode", "--source", "camera"]).unwrap_err();
        assert!(err.to_string().contains("file:PATH"), "{err}");
        let c = Config::from_toml("source = \"https://cam.example/snap.jpg\"\n").unwrap();
        assert_eq!(
            c.source,
            SourceKind::Url("https://cam.example/snap.jpg".into())
        );
        let text = toml::to_string(&Config {
            source: SourceKind::File("a b.mp4".into()),
            ..Config::default()
        })
        .unwrap();
        assert!(text.contains("source = \"file:a b.mp4\""), "{text}");
        assert!(Config::from_toml("source = \"nothing\"\n").is_err());
    }

    #[test]
    fn relay_fields_name_the_field() {
        let c = Config::from_args(&args(&[])).unwrap();
        assert!(c.relay.is_empty());
        assert_eq!(c.relay_mode, RelayMode::Auto);
        let secret = "ab".repeat(32);
        let c = Config::from_args(&args(&[
            "--relay",
            "https://198.51.100.20",
            "--relay",
            "https://198.51.100.21",
            "--relay-secret",
            &secret,
            "--relay-ca",
            "/etc/ca.pem",
        ]))
        .unwrap();
        assert_eq!(c.relay.len(), 2);
        for (flags, field) in [
            (&["--relay", "198.51.100.20"][..], "relay"),
            (&["--relay", "https://r"][..], "relay_secret"),
            (
                &["--relay", "https://r", "--relay-secret", "12"][..],
                "relay_secret",
            ),
            (
                &["--relay", "https://r", "--relay-secret", &secret][..],
                "relay_ca",
            ),
            (&["--relay-mode", "always"][..], "relay_mode"),
            (
                &["--relay-keepalive-seconds", "0"][..],
                "relay_keepalive_seconds",
            ),
        ] {
            let err = Config::from_args(&args(flags)).unwrap_err().to_string();
            assert!(err.contains(&format!("\"{field}\"")), "{flags:?}: {err}");
        }
        // Off needs nothing else.
        assert!(Config::from_args(&args(&["--relay", "https://r", "--relay-mode", "off"])).is_ok());
        let c = Config::from_toml("relay = [\"https://r?udp=9000\"]\nrelay_mode = \"always\"\n")
            .unwrap();
        assert_eq!(c.relay_mode, RelayMode::Always);
    }

    #[test]
    fn unknown_field_is_named() {
        let err = Config::from_toml("frame_rate = 5\n").unwrap_err();
        assert!(err.contains("frame_rate"), "{err}");
    }

    #[test]
    fn invalid_values_name_field_and_fix() {
        let err = Config::from_args(&args(&["--quality", "0"]))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("\"quality\"") && err.contains("use 1 to 100"),
            "{err}"
        );
        let err = Config::from_args(&args(&["--width", "641"]))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("\"width\"") && err.contains("multiple of 8"),
            "{err}"
        );
        let err = Config::from_args(&args(&["--first-other-port", "8080"]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("\"first_other_port\""), "{err}");
    }

    #[test]
    fn election_fields_are_validated_by_name() {
        let c = Config::from_args(&args(&[])).unwrap();
        assert_eq!(
            (c.succession, c.inquiry_interval_ms, c.missed_inquiries),
            (SuccessionRule::Random, 500, 2)
        );
        let c = Config::from_args(&args(&["--succession", "port-order"])).unwrap();
        assert_eq!(c.succession, SuccessionRule::PortOrder);
        for (flags, field) in [
            (&["--missed-inquiries", "4"][..], "missed_inquiries"),
            (&["--inquiry-interval-ms", "50"][..], "inquiry_interval_ms"),
            (&["--collision-window-ms", "600"][..], "collision_window_ms"),
            (&["--presence-interval-ms", "0"][..], "presence_interval_ms"),
            (
                &["--representative-lease-seconds", "1"][..],
                "representative_lease_seconds",
            ),
            (&["--lan-key", "short"][..], "lan_key"),
            (&["--igd-url", "http://192.168.1.1/a b"][..], "igd_url"),
            (&["--igd-url", "ftp://192.168.1.1/"][..], "igd_url"),
        ] {
            let err = Config::from_args(&args(flags)).unwrap_err().to_string();
            assert!(err.contains(&format!("\"{field}\"")), "{err}");
        }
        let c = Config::from_args(&args(&["--lan-key", "0123456789abcdef"])).unwrap();
        assert_eq!(c.lan_key, "0123456789abcdef");
        assert_eq!(c.representative_lease_seconds, 6);
        let c = Config::from_toml("succession = \"node-value\"\nmissed_inquiries = 3\n").unwrap();
        assert_eq!(
            (c.succession, c.missed_inquiries),
            (SuccessionRule::NodeValue, 3)
        );
    }
}
