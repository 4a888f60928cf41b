//! The WAN address at run time: changed through the control API (`POST /api/wan`, an ISP
//! reassigning it) or from outside (a DHCP client on the WAN), noticed by polling the
//! interface every second. Either way the engine and the rules that name the address follow.

use std::net::Ipv4Addr;
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
