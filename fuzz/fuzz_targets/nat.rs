//! The NAT engine (router/src/nat/) fed a sequence of packets between a few LAN hosts and a
//! few internet hosts (TCP with any flags, UDP with and without checksum, ICMP echo, ICMP
//! errors that quote a packet the engine translated before, fragments, raw bytes), with port
//! forwards added and removed, the WAN address changing and time moving. Never a panic, and
//! every packet the engine forwards still has a right IPv4 header checksum and, when it had
//! one coming in, a right TCP/UDP/ICMP checksum, as etherparse recomputes them.
#![no_main]
use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use arbitrary::Arbitrary;
use etherparse::{PacketBuilder, TcpHeader};
use homenet_fuzz::{LAN_ADDR, WAN_ADDR, checksums};
use libfuzzer_sys::fuzz_target;
use router::nat::{Forward, Nat, NatConfig, Preset, Protocol, Side, Verdict};

const HOSTS: [Ipv4Addr; 3] = [
    Ipv4Addr::new(192, 168, 1, 100),
    Ipv4Addr::new(192, 168, 1, 101),
    Ipv4Addr::new(192, 168, 1, 50),
];
const REMOTES: [Ipv4Addr; 3] = [
    Ipv4Addr::new(198, 51, 100, 10),
    Ipv4Addr::new(198, 51, 100, 11),
    Ipv4Addr::new(192, 0, 2, 7),
];
const PORTS: [u16; 6] = [80, 1024, 8080, 40000, 65535, 0];

#[derive(Arbitrary, Debug)]
enum Kind {
    Tcp {
        flags: u8,
    },
    Udp {
        no_checksum: bool,
    },
    Echo {
        reply: bool,
        id: u16,
    },
    /// An ICMP error quoting one of the packets the engine forwarded before (`quote`-th last),
    /// sent back towards where it came from.
    Error {
        ty: u8,
        code: u8,
        quote: u8,
        len: u8,
    },
}

#[derive(Arbitrary, Debug)]
struct Pkt {
    /// 0: LAN host -> remote; 1: remote -> WAN address; 2: LAN host -> WAN address (hairpin);
    /// 3: LAN -> LAN; else: the addresses picked from all of them.
    dir: u8,
    host: u8,
    remote: u8,
    sport: u8,
    dport: u8,
    kind: Kind,
    ttl: u8,
    payload: Vec<u8>,
    /// Cut into fragments of 8 * n payload bytes, sent in this order (first fragment last when
    /// `first_last`).
    fragment: Option<(u8, bool)>,
}

#[derive(Arbitrary, Debug)]
enum Step {
    Packet(Pkt),
    Raw {
        wan: bool,
        bytes: Vec<u8>,
    },
    AdvanceMs(u32),
    Expire,
    AddForward {
        udp: bool,
        ext: u8,
        host: u8,
        port: u8,
        remote: Option<u8>,
        lease: Option<u8>,
    },
    RemoveForward {
        udp: bool,
        ext: u8,
    },
    SetWan(bool),
    Flush,
}

fn port(i: u8) -> u16 {
    let p = PORTS[usize::from(i) % PORTS.len()];
    if p == 0 { u16::from(i) << 8 | 0x17 } else { p }
}

fn pick<T: Copy>(v: &[T], i: u8) -> T {
    v[usize::from(i) % v.len()]
}

fn build(p: &Pkt, wan: Ipv4Addr, sent: &[Vec<u8>]) -> Option<(Side, Vec<u8>)> {
    let host = pick(&HOSTS, p.host);
    let remote = pick(&REMOTES, p.remote);
    let (src, dst) = match p.dir % 5 {
        0 => (host, remote),
        1 => (remote, wan),
        2 => (host, wan),
        3 => (host, pick(&HOSTS, p.remote)),
        _ => {
            let all = [host, remote, wan, LAN_ADDR, Ipv4Addr::BROADCAST];
            (pick(&all, p.sport), pick(&all, p.dport))
        }
    };
    // Mostly where the source lives; sometimes the other side (a spoofed source).
    let side = match (p.dir % 5, p.ttl % 16) {
        (1, 0) => Side::Lan,
        (1, _) => Side::Wan,
        (_, 0) => Side::Wan,
        _ => Side::Lan,
    };
    let payload = &p.payload[..p.payload.len().min(1400)];
    let b = PacketBuilder::ipv4(src.octets(), dst.octets(), p.ttl);
    let mut out = Vec::new();
    match &p.kind {
        Kind::Tcp { flags } => {
            let mut h = TcpHeader::new(port(p.sport), port(p.dport), 1000, 64000);
            h.fin = flags & 0x01 != 0;
            h.syn = flags & 0x02 != 0;
            h.rst = flags & 0x04 != 0;
            h.psh = flags & 0x08 != 0;
            h.ack = flags & 0x10 != 0;
            h.urg = flags & 0x20 != 0;
            b.tcp_header(h).write(&mut out, payload).ok()?;
        }
        Kind::Udp { no_checksum } => {
            b.udp(port(p.sport), port(p.dport))
                .write(&mut out, payload)
                .ok()?;
            if *no_checksum {
                let ihl = usize::from(out[0] & 0x0f) * 4;
                out[ihl + 6] = 0;
                out[ihl + 7] = 0;
            }
        }
        Kind::Echo { reply, id } => {
            let b = if *reply {
                b.icmpv4_echo_reply(*id, 1)
            } else {
                b.icmpv4_echo_request(*id, 1)
            };
            b.write(&mut out, payload).ok()?;
        }
        Kind::Error {
            ty,
            code,
            quote,
            len,
        } => {
            let q = sent
                .iter()
                .rev()
                .nth(usize::from(*quote) % sent.len().max(1))?;
            // The quoted packet went from `qs` to `qd`: its error comes from `qd`'s side.
            let (qs, qd) = (
                Ipv4Addr::new(q[12], q[13], q[14], q[15]),
                Ipv4Addr::new(q[16], q[17], q[18], q[19]),
            );
            let from = if p.dir % 2 == 0 { qd } else { remote };
            let side = if HOSTS.contains(&from) {
                Side::Lan
            } else {
                Side::Wan
            };
            let ty = [3, 11, 12, 4, 5][usize::from(*ty) % 5];
            let n = (20 + usize::from(*len)).min(q.len());
            PacketBuilder::ipv4(from.octets(), qs.octets(), p.ttl)
                .icmpv4_raw(ty, *code % 16, [0; 4])
                .write(&mut out, &q[..n])
                .ok()?;
            return Some((side, out));
        }
    }
    Some((side, out))
}

/// Cuts a whole packet into fragments of `chunk` payload bytes (RFC 791), IP checksum fixed.
fn fragments(p: &[u8], chunk: usize) -> Vec<Vec<u8>> {
    let ihl = usize::from(p[0] & 0x0f) * 4;
    let payload = &p[ihl..];
    let mut out = Vec::new();
    let mut off = 0;
    while off < payload.len() {
        let end = (off + chunk).min(payload.len());
        let mut f = p[..ihl].to_vec();
        f.extend_from_slice(&payload[off..end]);
        let total = f.len() as u16;
        f[2..4].copy_from_slice(&total.to_be_bytes());
        f[4..6].copy_from_slice(&0x4242u16.to_be_bytes());
        let mf = if end < payload.len() { 0x2000 } else { 0 };
        f[6..8].copy_from_slice(&(mf | (off / 8) as u16).to_be_bytes());
        f[10..12].copy_from_slice(&[0, 0]);
        let c = homenet_fuzz::rfc1071(&f[..ihl]);
        f[10..12].copy_from_slice(&c.to_be_bytes());
        out.push(f);
        off = end;
    }
    out
}

/// Runs one packet that arrived on `side` through the engine and checks what comes out.
fn run(nat: &mut Nat, now: Instant, side: Side, mut packet: Vec<u8>, sent: &mut Vec<Vec<u8>>) {
    let before = checksums(&packet);
    let src = packet
        .get(12..16)
        .map(|a| Ipv4Addr::new(a[0], a[1], a[2], a[3]));
    let verdict = nat.process(now, side, &mut packet);
    // Issue 11: a LAN or loopback source arriving from the WAN is spoofed; it is never
    // translated nor kept.
    if side == Side::Wan
        && src.is_some_and(|a| a.is_loopback() || (u32::from(a) >> 8 == u32::from(LAN_ADDR) >> 8))
    {
        assert!(
            !matches!(verdict, Verdict::Forward | Verdict::Held),
            "spoofed WAN packet from {src:?} got {verdict:?}"
        );
    }
    if verdict == Verdict::Forward {
        let after = checksums(&packet).expect("a forwarded packet is IPv4");
        assert!(after.ip_ok, "IP header checksum broken: {packet:02x?}");
        if before.and_then(|b| b.l4_ok) == Some(true) {
            assert_eq!(
                after.l4_ok,
                Some(true),
                "transport checksum broken: {packet:02x?}"
            );
        }
        if sent.len() >= 16 {
            sent.remove(0);
        }
        sent.push(packet);
    }
    while let Some(p) = nat.poll_transmit() {
        let after = checksums(&p).expect("a released fragment is IPv4");
        assert!(
            after.ip_ok,
            "IP header checksum of a released fragment broken: {p:02x?}"
        );
    }
}

fuzz_target!(|input: (u8, Vec<Step>)| {
    let (setup, steps) = input;
    let mut cfg = NatConfig::new(WAN_ADDR, LAN_ADDR, 24);
    cfg.behaviour = Preset::ALL[usize::from(setup) % Preset::ALL.len()].behaviour();
    cfg.ttl_compensation = setup & 0x80 != 0;
    if setup & 0x40 != 0 {
        cfg.port_range = 40000..=40003;
    }
    let mut nat = Nat::new(cfg, u64::from(setup));
    nat.set_max_sessions(64);
    let t0 = Instant::now();
    let mut now = t0;
    let mut sent = Vec::new();
    for step in steps.iter().take(128) {
        match step {
            Step::Packet(p) => {
                let Some((side, packet)) = build(p, nat.wan_addr(), &sent) else {
                    continue;
                };
                match p.fragment {
                    Some((n, first_last)) if packet.len() > 28 => {
                        let mut fs = fragments(&packet, 8 * usize::from(n.max(1)));
                        if first_last {
                            fs.rotate_left(1);
                        }
                        for f in fs {
                            run(&mut nat, now, side, f, &mut sent);
                        }
                    }
                    _ => run(&mut nat, now, side, packet, &mut sent),
                }
            }
            Step::Raw { wan, bytes } => {
                let side = if *wan { Side::Wan } else { Side::Lan };
                run(&mut nat, now, side, bytes.clone(), &mut sent)
            }
            Step::AdvanceMs(ms) => now += Duration::from_millis(u64::from(*ms % 3_600_000)),
            Step::Expire => nat.expire(now),
            Step::AddForward {
                udp,
                ext,
                host,
                port: p,
                remote,
                lease,
            } => {
                let _ = nat.add_forward(Forward {
                    protocol: if *udp { Protocol::Udp } else { Protocol::Tcp },
                    external_port: port(*ext),
                    internal_addr: pick(&HOSTS, *host),
                    internal_port: port(*p),
                    remote_host: remote.map(|r| pick(&REMOTES, r)),
                    expires: lease.map(|s| now + Duration::from_secs(u64::from(s))),
                    description: "fuzz".into(),
                });
            }
            Step::RemoveForward { udp, ext } => {
                let proto = if *udp { Protocol::Udp } else { Protocol::Tcp };
                let _ = nat.remove_forward(proto, port(*ext));
            }
            Step::SetWan(other) => nat.set_wan_addr(if *other {
                Ipv4Addr::new(198, 51, 100, 77)
            } else {
                WAN_ADDR
            }),
            Step::Flush => nat.flush_sessions(),
        }
        assert!(nat.session_count() <= 64, "session cap exceeded");
        if let Some(d) = nat.next_deadline() {
            let _ = d;
        }
    }
    let _ = nat.sessions(now).count();
});
