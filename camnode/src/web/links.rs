//! Links that are right for whoever looks (seed 004): a viewer inside the node's LAN gets the
//! cameras' LAN addresses, a viewer from the internet gets the router's external address (or the
//! configured domain) and each camera's external port.
//!
//! "Inside the LAN" is decided from the connection: the viewer's address must lie in the subnet of
//! the interface the connection arrived on (or, for connections handed over by a relay, the
//! subnet of the node's LAN address). Loopback viewers are on the node itself, hence inside.
//!
//! Through a relay (seed 003) the links are relay paths: the relay says where the camera's site
//! sits (`X-Relay-Base: /d/<id>/`, read only on back-connections, see `crate::relay::back`) and
//! the other cameras of the home are its siblings, `/d/<peer id>/` on the same relay.

use std::net::{IpAddr, Ipv4Addr};

use crate::directory::{Directory, Peer};

/// An IPv4 interface address with its prefix length.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Subnet {
    pub addr: Ipv4Addr,
    pub prefix: u8,
}

impl Subnet {
    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        let mask = if self.prefix == 0 {
            0
        } else {
            u32::MAX << (32 - u32::from(self.prefix.min(32)))
        };
        u32::from(self.addr) & mask == u32::from(ip) & mask
    }
}

/// Where a viewer is, as far as links and permissions go.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Place {
    /// On the node's LAN (or the node itself).
    Lan,
    /// Anywhere else: the internet, a relay, another network behind the router.
    Outside,
}

impl Place {
    pub fn name(self) -> &'static str {
        match self {
            Place::Lan => "lan",
            Place::Outside => "outside",
        }
    }
}

/// Unwrap IPv4-mapped IPv6 addresses; other IPv6 addresses stay None.
pub fn ipv4_of(ip: IpAddr) -> Option<Ipv4Addr> {
    match ip {
        IpAddr::V4(v4) => Some(v4),
        IpAddr::V6(v6) => v6.to_ipv4_mapped(),
    }
}

/// Classify a viewer at `peer` whose connection arrived on `local` (None when a relay handed the
/// connection over), given the node's interface subnets and its LAN address from the directory.
pub fn classify(
    peer: IpAddr,
    local: Option<IpAddr>,
    subnets: &[Subnet],
    lan_addr: Option<Ipv4Addr>,
) -> Place {
    if peer.is_loopback() {
        return Place::Lan;
    }
    let Some(peer) = ipv4_of(peer) else {
        return Place::Outside;
    };
    if peer.is_loopback() {
        return Place::Lan;
    }
    let local = local
        .and_then(ipv4_of)
        .filter(|l| !l.is_loopback() && !l.is_unspecified());
    let Some(ours) = local.or(lan_addr) else {
        return Place::Outside;
    };
    match subnets.iter().find(|s| s.addr == ours) {
        Some(subnet) if subnet.contains(peer) => Place::Lan,
        _ => Place::Outside,
    }
}

/// A request that came over a relay back-connection (a request extension, set only by
/// `crate::relay::back`). `base` is the camera's path on the relay (`/d/<id>/`), when the relay
/// sent a usable one.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Relayed {
    pub base: Option<String>,
}

impl Relayed {
    /// The path of another camera's site on the same relay: the base's last segment replaced.
    pub fn sibling(&self, node_id: &str) -> Option<String> {
        let base = self.base.as_deref()?;
        let (parent, _own) = base.strip_suffix('/')?.rsplit_once('/')?;
        let safe = !node_id.is_empty() && node_id.bytes().all(|c| c.is_ascii_alphanumeric());
        safe.then(|| format!("{parent}/{node_id}/"))
    }
}

/// What link building needs to know.
#[derive(Clone, Copy, Debug)]
pub struct LinkContext<'a> {
    pub place: Place,
    /// A configured domain name; replaces the external address in outside links.
    pub domain: Option<&'a str>,
    pub external_addr: Option<Ipv4Addr>,
    /// Set for requests through a relay: links are relay paths.
    pub relayed: Option<&'a Relayed>,
}

impl<'a> LinkContext<'a> {
    pub fn new(place: Place, domain: &'a str, dir: &Directory) -> LinkContext<'a> {
        let domain = Some(domain.trim()).filter(|d| !d.is_empty());
        LinkContext {
            place,
            domain,
            external_addr: dir.external_addr,
            relayed: None,
        }
    }

    /// Links for a request that came through a relay (None: a direct request).
    pub fn via_relay(self, relayed: Option<&'a Relayed>) -> LinkContext<'a> {
        LinkContext { relayed, ..self }
    }

    /// The URL of a camera at (`lan_addr`, `lan_port`) with `external_port` on the router.
    pub fn url(
        &self,
        lan_addr: Option<Ipv4Addr>,
        lan_port: u16,
        external_port: Option<u16>,
    ) -> Option<String> {
        match self.place {
            Place::Lan => lan_addr
                .filter(|_| lan_port != 0)
                .map(|a| format!("http://{a}:{lan_port}/")),
            Place::Outside => {
                let port = external_port?;
                match (self.domain, self.external_addr) {
                    (Some(domain), _) => Some(format!("http://{domain}:{port}/")),
                    (None, Some(addr)) => Some(format!("http://{addr}:{port}/")),
                    (None, None) => None,
                }
            }
        }
    }

    pub fn peer_url(&self, peer: &Peer) -> Option<String> {
        match self.relayed {
            Some(r) => r.sibling(&peer.node_id),
            None => self.url(Some(peer.lan_addr), peer.lan_port, peer.external_port),
        }
    }

    pub fn own_url(&self, dir: &Directory) -> Option<String> {
        match self.relayed {
            Some(r) => r.base.clone(),
            None => self.url(dir.lan_addr, dir.lan_port, dir.external_port),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use super::*;
    use crate::directory::{PeerSource, Reachability, Role};

    fn dir() -> Directory {
        Directory {
            node_id: "a".into(),
            name: "camera 1".into(),
            role: Role::Representative,
            reachability: Reachability::Reachable,
            external_addr: Some(Ipv4Addr::new(203, 0, 113, 2)),
            lan_addr: Some(Ipv4Addr::new(192, 168, 1, 100)),
            external_port: Some(8080),
            lan_port: 8080,
            peers: vec![],
            warning: None,
        }
    }

    fn peer() -> Peer {
        Peer {
            node_id: "b".into(),
            name: "camera 2".into(),
            lan_addr: Ipv4Addr::new(192, 168, 1, 101),
            lan_port: 8081,
            external_port: Some(8081),
            source: PeerSource::Notice,
            last_seen: Instant::now(),
        }
    }

    const LAN: Subnet = Subnet {
        addr: Ipv4Addr::new(192, 168, 1, 100),
        prefix: 24,
    };

    #[test]
    fn subnet_membership() {
        assert!(LAN.contains(Ipv4Addr::new(192, 168, 1, 7)));
        assert!(!LAN.contains(Ipv4Addr::new(192, 168, 2, 7)));
        assert!(
            Subnet {
                addr: Ipv4Addr::new(10, 0, 0, 1),
                prefix: 0
            }
            .contains(Ipv4Addr::new(1, 2, 3, 4))
        );
        assert!(
            !Subnet {
                addr: Ipv4Addr::new(10, 0, 0, 1),
                prefix: 32
            }
            .contains(Ipv4Addr::new(10, 0, 0, 2))
        );
    }

    #[test]
    fn viewers_are_classified_by_the_arrival_interface() {
        let local = Some(IpAddr::from([192, 168, 1, 100]));
        let subnets = [
            LAN,
            Subnet {
                addr: Ipv4Addr::new(127, 0, 0, 1),
                prefix: 8,
            },
        ];
        let c =
            |peer: [u8; 4], local| classify(IpAddr::from(peer), local, &subnets, Some(LAN.addr));
        assert_eq!(c([192, 168, 1, 50], local), Place::Lan);
        assert_eq!(c([198, 51, 100, 10], local), Place::Outside);
        // A private address on another network is still outside.
        assert_eq!(c([192, 168, 7, 50], local), Place::Outside);
        assert_eq!(c([127, 0, 0, 1], local), Place::Lan);
        // A relay-handed connection: judged against the node's LAN address.
        assert_eq!(c([192, 168, 1, 50], None), Place::Lan);
        assert_eq!(c([203, 0, 113, 9], None), Place::Outside);
        // IPv4-mapped IPv6.
        let mapped: IpAddr = "::ffff:192.168.1.50".parse().unwrap();
        assert_eq!(classify(mapped, local, &subnets, None), Place::Lan);
        // Unknown own address: outside (the safe side for permissions).
        assert_eq!(
            classify(IpAddr::from([192, 168, 1, 50]), None, &subnets, None),
            Place::Outside
        );
    }

    #[test]
    fn lan_viewer_gets_lan_links() {
        let d = dir();
        let ctx = LinkContext::new(Place::Lan, "", &d);
        assert_eq!(
            ctx.peer_url(&peer()).as_deref(),
            Some("http://192.168.1.101:8081/")
        );
        assert_eq!(
            ctx.own_url(&d).as_deref(),
            Some("http://192.168.1.100:8080/")
        );
    }

    #[test]
    fn outside_viewer_gets_external_links() {
        let d = dir();
        let ctx = LinkContext::new(Place::Outside, "", &d);
        assert_eq!(
            ctx.peer_url(&peer()).as_deref(),
            Some("http://203.0.113.2:8081/")
        );
        // Not mapped yet: no link rather than a wrong one.
        assert_eq!(
            ctx.peer_url(&Peer {
                external_port: None,
                ..peer()
            }),
            None
        );
        let unknown = Directory {
            external_addr: None,
            ..dir()
        };
        assert_eq!(
            LinkContext::new(Place::Outside, "", &unknown).peer_url(&peer()),
            None
        );
    }

    #[test]
    fn relayed_viewer_gets_relay_paths() {
        let d = dir();
        let r = Relayed {
            base: Some("/d/00000000000000aa/".into()),
        };
        let ctx = LinkContext::new(Place::Outside, "cams.example.org", &d).via_relay(Some(&r));
        assert_eq!(ctx.peer_url(&peer()).as_deref(), Some("/d/b/"));
        assert_eq!(ctx.own_url(&d).as_deref(), Some("/d/00000000000000aa/"));
        // Mounted deeper on the relay: still the sibling.
        let deep = Relayed {
            base: Some("/relay/d/a/".into()),
        };
        assert_eq!(deep.sibling("c1").as_deref(), Some("/relay/d/c1/"));
        // No usable base: no link rather than a wrong one; odd ids are not put into paths.
        assert_eq!(Relayed::default().sibling("b"), None);
        assert_eq!(r.sibling("../x"), None);
    }

    #[test]
    fn domain_replaces_the_external_address() {
        let d = dir();
        let ctx = LinkContext::new(Place::Outside, " cams.example.org ", &d);
        assert_eq!(
            ctx.peer_url(&peer()).as_deref(),
            Some("http://cams.example.org:8081/")
        );
        // The domain does not touch LAN links.
        let ctx = LinkContext::new(Place::Lan, "cams.example.org", &d);
        assert_eq!(
            ctx.peer_url(&peer()).as_deref(),
            Some("http://192.168.1.101:8081/")
        );
    }
}
