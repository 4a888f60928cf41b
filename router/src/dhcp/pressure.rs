//! The pool under pressure: what keeps one LAN host sending DISCOVERs (or whole exchanges)
//! from fresh MAC addresses from holding the pool.
//!
//! - **Offers are not leases** (RFC 2131 §4.3.1: the server "need not reserve the offered
//!   address"): an offer is held [`OFFER_HOLD_SECS`](super::core::OFFER_HOLD_SECS), and once
//!   it is [`OFFER_RECLAIM_SECS`] old it may go to another client when no address is free,
//!   oldest first. A client REQUESTs within milliseconds of its OFFER, so a real exchange is
//!   never cut; a flood of DISCOVERs holds nothing beyond that.
//! - **Pressure**: fewer than an eighth of the pool free (neither bound, offered nor
//!   declined). The service logs when the pool enters and leaves it.
//! - **Under pressure, new clients** (no record, no reservation) are rate-limited
//!   ([`NEW_CLIENT_BURST`], then one per [`NEW_CLIENT_INTERVAL_SECS`]; dropped as
//!   `rate_limited`), and a new binding gets a short lease ([`PRESSURE_LEASE_SECS`]): a host
//!   that completes exchanges from fresh MACs must renew each of them to keep them, and what
//!   it stops renewing comes back in minutes, not after the 12-hour lease. Known clients
//!   (a record, or a reservation) are served as always.

/// An offer this old (seconds) may be given to another client when the pool is full.
pub const OFFER_RECLAIM_SECS: u64 = 2;
/// The lease a new client gets while the pool is under pressure (seconds).
pub const PRESSURE_LEASE_SECS: u32 = 600;
/// New clients served at once under pressure before the rate limit applies.
pub const NEW_CLIENT_BURST: u32 = 8;
/// Then one new client per this many seconds.
pub const NEW_CLIENT_INTERVAL_SECS: u64 = 2;

/// A token bucket over whole seconds.
#[derive(Debug, Clone)]
pub struct NewClients {
    tokens: u32,
    last: u64,
}

impl Default for NewClients {
    fn default() -> Self {
        NewClients {
            tokens: NEW_CLIENT_BURST,
            last: 0,
        }
    }
}

impl NewClients {
    /// Takes a token at `now` if there is one.
    pub fn take(&mut self, now: u64) -> bool {
        let refill = now.saturating_sub(self.last) / NEW_CLIENT_INTERVAL_SECS;
        if refill > 0 {
            self.last = self.last.saturating_add(refill * NEW_CLIENT_INTERVAL_SECS);
            let refill = u32::try_from(refill).unwrap_or(u32::MAX);
            self.tokens = self.tokens.saturating_add(refill).min(NEW_CLIENT_BURST);
        }
        if self.tokens == 0 {
            return false;
        }
        self.tokens -= 1;
        true
    }
}

/// The pool's state, as the service logs it when `under` changes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pressure {
    pub under: bool,
    /// Addresses neither bound, offered nor declined.
    pub free: usize,
    pub size: usize,
}

impl Pressure {
    /// Under pressure: fewer than an eighth of the pool free.
    pub fn of(free: usize, size: usize) -> Pressure {
        Pressure {
            under: free * 8 < size,
            free,
            size,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_gives_a_burst_then_one_per_interval() {
        let mut b = NewClients::default();
        let t = 1_000_000;
        let first = (0..20).filter(|_| b.take(t)).count();
        assert_eq!(first as u32, NEW_CLIENT_BURST);
        assert!(!b.take(t + 1));
        assert!(b.take(t + NEW_CLIENT_INTERVAL_SECS));
        assert!(!b.take(t + NEW_CLIENT_INTERVAL_SECS));
        assert!(!Pressure::of(13, 100).under);
        assert!(Pressure::of(12, 100).under);
    }
}
