//! Wire formats shared by the crates of the home network in a box.
//!
//! Everything here is pure: parsers take bytes and return a typed value or an error, emitters
//! write bytes. No sockets, no clocks. The router and the camera nodes both speak these formats,
//! so they live in one place and are tested once, with byte fixtures.
