//! The node's identity: a random id made once, and its display name, kept across restarts in
//! `<state_dir>/identity-<mac>.toml`, keyed by the MAC address of the node's LAN interface
//! (written atomically: temporary file, fsync, rename). What makes a device unique is its
//! interface, not the directory: several nodes on one machine (network namespaces, containers
//! sharing `/var/lib/camnode`) get one file each and so distinct ids and names. Without a MAC
//! (no such interface) the file is `identity.toml`, as before; an `identity.toml` left by an
//! earlier version is adopted (renamed, atomically) by the first node that finds no file of its
//! own, so exactly one node keeps the old id and name. Ids come from the OS random source.
//!
//! A node that hears its own id from another address (a copied state file) takes a new id:
//! see `portmgmt::core::dupid`.
//!
//! Names are assigned automatically as "camera N" until renamed (the patent: host names "server 1",
//! "server 2", ... assigned automatically and changeable remotely). N is the lowest number not used
//! by the names this node has seen (the router's table and the LAN notices, see
//! [`lowest_free_camera_name`]); without any such source it falls back to a number derived from the
//! id ([`fallback_camera_name`]). Who picks the name and when is port management's business; this
//! module only stores it.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// The file name inside the state directory when no MAC address is known (and the name
/// earlier versions used).
pub const FILE_NAME: &str = "identity.toml";

/// The file name for a node whose LAN interface has `mac`.
pub fn file_name(mac: Option<[u8; 6]>) -> String {
    match mac {
        Some(m) => format!(
            "identity-{:02x}{:02x}{:02x}{:02x}{:02x}{:02x}.toml",
            m[0], m[1], m[2], m[3], m[4], m[5]
        ),
        None => FILE_NAME.to_string(),
    }
}

/// A new node id from the OS random source (getrandom); ids name nodes in the election and
/// the router's table, so they must not be guessable from the start time.
pub fn new_id() -> u64 {
    use rand::TryRngCore as _;
    rand::rngs::OsRng
        .try_next_u64()
        .unwrap_or_else(|_| rand::random())
}
/// The prefix of automatic names.
pub const AUTO_PREFIX: &str = "camera ";

/// Where the current name came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum NameOrigin {
    /// Assigned automatically ("camera N"); may be re-picked if another node has the same one.
    Auto,
    /// From the configuration (`name = ...` / `--name`).
    Config,
    /// Renamed by a user (page or API); wins over the configuration from then on.
    Renamed,
}

/// The node's identity. `name` is None until one is assigned.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Identity {
    /// Random, made once, never changes.
    pub id: u64,
    /// Display name.
    pub name: Option<String>,
    /// Where the name came from.
    pub origin: NameOrigin,
}

impl Identity {
    /// The id as 16 lower-case hex digits (how it appears in descriptions and the Directory).
    pub fn id_hex(&self) -> String {
        format!("{:016x}", self.id)
    }
}

/// The id in its text form.
pub fn id_hex(id: u64) -> String {
    format!("{id:016x}")
}

/// Parses the text form of an id (1 to 16 hex digits).
pub fn parse_id(s: &str) -> Option<u64> {
    if s.is_empty() || s.len() > 16 {
        return None;
    }
    u64::from_str_radix(s, 16).ok()
}

#[derive(Serialize, Deserialize)]
struct Stored {
    id: String,
    #[serde(default)]
    name: Option<String>,
    #[serde(default = "default_origin")]
    name_origin: NameOrigin,
}

fn default_origin() -> NameOrigin {
    NameOrigin::Auto
}

/// Reads and writes the identity file.
#[derive(Clone, Debug)]
pub struct IdentityStore {
    path: PathBuf,
}

impl IdentityStore {
    /// The store in a state directory, for a node without a known MAC (`identity.toml`).
    pub fn new(state_dir: &Path) -> IdentityStore {
        IdentityStore::for_mac(state_dir, None)
    }

    /// The store of the node whose LAN interface has `mac`.
    pub fn for_mac(state_dir: &Path, mac: Option<[u8; 6]>) -> IdentityStore {
        IdentityStore {
            path: state_dir.join(file_name(mac)),
        }
    }

    /// If this store's file does not exist and an `identity.toml` of an earlier version does,
    /// take it over (rename: of several nodes that try at once, one gets it). True if adopted.
    pub fn adopt_legacy(&self) -> bool {
        let Some(dir) = self.path.parent() else {
            return false;
        };
        let legacy = dir.join(FILE_NAME);
        if legacy == self.path || self.path.exists() {
            return false;
        }
        std::fs::rename(&legacy, &self.path).is_ok()
    }

    /// Holds the file for this process (an advisory lock on `<file>.lock`), so that two
    /// processes with the same interface and state directory do not share one identity. Err
    /// with the explanation when another live process holds it; Ok(Err(why)) when no lock can be
    /// taken at all (a read-only state directory: the identity is not saved either, so there is
    /// nothing to share); the lock lasts as long as the returned file is open.
    pub fn lock(&self) -> Result<Result<std::fs::File, String>, String> {
        use std::os::fd::AsRawFd as _;
        let lock_path = self.path.with_extension("toml.lock");
        if let Some(dir) = lock_path.parent() {
            let _ = std::fs::create_dir_all(dir);
        }
        let f = match std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
        {
            Ok(f) => f,
            Err(e) => return Ok(Err(format!("cannot open {}: {e}", lock_path.display()))),
        };
        // SAFETY: flock on a file descriptor we own; no memory is involved.
        if unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
            return Err(format!(
                "another camnode on this host uses the identity {} (same network interface and state directory); \
                 two nodes must not share an identity: give this one its own --state-dir, or run it on its own interface",
                self.path.display()
            ));
        }
        Ok(Ok(f))
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Reads the stored identity; Ok(None) when there is none yet.
    pub fn load(&self) -> std::io::Result<Option<Identity>> {
        let text = match std::fs::read_to_string(&self.path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
        };
        let bad = |what: String| std::io::Error::new(std::io::ErrorKind::InvalidData, what);
        let s: Stored =
            toml::from_str(&text).map_err(|e| bad(format!("{}: {e}", self.path.display())))?;
        let id = parse_id(&s.id)
            .ok_or_else(|| bad(format!("{}: bad id {:?}", self.path.display(), s.id)))?;
        let name = s.name.filter(|n| valid_name(n));
        Ok(Some(Identity {
            id,
            name,
            origin: s.name_origin,
        }))
    }

    /// Writes the identity atomically: a temporary file in the same directory, fsync, rename
    /// over the old one, fsync the directory. A crash leaves the old or the new file, never half.
    pub fn save(&self, identity: &Identity) -> std::io::Result<()> {
        let dir = self.path.parent().unwrap_or_else(|| Path::new("."));
        std::fs::create_dir_all(dir)?;
        let stored = Stored {
            id: identity.id_hex(),
            name: identity.name.clone(),
            name_origin: identity.origin,
        };
        let text = toml::to_string(&stored).map_err(|e| std::io::Error::other(e.to_string()))?;
        let tmp = dir.join(format!(".{FILE_NAME}.{}.tmp", std::process::id()));
        {
            let mut f = std::fs::File::create(&tmp)?;
            f.write_all(text.as_bytes())?;
            f.sync_all()?;
        }
        std::fs::rename(&tmp, &self.path)?;
        if let Ok(d) = std::fs::File::open(dir) {
            let _ = d.sync_all();
        }
        Ok(())
    }

    /// The identity at start-up: the stored one, or a new random id. A configured name replaces
    /// an automatic or configured one, not a user's rename. Returns whether it must be saved.
    pub fn load_or_create(
        &self,
        config_name: &str,
        new_id: impl FnOnce() -> u64,
    ) -> (Identity, bool, Option<std::io::Error>) {
        let (mut ident, mut dirty, err) = match self.load() {
            Ok(Some(i)) => (i, false, None),
            Ok(None) => (
                Identity {
                    id: new_id(),
                    name: None,
                    origin: NameOrigin::Auto,
                },
                true,
                None,
            ),
            // An unreadable file: start with a fresh identity and say why (the caller logs it).
            Err(e) => (
                Identity {
                    id: new_id(),
                    name: None,
                    origin: NameOrigin::Auto,
                },
                true,
                Some(e),
            ),
        };
        let config_name = config_name.trim();
        if !config_name.is_empty()
            && ident.origin != NameOrigin::Renamed
            && ident.name.as_deref() != Some(config_name)
            && valid_name(config_name)
        {
            ident.name = Some(config_name.to_string());
            ident.origin = NameOrigin::Config;
            dirty = true;
        }
        (ident, dirty, err)
    }
}

/// A name we accept: 1 to 64 characters, no control characters, not only spaces.
pub fn valid_name(name: &str) -> bool {
    let n = name.chars().count();
    (1..=64).contains(&n) && !name.chars().any(char::is_control) && !name.trim().is_empty()
}

/// The N of "camera N", if the name is of that form.
pub fn camera_number(name: &str) -> Option<u32> {
    let rest = name.strip_prefix(AUTO_PREFIX)?;
    if rest.is_empty() || rest.len() > 9 || !rest.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    rest.parse().ok()
}

/// "camera N" with the lowest N >= 1 not used by `used` (names of the other nodes).
pub fn lowest_free_camera_name<'a>(used: impl IntoIterator<Item = &'a str>) -> String {
    let taken: std::collections::BTreeSet<u32> =
        used.into_iter().filter_map(camera_number).collect();
    let n = (1..).find(|n| !taken.contains(n)).unwrap_or(1);
    format!("{AUTO_PREFIX}{n}")
}

/// The name when no router table could be read: a number from 100 to 999 derived from the id (so
/// two isolated nodes are unlikely to share it), moved up past names already heard on the LAN.
pub fn fallback_camera_name<'a>(id: u64, used: impl IntoIterator<Item = &'a str>) -> String {
    let taken: std::collections::BTreeSet<u32> =
        used.into_iter().filter_map(camera_number).collect();
    let start = 100 + (id % 900) as u32;
    let n = (start..).find(|n| !taken.contains(n)).unwrap_or(start);
    format!("{AUTO_PREFIX}{n}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tmpdir(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("camnode-ident-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        d
    }

    #[test]
    fn created_once_then_kept_and_renames_win_over_config() {
        let dir = tmpdir("keep");
        let store = IdentityStore::new(&dir);
        let (a, dirty, err) = store.load_or_create("", || 0xabc);
        assert!(dirty && err.is_none());
        assert_eq!((a.id, a.name.as_deref()), (0xabc, None));
        let a = Identity {
            name: Some("camera 2".into()),
            ..a
        };
        store.save(&a).unwrap();
        let (b, dirty, _) = store.load_or_create("", || panic!("id is kept"));
        assert!(!dirty);
        assert_eq!(b, a);
        // A configured name replaces the automatic one ...
        let (c, dirty, _) = store.load_or_create("porch", || 0);
        assert!(dirty);
        assert_eq!(
            (c.name.as_deref(), c.origin),
            (Some("porch"), NameOrigin::Config)
        );
        // ... but not a user's rename.
        store
            .save(&Identity {
                id: 0xabc,
                name: Some("garage ☕".into()),
                origin: NameOrigin::Renamed,
            })
            .unwrap();
        let (d, dirty, _) = store.load_or_create("porch", || 0);
        assert!(!dirty);
        assert_eq!(d.name.as_deref(), Some("garage ☕"));
        // No temporary file is left behind.
        let names: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from(FILE_NAME)]);
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn unreadable_file_gives_a_fresh_identity_and_the_error() {
        let dir = tmpdir("bad");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(FILE_NAME), "id = 5\n").unwrap();
        let (i, dirty, err) = IdentityStore::new(&dir).load_or_create("", || 7);
        assert!(dirty && err.is_some());
        assert_eq!(i.id, 7);
        std::fs::remove_dir_all(dir).unwrap();
    }

    /// Issue 11: nodes sharing a state directory (one machine, several namespaces) each get a
    /// file of their own, keyed by their interface's MAC; an earlier version's identity.toml
    /// goes to exactly one of them; a second process on the same interface is refused.
    #[test]
    fn nodes_sharing_a_directory_get_their_own_identity() {
        let dir = tmpdir("shared");
        std::fs::create_dir_all(&dir).unwrap();
        let legacy = IdentityStore::new(&dir);
        legacy
            .save(&Identity {
                id: 0x1111,
                name: Some("camera 1".into()),
                origin: NameOrigin::Auto,
            })
            .unwrap();
        let macs = [[2, 0x4c, 0x41, 0x42, 0, 1], [2, 0x4c, 0x41, 0x42, 0, 2]];
        let stores: Vec<_> = macs
            .iter()
            .map(|m| IdentityStore::for_mac(&dir, Some(*m)))
            .collect();
        assert!(stores[0].path().ends_with("identity-024c41420001.toml"));
        assert!(stores[0].adopt_legacy());
        assert!(
            !stores[1].adopt_legacy(),
            "the old file goes to one node only"
        );
        let ids: Vec<u64> = stores
            .iter()
            .map(|s| s.load_or_create("", new_id).0.id)
            .collect();
        assert_eq!(ids[0], 0x1111);
        assert_ne!(ids[0], ids[1]);
        // One process per identity.
        let held = stores[1].lock().unwrap().unwrap();
        let refused = stores[1].lock().unwrap_err();
        assert!(refused.contains("--state-dir"), "{refused}");
        assert!(stores[0].lock().unwrap().is_ok());
        drop(held);
        assert!(stores[1].lock().unwrap().is_ok());
        // A directory nobody can write to: no lock, but no refusal either.
        let unwritable = IdentityStore::new(Path::new("/proc/camnode-no-such-dir"));
        assert!(unwritable.lock().unwrap().is_err());
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn automatic_names() {
        assert_eq!(lowest_free_camera_name([]), "camera 1");
        assert_eq!(
            lowest_free_camera_name(["camera 1", "camera 3", "porch", "camera x"]),
            "camera 2"
        );
        assert_eq!(camera_number("camera 12"), Some(12));
        assert_eq!(camera_number("camera 1 2"), None);
        assert_eq!(camera_number("Camera 1"), None);
        let f = fallback_camera_name(1234, []);
        assert_eq!(f, format!("camera {}", 100 + 1234 % 900));
        assert_eq!(fallback_camera_name(0, ["camera 100"]), "camera 101");
        assert!(valid_name("a") && !valid_name("") && !valid_name("  ") && !valid_name("a\nb"));
        assert!(!valid_name(&"x".repeat(65)));
    }
}
