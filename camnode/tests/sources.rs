//! Network camera and video file sources end to end on loopback (issue 15): a camnode fronting
//! another camnode's stream and snapshot URL, ffmpeg's own MJPEG over HTTP, a video file made
//! with ffmpeg's test sources at test time, and upstreams that misbehave (refuse, 404, wrong
//! type, credentials, stall, malformed parts). ffprobe checks what comes out.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use camnode::camera::multipart::{Event, Limits, Parser, boundary_of};
use camnode::camera::synthetic::Synthetic;
use camnode::camera::{FrameHub, HubHandle, HubSettings, file_source, http_source};
use camnode::directory::{Directory, Reachability, Role};
use camnode::web::{self, WebConfig, WebState};
use http_body_util::{BodyExt as _, Empty};
use hyper::Request;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};

const W: u32 = 320;
const H: u32 = 240;

/// A camnode's web service on loopback over `hub`.
struct Served {
    addr: SocketAddr,
    hub: FrameHub,
    _stop: watch::Sender<bool>,
}

async fn serve(hub: FrameHub) -> Served {
    let dir = Directory {
        node_id: "00000000000000c1".into(),
        name: "camera 1".into(),
        role: Role::Representative,
        reachability: Reachability::Reachable,
        external_addr: None,
        lan_addr: Some(Ipv4Addr::LOCALHOST),
        external_port: None,
        lan_port: 0,
        peers: Vec::new(),
        warning: None,
    };
    let (_dir_tx, dir_rx) = watch::channel(dir);
    let (cmd_tx, _cmd_rx) = mpsc::channel(1);
    let config = WebConfig {
        domain: String::new(),
        password: String::new(),
        max_streams: 50,
        width: W,
        height: H,
    };
    let state = WebState::new(hub.handle(), dir_rx, cmd_tx, config);
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, mut stop_rx) = watch::channel(false);
    tokio::spawn(web::serve_listener(state, listener, async move {
        let _ = stop_rx.wait_for(|s| *s).await;
    }));
    Served {
        addr,
        hub,
        _stop: stop,
    }
}

/// An upstream camnode with the synthetic source.
async fn upstream(fps: u32) -> Served {
    let source = Synthetic::new(W, H, "00000000000000c1", "upstream");
    serve(FrameHub::start(Box::new(source), HubSettings::new(fps, 75), "upstream").unwrap()).await
}

/// A camnode in front of `url`.
fn front(url: &str, fps: u32) -> FrameHub {
    let feed = http_source::open(url, fps, W, H).unwrap();
    FrameHub::start(Box::new(feed), HubSettings::new(fps, 75), "front").unwrap()
}

/// GET `path` from `addr` (hyper's client).
async fn get(addr: SocketAddr, path: &str) -> hyper::Response<hyper::body::Incoming> {
    let tcp = TcpStream::connect(addr).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
        .await
        .unwrap();
    tokio::spawn(conn);
    let req = Request::get(path)
        .header("host", "test")
        .body(Empty::<Bytes>::new())
        .unwrap();
    sender.send_request(req).await.unwrap()
}

/// The JPEGs of `path`'s multipart stream at `addr`: `n` of them, or what came within `limit`.
async fn stream_parts(addr: SocketAddr, path: &str, n: usize, limit: Duration) -> Vec<Bytes> {
    let resp = get(addr, path).await;
    let ct = resp.headers()["content-type"].to_str().unwrap().to_owned();
    let mut parser = Parser::new(&boundary_of(&ct).expect("multipart"), Limits::default());
    let mut body = resp.into_body();
    let mut out = Vec::new();
    let deadline = tokio::time::Instant::now() + limit;
    while out.len() < n {
        let Ok(Some(Ok(frame))) = tokio::time::timeout_at(deadline, body.frame()).await else {
            break;
        };
        if let Ok(data) = frame.into_data() {
            parser.push(&data);
            while let Some(e) = parser.poll() {
                if let Event::Part(p) = e {
                    out.push(p.data);
                }
            }
        }
    }
    out.truncate(n);
    out
}

/// `n` frames from a hub, each with its passthrough flag.
async fn frames(hub: &HubHandle, n: usize, limit: Duration) -> Vec<(Bytes, bool)> {
    let mut v = hub.subscribe();
    let mut out = Vec::new();
    let deadline = tokio::time::Instant::now() + limit;
    while out.len() < n {
        match tokio::time::timeout_at(deadline, v.next()).await {
            Ok(Some(f)) => out.push((f.jpeg.clone(), f.passthrough)),
            _ => break,
        }
    }
    out
}

/// ffprobe's "codec,width,height" for the first video stream of `input`.
fn ffprobe(args: &[&str], input: &str) -> String {
    let out = std::process::Command::new("ffprobe")
        .args(["-v", "error", "-select_streams", "v:0"])
        .args([
            "-show_entries",
            "stream=codec_name,width,height",
            "-of",
            "csv=p=0",
        ])
        .args(args)
        .arg(input)
        .stdin(Stdio::null())
        .output()
        .expect("ffprobe (Debian: apt-get install ffmpeg)");
    assert!(
        out.status.success(),
        "ffprobe {input}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

fn temp_dir(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("camnode-sources-{tag}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn free_port() -> u16 {
    std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fronting_another_camnode_passes_its_jpegs_through() {
    let up = upstream(8).await;
    let url = format!("http://{}/stream.mjpg", up.addr);
    // Every JPEG the upstream publishes meanwhile, seen by a viewer of its own.
    let seen = tokio::spawn(stream_parts(
        up.addr,
        "/stream.mjpg",
        1000,
        Duration::from_secs(4),
    ));
    tokio::time::sleep(Duration::from_millis(300)).await;
    let front = front(&url, 30);
    let got = frames(&front.handle(), 12, Duration::from_secs(3)).await;
    let seen = seen.await.unwrap();
    assert!(got.len() >= 12, "{} frames from the front", got.len());
    assert!(got.iter().all(|(_, passthrough)| *passthrough));
    let found = got.iter().filter(|(j, _)| seen.contains(j)).count();
    assert_eq!(
        found,
        got.len(),
        "front JPEGs byte-identical to the upstream's"
    );
    let stats = front.handle().stats();
    assert_eq!(stats.encodes, 0, "{stats:?}");
    assert!(stats.passthrough >= 12);
    assert!(stats.source.contains("MJPEG stream"), "{}", stats.source);
    // One encode per upstream frame although two viewers (ours, the front) watch it.
    let up_stats = up.hub.handle().stats();
    assert_eq!(up_stats.encodes, up_stats.published);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn digital_zoom_re_encodes_and_passthrough_resumes_without_it() {
    let up = upstream(10).await;
    let front = front(&format!("http://{}/stream.mjpg", up.addr), 10);
    let h = front.handle();
    assert!(
        h.snapshot(Duration::from_secs(5))
            .await
            .unwrap()
            .passthrough
    );
    h.set_ptz(camnode::camera::Ptz {
        pan: 0.2,
        tilt: 0.0,
        zoom: 2.0,
    });
    // The frame in the making when the request came may still pass through; the next does not.
    h.snapshot(Duration::from_secs(5)).await.unwrap();
    let zoomed = h.snapshot(Duration::from_secs(5)).await.unwrap();
    assert!(!zoomed.passthrough, "zoomed frames are encoded here");
    assert_eq!(
        camnode::camera::jpeg::dimensions(&zoomed.jpeg),
        Some((W, H)),
        "same size"
    );
    h.set_ptz(camnode::camera::Ptz::default());
    h.snapshot(Duration::from_secs(5)).await.unwrap();
    assert!(
        h.snapshot(Duration::from_secs(5))
            .await
            .unwrap()
            .passthrough
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_snapshot_url_is_polled_at_the_frame_rate() {
    let up = upstream(25).await;
    let front = front(&format!("http://{}/snapshot.jpg", up.addr), 5);
    let start = Instant::now();
    let got = frames(&front.handle(), 10, Duration::from_secs(5)).await;
    let secs = start.elapsed().as_secs_f64();
    assert_eq!(got.len(), 10);
    assert!(got.iter().all(|(j, p)| *p && j.starts_with(&[0xFF, 0xD8])));
    // 10 frames at 5 fps: about 2 s (the first comes at once).
    assert!(
        (1.4..3.5).contains(&secs),
        "{secs} s for 10 snapshots at 5 fps"
    );
    assert_eq!(front.handle().stats().encodes, 0);
    assert!(
        front
            .handle()
            .stats()
            .source
            .contains("snapshots every 200 ms"),
        "{}",
        front.handle().stats().source
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_upstream_is_watched_only_while_someone_watches_the_front() {
    let up = upstream(10).await;
    let front = front(&format!("http://{}/stream.mjpg", up.addr), 10);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        up.hub.handle().stats().viewers,
        0,
        "no viewer, no connection"
    );
    let snap = front
        .handle()
        .snapshot(Duration::from_secs(5))
        .await
        .unwrap();
    assert!(snap.passthrough);
    assert_eq!(up.hub.handle().stats().viewers, 1);
    // The connection lingers for 3 s after the last frame asked for, then closes.
    let start = Instant::now();
    while up.hub.handle().stats().viewers > 0 {
        assert!(start.elapsed() < Duration::from_secs(6), "still connected");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        start.elapsed() >= Duration::from_secs(2),
        "{:?}",
        start.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fronting_ffmpeg_served_mjpeg_and_ffprobe_accepts_the_result() {
    let port = free_port();
    let mut ffmpeg = tokio::process::Command::new("ffmpeg")
        .args(["-hide_banner", "-nostdin", "-loglevel", "error", "-re"])
        .args(["-f", "lavfi", "-i", "testsrc2=size=640x480:rate=15"])
        .args(["-c:v", "mjpeg", "-q:v", "5", "-f", "mpjpeg"])
        // Without -content_type ffmpeg says application/octet-stream: camnode finds the
        // boundary in the body (the lab test passes -content_type).
        .args(["-listen", "1"])
        .arg(format!("http://127.0.0.1:{port}/feed.mjpg"))
        .kill_on_drop(true)
        .spawn()
        .expect("ffmpeg (Debian: apt-get install ffmpeg)");
    let front = serve(front(&format!("http://127.0.0.1:{port}/feed.mjpg"), 15)).await;
    // "No signal" until ffmpeg listens; then its JPEGs.
    let mut viewer = front.hub.handle().subscribe();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !viewer.next().await.unwrap().passthrough {
        assert!(Instant::now() < deadline, "ffmpeg's stream never came");
    }
    let no_signal = front.hub.handle().stats().encodes;
    let got = frames(&front.hub.handle(), 15, Duration::from_secs(8)).await;
    assert_eq!(got.len(), 15);
    assert!(got.iter().all(|(_, p)| *p), "passed through");
    let dir = temp_dir("ffmpeg");
    let jpeg = dir.join("frame.jpg");
    std::fs::write(&jpeg, &got[14].0).unwrap();
    assert_eq!(ffprobe(&[], jpeg.to_str().unwrap()), "mjpeg,640,480");
    // The front's own stream, as ffprobe reads it from the network.
    let url = format!("http://{}/stream.mjpg", front.addr);
    let probe = tokio::task::spawn_blocking(move || ffprobe(&["-f", "mpjpeg"], &url));
    assert_eq!(probe.await.unwrap(), "mjpeg,640,480");
    let stats = front.hub.handle().stats();
    assert_eq!(
        stats.encodes, no_signal,
        "no encode once ffmpeg's stream came: {stats:?}"
    );
    let _ = ffmpeg.kill().await;
    std::fs::remove_dir_all(dir).unwrap();
}

/// A 2 s clip at 10 fps made with ffmpeg's test source.
fn make_clip(dir: &Path) -> PathBuf {
    let clip = dir.join("clip.mkv");
    let status = std::process::Command::new("ffmpeg")
        .args(["-hide_banner", "-nostdin", "-loglevel", "error", "-y"])
        .args([
            "-f",
            "lavfi",
            "-i",
            "testsrc2=size=320x240:rate=10",
            "-t",
            "2",
        ])
        .args(["-c:v", "mpeg4", "-q:v", "5"])
        .arg(&clip)
        .status()
        .expect("ffmpeg (Debian: apt-get install ffmpeg)");
    assert!(status.success());
    clip
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_video_file_loops_at_its_own_frame_rate() {
    let dir = temp_dir("file");
    let clip = make_clip(&dir);
    let feed = file_source::open(&clip, 640, 480).unwrap();
    let hub = FrameHub::start(Box::new(feed), HubSettings::new(30, 75), "file").unwrap();
    // Warm up (ffmpeg starts on the first frame asked for), then count for 3 s.
    assert_eq!(
        frames(&hub.handle(), 1, Duration::from_secs(5)).await.len(),
        1
    );
    let start = Instant::now();
    let got = frames(&hub.handle(), 1000, Duration::from_secs(3)).await;
    let rate = got.len() as f64 / start.elapsed().as_secs_f64();
    // 10 fps, not the hub's 30, and on past the clip's 2 s (looped).
    assert!((7.0..=13.0).contains(&rate), "{rate} frames/s");
    assert!(got.iter().all(|(_, p)| *p));
    let stats = hub.handle().stats();
    assert_eq!(stats.encodes, 0, "{stats:?}");
    assert!(stats.source_health.frames >= 25, "{stats:?}");
    let jpeg = dir.join("f.jpg");
    std::fs::write(&jpeg, &got[0].0).unwrap();
    assert_eq!(ffprobe(&[], jpeg.to_str().unwrap()), "mjpeg,320,240");
    drop(hub);
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn a_file_ffmpeg_cannot_decode_is_refused_at_start() {
    let dir = temp_dir("bad-file");
    let text = dir.join("notes.mp4");
    std::fs::write(&text, "not a video\n").unwrap();
    let err = format!("{:#}", file_source::open(&text, 64, 48).unwrap_err());
    assert!(err.contains("ffmpeg cannot decode a picture"), "{err}");
    std::fs::remove_dir_all(dir).unwrap();
}

// ---------------------------------------------------------------------------------------------
// Upstreams that misbehave: a TCP server of our own speaking just enough HTTP.

/// What the fake camera does on one connection, given the request head and the connection's
/// number (from 0).
type Script = Arc<dyn Fn(&str, usize) -> Vec<Step> + Send + Sync>;

#[derive(Clone, Debug)]
enum Step {
    Send(Vec<u8>),
    Sleep(Duration),
    /// Keep the connection open and silent.
    Hold,
}

struct FakeCamera {
    addr: SocketAddr,
    connections: Arc<AtomicUsize>,
}

async fn fake_camera(script: Script) -> FakeCamera {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await.unwrap();
    let addr = listener.local_addr().unwrap();
    let connections = Arc::new(AtomicUsize::new(0));
    let count = connections.clone();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            let n = count.fetch_add(1, Ordering::SeqCst);
            let script = script.clone();
            tokio::spawn(async move {
                let Some(head) = read_head(&mut s).await else {
                    return;
                };
                for step in script(&head, n) {
                    match step {
                        Step::Send(b) => {
                            if s.write_all(&b).await.is_err() {
                                return;
                            }
                        }
                        Step::Sleep(d) => tokio::time::sleep(d).await,
                        Step::Hold => {
                            let _ = s.read(&mut [0u8; 64]).await;
                            return;
                        }
                    }
                }
            });
        }
    });
    FakeCamera { addr, connections }
}

/// A request's head, read up to its empty line.
async fn read_head(s: &mut (impl tokio::io::AsyncRead + Unpin)) -> Option<String> {
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        match s.read(&mut buf).await {
            Ok(0) | Err(_) => return None,
            Ok(k) => head.extend_from_slice(&buf[..k]),
        }
    }
    Some(String::from_utf8_lossy(&head).into_owned())
}

fn answer(status: &str, headers: &str, body: &[u8]) -> Step {
    let mut b = format!(
        "HTTP/1.1 {status}\r\n{headers}Content-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    b.extend_from_slice(body);
    Step::Send(b)
}

const STREAM_HEAD: &[u8] =
    b"HTTP/1.1 200 OK\r\nContent-Type: multipart/x-mixed-replace; boundary=frame\r\n\r\n";

fn part(jpeg: &[u8]) -> Vec<u8> {
    let mut b = format!(
        "--frame\r\nContent-Type: image/jpeg\r\nContent-Length: {}\r\n\r\n",
        jpeg.len()
    )
    .into_bytes();
    b.extend_from_slice(jpeg);
    b.extend_from_slice(b"\r\n");
    b
}

/// A real JPEG to serve.
fn sample_jpeg() -> Bytes {
    let mut s = Synthetic::new(W, H, "sample", "sample");
    let frame = s.render_rgb(0.0, "00:00:00.0 UTC");
    camnode::camera::jpeg::encode_rgb(&frame, 70, 0).unwrap()
}

/// The front's first frame and status once it shows its trouble.
async fn trouble_of(url: &str) -> (bool, String, String) {
    let front = front(url, 10);
    let snap = front
        .handle()
        .snapshot(Duration::from_secs(5))
        .await
        .expect("a frame");
    let stats = front.handle().stats();
    let trouble = stats.source_health.trouble.clone().unwrap_or_default();
    (snap.passthrough, trouble, stats.source)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broken_upstreams_show_no_signal_and_say_why() {
    let closed = free_port();
    let cam = fake_camera(Arc::new(|head: &str, _| {
        let path = head.split_whitespace().nth(1).unwrap_or("").to_owned();
        vec![match path.as_str() {
            "/missing" => answer("404 Not Found", "", b"no"),
            "/old" => answer("302 Found", "Location: /video.mjpg\r\n", b""),
            "/page" => answer("200 OK", "Content-Type: text/html\r\n", b"<html>"),
            "/locked" => answer(
                "401 Unauthorized",
                "WWW-Authenticate: Basic realm=\"cam\"\r\n",
                b"",
            ),
            "/fake.jpg" => answer("200 OK", "Content-Type: image/jpeg\r\n", b"GIF89a"),
            "/bytes" => answer(
                "200 OK",
                "Content-Type: application/octet-stream\r\n",
                b"\x00\x01 no delimiter line",
            ),
            _ => answer("500 Internal Server Error", "", b""),
        }]
    }))
    .await;
    let a = cam.addr;
    for (url, expected) in [
        (
            format!("http://127.0.0.1:{closed}/x"),
            "cannot connect to 127.0.0.1",
        ),
        (format!("http://{a}/missing"), "answered 404 Not Found"),
        (
            format!("http://{a}/old"),
            &format!("redirecting to \"http://{a}/video.mjpg\": use that URL"),
        ),
        (
            format!("http://{a}/page"),
            "sent \"text/html\", not multipart",
        ),
        (
            format!("http://{a}/locked"),
            "needs a user name and password",
        ),
        (format!("http://{a}/fake.jpg"), "the snapshot is not a JPEG"),
        (
            format!("http://{a}/bytes"),
            "sent \"application/octet-stream\", not multipart",
        ),
    ] {
        let (passthrough, trouble, source) = trouble_of(&url).await;
        assert!(!passthrough, "{url}: a NO SIGNAL picture, encoded here");
        assert!(trouble.contains(expected), "{url}: {trouble}");
        assert!(source.contains("no signal"), "{url}: {source}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_stream_is_dropped_and_the_camera_called_again() {
    let jpeg = sample_jpeg();
    let cam = fake_camera(Arc::new(move |_, _| {
        vec![
            Step::Send(STREAM_HEAD.to_vec()),
            Step::Send(part(&jpeg)),
            Step::Hold,
        ]
    }))
    .await;
    let front = front(&format!("http://{}/stream", cam.addr), 10);
    let h = front.handle();
    let mut viewer = h.subscribe();
    let first = viewer.next().await.unwrap();
    assert!(first.passthrough);
    // No data for 5 s: the front gives up on the connection, shows why, and calls again.
    let start = Instant::now();
    let (mut trouble, mut no_signal) = (None, 0);
    while start.elapsed() < Duration::from_secs(9) {
        let f = viewer.next().await.unwrap();
        no_signal += usize::from(!f.passthrough);
        if let Some(t) = h.stats().source_health.trouble {
            trouble = Some(t);
        }
        if cam.connections.load(Ordering::SeqCst) >= 2 {
            break;
        }
    }
    let trouble = trouble.expect("the stall was reported");
    assert!(trouble.contains("stalled: no data for 5 s"), "{trouble}");
    assert!(no_signal > 0, "NO SIGNAL pictures meanwhile");
    assert!(cam.connections.load(Ordering::SeqCst) >= 2, "called again");
    assert!(
        start.elapsed() >= Duration::from_secs(3),
        "{:?}",
        start.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_parts_cost_those_parts_and_the_stream_goes_on() {
    let jpeg = sample_jpeg();
    let served = jpeg.clone();
    let cam = fake_camera(Arc::new(move |_, _| {
        let jpeg = &served;
        let mut steps = vec![Step::Send(STREAM_HEAD.to_vec())];
        // A part announcing 100 MB (refused at its header; its 1 MB are skipped), a part that is
        // no JPEG, a part of another type, garbage lines: then good parts again.
        steps.push(Step::Send(
            b"--frame\r\nContent-Type: image/jpeg\r\nContent-Length: 100000000\r\n\r\n".to_vec(),
        ));
        let mut body = vec![b'x'; 1 << 20];
        body.extend_from_slice(b"\r\n");
        steps.push(Step::Send(body));
        steps.push(Step::Send(part(b"not a jpeg at all")));
        steps.push(Step::Send(
            b"--frame\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\r\nhi\r\n".to_vec(),
        ));
        steps.push(Step::Send(b"garbage line\r\nmore garbage\r\n".to_vec()));
        for _ in 0..100 {
            steps.push(Step::Send(part(jpeg)));
            steps.push(Step::Sleep(Duration::from_millis(50)));
        }
        steps.push(Step::Hold);
        steps
    }))
    .await;
    let front = front(&format!("http://{}/stream", cam.addr), 20);
    let got = frames(&front.handle(), 10, Duration::from_secs(6)).await;
    assert_eq!(got.len(), 10);
    assert!(
        got.iter().all(|(j, p)| *p && *j == jpeg),
        "the good parts, unchanged"
    );
    let health = front.handle().stats().source_health;
    assert!(health.malformed >= 3, "{health:?}");
    assert_eq!(health.failures, 0, "no reconnection needed: {health:?}");
    assert_eq!(cam.connections.load(Ordering::SeqCst), 1);
}

/// What cheap cameras send: HTTP/1.0 without length, a space before a header's colon, a header
/// with a control byte, a boundary declared with its dashes, LF-only part lines, no part length.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sloppy_camera_is_understood() {
    let jpeg = sample_jpeg();
    let served = jpeg.clone();
    let cam = fake_camera(Arc::new(move |_, _| {
        let mut steps = vec![Step::Send(
            b"HTTP/1.0 200 OK\r\nContent-Type : multipart/x-mixed-replace;boundary=--myboundary\r\n\
              X-Odd: a\x01b\r\nServer: cheapcam\r\n\r\n"
                .to_vec(),
        )];
        for _ in 0..40 {
            let mut part = b"--myboundary\nContent-Type: image/jpeg\n\n".to_vec();
            part.extend_from_slice(&served);
            part.extend_from_slice(b"\n");
            steps.push(Step::Send(part));
            steps.push(Step::Sleep(Duration::from_millis(50)));
        }
        steps.push(Step::Hold);
        steps
    }))
    .await;
    let front = front(&format!("http://{}/videostream.cgi", cam.addr), 20);
    let got = frames(&front.handle(), 5, Duration::from_secs(5)).await;
    assert_eq!(got.len(), 5);
    assert!(got.iter().all(|(j, p)| *p && *j == jpeg));
}

/// MD5 as lowercase hex, computed here independently of camnode's Digest code.
fn md5_hex(s: &str) -> String {
    use md5::Digest as _;
    md5::Md5::digest(s.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn param(header: &str, name: &str) -> String {
    let at = header.find(&format!(" {name}=")).unwrap() + name.len() + 2;
    let rest = &header[at..];
    match rest.strip_prefix('"') {
        Some(q) => q[..q.find('"').unwrap()].to_owned(),
        None => rest.split(',').next().unwrap().trim().to_owned(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cameras_that_ask_for_basic_or_digest_credentials() {
    let jpeg = sample_jpeg();
    let cam = fake_camera(Arc::new(move |head: &str, _| {
        let auth = head
            .lines()
            .find_map(|l| l.strip_prefix("authorization: "))
            .map(str::to_owned);
        let path = head.split_whitespace().nth(1).unwrap_or("").to_owned();
        let ok = match (path.as_str(), auth) {
            ("/basic.jpg", Some(a)) => a == "Basic YWRtaW46czNjciN0", // admin:s3cr#t
            ("/digest.jpg", Some(a)) if a.starts_with("Digest ") => {
                let ha1 = md5_hex("admin:cam:s3cr#t");
                let ha2 = md5_hex("GET:/digest.jpg");
                let expected = md5_hex(&format!(
                    "{ha1}:n0nce:{}:{}:auth:{ha2}",
                    param(&a, "nc"),
                    param(&a, "cnonce")
                ));
                param(&a, "response") == expected && param(&a, "opaque") == "op"
            }
            _ => false,
        };
        let challenge = if path == "/basic.jpg" {
            "WWW-Authenticate: Basic realm=\"cam\"\r\n"
        } else {
            "WWW-Authenticate: Digest realm=\"cam\", nonce=\"n0nce\", qop=\"auth\", opaque=\"op\"\r\n"
        };
        vec![if ok {
            answer("200 OK", "Content-Type: image/jpeg\r\n", &jpeg)
        } else {
            answer("401 Unauthorized", challenge, b"")
        }]
    }))
    .await;
    let a = cam.addr;
    for path in ["basic.jpg", "digest.jpg"] {
        // The password is percent-encoded in the URL ('#' would start a fragment).
        let front = front(&format!("http://admin:s3cr%23t@{a}/{path}"), 10);
        let got = frames(&front.handle(), 3, Duration::from_secs(5)).await;
        assert_eq!(got.len(), 3, "{path}");
        assert!(got.iter().all(|(_, p)| *p), "{path}");
        let source = front.handle().stats().source;
        assert!(
            source.contains("admin:***@") && !source.contains("s3cr"),
            "{source}"
        );
        // A wrong password is refused with that reason.
        let (passthrough, trouble, _) = trouble_of(&format!("http://admin:wrong@{a}/{path}")).await;
        assert!(!passthrough);
        assert!(
            trouble.contains("refused the user name and password"),
            "{trouble}"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// https: the camnode binary in front of a TLS camera whose certificate comes from a CA made here.

/// A CA and a certificate for 127.0.0.1 signed by it (openssl), in `dir`.
fn make_certificates(dir: &Path) {
    let run = |args: &[&str]| {
        let out = std::process::Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .output()
            .expect("openssl");
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    run(&[
        "req",
        "-x509",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
        "-days",
        "2",
        "-subj",
        "/CN=camnode test CA",
    ]);
    run(&[
        "req",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
        "-keyout",
        "cam.key",
        "-out",
        "cam.csr",
        "-subj",
        "/CN=127.0.0.1",
    ]);
    std::fs::write(
        dir.join("ext.cnf"),
        "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\n",
    )
    .unwrap();
    run(&[
        "x509",
        "-req",
        "-in",
        "cam.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "cam.pem",
        "-days",
        "2",
        "-extfile",
        "ext.cnf",
    ]);
}

/// A TLS camera serving `jpeg` as its snapshot.
async fn tls_camera(dir: &Path, jpeg: Bytes) -> SocketAddr {
    use rustls::pki_types::pem::PemObject as _;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(dir.join("cam.pem"))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    let key = PrivateKeyDer::from_pem_file(dir.join("cam.key")).unwrap();
    #[allow(deprecated)] // ring, as camnode uses it
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let (acceptor, jpeg) = (acceptor.clone(), jpeg.clone());
            tokio::spawn(async move {
                let Ok(mut s) = acceptor.accept(tcp).await else {
                    return;
                };
                if read_head(&mut s).await.is_none() {
                    return;
                }
                let Step::Send(reply) = answer("200 OK", "Content-Type: image/jpeg\r\n", &jpeg)
                else {
                    return;
                };
                let _ = s.write_all(&reply).await;
                let _ = s.shutdown().await;
            });
        }
    });
    addr
}

/// The camnode binary with `args`, its web server on `port`; killed on drop.
struct Camnode(std::process::Child);

impl Drop for Camnode {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

async fn http_get(addr: SocketAddr, path: &str) -> (u16, Bytes) {
    let resp = get(addr, path).await;
    let status = resp.status().as_u16();
    (status, resp.into_body().collect().await.unwrap().to_bytes())
}

async fn wait_listening(addr: SocketAddr) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while TcpStream::connect(addr).await.is_err() {
        assert!(
            Instant::now() < deadline,
            "camnode did not listen on {addr}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn camnode_fronts_an_https_camera_trusted_through_ssl_cert_file() {
    let dir = temp_dir("tls");
    make_certificates(&dir);
    let jpeg = sample_jpeg();
    let cam = tls_camera(&dir, jpeg.clone()).await;
    let url = format!("https://127.0.0.1:{}/snap.jpg", cam.port());
    let start = |trust: Option<&Path>| {
        let port = free_port();
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_camnode"));
        cmd.args(["--source", &url, "--fps", "5", "--listen", "127.0.0.1"])
            .args([
                "--web-port",
                &port.to_string(),
                "--representative-port",
                "18080",
            ])
            .args([
                "--igd-url",
                "http://127.0.0.1:9/rootDesc.xml",
                "--state-dir",
            ])
            .arg(dir.join(format!("state-{port}")))
            .env("RUST_LOG", "warn")
            .env_remove("SSL_CERT_DIR")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        match trust {
            Some(ca) => cmd.env("SSL_CERT_FILE", ca),
            None => cmd.env_remove("SSL_CERT_FILE"),
        };
        (
            Camnode(cmd.spawn().unwrap()),
            SocketAddr::from((Ipv4Addr::LOCALHOST, port)),
        )
    };
    // Trusting the test CA: the camera's JPEG comes through unchanged.
    let (_trusting, addr) = start(Some(&dir.join("ca.pem")));
    wait_listening(addr).await;
    let (status, body) = http_get(addr, "/snapshot.jpg").await;
    assert_eq!(status, 200);
    assert_eq!(body, jpeg, "the https camera's JPEG, byte for byte");
    let (_, status_json) = http_get(addr, "/status.json").await;
    let v: serde_json::Value = serde_json::from_slice(&status_json).unwrap();
    assert!(v["camera"]["passthrough"].as_u64().unwrap() >= 1, "{v}");
    assert_eq!(v["camera"]["encodes"], 0, "{v}");
    // With the system's roots only: a NO SIGNAL picture, and the status says why.
    let (_distrusting, addr) = start(None);
    wait_listening(addr).await;
    let (status, body) = http_get(addr, "/snapshot.jpg").await;
    assert_eq!(status, 200);
    assert_ne!(body, jpeg);
    let (_, status_json) = http_get(addr, "/status.json").await;
    let v: serde_json::Value = serde_json::from_slice(&status_json).unwrap();
    let source = v["camera"]["source"].as_str().unwrap().to_owned();
    assert!(
        source.contains("no signal: TLS with 127.0.0.1") && source.contains("certificate"),
        "{source}"
    );
    std::fs::remove_dir_all(dir).unwrap();
}
