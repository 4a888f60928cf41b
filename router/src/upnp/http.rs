//! The IGD's HTTP server (HTTP/1.1, RFC 9112, through [`http1`]) on the LAN address:
//! descriptions and SCPDs (UDA 1.1 §2), SOAP control (UDA 1.1 §3), GENA SUBSCRIBE /
//! UNSUBSCRIBE (UDA 1.1 §4.1).
//!
//! Limits: request bodies up to [`shared::soap::MAX_REQUEST`] (16 KiB, else 413), heads up to
//! `http1::MAX_HEAD` (16 KiB, else 431), the head within [`HEADER_TIMEOUT`], the body within
//! [`BODY_TIMEOUT`] (else 408), a connection for at most [`CONNECTION_TIMEOUT`], at most
//! [`MAX_CONNECTIONS`] at once and [`MAX_CONNECTIONS_PER_CLIENT`] from one LAN host (more are
//! closed at once). Every request gets an answer: a SOAP fault or an HTTP error. SOAP control
//! needs `Content-Type: text/xml`, a `SOAPACTION` field and the router's address in `Host`
//! ([`soap_refusal`]): a web page elsewhere can send none of them.
//!
//! How it is served: control points open a connection per request (miniupnpc's upnpc does,
//! with `Connection: close`), so the cost of a request is mostly the cost of a connection:
//! wakeups, context switches and system calls, not parsing. A thread of its own (`upnp-http`,
//! [`accept_loop`]) blocks in accept(2) on a listener with TCP_DEFER_ACCEPT, so the kernel
//! hands a connection over once its request has arrived; the thread reads it, answers, and
//! sends the answer with the FIN (MSG_MORE, then shutdown), then closes: one wakeup of this
//! thread and one of the client per request, five system calls, no task, timer or epoll
//! registration ([`serve_inline`]); for [`BUSY_POLL`] after an answer the thread looks for
//! the next connection without sleeping, so a control point walking the table does not pay
//! a wakeup of this thread per request either. Whatever would wait (a request still arriving,
//! `Expect: 100-continue`, keep-alive, an answer larger than the socket buffer, an error to
//! answer with input unread) goes on as a task of the runtime ([`conn_task`]), with the same
//! state machine ([`Conn`]) and the time limits. With hyper on the runtime, each request took
//! an epoll registration, a task, two timers, ~12 system calls and often a second wakeup of
//! the client (the answer and the FIN apart): ~100 µs of CPU on the server thread per request
//! against ~50 µs now, and `igd-bench`'s walk 1.4x to 2x the floor's time against ~1.2x now.

use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpStream as StdStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use bytes::Bytes;
use hyper::header::{ALLOW, CONTENT_LENGTH, CONTENT_TYPE, HOST, HeaderValue, SERVER};
use hyper::{Method, Response, StatusCode, Version};
use shared::gena::{self, GenaRequest, SubscribeResponse};
use shared::igd::{ServiceKind, ServiceType};
use shared::soap::{self, ActionRequest, ActionResponse, Fault, SoapAction};
use shared::upnp_error::UpnpError;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::time::{Instant, timeout_at};

use super::events::{self, SubError};
use super::http1::{self, Body, Framing, Head};
use super::{SERVER as SERVER_TOKEN, Shared, lock};
use crate::httpguard::{ConnLimiter, ConnPermit};

/// Time to receive a request head.
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(5);
/// Time to receive a request body.
pub const BODY_TIMEOUT: Duration = Duration::from_secs(5);
/// Longest a connection (keep-alive included) may stay open.
pub const CONNECTION_TIMEOUT: Duration = Duration::from_secs(60);
/// Connections served at once; more are closed at once.
pub const MAX_CONNECTIONS: usize = 256;
/// Connections one LAN host may hold; more from it are closed at once, so one host holding
/// idle or trickling connections (slowloris) leaves the rest to the others. A control point
/// walking the table uses one at a time.
pub const MAX_CONNECTIONS_PER_CLIENT: usize = 16;
/// How long a closing connection still reads (and drops) what the client sends, so that the
/// close does not reset the answer away (RFC 9112 §9.6), and how much.
const LINGER: Duration = Duration::from_secs(2);
const LINGER_BYTES: usize = 256 * 1024;
/// Bytes read at a time.
const READ_CHUNK: usize = 4096;

type Resp = Response<Bytes>;

/// Accepts connections until `stop`, on a thread of its own ([`accept_loop`]); when this
/// returns (or is dropped), that thread has ended and the listener is closed.
pub(crate) async fn serve(
    listener: TcpListener,
    shared: Arc<Shared>,
    mut stop: watch::Receiver<bool>,
) {
    let listener = match listener.into_std().and_then(|l| {
        l.set_nonblocking(false)?;
        Ok(l)
    }) {
        Ok(l) => Arc::new(l),
        Err(e) => {
            tracing::warn!("upnp http: {e}");
            return;
        }
    };
    defer_accept(&listener);
    let stopping = Arc::new(AtomicBool::new(false));
    let runtime = tokio::runtime::Handle::current();
    let thread = {
        let (listener, stopping) = (listener.clone(), stopping.clone());
        std::thread::Builder::new()
            .name("upnp-http".into())
            .spawn(move || {
                // Connections that must wait become tasks of this runtime.
                let _runtime = runtime.enter();
                accept_loop(&listener, &shared, &stopping);
            })
    };
    let _acceptor = match thread {
        Ok(thread) => Acceptor {
            listener,
            stopping,
            thread: Some(thread),
        },
        Err(e) => {
            tracing::warn!("upnp http: {e}");
            return;
        }
    };
    let _ = stop.changed().await;
}

/// Stops the accept thread when dropped.
#[derive(Debug)]
struct Acceptor {
    listener: Arc<std::net::TcpListener>,
    stopping: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for Acceptor {
    fn drop(&mut self) {
        self.stopping.store(true, Ordering::Release);
        // A blocked accept(2) returns (EINVAL) once its listener is shut down; the thread
        // then ends within the request it may be answering.
        let _ = socket2::SockRef::from(&*self.listener).shutdown(std::net::Shutdown::Read);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Blocks in accept(2) and answers what has arrived ([`serve_inline`]), until `stopping`.
///
/// A thread of its own rather than a task on the runtime's epoll: accept(2) sleeps until a
/// connection (with its request, TCP_DEFER_ACCEPT) is there, one system call where the
/// runtime needs epoll_wait and accept4 until EAGAIN, and a control point's request does not
/// wait behind the router's other tasks on the runtime thread, nor they behind it.
fn accept_loop(listener: &std::net::TcpListener, shared: &Arc<Shared>, stopping: &AtomicBool) {
    let limit = ConnLimiter::new(MAX_CONNECTIONS, MAX_CONNECTIONS_PER_CLIENT);
    while !stopping.load(Ordering::Acquire) {
        match accept(listener) {
            Ok((stream, peer)) => {
                match limit.admit(peer.ip()) {
                    Ok(permit) => serve_inline(shared, stream, peer, permit),
                    Err(why) => {
                        // Closed unanswered: what it sent would only be more of the same.
                        shared.stats.http_refused.fetch_add(1, Ordering::Relaxed);
                        tracing::debug!("upnp http: {peer} refused: {why:?}");
                    }
                }
                look_for_the_next(listener);
            }
            Err(_) if stopping.load(Ordering::Acquire) => return,
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::ConnectionAborted | io::ErrorKind::Interrupted
                ) => {}
            Err(e) => {
                tracing::warn!("upnp http: accept: {e}");
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    }
}

/// How long the accept thread keeps looking for the next connection after an answer before
/// it sleeps in accept(2). As in the dataplane (`crate::dataplane::BUSY_POLL`): waking a
/// thread on an idle vCPU costs tens of µs on a virtual machine, and a control point walking
/// the table (upnpc -l: one connection per entry) sends its next request within this window.
/// The thread yields the core to anything runnable meanwhile; without requests it never spins.
pub const BUSY_POLL: Duration = Duration::from_micros(200);

/// Waits up to [`BUSY_POLL`] without sleeping for the listener to have a connection (or an
/// error, or a shutdown), then returns; accept(2) then either finds it or sleeps as before.
fn look_for_the_next(listener: &std::net::TcpListener) {
    use std::os::fd::AsRawFd;
    let start = std::time::Instant::now();
    let mut pfd = libc::pollfd {
        fd: listener.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    while start.elapsed() < BUSY_POLL {
        // SAFETY: poll(2) on one pollfd we own, without waiting.
        if unsafe { libc::poll(&mut pfd, 1, 0) } != 0 {
            return;
        }
        std::thread::yield_now();
    }
}

/// TCP_DEFER_ACCEPT: the listener reports a connection once its first bytes have arrived (an
/// HTTP client speaks first), so accepting it finds the request there, and a connection that
/// sends nothing holds no permit meanwhile. One silent for about [`HEADER_TIMEOUT`] (the
/// kernel rounds up to its SYN-ACK retransmissions) is handed over anyway, and then gets
/// [`HEADER_TIMEOUT`] more.
fn defer_accept(listener: &std::net::TcpListener) {
    use std::os::fd::AsRawFd;
    let secs = HEADER_TIMEOUT.as_secs() as libc::c_int;
    // SAFETY: setsockopt on our own listener with a pointer to a c_int and its size.
    let r = unsafe {
        libc::setsockopt(
            listener.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_DEFER_ACCEPT,
            (&secs as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if r != 0 {
        tracing::debug!(
            "upnp http: TCP_DEFER_ACCEPT: {}",
            io::Error::last_os_error()
        );
    }
}

/// One connection from the queue, non-blocking and close-on-exec in the same call.
fn accept(listener: &std::net::TcpListener) -> io::Result<(StdStream, SocketAddr)> {
    let (s, addr) =
        socket2::SockRef::from(listener).accept4(libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC)?;
    let peer = addr
        .as_socket()
        .ok_or_else(|| io::Error::other("not an IP peer"))?;
    Ok((s.into(), peer))
}

/// Answers what the client has already sent, without blocking; hands whatever would wait to
/// a task ([`conn_task`]).
fn serve_inline(shared: &Arc<Shared>, stream: StdStream, peer: SocketAddr, permit: ConnPermit) {
    let mut conn = Conn::new(peer);
    match conn.read_now(&stream) {
        // Closed (or reset) before a byte: nothing to answer.
        Ok(0) => return,
        Ok(_) => {}
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
        Err(_) => return,
    }
    let sock = socket2::SockRef::from(&stream);
    let (out, closing) = loop {
        match conn.step(shared) {
            Step::Need(_) => break (Vec::new(), false),
            Step::Send(bytes, Then::Close) if conn.input_answered() => {
                // The last answer, all input read: hold the tail of the answer back
                // (MSG_MORE) so that shutdown sends it with the FIN, and the client wakes once.
                match send_now(&sock, &bytes, libc::MSG_MORE) {
                    n if n == bytes.len() => {
                        let _ = stream.shutdown(std::net::Shutdown::Write);
                        return;
                    }
                    n => break (bytes[n..].to_vec(), true),
                }
            }
            Step::Send(bytes, then) => {
                if then != Then::Close {
                    // More answers may follow on this connection: no Nagle delay for them.
                    conn.nodelay(&stream);
                }
                let n = send_now(&sock, &bytes, 0);
                if n < bytes.len() || then == Then::Close {
                    break (bytes[n..].to_vec(), then == Then::Close);
                }
            }
        }
    };
    let shared = shared.clone();
    tokio::spawn(async move {
        let _permit = permit;
        conn_task(&shared, conn, stream, out, closing).await;
    });
}

/// Sends what the socket takes now (0 on an error: the task finds it again).
fn send_now(sock: &socket2::SockRef<'_>, bytes: &[u8], flags: libc::c_int) -> usize {
    let mut sent = 0;
    while sent < bytes.len() {
        match sock.send_with_flags(&bytes[sent..], flags | libc::MSG_NOSIGNAL) {
            Ok(0) => break,
            Ok(n) => sent += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => break,
        }
    }
    sent
}

/// A connection whose next step would wait: `out` to send first, then the next requests
/// (or, if `closing`, the lingering close), within the time limits.
async fn conn_task(
    shared: &Shared,
    mut conn: Conn,
    stream: StdStream,
    mut out: Vec<u8>,
    mut closing: bool,
) {
    conn.nodelay(&stream);
    let Ok(mut stream) = TcpStream::from_std(stream) else {
        return;
    };
    let end = Instant::now() + CONNECTION_TIMEOUT;
    // The phase being waited for, and until when.
    let mut waiting: Option<(Phase, Instant)> = None;
    loop {
        if !out.is_empty() {
            match timeout_at(end, stream.write_all(&out)).await {
                Ok(Ok(())) => out.clear(),
                _ => return,
            }
        }
        if closing {
            if conn.input_answered() {
                let _ = stream.shutdown().await;
            } else {
                linger(stream, end).await;
            }
            return;
        }
        match conn.step(shared) {
            Step::Send(bytes, then) => {
                if then != Then::Interim {
                    waiting = None;
                }
                out = bytes;
                closing = then == Then::Close;
            }
            Step::Need(phase) => {
                let until = match waiting {
                    Some((p, until)) if p == phase => until,
                    _ => {
                        let until = Instant::now() + phase.timeout();
                        waiting = Some((phase, until));
                        until
                    }
                };
                match timeout_at(until.min(end), conn.read(&mut stream)).await {
                    Ok(Ok(n)) if n > 0 => {}
                    // Closed or failed: nobody to answer.
                    Ok(_) => return,
                    // RFC 9110 §15.5.9: a request begun and not finished in time gets 408; an
                    // idle connection just closes.
                    Err(_) if phase == Phase::Body || !conn.buf.is_empty() => {
                        let resp = conn.refuse(shared, StatusCode::REQUEST_TIMEOUT);
                        let _ = stream.try_write(&resp);
                        let _ = stream.shutdown().await;
                        return;
                    }
                    Err(_) => return,
                }
            }
        }
    }
}

/// Half-closes after the last answer, then reads and drops what the client still sends until
/// it closes, for at most [`LINGER`] and [`LINGER_BYTES`] (RFC 9112 §9.6): closing with
/// unread input would reset the connection, and could take the answer with it.
async fn linger(mut stream: TcpStream, end: Instant) {
    let _ = stream.shutdown().await;
    let until = (Instant::now() + LINGER).min(end);
    let _ = timeout_at(until, async {
        let mut sink = [0u8; READ_CHUNK];
        let mut total = 0;
        while let Ok(n @ 1..) = stream.read(&mut sink).await {
            total += n;
            if total > LINGER_BYTES {
                break;
            }
        }
    })
    .await;
}

/// What a connection waits for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Head,
    Body,
}

impl Phase {
    fn timeout(self) -> Duration {
        match self {
            Phase::Head => HEADER_TIMEOUT,
            Phase::Body => BODY_TIMEOUT,
        }
    }
}

/// After sending.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Then {
    /// The answer to a request: on to the next one.
    Next,
    /// 100 Continue: on with the same request.
    Interim,
    /// The last answer: close.
    Close,
}

/// The next thing a connection does.
#[derive(Debug)]
enum Step {
    Send(Vec<u8>, Then),
    Need(Phase),
}

/// One connection's input and request state; the same for the inline and the task path.
#[derive(Debug)]
struct Conn {
    peer: SocketAddr,
    /// Received, not yet answered.
    buf: Vec<u8>,
    /// 100 Continue sent for the current request.
    continued: bool,
    /// The last read filled its chunk.
    read_full: bool,
    nodelay: bool,
}

impl Conn {
    fn new(peer: SocketAddr) -> Conn {
        Conn {
            peer,
            buf: Vec::new(),
            continued: false,
            read_full: false,
            nodelay: false,
        }
    }

    /// One non-blocking read.
    fn read_now(&mut self, stream: &StdStream) -> io::Result<usize> {
        self.buf.reserve(READ_CHUNK);
        let spare = &mut self.buf.spare_capacity_mut()[..READ_CHUNK];
        let n = socket2::SockRef::from(stream).recv(spare)?;
        // SAFETY: recv(2) initialized the first n bytes of the spare capacity.
        unsafe { self.buf.set_len(self.buf.len() + n) };
        self.read_full = n == READ_CHUNK;
        Ok(n)
    }

    async fn read(&mut self, stream: &mut TcpStream) -> io::Result<usize> {
        let mut chunk = [0u8; READ_CHUNK];
        let n = stream.read(&mut chunk).await?;
        self.buf.extend_from_slice(&chunk[..n]);
        self.read_full = n == READ_CHUNK;
        Ok(n)
    }

    fn nodelay(&mut self, stream: &StdStream) {
        if !self.nodelay {
            self.nodelay = true;
            let _ = stream.set_nodelay(true);
        }
    }

    /// Whether every byte received has been answered, so that a close sends no RST: nothing
    /// but line ends left (some clients add one after a body; RFC 9112 §2.2), and the last
    /// read did not fill its chunk (else more may wait).
    fn input_answered(&self) -> bool {
        !self.read_full && self.buf.iter().all(|b| matches!(b, b'\r' | b'\n'))
    }

    /// Answers the request at the head of the input if it is all there.
    fn step(&mut self, shared: &Shared) -> Step {
        let (head, head_len) = match http1::parse_head(&self.buf) {
            Ok(Some(h)) => h,
            Ok(None) => return Step::Need(Phase::Head),
            Err(status) => return Step::Send(self.refuse(shared, status), Then::Close),
        };
        let rest = &self.buf[head_len..];
        // The answer, and the bytes of the request body if it was read or skipped.
        let (resp, used) = match target(shared, &head) {
            Target::Control(kind) => {
                // Refused before reading (and before 100 Continue) if it says it is too long.
                if matches!(head.framing, Framing::Length(n) if n > soap::MAX_REQUEST as u64) {
                    let s = StatusCode::PAYLOAD_TOO_LARGE;
                    return Step::Send(self.refuse(shared, s), Then::Close);
                }
                match http1::body(head.framing, rest, soap::MAX_REQUEST) {
                    Body::Partial if head.expect_continue && !self.continued => {
                        self.continued = true;
                        return Step::Send(http1::CONTINUE.to_vec(), Then::Interim);
                    }
                    Body::Partial => return Step::Need(Phase::Body),
                    Body::TooLarge => {
                        let s = StatusCode::PAYLOAD_TOO_LARGE;
                        return Step::Send(self.refuse(shared, s), Then::Close);
                    }
                    Body::Invalid => {
                        let s = StatusCode::BAD_REQUEST;
                        return Step::Send(self.refuse(shared, s), Then::Close);
                    }
                    Body::Complete { data, used } => {
                        (control(shared, self.peer, kind, &head, &data), Some(used))
                    }
                }
            }
            target => {
                let resp = answer(shared, self.peer, &head, target);
                // A body nobody reads is skipped if it is all here; else the connection
                // closes after the answer (without 100 Continue, the client may not send it).
                match http1::body(head.framing, rest, soap::MAX_REQUEST) {
                    Body::Complete { used, .. } => (resp, Some(used)),
                    _ => (resp, None),
                }
            }
        };
        count(shared, &resp);
        let keep_alive = head.keep_alive && used.is_some();
        let mut out = Vec::with_capacity(256 + resp.body().len());
        http1::write_response(
            &mut out,
            head.version,
            resp.status(),
            resp.headers(),
            resp.body(),
            head.method != Method::HEAD,
            keep_alive,
        );
        // The request is answered; an unread body stays (and the connection closes).
        if let Some(used) = used {
            self.buf.drain(..head_len + used);
        }
        self.continued = false;
        Step::Send(out, if keep_alive { Then::Next } else { Then::Close })
    }

    /// An HTTP error for a request we cannot or will not read to its end; the connection
    /// closes after it.
    fn refuse(&self, shared: &Shared, status: StatusCode) -> Vec<u8> {
        let resp = status_only(status);
        count(shared, &resp);
        let mut out = Vec::with_capacity(160);
        http1::write_response(
            &mut out,
            Version::HTTP_11,
            resp.status(),
            resp.headers(),
            b"",
            true,
            false,
        );
        out
    }
}

/// Every answer counts as a request; a 4xx also as an error.
fn count(shared: &Shared, resp: &Resp) {
    shared.stats.http_requests.fetch_add(1, Ordering::Relaxed);
    if resp.status().is_client_error() {
        shared.stats.http_errors.fetch_add(1, Ordering::Relaxed);
    }
}

fn respond(status: StatusCode, content_type: Option<&'static str>, body: impl Into<Bytes>) -> Resp {
    let mut r = Response::new(body.into());
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

/// What a request is for, from its head alone.
#[derive(Debug, Clone, Copy)]
enum Target {
    Document,
    Control(ServiceKind),
    Event(ServiceKind),
    NotFound,
    NotAllowed,
    /// A control request refused from its head ([`soap_refusal`]).
    Refused(SoapRefusal),
}

/// Why a control request is refused before its body is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SoapRefusal {
    /// `Host` is not the router's LAN address (DNS rebinding): 421 Misdirected Request.
    Host,
    /// Not `text/xml` (UDA 1.1 §3.2.1): 415 Unsupported Media Type.
    ContentType,
    /// No `SOAPACTION` (UDA 1.1 §3.2.1 requires it): the UPnP error 401 Invalid Action.
    NoSoapAction,
}

/// A browser page can POST a `text/plain` body anywhere without asking (a CORS "simple
/// request"), but cannot send `Content-Type: text/xml` or a `SOAPACTION` field to another
/// origin without a preflight this server never grants, and after DNS rebinding its `Host`
/// is the attacker's name: so a control request needs all three (issue 11).
fn soap_refusal(shared: &Shared, head: &Head) -> Option<SoapRefusal> {
    let own = crate::httpguard::own_addrs(shared.http_addr.ip(), shared.lan.0);
    let host = head.headers.get(HOST).map(HeaderValue::as_bytes);
    if !crate::httpguard::host_allowed(host, &own, &[]) {
        return Some(SoapRefusal::Host);
    }
    let ct = head.headers.get(CONTENT_TYPE).map(HeaderValue::as_bytes);
    if !crate::httpguard::media_type_is(ct, "text/xml") {
        return Some(SoapRefusal::ContentType);
    }
    if !head.headers.contains_key("soapaction") {
        return Some(SoapRefusal::NoSoapAction);
    }
    None
}

fn target(shared: &Shared, head: &Head) -> Target {
    let path = head.uri.path();
    let kind = match head.method.as_str() {
        "GET" | "HEAD" => {
            return if shared.documents.contains_key(path) {
                Target::Document
            } else {
                Target::NotFound
            };
        }
        "POST" => find(&shared.control, path).map(|kind| match soap_refusal(shared, head) {
            Some(why) => Target::Refused(why),
            None => Target::Control(kind),
        }),
        "SUBSCRIBE" | "UNSUBSCRIBE" => find(&shared.events, path).map(Target::Event),
        _ => return Target::NotAllowed,
    };
    kind.unwrap_or(Target::NotFound)
}

/// Answers a request that has no body to read (all but control).
fn answer(shared: &Shared, peer: SocketAddr, head: &Head, target: Target) -> Resp {
    match target {
        Target::Document => {
            let Some(doc) = shared.documents.get(head.uri.path()) else {
                return status_only(StatusCode::NOT_FOUND);
            };
            if head.method == Method::HEAD {
                let mut r = respond(StatusCode::OK, Some(soap::CONTENT_TYPE), Bytes::new());
                r.headers_mut()
                    .insert(CONTENT_LENGTH, HeaderValue::from(doc.len()));
                r
            } else {
                let body = Bytes::copy_from_slice(doc.as_bytes());
                respond(StatusCode::OK, Some(soap::CONTENT_TYPE), body)
            }
        }
        Target::Event(kind) => subscribe(shared, peer, kind, head),
        Target::Refused(SoapRefusal::Host) => status_only(StatusCode::MISDIRECTED_REQUEST),
        Target::Refused(SoapRefusal::ContentType) => {
            status_only(StatusCode::UNSUPPORTED_MEDIA_TYPE)
        }
        Target::Refused(SoapRefusal::NoSoapAction) => fault(shared, UpnpError::InvalidAction),
        // Control is answered by `control`, with its body.
        Target::Control(_) | Target::NotFound => status_only(StatusCode::NOT_FOUND),
        Target::NotAllowed => {
            let mut r = status_only(StatusCode::METHOD_NOT_ALLOWED);
            r.headers_mut().insert(
                ALLOW,
                HeaderValue::from_static("GET, HEAD, POST, SUBSCRIBE, UNSUBSCRIBE"),
            );
            r
        }
    }
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

/// POST to a control URL (UDA 1.1 §3.2.1), its head checked ([`soap_refusal`]) and its body
/// read. SOAPACTION with or without quotes; an empty one leaves the body to name the action.
fn control(shared: &Shared, peer: SocketAddr, kind: ServiceKind, head: &Head, body: &[u8]) -> Resp {
    let header = head
        .headers
        .get("soapaction")
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
    let Some(caller) = caller_v4(peer) else {
        return fault(shared, UpnpError::ActionNotAuthorized);
    };
    let areq = match ActionRequest::parse(body) {
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
    // SOAP 1.1 §6.1.1: `""` leaves the intent to the request (here: the body names it).
    if let Some(h) = header
        .as_deref()
        .filter(|h| !h.trim().trim_matches('"').is_empty())
    {
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
fn subscribe(shared: &Shared, peer: SocketAddr, kind: ServiceKind, head: &Head) -> Resp {
    let fields: Vec<(&str, &str)> = head
        .headers
        .iter()
        .filter_map(|(k, v)| Some((k.as_str(), v.to_str().ok()?)))
        .collect();
    let refuse = |status: u16| {
        shared.stats.gena_refused.fetch_add(1, Ordering::Relaxed);
        status_only(StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_REQUEST))
    };
    let parsed = match gena::request_from_fields(head.method.as_str(), &fields) {
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

#[cfg(test)]
#[path = "http_tests.rs"]
mod tests;
