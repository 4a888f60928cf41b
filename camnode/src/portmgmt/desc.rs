//! The port mapping description string (`NewPortMappingDescription`) by which the representative
//! recognises our cameras in the router's table (patent embodiment 3, "use registration
//! information"; claim 5).
//!
//! Format: `homenet-cam;v1;id=<16 hex>;name=<percent-encoded name>`. Entries are `;`-separated;
//! the first is the product tag, the others are `key=value` (or a bare version token) in any
//! order, and unknown ones are ignored, so later versions can add entries. The name is
//! percent-encoded (RFC 3986 unreserved characters stay as they are), so `;`, `=`, `%`, spaces
//! and any Unicode survive.
//!
//! Routers keep a bounded description: miniupnpd stores 63 bytes (`char desc[64]`). We never emit
//! more than [`MAX_LEN`]: a long name is cut at an escape boundary, and the parser tolerates a cut
//! made by someone else (a dangling `%x`, a split UTF-8 sequence). The full name travels in the LAN
//! notice (claim 6) and wins over a cut one.

use std::fmt::Write as _;

/// The product tag.
pub const TAG: &str = "homenet-cam";
/// The format version token.
pub const VERSION_TOKEN: &str = "v1";
/// Longest description we emit (miniupnpd keeps 63 bytes).
pub const MAX_LEN: usize = 63;

/// What a description of ours says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CamDescription {
    /// The node id.
    pub node_id: u64,
    /// The node's name, possibly cut (see [`CamDescription::truncated`]).
    pub name: String,
    /// True when the description was (or may have been) cut: the name is a prefix of the real one.
    pub truncated: bool,
}

fn unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

/// Writes the description for a node, within [`MAX_LEN`] bytes.
pub fn encode(node_id: u64, name: &str) -> String {
    let mut s = format!("{TAG};{VERSION_TOKEN};id={node_id:016x};name=");
    // Encode per character so a cut never splits one.
    for ch in name.chars() {
        let mut piece = String::new();
        let mut buf = [0u8; 4];
        for &b in ch.encode_utf8(&mut buf).as_bytes() {
            if unreserved(b) {
                piece.push(char::from(b));
            } else {
                let _ = write!(piece, "%{b:02X}");
            }
        }
        if s.len() + piece.len() > MAX_LEN {
            break;
        }
        s.push_str(&piece);
    }
    s
}

/// Decodes percent-encoding tolerantly: a dangling or invalid escape ends the name (it was cut);
/// invalid UTF-8 is replaced, and a replacement character at the end (a split sequence) dropped.
fn percent_decode(s: &str) -> (String, bool) {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut cut = false;
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = b
                .get(i + 1..i + 3)
                .and_then(|h| std::str::from_utf8(h).ok());
            match hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                Some(v) => {
                    out.push(v);
                    i += 3;
                }
                None => {
                    cut = true;
                    break;
                }
            }
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    let mut name = String::from_utf8_lossy(&out).into_owned();
    while name.ends_with('\u{FFFD}') {
        name.pop();
        cut = true;
    }
    (name, cut)
}

/// Reads a description; None if it is not one of ours (another program's mapping).
pub fn parse(desc: &str) -> Option<CamDescription> {
    let mut parts = desc.trim().split(';');
    if parts.next()?.trim() != TAG {
        return None;
    }
    let mut node_id = None;
    let mut name = None;
    for p in parts {
        let Some((k, v)) = p.split_once('=') else {
            continue; // "v1" or a future bare token
        };
        match k.trim() {
            "id" => node_id = crate::identity::parse_id(v.trim()),
            "name" => name = Some(percent_decode(v)),
            _ => {}
        }
    }
    let node_id = node_id?;
    let (name, cut) = name.unwrap_or_default();
    // Our encoder stops before a piece (at most 12 bytes: one 4-byte character escaped) would pass
    // MAX_LEN, so a description that long may have lost the end of its name.
    Some(CamDescription {
        node_id,
        name,
        truncated: cut || desc.len() + 12 > MAX_LEN,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_including_odd_names() {
        for name in ["camera 1", "a;b=c%d", "Küche", "☕", "", "x~y.z_-"] {
            let d = encode(0x0123_4567_89ab_cdef, name);
            assert!(d.len() <= MAX_LEN, "{d}");
            let p = parse(&d).unwrap();
            assert_eq!(
                (p.node_id, p.name.as_str()),
                (0x0123_4567_89ab_cdef, name),
                "{d}"
            );
        }
        assert_eq!(
            encode(1, "camera 1"),
            "homenet-cam;v1;id=0000000000000001;name=camera%201"
        );
    }

    #[test]
    fn long_names_are_cut_at_a_boundary_and_flagged() {
        let long = "Wohnzimmer Kamera über der Tür ☕☕☕";
        let d = encode(7, long);
        assert!(d.len() <= MAX_LEN);
        let p = parse(&d).unwrap();
        assert!(
            p.truncated && long.starts_with(&p.name) && !p.name.is_empty(),
            "{p:?}"
        );
        // A router that cuts in the middle of an escape or of a UTF-8 sequence.
        let full = format!("{TAG};v1;id=7;name=ab%E2%98%95");
        for cut in [full.len() - 1, full.len() - 2, full.len() - 4] {
            let p = parse(&full[..cut]).unwrap();
            assert_eq!(p.name, "ab");
            assert!(p.truncated);
        }
    }

    #[test]
    fn foreign_and_reordered_entries() {
        for foreign in [
            "",
            "Skype",
            "homenet-cam-x;id=1",
            "miniupnpc 2.2",
            "homenet-cam;v1;name=x",
            "homenet-cam;id=zz",
        ] {
            assert_eq!(parse(foreign), None, "{foreign:?}");
        }
        let p = parse("homenet-cam;name=porch;extra=1;v2;id=00ff").unwrap();
        assert_eq!(
            (p.node_id, p.name.as_str(), p.truncated),
            (0xff, "porch", false)
        );
    }
}
