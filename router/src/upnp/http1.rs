//! The HTTP/1.1 wire format the IGD's server speaks (RFC 9112), without I/O: request heads,
//! request body framing (Content-Length, chunked), response heads. [`super::http`] drives it.
//!
//! Heads are tokenised by httparse (the parser hyper uses); the rest is ours. Strict where a
//! lenient reading could be ambiguous (RFC 9112 §11.2, request smuggling): whitespace before a
//! field's colon, obs-fold, conflicting Content-Length values, a Transfer-Encoding that does
//! not end in chunked, or one in an HTTP/1.0 request are refused. Lenient where RFC 9112
//! allows it: empty lines before the request line (§2.2), a bare LF as a line end (§2.2).

use std::cell::RefCell;
use std::io::Write;
use std::time::{SystemTime, UNIX_EPOCH};

use hyper::header::{
    CONNECTION, CONTENT_LENGTH, DATE, EXPECT, HeaderMap, HeaderName, HeaderValue, TRANSFER_ENCODING,
};
use hyper::{Method, StatusCode, Uri, Version};

/// Longest request head (request line and fields, leading empty lines included).
pub const MAX_HEAD: usize = 16 * 1024;
/// Most field lines in a request head.
pub const MAX_FIELDS: usize = 100;
/// Longest chunk-size line (size and extensions) of a chunked body.
const MAX_CHUNK_LINE: usize = 1024;

/// The interim response to `Expect: 100-continue` (RFC 9110 §15.2.1).
pub const CONTINUE: &[u8] = b"HTTP/1.1 100 Continue\r\n\r\n";

/// A parsed request head.
#[derive(Debug)]
pub struct Head {
    pub method: Method,
    pub uri: Uri,
    /// HTTP/1.0 or HTTP/1.1.
    pub version: Version,
    pub headers: HeaderMap,
    pub framing: Framing,
    /// Whether the connection may carry another request after this one (RFC 9112 §9.3).
    pub keep_alive: bool,
    /// `Expect: 100-continue` from an HTTP/1.1 client (RFC 9110 §10.1.1).
    pub expect_continue: bool,
}

/// How the request body is delimited (RFC 9112 §6.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// No body.
    None,
    /// Content-Length bytes.
    Length(u64),
    /// Transfer-Encoding: chunked (RFC 9112 §7.1).
    Chunked,
}

/// A request body, as far as it has arrived.
#[derive(Debug, PartialEq, Eq)]
pub enum Body {
    /// More bytes are needed.
    Partial,
    /// The body (decoded) and the bytes it took in the buffer.
    Complete { data: Vec<u8>, used: usize },
    /// Longer than the limit.
    TooLarge,
    /// Malformed chunked coding.
    Invalid,
}

/// Parses the request head at the start of `buf`: `Ok(None)` while it is incomplete,
/// `Ok(Some((head, len)))` with the bytes it took, `Err(status)` for a head to refuse (and
/// close the connection after the answer). The request line and field lines are tokenised by
/// httparse (hyper's own parser), which refuses whitespace before a colon (RFC 9112 §5.1),
/// obs-fold (§5.2) and invalid bytes at once, and skips empty lines before the request line
/// (§2.2); the framing rules are ours ([`head`]).
pub fn parse_head(buf: &[u8]) -> Result<Option<(Head, usize)>, StatusCode> {
    let bad = StatusCode::BAD_REQUEST;
    let mut fields = [httparse::EMPTY_HEADER; MAX_FIELDS];
    let mut req = httparse::Request::new(&mut fields);
    let len = match req.parse(buf) {
        Ok(httparse::Status::Complete(len)) if len > MAX_HEAD => {
            return Err(StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE);
        }
        Ok(httparse::Status::Complete(len)) => len,
        // The version is known once the request line is complete.
        Ok(httparse::Status::Partial) if buf.len() > MAX_HEAD => {
            return Err(if req.version.is_none() {
                StatusCode::URI_TOO_LONG
            } else {
                StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE
            });
        }
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(httparse::Error::TooManyHeaders) => {
            return Err(StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE);
        }
        Err(httparse::Error::Version) => return Err(version_refusal(buf)),
        Err(_) => return Err(bad),
    };
    let method = Method::from_bytes(req.method.unwrap_or_default().as_bytes()).map_err(|_| bad)?;
    let uri = req.path.and_then(|t| t.parse::<Uri>().ok()).ok_or(bad)?;
    let version = match req.version {
        Some(0) => Version::HTTP_10,
        _ => Version::HTTP_11,
    };
    let mut headers = HeaderMap::with_capacity(req.headers.len());
    for field in req.headers.iter() {
        let name = HeaderName::from_bytes(field.name.as_bytes()).map_err(|_| bad)?;
        let value = HeaderValue::from_bytes(trim_ows(field.value)).map_err(|_| bad)?;
        headers.append(name, value);
    }
    let head = head(method, uri, version, headers)?;
    Ok(Some((head, len)))
}

/// What a request line whose version httparse refused gets: 505 for a well-formed
/// `method SP target SP HTTP-version` in a version other than 1.0 and 1.1 (an HTTP/2 preface,
/// HTTP/1.9: hyper did the same), 400 for anything else.
fn version_refusal(buf: &[u8]) -> StatusCode {
    let start = buf
        .iter()
        .position(|&b| b != b'\r' && b != b'\n')
        .unwrap_or(0);
    let line = line_at(buf, start).map_or(&buf[start..], |(l, _)| l);
    let parts: Vec<&[u8]> = line.split(|&b| b == b' ').collect();
    match parts.as_slice() {
        [_, _, [b'H', b'T', b'T', b'P', b'/', major, b'.', minor]]
            if major.is_ascii_digit() && minor.is_ascii_digit() =>
        {
            StatusCode::HTTP_VERSION_NOT_SUPPORTED
        }
        _ => StatusCode::BAD_REQUEST,
    }
}

/// The line starting at `from`, without its line end, and where the next one starts.
fn line_at(buf: &[u8], from: usize) -> Option<(&[u8], usize)> {
    let lf = buf.get(from..)?.iter().position(|&b| b == b'\n')?;
    let line = &buf[from..from + lf];
    Some((line.strip_suffix(b"\r").unwrap_or(line), from + lf + 1))
}

fn trim_ows(mut v: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = v {
        v = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = v {
        v = rest;
    }
    v
}

/// The comma-separated elements of every `name` field, trimmed, empty ones left out.
fn list<'a>(headers: &'a HeaderMap, name: &HeaderName) -> impl Iterator<Item = &'a [u8]> {
    headers
        .get_all(name)
        .into_iter()
        .flat_map(|v| v.as_bytes().split(|&b| b == b','))
        .map(trim_ows)
        .filter(|e| !e.is_empty())
}

/// Body framing (RFC 9112 §6), keep-alive (§9.3) and Expect.
fn head(
    method: Method,
    uri: Uri,
    version: Version,
    headers: HeaderMap,
) -> Result<Head, StatusCode> {
    let bad = StatusCode::BAD_REQUEST;
    let has = |name: &HeaderName, token: &str| {
        list(&headers, name).any(|e| e.eq_ignore_ascii_case(token.as_bytes()))
    };
    let mut keep_alive = if version == Version::HTTP_10 {
        has(&CONNECTION, "keep-alive") && !has(&CONNECTION, "close")
    } else {
        !has(&CONNECTION, "close")
    };
    let framing = if headers.contains_key(TRANSFER_ENCODING) {
        // §6.1: Transfer-Encoding in HTTP/1.0 is faulty framing.
        if version == Version::HTTP_10 {
            return Err(bad);
        }
        let codings: Vec<&[u8]> = list(&headers, &TRANSFER_ENCODING).collect();
        match codings.as_slice() {
            [c] if c.eq_ignore_ascii_case(b"chunked") => {}
            // §6.3: a final coding other than chunked cannot be framed.
            [.., last] if !last.eq_ignore_ascii_case(b"chunked") => return Err(bad),
            [] => return Err(bad),
            // §6.1: chunked at most once.
            [.., c, _] if c.eq_ignore_ascii_case(b"chunked") => return Err(bad),
            // §6.1: codings we do not implement (gzip, ...).
            _ => return Err(StatusCode::NOT_IMPLEMENTED),
        }
        // §6.1: with Content-Length too, the connection closes after the answer.
        if headers.contains_key(CONTENT_LENGTH) {
            keep_alive = false;
        }
        Framing::Chunked
    } else if headers.contains_key(CONTENT_LENGTH) {
        // §6.3: several values must all be the same number.
        let mut len = None;
        for v in headers
            .get_all(CONTENT_LENGTH)
            .into_iter()
            .flat_map(|v| v.as_bytes().split(|&b| b == b','))
        {
            let v = trim_ows(v);
            if v.is_empty() || v.len() > 19 || !v.iter().all(u8::is_ascii_digit) {
                return Err(bad);
            }
            let n = v.iter().fold(0u64, |n, d| n * 10 + u64::from(d - b'0'));
            if len.is_some_and(|l| l != n) {
                return Err(bad);
            }
            len = Some(n);
        }
        Framing::Length(len.ok_or(bad)?)
    } else {
        Framing::None
    };
    let expect_continue = version == Version::HTTP_11 && has(&EXPECT, "100-continue");
    Ok(Head {
        method,
        uri,
        version,
        headers,
        framing,
        keep_alive,
        expect_continue,
    })
}

/// The body at the start of `buf`, at most `limit` bytes once decoded.
pub fn body(framing: Framing, buf: &[u8], limit: usize) -> Body {
    match framing {
        Framing::None => Body::Complete {
            data: Vec::new(),
            used: 0,
        },
        Framing::Length(n) if n > limit as u64 => Body::TooLarge,
        Framing::Length(n) => {
            let n = n as usize;
            match buf.get(..n) {
                Some(d) => Body::Complete {
                    data: d.to_vec(),
                    used: n,
                },
                None => Body::Partial,
            }
        }
        Framing::Chunked => chunked(buf, limit),
    }
}

/// `*chunk last-chunk trailer-section CRLF` (RFC 9112 §7.1). Extensions and trailer fields
/// are read and dropped (§7.1.1, §7.1.2). The coded form may take at most 4 × `limit` + 4 KiB,
/// so tiny chunks with long extensions cannot grow the buffer without bound.
fn chunked(buf: &[u8], limit: usize) -> Body {
    let raw_limit = limit.saturating_mul(4).saturating_add(4096);
    let partial = |at: usize| {
        if at > raw_limit {
            Body::TooLarge
        } else {
            Body::Partial
        }
    };
    let mut data = Vec::new();
    let mut pos = 0;
    loop {
        let Some((line, next)) = line_at(buf, pos) else {
            if buf.len() - pos > MAX_CHUNK_LINE {
                return Body::Invalid;
            }
            return partial(buf.len());
        };
        if line.len() > MAX_CHUNK_LINE {
            return Body::Invalid;
        }
        let size = match line.iter().position(|&b| b == b';') {
            Some(i) => trim_ows(&line[..i]),
            None => line,
        };
        if size.is_empty() || !size.iter().all(u8::is_ascii_hexdigit) {
            return Body::Invalid;
        }
        let mut n: usize = 0;
        for &d in size {
            let d = (d as char).to_digit(16).unwrap_or(0) as usize;
            n = n.saturating_mul(16).saturating_add(d);
        }
        pos = next;
        if pos > raw_limit {
            return Body::TooLarge;
        }
        if n == 0 {
            // The trailer section, up to an empty line.
            loop {
                let Some((line, next)) = line_at(buf, pos) else {
                    return partial(buf.len());
                };
                pos = next;
                if pos > raw_limit {
                    return Body::TooLarge;
                }
                if line.is_empty() {
                    return Body::Complete { data, used: pos };
                }
            }
        }
        if n > limit || data.len() + n > limit {
            return Body::TooLarge;
        }
        let Some(chunk) = buf.get(pos..pos + n) else {
            return partial(buf.len());
        };
        data.extend_from_slice(chunk);
        pos += n;
        match &buf[pos..] {
            [b'\r', b'\n', ..] => pos += 2,
            [b'\n', ..] => pos += 1,
            [] | [b'\r'] => return partial(buf.len()),
            _ => return Body::Invalid,
        }
    }
}

/// Appends a response to `out`: the status line in the request's version, the fields of
/// `headers`, Content-Length (unless `headers` has one: a HEAD answer), Date (RFC 9110
/// §6.6.1), Connection when it differs from the version's default (RFC 9112 §9.3), then the
/// body unless `send_body` is false (HEAD).
pub fn write_response(
    out: &mut Vec<u8>,
    version: Version,
    status: StatusCode,
    headers: &HeaderMap,
    body: &[u8],
    send_body: bool,
    keep_alive: bool,
) {
    out.extend_from_slice(if version == Version::HTTP_10 {
        b"HTTP/1.0 "
    } else {
        b"HTTP/1.1 "
    });
    out.extend_from_slice(status.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(status.canonical_reason().unwrap_or("").as_bytes());
    out.extend_from_slice(b"\r\n");
    for (name, value) in headers {
        if name == CONNECTION {
            continue;
        }
        out.extend_from_slice(name.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    if !headers.contains_key(CONTENT_LENGTH) {
        let _ = write!(out, "content-length: {}\r\n", body.len());
    }
    if !headers.contains_key(DATE) {
        out.extend_from_slice(b"date: ");
        with_date(|d| out.extend_from_slice(d));
        out.extend_from_slice(b"\r\n");
    }
    match (version == Version::HTTP_10, keep_alive) {
        (true, true) => out.extend_from_slice(b"connection: keep-alive\r\n"),
        (false, false) => out.extend_from_slice(b"connection: close\r\n"),
        _ => {}
    }
    out.extend_from_slice(b"\r\n");
    if send_body {
        out.extend_from_slice(body);
    }
}

/// Calls `f` with the current IMF-fixdate (RFC 9110 §5.6.7), formatted once a second.
fn with_date(f: impl FnOnce(&[u8])) {
    thread_local! {
        static DATE: RefCell<(u64, [u8; 29])> = const { RefCell::new((u64::MAX, [0; 29])) };
    }
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    DATE.with(|d| {
        let mut d = d.borrow_mut();
        if d.0 != now {
            *d = (now, imf_fixdate(now));
        }
        f(&d.1)
    });
}

/// `Sun, 06 Nov 1994 08:49:37 GMT` for seconds since the Unix epoch.
fn imf_fixdate(secs: u64) -> [u8; 29] {
    const DAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let days = secs / 86_400;
    let t = secs % 86_400;
    // Civil date from days since 1970-01-01 (H. Hinnant's algorithm, proleptic Gregorian).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    let text = format!(
        "{}, {:02} {} {:04} {:02}:{:02}:{:02} GMT",
        DAYS[(days % 7) as usize],
        day,
        MONTHS[(month - 1) as usize],
        year.clamp(0, 9999),
        t / 3600,
        t / 60 % 60,
        t % 60
    );
    let mut out = [b' '; 29];
    let n = text.len().min(29);
    out[..n].copy_from_slice(&text.as_bytes()[..n]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(buf: &[u8]) -> (Head, usize) {
        parse_head(buf).unwrap().unwrap()
    }

    const SOAP: &[u8] = b"POST /ctl/IPConn HTTP/1.1\r\nHost: 192.168.1.1:5000\r\nContent-Type: text/xml; charset=\"utf-8\"\r\nSOAPAction: \"urn:schemas-upnp-org:service:WANIPConnection:1#GetExternalIPAddress\"\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello";

    #[test]
    fn a_soap_request() {
        let (h, n) = ok(SOAP);
        assert_eq!(h.method, Method::POST);
        assert_eq!(h.uri.path(), "/ctl/IPConn");
        assert_eq!(h.version, Version::HTTP_11);
        assert_eq!(h.framing, Framing::Length(5));
        assert!(!h.keep_alive && !h.expect_continue);
        assert_eq!(
            h.headers.get("soapaction").unwrap().as_bytes(),
            b"\"urn:schemas-upnp-org:service:WANIPConnection:1#GetExternalIPAddress\""
        );
        assert_eq!(&SOAP[n..], b"hello");
        assert_eq!(
            body(h.framing, &SOAP[n..], 16),
            Body::Complete {
                data: b"hello".to_vec(),
                used: 5
            }
        );
        assert_eq!(body(h.framing, &SOAP[n..n + 4], 16), Body::Partial);
        assert_eq!(body(h.framing, &SOAP[n..], 4), Body::TooLarge);
    }

    #[test]
    fn every_split_of_a_request_is_partial_until_the_end_of_the_head() {
        let (_, n) = ok(SOAP);
        for cut in 0..n {
            assert!(
                matches!(parse_head(&SOAP[..cut]), Ok(None)),
                "cut at {cut}: {:?}",
                parse_head(&SOAP[..cut]).map(|h| h.map(|h| h.1))
            );
        }
        for cut in n..=SOAP.len() {
            assert_eq!(ok(&SOAP[..cut]).1, n);
        }
    }

    #[test]
    fn versions_keep_alive_and_expect() {
        let (h, _) = ok(b"GET / HTTP/1.1\r\n\r\n");
        assert!(h.keep_alive && h.framing == Framing::None);
        let (h, _) = ok(b"GET / HTTP/1.0\r\n\r\n");
        assert!(!h.keep_alive && h.version == Version::HTTP_10);
        let (h, _) = ok(b"GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n");
        assert!(h.keep_alive);
        let (h, _) = ok(b"GET / HTTP/1.1\r\nConnection: foo, CLOSE\r\n\r\n");
        assert!(!h.keep_alive);
        // httparse (and so hyper before us) knows HTTP/1.0 and HTTP/1.1 only.
        for other in [&b"GET / HTTP/1.9\r\n\r\n"[..], b"GET / HTTP/2.0\r\n\r\n"] {
            assert_eq!(
                parse_head(other).unwrap_err(),
                StatusCode::HTTP_VERSION_NOT_SUPPORTED
            );
        }
        let (h, _) = ok(b"POST / HTTP/1.1\r\nExpect: 100-Continue\r\nContent-Length: 3\r\n\r\n");
        assert!(h.expect_continue);
        // RFC 9110 §10.1.1: never a 100 to an HTTP/1.0 client.
        let (h, _) = ok(b"POST / HTTP/1.0\r\nExpect: 100-continue\r\nContent-Length: 3\r\n\r\n");
        assert!(!h.expect_continue);
        assert_eq!(
            parse_head(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n").unwrap_err(),
            StatusCode::HTTP_VERSION_NOT_SUPPORTED
        );
    }

    #[test]
    fn lenient_line_ends_and_leading_empty_lines() {
        let req = b"\r\n\nGET /x HTTP/1.1\nHost: a\n\nrest";
        let (h, n) = ok(req);
        assert_eq!(h.uri.path(), "/x");
        assert_eq!(h.headers.get("host").unwrap(), "a");
        assert_eq!(&req[n..], b"rest");
        let (h, _) = ok(b"GET http://192.168.1.1:5000/rootDesc.xml?x=1 HTTP/1.1\r\n\r\n");
        assert_eq!(h.uri.path(), "/rootDesc.xml");
        let (h, _) = ok(b"SUBSCRIBE /evt/IPConn HTTP/1.1\r\nNT:upnp:event \t\r\n\r\n");
        assert_eq!(h.method.as_str(), "SUBSCRIBE");
        assert_eq!(h.headers.get("nt").unwrap(), "upnp:event");
    }

    #[test]
    fn malformed_heads_are_refused() {
        let bad = StatusCode::BAD_REQUEST;
        for head in [
            &b"GET  / HTTP/1.1\r\n\r\n"[..],
            b"GET / HTTP/1.1 \r\n\r\n",
            b"GET /\r\n\r\n",
            b"GET / HTTP/1.1 x\r\n\r\n",
            b"GET / FTP/1.1\r\n\r\n",
            b"GET / HTTP/11\r\n\r\n",
            b"G(T / HTTP/1.1\r\n\r\n",
            b" GET / HTTP/1.1\r\n\r\n",
            b"GET /\x7f HTTP/1.1\r\n\r\n",
            b"GET /a b HTTP/1.1\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost : a\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: a\r\n folded\r\n\r\n",
            b"GET / HTTP/1.1\r\nno colon\r\n\r\n",
            b"GET / HTTP/1.1\r\n: empty name\r\n\r\n",
            b"GET / HTTP/1.1\r\nX: a\x01b\r\n\r\n",
            b"GET / HTTP/1.1\r\nX: a\rb\r\n\r\n",
            b"POST / HTTP/1.1\r\nContent-Length: 1, 2\r\n\r\n",
            b"POST / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
            b"POST / HTTP/1.1\r\nContent-Length: -1\r\n\r\n",
            b"POST / HTTP/1.1\r\nContent-Length: +1\r\n\r\n",
            b"POST / HTTP/1.1\r\nContent-Length: 0x10\r\n\r\n",
            b"POST / HTTP/1.1\r\nContent-Length: 99999999999999999999\r\n\r\n",
            b"POST / HTTP/1.1\r\nContent-Length:\r\n\r\n",
            b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked, gzip\r\n\r\n",
            b"POST / HTTP/1.1\r\nTransfer-Encoding: identity\r\n\r\n",
            b"POST / HTTP/1.1\r\nTransfer-Encoding: \r\n\r\n",
            b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n",
        ] {
            assert_eq!(
                parse_head(head).map(|h| h.map(|h| h.1)),
                Err(bad),
                "{}",
                String::from_utf8_lossy(head)
            );
        }
        assert_eq!(
            parse_head(b"POST / HTTP/1.1\r\nTransfer-Encoding: gzip, chunked\r\n\r\n")
                .map(|h| h.map(|h| h.1)),
            Err(StatusCode::NOT_IMPLEMENTED)
        );
        // Binary or TLS is refused before any line end arrives.
        assert_eq!(
            parse_head(b"\x16\x03\x01\x02\x00").map(|h| h.map(|h| h.1)),
            Err(bad)
        );
        assert!(matches!(parse_head(b"GET / HTTP/1.1\r"), Ok(None)));
        assert!(matches!(parse_head(b""), Ok(None)));
        assert!(matches!(parse_head(b"\r\n\r\n"), Ok(None)));
    }

    #[test]
    fn oversized_heads_are_refused() {
        let mut long_line = b"GET /".to_vec();
        long_line.resize(MAX_HEAD + 1, b'a');
        assert_eq!(
            parse_head(&long_line).map(|h| h.map(|h| h.1)),
            Err(StatusCode::URI_TOO_LONG)
        );
        let mut big = b"GET / HTTP/1.1\r\n".to_vec();
        while big.len() <= MAX_HEAD {
            big.extend_from_slice(b"X-Filler: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n");
        }
        assert_eq!(
            parse_head(&big).map(|h| h.map(|h| h.1)),
            Err(StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE)
        );
        big.extend_from_slice(b"\r\n");
        assert_eq!(
            parse_head(&big).map(|h| h.map(|h| h.1)),
            Err(StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE)
        );
        let mut many = b"GET / HTTP/1.1\r\n".to_vec();
        for i in 0..=MAX_FIELDS {
            many.extend_from_slice(format!("X-{i}: 1\r\n").as_bytes());
        }
        many.extend_from_slice(b"\r\n");
        assert_eq!(
            parse_head(&many).map(|h| h.map(|h| h.1)),
            Err(StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE)
        );
        let mut blank = vec![b'\n'; MAX_HEAD + 2];
        blank.extend_from_slice(b"GET / HTTP/1.1\r\n\r\n");
        assert!(parse_head(&blank).is_err());
    }

    #[test]
    fn pipelined_requests_parse_one_after_the_other() {
        let two = b"GET /a HTTP/1.1\r\nHost: x\r\n\r\nPOST /b HTTP/1.1\r\nContent-Length: 2\r\n\r\nhiGET /c HTTP/1.1\r\n";
        let (h, n) = ok(two);
        assert_eq!(h.uri.path(), "/a");
        let rest = &two[n..];
        let (h, n) = ok(rest);
        assert_eq!((h.uri.path(), h.framing), ("/b", Framing::Length(2)));
        let Body::Complete { data, used } = body(h.framing, &rest[n..], 100) else {
            panic!()
        };
        assert_eq!(data, b"hi");
        assert!(matches!(parse_head(&rest[n + used..]), Ok(None)));
    }

    #[test]
    fn chunked_bodies() {
        let req =
            b"POST / HTTP/1.1\r\nTransfer-Encoding: Chunked\r\nContent-Length: 3\r\n\r\n5\r\n";
        let (h, n) = ok(req);
        assert_eq!(h.framing, Framing::Chunked);
        assert!(
            !h.keep_alive,
            "Content-Length with chunked closes (RFC 9112 §6.1)"
        );
        assert_eq!(&req[n..], b"5\r\n");
        assert_eq!(
            parse_head(b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked, chunked\r\n\r\n")
                .map(|h| h.map(|h| h.1)),
            Err(StatusCode::BAD_REQUEST)
        );
        let coded = b"5;ext=\"x\"\r\nhello\r\n1 ; e\r\n \r\n0\r\nTrailer: t\r\n\r\nNEXT";
        assert_eq!(
            body(Framing::Chunked, coded, 100),
            Body::Complete {
                data: b"hello ".to_vec(),
                used: coded.len() - 4
            }
        );
        for cut in 0..coded.len() - 4 {
            assert_eq!(
                body(Framing::Chunked, &coded[..cut], 100),
                Body::Partial,
                "cut at {cut}"
            );
        }
        assert_eq!(
            body(Framing::Chunked, b"A\nabcdefghij\n0\n\n", 100),
            Body::Complete {
                data: b"abcdefghij".to_vec(),
                used: 16
            }
        );
        assert_eq!(body(Framing::Chunked, b"6\r\nhello\r\n", 5), Body::TooLarge);
        assert_eq!(
            body(Framing::Chunked, b"3\r\nabc\r\n3\r\ndef\r\n", 5),
            Body::TooLarge
        );
        assert_eq!(
            body(Framing::Chunked, b"ffffffffffffffffffffffff\r\n", 5),
            Body::TooLarge
        );
        for bad in [
            &b"x\r\n"[..],
            b"\r\n",
            b"-1\r\n",
            b"3\r\nabcd\r\n",
            b"3\r\nabc\rx",
        ] {
            assert_eq!(
                body(Framing::Chunked, bad, 100),
                Body::Invalid,
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
        let mut long_ext = b"1;".to_vec();
        long_ext.resize(MAX_CHUNK_LINE + 10, b'e');
        assert_eq!(body(Framing::Chunked, &long_ext, 100), Body::Invalid);
        // Many tiny chunks with long extensions: bounded by the coded size.
        let mut tiny = Vec::new();
        while tiny.len() < 80 * 1024 {
            tiny.extend_from_slice(b"1;");
            tiny.extend(std::iter::repeat_n(b'e', 900));
            tiny.extend_from_slice(b"\r\na\r\n");
        }
        assert_eq!(body(Framing::Chunked, &tiny, 16 * 1024), Body::TooLarge);
    }

    #[test]
    fn responses() {
        let mut h = HeaderMap::new();
        h.insert("server", HeaderValue::from_static("test/1"));
        h.insert("content-type", HeaderValue::from_static("text/xml"));
        let mut out = Vec::new();
        write_response(
            &mut out,
            Version::HTTP_11,
            StatusCode::OK,
            &h,
            b"<x/>",
            true,
            false,
        );
        let text = String::from_utf8(out).unwrap();
        assert!(
            text.starts_with("HTTP/1.1 200 OK\r\nserver: test/1\r\ncontent-type: text/xml\r\ncontent-length: 4\r\ndate: "),
            "{text}"
        );
        assert!(
            text.ends_with(" GMT\r\nconnection: close\r\n\r\n<x/>"),
            "{text}"
        );
        // HEAD: the given Content-Length, no body; HTTP/1.0 keep-alive said so.
        h.insert("content-length", HeaderValue::from_static("4"));
        let mut out = Vec::new();
        write_response(
            &mut out,
            Version::HTTP_10,
            StatusCode::OK,
            &h,
            b"",
            false,
            true,
        );
        let text = String::from_utf8(out).unwrap();
        assert!(text.starts_with("HTTP/1.0 200 OK\r\n"), "{text}");
        assert!(text.contains("content-length: 4\r\n"), "{text}");
        assert_eq!(text.matches("content-length").count(), 1, "{text}");
        assert!(text.ends_with("connection: keep-alive\r\n\r\n"), "{text}");
        // HTTP/1.1 keep-alive: no Connection field.
        let mut out = Vec::new();
        write_response(
            &mut out,
            Version::HTTP_11,
            StatusCode::NOT_FOUND,
            &HeaderMap::new(),
            b"",
            true,
            true,
        );
        let text = String::from_utf8(out).unwrap();
        assert!(text.starts_with("HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\ndate: "));
        assert!(!text.contains("connection"), "{text}");
    }

    #[test]
    fn dates() {
        assert_eq!(&imf_fixdate(0), b"Thu, 01 Jan 1970 00:00:00 GMT");
        assert_eq!(&imf_fixdate(784_111_777), b"Sun, 06 Nov 1994 08:49:37 GMT");
        assert_eq!(&imf_fixdate(951_782_400), b"Tue, 29 Feb 2000 00:00:00 GMT");
        assert_eq!(
            &imf_fixdate(4_133_980_799),
            b"Fri, 31 Dec 2100 23:59:59 GMT"
        );
    }
}
