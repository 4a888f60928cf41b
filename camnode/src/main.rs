//! `camnode`: run with no arguments it does the whole job: finds a webcam or falls back to the
//! synthetic source, serves its pages, discovers the router and takes its port.
//!
//! Start order (the page should be reachable as soon as the mapping exists):
//! 1. bind the web listener (Fig. 8a: the representative port; Fig. 8b: the common port);
//! 2. start port management (identity, SSDP, the port claim), which publishes the Directory;
//! 3. open the picture source (seeded by the node id, labelled with its name) and the frame hub;
//! 4. serve: the listener, plus the extra listener port management keeps on the mapped port;
//! 5. with relays configured (seed 003), the relay side follows port management's Directory,
//!    registers when forwarding cannot help, serves back-connections and republishes the
//!    Directory ("via relay ...") for the pages;
//! 6. on SIGINT/SIGTERM stop port management first (it deletes the mapping), then exit.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use anyhow::Context as _;
use clap::Parser;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};

use camnode::camera::{self, FrameHub, HubSettings};
use camnode::config::{Args, Config};
use camnode::directory::Directory;
use camnode::portmgmt::{self, PortMgmtContext};
use camnode::relay::{self, RelayContext, RelaySettings};
use camnode::web::{self, ConnInfo, WebConfig, WebState};

fn main() -> ExitCode {
    let args = Args::parse();
    let config = match Config::from_args(&args) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("camnode: {e}");
            return ExitCode::from(2);
        }
    };
    if args.print_config {
        match toml::to_string(&config) {
            Ok(text) => {
                print!("{text}");
                return ExitCode::SUCCESS;
            }
            Err(e) => {
                eprintln!("camnode: cannot print the configuration: {e}");
                return ExitCode::FAILURE;
            }
        }
    }
    // Reads the relay CA file: a bad one stops the start with the field's name.
    let relay_settings = match relay::settings::load(&config) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("camnode: {e}");
            return ExitCode::from(2);
        }
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("camnode: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(config, relay_settings)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("camnode: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(config: Config, relay_settings: Option<RelaySettings>) -> anyhow::Result<()> {
    let web_port = config.effective_web_port();
    let listener = TcpListener::bind((config.listen, web_port))
        .await
        .with_context(|| {
            format!(
                "cannot listen on {}:{web_port} (set --web-port or --listen)",
                config.listen
            )
        })?;
    tracing::info!("web server on http://{}/", listener.local_addr()?);

    // Port management publishes the Directory and takes rename commands; with relays, the relay
    // side republishes it for everyone else.
    let (dir_tx, mut dir_rx) = watch::channel(portmgmt::placeholder_directory(web_port));
    let (cmd_tx, cmd_rx) = mpsc::channel(8);
    let (stop_tx, stop_rx) = watch::channel(false);
    let web_cell = Arc::new(OnceLock::new());
    let pm_dir_tx = match relay_settings {
        Some(settings) => {
            let (pm_tx, pm_rx) = watch::channel(portmgmt::placeholder_directory(web_port));
            let ctx = RelayContext {
                settings,
                portmgmt: pm_rx,
                publish: dir_tx,
                web: web_cell.clone(),
                shutdown: stop_rx.clone(),
            };
            tokio::spawn(async move {
                if let Err(e) = relay::run(ctx).await {
                    tracing::error!("relay side: {e:#}");
                }
            });
            pm_tx
        }
        None => dir_tx,
    };
    let pm = tokio::spawn(portmgmt::run(PortMgmtContext::new(
        config.clone(),
        web_port,
        pm_dir_tx,
        cmd_rx,
        stop_rx,
    )));

    // The source is seeded by the node id, so wait briefly for the first Directory.
    let _ = tokio::time::timeout(Duration::from_millis(500), dir_rx.changed()).await;
    let first = dir_rx.borrow_and_update().clone();
    let label = label_of(&first, &config);
    let seed = if first.node_id.is_empty() {
        label.clone()
    } else {
        first.node_id.clone()
    };
    let source = {
        let (config, label) = (config.clone(), label.clone());
        tokio::task::spawn_blocking(move || camera::open_source(&config, &seed, &label)).await??
    };
    tracing::info!("picture source: {}", source.describe());
    let hub = FrameHub::start(
        source,
        HubSettings {
            fps: config.fps,
            quality: config.quality,
            encode_threads: config.encode_threads,
        },
        &label,
    )
    .context("cannot start the frame hub thread")?;

    // Keep the drawn label in step with the node's name.
    {
        let hub = hub.handle();
        let mut rx = dir_rx.clone();
        let config = config.clone();
        tokio::spawn(async move {
            while rx.changed().await.is_ok() {
                let label = label_of(&rx.borrow_and_update(), &config);
                hub.set_label(&label);
            }
        });
    }

    let state = WebState::new(
        hub.handle(),
        dir_rx.clone(),
        cmd_tx,
        WebConfig {
            domain: config.domain.clone(),
            password: config.password.clone(),
            max_streams: config.max_streams,
            width: config.width,
            height: config.height,
        },
    );

    let _ = web_cell.set(state.clone());

    // Fig. 8a: port management keeps a listener on the mapped port and hands us its connections.
    let (conn_tx, conn_rx) = mpsc::channel::<(TcpStream, SocketAddr)>(64);
    tokio::spawn(portmgmt::listen::follow_lan_port(
        config.listen,
        web_port,
        dir_rx.clone(),
        conn_tx,
    ));
    tokio::spawn(serve_handed_over(state.clone(), conn_rx));

    let (web_stop_tx, mut web_stop_rx) = watch::channel(false);
    let server = tokio::spawn(web::serve_listener(state, listener, async move {
        let _ = web_stop_rx.wait_for(|stop| *stop).await;
    }));

    // Port management ends early only when it cannot run (sockets, an identity another process
    // holds): say why and stop, rather than serve a node nobody can find.
    let mut pm = pm;
    tokio::select! {
        () = shutdown_signal() => {}
        r = &mut pm => {
            let why = match r {
                Ok(Ok(())) => anyhow::anyhow!("port management stopped"),
                Ok(Err(e)) => e,
                Err(e) => anyhow::anyhow!("port management task: {e}"),
            };
            return Err(why.context("cannot run port management"));
        }
    }
    tracing::info!("stopping: deleting our port mapping first");
    let _ = stop_tx.send(true);
    match tokio::time::timeout(Duration::from_secs(5), pm).await {
        Ok(Ok(Ok(()))) => {}
        Ok(Ok(Err(e))) => tracing::warn!("port management: {e:#}"),
        Ok(Err(e)) => tracing::warn!("port management task: {e}"),
        Err(_) => tracing::warn!("port management did not stop within 5 s"),
    }
    let _ = web_stop_tx.send(true);
    let _ = server.await;
    drop(hub);
    Ok(())
}

/// The name to draw on the picture.
fn label_of(dir: &Directory, config: &Config) -> String {
    if !dir.name.is_empty() {
        dir.name.clone()
    } else if !config.name.is_empty() {
        config.name.clone()
    } else {
        "camnode".into()
    }
}

/// Serve connections accepted elsewhere (the mapped-port listener).
async fn serve_handed_over(state: Arc<WebState>, mut rx: mpsc::Receiver<(TcpStream, SocketAddr)>) {
    while let Some((stream, peer)) = rx.recv().await {
        let _ = stream.set_nodelay(true);
        let local = stream.local_addr().ok();
        let state = state.clone();
        tokio::spawn(async move {
            if let Err(e) = web::serve_connection(state, stream, ConnInfo { peer, local }).await {
                tracing::debug!("connection from {peer}: {e}");
            }
        });
    }
}

/// SIGINT or SIGTERM.
async fn shutdown_signal() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        () = term => {}
    }
}
