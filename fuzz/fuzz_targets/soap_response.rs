//! SOAP control responses and faults, as the camera's IGD client reads them from a router
//! (shared/src/soap.rs, shared/src/igd.rs): parsed or refused, never a panic; every typed reply
//! it reads for an action re-emits (the router's emitter) to the same reply.
#![no_main]
use libfuzzer_sys::fuzz_target;
use shared::igd::{Action, AddPortMapping, MappingKey, PortRange, Protocol};
use shared::soap;

/// One action of each reply shape the client asks for.
fn actions() -> Vec<Action> {
    let key = MappingKey {
        remote_host: None,
        external_port: 8080,
        protocol: Protocol::Tcp,
    };
    let add = AddPortMapping {
        remote_host: None,
        external_port: 8080,
        protocol: Protocol::Tcp,
        internal_port: 8080,
        internal_client: None,
        enabled: true,
        description: "homenet-cam v1".into(),
        lease_duration: 3600,
    };
    vec![
        Action::GetExternalIpAddress,
        Action::AddPortMapping(add.clone()),
        Action::AddAnyPortMapping(add),
        Action::DeletePortMapping(key),
        Action::GetSpecificPortMappingEntry(key),
        Action::GetGenericPortMappingEntry(0),
        Action::GetListOfPortMappings(
            PortRange {
                start_port: 1,
                end_port: 65535,
                protocol: Protocol::Tcp,
                manage: false,
            },
            1000,
        ),
        Action::GetStatusInfo,
        Action::GetCommonLinkProperties,
    ]
}

fuzz_target!(init: homenet_fuzz::seeds::write("soap_response"), |data: &[u8]| {
    let Ok(parsed) = soap::parse_response(data) else {
        return;
    };
    let resp = match parsed {
        Ok(resp) => resp,
        Err(fault) => {
            let _ = fault.upnp_error();
            let again = soap::parse_response(&fault.emit()).expect("own fault");
            assert_eq!(again.err().as_ref(), Some(&fault));
            return;
        }
    };
    for action in actions() {
        if let Ok(reply) = action.parse_reply(&resp) {
            let emitted = reply.to_response(&action, &resp.service_type).emit();
            let back = soap::parse_response(&emitted).expect("own response");
            let back = back.expect("not a fault");
            assert_eq!(action.parse_reply(&back).as_ref(), Ok(&reply), "{action:?}");
        }
    }
});
