//! The home router: NAPT on a TUN device, port forwarding, the UPnP IGD with NAT-PMP and PCP,
//! DHCP and the admin page.
//!
//! Layers, from the wire inwards:
//! - [`nat`]: the translation engine. Sans-IO: a packet goes in with `now`, the translated
//!   packet comes out, timers are driven by the caller. All NAT behaviour lives here.
//! - [`mapping`]: the port-mapping table that UPnP IGD, NAT-PMP and PCP share: leases,
//!   policy rules, the state file. Sans-IO.
//! - [`upnp`]: the LAN services around it: the IGD (SSDP, SOAP dispatch, GENA; the action
//!   table itself is `shared::igd::actions`), NAT-PMP and PCP on UDP 5351.
//! - the IO shell (binary `router`): opens the TUN device, installs the routing recipe that
//!   steers LAN<->WAN traffic through it, runs the dataplane loop and the LAN-only control API.
//!
//! # The run loop of the binary
//!
//! 1. **Setup** (`main.rs`): [`config`] merges flags over the TOML file; the WAN and LAN
//!    addresses are read from the interfaces ([`routing::iface_ipv4`]); the engine is built with
//!    the static forwards; the control socket is bound and the pcap files opened (so those
//!    errors come before anything in the namespace changes); [`routing::check_clean`] refuses a
//!    namespace a crashed run left dirty; [`device::tun::Tun`] creates the TUN device and
//!    [`routing::Recipe::install`] adds the routes, rules and sysctls, recording each step.
//!    SIGINT/SIGTERM handlers are installed before any of this, so a signal during setup still
//!    leads to teardown.
//! 2. **Run**: [`dataplane::run`] on its own OS thread (read, `Nat::process`, write back, drain
//!    `poll_transmit`, `expire` at `next_deadline`), sharing the engine with the tokio side
//!    through `Arc<Mutex<Nat>>`, locked once per batch. On a current-thread tokio runtime:
//!    [`control::serve`] (the HTTP API) and a one-second poll of the WAN interface's address
//!    ([`wan::SystemWan::poll`]), and the LAN services [`upnp`] (IGD, NAT-PMP, PCP) and
//!    [`dhcp`] (the DHCP server; it loads its lease file and binds UDP 67 on the LAN
//!    interface during setup, before the namespace changes).
//! 3. **Shutdown** on SIGINT, SIGTERM, or the dataplane thread ending (error or panic): the
//!    dataplane is woken through an eventfd and joined (it flushes the captures), the API stops,
//!    [`routing::Recipe::teardown`] undoes every recorded step in reverse order and restores
//!    the sysctls, and closing the TUN removes the device. The recipe also tears itself down on
//!    drop, which covers an error after a partial setup and a panic on the main thread.

pub mod access;
pub mod admin;
pub mod config;
pub mod control;
pub mod dataplane;
pub mod device;
pub mod dhcp;
pub mod httpguard;
pub mod mapping;
pub mod metrics;
pub mod nat;
pub mod routing;
pub mod upnp;
pub mod wan;

/// The old path of [`mapping`], for code written before the rename; use `mapping`.
pub use mapping as igd;
