//! The home router: NAPT on a TUN device, port forwarding, and (in later modules) the UPnP IGD,
//! DHCP and the admin page.
//!
//! Layers, from the wire inwards:
//! - [`nat`]: the translation engine. Sans-IO: a packet goes in with `now`, the translated
//!   packet comes out, timers are driven by the caller. All NAT behaviour lives here.
//! - the IO shell (binary `router`): opens the TUN device, installs the routing recipe that
//!   steers LAN<->WAN traffic through it, runs the dataplane loop and the LAN-only control API.

pub mod nat;
