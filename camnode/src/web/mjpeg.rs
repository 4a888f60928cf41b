//! MJPEG over HTTP: `multipart/x-mixed-replace`, one JPEG per part, each part with its own
//! `Content-Length` (as mjpg-streamer sends it, so clients can read parts without scanning for the
//! boundary). The JPEG bytes are the hub's shared `Bytes`: no copy per viewer.
//!
//! Each stream is a small task that waits for the hub's newest frame and pushes it into a channel
//! of depth 2; the response body drains the channel. A client that reads slowly fills the channel,
//! the task waits, and the hub's watch channel keeps only the newest frame meanwhile: that viewer
//! skips frames, nobody else notices.

use std::convert::Infallible;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use hyper::body::{Body, Frame};
use tokio::sync::{OwnedSemaphorePermit, mpsc};

use crate::camera::{EncodedFrame, Viewer};

/// The multipart boundary.
pub const BOUNDARY: &str = "camnode-frame";

/// The response's Content-Type.
pub fn content_type() -> String {
    format!("multipart/x-mixed-replace; boundary={BOUNDARY}")
}

/// The bytes before a part's JPEG: the CRLF ending the previous part (except for the first), the
/// boundary and the part headers.
pub fn part_header(frame: &EncodedFrame, first: bool) -> Bytes {
    let lead = if first { "" } else { "\r\n" };
    Bytes::from(format!(
        "{lead}--{BOUNDARY}\r\nContent-Type: image/jpeg\r\nContent-Length: {}\r\nX-Frame-Sequence: {}\r\n\r\n",
        frame.jpeg.len(),
        frame.seq
    ))
}

/// A response body fed from a channel.
#[derive(Debug)]
pub struct ChannelBody {
    rx: mpsc::Receiver<Bytes>,
}

impl Body for ChannelBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        self.rx
            .poll_recv(cx)
            .map(|chunk| chunk.map(|b| Ok(Frame::data(b))))
    }
}

/// Start streaming `viewer`'s frames. The permit (the cap on concurrent streams) is held until the
/// stream ends. A frame younger than `reuse` is sent at once so the picture appears immediately.
pub fn stream(mut viewer: Viewer, permit: OwnedSemaphorePermit, reuse: Duration) -> ChannelBody {
    let (tx, rx) = mpsc::channel::<Bytes>(2);
    tokio::spawn(async move {
        let _permit = permit;
        let mut pending: Option<Arc<EncodedFrame>> = viewer.recent(reuse);
        let mut first = true;
        loop {
            let frame = match pending.take() {
                Some(f) => f,
                None => tokio::select! {
                    f = viewer.next() => match f { Some(f) => f, None => break },
                    () = tx.closed() => break,
                },
            };
            if tx.send(part_header(&frame, first)).await.is_err()
                || tx.send(frame.jpeg.clone()).await.is_err()
            {
                break;
            }
            first = false;
        }
    });
    ChannelBody { rx }
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use super::*;

    /// Split a multipart body into its JPEGs, using each part's Content-Length.
    pub(crate) fn parts(mut body: &[u8]) -> Vec<&[u8]> {
        let mut out = Vec::new();
        let marker = format!("--{BOUNDARY}\r\n");
        while let Some(start) = body
            .windows(marker.len())
            .position(|w| w == marker.as_bytes())
        {
            let rest = &body[start + marker.len()..];
            let Some(end) = rest.windows(4).position(|w| w == b"\r\n\r\n") else {
                break;
            };
            let headers = std::str::from_utf8(&rest[..end]).unwrap();
            let len: usize = headers
                .lines()
                .find_map(|l| l.strip_prefix("Content-Length: "))
                .and_then(|v| v.parse().ok())
                .expect("Content-Length in every part");
            let data = &rest[end + 4..];
            if data.len() < len {
                break;
            }
            out.push(&data[..len]);
            body = &data[len..];
        }
        out
    }

    fn frame(seq: u64, jpeg: &'static [u8]) -> EncodedFrame {
        EncodedFrame {
            seq,
            jpeg: Bytes::from_static(jpeg),
            width: 8,
            height: 8,
            captured: Instant::now(),
            passthrough: false,
        }
    }

    #[test]
    fn framing_has_boundary_and_length_per_part() {
        let mut body = Vec::new();
        for (i, jpeg) in [&b"\xff\xd8first\xff\xd9"[..], b"\xff\xd8second one\xff\xd9"]
            .into_iter()
            .enumerate()
        {
            let f = frame(i as u64 + 1, jpeg);
            body.extend_from_slice(&part_header(&f, i == 0));
            body.extend_from_slice(&f.jpeg);
        }
        assert!(
            body.starts_with(
                b"--camnode-frame\r\nContent-Type: image/jpeg\r\nContent-Length: 9\r\n"
            )
        );
        // The second part starts after the first JPEG's end marker and a CRLF.
        let second =
            b"\xff\xd9\r\n--camnode-frame\r\nContent-Type: image/jpeg\r\nContent-Length: 14\r\n";
        assert!(body.windows(second.len()).any(|w| w == second));
        let p = parts(&body);
        assert_eq!(
            p,
            vec![
                &b"\xff\xd8first\xff\xd9"[..],
                &b"\xff\xd8second one\xff\xd9"[..]
            ]
        );
        assert!(content_type().ends_with(&format!("boundary={BOUNDARY}")));
    }
}
