//! The router's own HTTP/1.1 codec (router/src/upnp/http1.rs), which every LAN host reaches at
//! the IGD's port: request heads, then the body as Content-Length or chunked, fed whole and in
//! two pieces. Never a panic; a complete body never claims more bytes than it was given, never
//! decodes to more than the limit, and reads the same whether it arrived in one piece or two.
#![no_main]
use libfuzzer_sys::fuzz_target;
use router::upnp::http1::{self, Body, Framing};

/// The body limit the server uses for SOAP (shared::soap::MAX_REQUEST).
const LIMIT: usize = shared::soap::MAX_REQUEST;

fn check(framing: Framing, buf: &[u8], limit: usize) -> Body {
    let b = http1::body(framing, buf, limit);
    if let Body::Complete { data, used } = &b {
        assert!(*used <= buf.len(), "used {used} of {}", buf.len());
        assert!(data.len() <= limit, "{} > limit {limit}", data.len());
    }
    b
}

fuzz_target!(init: homenet_fuzz::seeds::write("http_router"), |data: &[u8]| {
    let Some((&selector, data)) = data.split_first() else {
        return;
    };
    let mut head_len = 0;
    let framing = match http1::parse_head(data) {
        Ok(Some((head, len))) => {
            assert!(len <= data.len());
            head_len = len;
            head.framing
        }
        Ok(None) | Err(_) => match selector % 3 {
            // Not a head: fuzz the body decoders alone.
            0 => Framing::Chunked,
            1 => Framing::Length(u64::from(selector)),
            _ => Framing::None,
        },
    };
    let body = &data[head_len..];
    let limit = if selector & 0x80 != 0 { 64 } else { LIMIT };
    let whole = check(framing, body, limit);
    // A body that is complete once all its bytes are in reads the same in every shorter buffer
    // (either Partial or the same Complete: the decoder never commits early to another answer).
    if let Body::Complete { used, .. } = &whole {
        let cut = usize::from(selector) % (used + 1);
        match check(framing, &body[..cut], limit) {
            Body::Partial => {}
            b @ Body::Complete { .. } => assert_eq!(b, whole, "cut at {cut}"),
            other => panic!("prefix of {cut} bytes is {other:?}, whole is {whole:?}"),
        }
    }
});
