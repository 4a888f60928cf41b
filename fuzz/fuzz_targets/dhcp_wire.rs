//! The DHCP message codec (router/src/dhcp/wire.rs): any datagram a LAN host sends parses or is
//! refused, never a panic; a parsed message re-emits to bytes that parse to the same message.
#![no_main]
use libfuzzer_sys::fuzz_target;
use router::dhcp::wire::Message;

fuzz_target!(init: homenet_fuzz::seeds::write("dhcp_wire"), |data: &[u8]| {
    let Ok(m) = Message::parse(data) else {
        return;
    };
    let _ = (m.message_type(), m.requested_ip(), m.server_id(), m.lease_time());
    let _ = (m.client_id(), m.param_request_list(), m.host_name(), m.mac());
    let again = Message::parse(&m.emit());
    assert_eq!(again.as_ref(), Ok(&m), "re-parse of our emission");
});
