//! Issue 11: cross-site changes, DNS rebinding, the admin password, and the NAT lock held by
//! `GET /api/sessions`.

use super::*;

fn behaviour(s: &ControlState) -> Behaviour {
    lock(&s.nat).behaviour().clone()
}

#[test]
fn what_a_page_elsewhere_can_send_changes_nothing() {
    rt().block_on(async {
        let s = state();
        let before = behaviour(&s);
        // A form or a no-cors fetch from another site: text/plain or form-encoded, with the
        // browser's Origin and Sec-Fetch-Site; and the same without them (an old browser).
        let evil = ("origin", "http://203.0.113.9:8000");
        let xsite = ("sec-fetch-site", "cross-site");
        for (fields, want) in [
            (vec![("content-type", "text/plain"), evil, xsite], 403),
            (
                vec![("content-type", "application/x-www-form-urlencoded"), evil],
                403,
            ),
            (vec![("content-type", "text/plain")], 415),
            (
                vec![("content-type", "multipart/form-data; boundary=x")],
                415,
            ),
            (vec![], 415),
            // JSON from another origin needs a preflight this server never grants; and if a
            // browser sent it anyway, its Origin is refused.
            (vec![("content-type", "application/json"), evil], 403),
            (
                vec![("content-type", "application/json"), ("origin", "null")],
                403,
            ),
        ] {
            for (path, body) in [
                ("/api/preset", "symmetric"),
                ("/api/behaviour", r#"{"filtering":"endpoint-independent"}"#),
                ("/api/wan", "198.51.100.7/24"),
                (
                    "/api/forwards",
                    r#"{"protocol":"tcp","external_port":8445,"internal_addr":"192.168.1.50"}"#,
                ),
                ("/api/flush", ""),
            ] {
                let (code, text) = call_with(&s, "POST", path, &fields, body).await;
                assert_eq!(code.as_u16(), want, "{path} {fields:?}: {text}");
                assert!(serde_json::from_str::<Value>(&text).unwrap()["error"].is_string());
            }
        }
        let (code, _) = call_with(&s, "DELETE", "/api/forwards/tcp/8445", &[evil], "").await;
        assert_eq!(code, StatusCode::FORBIDDEN);
        // DNS rebinding: the attacker's name in Host; nothing is read or changed.
        let rebound = [("host", "rebind.example")];
        for (m, path) in [
            ("GET", "/api/status"),
            ("GET", "/api/sessions"),
            ("GET", "/"),
            ("GET", "/api/dhcp/leases"),
            ("POST", "/api/flush"),
        ] {
            let req = Request::builder()
                .method(m)
                .uri(path)
                .header("host", "rebind.example:80")
                .header("content-type", "application/json")
                .body(Full::new(Bytes::new()))
                .unwrap();
            let resp = handle(&s, req).await;
            assert_eq!(
                resp.status(),
                StatusCode::MISDIRECTED_REQUEST,
                "{m} {path} {rebound:?}"
            );
        }
        assert_eq!(behaviour(&s), before);
        assert_eq!(lock(&s.nat).wan_addr(), Ipv4Addr::new(203, 0, 113, 2));
        assert_eq!(lock(&s.nat).forwards().count(), 0);
        // The router's own page (same origin) still changes things.
        let own = [
            ("content-type", "application/json"),
            ("origin", "http://192.168.1.1"),
        ];
        let (code, text) = call_with(&s, "POST", "/api/preset", &own, "\"symmetric\"").await;
        assert_eq!(code, StatusCode::OK, "{text}");
        assert_eq!(behaviour(&s), Preset::Symmetric.behaviour());
    });
}

#[test]
fn the_admin_forms_need_the_page_token() {
    rt().block_on(async {
        let s = state();
        let (code, page) = call(&s, "GET", "/", "").await;
        assert_eq!(code, StatusCode::OK);
        let token = s.access.csrf_token().to_string();
        let form = ("content-type", "application/x-www-form-urlencoded");
        let own = ("origin", "http://192.168.1.1");
        for body in [
            "protocol=tcp&port=8080",
            "protocol=tcp&port=8080&csrf=",
            "protocol=tcp&port=8080&csrf=00112233445566778899aabbccddeeff",
        ] {
            let (code, text) =
                call_with(&s, "POST", "/admin/mappings/delete", &[form, own], body).await;
            assert_eq!(code, StatusCode::FORBIDDEN, "{body}: {text}");
        }
        // With the token, the form reaches the mapping table (off here: 404, not 403).
        let body = format!("protocol=tcp&port=8080&csrf={token}");
        let (code, text) =
            call_with(&s, "POST", "/admin/mappings/delete", &[form, own], &body).await;
        assert_eq!(code, StatusCode::NOT_FOUND, "{text}");
        // The page has no forms without mappings; the token is the server's, not in the JSON.
        let (_, json) = call(&s, "GET", "/api/admin", "").await;
        assert!(!json.contains(&token) && !page.contains("csrf=\""));
    });
}

#[test]
fn a_password_protects_the_page_and_the_api() {
    rt().block_on(async {
        let mut s = state();
        s.access = Access::new(
            &crate::access::AdminSection {
                password: Some("s3cret".into()),
                ..Default::default()
            },
            "192.168.1.1:80".parse().unwrap(),
            Ipv4Addr::new(192, 168, 1, 1),
        );
        for (m, path) in [
            ("GET", "/"),
            ("GET", "/api/status"),
            ("GET", "/metrics"),
            ("POST", "/api/flush"),
        ] {
            let (code, _) = call(&s, m, path, "").await;
            assert_eq!(code, StatusCode::UNAUTHORIZED, "{m} {path}");
        }
        let req = Request::builder()
            .uri("/")
            .header("host", "192.168.1.1")
            .body(Full::new(Bytes::new()))
            .unwrap();
        let resp = handle(&s, req).await;
        assert!(
            resp.headers()["www-authenticate"]
                .to_str()
                .unwrap()
                .starts_with("Basic ")
        );
        // admin:s3cret
        let auth = ("authorization", "Basic YWRtaW46czNjcmV0");
        let (code, _) = call_with(&s, "GET", "/", &[auth], "").await;
        assert_eq!(code, StatusCode::OK);
        let json = ("content-type", "application/json");
        let (code, _) = call_with(&s, "POST", "/api/flush", &[auth, json], "").await;
        assert_eq!(code, StatusCode::OK);
    });
}

/// `n` UDP sessions from 200 LAN hosts.
fn fill(nat: &Mutex<Nat>, n: u32) {
    let now = Instant::now();
    let mut nat = lock(nat);
    nat.set_max_sessions(n as usize * 2);
    for i in 0..n {
        let src = Ipv4Addr::from(u32::from(Ipv4Addr::new(192, 168, 1, 10)) + i % 200);
        let dst = Ipv4Addr::from(u32::from(Ipv4Addr::new(198, 18, 0, 0)) + i / 200);
        let mut p = Vec::new();
        etherparse::PacketBuilder::ipv4(src.octets(), dst.octets(), 64)
            .udp(20000, 53)
            .write(&mut p, &[0u8; 8])
            .unwrap();
        nat.process(now, crate::nat::Side::Lan, &mut p);
    }
    assert_eq!(nat.session_count(), n as usize);
}

async fn get(s: &ControlState, path: &str) -> (StatusCode, hyper::HeaderMap, String) {
    let req = Request::builder()
        .uri(path)
        .header("host", "192.168.1.1")
        .body(Full::new(Bytes::new()))
        .unwrap();
    let resp = handle(s, req).await;
    let (parts, body) = resp.into_parts();
    let bytes = body.collect().await.unwrap().to_bytes();
    (
        parts.status,
        parts.headers,
        String::from_utf8(bytes.to_vec()).unwrap(),
    )
}

#[test]
fn sessions_come_in_pages_with_a_link_to_the_next() {
    rt().block_on(async {
        let s = state();
        fill(&s.nat, 1234);
        let mut seen = std::collections::HashSet::new();
        let mut next = Some("/api/sessions".to_string());
        let mut pages = 0;
        while let Some(path) = next.take() {
            let (code, h, body) = get(&s, &path).await;
            assert_eq!(code, StatusCode::OK, "{body}");
            assert_eq!(h["x-total-count"], "1234");
            let v: Vec<Value> = serde_json::from_str(&body).unwrap();
            assert!(v.len() <= SESSIONS_PAGE);
            for x in v {
                assert!(
                    seen.insert(format!("{}>{}", x["internal"], x["remote"])),
                    "{x}"
                );
            }
            next = h.get("link").map(|l| {
                let l = l.to_str().unwrap();
                assert!(l.ends_with(">; rel=\"next\""), "{l}");
                l[1..l.find('>').unwrap()].to_string()
            });
            pages += 1;
        }
        assert_eq!((seen.len(), pages), (1234, 3));
        let (_, _, body) = get(&s, "/api/sessions?cursor=1200&limit=1000").await;
        assert_eq!(serde_json::from_str::<Vec<Value>>(&body).unwrap().len(), 34);
        for bad in ["limit=0", "limit=1001", "limit=x", "cursor=-1"] {
            let (code, _, body) = get(&s, &format!("/api/sessions?{bad}")).await;
            assert_eq!(code, StatusCode::BAD_REQUEST, "{bad}: {body}");
        }
    });
}

/// Issue 11: `GET /api/sessions` with 200k sessions held the NAT lock for 0.58 s. A thread in
/// the dataplane's place takes the lock in a loop while every read request runs; the longest
/// it waits is the longest any request held the lock.
#[test]
fn no_request_holds_the_nat_lock_for_long() {
    const SESSIONS: u32 = 200_000;
    let s = Arc::new(state());
    fill(&s.nat, SESSIONS);
    // The cost of walking the whole table under the lock in this build: what the old handler
    // did at least once per request.
    let t = Instant::now();
    let walked = lock(&s.nat).sessions(Instant::now()).count();
    let full_walk = t.elapsed();
    assert_eq!(walked, SESSIONS as usize);

    // A deep page costs what the first one does (it starts at its cursor); `/` and
    // /api/admin count the table in chunks the same way.
    let paths = [
        "/api/sessions",
        "/api/sessions?limit=1000",
        "/api/sessions?cursor=100000&limit=1000",
        "/api/sessions?cursor=199500&limit=1000",
        "/api/status",
        "/api/admin",
        "/",
        "/metrics",
    ];
    // Per path, three rounds; the shortest round's longest wait counts, so that a round in
    // which the scheduler preempted a request holding the lock (a loaded machine) does not
    // decide.
    let mut worst = (Duration::ZERO, "");
    for path in paths {
        let mut rounds = Vec::new();
        for _ in 0..3 {
            let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
            let observer = {
                let (nat, stop) = (s.nat.clone(), stop.clone());
                std::thread::spawn(move || {
                    let mut longest = Duration::ZERO;
                    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                        let t = Instant::now();
                        drop(lock(&nat));
                        longest = longest.max(t.elapsed());
                        std::thread::sleep(Duration::from_micros(20));
                    }
                    longest
                })
            };
            rt().block_on(async {
                let (code, _, body) = get(&s, path).await;
                assert_eq!(code, StatusCode::OK, "{path}: {body}");
            });
            stop.store(true, std::sync::atomic::Ordering::Relaxed);
            rounds.push(observer.join().unwrap());
        }
        let longest = rounds.iter().copied().min().unwrap_or_default();
        eprintln!("{path}: lock held at most {longest:?} (rounds {rounds:?})");
        worst = worst.max((longest, path));
    }
    let (longest, path) = worst;
    eprintln!("one walk of {SESSIONS} sessions under the lock: {full_walk:?}");
    // The router is an optimised build: each hold under a millisecond. Unoptimised, every
    // request holds it for a small part of one walk.
    if cfg!(debug_assertions) {
        assert!(
            longest < full_walk / 10,
            "{path}: {longest:?} >= {full_walk:?} / 10"
        );
    } else {
        assert!(longest < Duration::from_millis(1), "{path}: {longest:?}");
    }
}

/// Issue 11 (slowloris): one client holding idle connections gets
/// [`crate::access::MAX_CONNECTIONS_PER_CLIENT`]; the next are closed at once, and another
/// client is answered meanwhile.
#[test]
fn one_client_cannot_hold_every_connection() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let per_client = crate::access::MAX_CONNECTIONS_PER_CLIENT;
    rt().block_on(async {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let mut s = state();
        s.access = Access::new(&Default::default(), addr, Ipv4Addr::new(192, 168, 1, 1));
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(serve(listener, Arc::new(s), async {
            let _ = stopped.await;
        }));
        let mut held = Vec::new();
        for _ in 0..per_client + 10 {
            let mut c = tokio::net::TcpStream::connect(addr).await.unwrap();
            c.write_all(b"GET / HTTP/1.1\r\n").await.unwrap();
            held.push(c);
        }
        let mut closed = 0;
        for c in &mut held {
            let mut b = [0u8; 64];
            match tokio::time::timeout(Duration::from_millis(100), c.read(&mut b)).await {
                Ok(Ok(0)) | Ok(Err(_)) => closed += 1,
                Ok(Ok(n)) => panic!("an answer to an unfinished head: {:?}", &b[..n]),
                Err(_) => {}
            }
        }
        assert_eq!(closed, 10);
        let other = tokio::net::TcpSocket::new_v4().unwrap();
        other.bind("127.0.0.2:0".parse().unwrap()).unwrap();
        let mut c = other.connect(addr).await.unwrap();
        c.write_all(
            format!("GET /api/status HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n")
                .as_bytes(),
        )
        .await
        .unwrap();
        let mut text = Vec::new();
        tokio::time::timeout(Duration::from_secs(2), c.read_to_end(&mut text))
            .await
            .expect("answered while the other client holds its share")
            .unwrap();
        assert!(
            text.starts_with(b"HTTP/1.1 200 "),
            "{}",
            String::from_utf8_lossy(&text)
        );
        drop(held);
        let _ = stop.send(());
        let _ = server.await;
    });
}
