//! Harness for the end-to-end tests: a [`Lab`] is one `netns-scripts/lab` instance with a unique
//! prefix, driven through the same script a user runs. Dropping it tears the lab down (also when
//! the test panics), after killing every process the test started in it.
//!
//! The tests need root (network namespaces). Without root, [`require_root`] fails the test with
//! instructions, unless `HOMENET_SKIP_ROOT_TESTS=1` is set, in which case it says it skipped.

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

/// The repository root (the workspace), where `netns-scripts/lab` lives.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests crate has a parent")
        .to_path_buf()
}

/// The lab script.
pub fn lab_script() -> PathBuf {
    repo_root().join("netns-scripts/lab")
}

/// True when the tests may run: we are root. Otherwise panics with what to do, or returns false
/// (after saying so) when `HOMENET_SKIP_ROOT_TESTS=1`.
/// The python interpreter itself: `python3` may be a launcher (pyenv's shim costs 0.2 s a run,
/// and the tests run python many times).
pub fn python() -> &'static str {
    static PYTHON: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    PYTHON.get_or_init(|| {
        Command::new("python3")
            .args(["-c", "import sys; print(sys.executable)"])
            .output()
            .ok()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
            .filter(|p| !p.is_empty())
            .unwrap_or_else(|| "python3".to_string())
    })
}

pub fn require_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    let euid = unsafe { libc::geteuid() };
    if euid == 0 {
        return true;
    }
    if std::env::var("HOMENET_SKIP_ROOT_TESTS").as_deref() == Ok("1") {
        eprintln!(
            "SKIPPED: this test needs root (network namespaces); HOMENET_SKIP_ROOT_TESTS=1 is set"
        );
        return false;
    }
    panic!(
        "this test needs root to create network namespaces: run the README's test command as root \
         (or set HOMENET_SKIP_ROOT_TESTS=1 to skip the namespace tests)"
    );
}

/// Which router the lab runs (`lab up --router`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RouterKind {
    Ours,
    Kernel,
    Miniupnpd,
}

impl RouterKind {
    pub fn name(self) -> &'static str {
        match self {
            RouterKind::Ours => "ours",
            RouterKind::Kernel => "kernel",
            RouterKind::Miniupnpd => "miniupnpd",
        }
    }
}

/// Options of `lab up`.
#[derive(Clone, Debug)]
pub struct LabOptions {
    pub router: RouterKind,
    pub cams: u32,
    pub addressing: Option<&'static str>,
    pub wan: Option<String>,
    pub forwards: Vec<String>,
    pub extra: Vec<String>,
    /// Extra options for our router (the lab's `ROUTER_ARGS`).
    pub router_args: Option<String>,
    /// Environment for the lab script (`RELAY_BIN`, `RELAY_ARGS`, ...).
    pub env: Vec<(String, String)>,
}

impl LabOptions {
    pub fn new(router: RouterKind) -> Self {
        LabOptions {
            router,
            cams: 1,
            addressing: None,
            wan: None,
            forwards: Vec::new(),
            extra: Vec::new(),
            router_args: None,
            env: Vec::new(),
        }
    }
    pub fn cams(mut self, n: u32) -> Self {
        self.cams = n;
        self
    }
    pub fn addressing(mut self, mode: &'static str) -> Self {
        self.addressing = Some(mode);
        self
    }
    pub fn forward(mut self, spec: &str) -> Self {
        self.forwards.push(spec.to_string());
        self
    }
    pub fn arg(mut self, arg: &str) -> Self {
        self.extra.push(arg.to_string());
        self
    }
    /// `--carrier-nat`: the homes sit behind a carrier-grade NAT (`P-isp`), WAN in 100.64/10.
    pub fn carrier_nat(self) -> Self {
        self.arg("--carrier-nat")
    }
    /// `--upnp off`: the home routers offer no IGD, NAT-PMP or PCP.
    pub fn upnp_off(self) -> Self {
        self.arg("--upnp").arg("off")
    }
    /// `--homes N`: home H > 1 has nodes `hH-rtr`, `hH-cam1`, ..., `hH-viewer`.
    pub fn homes(self, n: u32) -> Self {
        self.arg("--homes").arg(&n.to_string())
    }
    /// `--relays N`: relay servers at 198.51.100.20 and up (`P-relay1`, ...).
    pub fn relays(self, n: u32) -> Self {
        self.arg("--relays").arg(&n.to_string())
    }
    /// An environment variable for the lab script.
    pub fn env(mut self, key: &str, value: &str) -> Self {
        self.env.push((key.to_string(), value.to_string()));
        self
    }
    /// Options for `--router ours`, split at spaces (`ROUTER_ARGS`).
    pub fn router_args(mut self, args: &str) -> Self {
        self.router_args = Some(args.to_string());
        self
    }
}

static NEXT_LAB: AtomicU32 = AtomicU32::new(0);

/// A unique lab prefix for this test process: `t` + pid + a counter (the lab allows 10 chars).
pub fn unique_prefix() -> String {
    let n = NEXT_LAB.fetch_add(1, Ordering::Relaxed);
    format!(
        "t{}{}",
        std::process::id() % 1_000_000,
        char::from(b'a' + (n % 26) as u8)
    )
}

/// A running lab. Dropping it kills the processes started through [`Lab::spawn`] and runs
/// `lab down`.
#[derive(Debug)]
pub struct Lab {
    pub prefix: String,
    pub router: RouterKind,
    children: Mutex<Vec<Child>>,
}

impl Lab {
    /// `lab up` with a fresh prefix. Stale test labs whose owning process has died are removed
    /// first (`lab gc`), so a killed test run does not leave namespaces for the next one.
    pub fn up(opts: &LabOptions) -> Result<Lab> {
        let _ = Command::new(lab_script())
            .arg("gc")
            .stdout(Stdio::null())
            .status();
        let prefix = unique_prefix();
        let mut cmd = Command::new(lab_script());
        cmd.args(["up", "--prefix", &prefix, "--router", opts.router.name()]);
        cmd.args(["--cams", &opts.cams.to_string()]);
        if let Some(a) = opts.addressing {
            cmd.args(["--addressing", a]);
        }
        if let Some(w) = &opts.wan {
            cmd.args(["--wan", w]);
        }
        for f in &opts.forwards {
            cmd.args(["--forward", f]);
        }
        cmd.args(&opts.extra);
        if let Some(a) = &opts.router_args {
            cmd.env("ROUTER_ARGS", a);
        }
        cmd.envs(opts.env.iter().map(|(k, v)| (k, v)));
        cmd.env("LAB_OWNER_PID", std::process::id().to_string());
        let out = cmd.output().context("running netns-scripts/lab up")?;
        // From here on the lab exists (or was cleaned by the script on failure): own it.
        let lab = Lab {
            prefix,
            router: opts.router,
            children: Mutex::new(Vec::new()),
        };
        if !out.status.success() {
            bail!(
                "lab up failed ({}):\n{}{}",
                out.status,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(lab)
    }

    /// `lab demo --no-wait` with a fresh prefix: our router, `cams` camera nodes, and the
    /// 127.0.0.1 proxies into the internet (`proxy_port`) and LAN (`proxy_port + 1`) views.
    pub fn demo(cams: u32, proxy_port: u16) -> Result<Lab> {
        Lab::demo_with(cams, proxy_port, &[], &[])
    }

    /// [`Lab::demo`] with more `lab demo` options (`--carrier-nat`, ...) and environment
    /// (`RELAY_BIN`, `CAMNODE_BIN`).
    pub fn demo_with(
        cams: u32,
        proxy_port: u16,
        extra: &[&str],
        env: &[(&str, &str)],
    ) -> Result<Lab> {
        let _ = Command::new(lab_script())
            .arg("gc")
            .stdout(Stdio::null())
            .status();
        let prefix = unique_prefix();
        let out = Command::new(lab_script())
            .args([
                "demo",
                "--prefix",
                &prefix,
                "--no-wait",
                "--cams",
                &cams.to_string(),
            ])
            .args([
                "--proxy-port",
                &proxy_port.to_string(),
                "--lan-proxy-port",
                &(proxy_port + 1).to_string(),
            ])
            .args(extra)
            .envs(env.iter().copied())
            .env("LAB_OWNER_PID", std::process::id().to_string())
            .output()
            .context("running netns-scripts/lab demo")?;
        let lab = Lab {
            prefix,
            router: RouterKind::Ours,
            children: Mutex::new(Vec::new()),
        };
        if !out.status.success() {
            bail!(
                "lab demo failed ({}):\n{}{}",
                out.status,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(lab)
    }

    /// The namespace of a node.
    pub fn ns(&self, node: &str) -> String {
        format!("{}-{}", self.prefix, node)
    }

    /// Run a command in a node and wait for it (killed after `timeout`).
    pub fn exec_timeout(&self, node: &str, timeout: Duration, args: &[&str]) -> Output {
        let secs = format!("{}", timeout.as_secs_f64());
        Command::new("ip")
            .args(["netns", "exec", &self.ns(node), "timeout", "-k", "2", &secs])
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("ip netns exec runs")
    }

    /// Run a command in a node (30 s limit).
    pub fn exec(&self, node: &str, args: &[&str]) -> Output {
        self.exec_timeout(node, Duration::from_secs(30), args)
    }

    /// Run a shell script in a node; panics with its output if it fails.
    pub fn sh(&self, node: &str, script: &str) -> String {
        let out = self.exec(node, &["bash", "-c", script]);
        assert!(
            out.status.success(),
            "in {node}: `{script}` failed ({}):\nstdout: {}\nstderr: {}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Run a shell script in a node and return its output and success, without asserting.
    pub fn try_sh(&self, node: &str, script: &str) -> (bool, String) {
        let out = self.exec(node, &["bash", "-c", script]);
        let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
        text.push_str(&String::from_utf8_lossy(&out.stderr));
        (out.status.success(), text)
    }

    /// Start a long-running process in a node; it is killed when the lab is dropped.
    pub fn spawn(&self, node: &str, args: &[&str]) -> u32 {
        self.spawn_with(node, args, Stdio::null, Stdio::null)
    }

    /// Like [`Lab::spawn`], with stdout and stderr appended to `log` (put it in
    /// [`Lab::state_dir`], which `down` removes).
    pub fn spawn_logged(&self, node: &str, args: &[&str], log: &Path) -> u32 {
        let file = || {
            Stdio::from(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(log)
                    .unwrap_or_else(|e| panic!("{}: {e}", log.display())),
            )
        };
        self.spawn_with(node, args, file, file)
    }

    fn spawn_with(
        &self,
        node: &str,
        args: &[&str],
        stdout: impl FnOnce() -> Stdio,
        stderr: impl FnOnce() -> Stdio,
    ) -> u32 {
        let child = Command::new("ip")
            .args(["netns", "exec", &self.ns(node)])
            .args(args)
            .stdin(Stdio::null())
            .stdout(stdout())
            .stderr(stderr())
            .spawn()
            .expect("ip netns exec spawns");
        let pid = child.id();
        self.children
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(child);
        pid
    }

    /// Start an HTTP file server (python3 http.server) in a node, serving `dir` on `addr:port`,
    /// and wait until it accepts connections.
    pub fn http_server(&self, node: &str, bind: &str, port: u16, dir: &str) {
        self.spawn(
            node,
            &[
                "python3",
                "-m",
                "http.server",
                &port.to_string(),
                "--bind",
                bind,
                "--directory",
                dir,
            ],
        );
        self.wait_tcp(node, bind, port);
    }

    /// Wait (30 s at most: a loaded CI machine starts python slowly) until `addr:port` accepts
    /// TCP connections from `node`.
    pub fn wait_tcp(&self, node: &str, addr: &str, port: u16) {
        let probe = format!("exec 3<>/dev/tcp/{addr}/{port}");
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if self.try_sh(node, &probe).0 {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("{addr}:{port} never accepted connections from {node}");
    }

    /// The IPv4 address of a LAN node's eth0 (or the router's LAN address for `rtr`, `h2-rtr`).
    pub fn addr(&self, node: &str) -> Ipv4Addr {
        let dev = if node == "rtr" || node.ends_with("-rtr") {
            "lan0"
        } else {
            "eth0"
        };
        let out = self.sh(
            node,
            &format!("ip -4 -o addr show dev {dev} | awk '{{print $4}}' | cut -d/ -f1"),
        );
        out.trim()
            .parse()
            .unwrap_or_else(|_| panic!("{node} has no IPv4 address: {out:?}"))
    }

    /// The router's WAN address.
    pub fn wan_addr(&self) -> Ipv4Addr {
        let out = self.sh(
            "rtr",
            "ip -4 -o addr show dev wan0 | awk '{print $4}' | cut -d/ -f1",
        );
        out.trim()
            .parse()
            .unwrap_or_else(|_| panic!("router has no WAN address: {out:?}"))
    }

    /// The lab's state directory (`/run/homenet-lab/P`): logs, configs, the relays' CA.
    pub fn state_dir(&self) -> PathBuf {
        PathBuf::from(format!("/run/homenet-lab/{}", self.prefix))
    }

    /// The address of relay `i` (1-based): 198.51.100.(19+i).
    pub fn relay_addr(i: u32) -> Ipv4Addr {
        Ipv4Addr::new(198, 51, 100, 19 + i as u8)
    }

    /// The options a camera in `node` starts with (`lab camnode-args`): its state directory with
    /// the identity the lab provisioned, and with relays `--relay`, `--relay-secret`,
    /// `--relay-ca`.
    pub fn camnode_args(&self, node: &str) -> Vec<String> {
        let out = Command::new(lab_script())
            .args(["camnode-args", "--prefix", &self.prefix, node])
            .output()
            .expect("lab camnode-args");
        assert!(
            out.status.success(),
            "lab camnode-args {node}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(str::to_string)
            .collect()
    }

    /// The pid of our router process (`--router ours`), as the lab recorded it.
    pub fn router_pid(&self) -> Option<u32> {
        let path = format!("/run/homenet-lab/{}/router.pid", self.prefix);
        std::fs::read_to_string(path).ok()?.trim().parse().ok()
    }

    /// The lab's own `status` output.
    pub fn status(&self) -> String {
        let out = Command::new(lab_script())
            .args(["status", "--prefix", &self.prefix])
            .output()
            .expect("lab status");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Tear down now (also what Drop does).
    pub fn down(&self) {
        for mut c in self
            .children
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .drain(..)
        {
            let _ = c.kill();
            let _ = c.wait();
        }
        let _ = Command::new(lab_script())
            .args(["down", "--prefix", &self.prefix])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        self.down();
    }
}

/// Headless Chromium through the HTTP proxy on 127.0.0.1:`proxy` (a demo's view), with the flags
/// this machine needs (no sandbox as root, no background networking: no internet here); a fresh
/// profile under `profile` per call. Returns its stdout (the DOM with `--dump-dom`).
pub fn chromium(proxy: u16, profile: &str, args: &[&str]) -> String {
    static RUN: AtomicU32 = AtomicU32::new(0);
    let profile = format!("{profile}/{}", RUN.fetch_add(1, Ordering::Relaxed));
    let out = Command::new("chromium")
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--window-size=1100,900",
            &format!("--user-data-dir={profile}"),
            &format!("--proxy-server=http://127.0.0.1:{proxy}"),
            // Lets the page's script run (it polls status.json to fill in the camera list).
            "--virtual-time-budget=4000",
        ])
        .args(args)
        .output()
        .expect("chromium runs (netns-scripts/lab deps installs it)");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The namespaces that exist now whose name starts with `prefix-`.
pub fn namespaces_with_prefix(prefix: &str) -> Vec<String> {
    let out = Command::new("ip")
        .args(["netns", "list"])
        .output()
        .expect("ip netns list");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|n| n.starts_with(&format!("{prefix}-")))
        .map(str::to_string)
        .collect()
}
