//! The mapping table's state file: mappings survive a router restart with their remaining
//! lease (issue 4).
//!
//! Format (text, one mapping per line, fields separated by one space):
//!
//! ```text
//! hnib-igd-mappings 1
//! saved-at <unix seconds>
//! <proto> <ext-port> <remote-host|*> <client> <int-port> <enabled 0|1> <origin> <owner> <remaining-secs|permanent> <nonce-hex|-> <description, percent-encoded>
//! ```
//!
//! Leases are stored as seconds remaining at `saved-at` (a wall-clock time the caller
//! supplies; `Instant`s do not survive a restart). On load, the wall-clock time elapsed since
//! `saved-at` is subtracted and mappings whose lease has run out are dropped. A clock that went
//! backwards counts as no time elapsed.
//!
//! [`write_atomic`] is the one function in `mapping` that does IO: write a temporary file in the
//! same directory, fsync it, rename it over the target, fsync the directory, so a crash
//! leaves either the old file or the new one, never a torn one.

use std::fmt::Write as _;
use std::io::Write as _;
use std::net::Ipv4Addr;
use std::path::Path;
use std::time::{Duration, Instant};

use shared::igd::Protocol;

use super::table::{Mapping, MappingTable, Origin};

const MAGIC: &str = "hnib-igd-mappings 1";

/// A state file that could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("state file line {line}: {message}")]
pub struct LoadError {
    /// 1-based line.
    pub line: usize,
    /// What is wrong.
    pub message: String,
}

fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(char::from(b));
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

fn decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = s.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// Serializes the table's mappings with their lease remaining at `now`, stamped with the
/// wall-clock time `wall_unix` (seconds since the epoch) that corresponds to `now`.
pub fn save(table: &MappingTable, now: Instant, wall_unix: u64) -> String {
    let mut s = format!("{MAGIC}\nsaved-at {wall_unix}\n");
    for m in table.iter() {
        let remaining = match m.lease_end {
            None => "permanent".to_string(),
            Some(end) if end <= now => continue,
            Some(_) => m.remaining_secs(now).to_string(),
        };
        let nonce = match m.nonce {
            None => "-".to_string(),
            Some(n) => n.iter().map(|b| format!("{b:02x}")).collect(),
        };
        let _ = writeln!(
            s,
            "{} {} {} {} {} {} {} {} {remaining} {nonce} {}",
            m.protocol,
            m.external_port,
            m.remote_host.map_or("*".to_string(), |h| h.to_string()),
            m.internal_client,
            m.internal_port,
            u8::from(m.enabled),
            m.origin.as_str(),
            m.owner,
            encode(&m.description),
        );
    }
    s
}

/// Reads a state file: the mappings still alive at `now` (wall-clock `wall_unix`), with their
/// lease ends rebased onto `now`. Feed them to [`MappingTable::restore`].
pub fn load(text: &str, now: Instant, wall_unix: u64) -> Result<Vec<Mapping>, LoadError> {
    let err = |line: usize, message: &str| LoadError {
        line,
        message: message.to_string(),
    };
    let mut lines = text.lines().enumerate();
    match lines.next() {
        Some((_, l)) if l.trim() == MAGIC => {}
        _ => return Err(err(1, "not a mapping state file")),
    }
    let saved_at: u64 = match lines.next() {
        Some((_, l)) => l
            .strip_prefix("saved-at ")
            .and_then(|v| v.trim().parse().ok())
            .ok_or_else(|| err(2, "expected saved-at <unix seconds>"))?,
        None => return Err(err(2, "missing saved-at")),
    };
    let elapsed = wall_unix.saturating_sub(saved_at);
    let mut out = Vec::new();
    for (n, line) in lines {
        let line_no = n + 1;
        if line.trim().is_empty() {
            continue;
        }
        let f: Vec<&str> = line.split(' ').collect();
        let [
            proto,
            ext,
            rhost,
            client,
            int,
            enabled,
            origin,
            owner,
            remaining,
            nonce,
            desc,
        ] = f[..]
        else {
            return Err(err(line_no, "expected 11 fields"));
        };
        let protocol: Protocol = proto.parse().map_err(|_| err(line_no, "bad protocol"))?;
        let external_port: u16 = ext.parse().map_err(|_| err(line_no, "bad external port"))?;
        let remote_host = match rhost {
            "*" => None,
            h => Some(
                h.parse::<Ipv4Addr>()
                    .map_err(|_| err(line_no, "bad remote host"))?,
            ),
        };
        let internal_client: Ipv4Addr = client.parse().map_err(|_| err(line_no, "bad client"))?;
        let internal_port: u16 = int.parse().map_err(|_| err(line_no, "bad internal port"))?;
        let enabled = match enabled {
            "1" => true,
            "0" => false,
            _ => return Err(err(line_no, "bad enabled flag")),
        };
        let origin = Origin::parse(origin).ok_or_else(|| err(line_no, "bad origin"))?;
        let owner: Ipv4Addr = owner.parse().map_err(|_| err(line_no, "bad owner"))?;
        let lease_end = match remaining {
            "permanent" => None,
            r => {
                let r: u64 = r.parse().map_err(|_| err(line_no, "bad remaining lease"))?;
                if r <= elapsed {
                    continue; // expired while the router was down
                }
                Some(now + Duration::from_secs(r - elapsed))
            }
        };
        let nonce = match nonce {
            "-" => None,
            h if h.len() == 24 => {
                let mut n = [0u8; 12];
                for (i, b) in n.iter_mut().enumerate() {
                    let pair = h
                        .get(2 * i..2 * i + 2)
                        .ok_or_else(|| err(line_no, "bad nonce"))?;
                    *b = u8::from_str_radix(pair, 16).map_err(|_| err(line_no, "bad nonce"))?;
                }
                Some(n)
            }
            _ => return Err(err(line_no, "bad nonce")),
        };
        let description = decode(desc).ok_or_else(|| err(line_no, "bad description"))?;
        if external_port == 0 || internal_port == 0 {
            return Err(err(line_no, "port 0"));
        }
        out.push(Mapping {
            protocol,
            external_port,
            remote_host,
            internal_client,
            internal_port,
            enabled,
            description,
            lease_end,
            origin,
            owner,
            nonce,
        });
    }
    Ok(out)
}

/// Writes `contents` to `path` atomically: `path.tmp` is written and fsynced, renamed over
/// `path`, and the directory is fsynced so the rename itself is durable. This is the only IO
/// in the `mapping` module; the shell calls it with [`save`]'s output.
pub fn write_atomic(path: &Path, contents: &[u8]) -> std::io::Result<()> {
    let mut tmp_name = path
        .file_name()
        .map(|n| n.to_os_string())
        .unwrap_or_default();
    tmp_name.push(".tmp");
    let tmp = path.with_file_name(tmp_name);
    {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(contents)?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, path)?;
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    std::fs::File::open(dir)?.sync_all()
}
