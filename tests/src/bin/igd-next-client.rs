//! A UPnP IGD client built on the `igd-next` crate (issue 4: interoperation): the lab tests run
//! it inside a LAN namespace against the router, so a third-party Rust client discovers it over
//! SSDP and drives its WANIPConnection service. Each run discovers the gateway
//! (`search_gateway`), then performs one operation and prints its result on stdout, one line per
//! fact:
//!
//! ```text
//! igd-next-client [--ssdp ADDR:PORT] OPERATION
//!
//! igd-next-client search                               gateway ADDR root=URL control=URL
//!                                                      external-ip IP
//! igd-next-client add PROTO EXT_PORT ADDR:PORT LEASE DESC    added PROTO EXT_PORT -> ADDR:PORT
//! igd-next-client add-any PROTO ADDR:PORT LEASE DESC        added-any PROTO PORT -> ADDR:PORT
//! igd-next-client list                                 entry I PROTO EXT -> CLIENT:PORT lease=S desc='D'
//!                                                      end I ERROR
//! igd-next-client remove PROTO EXT_PORT                removed PROTO EXT_PORT
//! ```
//!
//! The M-SEARCH goes to the SSDP multicast group unless `--ssdp` names an address to search by
//! unicast (which UDA 1.1 answers at once, while a multicast search waits up to its MX, 3 s for
//! igd-next). PROTO is `tcp` or `udp`. A refused operation prints `error: ERROR` (igd-next's error value,
//! e.g. `NoSuchPortMapping`) and exits with status 2; other failures exit with status 1.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use igd_next::aio::Gateway;
use igd_next::aio::tokio::{Tokio, search_gateway};
use igd_next::{PortMappingProtocol, SearchOptions};

const USAGE: &str = "usage: igd-next-client [--ssdp ADDR:PORT] search | \
                     add PROTO EXT_PORT ADDR:PORT LEASE DESC | add-any PROTO ADDR:PORT LEASE DESC | \
                     list | remove PROTO EXT_PORT";

fn protocol(s: &str) -> Result<PortMappingProtocol> {
    match s.to_ascii_lowercase().as_str() {
        "tcp" => Ok(PortMappingProtocol::TCP),
        "udp" => Ok(PortMappingProtocol::UDP),
        _ => bail!("protocol {s:?} is neither tcp nor udp"),
    }
}

async fn gateway(ssdp: Option<SocketAddr>) -> Result<Gateway<Tokio>> {
    let mut opts = SearchOptions::default();
    if let Some(to) = ssdp {
        opts.broadcast_address = to;
    }
    // igd-next sends one M-SEARCH and waits; the lab's LAN does not lose it.
    opts.timeout = Some(Duration::from_secs(10));
    opts.single_search_timeout = Some(Duration::from_secs(5));
    search_gateway(opts).await.context("search_gateway")
}

/// Runs one operation; `Ok(false)` when the gateway refused it (already printed).
async fn run(args: &[String]) -> Result<bool> {
    let mut args: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut ssdp = None;
    if args.first() == Some(&"--ssdp") {
        let to = args.get(1).context(USAGE)?;
        ssdp = Some(to.parse().context("--ssdp ADDR:PORT")?);
        args.drain(..2);
    }
    let gw = gateway(ssdp).await?;
    match args.as_slice() {
        ["search"] => {
            println!(
                "gateway {} root={} control={}",
                gw.addr, gw.root_url, gw.control_url
            );
            let ip = gw.get_external_ip().await.context("get_external_ip")?;
            println!("external-ip {ip}");
        }
        ["add", proto, ext, local, lease, desc] => {
            let p = protocol(proto)?;
            let ext: u16 = ext.parse().context("EXT_PORT")?;
            let local: SocketAddr = local.parse().context("ADDR:PORT")?;
            let lease: u32 = lease.parse().context("LEASE")?;
            if let Err(e) = gw.add_port(p, ext, local, lease, desc).await {
                println!("error: {e:?}");
                return Ok(false);
            }
            println!("added {p} {ext} -> {local}");
        }
        ["add-any", proto, local, lease, desc] => {
            let p = protocol(proto)?;
            let local: SocketAddr = local.parse().context("ADDR:PORT")?;
            let lease: u32 = lease.parse().context("LEASE")?;
            match gw.add_any_port(p, local, lease, desc).await {
                Ok(port) => println!("added-any {p} {port} -> {local}"),
                Err(e) => {
                    println!("error: {e:?}");
                    return Ok(false);
                }
            }
        }
        ["list"] => {
            // The generic walk: index 0, 1, ... until the IGD answers 713
            // (SpecifiedArrayIndexInvalid); a table of 1000 would be a runaway.
            for i in 0..1000u32 {
                match gw.get_generic_port_mapping_entry(i).await {
                    Ok(e) => println!(
                        "entry {i} {} {} -> {}:{} lease={} desc='{}'",
                        e.protocol,
                        e.external_port,
                        e.internal_client,
                        e.internal_port,
                        e.lease_duration,
                        e.port_mapping_description
                    ),
                    Err(e) => {
                        println!("end {i} {e:?}");
                        break;
                    }
                }
            }
        }
        ["remove", proto, ext] => {
            let p = protocol(proto)?;
            let ext: u16 = ext.parse().context("EXT_PORT")?;
            if let Err(e) = gw.remove_port(p, ext).await {
                println!("error: {e:?}");
                return Ok(false);
            }
            println!("removed {p} {ext}");
        }
        _ => bail!("{USAGE}"),
    }
    Ok(true)
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match run(&args).await {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(2),
        Err(e) => {
            eprintln!("igd-next-client: {e:#}");
            ExitCode::FAILURE
        }
    }
}
