//! Rotation (embodiment 4, Fig. 11-14; claims 9-15) and collection by inquiry (emb. 2): the
//! election ([`crate::election::Election`]) decides; this carries out at the router what it
//! decided: the takeover of Fig. 14, standing down, verifying and reclaiming the
//! representative port, and waiting out another node's mapping in secure mode.

use shared::upnp_error::UpnpError;

use super::igd::RouterFault;
use super::*;

impl PortManager {
    /// Starts the election once the node holds a port, or once no IGD answers (`lanrep.rs`).
    pub(super) fn ensure_election(&mut self, now: Instant) {
        if self.election.is_some() || self.shutting_down {
            return;
        }
        if let Some(cfg) = self.opt.election.clone() {
            let seed = self.rng.random();
            let mut e = Election::new(cfg, self.ident.id, seed, now);
            e.set_external_addr(self.external_addr);
            self.election = Some(e);
        }
    }

    /// Keeps the election's view of us current, then carries out what it decided: its messages
    /// go out with our node id and the one sequence counter of everything this node sends.
    pub(super) fn drive_election(&mut self, now: Instant) {
        if self.election.is_none() {
            return;
        }
        if let (Some(lan_addr), Some(name)) = (self.lan_addr, self.ident.name.clone()) {
            let info = lanproto::PortNotice {
                name,
                lan_addr,
                internal_port: self.mapping.map_or(self.opt.web_port, |m| m.internal),
                external_port: self.mapping.map(|m| m.external),
            };
            if let Some(e) = &mut self.election {
                e.set_self(info);
            }
        }
        loop {
            let Some(e) = &mut self.election else { return };
            if let Some(t) = e.poll_transmit() {
                let to = match t.to {
                    Dest::Group => self.opt.lan_group,
                    Dest::Node(a) => a,
                };
                let data = self.emit_lan(t.term, t.body);
                self.send_lan(to, data);
                continue;
            }
            let Some(ev) = e.poll_event() else { return };
            self.on_election_event(now, ev);
        }
    }

    pub(super) fn on_election_event(&mut self, now: Instant, ev: ElectionEvent) {
        if self.shutting_down {
            return;
        }
        let rep = self.opt.representative_port;
        match ev {
            ElectionEvent::RepresentativeGone { node, reason } => {
                tracing::info!(node = ?node.map(identity::id_hex), ?reason, "representative gone (Fig. 11-13)");
            }
            ElectionEvent::BecomeRepresentative { term } => {
                if self.mapping.is_some_and(|m| m.external == rep) {
                    // We hold it already (claim 1 at start raced the election).
                    if let Some(e) = &mut self.election {
                        e.took_over(now);
                    }
                    return;
                }
                if self.become_lan_rep(now) {
                    return;
                }
                tracing::info!(term, "elected: taking the representative port (Fig. 14)");
                self.takeover = Some(term);
                self.queue_takeover();
            }
            ElectionEvent::StandDown { term } => self.stand_down(term),
            ElectionEvent::Verify => {
                // A candidacy while we hold the port: renew now; a refusal means we lost it.
                // Not while a reclaim asks the router (a refusal there means: wait).
                if let Some(m) = self.mapping.filter(|m| m.external == rep && !self.reclaim) {
                    self.queue_rep_add(m.internal, AddWhy::Verify);
                }
            }
            ElectionEvent::Reclaim => {
                // We won a conflict with another representative, which may hold the port at
                // the router: check, and take it back if so (RepCheck).
                if self.mapping.is_some_and(|m| m.external == rep)
                    && !self.reclaim
                    && self.takeover.is_none()
                    && self.igd.is_some()
                {
                    tracing::info!("another representative: making sure the port is ours");
                    self.reclaim = true;
                    self.queue.push_back(Op::RepCheck(rep));
                }
            }
            ElectionEvent::Following { node, addr, term } => {
                tracing::info!(node = %identity::id_hex(node), %addr, term, "following the representative");
                let first = self.rep_addr != Some(*addr.ip());
                self.rep_addr = Some(*addr.ip());
                if first && self.notice.as_ref().is_some_and(|n| !n.acked) {
                    self.send_notice(now);
                }
            }
            ElectionEvent::PeerAnswered { node, info } => {
                if self.holds_rep_role() {
                    self.upsert_peer(
                        node,
                        &info.name,
                        false,
                        now,
                        info.lan_addr,
                        info.internal_port,
                        info.external_port,
                        PeerSource::Inquiry,
                    );
                    if let Some(p) = self.peers.get_mut(&node) {
                        p.answering = true;
                    }
                    self.heard_name(node, &info.name);
                }
            }
            ElectionEvent::PeerLost { node } => {
                // Emb. 2 merged with the table walk: gone once its mapping is gone too.
                if let Some(p) = self.peers.get_mut(&node) {
                    p.answering = false;
                    if !p.listed {
                        self.peers.remove(&node);
                    }
                }
            }
        }
    }

    /// Another node is the representative: drop what a takeover, verify or reclaim queued; give
    /// up the representative mapping if we hold it; ask for a member port.
    fn stand_down(&mut self, term: u64) {
        let rep = self.opt.representative_port;
        tracing::info!(term, "standing down: another node is the representative");
        self.takeover = None;
        self.end_rep_wait();
        if self.lan_rep {
            self.lan_rep = false;
            self.peers.clear();
        }
        self.queue.retain(|op| {
            !matches!(
                op,
                Op::Add {
                    why: AddWhy::Takeover | AddWhy::Verify | AddWhy::Reclaim,
                    ..
                } | Op::RepCheck(_)
                    | Op::DeleteOld(_)
            )
        });
        if self.mapping.is_some_and(|m| m.external == rep) {
            // Delete our representative mapping (only if it is still ours: on a
            // permissive router the successor's would go too), then a member port.
            self.mapping = None;
            self.clear_timer(Timer::Renew);
            self.clear_timer(Timer::Walk);
            self.walk = None;
            self.peers.clear();
            self.queue.push_back(Op::DeleteIfOurs(rep));
        }
        if self.mapping.is_none() && self.igd.is_some() && !self.claiming() {
            self.start_claim();
        }
    }

    /// Fig. 14: rediscover the router, delete the old representative mapping, add it for
    /// ourselves, delete our own mapping (then the external address and the table follow from
    /// [`PortManager::on_mapped`]). "Rediscover" is [`Op::RepCheck`]: a
    /// GetSpecificPortMappingEntry of the representative port that confirms the known IGD (a
    /// failure sends us back to SSDP discovery, after which [`PortManager::start_claim`]
    /// resumes the takeover) and tells whose mapping is there and for how long. Without an IGD
    /// the takeover waits for discovery.
    ///
    /// Our own (member) mapping is deleted last, once the router has granted the
    /// representative port: a router that will not let us delete the old holder's mapping
    /// (secure mode: 606) makes us wait for its lease, and meanwhile we keep serving under our
    /// own port (the Directory says [`Role::TakingOver`] with that port).
    ///
    /// # Worst case in secure mode (the holder crashed or was unplugged)
    /// With `L` = `representative_lease_seconds` (default 6 s), renewed at half-life, the
    /// holder's last renewal was at most `L/2` before its departure, so its mapping lapses
    /// between `L/2` and `L` after the departure. The successor starts its takeover after the
    /// detection and the election (at most 1.25 s silence limit or 1.5 s of presence inquiries,
    /// plus 0.4 s back-off and collision window under the random rule: at most 1.65 s, well
    /// before `L/2`), reads the remaining lease from GetSpecificPortMappingEntry (whole
    /// seconds), and asks again every `takeover_retry` (1 s) until one second before the lapse
    /// it read, then with an AddPortMapping alone every [`REP_FAST_RETRY`] (200 ms) until
    /// three seconds after it (covers a router that rounds the remaining lease up or down, or
    /// expires it a little late). So 8080 answers again at most `L` + 0.2 s + one
    /// AddPortMapping round trip (+ the router's own lateness in expiring the mapping) after
    /// the departure, on average after about `3L/4`. With the defaults: at most about 6.2 s,
    /// typically 4.5 s; under `L` unless the holder renewed within the last ~0.2 s before it
    /// went. A graceful stop is as fast as in permissive mode (the holder deletes its own
    /// mapping after its bye-bye). A router that never lets go (a permanent mapping of another
    /// host) is given up `L` + 10 s after its first refusal: an ordinary node again.
    pub(super) fn queue_takeover(&mut self) {
        if self.igd.is_none() {
            return;
        }
        self.notice = None;
        self.clear_timer(Timer::Notice);
        self.queue
            .push_back(Op::RepCheck(self.opt.representative_port));
    }

    /// Asks for the representative port with `internal` as the internal port.
    pub(super) fn queue_rep_add(&mut self, internal: u16, why: AddWhy) {
        let rep = self.opt.representative_port;
        let m = self.mk_add(rep, internal);
        self.queue.push_back(Op::Add {
            m,
            any: false,
            why,
            tries: 0,
        });
    }

    /// The answer to [`Op::RepCheck`]: another node's mapping is deleted first (and its lease
    /// noted), then ours added.
    pub(super) fn on_rep_check(&mut self, now: Instant, port: u16, outcome: Outcome) {
        let why = if self.takeover.is_some() {
            AddWhy::Takeover
        } else if self.reclaim {
            AddWhy::Reclaim
        } else {
            return;
        };
        let internal = match why {
            AddWhy::Takeover => self.internal_for(port),
            _ => self.mapping.map_or(self.internal_for(port), |m| m.internal),
        };
        let m = self.mk_add(port, internal);
        // Pushed to the front in reverse order: DeleteOld (if any), then the Add.
        self.queue.push_front(Op::Add {
            m,
            any: false,
            why,
            tries: 0,
        });
        match outcome {
            Outcome::Ok(Reply::SpecificEntry {
                internal_client,
                description,
                lease_duration,
                ..
            }) if !self.entry_is_ours(&description, internal_client) => {
                self.rep_lapse = (lease_duration > 0)
                    .then(|| now + Duration::from_secs(u64::from(lease_duration)));
                self.queue.push_front(Op::DeleteOld(port));
            }
            Outcome::Fault(f) if f.is(UpnpError::NoSuchEntryInArray) => self.rep_lapse = None,
            Outcome::Failed(e) => self.igd_failed(now, "GetSpecificPortMappingEntry", &e),
            _ => {}
        }
    }

    /// A mapping is ours by our description (several nodes may share an address); an entry
    /// without one is ours if it points at us.
    pub(super) fn entry_is_ours(&self, description: &str, internal_client: Ipv4Addr) -> bool {
        match desc::parse(description) {
            Some(d) => d.node_id == self.ident.id,
            None => Some(internal_client) == self.lan_addr,
        }
    }

    /// The answer to [`Op::DeleteIfOurs`]: delete the mapping only if it is still ours.
    pub(super) fn on_delete_if_ours(&mut self, now: Instant, port: u16, outcome: Outcome) {
        match outcome {
            Outcome::Ok(Reply::SpecificEntry {
                internal_client,
                description,
                ..
            }) if self.entry_is_ours(&description, internal_client) => {
                self.queue.push_front(Op::Delete(port));
            }
            Outcome::Failed(e) => self.igd_failed(now, "GetSpecificPortMappingEntry", &e),
            _ => {}
        }
    }

    /// The router granted the representative port to our takeover (Fig. 14).
    pub(super) fn on_takeover_granted(
        &mut self,
        now: Instant,
        external: u16,
        before: Option<Mapping>,
    ) {
        if self.takeover.is_none() {
            // We stood down while the request was in flight: give it back, keep our own port
            // (renewed now, which re-arms its timer).
            self.mapping = before;
            self.clear_timer(Timer::Renew);
            self.queue.push_front(Op::Delete(external));
            if before.is_some() {
                self.renew();
            } else {
                self.start_claim();
            }
            return;
        }
        let waited = self
            .rep_wait_since
            .map(|t| now.saturating_duration_since(t));
        tracing::info!(
            port = external,
            ?waited,
            "took over the representative port (Fig. 14)"
        );
        self.takeover = None;
        self.end_rep_wait();
        // Fig. 14's "delete own mapping", now that the representative port is ours: we kept
        // serving under it until then.
        if let Some(b) = before.filter(|b| b.external != external) {
            self.queue.push_back(Op::Delete(b.external));
        }
        self.on_mapped(now, before);
    }

    /// The router granted the representative port to our reclaim.
    pub(super) fn on_reclaim_granted(&mut self, external: u16) {
        if self.reclaim {
            tracing::info!(port = external, "the representative port is ours again");
        }
        self.end_rep_wait();
    }

    /// [`Timer::Takeover`]: ask for the representative port again, with an AddPortMapping
    /// alone around the lapse of the holder's lease, else checking whose mapping is there.
    pub(super) fn retry_rep(&mut self, now: Instant) {
        if !(self.takeover.is_some() || self.reclaim) || self.igd.is_none() {
            return;
        }
        let rep = self.opt.representative_port;
        if self.rep_fast_window(now) {
            let why = if self.takeover.is_some() {
                AddWhy::Takeover
            } else {
                AddWhy::Reclaim
            };
            let internal = match (why, self.mapping) {
                (AddWhy::Reclaim, Some(m)) => m.internal,
                _ => self.internal_for(rep),
            };
            self.queue_rep_add(internal, why);
        } else {
            self.queue.push_back(Op::RepCheck(rep));
        }
    }

    /// When to ask for the representative port again while the router refuses it: every
    /// `takeover_retry`, and every [`REP_FAST_RETRY`] from one second before the lapse of the
    /// holder's lease (the remaining lease the router reported, in whole seconds, rounded up
    /// or down) to three seconds after it (a router may expire a little late), and during the
    /// first three seconds of a reclaim.
    pub(super) fn next_rep_try(&self, now: Instant) -> Instant {
        let normal = now + self.opt.takeover_retry;
        // A reclaim waits for a live rival that was told to stand down: it deletes its own
        // mapping within moments, so ask often at first.
        let rival_leaving = self.reclaim
            && self
                .rep_wait_since
                .is_none_or(|t| now < t + Duration::from_secs(3));
        if rival_leaving {
            return (now + REP_FAST_RETRY).min(normal);
        }
        match self.rep_lapse {
            _ if self.rep_fast_window(now) => (now + REP_FAST_RETRY).min(normal),
            Some(l) if now < l => normal.min(l - Duration::from_secs(1)),
            _ => normal,
        }
    }

    /// True around the lapse of the holder's lease, when we ask every [`REP_FAST_RETRY`] with
    /// an AddPortMapping alone.
    pub(super) fn rep_fast_window(&self, now: Instant) -> bool {
        self.rep_lapse
            .is_some_and(|l| now + Duration::from_secs(1) >= l && now < l + Duration::from_secs(3))
    }

    /// The takeover or reclaim is over (granted, given up, or we stood down).
    pub(super) fn end_rep_wait(&mut self) {
        self.reclaim = false;
        self.rep_wait_since = None;
        self.rep_lapse = None;
        self.clear_timer(Timer::Takeover);
    }

    /// The router refused the representative port during a takeover, a reclaim or a
    /// verification.
    pub(super) fn on_rotation_add_refused(&mut self, now: Instant, why: AddWhy, f: &RouterFault) {
        let (held, code, text) = (f.port_held(), f.code, f.text.as_str());
        let give_up = self.rep_wait_since.is_some_and(|t| {
            now.saturating_duration_since(t)
                > Duration::from_secs(u64::from(self.opt.representative_lease_seconds) + 10)
        });
        match why {
            AddWhy::Takeover | AddWhy::Reclaim
                if held && !give_up && (self.takeover.is_some() || self.reclaim) =>
            {
                // Secure mode: the old holder's mapping stays until its lease lapses (or a
                // rival that was told to stand down deletes its own).
                let first = self.rep_wait_since.is_none();
                self.rep_wait_since.get_or_insert(now);
                let next = self.next_rep_try(now);
                if first {
                    tracing::info!(
                        code,
                        lapses_in = ?self.rep_lapse.map(|l| l.saturating_duration_since(now)),
                        own_port = ?self.mapping.map(|m| m.external),
                        "the router keeps another node's mapping of the representative port; \
                         asking again when its lease lapses, serving under our own port meanwhile"
                    );
                } else {
                    tracing::debug!(code, "representative port still held; asking again");
                }
                self.set_timer(Timer::Takeover, next);
            }
            AddWhy::Takeover if self.takeover.is_some() => {
                tracing::warn!(code, text, "takeover refused by the router");
                self.takeover = None;
                self.end_rep_wait();
                if let Some(e) = &mut self.election {
                    e.takeover_failed(now);
                }
                // Our own port stays (it is renewed as before); without one, claim one.
                if self.mapping.is_none() {
                    self.start_claim();
                }
            }
            AddWhy::Takeover => {}
            AddWhy::Reclaim if !self.reclaim => {}
            // A renewal refused while a reclaim asks the router: the reclaim decides.
            AddWhy::Verify if self.reclaim => {}
            _ => {
                tracing::warn!(
                    code,
                    text,
                    "the representative port is held by another node now; standing down"
                );
                self.end_rep_wait();
                // The StandDown event that follows (drive_election) gives up the mapping state
                // and asks for a member port.
                if let Some(e) = &mut self.election {
                    e.lost_port(now);
                }
            }
        }
    }
}
