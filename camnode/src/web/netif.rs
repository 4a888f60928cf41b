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

/// A network interface: its name, hardware address and IPv4 addresses.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Interface {
    pub name: String,
    /// The MAC address (AF_PACKET), if it has a non-zero one of 6 bytes.
    pub mac: Option<[u8; 6]>,
    pub v4: Vec<Ipv4Addr>,
}

/// This host's interfaces (in this network namespace: getifaddrs asks the kernel over netlink),
/// sorted by name. Empty if the system call fails.
pub fn interfaces() -> Vec<Interface> {
    let mut out: std::collections::BTreeMap<String, Interface> = Default::default();
    let mut head: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: as in ipv4_subnets.
    if unsafe { libc::getifaddrs(&mut head) } != 0 {
        return Vec::new();
    }
    let mut cur = head;
    while !cur.is_null() {
        // SAFETY: a non-null node of the list getifaddrs returned, alive until freeifaddrs;
        // ifa_name is a NUL-terminated string there.
        let ifa = unsafe { &*cur };
        let name = unsafe { std::ffi::CStr::from_ptr(ifa.ifa_name) }
            .to_string_lossy()
            .into_owned();
        let entry = out.entry(name.clone()).or_insert_with(|| Interface {
            name,
            ..Interface::default()
        });
        if let Some(a) = sockaddr_v4(ifa.ifa_addr) {
            entry.v4.push(a);
        } else if let Some(m) = sockaddr_mac(ifa.ifa_addr) {
            entry.mac = Some(m);
        }
        cur = ifa.ifa_next;
    }
    // SAFETY: `head` came from a successful getifaddrs and is freed once.
    unsafe { libc::freeifaddrs(head) };
    out.into_values().collect()
}

/// The interface that reaches the LAN: the one holding `listen` if that is a specific address,
/// else the one of the default route (/proc/net/route, this namespace's), else the first by
/// name with a MAC and an IPv4 address, else the first with a MAC. Loopback never.
pub fn lan_interface(listen: Ipv4Addr) -> Option<Interface> {
    let all: Vec<Interface> = interfaces()
        .into_iter()
        .filter(|i| i.mac.is_some() && !i.v4.iter().any(Ipv4Addr::is_loopback))
        .collect();
    if !listen.is_unspecified()
        && let Some(i) = all.iter().find(|i| i.v4.contains(&listen))
    {
        return Some(i.clone());
    }
    let route = std::fs::read_to_string("/proc/net/route").unwrap_or_default();
    let default_if = route.lines().skip(1).find_map(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        (f.len() > 2 && f[1] == "00000000").then(|| f[0].to_string())
    });
    if let Some(name) = default_if
        && let Some(i) = all.iter().find(|i| i.name == name)
    {
        return Some(i.clone());
    }
    all.iter()
        .find(|i| !i.v4.is_empty())
        .or_else(|| all.first())
        .cloned()
}

/// The 6-byte hardware address in an AF_PACKET sockaddr, if it is one and not all zero.
fn sockaddr_mac(sa: *const libc::sockaddr) -> Option<[u8; 6]> {
    if sa.is_null() {
        return None;
    }
    // SAFETY: non-null sockaddr from getifaddrs; reinterpreted as sockaddr_ll only for
    // AF_PACKET, whose entries getifaddrs allocates at that size.
    unsafe {
        if i32::from((*sa).sa_family) != libc::AF_PACKET {
            return None;
        }
        let ll = &*(sa as *const libc::sockaddr_ll);
        if ll.sll_halen != 6 {
            return None;
        }
        let mut mac = [0u8; 6];
        mac.copy_from_slice(&ll.sll_addr[..6]);
        (mac != [0; 6]).then_some(mac)
    }
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
