//! The camera node: a camera web server that makes itself reachable from the internet through
//! the home router's UPnP IGD, as the server patent describes (../shared/specs/server-patent.md).
//!
//! Modules:
//! - [`config`]: defaults, TOML file, flags.
//! - [`camera`]: picture sources (webcam through nokhwa, synthetic) and JPEG encoding.
//! - [`web`]: hyper service: the node's page, snapshot, MJPEG, status JSON, PTZ, rename.
//! - [`portmgmt`]: the IGD client and the representative's table collection.
//! - [`directory`]: the camera set as this node sees it, written by `portmgmt`, read by `web`.

pub mod camera;
pub mod config;
pub mod directory;
pub mod portmgmt;
pub mod web;
