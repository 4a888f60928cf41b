//! GENA eventing wire formats (UDA 1.1 §4).
//!
//! - `SUBSCRIBE` with `CALLBACK: <url>...` and `NT: upnp:event` starts a subscription;
//!   `SUBSCRIBE` with `SID` renews one; `UNSUBSCRIBE` with `SID` ends it (UDA 1.1 §4.1.2-§4.1.4).
//!   Mixing SID with CALLBACK/NT is 400 Bad Request; a missing or bad CALLBACK, an NT other
//!   than `upnp:event`, or an unknown SID is 412 Precondition Failed.
//! - The response carries `SID: uuid:...` and `TIMEOUT: Second-N` (UDA 1.1 §4.1.2).
//! - Events are `NOTIFY` with `NT: upnp:event`, `NTS: upnp:propchange`, `SID`, `SEQ` and an
//!   `e:propertyset` body (UDA 1.1 §4.3.2). SEQ starts at 0 and wraps to 1 (UDA 1.1 §4.3.2).
//!
//! Requests can be read from raw bytes ([`parse_request`]) or from a header list already
//! parsed by an HTTP server ([`request_from_fields`]). CallStranger (CVE-2020-12695): the shell
//! must only accept callbacks that point at the subscriber; [`Subscription::callbacks_point_at`]
//! is that check.

use std::fmt::Write as _;
use std::net::IpAddr;

use crate::head::{self, Head, HeadError};
use crate::url::HttpUrl;
use crate::xml::{self, Limits, XmlError, escape};

/// Namespace of the property set (UDA 1.1 §4.3.2).
pub const EVENT_NS: &str = "urn:schemas-upnp-org:event-1-0";
/// Largest SUBSCRIBE head we read.
pub const MAX_HEAD: usize = 8 * 1024;
/// Most callback URLs we keep from one CALLBACK header.
pub const MAX_CALLBACKS: usize = 4;

/// Why a SUBSCRIBE / UNSUBSCRIBE was refused, with the HTTP status to answer with.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GenaError {
    /// The head could not be read (400).
    #[error(transparent)]
    Head(#[from] HeadError),
    /// Not SUBSCRIBE or UNSUBSCRIBE (405).
    #[error("method not allowed")]
    Method,
    /// SID together with CALLBACK or NT (400, UDA 1.1 §4.1.2).
    #[error("SID together with CALLBACK or NT")]
    Incompatible,
    /// Missing or unusable CALLBACK, NT not `upnp:event`, or no SID (412, UDA 1.1 §4.1.2).
    #[error("precondition failed: {0}")]
    Precondition(&'static str),
    /// A bad TIMEOUT value (400).
    #[error("invalid TIMEOUT")]
    Timeout,
}

impl GenaError {
    /// The HTTP status to answer with.
    pub fn http_status(&self) -> u16 {
        match self {
            GenaError::Method => 405,
            GenaError::Precondition(_) => 412,
            _ => 400,
        }
    }
}

/// A subscription duration (UDA 1.1 §4.1.2: `Second-N`; `Second-infinite` from UDA 1.0).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Timeout {
    /// N seconds.
    Seconds(u32),
    /// `infinite`: the publisher picks its own bound.
    Infinite,
}

impl Timeout {
    /// Parses `Second-N` / `Second-infinite` (case-insensitive).
    pub fn parse(s: &str) -> Option<Timeout> {
        let s = s.trim();
        let (prefix, rest) = s.split_at_checked(7)?;
        if !prefix.eq_ignore_ascii_case("Second-") {
            return None;
        }
        if rest.eq_ignore_ascii_case("infinite") {
            return Some(Timeout::Infinite);
        }
        rest.parse().ok().map(Timeout::Seconds)
    }

    /// The header value.
    pub fn header_value(&self) -> String {
        match self {
            Timeout::Seconds(n) => format!("Second-{n}"),
            Timeout::Infinite => "Second-infinite".to_string(),
        }
    }

    /// The duration the publisher grants: the request clamped to `[min, max]`, or `default`
    /// when the request had none (UDA 1.1 §4.1.2: the publisher chooses the actual duration).
    pub fn grant(req: Option<Timeout>, min: u32, max: u32, default: u32) -> u32 {
        match req {
            None => default,
            Some(Timeout::Infinite) => max,
            Some(Timeout::Seconds(n)) => n.clamp(min, max),
        }
    }
}

/// A new subscription request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subscription {
    /// The callback URLs, in order of preference.
    pub callbacks: Vec<HttpUrl>,
    /// Requested duration.
    pub timeout: Option<Timeout>,
    /// `STATEVAR`: the variables of interest (UDA 1.1 §4.1.2), if given.
    pub statevar: Option<Vec<String>>,
}

impl Subscription {
    /// Whether every callback URL's host is the subscriber's own address (CallStranger
    /// defence). Host names are refused: a callback must be an address literal.
    pub fn callbacks_point_at(&self, subscriber: IpAddr) -> bool {
        !self.callbacks.is_empty()
            && self
                .callbacks
                .iter()
                .all(|u| u.host.parse::<IpAddr>().ok() == Some(subscriber))
    }
}

/// A GENA request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GenaRequest {
    /// SUBSCRIBE with CALLBACK and NT.
    Subscribe(Subscription),
    /// SUBSCRIBE with SID.
    Renew {
        /// `uuid:...`.
        sid: String,
        /// Requested duration.
        timeout: Option<Timeout>,
    },
    /// UNSUBSCRIBE with SID.
    Unsubscribe {
        /// `uuid:...`.
        sid: String,
    },
}

/// Parses `<url1><url2>` (UDA 1.1 §4.1.2). Non-HTTP URLs are skipped.
pub fn parse_callbacks(v: &str) -> Vec<HttpUrl> {
    v.split('<')
        .filter_map(|part| part.split_once('>').map(|(u, _)| u))
        .filter_map(HttpUrl::parse)
        .take(MAX_CALLBACKS)
        .collect()
}

/// Reads a request from a method and header fields (e.g. from hyper).
pub fn request_from_fields(
    method: &str,
    fields: &[(&str, &str)],
) -> Result<GenaRequest, GenaError> {
    let sid = head::get(fields, "SID")
        .map(str::trim)
        .filter(|s| !s.is_empty());
    let callback = head::get(fields, "CALLBACK");
    let nt = head::get(fields, "NT");
    let timeout = match head::get(fields, "TIMEOUT") {
        None => None,
        Some(t) => Some(Timeout::parse(t).ok_or(GenaError::Timeout)?),
    };
    if method.eq_ignore_ascii_case("UNSUBSCRIBE") {
        if callback.is_some() || nt.is_some() {
            return Err(GenaError::Incompatible);
        }
        let sid = sid.ok_or(GenaError::Precondition("SID"))?;
        return Ok(GenaRequest::Unsubscribe {
            sid: sid.to_string(),
        });
    }
    if !method.eq_ignore_ascii_case("SUBSCRIBE") {
        return Err(GenaError::Method);
    }
    if let Some(sid) = sid {
        if callback.is_some() || nt.is_some() {
            return Err(GenaError::Incompatible);
        }
        return Ok(GenaRequest::Renew {
            sid: sid.to_string(),
            timeout,
        });
    }
    if nt.map(str::trim) != Some("upnp:event") {
        return Err(GenaError::Precondition("NT"));
    }
    let callbacks = parse_callbacks(callback.ok_or(GenaError::Precondition("CALLBACK"))?);
    if callbacks.is_empty() {
        return Err(GenaError::Precondition("CALLBACK"));
    }
    let statevar = head::get(fields, "STATEVAR").map(|v| {
        v.split(',')
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
            .collect()
    });
    Ok(GenaRequest::Subscribe(Subscription {
        callbacks,
        timeout,
        statevar,
    }))
}

/// Reads a request from raw bytes (the head; a body is ignored).
pub fn parse_request(input: &[u8]) -> Result<GenaRequest, GenaError> {
    let h = Head::parse(input, MAX_HEAD)?;
    request_from_fields(h.first, &h.fields)
}

impl GenaRequest {
    /// Writes the request (client side) for `path` on `host` (`addr:port`).
    pub fn emit(&self, path: &str, host: &str) -> Vec<u8> {
        let mut s = String::with_capacity(256);
        let method = match self {
            GenaRequest::Unsubscribe { .. } => "UNSUBSCRIBE",
            _ => "SUBSCRIBE",
        };
        let _ = write!(s, "{method} {path} HTTP/1.1\r\nHOST: {host}\r\n");
        match self {
            GenaRequest::Subscribe(sub) => {
                s.push_str("CALLBACK: ");
                for c in &sub.callbacks {
                    let _ = write!(s, "<{c}>");
                }
                s.push_str("\r\nNT: upnp:event\r\n");
                if let Some(t) = sub.timeout {
                    let _ = write!(s, "TIMEOUT: {}\r\n", t.header_value());
                }
                if let Some(vars) = &sub.statevar {
                    let _ = write!(s, "STATEVAR: {}\r\n", vars.join(","));
                }
            }
            GenaRequest::Renew { sid, timeout } => {
                let _ = write!(s, "SID: {sid}\r\n");
                if let Some(t) = timeout {
                    let _ = write!(s, "TIMEOUT: {}\r\n", t.header_value());
                }
            }
            GenaRequest::Unsubscribe { sid } => {
                let _ = write!(s, "SID: {sid}\r\n");
            }
        }
        s.push_str("Content-Length: 0\r\n\r\n");
        s.into_bytes()
    }
}

/// The 200 OK answer to SUBSCRIBE (UDA 1.1 §4.1.2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubscribeResponse {
    /// `SID`.
    pub sid: String,
    /// Granted seconds.
    pub timeout: u32,
    /// `SERVER`.
    pub server: String,
    /// `ACCEPTED-STATEVAR`, when the request had STATEVAR.
    pub accepted_statevar: Option<Vec<String>>,
}

impl SubscribeResponse {
    /// The header fields (for an HTTP server library), without DATE, which the server adds.
    pub fn fields(&self) -> Vec<(&'static str, String)> {
        let mut v = vec![
            ("SERVER", self.server.clone()),
            ("SID", self.sid.clone()),
            ("TIMEOUT", Timeout::Seconds(self.timeout).header_value()),
        ];
        if let Some(a) = &self.accepted_statevar {
            v.push(("ACCEPTED-STATEVAR", a.join(",")));
        }
        v.push(("CONTENT-LENGTH", "0".to_string()));
        v
    }

    /// The whole response head.
    pub fn emit(&self) -> Vec<u8> {
        let mut s = String::from("HTTP/1.1 200 OK\r\n");
        for (k, v) in self.fields() {
            let _ = write!(s, "{k}: {v}\r\n");
        }
        s.push_str("\r\n");
        s.into_bytes()
    }

    /// Parses a response head (client side).
    pub fn parse(input: &[u8]) -> Result<SubscribeResponse, GenaError> {
        let h = Head::parse(input, MAX_HEAD)?;
        if h.second != "200" {
            return Err(GenaError::Precondition("status"));
        }
        let sid = h
            .get("SID")
            .ok_or(GenaError::Precondition("SID"))?
            .to_string();
        let timeout = match h.get("TIMEOUT").and_then(Timeout::parse) {
            Some(Timeout::Seconds(n)) => n,
            Some(Timeout::Infinite) => u32::MAX,
            None => return Err(GenaError::Timeout),
        };
        Ok(SubscribeResponse {
            sid,
            timeout,
            server: h.get("SERVER").unwrap_or("").to_string(),
            accepted_statevar: h
                .get("ACCEPTED-STATEVAR")
                .map(|v| v.split(',').map(|s| s.trim().to_string()).collect()),
        })
    }
}

/// The next SEQ after `seq`: +1, wrapping from u32::MAX to 1 (0 is only the initial event).
pub fn next_seq(seq: u32) -> u32 {
    seq.checked_add(1).unwrap_or(1)
}

/// An event message (UDA 1.1 §4.3.2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventNotify {
    /// `SID`.
    pub sid: String,
    /// `SEQ`.
    pub seq: u32,
    /// Changed variables, name and value.
    pub properties: Vec<(String, String)>,
}

impl EventNotify {
    /// The `e:propertyset` body; values escaped.
    pub fn body(&self) -> String {
        let mut s = String::with_capacity(128 + 64 * self.properties.len());
        let _ = write!(
            s,
            "<?xml version=\"1.0\"?>\r\n<e:propertyset xmlns:e=\"{EVENT_NS}\">"
        );
        for (k, v) in &self.properties {
            let _ = write!(s, "<e:property><{k}>{}</{k}></e:property>", escape(v));
        }
        s.push_str("</e:propertyset>\r\n");
        s
    }

    /// The whole request to the callback `url`.
    pub fn emit(&self, url: &HttpUrl) -> Vec<u8> {
        let body = self.body();
        let mut s = String::with_capacity(256 + body.len());
        let host = if url.host.contains(':') {
            format!("[{}]", url.host)
        } else {
            url.host.clone()
        };
        let _ = write!(
            s,
            "NOTIFY {} HTTP/1.1\r\nHOST: {host}:{}\r\nCONTENT-TYPE: text/xml; charset=\"utf-8\"\r\n\
             CONTENT-LENGTH: {}\r\nNT: upnp:event\r\nNTS: upnp:propchange\r\nSID: {}\r\nSEQ: {}\r\n\r\n",
            url.path,
            url.port,
            body.len(),
            self.sid,
            self.seq
        );
        s.push_str(&body);
        s.into_bytes()
    }

    /// Parses an event (subscriber side): head and body.
    pub fn parse(input: &[u8]) -> Result<EventNotify, EventParseError> {
        let h = Head::parse(input, 256 * 1024).map_err(EventParseError::Head)?;
        if !h.first.eq_ignore_ascii_case("NOTIFY") {
            return Err(EventParseError::NotEvent);
        }
        if h.get("NT") != Some("upnp:event") || h.get("NTS") != Some("upnp:propchange") {
            return Err(EventParseError::NotEvent);
        }
        let sid = h.get("SID").ok_or(EventParseError::NotEvent)?.to_string();
        let seq = h
            .get("SEQ")
            .and_then(|s| s.parse().ok())
            .ok_or(EventParseError::NotEvent)?;
        let body = input.get(h.body_offset..).unwrap_or(&[]);
        let properties = parse_propertyset(body)?;
        Ok(EventNotify {
            sid,
            seq,
            properties,
        })
    }
}

/// Why an event could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EventParseError {
    /// Bad head.
    #[error(transparent)]
    Head(HeadError),
    /// Not a GENA event.
    #[error("not a GENA event")]
    NotEvent,
    /// Bad body.
    #[error(transparent)]
    Xml(#[from] XmlError),
}

/// Parses an `e:propertyset` body into (name, value) pairs.
pub fn parse_propertyset(body: &[u8]) -> Result<Vec<(String, String)>, XmlError> {
    let root = xml::parse(
        body,
        Limits {
            max_bytes: 256 * 1024,
            ..Limits::default()
        },
    )?;
    if root.name != "propertyset" {
        return Err(XmlError::Malformed("not a propertyset".into()));
    }
    Ok(root
        .children_named("property")
        .flat_map(|p| p.children.iter().map(|v| (v.name.clone(), v.text.clone())))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A SUBSCRIBE as gupnp / Windows send it.
    const SUBSCRIBE: &[u8] = b"SUBSCRIBE /evt/IPConn HTTP/1.1\r\nHOST: 192.168.1.1:5000\r\nCALLBACK: <http://192.168.1.100:49152/cb><http://192.168.1.100:49153/cb2>\r\nNT: upnp:event\r\nTIMEOUT: Second-1800\r\nContent-Length: 0\r\n\r\n";

    #[test]
    fn subscribe() {
        let Ok(GenaRequest::Subscribe(s)) = parse_request(SUBSCRIBE) else {
            panic!()
        };
        assert_eq!(s.callbacks.len(), 2);
        assert_eq!(s.callbacks[0].to_string(), "http://192.168.1.100:49152/cb");
        assert_eq!(s.timeout, Some(Timeout::Seconds(1800)));
        assert!(s.callbacks_point_at("192.168.1.100".parse().unwrap()));
        assert!(!s.callbacks_point_at("192.168.1.101".parse().unwrap()));
        let req = GenaRequest::Subscribe(s);
        assert_eq!(
            parse_request(&req.emit("/evt/IPConn", "192.168.1.1:5000")),
            Ok(req)
        );
    }

    #[test]
    fn call_stranger_refused() {
        let raw = b"SUBSCRIBE /evt HTTP/1.1\r\nCALLBACK: <http://192.168.1.100/a><http://203.0.113.99/b>\r\nNT: upnp:event\r\n\r\n";
        let Ok(GenaRequest::Subscribe(s)) = parse_request(raw) else {
            panic!()
        };
        assert!(!s.callbacks_point_at("192.168.1.100".parse().unwrap()));
        let named = b"SUBSCRIBE /evt HTTP/1.1\r\nCALLBACK: <http://evil.example/a>\r\nNT: upnp:event\r\n\r\n";
        let Ok(GenaRequest::Subscribe(s)) = parse_request(named) else {
            panic!()
        };
        assert!(!s.callbacks_point_at("192.168.1.100".parse().unwrap()));
    }

    #[test]
    fn renew_unsubscribe_and_errors() {
        let renew =
            b"SUBSCRIBE /evt HTTP/1.1\r\nSID: uuid:1234\r\nTIMEOUT: second-infinite\r\n\r\n";
        assert_eq!(
            parse_request(renew),
            Ok(GenaRequest::Renew {
                sid: "uuid:1234".into(),
                timeout: Some(Timeout::Infinite)
            })
        );
        let un = b"UNSUBSCRIBE /evt HTTP/1.1\r\nSID: uuid:1234\r\n\r\n";
        let r = parse_request(un).unwrap();
        assert_eq!(
            r,
            GenaRequest::Unsubscribe {
                sid: "uuid:1234".into()
            }
        );
        assert_eq!(parse_request(&r.emit("/evt", "h")), Ok(r));
        let cases: &[(&[u8], u16)] = &[
            (
                b"SUBSCRIBE /e HTTP/1.1\r\nSID: uuid:1\r\nNT: upnp:event\r\n\r\n",
                400,
            ),
            (
                b"SUBSCRIBE /e HTTP/1.1\r\nCALLBACK: <http://a/>\r\n\r\n",
                412,
            ),
            (b"SUBSCRIBE /e HTTP/1.1\r\nNT: upnp:event\r\n\r\n", 412),
            (
                b"SUBSCRIBE /e HTTP/1.1\r\nNT: upnp:event\r\nCALLBACK: <ftp://a/>\r\n\r\n",
                412,
            ),
            (
                b"SUBSCRIBE /e HTTP/1.1\r\nNT: upnp:other\r\nCALLBACK: <http://a/>\r\n\r\n",
                412,
            ),
            (
                b"SUBSCRIBE /e HTTP/1.1\r\nSID: uuid:1\r\nTIMEOUT: Minute-3\r\n\r\n",
                400,
            ),
            (b"UNSUBSCRIBE /e HTTP/1.1\r\n\r\n", 412),
            (b"GET /e HTTP/1.1\r\n\r\n", 405),
            (b"", 400),
        ];
        for (raw, status) in cases {
            let e = parse_request(raw).unwrap_err();
            assert_eq!(e.http_status(), *status, "{}", String::from_utf8_lossy(raw));
        }
    }

    #[test]
    fn timeouts() {
        assert_eq!(Timeout::parse("Second-300"), Some(Timeout::Seconds(300)));
        assert_eq!(Timeout::parse("Second-"), None);
        assert_eq!(Timeout::parse("Sec"), None);
        assert_eq!(Timeout::parse("Second-é"), None);
        assert_eq!(
            Timeout::grant(Some(Timeout::Seconds(5)), 1800, 86400, 1800),
            1800
        );
        assert_eq!(
            Timeout::grant(Some(Timeout::Infinite), 1800, 86400, 1800),
            86400
        );
        assert_eq!(Timeout::grant(None, 1800, 86400, 3600), 3600);
    }

    #[test]
    fn response_round_trip() {
        let r = SubscribeResponse {
            sid: "uuid:abcd".into(),
            timeout: 1800,
            server: "Linux/6 UPnP/1.1 hnib/0.1".into(),
            accepted_statevar: None,
        };
        let raw = r.emit();
        assert!(String::from_utf8_lossy(&raw).contains("TIMEOUT: Second-1800\r\n"));
        assert_eq!(SubscribeResponse::parse(&raw), Ok(r));
    }

    #[test]
    fn event_round_trip_and_seq() {
        let e = EventNotify {
            sid: "uuid:abcd".into(),
            seq: 0,
            properties: vec![
                ("PortMappingNumberOfEntries".into(), "3".into()),
                ("ExternalIPAddress".into(), "203.0.113.2".into()),
                ("ConnectionStatus".into(), "<Connected & 'up'>".into()),
            ],
        };
        let url = HttpUrl::parse("http://192.168.1.100:49152/cb").unwrap();
        let raw = e.emit(&url);
        let text = String::from_utf8_lossy(&raw);
        assert!(text.starts_with("NOTIFY /cb HTTP/1.1\r\nHOST: 192.168.1.100:49152\r\n"));
        assert!(text.contains("&lt;Connected &amp; &apos;up&apos;&gt;"));
        assert_eq!(EventNotify::parse(&raw), Ok(e));
        assert_eq!(next_seq(0), 1);
        assert_eq!(next_seq(u32::MAX), 1);
    }
}
