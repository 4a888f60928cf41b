//! A minimal HTTP/1.1 client for the IGD: GET the description, POST SOAP control requests.
//!
//! Hand-written over `TcpStream` rather than hyper's client because every exchange is one
//! request on a fresh connection (`Connection: close`, as miniupnpc does; many IGDs close after
//! each answer anyway), the bodies are small and bounded, and we need the connection's local
//! address (our LAN address as the router sees it, for `NewInternalClient`). Responses are read
//! by Content-Length, chunked transfer coding, or until the server closes; the whole exchange
//! runs under one timeout.

use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::core::{HttpRequest, HttpResponse};
use shared::head::Head;

/// The largest response we read: a GetListOfPortMappings with 1000 entries, plus the head.
pub const MAX_RESPONSE: usize = shared::soap::MAX_RESPONSE + 64 * 1024;

/// Does one request under `timeout`.
pub async fn request(req: &HttpRequest, timeout: Duration) -> Result<HttpResponse, String> {
    // The core checks URLs from descriptions; this is the last line before the request line.
    super::guard::check_url(&req.url)?;
    match tokio::time::timeout(timeout, exchange(req)).await {
        Ok(r) => r,
        Err(_) => Err(format!("no answer from {} within {timeout:?}", req.url)),
    }
}

async fn exchange(req: &HttpRequest) -> Result<HttpResponse, String> {
    let url = &req.url;
    let mut stream = TcpStream::connect((url.host.as_str(), url.port))
        .await
        .map_err(|e| format!("connect {}:{}: {e}", url.host, url.port))?;
    let local_addr = match stream.local_addr().map(|a| a.ip()) {
        Ok(IpAddr::V4(a)) => Some(a),
        _ => None,
    };
    stream
        .write_all(&encode_request(req))
        .await
        .map_err(|e| format!("send to {url}: {e}"))?;
    let mut buf = Vec::with_capacity(4096);
    let mut chunk = [0u8; 8192];
    loop {
        if let Some(done) = complete(&buf, false) {
            return done.map(|(status, body)| HttpResponse {
                status,
                body,
                local_addr,
            });
        }
        let n = stream
            .read(&mut chunk)
            .await
            .map_err(|e| format!("read from {url}: {e}"))?;
        if n == 0 {
            return match complete(&buf, true) {
                Some(done) => done.map(|(status, body)| HttpResponse {
                    status,
                    body,
                    local_addr,
                }),
                None => Err(format!("{url}: connection closed mid-response")),
            };
        }
        if buf.len() + n > MAX_RESPONSE {
            return Err(format!("{url}: response larger than {MAX_RESPONSE} bytes"));
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// The request bytes.
pub fn encode_request(req: &HttpRequest) -> Vec<u8> {
    let url = &req.url;
    let host = if url.port == 80 {
        url.host.clone()
    } else {
        format!("{}:{}", url.host, url.port)
    };
    let mut s = format!(
        "{} {} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\nUser-Agent: Linux UPnP/1.1 camnode/{}\r\n",
        if req.body.is_some() { "POST" } else { "GET" },
        url.path,
        env!("CARGO_PKG_VERSION"),
    );
    if let Some(body) = &req.body {
        s.push_str(&format!(
            "Content-Type: {}\r\nContent-Length: {}\r\n",
            shared::soap::CONTENT_TYPE,
            body.len()
        ));
    }
    if let Some(a) = &req.soap_action {
        s.push_str(&format!("SOAPAction: {a}\r\n"));
    }
    s.push_str("\r\n");
    let mut out = s.into_bytes();
    if let Some(body) = &req.body {
        out.extend_from_slice(body);
    }
    out
}

fn find_head_end(buf: &[u8]) -> Option<usize> {
    let crlf = buf.windows(4).position(|w| w == b"\r\n\r\n").map(|i| i + 4);
    let lf = buf.windows(2).position(|w| w == b"\n\n").map(|i| i + 2);
    match (crlf, lf) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// Whether `buf` holds a whole response: None = read more; Some(Err) = unusable.
/// `eof`: the server closed the connection.
pub fn complete(buf: &[u8], eof: bool) -> Option<Result<(u16, Vec<u8>), String>> {
    let head_end = find_head_end(buf)?;
    let head = match Head::parse(&buf[..head_end], 64 * 1024) {
        Ok(h) => h,
        Err(e) => return Some(Err(format!("bad response head: {e}"))),
    };
    if !head.first.to_ascii_uppercase().starts_with("HTTP/") {
        return Some(Err("not an HTTP response".into()));
    }
    let Ok(status) = head.second.parse::<u16>() else {
        return Some(Err("bad status code".into()));
    };
    let body = &buf[head_end..];
    let chunked = head
        .get("Transfer-Encoding")
        .is_some_and(|t| t.to_ascii_lowercase().contains("chunked"));
    if chunked {
        return match dechunk(body) {
            Ok(Some(b)) => Some(Ok((status, b))),
            Ok(None) if eof => Some(Err("connection closed inside a chunked body".into())),
            Ok(None) => None,
            Err(e) => Some(Err(e)),
        };
    }
    if let Some(len) = head.get("Content-Length") {
        let Ok(len) = len.trim().parse::<usize>() else {
            return Some(Err("bad Content-Length".into()));
        };
        if body.len() >= len {
            return Some(Ok((status, body[..len].to_vec())));
        }
        return if eof {
            Some(Err("connection closed before Content-Length bytes".into()))
        } else {
            None
        };
    }
    if eof {
        Some(Ok((status, body.to_vec())))
    } else {
        None
    }
}

/// Decodes a chunked body (RFC 9112 §7.1): Ok(None) = incomplete.
fn dechunk(mut b: &[u8]) -> Result<Option<Vec<u8>>, String> {
    let mut out = Vec::new();
    loop {
        let Some(eol) = b.windows(2).position(|w| w == b"\r\n") else {
            return Ok(None);
        };
        let line = std::str::from_utf8(&b[..eol]).map_err(|_| "bad chunk size".to_string())?;
        let size_text = line.split(';').next().unwrap_or("").trim();
        let size = usize::from_str_radix(size_text, 16)
            .map_err(|_| format!("bad chunk size {size_text:?}"))?;
        b = &b[eol + 2..];
        if size == 0 {
            return Ok(Some(out)); // trailers, if any, are ignored
        }
        // The size is the peer's word: no chunk may exceed what we read at all, so `size + 2`
        // cannot overflow (a size near usize::MAX used to panic the request task).
        if size > MAX_RESPONSE {
            return Err(format!("chunk of {size} bytes, more than {MAX_RESPONSE}"));
        }
        let Some(chunk) = b.get(..size) else {
            return Ok(None);
        };
        match b.get(size..size + 2) {
            None => return Ok(None),
            Some(b"\r\n") => {}
            Some(_) => return Err("chunk not followed by CRLF".into()),
        }
        out.extend_from_slice(chunk);
        b = &b[size + 2..];
    }
}

/// The IPv4 address of a URL's host, if it is a literal.
pub fn host_v4(url: &shared::url::HttpUrl) -> Option<Ipv4Addr> {
    url.host.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_length_chunked_and_eof() {
        let r = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello world";
        assert_eq!(complete(r, false), Some(Ok((200, b"hello".to_vec()))));
        assert_eq!(
            complete(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhel", false),
            None
        );
        let c = b"HTTP/1.1 500 Internal Server Error\r\ntransfer-encoding: chunked\r\n\r\n3\r\nabc\r\n2;x=y\r\nde\r\n0\r\n\r\n";
        assert_eq!(complete(c, false), Some(Ok((500, b"abcde".to_vec()))));
        assert_eq!(complete(&c[..c.len() - 9], false), None);
        assert_eq!(
            complete(b"HTTP/1.0 200 OK\nServer: x\n\nbody", true),
            Some(Ok((200, b"body".to_vec())))
        );
        assert_eq!(complete(b"HTTP/1.0 200 OK\r\n\r\nbody", false), None);
        assert!(matches!(complete(b"SSH-2.0\r\n\r\n", true), Some(Err(_))));
        assert!(matches!(
            complete(
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
                true
            ),
            Some(Err(_))
        ));
    }

    /// Issue 11: a chunk size near `u64::MAX` overflowed `size + 2` and panicked the request task.
    #[test]
    fn huge_chunk_size_is_an_error_not_a_panic() {
        let head = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
        for size in [
            "fffffffffffffffe",
            "ffffffffffffffff",
            "7fffffffffffffff",
            "1000000",
        ] {
            let mut r = head.clone();
            r.extend_from_slice(format!("{size}\r\nxx").as_bytes());
            assert!(
                matches!(complete(&r, false), Some(Err(_))),
                "{size}: {:?}",
                complete(&r, false)
            );
        }
        // Seventeen hex digits do not fit a usize at all.
        let mut r = head.clone();
        r.extend_from_slice(b"10000000000000000\r\nxx");
        assert!(matches!(complete(&r, true), Some(Err(_))));
        // A chunk whose data is not followed by CRLF is malformed.
        let mut r = head;
        r.extend_from_slice(b"2\r\nabcd\r\n0\r\n\r\n");
        assert!(matches!(complete(&r, false), Some(Err(_))));
    }

    #[test]
    fn request_bytes() {
        let req = HttpRequest {
            url: shared::url::HttpUrl::parse("http://192.168.1.1:5000/ctl/IPConn").unwrap(),
            soap_action: Some("\"urn:x#A\"".into()),
            body: Some(b"<x/>".to_vec()),
        };
        let text = String::from_utf8(encode_request(&req)).unwrap();
        assert!(
            text.starts_with("POST /ctl/IPConn HTTP/1.1\r\nHost: 192.168.1.1:5000\r\n"),
            "{text}"
        );
        assert!(
            text.contains("Content-Length: 4\r\n") && text.contains("SOAPAction: \"urn:x#A\"\r\n")
        );
        assert!(text.ends_with("\r\n\r\n<x/>"));
    }
}
