//! Camera node start-up benchmark (issue 5): the time from starting `camnode` to its page
//! answering on `http://<WAN>:8080/` from the internet namespace, repeated, behind our router and
//! behind miniupnpd in the same run. Prints median and worst.
//!
//! `cargo run --release -p bench --bin bench-camnode-start [-- --runs N]` as root. Uses
//! `CAMNODE_BIN` or target/release/camnode (built if missing), and the lab's router choice.

use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use tests::{Lab, LabOptions, RouterKind, repo_root};

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let runs: usize = args
        .iter()
        .position(|a| a == "--runs")
        .and_then(|i| args.get(i + 1))
        .and_then(|s| s.parse().ok())
        .unwrap_or(5);
    if !tests::require_root() {
        bail!("the benchmark needs root");
    }
    let root = repo_root();
    bench::build_release(&[("camnode", "camnode"), ("router", "router")])?;
    let camnode = std::env::var("CAMNODE_BIN")
        .unwrap_or_else(|_| root.join("target/release/camnode").display().to_string());
    // SAFETY: no other thread exists yet, so nothing reads the environment concurrently.
    unsafe { std::env::set_var("ROUTER_BIN", root.join("target/release/router")) };

    println!("camnode start to its page answering from the internet on :8080 ({runs} runs each)");
    println!(
        "{:<12} {:>10} {:>10} {:>10}  goal",
        "router", "median ms", "worst ms", "best ms"
    );
    for kind in [RouterKind::Ours, RouterKind::Miniupnpd] {
        let lab = Lab::up(&LabOptions::new(kind).cams(1))?;
        let wan = lab.wan_addr();
        let state = format!("/tmp/{}-bench-cam", lab.prefix);
        let mut times = Vec::new();
        for _ in 0..runs {
            let t0 = Instant::now();
            let pid = lab.spawn("cam1", &[&camnode, "--state-dir", &state]);
            // A short connect timeout: until the mapping exists the router drops the SYN, and a
            // plain curl would wait out TCP's 1 s initial retransmission timeout (RFC 6298).
            let reached = loop {
                let (ok, _) = lab.try_sh(
                    "inet",
                    &format!("curl -sf --connect-timeout 0.1 -m 2 -o /dev/null http://{wan}:8080/"),
                );
                if ok {
                    break Some(t0.elapsed());
                }
                if t0.elapsed() > Duration::from_secs(20) {
                    break None;
                }
                std::thread::sleep(Duration::from_millis(10));
            };
            let _ = Command::new("kill")
                .args(["-TERM", &pid.to_string()])
                .status();
            // Wait until the node has removed its mapping, so the next run starts clean.
            let t = Instant::now();
            while t.elapsed() < Duration::from_secs(10) {
                let (ok, _) = lab.try_sh(
                    "inet",
                    &format!("curl -sf --connect-timeout 0.1 -m 2 -o /dev/null http://{wan}:8080/"),
                );
                if !ok
                    && !Command::new("kill")
                        .args(["-0", &pid.to_string()])
                        .status()
                        .is_ok_and(|s| s.success())
                {
                    break;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            match reached {
                Some(d) => times.push(d),
                None => bail!("camnode never became reachable behind {}", kind.name()),
            }
        }
        times.sort();
        let ms = |d: Duration| d.as_secs_f64() * 1e3;
        println!(
            "{:<12} {:>10.0} {:>10.0} {:>10.0}  < 1000 ms",
            kind.name(),
            ms(times[times.len() / 2]),
            ms(times[times.len() - 1]),
            ms(times[0])
        );
        let _ = std::fs::remove_dir_all(&state);
    }
    Ok(())
}
