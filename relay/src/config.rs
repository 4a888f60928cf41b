//! The relay's configuration: a TOML file (`--config`), then flags. Every error names the field
//! and the fix. An example with every field: `relay/relay.example.toml`.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Result, bail};
use serde::{Deserialize, Serialize};
use shared::relayproto::{Secret, format_device_id, parse_device_id};

use crate::core::samenet::Rule;
use crate::core::{Keys, Settings};

/// One enrolled device.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeviceEntry {
    /// The device id: the camera's node id, 16 hex digits.
    pub id: String,
    /// Its secret: 64 hex digits (`relay enrol` makes one).
    pub secret: String,
    /// A note for the operator (shown nowhere else).
    #[serde(default)]
    pub note: String,
}

/// The configuration file.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// This relay's name (status page; the federation of issue 13 will use it).
    pub name: String,
    /// UDP address for device notifications (also accepted as `udp_listen`).
    #[serde(alias = "udp_listen")]
    pub udp: SocketAddr,
    /// TCP address for devices' TLS back-connections (also `back_listen`).
    #[serde(alias = "back_listen")]
    pub back: SocketAddr,
    /// The back-connection port told to devices, if a port forward changes it; 0 = `back`'s.
    pub public_back_port: u16,
    /// HTTPS address for viewers; empty = off (also `https_listen`).
    #[serde(alias = "https_listen")]
    pub https: String,
    /// Plain HTTP address for viewers (a lab without a trusted CA); empty = off (also
    /// `http_listen`).
    #[serde(alias = "http_listen")]
    pub http: String,
    /// The server certificate chain (PEM) for viewers and back-connections.
    pub cert: PathBuf,
    /// Its private key (PEM).
    pub key: PathBuf,
    /// Seed 003's maximum access confirmation period, seconds.
    pub period_s: u64,
    /// The keep-alive interval suggested to devices, seconds.
    pub keepalive_s: u64,
    /// How long a viewer waits for a device's back-connection, milliseconds.
    pub setup_timeout_ms: u64,
    /// A session's maximum time, seconds.
    pub session_max_s: u64,
    /// Sessions per device at once.
    pub max_sessions_per_device: usize,
    /// New sessions per device per second (each makes the camera open a TLS connection).
    pub max_new_sessions_per_second: u16,
    /// Seed 004: leading bits of IPv4 addresses compared (32 = exact).
    pub same_network_prefix_v4: u8,
    /// Seed 004: leading bits of IPv6 addresses compared.
    pub same_network_prefix_v6: u8,
    /// Seed 004: ports per subscriber block of a carrier NAT in front of the devices; 0 = unknown.
    pub same_network_port_block: u16,
    /// Seed 004: public prefixes of carrier NATs ("203.0.113.0/24"): addresses in them are shared
    /// by several homes, whatever the devices report.
    pub same_network_shared_prefixes: Vec<String>,
    /// The enrolment key (64 hex digits); empty = only listed devices may register.
    pub enrol_key: String,
    /// Enrolled devices.
    pub device: Vec<DeviceEntry>,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            name: "relay".into(),
            udp: SocketAddr::from(([0, 0, 0, 0], shared::relayproto::DEFAULT_UDP_PORT)),
            back: SocketAddr::from(([0, 0, 0, 0], shared::relayproto::DEFAULT_BACK_PORT)),
            public_back_port: 0,
            https: "0.0.0.0:443".into(),
            http: String::new(),
            cert: PathBuf::new(),
            key: PathBuf::new(),
            period_s: 300,
            keepalive_s: 20,
            setup_timeout_ms: 5000,
            session_max_s: 3600,
            max_sessions_per_device: 32,
            max_new_sessions_per_second: 50,
            same_network_prefix_v4: 32,
            same_network_prefix_v6: 64,
            same_network_port_block: 0,
            same_network_shared_prefixes: Vec::new(),
            enrol_key: String::new(),
            device: Vec::new(),
        }
    }
}

/// Parses an optional listen address field.
fn listen(field: &str, v: &str) -> Result<Option<SocketAddr>> {
    if v.trim().is_empty() {
        return Ok(None);
    }
    match v.trim().parse() {
        Ok(a) => Ok(Some(a)),
        Err(_) => bail!(
            "`{field}` = {v:?}: not an address:port; write e.g. \"0.0.0.0:8443\", or \"\" for off"
        ),
    }
}

impl Config {
    /// Reads a TOML file; unknown fields and bad values are errors that name the field.
    pub fn load(path: &Path) -> Result<Config> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| anyhow::anyhow!("--config {}: {e}", path.display()))?;
        Config::parse(&text).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))
    }

    /// Parses TOML text.
    pub fn parse(text: &str) -> Result<Config> {
        let c: Config = toml::from_str(text).map_err(|e| anyhow::anyhow!("{e}"))?;
        c.check()?;
        Ok(c)
    }

    /// The HTTPS viewer address, if on.
    pub fn https_addr(&self) -> Result<Option<SocketAddr>> {
        listen("https", &self.https)
    }

    /// The plain HTTP viewer address, if on.
    pub fn http_addr(&self) -> Result<Option<SocketAddr>> {
        listen("http", &self.http)
    }

    /// Checks values serde cannot.
    pub fn check(&self) -> Result<()> {
        self.https_addr()?;
        self.http_addr()?;
        if self.period_s == 0 {
            bail!("`period_s` = 0: the period must be at least 1 second (seed 003 suggests 300)");
        }
        if self.keepalive_s == 0 || self.keepalive_s >= self.period_s {
            bail!(
                "`keepalive_s` = {}: must be at least 1 and below `period_s` ({}); 20 suits a NAT \
                 with a 30 s UDP timeout",
                self.keepalive_s,
                self.period_s
            );
        }
        if self.setup_timeout_ms < 100 {
            bail!(
                "`setup_timeout_ms` = {}: at least 100 (default 5000)",
                self.setup_timeout_ms
            );
        }
        if self.session_max_s == 0 {
            bail!("`session_max_s` = 0: at least 1 second (default 3600)");
        }
        if self.max_sessions_per_device == 0 {
            bail!("`max_sessions_per_device` = 0: at least 1 (default 32)");
        }
        if self.max_new_sessions_per_second == 0 {
            bail!("`max_new_sessions_per_second` = 0: at least 1 (default 50)");
        }
        if self.same_network_prefix_v4 > 32 {
            bail!(
                "`same_network_prefix_v4` = {}: 0 to 32",
                self.same_network_prefix_v4
            );
        }
        if self.same_network_prefix_v6 > 128 {
            bail!(
                "`same_network_prefix_v6` = {}: 0 to 128",
                self.same_network_prefix_v6
            );
        }
        self.shared_prefixes()?;
        self.keys()?;
        Ok(())
    }

    /// The listed carrier-NAT prefixes.
    pub fn shared_prefixes(&self) -> Result<Vec<(IpAddr, u8)>> {
        let mut out = Vec::new();
        for (i, p) in self.same_network_shared_prefixes.iter().enumerate() {
            let (addr, len) = p.split_once('/').unwrap_or((p.as_str(), ""));
            let ip: Option<IpAddr> = addr.trim().parse().ok();
            let max = if ip.is_some_and(|a| a.is_ipv4()) {
                32
            } else {
                128
            };
            let len = if len.is_empty() {
                Some(max)
            } else {
                len.trim().parse::<u8>().ok().filter(|l| *l <= max)
            };
            let (Some(ip), Some(len)) = (ip, len) else {
                bail!(
                    "`same_network_shared_prefixes[{i}]` = {p:?}: write an address or a prefix, \
                     e.g. \"203.0.113.0/24\""
                );
            };
            out.push((ip, len));
        }
        Ok(out)
    }

    /// The enrolled devices and the enrolment key.
    pub fn keys(&self) -> Result<Keys> {
        let enrol_key = if self.enrol_key.trim().is_empty() {
            None
        } else {
            Some(Secret::from_hex(&self.enrol_key).ok_or_else(|| {
                anyhow::anyhow!(
                    "`enrol_key`: must be 64 hex digits; make one with `relay enrol --new-key`"
                )
            })?)
        };
        let mut devices = HashMap::new();
        for (i, d) in self.device.iter().enumerate() {
            let Some(id) = parse_device_id(d.id.trim()) else {
                bail!(
                    "`device[{i}].id` = {:?}: must be the camera's node id, 1 to 16 hex digits \
                     (its status page shows it)",
                    d.id
                );
            };
            let Some(secret) = Secret::from_hex(&d.secret) else {
                bail!(
                    "`device[{i}].secret` (id {}): must be 64 hex digits; make one with \
                     `relay enrol --config FILE --device {}`",
                    d.id,
                    d.id
                );
            };
            if devices.insert(id, secret).is_some() {
                bail!(
                    "`device[{i}].id` = {}: listed twice; keep one entry",
                    format_device_id(id)
                );
            }
        }
        Ok(Keys { devices, enrol_key })
    }

    /// The core's settings.
    pub fn settings(&self, back_port: u16) -> Settings {
        Settings {
            period: Duration::from_secs(self.period_s),
            keepalive: Duration::from_secs(self.keepalive_s),
            back_port: if self.public_back_port != 0 {
                self.public_back_port
            } else {
                back_port
            },
            setup_timeout: Duration::from_millis(self.setup_timeout_ms),
            session_max: Duration::from_secs(self.session_max_s),
            max_sessions_per_device: self.max_sessions_per_device,
            max_new_sessions_per_second: self.max_new_sessions_per_second,
            same_network: Rule {
                prefix_v4: self.same_network_prefix_v4,
                prefix_v6: self.same_network_prefix_v6,
                port_block: self.same_network_port_block,
                // Checked by `check`; an unchecked config lists none.
                shared: self.shared_prefixes().unwrap_or_default(),
            },
            ..Settings::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_example_parses_and_defaults_are_sane() {
        let c = Config::parse(include_str!("../relay.example.toml")).unwrap();
        assert_eq!(c.device.len(), 1);
        assert_eq!(c.keys().unwrap().devices.len(), 1);
        Config::default().check().unwrap();
        // The lab writes the `*_listen` spellings.
        let c =
            Config::parse("udp_listen = \"127.0.0.1:1\"\nhttp_listen = \"127.0.0.1:2\"").unwrap();
        assert_eq!(c.udp.port(), 1);
        assert_eq!(c.http_addr().unwrap().unwrap().port(), 2);
    }

    #[test]
    fn errors_name_the_field_and_the_fix() {
        let cases = [
            ("perod_s = 3", "perod_s"),
            ("period_s = 0", "`period_s`"),
            ("keepalive_s = 400", "`keepalive_s`"),
            ("https = \"nowhere\"", "`https`"),
            ("same_network_prefix_v4 = 33", "`same_network_prefix_v4`"),
            (
                "same_network_shared_prefixes = [\"203.0.113.0/33\"]",
                "`same_network_shared_prefixes[0]`",
            ),
            ("enrol_key = \"xyz\"", "relay enrol --new-key"),
            ("[[device]]\nid = \"zz\"\nsecret = \"\"", "`device[0].id`"),
            (
                "[[device]]\nid = \"ab\"\nsecret = \"00\"",
                "relay enrol --config FILE --device ab",
            ),
        ];
        for (text, want) in cases {
            let e = format!("{:#}", Config::parse(text).unwrap_err());
            assert!(e.contains(want), "{text:?}: {e}");
        }
        let s = "1".repeat(64);
        let twice = format!(
            "[[device]]\nid = \"ab\"\nsecret = \"{s}\"\n[[device]]\nid = \"00ab\"\nsecret = \"{s}\""
        );
        let e = format!("{:#}", Config::parse(&twice).unwrap_err());
        assert!(e.contains("listed twice"), "{e}");
    }
}
