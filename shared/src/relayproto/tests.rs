//! Byte fixtures and hostile input for the relay protocol.

use super::*;

fn secret() -> Secret {
    Secret([0x11; SECRET_LEN])
}

fn v4(a: [u8; 4], port: u16) -> SocketAddr {
    SocketAddr::from((a, port))
}

/// A refresh from device 0x0123456789abcdef, counter 7, LAN 192.168.1.101:8081.
const REFRESH_HEAD: &[u8] = &[
    b'H', b'N', b'R', b'L', 1, 3, 0, 72, // magic, version, type 3, body length
    0x01, 0x23, 0x45, 0x67, 0x89, 0xab, 0xcd, 0xef, // device id
    0, 0, 0, 0, 0, 0, 0, 7, // counter
    7, 0, 1, 2, // KIND refresh
    8, 0, 6, 192, 168, 1, 101, 0x1f, 0x91, // LAN 192.168.1.101:8081
    255, 0, 56, // PAD, 56 zero bytes follow, then the MAC
];

fn refresh() -> Repr {
    Repr {
        device_id: 0x0123_4567_89ab_cdef,
        counter: 7,
        body: Body::Notify(Notify {
            kind: NotifyKind::Refresh,
            lan: Some(v4([192, 168, 1, 101], 8081)),
            router_wan: None,
        }),
    }
}

#[test]
fn refresh_round_trips_with_fixture() {
    let r = refresh();
    let bytes = r.emit(&secret());
    assert_eq!(bytes.len(), MIN_DEVICE_DATAGRAM);
    assert_eq!(&bytes[..REFRESH_HEAD.len()], REFRESH_HEAD);
    assert!(
        bytes[REFRESH_HEAD.len()..REFRESH_HEAD.len() + 56]
            .iter()
            .all(|&b| b == 0)
    );
    // The MAC is HMAC-SHA256 over everything before it (checked with the hmac crate).
    let mut m = secret().mac();
    m.update(&bytes[..MIN_DEVICE_DATAGRAM - MAC_LEN]);
    assert_eq!(
        &bytes[MIN_DEVICE_DATAGRAM - MAC_LEN..],
        &m.finalize().into_bytes()[..]
    );
    assert_eq!(Repr::parse(&bytes, &secret()), Ok(r.clone()));
    assert_eq!(r.buffer_len(), bytes.len());
    let p = Packet::new_checked(&bytes[..]).unwrap();
    assert_eq!(
        (p.msg_type(), p.device_id(), p.counter()),
        (3, 0x0123_4567_89ab_cdef, 7)
    );
}

#[test]
fn every_message_round_trips_and_answers_never_amplify() {
    let six = SocketAddr::new("2001:db8::7".parse().unwrap(), 40000);
    let bodies = [
        Body::PeriodQuery,
        Body::PeriodAnswer(PeriodAnswer {
            echo: u64::MAX,
            period_ms: 300_000,
            observed: six,
            counter_floor: u64::MAX,
            back_port: DEFAULT_BACK_PORT,
            keepalive_ms: 20_000,
        }),
        Body::PeriodAnswer(PeriodAnswer {
            echo: 1,
            period_ms: 300_000,
            observed: v4([100, 64, 0, 2], 1024),
            counter_floor: 0,
            back_port: 443,
            keepalive_ms: 20_000,
        }),
        Body::Notify(Notify {
            kind: NotifyKind::KeepAlive,
            lan: None,
            router_wan: None,
        }),
        Body::Notify(Notify {
            kind: NotifyKind::Refresh,
            lan: Some(six),
            router_wan: Some(IpAddr::V4(Ipv4Addr::new(100, 64, 0, 2))),
        }),
        Body::ConnectRequest(ConnectRequest {
            session: 0xdead_beef,
            nonce: [7; NONCE_LEN],
            back_port: DEFAULT_BACK_PORT,
        }),
        Body::SameNetworkQuery { peer: 9 },
        Body::SameNetworkAnswer(SameNetworkAnswer {
            echo: 3,
            peer: 9,
            same: Same::Unknown,
        }),
    ];
    for body in bodies {
        let from_device = body.msg_type().from_device();
        let r = Repr {
            device_id: 42,
            counter: 1000,
            body,
        };
        let b = r.emit(&secret());
        assert_eq!(Repr::parse(&b, &secret()), Ok(r.clone()), "{r:?}");
        assert_eq!(b.len(), r.buffer_len());
        if from_device {
            assert!(b.len() >= MIN_DEVICE_DATAGRAM, "{r:?}");
        } else {
            assert!(b.len() < MIN_DEVICE_DATAGRAM, "{r:?}: {}", b.len());
        }
    }
}

#[test]
fn forged_and_corrupted_datagrams_fail_the_mac() {
    let b = refresh().emit(&secret());
    assert_eq!(
        Repr::parse(&b, &Secret([0x12; SECRET_LEN])),
        Err(Error::BadMac)
    );
    // Any single changed byte after the version fails (type and lengths aside, MAC covers it).
    for i in 8..b.len() {
        let mut c = b.clone();
        c[i] ^= 0x01;
        assert!(Repr::parse(&c, &secret()).is_err(), "byte {i}");
    }
    // Trailing bytes after the MAC are ignored.
    let mut t = b.clone();
    t.extend_from_slice(b"xx");
    assert!(Repr::parse(&t, &secret()).is_ok());
}

#[test]
fn malformed_input_is_refused_by_kind() {
    let s = secret();
    assert_eq!(Repr::parse(b"", &s), Err(Error::Truncated));
    assert_eq!(
        Repr::parse(b"GET / HTTP/1.1\r\n\r\n", &s),
        Err(Error::BadMagic)
    );
    let b = refresh().emit(&s);
    assert_eq!(Repr::parse(&b[..40], &s), Err(Error::Truncated));
    assert_eq!(Repr::parse(&b[..b.len() - 1], &s), Err(Error::Truncated));
    let mut v = b.clone();
    v[4] = 2;
    assert_eq!(Repr::parse(&v, &s), Err(Error::UnknownVersion(2)));
    let mut t = b.clone();
    t[5] = 99;
    assert_eq!(Repr::parse(&t, &s), Err(Error::UnknownType(99)));
    assert_eq!(
        Repr::parse(&[0u8; MAX_DATAGRAM + 1], &s),
        Err(Error::TooLarge)
    );
    // A well-MAC'd refresh without its LAN address, a TLV past the end, a bad kind.
    let emit_raw = |ty: u8, body: &[u8]| {
        let mut out = MAGIC.to_vec();
        out.extend_from_slice(&[VERSION, ty]);
        out.extend_from_slice(&(body.len() as u16).to_be_bytes());
        out.extend_from_slice(&[0; 16]);
        out.extend_from_slice(body);
        let mut m = s.mac();
        m.update(&out);
        out.extend_from_slice(&m.finalize().into_bytes());
        out
    };
    assert_eq!(
        Repr::parse(&emit_raw(3, &[7, 0, 1, 2]), &s),
        Err(Error::MissingField(tag::LAN))
    );
    assert_eq!(
        Repr::parse(&emit_raw(3, &[7, 0, 9, 2]), &s),
        Err(Error::BadTlv)
    );
    assert_eq!(
        Repr::parse(&emit_raw(3, &[7, 0, 1, 3]), &s),
        Err(Error::InvalidField(tag::KIND))
    );
    assert_eq!(
        Repr::parse(&emit_raw(3, &[7, 0, 1, 1, 8, 0, 6, 1, 2, 3, 4, 0, 0]), &s),
        Err(Error::InvalidField(tag::LAN))
    );
    assert_eq!(
        Repr::parse(&emit_raw(4, &[9, 0, 8, 0, 0, 0, 0, 0, 0, 0, 1]), &s),
        Err(Error::MissingField(tag::NONCE))
    );
    // A keep-alive needs no LAN address; unknown tags are skipped.
    assert!(Repr::parse(&emit_raw(3, &[7, 0, 1, 1, 200, 0, 1, 9]), &s).is_ok());
}

#[test]
fn parse_never_panics_on_mutations() {
    let s = secret();
    let b = refresh().emit(&s);
    for i in 0..b.len() {
        for v in [0u8, 1, 0x7f, 0x80, 0xff] {
            let mut c = b.clone();
            c[i] = v;
            let _ = Repr::parse(&c, &s);
        }
        let _ = Repr::parse(&b[..i], &s);
        let _ = Hello::parse(&b[..i.min(HELLO_LEN + 2)]);
        let _ = HelloStatus::parse(&b[..i.min(HELLO_ANSWER_LEN + 2)]);
    }
}

#[test]
fn hello_proves_the_nonce() {
    let s = secret();
    let nonce = [9u8; NONCE_LEN];
    let h = Hello::new(0x0123_4567_89ab_cdef, 77, &nonce, &s);
    let bytes = h.emit();
    assert_eq!(
        &bytes[..24],
        &[
            b'H', b'N', b'R', b'B', 1, 1, 0, 0, // magic, version, type 1, zero
            0x01, 0x23, 0x45, 0x67, 0x89, 0xab, 0xcd, 0xef, // device id
            0, 0, 0, 0, 0, 0, 0, 77, // session
        ]
    );
    let back = Hello::parse(&bytes).unwrap();
    assert_eq!(back, h);
    assert_eq!(back.verify(&nonce, &s), Ok(()));
    assert_eq!(back.verify(&[8u8; NONCE_LEN], &s), Err(Error::BadMac));
    assert_eq!(
        back.verify(&nonce, &Secret([0; SECRET_LEN])),
        Err(Error::BadMac)
    );
    // Another session id with the same MAC does not verify.
    let mut other = back.clone();
    other.session = 78;
    assert_eq!(other.verify(&nonce, &s), Err(Error::BadMac));
    assert_eq!(Hello::parse(&bytes[..55]), Err(Error::Truncated));
    for st in [
        HelloStatus::Ok,
        HelloStatus::UnknownSession,
        HelloStatus::BadProof,
        HelloStatus::Expired,
    ] {
        assert_eq!(HelloStatus::parse(&st.emit()), Ok(st));
    }
    assert_eq!(HelloStatus::Ok.emit(), [b'H', b'N', b'R', b'B', 1, 2, 0, 0]);
}

#[test]
fn secrets_and_ids_in_text() {
    let s = Secret::from_hex(&"aB".repeat(32)).unwrap();
    assert_eq!(s.0, [0xab; 32]);
    assert_eq!(s.to_hex(), "ab".repeat(32));
    assert_eq!(format!("{s:?}"), "Secret(..)");
    assert!(Secret::from_hex("ab").is_none());
    assert!(Secret::from_hex(&"zz".repeat(32)).is_none());
    // Derived secrets differ per device and per key (fixture: first bytes).
    let key = Secret([7; SECRET_LEN]);
    assert_ne!(Secret::derive(&key, 1), Secret::derive(&key, 2));
    assert_ne!(
        Secret::derive(&key, 1),
        Secret::derive(&Secret([8; SECRET_LEN]), 1)
    );
    assert_eq!(Secret::derive(&key, 1), Secret::derive(&key, 1));
    assert_eq!(format_device_id(0xab), "00000000000000ab");
    assert_eq!(parse_device_id("00000000000000AB"), Some(0xab));
    assert_eq!(parse_device_id("ab"), Some(0xab));
    assert_eq!(parse_device_id(""), None);
    assert_eq!(parse_device_id("+ab"), None);
    assert_eq!(parse_device_id("00000000000000000"), None);
}
