//! The server core with a virtual clock (plain `u64` seconds): one behaviour per test.

use std::net::Ipv4Addr;

use rand::{Rng, SeedableRng};

use super::core::{DECLINE_HOLD_SECS, OFFER_HOLD_SECS};
use super::wire::{Message, MessageType, opt};
use super::*;

mod pressure;

const SERVER: Ipv4Addr = Ipv4Addr::new(192, 168, 1, 1);
const T0: u64 = 1_700_000_000;

fn server() -> Server {
    Server::new(ServerConfig::new(SERVER, 24))
}

fn mac(n: u8) -> [u8; 6] {
    [0x02, 0x4c, 0x41, 0x42, 0, n]
}

fn msg(n: u8, kind: MessageType) -> Message {
    Message::request(0x1000 + u32::from(n), mac(n), kind)
}

fn ip(last: u8) -> Ipv4Addr {
    Ipv4Addr::new(192, 168, 1, last)
}

/// Sends through the byte path (emit, then parse in the server).
fn send(s: &mut Server, now: u64, m: &Message) -> Option<Reply> {
    s.handle(now, &m.emit())
}

fn kind(r: &Reply) -> MessageType {
    r.message.message_type().expect("reply has a type")
}

/// DISCOVER -> OFFER -> REQUEST (selecting) -> ACK. Returns the address.
fn lease(s: &mut Server, now: u64, n: u8) -> Ipv4Addr {
    let offer = send(s, now, &msg(n, MessageType::Discover)).expect("offer");
    assert_eq!(kind(&offer), MessageType::Offer);
    let mut req = msg(n, MessageType::Request);
    req.set_option(opt::SERVER_ID, SERVER.octets().to_vec());
    req.set_option(opt::REQUESTED_IP, offer.message.yiaddr.octets().to_vec());
    let ack = send(s, now, &req).expect("ack");
    assert_eq!(kind(&ack), MessageType::Ack);
    assert_eq!(ack.message.yiaddr, offer.message.yiaddr);
    ack.message.yiaddr
}

fn renew(s: &mut Server, now: u64, n: u8, addr: Ipv4Addr) -> Option<Reply> {
    let mut req = msg(n, MessageType::Request);
    req.ciaddr = addr;
    send(s, now, &req)
}

#[test]
fn discover_offer_request_ack() {
    let mut s = server();
    let offer = send(&mut s, T0, &msg(1, MessageType::Discover)).unwrap();
    assert_eq!(kind(&offer), MessageType::Offer);
    assert_eq!(offer.message.yiaddr, ip(100));
    assert_eq!(offer.to, Destination::Broadcast);
    assert_eq!(offer.message.xid, 0x1001);
    assert_eq!(offer.message.op, wire::BOOTREPLY);
    assert_eq!(offer.message.server_id(), Some(SERVER));
    assert_eq!(
        offer.message.option(opt::SUBNET_MASK),
        Some(&[255, 255, 255, 0][..])
    );
    assert_eq!(
        offer.message.option(opt::ROUTER),
        Some(&SERVER.octets()[..])
    );
    assert_eq!(offer.message.lease_time(), Some(43_200));
    assert_eq!(
        offer.message.option(opt::RENEWAL_T1),
        Some(&21_600u32.to_be_bytes()[..])
    );
    assert_eq!(
        offer.message.option(opt::REBINDING_T2),
        Some(&37_800u32.to_be_bytes()[..])
    );
    assert!(
        offer.message.option(opt::DNS).is_none(),
        "no DNS configured"
    );
    // A second client gets the next address while the first offer is held.
    let other = send(&mut s, T0, &msg(2, MessageType::Discover)).unwrap();
    assert_eq!(other.message.yiaddr, ip(101));

    let a = lease(&mut s, T0, 1);
    assert_eq!(a, ip(100));
    let st = s.status(T0);
    let l = st.iter().find(|l| l.addr == a).unwrap();
    assert_eq!(l.state, LeaseState::Bound);
    assert_eq!(l.expires_in, 43_200);
    assert_eq!(l.mac.as_deref(), Some("02:4c:41:42:00:01"));
    assert!(s.take_dirty());
    let c = s.counters();
    assert_eq!((c.received, c.offered, c.acked), (4, 3, 1));
}

#[test]
fn broadcast_flag_and_relay_and_ciaddr_destinations() {
    let mut s = server();
    let mut d = msg(1, MessageType::Discover);
    d.flags = wire::FLAG_BROADCAST;
    let r = send(&mut s, T0, &d).unwrap();
    assert_eq!(r.to, Destination::Broadcast);
    assert_eq!(r.message.flags, wire::FLAG_BROADCAST);
    let mut d = msg(2, MessageType::Discover);
    d.giaddr = ip(2);
    d.hops = 1;
    let r = send(&mut s, T0, &d).unwrap();
    assert_eq!(r.to, Destination::Relay(ip(2)));
    let mut d = msg(3, MessageType::Discover);
    d.giaddr = Ipv4Addr::new(10, 0, 0, 1);
    assert!(send(&mut s, T0, &d).is_none());
    assert_eq!(s.counters().drop_count(DropReason::ForeignRelay), 1);
}

#[test]
fn renew_and_rebind_extend_the_lease() {
    let mut s = server();
    let a = lease(&mut s, T0, 1);
    // RENEWING at T1: unicast REQUEST with ciaddr, no server id, no requested IP.
    let t1 = T0 + 21_600;
    let ack = renew(&mut s, t1, 1, a).unwrap();
    assert_eq!(kind(&ack), MessageType::Ack);
    assert_eq!(ack.message.yiaddr, a);
    assert_eq!(ack.message.ciaddr, a);
    assert_eq!(ack.to, Destination::Unicast(a));
    assert_eq!(s.status(t1)[0].expires_in, 43_200);
    // REBINDING at T2 looks the same on the wire (broadcast); answered the same way.
    let t2 = t1 + 37_800;
    let mut req = msg(1, MessageType::Request);
    req.ciaddr = a;
    req.flags = wire::FLAG_BROADCAST;
    let ack = send(&mut s, t2, &req).unwrap();
    assert_eq!(kind(&ack), MessageType::Ack);
    assert_eq!(ack.to, Destination::Unicast(a));
    assert_eq!(s.status(t2)[0].expires_at, t2 + 43_200);
    // Someone else's address cannot be renewed.
    let nak = renew(&mut s, t2, 2, a).unwrap();
    assert_eq!(kind(&nak), MessageType::Nak);
    assert_eq!(nak.to, Destination::Broadcast);
    assert_eq!(nak.message.yiaddr, Ipv4Addr::UNSPECIFIED);
}

#[test]
fn expiry_and_reuse() {
    let mut cfg = ServerConfig::new(SERVER, 24);
    cfg.pool_start = ip(100);
    cfg.pool_end = ip(101);
    let mut s = Server::new(cfg);
    let a = lease(&mut s, T0, 1);
    let b = lease(&mut s, T0, 2);
    assert_eq!((a, b), (ip(100), ip(101)));
    // Full: a third client gets nothing until a lease runs out.
    assert!(send(&mut s, T0 + 100, &msg(3, MessageType::Discover)).is_none());
    assert_eq!(s.counters().drop_count(DropReason::PoolExhausted), 1);
    let later = T0 + 43_200;
    // Client 2 renewed in time; client 1 did not.
    renew(&mut s, later - 10, 2, b).unwrap();
    let c = lease(&mut s, later, 3);
    assert_eq!(c, a, "the expired address is reused");
    // Client 1 comes back: its address is gone, and there is nothing left.
    assert_eq!(kind(&renew(&mut s, later, 1, a).unwrap()), MessageType::Nak);
    assert!(send(&mut s, later, &msg(1, MessageType::Discover)).is_none());
}

#[test]
fn expired_client_gets_its_old_address_back() {
    let mut s = server();
    let a = lease(&mut s, T0, 1);
    let _ = lease(&mut s, T0, 2);
    let later = T0 + 100_000;
    assert_eq!(lease(&mut s, later, 1), a);
}

#[test]
fn release_frees_and_remembers() {
    let mut s = server();
    let a = lease(&mut s, T0, 1);
    s.take_dirty();
    let mut rel = msg(1, MessageType::Release);
    rel.ciaddr = a;
    rel.set_option(opt::SERVER_ID, SERVER.octets().to_vec());
    assert!(send(&mut s, T0 + 5, &rel).is_none());
    assert_eq!(s.counters().released, 1);
    assert!(s.take_dirty());
    assert_eq!(s.status(T0 + 5)[0].state, LeaseState::Released);
    assert_eq!(s.bound_count(T0 + 5), 0);
    // A release from another client, or for a free address, does nothing.
    let mut rel2 = msg(2, MessageType::Release);
    rel2.ciaddr = a;
    assert!(send(&mut s, T0 + 6, &rel2).is_none());
    assert_eq!(s.counters().drop_count(DropReason::NotHolder), 1);
    // The client comes back to the same address.
    assert_eq!(lease(&mut s, T0 + 10, 1), a);
}

#[test]
fn decline_marks_the_address_unusable_for_a_while() {
    let mut s = Server::new(ServerConfig {
        pool_end: ip(102),
        ..ServerConfig::new(SERVER, 24)
    });
    let a = lease(&mut s, T0, 1);
    let mut dec = msg(1, MessageType::Decline);
    dec.set_option(opt::SERVER_ID, SERVER.octets().to_vec());
    dec.set_option(opt::REQUESTED_IP, a.octets().to_vec());
    assert!(send(&mut s, T0 + 1, &dec).is_none());
    assert_eq!(s.counters().declined, 1);
    // The client starts over and gets another address; so does anyone else.
    let b = lease(&mut s, T0 + 2, 1);
    assert_ne!(b, a);
    let c = lease(&mut s, T0 + 2, 2);
    assert_ne!(c, a);
    assert!(
        s.status(T0 + 2)
            .iter()
            .any(|l| l.addr == a && l.state == LeaseState::Declined)
    );
    // A client cannot decline an address that is not its own.
    let mut dec = msg(3, MessageType::Decline);
    dec.set_option(opt::REQUESTED_IP, c.octets().to_vec());
    assert!(send(&mut s, T0 + 3, &dec).is_none());
    assert_eq!(s.counters().drop_count(DropReason::NotHolder), 1);
    // The pool is full until the hold ends; then the address is back.
    assert!(send(&mut s, T0 + 4, &msg(4, MessageType::Discover)).is_none());
    let late = T0 + 2 + DECLINE_HOLD_SECS;
    let offer = send(&mut s, late, &msg(4, MessageType::Discover)).unwrap();
    assert_eq!(offer.message.yiaddr, a);
}

#[test]
fn reservations_by_mac() {
    let mut cfg = ServerConfig::new(SERVER, 24);
    cfg.reservations = vec![(mac(7), ip(10)), (mac(8), ip(150))];
    let mut s = Server::new(cfg);
    // Outside the pool, for its MAC only.
    assert_eq!(lease(&mut s, T0, 7), ip(10));
    // A reserved pool address is never given to anyone else.
    let mut cfg2 = ServerConfig::new(SERVER, 24);
    cfg2.pool_start = ip(150);
    cfg2.pool_end = ip(151);
    cfg2.reservations = vec![(mac(8), ip(150))];
    let mut s2 = Server::new(cfg2);
    assert_eq!(lease(&mut s2, T0, 1), ip(151));
    assert!(send(&mut s2, T0, &msg(2, MessageType::Discover)).is_none());
    assert_eq!(lease(&mut s2, T0, 8), ip(150));
    // A client asking for someone's reserved address (INIT-REBOOT) is refused.
    let mut req = msg(3, MessageType::Request);
    req.set_option(opt::REQUESTED_IP, ip(10).octets().to_vec());
    assert_eq!(kind(&send(&mut s, T0, &req).unwrap()), MessageType::Nak);
    // The reserved client renewing a pool address it had before is moved (NAK).
    assert_eq!(
        kind(&renew(&mut s, T0, 8, ip(100)).unwrap()),
        MessageType::Nak
    );
    // Even with a client id, the reservation follows the MAC.
    let mut d = msg(7, MessageType::Discover);
    d.set_option(opt::CLIENT_ID, vec![0xff, 1, 2, 3]);
    assert_eq!(send(&mut s, T0, &d).unwrap().message.yiaddr, ip(10));
}

#[test]
fn pool_exhaustion_is_counted() {
    let mut cfg = ServerConfig::new(SERVER, 24);
    cfg.pool_start = ip(100);
    cfg.pool_end = ip(102);
    let mut s = Server::new(cfg);
    for n in 1..=3 {
        lease(&mut s, T0, n);
    }
    for n in 4..=6 {
        assert!(send(&mut s, T0, &msg(n, MessageType::Discover)).is_none());
    }
    assert_eq!(s.counters().drop_count(DropReason::PoolExhausted), 3);
    // An un-REQUESTed offer frees its address after the hold.
    let mut s = Server::new(ServerConfig {
        pool_end: ip(100),
        ..ServerConfig::new(SERVER, 24)
    });
    assert!(send(&mut s, T0, &msg(1, MessageType::Discover)).is_some());
    assert!(send(&mut s, T0 + 1, &msg(2, MessageType::Discover)).is_none());
    let r = send(&mut s, T0 + OFFER_HOLD_SECS, &msg(2, MessageType::Discover)).unwrap();
    assert_eq!(r.message.yiaddr, ip(100));
}

#[test]
fn request_for_another_server_is_ignored_and_frees_the_offer() {
    let mut s = server();
    let offer = send(&mut s, T0, &msg(1, MessageType::Discover)).unwrap();
    let mut req = msg(1, MessageType::Request);
    req.set_option(opt::SERVER_ID, vec![192, 168, 1, 254]);
    req.set_option(opt::REQUESTED_IP, offer.message.yiaddr.octets().to_vec());
    assert!(send(&mut s, T0, &req).is_none());
    assert_eq!(s.counters().drop_count(DropReason::OtherServer), 1);
    // The held address goes to the next client.
    let o2 = send(&mut s, T0, &msg(2, MessageType::Discover)).unwrap();
    assert_eq!(o2.message.yiaddr, offer.message.yiaddr);
    // DECLINE and RELEASE for another server are ignored too.
    let mut rel = msg(2, MessageType::Release);
    rel.set_option(opt::SERVER_ID, vec![10, 0, 0, 1]);
    assert!(send(&mut s, T0, &rel).is_none());
    assert_eq!(s.counters().drop_count(DropReason::OtherServer), 2);
}

#[test]
fn selecting_a_wrong_address_is_nakked() {
    let mut s = server();
    let _ = lease(&mut s, T0, 1);
    let mut req = msg(2, MessageType::Request);
    req.set_option(opt::SERVER_ID, SERVER.octets().to_vec());
    req.set_option(opt::REQUESTED_IP, ip(100).octets().to_vec());
    let nak = send(&mut s, T0, &req).unwrap();
    assert_eq!(kind(&nak), MessageType::Nak);
    assert_eq!(nak.message.server_id(), Some(SERVER));
    assert!(nak.message.lease_time().is_none());
    assert_eq!(s.counters().nacked, 1);
}

#[test]
fn init_reboot() {
    let mut s = server();
    let a = lease(&mut s, T0, 1);
    let reboot = |n: u8, addr: Ipv4Addr| {
        let mut m = msg(n, MessageType::Request);
        m.set_option(opt::REQUESTED_IP, addr.octets().to_vec());
        m
    };
    // Its own address: confirmed.
    let r = send(&mut s, T0 + 60, &reboot(1, a)).unwrap();
    assert_eq!(kind(&r), MessageType::Ack);
    assert_eq!(r.message.yiaddr, a);
    assert_eq!(r.to, Destination::Broadcast);
    // An address from another network (the client moved): NAK, broadcast.
    let r = send(&mut s, T0 + 60, &reboot(2, Ipv4Addr::new(10, 0, 0, 5))).unwrap();
    assert_eq!(kind(&r), MessageType::Nak);
    assert_eq!(r.to, Destination::Broadcast);
    // Someone else's address: NAK.
    let r = send(&mut s, T0 + 60, &reboot(2, a)).unwrap();
    assert_eq!(kind(&r), MessageType::Nak);
    // Our own address, the network or broadcast address: NAK.
    for bad in [SERVER, ip(0), ip(255)] {
        let r = send(&mut s, T0 + 60, &reboot(3, bad)).unwrap();
        assert_eq!(kind(&r), MessageType::Nak, "{bad}");
    }
    // A free pool address we have no record of (our lease file was lost): confirmed, since
    // we are the only server on this LAN.
    let r = send(&mut s, T0 + 60, &reboot(4, ip(150))).unwrap();
    assert_eq!(kind(&r), MessageType::Ack);
    // Outside the pool, inside the subnet, no reservation: NAK.
    let r = send(&mut s, T0 + 60, &reboot(5, ip(20))).unwrap();
    assert_eq!(kind(&r), MessageType::Nak);
}

#[test]
fn host_name_client_id_and_parameter_list() {
    let mut cfg = ServerConfig::new(SERVER, 24);
    cfg.dns = vec![Ipv4Addr::new(9, 9, 9, 9)];
    cfg.domain = Some("home.arpa".into());
    let mut s = Server::new(cfg);
    let mut d = msg(1, MessageType::Discover);
    d.set_option(opt::HOST_NAME, b"cam 1;rm".to_vec());
    d.set_option(opt::CLIENT_ID, vec![1, 2, 0x4c, 0x41, 0x42, 0, 1]);
    d.set_option(opt::PARAM_REQUEST, vec![15, 6, 3, 1, 42, 28]);
    let offer = send(&mut s, T0, &d).unwrap();
    // Requested options in the client's order after the required ones; unknown 42 skipped.
    let codes: Vec<u8> = offer.message.options.iter().map(|(c, _)| *c).collect();
    assert_eq!(
        codes,
        vec![
            opt::MESSAGE_TYPE,
            opt::SERVER_ID,
            opt::LEASE_TIME,
            opt::RENEWAL_T1,
            opt::REBINDING_T2,
            15,
            6,
            3,
            1,
            28,
            opt::CLIENT_ID
        ]
    );
    assert_eq!(offer.message.option(15), Some(&b"home.arpa"[..]));
    assert_eq!(offer.message.client_id(), d.client_id());
    // The host name is recorded, made printable.
    let mut req = d.clone();
    req.set_option(opt::MESSAGE_TYPE, vec![MessageType::Request as u8]);
    req.set_option(opt::SERVER_ID, SERVER.octets().to_vec());
    req.set_option(opt::REQUESTED_IP, offer.message.yiaddr.octets().to_vec());
    send(&mut s, T0, &req).unwrap();
    assert_eq!(s.status(T0)[0].host_name.as_deref(), Some("cam1rm"));
    assert_eq!(
        s.status(T0)[0].client_id,
        "0102 4c41 4200 01".replace(' ', "")
    );
    // The client id, not the MAC, is the key: the same MAC with another id is another client.
    let mut d2 = msg(1, MessageType::Discover);
    d2.set_option(opt::CLIENT_ID, vec![0xff, 9, 9]);
    let o2 = send(&mut s, T0, &d2).unwrap();
    assert_ne!(o2.message.yiaddr, offer.message.yiaddr);
    // A renew without option 12 keeps the recorded name.
    let mut r = d.clone();
    r.options.retain(|(c, _)| *c != opt::HOST_NAME);
    r.set_option(opt::MESSAGE_TYPE, vec![MessageType::Request as u8]);
    r.ciaddr = offer.message.yiaddr;
    assert_eq!(kind(&send(&mut s, T0 + 20, &r).unwrap()), MessageType::Ack);
    let st = s.status(T0 + 20);
    let l = st.iter().find(|l| l.addr == offer.message.yiaddr).unwrap();
    assert_eq!(l.host_name.as_deref(), Some("cam1rm"));
}

#[test]
fn inform_gets_options_without_a_lease() {
    let mut s = server();
    let mut m = msg(1, MessageType::Inform);
    m.ciaddr = ip(50);
    let r = send(&mut s, T0, &m).unwrap();
    assert_eq!(kind(&r), MessageType::Ack);
    assert_eq!(r.to, Destination::Unicast(ip(50)));
    assert_eq!(r.message.yiaddr, Ipv4Addr::UNSPECIFIED);
    assert_eq!(r.message.ciaddr, ip(50));
    assert!(r.message.lease_time().is_none());
    assert!(r.message.option(opt::ROUTER).is_some());
    assert_eq!(s.counters().informed, 1);
    assert_eq!(s.status(T0).len(), 0);
}

#[test]
fn persistence_round_trip() {
    let mut s = server();
    let a = lease(&mut s, T0, 1);
    let mut d = msg(2, MessageType::Discover);
    d.set_option(opt::HOST_NAME, b"viewer".to_vec());
    d.set_option(opt::CLIENT_ID, vec![1, 2, 3]);
    send(&mut s, T0, &d).unwrap();
    let mut r = d.clone();
    r.set_option(opt::MESSAGE_TYPE, vec![MessageType::Request as u8]);
    r.set_option(opt::REQUESTED_IP, ip(101).octets().to_vec());
    send(&mut s, T0, &r).unwrap();
    let _offer_only = send(&mut s, T0, &msg(3, MessageType::Discover)).unwrap();
    let mut dec = msg(4, MessageType::Discover);
    let o = send(&mut s, T0, &dec).unwrap();
    dec.set_option(opt::MESSAGE_TYPE, vec![MessageType::Decline as u8]);
    dec.set_option(opt::REQUESTED_IP, o.message.yiaddr.octets().to_vec());
    send(&mut s, T0, &dec);

    let text = persist::save(s.leases(), T0 + 1);
    let loaded = persist::load(&text).unwrap();
    assert_eq!(
        loaded.len(),
        3,
        "two bindings and a decline; not the offer:\n{text}"
    );
    let mut s2 = server();
    assert_eq!(s2.restore(T0 + 1, loaded), 3);
    assert_eq!(s2.status(T0 + 1), {
        let mut st = s.status(T0 + 1);
        st.retain(|l| l.state != LeaseState::Offered);
        st
    });
    // The restored clients renew; a stranger cannot take their addresses.
    assert_eq!(
        kind(&renew(&mut s2, T0 + 100, 1, a).unwrap()),
        MessageType::Ack
    );
    assert_eq!(
        kind(&renew(&mut s2, T0 + 100, 9, ip(101)).unwrap()),
        MessageType::Nak
    );
    // Garbage is refused with a line number, never a panic.
    for bad in [
        "",
        "hnib-dhcp-leases 2\n",
        "hnib-dhcp-leases 1\n192.168.1.5 bound 1 - 0102 x y\n",
        "hnib-dhcp-leases 1\n192.168.1.5 bound x - 0102 -\n",
        "hnib-dhcp-leases 1\n192.168.1.5 bound 1 zz - -\n",
        "hnib-dhcp-leases 1\n192.168.1.5 bound 1 - 0g -\n",
        "hnib-dhcp-leases 1\n192.168.1.5 bound 1 - - -\n",
        "hnib-dhcp-leases 1\n192.168.1.5 bound 1 - 01 a b\n",
    ] {
        assert!(persist::load(bad).is_err(), "{bad:?}");
    }
    // Records outside the pool are skipped on restore.
    let mut s3 = Server::new(ServerConfig {
        pool_start: ip(200),
        pool_end: ip(210),
        ..ServerConfig::new(SERVER, 24)
    });
    assert_eq!(s3.restore(T0, persist::load(&text).unwrap()), 0);
}

#[test]
fn malformed_datagrams_are_counted() {
    let mut s = server();
    let good = msg(1, MessageType::Discover).emit();
    assert!(s.handle(T0, &good[..100]).is_none());
    let mut bad = good.clone();
    bad[236] = 0;
    assert!(s.handle(T0, &bad).is_none());
    let mut bad = good[..240].to_vec();
    bad.extend_from_slice(&[53, 1, 1, 12, 50, b'x']);
    assert!(s.handle(T0, &bad).is_none());
    let mut reply = msg(1, MessageType::Discover);
    reply.op = wire::BOOTREPLY;
    assert!(send(&mut s, T0, &reply).is_none());
    let mut no_type = msg(1, MessageType::Discover);
    no_type.options.clear();
    assert!(send(&mut s, T0, &no_type).is_none());
    assert!(send(&mut s, T0, &msg(1, MessageType::Offer)).is_none());
    // REQUEST with nothing that tells its state.
    assert!(send(&mut s, T0, &msg(1, MessageType::Request)).is_none());
    let c = s.counters();
    assert_eq!(c.drop_count(DropReason::Truncated), 1);
    assert_eq!(c.drop_count(DropReason::BadCookie), 1);
    assert_eq!(c.drop_count(DropReason::BadOption), 1);
    assert_eq!(c.drop_count(DropReason::NotRequest), 1);
    assert_eq!(c.drop_count(DropReason::BadMessageType), 2);
    assert_eq!(c.drop_count(DropReason::BadRequest), 1);
    assert_eq!(c.received, 7);
    assert_eq!(c.offered + c.acked + c.nacked, 0);
}

/// Random bytes, and random mutations of valid messages: never a panic, and every datagram is
/// either answered or counted as dropped.
#[test]
fn random_bytes_never_panic() {
    let mut rng = rand::rngs::SmallRng::seed_from_u64(7);
    let mut s = server();
    let templates: Vec<Vec<u8>> = [
        MessageType::Discover,
        MessageType::Request,
        MessageType::Decline,
        MessageType::Release,
        MessageType::Inform,
    ]
    .iter()
    .map(|k| {
        let mut m = msg(1, *k);
        m.set_option(opt::PARAM_REQUEST, vec![1, 3, 6]);
        m.set_option(opt::REQUESTED_IP, ip(100).octets().to_vec());
        m.emit()
    })
    .collect();
    let mut answered = 0u64;
    let n = 20_000u64;
    for i in 0..n {
        let buf: Vec<u8> = if i % 2 == 0 {
            let len = rng.random_range(0..700);
            (0..len).map(|_| rng.random()).collect()
        } else {
            let mut b = templates[rng.random_range(0..templates.len())].clone();
            for _ in 0..rng.random_range(1..8) {
                let at = rng.random_range(0..b.len());
                b[at] = rng.random();
            }
            let cut = rng.random_range(200..=b.len());
            b.truncate(cut);
            b
        };
        if s.handle(T0 + i / 100, &buf).is_some() {
            answered += 1;
        }
    }
    let c = s.counters();
    assert_eq!(c.received, n);
    assert_eq!(
        c.dropped_total() + answered + c.declined + c.released,
        n,
        "{c:?}"
    );
    assert!(c.dropped_total() > n / 2, "{c:?}");
}

#[test]
fn config_section_validation_names_fields() {
    let lan = Some((SERVER, 24));
    let ok = DhcpSection::default();
    assert!(ok.validate(lan).is_ok());
    let c = ok.to_server_config(SERVER, 24).unwrap();
    assert_eq!(
        (c.pool_start, c.pool_end, c.lease_time),
        (ip(100), ip(199), 43_200)
    );
    let cases: Vec<(DhcpSection, &str)> = vec![
        (
            DhcpSection {
                pool_start: Some("x".into()),
                ..Default::default()
            },
            "pool_start",
        ),
        (
            DhcpSection {
                pool_start: Some("10.0.0.1".into()),
                ..Default::default()
            },
            "pool_start",
        ),
        (
            DhcpSection {
                pool_start: Some("192.168.1.150".into()),
                pool_end: Some("192.168.1.120".into()),
                ..Default::default()
            },
            "pool_end",
        ),
        (
            DhcpSection {
                lease_time: Some(5),
                ..Default::default()
            },
            "lease_time",
        ),
        (
            DhcpSection {
                dns_servers: Some(vec!["1.1.1.1".into(), "nope".into()]),
                ..Default::default()
            },
            "dns_servers[1]",
        ),
        (
            DhcpSection {
                domain_name: Some("bad domain".into()),
                ..Default::default()
            },
            "domain_name",
        ),
        (
            DhcpSection {
                reservations: vec![ReservationEntry {
                    mac: "02:00".into(),
                    addr: "192.168.1.5".into(),
                }],
                ..Default::default()
            },
            "reservation[0].mac",
        ),
        (
            DhcpSection {
                reservations: vec![ReservationEntry {
                    mac: "02:00:00:00:00:01".into(),
                    addr: "192.168.2.5".into(),
                }],
                ..Default::default()
            },
            "reservation[0].addr",
        ),
        (
            DhcpSection {
                reservations: vec![
                    ReservationEntry {
                        mac: "02:00:00:00:00:01".into(),
                        addr: "192.168.1.5".into(),
                    },
                    ReservationEntry {
                        mac: "02:00:00:00:00:02".into(),
                        addr: "192.168.1.5".into(),
                    },
                ],
                ..Default::default()
            },
            "reservation[1].addr",
        ),
    ];
    for (sec, field) in cases {
        let (f, _, fix) = sec.validate(lan).unwrap_err();
        assert_eq!(f, field);
        assert!(!fix.is_empty());
    }
    // Without the LAN address only the syntax is checked.
    let outside = DhcpSection {
        pool_start: Some("10.0.0.1".into()),
        ..Default::default()
    };
    assert!(outside.validate(None).is_ok());
    assert_eq!(
        core::default_pool(Ipv4Addr::new(10, 0, 0, 1), 28),
        (Ipv4Addr::new(10, 0, 0, 1), Ipv4Addr::new(10, 0, 0, 14))
    );
}

/// Which replies commit the server to a binding (and so wait for the lease file), and which
/// changes mark the table dirty. An OFFER may change the table (a DISCOVER drops the client's
/// records at other addresses) but never needs durability (RFC 2131 §4.3.1).
#[test]
fn only_binding_acks_commit() {
    let mut cfg = ServerConfig::new(SERVER, 24);
    cfg.reservations = vec![(mac(7), ip(10))];
    let mut s = Server::new(cfg);
    let offer = send(&mut s, T0, &msg(1, MessageType::Discover)).unwrap();
    assert!(!offer.commit);
    assert!(!s.take_dirty(), "an offer alone is not saved");
    let mut req = msg(1, MessageType::Request);
    req.set_option(opt::SERVER_ID, SERVER.octets().to_vec());
    req.set_option(opt::REQUESTED_IP, offer.message.yiaddr.octets().to_vec());
    let ack = send(&mut s, T0, &req).unwrap();
    assert_eq!(kind(&ack), MessageType::Ack);
    assert!(ack.commit);
    assert!(s.take_dirty());
    // The same REQUEST again in the same second: an ACK that commits, but nothing new to save.
    let again = send(&mut s, T0, &req).unwrap();
    assert!(again.commit);
    assert!(!s.take_dirty());
    // A renewal a second later extends the binding: dirty again.
    let renewed = renew(&mut s, T0 + 1, 1, offer.message.yiaddr).unwrap();
    assert!(renewed.commit);
    assert!(s.take_dirty());
    // NAK and INFORM's ACK promise no binding.
    let nak = renew(&mut s, T0 + 1, 2, offer.message.yiaddr).unwrap();
    assert_eq!(kind(&nak), MessageType::Nak);
    assert!(!nak.commit);
    let mut inf = msg(3, MessageType::Inform);
    inf.ciaddr = ip(50);
    assert!(!send(&mut s, T0 + 1, &inf).unwrap().commit);
    assert!(!s.take_dirty());
    // A client with a pool lease from before its reservation (restored from the file): its
    // DISCOVER is offered the reserved address and drops the old record. Dirty, no commit.
    let key = {
        let mut k = vec![1];
        k.extend_from_slice(&mac(7));
        k
    };
    s.restore(
        T0,
        vec![Lease {
            addr: ip(150),
            client: key,
            mac: Some(mac(7)),
            host_name: None,
            expires: T0 + 100,
            state: LeaseState::Bound,
        }],
    );
    let offer = send(&mut s, T0 + 2, &msg(7, MessageType::Discover)).unwrap();
    assert_eq!(offer.message.yiaddr, ip(10));
    assert!(!offer.commit);
    assert!(s.take_dirty());
}

/// The service on loopback, as `tests/dhcp_service.rs` drives it, with the lease-file writes
/// observable (`lease_writes`, `acks_held`) and stallable (`Shared::save_gate`).
mod service {
    use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
    use std::path::{Path, PathBuf};
    use std::sync::Arc;
    use std::time::Duration;

    use tokio::net::UdpSocket;

    use super::super::wire::{Message, MessageType};
    use super::super::{DhcpConfig, DhcpHandle, DhcpService, LEASE_FILE, ServerConfig};
    use crate::upnp::{Clock, ManualClock};

    const SERVER: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 1);
    const WAIT: Duration = Duration::from_secs(10);

    /// A fresh directory, removed on drop.
    struct Dir(PathBuf);

    impl Dir {
        fn new(tag: &str) -> Dir {
            let p = std::env::temp_dir().join(format!(
                "dhcp-commit-{tag}-{}-{}",
                std::process::id(),
                rand::random::<u32>()
            ));
            let _ = std::fs::remove_dir_all(&p);
            Dir(p)
        }
        fn file(&self) -> String {
            std::fs::read_to_string(self.0.join(LEASE_FILE)).unwrap_or_default()
        }
    }

    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    struct Running {
        handle: DhcpHandle,
        stop: tokio::sync::oneshot::Sender<()>,
        task: tokio::task::JoinHandle<()>,
        to: SocketAddr,
    }

    impl Running {
        async fn stop(self) {
            let _ = self.stop.send(());
            tokio::time::timeout(WAIT, self.task)
                .await
                .expect("the service stops")
                .expect("no panic");
        }
    }

    /// The service on 127.0.0.1 serving 127.0.1.1-127.0.1.254, replies to `client_port`.
    async fn start(state_dir: Option<&Path>, client_port: u16) -> Running {
        let mut server = ServerConfig::new(SERVER, 8);
        server.pool_start = Ipv4Addr::new(127, 0, 1, 1);
        server.pool_end = Ipv4Addr::new(127, 0, 1, 254);
        let mut cfg = DhcpConfig::new("lo", server);
        cfg.iface = None;
        cfg.bind = SocketAddrV4::new(SERVER, 0);
        cfg.client_port = client_port;
        cfg.state_dir = state_dir.map(Path::to_path_buf);
        let clock: Arc<dyn Clock> = Arc::new(ManualClock::new());
        let svc = DhcpService::bind(cfg, clock).await.expect("bind");
        let handle = svc.handle();
        let to = handle.local_addr();
        let (stop, rx) = tokio::sync::oneshot::channel();
        let task = tokio::spawn(svc.run(async move {
            let _ = rx.await;
        }));
        Running {
            handle,
            stop,
            task,
            to,
        }
    }

    /// The clients' socket: every 127.0.1.n on one port (replies go to `ciaddr`), with room
    /// for a burst of 200 replies (as much as `net.core.rmem_max` allows, more when root).
    async fn client() -> (UdpSocket, u16) {
        use socket2::{Domain, Protocol, Socket, Type};
        let s = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP)).unwrap();
        crate::dhcp::grow_recv_buffer(&s, 4 << 20).unwrap();
        s.bind(&SocketAddr::from((Ipv4Addr::UNSPECIFIED, 0)).into())
            .unwrap();
        s.set_nonblocking(true).unwrap();
        let sock = UdpSocket::from_std(s.into()).expect("client socket");
        let port = sock.local_addr().unwrap().port();
        (sock, port)
    }

    fn addr(n: u8) -> Ipv4Addr {
        Ipv4Addr::new(127, 0, 1, n)
    }

    /// Client `n` at 127.0.1.n, RENEWING (RFC 2131 §4.3.2: `ciaddr` set, unicast answer).
    fn renewal(n: u8) -> Message {
        let mut m = Message::request(
            0x5000 + u32::from(n),
            [2, 0, 0, 0, 1, n],
            MessageType::Request,
        );
        m.ciaddr = addr(n);
        m
    }

    async fn recv(sock: &UdpSocket) -> Message {
        let mut buf = [0u8; 1500];
        let (n, _) = tokio::time::timeout(WAIT, sock.recv_from(&mut buf))
            .await
            .expect("a reply in time")
            .expect("recv");
        Message::parse(&buf[..n]).expect("reply parses")
    }

    /// Nothing has arrived: everything sent so far is still held by the server.
    fn nothing_arrived(sock: &UdpSocket) {
        let mut buf = [0u8; 1500];
        match sock.try_recv_from(&mut buf) {
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            other => panic!("expected no datagram, got {other:?}"),
        }
    }

    async fn wait_for(what: &str, f: impl Fn() -> bool) {
        let deadline = tokio::time::Instant::now() + WAIT;
        while !f() {
            assert!(
                tokio::time::Instant::now() < deadline,
                "timed out waiting for {what}"
            );
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }

    /// RFC 2131 §3.1 step 4: the binding is in the lease file by the time its ACK arrives.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_lease_file_holds_the_binding_when_its_ack_arrives() {
        let dir = Dir::new("durable");
        let (sock, port) = client().await;
        let r = start(Some(&dir.0), port).await;
        for n in 1..=20u8 {
            sock.send_to(&renewal(n).emit(), r.to).await.unwrap();
            let ack = recv(&sock).await;
            // Read right away: the file must already have it.
            let file = dir.file();
            assert_eq!(
                (ack.message_type(), ack.xid),
                (Some(MessageType::Ack), 0x5000 + u32::from(n))
            );
            assert!(
                file.contains(&format!("{} bound", addr(n))),
                "ACK {n} arrived before its binding was written:\n{file}"
            );
        }
        let st = r.handle.stats();
        assert_eq!((st.acked, st.persist_errors), (20, 0));
        assert!(st.lease_writes >= 1 && st.lease_writes <= 20, "{st:?}");
        // The same request again, same second (the clock stands still): nothing new to write,
        // and the ACK goes at once.
        let writes = st.lease_writes;
        sock.send_to(&renewal(20).emit(), r.to).await.unwrap();
        assert_eq!(recv(&sock).await.message_type(), Some(MessageType::Ack));
        assert_eq!(r.handle.stats().lease_writes, writes);
        r.stop().await;
    }

    /// Group commit: 200 bindings made while a write is stalled are all covered by the next
    /// single write, and every ACK leaves after it.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_bindings_share_one_write() {
        let dir = Dir::new("group");
        let (sock, port) = client().await;
        let r = start(Some(&dir.0), port).await;
        let gate = r.handle.shared.save_gate.write().await;
        for n in 1..=200u8 {
            sock.send_to(&renewal(n).emit(), r.to).await.unwrap();
        }
        wait_for("200 requests handled", || r.handle.stats().received == 200).await;
        let st = r.handle.stats();
        assert_eq!((st.acked, st.acks_held, st.lease_writes), (200, 200, 0));
        nothing_arrived(&sock);
        drop(gate);
        let mut xids = std::collections::BTreeSet::new();
        for _ in 0..200 {
            let ack = recv(&sock).await;
            assert_eq!(ack.message_type(), Some(MessageType::Ack));
            xids.insert(ack.xid);
        }
        assert_eq!(xids.len(), 200);
        let file = dir.file();
        assert_eq!(file.matches(" bound ").count(), 200, "{file}");
        let st = r.handle.stats();
        assert_eq!(st.lease_writes, 1, "{st:?}");
        assert_eq!(st.persist_errors, 0);
        r.stop().await;
    }

    /// Without a state directory nothing persists and nothing waits: with writes stalled, the
    /// ACK still arrives.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn without_a_state_dir_nothing_waits() {
        let (sock, port) = client().await;
        let r = start(None, port).await;
        let h = r.handle.clone();
        let _gate = h.shared.save_gate.write().await;
        for n in 1..=5u8 {
            sock.send_to(&renewal(n).emit(), r.to).await.unwrap();
            assert_eq!(recv(&sock).await.message_type(), Some(MessageType::Ack));
        }
        let st = r.handle.stats();
        assert_eq!((st.acked, st.acks_held, st.lease_writes), (5, 0, 0));
        r.stop().await;
    }

    /// While a write is stalled with an ACK waiting for it, replies that promise no binding
    /// still leave at once: an OFFER (RFC 2131 §4.3.1) and INFORM's ACK (§4.3.5).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn offers_and_informs_do_not_wait() {
        let dir = Dir::new("nowait");
        let (sock, port) = client().await;
        let r = start(Some(&dir.0), port).await;
        let gate = r.handle.shared.save_gate.write().await;
        sock.send_to(&renewal(1).emit(), r.to).await.unwrap();
        wait_for("the ACK held", || r.handle.stats().acks_held == 1).await;
        // A DISCOVER from a client with an address (answered at ciaddr).
        let mut d = Message::request(0x6001, [2, 0, 0, 0, 2, 1], MessageType::Discover);
        d.ciaddr = addr(2);
        sock.send_to(&d.emit(), r.to).await.unwrap();
        let offer = recv(&sock).await;
        assert_eq!(
            (offer.message_type(), offer.xid),
            (Some(MessageType::Offer), 0x6001)
        );
        let mut inf = Message::request(0x6002, [2, 0, 0, 0, 2, 2], MessageType::Inform);
        inf.ciaddr = addr(3);
        sock.send_to(&inf.emit(), r.to).await.unwrap();
        let ack = recv(&sock).await;
        assert_eq!(
            (ack.message_type(), ack.xid),
            (Some(MessageType::Ack), 0x6002)
        );
        nothing_arrived(&sock);
        drop(gate);
        let ack = recv(&sock).await;
        assert_eq!(
            (ack.message_type(), ack.xid),
            (Some(MessageType::Ack), 0x5001)
        );
        assert!(dir.file().contains(&format!("{} bound", addr(1))));
        r.stop().await;
    }

    /// A failed write is counted and logged, and the ACKs it covered still leave (the server
    /// keeps serving); the next change writes again, with everything.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_failed_write_is_counted_and_the_ack_still_leaves() {
        let dir = Dir::new("fail");
        let (sock, port) = client().await;
        let r = start(Some(&dir.0), port).await;
        std::fs::remove_dir_all(&dir.0).unwrap();
        for n in 1..=2u8 {
            sock.send_to(&renewal(n).emit(), r.to).await.unwrap();
            assert_eq!(recv(&sock).await.message_type(), Some(MessageType::Ack));
            let st = r.handle.stats();
            assert_eq!(
                (st.persist_errors, st.lease_writes, st.acks_held),
                (u64::from(n), 0, u64::from(n))
            );
        }
        std::fs::create_dir_all(&dir.0).unwrap();
        sock.send_to(&renewal(3).emit(), r.to).await.unwrap();
        assert_eq!(recv(&sock).await.message_type(), Some(MessageType::Ack));
        let st = r.handle.stats();
        assert_eq!((st.persist_errors, st.lease_writes), (2, 1));
        let file = dir.file();
        for n in 1..=3 {
            assert!(file.contains(&format!("{} bound", addr(n))), "{file}");
        }
        r.stop().await;
    }

    /// Shutdown with an ACK waiting: the last write happens, then the ACK leaves; no hang.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn shutdown_writes_then_sends_the_waiting_acks() {
        let dir = Dir::new("shutdown");
        let (sock, port) = client().await;
        let r = start(Some(&dir.0), port).await;
        let gate = r.handle.shared.save_gate.write().await;
        sock.send_to(&renewal(1).emit(), r.to).await.unwrap();
        wait_for("the ACK held", || r.handle.stats().acks_held == 1).await;
        nothing_arrived(&sock);
        let handle = r.handle.clone();
        let _ = r.stop.send(());
        drop(gate);
        tokio::time::timeout(WAIT, r.task)
            .await
            .expect("the service stops")
            .expect("no panic");
        let ack = recv(&sock).await;
        assert_eq!(
            (ack.message_type(), ack.xid),
            (Some(MessageType::Ack), 0x5001)
        );
        assert!(dir.file().contains(&format!("{} bound", addr(1))));
        let st = handle.stats();
        assert_eq!(
            (st.lease_writes, st.persist_errors, st.send_errors),
            (1, 0, 0)
        );
    }
}
