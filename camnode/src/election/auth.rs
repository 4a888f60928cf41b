//! The optional shared LAN key (`lan_key` / `--lan-key`): every LAN protocol message is
//! authenticated with HMAC-SHA256 (RFC 2104, FIPS 180-4) and replays are dropped.
//!
//! Without a key the LAN messages are unauthenticated, as before: any host on the LAN can send
//! an Inquiry and be followed as the representative. With a key, a node seals every datagram it
//! sends and drops every datagram that is not sealed with the same key, before the port manager
//! or the election sees it.
//!
//! # Wire (docs/lan-protocol.md, "Authentication")
//! The trailer goes after the body, where version-1 receivers ignore bytes, so the header and
//! body are unchanged:
//! ```text
//! header (32) | body (body length) | timestamp (u64, ms since the Unix epoch) | HMAC-SHA256 (32)
//! ```
//! The HMAC covers everything before it (header, body, timestamp).
//!
//! # Replays
//! A receiver accepts a sealed message only if its timestamp is within [`MAX_SKEW_MS`] of its
//! own clock (nodes of one LAN keep NTP time), and its (node id, sequence) was not accepted
//! before: per sender the highest sequence and a 64-message window below it (the anti-replay
//! window of IPsec, RFC 4303 §3.4.3), so reordered messages still count once. A sender's
//! entry lasts twice the skew after its last message; any copy older than that fails the
//! timestamp check. Only sealed messages create entries, so their number is bounded by the
//! nodes that hold the key (and capped at [`MAX_SENDERS`] anyway).

use std::collections::HashMap;

use hmac::{Hmac, Mac};
use sha2::Sha256;
use shared::lanproto::{HEADER_LEN, Packet};

/// Bytes the seal adds: timestamp and HMAC.
pub const TRAILER_LEN: usize = 8 + 32;
/// How far a sealed message's timestamp may be from the receiver's clock.
pub const MAX_SKEW_MS: u64 = 30_000;
/// Messages below the highest sequence of a sender that may still arrive (reordering).
const WINDOW: u64 = 64;
/// Most senders remembered at once.
pub const MAX_SENDERS: usize = 1024;
/// The shortest key accepted (characters of the configured text).
pub const MIN_KEY_LEN: usize = 16;

/// Why a datagram was dropped.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// Not a LAN protocol message at all (the parser's checks).
    #[error("not a LAN protocol message")]
    Malformed,
    /// No seal (a sender without the key, or a forger).
    #[error("not sealed with a LAN key")]
    Unsealed,
    /// Sealed, but not with our key, or changed on the way.
    #[error("bad HMAC")]
    BadMac,
    /// Its timestamp is too far from our clock.
    #[error("timestamp outside the accepted window")]
    Stale,
    /// Accepted before (or too far below the sender's highest sequence).
    #[error("replayed")]
    Replayed,
}

/// Counters of the gate.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AuthStats {
    pub accepted: u64,
    pub malformed: u64,
    pub unsealed: u64,
    pub bad_mac: u64,
    pub stale: u64,
    pub replayed: u64,
}

#[derive(Clone, Copy, Debug)]
struct Sender {
    highest: u64,
    /// Bit i: `highest - i` was accepted.
    seen: u64,
    last_ms: u64,
}

/// Seals outgoing and opens incoming LAN datagrams with one key. Sans-IO: the caller passes its
/// wall clock in milliseconds.
pub struct LanAuth {
    mac: Hmac<Sha256>,
    senders: HashMap<u64, Sender>,
    stats: AuthStats,
}

impl std::fmt::Debug for LanAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the key.
        f.debug_struct("LanAuth")
            .field("senders", &self.senders.len())
            .field("stats", &self.stats)
            .finish()
    }
}

impl LanAuth {
    /// A gate for `key` (any length; the configuration asks for at least [`MIN_KEY_LEN`]).
    pub fn new(key: &[u8]) -> LanAuth {
        LanAuth {
            // HMAC takes keys of any length (RFC 2104 §2), so this cannot fail.
            mac: <Hmac<Sha256> as Mac>::new_from_slice(key).unwrap_or_else(|_| unreachable!()),
            senders: HashMap::new(),
            stats: AuthStats::default(),
        }
    }

    /// Counters.
    pub fn stats(&self) -> AuthStats {
        self.stats
    }

    fn tag(&self, covered: &[u8]) -> [u8; 32] {
        let mut m = self.mac.clone();
        m.update(covered);
        m.finalize().into_bytes().into()
    }

    /// Appends the seal to a message as [`shared::lanproto::Repr::emit`] wrote it.
    pub fn seal(&self, msg: &mut Vec<u8>, now_ms: u64) {
        msg.extend_from_slice(&now_ms.to_be_bytes());
        let tag = self.tag(msg);
        msg.extend_from_slice(&tag);
    }

    /// Checks a received datagram; Ok(n): the first `n` bytes are the message to parse.
    pub fn open(&mut self, data: &[u8], now_ms: u64) -> Result<usize, AuthError> {
        let r = self.check(data, now_ms);
        let s = &mut self.stats;
        match r {
            Ok(_) => s.accepted += 1,
            Err(AuthError::Malformed) => s.malformed += 1,
            Err(AuthError::Unsealed) => s.unsealed += 1,
            Err(AuthError::BadMac) => s.bad_mac += 1,
            Err(AuthError::Stale) => s.stale += 1,
            Err(AuthError::Replayed) => s.replayed += 1,
        }
        r
    }

    fn check(&mut self, data: &[u8], now_ms: u64) -> Result<usize, AuthError> {
        let p = Packet::new_checked(data).map_err(|_| AuthError::Malformed)?;
        let end = HEADER_LEN + usize::from(p.body_len());
        if data.len() != end + TRAILER_LEN {
            return Err(AuthError::Unsealed);
        }
        let (covered, tag) = data.split_at(end + 8);
        let mut m = self.mac.clone();
        m.update(covered);
        m.verify_slice(tag).map_err(|_| AuthError::BadMac)?;
        let mut ts = [0u8; 8];
        ts.copy_from_slice(&data[end..end + 8]);
        let ts = u64::from_be_bytes(ts);
        if ts.abs_diff(now_ms) > MAX_SKEW_MS {
            return Err(AuthError::Stale);
        }
        self.replay_check(p.node_id(), p.sequence(), now_ms)?;
        Ok(end)
    }

    fn replay_check(&mut self, node: u64, seq: u64, now_ms: u64) -> Result<(), AuthError> {
        let forget = 2 * MAX_SKEW_MS;
        if let Some(s) = self.senders.get_mut(&node)
            && now_ms.saturating_sub(s.last_ms) <= forget
        {
            if seq > s.highest {
                let shift = seq - s.highest;
                s.seen = if shift >= WINDOW { 0 } else { s.seen << shift };
                s.seen |= 1;
                s.highest = seq;
            } else {
                let back = s.highest - seq;
                if back >= WINDOW || s.seen & (1 << back) != 0 {
                    return Err(AuthError::Replayed);
                }
                s.seen |= 1 << back;
            }
            s.last_ms = now_ms;
            return Ok(());
        }
        if self.senders.len() >= MAX_SENDERS {
            self.senders
                .retain(|_, s| now_ms.saturating_sub(s.last_ms) <= forget);
            if self.senders.len() >= MAX_SENDERS
                && let Some(oldest) = self
                    .senders
                    .iter()
                    .min_by_key(|(_, s)| s.last_ms)
                    .map(|(k, _)| *k)
            {
                self.senders.remove(&oldest);
            }
        }
        self.senders.insert(
            node,
            Sender {
                highest: seq,
                seen: 1,
                last_ms: now_ms,
            },
        );
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::net::{Ipv4Addr, SocketAddrV4};
    use std::time::Instant;

    use shared::lanproto::{self, Body, Header, Repr};

    use super::super::{Election, Settings};
    use super::*;

    const T: u64 = 1_800_000_000_000;

    fn inquiry(node: u64, seq: u64, term: u64) -> Vec<u8> {
        Repr {
            header: Header {
                node_id: node,
                sequence: seq,
                term,
            },
            body: Body::Inquiry(lanproto::Inquiry {
                external_port: 8080,
                external_addr: None,
            }),
        }
        .emit()
    }

    fn sealed(key: &[u8], msg: Vec<u8>, ts: u64) -> Vec<u8> {
        let mut m = msg;
        LanAuth::new(key).seal(&mut m, ts);
        m
    }

    /// The gate in front of an election, as the driver puts it: what `open` refuses never
    /// reaches the election.
    fn deliver(gate: &mut LanAuth, e: &mut Election, data: &[u8], now_ms: u64) -> bool {
        let Ok(n) = gate.open(data, now_ms) else {
            return false;
        };
        let from = SocketAddrV4::new(Ipv4Addr::new(192, 168, 1, 66), 17777);
        let msg = Repr::parse(&data[..n]).expect("parses");
        e.handle_message(Instant::now(), from, &msg);
        true
    }

    #[test]
    fn a_sealed_message_opens_and_parses_as_before() {
        let key = b"correct horse battery staple";
        let plain = inquiry(7, 100, 3);
        let data = sealed(key, plain.clone(), T);
        assert_eq!(data.len(), plain.len() + TRAILER_LEN);
        // A receiver without a key reads the same message (the seal is after the body).
        assert_eq!(Repr::parse(&data), Repr::parse(&plain));
        let mut gate = LanAuth::new(key);
        assert_eq!(gate.open(&data, T + 1000), Ok(plain.len()));
    }

    /// Issue 11: one forged Inquiry made a node follow the sender. With a key set, an Inquiry
    /// without the seal, or sealed with another key, or altered, is dropped before the election.
    #[test]
    fn a_forged_inquiry_is_ignored_when_a_key_is_set() {
        let key = b"correct horse battery staple";
        let mut gate = LanAuth::new(key);
        let mut e = Election::new(Settings::default(), 1, 1, Instant::now());
        let forged = inquiry(0x666, 5, 9);
        assert!(!deliver(&mut gate, &mut e, &forged, T));
        let other_key = sealed(b"not the key at all, sorry", inquiry(0x666, 6, 9), T);
        assert!(!deliver(&mut gate, &mut e, &other_key, T));
        let mut altered = sealed(key, inquiry(0x666, 7, 9), T);
        altered[30] ^= 1; // the term
        assert!(!deliver(&mut gate, &mut e, &altered, T));
        assert_eq!(e.leader(), None);
        let s = gate.stats();
        assert_eq!((s.unsealed, s.bad_mac, s.accepted), (1, 2, 0));
        // Without a key (no gate), the same forged Inquiry is followed, as before.
        e.handle_message(
            Instant::now(),
            SocketAddrV4::new(Ipv4Addr::new(192, 168, 1, 66), 17777),
            &Repr::parse(&forged).unwrap(),
        );
        assert_eq!(e.leader().map(|l| l.0), Some(0x666));
        // The real representative's sealed inquiry is followed.
        let mut e = Election::new(Settings::default(), 1, 1, Instant::now());
        assert!(deliver(
            &mut gate,
            &mut e,
            &sealed(key, inquiry(2, 8, 1), T),
            T
        ));
        assert_eq!(e.leader().map(|l| l.0), Some(2));
    }

    /// The fixture of `docs/lan-protocol.md` (an Inquiry from node 1, sequence 2, term 3),
    /// sealed at 1 800 000 000 000 ms with the key "correct horse battery staple"; the HMAC was
    /// computed independently (Python's `hmac` module).
    #[test]
    fn sealed_fixture() {
        let plain = hex(
            "484e434e0103000c0000000000000001000000000000000200000000000000030400021f900600043c784c40",
        );
        let mut data = plain.clone();
        LanAuth::new(b"correct horse battery staple").seal(&mut data, T);
        let want = format!(
            "{}000001a3185c5000be1aa4949036b418def2167f4e9342b72c44552641e6937984d5e52c50dfc6d7",
            plain.iter().map(|b| format!("{b:02x}")).collect::<String>()
        );
        let got: String = data.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(got, want);
    }

    fn hex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    #[test]
    fn replays_are_dropped() {
        let key = b"correct horse battery staple";
        let mut gate = LanAuth::new(key);
        let a = sealed(key, inquiry(2, 1000, 1), T);
        assert!(gate.open(&a, T).is_ok());
        assert_eq!(gate.open(&a, T + 10), Err(AuthError::Replayed));
        // Reordering inside the window counts once.
        let c = sealed(key, inquiry(2, 1002, 1), T + 20);
        let b = sealed(key, inquiry(2, 1001, 1), T + 10);
        assert!(gate.open(&c, T + 20).is_ok());
        assert!(gate.open(&b, T + 21).is_ok());
        assert_eq!(gate.open(&b, T + 22), Err(AuthError::Replayed));
        // Far below the highest: refused.
        let far = sealed(key, inquiry(2, 1002 + 100, 1), T + 30);
        assert!(gate.open(&far, T + 30).is_ok());
        let old = sealed(key, inquiry(2, 1003, 1), T + 30);
        assert_eq!(gate.open(&old, T + 31), Err(AuthError::Replayed));
        // A recording played back after the sender's entry is forgotten: too old.
        let later = T + 3 * MAX_SKEW_MS;
        assert_eq!(gate.open(&a, later), Err(AuthError::Stale));
        // A message from the future (a forged timestamp needs the key anyway) or a skewed
        // clock beyond the window: refused.
        let future = sealed(key, inquiry(3, 1, 1), T + MAX_SKEW_MS + 1);
        assert_eq!(gate.open(&future, T), Err(AuthError::Stale));
        assert_eq!(gate.stats().replayed, 3);
    }

    #[test]
    fn senders_are_bounded() {
        let key = b"correct horse battery staple";
        let mut gate = LanAuth::new(key);
        for n in 0..(MAX_SENDERS as u64 + 10) {
            let m = sealed(key, inquiry(n, 1, 1), T);
            assert!(gate.open(&m, T).is_ok());
        }
        assert!(gate.senders.len() <= MAX_SENDERS);
    }
}
