//! The webcam source (cargo feature `webcam`): V4L2 through nokhwa.
//!
//! A capture thread owns the camera (nokhwa's camera is not `Send`, so it is opened on that thread
//! too) and keeps only the newest frame in a slot, as the camera delivered it. The hub's thread
//! takes it from there: a camera that offers MJPEG is asked for MJPEG and its JPEGs are served as
//! they are; other formats (YUYV, NV12, RGB, grey) are converted to RGB and encoded, and only when
//! someone watches. After a capture error the thread closes the camera and reopens it every second;
//! meanwhile viewers get a "no signal" picture with the clock. Pan/tilt/zoom go to the camera's own
//! controls where it has them; what it lacks is done digitally by the hub.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use nokhwa::Camera;
use nokhwa::pixel_format::RgbFormat;
use nokhwa::utils::{
    CameraFormat, CameraIndex, ControlValueDescription, ControlValueSetter, FrameFormat,
    KnownCameraControl, RequestedFormat, RequestedFormatType, Resolution, buf_nv12_to_rgb,
    buf_yuyv422_to_rgb,
};

use super::synthetic::{draw_no_signal, utc_clock};
use super::{FrameSource, Ptz, PtzSplit, RgbFrame, SourceFrame};

/// How long without a frame before viewers see "no signal".
const NO_SIGNAL_AFTER: Duration = Duration::from_secs(1);
/// How often a lost camera is reopened.
const REOPEN_EVERY: Duration = Duration::from_secs(1);

/// A frame as the camera delivered it.
#[derive(Debug)]
struct Raw {
    seq: u64,
    data: Bytes,
    format: FrameFormat,
    width: u32,
    height: u32,
}

/// Which pan/tilt/zoom controls the open camera has, with their ranges.
#[derive(Clone, Copy, Debug, Default)]
struct Caps {
    pan: Option<(i64, i64)>,
    tilt: Option<(i64, i64)>,
    zoom: Option<(i64, i64)>,
}

#[derive(Debug, Default)]
struct SlotState {
    latest: Option<Raw>,
    /// Why there is no picture (shown on the "no signal" frame).
    trouble: Option<String>,
    caps: Caps,
    described: String,
}

#[derive(Debug, Default)]
struct Slot {
    state: Mutex<SlotState>,
    fresh: Condvar,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The webcam source.
#[derive(Debug)]
pub struct Webcam {
    slot: Arc<Slot>,
    ptz_tx: mpsc::Sender<Ptz>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
    frame: RgbFrame,
    label: String,
    last_seq: u64,
}

impl Webcam {
    /// Open camera `index` asking for `width` x `height` at `fps` (MJPEG preferred). Fails if the
    /// camera cannot be opened now; later errors are handled by reopening.
    pub fn open(index: u32, width: u32, height: u32, fps: u32) -> anyhow::Result<Webcam> {
        let slot = Arc::new(Slot::default());
        let stop = Arc::new(AtomicBool::new(false));
        let (ptz_tx, ptz_rx) = mpsc::channel();
        let (ready_tx, ready_rx) = mpsc::channel();
        let (s, st) = (slot.clone(), stop.clone());
        let thread = std::thread::Builder::new()
            .name("camnode-webcam".into())
            .spawn(move || {
                capture_thread(index, (width, height, fps), &s, &st, &ptz_rx, ready_tx)
            })?;
        match ready_rx.recv() {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                let _ = thread.join();
                anyhow::bail!("camera {index}: {e}");
            }
            Err(_) => anyhow::bail!("camera {index}: the capture thread ended"),
        }
        Ok(Webcam {
            slot,
            ptz_tx,
            stop,
            thread: Some(thread),
            frame: RgbFrame::new(width, height),
            label: String::new(),
            last_seq: 0,
        })
    }

    /// Convert a raw frame into `self.frame`, or hand back the camera's JPEG as it is.
    fn convert(&mut self, raw: Raw) -> Result<Option<(Bytes, u32, u32)>, String> {
        let (w, h) = (raw.width, raw.height);
        let pixels = w as usize * h as usize;
        match raw.format {
            FrameFormat::MJPEG => return Ok(Some((raw.data, w, h))),
            FrameFormat::YUYV => {
                self.frame.resize(w, h);
                buf_yuyv422_to_rgb(&raw.data, &mut self.frame.data, false)
                    .map_err(|e| e.to_string())?;
            }
            FrameFormat::NV12 => {
                self.frame.resize(w, h);
                buf_nv12_to_rgb(
                    Resolution::new(w, h),
                    &raw.data,
                    &mut self.frame.data,
                    false,
                )
                .map_err(|e| e.to_string())?;
            }
            FrameFormat::RAWRGB | FrameFormat::RAWBGR if raw.data.len() >= pixels * 3 => {
                self.frame.resize(w, h);
                self.frame.data.copy_from_slice(&raw.data[..pixels * 3]);
                if raw.format == FrameFormat::RAWBGR {
                    self.frame
                        .data
                        .chunks_exact_mut(3)
                        .for_each(|p| p.swap(0, 2));
                }
            }
            FrameFormat::GRAY if raw.data.len() >= pixels => {
                self.frame.resize(w, h);
                for (d, &g) in self.frame.data.chunks_exact_mut(3).zip(raw.data.iter()) {
                    d.fill(g);
                }
            }
            other => {
                return Err(format!(
                    "{other} frame of {} bytes for {w}x{h}",
                    raw.data.len()
                ));
            }
        }
        Ok(None)
    }
}

impl Drop for Webcam {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl FrameSource for Webcam {
    fn describe(&self) -> String {
        lock(&self.slot.state).described.clone()
    }

    fn next_frame(&mut self, due: Instant) -> SourceFrame<'_> {
        let now = Instant::now();
        if due > now {
            std::thread::sleep(due - now);
        }
        // Wait for a frame newer than the last one handed out.
        let deadline = Instant::now() + NO_SIGNAL_AFTER;
        let mut state = lock(&self.slot.state);
        let mut raw = None;
        loop {
            if state.latest.as_ref().is_some_and(|r| r.seq > self.last_seq) {
                raw = state.latest.take();
                break;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            state = self
                .slot
                .fresh
                .wait_timeout(state, left)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
        let trouble = state.trouble.clone();
        drop(state);
        let problem = match raw {
            Some(raw) => {
                self.last_seq = raw.seq;
                match self.convert(raw) {
                    Ok(Some((data, width, height))) => {
                        return SourceFrame::Jpeg {
                            data,
                            width,
                            height,
                        };
                    }
                    Ok(None) => return SourceFrame::Rgb(&self.frame),
                    Err(e) => format!("bad frame: {e}"),
                }
            }
            None => trouble.unwrap_or_else(|| "no frame from the camera".into()),
        };
        let clock = format!("{} - {problem}", utc_clock(SystemTime::now()));
        draw_no_signal(&mut self.frame, &self.label, "NO SIGNAL", &clock);
        SourceFrame::Rgb(&self.frame)
    }

    fn set_label(&mut self, label: &str) {
        label.clone_into(&mut self.label);
    }

    fn set_ptz(&mut self, ptz: Ptz) -> PtzSplit {
        let caps = lock(&self.slot.state).caps;
        let _ = self.ptz_tx.send(ptz);
        let mut hardware = Ptz::default();
        let mut digital = ptz;
        if caps.pan.is_some() {
            (hardware.pan, digital.pan) = (ptz.pan, 0.0);
        }
        if caps.tilt.is_some() {
            (hardware.tilt, digital.tilt) = (ptz.tilt, 0.0);
        }
        if caps.zoom.is_some() {
            (hardware.zoom, digital.zoom) = (ptz.zoom, 1.0);
        }
        PtzSplit { hardware, digital }
    }
}

/// The capture thread: open, capture into the slot, reopen after errors, until `stop`.
fn capture_thread(
    index: u32,
    wanted: (u32, u32, u32),
    slot: &Slot,
    stop: &AtomicBool,
    ptz_rx: &mpsc::Receiver<Ptz>,
    ready: mpsc::Sender<Result<(), String>>,
) {
    let mut ready = Some(ready);
    let mut seq = 0;
    let mut ptz = None;
    while !stop.load(Ordering::SeqCst) {
        let mut camera = match open_camera(index, wanted) {
            Ok(c) => c,
            Err(e) => {
                if let Some(r) = ready.take() {
                    let _ = r.send(Err(e));
                    return;
                }
                lock(&slot.state).trouble = Some(format!("cannot reopen the camera: {e}"));
                std::thread::sleep(REOPEN_EVERY);
                continue;
            }
        };
        let fmt = camera.camera_format();
        let caps = Caps {
            pan: control_range(&camera, KnownCameraControl::Pan),
            tilt: control_range(&camera, KnownCameraControl::Tilt),
            zoom: control_range(&camera, KnownCameraControl::Zoom),
        };
        {
            let mut st = lock(&slot.state);
            st.caps = caps;
            st.trouble = None;
            st.described = format!(
                "webcam {index} {}x{} {} at {} fps",
                fmt.width(),
                fmt.height(),
                fmt.format(),
                fmt.frame_rate()
            );
            tracing::info!("{}", st.described);
        }
        if let Some(r) = ready.take() {
            let _ = r.send(Ok(()));
        }
        if let Some(p) = ptz {
            apply_ptz(&mut camera, &caps, p);
        }
        while !stop.load(Ordering::SeqCst) {
            while let Ok(p) = ptz_rx.try_recv() {
                apply_ptz(&mut camera, &caps, p);
                ptz = Some(p);
            }
            match camera.frame() {
                Ok(buf) => {
                    seq += 1;
                    let res = buf.resolution();
                    let raw = Raw {
                        seq,
                        data: buf.buffer_bytes(),
                        format: buf.source_frame_format(),
                        width: res.width(),
                        height: res.height(),
                    };
                    lock(&slot.state).latest = Some(raw);
                    slot.fresh.notify_all();
                }
                Err(e) => {
                    tracing::warn!("webcam {index}: capture failed ({e}); reopening");
                    lock(&slot.state).trouble = Some(format!("capture failed: {e}"));
                    break;
                }
            }
        }
        let _ = camera.stop_stream();
        drop(camera);
        std::thread::sleep(REOPEN_EVERY);
    }
}

/// Open the camera: MJPEG at the wanted size if it offers it, else whatever is closest.
fn open_camera(index: u32, (w, h, fps): (u32, u32, u32)) -> Result<Camera, String> {
    const MJPEG: &[FrameFormat] = &[FrameFormat::MJPEG];
    const OTHERS: &[FrameFormat] = &[
        FrameFormat::YUYV,
        FrameFormat::NV12,
        FrameFormat::RAWRGB,
        FrameFormat::RAWBGR,
        FrameFormat::GRAY,
    ];
    let mut last = String::new();
    for (format, list) in [(FrameFormat::MJPEG, MJPEG), (FrameFormat::YUYV, OTHERS)] {
        let req = RequestedFormat::with_formats(
            RequestedFormatType::Closest(CameraFormat::new_from(w, h, format, fps)),
            list,
        );
        match Camera::new(CameraIndex::Index(index), req) {
            Ok(mut cam) => match cam.open_stream() {
                Ok(()) => return Ok(cam),
                Err(e) => last = e.to_string(),
            },
            Err(e) => last = e.to_string(),
        }
    }
    // Fall back to anything the camera likes.
    let req = RequestedFormat::new::<RgbFormat>(RequestedFormatType::None);
    match Camera::new(CameraIndex::Index(index), req).and_then(|mut c| c.open_stream().map(|()| c))
    {
        Ok(cam) => Ok(cam),
        Err(e) => Err(if last.is_empty() { e.to_string() } else { last }),
    }
}

/// The integer range of a control, if the camera has it.
fn control_range(camera: &Camera, control: KnownCameraControl) -> Option<(i64, i64)> {
    match camera.camera_control(control).ok()?.description() {
        ControlValueDescription::IntegerRange { min, max, .. } if max > min => Some((*min, *max)),
        _ => None,
    }
}

/// Map our normalised PTZ onto the camera's control ranges.
fn apply_ptz(camera: &mut Camera, caps: &Caps, ptz: Ptz) {
    let map = |(lo, hi): (i64, i64), f: f32| {
        lo + ((hi - lo) as f64 * f64::from(f.clamp(0.0, 1.0))).round() as i64
    };
    let sets = [
        (KnownCameraControl::Pan, caps.pan, (ptz.pan + 1.0) / 2.0),
        (KnownCameraControl::Tilt, caps.tilt, (ptz.tilt + 1.0) / 2.0),
        (
            KnownCameraControl::Zoom,
            caps.zoom,
            (ptz.zoom - 1.0) / (super::ptz::MAX_ZOOM - 1.0),
        ),
    ];
    for (control, range, f) in sets {
        if let Some(range) = range {
            if let Err(e) =
                camera.set_camera_control(control, ControlValueSetter::Integer(map(range, f)))
            {
                tracing::warn!("webcam: cannot set {control}: {e}");
            }
        }
    }
}
