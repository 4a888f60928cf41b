//! What the fuzz targets share: the fixtures a target needs to build a core (an advertiser, a
//! NAT, an IGD core), and the seed writer of `make-seeds`. Targets are in `fuzz_targets/`.

use std::net::Ipv4Addr;

use std::time::Instant;

use router::mapping::TableConfig;
use router::upnp::core::{Core, CoreConfig};
use router::upnp::ssdp::Advertiser;
use shared::description::{RootConfig, root_description};
use shared::ssdp::IgdIdentity;

/// The router's LAN address in every fixture (the lab's).
pub const LAN_ADDR: Ipv4Addr = Ipv4Addr::new(192, 168, 1, 1);
/// The router's WAN address in every fixture (documentation range, as the lab's).
pub const WAN_ADDR: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 2);

/// The UUIDs of the router's root device, WANDevice and WANConnectionDevice.
pub const UUIDS: [&str; 3] = [
    "4f1c2a3b-0000-4000-8000-000000000001",
    "4f1c2a3b-0000-4000-8000-000000000002",
    "4f1c2a3b-0000-4000-8000-000000000003",
];

/// The IGD the router advertises by SSDP, version `version`.
pub fn advertiser(version: u32) -> Advertiser {
    Advertiser {
        id: IgdIdentity {
            root_uuid: UUIDS[0].into(),
            wan_uuid: UUIDS[1].into(),
            wan_conn_uuid: UUIDS[2].into(),
            version,
        },
        location: "http://192.168.1.1:5000/rootDesc.xml".into(),
        location_v1: "http://192.168.1.1:5000/rootDesc1.xml".into(),
        server: router::upnp::SERVER.into(),
        max_age: 1800,
        boot_id: 1,
        config_id: 1,
    }
}

/// The router's root description, IGD version `version`.
pub fn description(version: u32) -> String {
    root_description(&RootConfig {
        igd_version: version,
        uuids: UUIDS.map(String::from),
        info: router::upnp::default_info(),
        config_id: 1,
    })
}

/// The router's IGD core (IGD:2) over `table`, started at `t0`.
pub fn igd_core(table: TableConfig, t0: Instant) -> Core {
    let cfg = CoreConfig {
        igd_version: 2,
        wan_conn_uuid: UUIDS[2].into(),
        link_bit_rates: (1_000_000, 10_000_000),
    };
    Core::new(cfg, table, t0)
}

/// Whether the checksums of an IPv4 packet hold, recomputed by etherparse (the IP header;
/// TCP and UDP over the pseudo-header, RFC 793 §3.1, RFC 768; ICMP over the message, RFC 792)
/// and not by the engine's code. `None`: the packet has no transport checksum to check here
/// (a fragment, another protocol, or something etherparse cannot read).
pub fn checksums(packet: &[u8]) -> Option<Checksums> {
    use etherparse::{IpNumber, Ipv4Slice, TcpHeaderSlice, UdpHeaderSlice};
    let ip = Ipv4Slice::from_slice(packet).ok()?;
    let header = ip.header().to_header();
    let ip_ok = header.calc_header_checksum() == header.header_checksum;
    let payload = ip.payload();
    if payload.fragmented {
        return Some(Checksums { ip_ok, l4_ok: None });
    }
    let data = payload.payload;
    let l4_ok = match payload.ip_number {
        IpNumber::TCP => {
            let tcp = TcpHeaderSlice::from_slice(data).ok()?;
            let sum = tcp
                .to_header()
                .calc_checksum_ipv4(&header, &data[tcp.slice().len()..])
                .ok()?;
            Some(sum == tcp.checksum())
        }
        IpNumber::UDP => {
            let udp = UdpHeaderSlice::from_slice(data).ok()?;
            // RFC 768: 0 = no checksum. The UDP length must cover exactly the IP payload for
            // the sum to mean anything.
            if udp.checksum() == 0 || usize::from(udp.length()) != data.len() {
                None
            } else {
                let sum = udp
                    .to_header()
                    .calc_checksum_ipv4(&header, &data[8..])
                    .ok()?;
                Some(sum == udp.checksum())
            }
        }
        IpNumber::ICMP => Some(rfc1071(data) == 0),
        _ => None,
    };
    Some(Checksums { ip_ok, l4_ok })
}

/// What [`checksums`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Checksums {
    /// The IPv4 header checksum holds.
    pub ip_ok: bool,
    /// The TCP/UDP/ICMP checksum holds (`None`: nothing to check).
    pub l4_ok: Option<bool>,
}

/// The plain RFC 1071 sum, complemented: 0 over data that includes a right checksum.
pub fn rfc1071(data: &[u8]) -> u16 {
    let mut sum = 0u32;
    for c in data.chunks(2) {
        let w = if c.len() == 2 {
            u16::from_be_bytes([c[0], c[1]])
        } else {
            u16::from(c[0]) << 8
        };
        sum += u32::from(w);
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

pub mod seeds;
