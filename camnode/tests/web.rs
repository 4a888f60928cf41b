//! The web service end to end on loopback: a real listener on 127.0.0.1 with an ephemeral port,
//! the synthetic source, the frame hub; fetched with a plain HTTP/1.1 client over TCP. One test
//! drives the service over an in-memory byte stream, as a relay would.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use camnode::camera::synthetic::Synthetic;
use camnode::camera::{FrameHub, HubSettings};
use camnode::directory::{Directory, NodeCommand, Peer, PeerSource, Reachability, Role};
use camnode::web::{self, ConnInfo, WebConfig, WebState};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};

const W: u32 = 320;
const H: u32 = 240;

struct Node {
    addr: SocketAddr,
    state: Arc<WebState>,
    dir_tx: watch::Sender<Directory>,
    commands: mpsc::Receiver<NodeCommand>,
    _hub: FrameHub,
    _stop: watch::Sender<bool>,
}

fn directory() -> Directory {
    Directory {
        node_id: "00000000000000a1".into(),
        name: "camera 1".into(),
        role: Role::Representative,
        reachability: Reachability::Reachable,
        external_addr: Some(Ipv4Addr::new(203, 0, 113, 2)),
        lan_addr: Some(Ipv4Addr::new(192, 168, 1, 100)),
        external_port: Some(8080),
        lan_port: 8080,
        peers: vec![Peer {
            node_id: "00000000000000b2".into(),
            name: "camera <2>".into(),
            lan_addr: Ipv4Addr::new(192, 168, 1, 101),
            lan_port: 8081,
            external_port: Some(8081),
            source: PeerSource::RouterTable,
            last_seen: Instant::now(),
        }],
        warning: None,
    }
}

async fn start(password: &str) -> Node {
    let source = Synthetic::new(W, H, "00000000000000a1", "camera 1");
    let hub = FrameHub::start(Box::new(source), HubSettings::new(25, 75), "camera 1").unwrap();
    let (dir_tx, dir_rx) = watch::channel(directory());
    let (cmd_tx, commands) = mpsc::channel(8);
    let config = WebConfig {
        domain: String::new(),
        password: password.into(),
        max_streams: 200,
        width: W,
        height: H,
    };
    let state = WebState::new(hub.handle(), dir_rx, cmd_tx, config);
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop_tx, mut stop_rx) = watch::channel(false);
    tokio::spawn(web::serve_listener(state.clone(), listener, async move {
        let _ = stop_rx.wait_for(|s| *s).await;
    }));
    Node {
        addr,
        state,
        dir_tx,
        commands,
        _hub: hub,
        _stop: stop_tx,
    }
}

/// A response: status, headers (lower-case names), body.
struct Reply {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Reply {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// Read a response head from `io` into (status, headers, bytes already read past the head).
async fn read_head<S: AsyncRead + Unpin>(io: &mut S) -> (u16, Vec<(String, String)>, Vec<u8>) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).into_owned();
            let mut lines = head.split("\r\n");
            let status = lines
                .next()
                .and_then(|l| l.split(' ').nth(1))
                .and_then(|s| s.parse().ok())
                .unwrap();
            let headers = lines
                .filter_map(|l| l.split_once(':'))
                .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
                .collect();
            return (status, headers, buf[end + 4..].to_vec());
        }
        let n = io.read(&mut chunk).await.unwrap();
        assert!(n > 0, "connection closed before the response head");
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// One request on a fresh connection; the body is read by Content-Length.
async fn exchange<S: AsyncRead + AsyncWrite + Unpin>(io: &mut S, request: &str) -> Reply {
    io.write_all(request.as_bytes()).await.unwrap();
    let (status, headers, mut body) = read_head(io).await;
    let len: usize = headers
        .iter()
        .find(|(n, _)| n == "content-length")
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0);
    let mut chunk = [0u8; 8192];
    while body.len() < len {
        let n = io.read(&mut chunk).await.unwrap();
        assert!(n > 0, "connection closed mid-body");
        body.extend_from_slice(&chunk[..n]);
    }
    Reply {
        status,
        headers,
        body,
    }
}

async fn get(addr: SocketAddr, path: &str) -> Reply {
    let mut s = TcpStream::connect(addr).await.unwrap();
    exchange(
        &mut s,
        &format!("GET {path} HTTP/1.1\r\nHost: cam\r\nConnection: close\r\n\r\n"),
    )
    .await
}

async fn post(addr: SocketAddr, path: &str, content_type: &str, body: &str) -> Reply {
    let mut s = TcpStream::connect(addr).await.unwrap();
    let req = format!(
        "POST {path} HTTP/1.1\r\nHost: cam\r\nConnection: close\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    exchange(&mut s, &req).await
}

fn decode_jpeg(data: &[u8]) -> (u16, u16) {
    let mut d = jpeg_decoder::Decoder::new(data);
    d.decode().expect("a valid JPEG");
    let info = d.info().unwrap();
    (info.width, info.height)
}

/// Read `n` parts of an MJPEG stream, each by its Content-Length.
async fn read_parts(addr: SocketAddr, path: &str, n: usize) -> (Reply, Vec<Vec<u8>>) {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: cam\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let (status, headers, mut buf) = read_head(&mut s).await;
    let reply = Reply {
        status,
        headers,
        body: Vec::new(),
    };
    assert_eq!(reply.header("transfer-encoding"), Some("chunked"));
    // Undo the chunked transfer coding as bytes arrive, then split parts by Content-Length.
    let mut decoded = Vec::new();
    let mut parts = Vec::new();
    let mut chunk = [0u8; 16384];
    let deadline = Instant::now() + Duration::from_secs(10);
    while parts.len() < n {
        assert!(
            Instant::now() < deadline,
            "stream too slow: {} parts",
            parts.len()
        );
        // Move whole chunks from `buf` to `decoded`.
        while let Some(eol) = buf.windows(2).position(|w| w == b"\r\n") {
            let size = usize::from_str_radix(std::str::from_utf8(&buf[..eol]).unwrap().trim(), 16)
                .unwrap();
            if buf.len() < eol + 2 + size + 2 {
                break;
            }
            decoded.extend_from_slice(&buf[eol + 2..eol + 2 + size]);
            buf.drain(..eol + 2 + size + 2);
        }
        // Split complete parts off `decoded`.
        while let Some(head_end) = decoded.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&decoded[..head_end]).into_owned();
            assert!(head.trim_start().starts_with("--camnode-frame"), "{head}");
            let len: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("Content-Length: "))
                .and_then(|v| v.trim().parse().ok())
                .expect("Content-Length in every part");
            if decoded.len() < head_end + 4 + len {
                break;
            }
            parts.push(decoded[head_end + 4..head_end + 4 + len].to_vec());
            decoded.drain(..head_end + 4 + len);
        }
        if parts.len() >= n {
            break;
        }
        let got = s.read(&mut chunk).await.unwrap();
        assert!(got > 0, "stream ended");
        buf.extend_from_slice(&chunk[..got]);
    }
    (reply, parts)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn page_snapshot_stream_status() {
    let node = start("").await;
    let page = get(node.addr, "/").await;
    assert_eq!(page.status, 200);
    assert!(
        page.header("content-type")
            .unwrap()
            .starts_with("text/html")
    );
    let html = page.text();
    assert!(html.contains("<h1 id=\"name\">camera 1</h1>"));
    assert!(html.contains("src=\"/stream.mjpg\""));
    // A loopback viewer is on the node itself: LAN links, names escaped.
    assert!(
        html.contains("<a href=\"http://192.168.1.101:8081/\">camera &lt;2&gt;</a>"),
        "{html}"
    );

    for path in ["/snapshot.jpg", "/?action=snapshot"] {
        let snap = get(node.addr, path).await;
        assert_eq!(snap.status, 200, "{path}");
        assert_eq!(snap.header("content-type"), Some("image/jpeg"));
        assert_eq!(decode_jpeg(&snap.body), (W as u16, H as u16));
    }

    let (head, parts) = read_parts(node.addr, "/stream.mjpg", 3).await;
    assert_eq!(head.status, 200);
    assert_eq!(
        head.header("content-type"),
        Some("multipart/x-mixed-replace; boundary=camnode-frame")
    );
    assert_eq!(parts.len(), 3);
    for p in &parts {
        assert_eq!(decode_jpeg(p), (W as u16, H as u16));
    }
    assert_ne!(parts[0], parts[2], "the picture moves");
    let (_, alias) = read_parts(node.addr, "/?action=stream", 1).await;
    assert_eq!(decode_jpeg(&alias[0]), (W as u16, H as u16));

    let status = get(node.addr, "/status.json").await;
    assert_eq!(status.status, 200);
    let v: serde_json::Value = serde_json::from_slice(&status.body).unwrap();
    assert_eq!(v["role"], "representative");
    assert_eq!(v["name"], "camera 1");
    assert_eq!(v["external_addr"], "203.0.113.2");
    assert_eq!(v["ports"]["external"], 8080);
    assert_eq!(v["peers"][0]["name"], "camera <2>");
    assert_eq!(v["peers"][0]["url"], "http://192.168.1.101:8081/");
    assert_eq!(v["reachability"]["state"], "reachable");
    assert_eq!(v["camera"]["width"], W);
    // At least the three stream parts were encoded (a loaded machine may skip frames between
    // them, so no more is promised); and each frame was encoded exactly once for everyone.
    assert!(v["camera"]["encodes"].as_u64().unwrap() >= 3);
    assert_eq!(v["camera"]["encodes"], v["camera"]["published"]);

    let missing = get(node.addr, "/nothing-here").await;
    assert_eq!(missing.status, 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rename_reaches_port_management_and_the_page() {
    let mut node = start("").await;
    let r = post(
        node.addr,
        "/name",
        "application/x-www-form-urlencoded",
        "name=front+door",
    )
    .await;
    assert_eq!(r.status, 303);
    assert_eq!(r.header("location"), Some("/"));
    let cmd = node.commands.recv().await.unwrap();
    assert_eq!(cmd, NodeCommand::Rename("front door".into()));
    // Port management applies it and publishes the Directory; the page and status follow.
    node.dir_tx.send_modify(|d| d.name = "front door".into());
    assert!(
        get(node.addr, "/")
            .await
            .text()
            .contains("<h1 id=\"name\">front door</h1>")
    );
    let v: serde_json::Value =
        serde_json::from_slice(&get(node.addr, "/status.json").await.body).unwrap();
    assert_eq!(v["name"], "front door");

    let bad = post(node.addr, "/name", "application/json", "{\"name\": \"\"}").await;
    assert_eq!(bad.status, 400);
    assert!(bad.text().contains("empty"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ptz_zooms_the_picture() {
    let node = start("").await;
    let before = get(node.addr, "/snapshot.jpg").await.body;
    let r = post(
        node.addr,
        "/ptz",
        "application/json",
        r#"{"pan": 0.5, "zoom": 3}"#,
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(v["ptz"]["zoom"], 3.0);
    // State changes only by POST (issue 11): a GET with parameters is refused and moves nothing.
    let r = get(node.addr, "/ptz?tilt=-1").await;
    assert_eq!(r.status, 405, "{}", r.text());
    let r = post(
        node.addr,
        "/ptz?tilt=-1",
        "application/x-www-form-urlencoded",
        "",
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let v: serde_json::Value = serde_json::from_slice(&get(node.addr, "/ptz").await.body).unwrap();
    assert_eq!(
        (
            v["ptz"]["pan"].as_f64(),
            v["ptz"]["tilt"].as_f64(),
            v["ptz"]["zoom"].as_f64()
        ),
        (Some(0.5), Some(-1.0), Some(3.0))
    );
    get(node.addr, "/snapshot.jpg").await;
    let after = get(node.addr, "/snapshot.jpg").await.body;
    assert_eq!(decode_jpeg(&after), (W as u16, H as u16));
    assert_ne!(before, after);
    let status: serde_json::Value =
        serde_json::from_slice(&get(node.addr, "/status.json").await.body).unwrap();
    assert_eq!(status["camera"]["ptz_digital"]["zoom"], 3.0);
    assert_eq!(
        post(
            node.addr,
            "/ptz?zoom=0",
            "application/x-www-form-urlencoded",
            ""
        )
        .await
        .status,
        400
    );
}

/// A connection handed over by a relay: any byte stream, the viewer's address as the relay saw it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn served_over_any_byte_stream_with_outside_rules() {
    let node = start("").await;
    let (mut client, server) = tokio::io::duplex(64 * 1024);
    let conn = ConnInfo {
        peer: SocketAddr::from(([198, 51, 100, 10], 51000)),
        local: None,
    };
    tokio::spawn(web::serve_connection(node.state.clone(), server, conn));
    let status = exchange(
        &mut client,
        "GET /status.json HTTP/1.1\r\nHost: cam\r\n\r\n",
    )
    .await;
    let v: serde_json::Value = serde_json::from_slice(&status.body).unwrap();
    assert_eq!(v["viewer"]["place"], "outside");
    assert_eq!(v["peers"][0]["url"], "http://203.0.113.2:8081/");
    let body = r#"{"name":"x"}"#;
    let req = format!(
        "POST /name HTTP/1.1\r\nHost: cam\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    let refused = exchange(&mut client, &req).await;
    assert_eq!(refused.status, 403);
    assert!(refused.text().contains("no password"), "{}", refused.text());
    let snap = exchange(
        &mut client,
        "GET /snapshot.jpg HTTP/1.1\r\nHost: cam\r\n\r\n",
    )
    .await;
    assert_eq!(decode_jpeg(&snap.body), (W as u16, H as u16));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outside_changes_with_the_password() {
    let node = start("pw").await;
    let (mut client, server) = tokio::io::duplex(64 * 1024);
    let conn = ConnInfo {
        peer: SocketAddr::from(([198, 51, 100, 10], 51000)),
        local: None,
    };
    tokio::spawn(web::serve_connection(node.state.clone(), server, conn));
    let ask = |auth: &str| {
        format!("POST /ptz?zoom=2 HTTP/1.1\r\nHost: cam\r\nContent-Length: 0\r\n{auth}\r\n")
    };
    let r = exchange(&mut client, &ask("")).await;
    assert_eq!(r.status, 401);
    assert!(r.header("www-authenticate").unwrap().starts_with("Basic"));
    // "viewer:pw"
    let r = exchange(&mut client, &ask("Authorization: Basic dmlld2VyOnB3\r\n")).await;
    assert_eq!(r.status, 200);
}
