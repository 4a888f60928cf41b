//! The representative's rotation (server patent, embodiment 4, Fig. 11-14, claims 9-15) and the
//! collection by inquiry (embodiment 2, claims 3, 4, Fig. 9), as a sans-IO state machine.
//!
//! Like `quinn-proto`, [`Election`] reads no clock and opens no socket: the caller feeds it
//! parsed LAN messages with [`Election::handle_message`], calls [`Election::handle_timeout`] at
//! [`Election::poll_timeout`], and drains [`Election::poll_transmit`] (messages to send; the
//! caller stamps node id and sequence number) and [`Election::poll_event`] (what the port manager
//! must do). Randomness comes from a seed. The port manager tells it what happened at the router:
//! [`Election::took_over`] (we hold the representative port now), [`Election::lost_port`],
//! [`Election::takeover_failed`], and [`Election::shutdown`] (send bye-bye first, claim 13).
//!
//! # Roles and phases
//! - **Follower**: follows the representative it heard last (highest term). Answers its inquiries
//!   with its ports (emb. 2), asks it whether it is present (claim 15). It declares the
//!   representative gone on any of the three triggers of Fig. 11-13:
//!   1. bye-bye received (claim 13, first sequence);
//!   2. nothing heard from it for `missed_inquiries` inquiry intervals (claim 14, second
//!      sequence; a presence answer also counts as a sign of life);
//!   3. two presence inquiries in a row unanswered (claim 15, third sequence).
//!
//!   A node that has heard no representative at all for as long also starts an election (a
//!   crashed holder's mapping may still block the port; the winner deletes it).
//! - **BackingOff**: waits the delay of the succession rule ([`Succession`]): random (claim 10),
//!   port order (claim 11) or a node-specific value (claim 12). Another candidacy first: yield.
//! - **Candidate**: has sent its identification (claim 9) and listens for one collision window.
//!   A colliding candidacy: under the random rule both back off randomly again (claim 10); under
//!   the deterministic rules the better rank wins (claims 11, 12).
//! - **Yielded**: waits for the winner's rotation notice; if none comes, starts again.
//! - **TakingOver**: won; the port manager rediscovers the router, deletes its own mapping,
//!   deletes the old representative mapping, adds it for itself, reads the external address
//!   (Fig. 14). It repeats its candidacy every inquiry interval so the others keep waiting.
//! - **Representative**: sends the periodic inquiry (carrying its term), merges the answers,
//!   forgets nodes that stop answering, refutes candidacies while it is alive, answers presence
//!   inquiries.
//!
//! # Terms, and never two representatives for longer than a collision window
//! Every takeover increments the term (the highest term heard plus one). Every message carries
//! the sender's term; representatives' messages with a lower term than known are stale and
//! ignored. Of two representatives the one with the higher (term, then lower node id) wins:
//! - the loser stands down without fighting as soon as it hears the winner (an inquiry, a
//!   rotation notice, or a [`lanproto::Conflict`] about it), and tells the winner so (a
//!   Conflict naming itself);
//! - the winner that hears the loser answers it directly with a burst of unicast inquiries
//!   (three copies a quarter collision window apart) and makes sure the router maps the port
//!   to it ([`Event::Reclaim`]), and renews once more an inquiry interval later
//!   ([`Event::Verify`]);
//! - a node that hears two representatives tells each about the other (Conflict, unicast), so
//!   the loser learns it even when the two do not hear each other;
//! - a new representative announces itself with a burst of rotation notices (group, and the
//!   representative it replaced by unicast: it may be alive after a detection caused by loss);
//!   a candidacy goes twice to the group within the window and once to the replaced
//!   representative, whose refutation (an inquiry) is a burst to the candidate.
//!
//! On a LAN that loses each datagram independently with probability `p`, a duplicate
//! representative outlives one collision window only if every copy on every one of these paths
//! is lost (about `p^6` for the replaced one alone); the simulation (`sim.rs`) checks the bound
//! after every step. Sequence numbers per sender drop duplicates and reordering.

pub mod auth;
#[cfg(test)]
mod sim;
pub mod terms;

use std::collections::{BTreeMap, VecDeque};
use std::net::SocketAddrV4;
use std::time::{Duration, Instant};

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use shared::lanproto::{self, Body, PortNotice, Repr};

/// How the successor is chosen (embodiment 4).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Succession {
    /// Claim 10: a random delay in a window; colliding candidates back off randomly again.
    Random,
    /// Claim 11: the holder of the lowest port after the representative port goes first; each
    /// further port waits one more slot, so when the next in order is also gone the one after it
    /// takes over.
    PortOrder,
    /// Claim 12: the delay is derived from the node id; a fixed rule (lower id) breaks ties.
    NodeValue,
}

/// Timers and the rule. Defaults meet issue 6's failover goals; `docs/lan-protocol.md` lists the
/// worst cases they give.
#[derive(Clone, Debug)]
pub struct Settings {
    /// The succession rule.
    pub succession: Succession,
    /// The representative port (8080).
    pub representative_port: u16,
    /// The first port of the other nodes (8081): rank 0 under the port-order rule.
    pub first_other_port: u16,
    /// The representative's inquiry interval (default 500 ms).
    pub inquiry_interval: Duration,
    /// Inquiry intervals without a sign of life before the representative counts as gone
    /// (claim 14: 2, or 3).
    pub missed_inquiries: u32,
    /// How often a member asks the representative whether it is present (claim 15; default 1 s).
    pub presence_interval: Duration,
    /// How long a member waits for the presence answer before it counts as missing and asks
    /// again (default 250 ms).
    pub presence_timeout: Duration,
    /// Random rule: the back-off window (default 300 ms; doubled per collision, at most 4x).
    pub backoff_window: Duration,
    /// How long a candidate listens for a colliding candidacy (default 100 ms; must exceed the
    /// LAN's delivery time).
    pub collision_window: Duration,
    /// Port-order rule: the wait per port rank (default 150 ms).
    pub port_slot: Duration,
    /// Node-value rule: the wait per value step (default 40 ms), with `value_steps` steps.
    pub value_slot: Duration,
    /// Node-value rule: the number of different delays (default 8).
    pub value_steps: u64,
    /// The representative forgets a node that has not answered for this long (default 5 s).
    pub member_timeout: Duration,
    /// Copies of a message that must arrive within one collision window on a lossy LAN (the
    /// new representative's rotation notice, a representative's answer to a rival, the
    /// refutation of a candidacy): sent at once and then every quarter collision window
    /// (default 3: at 0, 1/4 and 1/2 of the window). Each copy has its own sequence number.
    pub burst: u32,
}

impl Default for Settings {
    fn default() -> Settings {
        Settings {
            succession: Succession::Random,
            representative_port: 8080,
            first_other_port: 8081,
            inquiry_interval: Duration::from_millis(500),
            missed_inquiries: 2,
            presence_interval: Duration::from_secs(1),
            presence_timeout: Duration::from_millis(250),
            backoff_window: Duration::from_millis(300),
            collision_window: Duration::from_millis(100),
            port_slot: Duration::from_millis(150),
            value_slot: Duration::from_millis(40),
            value_steps: 8,
            member_timeout: Duration::from_secs(5),
            burst: 3,
        }
    }
}

impl Settings {
    /// The settings for a node's configuration (the other timers keep their defaults).
    pub fn from_config(cfg: &crate::config::Config) -> Settings {
        use crate::config::SuccessionRule;
        Settings {
            succession: match cfg.succession {
                SuccessionRule::Random => Succession::Random,
                SuccessionRule::PortOrder => Succession::PortOrder,
                SuccessionRule::NodeValue => Succession::NodeValue,
            },
            representative_port: cfg.representative_port,
            first_other_port: cfg.first_other_port,
            inquiry_interval: Duration::from_millis(cfg.inquiry_interval_ms),
            missed_inquiries: cfg.missed_inquiries,
            presence_interval: Duration::from_millis(cfg.presence_interval_ms),
            collision_window: Duration::from_millis(cfg.collision_window_ms),
            ..Settings::default()
        }
    }

    /// How long a follower waits without a sign of life from the representative: the missed
    /// inquiries plus half an interval for jitter and delivery.
    pub fn silence_limit(&self) -> Duration {
        self.inquiry_interval * self.missed_inquiries + self.inquiry_interval / 2
    }

    /// How long a node that yielded waits for the winner's rotation notice after the winner's
    /// last candidacy.
    pub fn rotation_wait(&self) -> Duration {
        self.inquiry_interval * 2 + self.collision_window
    }

    /// The spacing of the copies of a burst: a quarter collision window.
    fn burst_gap(&self) -> Duration {
        self.collision_window / 4
    }
}

/// Where a message goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dest {
    /// The LAN multicast group.
    Group,
    /// One node (unicast: answers, presence, bye-bye copies).
    Node(SocketAddrV4),
}

/// A message to send. The caller fills in the header's node id and sequence number (shared
/// with the port manager's own messages).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Transmit {
    /// Where.
    pub to: Dest,
    /// The term to put in the header.
    pub term: u64,
    /// What.
    pub body: Body,
}

/// Why the representative counts as gone (Fig. 11-13).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GoneReason {
    /// It said bye-bye (claim 13).
    ByeBye,
    /// Its periodic inquiries stopped (claim 14).
    InquiriesMissed,
    /// Two presence inquiries in a row were not answered (claim 15).
    PresenceUnanswered,
    /// No representative was heard at all, or the winner of an election never announced.
    NoRepresentative,
}

/// What the port manager must know or do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// The representative is gone; an election starts.
    RepresentativeGone {
        /// Its node id, if known.
        node: Option<u64>,
        /// Which trigger.
        reason: GoneReason,
    },
    /// We won: take the representative port now (Fig. 14: rediscover, delete own mapping,
    /// delete the old one, add it, get the external address, collect, serve), then call
    /// [`Election::took_over`] (or [`Election::takeover_failed`]).
    BecomeRepresentative {
        /// The term we will hold.
        term: u64,
    },
    /// We are (or were about to become) representative but another holds a newer term: stop
    /// taking over or holding the port, become an ordinary node.
    StandDown {
        /// The term of the one we yield to.
        term: u64,
    },
    /// We won a conflict with another representative (a rival of the same term, a stale one,
    /// or one a node told us about with a [`lanproto::Conflict`]), which may hold the port at
    /// the router: make sure the router maps the representative port to us (check it; if the
    /// rival's, delete its mapping and add ours; where the router refuses that, ask again until
    /// the rival, told to stand down, deletes its own mapping or its short lease lapses).
    Reclaim,
    /// Someone thinks we are gone (a candidacy while we hold the port): renew our mapping now;
    /// if the router refuses because another node holds it, call [`Election::lost_port`].
    Verify,
    /// The representative we follow (new or changed address).
    Following {
        /// Its node id.
        node: u64,
        /// Where it answers.
        addr: SocketAddrV4,
        /// Its term.
        term: u64,
    },
    /// Representative: a node answered an inquiry with new or changed information (emb. 2).
    PeerAnswered {
        /// Its node id.
        node: u64,
        /// Its name, address and ports.
        info: PortNotice,
    },
    /// Representative: a node stopped answering (merge with the router's table: drop it once
    /// its mapping is gone too).
    PeerLost {
        /// Its node id.
        node: u64,
    },
}

/// The phase, as tests and the status page see it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    /// An ordinary node (following a representative, or waiting to hear one).
    Follower,
    /// Waiting out the succession delay.
    BackingOff,
    /// Sent a candidacy, listening for collisions.
    Candidate,
    /// Another candidate went first; waiting for its rotation notice.
    Yielded,
    /// Won; the port manager is taking the port.
    TakingOver,
    /// Holds the representative port.
    Representative,
    /// Shut down.
    Stopped,
}

/// The representative a follower follows.
#[derive(Clone, Copy, Debug)]
struct Leader {
    node: u64,
    addr: SocketAddrV4,
    term: u64,
}

/// A node the representative knows from its answers (emb. 2).
#[derive(Clone, Debug)]
struct Member {
    addr: SocketAddrV4,
    info: PortNotice,
    last_answer: Instant,
}

/// The timers, one slot each (quinn's timer table).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Timer {
    /// Follower: the representative's silence limit (claim 14) or the startup wait.
    Silence,
    /// Follower: the next presence inquiry (claim 15).
    Presence,
    /// Follower: the presence answer's deadline.
    PresenceDeadline,
    /// BackingOff: send the candidacy.
    Candidacy,
    /// Candidate: the collision window ends.
    Window,
    /// Yielded: the winner's rotation notice is overdue.
    Rotation,
    /// Representative: the next inquiry; TakingOver: repeat the candidacy.
    Inquiry,
    /// Representative: renew the port again after refuting a candidacy (a candidate that
    /// committed before it heard us may have deleted our mapping and then stood down).
    Reverify,
}

const TIMERS: [Timer; 8] = [
    Timer::Silence,
    Timer::Presence,
    Timer::PresenceDeadline,
    Timer::Candidacy,
    Timer::Window,
    Timer::Rotation,
    Timer::Inquiry,
    Timer::Reverify,
];

/// Counters, for tests and the status page.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Messages dropped as duplicates or reordered.
    pub duplicates: u64,
    /// Representatives' messages dropped for a stale term.
    pub stale: u64,
    /// Candidacies sent.
    pub candidacies: u64,
    /// Collisions seen as a candidate.
    pub collisions: u64,
    /// Takeovers won.
    pub won: u64,
    /// Conflict messages sent (two representatives heard, each told about the other).
    pub conflicts_sent: u64,
    /// Times this node stood down for another representative.
    pub stood_down: u64,
    /// Messages dropped for an implausible term ([`terms::plausible`]).
    pub implausible: u64,
}

/// The election state machine. See the module docs.
#[derive(Debug)]
pub struct Election {
    cfg: Settings,
    id: u64,
    rng: SmallRng,
    me: Option<PortNotice>,
    external_addr: Option<std::net::Ipv4Addr>,
    phase: Phase,
    term: u64,
    leader: Option<Leader>,
    presence_unanswered: u32,
    presence_outstanding: bool,
    /// Backoff rounds in this election (random rule: the window doubles per collision).
    attempt: u32,
    /// The last candidacy heard: (node, term it ran for, when).
    last_candidacy: Option<(u64, u64, Instant)>,
    /// When our candidacy last collided: candidacies of the same burst that arrive within a
    /// collision window after it are part of that collision, not a retry to yield to.
    collided_at: Option<Instant>,
    /// TakingOver: when we last answered a latecomer's candidacy.
    last_reply: Option<Instant>,
    /// The representative we followed before we declared it gone: the candidacy and the
    /// rotation notice also go to it by unicast, in case it is alive after all (a detection
    /// caused by loss).
    prev_leader: Option<Leader>,
    /// Copies of a burst still to send: (when, the phase and term they belong to, what).
    later: Vec<(Instant, Phase, Transmit)>,
    /// Rate limits, per other node: when we last answered it as a rival representative, told
    /// a pair about each other, or refuted its candidacy.
    told: BTreeMap<(u8, u64), Instant>,
    members: BTreeMap<u64, Member>,
    last_seq: BTreeMap<u64, (u64, Instant)>,
    timers: [Option<Instant>; TIMERS.len()],
    out: VecDeque<Transmit>,
    events: VecDeque<Event>,
    stats: Stats,
}

/// A sender silent this long may have restarted with a lower sequence (as in the port manager).
const SEQ_RESET_AFTER: Duration = Duration::from_secs(60);

impl Election {
    /// A node with id `node_id`, not representative, waiting to hear one. `seed` seeds the
    /// random back-off.
    pub fn new(cfg: Settings, node_id: u64, seed: u64, now: Instant) -> Election {
        let mut e = Election {
            cfg,
            id: node_id,
            rng: SmallRng::seed_from_u64(seed),
            me: None,
            external_addr: None,
            phase: Phase::Follower,
            term: 0,
            leader: None,
            presence_unanswered: 0,
            presence_outstanding: false,
            attempt: 0,
            last_candidacy: None,
            collided_at: None,
            last_reply: None,
            prev_leader: None,
            later: Vec::new(),
            told: BTreeMap::new(),
            members: BTreeMap::new(),
            last_seq: BTreeMap::new(),
            timers: [None; TIMERS.len()],
            out: VecDeque::new(),
            events: VecDeque::new(),
            stats: Stats::default(),
        };
        e.set_timer(Timer::Silence, now + e.cfg.silence_limit());
        e
    }

    // -----------------------------------------------------------------------------------------
    // The caller's interface

    /// This node's name, LAN address and ports, for answers to inquiries (emb. 2) and the
    /// port-order rank (claim 11).
    pub fn set_self(&mut self, info: PortNotice) {
        self.me = Some(info);
    }

    /// The router's external address, carried in inquiries and rotation notices.
    pub fn set_external_addr(&mut self, addr: Option<std::net::Ipv4Addr>) {
        self.external_addr = addr;
    }

    /// The current phase.
    pub fn phase(&self) -> Phase {
        self.phase
    }

    /// True while this node holds the representative port.
    pub fn is_representative(&self) -> bool {
        self.phase == Phase::Representative
    }

    /// The highest term known.
    pub fn term(&self) -> u64 {
        self.term
    }

    /// The representative followed: (node id, address, term).
    pub fn leader(&self) -> Option<(u64, SocketAddrV4, u64)> {
        self.leader.map(|l| (l.node, l.addr, l.term))
    }

    /// Representative: the nodes that answered within the member timeout, by node id.
    pub fn members(&self) -> impl Iterator<Item = (u64, &PortNotice)> {
        self.members.iter().map(|(id, m)| (*id, &m.info))
    }

    /// Counters.
    pub fn stats(&self) -> Stats {
        self.stats
    }

    /// The port manager holds the representative port now: at start (claim 1) or after
    /// [`Event::BecomeRepresentative`]. Starts a new term and announces it (Fig. 14).
    pub fn took_over(&mut self, now: Instant) {
        if self.phase == Phase::Stopped || self.phase == Phase::Representative {
            return;
        }
        self.term = terms::next(self.term);
        self.stats.won += 1;
        self.phase = Phase::Representative;
        self.leader = None;
        self.clear_all_timers();
        self.members.clear();
        // The rotation notice must reach a representative that is still alive (we took over
        // after a detection caused by loss) within one collision window: a burst to the group,
        // and to the one we replaced directly.
        let notice = self.rotation_notice();
        self.burst(now, Dest::Group, notice.clone());
        let direct: Vec<SocketAddrV4> = self
            .prev_leader
            .take()
            .map(|l| l.addr)
            .into_iter()
            .collect();
        for a in direct {
            self.burst(now, Dest::Node(a), notice.clone());
        }
        self.send_inquiry(now);
    }

    /// The port manager could not take the port: an ordinary node again, and a new election
    /// once the silence limit passes without a representative.
    pub fn takeover_failed(&mut self, now: Instant) {
        if self.phase == Phase::TakingOver {
            self.become_follower(now, None);
        }
    }

    /// The router gave the representative port to someone else (718 on renewal): an ordinary
    /// node again.
    pub fn lost_port(&mut self, now: Instant) {
        if matches!(self.phase, Phase::Representative | Phase::TakingOver) {
            self.events.push_back(Event::StandDown { term: self.term });
            self.become_follower(now, None);
        }
    }

    /// Stop. A representative says bye-bye to the group and to every member by unicast
    /// (claim 13, Fig. 11) before the port manager deletes its mapping.
    pub fn shutdown(&mut self, _now: Instant) {
        if self.phase == Phase::Representative {
            self.send(Dest::Group, Body::ByeBye);
            let addrs: Vec<_> = self.members.values().map(|m| m.addr).collect();
            for a in addrs {
                self.send(Dest::Node(a), Body::ByeBye);
            }
        }
        self.phase = Phase::Stopped;
        self.clear_all_timers();
        self.later.clear();
    }

    /// When [`Election::handle_timeout`] is due.
    pub fn poll_timeout(&self) -> Option<Instant> {
        // Plain loops: the simulation calls this after every step.
        let mut next: Option<Instant> = None;
        let mut take = |at: Instant| {
            if next.is_none_or(|n| at < n) {
                next = Some(at);
            }
        };
        for t in &self.timers {
            if let Some(at) = *t {
                take(at);
            }
        }
        for l in &self.later {
            take(l.0);
        }
        next
    }

    /// The next message to send.
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.out.pop_front()
    }

    /// The next event for the port manager.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// Runs the timers due at `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        // The rest of a burst, while we are still in the phase and term it was for.
        let mut k = 0;
        while k < self.later.len() {
            if self.later[k].0 <= now {
                let (_, phase, t) = self.later.remove(k);
                // A presence inquiry's second copy only while the first is unanswered.
                let answered =
                    matches!(t.body, Body::PresenceInquiry) && !self.presence_outstanding;
                if phase == self.phase && t.term == self.term && !answered {
                    self.out.push_back(t);
                }
            } else {
                k += 1;
            }
        }
        for t in TIMERS {
            if self.timers[t as usize].is_some_and(|at| at <= now) {
                self.timers[t as usize] = None;
                self.on_timer(now, t);
            }
        }
    }

    /// One message from the LAN, parsed (`lanproto::Repr::parse`), from `from`. Messages that
    /// are not about the election (port notices) are ignored here.
    pub fn handle_message(&mut self, now: Instant, from: SocketAddrV4, msg: &Repr) {
        let h = msg.header;
        if h.node_id == self.id || self.phase == Phase::Stopped {
            return;
        }
        if !matches!(
            msg.body,
            Body::Inquiry(_)
                | Body::InquiryAnswer(_)
                | Body::ByeBye
                | Body::PresenceInquiry
                | Body::PresenceAnswer(_)
                | Body::Candidacy(_)
                | Body::RotationNotice(_)
                | Body::Conflict(_)
        ) {
            return;
        }
        if self.implausible_term(msg) {
            return;
        }
        // Duplicates and reordering: only a higher sequence from a sender counts.
        if let Some((last, at)) = self.last_seq.get(&h.node_id)
            && h.sequence <= *last
            && now.saturating_duration_since(*at) < SEQ_RESET_AFTER
        {
            self.stats.duplicates += 1;
            return;
        }
        self.last_seq.insert(h.node_id, (h.sequence, now));
        match &msg.body {
            Body::Inquiry(_) | Body::RotationNotice(_) => {
                self.on_representative(now, from, h);
            }
            Body::InquiryAnswer(a) => self.on_answer(now, from, h.node_id, &a.node),
            Body::ByeBye => self.on_byebye(now, h),
            Body::PresenceInquiry => {
                // Claim 15: the representative answers whoever asks.
                if self.phase == Phase::Representative {
                    self.send(
                        Dest::Node(from),
                        Body::PresenceAnswer(lanproto::PresenceAnswer {
                            acked_sequence: h.sequence,
                        }),
                    );
                }
            }
            Body::PresenceAnswer(_) => {
                if self.phase == Phase::Follower && self.leader.is_some_and(|l| l.node == h.node_id)
                {
                    self.alive_sign(now);
                }
            }
            Body::Candidacy(c) => self.on_candidacy(now, from, h, c.external_port),
            Body::Conflict(c) => self.on_conflict(now, from, h, c),
            Body::PortNotice(_) | Body::PortNoticeAck(_) => {}
        }
    }

    // -----------------------------------------------------------------------------------------
    // Plumbing

    fn set_timer(&mut self, t: Timer, at: Instant) {
        self.timers[t as usize] = Some(at);
    }

    fn clear_timer(&mut self, t: Timer) {
        self.timers[t as usize] = None;
    }

    fn clear_all_timers(&mut self) {
        self.timers = [None; TIMERS.len()];
    }

    fn send(&mut self, to: Dest, body: Body) {
        self.out.push_back(Transmit {
            to,
            term: self.term,
            body,
        });
    }

    /// `body` now and `burst - 1` more copies a quarter collision window apart, each only if
    /// we are still in this phase and term then.
    fn burst(&mut self, now: Instant, to: Dest, body: Body) {
        self.send(to, body.clone());
        let gap = self.cfg.burst_gap();
        for k in 1..self.cfg.burst.max(1) {
            let t = Transmit {
                to,
                term: self.term,
                body: body.clone(),
            };
            self.later.push((now + gap * k, self.phase, t));
        }
    }

    /// At most once per collision window per (kind, node): true if we may act now.
    fn may(&mut self, now: Instant, kind: u8, node: u64) -> bool {
        let cw = self.cfg.collision_window;
        if self
            .told
            .get(&(kind, node))
            .is_some_and(|at| now.saturating_duration_since(*at) < cw)
        {
            return false;
        }
        if self.told.len() > 256 {
            self.told
                .retain(|_, at| now.saturating_duration_since(*at) < cw);
        }
        self.told.insert((kind, node), now);
        true
    }

    fn rotation_notice(&self) -> Body {
        Body::RotationNotice(lanproto::RotationNotice {
            external_port: self.cfg.representative_port,
            external_addr: self.external_addr,
        })
    }

    fn send_inquiry(&mut self, now: Instant) {
        self.send(
            Dest::Group,
            Body::Inquiry(lanproto::Inquiry {
                external_port: self.cfg.representative_port,
                external_addr: self.external_addr,
            }),
        );
        self.set_timer(Timer::Inquiry, now + self.cfg.inquiry_interval);
    }

    fn candidacy(&self) -> Body {
        Body::Candidacy(lanproto::Candidacy {
            external_port: self.me.as_ref().and_then(|m| m.external_port),
        })
    }

    fn send_candidacy(&mut self, to: Dest) {
        let c = self.candidacy();
        self.send(to, c);
    }

    /// An ordinary node following `leader` (or waiting to hear one).
    fn become_follower(&mut self, now: Instant, leader: Option<Leader>) {
        self.phase = Phase::Follower;
        self.clear_all_timers();
        self.members.clear();
        self.attempt = 0;
        self.presence_unanswered = 0;
        self.presence_outstanding = false;
        let changed = match (self.leader, leader) {
            (Some(a), Some(b)) => a.node != b.node || a.addr != b.addr,
            (None, Some(_)) => true,
            _ => false,
        };
        self.leader = leader;
        if let Some(l) = leader {
            self.prev_leader = None;
            if changed {
                self.events.push_back(Event::Following {
                    node: l.node,
                    addr: l.addr,
                    term: l.term,
                });
            }
            self.set_timer(Timer::Presence, now + self.cfg.presence_interval);
        }
        self.set_timer(Timer::Silence, now + self.cfg.silence_limit());
    }

    /// A sign of life from the representative followed (claims 14, 15).
    fn alive_sign(&mut self, now: Instant) {
        self.presence_unanswered = 0;
        self.presence_outstanding = false;
        self.clear_timer(Timer::PresenceDeadline);
        self.set_timer(Timer::Silence, now + self.cfg.silence_limit());
        if self.timers[Timer::Presence as usize].is_none() {
            self.set_timer(Timer::Presence, now + self.cfg.presence_interval);
        }
    }

    /// This node's rank under a deterministic rule: lower goes first (claims 11, 12); ties are
    /// broken by the lower node id.
    fn rank_of(&self, node: u64, port: Option<u16>) -> u64 {
        match self.cfg.succession {
            Succession::Random => 0,
            Succession::PortOrder => port
                .and_then(|p| p.checked_sub(self.cfg.first_other_port))
                .map_or(64, |r| u64::from(r).min(64)),
            Succession::NodeValue => splitmix(node) % self.cfg.value_steps.max(1),
        }
    }

    fn my_rank(&self) -> u64 {
        self.rank_of(self.id, self.me.as_ref().and_then(|m| m.external_port))
    }

    /// The succession delay (claims 10-12).
    fn backoff(&mut self) -> Duration {
        match self.cfg.succession {
            Succession::Random => {
                // After a collision the retry window is at least four collision windows, so the
                // retries spread wider than the LAN's delivery time (no livelock of candidates
                // that keep hearing each other), and doubles per further collision.
                let base = if self.attempt == 0 {
                    self.cfg.backoff_window
                } else {
                    self.cfg.backoff_window.max(self.cfg.collision_window * 4)
                };
                let window = base * (1u32 << self.attempt.min(3));
                let ms = u64::try_from(window.as_micros()).unwrap_or(u64::MAX).max(1);
                Duration::from_micros(self.rng.random_range(0..ms))
            }
            Succession::PortOrder => self.cfg.port_slot * self.my_rank() as u32,
            Succession::NodeValue => self.cfg.value_slot * self.my_rank() as u32,
        }
    }

    // -----------------------------------------------------------------------------------------
    // Rotation (Fig. 11-14)

    /// The representative is gone: start an election (or yield at once to a candidate already
    /// running for the next term).
    fn representative_gone(&mut self, now: Instant, reason: GoneReason) {
        let node = self.leader.map(|l| l.node);
        tracing::info!(
            ?node,
            ?reason,
            term = self.term,
            "the representative is gone"
        );
        self.events
            .push_back(Event::RepresentativeGone { node, reason });
        // A representative that said bye-bye is gone for sure; one that went silent may be
        // alive behind a lossy LAN: it gets our candidacy and rotation notice directly too.
        self.prev_leader = self.leader.filter(|_| reason != GoneReason::ByeBye);
        self.leader = None;
        self.clear_all_timers();
        self.presence_unanswered = 0;
        self.presence_outstanding = false;
        self.attempt = 0;
        if let Some((_, term, at)) = self.last_candidacy
            && term > self.term
            && now.saturating_duration_since(at) < self.cfg.rotation_wait()
        {
            // Claim 10: another candidacy came first.
            self.phase = Phase::Yielded;
            self.set_timer(Timer::Rotation, at + self.cfg.rotation_wait());
            return;
        }
        self.back_off(now);
    }

    fn back_off(&mut self, now: Instant) {
        self.phase = Phase::BackingOff;
        let d = self.backoff();
        self.set_timer(Timer::Candidacy, now + d);
    }

    fn on_timer(&mut self, now: Instant, t: Timer) {
        match (self.phase, t) {
            (Phase::Follower, Timer::Silence) => {
                let reason = if self.leader.is_some() {
                    GoneReason::InquiriesMissed
                } else {
                    GoneReason::NoRepresentative
                };
                self.representative_gone(now, reason);
            }
            (Phase::Follower, Timer::Presence) => {
                if let Some(l) = self.leader {
                    // A second copy a burst gap later, unless the answer came first: one lost
                    // datagram then no longer makes an unanswered inquiry, and two in a row
                    // (a takeover, claim 15) need four losses, not two, on a lossy LAN.
                    self.send(Dest::Node(l.addr), Body::PresenceInquiry);
                    self.later.push((
                        now + self.cfg.burst_gap(),
                        self.phase,
                        Transmit {
                            to: Dest::Node(l.addr),
                            term: self.term,
                            body: Body::PresenceInquiry,
                        },
                    ));
                    self.presence_outstanding = true;
                    self.set_timer(Timer::PresenceDeadline, now + self.cfg.presence_timeout);
                    self.set_timer(Timer::Presence, now + self.cfg.presence_interval);
                }
            }
            (Phase::Follower, Timer::PresenceDeadline) if self.presence_outstanding => {
                // Claim 15: no answer; twice in a row means gone. Ask again at once.
                self.presence_unanswered += 1;
                if self.presence_unanswered >= 2 {
                    return self.representative_gone(now, GoneReason::PresenceUnanswered);
                }
                self.set_timer(Timer::Presence, now);
            }
            (Phase::BackingOff, Timer::Candidacy) => {
                // Claim 9: identification, "I will be the representative". A second copy in
                // the window makes a collision (claim 10) hard to miss on a lossy LAN; the one
                // we think gone gets it directly, so that it refutes if it is alive.
                self.stats.candidacies += 1;
                self.phase = Phase::Candidate;
                let c = self.candidacy();
                self.send(Dest::Group, c.clone());
                let again = Transmit {
                    to: Dest::Group,
                    term: self.term,
                    body: c.clone(),
                };
                self.later
                    .push((now + self.cfg.collision_window / 3, self.phase, again));
                if let Some(l) = self.prev_leader {
                    self.send(Dest::Node(l.addr), c);
                }
                self.set_timer(Timer::Window, now + self.cfg.collision_window);
            }
            (Phase::Candidate, Timer::Window) => {
                // No collision within the window: we won (Fig. 14).
                let term = terms::next(self.term);
                tracing::info!(term, "won the election; taking the port");
                self.phase = Phase::TakingOver;
                self.events.push_back(Event::BecomeRepresentative { term });
                self.set_timer(Timer::Inquiry, now + self.cfg.inquiry_interval);
            }
            (Phase::TakingOver, Timer::Inquiry) => {
                // Keep the others waiting while the router is slow (or, in secure mode, until
                // the old mapping lapses).
                self.send_candidacy(Dest::Group);
                self.set_timer(Timer::Inquiry, now + self.cfg.inquiry_interval);
            }
            (Phase::Yielded, Timer::Rotation) => {
                self.last_candidacy = None;
                self.representative_gone(now, GoneReason::NoRepresentative);
            }
            (Phase::Representative, Timer::Inquiry) => {
                // Emb. 2: ask every node for its port; forget those that stopped answering.
                let stale: Vec<u64> = self
                    .members
                    .iter()
                    .filter(|(_, m)| {
                        now.saturating_duration_since(m.last_answer) > self.cfg.member_timeout
                    })
                    .map(|(id, _)| *id)
                    .collect();
                for node in stale {
                    self.members.remove(&node);
                    self.events.push_back(Event::PeerLost { node });
                }
                self.send_inquiry(now);
            }
            (Phase::Representative, Timer::Reverify) => {
                self.events.push_back(Event::Verify);
            }
            _ => {}
        }
    }

    /// (term, node id) `a` beats `b`: the higher term, then the lower node id.
    fn beats(a: (u64, u64), b: (u64, u64)) -> bool {
        a.0 > b.0 || (a.0 == b.0 && a.1 < b.1)
    }

    /// Another representative beats us: do not fight, become an ordinary node following it.
    /// We tell it so (a [`lanproto::Conflict`] naming ourselves): the port manager deletes our
    /// representative mapping if the router still has it, or we may have deleted the winner's
    /// during a takeover, so the winner checks that the router maps the port to it.
    fn stand_down(&mut self, now: Instant, to: Leader) {
        tracing::info!(
            term = to.term,
            node = to.node,
            "another representative wins (term, node id); standing down"
        );
        self.stats.stood_down += 1;
        let my_term = self.term;
        self.term = self.term.max(to.term);
        self.events.push_back(Event::StandDown { term: to.term });
        self.become_follower(now, Some(to));
        if let Some(me) = &self.me {
            let c = Body::Conflict(lanproto::Conflict {
                node_id: self.id,
                term: my_term,
                lan_addr: me.lan_addr,
            });
            self.stats.conflicts_sent += 1;
            self.send(Dest::Node(to.addr), c);
        }
    }

    /// We beat another representative (`node` at `addr`): tell it directly, in a burst, so it
    /// stands down within a collision window; make sure the router maps the port to us.
    fn assert_against(&mut self, now: Instant, node: u64, addr: SocketAddrV4) {
        self.stats.stale += 1;
        if !self.may(now, 0, node) {
            return;
        }
        tracing::info!(
            node,
            %addr,
            term = self.term,
            "another representative with a losing (term, node id): telling it"
        );
        let inquiry = self.inquiry();
        self.burst(now, Dest::Node(addr), inquiry);
        self.events.push_back(Event::Reclaim);
        // A stand-down that raced our reclaim may delete our new mapping: check again later.
        self.set_timer(
            Timer::Reverify,
            now + self.cfg.inquiry_interval + self.cfg.collision_window,
        );
    }

    /// A node that heard two representatives, `a` (the one it followed) and `b`, tells each
    /// about the other, in a burst: the loser stands down even if the two never hear each
    /// other.
    fn tell_both(&mut self, now: Instant, a: Leader, b: Leader) {
        let pair = a.node.min(b.node) ^ a.node.max(b.node).rotate_left(17);
        if a.node == b.node || !self.may(now, 1, pair) {
            return;
        }
        for (to, about) in [(a, b), (b, a)] {
            self.stats.conflicts_sent += 1;
            let c = Body::Conflict(lanproto::Conflict {
                node_id: about.node,
                term: about.term,
                lan_addr: *about.addr.ip(),
            });
            self.burst(now, Dest::Node(to.addr), c);
        }
    }

    /// An inquiry or a rotation notice: a representative speaks.
    fn on_representative(&mut self, now: Instant, from: SocketAddrV4, h: lanproto::Header) {
        let t = h.term;
        let them = Leader {
            node: h.node_id,
            addr: from,
            term: t,
        };
        match self.phase {
            Phase::Representative => {
                if Self::beats((t, h.node_id), (self.term, self.id)) {
                    // A newer representative (or the same term and a lower node id).
                    self.stand_down(now, them);
                    self.answer(from, h.sequence);
                } else {
                    // A stale one (returning old representative, the far side of a healed
                    // partition, a rival of our term with a higher id): tell it; it may have
                    // taken the port at the router (its rotation notice): take it back.
                    self.assert_against(now, h.node_id, from);
                }
            }
            Phase::TakingOver => {
                // A representative of the term we run for or a newer one (a rival completed
                // its takeover first), or the one we thought gone answering for the current
                // term (a false detection): stand down (claim 10), do not fight.
                if t >= self.term {
                    self.stand_down(now, them);
                    self.answer(from, h.sequence);
                } else {
                    self.stats.stale += 1;
                }
            }
            Phase::Stopped => {}
            Phase::Follower | Phase::BackingOff | Phase::Candidate | Phase::Yielded => {
                let current = self.leader.map_or(self.term, |l| l.term.max(self.term));
                let better = match self.leader {
                    Some(l) if t == l.term && l.node != h.node_id => h.node_id < l.node,
                    _ => t >= current,
                };
                // Two representatives at once: tell both about each other (after our own view
                // is updated, so that the burst's later copies still go).
                let other = self.leader.filter(|l| l.node != h.node_id);
                if !better {
                    self.stats.stale += 1;
                    if let Some(l) = other {
                        self.tell_both(now, l, them);
                    }
                    return;
                }
                self.term = self.term.max(t);
                if self.phase == Phase::Follower && self.leader.is_some_and(|l| l.node == h.node_id)
                {
                    if let Some(l) = &mut self.leader {
                        l.term = t;
                        l.addr = from;
                    }
                    self.alive_sign(now);
                } else {
                    self.become_follower(now, Some(them));
                }
                self.answer(from, h.sequence);
                if let Some(l) = other {
                    self.tell_both(now, l, them);
                }
            }
        }
    }

    /// A node heard another representative besides us; or (naming itself) a representative
    /// or candidate stood down for us.
    fn on_conflict(
        &mut self,
        now: Instant,
        from: SocketAddrV4,
        h: lanproto::Header,
        c: &lanproto::Conflict,
    ) {
        if c.node_id == self.id || self.phase != Phase::Representative {
            return;
        }
        if c.node_id == h.node_id {
            // It gave way to us: make sure the router maps the port to us (its stand-down
            // deletes its own mapping; its takeover may have deleted ours).
            if self.may(now, 0, c.node_id) {
                self.events.push_back(Event::Reclaim);
                self.set_timer(
                    Timer::Reverify,
                    now + self.cfg.inquiry_interval + self.cfg.collision_window,
                );
            }
            return;
        }
        // Every node sends from the protocol port: the other one listens on the same.
        let other = Leader {
            node: c.node_id,
            addr: SocketAddrV4::new(c.lan_addr, from.port()),
            term: c.term,
        };
        if Self::beats((c.term, c.node_id), (self.term, self.id)) {
            self.stand_down(now, other);
        } else {
            self.assert_against(now, other.node, other.addr);
        }
    }

    /// Emb. 2: answer the representative's inquiry with our ports, by unicast.
    fn answer(&mut self, to: SocketAddrV4, seq: u64) {
        if let Some(me) = self.me.clone() {
            self.send(
                Dest::Node(to),
                Body::InquiryAnswer(lanproto::InquiryAnswer {
                    acked_sequence: seq,
                    node: me,
                }),
            );
        }
    }

    fn on_answer(&mut self, now: Instant, from: SocketAddrV4, node: u64, info: &PortNotice) {
        if self.phase != Phase::Representative {
            return;
        }
        let changed = self.members.get(&node).is_none_or(|m| m.info != *info);
        self.members.insert(
            node,
            Member {
                addr: from,
                info: info.clone(),
                last_answer: now,
            },
        );
        if changed {
            self.events.push_back(Event::PeerAnswered {
                node,
                info: info.clone(),
            });
        }
    }

    fn on_byebye(&mut self, now: Instant, h: lanproto::Header) {
        if self.phase != Phase::Follower {
            return;
        }
        let ours = match self.leader {
            Some(l) => l.node == h.node_id && h.term >= l.term,
            None => h.term >= self.term,
        };
        if ours {
            self.term = self.term.max(h.term);
            self.representative_gone(now, GoneReason::ByeBye);
        }
    }

    fn on_candidacy(
        &mut self,
        now: Instant,
        from: SocketAddrV4,
        h: lanproto::Header,
        port: Option<u16>,
    ) {
        if h.term < self.term {
            // Runs for a term that is already taken.
            self.stats.stale += 1;
            if self.phase == Phase::Representative && self.may(now, 2, h.node_id) {
                self.send_inquiry_to(Dest::Node(from));
            }
            return;
        }
        let running_for = terms::next(h.term);
        self.last_candidacy = Some((h.node_id, running_for, now));
        match self.phase {
            Phase::Representative => {
                // We are alive: refute, to everyone (claim 14's inquiry doubles as heartbeat)
                // and to the candidate directly (a burst: it must hear us within its collision
                // window), and make sure a half-done takeover did not delete our mapping, now
                // and once more after the candidate would have finished. A candidate that has
                // seen a newer term than ours (we restarted and got the free port with a fresh
                // term) would ignore us: re-announce under a term above it.
                if !self.may(now, 2, h.node_id) {
                    return;
                }
                if h.term > self.term {
                    self.term = terms::next(h.term);
                    let notice = self.rotation_notice();
                    self.send(Dest::Group, notice);
                }
                self.send_inquiry_to(Dest::Group);
                let inquiry = self.inquiry();
                self.burst(now, Dest::Node(from), inquiry);
                self.events.push_back(Event::Verify);
                self.set_timer(
                    Timer::Reverify,
                    now + self.cfg.inquiry_interval + self.cfg.collision_window,
                );
            }
            Phase::Follower => {
                // Our representative is alive as far as we know; it will refute if it is.
            }
            Phase::BackingOff
                if self.collided_at.is_some_and(|c| {
                    now.saturating_duration_since(c) < self.cfg.collision_window
                }) =>
            {
                // Another candidacy of the burst we collided with: that collision already sent
                // us back to back off.
            }
            Phase::BackingOff => {
                // Claim 10: another candidacy arrived first: stand down.
                self.phase = Phase::Yielded;
                self.clear_timer(Timer::Candidacy);
                self.set_timer(Timer::Rotation, now + self.cfg.rotation_wait());
            }
            Phase::Candidate => {
                self.stats.collisions += 1;
                match self.cfg.succession {
                    Succession::Random => {
                        // Claim 10: collision inside the window: back off randomly again.
                        self.attempt += 1;
                        self.collided_at = Some(now);
                        self.clear_timer(Timer::Window);
                        self.back_off(now);
                    }
                    Succession::PortOrder | Succession::NodeValue => {
                        // Claims 11, 12: the fixed rule picks one.
                        let theirs = (self.rank_of(h.node_id, port), h.node_id);
                        let mine = (self.my_rank(), self.id);
                        if theirs < mine {
                            self.phase = Phase::Yielded;
                            self.clear_timer(Timer::Window);
                            self.set_timer(Timer::Rotation, now + self.cfg.rotation_wait());
                        } else if self.may(now, 3, h.node_id) {
                            self.send_candidacy(Dest::Node(from));
                        }
                    }
                }
            }
            Phase::Yielded => {
                self.set_timer(Timer::Rotation, now + self.cfg.rotation_wait());
            }
            Phase::TakingOver => {
                // Committed: tell the latecomer we already won (at most once per collision
                // window, so two committed rivals do not echo each other).
                let quiet = self.last_reply.is_none_or(|at| {
                    now.saturating_duration_since(at) >= self.cfg.collision_window
                });
                if running_for <= terms::next(self.term) && quiet {
                    self.last_reply = Some(now);
                    self.send_candidacy(Dest::Group);
                }
            }
            Phase::Stopped => {}
        }
    }

    fn inquiry(&self) -> Body {
        Body::Inquiry(lanproto::Inquiry {
            external_port: self.cfg.representative_port,
            external_addr: self.external_addr,
        })
    }

    fn send_inquiry_to(&mut self, to: Dest) {
        let inquiry = self.inquiry();
        self.send(to, inquiry);
    }
}

/// A fixed mixing function of the node id (claim 12's "server-specific value"), so that ids
/// that differ only in low bits still spread over the delays.
fn splitmix(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}
