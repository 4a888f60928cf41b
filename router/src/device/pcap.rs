//! A classic pcap writer (the libpcap file format, pcap-savefile(5)), LINKTYPE_RAW.
//!
//! Packets from a TUN device without packet information are bare IP packets, which is exactly
//! LINKTYPE_RAW (101): no link-layer header, the version nibble tells IPv4 from IPv6.

use std::io::{self, Write};
use std::time::{SystemTime, UNIX_EPOCH};

/// LINKTYPE_RAW: raw IPv4/IPv6 (<https://www.tcpdump.org/linktypes.html>).
pub const LINKTYPE_RAW: u32 = 101;
/// Longest packet we record; a TUN packet never exceeds 64 KiB.
pub const SNAPLEN: u32 = 65535;
const MAGIC_MICROS: u32 = 0xa1b2_c3d4;

/// Writes a pcap stream to `W` (usually a `BufWriter<File>`), native byte order, microseconds.
#[derive(Debug)]
pub struct PcapWriter<W: Write> {
    out: W,
}

impl<W: Write> PcapWriter<W> {
    /// Writes the 24-byte global header.
    pub fn new(mut out: W) -> io::Result<Self> {
        let mut h = [0u8; 24];
        h[0..4].copy_from_slice(&MAGIC_MICROS.to_ne_bytes());
        h[4..6].copy_from_slice(&2u16.to_ne_bytes()); // version 2.4
        h[6..8].copy_from_slice(&4u16.to_ne_bytes());
        // 8..16: thiszone and sigfigs, both 0.
        h[16..20].copy_from_slice(&SNAPLEN.to_ne_bytes());
        h[20..24].copy_from_slice(&LINKTYPE_RAW.to_ne_bytes());
        out.write_all(&h)?;
        Ok(PcapWriter { out })
    }

    /// Appends one packet stamped with the wall clock.
    pub fn write_packet(&mut self, packet: &[u8]) -> io::Result<()> {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        self.write_packet_at(now.as_secs() as u32, now.subsec_micros(), packet)
    }

    /// Appends one packet with an explicit timestamp (seconds and microseconds since the epoch).
    pub fn write_packet_at(&mut self, secs: u32, micros: u32, packet: &[u8]) -> io::Result<()> {
        let orig_len = packet.len() as u32;
        let data = &packet[..packet.len().min(SNAPLEN as usize)];
        let mut h = [0u8; 16];
        h[0..4].copy_from_slice(&secs.to_ne_bytes());
        h[4..8].copy_from_slice(&micros.to_ne_bytes());
        h[8..12].copy_from_slice(&(data.len() as u32).to_ne_bytes());
        h[12..16].copy_from_slice(&orig_len.to_ne_bytes());
        self.out.write_all(&h)?;
        self.out.write_all(data)
    }

    /// Flushes the underlying writer.
    pub fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }

    /// Returns the underlying writer.
    pub fn into_inner(self) -> W {
        self.out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An ICMP echo request 192.168.1.100 -> 198.51.100.10 (28 bytes: IPv4 + ICMP header).
    const PING: [u8; 28] = [
        0x45, 0x00, 0x00, 0x1c, 0x00, 0x01, 0x00, 0x00, 0x40, 0x01, 0x00, 0x00, 192, 168, 1, 100,
        198, 51, 100, 10, 0x08, 0x00, 0xf7, 0xfe, 0x00, 0x01, 0x00, 0x00,
    ];

    fn with_ip_checksum(mut p: [u8; 28]) -> [u8; 28] {
        let mut sum = 0u32;
        for c in p[..20].chunks(2) {
            sum += u32::from(u16::from_be_bytes([c[0], c[1]]));
        }
        while sum > 0xffff {
            sum = (sum & 0xffff) + (sum >> 16);
        }
        p[10..12].copy_from_slice(&(!(sum as u16)).to_be_bytes());
        p
    }

    #[test]
    fn byte_fixture() {
        let mut w = PcapWriter::new(Vec::new()).unwrap();
        w.write_packet_at(1_700_000_000, 42, &PING).unwrap();
        let bytes = w.into_inner();
        let mut want = Vec::new();
        want.extend_from_slice(&0xa1b2_c3d4u32.to_ne_bytes());
        want.extend_from_slice(&2u16.to_ne_bytes());
        want.extend_from_slice(&4u16.to_ne_bytes());
        for word in [0u32, 0, 65535, 101, 1_700_000_000, 42, 28, 28] {
            want.extend_from_slice(&word.to_ne_bytes());
        }
        want.extend_from_slice(&PING);
        assert_eq!(bytes, want);
        assert_eq!(bytes.len(), 24 + 16 + 28);
    }

    #[test]
    fn tshark_reads_it() {
        if std::process::Command::new("tshark")
            .arg("-v")
            .output()
            .is_err()
        {
            eprintln!("tshark not installed: skipping");
            return;
        }
        let path =
            std::env::temp_dir().join(format!("router-pcap-test-{}.pcap", std::process::id()));
        let file = std::fs::File::create(&path).unwrap();
        let mut w = PcapWriter::new(io::BufWriter::new(file)).unwrap();
        let ping = with_ip_checksum(PING);
        w.write_packet(&ping).unwrap();
        w.write_packet(&ping).unwrap();
        w.flush().unwrap();
        drop(w);
        let out = std::process::Command::new("tshark")
            .args(["-n", "-r"])
            .arg(&path)
            .args([
                "-T",
                "fields",
                "-e",
                "ip.src",
                "-e",
                "ip.dst",
                "-e",
                "icmp.type",
            ])
            .output()
            .unwrap();
        let _ = std::fs::remove_file(&path);
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "tshark failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(text.lines().count(), 2, "{text}");
        assert!(
            text.starts_with("192.168.1.100\t198.51.100.10\t8"),
            "{text}"
        );
    }
}
