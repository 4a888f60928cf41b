//! The frame hub: one thread that owns the source, encodes each frame once, and only while
//! someone watches, and shares the encoded bytes with every viewer.
//!
//! - Demand: every [`Viewer`] (an MJPEG stream, a snapshot waiting for its frame) counts as one.
//!   With none the thread sleeps on a condition variable: no rendering, no encoding.
//! - Pacing: frames are due every 1/fps; when the thread falls behind it skips to "now" instead of
//!   bursting to catch up.
//! - Sharing: the newest frame sits in a `tokio::sync::watch` channel as an `Arc<EncodedFrame>`;
//!   a viewer always takes the newest one, so a slow viewer skips frames and never holds up the
//!   hub or the other viewers.
//! - Pan/tilt/zoom and the label are set through the [`HubHandle`]; the thread hands them to the
//!   source between frames, and crops/scales what the source leaves to be done digitally.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use bytes::Bytes;
use serde::Serialize;
use tokio::sync::watch;

use super::jpeg::{self, Picture};
use super::ptz::{crop_scale, crop_scale_ycbcr};
use super::{FrameSource, Ptz, PtzSplit, RgbFrame, SourceFrame, SourceHealth, YcbcrFrame};

/// Frame rate, JPEG quality and encoder threads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HubSettings {
    pub fps: u32,
    pub quality: u8,
    /// Threads per encode: 1 = single-threaded; more cut pictures of at least 320x240 into strips
    /// ([`jpeg::encode`]); 0 = one per core, at most 4.
    pub encode_threads: usize,
}

impl HubSettings {
    /// Single-threaded encoding.
    pub fn new(fps: u32, quality: u8) -> HubSettings {
        HubSettings {
            fps,
            quality,
            encode_threads: 1,
        }
    }
}

/// One encoded picture, shared by every viewer.
#[derive(Debug)]
pub struct EncodedFrame {
    /// Counts published frames from 1; a viewer that sees a gap has skipped frames.
    pub seq: u64,
    pub jpeg: Bytes,
    pub width: u32,
    pub height: u32,
    pub captured: Instant,
    /// The camera's own JPEG, passed through without re-encoding.
    pub passthrough: bool,
}

/// Counters for the status endpoint and the benchmark.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct HubStats {
    pub source: String,
    /// Viewers right now (streams plus snapshots waiting for a frame).
    pub viewers: usize,
    /// Frames published since start.
    pub published: u64,
    /// Frames this process encoded (equals `published` minus `passthrough`).
    pub encodes: u64,
    /// Camera JPEGs published as they came.
    pub passthrough: u64,
    /// Frames the encoder failed on.
    pub errors: u64,
    /// Frames published per second over the last two seconds.
    pub fps: f64,
    pub target_fps: u32,
    pub quality: u8,
    pub encode_threads: usize,
    /// The pan/tilt/zoom asked for, and how the source split it.
    pub ptz: Ptz,
    pub ptz_hardware: Ptz,
    pub ptz_digital: Ptz,
    /// The upstream of a network camera or video file source.
    pub source_health: SourceHealth,
}

#[derive(Debug)]
struct Demand {
    viewers: usize,
    shutdown: bool,
}

#[derive(Debug)]
struct Controls {
    ptz: Ptz,
    ptz_gen: u64,
    label: String,
    label_gen: u64,
    split: PtzSplit,
}

#[derive(Debug)]
struct Shared {
    settings: HubSettings,
    demand: Mutex<Demand>,
    wake: Condvar,
    controls: Mutex<Controls>,
    tx: watch::Sender<Option<Arc<EncodedFrame>>>,
    published: AtomicU64,
    encodes: AtomicU64,
    passthrough: AtomicU64,
    errors: AtomicU64,
    recent: Mutex<VecDeque<Instant>>,
    source: Mutex<String>,
    health: Mutex<SourceHealth>,
}

/// Lock, ignoring poisoning: every critical section here leaves the data consistent.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The hub: owns the thread. Dropping it stops the thread.
#[derive(Debug)]
pub struct FrameHub {
    handle: HubHandle,
    thread: Option<JoinHandle<()>>,
}

/// A cheap, cloneable handle for the web side.
#[derive(Clone, Debug)]
pub struct HubHandle {
    shared: Arc<Shared>,
}

/// A viewer: counts as demand while it lives, and receives the newest frames.
#[derive(Debug)]
pub struct Viewer {
    shared: Arc<Shared>,
    rx: watch::Receiver<Option<Arc<EncodedFrame>>>,
}

impl FrameHub {
    /// Start the hub thread with `source`.
    pub fn start(
        source: Box<dyn FrameSource>,
        settings: HubSettings,
        label: &str,
    ) -> std::io::Result<FrameHub> {
        let encode_threads = match settings.encode_threads {
            0 => std::thread::available_parallelism()
                .map_or(1, |n| n.get())
                .min(4),
            n => n.min(16),
        };
        let settings = HubSettings {
            fps: settings.fps.clamp(1, 240),
            quality: settings.quality.clamp(1, 100),
            encode_threads,
        };
        let shared = Arc::new(Shared {
            settings,
            demand: Mutex::new(Demand {
                viewers: 0,
                shutdown: false,
            }),
            wake: Condvar::new(),
            controls: Mutex::new(Controls {
                ptz: Ptz::default(),
                ptz_gen: 0,
                label: label.to_owned(),
                label_gen: 0,
                split: PtzSplit {
                    hardware: Ptz::default(),
                    digital: Ptz::default(),
                },
            }),
            tx: watch::Sender::new(None),
            published: AtomicU64::new(0),
            encodes: AtomicU64::new(0),
            passthrough: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            recent: Mutex::new(VecDeque::new()),
            source: Mutex::new(source.describe()),
            health: Mutex::new(source.health()),
        });
        let thread_shared = shared.clone();
        let thread = std::thread::Builder::new()
            .name("camnode-hub".into())
            .spawn(move || run(&thread_shared, source))?;
        Ok(FrameHub {
            handle: HubHandle { shared },
            thread: Some(thread),
        })
    }

    pub fn handle(&self) -> HubHandle {
        self.handle.clone()
    }
}

impl Drop for FrameHub {
    fn drop(&mut self) {
        lock(&self.handle.shared.demand).shutdown = true;
        self.handle.shared.wake.notify_all();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl HubHandle {
    /// Start watching: the hub produces frames while at least one viewer lives.
    pub fn subscribe(&self) -> Viewer {
        let rx = self.shared.tx.subscribe();
        lock(&self.shared.demand).viewers += 1;
        self.shared.wake.notify_all();
        Viewer {
            shared: self.shared.clone(),
            rx,
        }
    }

    /// A frame captured after this call, or None after `timeout` (or if the hub stopped).
    pub async fn snapshot(&self, timeout: Duration) -> Option<Arc<EncodedFrame>> {
        let mut viewer = self.subscribe();
        tokio::time::timeout(timeout, viewer.next())
            .await
            .ok()
            .flatten()
    }

    /// Ask for a pan/tilt/zoom position (the caller validated it).
    pub fn set_ptz(&self, ptz: Ptz) {
        let mut c = lock(&self.shared.controls);
        c.ptz = ptz;
        c.ptz_gen += 1;
    }

    /// Change the label the source draws (the node's name).
    pub fn set_label(&self, label: &str) {
        let mut c = lock(&self.shared.controls);
        if c.label != label {
            label.clone_into(&mut c.label);
            c.label_gen += 1;
        }
    }

    pub fn settings(&self) -> HubSettings {
        self.shared.settings
    }

    pub fn stats(&self) -> HubStats {
        let s = &self.shared;
        let fps = {
            let mut recent = lock(&s.recent);
            prune(&mut recent, Instant::now());
            recent.len() as f64 / FPS_WINDOW.as_secs_f64()
        };
        let (ptz, split) = {
            let c = lock(&s.controls);
            (c.ptz, c.split)
        };
        HubStats {
            source: lock(&s.source).clone(),
            viewers: lock(&s.demand).viewers,
            published: s.published.load(Ordering::Relaxed),
            encodes: s.encodes.load(Ordering::Relaxed),
            passthrough: s.passthrough.load(Ordering::Relaxed),
            errors: s.errors.load(Ordering::Relaxed),
            fps: (fps * 10.0).round() / 10.0,
            target_fps: s.settings.fps,
            encode_threads: s.settings.encode_threads,
            quality: s.settings.quality,
            ptz,
            ptz_hardware: split.hardware,
            ptz_digital: split.digital,
            source_health: lock(&s.health).clone(),
        }
    }
}

impl Viewer {
    /// The next frame not yet seen by this viewer (the newest one; older ones are skipped).
    /// None when the hub has stopped.
    pub async fn next(&mut self) -> Option<Arc<EncodedFrame>> {
        loop {
            self.rx.changed().await.ok()?;
            if let Some(frame) = self.rx.borrow_and_update().clone() {
                return Some(frame);
            }
        }
    }

    /// The newest frame if it is younger than `max_age` (to start a stream without waiting).
    pub fn recent(&mut self, max_age: Duration) -> Option<Arc<EncodedFrame>> {
        let frame = self.rx.borrow_and_update().clone()?;
        (frame.captured.elapsed() <= max_age).then_some(frame)
    }
}

impl Drop for Viewer {
    fn drop(&mut self) {
        let mut d = lock(&self.shared.demand);
        d.viewers = d.viewers.saturating_sub(1);
    }
}

const FPS_WINDOW: Duration = Duration::from_secs(2);

fn prune(recent: &mut VecDeque<Instant>, now: Instant) {
    while recent
        .front()
        .is_some_and(|t| now.duration_since(*t) > FPS_WINDOW)
    {
        recent.pop_front();
    }
}

/// The hub thread.
fn run(shared: &Shared, mut source: Box<dyn FrameSource>) {
    let period = Duration::from_secs_f64(1.0 / f64::from(shared.settings.fps));
    let quality = shared.settings.quality;
    let mut due = Instant::now();
    let (mut ptz_gen, mut label_gen) = (0, 0);
    let mut digital = Ptz::default();
    let mut scratch = RgbFrame::new(1, 1);
    let mut scratch_ycc = YcbcrFrame::default();
    let mut xmap = Vec::new();
    let mut size_hint = 0;
    let mut logged_error = false;
    // Large pictures may be encoded in strips on several threads (see `jpeg::encode`).
    let threads = shared.settings.encode_threads;
    let encode = |picture: Picture<'_>, size_hint| {
        let threads = if picture.width() * picture.height() >= 320 * 240 {
            threads
        } else {
            1
        };
        jpeg::encode(picture, quality, threads, size_hint)
            .map(|jpeg| (jpeg, picture.width(), picture.height(), false))
    };
    loop {
        {
            let mut d = lock(&shared.demand);
            if d.viewers == 0 && !d.shutdown {
                while d.viewers == 0 && !d.shutdown {
                    d = shared.wake.wait(d).unwrap_or_else(PoisonError::into_inner);
                }
                due = Instant::now();
            }
            if d.shutdown {
                return;
            }
        }
        {
            let mut c = lock(&shared.controls);
            if c.label_gen != label_gen {
                label_gen = c.label_gen;
                source.set_label(&c.label);
            }
            if c.ptz_gen != ptz_gen {
                ptz_gen = c.ptz_gen;
                c.split = source.set_ptz(c.ptz);
                digital = c.split.digital;
            }
        }
        let result = match source.next_frame(due) {
            SourceFrame::Ycbcr(frame) => {
                let frame = if digital.is_identity() {
                    frame
                } else {
                    crop_scale_ycbcr(frame, &digital, &mut scratch_ycc, &mut xmap);
                    &scratch_ycc
                };
                encode(Picture::Ycbcr(frame), size_hint)
            }
            SourceFrame::Rgb(frame) => {
                let frame = if digital.is_identity() {
                    frame
                } else {
                    crop_scale(frame, &digital, &mut scratch, &mut xmap);
                    &scratch
                };
                encode(Picture::Rgb(frame), size_hint)
            }
            SourceFrame::Jpeg {
                data,
                width,
                height,
            } => match decode_for_ptz(&data, &digital) {
                // Digital PTZ on a camera's JPEG: decode, crop, encode again.
                Some(frame) => {
                    crop_scale(&frame, &digital, &mut scratch, &mut xmap);
                    encode(Picture::Rgb(&scratch), size_hint)
                }
                None => Ok((jpeg::with_huffman_tables(data), width, height, true)),
            },
        };
        // A network or file source's state changes with its upstream: the status follows it
        // before the frame that shows it goes out.
        let health = source.health();
        if *lock(&shared.health) != health {
            *lock(&shared.source) = source.describe();
            *lock(&shared.health) = health;
        }
        match result {
            Ok((jpeg, width, height, passthrough)) => {
                size_hint = jpeg.len() + jpeg.len() / 4;
                let counter = if passthrough {
                    &shared.passthrough
                } else {
                    &shared.encodes
                };
                counter.fetch_add(1, Ordering::Relaxed);
                let seq = shared.published.fetch_add(1, Ordering::Relaxed) + 1;
                let now = Instant::now();
                {
                    let mut recent = lock(&shared.recent);
                    recent.push_back(now);
                    prune(&mut recent, now);
                }
                let frame = EncodedFrame {
                    seq,
                    jpeg,
                    width,
                    height,
                    captured: now,
                    passthrough,
                };
                shared.tx.send_replace(Some(Arc::new(frame)));
            }
            Err(e) => {
                shared.errors.fetch_add(1, Ordering::Relaxed);
                if !logged_error {
                    tracing::warn!("cannot encode a frame: {e}");
                    logged_error = true;
                }
            }
        }
        due += period;
        let now = Instant::now();
        if due + period < now {
            due = now;
        }
    }
}

/// The largest width or height of a camera JPEG decoded for digital pan/tilt/zoom.
const MAX_SIDE: u32 = 8192;

/// Decode a camera JPEG when digital pan/tilt/zoom must be applied to it.
fn decode_for_ptz(jpeg: &[u8], digital: &Ptz) -> Option<RgbFrame> {
    if digital.is_identity() {
        return None;
    }
    // A camera's JPEG is input from the network: a frame header claiming 65535x65535 must not
    // make the decoder allocate gigabytes and grind through billions of empty blocks (it did:
    // 8 GB and minutes; its own buffer limit does not cover its component planes). Pictures
    // are at most 8192x8192, as the configuration allows.
    let (w, h) = jpeg::dimensions(jpeg)?;
    if w == 0 || h == 0 || w > MAX_SIDE || h > MAX_SIDE {
        return None;
    }
    let mut d = jpeg_decoder::Decoder::new(jpeg);
    let pixels = d.decode().ok()?;
    let info = d.info()?;
    if info.pixel_format != jpeg_decoder::PixelFormat::RGB24 {
        return None;
    }
    Some(RgbFrame {
        width: u32::from(info.width),
        height: u32::from(info.height),
        data: pixels,
    })
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicUsize;

    use super::*;
    use crate::camera::synthetic::Synthetic;

    /// The synthetic source, counting how often it was asked for a frame.
    struct Counting {
        inner: Synthetic,
        renders: Arc<AtomicUsize>,
    }

    impl FrameSource for Counting {
        fn describe(&self) -> String {
            "counting".into()
        }
        fn next_frame(&mut self, due: Instant) -> SourceFrame<'_> {
            self.renders.fetch_add(1, Ordering::SeqCst);
            self.inner.next_frame(due)
        }
    }

    fn hub(fps: u32) -> (FrameHub, Arc<AtomicUsize>) {
        let renders = Arc::new(AtomicUsize::new(0));
        let source = Counting {
            inner: Synthetic::new(64, 48, "t", "t"),
            renders: renders.clone(),
        };
        (
            FrameHub::start(
                Box::new(source),
                HubSettings {
                    fps,
                    quality: 70,
                    encode_threads: 2,
                },
                "t",
            )
            .unwrap(),
            renders,
        )
    }

    #[tokio::test]
    async fn no_viewer_no_encoding() {
        let (hub, renders) = hub(100);
        tokio::time::sleep(Duration::from_millis(150)).await;
        assert_eq!(renders.load(Ordering::SeqCst), 0);
        assert_eq!(hub.handle().stats().encodes, 0);
        // A snapshot makes exactly the frames it needs, then the hub goes idle again.
        let snap = hub
            .handle()
            .snapshot(Duration::from_secs(5))
            .await
            .expect("a frame");
        assert_eq!((snap.width, snap.height), (64, 48));
        tokio::time::sleep(Duration::from_millis(50)).await;
        let idle = hub.handle().stats().encodes;
        assert!(idle <= 3, "{idle}");
        tokio::time::sleep(Duration::from_millis(150)).await;
        assert_eq!(hub.handle().stats().encodes, idle);
        assert_eq!(hub.handle().stats().viewers, 0);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn one_encode_per_frame_for_many_viewers() {
        let (hub, renders) = hub(50);
        let h = hub.handle();
        let mut tasks = Vec::new();
        for _ in 0..8 {
            let mut v = h.subscribe();
            tasks.push(tokio::spawn(async move {
                let mut seqs = Vec::new();
                while seqs.len() < 10 {
                    seqs.push(v.next().await.expect("frame").seq);
                }
                seqs
            }));
        }
        let mut all = Vec::new();
        for t in tasks {
            all.push(t.await.unwrap());
        }
        let stats = h.stats();
        // Every frame was encoded once, whatever the number of viewers.
        assert_eq!(stats.encodes, stats.published);
        assert!((renders.load(Ordering::SeqCst) as i64 - stats.encodes as i64).abs() <= 1);
        let max_seq = all.iter().flatten().max().copied().unwrap_or(0);
        assert!(
            stats.encodes < max_seq + 3,
            "{} encodes for {max_seq} frames",
            stats.encodes
        );
        // 80 deliveries from about 10 encodes: the viewers share frames, not private copies.
        assert_eq!(all.iter().map(Vec::len).sum::<usize>(), 80);
        assert!(stats.encodes <= 14, "{}", stats.encodes);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn slow_viewer_skips_frames() {
        let (hub, _) = hub(50);
        let h = hub.handle();
        let mut fast = h.subscribe();
        let mut slow = h.subscribe();
        let slow_task = tokio::spawn(async move {
            let mut seqs = Vec::new();
            for _ in 0..4 {
                seqs.push(slow.next().await.expect("frame").seq);
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            seqs
        });
        let mut fast_seqs = Vec::new();
        while !slow_task.is_finished() {
            if let Ok(Some(f)) = tokio::time::timeout(Duration::from_millis(200), fast.next()).await
            {
                fast_seqs.push(f.seq);
            }
        }
        let slow_seqs = slow_task.await.unwrap();
        // The slow viewer jumped ahead (about 5 frames per 100 ms) ...
        assert!(
            slow_seqs.windows(2).all(|w| w[1] >= w[0] + 2),
            "{slow_seqs:?}"
        );
        // ... while the fast one kept up with the source.
        assert!(fast_seqs.len() >= 12, "{fast_seqs:?}");
        let gaps = fast_seqs.windows(2).filter(|w| w[1] != w[0] + 1).count();
        assert!(gaps * 4 < fast_seqs.len(), "{fast_seqs:?}");
    }

    #[test]
    fn a_huge_claimed_size_is_not_decoded_for_ptz() {
        // A real JPEG whose frame header claims 65535x65535.
        let mut jpeg = jpeg::encode_rgb(&RgbFrame::new(16, 16), 80, 0)
            .unwrap()
            .to_vec();
        let sof = jpeg.windows(2).position(|w| w == [0xFF, 0xC0]).unwrap();
        jpeg[sof + 5..sof + 9].copy_from_slice(&[0xFF, 0xFF, 0xFF, 0xFF]);
        let zoom = Ptz {
            pan: 0.0,
            tilt: 0.0,
            zoom: 2.0,
        };
        assert!(decode_for_ptz(&jpeg, &zoom).is_none());
    }

    #[tokio::test]
    async fn digital_zoom_changes_the_picture_but_not_its_size() {
        let (hub, _) = hub(50);
        let h = hub.handle();
        let plain = h.snapshot(Duration::from_secs(5)).await.unwrap();
        h.set_ptz(Ptz {
            pan: 0.5,
            tilt: 0.0,
            zoom: 4.0,
        });
        // The frame in the making when the request came may still be unzoomed; the next is not.
        h.snapshot(Duration::from_secs(5)).await.unwrap();
        let zoomed = h.snapshot(Duration::from_secs(5)).await.unwrap();
        assert_eq!(jpeg::dimensions(&zoomed.jpeg), Some((64, 48)));
        assert_ne!(plain.jpeg, zoomed.jpeg);
        assert_eq!(h.stats().ptz_digital.zoom, 4.0);
    }
}
