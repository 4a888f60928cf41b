//! Runs camnode's port management alone and prints the Directory as JSON lines (one per change),
//! for the lab tests and for trying it against a real router.
//!
//! ```text
//! portmgmt_probe [--state-dir DIR] [--web-port PORT] [--name NAME] [--walk-interval SECS] [--igd-url URL]
//! ```
//! Lines on stdin: `rename <new name>`. SIGTERM / SIGINT / end of stdin: delete the mapping and
//! exit. It also answers HTTP on the web port and on the mapped port (Fig. 8a) with a one-line
//! page naming the node, so the mapping can be checked from the internet side.

use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use camnode::config::Config;
use camnode::directory::{Directory, NodeCommand};
use camnode::portmgmt::{self, PortMgmtContext, listen};
use serde_json::json;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};

fn to_json(d: &Directory, start: Instant) -> serde_json::Value {
    json!({
        "t_ms": start.elapsed().as_millis() as u64,
        "id": d.node_id,
        "name": d.name,
        "role": d.role.name(),
        "reachability": format!("{:?}", d.reachability),
        "external_addr": d.external_addr.map(|a| a.to_string()),
        "lan_addr": d.lan_addr.map(|a| a.to_string()),
        "external_port": d.external_port,
        "lan_port": d.lan_port,
        "peers": d.peers.iter().map(|p| json!({
            "id": p.node_id,
            "name": p.name,
            "lan_addr": p.lan_addr.to_string(),
            "lan_port": p.lan_port,
            "external_port": p.external_port,
            "source": format!("{:?}", p.source),
        })).collect::<Vec<_>>(),
    })
}

async fn answer(mut s: TcpStream, dir: watch::Receiver<Directory>) {
    let name = dir.borrow().name.clone();
    let body = format!("camnode {name}\n");
    let resp = format!(
        "HTTP/1.0 200 OK\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    let mut buf = [0u8; 1024];
    let _ = tokio::time::timeout(
        Duration::from_secs(2),
        tokio::io::AsyncReadExt::read(&mut s, &mut buf),
    )
    .await;
    let _ = s.write_all(resp.as_bytes()).await;
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let mut config = Config {
        state_dir: PathBuf::from("/tmp/camnode-probe"),
        ..Config::default()
    };
    let mut web_port = 8080u16;
    let mut walk = None;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut v = || {
            args.next()
                .ok_or_else(|| anyhow::anyhow!("{a} needs a value"))
        };
        match a.as_str() {
            "--state-dir" => config.state_dir = PathBuf::from(v()?),
            "--web-port" => web_port = v()?.parse()?,
            "--name" => config.name = v()?,
            "--walk-interval" => walk = Some(Duration::from_secs_f64(v()?.parse()?)),
            "--igd-url" => config.igd_url = v()?,
            other => anyhow::bail!("unknown argument {other}"),
        }
    }
    let start = Instant::now();
    let (dir_tx, dir_rx) = watch::channel(portmgmt::placeholder_directory(web_port));
    let (cmd_tx, cmd_rx) = mpsc::channel(8);
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut ctx = PortMgmtContext::new(config, web_port, dir_tx, cmd_rx, stop_rx);
    if let Some(w) = walk {
        ctx.options.walk_interval = w;
    }
    let pm = tokio::spawn(portmgmt::run(ctx));

    // The web port and the mapped port (Fig. 8a) answer with a one-line page.
    let web = TcpListener::bind((Ipv4Addr::UNSPECIFIED, web_port)).await?;
    let (conn_tx, mut conn_rx) = mpsc::channel(16);
    tokio::spawn(listen::follow_lan_port(
        Ipv4Addr::UNSPECIFIED,
        web_port,
        dir_rx.clone(),
        conn_tx,
    ));
    {
        let dir = dir_rx.clone();
        tokio::spawn(async move {
            loop {
                let s = tokio::select! {
                    Ok((s, _)) = web.accept() => s,
                    Some((s, _)) = conn_rx.recv() => s,
                    else => return,
                };
                tokio::spawn(answer(s, dir.clone()));
            }
        });
    }

    // Print every Directory change.
    {
        let mut dir = dir_rx.clone();
        tokio::spawn(async move {
            loop {
                let line = to_json(&dir.borrow_and_update(), start).to_string();
                println!("{line}");
                if dir.changed().await.is_err() {
                    return;
                }
            }
        });
    }

    // stdin in a thread (tokio's io-std feature is not enabled in this workspace).
    let (line_tx, mut lines) = mpsc::channel::<String>(8);
    std::thread::spawn(move || {
        for l in std::io::stdin().lines() {
            let Ok(l) = l else { break };
            if line_tx.blocking_send(l).is_err() {
                break;
            }
        }
    });
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    loop {
        tokio::select! {
            _ = term.recv() => break,
            _ = tokio::signal::ctrl_c() => break,
            line = lines.recv() => match line {
                Some(l) => {
                    if let Some(name) = l.strip_prefix("rename ") {
                        let _ = cmd_tx.send(NodeCommand::Rename(name.to_string())).await;
                    }
                }
                _ => break,
            },
        }
    }
    let _ = stop_tx.send(true);
    let r = pm.await?;
    eprintln!("portmgmt_probe: stopped");
    r
}
