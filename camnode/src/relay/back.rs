//! The back-connection (seed 003): on a valid connection request the camera opens TCP to the
//! relay, checks its certificate (TLS, the configured CA), proves the request's nonce with the
//! hello, and then serves its ordinary web site over the stream, the relay being the HTTP client
//! (docs/relay-protocol.md, "The back-connection").
//!
//! Each forwarded request carries the relay's headers: `X-Relay-Base` becomes a
//! [`Relayed`] extension (the pages build their links under it) and `X-Forwarded-For` the
//! viewer's address. These headers are read here only, on a connection we opened to a relay we
//! authenticated; the LAN listener never looks at them. A relayed viewer is always outside the
//! LAN for permissions: an address that would count as inside is replaced by 0.0.0.0.

use std::convert::Infallible;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, bail};
use hyper::header::HeaderMap;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use shared::relayproto::{HELLO_ANSWER_LEN, Hello, HelloStatus, Secret, headers};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use super::core::Connect;
use crate::web::links::{self, Place, Relayed};
use crate::web::{self, ConnInfo, WebState};

/// TCP connect, TLS handshake, and the hello's answer each get this long.
const STEP_TIMEOUT: Duration = Duration::from_secs(5);
/// A back-connection idle between the viewer's requests is closed after this long; the relay
/// asks for a new one when the viewer comes back.
const IDLE_TIMEOUT: Duration = Duration::from_secs(60);

/// Opens the back-connection for `c`, proves the nonce, and serves until either side closes.
pub async fn connect_and_serve(
    state: Arc<WebState>,
    tls: TlsConnector,
    server_name: rustls::pki_types::ServerName<'static>,
    c: Connect,
    device_id: u64,
    secret: Secret,
) -> anyhow::Result<()> {
    let tcp = tokio::time::timeout(STEP_TIMEOUT, TcpStream::connect(c.back))
        .await
        .context("TCP connect timed out")?
        .with_context(|| format!("TCP connect to {}", c.back))?;
    let _ = tcp.set_nodelay(true);
    let mut stream = tokio::time::timeout(STEP_TIMEOUT, tls.connect(server_name, tcp))
        .await
        .context("TLS handshake timed out")?
        .context("TLS handshake (is --relay-ca the CA of the relay's certificate?)")?;
    stream
        .write_all(&Hello::new(device_id, c.session, &c.nonce, &secret).emit())
        .await?;
    stream.flush().await?;
    let mut answer = [0u8; HELLO_ANSWER_LEN];
    tokio::time::timeout(STEP_TIMEOUT, stream.read_exact(&mut answer))
        .await
        .context("no answer to the hello")??;
    match HelloStatus::parse(&answer) {
        Ok(HelloStatus::Ok) => {}
        Ok(other) => bail!("the relay refused the hello: {other:?}"),
        Err(e) => bail!("not a hello answer: {e}"),
    }
    serve(state, stream).await.context("HTTP over the relay")
}

/// Serves the web site over a back-connection whose hello was accepted.
pub async fn serve<IO>(state: Arc<WebState>, io: IO) -> Result<(), hyper::Error>
where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let service = service_fn(move |mut req: hyper::Request<hyper::body::Incoming>| {
        let state = state.clone();
        async move {
            let conn = ConnInfo {
                peer: SocketAddr::new(viewer_of(&state, req.headers()), 0),
                local: None,
            };
            let relayed = relayed_of(req.headers());
            req.extensions_mut().insert(relayed);
            Ok::<_, Infallible>(web::handle(&state, &conn, req).await)
        }
    });
    http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(IDLE_TIMEOUT)
        .serve_connection(TokioIo::new(io), service)
        .await
}

/// The relay's `X-Relay-Base`, if it is a plain path (`/d/<id>/`): it goes into links.
pub fn relayed_of(h: &HeaderMap) -> Relayed {
    let base = h
        .get(headers::RELAY_BASE)
        .and_then(|v| v.to_str().ok())
        .filter(|b| {
            b.len() <= 256
                && b.starts_with('/')
                && b.ends_with('/')
                && !b.contains("//")
                && b.bytes()
                    .all(|c| c.is_ascii_alphanumeric() || b"/-._~".contains(&c))
        })
        .map(str::to_owned);
    Relayed { base }
}

/// The viewer's address from the last `X-Forwarded-For` entry (the one the relay wrote), or
/// 0.0.0.0 when there is none or it would count as inside the LAN.
fn viewer_of(state: &WebState, h: &HeaderMap) -> IpAddr {
    let unknown = IpAddr::V4(Ipv4Addr::UNSPECIFIED);
    let Some(ip) = h
        .get(headers::FORWARDED_FOR)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.rsplit(',').next())
        .and_then(|v| v.trim().parse::<IpAddr>().ok())
    else {
        return unknown;
    };
    let lan_addr = state.dir.borrow().lan_addr;
    match links::classify(ip, None, &state.subnets(), lan_addr) {
        Place::Outside => ip,
        Place::Lan => unknown,
    }
}

#[cfg(test)]
mod tests {
    use hyper::header::HeaderValue;

    use super::*;

    fn base_of(value: &str) -> Option<String> {
        let mut h = HeaderMap::new();
        h.insert(headers::RELAY_BASE, HeaderValue::from_str(value).unwrap());
        relayed_of(&h).base
    }

    /// The base goes into HTML attributes and a script: only plain paths are taken.
    #[test]
    fn only_plain_relay_bases_are_taken() {
        assert_eq!(
            base_of("/d/00000000000000a1/").as_deref(),
            Some("/d/00000000000000a1/")
        );
        for hostile in [
            "//evil.example/",
            "javascript:alert(1)/",
            "/d/a\"><script>/",
            "/d/a'/",
            "/d/a b/",
            "d/a/",
            "/d/a",
            &format!("/{}/", "a".repeat(300)),
        ] {
            assert_eq!(base_of(hostile), None, "{hostile}");
        }
        assert_eq!(relayed_of(&HeaderMap::new()).base, None);
    }
}
