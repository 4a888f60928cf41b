//! ICMP error translation (RFC 5508 section 4; RFC 3022 section 4.3; RFC 792 message format).
//!
//! An ICMP error (destination unreachable incl. fragmentation needed, time exceeded, parameter
//! problem) quotes the IP header and at least 8 bytes of the packet that caused it. For the
//! error to be useful to the host behind the NAT (traceroute, path-MTU discovery, "port
//! unreachable"), the quoted packet must be translated back too:
//!
//! - **inbound** (from an internet router to the WAN address): the quoted packet is one we
//!   sent out, `WAN:ext -> remote`. Its session gives the internal endpoint; the outer
//!   destination, the quoted source address and the quoted source port (ICMP: echo identifier)
//!   are restored.
//! - **outbound** (from a LAN host about a packet it received): the quoted packet is
//!   `remote -> internal`; the outer source, the quoted destination address and the quoted
//!   destination port become the WAN address and external port.
//!
//! Checksums, all incrementally (RFC 1624): the quoted IP header checksum, the quoted
//! transport checksum when it lies within the quoted bytes (TCP quotes often stop at 8 bytes),
//! the outer ICMP checksum for every quoted word changed, and the outer IP header checksum.
//! Errors never refresh the session they refer to (RFC 5508 asks the same: an ICMP error
//! must not keep a mapping alive).

use super::{
    ChecksumState, Dir, DropReason, Nat, Rewrite,
    table::{InKey, OutKey, Proto},
    wire::{self, Delta, Ipv4Header, field, rd8, rd16, rd32, wr16, wr32},
};

impl Nat {
    pub(super) fn translate_icmp_error(
        &mut self,
        pkt: &mut [u8],
        ip: &Ipv4Header,
        dir: Dir,
    ) -> Result<(), DropReason> {
        let inner = ip.ihl + field::ICMP_LEN;
        let ver_ihl = pkt.get(inner).copied().ok_or(DropReason::BadIcmp)?;
        if ver_ihl >> 4 != 4 {
            return Err(DropReason::BadIcmp);
        }
        let iihl = usize::from(ver_ihl & 0x0f) * 4;
        let il4 = inner + iihl;
        // RFC 792: the quoted header plus at least 64 bits of its payload.
        if iihl < field::IPV4_MIN || pkt.len() < il4 + 8 {
            return Err(DropReason::BadIcmp);
        }
        // A quoted non-first fragment has no ports to translate.
        if rd16(pkt, inner + field::FLAGS_FRAG) & field::FRAG_OFFSET_MASK != 0 {
            return Err(DropReason::BadIcmp);
        }
        let iproto =
            Proto::from_ip(rd8(pkt, inner + field::PROTOCOL)).ok_or(DropReason::BadIcmp)?;
        let isrc = rd32(pkt, inner + field::SRC);
        let idst = rd32(pkt, inner + field::DST);
        let (sport_at, dport_at) = match iproto {
            Proto::Icmp => {
                // Only echo requests create sessions (outbound), so only they can be quoted
                // in an error coming back.
                if rd8(pkt, il4 + field::ICMP_TYPE) != wire::ICMP_ECHO_REQUEST {
                    return Err(DropReason::BadIcmp);
                }
                (il4 + field::ICMP_IDENT, il4 + field::ICMP_IDENT)
            }
            _ => (il4 + field::SRC_PORT, il4 + field::DST_PORT),
        };
        let (isport, idport) = (rd16(pkt, sport_at), rd16(pkt, dport_at));
        let len = ip.total as u64;
        match dir {
            Dir::In => {
                if isrc != self.wan {
                    return Err(DropReason::BadIcmp);
                }
                let key = InKey {
                    rem_addr: idst,
                    ext_port: isport,
                    rem_port: if iproto == Proto::Icmp { 0 } else { idport },
                    proto: iproto,
                };
                let &idx = self.table.in_idx.get(&key).ok_or(DropReason::NoMapping)?;
                let s = self.table.session(idx);
                let (addr, port) = (s.int_addr, s.int_port);
                let partial = self.csum == ChecksumState::Partial;
                fix_quoted(
                    pkt,
                    inner,
                    iproto,
                    field::SRC,
                    addr,
                    sport_at,
                    port,
                    partial,
                );
                let rw = Rewrite {
                    dst: Some(addr),
                    ttl_inc: self.cfg.ttl_compensation,
                    ..Rewrite::default()
                };
                super::rewrite(pkt, &rw);
                self.counters.packets_in += 1;
                self.counters.bytes_in += len;
            }
            Dir::Out => {
                if idst != ip.src || iproto == Proto::Icmp {
                    return Err(DropReason::BadIcmp);
                }
                let key = OutKey {
                    int_addr: idst,
                    rem_addr: isrc,
                    int_port: idport,
                    rem_port: isport,
                    proto: iproto,
                };
                let &idx = self.table.out_idx.get(&key).ok_or(DropReason::NoMapping)?;
                let ext = self.table.session(idx).ext_port;
                let wan = self.wan;
                let partial = self.csum == ChecksumState::Partial;
                fix_quoted(pkt, inner, iproto, field::DST, wan, dport_at, ext, partial);
                let rw = Rewrite {
                    src: Some(wan),
                    ttl_inc: self.cfg.ttl_compensation,
                    ..Rewrite::default()
                };
                super::rewrite(pkt, &rw);
                self.counters.packets_out += 1;
                self.counters.bytes_out += len;
            }
            // A LAN host's error about a hairpinned packet: rare, not translated.
            Dir::Hairpin => return Err(DropReason::UnsupportedIcmp),
        }
        Ok(())
    }
}

/// Rewrites one address (at `inner + addr_field`) and one port/identifier (at `port_at`) of
/// the quoted packet starting at `inner`, fixing the quoted IP and transport checksums and the
/// enclosing ICMP checksum (which starts 8 bytes before `inner`). All changed words lie at
/// even offsets from the ICMP header, as RFC 1624 arithmetic needs. With `partial_outer` the
/// ICMP checksum is completed later over the final bytes ([`ChecksumState::Partial`]) and is
/// left alone.
#[allow(clippy::too_many_arguments)]
fn fix_quoted(
    pkt: &mut [u8],
    inner: usize,
    iproto: Proto,
    addr_field: usize,
    new_addr: u32,
    port_at: usize,
    new_port: u16,
    partial_outer: bool,
) {
    let icmp_csum_at = inner - field::ICMP_LEN + field::ICMP_CHECKSUM;
    let iihl = usize::from(rd8(pkt, inner) & 0x0f) * 4;
    let il4 = inner + iihl;
    let mut icmp = Delta::default();

    let old_addr = rd32(pkt, inner + addr_field);
    let old_port = rd16(pkt, port_at);

    // Quoted transport checksum, if it was quoted.
    let (csum_at, pseudo) = match iproto {
        Proto::Tcp => (il4 + field::TCP_CHECKSUM, true),
        Proto::Udp => (il4 + field::UDP_CHECKSUM, true),
        Proto::Icmp => (il4 + field::ICMP_CHECKSUM, false),
    };
    if pkt.len() >= csum_at + 2 {
        let old = rd16(pkt, csum_at);
        if !(iproto == Proto::Udp && old == 0) {
            let mut d = Delta::default();
            if pseudo {
                d.addr(old_addr, new_addr);
            }
            d.word(old_port, new_port);
            let mut new = d.apply(old);
            if iproto == Proto::Udp && new == 0 {
                new = 0xffff;
            }
            icmp.word(old, new);
            wr16(pkt, csum_at, new);
        }
    }

    icmp.word(old_port, new_port);
    wr16(pkt, port_at, new_port);

    let mut iph = Delta::default();
    iph.addr(old_addr, new_addr);
    icmp.addr(old_addr, new_addr);
    wr32(pkt, inner + addr_field, new_addr);
    let old_ics = rd16(pkt, inner + field::CHECKSUM);
    let new_ics = iph.apply(old_ics);
    icmp.word(old_ics, new_ics);
    wr16(pkt, inner + field::CHECKSUM, new_ics);

    if !partial_outer {
        icmp.apply_at(pkt, icmp_csum_at);
    }
}
