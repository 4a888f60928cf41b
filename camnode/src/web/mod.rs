//! The HTTP side: the node's page, snapshots, MJPEG, status, pan/tilt/zoom and rename, on hyper 1.
//!
//! Routes (all answers to bad requests are 4xx with a plain-text reason):
//!
//! | route | what |
//! |---|---|
//! | `GET /` | the node's page: live picture, name, role, the other cameras as links (Fig. 6) |
//! | `GET /snapshot.jpg`, `GET /?action=snapshot` | a fresh JPEG (encoded for this request if nobody watches) |
//! | `GET /stream.mjpg`, `GET /?action=stream` | `multipart/x-mixed-replace` MJPEG, `Content-Length` per part; at most `max_streams` at once, 503 beyond |
//! | `GET /status.json` | role, reachability, ports, external address, peers with links for this viewer, frame rate, viewers |
//! | `GET /ptz` | the current pan/tilt/zoom |
//! | `POST /ptz` (JSON or form) | move the camera (digital PTZ on the synthetic source); `GET /ptz?zoom=...` is refused (405): state changes only by POST |
//! | `POST /name` (form or JSON `{"name": ...}`) | rename: sent to port management as [`NodeCommand::Rename`] |
//!
//! Changes (PTZ, rename) from outside the LAN need the configured password ([`auth`]), with
//! wrong guesses limited per address, and are refused with a foreign `Origin`; connections are
//! capped in total and per client, with time limits for heads and bodies ([`limits`]); links are
//! built for the viewer's side of the router ([`links`]).
//!
//! The service runs over any byte stream: [`serve_connection`] takes an `AsyncRead + AsyncWrite`
//! and the viewer's address, so a relay can hand it connections the camera opened outward; the
//! node's own listeners go through [`serve_listener`].

pub mod auth;
pub mod form;
pub mod limits;
pub mod links;
pub mod mjpeg;
pub mod netif;
pub mod page;
mod routes;

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, mpsc, watch};

use crate::camera::HubHandle;
use crate::directory::{Directory, NodeCommand};
use links::Subnet;

pub use routes::handle;

/// Web settings taken from the node's configuration.
#[derive(Clone, Debug)]
pub struct WebConfig {
    /// A domain name that replaces the external address in outside links.
    pub domain: String,
    /// Password for changes from outside the LAN; empty = such changes are refused.
    pub password: String,
    /// Concurrent MJPEG streams; beyond this, 503.
    pub max_streams: usize,
    /// The configured picture size (for the page's layout).
    pub width: u32,
    pub height: u32,
}

/// Everything a request handler needs, shared by all connections.
#[derive(Debug)]
pub struct WebState {
    pub(crate) hub: HubHandle,
    pub(crate) dir: watch::Receiver<Directory>,
    pub(crate) commands: mpsc::Sender<NodeCommand>,
    pub(crate) config: WebConfig,
    pub(crate) streams: Arc<Semaphore>,
    subnets: Mutex<Option<(Instant, Vec<Subnet>)>>,
    pub(crate) started: Instant,
    pub(crate) conns: limits::ConnLimits,
    pub(crate) passwords: limits::PasswordGuard,
}

/// How a connection reached us.
#[derive(Clone, Copy, Debug)]
pub struct ConnInfo {
    /// The viewer's address (for a relayed connection: the address the relay reports).
    pub peer: SocketAddr,
    /// The local address the connection arrived on; None for connections a relay handed over.
    pub local: Option<SocketAddr>,
}

impl WebState {
    pub fn new(
        hub: HubHandle,
        dir: watch::Receiver<Directory>,
        commands: mpsc::Sender<NodeCommand>,
        config: WebConfig,
    ) -> Arc<WebState> {
        let streams = Arc::new(Semaphore::new(config.max_streams));
        Arc::new(WebState {
            hub,
            dir,
            commands,
            config,
            streams,
            subnets: Mutex::new(None),
            started: Instant::now(),
            conns: limits::ConnLimits::default(),
            passwords: limits::PasswordGuard::default(),
        })
    }

    /// The host's IPv4 subnets, re-read at most every 5 seconds (DHCP may change them).
    pub(crate) fn subnets(&self) -> Vec<Subnet> {
        let mut cache = self.subnets.lock().unwrap_or_else(PoisonError::into_inner);
        match &*cache {
            Some((at, list)) if at.elapsed() < Duration::from_secs(5) => list.clone(),
            _ => {
                let list = netif::ipv4_subnets();
                *cache = Some((Instant::now(), list.clone()));
                list
            }
        }
    }

    /// MJPEG streams open right now.
    pub fn open_streams(&self) -> usize {
        self.config
            .max_streams
            .saturating_sub(self.streams.available_permits())
    }
}

/// Serve HTTP/1.1 on one connection, whatever carries it.
pub async fn serve_connection<IO>(
    state: Arc<WebState>,
    io: IO,
    conn: ConnInfo,
) -> Result<(), hyper::Error>
where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    // Over the caps: close at once (the client sees a reset or EOF).
    let Some(_place) = state.conns.admit(conn.peer.ip()) else {
        tracing::debug!(peer = %conn.peer, "connection refused: too many connections");
        return Ok(());
    };
    let service = service_fn(move |req| {
        let state = state.clone();
        async move { Ok::<_, Infallible>(handle(&state, &conn, req).await) }
    });
    http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(limits::HEADER_TIMEOUT)
        .serve_connection(TokioIo::new(io), service)
        .await
}

/// Accept connections on `listener` until `shutdown` completes.
pub async fn serve_listener(
    state: Arc<WebState>,
    listener: TcpListener,
    shutdown: impl Future<Output = ()>,
) {
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            () = &mut shutdown => return,
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    let _ = stream.set_nodelay(true);
                    let local = stream.local_addr().ok();
                    let state = state.clone();
                    tokio::spawn(async move {
                        if let Err(e) = serve_connection(state, stream, ConnInfo { peer, local }).await {
                            tracing::debug!("connection from {peer}: {e}");
                        }
                    });
                }
                Err(e) => {
                    // Out of file descriptors and the like: wait a little instead of spinning.
                    tracing::warn!("accept: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            },
        }
    }
}
