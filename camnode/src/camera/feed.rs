//! What the network camera and the video file sources share: a producer task that brings JPEGs
//! in (an HTTP client, an ffmpeg child) and the hub's side that takes the newest one.
//!
//! ```text
//!  hub thread: next_frame(due)                 feed thread (tokio, current-thread)
//!  --------------------------                  -----------------------------------
//!  marks demand, wakes the producer   ---->    producer: connects only while demand is fresh
//!  waits for a JPEG newer than the    <----    (a frame asked for within LINGER), publishes
//!  last one, or shows "NO SIGNAL"              each JPEG, reports trouble, backs off
//! ```
//!
//! Demand is what makes "only while someone watches" hold: the hub calls `next_frame` only while
//! it has viewers, so a producer that has not been asked for a frame for [`LINGER`] closes its
//! connection (or stops ffmpeg) and sleeps until the next request.

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use tokio::sync::Notify;

use super::multipart::{Event, Limits, Parser};
use super::synthetic::{draw_no_signal, utc_clock};
use super::{FrameSource, RgbFrame, SourceFrame, SourceHealth, jpeg};

/// How long a producer keeps its upstream open after the last frame asked for.
pub const LINGER: Duration = Duration::from_secs(3);
/// How long `next_frame` waits for a frame while the producer reports no trouble (connecting,
/// a slow camera) before it shows "no signal".
const WAIT_FRAME: Duration = Duration::from_secs(2);
/// ... and while it does report trouble (the "no signal" picture is then redrawn twice a second).
const WAIT_TROUBLE: Duration = Duration::from_millis(500);

/// Back-off between reconnections: 0.5 s doubling to 10 s, back to the start after a session
/// that delivered a frame. One client per camera, so no jitter is needed against a herd.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Backoff {
    next: Duration,
}

impl Backoff {
    const FIRST: Duration = Duration::from_millis(500);
    const MAX: Duration = Duration::from_secs(10);

    pub fn new() -> Backoff {
        Backoff { next: Self::FIRST }
    }

    /// The wait before the next attempt; the one after it doubles.
    pub fn next_delay(&mut self) -> Duration {
        let d = self.next;
        self.next = (self.next * 2).min(Self::MAX);
        d
    }

    pub fn reset(&mut self) {
        self.next = Self::FIRST;
    }
}

impl Default for Backoff {
    fn default() -> Backoff {
        Backoff::new()
    }
}

#[derive(Debug)]
struct Latest {
    seq: u64,
    data: Bytes,
    width: u32,
    height: u32,
}

#[derive(Debug, Default)]
struct State {
    latest: Option<Latest>,
    seq: u64,
    /// Why there is no picture (shown on the "no signal" frame and in `describe`).
    trouble: Option<String>,
    /// The last time the hub asked for a frame.
    wanted_at: Option<Instant>,
    /// What the upstream turned out to be ("MJPEG stream 1280x720", ...).
    kind: String,
}

#[derive(Debug, Default)]
struct Shared {
    state: Mutex<State>,
    fresh: Condvar,
    demand: Notify,
    stop: Notify,
    frames: AtomicU64,
    malformed: AtomicU64,
    failures: AtomicU64,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The producer's side.
#[derive(Clone, Debug)]
pub struct FeedWriter {
    shared: Arc<Shared>,
}

impl FeedWriter {
    /// A camera JPEG arrived. Returns false (and counts it as malformed) if it is no JPEG.
    pub fn publish(&self, data: Bytes) -> bool {
        let Some((width, height)) = (data.starts_with(&[0xFF, 0xD8]))
            .then(|| jpeg::dimensions(&data))
            .flatten()
        else {
            self.malformed();
            return false;
        };
        let mut st = lock(&self.shared.state);
        st.seq += 1;
        st.latest = Some(Latest {
            seq: st.seq,
            data,
            width,
            height,
        });
        st.trouble = None;
        drop(st);
        self.shared.frames.fetch_add(1, Ordering::Relaxed);
        self.shared.fresh.notify_all();
        true
    }

    /// Something the parser or the source refused (a bad part, a non-JPEG).
    pub fn malformed(&self) {
        self.shared.malformed.fetch_add(1, Ordering::Relaxed);
    }

    /// The upstream failed; viewers see `why` on the "no signal" picture until the next frame.
    pub fn fail(&self, why: String) {
        self.shared.failures.fetch_add(1, Ordering::Relaxed);
        lock(&self.shared.state).trouble = Some(why);
        self.shared.fresh.notify_all();
    }

    /// What the upstream is, for `describe`.
    pub fn set_kind(&self, kind: String) {
        lock(&self.shared.state).kind = kind;
    }

    /// Frames published so far.
    pub fn frames(&self) -> u64 {
        self.shared.frames.load(Ordering::Relaxed)
    }

    /// Has the hub asked for a frame within [`LINGER`]?
    pub fn wanted(&self) -> bool {
        lock(&self.shared.state)
            .wanted_at
            .is_some_and(|t| t.elapsed() < LINGER)
    }

    /// Wait until the hub asks for a frame.
    pub async fn wait_wanted(&self) {
        loop {
            let notified = self.shared.demand.notified();
            if self.wanted() {
                return;
            }
            notified.await;
        }
    }
}

/// The hub's side: a [`FrameSource`] over a producer running on its own thread.
#[derive(Debug)]
pub struct Feed {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
    name: String,
    frame: RgbFrame,
    label: String,
    last_seq: u64,
}

impl Feed {
    /// Start `producer` (made from the writer) on a thread named `thread` with a current-thread
    /// tokio runtime. `name` is how logs and the status page call the source (no password);
    /// `width` x `height` sizes the "no signal" picture until the camera's size is known.
    pub fn start<F, Fut>(
        thread: &str,
        name: String,
        width: u32,
        height: u32,
        producer: F,
    ) -> std::io::Result<Feed>
    where
        F: FnOnce(FeedWriter) -> Fut + Send + 'static,
        Fut: Future<Output = ()>,
    {
        let shared = Arc::new(Shared::default());
        let writer = FeedWriter {
            shared: shared.clone(),
        };
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let stop = shared.clone();
        let thread = std::thread::Builder::new()
            .name(thread.into())
            .spawn(move || {
                runtime.block_on(async move {
                    tokio::select! {
                        () = producer(writer) => {}
                        () = stop.stop.notified() => {}
                    }
                });
                // Dropping the runtime cancels what the producer spawned (its connections);
                // child processes are killed on drop.
            })?;
        Ok(Feed {
            shared,
            thread: Some(thread),
            name,
            frame: RgbFrame::new(width, height),
            label: String::new(),
            last_seq: 0,
        })
    }

    /// The "no signal" picture, at the camera's last size.
    fn no_signal(&mut self, problem: &str, size: Option<(u32, u32)>) -> SourceFrame<'_> {
        if let Some((w, h)) = size {
            if (w, h) != (self.frame.width, self.frame.height) && w * h <= 8192 * 8192 {
                self.frame.resize(w, h);
            }
        }
        let clock = format!("{} - {problem}", utc_clock(SystemTime::now()));
        draw_no_signal(&mut self.frame, &self.label, "NO SIGNAL", &clock);
        SourceFrame::Rgb(&self.frame)
    }
}

impl Drop for Feed {
    fn drop(&mut self) {
        self.shared.stop.notify_one();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl FrameSource for Feed {
    fn describe(&self) -> String {
        let st = lock(&self.shared.state);
        match (&st.trouble, st.kind.is_empty()) {
            (Some(t), _) => format!("{} (no signal: {t})", self.name),
            (None, false) => format!("{} ({})", self.name, st.kind),
            (None, true) => self.name.clone(),
        }
    }

    fn next_frame(&mut self, due: Instant) -> SourceFrame<'_> {
        let now = Instant::now();
        if due > now {
            std::thread::sleep(due - now);
        }
        lock(&self.shared.state).wanted_at = Some(Instant::now());
        self.shared.demand.notify_one();
        let start = Instant::now();
        let mut st = lock(&self.shared.state);
        let mut size = None;
        loop {
            if let Some(l) = &st.latest {
                size = Some((l.width, l.height));
                if l.seq > self.last_seq {
                    let (data, width, height) = (l.data.clone(), l.width, l.height);
                    self.last_seq = l.seq;
                    return SourceFrame::Jpeg {
                        data,
                        width,
                        height,
                    };
                }
            }
            let wait = if st.trouble.is_some() {
                WAIT_TROUBLE
            } else {
                WAIT_FRAME
            };
            let left = wait.saturating_sub(start.elapsed());
            if left.is_zero() {
                break;
            }
            st = self
                .shared
                .fresh
                .wait_timeout(st, left)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
        let problem = st.trouble.clone().unwrap_or_else(|| {
            format!("no picture from the camera for {} s", WAIT_FRAME.as_secs())
        });
        drop(st);
        self.no_signal(&problem, size)
    }

    fn set_label(&mut self, label: &str) {
        label.clone_into(&mut self.label);
    }

    fn health(&self) -> SourceHealth {
        SourceHealth {
            trouble: lock(&self.shared.state).trouble.clone(),
            frames: self.shared.frames.load(Ordering::Relaxed),
            malformed: self.shared.malformed.load(Ordering::Relaxed),
            failures: self.shared.failures.load(Ordering::Relaxed),
        }
    }
}

/// A byte stream carrying multipart parts: an HTTP body, ffmpeg's stdout.
pub trait Chunks {
    /// The next bytes; `Ok(None)` at the end.
    fn next_chunk(&mut self) -> impl Future<Output = Result<Option<Bytes>, String>>;
}

/// Without a picture for this long, a stream counts as stalled (whether bytes still come or not).
pub const STALL: Duration = Duration::from_secs(5);
/// How often a stream checks for demand and stalls while no bytes come.
const TICK: Duration = Duration::from_millis(500);

/// Read `chunks` as `multipart/x-mixed-replace` with `boundary` and publish every JPEG part.
/// Returns `Ok` when the hub stopped asking for frames (the caller closes the upstream), or why
/// the stream failed: it ended, stalled, or carried no picture for [`STALL`] (with the last
/// problem seen in it).
pub async fn pump<C: Chunks>(
    chunks: &mut C,
    boundary: &str,
    feed: &FeedWriter,
) -> Result<(), String> {
    let mut parser = Parser::new(boundary, Limits::default());
    let mut last_frame = Instant::now();
    let mut last_bytes = Instant::now();
    let mut problem: Option<String> = None;
    loop {
        if !feed.wanted() {
            return Ok(());
        }
        match tokio::time::timeout(TICK, chunks.next_chunk()).await {
            Err(_) => {}
            Ok(Err(e)) => return Err(e),
            Ok(Ok(None)) => return Err("the stream ended".into()),
            Ok(Ok(Some(data))) => {
                last_bytes = Instant::now();
                parser.push(&data);
                while let Some(event) = parser.poll() {
                    match event {
                        Event::Part(part) => {
                            let jpeg_type = part.content_type.as_deref().is_none_or(|t| {
                                let t = t.to_ascii_lowercase();
                                t.starts_with("image/jpeg") || t.starts_with("image/jpg")
                            });
                            if jpeg_type && feed.publish(part.data) {
                                last_frame = Instant::now();
                            } else {
                                if jpeg_type {
                                    problem = Some("a part is not a JPEG".into());
                                } else {
                                    feed.malformed();
                                    problem = Some(format!(
                                        "a part of type {:?}, not image/jpeg",
                                        part.content_type.unwrap_or_default()
                                    ));
                                }
                            }
                        }
                        Event::Error(e) => {
                            feed.malformed();
                            tracing::debug!("multipart: {e}");
                            problem = Some(e.to_string());
                        }
                        Event::End => return Err("the stream ended (closing boundary)".into()),
                    }
                }
            }
        }
        if last_bytes.elapsed() >= STALL {
            return Err(format!("stalled: no data for {} s", STALL.as_secs()));
        }
        if last_frame.elapsed() >= STALL {
            return Err(match problem {
                Some(p) => format!("no picture for {} s: {p}", STALL.as_secs()),
                None => format!("no picture for {} s", STALL.as_secs()),
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_to_ten_seconds_and_resets() {
        let mut b = Backoff::new();
        let seq: Vec<u64> = (0..7).map(|_| b.next_delay().as_millis() as u64).collect();
        assert_eq!(seq, [500, 1000, 2000, 4000, 8000, 10_000, 10_000]);
        b.reset();
        assert_eq!(b.next_delay(), Duration::from_millis(500));
    }
}
