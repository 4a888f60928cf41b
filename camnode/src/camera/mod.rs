//! Picture sources (synthetic, webcam) and the JPEG pipeline.
//!
//! ```text
//!  source thread(s)            hub thread                          viewers (tokio tasks)
//!  ---------------            ----------                          ---------------------
//!  synthetic: renders   -->   waits until someone watches   -->   watch::Receiver<Arc<EncodedFrame>>
//!  webcam: nokhwa capture     pulls one frame per tick            each MJPEG stream / snapshot
//!  (own thread, latest        applies digital pan/tilt/zoom       takes the newest frame; a slow
//!  frame kept in a slot)      encodes once (or passes the         one skips frames, never slows
//!                             camera's MJPEG through)             the others
//! ```
//!
//! - [`FrameSource`] is the one interface every source implements: hand out the next picture,
//!   either as RGB pixels ([`SourceFrame::Rgb`]) or as a JPEG the camera already encoded
//!   ([`SourceFrame::Jpeg`], a webcam's MJPEG, passed through untouched when no digital
//!   pan/tilt/zoom is asked for).
//! - [`synthetic::Synthetic`] draws a moving scene that differs per node, with the node's name and a
//!   clock, using the bitmap font in [`font`].
//! - `webcam::Webcam` (cargo feature `webcam`) captures through nokhwa/V4L2 in its own thread.
//! - [`hub::FrameHub`] owns the source on its own thread, encodes each frame once and only while
//!   someone watches, and shares the encoded bytes with every viewer.
//! - [`jpeg`] wraps jpeg-encoder (SIMD on) and encodes large pictures in strips on several threads
//!   joined with restart markers; [`ptz`] is digital pan/tilt/zoom (crop + scale).

pub mod font;
pub mod hub;
pub mod jpeg;
pub mod ptz;
pub mod synthetic;
#[cfg(feature = "webcam")]
pub mod webcam;

use std::time::Instant;

use bytes::Bytes;

use crate::config::{Config, SourceKind};
pub use hub::{EncodedFrame, FrameHub, HubHandle, HubSettings, HubStats, Viewer};
pub use ptz::Ptz;

/// An RGB picture, 3 bytes per pixel, rows top to bottom without padding.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RgbFrame {
    pub width: u32,
    pub height: u32,
    pub data: Vec<u8>,
}

impl RgbFrame {
    /// A black picture.
    pub fn new(width: u32, height: u32) -> RgbFrame {
        RgbFrame {
            width,
            height,
            data: vec![0; width as usize * height as usize * 3],
        }
    }

    /// Resize the buffer (contents unspecified afterwards).
    pub fn resize(&mut self, width: u32, height: u32) {
        self.width = width;
        self.height = height;
        self.data.resize(width as usize * height as usize * 3, 0);
    }

    /// Fill an axis-aligned rectangle, clipped to the picture.
    pub fn fill_rect(&mut self, x: i64, y: i64, w: i64, h: i64, rgb: [u8; 3]) {
        let x0 = x.clamp(0, self.width as i64) as usize;
        let x1 = (x + w).clamp(0, self.width as i64) as usize;
        let y0 = y.clamp(0, self.height as i64) as usize;
        let y1 = (y + h).clamp(0, self.height as i64) as usize;
        if x0 >= x1 {
            return;
        }
        let stride = self.width as usize * 3;
        for row in y0..y1 {
            let line = &mut self.data[row * stride + x0 * 3..row * stride + x1 * 3];
            for px in line.chunks_exact_mut(3) {
                px.copy_from_slice(&rgb);
            }
        }
    }
}

/// One picture from a source.
#[derive(Debug)]
pub enum SourceFrame<'a> {
    /// Pixels to encode.
    Rgb(&'a RgbFrame),
    /// A JPEG the camera encoded itself (MJPEG), with its size.
    Jpeg {
        data: Bytes,
        width: u32,
        height: u32,
    },
}

/// What a source did with a pan/tilt/zoom request.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct PtzSplit {
    /// The part the camera carries out itself (its own pan/tilt/zoom controls).
    pub hardware: Ptz,
    /// The part left for the hub to do digitally (crop + scale before encoding).
    pub digital: Ptz,
}

/// A picture source. Runs on the hub's thread; a source that needs its own capture thread
/// (the webcam) starts it itself.
pub trait FrameSource: Send {
    /// A short description for logs and the status endpoint ("synthetic 640x480", ...).
    fn describe(&self) -> String;

    /// The next picture, due at `due`: a source that makes pictures on demand waits until then;
    /// a camera returns its newest frame (or a "no signal" picture if none came in time).
    fn next_frame(&mut self, due: Instant) -> SourceFrame<'_>;

    /// The node's name changed (the synthetic source draws it).
    fn set_label(&mut self, _label: &str) {}

    /// Pan/tilt/zoom asked for. The default: everything digital.
    fn set_ptz(&mut self, ptz: Ptz) -> PtzSplit {
        PtzSplit {
            hardware: Ptz::default(),
            digital: ptz,
        }
    }
}

/// Open the configured source. `auto` tries the webcam (when built with the `webcam` feature) and
/// falls back to the synthetic source with a log line; `webcam` fails without one.
pub fn open_source(
    config: &Config,
    seed: &str,
    label: &str,
) -> anyhow::Result<Box<dyn FrameSource>> {
    let synthetic = || -> Box<dyn FrameSource> {
        Box::new(synthetic::Synthetic::new(
            config.width,
            config.height,
            seed,
            label,
        ))
    };
    match config.source {
        SourceKind::Synthetic => Ok(synthetic()),
        SourceKind::Webcam => {
            open_webcam(config).map_err(|e| anyhow::anyhow!("source = webcam: {e}"))
        }
        SourceKind::Auto => match open_webcam(config) {
            Ok(cam) => Ok(cam),
            Err(e) => {
                tracing::info!("no webcam ({e}); using the synthetic source");
                Ok(synthetic())
            }
        },
    }
}

#[cfg(feature = "webcam")]
fn open_webcam(config: &Config) -> anyhow::Result<Box<dyn FrameSource>> {
    let cam = webcam::Webcam::open(config.device, config.width, config.height, config.fps)?;
    Ok(Box::new(cam))
}

#[cfg(not(feature = "webcam"))]
fn open_webcam(_config: &Config) -> anyhow::Result<Box<dyn FrameSource>> {
    anyhow::bail!("this camnode was built without webcam support (cargo feature \"webcam\")")
}
