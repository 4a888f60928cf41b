//! Who may use the control API and the admin page ([`crate::control`]), and the `[admin]`
//! section that configures it.
//!
//! Any web page a LAN user opens runs in a browser on the LAN, so "reachable only from the
//! LAN" is not enough. Checked on every request, before the body is read:
//!
//! 1. `Host` is one of the router's addresses or a name in `[admin] hosts` (else 421): a page
//!    of an attacker's name rebound to 192.168.1.1 (DNS rebinding) reads nothing.
//! 2. With `[admin] password` set: HTTP Basic credentials with that password (RFC 7617; any user
//!    name), else 401 with a challenge, so the browser asks. After [`MAX_FAILURES`] wrong
//!    passwords from one address within [`FAILURE_WINDOW`], that address gets 429 until the
//!    window ends, so guessing runs at a few passwords a minute.
//! 3. State changes (any method but GET and HEAD): no foreign `Origin` and no
//!    `Sec-Fetch-Site: cross-site` (else 403), and a body a cross-site page cannot send
//!    without a CORS preflight, which this server never grants (Fetch §4.8): POSTs to `/api/`
//!    need `Content-Type: application/json` (else 415); the admin page's forms carry a token
//!    ([`Access::csrf_token`], from the OS random source) that a page elsewhere cannot read
//!    (else 403).

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use hyper::header::{AUTHORIZATION, CONTENT_TYPE, HOST, HeaderMap, ORIGIN};
use hyper::{Method, StatusCode};
use rand::{TryRngCore, rngs::OsRng};
use serde::Deserialize;

use crate::httpguard::{self, ConnLimiter};

/// Connections the control API serves at once, by default.
pub const MAX_CONNECTIONS: usize = 256;
/// Connections one client address may hold open, by default: a browser opens up to 6 per
/// host, a few tabs and a `curl` loop fit.
pub const MAX_CONNECTIONS_PER_CLIENT: usize = 32;

/// Wrong passwords one address may send within [`FAILURE_WINDOW`].
pub const MAX_FAILURES: u32 = 10;
/// The window of [`MAX_FAILURES`], from the first failure in it.
pub const FAILURE_WINDOW: Duration = Duration::from_secs(60);
/// Addresses whose failures are remembered at once.
const MAX_TRACKED: usize = 4096;

/// `[admin]`: access to the control API and the admin page. Its `Debug` (and so
/// `--print-config`) shows whether a password is set, not the password.
#[derive(Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdminSection {
    /// When set, the page and the API ask for it (HTTP Basic, any user name).
    pub password: Option<String>,
    /// Host names or addresses (besides the router's LAN address) the page may be opened by,
    /// e.g. a name
    /// the LAN's DNS gives the router.
    pub hosts: Option<Vec<String>>,
    /// Connections served at once (default [`MAX_CONNECTIONS`]).
    pub max_connections: Option<usize>,
    /// Connections one LAN host may hold (default [`MAX_CONNECTIONS_PER_CLIENT`]).
    pub max_connections_per_client: Option<usize>,
}

impl std::fmt::Debug for AdminSection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AdminSection")
            .field("password", &self.password.as_ref().map(|_| "(set)"))
            .field("hosts", &self.hosts)
            .field("max_connections", &self.max_connections)
            .field(
                "max_connections_per_client",
                &self.max_connections_per_client,
            )
            .finish()
    }
}

impl AdminSection {
    /// Checks the values; errors are (field, problem, fix).
    pub fn validate(&self) -> Result<(), (&'static str, String, String)> {
        if let Some(p) = &self.password
            && (p.is_empty() || p.chars().any(char::is_control))
        {
            return Err((
                "password",
                "is empty or has control characters".into(),
                "set a printable password, or remove the line to leave the page open to the LAN"
                    .into(),
            ));
        }
        for h in self.hosts.iter().flatten() {
            let ok = httpguard::host_of(h.as_bytes()).is_some_and(|v| v == h.to_ascii_lowercase());
            if !ok && h.parse::<IpAddr>().is_err() {
                return Err((
                    "hosts",
                    format!("{h:?} is not a host name"),
                    "list names or addresses without scheme or port, e.g. hosts = [\"router.lan\"]"
                        .into(),
                ));
            }
        }
        for (field, v) in [
            ("max_connections", self.max_connections),
            (
                "max_connections_per_client",
                self.max_connections_per_client,
            ),
        ] {
            if v == Some(0) {
                return Err((field, "is 0".into(), "set at least 1, or remove it".into()));
            }
        }
        Ok(())
    }
}

/// The checks of one control server.
pub struct Access {
    addrs: Vec<IpAddr>,
    names: Vec<String>,
    password: Option<String>,
    csrf: String,
    /// Wrong passwords by address: (start of the window, count).
    failures: Mutex<HashMap<IpAddr, (Instant, u32)>>,
    /// Connection caps of the server.
    pub conns: std::sync::Arc<ConnLimiter>,
}

impl std::fmt::Debug for Access {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Access")
            .field("addrs", &self.addrs)
            .field("names", &self.names)
            .field("password", &self.password.as_ref().map(|_| "(set)"))
            .field("conns", &self.conns)
            .finish_non_exhaustive()
    }
}

/// A refused request: status and message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub status: StatusCode,
    pub message: String,
}

impl Access {
    /// For a server bound to `listen` on a LAN whose router address is `lan`.
    pub fn new(admin: &AdminSection, listen: SocketAddr, lan: Ipv4Addr) -> Access {
        let mut token = [0u8; 16];
        // OsRng fails only without getrandom(2) and /dev/urandom, where no router runs.
        OsRng.unwrap_err().try_fill_bytes(&mut token).ok();
        let hosts = admin.hosts.clone().unwrap_or_default();
        Access {
            addrs: httpguard::own_addrs(listen.ip(), lan)
                .into_iter()
                .chain(hosts.iter().filter_map(|h| h.parse::<IpAddr>().ok()))
                .collect(),
            names: hosts
                .iter()
                .filter(|h| h.parse::<IpAddr>().is_err())
                .cloned()
                .collect(),
            password: admin.password.clone(),
            csrf: token.iter().map(|b| format!("{b:02x}")).collect(),
            failures: Mutex::new(HashMap::new()),
            conns: ConnLimiter::new(
                admin.max_connections.unwrap_or(MAX_CONNECTIONS),
                admin
                    .max_connections_per_client
                    .unwrap_or(MAX_CONNECTIONS_PER_CLIENT),
            ),
        }
    }

    /// The token the admin page's forms carry (`csrf` field).
    pub fn csrf_token(&self) -> &str {
        &self.csrf
    }

    /// Whether a form's `csrf` field is this server's token.
    pub fn csrf_ok(&self, token: Option<&str>) -> bool {
        token.is_some_and(|t| constant_time_eq(t.as_bytes(), self.csrf.as_bytes()))
    }

    /// The checks 1-3 of the module docs that need only the head; `client` is the peer's
    /// address (for the count of wrong passwords) when known.
    pub fn check(
        &self,
        now: Instant,
        client: Option<IpAddr>,
        method: &Method,
        path: &str,
        headers: &HeaderMap,
    ) -> Result<(), Refusal> {
        let refuse = |status, message: String| Err(Refusal { status, message });
        let host = headers.get(HOST).map(|v| v.as_bytes());
        if !httpguard::host_allowed(host, &self.addrs, &self.names) {
            let shown = host.map(String::from_utf8_lossy).unwrap_or_default();
            return refuse(
                StatusCode::MISDIRECTED_REQUEST,
                format!(
                    "Host {shown:?} is not this router: open http://{}/ (or add the name to \
                     [admin] hosts)",
                    self.addrs[0]
                ),
            );
        }
        if let Some(want) = &self.password {
            if let Some(wait) = client.and_then(|c| self.locked_out(now, c)) {
                return refuse(
                    StatusCode::TOO_MANY_REQUESTS,
                    format!(
                        "too many wrong passwords from this address; try again in {} s",
                        wait.as_secs().max(1)
                    ),
                );
            }
            let given = headers
                .get(AUTHORIZATION)
                .and_then(|v| v.to_str().ok())
                .and_then(basic_password);
            if !given
                .as_ref()
                .is_some_and(|p| constant_time_eq(p.as_bytes(), want.as_bytes()))
            {
                // A request without credentials is the browser asking what to do, not a guess.
                if let (Some(c), Some(_)) = (client, &given) {
                    self.failed(now, c);
                }
                return refuse(
                    StatusCode::UNAUTHORIZED,
                    "this router's page and API need its password ([admin] password; HTTP \
                     Basic, any user name)"
                        .into(),
                );
            }
        }
        if matches!(*method, Method::GET | Method::HEAD) {
            return Ok(());
        }
        if let Some(origin) = headers.get(ORIGIN)
            && !httpguard::origin_allowed(origin.as_bytes(), &self.addrs, &self.names)
        {
            return refuse(
                StatusCode::FORBIDDEN,
                format!(
                    "cross-site request refused: Origin {:?} is not this router",
                    String::from_utf8_lossy(origin.as_bytes())
                ),
            );
        }
        if headers
            .get("sec-fetch-site")
            .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"cross-site"))
        {
            return refuse(
                StatusCode::FORBIDDEN,
                "cross-site request refused (Sec-Fetch-Site: cross-site)".into(),
            );
        }
        if *method == Method::POST && path.starts_with("/api/") && !is_json(headers) {
            return refuse(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                format!(
                    "changes need Content-Type: application/json, e.g. curl -H 'Content-Type: \
                     application/json' -d '\"symmetric\"' http://{}/api/preset",
                    self.addrs[0]
                ),
            );
        }
        Ok(())
    }

    /// How long `client` must still wait, if it is locked out.
    fn locked_out(&self, now: Instant, client: IpAddr) -> Option<Duration> {
        let failures = self.failures.lock().unwrap_or_else(PoisonError::into_inner);
        let (start, n) = *failures.get(&client)?;
        let end = start + FAILURE_WINDOW;
        (n >= MAX_FAILURES && now < end).then(|| end - now)
    }

    fn failed(&self, now: Instant, client: IpAddr) {
        let mut failures = self.failures.lock().unwrap_or_else(PoisonError::into_inner);
        if failures.len() >= MAX_TRACKED {
            failures.retain(|_, (start, _)| now < *start + FAILURE_WINDOW);
        }
        let e = failures.entry(client).or_insert((now, 0));
        if now >= e.0 + FAILURE_WINDOW {
            *e = (now, 0);
        }
        e.1 += 1;
    }

    /// The `WWW-Authenticate` challenge for a 401 (RFC 7617 §2).
    pub const CHALLENGE: &'static str = "Basic realm=\"homenet router\", charset=\"UTF-8\"";
}

/// `application/json`, parameters allowed.
fn is_json(headers: &HeaderMap) -> bool {
    let ct = headers.get(CONTENT_TYPE).map(|v| v.as_bytes());
    httpguard::media_type_is(ct, "application/json")
}

/// The password of `Authorization: Basic base64(user:password)` (RFC 7617 §2).
fn basic_password(header: &str) -> Option<String> {
    let (scheme, b64) = header.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let text = String::from_utf8(base64(b64.trim())?).ok()?;
    text.split_once(':').map(|(_, p)| p.to_string())
}

/// RFC 4648 §4 base64, padding optional.
fn base64(text: &str) -> Option<Vec<u8>> {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut bits = 0u32;
    let mut n = 0;
    let mut out = Vec::new();
    for c in text.trim_end_matches('=').bytes() {
        let v = ALPHABET.iter().position(|a| *a == c)? as u32;
        bits = (bits << 6) | v;
        n += 6;
        if n >= 8 {
            n -= 8;
            out.push((bits >> n) as u8);
            bits &= (1 << n) - 1;
        }
    }
    Some(out)
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn access(password: Option<&str>) -> Access {
        Access::new(
            &AdminSection {
                password: password.map(str::to_string),
                hosts: Some(vec!["router.lan".into(), "10.0.0.1".into()]),
                ..Default::default()
            },
            "192.168.1.1:80".parse().unwrap(),
            Ipv4Addr::new(192, 168, 1, 1),
        )
    }

    fn headers(fields: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in fields {
            h.insert(*k, v.parse().unwrap());
        }
        h
    }

    fn status(a: &Access, m: Method, path: &str, f: &[(&'static str, &str)]) -> u16 {
        match a.check(Instant::now(), None, &m, path, &headers(f)) {
            Ok(()) => 200,
            Err(r) => r.status.as_u16(),
        }
    }

    #[test]
    fn hosts_origins_and_content_types() {
        let a = access(None);
        let host = ("host", "192.168.1.1");
        let json = ("content-type", "application/json; charset=utf-8");
        assert_eq!(status(&a, Method::GET, "/api/status", &[host]), 200);
        assert_eq!(status(&a, Method::GET, "/", &[("host", "router.lan")]), 200);
        assert_eq!(
            status(&a, Method::GET, "/", &[("host", "10.0.0.1:8080")]),
            200
        );
        assert_eq!(status(&a, Method::GET, "/api/status", &[]), 421);
        let rebound = ("host", "rebind.example:80");
        assert_eq!(status(&a, Method::GET, "/api/sessions", &[rebound]), 421);
        assert_eq!(status(&a, Method::POST, "/api/flush", &[host, json]), 200);
        assert_eq!(status(&a, Method::POST, "/api/flush", &[host]), 415);
        let form = ("content-type", "application/x-www-form-urlencoded");
        assert_eq!(status(&a, Method::POST, "/api/preset", &[host, form]), 415);
        let text = ("content-type", "text/plain");
        assert_eq!(status(&a, Method::POST, "/api/wan", &[host, text]), 415);
        let evil = ("origin", "http://203.0.113.9:8000");
        assert_eq!(
            status(&a, Method::POST, "/api/flush", &[host, json, evil]),
            403
        );
        assert_eq!(
            status(&a, Method::DELETE, "/api/forwards/tcp/1", &[host, evil]),
            403
        );
        let null = ("origin", "null");
        assert_eq!(
            status(&a, Method::POST, "/admin/mappings/delete", &[host, null]),
            403
        );
        let own = ("origin", "http://192.168.1.1");
        assert_eq!(
            status(&a, Method::POST, "/api/flush", &[host, json, own]),
            200
        );
        // Forms are checked by their token, after the body is read.
        assert_eq!(
            status(&a, Method::POST, "/admin/mappings/delete", &[host, own]),
            200
        );
        let xsite = ("sec-fetch-site", "cross-site");
        assert_eq!(
            status(&a, Method::POST, "/api/flush", &[host, json, xsite]),
            403
        );
        // Reads from another origin are the browser's to refuse (no CORS headers here).
        assert_eq!(status(&a, Method::GET, "/api/status", &[host, evil]), 200);
        assert!(a.csrf_ok(Some(a.csrf_token())));
        assert_eq!(a.csrf_token().len(), 32);
        assert!(!a.csrf_ok(Some("")) && !a.csrf_ok(None));
        assert_ne!(a.csrf_token(), access(None).csrf_token());
    }

    #[test]
    fn password() {
        let a = access(Some("s3cret"));
        let host = ("host", "192.168.1.1");
        assert_eq!(status(&a, Method::GET, "/", &[host]), 401);
        // admin:s3cret, x:s3cret, admin:wrong
        let good = ("authorization", "Basic YWRtaW46czNjcmV0");
        assert_eq!(status(&a, Method::GET, "/", &[host, good]), 200);
        assert_eq!(
            status(
                &a,
                Method::GET,
                "/",
                &[host, ("authorization", "basic eDpzM2NyZXQ=")]
            ),
            200
        );
        assert_eq!(
            status(
                &a,
                Method::GET,
                "/",
                &[host, ("authorization", "Basic YWRtaW46d3Jvbmc=")]
            ),
            401
        );
        assert_eq!(
            status(
                &a,
                Method::GET,
                "/",
                &[host, ("authorization", "Bearer s3cret")]
            ),
            401
        );
        assert_eq!(
            status(
                &a,
                Method::GET,
                "/",
                &[host, ("authorization", "Basic !!!")]
            ),
            401
        );
        // The Host check comes first: a rebound page learns nothing, not even that a
        // password is set.
        assert_eq!(
            status(&a, Method::GET, "/", &[("host", "x.example"), good]),
            421
        );
    }

    #[test]
    fn wrong_passwords_lock_the_address_out_for_a_while() {
        let a = access(Some("s3cret"));
        let t0 = Instant::now();
        let me: IpAddr = "192.168.1.50".parse().unwrap();
        let other: IpAddr = "192.168.1.51".parse().unwrap();
        let h = |auth: &str| headers(&[("host", "192.168.1.1"), ("authorization", auth)]);
        let code = |t, c, auth: &str| match a.check(t, Some(c), &Method::GET, "/", &h(auth)) {
            Ok(()) => 200,
            Err(r) => r.status.as_u16(),
        };
        // admin:wrong, admin:s3cret
        let (wrong, good) = ("Basic YWRtaW46d3Jvbmc=", "Basic YWRtaW46czNjcmV0");
        // Asking without credentials (the browser's first request) counts for nothing.
        for _ in 0..50 {
            let r = a.check(
                t0,
                Some(me),
                &Method::GET,
                "/",
                &headers(&[("host", "192.168.1.1")]),
            );
            assert_eq!(r.unwrap_err().status, StatusCode::UNAUTHORIZED);
        }
        for _ in 0..MAX_FAILURES {
            assert_eq!(code(t0, me, wrong), 401);
        }
        assert_eq!(code(t0, me, good), 429);
        assert_eq!(code(t0, other, good), 200);
        let later = t0 + FAILURE_WINDOW;
        assert_eq!(code(later, me, good), 200);
        assert_eq!(code(later, me, wrong), 401);
    }

    #[test]
    fn config_values() {
        let ok = AdminSection {
            password: Some("pw".into()),
            hosts: Some(vec!["router.lan".into()]),
            max_connections: Some(10),
            max_connections_per_client: Some(2),
        };
        assert!(ok.validate().is_ok());
        for (bad, field) in [
            (
                AdminSection {
                    password: Some(String::new()),
                    ..Default::default()
                },
                "password",
            ),
            (
                AdminSection {
                    hosts: Some(vec!["http://x".into()]),
                    ..Default::default()
                },
                "hosts",
            ),
            (
                AdminSection {
                    hosts: Some(vec!["x:80".into()]),
                    ..Default::default()
                },
                "hosts",
            ),
            (
                AdminSection {
                    max_connections: Some(0),
                    ..Default::default()
                },
                "max_connections",
            ),
        ] {
            assert_eq!(bad.validate().unwrap_err().0, field, "{bad:?}");
        }
        assert!(!format!("{ok:?}").contains("pw\""), "{ok:?}");
        assert!(!format!("{:?}", access(Some("s3cret"))).contains("s3cret"));
    }
}
