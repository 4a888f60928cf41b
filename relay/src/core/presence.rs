//! The presence table of seed 003: per device its observed address (the NAT's public address and
//! port the notifications came from) and its last access, plus what seed 004 needs (the LAN
//! address and whether the public address is shared with other homes).
//!
//! Kept apart from sessions and keys so that issue 13 (seed 002, several relays) can share it:
//! every entry carries the wall-clock time of its last change and the relay that holds it
//! ([`Record`]), which is what seed 002's "apply only if newer" exchange and an etcd lease need.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::time::Instant;

/// One device as this relay knows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    /// Where its last authenticated datagram came from (connection requests go there).
    pub observed: SocketAddr,
    /// Its LAN address and web port, from its last refresh (seed 004's local address).
    pub lan: Option<SocketAddr>,
    /// The external address its home router reports; differs from `observed`'s address when a
    /// further NAT shares the public address (see [`super::samenet`]).
    pub router_wan: Option<IpAddr>,
    /// The last refresh (seed 003's last access); None only transiently.
    pub last_access: Instant,
    /// The last authenticated datagram of any kind.
    pub last_heard: Instant,
    /// The highest counter accepted (replay protection).
    pub last_counter: u64,
    /// Wall-clock milliseconds of the last change of this entry (seed 002's update time).
    pub updated_unix_ms: u64,
    /// Wall-clock milliseconds of the last access, for pages ("offline since").
    pub last_access_unix_ms: u64,
    /// When this relay last answered a period query from it (rate limit).
    pub last_query_answer: Option<Instant>,
    /// Bytes relayed for its viewers: viewer -> device.
    pub bytes_up: u64,
    /// Bytes relayed for its viewers: device -> viewer.
    pub bytes_down: u64,
    /// Viewers sent to its LAN address instead (seed 004).
    pub lan_redirects: u64,
    /// Sessions made in the current one-second window: (window start, count).
    pub new_sessions: (Instant, u16),
}

/// A device's presence in the form relays would share (seed 002's connection information).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Record {
    /// The device id, 16 hex digits.
    pub id: String,
    /// The relay holding it (its configured name).
    pub relay: String,
    /// Online (refreshed within the period) or offline.
    pub online: bool,
    /// Wall-clock milliseconds of its last access.
    pub last_access_unix_ms: u64,
    /// Wall-clock milliseconds of the last change.
    pub updated_unix_ms: u64,
}

/// All devices this relay has heard since it started.
#[derive(Debug, Default)]
pub struct Presence {
    entries: HashMap<u64, Entry>,
}

impl Presence {
    /// The entry of a device.
    pub fn get(&self, id: u64) -> Option<&Entry> {
        self.entries.get(&id)
    }

    /// The entry of a device, to change it.
    pub fn get_mut(&mut self, id: u64) -> Option<&mut Entry> {
        self.entries.get_mut(&id)
    }

    /// Adds or replaces an entry.
    pub fn insert(&mut self, id: u64, e: Entry) {
        self.entries.insert(id, e);
    }

    /// Every entry, in id order (for pages and tests).
    pub fn iter_sorted(&self) -> Vec<(u64, &Entry)> {
        let mut v: Vec<_> = self.entries.iter().map(|(k, e)| (*k, e)).collect();
        v.sort_by_key(|(k, _)| *k);
        v
    }

    /// How many devices are known.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether no device is known.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}
