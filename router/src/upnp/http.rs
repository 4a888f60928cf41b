//! The IGD's HTTP server (hyper 1, on the LAN address): descriptions and SCPDs (UDA 1.1 §2),
//! SOAP control (UDA 1.1 §3), GENA SUBSCRIBE / UNSUBSCRIBE (UDA 1.1 §4.1).
//!
//! Limits: request bodies up to [`shared::soap::MAX_REQUEST`] (16 KiB, else 413), the head
//! within [`HEADER_TIMEOUT`], the body within [`BODY_TIMEOUT`] (else 408), a connection for
//! at most [`CONNECTION_TIMEOUT`]. Every request gets an answer: a SOAP fault or an HTTP error.

use std::convert::Infallible;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Body;
use hyper::header::{CONTENT_LENGTH, CONTENT_TYPE, HeaderValue, SERVER};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use shared::gena::{self, GenaRequest, SubscribeResponse};
use shared::igd::{ServiceKind, ServiceType};
use shared::soap::{self, ActionRequest, ActionResponse, Fault, SoapAction};
use shared::upnp_error::UpnpError;
use tokio::net::TcpListener;
use tokio::sync::watch;

use super::events::{self, SubError};
use super::{SERVER as SERVER_TOKEN, Shared, lock};

/// Time to receive a request head.
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(5);
/// Time to receive a request body.
pub const BODY_TIMEOUT: Duration = Duration::from_secs(5);
/// Longest a connection (keep-alive included) may stay open.
pub const CONNECTION_TIMEOUT: Duration = Duration::from_secs(60);
/// Connections served at once; more wait in the accept queue.
pub const MAX_CONNECTIONS: usize = 256;

type Resp = Response<Full<Bytes>>;

/// Accepts connections until `stop`.
pub(crate) async fn serve(
    listener: TcpListener,
    shared: Arc<Shared>,
    mut stop: watch::Receiver<bool>,
) {
    let limit = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
    loop {
        let permit = tokio::select! {
            _ = stop.changed() => return,
            p = limit.clone().acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => return,
            },
        };
        let (stream, peer) = tokio::select! {
            _ = stop.changed() => return,
            a = listener.accept() => match a {
                Ok(a) => a,
                Err(e) => {
                    tracing::warn!("upnp http: accept: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        let shared = shared.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let svc = hyper::service::service_fn(move |req| {
                let shared = shared.clone();
                async move { Ok::<_, Infallible>(handle(&shared, peer, req).await) }
            });
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_TIMEOUT)
                .serve_connection(TokioIo::new(stream), svc);
            match tokio::time::timeout(CONNECTION_TIMEOUT, conn).await {
                Ok(Err(e)) => tracing::debug!("upnp http: {peer}: {e}"),
                Err(_) => tracing::debug!("upnp http: {peer}: connection time limit"),
                Ok(Ok(())) => {}
            }
        });
    }
}

fn respond(status: StatusCode, content_type: Option<&'static str>, body: impl Into<Bytes>) -> Resp {
    let mut r = Response::new(Full::new(body.into()));
    *r.status_mut() = status;
    let h = r.headers_mut();
    h.insert(SERVER, HeaderValue::from_static(SERVER_TOKEN));
    if let Some(ct) = content_type {
        h.insert(CONTENT_TYPE, HeaderValue::from_static(ct));
    }
    r
}

fn status_only(status: StatusCode) -> Resp {
    respond(status, None, Bytes::new())
}

/// The caller as an IPv4 address (v4-mapped IPv6 included).
fn caller_v4(peer: SocketAddr) -> Option<Ipv4Addr> {
    match peer.ip() {
        IpAddr::V4(a) => Some(a),
        IpAddr::V6(a) => a.to_ipv4_mapped(),
    }
}

/// Answers one request. Generic over the body so tests can call it without a socket.
pub(crate) async fn handle<B>(shared: &Shared, peer: SocketAddr, req: Request<B>) -> Resp
where
    B: Body<Data = Bytes>,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    shared.stats.http_requests.fetch_add(1, Ordering::Relaxed);
    let resp = route(shared, peer, req).await;
    if resp.status().is_client_error() {
        shared.stats.http_errors.fetch_add(1, Ordering::Relaxed);
    }
    resp
}

async fn route<B>(shared: &Shared, peer: SocketAddr, req: Request<B>) -> Resp
where
    B: Body<Data = Bytes>,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let path = req.uri().path().to_string();
    let method = req.method().clone();
    if method == Method::GET || method == Method::HEAD {
        return match shared.documents.get(path.as_str()) {
            Some(doc) => {
                let body = if method == Method::HEAD {
                    Bytes::new()
                } else {
                    Bytes::copy_from_slice(doc.as_bytes())
                };
                let mut r = respond(StatusCode::OK, Some(soap::CONTENT_TYPE), body);
                if method == Method::HEAD {
                    r.headers_mut()
                        .insert(CONTENT_LENGTH, HeaderValue::from(doc.len()));
                }
                r
            }
            None => status_only(StatusCode::NOT_FOUND),
        };
    }
    if method == Method::POST {
        let Some(kind) = find(&shared.control, &path) else {
            return status_only(StatusCode::NOT_FOUND);
        };
        return control(shared, peer, kind, req).await;
    }
    if method.as_str() == "SUBSCRIBE" || method.as_str() == "UNSUBSCRIBE" {
        let Some(kind) = find(&shared.events, &path) else {
            return status_only(StatusCode::NOT_FOUND);
        };
        return subscribe(shared, peer, kind, &req);
    }
    let mut r = status_only(StatusCode::METHOD_NOT_ALLOWED);
    r.headers_mut().insert(
        hyper::header::ALLOW,
        HeaderValue::from_static("GET, HEAD, POST, SUBSCRIBE, UNSUBSCRIBE"),
    );
    r
}

fn find(table: &[(&'static str, ServiceKind)], path: &str) -> Option<ServiceKind> {
    table.iter().find(|(p, _)| *p == path).map(|(_, k)| *k)
}

fn fault(shared: &Shared, e: UpnpError) -> Resp {
    shared.stats.soap_faults.fetch_add(1, Ordering::Relaxed);
    // UDA 1.1 §3.2.2: a fault is HTTP 500 with the UPnPError detail.
    respond(
        StatusCode::INTERNAL_SERVER_ERROR,
        Some(soap::CONTENT_TYPE),
        Fault::from(e).emit(),
    )
}

/// Reads the body within the size and time limits.
async fn read_body<B>(body: B) -> Result<Bytes, StatusCode>
where
    B: Body<Data = Bytes>,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let limited = Limited::new(body, soap::MAX_REQUEST);
    match tokio::time::timeout(BODY_TIMEOUT, limited.collect()).await {
        Err(_) => Err(StatusCode::REQUEST_TIMEOUT),
        Ok(Err(e)) => {
            if e.downcast_ref::<http_body_util::LengthLimitError>()
                .is_some()
            {
                Err(StatusCode::PAYLOAD_TOO_LARGE)
            } else {
                Err(StatusCode::BAD_REQUEST)
            }
        }
        Ok(Ok(c)) => Ok(c.to_bytes()),
    }
}

/// POST to a control URL (UDA 1.1 §3.2.1). SOAPACTION with or without quotes; without it the
/// body alone names the action (some clients send only `Content-Type: text/xml`).
async fn control<B>(shared: &Shared, peer: SocketAddr, kind: ServiceKind, req: Request<B>) -> Resp
where
    B: Body<Data = Bytes>,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let too_long = req
        .headers()
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<usize>().ok())
        .is_some_and(|n| n > soap::MAX_REQUEST);
    if too_long {
        return status_only(StatusCode::PAYLOAD_TOO_LARGE);
    }
    let header = req
        .headers()
        .get("soapaction")
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
    let body = match read_body(req.into_body()).await {
        Ok(b) => b,
        Err(s) => return status_only(s),
    };
    let Some(caller) = caller_v4(peer) else {
        return fault(shared, UpnpError::ActionNotAuthorized);
    };
    let areq = match ActionRequest::parse(&body) {
        Ok(r) => r,
        Err(e) => {
            shared.stats.soap_malformed.fetch_add(1, Ordering::Relaxed);
            let named = header
                .as_deref()
                .and_then(|h| SoapAction::parse(h).ok())
                .is_some_and(|sa| names_action_here(shared, kind, &sa));
            // The header identifies the action, so the body is its arguments (402, as
            // miniupnpd answers); else the action is unknown (401).
            return fault(
                shared,
                if named {
                    UpnpError::InvalidArgs
                } else {
                    e.upnp_error()
                },
            );
        }
    };
    if let Some(h) = header.as_deref().filter(|h| !h.trim().is_empty()) {
        match SoapAction::parse(h) {
            Ok(sa) if areq.matches(&sa) => {}
            _ => return fault(shared, UpnpError::InvalidAction),
        }
    }
    let result = shared.with_core(|now, core, nat| core.soap(now, nat, caller, kind, &areq));
    match result {
        Ok(resp) => {
            let mut r = respond(
                StatusCode::OK,
                Some(soap::CONTENT_TYPE),
                emit_response(&resp),
            );
            // UDA 1.0 §3.2.2 response header, still expected by some control points.
            r.headers_mut().insert("EXT", HeaderValue::from_static(""));
            r
        }
        Err(e) => fault(shared, e),
    }
}

/// Whether a SOAPACTION header names an action of the service at this control URL, at a
/// version we offer (or QueryStateVariable).
fn names_action_here(shared: &Shared, kind: ServiceKind, sa: &SoapAction) -> bool {
    let here = sa.service_type == soap::CONTROL_NS
        || ServiceType::parse(&sa.service_type).is_some_and(|st| {
            st.kind == kind && st.version <= lock(&shared.core).offered_version(kind)
        });
    here && shared::igd::has_action(&sa.service_type, &sa.action)
}

/// Writes a control response. `NewPortListing` (GetListOfPortMappings) goes out as CDATA, as
/// miniupnpd sends it: miniupnpc's parser reads the listing only from CDATA and does not decode
/// entities (any XML parser reads both forms alike).
fn emit_response(resp: &ActionResponse) -> Vec<u8> {
    const MARK: &str = "hnibPortListingMark";
    let Some(listing) = resp.arg("NewPortListing") else {
        return resp.emit();
    };
    // The listing escapes its descriptions, so "]]>" cannot occur in it; be safe anyway.
    if listing.contains("]]>") {
        return resp.emit();
    }
    let mut marked = resp.clone();
    for (k, v) in &mut marked.args {
        if k == "NewPortListing" {
            *v = MARK.to_string();
        }
    }
    let text = String::from_utf8_lossy(&marked.emit()).replace(
        &format!("<NewPortListing>{MARK}</NewPortListing>"),
        &format!("<NewPortListing><![CDATA[{listing}]]></NewPortListing>"),
    );
    text.into_bytes()
}

/// SUBSCRIBE / UNSUBSCRIBE on an event URL (UDA 1.1 §4.1).
fn subscribe<B>(shared: &Shared, peer: SocketAddr, kind: ServiceKind, req: &Request<B>) -> Resp {
    let fields: Vec<(&str, &str)> = req
        .headers()
        .iter()
        .filter_map(|(k, v)| Some((k.as_str(), v.to_str().ok()?)))
        .collect();
    let refuse = |status: u16| {
        shared.stats.gena_refused.fetch_add(1, Ordering::Relaxed);
        status_only(StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_REQUEST))
    };
    let parsed = match gena::request_from_fields(req.method().as_str(), &fields) {
        Ok(p) => p,
        Err(e) => return refuse(e.http_status()),
    };
    let now = shared.clock.now();
    let (sid, timeout, initial) = match parsed {
        GenaRequest::Subscribe(sub) => {
            let stats = shared.stats.clone();
            let r = lock(&shared.subs)
                .subscribe(now, kind, peer.ip(), &sub, |_| events::spawn_sender(stats));
            match r {
                Ok((sid, t)) => (sid, t, true),
                Err(e) => return refuse(e.http_status()),
            }
        }
        GenaRequest::Renew { sid, timeout } => {
            match lock(&shared.subs).renew(now, kind, &sid, timeout) {
                Ok(t) => (sid, t, false),
                Err(e) => return refuse(e.http_status()),
            }
        }
        GenaRequest::Unsubscribe { sid } => {
            return match lock(&shared.subs).unsubscribe(now, kind, &sid) {
                Ok(()) => status_only(StatusCode::OK),
                Err(SubError::Precondition) | Err(SubError::Full) => refuse(412),
            };
        }
    };
    if initial {
        // UDA 1.1 §4.2.1: the initial event carries every evented variable, SEQ 0.
        let props = {
            let mut core = lock(&shared.core);
            let nat = lock(&shared.nat);
            core.initial_event(now, &nat, kind)
        };
        let mut subs = lock(&shared.subs);
        if let Some((tx, d)) = subs.event_for(&sid, props)
            && tx.try_send(d).is_err()
        {
            shared.stats.events_failed.fetch_add(1, Ordering::Relaxed);
        }
    }
    let mut r = status_only(StatusCode::OK);
    let ans = SubscribeResponse {
        sid,
        timeout,
        server: SERVER_TOKEN.to_string(),
        accepted_statevar: None,
    };
    for (k, v) in ans.fields() {
        if k == "CONTENT-LENGTH" || k == "SERVER" {
            continue;
        }
        if let Ok(v) = HeaderValue::from_str(&v) {
            r.headers_mut().insert(k, v);
        }
    }
    r
}
