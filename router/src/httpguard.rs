//! What the router's HTTP servers (the control API and admin page, [`crate::control`]; the
//! IGD, [`crate::upnp::http`]) check before they act on a request from the LAN.
//!
//! - **Host** ([`host_allowed`]): a browser sends the name it resolved. After DNS rebinding
//!   (an attacker's name re-pointed at 192.168.1.1), a page of the attacker's is same-origin
//!   with the router in the browser's eyes, but its requests still carry the attacker's name
//!   in `Host` (RFC 9110 §7.2). Only the router's own addresses (and names the administrator
//!   configured) are answered.
//! - **Origin** ([`origin_allowed`]): browsers send it on every cross-origin request and on
//!   every POST (RFC 6454 §7, Fetch §3.1); a foreign one on a state change is a cross-site
//!   request forgery.
//! - **Connections** ([`ConnLimiter`]): a cap for the server and one per client address, so
//!   that one LAN host holding idle connections (slowloris) cannot take them all.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::{Arc, Mutex, PoisonError};

/// The host part of a `Host` field value (`host[:port]`, RFC 9110 §7.2), lower-cased, without
/// a trailing dot; IPv6 literals without their brackets. None when it is not of that form.
pub fn host_of(value: &[u8]) -> Option<String> {
    let v = std::str::from_utf8(value).ok()?.trim();
    let (host, port) = if let Some(rest) = v.strip_prefix('[') {
        let (h, after) = rest.split_once(']')?;
        (h, after.strip_prefix(':'))
    } else {
        match v.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (v, None),
        }
    };
    if let Some(p) = port
        && (p.is_empty() || p.len() > 5 || !p.bytes().all(|b| b.is_ascii_digit()))
    {
        return None;
    }
    let host = host.strip_suffix('.').unwrap_or(host);
    let ok = |b: u8| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b':' | b'_');
    (!host.is_empty() && host.bytes().all(ok)).then(|| host.to_ascii_lowercase())
}

/// Whether a `Host` value names this router: one of `addrs` (any port) or one of `names`.
/// A request without `Host` is refused (HTTP/1.1 requires it, RFC 9112 §3.2).
pub fn host_allowed(value: Option<&[u8]>, addrs: &[IpAddr], names: &[String]) -> bool {
    let Some(host) = value.and_then(host_of) else {
        return false;
    };
    if let Ok(ip) = host.parse::<IpAddr>() {
        return addrs.contains(&ip);
    }
    names
        .iter()
        .any(|n| n.trim_end_matches('.').eq_ignore_ascii_case(&host))
}

/// Whether an `Origin` value (`scheme://host[:port]`, RFC 6454 §7) is this router's own: http
/// or https and a host [`host_allowed`] accepts. `null` (sandboxed frames, file: pages) and
/// anything else is foreign.
pub fn origin_allowed(value: &[u8], addrs: &[IpAddr], names: &[String]) -> bool {
    let Ok(v) = std::str::from_utf8(value) else {
        return false;
    };
    let Some(rest) = v
        .trim()
        .strip_prefix("http://")
        .or_else(|| v.trim().strip_prefix("https://"))
    else {
        return false;
    };
    !rest.contains('/') && host_allowed(Some(rest.as_bytes()), addrs, names)
}

/// Whether a `Content-Type` value has the media type `want` (case-insensitive, parameters
/// such as `charset` allowed; RFC 9110 §8.3.1).
pub fn media_type_is(value: Option<&[u8]>, want: &str) -> bool {
    value.is_some_and(|v| {
        let media = v.split(|b| *b == b';').next().unwrap_or_default();
        media.trim_ascii().eq_ignore_ascii_case(want.as_bytes())
    })
}

/// Counts open connections, in all and per client address, against two caps.
#[derive(Debug)]
pub struct ConnLimiter {
    total: usize,
    per_client: usize,
    open: Mutex<(usize, HashMap<IpAddr, usize>)>,
}

/// One admitted connection; dropping it frees its place.
#[derive(Debug)]
pub struct ConnPermit {
    limiter: Arc<ConnLimiter>,
    client: IpAddr,
}

/// Why a connection was not admitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// The server has `total` connections open.
    Full,
    /// This client has `per_client` open.
    ClientFull,
}

impl ConnLimiter {
    /// At most `total` connections at once, and `per_client` from one address (both at least 1).
    pub fn new(total: usize, per_client: usize) -> Arc<ConnLimiter> {
        Arc::new(ConnLimiter {
            total: total.max(1),
            per_client: per_client.max(1),
            open: Mutex::new((0, HashMap::new())),
        })
    }

    /// A place for one more connection from `client`, if both caps allow it. IPv4-mapped IPv6
    /// addresses count as their IPv4 address.
    pub fn admit(self: &Arc<Self>, client: IpAddr) -> Result<ConnPermit, Refused> {
        let client = canonical(client);
        let mut open = self.open.lock().unwrap_or_else(PoisonError::into_inner);
        if open.0 >= self.total {
            return Err(Refused::Full);
        }
        let n = open.1.entry(client).or_default();
        if *n >= self.per_client {
            return Err(Refused::ClientFull);
        }
        *n += 1;
        open.0 += 1;
        Ok(ConnPermit {
            limiter: self.clone(),
            client,
        })
    }

    /// Connections open now: in all, and from `client`.
    pub fn open(&self, client: IpAddr) -> (usize, usize) {
        let open = self.open.lock().unwrap_or_else(PoisonError::into_inner);
        (open.0, open.1.get(&canonical(client)).copied().unwrap_or(0))
    }
}

impl Drop for ConnPermit {
    fn drop(&mut self) {
        let mut open = self
            .limiter
            .open
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        open.0 = open.0.saturating_sub(1);
        if let Some(n) = open.1.get_mut(&self.client) {
            *n -= 1;
            if *n == 0 {
                open.1.remove(&self.client);
            }
        }
    }
}

fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(a) => a.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        IpAddr::V4(_) => ip,
    }
}

/// The addresses a LAN client may use to reach a server bound to `bound`: that address, or
/// when bound to 0.0.0.0, the LAN address.
pub fn own_addrs(bound: IpAddr, lan: Ipv4Addr) -> Vec<IpAddr> {
    let mut v = vec![IpAddr::V4(lan)];
    if !bound.is_unspecified() && bound != IpAddr::V4(lan) {
        v.push(bound);
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    const LAN: IpAddr = IpAddr::V4(Ipv4Addr::new(192, 168, 1, 1));

    #[test]
    fn hosts() {
        let names = vec!["router.lan".to_string()];
        let ok = |v: &str| host_allowed(Some(v.as_bytes()), &[LAN], &names);
        for good in [
            "192.168.1.1",
            "192.168.1.1:80",
            "192.168.1.1:5000",
            "router.lan",
            "ROUTER.LAN.:80",
        ] {
            assert!(ok(good), "{good}");
        }
        for bad in [
            "",
            "evil.example",
            "evil.example:80",
            "192.168.1.2",
            "192.168.1.1:",
            "192.168.1.1:80:80",
            "192.168.1.1.evil.example",
            "192.168.1.1 x",
            "[::1]:80",
            "router.lan@evil",
            "192.168.1.1:999999",
        ] {
            assert!(!ok(bad), "{bad}");
        }
        assert!(!host_allowed(None, &[LAN], &names));
        assert!(host_allowed(
            Some(b"[::1]:80"),
            &["::1".parse().unwrap()],
            &[]
        ));
        assert!(!host_allowed(Some(&[0xff, b'a'][..]), &[LAN], &[]));
    }

    #[test]
    fn origins() {
        let ok = |v: &str| origin_allowed(v.as_bytes(), &[LAN], &[]);
        assert!(ok("http://192.168.1.1"));
        assert!(ok("http://192.168.1.1:80"));
        assert!(ok("https://192.168.1.1"));
        for bad in [
            "null",
            "http://evil.example",
            "http://192.168.1.1.evil.example",
            "http://192.168.1.1/",
            "ftp://192.168.1.1",
            "http://203.0.113.1:8000",
        ] {
            assert!(!ok(bad), "{bad}");
        }
    }

    #[test]
    fn limiter_caps_in_all_and_per_client() {
        let l = ConnLimiter::new(3, 2);
        let a = IpAddr::V4(Ipv4Addr::new(192, 168, 1, 50));
        let b = IpAddr::V4(Ipv4Addr::new(192, 168, 1, 51));
        let c = IpAddr::V4(Ipv4Addr::new(192, 168, 1, 52));
        let a1 = l.admit(a).unwrap();
        let _a2 = l.admit("::ffff:192.168.1.50".parse().unwrap()).unwrap();
        assert_eq!(l.admit(a).unwrap_err(), Refused::ClientFull);
        let _b1 = l.admit(b).unwrap();
        assert_eq!(l.admit(c).unwrap_err(), Refused::Full);
        drop(a1);
        assert_eq!(l.open(a), (2, 1));
        let _c1 = l.admit(c).unwrap();
        assert_eq!(l.open(c), (3, 1));
    }
}
