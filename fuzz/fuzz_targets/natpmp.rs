//! NAT-PMP (RFC 6886) and PCP (RFC 6887) datagrams, both directions (shared/src/natpmp.rs):
//! refused or parsed, never a panic; a parsed message re-emits to the same message.
#![no_main]
use libfuzzer_sys::fuzz_target;
use shared::natpmp::{self, NatPmpRequest, NatPmpResponse, PcpRequest, PcpResponse, Request};

fuzz_target!(init: homenet_fuzz::seeds::write("natpmp"), |data: &[u8]| {
    match natpmp::parse_request(data) {
        Ok(Request::NatPmp(r)) => assert_eq!(NatPmpRequest::parse(&r.emit()), Ok(r)),
        Ok(Request::Pcp(r)) => assert_eq!(PcpRequest::parse(&r.emit()).as_ref(), Ok(&r)),
        Err(_) => {}
    }
    if let Ok(r) = NatPmpResponse::parse(data) {
        assert_eq!(NatPmpResponse::parse(&r.emit()), Ok(r));
    }
    if let Ok(r) = PcpResponse::parse(data) {
        assert_eq!(PcpResponse::parse(&r.emit()).as_ref(), Ok(&r));
    }
});
