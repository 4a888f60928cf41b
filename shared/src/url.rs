//! The small part of HTTP URLs (RFC 3986) that UPnP needs: split an `http://` URL into host,
//! port and path, and resolve a relative reference against a base (RFC 3986 §5.2), as a
//! control point must for `controlURL` (UDA 1.1 §2.3: relative to `URLBase` or, without one,
//! to the description's LOCATION).
//!
//! The URLs come from LAN devices (SSDP LOCATION, descriptions, GENA CALLBACK) and end up on a
//! request line and in a Host field, so what cannot be written there as is is refused: a host
//! that is not a name, an IPv4 address or a bracketed IPv6 address (RFC 3986 §3.2.2), and
//! control characters or spaces in the path (CR LF would inject header fields, RFC 9112 §3).

use std::fmt;
use std::net::Ipv6Addr;

/// An absolute `http://` URL, split.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpUrl {
    /// Host: a name, an IPv4 literal, or an IPv6 literal without brackets.
    pub host: String,
    /// Port (80 when absent).
    pub port: u16,
    /// Path with query, starting with `/`.
    pub path: String,
}

impl HttpUrl {
    /// Parses `http://host[:port][/path]`. Other schemes and userinfo are refused.
    pub fn parse(s: &str) -> Option<HttpUrl> {
        let s = s.trim();
        let scheme_end = s.find("://")?;
        if !s[..scheme_end].eq_ignore_ascii_case("http") {
            return None;
        }
        let rest = &s[scheme_end + 3..];
        let (authority, path) = match rest.find(['/', '?', '#']) {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/"),
        };
        if authority.is_empty() || authority.contains('@') {
            return None;
        }
        let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
            let (h, after) = v6.split_once(']')?;
            let port = match after.strip_prefix(':') {
                Some(p) => p.parse().ok()?,
                None if after.is_empty() => 80,
                None => return None,
            };
            valid_ipv6_literal(h).then_some((h, port))?
        } else {
            let (h, port) = match authority.rsplit_once(':') {
                Some((h, p)) => (h, if p.is_empty() { 80 } else { p.parse().ok()? }),
                None => (authority, 80),
            };
            valid_reg_name(h).then_some((h, port))?
        };
        let path = path.split('#').next().unwrap_or("/");
        let path = if path.starts_with('/') {
            path.to_string()
        } else {
            format!("/{path}")
        };
        if !valid_path(&path) {
            return None;
        }
        Some(HttpUrl {
            host: host.to_string(),
            port,
            path,
        })
    }

    /// Resolves a reference against this base: absolute URLs stay, `/abs` replaces the path,
    /// `rel` replaces the last segment (RFC 3986 §5.2.2, without dot-segment removal beyond
    /// what UPnP descriptions use).
    pub fn join(&self, reference: &str) -> Option<HttpUrl> {
        let r = reference.trim();
        if r.contains("://") {
            return HttpUrl::parse(r);
        }
        if let Some(net) = r.strip_prefix("//") {
            return HttpUrl::parse(&format!("http://{net}"));
        }
        let path = if r.starts_with('/') {
            r.to_string()
        } else if r.is_empty() {
            self.path.clone()
        } else {
            let base = self.path.split('?').next().unwrap_or("/");
            let dir = &base[..base.rfind('/').map_or(0, |i| i + 1)];
            let rel = r.strip_prefix("./").unwrap_or(r);
            format!("{}{rel}", if dir.is_empty() { "/" } else { dir })
        };
        let path = path.split('#').next().unwrap_or("/").to_string();
        if !valid_path(&path) {
            return None;
        }
        Some(HttpUrl {
            host: self.host.clone(),
            port: self.port,
            path,
        })
    }
}

/// A registered name or an IPv4 address (RFC 3986 §3.2.2 reg-name, unreserved characters and
/// percent-encoding; the sub-delimiters are not used in device URLs and are refused).
fn valid_reg_name(host: &str) -> bool {
    !host.is_empty()
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._~%".contains(&b))
}

/// The inside of `[...]`: an IPv6 address, optionally with a zone (RFC 6874: `%25` + name).
fn valid_ipv6_literal(host: &str) -> bool {
    let (addr, zone) = host.split_once('%').unwrap_or((host, ""));
    addr.parse::<Ipv6Addr>().is_ok()
        && zone
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._~%".contains(&b))
}

/// A path and query that can go on a request line as is: no control characters, no spaces.
fn valid_path(path: &str) -> bool {
    !path.chars().any(|c| c.is_control() || c == ' ')
}

impl fmt::Display for HttpUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.contains(':') {
            write!(f, "http://[{}]:{}{}", self.host, self.port, self.path)
        } else {
            write!(f, "http://{}:{}{}", self.host, self.port, self.path)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_and_join() {
        let u = HttpUrl::parse("http://192.168.1.1:5000/rootDesc.xml").unwrap();
        assert_eq!(
            (u.host.as_str(), u.port, u.path.as_str()),
            ("192.168.1.1", 5000, "/rootDesc.xml")
        );
        assert_eq!(
            u.join("/ctl/IPConn").unwrap().to_string(),
            "http://192.168.1.1:5000/ctl/IPConn"
        );
        assert_eq!(
            u.join("ctl/IPConn").unwrap().to_string(),
            "http://192.168.1.1:5000/ctl/IPConn"
        );
        let deep = HttpUrl::parse("HTTP://Router:80/upnp/desc/igd.xml").unwrap();
        assert_eq!(deep.join("./ctl").unwrap().path, "/upnp/desc/ctl");
        assert_eq!(deep.join("http://10.0.0.1:1/x").unwrap().host, "10.0.0.1");
        assert_eq!(HttpUrl::parse("http://h").unwrap().path, "/");
        assert_eq!(
            HttpUrl::parse("http://[fe80::1]:49000/a").unwrap().host,
            "fe80::1"
        );
        for bad in [
            "https://h/",
            "http://",
            "http://u@h/",
            "http://h:x/",
            "ftp://h",
            "h/x",
        ] {
            assert_eq!(HttpUrl::parse(bad), None, "{bad}");
        }
    }
}
