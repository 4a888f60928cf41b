//! Request dispatch. Every answer is built here; nothing in this file panics on request data.

use std::convert::Infallible;
use std::fmt::Display;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Body;
use hyper::header::{self, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use serde_json::{Value, json};
use tokio::sync::mpsc::error::TrySendError;

use super::auth::{self, Refusal};
use super::links::{self, LinkContext, Place};
use super::page::{self, PageView};
use super::{ConnInfo, WebState, form, mjpeg};
use crate::directory::{Directory, NodeCommand, Reachability};

type Resp = Response<BoxBody<Bytes, Infallible>>;

/// How long a snapshot waits for a frame.
const SNAPSHOT_TIMEOUT: Duration = Duration::from_secs(5);
/// The largest request body we read (forms and JSON are tiny).
const MAX_BODY: usize = 16 * 1024;

fn full(status: StatusCode, content_type: &'static str, body: impl Into<Bytes>) -> Resp {
    let mut r = Response::new(Full::new(body.into()).boxed());
    *r.status_mut() = status;
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

fn text(status: StatusCode, message: impl Display) -> Resp {
    full(status, "text/plain; charset=utf-8", format!("{message}\n"))
}

fn json_response(status: StatusCode, value: &Value) -> Resp {
    full(status, "application/json", value.to_string())
}

fn method_not_allowed(allow: &'static str) -> Resp {
    let mut r = text(StatusCode::METHOD_NOT_ALLOWED, format!("use {allow} here"));
    r.headers_mut()
        .insert(header::ALLOW, HeaderValue::from_static(allow));
    r
}

/// The viewer's place relative to the node's LAN.
fn place_of(state: &WebState, conn: &ConnInfo, dir: &Directory) -> Place {
    links::classify(
        conn.peer.ip(),
        conn.local.map(|l| l.ip()),
        &state.subnets(),
        dir.lan_addr,
    )
}

/// Answer one request.
pub async fn handle<B>(state: &WebState, conn: &ConnInfo, req: Request<B>) -> Resp
where
    B: Body<Data = Bytes>,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let path = req.uri().path().to_owned();
    let query = match form::parse(req.uri().query().unwrap_or("")) {
        Ok(q) => q,
        Err(e) => return text(StatusCode::BAD_REQUEST, e),
    };
    let get = matches!(*req.method(), Method::GET | Method::HEAD);
    // Set by `crate::relay::back` on back-connections only: links become relay paths.
    let relayed = req.extensions().get::<links::Relayed>().cloned();
    let relayed = relayed.as_ref();
    match path.as_str() {
        "/" if get => match form::get(&query, "action") {
            None => page_response(state, conn, relayed),
            Some("snapshot") => snapshot(state).await,
            Some("stream") => stream(state),
            Some(other) => text(
                StatusCode::BAD_REQUEST,
                format!("unknown action {other:?}; use ?action=snapshot or ?action=stream"),
            ),
        },
        "/snapshot.jpg" if get => snapshot(state).await,
        "/stream.mjpg" if get => stream(state),
        "/status.json" if get => {
            let dir = state.dir.borrow().clone();
            let place = place_of(state, conn, &dir);
            json_response(StatusCode::OK, &status(state, conn, &dir, place, relayed))
        }
        "/ptz" if get => {
            if ["pan", "tilt", "zoom"]
                .iter()
                .any(|k| form::get(&query, k).is_some())
            {
                // A GET must not change state (RFC 9110 §9.2.1): an <img src> on any page
                // could move the camera.
                let mut r = text(
                    StatusCode::METHOD_NOT_ALLOWED,
                    "moving the camera needs POST /ptz (form or JSON: pan, tilt, zoom); GET /ptz only reads the position",
                );
                r.headers_mut()
                    .insert(header::ALLOW, HeaderValue::from_static("POST"));
                r
            } else {
                ptz_response(state, StatusCode::OK)
            }
        }
        "/ptz" if req.method() == Method::POST => {
            let (parts, body) = req.into_parts();
            match read_fields(&parts, body).await {
                Ok(fields) => ptz_change(state, conn, &Request::from_parts(parts, ()), &fields),
                Err(resp) => resp,
            }
        }
        "/name" if req.method() == Method::POST => {
            let (parts, body) = req.into_parts();
            match read_fields(&parts, body).await {
                Ok(fields) => rename(state, conn, &Request::from_parts(parts, ()), &fields),
                Err(resp) => resp,
            }
        }
        "/" | "/snapshot.jpg" | "/stream.mjpg" | "/status.json" => method_not_allowed("GET"),
        "/ptz" => method_not_allowed("GET, POST"),
        "/name" => method_not_allowed("POST"),
        _ => text(
            StatusCode::NOT_FOUND,
            format!("no page {path:?}; try /, /snapshot.jpg, /stream.mjpg or /status.json"),
        ),
    }
}

fn page_response(state: &WebState, conn: &ConnInfo, relayed: Option<&links::Relayed>) -> Resp {
    let dir = state.dir.borrow().clone();
    let place = place_of(state, conn, &dir);
    let html = page::render(&PageView {
        dir: &dir,
        links: LinkContext::new(place, &state.config.domain, &dir).via_relay(relayed),
        width: state.config.width,
        height: state.config.height,
        password_configured: !state.config.password.is_empty(),
    });
    full(StatusCode::OK, "text/html; charset=utf-8", html)
}

async fn snapshot(state: &WebState) -> Resp {
    match state.hub.snapshot(SNAPSHOT_TIMEOUT).await {
        Some(frame) => {
            let mut r = Response::new(Full::new(frame.jpeg.clone()).boxed());
            let h = r.headers_mut();
            h.insert(header::CONTENT_TYPE, HeaderValue::from_static("image/jpeg"));
            h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            r
        }
        None => text(
            StatusCode::SERVICE_UNAVAILABLE,
            format!(
                "no picture from the camera within {} s",
                SNAPSHOT_TIMEOUT.as_secs()
            ),
        ),
    }
}

fn stream(state: &WebState) -> Resp {
    let Ok(permit) = state.streams.clone().try_acquire_owned() else {
        let mut r = text(
            StatusCode::SERVICE_UNAVAILABLE,
            format!(
                "too many streams ({} at once); try again later or use /snapshot.jpg",
                state.config.max_streams
            ),
        );
        r.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
        return r;
    };
    let viewer = state.hub.subscribe();
    let reuse = Duration::from_secs_f64(2.0 / f64::from(state.hub.settings().fps));
    let mut r = Response::new(mjpeg::stream(viewer, permit, reuse).boxed());
    let h = r.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&mjpeg::content_type()) {
        h.insert(header::CONTENT_TYPE, v);
    }
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("no-cache, no-store, must-revalidate"),
    );
    h.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    r
}

/// Read a small form or JSON body into name/value pairs (JSON values as their text).
async fn read_fields<B>(
    parts: &hyper::http::request::Parts,
    body: B,
) -> Result<Vec<(String, String)>, Resp>
where
    B: Body<Data = Bytes>,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let collected = tokio::time::timeout(
        super::limits::BODY_TIMEOUT,
        Limited::new(body, MAX_BODY).collect(),
    );
    let bytes = match collected.await {
        Ok(Ok(c)) => c.to_bytes(),
        Err(_) => {
            return Err(text(
                StatusCode::REQUEST_TIMEOUT,
                format!(
                    "the body did not arrive within {:?}",
                    super::limits::BODY_TIMEOUT
                ),
            ));
        }
        Ok(Err(e)) => {
            return Err(text(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("cannot read the body ({e}); at most {MAX_BODY} bytes"),
            ));
        }
    };
    let content_type = parts
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let is_json = content_type.starts_with("application/json")
        || (content_type.is_empty() && bytes.starts_with(b"{"));
    if is_json {
        let value: Value = serde_json::from_slice(&bytes).map_err(|e| {
            text(
                StatusCode::BAD_REQUEST,
                format!("the body is not valid JSON: {e}"),
            )
        })?;
        let Value::Object(map) = value else {
            return Err(text(
                StatusCode::BAD_REQUEST,
                "the JSON body must be an object",
            ));
        };
        return Ok(map
            .into_iter()
            .map(|(k, v)| {
                let v = match v {
                    Value::String(s) => s,
                    other => other.to_string(),
                };
                (k, v)
            })
            .collect());
    }
    let body = std::str::from_utf8(&bytes)
        .map_err(|_| text(StatusCode::BAD_REQUEST, "the body is not UTF-8"))?;
    let mut fields = form::parse(body).map_err(|e| text(StatusCode::BAD_REQUEST, e))?;
    // Query parameters count too (`POST /ptz?zoom=2`), after the body's.
    if let Some(q) = parts.uri.query() {
        fields.extend(form::parse(q).map_err(|e| text(StatusCode::BAD_REQUEST, e))?);
    }
    Ok(fields)
}

/// Check the change permission: None to go ahead, or the refusal to send.
fn refusal<B>(
    state: &WebState,
    conn: &ConnInfo,
    req: &Request<B>,
    fields: &[(String, String)],
) -> Option<Resp> {
    let dir = state.dir.borrow().clone();
    let place = place_of(state, conn, &dir);
    if let Some(why) = auth::cross_site(req.headers()) {
        return Some(text(StatusCode::FORBIDDEN, why));
    }
    let ip = conn.peer.ip();
    let now = std::time::Instant::now();
    if place != Place::Lan
        && let Err(wait) = state.passwords.check(ip, now)
    {
        let mut r = text(
            StatusCode::TOO_MANY_REQUESTS,
            format!(
                "too many wrong passwords from {ip}; try again in {} s",
                wait.as_secs() + 1
            ),
        );
        if let Ok(v) = HeaderValue::from_str(&(wait.as_secs() + 1).to_string()) {
            r.headers_mut().insert(header::RETRY_AFTER, v);
        }
        return Some(r);
    }
    let authorization = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    let verdict = auth::authorize(
        place,
        &state.config.password,
        authorization,
        form::get(fields, "password"),
    );
    match verdict {
        Err(Refusal::PasswordWrong) => state.passwords.failed(ip, now),
        Ok(()) if place != Place::Lan => state.passwords.succeeded(ip),
        _ => {}
    }
    verdict.err().map(|refusal| {
        let status = match refusal {
            Refusal::NoPasswordConfigured => StatusCode::FORBIDDEN,
            Refusal::PasswordMissing | Refusal::PasswordWrong => StatusCode::UNAUTHORIZED,
        };
        let mut r = text(status, refusal.message());
        if status == StatusCode::UNAUTHORIZED {
            r.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Basic realm=\"camnode\""),
            );
        }
        r
    })
}

fn ptz_response(state: &WebState, status: StatusCode) -> Resp {
    let s = state.hub.stats();
    json_response(
        status,
        &json!({ "ptz": s.ptz, "hardware": s.ptz_hardware, "digital": s.ptz_digital }),
    )
}

fn ptz_change<B>(
    state: &WebState,
    conn: &ConnInfo,
    req: &Request<B>,
    fields: &[(String, String)],
) -> Resp {
    let mut ptz = state.hub.stats().ptz;
    for (key, slot) in [
        ("pan", &mut ptz.pan),
        ("tilt", &mut ptz.tilt),
        ("zoom", &mut ptz.zoom),
    ] {
        if let Some(v) = form::get(fields, key) {
            match v.trim().parse::<f32>() {
                Ok(n) => *slot = n,
                Err(_) => {
                    return text(
                        StatusCode::BAD_REQUEST,
                        format!("{key} = {v:?} is not a number"),
                    );
                }
            }
        }
    }
    let ptz = match ptz.validated() {
        Ok(p) => p,
        Err(e) => return text(StatusCode::BAD_REQUEST, e),
    };
    if let Some(refusal) = refusal(state, conn, req, fields) {
        return refusal;
    }
    state.hub.set_ptz(ptz);
    let s = state.hub.stats();
    json_response(
        StatusCode::OK,
        &json!({ "ptz": ptz, "hardware": s.ptz_hardware, "digital": s.ptz_digital }),
    )
}

fn rename<B>(
    state: &WebState,
    conn: &ConnInfo,
    req: &Request<B>,
    fields: &[(String, String)],
) -> Resp {
    let Some(raw) = form::get(fields, "name") else {
        return text(
            StatusCode::BAD_REQUEST,
            "missing field \"name\" (form field or JSON member)",
        );
    };
    let name = match auth::validate_name(raw) {
        Ok(n) => n,
        Err(e) => return text(StatusCode::BAD_REQUEST, e),
    };
    if let Some(refusal) = refusal(state, conn, req, fields) {
        return refusal;
    }
    match state.commands.try_send(NodeCommand::Rename(name.clone())) {
        Ok(()) => {}
        Err(TrySendError::Full(_)) => {
            return text(
                StatusCode::SERVICE_UNAVAILABLE,
                "busy with another change; try again in a moment",
            );
        }
        Err(TrySendError::Closed(_)) => {
            return text(
                StatusCode::SERVICE_UNAVAILABLE,
                "port management is not running; the name cannot change now",
            );
        }
    }
    let from_form = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|c| c.starts_with("application/x-www-form-urlencoded"));
    if from_form {
        // A browser form: back to the page, which shows the new name once it is applied.
        let mut r = text(StatusCode::SEE_OTHER, "renamed; see /");
        r.headers_mut()
            .insert(header::LOCATION, HeaderValue::from_static("/"));
        return r;
    }
    json_response(
        StatusCode::ACCEPTED,
        &json!({ "name": name, "status": "accepted" }),
    )
}

fn reachability_json(r: &Reachability) -> Value {
    let text = page::reachability_text(r);
    match r {
        Reachability::Discovering => json!({ "state": "discovering", "text": text }),
        Reachability::Reachable => json!({ "state": "reachable", "text": text }),
        Reachability::NoIgd => json!({ "state": "no-igd", "text": text }),
        Reachability::DoubleNat { external } => {
            json!({ "state": "double-nat", "external": external, "text": text })
        }
        Reachability::Refused { reason } => {
            json!({ "state": "refused", "reason": reason, "text": text })
        }
        Reachability::ViaRelay { site, direct } => {
            json!({ "state": "relay", "site": site, "direct": reachability_json(direct), "text": text })
        }
    }
}

/// The status document, with links built for this viewer.
fn status(
    state: &WebState,
    conn: &ConnInfo,
    dir: &Directory,
    place: Place,
    relayed: Option<&links::Relayed>,
) -> Value {
    let ctx = LinkContext::new(place, &state.config.domain, dir).via_relay(relayed);
    let stats = state.hub.stats();
    let peers: Vec<Value> = dir
        .peers
        .iter()
        .map(|p| {
            json!({
                "node_id": p.node_id,
                "name": p.name,
                "lan_addr": p.lan_addr,
                "lan_port": p.lan_port,
                "external_port": p.external_port,
                "source": format!("{:?}", p.source).to_lowercase(),
                "url": ctx.peer_url(p),
                "last_seen_ms_ago": p.last_seen.elapsed().as_millis() as u64,
            })
        })
        .collect();
    let domain = Some(state.config.domain.trim()).filter(|d| !d.is_empty());
    json!({
        "node_id": dir.node_id,
        "name": dir.name,
        "role": dir.role.name(),
        "warning": dir.warning,
        "reachability": reachability_json(&dir.reachability),
        "external_addr": dir.external_addr,
        "domain": domain,
        "lan_addr": dir.lan_addr,
        "ports": { "lan": dir.lan_port, "external": dir.external_port },
        "url": ctx.own_url(dir),
        "peers": peers,
        "camera": {
            "source": stats.source,
            "source_health": stats.source_health,
            "width": state.config.width,
            "height": state.config.height,
            "fps": stats.fps,
            "target_fps": stats.target_fps,
            "quality": stats.quality,
            "encode_threads": stats.encode_threads,
            "viewers": stats.viewers,
            "streams": state.open_streams(),
            "max_streams": state.config.max_streams,
            "published": stats.published,
            "encodes": stats.encodes,
            "passthrough": stats.passthrough,
            "errors": stats.errors,
            "ptz": stats.ptz,
            "ptz_hardware": stats.ptz_hardware,
            "ptz_digital": stats.ptz_digital,
        },
        "viewer": { "address": conn.peer.ip().to_string(), "place": place.name() },
        "uptime_s": state.started.elapsed().as_secs(),
    })
}

#[cfg(test)]
mod tests {
    use std::net::{Ipv4Addr, SocketAddr};
    use std::sync::Arc;
    use std::time::Instant;

    use tokio::sync::{mpsc, watch};

    use super::*;
    use crate::camera::synthetic::Synthetic;
    use crate::camera::{FrameHub, HubSettings};
    use crate::directory::{Peer, PeerSource, Role};
    use crate::web::WebConfig;

    struct Fixture {
        _hub: FrameHub,
        state: Arc<WebState>,
        commands: mpsc::Receiver<NodeCommand>,
        _dir_tx: watch::Sender<Directory>,
    }

    fn fixture(password: &str, max_streams: usize) -> Fixture {
        let hub = FrameHub::start(
            Box::new(Synthetic::new(64, 48, "t", "t")),
            HubSettings::new(30, 70),
            "t",
        )
        .unwrap();
        let dir = Directory {
            node_id: "n1".into(),
            name: "camera 1".into(),
            role: Role::Representative,
            reachability: Reachability::Reachable,
            external_addr: Some(Ipv4Addr::new(203, 0, 113, 2)),
            lan_addr: Some(Ipv4Addr::new(192, 168, 1, 100)),
            external_port: Some(8080),
            lan_port: 8080,
            peers: vec![Peer {
                node_id: "n2".into(),
                name: "camera 2".into(),
                lan_addr: Ipv4Addr::new(192, 168, 1, 101),
                lan_port: 8081,
                external_port: Some(8081),
                source: PeerSource::Notice,
                last_seen: Instant::now(),
            }],
            warning: None,
        };
        let (dir_tx, dir_rx) = watch::channel(dir);
        let (cmd_tx, commands) = mpsc::channel(4);
        let config = WebConfig {
            domain: String::new(),
            password: password.into(),
            max_streams,
            width: 64,
            height: 48,
        };
        let state = WebState::new(hub.handle(), dir_rx, cmd_tx, config);
        Fixture {
            _hub: hub,
            state,
            commands,
            _dir_tx: dir_tx,
        }
    }

    /// A viewer on the internet (the connection arrived on a loopback test socket, so the
    /// directory's LAN address decides, and 198.51.100.10 is not in it).
    fn outside() -> ConnInfo {
        ConnInfo {
            peer: SocketAddr::from(([198, 51, 100, 10], 40000)),
            local: None,
        }
    }

    fn local() -> ConnInfo {
        ConnInfo {
            peer: SocketAddr::from(([127, 0, 0, 1], 40000)),
            local: None,
        }
    }

    fn req(
        method: &str,
        uri: &str,
        content_type: Option<&str>,
        body: &str,
    ) -> Request<Full<Bytes>> {
        let mut b = Request::builder().method(method).uri(uri);
        if let Some(ct) = content_type {
            b = b.header("content-type", ct);
        }
        b.body(Full::new(Bytes::from(body.to_owned()))).unwrap()
    }

    async fn body_text(r: Resp) -> String {
        String::from_utf8_lossy(&r.into_body().collect().await.unwrap().to_bytes()).into_owned()
    }

    #[tokio::test]
    async fn bad_requests_get_4xx_with_reasons() {
        let f = fixture("", 10);
        let s = &f.state;
        let cases = [
            ("GET", "/nope", StatusCode::NOT_FOUND),
            ("GET", "/?action=dance", StatusCode::BAD_REQUEST),
            ("GET", "/?x=%zz", StatusCode::BAD_REQUEST),
            ("DELETE", "/", StatusCode::METHOD_NOT_ALLOWED),
            ("GET", "/name", StatusCode::METHOD_NOT_ALLOWED),
            ("POST", "/ptz?zoom=abc", StatusCode::BAD_REQUEST),
            ("POST", "/ptz?zoom=99", StatusCode::BAD_REQUEST),
            ("POST", "/ptz?pan=NaN", StatusCode::BAD_REQUEST),
            // Issue 11: a GET never changes state (an <img src> could move the camera).
            ("GET", "/ptz?zoom=2", StatusCode::METHOD_NOT_ALLOWED),
        ];
        for (m, uri, want) in cases {
            let r = handle(s, &local(), req(m, uri, None, "")).await;
            assert_eq!(r.status(), want, "{m} {uri}");
            assert!(!body_text(r).await.trim().is_empty());
        }
        let r = handle(
            s,
            &local(),
            req("POST", "/name", Some("application/json"), "{not json"),
        )
        .await;
        assert_eq!(r.status(), StatusCode::BAD_REQUEST);
        let r = handle(
            s,
            &local(),
            req("POST", "/name", Some("application/json"), "[1]"),
        )
        .await;
        assert_eq!(r.status(), StatusCode::BAD_REQUEST);
        let r = handle(
            s,
            &local(),
            req("POST", "/name", Some("application/json"), "{}"),
        )
        .await;
        assert_eq!(r.status(), StatusCode::BAD_REQUEST);
        let big = format!("name={}", "x".repeat(MAX_BODY + 1));
        let r = handle(
            s,
            &local(),
            req(
                "POST",
                "/name",
                Some("application/x-www-form-urlencoded"),
                &big,
            ),
        )
        .await;
        assert_eq!(r.status(), StatusCode::PAYLOAD_TOO_LARGE);
        let r = handle(
            s,
            &local(),
            req(
                "POST",
                "/name",
                Some("application/json"),
                &format!("{{\"name\":\"{}\"}}", "y".repeat(65)),
            ),
        )
        .await;
        assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    }

    #[tokio::test]
    async fn rename_from_lan_is_forwarded() {
        let mut f = fixture("", 10);
        let r = handle(
            &f.state,
            &local(),
            req(
                "POST",
                "/name",
                Some("application/x-www-form-urlencoded"),
                "name=porch+%26+gate",
            ),
        )
        .await;
        assert_eq!(r.status(), StatusCode::SEE_OTHER);
        assert_eq!(
            f.commands.try_recv().unwrap(),
            NodeCommand::Rename("porch & gate".into())
        );
        let r = handle(
            &f.state,
            &local(),
            req(
                "POST",
                "/name",
                Some("application/json"),
                r#"{"name": " garden "}"#,
            ),
        )
        .await;
        assert_eq!(r.status(), StatusCode::ACCEPTED);
        assert_eq!(
            f.commands.try_recv().unwrap(),
            NodeCommand::Rename("garden".into())
        );
    }

    #[tokio::test]
    async fn changes_from_outside_follow_the_password_rules() {
        // No password configured: refused with advice.
        let mut f = fixture("", 10);
        let r = handle(
            &f.state,
            &outside(),
            req("POST", "/name", Some("application/json"), r#"{"name":"x"}"#),
        )
        .await;
        assert_eq!(r.status(), StatusCode::FORBIDDEN);
        assert!(body_text(r).await.contains("--password"));
        let r = handle(&f.state, &outside(), req("POST", "/ptz?zoom=2", None, "")).await;
        assert_eq!(r.status(), StatusCode::FORBIDDEN);
        assert!(f.commands.try_recv().is_err());
        // Reading is fine from anywhere.
        assert_eq!(
            handle(&f.state, &outside(), req("GET", "/ptz", None, ""))
                .await
                .status(),
            StatusCode::OK
        );

        let mut f = fixture("s3cret", 10);
        let r = handle(
            &f.state,
            &outside(),
            req("POST", "/name", Some("application/json"), r#"{"name":"x"}"#),
        )
        .await;
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
        assert!(r.headers().contains_key(header::WWW_AUTHENTICATE));
        let r = handle(
            &f.state,
            &outside(),
            req(
                "POST",
                "/name",
                Some("application/json"),
                r#"{"name":"x","password":"nope"}"#,
            ),
        )
        .await;
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
        let r = handle(
            &f.state,
            &outside(),
            req(
                "POST",
                "/name",
                Some("application/json"),
                r#"{"name":"x","password":"s3cret"}"#,
            ),
        )
        .await;
        assert_eq!(r.status(), StatusCode::ACCEPTED);
        assert_eq!(
            f.commands.try_recv().unwrap(),
            NodeCommand::Rename("x".into())
        );
        // Basic auth ("u:s3cret").
        let mut q = req("POST", "/ptz", Some("application/json"), r#"{"zoom": 2}"#);
        q.headers_mut().insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("Basic dTpzM2NyZXQ="),
        );
        assert_eq!(
            handle(&f.state, &outside(), q).await.status(),
            StatusCode::OK
        );
        assert_eq!(f.state.hub.stats().ptz.zoom, 2.0);
    }

    /// Issue 11: the password from outside could be guessed as fast as the network allowed.
    /// After five wrong ones an address gets 429 (even with the right one) for a minute; other
    /// addresses are not affected. And a page on another site cannot make a LAN viewer's
    /// browser rename or move the camera.
    #[tokio::test]
    async fn wrong_passwords_are_limited_per_address_and_cross_site_changes_refused() {
        let mut f = fixture("s3cret", 10);
        let rename = |pw: &str| {
            req(
                "POST",
                "/name",
                Some("application/json"),
                &format!(r#"{{"name":"x","password":"{pw}"}}"#),
            )
        };
        for _ in 0..super::super::limits::MAX_FAILURES {
            let r = handle(&f.state, &outside(), rename("guess")).await;
            assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
        }
        let r = handle(&f.state, &outside(), rename("s3cret")).await;
        assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
        assert!(r.headers().contains_key(header::RETRY_AFTER));
        assert!(f.commands.try_recv().is_err());
        let elsewhere = ConnInfo {
            peer: SocketAddr::from(([198, 51, 100, 11], 40000)),
            local: None,
        };
        let r = handle(&f.state, &elsewhere, rename("s3cret")).await;
        assert_eq!(r.status(), StatusCode::ACCEPTED);
        assert!(f.commands.try_recv().is_ok());
        // Cross-site, from the LAN (no password needed there): refused.
        let mut q = req(
            "POST",
            "/ptz",
            Some("application/x-www-form-urlencoded"),
            "zoom=4",
        );
        q.headers_mut()
            .insert(header::HOST, HeaderValue::from_static("192.168.1.100:8080"));
        q.headers_mut().insert(
            header::ORIGIN,
            HeaderValue::from_static("http://evil.example"),
        );
        let r = handle(&f.state, &local(), q).await;
        assert_eq!(r.status(), StatusCode::FORBIDDEN);
        assert_eq!(f.state.hub.stats().ptz.zoom, 1.0);
        // The camera's own page (same origin) may.
        let mut q = req("POST", "/ptz", Some("application/json"), r#"{"zoom": 4}"#);
        q.headers_mut()
            .insert(header::HOST, HeaderValue::from_static("192.168.1.100:8080"));
        q.headers_mut().insert(
            header::ORIGIN,
            HeaderValue::from_static("http://192.168.1.100:8080"),
        );
        assert_eq!(handle(&f.state, &local(), q).await.status(), StatusCode::OK);
    }

    #[tokio::test]
    async fn status_and_page_links_depend_on_the_viewer() {
        let f = fixture("", 10);
        let r = handle(&f.state, &outside(), req("GET", "/status.json", None, "")).await;
        let v: Value = serde_json::from_str(&body_text(r).await).unwrap();
        assert_eq!(v["role"], "representative");
        assert_eq!(v["peers"][0]["url"], "http://203.0.113.2:8081/");
        assert_eq!(v["viewer"]["place"], "outside");
        assert_eq!(v["reachability"]["state"], "reachable");
        assert_eq!(v["ports"]["external"], 8080);
        let r = handle(&f.state, &local(), req("GET", "/status.json", None, "")).await;
        let v: Value = serde_json::from_str(&body_text(r).await).unwrap();
        assert_eq!(v["peers"][0]["url"], "http://192.168.1.101:8081/");
        let html = body_text(handle(&f.state, &outside(), req("GET", "/", None, "")).await).await;
        assert!(html.contains("http://203.0.113.2:8081/"));
    }

    #[tokio::test]
    async fn streams_are_capped() {
        let f = fixture("", 1);
        let first = handle(&f.state, &local(), req("GET", "/stream.mjpg", None, "")).await;
        assert_eq!(first.status(), StatusCode::OK);
        let second = handle(&f.state, &local(), req("GET", "/?action=stream", None, "")).await;
        assert_eq!(second.status(), StatusCode::SERVICE_UNAVAILABLE);
        drop(first);
        // The stream task notices the closed body and gives its permit back.
        let deadline = Instant::now() + Duration::from_secs(5);
        while f.state.open_streams() > 0 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let third = handle(&f.state, &local(), req("GET", "/stream.mjpg", None, "")).await;
        assert_eq!(third.status(), StatusCode::OK);
    }
}
