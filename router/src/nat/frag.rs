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
//! Under attack (RFC 8900 section 3.6 on fragment floods): a datagram whose first fragment is
//! dropped is not tracked (nothing of it will be forwarded); one source address may have at
//! most [`Limits::fragments_per_source`](super::Limits) datagrams tracked; and when the table
//! or the held bytes are full, the oldest datagram gives way to the new one. One internet
//! host sending fragments as fast as it can then only replaces its own entries, and a LAN
//! datagram, whose fragments arrive together, is translated whole long before it could be
//! the oldest.
//!
//! The transport checksum lives in the first fragment and covers the whole datagram; the
//! incremental fix applied there accounts for the address change of every fragment.

use std::collections::{HashMap, VecDeque};

use super::wire::{Ipv4Header, field, rd32};
use super::{
    Dir, DropReason, FRAGMENT_TIMEOUT, Nat, Rewrite, Verdict, ms, rewrite, table::SeededState,
};

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
    Translated { src: u32, dst: u32, dir: Dir },
}

#[derive(Debug)]
pub(crate) struct FragEntry {
    pub state: FragState,
    pub deadline: u64,
    pub held: Vec<Vec<u8>>,
    /// Payload bytes of fragments passed so far, and the datagram's payload length once its
    /// last fragment was seen: when they meet, the entry is done.
    seen: usize,
    total: Option<usize>,
}

impl FragEntry {
    /// Accounts one fragment that was passed on; true when the datagram is complete.
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
    /// (deadline, key) in creation order: the timeout is fixed, so this is sorted, and its
    /// front is also the oldest entry.
    fifo: VecDeque<(u64, FragKey)>,
    pub held_bytes: usize,
    /// Tracked datagrams per source address.
    per_source: HashMap<u32, u32, SeededState>,
}

/// Why no entry could be made.
enum NoRoom {
    /// The source has its share.
    Source,
    /// A held fragment would not fit even in an empty table.
    Held,
}

impl Frags {
    pub fn new(hasher: SeededState) -> Frags {
        Frags {
            map: HashMap::with_hasher(hasher),
            fifo: VecDeque::new(),
            held_bytes: 0,
            per_source: HashMap::with_hasher(hasher),
        }
    }

    /// The entry for `key`, created `Pending` if its source is under `per_source`, evicting
    /// the oldest entries while the table is full. The evicted entries' held fragments are
    /// returned through `evicted` (counted by the caller).
    fn entry(
        &mut self,
        key: FragKey,
        deadline: u64,
        per_source: u32,
        evicted: &mut u64,
    ) -> Result<&mut FragEntry, NoRoom> {
        if !self.map.contains_key(&key) {
            if self.per_source.get(&key.src).copied().unwrap_or(0) >= per_source {
                return Err(NoRoom::Source);
            }
            while self.map.len() >= MAX_DATAGRAMS {
                if !self.evict_oldest(evicted) {
                    break;
                }
            }
            *self.per_source.entry(key.src).or_insert(0) += 1;
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
        self.map.get_mut(&key).ok_or(NoRoom::Held)
    }

    /// Frees held bytes for `len` more, from the oldest entries other than `keep`.
    fn room_for_held(&mut self, len: usize, keep: &FragKey, evicted: &mut u64) -> bool {
        if len > MAX_HELD_BYTES {
            return false;
        }
        while self.held_bytes + len > MAX_HELD_BYTES {
            let Some(&(_, oldest)) = self.fifo.front() else {
                return false;
            };
            if oldest == *keep {
                return false;
            }
            self.evict_oldest(evicted);
        }
        true
    }

    /// Removes the oldest entry; false when there is none.
    fn evict_oldest(&mut self, evicted: &mut u64) -> bool {
        while let Some((d, key)) = self.fifo.pop_front() {
            if self.map.get(&key).is_some_and(|e| e.deadline == d) {
                if let Some(e) = self.remove(&key) {
                    *evicted += e.held.len() as u64;
                }
                return true;
            }
        }
        false
    }

    pub fn remove(&mut self, key: &FragKey) -> Option<FragEntry> {
        let e = self.map.remove(key)?;
        self.held_bytes -= e.held.iter().map(Vec::len).sum::<usize>();
        if let Some(n) = self.per_source.get_mut(&key.src) {
            *n -= 1;
            if *n == 0 {
                self.per_source.remove(&key.src);
            }
        }
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
        self.per_source.clear();
    }
}

impl Nat {
    /// Fragments (RFC 791): see the module docs.
    pub(super) fn process_fragment(
        &mut self,
        now: u64,
        pkt: &mut [u8],
        ip: &Ipv4Header,
        dir: Dir,
    ) -> Result<Verdict, DropReason> {
        let key = FragKey {
            src: ip.src,
            dst: ip.dst,
            ident: ip.ident,
            proto: ip.proto,
        };
        let (off, len, more) = (ip.frag_offset(), ip.payload_len(), ip.more_fragments());
        let deadline = now.saturating_add(ms(FRAGMENT_TIMEOUT));
        let per_source = self.limits.fragments_per_source;
        let mut evicted = 0;
        if off == 0 {
            let res = self.translate(now, pkt, ip, dir);
            if let Err(r) = res {
                // Nothing of this datagram will be forwarded: forget it, with what was held.
                if let Some(e) = self.frags.remove(&key) {
                    self.counters.drop(r, e.held.len() as u64);
                }
                return Err(r);
            }
            let state = FragState::Translated {
                src: rd32(pkt, field::SRC),
                dst: rd32(pkt, field::DST),
                dir,
            };
            let entry = self.frags.entry(key, deadline, per_source, &mut evicted);
            if let Ok(e) = entry {
                e.state = state;
                let held = std::mem::take(&mut e.held);
                let mut done = e.note(off, len, more);
                self.frags.held_bytes -= held.iter().map(Vec::len).sum::<usize>();
                for mut h in held {
                    done |= self.release(&key, &mut h, state);
                    self.tx.push_back(h);
                }
                if done {
                    self.frags.remove(&key);
                }
            }
            // Without an entry (its source is over its share) the first fragment still
            // goes; the later ones are dropped as FragmentSourceLimit.
            self.counters.fragments_evicted += evicted;
            return Ok(Verdict::Forward);
        }
        let result = self.hold_or_release(key, deadline, per_source, pkt, &mut evicted);
        self.counters.fragments_evicted += evicted;
        result
    }

    fn hold_or_release(
        &mut self,
        key: FragKey,
        deadline: u64,
        per_source: u32,
        pkt: &mut [u8],
        evicted: &mut u64,
    ) -> Result<Verdict, DropReason> {
        let state = match self.frags.entry(key, deadline, per_source, evicted) {
            Ok(e) => e.state,
            Err(NoRoom::Source) => return Err(DropReason::FragmentSourceLimit),
            Err(NoRoom::Held) => return Err(DropReason::FragmentBufferFull),
        };
        if state == FragState::Pending {
            let fits = self
                .frags
                .map
                .get(&key)
                .is_some_and(|e| e.held.len() < MAX_HELD_PER_DATAGRAM)
                && self.frags.room_for_held(pkt.len(), &key, evicted);
            let Some(e) = self.frags.map.get_mut(&key).filter(|_| fits) else {
                return Err(DropReason::FragmentBufferFull);
            };
            e.held.push(pkt.to_vec());
            self.frags.held_bytes += pkt.len();
            self.counters.fragments_held += 1;
            return Ok(Verdict::Held);
        }
        if self.release(&key, pkt, state) {
            self.frags.remove(&key);
        }
        Ok(Verdict::Forward)
    }

    /// Rewrites a non-first fragment of a translated datagram and counts it; true when the
    /// datagram is complete (all its payload bytes passed).
    fn release(&mut self, key: &FragKey, pkt: &mut [u8], state: FragState) -> bool {
        let (off, len, more) = match Ipv4Header::parse(pkt) {
            Ok(h) => (h.frag_offset(), h.payload_len(), h.more_fragments()),
            Err(_) => (0, 0, true),
        };
        let done = self
            .frags
            .map
            .get_mut(key)
            .is_some_and(|e| e.note(off, len, more));
        let FragState::Translated { src, dst, dir } = state else {
            return done;
        };
        let rw = Rewrite {
            src: Some(src),
            dst: Some(dst),
            ttl_inc: self.cfg.ttl_compensation,
            ..Rewrite::default()
        };
        rewrite(pkt, &rw);
        let n = pkt.len() as u64;
        match dir {
            Dir::Out => {
                self.counters.packets_out += 1;
                self.counters.bytes_out += n;
            }
            Dir::In => {
                self.counters.packets_in += 1;
                self.counters.bytes_in += n;
            }
            Dir::Hairpin => self.counters.packets_hairpin += 1,
        }
        done
    }
}
