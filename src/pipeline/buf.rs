//! The packet buffer the pipeline works on in place.

/// Offload state carried beside a packet (from the virtio-net header of a TUN
/// opened with IFF_VNET_HDR).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Offload {
    /// The transport checksum is partial (virtio `NEEDS_CSUM`): the field at
    /// `csum_start + csum_offset` holds the pseudo-header sum only.
    pub csum: Option<CsumOffload>,
    /// A large frame to be segmented by whoever receives it (TSO/USO).
    pub gso: Option<Gso>,
}

/// Where the partial checksum starts and where it is stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CsumOffload {
    pub start: u16,
    pub offset: u16,
}

/// Segmentation offload of a large frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Gso {
    pub kind: GsoKind,
    /// Segment payload size (MSS).
    pub size: u16,
    /// Length of the headers (IP + transport).
    pub hdr_len: u16,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GsoKind {
    TcpV4,
    /// TCP with ECN (CWR must be set on the first segment only).
    TcpV4Ecn,
    /// UDP segmentation offload (UDP_L4).
    UdpL4,
}

/// A packet in a fixed, caller-owned buffer: no allocation per packet.
#[derive(Clone)]
pub struct PacketBuf {
    data: Box<[u8]>,
    len: usize,
    pub offload: Offload,
}

impl std::fmt::Debug for PacketBuf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PacketBuf").field("len", &self.len).field("offload", &self.offload).finish()
    }
}

/// Room for the largest IPv4 packet (a 64 KiB GSO frame).
pub const MAX_PACKET: usize = 65535;

impl PacketBuf {
    /// A buffer that can hold `capacity` bytes.
    pub fn with_capacity(capacity: usize) -> PacketBuf {
        PacketBuf { data: vec![0; capacity].into_boxed_slice(), len: 0, offload: Offload::default() }
    }

    /// A buffer holding a copy of `bytes` (tests and tools), with room to grow.
    pub fn from_slice(bytes: &[u8]) -> PacketBuf {
        let mut b = PacketBuf::with_capacity(bytes.len().max(1500) + 128);
        b.data[..bytes.len()].copy_from_slice(bytes);
        b.len = bytes.len();
        b
    }

    /// The packet.
    pub fn bytes(&self) -> &[u8] {
        &self.data[..self.len]
    }

    /// The packet, mutable.
    pub fn bytes_mut(&mut self) -> &mut [u8] {
        &mut self.data[..self.len]
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn capacity(&self) -> usize {
        self.data.len()
    }

    /// The whole buffer, for the I/O layer to read into.
    pub fn buffer_mut(&mut self) -> &mut [u8] {
        &mut self.data
    }

    /// Sets the packet length (clamped to the capacity).
    pub fn set_len(&mut self, len: usize) {
        self.len = len.min(self.data.len());
    }
}
