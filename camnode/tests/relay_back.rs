//! The camera's relay side (`camnode::relay::run`) against the real relay server (the `relay`
//! crate), both in this process on loopback: UDP registration, connection requests, the TLS
//! back-connection with its hello, and the camera's own web site through the relay's `/d/<id>/`.
//! Port management is replaced by a Directory the test sets (its reachability decides `auto`).

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use camnode::camera::synthetic::Synthetic;
use camnode::camera::{FrameHub, HubSettings};
use camnode::config::RelayMode;
use camnode::directory::{Directory, NodeCommand, Peer, PeerSource, Reachability, Role};
use camnode::relay::{RelayContext, RelaySettings, RelayTarget};
use camnode::web::{WebConfig, WebState};
use shared::relayproto::{SECRET_LEN, Secret};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::{mpsc, watch};

const ID: u64 = 0x0000_0000_0000_00a1;
const PEER: &str = "00000000000000b2";

fn secret() -> Secret {
    Secret([0x42; SECRET_LEN])
}

fn directory(reachability: Reachability) -> Directory {
    Directory {
        node_id: format!("{ID:016x}"),
        name: "camera 1".into(),
        role: Role::Representative,
        reachability,
        // No IGD, so no router WAN address to report: the relay judges the same network by
        // the observed address alone (docs/relay-protocol.md).
        external_addr: None,
        lan_addr: Some(Ipv4Addr::new(192, 168, 1, 100)),
        external_port: None,
        lan_port: 8080,
        peers: vec![Peer {
            node_id: PEER.into(),
            name: "camera 2".into(),
            lan_addr: Ipv4Addr::new(192, 168, 1, 101),
            lan_port: 8081,
            external_port: None,
            source: PeerSource::Inquiry,
            last_seen: Instant::now(),
        }],
        warning: None,
    }
}

fn temp_dir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("camnode-relay-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

struct Lab {
    /// The relay's plain-HTTP viewer address.
    viewer: SocketAddr,
    /// Port management's Directory (the test plays port management).
    pm: watch::Sender<Directory>,
    /// What the pages see.
    shown: watch::Receiver<Directory>,
    /// Rename commands (the test plays port management).
    commands: mpsc::Receiver<NodeCommand>,
    _hub: FrameHub,
    _stop: watch::Sender<bool>,
    dir: PathBuf,
}

impl Drop for Lab {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A relay on loopback and a camera registered with it through `camnode::relay::run`. The
/// camera trusts `ca_of` (the relay's own CA unless a test says otherwise).
async fn lab(tag: &str, mode: RelayMode, reach: Reachability, foreign_ca: bool) -> Lab {
    let dir = temp_dir(tag);
    let certs = relay::tls::gen_certs(&dir, "server", "localhost", &["127.0.0.1".parse().unwrap()])
        .unwrap();
    let ca = if foreign_ca {
        relay::tls::gen_certs(&dir.join("other"), "x", "localhost", &[])
            .unwrap()
            .ca
    } else {
        certs.ca.clone()
    };
    let udp = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).await.unwrap();
    let back = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await.unwrap();
    let http = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await.unwrap();
    let (udp_port, viewer) = (udp.local_addr().unwrap().port(), http.local_addr().unwrap());
    let opts = relay::server::Options {
        name: "test relay".into(),
        tls: relay::tls::server_config(&certs.cert, &certs.key).unwrap(),
        settings: relay::core::Settings {
            back_port: back.local_addr().unwrap().port(),
            ..Default::default()
        },
        keys: relay::core::Keys {
            devices: HashMap::from([(ID, secret())]),
            enrol_key: None,
        },
    };
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut relay_stop = stop_rx.clone();
    tokio::spawn(relay::server::serve(
        opts,
        relay::server::Listeners {
            udp,
            back,
            https: None,
            http: Some(http),
        },
        async move {
            let _ = relay_stop.wait_for(|s| *s).await;
        },
    ));

    let hub = FrameHub::start(
        Box::new(Synthetic::new(160, 120, "a1", "camera 1")),
        HubSettings::new(10, 70),
        "camera 1",
    )
    .unwrap();
    let (pm_tx, pm_rx) = watch::channel(directory(reach));
    let (shown_tx, shown_rx) = watch::channel(pm_rx.borrow().clone());
    let (cmd_tx, commands) = mpsc::channel(8);
    let state = WebState::new(
        hub.handle(),
        shown_rx.clone(),
        cmd_tx,
        WebConfig {
            domain: String::new(),
            password: "pw".into(),
            max_streams: 10,
            width: 160,
            height: 120,
        },
    );
    let web = Arc::new(OnceLock::new());
    let _ = web.set(state);
    let target = RelayTarget::parse(&format!("http://{viewer}?udp={udp_port}")).unwrap();
    let ctx = RelayContext {
        settings: RelaySettings {
            mode,
            relays: vec![target],
            secret: secret(),
            roots: Arc::new(relay_roots(&ca)),
            keepalive_seconds: 15,
        },
        portmgmt: pm_rx,
        publish: shown_tx,
        web,
        shutdown: stop_rx,
    };
    tokio::spawn(camnode::relay::run(ctx));
    Lab {
        viewer,
        pm: pm_tx,
        shown: shown_rx,
        commands,
        _hub: hub,
        _stop: stop_tx,
        dir,
    }
}

fn relay_roots(ca: &std::path::Path) -> rustls::RootCertStore {
    camnode::relay::settings::load_roots(ca).unwrap()
}

impl Lab {
    /// Waits until the pages say "via relay" (or `want` is false and they do not).
    async fn via_relay(&mut self, within: Duration) -> bool {
        let want = |d: &Directory| matches!(d.reachability, Reachability::ViaRelay { .. });
        tokio::time::timeout(within, self.shown.wait_for(want))
            .await
            .is_ok()
    }
}

struct Reply {
    status: u16,
    head: String,
    body: Vec<u8>,
}

impl Reply {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// One request to the relay as a viewer, `Connection: close`, the whole answer.
async fn ask(viewer: SocketAddr, method: &str, path: &str, body: &str) -> Reply {
    let mut s = TcpStream::connect(viewer).await.unwrap();
    let extra = if body.is_empty() {
        String::new()
    } else {
        format!(
            "Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n",
            body.len()
        )
    };
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: relay\r\nConnection: close\r\n{extra}\r\n{body}"
    );
    s.write_all(req.as_bytes()).await.unwrap();
    let mut all = Vec::new();
    tokio::time::timeout(Duration::from_secs(15), s.read_to_end(&mut all))
        .await
        .expect("answer within 15 s")
        .unwrap();
    let end = all
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("a response head");
    let head = String::from_utf8_lossy(&all[..end]).into_owned();
    let status = head.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap();
    let mut body = all[end + 4..].to_vec();
    if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        body = dechunk(&body);
    }
    Reply { status, head, body }
}

fn dechunk(mut b: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(i) = b.windows(2).position(|w| w == b"\r\n") {
        let size = usize::from_str_radix(std::str::from_utf8(&b[..i]).unwrap().trim(), 16).unwrap();
        if size == 0 {
            break;
        }
        out.extend_from_slice(&b[i + 2..i + 2 + size]);
        b = &b[i + 4 + size..];
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn camera_without_a_forward_is_served_through_the_relay() {
    let mut lab = lab("served", RelayMode::Auto, Reachability::NoIgd, false).await;
    assert!(lab.via_relay(Duration::from_secs(5)).await, "registered");
    let site = format!("/d/{ID:016x}/");

    // The status through the relay: relay links, outside rules (the viewer is on loopback, but
    // a relayed viewer never counts as the LAN).
    let r = ask(
        lab.viewer,
        "GET",
        &format!("{site}status.json?via=relay"),
        "",
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.head);
    let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(v["reachability"]["state"], "relay", "{v}");
    assert_eq!(
        v["reachability"]["site"],
        format!("http://{}{site}", lab.viewer)
    );
    assert_eq!(v["reachability"]["direct"]["state"], "no-igd");
    assert_eq!(v["peers"][0]["url"], format!("/d/{PEER}/"));
    assert_eq!(v["url"], site);
    assert_eq!(v["viewer"]["place"], "outside");

    // The page: its picture, status and forms stay under the relay; the other camera is linked.
    let page = ask(lab.viewer, "GET", &format!("{site}?via=relay"), "").await;
    assert_eq!(page.status, 200);
    let html = page.text();
    assert!(
        html.contains(&format!("src=\"{site}stream.mjpg\"")),
        "{html}"
    );
    assert!(html.contains(&format!("<a href=\"/d/{PEER}/\">camera 2</a>")));
    assert!(html.contains("reachable via relay"));

    // A picture, several viewers at once (one back-connection each).
    let snaps: Vec<_> = (0..3)
        .map(|_| {
            let (viewer, path) = (lab.viewer, format!("{site}snapshot.jpg?via=relay"));
            tokio::spawn(async move { ask(viewer, "GET", &path, "").await })
        })
        .collect();
    for s in snaps {
        let s = s.await.unwrap();
        assert_eq!(s.status, 200, "{}\n{}", s.head, s.text());
        assert_eq!(&s.body[..2], &[0xff, 0xd8], "a JPEG");
    }

    // Changes from a relayed viewer need the password, even from loopback; the rename form's
    // redirect back to the page stays on the relay (the relay puts its base before "/").
    let name = format!("{site}name?via=relay");
    let r = ask(lab.viewer, "POST", &name, "name=x").await;
    assert_eq!(r.status, 401, "{}", r.text());
    let r = ask(lab.viewer, "POST", &name, "name=x&password=pw").await;
    assert_eq!(r.status, 303, "{}", r.text());
    let location = r
        .head
        .lines()
        .find_map(|l| l.strip_prefix("location: "))
        .unwrap_or_default();
    assert_eq!(location, site, "{}", r.head);
    assert_eq!(lab.commands.try_recv(), Ok(NodeCommand::Rename("x".into())));

    // Seed 004: a viewer from the camera's own public address goes to the LAN address.
    let r = ask(lab.viewer, "GET", &site, "").await;
    assert_eq!(r.status, 302, "{}", r.head);
    assert!(r.head.contains("http://192.168.1.100:8080/"), "{}", r.head);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auto_keeps_a_working_forward_and_takes_the_relay_when_it_goes() {
    let mut lab = lab("auto", RelayMode::Auto, Reachability::Reachable, false).await;
    assert!(!lab.via_relay(Duration::from_secs(2)).await);
    let site = format!("/d/{ID:016x}/?via=relay");
    let r = ask(lab.viewer, "GET", &site, "").await;
    assert_ne!(r.status, 200, "not registered while the forward works");
    // The router's address turns out to be carrier-grade NAT space: the relay takes over.
    lab.pm.send_modify(|d| {
        d.reachability = Reachability::DoubleNat {
            external: Ipv4Addr::new(100, 64, 0, 2),
        }
    });
    assert!(lab.via_relay(Duration::from_secs(5)).await);
    assert_eq!(ask(lab.viewer, "GET", &site, "").await.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_with_another_ca_gets_no_back_connection() {
    let mut lab = lab("ca", RelayMode::Always, Reachability::Reachable, true).await;
    // UDP registration works (the datagrams carry MACs, not certificates)...
    assert!(lab.via_relay(Duration::from_secs(5)).await);
    // ...but the camera refuses the relay's certificate, so no page crosses.
    let r = ask(lab.viewer, "GET", &format!("/d/{ID:016x}/?via=relay"), "").await;
    assert_eq!(r.status, 504, "{}", r.head);
}
