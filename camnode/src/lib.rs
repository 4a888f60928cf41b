//! The camera node: a camera web server that makes itself reachable from the internet through
//! the home router's UPnP IGD, as the server patent describes (../shared/specs/server-patent.md).
//!
//! Modules:
//! - [`config`]: defaults, TOML file, flags.
//! - [`camera`]: picture sources (webcam through nokhwa behind the `webcam` feature, synthetic),
//!   the frame hub (encode once, only while someone watches, share with every viewer) and JPEG.
//! - [`web`]: hyper service over any byte stream: the node's page, snapshot, MJPEG, status JSON,
//!   PTZ, rename; links and permissions depend on whether the viewer is on the LAN.
//! - [`portmgmt`]: the IGD client and the representative's table collection.
//! - [`identity`]: the node id and its name, kept across restarts.
//! - [`election`]: the representative's rotation (emb. 4) and collection by inquiry (emb. 2), sans-IO.
//! - [`relay`]: the device side of the relay (seed 003): notifications, connection requests, the
//!   TLS back-connection serving the same pages; used when port forwarding cannot help.
//! - [`directory`]: the camera set as this node sees it, written by `portmgmt`, read by `web`.

pub mod camera;
pub mod config;
pub mod directory;
pub mod election;
pub mod identity;
pub mod portmgmt;
pub mod relay;
pub mod web;
