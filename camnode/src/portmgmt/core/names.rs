//! Names: the automatic "camera N" (the lowest free one, from the table walk and the notices
//! heard), a collision between two automatic names, and a rename from the web side.

use super::*;

/// Most names of other nodes remembered, and most peers listed from notices alone (hostile
/// input: node ids are the sender's to choose).
pub const MAX_HEARD: usize = super::lan::MAX_SENDERS;

impl PortManager {
    /// Remembers another node's name (to keep automatic names distinct), forgetting one when
    /// [`MAX_HEARD`] are known.
    pub(super) fn heard_name(&mut self, id: u64, name: &str) {
        if self.heard_names.len() >= MAX_HEARD && !self.heard_names.contains_key(&id) {
            self.heard_names.pop_first();
        }
        self.heard_names.insert(id, name.to_string());
    }

    pub(super) fn set_name(&mut self, name: String, origin: NameOrigin) {
        self.ident.name = Some(name);
        self.ident.origin = origin;
        self.clear_timer(Timer::NameFallback);
        self.out.push_back(Output::SaveIdentity(self.ident.clone()));
    }

    /// Two nodes that picked the same automatic name at the same time: the one with the higher
    /// id picks again.
    pub(super) fn check_name_collision(&mut self, now: Instant, other_id: u64, other_name: &str) {
        if self.ident.origin != NameOrigin::Auto
            || self.ident.name.as_deref() != Some(other_name)
            || self.ident.id < other_id
        {
            return;
        }
        let used: Vec<String> = self
            .heard_names
            .values()
            .cloned()
            .chain(self.peers.values().map(|p| p.name.clone()))
            .chain([other_name.to_string()])
            .collect();
        let name = identity::lowest_free_camera_name(used.iter().map(String::as_str));
        tracing::info!(old = other_name, new = %name, "another node has our automatic name; renaming");
        self.set_name(name, NameOrigin::Auto);
        self.readvertise(now);
    }

    pub(super) fn rename(&mut self, now: Instant, name: &str) {
        let name = name.trim();
        if !identity::valid_name(name) {
            tracing::warn!(?name, "rename refused: use 1 to 64 printable characters");
            return;
        }
        if self.ident.name.as_deref() == Some(name) && self.ident.origin == NameOrigin::Renamed {
            return;
        }
        tracing::info!(%name, "renamed");
        self.set_name(name.to_string(), NameOrigin::Renamed);
        self.readvertise(now);
    }
}
