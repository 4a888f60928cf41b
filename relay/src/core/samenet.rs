//! Seed 004: are two parties on the same network? The relay compares registered global addresses
//! (the source addresses it observes) under a mask, "for NATs that own several consecutive
//! addresses". See `docs/relay-protocol.md` ("Same network: the rule").
//!
//! A carrier-grade NAT gives many homes one public address, so equal addresses do not mean one
//! home. A device tells the relay the external address its own router holds (ROUTER_WAN); when
//! that is not the address the relay observes, a further NAT shares it, and only a source port in
//! the same port block (a carrier NAT with per-subscriber port blocks, RFC 6888 REQ-14,
//! RFC 7422) makes two parties one home. Without a configured block such a home is never "the
//! same network": proxying is always correct. A device that cannot learn its router's address
//! (UPnP off) reports none; for that case the operator lists the carrier NATs' public prefixes it
//! knows ([`Rule::shared`]), and an observed address inside one counts as shared too.

use std::net::{IpAddr, SocketAddr};

/// The relay's rule.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rule {
    /// Leading bits of an IPv4 address compared (32 = the exact address).
    pub prefix_v4: u8,
    /// Leading bits of an IPv6 address compared (64 = one subnet).
    pub prefix_v6: u8,
    /// Ports per subscriber block of a carrier NAT; 0 = unknown (a shared address never matches).
    pub port_block: u16,
    /// Public prefixes known to be carrier NATs' (address, prefix length): shared addresses.
    pub shared: Vec<(IpAddr, u8)>,
}

impl Default for Rule {
    fn default() -> Rule {
        Rule {
            prefix_v4: 32,
            prefix_v6: 64,
            port_block: 0,
            shared: Vec::new(),
        }
    }
}

/// A registered party: its observed address and what its router reported.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Party {
    /// The source address and port the relay observes.
    pub observed: SocketAddr,
    /// The external address its own router holds, when it reported one.
    pub router_wan: Option<IpAddr>,
}

impl Party {
    /// Whether a further NAT shares its public address with other homes: its router reported
    /// another address, or the address is in a listed carrier-NAT prefix.
    pub fn shared(&self, rule: &Rule) -> bool {
        self.router_wan.is_some_and(|w| w != self.observed.ip())
            || rule
                .shared
                .iter()
                .any(|(net, len)| in_prefix(self.observed.ip(), *net, *len))
    }
}

fn in_prefix(a: IpAddr, net: IpAddr, len: u8) -> bool {
    masked_equal(a, net, len, len)
}

fn masked_equal(a: IpAddr, b: IpAddr, v4: u8, v6: u8) -> bool {
    match (a, b) {
        (IpAddr::V4(a), IpAddr::V4(b)) => {
            let bits = u32::from(v4.min(32));
            let mask = u32::MAX.checked_shl(32 - bits).unwrap_or(0);
            u32::from(a) & mask == u32::from(b) & mask
        }
        (IpAddr::V6(a), IpAddr::V6(b)) => {
            let bits = u32::from(v6.min(128));
            let mask = u128::MAX.checked_shl(128 - bits).unwrap_or(0);
            u128::from(a) & mask == u128::from(b) & mask
        }
        _ => false,
    }
}

/// Seed 004's one bit for two parties. A viewer (who registers nothing) is a party with
/// `router_wan: None`; the device's registration decides whether its address is shared.
pub fn same_network(a: &Party, b: &Party, rule: &Rule) -> bool {
    if !masked_equal(
        a.observed.ip(),
        b.observed.ip(),
        rule.prefix_v4,
        rule.prefix_v6,
    ) {
        return false;
    }
    if !(a.shared(rule) || b.shared(rule)) {
        return true;
    }
    rule.port_block > 0
        && a.observed.ip() == b.observed.ip()
        && a.observed.port() / rule.port_block == b.observed.port() / rule.port_block
}

#[cfg(test)]
mod tests {
    use super::*;

    fn party(s: &str, wan: Option<&str>) -> Party {
        Party {
            observed: s.parse().unwrap(),
            router_wan: wan.map(|w| w.parse().unwrap()),
        }
    }

    #[test]
    fn exact_address_by_default_and_mask_for_nat_pools() {
        let r = Rule::default();
        let cam = party("203.0.113.2:40000", Some("203.0.113.2"));
        assert!(same_network(&cam, &party("203.0.113.2:51000", None), &r));
        assert!(!same_network(&cam, &party("203.0.113.3:51000", None), &r));
        assert!(!same_network(&cam, &party("[2001:db8::1]:5", None), &r));
        let pool = Rule {
            prefix_v4: 30,
            ..r.clone()
        };
        assert!(same_network(&cam, &party("203.0.113.3:51000", None), &pool));
        assert!(!same_network(
            &cam,
            &party("203.0.113.4:51000", None),
            &pool
        ));
        let v6 = party("[2001:db8:1:2::9]:5", None);
        assert!(same_network(&v6, &party("[2001:db8:1:2::7]:6", None), &r));
        assert!(!same_network(&v6, &party("[2001:db8:1:3::7]:6", None), &r));
    }

    /// Two homes behind one carrier NAT (198.51.100.1 here; home 1 holds ports 16384-20479): the address is the same, the homes
    /// are not. Without a port block they are never one network; with one, the block decides.
    #[test]
    fn carrier_nat_homes_stay_apart() {
        let cam = party("198.51.100.1:16400", Some("100.64.0.2"));
        let home1_viewer = party("198.51.100.1:20000", None);
        let home2_viewer = party("198.51.100.1:20500", None);
        let r = Rule::default();
        assert!(!same_network(&cam, &home1_viewer, &r));
        assert!(!same_network(&cam, &home2_viewer, &r));
        let blocks = Rule {
            port_block: 4096,
            ..r.clone()
        };
        assert!(same_network(&cam, &home1_viewer, &blocks));
        assert!(!same_network(&cam, &home2_viewer, &blocks));
        // A mask never widens a shared address to its neighbours.
        let wide = Rule {
            prefix_v4: 24,
            port_block: 4096,
            ..r.clone()
        };
        assert!(!same_network(
            &cam,
            &party("198.51.100.2:20500", None),
            &wide
        ));
        // Symmetric for two devices.
        let cam2 = party("198.51.100.1:17000", Some("100.64.0.2"));
        assert!(same_network(&cam, &cam2, &blocks) && same_network(&cam2, &cam, &blocks));
    }

    /// UPnP off behind a carrier NAT: the device cannot report its router's address; the
    /// listed prefix makes the address shared all the same.
    #[test]
    fn listed_carrier_nat_prefixes_are_shared() {
        let cam = party("203.0.113.2:16400", None);
        let neighbour = party("203.0.113.2:20500", None);
        assert!(same_network(&cam, &neighbour, &Rule::default()));
        let listed = Rule {
            shared: vec![("203.0.113.0".parse().unwrap(), 24)],
            ..Rule::default()
        };
        assert!(!same_network(&cam, &neighbour, &listed));
        let with_blocks = Rule {
            port_block: 4096,
            ..listed.clone()
        };
        assert!(same_network(
            &cam,
            &party("203.0.113.2:20000", None),
            &with_blocks
        ));
        assert!(!same_network(&cam, &neighbour, &with_blocks));
        // Outside the listed prefix the address alone decides.
        let home = party("198.51.100.7:1000", None);
        assert!(same_network(
            &home,
            &party("198.51.100.7:2000", None),
            &listed
        ));
    }
}
