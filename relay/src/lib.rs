//! The relay server of seed 003 (see `relay/README.md`).
