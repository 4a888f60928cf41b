//! What the status page, its JSON and `/metrics` show of the core: counters, devices and
//! sessions (no addresses: seed 004 discloses none).

use std::time::Instant;

use shared::relayproto as proto;

use super::Core;
use super::samenet::Party;

/// Counters of everything dropped or done, for `/metrics` and the status page. Each drop reason
/// has its own counter.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct Counters {
    pub datagrams: u64,
    pub foreign: u64,
    pub malformed: u64,
    pub wrong_direction: u64,
    pub unknown_device: u64,
    pub bad_mac: u64,
    pub replayed: u64,
    pub rate_limited: u64,
    pub keepalives: u64,
    pub refreshes: u64,
    pub registrations: u64,
    pub period_answers: u64,
    pub same_network_queries: u64,
    pub connect_requests: u64,
    pub connect_resends: u64,
    pub hello_ok: u64,
    pub hello_unknown_session: u64,
    pub hello_bad_proof: u64,
    pub hello_expired: u64,
    pub hello_malformed: u64,
    pub back_tls_failures: u64,
    pub back_unclaimed: u64,
    pub back_refused_busy: u64,
    pub viewer_refused_busy: u64,
    pub viewer_setup_failures: u64,
    pub viewer_unknown: u64,
    pub viewer_offline: u64,
    pub viewer_busy: u64,
    pub lan_redirects: u64,
    pub setup_timeouts: u64,
    pub max_time_ends: u64,
    pub sessions_closed: u64,
    pub bytes_up: u64,
    pub bytes_down: u64,
}

/// A session as the status page shows it.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct SessionInfo {
    /// Session id, 16 hex digits.
    pub id: String,
    /// Device id, 16 hex digits.
    pub device: String,
    /// "pending" (waiting for the back-connection) or "active".
    pub state: &'static str,
    /// Seconds since it was made.
    pub age_s: u64,
    /// Bytes viewer -> device.
    pub bytes_up: u64,
    /// Bytes device -> viewer.
    pub bytes_down: u64,
}

/// A device as the status page shows it (no addresses: seed 004 discloses none).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct DeviceInfo {
    /// Device id, 16 hex digits.
    pub id: String,
    /// "online", "offline" or "never" (listed, not heard since the relay started).
    pub state: &'static str,
    /// Wall-clock milliseconds of its last access.
    pub last_access_unix_ms: Option<u64>,
    /// Seconds since its last access.
    pub last_access_ago_s: Option<u64>,
    /// Sessions now (pending and active).
    pub sessions: usize,
    /// Bytes relayed viewer -> device.
    pub bytes_up: u64,
    /// Bytes relayed device -> viewer.
    pub bytes_down: u64,
    /// Viewers sent to its LAN address.
    pub lan_redirects: u64,
    /// Whether its public address is shared with other homes (a carrier NAT).
    pub shared_address: bool,
}

impl Core {
    /// Devices for the status page, in id order; listed devices never heard are included.
    pub fn devices(&self, now: Instant) -> Vec<DeviceInfo> {
        let mut out: Vec<DeviceInfo> = self
            .presence
            .iter_sorted()
            .into_iter()
            .map(|(id, e)| DeviceInfo {
                id: proto::format_device_id(id),
                state: if self.online(e, now) {
                    "online"
                } else {
                    "offline"
                },
                last_access_unix_ms: Some(e.last_access_unix_ms),
                last_access_ago_s: Some(now.saturating_duration_since(e.last_access).as_secs()),
                sessions: self.sessions_of(id),
                bytes_up: e.bytes_up,
                bytes_down: e.bytes_down,
                lan_redirects: e.lan_redirects,
                shared_address: Party {
                    observed: e.observed,
                    router_wan: e.router_wan,
                }
                .shared(&self.settings.same_network),
            })
            .collect();
        let mut never: Vec<u64> = self
            .keys
            .devices
            .keys()
            .filter(|id| self.presence.get(**id).is_none())
            .copied()
            .collect();
        never.sort_unstable();
        out.extend(never.into_iter().map(|id| DeviceInfo {
            id: proto::format_device_id(id),
            state: "never",
            last_access_unix_ms: None,
            last_access_ago_s: None,
            sessions: 0,
            bytes_up: 0,
            bytes_down: 0,
            lan_redirects: 0,
            shared_address: false,
        }));
        out
    }

    /// Sessions for the status page, pending first, then active, each by id.
    pub fn sessions(&self, now: Instant) -> Vec<SessionInfo> {
        let mut p: Vec<SessionInfo> = self
            .pending
            .iter()
            .map(|(s, p)| SessionInfo {
                id: proto::format_device_id(*s),
                device: proto::format_device_id(p.device),
                state: "pending",
                age_s: now.saturating_duration_since(p.created).as_secs(),
                bytes_up: 0,
                bytes_down: 0,
            })
            .collect();
        let mut a: Vec<SessionInfo> = self
            .active
            .iter()
            .map(|(s, a)| SessionInfo {
                id: proto::format_device_id(*s),
                device: proto::format_device_id(a.device),
                state: "active",
                age_s: now.saturating_duration_since(a.started).as_secs(),
                bytes_up: a.bytes_up,
                bytes_down: a.bytes_down,
            })
            .collect();
        p.sort_by(|x, y| x.id.cmp(&y.id));
        a.sort_by(|x, y| x.id.cmp(&y.id));
        p.extend(a);
        p
    }
}
