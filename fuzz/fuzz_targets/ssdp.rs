//! SSDP (shared/src/ssdp.rs, router/src/upnp/ssdp.rs): any datagram parses or is refused, the
//! router's responder decides without a panic, and every answer it would send parses as a
//! search response for the target that was asked for.
#![no_main]
use libfuzzer_sys::fuzz_target;
use router::upnp::ssdp::{Decision, decide};
use shared::ssdp::{self, Message};

fuzz_target!(init: homenet_fuzz::seeds::write("ssdp"), |data: &[u8]| {
    let parsed = ssdp::parse(data);
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = ssdp::parse_max_age(text);
    }
    for version in [1, 2] {
        match decide(&homenet_fuzz::advertiser(version), data) {
            Decision::Answer(delay, answers) => {
                assert!(delay.as_secs() <= 5, "MX is capped at 5 s (UDA 1.1 §1.3.3)");
                assert!(matches!(parsed, Ok(Message::Search(_))));
                for a in answers {
                    match ssdp::parse(&a) {
                        Ok(Message::Response(_)) => {}
                        other => panic!("our answer does not parse: {other:?}"),
                    }
                }
            }
            Decision::Ignore => assert!(parsed.is_ok()),
            Decision::Malformed => assert!(parsed.is_err()),
        }
    }
});
