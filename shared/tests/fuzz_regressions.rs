//! Inputs the fuzz targets (`fuzz/`, see fuzz/README.md) found, each with the property the
//! target checks, so they stay fixed on stable in `cargo test`. One test per finding, named
//! after it; the bytes are the target's crash input, shortened by hand where it was long.

use shared::gena::{self, GenaRequest};
use shared::url::HttpUrl;

/// `url_head`: the host `Sfe80::1]` was accepted, and printed to a URL that did not parse back.
/// Hosts are names, IPv4 addresses or bracketed IPv6 addresses (RFC 3986 §3.2.2) now.
#[test]
fn url_host_with_a_stray_bracket_is_refused() {
    assert_eq!(HttpUrl::parse("http://Sfe80::1]:5000/a/b.xml"), None);
}

/// A rogue device's LOCATION, URLBase, controlURL or GENA CALLBACK must not put a line end, a
/// NUL or a space on the request line or in the Host field of a request made to it (the
/// camera's control URL arrived with CR LF decoded from `&#13;&#10;`).
#[test]
fn url_with_control_characters_or_spaces_is_refused() {
    for bad in [
        "http://a:b:80/",
        "http://[not-v6]/",
        "http://h\r\nX-Injected: yes/",
        "http://h /",
        "http://192.168.1.1:5000/x\r\nX-Injected: yes",
        "http://192.168.1.1:5000/a b",
        "http://192.168.1.1:5000/\0",
    ] {
        assert_eq!(HttpUrl::parse(bad), None, "{bad:?}");
    }
    let base = HttpUrl::parse("http://192.168.1.1:5000/rootDesc.xml").unwrap();
    assert_eq!(base.join("/ctl\r\nX-Injected: yes"), None);
    assert_eq!(base.join("ctl\nx"), None);
    for good in [
        "http://[fe80::1%25eth0]:1/",
        "http://router.lan/",
        "http://h/%20?a=b&c",
    ] {
        let u = HttpUrl::parse(good).unwrap();
        assert_eq!(HttpUrl::parse(&u.to_string()), Some(u), "{good}");
    }
}

/// `gena`: a SUBSCRIBE whose CALLBACK host held `]` and NULs parsed, and the same request
/// emitted again did not (the URL was not one a request could be sent to).
#[test]
fn gena_callback_with_a_bracket_and_nuls_in_the_host() {
    let input = b"SUBSCRIBE /evt/IPConn HTTP/1.1\r\nHOST: 192..1:5000\r\n\
        CALLBACK: <http://192].168.1.GGGG\0\0\0\0GGGG38:4.30:49152/evt>\r\n\
        NT: upnp:event\r\nTIMEOUT: Second-1800\r\nC=\"utft-Length: 0\r\n\rg\0\n";
    if let Ok(r) = gena::parse_request(input) {
        if let GenaRequest::Subscribe(s) = &r {
            assert!(s.callbacks.is_empty(), "{:?}", s.callbacks);
        }
        let again = gena::parse_request(&r.emit("/evt/IPConn", "192.168.1.1:5000"));
        assert_eq!(again.as_ref(), Ok(&r));
    }
}
