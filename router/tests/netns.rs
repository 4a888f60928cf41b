//! End-to-end tests of the `router` binary in network namespaces of their own.
//!
//! They need root (CAP_NET_ADMIN, CAP_SYS_ADMIN for `ip netns`) and skip with a message
//! otherwise. Each test builds this topology under a unique prefix and deletes exactly those
//! namespaces when it ends, also when it fails ([`Lab`]'s Drop):
//!
//! ```text
//!  P-inet   g0 203.0.113.1/24, lo 198.51.100.10 (the internet host)
//!    |  veth
//!  P-rtr    wan0 203.0.113.2/24   <-- router -->   lan0 192.168.1.1/24
//!    |  veth
//!  P-lan    eth0 192.168.1.100/24, default via 192.168.1.1
//! ```

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::thread::sleep;
use std::time::{Duration, Instant};

const ROUTER: &str = env!("CARGO_BIN_EXE_router");
const INET: &str = "198.51.100.10";
const WAN: &str = "203.0.113.2";
const LAN_HOST: &str = "192.168.1.100";

fn can_run() -> bool {
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
struct Lab {
    prefix: String,
    namespaces: Vec<String>,
    children: Vec<Child>,
    dir: PathBuf,
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

fn output(ns: &str, args: &[&str]) -> Output {
    Command::new("ip")
        .args(["netns", "exec", ns])
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run ip netns exec")
}

/// Runs a command in `ns` and returns stdout; panics with stderr on failure.
fn ok(ns: &str, args: &[&str]) -> String {
    let o = output(ns, args);
    assert!(
        o.status.success(),
        "in {ns}: {args:?} failed: {}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn host(args: &[&str]) {
    let o = Command::new("ip").args(args).output().unwrap();
    assert!(
        o.status.success(),
        "ip {args:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
}

impl Lab {
    fn new() -> Lab {
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

    fn ns(&self, node: &str) -> String {
        format!("{}-{node}", self.prefix)
    }

    fn spawn(&mut self, node: &str, args: &[&str]) {
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
    fn start_router(&self, extra: &[&str]) -> Child {
        let log = std::fs::File::create(self.dir.join("router.log")).unwrap();
        Command::new("ip")
            .args([
                "netns",
                "exec",
                &self.ns("rtr"),
                ROUTER,
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

    fn router_log(&self) -> String {
        std::fs::read_to_string(self.dir.join("router.log")).unwrap_or_default()
    }

    /// The namespace state the router must leave as it found it.
    fn routing_state(&self) -> String {
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
    fn wait_ready(&self, router: &mut Child) {
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

fn sigterm_and_wait(child: &mut Child) -> std::process::ExitStatus {
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
fn retry(ns: &str, args: &[&str]) -> Output {
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

fn udp_echo_server(addr: &str, port: u16) -> String {
    format!(
        "import socket\ns=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)\n\
         s.bind(('{addr}',{port}))\nwhile True:\n d,a=s.recvfrom(2048)\n s.sendto(b'echo:'+d,a)\n"
    )
}

fn udp_client(addr: &str, port: u16, msg: &str) -> String {
    format!(
        "import socket\ns=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)\ns.settimeout(1)\n\
         s.sendto(b'{msg}',('{addr}',{port}))\nprint(s.recvfrom(2048)[0].decode())\n"
    )
}

fn metric(text: &str, name: &str) -> u64 {
    text.lines()
        .find(|l| l.starts_with(name) && l[name.len()..].starts_with(' '))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no metric {name} in\n{text}"))
}

#[test]
fn nat_end_to_end_and_clean_teardown() {
    if !can_run() {
        return;
    }
    let mut lab = Lab::new();
    let (inet, lan, rtr) = (lab.ns("inet"), lab.ns("lan"), lab.ns("rtr"));
    let before = lab.routing_state();

    // Servers: a file on the internet host, a web server and a UDP echo on the LAN host.
    let www = lab.dir.join("www");
    std::fs::create_dir_all(&www).unwrap();
    let mut data = vec![0u8; 4 << 20];
    std::fs::File::open("/dev/urandom")
        .unwrap()
        .read_exact(&mut data)
        .unwrap();
    std::fs::write(www.join("big.bin"), &data).unwrap();
    std::fs::write(www.join("hello.txt"), "hello from the LAN\n").unwrap();
    let www_s = www.to_str().unwrap().to_string();
    lab.spawn(
        "inet",
        &[
            "python3",
            "-m",
            "http.server",
            "8000",
            "--bind",
            INET,
            "--directory",
            &www_s,
        ],
    );
    lab.spawn("inet", &["python3", "-c", &udp_echo_server(INET, 7000)]);
    lab.spawn(
        "lan",
        &[
            "python3",
            "-m",
            "http.server",
            "8080",
            "--bind",
            LAN_HOST,
            "--directory",
            &www_s,
        ],
    );
    lab.spawn("lan", &["python3", "-c", &udp_echo_server(LAN_HOST, 5000)]);

    let wan_pcap = lab.dir.join("wan.pcap");
    let lan_pcap = lab.dir.join("lan.pcap");
    let mut router = lab.start_router(&[
        "--forward",
        "tcp:8080=192.168.1.100:8080",
        "--forward",
        "udp:5000=192.168.1.100",
        "--pcap-wan",
        wan_pcap.to_str().unwrap(),
        "--pcap-lan",
        lan_pcap.to_str().unwrap(),
        "--seed",
        "1",
        "--log-level",
        "debug",
    ]);
    lab.wait_ready(&mut router);
    let during = ok(&rtr, &["ip", "rule", "show"]);
    assert!(during.contains("lookup 100"), "{during}");

    // Ping through the NAT.
    let o = retry(
        &lan,
        &["ping", "-n", "-c", "3", "-i", "0.2", "-W", "2", INET],
    );
    assert!(
        o.status.success(),
        "ping: {}\n{}",
        String::from_utf8_lossy(&o.stdout),
        lab.router_log()
    );

    // A 4 MiB download, checksum compared.
    let got = lab.dir.join("got.bin");
    let url = format!("http://{INET}:8000/big.bin");
    let o = retry(
        &lan,
        &[
            "curl",
            "-sSf",
            "-m",
            "30",
            "-o",
            got.to_str().unwrap(),
            &url,
        ],
    );
    assert!(
        o.status.success(),
        "download: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    let sums = ok(
        &lan,
        &[
            "sha256sum",
            www.join("big.bin").to_str().unwrap(),
            got.to_str().unwrap(),
        ],
    );
    let sums: Vec<&str> = sums.lines().map(|l| l.split(' ').next().unwrap()).collect();
    assert_eq!(sums[0], sums[1], "downloaded file differs");

    // UDP out and the reply back in.
    let o = retry(&lan, &["python3", "-c", &udp_client(INET, 7000, "out")]);
    assert_eq!(String::from_utf8_lossy(&o.stdout).trim(), "echo:out");

    // Traceroute: the router is exactly one hop (it must not appear twice though the kernel
    // forwards each packet twice).
    let trace = ok(
        &lan,
        &["traceroute", "-n", "-q", "1", "-w", "2", "-m", "5", INET],
    );
    let hops: Vec<&str> = trace.lines().skip(1).collect();
    assert_eq!(hops.len(), 2, "traceroute:\n{trace}");
    assert!(hops[0].contains("192.168.1.1 "), "{trace}");
    assert!(hops[1].contains(INET), "{trace}");

    // Static forwards from the internet: TCP and UDP.
    let o = retry(
        &inet,
        &[
            "curl",
            "-sSf",
            "-m",
            "5",
            &format!("http://{WAN}:8080/hello.txt"),
        ],
    );
    assert_eq!(String::from_utf8_lossy(&o.stdout), "hello from the LAN\n");
    let o = retry(&inet, &["python3", "-c", &udp_client(WAN, 5000, "in")]);
    assert_eq!(String::from_utf8_lossy(&o.stdout).trim(), "echo:in");

    // Hairpin: the LAN host reaches its own forward through the WAN address.
    let o = retry(
        &lan,
        &[
            "curl",
            "-sSf",
            "-m",
            "5",
            &format!("http://{WAN}:8080/hello.txt"),
        ],
    );
    assert_eq!(String::from_utf8_lossy(&o.stdout), "hello from the LAN\n");

    // The control API is not reachable from the WAN, neither on the LAN address nor the WAN's.
    for url in [
        "http://192.168.1.1/api/status",
        &format!("http://{WAN}/api/status"),
    ] {
        let o = output(&inet, &["curl", "-sS", "-m", "2", url]);
        assert!(!o.status.success(), "{url} answered the internet");
    }

    // Metrics from the LAN.
    let m = ok(&lan, &["curl", "-sSf", "http://192.168.1.1/metrics"]);
    assert!(
        metric(&m, "router_packets_total{direction=\"out\"}") > 0,
        "{m}"
    );
    assert!(
        metric(&m, "router_packets_total{direction=\"in\"}") > 0,
        "{m}"
    );
    assert!(
        metric(&m, "router_bytes_total{direction=\"in\"}") > 4 << 20,
        "{m}"
    );
    assert!(metric(&m, "router_sessions_created_total") > 0, "{m}");
    assert!(
        metric(&m, "router_packets_total{direction=\"hairpin\"}") > 0,
        "{m}"
    );
    let status = ok(&lan, &["curl", "-sSf", "http://192.168.1.1/api/status"]);
    assert!(status.contains("\"preset\": \"home\""), "{status}");
    let sessions = ok(&lan, &["curl", "-sSf", "http://192.168.1.1/api/sessions"]);
    assert!(sessions.contains(LAN_HOST), "{sessions}");

    // Runtime control: a new WAN address (the ISP reassigns it); traffic still flows and the
    // rules follow.
    let o = ok(
        &lan,
        &[
            "curl",
            "-sSf",
            "-d",
            "203.0.113.7/24",
            "http://192.168.1.1/api/wan",
        ],
    );
    assert!(o.contains("203.0.113.7"), "{o}");
    let rules = ok(&rtr, &["ip", "rule", "show"]);
    assert!(
        rules.contains("203.0.113.7") && !rules.contains("203.0.113.2 "),
        "{rules}"
    );
    let routes = ok(&rtr, &["ip", "route", "show", "default"]);
    assert!(
        routes.contains("via 203.0.113.1"),
        "default route lost: {routes}"
    );
    let o = retry(&lan, &["python3", "-c", &udp_client(INET, 7000, "again")]);
    assert_eq!(
        String::from_utf8_lossy(&o.stdout).trim(),
        "echo:again",
        "{}",
        lab.router_log()
    );
    let o = retry(
        &inet,
        &[
            "curl",
            "-sSf",
            "-m",
            "5",
            "http://203.0.113.7:8080/hello.txt",
        ],
    );
    assert!(o.status.success(), "forward after WAN change");

    // A change from outside, the way a DHCP client script does it: the kernel's address
    // notice makes the router follow at once (its periodic check is 30 s).
    ok(&rtr, &["ip", "addr", "flush", "dev", "wan0"]);
    ok(
        &rtr,
        &["ip", "addr", "add", "203.0.113.9/24", "dev", "wan0"],
    );
    ok(
        &rtr,
        &["ip", "route", "replace", "default", "via", "203.0.113.1"],
    );
    let deadline = Instant::now() + Duration::from_secs(3);
    while !ok(&rtr, &["ip", "rule", "show"]).contains("203.0.113.9") {
        assert!(
            Instant::now() < deadline,
            "external WAN change not followed:\n{}",
            lab.router_log()
        );
        sleep(Duration::from_millis(100));
    }
    let status = ok(&lan, &["curl", "-sSf", "http://192.168.1.1/api/status"]);
    assert!(status.contains("\"address\": \"203.0.113.9\""), "{status}");
    let o = retry(&lan, &["python3", "-c", &udp_client(INET, 7000, "third")]);
    assert_eq!(String::from_utf8_lossy(&o.stdout).trim(), "echo:third");

    // SIGTERM: clean exit, namespace as before (except the WAN address we changed above).
    let exit = sigterm_and_wait(&mut router);
    let log = lab.router_log();
    assert!(exit.success(), "router exit {exit}:\n{log}");
    assert!(log.contains("teardown"), "{log}");
    let after = lab.routing_state().replace("203.0.113.9", "203.0.113.2");
    assert_eq!(before, after, "namespace not restored; log:\n{log}");

    // Both captures are readable and saw traffic on the right side.
    if Command::new("tshark").arg("-v").output().is_ok() {
        let wan_view = icmp_sources(&wan_pcap);
        assert!(
            wan_view.contains(WAN) && !wan_view.contains(LAN_HOST),
            "{wan_view}"
        );
        let lan_view = icmp_sources(&lan_pcap);
        assert!(
            lan_view.contains(LAN_HOST) && !lan_view.contains(WAN),
            "{lan_view}"
        );
        // Every TCP/UDP checksum in the files checks out in Wireshark's eyes, those of the
        // offloaded (partial-checksum) packets included.
        for pcap in [&wan_pcap, &lan_pcap] {
            let (good, bad) = checksum_verdicts(pcap);
            assert!(
                good > 100 && bad == 0,
                "{}: {good} good, {bad} bad",
                pcap.display()
            );
        }
    }
}

/// How many TCP/UDP packets in a pcap file tshark finds with a good and a bad checksum
/// (validation on).
fn checksum_verdicts(pcap: &std::path::Path) -> (usize, usize) {
    let count = |filter: &str| {
        let out = Command::new("tshark")
            .args([
                "-n",
                "-o",
                "tcp.check_checksum:TRUE",
                "-o",
                "udp.check_checksum:TRUE",
            ])
            .arg("-r")
            .arg(pcap)
            .args(["-Y", filter])
            .output()
            .expect("tshark runs");
        String::from_utf8_lossy(&out.stdout).lines().count()
    };
    // Headers quoted in ICMP errors are left out: they carry the checksum as the probe
    // arrived at the far end, and veth never completes a partial one (no wire, no NIC).
    (
        count("(tcp.checksum.status == 1 || udp.checksum.status == 1) && !icmp"),
        count("(tcp.checksum.status == 0 || udp.checksum.status == 0) && !icmp"),
    )
}

#[test]
fn restart_after_kill_9_recovers_by_itself_and_a_second_router_is_refused() {
    if !can_run() {
        return;
    }
    let mut lab = Lab::new();
    let rtr = lab.ns("rtr");
    // Values the router changes, so that a restore shows.
    for (key, value) in [("ip_forward", "0"), ("conf/all/rp_filter", "2")] {
        ok(
            &rtr,
            &[
                "sysctl",
                "-qw",
                &format!("net.ipv4.{}={value}", key.replace('/', ".")),
            ],
        );
    }
    let before = lab.routing_state();
    lab.spawn("inet", &["python3", "-c", &udp_echo_server(INET, 7000)]);

    // A crash: SIGKILL leaves the rules behind (the TUNs go with the process).
    let mut router = lab.start_router(&[]);
    lab.wait_ready(&mut router);
    router.kill().unwrap();
    router.wait().unwrap();
    assert!(ok(&rtr, &["ip", "rule", "show"]).contains("lookup 100"));

    // Started again as a supervisor would, without --cleanup-stale: it sees that the owner of
    // the rules is dead, says what it removes, comes up and forwards.
    let mut again = lab.start_router(&[]);
    lab.wait_ready(&mut again);
    let log = lab.router_log();
    assert!(log.contains("is gone without its teardown"), "{log}");
    assert!(log.contains("cleanup: ip rule del pref"), "{log}");
    assert!(log.contains("cleanup: restore"), "{log}");
    let o = retry(
        &lab.ns("lan"),
        &["python3", "-c", &udp_client(INET, 7000, "after")],
    );
    assert_eq!(
        String::from_utf8_lossy(&o.stdout).trim(),
        "echo:after",
        "{}",
        lab.router_log()
    );

    // A second router while this one runs is refused, and leaves the first one alone.
    let second_log = lab.dir.join("second.log");
    let second = Command::new("ip")
        .args([
            "netns", "exec", &rtr, ROUTER, "--wan", "wan0", "--lan", "lan0",
        ])
        .args(["--listen", "192.168.1.1:8081", "--cleanup-stale"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&second_log).unwrap())
        .status()
        .unwrap();
    let second_log = std::fs::read_to_string(&second_log).unwrap();
    assert!(!second.success(), "a second router started:\n{second_log}");
    assert!(
        second_log.contains(&format!("another router (pid {})", again.id())),
        "{second_log}"
    );
    let o = retry(
        &lab.ns("lan"),
        &["python3", "-c", &udp_client(INET, 7000, "still")],
    );
    assert_eq!(String::from_utf8_lossy(&o.stdout).trim(), "echo:still");

    let exit = sigterm_and_wait(&mut again);
    assert!(exit.success(), "{}", lab.router_log());
    // Rules, routes and the sysctls the crashed run had changed are all back.
    assert_eq!(before, lab.routing_state(), "{}", lab.router_log());
}

#[test]
fn config_errors_name_the_field() {
    let dir = std::env::temp_dir().join(format!("router-cfg-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("bad.toml");
    std::fs::write(
        &file,
        "wan = \"wan0\"\nlan = \"lan0\"\n[nat.timeouts]\nudp = -5\n",
    )
    .unwrap();
    let o = Command::new(ROUTER)
        .args(["--config", file.to_str().unwrap(), "--print-config"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(
        err.contains("config field \"nat.timeouts.udp\": expected seconds > 0"),
        "{err}"
    );
    std::fs::write(
        &file,
        "wan = \"wan0\"\nlan = \"lan0\"\n[nat]\nfilterin = \"x\"\n",
    )
    .unwrap();
    let o = Command::new(ROUTER)
        .args(["--config", file.to_str().unwrap(), "--print-config"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("filterin"), "{err}");
    let o = Command::new(ROUTER).arg("--help").output().unwrap();
    let help = String::from_utf8_lossy(&o.stdout);
    for opt in [
        "--wan",
        "--lan",
        "--preset",
        "--forward",
        "--pcap-lan",
        "--cleanup-stale",
    ] {
        assert!(help.contains(opt), "--help lacks {opt}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// The source addresses of the ICMP packets in a pcap file, as tshark reads them.
fn icmp_sources(pcap: &std::path::Path) -> String {
    let out = Command::new("tshark")
        .args(["-n", "-r"])
        .arg(pcap)
        .args(["-Y", "icmp", "-T", "fields", "-e", "ip.src"])
        .output()
        .expect("tshark runs");
    String::from_utf8_lossy(&out.stdout).into_owned()
}
