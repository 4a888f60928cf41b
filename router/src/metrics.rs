//! Prometheus text exposition format (version 0.0.4) for `GET /metrics`.
//!
//! Format reference: prometheus.io/docs/instrumenting/exposition_formats. Counters end in
//! `_total`; every family has HELP and TYPE lines; label values here are fixed ASCII names.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::nat::{Counters, DropReason};

/// Counters kept by the IO shell itself (not the engine).
#[derive(Debug, Default)]
pub struct ShellStats {
    /// Packets read from the TUN device.
    pub tun_rx: AtomicU64,
    /// Packets written to the TUN device.
    pub tun_tx: AtomicU64,
    /// Writes the kernel refused (the packet is lost).
    pub tun_tx_errors: AtomicU64,
    /// Packets that could not be written to a pcap file.
    pub pcap_errors: AtomicU64,
}

/// A copy of [`ShellStats`] at one moment.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct ShellSnapshot {
    pub tun_rx: u64,
    pub tun_tx: u64,
    pub tun_tx_errors: u64,
    pub pcap_errors: u64,
}

impl ShellStats {
    /// Reads every counter (relaxed: they are independent statistics).
    pub fn snapshot(&self) -> ShellSnapshot {
        ShellSnapshot {
            tun_rx: self.tun_rx.load(Ordering::Relaxed),
            tun_tx: self.tun_tx.load(Ordering::Relaxed),
            tun_tx_errors: self.tun_tx_errors.load(Ordering::Relaxed),
            pcap_errors: self.pcap_errors.load(Ordering::Relaxed),
        }
    }
}

fn family(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

/// Renders every metric.
pub fn render(c: &Counters, sessions_active: usize, shell: &ShellSnapshot) -> String {
    let mut o = String::with_capacity(2048);
    family(
        &mut o,
        "router_packets_total",
        "counter",
        "Packets translated by the NAT, by direction (out: LAN to WAN, in: WAN to LAN, hairpin: LAN to LAN via the WAN address).",
    );
    for (dir, v) in [
        ("out", c.packets_out),
        ("in", c.packets_in),
        ("hairpin", c.packets_hairpin),
    ] {
        let _ = writeln!(o, "router_packets_total{{direction=\"{dir}\"}} {v}");
    }
    family(
        &mut o,
        "router_bytes_total",
        "counter",
        "IP bytes translated by the NAT, by direction.",
    );
    for (dir, v) in [("out", c.bytes_out), ("in", c.bytes_in)] {
        let _ = writeln!(o, "router_bytes_total{{direction=\"{dir}\"}} {v}");
    }
    family(
        &mut o,
        "router_sessions_active",
        "gauge",
        "Sessions (mappings with their remote endpoint) in the NAT table.",
    );
    let _ = writeln!(o, "router_sessions_active {sessions_active}");
    family(
        &mut o,
        "router_sessions_created_total",
        "counter",
        "Sessions created since start.",
    );
    let _ = writeln!(o, "router_sessions_created_total {}", c.sessions_created);
    family(
        &mut o,
        "router_sessions_expired_total",
        "counter",
        "Sessions removed by their idle timeout since start.",
    );
    let _ = writeln!(o, "router_sessions_expired_total {}", c.sessions_expired);
    family(
        &mut o,
        "router_sessions_evicted_total",
        "counter",
        "Unconfirmed inbound sessions removed to make room when the table was full.",
    );
    let _ = writeln!(o, "router_sessions_evicted_total {}", c.sessions_evicted);
    family(
        &mut o,
        "router_fragments_evicted_total",
        "counter",
        "Held fragments dropped when their datagram gave way to a newer one.",
    );
    let _ = writeln!(o, "router_fragments_evicted_total {}", c.fragments_evicted);
    family(
        &mut o,
        "router_fragments_held_total",
        "counter",
        "IPv4 fragments held until their first fragment arrived.",
    );
    let _ = writeln!(o, "router_fragments_held_total {}", c.fragments_held);
    family(
        &mut o,
        "router_drops_total",
        "counter",
        "Packets dropped by the NAT, by reason.",
    );
    for r in DropReason::ALL.iter().copied() {
        let _ = writeln!(
            o,
            "router_drops_total{{reason=\"{}\"}} {}",
            r.name(),
            c.drop_count(r)
        );
    }
    family(
        &mut o,
        "router_tun_packets_total",
        "counter",
        "Packets through the TUN device, by direction (rx: read from the kernel, tx: written back).",
    );
    let _ = writeln!(
        o,
        "router_tun_packets_total{{direction=\"rx\"}} {}",
        shell.tun_rx
    );
    let _ = writeln!(
        o,
        "router_tun_packets_total{{direction=\"tx\"}} {}",
        shell.tun_tx
    );
    family(
        &mut o,
        "router_tun_write_errors_total",
        "counter",
        "Packets the kernel refused when written to the TUN device.",
    );
    let _ = writeln!(o, "router_tun_write_errors_total {}", shell.tun_tx_errors);
    family(
        &mut o,
        "router_pcap_errors_total",
        "counter",
        "Packets that could not be written to a capture file.",
    );
    let _ = writeln!(o, "router_pcap_errors_total {}", shell.pcap_errors);
    o
}

/// Appends the DHCP server's families (RFC 2131 message kinds, drops by reason, bound leases).
pub fn render_dhcp(o: &mut String, d: &crate::dhcp::DhcpStats) {
    family(
        o,
        "router_dhcp_messages_total",
        "counter",
        "DHCP messages: received from clients, and replies sent by kind (RFC 2131 section 4.3).",
    );
    for (kind, v) in [
        ("received", d.received),
        ("offer", d.offered),
        ("ack", d.acked),
        ("nak", d.nacked),
        ("decline", d.declined),
        ("release", d.released),
        ("inform", d.informed),
    ] {
        let _ = writeln!(o, "router_dhcp_messages_total{{kind=\"{kind}\"}} {v}");
    }
    family(
        o,
        "router_dhcp_drops_total",
        "counter",
        "DHCP messages dropped without an answer, by reason.",
    );
    for (reason, v) in &d.dropped {
        let _ = writeln!(o, "router_dhcp_drops_total{{reason=\"{reason}\"}} {v}");
    }
    family(
        o,
        "router_dhcp_errors_total",
        "counter",
        "DHCP replies that could not be sent, and lease-file writes that failed.",
    );
    let _ = writeln!(
        o,
        "router_dhcp_errors_total{{op=\"send\"}} {}",
        d.send_errors
    );
    let _ = writeln!(
        o,
        "router_dhcp_errors_total{{op=\"persist\"}} {}",
        d.persist_errors
    );
    family(
        o,
        "router_dhcp_lease_writes_total",
        "counter",
        "Lease-file writes that succeeded (write, fsync, rename; one covers every change made \
         while the previous one was in flight).",
    );
    let _ = writeln!(o, "router_dhcp_lease_writes_total {}", d.lease_writes);
    family(
        o,
        "router_dhcp_acks_held_total",
        "counter",
        "DHCPACKs held until a lease-file write covered their binding (RFC 2131 section 3.1).",
    );
    let _ = writeln!(o, "router_dhcp_acks_held_total {}", d.acks_held);
    family(
        o,
        "router_dhcp_leases_bound",
        "gauge",
        "Leases currently bound (not expired, not released).",
    );
    let _ = writeln!(o, "router_dhcp_leases_bound {}", d.bound);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_family_has_help_and_type_and_samples_parse() {
        let c = Counters {
            packets_out: 3,
            bytes_out: 300,
            packets_in: 2,
            bytes_in: 200,
            packets_hairpin: 1,
            sessions_created: 4,
            ..Counters::default()
        };
        let mut text = render(&c, 5, &ShellSnapshot::default());
        let dhcp = crate::dhcp::DhcpStats {
            received: 9,
            offered: 2,
            acked: 2,
            nacked: 1,
            declined: 0,
            released: 1,
            informed: 0,
            dropped_total: 3,
            dropped: [("not_bootrequest", 3)].into_iter().collect(),
            send_errors: 0,
            persist_errors: 0,
            lease_writes: 2,
            acks_held: 2,
            bound: 1,
            pool_start: std::net::Ipv4Addr::new(192, 168, 1, 100),
            pool_end: std::net::Ipv4Addr::new(192, 168, 1, 199),
            lease_time: 3600,
        };
        render_dhcp(&mut text, &dhcp);
        assert!(text.contains("router_dhcp_messages_total{kind=\"ack\"} 2\n"));
        assert!(text.contains("router_dhcp_drops_total{reason=\"not_bootrequest\"} 3\n"));
        assert!(text.contains("router_dhcp_leases_bound 1\n"));
        assert!(text.contains("router_dhcp_lease_writes_total 2\n"));
        assert!(text.contains("router_packets_total{direction=\"out\"} 3\n"));
        assert!(text.contains("router_packets_total{direction=\"hairpin\"} 1\n"));
        assert!(text.contains("router_bytes_total{direction=\"in\"} 200\n"));
        assert!(text.contains("router_sessions_active 5\n"));
        assert!(text.contains("router_sessions_created_total 4\n"));
        for r in DropReason::ALL {
            assert!(
                text.contains(&format!(
                    "router_drops_total{{reason=\"{}\"}} 0\n",
                    r.name()
                )),
                "{}",
                r.name()
            );
        }
        let mut declared = std::collections::HashSet::new();
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                let mut it = rest.split(' ');
                declared.insert(it.next().unwrap().to_string());
                assert!(matches!(it.next(), Some("counter" | "gauge")), "{line}");
            } else if !line.starts_with("# HELP ") {
                // name{labels} value
                let (name, value) = line.rsplit_once(' ').unwrap();
                let base = name.split('{').next().unwrap();
                assert!(declared.contains(base), "{base} has no TYPE line");
                value.parse::<u64>().unwrap();
                assert!(
                    base.chars().all(|ch| ch.is_ascii_lowercase() || ch == '_'),
                    "{base}"
                );
            }
        }
    }
}
