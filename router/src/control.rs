//! The LAN-only control API: HTTP/1.1 (hyper) on the LAN address, port 80 by default.
//!
//! | method | path | body | answer |
//! |---|---|---|---|
//! | GET | `/api/status` | | addresses, preset, behaviour, port range, counters, forwards |
//! | GET | `/api/sessions?cursor=0&limit=500` | | a page of the session table (JSON array; `x-total-count`, and a `link` to the next page) |
//! | GET | `/api/forwards` | | port forwards (JSON array) |
//! | GET | `/api/dhcp/leases` | | DHCP leases with host names (JSON array; 404 if the server is off) |
//! | GET | `/metrics` | | Prometheus text ([`crate::metrics`]) |
//! | POST | `/api/preset` | `symmetric` | switches the behaviour to a preset |
//! | POST | `/api/behaviour` | `{"filtering":"endpoint-independent","timeouts":{"udp":30}}` | changes fields |
//! | POST | `/api/flush` | | drops every session |
//! | POST | `/api/wan` | `203.0.113.7/24` | moves the WAN address (interface, rules, engine) |
//! | POST | `/api/forwards` | `{"protocol":"tcp","external_port":8080,"internal_addr":"192.168.1.101"}` | adds a forward |
//! | DELETE | `/api/forwards/{tcp,udp}/{port}` | | removes a forward |
//! | GET | `/` | | the admin page ([`crate::admin`]): WAN, NAT, mappings (with delete), leases, sessions |
//! | GET | `/api/admin` | | the admin page's data as JSON |
//! | POST | `/admin/mappings/delete` | form `protocol=tcp&port=8080` | deletes a UPnP/NAT-PMP/PCP mapping, 303 to `/` |
//! | DELETE | `/api/mappings/{tcp,udp}/{port}` | | the same, as JSON |
//!
//! Errors are `{"error": "..."}` with a 4xx status (5xx only when the system refuses a change).
//! Every request passes [`crate::access`] first: `Host` must name the router, an `[admin]
//! password` is asked for when set, and changes need JSON (`Content-Type: application/json`)
//! or, for the admin page's forms, its token, and no foreign `Origin`.
//! Bodies are capped at [`MAX_BODY`] bytes and [`BODY_TIMEOUT`]; connections at
//! [`crate::access::MAX_CONNECTIONS`] in all and [`crate::access::MAX_CONNECTIONS_PER_CLIENT`]
//! per LAN host. No request holds the NAT lock for more than a page of sessions: pages are
//! copied under the lock and serialised after it. The socket is bound to the LAN address, and the
//! routing recipe sends everything from the WAN to the TUN, where the engine drops it unless a
//! forward or session matches: the API is unreachable from the internet. The admin page is
//! served by this same server at `/`.

use std::convert::Infallible;
use std::future::Future;
use std::net::Ipv4Addr;
use std::ops::RangeInclusive;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full, LengthLimitError, Limited};
use hyper::body::Body;
use hyper::header::{CONTENT_TYPE, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tracing::{debug, info, warn};

pub use crate::access::Access;
use crate::config::{BehaviourPatch, ForwardEntry, parse_addr_len};
use crate::dataplane::lock;
use crate::metrics::{self, ShellStats};
use crate::nat::{Behaviour, DropReason, Forward, ForwardError, Nat, Preset, Protocol};
use crate::wan::WanControl;

pub mod sessions;

/// Largest request body accepted.
pub const MAX_BODY: usize = 64 * 1024;
/// Time a client gets to send its request headers (also the longest a kept-alive connection
/// may stay idle).
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// Time a client gets to send its request body.
pub const BODY_TIMEOUT: Duration = Duration::from_secs(10);
/// Sessions per page of `GET /api/sessions`, by default and at most.
pub const SESSIONS_PAGE: usize = 500;
pub const SESSIONS_PAGE_MAX: usize = 1000;

/// Fixed facts about this router, for `/api/status`.
#[derive(Debug, Clone)]
pub struct RouterInfo {
    pub wan_iface: String,
    pub lan_iface: String,
    pub lan_addr: Ipv4Addr,
    pub lan_prefix: u8,
    pub tun: String,
    pub port_range: RangeInclusive<u16>,
    pub started: Instant,
}

/// Everything a request handler can reach.
#[derive(Debug)]
pub struct ControlState {
    pub nat: Arc<Mutex<Nat>>,
    pub wan: Arc<dyn WanControl>,
    pub shell: Arc<ShellStats>,
    pub info: RouterInfo,
    /// The preset last asked for, so that `port-restricted` is reported as such and not as
    /// `home`, which sets the same behaviour.
    pub chosen_preset: Mutex<Option<Preset>>,
    /// The UPnP IGD / NAT-PMP / PCP service, when it runs: its mappings and counters show in
    /// the status, and a WAN change made here reaches its subscribers.
    pub upnp: Option<crate::upnp::UpnpHandle>,
    /// The DHCP server, when it runs: its leases (`/api/dhcp/leases`) and counters.
    pub dhcp: Option<crate::dhcp::DhcpHandle>,
    /// Host, Origin, password and CSRF checks, and the connection caps.
    pub access: crate::access::Access,
}

impl ControlState {
    /// The name of the current behaviour's preset, if it equals one.
    fn preset_name(&self, b: &Behaviour) -> Option<&'static str> {
        let chosen = *self
            .chosen_preset
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        chosen
            .filter(|p| p.behaviour() == *b)
            .or_else(|| preset_of(b))
            .map(Preset::name)
    }
}

/// Serves connections from `listener` until `shutdown` completes.
pub async fn serve(
    listener: TcpListener,
    state: Arc<ControlState>,
    shutdown: impl Future<Output = ()>,
) {
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            _ = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // EMFILE and friends: back off instead of spinning.
                    warn!("control: accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        // One LAN host holding idle connections cannot take them all (slowloris).
        let permit = match state.access.conns.admit(peer.ip()) {
            Ok(p) => p,
            Err(why) => {
                debug!("control: connection from {peer} refused: {why:?}");
                continue;
            }
        };
        let state = state.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let service = hyper::service::service_fn(move |mut req: Request<_>| {
                let state = state.clone();
                // The peer, for the count of wrong passwords.
                req.extensions_mut().insert(peer);
                async move { Ok::<_, Infallible>(handle(&state, req).await) }
            });
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_TIMEOUT)
                // Bounded memory per connection: 64 KiB of buffered input, 100 header fields.
                .max_buf_size(MAX_BODY)
                .max_headers(100)
                .serve_connection(TokioIo::new(stream), service);
            if let Err(e) = conn.await {
                debug!("control: connection from {peer}: {e}");
            }
        });
    }
    info!("control: stopped accepting");
}

type Resp = Response<Full<Bytes>>;

fn respond(status: StatusCode, content_type: &'static str, body: impl Into<Bytes>) -> Resp {
    let mut r = Response::new(Full::new(body.into()));
    *r.status_mut() = status;
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    r
}

fn json_resp(status: StatusCode, v: &Value) -> Resp {
    let mut body = serde_json::to_vec_pretty(v).unwrap_or_default();
    body.push(b'\n');
    respond(status, "application/json", body)
}

fn error(status: StatusCode, msg: impl std::fmt::Display) -> Resp {
    json_resp(status, &json!({ "error": msg.to_string() }))
}

/// Answers one request. Generic over the body so tests can call it without a socket.
pub async fn handle<B>(state: &ControlState, req: Request<B>) -> Resp
where
    B: Body<Data = Bytes>,
    B::Error: std::error::Error + Send + Sync + 'static,
{
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let query = req.uri().query().unwrap_or_default().to_string();
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    debug!("control: {method} {path}");
    let client = req
        .extensions()
        .get::<std::net::SocketAddr>()
        .map(|a| a.ip());
    if let Err(r) = state
        .access
        .check(Instant::now(), client, &method, &path, req.headers())
    {
        info!("control: refused {method} {path}: {}", r.message);
        let mut resp = error(r.status, r.message);
        if r.status == StatusCode::UNAUTHORIZED {
            resp.headers_mut().insert(
                hyper::header::WWW_AUTHENTICATE,
                HeaderValue::from_static(crate::access::Access::CHALLENGE),
            );
        }
        return resp;
    }

    let body = Limited::new(req.into_body(), MAX_BODY).collect();
    let body = match tokio::time::timeout(BODY_TIMEOUT, body).await {
        Err(_) => return error(StatusCode::REQUEST_TIMEOUT, "request body too slow"),
        Ok(Ok(b)) => b.to_bytes(),
        Ok(Err(e)) if e.downcast_ref::<LengthLimitError>().is_some() => {
            return error(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("request body larger than {MAX_BODY} bytes"),
            );
        }
        Ok(Err(e)) => return error(StatusCode::BAD_REQUEST, format!("cannot read body: {e}")),
    };

    match (&method, segments.as_slice()) {
        (&Method::GET, ["api", "status"]) => json_resp(StatusCode::OK, &status_json(state)),
        // The admin page (issue 7) and its data.
        (&Method::GET, [""]) => html_resp(
            StatusCode::OK,
            crate::admin::page(&admin_json(state), state.access.csrf_token()),
        ),
        (&Method::GET, ["api", "admin"]) => json_resp(StatusCode::OK, &admin_json(state)),
        (&Method::POST, ["admin", "mappings", "delete"]) => {
            let form = String::from_utf8_lossy(&body).into_owned();
            let field = |name: &str| {
                form.split('&')
                    .filter_map(|kv| kv.split_once('='))
                    .find(|(k, _)| *k == name)
                    .map(|(_, v)| v.to_string())
            };
            if !state.access.csrf_ok(field("csrf").as_deref()) {
                return error(
                    StatusCode::FORBIDDEN,
                    "the form's token is missing or stale: reload the admin page and try again",
                );
            }
            match (
                field("protocol"),
                field("port").and_then(|p| p.parse::<u16>().ok()),
            ) {
                (Some(proto), Some(port)) => match delete_mapping(state, &proto, port) {
                    Ok(()) => Response::builder()
                        .status(StatusCode::SEE_OTHER)
                        .header("location", "/")
                        .body(Full::new(Bytes::new()))
                        .unwrap_or_else(|_| error(StatusCode::INTERNAL_SERVER_ERROR, "response")),
                    Err((code, msg)) => error(code, msg),
                },
                _ => error(
                    StatusCode::BAD_REQUEST,
                    "form needs protocol=tcp|udp and port=1-65535",
                ),
            }
        }
        (&Method::DELETE, ["api", "mappings", proto, port]) => {
            let Ok(port) = port.parse::<u16>() else {
                return error(
                    StatusCode::BAD_REQUEST,
                    format!("port {port:?}: expected 1-65535"),
                );
            };
            match delete_mapping(state, proto, port) {
                Ok(()) => json_resp(
                    StatusCode::OK,
                    &json!({"deleted": {"protocol": proto, "external_port": port}}),
                ),
                Err((code, msg)) => error(code, msg),
            }
        }
        (&Method::GET, ["api", "sessions"]) => sessions::page(state, &query),
        (&Method::GET, ["api", "forwards"]) => {
            let now = Instant::now();
            let list: Vec<Value> = lock(&state.nat)
                .forwards()
                .map(|f| forward_json(f, now))
                .collect();
            json_resp(StatusCode::OK, &Value::Array(list))
        }
        (&Method::GET, ["api", "dhcp", "leases"]) => match &state.dhcp {
            Some(d) => json_resp(StatusCode::OK, &json!(d.leases())),
            None => error(
                StatusCode::NOT_FOUND,
                "the DHCP server is not running ([dhcp] enabled = false)",
            ),
        },
        (&Method::GET, ["metrics"]) => {
            let mut text = {
                let nat = lock(&state.nat);
                metrics::render(nat.counters(), nat.session_count(), &state.shell.snapshot())
            };
            if let Some(d) = &state.dhcp {
                metrics::render_dhcp(&mut text, &d.stats());
            }
            respond(
                StatusCode::OK,
                "text/plain; version=0.0.4; charset=utf-8",
                text,
            )
        }
        (&Method::POST, ["api", "preset"]) => set_preset(state, &body),
        (&Method::POST, ["api", "behaviour" | "behavior"]) => set_behaviour(state, &body),
        (&Method::POST, ["api", "flush"]) => {
            let mut nat = lock(&state.nat);
            let n = nat.session_count();
            nat.flush_sessions();
            info!("control: flushed {n} sessions");
            json_resp(StatusCode::OK, &json!({ "flushed": n }))
        }
        (&Method::POST, ["api", "wan"]) => set_wan(state, &body).await,
        (&Method::POST, ["api", "forwards"]) => add_forward(state, &body),
        (&Method::DELETE, ["api", "forwards", proto, port]) => remove_forward(state, proto, port),
        (_, ["api", "status" | "sessions" | "forwards"] | ["metrics"])
        | (_, ["api", "preset" | "behaviour" | "behavior" | "flush" | "wan"])
        | (_, ["api", "forwards", _, _])
        | (_, ["api", "dhcp", "leases"]) => error(
            StatusCode::METHOD_NOT_ALLOWED,
            format!("{method} is not supported on {path}"),
        ),
        _ => error(
            StatusCode::NOT_FOUND,
            format!("no such endpoint: {path} (see /api/status, /api/sessions, /metrics)"),
        ),
    }
}

/// The body as trimmed text (quotes allowed, so `"symmetric"` works like `symmetric`).
fn text_body(body: &Bytes) -> Result<&str, Box<Resp>> {
    std::str::from_utf8(body)
        .map(|s| s.trim().trim_matches('"'))
        .map_err(|_| Box::new(error(StatusCode::BAD_REQUEST, "body is not UTF-8")))
}

fn set_preset(state: &ControlState, body: &Bytes) -> Resp {
    let name = match text_body(body) {
        Ok(s) => s,
        Err(r) => return *r,
    };
    let preset: Preset = match name.parse() {
        Ok(p) => p,
        Err(_) => {
            let names: Vec<&str> = Preset::ALL.iter().map(|p| p.name()).collect();
            return error(
                StatusCode::BAD_REQUEST,
                format!("unknown preset {name:?}; use one of {}", names.join(", ")),
            );
        }
    };
    let b = preset.behaviour();
    let mut nat = lock(&state.nat);
    nat.set_behaviour(b.clone());
    *state
        .chosen_preset
        .lock()
        .unwrap_or_else(PoisonError::into_inner) = Some(preset);
    info!("control: preset {preset}");
    json_resp(
        StatusCode::OK,
        &json!({ "preset": preset.name(), "behaviour": behaviour_json(&b) }),
    )
}

fn set_behaviour(state: &ControlState, body: &Bytes) -> Resp {
    let patch: BehaviourPatch = match serde_json::from_slice(body) {
        Ok(p) => p,
        Err(e) => {
            return error(
                StatusCode::BAD_REQUEST,
                format!(
                    "bad behaviour JSON: {e}; fields: preset, mapping, filtering, \
                     port_allocation, hairpin, timeouts {{udp, tcp_established, \
                     tcp_transitory, icmp}}"
                ),
            );
        }
    };
    let mut nat = lock(&state.nat);
    let mut b = nat.behaviour().clone();
    if let Err((field, problem, fix)) = patch.apply(&mut b, "") {
        return error(
            StatusCode::BAD_REQUEST,
            format!("field \"{field}\": {problem}; {fix}"),
        );
    }
    nat.set_behaviour(b.clone());
    info!("control: behaviour {b:?}");
    json_resp(
        StatusCode::OK,
        &json!({ "preset": state.preset_name(&b), "behaviour": behaviour_json(&b) }),
    )
}

async fn set_wan(state: &ControlState, body: &Bytes) -> Resp {
    let text = match text_body(body) {
        Ok(s) => s,
        Err(r) => return *r,
    };
    let (addr, len) = match parse_addr_len(text) {
        Ok(a) => a,
        Err(e) => {
            return error(
                StatusCode::BAD_REQUEST,
                format!("{e}; send e.g. 203.0.113.7/24"),
            );
        }
    };
    if addr.is_unspecified()
        || addr.is_loopback()
        || addr.is_multicast()
        || addr.is_broadcast()
        || len > 30
    {
        return error(
            StatusCode::BAD_REQUEST,
            format!("{addr}/{len} cannot be a WAN address; send e.g. 203.0.113.7/24"),
        );
    }
    let lan_mask = u32::MAX << (32 - u32::from(state.info.lan_prefix));
    if u32::from(addr) & lan_mask == u32::from(state.info.lan_addr) & lan_mask {
        return error(
            StatusCode::BAD_REQUEST,
            format!("{addr} is inside the LAN network; the WAN address must be outside it"),
        );
    }
    let wan = state.wan.clone();
    match tokio::task::spawn_blocking(move || wan.set_wan(addr, len)).await {
        Ok(Ok(())) => {
            if let Some(u) = &state.upnp {
                u.wan_changed();
            }
            json_resp(
                StatusCode::OK,
                &json!({ "wan_addr": format!("{addr}/{len}") }),
            )
        }
        Ok(Err(e)) => error(StatusCode::INTERNAL_SERVER_ERROR, format!("{e:#}")),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e),
    }
}

fn add_forward(state: &ControlState, body: &Bytes) -> Resp {
    let entry: ForwardEntry = match serde_json::from_slice(body) {
        Ok(e) => e,
        Err(e) => {
            return error(
                StatusCode::BAD_REQUEST,
                format!(
                    "bad forward JSON: {e}; send e.g. {{\"protocol\":\"tcp\",\
                     \"external_port\":8080,\"internal_addr\":\"192.168.1.101\",\
                     \"internal_port\":8080,\"description\":\"camera\"}}"
                ),
            );
        }
    };
    let spec = match entry.validate() {
        Ok(s) => s,
        Err((field, problem, fix)) => {
            return error(
                StatusCode::BAD_REQUEST,
                format!("field \"{field}\": {problem}; {fix}"),
            );
        }
    };
    let fwd = spec.to_forward();
    let now = Instant::now();
    let mut nat = lock(&state.nat);
    match nat.add_forward(fwd.clone()) {
        Ok(()) => {
            info!(
                "control: forward {}:{} -> {}:{}",
                fwd.protocol, fwd.external_port, fwd.internal_addr, fwd.internal_port
            );
            json_resp(StatusCode::CREATED, &forward_json(&fwd, now))
        }
        Err(e @ (ForwardError::ZeroPort { .. } | ForwardError::NotInLan { .. })) => {
            error(StatusCode::BAD_REQUEST, e)
        }
        Err(e) => error(StatusCode::CONFLICT, e),
    }
}

fn remove_forward(state: &ControlState, proto: &str, port: &str) -> Resp {
    let Ok(protocol) = proto.parse::<Protocol>() else {
        return error(
            StatusCode::BAD_REQUEST,
            format!("unknown protocol {proto:?}; use tcp or udp"),
        );
    };
    let Some(port) = port.parse::<u16>().ok().filter(|p| *p != 0) else {
        return error(
            StatusCode::BAD_REQUEST,
            format!("bad port {port:?}; use 1..=65535"),
        );
    };
    let now = Instant::now();
    match lock(&state.nat).remove_forward(protocol, port) {
        Some(f) => {
            info!("control: removed forward {protocol}:{port}");
            json_resp(StatusCode::OK, &forward_json(&f, now))
        }
        None => error(
            StatusCode::NOT_FOUND,
            format!("no forward for {protocol}:{port}"),
        ),
    }
}

/// The preset whose behaviour equals `b`, if any.
pub fn preset_of(b: &Behaviour) -> Option<Preset> {
    Preset::ALL.iter().copied().find(|p| p.behaviour() == *b)
}

/// The behaviour in the same shape `POST /api/behaviour` accepts.
pub fn behaviour_json(b: &Behaviour) -> Value {
    json!({
        "mapping": b.mapping.to_string(),
        "filtering": b.filtering.to_string(),
        "port_allocation": b.port_allocation.to_string(),
        "hairpin": b.hairpin,
        "timeouts": {
            "udp": b.timeouts.udp.as_secs(),
            "tcp_established": b.timeouts.tcp_established.as_secs(),
            "tcp_transitory": b.timeouts.tcp_transitory.as_secs(),
            "icmp": b.timeouts.icmp.as_secs(),
        },
    })
}

fn forward_json(f: &Forward, now: Instant) -> Value {
    json!({
        "protocol": f.protocol.to_string(),
        "external_port": f.external_port,
        "internal_addr": f.internal_addr.to_string(),
        "internal_port": f.internal_port,
        "remote_host": f.remote_host.map(|a| a.to_string()),
        "expires_in": f.expires.map(|e| e.saturating_duration_since(now).as_secs()),
        "description": f.description,
    })
}

/// Deletes a UPnP / NAT-PMP / PCP mapping for the administrator.
fn delete_mapping(
    state: &ControlState,
    proto: &str,
    port: u16,
) -> Result<(), (StatusCode, String)> {
    let protocol = match proto.to_ascii_lowercase().as_str() {
        "tcp" => shared::igd::Protocol::Tcp,
        "udp" => shared::igd::Protocol::Udp,
        other => {
            return Err((
                StatusCode::BAD_REQUEST,
                format!("protocol {other:?}: expected tcp or udp"),
            ));
        }
    };
    let Some(upnp) = &state.upnp else {
        return Err((
            StatusCode::NOT_FOUND,
            "the UPnP / NAT-PMP service is off".into(),
        ));
    };
    if upnp.admin_delete(protocol, port) {
        info!("control: admin deleted mapping {proto}/{port}");
        Ok(())
    } else {
        Err((StatusCode::NOT_FOUND, format!("no mapping {proto}/{port}")))
    }
}

/// The admin page's data: the status plus a sessions summary by protocol and state.
fn admin_json(state: &ControlState) -> Value {
    let status = status_json(state);
    let summary = sessions::summary(&state.nat);
    json!({ "status": status, "sessions_summary": summary })
}

fn html_resp(status: StatusCode, body: String) -> Resp {
    Response::builder()
        .status(status)
        .header(
            CONTENT_TYPE,
            HeaderValue::from_static("text/html; charset=utf-8"),
        )
        .body(Full::new(Bytes::from(body)))
        .unwrap_or_else(|_| error(StatusCode::INTERNAL_SERVER_ERROR, "response"))
}

fn status_json(state: &ControlState) -> Value {
    // Before the NAT lock: the service locks its table, then the NAT.
    let upnp = state
        .upnp
        .as_ref()
        .map(|u| json!({ "stats": u.stats(), "mappings": u.mappings() }));
    let dhcp = state
        .dhcp
        .as_ref()
        .map(|d| json!({ "stats": d.stats(), "leases": d.leases() }));
    let now = Instant::now();
    let info = &state.info;
    let nat = lock(&state.nat);
    let b = nat.behaviour().clone();
    let c = nat.counters();
    let drops: serde_json::Map<String, Value> = DropReason::ALL
        .iter()
        .map(|r| (r.name().to_string(), json!(c.drop_count(*r))))
        .collect();
    let forwards: Vec<Value> = nat.forwards().map(|f| forward_json(f, now)).collect();
    let shell = state.shell.snapshot();
    json!({
        "wan": { "interface": info.wan_iface, "address": nat.wan_addr().to_string() },
        "lan": {
            "interface": info.lan_iface,
            "address": info.lan_addr.to_string(),
            "prefix": info.lan_prefix,
        },
        "tun": info.tun,
        "uptime_seconds": now.duration_since(info.started).as_secs(),
        "preset": state.preset_name(&b),
        "behaviour": behaviour_json(&b),
        "port_range": { "low": info.port_range.start(), "high": info.port_range.end() },
        "counters": {
            "packets_out": c.packets_out,
            "bytes_out": c.bytes_out,
            "packets_in": c.packets_in,
            "bytes_in": c.bytes_in,
            "packets_hairpin": c.packets_hairpin,
            "sessions_created": c.sessions_created,
            "sessions_expired": c.sessions_expired,
            "fragments_held": c.fragments_held,
            "drops_total": c.drops_total(),
            "drops": drops,
            "tun_rx": shell.tun_rx,
            "tun_tx": shell.tun_tx,
            "tun_tx_errors": shell.tun_tx_errors,
        },
        "sessions": nat.session_count(),
        "forwards": forwards,
        "upnp": upnp,
        "dhcp": dhcp,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nat::{FilteringBehaviour, NatConfig};

    mod cross_site;

    #[derive(Debug, Default)]
    struct FakeWan {
        nat: Mutex<Option<Arc<Mutex<Nat>>>>,
    }

    impl WanControl for FakeWan {
        fn set_wan(&self, addr: Ipv4Addr, _len: u8) -> anyhow::Result<()> {
            if let Some(nat) = &*self.nat.lock().unwrap() {
                lock(nat).set_wan_addr(addr);
            }
            Ok(())
        }
    }

    fn state() -> ControlState {
        let nat = Arc::new(Mutex::new(Nat::new(
            NatConfig {
                wan_addr: Ipv4Addr::new(203, 0, 113, 2),
                lan_addr: Ipv4Addr::new(192, 168, 1, 1),
                lan_prefix: 24,
                behaviour: Behaviour::default(),
                port_range: 1024..=65535,
                ttl_compensation: true,
            },
            7,
        )));
        let wan = FakeWan::default();
        *wan.nat.lock().unwrap() = Some(nat.clone());
        ControlState {
            upnp: None,
            dhcp: None,
            nat,
            wan: Arc::new(wan),
            shell: Arc::new(ShellStats::default()),
            info: RouterInfo {
                wan_iface: "wan0".into(),
                lan_iface: "lan0".into(),
                lan_addr: Ipv4Addr::new(192, 168, 1, 1),
                lan_prefix: 24,
                tun: "tun0".into(),
                port_range: 1024..=65535,
                started: Instant::now(),
            },
            chosen_preset: Mutex::new(None),
            access: Access::new(
                &Default::default(),
                "192.168.1.1:80".parse().unwrap(),
                Ipv4Addr::new(192, 168, 1, 1),
            ),
        }
    }

    /// A request as `curl` sends it to http://192.168.1.1 (JSON for changes).
    async fn call(s: &ControlState, method: &str, path: &str, body: &str) -> (StatusCode, String) {
        let json = [("content-type", "application/json")];
        let fields: &[(&str, &str)] = if method == "POST" { &json } else { &[] };
        call_with(s, method, path, fields, body).await
    }

    async fn call_with(
        s: &ControlState,
        method: &str,
        path: &str,
        fields: &[(&str, &str)],
        body: &str,
    ) -> (StatusCode, String) {
        let mut req = Request::builder()
            .method(method)
            .uri(path)
            .header("host", "192.168.1.1");
        for (k, v) in fields {
            req = req.header(*k, *v);
        }
        let req = req.body(Full::new(Bytes::from(body.to_string()))).unwrap();
        let resp = handle(s, req).await;
        let status = resp.status();
        let bytes = resp.into_body().collect().await.unwrap().to_bytes();
        (status, String::from_utf8(bytes.to_vec()).unwrap())
    }

    fn rt() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
    }

    #[test]
    fn status_and_metrics() {
        rt().block_on(async {
            let s = state();
            let (code, body) = call(&s, "GET", "/api/status", "").await;
            assert_eq!(code, StatusCode::OK);
            let v: Value = serde_json::from_str(&body).unwrap();
            assert_eq!(v["wan"]["address"], "203.0.113.2");
            assert_eq!(v["preset"], "home");
            assert_eq!(v["behaviour"]["timeouts"]["udp"], 120);
            assert_eq!(v["port_range"]["low"], 1024);
            assert!(v["counters"]["drops"].is_object());
            let (code, body) = call(&s, "GET", "/metrics", "").await;
            assert_eq!(code, StatusCode::OK);
            assert!(body.contains("# TYPE router_packets_total counter"));
            let (code, body) = call(&s, "GET", "/api/sessions", "").await;
            assert_eq!((code, body.trim()), (StatusCode::OK, "[]"));
        });
    }

    #[test]
    fn preset_and_behaviour() {
        rt().block_on(async {
            let s = state();
            let (code, body) = call(&s, "POST", "/api/preset", "symmetric\n").await;
            assert_eq!(code, StatusCode::OK, "{body}");
            assert_eq!(*lock(&s.nat).behaviour(), Preset::Symmetric.behaviour());
            let (_, body) = call(&s, "POST", "/api/preset", "\"port-restricted\"").await;
            assert!(body.contains("\"preset\": \"port-restricted\""), "{body}");
            let (_, body) = call(&s, "GET", "/api/status", "").await;
            assert!(body.contains("\"preset\": \"port-restricted\""), "{body}");
            let (code, body) = call(&s, "POST", "/api/preset", "cone").await;
            assert_eq!(code, StatusCode::BAD_REQUEST);
            assert!(
                body.contains("\"error\"") && body.contains("symmetric"),
                "{body}"
            );

            let (code, body) = call(
                &s,
                "POST",
                "/api/behaviour",
                r#"{"filtering":"endpoint-independent","timeouts":{"udp":30}}"#,
            )
            .await;
            assert_eq!(code, StatusCode::OK, "{body}");
            let b = lock(&s.nat).behaviour().clone();
            assert_eq!(b.filtering, FilteringBehaviour::EndpointIndependent);
            assert_eq!(b.timeouts.udp, Duration::from_secs(30));

            for bad in [
                r#"{"timeouts":{"udp":-5}}"#,
                r#"{"mapping":"cone"}"#,
                r#"{"colour":1}"#,
                "not json",
                "",
            ] {
                let (code, body) = call(&s, "POST", "/api/behaviour", bad).await;
                assert_eq!(code, StatusCode::BAD_REQUEST, "{bad}: {body}");
                let v: Value = serde_json::from_str(&body).unwrap();
                assert!(v["error"].is_string(), "{body}");
            }
            let (_, body) = call(&s, "POST", "/api/behaviour", r#"{"timeouts":{"udp":-5}}"#).await;
            assert!(body.contains("timeouts.udp"), "{body}");
        });
    }

    #[test]
    fn forwards_add_list_delete() {
        rt().block_on(async {
            let s = state();
            let fwd = r#"{"protocol":"tcp","external_port":8080,"internal_addr":"192.168.1.101","internal_port":80,"description":"cam"}"#;
            let (code, body) = call(&s, "POST", "/api/forwards", fwd).await;
            assert_eq!(code, StatusCode::CREATED, "{body}");
            // The same forward again renews it; another target for the port conflicts.
            let (code, _) = call(&s, "POST", "/api/forwards", fwd).await;
            assert_eq!(code, StatusCode::CREATED);
            let other = fwd.replace("192.168.1.101", "192.168.1.102");
            let (code, body) = call(&s, "POST", "/api/forwards", &other).await;
            assert_eq!(code, StatusCode::CONFLICT, "{body}");
            let outside = fwd.replace("192.168.1.101", "10.0.0.1");
            let (code, body) = call(&s, "POST", "/api/forwards", &outside).await;
            assert_eq!(code, StatusCode::BAD_REQUEST, "{body}");
            let (_, body) = call(&s, "GET", "/api/forwards", "").await;
            let v: Value = serde_json::from_str(&body).unwrap();
            assert_eq!(v[0]["internal_port"], 80);
            assert_eq!(v[0]["description"], "cam");
            let (code, _) = call(&s, "DELETE", "/api/forwards/tcp/8080", "").await;
            assert_eq!(code, StatusCode::OK);
            let (code, _) = call(&s, "DELETE", "/api/forwards/tcp/8080", "").await;
            assert_eq!(code, StatusCode::NOT_FOUND);
            let (code, _) = call(&s, "DELETE", "/api/forwards/sctp/1", "").await;
            assert_eq!(code, StatusCode::BAD_REQUEST);
            let (code, _) = call(&s, "DELETE", "/api/forwards/udp/99999", "").await;
            assert_eq!(code, StatusCode::BAD_REQUEST);
            let (code, body) = call(
                &s,
                "POST",
                "/api/forwards",
                r#"{"protocol":"tcp","external_port":0,"internal_addr":"192.168.1.101"}"#,
            )
            .await;
            assert_eq!(code, StatusCode::BAD_REQUEST);
            assert!(body.contains("external_port"), "{body}");
        });
    }

    #[test]
    fn dhcp_leases_endpoint() {
        rt().block_on(async {
            let mut s = state();
            let (code, body) = call(&s, "GET", "/api/dhcp/leases", "").await;
            assert_eq!(code, StatusCode::NOT_FOUND, "{body}");
            let mut cfg = crate::dhcp::DhcpConfig::new(
                "lo",
                crate::dhcp::ServerConfig::new(Ipv4Addr::new(192, 168, 1, 1), 24),
            );
            cfg.iface = None;
            cfg.bind = std::net::SocketAddrV4::new(Ipv4Addr::LOCALHOST, 0);
            let svc =
                crate::dhcp::DhcpService::bind(cfg, Arc::new(crate::upnp::ManualClock::new()))
                    .await
                    .unwrap();
            s.dhcp = Some(svc.handle());
            let (code, body) = call(&s, "GET", "/api/dhcp/leases", "").await;
            assert_eq!((code, body.trim()), (StatusCode::OK, "[]"));
            let (code, _) = call(&s, "POST", "/api/dhcp/leases", "").await;
            assert_eq!(code, StatusCode::METHOD_NOT_ALLOWED);
            let (_, body) = call(&s, "GET", "/api/status", "").await;
            let v: Value = serde_json::from_str(&body).unwrap();
            assert_eq!(v["dhcp"]["stats"]["pool_start"], "192.168.1.100");
            assert_eq!(v["dhcp"]["stats"]["dropped_total"], 0);
            let (code, body) = call(&s, "GET", "/metrics", "").await;
            assert_eq!(code, StatusCode::OK);
            assert!(body.contains("router_dhcp_leases_bound 0\n"), "{body}");
        });
    }

    #[test]
    fn wan_flush_and_errors() {
        rt().block_on(async {
            let s = state();
            let (code, body) = call(&s, "POST", "/api/wan", "203.0.113.7/24").await;
            assert_eq!(code, StatusCode::OK, "{body}");
            assert_eq!(lock(&s.nat).wan_addr(), Ipv4Addr::new(203, 0, 113, 7));
            for bad in [
                "203.0.113.7",
                "x/24",
                "0.0.0.0/8",
                "192.168.1.5/24",
                "1.2.3.4/33",
            ] {
                let (code, _) = call(&s, "POST", "/api/wan", bad).await;
                assert_eq!(code, StatusCode::BAD_REQUEST, "{bad}");
            }
            let (code, body) = call(&s, "POST", "/api/flush", "").await;
            assert_eq!(code, StatusCode::OK);
            assert!(body.contains("\"flushed\": 0"), "{body}");
            let (code, _) = call(&s, "GET", "/api/flush", "").await;
            assert_eq!(code, StatusCode::METHOD_NOT_ALLOWED);
            let (code, _) = call(&s, "GET", "/nope", "").await;
            assert_eq!(code, StatusCode::NOT_FOUND);
            let big = "x".repeat(MAX_BODY + 1);
            let (code, _) = call(&s, "POST", "/api/preset", &big).await;
            assert_eq!(code, StatusCode::PAYLOAD_TOO_LARGE);
            let (code, _) = call(&s, "POST", "/api/preset", "\u{0}\u{ffff}").await;
            assert_eq!(code, StatusCode::BAD_REQUEST);
        });
    }
}
