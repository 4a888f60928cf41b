//! Which side a packet came in on, and which source addresses the WAN side may carry.
//!
//! The engine is told the interface side of every packet ([`Side`]); it never infers it from
//! addresses. A packet from the WAN whose source is a LAN address, the router's own WAN
//! address, or a special-purpose range that cannot come from the internet (RFC 6890, the
//! "bogons"; RFC 2827 ingress filtering) is dropped before any lookup, so it can neither
//! create a session nor ride on one. From the LAN, only sources inside the LAN prefix are
//! translated (RFC 2827 again, in the other direction).
//!
//! Ranges, by what the router does with them as WAN sources:
//! - always refused: the LAN prefix, the WAN address itself, 0.0.0.0/8 ("this network"),
//!   127.0.0.0/8 (loopback), 224.0.0.0/4 (multicast), 240.0.0.0/4 (reserved, broadcast):
//!   they are never a valid source on a link (RFC 1122 section 3.2.1.3, RFC 1112 section 6.2).
//! - refused by default, accepted when listed in `[nat.wan_sources] allow`: 10.0.0.0/8,
//!   172.16.0.0/12, 192.168.0.0/16 (RFC 1918), 169.254.0.0/16 (link-local, RFC 3927),
//!   192.0.0.0/24 (IETF protocol assignments), 198.18.0.0/15 (benchmarking, RFC 2544).
//!   A router behind another NAT (its WAN on the upstream router's private network) lists that
//!   network, e.g. `allow = ["192.168.0.0/24"]`.
//! - accepted by default, refused when listed in `block`: 100.64.0.0/10 (shared address
//!   space, RFC 6598: the ISP's own network behind carrier-grade NAT) and the documentation
//!   ranges 192.0.2.0/24, 198.51.100.0/24, 203.0.113.0/24 (RFC 5737), which the lab and the
//!   demo use as "the internet". A router on the real internet may block them.
//!
//! ICMP errors to the WAN address pass the configurable part of the filter: ISPs number their
//! routers from private ranges, and dropping their "fragmentation needed" would break Path MTU
//! discovery (RFC 1191). An ICMP error opens nothing; it only reaches the session whose packet
//! it quotes (module `icmp`).

use std::net::Ipv4Addr;

use serde::Deserialize;

use super::{Dir, DropReason, Nat};

/// The interface a packet arrived on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Side {
    /// The LAN interface (home network).
    Lan,
    /// The WAN interface (the ISP, the internet).
    Wan,
}

/// An IPv4 prefix as (network, mask).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Prefix {
    net: u32,
    mask: u32,
}

impl Prefix {
    /// `addr/len` (host bits cleared).
    pub fn new(addr: Ipv4Addr, len: u8) -> Prefix {
        let mask = u32::MAX
            .checked_shl(32 - u32::from(len.min(32)))
            .unwrap_or(0);
        Prefix {
            net: u32::from(addr) & mask,
            mask,
        }
    }

    /// Parses `A.B.C.D/LEN` (or a bare address, /32).
    pub fn parse(s: &str) -> Result<Prefix, String> {
        let s = s.trim();
        let (a, len) = match s.split_once('/') {
            Some((a, l)) => (a, l.parse::<u8>().ok().filter(|l| *l <= 32)),
            None => (s, Some(32)),
        };
        match (a.parse::<Ipv4Addr>(), len) {
            (Ok(a), Some(len)) => Ok(Prefix::new(a, len)),
            _ => Err(format!("{s:?} is not an IPv4 prefix like 192.168.0.0/24")),
        }
    }

    #[inline]
    fn contains(self, a: u32) -> bool {
        a & self.mask == self.net
    }

    fn len(self) -> u32 {
        self.mask.count_ones()
    }
}

impl std::fmt::Display for Prefix {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", Ipv4Addr::from(self.net), self.len())
    }
}

const fn p(a: u8, b: u8, len: u8) -> (u32, u8) {
    (u32::from_be_bytes([a, b, 0, 0]), len)
}

/// Never a valid source on a link; cannot be allowed.
const ALWAYS: &[(u32, u8)] = &[p(0, 0, 8), p(127, 0, 8), p(224, 0, 4), p(240, 0, 4)];
/// Refused unless allowed (see the module docs).
const DEFAULT_BLOCKED: &[(u32, u8)] = &[
    p(10, 0, 8),
    p(172, 16, 12),
    p(192, 168, 16),
    p(169, 254, 16),
    p(192, 0, 24),
    p(198, 18, 15),
];

fn prefixes(list: &[(u32, u8)]) -> impl Iterator<Item = Prefix> + '_ {
    list.iter().map(|&(a, l)| Prefix::new(Ipv4Addr::from(a), l))
}

/// The WAN source filter: the refused ranges, minus the allowed ones.
#[derive(Clone, PartialEq, Eq)]
pub struct WanSources {
    block: Vec<Prefix>,
    allow: Vec<Prefix>,
    /// Bit per first octet: may a refused range hold an address starting with it? Most
    /// internet sources are answered by this one bit.
    octets: [u64; 4],
}

impl std::fmt::Debug for WanSources {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let list = |v: &[Prefix]| v.iter().map(Prefix::to_string).collect::<Vec<_>>();
        f.debug_struct("WanSources")
            .field("refused", &list(&self.block))
            .field("allowed", &list(&self.allow))
            .finish()
    }
}

impl Default for WanSources {
    fn default() -> Self {
        WanSources::new(&[], &[]).unwrap_or_else(|_| unreachable!("the defaults are valid"))
    }
}

impl WanSources {
    /// The defaults, plus `block`, with `allow` taken out. An allowed range must not overlap
    /// the ranges that are always refused.
    pub fn new(allow: &[Prefix], block: &[Prefix]) -> Result<WanSources, String> {
        for a in allow {
            if let Some(never) = prefixes(ALWAYS).find(|n| overlaps(*a, *n)) {
                return Err(format!(
                    "{a} overlaps {never}, which is never a valid source on a link"
                ));
            }
        }
        let mut all: Vec<Prefix> = prefixes(ALWAYS).chain(prefixes(DEFAULT_BLOCKED)).collect();
        all.extend_from_slice(block);
        let mut octets = [0u64; 4];
        for b in &all {
            let first = b.net >> 24;
            let last = (b.net | !b.mask) >> 24;
            for o in first..=last {
                octets[(o / 64) as usize] |= 1 << (o % 64);
            }
        }
        Ok(WanSources {
            block: all,
            allow: allow.to_vec(),
            octets,
        })
    }

    /// Whether `src` may not come from the internet.
    #[inline]
    pub fn refuses(&self, src: u32) -> bool {
        let o = src >> 24;
        if self.octets[(o / 64) as usize] & (1 << (o % 64)) == 0 {
            return false;
        }
        // `new` keeps allowed ranges clear of the always-refused ones.
        self.block.iter().any(|b| b.contains(src)) && !self.allow.iter().any(|a| a.contains(src))
    }

    /// Whether `src` is never a valid source on a link (0/8, 127/8, 224/4, 240/4).
    pub fn always_refused(&self, src: u32) -> bool {
        prefixes(ALWAYS).any(|n| n.contains(src))
    }
}

fn overlaps(a: Prefix, b: Prefix) -> bool {
    let m = a.mask & b.mask;
    a.net & m == b.net & m
}

/// `[nat.wan_sources]` in the configuration file.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WanSourcesSection {
    /// Refused-by-default ranges to accept as WAN sources (e.g. an upstream router's network).
    pub allow: Option<Vec<String>>,
    /// Further ranges to refuse (e.g. the documentation ranges on the real internet).
    pub block: Option<Vec<String>>,
}

impl WanSourcesSection {
    /// The filter; errors are (field within the section, problem, fix).
    pub fn to_filter(&self) -> Result<WanSources, (String, String, String)> {
        let parse = |field: &str, list: &Option<Vec<String>>| {
            list.iter()
                .flatten()
                .map(|s| {
                    Prefix::parse(s).map_err(|p| {
                        (
                            field.to_string(),
                            p,
                            format!("write e.g. {field} = [\"192.168.0.0/24\"]"),
                        )
                    })
                })
                .collect::<Result<Vec<_>, _>>()
        };
        let allow = parse("allow", &self.allow)?;
        let block = parse("block", &self.block)?;
        WanSources::new(&allow, &block).map_err(|p| {
            (
                "allow".into(),
                p,
                "remove it: loopback, multicast, 0.0.0.0/8 and 240.0.0.0/4 are always refused"
                    .into(),
            )
        })
    }
}

impl Nat {
    /// Direction of a packet from the side it came in on, then its addresses (module docs,
    /// step 2).
    pub(super) fn classify(&self, side: Side, src: u32, dst: u32) -> Result<Dir, DropReason> {
        // This network, loopback, multicast, reserved and broadcast (RFC 6890).
        let special = |a: u32| {
            let o = a >> 24;
            o == 0 || o == 127 || o >= 224
        };
        match side {
            Side::Lan => {
                if !self.in_lan(src) {
                    return Err(DropReason::NotForUs);
                }
                if dst == self.wan {
                    return if self.cfg.behaviour.hairpin {
                        Ok(Dir::Hairpin)
                    } else {
                        Err(DropReason::HairpinDisabled)
                    };
                }
                if self.in_lan(dst) || special(dst) {
                    return Err(DropReason::NotForUs);
                }
                Ok(Dir::Out)
            }
            Side::Wan => {
                if self.in_lan(src) || src == self.wan {
                    return Err(DropReason::WanLanSource);
                }
                if self.wan_sources.refuses(src) {
                    return Err(DropReason::WanBogonSource);
                }
                if dst == self.wan {
                    Ok(Dir::In)
                } else {
                    Err(DropReason::NotForUs)
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> u32 {
        u32::from(s.parse::<Ipv4Addr>().unwrap())
    }

    #[test]
    fn defaults_refuse_bogons_and_keep_the_lab_ranges() {
        let f = WanSources::default();
        for bogon in [
            "0.1.2.3",
            "10.9.8.7",
            "127.0.0.1",
            "169.254.1.1",
            "172.31.255.255",
            "192.0.0.9",
            "192.168.1.50",
            "198.19.0.1",
            "224.0.0.1",
            "255.255.255.255",
        ] {
            assert!(f.refuses(ip(bogon)), "{bogon}");
        }
        for fine in [
            "1.1.1.1",
            "100.64.0.1",
            "172.32.0.1",
            "192.0.2.7",
            "198.51.100.10",
            "203.0.113.1",
            "60.120.76.1",
        ] {
            assert!(!f.refuses(ip(fine)), "{fine}");
        }
    }

    #[test]
    fn allow_and_block_adjust_the_defaults() {
        let pf = |s: &str| Prefix::parse(s).unwrap();
        let f = WanSources::new(&[pf("192.168.0.0/24")], &[pf("203.0.113.0/24")]).unwrap();
        assert!(!f.refuses(ip("192.168.0.1")));
        assert!(f.refuses(ip("192.168.1.1")));
        assert!(f.refuses(ip("203.0.113.9")));
        assert!(WanSources::new(&[pf("127.0.0.0/16")], &[]).is_err());
        assert!(WanSources::new(&[pf("0.0.0.0/0")], &[]).is_err());
        assert_eq!(pf("10.1.2.3/8").to_string(), "10.0.0.0/8");
        assert!(Prefix::parse("10.0.0.0/33").is_err());
        assert!(Prefix::parse("ten").is_err());
    }

    #[test]
    fn section_errors_name_the_field() {
        let s = WanSourcesSection {
            allow: None,
            block: Some(vec!["nonsense".into()]),
        };
        assert_eq!(s.to_filter().unwrap_err().0, "block");
    }
}
