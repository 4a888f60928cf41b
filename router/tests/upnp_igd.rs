//! The IGD service on loopback, driven by real clients: miniupnpc's `upnpc`, the igd-next
//! crate, raw SOAP / GENA / SSDP requests, and a NAT-PMP / PCP client built from the shared
//! formats. Every mapping a client adds must appear in the NAT's forwards and go away on
//! delete or expiry.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use router::nat::{Forward, Nat, NatConfig, Protocol};
use router::upnp::{Clock, ManualClock, UpnpConfig, UpnpHandle, UpnpService};
use shared::natpmp::{
    self, NatPmpProtocol, NatPmpRequest, NatPmpResponse, NatPmpResult, PcpMap, PcpOpcode,
    PcpRequest, PcpResponse, PcpResult,
};
use shared::soap;

const WAN: Ipv4Addr = Ipv4Addr::new(60, 120, 76, 64);
const ME: Ipv4Addr = Ipv4Addr::LOCALHOST;

struct Igd {
    handle: UpnpHandle,
    nat: Arc<Mutex<Nat>>,
    clock: Arc<ManualClock>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Igd {
    async fn start(dir: Option<&Path>, tweak: impl FnOnce(&mut UpnpConfig)) -> Igd {
        Self::start_with(dir, Arc::new(ManualClock::new()), tweak).await
    }

    async fn start_with(
        dir: Option<&Path>,
        clock: Arc<ManualClock>,
        tweak: impl FnOnce(&mut UpnpConfig),
    ) -> Igd {
        let mut nat = Nat::new(NatConfig::new(WAN, ME, 8), 1);
        nat.add_forward(Forward {
            protocol: Protocol::Tcp,
            external_port: 2222,
            internal_addr: Ipv4Addr::new(127, 0, 0, 22),
            internal_port: 22,
            remote_host: None,
            expires: None,
            description: "static ssh".into(),
        })
        .unwrap();
        let nat = Arc::new(Mutex::new(nat));
        let mut cfg = UpnpConfig::loopback(ME);
        cfg.state_dir = dir.map(Path::to_path_buf);
        cfg.seed = Some(42);
        tweak(&mut cfg);
        let svc = UpnpService::bind(cfg, nat.clone(), clock.clone() as Arc<dyn Clock>)
            .await
            .unwrap();
        let handle = svc.handle();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(svc.run(async move {
            let _ = rx.await;
        }));
        Igd {
            handle,
            nat,
            clock,
            stop: Some(tx),
            task: Some(task),
        }
    }

    async fn stop(mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.task.take() {
            let _ = t.await;
        }
    }

    fn url(&self) -> String {
        self.handle.location(2)
    }

    fn forwards(&self) -> Vec<(Protocol, u16, Ipv4Addr, u16)> {
        self.nat
            .lock()
            .unwrap()
            .forwards()
            .filter(|f| f.external_port != 2222)
            .map(|f| {
                (
                    f.protocol,
                    f.external_port,
                    f.internal_addr,
                    f.internal_port,
                )
            })
            .collect()
    }
}

/// Runs upnpc with `args` against `url`; returns stdout (upnpc exits 0 on most failures).
async fn upnpc(url: &str, args: &[&str]) -> String {
    let mut full = vec!["-u".to_string(), url.to_string()];
    full.extend(args.iter().map(|s| s.to_string()));
    let out = tokio::task::spawn_blocking(move || {
        Command::new("upnpc")
            .args(&full)
            .output()
            .expect("upnpc runs")
    })
    .await
    .unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr)
}

/// A raw HTTP/1.0-style request (Connection: close), returning (status, headers+body text).
async fn raw_http(addr: SocketAddr, request: Vec<u8>) -> (u16, String) {
    tokio::task::spawn_blocking(move || {
        let mut s = TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        s.write_all(&request).unwrap();
        let mut out = Vec::new();
        let _ = s.read_to_end(&mut out);
        let text = String::from_utf8_lossy(&out).into_owned();
        let status = text
            .split_whitespace()
            .nth(1)
            .and_then(|c| c.parse().ok())
            .unwrap_or(0);
        (status, text)
    })
    .await
    .unwrap()
}

fn soap_request(path: &str, host: SocketAddr, soapaction: Option<&str>, body: &[u8]) -> Vec<u8> {
    let mut r = format!(
        "POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: text/xml; charset=\"utf-8\"\r\nContent-Length: {}\r\nConnection: close\r\n",
        body.len()
    );
    if let Some(a) = soapaction {
        r.push_str(&format!("SOAPAction: {a}\r\n"));
    }
    r.push_str("\r\n");
    let mut v = r.into_bytes();
    v.extend_from_slice(body);
    v
}

/// Calls an action on WANIPConnection:`v`; returns (status, body).
async fn call(igd: &Igd, v: u32, action: &str, args: &[(&str, &str)]) -> (u16, String) {
    let st = format!("urn:schemas-upnp-org:service:WANIPConnection:{v}");
    let req = soap::ActionRequest {
        service_type: st.clone(),
        action: action.into(),
        args: args
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    };
    let (status, text) = raw_http(
        igd.handle.http_addr(),
        soap_request(
            "/ctl/IPConn",
            igd.handle.http_addr(),
            Some(&format!("\"{st}#{action}\"")),
            &req.emit(),
        ),
    )
    .await;
    let body = text.split("\r\n\r\n").nth(1).unwrap_or("").to_string();
    (status, body)
}

fn error_code(body: &str) -> Option<u16> {
    let a = body.find("<errorCode>")? + "<errorCode>".len();
    let b = body[a..].find('<')? + a;
    body[a..b].parse().ok()
}

fn add_args<'a>(port: &'a str, client: &'a str, lease: &'a str) -> Vec<(&'a str, &'a str)> {
    vec![
        ("NewRemoteHost", ""),
        ("NewExternalPort", port),
        ("NewProtocol", "TCP"),
        ("NewInternalPort", port),
        ("NewInternalClient", client),
        ("NewEnabled", "1"),
        ("NewPortMappingDescription", "test"),
        ("NewLeaseDuration", lease),
    ]
}

fn tempdir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("upnp-test-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn golden(name: &str, actual: &str) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden")
        .join(name);
    if std::env::var_os("UPDATE_GOLDEN").is_some() || !path.exists() {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, actual).unwrap();
    }
    let want = std::fs::read_to_string(&path).unwrap();
    assert_eq!(
        actual, want,
        "{name} differs from the golden file (UPDATE_GOLDEN=1 to accept)"
    );
}

// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upnpc_add_list_delete_status() {
    let igd = Igd::start(None, |_| {}).await;
    let url = igd.url();

    let s = upnpc(&url, &["-s"]).await;
    assert!(s.contains("Connected"), "{s}");
    assert!(s.contains(&format!("ExternalIPAddress = {WAN}")), "{s}");
    assert!(s.contains("Bytes:   Sent:"), "{s}");

    let s = upnpc(
        &url,
        &[
            "-e",
            "cam 1",
            "-a",
            "127.0.0.1",
            "8080",
            "18080",
            "TCP",
            "3600",
        ],
    )
    .await;
    assert!(
        s.contains("is redirected to internal 127.0.0.1:8080"),
        "{s}"
    );
    let s = upnpc(&url, &["-a", "127.0.0.1", "5353", "15353", "UDP"]).await;
    assert!(!s.contains("failed"), "{s}");
    let mut f = igd.forwards();
    f.sort();
    assert_eq!(
        f,
        vec![
            (Protocol::Tcp, 18080, ME, 8080),
            (Protocol::Udp, 15353, ME, 5353)
        ]
    );

    let s = upnpc(&url, &["-l"]).await;
    assert!(s.contains("TCP 18080->127.0.0.1:8080  'cam 1'"), "{s}");
    assert!(s.contains("UDP 15353->127.0.0.1:5353"), "{s}");
    let s = upnpc(&url, &["-L"]).await;
    assert!(s.contains("18080"), "{s}");

    // -r: several at once to the calling host
    let s = upnpc(&url, &["-r", "9000", "TCP", "9001", "19001", "UDP"]).await;
    assert!(!s.contains("failed"), "{s}");
    assert_eq!(igd.forwards().len(), 4);

    // -n: AddAnyPortMapping on a port held by a static forward gets another one
    let s = upnpc(&url, &["-n", "127.0.0.1", "8081", "2222", "TCP", "600"]).await;
    assert!(
        s.contains("is redirected to internal 127.0.0.1:8081"),
        "{s}"
    );
    assert!(
        igd.forwards().contains(&(Protocol::Tcp, 2223, ME, 8081)),
        "{:?}",
        igd.forwards()
    );

    let s = upnpc(&url, &["-d", "18080", "TCP"]).await;
    assert!(s.contains("UPNP_DeletePortMapping() returned : 0"), "{s}");
    assert!(!igd.forwards().iter().any(|f| f.1 == 18080));

    // -N: range delete of the caller's UDP mappings
    let s = upnpc(&url, &["-N", "1", "65535", "UDP"]).await;
    assert!(s.contains("returned : 0"), "{s}");
    assert!(igd.forwards().iter().all(|f| f.0 == Protocol::Tcp));

    assert_eq!(igd.handle.stats().soap_malformed, 0);
    igd.stop().await;
}

/// miniupnpc sends argument values without XML-escaping them: `upnpc -e 'a&b'` puts a bare
/// `&` in NewPortMappingDescription. Such a description is taken literally, stored as sent,
/// and escaped again in every reply.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upnpc_unescaped_description() {
    let igd = Igd::start(None, |_| {}).await;
    let url = igd.url();
    let descs = [
        ("18081", "a&b"),
        ("18082", "x<y> & \"z\""),
        ("18083", "&lt; stays &lt;"),
    ];
    for (port, desc) in descs {
        let s = upnpc(
            &url,
            &["-e", desc, "-a", "127.0.0.1", port, port, "TCP", "3600"],
        )
        .await;
        assert!(
            s.contains(&format!("is redirected to internal 127.0.0.1:{port}")),
            "{desc}: {s}"
        );
    }
    let stored: Vec<(u16, String)> = igd
        .handle
        .mappings()
        .into_iter()
        .map(|m| (m.external_port, m.description))
        .collect();
    assert_eq!(
        stored,
        vec![
            (18081, "a&b".to_string()),
            (18082, "x<y> & \"z\"".to_string()),
            // a reference the client wrote is a reference: decoded
            (18083, "< stays <".to_string()),
        ]
    );
    assert_eq!(igd.handle.stats().soap_malformed, 0);
    // escaped again on output, and our client reads it back as stored
    let key = [
        ("NewRemoteHost", ""),
        ("NewExternalPort", "18082"),
        ("NewProtocol", "TCP"),
    ];
    let (s, b) = call(&igd, 2, "GetSpecificPortMappingEntry", &key).await;
    assert_eq!(s, 200);
    assert!(
        b.contains(
            "<NewPortMappingDescription>x&lt;y&gt; &amp; &quot;z&quot;</NewPortMappingDescription>"
        ),
        "{b}"
    );
    let r = soap::parse_response(b.as_bytes()).unwrap().unwrap();
    assert_eq!(r.arg("NewPortMappingDescription"), Some("x<y> & \"z\""));
    // upnpc lists them (it does not decode entities, so it shows the escaped text)
    let s = upnpc(&url, &["-l"]).await;
    assert!(s.contains("TCP 18081->127.0.0.1:18081 'a&amp;b'"), "{s}");
    // a stray `&` outside the free-text argument is still malformed: 402 for AddPortMapping
    let bad = String::from_utf8(
        soap::ActionRequest {
            service_type: "urn:schemas-upnp-org:service:WANIPConnection:1".into(),
            action: "AddPortMapping".into(),
            args: add_args("18084", "127.0.0.1", "0")
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        }
        .emit(),
    )
    .unwrap()
    .replace("<NewProtocol>TCP", "<NewProtocol>T&CP");
    let addr = igd.handle.http_addr();
    let (s, b) = raw_http(
        addr,
        soap_request(
            "/ctl/IPConn",
            addr,
            Some("\"urn:schemas-upnp-org:service:WANIPConnection:1#AddPortMapping\""),
            bad.as_bytes(),
        ),
    )
    .await;
    assert_eq!((s, error_code(&b)), (500, Some(402)), "{b}");
    assert_eq!(igd.handle.stats().soap_malformed, 1);
    assert_eq!(igd.forwards().len(), 3);
    igd.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn igd_next_client() {
    use igd_next::PortMappingProtocol;
    let igd = Igd::start(None, |_| {}).await;
    let mut opts = igd_next::SearchOptions::default();
    opts.bind_addr = "127.0.0.1:0".parse().unwrap();
    opts.broadcast_address = igd.handle.ssdp_addr().unwrap();
    opts.timeout = Some(Duration::from_secs(3));
    opts.single_search_timeout = Some(Duration::from_secs(1));
    // igd-next refuses loopback gateways unless listed.
    opts.allowed_gateway_ips = vec![std::net::IpAddr::V4(ME)];
    let gw = igd_next::aio::tokio::search_gateway(opts).await.unwrap();
    assert_eq!(
        gw.get_external_ip().await.unwrap(),
        std::net::IpAddr::V4(WAN)
    );
    let local: SocketAddr = "127.0.0.1:7000".parse().unwrap();
    gw.add_port(PortMappingProtocol::TCP, 17000, local, 120, "igd-next")
        .await
        .unwrap();
    assert!(igd.forwards().contains(&(Protocol::Tcp, 17000, ME, 7000)));
    let p = gw
        .add_any_port(PortMappingProtocol::UDP, local, 120, "igd-next any")
        .await
        .unwrap();
    assert!(igd.forwards().contains(&(Protocol::Udp, p, ME, 7000)));
    let e = gw.get_generic_port_mapping_entry(0).await.unwrap();
    assert_eq!(e.external_port, 17000);
    assert!(gw.get_generic_port_mapping_entry(5).await.is_err());
    gw.remove_port(PortMappingProtocol::TCP, 17000)
        .await
        .unwrap();
    assert!(!igd.forwards().iter().any(|f| f.1 == 17000));
    igd.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn golden_descriptions_and_replies() {
    let dir = tempdir("golden");
    // A fixed UUID so the documents are stable.
    std::fs::write(
        dir.join("upnp-uuid"),
        "5f1e2d3c-4b5a-4697-8899-aabbccddeeff\n",
    )
    .unwrap();
    let igd = Igd::start(Some(&dir), |_| {}).await;
    let addr = igd.handle.http_addr();
    for (path, name) in [
        ("/rootDesc.xml", "rootDesc.xml"),
        ("/rootDesc1.xml", "rootDesc1.xml"),
        ("/WANIPCn.xml", "WANIPCn.xml"),
        ("/WANIPCn1.xml", "WANIPCn1.xml"),
        ("/WANCfg.xml", "WANCfg.xml"),
        ("/L3F.xml", "L3F.xml"),
    ] {
        let (status, text) = raw_http(
            addr,
            format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n")
                .into_bytes(),
        )
        .await;
        assert_eq!(status, 200, "{path}");
        let body = text.split("\r\n\r\n").nth(1).unwrap_or("");
        golden(name, body);
    }
    let (s, body) = call(&igd, 2, "GetExternalIPAddress", &[]).await;
    assert_eq!(s, 200);
    golden("GetExternalIPAddress.xml", &body);
    let (s, body) = call(&igd, 2, "AddPortMapping", &add_args("8080", "", "0")).await;
    assert_eq!(s, 200);
    golden("AddPortMapping.xml", &body);
    let (s, body) = call(
        &igd,
        2,
        "GetGenericPortMappingEntry",
        &[("NewPortMappingIndex", "0")],
    )
    .await;
    assert_eq!(s, 200);
    // v2: lease 0 became the maximum, 604800 s
    assert!(
        body.contains("<NewLeaseDuration>604800</NewLeaseDuration>"),
        "{body}"
    );
    golden("GetGenericPortMappingEntry.xml", &body);
    let (s, body) = call(
        &igd,
        2,
        "GetGenericPortMappingEntry",
        &[("NewPortMappingIndex", "1")],
    )
    .await;
    assert_eq!(s, 500);
    golden("fault-713.xml", &body);
    let (_, body) = call(
        &igd,
        2,
        "AddPortMapping",
        &add_args("8081", "127.0.0.9", "60"),
    )
    .await;
    golden("fault-606.xml", &body);
    igd.stop().await;
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn error_paths() {
    let igd = Igd::start(None, |c| {
        c.table.rules = router::mapping::Rules::parse("deny 1-1023 0.0.0.0/0 0-65535\n").unwrap();
        c.table.max_per_client = 5;
    })
    .await;
    // 402: missing argument, bad port, bad protocol
    let (s, b) = call(&igd, 2, "AddPortMapping", &add_args("8080", "", "0")[..7]).await;
    assert_eq!((s, error_code(&b)), (500, Some(402)));
    let (_, b) = call(&igd, 2, "AddPortMapping", &add_args("99999", "", "0")).await;
    assert_eq!(error_code(&b), Some(402));
    // 716 / 732: wildcards
    let (_, b) = call(&igd, 2, "AddPortMapping", &add_args("0", "", "0")).await;
    assert_eq!(error_code(&b), Some(716));
    // secure mode: another host's mapping is 606 on v2, 718 on v1
    let (_, b) = call(
        &igd,
        2,
        "AddPortMapping",
        &add_args("8080", "127.0.0.9", "0"),
    )
    .await;
    assert_eq!(error_code(&b), Some(606));
    let (_, b) = call(
        &igd,
        1,
        "AddPortMapping",
        &add_args("8080", "127.0.0.9", "0"),
    )
    .await;
    assert_eq!(error_code(&b), Some(718));
    // permission rules: ports below 1024 denied
    let (_, b) = call(&igd, 2, "AddPortMapping", &add_args("80", "", "0")).await;
    assert_eq!(error_code(&b), Some(606));
    // a static forward's port: 729 on v2, 718 on v1
    let (_, b) = call(&igd, 2, "AddPortMapping", &add_args("2222", "", "0")).await;
    assert_eq!(error_code(&b), Some(729));
    let (_, b) = call(&igd, 1, "AddPortMapping", &add_args("2222", "", "0")).await;
    assert_eq!(error_code(&b), Some(718));
    // 718: another client holds the port (secure mode off to make one)
    igd.handle.set_secure_mode(false);
    let (s, _) = call(
        &igd,
        2,
        "AddPortMapping",
        &add_args("8090", "127.0.0.9", "0"),
    )
    .await;
    assert_eq!(s, 200);
    let (_, b) = call(&igd, 2, "AddPortMapping", &add_args("8090", "", "0")).await;
    assert_eq!(error_code(&b), Some(718));
    igd.handle.set_secure_mode(true);
    // ... and may not be deleted by us in secure mode (606)
    let del = [
        ("NewRemoteHost", ""),
        ("NewExternalPort", "8090"),
        ("NewProtocol", "TCP"),
    ];
    let (_, b) = call(&igd, 2, "DeletePortMapping", &del).await;
    assert_eq!(error_code(&b), Some(606));
    // 714: nothing there
    let del2 = [
        ("NewRemoteHost", ""),
        ("NewExternalPort", "8095"),
        ("NewProtocol", "TCP"),
    ];
    let (_, b) = call(&igd, 2, "DeletePortMapping", &del2).await;
    assert_eq!(error_code(&b), Some(714));
    let (_, b) = call(&igd, 2, "GetSpecificPortMappingEntry", &del2).await;
    assert_eq!(error_code(&b), Some(714));
    // range actions: 733 start > end, 730 nothing in range, 606 manage in secure mode
    let range = |a: &'static str, b: &'static str, m: &'static str| {
        vec![
            ("NewStartPort", a),
            ("NewEndPort", b),
            ("NewProtocol", "TCP"),
            ("NewManage", m),
        ]
    };
    let (_, b) = call(
        &igd,
        2,
        "DeletePortMappingRange",
        &range("9000", "8000", "0"),
    )
    .await;
    assert_eq!(error_code(&b), Some(733));
    let (_, b) = call(
        &igd,
        2,
        "DeletePortMappingRange",
        &range("3000", "4000", "0"),
    )
    .await;
    assert_eq!(error_code(&b), Some(730));
    let (_, b) = call(&igd, 2, "DeletePortMappingRange", &range("1", "65535", "1")).await;
    assert_eq!(error_code(&b), Some(606));
    let mut l = range("3000", "4000", "1");
    l.push(("NewNumberOfPorts", "0"));
    let (_, b) = call(&igd, 2, "GetListOfPortMappings", &l).await;
    assert_eq!(error_code(&b), Some(730));
    // v2-only actions on v1: 401
    let (_, b) = call(&igd, 1, "GetListOfPortMappings", &l).await;
    assert_eq!(error_code(&b), Some(401));
    // 728: the per-client limit
    for p in 10000..10005 {
        let ps = p.to_string();
        let (s, _) = call(&igd, 2, "AddPortMapping", &add_args(&ps, "", "100")).await;
        assert_eq!(s, 200);
    }
    let (_, b) = call(&igd, 2, "AddPortMapping", &add_args("10005", "", "100")).await;
    assert_eq!(error_code(&b), Some(728));
    // connection actions
    let (_, b) = call(&igd, 2, "ForceTermination", &[]).await;
    assert_eq!(error_code(&b), Some(606));
    let (s, _) = call(&igd, 2, "RequestConnection", &[]).await;
    assert_eq!(s, 200);
    let (_, b) = call(
        &igd,
        2,
        "SetConnectionType",
        &[("NewConnectionType", "IP_Bridged")],
    )
    .await;
    assert_eq!(error_code(&b), Some(703));
    // unknown action 401, QueryStateVariable
    let (_, b) = call(&igd, 2, "Frobnicate", &[]).await;
    assert_eq!(error_code(&b), Some(401));
    igd.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_http_input_gets_errors_and_service_survives() {
    let igd = Igd::start(None, |_| {}).await;
    let addr = igd.handle.http_addr();
    // not XML at all, counted: 402 when SOAPACTION names an action of this service (its
    // arguments are unreadable; miniupnpd answers the same), else 401 (no such action)
    for (header, code) in [
        (
            Some("\"urn:schemas-upnp-org:service:WANIPConnection:2#AddPortMapping\""),
            402,
        ),
        (
            Some("\"urn:schemas-upnp-org:service:WANIPConnection:1#GetExternalIPAddress\""),
            402,
        ),
        (
            Some("\"urn:schemas-upnp-org:service:WANIPConnection:2#Frobnicate\""),
            401,
        ),
        (
            Some("\"urn:schemas-upnp-org:service:Layer3Forwarding:1#GetDefaultConnectionService\""),
            401,
        ),
        (None, 401),
    ] {
        let (s, b) = raw_http(
            addr,
            soap_request("/ctl/IPConn", addr, header, b"<<<garbage"),
        )
        .await;
        assert_eq!((s, error_code(&b)), (500, Some(code)), "{header:?}");
    }
    // a DTD with an entity bomb: refused
    let bomb = b"<?xml version=\"1.0\"?><!DOCTYPE x [<!ENTITY a \"aaaa\"><!ENTITY b \"&a;&a;&a;\">]><s:Envelope xmlns:s=\"http://schemas.xmlsoap.org/soap/envelope/\"><s:Body><u:GetExternalIPAddress xmlns:u=\"urn:schemas-upnp-org:service:WANIPConnection:2\">&b;</u:GetExternalIPAddress></s:Body></s:Envelope>";
    let (s, _) = raw_http(addr, soap_request("/ctl/IPConn", addr, None, bomb)).await;
    assert_eq!(s, 500);
    // too large: 413
    let big = vec![b'a'; 64 * 1024];
    let (s, _) = raw_http(addr, soap_request("/ctl/IPConn", addr, Some("\"\""), &big)).await;
    assert_eq!(s, 413);
    // without SOAPAction: 401 (UDA 1.1 §3.2.1 requires it; a browser cannot send it to another
    // origin without a preflight); `""` leaves the body to name the action (SOAP 1.1 §6.1.1);
    // SOAPAction without quotes
    let req = soap::ActionRequest {
        service_type: "urn:schemas-upnp-org:service:WANIPConnection:1".into(),
        action: "GetExternalIPAddress".into(),
        args: vec![],
    }
    .emit();
    let (s, b) = raw_http(addr, soap_request("/ctl/IPConn", addr, None, &req)).await;
    assert_eq!((s, error_code(&b)), (500, Some(401)), "{b}");
    let (s, b) = raw_http(addr, soap_request("/ctl/IPConn", addr, Some("\"\""), &req)).await;
    assert!(s == 200 && b.contains(&WAN.to_string()), "{b}");
    let (s, _) = raw_http(
        addr,
        soap_request(
            "/ctl/IPConn",
            addr,
            Some("urn:schemas-upnp-org:service:WANIPConnection:1#GetExternalIPAddress"),
            &req,
        ),
    )
    .await;
    assert_eq!(s, 200);
    // SOAPAction naming another action than the body: 401
    let (_, b) = raw_http(
        addr,
        soap_request(
            "/ctl/IPConn",
            addr,
            Some("\"urn:schemas-upnp-org:service:WANIPConnection:1#AddPortMapping\""),
            &req,
        ),
    )
    .await;
    assert_eq!(error_code(&b), Some(401));
    // Expect: 100-continue
    let mut r = soap_request("/ctl/IPConn", addr, Some("\"\""), &req);
    let head_end = r.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
    r.splice(
        head_end + 2..head_end + 2,
        b"Expect: 100-continue\r\n".iter().copied(),
    );
    let (s, b) = raw_http(addr, r).await;
    assert!(s == 100 || s == 200, "{b}");
    assert!(b.contains("200 OK"), "{b}");
    // wrong paths and methods
    let (s, _) = raw_http(
        addr,
        format!("GET /etc/passwd HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n")
            .into_bytes(),
    )
    .await;
    assert_eq!(s, 404);
    let (s, _) = raw_http(
        addr,
        format!("DELETE /ctl/IPConn HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n")
            .into_bytes(),
    )
    .await;
    assert_eq!(s, 405);
    let (s, _) = raw_http(addr, b"\x16\x03\x01garbage\r\n\r\n".to_vec()).await;
    assert!(s == 400 || s == 0);
    // a slow client that never finishes its head does not block others
    let slow = TcpStream::connect(addr).unwrap();
    (&slow).write_all(b"POST /ctl/IPConn HTTP/1.1\r\n").unwrap();
    let (s, _) = call(&igd, 2, "GetExternalIPAddress", &[]).await;
    assert_eq!(s, 200);
    drop(slow);
    let st = igd.handle.stats();
    assert!(st.soap_malformed >= 2, "{st:?}");
    igd.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lease_expiry_with_virtual_clock() {
    let igd = Igd::start(None, |_| {}).await;
    let (s, _) = call(&igd, 2, "AddPortMapping", &add_args("8080", "", "60")).await;
    assert_eq!(s, 200);
    let (s, _) = call(&igd, 1, "AddPortMapping", &add_args("8081", "", "0")).await;
    assert_eq!(s, 200);
    assert_eq!(igd.forwards().len(), 2);
    igd.clock.advance(Duration::from_secs(30));
    let (_, b) = call(
        &igd,
        2,
        "GetSpecificPortMappingEntry",
        &[
            ("NewRemoteHost", ""),
            ("NewExternalPort", "8080"),
            ("NewProtocol", "TCP"),
        ],
    )
    .await;
    assert!(b.contains("<NewLeaseDuration>30</NewLeaseDuration>"), "{b}");
    igd.clock.advance(Duration::from_secs(31));
    igd.handle.tick();
    // the v2 mapping expired, the v1 permanent one stays
    assert_eq!(igd.forwards(), vec![(Protocol::Tcp, 8081, ME, 8081)]);
    let (_, b) = call(
        &igd,
        2,
        "GetGenericPortMappingEntry",
        &[("NewPortMappingIndex", "0")],
    )
    .await;
    assert!(
        b.contains("<NewExternalPort>8081</NewExternalPort>")
            && b.contains("<NewLeaseDuration>0</NewLeaseDuration>"),
        "{b}"
    );
    igd.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_keeps_mappings_with_remaining_lease() {
    let dir = tempdir("restart");
    let clock = Arc::new(ManualClock::new());
    let igd = Igd::start_with(Some(&dir), clock.clone(), |_| {}).await;
    let (s, _) = call(&igd, 2, "AddPortMapping", &add_args("8080", "", "3600")).await;
    assert_eq!(s, 200);
    let (s, _) = call(&igd, 1, "AddPortMapping", &add_args("8081", "", "0")).await;
    assert_eq!(s, 200);
    let ssdp_boot = igd.handle.location(2);
    igd.stop().await;
    assert!(
        std::fs::read_to_string(dir.join("igd-mappings"))
            .unwrap()
            .contains("8080")
    );
    clock.advance(Duration::from_secs(600));
    let igd = Igd::start_with(Some(&dir), clock.clone(), |_| {}).await;
    let ms = igd.handle.mappings();
    assert_eq!(ms.len(), 2, "{ms:?}");
    let m = ms.iter().find(|m| m.external_port == 8080).unwrap();
    let left = m.lease_remaining.unwrap();
    assert!((2990..=3000).contains(&left), "{left}");
    assert_eq!(
        ms.iter()
            .find(|m| m.external_port == 8081)
            .unwrap()
            .lease_remaining,
        None
    );
    let mut f = igd.forwards();
    f.sort();
    assert_eq!(
        f,
        vec![
            (Protocol::Tcp, 8080, ME, 8080),
            (Protocol::Tcp, 8081, ME, 8081)
        ]
    );
    let s = upnpc(&igd.url(), &["-l"]).await;
    assert!(
        s.contains("TCP  8080->127.0.0.1:8080") || s.contains("8080->127.0.0.1:8080"),
        "{s}"
    );
    // the same UDN across restarts, a higher BOOTID
    assert_ne!(ssdp_boot, "");
    let id = std::fs::read_to_string(dir.join("upnp-bootid")).unwrap();
    assert_eq!(id.trim(), "2");
    igd.stop().await;
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ssdp_unicast_search_and_garbage() {
    let igd = Igd::start(None, |_| {}).await;
    let to = igd.handle.ssdp_addr().unwrap();
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    sock.send_to(b"garbage\r\n\r\n", to).unwrap();
    // (ST, USER-AGENT, LOCATION path): only a UDA 1.0 client searching for IGD:1 gets the v1
    // variant; everyone else (miniupnpc searches for IGD:1 too) gets the v2 description.
    for (st, ua, loc) in [
        (
            "urn:schemas-upnp-org:device:InternetGatewayDevice:1",
            "Windows/10 UPnP/1.0",
            "/rootDesc1.xml",
        ),
        (
            "urn:schemas-upnp-org:device:InternetGatewayDevice:1",
            "Debian/12 UPnP/1.1 MiniUPnPc/2.2.4",
            "/rootDesc.xml",
        ),
        (
            "urn:schemas-upnp-org:device:InternetGatewayDevice:2",
            "Windows/10 UPnP/1.0",
            "/rootDesc.xml",
        ),
        ("upnp:rootdevice", "x UPnP/1.0", "/rootDesc.xml"),
    ] {
        let m = format!(
            "M-SEARCH * HTTP/1.1\r\nHOST: {to}\r\nMAN: \"ssdp:discover\"\r\nST: {st}\r\nUSER-AGENT: {ua}\r\n\r\n"
        );
        sock.send_to(m.as_bytes(), to).unwrap();
        let mut buf = [0u8; 2048];
        let (n, _) = sock.recv_from(&mut buf).unwrap();
        let Ok(shared::ssdp::Message::Response(r)) = shared::ssdp::parse(&buf[..n]) else {
            panic!()
        };
        assert_eq!(r.st, st);
        assert_eq!(
            r.location,
            format!("http://{}{loc}", igd.handle.http_addr())
        );
        assert_eq!(r.boot_id, Some(1));
    }
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(igd.handle.stats().ssdp_malformed, 1);
    igd.stop().await;
}

// ---------------------------------------------------------------------------------------------
// GENA

/// A one-connection-at-a-time HTTP listener that records NOTIFY bodies.
fn event_sink() -> (SocketAddr, std::sync::mpsc::Receiver<String>) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for s in l.incoming() {
            let Ok(mut s) = s else { return };
            s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
            let mut buf = Vec::new();
            let mut chunk = [0u8; 4096];
            loop {
                match s.read(&mut chunk) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => buf.extend_from_slice(&chunk[..n]),
                }
                let text = String::from_utf8_lossy(&buf);
                if text.contains("</e:propertyset>") {
                    break;
                }
            }
            let _ = s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n");
            if tx.send(String::from_utf8_lossy(&buf).into_owned()).is_err() {
                return;
            }
        }
    });
    (addr, rx)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gena_subscribe_events_and_call_stranger() {
    let igd = Igd::start(None, |_| {}).await;
    let addr = igd.handle.http_addr();
    let (sink, rx) = event_sink();
    // CallStranger: a callback elsewhere is refused
    let (s, _) = raw_http(addr, format!("SUBSCRIBE /evt/IPConn HTTP/1.1\r\nHost: {addr}\r\nCALLBACK: <http://192.0.2.1:80/x>\r\nNT: upnp:event\r\nTIMEOUT: Second-300\r\nConnection: close\r\n\r\n").into_bytes()).await;
    assert_eq!(s, 412);
    let (s, text) = raw_http(addr, format!("SUBSCRIBE /evt/IPConn HTTP/1.1\r\nHost: {addr}\r\nCALLBACK: <http://{sink}/cb>\r\nNT: upnp:event\r\nTIMEOUT: Second-300\r\nConnection: close\r\n\r\n").into_bytes()).await;
    assert_eq!(s, 200, "{text}");
    let lower = text.to_ascii_lowercase();
    assert!(lower.contains("timeout: second-300"), "{text}");
    let sid = text
        .lines()
        .find_map(|l| l.strip_prefix("sid: ").or_else(|| l.strip_prefix("SID: ")))
        .unwrap()
        .trim()
        .to_string();
    let recv = || rx.recv_timeout(Duration::from_secs(3)).unwrap();
    let first = tokio::task::block_in_place(recv);
    assert!(first.contains("SEQ: 0"), "{first}");
    assert!(
        first.contains("<PortMappingNumberOfEntries>0</PortMappingNumberOfEntries>"),
        "{first}"
    );
    assert!(
        first.contains(&format!("<ExternalIPAddress>{WAN}</ExternalIPAddress>")),
        "{first}"
    );
    assert!(
        first.contains("<ConnectionStatus>Connected</ConnectionStatus>"),
        "{first}"
    );
    // a mapping: PortMappingNumberOfEntries
    let (s, _) = call(&igd, 2, "AddPortMapping", &add_args("8080", "", "0")).await;
    assert_eq!(s, 200);
    let ev = tokio::task::block_in_place(recv);
    assert!(
        ev.contains("SEQ: 1")
            && ev.contains("<PortMappingNumberOfEntries>1</PortMappingNumberOfEntries>"),
        "{ev}"
    );
    // the WAN address changes: ExternalIPAddress
    igd.nat
        .lock()
        .unwrap()
        .set_wan_addr(Ipv4Addr::new(60, 120, 76, 65));
    igd.handle.wan_changed();
    let ev = tokio::task::block_in_place(recv);
    assert!(
        ev.contains("SEQ: 2") && ev.contains("<ExternalIPAddress>60.120.76.65</ExternalIPAddress>"),
        "{ev}"
    );
    // renew, unsubscribe, then unknown SID is 412
    let (s, _) = raw_http(addr, format!("SUBSCRIBE /evt/IPConn HTTP/1.1\r\nHost: {addr}\r\nSID: {sid}\r\nTIMEOUT: Second-600\r\nConnection: close\r\n\r\n").into_bytes()).await;
    assert_eq!(s, 200);
    let (s, _) = raw_http(addr, format!("UNSUBSCRIBE /evt/IPConn HTTP/1.1\r\nHost: {addr}\r\nSID: {sid}\r\nConnection: close\r\n\r\n").into_bytes()).await;
    assert_eq!(s, 200);
    let (s, _) = raw_http(addr, format!("UNSUBSCRIBE /evt/IPConn HTTP/1.1\r\nHost: {addr}\r\nSID: {sid}\r\nConnection: close\r\n\r\n").into_bytes()).await;
    assert_eq!(s, 412);
    igd.stop().await;
}

// ---------------------------------------------------------------------------------------------
// NAT-PMP / PCP

fn pmp_exchange(to: SocketAddr, req: &[u8]) -> Vec<u8> {
    let s = UdpSocket::bind("127.0.0.1:0").unwrap();
    s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    s.send_to(req, to).unwrap();
    let mut buf = [0u8; 1100];
    let (n, _) = s.recv_from(&mut buf).unwrap();
    buf[..n].to_vec()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn natpmp_and_pcp() {
    let igd = Igd::start(None, |_| {}).await;
    let to = igd.handle.pmp_addr().unwrap();
    let r =
        tokio::task::block_in_place(|| pmp_exchange(to, &NatPmpRequest::ExternalAddress.emit()));
    assert!(matches!(
        NatPmpResponse::parse(&r),
        Ok(NatPmpResponse::ExternalAddress { result: NatPmpResult::Success, addr, .. }) if addr == WAN
    ));
    let map = NatPmpRequest::Map {
        protocol: NatPmpProtocol::Tcp,
        internal_port: 4000,
        suggested_external_port: 14000,
        lifetime: 120,
    };
    let r = tokio::task::block_in_place(|| pmp_exchange(to, &map.emit()));
    let Ok(NatPmpResponse::Map {
        result: NatPmpResult::Success,
        external_port,
        lifetime,
        ..
    }) = NatPmpResponse::parse(&r)
    else {
        panic!("{r:?}")
    };
    assert_eq!((external_port, lifetime), (14000, 120));
    assert!(igd.forwards().contains(&(Protocol::Tcp, 14000, ME, 4000)));
    // the epoch is seconds since start (virtual clock)
    igd.clock.advance(Duration::from_secs(50));
    let r =
        tokio::task::block_in_place(|| pmp_exchange(to, &NatPmpRequest::ExternalAddress.emit()));
    let Ok(NatPmpResponse::ExternalAddress { epoch, .. }) = NatPmpResponse::parse(&r) else {
        panic!()
    };
    assert_eq!(epoch, 50);
    // lifetime 0 deletes
    let del = NatPmpRequest::Map {
        protocol: NatPmpProtocol::Tcp,
        internal_port: 4000,
        suggested_external_port: 0,
        lifetime: 0,
    };
    tokio::task::block_in_place(|| pmp_exchange(to, &del.emit()));
    assert!(igd.forwards().is_empty());
    // unsupported opcode
    let r = tokio::task::block_in_place(|| pmp_exchange(to, &[0, 9, 0, 0]));
    assert!(matches!(
        NatPmpResponse::parse(&r),
        Ok(NatPmpResponse::Error {
            result: NatPmpResult::UnsupportedOpcode,
            ..
        })
    ));

    // PCP MAP
    let nonce = [7u8; 12];
    let pcp = PcpRequest {
        opcode: PcpOpcode::Map,
        lifetime: 300,
        client_addr: natpmp::v4_mapped(ME),
        map: Some(PcpMap {
            nonce,
            protocol: 17,
            internal_port: 5000,
            external_port: 15000,
            external_addr: std::net::Ipv6Addr::UNSPECIFIED,
        }),
        options: vec![],
    };
    let r = tokio::task::block_in_place(|| pmp_exchange(to, &pcp.emit()));
    let resp = PcpResponse::parse(&r).unwrap();
    assert_eq!(resp.result, PcpResult::Success);
    let m = resp.map.unwrap();
    assert_eq!(
        (m.nonce, m.external_port, m.external_addr),
        (nonce, 15000, natpmp::v4_mapped(WAN))
    );
    assert!(igd.forwards().contains(&(Protocol::Udp, 15000, ME, 5000)));
    let ms = igd.handle.mappings();
    assert!(ms.iter().any(|m| m.origin == "pcp"));
    // another nonce may not touch it
    let thief = PcpRequest {
        map: Some(PcpMap {
            nonce: [9; 12],
            ..pcp.map.unwrap()
        }),
        ..pcp.clone()
    };
    let r = tokio::task::block_in_place(|| pmp_exchange(to, &thief.emit()));
    let refused = PcpResponse::parse(&r).unwrap();
    assert_eq!(refused.result, PcpResult::NotAuthorized);
    // §11.3: the error carries the remaining lifetime of the mapping it may not touch
    assert_eq!(refused.lifetime, pcp.lifetime);
    // nor delete it
    let thief_delete = PcpRequest {
        lifetime: 0,
        ..thief.clone()
    };
    let r = tokio::task::block_in_place(|| pmp_exchange(to, &thief_delete.emit()));
    assert_eq!(
        PcpResponse::parse(&r).unwrap().result,
        PcpResult::NotAuthorized
    );
    assert!(igd.forwards().contains(&(Protocol::Udp, 15000, ME, 5000)));
    // ADDRESS_MISMATCH
    let liar = PcpRequest {
        client_addr: natpmp::v4_mapped(Ipv4Addr::new(127, 0, 0, 9)),
        ..pcp.clone()
    };
    let r = tokio::task::block_in_place(|| pmp_exchange(to, &liar.emit()));
    assert_eq!(
        PcpResponse::parse(&r).unwrap().result,
        PcpResult::AddressMismatch
    );
    // lifetime expiry through the table
    igd.clock.advance(Duration::from_secs(301));
    igd.handle.tick();
    assert!(igd.forwards().is_empty());
    // malformed PCP (bad length) is answered MALFORMED_REQUEST and counted
    let mut bad = pcp.emit();
    bad.truncate(30);
    bad.resize(32, 0);
    let r = tokio::task::block_in_place(|| pmp_exchange(to, &bad));
    // (the error response copies the request's payload, which need not parse as options)
    assert_eq!((r[1], r[3]), (0x81, PcpResult::MalformedRequest as u8));
    assert!(igd.handle.stats().pmp_malformed >= 2);
    igd.stop().await;
}

/// Issue 11: the first SID equalled the device UUID on every fresh start (both drawn from one
/// time-seeded generator), so any LAN host could cancel another control point's subscription.
/// SIDs and UUIDs now come from the OS random source: two fresh starts with the same seed
/// share neither, and no SID is a UUID of the device.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sids_and_uuids_come_from_the_os_random_source() {
    let (sink, _rx) = event_sink();
    let mut seen = Vec::new();
    for _ in 0..2 {
        let igd = Igd::start(None, |_| {}).await;
        let addr = igd.handle.http_addr();
        let (s, desc) = raw_http(
            addr,
            format!("GET /rootDesc.xml HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n")
                .into_bytes(),
        )
        .await;
        assert_eq!(s, 200, "{desc}");
        let udns: Vec<String> = desc
            .split("<UDN>")
            .skip(1)
            .filter_map(|p| p.split("</UDN>").next())
            .map(str::to_string)
            .collect();
        assert_eq!(udns.len(), 3, "{desc}");
        let (s, text) = raw_http(addr, format!("SUBSCRIBE /evt/IPConn HTTP/1.1\r\nHost: {addr}\r\nCALLBACK: <http://{sink}/cb>\r\nNT: upnp:event\r\nTIMEOUT: Second-300\r\nConnection: close\r\n\r\n").into_bytes()).await;
        assert_eq!(s, 200, "{text}");
        let sid = text
            .lines()
            .find_map(|l| l.strip_prefix("sid: ").or_else(|| l.strip_prefix("SID: ")))
            .unwrap()
            .trim()
            .to_string();
        assert!(!udns.contains(&sid), "SID {sid} is a UDN: {udns:?}");
        seen.push((udns, sid));
        igd.stop().await;
    }
    assert_ne!(seen[0].0, seen[1].0, "two fresh starts, one UUID");
    assert_ne!(seen[0].1, seen[1].1, "two fresh starts, one SID");
}
