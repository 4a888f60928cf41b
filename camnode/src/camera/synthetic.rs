//! The synthetic source: a moving scene that needs no hardware. Colours, shapes and their paths
//! come from a seed (the node id), so every node's picture looks different; the node's name and a
//! UTC clock (HH:MM:SS.t) are drawn on it with the built-in font. The scene is drawn straight into
//! YCbCr planes, what JPEG stores, so the encoder converts no colours: one add per sample for the
//! background (a vertical gradient plus a scrolling pattern, see [`Canvas::fill_sum`]), then
//! filled shapes and text. The same drawing code paints RGB ([`Synthetic::render_rgb`]), and the
//! two agree exactly (`ycbcr_rendering_is_the_rgb_picture_converted`).

use std::time::{Instant, SystemTime, UNIX_EPOCH};

use super::font::{draw_label, text_size};
use super::{Canvas, FrameSource, RgbFrame, SourceFrame, YcbcrFrame};

/// A shape bouncing around the picture.
#[derive(Clone, Copy, Debug)]
struct Shape {
    round: bool,
    rgb: [u8; 3],
    /// Size as a fraction of the picture height.
    size: f64,
    /// Speed in "picture widths per second" along x and y.
    vx: f64,
    vy: f64,
    /// Start phase (0-2) of the x and y triangle waves.
    px: f64,
    py: f64,
}

/// The synthetic picture source.
#[derive(Debug)]
pub struct Synthetic {
    frame: YcbcrFrame,
    label: String,
    start: Instant,
    frames: u64,
    shapes: Vec<Shape>,
    /// Background colours (top, bottom) and the scrolling band's colour.
    top: [u8; 3],
    bottom: [u8; 3],
    band: [u8; 3],
    band_speed: f64,
    /// Scratch for the background: each row's colour and each column's addition.
    rows: Vec<[u8; 3]>,
    cols: Vec<[u8; 3]>,
}

/// splitmix64: a tiny, well-mixed generator; all we need to turn a seed into a scene.
fn splitmix(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// FNV-1a of a string: the scene seed.
fn fnv1a(text: &str) -> u64 {
    text.bytes().fold(0xCBF2_9CE4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01B3)
    })
}

/// Triangle wave in [0, 1] with period 2.
fn tri(x: f64) -> f64 {
    let m = x.rem_euclid(2.0);
    if m > 1.0 { 2.0 - m } else { m }
}

impl Synthetic {
    /// A `width` x `height` scene seeded by `seed` (e.g. the node id), labelled with `label`.
    pub fn new(width: u32, height: u32, seed: &str, label: &str) -> Synthetic {
        let mut s = fnv1a(seed);
        let mut unit = move || (splitmix(&mut s) >> 11) as f64 / (1u64 << 53) as f64;
        let colour = |unit: &mut dyn FnMut() -> f64, lo: f64, hi: f64| -> [u8; 3] {
            let mut c = [0u8; 3];
            for v in &mut c {
                *v = (255.0 * (lo + (hi - lo) * unit())) as u8;
            }
            c
        };
        let top = colour(&mut unit, 0.05, 0.45);
        let bottom = colour(&mut unit, 0.05, 0.45);
        let band = colour(&mut unit, 0.0, 0.25);
        let mut shapes = Vec::new();
        for i in 0..5 {
            let rgb = colour(&mut unit, 0.35, 1.0);
            shapes.push(Shape {
                round: i % 2 == 0,
                rgb,
                size: 0.12 + 0.18 * unit(),
                vx: 0.08 + 0.25 * unit(),
                vy: 0.08 + 0.25 * unit(),
                px: 2.0 * unit(),
                py: 2.0 * unit(),
            });
        }
        let band_speed = 0.05 + 0.2 * unit();
        Synthetic {
            frame: YcbcrFrame::new(width, height),
            label: label.to_owned(),
            start: Instant::now(),
            frames: 0,
            shapes,
            top,
            bottom,
            band,
            band_speed,
            rows: Vec::new(),
            cols: Vec::new(),
        }
    }

    /// Render the scene as it is `t` seconds after start, with `clock` as the time of day.
    pub fn render(&mut self, t: f64, clock: &str) -> &YcbcrFrame {
        let mut frame = std::mem::take(&mut self.frame);
        self.render_into(&mut frame, t, clock);
        self.frame = frame;
        &self.frame
    }

    /// The same scene as [`render`](Self::render), as an RGB picture (for tools that take RGB,
    /// such as the benchmark's libjpeg-turbo runs).
    pub fn render_rgb(&mut self, t: f64, clock: &str) -> RgbFrame {
        let mut frame = RgbFrame::new(self.frame.width, self.frame.height);
        self.render_into(&mut frame, t, clock);
        frame
    }

    /// Draw the scene on any canvas (of any size: the scene scales with it).
    pub fn render_into<C: Canvas>(&mut self, frame: &mut C, t: f64, clock: &str) {
        self.frames += 1;
        let (w, h) = (frame.width() as usize, frame.height() as usize);
        // Background: a vertical gradient from `top` to `bottom`, plus a horizontal brightness
        // ramp that scrolls with time (bands sweeping across the picture), capped per channel by
        // `band` on red and green. The sums never saturate (channels below 0.45 * 255 plus
        // at most 64), which keeps the YCbCr canvas on its exact one-add-per-sample path.
        let shift = t * self.band_speed;
        self.cols.clear();
        self.cols.extend((0..w).map(|x| {
            let r = (tri(4.0 * (x as f64 / w as f64) + shift) * 64.0) as u8;
            [r.min(self.band[0]), r.min(self.band[1]), r]
        }));
        self.rows.clear();
        self.rows.extend((0..h).map(|y| {
            let f = y as f64 / h.max(1) as f64;
            let mut base = [0u8; 3];
            for ((b, top), bottom) in base.iter_mut().zip(self.top).zip(self.bottom) {
                *b = (f64::from(top) * (1.0 - f) + f64::from(bottom) * f) as u8;
            }
            base
        }));
        frame.fill_sum(&self.rows, &self.cols);
        // Bouncing shapes.
        for s in &self.shapes {
            let size = (s.size * h as f64).max(2.0);
            let x = tri(s.px + t * s.vx) * (w as f64 - size).max(0.0);
            let y = tri(s.py + t * s.vy * w as f64 / h.max(1) as f64) * (h as f64 - size).max(0.0);
            if s.round {
                let r = size / 2.0;
                let (cx, cy) = (x + r, y + r);
                for row in (y as i64)..((y + size) as i64) {
                    let dy = row as f64 + 0.5 - cy;
                    let half = (r * r - dy * dy).max(0.0).sqrt();
                    let x0 = (cx - half).round() as i64;
                    frame.fill_rect(x0, row, (cx + half).round() as i64 - x0, 1, s.rgb);
                }
            } else {
                frame.fill_rect(x as i64, y as i64, size as i64, size as i64, s.rgb);
            }
        }
        // A sweeping scan line, one full sweep every 4 seconds.
        let sx = (tri(t / 2.0) * (w.saturating_sub(4)) as f64) as i64;
        frame.fill_rect(sx, 0, 4, h as i64, [240, 240, 240]);
        // Name, clock and frame counter.
        let scale = (h as u32 / 120).max(1);
        let m = i64::from(scale * 4);
        draw_label(frame, m, m, scale, &self.label, [255, 255, 255]);
        let (_, th) = text_size(clock, scale);
        draw_label(
            frame,
            m,
            h as i64 - m - i64::from(th),
            scale,
            clock,
            [255, 230, 120],
        );
        let counter = format!("#{}", self.frames);
        let (cw, _) = text_size(&counter, scale);
        draw_label(
            frame,
            w as i64 - m - i64::from(cw),
            h as i64 - m - i64::from(th),
            scale,
            &counter,
            [180, 220, 255],
        );
    }
}

/// The time of day in UTC as HH:MM:SS.t.
pub fn utc_clock(now: SystemTime) -> String {
    let d = now.duration_since(UNIX_EPOCH).unwrap_or_default();
    let s = d.as_secs() % 86_400;
    format!(
        "{:02}:{:02}:{:02}.{} UTC",
        s / 3600,
        s / 60 % 60,
        s % 60,
        d.subsec_millis() / 100
    )
}

/// Draw a "no signal" picture: dark grey, the message in the middle, the clock below it.
pub fn draw_no_signal<C: Canvas + ?Sized>(frame: &mut C, label: &str, message: &str, clock: &str) {
    let (w, h) = (frame.width(), frame.height());
    frame.fill_rect(0, 0, i64::from(w), i64::from(h), [40, 40, 40]);
    let scale = (h / 60).max(1);
    let (tw, th) = text_size(message, scale);
    let y = i64::from(h / 2) - i64::from(th);
    draw_label(
        frame,
        i64::from(w.saturating_sub(tw) / 2),
        y,
        scale,
        message,
        [255, 80, 80],
    );
    let small = (scale / 2).max(1);
    let (cw, ch) = text_size(clock, small);
    draw_label(
        frame,
        i64::from(w.saturating_sub(cw) / 2),
        y + i64::from(th) + i64::from(ch),
        small,
        clock,
        [220, 220, 220],
    );
    draw_label(
        frame,
        i64::from(small * 4),
        i64::from(small * 4),
        small,
        label,
        [255, 255, 255],
    );
}

impl FrameSource for Synthetic {
    fn describe(&self) -> String {
        format!("synthetic {}x{}", self.frame.width, self.frame.height)
    }

    fn next_frame(&mut self, due: Instant) -> SourceFrame<'_> {
        let now = Instant::now();
        if due > now {
            std::thread::sleep(due - now);
        }
        let t = self.start.elapsed().as_secs_f64();
        let clock = utc_clock(SystemTime::now());
        SourceFrame::Ycbcr(self.render(t, &clock))
    }

    fn set_label(&mut self, label: &str) {
        label.clone_into(&mut self.label);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn differing_pixels(a: &YcbcrFrame, b: &YcbcrFrame) -> usize {
        (0..a.y.len())
            .filter(|&i| (a.y[i], a.cb[i], a.cr[i]) != (b.y[i], b.cb[i], b.cr[i]))
            .count()
    }

    #[test]
    fn frames_differ_over_time() {
        let mut s = Synthetic::new(320, 240, "node-a", "camera 1");
        let a = s.render(0.0, "00:00:00.0 UTC").clone();
        let b = s.render(0.5, "00:00:00.5 UTC").clone();
        assert_eq!(a.y.len(), 320 * 240);
        assert!(
            differing_pixels(&a, &b) > 320 * 240 / 20,
            "{}",
            differing_pixels(&a, &b)
        );
    }

    #[test]
    fn nodes_get_different_scenes() {
        let a = Synthetic::new(320, 240, "node-a", "x")
            .render(1.0, "c")
            .clone();
        let b = Synthetic::new(320, 240, "node-b", "x")
            .render(1.0, "c")
            .clone();
        assert!(differing_pixels(&a, &b) > 320 * 240 / 2);
        // The same seed gives the same scene.
        let c = Synthetic::new(320, 240, "node-a", "x")
            .render(1.0, "c")
            .clone();
        assert_eq!(a, c);
    }

    #[test]
    fn label_changes_the_picture() {
        let mut s = Synthetic::new(320, 240, "n", "camera 1");
        let a = s.render(1.0, "c").clone();
        s.set_label("porch");
        let b = s.render(1.0, "c").clone();
        assert!(differing_pixels(&a, &b) > 0);
    }

    /// The YCbCr planes are exactly what converting the RGB picture gives: the picture looks the
    /// same as when it was drawn in RGB and converted by the encoder.
    #[test]
    fn ycbcr_rendering_is_the_rgb_picture_converted() {
        for (w, h, seed) in [
            (320, 240, "node-a"),
            (640, 480, "cam-bench"),
            (200, 152, "z"),
        ] {
            for t in [0.0, 1.234, 77.7] {
                let ycc = Synthetic::new(w, h, seed, "camera 1")
                    .render(t, "12:34:56.7 UTC")
                    .clone();
                let rgb = Synthetic::new(w, h, seed, "camera 1").render_rgb(t, "12:34:56.7 UTC");
                assert!(ycc == YcbcrFrame::from_rgb(&rgb), "{w}x{h} {seed} t={t}");
            }
        }
    }

    #[test]
    fn saturating_backgrounds_convert_exactly_too() {
        let (rows, cols) = (
            [[250, 10, 128], [0, 255, 3]],
            [[10, 0, 200], [0, 0, 0], [255; 3]],
        );
        let mut rgb = RgbFrame::new(3, 2);
        let mut ycc = YcbcrFrame::new(3, 2);
        rgb.fill_sum(&rows, &cols);
        ycc.fill_sum(&rows, &cols);
        assert_eq!(ycc, YcbcrFrame::from_rgb(&rgb));
        // Without saturation (the fast path), and on an empty picture.
        let (rows, cols) = (
            [[100, 20, 0], [0, 114, 5]],
            [[63, 0, 64], [1, 2, 3], [0; 3]],
        );
        rgb.fill_sum(&rows, &cols);
        ycc.fill_sum(&rows, &cols);
        assert_eq!(ycc, YcbcrFrame::from_rgb(&rgb));
        YcbcrFrame::new(0, 0).fill_sum(&rows, &cols);
    }

    #[test]
    fn clock_format() {
        let t =
            UNIX_EPOCH + std::time::Duration::from_millis(((13 * 60 + 4) * 60 + 5) * 1000 + 678);
        assert_eq!(utc_clock(t), "13:04:05.6 UTC");
    }

    #[test]
    fn tiny_pictures_do_not_panic() {
        let mut s = Synthetic::new(8, 8, "n", "a long label that does not fit");
        s.render(3.3, "12:00:00.0 UTC");
        let mut f = RgbFrame::new(8, 8);
        draw_no_signal(&mut f, "cam", "NO SIGNAL", "c");
        Synthetic::new(8, 8, "n", "x").render_rgb(1.0, "c");
    }
}
