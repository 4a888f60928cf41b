//! `cam-bench`: the camera node's benchmark (issue 5).
//!
//! 1. JPEG encode time per frame at 640x480 and 1280x720: jpeg-encoder (ours) against
//!    libjpeg-turbo measured in the same run on the same picture. The same settings on both
//!    sides: quality, chroma subsampling (4:2:0 below quality 90, 4:4:4 from 90, as the camera
//!    encodes), the accurate integer DCT (jpeg-encoder has only that one; tjbench would take the
//!    fast one by default), baseline with the standard Huffman tables (neither side optimises
//!    them or goes progressive). Ours is what the hub does: the synthetic source's YCbCr planes
//!    into jpeg-encoder, one thread, the output buffer reused (tjbench reuses its own too); also
//!    shown: ours from the RGB picture, and in strips on several threads. libjpeg-turbo gets the
//!    same picture, rendered as RGB and written as PPM: `tjbench` (in-process compression time,
//!    file reading excluded) from RGB, and from planar YUV (`-yuv`: its "compress from YUV" time,
//!    the encoder alone without colour conversion; its chroma is already subsampled there, ours
//!    still averages 2x2), and `cjpeg` as a whole process (start-up and file reading included). Debian: `apt-get install
//!    libjpeg-turbo-progs`. Missing tools are reported, not fatal.
//! 2. MJPEG fan-out on loopback with 1, 10 and 50 viewers: the real web service and frame hub
//!    with the synthetic source; the viewers run in a child process (this binary with
//!    `--client`), so the CPU time of this process (getrusage) is the server's alone. Reports
//!    delivered frames/s per viewer, encodes/s (must equal the source rate, not viewers x rate)
//!    and CPU.
//! 3. Passthrough against encode (issue 15), with `--modes encode,passthrough`: the same fan-out,
//!    the picture either encoded here from the synthetic source (`encode`) or coming from a
//!    network camera's MJPEG stream through the http source and passed through (`passthrough`).
//!    The camera is another child process (this binary with `--upstream`) that replays 30
//!    pre-encoded frames at the frame rate, so its CPU is not ours either. Per size in
//!    `--fanout-sizes`; the server's CPU is also shown per 10 viewers (goal for passthrough: no
//!    encode, under 1 % of a core per 10 viewers at 30 fps).
//!
//! `cargo run --release -p bench --bin cam-bench -- [--seconds 5] [--fps 30] [--quality 80]
//!  [--width 640 --height 480] [--viewers 1,10,50] [--encode-seconds 4] [--sizes 640x480,1280x720]
//!  [--modes encode,passthrough] [--fanout-sizes 1280x720,1920x1080]`
//!  (`--viewers 0` skips the fan-out, `--sizes ""` the encode part; the fan-out runs at
//!  `--width`x`--height` in mode encode unless told otherwise)

use std::net::{Ipv4Addr, SocketAddr};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use camnode::camera::jpeg::{self, Picture};
use camnode::camera::synthetic::Synthetic;
use camnode::camera::{FrameHub, FrameSource, HubSettings, RgbFrame, YcbcrFrame, http_source};
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
    sizes: Vec<(u32, u32)>,
    modes: Vec<Mode>,
    fanout_sizes: Vec<(u32, u32)>,
}

/// Where the fan-out's pictures come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// The synthetic source, encoded here.
    Encode,
    /// A network camera's MJPEG stream (a child process), passed through.
    Passthrough,
}

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("--client") {
        return client_main(&args[1..]);
    }
    if args.first().map(String::as_str) == Some("--upstream") {
        return upstream_main(&args[1..]);
    }
    let opts = parse_opts(&args)?;
    println!(
        "cam-bench: {} cores, jpeg-encoder with AVX2: {}",
        num_cpus(),
        cfg!(target_arch = "x86_64") && avx2()
    );
    if !opts.sizes.is_empty() {
        println!();
        encode_bench(&opts)?;
    }
    if !opts.viewers.is_empty() {
        println!();
        fanout_bench(&opts)?;
    }
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
        sizes: vec![(640, 480), (1280, 720)],
        modes: vec![Mode::Encode],
        fanout_sizes: Vec::new(),
    };
    let sizes = |value: &str| -> anyhow::Result<Vec<(u32, u32)>> {
        value
            .split(',')
            .filter(|v| !v.is_empty())
            .map(|v| {
                let (w, h) = v.split_once('x').context("sizes are WxH,WxH")?;
                Ok((w.parse()?, h.parse()?))
            })
            .collect()
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
                o.viewers = value
                    .split(',')
                    .map(str::parse)
                    .filter(|n| *n != Ok(0))
                    .collect::<Result<_, _>>()?
            }
            "--sizes" => o.sizes = sizes(value)?,
            "--fanout-sizes" => o.fanout_sizes = sizes(value)?,
            "--modes" => {
                o.modes = value
                    .split(',')
                    .map(|m| match m {
                        "encode" => Ok(Mode::Encode),
                        "passthrough" => Ok(Mode::Passthrough),
                        other => bail!("--modes {other}: encode or passthrough"),
                    })
                    .collect::<anyhow::Result<_>>()?
            }
            other => bail!("unknown option {other}; see the top of bench/src/bin/cam-bench.rs"),
        }
    }
    if o.fanout_sizes.is_empty() {
        o.fanout_sizes = vec![(o.width, o.height)];
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
    let sampling = if o.quality < 90 { "4:2:0" } else { "4:4:4" };
    println!(
        "JPEG encode, quality {}, {sampling}, accurate DCT, baseline, standard Huffman tables, same synthetic picture",
        o.quality
    );
    println!(
        "(time per frame, lower is better; each figure the best of {ROUNDS} rounds taken in turns)"
    );
    let threads = num_cpus().min(4);
    let line = |cells: [&str; 10]| {
        println!(
            "{:<9} {:>11} {:>10} {:>10} {:>8} {:>11} {:>11} {:>9} {:>8} {:>8}",
            cells[0],
            cells[1],
            cells[2],
            cells[3],
            cells[4],
            cells[5],
            cells[6],
            cells[7],
            cells[8],
            cells[9]
        )
    };
    let strips = format!("{threads} strips");
    line([
        "", "ours", "ours", "ours", "ours", "tjbench", "tjbench", "ratio", "ratio", "cjpeg",
    ]);
    line([
        "size", "YCbCr in", "RGB in", &strips, "bytes", "RGB in", "YUV in", "YCbCr/", "YCbCr/",
        "process",
    ]);
    line([
        "",
        "(the hub)",
        "",
        "YCbCr in",
        "",
        "",
        "(no conv.)",
        "tj RGB",
        "tj YUV",
        "",
    ]);
    let dir = std::env::temp_dir().join(format!("cam-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let mut renders = Vec::new();
    for &(w, h) in &o.sizes {
        // The same scene twice: as the camera renders it (YCbCr planes) and in RGB for the
        // tools, which take RGB. The planes are exactly the RGB picture converted (a unit test
        // checks it).
        let mut scene = Synthetic::new(w, h, "cam-bench", "camera 1");
        let ycc = scene.render(1.234, "12:34:56.7 UTC").clone();
        let rgb = Synthetic::new(w, h, "cam-bench", "camera 1").render_rgb(1.234, "12:34:56.7 UTC");
        anyhow::ensure!(
            ycc == YcbcrFrame::from_rgb(&rgb),
            "the two renderings differ"
        );
        let ppm = dir.join(format!("frame-{w}x{h}.ppm"));
        write_ppm(&ppm, &rgb)?;
        // The machine may be shared: alternate the encoders in rounds and keep each one's best
        // round, so all see the same background load.
        let round = o.encode_seconds / f64::from(ROUNDS);
        let (mut ours, mut ours_rgb, mut par, mut bytes) =
            (Duration::MAX, Duration::MAX, Duration::MAX, 0);
        let (mut tj, mut tj_yuv) = (
            Err(anyhow::anyhow!("not run")),
            Err(anyhow::anyhow!("not run")),
        );
        let best = |new: anyhow::Result<(Duration, usize)>,
                    old: anyhow::Result<(Duration, usize)>| match (new, old) {
            (Ok(n), Ok(o)) => Ok(if n.0 < o.0 { n } else { o }),
            (Ok(n), Err(_)) => Ok(n),
            (Err(e), _) => Err(e),
        };
        for _ in 0..ROUNDS {
            let (t, b) = time_ours(Picture::Ycbcr(&ycc), o.quality, round, 1)?;
            (ours, bytes) = (ours.min(t), b);
            ours_rgb = ours_rgb.min(time_ours(Picture::Rgb(&rgb), o.quality, round, 1)?.0);
            par = par.min(time_ours(Picture::Ycbcr(&ycc), o.quality, round, threads)?.0);
            tj = best(tjbench(&ppm, o.quality, round, w, h, false), tj);
            tj_yuv = best(tjbench(&ppm, o.quality, round, w, h, true), tj_yuv);
        }
        let cj = cjpeg(&ppm, o.quality, o.encode_seconds);
        let ms = |d: Duration| format!("{:.2} ms", d.as_secs_f64() * 1e3);
        let ratio = |tj: &anyhow::Result<(Duration, usize)>| match tj {
            Ok((t, _)) => format!("{:.2}x", ours.as_secs_f64() / t.as_secs_f64()),
            Err(_) => "-".into(),
        };
        let tj_ms = |tj: &anyhow::Result<(Duration, usize)>| match tj {
            Ok((t, _)) => ms(*t),
            Err(_) => "n/a".into(),
        };
        line([
            &format!("{w}x{h}"),
            &ms(ours),
            &ms(ours_rgb),
            &ms(par),
            &bytes.to_string(),
            &tj_ms(&tj),
            &tj_ms(&tj_yuv),
            &ratio(&tj),
            &ratio(&tj_yuv),
            &cj.as_ref().map_or_else(|_| "n/a".into(), |t| ms(*t)),
        ]);
        for (what, e) in [
            ("tjbench", tj.as_ref().err()),
            ("tjbench -yuv", tj_yuv.as_ref().err()),
            ("cjpeg", cj.as_ref().err()),
        ] {
            if let Some(e) = e {
                println!("          {what}: {e:#}");
            }
        }
        if let Ok((_, tj_bytes)) = &tj {
            println!("          libjpeg-turbo's JPEG: {tj_bytes} bytes");
        }
        // Rendering the scene: YCbCr planes cost what RGB costs, so the colour conversion the
        // encoder no longer does has not moved into the source.
        let mut rgb_canvas = RgbFrame::new(w, h);
        let (mut r_ycc, mut r_rgb) = (Duration::MAX, Duration::MAX);
        for _ in 0..ROUNDS {
            r_ycc = r_ycc.min(per_call(0.1, || {
                std::hint::black_box(scene.render(2.0, "12:34:56.7 UTC"));
            }));
            r_rgb = r_rgb.min(per_call(0.1, || {
                scene.render_into(&mut rgb_canvas, 2.0, "12:34:56.7 UTC");
                std::hint::black_box(&rgb_canvas);
            }));
        }
        renders.push(format!("{w}x{h}: YCbCr {} / RGB {}", ms(r_ycc), ms(r_rgb)));
    }
    let _ = std::fs::remove_dir_all(&dir);
    println!(
        "ratio = our time per frame (YCbCr in, 1 thread) / libjpeg-turbo's (1 thread); goal: at most 1.5x against tjbench from RGB"
    );
    println!("rendering the synthetic scene: {}", renders.join(", "));
    Ok(())
}

/// Time per call of `f`, run for at least `seconds` (and 10 calls).
fn per_call(seconds: f64, mut f: impl FnMut()) -> Duration {
    f();
    let start = Instant::now();
    let mut n = 0u32;
    while start.elapsed().as_secs_f64() < seconds || n < 10 {
        f();
        n += 1;
    }
    start.elapsed() / n
}

/// Our time per frame and JPEG size: one thread into a reused buffer, as tjbench does, or in
/// strips as the hub does with `encode_threads` above 1.
fn time_ours(
    picture: Picture<'_>,
    quality: u8,
    seconds: f64,
    threads: usize,
) -> anyhow::Result<(Duration, usize)> {
    // One thread: into `out`, cleared each time. Strips: a new buffer per frame as in the hub,
    // sized by the last frame.
    let mut out = Vec::new();
    let mut hint = 0;
    let mut encode = || -> anyhow::Result<usize> {
        hint = if threads > 1 {
            jpeg::encode(picture, quality, threads, hint)?.len()
        } else {
            out.clear();
            jpeg::encode_into(picture, quality, &mut out)?;
            out.len()
        };
        Ok(hint)
    };
    let mut bytes = 0;
    for _ in 0..5 {
        bytes = encode()?;
    }
    let mut failed = None;
    let t = per_call(seconds, || {
        if let Err(e) = encode() {
            failed = Some(e);
        }
    });
    match failed {
        Some(e) => Err(e),
        None => Ok((t, bytes)),
    }
}

fn write_ppm(path: &std::path::Path, frame: &RgbFrame) -> std::io::Result<()> {
    let mut data = format!("P6\n{} {}\n255\n", frame.width, frame.height).into_bytes();
    data.extend_from_slice(&frame.data);
    std::fs::write(path, data)
}

/// libjpeg-turbo's own benchmark, compression only, in-process, with our settings (the accurate
/// DCT, our subsampling): from the RGB picture, or with `yuv` its "compress from YUV" step alone
/// (the planes made beforehand, untimed). Megapixels/s -> time per frame, and the JPEG's size.
fn tjbench(
    ppm: &std::path::Path,
    quality: u8,
    seconds: f64,
    w: u32,
    h: u32,
    yuv: bool,
) -> anyhow::Result<(Duration, usize)> {
    let subsamp = if quality < 90 { "420" } else { "444" };
    let out = Command::new("tjbench")
        .arg(ppm)
        .arg(quality.to_string())
        .args([
            "-rgb",
            "-subsamp",
            subsamp,
            "-accuratedct",
            "-componly",
            "-nowrite",
            "-quiet",
            "-warmup",
            "0.2",
            "-benchtime",
        ])
        .arg(format!("{seconds}"))
        .args(yuv.then_some("-yuv"))
        .stderr(Stdio::null())
        .output()
        .context("tjbench not found (apt-get install libjpeg-turbo-progs)")?;
    let text = String::from_utf8_lossy(&out.stdout);
    // "RGB  (TD)  4:2:0    80    640    480     111.7   4.479   N/A": Mpixels/s, ratio;
    // with -yuv: "... 640  480  1128  363.4  43.58  N/A": encode YUV, compress from YUV, ratio.
    let fields: Vec<f64> = text
        .lines()
        .find(|l| l.trim_start().starts_with("RGB"))
        .map(|l| {
            l.split_whitespace()
                .skip(6)
                .map_while(|v| v.parse().ok())
                .collect()
        })
        .unwrap_or_default();
    let (mpix, ratio) = match (yuv, fields.as_slice()) {
        (false, [mpix, ratio, ..]) | (true, [_, mpix, ratio, ..]) => (*mpix, *ratio),
        _ => bail!("unexpected tjbench output: {text}"),
    };
    let pixels = f64::from(w) * f64::from(h);
    Ok((
        Duration::from_secs_f64(pixels / 1e6 / mpix),
        (pixels * 3.0 / ratio).round() as usize,
    ))
}

/// cjpeg on the same file, whole process per frame (start-up and file reading included).
fn cjpeg(ppm: &std::path::Path, quality: u8, seconds: f64) -> anyhow::Result<Duration> {
    let run = || -> anyhow::Result<()> {
        let status = Command::new("cjpeg")
            .args(["-quality", &quality.to_string(), "-dct", "int"])
            .args(["-sample", if quality < 90 { "2x2" } else { "1x1" }])
            .args(["-outfile", "/dev/null"])
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
    for &mode in &o.modes {
        for &(width, height) in &o.fanout_sizes {
            let o = Opts {
                width,
                height,
                ..o.clone()
            };
            fanout_table(&rt, &o, mode)?;
        }
    }
    println!(
        "server CPU = this process (hub thread, encoder or http source, HTTP) as % of one core; goal: frames/s per viewer = source fps, encodes/s = source fps (encode) or 0 (passthrough)"
    );
    Ok(())
}

fn fanout_table(rt: &tokio::runtime::Runtime, o: &Opts, mode: Mode) -> anyhow::Result<()> {
    // The network camera for passthrough: a child process, started once per table.
    let mut camera = None;
    if mode == Mode::Passthrough {
        let exe = std::env::current_exe()?;
        let mut child = Command::new(exe)
            .args(["--upstream", &o.width.to_string(), &o.height.to_string()])
            .args([&o.fps.to_string(), &o.quality.to_string()])
            .stdout(Stdio::piped())
            .spawn()?;
        let mut line = String::new();
        std::io::BufRead::read_line(
            &mut std::io::BufReader::new(child.stdout.take().context("upstream stdout")?),
            &mut line,
        )?;
        let port: u16 = line.trim().parse().context("the upstream's port")?;
        camera = Some((child, format!("http://127.0.0.1:{port}/stream.mjpg")));
    }
    println!(
        "\nMJPEG fan-out, {}: {}x{} at {} fps, quality {}, {} s per run, viewers in a child process on loopback",
        match mode {
            Mode::Encode => "encoded here (synthetic source)",
            Mode::Passthrough => "passed through (network camera stream from another process)",
        },
        o.width,
        o.height,
        o.fps,
        o.quality,
        o.seconds
    );
    println!(
        "{:>7} {:>20} {:>12} {:>14} {:>14} {:>16} {:>14} {:>14}",
        "viewers",
        "frames/s per viewer",
        "encodes/s",
        "encodes/frame",
        "MB/s sent",
        "server CPU",
        "per 10 viewers",
        "viewers' CPU"
    );
    println!("{:>7} {:>20}", "", "(min / avg)");
    let url = camera.as_ref().map(|(_, url)| url.as_str());
    let result = o
        .viewers
        .iter()
        .try_for_each(|&n| rt.block_on(fanout_run(o, n, url)));
    if let Some((mut child, _)) = camera {
        let _ = child.kill();
        let _ = child.wait();
    }
    result
}

async fn fanout_run(o: &Opts, viewers: usize, camera: Option<&str>) -> anyhow::Result<()> {
    let source: Box<dyn FrameSource> = match camera {
        None => Box::new(Synthetic::new(o.width, o.height, "cam-bench", "camera 1")),
        Some(url) => Box::new(http_source::open(url, o.fps, o.width, o.height)?),
    };
    let hub = FrameHub::start(source, HubSettings::new(o.fps, o.quality), "camera 1")?;
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
        warning: None,
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
        "{:>7} {:>20} {:>12.1} {:>14.2} {:>14.1} {:>15.1}% {:>13.2}% {:>13.1}%",
        viewers,
        format!("{min:.1} / {avg:.1}"),
        encodes,
        per_frame,
        bytes as f64 / o.seconds / 1e6,
        cpu,
        cpu * 10.0 / viewers as f64,
        ccpu
    );
    Ok(())
}

/// The network camera for passthrough: `--upstream W H FPS QUALITY`. Encodes 30 synthetic frames
/// once, prints its port, then serves them in a loop as an MJPEG stream (mjpg-streamer's framing,
/// no chunked coding) to every connection, paced at FPS.
fn upstream_main(args: &[String]) -> anyhow::Result<()> {
    let [w, h, fps, quality] = args else {
        bail!("--upstream W H FPS QUALITY")
    };
    let (w, h, fps, quality): (u32, u32, u32, u8) =
        (w.parse()?, h.parse()?, fps.parse()?, quality.parse()?);
    let mut scene = Synthetic::new(w, h, "cam-bench upstream", "ip camera");
    let frames: Vec<bytes::Bytes> = (0..30)
        .map(|i| {
            let picture = scene.render_rgb(f64::from(i) / f64::from(fps), "12:00:00.0 UTC");
            jpeg::encode_rgb(&picture, quality, 0)
        })
        .collect::<Result<_, _>>()?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await?;
        println!("{}", listener.local_addr()?.port());
        let period = Duration::from_secs_f64(1.0 / f64::from(fps));
        let frames = std::sync::Arc::new(frames);
        loop {
            let (mut s, _) = listener.accept().await?;
            let frames = frames.clone();
            tokio::spawn(async move {
                let mut buf = [0u8; 2048];
                let _ = s.read(&mut buf).await;
                let head = "HTTP/1.1 200 OK\r\nContent-Type: multipart/x-mixed-replace; \
                            boundary=boundarydonotcross\r\nConnection: close\r\n\r\n";
                if s.write_all(head.as_bytes()).await.is_err() {
                    return;
                }
                let mut tick = tokio::time::interval(period);
                for jpeg in frames.iter().cycle() {
                    tick.tick().await;
                    let part = format!(
                        "--boundarydonotcross\r\nContent-Type: image/jpeg\r\nContent-Length: {}\r\n\r\n",
                        jpeg.len()
                    );
                    if s.write_all(part.as_bytes()).await.is_err()
                        || s.write_all(jpeg).await.is_err()
                        || s.write_all(b"\r\n").await.is_err()
                    {
                        return;
                    }
                }
            });
        }
    })
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
