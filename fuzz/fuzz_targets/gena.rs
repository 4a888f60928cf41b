//! GENA eventing (shared/src/gena.rs): SUBSCRIBE / UNSUBSCRIBE requests (the router reads them),
//! SUBSCRIBE answers and NOTIFY events (a control point reads them). Parsed or refused, never a
//! panic; a parsed request or answer re-emits to the same value.
#![no_main]
use libfuzzer_sys::fuzz_target;
use shared::gena::{self, EventNotify, GenaRequest, SubscribeResponse, Timeout};

fuzz_target!(init: homenet_fuzz::seeds::write("gena"), |data: &[u8]| {
    if let Ok(r) = gena::parse_request(data) {
        if let GenaRequest::Subscribe(s) = &r {
            let _ = s.callbacks_point_at("192.168.1.10".parse().unwrap());
        }
        let again = gena::parse_request(&r.emit("/evt/IPConn", "192.168.1.1:5000"));
        assert_eq!(again.as_ref(), Ok(&r), "re-parse of {r:?}");
    }
    if let Ok(r) = SubscribeResponse::parse(data) {
        let _ = SubscribeResponse::parse(&r.emit());
    }
    if let Ok(e) = EventNotify::parse(data) {
        let _ = e.body();
    }
    let _ = gena::parse_propertyset(data);
    if let Ok(text) = std::str::from_utf8(data) {
        if let Some(t) = Timeout::parse(text) {
            assert_eq!(Timeout::parse(&t.header_value()), Some(t));
            let _ = Timeout::grant(Some(t), 60, 1800, 1800);
        }
        let _ = gena::parse_callbacks(text);
    }
});
