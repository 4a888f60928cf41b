//! camnode's multipart/x-mixed-replace parser (camnode/src/camera/multipart.rs), fed by network
//! cameras and ffmpeg: any bytes in any split never panic, the parser holds no more than its
//! limits allow and no part exceeds `max_part`; bodies framed as camnode frames them (with
//! Content-Length) come back byte for byte, whatever the split and whatever they contain.
#![no_main]
use camnode::camera::multipart::{Event, Limits, Parser};
use libfuzzer_sys::fuzz_target;

const LIMITS: Limits = Limits {
    max_part: 4096,
    max_head: 512,
};

fuzz_target!(|data: &[u8]| {
    let Some((&step, data)) = data.split_first() else {
        return;
    };
    let step = usize::from(step % 64) + 1;
    // The input as it comes from the network.
    let mut parser = Parser::new("b", LIMITS);
    for chunk in data.chunks(step) {
        parser.push(chunk);
        while let Some(event) = parser.poll() {
            if let Event::Part(part) = event {
                assert!(part.data.len() <= LIMITS.max_part);
            }
        }
        assert!(parser.buffered() <= LIMITS.max_part + LIMITS.max_head + step);
    }
    // The input cut at zero bytes into bodies, framed with Content-Length: all come back.
    let bodies: Vec<&[u8]> = data
        .split(|&b| b == 0)
        .filter(|b| b.len() <= LIMITS.max_part)
        .collect();
    let mut wire = Vec::new();
    for (i, body) in bodies.iter().enumerate() {
        if i > 0 {
            wire.extend_from_slice(b"\r\n");
        }
        wire.extend_from_slice(
            format!(
                "--b\r\nContent-Type: image/jpeg\r\nContent-Length: {}\r\n\r\n",
                body.len()
            )
            .as_bytes(),
        );
        wire.extend_from_slice(body);
    }
    let mut parser = Parser::new("b", LIMITS);
    let mut got = Vec::new();
    for chunk in wire.chunks(step) {
        parser.push(chunk);
        while let Some(event) = parser.poll() {
            match event {
                Event::Part(part) => got.push(part.data),
                other => panic!("{other:?} from well-formed framing"),
            }
        }
    }
    assert_eq!(got.len(), bodies.len());
    for (got, body) in got.iter().zip(&bodies) {
        assert_eq!(&got[..], *body);
    }
});
