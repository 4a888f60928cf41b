//! `failover-bench`: how long `http://<WAN>:8080/` is gone when the representative departs
//! (server patent embodiment 4, Fig. 11-14; issue 6's benchmark).
//!
//! It brings up a lab (`netns-scripts/lab up`, three camera nodes, static addressing), starts
//! three `camnode`s, and repeats, for each kind of departure, `--runs` times: wait until `:8080`
//! answers from the internet side (`inet`) with a representative listing the other two; make the
//! representative depart; measure until `:8080` answers again from another node (a probe starts
//! every 20 ms, each with a 1 s timeout); bring the departed node back as an ordinary node.
//! Kinds: `graceful` (SIGTERM: bye-bye, claim 13), `kill` (SIGKILL: missed inquiries / presence
//! inquiries, claims 14, 15), `cut` (`ip link set eth0 down` in the representative's namespace).
//! With `--rules`, the whole series is repeated for each succession rule (claims 10-12; the
//! camnodes are restarted with `--succession RULE`). Prints one line per rule and kind (runs,
//! median, worst, failed) with the timer settings used, and the same table as Markdown. Needs
//! root. The lab is removed on exit (also on Ctrl-C via `lab gc` the next time, as it records
//! our pid).
//!
//! ```text
//! failover-bench [--router miniupnpd|ours] [--secure on|off] [--runs N]
//!                [--kinds graceful,kill,cut] [--rules random,port-order,node-value]
//!                [--wait-ms MIN[-MAX]] [-- CAMNODE_ARGS...]
//! ```
//! `--wait-ms` is how long the steady state lasts before each departure (default 500; a range
//! picks uniformly at random): in secure mode the time to wait for the dead holder's lease
//! depends on where in its renewal cycle it departs (renewed every half lease), and with the
//! default the departure comes about 2 s after the holder took the port, near the worst case.
//! `CAMNODE_ARGS` go to every camnode, e.g. `--inquiry-interval-ms 300` or
//! `--representative-lease-seconds 6`.
//!
//! The `camnode` binary next to this one is used; under `cargo run` (the `CARGO` variable is
//! set) it is built first with the same profile, so it is never older than its sources.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use serde_json::Value;

struct Lab {
    prefix: String,
    script: PathBuf,
    camnode: PathBuf,
    wan: String,
    cams: Vec<Cam>,
    camnode_args: Vec<String>,
    /// `--succession RULE`, or empty for the default.
    rule_args: Vec<String>,
}

struct Cam {
    node: String,
    addr: String,
    child: Option<Child>,
}

fn run(cmd: &mut Command) -> anyhow::Result<String> {
    let out = cmd.stdin(Stdio::null()).output().context("spawning")?;
    if !out.status.success() {
        bail!(
            "{cmd:?} failed ({}): {}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

impl Lab {
    fn ns(&self, node: &str) -> String {
        format!("{}-{node}", self.prefix)
    }

    fn sh(&self, node: &str, script: &str) -> anyhow::Result<String> {
        run(Command::new("ip").args(["netns", "exec", &self.ns(node), "bash", "-c", script]))
    }

    fn start(&mut self, i: usize) -> anyhow::Result<()> {
        let node = self.cams[i].node.clone();
        // Through a shell for the log file only; `exec` keeps the pid the camnode's.
        let script = format!("exec \"$0\" \"$@\" 2>>/tmp/{}-{node}.log", self.prefix);
        let child = Command::new("ip")
            .args(["netns", "exec", &self.ns(&node), "bash", "-c", &script])
            .arg(&self.camnode)
            .args(["--state-dir", &format!("/tmp/{}-{node}", self.prefix)])
            .args(["--source", "synthetic", "--fps", "2", "--width", "160"])
            .args(["--height", "120"])
            .args(&self.rule_args)
            .args(&self.camnode_args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("starting camnode")?;
        self.cams[i].child = Some(child);
        Ok(())
    }

    /// Signals the node by the pid we started it with, then reaps it.
    fn signal(&mut self, i: usize, sig: libc::c_int) {
        if let Some(mut c) = self.cams[i].child.take() {
            // SAFETY: kill has no memory preconditions; the pid is our unreaped child's.
            unsafe { libc::kill(c.id() as libc::pid_t, sig) };
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline {
                if matches!(c.try_wait(), Ok(Some(_))) {
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    fn wan_status(&self) -> Option<Value> {
        let url = format!("http://{}:8080/status.json", self.wan);
        let out = self.sh("inet", &format!("curl -s -m 1 {url}")).ok()?;
        serde_json::from_str(&out).ok()
    }

    /// Probes `:8080` every 20 ms until `pred`: the time from `start` to the first answer.
    fn wait_wan(
        &self,
        start: Instant,
        timeout: Duration,
        pred: impl Fn(&Value) -> bool,
    ) -> Option<(Duration, Value)> {
        let stop = AtomicBool::new(false);
        let (tx, rx) = mpsc::channel::<(Instant, Option<Value>)>();
        std::thread::scope(|s| {
            let mut next = Instant::now();
            let mut found = None;
            while found.is_none() && start.elapsed() < timeout {
                if Instant::now() >= next {
                    let (tx, stop) = (tx.clone(), &stop);
                    s.spawn(move || {
                        if !stop.load(Ordering::Relaxed) {
                            let _ = tx.send((Instant::now(), self.wan_status()));
                        }
                    });
                    next += Duration::from_millis(20);
                }
                while let Ok((at, v)) = rx.recv_timeout(Duration::from_millis(5)) {
                    if let Some(v) = v.filter(|v| pred(v)) {
                        found = Some((at.saturating_duration_since(start), v));
                        break;
                    }
                }
            }
            stop.store(true, Ordering::Relaxed);
            found
        })
    }

    fn rep_index(&self, v: &Value) -> Option<usize> {
        let addr = v["lan_addr"].as_str()?;
        self.cams.iter().position(|c| c.addr == addr)
    }

    /// Waits until a representative answers listing all the others; its index.
    fn steady(&self) -> anyhow::Result<usize> {
        let n = self.cams.len() - 1;
        let (_, v) = self
            .wait_wan(Instant::now(), Duration::from_secs(60), |v| {
                v["role"] == "representative" && v["peers"].as_array().is_some_and(|p| p.len() == n)
            })
            .context("no representative listing every node within 60 s")?;
        self.rep_index(&v)
            .context("the representative is not a camera")
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        for i in 0..self.cams.len() {
            self.signal(i, libc::SIGKILL);
        }
        let _ = Command::new(&self.script)
            .args(["down", "--prefix", &self.prefix])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Graceful,
    Kill,
    Cut,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Graceful => "graceful (SIGTERM)",
            Kind::Kill => "crash (SIGKILL)",
            Kind::Cut => "unplug (link down)",
        }
    }
}

fn median_worst(times: &[Duration]) -> (String, String) {
    let mut t = times.to_vec();
    t.sort();
    let ms =
        |d: Option<&Duration>| d.map_or("-".into(), |d| format!("{:.0}", d.as_secs_f64() * 1e3));
    // The median of an even count is the upper middle one.
    (ms(t.get(t.len() / 2)), ms(t.last()))
}

/// Builds the camnode binary next to this one when run by cargo (same profile and target
/// directory), so the bench never measures a stale node.
fn build_camnode() -> anyhow::Result<()> {
    let Some(cargo) = std::env::var_os("CARGO") else {
        return Ok(());
    };
    let mut cmd = Command::new(cargo);
    cmd.args(["build", "-q", "-p", "camnode", "--bin", "camnode"]);
    if !cfg!(debug_assertions) {
        cmd.arg("--release");
    }
    cmd.current_dir(env!("CARGO_MANIFEST_DIR"));
    let status = cmd.status().context("running cargo build")?;
    if !status.success() {
        bail!("cargo build -p camnode --bin camnode failed");
    }
    Ok(())
}

fn main() -> anyhow::Result<()> {
    let mut router = "miniupnpd".to_string();
    let mut secure = "off".to_string();
    let mut runs = 5usize;
    let mut kinds = vec![Kind::Graceful, Kind::Kill, Kind::Cut];
    let mut rules: Vec<String> = Vec::new();
    let mut wait_ms = (500u64, 500u64);
    let mut camnode_args = Vec::new();
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut v = || args.next().with_context(|| format!("{a} needs a value"));
        match a.as_str() {
            "--router" => router = v()?,
            "--secure" => secure = v()?,
            "--runs" => runs = v()?.parse()?,
            "--kinds" => {
                kinds = v()?
                    .split(',')
                    .map(|k| match k {
                        "graceful" => Ok(Kind::Graceful),
                        "kill" => Ok(Kind::Kill),
                        "cut" => Ok(Kind::Cut),
                        other => bail!("unknown kind {other}: graceful, kill, cut"),
                    })
                    .collect::<anyhow::Result<_>>()?
            }
            "--rules" => {
                rules = v()?
                    .split(',')
                    .map(|r| match r {
                        "random" | "port-order" | "node-value" => Ok(r.to_string()),
                        other => bail!("unknown rule {other}: random, port-order, node-value"),
                    })
                    .collect::<anyhow::Result<_>>()?
            }
            "--wait-ms" => {
                let w = v()?;
                wait_ms = match w.split_once('-') {
                    Some((a, b)) => (a.parse()?, b.parse()?),
                    None => (w.parse()?, w.parse()?),
                };
                if wait_ms.0 > wait_ms.1 {
                    bail!("--wait-ms {w}: MIN above MAX");
                }
            }
            "--" => camnode_args.extend(args.by_ref()),
            "-h" | "--help" => {
                println!(
                    "failover-bench [--router miniupnpd|ours] [--secure on|off] [--runs N] \
                     [--kinds graceful,kill,cut] [--rules random,port-order,node-value] \
                     [--wait-ms MIN[-MAX]] [-- CAMNODE_ARGS...]\n\n\
                     Measures how long http://<WAN>:8080/ is gone when the representative \
                     departs (SIGTERM, SIGKILL, link cut), from the internet side, with 3 \
                     camnodes in a fresh lab. --rules repeats the series for each succession \
                     rule (default: the camnodes' configured rule). --wait-ms: the steady \
                     state before each departure (default 500, a range picks at random). \
                     Needs root."
                );
                return Ok(());
            }
            other => bail!("unknown argument {other} (try --help)"),
        }
    }
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        bail!("needs root (network namespaces)");
    }
    build_camnode()?;
    let exe = std::env::current_exe()?;
    let camnode = exe.with_file_name("camnode");
    if !camnode.exists() {
        bail!(
            "{} is missing: cargo build -p camnode --bins",
            camnode.display()
        );
    }
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../netns-scripts/lab");

    // The timer settings, as the camnodes will use them.
    let config = run(Command::new(&camnode)
        .arg("--print-config")
        .args(&camnode_args))?;
    let settings: Vec<String> = config
        .lines()
        .filter(|l| {
            [
                "succession",
                "inquiry_interval_ms",
                "missed_inquiries",
                "presence_interval_ms",
                "collision_window_ms",
                "representative_lease_seconds",
                "lease_seconds",
            ]
            .iter()
            .any(|k| l.starts_with(&format!("{k} ")))
        })
        .map(str::to_string)
        .collect();
    let configured_rule = config
        .lines()
        .find_map(|l| l.strip_prefix("succession = "))
        .map(|r| r.trim().trim_matches('"').to_string())
        .unwrap_or_else(|| "random".into());

    let prefix = format!("fb{}", std::process::id() % 1_000_000);
    run(Command::new(&script)
        .args([
            "up", "--prefix", &prefix, "--router", &router, "--cams", "3",
        ])
        .args(["--addressing", "static", "--secure", &secure])
        .env("LAB_OWNER_PID", std::process::id().to_string()))?;
    let mut lab = Lab {
        prefix: prefix.clone(),
        script,
        camnode,
        wan: String::new(),
        cams: Vec::new(),
        camnode_args,
        rule_args: Vec::new(),
    };
    let wan = lab.sh(
        "rtr",
        "ip -4 -o addr show dev wan0 | awk '{print $4}' | cut -d/ -f1",
    )?;
    lab.wan = wan.trim().to_string();
    for i in 1..=3 {
        let node = format!("cam{i}");
        let addr = lab.sh(
            &node,
            "ip -4 -o addr show dev eth0 | awk '{print $4}' | cut -d/ -f1",
        )?;
        lab.cams.push(Cam {
            node,
            addr: addr.trim().to_string(),
            child: None,
        });
    }

    println!(
        "failover-bench: router {router}, secure mode {secure}, {runs} runs per kind, 3 nodes, \
         departure {}-{} ms after the steady state",
        wait_ms.0, wait_ms.1
    );
    let series: Vec<Option<String>> = if rules.is_empty() {
        vec![None]
    } else {
        rules.iter().cloned().map(Some).collect()
    };
    let mut results: Vec<(String, Kind, Vec<Duration>, usize)> = Vec::new();
    for rule in &series {
        // A fresh set of camnodes for each rule.
        for i in 0..lab.cams.len() {
            lab.signal(i, libc::SIGTERM);
        }
        lab.rule_args = rule
            .as_ref()
            .map(|r| vec!["--succession".to_string(), r.clone()])
            .unwrap_or_default();
        let rule_name = rule.clone().unwrap_or_else(|| configured_rule.clone());
        println!("succession rule {rule_name}:");
        for i in 0..lab.cams.len() {
            lab.start(i)?;
            std::thread::sleep(Duration::from_millis(700));
        }
        for &kind in &kinds {
            let mut times = Vec::new();
            let mut failed = 0;
            for run_no in 0..runs {
                let rep = lab.steady()?;
                let wait = rand::random_range(wait_ms.0..=wait_ms.1);
                std::thread::sleep(Duration::from_millis(wait));
                let old = lab.cams[rep].addr.clone();
                let route = lab.sh(&lab.cams[rep].node.clone(), "ip route show default")?;
                let start = Instant::now();
                match kind {
                    Kind::Graceful => lab.signal(rep, libc::SIGTERM),
                    Kind::Kill => lab.signal(rep, libc::SIGKILL),
                    Kind::Cut => {
                        lab.sh(&lab.cams[rep].node.clone(), "ip link set eth0 down")?;
                    }
                }
                let got = lab.wait_wan(start, Duration::from_secs(60), |v| {
                    v["role"] == "representative" && v["lan_addr"] != old.as_str()
                });
                match got {
                    Some((t, v)) => {
                        let new = lab
                            .rep_index(&v)
                            .map_or("?".into(), |i| lab.cams[i].node.clone());
                        println!(
                            "  {} run {}: {} -> {new} in {:.0} ms",
                            kind.name(),
                            run_no + 1,
                            lab.cams[rep].node,
                            t.as_secs_f64() * 1e3
                        );
                        times.push(t);
                    }
                    None => {
                        println!(
                            "  {} run {}: no new representative within 60 s",
                            kind.name(),
                            run_no + 1
                        );
                        failed += 1;
                    }
                }
                // Bring the departed node back as an ordinary node.
                if kind == Kind::Cut {
                    lab.signal(rep, libc::SIGKILL);
                    let node = lab.cams[rep].node.clone();
                    lab.sh(&node, "ip link set eth0 up")?;
                    if let Some(r) = route.lines().next().filter(|r| !r.trim().is_empty()) {
                        lab.sh(&node, &format!("ip route replace {r}"))?;
                    }
                }
                lab.start(rep)?;
            }
            results.push((rule_name.clone(), kind, times, failed));
        }
    }

    println!();
    println!("timer settings:");
    for s in &settings {
        println!("  {s}");
    }
    println!();
    println!(
        "{:<12} {:<22} {:>5} {:>11} {:>11} {:>7}",
        "rule", "departure", "runs", "median ms", "worst ms", "failed"
    );
    for (rule, kind, times, failed) in &results {
        let (median, worst) = median_worst(times);
        println!(
            "{:<12} {:<22} {:>5} {:>11} {:>11} {:>7}",
            rule,
            kind.name(),
            times.len() + failed,
            median,
            worst,
            failed
        );
    }
    println!();
    println!("| router | secure | rule | departure | runs | median | worst |");
    println!("|---|---|---|---|---|---|---|");
    for (rule, kind, times, failed) in &results {
        let (median, worst) = median_worst(times);
        let failed = if *failed > 0 {
            format!(" ({failed} failed)")
        } else {
            String::new()
        };
        println!(
            "| {router} | {secure} | {rule} | {} | {}{failed} | {median} ms | {worst} ms |",
            kind.name(),
            times.len()
        );
    }
    Ok(())
}
