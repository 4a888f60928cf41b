//! The OS corner: the TUN device (with a shutdown waker) and the pcap writer.

pub mod pcap;
pub mod tun;
