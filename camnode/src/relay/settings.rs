//! The relay options of the camera's configuration: the relay URLs, the mode, the device secret
//! and the CA; checked once at start, with errors that name the field and the fix.

use std::path::Path;
use std::sync::Arc;

use rustls::RootCertStore;
use rustls::pki_types::{CertificateDer, ServerName};
use shared::relayproto::{DEFAULT_UDP_PORT, Secret};
use shared::url::HttpUrl;

use crate::config::{Config, ConfigError, RelayMode};
use crate::directory::Reachability;

/// One configured relay.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RelayTarget {
    /// The URL viewers use, as configured without a trailing slash (`https://relay.example.org`);
    /// a camera's site is at `<url>/d/<node id>/`.
    pub url: String,
    /// The relay's host name or address: notifications go to `host:udp_port`, back-connections to
    /// `host:<the port the relay names>`, and TLS checks the certificate for this name.
    pub host: String,
    /// The relay's UDP port (`?udp=PORT` in the URL; default 17780).
    pub udp_port: u16,
}

impl RelayTarget {
    /// Parses `https://HOST[:PORT][/][?udp=PORT]` (or `http://` for a lab relay whose viewers use
    /// plain HTTP; the back-connection is TLS either way).
    pub fn parse(text: &str) -> Result<RelayTarget, String> {
        let text = text.trim();
        let (scheme, rest) = text
            .split_once("://")
            .ok_or_else(|| format!("{text:?} is not a URL"))?;
        if !scheme.eq_ignore_ascii_case("https") && !scheme.eq_ignore_ascii_case("http") {
            return Err(format!("{text:?}: the scheme must be https or http"));
        }
        let parsed = HttpUrl::parse(&format!("http://{rest}"))
            .ok_or_else(|| format!("{text:?} is not a URL"))?;
        let (path, query) = parsed
            .path
            .split_once('?')
            .unwrap_or((parsed.path.as_str(), ""));
        if path != "/" {
            return Err(format!(
                "{text:?}: a relay URL has no path (the camera's site is at <url>/d/<id>/)"
            ));
        }
        let mut udp_port = DEFAULT_UDP_PORT;
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            match pair.split_once('=') {
                Some(("udp", p)) => {
                    udp_port = p
                        .parse()
                        .ok()
                        .filter(|&p| p != 0)
                        .ok_or_else(|| format!("{text:?}: udp={p} is not a port"))?;
                }
                _ => {
                    return Err(format!(
                        "{text:?}: unknown parameter {pair:?} (only udp=PORT)"
                    ));
                }
            }
        }
        ServerName::try_from(parsed.host.clone())
            .map_err(|_| format!("{text:?}: {:?} is not a host name", parsed.host))?;
        let base = text.split(['?', '#']).next().unwrap_or(text);
        Ok(RelayTarget {
            url: base.trim_end_matches('/').to_string(),
            host: parsed.host,
            udp_port,
        })
    }

    /// The name TLS checks the relay's certificate against.
    pub fn server_name(&self) -> Option<ServerName<'static>> {
        ServerName::try_from(self.host.clone()).ok()
    }
}

/// Everything the relay side needs, checked.
#[derive(Clone, Debug)]
pub struct RelaySettings {
    pub mode: RelayMode,
    pub relays: Vec<RelayTarget>,
    pub secret: Secret,
    pub roots: Arc<RootCertStore>,
    pub keepalive_seconds: u32,
}

fn invalid(field: &'static str, problem: String, fix: &'static str) -> ConfigError {
    ConfigError::Invalid {
        field,
        problem,
        fix,
    }
}

/// Checks the relay fields of `cfg` without reading files (part of `Config::validate`).
pub fn validate(cfg: &Config) -> Result<(), ConfigError> {
    for url in &cfg.relay {
        RelayTarget::parse(url).map_err(|problem| {
            invalid(
                "relay",
                problem,
                "use the relay's URL, e.g. https://relay.example.org (add ?udp=PORT if its UDP port is not 17780)",
            )
        })?;
    }
    if cfg.relay.len() > 8 {
        return Err(invalid(
            "relay",
            format!("{} relays", cfg.relay.len()),
            "list at most 8",
        ));
    }
    if !(1..=600).contains(&cfg.relay_keepalive_seconds) {
        return Err(invalid(
            "relay_keepalive_seconds",
            format!("{} s", cfg.relay_keepalive_seconds),
            "use 1 to 600, below the NAT's UDP timeout, e.g. 15",
        ));
    }
    if cfg.relay.is_empty() || cfg.relay_mode == RelayMode::Off {
        if cfg.relay_mode == RelayMode::Always && cfg.relay.is_empty() {
            return Err(invalid(
                "relay_mode",
                "\"always\" with no relay".into(),
                "add a relay (--relay URL) or use relay_mode = \"auto\" or \"off\"",
            ));
        }
        return Ok(());
    }
    if Secret::from_hex(&cfg.relay_secret).is_none() {
        return Err(invalid(
            "relay_secret",
            if cfg.relay_secret.is_empty() {
                "missing".into()
            } else {
                "not 64 hex digits".into()
            },
            "set the secret the relay's operator gave for this camera's id (`relay enrol` prints \
             it): --relay-secret, CAMNODE_RELAY_SECRET or relay_secret in the config file",
        ));
    }
    if cfg.relay_ca.as_os_str().is_empty() {
        return Err(invalid(
            "relay_ca",
            "missing".into(),
            "give the PEM file of the CA that signed the relay's certificate (--relay-ca FILE)",
        ));
    }
    Ok(())
}

/// Reads the CA file and builds the settings; None when no relay is configured or the mode is
/// off. Call after [`validate`].
pub fn load(cfg: &Config) -> Result<Option<RelaySettings>, ConfigError> {
    validate(cfg)?;
    if cfg.relay.is_empty() || cfg.relay_mode == RelayMode::Off {
        return Ok(None);
    }
    let relays = cfg
        .relay
        .iter()
        .filter_map(|u| RelayTarget::parse(u).ok())
        .collect();
    let secret = Secret::from_hex(&cfg.relay_secret).ok_or_else(|| {
        invalid(
            "relay_secret",
            "not 64 hex digits".into(),
            "use the secret from `relay enrol`",
        )
    })?;
    let roots = load_roots(&cfg.relay_ca).map_err(|problem| {
        invalid(
            "relay_ca",
            problem,
            "give a readable PEM file with the CA certificate that signed the relay's certificate",
        )
    })?;
    Ok(Some(RelaySettings {
        mode: cfg.relay_mode,
        relays,
        secret,
        roots: Arc::new(roots),
        keepalive_seconds: cfg.relay_keepalive_seconds,
    }))
}

/// The CA certificates of a PEM file.
pub fn load_roots(path: &Path) -> Result<RootCertStore, String> {
    let pem = std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let certs: Vec<CertificateDer<'static>> = rustls_pemfile::certs(&mut pem.as_slice())
        .collect::<Result<_, _>>()
        .map_err(|e| format!("{}: not PEM: {e}", path.display()))?;
    if certs.is_empty() {
        return Err(format!("{}: no CERTIFICATE in it", path.display()));
    }
    let mut roots = RootCertStore::empty();
    for c in certs {
        roots
            .add(c)
            .map_err(|e| format!("{}: bad certificate: {e}", path.display()))?;
    }
    Ok(roots)
}

/// Whether to use the relay, given the mode and how port forwarding is doing. In `auto` the
/// relay is used when forwarding cannot make the camera reachable: no IGD, mappings refused, or
/// the router's external address is private or carrier-grade NAT space (RFC 1918, RFC 6598).
/// While port management is still looking (`Discovering`) the previous answer stands, so a
/// router restart does not drop a working relay registration.
pub fn wanted(mode: RelayMode, reach: &Reachability, before: bool) -> bool {
    match mode {
        RelayMode::Off => false,
        RelayMode::Always => true,
        RelayMode::Auto => match reach {
            Reachability::Reachable => false,
            Reachability::NoIgd | Reachability::DoubleNat { .. } | Reachability::Refused { .. } => {
                true
            }
            Reachability::Discovering | Reachability::ViaRelay { .. } => before,
        },
    }
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use super::*;

    #[test]
    fn relay_urls() {
        let r = RelayTarget::parse("https://relay.example.org/").unwrap();
        assert_eq!(
            (r.url.as_str(), r.host.as_str(), r.udp_port),
            ("https://relay.example.org", "relay.example.org", 17780)
        );
        let r = RelayTarget::parse("http://198.51.100.20:8080?udp=9000").unwrap();
        assert_eq!(
            (r.url.as_str(), r.host.as_str(), r.udp_port),
            ("http://198.51.100.20:8080", "198.51.100.20", 9000)
        );
        for bad in [
            "relay.example.org",
            "ftp://x",
            "https://x/d/1/",
            "https://x?udp=0",
            "https://x?tcp=1",
            "https://",
        ] {
            assert!(RelayTarget::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn auto_uses_the_relay_only_where_forwarding_cannot_help() {
        let double = Reachability::DoubleNat {
            external: Ipv4Addr::new(100, 64, 0, 2),
        };
        let refused = Reachability::Refused {
            reason: "718".into(),
        };
        for (reach, want) in [
            (&Reachability::Reachable, false),
            (&Reachability::NoIgd, true),
            (&double, true),
            (&refused, true),
        ] {
            assert_eq!(wanted(RelayMode::Auto, reach, !want), want, "{reach:?}");
            assert!(wanted(RelayMode::Always, reach, false));
            assert!(!wanted(RelayMode::Off, reach, true));
        }
        // Still looking: keep what we had.
        assert!(wanted(RelayMode::Auto, &Reachability::Discovering, true));
        assert!(!wanted(RelayMode::Auto, &Reachability::Discovering, false));
    }
}
