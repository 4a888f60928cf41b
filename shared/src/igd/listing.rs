//! The `PortMappingList` document of GetListOfPortMappings (WANIPConnection:2 §2.4.20, schema
//! `WANIPConnection-v2.xsd`).

use std::fmt::Write as _;

use super::{
    PORT_LISTING_NS, PortMappingEntry, fmt_bool, fmt_remote_host, parse_bool, parse_remote_host,
};
use crate::xml::{self, Limits, XmlError, escape};

/// Writes the `p:PortMappingList` document that GetListOfPortMappings returns in
/// `NewPortListing` (the SOAP layer escapes it once more as the argument's text).
/// The element names are the schema's: `NewDescription` and `NewLeaseTime` (not the action
/// argument names).
pub fn emit_port_listing(entries: &[PortMappingEntry]) -> String {
    let mut s = String::with_capacity(128 + entries.len() * 360);
    let _ = write!(
        s,
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?><p:PortMappingList xmlns:p=\"{PORT_LISTING_NS}\" \
         xmlns:xsi=\"http://www.w3.org/2001/XMLSchema-instance\" xsi:schemaLocation=\"{PORT_LISTING_NS} \
         http://www.upnp.org/schemas/gw/WANIPConnection-v2.xsd\">"
    );
    for e in entries {
        let _ = write!(
            s,
            "<p:PortMappingEntry><p:NewRemoteHost>{}</p:NewRemoteHost>\
             <p:NewExternalPort>{}</p:NewExternalPort><p:NewProtocol>{}</p:NewProtocol>\
             <p:NewInternalPort>{}</p:NewInternalPort><p:NewInternalClient>{}</p:NewInternalClient>\
             <p:NewEnabled>{}</p:NewEnabled><p:NewDescription>{}</p:NewDescription>\
             <p:NewLeaseTime>{}</p:NewLeaseTime></p:PortMappingEntry>",
            fmt_remote_host(e.remote_host),
            e.external_port,
            e.protocol,
            e.internal_port,
            e.internal_client,
            fmt_bool(e.enabled),
            escape(&e.description),
            e.lease_duration,
        );
    }
    s.push_str("</p:PortMappingList>");
    s
}

/// Parses a `PortMappingList` document (client side). Entries that do not parse make the
/// whole listing invalid: a half-read table would mislead the representative's walk.
pub fn parse_port_listing(doc: &[u8]) -> Result<Vec<PortMappingEntry>, XmlError> {
    let limits = Limits {
        max_bytes: 1024 * 1024,
        max_depth: 8,
        max_elements: 16 * 1024,
    };
    let root = xml::parse(doc, limits)?;
    if root.name != "PortMappingList" {
        return Err(XmlError::Malformed("not a PortMappingList".into()));
    }
    let bad = |what: &str| XmlError::Malformed(format!("bad {what} in PortMappingEntry"));
    let mut out = Vec::new();
    for e in root.children_named("PortMappingEntry") {
        let t = |n: &str| e.child_text(n).ok_or_else(|| bad(n));
        out.push(PortMappingEntry {
            remote_host: parse_remote_host(t("NewRemoteHost").unwrap_or(""))
                .map_err(|_| bad("NewRemoteHost"))?,
            external_port: t("NewExternalPort")?
                .parse()
                .map_err(|_| bad("NewExternalPort"))?,
            protocol: t("NewProtocol")?.parse().map_err(|_| bad("NewProtocol"))?,
            internal_port: t("NewInternalPort")?
                .parse()
                .map_err(|_| bad("NewInternalPort"))?,
            internal_client: t("NewInternalClient")?
                .parse()
                .map_err(|_| bad("NewInternalClient"))?,
            enabled: parse_bool(t("NewEnabled")?).ok_or_else(|| bad("NewEnabled"))?,
            description: e
                .child("NewDescription")
                .map(|d| d.text.clone())
                .unwrap_or_default(),
            lease_duration: t("NewLeaseTime")?
                .parse()
                .map_err(|_| bad("NewLeaseTime"))?,
        });
    }
    Ok(out)
}
