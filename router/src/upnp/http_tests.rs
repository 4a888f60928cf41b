//! Tests of the IGD's HTTP server ([`super`]) over real sockets on loopback.

use std::sync::Mutex;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::*;
use crate::nat::{Nat, NatConfig};
use crate::upnp::{Clock, ManualClock, UpnpConfig, UpnpService};

const WAN: Ipv4Addr = Ipv4Addr::new(60, 120, 76, 64);

struct Igd {
    addr: SocketAddr,
    shared: Arc<Shared>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
}

impl Igd {
    async fn start() -> Igd {
        Self::start_with(|_| {}).await
    }

    async fn start_with(tweak: impl FnOnce(&mut UpnpConfig)) -> Igd {
        let nat = Nat::new(NatConfig::new(WAN, Ipv4Addr::LOCALHOST, 8), 1);
        let mut cfg = UpnpConfig::loopback(Ipv4Addr::LOCALHOST);
        cfg.seed = Some(7);
        tweak(&mut cfg);
        let clock: Arc<dyn Clock> = Arc::new(ManualClock::new());
        let svc = UpnpService::bind(cfg, Arc::new(Mutex::new(nat)), clock)
            .await
            .unwrap();
        let shared = svc.shared.clone();
        let addr = shared.http_addr;
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(svc.run(async move {
            let _ = rx.await;
        }));
        Igd {
            addr,
            shared,
            stop: Some(tx),
            task,
        }
    }

    async fn stop(mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        let _ = (&mut self.task).await;
    }
}

fn envelope(action: &str) -> String {
    envelope_with(1, action, "")
}

fn envelope_with(version: u32, action: &str, args: &str) -> String {
    format!(
        "<?xml version=\"1.0\"?><s:Envelope xmlns:s=\"http://schemas.xmlsoap.org/soap/envelope/\" s:encodingStyle=\"http://schemas.xmlsoap.org/soap/encoding/\"><s:Body><u:{action} xmlns:u=\"urn:schemas-upnp-org:service:WANIPConnection:{version}\">{args}</u:{action}></s:Body></s:Envelope>"
    )
}

fn post(body: &str, extra: &str) -> Vec<u8> {
    format!(
        "POST /ctl/IPConn HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: text/xml\r\nSOAPAction: \"\"\r\nContent-Length: {}\r\n{extra}\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// A GetExternalIPAddress request, with `extra` fields.
fn soap_request(extra: &str) -> Vec<u8> {
    let body = envelope("GetExternalIPAddress");
    format!(
        "POST /ctl/IPConn HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: text/xml\r\nSOAPAction: \"urn:schemas-upnp-org:service:WANIPConnection:1#GetExternalIPAddress\"\r\nContent-Length: {}\r\n{extra}\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// One response from `s` (input kept in `buf` across calls): (status, head, body).
async fn response(s: &mut TcpStream, buf: &mut Vec<u8>, head_req: bool) -> (u16, String, Vec<u8>) {
    let end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        let mut chunk = [0u8; 4096];
        let n = s.read(&mut chunk).await.unwrap();
        assert!(
            n > 0,
            "closed before a response: {:?}",
            String::from_utf8_lossy(buf)
        );
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8(buf[..end].to_vec()).unwrap();
    let status = head[9..12].parse().unwrap();
    let len: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length: "))
        .map_or(0, |v| v.trim().parse().unwrap());
    let len = if head_req || status == 100 { 0 } else { len };
    while buf.len() < end + len {
        let mut chunk = [0u8; 4096];
        let n = s.read(&mut chunk).await.unwrap();
        assert!(n > 0, "closed within a body");
        buf.extend_from_slice(&chunk[..n]);
    }
    let body = buf[end..end + len].to_vec();
    buf.drain(..end + len);
    (status, head, body)
}

/// Reads to the end; what came.
async fn rest(s: &mut TcpStream, mut buf: Vec<u8>) -> Vec<u8> {
    let _ = tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut buf)).await;
    buf
}

#[tokio::test]
async fn split_reads_keep_alive_and_pipelining() {
    let igd = Igd::start().await;
    let mut s = TcpStream::connect(igd.addr).await.unwrap();
    // A request in pieces, the head and the body split anywhere.
    let req = soap_request("");
    for piece in req.chunks(7) {
        s.write_all(piece).await.unwrap();
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let mut buf = Vec::new();
    let (status, head, body) = response(&mut s, &mut buf, false).await;
    assert_eq!(status, 200, "{head}");
    assert!(
        !head.contains("connection:"),
        "HTTP/1.1 keep-alive is the default: {head}"
    );
    assert!(String::from_utf8_lossy(&body).contains(&WAN.to_string()));
    // Pipelined on the same connection: GET, HEAD, a SOAP call, then one that closes.
    let mut three = b"GET /rootDesc.xml HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\nHEAD /rootDesc.xml HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".to_vec();
    three.extend_from_slice(&soap_request(""));
    three.extend_from_slice(b"GET /nothing HTTP/1.1\r\nConnection: close\r\n\r\n");
    s.write_all(&three).await.unwrap();
    let (status, _, doc) = response(&mut s, &mut buf, false).await;
    assert_eq!(status, 200);
    assert!(doc.starts_with(b"<?xml"));
    let (status, head, body) = response(&mut s, &mut buf, true).await;
    assert_eq!(status, 200);
    assert!(
        head.contains(&format!("content-length: {}\r\n", doc.len())),
        "{head}"
    );
    assert!(body.is_empty());
    let (status, _, body) = response(&mut s, &mut buf, false).await;
    assert_eq!(status, 200);
    assert!(String::from_utf8_lossy(&body).contains("NewExternalIPAddress"));
    let (status, head, _) = response(&mut s, &mut buf, false).await;
    assert_eq!(status, 404);
    assert!(head.contains("connection: close\r\n"), "{head}");
    assert!(
        rest(&mut s, buf).await.is_empty(),
        "nothing after the last answer"
    );
    // HTTP/1.0 keep-alive only when asked for.
    let mut s = TcpStream::connect(igd.addr).await.unwrap();
    s.write_all(b"GET /rootDesc.xml HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
        .await
        .unwrap();
    let mut buf = Vec::new();
    let (status, head, _) = response(&mut s, &mut buf, false).await;
    assert!(
        status == 200 && head.starts_with("HTTP/1.0 200 OK\r\n"),
        "{head}"
    );
    assert!(head.contains("connection: keep-alive\r\n"), "{head}");
    s.write_all(b"GET /rootDesc.xml HTTP/1.0\r\n\r\n")
        .await
        .unwrap();
    let (status, _, _) = response(&mut s, &mut buf, false).await;
    assert_eq!(status, 200);
    assert!(rest(&mut s, buf).await.is_empty());
    let stats = igd.shared.stats.http_requests.load(Ordering::Relaxed);
    assert_eq!(stats, 7);
    igd.stop().await;
}

#[tokio::test]
async fn one_request_per_connection_as_upnpc_does() {
    let igd = Igd::start().await;
    for _ in 0..50 {
        let mut s = TcpStream::connect(igd.addr).await.unwrap();
        s.write_all(&soap_request("Connection: close\r\n"))
            .await
            .unwrap();
        let text = rest(&mut s, Vec::new()).await;
        let text = String::from_utf8_lossy(&text);
        assert!(text.starts_with("HTTP/1.1 200 OK\r\n"), "{text}");
        assert!(text.contains("connection: close\r\n"), "{text}");
        assert!(text.ends_with("</s:Envelope>\r\n"), "{text}");
    }
    igd.stop().await;
}

#[tokio::test]
async fn expect_continue() {
    let igd = Igd::start().await;
    let req = soap_request("Expect: 100-continue\r\n");
    let split = req.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
    let mut s = TcpStream::connect(igd.addr).await.unwrap();
    s.write_all(&req[..split]).await.unwrap();
    let mut buf = Vec::new();
    let (status, head, _) = response(&mut s, &mut buf, false).await;
    assert_eq!(status, 100, "{head}");
    s.write_all(&req[split..]).await.unwrap();
    let (status, _, _) = response(&mut s, &mut buf, false).await;
    assert_eq!(status, 200);
    // Too long by its Content-Length: 413 at once, no 100.
    let mut s = TcpStream::connect(igd.addr).await.unwrap();
    s.write_all(
        b"POST /ctl/IPConn HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: text/xml\r\nSOAPAction: \"\"\r\nExpect: 100-continue\r\nContent-Length: 20000\r\n\r\n",
    )
    .await
    .unwrap();
    let mut buf = Vec::new();
    let (status, head, _) = response(&mut s, &mut buf, false).await;
    assert_eq!(status, 413, "{head}");
    assert!(rest(&mut s, buf).await.is_empty());
    igd.stop().await;
}

#[tokio::test]
async fn refused_requests_get_http_errors() {
    let igd = Igd::start().await;
    let chunked = |body: &[u8]| {
        let mut r = b"POST /ctl/IPConn HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: text/xml\r\nSOAPAction: \"\"\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n".to_vec();
        for c in body.chunks(1000) {
            r.extend_from_slice(format!("{:x}\r\n", c.len()).as_bytes());
            r.extend_from_slice(c);
            r.extend_from_slice(b"\r\n");
        }
        r.extend_from_slice(b"0\r\n\r\n");
        r
    };
    let mut big_head = b"GET /rootDesc.xml HTTP/1.1\r\n".to_vec();
    while big_head.len() < 20_000 {
        big_head
            .extend_from_slice(b"X-Filler: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n");
    }
    big_head.extend_from_slice(b"\r\n");
    let cases: Vec<(Vec<u8>, u16)> = vec![
        (chunked(envelope("GetExternalIPAddress").as_bytes()), 200),
        (chunked(&vec![b' '; 20_000]), 413),
        (
            b"POST /ctl/IPConn HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: text/xml\r\nSOAPAction: \"\"\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n".to_vec(),
            400,
        ),
        (
            b"POST /ctl/IPConn HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: text/xml\r\nSOAPAction: \"\"\r\nTransfer-Encoding: gzip, chunked\r\n\r\n".to_vec(),
            501,
        ),
        (
            b"POST /ctl/IPConn HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: text/xml\r\nSOAPAction: \"\"\r\nContent-Length: 3, 4\r\n\r\nabcd".to_vec(),
            400,
        ),
        (big_head, 431),
        (
            b"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03".to_vec(),
            400,
        ),
        (b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec(), 505),
        (b"GET / HTTP/1.1\r\nBad Name: x\r\n\r\n".to_vec(), 400),
        (
            b"PUT /ctl/IPConn HTTP/1.1\r\nContent-Length: 2\r\n\r\nhi".to_vec(),
            405,
        ),
        (
            b"POST /nowhere HTTP/1.1\r\nContent-Length: 100000\r\n\r\n".to_vec(),
            404,
        ),
    ];
    // Issue 11: what a browser page can send without a CORS preflight (a text/plain POST, no
    // SOAPAction), and a rebound name in Host, are refused before the body is read.
    let add = envelope_with(
        2,
        "AddPortMapping",
        "<NewRemoteHost></NewRemoteHost><NewExternalPort>8080</NewExternalPort><NewProtocol>TCP</NewProtocol><NewInternalPort>8080</NewInternalPort><NewInternalClient>127.0.0.1</NewInternalClient><NewEnabled>1</NewEnabled><NewPortMappingDescription>x</NewPortMappingDescription><NewLeaseDuration>0</NewLeaseDuration>",
    );
    let sa = "SOAPAction: \"urn:schemas-upnp-org:service:WANIPConnection:2#AddPortMapping\"\r\n";
    let with = |host: &str, ct: &str, sa: &str| {
        format!(
            "POST /ctl/IPConn HTTP/1.1\r\nHost: {host}\r\n{ct}{sa}Content-Length: {}\r\nConnection: close\r\n\r\n{add}",
            add.len()
        )
        .into_bytes()
    };
    let xml = "Content-Type: text/xml\r\n";
    let cases = cases.into_iter().chain([
        (with("evil.example", xml, sa), 421),
        (with("127.0.0.1.evil.example:5000", xml, sa), 421),
        (with("127.0.0.2", xml, sa), 421),
        (with("127.0.0.1", "Content-Type: text/plain\r\n", sa), 415),
        (
            with(
                "127.0.0.1",
                "Content-Type: application/x-www-form-urlencoded\r\n",
                sa,
            ),
            415,
        ),
        (with("127.0.0.1", "", sa), 415),
        (with("127.0.0.1", xml, ""), 500),
    ]);
    for (req, want) in cases {
        let mut s = TcpStream::connect(igd.addr).await.unwrap();
        s.write_all(&req).await.unwrap();
        let text = rest(&mut s, Vec::new()).await;
        let text = String::from_utf8_lossy(&text);
        assert!(
            text.starts_with(&format!("HTTP/1.1 {want} ")),
            "{want} for {:?}: {text}",
            String::from_utf8_lossy(&req[..req.len().min(80)])
        );
        if want == 500 {
            assert!(text.contains("<errorCode>401</errorCode>"), "{text}");
        }
    }
    // None of them made a mapping; with all three it is made.
    assert!(lock(&igd.shared.core).table().iter().count() == 0);
    let ok = with(
        "127.0.0.1:5000",
        "Content-Type: text/xml; charset=\"utf-8\"\r\n",
        sa,
    );
    let mut s = TcpStream::connect(igd.addr).await.unwrap();
    s.write_all(&ok).await.unwrap();
    let text = rest(&mut s, Vec::new()).await;
    assert!(
        text.starts_with(b"HTTP/1.1 200 "),
        "{}",
        String::from_utf8_lossy(&text)
    );
    assert_eq!(lock(&igd.shared.core).table().iter().count(), 1);
    igd.stop().await;
}

/// Issue 11: one client holding unfinished requests gets [`MAX_CONNECTIONS_PER_CLIENT`]
/// connections, the next are closed at once, and another client is served meanwhile.
#[tokio::test]
async fn one_client_cannot_hold_every_connection() {
    let igd = Igd::start().await;
    let mut held = Vec::new();
    for _ in 0..MAX_CONNECTIONS_PER_CLIENT + 20 {
        let mut s = TcpStream::connect(igd.addr).await.unwrap();
        s.write_all(b"GET /rootDesc.xml HTTP/1.1\r\nHost: 127.0.0.1\r\n")
            .await
            .unwrap();
        held.push(s);
    }
    // The ones past the cap are closed without an answer.
    let mut closed = 0;
    for s in &mut held {
        let mut b = [0u8; 64];
        match tokio::time::timeout(Duration::from_millis(100), s.read(&mut b)).await {
            Ok(Ok(0)) | Ok(Err(_)) => closed += 1,
            Ok(Ok(n)) => panic!("an answer to an unfinished head: {:?}", &b[..n]),
            Err(_) => {}
        }
    }
    assert_eq!(closed, 20);
    assert_eq!(igd.shared.stats.http_refused.load(Ordering::Relaxed), 20);
    // Another LAN host (another loopback address) is served at once.
    let other = tokio::net::TcpSocket::new_v4().unwrap();
    other.bind("127.0.0.2:0".parse().unwrap()).unwrap();
    let mut s = other.connect(igd.addr).await.unwrap();
    s.write_all(b"GET /rootDesc.xml HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let text = tokio::time::timeout(Duration::from_secs(2), rest(&mut s, Vec::new()))
        .await
        .expect("served while the other client holds its share");
    assert!(text.starts_with(b"HTTP/1.1 200 "));
    // So is the first client, once it lets one go (and the server has seen it go).
    held.truncate(MAX_CONNECTIONS_PER_CLIENT - 1);
    let deadline = std::time::Instant::now() + Duration::from_secs(3);
    loop {
        let mut s = TcpStream::connect(igd.addr).await.unwrap();
        s.write_all(b"GET /rootDesc.xml HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
            .await
            .unwrap();
        if rest(&mut s, Vec::new()).await.starts_with(b"HTTP/1.1 200 ") {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "never served again");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    drop(held);
    igd.stop().await;
}

#[tokio::test]
async fn slow_requests_get_408() {
    let igd = Igd::start().await;
    let t0 = std::time::Instant::now();
    let mut head = TcpStream::connect(igd.addr).await.unwrap();
    head.write_all(b"POST /ctl/IPConn HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: text/xml\r\nSOAPAction: \"\"\r\n")
        .await
        .unwrap();
    let req = soap_request("");
    let mut body = TcpStream::connect(igd.addr).await.unwrap();
    body.write_all(&req[..req.len() - 10]).await.unwrap();
    // Others are served meanwhile.
    let mut s = TcpStream::connect(igd.addr).await.unwrap();
    s.write_all(&soap_request("Connection: close\r\n"))
        .await
        .unwrap();
    assert!(rest(&mut s, Vec::new()).await.starts_with(b"HTTP/1.1 200 "));
    for s in [&mut head, &mut body] {
        let text = rest(s, Vec::new()).await;
        let text = String::from_utf8_lossy(&text);
        assert!(text.starts_with("HTTP/1.1 408 "), "{text}");
    }
    let took = t0.elapsed();
    assert!(took >= HEADER_TIMEOUT.min(BODY_TIMEOUT), "{took:?}");
    assert!(took < HEADER_TIMEOUT.max(BODY_TIMEOUT) * 2, "{took:?}");
    igd.stop().await;
}

#[tokio::test]
async fn an_answer_larger_than_the_socket_buffer_arrives_whole() {
    let igd = Igd::start_with(|cfg| {
        cfg.table.max_total = 1000;
        cfg.table.max_per_client = 1000;
    })
    .await;
    let peer = SocketAddr::from((Ipv4Addr::LOCALHOST, 4000));
    for port in 20000..21000 {
        let args = format!(
            "<NewRemoteHost></NewRemoteHost><NewExternalPort>{port}</NewExternalPort><NewProtocol>TCP</NewProtocol><NewInternalPort>{port}</NewInternalPort><NewInternalClient>127.0.0.1</NewInternalClient><NewEnabled>1</NewEnabled><NewPortMappingDescription>a rather long description to make the listing longer</NewPortMappingDescription><NewLeaseDuration>3600</NewLeaseDuration>"
        );
        let mut conn = Conn::new(peer);
        conn.buf = post(&envelope_with(1, "AddPortMapping", &args), "");
        let Step::Send(out, _) = conn.step(&igd.shared) else {
            panic!()
        };
        assert!(out.starts_with(b"HTTP/1.1 200 "));
    }
    let list = envelope_with(
        2,
        "GetListOfPortMappings",
        "<NewStartPort>1</NewStartPort><NewEndPort>65535</NewEndPort><NewProtocol>TCP</NewProtocol><NewManage>1</NewManage><NewNumberOfPorts>0</NewNumberOfPorts>",
    );
    // A small receive window, and nothing read for a while: the answer waits in the
    // server's send buffer (on loopback, with its 64 KiB MSS, that buffer takes even this
    // answer whole; `the_task_sends_the_rest_of_an_answer` covers a partial send).
    let sock = tokio::net::TcpSocket::new_v4().unwrap();
    sock.set_recv_buffer_size(4096).unwrap();
    let mut s = sock.connect(igd.addr).await.unwrap();
    s.write_all(&post(&list, "Connection: close\r\n"))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let text = rest(&mut s, Vec::new()).await;
    let head_end = text.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
    let head = String::from_utf8_lossy(&text[..head_end]);
    assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
    let len: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length: "))
        .unwrap()
        .parse()
        .unwrap();
    assert!(len > 300_000, "{len}");
    assert_eq!(text.len() - head_end, len);
    assert!(text.ends_with(b"</s:Envelope>\r\n"));
    assert_eq!(
        String::from_utf8_lossy(&text)
            .matches("<p:PortMappingEntry>")
            .count(),
        1000
    );
    igd.stop().await;
}

/// What the inline path could not send goes out from the task, then the FIN.
#[tokio::test]
async fn the_task_sends_the_rest_of_an_answer() {
    let igd = Igd::start().await;
    let l = std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
    let client = std::net::TcpStream::connect(l.local_addr().unwrap()).unwrap();
    let (server, peer) = l.accept().unwrap();
    server.set_nonblocking(true).unwrap();
    let rest_of_answer: Vec<u8> = (0..3_000_000u32).map(|i| i as u8).collect();
    let want = rest_of_answer.clone();
    let shared = igd.shared.clone();
    let task = tokio::spawn(async move {
        conn_task(&shared, Conn::new(peer), server, rest_of_answer, true).await;
    });
    let got = tokio::task::spawn_blocking(move || {
        let mut got = Vec::new();
        std::io::Read::read_to_end(&mut &client, &mut got).unwrap();
        got
    })
    .await
    .unwrap();
    task.await.unwrap();
    assert!(got == want, "{} bytes of {}", got.len(), want.len());
    igd.stop().await;
}

#[tokio::test]
async fn stop_ends_the_accept_thread_and_closes_the_listener() {
    let igd = Igd::start().await;
    let addr = igd.addr;
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(&soap_request("Connection: close\r\n"))
        .await
        .unwrap();
    assert!(rest(&mut s, Vec::new()).await.starts_with(b"HTTP/1.1 200 "));
    let threads = || {
        std::fs::read_dir("/proc/self/task")
            .unwrap()
            .flatten()
            .filter(|t| {
                std::fs::read_to_string(t.path().join("comm"))
                    .is_ok_and(|c| c.trim() == "upnp-http")
            })
            .count()
    };
    assert!(threads() >= 1);
    igd.stop().await;
    let refused = TcpStream::connect(addr).await.unwrap_err();
    assert_eq!(refused.kind(), io::ErrorKind::ConnectionRefused);
}

/// Feeds `input` to a connection's state machine in pieces of `cut`, as the drivers do
/// (answers taken, more input when it asks for some); it must stop or ask for more.
fn run(shared: &Shared, input: &[u8], cut: usize) {
    let mut conn = Conn::new(SocketAddr::from((Ipv4Addr::LOCALHOST, 4000)));
    let mut fed = 0;
    for _ in 0..10_000 {
        match conn.step(shared) {
            Step::Send(out, then) => {
                assert!(
                    out.starts_with(b"HTTP/1."),
                    "{:?}",
                    String::from_utf8_lossy(&out)
                );
                if then == Then::Close {
                    return;
                }
            }
            Step::Need(_) if fed == input.len() => return,
            Step::Need(_) => {
                let n = cut.min(input.len() - fed);
                conn.buf.extend_from_slice(&input[fed..fed + n]);
                fed += n;
            }
        }
    }
    panic!("no progress on {:?}", String::from_utf8_lossy(input));
}

#[tokio::test]
async fn any_input_gets_an_answer_or_a_wait_never_a_panic() {
    let igd = Igd::start().await;
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    let mut rand = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let mut sub = b"SUBSCRIBE /evt/IPConn HTTP/1.1\r\nCALLBACK: <http://127.0.0.1:9/>\r\nNT: upnp:event\r\nTIMEOUT: Second-60\r\n\r\n".to_vec();
    sub.extend_from_slice(&soap_request("Transfer-Encoding: chunked\r\n"));
    let seeds = [
        soap_request(""),
        soap_request("Expect: 100-continue\r\n"),
        b"GET /rootDesc.xml HTTP/1.0\r\n\r\nHEAD /L3F.xml HTTP/1.1\r\n\r\n".to_vec(),
        sub,
        b"POST /ctl/IPConn HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: text/xml\r\nSOAPAction: \"\"\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n".to_vec(),
    ];
    for base in &seeds {
        for cut in [1, 3, 64, 4096] {
            run(&igd.shared, base, cut);
        }
        for _ in 0..300 {
            let mut v = base.clone();
            for _ in 0..(rand() % 8 + 1) {
                let i = (rand() as usize) % v.len();
                match rand() % 4 {
                    0 => v[i] = rand() as u8,
                    1 => v.truncate(i),
                    2 => v.insert(i, b"\r\n:; \x00\xff0"[(rand() % 8) as usize]),
                    _ => {
                        v.remove(i);
                    }
                }
                if v.is_empty() {
                    break;
                }
            }
            run(&igd.shared, &v, (rand() % 200 + 1) as usize);
        }
    }
    for _ in 0..300 {
        let v: Vec<u8> = (0..rand() % 600).map(|_| rand() as u8).collect();
        run(&igd.shared, &v, 97);
    }
    igd.stop().await;
}
