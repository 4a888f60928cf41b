//! Packet rewriting with incremental checksums (RFC 1624), and the TCP state the engine
//! tracks (RFC 5382 section 5).

use super::table::{FIN_IN, FIN_OUT, RST, SEEN_IN, SEEN_OUT};
use super::wire::{self, Delta, field, rd8, rd16, rd32, wr8, wr16, wr32};

/// An in-place rewrite of one packet (see [`rewrite`]).
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Rewrite {
    pub src: Option<u32>,
    pub dst: Option<u32>,
    /// (offset, new value) of the source / destination port field.
    pub sport: Option<(usize, u16)>,
    pub dport: Option<(usize, u16)>,
    /// Offset of the transport checksum when the transport header is present, with
    /// whether it is UDP (0 = no checksum) and whether it covers the pseudo-header.
    pub l4_csum: Option<(usize, bool, bool)>,
    /// The transport checksum is partial ([`super::ChecksumState::Partial`]).
    pub partial: bool,
    pub ttl_inc: bool,
}

/// TCP state after one segment (RFC 5382 section 5 tracks SYN, FIN and RST).
pub(crate) fn tcp_next(state: u8, flags: u8, out: bool) -> u8 {
    let mut s = state;
    // A fresh SYN on a closed or reset 4-tuple starts a new connection.
    if flags & wire::TCP_SYN != 0 && flags & wire::TCP_ACK == 0 && s & (RST | FIN_OUT | FIN_IN) != 0
    {
        s = 0;
    }
    s |= if out { SEEN_OUT } else { SEEN_IN };
    if flags & wire::TCP_RST != 0 {
        s |= RST;
    }
    if flags & wire::TCP_FIN != 0 {
        s |= if out { FIN_OUT } else { FIN_IN };
    }
    s
}

pub(crate) fn tcp_established(state: u8) -> bool {
    state & (SEEN_OUT | SEEN_IN) == SEEN_OUT | SEEN_IN
        && state & RST == 0
        && state & (FIN_OUT | FIN_IN) != FIN_OUT | FIN_IN
}

pub(crate) fn tcp_state_name(state: u8) -> &'static str {
    if state & RST != 0 {
        "reset"
    } else if state & (FIN_OUT | FIN_IN) == FIN_OUT | FIN_IN {
        "closing"
    } else if state & (FIN_OUT | FIN_IN) != 0 {
        "fin-wait"
    } else if state & (SEEN_OUT | SEEN_IN) == SEEN_OUT | SEEN_IN {
        "established"
    } else if state & SEEN_OUT != 0 {
        "syn-sent"
    } else {
        "syn-received"
    }
}

/// Applies `rw` to `pkt` with incremental checksum updates (RFC 1624 eqn. 3).
pub(crate) fn rewrite(pkt: &mut [u8], rw: &Rewrite) {
    let mut ipd = Delta::default();
    let mut l4d = Delta::default();
    let pseudo = rw.l4_csum.is_some_and(|(_, _, p)| p);
    for (at, new) in [(field::SRC, rw.src), (field::DST, rw.dst)] {
        if let Some(new) = new {
            let old = rd32(pkt, at);
            ipd.addr(old, new);
            if pseudo {
                l4d.addr(old, new);
            }
            wr32(pkt, at, new);
        }
    }
    for (at, new) in [rw.sport, rw.dport].into_iter().flatten() {
        // A partial checksum is completed over the final port bytes later: nothing to add.
        if !rw.partial {
            l4d.word(rd16(pkt, at), new);
        }
        wr16(pkt, at, new);
    }
    if rw.ttl_inc {
        let ttl = rd8(pkt, field::TTL);
        if ttl < 255 {
            let old = rd16(pkt, field::TTL);
            wr8(pkt, field::TTL, ttl + 1);
            ipd.word(old, rd16(pkt, field::TTL));
        }
    }
    ipd.apply_at(pkt, field::CHECKSUM);
    if let Some((at, udp, pseudo)) = rw.l4_csum {
        let old = rd16(pkt, at);
        if rw.partial {
            // The field holds the pseudo-header sum itself (not its complement), so the
            // change is added as is; nothing to do without a pseudo-header (ICMP).
            if pseudo {
                wr16(pkt, at, l4d.apply_partial(old));
            }
            return;
        }
        // RFC 768: a UDP checksum of 0 means "not computed" and must stay 0; a computed 0 is
        // sent as 0xffff.
        if !(udp && old == 0) {
            let new = l4d.apply(old);
            wr16(pkt, at, if udp && new == 0 { 0xffff } else { new });
        }
    }
}
