//! A fake IGD: a table, behaviour switches, the real wire formats (SSDP, description XML, SOAP
//! through `shared`).

use super::*;

/// A fake IGD: a table, a few behaviour switches, a log of the actions it served.
pub(super) struct FakeIgd {
    pub(super) v2: bool,
    pub(super) online: bool,
    pub(super) boot_id: u32,
    pub(super) external: String,
    pub(super) entries: Vec<PortMappingEntry>,
    pub(super) any_supported: bool,
    pub(super) list_supported: bool,
    pub(super) permanent_only: bool,
    pub(super) same_port_required: bool,
    /// Secure mode: only the mapping's own client may delete it (606 otherwise).
    pub(super) secure: bool,
    /// Leases count down and lapse (the Sim sets `now` before every request); otherwise a
    /// mapping stays until deleted and reports the lease it was given.
    pub(super) leases: bool,
    pub(super) now: Option<Instant>,
    /// When each mapping's lease ends, by external port.
    pub(super) ends: BTreeMap<u16, Instant>,
    pub(super) log: Vec<(Ipv4Addr, String)>,
    /// A description served instead of the generated one (a rogue IGD).
    pub(super) description: Option<String>,
}

impl FakeIgd {
    pub(super) fn new(v2: bool) -> FakeIgd {
        FakeIgd {
            v2,
            online: true,
            boot_id: 1,
            external: "60.120.76.64".into(),
            entries: Vec::new(),
            any_supported: true,
            list_supported: true,
            permanent_only: false,
            same_port_required: false,
            secure: false,
            leases: false,
            now: None,
            ends: BTreeMap::new(),
            log: Vec::new(),
            description: None,
        }
    }

    /// Drops the mappings whose lease has lapsed (with `leases`).
    pub(super) fn expire(&mut self) {
        let Some(now) = self.now.filter(|_| self.leases) else {
            return;
        };
        let ends = &mut self.ends;
        self.entries.retain(|e| {
            let gone = ends.get(&e.external_port).is_some_and(|t| *t <= now);
            if gone {
                ends.remove(&e.external_port);
            }
            !gone
        });
    }

    /// Notes a mapping's lease (with `leases`).
    pub(super) fn lease(&mut self, port: u16, secs: u32) {
        if let Some(now) = self.now.filter(|_| self.leases) {
            if secs == 0 {
                self.ends.remove(&port);
            } else {
                self.ends
                    .insert(port, now + Duration::from_secs(u64::from(secs)));
            }
        }
    }

    pub(super) fn foreign(&mut self, port: u16, proto: Protocol, client: [u8; 4], desc: &str) {
        self.entries.push(PortMappingEntry {
            remote_host: None,
            external_port: port,
            protocol: proto,
            internal_port: port,
            internal_client: Ipv4Addr::from(client),
            enabled: true,
            description: desc.into(),
            lease_duration: 0,
        });
    }

    pub(super) fn search_response(&self) -> Vec<u8> {
        ssdp::SearchResponse {
            max_age: 120,
            date: None,
            location: format!("http://{ROUTER}:5000/rootDesc.xml"),
            server: "Linux UPnP/1.1 fake/1".into(),
            st: "urn:schemas-upnp-org:device:InternetGatewayDevice:1".into(),
            usn: format!("{UUID}::urn:schemas-upnp-org:device:InternetGatewayDevice:1"),
            boot_id: Some(self.boot_id),
            config_id: Some(1),
            search_port: None,
        }
        .emit()
    }

    pub(super) fn actions(&self, name: &str) -> Vec<String> {
        self.log
            .iter()
            .filter(|(_, a)| a.starts_with(name))
            .map(|(_, a)| a.clone())
            .collect()
    }

    pub(super) fn handle(
        &mut self,
        client: Ipv4Addr,
        req: &HttpRequest,
    ) -> Result<HttpResponse, String> {
        if !self.online {
            return Err("timed out".into());
        }
        let ok = |body: Vec<u8>| {
            Ok(HttpResponse {
                status: 200,
                body,
                local_addr: Some(client),
            })
        };
        let Some(body) = &req.body else {
            let cfg = RootConfig {
                igd_version: if self.v2 { 2 } else { 1 },
                ..root_config("fake")
            };
            let text = self.description.clone();
            return ok(text.unwrap_or_else(|| root_description(&cfg)).into_bytes());
        };
        let ar = ActionRequest::parse(body).map_err(|e| e.to_string())?;
        let (_, action) = parse_action(&ar).map_err(|e| e.to_string())?;
        let res = self.act(client, &action);
        self.log.push((
            client,
            format!("{} {}", action.name(), describe(&action, &res)),
        ));
        match res {
            Ok(reply) => ok(reply.to_response(&action, &ar.service_type).emit()),
            Err(e) => Ok(HttpResponse {
                status: 500,
                body: Fault::from(e).emit(),
                local_addr: Some(client),
            }),
        }
    }

    pub(super) fn act(&mut self, client: Ipv4Addr, action: &Action) -> Result<Reply, UpnpError> {
        self.expire();
        let find = |entries: &[PortMappingEntry], port: u16, proto: Protocol| {
            entries
                .iter()
                .position(|e| e.external_port == port && e.protocol == proto)
        };
        match action {
            Action::AddPortMapping(m) | Action::AddAnyPortMapping(m) => {
                let any = matches!(action, Action::AddAnyPortMapping(_));
                if any && (!self.v2 || !self.any_supported) {
                    return Err(UpnpError::InvalidAction);
                }
                if self.permanent_only && m.lease_duration != 0 {
                    return Err(UpnpError::OnlyPermanentLeasesSupported);
                }
                if self.same_port_required && m.internal_port != m.external_port {
                    return Err(UpnpError::SamePortValuesRequired);
                }
                let owner = m.internal_client.unwrap_or(client);
                let mut port = m.external_port;
                if let Some(i) = find(&self.entries, port, m.protocol) {
                    if self.entries[i].internal_client == owner {
                        self.entries[i].description = m.description.clone();
                        self.entries[i].internal_port = m.internal_port;
                        self.lease(port, m.lease_duration);
                        return Ok(if any {
                            Reply::ReservedPort(port)
                        } else {
                            Reply::Empty
                        });
                    }
                    if !any {
                        return Err(UpnpError::ConflictInMappingEntry);
                    }
                    while find(&self.entries, port, m.protocol).is_some() {
                        port += 1;
                    }
                }
                self.entries.push(PortMappingEntry {
                    remote_host: None,
                    external_port: port,
                    protocol: m.protocol,
                    internal_port: m.internal_port,
                    internal_client: owner,
                    enabled: true,
                    description: m.description.clone(),
                    lease_duration: m.lease_duration,
                });
                self.lease(port, m.lease_duration);
                Ok(if any {
                    Reply::ReservedPort(port)
                } else {
                    Reply::Empty
                })
            }
            Action::GetExternalIpAddress => Ok(Reply::ExternalIpAddress(self.external.clone())),
            Action::GetGenericPortMappingEntry(i) => self
                .entries
                .get(*i as usize)
                .cloned()
                .map(Reply::GenericEntry)
                .ok_or(UpnpError::SpecifiedArrayIndexInvalid),
            Action::GetSpecificPortMappingEntry(k) => {
                find(&self.entries, k.external_port, k.protocol)
                    .map(|i| {
                        let e = &self.entries[i];
                        // The remaining lease, rounded up (as our router reports it).
                        let remaining = match (self.now, self.ends.get(&e.external_port)) {
                            (Some(now), Some(end)) if self.leases => {
                                let d = end.saturating_duration_since(now);
                                (d.as_secs() + u64::from(d.subsec_nanos() > 0)).max(1) as u32
                            }
                            _ => e.lease_duration,
                        };
                        Reply::SpecificEntry {
                            internal_port: e.internal_port,
                            internal_client: e.internal_client,
                            enabled: true,
                            description: e.description.clone(),
                            lease_duration: remaining,
                        }
                    })
                    .ok_or(UpnpError::NoSuchEntryInArray)
            }
            Action::GetListOfPortMappings(r, _) => {
                if !self.list_supported {
                    return Err(UpnpError::InvalidAction);
                }
                let v: Vec<_> = self
                    .entries
                    .iter()
                    .filter(|e| {
                        e.protocol == r.protocol
                            && (r.start_port..=r.end_port).contains(&e.external_port)
                    })
                    .cloned()
                    .collect();
                if v.is_empty() {
                    Err(UpnpError::PortMappingNotFound)
                } else {
                    Ok(Reply::PortListing(v))
                }
            }
            Action::DeletePortMapping(k) => {
                match find(&self.entries, k.external_port, k.protocol) {
                    Some(i) if self.secure && self.entries[i].internal_client != client => {
                        Err(UpnpError::ActionNotAuthorized)
                    }
                    Some(i) => {
                        let e = self.entries.remove(i);
                        self.ends.remove(&e.external_port);
                        Ok(Reply::Empty)
                    }
                    None => Err(UpnpError::NoSuchEntryInArray),
                }
            }
            _ => Err(UpnpError::InvalidAction),
        }
    }
}

/// The fake IGD's device description settings (IGD:1; `friendly_name` as given).
pub(super) fn root_config(friendly_name: &str) -> RootConfig {
    RootConfig {
        igd_version: 1,
        uuids: [UUID[5..].to_string(), "w".into(), "c".into()],
        info: DeviceInfo {
            friendly_name: friendly_name.into(),
            manufacturer: String::new(),
            manufacturer_url: String::new(),
            model_description: String::new(),
            model_name: String::new(),
            model_number: String::new(),
            model_url: String::new(),
            serial_number: String::new(),
            presentation_url: None,
        },
        config_id: 1,
    }
}

fn describe(a: &Action, res: &Result<Reply, UpnpError>) -> String {
    let arg = match a {
        Action::AddPortMapping(m) | Action::AddAnyPortMapping(m) => format!("{}", m.external_port),
        Action::GetGenericPortMappingEntry(i) => format!("{i}"),
        Action::DeletePortMapping(k) => format!("{}", k.external_port),
        _ => String::new(),
    };
    match res {
        Ok(Reply::ReservedPort(p)) => format!("{arg} -> {p}"),
        Ok(_) => format!("{arg} ok"),
        Err(e) => format!("{arg} {}", e.code()),
    }
}
