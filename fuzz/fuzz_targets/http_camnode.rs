//! The camera's HTTP client (camnode/src/portmgmt/http.rs), which reads whatever a device
//! that answers SSDP on the LAN sends back: status line, head, body by Content-Length, chunked
//! or to the end. Never a panic; a decoded body is never larger than what arrived.
#![no_main]
use camnode::portmgmt::http;
use libfuzzer_sys::fuzz_target;

fuzz_target!(init: homenet_fuzz::seeds::write("http_camnode"), |data: &[u8]| {
    for eof in [false, true] {
        if let Some(Ok((_, body))) = http::complete(data, eof) {
            assert!(body.len() <= data.len());
        }
    }
});
