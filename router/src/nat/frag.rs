//! IPv4 fragment tracking (RFC 791 section 2.3 / 3.2; RFC 3022 section 6.3 on NAPT and
//! fragments).
//!
//! Only the first fragment (offset 0) carries the transport header, so only it can be looked
//! up in the session table. The engine does not reassemble: it translates the first fragment,
//! remembers the resulting addresses under the datagram's identity (src, dst, protocol, IP id
//! as they arrived), and rewrites the later fragments' IP headers the same way. Fragments that
//! arrive before the first one are copied and held (bounded in count and bytes) until the first
//! one arrives, then released through `Nat::poll_transmit`; or dropped after
//! [`FRAGMENT_TIMEOUT`](super::FRAGMENT_TIMEOUT).
//!
//! The transport checksum lives in the first fragment and covers the whole datagram; the
//! incremental fix applied there accounts for the address change of every fragment.

use std::collections::{HashMap, VecDeque};

use super::{DropReason, table::SeededState};

/// At most this many datagrams tracked at once.
pub(crate) const MAX_DATAGRAMS: usize = 4096;
/// At most this many bytes of held (early) fragments in total.
pub(crate) const MAX_HELD_BYTES: usize = 1 << 20;
/// At most this many held fragments per datagram.
pub(crate) const MAX_HELD_PER_DATAGRAM: usize = 64;

/// The identity of a datagram before translation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) struct FragKey {
    pub src: u32,
    pub dst: u32,
    pub ident: u16,
    pub proto: u8,
}

/// How the datagram's fragments are treated.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum FragState {
    /// The first fragment has not been seen yet: hold later ones.
    Pending,
    /// Rewrite later fragments to these addresses; `dir` for the counters.
    Translated { src: u32, dst: u32, dir: super::Dir },
    /// The first fragment was dropped; drop the rest with the same reason.
    Dropped(DropReason),
}

#[derive(Debug)]
pub(crate) struct FragEntry {
    pub state: FragState,
    pub deadline: u64,
    pub held: Vec<Vec<u8>>,
    /// Payload bytes of fragments passed or dropped so far, and the datagram's payload length
    /// once its last fragment was seen: when they meet, the entry is done.
    seen: usize,
    total: Option<usize>,
}

impl FragEntry {
    /// Accounts one fragment that was passed on or dropped; true when the datagram is complete.
    pub fn note(&mut self, offset: usize, len: usize, more: bool) -> bool {
        self.seen += len;
        if !more {
            self.total = Some(offset + len);
        }
        self.total.is_some_and(|t| self.seen >= t)
    }
}

#[derive(Debug)]
pub(crate) struct Frags {
    pub map: HashMap<FragKey, FragEntry, SeededState>,
    /// (deadline, key) in creation order: the timeout is fixed, so this is sorted.
    fifo: VecDeque<(u64, FragKey)>,
    pub held_bytes: usize,
}

impl Frags {
    pub fn new(hasher: SeededState) -> Frags {
        Frags {
            map: HashMap::with_hasher(hasher),
            fifo: VecDeque::new(),
            held_bytes: 0,
        }
    }

    /// The entry for `key`, created `Pending` if there is room.
    pub fn entry(&mut self, key: FragKey, deadline: u64) -> Option<&mut FragEntry> {
        if !self.map.contains_key(&key) {
            if self.map.len() >= MAX_DATAGRAMS {
                return None;
            }
            self.map.insert(
                key,
                FragEntry {
                    state: FragState::Pending,
                    deadline,
                    held: Vec::new(),
                    seen: 0,
                    total: None,
                },
            );
            self.fifo.push_back((deadline, key));
            if self.fifo.len() > 4 * MAX_DATAGRAMS {
                // Entries removed early leave stale FIFO items; compact now and then.
                let map = &self.map;
                self.fifo
                    .retain(|(d, k)| map.get(k).is_some_and(|e| e.deadline == *d));
            }
        }
        self.map.get_mut(&key)
    }

    pub fn remove(&mut self, key: &FragKey) -> Option<FragEntry> {
        let e = self.map.remove(key)?;
        self.held_bytes -= e.held.iter().map(Vec::len).sum::<usize>();
        Some(e)
    }

    /// Removes the next entry whose timer ran out; returns it.
    pub fn pop_expired(&mut self, now: u64) -> Option<FragEntry> {
        while let Some(&(d, key)) = self.fifo.front() {
            if d > now {
                return None;
            }
            self.fifo.pop_front();
            if self.map.get(&key).is_some_and(|e| e.deadline == d) {
                return self.remove(&key);
            }
        }
        None
    }

    pub fn next_deadline(&self) -> Option<u64> {
        self.fifo.front().map(|(d, _)| *d)
    }

    pub fn clear(&mut self) {
        self.map.clear();
        self.fifo.clear();
        self.held_bytes = 0;
    }
}
