//! The camera node: a camera web server that makes itself reachable from the internet through
//! the home router's UPnP IGD, as the server patent describes (../shared/specs/server-patent.md).
//!
//! This crate so far holds the node's configuration ([`config`]); the picture sources, the web
//! server, the IGD client and the representative election follow (issues 5 and 6).

pub mod config;
