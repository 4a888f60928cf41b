//! The port-mapping table that UPnP IGD, NAT-PMP and PCP share.
//!
//! Sans-IO: every operation takes `now`; the table never reads a clock. Each change
//! (added, updated, removed) is appended to an ordered change log that the shell drains with
//! [`MappingTable::take_changes`] and applies to the NAT (`add_forward` / `remove_forward`) in
//! that order, and turns into GENA events (PortMappingNumberOfEntries, SystemUpdateID).
//!
//! Rules (WANIPConnection:2 §2.4.16-§2.4.21, miniupnpd's `upnpredirect.c` where the spec
//! leaves room):
//! - A mapping is identified by (protocol, external port). The remote host is stored and
//!   reported, and must match when a request names one.
//! - AddPortMapping on a taken port: the same internal client (and remote host) updates the
//!   mapping (renewal, new internal port, description, lease); another client gets 718
//!   ConflictInMappingEntry. This is the v2 overwrite rule and what miniupnpd does for v1.
//! - Lease 0 is permanent on v1; on v2 it means the maximum, 604800 s, and longer leases are
//!   clamped to it (WANIPConnection:2 §2.2.9).
//! - Secure mode (default on): a client maps only to itself (else 718 on v1, as miniupnpd
//!   answers, and 606 on v2) and deletes only mappings to itself (606).
//! - Permission rules (first match wins), reserved ports (729) and limits per client and in
//!   total (728).

use std::collections::HashSet;
use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use shared::igd::{MappingKey, PortMappingEntry, Protocol, V2_MAX_LEASE};
use shared::natpmp::{NatPmpResult, PcpResult};
use shared::upnp_error::UpnpError;

use super::policy::{Rules, Verdict};

/// Which protocol created a mapping.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Origin {
    /// UPnP IGD (AddPortMapping / AddAnyPortMapping).
    Upnp,
    /// NAT-PMP (RFC 6886).
    NatPmp,
    /// PCP MAP (RFC 6887).
    Pcp,
}

impl Origin {
    /// Short name used in the state file.
    pub fn as_str(self) -> &'static str {
        match self {
            Origin::Upnp => "upnp",
            Origin::NatPmp => "natpmp",
            Origin::Pcp => "pcp",
        }
    }

    /// Inverse of [`Origin::as_str`].
    pub fn parse(s: &str) -> Option<Origin> {
        match s {
            "upnp" => Some(Origin::Upnp),
            "natpmp" => Some(Origin::NatPmp),
            "pcp" => Some(Origin::Pcp),
            _ => None,
        }
    }
}

/// One port mapping.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mapping {
    /// TCP or UDP.
    pub protocol: Protocol,
    /// External port (never 0).
    pub external_port: u16,
    /// Remote host; None = any.
    pub remote_host: Option<Ipv4Addr>,
    /// Internal client.
    pub internal_client: Ipv4Addr,
    /// Internal port.
    pub internal_port: u16,
    /// Whether the NAT should forward it.
    pub enabled: bool,
    /// Description (truncated to the configured length).
    pub description: String,
    /// When the lease ends; None = permanent.
    pub lease_end: Option<Instant>,
    /// Which protocol created it.
    pub origin: Origin,
    /// The address of the client that created (or last renewed) it.
    pub owner: Ipv4Addr,
    /// PCP mapping nonce (RFC 6887 §11.1), for PCP mappings.
    pub nonce: Option<[u8; 12]>,
}

impl Mapping {
    /// Remaining lease in whole seconds (rounded up), 0 for permanent (as
    /// `NewLeaseDuration` reports it, WANIPConnection:2 §2.4.14).
    pub fn remaining_secs(&self, now: Instant) -> u32 {
        match self.lease_end {
            None => 0,
            Some(end) => {
                let d = end.saturating_duration_since(now);
                let secs = d.as_secs() + u64::from(d.subsec_nanos() > 0);
                u32::try_from(secs).unwrap_or(u32::MAX).max(1)
            }
        }
    }

    /// As a WANIPConnection entry (GetGenericPortMappingEntry, GetListOfPortMappings).
    pub fn to_entry(&self, now: Instant) -> PortMappingEntry {
        PortMappingEntry {
            remote_host: self.remote_host,
            external_port: self.external_port,
            protocol: self.protocol,
            internal_port: self.internal_port,
            internal_client: self.internal_client,
            enabled: self.enabled,
            description: self.description.clone(),
            lease_duration: self.remaining_secs(now),
        }
    }

    fn expired(&self, now: Instant) -> bool {
        self.lease_end.is_some_and(|end| end <= now)
    }
}

/// Why a mapping was removed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RemoveReason {
    /// Its lease ended.
    Expired,
    /// A client deleted it (DeletePortMapping, DeletePortMappingRange, lifetime 0).
    Deleted,
}

/// One change to the table, in the order it happened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// A new mapping: install a forward.
    Added(Mapping),
    /// A mapping changed (renewal, internal port, enabled, description): replace the
    /// forward if the forwarding fields differ.
    Updated {
        /// Before.
        old: Mapping,
        /// After.
        new: Mapping,
    },
    /// A mapping is gone: remove its forward.
    Removed(Mapping, RemoveReason),
}

/// Why an operation failed. Maps to a UPnP error, a NAT-PMP result, or a PCP result.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TableError {
    /// The port is held by another client (718).
    #[error("conflict with another client's mapping")]
    Conflict,
    /// Secure mode: the caller may not map to / delete for another host.
    #[error("not authorized (secure mode)")]
    NotAuthorized,
    /// A permission rule denied it.
    #[error("denied by a permission rule")]
    Denied,
    /// The port is reserved for another mechanism (729).
    #[error("port reserved by another mechanism")]
    Reserved,
    /// A limit is reached, or no free port (728).
    #[error("no port mapping available")]
    NoResources,
    /// No such mapping (714).
    #[error("no such mapping")]
    NotFound,
    /// GetGeneric index past the end (713).
    #[error("index past the end")]
    IndexInvalid,
    /// Nothing in the range (730).
    #[error("no mapping in range")]
    NoneInRange,
    /// Start above end (733).
    #[error("inconsistent parameters")]
    Inconsistent,
    /// A port argument of 0 where a port is needed.
    #[error("port 0 not allowed")]
    PortZero,
}

impl TableError {
    /// The UPnP error for a request on WANIPConnection `version` (1 or 2).
    pub fn upnp_error(self, version: u32) -> UpnpError {
        let v2 = version >= 2;
        match self {
            TableError::Conflict => UpnpError::ConflictInMappingEntry,
            // miniupnpd answers 718 for both in v1 (where 606 was not defined for this action).
            TableError::NotAuthorized | TableError::Denied if !v2 => {
                UpnpError::ConflictInMappingEntry
            }
            TableError::NotAuthorized | TableError::Denied => UpnpError::ActionNotAuthorized,
            TableError::Reserved if v2 => UpnpError::ConflictWithOtherMechanisms,
            TableError::Reserved => UpnpError::ConflictInMappingEntry,
            TableError::NoResources => UpnpError::NoPortMapsAvailable,
            TableError::NotFound => UpnpError::NoSuchEntryInArray,
            TableError::IndexInvalid => UpnpError::SpecifiedArrayIndexInvalid,
            TableError::NoneInRange => UpnpError::PortMappingNotFound,
            TableError::Inconsistent => UpnpError::InconsistentParameters,
            TableError::PortZero => UpnpError::WildCardNotPermittedInExtPort,
        }
    }

    /// The NAT-PMP result code (RFC 6886 §3.5).
    pub fn natpmp_result(self) -> NatPmpResult {
        match self {
            TableError::NotAuthorized | TableError::Denied => NatPmpResult::NotAuthorized,
            _ => NatPmpResult::OutOfResources,
        }
    }

    /// The PCP result code (RFC 6887 §7.4).
    pub fn pcp_result(self) -> PcpResult {
        match self {
            TableError::NotAuthorized | TableError::Denied => PcpResult::NotAuthorized,
            TableError::Conflict | TableError::Reserved => PcpResult::CannotProvideExternal,
            TableError::NoResources => PcpResult::NoResources,
            _ => PcpResult::MalformedRequest,
        }
    }
}

/// Table configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableConfig {
    /// Secure mode (default on): clients map only to themselves and delete only their own.
    pub secure_mode: bool,
    /// Most mappings in total (728 past it).
    pub max_total: usize,
    /// Most mappings per internal client (728 past it).
    pub max_per_client: usize,
    /// Permission rules (empty allows everything).
    pub rules: Rules,
    /// Ports no client may map: (protocol or both, inclusive range). 729 on v2.
    pub reserved: Vec<(Option<Protocol>, u16, u16)>,
    /// Descriptions are cut to this many bytes (at a character boundary).
    pub max_description: usize,
    /// Upper bound for NAT-PMP / PCP lifetimes, seconds.
    pub max_pmp_lifetime: u32,
    /// Lowest port AddAnyPortMapping and NAT-PMP/PCP pick when choosing a port.
    pub min_auto_port: u16,
}

impl Default for TableConfig {
    fn default() -> Self {
        TableConfig {
            secure_mode: true,
            max_total: 1024,
            max_per_client: 256,
            rules: Rules::default(),
            reserved: Vec::new(),
            max_description: 256,
            max_pmp_lifetime: 86_400,
            min_auto_port: 1024,
        }
    }
}

/// An AddPortMapping / AddAnyPortMapping request, after SOAP parsing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AddRequest {
    /// The address the request came from.
    pub caller: Ipv4Addr,
    /// WANIPConnection version the request addressed (1 or 2): lease and error semantics.
    pub version: u32,
    /// Remote host; None = any.
    pub remote_host: Option<Ipv4Addr>,
    /// External port (AddAnyPortMapping: preferred, 0 = any).
    pub external_port: u16,
    /// Protocol.
    pub protocol: Protocol,
    /// Internal port.
    pub internal_port: u16,
    /// Internal client; None (empty argument) = the caller.
    pub internal_client: Option<Ipv4Addr>,
    /// Enabled.
    pub enabled: bool,
    /// Description.
    pub description: String,
    /// Lease as sent, seconds.
    pub lease: u32,
}

impl AddRequest {
    /// From a parsed action (shared::igd::AddPortMapping).
    pub fn from_action(caller: Ipv4Addr, version: u32, a: &shared::igd::AddPortMapping) -> Self {
        AddRequest {
            caller,
            version,
            remote_host: a.remote_host,
            external_port: a.external_port,
            protocol: a.protocol,
            internal_port: a.internal_port,
            internal_client: a.internal_client,
            enabled: a.enabled,
            description: a.description.clone(),
            lease: a.lease_duration,
        }
    }
}

/// A NAT-PMP or PCP MAP request, after wire parsing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PmpRequest {
    /// The client (the packet's source; PCP requires it to equal the client address field).
    pub client: Ipv4Addr,
    /// NAT-PMP or PCP.
    pub origin: Origin,
    /// Protocol.
    pub protocol: Protocol,
    /// Internal port (0 with lifetime 0: delete all of the client's mappings of `protocol`).
    pub internal_port: u16,
    /// Suggested external port, 0 = none.
    pub suggested_port: u16,
    /// Requested lifetime, seconds; 0 deletes.
    pub lifetime: u32,
    /// PCP nonce.
    pub nonce: Option<[u8; 12]>,
}

/// The answer to a NAT-PMP / PCP MAP request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PmpGrant {
    /// Assigned external port (the suggested one if it was free; 0 after a delete).
    pub external_port: u16,
    /// Granted lifetime (0 after a delete).
    pub lifetime: u32,
}

/// The mapping table.
#[derive(Debug, Clone)]
pub struct MappingTable {
    config: TableConfig,
    /// Insertion order: the dense 0-based index of GetGenericPortMappingEntry.
    entries: Vec<Mapping>,
    changes: Vec<Change>,
    system_update_id: u32,
    /// No lease ends before this (None: no mapping has a lease). A lower bound, kept by
    /// [`Self::log`] and made exact by a full expiry scan, so every read (each one expires
    /// first) skips the scan until a lease may have ended: O(1) instead of O(mappings).
    earliest_end: Option<Instant>,
}

fn truncate(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].to_string()
}

impl MappingTable {
    /// An empty table.
    pub fn new(config: TableConfig) -> Self {
        MappingTable {
            config,
            entries: Vec::new(),
            changes: Vec::new(),
            system_update_id: 0,
            earliest_end: None,
        }
    }

    /// The configuration.
    pub fn config(&self) -> &TableConfig {
        &self.config
    }

    /// Switches secure mode (admin setting).
    pub fn set_secure_mode(&mut self, on: bool) {
        self.config.secure_mode = on;
    }

    /// Replaces the permission rules (admin setting).
    pub fn set_rules(&mut self, rules: Rules) {
        self.config.rules = rules;
    }

    /// Number of mappings (`PortMappingNumberOfEntries`), after expiring at `now`.
    pub fn len(&mut self, now: Instant) -> usize {
        self.expire(now);
        self.entries.len()
    }

    /// Whether the table is empty (ignoring leases not yet expired by [`Self::expire`]).
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// All mappings in index order (without expiring; call [`Self::expire`] first).
    pub fn iter(&self) -> impl Iterator<Item = &Mapping> {
        self.entries.iter()
    }

    /// `SystemUpdateID` (WANIPConnection:2 §2.2.22): bumped on every change of the table.
    pub fn system_update_id(&self) -> u32 {
        self.system_update_id
    }

    /// Drains the change log, oldest first. Apply to the NAT in this order.
    pub fn take_changes(&mut self) -> Vec<Change> {
        std::mem::take(&mut self.changes)
    }

    /// Every change of `entries` goes through here (so the lease bound stays a bound).
    fn log(&mut self, c: Change) {
        self.system_update_id = self.system_update_id.wrapping_add(1);
        if let Change::Added(m) | Change::Updated { new: m, .. } = &c
            && let Some(end) = m.lease_end
        {
            self.earliest_end = Some(self.earliest_end.map_or(end, |e| e.min(end)));
        }
        self.changes.push(c);
    }

    /// Removes every mapping whose lease ended at or before `now`. Returns them; they are also
    /// in the change log (a shell that drives the NAT from [`Self::take_changes`] ignores this
    /// return value).
    pub fn expire(&mut self, now: Instant) -> Vec<Mapping> {
        if self.earliest_end.is_none_or(|e| e > now) {
            return Vec::new();
        }
        if !self.entries.iter().any(|m| m.expired(now)) {
            self.earliest_end = self.next_deadline();
            return Vec::new();
        }
        let (gone, keep): (Vec<Mapping>, Vec<Mapping>) = std::mem::take(&mut self.entries)
            .into_iter()
            .partition(|m| m.expired(now));
        self.entries = keep;
        self.earliest_end = self.next_deadline();
        for m in &gone {
            self.log(Change::Removed(m.clone(), RemoveReason::Expired));
        }
        gone
    }

    /// The earliest lease end: when the shell should call [`Self::expire`] next.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.entries.iter().filter_map(|m| m.lease_end).min()
    }

    fn position(&self, protocol: Protocol, port: u16) -> Option<usize> {
        self.entries
            .iter()
            .position(|m| m.protocol == protocol && m.external_port == port)
    }

    fn reserved(&self, protocol: Protocol, port: u16) -> bool {
        self.config
            .reserved
            .iter()
            .any(|(p, lo, hi)| p.is_none_or(|p| p == protocol) && (*lo..=*hi).contains(&port))
    }

    fn per_client(&self, client: Ipv4Addr) -> usize {
        self.entries
            .iter()
            .filter(|m| m.internal_client == client)
            .count()
    }

    fn upnp_lease(&self, now: Instant, version: u32, lease: u32) -> Option<Instant> {
        let secs = if version >= 2 {
            // WANIPConnection:2 §2.2.9: 0 means the maximum; clamp to 604800.
            if lease == 0 {
                V2_MAX_LEASE
            } else {
                lease.min(V2_MAX_LEASE)
            }
        } else if lease == 0 {
            return None; // v1: permanent
        } else {
            lease
        };
        Some(now + Duration::from_secs(u64::from(secs)))
    }

    /// Checks whether `req` may take `port`: Ok(Some(i)) = update entry i, Ok(None) = new.
    fn check_port(
        &self,
        req: &AddRequest,
        client: Ipv4Addr,
        port: u16,
    ) -> Result<Option<usize>, TableError> {
        if port == 0 {
            return Err(TableError::PortZero);
        }
        if self.reserved(req.protocol, port) {
            return Err(TableError::Reserved);
        }
        if self.config.rules.check(port, client, req.internal_port) == Verdict::Deny {
            return Err(TableError::Denied);
        }
        match self.position(req.protocol, port) {
            Some(i) => {
                let m = &self.entries[i];
                // Same client and same remote host: an update (renewal). Otherwise 718.
                if m.internal_client == client && m.remote_host == req.remote_host {
                    Ok(Some(i))
                } else {
                    Err(TableError::Conflict)
                }
            }
            None => {
                if self.entries.len() >= self.config.max_total
                    || self.per_client(client) >= self.config.max_per_client
                {
                    return Err(TableError::NoResources);
                }
                Ok(None)
            }
        }
    }

    fn authorize(&self, req: &AddRequest) -> Result<Ipv4Addr, TableError> {
        let client = req.internal_client.unwrap_or(req.caller);
        if self.config.secure_mode && client != req.caller {
            return Err(TableError::NotAuthorized);
        }
        Ok(client)
    }

    fn install(
        &mut self,
        now: Instant,
        req: &AddRequest,
        client: Ipv4Addr,
        port: u16,
        slot: Option<usize>,
    ) {
        let m = Mapping {
            protocol: req.protocol,
            external_port: port,
            remote_host: req.remote_host,
            internal_client: client,
            internal_port: req.internal_port,
            enabled: req.enabled,
            description: truncate(&req.description, self.config.max_description),
            lease_end: self.upnp_lease(now, req.version, req.lease),
            origin: Origin::Upnp,
            owner: req.caller,
            nonce: None,
        };
        match slot {
            Some(i) => {
                let old = std::mem::replace(&mut self.entries[i], m.clone());
                self.log(Change::Updated { old, new: m });
            }
            None => {
                self.entries.push(m.clone());
                self.log(Change::Added(m));
            }
        }
    }

    /// AddPortMapping (WANIPConnection:2 §2.4.16). Adding again renews.
    pub fn add(&mut self, now: Instant, req: &AddRequest) -> Result<(), TableError> {
        self.expire(now);
        let client = self.authorize(req)?;
        let slot = self.check_port(req, client, req.external_port)?;
        self.install(now, req, client, req.external_port, slot);
        Ok(())
    }

    /// AddAnyPortMapping (WANIPConnection:2 §2.4.21): the requested port if it can be had,
    /// else the next free port above it (then below), else 728. Returns the port.
    pub fn add_any(&mut self, now: Instant, req: &AddRequest) -> Result<u16, TableError> {
        self.expire(now);
        let client = self.authorize(req)?;
        // 0 = any: we choose, starting from the internal port (at or above min_auto_port).
        let wanted = if req.external_port == 0 {
            req.internal_port
        } else {
            req.external_port
        };
        if req.external_port != 0 {
            match self.check_port(req, client, wanted) {
                Ok(slot) => {
                    self.install(now, req, client, wanted, slot);
                    return Ok(wanted);
                }
                Err(TableError::NoResources) => return Err(TableError::NoResources),
                Err(_) => {}
            }
        }
        if self.entries.len() >= self.config.max_total
            || self.per_client(client) >= self.config.max_per_client
        {
            return Err(TableError::NoResources);
        }
        let port = self.find_free_port(req.protocol, wanted, |p| {
            self.config.rules.check(p, client, req.internal_port) == Verdict::Allow
        })?;
        self.install(now, req, client, port, None);
        Ok(port)
    }

    /// A free port for `wanted`: the first free one at or above it, else the nearest free one
    /// below it, never below `min_auto_port` (miniupnpd's AddAnyPortMapping also searches
    /// upwards; the camera nodes count up from 8080).
    fn find_free_port(
        &self,
        protocol: Protocol,
        wanted: u16,
        allowed: impl Fn(u16) -> bool,
    ) -> Result<u16, TableError> {
        let used: HashSet<u16> = self
            .entries
            .iter()
            .filter(|m| m.protocol == protocol)
            .map(|m| m.external_port)
            .collect();
        let min = self.config.min_auto_port.max(1);
        let wanted = wanted.max(min);
        let free = |p: u16| !used.contains(&p) && !self.reserved(protocol, p) && allowed(p);
        (wanted..=u16::MAX)
            .chain((min..wanted).rev())
            .find(|&p| free(p))
            .ok_or(TableError::NoResources)
    }

    fn find_key(&self, key: &MappingKey) -> Option<usize> {
        let i = self.position(key.protocol, key.external_port)?;
        let m = &self.entries[i];
        // A request naming a remote host must match a mapping's specific host.
        match key.remote_host {
            Some(h) if m.remote_host != Some(h) => None,
            _ => Some(i),
        }
    }

    /// GetSpecificPortMappingEntry (WANIPConnection:2 §2.4.15): 714 if absent.
    pub fn get_specific(&mut self, now: Instant, key: &MappingKey) -> Result<Mapping, TableError> {
        self.expire(now);
        self.find_key(key)
            .map(|i| self.entries[i].clone())
            .ok_or(TableError::NotFound)
    }

    /// GetGenericPortMappingEntry (WANIPConnection:2 §2.4.14): dense 0-based index, 713 past
    /// the end.
    pub fn get_generic(&mut self, now: Instant, index: u32) -> Result<Mapping, TableError> {
        self.expire(now);
        usize::try_from(index)
            .ok()
            .and_then(|i| self.entries.get(i))
            .cloned()
            .ok_or(TableError::IndexInvalid)
    }

    /// DeletePortMapping (WANIPConnection:2 §2.4.17): 714 if absent, 606 in secure mode for
    /// another host's mapping.
    pub fn delete(
        &mut self,
        now: Instant,
        caller: Ipv4Addr,
        key: &MappingKey,
    ) -> Result<Mapping, TableError> {
        self.expire(now);
        let i = self.find_key(key).ok_or(TableError::NotFound)?;
        if self.config.secure_mode && self.entries[i].internal_client != caller {
            return Err(TableError::NotAuthorized);
        }
        let m = self.entries.remove(i);
        self.log(Change::Removed(m.clone(), RemoveReason::Deleted));
        Ok(m)
    }

    /// DeletePortMappingRange (WANIPConnection:2 §2.4.18). `manage` false: only the caller's
    /// mappings; true: everyone's, which secure mode refuses (606). 730 if nothing matched.
    pub fn delete_range(
        &mut self,
        now: Instant,
        caller: Ipv4Addr,
        protocol: Protocol,
        start: u16,
        end: u16,
        manage: bool,
    ) -> Result<Vec<Mapping>, TableError> {
        self.expire(now);
        if start > end {
            return Err(TableError::Inconsistent);
        }
        if manage && self.config.secure_mode {
            return Err(TableError::NotAuthorized);
        }
        let hit = |m: &Mapping| {
            m.protocol == protocol
                && (start..=end).contains(&m.external_port)
                && (manage || m.internal_client == caller)
        };
        if !self.entries.iter().any(hit) {
            return Err(TableError::NoneInRange);
        }
        let (gone, keep): (Vec<Mapping>, Vec<Mapping>) =
            std::mem::take(&mut self.entries).into_iter().partition(hit);
        self.entries = keep;
        for m in &gone {
            self.log(Change::Removed(m.clone(), RemoveReason::Deleted));
        }
        Ok(gone)
    }

    /// GetListOfPortMappings (WANIPConnection:2 §2.4.20): mappings of `protocol` in
    /// `[start, end]`, ordered by port; only the caller's unless `manage`; at most `max`
    /// (0 = the cap) and never more than [`shared::igd::MAX_LISTING`]. 730 if none.
    #[allow(clippy::too_many_arguments)]
    pub fn list(
        &mut self,
        now: Instant,
        caller: Ipv4Addr,
        protocol: Protocol,
        start: u16,
        end: u16,
        manage: bool,
        max: u16,
    ) -> Result<Vec<PortMappingEntry>, TableError> {
        self.expire(now);
        if start > end {
            return Err(TableError::Inconsistent);
        }
        let cap = if max == 0 {
            shared::igd::MAX_LISTING
        } else {
            usize::from(max).min(shared::igd::MAX_LISTING)
        };
        let mut hits: Vec<&Mapping> = self
            .entries
            .iter()
            .filter(|m| {
                m.protocol == protocol
                    && (start..=end).contains(&m.external_port)
                    && (manage || m.internal_client == caller)
            })
            .collect();
        if hits.is_empty() {
            return Err(TableError::NoneInRange);
        }
        hits.sort_by_key(|m| m.external_port);
        Ok(hits
            .into_iter()
            .take(cap)
            .map(|m| m.to_entry(now))
            .collect())
    }

    /// A NAT-PMP (RFC 6886 §3.3) or PCP MAP (RFC 6887 §11.3) request.
    ///
    /// - lifetime 0 deletes the client's mapping of that internal port (or, with internal port
    ///   0, all its mappings of the protocol; RFC 6886 §3.4); deleting nothing is a success;
    ///   for PCP a mapping made with a different nonce is NOT_AUTHORIZED and stays;
    /// - an existing mapping of the client's internal port is renewed and keeps its external
    ///   port (RFC 6886 §3.3); for PCP a different nonce is NOT_AUTHORIZED (RFC 6887 §11.3);
    /// - otherwise the suggested port if free, else the nearest free one.
    pub fn map_pmp(&mut self, now: Instant, req: &PmpRequest) -> Result<PmpGrant, TableError> {
        self.expire(now);
        let mine = |m: &Mapping| {
            m.internal_client == req.client
                && m.protocol == req.protocol
                && (req.internal_port == 0 || m.internal_port == req.internal_port)
        };
        // RFC 6887 §11.3: a request (a delete too) for a mapping created with another nonce
        // is rejected with NOT_AUTHORIZED and changes nothing.
        let foreign_nonce =
            |m: &Mapping| req.origin == Origin::Pcp && m.nonce.is_some() && m.nonce != req.nonce;
        if req.lifetime == 0 {
            if self.entries.iter().any(|m| mine(m) && foreign_nonce(m)) {
                return Err(TableError::NotAuthorized);
            }
            let (gone, keep): (Vec<Mapping>, Vec<Mapping>) = std::mem::take(&mut self.entries)
                .into_iter()
                .partition(|m| mine(m));
            self.entries = keep;
            for m in &gone {
                self.log(Change::Removed(m.clone(), RemoveReason::Deleted));
            }
            return Ok(PmpGrant {
                external_port: 0,
                lifetime: 0,
            });
        }
        if req.internal_port == 0 {
            return Err(TableError::PortZero);
        }
        let lifetime = req.lifetime.min(self.config.max_pmp_lifetime);
        let lease_end = Some(now + Duration::from_secs(u64::from(lifetime)));
        if let Some(i) = self.entries.iter().position(mine) {
            let old = &self.entries[i];
            if foreign_nonce(old) {
                return Err(TableError::NotAuthorized);
            }
            let new = Mapping {
                lease_end,
                owner: req.client,
                ..old.clone()
            };
            let old = std::mem::replace(&mut self.entries[i], new.clone());
            let port = new.external_port;
            self.log(Change::Updated { old, new });
            return Ok(PmpGrant {
                external_port: port,
                lifetime,
            });
        }
        if self.entries.len() >= self.config.max_total
            || self.per_client(req.client) >= self.config.max_per_client
        {
            return Err(TableError::NoResources);
        }
        let wanted = if req.suggested_port == 0 {
            req.internal_port
        } else {
            req.suggested_port
        };
        let port = self.find_free_port(req.protocol, wanted, |p| {
            self.config.rules.check(p, req.client, req.internal_port) == Verdict::Allow
        })?;
        let m = Mapping {
            protocol: req.protocol,
            external_port: port,
            remote_host: None,
            internal_client: req.client,
            internal_port: req.internal_port,
            enabled: true,
            description: match req.origin {
                Origin::Pcp => "PCP".to_string(),
                _ => "NAT-PMP".to_string(),
            },
            lease_end,
            origin: req.origin,
            owner: req.client,
            nonce: req.nonce,
        };
        self.entries.push(m.clone());
        self.log(Change::Added(m));
        Ok(PmpGrant {
            external_port: port,
            lifetime,
        })
    }

    /// Puts back mappings loaded from the state file (see [`super::persist`]), logging each as
    /// added so the shell installs its forward. Entries whose port is taken are skipped.
    pub fn restore(&mut self, now: Instant, mappings: Vec<Mapping>) -> usize {
        self.expire(now);
        let mut n = 0;
        for m in mappings {
            if m.expired(now) || self.position(m.protocol, m.external_port).is_some() {
                continue;
            }
            if self.entries.len() >= self.config.max_total {
                break;
            }
            self.entries.push(m.clone());
            self.log(Change::Added(m));
            n += 1;
        }
        n
    }
}
