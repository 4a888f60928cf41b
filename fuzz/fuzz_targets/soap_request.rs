//! SOAP control requests, as the router's IGD reads them (shared/src/soap.rs, shared/src/igd.rs):
//! an envelope parses or is refused, never a panic; what parses re-emits (the camera's client
//! emitter) to the same request; a typed action goes back to the same request and action.
#![no_main]
use libfuzzer_sys::fuzz_target;
use shared::igd;
use shared::soap::{ActionRequest, SoapAction};

fuzz_target!(init: homenet_fuzz::seeds::write("soap_request"), |data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok(sa) = SoapAction::parse(text) {
            assert_eq!(SoapAction::parse(&sa.header_value()).as_ref(), Ok(&sa));
        }
    }
    let Ok(req) = ActionRequest::parse(data) else {
        return;
    };
    assert!(req.matches(&req.soap_action()));
    if let Ok((_, action)) = igd::parse_action(&req) {
        let typed = action.to_request(&req.service_type);
        let back = igd::parse_action(&ActionRequest::parse(&typed.emit()).expect("own emission"));
        assert_eq!(back.map(|(_, a)| a).as_ref(), Ok(&action));
        let _ = igd::has_action(&req.service_type, &req.action);
    }
});
