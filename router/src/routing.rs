//! The routing recipe (DESIGN.md, "Router dataplane"): policy rules that steer every packet
//! crossing between LAN and WAN through the TUN device, installed with `ip` (iproute2) and
//! removed again, exactly, by [`Recipe::teardown`] (also on drop, so a panic or an error after a
//! partial setup cleans up too).
//!
//! ```text
//! ip route add default dev tun0 table 100                        # the LAN side's TUN
//! ip route add default dev tun0w table 101                       # the WAN side's TUN
//! ip rule add pref 10 iif wan0 ipproto tcp|udp|icmp lookup 101  # from the WAN, even to the WAN IP
//! ip rule add pref 11 iif wan0 to <WAN_IP> lookup local          # ARP for the WAN IP (see below)
//! ip rule add pref 12 iif wan0 lookup 101                        # every other protocol
//! ip rule add pref 14 iif lan0 to <WAN_IP> lookup 100            # hairpin
//! ip rule add pref 15 iif lan0 lookup local                      # the router's own LAN services
//! ip rule add pref 20 iif lan0 lookup 100                        # LAN -> internet
//! ip rule add pref 100 lookup local; ip rule del pref 0          # local table after our rules
//! sysctl net.ipv4.conf.{all,default,tun0,tun0w}.rp_filter=0 net.ipv4.conf.{tun0,tun0w}.accept_local=1
//! sysctl net.ipv4.ip_forward=1
//! ```
//!
//! Difference from DESIGN.md: two TUN devices instead of one, so that the engine knows which
//! interface every packet came in on (a packet from the WAN with a LAN source is a spoof, and
//! only the side tells it from an outbound one). The WAN side uses the table after the
//! configured one (`routing.table` + 1) and the device `<tun>w`.
//!
//! Difference from DESIGN.md: its single `iif wan0 lookup 100` rule also catches the route
//! lookup that arp_process() (net/ipv4/arp.c) does for an ARP request; the WAN IP is then not
//! RTN_LOCAL, the router never answers ARP for its own WAN address, and nothing from the
//! internet arrives. An ARP lookup carries no IP protocol, so TCP, UDP and ICMP are matched by
//! `ipproto` first, the WAN IP is `local` for the rest (ARP), and all other traffic from the
//! WAN still goes to the TUN (rule 12).
//!
//! Every rule carries `protocol 82` ([`RULE_PROTOCOL`]) so that rules a crashed run left behind
//! are recognised ([`check_clean`], [`cleanup_stale`]). The installing process records itself
//! as their owner (module `owner`): a router started after a `kill -9` finds that owner dead
//! and removes what it left by itself ([`prepare`]), and one started while another runs is
//! refused. The sysctls' values from before the
//! router changed them are kept in a small file per namespace ([`sysctl_record_path`]) until
//! the teardown restores them, so that `--cleanup-stale` can restore them after a crash too.

use std::fmt::Write as _;
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::process::Command;

use anyhow::{Context, Result, anyhow, bail};
use serde::Deserialize;
use tracing::{debug, info, warn};

use crate::config::RoutingConfig;

mod owner;
pub use owner::OwnerState;

/// The rule "protocol" (FRA_PROTOCOL, ip-rule(8)) that marks our rules: 82 = 'R', not used by
/// any routing daemon listed in /etc/iproute2/rt_protos.
pub const RULE_PROTOCOL: u8 = 82;

/// Runs `ip ARGS...` and returns its stdout; the error names the command and carries stderr.
pub fn ip(args: &[&str]) -> Result<String> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .context("cannot run `ip` (install iproute2)")?;
    if !out.status.success() {
        bail!(
            "`ip {}` failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

#[derive(Deserialize)]
struct IpLink {
    #[serde(default)]
    addr_info: Vec<IpAddrInfo>,
}

#[derive(Deserialize)]
struct IpAddrInfo {
    family: String,
    local: Option<Ipv4Addr>,
    prefixlen: u8,
    #[serde(default)]
    secondary: bool,
}

/// The first (primary) IPv4 address of `iface`, or `None` if it has none.
pub fn iface_ipv4(iface: &str) -> Result<Option<(Ipv4Addr, u8)>> {
    let out = ip(&["-j", "-4", "addr", "show", "dev", iface])
        .with_context(|| format!("interface {iface:?} not found (see `ip link`)"))?;
    parse_iface_ipv4(&out)
}

fn parse_iface_ipv4(json: &str) -> Result<Option<(Ipv4Addr, u8)>> {
    let links: Vec<IpLink> = serde_json::from_str(json).context("unexpected `ip -j` output")?;
    let mut addrs = links
        .iter()
        .flat_map(|l| &l.addr_info)
        .filter(|a| a.family == "inet")
        .filter_map(|a| a.local.map(|ip| (ip, a.prefixlen, a.secondary)));
    let first = addrs.clone().find(|a| !a.2).or_else(|| addrs.next());
    Ok(first.map(|(ip, len, _)| (ip, len)))
}

/// Whether a network interface exists in this namespace.
pub fn link_exists(name: &str) -> bool {
    std::path::Path::new("/sys/class/net").join(name).exists()
        || ip(&["link", "show", "dev", name]).is_ok()
}

#[derive(Deserialize, Debug)]
struct IpRule {
    priority: u32,
    #[serde(default)]
    table: Option<String>,
    #[serde(default)]
    protocol: Option<String>,
}

fn rules() -> Result<Vec<IpRule>> {
    let out = ip(&["-d", "-j", "rule", "show"])?;
    serde_json::from_str(&out).context("unexpected `ip -j rule` output")
}

fn is_ours(r: &IpRule) -> bool {
    r.protocol.as_deref() == Some(&RULE_PROTOCOL.to_string())
}

impl RoutingConfig {
    /// The table of the WAN side's TUN: the one after `table`.
    pub fn wan_table(&self) -> u32 {
        self.table.wrapping_add(1)
    }
}

/// The name of the WAN side's TUN device for the LAN side's `tun` (`tun0` -> `tun0w`).
pub fn wan_tun_name(tun: &str) -> String {
    format!("{tun}w")
}

/// Gets the namespace ready for [`Recipe::install`]: refuses while another live router owns
/// it; removes what a router that provably died left behind (its recorded owner process is
/// gone: logged step by step), or what `--cleanup-stale` asks to remove; then
/// [`check_clean`].
pub fn prepare(cfg: &RoutingConfig, tun: &str, hint_args: &str, cleanup: bool) -> Result<()> {
    refuse_live_owner()?;
    match owner::state() {
        OwnerState::Dead(o) => {
            warn!(
                "the router that set up this namespace (pid {}) is gone without its teardown \
                 (killed or crashed): removing what it left behind",
                o.pid
            );
            cleanup_stale(cfg, tun)?;
            owner::forget();
        }
        _ if cleanup => cleanup_stale(cfg, tun)?,
        _ => {}
    }
    check_clean(cfg, tun, hint_args)
}

/// Refuses while another live router owns this namespace's rules (also called first thing at
/// start, before sockets are bound, so that this is the message a second router gives).
pub fn refuse_live_owner() -> Result<()> {
    match owner::state() {
        OwnerState::Alive(o) if o.pid != std::process::id() => bail!(
            "another router (pid {}) is running in this namespace and owns its routing rules; \
             stop it first (kill {}), or run this one in another namespace",
            o.pid,
            o.pid
        ),
        _ => Ok(()),
    }
}

/// Refuses to start in a namespace that still holds our rules (a crashed run), another router
/// (the TUN exists), or a routing table someone else uses.
pub fn check_clean(cfg: &RoutingConfig, tun: &str, hint_args: &str) -> Result<()> {
    for dev in [tun.to_string(), wan_tun_name(tun)] {
        if link_exists(&dev) {
            bail!(
                "a network device named {dev} already exists in this namespace: is another \
                 router running here? Stop it, or pick another name with --tun"
            );
        }
    }
    let stale: Vec<IpRule> = rules()?.into_iter().filter(is_ours).collect();
    if !stale.is_empty() {
        let prefs: Vec<String> = stale.iter().map(|r| r.priority.to_string()).collect();
        bail!(
            "this namespace still has the routing rules of a router that did not exit cleanly \
             (protocol {RULE_PROTOCOL}, preferences {}). Remove them with\n    router {hint_args} \
             --cleanup-stale\nor by hand:\n    ip rule show protocol {RULE_PROTOCOL}; \
             ip rule del pref N protocol {RULE_PROTOCOL} (for each); \
             ip rule add pref 0 lookup local protocol kernel",
            prefs.join(" ")
        );
    }
    for table in [cfg.table, cfg.wan_table()] {
        let table = table.to_string();
        let routes = match ip(&["route", "show", "table", &table]) {
            Ok(r) => r,
            // The kernel creates a table on its first route.
            Err(e) if format!("{e:#}").contains("does not exist") => String::new(),
            Err(e) => return Err(e),
        };
        if !routes.trim().is_empty() {
            bail!(
                "routing table {table} is not empty (`ip route show table {table}`):\n{}\nthe \
                 router needs tables {n} and {n}+1 of its own: choose another with --table N \
                 (or routing.table)",
                routes.trim(),
                n = cfg.table
            );
        }
    }
    Ok(())
}

/// Where the values of the sysctls the router changed in this network namespace are kept
/// until its teardown restores them: `/run/homenet-router/netns-<cookie>.sysctl`
/// (/proc/sys/net is per namespace). The namespace's cookie (`SO_NETNS_COOKIE`, Linux 5.14)
/// is never reused until reboot, unlike the inode of /proc/self/ns/net, so a record left by
/// a namespace that is gone can never be applied to a new one. None if the kernel has no
/// cookie (no record then: a crash loses the earlier values).
pub fn sysctl_record_path() -> Option<PathBuf> {
    netns_cookie().map(|c| PathBuf::from(format!("{SYSCTL_RECORD_DIR}/netns-{c:016x}.sysctl")))
}

/// This network namespace's cookie, from any socket of it.
fn netns_cookie() -> Option<u64> {
    /// include/uapi/asm-generic/socket.h (the same on every architecture that has it).
    const SO_NETNS_COOKIE: libc::c_int = 71;
    // SAFETY: plain socket(2)/getsockopt(2)/close(2) on a descriptor we own, with a buffer of
    // the size we pass.
    unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0);
        if fd < 0 {
            return None;
        }
        let mut cookie: u64 = 0;
        let mut len = std::mem::size_of::<u64>() as libc::socklen_t;
        let rc = libc::getsockopt(
            fd,
            libc::SOL_SOCKET,
            SO_NETNS_COOKIE,
            (&raw mut cookie).cast(),
            &mut len,
        );
        libc::close(fd);
        (rc == 0 && len as usize == std::mem::size_of::<u64>()).then_some(cookie)
    }
}

/// The directory of [`sysctl_record_path`].
pub const SYSCTL_RECORD_DIR: &str = "/run/homenet-router";

/// The record's lines: `<path under /proc/sys/net/ipv4> <value before>`.
fn parse_sysctl_record(text: &str) -> Vec<(PathBuf, String)> {
    text.lines()
        .filter_map(|l| {
            let (path, old) = l.split_once(' ')?;
            // Only what the router itself changes: a key under net/ipv4, no `..`.
            let key = path.strip_prefix("/proc/sys/net/ipv4/")?;
            let sane = !key.is_empty()
                && key
                    .split('/')
                    .all(|part| !part.is_empty() && part != "." && part != "..");
            (sane && !old.trim().is_empty()).then(|| (PathBuf::from(path), old.trim().to_string()))
        })
        .collect()
}

/// Restores the sysctls a crashed run recorded (see [`sysctl_record_path`]) and removes the
/// record. Returns how many were restored.
fn restore_recorded_sysctls() -> usize {
    let Some(record) = sysctl_record_path() else {
        return 0;
    };
    let Ok(text) = std::fs::read_to_string(&record) else {
        return 0;
    };
    let mut restored = 0;
    for (path, old) in parse_sysctl_record(&text) {
        match std::fs::write(&path, &old) {
            Ok(()) => {
                info!("cleanup: restore {} = {old}", path.display());
                restored += 1;
            }
            Err(e) => warn!("cleanup: cannot restore {}: {e}", path.display()),
        }
    }
    if let Err(e) = std::fs::remove_file(&record) {
        warn!("cleanup: cannot remove {}: {e}", record.display());
    }
    restored
}

/// Removes the rules a crashed run left behind, puts the local rule back at preference 0, and
/// restores the sysctls it had changed (from its record, [`sysctl_record_path`]).
pub fn cleanup_stale(cfg: &RoutingConfig, tun: &str) -> Result<()> {
    let stale: Vec<IpRule> = rules()?.into_iter().filter(is_ours).collect();
    let proto = RULE_PROTOCOL.to_string();
    for r in &stale {
        let pref = r.priority.to_string();
        info!("cleanup: ip rule del pref {pref} protocol {proto}");
        ip(&["rule", "del", "pref", &pref, "protocol", &proto])?;
    }
    if !stale.is_empty() && !has_local_rule_at_zero()? {
        info!("cleanup: ip rule add pref 0 lookup local protocol kernel");
        ip(&[
            "rule", "add", "pref", "0", "lookup", "local", "protocol", "kernel",
        ])?;
    }
    for (dev, table) in [
        (tun.to_string(), cfg.table),
        (wan_tun_name(tun), cfg.wan_table()),
    ] {
        let table = table.to_string();
        if ip(&["route", "del", "default", "dev", &dev, "table", &table]).is_ok() {
            info!("cleanup: removed default dev {dev} table {table}");
        }
    }
    let restored = restore_recorded_sysctls();
    if !stale.is_empty() || restored > 0 {
        info!(
            "cleanup: removed {} stale rules, restored {restored} sysctls",
            stale.len()
        );
    }
    Ok(())
}

fn has_local_rule_at_zero() -> Result<bool> {
    Ok(rules()?
        .iter()
        .any(|r| r.priority == 0 && r.table.as_deref() == Some("local")))
}

/// What the recipe needs to know.
#[derive(Debug, Clone)]
pub struct RecipeParams {
    pub routing: RoutingConfig,
    pub wan_iface: String,
    pub lan_iface: String,
    /// The LAN side's TUN device.
    pub tun: String,
    /// The WAN side's TUN device.
    pub tun_wan: String,
    pub wan_ip: Ipv4Addr,
}

/// One `ip rule` we added.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Rule {
    pref: u32,
    selector: Vec<String>,
    table: String,
    /// The selector names the WAN IP: replaced when it changes.
    names_wan_ip: bool,
}

impl Rule {
    fn args<'a>(&'a self, verb: &'a str, pref: &'a str, proto: &'a str) -> Vec<&'a str> {
        let mut v = vec!["rule", verb, "pref", pref];
        v.extend(self.selector.iter().map(String::as_str));
        v.extend(["lookup", self.table.as_str(), "protocol", proto]);
        v
    }

    fn apply(&self, verb: &str) -> Result<()> {
        let pref = self.pref.to_string();
        let proto = RULE_PROTOCOL.to_string();
        let args = self.args(verb, &pref, &proto);
        info!(
            "{}: ip {}",
            if verb == "add" { "setup" } else { "teardown" },
            args.join(" ")
        );
        ip(&args).map(drop)
    }
}

/// Something the recipe changed, with what undoes it.
#[derive(Debug)]
enum Step {
    /// `ip link set TUN up` (undone by closing the TUN, nothing to do here).
    LinkUp,
    Sysctl {
        path: PathBuf,
        old: String,
    },
    Route {
        args: Vec<String>,
        /// The device the route goes through (the route goes with it).
        dev: String,
    },
    Rule(Rule),
    /// `lookup local` moved from preference 0 to `pref_local`.
    LocalMoved {
        pref_local: u32,
    },
}

/// The installed recipe. Undone in reverse order by [`Recipe::teardown`] or on drop.
#[derive(Debug)]
pub struct Recipe {
    params: RecipeParams,
    steps: Vec<Step>,
    torn_down: bool,
}

impl Recipe {
    /// Installs the recipe; on error, undoes what it had done and returns the error.
    /// The TUN device `params.tun` must exist (created by the caller, who keeps it open).
    pub fn install(params: RecipeParams) -> Result<Recipe> {
        let mut r = Recipe {
            params,
            steps: Vec::new(),
            torn_down: false,
        };
        // On error `r` is dropped here, which tears down the steps done so far.
        r.install_steps()?;
        Ok(r)
    }

    fn install_steps(&mut self) -> Result<()> {
        let p = self.params.clone();
        let table = p.routing.table.to_string();
        let wan_table = p.routing.wan_table().to_string();
        let wan_ip = p.wan_ip.to_string();
        // A run that crashed before it added any rule (so check_clean let us start) may have
        // changed sysctls: put them back first, or their values from before would be lost.
        let restored = restore_recorded_sysctls();
        if restored > 0 {
            info!("setup: restored {restored} sysctls a crashed run had changed");
        }
        // Before the first change: a crash from here on is recognised by the next start.
        if let Err(e) = owner::record() {
            warn!("setup: cannot record this process as the owner of the rules: {e}");
        }

        for (tun, table) in [(&p.tun, &table), (&p.tun_wan, &wan_table)] {
            // The TUN carries IPv4 only: no link-local address, no router solicitations
            // (set before the link comes up, or it sends one).
            let v6 = format!("/proc/sys/net/ipv6/conf/{tun}/disable_ipv6");
            if std::path::Path::new(&v6).exists() {
                debug!("setup: sysctl net.ipv6.conf.{tun}.disable_ipv6 = 1");
                std::fs::write(&v6, "1").with_context(|| format!("cannot write {v6}"))?;
            }
            info!("setup: ip link set {tun} up");
            ip(&["link", "set", "dev", tun, "up"])?;
            self.steps.push(Step::LinkUp);

            // rp_filter would drop the translated packets (their source is our own WAN address
            // or a LAN host, arriving on the TUN); accept_local lets the TUN deliver packets
            // whose source is a local address (ip-sysctl.rst).
            for (key, value) in [
                (format!("conf/{tun}/rp_filter"), "0"),
                (format!("conf/{tun}/accept_local"), "1"),
            ] {
                self.sysctl(&key, value)?;
            }

            let route = ["route", "add", "default", "dev", tun, "table", table];
            info!("setup: ip {}", route.join(" "));
            ip(&route)?;
            self.steps.push(Step::Route {
                args: ["route", "del", "default", "dev", tun, "table", table]
                    .map(String::from)
                    .to_vec(),
                dev: tun.clone(),
            });
        }
        for key in ["conf/all/rp_filter", "conf/default/rp_filter"] {
            self.sysctl(key, "0")?;
        }

        let rc = &p.routing;
        let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        let mut rules = Vec::new();
        for proto in ["tcp", "udp", "icmp"] {
            rules.push(Rule {
                pref: rc.pref_wan,
                selector: s(&["iif", &p.wan_iface, "ipproto", proto]),
                table: wan_table.clone(),
                names_wan_ip: false,
            });
        }
        rules.push(wan_local_rule(&p, &wan_ip));
        rules.push(Rule {
            pref: rc.pref_wan_other,
            selector: s(&["iif", &p.wan_iface]),
            table: wan_table.clone(),
            names_wan_ip: false,
        });
        rules.push(hairpin_rule(&p, &wan_ip));
        rules.push(Rule {
            pref: rc.pref_lan_local,
            selector: s(&["iif", &p.lan_iface]),
            table: "local".into(),
            names_wan_ip: false,
        });
        rules.push(Rule {
            pref: rc.pref_lan,
            selector: s(&["iif", &p.lan_iface]),
            table: table.clone(),
            names_wan_ip: false,
        });
        for rule in rules {
            rule.apply("add")?;
            self.steps.push(Step::Rule(rule));
        }

        // Move the local table after our rules: add the new one first so that local delivery
        // never stops. Until this point our rules had no effect (pref 0 matched first).
        if has_local_rule_at_zero()? {
            let pref = rc.pref_local.to_string();
            let proto = RULE_PROTOCOL.to_string();
            info!("setup: ip rule add pref {pref} lookup local; ip rule del pref 0 lookup local");
            ip(&[
                "rule", "add", "pref", &pref, "lookup", "local", "protocol", &proto,
            ])?;
            if let Err(e) = ip(&["rule", "del", "pref", "0", "lookup", "local"]) {
                let _ = ip(&[
                    "rule", "del", "pref", &pref, "lookup", "local", "protocol", &proto,
                ]);
                return Err(e);
            }
            self.steps.push(Step::LocalMoved {
                pref_local: rc.pref_local,
            });
        } else {
            warn!("setup: no `lookup local` rule at preference 0; leaving the local rules alone");
        }

        self.sysctl("ip_forward", "1")?;
        info!(
            "setup: routing recipe installed ({} steps)",
            self.steps.len()
        );
        Ok(())
    }

    fn sysctl(&mut self, key: &str, value: &str) -> Result<()> {
        let path = PathBuf::from("/proc/sys/net/ipv4").join(key);
        let old = std::fs::read_to_string(&path)
            .with_context(|| format!("cannot read {}", path.display()))?
            .trim()
            .to_string();
        if old == value {
            debug!("setup: sysctl {key} already {value}");
            return Ok(());
        }
        info!(
            "setup: sysctl net.ipv4.{} = {value} (was {old})",
            key.replace('/', ".")
        );
        std::fs::write(&path, value).with_context(|| format!("cannot write {}", path.display()))?;
        // The TUNs' own settings vanish with the devices: nothing to restore.
        let own = [&self.params.tun, &self.params.tun_wan]
            .iter()
            .any(|t| key.starts_with(&format!("conf/{t}/")));
        if !own {
            self.steps.push(Step::Sysctl { path, old });
            self.write_sysctl_record();
        }
        Ok(())
    }

    /// Writes the values to restore ([`sysctl_record_path`]) so that a crash does not lose
    /// them; the teardown removes the file. A failure only costs that safety net (logged).
    fn write_sysctl_record(&self) {
        let Some(record) = sysctl_record_path() else {
            return;
        };
        let mut text = String::new();
        for step in &self.steps {
            if let Step::Sysctl { path, old } = step {
                let _ = writeln!(text, "{} {old}", path.display());
            }
        }
        let result = std::fs::create_dir_all(SYSCTL_RECORD_DIR)
            .and_then(|()| crate::mapping::persist::write_atomic(&record, text.as_bytes()));
        if let Err(e) = result {
            warn!(
                "setup: cannot record the sysctls to restore after a crash in {}: {e}",
                record.display()
            );
        }
    }

    /// The WAN IP the rules name.
    pub fn wan_ip(&self) -> Ipv4Addr {
        self.params.wan_ip
    }

    /// Replaces the rules that name the WAN IP (ARP and hairpin). New rule first, then the old
    /// one, so there is no moment without one.
    pub fn set_wan_ip(&mut self, new: Ipv4Addr) -> Result<()> {
        if new == self.params.wan_ip || self.torn_down {
            return Ok(());
        }
        let mut params = self.params.clone();
        params.wan_ip = new;
        let new_ip = new.to_string();
        for step in self.steps.iter_mut() {
            let Step::Rule(rule) = step else { continue };
            if !rule.names_wan_ip {
                continue;
            }
            let replacement = if rule.pref == params.routing.pref_hairpin {
                hairpin_rule(&params, &new_ip)
            } else {
                wan_local_rule(&params, &new_ip)
            };
            replacement.apply("add")?;
            if let Err(e) = rule.apply("del") {
                warn!("could not remove the rule for the old WAN IP: {e:#}");
            }
            *rule = replacement;
        }
        self.params.wan_ip = new;
        Ok(())
    }

    /// Undoes every step in reverse order. Keeps going past errors (logged) so that as much as
    /// possible is restored; idempotent.
    pub fn teardown(&mut self) {
        if self.torn_down {
            return;
        }
        self.torn_down = true;
        let proto = RULE_PROTOCOL.to_string();
        while let Some(step) = self.steps.pop() {
            let result = match &step {
                Step::LinkUp => Ok(()),
                Step::Sysctl { path, old } => {
                    info!("teardown: restore {} = {old}", path.display());
                    std::fs::write(path, old).map_err(anyhow::Error::from)
                }
                Step::Route { args, dev } => {
                    info!("teardown: ip {}", args.join(" "));
                    let args: Vec<&str> = args.iter().map(String::as_str).collect();
                    // Gone already if the TUN was closed first: that is fine.
                    match ip(&args) {
                        Err(_) if !link_exists(dev) => Ok(()),
                        r => r.map(drop),
                    }
                }
                Step::Rule(rule) => rule.apply("del"),
                Step::LocalMoved { pref_local } => {
                    let pref = pref_local.to_string();
                    info!(
                        "teardown: ip rule add pref 0 lookup local protocol kernel; \
                         ip rule del pref {pref}"
                    );
                    // `protocol kernel`: exactly the rule the kernel creates with a namespace.
                    ip(&[
                        "rule", "add", "pref", "0", "lookup", "local", "protocol", "kernel",
                    ])
                    .and_then(|_| {
                        ip(&[
                            "rule", "del", "pref", &pref, "lookup", "local", "protocol", &proto,
                        ])
                    })
                    .map(drop)
                }
            };
            if let Err(e) = result {
                warn!("teardown: {e:#}");
            }
        }
        // Restored: the crash safety nets are no longer needed.
        if let Some(record) = sysctl_record_path() {
            let _ = std::fs::remove_file(record);
        }
        owner::forget();
        info!("teardown: routing recipe removed");
    }

    /// A human-readable list of what is installed (for logs and `--print-config`).
    pub fn describe(&self) -> String {
        let mut s = String::new();
        for step in &self.steps {
            let _ = writeln!(s, "{step:?}");
        }
        s
    }
}

impl Drop for Recipe {
    fn drop(&mut self) {
        self.teardown();
    }
}

fn wan_local_rule(p: &RecipeParams, wan_ip: &str) -> Rule {
    Rule {
        pref: p.routing.pref_wan_local,
        selector: vec![
            "iif".into(),
            p.wan_iface.clone(),
            "to".into(),
            wan_ip.into(),
        ],
        table: "local".into(),
        names_wan_ip: true,
    }
}

fn hairpin_rule(p: &RecipeParams, wan_ip: &str) -> Rule {
    Rule {
        pref: p.routing.pref_hairpin,
        selector: vec![
            "iif".into(),
            p.lan_iface.clone(),
            "to".into(),
            wan_ip.into(),
        ],
        table: p.routing.table.to_string(),
        names_wan_ip: true,
    }
}

#[derive(Deserialize)]
struct IpRoute {
    dst: String,
    gateway: Option<Ipv4Addr>,
    metric: Option<u32>,
}

/// Changes the WAN interface's address from `old` to `new` (an ISP reassigning it) and keeps
/// the default route via the gateway: deleting an address also deletes the routes that depend
/// on it (fib_del_ifaddr, and every route of the device when it was the last address).
pub fn change_iface_addr(iface: &str, old: (Ipv4Addr, u8), new: (Ipv4Addr, u8)) -> Result<()> {
    let routes: Vec<IpRoute> = serde_json::from_str(&ip(&[
        "-j", "-4", "route", "show", "default", "dev", iface,
    ])?)
    .context("unexpected `ip -j route` output")?;
    let gateways: Vec<(Ipv4Addr, Option<u32>)> = routes
        .iter()
        .filter(|r| r.dst == "default")
        .filter_map(|r| r.gateway.map(|g| (g, r.metric)))
        .collect();
    let new_s = format!("{}/{}", new.0, new.1);
    let old_s = format!("{}/{}", old.0, old.1);
    info!("wan: ip addr add {new_s} dev {iface}; ip addr del {old_s} dev {iface}");
    if new.0 != old.0 {
        ip(&["addr", "add", &new_s, "dev", iface])?;
        ip(&["addr", "del", &old_s, "dev", iface])?;
    } else {
        ip(&["addr", "del", &old_s, "dev", iface])?;
        ip(&["addr", "add", &new_s, "dev", iface])?;
    }
    // Without promote_secondaries, deleting the primary also deletes a new address in the same
    // subnet (it was a secondary): put it back.
    if iface_ipv4(iface)? != Some(new) {
        ip(&["addr", "replace", &new_s, "dev", iface])?;
    }
    let present: Vec<IpRoute> = serde_json::from_str(&ip(&[
        "-j", "-4", "route", "show", "default", "dev", iface,
    ])?)
    .context("unexpected `ip -j route` output")?;
    for (gw, metric) in gateways {
        if present.iter().any(|r| r.gateway == Some(gw)) {
            continue;
        }
        let gw_s = gw.to_string();
        let metric_s = metric.map(|m| m.to_string());
        let mut args = vec!["route", "replace", "default", "via", &gw_s, "dev", iface];
        if let Some(m) = &metric_s {
            args.extend(["metric", m.as_str()]);
        }
        info!("wan: ip {}", args.join(" "));
        if ip(&args).is_err() {
            // The gateway is outside the new subnet: tell the kernel it is on the link anyway.
            args.push("onlink");
            info!("wan: ip {}", args.join(" "));
            ip(&args).map_err(|e| anyhow!("could not restore the default route: {e:#}"))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {

    #[test]
    fn sysctl_record_keeps_only_ipv4_keys() {
        let text = "/proc/sys/net/ipv4/ip_forward 0\n\
                    /proc/sys/net/ipv4/conf/all/rp_filter 2\n\
                    /proc/sys/net/ipv4/../../kernel/x 1\n\
                    /etc/passwd x\n\
                    /proc/sys/net/ipv4/conf//rp_filter 1\n\
                    /proc/sys/net/ipv4/ip_forward\n\
                    garbage";
        let got = super::parse_sysctl_record(text);
        assert_eq!(
            got,
            vec![
                ("/proc/sys/net/ipv4/ip_forward".into(), "0".to_string()),
                (
                    "/proc/sys/net/ipv4/conf/all/rp_filter".into(),
                    "2".to_string()
                ),
            ]
        );
    }

    use super::*;

    #[test]
    fn parses_ip_addr_json() {
        let json = r#"[{"ifindex":2,"ifname":"wan0","addr_info":[
            {"family":"inet","local":"203.0.113.9","prefixlen":24,"secondary":true},
            {"family":"inet","local":"203.0.113.2","prefixlen":24,"scope":"global"}]}]"#;
        assert_eq!(
            parse_iface_ipv4(json).unwrap(),
            Some((Ipv4Addr::new(203, 0, 113, 2), 24))
        );
        assert_eq!(parse_iface_ipv4(r#"[{"addr_info":[]}]"#).unwrap(), None);
        assert_eq!(parse_iface_ipv4("[]").unwrap(), None);
        assert!(parse_iface_ipv4("nonsense").is_err());
    }

    #[test]
    fn rule_arguments() {
        let p = RecipeParams {
            routing: RoutingConfig::default(),
            wan_iface: "wan0".into(),
            lan_iface: "lan0".into(),
            tun: "tun0".into(),
            tun_wan: "tun0w".into(),
            wan_ip: Ipv4Addr::new(203, 0, 113, 2),
        };
        let r = hairpin_rule(&p, "203.0.113.2");
        assert_eq!(
            r.args("add", "14", "82").join(" "),
            "rule add pref 14 iif lan0 to 203.0.113.2 lookup 100 protocol 82"
        );
        let r = wan_local_rule(&p, "203.0.113.2");
        assert_eq!(
            r.args("del", "11", "82").join(" "),
            "rule del pref 11 iif wan0 to 203.0.113.2 lookup local protocol 82"
        );
    }
}
