//! The router under attack from the internet, end to end (issue 11): packets injected on the
//! WAN link with a raw socket (python3, AF_PACKET on the internet namespace's side of the
//! link), and what the LAN and the router see of them. Same topology as `netns.rs` (module
//! `common`); root needed, skipped otherwise.

mod common;

use std::sync::{Mutex, MutexGuard, PoisonError};
use std::thread;

use common::*;

/// One test at a time: each floods the machine's cores, and two floods at once would measure
/// the machine, not the router.
fn one_at_a_time() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Python helpers: checksums and IPv4/UDP/TCP builders, a frame sender on `g0` towards the
/// router's WAN MAC (argv[1]).
const PY_PACKETS: &str = r#"
import socket, struct, sys, time, random
def csum(b):
    if len(b) % 2: b += b'\0'
    s = sum(struct.unpack('!%dH' % (len(b) // 2), b))
    s = (s >> 16) + (s & 0xffff); s += s >> 16
    return (~s) & 0xffff
def ip4(a): return socket.inet_aton(a)
def ipv4(src, dst, proto, seg, ident=1):
    h = struct.pack('!BBHHHBBH4s4s', 0x45, 0, 20 + len(seg), ident, 0, 64, proto, 0, ip4(src), ip4(dst))
    return h[:10] + struct.pack('!H', csum(h)) + h[12:] + seg
def l4(src, dst, proto, seg, at):
    c = csum(ip4(src) + ip4(dst) + struct.pack('!BBH', 0, proto, len(seg)) + seg)
    return seg[:at] + struct.pack('!H', c) + seg[at + 2:]
def udp(src, sp, dst, dp, data):
    return ipv4(src, dst, 17, l4(src, dst, 17, struct.pack('!HHHH', sp, dp, 8 + len(data), 0) + data, 6))
def frag(src, dst, proto, data, ident, offset8, more):
    h = struct.pack('!BBHHHBBH4s4s', 0x45, 0, 20 + len(data), ident, (0x2000 if more else 0) | offset8,
                    64, proto, 0, ip4(src), ip4(dst))
    return h[:10] + struct.pack('!H', csum(h)) + h[12:] + data
def syn(src, sp, dst, dp):
    seg = struct.pack('!HHIIBBHHH', sp, dp, random.getrandbits(32), 0, 5 << 4, 0x02, 64240, 0, 0)
    return ipv4(src, dst, 6, l4(src, dst, 6, seg, 16))
mac = bytes.fromhex(sys.argv[1].replace(':', ''))
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
s.bind(('g0', 0))
eth = mac + s.getsockname()[4][:6] + b'\x08\x00'
def send(pkt): s.send(eth + pkt)
"#;

/// Spoofed packets: LAN sources on the WAN link (towards the attacker, and to the WAN
/// address), and bogon sources to the forwarded UDP port 5000.
const PY_SPOOF: &str = r#"
for _ in range(5):
    send(udp('192.168.1.100', 8445, '203.0.113.1', 4444, b'open sesame'))
    send(syn('192.168.1.100', 8445, '203.0.113.1', 4444))
    send(udp('192.168.1.100', 8445, '203.0.113.2', 5000, b'from inside?'))
    for bogon in ['10.1.2.3', '169.254.1.1', '127.0.0.1', '172.16.5.5', '198.18.0.1', '0.1.2.3']:
        send(udp(bogon, 1234, '203.0.113.2', 5000, b'bogon'))
    time.sleep(0.05)
print('sent')
"#;

/// Counts packets arriving on the LAN host's eth0 for argv[1] seconds that the spoofs could
/// have produced: to port 8445, or from a bogon source.
const PY_SNIFF: &str = r#"
import socket, sys, time
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x0800))
s.bind(('eth0', 0)); s.settimeout(0.2)
end = time.time() + float(sys.argv[1]); n = 0
while time.time() < end:
    try: p, a = s.recvfrom(65535)
    except socket.timeout: continue
    if a[2] == socket.PACKET_OUTGOING or len(p) < 24: continue
    src = socket.inet_ntoa(p[12:16]); dport = int.from_bytes(p[22:24], 'big')
    if dport == 8445 or src.split('.')[0] in ('10', '169', '127', '172', '198', '0') and src != '198.51.100.10':
        n += 1; print('seen', src, dport, flush=True)
print('count', n)
"#;

/// The attacker's follow-up: what opened 192.168.1.50:8445 before the fix.
const PY_KNOCK: &str = r#"
import socket
u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
u.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
u.bind(('203.0.113.1', 4444)); u.settimeout(0.3)
for _ in range(5):
    u.sendto(b'let me in', ('203.0.113.2', 8445))
    try: print('answer', u.recvfrom(100))
    except socket.timeout: pass
t = socket.socket()
t.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
t.bind(('203.0.113.1', 4444)); t.settimeout(1)
try: t.connect(('203.0.113.2', 8445)); print('connected')
except OSError as e: print('refused', e)
"#;

fn python(ns: &str, script: &str, args: &[&str]) -> String {
    let mut argv = vec!["python3", "-c", script];
    argv.extend_from_slice(args);
    ok(ns, &argv)
}

fn wan_mac(lab: &Lab) -> String {
    ok(&lab.ns("rtr"), &["cat", "/sys/class/net/wan0/address"])
        .trim()
        .to_string()
}

fn metrics(lab: &Lab) -> String {
    ok(
        &lab.ns("lan"),
        &["curl", "-sf", "-m", "5", "http://192.168.1.1/metrics"],
    )
}

#[test]
fn spoofed_wan_packets_never_reach_the_lan_and_create_no_session() {
    if !can_run() {
        return;
    }
    let _serial = one_at_a_time();
    let mut lab = Lab::new();
    let (inet, lan) = (lab.ns("inet"), lab.ns("lan"));
    // The unforwarded LAN service of the report, and a forwarded UDP echo on 5000.
    lab.spawn("lan", &["python3", "-c", &udp_echo_server(LAN_HOST, 8445)]);
    lab.spawn("lan", &["python3", "-c", &udp_echo_server(LAN_HOST, 5000)]);
    let mut router = lab.start_router(&["--forward", "udp:5000=192.168.1.100:5000"]);
    lab.wait_ready(&mut router);
    let mac = wan_mac(&lab);

    let sniffer = {
        let lan = lan.clone();
        thread::spawn(move || python(&lan, PY_SNIFF, &["6"]))
    };
    thread::sleep(std::time::Duration::from_millis(500));
    let packets = format!("{PY_PACKETS}{PY_SPOOF}");
    assert_eq!(python(&inet, &packets, &[&mac]).trim(), "sent");
    let knock = python(&inet, PY_KNOCK, &[]);
    assert!(
        !knock.contains("answer"),
        "the LAN service answered:\n{knock}"
    );
    assert!(!knock.contains("connected"), "{knock}");
    let seen = sniffer.join().unwrap();
    assert!(
        seen.trim_end().ends_with("count 0"),
        "the LAN saw spoofed traffic:\n{seen}\n{}",
        lab.router_log()
    );

    let m = metrics(&lab);
    assert_eq!(
        metric(&m, "router_sessions_created_total"),
        0,
        "a spoof opened a session:\n{m}"
    );
    assert!(
        metric(&m, "router_drops_total{reason=\"wan_lan_source\"}") >= 15,
        "{m}"
    );
    // 127.0.0.1 never gets here: the kernel drops it as a martian source first.
    assert!(
        metric(&m, "router_drops_total{reason=\"wan_bogon_source\"}") >= 20,
        "{m}"
    );

    // The forward itself still works from a real internet address.
    let o = retry(&inet, &["python3", "-c", &udp_client(WAN, 5000, "real")]);
    assert_eq!(String::from_utf8_lossy(&o.stdout).trim(), "echo:real");
    let exit = sigterm_and_wait(&mut router);
    assert!(exit.success(), "{}", lab.router_log());
}

/// SYN flood from random shared-space sources at the forwarded port for argv[2] seconds, as
/// fast as python sends pre-built frames; prints the count.
const PY_FLOOD: &str = r#"
frames = []
for i in range(65536):
    src = '100.%d.%d.%d' % (64 + (i >> 16), (i >> 8) & 255, i & 255)
    frames.append(eth + syn(src, 1024 + i % 60000, '203.0.113.2', 8080))
end = time.time() + float(sys.argv[2]); n = 0
while time.time() < end:
    for f in frames[n % 65536:n % 65536 + 256]:
        s.send(f)
    n += 256
print(n)
"#;

/// New connections to argv[1]:argv[2] for argv[3] seconds, each with an HTTP request;
/// prints "ok N fail M" and the first failures. Each may take 20 s (a browser waits longer):
/// a flood faster than the router's (debug build, shared cores) dataplane loses packets on
/// the way, a SYN-ACK among them, and TCP retransmits (after 1, 3, 7 and 15 s); what must
/// never happen is the table refusing the connection.
const PY_CONNECT: &str = r#"
import socket, sys, time
end = time.time() + float(sys.argv[3]); ok = fail = 0; errs = []
while time.time() < end:
    try:
        c = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=20)
        c.sendall(b'GET / HTTP/1.0\r\n\r\n')
        if c.recv(12).startswith(b'HTTP/1.0 200'): ok += 1
        else: fail += 1
        c.close()
    except OSError as e:
        fail += 1; errs.append(str(e))
    time.sleep(0.05)
print('ok', ok, 'fail', fail, errs[:3])
"#;

#[test]
fn syn_flood_at_a_forward_does_not_stop_new_lan_connections() {
    if !can_run() {
        return;
    }
    let _serial = one_at_a_time();
    let mut lab = Lab::new();
    let (inet, lan) = (lab.ns("inet"), lab.ns("lan"));
    let www = lab.dir.join("www");
    std::fs::create_dir_all(&www).unwrap();
    std::fs::write(www.join("index.html"), "hi\n").unwrap();
    let www = www.to_str().unwrap().to_string();
    let server = |bind: &str, port: &str| {
        let args = [
            "python3",
            "-m",
            "http.server",
            port,
            "--bind",
            bind,
            "--directory",
        ];
        let mut v: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        v.push(www.clone());
        v
    };
    let inet_srv = server(INET, "8000");
    let lan_srv = server(LAN_HOST, "8080");
    lab.spawn(
        "inet",
        &inet_srv.iter().map(String::as_str).collect::<Vec<_>>(),
    );
    lab.spawn(
        "lan",
        &lan_srv.iter().map(String::as_str).collect::<Vec<_>>(),
    );
    // A table the flood fills within a second on any machine (the eviction rule is the same
    // at the default 2 M sessions).
    let config = lab.dir.join("router.toml");
    std::fs::write(&config, "[nat.limits]\nmax_sessions = 20000\n").unwrap();
    let mut router = lab.start_router(&[
        "--forward",
        "tcp:8080=192.168.1.100:8080",
        "--config",
        config.to_str().unwrap(),
    ]);
    lab.wait_ready(&mut router);
    let ready = retry(
        &lan,
        &["curl", "-sf", "-m", "2", "http://198.51.100.10:8000/"],
    );
    assert!(ready.status.success(), "{}", lab.router_log());
    let mac = wan_mac(&lab);

    let flood = {
        let (inet, script) = (inet.clone(), format!("{PY_PACKETS}{PY_FLOOD}"));
        thread::spawn(move || python(&inet, &script, &[&mac, "10"]))
    };
    let inbound = {
        let inet = inet.clone();
        thread::spawn(move || python(&inet, PY_CONNECT, &[WAN, "8080", "9"]))
    };
    thread::sleep(std::time::Duration::from_millis(500));
    let lan_result = python(&lan, PY_CONNECT, &[INET, "8000", "9"]);
    let sent: u64 = flood.join().unwrap().trim().parse().unwrap();
    let inbound = inbound.join().unwrap();
    let m = metrics(&lab);
    let evicted = metric(&m, "router_sessions_evicted_total");
    eprintln!(
        "flood: {sent} SYNs in 10 s ({} per s), {} read from the TUNs, {evicted} sessions \
         evicted; LAN: {}; internet to the forward: {}",
        sent / 10,
        metric(&m, "router_tun_packets_total{direction=\"rx\"}"),
        lan_result.trim(),
        inbound.trim()
    );
    assert!(evicted > 0, "the flood never filled the table:\n{m}");
    assert!(
        lan_result.contains(" fail 0 "),
        "LAN connections failed during the flood: {lan_result}\n{m}"
    );
    let ok_count: u32 = lan_result
        .split_whitespace()
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    // Every connection the LAN host tried succeeded; how many it could try depends on the
    // flood's rate. On an idle machine python sends ~430k SYN/s, the dataplane reads about a
    // quarter of them and the kernel drops the rest at the WAN TUN's queue, replies among them,
    // so a LAN connection can take several SYN retransmits (one connection in 9 s seen in CI;
    // 5-10 at the ~80k SYN/s of a loaded machine). README "Under attack" names this limit.
    assert!(ok_count >= 1, "{lan_result}");
    assert_eq!(
        metric(&m, "router_drops_total{reason=\"table_full\"}"),
        0,
        "{m}"
    );
    let exit = sigterm_and_wait(&mut router);
    assert!(exit.success(), "{}", lab.router_log());
}

/// Later fragments (offset 8 bytes, more to come) of `argv[2]` datagrams whose first fragment
/// never comes, from one internet address, as fast as python sends them.
const PY_FRAGMENTS: &str = r#"
frames = [eth + frag('198.51.100.66', '203.0.113.2', 17, b'x' * 96, i, 1, True) for i in range(65536)]
n = int(sys.argv[2])
for i in range(n):
    s.send(frames[i % 65536])
print(n)
"#;

/// Datagrams of argv[3] bytes to argv[1]:argv[2] (fragmented on the way), each echoed back;
/// prints how many came back whole out of argv[4].
const PY_BIG_UDP: &str = r#"
import socket, sys
u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); u.settimeout(2)
size, n, back = int(sys.argv[3]), int(sys.argv[4]), 0
for i in range(n):
    msg = bytes([i % 256]) * size
    u.sendto(msg, (sys.argv[1], int(sys.argv[2])))
    try:
        d, _ = u.recvfrom(65535)
        back += d == b'echo:' + msg
    except socket.timeout:
        pass
print(back)
"#;

#[test]
fn one_hosts_fragment_flood_does_not_block_the_lans_fragmented_traffic() {
    if !can_run() {
        return;
    }
    let _serial = one_at_a_time();
    let mut lab = Lab::new();
    let (inet, lan) = (lab.ns("inet"), lab.ns("lan"));
    // An echo of whole datagrams (the common one reads 2048 bytes at most).
    let echo = udp_echo_server(INET, 7000).replace("2048", "65535");
    lab.spawn("inet", &["python3", "-c", &echo]);
    let mut router = lab.start_router(&[]);
    lab.wait_ready(&mut router);
    let mac = wan_mac(&lab);
    let o = retry(&lan, &["python3", "-c", &udp_client(INET, 7000, "ready")]);
    assert!(o.status.success(), "{}", lab.router_log());

    // More datagrams than the router tracks at all (4096), none of which will complete.
    let script = format!("{PY_PACKETS}{PY_FRAGMENTS}");
    let sent = python(&inet, &script, &[&mac, "20000"]);
    assert_eq!(sent.trim(), "20000");
    // The LAN's own fragmented datagrams (3000 bytes: three fragments each way) still pass,
    // out and back, while the attacker's fragments are held.
    let back = python(&lan, PY_BIG_UDP, &[INET, "7000", "3000", "20"]);
    let m = metrics(&lab);
    assert_eq!(back.trim(), "20", "fragmented datagrams lost:\n{m}");
    assert!(
        metric(&m, "router_drops_total{reason=\"fragment_source_limit\"}") > 0,
        "the flood never reached the per-source cap:\n{m}"
    );
    let exit = sigterm_and_wait(&mut router);
    assert!(exit.success(), "{}", lab.router_log());
}

/// DISCOVERs from a fresh MAC each, argv[1] per second for argv[2] seconds, broadcast from the
/// LAN host; prints how many.
const PY_DHCP_FLOOD: &str = r#"
import socket, struct, sys, time
u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
u.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
u.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, b'eth0')
rate, secs, n = int(sys.argv[1]), float(sys.argv[2]), 0
end = time.time() + secs
while time.time() < end:
    for _ in range(rate // 10):
        mac = b'\x02\xee' + struct.pack('!I', n)
        m = struct.pack('!BBBBIHHIIII', 1, 1, 6, 0, n, 0, 0x8000, 0, 0, 0, 0) + mac + b'\0' * 10
        m += b'\0' * 192 + b'\x63\x82\x53\x63' + b'\x35\x01\x01\xff'
        u.sendto(m, ('255.255.255.255', 67)); n += 1
    time.sleep(0.1)
print(n)
"#;

#[test]
fn dhcp_discover_flood_from_fresh_macs_does_not_starve_a_new_client() {
    if !can_run() {
        return;
    }
    let _serial = one_at_a_time();
    let lab = Lab::new();
    let lan = lab.ns("lan");
    let mut router = lab.start_router(&[]);
    lab.wait_ready(&mut router);
    // 500 DISCOVERs a second for 5 s: five times the pool, each from a new MAC.
    let sent = python(&lan, PY_DHCP_FLOOD, &["500", "5"]);
    assert!(sent.trim().parse::<u32>().unwrap() >= 2000, "{sent}");
    // Then a real client (busybox udhcpc, its own MAC, no record) asks: it gets a lease within
    // its retries (the old router had every address offered for a minute).
    let o = output(
        &lan,
        &[
            "udhcpc",
            "-f",
            "-q",
            "-n",
            "-i",
            "eth0",
            "-t",
            "5",
            "-T",
            "2",
            "-s",
            "/bin/true",
        ],
    );
    let log = format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(
        o.status.success() && log.contains("obtained"),
        "udhcpc got no lease:\n{log}\n{}",
        lab.router_log()
    );
    let m = metrics(&lab);
    assert!(
        metric(&m, "router_dhcp_drops_total{reason=\"rate_limited\"}") > 0,
        "{m}"
    );
    assert!(
        lab.router_log().contains("pool under pressure"),
        "{}",
        lab.router_log()
    );
    let exit = sigterm_and_wait(&mut router);
    assert!(exit.success(), "{}", lab.router_log());
}
