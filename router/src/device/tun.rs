//! The TUN device: bare IPv4 packets in and out (IFF_TUN | IFF_NO_PI, see
//! Documentation/networking/tuntap.rst), non-blocking, with an eventfd that wakes a waiting
//! reader for shutdown, and with the kernel's offloads when it has them.
//!
//! # Offloads (linux/if_tun.h, linux/virtio_net.h)
//! Without offloads every packet crosses the device at most MTU-sized, with its checksum
//! complete: a TCP stream at 1500 bytes costs one read and one write per 1.5 KB, and the
//! kernel's own forwarding is done packet by packet. With `IFF_VNET_HDR` every packet in both
//! directions starts with a 10-byte [`VirtioNetHdr`], and `TUNSETOFFLOAD` lets the kernel hand
//! over what it would give a NIC with those features:
//! - `TUN_F_CSUM`: packets whose transport checksum is still partial
//!   ([`VIRTIO_NET_HDR_F_NEEDS_CSUM`]: the field holds the pseudo-header sum, and
//!   `csum_start`/`csum_offset` say where the sum starts and the field is);
//! - `TUN_F_TSO4`/`TUN_F_TSO6`/`TUN_F_TSO_ECN`: TCP GSO super-packets of up to 64 KiB under
//!   one header, `gso_type` TCPV4 and `gso_size` the MSS, segmented only if and where the
//!   kernel needs it after we write them back (usually nowhere: veth keeps them whole);
//! - `TUN_F_USO4`/`TUN_F_USO6` (Linux 6.2, both or neither): the same for UDP (`UDP_L4`).
//!
//! We write each packet back with the header it came with (the NAT keeps header lengths, so
//! `hdr_len`/`csum_start`/`csum_offset` stay right), and a zero header (no offload) for the
//! packets we make. [`Tun::open`] asks for all of it and falls back step by step
//! (USO needs Linux 6.2; an old kernel may refuse `TUNSETOFFLOAD` or `TUNSETVNETLE`, then the
//! device is reopened without the header). `[dataplane] offload = false` (or `--no-offload`)
//! turns offloads off.
//!
//! The device is opened with a few libc calls (open, the TUNSET* ioctls, poll(2), eventfd(2));
//! the ioctls are the only `unsafe` here besides the syscalls on our own descriptors.

use std::ffi::CStr;
use std::fmt;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::Arc;
use std::time::Duration;

use tracing::{info, warn};

/// Largest packet the TUN hands us: the 16-bit IPv4 total length (also of a GSO
/// super-packet: the device's `gso_max_size` is 65536 and IPv4 cannot describe more).
pub const MAX_PACKET: usize = 65535;

/// Length of `struct virtio_net_hdr` (linux/virtio_net.h), the TUN default for
/// `TUNSETVNETHDRSZ`.
pub const VNET_HDR_LEN: usize = 10;

/// `virtio_net_hdr.flags`: the transport checksum is partial; the sum from `csum_start` to the
/// end goes, complemented, to `csum_start + csum_offset` (linux/virtio_net.h).
pub const VIRTIO_NET_HDR_F_NEEDS_CSUM: u8 = 1;
/// `virtio_net_hdr.gso_type`: not a GSO packet.
pub const VIRTIO_NET_HDR_GSO_NONE: u8 = 0;

/// The `TUNSETOFFLOAD` flag sets tried in order, most first (linux/if_tun.h). The kernel
/// refuses a set with any flag it does not know (`tun_set_offload`: "a way to test for new
/// features"), and takes USO only as USO4 | USO6.
const OFFLOAD_TRIES: &[libc::c_uint] = &[
    libc::TUN_F_CSUM
        | libc::TUN_F_TSO4
        | libc::TUN_F_TSO6
        | libc::TUN_F_TSO_ECN
        | libc::TUN_F_USO4
        | libc::TUN_F_USO6,
    libc::TUN_F_CSUM | libc::TUN_F_TSO4 | libc::TUN_F_TSO6 | libc::TUN_F_TSO_ECN,
    libc::TUN_F_CSUM,
];

/// An open TUN device. Closing it (drop) deletes the device and every route through it.
#[derive(Debug)]
pub struct Tun {
    fd: OwnedFd,
    name: String,
    /// `TUN_F_*` flags the kernel accepted; `None` without `IFF_VNET_HDR`.
    offloads: Option<libc::c_uint>,
    waker: Waker,
}

/// Wakes a [`wait_any`] from another thread (an eventfd; cheap to clone).
#[derive(Debug, Clone)]
pub struct Waker(Arc<OwnedFd>);

/// `struct virtio_net_hdr` (linux/virtio_net.h), little-endian on the wire (we set
/// `TUNSETVNETLE`, so also on big-endian hosts).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct VirtioNetHdr {
    /// `VIRTIO_NET_HDR_F_NEEDS_CSUM` (1), `VIRTIO_NET_HDR_F_DATA_VALID` (2).
    pub flags: u8,
    /// `VIRTIO_NET_HDR_GSO_*`: NONE 0, TCPV4 1, UDP 3, TCPV6 4, UDP_L4 5, | ECN 0x80.
    pub gso_type: u8,
    /// Length of the headers (a hint).
    pub hdr_len: u16,
    /// Segment payload size of a GSO packet.
    pub gso_size: u16,
    /// Where the checksummed bytes start (from the IP header).
    pub csum_start: u16,
    /// Where the checksum field is, from `csum_start`.
    pub csum_offset: u16,
}

impl VirtioNetHdr {
    /// Reads the header from the first [`VNET_HDR_LEN`] bytes (`None` if shorter).
    pub fn parse(b: &[u8]) -> Option<VirtioNetHdr> {
        let &[flags, gso_type, a, b_, c, d, e, f, g, h] = b.get(..VNET_HDR_LEN)? else {
            return None;
        };
        Some(VirtioNetHdr {
            flags,
            gso_type,
            hdr_len: u16::from_le_bytes([a, b_]),
            gso_size: u16::from_le_bytes([c, d]),
            csum_start: u16::from_le_bytes([e, f]),
            csum_offset: u16::from_le_bytes([g, h]),
        })
    }

    /// The 10 bytes on the wire.
    pub fn to_bytes(self) -> [u8; VNET_HDR_LEN] {
        let mut b = [0u8; VNET_HDR_LEN];
        b[0] = self.flags;
        b[1] = self.gso_type;
        b[2..4].copy_from_slice(&self.hdr_len.to_le_bytes());
        b[4..6].copy_from_slice(&self.gso_size.to_le_bytes());
        b[6..8].copy_from_slice(&self.csum_start.to_le_bytes());
        b[8..10].copy_from_slice(&self.csum_offset.to_le_bytes());
        b
    }

    /// The transport checksum is partial (`VIRTIO_NET_HDR_F_NEEDS_CSUM`).
    pub fn needs_csum(&self) -> bool {
        self.flags & VIRTIO_NET_HDR_F_NEEDS_CSUM != 0
    }

    /// A GSO super-packet.
    pub fn is_gso(&self) -> bool {
        self.gso_type != VIRTIO_NET_HDR_GSO_NONE
    }
}

/// `struct ifreq` as TUNSETIFF reads it: the name and `ifr_flags` (linux/if.h; 40 bytes on
/// 64-bit Linux, the union padded to 24).
#[repr(C)]
struct IfReq {
    name: [u8; libc::IFNAMSIZ],
    flags: libc::c_short,
    _pad: [u8; 22],
}

impl Tun {
    /// Creates the TUN device `name` in the current network namespace (needs CAP_NET_ADMIN),
    /// with every offload the kernel accepts (falling back to none) or without. Logs what it
    /// got.
    pub fn open(name: &str, offload: bool) -> io::Result<Tun> {
        if offload {
            match Tun::open_with(name, true) {
                Ok(tun) => {
                    info!("tun: {} offloads: {}", tun.name, OffloadNames(tun.offloads));
                    return Ok(tun);
                }
                Err(e) => warn!("tun: {name}: offloads refused ({e}); opening without them"),
            }
        }
        let tun = Tun::open_with(name, false)?;
        info!("tun: {} offloads: none", tun.name);
        Ok(tun)
    }

    fn open_with(name: &str, vnet: bool) -> io::Result<Tun> {
        let fd = open_tun(name, vnet).map_err(|e| {
            io::Error::new(e.kind(), format!("cannot create TUN device {name}: {e}"))
        })?;
        let name = tun_name(&fd)?;
        let offloads = if vnet {
            // Little-endian headers on every host (virtio 1.0 byte order).
            set_vnet_le(&fd)?;
            let mut got = None;
            let mut last = io::Error::other("no offload set tried");
            for &flags in OFFLOAD_TRIES {
                match set_offload(&fd, flags) {
                    Ok(()) => {
                        got = Some(flags);
                        break;
                    }
                    Err(e) => last = e,
                }
            }
            Some(got.ok_or(last)?)
        } else {
            None
        };
        // SAFETY: eventfd(2) returns a new descriptor that nobody else owns, or -1.
        let efd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) };
        if efd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: efd is a fresh, valid descriptor that we own from here on.
        let waker = Waker(Arc::new(unsafe { OwnedFd::from_raw_fd(efd) }));
        Ok(Tun {
            fd,
            name,
            offloads,
            waker,
        })
    }

    /// The device name the kernel gave (the requested one unless it had `%d`).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Bytes of [`VirtioNetHdr`] before every packet read or written: 10 with offloads, else 0.
    pub fn vnet_hdr_len(&self) -> usize {
        if self.offloads.is_some() {
            VNET_HDR_LEN
        } else {
            0
        }
    }

    /// The `TUN_F_*` flags in force (`None`: no virtio header at all).
    pub fn offloads(&self) -> Option<u32> {
        self.offloads
    }

    /// A handle that interrupts [`wait_any`].
    pub fn waker(&self) -> Waker {
        self.waker.clone()
    }

    /// Reads one frame (the virtio header, if any, then the packet) into `buf`; `Ok(None)`
    /// when none is queued (EAGAIN) or on EINTR. A frame longer than `buf` is truncated by the
    /// kernel, so `buf` should hold [`Tun::vnet_hdr_len`] + [`MAX_PACKET`].
    pub fn recv(&self, buf: &mut [u8]) -> io::Result<Option<usize>> {
        // SAFETY: read(2) into a valid, writable buffer of buf.len() bytes on our descriptor.
        let n = unsafe { libc::read(self.fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
        if n >= 0 {
            return Ok(Some(n as usize));
        }
        let e = io::Error::last_os_error();
        match e.kind() {
            io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted => Ok(None),
            _ => Err(e),
        }
    }

    /// Writes one frame as it is (virtio header included when there is one). One retry on
    /// EINTR; EAGAIN means the kernel dropped it (a TUN write does not block), which the
    /// caller counts.
    pub fn send_frame(&self, frame: &[u8]) -> io::Result<()> {
        self.writev(&[frame])
    }

    /// Writes one packet we made ourselves: behind a zero virtio header (no offload) when the
    /// device has one.
    pub fn send(&self, packet: &[u8]) -> io::Result<()> {
        if self.offloads.is_some() {
            self.writev(&[&[0u8; VNET_HDR_LEN], packet])
        } else {
            self.writev(&[packet])
        }
    }

    /// writev(2) of one or two parts (header, packet), without allocating.
    fn writev(&self, parts: &[&[u8]]) -> io::Result<()> {
        let empty = libc::iovec {
            iov_base: std::ptr::null_mut(),
            iov_len: 0,
        };
        let mut iov = [empty; 2];
        let n = parts.len().min(iov.len());
        for (v, p) in iov.iter_mut().zip(parts) {
            *v = libc::iovec {
                iov_base: p.as_ptr().cast_mut().cast(),
                iov_len: p.len(),
            };
        }
        for _ in 0..2 {
            // SAFETY: writev(2) only reads the first n iovecs, each pointing at a buffer valid
            // for its length while `parts` is borrowed, on our descriptor.
            let r = unsafe { libc::writev(self.fd.as_raw_fd(), iov.as_ptr(), n as libc::c_int) };
            if r >= 0 {
                return Ok(());
            }
            let e = io::Error::last_os_error();
            if e.kind() != io::ErrorKind::Interrupted {
                return Err(e);
            }
        }
        Err(io::ErrorKind::Interrupted.into())
    }
}

/// What [`wait_any`] saw.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Readiness {
    /// The waker was triggered.
    pub woken: bool,
    /// Which of the devices can be read.
    pub readable: [bool; 2],
}

/// Waits until a packet is readable on either device, `waker` fires, or `timeout` passes
/// (EINTR counts as a timeout). The router reads the LAN and the WAN side from two devices.
pub fn wait_any(tuns: [&Tun; 2], waker: &Waker, timeout: Duration) -> io::Result<Readiness> {
    let pfd = |fd: i32| libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    };
    let mut fds = [
        pfd(tuns[0].fd.as_raw_fd()),
        pfd(tuns[1].fd.as_raw_fd()),
        pfd(waker.0.as_raw_fd()),
    ];
    let ms = timeout.as_micros().div_ceil(1000).min(i32::MAX as u128) as i32;
    // SAFETY: fds is a valid array of 3 pollfd for the duration of the call.
    let n = unsafe { libc::poll(fds.as_mut_ptr(), 3, ms) };
    if n < 0 {
        let e = io::Error::last_os_error();
        return if e.kind() == io::ErrorKind::Interrupted {
            Ok(Readiness::default())
        } else {
            Err(e)
        };
    }
    let mut r = Readiness {
        woken: fds[2].revents != 0,
        readable: [false; 2],
    };
    for (i, f) in fds[..2].iter().enumerate() {
        if f.revents & (libc::POLLERR | libc::POLLNVAL) != 0 {
            return Err(io::Error::other(format!(
                "poll reports an error on the TUN device {}",
                tuns[i].name
            )));
        }
        r.readable[i] = f.revents != 0;
    }
    Ok(r)
}

impl Waker {
    /// Makes the current or next [`wait_any`] return woken (and every later one).
    pub fn wake(&self) {
        let one: u64 = 1;
        // SAFETY: writes 8 bytes from a valid u64 to our eventfd. A failure (counter overflow)
        // still leaves the eventfd readable, which is all we need.
        unsafe {
            libc::write(
                self.0.as_raw_fd(),
                (&one as *const u64).cast(),
                std::mem::size_of::<u64>(),
            );
        }
    }
}

/// Opens /dev/net/tun and attaches it to a new (or existing, if we may) TUN device `name`
/// (TUNSETIFF, linux/if_tun.h), non-blocking, with `IFF_VNET_HDR` when `vnet`.
fn open_tun(name: &str, vnet: bool) -> io::Result<OwnedFd> {
    let bytes = name.as_bytes();
    if bytes.is_empty() || bytes.len() >= libc::IFNAMSIZ || bytes.contains(&0) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("invalid interface name {name:?} (1 to 15 bytes)"),
        ));
    }
    // SAFETY: open(2) of a NUL-terminated constant path; returns a new descriptor or -1.
    let raw = unsafe {
        libc::open(
            c"/dev/net/tun".as_ptr(),
            libc::O_RDWR | libc::O_NONBLOCK | libc::O_CLOEXEC,
        )
    };
    if raw < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: raw is a fresh, valid descriptor that we own from here on.
    let fd = unsafe { OwnedFd::from_raw_fd(raw) };
    let mut req = IfReq {
        name: [0; libc::IFNAMSIZ],
        flags: 0,
        _pad: [0; 22],
    };
    req.name[..bytes.len()].copy_from_slice(bytes);
    let mut flags = libc::IFF_TUN | libc::IFF_NO_PI;
    if vnet {
        flags |= libc::IFF_VNET_HDR;
    }
    req.flags = flags as libc::c_short;
    // SAFETY: TUNSETIFF reads and writes back one `struct ifreq`; `req` is a valid, writable
    // IfReq with the same layout and size (40 bytes) for the duration of the call.
    if unsafe { libc::ioctl(fd.as_raw_fd(), libc::TUNSETIFF, &mut req as *mut IfReq) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(fd)
}

/// The name the kernel gave the device (TUNGETIFF).
fn tun_name(fd: &OwnedFd) -> io::Result<String> {
    let mut req = IfReq {
        name: [0; libc::IFNAMSIZ],
        flags: 0,
        _pad: [0; 22],
    };
    // SAFETY: TUNGETIFF writes one `struct ifreq` into `req`, a valid, writable IfReq of the
    // kernel's layout and size.
    if unsafe { libc::ioctl(fd.as_raw_fd(), libc::TUNGETIFF, &mut req as *mut IfReq) } < 0 {
        return Err(io::Error::last_os_error());
    }
    let name = CStr::from_bytes_until_nul(&req.name)
        .map_err(|_| io::Error::other("TUNGETIFF returned a name without NUL"))?;
    Ok(name.to_string_lossy().into_owned())
}

/// TUNSETOFFLOAD: the `TUN_F_*` flags, passed by value (`__tun_chr_ioctl` in
/// drivers/net/tun.c hands `arg` itself to `set_offload`).
fn set_offload(fd: &OwnedFd, flags: libc::c_uint) -> io::Result<()> {
    // SAFETY: TUNSETOFFLOAD reads its argument as a plain unsigned long; no memory is passed.
    if unsafe {
        libc::ioctl(
            fd.as_raw_fd(),
            libc::TUNSETOFFLOAD,
            libc::c_ulong::from(flags),
        )
    } < 0
    {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// TUNSETVNETLE: virtio headers in little-endian byte order on every host (Linux 4.0).
fn set_vnet_le(fd: &OwnedFd) -> io::Result<()> {
    let on: libc::c_int = 1;
    // SAFETY: TUNSETVNETLE reads one int through the pointer (`get_user` in
    // tun_set_vnet_le), which points at `on` for the duration of the call.
    if unsafe {
        libc::ioctl(
            fd.as_raw_fd(),
            libc::TUNSETVNETLE,
            &on as *const libc::c_int,
        )
    } < 0
    {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// `TUN_F_*` flags as words, for the log.
struct OffloadNames(Option<libc::c_uint>);

impl fmt::Display for OffloadNames {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Some(flags) = self.0 else {
            return f.write_str("none");
        };
        f.write_str("vnet_hdr")?;
        for (bit, name) in [
            (libc::TUN_F_CSUM, "csum"),
            (libc::TUN_F_TSO4, "tso4"),
            (libc::TUN_F_TSO6, "tso6"),
            (libc::TUN_F_TSO_ECN, "tso_ecn"),
            (libc::TUN_F_USO4, "uso4"),
            (libc::TUN_F_USO6, "uso6"),
        ] {
            if flags & bit != 0 {
                write!(f, " {name}")?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn virtio_net_hdr_round_trips_little_endian() {
        // A TCPv4 GSO packet: 1448-byte segments, partial checksum at 20 + 16.
        let wire = [1u8, 1, 52, 0, 0xa8, 0x05, 20, 0, 16, 0];
        let h = VirtioNetHdr::parse(&wire).unwrap();
        assert_eq!(
            h,
            VirtioNetHdr {
                flags: VIRTIO_NET_HDR_F_NEEDS_CSUM,
                gso_type: 1,
                hdr_len: 52,
                gso_size: 1448,
                csum_start: 20,
                csum_offset: 16,
            }
        );
        assert!(h.needs_csum() && h.is_gso());
        assert_eq!(h.to_bytes(), wire);
        assert_eq!(VirtioNetHdr::parse(&wire[..9]), None);
    }

    #[test]
    fn ifreq_has_the_kernel_layout() {
        assert_eq!(std::mem::size_of::<IfReq>(), 40);
        assert_eq!(std::mem::offset_of!(IfReq, flags), 16);
    }

    #[test]
    fn offload_names() {
        assert_eq!(OffloadNames(None).to_string(), "none");
        assert_eq!(
            OffloadNames(Some(libc::TUN_F_CSUM | libc::TUN_F_TSO4)).to_string(),
            "vnet_hdr csum tso4"
        );
    }
}
