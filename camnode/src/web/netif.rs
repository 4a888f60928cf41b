//! The node's IPv4 interface addresses and prefixes (getifaddrs), to tell LAN viewers from others.

use std::net::Ipv4Addr;

use super::links::Subnet;

/// Every IPv4 address on this host's interfaces with its prefix length. Empty if the system call
/// fails (then every non-loopback viewer counts as outside: the safe side for permissions).
pub fn ipv4_subnets() -> Vec<Subnet> {
    let mut out = Vec::new();
    let mut head: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: getifaddrs writes a pointer to a list it allocated into `head`; we read the list
    // only if it returned 0 and free it exactly once with freeifaddrs below.
    if unsafe { libc::getifaddrs(&mut head) } != 0 {
        return out;
    }
    let mut cur = head;
    while !cur.is_null() {
        // SAFETY: `cur` is a non-null node of the list getifaddrs returned, alive until freeifaddrs.
        let ifa = unsafe { &*cur };
        if let (Some(addr), Some(mask)) = (sockaddr_v4(ifa.ifa_addr), sockaddr_v4(ifa.ifa_netmask))
        {
            out.push(Subnet {
                addr,
                prefix: u32::from(mask).count_ones() as u8,
            });
        }
        cur = ifa.ifa_next;
    }
    // SAFETY: `head` came from a successful getifaddrs and is freed once.
    unsafe { libc::freeifaddrs(head) };
    out
}

/// The IPv4 address in a sockaddr, if it is one.
fn sockaddr_v4(sa: *const libc::sockaddr) -> Option<Ipv4Addr> {
    if sa.is_null() {
        return None;
    }
    // SAFETY: non-null sockaddr from getifaddrs; we read the family first and reinterpret as
    // sockaddr_in only for AF_INET, whose storage is at least that large.
    unsafe {
        if i32::from((*sa).sa_family) != libc::AF_INET {
            return None;
        }
        let sin = &*(sa as *const libc::sockaddr_in);
        Some(Ipv4Addr::from(u32::from_be(sin.sin_addr.s_addr)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_is_listed() {
        let subnets = ipv4_subnets();
        assert!(
            subnets
                .iter()
                .any(|s| s.addr == Ipv4Addr::LOCALHOST && s.prefix == 8),
            "{subnets:?}"
        );
    }
}
