//! A network camera: `--source http://HOST/PATH` (or `https://`), an MJPEG stream
//! (`multipart/x-mixed-replace`, as mjpg-streamer, ustreamer, IP Webcam apps, most IP cameras and
//! camnode itself serve it) or a snapshot URL (`image/jpeg`), told apart by the answer's
//! Content-Type.
//!
//! - Frames pass through as the camera encoded them; the hub re-encodes only for digital
//!   pan/tilt/zoom.
//! - Only while someone watches (see [`super::feed`]): the connection opens on the first frame
//!   asked for and closes [`super::feed::LINGER`] after the last; a snapshot URL is polled at the
//!   node's frame rate, reusing the connection when the camera keeps it alive.
//! - Credentials come from the URL (`http://user:password@host/...`, percent-encoded), which the
//!   config file can hold; the first request goes without them and the camera's 401 challenge
//!   picks Basic or Digest ([`super::http_auth`]), so a password never goes out in clear text to
//!   a camera that asks for Digest. Logs and the status page show the URL without the password.
//! - `https`: rustls with the system's trusted certificates (`SSL_CERT_FILE` / `SSL_CERT_DIR`
//!   are honoured, so a camera's self-signed certificate can be trusted by pointing there).
//! - Failures (refused, timeouts, HTTP errors, a stalled or malformed stream) show on the
//!   "no signal" picture and in the status; the next attempt follows a back-off of 0.5 s doubling
//!   to 10 s, reset by a session that delivered a picture.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use bytes::{Bytes, BytesMut};
use http_body_util::{BodyExt as _, Empty};
use hyper::body::Incoming;
use hyper::client::conn::http1::SendRequest;
use hyper::header::{ACCEPT, AUTHORIZATION, CONTENT_LENGTH, CONTENT_TYPE, HOST, USER_AGENT};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use url::{Host, Position, Url};

use super::feed::{Backoff, Chunks, Feed, FeedWriter, pump};
use super::http_auth::{self, Challenge, Credentials};
use super::multipart::boundary_of;

/// Connecting (TCP and TLS) and waiting for the answer's head.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// The largest snapshot accepted.
const MAX_SNAPSHOT: usize = 8 << 20;

/// Where to fetch from.
#[derive(Debug)]
struct Target {
    url: Url,
    /// The URL as shown (no password).
    shown: String,
    connect_host: String,
    port: u16,
    host_header: String,
    path: String,
    creds: Option<Credentials>,
    tls: Option<Arc<rustls::ClientConfig>>,
    period: Duration,
}

/// Open a network camera source for `spec` (an http or https URL). Checks the URL and, for https,
/// the trusted certificates now; the camera itself may be down (it is retried).
pub fn open(spec: &str, fps: u32, width: u32, height: u32) -> anyhow::Result<Feed> {
    let target = Arc::new(target(spec, fps)?);
    let name = target.shown.clone();
    let feed = Feed::start("camnode-http", name, width, height, move |feed| {
        produce(target, feed)
    })?;
    Ok(feed)
}

fn target(spec: &str, fps: u32) -> anyhow::Result<Target> {
    let url = Url::parse(spec).with_context(|| format!("{spec:?} is not a URL"))?;
    let tls = match url.scheme() {
        "http" => None,
        "https" => Some(tls_config()?),
        other => bail!("scheme {other:?}: use http:// or https://"),
    };
    let connect_host = match url.host() {
        Some(Host::Domain(d)) => d.to_owned(),
        Some(Host::Ipv4(a)) => a.to_string(),
        Some(Host::Ipv6(a)) => a.to_string(),
        None => bail!("{spec:?} has no host"),
    };
    let port = url.port_or_known_default().unwrap_or(80);
    let host_header = match url.port() {
        Some(p) => format!("{}:{p}", url.host_str().unwrap_or_default()),
        None => url.host_str().unwrap_or_default().to_owned(),
    };
    let decode = |s: &str| {
        percent_decode(s).with_context(|| "the user name or password is not valid percent-encoding")
    };
    let creds = if url.username().is_empty() && url.password().is_none() {
        None
    } else {
        Some(Credentials {
            user: decode(url.username())?,
            password: decode(url.password().unwrap_or(""))?,
        })
    };
    let mut shown_url = url.clone();
    if url.password().is_some() {
        let _ = shown_url.set_password(Some("***"));
    }
    Ok(Target {
        path: url[Position::BeforePath..Position::AfterQuery].to_owned(),
        shown: shown_url.to_string(),
        url,
        connect_host,
        port,
        host_header,
        creds,
        tls,
        period: Duration::from_secs_f64(1.0 / f64::from(fps.max(1))),
    })
}

/// `%XX` escapes in the URL's user information (RFC 3986 §2.1), as UTF-8; a `%` not followed
/// by two hex digits stays as it is, as browsers keep it.
fn percent_decode(s: &str) -> Option<String> {
    let decoded = percent_encoding::percent_decode_str(s).decode_utf8().ok()?;
    Some(decoded.into_owned())
}

fn tls_config() -> anyhow::Result<Arc<rustls::ClientConfig>> {
    let mut roots = rustls::RootCertStore::empty();
    let found = rustls_native_certs::load_native_certs();
    for cert in found.certs {
        let _ = roots.add(cert);
    }
    if roots.is_empty() {
        bail!(
            "no trusted certificates found for https ({}); install ca-certificates, or point \
             SSL_CERT_FILE at the camera's certificate",
            found
                .errors
                .first()
                .map_or_else(|| "none in the system store".into(), ToString::to_string)
        );
    }
    // ring builds with cc alone; its lack of post-quantum key exchange (the deprecation) does
    // not matter for a camera's pictures.
    #[allow(deprecated)]
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("TLS setup")?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

/// Why a session with the camera ended.
#[derive(Debug, thiserror::Error)]
enum FetchError {
    #[error("cannot connect to {0}: {1}")]
    Connect(String, std::io::Error),
    #[error("TLS with {0}: {1}")]
    Tls(String, std::io::Error),
    #[error("{0} did not answer within {1} s")]
    Timeout(String, u64),
    #[error("HTTP: {0}")]
    Http(#[from] hyper::Error),
    #[error(
        "the camera needs a user name and password (401); put them in the URL: http://user:password@host/..."
    )]
    NeedsCredentials,
    #[error("the camera refused the user name and password (401)")]
    Refused,
    #[error("the camera asks for an authentication we do not speak ({0})")]
    UnknownAuth(String),
    #[error("the camera answered {0}")]
    Status(StatusCode),
    #[error("the camera answered {0}, redirecting to {1:?}: use that URL as the source")]
    Redirect(StatusCode, String),
    #[error("the camera sent {0:?}, not multipart/x-mixed-replace (MJPEG) or image/jpeg")]
    ContentType(String),
    #[error("the snapshot is larger than {} bytes", MAX_SNAPSHOT)]
    TooLarge,
    #[error("the snapshot is not a JPEG")]
    NotJpeg,
    #[error("{0}")]
    Stream(String),
}

/// The challenge answered last, reused (Digest with a growing nonce count) until refused.
#[derive(Debug, Default)]
struct Auth {
    challenge: Option<Challenge>,
    nc: u32,
}

impl Auth {
    fn header(&mut self, t: &Target) -> Option<String> {
        let (challenge, creds) = (self.challenge.as_ref()?, t.creds.as_ref()?);
        self.nc += 1;
        let cnonce = format!("{:016x}", rand::random::<u64>());
        Some(http_auth::authorization(
            challenge, creds, "GET", &t.path, self.nc, &cnonce,
        ))
    }
}

/// The producer: sessions while someone watches, back-off after failures.
async fn produce(t: Arc<Target>, feed: FeedWriter) {
    let mut backoff = Backoff::new();
    let mut auth = Auth::default();
    let mut last_logged = String::new();
    loop {
        feed.wait_wanted().await;
        let before = feed.frames();
        let result = session(&t, &feed, &mut auth).await;
        if feed.frames() > before {
            // The camera worked: the next failure starts the back-off again and is logged.
            backoff.reset();
            last_logged.clear();
        }
        match result {
            Ok(()) => tracing::debug!("{}: nobody watches; connection closed", t.shown),
            Err(e) => {
                let delay = backoff.next_delay();
                let why = e.to_string();
                if why != last_logged {
                    tracing::warn!(
                        "source {}: {why}; retrying in {:.1} s",
                        t.shown,
                        delay.as_secs_f64()
                    );
                    last_logged = why.clone();
                }
                feed.fail(why);
                tokio::time::sleep(delay).await;
            }
        }
    }
}

/// One connection's worth of work: a stream until it fails or nobody watches, or snapshots
/// polled at the frame rate.
async fn session(t: &Target, feed: &FeedWriter, auth: &mut Auth) -> Result<(), FetchError> {
    let mut conn: Option<SendRequest<Empty<Bytes>>> = None;
    loop {
        let started = Instant::now();
        let response = request(t, &mut conn, auth).await?;
        let content_type = response
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned();
        if let Some(boundary) = boundary_of(&content_type) {
            feed.set_kind("MJPEG stream".into());
            let mut body = response.into_body();
            return pump(&mut body, &boundary, feed)
                .await
                .map_err(FetchError::Stream);
        }
        let lower = content_type.to_ascii_lowercase();
        if !(lower.starts_with("image/jpeg") || lower.starts_with("image/jpg")) {
            // ffmpeg's HTTP server (without -content_type) and some cameras label the stream
            // application/octet-stream: a body that opens with a delimiter line is one.
            let mut body = response.into_body();
            let Some((first, boundary)) = sniff_boundary(&mut body).await? else {
                return Err(FetchError::ContentType(content_type));
            };
            feed.set_kind(format!(
                "MJPEG stream, sent as {:?}",
                content_type.chars().take(40).collect::<String>()
            ));
            let mut body = Prefixed {
                first: Some(first),
                body,
            };
            return pump(&mut body, &boundary, feed)
                .await
                .map_err(FetchError::Stream);
        }
        feed.set_kind(format!(
            "snapshots every {} ms",
            t.period.as_millis().max(1)
        ));
        let data = read_snapshot(response).await?;
        if !feed.publish(data) {
            return Err(FetchError::NotJpeg);
        }
        tokio::time::sleep_until((started + t.period).into()).await;
        if !feed.wanted() {
            return Ok(());
        }
    }
}

/// Send one GET, on the open connection when it is still usable, answering a 401 once.
async fn request(
    t: &Target,
    conn: &mut Option<SendRequest<Empty<Bytes>>>,
    auth: &mut Auth,
) -> Result<Response<Incoming>, FetchError> {
    let mut answered_challenge = false;
    loop {
        let reused = conn.as_ref().is_some_and(|c| c.is_ready());
        if !reused {
            *conn = Some(connect(t).await?);
        }
        let Some(sender) = conn.as_mut() else {
            unreachable!("connected above");
        };
        let mut req = Request::get(&t.path)
            .header(HOST, &t.host_header)
            .header(USER_AGENT, concat!("camnode/", env!("CARGO_PKG_VERSION")))
            .header(ACCEPT, "multipart/x-mixed-replace, image/jpeg");
        if let Some(value) = auth.header(t) {
            req = req.header(AUTHORIZATION, value);
        }
        let req = req
            .body(Empty::new())
            .map_err(|e| FetchError::Stream(format!("bad request: {e}")))?;
        let response = match tokio::time::timeout(CONNECT_TIMEOUT, sender.send_request(req)).await {
            Err(_) => {
                return Err(FetchError::Timeout(
                    t.url.host_str().unwrap_or_default().into(),
                    CONNECT_TIMEOUT.as_secs(),
                ));
            }
            // A kept-alive connection the camera closed meanwhile: open a new one.
            Ok(Err(_)) if reused => {
                *conn = None;
                continue;
            }
            Ok(Err(e)) => return Err(e.into()),
            Ok(Ok(r)) => r,
        };
        match response.status() {
            StatusCode::UNAUTHORIZED => {
                if t.creds.is_none() {
                    return Err(FetchError::NeedsCredentials);
                }
                if answered_challenge {
                    auth.challenge = None;
                    return Err(FetchError::Refused);
                }
                let headers: Vec<&str> = response
                    .headers()
                    .get_all(hyper::header::WWW_AUTHENTICATE)
                    .iter()
                    .filter_map(|v| v.to_str().ok())
                    .collect();
                let Some(challenge) = http_auth::challenges(headers.iter().copied())
                    .into_iter()
                    .next()
                else {
                    let shown: String = headers.join("; ").chars().take(80).collect();
                    return Err(FetchError::UnknownAuth(shown));
                };
                auth.challenge = Some(challenge);
                auth.nc = 0;
                answered_challenge = true;
                // The 401's body is not read: a fresh connection for the answer.
                *conn = None;
            }
            s if s.is_success() => return Ok(response),
            s if s.is_redirection() => {
                let to = response
                    .headers()
                    .get(hyper::header::LOCATION)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|l| t.url.join(l).ok());
                return Err(match to {
                    Some(mut to) => {
                        if to.password().is_some() {
                            let _ = to.set_password(Some("***"));
                        }
                        FetchError::Redirect(s, to.to_string())
                    }
                    None => FetchError::Status(s),
                });
            }
            s => return Err(FetchError::Status(s)),
        }
    }
}

/// Anything a connection can run over: TCP, or TLS over TCP.
trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

async fn connect(t: &Target) -> Result<SendRequest<Empty<Bytes>>, FetchError> {
    let what = format!("{}:{}", t.connect_host, t.port);
    let timeout = |what: &str| FetchError::Timeout(what.to_owned(), CONNECT_TIMEOUT.as_secs());
    let tcp = tokio::time::timeout(
        CONNECT_TIMEOUT,
        TcpStream::connect((t.connect_host.as_str(), t.port)),
    )
    .await
    .map_err(|_| timeout(&what))?
    .map_err(|e| FetchError::Connect(what.clone(), e))?;
    let _ = tcp.set_nodelay(true);
    let io: Box<dyn Io> = match &t.tls {
        None => Box::new(tcp),
        Some(config) => {
            let name = rustls::pki_types::ServerName::try_from(t.connect_host.clone())
                .map_err(|e| FetchError::Tls(what.clone(), std::io::Error::other(e)))?;
            let tls = tokio::time::timeout(
                CONNECT_TIMEOUT,
                tokio_rustls::TlsConnector::from(config.clone()).connect(name, tcp),
            )
            .await
            .map_err(|_| timeout(&what))?
            .map_err(|e| FetchError::Tls(what.clone(), e))?;
            Box::new(tls)
        }
    };
    // Cheap cameras bend HTTP/1.1: tolerate what RFC 9112 lets a client tolerate (obsolete
    // line folding, whitespace before a header's colon, headers with invalid bytes dropped).
    let (sender, connection) = hyper::client::conn::http1::Builder::new()
        .allow_obsolete_multiline_headers_in_responses(true)
        .allow_spaces_after_header_name_in_responses(true)
        .ignore_invalid_headers_in_responses(true)
        .handshake(TokioIo::new(io))
        .await?;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    Ok(sender)
}

/// A snapshot's body, bounded.
async fn read_snapshot(response: Response<Incoming>) -> Result<Bytes, FetchError> {
    let announced = response
        .headers()
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if announced.is_some_and(|n| n > MAX_SNAPSHOT) {
        return Err(FetchError::TooLarge);
    }
    let mut body = response.into_body();
    let mut data = BytesMut::with_capacity(announced.unwrap_or(64 << 10));
    let deadline = Instant::now() + super::feed::STALL;
    loop {
        let chunk = tokio::time::timeout_at(deadline.into(), body.next_chunk())
            .await
            .map_err(|_| FetchError::Stream("the snapshot stalled".into()))?
            .map_err(FetchError::Stream)?;
        let Some(chunk) = chunk else {
            return Ok(data.freeze());
        };
        if data.len() + chunk.len() > MAX_SNAPSHOT {
            return Err(FetchError::TooLarge);
        }
        data.extend_from_slice(&chunk);
    }
}

/// The boundary of a body that starts with a multipart delimiter line ("--boundary"), with the
/// bytes read to find out; None if it does not (at most 256 bytes are looked at).
async fn sniff_boundary(body: &mut Incoming) -> Result<Option<(Bytes, String)>, FetchError> {
    let mut seen = BytesMut::new();
    let deadline = Instant::now() + super::feed::STALL;
    while !seen.contains(&b'\n') && seen.len() < 256 {
        let chunk = tokio::time::timeout_at(deadline.into(), body.next_chunk())
            .await
            .map_err(|_| FetchError::Stream("stalled before its first line".into()))?
            .map_err(FetchError::Stream)?;
        match chunk {
            Some(c) => seen.extend_from_slice(&c),
            None => break,
        }
    }
    let line = seen[..].split(|&b| b == b'\n').next().unwrap_or_default();
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let boundary = line
        .strip_prefix(b"--")
        .filter(|b| (1..=70).contains(&b.len()) && b.iter().all(|c| c.is_ascii_graphic()))
        .map(|b| String::from_utf8_lossy(b).into_owned());
    Ok(boundary.map(|b| (seen.freeze(), b)))
}

/// A body with bytes already read from it put back in front.
struct Prefixed {
    first: Option<Bytes>,
    body: Incoming,
}

impl Chunks for Prefixed {
    async fn next_chunk(&mut self) -> Result<Option<Bytes>, String> {
        match self.first.take() {
            Some(first) => Ok(Some(first)),
            None => self.body.next_chunk().await,
        }
    }
}

impl Chunks for Incoming {
    async fn next_chunk(&mut self) -> Result<Option<Bytes>, String> {
        loop {
            match self.frame().await {
                None => return Ok(None),
                Some(Err(e)) => return Err(format!("HTTP: {e}")),
                Some(Ok(frame)) => {
                    if let Ok(data) = frame.into_data() {
                        return Ok(Some(data));
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_checked_and_shown_without_password() {
        let t = target("http://admin:p%40ss@192.0.2.7:8081/video.cgi?res=hi", 10).unwrap();
        assert_eq!(t.shown, "http://admin:***@192.0.2.7:8081/video.cgi?res=hi");
        assert_eq!(t.path, "/video.cgi?res=hi");
        assert_eq!(t.host_header, "192.0.2.7:8081");
        assert_eq!(
            t.creds,
            Some(Credentials {
                user: "admin".into(),
                password: "p@ss".into()
            })
        );
        let t = target("http://[2001:db8::1]/", 10).unwrap();
        assert_eq!((t.connect_host.as_str(), t.port), ("2001:db8::1", 80));
        assert_eq!(t.host_header, "[2001:db8::1]");
        for bad in ["ftp://cam/x", "http://", "not a url"] {
            assert!(target(bad, 10).is_err(), "{bad}");
        }
        assert_eq!(percent_decode("a%2").as_deref(), Some("a%2"));
        assert_eq!(percent_decode("%ff"), None, "not UTF-8");
    }
}
