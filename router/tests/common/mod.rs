//! The namespace harness shared by the router's end-to-end tests (`netns.rs`,
//! `hostile_lab.rs`): three namespaces under a unique prefix, removed on drop.
//!
//! ```text
//!  P-inet   g0 203.0.113.1/24, lo 198.51.100.10 (the internet host)
//!    |  veth
//!  P-rtr    wan0 203.0.113.2/24   <-- router -->   lan0 192.168.1.1/24
//!    |  veth
//!  P-lan    eth0 192.168.1.100/24, default via 192.168.1.1
//! ```

// Each test binary uses part of it.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::thread::sleep;
use std::time::{Duration, Instant};

/// The router binary under test: this build's, or `HOMENET_ROUTER_BIN` (to run the same
/// tests against another build, e.g. to see a regression test fail on the old code).
pub fn router_bin() -> String {
    std::env::var("HOMENET_ROUTER_BIN").unwrap_or_else(|_| env!("CARGO_BIN_EXE_router").into())
}
pub const INET: &str = "198.51.100.10";
pub const WAN: &str = "203.0.113.2";
pub const LAN_HOST: &str = "192.168.1.100";

pub fn can_run() -> bool {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("SKIP: these tests need root (network namespaces, TUN devices)");
        return false;
    }
    for tool in ["ip", "curl", "python3", "ping", "traceroute", "sha256sum"] {
        let found = Command::new("sh")
            .args(["-c", &format!("command -v {tool}")])
            .output()
            .is_ok_and(|o| o.status.success());
        if !found {
            eprintln!("SKIP: {tool} is not installed");
            return false;
        }
    }
    if !Path::new("/dev/net/tun").exists() {
        eprintln!("SKIP: /dev/net/tun is missing");
        return false;
    }
    true
}

/// Namespaces, background processes and a temp dir, all removed on drop.
pub struct Lab {
    pub prefix: String,
    pub namespaces: Vec<String>,
    pub children: Vec<Child>,
    pub dir: PathBuf,
}

impl Drop for Lab {
    fn drop(&mut self) {
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
        for ns in &self.namespaces {
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
            let _ = std::fs::remove_dir_all(Path::new("/etc/netns").join(ns));
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

pub fn output(ns: &str, args: &[&str]) -> Output {
    Command::new("ip")
        .args(["netns", "exec", ns])
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run ip netns exec")
}

/// Runs a command in `ns` and returns stdout; panics with stderr on failure.
pub fn ok(ns: &str, args: &[&str]) -> String {
    let o = output(ns, args);
    assert!(
        o.status.success(),
        "in {ns}: {args:?} failed: {}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn host(args: &[&str]) {
    let o = Command::new("ip").args(args).output().unwrap();
    assert!(
        o.status.success(),
        "ip {args:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
}

impl Lab {
    pub fn new() -> Lab {
        static N: AtomicU32 = AtomicU32::new(0);
        let prefix = format!(
            "rtt{}x{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        );
        let dir = std::env::temp_dir().join(format!("{prefix}-files"));
        std::fs::create_dir_all(&dir).unwrap();
        let mut lab = Lab {
            prefix: prefix.clone(),
            namespaces: Vec::new(),
            children: Vec::new(),
            dir,
        };
        for n in ["inet", "rtr", "lan"] {
            let ns = lab.ns(n);
            // A resolver that answers at once (DESIGN.md): python's http.server does a reverse
            // lookup at start and would otherwise wait seconds for the host's resolver.
            let etc = Path::new("/etc/netns").join(&ns);
            std::fs::create_dir_all(&etc).unwrap();
            std::fs::write(etc.join("resolv.conf"), "nameserver 127.0.0.1\n").unwrap();
            host(&["netns", "add", &ns]);
            lab.namespaces.push(ns.clone());
            host(&["-n", &ns, "link", "set", "lo", "up"]);
        }
        let (inet, rtr, lan) = (lab.ns("inet"), lab.ns("rtr"), lab.ns("lan"));
        // Both ends are created directly inside the namespaces: nothing in the host namespace.
        host(&[
            "link", "add", "wan0", "netns", &rtr, "type", "veth", "peer", "name", "g0", "netns",
            &inet,
        ]);
        host(&[
            "link", "add", "lan0", "netns", &rtr, "type", "veth", "peer", "name", "eth0", "netns",
            &lan,
        ]);
        for (ns, dev, addr) in [
            (&inet, "g0", "203.0.113.1/24"),
            (&inet, "lo", "198.51.100.10/32"),
            (&rtr, "wan0", "203.0.113.2/24"),
            (&rtr, "lan0", "192.168.1.1/24"),
            (&lan, "eth0", "192.168.1.100/24"),
        ] {
            host(&["-n", ns, "addr", "add", addr, "dev", dev]);
            host(&["-n", ns, "link", "set", dev, "up"]);
        }
        host(&["-n", &rtr, "route", "add", "default", "via", "203.0.113.1"]);
        host(&["-n", &lan, "route", "add", "default", "via", "192.168.1.1"]);
        // So that the internet could even try to reach the LAN directly (it must fail).
        host(&["-n", &inet, "route", "add", "192.168.1.0/24", "via", WAN]);
        lab
    }

    pub fn ns(&self, node: &str) -> String {
        format!("{}-{node}", self.prefix)
    }

    pub fn spawn(&mut self, node: &str, args: &[&str]) {
        let child = Command::new("ip")
            .args(["netns", "exec", &self.ns(node)])
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        self.children.push(child);
    }

    /// Starts the router in the router namespace; its log goes to `router.log` in the lab dir.
    pub fn start_router(&self, extra: &[&str]) -> Child {
        let log = std::fs::File::create(self.dir.join("router.log")).unwrap();
        Command::new("ip")
            .args([
                "netns",
                "exec",
                &self.ns("rtr"),
                &router_bin(),
                "--wan",
                "wan0",
                "--lan",
                "lan0",
            ])
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap()
    }

    pub fn router_log(&self) -> String {
        std::fs::read_to_string(self.dir.join("router.log")).unwrap_or_default()
    }

    /// The namespace state the router must leave as it found it.
    pub fn routing_state(&self) -> String {
        let rtr = self.ns("rtr");
        let mut s = ok(&rtr, &["ip", "-d", "rule", "show"]);
        s += &ok(&rtr, &["ip", "-4", "route", "show", "table", "all"]);
        for key in [
            "ip_forward",
            "conf/all/rp_filter",
            "conf/default/rp_filter",
            "conf/all/accept_local",
        ] {
            let path = format!("/proc/sys/net/ipv4/{key}");
            s += &format!("{key}={}", ok(&rtr, &["cat", &path]));
        }
        s += &ok(&rtr, &["ip", "-br", "link"]);
        s
    }

    /// Waits until the control API answers from the LAN host.
    pub fn wait_ready(&self, router: &mut Child) {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let o = output(
                &self.ns("lan"),
                &["curl", "-sf", "-m", "1", "http://192.168.1.1/api/status"],
            );
            if o.status.success() {
                return;
            }
            if let Some(status) = router.try_wait().unwrap() {
                panic!("router exited early ({status}):\n{}", self.router_log());
            }
            assert!(
                Instant::now() < deadline,
                "router not ready:\n{}",
                self.router_log()
            );
            sleep(Duration::from_millis(100));
        }
    }
}

pub fn sigterm_and_wait(child: &mut Child) -> std::process::ExitStatus {
    // SAFETY: kill(2) on the pid of our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        if let Some(s) = child.try_wait().unwrap() {
            return s;
        }
        assert!(
            Instant::now() < deadline,
            "router did not exit after SIGTERM"
        );
        sleep(Duration::from_millis(50));
    }
}

/// Retries a command a few times (servers starting up, ARP), returning the last output.
pub fn retry(ns: &str, args: &[&str]) -> Output {
    let mut last = output(ns, args);
    for _ in 0..50 {
        if last.status.success() {
            break;
        }
        sleep(Duration::from_millis(200));
        last = output(ns, args);
    }
    last
}

pub fn udp_echo_server(addr: &str, port: u16) -> String {
    format!(
        "import socket\ns=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)\n\
         s.bind(('{addr}',{port}))\nwhile True:\n d,a=s.recvfrom(2048)\n s.sendto(b'echo:'+d,a)\n"
    )
}

pub fn udp_client(addr: &str, port: u16, msg: &str) -> String {
    format!(
        "import socket\ns=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)\ns.settimeout(1)\n\
         s.sendto(b'{msg}',('{addr}',{port}))\nprint(s.recvfrom(2048)[0].decode())\n"
    )
}

pub fn metric(text: &str, name: &str) -> u64 {
    text.lines()
        .find(|l| l.starts_with(name) && l[name.len()..].starts_with(' '))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no metric {name} in\n{text}"))
}
