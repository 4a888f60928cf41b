//! `relay-bench`: the same payloads measured directly, through our relay and through rathole, on
//! loopback, plus the relay's idle scale (issue 12, "Benchmark"). Run it under
//! `flock /work/bench.lock` on a quiet machine; it prints the load next to the figures.
//!
//! Processes: the relay (`target/release/relay`, a child, so its CPU and memory are its own) and
//! rathole's server and client (children; `--rathole PATH`, skipped if absent). In this process:
//! the origin site (`/big?bytes=N`, `/small`), the bench device (UDP notifications from
//! 127.0.0.2, TLS back-connections serving the same site) and the viewers (from 127.0.0.1, so the
//! relay does not see them as the device's network), and the idle devices' notification
//! generator. WAN delay needs the lab's namespaces (netem on a link); on loopback the figures are
//! the relays' own cost.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use bytes::Bytes;
use clap::Parser;
use http_body_util::{BodyExt, Empty, Full, combinators::UnsyncBoxBody};
use hyper::body::{Frame, Incoming};
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;
use shared::relayproto::{Body as Msg, Hello, HelloStatus, Notify, NotifyKind, Repr, Secret};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpSocket, TcpStream, UdpSocket};

/// Compare direct, our relay and rathole on loopback; measure idle devices per relay.
#[derive(Debug, Parser)]
#[command(name = "relay-bench")]
struct Args {
    /// Bytes of the large transfer, in MiB.
    #[arg(long, default_value_t = 256)]
    size_mib: u64,
    /// Small GETs per path (over 4 keep-alive connections).
    #[arg(long, default_value_t = 4000)]
    requests: usize,
    /// Cold first-byte samples per path (each a new viewer connection).
    #[arg(long, default_value_t = 200)]
    cold: usize,
    /// Idle devices registered for the scale test (0 = skip).
    #[arg(long, default_value_t = 100_000)]
    idle: u32,
    /// Seconds the idle devices are measured for (at least one keep-alive interval).
    #[arg(long, default_value_t = 20)]
    idle_seconds: u64,
    /// The relay binary (default: next to this one).
    #[arg(long)]
    relay: Option<PathBuf>,
    /// The bench device connects back with TCP Fast Open (needs `net.ipv4.tcp_fastopen=3`).
    #[arg(long)]
    fast_open: bool,
    /// The rathole binary (`cargo install rathole`); skipped if not found.
    #[arg(long, default_value = "rathole")]
    rathole: String,
}

const DEVICE: u64 = 0xbe7c_0000_0000_0001;
const KEEPALIVE: Duration = Duration::from_secs(20);

type B = UnsyncBoxBody<Bytes, Infallible>;

/// The origin site: `/big?bytes=N` streams N bytes in 64 KiB chunks, anything else is small.
fn origin(req: Request<Incoming>) -> Response<B> {
    if req.uri().path() == "/big" {
        let n: u64 = req
            .uri()
            .query()
            .and_then(|q| q.strip_prefix("bytes="))
            .and_then(|v| v.parse().ok())
            .unwrap_or(1 << 20);
        let body = BigBody {
            left: n,
            chunk: Bytes::from(vec![b'x'; 64 * 1024]),
        };
        let mut r = Response::new(body.boxed_unsync());
        r.headers_mut().insert(
            "content-length",
            hyper::header::HeaderValue::from_str(&n.to_string()).expect("digits"),
        );
        return r;
    }
    Response::new(Full::new(Bytes::from_static(b"hello from the camera\n")).boxed_unsync())
}

/// `left` bytes of 'x' in 64 KiB frames, made as fast as they are read.
struct BigBody {
    left: u64,
    chunk: Bytes,
}

impl hyper::body::Body for BigBody {
    type Data = Bytes;
    type Error = Infallible;
    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        if self.left == 0 {
            return std::task::Poll::Ready(None);
        }
        let take = self.left.min(self.chunk.len() as u64) as usize;
        self.left -= take as u64;
        std::task::Poll::Ready(Some(Ok(Frame::data(self.chunk.slice(..take)))))
    }
}

async fn serve_origin<S>(io: S)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let svc = hyper::service::service_fn(|r| async move { Ok::<_, Infallible>(origin(r)) });
    let _ = hyper::server::conn::http1::Builder::new()
        .serve_connection(TokioIo::new(io), svc)
        .await;
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or(0)
}

struct Kid(Child);

impl Drop for Kid {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn spawn(bin: &Path, args: &[&str], log: &Path) -> Result<Kid> {
    let out = std::fs::File::create(log)?;
    let child = Command::new(bin)
        .args(args)
        .stdout(out.try_clone()?)
        .stderr(out)
        .stdin(Stdio::null())
        .spawn()
        .with_context(|| format!("starting {}", bin.display()))?;
    Ok(Kid(child))
}

/// CPU seconds (user + system) and resident bytes of a process.
fn usage(pid: u32) -> (f64, u64) {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let after = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<&str> = after.split_whitespace().collect();
    let tick = 100.0; // USER_HZ on Linux
    let cpu = f.get(11).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0)
        + f.get(12).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let rss_kib = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
        .unwrap_or(0);
    (cpu / tick, rss_kib * 1024)
}

// ---- viewers ----

type Sender = hyper::client::conn::http1::SendRequest<Empty<Bytes>>;

async fn connect(to: SocketAddr) -> Result<Sender> {
    let s = TcpSocket::new_v4()?;
    s.bind("127.0.0.1:0".parse()?)?;
    let tcp = s.connect(to).await?;
    tcp.set_nodelay(true)?;
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp)).await?;
    tokio::spawn(conn);
    Ok(sender)
}

/// GETs `path`; returns the time to the response head and the body's length.
async fn get(s: &mut Sender, path: &str) -> Result<(Duration, u64)> {
    s.ready().await?;
    let t = Instant::now();
    let req = Request::get(path)
        .header("host", "bench")
        .body(Empty::new())?;
    let r = s.send_request(req).await?;
    let head = t.elapsed();
    if !r.status().is_success() {
        bail!("{path}: {}", r.status());
    }
    let mut body = r.into_body();
    let mut n = 0u64;
    while let Some(f) = body.frame().await {
        if let Some(d) = f?.data_ref() {
            n += d.len() as u64;
        }
    }
    Ok((head, n))
}

fn pct(v: &mut [Duration], p: f64) -> Duration {
    v.sort();
    let i = ((v.len() as f64 - 1.0) * p).round() as usize;
    v.get(i).copied().unwrap_or_default()
}

#[derive(Debug, Default, Clone)]
struct Figures {
    mb_s: f64,
    req_s: f64,
    cold_p50: Duration,
    cold_p99: Duration,
    warm_p50: Duration,
    warm_p99: Duration,
}

async fn measure(to: SocketAddr, prefix: &str, a: &Args) -> Result<Figures> {
    let mut f = Figures::default();
    // Warm-up, then one large transfer on its own connection.
    let mut s = connect(to).await?;
    get(&mut s, &format!("{prefix}/small")).await?;
    let bytes = a.size_mib << 20;
    let t = Instant::now();
    let (_, n) = get(&mut s, &format!("{prefix}/big?bytes={bytes}")).await?;
    if n != bytes {
        bail!("{prefix}: got {n} of {bytes} bytes");
    }
    f.mb_s = bytes as f64 / t.elapsed().as_secs_f64() / 1e6;
    // Warm first byte: sequential small GETs on the open connection.
    let mut warm = Vec::new();
    for _ in 0..a.cold.max(200) {
        warm.push(get(&mut s, &format!("{prefix}/small")).await?.0);
    }
    f.warm_p50 = pct(&mut warm, 0.5);
    f.warm_p99 = pct(&mut warm, 0.99);
    // Small GETs per second over 4 connections.
    let per = a.requests / 4;
    let t = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..4 {
        let path = format!("{prefix}/small");
        tasks.push(tokio::spawn(async move {
            let mut s = connect(to).await?;
            for _ in 0..per {
                get(&mut s, &path).await?;
            }
            Ok::<_, anyhow::Error>(())
        }));
    }
    for t in tasks {
        t.await??;
    }
    f.req_s = (per * 4) as f64 / t.elapsed().as_secs_f64();
    // Cold first byte: a new viewer connection each time (for the relay: a new session, its
    // connection request and back-connection).
    let mut cold = Vec::new();
    for _ in 0..a.cold {
        let t = Instant::now();
        let mut s = connect(to).await?;
        let req = Request::get(format!("{prefix}/small"))
            .header("host", "bench")
            .body(Empty::new())?;
        let r = s.send_request(req).await?;
        cold.push(t.elapsed());
        let _ = r.into_body().collect().await;
    }
    f.cold_p50 = pct(&mut cold, 0.5);
    f.cold_p99 = pct(&mut cold, 0.99);
    Ok(f)
}

// ---- the bench device (seed 003's device side, minimal) ----

async fn bench_device(
    relay_udp: SocketAddr,
    secret: Secret,
    ca: PathBuf,
    fast_open: bool,
) -> Result<()> {
    let sock = Arc::new(UdpSocket::bind("127.0.0.2:0").await?);
    let mut counter = 1u64;
    let mut send = |body: Msg| {
        counter += 1;
        Repr {
            device_id: DEVICE,
            counter,
            body,
        }
        .emit(&secret)
    };
    let refresh = send(Msg::Notify(Notify {
        kind: NotifyKind::Refresh,
        lan: Some("192.168.1.101:8081".parse()?),
        router_wan: None,
    }));
    sock.send_to(&refresh, relay_udp).await?;
    let connector = tokio_rustls::TlsConnector::from(relay::tls::client_config(&ca)?);
    let s2 = sock.clone();
    tokio::spawn(async move {
        let mut buf = [0u8; 600];
        let mut seen = std::collections::HashSet::new();
        while let Ok((n, _)) = s2.recv_from(&mut buf).await {
            let Ok(r) = Repr::parse(&buf[..n], &secret) else {
                continue;
            };
            let Msg::ConnectRequest(c) = r.body else {
                continue;
            };
            if !seen.insert(c.session) {
                continue;
            }
            let to = SocketAddr::new(relay_udp.ip(), c.back_port);
            let (connector, secret) = (connector.clone(), secret.clone());
            tokio::spawn(async move {
                let tcp = connect_back(to, fast_open).await.ok()?;
                tcp.set_nodelay(true).ok()?;
                let name = ServerName::try_from("relay.bench").ok()?;
                let mut tls = connector.connect(name, tcp).await.ok()?;
                tls.write_all(&Hello::new(DEVICE, c.session, &c.nonce, &secret).emit())
                    .await
                    .ok()?;
                let mut a = [0u8; 8];
                tls.read_exact(&mut a).await.ok()?;
                (HelloStatus::parse(&a) == Ok(HelloStatus::Ok)).then_some(())?;
                serve_origin(tls).await;
                Some(())
            });
        }
    });
    Ok(())
}

/// The device's TCP connection to the relay; with `fast_open` its first bytes (the TLS
/// ClientHello) ride in the SYN once the kernel holds a cookie from an earlier connection
/// (RFC 7413, Linux `TCP_FASTOPEN_CONNECT`).
async fn connect_back(to: SocketAddr, fast_open: bool) -> std::io::Result<TcpStream> {
    let s = TcpSocket::new_v4()?;
    if fast_open {
        use std::os::fd::AsRawFd;
        let one: libc::c_int = 1;
        // SAFETY: a valid socket and a correctly sized option value.
        let rc = unsafe {
            libc::setsockopt(
                s.as_raw_fd(),
                libc::IPPROTO_TCP,
                libc::TCP_FASTOPEN_CONNECT,
                (&one as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        if rc != 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    s.connect(to).await
}

// ---- idle scale ----

/// Registers `n` devices (secrets derived from `key`), then keeps them alive at the default
/// interval (a refresh every third notification) until `stop`.
async fn idle_load(relay_udp: SocketAddr, key: Secret, n: u32, stop: Instant) -> Result<()> {
    let socks: Vec<UdpSocket> = {
        let mut v = Vec::new();
        for _ in 0..16 {
            v.push(UdpSocket::bind("127.0.0.3:0").await?);
        }
        v
    };
    let secrets: Vec<Secret> = (0..n)
        .map(|i| Secret::derive(&key, 1 + u64::from(i)))
        .collect();
    let mut counters = vec![1u64; n as usize];
    let lan = "192.168.1.101:8081".parse()?;
    // One round every KEEPALIVE, spread evenly.
    let mut round = 0u64;
    loop {
        let start = Instant::now();
        for i in 0..n {
            let idx = i as usize;
            counters[idx] += 1;
            let kind = if round.is_multiple_of(3) {
                NotifyKind::Refresh
            } else {
                NotifyKind::KeepAlive
            };
            let d = Repr {
                device_id: 1 + u64::from(i),
                counter: counters[idx],
                body: Msg::Notify(Notify {
                    kind,
                    lan: (kind == NotifyKind::Refresh).then_some(lan),
                    router_wan: None,
                }),
            }
            .emit(&secrets[idx]);
            let _ = socks[idx % socks.len()].send_to(&d, relay_udp).await;
            if i.is_multiple_of(256) {
                let due = start + KEEPALIVE.mul_f64(f64::from(i) / f64::from(n));
                tokio::time::sleep_until(tokio::time::Instant::from_std(due)).await;
            }
            if Instant::now() >= stop {
                return Ok(());
            }
        }
        round += 1;
        tokio::time::sleep_until(tokio::time::Instant::from_std(start + KEEPALIVE)).await;
    }
}

fn ratio(a: f64, b: f64) -> String {
    if b > 0.0 {
        format!("{:.2}x", a / b)
    } else {
        "-".into()
    }
}

fn ms(d: Duration) -> String {
    format!("{:.3} ms", d.as_secs_f64() * 1000.0)
}

async fn wait_http(to: SocketAddr, path: &str) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        if let Ok(mut s) = connect(to).await
            && get(&mut s, path).await.is_ok()
        {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("{to}{path} did not answer within 15 s");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<()> {
    let a = Args::parse();
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!("relay-bench on loopback; load average {}", load.trim());
    let dir = std::env::temp_dir().join(format!("relay-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let relay_bin = match &a.relay {
        Some(p) => p.clone(),
        None => std::env::current_exe()?
            .parent()
            .map(|d| d.join("relay"))
            .context("no directory")?,
    };
    if !relay_bin.exists() {
        bail!(
            "{} not found: build it with `cargo build --release -p relay`",
            relay_bin.display()
        );
    }

    // The origin, direct.
    let origin_l = TcpListener::bind("127.0.0.1:0").await?;
    let origin_addr = origin_l.local_addr()?;
    tokio::spawn(async move {
        while let Ok((tcp, _)) = origin_l.accept().await {
            let _ = tcp.set_nodelay(true);
            tokio::spawn(serve_origin(tcp));
        }
    });

    // Our relay.
    let g = relay::tls::gen_certs(&dir, "server", "relay.bench", &[])?;
    let key = Secret([0x42; 32]);
    let secret = Secret::derive(&key, DEVICE);
    let (udp, back, http) = (free_port(), free_port(), free_port());
    let cfg = format!(
        "name = \"bench\"\nudp = \"127.0.0.1:{udp}\"\nback = \"127.0.0.1:{back}\"\n\
         https = \"\"\nhttp = \"127.0.0.1:{http}\"\ncert = \"{}\"\nkey = \"{}\"\n\
         enrol_key = \"{}\"\nmax_sessions_per_device = 100000\n\
         max_new_sessions_per_second = 60000\n",
        g.cert.display(),
        g.key.display(),
        key.to_hex()
    );
    std::fs::write(dir.join("relay.toml"), cfg)?;
    let relay_kid = spawn(
        &relay_bin,
        &["--config", &dir.join("relay.toml").to_string_lossy()],
        &dir.join("relay.log"),
    )?;
    let relay_pid = relay_kid.0.id();
    let relay_udp: SocketAddr = format!("127.0.0.1:{udp}").parse()?;
    let relay_http: SocketAddr = format!("127.0.0.1:{http}").parse()?;
    tokio::time::sleep(Duration::from_millis(300)).await;
    bench_device(relay_udp, secret, g.ca.clone(), a.fast_open).await?;
    let prefix = format!("/d/{}", shared::relayproto::format_device_id(DEVICE));
    wait_http(relay_http, &format!("{prefix}/small")).await?;

    // rathole, if installed.
    let rathole_addr = start_rathole(&a.rathole, &dir, origin_addr, false).await;
    let noise_addr = start_rathole(&a.rathole, &dir, origin_addr, true).await;

    let mut rows: Vec<(&str, Figures)> = Vec::new();
    rows.push(("direct", measure(origin_addr, "", &a).await?));
    let (cpu0, _) = usage(relay_pid);
    let t0 = Instant::now();
    rows.push(("relay", measure(relay_http, &prefix, &a).await?));
    let relay_cpu = (usage(relay_pid).0 - cpu0) / t0.elapsed().as_secs_f64();
    let mut kids = Vec::new();
    match rathole_addr {
        Ok((addr, k)) => {
            kids = k;
            rows.push(("rathole", measure(addr, "", &a).await?));
        }
        Err(e) => println!("rathole skipped: {e:#}"),
    }
    if let Ok((addr, k)) = noise_addr {
        rows.push(("rathole noise", measure(addr, "", &a).await?));
        drop(k);
    }
    print_table(&rows);
    println!(
        "relay CPU during its runs: {:.0} % of one core",
        relay_cpu * 100.0
    );
    drop(kids);

    if a.idle > 0 {
        let (cpu_a, rss_a) = usage(relay_pid);
        let stop = Instant::now() + KEEPALIVE + Duration::from_secs(a.idle_seconds);
        let gen_task = tokio::spawn(idle_load(relay_udp, key.clone(), a.idle, stop));
        // Registration takes one interval; then measure a full one.
        tokio::time::sleep(KEEPALIVE + Duration::from_secs(1)).await;
        let (cpu_b, rss_b) = usage(relay_pid);
        let t = Instant::now();
        tokio::time::sleep(Duration::from_secs(a.idle_seconds)).await;
        let (cpu_c, _) = usage(relay_pid);
        let cpu = (cpu_c - cpu_b) / t.elapsed().as_secs_f64();
        let _ = gen_task.await;
        let devices = fetch_known(relay_http).await.unwrap_or(0);
        println!(
            "idle: {devices} devices registered of {}; memory {:.0} bytes per device \
             (RSS {:.1} -> {:.1} MiB); CPU {:.2} % of one core at a {} s keep-alive \
             (refresh every third), registration burst {:.2} CPU s",
            a.idle,
            (rss_b.saturating_sub(rss_a)) as f64 / f64::from(a.idle.max(1)),
            rss_a as f64 / 1048576.0,
            rss_b as f64 / 1048576.0,
            cpu * 100.0,
            KEEPALIVE.as_secs(),
            cpu_b - cpu_a
        );
    }
    drop(relay_kid);
    if std::env::var_os("RELAY_BENCH_KEEP").is_some() {
        println!("kept {} (relay.log: the relay's log)", dir.display());
    } else {
        let _ = std::fs::remove_dir_all(&dir);
    }
    Ok(())
}

async fn fetch_known(relay_http: SocketAddr) -> Result<usize> {
    let mut s = connect(relay_http).await?;
    let req = Request::get("/metrics")
        .header("host", "bench")
        .body(Empty::new())?;
    let r = s.send_request(req).await?;
    let b = r.into_body().collect().await?.to_bytes();
    let text = String::from_utf8_lossy(&b);
    Ok(text
        .lines()
        .find_map(|l| l.strip_prefix("relay_devices_known "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0))
}

/// rathole's server and client forwarding a port to `origin`: plain TCP, or with `noise` its
/// encrypted transport (Noise_NK x25519, what compares with our TLS back-connection).
async fn start_rathole(
    bin: &str,
    dir: &Path,
    origin: SocketAddr,
    noise: bool,
) -> Result<(SocketAddr, Vec<Kid>)> {
    let bin = which(bin).context("not installed (cargo install rathole)")?;
    let (ctrl, svc) = (free_port(), free_port());
    let (mut st, mut ct) = (String::new(), String::new());
    if noise {
        let out = Command::new(&bin).arg("--genkey").output()?;
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let lines: Vec<&str> = text
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .collect();
        let (Some(private), Some(public)) = (lines.get(1), lines.get(3)) else {
            bail!("rathole --genkey printed {text:?}");
        };
        st = format!(
            "[server.transport]\ntype = \"noise\"\n[server.transport.noise]\n\
             local_private_key = \"{private}\"\n"
        );
        ct = format!(
            "[client.transport]\ntype = \"noise\"\n[client.transport.noise]\n\
             remote_public_key = \"{public}\"\n"
        );
    }
    let tag = if noise { "n" } else { "t" };
    let (sf, cf) = (
        dir.join(format!("rs{tag}.toml")),
        dir.join(format!("rc{tag}.toml")),
    );
    std::fs::write(
        &sf,
        format!(
            "[server]\nbind_addr = \"127.0.0.1:{ctrl}\"\n{st}[server.services.cam]\n\
             token = \"bench\"\nbind_addr = \"127.0.0.1:{svc}\"\n"
        ),
    )?;
    std::fs::write(
        &cf,
        format!(
            "[client]\nremote_addr = \"127.0.0.1:{ctrl}\"\n{ct}[client.services.cam]\n\
             token = \"bench\"\nlocal_addr = \"{origin}\"\n"
        ),
    )?;
    let s = spawn(
        &bin,
        &["-s", &sf.to_string_lossy()],
        &dir.join(format!("rathole-s{tag}.log")),
    )?;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let c = spawn(
        &bin,
        &["-c", &cf.to_string_lossy()],
        &dir.join(format!("rathole-c{tag}.log")),
    )?;
    let addr: SocketAddr = format!("127.0.0.1:{svc}").parse()?;
    wait_http(addr, "/small").await?;
    Ok((addr, vec![c, s]))
}

fn which(name: &str) -> Option<PathBuf> {
    let p = Path::new(name);
    if p.components().count() > 1 {
        return p.exists().then(|| p.to_path_buf());
    }
    std::env::var_os("PATH")?
        .to_string_lossy()
        .split(':')
        .map(|d| Path::new(d).join(name))
        .find(|c| c.exists())
}

fn print_table(rows: &[(&str, Figures)]) {
    println!(
        "\n| path | MB/s (1 transfer) | small GETs/s | cold first byte p50 / p99 | warm first byte p50 / p99 |"
    );
    println!("|---|---|---|---|---|");
    for (name, f) in rows {
        println!(
            "| {name} | {:.0} | {:.0} | {} / {} | {} / {} |",
            f.mb_s,
            f.req_s,
            ms(f.cold_p50),
            ms(f.cold_p99),
            ms(f.warm_p50),
            ms(f.warm_p99)
        );
    }
    let get = |n: &str| rows.iter().find(|(k, _)| *k == n).map(|(_, f)| f.clone());
    if let (Some(d), Some(r)) = (get("direct"), get("relay")) {
        println!(
            "\nrelay vs direct: throughput {}, GETs/s {}",
            ratio(r.mb_s, d.mb_s),
            ratio(r.req_s, d.req_s)
        );
    }
    for other in ["rathole", "rathole noise"] {
        if let (Some(r), Some(h)) = (get("relay"), get(other)) {
            println!(
                "relay vs {other}: throughput {}, GETs/s {}, cold p50 {}",
                ratio(r.mb_s, h.mb_s),
                ratio(r.req_s, h.req_s),
                ratio(r.cold_p50.as_secs_f64(), h.cold_p50.as_secs_f64())
            );
        }
    }
}
