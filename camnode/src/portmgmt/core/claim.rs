//! Claiming a port (claims 1, 17; Fig. 8a/8b): the AddPortMapping we ask for, what the
//! router's answer means (UPnP errors by name), renewal at half-life, the mapping's external
//! address (claim 18), and re-adding the mapping when the name changes.

use shared::upnp_error::UpnpError;

use super::igd::RouterFault;
use super::*;

/// The external port an Add was granted: AddAnyPortMapping reports the one the router reserved
/// (WANIPConnection:2 §2.4.18); AddPortMapping grants the one asked for.
pub(super) fn granted_port(m: &AddPortMapping, any: bool, reply: Reply) -> u16 {
    match (any, reply) {
        (true, Reply::ReservedPort(p)) if p != 0 => p,
        _ => m.external_port,
    }
}

/// Why an AddPortMapping was asked for: what its answer means.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum AddWhy {
    Claim,
    Renew,
    Rename,
    /// Fig. 14: the successor adds the representative port for itself.
    Takeover,
    /// The election asked us to make sure we still hold the representative port (a candidacy
    /// while we hold it): a refusal means we lost it.
    Verify,
    /// We won a conflict with another representative that may hold the port: add ours after
    /// deleting its mapping; a refusal (secure mode) is asked again until it gives it up.
    Reclaim,
}

impl PortManager {
    pub(super) fn internal_for(&self, external: u16) -> u16 {
        match self.opt.internal_port_mode {
            InternalPortMode::SameAsExternal => external,
            InternalPortMode::Common if self.force_same_port => external,
            InternalPortMode::Common => self.opt.common_internal_port,
        }
    }

    pub(super) fn mk_add(&self, external: u16, internal: u16) -> AddPortMapping {
        AddPortMapping {
            remote_host: None,
            external_port: external,
            protocol: Protocol::Tcp,
            internal_port: internal,
            internal_client: self.lan_addr,
            enabled: true,
            description: desc::encode(self.ident.id, self.ident.name.as_deref().unwrap_or("")),
            lease_duration: self.lease_for(external),
        }
    }

    /// The lease to ask for `external`: the short representative lease while the election runs
    /// (so a dead holder's mapping lapses soon in secure mode), the normal one otherwise.
    pub(super) fn lease_for(&self, external: u16) -> u32 {
        if self.permanent_only {
            0
        } else if external == self.opt.representative_port && self.opt.election.is_some() {
            self.opt.representative_lease_seconds
        } else {
            self.opt.lease_seconds
        }
    }

    /// Ask for the representative port, or (after rediscovery) for the port we held. Once the
    /// election runs, a node without a mapping is either taking over (Fig. 14) or has stood
    /// down, and then asks for a member port (8081 up) as at start.
    pub(super) fn start_claim(&mut self) {
        if self.takeover.is_some() {
            // After a rediscovery during a takeover: our own port again (we keep serving under
            // it until the representative port is ours), then the takeover.
            if let Some(m) = self.mapping {
                let add = self.mk_add(m.external, m.internal);
                self.queue.push_back(Op::Add {
                    m: add,
                    any: false,
                    why: AddWhy::Claim,
                    tries: 0,
                });
            }
            return self.queue_takeover();
        }
        let first = if self.election.is_some() {
            self.opt.first_other_port
        } else {
            self.opt.representative_port
        };
        let port = self.mapping.map_or(first, |m| m.external);
        let m = self.mk_add(port, self.internal_for(port));
        self.queue.push_back(Op::Add {
            m,
            any: false,
            why: AddWhy::Claim,
            tries: 0,
        });
    }

    pub(super) fn next_port(&self, cur: u16) -> Option<u16> {
        let mut p = if cur == self.opt.representative_port {
            self.opt.first_other_port
        } else {
            cur.checked_add(1)?
        };
        if p == self.opt.representative_port {
            p = p.checked_add(1)?;
        }
        Some(p)
    }

    pub(super) fn renew_after(&self, lease: u32) -> Duration {
        if lease == 0 {
            Duration::from_secs(1800)
        } else {
            Duration::from_secs(u64::from(lease / 2).max(1))
        }
    }

    /// The answer to an AddPortMapping (or AddAnyPortMapping).
    pub(super) fn on_add(
        &mut self,
        now: Instant,
        m: AddPortMapping,
        any: bool,
        why: AddWhy,
        tries: u16,
        outcome: Outcome,
    ) {
        match outcome {
            Outcome::Ok(reply) => self.on_add_granted(now, m, any, why, reply),
            Outcome::Fault(f) => self.on_add_fault(now, m, any, why, tries, f),
            Outcome::BadReply(e) | Outcome::Failed(e) => self.igd_failed(now, "AddPortMapping", &e),
        }
    }

    fn on_add_granted(
        &mut self,
        now: Instant,
        m: AddPortMapping,
        any: bool,
        why: AddWhy,
        reply: Reply,
    ) {
        let external = granted_port(&m, any, reply);
        let before = self.mapping;
        self.mapping = Some(Mapping {
            external,
            internal: m.internal_port,
        });
        self.set_timer(Timer::Renew, now + self.renew_after(m.lease_duration));
        match why {
            AddWhy::Claim => self.on_mapped(now, before),
            AddWhy::Renew | AddWhy::Verify => {}
            AddWhy::Rename => self.start_notice(now),
            AddWhy::Reclaim => self.on_reclaim_granted(external),
            AddWhy::Takeover => self.on_takeover_granted(now, external, before),
        }
    }

    fn on_add_fault(
        &mut self,
        now: Instant,
        m: AddPortMapping,
        any: bool,
        why: AddWhy,
        tries: u16,
        f: RouterFault,
    ) {
        use UpnpError::*;
        let fixable = f.is(SamePortValuesRequired) || f.is(OnlyPermanentLeasesSupported);
        if matches!(why, AddWhy::Takeover | AddWhy::Verify | AddWhy::Reclaim) && !fixable {
            return self.on_rotation_add_refused(now, why, &f);
        }
        if why == AddWhy::Renew
            && self.election.is_some()
            && m.external_port == self.opt.representative_port
            && f.port_held()
        {
            // Our representative lease lapsed and another node took the port.
            return self.on_rotation_add_refused(now, AddWhy::Verify, &f);
        }
        let mut retry = |m: AddPortMapping, any: bool| {
            self.queue.push_front(Op::Add { m, any, why, tries });
        };
        match f.error {
            // WANIPConnection:1 §2.4.16: ask again, permanent.
            Some(OnlyPermanentLeasesSupported) if !self.permanent_only => {
                self.permanent_only = true;
                retry(
                    AddPortMapping {
                        lease_duration: 0,
                        ..m
                    },
                    any,
                );
            }
            // The router wants internal = external (Fig. 8a).
            Some(SamePortValuesRequired) if m.internal_port != m.external_port => {
                self.force_same_port = true;
                let internal = m.external_port;
                retry(
                    AddPortMapping {
                        internal_port: internal,
                        ..m
                    },
                    any,
                );
            }
            // No AddAnyPortMapping here after all; go on port by port.
            Some(InvalidAction | OptionalActionNotImplemented) if any => {
                self.any_unsupported = true;
                retry(m, false);
            }
            // This port is someone else's. Claim 1: ask for another.
            _ if f.port_held() && why == AddWhy::Claim => self.claim_next(now, m, tries, &f),
            _ if f.port_held() => {
                tracing::warn!(
                    port = m.external_port,
                    "our mapping was taken by another host ({}); claiming again",
                    f.code
                );
                self.mapping = None;
                self.start_claim();
            }
            _ => self.refused(now, f.to_string()),
        }
    }

    /// Claim 1 / Fig. 8: `m`'s port is held; ask for the next one, up to `max_port_tries`.
    fn claim_next(&mut self, now: Instant, m: AddPortMapping, tries: u16, f: &RouterFault) {
        if m.external_port == self.opt.representative_port {
            tracing::info!(
                port = m.external_port,
                "the representative port is held by another node ({}); asking for another",
                f.code
            );
        }
        let tries = tries + 1;
        let Some(next) = self
            .next_port(m.external_port)
            .filter(|_| tries < self.opt.max_port_tries)
        else {
            return self.refused(now, format!("no free port after {tries} tries (last: {f})"));
        };
        let internal = self.internal_for(next);
        let m = AddPortMapping {
            external_port: next,
            internal_port: internal,
            lease_duration: self.lease_for(next),
            ..m
        };
        // IGD:2 lets the router pick (AddAnyPortMapping, WANIPConnection:2 §2.4.18), with the
        // next port in order as the preferred one. Only for Fig. 8b: the router may reserve
        // another external port than preferred, and with Fig. 8a (internal = external) that
        // would break the equality, so there we count up ourselves.
        let any = self.igd.as_ref().is_some_and(|i| i.v2)
            && !self.any_unsupported
            && self.opt.internal_port_mode == InternalPortMode::Common;
        self.queue.push_front(Op::Add {
            m,
            any,
            why: AddWhy::Claim,
            tries,
        });
    }

    pub(super) fn refused(&mut self, now: Instant, reason: String) {
        tracing::warn!(%reason, "the router refused our port mapping; serving the LAN only, retrying");
        self.reachability = Reachability::Refused { reason };
        self.set_timer(Timer::Recheck, now + self.opt.recheck_interval);
    }

    pub(super) fn on_mapped(&mut self, now: Instant, before: Option<Mapping>) {
        let Some(m) = self.mapping else { return };
        self.search_backoff = self.opt.search_initial;
        let rep = m.external == self.opt.representative_port;
        if before != Some(m) {
            tracing::info!(
                external = m.external,
                internal = m.internal,
                role = if rep { "representative" } else { "member" },
                "port mapped"
            );
        }
        self.queue.push_back(Op::GetExternal);
        if rep {
            // Claim 1: we hold the well-known port; collect the others at once (emb. 1, 3).
            if before.map(|b| b.external) != Some(m.external) {
                self.term = self.term.saturating_add(1);
            }
            self.notice = None;
            self.clear_timer(Timer::Notice);
            self.rep_addr = self.lan_addr;
            self.start_walk(now, WalkPurpose::Collect);
            // Claim 1 / Fig. 14: holding the port makes us the representative; the election
            // announces the new term (rotation notice) and starts inquiring (emb. 2).
            self.ensure_election(now);
            if let Some(e) = &mut self.election {
                e.took_over(now);
            }
        } else {
            // Claim 6: tell the representative our port at once; learn where it is.
            self.walk = None;
            self.clear_timer(Timer::Walk);
            self.peers.clear();
            self.start_notice(now);
            self.queue
                .push_back(Op::GetSpecific(self.opt.representative_port));
            self.ensure_election(now);
            // We held the representative port and got another one (someone took it while the
            // router was away): an ordinary node now.
            if let Some(e) = &mut self.election
                && matches!(e.phase(), election::Phase::Representative)
            {
                e.lost_port(now);
            }
        }
    }

    pub(super) fn on_external(&mut self, reply: Reply) {
        let Reply::ExternalIpAddress(text) = reply else {
            return;
        };
        let addr = text
            .trim()
            .parse::<Ipv4Addr>()
            .ok()
            .filter(|a| !a.is_unspecified());
        let reach = match addr {
            None => Reachability::Refused {
                reason: "the router reports no external address (WAN down?)".into(),
            },
            Some(a) if is_private_or_cgnat(a) => Reachability::DoubleNat { external: a },
            Some(_) => Reachability::Reachable,
        };
        if reach != self.reachability {
            match &reach {
                Reachability::DoubleNat { external } => tracing::warn!(
                    %external,
                    "DOUBLE NAT: the router's external address is itself private/carrier-grade NAT; \
                     the camera is not reachable from the internet (serving the LAN, still checking)"
                ),
                Reachability::Reachable => {
                    tracing::info!(external = ?addr, "reachable from the internet")
                }
                other => tracing::warn!(?other, "not reachable from the internet"),
            }
        }
        self.reachability = reach;
        self.external_addr = addr;
        if let Some(e) = &mut self.election {
            e.set_external_addr(addr);
        }
    }

    /// Asks for our mapping again as it stands (same ports, the current description and
    /// lease). False without a mapping or an IGD.
    fn re_add(&mut self, why: AddWhy) -> bool {
        let (Some(m), Some(_)) = (self.mapping, &self.igd) else {
            return false;
        };
        let add = self.mk_add(m.external, m.internal);
        self.queue.push_back(Op::Add {
            m: add,
            any: false,
            why,
            tries: 0,
        });
        true
    }

    pub(super) fn renew(&mut self) {
        self.re_add(AddWhy::Renew);
    }

    /// The name changed: re-add the mapping with the new description (members then send a new
    /// notice once the router has it).
    pub(super) fn readvertise(&mut self, now: Instant) {
        if !self.shutting_down && !self.re_add(AddWhy::Rename) {
            self.start_notice(now);
        }
    }
}
