//! The lease file: bindings survive a router restart (RFC 2131 §4.3.2 expects the server to
//! remember its bindings; issue 7).
//!
//! Format (text, one record per line, fields separated by one space):
//!
//! ```text
//! hnib-dhcp-leases 1
//! <addr> <bound|released|declined> <expires, unix seconds> <mac|-> <client key hex|-> <host name|->
//! ```
//!
//! Expiry is absolute wall-clock time, so nothing needs adjusting on load. Offers are not
//! saved (a client whose offer was lost sends a new DISCOVER). Host names are stored as
//! [`super::wire::Message::host_name`] made them: no spaces. The file is written with
//! [`crate::mapping::persist::write_atomic`].

use std::fmt::Write as _;
use std::net::Ipv4Addr;

use super::core::{Lease, LeaseState};
use super::wire::{format_mac, parse_mac};

const MAGIC: &str = "hnib-dhcp-leases 1";

/// A lease file that could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("lease file line {line}: {message}")]
pub struct LoadError {
    /// 1-based line.
    pub line: usize,
    pub message: String,
}

/// Serializes the records worth keeping at `now`.
pub fn save<'a>(leases: impl Iterator<Item = &'a Lease>, now: u64) -> String {
    let mut s = format!("{MAGIC}\n");
    for l in leases {
        let state = match l.state {
            LeaseState::Offered => continue,
            LeaseState::Declined if l.expires <= now => continue,
            LeaseState::Bound => "bound",
            LeaseState::Released => "released",
            LeaseState::Declined => "declined",
        };
        let mac = l.mac.as_ref().map_or("-".to_string(), format_mac);
        let client = if l.client.is_empty() {
            "-".to_string()
        } else {
            l.client.iter().fold(String::new(), |mut s, b| {
                let _ = write!(s, "{b:02x}");
                s
            })
        };
        let _ = writeln!(
            s,
            "{} {state} {} {mac} {client} {}",
            l.addr,
            l.expires,
            l.host_name.as_deref().unwrap_or("-")
        );
    }
    s
}

/// Parses a lease file.
pub fn load(text: &str) -> Result<Vec<Lease>, LoadError> {
    let err = |line: usize, message: &str| LoadError {
        line,
        message: message.to_string(),
    };
    let mut lines = text.lines().enumerate();
    match lines.next() {
        Some((_, l)) if l.trim() == MAGIC => {}
        _ => {
            return Err(err(
                1,
                "not a lease file (first line must be \"hnib-dhcp-leases 1\")",
            ));
        }
    }
    let mut out = Vec::new();
    for (i, line) in lines {
        let n = i + 1;
        if line.trim().is_empty() {
            continue;
        }
        let f: Vec<&str> = line.split(' ').collect();
        let [addr, state, expires, mac, client, host] = f[..] else {
            return Err(err(n, "expected 6 fields"));
        };
        let addr: Ipv4Addr = addr.parse().map_err(|_| err(n, "bad address"))?;
        let state = match state {
            "bound" => LeaseState::Bound,
            "released" => LeaseState::Released,
            "declined" => LeaseState::Declined,
            _ => return Err(err(n, "bad state")),
        };
        let expires: u64 = expires.parse().map_err(|_| err(n, "bad expiry"))?;
        let mac = match mac {
            "-" => None,
            m => Some(parse_mac(m).ok_or_else(|| err(n, "bad MAC"))?),
        };
        let client = match client {
            "-" => Vec::new(),
            c if c.len() % 2 == 0 && c.len() <= 512 => (0..c.len() / 2)
                .map(|j| {
                    c.get(2 * j..2 * j + 2)
                        .and_then(|h| u8::from_str_radix(h, 16).ok())
                        .ok_or_else(|| err(n, "bad client key"))
                })
                .collect::<Result<_, _>>()?,
            _ => return Err(err(n, "bad client key")),
        };
        let host_name = match host {
            "-" => None,
            h if h.len() <= 63
                && h.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b)) =>
            {
                Some(h.to_string())
            }
            _ => return Err(err(n, "bad host name")),
        };
        if state != LeaseState::Declined && client.is_empty() {
            return Err(err(n, "a binding needs a client key"));
        }
        out.push(Lease {
            addr,
            client,
            mac,
            host_name,
            expires,
            state,
        });
    }
    Ok(out)
}
