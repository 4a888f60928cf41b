//! The engine under attack (issue 11): spoofed and bogon sources from the WAN, SYN floods at
//! a forwarded port, one host taking the table, fragment floods. Virtual clock throughout.

use super::*;

/// 100.64.0.0/10 addresses (accepted from the WAN): `n` distinct spoofed sources.
fn spoofed(n: u32) -> Ipv4Addr {
    Ipv4Addr::from(u32::from(Ipv4Addr::new(100, 64, 0, 0)) + n)
}

impl Lab {
    /// Processes `p` as arriving on `side`.
    fn send_on(&mut self, side: Side, mut p: Vec<u8>) -> Result<Vec<u8>, Verdict> {
        match self.nat.process(self.now, side, &mut p) {
            Verdict::Forward => Ok(p),
            v => Err(v),
        }
    }

    /// A LAN host's TCP handshake with `remote` from `port`, through the engine both ways.
    fn handshake(&mut self, host: Ipv4Addr, port: u16, remote: SocketAddrV4) {
        let syn = self.pass(tcp(sa(host, port), remote, Tcp::Syn));
        let ext = syn.src.port();
        let back = self.pass(tcp(remote, sa(WAN, ext), Tcp::SynAck));
        assert_eq!(back.dst, sa(host, port));
        self.pass(tcp(sa(host, port), remote, Tcp::Ack));
    }
}

#[test]
fn wan_packet_with_lan_source_creates_no_session_and_opens_nothing() {
    // The reported attack: from the WAN link, a packet "from" 192.168.1.50:8445 to the
    // attacker; translated as outbound it opened 203.0.113.2:8445 to an unforwarded service.
    let mut lab = Lab::preset(Preset::FullCone);
    let lan_service = Ipv4Addr::new(192, 168, 1, 50);
    let spoof = udp(sa(lan_service, 8445), sa(R1, 4444), b"open sesame");
    assert_eq!(
        lab.send_on(Side::Wan, spoof),
        Err(Verdict::Drop(DropReason::WanLanSource))
    );
    let syn = tcp(sa(lan_service, 8445), sa(R1, 4444), Tcp::Syn);
    assert_eq!(
        lab.send_on(Side::Wan, syn),
        Err(Verdict::Drop(DropReason::WanLanSource))
    );
    assert_eq!(lab.nat.session_count(), 0);
    assert_eq!(lab.nat.mapping_count(), 0);
    assert_eq!(
        lab.drop(udp(sa(R1, 4444), sa(WAN, 8445), b"let me in")),
        DropReason::NoMapping
    );
    assert_eq!(lab.nat.counters().drop_count(DropReason::WanLanSource), 2);
}

#[test]
fn wan_bogon_sources_are_dropped_and_lab_ranges_pass() {
    let mut lab = Lab::preset(Preset::FullCone);
    lab.forward(Protocol::Udp, 9000, sa(H1, 9000));
    for bogon in [
        Ipv4Addr::new(10, 1, 2, 3),
        Ipv4Addr::new(127, 0, 0, 1),
        Ipv4Addr::new(169, 254, 9, 9),
        Ipv4Addr::new(172, 16, 0, 1),
        Ipv4Addr::new(198, 18, 0, 1),
        Ipv4Addr::new(0, 0, 0, 1),
        Ipv4Addr::new(224, 0, 0, 1),
        Ipv4Addr::new(255, 255, 255, 255),
    ] {
        let p = udp(sa(bogon, 1), sa(WAN, 9000), b"x");
        assert_eq!(
            lab.send_on(Side::Wan, p),
            Err(Verdict::Drop(DropReason::WanBogonSource)),
            "{bogon}"
        );
    }
    assert_eq!(lab.nat.session_count(), 0);
    // Documentation and shared (CGN) ranges are the lab's internet: they pass.
    for fine in [R1, GW, spoofed(1), Ipv4Addr::new(192, 0, 2, 1)] {
        assert_eq!(
            lab.pass(udp(sa(fine, 1), sa(WAN, 9000), b"x")).dst,
            sa(H1, 9000)
        );
    }
    // A router behind another NAT accepts its upstream network when told to.
    let upstream = Prefix::parse("10.0.0.0/24").unwrap();
    lab.nat
        .set_wan_sources(WanSources::new(&[upstream], &[]).unwrap());
    let p = udp(sa(Ipv4Addr::new(10, 0, 0, 1), 1), sa(WAN, 9000), b"x");
    assert!(lab.send_on(Side::Wan, p).is_ok());
}

#[test]
fn icmp_errors_from_privately_numbered_isp_routers_reach_their_session() {
    let mut lab = Lab::home();
    let out = lab.send(udp(sa(H1, 5000), sa(R1, 53), b"query")).unwrap();
    let isp_router = Ipv4Addr::new(10, 20, 30, 1);
    // Fragmentation needed (Path MTU discovery) from a 10/8 router on the path.
    let err = icmp_error(isp_router, WAN, 3, 4, [0, 0, 5, 0xdc], &out, 64);
    let back = lab.send_on(Side::Wan, err).expect("forwarded");
    assert_eq!(check(&back).dst.ip(), &H1);
    // Not from the never-valid ranges, and nothing else from 10/8.
    let err = icmp_error(Ipv4Addr::new(127, 0, 0, 1), WAN, 3, 4, [0; 4], &out, 64);
    assert_eq!(
        lab.send_on(Side::Wan, err),
        Err(Verdict::Drop(DropReason::WanBogonSource))
    );
    let p = udp(sa(isp_router, 53), sa(WAN, 5000), b"x");
    assert_eq!(
        lab.send_on(Side::Wan, p),
        Err(Verdict::Drop(DropReason::WanBogonSource))
    );
}

#[test]
fn lan_packet_with_foreign_source_is_not_translated() {
    let mut lab = Lab::home();
    let p = udp(sa(R2, 1), sa(R1, 53), b"x");
    assert_eq!(
        lab.send_on(Side::Lan, p),
        Err(Verdict::Drop(DropReason::NotForUs))
    );
    assert_eq!(lab.nat.session_count(), 0);
}

#[test]
fn syn_flood_at_a_forward_never_locks_out_lan_connections() {
    let mut lab = Lab::home();
    lab.nat.set_max_sessions(1000);
    lab.forward(Protocol::Tcp, 8080, sa(H1, 80));
    // An established inbound connection through the forward, before the flood.
    let real = sa(R2, 50000);
    lab.pass(tcp(real, sa(WAN, 8080), Tcp::Syn));
    lab.pass(tcp(sa(H1, 80), real, Tcp::SynAck));
    lab.pass(tcp(real, sa(WAN, 8080), Tcp::Ack));
    let mut opened = 0;
    for i in 0..20_000u32 {
        // Spoofed SYNs from ever new sources, far more than the table holds; the LAN server
        // answers each (its SYN-ACK goes to the spoofed address, which never replies).
        let from = sa(spoofed(i), 1024 + (i % 60000) as u16);
        assert!(
            lab.send(tcp(from, sa(WAN, 8080), Tcp::Syn)).is_ok(),
            "flood SYN {i}"
        );
        assert_eq!(lab.pass(tcp(sa(H1, 80), from, Tcp::SynAck)).dst, from);
        if i % 97 == 0 {
            lab.now += Duration::from_millis(10);
            lab.handshake(H2, 10000 + (opened % 50000) as u16, sa(R1, 443));
            // A real client's handshake through the forward completes too.
            let client = sa(R1, 20000 + (opened % 40000) as u16);
            lab.pass(tcp(client, sa(WAN, 8080), Tcp::Syn));
            assert_eq!(lab.pass(tcp(sa(H1, 80), client, Tcp::SynAck)).dst, client);
            assert_eq!(
                lab.pass(tcp(client, sa(WAN, 8080), Tcp::Ack)).dst,
                sa(H1, 80)
            );
            opened += 1;
        }
    }
    assert!(opened > 200);
    assert_eq!(lab.nat.counters().drop_count(DropReason::TableFull), 0);
    assert!(lab.nat.counters().sessions_evicted >= 19_000);
    assert!(lab.nat.session_count() <= 1000);
    // The confirmed connection was never evicted.
    assert_eq!(lab.pass(tcp(real, sa(WAN, 8080), Tcp::Ack)).dst, sa(H1, 80));
    lab.nat.table.check_invariants();
}

#[test]
fn table_full_of_established_sessions_refuses_new_ones() {
    let mut lab = Lab::home();
    lab.nat.set_max_sessions(10);
    for p in 0..10 {
        lab.handshake(H1, 1000 + p, sa(R1, 80));
    }
    assert_eq!(
        lab.drop(tcp(sa(H2, 1), sa(R1, 80), Tcp::Syn)),
        DropReason::TableFull
    );
    assert_eq!(lab.nat.counters().sessions_evicted, 0);
}

#[test]
fn one_lan_host_cannot_take_the_table() {
    let mut lab = Lab::home();
    lab.nat.set_limits(Limits {
        sessions_per_host: 10,
        ..Limits::default()
    });
    for p in 0..10 {
        lab.pass(udp(sa(H1, 1000 + p), sa(R1, 53), b"q"));
    }
    assert_eq!(
        lab.drop(udp(sa(H1, 2000), sa(R1, 53), b"q")),
        DropReason::HostSessionLimit
    );
    // Existing sessions carry on; other hosts are not affected.
    lab.pass(udp(sa(H1, 1000), sa(R1, 53), b"q"));
    lab.pass(udp(sa(H2, 2000), sa(R1, 53), b"q"));
    // When sessions expire, the host gets its share back.
    lab.at(121);
    lab.pass(udp(sa(H1, 2000), sa(R1, 53), b"q"));
    lab.nat.table.check_invariants();
}

#[test]
fn one_internet_host_cannot_take_a_forward() {
    let mut lab = Lab::home();
    lab.nat.set_limits(Limits {
        sessions_per_remote: 5,
        ..Limits::default()
    });
    lab.forward(Protocol::Tcp, 8080, sa(H1, 80));
    for p in 0..5 {
        lab.pass(tcp(sa(R1, 1000 + p), sa(WAN, 8080), Tcp::Syn));
    }
    assert_eq!(
        lab.drop(tcp(sa(R1, 2000), sa(WAN, 8080), Tcp::Syn)),
        DropReason::RemoteSessionLimit
    );
    lab.pass(tcp(sa(R2, 2000), sa(WAN, 8080), Tcp::Syn));
    // LAN-initiated sessions to that host are not its inbound share.
    lab.pass(udp(sa(H2, 7), sa(R1, 53), b"q"));
    lab.nat.table.check_invariants();
}

#[test]
fn one_hosts_fragment_flood_cannot_block_lan_fragments() {
    let mut lab = Lab::home();
    lab.forward(Protocol::Udp, 9000, sa(H1, 9000));
    let attacker = R2;
    let lan_datagram = |id: u16| {
        let mut frags = fragment(&udp(sa(H1, 5000), sa(R1, 9), &[3u8; 3000]), 1000);
        for f in &mut frags {
            f[4..6].copy_from_slice(&id.to_be_bytes());
            set_ip_checksum(f);
        }
        frags
    };
    for i in 0..30_000u32 {
        // Later fragments of datagrams whose first fragment never comes: what a flood of
        // ~137 packets/s for 30 s filled the old global table with.
        let mut f = fragment(&udp(sa(attacker, 1), sa(WAN, 9000), &[1u8; 200]), 104).remove(1);
        f[4..6].copy_from_slice(&(i as u16).to_be_bytes());
        set_ip_checksum(&mut f);
        let _ = lab.send(f);
        if i % 1000 == 0 {
            lab.now += Duration::from_millis(100);
            // Out of order, so the LAN's fragments need an entry and must be held.
            let mut frags = lan_datagram(i as u16);
            frags.reverse();
            let n = frags.len();
            let mut forwarded = 0;
            for f in frags {
                match lab.send(f) {
                    Ok(_) => forwarded += 1,
                    Err(Verdict::Held) => {}
                    Err(v) => panic!("LAN fragment refused at {i}: {v:?}"),
                }
            }
            while lab.nat.poll_transmit().is_some() {
                forwarded += 1;
            }
            assert_eq!(forwarded, n, "datagram {i}");
        }
    }
    let c = lab.nat.counters();
    assert!(c.drop_count(DropReason::FragmentSourceLimit) > 29_000);
}
