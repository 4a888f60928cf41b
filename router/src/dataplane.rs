//! The dataplane thread: read a packet from a TUN, let the engine translate it, write it back.
//!
//! Two TUN devices, one per side: the routing recipe sends what arrives on the LAN interface
//! to one and what arrives on the WAN interface to the other, so the engine is told the side
//! of every packet ([`Side`]) instead of guessing it from addresses (a packet from the
//! internet with a LAN source address is then a spoof, not an outbound packet). A packet is
//! written back to the device it came from; either way the kernel routes it by its new
//! destination. One read and one write per forwarded packet, translated in place in one buffer (no copy,
//! no allocation). With the TUN's offloads (see [`crate::device::tun`]) a "packet" is often a
//! GSO super-packet of up to 64 KiB with a partial checksum: the engine translates its one
//! header ([`ChecksumState::Partial`]) and the kernel finishes the checksum and the
//! segmentation, if any, after the write. The engine lock is taken once per turn, for up to
//! [`BATCH`] packets from each device, so the control API waits at most that. Timers: the engine's
//! `next_deadline` decides how long `poll(2)` sleeps, capped at [`MAX_SLEEP`].

use std::fs::File;
use std::io::{self, BufWriter};
use std::net::Ipv4Addr;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use tracing::{debug, warn};

use crate::device::pcap::PcapWriter;
use crate::device::tun::{MAX_PACKET, Tun, VIRTIO_NET_HDR_F_NEEDS_CSUM, VirtioNetHdr, wait_any};
use crate::metrics::ShellStats;
use crate::nat::{ChecksumState, Nat, Side, Verdict, inet_checksum};

/// The longest virtio header a device may have ([`crate::device::tun::VNET_HDR_LEN`]).
const VNET_HDR_MAX: usize = crate::device::tun::VNET_HDR_LEN;
/// Packets handled per lock of the engine (per device).
pub const BATCH: usize = 64;
/// Longest sleep without looking at the clock.
pub const MAX_SLEEP: Duration = Duration::from_millis(100);
/// How long the loop keeps looking for packets without sleeping after the last one (default
/// 200 µs; `[dataplane] busy_poll_us` or `--busy-poll-us`, 0 turns it off). A sleeping loop
/// pays a wakeup at each TUN crossing, and on a virtual machine waking a thread on an idle
/// vCPU costs tens of microseconds (an IPI and a halted vCPU brought back by the host): on
/// the 2-vCPU lab machine UDP request/response through the router measured p50 150-200 µs
/// without polling against 75-90 µs with 200 µs of polling (the kernel's own forwarding:
/// 125-135 µs), 61-64 against 42-56 µs with one core loaded, 91-128 against 41-48 µs with
/// both loaded. The window covers a LAN round trip, so a request/response flow finds the
/// loop awake; the spin yields the core (`sched_yield(2)`) to anything runnable on it, and
/// costs nothing when no packets come (it starts only after a packet). The price: one core
/// busy while packets keep arriving less than 200 µs apart. Linux's socket busy polling
/// suggests 50 µs (Documentation/admin-guide/sysctl/net.rst, `busy_poll`), a window shorter
/// than the VM's round trip.
pub const BUSY_POLL: Duration = Duration::from_micros(200);
/// Sessions expired per turn of the loop at most (~0.6 µs each: well under a millisecond).
pub const EXPIRE_BUDGET: usize = 1024;
/// How often capture files are flushed.
pub const FLUSH_EVERY: Duration = Duration::from_secs(1);

/// Locks the engine even if a thread panicked while holding it (its state is still a valid
/// table: the engine does not panic half-way through a mutation on any input).
pub fn lock(nat: &Mutex<Nat>) -> MutexGuard<'_, Nat> {
    nat.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The optional pcap files of the LAN and WAN side.
#[derive(Debug, Default)]
pub struct Capture {
    lan: Option<PcapWriter<BufWriter<File>>>,
    wan: Option<PcapWriter<BufWriter<File>>>,
    lan_net: u32,
    lan_mask: u32,
    /// A copy of a packet whose checksum is completed for the file.
    scratch: Vec<u8>,
}

impl Capture {
    /// Opens (truncates) the files. `lan` is the LAN network that tells the sides apart.
    pub fn open(
        lan_path: Option<&Path>,
        wan_path: Option<&Path>,
        lan: (Ipv4Addr, u8),
    ) -> io::Result<Capture> {
        let open = |p: &Path| -> io::Result<PcapWriter<BufWriter<File>>> {
            let f = File::create(p).map_err(|e| {
                io::Error::new(e.kind(), format!("cannot create {}: {e}", p.display()))
            })?;
            PcapWriter::new(BufWriter::with_capacity(256 * 1024, f))
        };
        let mask = prefix_mask(lan.1);
        Ok(Capture {
            lan: lan_path.map(open).transpose()?,
            wan: wan_path.map(open).transpose()?,
            lan_net: u32::from(lan.0) & mask,
            lan_mask: mask,
            scratch: Vec::new(),
        })
    }

    fn active(&self) -> bool {
        self.lan.is_some() || self.wan.is_some()
    }

    /// Records `packet` like [`Capture::record`]; one whose TCP/UDP checksum is still partial
    /// (offloads: the kernel completes it after the write) is written with the checksum
    /// completed, as it leaves on the wire, so that Wireshark does not flag every packet.
    fn record_as(&mut self, packet: &[u8], csum: ChecksumState, stats: &ShellStats) {
        if csum == ChecksumState::Partial {
            let mut copy = std::mem::take(&mut self.scratch);
            copy.clear();
            copy.extend_from_slice(packet);
            complete_partial_checksum(&mut copy);
            self.record(&copy, stats);
            self.scratch = copy;
        } else {
            self.record(packet, stats);
        }
    }

    /// Records `packet` in the file of the side it is on: the LAN side if its source or
    /// destination is in the LAN network (outbound before and inbound after translation,
    /// both halves of a hairpin), otherwise the WAN side.
    fn record(&mut self, packet: &[u8], stats: &ShellStats) {
        let lan_side = packet.len() >= 20 && packet[0] >> 4 == 4 && {
            let src = u32::from_be_bytes([packet[12], packet[13], packet[14], packet[15]]);
            let dst = u32::from_be_bytes([packet[16], packet[17], packet[18], packet[19]]);
            src & self.lan_mask == self.lan_net || dst & self.lan_mask == self.lan_net
        };
        let w = if lan_side {
            &mut self.lan
        } else {
            &mut self.wan
        };
        if let Some(w) = w
            && w.write_packet(packet).is_err()
        {
            stats.pcap_errors.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Flushes both files.
    pub fn flush(&mut self) -> io::Result<()> {
        for w in [&mut self.lan, &mut self.wan].into_iter().flatten() {
            w.flush()?;
        }
        Ok(())
    }
}

/// Completes the TCP/UDP checksum of an IPv4 packet whose field holds the partial
/// (pseudo-header) sum, as the kernel's `skb_checksum_help` would: RFC 1071 sum from the
/// transport header to the end, complemented, 0 sent as 0xffff. Anything else is left alone.
fn complete_partial_checksum(packet: &mut [u8]) {
    let Some(&ver_ihl) = packet.first() else {
        return;
    };
    let ihl = usize::from(ver_ihl & 0x0f) * 4;
    let field = match packet.get(9) {
        Some(6) => 16, // TCP (RFC 793)
        Some(17) => 6, // UDP (RFC 768)
        _ => return,
    };
    let Some(segment) = packet.get(ihl..) else {
        return;
    };
    if ver_ihl >> 4 != 4 || segment.len() < field + 2 {
        return;
    }
    let c = match inet_checksum(segment) {
        0 => 0xffff,
        c => c,
    };
    packet[ihl + field..ihl + field + 2].copy_from_slice(&c.to_be_bytes());
}

fn prefix_mask(len: u8) -> u32 {
    if len == 0 {
        0
    } else {
        u32::MAX << (32 - u32::from(len.min(32)))
    }
}

/// The two devices: `lan` gets what arrives on the LAN interface, `wan` what arrives on the
/// WAN interface.
#[derive(Debug)]
pub struct Tuns {
    pub lan: Tun,
    pub wan: Tun,
}

/// Runs until the LAN TUN's waker fires or reading fails. Flushes the capture before
/// returning. `busy_poll`: how long to keep looking for packets after the last one
/// ([`BUSY_POLL`]).
pub fn run(
    tuns: &Tuns,
    nat: &Mutex<Nat>,
    capture: &mut Capture,
    stats: &ShellStats,
    busy_poll: Duration,
) -> io::Result<()> {
    let result = run_loop(tuns, nat, capture, stats, busy_poll);
    if let Err(e) = capture.flush() {
        warn!("capture: flush failed: {e}");
    }
    result
}

fn run_loop(
    tuns: &Tuns,
    nat: &Mutex<Nat>,
    capture: &mut Capture,
    stats: &ShellStats,
    busy_poll: Duration,
) -> io::Result<()> {
    let waker = tuns.lan.waker();
    let sides = [(&tuns.lan, Side::Lan), (&tuns.wan, Side::Wan)];
    // The virtio header, then the largest IPv4 packet (a GSO super-packet included).
    let mut buf = vec![0u8; VNET_HDR_MAX + MAX_PACKET];
    let mut deadline = lock(nat).next_deadline();
    let mut last_flush = Instant::now();
    let mut last_packet: Option<Instant> = None;
    loop {
        let now = Instant::now();
        // Busy polling ([`BUSY_POLL`]): shortly after a packet, look again without sleeping.
        let spinning = last_packet.is_some_and(|t| now.saturating_duration_since(t) < busy_poll);
        let sleep = if spinning {
            Duration::ZERO
        } else {
            deadline.map_or(MAX_SLEEP, |d| {
                d.saturating_duration_since(now).min(MAX_SLEEP)
            })
        };
        let ready = wait_any([&tuns.lan, &tuns.wan], &waker, sleep)?;
        if ready.woken {
            debug!("dataplane: shutdown requested");
            return Ok(());
        }
        let readable = ready.readable.contains(&true);
        if !readable && spinning && deadline.is_none_or(|d| d > now) {
            // Polite spinning: a runnable endpoint on this core gets it (sched_yield(2)).
            std::thread::yield_now();
            continue;
        }
        {
            let mut nat = lock(nat);
            let now = Instant::now();
            for ((tun, side), _) in sides.iter().zip(ready.readable).filter(|(_, r)| *r) {
                for _ in 0..BATCH {
                    let Some(n) = tun.recv(&mut buf)? else { break };
                    stats.tun_rx.fetch_add(1, Ordering::Relaxed);
                    last_packet = Some(now);
                    let Some(frame) = buf.get_mut(..n) else {
                        continue;
                    };
                    handle(tun, *side, &mut nat, now, frame, capture, stats);
                }
            }
            if nat.next_deadline().is_some_and(|d| d <= now) {
                // Bounded: the rest waits for the next turn of the loop, after the packets.
                nat.expire_some(now, EXPIRE_BUDGET);
            }
            deadline = nat.next_deadline();
        }
        if capture.active() && last_flush.elapsed() >= FLUSH_EVERY {
            last_flush = Instant::now();
            if let Err(e) = capture.flush() {
                warn!("capture: flush failed: {e}");
                stats.pcap_errors.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

/// Packets dropped because the kernel marked them GSO with a checksum the engine cannot keep
/// partial (never seen; only the first few are logged).
static ODD_OFFLOAD_DROPS: AtomicU64 = AtomicU64::new(0);

/// One frame read from the TUN of `side`: the virtio header (none without offloads), then
/// the packet.
fn handle(
    tun: &Tun,
    side: Side,
    nat: &mut Nat,
    now: Instant,
    frame: &mut [u8],
    capture: &mut Capture,
    stats: &ShellStats,
) {
    let hlen = tun.vnet_hdr_len();
    if frame.len() < hlen {
        return;
    }
    let (hdr, packet) = frame.split_at_mut(hlen);
    let csum = match VirtioNetHdr::parse(hdr) {
        Some(h) if h.needs_csum() => match offload_checksum(packet, &h) {
            Some(state) => {
                if state == ChecksumState::Complete {
                    // Completed here: tell the kernel there is nothing left to do.
                    hdr[0] &= !VIRTIO_NET_HDR_F_NEEDS_CSUM;
                }
                state
            }
            None => {
                if ODD_OFFLOAD_DROPS.fetch_add(1, Ordering::Relaxed) < 10 {
                    warn!(
                        "dataplane: dropped a GSO packet with its checksum at an odd place: {h:?}"
                    );
                }
                return;
            }
        },
        _ => ChecksumState::Complete,
    };
    let capturing = capture.active();
    if capturing {
        capture.record_as(packet, csum, stats);
    }
    if let Verdict::Forward = nat.process_with(now, side, packet, csum) {
        if capturing {
            capture.record_as(packet, csum, stats);
        }
        // The header goes back as it came: the NAT changes no length or offset in it.
        send(tun.send_frame(frame), stats);
    }
    while let Some(extra) = nat.poll_transmit() {
        if capturing {
            capture.record(&extra, stats);
        }
        send(tun.send(&extra), stats);
    }
}

/// How the engine sees a packet that the kernel marked `VIRTIO_NET_HDR_F_NEEDS_CSUM`
/// (linux/virtio_net.h). The usual case, a TCP or UDP packet (GSO or not, never a fragment)
/// whose checksum starts at its transport header and sits in its usual field, stays partial
/// for the kernel to finish. Anything else is completed here as the kernel's
/// `skb_checksum_help` would (RFC 1071 sum from `csum_start` to the end, complemented, 0 sent
/// as 0xffff) and goes on complete; `None` for a GSO packet of that kind (never seen: the
/// kernel only makes TCP/UDP GSO packets) or offsets outside the packet.
fn offload_checksum(packet: &mut [u8], h: &VirtioNetHdr) -> Option<ChecksumState> {
    let start = usize::from(h.csum_start);
    let at = start + usize::from(h.csum_offset);
    if let [ver_ihl, _, _, _, _, _, ff0, ff1, _, proto, ..] = *packet {
        let ihl = usize::from(ver_ihl & 0x0f) * 4;
        // RFC 791: MF or a fragment offset makes a fragment.
        let fragment = u16::from_be_bytes([ff0, ff1]) & 0x3fff != 0;
        let usual = match proto {
            6 => Some(16), // TCP checksum (RFC 793)
            17 => Some(6), // UDP checksum (RFC 768)
            _ => None,
        };
        if ver_ihl >> 4 == 4
            && !fragment
            && start == ihl
            && usual == Some(usize::from(h.csum_offset))
        {
            return Some(ChecksumState::Partial);
        }
    }
    if h.is_gso() || at + 2 > packet.len() {
        return None;
    }
    // The field holds the partial sum and is summed with the rest, as in skb_checksum_help.
    let c = match inet_checksum(packet.get(start..)?) {
        0 => 0xffff,
        c => c,
    };
    packet
        .get_mut(at..at + 2)?
        .copy_from_slice(&c.to_be_bytes());
    Some(ChecksumState::Complete)
}

/// Counts the result of one write.
fn send(result: io::Result<()>, stats: &ShellStats) {
    match result {
        Ok(()) => {
            stats.tun_tx.fetch_add(1, Ordering::Relaxed);
        }
        Err(e) => {
            // The kernel refused this one packet (ENOBUFS, EINVAL on a bad header...): count it,
            // keep going. A real TUN failure shows up on the next read.
            if stats.tun_tx_errors.fetch_add(1, Ordering::Relaxed) < 10 {
                warn!("dataplane: TUN write failed: {e}");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks() {
        assert_eq!(prefix_mask(24), 0xffff_ff00);
        assert_eq!(prefix_mask(32), 0xffff_ffff);
        assert_eq!(prefix_mask(0), 0);
    }

    /// A UDP packet 192.168.1.100:5000 -> 198.51.100.10:53 with `payload`, its checksum
    /// partial (the pseudo-header sum) as the kernel hands it over with NEEDS_CSUM, and the
    /// complete checksum it should have.
    fn partial_udp(payload: &[u8]) -> (Vec<u8>, u16) {
        let len = 8 + payload.len();
        let mut p = vec![0x45, 0, 0, 0, 0, 0, 0x40, 0, 64, 17, 0, 0];
        p.extend_from_slice(&[192, 168, 1, 100, 198, 51, 100, 10]);
        p[2..4].copy_from_slice(&((20 + len) as u16).to_be_bytes());
        let ipc = inet_checksum(&p);
        p[10..12].copy_from_slice(&ipc.to_be_bytes());
        p.extend_from_slice(&5000u16.to_be_bytes());
        p.extend_from_slice(&53u16.to_be_bytes());
        p.extend_from_slice(&(len as u16).to_be_bytes());
        p.extend_from_slice(&[0, 0]);
        p.extend_from_slice(payload);
        let mut pseudo = p[12..20].to_vec();
        pseudo.extend_from_slice(&[0, 17]);
        pseudo.extend_from_slice(&(len as u16).to_be_bytes());
        let mut whole = pseudo.clone();
        whole.extend_from_slice(&p[20..]);
        let full = inet_checksum(&whole);
        let partial = !inet_checksum(&pseudo);
        p[26..28].copy_from_slice(&partial.to_be_bytes());
        (p, full)
    }

    fn needs_csum(start: u16, offset: u16, gso: bool) -> VirtioNetHdr {
        VirtioNetHdr {
            flags: VIRTIO_NET_HDR_F_NEEDS_CSUM,
            gso_type: if gso { 5 } else { 0 },
            csum_start: start,
            csum_offset: offset,
            ..VirtioNetHdr::default()
        }
    }

    #[test]
    fn usual_partial_checksum_stays_partial() {
        let (mut p, _) = partial_udp(b"query");
        let before = p.clone();
        let state = offload_checksum(&mut p, &needs_csum(20, 6, false));
        assert_eq!(state, Some(ChecksumState::Partial));
        assert_eq!(p, before);
    }

    #[test]
    fn partial_checksum_the_engine_cannot_keep_is_completed_as_the_kernel_would() {
        // A fragment (MF set) never stays partial: completed here, it gets exactly the full
        // checksum computed independently over pseudo-header and datagram.
        let (mut p, full) = partial_udp(b"first fragment");
        p[6] |= 0x20;
        let state = offload_checksum(&mut p, &needs_csum(20, 6, false));
        assert_eq!(state, Some(ChecksumState::Complete));
        assert_eq!(u16::from_be_bytes([p[26], p[27]]), full);
        // ICMP (no pseudo-header, the partial field is 0): completed to a sum that checks out.
        let mut icmp = vec![0x45, 0, 0, 32, 0, 0, 0, 0, 64, 1, 0, 0, 192, 168, 1, 100];
        icmp.extend_from_slice(&[198, 51, 100, 10, 8, 0, 0, 0, 0x12, 0x34, 0, 1]);
        icmp.extend_from_slice(b"pingping");
        let state = offload_checksum(&mut icmp, &needs_csum(20, 2, false));
        assert_eq!(state, Some(ChecksumState::Complete));
        assert_eq!(inet_checksum(&icmp[20..]), 0);
    }

    #[test]
    fn captured_copies_get_the_complete_checksum() {
        let (p, full) = partial_udp(b"captured");
        let mut copy = p.clone();
        complete_partial_checksum(&mut copy);
        assert_eq!(u16::from_be_bytes([copy[26], copy[27]]), full);
        assert_eq!(copy[..26], p[..26]);
        // Short, non-IPv4 or other protocols: untouched, no panic.
        for mut odd in [vec![], vec![0x45], vec![0x65; 40], p[..24].to_vec()] {
            let before = odd.clone();
            complete_partial_checksum(&mut odd);
            assert_eq!(odd, before);
        }
    }

    #[test]
    fn odd_gso_and_out_of_range_offsets_are_refused_without_panic() {
        let (mut p, _) = partial_udp(b"x");
        assert_eq!(offload_checksum(&mut p, &needs_csum(24, 2, true)), None);
        assert_eq!(offload_checksum(&mut p, &needs_csum(60000, 6, false)), None);
        assert_eq!(
            offload_checksum(&mut p, &needs_csum(20, 65535, false)),
            None
        );
        assert_eq!(
            offload_checksum(&mut [0x45], &needs_csum(0, 0, false)),
            None
        );
    }

    #[test]
    fn capture_sides() {
        let dir = std::env::temp_dir();
        let lan = dir.join(format!("router-cap-lan-{}.pcap", std::process::id()));
        let wan = dir.join(format!("router-cap-wan-{}.pcap", std::process::id()));
        let mut c =
            Capture::open(Some(&lan), Some(&wan), (Ipv4Addr::new(192, 168, 1, 1), 24)).unwrap();
        let stats = ShellStats::default();
        let mut p = [0u8; 20];
        p[0] = 0x45;
        p[12..16].copy_from_slice(&[192, 168, 1, 100]);
        p[16..20].copy_from_slice(&[198, 51, 100, 10]);
        c.record(&p, &stats); // outbound before: LAN
        p[12..16].copy_from_slice(&[203, 0, 113, 2]);
        c.record(&p, &stats); // outbound after: WAN
        p[16..20].copy_from_slice(&[192, 168, 1, 100]);
        c.record(&p, &stats); // inbound after / hairpin after: LAN
        c.flush().unwrap();
        let lan_len = std::fs::metadata(&lan).unwrap().len();
        let wan_len = std::fs::metadata(&wan).unwrap().len();
        let _ = std::fs::remove_file(&lan);
        let _ = std::fs::remove_file(&wan);
        assert_eq!(lan_len, 24 + 2 * (16 + 20));
        assert_eq!(wan_len, 24 + 16 + 20);
    }
}
