//! The DHCP service's IO shell on loopback (no root): a real UDP socket, replies by RFC 2131
//! §4.1 (a renewing client is answered at `ciaddr`), malformed datagrams counted, the lease
//! file written at shutdown and restored by the next service.

use std::net::{Ipv4Addr, SocketAddrV4, UdpSocket};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use router::dhcp::wire::{Message, MessageType, opt};
use router::dhcp::{DhcpConfig, DhcpHandle, DhcpService, ServerConfig};
use router::upnp::{Clock, ManualClock};

const SERVER: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 1);
const CLIENT: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 150);

struct Running {
    handle: DhcpHandle,
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<()>,
}

async fn start(dir: &Path, client_port: u16, clock: Arc<ManualClock>) -> Running {
    let mut cfg = DhcpConfig::new("lo", ServerConfig::new(SERVER, 8));
    cfg.iface = None;
    cfg.bind = SocketAddrV4::new(SERVER, 0);
    cfg.client_port = client_port;
    cfg.state_dir = Some(dir.to_path_buf());
    let svc = DhcpService::bind(cfg, clock as Arc<dyn Clock>)
        .await
        .expect("bind");
    let handle = svc.handle();
    let (stop, rx) = tokio::sync::oneshot::channel();
    let task = tokio::spawn(svc.run(async move {
        let _ = rx.await;
    }));
    Running { handle, stop, task }
}

/// A RENEWING request (ciaddr set, RFC 2131 §4.3.2) and its answer.
async fn renew(sock: &UdpSocket, to: std::net::SocketAddr, xid: u32) -> Message {
    let mut m = Message::request(xid, [2, 0, 0, 0, 0, 1], MessageType::Request);
    m.ciaddr = CLIENT;
    m.set_option(opt::HOST_NAME, b"svc1".to_vec());
    sock.send_to(&m.emit(), to).expect("send");
    let mut buf = [0u8; 1500];
    let (n, _) = tokio::task::block_in_place(|| sock.recv_from(&mut buf)).expect("reply");
    Message::parse(&buf[..n]).expect("reply parses")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serves_on_a_socket_and_keeps_leases_across_restarts() {
    let dir = std::env::temp_dir().join(format!("dhcp-service-test-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let sock = UdpSocket::bind((CLIENT, 0)).expect("client socket");
    sock.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let port = sock.local_addr().unwrap().port();
    let clock = Arc::new(ManualClock::new());

    let r = start(&dir, port, clock.clone()).await;
    let to = r.handle.local_addr();
    let ack = renew(&sock, to, 7).await;
    assert_eq!(ack.message_type(), Some(MessageType::Ack));
    assert_eq!((ack.xid, ack.yiaddr, ack.ciaddr), (7, CLIENT, CLIENT));
    assert_eq!(ack.server_id(), Some(SERVER));
    assert_eq!(ack.lease_time(), Some(43_200));
    // Garbage and a truncated header: counted, no answer, the service goes on.
    sock.send_to(b"hello", to).unwrap();
    sock.send_to(&[0u8; 300], to).unwrap();
    let ack = renew(&sock, to, 8).await;
    assert_eq!(ack.xid, 8);
    let stats = r.handle.stats();
    assert_eq!(
        (stats.received, stats.acked, stats.dropped_total),
        (4, 2, 2)
    );
    assert_eq!(stats.dropped["truncated"], 1);
    assert_eq!(stats.dropped["bad_cookie"], 1);
    let leases = r.handle.leases();
    assert_eq!(leases.len(), 1);
    assert_eq!(leases[0].host_name.as_deref(), Some("svc1"));

    let _ = r.stop.send(());
    r.task.await.unwrap();
    let saved = std::fs::read_to_string(dir.join(router::dhcp::LEASE_FILE)).unwrap();
    assert!(saved.contains("127.0.0.150 bound"), "{saved}");

    // An hour later, a new service: the lease is back with its name and expiry.
    clock.advance(Duration::from_secs(3600));
    let r = start(&dir, port, clock.clone()).await;
    let leases = r.handle.leases();
    assert_eq!(leases.len(), 1, "{leases:?}");
    assert_eq!(leases[0].host_name.as_deref(), Some("svc1"));
    assert_eq!(leases[0].expires_in, 43_200 - 3600);
    let ack = renew(&sock, r.handle.local_addr(), 9).await;
    assert_eq!(
        (ack.message_type(), ack.yiaddr),
        (Some(MessageType::Ack), CLIENT)
    );
    assert_eq!(r.handle.leases()[0].expires_in, 43_200);
    let _ = r.stop.send(());
    r.task.await.unwrap();
    let _ = std::fs::remove_dir_all(&dir);
}
