//! End-to-end tests of the `router` binary in network namespaces of their own.
//!
//! They need root (CAP_NET_ADMIN, CAP_SYS_ADMIN for `ip netns`) and skip with a message
//! otherwise. Each test builds this topology under a unique prefix (module `common`) and
//! deletes exactly those namespaces when it ends, also when it fails ([`Lab`]'s Drop):
//!
//! ```text
//!  P-inet   g0 203.0.113.1/24, lo 198.51.100.10 (the internet host)
//!    |  veth
//!  P-rtr    wan0 203.0.113.2/24   <-- router -->   lan0 192.168.1.1/24
//!    |  veth
//!  P-lan    eth0 192.168.1.100/24, default via 192.168.1.1
//! ```

mod common;

use std::io::Read;
use std::process::{Command, Stdio};
use std::thread::sleep;
use std::time::{Duration, Instant};

use common::*;

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
            "-H",
            "Content-Type: application/json",
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
            "netns",
            "exec",
            &rtr,
            &router_bin(),
            "--wan",
            "wan0",
            "--lan",
            "lan0",
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
    // (exit code, stderr) of `--print-config` with this file after the two interfaces.
    let check = |rest: &str| {
        std::fs::write(&file, format!("wan = \"wan0\"\nlan = \"lan0\"\n{rest}")).unwrap();
        let o = Command::new(router_bin())
            .args(["--config", file.to_str().unwrap(), "--print-config"])
            .output()
            .unwrap();
        (
            o.status.code(),
            String::from_utf8_lossy(&o.stderr).into_owned(),
        )
    };
    for (section, want) in [
        (
            "[nat.timeouts]\nudp = -5\n",
            "config field \"nat.timeouts.udp\": expected seconds > 0",
        ),
        ("[nat]\nfilterin = \"x\"\n", "filterin"),
        (
            "[nat.limits]\nmax_sessions = 0\n",
            "config field \"nat.limits.max_sessions\": 0 is out of range",
        ),
        (
            "[nat.wan_sources]\nallow = [\"127.0.0.0/16\"]\n",
            "config field \"nat.wan_sources.allow\": 127.0.0.0/16 overlaps 127.0.0.0/8",
        ),
        (
            "[nat.wan_sources]\nblock = [\"10.0.0.0/33\"]\n",
            "config field \"nat.wan_sources.block\": \"10.0.0.0/33\" is not an IPv4 prefix",
        ),
    ] {
        let (code, err) = check(section);
        assert_eq!(code, Some(2), "{err}");
        assert!(err.contains(want), "{err}");
    }
    let o = Command::new(router_bin()).arg("--help").output().unwrap();
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
