//! The router's DHCP server in the namespace lab, with real clients: the lab's busybox udhcpc
//! on every LAN node, and ISC dhclient on an extra interface of the viewer. Leases are
//! renewed, show in `GET /api/dhcp/leases` with their host names, and survive a router
//! restart (the clients keep their addresses and renew against the new process).
//!
//! Needs root (network namespaces); see `tests::require_root`.

use std::fs::OpenOptions;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tests::{Lab, LabOptions, RouterKind, require_root};

fn wait_until(what: &str, timeout: Duration, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if f() {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("timed out after {timeout:?} waiting for {what}");
}

fn state_dir(lab: &Lab) -> String {
    format!("/run/homenet-lab/{}", lab.prefix)
}

fn read(path: &str) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

/// The leases as the router's API shows them, from the viewer.
fn leases(lab: &Lab) -> serde_json::Value {
    let text = lab.sh(
        "viewer",
        "curl -sf --max-time 5 http://192.168.1.1/api/dhcp/leases",
    );
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("bad JSON {e}: {text}"))
}

fn host_of(leases: &serde_json::Value, addr: &str) -> Option<String> {
    leases
        .as_array()?
        .iter()
        .find(|l| l["addr"] == addr && l["state"] == "bound")
        .and_then(|l| l["host_name"].as_str().map(str::to_string))
}

/// The udhcpc the lab started in `node` (the only process there).
fn udhcpc_pid(lab: &Lab, node: &str) -> i32 {
    let out = Command::new("ip")
        .args(["netns", "pids", &lab.ns(node)])
        .output()
        .expect("ip netns pids");
    let pids = String::from_utf8_lossy(&out.stdout).into_owned();
    pids.split_whitespace()
        .filter_map(|p| p.parse::<i32>().ok())
        .find(|p| read(&format!("/proc/{p}/comm")).trim() == "udhcpc")
        .unwrap_or_else(|| panic!("no udhcpc in {node}: {pids:?}"))
}

/// SIGUSR1 makes busybox udhcpc renew now (a unicast REQUEST with ciaddr, RFC 2131 §4.4.5);
/// waits for the renew line of `addr` in its log.
fn renew_udhcpc(lab: &Lab, node: &str, addr: &str) {
    let log = format!("{}/udhcpc-{node}.log", state_dir(lab));
    let before = read(&log).matches("udhcpc: renew ").count();
    // SAFETY: kill(2) on a pid the lab (which this test started) recorded; no memory involved.
    let rc = unsafe { libc::kill(udhcpc_pid(lab, node), libc::SIGUSR1) };
    assert_eq!(rc, 0, "cannot signal udhcpc in {node}");
    wait_until(&format!("{node} to renew"), Duration::from_secs(10), || {
        read(&log).matches("udhcpc: renew ").count() > before
    });
    let text = read(&log);
    let last = text
        .lines()
        .rfind(|l| l.starts_with("udhcpc: renew "))
        .unwrap_or_default();
    assert!(
        last.starts_with(&format!("udhcpc: renew {addr}/24")),
        "{node} renewed to something else: {last}\n{text}"
    );
}

/// ISC dhclient, one shot, on the viewer's extra interface; returns the leased address.
fn dhclient(lab: &Lab) -> String {
    let dir = state_dir(lab);
    let out = lab.exec_timeout(
        "viewer",
        Duration::from_secs(40),
        &[
            "dhclient",
            "-v",
            "-1",
            "-cf",
            &format!("{dir}/dhclient.conf"),
            "-sf",
            "/bin/true",
            "-lf",
            &format!("{dir}/dhclient.leases"),
            "-pf",
            &format!("{dir}/dhclient.pid"),
            "eth1",
        ],
    );
    let log = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "dhclient failed:\n{log}");
    let leases = read(&format!("{dir}/dhclient.leases"));
    leases
        .lines()
        .rev()
        .find_map(|l| l.trim().strip_prefix("fixed-address "))
        .map(|a| a.trim_end_matches(';').to_string())
        .unwrap_or_else(|| panic!("no lease in the dhclient lease file:\n{leases}\n{log}"))
}

/// Stops the router by the pid the lab recorded and starts it again the way the lab did.
fn restart_router(lab: &Lab) -> Child {
    let dir = state_dir(lab);
    let pid = lab.router_pid().expect("router.pid") as i32;
    // SAFETY: kill(2) on the router's pid as the lab recorded it.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0);
    wait_until("the router to exit", Duration::from_secs(15), || {
        // Gone, or a zombie waiting for its reaper.
        let stat = read(&format!("/proc/{pid}/stat"));
        stat.is_empty() || stat.split_whitespace().nth(2) == Some("Z")
    });
    let cmdline = read(&format!("{dir}/router.cmdline"));
    let args: Vec<&str> = cmdline.split_whitespace().collect();
    let log = OpenOptions::new()
        .append(true)
        .open(format!("{dir}/router.log"))
        .expect("router.log");
    let started = read(&format!("{dir}/router.log"))
        .matches("router running")
        .count();
    let child = Command::new("ip")
        .args(["netns", "exec", &lab.ns("rtr")])
        .args(&args)
        .stdin(Stdio::null())
        .stdout(log.try_clone().expect("log fd"))
        .stderr(log)
        .spawn()
        .expect("start the router");
    std::fs::write(format!("{dir}/router.pid"), format!("{}\n", child.id())).expect("router.pid");
    wait_until("the router to run again", Duration::from_secs(20), || {
        read(&format!("{dir}/router.log"))
            .matches("router running")
            .count()
            > started
    });
    child
}

#[test]
fn dhcp_clients_get_renew_and_keep_leases_across_a_restart() {
    if !require_root() {
        return;
    }
    // SAFETY: set before any thread of this test binary reads the environment (the only
    // test here); the lab script picks the binary under test from it.
    unsafe { std::env::set_var("ROUTER_BIN", env!("CARGO_BIN_EXE_router")) };
    let lab =
        Lab::up(&LabOptions::new(RouterKind::Ours).cams(2).addressing("dhcp")).expect("lab up");
    let dir = state_dir(&lab);

    // busybox udhcpc: the lab waited for every node's lease; the reservations give the
    // static plan's addresses.
    for (node, addr) in [
        ("cam1", "192.168.1.101"),
        ("cam2", "192.168.1.102"),
        ("viewer", "192.168.1.200"),
    ] {
        assert_eq!(lab.addr(node).to_string(), addr, "{node}");
        let log = read(&format!("{dir}/udhcpc-{node}.log"));
        assert!(
            log.contains(&format!("lease of {addr} obtained from 192.168.1.1")),
            "{node}: {log}"
        );
    }
    assert!(
        !read(&format!("{dir}/dnsmasq.log")).contains("DHCP"),
        "dnsmasq ran"
    );

    // ISC dhclient on a second port of the LAN bridge (in the viewer), from the pool.
    lab.sh(
        "lan",
        &format!(
            "ip link add p-dhc type veth peer name eth1 netns {} && \
             ip link set p-dhc master br0 up",
            lab.ns("viewer")
        ),
    );
    lab.sh("viewer", "ip link set eth1 address 02:aa:00:00:00:01 up");
    std::fs::write(
        format!("{dir}/dhclient.conf"),
        "send host-name \"extra1\";\nrequest subnet-mask, routers;\n",
    )
    .expect("dhclient.conf");
    let extra = dhclient(&lab);
    let last: u8 = extra
        .rsplit('.')
        .next()
        .and_then(|o| o.parse().ok())
        .unwrap_or(0);
    assert!(
        extra.starts_with("192.168.1.") && (100..=199).contains(&last),
        "dhclient got {extra}"
    );
    let lease_file = read(&format!("{dir}/dhclient.leases"));
    assert!(
        lease_file.contains("option routers 192.168.1.1;"),
        "{lease_file}"
    );
    assert!(
        lease_file.contains("option subnet-mask 255.255.255.0;"),
        "{lease_file}"
    );

    // Host names in the API.
    let l = leases(&lab);
    assert_eq!(host_of(&l, "192.168.1.101").as_deref(), Some("cam1"), "{l}");
    assert_eq!(host_of(&l, "192.168.1.102").as_deref(), Some("cam2"), "{l}");
    assert_eq!(
        host_of(&l, "192.168.1.200").as_deref(),
        Some("viewer"),
        "{l}"
    );
    assert_eq!(host_of(&l, &extra).as_deref(), Some("extra1"), "{l}");

    // Renewals keep the addresses: udhcpc's unicast RENEW, dhclient's INIT-REBOOT.
    renew_udhcpc(&lab, "cam1", "192.168.1.101");
    assert_eq!(dhclient(&lab), extra);

    // Restart: the router saves on SIGTERM and restores at start.
    let mut child = restart_router(&lab);
    let log = read(&format!("{dir}/router.log"));
    assert!(log.contains("dhcp: restored 4 leases"), "{log}");
    let l = leases(&lab);
    assert_eq!(host_of(&l, &extra).as_deref(), Some("extra1"), "{l}");
    assert_eq!(host_of(&l, "192.168.1.102").as_deref(), Some("cam2"), "{l}");
    renew_udhcpc(&lab, "cam1", "192.168.1.101");
    renew_udhcpc(&lab, "cam2", "192.168.1.102");
    renew_udhcpc(&lab, "viewer", "192.168.1.200");
    assert_eq!(dhclient(&lab), extra);
    let status = lab.sh(
        "viewer",
        "curl -sf --max-time 5 http://192.168.1.1/api/status",
    );
    let v: serde_json::Value = serde_json::from_str(&status).expect("status JSON");
    let stats = &v["dhcp"]["stats"];
    // Nobody had to start over with a DISCOVER; every request was confirmed.
    assert!(stats["acked"].as_u64() >= Some(4), "{stats}");
    assert_eq!(stats["offered"], 0, "{stats}");
    assert_eq!(stats["nacked"], 0, "{stats}");
    assert_eq!(stats["dropped_total"], 0, "{stats}");
    // And the LAN still reaches the internet through the restarted router.
    lab.sh("cam1", "ping -c 1 -W 5 198.51.100.10");
    // `lab down` stops the router (it lives in the lab's namespace); then reap it.
    lab.down();
    let _ = child.kill();
    let _ = child.wait();
}
