//! The relay over loopback: a real relay (`relay::server::serve`), a small test device that
//! speaks the protocol with `shared::relayproto` (UDP notifications, TLS back-connection checked
//! against the lab CA, hello, then HTTP/1.1 with a canned answer), and viewers over HTTP(S).
//! Loopback has all of 127.0.0.0/8: the device notifies from 127.0.0.2 so a viewer on 127.0.0.1
//! is on another network; a viewer on 127.0.0.2 is on the device's (seed 004).

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Full, combinators::UnsyncBoxBody};
use hyper::body::{Body, Frame, Incoming};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use relay::core::{Keys, Settings};
use relay::server::{Listeners, Options, serve};
use rustls::pki_types::ServerName;
use shared::relayproto::{
    Body as Msg, Hello, HelloStatus, Notify, NotifyKind, Repr, Secret, format_device_id,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpSocket, TcpStream, UdpSocket};
use tokio::sync::{mpsc, oneshot};
use tokio_rustls::TlsConnector;

const CAM: u64 = 0x00c0_ffee_0000_0001;
const LAN: &str = "192.168.1.101:8081";

fn secret() -> Secret {
    Secret([0x5a; 32])
}

/// Certificates for "relay.lab" and 127.0.0.1, made once per test binary (`relay gen-certs`).
fn certs() -> &'static (PathBuf, PathBuf, PathBuf) {
    static C: std::sync::OnceLock<(PathBuf, PathBuf, PathBuf)> = std::sync::OnceLock::new();
    C.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("relay-loopback-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        // A first relay's certificate makes the CA; the one used here is signed by the CA
        // re-created from its key, and must verify under the first ca.pem (one CA, N relays).
        relay::tls::gen_certs(&dir, "relay2", "relay2.lab", &[]).unwrap();
        let g = relay::tls::gen_certs(&dir, "server", "relay.lab", &["127.0.0.1".parse().unwrap()])
            .unwrap();
        (g.ca, g.cert, g.key)
    })
}

struct Relay {
    udp: SocketAddr,
    https: SocketAddr,
    http: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    done: tokio::task::JoinHandle<()>,
}

impl Relay {
    async fn start(settings: Settings) -> Relay {
        let (_, cert, key) = certs();
        let udp = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let back = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let https = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let http = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let (u, h, p) = (
            udp.local_addr().unwrap(),
            https.local_addr().unwrap(),
            http.local_addr().unwrap(),
        );
        let settings = Settings {
            back_port: back.local_addr().unwrap().port(),
            ..settings
        };
        let mut devices = HashMap::new();
        devices.insert(CAM, secret());
        let opts = Options {
            name: "test".into(),
            tls: relay::tls::server_config(cert, key).unwrap(),
            settings,
            keys: Keys {
                devices,
                enrol_key: None,
            },
        };
        let (tx, rx) = oneshot::channel();
        let listeners = Listeners {
            udp,
            back,
            https: Some(https),
            http: Some(http),
        };
        let done = tokio::spawn(async move {
            serve(opts, listeners, async {
                let _ = rx.await;
            })
            .await
            .unwrap();
        });
        Relay {
            udp: u,
            https: h,
            http: p,
            stop: Some(tx),
            done,
        }
    }

    async fn stop(mut self) {
        let _ = self.stop.take().unwrap().send(());
        tokio::time::timeout(Duration::from_secs(5), &mut self.done)
            .await
            .expect("the relay stops within its grace time")
            .unwrap();
    }

    async fn status(&self) -> serde_json::Value {
        let (st, body) = get(self.http, "127.0.0.1", "/status.json").await;
        assert_eq!(st, StatusCode::OK);
        serde_json::from_slice(&body).unwrap()
    }
}

// ---- the test device ----

/// What the device's web service saw and how it answers.
#[derive(Default)]
struct DevStats {
    back_connections: AtomicUsize,
}

struct Device {
    sock: Arc<UdpSocket>,
    relay: SocketAddr,
    counter: u64,
    stats: Arc<DevStats>,
}

impl Device {
    /// Binds on `ip`, asks for the period, refreshes, and answers connection requests by opening
    /// back-connections (unless `answer` is false).
    async fn start(relay: &Relay, ip: &str, answer: bool) -> Device {
        let sock = Arc::new(UdpSocket::bind((ip, 0)).await.unwrap());
        let mut d = Device {
            sock,
            relay: relay.udp,
            counter: 1_000,
            stats: Arc::new(DevStats::default()),
        };
        d.send(Msg::PeriodQuery).await;
        let a = d.recv().await;
        let Msg::PeriodAnswer(a) = a.body else {
            panic!("{a:?}")
        };
        assert!(a.period_ms > 0);
        d.counter = d.counter.max(a.counter_floor);
        d.refresh().await;
        let Msg::PeriodAnswer(_) = d.recv().await.body else {
            panic!()
        };
        if answer {
            let (sock, stats) = (d.sock.clone(), d.stats.clone());
            let relay_ip = relay.udp.ip();
            tokio::spawn(async move {
                let mut buf = [0u8; 600];
                while let Ok((n, _)) = sock.recv_from(&mut buf).await {
                    let Ok(r) = Repr::parse(&buf[..n], &secret()) else {
                        continue;
                    };
                    if let Msg::ConnectRequest(c) = r.body {
                        let stats = stats.clone();
                        let to = SocketAddr::new(relay_ip, c.back_port);
                        tokio::spawn(back_connection(to, c.session, c.nonce, stats));
                    }
                }
            });
        }
        d
    }

    async fn send(&mut self, body: Msg) {
        self.counter += 1;
        let b = Repr {
            device_id: CAM,
            counter: self.counter,
            body,
        }
        .emit(&secret());
        self.sock.send_to(&b, self.relay).await.unwrap();
    }

    async fn recv(&self) -> Repr {
        let mut buf = [0u8; 600];
        let (n, _) = tokio::time::timeout(Duration::from_secs(2), self.sock.recv_from(&mut buf))
            .await
            .expect("the relay answers")
            .unwrap();
        Repr::parse(&buf[..n], &secret()).unwrap()
    }

    async fn refresh(&mut self) {
        self.send(Msg::Notify(Notify {
            kind: NotifyKind::Refresh,
            lan: Some(LAN.parse().unwrap()),
            router_wan: None,
        }))
        .await;
    }
}

async fn tls_to_relay(to: SocketAddr) -> tokio_rustls::client::TlsStream<TcpStream> {
    let (ca, _, _) = certs();
    let connector = TlsConnector::from(relay::tls::client_config(ca).unwrap());
    let tcp = TcpStream::connect(to).await.unwrap();
    connector
        .connect(ServerName::try_from("relay.lab").unwrap(), tcp)
        .await
        .expect("the relay's certificate verifies against the lab CA")
}

/// The device's side of a session: TLS (checking the relay), hello, then its web service.
async fn back_connection(to: SocketAddr, session: u64, nonce: [u8; 16], stats: Arc<DevStats>) {
    let mut tls = tls_to_relay(to).await;
    tls.write_all(&Hello::new(CAM, session, &nonce, &secret()).emit())
        .await
        .unwrap();
    let mut ans = [0u8; 8];
    tls.read_exact(&mut ans).await.unwrap();
    if HelloStatus::parse(&ans) != Ok(HelloStatus::Ok) {
        return;
    }
    stats.back_connections.fetch_add(1, Ordering::SeqCst);
    let svc = hyper::service::service_fn(|req: Request<Incoming>| async move {
        Ok::<_, std::convert::Infallible>(camera_page(req))
    });
    let _ = hyper::server::conn::http1::Builder::new()
        .serve_connection(TokioIo::new(tls), svc)
        .await;
}

type TBody = UnsyncBoxBody<Bytes, std::convert::Infallible>;

/// A body fed from a channel (an endless stream, like MJPEG).
struct ChanBody(mpsc::Receiver<Bytes>);

impl Body for ChanBody {
    type Data = Bytes;
    type Error = std::convert::Infallible;
    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        self.0.poll_recv(cx).map(|o| o.map(|b| Ok(Frame::data(b))))
    }
}

/// The camera's canned site: `/stream` sends a chunk every 20 ms until the viewer leaves,
/// `/moved` redirects to `/`, anything else echoes what the relay told it.
fn camera_page(req: Request<Incoming>) -> Response<TBody> {
    let h = |n: &str| {
        req.headers()
            .get(n)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("-")
            .to_string()
    };
    match req.uri().path() {
        "/stream" => {
            let (tx, rx) = mpsc::channel(1);
            tokio::spawn(async move {
                while tx.send(Bytes::from(vec![b'x'; 1000])).await.is_ok() {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            });
            Response::new(ChanBody(rx).boxed_unsync())
        }
        "/moved" => Response::builder()
            .status(StatusCode::SEE_OTHER)
            .header("location", "/")
            .body(Full::new(Bytes::new()).boxed_unsync())
            .unwrap(),
        _ => {
            let text = format!(
                "camera {} path={} base={} for={} proto={}",
                format_device_id(CAM),
                req.uri(),
                h("x-relay-base"),
                h("x-forwarded-for"),
                h("x-forwarded-proto")
            );
            Response::new(Full::new(Bytes::from(text)).boxed_unsync())
        }
    }
}

// ---- viewers ----

/// A viewer connection from `from` (so the relay sees that address).
async fn viewer_tcp(relay: SocketAddr, from: &str) -> TcpStream {
    let s = TcpSocket::new_v4().unwrap();
    s.bind(SocketAddr::new(from.parse::<IpAddr>().unwrap(), 0))
        .unwrap();
    s.connect(relay).await.unwrap()
}

type Sender = hyper::client::conn::http1::SendRequest<Empty<Bytes>>;

async fn viewer(relay: SocketAddr, from: &str) -> Sender {
    let tcp = viewer_tcp(relay, from).await;
    let (s, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
        .await
        .unwrap();
    tokio::spawn(conn);
    s
}

async fn request(s: &mut Sender, path: &str) -> Response<Incoming> {
    let req = Request::get(path)
        .header("host", "relay.lab")
        .body(Empty::new())
        .unwrap();
    tokio::time::timeout(Duration::from_secs(10), s.send_request(req))
        .await
        .expect("an answer in time")
        .unwrap()
}

async fn get(relay: SocketAddr, from: &str, path: &str) -> (StatusCode, Vec<u8>) {
    let mut s = viewer(relay, from).await;
    let r = request(&mut s, path).await;
    let st = r.status();
    (
        st,
        r.into_body().collect().await.unwrap().to_bytes().to_vec(),
    )
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

// ---- tests ----

#[tokio::test]
async fn a_viewer_reaches_the_camera_over_https_through_a_tls_back_connection() {
    let relay = Relay::start(Settings::default()).await;
    let dev = Device::start(&relay, "127.0.0.2", true).await;
    let id = format_device_id(CAM);

    // HTTPS with the lab CA, as a browser would; seed 003's form first.
    let (ca, _, _) = certs();
    let tcp = viewer_tcp(relay.https, "127.0.0.1").await;
    let tls = TlsConnector::from(relay::tls::client_config(ca).unwrap())
        .connect(ServerName::try_from("relay.lab").unwrap(), tcp)
        .await
        .unwrap();
    let (mut s, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
        .await
        .unwrap();
    tokio::spawn(conn);
    let r = request(&mut s, &format!("/connect.cgi?ID={}", &id[2..])).await;
    assert_eq!(r.status(), StatusCode::FOUND);
    assert_eq!(r.headers()["location"], format!("/d/{id}/").as_str());
    let _ = r.into_body().collect().await;

    let t = Instant::now();
    let r = request(&mut s, &format!("/d/{id}/hello?x=1")).await;
    let first = t.elapsed();
    assert_eq!(r.status(), StatusCode::OK);
    let body = text(&r.into_body().collect().await.unwrap().to_bytes());
    assert_eq!(
        body,
        format!("camera {id} path=/hello?x=1 base=/d/{id}/ for=127.0.0.1 proto=https")
    );
    // The connection's next requests reuse its back-connection.
    for _ in 0..3 {
        let r = request(&mut s, &format!("/d/{id}/again")).await;
        assert_eq!(r.status(), StatusCode::OK);
        let _ = r.into_body().collect().await;
    }
    assert_eq!(dev.stats.back_connections.load(Ordering::SeqCst), 1);
    // A camera's redirect to its own path stays on the relay.
    let r = request(&mut s, &format!("/d/{id}/moved")).await;
    assert_eq!(r.headers()["location"], format!("/d/{id}/").as_str());
    let _ = r.into_body().collect().await;

    let st = relay.status().await;
    let d = &st["devices"][0];
    assert_eq!(d["id"], id.as_str());
    assert_eq!(d["state"], "online");
    assert!(d["bytes_down"].as_u64().unwrap() > 0, "{st}");
    assert_eq!(st["counters"]["hello_ok"], 1);
    assert!(
        !st.to_string().contains("127.0.0.2"),
        "the status discloses no address"
    );
    eprintln!("cold first byte over loopback: {first:?}");
    // The viewer leaves: its session ends.
    drop(s);
    let deadline = Instant::now() + Duration::from_secs(3);
    while !relay.status().await["sessions"]
        .as_array()
        .unwrap()
        .is_empty()
    {
        assert!(
            Instant::now() < deadline,
            "the session ends with its viewer"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (st, m) = get(relay.http, "127.0.0.1", "/metrics").await;
    assert_eq!(st, StatusCode::OK);
    assert!(
        text(&m).contains("relay_sessions_closed_total 1"),
        "{}",
        text(&m)
    );
    relay.stop().await;
}

#[tokio::test]
async fn an_offline_camera_is_refused_at_once_with_when_it_was_last_heard() {
    let settings = Settings {
        period: Duration::from_millis(400),
        keepalive: Duration::from_millis(100),
        ..Settings::default()
    };
    let relay = Relay::start(settings).await;
    let _dev = Device::start(&relay, "127.0.0.2", true).await;
    let id = format_device_id(CAM);
    let (st, _) = get(relay.http, "127.0.0.1", &format!("/d/{id}/")).await;
    assert_eq!(st, StatusCode::OK);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let t = Instant::now();
    let (st, body) = get(relay.http, "127.0.0.1", &format!("/d/{id}/")).await;
    assert_eq!(st, StatusCode::SERVICE_UNAVAILABLE);
    assert!(t.elapsed() < Duration::from_millis(300), "refused at once");
    let page = text(&body);
    assert!(page.contains(&format!("Camera {id} is offline")), "{page}");
    assert!(
        page.contains("Last heard: <b id=\"last-heard\">20"),
        "{page}"
    );
    // An id nobody enrolled.
    let (st, _) = get(relay.http, "127.0.0.1", "/d/abc/").await;
    assert_eq!(st, StatusCode::NOT_FOUND);
    relay.stop().await;
}

#[tokio::test]
async fn forged_and_replayed_messages_achieve_nothing() {
    let relay = Relay::start(Settings::default()).await;
    let mut dev = Device::start(&relay, "127.0.0.2", false).await;
    let id = format_device_id(CAM);

    // A forged refresh (wrong secret) from elsewhere, and a replay of a real one from elsewhere.
    let attacker = UdpSocket::bind("127.0.0.3:0").await.unwrap();
    let forged = Repr {
        device_id: CAM,
        counter: u64::MAX,
        body: Msg::Notify(Notify {
            kind: NotifyKind::Refresh,
            lan: Some("10.9.9.9:80".parse().unwrap()),
            router_wan: None,
        }),
    }
    .emit(&Secret([1; 32]));
    attacker.send_to(&forged, relay.udp).await.unwrap();
    dev.counter += 1;
    let real = Repr {
        device_id: CAM,
        counter: dev.counter,
        body: Msg::Notify(Notify {
            kind: NotifyKind::KeepAlive,
            lan: None,
            router_wan: None,
        }),
    }
    .emit(&secret());
    dev.sock.send_to(&real, relay.udp).await.unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    attacker.send_to(&real, relay.udp).await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let st = relay.status().await;
    assert_eq!(st["counters"]["bad_mac"], 1, "{st}");
    assert_eq!(st["counters"]["replayed"], 1, "{st}");

    // A viewer asks; the connection request still goes to the real device (not the attacker),
    // and its nonce is what a back-connection must prove.
    let mut s = viewer(relay.http, "127.0.0.1").await;
    let pending = tokio::spawn(async move {
        let r = request(&mut s, &format!("/d/{id}/")).await;
        (s, r)
    });
    let req = dev.recv().await;
    let Msg::ConnectRequest(c) = req.body else {
        panic!("{req:?}")
    };
    let back = SocketAddr::new(relay.udp.ip(), c.back_port);
    let hello = async |h: Hello| {
        let mut tls = tls_to_relay(back).await;
        tls.write_all(&h.emit()).await.unwrap();
        let mut a = [0u8; 8];
        tls.read_exact(&mut a).await.unwrap();
        HelloStatus::parse(&a).unwrap()
    };
    // Wrong nonce (a forged request's), another session id: refused, counted.
    assert_eq!(
        hello(Hello::new(CAM, c.session, &[0; 16], &secret())).await,
        HelloStatus::BadProof
    );
    assert_eq!(
        hello(Hello::new(CAM, c.session ^ 1, &c.nonce, &secret())).await,
        HelloStatus::UnknownSession
    );
    // The real proof, then the same hello replayed: accepted once.
    let good = Hello::new(CAM, c.session, &c.nonce, &secret());
    let stats = Arc::new(DevStats::default());
    let mut tls = tls_to_relay(back).await;
    tls.write_all(&good.emit()).await.unwrap();
    let mut a = [0u8; 8];
    tls.read_exact(&mut a).await.unwrap();
    assert_eq!(HelloStatus::parse(&a), Ok(HelloStatus::Ok));
    let svc = hyper::service::service_fn(|req: Request<Incoming>| async move {
        Ok::<_, std::convert::Infallible>(camera_page(req))
    });
    tokio::spawn(
        hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(tls), svc),
    );
    assert_eq!(hello(good.clone()).await, HelloStatus::UnknownSession);
    let (_viewer, r) = pending.await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    drop(stats);
    let st = relay.status().await;
    let k = &st["counters"];
    assert_eq!(
        (
            k["hello_bad_proof"].as_u64(),
            k["hello_unknown_session"].as_u64()
        ),
        (Some(1), Some(2)),
        "{st}"
    );
    relay.stop().await;
}

#[tokio::test]
async fn a_same_network_viewer_is_sent_to_the_lan_and_no_byte_is_relayed() {
    let relay = Relay::start(Settings::default()).await;
    let dev = Device::start(&relay, "127.0.0.2", true).await;
    let id = format_device_id(CAM);
    let mut s = viewer(relay.http, "127.0.0.2").await;
    let r = request(&mut s, &format!("/d/{id}/snapshot.jpg?size=1")).await;
    assert_eq!(r.status(), StatusCode::FOUND);
    assert_eq!(
        r.headers()["location"],
        format!("http://{LAN}/snapshot.jpg?size=1").as_str()
    );
    let _ = r.into_body().collect().await;
    let st = relay.status().await;
    assert_eq!(st["counters"]["bytes_down"], 0);
    assert_eq!(st["counters"]["connect_requests"], 0);
    assert_eq!(st["devices"][0]["lan_redirects"], 1);
    assert_eq!(dev.stats.back_connections.load(Ordering::SeqCst), 0);
    // Seed 004's question as an API: one bit, null for a device not registered.
    let (_, same) = get(
        relay.http,
        "127.0.0.1",
        &format!("/api/same-network?a={id}&b={id}"),
    )
    .await;
    assert_eq!(text(&same), "{\"same\":true}\n");
    let (_, unknown) = get(
        relay.http,
        "127.0.0.1",
        &format!("/api/same-network?a={id}&b=77"),
    )
    .await;
    assert_eq!(text(&unknown), "{\"same\":null}\n");
    // ?via=relay forces the relay; the cookie keeps the site's other requests on it.
    let r = request(&mut s, &format!("/d/{id}/?via=relay")).await;
    assert_eq!(r.status(), StatusCode::OK);
    let cookie = r.headers()["set-cookie"].to_str().unwrap().to_string();
    assert!(cookie.starts_with("relay_via=relay"), "{cookie}");
    let body = text(&r.into_body().collect().await.unwrap().to_bytes());
    assert!(
        body.contains("path=/ base="),
        "the flag is not forwarded: {body}"
    );
    let mut other = viewer(relay.http, "127.0.0.2").await;
    let req = Request::get(format!("/d/{id}/pic"))
        .header("cookie", "relay_via=relay")
        .body(Empty::new())
        .unwrap();
    assert_eq!(
        other.send_request(req).await.unwrap().status(),
        StatusCode::OK
    );
    relay.stop().await;
}

#[tokio::test]
async fn two_sessions_run_in_parallel_and_a_silent_camera_times_out() {
    let settings = Settings {
        setup_timeout: Duration::from_millis(600),
        ..Settings::default()
    };
    let relay = Relay::start(settings).await;
    let dev = Device::start(&relay, "127.0.0.2", true).await;
    let id = format_device_id(CAM);
    // A stream keeps one session busy while a second viewer gets a page.
    let mut a = viewer(relay.http, "127.0.0.1").await;
    let r = request(&mut a, &format!("/d/{id}/stream")).await;
    assert_eq!(r.status(), StatusCode::OK);
    let mut body = r.into_body();
    let mut got = 0;
    while got < 3000 {
        let f = body.frame().await.unwrap().unwrap();
        got += f.data_ref().map_or(0, |d| d.len());
    }
    let (st, page) = get(relay.http, "127.0.0.1", &format!("/d/{id}/page")).await;
    assert_eq!(st, StatusCode::OK);
    assert!(text(&page).contains("path=/page"));
    assert_eq!(dev.stats.back_connections.load(Ordering::SeqCst), 2);
    let status = relay.status().await;
    let sessions = status["sessions"].as_array().unwrap();
    assert!(sessions.iter().any(|s| s["state"] == "active"), "{status}");
    drop(body);
    drop(a);

    // A camera that registers but never connects back: 504 after the set-up time.
    let relay2 = Relay::start(Settings {
        setup_timeout: Duration::from_millis(300),
        ..Settings::default()
    })
    .await;
    let _silent = Device::start(&relay2, "127.0.0.2", false).await;
    let t = Instant::now();
    let (st, _) = get(relay2.http, "127.0.0.1", &format!("/d/{id}/")).await;
    assert_eq!(st, StatusCode::GATEWAY_TIMEOUT);
    assert!(t.elapsed() < Duration::from_secs(2));
    let s2 = relay2.status().await;
    assert_eq!(s2["counters"]["setup_timeouts"], 1, "{s2}");
    assert!(s2["counters"]["connect_resends"].as_u64().unwrap() >= 1);
    relay.stop().await;
    relay2.stop().await;
}

#[tokio::test]
async fn a_session_ends_at_its_maximum_time() {
    let relay = Relay::start(Settings {
        session_max: Duration::from_millis(400),
        ..Settings::default()
    })
    .await;
    let _dev = Device::start(&relay, "127.0.0.2", true).await;
    let id = format_device_id(CAM);
    let mut a = viewer(relay.http, "127.0.0.1").await;
    let t = Instant::now();
    let r = request(&mut a, &format!("/d/{id}/stream")).await;
    assert_eq!(r.status(), StatusCode::OK);
    let mut body = r.into_body();
    // The endless stream is cut when the session's time is up.
    let ended = tokio::time::timeout(Duration::from_secs(3), async {
        while let Some(Ok(_)) = body.frame().await {}
    })
    .await;
    assert!(ended.is_ok(), "the stream ends");
    let took = t.elapsed();
    assert!(
        took >= Duration::from_millis(400) && took < Duration::from_millis(1500),
        "{took:?}"
    );
    let st = relay.status().await;
    assert_eq!(st["counters"]["max_time_ends"], 1, "{st}");
    relay.stop().await;
}
