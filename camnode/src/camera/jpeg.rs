//! JPEG encoding through jpeg-encoder (AVX2 when the CPU has it; feature `simd`), and the small
//! amount of JPEG marker handling a camera's MJPEG needs to be served as it is.
//!
//! YCbCr planes ([`YcbcrFrame`], what the synthetic source draws) go in through jpeg-encoder's
//! [`ImageBuffer`] trait, so no colour conversion runs: luma and (for 4:4:4) chroma rows are
//! copied as they are; for 4:2:0 the chroma is averaged over 2x2 pixels here, as libjpeg does
//! (jpeg-encoder's own subsampling takes the top-left pixel of each 2x2, or averages with a
//! per-sample loop that is slower than this). RGB ([`RgbFrame`], a webcam's converted frames)
//! takes jpeg-encoder's RGB path (its own AVX2 colour conversion).
//!
//! jpeg-encoder is the workspace's vendored copy (`vendor/jpeg-encoder`, 0.7.1 with AVX2
//! quantisation, AVX2 block fetch, bitmask-driven Huffman coding and a buffered bit writer; the
//! same bytes as upstream, see its `PATCHES.md`). Upstream 0.7.1 spent most of its time in a
//! scalar quantisation loop, a branch per coefficient in Huffman coding and per-8-byte calls
//! into the output writer; with the patches the AVX2 DCT is the largest single part, then
//! Huffman coding, quantisation and block fetch (perf, 1280x720 at quality 80). See `cam-bench`
//! for the comparison with libjpeg-turbo.

use std::sync::OnceLock;

use bytes::Bytes;
use jpeg_encoder::{ColorType, Encoder, EncodingError, ImageBuffer, JpegColorType, SamplingFactor};

use super::{RgbFrame, YcbcrFrame};

/// Encoding failed (a frame too large for JPEG, or a buffer of the wrong size).
#[derive(Debug, thiserror::Error)]
pub enum JpegError {
    #[error("{width}x{height} is too large for JPEG (at most 65535 on each side)")]
    TooLarge { width: u32, height: u32 },
    #[error("JPEG encoder: {0}")]
    Encoder(#[from] EncodingError),
    #[error("a JPEG encoder thread failed")]
    Worker,
}

/// A picture to encode.
#[derive(Clone, Copy, Debug)]
pub enum Picture<'a> {
    /// YCbCr planes: encoded without colour conversion.
    Ycbcr(&'a YcbcrFrame),
    /// RGB: jpeg-encoder converts it.
    Rgb(&'a RgbFrame),
}

impl<'a> Picture<'a> {
    pub fn width(&self) -> u32 {
        match self {
            Picture::Ycbcr(f) => f.width,
            Picture::Rgb(f) => f.width,
        }
    }

    pub fn height(&self) -> u32 {
        match self {
            Picture::Ycbcr(f) => f.height,
            Picture::Rgb(f) => f.height,
        }
    }

    /// The size as JPEG takes it, after checking that the buffers hold the whole picture.
    fn checked_size(&self) -> Result<(u16, u16), JpegError> {
        let (width, height) = (self.width(), self.height());
        let (Ok(w), Ok(h)) = (u16::try_from(width), u16::try_from(height)) else {
            return Err(JpegError::TooLarge { width, height });
        };
        let n = usize::from(w) * usize::from(h);
        let (length, required) = match self {
            Picture::Ycbcr(f) => (f.y.len().min(f.cb.len()).min(f.cr.len()), n),
            Picture::Rgb(f) => (f.data.len(), n * 3),
        };
        if length < required {
            return Err(EncodingError::BadImageData { length, required }.into());
        }
        Ok((w, h))
    }

    /// Rows `y0..y1` (within a checked size).
    fn rows(&self, y0: usize, y1: usize) -> Rows<'a> {
        match *self {
            Picture::Ycbcr(f) => {
                let w = f.width as usize;
                Rows::Ycbcr([&f.y, &f.cb, &f.cr].map(|p| &p[y0 * w..y1 * w]))
            }
            Picture::Rgb(f) => {
                let stride = f.width as usize * 3;
                Rows::Rgb(&f.data[y0 * stride..y1 * stride])
            }
        }
    }
}

/// A band of rows of a picture, as the encoder reads them.
#[derive(Clone, Copy, Debug)]
enum Rows<'a> {
    Ycbcr([&'a [u8]; 3]),
    Rgb(&'a [u8]),
}

/// YCbCr planes as jpeg-encoder's [`ImageBuffer`]: it asks for one line at a time and appends it
/// to one buffer per component.
#[derive(Debug)]
struct Planes<'a> {
    planes: [&'a [u8]; 3],
    width: u16,
    height: u16,
    /// 4:2:0: the encoder then reads chroma at even lines and even columns only (the top-left
    /// sample of each 2x2), so those get the 2x2 average; odd lines are copied as they are.
    subsample: bool,
}

impl ImageBuffer for Planes<'_> {
    fn get_jpeg_color_type(&self) -> JpegColorType {
        JpegColorType::Ycbcr
    }

    fn width(&self) -> u16 {
        self.width
    }

    fn height(&self) -> u16 {
        self.height
    }

    fn fill_buffers(&self, y: u16, buffers: &mut [Vec<u8>; 4]) {
        let w = usize::from(self.width);
        let line = usize::from(y) * w;
        let [luma, cb, cr] = self.planes;
        let [out_y, out_cb, out_cr, _] = buffers;
        out_y.extend_from_slice(&luma[line..line + w]);
        // MCU rows (and our strips) start at multiples of 16, so even lines of the picture are
        // even lines of the encoder's buffers. The last line pairs with itself.
        if self.subsample && y.is_multiple_of(2) {
            let below = usize::from((y + 1).min(self.height - 1)) * w;
            average_2x2(&cb[line..line + w], &cb[below..below + w], out_cb);
            average_2x2(&cr[line..line + w], &cr[below..below + w], out_cr);
        } else {
            out_cb.extend_from_slice(&cb[line..line + w]);
            out_cr.extend_from_slice(&cr[line..line + w]);
        }
    }
}

/// Append one line of 2x2 averages of lines `top` and `bottom`, each average written twice (at
/// the even column the encoder reads, and the odd one next to it). Rounding as libjpeg's
/// `h2v2_downsample`: (sum + bias) / 4 with the bias alternating 1, 2 from sample to sample. A
/// lone last column is paired with itself.
fn average_2x2(top: &[u8], bottom: &[u8], out: &mut Vec<u8>) {
    let start = out.len();
    out.resize(start + top.len(), 0);
    // 16 columns at a time, written so that the compiler keeps them in vector registers (SSE2,
    // which every x86-64 has): each column pair is one u16 lane, left sample in the low byte.
    let mut dst = out[start..].chunks_exact_mut(16);
    let (mut t, mut b) = (top.chunks_exact(16), bottom.chunks_exact(16));
    let pairs = |s: &[u8]| -> [u16; 8] {
        std::array::from_fn(|k| u16::from_le_bytes([s[2 * k], s[2 * k + 1]]))
    };
    for ((d, t), b) in (&mut dst).zip(&mut t).zip(&mut b) {
        let (t, b) = (pairs(t), pairs(b));
        let mut avg = [0u16; 8];
        for k in 0..8 {
            let sum = (t[k] & 0xFF) + (t[k] >> 8) + (b[k] & 0xFF) + (b[k] >> 8);
            avg[k] = ((sum + 1 + (k as u16 & 1)) >> 2) * 0x0101;
        }
        for (d, v) in d.chunks_exact_mut(2).zip(avg) {
            d.copy_from_slice(&v.to_le_bytes());
        }
    }
    // The rest (an even number of samples came before, so the bias starts at 1 again).
    let (t, b) = (t.remainder(), b.remainder());
    for (k, d) in dst.into_remainder().chunks_mut(2).enumerate() {
        let (i, j) = (2 * k, (2 * k + 1).min(t.len() - 1));
        let sum = u16::from(t[i]) + u16::from(t[j]) + u16::from(b[i]) + u16::from(b[j]);
        d.fill(((sum + 1 + (k as u16 & 1)) >> 2) as u8);
    }
}

/// Encode an RGB frame at `quality` (1-100) on this thread. `size_hint` pre-sizes the output
/// (e.g. the previous frame's size) so the encoder does not reallocate while writing.
pub fn encode_rgb(frame: &RgbFrame, quality: u8, size_hint: usize) -> Result<Bytes, JpegError> {
    encode(Picture::Rgb(frame), quality, 1, size_hint)
}

/// Encode on this thread, appending to `out`: a caller that encodes frame after frame can keep
/// one buffer and its capacity.
pub fn encode_into(picture: Picture<'_>, quality: u8, out: &mut Vec<u8>) -> Result<(), JpegError> {
    let (w, h) = picture.checked_size()?;
    encode_plain(picture.rows(0, usize::from(h)), w, h, quality, 0, out)
}

/// jpeg-encoder with our fixed choices: 4:2:0 below quality 90, 4:4:4 from 90 (its default, set
/// explicitly because [`encode`] relies on the MCU size), baseline with the standard Huffman
/// tables (no progressive, no optimised tables), optional restart interval.
fn encode_plain(
    rows: Rows<'_>,
    w: u16,
    h: u16,
    quality: u8,
    restart: u16,
    out: &mut Vec<u8>,
) -> Result<(), JpegError> {
    let quality = quality.clamp(1, 100);
    let subsample = quality < 90;
    let mut enc = Encoder::new(out, quality);
    enc.set_sampling_factor(if subsample {
        SamplingFactor::F_2_2
    } else {
        SamplingFactor::F_1_1
    });
    enc.set_restart_interval(restart);
    match rows {
        Rows::Ycbcr(planes) => enc.encode_image(Planes {
            planes,
            width: w,
            height: h,
            subsample,
        })?,
        Rows::Rgb(rgb) => enc.encode(rgb, w, h, ColorType::Rgb)?,
    }
    Ok(())
}

/// The height of one MCU row for `quality` (16 with 4:2:0, 8 with 4:4:4).
fn mcu_height(quality: u8) -> usize {
    if quality.clamp(1, 100) < 90 { 16 } else { 8 }
}

/// Encode `picture` at `quality` (1-100) with `threads` threads; `size_hint` pre-sizes the output
/// (e.g. the previous frame's size) so the encoder does not reallocate while writing.
///
/// With more than one thread the picture is cut into horizontal strips of whole MCU rows, each
/// strip is encoded on its own thread (the first on this one) with a restart marker after every
/// MCU row (ITU T.81 section F.1.2.3: DC prediction restarts there, so strips are independent),
/// and the strips' entropy-coded data are joined under one header with the restart markers
/// renumbered. The result decodes to exactly the same pixels as a single-threaded encode; it is a
/// few bytes per MCU row larger.
pub fn encode(
    picture: Picture<'_>,
    quality: u8,
    threads: usize,
    size_hint: usize,
) -> Result<Bytes, JpegError> {
    let (w, h) = picture.checked_size()?;
    let mcu = mcu_height(quality);
    let mcu_rows = usize::from(h).div_ceil(mcu);
    let threads = threads.clamp(1, mcu_rows.max(1));
    let mut out = Vec::with_capacity(size_hint.max(16 * 1024));
    if threads == 1 {
        encode_plain(picture.rows(0, usize::from(h)), w, h, quality, 0, &mut out)?;
        return Ok(Bytes::from(out));
    }
    // One restart interval = one MCU row.
    let per_row = usize::from(w).div_ceil(mcu) as u16;
    let strips: Vec<(usize, usize)> = (0..threads)
        .map(|k| (mcu_rows * k / threads, mcu_rows * (k + 1) / threads))
        .collect();
    let encode_strip = |&(r0, r1): &(usize, usize)| -> Result<Vec<u8>, JpegError> {
        let (y0, y1) = (r0 * mcu, (r1 * mcu).min(usize::from(h)));
        let mut part = Vec::with_capacity(size_hint / threads + 4096);
        let rows = picture.rows(y0, y1);
        encode_plain(rows, w, (y1 - y0) as u16, quality, per_row, &mut part)?;
        Ok(part)
    };
    let encode_strip = &encode_strip;
    let parts: Vec<Result<Vec<u8>, JpegError>> = std::thread::scope(|scope| {
        let others: Vec<_> = strips[1..]
            .iter()
            .map(|strip| scope.spawn(move || encode_strip(strip)))
            .collect();
        let first = encode_strip(&strips[0]);
        std::iter::once(first)
            .chain(
                others
                    .into_iter()
                    .map(|t| t.join().unwrap_or(Err(JpegError::Worker))),
            )
            .collect()
    });
    let mut intervals = 0;
    for (k, part) in parts.into_iter().enumerate() {
        let part = part?;
        let Some(scan_start) = scan_start(&part) else {
            return Err(JpegError::Worker);
        };
        if !part.ends_with(&[0xFF, 0xD9]) {
            return Err(JpegError::Worker);
        }
        if k == 0 {
            out.extend_from_slice(&part[..scan_start]);
            set_height(&mut out, h);
        } else {
            // The marker that ends the previous strip's last interval.
            out.extend_from_slice(&[0xFF, 0xD0 + ((intervals - 1) % 8) as u8]);
        }
        let base = out.len();
        out.extend_from_slice(&part[scan_start..part.len() - 2]);
        if k > 0 {
            renumber_restarts(&mut out[base..], intervals);
        }
        intervals += strips[k].1 - strips[k].0;
    }
    out.extend_from_slice(&[0xFF, 0xD9]);
    Ok(Bytes::from(out))
}

/// Where the entropy-coded data starts: just after the SOS segment.
fn scan_start(jpeg: &[u8]) -> Option<usize> {
    let mut pos = 2;
    while let Some((marker, len)) = segment_at(jpeg, pos) {
        pos += 2 + len;
        if marker == 0xDA {
            return Some(pos);
        }
    }
    None
}

/// Write the full picture height into the frame header (SOFn: length, precision, then height).
fn set_height(header: &mut [u8], height: u16) {
    let mut pos = 2;
    while let Some((marker, len)) = segment_at(header, pos) {
        if matches!(marker, 0xC0..=0xC3) && len >= 7 {
            header[pos + 5..pos + 7].copy_from_slice(&height.to_be_bytes());
            return;
        }
        pos += 2 + len;
    }
}

/// Shift every RSTn marker in entropy-coded data by `offset` (mod 8). Inside entropy-coded data a
/// 0xFF byte is always followed by a stuffed 0x00 or a marker, so FF D0-D7 can only be RSTn.
fn renumber_restarts(scan: &mut [u8], offset: usize) {
    let mut i = 0;
    while i + 1 < scan.len() {
        if scan[i] == 0xFF && (0xD0..=0xD7).contains(&scan[i + 1]) {
            scan[i + 1] = 0xD0 + ((usize::from(scan[i + 1] - 0xD0) + offset) % 8) as u8;
            i += 1;
        }
        i += 1;
    }
}

/// The width and height in a JPEG's frame header (SOFn), or None if it has none before the scan.
pub fn dimensions(jpeg: &[u8]) -> Option<(u32, u32)> {
    segments(jpeg).find_map(|(marker, body)| {
        let is_sof = matches!(marker, 0xC0..=0xCF) && !matches!(marker, 0xC4 | 0xC8 | 0xCC);
        (is_sof && body.len() >= 5).then(|| {
            (
                u32::from(u16::from_be_bytes([body[3], body[4]])),
                u32::from(u16::from_be_bytes([body[1], body[2]])),
            )
        })
    })
}

/// Many UVC webcams send MJPEG frames without Huffman tables (DHT), relying on the standard ones
/// (ITU T.81 K.3). Browsers do not all accept that, so insert the standard tables when a frame has
/// none, as mjpg-streamer does. Frames that have tables are returned unchanged (no copy).
pub fn with_huffman_tables(jpeg: Bytes) -> Bytes {
    if jpeg.len() < 4 || jpeg[..2] != [0xFF, 0xD8] || segments(&jpeg).any(|(m, _)| m == 0xC4) {
        return jpeg;
    }
    let dht = standard_dht();
    let mut out = Vec::with_capacity(jpeg.len() + dht.len());
    out.extend_from_slice(&jpeg[..2]);
    out.extend_from_slice(dht);
    out.extend_from_slice(&jpeg[2..]);
    Bytes::from(out)
}

/// The DHT segments for the standard tables: jpeg-encoder writes exactly those when it does not
/// optimise tables, so take them from a tiny picture it encodes once.
fn standard_dht() -> &'static [u8] {
    static DHT: OnceLock<Vec<u8>> = OnceLock::new();
    DHT.get_or_init(|| {
        let tiny = RgbFrame::new(16, 16);
        let Ok(jpeg) = encode_rgb(&tiny, 80, 0) else {
            return Vec::new();
        };
        let mut out = Vec::new();
        let mut pos = 2;
        while let Some((marker, len)) = segment_at(&jpeg, pos) {
            if marker == 0xC4 {
                out.extend_from_slice(&jpeg[pos..pos + 2 + len]);
            }
            if marker == 0xDA {
                break;
            }
            pos += 2 + len;
        }
        out
    })
}

/// The marker and length (including the two length bytes) of the segment at `pos`.
fn segment_at(jpeg: &[u8], pos: usize) -> Option<(u8, usize)> {
    let head = jpeg.get(pos..pos + 4)?;
    if head[0] != 0xFF {
        return None;
    }
    let len = usize::from(u16::from_be_bytes([head[2], head[3]]));
    (len >= 2 && pos + 2 + len <= jpeg.len()).then_some((head[1], len))
}

/// The header segments of a JPEG up to and including the start of scan: (marker, body without the
/// length bytes). Stops quietly at anything malformed.
fn segments(jpeg: &[u8]) -> impl Iterator<Item = (u8, &[u8])> {
    let mut pos = if jpeg.starts_with(&[0xFF, 0xD8]) {
        2
    } else {
        jpeg.len()
    };
    let mut done = false;
    std::iter::from_fn(move || {
        if done {
            return None;
        }
        let (marker, len) = segment_at(jpeg, pos)?;
        let body = &jpeg[pos + 4..pos + 2 + len];
        pos += 2 + len;
        done = marker == 0xDA;
        Some((marker, body))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode(jpeg: &[u8]) -> (Vec<u8>, u16, u16) {
        let mut d = jpeg_decoder::Decoder::new(jpeg);
        let px = d.decode().expect("valid JPEG");
        let info = d.info().unwrap();
        (px, info.width, info.height)
    }

    #[test]
    fn encoded_frame_decodes_with_its_size() {
        let mut f = RgbFrame::new(64, 48);
        f.fill_rect(0, 0, 32, 48, [200, 30, 30]);
        let jpeg = encode_rgb(&f, 80, 0).unwrap();
        let (px, w, h) = decode(&jpeg);
        assert_eq!((w, h), (64, 48));
        assert_eq!(dimensions(&jpeg), Some((64, 48)));
        // The red half stays red (within JPEG's tolerance).
        assert!(px[0] > 150 && px[1] < 80, "{:?}", &px[..3]);
    }

    #[test]
    fn parallel_strips_decode_to_the_same_pixels() {
        let mut scene = crate::camera::synthetic::Synthetic::new(200, 152, "p", "parallel");
        let rgb = scene.render_rgb(0.7, "12:00:00.0 UTC");
        let ycc = YcbcrFrame::from_rgb(&rgb);
        for picture in [Picture::Rgb(&rgb), Picture::Ycbcr(&ycc)] {
            for quality in [80, 95] {
                let single = decode(&encode(picture, quality, 1, 0).unwrap());
                for threads in [2, 3, 4, 64] {
                    let jpeg = encode(picture, quality, threads, 0).unwrap();
                    assert_eq!(dimensions(&jpeg), Some((200, 152)));
                    // Restart markers in sequence: RST0, RST1, ..., RST7, RST0, ...
                    let rst: Vec<u8> = jpeg
                        .windows(2)
                        .filter(|w| w[0] == 0xFF && (0xD0..=0xD7).contains(&w[1]))
                        .map(|w| w[1] - 0xD0)
                        .collect();
                    assert_eq!(
                        rst.len(),
                        152usize.div_ceil(mcu_height(quality)) - 1,
                        "q{quality} t{threads}"
                    );
                    assert!(
                        rst.iter()
                            .enumerate()
                            .all(|(i, r)| usize::from(*r) == i % 8),
                        "{rst:?}"
                    );
                    assert_eq!(decode(&jpeg), single, "q{quality} t{threads}");
                }
            }
        }
    }

    /// YCbCr planes give the JPEG that jpeg-encoder makes from the same picture in RGB: the very
    /// same bytes with 4:4:4; with 4:2:0 our chroma is the 2x2 average instead of its top-left
    /// sample, so the pixels are as close as JPEG allows (closer on coloured edges).
    #[test]
    fn ycbcr_planes_encode_like_rgb() {
        for (w, h) in [(200, 152), (64, 48), (40, 24)] {
            let rgb = crate::camera::synthetic::Synthetic::new(w, h, "q", "ycbcr")
                .render_rgb(3.1, "01:02:03.4 UTC");
            let ycc = YcbcrFrame::from_rgb(&rgb);
            let via_rgb = encode_rgb(&rgb, 95, 0).unwrap();
            let mut out = b"kept".to_vec();
            encode_into(Picture::Ycbcr(&ycc), 95, &mut out).unwrap();
            assert_eq!(&out[..4], b"kept");
            assert!(out[4..] == via_rgb[..], "{w}x{h}");

            let (a, ..) = decode(&encode_rgb(&rgb, 80, 0).unwrap());
            let (b, ..) = decode(&encode(Picture::Ycbcr(&ycc), 80, 1, 0).unwrap());
            let off = |x: &[u8]| -> f64 {
                let d: u64 = x
                    .iter()
                    .zip(&rgb.data)
                    .map(|(p, q)| u64::from(p.abs_diff(*q)))
                    .sum();
                d as f64 / x.len() as f64
            };
            println!(
                "{w}x{h}: mean error {:.2} (RGB path {:.2})",
                off(&b),
                off(&a)
            );
            assert!(
                off(&b) <= off(&a) + 0.25,
                "{w}x{h}: {} vs {}",
                off(&b),
                off(&a)
            );
        }
    }

    #[test]
    fn chroma_is_averaged_as_libjpeg_does() {
        // Reference: libjpeg's h2v2_downsample (bias 1, 2, 1, 2, ...), the last column
        // replicated for odd widths.
        let reference = |t: &[u8], b: &[u8]| -> Vec<u8> {
            let n = t.len();
            let mut out = vec![0; n];
            for k in 0..n.div_ceil(2) {
                let (i, j) = (2 * k, (2 * k + 1).min(n - 1));
                let s = u32::from(t[i]) + u32::from(t[j]) + u32::from(b[i]) + u32::from(b[j]);
                let v = ((s + 1 + (k as u32 & 1)) / 4) as u8;
                out[i] = v;
                out[j] = v;
            }
            out
        };
        for n in [1, 2, 3, 4, 5, 7, 8, 9, 16, 31, 640] {
            let t: Vec<u8> = (0..n).map(|i| (i * 37 % 256) as u8).collect();
            let b: Vec<u8> = (0..n).map(|i| 255 - (i * 11 % 256) as u8).collect();
            let mut out = vec![9];
            average_2x2(&t, &b, &mut out);
            assert_eq!(out[0], 9);
            assert_eq!(out[1..], reference(&t, &b), "n = {n}");
        }
        let mut out = Vec::new();
        average_2x2(&[255, 255], &[255, 255], &mut out);
        assert_eq!(out, [255, 255]);
    }

    #[test]
    fn too_large_is_an_error_not_a_panic() {
        let f = RgbFrame {
            width: 70_000,
            height: 1,
            data: vec![],
        };
        assert!(matches!(
            encode_rgb(&f, 80, 0),
            Err(JpegError::TooLarge { .. })
        ));
        let f = RgbFrame {
            width: 8,
            height: 8,
            data: vec![0; 5],
        };
        assert!(matches!(encode_rgb(&f, 80, 0), Err(JpegError::Encoder(_))));
        let mut f = YcbcrFrame::new(8, 8);
        f.cr.truncate(63);
        assert!(matches!(
            encode(Picture::Ycbcr(&f), 80, 2, 0),
            Err(JpegError::Encoder(EncodingError::BadImageData { .. }))
        ));
        assert!(encode(Picture::Ycbcr(&YcbcrFrame::new(0, 0)), 80, 1, 0).is_err());
    }

    #[test]
    fn missing_huffman_tables_are_inserted() {
        let jpeg = encode_rgb(&RgbFrame::new(16, 16), 80, 0).unwrap();
        // Strip every DHT segment, as UVC cameras do.
        let mut stripped = jpeg[..2].to_vec();
        let mut pos = 2;
        while let Some((marker, len)) = segment_at(&jpeg, pos) {
            if marker != 0xC4 {
                stripped.extend_from_slice(&jpeg[pos..pos + 2 + len]);
            }
            if marker == 0xDA {
                stripped.extend_from_slice(&jpeg[pos + 2 + len..]);
                break;
            }
            pos += 2 + len;
        }
        assert!(!segments(&stripped).any(|(m, _)| m == 0xC4));
        let fixed = with_huffman_tables(Bytes::from(stripped));
        assert_eq!(
            segments(&fixed).filter(|(m, _)| *m == 0xC4).count(),
            segments(&jpeg).filter(|(m, _)| *m == 0xC4).count()
        );
        assert_eq!(decode(&fixed).1, 16);
        // A complete JPEG is passed through as it is.
        assert_eq!(with_huffman_tables(jpeg.clone()), jpeg);
        assert_eq!(dimensions(b"not a jpeg"), None);
    }
}
