//! Wire formats shared by the crates of the home network in a box.
//!
//! Everything here is pure: parsers take bytes and return a typed value or an error, emitters
//! write bytes. No sockets, no clocks. The router and the camera nodes both speak these formats,
//! so they live in one place and are tested once, with byte fixtures.
//!
//! Modules, one per protocol:
//! - [`ssdp`]: discovery (UDA 1.1 §1): M-SEARCH, search responses, NOTIFY; what an IGD answers.
//! - [`soap`]: SOAP 1.1 control envelopes and faults (UDA 1.1 §3).
//! - [`igd`]: typed IGD actions of WANIPConnection:1/:2, WANCommonInterfaceConfig:1,
//!   Layer3Forwarding:1 and QueryStateVariable, server and client side; every action is one
//!   row of [`igd::actions`], the IGD action table.
//! - [`upnp_error`]: UPnP error codes (UDA 1.1 §3.2.2, WANIPConnection:2 §2.4).
//! - [`description`]: device and service descriptions (UDA 1.1 §2), generated and parsed.
//! - [`gena`]: eventing (UDA 1.1 §4): SUBSCRIBE / UNSUBSCRIBE / NOTIFY.
//! - [`natpmp`]: NAT-PMP (RFC 6886) MAP / ANNOUNCE, and the request reader of UDP 5351.
//! - [`pcp`]: PCP (RFC 6887) MAP / ANNOUNCE with options.
//! - [`url`]: http URLs split and resolved (controlURL against URLBase / LOCATION).
//! - [`lanproto`]: the camera nodes' LAN protocol (own-port notice, ...), versioned binary.
//! - [`head`]: the tolerant HTTP-style head parser SSDP and GENA share.
//! - [`relayproto`]: the relay protocol (seed 003/004): authenticated UDP datagrams between a
//!   device and a relay, and the back-connection hello.

pub mod description;
pub mod gena;
pub mod head;
pub mod igd;
pub mod lanproto;
pub mod natpmp;
pub mod pcp;
pub mod relayproto;
pub mod soap;
pub mod ssdp;
pub mod upnp_error;
pub mod url;
mod xml;

pub use xml::{XmlError, escape as xml_escape};
