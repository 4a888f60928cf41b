//! The relay server of seed 003 (with seed 004's same-network answer): a camera behind any NAT
//! is reachable from the internet. See `relay/README.md` and `docs/relay-protocol.md`.
//!
//! Layers:
//! - [`core`]: the protocol logic, sans-IO (presence table, sessions, connection requests,
//!   replay checks, the same-network rule), tested with a virtual clock.
//! - the tokio shell: [`server`] (UDP driver, back-connection listener, viewer listeners),
//!   [`proxy`] (HTTP over a back-connection), [`pages`] (offline page, status, metrics),
//!   [`tls`] (certificates, `gen-certs`), [`config`] (TOML, errors that name the field).

pub mod config;
pub mod core;
pub mod pages;
pub mod proxy;
pub mod server;
pub mod tls;
pub mod viewer;
