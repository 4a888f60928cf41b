//! The IGD client: discovery (Fig. 3; UDA 1.1 §1.3), the control requests as [`Op`]s in one
//! queue (one request in flight at a time, in order, each bounded by
//! [`guard::REQUEST_DEADLINE`]), and how a SOAP exchange ended ([`Outcome`], UPnP errors by
//! name). Replies are handed to the concern that asked: `claim`, `walk`, `lan`, `rotation`.

use std::fmt;

use shared::upnp_error::UpnpError;

use super::*;

/// The IGD we found: where to send control requests, and whether it speaks WANIPConnection:2.
#[derive(Clone, Debug)]
pub(super) struct Igd {
    pub(super) control_url: HttpUrl,
    pub(super) service_type: String,
    pub(super) v2: bool,
}

/// What we heard from the IGD over SSDP, to notice a restart (UDA 1.1 §1.2.2 BOOTID).
#[derive(Clone, Debug, Default)]
pub(super) struct SeenIgd {
    pub(super) uuid: String,
    pub(super) boot_id: Option<u32>,
}

/// One request to the router, queued in order.
#[derive(Clone, Debug)]
pub(super) enum Op {
    Describe(HttpUrl),
    Add {
        m: AddPortMapping,
        any: bool,
        why: AddWhy,
        tries: u16,
    },
    GetExternal,
    GetSpecific(u16),
    List,
    Entry(u32),
    Delete(u16),
    /// GetSpecificPortMappingEntry, then DeletePortMapping if the mapping is ours (a node that
    /// stands down must not delete its successor's mapping on a permissive router).
    DeleteIfOurs(u16),
    /// Takeover and reclaim (Fig. 14): GetSpecificPortMappingEntry of the representative port
    /// (confirms the router: "rediscover"); another node's mapping -> [`Op::DeleteOld`] (and
    /// its remaining lease noted), then AddPortMapping.
    RepCheck(u16),
    /// DeletePortMapping of another node's representative mapping (606 in secure mode).
    DeleteOld(u16),
}

impl Op {
    /// The SOAP action (None for the description GET).
    pub(super) fn action(&self) -> Option<Action> {
        Some(match self {
            Op::Describe(_) => return None,
            Op::Add { m, any: false, .. } => Action::AddPortMapping(m.clone()),
            Op::Add { m, any: true, .. } => Action::AddAnyPortMapping(m.clone()),
            Op::GetExternal => Action::GetExternalIpAddress,
            Op::GetSpecific(p) | Op::DeleteIfOurs(p) | Op::RepCheck(p) => {
                Action::GetSpecificPortMappingEntry(key(*p))
            }
            // NewManage = 1: every client's mappings, not only ours (WANIPConnection:2 §2.4.20).
            Op::List => Action::GetListOfPortMappings(
                PortRange {
                    start_port: 1,
                    end_port: 65535,
                    protocol: Protocol::Tcp,
                    manage: true,
                },
                shared::igd::MAX_LISTING as u16,
            ),
            Op::Entry(i) => Action::GetGenericPortMappingEntry(*i),
            Op::Delete(p) | Op::DeleteOld(p) => Action::DeletePortMapping(key(*p)),
        })
    }
}

pub(super) fn key(port: u16) -> MappingKey {
    MappingKey {
        remote_host: None,
        external_port: port,
        protocol: Protocol::Tcp,
    }
}

/// How a SOAP exchange ended.
pub(super) enum Outcome {
    Ok(Reply),
    Fault(RouterFault),
    /// A response we could read but not use (a field we cannot parse).
    BadReply(String),
    /// No usable response: transport error, timeout, not SOAP.
    Failed(String),
}

/// A SOAP fault from the router: the UPnP error by name when the code is one of the
/// specification's (UDA 1.1 §3.2.2, WANIPConnection:2 §2.5), with the code and text as sent.
pub(super) struct RouterFault {
    pub(super) error: Option<UpnpError>,
    pub(super) code: u16,
    pub(super) text: String,
}

impl RouterFault {
    pub(super) fn new(code: u16, text: String) -> RouterFault {
        RouterFault {
            error: UpnpError::from_code(code),
            code,
            text,
        }
    }

    /// True for this error.
    pub(super) fn is(&self, e: UpnpError) -> bool {
        self.error == Some(e)
    }

    /// The port is someone else's: 718 ConflictInMappingEntry, 729 ConflictWithOtherMechanisms,
    /// or 606 ActionNotAuthorized (another host's mapping in secure mode).
    pub(super) fn port_held(&self) -> bool {
        use UpnpError::*;
        matches!(
            self.error,
            Some(ConflictInMappingEntry | ConflictWithOtherMechanisms | ActionNotAuthorized)
        )
    }
}

impl fmt::Display for RouterFault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.code, self.text)
    }
}

pub(super) fn soap_outcome(action: &Action, result: Result<HttpResponse, String>) -> Outcome {
    let resp = match result {
        Ok(r) => r,
        Err(e) => return Outcome::Failed(e),
    };
    match soap::parse_response(&resp.body) {
        Ok(Err(fault)) => Outcome::Fault(RouterFault::new(fault.code, fault.description)),
        Ok(Ok(_)) if resp.status != 200 => {
            Outcome::Failed(format!("HTTP {} with a non-fault body", resp.status))
        }
        Ok(Ok(ar)) => match action.parse_reply(&ar) {
            Ok(r) => Outcome::Ok(r),
            Err(e) => Outcome::BadReply(e.to_string()),
        },
        Err(e) => Outcome::Failed(format!("HTTP {}: not a SOAP response ({e})", resp.status)),
    }
}

impl PortManager {
    /// Starts the next queued control request if none is in flight.
    pub(super) fn pump(&mut self, now: Instant) {
        while self.inflight.is_none() {
            let Some(op) = self.queue.pop_front() else {
                return;
            };
            let request = match (&op, op.action(), &self.igd) {
                (Op::Describe(url), _, _) => HttpRequest {
                    url: url.clone(),
                    soap_action: None,
                    body: None,
                },
                (_, Some(action), Some(igd)) => {
                    let req = action.to_request(&igd.service_type);
                    HttpRequest {
                        url: igd.control_url.clone(),
                        soap_action: Some(req.soap_action().header_value()),
                        body: Some(req.emit()),
                    }
                }
                // A control request without an IGD: it was queued before we lost the router.
                _ => continue,
            };
            let id = self.next_id;
            self.next_id += 1;
            self.inflight = Some((id, op));
            self.out.push_back(Output::Http { id, request });
            self.set_timer(Timer::Request, now + guard::REQUEST_DEADLINE);
        }
    }

    pub(super) fn begin_discovery(&mut self, now: Instant, immediately: bool) {
        self.igd = None;
        self.describing = false;
        self.discovering_since.get_or_insert(now);
        let at = if immediately {
            now
        } else {
            now + self.search_backoff
        };
        self.set_timer(Timer::Search, at);
    }

    pub(super) fn search(&mut self, now: Instant) {
        if self.igd.is_some() || self.describing {
            return;
        }
        if let Some(url) = self.opt.igd_url.clone() {
            self.describing = true;
            self.queue.push_back(Op::Describe(url));
        } else {
            for st in SEARCH_TARGETS {
                let req = ssdp::SearchRequest {
                    host: ssdp::MULTICAST_ADDR.to_string(),
                    mx: Some("1".into()),
                    st: st.to_string(),
                    user_agent: Some(format!(
                        "Linux UPnP/1.1 camnode/{}",
                        env!("CARGO_PKG_VERSION")
                    )),
                };
                self.out.push_back(Output::SsdpSearch(req.emit()));
            }
        }
        if self
            .discovering_since
            .is_some_and(|s| now.duration_since(s) >= self.opt.no_igd_after)
            && self.reachability == Reachability::Discovering
        {
            tracing::warn!(
                "no UPnP IGD answered: serving the LAN only, still searching (no internet reachability)"
            );
            self.reachability = Reachability::NoIgd;
            self.on_no_igd(now);
        }
        let wait = self.jitter(self.search_backoff);
        self.set_timer(Timer::Search, now + wait);
        self.search_backoff = (self.search_backoff * 2).min(self.opt.search_max);
    }

    pub(super) fn on_ssdp(&mut self, now: Instant, data: &[u8]) {
        let (uuid, boot_id, location, byebye) = match ssdp::parse(data) {
            Ok(ssdp::Message::Response(r)) if is_igd_type(&r.st) => {
                (usn_uuid(&r.usn), r.boot_id, Some(r.location), false)
            }
            Ok(ssdp::Message::Notify(n)) if is_igd_type(&n.nt) => (
                usn_uuid(&n.usn),
                n.next_boot_id.or(n.boot_id),
                n.location,
                n.nts == ssdp::Nts::ByeBye,
            ),
            _ => return,
        };
        let ours = self.seen.as_ref().is_some_and(|s| s.uuid == uuid);
        if ours && self.igd.is_some() {
            let old_boot = self.seen.as_ref().and_then(|s| s.boot_id);
            if byebye {
                tracing::warn!("the router announced ssdp:byebye; rediscovering");
                self.lose_igd(now);
            } else if boot_id.is_some() && old_boot.is_some() && boot_id != old_boot {
                tracing::warn!(
                    ?old_boot,
                    ?boot_id,
                    "the router restarted (BOOTID changed); rediscovering"
                );
                self.lose_igd(now);
                // It is answering: ask again at once rather than after the back-off.
                self.search_backoff = self.opt.search_initial;
                self.set_timer(Timer::Search, now);
            }
            return;
        }
        if byebye || self.igd.is_some() || self.describing || self.opt.igd_url.is_some() {
            return;
        }
        let Some(url) = location.as_deref().and_then(HttpUrl::parse) else {
            return;
        };
        tracing::debug!(%url, "IGD found by SSDP");
        self.seen = Some(SeenIgd { uuid, boot_id });
        self.describing = true;
        self.clear_timer(Timer::Search);
        self.queue.push_back(Op::Describe(url));
    }

    pub(super) fn on_describe(
        &mut self,
        now: Instant,
        url: &HttpUrl,
        result: Result<HttpResponse, String>,
    ) {
        self.describing = false;
        let services = match &result {
            Ok(r) if r.status == 200 => find_igd_services(&r.body, url)
                .map_err(|e| e.to_string())
                .and_then(|s| {
                    guard::check_control_url(url, &s.wan_connection.control_url).map(|()| s)
                }),
            Ok(r) => Err(format!("HTTP {}", r.status)),
            Err(e) => Err(e.clone()),
        };
        let s = match services {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(%url, error = %e, "cannot use the IGD description; searching again");
                self.begin_discovery(now, false);
                return;
            }
        };
        let v2 = s
            .wan_connection
            .parsed
            .is_some_and(|p| p.kind == ServiceKind::WanIpConnection && p.version >= 2);
        tracing::info!(
            router = %s.friendly_name, control = %s.wan_connection.control_url, service = %s.wan_connection.service_type,
            "IGD found"
        );
        self.igd = Some(Igd {
            control_url: s.wan_connection.control_url,
            service_type: s.wan_connection.service_type,
            v2,
        });
        self.discovering_since = None;
        self.on_igd_found();
        if let Some(local) = result.ok().and_then(|r| r.local_addr)
            && self.lan_addr != Some(local)
        {
            self.lan_addr = Some(local);
            self.out.push_back(Output::LanAddr(local));
        }
        if self.reachability == Reachability::NoIgd {
            self.reachability = Reachability::Discovering;
        }
        if self.ident.name.is_none() {
            self.start_walk(now, WalkPurpose::Naming);
        } else {
            self.start_claim();
        }
        self.set_timer(Timer::Recheck, now + self.opt.recheck_interval);
    }

    /// The router is gone or changed: forget it, keep our mapping's port to ask for it again.
    pub(super) fn lose_igd(&mut self, now: Instant) {
        self.inflight = None;
        self.queue.clear();
        // A reclaim in progress is dropped (the claim after rediscovery asks for our port
        // again); a takeover resumes after it (start_claim).
        self.reclaim = false;
        self.walk = None;
        self.seen = None;
        self.reachability = Reachability::Discovering;
        self.clear_timer(Timer::Walk);
        self.clear_timer(Timer::Renew);
        self.clear_timer(Timer::Recheck);
        self.begin_discovery(now, false);
    }

    pub(super) fn igd_failed(&mut self, now: Instant, what: &str, why: &str) {
        tracing::warn!(
            action = what,
            error = why,
            "control request to the router failed; rediscovering"
        );
        self.lose_igd(now);
    }

    pub(super) fn on_http(&mut self, now: Instant, id: u64, result: Result<HttpResponse, String>) {
        let op = match self.inflight.take() {
            Some((i, op)) if i == id => op,
            other => {
                self.inflight = other; // a late answer to a request we gave up on
                return;
            }
        };
        if let Some(local) = result.as_ref().ok().and_then(|r| r.local_addr)
            && self.lan_addr.is_none()
        {
            self.lan_addr = Some(local);
            self.out.push_back(Output::LanAddr(local));
        }
        if let Op::Describe(url) = &op {
            if !self.shutting_down {
                self.on_describe(now, url, result);
            }
            return self.continue_shutdown();
        }
        let Some(action) = op.action() else { return };
        let outcome = soap_outcome(&action, result);
        if self.shutting_down {
            return self.on_reply_shutting_down(op, outcome);
        }
        match op {
            Op::Describe(_) => {}
            Op::Add { m, any, why, tries } => self.on_add(now, m, any, why, tries, outcome),
            Op::GetExternal => match outcome {
                Outcome::Ok(r) => self.on_external(r),
                Outcome::Fault(f) => tracing::warn!("GetExternalIPAddress: {f}"),
                Outcome::BadReply(e) | Outcome::Failed(e) => {
                    self.igd_failed(now, "GetExternalIPAddress", &e)
                }
            },
            Op::GetSpecific(_) => self.on_rep_entry(now, outcome),
            Op::List => self.on_list(now, outcome),
            Op::Entry(i) => self.on_entry(now, i, outcome),
            // Our old member mapping after a takeover, a mapping given back: 714 changes
            // nothing.
            Op::Delete(_) => {}
            Op::RepCheck(port) => self.on_rep_check(now, port, outcome),
            // Fig. 14's deletion of the old holder's mapping: 714 NoSuchEntryInArray (gone
            // meanwhile) and 606 ActionNotAuthorized (secure mode: only its own client may
            // delete it) are expected; the Add that follows tells whether the port is free.
            Op::DeleteOld(port) => {
                if let Outcome::Fault(f) = outcome {
                    tracing::debug!(
                        port,
                        code = f.code,
                        "DeletePortMapping of the old holder's mapping"
                    );
                }
            }
            Op::DeleteIfOurs(port) => self.on_delete_if_ours(now, port, outcome),
        }
    }

    /// True while an AddPortMapping is queued or in flight.
    pub(super) fn claiming(&self) -> bool {
        self.inflight
            .iter()
            .map(|(_, op)| op)
            .chain(&self.queue)
            .any(|op| matches!(op, Op::Add { .. }))
    }
}
