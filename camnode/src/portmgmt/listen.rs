//! Fig. 8a with one web service: the node's mapping may point at a port other than the one the
//! web server was started on (a member that got 8081 maps 8081 -> 8081). [`follow_lan_port`]
//! keeps a listener on `Directory::lan_port` whenever it differs from the web server's own port
//! and hands every accepted connection to the web server through a channel, so the same service
//! answers on both ports. With Fig. 8b (`internal_port_mode = "common"`) `lan_port` is the common
//! internal port; if the web server already listens there nothing extra is bound.

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};

use crate::directory::Directory;

/// Follows `Directory::lan_port`: binds `bind:lan_port` when it differs from `web_port`, drops
/// it when it no longer does, and sends accepted connections to `accepted`. Returns when the
/// Directory's sender or the receiver of `accepted` is gone. A bind failure is logged and retried
/// every second (the port may be busy for a moment after a previous holder).
pub async fn follow_lan_port(
    bind: Ipv4Addr,
    web_port: u16,
    mut directory: watch::Receiver<Directory>,
    accepted: mpsc::Sender<(TcpStream, SocketAddr)>,
) {
    let mut listener: Option<(u16, TcpListener)> = None;
    loop {
        let want =
            Some(directory.borrow_and_update().lan_port).filter(|p| *p != web_port && *p != 0);
        if listener.as_ref().map(|(p, _)| *p) != want {
            listener = None;
            if let Some(port) = want {
                match TcpListener::bind(SocketAddrV4::new(bind, port)).await {
                    Ok(l) => {
                        tracing::info!(port, "also listening on the mapped port (Fig. 8a)");
                        listener = Some((port, l));
                    }
                    Err(e) => {
                        tracing::warn!(port, error = %e, "cannot listen on the mapped port; retrying")
                    }
                }
            }
        }
        let retry = want.is_some() && listener.is_none();
        tokio::select! {
            changed = directory.changed() => if changed.is_err() { return },
            conn = async {
                match &listener {
                    Some((_, l)) => l.accept().await,
                    None => std::future::pending().await,
                }
            } => match conn {
                Ok(c) => if accepted.send(c).await.is_err() { return },
                Err(e) => tracing::debug!(error = %e, "accept on the mapped port"),
            },
            _ = tokio::time::sleep(Duration::from_secs(1)), if retry => {}
        }
    }
}
