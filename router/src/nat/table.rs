//! The session table: a slab of sessions, a slab of mappings, hash indexes in both directions,
//! per-protocol port ownership arrays and a lazy expiry heap.
//!
//! Vocabulary (RFC 4787 section 3): a *mapping* binds an internal endpoint to an external port
//! (and, for address[-and-port]-dependent mapping, to a remote); a *session* is one
//! (internal endpoint, remote endpoint) conversation that uses a mapping. Filtering decisions
//! are made per mapping from its sessions; timeouts are per session and a mapping lives as long
//! as it has sessions (or, for a port forward, as long as the forward exists).
//!
//! Indexes (all `HashMap`s with [`SeededState`], a fold-multiply hasher):
//! - `out_idx`: (proto, internal addr:port, remote addr:port) -> session: the outbound lookup.
//! - `in_idx`: (proto, external port, remote addr:port) -> session: the inbound lookup. The
//!   external address is always the WAN address, and an external port is owned by exactly one
//!   mapping (one internal endpoint), so this key is unique.
//! - `map_idx`: (kind, proto, internal endpoint, remote part per mapping behaviour) -> mapping.
//! - `owners[proto][port]`: which mapping owns an external port (`NONE` when free). 3 x 256 KiB,
//!   fixed; makes port allocation and the inbound "is there a mapping" check one load.
//!
//! Sessions of one mapping form an intrusive doubly linked list (`prev`/`next`), used by
//! address-dependent filtering and to remove a forward's sessions with the forward.
//!
//! Expiry: a min-heap of (deadline, slot). A session is pushed when created; refreshing it only
//! moves `expires` later. When a heap entry comes due and the session's `expires` is later, it
//! is pushed again at `expires`. When a state change shortens `expires` (a TCP RST or the second
//! FIN) an extra entry is pushed; `queued` records the authoritative entry so stale entries are
//! skipped. Cost: O(log n) per creation and per timeout period, nothing per packet.
//!
//! Slab indexing (`sessions[i]`, `mappings[m]`) only ever uses indices taken from these
//! structures themselves, never from packet bytes; `check_invariants` (tests) verifies that the
//! indexes, lists, reference counts and port owners agree after randomized traffic.

use super::limits::AddrCounts;
use std::{
    cmp::Reverse,
    collections::{BinaryHeap, HashMap, VecDeque},
    hash::{BuildHasher, Hash, Hasher},
};

/// "No index" in slabs, lists and the port owner arrays.
pub(crate) const NONE: u32 = u32::MAX;

/// Transport protocols the engine translates (ICMP: echo identifier as the port).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub(crate) enum Proto {
    Tcp = 0,
    Udp = 1,
    Icmp = 2,
}

impl Proto {
    pub fn from_ip(p: u8) -> Option<Proto> {
        match p {
            super::wire::PROTO_TCP => Some(Proto::Tcp),
            super::wire::PROTO_UDP => Some(Proto::Udp),
            super::wire::PROTO_ICMP => Some(Proto::Icmp),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Proto::Tcp => "tcp",
            Proto::Udp => "udp",
            Proto::Icmp => "icmp",
        }
    }

    fn from_u8(v: u8) -> Proto {
        match v {
            0 => Proto::Tcp,
            1 => Proto::Udp,
            _ => Proto::Icmp,
        }
    }
}

/// A fold-multiply hasher (the mixing step of foldhash / wyhash): one 64x64->128 multiply per
/// word, high and low halves xored. Not DoS-proof like SipHash, but keyed by the engine seed, and
/// an attacker on the WAN side controls only lookups, except through forwards and
/// endpoint-independent filtering, which the session cap bounds.
#[derive(Clone, Copy, Debug)]
pub(crate) struct FoldHasher(u64);

const MUL: u64 = 0x9e37_79b9_7f4a_7c15;

#[inline]
fn fold_mul(a: u64, b: u64) -> u64 {
    let p = u128::from(a) * u128::from(b);
    (p as u64) ^ ((p >> 64) as u64)
}

impl Hasher for FoldHasher {
    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut w = [0u8; 8];
            for (d, s) in w.iter_mut().zip(chunk) {
                *d = *s;
            }
            self.write_u64(u64::from_le_bytes(w));
        }
    }
    #[inline]
    fn write_u64(&mut self, x: u64) {
        self.0 = fold_mul(self.0 ^ x, MUL);
    }
    #[inline]
    fn write_u32(&mut self, x: u32) {
        self.write_u64(u64::from(x));
    }
    #[inline]
    fn write_u16(&mut self, x: u16) {
        self.write_u64(u64::from(x));
    }
    #[inline]
    fn write_u8(&mut self, x: u8) {
        self.write_u64(u64::from(x));
    }
    #[inline]
    fn finish(&self) -> u64 {
        self.0
    }
}

/// `BuildHasher` for [`FoldHasher`], keyed by the engine seed.
#[derive(Clone, Copy, Debug)]
pub(crate) struct SeededState(u64);

impl SeededState {
    pub fn new(seed: u64) -> Self {
        SeededState(fold_mul(seed ^ 0x243f_6a88_85a3_08d3, MUL) | 1)
    }
}

impl BuildHasher for SeededState {
    type Hasher = FoldHasher;
    #[inline]
    fn build_hasher(&self) -> FoldHasher {
        FoldHasher(self.0)
    }
}

/// Outbound lookup key, also the shape of mapping keys.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct OutKey {
    pub int_addr: u32,
    pub rem_addr: u32,
    pub int_port: u16,
    pub rem_port: u16,
    pub proto: Proto,
}

impl Hash for OutKey {
    #[inline]
    fn hash<H: Hasher>(&self, h: &mut H) {
        h.write_u64((u64::from(self.int_addr) << 32) | u64::from(self.rem_addr));
        h.write_u64(
            (u64::from(self.int_port) << 32) | (u64::from(self.rem_port) << 8) | self.proto as u64,
        );
    }
}

/// Inbound lookup key (the external address is always the WAN address).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct InKey {
    pub rem_addr: u32,
    pub ext_port: u16,
    pub rem_port: u16,
    pub proto: Proto,
}

impl Hash for InKey {
    #[inline]
    fn hash<H: Hasher>(&self, h: &mut H) {
        h.write_u64(
            (u64::from(self.rem_addr) << 32)
                | (u64::from(self.ext_port) << 16)
                | u64::from(self.rem_port),
        );
        h.write_u8(self.proto as u8);
    }
}

/// Mapping kinds: the three RFC 4787 mapping behaviours, and port forwards.
pub(crate) const KIND_EIM: u8 = 0;
pub(crate) const KIND_ADM: u8 = 1;
pub(crate) const KIND_APDM: u8 = 2;
pub(crate) const KIND_FORWARD: u8 = 3;

/// Mapping index key: the internal endpoint plus the remote parts the mapping depends on
/// (zero where it does not), tagged with the kind so keys of different behaviours never mix.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct MapKey {
    pub key: OutKey,
    pub kind: u8,
}

impl Hash for MapKey {
    #[inline]
    fn hash<H: Hasher>(&self, h: &mut H) {
        self.key.hash(h);
        h.write_u8(self.kind);
    }
}

/// TCP state bits in [`Session::tcp`].
pub(crate) const SEEN_OUT: u8 = 0x01;
pub(crate) const SEEN_IN: u8 = 0x02;
pub(crate) const FIN_OUT: u8 = 0x04;
pub(crate) const FIN_IN: u8 = 0x08;
pub(crate) const RST: u8 = 0x10;
/// The opener spoke again after the other side answered (any protocol; module `limits`).
pub(crate) const CONFIRMED: u8 = 0x20;

const FREE: u8 = 0xff;

/// One conversation. 64 bytes.
#[derive(Clone, Debug)]
pub(crate) struct Session {
    pub int_addr: u32,
    pub rem_addr: u32,
    pub int_port: u16,
    pub rem_port: u16,
    pub ext_port: u16,
    /// `Proto as u8`, or `FREE` for a slot on the free list.
    pub proto: u8,
    /// TCP state bits (SEEN_OUT ...); for UDP/ICMP only SEEN_OUT / SEEN_IN / CONFIRMED.
    pub tcp: u8,
    pub mapping: u32,
    /// Opened from the LAN (true) or from the internet; says which count it is in
    /// (`Table::hosts` or `Table::remotes`).
    pub out: bool,
    /// Neighbours in the mapping's session list; `next` doubles as the free-list link.
    pub prev: u32,
    pub next: u32,
    /// Milliseconds since the engine epoch.
    pub expires: u64,
    /// Deadline of this session's authoritative heap entry.
    pub queued: u64,
    pub packets: u64,
    pub bytes: u64,
}

// One cache line, as the module docs and the memory figures in nat/mod.rs say.
const _: () = assert!(std::mem::size_of::<Session>() == 64);

impl Session {
    pub fn proto(&self) -> Proto {
        Proto::from_u8(self.proto)
    }
    pub fn is_live(&self) -> bool {
        self.proto != FREE
    }
    pub fn out_key(&self) -> OutKey {
        OutKey {
            int_addr: self.int_addr,
            rem_addr: self.rem_addr,
            int_port: self.int_port,
            rem_port: self.rem_port,
            proto: self.proto(),
        }
    }
    /// May give way to a new session when the table is full: not confirmed (a handshake
    /// from a source that never saw our answer), or a TCP connection reset or closed.
    pub fn gives_way(&self) -> bool {
        self.tcp & CONFIRMED == 0
            || (self.proto() == Proto::Tcp && !super::rewrite::tcp_established(self.tcp))
    }
    pub fn in_key(&self) -> InKey {
        InKey {
            rem_addr: self.rem_addr,
            ext_port: self.ext_port,
            rem_port: self.rem_port,
            proto: self.proto(),
        }
    }
}

/// A mapping: internal endpoint <-> external port. 32 bytes.
#[derive(Clone, Debug)]
pub(crate) struct Mapping {
    /// Its `map_idx` key (for forwards: the internal endpoint; `key.rem_addr` is the forward's
    /// remote-host restriction, 0 for any).
    pub key: MapKey,
    pub ext_port: u16,
    pub live: bool,
    /// Number of sessions in the list.
    pub refs: u32,
    /// First session in the list, or the next free mapping when not live.
    pub head: u32,
}

/// See the module docs.
#[derive(Debug)]
pub(crate) struct Table {
    pub sessions: Vec<Session>,
    free_head: u32,
    pub live: usize,
    pub out_idx: HashMap<OutKey, u32, SeededState>,
    pub in_idx: HashMap<InKey, u32, SeededState>,
    pub mappings: Vec<Mapping>,
    map_free: u32,
    pub map_idx: HashMap<MapKey, u32, SeededState>,
    owners: [Box<[u32]>; 3],
    heap: BinaryHeap<Reverse<(u64, u32)>>,
    /// Sessions opened from the LAN, per internal address (module `limits`).
    pub hosts: AddrCounts,
    /// Sessions opened from the internet, per remote address.
    pub remotes: AddrCounts,
    /// Sessions opened from the internet, oldest first, with their inbound key (a slot may
    /// have been reused since): the candidates for eviction when the table is full.
    pub half_open: VecDeque<(u32, InKey)>,
}

impl Table {
    /// A table keyed by `seed`, for the LAN `lan_net/lan_mask`.
    pub fn new(seed: u64, lan_net: u32, lan_mask: u32) -> Table {
        let s = SeededState::new(seed);
        let owners = || vec![NONE; 65536].into_boxed_slice();
        Table {
            sessions: Vec::new(),
            free_head: NONE,
            live: 0,
            out_idx: HashMap::with_hasher(s),
            in_idx: HashMap::with_hasher(s),
            mappings: Vec::new(),
            map_free: NONE,
            map_idx: HashMap::with_hasher(s),
            owners: [owners(), owners(), owners()],
            heap: BinaryHeap::new(),
            hosts: AddrCounts::new(lan_net, lan_mask, s),
            // No array: remote addresses are anywhere.
            remotes: AddrCounts::new(0, 0, s),
            half_open: VecDeque::new(),
        }
    }

    /// Mapping that owns `port`, or `NONE`.
    #[inline]
    pub fn owner(&self, proto: Proto, port: u16) -> u32 {
        self.owners[proto as usize]
            .get(usize::from(port))
            .copied()
            .unwrap_or(NONE)
    }

    fn set_owner(&mut self, proto: Proto, port: u16, m: u32) {
        if let Some(o) = self.owners[proto as usize].get_mut(usize::from(port)) {
            *o = m;
        }
    }

    #[inline]
    pub fn session(&self, i: u32) -> &Session {
        // Invariant: indices come from our own indexes and lists, which only hold live slots.
        &self.sessions[i as usize]
    }

    #[inline]
    pub fn session_mut(&mut self, i: u32) -> &mut Session {
        &mut self.sessions[i as usize]
    }

    #[inline]
    pub fn mapping(&self, m: u32) -> &Mapping {
        &self.mappings[m as usize]
    }

    /// Creates a mapping owning `ext_port`. The caller checked the port is free.
    pub fn add_mapping(&mut self, key: MapKey, ext_port: u16) -> u32 {
        let m = Mapping {
            key,
            ext_port,
            live: true,
            refs: 0,
            head: NONE,
        };
        let idx = if self.map_free != NONE {
            let idx = self.map_free;
            self.map_free = self.mappings[idx as usize].head;
            self.mappings[idx as usize] = m;
            idx
        } else {
            self.mappings.push(m);
            (self.mappings.len() - 1) as u32
        };
        self.set_owner(key.key.proto, ext_port, idx);
        self.map_idx.entry(key).or_insert(idx);
        idx
    }

    /// Frees a mapping (its session list must be empty).
    pub fn remove_mapping(&mut self, m: u32) {
        let Some(map) = self.mappings.get(m as usize) else {
            return;
        };
        if !map.live {
            return;
        }
        let (key, port) = (map.key, map.ext_port);
        if self.owner(key.key.proto, port) == m {
            self.set_owner(key.key.proto, port, NONE);
        }
        if self.map_idx.get(&key) == Some(&m) {
            self.map_idx.remove(&key);
        }
        let slot = &mut self.mappings[m as usize];
        slot.live = false;
        slot.refs = 0;
        slot.head = self.map_free;
        self.map_free = m;
    }

    /// Inserts a session into the slab, the indexes, its mapping's list and the expiry heap.
    pub fn insert(&mut self, s: Session) -> u32 {
        let (ok, ik, m, exp) = (s.out_key(), s.in_key(), s.mapping, s.expires);
        if s.out {
            self.hosts.add(s.int_addr);
        } else {
            self.remotes.add(s.rem_addr);
        }
        let idx = if self.free_head != NONE {
            let idx = self.free_head;
            self.free_head = self.sessions[idx as usize].next;
            self.sessions[idx as usize] = s;
            idx
        } else {
            self.sessions.push(s);
            (self.sessions.len() - 1) as u32
        };
        // Link at the head of the mapping's list.
        let head = self.mappings[m as usize].head;
        {
            let s = &mut self.sessions[idx as usize];
            s.prev = NONE;
            s.next = head;
            s.queued = exp;
        }
        if head != NONE {
            self.sessions[head as usize].prev = idx;
        }
        let map = &mut self.mappings[m as usize];
        map.head = idx;
        map.refs += 1;
        self.out_idx.insert(ok, idx);
        self.in_idx.insert(ik, idx);
        self.heap.push(Reverse((exp, idx)));
        self.live += 1;
        if !self.sessions[idx as usize].out {
            self.half_open.push_back((idx, ik));
            if self.half_open.len() > 2 * self.live + 4096 {
                // Entries of sessions that are gone or answered; drop them now and then.
                let (in_idx, sessions) = (&self.in_idx, &self.sessions);
                self.half_open
                    .retain(|(i, k)| in_idx.get(k) == Some(i) && sessions[*i as usize].gives_way());
            }
        }
        idx
    }

    /// Removes a live session; frees its mapping when that was the last session of a dynamic
    /// mapping.
    pub fn remove(&mut self, idx: u32) {
        let Some(s) = self.sessions.get(idx as usize) else {
            return;
        };
        if !s.is_live() {
            return;
        }
        let (ok, ik, m, prev, next) = (s.out_key(), s.in_key(), s.mapping, s.prev, s.next);
        if s.out {
            self.hosts.sub(s.int_addr);
        } else {
            self.remotes.sub(s.rem_addr);
        }
        self.out_idx.remove(&ok);
        self.in_idx.remove(&ik);
        if prev != NONE {
            self.sessions[prev as usize].next = next;
        } else {
            self.mappings[m as usize].head = next;
        }
        if next != NONE {
            self.sessions[next as usize].prev = prev;
        }
        let map = &mut self.mappings[m as usize];
        map.refs -= 1;
        if map.refs == 0 && map.key.kind != KIND_FORWARD {
            self.remove_mapping(m);
        }
        let s = &mut self.sessions[idx as usize];
        s.proto = FREE;
        s.next = self.free_head;
        self.free_head = idx;
        self.live -= 1;
    }

    /// Sets a session's expiry; pushes a heap entry when the deadline moves earlier.
    #[inline]
    pub fn set_expiry(&mut self, idx: u32, expires: u64) {
        let s = &mut self.sessions[idx as usize];
        s.expires = expires;
        if expires < s.queued {
            s.queued = expires;
            self.heap.push(Reverse((expires, idx)));
        }
    }

    /// Earliest heap deadline (may be earlier than any real expiry; never later).
    pub fn next_deadline(&self) -> Option<u64> {
        self.heap.peek().map(|Reverse((d, _))| *d)
    }

    /// Pops due heap entries, at most `*work` of them (counted down); returns the next session
    /// whose idle timer ran out at `now`.
    pub fn pop_expired(&mut self, now: u64, work: &mut usize) -> Option<u32> {
        while *work > 0 {
            let &Reverse((d, idx)) = self.heap.peek()?;
            if d > now {
                return None;
            }
            *work -= 1;
            self.heap.pop();
            let Some(s) = self.sessions.get_mut(idx as usize) else {
                continue;
            };
            if !s.is_live() || s.queued != d {
                continue; // stale entry
            }
            if s.expires <= now {
                return Some(idx);
            }
            s.queued = s.expires;
            let e = s.expires;
            self.heap.push(Reverse((e, idx)));
        }
        None
    }

    /// Removes every session and every dynamic mapping; forward mappings stay (empty).
    pub fn clear_sessions(&mut self) {
        for m in 0..self.mappings.len() as u32 {
            let map = &mut self.mappings[m as usize];
            if !map.live {
                continue;
            }
            if map.key.kind == KIND_FORWARD {
                map.head = NONE;
                map.refs = 0;
            } else {
                self.remove_mapping(m);
            }
        }
        self.sessions.clear();
        self.free_head = NONE;
        self.live = 0;
        self.out_idx.clear();
        self.in_idx.clear();
        self.heap.clear();
        self.hosts.clear();
        self.remotes.clear();
        self.half_open.clear();
    }

    /// Sessions of a mapping, in list order.
    pub fn mapping_sessions(&self, m: u32) -> MappingSessions<'_> {
        let head = self
            .mappings
            .get(m as usize)
            .map_or(NONE, |m| if m.live { m.head } else { NONE });
        MappingSessions {
            table: self,
            cur: head,
        }
    }

    /// Approximate heap bytes held by the table (capacity-based).
    pub fn heap_bytes(&self) -> usize {
        use std::mem::size_of;
        let map_bytes = |cap: usize, entry: usize| {
            // hashbrown: buckets = next_pow2(cap * 8 / 7), one control byte per bucket.
            let buckets = if cap == 0 {
                0
            } else {
                (cap * 8 / 7).next_power_of_two()
            };
            buckets * (entry + 1)
        };
        self.sessions.capacity() * size_of::<Session>()
            + self.mappings.capacity() * size_of::<Mapping>()
            + map_bytes(self.out_idx.capacity(), size_of::<(OutKey, u32)>())
            + map_bytes(self.in_idx.capacity(), size_of::<(InKey, u32)>())
            + map_bytes(self.map_idx.capacity(), size_of::<(MapKey, u32)>())
            + self.heap.capacity() * size_of::<Reverse<(u64, u32)>>()
            + 3 * 65536 * size_of::<u32>()
    }
}

#[cfg(test)]
impl Table {
    /// Panics if the indexes, lists, counts and port owners disagree.
    pub fn check_invariants(&self) {
        let live: Vec<u32> = (0..self.sessions.len() as u32)
            .filter(|&i| self.session(i).is_live())
            .collect();
        assert_eq!(live.len(), self.live, "live count");
        assert_eq!(self.out_idx.len(), self.live, "out index size");
        assert_eq!(self.in_idx.len(), self.live, "in index size");
        let mut hosts: HashMap<u32, u32> = HashMap::new();
        let mut remotes: HashMap<u32, u32> = HashMap::new();
        for &i in &live {
            let s = self.session(i);
            if s.out {
                *hosts.entry(s.int_addr).or_default() += 1;
            } else {
                *remotes.entry(s.rem_addr).or_default() += 1;
            }
        }
        assert_eq!(hosts, self.hosts.to_map(), "hosts");
        assert_eq!(remotes, self.remotes.to_map(), "remotes");
        for &i in &live {
            let s = self.session(i);
            assert_eq!(self.out_idx.get(&s.out_key()), Some(&i), "out index of {i}");
            assert_eq!(self.in_idx.get(&s.in_key()), Some(&i), "in index of {i}");
            let m = self.mapping(s.mapping);
            assert!(m.live, "session {i} on a dead mapping");
            assert_eq!(m.ext_port, s.ext_port);
            assert!(s.queued <= s.expires, "heap entry no later than expiry");
        }
        for (mi, m) in self.mappings.iter().enumerate() {
            if !m.live {
                continue;
            }
            let n = self.mapping_sessions(mi as u32).count();
            assert_eq!(n as u32, m.refs, "refs of mapping {mi}");
            assert!(
                n > 0 || m.key.kind == KIND_FORWARD,
                "empty dynamic mapping {mi}"
            );
            assert_eq!(
                self.owner(m.key.key.proto, m.ext_port),
                mi as u32,
                "owner of {mi}"
            );
        }
    }
}

/// Iterator over the session indices of one mapping.
#[derive(Debug)]
pub(crate) struct MappingSessions<'a> {
    table: &'a Table,
    cur: u32,
}

impl Iterator for MappingSessions<'_> {
    type Item = u32;
    fn next(&mut self) -> Option<u32> {
        if self.cur == NONE {
            return None;
        }
        let i = self.cur;
        self.cur = self.table.sessions.get(i as usize).map_or(NONE, |s| s.next);
        Some(i)
    }
}
