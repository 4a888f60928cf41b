//! `dhcp-bench`: our DHCP server against dnsmasq, same client code, same run.
//!
//! ```text
//! sudo cargo run --release -p bench --bin dhcp-bench [-- --clients N --rounds R --no-dnsmasq --no-persist]
//! ```
//!
//! Two network namespaces this program creates (`dhb<pid>s`, `dhb<pid>c`, one veth pair:
//! server 10.99.0.1/16, client 10.99.0.2/16), deleted again on every exit path (normal end,
//! error, panic, SIGINT/SIGTERM). The host namespace is never touched.
//!
//! Each round starts a fresh server in the server namespace (ours: this binary's `serve`
//! mode running [`router::dhcp::DhcpService`] with a lease file in a temporary directory;
//! dnsmasq: `--no-ping`, lease file in the same kind of directory), then N simulated clients
//! (distinct MACs and xids, broadcast flag set) do DISCOVER -> OFFER -> REQUEST -> ACK over one
//! UDP socket on port 68 in the client namespace, with at most W exchanges in flight (W = 1:
//! one client after another; W = N: all at once). A lost message is resent after 1 s.
//! Measured: DISCOVER-to-ACK time per client (p50/p99) and leases per second (N / the time
//! from the first DISCOVER to the last ACK).
//!
//! Durability is part of the figure, the same for both: each server keeps its lease file in a
//! fresh directory under `$TMPDIR` (default /tmp; the filesystem type is printed, since on a
//! tmpfs an fsync costs nothing) and has the binding on disk before its ACK leaves. dnsmasq
//! rewrites and fsyncs its lease file after each packet that changed it, before sending the
//! reply (`lease_update_file` in `dhcp_packet`): one fsync per REQUEST. Ours writes the whole
//! table (write, fsync, rename, fsync of the directory) with group commit: one write in
//! flight, ACKs held until a write covers their binding; the `writes` column is how many
//! lease-file writes ours made per round (read from the server's counters at its SIGTERM).
//! `--no-persist` runs both without a lease file (ours without `state_dir`, dnsmasq with
//! `--leasefile-ro`), to see what durability costs.

use std::net::{Ipv4Addr, SocketAddrV4, UdpSocket};
use std::os::fd::AsRawFd;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use router::dhcp::wire::{self, Message, MessageType, opt};
use router::dhcp::{DhcpConfig, DhcpService, ServerConfig};

const SERVER: Ipv4Addr = Ipv4Addr::new(10, 99, 0, 1);
const CLIENT: Ipv4Addr = Ipv4Addr::new(10, 99, 0, 2);
const PREFIX: u8 = 16;
const POOL: (Ipv4Addr, Ipv4Addr) = (Ipv4Addr::new(10, 99, 1, 1), Ipv4Addr::new(10, 99, 4, 250));
const RESEND: Duration = Duration::from_secs(1);

fn sh(args: &[&str]) -> Result<String> {
    let out = Command::new(args[0])
        .args(&args[1..])
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("running {args:?}"))?;
    if !out.status.success() {
        bail!(
            "{args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The namespaces; deleted on drop.
struct Netns {
    srv: String,
    cli: String,
}

impl Netns {
    fn create() -> Result<Netns> {
        let base = format!("dhb{}", std::process::id() % 1_000_000);
        let n = Netns {
            srv: format!("{base}s"),
            cli: format!("{base}c"),
        };
        *CLEANUP.lock().unwrap_or_else(|e| e.into_inner()) = Some((n.srv.clone(), n.cli.clone()));
        sh(&["ip", "netns", "add", &n.srv])?;
        sh(&["ip", "netns", "add", &n.cli])?;
        sh(&[
            "ip", "-n", &n.srv, "link", "add", "s0", "type", "veth", "peer", "name", "c0", "netns",
            &n.cli,
        ])?;
        sh(&[
            "ip",
            "-n",
            &n.srv,
            "addr",
            "add",
            &format!("{SERVER}/{PREFIX}"),
            "dev",
            "s0",
        ])?;
        sh(&[
            "ip",
            "-n",
            &n.cli,
            "addr",
            "add",
            &format!("{CLIENT}/{PREFIX}"),
            "dev",
            "c0",
        ])?;
        for (ns, dev) in [(&n.srv, "s0"), (&n.cli, "c0")] {
            sh(&["ip", "-n", ns, "link", "set", dev, "up"])?;
            sh(&["ip", "-n", ns, "link", "set", "lo", "up"])?;
        }
        Ok(n)
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = sh(&["ip", "netns", "del", &self.srv]);
        let _ = sh(&["ip", "netns", "del", &self.cli]);
    }
}

/// What a signal handler must delete.
static CLEANUP: Mutex<Option<(String, String)>> = Mutex::new(None);
/// The server process to kill on a signal.
static CHILD: Mutex<Option<u32>> = Mutex::new(None);

/// SIGINT / SIGTERM are blocked in every thread and taken by one that kills the server and
/// deletes the namespaces before exiting.
fn install_signal_cleanup() {
    bench::on_interrupt(|_| {
        if let Some(pid) = *CHILD.lock().unwrap_or_else(|e| e.into_inner()) {
            // SAFETY: kill has no memory preconditions; the pid is our own child's.
            unsafe { libc::kill(pid as i32, libc::SIGKILL) };
        }
        if let Some((a, b)) = CLEANUP.lock().unwrap_or_else(|e| e.into_inner()).clone() {
            let _ = sh(&["ip", "netns", "del", &a]);
            let _ = sh(&["ip", "netns", "del", &b]);
        }
        eprintln!("dhcp-bench: interrupted; namespaces removed");
    });
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Kind {
    Ours,
    Dnsmasq,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Ours => "ours",
            Kind::Dnsmasq => "dnsmasq",
        }
    }
}

/// A running server; killed (by its pid) on drop.
struct ServerProc {
    kind: Kind,
    child: Child,
    _dir: TempDir,
}

impl Drop for ServerProc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        *CHILD.lock().unwrap_or_else(|e| e.into_inner()) = None;
    }
}

struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> Result<TempDir> {
        let p = std::env::temp_dir().join(format!(
            "dhcp-bench-{}-{tag}-{}",
            std::process::id(),
            Instant::now().elapsed().as_nanos() ^ u128::from(rand::random::<u64>())
        ));
        std::fs::create_dir_all(&p)?;
        Ok(TempDir(p))
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

impl ServerProc {
    /// Ours: stops it with SIGTERM (SIGKILL after 5 s) and returns its lease-file writes.
    /// dnsmasq: None (killed on drop).
    fn finish(mut self) -> Option<u64> {
        if self.kind != Kind::Ours {
            return None;
        }
        // SAFETY: kill on the pid of a child we started and have not reaped.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(5);
        while self.child.try_wait().ok()?.is_none() {
            if Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let text = std::fs::read_to_string(self._dir.0.join("stats")).ok()?;
        text.split_whitespace().next()?.parse().ok()
    }
}

fn start_server(kind: Kind, ns: &Netns, persist: bool) -> Result<ServerProc> {
    let dir = TempDir::new(kind.name())?;
    let mut cmd = Command::new("ip");
    cmd.args(["netns", "exec", &ns.srv]);
    match kind {
        Kind::Ours => {
            let exe = std::env::current_exe()?;
            cmd.arg(exe).args(["serve", "s0"]).arg(&dir.0);
            if !persist {
                cmd.arg("--no-persist");
            }
        }
        Kind::Dnsmasq => {
            cmd.args([
                "dnsmasq",
                "--conf-file=/dev/null",
                "--keep-in-foreground",
                "--port=0",
                "--interface=s0",
                "--bind-interfaces",
                "--except-interface=lo",
                &format!("--dhcp-range={},{},255.255.0.0,12h", POOL.0, POOL.1),
                "--dhcp-authoritative",
                "--no-ping",
                "--quiet-dhcp",
                "--dhcp-lease-max=10000",
            ]);
            if persist {
                cmd.arg(format!(
                    "--dhcp-leasefile={}",
                    dir.0.join("leases").display()
                ));
            } else {
                cmd.arg("--leasefile-ro");
            }
            cmd.arg(format!("--pid-file={}", dir.0.join("pid").display()));
            cmd.arg(format!("--log-facility={}", dir.0.join("log").display()));
        }
    }
    let child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .with_context(|| format!("starting {}", kind.name()))?;
    *CHILD.lock().unwrap_or_else(|e| e.into_inner()) = Some(child.id());
    let mut p = ServerProc {
        kind,
        child,
        _dir: dir,
    };
    // Ready when something listens on UDP 67 in the server namespace.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let out = sh(&["ip", "netns", "exec", &ns.srv, "ss", "-Hlun", "sport = :67"])?;
        if !out.trim().is_empty() {
            return Ok(p);
        }
        if let Some(st) = p.child.try_wait()? {
            bail!("{} exited at start ({st})", kind.name());
        }
        if Instant::now() > deadline {
            bail!("{} did not open UDP 67", kind.name());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// `serve IFACE DIR [--no-persist]`: our server in the namespace (lease file in DIR unless
/// `--no-persist`) until SIGTERM; then `DIR/stats` gets "lease_writes acks_held acked".
fn serve(iface: &str, dir: &str, persist: bool) -> Result<()> {
    // The bench blocks SIGINT / SIGTERM in its threads (`install_signal_cleanup`) and a
    // spawned process inherits that mask: take them back before any thread starts.
    // SAFETY: plain sigset manipulation on the calling (only) thread.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGINT);
        libc::sigaddset(&mut set, libc::SIGTERM);
        libc::pthread_sigmask(libc::SIG_UNBLOCK, &set, std::ptr::null_mut());
    }
    let mut server = ServerConfig::new(SERVER, PREFIX);
    server.pool_start = POOL.0;
    server.pool_end = POOL.1;
    let mut cfg = DhcpConfig::new(iface, server);
    cfg.state_dir = persist.then(|| PathBuf::from(dir));
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let svc = DhcpService::bind(cfg, std::sync::Arc::new(router::upnp::SystemClock)).await?;
        let handle = svc.handle();
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        svc.run(async move {
            term.recv().await;
        })
        .await;
        let st = handle.stats();
        std::fs::write(
            PathBuf::from(dir).join("stats"),
            format!("{} {} {}\n", st.lease_writes, st.acks_held, st.acked),
        )?;
        Ok(())
    })
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Phase {
    Waiting,
    Discovering,
    Requesting,
    Done,
}

struct Client {
    mac: [u8; 6],
    xid: u32,
    phase: Phase,
    start: Instant,
    last_sent: Instant,
    last: Vec<u8>,
}

struct Outcome {
    latencies: Vec<Duration>,
    elapsed: Duration,
    resent: u64,
}

fn enter_netns(ns: &str) -> Result<()> {
    let f = std::fs::File::open(format!("/var/run/netns/{ns}"))?;
    // SAFETY: a valid namespace fd; setns changes only the calling thread's namespace.
    if unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
        bail!("setns {ns}: {}", std::io::Error::last_os_error());
    }
    Ok(())
}

fn client_socket() -> Result<UdpSocket> {
    use socket2::{Domain, Protocol, Socket, Type};
    let s = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP))?;
    s.set_reuse_address(true)?;
    s.set_broadcast(true)?;
    s.bind_device(Some(b"c0"))?;
    s.bind(&std::net::SocketAddr::from((Ipv4Addr::UNSPECIFIED, wire::CLIENT_PORT)).into())?;
    // The client must not be where datagrams are lost: 4 MiB past rmem_max (we are root).
    let size: libc::c_int = 4 << 20;
    // SAFETY: setsockopt on our own socket with a c_int option value of the right size.
    let r = unsafe {
        libc::setsockopt(
            s.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVBUFFORCE,
            std::ptr::addr_of!(size).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if r != 0 {
        bail!("SO_RCVBUFFORCE: {}", std::io::Error::last_os_error());
    }
    let u: UdpSocket = s.into();
    u.set_read_timeout(Some(Duration::from_millis(5)))?;
    Ok(u)
}

/// N clients, at most `window` in flight, in the client namespace (the calling thread).
fn run_clients(round: u8, n: usize, window: usize) -> Result<Outcome> {
    let sock = client_socket()?;
    let to = SocketAddrV4::new(Ipv4Addr::BROADCAST, wire::SERVER_PORT);
    let t0 = Instant::now();
    let mut clients: Vec<Client> = (0..n)
        .map(|i| Client {
            mac: [0x02, 0xb0, round, 0, (i >> 8) as u8, i as u8],
            xid: (u32::from(round) << 24) | i as u32,
            phase: Phase::Waiting,
            start: t0,
            last_sent: t0,
            last: Vec::new(),
        })
        .collect();
    let (mut next, mut in_flight, mut done, mut resent) = (0usize, 0usize, 0usize, 0u64);
    let mut latencies = Vec::with_capacity(n);
    let deadline = t0 + Duration::from_secs(120);
    let mut buf = [0u8; 1500];
    while done < n {
        if Instant::now() > deadline {
            bail!("round timed out: {done}/{n} leases");
        }
        while in_flight < window && next < n {
            let c = &mut clients[next];
            let mut m = Message::request(c.xid, c.mac, MessageType::Discover);
            m.flags = wire::FLAG_BROADCAST;
            m.set_option(opt::PARAM_REQUEST, vec![1, 3, 6, 15, 28]);
            c.last = m.emit();
            c.start = Instant::now();
            c.last_sent = c.start;
            c.phase = Phase::Discovering;
            sock.send_to(&c.last, to)?;
            next += 1;
            in_flight += 1;
        }
        match sock.recv_from(&mut buf) {
            Ok((len, _)) => {
                let Ok(reply) = Message::parse(&buf[..len]) else {
                    continue;
                };
                let idx = (reply.xid & 0x00ff_ffff) as usize;
                if reply.op != wire::BOOTREPLY || reply.xid >> 24 != u32::from(round) || idx >= n {
                    continue;
                }
                let c = &mut clients[idx];
                match (c.phase, reply.message_type()) {
                    (Phase::Discovering, Some(MessageType::Offer)) => {
                        let mut m = Message::request(c.xid, c.mac, MessageType::Request);
                        m.flags = wire::FLAG_BROADCAST;
                        m.set_option(opt::REQUESTED_IP, reply.yiaddr.octets().to_vec());
                        if let Some(sid) = reply.server_id() {
                            m.set_option(opt::SERVER_ID, sid.octets().to_vec());
                        }
                        m.set_option(opt::PARAM_REQUEST, vec![1, 3, 6, 15, 28]);
                        c.last = m.emit();
                        c.last_sent = Instant::now();
                        c.phase = Phase::Requesting;
                        sock.send_to(&c.last, to)?;
                    }
                    (Phase::Requesting, Some(MessageType::Ack)) => {
                        latencies.push(c.start.elapsed());
                        c.phase = Phase::Done;
                        done += 1;
                        in_flight -= 1;
                    }
                    (Phase::Requesting, Some(MessageType::Nak)) => {
                        bail!("client {idx} got a NAK");
                    }
                    _ => {}
                }
            }
            Err(e)
                if e.kind() == std::io::ErrorKind::WouldBlock
                    || e.kind() == std::io::ErrorKind::TimedOut => {}
            Err(e) => return Err(e.into()),
        }
        // Resend what got no answer (RFC 2131 §4.1 has clients retransmit too).
        let now = Instant::now();
        for c in clients.iter_mut() {
            if matches!(c.phase, Phase::Discovering | Phase::Requesting)
                && now.duration_since(c.last_sent) > RESEND
            {
                sock.send_to(&c.last, to)?;
                c.last_sent = now;
                resent += 1;
            }
        }
    }
    Ok(Outcome {
        latencies,
        elapsed: t0.elapsed(),
        resent,
    })
}

fn pct(v: &[Duration], p: f64) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    let mut s: Vec<f64> = v.iter().map(|d| d.as_secs_f64() * 1e3).collect();
    s.sort_by(f64::total_cmp);
    let i = ((s.len() as f64 - 1.0) * p).round() as usize;
    s[i.min(s.len() - 1)]
}

struct Row {
    kind: Kind,
    window: usize,
    p50: f64,
    p99: f64,
    rate: f64,
    resent: u64,
    /// Ours: lease-file writes per round (mean); None for dnsmasq or when not reported.
    writes: Option<f64>,
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("serve") {
        let (Some(iface), Some(dir)) = (args.get(1), args.get(2)) else {
            bail!("usage: dhcp-bench serve IFACE DIR [--no-persist]");
        };
        let persist = args.get(3).map(String::as_str) != Some("--no-persist");
        return serve(iface, dir, persist);
    }
    let mut clients = 200usize;
    let mut rounds = 3usize;
    let mut dnsmasq = true;
    let mut persist = true;
    let mut i = 0;
    while i < args.len() {
        match args[i].as_str() {
            "--clients" => {
                clients = args
                    .get(i + 1)
                    .and_then(|v| v.parse().ok())
                    .context("--clients N")?;
                i += 1;
            }
            "--rounds" => {
                rounds = args
                    .get(i + 1)
                    .and_then(|v| v.parse().ok())
                    .context("--rounds N")?;
                i += 1;
            }
            "--no-dnsmasq" => dnsmasq = false,
            "--no-persist" => persist = false,
            a => {
                bail!("unknown argument {a}; use --clients N --rounds R --no-dnsmasq --no-persist")
            }
        }
        i += 1;
    }
    if !(1..=1000).contains(&clients) || rounds == 0 || rounds > 50 {
        bail!("--clients 1..=1000, --rounds 1..=50");
    }
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        bail!("dhcp-bench needs root (it creates two network namespaces)");
    }
    install_signal_cleanup();
    let tmp = std::env::temp_dir();
    let fs = sh(&["stat", "-f", "-c", "%T", &tmp.to_string_lossy()])
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "?".into());
    let storage = if persist {
        format!("lease files under {} ({fs})", tmp.display())
    } else {
        "no lease files (--no-persist)".to_string()
    };
    eprintln!("dhcp-bench: {storage}");
    let ns = Netns::create()?;
    let mut kinds = vec![Kind::Ours];
    if dnsmasq {
        kinds.push(Kind::Dnsmasq);
    }
    let mut rows = Vec::new();
    let mut round: u8 = 0;
    for window in [1, clients] {
        for &kind in &kinds {
            let mut lat = Vec::new();
            let mut rates = Vec::new();
            let mut resent = 0;
            let mut writes = Some(0u64);
            for _ in 0..rounds {
                round = round.wrapping_add(1);
                let server = start_server(kind, &ns, persist)?;
                let cli = ns.cli.clone();
                let r = round;
                let out = std::thread::spawn(move || -> Result<Outcome> {
                    enter_netns(&cli)?;
                    run_clients(r, clients, window)
                })
                .join()
                .map_err(|_| anyhow::anyhow!("client thread panicked"))??;
                let w = server.finish();
                writes = writes.zip(w).map(|(a, b)| a + b);
                rates.push(clients as f64 / out.elapsed.as_secs_f64());
                lat.extend(out.latencies);
                resent += out.resent;
            }
            rates.sort_by(f64::total_cmp);
            let row = Row {
                kind,
                window,
                p50: pct(&lat, 0.5),
                p99: pct(&lat, 0.99),
                rate: rates[rates.len() / 2],
                resent,
                writes: writes
                    .filter(|_| kind == Kind::Ours)
                    .map(|w| w as f64 / rounds as f64),
            };
            eprintln!(
                "dhcp-bench: {} window {window}: p50 {:.3} ms p99 {:.3} ms, {:.0} leases/s{}",
                kind.name(),
                row.p50,
                row.p99,
                row.rate,
                row.writes
                    .map(|w| format!(", {w:.1} lease-file writes per round"))
                    .unwrap_or_default()
            );
            rows.push(row);
        }
    }
    drop(ns);

    println!(
        "\nDHCP: {clients} clients, DISCOVER->OFFER->REQUEST->ACK, {rounds} rounds each \
         (latency over all rounds, leases/s the median round); {storage}\n"
    );
    println!(
        "| server | in flight | p50 ms | p99 ms | leases/s | resent | writes/round |\n\
         |---|---|---|---|---|---|---|"
    );
    for r in &rows {
        println!(
            "| {} | {} | {:.3} | {:.3} | {:.0} | {} | {} |",
            r.kind.name(),
            r.window,
            r.p50,
            r.p99,
            r.rate,
            r.resent,
            r.writes.map_or("-".to_string(), |w| format!("{w:.1}"))
        );
    }
    if dnsmasq {
        println!(
            "\n| in flight | p50 ours/dnsmasq | p99 ours/dnsmasq | leases/s ours/dnsmasq |\n|---|---|---|---|"
        );
        for w in [1, clients] {
            let get = |k| rows.iter().find(|r| r.kind == k && r.window == w);
            if let (Some(o), Some(d)) = (get(Kind::Ours), get(Kind::Dnsmasq)) {
                println!(
                    "| {w} | {:.2} | {:.2} | {:.2} |",
                    o.p50 / d.p50,
                    o.p99 / d.p99,
                    o.rate / d.rate
                );
            }
        }
        println!("\n(latency ratios below 1 and a leases/s ratio above 1 favour ours)");
    }
    Ok(())
}
