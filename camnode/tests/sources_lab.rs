//! A network camera in the lab (issue 15): ffmpeg serves MJPEG over HTTP in cam1, as an IP camera
//! would; camnode in cam2 fronts it; a LAN viewer records cam2's stream and ffprobe reads it.
//! Needs root (network namespaces); see `tests::require_root`.

use std::time::{Duration, Instant};

use serde_json::Value;
use tests::{Lab, LabOptions, RouterKind, require_root};

#[test]
fn camnode_fronts_an_ffmpeg_camera_on_the_lan() {
    if !require_root() {
        return;
    }
    let lab = Lab::up(&LabOptions::new(RouterKind::Kernel).cams(2)).expect("lab up");
    let camera = lab.addr("cam1");
    let front = lab.addr("cam2");
    let dir = std::env::temp_dir().join(format!("camnode-sources-lab-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    // ffmpeg's HTTP server takes one client (-listen 1): nothing may probe its port first.
    lab.spawn(
        "cam1",
        &[
            "ffmpeg",
            "-hide_banner",
            "-nostdin",
            "-loglevel",
            "error",
            "-re",
            "-f",
            "lavfi",
            "-i",
            "testsrc2=size=640x480:rate=10",
            "-c:v",
            "mjpeg",
            "-q:v",
            "5",
            "-f",
            "mpjpeg",
            "-content_type",
            "multipart/x-mixed-replace;boundary=ffmpeg",
            "-listen",
            "1",
            "http://0.0.0.0:8090/feed.mjpg",
        ],
    );
    let state = dir.join("cam2-state");
    lab.spawn(
        "cam2",
        &[
            env!("CARGO_BIN_EXE_camnode"),
            "--source",
            &format!("http://{camera}:8090/feed.mjpg"),
            "--fps",
            "10",
            "--igd-url",
            "http://192.168.1.1:9/rootDesc.xml",
            "--state-dir",
            state.to_str().unwrap(),
        ],
    );
    lab.wait_tcp("viewer", &front.to_string(), 8080);
    // Record cam2's stream for a few seconds (camnode retries until ffmpeg listens).
    let recording = dir.join("cam2.mjpg");
    let deadline = Instant::now() + Duration::from_secs(40);
    let status = loop {
        let _ = lab.exec_timeout(
            "viewer",
            Duration::from_secs(8),
            &[
                "curl",
                "-s",
                "-m",
                "4",
                "-o",
                recording.to_str().unwrap(),
                &format!("http://{front}:8080/stream.mjpg"),
            ],
        );
        let json = lab.sh(
            "viewer",
            &format!("curl -s -m 3 http://{front}:8080/status.json"),
        );
        let v: Value = serde_json::from_str(&json).expect("status.json");
        if v["camera"]["passthrough"].as_u64().unwrap_or(0) >= 20 {
            break v;
        }
        assert!(
            Instant::now() < deadline,
            "cam2 never passed ffmpeg's pictures through: {v}"
        );
    };
    let probe = lab.sh(
        "viewer",
        &format!(
            "ffprobe -v error -f mpjpeg -select_streams v:0 -show_entries \
             stream=codec_name,width,height -of csv=p=0 {}",
            recording.display()
        ),
    );
    assert_eq!(probe.trim(), "mjpeg,640,480");
    let camera = &status["camera"];
    assert!(
        camera["source"]
            .as_str()
            .unwrap_or("")
            .contains("MJPEG stream"),
        "{camera}"
    );
    // Only "no signal" pictures (before ffmpeg answered) were encoded at cam2.
    assert!(
        camera["encodes"].as_u64().unwrap() < camera["published"].as_u64().unwrap() / 2,
        "{camera}"
    );
    std::fs::remove_dir_all(dir).unwrap();
}
