//! A video file: `--source file:PATH` (or a path), played in a loop at the file's own frame rate.
//!
//! ffmpeg does the decoding, so any format it knows works: a child process reads the file at its
//! native rate (`-re`, looped with `-stream_loop -1`), encodes MJPEG and writes it to a pipe as
//! `multipart/x-mixed-replace` (its `mpjpeg` muxer, parts with Content-Length), which the same
//! parser as a network camera's stream reads ([`super::feed::pump`]). The JPEGs pass through the
//! hub as ffmpeg made them. ffmpeg runs only while someone watches (see [`super::feed`]), starting
//! the file from the beginning; if it exits, its last error line is shown on the "no signal"
//! picture and it is started again after a back-off.
//!
//! `ffmpeg` is looked up in `PATH`, or taken from `CAMNODE_FFMPEG`. Opening the source checks
//! that ffmpeg runs and can decode a picture from the file, so a missing ffmpeg or an unreadable
//! file is a clear error at start.

use std::path::{Path, PathBuf};
use std::process::Stdio;

use anyhow::{Context as _, bail};
use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncBufReadExt as _, AsyncRead, AsyncReadExt as _, BufReader};
use tokio::process::{Child, ChildStdout, Command};

use super::feed::{Backoff, Chunks, Feed, FeedWriter, pump};

/// The multipart boundary asked of ffmpeg.
const BOUNDARY: &str = "camnode-file";
/// JPEG quality asked of ffmpeg's MJPEG encoder (`-q:v`, 2 = best .. 31).
const QSCALE: &str = "3";

/// The ffmpeg to run.
fn ffmpeg() -> PathBuf {
    std::env::var_os("CAMNODE_FFMPEG").map_or_else(|| "ffmpeg".into(), PathBuf::from)
}

/// Open a video file source. Fails if ffmpeg is missing or cannot decode a picture from `path`.
pub fn open(path: &Path, width: u32, height: u32) -> anyhow::Result<Feed> {
    std::fs::File::open(path).with_context(|| format!("cannot read {}", path.display()))?;
    let bin = ffmpeg();
    check(path, &bin)?;
    let path = path.to_owned();
    let name = format!("file:{}", path.display());
    Ok(Feed::start(
        "camnode-file",
        name,
        width,
        height,
        move |feed| produce(bin, path, feed),
    )?)
}

/// `bin` runs and decodes the first picture of the file.
fn check(path: &Path, bin: &Path) -> anyhow::Result<()> {
    let out = std::process::Command::new(bin)
        .args(["-hide_banner", "-nostdin", "-v", "error", "-i"])
        .arg(path)
        .args(["-map", "0:v:0", "-frames:v", "1", "-f", "null", "-"])
        .stdin(Stdio::null())
        .output();
    let out = match out {
        Ok(o) => o,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => bail!(
            "a video file is played through ffmpeg, and {} was not found: install it (Debian: \
             apt-get install ffmpeg; the lab: netns-scripts/lab deps) or set CAMNODE_FFMPEG to \
             its path",
            bin.display()
        ),
        Err(e) => bail!("cannot run {}: {e}", bin.display()),
    };
    if !out.status.success() {
        bail!(
            "ffmpeg cannot decode a picture from it: {}",
            last_line(&out.stderr).unwrap_or_else(|| out.status.to_string())
        );
    }
    Ok(())
}

fn last_line(text: &[u8]) -> Option<String> {
    String::from_utf8_lossy(text)
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .map(|l| l.trim().chars().take(200).collect())
}

/// The producer: ffmpeg while someone watches, started again after a back-off when it exits.
async fn produce(bin: PathBuf, path: PathBuf, feed: FeedWriter) {
    let mut backoff = Backoff::new();
    loop {
        feed.wait_wanted().await;
        let before = feed.frames();
        let result = session(&bin, &path, &feed).await;
        if feed.frames() > before {
            backoff.reset();
        }
        if let Err(why) = result {
            let delay = backoff.next_delay();
            tracing::warn!(
                "source file:{}: {why}; starting ffmpeg again in {:.1} s",
                path.display(),
                delay.as_secs_f64()
            );
            feed.fail(why);
            tokio::time::sleep(delay).await;
        }
    }
}

/// One run of ffmpeg: until nobody watches (it is killed) or it fails.
async fn session(bin: &Path, path: &Path, feed: &FeedWriter) -> Result<(), String> {
    let mut child = Command::new(bin)
        .args(["-hide_banner", "-nostdin", "-loglevel", "error"])
        .args(["-re", "-stream_loop", "-1", "-i"])
        .arg(path)
        .args([
            "-map", "0:v:0", "-an", "-sn", "-c:v", "mjpeg", "-q:v", QSCALE,
        ])
        .args([
            "-pix_fmt",
            "yuvj420p",
            "-f",
            "mpjpeg",
            "-boundary_tag",
            BOUNDARY,
        ])
        .arg("pipe:1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| format!("cannot start ffmpeg: {e}"))?;
    feed.set_kind("looped through ffmpeg".into());
    let stderr = child.stderr.take().map(|e| tokio::spawn(last_error(e)));
    let Some(stdout) = child.stdout.take() else {
        return Err("ffmpeg has no output pipe".into());
    };
    let mut pipe = Pipe {
        out: stdout,
        buf: BytesMut::new(),
    };
    let result = pump(&mut pipe, BOUNDARY, feed).await;
    let status = stop(&mut child).await;
    let error = match stderr {
        Some(task) => task.await.ok().flatten(),
        None => None,
    };
    result.map_err(|why| match (error, status) {
        (Some(line), _) => format!("{why}; ffmpeg: {line}"),
        (None, Some(s)) if !s.success() => format!("{why}; ffmpeg exited with {s}"),
        _ => why,
    })
}

/// Kill ffmpeg if it still runs; its exit status if it had ended by itself.
async fn stop(child: &mut Child) -> Option<std::process::ExitStatus> {
    match child.try_wait() {
        Ok(Some(status)) => Some(status),
        _ => {
            let _ = child.kill().await;
            None
        }
    }
}

/// The last line ffmpeg wrote to stderr (it is read to the end so ffmpeg never blocks on it;
/// only the last line is kept).
async fn last_error(stderr: impl AsyncRead + Unpin) -> Option<String> {
    let mut lines = BufReader::new(stderr).take(1 << 20).lines();
    let mut last = None;
    while let Ok(Some(line)) = lines.next_line().await {
        if !line.trim().is_empty() {
            last = Some(line.trim().chars().take(200).collect());
        }
    }
    last
}

struct Pipe {
    out: ChildStdout,
    buf: BytesMut,
}

impl Chunks for Pipe {
    async fn next_chunk(&mut self) -> Result<Option<Bytes>, String> {
        self.buf.reserve(64 << 10);
        match self.out.read_buf(&mut self.buf).await {
            Ok(0) => Ok(None),
            Ok(_) => Ok(Some(self.buf.split().freeze())),
            Err(e) => Err(format!("reading from ffmpeg: {e}")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_file_and_missing_ffmpeg_are_clear() {
        let err = open(Path::new("/nonexistent/clip.mp4"), 64, 48).unwrap_err();
        assert!(format!("{err:#}").contains("cannot read /nonexistent/clip.mp4"));
        let err = check(Path::new("/dev/null"), Path::new("/nonexistent/ffmpeg")).unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains("/nonexistent/ffmpeg was not found")
                && text.contains("apt-get install ffmpeg"),
            "{text}"
        );
    }
}
