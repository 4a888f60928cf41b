//! `/d/<id>/...`: the camera's site through the relay (seed 003), or a redirect to its LAN
//! address (seed 004).
//!
//! A viewer connection's first request for a device asks the core for a session; the core sends
//! the connection request, and the request waits for the device's back-connection (handed over by
//! the back listener). The relay then speaks HTTP/1.1 as a client over it, forwarding this and the
//! connection's later requests (one back-connection per viewer connection, as the seed has it).
//! The device sees the path without `/d/<id>` and learns the prefix from `X-Relay-Base`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::client::conn::http1 as client;
use hyper::header::{HOST, HeaderName, HeaderValue, LOCATION, SET_COOKIE};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use shared::relayproto::{format_device_id, headers, parse_device_id};
use tracing::{debug, info};

use crate::core::Decision;
use crate::pages;
use crate::viewer::{RBody, ViewerConn, html_error, query_param, redirect};

/// A viewer connection's back-connection.
#[derive(Debug)]
pub struct BackLink {
    device: u64,
    session: u64,
    sender: client::SendRequest<RBody>,
}

/// Hop-by-hop headers (RFC 9110 §7.6.1) and the ones only the relay may set.
const STRIP: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    headers::RELAY_BASE,
    headers::FORWARDED_FOR,
    headers::FORWARDED_PROTO,
    headers::FORWARDED_HOST,
    "forwarded",
];

/// The cookie that keeps a viewer who chose `?via=relay` on the relay for the site's other
/// requests (pictures, stream).
const VIA_COOKIE: &str = "relay_via=relay";

fn stripped(name: &HeaderName) -> bool {
    STRIP.contains(&name.as_str())
}

/// Handles `/d/<rest>`.
pub async fn device(c: Arc<ViewerConn>, req: Request<Incoming>, rest: String) -> Response<RBody> {
    let (id_text, tail) = match rest.split_once('/') {
        Some((id, tail)) => (id.to_string(), format!("/{tail}")),
        None => (rest.clone(), String::new()),
    };
    let Some(id) = parse_device_id(&id_text) else {
        return html_error(
            StatusCode::NOT_FOUND,
            "No such camera",
            "A camera's address on the relay is /d/<its id, 1 to 16 hex digits>/.",
        );
    };
    let base = format!("/d/{}/", format_device_id(id));
    let query = req.uri().query().map(str::to_string);
    if tail.is_empty() {
        let q = query.map(|q| format!("?{q}")).unwrap_or_default();
        return redirect(StatusCode::MOVED_PERMANENTLY, &format!("{base}{q}"));
    }
    let via_query = query_param(query.as_deref(), "via") == Some("relay");
    let via_cookie = req
        .headers()
        .get_all(hyper::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.split(';').any(|kv| kv.trim() == VIA_COOKIE));
    let allow_lan = !(via_query || via_cookie);
    // The query the camera sees: without the relay's own flag.
    let fwd_query: Vec<&str> = query
        .as_deref()
        .unwrap_or("")
        .split('&')
        .filter(|kv| !kv.is_empty() && !kv.eq_ignore_ascii_case("via=relay"))
        .collect();
    let path_q = if fwd_query.is_empty() {
        tail.clone()
    } else {
        format!("{tail}?{}", fwd_query.join("&"))
    };

    let mut back = c.back.lock().await;
    if let Some(link) = back.as_mut()
        && (link.device != id || link.sender.ready().await.is_err())
    {
        *back = None;
    }
    if back.is_none() {
        match open(&c, id, allow_lan, &path_q).await {
            Ok(link) => *back = Some(link),
            Err(resp) => return *resp,
        }
    }
    let Some(link) = back.as_mut() else {
        return html_error(StatusCode::BAD_GATEWAY, "Relay error", "no back-connection");
    };
    let session = link.session;
    let fwd = match forward_request(&c, req, &path_q, &base, session) {
        Ok(r) => r,
        Err(e) => return html_error(StatusCode::BAD_REQUEST, "Bad request", &e),
    };
    let resp = match link.sender.send_request(fwd).await {
        Ok(r) => r,
        Err(e) => {
            debug!(device = format_device_id(id), "forwarding failed: {e}");
            *back = None;
            return html_error(
                StatusCode::BAD_GATEWAY,
                "Camera connection lost",
                "The camera closed its connection to the relay. Reload to try again.",
            );
        }
    };
    drop(back);
    let mut out = response(&c, resp, &base, session);
    if via_query {
        let cookie = format!("{VIA_COOKIE}; Path={base}; SameSite=Lax");
        if let Ok(v) = HeaderValue::from_str(&cookie) {
            out.headers_mut().append(SET_COOKIE, v);
        }
    }
    out
}

/// Makes a session and waits for its back-connection; an error is the answer to give.
async fn open(
    c: &ViewerConn,
    id: u64,
    allow_lan: bool,
    path_q: &str,
) -> Result<BackLink, Box<Response<RBody>>> {
    let shared = &c.shared;
    let (decision, rx, setup, period_s, now_ms) = {
        let now = Instant::now();
        let mut core = shared.core();
        let d = core.open_session(now, id, c.peer, allow_lan);
        let rx = if let Decision::Connect { session } = d {
            let (tx, rx) = tokio::sync::oneshot::channel();
            crate::server::lock_waiters(shared).insert(session, tx);
            Some(rx)
        } else {
            None
        };
        let s = core.settings();
        (
            d,
            rx,
            s.setup_timeout,
            s.period.as_secs(),
            core.unix_ms(now),
        )
    };
    shared.wake.notify_one();
    let idt = format_device_id(id);
    let session = match decision {
        Decision::Unknown => {
            return Err(Box::new(html_error(
                StatusCode::NOT_FOUND,
                "No such camera",
                &format!("No camera {idt} is enrolled at this relay."),
            )));
        }
        Decision::Offline {
            last_access_unix_ms,
        } => {
            let page = pages::offline(&idt, last_access_unix_ms, now_ms, period_s);
            let mut r = crate::viewer::answer(
                StatusCode::SERVICE_UNAVAILABLE,
                "text/html; charset=utf-8",
                page,
            );
            r.headers_mut()
                .insert("cache-control", HeaderValue::from_static("no-store"));
            return Err(Box::new(r));
        }
        Decision::Busy => {
            return Err(Box::new(html_error(
                StatusCode::SERVICE_UNAVAILABLE,
                "Camera busy",
                "Too many viewers are connected to this camera through the relay; try later.",
            )));
        }
        Decision::SameNetwork { lan } => {
            info!(device = idt, viewer = %c.peer, "same network: sent to the LAN address");
            return Err(Box::new(redirect(StatusCode::FOUND, &lan_url(lan, path_q))));
        }
        Decision::Connect { session } => session,
    };
    let Some(rx) = rx else {
        return Err(Box::new(html_error(
            StatusCode::BAD_GATEWAY,
            "Relay error",
            "no waiter",
        )));
    };
    let asked = Instant::now();
    let stream = match tokio::time::timeout(setup + Duration::from_millis(500), rx).await {
        Ok(Ok(s)) => s,
        _ => {
            shared.close_session(session);
            shared.core().counters_mut().viewer_setup_failures += 1;
            return Err(Box::new(html_error(
                StatusCode::GATEWAY_TIMEOUT,
                "Camera did not answer",
                &format!(
                    "Camera {idt} is registered but did not connect back within {} ms. \
                     Reload to try again.",
                    setup.as_millis()
                ),
            )));
        }
    };
    let (sender, conn) = match client::handshake(TokioIo::new(stream)).await {
        Ok(x) => x,
        Err(e) => {
            shared.close_session(session);
            return Err(Box::new(html_error(
                StatusCode::BAD_GATEWAY,
                "Relay error",
                &format!("HTTP over the back-connection: {e}"),
            )));
        }
    };
    let s2 = shared.clone();
    let task = tokio::spawn(async move {
        if let Err(e) = conn.await {
            debug!(
                session = format!("{session:016x}"),
                "back-connection ended: {e}"
            );
        }
        s2.close_session(session);
    });
    crate::server::lock_aborts(shared).insert(session, task.abort_handle());
    debug!(
        device = idt,
        session = format!("{session:016x}"),
        back_connection_us = asked.elapsed().as_micros() as u64,
        "session up"
    );
    Ok(BackLink {
        device: id,
        session,
        sender,
    })
}

/// `http://<LAN address>/<path>` for a same-network viewer.
fn lan_url(lan: SocketAddr, path_q: &str) -> String {
    format!("http://{lan}{path_q}")
}

fn forward_request(
    c: &ViewerConn,
    req: Request<Incoming>,
    path_q: &str,
    base: &str,
    session: u64,
) -> Result<Request<RBody>, String> {
    let (parts, body) = req.into_parts();
    let mut b = Request::builder()
        .method(parts.method)
        .uri(path_q)
        .version(hyper::Version::HTTP_11);
    let host = parts.headers.get(HOST).cloned();
    for (k, v) in parts.headers.iter() {
        if !stripped(k) {
            b = b.header(k, v);
        }
    }
    b = b
        .header(headers::RELAY_BASE, base)
        .header(headers::FORWARDED_FOR, c.peer.ip().to_string())
        .header(
            headers::FORWARDED_PROTO,
            if c.https { "https" } else { "http" },
        );
    if let Some(h) = host {
        b = b.header(headers::FORWARDED_HOST, h);
    }
    let shared = c.shared.clone();
    let body = body
        .map_frame(move |f| {
            if let Some(d) = f.data_ref() {
                shared.core().add_bytes(session, d.len() as u64, 0);
            }
            f
        })
        .boxed_unsync();
    b.body(body).map_err(|e| e.to_string())
}

fn response(c: &ViewerConn, resp: Response<Incoming>, base: &str, session: u64) -> Response<RBody> {
    let (mut parts, body) = resp.into_parts();
    let names: Vec<HeaderName> = parts.headers.keys().cloned().collect();
    for n in names {
        if stripped(&n) {
            parts.headers.remove(&n);
        }
    }
    // A redirect to one of the camera's own paths stays on the relay.
    if let Some(loc) = parts.headers.get(LOCATION).and_then(|v| v.to_str().ok())
        && loc.starts_with('/')
        && !loc.starts_with("//")
        && let Ok(v) = HeaderValue::from_str(&format!("{}{}", base.trim_end_matches('/'), loc))
    {
        parts.headers.insert(LOCATION, v);
    }
    let shared = c.shared.clone();
    let body = body
        .map_frame(move |f| {
            if let Some(d) = f.data_ref() {
                shared.core().add_bytes(session, 0, d.len() as u64);
            }
            f
        })
        .boxed_unsync();
    Response::from_parts(parts, body)
}
