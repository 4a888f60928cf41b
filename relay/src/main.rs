//! `relay`: the relay server of seed 003 (see relay/README.md).

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use clap::{Args, Parser, Subcommand};
use relay::config::Config;
use relay::server::{Listeners, Options, serve};
use relay::tls;
use shared::relayproto::{Secret, format_device_id, parse_device_id};
use tracing::info;

/// A relay for cameras behind any NAT (seed 003), with seed 004's same-network answer.
///
/// Devices send small authenticated UDP notifications; viewers ask for a device over HTTPS
/// (`/connect.cgi?ID=<id>` or `/d/<id>/`); the relay asks the device to connect back over TLS and
/// carries the HTTP exchange. See relay/README.md and docs/relay-protocol.md.
#[derive(Debug, Parser)]
#[command(name = "relay", version, args_conflicts_with_subcommands = true)]
struct Cli {
    #[command(subcommand)]
    cmd: Option<Cmd>,
    #[command(flatten)]
    run: RunArgs,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Run the relay (the default).
    Run(RunArgs),
    /// Make a lab CA (reused if DIR has one) and a server certificate signed by it.
    GenCerts(GenCertsArgs),
    /// Print a device's secret and the config entry that enrols it.
    Enrol(EnrolArgs),
}

#[derive(Debug, Args)]
struct RunArgs {
    /// The TOML configuration (relay/relay.example.toml lists every field).
    #[arg(long, short, env = "RELAY_CONFIG")]
    config: Option<PathBuf>,
    /// UDP address for device notifications (overrides `udp`).
    #[arg(long)]
    udp: Option<SocketAddr>,
    /// TCP address for back-connections (overrides `back`).
    #[arg(long)]
    back: Option<SocketAddr>,
    /// HTTPS address for viewers, "" = off (overrides `https`).
    #[arg(long)]
    https: Option<String>,
    /// Plain HTTP address for viewers, "" = off (overrides `http`).
    #[arg(long)]
    http: Option<String>,
    /// Certificate chain, PEM (overrides `cert`).
    #[arg(long)]
    cert: Option<PathBuf>,
    /// Private key, PEM (overrides `key`).
    #[arg(long)]
    key: Option<PathBuf>,
    /// This relay's name (overrides `name`).
    #[arg(long)]
    name: Option<String>,
}

#[derive(Debug, Args)]
struct GenCertsArgs {
    /// Directory for ca.pem, ca.key, <file>.pem, <file>.key.
    #[arg(long)]
    dir: PathBuf,
    /// The relay's DNS name (in the certificate; devices check it).
    #[arg(long)]
    name: String,
    /// The relay's IP addresses (in the certificate, for clients that connect by address).
    #[arg(long)]
    ip: Vec<IpAddr>,
    /// Base name of the server certificate files.
    #[arg(long, default_value = "server")]
    file: String,
}

#[derive(Debug, Args)]
struct EnrolArgs {
    /// The relay's configuration (for its enrolment key).
    #[arg(long, short)]
    config: Option<PathBuf>,
    /// The device id (the camera's node id, 16 hex digits).
    #[arg(long, required_unless_present = "new_key")]
    device: Option<String>,
    /// Print a new enrolment key for the config instead.
    #[arg(long)]
    new_key: bool,
}

fn random_secret() -> Result<Secret> {
    use rand::TryRngCore;
    let mut b = [0u8; 32];
    rand::rngs::OsRng
        .try_fill_bytes(&mut b)
        .context("the OS random source")?;
    Ok(Secret(b))
}

fn enrol(a: EnrolArgs) -> Result<()> {
    if a.new_key {
        println!("enrol_key = \"{}\"", random_secret()?.to_hex());
        return Ok(());
    }
    let text = a.device.unwrap_or_default();
    let Some(id) = parse_device_id(text.trim()) else {
        bail!(
            "--device {text:?}: the camera's node id, 1 to 16 hex digits (its status page shows it)"
        );
    };
    let id_hex = format_device_id(id);
    let key = match &a.config {
        Some(p) => Config::load(p)?.keys()?.enrol_key,
        None => None,
    };
    match key {
        Some(k) => {
            let s = Secret::derive(&k, id);
            println!(
                "# device {id_hex}: secret derived from the relay's enrol_key (no config change)"
            );
            println!("device_id = \"{id_hex}\"\nsecret = \"{}\"", s.to_hex());
        }
        None => {
            let s = random_secret()?;
            println!("# add to the relay's config, and give the camera the same secret:");
            println!("[[device]]\nid = \"{id_hex}\"\nsecret = \"{}\"", s.to_hex());
        }
    }
    Ok(())
}

fn gen_certs(a: GenCertsArgs) -> Result<()> {
    let g = tls::gen_certs(&a.dir, &a.file, &a.name, &a.ip)?;
    println!(
        "CA: {} (give it to devices and browsers)\ncertificate: {}\nkey: {}",
        g.ca.display(),
        g.cert.display(),
        g.key.display()
    );
    println!(
        "in the relay's config:\ncert = \"{}\"\nkey = \"{}\"",
        g.cert.display(),
        g.key.display()
    );
    Ok(())
}

async fn run(a: RunArgs) -> Result<()> {
    let mut cfg = match &a.config {
        Some(p) => Config::load(p)?,
        None => Config::default(),
    };
    if let Some(v) = a.udp {
        cfg.udp = v;
    }
    if let Some(v) = a.back {
        cfg.back = v;
    }
    if let Some(v) = a.https {
        cfg.https = v;
    }
    if let Some(v) = a.http {
        cfg.http = v;
    }
    if let Some(v) = a.cert {
        cfg.cert = v;
    }
    if let Some(v) = a.key {
        cfg.key = v;
    }
    if let Some(v) = a.name {
        cfg.name = v;
    }
    cfg.check()?;
    if cfg.cert.as_os_str().is_empty() || cfg.key.as_os_str().is_empty() {
        bail!(
            "no certificate configured (`cert`, `key`): back-connections always use TLS. {}",
            tls::how_to_make("/etc/relay")
        );
    }
    let keys = cfg.keys()?;
    if keys.devices.is_empty() && keys.enrol_key.is_none() {
        bail!(
            "no device may register: add `[[device]]` entries (`relay enrol --device ID` prints \
             one) or an `enrol_key` (`relay enrol --new-key`)"
        );
    }
    let tls_cfg =
        tls::server_config(&cfg.cert, &cfg.key).with_context(|| tls::how_to_make("/etc/relay"))?;
    let udp = tokio::net::UdpSocket::bind(cfg.udp)
        .await
        .with_context(|| format!("`udp` = {}: cannot bind", cfg.udp))?;
    let back = tokio::net::TcpListener::bind(cfg.back)
        .await
        .with_context(|| format!("`back` = {}: cannot bind", cfg.back))?;
    let bind = |field: &'static str, a: Option<SocketAddr>| async move {
        match a {
            Some(a) => tokio::net::TcpListener::bind(a)
                .await
                .map(Some)
                .with_context(|| format!("`{field}` = {a}: cannot bind")),
            None => Ok(None),
        }
    };
    let https = bind("https", cfg.https_addr()?).await?;
    let http = bind("http", cfg.http_addr()?).await?;
    if https.is_none() && http.is_none() {
        bail!("no viewer listener: set `https` (or `http` for a lab)");
    }
    let back_port = back.local_addr()?.port();
    let opts = Options {
        name: cfg.name.clone(),
        tls: tls_cfg,
        settings: cfg.settings(back_port),
        keys,
    };
    let listeners = Listeners {
        udp,
        back,
        https,
        http,
    };
    serve(opts, listeners, shutdown_signal()).await?;
    info!("stopped");
    Ok(())
}

/// Ctrl-C or SIGTERM.
async fn shutdown_signal() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = async {
            match term.as_mut() {
                Some(t) => { t.recv().await; }
                None => std::future::pending::<()>().await,
            }
        } => {}
    }
}

fn main() -> Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    match cli.cmd {
        Some(Cmd::GenCerts(a)) => gen_certs(a),
        Some(Cmd::Enrol(a)) => enrol(a),
        Some(Cmd::Run(a)) => tokio_main(run(a)),
        None => tokio_main(run(cli.run)),
    }
}

fn tokio_main(f: impl std::future::Future<Output = Result<()>>) -> Result<()> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?
        .block_on(f)
}
