//! JPEG encoding through jpeg-encoder (AVX2 when the CPU has it; feature `simd`), and the small
//! amount of JPEG marker handling a camera's MJPEG needs to be served as it is.

use std::sync::OnceLock;

use bytes::Bytes;
use jpeg_encoder::{ColorType, Encoder, EncodingError, SamplingFactor};

use super::RgbFrame;

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

/// Encode an RGB frame at `quality` (1-100). `size_hint` pre-sizes the output (e.g. the previous
/// frame's size) so the encoder does not reallocate while writing.
pub fn encode_rgb(frame: &RgbFrame, quality: u8, size_hint: usize) -> Result<Bytes, JpegError> {
    let (Ok(w), Ok(h)) = (u16::try_from(frame.width), u16::try_from(frame.height)) else {
        return Err(JpegError::TooLarge {
            width: frame.width,
            height: frame.height,
        });
    };
    Ok(Bytes::from(encode_plain(
        &frame.data,
        w,
        h,
        quality,
        0,
        size_hint,
    )?))
}

/// jpeg-encoder with our fixed choices: 4:2:0 below quality 90, 4:4:4 from 90 (its default, set
/// explicitly because [`encode_rgb_parallel`] relies on the MCU size), optional restart interval.
fn encode_plain(
    rgb: &[u8],
    w: u16,
    h: u16,
    quality: u8,
    restart: u16,
    size_hint: usize,
) -> Result<Vec<u8>, JpegError> {
    let quality = quality.clamp(1, 100);
    let mut out = Vec::with_capacity(size_hint.max(16 * 1024));
    let mut enc = Encoder::new(&mut out, quality);
    enc.set_sampling_factor(if quality < 90 {
        SamplingFactor::F_2_2
    } else {
        SamplingFactor::F_1_1
    });
    enc.set_restart_interval(restart);
    enc.encode(rgb, w, h, ColorType::Rgb)?;
    Ok(out)
}

/// The height of one MCU row for `quality` (16 with 4:2:0, 8 with 4:4:4).
fn mcu_height(quality: u8) -> usize {
    if quality.clamp(1, 100) < 90 { 16 } else { 8 }
}

/// Encode with `threads` threads: the picture is cut into horizontal strips of whole MCU rows,
/// each strip is encoded on its own thread with a restart marker after every MCU row (ITU T.81
/// section F.1.2.3: DC prediction restarts there, so strips are independent), and the strips'
/// entropy-coded data are joined under one header with the restart markers renumbered. The result
/// decodes to exactly the same pixels as [`encode_rgb`]; it is a few bytes per MCU row larger.
pub fn encode_rgb_parallel(
    frame: &RgbFrame,
    quality: u8,
    threads: usize,
    size_hint: usize,
) -> Result<Bytes, JpegError> {
    let (Ok(w), Ok(h)) = (u16::try_from(frame.width), u16::try_from(frame.height)) else {
        return Err(JpegError::TooLarge {
            width: frame.width,
            height: frame.height,
        });
    };
    let mcu = mcu_height(quality);
    let mcu_rows = usize::from(h).div_ceil(mcu);
    let threads = threads.clamp(1, mcu_rows.max(1));
    let stride = usize::from(w) * 3;
    if threads == 1 || frame.data.len() < stride * usize::from(h) {
        return encode_rgb(frame, quality, size_hint);
    }
    // One restart interval = one MCU row.
    let per_row = usize::from(w).div_ceil(mcu) as u16;
    let strips: Vec<(usize, usize)> = (0..threads)
        .map(|k| (mcu_rows * k / threads, mcu_rows * (k + 1) / threads))
        .collect();
    let parts: Vec<Result<Vec<u8>, JpegError>> = std::thread::scope(|scope| {
        let handles: Vec<_> = strips
            .iter()
            .map(|&(r0, r1)| {
                let (y0, y1) = (r0 * mcu, (r1 * mcu).min(usize::from(h)));
                let rgb = &frame.data[y0 * stride..y1 * stride];
                let hint = size_hint / threads + 4096;
                scope.spawn(move || encode_plain(rgb, w, (y1 - y0) as u16, quality, per_row, hint))
            })
            .collect();
        handles
            .into_iter()
            .map(|t| t.join().unwrap_or(Err(JpegError::Worker)))
            .collect()
    });
    let mut out = Vec::with_capacity(size_hint.max(16 * 1024));
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
        let frame = scene.render(0.7, "12:00:00.0 UTC").clone();
        for quality in [80, 95] {
            let single = decode(&encode_rgb(&frame, quality, 0).unwrap());
            for threads in [2, 3, 4, 64] {
                let jpeg = encode_rgb_parallel(&frame, quality, threads, 0).unwrap();
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
