//! What one client may take of the web server: connections (in total and per client address),
//! and password guesses. Without these, one LAN host holding a thousand idle connections
//! (slowloris) left nothing for anyone else, and the password from outside could be guessed as
//! fast as the network allowed.
//!
//! - Connections: at most [`MAX_CONNECTIONS`] at once and [`MAX_PER_CLIENT`] per client address;
//!   a connection beyond either is closed at once. 127.0.0.1 (this host: benchmarks, a local
//!   relay) counts only towards the total. Hyper closes a connection that has not sent a whole
//!   request head within [`HEADER_TIMEOUT`]; a request body must arrive within
//!   [`BODY_TIMEOUT`].
//! - Passwords: after [`MAX_FAILURES`] wrong passwords from one address within
//!   [`FAILURE_WINDOW`], that address is answered 429 for [`BLOCK_FOR`] before its password is
//!   even looked at.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

/// Connections served at once: well under the 1024 file descriptors a service gets by default
/// (systemd, shells), so the node never runs out of them and stops accepting.
pub const MAX_CONNECTIONS: usize = 512;
/// Connections from one client address at once (a viewer with a page, a stream and a few
/// snapshot requests needs a handful).
pub const MAX_PER_CLIENT: usize = 64;
/// Time for a request head to arrive (the first one and each one after it on a keep-alive
/// connection).
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// Time for a request body (at most a few KiB) to arrive.
pub const BODY_TIMEOUT: Duration = Duration::from_secs(10);
/// Wrong passwords from one address before it is blocked.
pub const MAX_FAILURES: u32 = 5;
/// The window those failures are counted in.
pub const FAILURE_WINDOW: Duration = Duration::from_secs(60);
/// How long a blocked address waits.
pub const BLOCK_FOR: Duration = Duration::from_secs(60);
/// Addresses remembered for password failures; the stalest go first.
const MAX_TRACKED: usize = 4096;

#[derive(Debug, Default)]
struct Counts {
    total: usize,
    per: HashMap<IpAddr, usize>,
}

/// The connection caps, shared by every listener and handed-over connection.
#[derive(Debug, Default)]
pub struct ConnLimits {
    counts: Arc<Mutex<Counts>>,
}

/// One admitted connection; dropping it frees its place.
#[derive(Debug)]
pub struct ConnGuard {
    counts: Arc<Mutex<Counts>>,
    ip: Option<IpAddr>,
}

impl ConnLimits {
    /// A place for a connection from `ip`, or None if it must be closed.
    pub fn admit(&self, ip: IpAddr) -> Option<ConnGuard> {
        let mut c = self.counts.lock().unwrap_or_else(PoisonError::into_inner);
        if c.total >= MAX_CONNECTIONS {
            return None;
        }
        let per_client = ip != IpAddr::V4(Ipv4Addr::LOCALHOST);
        if per_client {
            let n = c.per.entry(ip).or_insert(0);
            if *n >= MAX_PER_CLIENT {
                return None;
            }
            *n += 1;
        }
        c.total += 1;
        Some(ConnGuard {
            counts: self.counts.clone(),
            ip: per_client.then_some(ip),
        })
    }

    /// Connections open now.
    pub fn open(&self) -> usize {
        self.counts
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .total
    }
}

impl Drop for ConnGuard {
    fn drop(&mut self) {
        let mut c = self.counts.lock().unwrap_or_else(PoisonError::into_inner);
        c.total = c.total.saturating_sub(1);
        if let Some(ip) = self.ip
            && let Some(n) = c.per.get_mut(&ip)
        {
            *n = n.saturating_sub(1);
            if *n == 0 {
                c.per.remove(&ip);
            }
        }
    }
}

#[derive(Clone, Copy, Debug)]
struct Failures {
    count: u32,
    since: Instant,
    blocked_until: Option<Instant>,
}

/// Wrong passwords per client address.
#[derive(Debug, Default)]
pub struct PasswordGuard {
    map: Mutex<HashMap<IpAddr, Failures>>,
}

impl PasswordGuard {
    /// Err(how long to wait) if `ip` is blocked now.
    pub fn check(&self, ip: IpAddr, now: Instant) -> Result<(), Duration> {
        let map = self.map.lock().unwrap_or_else(PoisonError::into_inner);
        match map.get(&ip).and_then(|f| f.blocked_until) {
            Some(until) if now < until => Err(until - now),
            _ => Ok(()),
        }
    }

    /// A wrong password from `ip`.
    pub fn failed(&self, ip: IpAddr, now: Instant) {
        let mut map = self.map.lock().unwrap_or_else(PoisonError::into_inner);
        if map.len() >= MAX_TRACKED && !map.contains_key(&ip) {
            map.retain(|_, f| {
                now.saturating_duration_since(f.since) < FAILURE_WINDOW
                    || f.blocked_until.is_some_and(|u| now < u)
            });
            if map.len() >= MAX_TRACKED
                && let Some(oldest) = map.iter().min_by_key(|(_, f)| f.since).map(|(k, _)| *k)
            {
                map.remove(&oldest);
            }
        }
        let f = map.entry(ip).or_insert(Failures {
            count: 0,
            since: now,
            blocked_until: None,
        });
        if now.saturating_duration_since(f.since) >= FAILURE_WINDOW {
            *f = Failures {
                count: 0,
                since: now,
                blocked_until: None,
            };
        }
        f.count += 1;
        if f.count >= MAX_FAILURES {
            f.blocked_until = Some(now + BLOCK_FOR);
            tracing::warn!(%ip, failures = f.count, "wrong passwords; blocking this address for {BLOCK_FOR:?}");
        }
    }

    /// The right password from `ip`: its count starts again.
    pub fn succeeded(&self, ip: IpAddr) {
        self.map
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&ip);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(last: u8) -> IpAddr {
        IpAddr::V4(Ipv4Addr::new(192, 168, 1, last))
    }

    #[test]
    fn per_client_and_total_caps() {
        let l = ConnLimits::default();
        let mut held: Vec<ConnGuard> = (0..MAX_PER_CLIENT)
            .map(|_| l.admit(ip(9)).unwrap())
            .collect();
        assert!(l.admit(ip(9)).is_none(), "one client's cap");
        assert!(l.admit(ip(10)).is_some(), "another client is served");
        held.pop();
        assert!(l.admit(ip(9)).is_some(), "a freed place is reused");
        drop(held);
        let local: Vec<_> = (0..MAX_CONNECTIONS)
            .map(|_| l.admit(IpAddr::V4(Ipv4Addr::LOCALHOST)))
            .collect();
        assert!(
            local.iter().all(Option::is_some),
            "127.0.0.1 is not capped per client"
        );
        assert!(l.admit(ip(11)).is_none(), "the total cap");
        drop(local);
        assert_eq!(l.open(), 0);
    }

    #[test]
    fn wrong_passwords_block_one_address_for_a_while() {
        let g = PasswordGuard::default();
        let t = Instant::now();
        for k in 0..MAX_FAILURES {
            assert!(g.check(ip(9), t).is_ok(), "attempt {k}");
            g.failed(ip(9), t);
        }
        assert!(g.check(ip(9), t + Duration::from_secs(1)).is_err());
        assert!(g.check(ip(10), t).is_ok(), "others are not blocked");
        assert!(g.check(ip(9), t + BLOCK_FOR).is_ok(), "the block ends");
        // Failures spread wider than the window do not block.
        let g = PasswordGuard::default();
        for k in 0..10u64 {
            g.failed(ip(9), t + FAILURE_WINDOW / 3 * k as u32);
        }
        assert!(g.check(ip(9), t + FAILURE_WINDOW * 4).is_ok());
        g.succeeded(ip(9));
    }
}
