//! `router`: the IO shell around the NAT engine. See the crate docs (`router/src/lib.rs`) for
//! the run loop, `router --help` for the options.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use clap::Parser;
use tokio::net::TcpListener;
use tokio::signal::unix::{SignalKind, signal};
use tracing::{info, warn};
use tracing_subscriber::EnvFilter;

use router::config::{Args, Config};
use router::control::{self, ControlState, RouterInfo};
use router::dataplane::{self, Capture, Tuns};
use router::device::tun::Tun;
use router::dhcp::DhcpService;
use router::metrics::ShellStats;
use router::nat::{Nat, NatConfig};
use router::routing::{self, Recipe, RecipeParams};
use router::upnp::{SystemClock, UpnpService};
use router::wan::SystemWan;

fn main() -> ExitCode {
    let args = Args::parse();
    let config = match Config::load(&args) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("router: {e}");
            return ExitCode::from(2);
        }
    };
    let filter = match log_filter(config.log_level.as_deref()) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("router: {e}");
            return ExitCode::from(2);
        }
    };
    if args.print_config {
        println!("{config:#?}");
        return ExitCode::SUCCESS;
    }
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();

    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("router: cannot start the tokio runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(config, hint_args(&args))) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("router: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// `--log-level`, else RUST_LOG, else info.
fn log_filter(level: Option<&str>) -> Result<EnvFilter, String> {
    match level {
        None => Ok(EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"))),
        Some(l) => {
            let plain = ["off", "error", "warn", "info", "debug", "trace"].contains(&l);
            if !plain && !l.contains('=') {
                return Err(format!(
                    "option --log-level / config field \"log_level\": unknown level {l:?}; use \
                     error, warn, info, debug, trace or directives like router=debug"
                ));
            }
            EnvFilter::try_new(l).map_err(|e| {
                format!("option --log-level / config field \"log_level\": {e}; use e.g. info")
            })
        }
    }
}

/// The arguments to repeat in a hint ("run router ... --cleanup-stale").
fn hint_args(args: &Args) -> String {
    let mut v = Vec::new();
    if let Some(w) = &args.wan {
        v.push(format!("--wan {w}"));
    }
    if let Some(l) = &args.lan {
        v.push(format!("--lan {l}"));
    }
    if let Some(c) = &args.config {
        v.push(format!("--config {}", c.display()));
    }
    v.join(" ")
}

/// Sends on drop, also when the dataplane thread unwinds from a panic.
struct NotifyOnDrop(Option<tokio::sync::oneshot::Sender<()>>);

impl Drop for NotifyOnDrop {
    fn drop(&mut self) {
        if let Some(tx) = self.0.take() {
            let _ = tx.send(());
        }
    }
}

async fn run(config: Config, hint: String) -> Result<()> {
    // Registered first: from here on SIGINT/SIGTERM/SIGHUP are queued for us instead of
    // killing the process half-way through the setup (signal(7)).
    let mut sigint = signal(SignalKind::interrupt()).context("cannot handle SIGINT")?;
    let mut sigterm = signal(SignalKind::terminate()).context("cannot handle SIGTERM")?;
    // The terminal going away must not leave the rules behind either.
    let mut sighup = signal(SignalKind::hangup()).context("cannot handle SIGHUP")?;

    // Another router in this namespace: say so before anything else can fail on its sockets.
    routing::refuse_live_owner()?;

    // --- Addresses -------------------------------------------------------------------------
    let wan_seen = routing::iface_ipv4(&config.wan_iface)
        .with_context(|| format!("WAN interface (--wan {})", config.wan_iface))?;
    let lan_seen = routing::iface_ipv4(&config.lan_iface)
        .with_context(|| format!("LAN interface (--lan {})", config.lan_iface))?;
    let (wan_ip, wan_len) = match (config.wan_addr, wan_seen) {
        (Some(a), seen) => (a, seen.map_or(32, |s| s.1)),
        (None, Some(seen)) => seen,
        (None, None) => bail!(
            "WAN interface {0} has no IPv4 address: assign one (ip addr add 203.0.113.2/24 dev \
             {0}) or set wan_addr / --wan-addr",
            config.wan_iface
        ),
    };
    let (lan_ip, lan_len) = config.lan_addr.or(lan_seen).ok_or_else(|| {
        anyhow!(
            "LAN interface {0} has no IPv4 address: assign one (ip addr add 192.168.1.1/24 dev \
             {0}) or set lan_addr / --lan-addr",
            config.lan_iface
        )
    })?;
    let lan_mask = u32::MAX.checked_shl(32 - u32::from(lan_len)).unwrap_or(0);
    if u32::from(wan_ip) & lan_mask == u32::from(lan_ip) & lan_mask {
        bail!("the WAN address {wan_ip} is inside the LAN network {lan_ip}/{lan_len}");
    }
    info!(
        "wan {} {wan_ip}/{wan_len}, lan {} {lan_ip}/{lan_len}",
        config.wan_iface, config.lan_iface
    );

    // --- Engine ----------------------------------------------------------------------------
    let seed = config.seed.unwrap_or_else(rand::random);
    info!(
        "nat: preset {}, {:?}, ports {}-{}, seed {seed} (pass --seed {seed} to repeat)",
        config.preset,
        config.behaviour,
        config.port_range.start(),
        config.port_range.end()
    );
    let mut nat = Nat::new(
        NatConfig {
            wan_addr: wan_ip,
            lan_addr: lan_ip,
            lan_prefix: lan_len,
            behaviour: config.behaviour.clone(),
            port_range: config.port_range.clone(),
            // The recipe makes the kernel forward each packet twice (in to tun0, out of it).
            ttl_compensation: true,
        },
        seed,
    );
    nat.set_wan_sources(config.wan_sources.clone());
    nat.set_limits(config.limits);
    for f in &config.forwards {
        nat.add_forward(f.to_forward()).map_err(|e| {
            anyhow!(
                "forward {}:{} -> {}:{}: {e}",
                f.protocol,
                f.external_port,
                f.internal_addr,
                f.internal_port
            )
        })?;
        info!(
            "nat: forward {}:{} -> {}:{}",
            f.protocol, f.external_port, f.internal_addr, f.internal_port
        );
    }
    let nat = Arc::new(Mutex::new(nat));

    // --- Things that can fail without touching the namespace --------------------------------
    let listen = config.listen.unwrap_or(SocketAddr::from((
        lan_ip,
        router::config::DEFAULT_CONTROL_PORT,
    )));
    let listener = TcpListener::bind(listen)
        .await
        .with_context(|| format!("cannot listen on {listen} for the control API (--listen)"))?;
    // The IGD / NAT-PMP / PCP service binds its LAN sockets and puts the saved mappings back
    // into the engine now, so its errors also come before the namespace changes.
    let upnp = if config.upnp.enabled() {
        let svc = UpnpService::bind(
            config.upnp.to_config(lan_ip, lan_len),
            nat.clone(),
            Arc::new(SystemClock),
        )
        .await
        .context("UPnP IGD / NAT-PMP service ([upnp] in the config file)")?;
        Some(svc)
    } else {
        None
    };
    // The DHCP server loads its lease file and binds UDP 67 on the LAN interface now too.
    let dhcp = if config.dhcp.enabled() {
        let cfg = config
            .dhcp
            .to_config(&config.lan_iface, lan_ip, lan_len)
            .context("DHCP server ([dhcp] in the config file)")?;
        let svc = DhcpService::bind(cfg, Arc::new(SystemClock))
            .await
            .context("DHCP server ([dhcp] in the config file, or enabled = false)")?;
        Some(svc)
    } else {
        None
    };
    let mut capture = Capture::open(
        config.pcap_lan.as_deref(),
        config.pcap_wan.as_deref(),
        (lan_ip, lan_len),
    )
    .context("packet capture (--pcap-lan / --pcap-wan)")?;

    // --- The namespace ---------------------------------------------------------------------
    routing::prepare(
        &config.routing,
        &config.tun_name,
        &hint,
        config.cleanup_stale,
    )?;
    // One device per side: the engine is told where each packet came in (dataplane docs).
    let tuns = Tuns {
        lan: Tun::open(&config.tun_name, config.offload)?,
        wan: Tun::open(&routing::wan_tun_name(&config.tun_name), config.offload)?,
    };
    info!(
        "setup: created TUN devices {} (LAN side) and {} (WAN side)",
        tuns.lan.name(),
        tuns.wan.name()
    );
    let recipe = Recipe::install(RecipeParams {
        routing: config.routing.clone(),
        wan_iface: config.wan_iface.clone(),
        lan_iface: config.lan_iface.clone(),
        tun: tuns.lan.name().to_string(),
        tun_wan: tuns.wan.name().to_string(),
        wan_ip,
    })?;
    // From here the recipe is torn down on every path: explicitly below, or by Drop when this
    // function returns early or unwinds.
    let recipe = Arc::new(Mutex::new(recipe));
    let tun_name = tuns.lan.name().to_string();
    let waker = tuns.lan.waker();
    let tuns = Arc::new(tuns);
    let stats = Arc::new(ShellStats::default());

    // --- Run -------------------------------------------------------------------------------
    let (done_tx, done_rx) = tokio::sync::oneshot::channel::<()>();
    let dataplane = std::thread::Builder::new()
        .name("dataplane".into())
        .spawn({
            let (tuns, nat, stats) = (tuns.clone(), nat.clone(), stats.clone());
            let busy_poll = config.busy_poll;
            move || {
                let _notify = NotifyOnDrop(Some(done_tx));
                dataplane::run(&tuns, &nat, &mut capture, &stats, busy_poll)
            }
        })
        .context("cannot start the dataplane thread")?;

    let wan = Arc::new(SystemWan::new(
        config.wan_iface.clone(),
        (wan_ip, wan_len),
        recipe.clone(),
        nat.clone(),
        config.wan_addr.is_none(),
    ));
    let state = Arc::new(ControlState {
        nat: nat.clone(),
        wan: wan.clone(),
        shell: stats.clone(),
        info: RouterInfo {
            wan_iface: config.wan_iface.clone(),
            lan_iface: config.lan_iface.clone(),
            lan_addr: lan_ip,
            lan_prefix: lan_len,
            tun: tun_name,
            port_range: config.port_range.clone(),
            started: Instant::now(),
        },
        chosen_preset: Mutex::new(Some(config.preset)),
        upnp: upnp.as_ref().map(UpnpService::handle),
        dhcp: dhcp.as_ref().map(DhcpService::handle),
        access: control::Access::new(&config.admin, listen, lan_ip),
    });
    let (stop_tx, mut stop_rx) = tokio::sync::watch::channel(false);
    let server = tokio::spawn(control::serve(listener, state, async move {
        let _ = stop_rx.changed().await;
    }));
    let upnp_task = upnp.map(|svc| {
        let mut rx = stop_tx.subscribe();
        tokio::spawn(svc.run(async move {
            let _ = rx.changed().await;
        }))
    });
    let dhcp_task = dhcp.map(|svc| {
        let mut rx = stop_tx.subscribe();
        tokio::spawn(svc.run(async move {
            let _ = rx.changed().await;
        }))
    });
    // The WAN address: looked at again on every address notice from the kernel, and every
    // 30 s in case one was missed (every second if the subscription cannot be opened).
    let events = router::wan::AddressEvents::open()
        .map_err(|e| warn!("wan: no address notices from the kernel ({e}); checking every second"))
        .ok();
    let watcher = tokio::spawn(async move {
        let period = Duration::from_secs(if events.is_some() { 30 } else { 1 });
        let mut tick = tokio::time::interval(period);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let notice = async {
                match &events {
                    Some(ev) => ev.changed().await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = tick.tick() => {}
                r = notice => {
                    if let Err(e) = r {
                        warn!("wan: address notices: {e}");
                        tokio::time::sleep(Duration::from_secs(1)).await;
                    }
                }
            }
            let w = wan.clone();
            match tokio::task::spawn_blocking(move || w.poll()).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => warn!("wan: {e:#}"),
                Err(e) => warn!("wan: watcher task failed: {e}"),
            }
        }
    });
    info!("router running; control API on http://{listen}/ (SIGINT or SIGTERM to stop)");

    let reason = tokio::select! {
        _ = sigint.recv() => "SIGINT",
        _ = sigterm.recv() => "SIGTERM",
        _ = sighup.recv() => "SIGHUP",
        _ = done_rx => "the dataplane stopped",
    };

    // --- Shutdown --------------------------------------------------------------------------
    info!("shutdown: {reason}");
    waker.wake();
    let joined = tokio::task::spawn_blocking(move || dataplane.join())
        .await
        .map_err(|e| anyhow!("joining the dataplane: {e}"))?;
    watcher.abort();
    let _ = stop_tx.send(true);
    if let Some(t) = upnp_task {
        // SSDP byebye and the last save of the mapping table.
        let _ = tokio::time::timeout(Duration::from_secs(3), t).await;
    }
    if let Some(t) = dhcp_task {
        // The last save of the lease table.
        let _ = tokio::time::timeout(Duration::from_secs(3), t).await;
    }
    let _ = tokio::time::timeout(Duration::from_secs(1), server).await;
    recipe
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .teardown();
    drop(tuns);
    info!("shutdown: done, namespace restored");
    match joined {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(anyhow!(e).context("dataplane")),
        Err(panic) => {
            let msg = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_default();
            Err(anyhow!("the dataplane thread panicked: {msg}"))
        }
    }
}
