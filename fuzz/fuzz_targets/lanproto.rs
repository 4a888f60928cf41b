//! The camera nodes' LAN protocol (shared/src/lanproto.rs): a datagram parses or is refused,
//! never a panic; a parsed message re-emits to bytes that parse to the same message.
#![no_main]
use libfuzzer_sys::fuzz_target;
use shared::lanproto::{Packet, Repr};

fuzz_target!(init: homenet_fuzz::seeds::write("lanproto"), |data: &[u8]| {
    if let Ok(p) = Packet::new_checked(data) {
        let _ = (p.version(), p.msg_type(), p.body_len(), p.node_id());
        let _ = (p.sequence(), p.term(), p.body());
    }
    if let Ok(m) = Repr::parse(data) {
        let bytes = m.emit();
        assert_eq!(bytes.len(), m.buffer_len(), "buffer_len of {m:?}");
        assert_eq!(Repr::parse(&bytes).as_ref(), Ok(&m), "re-parse of {m:?}");
    }
});
