//! SSDP: discovery messages of UPnP Device Architecture 1.1 / 2.0, section 1.
//!
//! Three messages travel on UDP (multicast 239.255.255.250:1900 or unicast):
//! - `M-SEARCH` (UDA 1.1 §1.3.2): a control point searches for a type, a uuid or everything;
//! - the search response, `HTTP/1.1 200 OK` unicast back to the searcher (UDA 1.1 §1.3.3);
//! - `NOTIFY` with `NTS: ssdp:alive | ssdp:byebye | ssdp:update` (UDA 1.1 §1.2.2, §1.2.3, §1.2.4).
//!
//! [`parse`] reads any of them, tolerantly (see [`crate::head`]); each `Repr` has `emit`.
//! [`search_answers`] is the device side of §1.3.2: which (ST, USN) pairs an IGD answers a
//! search with, and [`search_delay`] applies the MX rules.

use std::fmt::Write as _;
use std::time::Duration;

use crate::head::{Head, HeadError};

/// The SSDP multicast group and port (UDA 1.1 §1.1.2).
pub const MULTICAST_ADDR: &str = "239.255.255.250:1900";
/// The UDP port of SSDP.
pub const PORT: u16 = 1900;
/// SSDP messages must fit in one UDP datagram; anything larger is refused unread.
pub const MAX_MESSAGE: usize = 8 * 1024;
/// The cap on MX (UDA 1.1 §1.3.2: "If the MX header field specifies a field value greater
/// than 5, the device SHOULD assume that it contained the value 5 or less").
pub const MX_CAP_SECS: u32 = 5;

/// Why an SSDP datagram was not understood.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// The head could not be read.
    #[error(transparent)]
    Head(#[from] HeadError),
    /// A request method other than M-SEARCH or NOTIFY, or a response other than 200.
    #[error("not an SSDP message")]
    NotSsdp,
    /// A required header is missing.
    #[error("missing header {0}")]
    Missing(&'static str),
    /// A header has a value we cannot use.
    #[error("invalid header {0}")]
    Invalid(&'static str),
}

/// An SSDP message of any kind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    /// An `M-SEARCH` request.
    Search(SearchRequest),
    /// A `200 OK` search response.
    Response(SearchResponse),
    /// A `NOTIFY` advertisement.
    Notify(Notify),
}

/// Parses one SSDP datagram.
pub fn parse(input: &[u8]) -> Result<Message, Error> {
    let head = Head::parse(input, MAX_MESSAGE)?;
    if head.first.eq_ignore_ascii_case("M-SEARCH") {
        SearchRequest::from_head(&head).map(Message::Search)
    } else if head.first.eq_ignore_ascii_case("NOTIFY") {
        Notify::from_head(&head).map(Message::Notify)
    } else if head.first.to_ascii_uppercase().starts_with("HTTP/") {
        if head.second != "200" {
            return Err(Error::NotSsdp);
        }
        SearchResponse::from_head(&head).map(Message::Response)
    } else {
        Err(Error::NotSsdp)
    }
}

fn parse_u32(head: &Head<'_>, name: &'static str) -> Result<Option<u32>, Error> {
    match head.get(name) {
        None => Ok(None),
        Some(v) => v.trim().parse().map(Some).map_err(|_| Error::Invalid(name)),
    }
}

/// Reads `max-age=N` out of a CACHE-CONTROL value (UDA 1.1 §1.2.2), among other directives.
pub fn parse_max_age(cache_control: &str) -> Option<u32> {
    cache_control.split(',').find_map(|d| {
        let (k, v) = d.split_once('=')?;
        if k.trim().eq_ignore_ascii_case("max-age") {
            v.trim().trim_matches('"').parse().ok()
        } else {
            None
        }
    })
}

// ---------------------------------------------------------------------------------------------
// M-SEARCH

/// An `M-SEARCH` request (UDA 1.1 §1.3.2).
///
/// `CPFN.UPNP.ORG`, `CPUUID.UPNP.ORG` and `TCPPORT.UPNP.ORG` are read past and not kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SearchRequest {
    /// HOST: `239.255.255.250:1900` for multicast, the device's address for unicast.
    pub host: String,
    /// MX as sent (unparsed, so [`search_delay`] can apply the spec's rules), if present.
    pub mx: Option<String>,
    /// ST: the search target.
    pub st: String,
    /// USER-AGENT, if present.
    pub user_agent: Option<String>,
}

impl SearchRequest {
    fn from_head(head: &Head<'_>) -> Result<Self, Error> {
        // MAN is required and must be "ssdp:discover" (quoted per UDA; tolerate no quotes).
        let man = head.get("MAN").ok_or(Error::Missing("MAN"))?;
        if !man.trim_matches('"').eq_ignore_ascii_case("ssdp:discover") {
            return Err(Error::Invalid("MAN"));
        }
        let st = head
            .get("ST")
            .filter(|s| !s.is_empty())
            .ok_or(Error::Missing("ST"))?;
        Ok(SearchRequest {
            host: head.get("HOST").unwrap_or("").to_string(),
            mx: head.get("MX").map(str::to_string),
            st: st.to_string(),
            user_agent: head.get("USER-AGENT").map(str::to_string),
        })
    }

    /// Writes the request (a control point's search; UDA 1.1 §1.3.2).
    pub fn emit(&self) -> Vec<u8> {
        let mut s = String::with_capacity(160);
        s.push_str("M-SEARCH * HTTP/1.1\r\n");
        let _ = write!(s, "HOST: {}\r\n", self.host);
        s.push_str("MAN: \"ssdp:discover\"\r\n");
        if let Some(mx) = &self.mx {
            let _ = write!(s, "MX: {mx}\r\n");
        }
        let _ = write!(s, "ST: {}\r\n", self.st);
        if let Some(ua) = &self.user_agent {
            let _ = write!(s, "USER-AGENT: {ua}\r\n");
        }
        s.push_str("\r\n");
        s.into_bytes()
    }
}

/// What to do with a search, by its MX (UDA 1.1 §1.3.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SearchDelay {
    /// Answer at once (unicast search, or MX 0).
    Immediate,
    /// Answer after a random delay in `[0, this]`.
    UpTo(Duration),
    /// Silently drop the search: multicast without a usable MX.
    Discard,
}

/// Applies the MX rules of UDA 1.1 §1.3.2:
/// - unicast search: MX is not used, answer at once (UDA 1.1 §1.3.2, "unicast M-SEARCH");
/// - multicast search without MX or with a non-integer MX: "the device MUST silently discard";
/// - MX above 5: treat as 5;
/// - MX 0 (below the spec's minimum of 1, sent by some clients): answer at once rather than drop.
pub fn search_delay(mx: Option<&str>, unicast: bool) -> SearchDelay {
    if unicast {
        return SearchDelay::Immediate;
    }
    match mx.map(|v| v.trim().parse::<u32>()) {
        Some(Ok(0)) => SearchDelay::Immediate,
        Some(Ok(n)) => SearchDelay::UpTo(Duration::from_secs(u64::from(n.min(MX_CAP_SECS)))),
        None | Some(Err(_)) => SearchDelay::Discard,
    }
}

// ---------------------------------------------------------------------------------------------
// Search response

/// A search response (UDA 1.1 §1.3.3).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SearchResponse {
    /// CACHE-CONTROL max-age, seconds.
    pub max_age: u32,
    /// DATE (RFC 1123 date), if present. We pass it through; we do not read clocks.
    pub date: Option<String>,
    /// LOCATION: URL of the root device description.
    pub location: String,
    /// SERVER: `OS/version UPnP/1.1 product/version`.
    pub server: String,
    /// ST: the search target answered.
    pub st: String,
    /// USN: unique service name.
    pub usn: String,
    /// BOOTID.UPNP.ORG (required by UDA 1.1, absent from UDA 1.0 devices).
    pub boot_id: Option<u32>,
    /// CONFIGID.UPNP.ORG.
    pub config_id: Option<u32>,
    /// SEARCHPORT.UPNP.ORG, if the device listens for unicast searches off port 1900.
    pub search_port: Option<u16>,
}

impl SearchResponse {
    fn from_head(head: &Head<'_>) -> Result<Self, Error> {
        let cc = head
            .get("CACHE-CONTROL")
            .ok_or(Error::Missing("CACHE-CONTROL"))?;
        let max_age = parse_max_age(cc).ok_or(Error::Invalid("CACHE-CONTROL"))?;
        let location = head.get("LOCATION").ok_or(Error::Missing("LOCATION"))?;
        let st = head.get("ST").ok_or(Error::Missing("ST"))?;
        let usn = head.get("USN").ok_or(Error::Missing("USN"))?;
        let search_port = match head.get("SEARCHPORT.UPNP.ORG") {
            None => None,
            Some(v) => Some(
                v.parse()
                    .map_err(|_| Error::Invalid("SEARCHPORT.UPNP.ORG"))?,
            ),
        };
        Ok(SearchResponse {
            max_age,
            date: head.get("DATE").map(str::to_string),
            location: location.to_string(),
            server: head.get("SERVER").unwrap_or("").to_string(),
            st: st.to_string(),
            usn: usn.to_string(),
            boot_id: parse_u32(head, "BOOTID.UPNP.ORG")?,
            config_id: parse_u32(head, "CONFIGID.UPNP.ORG")?,
            search_port,
        })
    }

    /// Writes the response, header order as in UDA 1.1 §1.3.3.
    pub fn emit(&self) -> Vec<u8> {
        let mut s = String::with_capacity(320);
        s.push_str("HTTP/1.1 200 OK\r\n");
        let _ = write!(s, "CACHE-CONTROL: max-age={}\r\n", self.max_age);
        if let Some(d) = &self.date {
            let _ = write!(s, "DATE: {d}\r\n");
        }
        s.push_str("EXT:\r\n");
        let _ = write!(s, "LOCATION: {}\r\n", self.location);
        let _ = write!(s, "SERVER: {}\r\n", self.server);
        let _ = write!(s, "ST: {}\r\n", self.st);
        let _ = write!(s, "USN: {}\r\n", self.usn);
        if let Some(b) = self.boot_id {
            let _ = write!(s, "BOOTID.UPNP.ORG: {b}\r\n");
        }
        if let Some(c) = self.config_id {
            let _ = write!(s, "CONFIGID.UPNP.ORG: {c}\r\n");
        }
        if let Some(p) = self.search_port {
            let _ = write!(s, "SEARCHPORT.UPNP.ORG: {p}\r\n");
        }
        s.push_str("\r\n");
        s.into_bytes()
    }
}

// ---------------------------------------------------------------------------------------------
// NOTIFY

/// The NTS of a NOTIFY (UDA 1.1 §1.2.2, §1.2.3, §1.2.4).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Nts {
    /// `ssdp:alive`: the device is (still) here.
    Alive,
    /// `ssdp:byebye`: the device is leaving.
    ByeBye,
    /// `ssdp:update`: the device's BOOTID changes (NEXTBOOTID.UPNP.ORG).
    Update,
}

impl Nts {
    /// The wire value.
    pub const fn as_str(self) -> &'static str {
        match self {
            Nts::Alive => "ssdp:alive",
            Nts::ByeBye => "ssdp:byebye",
            Nts::Update => "ssdp:update",
        }
    }
}

/// A NOTIFY advertisement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notify {
    /// HOST (always the multicast address in practice).
    pub host: String,
    /// NT: notification type (same values as ST).
    pub nt: String,
    /// NTS: sub-type.
    pub nts: Nts,
    /// USN.
    pub usn: String,
    /// LOCATION (alive, update; absent in byebye).
    pub location: Option<String>,
    /// CACHE-CONTROL max-age (alive only).
    pub max_age: Option<u32>,
    /// SERVER (alive only).
    pub server: Option<String>,
    /// BOOTID.UPNP.ORG.
    pub boot_id: Option<u32>,
    /// CONFIGID.UPNP.ORG.
    pub config_id: Option<u32>,
    /// NEXTBOOTID.UPNP.ORG (update only).
    pub next_boot_id: Option<u32>,
    /// SEARCHPORT.UPNP.ORG.
    pub search_port: Option<u16>,
}

impl Notify {
    fn from_head(head: &Head<'_>) -> Result<Self, Error> {
        let nts = match head.get("NTS").ok_or(Error::Missing("NTS"))? {
            v if v.eq_ignore_ascii_case("ssdp:alive") => Nts::Alive,
            v if v.eq_ignore_ascii_case("ssdp:byebye") => Nts::ByeBye,
            v if v.eq_ignore_ascii_case("ssdp:update") => Nts::Update,
            _ => return Err(Error::Invalid("NTS")),
        };
        let nt = head.get("NT").ok_or(Error::Missing("NT"))?;
        let usn = head.get("USN").ok_or(Error::Missing("USN"))?;
        let max_age = match head.get("CACHE-CONTROL") {
            None => None,
            Some(cc) => Some(parse_max_age(cc).ok_or(Error::Invalid("CACHE-CONTROL"))?),
        };
        if nts != Nts::ByeBye && head.get("LOCATION").is_none() {
            return Err(Error::Missing("LOCATION"));
        }
        let search_port = match head.get("SEARCHPORT.UPNP.ORG") {
            None => None,
            Some(v) => Some(
                v.parse()
                    .map_err(|_| Error::Invalid("SEARCHPORT.UPNP.ORG"))?,
            ),
        };
        Ok(Notify {
            host: head.get("HOST").unwrap_or("").to_string(),
            nt: nt.to_string(),
            nts,
            usn: usn.to_string(),
            location: head.get("LOCATION").map(str::to_string),
            max_age,
            server: head.get("SERVER").map(str::to_string),
            boot_id: parse_u32(head, "BOOTID.UPNP.ORG")?,
            config_id: parse_u32(head, "CONFIGID.UPNP.ORG")?,
            next_boot_id: parse_u32(head, "NEXTBOOTID.UPNP.ORG")?,
            search_port,
        })
    }

    /// Writes the NOTIFY, header order as in UDA 1.1 §1.2.2.
    pub fn emit(&self) -> Vec<u8> {
        let mut s = String::with_capacity(320);
        s.push_str("NOTIFY * HTTP/1.1\r\n");
        let _ = write!(s, "HOST: {}\r\n", self.host);
        if let Some(m) = self.max_age {
            let _ = write!(s, "CACHE-CONTROL: max-age={m}\r\n");
        }
        if let Some(l) = &self.location {
            let _ = write!(s, "LOCATION: {l}\r\n");
        }
        let _ = write!(s, "NT: {}\r\n", self.nt);
        let _ = write!(s, "NTS: {}\r\n", self.nts.as_str());
        if let Some(v) = &self.server {
            let _ = write!(s, "SERVER: {v}\r\n");
        }
        let _ = write!(s, "USN: {}\r\n", self.usn);
        if let Some(b) = self.boot_id {
            let _ = write!(s, "BOOTID.UPNP.ORG: {b}\r\n");
        }
        if let Some(c) = self.config_id {
            let _ = write!(s, "CONFIGID.UPNP.ORG: {c}\r\n");
        }
        if let Some(n) = self.next_boot_id {
            let _ = write!(s, "NEXTBOOTID.UPNP.ORG: {n}\r\n");
        }
        if let Some(p) = self.search_port {
            let _ = write!(s, "SEARCHPORT.UPNP.ORG: {p}\r\n");
        }
        s.push_str("\r\n");
        s.into_bytes()
    }
}

// ---------------------------------------------------------------------------------------------
// What an IGD answers

/// The UPnP forum's domain in type URNs.
pub const UPNP_DOMAIN: &str = "schemas-upnp-org";

/// Device or service, in a type URN.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `urn:...:device:...`
    Device,
    /// `urn:...:service:...`
    Service,
}

/// Which device of the IGD tree (UDA 2.0 §2.3 nesting; IGD:2 §2.1) an entry belongs to, so
/// its USN carries that device's UDN.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IgdLevel {
    /// InternetGatewayDevice (root).
    Root,
    /// WANDevice.
    Wan,
    /// WANConnectionDevice.
    WanConnection,
}

/// One type an IGD advertises: (kind, name, highest version, containing device).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IgdType {
    /// Device or service.
    pub kind: Kind,
    /// Type name, e.g. `WANIPConnection`.
    pub name: &'static str,
    /// Version in an IGD:2 device (an IGD:1 device has version 1 of everything).
    pub v2_version: u32,
    /// The device whose UDN the USN uses.
    pub level: IgdLevel,
}

/// The types an IGD answers searches for (IGD:2 §2.1, with the service versions of IGD:2).
pub const IGD_TYPES: [IgdType; 6] = [
    IgdType {
        kind: Kind::Device,
        name: "InternetGatewayDevice",
        v2_version: 2,
        level: IgdLevel::Root,
    },
    IgdType {
        kind: Kind::Service,
        name: "Layer3Forwarding",
        v2_version: 1,
        level: IgdLevel::Root,
    },
    IgdType {
        kind: Kind::Device,
        name: "WANDevice",
        v2_version: 2,
        level: IgdLevel::Wan,
    },
    IgdType {
        kind: Kind::Service,
        name: "WANCommonInterfaceConfig",
        v2_version: 1,
        level: IgdLevel::Wan,
    },
    IgdType {
        kind: Kind::Device,
        name: "WANConnectionDevice",
        v2_version: 2,
        level: IgdLevel::WanConnection,
    },
    IgdType {
        kind: Kind::Service,
        name: "WANIPConnection",
        v2_version: 2,
        level: IgdLevel::WanConnection,
    },
];

impl IgdType {
    /// The version this type has in a device of IGD `version` (1 or 2).
    pub fn version_in(&self, igd_version: u32) -> u32 {
        if igd_version >= 2 { self.v2_version } else { 1 }
    }

    /// The type URN at a version, e.g. `urn:schemas-upnp-org:service:WANIPConnection:2`.
    pub fn urn(&self, version: u32) -> String {
        let kind = match self.kind {
            Kind::Device => "device",
            Kind::Service => "service",
        };
        format!("urn:{UPNP_DOMAIN}:{kind}:{}:{version}", self.name)
    }
}

/// The identity of an IGD for SSDP: one UDN per device of the tree, and the IGD version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IgdIdentity {
    /// UUID of the root device, without the `uuid:` prefix.
    pub root_uuid: String,
    /// UUID of the WANDevice.
    pub wan_uuid: String,
    /// UUID of the WANConnectionDevice.
    pub wan_conn_uuid: String,
    /// 1 for an IGD:1 device, 2 for IGD:2.
    pub version: u32,
}

impl IgdIdentity {
    fn uuid(&self, level: IgdLevel) -> &str {
        match level {
            IgdLevel::Root => &self.root_uuid,
            IgdLevel::Wan => &self.wan_uuid,
            IgdLevel::WanConnection => &self.wan_conn_uuid,
        }
    }

    /// Every (NT, USN) pair the device advertises in NOTIFY alive/byebye, in the order of
    /// UDA 1.1 §1.2.2: root device's three, then each embedded device's two, then services.
    pub fn advertisements(&self) -> Vec<(String, String)> {
        let root = &self.root_uuid;
        let mut out = vec![
            (
                "upnp:rootdevice".to_string(),
                format!("uuid:{root}::upnp:rootdevice"),
            ),
            (format!("uuid:{root}"), format!("uuid:{root}")),
        ];
        for t in IGD_TYPES.iter().filter(|t| t.kind == Kind::Device) {
            let uuid = self.uuid(t.level);
            if t.level != IgdLevel::Root {
                out.push((format!("uuid:{uuid}"), format!("uuid:{uuid}")));
            }
            let urn = t.urn(t.version_in(self.version));
            out.push((urn.clone(), format!("uuid:{uuid}::{urn}")));
        }
        for t in IGD_TYPES.iter().filter(|t| t.kind == Kind::Service) {
            let urn = t.urn(t.version_in(self.version));
            out.push((urn.clone(), format!("uuid:{}::{urn}", self.uuid(t.level))));
        }
        out
    }
}

/// Splits `urn:domain:device|service:Name:version`.
fn parse_type_urn(st: &str) -> Option<(&str, Kind, &str, u32)> {
    let rest = st.strip_prefix("urn:")?;
    let mut parts = rest.split(':');
    let domain = parts.next()?;
    let kind = match parts.next()? {
        "device" => Kind::Device,
        "service" => Kind::Service,
        _ => return None,
    };
    let name = parts.next()?;
    let version = parts.next()?.trim().parse().ok()?;
    if parts.next().is_some() {
        return None;
    }
    Some((domain, kind, name, version))
}

/// The (ST, USN) pairs an IGD sends in answer to a search for `st` (UDA 1.1 §1.3.2, §1.3.3).
///
/// - `ssdp:all`: everything the device advertises;
/// - `upnp:rootdevice`, `uuid:<udn>`: that one entry;
/// - a type URN: the matching type if its version is at most the one we implement, answered
///   with the version searched for ("the response MUST use the version of the search", UDA
///   1.1 §1.3.2: an IGD:2 device answers a search for InternetGatewayDevice:1 with `:1`, which
///   is what v1-only clients such as older miniupnpc wait for);
/// - anything else: nothing.
pub fn search_answers(id: &IgdIdentity, st: &str) -> Vec<(String, String)> {
    let st = st.trim();
    if st == "ssdp:all" {
        return id.advertisements();
    }
    if st == "upnp:rootdevice" {
        return vec![(
            st.to_string(),
            format!("uuid:{}::upnp:rootdevice", id.root_uuid),
        )];
    }
    if let Some(uuid) = st.strip_prefix("uuid:") {
        let known = [&id.root_uuid, &id.wan_uuid, &id.wan_conn_uuid];
        if known.iter().any(|u| u.eq_ignore_ascii_case(uuid)) {
            return vec![(st.to_string(), st.to_string())];
        }
        return Vec::new();
    }
    let Some((domain, kind, name, version)) = parse_type_urn(st) else {
        return Vec::new();
    };
    if domain != UPNP_DOMAIN || version == 0 {
        return Vec::new();
    }
    IGD_TYPES
        .iter()
        .filter(|t| t.kind == kind && t.name == name && version <= t.version_in(id.version))
        .map(|t| (st.to_string(), format!("uuid:{}::{st}", id.uuid(t.level))))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(version: u32) -> IgdIdentity {
        IgdIdentity {
            root_uuid: "11111111-2222-3333-4444-555555555555".into(),
            wan_uuid: "11111111-2222-3333-4444-555555555556".into(),
            wan_conn_uuid: "11111111-2222-3333-4444-555555555557".into(),
            version,
        }
    }

    /// miniupnpc's upnpDiscover (minissdpc.c), one search per device type.
    const MINIUPNPC: &[u8] = b"M-SEARCH * HTTP/1.1\r\nHOST: 239.255.255.250:1900\r\nST: urn:schemas-upnp-org:device:InternetGatewayDevice:1\r\nMAN: \"ssdp:discover\"\r\nMX: 2\r\n\r\n";
    /// Windows (SSDP service), with its own header order and an upper bound MX.
    const WINDOWS: &[u8] = b"M-SEARCH * HTTP/1.1\r\nHost:239.255.255.250:1900\r\nST:urn:schemas-upnp-org:device:InternetGatewayDevice:1\r\nMan:\"ssdp:discover\"\r\nMX:3\r\n\r\n";
    /// igd-next (search.rs): lower-case fields and no trailing empty line in some versions.
    const IGD_NEXT: &[u8] = b"M-SEARCH * HTTP/1.1\r\nHost:239.255.255.250:1900\r\nST:urn:schemas-upnp-org:device:InternetGatewayDevice:1\r\nMan:\"ssdp:discover\"\r\nMX:3\r\n";
    /// A UDA 2.0 control point with USER-AGENT and the CPFN/TCPPORT fields, LF-only.
    const UDA2: &[u8] = b"M-SEARCH * HTTP/1.1\nHOST: 239.255.255.250:1900\nMAN: \"ssdp:discover\"\nMX: 10\nST: ssdp:all\nUSER-AGENT: Linux/6.1 UPnP/2.0 test/1.0\nCPFN.UPNP.ORG: lab viewer\nTCPPORT.UPNP.ORG: 49152\n\n";

    #[test]
    fn real_world_searches() {
        for raw in [MINIUPNPC, WINDOWS, IGD_NEXT] {
            let Ok(Message::Search(s)) = parse(raw) else {
                panic!("{raw:?}")
            };
            assert_eq!(s.st, "urn:schemas-upnp-org:device:InternetGatewayDevice:1");
            assert!(matches!(
                search_delay(s.mx.as_deref(), false),
                SearchDelay::UpTo(_)
            ));
        }
        let Ok(Message::Search(s)) = parse(UDA2) else {
            panic!()
        };
        assert_eq!(s.st, "ssdp:all");
        assert_eq!(s.user_agent.as_deref(), Some("Linux/6.1 UPnP/2.0 test/1.0"));
        assert_eq!(
            search_delay(s.mx.as_deref(), false),
            SearchDelay::UpTo(Duration::from_secs(5))
        );
    }

    #[test]
    fn search_round_trip() {
        let Ok(Message::Search(s)) = parse(MINIUPNPC) else {
            panic!()
        };
        let again = s.emit();
        assert_eq!(parse(&again), Ok(Message::Search(s)));
    }

    #[test]
    fn mx_rules() {
        assert_eq!(search_delay(None, true), SearchDelay::Immediate);
        assert_eq!(search_delay(Some("junk"), true), SearchDelay::Immediate);
        assert_eq!(search_delay(None, false), SearchDelay::Discard);
        assert_eq!(search_delay(Some("x"), false), SearchDelay::Discard);
        assert_eq!(search_delay(Some("-1"), false), SearchDelay::Discard);
        assert_eq!(search_delay(Some("0"), false), SearchDelay::Immediate);
        assert_eq!(
            search_delay(Some(" 1 "), false),
            SearchDelay::UpTo(Duration::from_secs(1))
        );
        assert_eq!(
            search_delay(Some("120"), false),
            SearchDelay::UpTo(Duration::from_secs(5))
        );
    }

    #[test]
    fn bad_searches() {
        assert_eq!(
            parse(b"M-SEARCH * HTTP/1.1\r\nST: ssdp:all\r\n\r\n"),
            Err(Error::Missing("MAN"))
        );
        assert_eq!(
            parse(b"M-SEARCH * HTTP/1.1\r\nMAN: \"ssdp:discover\"\r\n\r\n"),
            Err(Error::Missing("ST"))
        );
        assert_eq!(
            parse(b"M-SEARCH * HTTP/1.1\r\nMAN: \"other\"\r\nST: a\r\n"),
            Err(Error::Invalid("MAN"))
        );
        assert_eq!(parse(b"GET / HTTP/1.1\r\n\r\n"), Err(Error::NotSsdp));
        assert_eq!(
            parse(b"HTTP/1.1 404 Not Found\r\n\r\n"),
            Err(Error::NotSsdp)
        );
        assert!(parse(&[0u8; 9000]).is_err());
        assert!(parse(b"\xff").is_err());
    }

    /// A search response in miniupnpd 2.3's layout (minissdp.c SendSSDPResponse; written from its
    /// source, not captured).
    const MINIUPNPD_RESPONSE: &[u8] = b"HTTP/1.1 200 OK\r\nCACHE-CONTROL: max-age=120\r\nST: urn:schemas-upnp-org:device:InternetGatewayDevice:1\r\nUSN: uuid:11111111-2222-3333-4444-555555555555::urn:schemas-upnp-org:device:InternetGatewayDevice:1\r\nEXT:\r\nSERVER: Debian/12 UPnP/1.1 MiniUPnPd/2.3.1\r\nLOCATION: http://192.168.1.1:5000/rootDesc.xml\r\nOPT: \"http://schemas.upnp.org/upnp/1/0/\"; ns=01\r\n01-NLS: 1700000000\r\nBOOTID.UPNP.ORG: 1700000000\r\nCONFIGID.UPNP.ORG: 1337\r\n\r\n";

    #[test]
    fn response_parse_and_round_trip() {
        let Ok(Message::Response(r)) = parse(MINIUPNPD_RESPONSE) else {
            panic!()
        };
        assert_eq!(r.max_age, 120);
        assert_eq!(r.location, "http://192.168.1.1:5000/rootDesc.xml");
        assert_eq!(r.boot_id, Some(1_700_000_000));
        assert_eq!(r.config_id, Some(1337));
        let ours = r.emit();
        assert_eq!(parse(&ours), Ok(Message::Response(r.clone())));
        let text = String::from_utf8(ours).unwrap();
        assert!(text.starts_with("HTTP/1.1 200 OK\r\nCACHE-CONTROL: max-age=120\r\nEXT:\r\n"));
        assert!(text.ends_with("CONFIGID.UPNP.ORG: 1337\r\n\r\n"));
    }

    #[test]
    fn notify_round_trip() {
        let alive = Notify {
            host: MULTICAST_ADDR.into(),
            nt: "upnp:rootdevice".into(),
            nts: Nts::Alive,
            usn: "uuid:abc::upnp:rootdevice".into(),
            location: Some("http://192.168.1.1:5000/rootDesc.xml".into()),
            max_age: Some(1800),
            server: Some("Linux/6 UPnP/1.1 hnib-router/0.1".into()),
            boot_id: Some(7),
            config_id: Some(1),
            next_boot_id: None,
            search_port: None,
        };
        assert_eq!(parse(&alive.emit()), Ok(Message::Notify(alive.clone())));
        let bye = Notify {
            nts: Nts::ByeBye,
            location: None,
            max_age: None,
            server: None,
            ..alive.clone()
        };
        assert_eq!(parse(&bye.emit()), Ok(Message::Notify(bye)));
        let update = Notify {
            nts: Nts::Update,
            next_boot_id: Some(8),
            ..alive.clone()
        };
        let raw = update.emit();
        assert!(String::from_utf8_lossy(&raw).contains("NEXTBOOTID.UPNP.ORG: 8\r\n"));
        assert_eq!(parse(&raw), Ok(Message::Notify(update)));
        // alive without LOCATION is not a usable advertisement
        assert_eq!(
            parse(b"NOTIFY * HTTP/1.1\r\nNT: a\r\nNTS: ssdp:alive\r\nUSN: u\r\n\r\n"),
            Err(Error::Missing("LOCATION"))
        );
        assert_eq!(
            parse(b"NOTIFY * HTTP/1.1\r\nNT: a\r\nNTS: ssdp:other\r\nUSN: u\r\n\r\n"),
            Err(Error::Invalid("NTS"))
        );
    }

    #[test]
    fn max_age_among_directives() {
        assert_eq!(
            parse_max_age("no-cache=\"Ext\", max-age = 5000"),
            Some(5000)
        );
        assert_eq!(parse_max_age("max-age=\"60\""), Some(60));
        assert_eq!(parse_max_age("no-cache"), None);
    }

    #[test]
    fn answers_v1_search_on_v2_device_with_v1() {
        let d = id(2);
        let a = search_answers(&d, "urn:schemas-upnp-org:device:InternetGatewayDevice:1");
        assert_eq!(
            a,
            vec![(
                "urn:schemas-upnp-org:device:InternetGatewayDevice:1".to_string(),
                "uuid:11111111-2222-3333-4444-555555555555::urn:schemas-upnp-org:device:InternetGatewayDevice:1".to_string()
            )]
        );
        let a = search_answers(&d, "urn:schemas-upnp-org:service:WANIPConnection:2");
        assert_eq!(
            a[0].1,
            "uuid:11111111-2222-3333-4444-555555555557::urn:schemas-upnp-org:service:WANIPConnection:2"
        );
        assert_eq!(
            search_answers(&d, "urn:schemas-upnp-org:service:WANIPConnection:1").len(),
            1
        );
        // A v1 device does not answer a v2 search.
        assert!(
            search_answers(&id(1), "urn:schemas-upnp-org:service:WANIPConnection:2").is_empty()
        );
        // WANCommonInterfaceConfig and Layer3Forwarding only exist at :1.
        assert!(search_answers(&d, "urn:schemas-upnp-org:service:Layer3Forwarding:2").is_empty());
        let a = search_answers(
            &d,
            "urn:schemas-upnp-org:service:WANCommonInterfaceConfig:1",
        );
        assert!(
            a[0].1
                .starts_with("uuid:11111111-2222-3333-4444-555555555556::")
        );
        for st in [
            "urn:schemas-upnp-org:device:WANDevice:1",
            "urn:schemas-upnp-org:device:WANDevice:2",
            "urn:schemas-upnp-org:device:WANConnectionDevice:1",
            "urn:schemas-upnp-org:device:WANConnectionDevice:2",
            "urn:schemas-upnp-org:device:InternetGatewayDevice:2",
        ] {
            assert_eq!(search_answers(&d, st).len(), 1, "{st}");
        }
    }

    #[test]
    fn answers_all_root_uuid_and_nothing() {
        let d = id(2);
        let all = search_answers(&d, "ssdp:all");
        // UDA 1.1 §1.2.2: 3 for the root, 2 per embedded device, 1 per service type.
        assert_eq!(all.len(), 3 + 2 * 2 + 3);
        assert!(all.iter().all(|(st, usn)| usn.ends_with(st.as_str())));
        assert_eq!(search_answers(&d, "upnp:rootdevice").len(), 1);
        let u = "uuid:11111111-2222-3333-4444-555555555556";
        assert_eq!(search_answers(&d, u), vec![(u.to_string(), u.to_string())]);
        assert!(search_answers(&d, "uuid:nope").is_empty());
        assert!(search_answers(&d, "urn:schemas-upnp-org:device:MediaServer:1").is_empty());
        assert!(search_answers(&d, "urn:other-org:device:InternetGatewayDevice:1").is_empty());
        assert!(
            search_answers(&d, "urn:schemas-upnp-org:device:InternetGatewayDevice:x").is_empty()
        );
        assert!(search_answers(&d, "").is_empty());
    }
}
