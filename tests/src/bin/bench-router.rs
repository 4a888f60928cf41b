//! Router benchmark (issue 3): the same lab with `--router ours` and `--router kernel`, measured
//! in one run, printed as a table with ratios to the kernel.
//!
//! `cargo run --release -p tests --bin bench-router [-- --seconds N]` as root. It builds the
//! release router first if needed (the lab uses `ROUTER_BIN` or target/release/router).
//!
//! Figures: iperf3 TCP throughput LAN->internet and internet->LAN through a forward; UDP packet
//! rate with 64-byte payloads (delivered packets/s at an unlimited send rate); UDP
//! request/response latency p50/p99 (this binary is also the echo server and client, run inside
//! the namespaces); then the engine-only figures of `nat-bench`.

use std::net::UdpSocket;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use tests::{Lab, LabOptions, RouterKind, repo_root};

const TERMINAL: &str = "198.51.100.10";

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().collect();
    match args.get(1).map(String::as_str) {
        Some("udp-echo") => return udp_echo(&args[2]),
        Some("udp-rr") => return udp_rr(&args[2], args[3].parse()?),
        _ => {}
    }
    let seconds: u32 = args
        .iter()
        .position(|a| a == "--seconds")
        .and_then(|i| args.get(i + 1))
        .and_then(|s| s.parse().ok())
        .unwrap_or(5);
    if !tests::require_root() {
        bail!("the benchmark needs root");
    }
    ensure_release_router()?;

    let mut rows: Vec<(String, String, f64, f64)> = Vec::new();
    let mut results = Vec::new();
    for kind in [RouterKind::Ours, RouterKind::Kernel] {
        eprintln!("bench-router: measuring --router {}", kind.name());
        results.push(measure(kind, seconds)?);
    }
    let (ours, kernel) = (&results[0], &results[1]);
    rows.push((
        "TCP LAN->internet (Gbit/s)".into(),
        "higher".into(),
        ours.tcp_out / 1e9,
        kernel.tcp_out / 1e9,
    ));
    rows.push((
        "TCP internet->LAN via forward (Gbit/s)".into(),
        "higher".into(),
        ours.tcp_in / 1e9,
        kernel.tcp_in / 1e9,
    ));
    rows.push((
        "UDP 64 B delivered (k packets/s)".into(),
        "higher".into(),
        ours.udp_pps / 1e3,
        kernel.udp_pps / 1e3,
    ));
    rows.push((
        "UDP request/response p50 (us)".into(),
        "lower".into(),
        ours.rr_p50,
        kernel.rr_p50,
    ));
    rows.push((
        "UDP request/response p99 (us)".into(),
        "lower".into(),
        ours.rr_p99,
        kernel.rr_p99,
    ));

    println!();
    println!(
        "Router benchmark: the same lab with --router ours and --router kernel ({seconds} s per figure)"
    );
    println!(
        "{:<42} {:>12} {:>12} {:>9}",
        "figure", "ours", "kernel", "ours/kern"
    );
    for (name, _, o, k) in &rows {
        println!(
            "{name:<42} {o:>12.2} {k:>12.2} {:>8.2}x",
            if *k > 0.0 { o / k } else { f64::NAN }
        );
    }
    println!(
        "{:<42} {:>12.1}  (goal < 30 us)",
        "added p50 latency, ours - kernel (us)",
        ours.rr_p50 - kernel.rr_p50
    );
    println!();

    // Engine-only figures, from the engine benchmark in the same run.
    let nat_bench = repo_root().join("target/release/nat-bench");
    if nat_bench.exists() {
        let out = Command::new(&nat_bench)
            .output()
            .context("running nat-bench")?;
        print!("{}", String::from_utf8_lossy(&out.stdout));
    } else {
        println!(
            "(target/release/nat-bench missing: cargo build --release -p router --bin nat-bench)"
        );
    }
    Ok(())
}

fn ensure_release_router() -> Result<()> {
    let root = repo_root();
    let status = Command::new("cargo")
        .args([
            "build",
            "--release",
            "-q",
            "-p",
            "router",
            "--bin",
            "router",
            "--bin",
            "nat-bench",
        ])
        .current_dir(&root)
        .status()
        .context("cargo build --release -p router")?;
    if !status.success() {
        bail!("building the release router failed");
    }
    // SAFETY: no other thread exists yet, so nothing reads the environment concurrently.
    unsafe { std::env::set_var("ROUTER_BIN", root.join("target/release/router")) };
    Ok(())
}

#[derive(Debug, Default)]
struct Figures {
    tcp_out: f64,
    tcp_in: f64,
    udp_pps: f64,
    rr_p50: f64,
    rr_p99: f64,
}

fn measure(kind: RouterKind, seconds: u32) -> Result<Figures> {
    let opts = LabOptions::new(kind)
        .cams(1)
        .addressing("static")
        .forward("tcp:5202=cam1:5202");
    let lab = Lab::up(&opts)?;
    let wan = lab.wan_addr();
    let cam1 = lab.addr("cam1");
    let secs = seconds.to_string();
    lab.spawn("inet", &["iperf3", "-s", "-B", TERMINAL, "-p", "5201"]);
    lab.spawn("cam1", &["iperf3", "-s", "-p", "5202"]);
    lab.wait_tcp("cam1", TERMINAL, 5201);
    lab.wait_tcp("cam1", &cam1.to_string(), 5202);

    let mut f = Figures::default();
    let json = iperf(
        &lab,
        "cam1",
        &["-c", TERMINAL, "-p", "5201", "-t", &secs, "-J"],
    )?;
    f.tcp_out = json_f64(&json, &["end", "sum_received", "bits_per_second"])?;
    let json = iperf(
        &lab,
        "inet",
        &["-c", &wan.to_string(), "-p", "5202", "-t", &secs, "-J"],
    )?;
    f.tcp_in = json_f64(&json, &["end", "sum_received", "bits_per_second"])?;
    let json = iperf(
        &lab,
        "cam1",
        &[
            "-c", TERMINAL, "-p", "5201", "-u", "-b", "0", "-l", "64", "-t", &secs, "-J",
        ],
    )?;
    let packets = json_f64(&json, &["end", "sum", "packets"])?;
    let lost = json_f64(&json, &["end", "sum", "lost_packets"])?;
    let dur = json_f64(&json, &["end", "sum", "seconds"])?;
    f.udp_pps = (packets - lost) / dur;

    let me = std::env::current_exe()?.display().to_string();
    lab.spawn("inet", &[&me, "udp-echo", &format!("{TERMINAL}:7007")]);
    std::thread::sleep(Duration::from_millis(300));
    let n = 20_000.max(seconds as usize * 4000).to_string();
    let out = lab.exec_timeout(
        "cam1",
        Duration::from_secs(120),
        &[&me, "udp-rr", &format!("{TERMINAL}:7007"), &n],
    );
    let text = String::from_utf8_lossy(&out.stdout);
    let mut it = text
        .split_whitespace()
        .map(|v| v.parse::<f64>().unwrap_or(f64::NAN));
    f.rr_p50 = it.next().unwrap_or(f64::NAN);
    f.rr_p99 = it.next().unwrap_or(f64::NAN);
    Ok(f)
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
