//! Resource limits: how many sessions the table, one LAN host and one internet address may
//! hold, and what gives way when the table is full.
//!
//! - **Per LAN host** ([`Limits::sessions_per_host`]): sessions a LAN address opened itself.
//!   One busy or infected host cannot take the table from the others.
//! - **Per remote address** ([`Limits::sessions_per_remote`]): sessions an internet address
//!   opened inbound (through a port forward or endpoint-independent filtering). One host
//!   cannot take the table through a forward.
//! - **Table full** ([`Limits::max_sessions`]): a new session first evicts the oldest
//!   *unconfirmed* inbound session: one whose opener never spoke again after the LAN answered
//!   (a spoofed source never sees that answer, so never sends the final ACK of a TCP
//!   handshake or a second UDP datagram), or a TCP connection reset or closed; as a SYN cache
//!   would (RFC 4987 section 3.2 and 3.4: spoofed SYNs
//!   from random sources must not lock out real connections). A spoofed SYN flood at a
//!   forwarded port then only churns its own half-open sessions: LAN hosts keep opening
//!   connections, and an inbound handshake survives as long as the flood needs to fill the
//!   table (the table size over the flood rate), which is far longer than a round trip.
//!   Confirmed sessions are never evicted.
//!
//! Every preset uses the same defaults ([`Limits::default`]); `[nat.limits]` changes them.

use std::collections::HashMap;

use serde::Deserialize;

use super::table::SeededState;
use super::{DropReason, Nat};

/// Default cap on concurrent sessions (about 330 MB at the measured bytes per session).
pub const DEFAULT_MAX_SESSIONS: usize = 2 << 20;

/// Session and fragment limits. See the module docs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Concurrent sessions in all (default 2 097 152).
    pub max_sessions: usize,
    /// Sessions one LAN address may open (default 65 536: a busy peer-to-peer client uses a
    /// few thousand).
    pub sessions_per_host: u32,
    /// Sessions one internet address may open inbound (default 4096).
    pub sessions_per_remote: u32,
    /// Fragmented datagrams tracked at once per source address (default 64).
    pub fragments_per_source: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_sessions: DEFAULT_MAX_SESSIONS,
            sessions_per_host: 65536,
            sessions_per_remote: 4096,
            fragments_per_source: 64,
        }
    }
}

/// `[nat.limits]` in the configuration file. Signed so that `-5` gets our message.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitsSection {
    pub max_sessions: Option<i64>,
    pub sessions_per_host: Option<i64>,
    pub sessions_per_remote: Option<i64>,
    pub fragments_per_source: Option<i64>,
}

impl LimitsSection {
    /// The defaults with this section's fields; errors are (field, problem, fix).
    pub fn to_limits(&self) -> Result<Limits, (String, String, String)> {
        let mut l = Limits::default();
        let check = |field: &str, v: Option<i64>, max: i64| -> Result<Option<u32>, _> {
            match v {
                None => Ok(None),
                Some(v) if (1..=max).contains(&v) => Ok(Some(v as u32)),
                Some(v) => Err((
                    field.to_string(),
                    format!("{v} is out of range"),
                    format!("use 1 to {max}"),
                )),
            }
        };
        if let Some(v) = check("max_sessions", self.max_sessions, 1 << 26)? {
            l.max_sessions = v as usize;
        }
        if let Some(v) = check("sessions_per_host", self.sessions_per_host, 1 << 26)? {
            l.sessions_per_host = v;
        }
        if let Some(v) = check("sessions_per_remote", self.sessions_per_remote, 1 << 26)? {
            l.sessions_per_remote = v;
        }
        if let Some(v) = check("fragments_per_source", self.fragments_per_source, 4096)? {
            l.fragments_per_source = v;
        }
        Ok(l)
    }
}

/// Sessions per address: a plain array over one range of addresses (the LAN, when it has at
/// most 65 536 of them: one load per new session), a hash map for the rest.
#[derive(Debug)]
pub(crate) struct AddrCounts {
    base: u32,
    slots: Box<[u32]>,
    spill: HashMap<u32, u32, SeededState>,
}

impl AddrCounts {
    /// Counts with an array for `net/mask` (none if the range is larger than 65 536).
    pub fn new(net: u32, mask: u32, hasher: SeededState) -> AddrCounts {
        let size = u64::from(!mask) + 1;
        let slots = if size <= 65536 { size as usize } else { 0 };
        AddrCounts {
            base: net & mask,
            slots: vec![0; slots].into_boxed_slice(),
            spill: HashMap::with_hasher(hasher),
        }
    }

    #[inline]
    pub fn get(&self, addr: u32) -> u32 {
        match self.slots.get(addr.wrapping_sub(self.base) as usize) {
            Some(n) => *n,
            None => self.spill.get(&addr).copied().unwrap_or(0),
        }
    }

    #[inline]
    pub fn add(&mut self, addr: u32) {
        match self.slots.get_mut(addr.wrapping_sub(self.base) as usize) {
            Some(n) => *n += 1,
            None => *self.spill.entry(addr).or_insert(0) += 1,
        }
    }

    #[inline]
    pub fn sub(&mut self, addr: u32) {
        if let Some(n) = self.slots.get_mut(addr.wrapping_sub(self.base) as usize) {
            *n = n.saturating_sub(1);
        } else if let Some(n) = self.spill.get_mut(&addr) {
            *n -= 1;
            if *n == 0 {
                self.spill.remove(&addr);
            }
        }
    }

    pub fn clear(&mut self) {
        self.slots.fill(0);
        self.spill.clear();
    }

    /// Every non-zero count (tests).
    #[cfg(test)]
    pub fn to_map(&self) -> std::collections::HashMap<u32, u32> {
        let array = self.slots.iter().enumerate().filter(|(_, n)| **n > 0);
        let array = array.map(|(i, n)| (self.base.wrapping_add(i as u32), *n));
        array
            .chain(self.spill.iter().map(|(a, n)| (*a, *n)))
            .collect()
    }
}

impl Nat {
    /// Room for one new session of `int_addr` with `rem_addr` (opened from the LAN when
    /// `out`): the per-host or per-remote cap, then the table cap, evicting the oldest
    /// unestablished inbound session if the table is full. True when a session was evicted
    /// (mappings the caller looked up may be gone).
    pub(super) fn admit_session(
        &mut self,
        out: bool,
        int_addr: u32,
        rem_addr: u32,
    ) -> Result<bool, DropReason> {
        let l = &self.limits;
        if out {
            if self.table.hosts.get(int_addr) >= l.sessions_per_host {
                return Err(DropReason::HostSessionLimit);
            }
        } else if rem_addr != self.wan && self.table.remotes.get(rem_addr) >= l.sessions_per_remote
        {
            // Hairpinned sessions come "from" the WAN address: LAN hosts, not one remote.
            return Err(DropReason::RemoteSessionLimit);
        }
        if self.table.live < l.max_sessions {
            return Ok(false);
        }
        while let Some((idx, key)) = self.table.half_open.pop_front() {
            let current = self.table.in_idx.get(&key) == Some(&idx);
            if current && self.table.session(idx).gives_way() {
                self.table.remove(idx);
                self.counters.sessions_evicted += 1;
                return Ok(true);
            }
        }
        Err(DropReason::TableFull)
    }
}
