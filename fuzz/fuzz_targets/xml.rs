//! Every XML document a LAN peer can hand us, through the crate's bounded reader
//! (shared/src/xml.rs): device descriptions (the camera reads the router's), service
//! descriptions, GENA property sets, the `PortMappingList` of GetListOfPortMappings. Parsed or
//! refused, never a panic, bounded memory; a port listing re-emits to the same entries.
#![no_main]
use libfuzzer_sys::fuzz_target;
use shared::description::{find_igd_services, parse_scpd};
use shared::url::HttpUrl;
use shared::{gena, igd};

fuzz_target!(init: homenet_fuzz::seeds::write("xml"), |data: &[u8]| {
    let location = HttpUrl::parse("http://192.168.1.1:5000/rootDesc.xml").unwrap();
    if let Ok(s) = find_igd_services(data, &location) {
        let _ = format!("{s:?}");
    }
    let _ = parse_scpd(data);
    let _ = gena::parse_propertyset(data);
    if let Ok(entries) = igd::parse_port_listing(data) {
        let again = igd::parse_port_listing(igd::emit_port_listing(&entries).as_bytes());
        assert_eq!(again.as_ref(), Ok(&entries));
    }
    if let Ok(text) = std::str::from_utf8(data) {
        let escaped = shared::xml_escape(text);
        assert!(!escaped.contains('<'));
    }
});
