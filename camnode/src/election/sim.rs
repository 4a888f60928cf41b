//! A discrete-event simulation of N camnodes on one LAN and their router (quinn/smoltcp style):
//! a virtual clock that jumps to the earliest wakeup, seeded loss, duplicates and reordering,
//! crashes, graceful stops, restarts, partitions that heal. The properties of issue 6 are
//! checked after every step:
//! - **at most one representative once a collision window has passed**: two representatives
//!   that can hear each other never coexist for longer than one collision window. Not counted
//!   while a partition separates them; after it heals, the window counts from the first message
//!   of either that reaches the other side (before that, neither can know of the other);
//! - **eventually exactly one representative while any node is alive**: never none for longer
//!   than a detection, an election and a takeover (in secure mode plus the dead holder's lease),
//!   and at the end of a quiet period exactly one, the one the router maps the port to;
//! - **every live node listed**: on a calm LAN (no loss, no partition), a node that has been up
//!   under the same representative for two inquiry intervals is in its list, and a node dead for
//!   longer than the member timeout and an inquiry interval is not (checked at most every 10 ms
//!   of virtual time).

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::time::{Duration, Instant};

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use shared::lanproto::{Header, PortNotice, Repr};

use super::*;

mod cases;
mod random;

const MS: Duration = Duration::from_millis(1);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    /// The successor may delete the old holder's mapping.
    Permissive,
    /// Only the holder may delete it; the successor waits for its lease to lapse.
    Secure,
}

/// The router's view of the representative port.
#[derive(Debug)]
struct Router {
    mode: Mode,
    lease: Duration,
    holder: Option<(usize, Instant)>,
}

impl Router {
    fn holder(&self, now: Instant) -> Option<usize> {
        self.holder.filter(|(_, exp)| *exp > now).map(|(h, _)| h)
    }

    /// When the current holder's mapping lapses.
    fn expiry(&self, now: Instant) -> Instant {
        self.holder.map_or(now, |(_, e)| e)
    }
}

#[derive(Debug)]
struct Node {
    id: u64,
    port: u16,
    el: Option<Election>,
    seq: u64,
    side: u8,
    /// The port manager's pending representative-port work (as the real one does it, one
    /// router latency per step): delete the old holder's mapping (Fig. 14; permissive only)...
    del_at: Option<Instant>,
    /// ... then AddPortMapping (takeover or reclaim; in secure mode asked again every second
    /// until the holder's lease lapses).
    add_at: Option<Instant>,
    /// A renewal right now (Verify): refused if another holds the port.
    verify_at: Option<Instant>,
    renew_at: Option<Instant>,
    /// When it last started (or None while dead) and died.
    up_since: Option<Instant>,
    down_since: Option<Instant>,
    /// Its side before the last heal (None: restarted since).
    pre_heal: Option<u8>,
}

#[derive(Debug)]
struct Flight {
    at: Instant,
    to: usize,
    from: usize,
    bytes: Vec<u8>,
}

struct Sim {
    t0: Instant,
    now: Instant,
    rng: SmallRng,
    cfg: Settings,
    nodes: Vec<Node>,
    router: Router,
    flight: Vec<Flight>,
    loss: f64,
    dup: f64,
    max_delay: u64,
    router_latency: Duration,
    /// How often the port manager asks again while the router refuses (secure mode).
    takeover_retry: Duration,
    dual_bound: Duration,
    dual: BTreeMap<(usize, usize), Instant>,
    max_dual: Duration,
    /// Times two representatives that could hear each other appeared.
    duals: usize,
    /// The longest such time after a heal, counted from the heal itself.
    max_heal_dual: Duration,
    /// Since when no live node is representative, and the bound on that.
    none_since: Option<Instant>,
    none_bound: Duration,
    max_none: Duration,
    /// Since when the LAN is calm (no loss, no partition), for the listing property.
    calm_since: Option<Instant>,
    /// (representative, since) for the listing property, and when it was last checked.
    rep_since: Option<(usize, Instant)>,
    listing_checked: Instant,
    /// After a heal: per node, when its representative messages first reached the other side.
    crossed: BTreeMap<usize, Instant>,
    healed: bool,
    /// (when, node) each time a node took the port.
    takeovers: Vec<(Instant, usize)>,
    reasons: Vec<GoneReason>,
    trace: Vec<String>,
    label: String,
}

fn addr(i: usize) -> SocketAddrV4 {
    SocketAddrV4::new(Ipv4Addr::new(10, 0, 0, i as u8 + 1), 17777)
}

impl Sim {
    fn new(n: usize, seed: u64, cfg: Settings, mode: Mode) -> Sim {
        let t0 = Instant::now();
        let mut rng = SmallRng::seed_from_u64(seed);
        let nodes = (0..n)
            .map(|i| Node {
                id: rng.random::<u64>() | 1,
                port: cfg.first_other_port + i as u16,
                el: None,
                seq: 0,
                side: 0,
                del_at: None,
                add_at: None,
                verify_at: None,
                renew_at: None,
                up_since: None,
                down_since: None,
                pre_heal: None,
            })
            .collect();
        let lease = Duration::from_secs(20);
        Sim {
            t0,
            now: t0,
            rng,
            dual_bound: cfg.collision_window,
            none_bound: match mode {
                Mode::Permissive => Duration::from_secs(6),
                Mode::Secure => lease + Duration::from_secs(6),
            },
            cfg,
            nodes,
            router: Router {
                mode,
                lease,
                holder: None,
            },
            flight: Vec::new(),
            loss: 0.0,
            dup: 0.0,
            max_delay: 5,
            router_latency: 30 * MS,
            takeover_retry: Duration::from_secs(1),
            dual: BTreeMap::new(),
            max_dual: Duration::ZERO,
            duals: 0,
            max_heal_dual: Duration::ZERO,
            none_since: None,
            max_none: Duration::ZERO,
            calm_since: None,
            rep_since: None,
            listing_checked: t0,
            crossed: BTreeMap::new(),
            healed: false,
            takeovers: Vec::new(),
            reasons: Vec::new(),
            trace: Vec::new(),
            label: String::new(),
        }
    }

    fn log(&mut self, s: String) {
        let t = self.now.duration_since(self.t0).as_millis();
        self.trace.push(format!("{t:>6} ms {s}"));
    }

    fn alive(&self, i: usize) -> bool {
        self.nodes[i].el.is_some()
    }

    fn reps(&self) -> Vec<usize> {
        (0..self.nodes.len())
            .filter(|&i| {
                self.nodes[i]
                    .el
                    .as_ref()
                    .is_some_and(Election::is_representative)
            })
            .collect()
    }

    /// Power on: ask the router for the representative port (claim 1); granted = representative.
    fn start(&mut self, i: usize) {
        let seed = self.rng.random();
        let mut el = Election::new(self.cfg.clone(), self.nodes[i].id, seed, self.now);
        el.set_self(PortNotice {
            name: format!("cam{i}"),
            lan_addr: *addr(i).ip(),
            internal_port: self.nodes[i].port,
            external_port: Some(self.nodes[i].port),
        });
        let n = &mut self.nodes[i];
        n.el = Some(el);
        n.up_since = Some(self.now);
        n.down_since = None;
        n.pre_heal = None;
        // Sequence numbers continue above the old ones across a restart (wall-clock start).
        n.seq = self.now.duration_since(self.t0).as_micros() as u64 * 16 + 1;
        self.log(format!("start {i}"));
        if self.router.holder(self.now).is_none() {
            self.grant(i);
        }
        self.flush(i);
    }

    fn grant(&mut self, i: usize) {
        self.router.holder = Some((i, self.now + self.router.lease));
        self.nodes[i].renew_at = Some(self.now + self.router.lease / 2);
        let now = self.now;
        if let Some(el) = &mut self.nodes[i].el
            && !el.is_representative()
        {
            el.took_over(now);
            self.takeovers.push((now, i));
        }
        self.log(format!("router: {i} holds the port"));
    }

    fn crash(&mut self, i: usize) {
        self.log(format!("crash {i}"));
        let n = &mut self.nodes[i];
        n.el = None;
        n.del_at = None;
        n.add_at = None;
        n.verify_at = None;
        n.renew_at = None;
        n.up_since = None;
        n.down_since = Some(self.now);
    }

    /// SIGTERM: bye-bye first, then the port manager deletes its mapping.
    fn stop(&mut self, i: usize) {
        self.log(format!("stop {i}"));
        let now = self.now;
        if let Some(el) = &mut self.nodes[i].el {
            el.shutdown(now);
        }
        self.flush(i);
        if self.router.holder(now) == Some(i) {
            self.router.holder = None;
        }
        self.crash(i);
    }

    /// Splits the LAN: node i goes to `sides[i]`.
    fn partition(&mut self, sides: &[u8]) {
        for (n, s) in self.nodes.iter_mut().zip(sides) {
            n.side = *s;
        }
        self.healed = false;
        self.log(format!("partition {sides:?}"));
    }

    /// Joins the LAN again. Representatives of the two sides now count as two once the first
    /// message of either reaches the other side.
    fn heal(&mut self) {
        for n in &mut self.nodes {
            n.pre_heal = Some(n.side);
            n.side = 0;
        }
        self.crossed.clear();
        self.healed = true;
        self.log("heal".into());
    }

    fn flush(&mut self, i: usize) {
        let now = self.now;
        loop {
            let Some(el) = self.nodes[i].el.as_mut() else {
                return;
            };
            if let Some(t) = el.poll_transmit() {
                self.nodes[i].seq += 1;
                if matches!(
                    t.body,
                    Body::Candidacy(_) | Body::RotationNotice(_) | Body::Conflict(_)
                ) {
                    let what = format!("{i}: sends {:?} term {} to {:?}", t.body, t.term, t.to);
                    self.log(what);
                }
                let bytes = Repr {
                    header: Header {
                        node_id: self.nodes[i].id,
                        sequence: self.nodes[i].seq,
                        term: t.term,
                    },
                    body: t.body,
                }
                .emit();
                match t.to {
                    Dest::Group => {
                        for j in 0..self.nodes.len() {
                            if j != i {
                                self.send(i, j, &bytes);
                            }
                        }
                    }
                    Dest::Node(a) => {
                        if let Some(j) = (0..self.nodes.len()).find(|&j| addr(j) == a) {
                            self.send(i, j, &bytes);
                        }
                    }
                }
                continue;
            }
            let Some(ev) = el.poll_event() else { return };
            let lat = self.router_latency;
            match ev {
                Event::BecomeRepresentative { .. } => {
                    // Fig. 14: check the router, delete the old mapping, add ours.
                    self.nodes[i].del_at = Some(now + lat / 2);
                    self.nodes[i].add_at = Some(now + lat);
                }
                // Make sure the port is ours: check, delete the rival's, add ours.
                Event::Reclaim if self.router.holder(now) != Some(i) => {
                    self.nodes[i].del_at = Some(now + lat / 2);
                    self.nodes[i].add_at = Some(now + lat);
                }
                // Renew now; not while a reclaim is asking the router (it checks the port).
                Event::Verify if self.nodes[i].add_at.is_none() => {
                    self.nodes[i].verify_at.get_or_insert(now + lat / 2);
                }
                Event::StandDown { .. } => {
                    let n = &mut self.nodes[i];
                    n.del_at = None;
                    n.add_at = None;
                    n.verify_at = None;
                    n.renew_at = None;
                    // The port manager deletes its representative mapping (only if it is still
                    // its own) and becomes a member.
                    if self.router.holder(now) == Some(i) {
                        self.router.holder = None;
                    }
                }
                Event::RepresentativeGone { reason, .. } => self.reasons.push(reason),
                _ => {}
            }
            self.log(format!("{i}: {ev:?}"));
        }
    }

    fn send(&mut self, from: usize, to: usize, bytes: &[u8]) {
        if self.nodes[from].side != self.nodes[to].side {
            return;
        }
        let copies = if self.dup > 0.0 && self.rng.random_bool(self.dup) {
            2
        } else {
            1
        };
        for _ in 0..copies {
            if self.loss > 0.0 && self.rng.random_bool(self.loss) {
                continue;
            }
            let d = self.rng.random_range(1..=self.max_delay);
            self.flight.push(Flight {
                at: self.now + MS * d as u32,
                to,
                from,
                bytes: bytes.to_vec(),
            });
        }
    }

    fn next_wakeup(&self) -> Option<Instant> {
        let mut t: Option<Instant> = None;
        let mut take = |c: Option<Instant>| {
            if let Some(c) = c
                && t.is_none_or(|x| c < x)
            {
                t = Some(c);
            }
        };
        for f in &self.flight {
            take(Some(f.at));
        }
        for n in &self.nodes {
            if let Some(el) = &n.el {
                take(el.poll_timeout());
            }
            take(n.del_at);
            take(n.add_at);
            take(n.verify_at);
            take(n.renew_at);
        }
        t
    }

    fn run_for(&mut self, d: Duration) {
        let until = self.now + d;
        while let Some(t) = self.next_wakeup().filter(|t| *t <= until) {
            self.now = t.max(self.now);
            self.step();
            self.check();
        }
        self.now = until;
        self.check();
    }

    fn due(at: &mut Option<Instant>, now: Instant) -> bool {
        if at.is_some_and(|t| t <= now) {
            *at = None;
            return true;
        }
        false
    }

    fn step(&mut self) {
        let now = self.now;
        // Deliveries due now.
        let mut due = Vec::new();
        let mut k = 0;
        while k < self.flight.len() {
            if self.flight[k].at <= now {
                due.push(self.flight.swap_remove(k));
            } else {
                k += 1;
            }
        }
        due.sort_by_key(|f| f.at);
        for f in due {
            if self.nodes[f.to].el.is_none() {
                continue;
            }
            let repr = Repr::parse(&f.bytes).expect("we emit only valid messages");
            if self.healed
                && matches!(repr.body, Body::Inquiry(_) | Body::RotationNotice(_))
                && let (Some(a), Some(b)) = (self.nodes[f.from].pre_heal, self.nodes[f.to].pre_heal)
                && a != b
            {
                self.crossed.entry(f.from).or_insert(now);
            }
            if let Some(el) = self.nodes[f.to].el.as_mut() {
                el.handle_message(now, addr(f.from), &repr);
            }
            self.flush(f.to);
        }
        for i in 0..self.nodes.len() {
            if let Some(el) = self.nodes[i].el.as_mut()
                && el.poll_timeout().is_some_and(|t| t <= now)
            {
                el.handle_timeout(now);
                self.flush(i);
            }
            if Self::due(&mut self.nodes[i].del_at, now)
                && self.router.mode == Mode::Permissive
                && self.router.holder(now).is_some_and(|h| h != i)
            {
                // DeletePortMapping of the old holder's mapping (refused in secure mode).
                self.router.holder = None;
                self.log(format!("router: {i} deleted the old mapping"));
            }
            if Self::due(&mut self.nodes[i].add_at, now) {
                // AddPortMapping for the representative port: in secure mode only once the
                // old holder gave it up or its lease lapsed (the port manager asks again every
                // `takeover_retry`, and at the lapse it read from the router).
                match self.router.holder(now) {
                    Some(h) if h != i && self.router.mode == Mode::Secure => {
                        let exp = self.router.expiry(now);
                        self.nodes[i].add_at = Some(exp.min(now + self.takeover_retry));
                    }
                    _ => self.grant(i),
                }
                self.flush(i);
            }
            if Self::due(&mut self.nodes[i].verify_at, now) {
                // Renew now: re-add if our mapping was deleted; 718 if another holds it.
                match self.router.holder(now) {
                    Some(h) if h != i => {
                        if let Some(el) = self.nodes[i].el.as_mut() {
                            el.lost_port(now);
                        }
                    }
                    _ => {
                        if self.nodes[i]
                            .el
                            .as_ref()
                            .is_some_and(Election::is_representative)
                        {
                            self.grant(i);
                        }
                    }
                }
                self.flush(i);
            }
            if Self::due(&mut self.nodes[i].renew_at, now) {
                let is_rep = self.nodes[i]
                    .el
                    .as_ref()
                    .is_some_and(Election::is_representative);
                if is_rep {
                    match self.router.holder(now) {
                        Some(h) if h != i => {
                            if let Some(el) = self.nodes[i].el.as_mut() {
                                el.lost_port(now);
                            }
                        }
                        _ => {
                            self.router.holder = Some((i, now + self.router.lease));
                            self.nodes[i].renew_at = Some(now + self.router.lease / 2);
                        }
                    }
                    self.flush(i);
                }
            }
        }
    }

    /// The properties, after every step.
    fn check(&mut self) {
        let now = self.now;
        let reps = self.reps();
        // Safety: representatives that can hear each other do not coexist for longer than a
        // collision window (after a heal: counted from the first message across).
        let mut seen = Vec::new();
        for (a, &x) in reps.iter().enumerate() {
            for &y in &reps[a + 1..] {
                if self.nodes[x].side == self.nodes[y].side {
                    seen.push((x, y));
                }
            }
        }
        self.dual.retain(|k, _| seen.contains(k));
        for (x, y) in seen {
            let since = *self.dual.entry((x, y)).or_insert_with(|| {
                self.duals += 1;
                now
            });
            let since = match (self.nodes[x].pre_heal, self.nodes[y].pre_heal) {
                (Some(a), Some(b)) if self.healed && a != b => {
                    self.max_heal_dual = self.max_heal_dual.max(now.duration_since(since));
                    let cross = [self.crossed.get(&x), self.crossed.get(&y)]
                        .into_iter()
                        .flatten()
                        .min()
                        .copied();
                    match cross {
                        Some(c) => since.max(c),
                        None => continue,
                    }
                }
                _ => since,
            };
            let d = now.saturating_duration_since(since);
            self.max_dual = self.max_dual.max(d);
            if d > self.dual_bound {
                self.fail(&format!(
                    "two representatives {:?} for {d:?} (bound {:?})",
                    (x, y),
                    self.dual_bound
                ));
            }
        }
        // Liveness: never without a representative for long while a node is alive.
        if reps.is_empty() && (0..self.nodes.len()).any(|i| self.alive(i)) {
            let since = *self.none_since.get_or_insert(now);
            let d = now.duration_since(since);
            self.max_none = self.max_none.max(d);
            if d > self.none_bound {
                self.fail(&format!(
                    "no representative for {d:?} (bound {:?})",
                    self.none_bound
                ));
            }
        } else {
            self.none_since = None;
        }
        // Listing, on a calm LAN with one representative.
        let calm = self.loss == 0.0 && self.nodes.iter().all(|n| n.side == 0);
        if !calm {
            self.calm_since = None;
        } else if self.calm_since.is_none() {
            self.calm_since = Some(now);
        }
        match (reps.as_slice(), self.rep_since) {
            ([r], Some((p, _))) if *r == p => {}
            ([r], _) => self.rep_since = Some((*r, now)),
            _ => self.rep_since = None,
        }
        // (At most every 10 ms of virtual time: its bounds are seconds.)
        if self.listing_checked + 10 * MS > now {
            return;
        }
        self.listing_checked = now;
        if let (Some(calm), Some((r, rep_at))) = (self.calm_since, self.rep_since) {
            let settle = self.cfg.inquiry_interval * 2 + 100 * MS;
            let forget = self.cfg.member_timeout + self.cfg.inquiry_interval + 100 * MS;
            let Some(el) = &self.nodes[r].el else { return };
            let listed = |id: u64| el.members().any(|(m, _)| m == id);
            for (i, n) in self.nodes.iter().enumerate() {
                if i == r {
                    continue;
                }
                if let Some(up) = n.up_since
                    && now.saturating_duration_since(calm.max(rep_at).max(up)) > settle
                    && !listed(n.id)
                {
                    self.fail(&format!("live node {i} not listed by {r}"));
                }
                if let Some(down) = n.down_since
                    && now.saturating_duration_since(down) > forget
                    && listed(n.id)
                {
                    self.fail(&format!("dead node {i} still listed by {r}"));
                }
            }
        }
    }

    /// Liveness, at the end of a quiet period: exactly one representative, the router maps
    /// the port to it, and it lists every live node and no dead one.
    fn check_settled(&self) {
        let alive: Vec<usize> = (0..self.nodes.len()).filter(|&i| self.alive(i)).collect();
        if alive.is_empty() {
            return;
        }
        let reps = self.reps();
        if reps.len() != 1 {
            self.fail(&format!(
                "{} representatives after settling: {reps:?}",
                reps.len()
            ));
        }
        let r = reps[0];
        if self.router.holder(self.now) != Some(r) {
            self.fail(&format!(
                "representative {r} but the router maps the port to {:?}",
                self.router.holder(self.now)
            ));
        }
        let Some(el) = &self.nodes[r].el else { return };
        let listed: Vec<u64> = el.members().map(|(id, _)| id).collect();
        for &i in &alive {
            if i != r && !listed.contains(&self.nodes[i].id) {
                self.fail(&format!("live node {i} not listed by {r}"));
            }
        }
        for (i, n) in self.nodes.iter().enumerate() {
            if n.el.is_none() && listed.contains(&n.id) {
                self.fail(&format!("dead node {i} still listed by {r}"));
            }
        }
    }

    fn fail(&self, what: &str) -> ! {
        let tail = self.trace.len().saturating_sub(TRACE_TAIL);
        panic!("{} {what}\n{}", self.label, self.trace[tail..].join("\n"));
    }

    /// Time from `since` to the first takeover after it, by a node other than `old`.
    fn takeover_after(&self, since: Instant, old: usize) -> Option<(Duration, usize)> {
        self.takeovers
            .iter()
            .find(|(t, i)| *t >= since && *i != old)
            .map(|(t, i)| (t.duration_since(since), *i))
    }

    /// Starts all nodes a little apart and lets them settle.
    fn boot(&mut self) {
        for i in 0..self.nodes.len() {
            self.start(i);
            self.run_for(20 * MS);
        }
        self.run_for(Duration::from_secs(3));
        self.check_settled();
    }
}

/// Trace lines shown when a property fails.
const TRACE_TAIL: usize = 80;
fn with_rule(rule: Succession) -> Settings {
    Settings {
        succession: rule,
        ..Settings::default()
    }
}

const RULES: [Succession; 3] = [
    Succession::Random,
    Succession::PortOrder,
    Succession::NodeValue,
];
