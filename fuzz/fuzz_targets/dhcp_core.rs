//! The DHCP server's core (router/src/dhcp/core.rs) fed a sequence of datagrams from a few LAN
//! clients, with time moving. Never a panic, and after every step:
//! - every reply re-parses to the message the server built (it reaches real clients);
//! - an address the server offers or acknowledges lies in the pool or is the client's
//!   reservation, never the server's own, the network or the broadcast address;
//! - an acknowledged address is held by the client it went to, and by no other at once;
//! - the counters add up (every datagram is received once).
#![no_main]
use std::net::Ipv4Addr;

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use router::dhcp::core::{LeaseState, Server, ServerConfig, client_key};
use router::dhcp::wire::{Message, MessageType, opt};

const SERVER: Ipv4Addr = homenet_fuzz::LAN_ADDR;
const MACS: [[u8; 6]; 4] = [
    [2, 0, 0, 0, 0, 1],
    [2, 0, 0, 0, 0, 2],
    [2, 0, 0, 0, 0, 3],
    [0xff; 6],
];
const RESERVED: Ipv4Addr = Ipv4Addr::new(192, 168, 1, 50);

/// One datagram, built from a few choices (so most steps reach the state machine), or raw.
#[derive(Arbitrary, Debug)]
enum Step {
    Msg {
        kind: u8,
        mac: u8,
        /// Option 61 instead of chaddr as the client key.
        client_id: Option<u8>,
        requested: Option<u8>,
        server_id: Option<u8>,
        ciaddr: Option<u8>,
        giaddr: Option<u8>,
        lease: Option<u32>,
        host_name: Option<Vec<u8>>,
        broadcast: bool,
        extra: Vec<(u8, Vec<u8>)>,
    },
    Raw(Vec<u8>),
    Advance(u32),
}

/// An address near the pool and the edges of the subnet.
fn addr(i: u8) -> Ipv4Addr {
    match i % 8 {
        0 => SERVER,
        1 => RESERVED,
        2 => Ipv4Addr::new(192, 168, 1, 255),
        3 => Ipv4Addr::new(192, 168, 1, 0),
        4 => Ipv4Addr::new(10, 0, 0, 1),
        5 => Ipv4Addr::UNSPECIFIED,
        _ => Ipv4Addr::new(192, 168, 1, 100 + i / 8),
    }
}

fn build(step: &Step) -> Option<Vec<u8>> {
    let Step::Msg {
        kind,
        mac,
        client_id,
        requested,
        server_id,
        ciaddr,
        giaddr,
        lease,
        host_name,
        broadcast,
        extra,
    } = step
    else {
        return None;
    };
    let kind = MessageType::from_u8(kind % 9).unwrap_or(MessageType::Discover);
    let mut m = Message::request(7, MACS[usize::from(*mac) % MACS.len()], kind);
    if let Some(c) = client_id {
        m.set_option(opt::CLIENT_ID, vec![0, *c]);
    }
    if let Some(r) = requested {
        m.set_option(opt::REQUESTED_IP, addr(*r).octets().to_vec());
    }
    if let Some(s) = server_id {
        m.set_option(opt::SERVER_ID, addr(*s).octets().to_vec());
    }
    if let Some(l) = lease {
        m.set_option(opt::LEASE_TIME, l.to_be_bytes().to_vec());
    }
    if let Some(h) = host_name {
        m.set_option(opt::HOST_NAME, h.clone());
    }
    for (code, v) in extra.iter().take(4) {
        m.set_option(*code, v.clone());
    }
    m.ciaddr = ciaddr.map_or(Ipv4Addr::UNSPECIFIED, addr);
    m.giaddr = giaddr.map_or(Ipv4Addr::UNSPECIFIED, addr);
    if *broadcast {
        m.flags |= router::dhcp::wire::FLAG_BROADCAST;
    }
    Some(m.emit())
}

fuzz_target!(|steps: Vec<Step>| {
    let mut cfg = ServerConfig::new(SERVER, 24);
    // A small pool, so it runs out.
    cfg.pool_start = Ipv4Addr::new(192, 168, 1, 100);
    cfg.pool_end = Ipv4Addr::new(192, 168, 1, 103);
    cfg.lease_time = 600;
    cfg.reservations = vec![(MACS[0], RESERVED)];
    let mut server = Server::new(cfg.clone());
    let mut now: u64 = 1_700_000_000;
    let mut received = 0;
    for step in steps.iter().take(64) {
        let data = match step {
            Step::Advance(s) => {
                now = now.saturating_add(u64::from(*s % 100_000));
                continue;
            }
            Step::Raw(bytes) => bytes.clone(),
            Step::Msg { .. } => build(step).expect("a message"),
        };
        received += 1;
        let request = Message::parse(&data).ok();
        let Some(reply) = server.handle(now, &data) else {
            continue;
        };
        let request = request.expect("a reply answers a parsed request");
        let bytes = reply.message.emit();
        assert_eq!(Message::parse(&bytes).as_ref(), Ok(&reply.message));
        let kind = reply.message.message_type();
        let yiaddr = reply.message.yiaddr;
        if matches!(kind, Some(MessageType::Offer))
            || (kind == Some(MessageType::Ack) && reply.commit)
        {
            let reserved = cfg
                .reservations
                .iter()
                .any(|(m, a)| Some(*m) == request.mac() && *a == yiaddr);
            assert!(
                cfg.in_subnet(yiaddr),
                "{yiaddr} is not a host address of the LAN"
            );
            let in_pool = (cfg.pool_start..=cfg.pool_end).contains(&yiaddr);
            assert!(
                in_pool || reserved,
                "{yiaddr} outside the pool, not reserved"
            );
            assert!(
                reserved || !cfg.reservations.iter().any(|(_, a)| *a == yiaddr),
                "{yiaddr} is another client's reservation"
            );
        }
        if kind == Some(MessageType::Ack) && reply.commit {
            let key = client_key(&request);
            let holder = server
                .leases()
                .find(|l| l.addr == yiaddr)
                .expect("the acknowledged address has a record");
            assert_eq!(holder.state, LeaseState::Bound);
            assert_eq!(
                holder.client, key,
                "{yiaddr} acknowledged to another client"
            );
            assert!(holder.active(now));
        }
    }
    assert_eq!(server.counters().received, received);
});
