//! Claims 2, 5, 19 (embodiments 1 and 3): the representative walks the router's table every
//! `walk_interval` (`GetListOfPortMappings` on IGD:2, else `GetGenericPortMappingEntry` from
//! index 0 until 713) and keeps the entries whose description is ours ([`super::desc`]), merged
//! with the own-port notices and the inquiry answers into the peer list. The same walk picks a
//! new node's "camera N" name.

use shared::upnp_error::UpnpError;

use super::*;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum WalkPurpose {
    /// Before the first claim of an unnamed node: which "camera N" names are taken.
    Naming,
    /// The representative's periodic collection (embodiments 1, 3).
    Collect,
}

/// A table walk in progress.
#[derive(Clone, Debug)]
pub(super) struct Walk {
    pub(super) purpose: WalkPurpose,
    pub(super) started: Instant,
    pub(super) entries: Vec<PortMappingEntry>,
}

/// Another camera as the representative knows it (table, notice, inquiry answer).
#[derive(Clone, Debug)]
pub(super) struct PeerState {
    pub(super) name: String,
    pub(super) name_at: Instant,
    pub(super) lan_addr: Ipv4Addr,
    pub(super) lan_port: u16,
    pub(super) external_port: Option<u16>,
    pub(super) source: PeerSource,
    pub(super) last_seen: Instant,
    pub(super) in_table: bool,
    pub(super) notice_at: Option<Instant>,
    /// In the router's table at the last walk.
    pub(super) listed: bool,
    /// Answers the representative's inquiries (embodiment 2): until the election reports it
    /// lost, the entry stays even without a mapping.
    pub(super) answering: bool,
}

impl PortManager {
    pub(super) fn start_walk(&mut self, now: Instant, purpose: WalkPurpose) {
        if self.walk.is_some() || self.igd.is_none() {
            return;
        }
        self.walk = Some(Walk {
            purpose,
            started: now,
            entries: Vec::new(),
        });
        let v2 = self.igd.as_ref().is_some_and(|i| i.v2);
        self.queue.push_back(if v2 && !self.list_unsupported {
            Op::List
        } else {
            Op::Entry(0)
        });
    }

    pub(super) fn on_list(&mut self, now: Instant, outcome: Outcome) {
        match outcome {
            Outcome::Ok(Reply::PortListing(entries)) => self.finish_walk(now, entries),
            // An empty table (WANIPConnection:2 §2.4.20).
            Outcome::Fault(f) if f.is(UpnpError::PortMappingNotFound) => {
                self.finish_walk(now, Vec::new())
            }
            Outcome::Failed(e) => self.igd_failed(now, "GetListOfPortMappings", &e),
            other => {
                let why = match other {
                    Outcome::Fault(f) => f.to_string(),
                    Outcome::BadReply(e) => e,
                    _ => String::new(),
                };
                tracing::info!(%why, "GetListOfPortMappings unusable; walking with GetGenericPortMappingEntry");
                self.list_unsupported = true;
                self.queue.push_front(Op::Entry(0));
            }
        }
    }

    pub(super) fn on_entry(&mut self, now: Instant, index: u32, outcome: Outcome) {
        let next = match outcome {
            Outcome::Ok(Reply::GenericEntry(e)) => {
                if let Some(w) = &mut self.walk {
                    w.entries.push(e);
                }
                true
            }
            // An entry we cannot read (e.g. protocol UDPLITE): not one of ours, go on.
            Outcome::Ok(_) | Outcome::BadReply(_) => true,
            // SpecifiedArrayIndexInvalid ends the table (WANIPConnection:2 §2.4.14); some
            // routers answer NoSuchEntryInArray or InvalidArgs instead.
            Outcome::Fault(f)
                if matches!(
                    f.error,
                    Some(
                        UpnpError::SpecifiedArrayIndexInvalid
                            | UpnpError::NoSuchEntryInArray
                            | UpnpError::InvalidArgs
                    )
                ) =>
            {
                false
            }
            Outcome::Fault(f) => {
                tracing::warn!(index, "table walk stopped: {f}");
                self.walk = None;
                self.set_timer(Timer::Walk, now + self.opt.walk_interval);
                return;
            }
            Outcome::Failed(e) => return self.igd_failed(now, "GetGenericPortMappingEntry", &e),
        };
        if next && index + 1 < MAX_WALK_ENTRIES {
            self.queue.push_front(Op::Entry(index + 1));
        } else {
            let entries = self
                .walk
                .as_mut()
                .map(|w| std::mem::take(&mut w.entries))
                .unwrap_or_default();
            self.finish_walk(now, entries);
        }
    }

    /// Our cameras among the table's entries (embodiment 3): TCP, with our description, not us.
    pub(super) fn ours(
        &self,
        entries: &[PortMappingEntry],
    ) -> Vec<(desc::CamDescription, PortMappingEntry)> {
        entries
            .iter()
            .filter(|e| e.protocol == Protocol::Tcp)
            .filter_map(|e| desc::parse(&e.description).map(|d| (d, e.clone())))
            .collect()
    }

    pub(super) fn finish_walk(&mut self, now: Instant, entries: Vec<PortMappingEntry>) {
        let Some(walk) = self.walk.take() else { return };
        let ours = self.ours(&entries);
        match walk.purpose {
            WalkPurpose::Naming => {
                if self.ident.name.is_none() {
                    let used: Vec<String> = ours
                        .iter()
                        .filter(|(d, _)| d.node_id != self.ident.id)
                        .map(|(d, _)| d.name.clone())
                        .chain(self.heard_names.values().cloned())
                        .collect();
                    let name = identity::lowest_free_camera_name(used.iter().map(String::as_str));
                    tracing::info!(%name, "name assigned");
                    self.set_name(name, NameOrigin::Auto);
                }
                self.start_claim();
            }
            WalkPurpose::Collect => {
                let is_rep = self
                    .mapping
                    .is_some_and(|m| m.external == self.opt.representative_port);
                if is_rep {
                    self.collect(now, walk.started, &ours);
                }
            }
        }
    }

    /// The representative's collection from one walk that started at `started`: list the
    /// others' mappings, drop the nodes gone from the table that no longer answer, check that
    /// our own mapping is there.
    fn collect(
        &mut self,
        now: Instant,
        started: Instant,
        ours: &[(desc::CamDescription, PortMappingEntry)],
    ) {
        let others: Vec<_> = ours
            .iter()
            .filter(|(d, _)| d.node_id != self.ident.id)
            .collect();
        for p in self.peers.values_mut() {
            p.listed = false;
        }
        for (d, e) in &others {
            self.upsert_peer(
                d.node_id,
                &d.name,
                d.truncated,
                started,
                e.internal_client,
                e.internal_port,
                Some(e.external_port),
                PeerSource::RouterTable,
            );
            if let Some(p) = self.peers.get_mut(&d.node_id) {
                p.in_table = true;
                p.listed = true;
            }
        }
        let listed: Vec<u64> = others.iter().map(|(d, _)| d.node_id).collect();
        let grace = self.opt.notice_grace;
        // An entry goes when its mapping has gone AND it stopped answering (emb. 2).
        self.peers.retain(|id, p| {
            listed.contains(id)
                || p.answering
                || p.notice_at.is_some_and(|t| t >= started)
                || (!p.in_table && now.saturating_duration_since(p.last_seen) < grace)
        });
        for (d, _) in &others {
            self.check_name_collision(now, d.node_id, &d.name);
        }
        // Our own entry must be there; if the router lost it (restart without a new BOOTID),
        // ask again now rather than at the next renewal.
        if let Some(m) = self.mapping
            && !ours
                .iter()
                .any(|(d, e)| d.node_id == self.ident.id && e.external_port == m.external)
        {
            tracing::warn!(
                port = m.external,
                "our mapping is missing from the router's table; re-adding it"
            );
            self.renew();
        }
        self.queue.push_back(Op::GetExternal);
        self.set_timer(Timer::Walk, now + self.opt.walk_interval);
    }

    #[allow(clippy::too_many_arguments)]
    pub(super) fn upsert_peer(
        &mut self,
        id: u64,
        name: &str,
        truncated: bool,
        at: Instant,
        lan_addr: Ipv4Addr,
        lan_port: u16,
        external_port: Option<u16>,
        source: PeerSource,
    ) {
        if source == PeerSource::Notice
            && self.peers.len() >= super::names::MAX_HEARD
            && !self.peers.contains_key(&id)
        {
            tracing::debug!(node = %identity::id_hex(id), "own-port notice not listed: the list is full");
            return;
        }
        let now_seen = at;
        let p = self.peers.entry(id).or_insert_with(|| PeerState {
            name: name.to_string(),
            name_at: at,
            lan_addr,
            lan_port,
            external_port,
            source,
            last_seen: now_seen,
            in_table: false,
            notice_at: None,
            listed: false,
            answering: false,
        });
        // The newer information wins, except that a name cut by the router's description limit
        // never replaces the full one it is a prefix of.
        let cut_of_current = truncated && p.name.starts_with(name);
        if at >= p.name_at && !cut_of_current {
            p.name = name.to_string();
            p.name_at = at;
        }
        if at >= p.last_seen {
            p.lan_addr = lan_addr;
            p.lan_port = lan_port;
            if external_port.is_some() {
                p.external_port = external_port;
            }
            p.source = source;
            p.last_seen = at;
        }
    }
}
