//! The TUN device: bare IPv4 packets in and out (IFF_TUN | IFF_NO_PI, see
//! Documentation/networking/tuntap.rst), non-blocking, with an eventfd that wakes a waiting
//! reader for shutdown.
//!
//! The tun-tap crate creates the device (TUNSETIFF); the rest (O_NONBLOCK, poll(2), eventfd(2))
//! is a few libc calls because tun-tap without its tokio feature offers no readiness wait.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::Arc;
use std::time::Duration;

use tun_tap::{Iface, Mode};

/// Largest packet the TUN hands us: the 16-bit IPv4 total length.
pub const MAX_PACKET: usize = 65535;

/// An open TUN device. Closing it (drop) deletes the device and every route through it.
#[derive(Debug)]
pub struct Tun {
    iface: Iface,
    waker: Waker,
}

/// Wakes a [`Tun::wait`] from another thread (an eventfd; cheap to clone).
#[derive(Debug, Clone)]
pub struct Waker(Arc<OwnedFd>);

/// What [`Tun::wait`] saw.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ready {
    /// Packets can be read.
    Readable,
    /// The waker was triggered.
    Woken,
    /// The timeout passed.
    Timeout,
}

impl Tun {
    /// Creates the TUN device `name` in the current network namespace (needs CAP_NET_ADMIN).
    pub fn create(name: &str) -> io::Result<Tun> {
        let iface = Iface::without_packet_info(name, Mode::Tun).map_err(|e| {
            io::Error::new(e.kind(), format!("cannot create TUN device {name}: {e}"))
        })?;
        set_nonblocking(iface.as_raw_fd())?;
        // SAFETY: eventfd(2) returns a new descriptor that nobody else owns, or -1.
        let fd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: fd is a fresh, valid descriptor that we own from here on.
        let waker = Waker(Arc::new(unsafe { OwnedFd::from_raw_fd(fd) }));
        Ok(Tun { iface, waker })
    }

    /// The device name the kernel gave (the requested one unless it had `%d`).
    pub fn name(&self) -> &str {
        self.iface.name()
    }

    /// A handle that interrupts [`Tun::wait`].
    pub fn waker(&self) -> Waker {
        self.waker.clone()
    }

    /// Waits until a packet is readable, the waker fires, or `timeout` passes. EINTR is a
    /// timeout (the caller re-checks its deadlines anyway).
    pub fn wait(&self, timeout: Duration) -> io::Result<Ready> {
        let mut fds = [
            libc::pollfd {
                fd: self.iface.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            },
            libc::pollfd {
                fd: self.waker.0.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            },
        ];
        // Round up so that a 0.3 ms deadline does not become a busy loop of 0 ms polls.
        let ms = timeout.as_micros().div_ceil(1000).min(i32::MAX as u128) as i32;
        // SAFETY: fds is a valid array of 2 pollfd for the duration of the call.
        let n = unsafe { libc::poll(fds.as_mut_ptr(), 2, ms) };
        if n < 0 {
            let e = io::Error::last_os_error();
            return if e.kind() == io::ErrorKind::Interrupted {
                Ok(Ready::Timeout)
            } else {
                Err(e)
            };
        }
        if fds[1].revents != 0 {
            return Ok(Ready::Woken);
        }
        if fds[0].revents & (libc::POLLERR | libc::POLLNVAL) != 0 {
            return Err(io::Error::other("poll reports an error on the TUN device"));
        }
        if fds[0].revents != 0 {
            return Ok(Ready::Readable);
        }
        Ok(Ready::Timeout)
    }

    /// Reads one packet; `Ok(None)` when none is queued (EAGAIN) or on EINTR.
    pub fn recv(&self, buf: &mut [u8]) -> io::Result<Option<usize>> {
        match self.iface.recv(buf) {
            Ok(n) => Ok(Some(n)),
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
                ) =>
            {
                Ok(None)
            }
            Err(e) => Err(e),
        }
    }

    /// Writes one packet back into the kernel. One retry on EINTR; EAGAIN means the kernel
    /// dropped it (a TUN write does not block), which the caller counts.
    pub fn send(&self, packet: &[u8]) -> io::Result<()> {
        match self.iface.send(packet) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => self.iface.send(packet).map(drop),
            r => r.map(drop),
        }
    }
}

impl Waker {
    /// Makes the current or next [`Tun::wait`] return [`Ready::Woken`] (and every later one).
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

fn set_nonblocking(fd: i32) -> io::Result<()> {
    // SAFETY: fcntl(2) on a descriptor we own; no pointers involved.
    let flags = unsafe { libc::fcntl(fd, libc::F_GETFL) };
    if flags < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: as above.
    if unsafe { libc::fcntl(fd, libc::F_SETFL, flags | libc::O_NONBLOCK) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}
