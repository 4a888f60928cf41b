//! The HTTP side: pages, snapshots, MJPEG, status, PTZ, rename.
