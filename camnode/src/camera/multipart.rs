//! A sans-IO parser for `multipart/x-mixed-replace` (RFC 2046 §5.1, as MJPEG cameras use it):
//! push the bytes as they arrive, take parts and errors out. No clock, no socket.
//!
//! What cameras send differs from the RFC in ways the parser accepts:
//! - A part with `Content-Length` (mjpg-streamer, ustreamer, camnode, ffmpeg's `mpjpeg`) is taken
//!   by its length, without scanning the JPEG; one without is ended by the next delimiter
//!   (RFC 2046 §5.1.1: CRLF "--" boundary).
//! - Lines may end in LF alone; the CRLF after a part's body may be missing or doubled.
//! - Some cameras declare `boundary=--foo` and write `--foo` (not `----foo`) as the delimiter:
//!   both spellings are recognised, and the first one seen is kept.
//!
//! Hostile input: every buffer is bounded by [`Limits`]. A part longer than `max_part`, a header
//! block longer than `max_head`, a bad `Content-Length` or `max_part` bytes without any delimiter
//! give an [`Error`]; the parser then drops what it holds and looks for the next delimiter line,
//! so one bad part costs one part. It never panics and never holds more than
//! `max_part + max_head` bytes plus the last push.

use bytes::{Buf, Bytes, BytesMut};
use memchr::memmem;

/// Bounds on what the parser holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// The largest part body accepted (a JPEG: a 4K frame at high quality is ~2 MB).
    pub max_part: usize,
    /// The largest header block of one part (the lines between a delimiter and the body).
    pub max_head: usize,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_part: 8 << 20,
            max_head: 8 << 10,
        }
    }
}

/// One body part.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Part {
    /// The part's `Content-Type`, if it had one.
    pub content_type: Option<String>,
    pub data: Bytes,
}

/// Something wrong in the stream; the parser has resynchronised on the next delimiter.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    #[error("no multipart boundary in {skipped} bytes")]
    MissingBoundary { skipped: usize },
    #[error("a part's headers are longer than {limit} bytes")]
    HeadersTooLong { limit: usize },
    #[error("a part's header is malformed: {0}")]
    BadHeader(String),
    #[error("a part is larger than {limit} bytes ({size} bytes)")]
    PartTooLarge { size: usize, limit: usize },
}

/// What [`Parser::poll`] hands out.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    Part(Part),
    Error(Error),
    /// The closing delimiter (`--boundary--`): the sender ended the stream.
    End,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// Looking for a delimiter line; other lines are skipped (preamble, padding, junk).
    Delimiter,
    /// Reading a part's header lines.
    Headers,
    /// Reading a body: by length, or up to the next delimiter.
    Body(Option<usize>),
    /// After the closing delimiter: everything is ignored.
    Closed,
}

/// The parser. See the module documentation.
#[derive(Debug)]
pub struct Parser {
    /// Delimiter spellings: "--" + boundary, and the boundary itself when it starts with "--".
    delimiters: Vec<Vec<u8>>,
    buf: BytesMut,
    state: State,
    limits: Limits,
    /// Bytes skipped while looking for a delimiter since the last one.
    skipped: usize,
    /// The rest of a part already reported as too large is being skipped: no second error.
    quiet: bool,
    /// In a body without length: how far the buffer has been searched for the delimiter.
    scanned: usize,
    head_len: usize,
    content_type: Option<String>,
    content_length: Option<usize>,
}

impl Parser {
    /// A parser for the boundary named in the response's Content-Type (see [`boundary_of`]).
    pub fn new(boundary: &str, limits: Limits) -> Parser {
        let mut delimiters = vec![format!("--{boundary}").into_bytes()];
        if boundary.starts_with("--") && boundary.len() > 2 {
            delimiters.push(boundary.as_bytes().to_vec());
        }
        Parser {
            delimiters,
            buf: BytesMut::new(),
            state: State::Delimiter,
            limits,
            skipped: 0,
            quiet: false,
            scanned: 0,
            head_len: 0,
            content_type: None,
            content_length: None,
        }
    }

    /// Add bytes from the wire.
    pub fn push(&mut self, data: &[u8]) {
        if self.state != State::Closed {
            self.buf.extend_from_slice(data);
        }
    }

    /// Bytes held (for the memory bound).
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    /// The next part, error or end, or None until more bytes are pushed.
    pub fn poll(&mut self) -> Option<Event> {
        loop {
            match self.state {
                State::Closed => return None,
                State::Delimiter => {
                    if let Some(event) = self.seek_delimiter()? {
                        return Some(event);
                    }
                }
                State::Headers => {
                    if let Some(event) = self.read_header_line()? {
                        return Some(event);
                    }
                }
                State::Body(Some(len)) => {
                    if self.buf.len() < len {
                        return None;
                    }
                    let data = self.buf.split_to(len).freeze();
                    return Some(self.part(data));
                }
                State::Body(None) => return self.scan_body(),
            }
        }
    }

    /// One line in the Delimiter state. `None`: need more bytes; `Some(None)`: go on.
    fn seek_delimiter(&mut self) -> Option<Option<Event>> {
        let Some(nl) = memchr::memchr(b'\n', &self.buf) else {
            // A line without end: keep only what could still begin a delimiter.
            let keep = self.delimiters.iter().map(Vec::len).max().unwrap_or(0) + 4;
            if self.buf.len() > self.limits.max_head.max(keep) {
                let drop = self.buf.len() - keep;
                self.buf.advance(drop);
                return Some(self.skip(drop));
            }
            return None;
        };
        let line = trim_cr(&self.buf[..nl]);
        let found = self.delimiters.iter().position(|d| {
            line.strip_prefix(d.as_slice()).is_some_and(|rest| {
                let rest = rest.strip_prefix(b"--").unwrap_or(rest);
                rest.iter().all(|b| matches!(b, b' ' | b'\t'))
            })
        });
        match found {
            Some(i) => {
                let closing = line[self.delimiters[i].len()..].starts_with(b"--");
                // Keep the spelling the sender uses.
                if i != 0 {
                    self.delimiters.swap(0, i);
                }
                self.delimiters.truncate(1);
                self.buf.advance(nl + 1);
                self.skipped = 0;
                self.quiet = false;
                if closing {
                    self.state = State::Closed;
                    self.buf = BytesMut::new();
                    return Some(Some(Event::End));
                }
                self.state = State::Headers;
                self.head_len = 0;
                self.content_type = None;
                self.content_length = None;
                Some(None)
            }
            None => {
                // An empty line between parts is normal; anything else is skipped junk.
                let junk = if line.is_empty() { 0 } else { nl + 1 };
                self.buf.advance(nl + 1);
                Some(self.skip(junk))
            }
        }
    }

    /// Count skipped bytes; an error once `max_part` of them went by without a delimiter.
    fn skip(&mut self, n: usize) -> Option<Event> {
        self.skipped += n;
        if self.skipped > self.limits.max_part && !self.quiet {
            let skipped = std::mem::take(&mut self.skipped);
            return Some(Event::Error(Error::MissingBoundary { skipped }));
        }
        None
    }

    /// One header line. `None`: need more bytes; `Some(None)`: go on.
    fn read_header_line(&mut self) -> Option<Option<Event>> {
        let Some(nl) = memchr::memchr(b'\n', &self.buf) else {
            if self.head_len + self.buf.len() > self.limits.max_head {
                return Some(Some(self.resync(Error::HeadersTooLong {
                    limit: self.limits.max_head,
                })));
            }
            return None;
        };
        self.head_len += nl + 1;
        if self.head_len > self.limits.max_head {
            return Some(Some(self.resync(Error::HeadersTooLong {
                limit: self.limits.max_head,
            })));
        }
        let line = trim_cr(&self.buf[..nl]);
        if line.is_empty() {
            self.buf.advance(nl + 1);
            match self.content_length {
                Some(len) if len > self.limits.max_part => {
                    return Some(Some(self.resync(Error::PartTooLarge {
                        size: len,
                        limit: self.limits.max_part,
                    })));
                }
                len => {
                    self.state = State::Body(len);
                    self.scanned = 0;
                }
            }
            return Some(None);
        }
        let Some(colon) = memchr::memchr(b':', line) else {
            let shown = String::from_utf8_lossy(&line[..line.len().min(60)]).into_owned();
            return Some(Some(
                self.resync(Error::BadHeader(format!("no colon in {shown:?}"))),
            ));
        };
        let name = &line[..colon];
        let value = String::from_utf8_lossy(&line[colon + 1..])
            .trim()
            .to_owned();
        if name.eq_ignore_ascii_case(b"content-length") {
            match value.parse::<usize>() {
                Ok(len) => self.content_length = Some(len),
                Err(_) => {
                    let shown: String = value.chars().take(30).collect();
                    return Some(Some(
                        self.resync(Error::BadHeader(format!("Content-Length {shown:?}"))),
                    ));
                }
            }
        } else if name.eq_ignore_ascii_case(b"content-type") {
            self.content_type = Some(value);
        }
        self.buf.advance(nl + 1);
        Some(None)
    }

    /// A body without length: up to the line break before the next delimiter.
    fn scan_body(&mut self) -> Option<Event> {
        let delimiter = &self.delimiters[0];
        let mut needle = Vec::with_capacity(delimiter.len() + 1);
        needle.push(b'\n');
        needle.extend_from_slice(delimiter);
        if let Some(at) = memmem::find(&self.buf[self.scanned..], &needle) {
            let nl = self.scanned + at;
            let end = if nl > 0 && self.buf[nl - 1] == b'\r' {
                nl - 1
            } else {
                nl
            };
            let data = self.buf.split_to(end).freeze();
            return Some(self.part(data));
        }
        if self.buf.len() > self.limits.max_part {
            let size = self.buf.len();
            let keep = needle.len();
            self.buf.advance(size - keep);
            self.state = State::Delimiter;
            self.skipped = 0;
            self.quiet = true;
            return Some(Event::Error(Error::PartTooLarge {
                size,
                limit: self.limits.max_part,
            }));
        }
        self.scanned = self.buf.len().saturating_sub(needle.len() - 1);
        None
    }

    fn part(&mut self, data: Bytes) -> Event {
        self.state = State::Delimiter;
        Event::Part(Part {
            content_type: self.content_type.take(),
            data,
        })
    }

    /// Report `error` and look for the next delimiter line; the bytes of the bad part that are
    /// already here are dropped, later ones are skipped line by line.
    fn resync(&mut self, error: Error) -> Event {
        self.state = State::Delimiter;
        self.skipped = 0;
        self.quiet = matches!(error, Error::PartTooLarge { .. });
        if let Some(nl) = memchr::memchr(b'\n', &self.buf) {
            self.buf.advance(nl + 1);
        } else {
            self.buf.clear();
        }
        Event::Error(error)
    }
}

fn trim_cr(line: &[u8]) -> &[u8] {
    line.strip_suffix(b"\r").unwrap_or(line)
}

/// The boundary parameter of a `multipart/x-mixed-replace` Content-Type (RFC 2046 §5.1.1; quoted
/// or not), or None when the type is another one or the boundary is missing or unusable.
pub fn boundary_of(content_type: &str) -> Option<String> {
    let mut params = content_type.split(';');
    let kind = params.next()?.trim();
    if !kind.eq_ignore_ascii_case("multipart/x-mixed-replace") {
        return None;
    }
    params.find_map(|p| {
        let (name, value) = p.split_once('=')?;
        if !name.trim().eq_ignore_ascii_case("boundary") {
            return None;
        }
        let value = value.trim();
        let value = value
            .strip_prefix('"')
            .and_then(|v| v.strip_suffix('"'))
            .unwrap_or(value);
        // RFC 2046 allows 70 characters; cameras stay well below 200.
        (!value.is_empty() && value.len() <= 200 && !value.contains(['\r', '\n']))
            .then(|| value.to_owned())
    })
}

#[cfg(test)]
mod tests {
    use rand::{Rng, SeedableRng, rngs::SmallRng};

    use super::*;

    fn jpeg(n: u8, len: usize) -> Vec<u8> {
        let mut v = vec![0xFF, 0xD8];
        v.extend((0..len).map(|i| (i as u8).wrapping_mul(n)));
        v.extend_from_slice(&[0xFF, 0xD9]);
        v
    }

    /// Push `wire` in pieces of `step` bytes and collect everything.
    fn run(parser: &mut Parser, wire: &[u8], step: usize) -> Vec<Event> {
        let mut out = Vec::new();
        for chunk in wire.chunks(step.max(1)) {
            parser.push(chunk);
            while let Some(e) = parser.poll() {
                out.push(e);
            }
        }
        out
    }

    fn parts(events: &[Event]) -> Vec<&[u8]> {
        events
            .iter()
            .filter_map(|e| match e {
                Event::Part(p) => Some(&p.data[..]),
                _ => None,
            })
            .collect()
    }

    fn errors(events: &[Event]) -> Vec<&Error> {
        events
            .iter()
            .filter_map(|e| match e {
                Event::Error(err) => Some(err),
                _ => None,
            })
            .collect()
    }

    /// camnode's own framing (src/web/mjpeg.rs): CRLF only between parts.
    fn camnode_wire(frames: &[Vec<u8>]) -> Vec<u8> {
        let mut w = Vec::new();
        for (i, f) in frames.iter().enumerate() {
            if i > 0 {
                w.extend_from_slice(b"\r\n");
            }
            w.extend_from_slice(
                format!(
                    "--camnode-frame\r\nContent-Type: image/jpeg\r\nContent-Length: {}\r\nX-Frame-Sequence: {}\r\n\r\n",
                    f.len(),
                    i + 1
                )
                .as_bytes(),
            );
            w.extend_from_slice(f);
        }
        w
    }

    #[test]
    fn camnode_framing_in_any_split() {
        let frames: Vec<Vec<u8>> = (1..=3).map(|n| jpeg(n, 200 * n as usize)).collect();
        let wire = camnode_wire(&frames);
        for step in [1, 2, 3, 7, 64, 1000, wire.len()] {
            let mut p = Parser::new("camnode-frame", Limits::default());
            let events = run(&mut p, &wire, step);
            assert_eq!(
                parts(&events),
                frames.iter().map(Vec::as_slice).collect::<Vec<_>>(),
                "step {step}"
            );
            assert!(errors(&events).is_empty(), "step {step}: {events:?}");
            match &events[0] {
                Event::Part(part) => assert_eq!(part.content_type.as_deref(), Some("image/jpeg")),
                other => panic!("{other:?}"),
            }
        }
    }

    /// mjpg-streamer: a preamble-free stream whose parts end with CRLF CRLF before the next
    /// delimiter, with an X-Timestamp header.
    #[test]
    fn mjpg_streamer_framing() {
        let frames = [jpeg(3, 50), jpeg(5, 80)];
        let mut wire = Vec::new();
        for f in &frames {
            wire.extend_from_slice(
                format!(
                    "--boundarydonotcross\r\nContent-Type: image/jpeg\r\nContent-Length: {}\r\nX-Timestamp: 12.5\r\n\r\n",
                    f.len()
                )
                .as_bytes(),
            );
            wire.extend_from_slice(f);
            wire.extend_from_slice(b"\r\n\r\n");
        }
        let mut p = Parser::new("boundarydonotcross", Limits::default());
        let events = run(&mut p, &wire, 5);
        assert_eq!(parts(&events), vec![&frames[0][..], &frames[1][..]]);
        assert!(errors(&events).is_empty());
    }

    /// No Content-Length: the body ends at CRLF before the next delimiter; LF-only lines; a
    /// preamble; the declared boundary already starting with "--"; the closing delimiter.
    #[test]
    fn parts_without_length_and_quirks() {
        let a = b"\xff\xd8body with -- dashes\r\n and lines\xff\xd9".to_vec();
        let b = b"\xff\xd8second\xff\xd9".to_vec();
        let mut wire = b"this is a preamble\r\n".to_vec();
        for f in [&a, &b] {
            wire.extend_from_slice(b"--myboundary\nContent-Type: image/jpeg\n\n");
            wire.extend_from_slice(f);
            wire.extend_from_slice(b"\r\n");
        }
        wire.extend_from_slice(b"--myboundary--\r\nafter the end");
        for step in [1, 4, wire.len()] {
            // Declared as "--myboundary", written as "--myboundary".
            let mut p = Parser::new("--myboundary", Limits::default());
            let events = run(&mut p, &wire, step);
            assert_eq!(parts(&events), vec![&a[..], &b[..]], "step {step}");
            assert_eq!(events.last(), Some(&Event::End));
            assert!(errors(&events).is_empty(), "{events:?}");
            assert_eq!(p.buffered(), 0);
            // Declared as "myboundary", the RFC spelling.
            let mut p = Parser::new("myboundary", Limits::default());
            assert_eq!(parts(&run(&mut p, &wire, step)), vec![&a[..], &b[..]]);
        }
    }

    #[test]
    fn junk_without_boundary_is_an_error_and_bounded() {
        let limits = Limits {
            max_part: 10_000,
            max_head: 1000,
        };
        let mut p = Parser::new("b", limits);
        let mut errs = 0;
        // Lines of junk, then one long line without any line break.
        for _ in 0..1000 {
            p.push(b"no boundary here, just text\r\n");
            while let Some(e) = p.poll() {
                assert!(matches!(e, Event::Error(Error::MissingBoundary { .. })));
                errs += 1;
            }
            assert!(p.buffered() <= 1000 + 30);
        }
        for _ in 0..1000 {
            p.push(&[b'x'; 100]);
            while let Some(e) = p.poll() {
                assert!(matches!(e, Event::Error(Error::MissingBoundary { .. })));
                errs += 1;
            }
            assert!(p.buffered() <= 1000 + 100);
        }
        assert!(errs >= 4, "{errs}");
        // The stream recovers at the next delimiter.
        let f = jpeg(1, 10);
        p.push(format!("\r\n--b\r\nContent-Length: {}\r\n\r\n", f.len()).as_bytes());
        p.push(&f);
        let events: Vec<Event> = std::iter::from_fn(|| p.poll()).collect();
        assert_eq!(parts(&events), vec![&f[..]]);
    }

    #[test]
    fn oversized_parts_are_refused_then_the_stream_goes_on() {
        let limits = Limits {
            max_part: 1000,
            max_head: 200,
        };
        let good = jpeg(7, 100);
        let big = jpeg(9, 5000);
        // Announced by Content-Length: refused at the header, skipped without buffering.
        let wire = camnode_wire(&[good.clone(), big.clone(), good.clone()]);
        let mut p = Parser::new("camnode-frame", limits);
        let events = run(&mut p, &wire, 100);
        assert_eq!(parts(&events), vec![&good[..], &good[..]]);
        assert_eq!(
            errors(&events),
            vec![&Error::PartTooLarge {
                size: big.len(),
                limit: 1000
            }]
        );
        // Without Content-Length: found out by scanning, memory stays bounded.
        let mut wire = Vec::new();
        for f in [&good, &big, &good] {
            wire.extend_from_slice(b"--x\r\n\r\n");
            wire.extend_from_slice(f);
            wire.extend_from_slice(b"\r\n");
        }
        wire.extend_from_slice(b"--x\r\n");
        let mut p = Parser::new("x", limits);
        let mut events = Vec::new();
        for chunk in wire.chunks(10) {
            p.push(chunk);
            while let Some(e) = p.poll() {
                events.push(e);
            }
            assert!(p.buffered() <= 1000 + 200 + 10, "{}", p.buffered());
        }
        assert_eq!(parts(&events), vec![&good[..], &good[..]]);
        assert!(matches!(
            errors(&events)[..],
            [Error::PartTooLarge { limit: 1000, .. }]
        ));
    }

    #[test]
    fn bad_headers_cost_one_part() {
        let good = jpeg(2, 30);
        let mut wire = Vec::new();
        let part = |w: &mut Vec<u8>, head: &str, body: &[u8]| {
            w.extend_from_slice(head.as_bytes());
            w.extend_from_slice(body);
            w.extend_from_slice(b"\r\n");
        };
        part(
            &mut wire,
            "--b\r\nContent-Length: lots\r\n\r\n",
            b"\xff\xd8lost\xff\xd9",
        );
        part(
            &mut wire,
            &format!("--b\r\nContent-Length: {}\r\n\r\n", good.len()),
            &good,
        );
        part(&mut wire, "--b\r\nno colon here\r\n\r\n", b"lost");
        part(
            &mut wire,
            &format!("--b\r\nX-Long: {}\r\n\r\n", "y".repeat(500)),
            b"lost",
        );
        part(
            &mut wire,
            &format!("--b\r\nContent-Length: {}\r\n\r\n", good.len()),
            &good,
        );
        let mut p = Parser::new(
            "b",
            Limits {
                max_part: 10_000,
                max_head: 100,
            },
        );
        let events = run(&mut p, &wire, 3);
        assert_eq!(parts(&events), vec![&good[..], &good[..]]);
        let errs = errors(&events);
        assert!(
            matches!(
                errs[..],
                [
                    Error::BadHeader(_),
                    Error::BadHeader(_),
                    Error::HeadersTooLong { limit: 100 }
                ]
            ),
            "{errs:?}"
        );
        assert!(errs[0].to_string().contains("Content-Length \"lots\""));
    }

    #[test]
    fn random_bytes_never_panic_and_stay_bounded() {
        let limits = Limits {
            max_part: 4096,
            max_head: 512,
        };
        let mut rng = SmallRng::seed_from_u64(15);
        let alphabet = b"-\r\n:bContent-Length: 12\xff\xd8";
        for _ in 0..300 {
            let mut p = Parser::new("b", limits);
            for _ in 0..200 {
                let n = rng.random_range(0..300);
                let chunk: Vec<u8> = (0..n)
                    .map(|_| {
                        if rng.random_bool(0.8) {
                            alphabet[rng.random_range(0..alphabet.len())]
                        } else {
                            rng.random()
                        }
                    })
                    .collect();
                p.push(&chunk);
                while p.poll().is_some() {}
                assert!(p.buffered() <= 4096 + 512 + 300, "{}", p.buffered());
            }
        }
    }

    /// Bodies holding anything (boundaries, CRLFs, dashes) come back unchanged when framed with
    /// Content-Length, in any split (the fuzz target checks the same on arbitrary input).
    #[test]
    fn framed_bodies_come_back_unchanged() {
        let mut rng = SmallRng::seed_from_u64(16);
        let pieces: [&[u8]; 5] = [
            b"\r\n--b\r\n",
            b"--b--",
            b"\n",
            b"Content-Length: 3\r\n",
            b"\xff",
        ];
        for _ in 0..200 {
            let bodies: Vec<Vec<u8>> = (0..rng.random_range(1..6))
                .map(|_| {
                    (0..rng.random_range(0..20))
                        .flat_map(|_| pieces[rng.random_range(0..pieces.len())].to_vec())
                        .collect()
                })
                .collect();
            let mut wire = Vec::new();
            for body in &bodies {
                wire.extend_from_slice(
                    format!("--b\r\nContent-Length: {}\r\n\r\n", body.len()).as_bytes(),
                );
                wire.extend_from_slice(body);
                wire.extend_from_slice(b"\r\n");
            }
            let step = rng.random_range(1..40);
            let mut p = Parser::new("b", Limits::default());
            let events = run(&mut p, &wire, step);
            let want: Vec<&[u8]> = bodies.iter().map(Vec::as_slice).collect();
            assert_eq!(parts(&events), want);
            assert!(errors(&events).is_empty(), "{events:?}");
        }
    }

    #[test]
    fn boundary_from_content_type() {
        let b = |s| boundary_of(s);
        assert_eq!(
            b("multipart/x-mixed-replace; boundary=camnode-frame").as_deref(),
            Some("camnode-frame")
        );
        assert_eq!(
            b("Multipart/X-Mixed-Replace;charset=x; Boundary=\"--my boundary\"").as_deref(),
            Some("--my boundary")
        );
        assert_eq!(b("multipart/x-mixed-replace"), None);
        assert_eq!(b("multipart/x-mixed-replace; boundary="), None);
        assert_eq!(b("image/jpeg; boundary=x"), None);
    }
}
