//! Which terms a node believes. A term grows by one per takeover, so a real LAN never comes near
//! the top of a u64; a term there is forged or corrupt, and believing it would break the order
//! of representatives for good (a Candidacy with term `u64::MAX` overflowed `term + 1`, found by
//! fuzzing). Arithmetic on terms saturates; terms beyond [`MAX_TERM`], or more than
//! [`MAX_TERM_JUMP`] above the highest this node knows, are refused and counted.

/// The highest term a node believes: 2^32 takeovers, one a second, would take 136 years.
pub const MAX_TERM: u64 = 1 << 32;

/// The largest step above the known term a node believes (a healed partition's other side may
/// be some terms ahead; 65536 takeovers, at a second or more each, are 18 hours of nothing but
/// takeovers). A node that knows no term yet (0) accepts any term up to [`MAX_TERM`].
pub const MAX_TERM_JUMP: u64 = 1 << 16;

impl super::Election {
    /// True (and counted) if `msg` carries an implausible term: in its header, or the other
    /// representative's term in a Conflict.
    pub(super) fn implausible_term(&mut self, msg: &shared::lanproto::Repr) -> bool {
        let body_term = match &msg.body {
            shared::lanproto::Body::Conflict(c) => c.term,
            _ => 0,
        };
        let refused = !plausible(self.term, msg.header.term) || !plausible(self.term, body_term);
        if refused {
            self.stats.implausible += 1;
        }
        refused
    }

    /// This node's id changed (another node had it, `portmgmt::core::dupid`): messages from now
    /// on carry the new one; what the election knows stays.
    pub fn set_id(&mut self, node_id: u64) {
        self.id = node_id;
    }
}

/// Whether a term heard from the LAN is believable for a node that knows `known`.
pub fn plausible(known: u64, heard: u64) -> bool {
    heard <= MAX_TERM && (known == 0 || heard <= known.saturating_add(MAX_TERM_JUMP))
}

/// The term after `t` (saturating: never wraps to 0).
pub fn next(t: u64) -> u64 {
    t.saturating_add(1)
}

#[cfg(test)]
mod tests {
    use std::net::{Ipv4Addr, SocketAddrV4};
    use std::time::{Duration, Instant};

    use shared::lanproto::Repr;

    use super::super::{Election, Phase, Settings};
    use super::*;

    fn hex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    /// Issue 11, found by fuzzing: a Candidacy from node 9 with term u64::MAX panicked a debug
    /// build (`term + 1`) and wrapped the term to 0 in release. In every phase it is now counted
    /// and dropped, and the node's term is unchanged.
    #[test]
    fn candidacy_with_term_u64_max_is_refused_in_every_phase() {
        let datagram = hex("484e434e0108000000000000000000090000000000000001ffffffffffffffff");
        let msg = Repr::parse(&datagram).expect("a well-formed Candidacy");
        assert_eq!(msg.header.term, u64::MAX);
        let from = SocketAddrV4::new(Ipv4Addr::new(192, 168, 1, 66), 17777);
        let t0 = Instant::now();
        // A representative (term 1), a follower that knows no term, a node backing off.
        let mut rep = Election::new(Settings::default(), 1, 1, t0);
        rep.took_over(t0);
        let fresh = Election::new(Settings::default(), 2, 2, t0);
        let mut backing = Election::new(Settings::default(), 3, 3, t0);
        backing.handle_timeout(t0 + Duration::from_secs(10));
        for mut e in [rep, fresh, backing] {
            let (phase, term) = (e.phase(), e.term());
            e.handle_message(t0 + Duration::from_secs(10), from, &msg);
            assert_eq!((e.phase(), e.term()), (phase, term));
            assert_eq!(e.stats().implausible, 1);
            while e.poll_transmit().is_some() {}
            // And it keeps working: a later takeover counts up from its own term.
            if phase == Phase::Representative {
                assert_eq!(e.term(), 1);
            }
        }
    }

    #[test]
    fn bounds() {
        assert!(plausible(0, 0) && plausible(0, 70_000) && plausible(0, MAX_TERM));
        assert!(!plausible(0, MAX_TERM + 1) && !plausible(0, u64::MAX));
        assert!(plausible(5, 4) && plausible(5, 5 + MAX_TERM_JUMP));
        assert!(!plausible(5, 6 + MAX_TERM_JUMP));
        assert!(!plausible(u64::MAX, u64::MAX));
        assert_eq!(next(u64::MAX), u64::MAX);
    }
}
