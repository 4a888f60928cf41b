//! The dataplane thread: read a packet from the TUN, let the engine translate it, write it back.
//!
//! One read and one write per forwarded packet (the TUN offers no batching without
//! IFF_MULTI_QUEUE/vnet headers). The engine lock is taken once per batch of up to
//! [`BATCH`] packets, so the control API waits at most one batch. Timers: the engine's
//! `next_deadline` decides how long `poll(2)` sleeps, capped at [`MAX_SLEEP`].

use std::fs::File;
use std::io::{self, BufWriter};
use std::net::Ipv4Addr;
use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use tracing::{debug, warn};

use crate::device::pcap::PcapWriter;
use crate::device::tun::{MAX_PACKET, Ready, Tun};
use crate::metrics::ShellStats;
use crate::nat::{Nat, Verdict};

/// Packets handled per lock of the engine.
pub const BATCH: usize = 64;
/// Longest sleep without looking at the clock.
pub const MAX_SLEEP: Duration = Duration::from_millis(100);
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
        })
    }

    fn active(&self) -> bool {
        self.lan.is_some() || self.wan.is_some()
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

fn prefix_mask(len: u8) -> u32 {
    if len == 0 {
        0
    } else {
        u32::MAX << (32 - u32::from(len.min(32)))
    }
}

/// Runs until the TUN's waker fires or reading fails. Flushes the capture before returning.
pub fn run(
    tun: &Tun,
    nat: &Mutex<Nat>,
    capture: &mut Capture,
    stats: &ShellStats,
) -> io::Result<()> {
    let result = run_loop(tun, nat, capture, stats);
    if let Err(e) = capture.flush() {
        warn!("capture: flush failed: {e}");
    }
    result
}

fn run_loop(
    tun: &Tun,
    nat: &Mutex<Nat>,
    capture: &mut Capture,
    stats: &ShellStats,
) -> io::Result<()> {
    let mut buf = vec![0u8; MAX_PACKET];
    let mut deadline = lock(nat).next_deadline();
    let mut last_flush = Instant::now();
    loop {
        let now = Instant::now();
        let sleep = deadline.map_or(MAX_SLEEP, |d| {
            d.saturating_duration_since(now).min(MAX_SLEEP)
        });
        let ready = tun.wait(sleep)?;
        if ready == Ready::Woken {
            debug!("dataplane: shutdown requested");
            return Ok(());
        }
        {
            let mut nat = lock(nat);
            let now = Instant::now();
            if ready == Ready::Readable {
                for _ in 0..BATCH {
                    let Some(n) = tun.recv(&mut buf)? else { break };
                    stats.tun_rx.fetch_add(1, Ordering::Relaxed);
                    handle(tun, &mut nat, now, &mut buf[..n], capture, stats);
                }
            }
            if nat.next_deadline().is_some_and(|d| d <= now) {
                nat.expire(now);
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

fn handle(
    tun: &Tun,
    nat: &mut Nat,
    now: Instant,
    packet: &mut [u8],
    capture: &mut Capture,
    stats: &ShellStats,
) {
    let capturing = capture.active();
    if capturing {
        capture.record(packet, stats);
    }
    if let Verdict::Forward = nat.process(now, packet) {
        if capturing {
            capture.record(packet, stats);
        }
        send(tun, packet, stats);
    }
    while let Some(extra) = nat.poll_transmit() {
        if capturing {
            capture.record(&extra, stats);
        }
        send(tun, &extra, stats);
    }
}

fn send(tun: &Tun, packet: &[u8], stats: &ShellStats) {
    match tun.send(packet) {
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
