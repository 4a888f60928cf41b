//! The viewers' side: the relay's routes.
//!
//! | route | what |
//! |---|---|
//! | `GET /` | a form: camera id, connect |
//! | `GET /connect.cgi?ID=<id>` | seed 003's form: 302 to `/d/<id>/` |
//! | `/d/<id>/...` | the camera's whole site through the relay ([`crate::proxy`]), or a 302 to its LAN address for a same-network viewer (seed 004; `?via=relay` forces the relay) |
//! | `GET /status`, `/status.json` | devices, sessions, bytes (no addresses) |
//! | `GET /metrics` | Prometheus text |
//! | `GET /api/same-network?a=<id>&b=<id>` | seed 004's bit for two devices: `{"same": true/false/null}` |

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, combinators::UnsyncBoxBody};
use hyper::body::Incoming;
use hyper::header::{CONTENT_TYPE, HeaderValue, LOCATION};
use hyper::{Method, Request, Response, StatusCode};
use shared::relayproto::{format_device_id, parse_device_id};

use crate::pages;
use crate::proxy::BackLink;
use crate::server::Shared;

/// The body type of every answer.
pub type RBody = UnsyncBoxBody<Bytes, hyper::Error>;

/// One viewer connection: its address and, once made, its back-connection (seed 003: one per
/// viewer connection, kept for its requests).
#[derive(Debug)]
pub struct ViewerConn {
    pub(crate) shared: Arc<Shared>,
    pub(crate) peer: SocketAddr,
    pub(crate) https: bool,
    pub(crate) back: tokio::sync::Mutex<Option<BackLink>>,
}

impl ViewerConn {
    /// A new connection from `peer`.
    pub fn new(shared: Arc<Shared>, peer: SocketAddr, https: bool) -> ViewerConn {
        ViewerConn {
            shared,
            peer,
            https,
            back: tokio::sync::Mutex::new(None),
        }
    }
}

/// A complete body.
pub fn full(b: impl Into<Bytes>) -> RBody {
    Full::new(b.into())
        .map_err(|never| match never {})
        .boxed_unsync()
}

/// An answer with a body and content type.
pub fn answer(status: StatusCode, ctype: &'static str, body: impl Into<Bytes>) -> Response<RBody> {
    let mut r = Response::new(full(body));
    *r.status_mut() = status;
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(ctype));
    r
}

/// An HTML error page.
pub fn html_error(status: StatusCode, title: &str, text: &str) -> Response<RBody> {
    answer(
        status,
        "text/html; charset=utf-8",
        pages::error(title, text),
    )
}

/// A redirect.
pub fn redirect(status: StatusCode, to: &str) -> Response<RBody> {
    let mut r = answer(status, "text/plain; charset=utf-8", format!("see {to}\n"));
    if let Ok(v) = HeaderValue::from_str(to) {
        r.headers_mut().insert(LOCATION, v);
    }
    r
}

/// The value of a query parameter (no percent-decoding needed for ids and flags).
pub fn query_param<'a>(query: Option<&'a str>, name: &str) -> Option<&'a str> {
    query?.split('&').find_map(|kv| {
        let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
        k.eq_ignore_ascii_case(name).then_some(v)
    })
}

/// Routes a request.
pub async fn handle(c: Arc<ViewerConn>, req: Request<Incoming>) -> Response<RBody> {
    let path = req.uri().path().to_string();
    let query = req.uri().query().map(str::to_string);
    let get = matches!(*req.method(), Method::GET | Method::HEAD);
    if let Some(rest) = path.strip_prefix("/d/") {
        return crate::proxy::device(c, req, rest.to_string()).await;
    }
    if !get {
        return html_error(
            StatusCode::METHOD_NOT_ALLOWED,
            "Method not allowed",
            "The relay's own pages are read-only.",
        );
    }
    match path.as_str() {
        "/" | "/index.html" => answer(
            StatusCode::OK,
            "text/html; charset=utf-8",
            pages::index(&c.shared.name),
        ),
        "/connect.cgi" => connect_cgi(query.as_deref()),
        "/status" => answer(
            StatusCode::OK,
            "text/html; charset=utf-8",
            pages::status_html(&c.shared.status()),
        ),
        "/status.json" => answer(
            StatusCode::OK,
            "application/json",
            serde_json::to_string_pretty(&c.shared.status()).unwrap_or_default(),
        ),
        "/metrics" => answer(
            StatusCode::OK,
            "text/plain; version=0.0.4",
            pages::metrics(&c.shared.status()),
        ),
        "/api/same-network" => same_network_api(&c, query.as_deref()),
        _ => html_error(
            StatusCode::NOT_FOUND,
            "Not found",
            "No such page on this relay.",
        ),
    }
}

/// Seed 003's `connect?ID=1234`: sends the viewer to the device's path.
fn connect_cgi(query: Option<&str>) -> Response<RBody> {
    let Some(id) = query_param(query, "ID").and_then(parse_device_id) else {
        return html_error(
            StatusCode::BAD_REQUEST,
            "Bad camera id",
            "connect.cgi needs ID=<the camera's id, 1 to 16 hex digits>.",
        );
    };
    let via = if query_param(query, "via") == Some("relay") {
        "?via=relay"
    } else {
        ""
    };
    redirect(
        StatusCode::FOUND,
        &format!("/d/{}/{via}", format_device_id(id)),
    )
}

/// Seed 004's question for two registered devices: one bit, no address.
fn same_network_api(c: &ViewerConn, query: Option<&str>) -> Response<RBody> {
    let a = query_param(query, "a").and_then(parse_device_id);
    let b = query_param(query, "b").and_then(parse_device_id);
    let (Some(a), Some(b)) = (a, b) else {
        return answer(
            StatusCode::BAD_REQUEST,
            "application/json",
            "{\"error\":\"a and b must be device ids (1 to 16 hex digits)\"}\n",
        );
    };
    let same = c.shared.core().same_network(Instant::now(), a, b);
    let v = match same {
        Some(true) => "true",
        Some(false) => "false",
        None => "null",
    };
    answer(
        StatusCode::OK,
        "application/json",
        format!("{{\"same\":{v}}}\n"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_params() {
        assert_eq!(query_param(Some("ID=ab&via=relay"), "id"), Some("ab"));
        assert_eq!(query_param(Some("x&via=relay"), "via"), Some("relay"));
        assert_eq!(query_param(Some("x"), "ID"), None);
        assert_eq!(query_param(None, "ID"), None);
    }
}
