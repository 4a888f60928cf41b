//! The representative election (camnode/src/election/), one node fed LAN messages from a few
//! peers (any datagram, or messages built with chosen terms and node ids), its timers, and
//! what the port manager reports back (took over, failed, lost the port, shutdown). Never a
//! panic, and after every step:
//! - the node's term never goes down;
//! - every message it sends emits to a datagram that parses back to it;
//! - its timers make progress: handling the due timer never leaves it due at the same instant
//!   forever (the driver would spin).
#![no_main]
use std::net::{Ipv4Addr, SocketAddrV4};
use std::time::{Duration, Instant};

use arbitrary::Arbitrary;
use camnode::election::{Election, Settings, Succession};
use libfuzzer_sys::fuzz_target;
use shared::lanproto::{self, Body, Header, PortNotice, Repr};

const ME: u64 = 0x1111;
const PEERS: [u64; 4] = [0x0001, 0x2222, 0xffff_ffff_ffff_fff0, ME];

#[derive(Arbitrary, Debug)]
enum Msg {
    Inquiry,
    Answer(u64),
    ByeBye,
    PresenceInquiry,
    PresenceAnswer(u64),
    Candidacy(Option<u16>),
    Rotation,
    Conflict { peer: u8, term: u8 },
}

#[derive(Arbitrary, Debug)]
enum Step {
    Raw {
        peer: u8,
        data: Vec<u8>,
    },
    Msg {
        peer: u8,
        seq: u8,
        term: u8,
        msg: Msg,
    },
    Timeout,
    AdvanceMs(u16),
    TookOver,
    TakeoverFailed,
    LostPort,
    Shutdown,
}

fn term_of(choice: u8, current: u64) -> u64 {
    match choice % 8 {
        0 => 0,
        1 => current,
        2 => current.saturating_add(1),
        3 => current.saturating_sub(1),
        4 => current.saturating_add(2),
        5 => u64::MAX,
        6 => u64::MAX - 1,
        _ => u64::from(choice),
    }
}

fn notice(i: u64) -> PortNotice {
    PortNotice {
        name: format!("camera {i}"),
        lan_addr: Ipv4Addr::new(192, 168, 1, 10 + (i % 200) as u8),
        internal_port: 8080,
        external_port: Some(8081 + (i % 8) as u16),
    }
}

fn addr(peer: u8) -> SocketAddrV4 {
    SocketAddrV4::new(Ipv4Addr::new(192, 168, 1, 20 + peer % 4), 17777)
}

fn body(m: &Msg, current: u64) -> Body {
    match m {
        Msg::Inquiry => Body::Inquiry(lanproto::Inquiry {
            external_port: 8080,
            external_addr: Some(Ipv4Addr::new(203, 0, 113, 2)),
        }),
        Msg::Answer(seq) => Body::InquiryAnswer(lanproto::InquiryAnswer {
            acked_sequence: *seq,
            node: notice(*seq),
        }),
        Msg::ByeBye => Body::ByeBye,
        Msg::PresenceInquiry => Body::PresenceInquiry,
        Msg::PresenceAnswer(seq) => Body::PresenceAnswer(lanproto::PresenceAnswer {
            acked_sequence: *seq,
        }),
        Msg::Candidacy(port) => Body::Candidacy(lanproto::Candidacy {
            external_port: port.filter(|p| *p != 0),
        }),
        Msg::Rotation => Body::RotationNotice(lanproto::RotationNotice {
            external_port: 8080,
            external_addr: None,
        }),
        Msg::Conflict { peer, term } => Body::Conflict(lanproto::Conflict {
            node_id: PEERS[usize::from(*peer) % PEERS.len()],
            term: term_of(*term, current),
            lan_addr: *addr(*peer).ip(),
        }),
    }
}

fuzz_target!(|input: (u8, Vec<Step>)| {
    let (setup, steps) = input;
    let settings = Settings {
        succession: [
            Succession::Random,
            Succession::PortOrder,
            Succession::NodeValue,
        ][usize::from(setup % 3)],
        ..Settings::default()
    };
    let t0 = Instant::now();
    let mut now = t0;
    let mut e = Election::new(settings, ME, u64::from(setup), now);
    e.set_self(notice(ME));
    let mut seqs = [0u64; PEERS.len()];
    let mut my_seq = 0;
    let mut term = e.term();
    for step in steps.iter().take(128) {
        match step {
            Step::Raw { peer, data } => {
                if let Ok(m) = Repr::parse(data) {
                    e.handle_message(now, addr(*peer), &m);
                }
            }
            Step::Msg {
                peer,
                seq,
                term: t,
                msg,
            } => {
                let i = usize::from(*peer) % PEERS.len();
                // Mostly in order; sometimes a duplicate or an old one.
                seqs[i] = match seq % 4 {
                    0 => seqs[i],
                    1 => seqs[i].saturating_sub(u64::from(*seq)),
                    _ => seqs[i] + 1,
                };
                let m = Repr {
                    header: Header {
                        node_id: PEERS[i],
                        sequence: seqs[i],
                        term: term_of(*t, e.term()),
                    },
                    body: body(msg, e.term()),
                };
                e.handle_message(now, addr(*peer), &m);
            }
            Step::Timeout => {
                if let Some(at) = e.poll_timeout() {
                    now = now.max(at);
                }
            }
            Step::AdvanceMs(ms) => now += Duration::from_millis(u64::from(*ms)),
            Step::TookOver => e.took_over(now),
            Step::TakeoverFailed => e.takeover_failed(now),
            Step::LostPort => e.lost_port(now),
            Step::Shutdown => e.shutdown(now),
        }
        // The driver: run what is due, until nothing is.
        let mut turns = 0;
        while e.poll_timeout().is_some_and(|at| at <= now) {
            e.handle_timeout(now);
            turns += 1;
            assert!(turns < 1000, "the timer stays due at {:?}", now - t0);
        }
        while let Some(t) = e.poll_transmit() {
            my_seq += 1;
            let m = Repr {
                header: Header {
                    node_id: ME,
                    sequence: my_seq,
                    term: t.term,
                },
                body: t.body,
            };
            assert_eq!(
                Repr::parse(&m.emit()).as_ref(),
                Ok(&m),
                "our message reads back"
            );
        }
        while e.poll_event().is_some() {}
        assert!(
            e.term() >= term,
            "term went down from {term} to {}",
            e.term()
        );
        term = e.term();
    }
});
