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
//!   as YCbCr planes ([`SourceFrame::Ycbcr`], what JPEG stores, so the encoder converts no
//!   colours), as RGB pixels ([`SourceFrame::Rgb`]) or as a JPEG the camera already encoded
//!   ([`SourceFrame::Jpeg`], a webcam's MJPEG, passed through untouched when no digital
//!   pan/tilt/zoom is asked for).
//! - [`synthetic::Synthetic`] draws a moving scene that differs per node, with the node's name and a
//!   clock, using the bitmap font in [`font`], straight into YCbCr planes ([`Canvas`] lets the same
//!   drawing code paint RGB too).
//! - `webcam::Webcam` (cargo feature `webcam`) captures through nokhwa/V4L2 in its own thread.
//! - [`http_source`] (a network camera's MJPEG stream or snapshot URL, Basic/Digest through
//!   [`http_auth`], https through rustls) and [`file_source`] (a video file decoded by an ffmpeg
//!   child) bring camera JPEGs in through a [`feed::Feed`]: a producer task on its own thread,
//!   connected only while the hub asks for frames, reading `multipart/x-mixed-replace` with the
//!   sans-IO [`multipart`] parser; failures show as the "no signal" picture with the reason.
//! - [`hub::FrameHub`] owns the source on its own thread, encodes each frame once and only while
//!   someone watches, and shares the encoded bytes with every viewer.
//! - [`jpeg`] wraps jpeg-encoder (SIMD on): YCbCr planes go in through its `ImageBuffer` trait
//!   (2x2 chroma averaging for 4:2:0 done there), RGB through its own conversion; large pictures
//!   can be encoded in strips on several threads joined with restart markers; [`ptz`] is digital
//!   pan/tilt/zoom (crop + scale).

pub mod feed;
pub mod file_source;
pub mod font;
pub mod http_auth;
pub mod http_source;
pub mod hub;
pub mod jpeg;
pub mod multipart;
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

impl Canvas for RgbFrame {
    fn width(&self) -> u32 {
        self.width
    }

    fn height(&self) -> u32 {
        self.height
    }

    fn fill_rect(&mut self, x: i64, y: i64, w: i64, h: i64, rgb: [u8; 3]) {
        RgbFrame::fill_rect(self, x, y, w, h, rgb);
    }

    fn fill_sum(&mut self, rows: &[[u8; 3]], cols: &[[u8; 3]]) {
        let stride = self.width as usize * 3;
        for (line, base) in self.data.chunks_exact_mut(stride).zip(rows) {
            for (px, add) in line.chunks_exact_mut(3).zip(cols) {
                for c in 0..3 {
                    px[c] = base[c].saturating_add(add[c]);
                }
            }
        }
    }
}

/// A picture in YCbCr as JPEG stores it (JFIF: ITU-R BT.601 coefficients, full range), planar
/// and at full resolution: `y`, `cb` and `cr` each hold `width` x `height` samples, rows top to
/// bottom without padding. The synthetic source draws in it directly, so no colour conversion runs
/// per frame; the encoder averages the chroma planes 2x2 itself for 4:2:0.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct YcbcrFrame {
    pub width: u32,
    pub height: u32,
    pub y: Vec<u8>,
    pub cb: Vec<u8>,
    pub cr: Vec<u8>,
}

/// The fixed-point RGB -> YCbCr coefficients, scaled by 2^16, and each plane's offset with the
/// rounding term: exactly `jpeg_encoder::rgb_to_ycbcr`, split so that the conversion of a sum is
/// the sum of the conversions (see [`YcbcrFrame::fill_sum`]).
const YCC: [([i32; 3], i32); 3] = [
    ([19595, 38470, 7471], 0x7FFF),
    ([-11059, -21709, 32768], (128 << 16) + 0x7FFF),
    ([32768, -27439, -5329], (128 << 16) + 0x7FFF),
];

fn ycc_linear(plane: usize, rgb: [u8; 3]) -> i32 {
    let (k, _) = YCC[plane];
    k[0] * i32::from(rgb[0]) + k[1] * i32::from(rgb[1]) + k[2] * i32::from(rgb[2])
}

impl YcbcrFrame {
    /// A black picture.
    pub fn new(width: u32, height: u32) -> YcbcrFrame {
        let n = width as usize * height as usize;
        YcbcrFrame {
            width,
            height,
            y: vec![0; n],
            cb: vec![128; n],
            cr: vec![128; n],
        }
    }

    /// Resize the planes (contents unspecified afterwards).
    pub fn resize(&mut self, width: u32, height: u32) {
        let n = width as usize * height as usize;
        self.width = width;
        self.height = height;
        self.y.resize(n, 0);
        self.cb.resize(n, 128);
        self.cr.resize(n, 128);
    }

    /// The same picture converted from RGB (the conversion jpeg-encoder applies to RGB input).
    pub fn from_rgb(rgb: &RgbFrame) -> YcbcrFrame {
        let mut out = YcbcrFrame::new(rgb.width, rgb.height);
        for (i, px) in rgb.data.chunks_exact(3).enumerate() {
            (out.y[i], out.cb[i], out.cr[i]) = jpeg_encoder::rgb_to_ycbcr(px[0], px[1], px[2]);
        }
        out
    }

    fn planes_mut(&mut self) -> [&mut Vec<u8>; 3] {
        [&mut self.y, &mut self.cb, &mut self.cr]
    }
}

impl Canvas for YcbcrFrame {
    fn width(&self) -> u32 {
        self.width
    }

    fn height(&self) -> u32 {
        self.height
    }

    fn fill_rect(&mut self, x: i64, y: i64, w: i64, h: i64, rgb: [u8; 3]) {
        let x0 = x.clamp(0, self.width as i64) as usize;
        let x1 = (x + w).clamp(0, self.width as i64) as usize;
        let y0 = y.clamp(0, self.height as i64) as usize;
        let y1 = (y + h).clamp(0, self.height as i64) as usize;
        if x0 >= x1 {
            return;
        }
        let (luma, cb, cr) = jpeg_encoder::rgb_to_ycbcr(rgb[0], rgb[1], rgb[2]);
        let stride = self.width as usize;
        for (plane, value) in self.planes_mut().into_iter().zip([luma, cb, cr]) {
            for row in y0..y1 {
                plane[row * stride + x0..row * stride + x1].fill(value);
            }
        }
    }

    /// The conversion is linear before its final rounding, so when no channel sum saturates,
    /// the sample of `rows[y] + cols[x]` is `(row term + column term) >> 16`: one add per sample,
    /// bit-exact with converting the RGB sum.
    fn fill_sum(&mut self, rows: &[[u8; 3]], cols: &[[u8; 3]]) {
        let (w, h) = (self.width as usize, self.height as usize);
        if w == 0 {
            return;
        }
        let (rows, cols) = (&rows[..h.min(rows.len())], &cols[..w.min(cols.len())]);
        let max = |v: &[[u8; 3]], c: usize| v.iter().map(|p| u16::from(p[c])).max().unwrap_or(0);
        if (0..3).any(|c| max(rows, c) + max(cols, c) > 255) {
            // Some sums saturate: convert pixel by pixel.
            for (y, base) in rows.iter().enumerate() {
                for (x, add) in cols.iter().enumerate() {
                    let px = [0, 1, 2].map(|c| base[c].saturating_add(add[c]));
                    let (l, b, r) = jpeg_encoder::rgb_to_ycbcr(px[0], px[1], px[2]);
                    (self.y[y * w + x], self.cb[y * w + x], self.cr[y * w + x]) = (l, b, r);
                }
            }
            return;
        }
        let mut col_terms = vec![0i32; cols.len()];
        for (p, plane) in self.planes_mut().into_iter().enumerate() {
            for (t, add) in col_terms.iter_mut().zip(cols) {
                *t = ycc_linear(p, *add);
            }
            for (line, base) in plane.chunks_exact_mut(w).zip(rows) {
                let row_term = ycc_linear(p, *base) + YCC[p].1;
                for (out, t) in line.iter_mut().zip(&col_terms) {
                    *out = ((row_term + t) >> 16) as u8;
                }
            }
        }
    }
}

/// Something the synthetic scene and the font draw on: an RGB or a YCbCr picture. Colours are
/// always given as RGB.
pub trait Canvas {
    fn width(&self) -> u32;
    fn height(&self) -> u32;
    /// Fill an axis-aligned rectangle, clipped to the picture.
    fn fill_rect(&mut self, x: i64, y: i64, w: i64, h: i64, rgb: [u8; 3]);
    /// Paint the pixel at (x, y) with `rows[y] + cols[x]`, per RGB channel, saturating (the
    /// synthetic background: a vertical gradient plus a horizontal pattern). Pixels beyond either
    /// slice are left alone.
    fn fill_sum(&mut self, rows: &[[u8; 3]], cols: &[[u8; 3]]);
}

/// One picture from a source.
#[derive(Debug)]
pub enum SourceFrame<'a> {
    /// Pixels to encode, as YCbCr planes.
    Ycbcr(&'a YcbcrFrame),
    /// Pixels to encode, as RGB.
    Rgb(&'a RgbFrame),
    /// A JPEG the camera encoded itself (MJPEG), with its size.
    Jpeg {
        data: Bytes,
        width: u32,
        height: u32,
    },
}

/// How a source that depends on something outside (a network camera, ffmpeg) fares.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct SourceHealth {
    /// Why there is no picture now, if there is none.
    pub trouble: Option<String>,
    /// Pictures received from the upstream.
    pub frames: u64,
    /// Malformed input dropped: bad multipart parts, parts that are no JPEG.
    pub malformed: u64,
    /// Failed connections, stalls, ended streams, ffmpeg exits.
    pub failures: u64,
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

    /// How the source fares (network and file sources report their upstream's trouble).
    fn health(&self) -> SourceHealth {
        SourceHealth::default()
    }

    /// Pan/tilt/zoom asked for. The default: everything digital.
    fn set_ptz(&mut self, ptz: Ptz) -> PtzSplit {
        PtzSplit {
            hardware: Ptz::default(),
            digital: ptz,
        }
    }
}

/// Open the configured source. `auto` tries the webcam (when built with the `webcam` feature) and
/// falls back to the synthetic source with a log line; `webcam` fails without one. A network
/// camera or a video file fails here only for what cannot get better by waiting (a bad URL, a
/// missing file or ffmpeg); an unreachable camera is retried while someone watches.
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
    match &config.source {
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
        SourceKind::Url(url) => {
            let feed = http_source::open(url, config.fps, config.width, config.height)
                .map_err(|e| anyhow::anyhow!("source = {}: {e:#}", redact(url)))?;
            Ok(Box::new(feed))
        }
        SourceKind::File(path) => {
            let feed = file_source::open(path, config.width, config.height)
                .map_err(|e| anyhow::anyhow!("source = file:{}: {e:#}", path.display()))?;
            Ok(Box::new(feed))
        }
    }
}

/// A URL as it may be logged: any password replaced by `***`.
fn redact(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut u) if u.password().is_some() => {
            let _ = u.set_password(Some("***"));
            u.to_string()
        }
        Ok(u) => u.to_string(),
        // Unparsable: keep only what follows the user information, if any.
        Err(_) => match url.rsplit_once('@') {
            Some((_, host)) => format!("(URL with credentials)@{host}"),
            None => url.to_owned(),
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
