//! Checked access to IPv4 / TCP / UDP / ICMP header fields, and checksum arithmetic.
//!
//! Like smoltcp's `wire` module: byte offsets are named in [`field`], a header is validated once
//! ([`Ipv4Header::parse`]) and the engine then reads and writes fields at known offsets. Every
//! accessor here goes through `get`/`get_mut`, so even a wrong offset cannot panic: an
//! out-of-range read yields 0 and an out-of-range write is ignored.

use super::DropReason;

/// Byte offsets (RFC 791 section 3.1, RFC 793 section 3.1, RFC 768, RFC 792).
pub(crate) mod field {
    /// IPv4: version (high nibble) and IHL (low nibble, in 32-bit words).
    pub const VER_IHL: usize = 0;
    pub const TOTAL_LEN: usize = 2;
    pub const IDENT: usize = 4;
    /// Flags (3 bits: reserved, DF, MF) and fragment offset (13 bits, 8-byte units).
    pub const FLAGS_FRAG: usize = 6;
    /// TTL and protocol share one 16-bit word for checksum purposes.
    pub const TTL: usize = 8;
    pub const PROTOCOL: usize = 9;
    pub const CHECKSUM: usize = 10;
    pub const SRC: usize = 12;
    pub const DST: usize = 16;
    pub const IPV4_MIN: usize = 20;

    /// TCP / UDP, relative to the transport header.
    pub const SRC_PORT: usize = 0;
    pub const DST_PORT: usize = 2;
    pub const TCP_FLAGS: usize = 13;
    pub const TCP_CHECKSUM: usize = 16;
    pub const TCP_MIN: usize = 20;
    pub const UDP_CHECKSUM: usize = 6;
    pub const UDP_LEN: usize = 8;

    /// ICMP, relative to the ICMP header.
    pub const ICMP_TYPE: usize = 0;
    pub const ICMP_CHECKSUM: usize = 2;
    pub const ICMP_IDENT: usize = 4;
    /// Header length; for errors the quoted IP header follows (RFC 792).
    pub const ICMP_LEN: usize = 8;

    pub const FLAG_MF: u16 = 0x2000;
    pub const FRAG_OFFSET_MASK: u16 = 0x1fff;
}

pub(crate) const PROTO_ICMP: u8 = 1;
pub(crate) const PROTO_TCP: u8 = 6;
pub(crate) const PROTO_UDP: u8 = 17;

pub(crate) const TCP_FIN: u8 = 0x01;
pub(crate) const TCP_SYN: u8 = 0x02;
pub(crate) const TCP_RST: u8 = 0x04;
pub(crate) const TCP_ACK: u8 = 0x10;

pub(crate) const ICMP_ECHO_REPLY: u8 = 0;
pub(crate) const ICMP_DEST_UNREACHABLE: u8 = 3;
pub(crate) const ICMP_ECHO_REQUEST: u8 = 8;
pub(crate) const ICMP_TIME_EXCEEDED: u8 = 11;
pub(crate) const ICMP_PARAMETER_PROBLEM: u8 = 12;

#[inline]
pub(crate) fn rd8(b: &[u8], at: usize) -> u8 {
    b.get(at).copied().unwrap_or(0)
}

#[inline]
pub(crate) fn rd16(b: &[u8], at: usize) -> u16 {
    match b.get(at..at.wrapping_add(2)) {
        Some(&[x, y]) => u16::from_be_bytes([x, y]),
        _ => 0,
    }
}

#[inline]
pub(crate) fn rd32(b: &[u8], at: usize) -> u32 {
    match b.get(at..at.wrapping_add(4)) {
        Some(&[w, x, y, z]) => u32::from_be_bytes([w, x, y, z]),
        _ => 0,
    }
}

#[inline]
pub(crate) fn wr8(b: &mut [u8], at: usize, v: u8) {
    if let Some(x) = b.get_mut(at) {
        *x = v;
    }
}

#[inline]
pub(crate) fn wr16(b: &mut [u8], at: usize, v: u16) {
    if let Some(s) = b.get_mut(at..at.wrapping_add(2)) {
        s.copy_from_slice(&v.to_be_bytes());
    }
}

#[inline]
pub(crate) fn wr32(b: &mut [u8], at: usize, v: u32) {
    if let Some(s) = b.get_mut(at..at.wrapping_add(4)) {
        s.copy_from_slice(&v.to_be_bytes());
    }
}

/// The fields of a validated IPv4 header. `parse` guarantees `20 <= ihl <= total <= buf.len()`.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Ipv4Header {
    pub ihl: usize,
    pub total: usize,
    pub ident: u16,
    pub flags_frag: u16,
    pub ttl: u8,
    pub proto: u8,
    pub src: u32,
    pub dst: u32,
}

impl Ipv4Header {
    /// Validates version, IHL, total length and the header checksum (RFC 791 section 3.1).
    pub fn parse(buf: &[u8]) -> Result<Ipv4Header, DropReason> {
        let Some(&ver_ihl) = buf.get(field::VER_IHL) else {
            return Err(DropReason::Truncated);
        };
        if ver_ihl >> 4 != 4 {
            return Err(DropReason::BadVersion);
        }
        if buf.len() < field::IPV4_MIN {
            return Err(DropReason::Truncated);
        }
        let ihl = usize::from(ver_ihl & 0x0f) * 4;
        if ihl < field::IPV4_MIN {
            return Err(DropReason::BadHeaderLength);
        }
        if ihl > buf.len() {
            return Err(DropReason::Truncated);
        }
        let total = usize::from(rd16(buf, field::TOTAL_LEN));
        if total < ihl || total > buf.len() {
            return Err(DropReason::BadTotalLength);
        }
        let header = buf.get(..ihl).ok_or(DropReason::Truncated)?;
        if checksum(header) != 0 {
            return Err(DropReason::BadChecksum);
        }
        Ok(Ipv4Header {
            ihl,
            total,
            ident: rd16(buf, field::IDENT),
            flags_frag: rd16(buf, field::FLAGS_FRAG),
            ttl: rd8(buf, field::TTL),
            proto: rd8(buf, field::PROTOCOL),
            src: rd32(buf, field::SRC),
            dst: rd32(buf, field::DST),
        })
    }

    /// Fragment offset in bytes.
    pub fn frag_offset(&self) -> usize {
        usize::from(self.flags_frag & field::FRAG_OFFSET_MASK) * 8
    }

    /// More-fragments flag.
    pub fn more_fragments(&self) -> bool {
        self.flags_frag & field::FLAG_MF != 0
    }

    /// Part of a fragmented datagram (RFC 791: MF set or a non-zero offset).
    pub fn is_fragment(&self) -> bool {
        self.more_fragments() || self.frag_offset() != 0
    }

    /// Bytes after the IP header.
    pub fn payload_len(&self) -> usize {
        self.total - self.ihl
    }
}

/// Internet checksum (RFC 1071) of `data`: 0 when `data` includes a correct checksum field.
pub(crate) fn checksum(data: &[u8]) -> u16 {
    let mut sum: u64 = 0;
    let mut chunks = data.chunks_exact(2);
    for c in &mut chunks {
        if let &[a, b] = c {
            sum += u64::from(u16::from_be_bytes([a, b]));
        }
    }
    if let &[a] = chunks.remainder() {
        sum += u64::from(u16::from_be_bytes([a, 0]));
    }
    !fold(sum)
}

#[inline]
fn fold(mut s: u64) -> u16 {
    while s >> 16 != 0 {
        s = (s & 0xffff) + (s >> 16);
    }
    s as u16
}

/// An incremental checksum update (RFC 1624 section 3, eqn. 3: `HC' = ~(~HC + ~m + m')`),
/// accumulating `~m + m'` for every 16-bit word that changes.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Delta(u64);

impl Delta {
    #[inline]
    pub fn word(&mut self, old: u16, new: u16) {
        self.0 += u64::from(!old) + u64::from(new);
    }

    #[inline]
    pub fn addr(&mut self, old: u32, new: u32) {
        self.word((old >> 16) as u16, (new >> 16) as u16);
        self.word(old as u16, new as u16);
    }

    /// The checksum `hc` after the accumulated changes.
    #[inline]
    pub fn apply(self, hc: u16) -> u16 {
        !fold(u64::from(!hc) + self.0)
    }

    /// A partial checksum field `sum` (the folded pseudo-header sum, not complemented: Linux
    /// `CHECKSUM_PARTIAL`) after the accumulated changes: `sum + ~m + m'`, as
    /// `inet_proto_csum_replace4` computes it with `pseudohdr` for a partial checksum.
    #[inline]
    pub fn apply_partial(self, sum: u16) -> u16 {
        fold(u64::from(sum) + self.0)
    }

    /// Rewrites the checksum stored at `at` in `buf`.
    #[inline]
    pub fn apply_at(self, buf: &mut [u8], at: usize) {
        let new = self.apply(rd16(buf, at));
        wr16(buf, at, new);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn incremental_update_matches_full_recompute() {
        // An IPv4 header fixture (RFC 1071 style), checksum filled in, then rewritten.
        let mut h: [u8; 20] = [
            0x45, 0, 0, 84, 0x12, 0x34, 0x40, 0, 64, 17, 0, 0, 192, 168, 1, 100, 198, 51, 100, 10,
        ];
        let c = checksum(&h);
        h[10..12].copy_from_slice(&c.to_be_bytes());
        assert_eq!(checksum(&h), 0);
        let mut d = Delta::default();
        d.addr(rd32(&h, field::SRC), 0xcb00_7102);
        wr32(&mut h, field::SRC, 0xcb00_7102);
        d.word(rd16(&h, field::TTL), u16::from_be_bytes([65, 17]));
        wr8(&mut h, field::TTL, 65);
        d.apply_at(&mut h, field::CHECKSUM);
        assert_eq!(checksum(&h), 0);
    }

    #[test]
    fn accessors_out_of_range_do_not_panic() {
        let mut b = [1u8, 2, 3];
        assert_eq!(rd32(&b, 1), 0);
        assert_eq!(rd16(&b, usize::MAX), 0);
        wr32(&mut b, 2, 7);
        wr16(&mut b, usize::MAX - 1, 7);
        assert_eq!(b, [1, 2, 3]);
    }

    #[test]
    fn parse_rejects_each_malformation() {
        assert_eq!(Ipv4Header::parse(&[]).err(), Some(DropReason::Truncated));
        assert_eq!(
            Ipv4Header::parse(&[0x60; 40]).err(),
            Some(DropReason::BadVersion)
        );
        assert_eq!(
            Ipv4Header::parse(&[0x45; 10]).err(),
            Some(DropReason::Truncated)
        );
        let mut h = [0u8; 20];
        h[0] = 0x44;
        assert_eq!(
            Ipv4Header::parse(&h).err(),
            Some(DropReason::BadHeaderLength)
        );
        h[0] = 0x46;
        assert_eq!(Ipv4Header::parse(&h).err(), Some(DropReason::Truncated));
        h[0] = 0x45;
        h[3] = 40;
        assert_eq!(
            Ipv4Header::parse(&h).err(),
            Some(DropReason::BadTotalLength)
        );
        h[3] = 20;
        assert_eq!(Ipv4Header::parse(&h).err(), Some(DropReason::BadChecksum));
    }
}
