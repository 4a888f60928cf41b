//! The LAN endpoint (claim 6 and the LAN protocol, `shared::lanproto`): every message this
//! node sends, the own-port notice and the election's types 3-10 alike, carries our node id
//! and the next number of one sequence counter ([`PortManager::emit_lan`]). Received notices
//! and their acknowledgements pass the duplicate and reordering filter here ([`SeqFilter`]);
//! types 3-10 pass the election's own. They are kept apart because the two kinds travel
//! different ways (multicast and unicast, bursts of copies) and one overtakes the other: under
//! one shared filter an election message overtaken by a notice was dropped as old.

use super::*;

/// A sender silent this long may have restarted with a lower sequence (its clock was wrong).
pub const SEQ_RESET_AFTER: Duration = Duration::from_secs(60);
/// Most senders the filter remembers (hostile input: node ids are the sender's to choose).
pub const MAX_SENDERS: usize = 1024;

/// Duplicates and reordering, one rule for every message type: only a higher sequence number
/// from a sender counts, unless it has been silent for [`SEQ_RESET_AFTER`].
#[derive(Clone, Debug, Default)]
pub(super) struct SeqFilter {
    last: BTreeMap<u64, (u64, Instant)>,
}

impl SeqFilter {
    /// True if `sequence` from `node` is new (and remembers it).
    pub(super) fn accept(&mut self, now: Instant, node: u64, sequence: u64) -> bool {
        if let Some((last, at)) = self.last.get(&node)
            && sequence <= *last
            && now.saturating_duration_since(*at) < SEQ_RESET_AFTER
        {
            return false;
        }
        if self.last.len() >= MAX_SENDERS && !self.last.contains_key(&node) {
            self.last
                .retain(|_, (_, at)| now.saturating_duration_since(*at) < SEQ_RESET_AFTER);
            if self.last.len() >= MAX_SENDERS
                && let Some(oldest) = self
                    .last
                    .iter()
                    .min_by_key(|(_, (_, at))| *at)
                    .map(|(n, _)| *n)
            {
                self.last.remove(&oldest);
            }
        }
        self.last.insert(node, (sequence, now));
        true
    }
}

/// The own-port notice being repeated (claim 6) until the representative acknowledges it.
#[derive(Clone, Debug)]
pub(super) struct NoticeState {
    pub(super) started: Instant,
    pub(super) first_seq: u64,
    pub(super) step: usize,
    pub(super) acked: bool,
}

impl PortManager {
    /// A LAN message from us: our node id, the next sequence number, `term`.
    pub(super) fn emit_lan(&mut self, term: u64, body: lanproto::Body) -> Vec<u8> {
        self.seq = self.seq.wrapping_add(1);
        let header = lanproto::Header {
            node_id: self.ident.id,
            sequence: self.seq,
            term,
        };
        lanproto::Repr { header, body }.emit()
    }

    /// Sends `data` (from [`PortManager::emit_lan`]) to `to`.
    pub(super) fn send_lan(&mut self, to: SocketAddrV4, data: Vec<u8>) {
        self.out.push_back(Output::Lan { to, data });
        self.stats.sent += 1;
    }

    /// The term our own messages carry: the election's once it runs.
    fn own_term(&self) -> u64 {
        self.election.as_ref().map_or(self.term, Election::term)
    }

    pub(super) fn start_notice(&mut self, now: Instant) {
        let is_member = self
            .mapping
            .is_some_and(|m| m.external != self.opt.representative_port);
        if !is_member || self.shutting_down {
            return;
        }
        self.notice = Some(NoticeState {
            started: now,
            first_seq: self.seq.wrapping_add(1),
            step: 0,
            acked: false,
        });
        self.send_notice(now);
    }

    pub(super) fn send_notice(&mut self, now: Instant) {
        let (Some(m), Some(lan_addr), Some(name)) =
            (self.mapping, self.lan_addr, self.ident.name.clone())
        else {
            return;
        };
        let Some(n) = &mut self.notice else { return };
        if n.acked {
            return;
        }
        n.step += 1;
        let next = self.opt.notice_schedule.get(n.step).map(|d| n.started + *d);
        let body = lanproto::Body::PortNotice(lanproto::PortNotice {
            name,
            lan_addr,
            internal_port: m.internal,
            external_port: Some(m.external),
        });
        let data = self.emit_lan(self.own_term(), body);
        // The same datagram to the group and to the representative (one sequence number: the
        // copy that arrives second is dropped as a duplicate).
        self.send_lan(self.opt.lan_group, data.clone());
        if let Some(rep) = self.rep_addr.filter(|r| Some(*r) != self.lan_addr) {
            self.send_lan(SocketAddrV4::new(rep, self.opt.lan_group.port()), data);
        }
        match next {
            Some(at) => self.set_timer(Timer::Notice, at.max(now)),
            None => self.clear_timer(Timer::Notice),
        }
    }

    pub(super) fn on_lan(&mut self, now: Instant, from: SocketAddrV4, data: &[u8]) {
        let r = match lanproto::Repr::parse(data) {
            Ok(r) => r,
            Err(e) => {
                match e {
                    lanproto::Error::UnknownVersion(_) => self.stats.unknown_version += 1,
                    lanproto::Error::UnknownType(_) => self.stats.unknown_type += 1,
                    lanproto::Error::BadMagic => self.stats.foreign += 1,
                    _ => self.stats.malformed += 1,
                }
                tracing::debug!(%from, error = %e, "LAN datagram dropped");
                return;
            }
        };
        let h = r.header;
        if h.node_id == self.ident.id {
            return self.on_own_id(now, from, h); // our own multicast looped back, or a duplicate
        }
        self.stats.received += 1;
        let notice_kind = matches!(
            r.body,
            lanproto::Body::PortNotice(_) | lanproto::Body::PortNoticeAck(_)
        );
        if notice_kind && !self.seq_filter.accept(now, h.node_id, h.sequence) {
            self.stats.duplicates += 1;
            return;
        }
        match r.body {
            lanproto::Body::PortNotice(n) => {
                self.learn_term(h.term);
                self.on_notice(now, from, h, n);
            }
            lanproto::Body::PortNoticeAck(a) => {
                self.learn_term(h.term);
                if let Some(n) = &mut self.notice
                    && a.acked_sequence >= n.first_seq
                {
                    n.acked = true;
                    self.clear_timer(Timer::Notice);
                }
                self.rep_addr = Some(*from.ip());
            }
            // Types 3-10 belong to the election (emb. 2, 4; claims 9-15), which drops their
            // duplicates itself; a node without a port yet takes no part.
            _ => {
                if let Some(e) = &mut self.election {
                    e.handle_message(now, from, &r);
                }
            }
        }
    }

    /// The term of a notice or its acknowledgement, before the election runs.
    fn learn_term(&mut self, term: u64) {
        if election::terms::plausible(self.term, term) {
            self.term = self.term.max(term);
        }
    }

    /// Claim 6: a member's own-port notice. The representative lists it at once and
    /// acknowledges it.
    fn on_notice(
        &mut self,
        now: Instant,
        from: SocketAddrV4,
        h: lanproto::Header,
        n: lanproto::PortNotice,
    ) {
        self.heard_name(h.node_id, &n.name);
        if self.holds_rep_role() {
            tracing::info!(name = %n.name, addr = %n.lan_addr, port = ?n.external_port, "own-port notice (claim 6)");
            self.upsert_peer(
                h.node_id,
                &n.name,
                false,
                now,
                n.lan_addr,
                n.internal_port,
                n.external_port,
                PeerSource::Notice,
            );
            if let Some(p) = self.peers.get_mut(&h.node_id) {
                p.notice_at = Some(now);
            }
            let body = lanproto::Body::PortNoticeAck(lanproto::PortNoticeAck {
                acked_sequence: h.sequence,
                external_addr: self.external_addr,
            });
            let ack = self.emit_lan(self.own_term(), body);
            self.send_lan(from, ack);
        }
        self.check_name_collision(now, h.node_id, &n.name);
    }

    /// The answer to [`Op::GetSpecific`] of the representative port: where the representative
    /// is (for the unicast copy of our notice), and its name (it sends no notices).
    pub(super) fn on_rep_entry(&mut self, now: Instant, outcome: Outcome) {
        match outcome {
            Outcome::Ok(Reply::SpecificEntry {
                internal_client,
                description,
                ..
            }) => {
                if let Some(d) = desc::parse(&description).filter(|d| d.node_id != self.ident.id) {
                    let first = self.rep_addr.is_none();
                    self.rep_addr = Some(internal_client);
                    if first && self.notice.as_ref().is_some_and(|n| !n.acked) {
                        self.send_notice(now);
                    }
                    if !d.truncated {
                        self.heard_name(d.node_id, &d.name);
                    }
                    self.check_name_collision(now, d.node_id, &d.name);
                }
            }
            Outcome::Fault(f) if f.is(shared::upnp_error::UpnpError::NoSuchEntryInArray) => {
                tracing::info!(
                    port = self.opt.representative_port,
                    "the representative port is not mapped"
                )
            }
            Outcome::Failed(e) => self.igd_failed(now, "GetSpecificPortMappingEntry", &e),
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Hostile input: every datagram may carry a new node id; the filter stays bounded and
    /// still drops a live sender's duplicates.
    #[test]
    fn the_filter_remembers_at_most_max_senders() {
        let t0 = Instant::now();
        let mut f = SeqFilter::default();
        assert!(f.accept(t0, 1, 10));
        assert!(!f.accept(t0, 1, 10));
        for node in 1000..1000 + 3 * MAX_SENDERS as u64 {
            assert!(f.accept(t0 + Duration::from_secs(1), node, 1));
            assert!(f.last.len() <= MAX_SENDERS);
        }
        // Senders silent for SEQ_RESET_AFTER go first; a live one is still filtered.
        let later = t0 + SEQ_RESET_AFTER + Duration::from_secs(2);
        assert!(f.accept(later, 7, 3));
        assert!(f.accept(later, 8, 3));
        assert!(!f.accept(later, 7, 3));
        assert!(f.last.len() <= MAX_SENDERS);
    }
}
