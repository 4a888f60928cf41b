//! Who owns the routing rules of this namespace: a small record
//! (`/run/homenet-router/netns-<cookie>.owner`, next to the sysctl record) with the pid of the
//! router that installed them and that process's start time, so that a later start can tell
//! a live router (refuse) from one that was killed without its teardown (recover).
//!
//! A pid alone could be reused by an unrelated process; the start time
//! (`/proc/PID/stat` field 22, clock ticks since boot) tells them apart (proc(5)).

use std::path::PathBuf;

use super::{SYSCTL_RECORD_DIR, netns_cookie};

/// A router process: pid and start time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Owner {
    pub pid: u32,
    pub start: u64,
}

/// What the record says about the rules' owner.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OwnerState {
    /// No record (rules of a router that kept none, or none at all): nothing is provable.
    Unknown,
    /// The recorded process still runs.
    Alive(Owner),
    /// The recorded process is gone (or the pid is now another process).
    Dead(Owner),
}

/// The record's path for this namespace (`None` if the kernel has no namespace cookie).
fn record_path() -> Option<PathBuf> {
    netns_cookie().map(|c| PathBuf::from(format!("{SYSCTL_RECORD_DIR}/netns-{c:016x}.owner")))
}

/// Start time of `pid` from its `/proc/PID/stat`, `None` if there is no such process.
fn start_time(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    parse_start_time(&stat)
}

/// Field 22 of a `/proc/PID/stat` line; the command name (field 2) may hold spaces and
/// parentheses, so fields are counted after its last `)`.
fn parse_start_time(stat: &str) -> Option<u64> {
    let (_, rest) = stat.rsplit_once(')')?;
    // rest starts with field 3 (state): field 22 is the 20th from here.
    rest.split_whitespace().nth(19)?.parse().ok()
}

/// This process as an owner.
pub fn me() -> Option<Owner> {
    let pid = std::process::id();
    start_time(pid).map(|start| Owner { pid, start })
}

/// Records this process as the owner of the rules it is about to install. A failure costs
/// only the automatic recovery after a crash (the caller logs it).
pub fn record() -> std::io::Result<()> {
    let (Some(path), Some(me)) = (record_path(), me()) else {
        return Ok(());
    };
    std::fs::create_dir_all(SYSCTL_RECORD_DIR)?;
    crate::mapping::persist::write_atomic(&path, format!("{} {}\n", me.pid, me.start).as_bytes())
}

/// Removes the record (teardown, or after recovering from a dead owner).
pub fn forget() {
    if let Some(path) = record_path() {
        let _ = std::fs::remove_file(path);
    }
}

/// The recorded owner and whether it still runs.
pub fn state() -> OwnerState {
    let Some(text) = record_path().and_then(|p| std::fs::read_to_string(p).ok()) else {
        return OwnerState::Unknown;
    };
    let mut words = text.split_whitespace().map(str::parse::<u64>);
    let (Some(Ok(pid)), Some(Ok(start))) = (words.next(), words.next()) else {
        return OwnerState::Unknown;
    };
    let Ok(pid) = u32::try_from(pid) else {
        return OwnerState::Unknown;
    };
    let owner = Owner { pid, start };
    if start_time(pid) == Some(start) {
        OwnerState::Alive(owner)
    } else {
        OwnerState::Dead(owner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn start_time_is_field_22_even_with_odd_command_names() {
        let stat = "4242 (a) b (c)) S 1 4242 4242 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 \
                    987654 1000 10 18446744073709551615";
        assert_eq!(parse_start_time(stat), Some(987654));
        assert_eq!(parse_start_time("1 (x) S 1"), None);
        assert_eq!(parse_start_time("garbage"), None);
    }

    #[test]
    fn this_process_is_alive_by_its_own_record() {
        let me = me().expect("own /proc/self/stat");
        assert_eq!(start_time(me.pid), Some(me.start));
        assert_eq!(start_time(u32::MAX), None);
    }
}
