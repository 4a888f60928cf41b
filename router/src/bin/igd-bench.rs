//! `igd-bench`: our IGD against miniupnpd, same client code, same concurrency.
//!
//! ```text
//! cargo run --release -p router --bin igd-bench [-- --requests N --clients C --no-miniupnpd]
//! ```
//!
//! - ours: the service in-process on 127.0.0.1 (ephemeral ports), an engine behind it;
//! - miniupnpd 2.3 (nftables): in a network namespace this program creates (`igdb<pid>`, two
//!   veth pairs: lan0 192.168.77.1/24, wan0 60.120.76.64/24, the chains miniupnpd expects),
//!   deleted again on every exit path (normal end, error, panic, SIGINT/SIGTERM). The host
//!   namespace is never touched; the client threads enter the namespace with setns(2).
//!
//! The client does what upnpc does: one TCP connection per request (`Connection: close`).
//! Measured: AddPortMapping, GetGenericPortMappingEntry and GetExternalIPAddress (requests
//! per second and p50/p99 latency with C clients), the time to walk 1000 mappings with
//! GetGenericPortMappingEntry until 713, and the time from a unicast M-SEARCH to its reply.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpStream, UdpSocket};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use router::nat::{Nat, NatConfig};
use router::upnp::{ManualClock, UpnpConfig, UpnpService};

const SERVICE: &str = "urn:schemas-upnp-org:service:WANIPConnection:1";

#[derive(Clone)]
struct Target {
    name: &'static str,
    http: SocketAddr,
    ssdp: SocketAddr,
    control: String,
    client_ip: Ipv4Addr,
    netns: Option<String>,
}

fn enter_netns(ns: &Option<String>) -> Result<()> {
    let Some(ns) = ns else { return Ok(()) };
    let f = std::fs::File::open(format!("/var/run/netns/{ns}"))?;
    use std::os::fd::AsRawFd;
    // SAFETY: a valid namespace fd; setns changes only the calling thread's namespace.
    let r = unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) };
    if r != 0 {
        bail!("setns {ns}: {}", std::io::Error::last_os_error());
    }
    Ok(())
}

fn soap(t: &Target, action: &str, args: &[(&str, String)]) -> Result<(u16, String)> {
    let mut body = format!(
        "<?xml version=\"1.0\"?>\r\n<s:Envelope xmlns:s=\"http://schemas.xmlsoap.org/soap/envelope/\" s:encodingStyle=\"http://schemas.xmlsoap.org/soap/encoding/\"><s:Body><u:{action} xmlns:u=\"{SERVICE}\">"
    );
    for (k, v) in args {
        body.push_str(&format!("<{k}>{v}</{k}>"));
    }
    body.push_str(&format!("</u:{action}></s:Body></s:Envelope>\r\n"));
    let req = format!(
        "POST {} HTTP/1.1\r\nHost: {}\r\nContent-Type: text/xml; charset=\"utf-8\"\r\nSOAPAction: \"{SERVICE}#{action}\"\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        t.control,
        t.http,
        body.len()
    );
    let mut s = TcpStream::connect_timeout(&t.http, Duration::from_secs(5))?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    s.set_nodelay(true)?;
    s.write_all(req.as_bytes())?;
    let mut out = Vec::with_capacity(1024);
    s.read_to_end(&mut out)?;
    let text = String::from_utf8_lossy(&out).into_owned();
    let code = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    Ok((code, text))
}

fn add_args(t: &Target, port: u16) -> Vec<(&'static str, String)> {
    vec![
        ("NewRemoteHost", String::new()),
        ("NewExternalPort", port.to_string()),
        ("NewProtocol", "TCP".into()),
        ("NewInternalPort", port.to_string()),
        ("NewInternalClient", t.client_ip.to_string()),
        ("NewEnabled", "1".into()),
        ("NewPortMappingDescription", "bench".into()),
        ("NewLeaseDuration", "3600".into()),
    ]
}

#[derive(Debug, Clone, Copy, Default)]
struct Run {
    rps: f64,
    p50: f64,
    p99: f64,
    errors: usize,
}

/// `clients` threads, `per_client` requests each; `req(t, client, i)` makes one request.
fn load(
    t: &Target,
    clients: usize,
    per_client: usize,
    req: impl Fn(&Target, usize, usize) -> Result<u16> + Send + Sync + 'static,
) -> Result<Run> {
    let req = Arc::new(req);
    let lat = Arc::new(Mutex::new(Vec::with_capacity(clients * per_client)));
    let errors = Arc::new(Mutex::new(0usize));
    let start = Instant::now();
    let mut hs = Vec::new();
    for c in 0..clients {
        let (t, req, lat, errors) = (t.clone(), req.clone(), lat.clone(), errors.clone());
        hs.push(std::thread::spawn(move || -> Result<()> {
            enter_netns(&t.netns)?;
            let mut mine = Vec::with_capacity(per_client);
            for i in 0..per_client {
                let t0 = Instant::now();
                match req(&t, c, i) {
                    Ok(200) => {}
                    _ => *errors.lock().unwrap_or_else(|e| e.into_inner()) += 1,
                }
                mine.push(t0.elapsed().as_secs_f64() * 1e3);
            }
            lat.lock().unwrap_or_else(|e| e.into_inner()).extend(mine);
            Ok(())
        }));
    }
    for h in hs {
        h.join().map_err(|_| anyhow::anyhow!("client panicked"))??;
    }
    let secs = start.elapsed().as_secs_f64();
    let mut l = lat.lock().unwrap_or_else(|e| e.into_inner()).clone();
    l.sort_by(f64::total_cmp);
    let pct = |p: f64| {
        l.get(((l.len() as f64 - 1.0) * p) as usize)
            .copied()
            .unwrap_or(0.0)
    };
    Ok(Run {
        rps: l.len() as f64 / secs,
        p50: pct(0.50),
        p99: pct(0.99),
        errors: *errors.lock().unwrap_or_else(|e| e.into_inner()),
    })
}

/// Walks the table from index 0 until 713; returns (entries, ms).
fn walk(t: &Target) -> Result<(usize, f64)> {
    let t = t.clone();
    std::thread::spawn(move || -> Result<(usize, f64)> {
        enter_netns(&t.netns)?;
        let t0 = Instant::now();
        let mut i = 0usize;
        loop {
            let (code, _) = soap(
                &t,
                "GetGenericPortMappingEntry",
                &[("NewPortMappingIndex", i.to_string())],
            )?;
            if code != 200 {
                break;
            }
            i += 1;
            if i > 100_000 {
                break;
            }
        }
        Ok((i, t0.elapsed().as_secs_f64() * 1e3))
    })
    .join()
    .map_err(|_| anyhow::anyhow!("walker panicked"))?
}

/// Median time from a unicast M-SEARCH to its first reply, over `n` searches.
fn msearch(t: &Target, n: usize) -> Result<f64> {
    let t = t.clone();
    std::thread::spawn(move || -> Result<f64> {
        enter_netns(&t.netns)?;
        let s = UdpSocket::bind(SocketAddrV4::new(t.client_ip, 0))?;
        s.set_read_timeout(Some(Duration::from_secs(3)))?;
        let mut v = Vec::new();
        for _ in 0..n {
            let m = format!(
                "M-SEARCH * HTTP/1.1\r\nHOST: {}\r\nST: urn:schemas-upnp-org:device:InternetGatewayDevice:1\r\nMAN: \"ssdp:discover\"\r\nMX: 1\r\n\r\n",
                t.ssdp
            );
            let t0 = Instant::now();
            s.send_to(m.as_bytes(), t.ssdp)?;
            let mut buf = [0u8; 2048];
            s.recv_from(&mut buf).context("no M-SEARCH reply")?;
            v.push(t0.elapsed().as_secs_f64() * 1e3);
            // drain extra replies
            s.set_read_timeout(Some(Duration::from_millis(20)))?;
            while s.recv_from(&mut buf).is_ok() {}
            s.set_read_timeout(Some(Duration::from_secs(3)))?;
        }
        v.sort_by(f64::total_cmp);
        Ok(v[v.len() / 2])
    })
    .join()
    .map_err(|_| anyhow::anyhow!("searcher panicked"))?
}

#[derive(Debug, Default)]
struct Results {
    add: Run,
    generic: Run,
    extip: Run,
    walk: (usize, f64),
    msearch: f64,
}

fn measure(t: &Target, clients: usize, per: usize) -> Result<Results> {
    // AddPortMapping: clients * per distinct ports from 20000 (then these are the table).
    let add = load(t, clients, per, move |t, c, i| {
        let port = 20000 + (c * per + i) as u16;
        Ok(soap(t, "AddPortMapping", &add_args(t, port))?.0)
    })?;
    eprintln!("  add: {add:?}");
    let n = clients * per;
    let generic = load(t, clients, per, move |t, c, i| {
        let idx = (c * 7919 + i * 104_729) % n;
        Ok(soap(
            t,
            "GetGenericPortMappingEntry",
            &[("NewPortMappingIndex", idx.to_string())],
        )?
        .0)
    })?;
    let extip = load(t, clients, per, |t, _, _| {
        Ok(soap(t, "GetExternalIPAddress", &[])?.0)
    })?;
    eprintln!("  generic {generic:?}, extip {extip:?}");
    let walk = walk(t)?;
    eprintln!("  walk {walk:?}");
    let msearch = msearch(t, 20)?;
    Ok(Results {
        add,
        generic,
        extip,
        walk,
        msearch,
    })
}

// ---------------------------------------------------------------------------------------------
// miniupnpd in its own namespace

struct Lab {
    ns: String,
    dir: PathBuf,
    child: Option<Child>,
}

fn sh(args: &[&str], input: Option<&str>) -> Result<()> {
    let mut c = Command::new(args[0]);
    c.args(&args[1..])
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    if input.is_some() {
        c.stdin(Stdio::piped());
    }
    let mut ch = c.spawn().with_context(|| format!("{args:?}"))?;
    if let (Some(i), Some(mut stdin)) = (input, ch.stdin.take()) {
        stdin.write_all(i.as_bytes())?;
    }
    let out = ch.wait_with_output()?;
    if !out.status.success() {
        bail!("{args:?}: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(())
}

const NFT: &str = r#"table inet filter {
	chain forward { type filter hook forward priority filter; policy drop; ct state established,related accept; iifname "lan0" accept; ct status dnat accept; jump miniupnpd; }
	chain miniupnpd { }
	chain prerouting { type nat hook prerouting priority dstnat; policy accept; jump prerouting_miniupnpd; }
	chain postrouting { type nat hook postrouting priority srcnat; policy accept; jump postrouting_miniupnpd; oifname "wan0" masquerade; }
	chain prerouting_miniupnpd { }
	chain postrouting_miniupnpd { }
}
"#;

impl Lab {
    fn up() -> Result<Lab> {
        let ns = format!("igdb{}", std::process::id());
        let dir = std::env::temp_dir().join(&ns);
        std::fs::create_dir_all(&dir)?;
        let mut lab = Lab {
            ns: ns.clone(),
            dir: dir.clone(),
            child: None,
        };
        sh(&["ip", "netns", "add", &ns], None)?;
        let x = |cmd: &str| -> Result<()> {
            let mut v = vec!["ip", "netns", "exec", &ns];
            v.extend(cmd.split_whitespace());
            sh(&v, None)
        };
        x("ip link set lo up")?;
        x("ip link add lan0 type veth peer name lan0p")?;
        x("ip link add wan0 type veth peer name wan0p")?;
        for l in ["lan0", "lan0p", "wan0", "wan0p"] {
            x(&format!("ip link set {l} up"))?;
        }
        x("ip addr add 192.168.77.1/24 dev lan0")?;
        x("ip addr add 60.120.76.64/24 dev wan0")?;
        x("ip route add default via 60.120.76.1 dev wan0")?;
        sh(&["ip", "netns", "exec", &ns, "nft", "-f", "-"], Some(NFT))?;
        let conf = dir.join("miniupnpd.conf");
        std::fs::write(
            &conf,
            "ext_ifname=wan0\nlistening_ip=lan0\nport=5000\nenable_natpmp=yes\nenable_upnp=yes\n\
                 secure_mode=yes\nsystem_uptime=yes\nnotify_interval=60\n\
                 uuid=3e8a6c8e-0000-4000-8000-000000000001\nupnp_table_name=filter\n\
                 upnp_nat_table_name=filter\nupnp_forward_chain=miniupnpd\n\
                 upnp_nat_chain=prerouting_miniupnpd\nupnp_nat_postrouting_chain=postrouting_miniupnpd\n\
                 allow 1024-65535 192.168.77.0/24 1-65535\ndeny 0-65535 0.0.0.0/0 0-65535\n",
        )?;
        let log = std::fs::File::create(dir.join("miniupnpd.log"))?;
        let nsfile = std::fs::File::open(format!("/var/run/netns/{ns}"))?;
        let mut cmd = Command::new("miniupnpd");
        cmd.arg("-d")
            .arg("-f")
            .arg(&conf)
            .arg("-P")
            .arg(dir.join("miniupnpd.pid"));
        {
            use std::os::fd::AsRawFd;
            use std::os::unix::process::CommandExt;
            let fd = nsfile.as_raw_fd();
            // SAFETY: setns is async-signal-safe; it runs in the child between fork and exec,
            // so miniupnpd starts inside the namespace and the child's pid is miniupnpd's.
            unsafe {
                cmd.pre_exec(move || {
                    if libc::setns(fd, libc::CLONE_NEWNET) != 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                    Ok(())
                });
            }
        }
        let child = cmd
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .context("starting miniupnpd")?;
        lab.child = Some(child);
        *CLEANUP_NS.lock().unwrap_or_else(|e| e.into_inner()) =
            Some((ns.clone(), lab.child.as_ref().map_or(0, Child::id)));
        // Wait for its HTTP port.
        let t = lab.target();
        let ok = std::thread::spawn(move || -> bool {
            if enter_netns(&t.netns).is_err() {
                return false;
            }
            for _ in 0..50 {
                if TcpStream::connect_timeout(&t.http, Duration::from_millis(100)).is_ok() {
                    return true;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            false
        })
        .join()
        .unwrap_or(false);
        if !ok {
            let log = std::fs::read_to_string(dir.join("miniupnpd.log")).unwrap_or_default();
            bail!("miniupnpd did not start: {log}");
        }
        Ok(lab)
    }

    fn target(&self) -> Target {
        Target {
            name: "miniupnpd",
            http: "192.168.77.1:5000"
                .parse()
                .unwrap_or(SocketAddr::from(([0, 0, 0, 0], 0))),
            ssdp: "192.168.77.1:1900"
                .parse()
                .unwrap_or(SocketAddr::from(([0, 0, 0, 0], 0))),
            control: "/ctl/IPConn".into(),
            client_ip: Ipv4Addr::new(192, 168, 77, 1),
            netns: Some(self.ns.clone()),
        }
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        let _ = sh(&["ip", "netns", "del", &self.ns], None);
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The namespace to delete and miniupnpd's pid to kill if a signal ends the run.
static CLEANUP_NS: Mutex<Option<(String, u32)>> = Mutex::new(None);

/// SIGINT / SIGTERM are blocked in every thread and taken by one that deletes the namespace
/// (and so kills miniupnpd's network) before exiting.
fn install_signal_cleanup() {
    // SAFETY: plain sigset manipulation; the mask is set before any other thread exists, so
    // every thread inherits it, and only the waiting thread receives the signals.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGINT);
        libc::sigaddset(&mut set, libc::SIGTERM);
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
        std::thread::spawn(move || {
            let mut sig: libc::c_int = 0;
            libc::sigwait(&set, &mut sig);
            let ns = CLEANUP_NS.lock().unwrap_or_else(|e| e.into_inner()).clone();
            if let Some((ns, pid)) = ns {
                if let Ok(pid) = libc::pid_t::try_from(pid)
                    && pid > 0
                {
                    // miniupnpd's own SIGTERM handling can stall without its namespace.
                    libc::kill(pid, libc::SIGKILL);
                }
                let _ = sh(&["ip", "netns", "del", &ns], None);
                let _ = std::fs::remove_dir_all(std::env::temp_dir().join(&ns));
            }
            std::process::exit(130);
        });
    }
}

// ---------------------------------------------------------------------------------------------

fn main() -> Result<()> {
    install_signal_cleanup();
    let mut requests = 250usize;
    let mut clients = 4usize;
    let mut with_miniupnpd = true;
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut i = 0;
    while i < args.len() {
        match args[i].as_str() {
            "--requests" => {
                requests = args
                    .get(i + 1)
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(requests);
                i += 1;
            }
            "--clients" => {
                clients = args
                    .get(i + 1)
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(clients);
                i += 1;
            }
            "--no-miniupnpd" => with_miniupnpd = false,
            other => bail!("unknown argument {other}; use --requests N --clients C --no-miniupnpd"),
        }
        i += 1;
    }
    if clients * requests > 40_000 {
        bail!("at most 40000 mappings (ports 20000..60000)");
    }

    // Ours, in-process.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?;
    let nat = Arc::new(Mutex::new(Nat::new(
        NatConfig::new(Ipv4Addr::new(60, 120, 76, 64), Ipv4Addr::LOCALHOST, 8),
        1,
    )));
    let mut cfg = UpnpConfig::loopback(Ipv4Addr::LOCALHOST);
    cfg.igd_version = 2;
    cfg.table.max_total = 100_000;
    cfg.table.max_per_client = 100_000;
    let (svc_handle, stop) = rt.block_on(async {
        let svc = UpnpService::bind(cfg, nat.clone(), Arc::new(ManualClock::new())).await?;
        let h = svc.handle();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(svc.run(async move {
            let _ = rx.await;
        }));
        anyhow::Ok((h, tx))
    })?;
    let ours = Target {
        name: "ours",
        http: svc_handle.http_addr(),
        ssdp: svc_handle.ssdp_addr().context("no SSDP")?,
        control: "/ctl/IPConn".into(),
        client_ip: Ipv4Addr::LOCALHOST,
        netns: None,
    };
    eprintln!("measuring ours at {} ...", ours.http);
    let r_ours = measure(&ours, clients, requests)?;
    let _ = stop.send(());

    let r_mini = if with_miniupnpd {
        match Lab::up() {
            Ok(lab) => {
                let pid = lab.child.as_ref().map_or(0, Child::id);
                *CLEANUP_NS.lock().unwrap_or_else(|e| e.into_inner()) = Some((lab.ns.clone(), pid));
                eprintln!("measuring miniupnpd in namespace {} ...", lab.ns);
                let r = measure(&lab.target(), clients, requests);
                drop(lab);
                *CLEANUP_NS.lock().unwrap_or_else(|e| e.into_inner()) = None;
                Some(r?)
            }
            Err(e) => {
                eprintln!("miniupnpd not measured: {e:#}");
                None
            }
        }
    } else {
        None
    };

    println!(
        "\nIGD benchmark: {clients} clients x {requests} requests, one connection per request\n"
    );
    println!(
        "{:<34} {:>14} {:>14} {:>10}",
        "metric", ours.name, "miniupnpd", "ours/mini"
    );
    let row = |name: &str, a: f64, b: Option<f64>, higher_better: bool| {
        let ratio = b.map_or("-".to_string(), |b| {
            if b == 0.0 {
                "-".into()
            } else if higher_better {
                format!("{:.2}x", a / b)
            } else {
                format!("{:.2}x", b / a.max(1e-9))
            }
        });
        println!(
            "{name:<34} {a:>14.2} {:>14} {ratio:>10}",
            b.map_or("-".to_string(), |b| format!("{b:.2}"))
        );
    };
    for (label, get) in [
        (
            "AddPortMapping",
            (|r: &Results| r.add) as fn(&Results) -> Run,
        ),
        ("GetGenericPortMappingEntry", |r: &Results| r.generic),
        ("GetExternalIPAddress", |r: &Results| r.extip),
    ] {
        let a = get(&r_ours);
        let b = r_mini.as_ref().map(get);
        row(&format!("{label} req/s"), a.rps, b.map(|b| b.rps), true);
        row(&format!("{label} p50 ms"), a.p50, b.map(|b| b.p50), false);
        row(&format!("{label} p99 ms"), a.p99, b.map(|b| b.p99), false);
        if a.errors > 0 || b.is_some_and(|b| b.errors > 0) {
            println!(
                "  ({label} errors: ours {}, miniupnpd {})",
                a.errors,
                b.map_or(0, |b| b.errors)
            );
        }
    }
    row(
        &format!("walk {} mappings ms", r_ours.walk.0),
        r_ours.walk.1,
        r_mini.as_ref().map(|m| m.walk.1),
        false,
    );
    if let Some(m) = &r_mini {
        println!("  (miniupnpd walked {} entries)", m.walk.0);
    }
    row(
        "M-SEARCH to first reply ms (p50)",
        r_ours.msearch,
        r_mini.as_ref().map(|m| m.msearch),
        false,
    );
    println!("\nratios: above 1.00x means ours is better (faster or more requests per second)");
    Ok(())
}
