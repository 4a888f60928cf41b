//! `nat-bench`: engine-only figures for issue 3, on one core, no IO.
//!
//! `cargo run --release -p bench --bin nat-bench [-- --seconds N]`
//!
//! Prints a table: packets/s on established flows (1000 UDP / TCP flows, pre-built packets,
//! LAN->WAN and WAN->LAN alternating), new sessions/s (1000 internal endpoints x 1000
//! remotes, i.e. mostly existing mappings; and 60 000 new mappings), bytes per session
//! (a counting global allocator, before/after inserting 1 M sessions), allocations per packet
//! on the established path, the cost of expiring the 1 M sessions, and the offload path: TCP
//! GSO super-packets of 64 KiB with a partial checksum (`ChecksumState::Partial`, what the TUN
//! hands over with `TUN_F_TSO4`), one header translated per 64 KiB.

use std::{
    alloc::{GlobalAlloc, Layout, System},
    hint::black_box,
    net::Ipv4Addr,
    sync::atomic::{AtomicUsize, Ordering::Relaxed},
    time::{Duration, Instant},
};

use etherparse::PacketBuilder;
use router::nat::{ChecksumState, Nat, NatConfig, Prefix, Side, Verdict, WanSources};

/// Counts live heap bytes and allocation calls.
struct Counting;

static BYTES: AtomicUsize = AtomicUsize::new(0);
static CALLS: AtomicUsize = AtomicUsize::new(0);

// SAFETY: forwards every call to `System` unchanged; only counts.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        // SAFETY: the caller upholds `GlobalAlloc::alloc`'s contract; passed through.
        let p = unsafe { System.alloc(l) };
        if !p.is_null() {
            BYTES.fetch_add(l.size(), Relaxed);
            CALLS.fetch_add(1, Relaxed);
        }
        p
    }
    unsafe fn alloc_zeroed(&self, l: Layout) -> *mut u8 {
        // SAFETY: as above.
        let p = unsafe { System.alloc_zeroed(l) };
        if !p.is_null() {
            BYTES.fetch_add(l.size(), Relaxed);
            CALLS.fetch_add(1, Relaxed);
        }
        p
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        // SAFETY: as above.
        unsafe { System.dealloc(p, l) };
        BYTES.fetch_sub(l.size(), Relaxed);
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: as above.
        let q = unsafe { System.realloc(p, l, new_size) };
        if !q.is_null() {
            BYTES.fetch_add(new_size, Relaxed);
            BYTES.fetch_sub(l.size(), Relaxed);
            CALLS.fetch_add(1, Relaxed);
        }
        q
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

const WAN: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 2);
const LAN: Ipv4Addr = Ipv4Addr::new(192, 168, 1, 1);

fn udp(src: Ipv4Addr, sport: u16, dst: Ipv4Addr, dport: u16, payload: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(28 + payload.len());
    PacketBuilder::ipv4(src.octets(), dst.octets(), 64)
        .udp(sport, dport)
        .write(&mut v, payload)
        .expect("build");
    v
}

fn tcp(src: Ipv4Addr, sport: u16, dst: Ipv4Addr, dport: u16, syn: bool, ack: bool) -> Vec<u8> {
    let mut b = PacketBuilder::ipv4(src.octets(), dst.octets(), 64).tcp(sport, dport, 1, 65535);
    if syn {
        b = b.syn();
    }
    if ack {
        b = b.ack(2);
    }
    let mut v = Vec::new();
    b.write(&mut v, &[0u8; 64]).expect("build");
    v
}

fn host(i: u32) -> Ipv4Addr {
    Ipv4Addr::from(u32::from(Ipv4Addr::new(192, 168, 1, 10)) + i % 200)
}

/// Internet addresses from the benchmarking range (RFC 2544), which the WAN side refuses as
/// a source unless allowed, as [`new_nat`] does.
fn remote(i: u32) -> Ipv4Addr {
    Ipv4Addr::from(u32::from(Ipv4Addr::new(198, 18, 0, 0)) + i)
}

fn new_nat() -> Nat {
    let mut nat = Nat::new(NatConfig::new(WAN, LAN, 24), 1);
    nat.set_max_sessions(4 << 20);
    let bench = Prefix::parse("198.18.0.0/15").expect("a prefix");
    nat.set_wan_sources(WanSources::new(&[bench], &[]).expect("allowed"));
    nat
}

/// Reads the translated source port (UDP/TCP).
fn sport(p: &[u8]) -> u16 {
    u16::from_be_bytes([p[20], p[21]])
}

/// Runs pre-built packets round-robin for at least `secs`; returns (packets/s, allocations).
fn run_established(nat: &mut Nat, packets: &[(Side, Vec<u8>)], secs: f64) -> (f64, usize) {
    let mut buf = [0u8; 256];
    let start = Instant::now();
    let calls0 = CALLS.load(Relaxed);
    let mut n = 0u64;
    let mut now = start;
    loop {
        for (side, p) in packets {
            let b = &mut buf[..p.len()];
            b.copy_from_slice(p);
            let v = nat.process(now, *side, b);
            debug_assert_eq!(v, Verdict::Forward);
            black_box(v);
        }
        n += packets.len() as u64;
        now = Instant::now();
        if now.duration_since(start).as_secs_f64() >= secs {
            break;
        }
    }
    let calls = CALLS.load(Relaxed) - calls0;
    (n as f64 / start.elapsed().as_secs_f64(), calls)
}

fn established_udp(secs: f64) -> (f64, usize) {
    let mut nat = new_nat();
    let now = Instant::now();
    let mut packets = Vec::new();
    for i in 0..1000u32 {
        let (h, r) = (host(i), remote(i % 50));
        let mut out = udp(h, 10000 + i as u16, r, 443, &[0u8; 64]);
        packets.push((Side::Lan, out.clone()));
        assert_eq!(nat.process(now, Side::Lan, &mut out), Verdict::Forward);
        packets.push((Side::Wan, udp(r, 443, WAN, sport(&out), &[0u8; 64])));
    }
    run_established(&mut nat, &packets, secs)
}

fn established_tcp(secs: f64) -> (f64, usize) {
    let mut nat = new_nat();
    let now = Instant::now();
    let mut packets = Vec::new();
    for i in 0..1000u32 {
        let (h, r) = (host(i), remote(i % 50));
        let mut syn = tcp(h, 10000 + i as u16, r, 443, true, false);
        assert_eq!(nat.process(now, Side::Lan, &mut syn), Verdict::Forward);
        let ext = sport(&syn);
        let mut synack = tcp(r, 443, WAN, ext, true, true);
        assert_eq!(nat.process(now, Side::Wan, &mut synack), Verdict::Forward);
        packets.push((Side::Lan, tcp(h, 10000 + i as u16, r, 443, false, true)));
        packets.push((Side::Wan, tcp(r, 443, WAN, ext, false, true)));
    }
    run_established(&mut nat, &packets, secs)
}

/// TCP GSO super-packets (65535 bytes, as a TUN with TUN_F_TSO4 hands them over) on 100
/// established flows, out/in alternating, with partial checksums. Only the 40 header bytes
/// are restored between rounds (the engine reads and writes nothing else), so this times the
/// engine, not a 64 KiB memcpy. Returns (packets/s, payload Gbit/s).
fn established_gso(secs: f64) -> (f64, f64) {
    const HDR: usize = 40;
    let mut nat = new_nat();
    let now = Instant::now();
    let mut templates = Vec::new();
    for i in 0..100u32 {
        let (h, r) = (host(i), remote(i % 50));
        let mut syn = tcp(h, 10000 + i as u16, r, 443, true, false);
        assert_eq!(nat.process(now, Side::Lan, &mut syn), Verdict::Forward);
        let ext = sport(&syn);
        let mut synack = tcp(r, 443, WAN, ext, true, true);
        assert_eq!(nat.process(now, Side::Wan, &mut synack), Verdict::Forward);
        for (side, src, sp, dst, dp) in [
            (Side::Lan, h, 10000 + i as u16, r, 443),
            (Side::Wan, r, 443, WAN, ext),
        ] {
            let mut v = Vec::with_capacity(65535);
            PacketBuilder::ipv4(src.octets(), dst.octets(), 64)
                .tcp(sp, dp, 1, 65535)
                .ack(2)
                .write(&mut v, &vec![0u8; 65535 - HDR])
                .expect("build");
            templates.push((side, v));
        }
    }
    let mut bufs: Vec<Vec<u8>> = templates.iter().map(|(_, t)| t.clone()).collect();
    let start = Instant::now();
    let mut n = 0u64;
    let mut now = start;
    loop {
        for (b, (side, t)) in bufs.iter_mut().zip(&templates) {
            b[..HDR].copy_from_slice(&t[..HDR]);
            let v = nat.process_with(now, *side, b, ChecksumState::Partial);
            debug_assert_eq!(v, Verdict::Forward);
            black_box(v);
        }
        n += bufs.len() as u64;
        now = Instant::now();
        if now.duration_since(start).as_secs_f64() >= secs {
            break;
        }
    }
    let rate = n as f64 / start.elapsed().as_secs_f64();
    (rate, rate * (65535 - HDR) as f64 * 8.0 / 1e9)
}

/// Creates `endpoints x remotes` sessions in chunks of pre-built packets; only `process` is
/// timed. Returns (sessions/s, bytes per session from the allocator, the engine).
fn new_sessions(endpoints: u32, remotes: u32) -> (f64, f64, Nat) {
    const CHUNK: u32 = 65536;
    let total = endpoints * remotes;
    let mut chunk: Vec<Vec<u8>> = Vec::with_capacity(CHUNK as usize);
    for _ in 0..CHUNK.min(total) {
        chunk.push(udp(host(0), 0, remote(0), 0, &[0u8; 16]));
    }
    let before = BYTES.load(Relaxed);
    let mut nat = new_nat();
    let now = Instant::now();
    let mut timed = Duration::ZERO;
    let mut i = 0;
    while i < total {
        let n = CHUNK.min(total - i);
        for (k, p) in chunk.iter_mut().take(n as usize).enumerate() {
            let s = i + k as u32;
            let (e, r) = (s % endpoints, s / endpoints);
            *p = udp(host(e), 20000 + (e / 200) as u16, remote(r), 53, &[0u8; 16]);
        }
        let t = Instant::now();
        for p in chunk.iter_mut().take(n as usize) {
            let v = nat.process(now, Side::Lan, p);
            debug_assert_eq!(v, Verdict::Forward);
            black_box(v);
        }
        timed += t.elapsed();
        i += n;
    }
    assert_eq!(nat.session_count(), total as usize);
    // The chunk buffers existed before `before`, same sizes: they cancel out.
    let bytes = BYTES.load(Relaxed) - before;
    (
        f64::from(total) / timed.as_secs_f64(),
        bytes as f64 / f64::from(total),
        nat,
    )
}

fn main() {
    let secs = std::env::args()
        .skip_while(|a| a != "--seconds")
        .nth(1)
        .and_then(|s| s.parse::<f64>().ok())
        .unwrap_or(1.5);
    let mut rows: Vec<(String, String, &str)> = Vec::new();

    let (udp_rate, udp_allocs) = established_udp(secs);
    rows.push((
        "established UDP, 1000 flows, out/in alternating".into(),
        format!("{:.2} M pkt/s", udp_rate / 1e6),
        "> 5 M pkt/s",
    ));
    let (tcp_rate, tcp_allocs) = established_tcp(secs);
    rows.push((
        "established TCP, 1000 flows, out/in alternating".into(),
        format!("{:.2} M pkt/s", tcp_rate / 1e6),
        "> 5 M pkt/s",
    ));
    let (gso_rate, gso_gbits) = established_gso(secs);
    rows.push((
        "established TCP, 64 KiB GSO, partial checksum".into(),
        format!("{:.2} M pkt/s", gso_rate / 1e6),
        "",
    ));
    rows.push((
        "  = payload Gbit/s the engine alone could pass".into(),
        format!("{:.0} Gbit/s", gso_gbits),
        "",
    ));
    rows.push((
        "heap allocations on the established path".into(),
        format!("{}", udp_allocs + tcp_allocs),
        "0",
    ));

    let (rate, per_session, mut nat) = new_sessions(1000, 1000);
    rows.push((
        "new sessions, 1000 endpoints x 1000 remotes (1 M)".into(),
        format!("{:.0} k/s", rate / 1e3),
        "> 500 k/s",
    ));
    rows.push((
        "bytes per session at 1 M sessions (allocator)".into(),
        format!("{per_session:.0} B"),
        "< 200 B",
    ));
    let fixed = 3 * 65536 * 4;
    rows.push((
        "  of which fixed port-owner arrays, per session".into(),
        format!("{:.1} B", fixed as f64 / 1e6),
        "",
    ));
    let t = Instant::now();
    nat.expire(Instant::now() + Duration::from_secs(121));
    let expire = t.elapsed();
    assert_eq!(nat.session_count(), 0);
    rows.push((
        "expire 1 M idle sessions".into(),
        format!("{:.0} ms", expire.as_secs_f64() * 1e3),
        "",
    ));
    drop(nat);

    let (rate, _, _) = new_sessions(60000, 1);
    rows.push((
        "new sessions with a new mapping each (60 000)".into(),
        format!("{:.0} k/s", rate / 1e3),
        "> 500 k/s",
    ));

    let w = rows.iter().map(|r| r.0.len()).max().unwrap_or(0);
    println!("{:w$}  {:>14}  goal", "NAT engine (one core)", "value");
    println!("{}", "-".repeat(w + 30));
    for (name, value, goal) in rows {
        println!("{name:w$}  {value:>14}  {goal}");
    }
}
