//! The tokio shell around [`Core`]: the UDP driver (datagrams in, the core's datagrams out, sleep
//! until its next deadline), the listener for devices' TLS back-connections (hello, then hand the
//! stream to the viewer waiting for that session), and the viewer listeners (HTTPS, plain HTTP).
//! [`serve`] takes already-bound sockets and a shutdown future, so tests run it on loopback.

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::Result;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use rand::SeedableRng;
use rand::rngs::StdRng;
use shared::relayproto::{HELLO_LEN, Hello, HelloStatus, MAX_DATAGRAM};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::{oneshot, watch};
use tokio_rustls::TlsAcceptor;
use tracing::{debug, info, warn};

use crate::core::{Core, EndReason, Event, Keys, Settings};
use crate::pages::Status;
use crate::viewer::{self, ViewerConn};

/// A device's back-connection after its hello was accepted.
pub type BackStream = tokio_rustls::server::TlsStream<TcpStream>;

/// How long a device has to complete TLS and send its hello.
const HELLO_TIME: Duration = Duration::from_secs(5);
/// How long a viewer has to complete TLS.
const VIEWER_TLS_TIME: Duration = Duration::from_secs(10);
/// Back-connections at once between accept and hello (a flood of idle TCP connections holds
/// at most this many tasks for [`HELLO_TIME`]).
const MAX_HANDSHAKES: usize = 1024;
/// Viewer connections at once.
const MAX_VIEWERS: usize = 8192;
/// How long open viewer connections get to finish at shutdown.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(2);

/// The sockets the relay serves on (bound by the caller).
#[derive(Debug)]
pub struct Listeners {
    /// Device notifications.
    pub udp: UdpSocket,
    /// Devices' TLS back-connections.
    pub back: TcpListener,
    /// Viewers over HTTPS.
    pub https: Option<TcpListener>,
    /// Viewers over plain HTTP.
    pub http: Option<TcpListener>,
}

/// What the shell needs besides sockets.
#[derive(Debug, Clone)]
pub struct Options {
    /// The relay's name (status page).
    pub name: String,
    /// The server certificate (viewers and back-connections).
    pub tls: Arc<rustls::ServerConfig>,
    /// Protocol settings.
    pub settings: Settings,
    /// Who may register.
    pub keys: Keys,
}

/// State shared by the tasks.
#[derive(Debug)]
pub struct Shared {
    core: Mutex<Core>,
    /// Wakes the UDP driver when the core has datagrams to send or a new deadline.
    pub wake: tokio::sync::Notify,
    /// Viewers waiting for the back-connection of their session.
    waiters: Mutex<HashMap<u64, oneshot::Sender<BackStream>>>,
    /// Tasks carrying active sessions (aborted at the session's maximum time).
    aborts: Mutex<HashMap<u64, tokio::task::AbortHandle>>,
    /// The relay's name.
    pub name: String,
    started: Instant,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The viewers waiting for back-connections.
pub(crate) fn lock_waiters(
    s: &Shared,
) -> MutexGuard<'_, HashMap<u64, oneshot::Sender<BackStream>>> {
    lock(&s.waiters)
}

/// The tasks carrying active sessions.
pub(crate) fn lock_aborts(s: &Shared) -> MutexGuard<'_, HashMap<u64, tokio::task::AbortHandle>> {
    lock(&s.aborts)
}

impl Shared {
    /// The core (held briefly: no await while locked).
    pub fn core(&self) -> MutexGuard<'_, Core> {
        lock(&self.core)
    }

    /// Everything the status page shows.
    pub fn status(&self) -> Status {
        let now = Instant::now();
        let core = self.core();
        Status {
            name: self.name.clone(),
            uptime_s: now.duration_since(self.started).as_secs(),
            devices: core.devices(now),
            sessions: core.sessions(now),
            counters: core.counters().clone(),
        }
    }

    /// Ends a session from the shell's side.
    pub fn close_session(&self, session: u64) {
        lock(&self.aborts).remove(&session);
        lock(&self.waiters).remove(&session);
        self.core().session_closed(Instant::now(), session);
        self.wake.notify_one();
    }
}

/// Lets devices send their TLS ClientHello in the SYN (TCP Fast Open, RFC 7413) on the
/// back-connection listener: one round trip less from a connection request to the first byte
/// (docs/relay-protocol.md). Takes effect where `net.ipv4.tcp_fastopen` has the server bit (2)
/// and the device connects with `TCP_FASTOPEN_CONNECT`; elsewhere connections work as before.
fn enable_fast_open(l: &TcpListener) {
    use std::os::fd::AsRawFd;
    let queue: libc::c_int = 256;
    // SAFETY: a valid listening socket and a correctly sized option value.
    let rc = unsafe {
        libc::setsockopt(
            l.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_FASTOPEN,
            (&queue as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc != 0 {
        debug!(
            "TCP_FASTOPEN on the back listener: {}",
            std::io::Error::last_os_error()
        );
    }
}

/// Runs the relay until `shutdown` completes, then lets open viewer connections finish for a
/// moment and returns.
pub async fn serve(
    opts: Options,
    listeners: Listeners,
    shutdown: impl Future<Output = ()>,
) -> Result<()> {
    let now = Instant::now();
    let unix_us = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_micros() as u64;
    let core = Core::new(
        opts.settings.clone(),
        opts.keys.clone(),
        now,
        unix_us,
        StdRng::from_os_rng(),
    );
    let shared = Arc::new(Shared {
        core: Mutex::new(core),
        wake: tokio::sync::Notify::new(),
        waiters: Mutex::new(HashMap::new()),
        aborts: Mutex::new(HashMap::new()),
        name: opts.name.clone(),
        started: now,
    });
    let (stop_tx, stop_rx) = watch::channel(false);
    let acceptor = TlsAcceptor::from(opts.tls.clone());
    let conns = Arc::new(());
    info!(
        udp = %listeners.udp.local_addr()?,
        back = %listeners.back.local_addr()?,
        https = ?listeners.https.as_ref().and_then(|l| l.local_addr().ok()),
        http = ?listeners.http.as_ref().and_then(|l| l.local_addr().ok()),
        devices = opts.keys.devices.len(),
        enrol_key = opts.keys.enrol_key.is_some(),
        "relay {} serving", opts.name
    );
    enable_fast_open(&listeners.back);
    let mut tasks = vec![
        tokio::spawn(udp_driver(shared.clone(), listeners.udp, stop_rx.clone())),
        tokio::spawn(back_loop(
            shared.clone(),
            listeners.back,
            acceptor.clone(),
            stop_rx.clone(),
        )),
    ];
    if let Some(l) = listeners.https {
        let tls = Some(acceptor.clone());
        tasks.push(tokio::spawn(viewer_loop(
            shared.clone(),
            l,
            tls,
            stop_rx.clone(),
            conns.clone(),
        )));
    }
    if let Some(l) = listeners.http {
        tasks.push(tokio::spawn(viewer_loop(
            shared.clone(),
            l,
            None,
            stop_rx.clone(),
            conns.clone(),
        )));
    }
    shutdown.await;
    info!("shutting down: no new connections; open ones get {SHUTDOWN_GRACE:?}");
    let _ = stop_tx.send(true);
    for t in tasks {
        let _ = t.await;
    }
    let deadline = Instant::now() + SHUTDOWN_GRACE;
    while Arc::strong_count(&conns) > 1 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    for (_, a) in lock(&shared.aborts).drain() {
        a.abort();
    }
    Ok(())
}

/// Datagrams in and out; the core's deadlines and events.
async fn udp_driver(shared: Arc<Shared>, udp: UdpSocket, mut stop: watch::Receiver<bool>) {
    let mut buf = vec![0u8; MAX_DATAGRAM + 1];
    loop {
        let (transmits, events, deadline) = {
            let mut core = shared.core();
            let t: Vec<_> = std::iter::from_fn(|| core.poll_transmit()).collect();
            let e: Vec<_> = std::iter::from_fn(|| core.poll_event()).collect();
            (t, e, core.poll_timeout())
        };
        for t in transmits {
            if let Err(e) = udp.send_to(&t.bytes, t.to).await {
                debug!(to = %t.to, "udp send: {e}");
            }
        }
        for Event::SessionEnded { session, reason } in events {
            match reason {
                EndReason::SetupTimeout => {
                    // Dropping the sender answers the waiting viewer (504).
                    lock(&shared.waiters).remove(&session);
                    info!(
                        session = format!("{session:016x}"),
                        "no back-connection in time"
                    );
                }
                EndReason::MaxTime => {
                    if let Some(a) = lock(&shared.aborts).remove(&session) {
                        a.abort();
                    }
                    info!(
                        session = format!("{session:016x}"),
                        "session reached its maximum time"
                    );
                }
            }
        }
        let sleep_until = deadline
            .map(tokio::time::Instant::from_std)
            .unwrap_or_else(|| tokio::time::Instant::now() + Duration::from_secs(3600));
        tokio::select! {
            r = udp.recv_from(&mut buf) => match r {
                Ok((n, from)) => {
                    let from = SocketAddr::new(from.ip().to_canonical(), from.port());
                    shared.core().handle_datagram(Instant::now(), from, &buf[..n]);
                }
                Err(e) => debug!("udp recv: {e}"),
            },
            _ = tokio::time::sleep_until(sleep_until) => {
                shared.core().handle_timeout(Instant::now());
            }
            _ = shared.wake.notified() => {}
            _ = stop.changed() => return,
        }
    }
}

async fn back_loop(
    shared: Arc<Shared>,
    listener: TcpListener,
    acceptor: TlsAcceptor,
    mut stop: watch::Receiver<bool>,
) {
    let slots = Arc::new(tokio::sync::Semaphore::new(MAX_HANDSHAKES));
    loop {
        tokio::select! {
            r = listener.accept() => match r {
                Ok((tcp, peer)) => {
                    let Ok(permit) = slots.clone().try_acquire_owned() else {
                        shared.core().counters_mut().back_refused_busy += 1;
                        continue;
                    };
                    let _ = tcp.set_nodelay(true);
                    let shared = shared.clone();
                    let acceptor = acceptor.clone();
                    tokio::spawn(async move {
                        back_conn(shared, acceptor, tcp, peer, permit).await;
                    });
                }
                Err(e) => {
                    warn!("back-connection accept: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            _ = stop.changed() => return,
        }
    }
}

/// One back-connection: TLS, the hello, the answer, then the stream goes to its viewer.
async fn back_conn(
    shared: Arc<Shared>,
    acceptor: TlsAcceptor,
    tcp: TcpStream,
    peer: SocketAddr,
    permit: tokio::sync::OwnedSemaphorePermit,
) {
    let accepted = Instant::now();
    let started = tokio::time::timeout(HELLO_TIME, async {
        let mut tls = acceptor.accept(tcp).await.map_err(|e| (true, e))?;
        let mut buf = [0u8; HELLO_LEN];
        tls.read_exact(&mut buf).await.map_err(|e| (false, e))?;
        Ok::<_, (bool, std::io::Error)>((tls, buf))
    })
    .await;
    let (mut tls, buf) = match started {
        Ok(Ok(x)) => x,
        Ok(Err((tls_failed, e))) => {
            let mut core = shared.core();
            if tls_failed {
                core.counters_mut().back_tls_failures += 1;
            } else {
                core.counters_mut().hello_malformed += 1;
            }
            debug!(%peer, "back-connection dropped: {e}");
            return;
        }
        Err(_) => {
            shared.core().counters_mut().hello_malformed += 1;
            debug!(%peer, "back-connection: no hello within {HELLO_TIME:?}");
            return;
        }
    };
    let hello = match Hello::parse(&buf) {
        Ok(h) => h,
        Err(e) => {
            shared.core().counters_mut().hello_malformed += 1;
            debug!(%peer, "back-connection: bad hello: {e}");
            return;
        }
    };
    drop(permit);
    let result = shared.core().back_hello(Instant::now(), &hello);
    let status = match result {
        Ok(_) => HelloStatus::Ok,
        Err(s) => s,
    };
    let id = format!("{:016x}", hello.device_id);
    if tls.write_all(&status.emit()).await.is_err() || tls.flush().await.is_err() {
        if let Ok(session) = result {
            shared.close_session(session);
        }
        return;
    }
    let Ok(session) = result else {
        info!(%peer, device = id, ?status, "back-connection refused");
        let _ = tls.shutdown().await;
        return;
    };
    debug!(
        %peer,
        device = id,
        session = format!("{session:016x}"),
        tls_and_hello_us = accepted.elapsed().as_micros() as u64,
        "back-connection up"
    );
    let waiter = lock(&shared.waiters).remove(&session);
    match waiter {
        Some(tx) => {
            if tx.send(tls).is_err() {
                shared.core().counters_mut().back_unclaimed += 1;
                shared.close_session(session);
            }
        }
        None => {
            shared.core().counters_mut().back_unclaimed += 1;
            shared.close_session(session);
        }
    }
}

async fn viewer_loop(
    shared: Arc<Shared>,
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    mut stop: watch::Receiver<bool>,
    conns: Arc<()>,
) {
    let slots = Arc::new(tokio::sync::Semaphore::new(MAX_VIEWERS));
    loop {
        tokio::select! {
            r = listener.accept() => match r {
                Ok((tcp, peer)) => {
                    let Ok(permit) = slots.clone().try_acquire_owned() else {
                        shared.core().counters_mut().viewer_refused_busy += 1;
                        continue;
                    };
                    let _ = tcp.set_nodelay(true);
                    let peer = SocketAddr::new(peer.ip().to_canonical(), peer.port());
                    let (shared, stop, tls, guard) =
                        (shared.clone(), stop.clone(), tls.clone(), conns.clone());
                    tokio::spawn(async move {
                        let _guard = (guard, permit);
                        match tls {
                            Some(acc) => {
                                match tokio::time::timeout(VIEWER_TLS_TIME, acc.accept(tcp)).await {
                                    Ok(Ok(s)) => serve_viewer(shared, s, peer, true, stop).await,
                                    _ => debug!(%peer, "viewer TLS failed"),
                                }
                            }
                            None => serve_viewer(shared, tcp, peer, false, stop).await,
                        }
                    });
                }
                Err(e) => {
                    warn!("viewer accept: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            _ = stop.changed() => return,
        }
    }
}

/// Serves one viewer connection with the relay's routes (see [`viewer`]).
async fn serve_viewer<S>(
    shared: Arc<Shared>,
    io: S,
    peer: SocketAddr,
    https: bool,
    mut stop: watch::Receiver<bool>,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let conn_state = Arc::new(ViewerConn::new(shared, peer, https));
    let svc = service_fn(move |req| {
        let st = conn_state.clone();
        async move { Ok::<_, std::convert::Infallible>(viewer::handle(st, req).await) }
    });
    let conn = http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(Duration::from_secs(30))
        .serve_connection(TokioIo::new(io), svc);
    tokio::pin!(conn);
    tokio::select! {
        r = conn.as_mut() => if let Err(e) = r { debug!(%peer, "viewer connection: {e}") },
        _ = stop.changed() => {
            conn.as_mut().graceful_shutdown();
            let _ = tokio::time::timeout(SHUTDOWN_GRACE, conn).await;
        }
    }
}
