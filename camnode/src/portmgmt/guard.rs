//! What port management refuses from the router, and the bound on every exchange with it.
//!
//! Everything in an IGD's answers is the word of whoever answered our M-SEARCH on the LAN (a
//! rogue IGD is one `socat` away), so:
//! - URLs go into our request line and `Host` header as given: a URL with a space, a control
//!   character (`&#13;&#10;` decodes to CR LF in XML) or anything outside printable ASCII could
//!   add headers or a second request (request splitting, RFC 9112 §3.2, RFC 3986 §2: a URI has
//!   no such characters); [`check_url`] refuses them.
//! - The control URL must be on the host that served the description ([`check_control_url`]):
//!   otherwise a device on the LAN could make the camera POST to any host and port it names.
//! - Every request has a deadline in the core ([`REQUEST_DEADLINE`]): an answer the driver never
//!   delivers (a task that died, a lost channel) becomes an error, not a stalled queue.

use std::net::Ipv4Addr;
use std::time::Duration;

use shared::url::HttpUrl;

/// How long the core waits for the answer to one request before it counts it as failed: the
/// driver's own timeout (3 s) plus margin, so the driver's error normally comes first.
pub const REQUEST_DEADLINE: Duration = Duration::from_secs(5);

/// A URL we may put on the wire: the host is a name or an address literal (letters, digits,
/// `.`, `-`, `_`, `:` for IPv6), the path is printable ASCII without spaces.
pub fn check_url(url: &HttpUrl) -> Result<(), String> {
    let host_ok = !url.host.is_empty()
        && url.host.len() <= 253
        && url
            .host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_' | b':'));
    if !host_ok {
        return Err(format!(
            "URL host {:?} is not a host name or address",
            url.host
        ));
    }
    if let Some(b) = url.path.bytes().find(|b| !(0x21..=0x7e).contains(b)) {
        return Err(format!(
            "URL path {:?} contains the byte 0x{b:02x} (spaces, control characters and non-ASCII are refused)",
            url.path
        ));
    }
    Ok(())
}

/// The control URL found in a description fetched from `description`: a safe URL on the same
/// host (the port may differ).
pub fn check_control_url(description: &HttpUrl, control: &HttpUrl) -> Result<(), String> {
    check_url(control)?;
    if !control.host.eq_ignore_ascii_case(&description.host) {
        return Err(format!(
            "control URL {control} is not on the description's host {}",
            description.host
        ));
    }
    Ok(())
}

/// True for addresses that are not reachable from the internet: RFC 1918, carrier-grade NAT
/// (RFC 6598, 100.64/10), link-local (169.254/16), and loopback/unspecified.
pub fn is_private_or_cgnat(a: Ipv4Addr) -> bool {
    let o = a.octets();
    a.is_private()
        || a.is_link_local()
        || a.is_loopback()
        || a.is_unspecified()
        || (o[0] == 100 && (o[1] & 0xc0) == 64)
}

/// True for an SSDP search target or notification type of an IGD or its connection service.
pub fn is_igd_type(t: &str) -> bool {
    t.contains(":device:InternetGatewayDevice:")
        || t.contains(":service:WANIPConnection:")
        || t.contains(":service:WANPPPConnection:")
}

/// The device UUID of a USN (`uuid:XXXX::urn:...` or `uuid:XXXX`).
pub fn usn_uuid(usn: &str) -> String {
    usn.split("::")
        .next()
        .unwrap_or(usn)
        .trim()
        .to_ascii_lowercase()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url(s: &str) -> HttpUrl {
        HttpUrl::parse(s).unwrap()
    }

    #[test]
    fn urls_with_spaces_or_control_characters_are_refused() {
        assert!(check_url(&url("http://192.168.1.1:5000/ctl/IPConn")).is_ok());
        assert!(check_url(&url("http://router.lan/ctl?x=1&y=%20")).is_ok());
        let raw = |host: &str, path: &str| HttpUrl {
            host: host.into(),
            port: 80,
            path: path.into(),
        };
        for (host, path) in [
            ("192.168.1.1", "/x\r\nX-Injected: yes"),
            ("192.168.1.1", "/a b"),
            ("192.168.1.1", "/a\tb"),
            ("192.168.1.1", "/caf\u{e9}"),
            ("192.168.1.1", "/\u{7f}"),
            ("a b", "/x"),
            ("a\r\nb", "/x"),
            ("", "/x"),
        ] {
            assert!(
                check_url(&raw(host, path)).is_err(),
                "{host:?} {path:?} accepted"
            );
        }
    }

    #[test]
    fn control_url_must_be_on_the_description_host() {
        let desc = url("http://192.168.1.1:5000/rootDesc.xml");
        assert!(check_control_url(&desc, &url("http://192.168.1.1:5000/ctl/IPConn")).is_ok());
        assert!(check_control_url(&desc, &url("http://192.168.1.1:49000/ctl")).is_ok());
        assert!(check_control_url(&desc, &url("http://192.168.1.50:8445/x")).is_err());
        assert!(check_control_url(&desc, &url("http://203.0.113.9/x")).is_err());
    }
}
