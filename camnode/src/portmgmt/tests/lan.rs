//! The LAN endpoint: one sequence counter and one duplicate filter for every message type.

use super::*;

/// A LAN message from node 0x99 at 192.168.1.77.
fn from_99(sequence: u64, body: lanproto::Body) -> Input {
    let r = lanproto::Repr {
        header: lanproto::Header {
            node_id: 0x99,
            sequence,
            term: 0,
        },
        body,
    };
    Input::Lan {
        from: SocketAddrV4::new(Ipv4Addr::new(192, 168, 1, 77), 17777),
        data: r.emit(),
    }
}

fn notice(sequence: u64) -> Input {
    from_99(
        sequence,
        lanproto::Body::PortNotice(lanproto::PortNotice {
            name: "by notice".into(),
            lan_addr: Ipv4Addr::new(192, 168, 1, 77),
            internal_port: 8090,
            external_port: None,
        }),
    )
}

/// The sender numbers every message with one counter, but notices and election messages are
/// filtered apart: a repeated message of either kind is dropped, and an election message that a
/// later notice overtook (another socket, another path) still counts.
#[test]
fn notices_and_election_messages_are_filtered_apart() {
    let mut sim = Sim::new(FakeIgd::new(false));
    let a = sim.add(named(1, Some("rep")), el_opts());
    sim.run_for(secs(2.0));
    assert_eq!(sim.reps(), [a]);
    let answers = |sim: &Sim| {
        sim.trace
            .iter()
            .filter(|(i, t)| *i == a && t == "lan PresenceAnswer")
            .count()
    };
    // Claim 15: the representative answers a presence inquiry, once per message.
    sim.input(a, from_99(5, lanproto::Body::PresenceInquiry));
    sim.input(a, from_99(5, lanproto::Body::PresenceInquiry));
    sim.settle();
    assert_eq!(answers(&sim), 1);
    // A notice numbered 7, then an inquiry numbered 6 that it overtook: the inquiry counts.
    sim.input(a, notice(7));
    sim.input(a, from_99(6, lanproto::Body::PresenceInquiry));
    sim.settle();
    assert_eq!(answers(&sim), 2);
    // The notice again is a duplicate.
    sim.input(a, notice(7));
    sim.settle();
    assert_eq!(sim.nodes[a].pm.lan_stats().duplicates, 1);
}
