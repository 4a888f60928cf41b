//! The small parsers the others lean on: http URLs split and resolved (a router's LOCATION,
//! URLBase and controlURL; GENA callbacks: shared/src/url.rs) and the tolerant HTTP-style head
//! of SSDP and GENA (shared/src/head.rs). Never a panic; a parsed URL prints to itself, a
//! resolved one to a URL.
#![no_main]
use libfuzzer_sys::fuzz_target;
use shared::head::Head;
use shared::url::HttpUrl;

fuzz_target!(init: homenet_fuzz::seeds::write("url_head"), |data: &[u8]| {
    if let Ok(h) = Head::parse(data, 8 * 1024) {
        assert!(h.body_offset <= data.len());
        let _ = h.get("HOST");
    }
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let (base, reference) = text.split_once('\n').unwrap_or((text, "/"));
    if let Some(u) = HttpUrl::parse(base) {
        assert_eq!(HttpUrl::parse(&u.to_string()).as_ref(), Some(&u), "{base:?}");
        if let Some(j) = u.join(reference) {
            assert!(HttpUrl::parse(&j.to_string()).is_some(), "{reference:?}");
        }
    }
});
