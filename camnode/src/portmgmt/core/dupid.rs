//! Two nodes with one id. Ids are random and kept per LAN interface (`identity.rs`), so this
//! takes a copied state file or disk image, or a forged message. A node that hears its own id
//! from another address would otherwise drop that node's messages as its own loopback and the
//! election would count two nodes as one (two representatives nobody can tell apart). So the
//! node says so (log and `status.json`), takes a new random id, stores it and re-announces
//! itself under it: the router's table (the mapping description carries the id) and the LAN
//! messages from then on. At most once per [`HOLDOFF`], so a forger cannot make it churn ids
//! (with a LAN key, forged messages never get this far).

use std::net::SocketAddrV4;
use std::time::{Duration, Instant};

use rand::Rng as _;
use shared::lanproto;

use super::{Output, PortManager};
use crate::identity;

/// The shortest time between two changes of id.
pub const HOLDOFF: Duration = Duration::from_secs(60);

/// What the node knows about a duplicate of its id.
#[derive(Clone, Debug, Default)]
pub struct DupState {
    /// When the id last changed for a duplicate.
    changed_at: Option<Instant>,
    /// What the status says about it.
    pub warning: Option<String>,
    /// Messages heard with our id from another node.
    pub heard: u64,
}

impl PortManager {
    /// A LAN message carries our id: our own multicast looped back (from our address, with a
    /// sequence number we have used), or another node with our id.
    pub(super) fn on_own_id(&mut self, now: Instant, from: SocketAddrV4, h: lanproto::Header) {
        let from_us = self.lan_addr.is_none_or(|a| a == *from.ip());
        if from_us && h.sequence <= self.seq {
            return;
        }
        self.dup.heard += 1;
        if self
            .dup
            .changed_at
            .is_some_and(|t| now.saturating_duration_since(t) < HOLDOFF)
        {
            return;
        }
        let old = self.ident.id;
        let new = loop {
            let n: u64 = self.rng.random();
            if n != old && n != 0 {
                break n;
            }
        };
        let text = format!(
            "another node at {} uses this node's id {}; took the new id {} (a copied state file?)",
            from.ip(),
            identity::id_hex(old),
            identity::id_hex(new)
        );
        tracing::warn!("{text}");
        self.dup.changed_at = Some(now);
        self.dup.warning = Some(text);
        self.ident.id = new;
        self.out.push_back(Output::SaveIdentity(self.ident.clone()));
        if let Some(e) = &mut self.election {
            e.set_id(new);
        }
        // The mapping description names the id: re-add it (and re-send the notice).
        self.readvertise(now);
    }
}
