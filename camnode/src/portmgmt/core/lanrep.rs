//! A representative without an IGD: behind a router with UPnP off there is no port to hold,
//! yet the cameras still need one node that lists the others (embodiment 2's inquiry works on
//! the LAN alone). Once discovery gives up (`Reachability::NoIgd`) the node joins the election
//! (embodiment 4); the winner takes the role at once as a "LAN representative" and collects by
//! inquiry. It stands down like any representative, and when an IGD appears it claims the
//! representative port by the takeover of Fig. 14, so the patent's flows with an IGD apply.

use super::*;

impl PortManager {
    /// True while this node is the representative: it holds the representative port, or it
    /// is the LAN representative (no IGD).
    pub(super) fn holds_rep_role(&self) -> bool {
        self.lan_rep
            || self
                .mapping
                .is_some_and(|m| m.external == self.opt.representative_port)
    }

    /// No IGD, and we follow a LAN representative: a member with no port of our own.
    pub(super) fn lan_member(&self) -> bool {
        self.igd.is_none()
            && self.reachability == Reachability::NoIgd
            && self.election.as_ref().is_some_and(|e| e.leader().is_some())
    }

    /// Discovery gave up: learn our LAN address from the driver's hint and join the election.
    pub(super) fn on_no_igd(&mut self, now: Instant) {
        if self.lan_addr.is_none()
            && let Some(a) = self.opt.lan_addr
        {
            self.lan_addr = Some(a);
            self.out.push_back(Output::LanAddr(a));
        }
        if self.election.is_none() && self.opt.election.is_some() {
            tracing::info!("no IGD: electing a LAN representative among the cameras");
            self.election_without_igd = true;
            self.ensure_election(now);
        }
    }

    /// [`ElectionEvent::BecomeRepresentative`] while no IGD is known: take the role at once.
    /// Returns false when there is an IGD (or it is being rediscovered): the takeover applies.
    pub(super) fn become_lan_rep(&mut self, now: Instant) -> bool {
        if self.igd.is_some() || self.reachability != Reachability::NoIgd {
            return false;
        }
        tracing::info!("elected: LAN representative (no IGD, no port to hold)");
        self.lan_rep = true;
        self.rep_addr = self.lan_addr;
        self.notice = None;
        self.clear_timer(Timer::Notice);
        if let Some(e) = &mut self.election {
            e.took_over(now);
        }
        true
    }

    /// An IGD was found. A LAN representative claims the representative port (Fig. 14, it
    /// stays the election's representative meanwhile). A node that joined the election only
    /// because there was no IGD and follows nobody leaves it, so that claim 1 applies as at a
    /// start with an IGD (the first to ask gets 8080).
    pub(super) fn on_igd_found(&mut self) {
        if self.lan_rep {
            self.lan_rep = false;
            self.peers.clear();
            let term = self.election.as_ref().map_or(0, Election::term);
            tracing::info!(
                term,
                "an IGD appeared: claiming the representative port (Fig. 14)"
            );
            self.takeover = Some(term);
        } else if self.election_without_igd
            && self.mapping.is_none()
            && self.takeover.is_none()
            && self
                .election
                .as_ref()
                .is_some_and(|e| e.leader().is_none() && e.phase() == election::Phase::Follower)
        {
            self.election = None;
        }
        self.election_without_igd = false;
    }
}
