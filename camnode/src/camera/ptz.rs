//! Pan/tilt/zoom. Values are normalised so that the same request works on every source:
//! `pan` and `tilt` from -1 (left/up edge) to 1 (right/down edge) of the movable range, `zoom`
//! from 1 (the full frame) to [`MAX_ZOOM`]. Digital PTZ crops the window they describe out of the
//! full frame and scales it back to the frame size (nearest neighbour) before encoding.

use serde::{Deserialize, Serialize};

use super::{RgbFrame, YcbcrFrame};

/// The largest zoom factor.
pub const MAX_ZOOM: f32 = 8.0;

/// A pan/tilt/zoom position.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Ptz {
    pub pan: f32,
    pub tilt: f32,
    pub zoom: f32,
}

impl Default for Ptz {
    fn default() -> Self {
        Ptz {
            pan: 0.0,
            tilt: 0.0,
            zoom: 1.0,
        }
    }
}

/// A PTZ value out of range.
#[derive(Debug, thiserror::Error, PartialEq)]
#[error("{field} = {value} is out of range; use {range}")]
pub struct PtzError {
    pub field: &'static str,
    pub value: f32,
    pub range: &'static str,
}

impl Ptz {
    /// Check the ranges (NaN is out of range).
    pub fn validated(self) -> Result<Ptz, PtzError> {
        let check = |field, value: f32, lo: f32, hi: f32, range| {
            if (lo..=hi).contains(&value) {
                Ok(())
            } else {
                Err(PtzError {
                    field,
                    value,
                    range,
                })
            }
        };
        check("pan", self.pan, -1.0, 1.0, "-1 (left) to 1 (right)")?;
        check("tilt", self.tilt, -1.0, 1.0, "-1 (up) to 1 (down)")?;
        check("zoom", self.zoom, 1.0, MAX_ZOOM, "1 (full frame) to 8")?;
        Ok(self)
    }

    /// True when this shows the full frame unchanged.
    pub fn is_identity(&self) -> bool {
        self.zoom <= 1.0
    }

    /// The source window (x, y, width, height) this position shows of a `w` x `h` frame.
    pub fn window(&self, w: u32, h: u32) -> (u32, u32, u32, u32) {
        let zoom = self.zoom.clamp(1.0, MAX_ZOOM);
        let cw = ((w as f32 / zoom).round() as u32).clamp(1, w);
        let ch = ((h as f32 / zoom).round() as u32).clamp(1, h);
        let place = |free: u32, v: f32| {
            ((free as f32 * (v.clamp(-1.0, 1.0) + 1.0) / 2.0).round() as u32).min(free)
        };
        (place(w - cw, self.pan), place(h - ch, self.tilt), cw, ch)
    }
}

/// Crop the window `ptz` describes out of `src` and scale it to `src`'s size into `dst`.
pub fn crop_scale(src: &RgbFrame, ptz: &Ptz, dst: &mut RgbFrame, xmap: &mut Vec<usize>) {
    let (w, h) = (src.width, src.height);
    dst.resize(w, h);
    let window = ptz.window(w, h);
    map_columns(window, w, 3, xmap);
    scale_plane(&src.data, &mut dst.data, window, (w, h), 3, xmap);
}

/// [`crop_scale`] for YCbCr planes: each plane is cropped and scaled the same way.
pub fn crop_scale_ycbcr(src: &YcbcrFrame, ptz: &Ptz, dst: &mut YcbcrFrame, xmap: &mut Vec<usize>) {
    let (w, h) = (src.width, src.height);
    dst.resize(w, h);
    let window = ptz.window(w, h);
    map_columns(window, w, 1, xmap);
    for (s, d) in [
        (&src.y, &mut dst.y),
        (&src.cb, &mut dst.cb),
        (&src.cr, &mut dst.cr),
    ] {
        scale_plane(s, d, window, (w, h), 1, xmap);
    }
}

/// For each output column, the byte offset of its source sample (nearest neighbour).
fn map_columns((x0, _, cw, _): (u32, u32, u32, u32), w: u32, bpp: usize, xmap: &mut Vec<usize>) {
    xmap.clear();
    xmap.extend((0..w as u64).map(|x| (x0 as u64 + x * cw as u64 / w as u64) as usize * bpp));
}

/// Scale the window of a plane of `bpp` bytes per sample to the full `w` x `h`.
fn scale_plane(
    src: &[u8],
    dst: &mut [u8],
    (_, y0, _, ch): (u32, u32, u32, u32),
    (w, h): (u32, u32),
    bpp: usize,
    xmap: &[usize],
) {
    let stride = w as usize * bpp;
    for y in 0..h as usize {
        let sy = y0 as usize + (y as u64 * ch as u64 / h as u64) as usize;
        let srow = &src[sy * stride..(sy + 1) * stride];
        let drow = &mut dst[y * stride..(y + 1) * stride];
        for (d, &sx) in drow.chunks_exact_mut(bpp).zip(xmap) {
            d.copy_from_slice(&srow[sx..sx + bpp]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_are_checked() {
        assert!(
            Ptz {
                pan: 1.0,
                tilt: -1.0,
                zoom: 8.0
            }
            .validated()
            .is_ok()
        );
        let e = Ptz {
            pan: 1.5,
            ..Ptz::default()
        }
        .validated()
        .unwrap_err();
        assert_eq!(e.field, "pan");
        assert!(
            Ptz {
                zoom: 0.5,
                ..Ptz::default()
            }
            .validated()
            .is_err()
        );
        assert!(
            Ptz {
                tilt: f32::NAN,
                ..Ptz::default()
            }
            .validated()
            .is_err()
        );
    }

    #[test]
    fn window_follows_pan_and_tilt() {
        assert_eq!(Ptz::default().window(640, 480), (0, 0, 640, 480));
        let z2 = Ptz {
            zoom: 2.0,
            ..Ptz::default()
        };
        assert_eq!(z2.window(640, 480), (160, 120, 320, 240));
        assert_eq!(
            Ptz {
                pan: -1.0,
                tilt: 1.0,
                ..z2
            }
            .window(640, 480),
            (0, 240, 320, 240)
        );
        assert_eq!(
            Ptz {
                pan: 1.0,
                tilt: -1.0,
                ..z2
            }
            .window(640, 480),
            (320, 0, 320, 240)
        );
    }

    #[test]
    fn crop_scale_magnifies_the_window() {
        // 4x2 picture: left half red, right half blue. Zoom 2 panned right shows only blue.
        let mut src = RgbFrame::new(4, 2);
        src.fill_rect(0, 0, 2, 2, [255, 0, 0]);
        src.fill_rect(2, 0, 2, 2, [0, 0, 255]);
        let mut dst = RgbFrame::new(1, 1);
        let mut xmap = Vec::new();
        crop_scale(
            &src,
            &Ptz {
                pan: 1.0,
                tilt: 0.0,
                zoom: 2.0,
            },
            &mut dst,
            &mut xmap,
        );
        assert_eq!((dst.width, dst.height), (4, 2));
        assert!(dst.data.chunks(3).all(|p| p == [0, 0, 255]));
        crop_scale(&src, &Ptz::default(), &mut dst, &mut xmap);
        assert_eq!(dst, src);
    }

    #[test]
    fn ycbcr_crop_scale_matches_rgb() {
        let mut scene = crate::camera::synthetic::Synthetic::new(64, 48, "p", "ptz");
        let rgb = scene.render_rgb(2.5, "c");
        let ycc = YcbcrFrame::from_rgb(&rgb);
        let ptz = Ptz {
            pan: -0.3,
            tilt: 0.8,
            zoom: 3.0,
        };
        let (mut a, mut b, mut xmap) = (RgbFrame::new(1, 1), YcbcrFrame::default(), Vec::new());
        crop_scale(&rgb, &ptz, &mut a, &mut xmap);
        crop_scale_ycbcr(&ycc, &ptz, &mut b, &mut xmap);
        assert_eq!(b, YcbcrFrame::from_rgb(&a));
    }
}
