//! TUN devices: multi-queue, optionally with the virtio-net header so large
//! TCP frames (TSO) and partial checksums cross the gateway whole.
//!
//! A device is created from a thread that has entered the target network
//! namespace, so it is born there: nothing is ever created in the root
//! namespace. The file descriptors keep working from any namespace.

use crate::pipeline::buf::{CsumOffload, Gso, GsoKind, Offload, PacketBuf};
use nix::fcntl::{FcntlArg, OFlag, fcntl};
use nix::sys::uio::{readv, writev};
use std::fs::{File, OpenOptions};
use std::io::{self, IoSlice, IoSliceMut};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::path::Path;

// From linux/if_tun.h and linux/if.h.
const TUNSETIFF: libc::c_ulong = 0x4004_54ca;
const TUNSETOFFLOAD: libc::c_ulong = 0x4004_54d0;
const TUNSETVNETHDRSZ: libc::c_ulong = 0x4004_54d8;
const IFF_TUN: libc::c_short = 0x0001;
const IFF_NO_PI: libc::c_short = 0x1000;
const IFF_MULTI_QUEUE: libc::c_short = 0x0100;
const IFF_VNET_HDR: libc::c_short = 0x4000;
/// TUNSETIFF fails with EBUSY if a device of that name exists: without it the
/// call would attach a queue to the existing device (another gateway's).
const IFF_TUN_EXCL: libc::c_short = 0x8000_u16 as libc::c_short;
const TUN_F_CSUM: libc::c_uint = 0x01;
const TUN_F_TSO4: libc::c_uint = 0x02;
const TUN_F_TSO6: libc::c_uint = 0x04;
const TUN_F_TSO_ECN: libc::c_uint = 0x08;
const TUN_F_USO4: libc::c_uint = 0x20;
const TUN_F_USO6: libc::c_uint = 0x40;

// From linux/virtio_net.h.
const VNET_HDR_LEN: usize = 10;
const VIRTIO_NET_HDR_F_NEEDS_CSUM: u8 = 1;
const VIRTIO_NET_HDR_GSO_NONE: u8 = 0;
const VIRTIO_NET_HDR_GSO_TCPV4: u8 = 1;
const VIRTIO_NET_HDR_GSO_UDP_L4: u8 = 5;
const VIRTIO_NET_HDR_GSO_ECN: u8 = 0x80;

/// `struct ifreq` as TUNSETIFF reads it: a name and the flags.
#[repr(C)]
struct IfReq {
    name: [u8; libc::IFNAMSIZ],
    flags: libc::c_short,
    _pad: [u8; 22],
}

/// What kind of offload a device got.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OffloadLevel {
    /// No virtio-net header: the kernel hands over finished, MTU-sized packets.
    None,
    /// Checksum and TCP segmentation offload.
    Tso,
    /// Also UDP segmentation offload (kernel 6.2 and later).
    TsoUso,
}

/// One queue of a TUN device.
#[derive(Debug)]
pub struct TunQueue {
    fd: OwnedFd,
    vnet: bool,
}

/// How to open a device.
#[derive(Clone, Debug)]
pub struct TunOptions {
    pub name: String,
    pub queues: usize,
    pub offload: bool,
}

fn ifreq(name: &str, flags: libc::c_short) -> io::Result<IfReq> {
    let bytes = name.as_bytes();
    if bytes.is_empty() || bytes.len() >= libc::IFNAMSIZ {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("interface name `{name}` must be 1 to 15 bytes"),
        ));
    }
    let mut r = IfReq { name: [0; libc::IFNAMSIZ], flags, _pad: [0; 22] };
    r.name[..bytes.len()].copy_from_slice(bytes);
    Ok(r)
}

/// Opens one queue of the device; the first creates it, and refuses a name
/// that is taken.
fn open_queue(opts: &TunOptions, first: bool) -> io::Result<(TunQueue, OffloadLevel)> {
    let file: File = OpenOptions::new().read(true).write(true).open("/dev/net/tun")?;
    let fd: OwnedFd = file.into();
    let mut flags = IFF_TUN | IFF_NO_PI | IFF_MULTI_QUEUE;
    if opts.offload {
        flags |= IFF_VNET_HDR;
    }
    if first {
        flags |= IFF_TUN_EXCL;
    }
    let mut req = ifreq(&opts.name, flags)?;
    // SAFETY: `fd` is an open /dev/net/tun descriptor and `req` is a properly
    // sized, initialised `struct ifreq` that outlives the call; TUNSETIFF only
    // reads the name and flags and writes the name back into it.
    let rc = unsafe { libc::ioctl(fd.as_raw_fd(), TUNSETIFF, &mut req as *mut IfReq) };
    if rc < 0 {
        let e = io::Error::last_os_error();
        if first && e.raw_os_error() == Some(libc::EBUSY) {
            return Err(io::Error::new(io::ErrorKind::AlreadyExists, "a device of that name exists already"));
        }
        return Err(e);
    }
    let mut level = OffloadLevel::None;
    if opts.offload {
        let sz: libc::c_int = VNET_HDR_LEN as libc::c_int;
        // SAFETY: TUNSETVNETHDRSZ reads one c_int through the pointer, which
        // points to a live local.
        let rc = unsafe { libc::ioctl(fd.as_raw_fd(), TUNSETVNETHDRSZ, &sz as *const libc::c_int) };
        if rc < 0 {
            return Err(io::Error::last_os_error());
        }
        let base = TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6 | TUN_F_TSO_ECN;
        // SAFETY: TUNSETOFFLOAD takes the flag word by value.
        let rc =
            unsafe { libc::ioctl(fd.as_raw_fd(), TUNSETOFFLOAD, (base | TUN_F_USO4 | TUN_F_USO6) as libc::c_ulong) };
        if rc == 0 {
            level = OffloadLevel::TsoUso;
        } else {
            // Older kernels refuse USO: keep TSO and checksum offload.
            // SAFETY: as above.
            let rc = unsafe { libc::ioctl(fd.as_raw_fd(), TUNSETOFFLOAD, base as libc::c_ulong) };
            if rc < 0 {
                return Err(io::Error::last_os_error());
            }
            level = OffloadLevel::Tso;
        }
    }
    let fl = OFlag::from_bits_truncate(fcntl(&fd, FcntlArg::F_GETFL)?);
    fcntl(&fd, FcntlArg::F_SETFL(fl | OFlag::O_NONBLOCK))?;
    Ok((TunQueue { fd, vnet: opts.offload }, level))
}

/// Creates a multi-queue TUN device inside the namespace whose file is
/// `netns` (e.g. `/run/netns/NAME`) and returns its queues.
pub fn create_in_netns(netns: &Path, opts: &TunOptions) -> io::Result<(Vec<TunQueue>, OffloadLevel)> {
    let ns = File::open(netns).map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", netns.display())))?;
    let opts = opts.clone();
    // A fresh thread enters the namespace, creates the device there, and ends:
    // the namespace of every other thread is untouched.
    std::thread::Builder::new()
        .name("tun-create".into())
        .spawn(move || -> io::Result<(Vec<TunQueue>, OffloadLevel)> {
            nix::sched::setns(ns.as_fd(), nix::sched::CloneFlags::CLONE_NEWNET)?;
            let mut queues = Vec::with_capacity(opts.queues);
            let mut level = OffloadLevel::None;
            for i in 0..opts.queues.max(1) {
                let (q, l) = open_queue(&opts, i == 0)?;
                level = l;
                queues.push(q);
            }
            Ok((queues, level))
        })?
        .join()
        .map_err(|_| io::Error::other("TUN creation thread panicked"))?
}

/// Parses a virtio-net header into offload state.
fn offload_from(h: &[u8; VNET_HDR_LEN]) -> Offload {
    let le = |i: usize| u16::from_le_bytes([h[i], h[i + 1]]);
    let csum = (h[0] & VIRTIO_NET_HDR_F_NEEDS_CSUM != 0).then(|| CsumOffload { start: le(6), offset: le(8) });
    let ecn = h[1] & VIRTIO_NET_HDR_GSO_ECN != 0;
    let gso = match h[1] & !VIRTIO_NET_HDR_GSO_ECN {
        VIRTIO_NET_HDR_GSO_TCPV4 => {
            Some(Gso { kind: if ecn { GsoKind::TcpV4Ecn } else { GsoKind::TcpV4 }, size: le(4), hdr_len: le(2) })
        }
        VIRTIO_NET_HDR_GSO_UDP_L4 => Some(Gso { kind: GsoKind::UdpL4, size: le(4), hdr_len: le(2) }),
        _ => None,
    };
    Offload { csum, gso }
}

fn header_from(o: &Offload) -> [u8; VNET_HDR_LEN] {
    let mut h = [0u8; VNET_HDR_LEN];
    if let Some(c) = o.csum {
        h[0] = VIRTIO_NET_HDR_F_NEEDS_CSUM;
        h[6..8].copy_from_slice(&c.start.to_le_bytes());
        h[8..10].copy_from_slice(&c.offset.to_le_bytes());
    }
    h[1] = VIRTIO_NET_HDR_GSO_NONE;
    if let Some(g) = o.gso {
        h[1] = match g.kind {
            GsoKind::TcpV4 => VIRTIO_NET_HDR_GSO_TCPV4,
            GsoKind::TcpV4Ecn => VIRTIO_NET_HDR_GSO_TCPV4 | VIRTIO_NET_HDR_GSO_ECN,
            GsoKind::UdpL4 => VIRTIO_NET_HDR_GSO_UDP_L4,
        };
        h[2..4].copy_from_slice(&g.hdr_len.to_le_bytes());
        h[4..6].copy_from_slice(&g.size.to_le_bytes());
    }
    h
}

/// Result of a non-blocking read.
#[derive(Debug)]
pub enum Read {
    /// A packet of this many bytes is in the buffer.
    Packet(usize),
    /// Nothing to read now.
    Empty,
}

impl TunQueue {
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }

    /// Reads one packet into `buf` (never blocks).
    pub fn read(&self, buf: &mut PacketBuf) -> io::Result<Read> {
        let mut hdr = [0u8; VNET_HDR_LEN];
        let r = if self.vnet {
            let data = buf.buffer_mut();
            let mut iov = [IoSliceMut::new(&mut hdr), IoSliceMut::new(data)];
            readv(&self.fd, &mut iov)
        } else {
            nix::unistd::read(&self.fd, buf.buffer_mut())
        };
        match r {
            Ok(n) => {
                let len = if self.vnet { n.saturating_sub(VNET_HDR_LEN) } else { n };
                buf.set_len(len);
                buf.offload = if self.vnet { offload_from(&hdr) } else { Offload::default() };
                Ok(Read::Packet(len))
            }
            Err(nix::errno::Errno::EAGAIN) => Ok(Read::Empty),
            Err(e) => Err(e.into()),
        }
    }

    /// Writes the packet in `buf`. A packet needing an offload the device
    /// cannot take is refused with `InvalidInput`.
    pub fn write(&self, buf: &PacketBuf) -> io::Result<()> {
        let r = if self.vnet {
            let hdr = header_from(&buf.offload);
            writev(&self.fd, &[IoSlice::new(&hdr), IoSlice::new(buf.bytes())])
        } else {
            if buf.offload.gso.is_some() || buf.offload.csum.is_some() {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    "offloaded packet to a device without offload",
                ));
            }
            nix::unistd::write(&self.fd, buf.bytes())
        };
        r.map(|_| ()).map_err(io::Error::from)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vnet_header_round_trip() {
        let o = Offload {
            csum: Some(CsumOffload { start: 20, offset: 16 }),
            gso: Some(Gso { kind: GsoKind::TcpV4Ecn, size: 1448, hdr_len: 52 }),
        };
        assert_eq!(offload_from(&header_from(&o)), o);
        assert_eq!(offload_from(&header_from(&Offload::default())), Offload::default());
    }

    #[test]
    fn names_are_checked() {
        assert!(ifreq("", 0).is_err());
        assert!(ifreq("0123456789abcdef", 0).is_err());
        assert!(ifreq("ngw1234-t0", 0).is_ok());
    }
}
