//! The WAN address at run time: changed through the control API (`POST /api/wan`, an ISP
//! reassigning it) or from outside (a DHCP client on the WAN), noticed at once through an
//! rtnetlink subscription to address changes ([`AddressEvents`]; a slow periodic check stays
//! as a safety net). Either way the engine and the rules that name the address follow.

use std::io;
use std::net::Ipv4Addr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::{Arc, Mutex, PoisonError};

use anyhow::Result;
use tracing::{info, warn};

use crate::dataplane::lock;
use crate::nat::Nat;
use crate::routing::{self, Recipe};

/// What the control API needs to change the WAN address (a trait so that tests can fake it).
pub trait WanControl: Send + Sync + std::fmt::Debug {
    /// Moves the WAN to `addr/len`: interface, rules and engine. Blocking (runs `ip`).
    fn set_wan(&self, addr: Ipv4Addr, len: u8) -> Result<()>;
}

/// The real WAN: interface `iface`, the installed recipe and the engine.
#[derive(Debug)]
pub struct SystemWan {
    iface: String,
    recipe: Arc<Mutex<Recipe>>,
    nat: Arc<Mutex<Nat>>,
    /// The address as last seen on the interface (or set by us).
    current: Mutex<(Ipv4Addr, u8)>,
    /// Follow the interface's address (false when the config overrides the WAN address).
    follow: bool,
}

impl SystemWan {
    pub fn new(
        iface: String,
        current: (Ipv4Addr, u8),
        recipe: Arc<Mutex<Recipe>>,
        nat: Arc<Mutex<Nat>>,
        follow: bool,
    ) -> SystemWan {
        SystemWan {
            iface,
            recipe,
            nat,
            current: Mutex::new(current),
            follow,
        }
    }

    fn apply(&self, addr: Ipv4Addr) -> Result<()> {
        self.recipe
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .set_wan_ip(addr)?;
        let mut nat = lock(&self.nat);
        if nat.wan_addr() != addr {
            nat.set_wan_addr(addr);
        }
        Ok(())
    }

    /// Checks the interface once; if its address changed, follows it. Blocking.
    pub fn poll(&self) -> Result<()> {
        if !self.follow {
            return Ok(());
        }
        let mut current = self.current.lock().unwrap_or_else(PoisonError::into_inner);
        match routing::iface_ipv4(&self.iface)? {
            Some(seen) if seen != *current => {
                info!(
                    "wan: {} changed from {}/{} to {}/{}: following",
                    self.iface, current.0, current.1, seen.0, seen.1
                );
                self.apply(seen.0)?;
                *current = seen;
            }
            Some(_) => {}
            None => {
                if current.0 != Ipv4Addr::UNSPECIFIED {
                    warn!(
                        "wan: {} has no IPv4 address any more; keeping {}",
                        self.iface, current.0
                    );
                    // Remember that we warned; the engine keeps the old address.
                    *current = (Ipv4Addr::UNSPECIFIED, 0);
                }
            }
        }
        Ok(())
    }
}

impl WanControl for SystemWan {
    fn set_wan(&self, addr: Ipv4Addr, len: u8) -> Result<()> {
        let mut current = self.current.lock().unwrap_or_else(PoisonError::into_inner);
        let old = match *current {
            (Ipv4Addr::UNSPECIFIED, _) => routing::iface_ipv4(&self.iface)?,
            c => Some(c),
        };
        match old {
            Some(old) if old == (addr, len) => {}
            Some(old) => routing::change_iface_addr(&self.iface, old, (addr, len))?,
            None => {
                let a = format!("{addr}/{len}");
                routing::ip(&["addr", "add", &a, "dev", &self.iface])?;
            }
        }
        self.apply(addr)?;
        *current = (addr, len);
        info!("wan: address is now {addr}/{len}");
        Ok(())
    }
}

/// Notices of IPv4 address changes in this network namespace: a netlink socket subscribed to
/// `RTMGRP_IPV4_IFADDR` (rtnetlink(7)). The messages themselves are not parsed: any notice
/// (or an overrun, ENOBUFS) means "look at the WAN interface again", which is rare and cheap.
#[derive(Debug)]
pub struct AddressEvents {
    fd: tokio::io::unix::AsyncFd<OwnedFd>,
}

impl AddressEvents {
    /// Opens the subscription (inside a tokio runtime).
    pub fn open() -> io::Result<AddressEvents> {
        // SAFETY: socket(2) and bind(2) with a zeroed, filled-in sockaddr_nl of the size we
        // pass; the descriptor is owned at once.
        let fd = unsafe {
            let raw = libc::socket(
                libc::AF_NETLINK,
                libc::SOCK_RAW | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
                libc::NETLINK_ROUTE,
            );
            if raw < 0 {
                return Err(io::Error::last_os_error());
            }
            let fd = OwnedFd::from_raw_fd(raw);
            let mut addr: libc::sockaddr_nl = std::mem::zeroed();
            addr.nl_family = libc::AF_NETLINK as libc::sa_family_t;
            addr.nl_groups = libc::RTMGRP_IPV4_IFADDR as u32;
            let rc = libc::bind(
                fd.as_raw_fd(),
                (&raw const addr).cast(),
                std::mem::size_of::<libc::sockaddr_nl>() as libc::socklen_t,
            );
            if rc < 0 {
                return Err(io::Error::last_os_error());
            }
            fd
        };
        // SAFETY: `fd` is an open descriptor the AsyncFd owns from here on; OwnedFd always
        // returns that same descriptor.
        let fd = unsafe {
            tokio::io::unix::AsyncFd::register_with_interest(fd, tokio::io::Interest::READABLE)
        }
        .map_err(io::Error::from)?;
        Ok(AddressEvents { fd })
    }

    /// Waits until at least one notice has come, and reads every pending one.
    pub async fn changed(&self) -> io::Result<()> {
        loop {
            let mut guard = self.fd.readable().await?;
            match guard.try_io(|fd| drain(fd.get_ref())) {
                Ok(result) => return result,
                Err(_would_block) => continue,
            }
        }
    }
}

/// Reads every pending netlink message; WouldBlock if there was none.
fn drain(fd: &OwnedFd) -> io::Result<()> {
    let mut buf = [0u8; 8192];
    let mut got = false;
    loop {
        // SAFETY: recv(2) into a buffer of the length we pass.
        let n = unsafe {
            libc::recv(
                fd.as_raw_fd(),
                buf.as_mut_ptr().cast(),
                buf.len(),
                libc::MSG_DONTWAIT,
            )
        };
        if n > 0 {
            got = true;
            continue;
        }
        let err = io::Error::last_os_error();
        return match err.raw_os_error() {
            // The socket overran: notices were lost, so something changed.
            Some(libc::ENOBUFS) => Ok(()),
            Some(libc::EINTR) => continue,
            _ if err.kind() == io::ErrorKind::WouldBlock => {
                if got {
                    Ok(())
                } else {
                    Err(err)
                }
            }
            _ if n == 0 => Ok(()),
            _ => Err(err),
        };
    }
}
