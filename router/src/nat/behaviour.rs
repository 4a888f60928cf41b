//! NAT behaviour knobs (RFC 4787 for UDP and ICMP, RFC 5382 for TCP) and the named presets.
//!
//! Every knob has a kebab-case name for configuration files and the control API
//! (`FromStr` / `Display` round-trip), and [`Preset`] bundles them into the router types people
//! know from STUN-era literature (RFC 3489 section 5) and from consumer routers.

use std::{fmt, str::FromStr, time::Duration};

/// How the external port of a mapping is chosen relative to the remote endpoint
/// (RFC 4787 section 4.1).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MappingBehaviour {
    /// One mapping per internal endpoint, reused for every remote (REQ-1: the recommended one).
    EndpointIndependent,
    /// One mapping per (internal endpoint, remote address).
    AddressDependent,
    /// One mapping per (internal endpoint, remote address, remote port): a "symmetric" NAT.
    AddressAndPortDependent,
}

/// Which inbound packets an existing mapping lets through (RFC 4787 section 5).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FilteringBehaviour {
    /// Anyone may send to the mapping's external port ("full cone").
    EndpointIndependent,
    /// Only addresses the internal endpoint has sent to ("restricted cone").
    AddressDependent,
    /// Only exact address:port pairs the internal endpoint has sent to ("port-restricted").
    AddressAndPortDependent,
}

/// How a new mapping's external port is picked (RFC 4787 section 4.2.1, RFC 6056).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PortAllocation {
    /// Keep the internal port when it is free and in range (REQ-3 "port preservation"),
    /// otherwise the next free port in sequence.
    Preserve,
    /// The next free port after the last one handed out, wrapping in the range.
    Sequential,
    /// A random free port from the range (seeded: reproducible in tests).
    Random,
}

/// Idle timeouts per protocol and TCP state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timeouts {
    /// UDP mapping timer (RFC 4787 REQ-5: at least 2 minutes). Default 120 s.
    pub udp: Duration,
    /// Established TCP connections (RFC 5382 REQ-5: at least 2 h 4 min). Default 7440 s.
    pub tcp_established: Duration,
    /// TCP connections that are opening (one direction seen), reset, or closed in both
    /// directions (RFC 5382 REQ-5: at least 4 minutes). Default 240 s.
    pub tcp_transitory: Duration,
    /// ICMP query (echo) sessions (RFC 5508 REQ-1: at least 60 s). Default 60 s.
    pub icmp: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            udp: Duration::from_secs(120),
            tcp_established: Duration::from_secs(7440),
            tcp_transitory: Duration::from_secs(240),
            icmp: Duration::from_secs(60),
        }
    }
}

/// The full set of behaviour knobs; runtime-switchable with [`super::Nat::set_behaviour`].
#[derive(Clone, Debug, PartialEq)]
pub struct Behaviour {
    /// Mapping behaviour (RFC 4787 section 4.1).
    pub mapping: MappingBehaviour,
    /// Filtering behaviour (RFC 4787 section 5).
    pub filtering: FilteringBehaviour,
    /// External port choice for new mappings.
    pub port_allocation: PortAllocation,
    /// Hairpinning (RFC 4787 REQ-9, RFC 5382 REQ-8): LAN hosts may reach each other through the
    /// WAN address and mapped ports.
    pub hairpin: bool,
    /// Idle timeouts.
    pub timeouts: Timeouts,
}

impl Default for Behaviour {
    /// [`Preset::Home`].
    fn default() -> Self {
        Preset::Home.behaviour()
    }
}

/// Named behaviour bundles. Every preset uses the default [`Timeouts`].
///
/// | name              | mapping                    | filtering                  | ports    | hairpin |
/// |-------------------|----------------------------|----------------------------|----------|---------|
/// | `home` (default)  | endpoint-independent       | address-and-port-dependent | preserve | on      |
/// | `fullcone`        | endpoint-independent       | endpoint-independent       | preserve | on      |
/// | `restricted`      | endpoint-independent       | address-dependent          | preserve | on      |
/// | `port-restricted` | endpoint-independent       | address-and-port-dependent | preserve | on      |
/// | `symmetric`       | address-and-port-dependent | address-and-port-dependent | random   | on      |
///
/// `home` and `port-restricted` translate identically: `home` is what a typical consumer
/// router (Linux masquerade) does, `port-restricted` is the classic STUN name for the same thing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Preset {
    /// EIM + APDF + port preservation + hairpin: a typical home router.
    Home,
    /// EIM + EIF: anyone may reach a mapped port ("full cone").
    FullCone,
    /// EIM + ADF: only addresses the host has contacted ("restricted cone").
    Restricted,
    /// EIM + APDF ("port-restricted cone").
    PortRestricted,
    /// APDM + APDF with random ports: a new port per destination ("symmetric").
    Symmetric,
}

impl Preset {
    /// Every preset, in documentation order.
    pub const ALL: [Preset; 5] = [
        Preset::Home,
        Preset::FullCone,
        Preset::Restricted,
        Preset::PortRestricted,
        Preset::Symmetric,
    ];

    /// The knobs this preset sets (see the table on [`Preset`]).
    pub fn behaviour(self) -> Behaviour {
        use FilteringBehaviour as F;
        use MappingBehaviour as M;
        let (mapping, filtering, port_allocation) = match self {
            Preset::Home | Preset::PortRestricted => (
                M::EndpointIndependent,
                F::AddressAndPortDependent,
                PortAllocation::Preserve,
            ),
            Preset::FullCone => (
                M::EndpointIndependent,
                F::EndpointIndependent,
                PortAllocation::Preserve,
            ),
            Preset::Restricted => (
                M::EndpointIndependent,
                F::AddressDependent,
                PortAllocation::Preserve,
            ),
            Preset::Symmetric => (
                M::AddressAndPortDependent,
                F::AddressAndPortDependent,
                PortAllocation::Random,
            ),
        };
        Behaviour {
            mapping,
            filtering,
            port_allocation,
            hairpin: true,
            timeouts: Timeouts::default(),
        }
    }

    /// The configuration name.
    pub fn name(self) -> &'static str {
        match self {
            Preset::Home => "home",
            Preset::FullCone => "fullcone",
            Preset::Restricted => "restricted",
            Preset::PortRestricted => "port-restricted",
            Preset::Symmetric => "symmetric",
        }
    }

    /// One line for help texts and the admin page.
    pub fn summary(self) -> &'static str {
        match self {
            Preset::Home => {
                "endpoint-independent mapping, address-and-port-dependent filtering, port preservation, hairpin (default)"
            }
            Preset::FullCone => {
                "endpoint-independent mapping and filtering: anyone may reach a mapped port"
            }
            Preset::Restricted => "endpoint-independent mapping, address-dependent filtering",
            Preset::PortRestricted => {
                "endpoint-independent mapping, address-and-port-dependent filtering"
            }
            Preset::Symmetric => "address-and-port-dependent mapping and filtering, random ports",
        }
    }
}

/// A name that is none of the valid ones; `Display` lists the valid names.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown {what} {given:?}; valid: {valid}")]
pub struct ParseNameError {
    what: &'static str,
    given: String,
    valid: String,
}

impl ParseNameError {
    pub(crate) fn protocol(given: &str) -> Self {
        Self::new("protocol", given, &["tcp", "udp"])
    }

    fn new(what: &'static str, given: &str, names: &[&str]) -> Self {
        ParseNameError {
            what,
            given: given.to_owned(),
            valid: names.join(", "),
        }
    }
}

/// `FromStr` + `Display` from one table of (variant, name), with extra accepted aliases.
macro_rules! named_enum {
    ($ty:ty, $what:literal, [$(($v:expr, $name:literal)),* $(,)?], aliases [$(($av:expr, $alias:literal)),* $(,)?]) => {
        impl $ty {
            /// The kebab-case configuration name.
            pub fn name(self) -> &'static str {
                $(if self == $v { return $name; })*
                ""
            }
        }
        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.name())
            }
        }
        impl FromStr for $ty {
            type Err = ParseNameError;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                let t = s.trim();
                $(if t.eq_ignore_ascii_case($name) { return Ok($v); })*
                $(if t.eq_ignore_ascii_case($alias) { return Ok($av); })*
                Err(ParseNameError::new($what, s, &[$($name),*]))
            }
        }
    };
}

named_enum!(MappingBehaviour, "mapping behaviour", [
    (MappingBehaviour::EndpointIndependent, "endpoint-independent"),
    (MappingBehaviour::AddressDependent, "address-dependent"),
    (MappingBehaviour::AddressAndPortDependent, "address-and-port-dependent"),
], aliases [
    (MappingBehaviour::EndpointIndependent, "eim"),
    (MappingBehaviour::AddressDependent, "adm"),
    (MappingBehaviour::AddressAndPortDependent, "apdm"),
]);

named_enum!(FilteringBehaviour, "filtering behaviour", [
    (FilteringBehaviour::EndpointIndependent, "endpoint-independent"),
    (FilteringBehaviour::AddressDependent, "address-dependent"),
    (FilteringBehaviour::AddressAndPortDependent, "address-and-port-dependent"),
], aliases [
    (FilteringBehaviour::EndpointIndependent, "eif"),
    (FilteringBehaviour::AddressDependent, "adf"),
    (FilteringBehaviour::AddressAndPortDependent, "apdf"),
]);

named_enum!(PortAllocation, "port allocation", [
    (PortAllocation::Preserve, "preserve"),
    (PortAllocation::Sequential, "sequential"),
    (PortAllocation::Random, "random"),
], aliases []);

impl fmt::Display for Preset {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Preset {
    type Err = ParseNameError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let t = s.trim();
        if let Some(p) = Preset::ALL
            .into_iter()
            .find(|p| t.eq_ignore_ascii_case(p.name()))
        {
            return Ok(p);
        }
        match t.to_ascii_lowercase().as_str() {
            "full-cone" => Ok(Preset::FullCone),
            "port_restricted" | "portrestricted" => Ok(Preset::PortRestricted),
            _ => Err(ParseNameError::new(
                "preset",
                s,
                &Preset::ALL.map(Preset::name),
            )),
        }
    }
}
