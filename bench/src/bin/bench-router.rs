//! Router benchmark (issue 3): the same lab with `--router ours` and `--router kernel`, measured
//! in one run, printed as a table with ratios to the kernel.
//!
//! `cargo run --release -p bench --bin bench-router [-- --seconds N --rounds R]` as root. It
//! builds the release router first if needed (the lab uses `ROUTER_BIN` or
//! target/release/router).
//!
//! Three labs are up at once: ours (default configuration), ours with busy polling off
//! (`--busy-poll-us 0`, to show what the dataplane's polling buys), and the kernel's nftables
//! NAT. Each figure is measured lab after lab, in rounds, so a drift of the machine (this
//! 2-vCPU VM's wakeup cost changes with its load and over the day) hits all of them alike:
//! - iperf3 TCP throughput LAN->internet and internet->LAN through a forward, and the UDP
//!   packet rate with 64-byte payloads (delivered packets/s at an unlimited send rate):
//!   ours and the kernel, `--rounds` each (default 2), median;
//! - UDP request/response latency (this binary is also the echo server and client, run inside
//!   the namespaces): `--rounds` x 3 rounds of 4000 requests per lab; p50 and p99 are medians
//!   over the rounds, and the added latency is the median of each round's ours - kernel
//!   difference (the spread over rounds is printed too);
//!
//! then the engine-only figures of `nat-bench`.

use std::net::UdpSocket;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use tests::{Lab, LabOptions, RouterKind, repo_root};

const TERMINAL: &str = "198.51.100.10";
/// Requests per latency round.
const RR_PER_ROUND: usize = 4000;

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().collect();
    match args.get(1).map(String::as_str) {
        Some("udp-echo") => return udp_echo(&args[2]),
        Some("udp-rr") => return udp_rr(&args[2], args[3].parse()?),
        _ => {}
    }
    let flag = |name: &str, default: u32| -> u32 {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .and_then(|s| s.parse().ok())
            .unwrap_or(default)
    };
    let seconds = flag("--seconds", 5);
    let rounds = flag("--rounds", 2).max(1) as usize;
    if !tests::require_root() {
        bail!("the benchmark needs root");
    }
    ensure_release_router()?;

    eprintln!("bench-router: bringing up three labs (ours, ours without busy polling, kernel)");
    let ours = Subject::up(RouterKind::Ours, None)?;
    let ours_no_poll = Subject::up(RouterKind::Ours, Some("--busy-poll-us 0"))?;
    let kernel = Subject::up(RouterKind::Kernel, None)?;

    let mut tcp_out = [Vec::new(), Vec::new()];
    let mut tcp_in = [Vec::new(), Vec::new()];
    let mut udp_pps = [Vec::new(), Vec::new()];
    for round in 0..rounds {
        for (i, s) in [&ours, &kernel].into_iter().enumerate() {
            eprintln!(
                "bench-router: throughput round {}/{rounds}, {}",
                round + 1,
                s.name
            );
            tcp_out[i].push(s.tcp_out(seconds)?);
            tcp_in[i].push(s.tcp_in(seconds)?);
            udp_pps[i].push(s.udp_pps(seconds)?);
        }
    }
    let subjects = [&ours, &ours_no_poll, &kernel];
    let mut p50 = [Vec::new(), Vec::new(), Vec::new()];
    let mut p99 = [Vec::new(), Vec::new(), Vec::new()];
    let mut added = Vec::new();
    let mut added_no_poll = Vec::new();
    let rr_rounds = rounds * 3;
    for round in 0..rr_rounds {
        eprintln!("bench-router: latency round {}/{rr_rounds}", round + 1);
        for (i, s) in subjects.iter().enumerate() {
            let (a, b) = s.udp_rr(RR_PER_ROUND)?;
            p50[i].push(a);
            p99[i].push(b);
        }
        added.push(p50[0][round] - p50[2][round]);
        added_no_poll.push(p50[1][round] - p50[2][round]);
    }

    let rows: [(&str, f64, f64); 5] = [
        (
            "TCP LAN->internet (Gbit/s)",
            median(&tcp_out[0]) / 1e9,
            median(&tcp_out[1]) / 1e9,
        ),
        (
            "TCP internet->LAN via forward (Gbit/s)",
            median(&tcp_in[0]) / 1e9,
            median(&tcp_in[1]) / 1e9,
        ),
        (
            "UDP 64 B delivered (k packets/s)",
            median(&udp_pps[0]) / 1e3,
            median(&udp_pps[1]) / 1e3,
        ),
        (
            "UDP request/response p50 (us)",
            median(&p50[0]),
            median(&p50[2]),
        ),
        (
            "UDP request/response p99 (us)",
            median(&p99[0]),
            median(&p99[2]),
        ),
    ];
    println!();
    println!(
        "Router benchmark: ours and the kernel's NAT, labs side by side ({seconds} s per throughput \
         figure, median of {rounds} round(s); latency: median of {rr_rounds} rounds of \
         {RR_PER_ROUND} requests)"
    );
    println!(
        "{:<42} {:>12} {:>12} {:>9}",
        "figure", "ours", "kernel", "ours/kern"
    );
    for (name, o, k) in rows {
        println!(
            "{name:<42} {o:>12.2} {k:>12.2} {:>8.2}x",
            if k > 0.0 { o / k } else { f64::NAN }
        );
    }
    let (k50, k99) = (median(&p50[2]), median(&p99[2]));
    for (name, v, k) in [
        (
            "  p50, ours with busy polling off (us)",
            median(&p50[1]),
            k50,
        ),
        (
            "  p99, ours with busy polling off (us)",
            median(&p99[1]),
            k99,
        ),
    ] {
        println!("{name:<42} {v:>12.2} {k:>12.2} {:>8.2}x", v / k);
    }
    println!(
        "{:<42} {:>12.1}  (goal < 30 us; rounds {:.1} to {:.1})",
        "added p50 latency, ours - kernel (us)",
        median(&added),
        min(&added),
        max(&added)
    );
    println!(
        "{:<42} {:>12.1}  (rounds {:.1} to {:.1})",
        "  the same, busy polling off (us)",
        median(&added_no_poll),
        min(&added_no_poll),
        max(&added_no_poll)
    );
    println!(
        "load average after: {}",
        std::fs::read_to_string("/proc/loadavg")
            .unwrap_or_default()
            .trim()
    );
    println!();
    drop((ours, ours_no_poll, kernel));

    // Engine-only figures, from the engine benchmark in the same run (built at the start).
    let nat_bench = repo_root().join("target/release/nat-bench");
    if nat_bench.exists() {
        let out = Command::new(&nat_bench)
            .output()
            .context("running nat-bench")?;
        print!("{}", String::from_utf8_lossy(&out.stdout));
    } else {
        println!(
            "({} missing: cargo build --release -p bench --bin nat-bench)",
            nat_bench.display()
        );
    }
    Ok(())
}

fn median(v: &[f64]) -> f64 {
    let mut v = v.to_vec();
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

fn min(v: &[f64]) -> f64 {
    v.iter().copied().fold(f64::INFINITY, f64::min)
}

fn max(v: &[f64]) -> f64 {
    v.iter().copied().fold(f64::NEG_INFINITY, f64::max)
}

fn ensure_release_router() -> Result<()> {
    let root = repo_root();
    bench::build_release(&[("router", "router"), ("bench", "nat-bench")])?;
    // SAFETY: no other thread exists yet, so nothing reads the environment concurrently.
    unsafe { std::env::set_var("ROUTER_BIN", root.join("target/release/router")) };
    Ok(())
}

/// One lab under test, with its iperf3 servers and UDP echo server running.
struct Subject {
    name: String,
    lab: Lab,
}

impl Subject {
    fn up(kind: RouterKind, router_args: Option<&str>) -> Result<Subject> {
        let mut opts = LabOptions::new(kind)
            .cams(1)
            .addressing("static")
            .forward("tcp:5202=cam1:5202");
        if let Some(a) = router_args {
            opts = opts.router_args(a);
        }
        let lab = Lab::up(&opts)?;
        let cam1 = lab.addr("cam1");
        lab.spawn("inet", &["iperf3", "-s", "-B", TERMINAL, "-p", "5201"]);
        lab.spawn("cam1", &["iperf3", "-s", "-p", "5202"]);
        let me = std::env::current_exe()?.display().to_string();
        lab.spawn("inet", &[&me, "udp-echo", &format!("{TERMINAL}:7007")]);
        lab.wait_tcp("cam1", TERMINAL, 5201);
        lab.wait_tcp("cam1", &cam1.to_string(), 5202);
        let name = match router_args {
            Some(a) => format!("{} ({a})", kind.name()),
            None => kind.name().to_string(),
        };
        Ok(Subject { name, lab })
    }

    /// iperf3 TCP from cam1 to the terminal, bits/s received.
    fn tcp_out(&self, seconds: u32) -> Result<f64> {
        let json = self.iperf_client("cam1", TERMINAL, "5201", seconds, &[])?;
        json_f64(&json, &["end", "sum_received", "bits_per_second"])
    }

    /// iperf3 TCP from the terminal to cam1 through the forward, bits/s received.
    fn tcp_in(&self, seconds: u32) -> Result<f64> {
        let wan = self.lab.wan_addr().to_string();
        let json = self.iperf_client("inet", &wan, "5202", seconds, &[])?;
        json_f64(&json, &["end", "sum_received", "bits_per_second"])
    }

    /// iperf3 UDP, 64-byte payloads at an unlimited rate: delivered packets/s.
    fn udp_pps(&self, seconds: u32) -> Result<f64> {
        let udp = ["-u", "-b", "0", "-l", "64"];
        let json = self.iperf_client("cam1", TERMINAL, "5201", seconds, &udp)?;
        let packets = json_f64(&json, &["end", "sum", "packets"])?;
        let lost = json_f64(&json, &["end", "sum", "lost_packets"])?;
        let dur = json_f64(&json, &["end", "sum", "seconds"])?;
        Ok((packets - lost) / dur)
    }

    /// `iperf3 -c server -p port -t seconds -J extra...` from `node`, its JSON report.
    fn iperf_client(
        &self,
        node: &str,
        server: &str,
        port: &str,
        seconds: u32,
        extra: &[&str],
    ) -> Result<serde_json::Value> {
        let secs = seconds.to_string();
        let mut args = vec!["-c", server, "-p", port, "-t", &secs, "-J"];
        args.extend_from_slice(extra);
        iperf(&self.lab, node, &args)
    }

    /// `n` UDP requests from cam1 to the terminal's echo server, one at a time: (p50, p99) µs.
    fn udp_rr(&self, n: usize) -> Result<(f64, f64)> {
        let me = std::env::current_exe()?.display().to_string();
        let out = self.lab.exec_timeout(
            "cam1",
            Duration::from_secs(120),
            &[&me, "udp-rr", &format!("{TERMINAL}:7007"), &n.to_string()],
        );
        let text = String::from_utf8_lossy(&out.stdout);
        let mut it = text.split_whitespace().map(str::parse::<f64>);
        match (it.next(), it.next()) {
            (Some(Ok(a)), Some(Ok(b))) => Ok((a, b)),
            _ => bail!(
                "{}: udp-rr printed {text:?}: {}",
                self.name,
                String::from_utf8_lossy(&out.stderr)
            ),
        }
    }
}

fn iperf(lab: &Lab, node: &str, args: &[&str]) -> Result<serde_json::Value> {
    let mut full = vec!["iperf3"];
    full.extend_from_slice(args);
    let out = lab.exec_timeout(node, Duration::from_secs(120), &full);
    serde_json::from_slice(&out.stdout).with_context(|| {
        format!(
            "iperf3 {args:?} output: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

fn json_f64(v: &serde_json::Value, path: &[&str]) -> Result<f64> {
    let mut cur = v;
    for p in path {
        cur = cur
            .get(p)
            .with_context(|| format!("iperf3 JSON lacks {path:?}: {v}"))?;
    }
    cur.as_f64()
        .with_context(|| format!("{path:?} is not a number"))
}

/// Echo every datagram back (runs in the internet namespace).
fn udp_echo(addr: &str) -> Result<()> {
    let sock = UdpSocket::bind(addr)?;
    let mut buf = [0u8; 2048];
    loop {
        let (n, from) = sock.recv_from(&mut buf)?;
        sock.send_to(&buf[..n], from)?;
    }
}

/// Send `n` small requests one at a time and print the p50 and p99 round trip in microseconds.
fn udp_rr(target: &str, n: usize) -> Result<()> {
    let sock = UdpSocket::bind("0.0.0.0:0")?;
    sock.connect(target)?;
    sock.set_read_timeout(Some(Duration::from_millis(200)))?;
    let mut rtts = Vec::with_capacity(n);
    let mut buf = [0u8; 64];
    for i in 0..n + 500 {
        let t = Instant::now();
        sock.send(&(i as u64).to_le_bytes())?;
        if sock.recv(&mut buf).is_err() {
            continue; // lost: not a latency sample
        }
        if i >= 500 {
            rtts.push(t.elapsed().as_secs_f64() * 1e6); // after a warm-up
        }
    }
    rtts.sort_by(f64::total_cmp);
    let pct = |p: f64| {
        rtts.get(((rtts.len() as f64 - 1.0) * p) as usize)
            .copied()
            .unwrap_or(f64::NAN)
    };
    println!("{:.1} {:.1}", pct(0.50), pct(0.99));
    Ok(())
}
