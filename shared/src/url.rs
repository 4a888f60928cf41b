//! The small part of HTTP URLs (RFC 3986) that UPnP needs: split an `http://` URL into host,
//! port and path, and resolve a relative reference against a base (RFC 3986 §5.2), as a
//! control point must for `controlURL` (UDA 1.1 §2.3: relative to `URLBase` or, without one,
//! to the description's LOCATION).

use std::fmt;

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
            (h, port)
        } else {
            match authority.rsplit_once(':') {
                Some((h, p)) => (h, if p.is_empty() { 80 } else { p.parse().ok()? }),
                None => (authority, 80),
            }
        };
        if host.is_empty() {
            return None;
        }
        let path = path.split('#').next().unwrap_or("/");
        let path = if path.starts_with('/') {
            path.to_string()
        } else {
            format!("/{path}")
        };
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
        Some(HttpUrl {
            host: self.host.clone(),
            port: self.port,
            path,
        })
    }
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
