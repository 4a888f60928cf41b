//! `igd-bench`: our IGD against miniupnpd in the same run, with the same client code and the
//! same concurrency.
//!
//! ```text
//! cargo run --release -p bench --bin igd-bench [-- --requests N --clients C --rounds R --no-miniupnpd --pin C,S]
//! ```
//!
//! Defaults: 4 clients x 250 requests (1000 mappings), 3 rounds. Each round measures ours, a
//! do-nothing server (the walk only, see below), then miniupnpd, each in a fresh network
//! namespace this program creates (`igdb<pid><o|f|m><round>`: two veth pairs, lan0
//! 192.168.77.1/24, wan0 60.120.76.64/24 since miniupnpd refuses private and documentation
//! WAN addresses) with an empty table, so all see the same network path (client and server on
//! the namespace's LAN address) and no socket state left by earlier rounds or by anyone else on
//! the host. The table shows the median of every metric over the rounds (errors added up, with
//! their kinds), the load average before and after, and ours/miniupnpd ratios (above 1.00x:
//! ours is better). Round progress goes to stderr. The namespaces, miniupnpd and the temp
//! dirs are removed on every exit path (normal end, error, panic, SIGINT/SIGTERM); the host
//! namespace is never touched; the client threads enter a namespace with setns(2).
//!
//! The servers:
//! - ours: the UPnP service as the router runs it (a current-thread tokio runtime on a thread
//!   of its own, `ours-igd`, plus the HTTP server's accept thread, `upnp-http`; the system
//!   clock, the NAPT engine behind it, no state directory), on 192.168.77.1 port 5000, SSDP on
//!   1900;
//! - miniupnpd 2.3 (nftables backend) with the nft chains it expects, secure mode, NAT-PMP
//!   on, no lease file (ours persists nothing either), port 5000. It runs as a daemon at its
//!   production log level (`-d` logs every rule at LOG_DEBUG, and with no syslog socket glibc
//!   writes each line to /dev/console, which made each request take seconds), in a private
//!   mount namespace where /dev/console is a FIFO the bench copies to `miniupnpd.log` in its
//!   temp dir (and a host /dev/log, if any, is /dev/null); we are its subreaper;
//! - the floor: a blocking thread that answers every request at once with a canned
//!   GetGenericPortMappingEntry reply. The walk against it is the cost of the client and of
//!   one TCP connection per request on this machine at that moment. That cost drifts (the
//!   same floor took roughly 90 to 180 ms for 1000 requests on one day, the machine idle), so
//!   read the walk against the floor of the same run.
//!
//! The client does what upnpc does: a new TCP connection per request (blocking connect with
//! send/receive time-outs, one send), `Connection: close`, WANIPConnection:1 envelopes; it
//! reads until the server closes. Measured:
//! - AddPortMapping (N distinct ports per client), then GetGenericPortMappingEntry (random
//!   indexes) and GetExternalIPAddress: answered requests per second and p50/p99 latency
//!   with C clients at once; any answer but 200 is an error, counted by kind (HTTP status or
//!   I/O error) and left out of the rate;
//! - the time to walk the table with GetGenericPortMappingEntry from index 0 until 713, one
//!   request after the other (one client), and per request of the walk, for the client thread
//!   and the server thread (ours and the floor's; from /proc/self/task/*/{status,schedstat}):
//!   context switches, voluntary (it slept, so something had to wake it) and involuntary (it
//!   was preempted), and µs on a CPU (per round on stderr, with µs waiting for a CPU);
//! - the time from a unicast M-SEARCH (MX: 1) to the first reply, median of 20.
//!
//! Reading the walk: one request is a handful of system calls on each side, so what decides
//! its time on this 2-vCPU VM is where the two threads run. On one vCPU they take turns: the
//! client's send wakes the server, which preempts it, answers, and sleeps; the client then
//! finds the answer without sleeping (client ~0+1 switches per request, server ~1+0; "shared a
//! vCPU"). On two vCPUs every request wakes an idle (halted) vCPU twice, which costs tens of
//! µs each here (client and server ~1+0). The scheduler picks, depending on the machine's
//! other load, and the floor is no exception: the same code walks about 2x slower split. So
//! compare ours with the floor of the same run and the same placement; `--pin C,S` puts the
//! walk's client on CPU C and the server (ours, the floor, miniupnpd) on S, to compare two
//! builds in one placement (0,0 or 1,1: shared; 0,1: split). It is for diagnosis: upnpc on a
//! LAN host shares no CPU with the router.
//!
//! Reading the numbers: miniupnpd's AddPortMapping is slow by design of its nftables backend
//! (each add re-reads the whole rule chains over netlink and scans /proc/net/tcp for a local
//! listener on the port), a cost that grows with the number of rules; it answers a search
//! after a fixed ~50 ms. The machine's load matters to every figure (2 cores shared with the client); compare
//! runs made at a similar load, and let TIME_WAIT sockets of a previous run expire (60 s).

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpStream, UdpSocket};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use router::nat::{Nat, NatConfig};
use router::upnp::{SystemClock, UpnpConfig, UpnpService};

const SERVICE: &str = "urn:schemas-upnp-org:service:WANIPConnection:1";

#[derive(Clone)]
struct Target {
    name: &'static str,
    http: SocketAddr,
    ssdp: SocketAddr,
    control: String,
    client_ip: Ipv4Addr,
    netns: Option<String>,
    /// The server's thread, if it is one of this process (its context switches are counted).
    thread: Option<&'static str>,
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
    // As miniupnpc's connecthostport(): a blocking connect bounded by SO_SNDTIMEO, a receive
    // time-out, one send. Then read to the server's close (both close after the response), so
    // TIME_WAIT stays on the server side as with one upnpc call; a client closing first after
    // thousands of requests piles TIME_WAIT on its own ports and slows its own connects.
    let sock = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)?;
    sock.set_read_timeout(Some(Duration::from_secs(5)))?;
    sock.set_write_timeout(Some(Duration::from_secs(5)))?;
    sock.connect(&t.http.into())?;
    let mut s = TcpStream::from(sock);
    s.write_all(req.as_bytes())?;
    let mut out = Vec::with_capacity(2048);
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

#[derive(Debug, Clone, Default)]
struct Run {
    rps: f64,
    p50: f64,
    p99: f64,
    errors: usize,
    /// What the errors were ("HTTP 500", "TimedOut", ...), with counts.
    kinds: Vec<(String, usize)>,
}

/// A failed request in a few words: the HTTP status, or the I/O error kind.
fn error_kind(r: &Result<u16>) -> Option<String> {
    match r {
        Ok(200) => None,
        Ok(code) => Some(format!("HTTP {code}")),
        Err(e) => Some(match e.downcast_ref::<std::io::Error>() {
            Some(io) => format!("{:?}", io.kind()),
            None => format!("{e:#}"),
        }),
    }
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
    let errors = Arc::new(Mutex::new(
        std::collections::BTreeMap::<String, usize>::new(),
    ));
    let start = Instant::now();
    let mut hs = Vec::new();
    for c in 0..clients {
        let (t, req, lat, errors) = (t.clone(), req.clone(), lat.clone(), errors.clone());
        hs.push(std::thread::spawn(move || -> Result<()> {
            enter_netns(&t.netns)?;
            let mut mine = Vec::with_capacity(per_client);
            for i in 0..per_client {
                let t0 = Instant::now();
                if let Some(k) = error_kind(&req(&t, c, i)) {
                    *errors
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .entry(k)
                        .or_default() += 1;
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
    let kinds: Vec<(String, usize)> = errors
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .iter()
        .map(|(k, n)| (k.clone(), *n))
        .collect();
    let errors: usize = kinds.iter().map(|(_, n)| n).sum();
    Ok(Run {
        // answered requests (200) per second
        rps: l.len().saturating_sub(errors) as f64 / secs,
        p50: pct(0.50),
        p99: pct(0.99),
        errors,
        kinds,
    })
}

/// Context switches and migrations of one thread of this process (from /proc).
#[derive(Debug, Clone, Default)]
struct TaskStat {
    name: String,
    voluntary: u64,
    involuntary: u64,
    migrations: u64,
    /// Time on a CPU, and waiting for one (ns, /proc schedstat).
    cpu_ns: u64,
    wait_ns: u64,
    /// The CPU it last ran on.
    last_cpu: u32,
}

/// Every thread of this process, by tid.
fn task_stats() -> std::collections::BTreeMap<u32, TaskStat> {
    let mut m = std::collections::BTreeMap::new();
    let Ok(dir) = std::fs::read_dir("/proc/self/task") else {
        return m;
    };
    for e in dir.flatten() {
        let Some(tid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        let status = std::fs::read_to_string(e.path().join("status")).unwrap_or_default();
        let sched = std::fs::read_to_string(e.path().join("sched")).unwrap_or_default();
        let schedstat = std::fs::read_to_string(e.path().join("schedstat")).unwrap_or_default();
        let mut ss = schedstat
            .split_whitespace()
            .map(|v| v.parse::<u64>().unwrap_or(0));
        let stat = std::fs::read_to_string(e.path().join("stat")).unwrap_or_default();
        // Field 39 (processor), counted after the parenthesised name.
        let last_cpu = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().nth(36))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        let field = |text: &str, key: &str| {
            text.lines()
                .find_map(|l| l.strip_prefix(key))
                .map(|v| v.trim_start_matches([' ', ':', '\t']).trim().to_string())
                .unwrap_or_default()
        };
        m.insert(
            tid,
            TaskStat {
                name: field(&status, "Name:"),
                voluntary: field(&status, "voluntary_ctxt_switches")
                    .parse()
                    .unwrap_or(0),
                involuntary: field(&status, "nonvoluntary_ctxt_switches")
                    .parse()
                    .unwrap_or(0),
                migrations: field(&sched, "se.nr_migrations").parse().unwrap_or(0),
                cpu_ns: ss.next().unwrap_or(0),
                wait_ns: ss.next().unwrap_or(0),
                last_cpu,
            },
        );
    }
    m
}

/// Per request of a walk, for one thread: context switches (voluntary, involuntary),
/// migrations, µs on a CPU and µs waiting for one; and the CPU it ended on.
#[derive(Debug, Clone, Copy, Default)]
struct PerRequest {
    voluntary: f64,
    involuntary: f64,
    migrations: f64,
    cpu_us: f64,
    wait_us: f64,
    last_cpu: u32,
}

/// A walk: entries, ms, and per request figures of the walking client and of the server
/// thread (`server`, by name), if it is a thread of ours.
#[derive(Debug, Clone, Default)]
struct Walk {
    entries: usize,
    ms: f64,
    client: PerRequest,
    server: Option<PerRequest>,
}

impl Walk {
    /// Whether the client was preempted (by the server) in most requests rather than
    /// sleeping for the answer: then the two took turns on one vCPU.
    fn shared_cpu(&self) -> bool {
        self.client.involuntary >= 0.5
    }

    /// Per request, client / server: "0.05+0.96 / 0.97+0.03 cs, 72 / 55 µs cpu".
    fn per_request(&self) -> String {
        let c = self.client;
        match self.server {
            Some(s) => format!(
                "{:.2}+{:.2} / {:.2}+{:.2} cs, {:.0} / {:.0} µs cpu",
                c.voluntary, c.involuntary, s.voluntary, s.involuntary, c.cpu_us, s.cpu_us
            ),
            // miniupnpd: another process.
            None => format!(
                "{:.2}+{:.2} / - cs, {:.0} / - µs cpu",
                c.voluntary, c.involuntary, c.cpu_us
            ),
        }
    }

    fn describe(&self) -> String {
        let (wait, migrations, cpu) =
            self.server
                .map_or(("-".into(), "-".into(), "-".into()), |s| {
                    (
                        format!("{:.0}", s.wait_us),
                        format!("{:.3}", s.migrations),
                        s.last_cpu.to_string(),
                    )
                });
        format!(
            "walk {} entries {:.1} ms; per request, client / server: {}, {:.0} / {wait} µs \
             waiting for a CPU, {:.3} / {migrations} migrations, last on CPU {} / {cpu}{}",
            self.entries,
            self.ms,
            self.per_request(),
            self.client.wait_us,
            self.client.migrations,
            self.client.last_cpu,
            if self.shared_cpu() {
                "; shared a vCPU"
            } else {
                ""
            }
        )
    }
}

/// `--pin CLIENT,SERVER`: the CPUs of the walk's client and of the server, for the walks.
static PIN: std::sync::OnceLock<(usize, usize)> = std::sync::OnceLock::new();

/// Pins a thread (or process) of ours, or the calling thread (`None`), to `cpu`.
fn pin_thread(tid: Option<libc::pid_t>, cpu: usize) {
    // SAFETY: a zeroed cpu_set_t is valid; sched_setaffinity only reads it.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        if libc::sched_setaffinity(tid.unwrap_or(0), std::mem::size_of_val(&set), &set) != 0 {
            eprintln!("--pin {cpu}: {}", std::io::Error::last_os_error());
        }
    }
}

/// Walks the table from index 0 until 713.
fn walk(t: &Target, server: Option<&str>) -> Result<Walk> {
    let t = t.clone();
    let server = server.map(str::to_string);
    std::thread::Builder::new()
        .name("walk".into())
        .spawn(move || -> Result<Walk> {
            enter_netns(&t.netns)?;
            let before = task_stats();
            if let Some(&(client, srv)) = PIN.get() {
                pin_thread(None, client);
                if let Some((tid, _)) = server
                    .as_deref()
                    .and_then(|n| before.iter().find(|(_, s)| s.name == n))
                {
                    pin_thread(Some(*tid as libc::pid_t), srv);
                }
            }
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
            let ms = t0.elapsed().as_secs_f64() * 1e3;
            let after = task_stats();
            let n = (i + 1) as f64;
            let delta = |name: &str| {
                let (tid, a) = after.iter().find(|(_, a)| a.name == name)?;
                let b = before.get(tid)?;
                Some(PerRequest {
                    voluntary: (a.voluntary - b.voluntary) as f64 / n,
                    involuntary: (a.involuntary - b.involuntary) as f64 / n,
                    migrations: (a.migrations - b.migrations) as f64 / n,
                    cpu_us: (a.cpu_ns - b.cpu_ns) as f64 / n / 1e3,
                    wait_us: (a.wait_ns - b.wait_ns) as f64 / n / 1e3,
                    last_cpu: a.last_cpu,
                })
            };
            Ok(Walk {
                entries: i,
                ms,
                client: delta("walk").unwrap_or_default(),
                server: server.as_deref().and_then(delta),
            })
        })?
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
    walk: Walk,
    msearch: f64,
}

fn measure(t: &Target, clients: usize, per: usize) -> Result<Results> {
    // AddPortMapping: clients * per distinct ports from 20000 (then these are the table).
    let add = load(t, clients, per, move |t, c, i| {
        let port = 20000 + (c * per + i) as u16;
        Ok(soap(t, "AddPortMapping", &add_args(t, port))?.0)
    })?;
    eprintln!("  {} add: {add:?}", t.name);
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
    let walk = walk(t, t.thread)?;
    eprintln!("  {} {}", t.name, walk.describe());
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
    /// The miniupnpd daemon (a child of ours: we are a subreaper).
    daemon: Option<libc::pid_t>,
    console: Option<ConsoleCapture>,
}

fn cstr(p: &std::path::Path) -> Result<std::ffi::CString> {
    use std::os::unix::ffi::OsStrExt;
    Ok(std::ffi::CString::new(p.as_os_str().as_bytes())?)
}

/// Whether `pid` is a child of this process (miniupnpd's daemon, reparented to us).
fn is_our_child(pid: libc::pid_t) -> bool {
    let Ok(status) = std::fs::read_to_string(format!("/proc/{pid}/status")) else {
        return false;
    };
    let ppid = status
        .lines()
        .find_map(|l| l.strip_prefix("PPid:"))
        .and_then(|v| v.trim().parse::<u32>().ok());
    ppid == Some(std::process::id())
}

/// Kills and reaps a child of ours.
fn kill_child(pid: libc::pid_t) {
    if pid <= 0 || !is_our_child(pid) {
        return;
    }
    // SAFETY: plain system calls on a pid that is our own child (checked above), so it
    // cannot have been reused by another process before we reap it.
    unsafe {
        libc::kill(pid, libc::SIGKILL);
        let mut st = 0;
        libc::waitpid(pid, &mut st, 0);
    }
}

/// miniupnpd's syslog output. Without a syslog socket (no /dev/log here) glibc's LOG_CONS
/// falls back to /dev/console; miniupnpd runs in a mount namespace where /dev/console is this
/// FIFO, and a thread appends what arrives to miniupnpd.log.
struct ConsoleCapture {
    fifo: PathBuf,
    stop: Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl ConsoleCapture {
    fn start(fifo: &std::path::Path, log: &std::path::Path) -> Result<ConsoleCapture> {
        let c = cstr(fifo)?;
        // SAFETY: a valid C string; mkfifo only creates the node.
        if unsafe { libc::mkfifo(c.as_ptr(), 0o600) } != 0 {
            bail!(
                "mkfifo {}: {}",
                fifo.display(),
                std::io::Error::last_os_error()
            );
        }
        // Read-write: never blocks on open, never sees EOF when a writer closes.
        let mut rx = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(fifo)?;
        let mut out = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)?;
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = rx.read(&mut buf) {
                if n == 0 || flag.load(std::sync::atomic::Ordering::Relaxed) {
                    break;
                }
                let _ = out.write_all(&buf[..n]);
            }
        });
        Ok(ConsoleCapture {
            fifo: fifo.to_path_buf(),
            stop,
            thread: Some(thread),
        })
    }
}

impl Drop for ConsoleCapture {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        // Wake the reader.
        if let Ok(mut w) = std::fs::OpenOptions::new().write(true).open(&self.fifo) {
            let _ = w.write_all(b"\n");
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
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

/// The LAN address of the router in each namespace (ours binds it too).
const LAN: Ipv4Addr = Ipv4Addr::new(192, 168, 77, 1);
/// The WAN address (public: miniupnpd refuses private and documentation ones).
const WAN: Ipv4Addr = Ipv4Addr::new(60, 120, 76, 64);

impl Lab {
    /// A fresh namespace `igdb<pid><tag><round>` with the router's links and addresses (no
    /// sockets, no TIME_WAIT left from earlier rounds or from anyone on the host).
    fn up(tag: char, round: usize) -> Result<Lab> {
        let ns = format!("igdb{}{tag}{round}", std::process::id());
        let dir = std::env::temp_dir().join(&ns);
        std::fs::create_dir_all(&dir)?;
        let lab = Lab {
            ns: ns.clone(),
            dir: dir.clone(),
            daemon: None,
            console: None,
        };
        sh(&["ip", "netns", "add", &ns], None)?;
        *CLEANUP_NS.lock().unwrap_or_else(|e| e.into_inner()) = Some((ns.clone(), 0));
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
        x(&format!("ip addr add {LAN}/24 dev lan0"))?;
        x(&format!("ip addr add {WAN}/24 dev wan0"))?;
        x("ip route add default via 60.120.76.1 dev wan0")?;
        Ok(lab)
    }

    /// miniupnpd in the namespace, with the nft chains it expects.
    fn start_miniupnpd(&mut self) -> Result<()> {
        let (ns, dir) = (self.ns.clone(), self.dir.clone());
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
        let log_path = dir.join("miniupnpd.log");
        std::fs::File::create(&log_path)?;
        let log = std::fs::OpenOptions::new().append(true).open(&log_path)?;
        self.console = Some(ConsoleCapture::start(&dir.join("console.fifo"), &log_path)?);
        let fifo = cstr(&dir.join("console.fifo"))?;
        let pidfile = dir.join("miniupnpd.pid");
        let nsfile = std::fs::File::open(format!("/var/run/netns/{ns}"))?;
        // Not `-d`: debug mode logs at LOG_DEBUG (several lines per existing rule on every
        // request) and, with no syslog socket (/dev/log), glibc's LOG_CONS fallback opens and
        // writes /dev/console for each line. That made miniupnpd's requests take 1-2.5 s at a
        // few hundred rules (1000 requests: ~680 client time-outs). As a daemon it logs at
        // LOG_NOTICE, as in production; whatever it logs reaches our FIFO (`ConsoleCapture`).
        let mut cmd = Command::new("miniupnpd");
        cmd.arg("-f").arg(&conf).arg("-P").arg(&pidfile);
        let console_exists = std::path::Path::new("/dev/console").exists();
        let devlog_exists = std::fs::symlink_metadata("/dev/log").is_ok();
        {
            use std::os::fd::AsRawFd;
            use std::os::unix::process::CommandExt;
            let fd = nsfile.as_raw_fd();
            let (root, console, devlog, null) = (c"/", c"/dev/console", c"/dev/log", c"/dev/null");
            let bind = |from: &std::ffi::CStr, to: &std::ffi::CStr| {
                // SAFETY: mount(2) with valid C strings; no allocation.
                unsafe {
                    libc::mount(
                        from.as_ptr(),
                        to.as_ptr(),
                        std::ptr::null(),
                        libc::MS_BIND,
                        std::ptr::null(),
                    )
                }
            };
            // SAFETY: only async-signal-safe system calls on memory prepared before the fork:
            // enter the namespace, then a private mount namespace (nothing in it is visible
            // outside) in which /dev/console is our FIFO and a host syslog socket, if any, is
            // /dev/null, so every line miniupnpd logs comes to us and none to the host.
            unsafe {
                cmd.pre_exec(move || {
                    if libc::setns(fd, libc::CLONE_NEWNET) != 0
                        || libc::unshare(libc::CLONE_NEWNS) != 0
                        || libc::mount(
                            std::ptr::null(),
                            root.as_ptr(),
                            std::ptr::null(),
                            libc::MS_REC | libc::MS_PRIVATE,
                            std::ptr::null(),
                        ) != 0
                        || (console_exists && bind(fifo.as_c_str(), console) != 0)
                        || (devlog_exists && bind(null, devlog) != 0)
                    {
                        return Err(std::io::Error::last_os_error());
                    }
                    Ok(())
                });
            }
        }
        let mut starter = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::from(log.try_clone()?))
            .stderr(Stdio::from(log))
            .spawn()
            .context("starting miniupnpd (in its network and mount namespaces)")?;
        // The process we started forks the daemon (we are its subreaper) and exits.
        let status = starter.wait()?;
        if !status.success() {
            bail!(
                "miniupnpd exited with {status}: {}",
                std::fs::read_to_string(&log_path).unwrap_or_default()
            );
        }
        let starter_pid = starter.id();
        // Its pid file, then its HTTP port.
        let t = self.target();
        let deadline = Instant::now() + Duration::from_secs(5);
        let pid = loop {
            if let Some(pid) = std::fs::read_to_string(&pidfile)
                .ok()
                .and_then(|s| s.trim().parse::<libc::pid_t>().ok())
                .filter(|p| *p > 0 && is_our_child(*p))
            {
                break pid;
            }
            if Instant::now() > deadline {
                bail!(
                    "miniupnpd (started as pid {starter_pid}) wrote no pid file: {}",
                    std::fs::read_to_string(&log_path).unwrap_or_default()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        self.daemon = Some(pid);
        *CLEANUP_NS.lock().unwrap_or_else(|e| e.into_inner()) = Some((ns.clone(), pid));
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
            let log = std::fs::read_to_string(&log_path).unwrap_or_default();
            bail!("miniupnpd did not start: {log}");
        }
        Ok(())
    }

    /// miniupnpd as the client sees it.
    fn target(&self) -> Target {
        Target {
            name: "miniupnpd",
            http: SocketAddr::from((LAN, 5000)),
            ssdp: SocketAddr::from((LAN, 1900)),
            control: "/ctl/IPConn".into(),
            client_ip: LAN,
            netns: Some(self.ns.clone()),
            thread: None,
        }
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        if let Some(pid) = self.daemon.take() {
            kill_child(pid);
        }
        self.console = None;
        let _ = sh(&["ip", "netns", "del", &self.ns], None);
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The namespace to delete and miniupnpd's pid to kill if a signal ends the run.
static CLEANUP_NS: Mutex<Option<(String, libc::pid_t)>> = Mutex::new(None);

/// Set when SIGINT / SIGTERM arrived: the cleanup removes the namespace under the running
/// measurement, whose errors are then not worth reporting.
static INTERRUPTED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// SIGINT / SIGTERM are blocked in every thread and taken by one that deletes the namespace
/// (and so kills miniupnpd's network) before exiting.
fn install_signal_cleanup() {
    bench::on_interrupt(|sig| {
        INTERRUPTED.store(true, std::sync::atomic::Ordering::SeqCst);
        let ns = CLEANUP_NS.lock().unwrap_or_else(|e| e.into_inner()).clone();
        if let Some((ns, pid)) = ns {
            // miniupnpd's own SIGTERM handling can stall without its namespace.
            kill_child(pid);
            let _ = sh(&["ip", "netns", "del", &ns], None);
            let _ = std::fs::remove_dir_all(std::env::temp_dir().join(&ns));
        }
        eprintln!("igd-bench: interrupted by signal {sig}; namespace and miniupnpd removed");
    });
}

// ---------------------------------------------------------------------------------------------

/// Our service as the router runs it (a current-thread tokio runtime, the system clock), on a
/// thread of its own, in a fresh namespace like miniupnpd's (LAN address, port 5000, SSDP on
/// 1900); measured by the same client code, then stopped.
fn run_ours(round: usize, clients: usize, per: usize) -> Result<Results> {
    let lab = Lab::up('o', round)?;
    let (tx, rx) = std::sync::mpsc::channel();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let netns = Some(lab.ns.clone());
    let server =
        std::thread::Builder::new()
            .name("ours-igd".into())
            .spawn(move || -> Result<()> {
                // Sockets made by this thread from now on live in the namespace.
                if let Err(e) = enter_netns(&netns) {
                    let _ = tx.send(Err(e));
                    return Ok(());
                }
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()?;
                rt.block_on(async move {
                    let nat = Arc::new(Mutex::new(Nat::new(NatConfig::new(WAN, LAN, 24), 1)));
                    let mut cfg = UpnpConfig::loopback(LAN);
                    cfg.lan_prefix = 24;
                    cfg.http_port = 5000;
                    cfg.pmp_port = Some(shared::natpmp::SERVER_PORT);
                    if let Some(ssdp) = &mut cfg.ssdp {
                        ssdp.bind = SocketAddrV4::new(LAN, 1900);
                    }
                    cfg.igd_version = 2;
                    cfg.table.max_total = 100_000;
                    cfg.table.max_per_client = 100_000;
                    let svc = match UpnpService::bind(cfg, nat, Arc::new(SystemClock)).await {
                        Ok(s) => s,
                        Err(e) => {
                            let _ = tx.send(Err(e));
                            return Ok(());
                        }
                    };
                    let _ = tx.send(Ok(svc.handle()));
                    svc.run(async move {
                        let _ = stop_rx.await;
                    })
                    .await;
                    Ok(())
                })
            })?;
    let started = rx
        .recv()
        .map_err(|_| anyhow::anyhow!("our service thread ended"))
        .and_then(|r| r);
    let r = started.and_then(|handle| {
        let ours = Target {
            name: "ours",
            http: handle.http_addr(),
            ssdp: handle.ssdp_addr().context("no SSDP")?,
            control: "/ctl/IPConn".into(),
            client_ip: LAN,
            netns: Some(lab.ns.clone()),
            thread: Some("upnp-http"),
        };
        eprintln!(
            "measuring ours at {} in namespace {} ...",
            ours.http, lab.ns
        );
        measure(&ours, clients, per)
    });
    let _ = stop_tx.send(());
    server
        .join()
        .map_err(|_| anyhow::anyhow!("our service panicked"))??;
    drop(lab);
    *CLEANUP_NS.lock().unwrap_or_else(|e| e.into_inner()) = None;
    r
}

/// miniupnpd in a fresh namespace (an empty table), measured, then removed.
fn run_miniupnpd(round: usize, clients: usize, per: usize) -> Result<Results> {
    let mut lab = Lab::up('m', round)?;
    lab.start_miniupnpd()?;
    if let (Some(&(_, cpu)), Some(pid)) = (PIN.get(), lab.daemon) {
        pin_thread(Some(pid), cpu);
    }
    eprintln!("measuring miniupnpd in namespace {} ...", lab.ns);
    let r = measure(&lab.target(), clients, per);
    drop(lab);
    *CLEANUP_NS.lock().unwrap_or_else(|e| e.into_inner()) = None;
    r
}

/// The walk against a server that does no work: it answers every request at once with a
/// canned GetGenericPortMappingEntry reply (713 after `n`), on one blocking thread, in a fresh
/// namespace like the others. What is left is the client and one TCP connection per request:
/// the floor under both servers' walks on this machine, at this moment.
fn run_floor(round: usize, n: usize) -> Result<Walk> {
    let lab = Lab::up('f', round)?;
    let netns = Some(lab.ns.clone());
    let (tx, rx) = std::sync::mpsc::channel();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let stopped = stop.clone();
    let server = std::thread::Builder::new().name("floor".into()).spawn(move || -> Result<()> {
        enter_netns(&netns)?;
        let l = std::net::TcpListener::bind((LAN, 5000))?;
        let _ = tx.send(());
        let body = format!(
            "<?xml version=\"1.0\"?>\r\n<s:Envelope xmlns:s=\"http://schemas.xmlsoap.org/soap/envelope/\" s:encodingStyle=\"http://schemas.xmlsoap.org/soap/encoding/\"><s:Body><u:GetGenericPortMappingEntryResponse xmlns:u=\"{SERVICE}\"><NewRemoteHost></NewRemoteHost><NewExternalPort>20000</NewExternalPort><NewProtocol>TCP</NewProtocol><NewInternalPort>20000</NewInternalPort><NewInternalClient>{LAN}</NewInternalClient><NewEnabled>1</NewEnabled><NewPortMappingDescription>bench</NewPortMappingDescription><NewLeaseDuration>3600</NewLeaseDuration></u:GetGenericPortMappingEntryResponse></s:Body></s:Envelope>\r\n"
        );
        let ok = format!(
            "HTTP/1.1 200 OK\r\nContent-Type: text/xml; charset=\"utf-8\"\r\nConnection: close\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        let end =
            "HTTP/1.1 500 Internal Server Error\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";
        let mut served = 0usize;
        for c in l.incoming() {
            if stopped.load(std::sync::atomic::Ordering::Relaxed) {
                break;
            }
            let Ok(mut c) = c else { continue };
            let mut buf = [0u8; 4096];
            let mut got = Vec::new();
            // the head, then Content-Length bytes
            while let Ok(k) = c.read(&mut buf) {
                if k == 0 {
                    break;
                }
                got.extend_from_slice(&buf[..k]);
                if let Some(h) = got.windows(4).position(|w| w == b"\r\n\r\n") {
                    let head = String::from_utf8_lossy(&got[..h]).to_ascii_lowercase();
                    let len = head
                        .lines()
                        .find_map(|l| l.strip_prefix("content-length:"))
                        .and_then(|v| v.trim().parse::<usize>().ok())
                        .unwrap_or(0);
                    if got.len() >= h + 4 + len {
                        break;
                    }
                }
            }
            let reply = if served < n {
                ok.as_bytes()
            } else {
                end.as_bytes()
            };
            served += 1;
            let _ = c.write_all(reply);
        }
        Ok(())
    })?;
    let walked = rx
        .recv()
        .map_err(|_| anyhow::anyhow!("the floor server did not start"))
        .and_then(|()| {
            let floor = Target {
                name: "floor",
                http: SocketAddr::from((LAN, 5000)),
                ssdp: SocketAddr::from((LAN, 1900)),
                control: "/ctl/IPConn".into(),
                client_ip: LAN,
                netns: Some(lab.ns.clone()),
                thread: Some("floor"),
            };
            walk(&floor, floor.thread)
        });
    // Wake the accept so the server sees the flag.
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let wake = lab.ns.clone();
    let _ = std::thread::spawn(move || {
        if enter_netns(&Some(wake)).is_ok() {
            let _ = TcpStream::connect((LAN, 5000));
        }
    })
    .join();
    let _ = server.join();
    drop(lab);
    *CLEANUP_NS.lock().unwrap_or_else(|e| e.into_inner()) = None;
    walked
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "?".into())
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => 0.0,
        n if !n.is_multiple_of(2) => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

/// The median of each figure of some walks (the fewest entries).
fn median_walk<'a>(walks: impl Iterator<Item = &'a Walk> + Clone) -> Walk {
    let m = |f: &dyn Fn(&Walk) -> f64| median(walks.clone().map(f).collect());
    let per = |get: fn(&Walk) -> PerRequest| PerRequest {
        voluntary: m(&|w| get(w).voluntary),
        involuntary: m(&|w| get(w).involuntary),
        migrations: m(&|w| get(w).migrations),
        cpu_us: m(&|w| get(w).cpu_us),
        wait_us: m(&|w| get(w).wait_us),
        last_cpu: walks.clone().last().map_or(0, |w| get(w).last_cpu),
    };
    let servers = walks.clone().all(|w| w.server.is_some());
    Walk {
        entries: walks.clone().map(|w| w.entries).min().unwrap_or(0),
        ms: m(&|w| w.ms),
        client: per(|w| w.client),
        server: servers.then(|| per(|w| w.server.unwrap_or_default())),
    }
}

/// Per metric, the median over the rounds; errors added up.
fn summarize(rounds: &[Results]) -> Results {
    let run = |get: fn(&Results) -> &Run| {
        let mut kinds = std::collections::BTreeMap::<String, usize>::new();
        for r in rounds {
            for (k, n) in &get(r).kinds {
                *kinds.entry(k.clone()).or_default() += n;
            }
        }
        Run {
            rps: median(rounds.iter().map(|r| get(r).rps).collect()),
            p50: median(rounds.iter().map(|r| get(r).p50).collect()),
            p99: median(rounds.iter().map(|r| get(r).p99).collect()),
            errors: kinds.values().sum(),
            kinds: kinds.into_iter().collect(),
        }
    };
    Results {
        add: run(|r| &r.add),
        generic: run(|r| &r.generic),
        extip: run(|r| &r.extip),
        walk: median_walk(rounds.iter().map(|r| &r.walk)),
        msearch: median(rounds.iter().map(|r| r.msearch).collect()),
    }
}

fn main() -> Result<()> {
    install_signal_cleanup();
    let r = bench();
    if r.is_err() && INTERRUPTED.load(std::sync::atomic::Ordering::SeqCst) {
        // The signal thread is cleaning up and ends the process (status 130).
        std::thread::sleep(Duration::from_secs(30));
    }
    r
}

fn bench() -> Result<()> {
    // miniupnpd daemonizes: its daemon is reparented to us, so we can reap it.
    // SAFETY: a plain prctl on this process.
    unsafe {
        libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0);
    }
    let mut requests = 250usize;
    let mut clients = 4usize;
    let mut rounds = 3usize;
    let mut with_miniupnpd = true;
    let usage =
        "use --requests N --clients C --rounds R --no-miniupnpd --pin CLIENT_CPU,SERVER_CPU";
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut num = |name: &str| -> Result<usize> {
            args.next()
                .and_then(|v| v.parse().ok())
                .filter(|n| *n > 0)
                .with_context(|| format!("{name} needs a positive number"))
        };
        match a.as_str() {
            "--requests" => requests = num("--requests")?,
            "--clients" => clients = num("--clients")?,
            "--rounds" => rounds = num("--rounds")?,
            "--no-miniupnpd" => with_miniupnpd = false,
            "--pin" => {
                let pin = args
                    .next()
                    .and_then(|v| {
                        let (c, s) = v.split_once(',')?;
                        Some((c.parse().ok()?, s.parse().ok()?))
                    })
                    .context("--pin needs two CPU numbers: CLIENT,SERVER")?;
                let _ = PIN.set(pin);
            }
            other => bail!("unknown argument {other}; {usage}"),
        }
    }
    if clients * requests > 40_000 {
        bail!("at most 40000 mappings (ports 20000..60000)");
    }

    let load_before = loadavg();
    let mut ours_rounds = Vec::new();
    let mut mini_rounds = Vec::new();
    let mut mini_error = None;
    let mut floors = Vec::new();
    // Rounds alternate (ours, miniupnpd, ours, ...) so a change in the machine's load hits
    // both alike.
    for round in 0..rounds {
        eprintln!("round {} of {rounds} (load {})", round + 1, loadavg());
        ours_rounds.push(run_ours(round, clients, requests)?);
        let f = run_floor(round, clients * requests)?;
        eprintln!("  floor {}", f.describe());
        floors.push(f);
        if with_miniupnpd && mini_error.is_none() {
            match run_miniupnpd(round, clients, requests) {
                Ok(r) => mini_rounds.push(r),
                Err(e) => {
                    eprintln!("miniupnpd not measured: {e:#}");
                    mini_error = Some(e);
                }
            }
        }
    }
    let r_ours = summarize(&ours_rounds);
    let r_mini = (!mini_rounds.is_empty()).then(|| summarize(&mini_rounds));

    println!(
        "\nIGD benchmark: {clients} clients x {requests} requests, one connection per request; \
         median of {rounds} round(s)\nload average before: {load_before}, after: {}\n",
        loadavg()
    );
    println!(
        "{:<34} {:>14} {:>14} {:>10}",
        "metric", "ours", "miniupnpd", "ours/mini"
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
    let kinds = |r: &Run| {
        if r.kinds.is_empty() {
            "none".to_string()
        } else {
            r.kinds
                .iter()
                .map(|(k, n)| format!("{n} {k}"))
                .collect::<Vec<_>>()
                .join(", ")
        }
    };
    for (label, get) in [
        (
            "AddPortMapping",
            (|r: &Results| &r.add) as fn(&Results) -> &Run,
        ),
        ("GetGenericPortMappingEntry", |r: &Results| &r.generic),
        ("GetExternalIPAddress", |r: &Results| &r.extip),
    ] {
        let a = get(&r_ours);
        let b = r_mini.as_ref().map(get);
        row(&format!("{label} req/s"), a.rps, b.map(|b| b.rps), true);
        row(&format!("{label} p50 ms"), a.p50, b.map(|b| b.p50), false);
        row(&format!("{label} p99 ms"), a.p99, b.map(|b| b.p99), false);
        if a.errors > 0 || b.is_some_and(|b| b.errors > 0) {
            println!(
                "  ({label} errors, all rounds: ours {}, miniupnpd {})",
                kinds(a),
                b.map_or("-".to_string(), kinds)
            );
        }
    }
    row(
        &format!("walk {} mappings ms", r_ours.walk.entries),
        r_ours.walk.ms,
        r_mini.as_ref().map(|m| m.walk.ms),
        false,
    );
    if let Some(m) = &r_mini
        && m.walk.entries != r_ours.walk.entries
    {
        println!("  (miniupnpd walked {} entries)", m.walk.entries);
    }
    println!(
        "  (the same walk against a canned answer, no server work: {:.2} ms: the client and \
         one TCP connection per request on this machine now)",
        median_walk(floors.iter()).ms
    );
    // Where the walk's time goes: each sleep is a wakeup, which costs tens of µs on an idle
    // vCPU here; the client and the server sharing a vCPU or not changes the walk about 2x.
    let shared = |v: &[Walk]| v.iter().filter(|w| w.shared_cpu()).count();
    println!(
        "  (per walk request, client / server thread: context switches voluntary+involuntary, \
         µs on a CPU; ours {}; floor {}; the two shared a vCPU in {} of {rounds} walks of \
         ours, {} of the floor's)",
        r_ours.walk.per_request(),
        median_walk(floors.iter()).per_request(),
        shared(
            &ours_rounds
                .iter()
                .map(|r| r.walk.clone())
                .collect::<Vec<_>>()
        ),
        shared(&floors),
    );
    if let Some(&(c, s)) = PIN.get() {
        println!("  (walks with the client on CPU {c} and the server on CPU {s}: --pin)");
    }
    row(
        "M-SEARCH to first reply ms (p50)",
        r_ours.msearch,
        r_mini.as_ref().map(|m| m.msearch),
        false,
    );
    println!("\nratios: above 1.00x means ours is better (faster or more requests per second)");
    if let Some(e) = mini_error {
        println!("miniupnpd: {e:#}");
    }
    Ok(())
}
