//! `cam-bench`: the camera node's benchmark (issue 5).
//!
//! 1. JPEG encode time per frame at 640x480 and 1280x720: jpeg-encoder (ours) against
//!    libjpeg-turbo measured in the same run on the same picture, written as PPM: `tjbench`
//!    (in-process compression time) and `cjpeg` (whole process, start-up included). Debian:
//!    `apt-get install libjpeg-turbo-progs`. Missing tools are reported, not fatal.
//! 2. MJPEG fan-out on loopback with 1, 10 and 50 viewers: the real web service and frame hub
//!    with the synthetic source; the viewers run in a child process (this binary with
//!    `--client`), so the CPU time of this process (getrusage) is the server's alone. Reports
//!    delivered frames/s per viewer, encodes/s (must equal the source rate, not viewers x rate)
//!    and CPU.
//!
//! `cargo run --release -p camnode --bin cam-bench -- [--seconds 5] [--fps 30] [--quality 80]
//!  [--width 640 --height 480] [--viewers 1,10,50] [--encode-seconds 2]`

use std::net::{Ipv4Addr, SocketAddr};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use camnode::camera::jpeg::{encode_rgb, encode_rgb_parallel};
use camnode::camera::synthetic::Synthetic;
use camnode::camera::{FrameHub, HubSettings, RgbFrame};
use camnode::directory::{Directory, Reachability, Role};
use camnode::web::{self, WebConfig, WebState};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};

#[derive(Debug, Clone)]
struct Opts {
    seconds: f64,
    encode_seconds: f64,
    fps: u32,
    quality: u8,
    width: u32,
    height: u32,
    viewers: Vec<usize>,
}

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("--client") {
        return client_main(&args[1..]);
    }
    let opts = parse_opts(&args)?;
    println!(
        "cam-bench: {} cores, jpeg-encoder with AVX2: {}",
        num_cpus(),
        cfg!(target_arch = "x86_64") && avx2()
    );
    println!();
    encode_bench(&opts)?;
    println!();
    fanout_bench(&opts)?;
    Ok(())
}

fn parse_opts(args: &[String]) -> anyhow::Result<Opts> {
    let mut o = Opts {
        seconds: 5.0,
        encode_seconds: 4.0,
        fps: 30,
        quality: 80,
        width: 640,
        height: 480,
        viewers: vec![1, 10, 50],
    };
    let mut it = args.iter();
    while let Some(flag) = it.next() {
        let value = it.next().with_context(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--seconds" => o.seconds = value.parse()?,
            "--encode-seconds" => o.encode_seconds = value.parse()?,
            "--fps" => o.fps = value.parse()?,
            "--quality" => o.quality = value.parse()?,
            "--width" => o.width = value.parse()?,
            "--height" => o.height = value.parse()?,
            "--viewers" => {
                o.viewers = value.split(',').map(str::parse).collect::<Result<_, _>>()?
            }
            other => bail!("unknown option {other}; see the top of camnode/src/bin/cam-bench.rs"),
        }
    }
    Ok(o)
}

fn num_cpus() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

fn avx2() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::is_x86_feature_detected!("avx2")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// CPU time (user + system) of this process, or of its reaped children.
fn cpu_time(who: i32) -> Duration {
    // SAFETY: getrusage fills the struct we pass; a zeroed rusage is a valid initial value.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: `ru` is a valid, writable rusage.
    if unsafe { libc::getrusage(who, &mut ru) } != 0 {
        return Duration::ZERO;
    }
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

// ---------------------------------------------------------------------------------------------
// 1. Encode time

/// Rounds per encoder; each side's best round counts.
const ROUNDS: u32 = 4;

fn encode_bench(o: &Opts) -> anyhow::Result<()> {
    println!(
        "JPEG encode, quality {}, 4:2:0, synthetic picture (time per frame, lower is better)",
        o.quality
    );
    let threads = num_cpus().min(4);
    println!(
        "{:<10} {:>14} {:>16} {:>12} {:>22} {:>8} {:>8} {:>22}",
        "size",
        "jpeg-encoder",
        format!("ours, {threads} strips"),
        "JPEG bytes",
        "libjpeg-turbo tjbench",
        "ratio",
        "ratio",
        "cjpeg (whole process)"
    );
    println!(
        "{:<10} {:>14} {:>16} {:>12} {:>22} {:>8} {:>8}",
        "", "1 thread", "(as the hub)", "", "1 thread", "1 thr.", "strips"
    );
    let dir = std::env::temp_dir().join(format!("cam-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    for (w, h) in [(640, 480), (1280, 720)] {
        let mut scene = Synthetic::new(w, h, "cam-bench", "camera 1");
        let frame = scene.render(1.234, "12:34:56.7 UTC").clone();
        let ppm = dir.join(format!("frame-{w}x{h}.ppm"));
        write_ppm(&ppm, &frame)?;
        // The machine may be shared: alternate the two encoders in rounds and keep each one's
        // best round, so both see the same background load.
        let round = o.encode_seconds / ROUNDS as f64;
        let (mut ours, mut par, mut bytes, mut tj) = (
            Duration::MAX,
            Duration::MAX,
            0,
            Err(anyhow::anyhow!("not run")),
        );
        for _ in 0..ROUNDS {
            let (t, b) = time_ours(&frame, o.quality, round, 1)?;
            (ours, bytes) = (ours.min(t), b);
            par = par.min(time_ours(&frame, o.quality, round, threads)?.0);
            tj = match (tjbench(&ppm, o.quality, round, w, h), tj) {
                (Ok(t), Ok(best)) => Ok(t.min(best)),
                (Ok(t), Err(_)) => Ok(t),
                (Err(e), _) => Err(e),
            };
        }
        let cj = cjpeg(&ppm, o.quality, o.encode_seconds);
        let ms = |d: Duration| format!("{:.2} ms", d.as_secs_f64() * 1e3);
        let (tj_text, ratio, ratio_par) = match &tj {
            Ok(t) => (
                ms(*t),
                format!("{:.2}x", ours.as_secs_f64() / t.as_secs_f64()),
                format!("{:.2}x", par.as_secs_f64() / t.as_secs_f64()),
            ),
            Err(e) => (format!("n/a ({e})"), "-".into(), "-".into()),
        };
        let cj_text = match &cj {
            Ok(t) => ms(*t),
            Err(e) => format!("n/a ({e})"),
        };
        println!(
            "{:<10} {:>14} {:>16} {:>12} {:>22} {:>8} {:>8} {:>22}",
            format!("{w}x{h}"),
            ms(ours),
            ms(par),
            bytes,
            tj_text,
            ratio,
            ratio_par,
            cj_text
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
    println!(
        "ratio = our time per frame / libjpeg-turbo's, single-threaded and with strips (goal: at most 1.5x)"
    );
    Ok(())
}

fn time_ours(
    frame: &RgbFrame,
    quality: u8,
    seconds: f64,
    threads: usize,
) -> anyhow::Result<(Duration, usize)> {
    let encode = |hint| {
        if threads > 1 {
            encode_rgb_parallel(frame, quality, threads, hint)
        } else {
            encode_rgb(frame, quality, hint)
        }
    };
    let mut hint = 0;
    for _ in 0..5 {
        hint = encode(hint)?.len();
    }
    let start = Instant::now();
    let mut n = 0u32;
    while start.elapsed().as_secs_f64() < seconds || n < 10 {
        let out = encode(hint)?;
        std::hint::black_box(&out);
        n += 1;
    }
    Ok((start.elapsed() / n, hint))
}

fn write_ppm(path: &std::path::Path, frame: &RgbFrame) -> std::io::Result<()> {
    let mut data = format!("P6\n{} {}\n255\n", frame.width, frame.height).into_bytes();
    data.extend_from_slice(&frame.data);
    std::fs::write(path, data)
}

/// libjpeg-turbo's own benchmark: compression only, RGB input, 4:2:0, Mpixels/s -> time/frame.
fn tjbench(
    ppm: &std::path::Path,
    quality: u8,
    seconds: f64,
    w: u32,
    h: u32,
) -> anyhow::Result<Duration> {
    let out = Command::new("tjbench")
        .arg(ppm)
        .arg(quality.to_string())
        .args([
            "-rgb",
            "-subsamp",
            "420",
            "-componly",
            "-nowrite",
            "-quiet",
            "-warmup",
            "0.2",
            "-benchtime",
        ])
        .arg(format!("{seconds}"))
        .stderr(Stdio::null())
        .output()
        .context("tjbench not found (apt-get install libjpeg-turbo-progs)")?;
    let text = String::from_utf8_lossy(&out.stdout);
    // "RGB  (TD)  4:2:0    80    640    480     111.7   4.479   N/A"
    let mpix: f64 = text
        .lines()
        .find(|l| l.trim_start().starts_with("RGB"))
        .and_then(|l| l.split_whitespace().nth(6))
        .and_then(|v| v.parse().ok())
        .context("unexpected tjbench output")?;
    Ok(Duration::from_secs_f64(
        f64::from(w) * f64::from(h) / 1e6 / mpix,
    ))
}

/// cjpeg on the same file, whole process per frame (start-up and file reading included).
fn cjpeg(ppm: &std::path::Path, quality: u8, seconds: f64) -> anyhow::Result<Duration> {
    let run = || -> anyhow::Result<()> {
        let status = Command::new("cjpeg")
            .args(["-quality", &quality.to_string(), "-outfile", "/dev/null"])
            .arg(ppm)
            .stderr(Stdio::null())
            .status()
            .context("cjpeg not found (apt-get install libjpeg-turbo-progs)")?;
        if !status.success() {
            bail!("cjpeg failed");
        }
        Ok(())
    };
    run()?;
    let start = Instant::now();
    let mut n = 0u32;
    while start.elapsed().as_secs_f64() < seconds / 2.0 || n < 5 {
        run()?;
        n += 1;
    }
    Ok(start.elapsed() / n)
}

// ---------------------------------------------------------------------------------------------
// 2. Fan-out

fn fanout_bench(o: &Opts) -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    println!(
        "MJPEG fan-out: {}x{} at {} fps, quality {}, {} s per run, viewers in a child process on loopback",
        o.width, o.height, o.fps, o.quality, o.seconds
    );
    println!(
        "{:>7} {:>20} {:>12} {:>14} {:>14} {:>16} {:>14}",
        "viewers",
        "frames/s per viewer",
        "encodes/s",
        "encodes/frame",
        "MB/s sent",
        "server CPU",
        "viewers' CPU"
    );
    println!("{:>7} {:>20}", "", "(min / avg)");
    for &n in &o.viewers {
        rt.block_on(fanout_run(o, n))?;
    }
    println!(
        "server CPU = this process (hub thread, encoder, HTTP) as % of one core; goal: frames/s per viewer = source fps, encodes/s = source fps"
    );
    Ok(())
}

async fn fanout_run(o: &Opts, viewers: usize) -> anyhow::Result<()> {
    let source = Synthetic::new(o.width, o.height, "cam-bench", "camera 1");
    let hub = FrameHub::start(
        Box::new(source),
        HubSettings::new(o.fps, o.quality),
        "camera 1",
    )?;
    let dir = Directory {
        node_id: "bench".into(),
        name: "camera 1".into(),
        role: Role::Representative,
        reachability: Reachability::Reachable,
        external_addr: None,
        lan_addr: Some(Ipv4Addr::LOCALHOST),
        external_port: None,
        lan_port: 0,
        peers: Vec::new(),
    };
    let (_dir_tx, dir_rx) = watch::channel(dir);
    let (cmd_tx, _cmd_rx) = mpsc::channel(1);
    let config = WebConfig {
        domain: String::new(),
        password: String::new(),
        max_streams: viewers.max(200),
        width: o.width,
        height: o.height,
    };
    let state = WebState::new(hub.handle(), dir_rx, cmd_tx, config);
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await?;
    let addr = listener.local_addr()?;
    let (stop_tx, mut stop_rx) = watch::channel(false);
    let server = tokio::spawn(web::serve_listener(state, listener, async move {
        let _ = stop_rx.wait_for(|s| *s).await;
    }));

    // The viewers connect, warm up for one second, then count for `seconds`.
    let exe = std::env::current_exe()?;
    let child = tokio::process::Command::new(exe)
        .args([
            "--client",
            &addr.to_string(),
            &viewers.to_string(),
            "1.0",
            &o.seconds.to_string(),
        ])
        .stdout(Stdio::piped())
        .spawn()?;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let (stats0, cpu0, t0) = (
        hub.handle().stats(),
        cpu_time(libc::RUSAGE_SELF),
        Instant::now(),
    );
    tokio::time::sleep(Duration::from_secs_f64(o.seconds)).await;
    let (stats1, cpu1, elapsed) = (
        hub.handle().stats(),
        cpu_time(libc::RUSAGE_SELF),
        t0.elapsed(),
    );
    let children0 = cpu_time(libc::RUSAGE_CHILDREN);
    let out = child.wait_with_output().await?;
    let client_cpu = cpu_time(libc::RUSAGE_CHILDREN).saturating_sub(children0);
    let _ = stop_tx.send(true);
    let _ = server.await;
    drop(hub);

    let text = String::from_utf8_lossy(&out.stdout);
    let mut counts = Vec::new();
    let mut bytes = 0u64;
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("viewer ") {
            let mut f = rest.split_whitespace();
            let frames: u64 = f.next().and_then(|v| v.parse().ok()).unwrap_or(0);
            bytes += f.next().and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
            counts.push(frames);
        }
    }
    if counts.len() != viewers {
        bail!("{} of {viewers} viewers reported: {text}", counts.len());
    }
    let secs = elapsed.as_secs_f64();
    let rate = |n: u64| n as f64 / o.seconds;
    let min = counts.iter().copied().min().map_or(0.0, rate);
    let avg = rate(counts.iter().sum::<u64>()) / viewers as f64;
    let encodes = (stats1.encodes - stats0.encodes) as f64 / secs;
    let published = (stats1.published - stats0.published) as f64 / secs;
    let per_frame = if published > 0.0 {
        encodes / published
    } else {
        0.0
    };
    let cpu = (cpu1 - cpu0).as_secs_f64() / secs * 100.0;
    let ccpu = client_cpu.as_secs_f64() / (o.seconds + 1.0) * 100.0;
    println!(
        "{:>7} {:>20} {:>12.1} {:>14.2} {:>14.1} {:>15.1}% {:>13.1}%",
        viewers,
        format!("{min:.1} / {avg:.1}"),
        encodes,
        per_frame,
        bytes as f64 / o.seconds / 1e6,
        cpu,
        ccpu
    );
    Ok(())
}

/// The viewers: `--client ADDR N WARMUP SECONDS`. Prints "viewer FRAMES BYTES" per viewer, counting
/// only parts completed during the measured window.
fn client_main(args: &[String]) -> anyhow::Result<()> {
    let [addr, n, warmup, seconds] = args else {
        bail!("--client ADDR N WARMUP SECONDS")
    };
    let addr: SocketAddr = addr.parse()?;
    let n: usize = n.parse()?;
    let warmup = Duration::from_secs_f64(warmup.parse()?);
    let seconds = Duration::from_secs_f64(seconds.parse()?);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let start = Instant::now();
        let (from, to) = (start + warmup, start + warmup + seconds);
        let mut tasks = Vec::new();
        for _ in 0..n {
            tasks.push(tokio::spawn(view(addr, from, to)));
        }
        for t in tasks {
            let (frames, bytes) = t.await??;
            println!("viewer {frames} {bytes}");
        }
        Ok(())
    })
}

/// One viewer: read the stream, undoing the chunked coding and skipping each part by its
/// Content-Length (no scanning of JPEG bytes), and count parts that end inside [from, to).
async fn view(addr: SocketAddr, from: Instant, to: Instant) -> anyhow::Result<(u64, u64)> {
    let mut s = TcpStream::connect(addr).await?;
    s.set_nodelay(true)?;
    s.write_all(b"GET /stream.mjpg HTTP/1.1\r\nHost: bench\r\n\r\n")
        .await?;
    let mut parser = Parser::default();
    let mut buf = vec![0u8; 256 * 1024];
    let (mut frames, mut bytes) = (0u64, 0u64);
    loop {
        let remaining = to.saturating_duration_since(Instant::now());
        if remaining.is_zero() {
            break;
        }
        let got = match tokio::time::timeout(remaining, s.read(&mut buf)).await {
            Ok(r) => r?,
            Err(_) => break,
        };
        if got == 0 {
            bail!("the server closed the stream");
        }
        let done = parser.feed(&buf[..got])?;
        if Instant::now() >= from {
            frames += done;
            bytes += got as u64;
        }
    }
    Ok((frames, bytes))
}

/// Incremental parser: HTTP head, then chunked coding, then multipart parts by Content-Length.
#[derive(Debug, Default)]
struct Parser {
    head_done: bool,
    /// Bytes not yet consumed at the current layer (head, chunk size lines, part headers).
    pending: Vec<u8>,
    /// Payload bytes left in the current chunk.
    chunk_left: usize,
    /// JPEG bytes left in the current part.
    part_left: usize,
    /// Collected part-header bytes.
    part_head: Vec<u8>,
    in_part: bool,
}

impl Parser {
    /// Feed wire bytes; returns how many parts completed.
    fn feed(&mut self, mut data: &[u8]) -> anyhow::Result<u64> {
        let mut done = 0;
        if !self.head_done {
            self.pending.extend_from_slice(data);
            let Some(end) = self.pending.windows(4).position(|w| w == b"\r\n\r\n") else {
                return Ok(0);
            };
            if !self.pending.starts_with(b"HTTP/1.1 200") {
                bail!(
                    "stream refused: {}",
                    String::from_utf8_lossy(&self.pending[..end])
                );
            }
            let rest = self.pending.split_off(end + 4);
            self.pending.clear();
            self.head_done = true;
            return self.feed_owned(rest);
        }
        while !data.is_empty() {
            if self.chunk_left > 0 {
                let take = self.chunk_left.min(data.len());
                done += self.payload(&data[..take]);
                self.chunk_left -= take;
                data = &data[take..];
                continue;
            }
            // Chunk framing: "\r\n" after a chunk, then "SIZE\r\n".
            self.pending.push(data[0]);
            data = &data[1..];
            if self.pending.ends_with(b"\r\n") {
                let line = std::str::from_utf8(&self.pending[..self.pending.len() - 2])?
                    .trim()
                    .to_owned();
                self.pending.clear();
                if !line.is_empty() {
                    self.chunk_left =
                        usize::from_str_radix(line.split(';').next().unwrap_or(""), 16)?;
                }
            }
        }
        Ok(done)
    }

    fn feed_owned(&mut self, data: Vec<u8>) -> anyhow::Result<u64> {
        self.feed(&data)
    }

    /// Multipart payload bytes; returns parts completed.
    fn payload(&mut self, mut data: &[u8]) -> u64 {
        let mut done = 0;
        while !data.is_empty() {
            if self.in_part {
                let take = self.part_left.min(data.len());
                self.part_left -= take;
                data = &data[take..];
                if self.part_left == 0 {
                    self.in_part = false;
                    done += 1;
                }
                continue;
            }
            self.part_head.push(data[0]);
            data = &data[1..];
            if self.part_head.ends_with(b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&self.part_head).into_owned();
                self.part_head.clear();
                if let Some(len) = head
                    .lines()
                    .find_map(|l| l.strip_prefix("Content-Length: "))
                {
                    self.part_left = len.trim().parse().unwrap_or(0);
                    self.in_part = self.part_left > 0;
                }
            }
        }
        done
    }
}
