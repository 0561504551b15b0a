//! GUE with GLB's private data: the header the director puts in front of
//! every packet it sends to a backend (docs/spec.md section 2).
//!
//! ```text
//!  0                   1                   2                   3
//!  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |Ver|C|  hlen   |  inner proto  |             flags             |  GUE
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |         private_type          |   next_hop    |   hop_count   |  GLB
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |         hop_count hop addresses, 4 (IPv4) or 16 (IPv6) bytes  |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |         inner packet, from offset 4 + 4 * hlen                |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! ```
//!
//! Modelled on smoltcp's `wire` module: [`GuePacket`] is a typed view over a
//! byte buffer with one accessor per field, [`GueRepr`] is the parsed,
//! validated form with `parse` and `emit`.
//!
//! Unlike smoltcp, which has one view per header, a single view covers the
//! GUE header, the GLB private data and the payload. The private data's
//! length is known only from the GUE header's `hlen`, and GLB never sends
//! GUE without private data, so two views would each need the other to
//! check their length.
//!
//! Everything here is `no_std` without `alloc`: the hop list is a
//! fixed-capacity array, sized by what `hlen` (5 bits) can describe.

use core::fmt;
use core::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Byte offsets and bit masks of the GUE header and the GLB private data.
///
/// Public so that the eBPF programs, which read packets through raw
/// bounds-checked pointers rather than this view, use the same offsets.
pub mod field {
    /// A byte range within the packet.
    pub type Field = core::ops::Range<usize>;

    /// Version, C bit and hlen share the first byte.
    pub const VER_C_HLEN: usize = 0;
    /// Version: the top two bits of byte 0.
    pub const VERSION_MASK: u8 = 0xc0;
    /// Shift that brings the version down to bits 0-1.
    pub const VERSION_SHIFT: u32 = 6;
    /// Control bit: set for GUE control messages, clear for data.
    pub const C_BIT: u8 = 0x20;
    /// hlen: the low five bits of byte 0.
    pub const HLEN_MASK: u8 = 0x1f;
    /// IP protocol number of the inner packet.
    pub const INNER_PROTO: usize = 1;
    /// GUE flags, big-endian.
    pub const FLAGS: Field = 2..4;

    /// GLB private data type (which address family the hops are), big-endian.
    pub const PRIVATE_TYPE: Field = 4..6;
    /// Index into the hop list of the next backend to try.
    pub const NEXT_HOP: usize = 6;
    /// Number of hop addresses that follow.
    pub const HOP_COUNT: usize = 7;
    /// Start of the hop list.
    pub const HOPS: usize = 8;
}

/// Length of the GUE header proper.
pub const GUE_HEADER_LEN: usize = field::PRIVATE_TYPE.start;
/// Length of the GUE header plus the fixed part of the GLB private data.
pub const GLB_HEADER_LEN: usize = field::HOPS;
/// Bytes per unit of `hlen` (it counts 32-bit words).
pub const HLEN_UNIT: usize = 4;
/// Largest value the 5-bit `hlen` field can hold.
pub const HLEN_MAX: u8 = field::HLEN_MASK;
/// Most IPv4 hops `hlen` can describe (30).
pub const MAX_V4_HOPS: usize = PrivateType::Ipv4Hops.max_hops();
/// Most IPv6 hops `hlen` can describe (7).
pub const MAX_V6_HOPS: usize = PrivateType::Ipv6Hops.max_hops();

/// The fixed part of the private data (`private_type`, `next_hop`,
/// `hop_count`), which `hlen` counts along with the hops.
const PRIVATE_FIXED_LEN: usize = GLB_HEADER_LEN - GUE_HEADER_LEN;

/// Why a GUE packet was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Error {
    /// The buffer ends before the header and private data that `hlen` announces.
    Truncated,
    /// The GUE version is not 0.
    BadVersion,
    /// The C bit is set: a GUE control message, which GLB never sends.
    ControlBit,
    /// GUE flags are set; the director never sends any.
    NonzeroFlags(u16),
    /// The inner protocol is neither IPv4 (4) nor IPv6 (41).
    UnknownInnerProto(u8),
    /// The GLB private data type is neither IPv4 hops (0) nor IPv6 hops (1).
    UnknownPrivateType(u16),
    /// `hlen` does not match the length that `hop_count` hops of this type need.
    HlenMismatch {
        /// `hlen` as received.
        hlen: u8,
        /// `hop_count` as received.
        hop_count: u8,
        /// `private_type` as received.
        private_type: u16,
    },
    /// More hops than the 5-bit `hlen` can describe (30 IPv4 or 7 IPv6 hops).
    TooManyHops,
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Truncated => f.write_str("GUE header or GLB private data truncated"),
            Error::BadVersion => f.write_str("GUE version is not 0"),
            Error::ControlBit => f.write_str("GUE control bit set on a data packet"),
            Error::NonzeroFlags(flags) => write!(f, "GUE flags {flags:#06x} set"),
            Error::UnknownInnerProto(p) => write!(f, "unknown GUE inner protocol {p}"),
            Error::UnknownPrivateType(t) => write!(f, "unknown GLB private data type {t}"),
            Error::HlenMismatch {
                hlen,
                hop_count,
                private_type,
            } => write!(
                f,
                "GUE hlen {hlen} does not fit {hop_count} hops of private data type {private_type}"
            ),
            Error::TooManyHops => write!(
                f,
                "more hops than GUE hlen can describe (at most {MAX_V4_HOPS} IPv4 or {MAX_V6_HOPS} IPv6)"
            ),
        }
    }
}

#[cfg(feature = "std")]
impl std::error::Error for Error {}

/// Family of the encapsulated (client) packet, from GUE's protocol byte.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum InnerProto {
    /// An IPv4 packet (IP protocol 4, IP-in-IP).
    Ipv4 = 4,
    /// An IPv6 packet (IP protocol 41).
    Ipv6 = 41,
}

impl TryFrom<u8> for InnerProto {
    type Error = Error;

    fn try_from(value: u8) -> Result<Self, Error> {
        match value {
            4 => Ok(InnerProto::Ipv4),
            41 => Ok(InnerProto::Ipv6),
            other => Err(Error::UnknownInnerProto(other)),
        }
    }
}

impl From<InnerProto> for u8 {
    fn from(value: InnerProto) -> u8 {
        value as u8
    }
}

/// GLB private data type: the address family of the hop list.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u16)]
pub enum PrivateType {
    /// IPv4 hops, 4 bytes each (GLB's only type).
    Ipv4Hops = 0,
    /// IPv6 hops, 16 bytes each (this project's extension).
    Ipv6Hops = 1,
}

impl PrivateType {
    /// Bytes per hop address.
    pub const fn hop_len(self) -> usize {
        match self {
            PrivateType::Ipv4Hops => 4,
            PrivateType::Ipv6Hops => 16,
        }
    }

    /// Most hops that fit in the private data `hlen` can describe.
    pub const fn max_hops(self) -> usize {
        (HLEN_MAX as usize * HLEN_UNIT - PRIVATE_FIXED_LEN) / self.hop_len()
    }

    /// The `hlen` that `hop_count` hops of this type need, or `None` past
    /// [`max_hops`](Self::max_hops).
    pub const fn hlen(self, hop_count: usize) -> Option<u8> {
        if hop_count > self.max_hops() {
            return None;
        }
        // Both hop lengths are whole words, so this division is exact.
        Some(((PRIVATE_FIXED_LEN + hop_count * self.hop_len()) / HLEN_UNIT) as u8)
    }
}

impl TryFrom<u16> for PrivateType {
    type Error = Error;

    fn try_from(value: u16) -> Result<Self, Error> {
        match value {
            0 => Ok(PrivateType::Ipv4Hops),
            1 => Ok(PrivateType::Ipv6Hops),
            other => Err(Error::UnknownPrivateType(other)),
        }
    }
}

impl From<PrivateType> for u16 {
    fn from(value: PrivateType) -> u16 {
        value as u16
    }
}

/// A hop list of one address family, held without allocation.
///
/// The family is part of the value even when the list is empty, because it
/// decides `private_type` on the wire.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Hops {
    list: HopList,
}

// Slots past `len` are always UNSPECIFIED (only the constructors below
// write them), so the derived equality compares the lists themselves.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
enum HopList {
    V4 {
        addrs: [Ipv4Addr; MAX_V4_HOPS],
        len: u8,
    },
    V6 {
        addrs: [Ipv6Addr; MAX_V6_HOPS],
        len: u8,
    },
}

impl Hops {
    /// An empty list of the given family.
    pub const fn empty(private_type: PrivateType) -> Self {
        let list = match private_type {
            PrivateType::Ipv4Hops => HopList::V4 {
                addrs: [Ipv4Addr::UNSPECIFIED; MAX_V4_HOPS],
                len: 0,
            },
            PrivateType::Ipv6Hops => HopList::V6 {
                addrs: [Ipv6Addr::UNSPECIFIED; MAX_V6_HOPS],
                len: 0,
            },
        };
        Hops { list }
    }

    /// IPv4 hops, in order; fails with [`Error::TooManyHops`] past [`MAX_V4_HOPS`].
    pub fn v4(hops: &[Ipv4Addr]) -> Result<Self, Error> {
        let mut addrs = [Ipv4Addr::UNSPECIFIED; MAX_V4_HOPS];
        let slots = addrs.get_mut(..hops.len()).ok_or(Error::TooManyHops)?;
        slots.copy_from_slice(hops);
        let len = u8::try_from(hops.len()).map_err(|_| Error::TooManyHops)?;
        Ok(Hops {
            list: HopList::V4 { addrs, len },
        })
    }

    /// IPv6 hops, in order; fails with [`Error::TooManyHops`] past [`MAX_V6_HOPS`].
    pub fn v6(hops: &[Ipv6Addr]) -> Result<Self, Error> {
        let mut addrs = [Ipv6Addr::UNSPECIFIED; MAX_V6_HOPS];
        let slots = addrs.get_mut(..hops.len()).ok_or(Error::TooManyHops)?;
        slots.copy_from_slice(hops);
        let len = u8::try_from(hops.len()).map_err(|_| Error::TooManyHops)?;
        Ok(Hops {
            list: HopList::V6 { addrs, len },
        })
    }

    /// Reads `hop_count` hops of `private_type` from the start of `bytes`.
    fn from_wire(private_type: PrivateType, hop_count: u8, bytes: &[u8]) -> Result<Self, Error> {
        let count = usize::from(hop_count);
        let bytes = bytes
            .get(..count * private_type.hop_len())
            .ok_or(Error::Truncated)?;
        let mut hops = Hops::empty(private_type);
        match &mut hops.list {
            HopList::V4 { addrs, len } => {
                let slots = addrs.get_mut(..count).ok_or(Error::TooManyHops)?;
                let (chunks, _) = bytes.as_chunks::<4>();
                for (slot, octets) in slots.iter_mut().zip(chunks) {
                    *slot = Ipv4Addr::from(*octets);
                }
                *len = hop_count;
            }
            HopList::V6 { addrs, len } => {
                let slots = addrs.get_mut(..count).ok_or(Error::TooManyHops)?;
                let (chunks, _) = bytes.as_chunks::<16>();
                for (slot, octets) in slots.iter_mut().zip(chunks) {
                    *slot = Ipv6Addr::from(*octets);
                }
                *len = hop_count;
            }
        }
        Ok(hops)
    }

    /// The family of the list, as `private_type` on the wire.
    pub const fn private_type(&self) -> PrivateType {
        match self.list {
            HopList::V4 { .. } => PrivateType::Ipv4Hops,
            HopList::V6 { .. } => PrivateType::Ipv6Hops,
        }
    }

    /// Number of hops.
    pub const fn len(&self) -> usize {
        self.hop_count() as usize
    }

    /// Whether the list has no hops (legal: the backend then accepts).
    pub const fn is_empty(&self) -> bool {
        self.hop_count() == 0
    }

    /// Number of hops, as `hop_count` on the wire.
    pub const fn hop_count(&self) -> u8 {
        match self.list {
            HopList::V4 { len, .. } | HopList::V6 { len, .. } => len,
        }
    }

    /// The `hlen` this list needs on the wire.
    pub const fn hlen(&self) -> u8 {
        match self.private_type().hlen(self.len()) {
            Some(hlen) => hlen,
            // The constructors cap the length at what hlen can describe.
            None => HLEN_MAX,
        }
    }

    /// Bytes the hop addresses take on the wire.
    pub const fn wire_len(&self) -> usize {
        self.len() * self.private_type().hop_len()
    }

    /// The IPv4 hops, or `None` for an IPv6 list.
    pub fn as_v4(&self) -> Option<&[Ipv4Addr]> {
        match &self.list {
            HopList::V4 { addrs, len } => addrs.get(..usize::from(*len)),
            HopList::V6 { .. } => None,
        }
    }

    /// The IPv6 hops, or `None` for an IPv4 list.
    pub fn as_v6(&self) -> Option<&[Ipv6Addr]> {
        match &self.list {
            HopList::V6 { addrs, len } => addrs.get(..usize::from(*len)),
            HopList::V4 { .. } => None,
        }
    }

    /// Hop `index`, or `None` past the end.
    pub fn get(&self, index: usize) -> Option<IpAddr> {
        match self.private_type() {
            PrivateType::Ipv4Hops => self
                .as_v4()
                .and_then(|a| a.get(index))
                .map(|a| IpAddr::V4(*a)),
            PrivateType::Ipv6Hops => self
                .as_v6()
                .and_then(|a| a.get(index))
                .map(|a| IpAddr::V6(*a)),
        }
    }

    /// The hops in order.
    pub fn iter(&self) -> impl Iterator<Item = IpAddr> + '_ {
        (0..self.len()).filter_map(move |i| self.get(i))
    }
}

impl fmt::Debug for Hops {
    // Only the used slots: the derived form would print all 30 or 7.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.private_type() {
            PrivateType::Ipv4Hops => f.debug_tuple("Hops::V4").field(&self.as_v4()).finish(),
            PrivateType::Ipv6Hops => f.debug_tuple("Hops::V6").field(&self.as_v6()).finish(),
        }
    }
}

/// A read/write view of a GUE header, GLB private data and payload over a
/// byte buffer that starts right after the outer UDP header.
///
/// Built with [`new_unchecked`](Self::new_unchecked), the field accessors
/// panic if the buffer is shorter than [`GLB_HEADER_LEN`]; use
/// [`new_checked`](Self::new_checked) (or [`check_len`](Self::check_len))
/// on untrusted input. [`hop`](Self::hop) and [`payload`](Self::payload)
/// never panic.
#[derive(Debug, PartialEq, Eq, Clone)]
pub struct GuePacket<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> GuePacket<T> {
    /// Wraps a buffer without checking its length.
    pub const fn new_unchecked(buffer: T) -> Self {
        GuePacket { buffer }
    }

    /// Wraps a buffer after [`check_len`](Self::check_len).
    pub fn new_checked(buffer: T) -> Result<Self, Error> {
        let packet = Self::new_unchecked(buffer);
        packet.check_len()?;
        Ok(packet)
    }

    /// Checks that the buffer holds the fixed headers and the whole private
    /// data that `hlen` announces, so every accessor is in bounds.
    ///
    /// It checks lengths only; [`GueRepr::parse`] checks the values.
    pub fn check_len(&self) -> Result<(), Error> {
        let len = self.buffer.as_ref().len();
        if len < GLB_HEADER_LEN || len < self.header_len() {
            return Err(Error::Truncated);
        }
        Ok(())
    }

    /// The underlying buffer.
    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// GUE version (must be 0).
    pub fn version(&self) -> u8 {
        (self.buffer.as_ref()[field::VER_C_HLEN] & field::VERSION_MASK) >> field::VERSION_SHIFT
    }

    /// GUE C bit (set for control messages).
    pub fn control(&self) -> bool {
        self.buffer.as_ref()[field::VER_C_HLEN] & field::C_BIT != 0
    }

    /// GUE hlen: 32-bit words of private data after the 4-byte header.
    pub fn hlen(&self) -> u8 {
        self.buffer.as_ref()[field::VER_C_HLEN] & field::HLEN_MASK
    }

    /// Offset of the inner packet: GUE header plus private data, from `hlen`.
    ///
    /// Reads only byte 0, and returns [`GUE_HEADER_LEN`] for an empty buffer
    /// so that [`check_len`](Self::check_len) can report truncation.
    pub fn header_len(&self) -> usize {
        let hlen = self
            .buffer
            .as_ref()
            .get(field::VER_C_HLEN)
            .map_or(0, |b| b & field::HLEN_MASK);
        GUE_HEADER_LEN + usize::from(hlen) * HLEN_UNIT
    }

    /// IP protocol number of the inner packet (4 or 41 when valid).
    pub fn inner_proto(&self) -> u8 {
        self.buffer.as_ref()[field::INNER_PROTO]
    }

    /// GUE flags (must be 0).
    pub fn flags(&self) -> u16 {
        read_u16(self.buffer.as_ref(), field::FLAGS)
    }

    /// GLB private data type (0 = IPv4 hops, 1 = IPv6 hops when valid).
    pub fn private_type(&self) -> u16 {
        read_u16(self.buffer.as_ref(), field::PRIVATE_TYPE)
    }

    /// Index of the next hop to try; `>= hop_count` means "accept here".
    pub fn next_hop(&self) -> u8 {
        self.buffer.as_ref()[field::NEXT_HOP]
    }

    /// Number of hop addresses.
    pub fn hop_count(&self) -> u8 {
        self.buffer.as_ref()[field::HOP_COUNT]
    }

    /// Hop `index`, or `None` if it is past `hop_count`, past the private
    /// data `hlen` announces, past the buffer, or the type is unknown.
    pub fn hop(&self, index: u8) -> Option<IpAddr> {
        let data = self.buffer.as_ref();
        if index >= *data.get(field::HOP_COUNT)? {
            return None;
        }
        let private_type = data
            .get(field::PRIVATE_TYPE)
            .and_then(|b| PrivateType::try_from(u16::from_be_bytes([b[0], b[1]])).ok())?;
        let hop_len = private_type.hop_len();
        let start = field::HOPS + usize::from(index) * hop_len;
        if start + hop_len > self.header_len() {
            return None;
        }
        let bytes = data.get(start..start + hop_len)?;
        match private_type {
            PrivateType::Ipv4Hops => {
                let octets: [u8; 4] = bytes.try_into().ok()?;
                Some(IpAddr::V4(octets.into()))
            }
            PrivateType::Ipv6Hops => {
                let octets: [u8; 16] = bytes.try_into().ok()?;
                Some(IpAddr::V6(octets.into()))
            }
        }
    }
}

impl<'a, T: AsRef<[u8]> + ?Sized> GuePacket<&'a T> {
    /// The inner packet: everything after the private data `hlen` announces
    /// (empty if the buffer ends before it).
    pub fn payload(&self) -> &'a [u8] {
        let start = self.header_len();
        self.buffer.as_ref().get(start..).unwrap_or(&[])
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> GuePacket<T> {
    /// Sets the GUE version (only the low two bits are kept).
    pub fn set_version(&mut self, version: u8) {
        let byte = &mut self.buffer.as_mut()[field::VER_C_HLEN];
        *byte = (*byte & !field::VERSION_MASK)
            | ((version << field::VERSION_SHIFT) & field::VERSION_MASK);
    }

    /// Sets or clears the GUE C bit.
    pub fn set_control(&mut self, control: bool) {
        let byte = &mut self.buffer.as_mut()[field::VER_C_HLEN];
        if control {
            *byte |= field::C_BIT;
        } else {
            *byte &= !field::C_BIT;
        }
    }

    /// Sets `hlen` (only the low five bits are kept).
    pub fn set_hlen(&mut self, hlen: u8) {
        let byte = &mut self.buffer.as_mut()[field::VER_C_HLEN];
        *byte = (*byte & !field::HLEN_MASK) | (hlen & field::HLEN_MASK);
    }

    /// Sets the inner packet's IP protocol number.
    pub fn set_inner_proto(&mut self, proto: u8) {
        self.buffer.as_mut()[field::INNER_PROTO] = proto;
    }

    /// Sets the GUE flags.
    pub fn set_flags(&mut self, flags: u16) {
        self.buffer.as_mut()[field::FLAGS].copy_from_slice(&flags.to_be_bytes());
    }

    /// Sets the GLB private data type.
    pub fn set_private_type(&mut self, private_type: u16) {
        self.buffer.as_mut()[field::PRIVATE_TYPE].copy_from_slice(&private_type.to_be_bytes());
    }

    /// Sets the index of the next hop (the redirect module increments it
    /// when it forwards).
    pub fn set_next_hop(&mut self, next_hop: u8) {
        self.buffer.as_mut()[field::NEXT_HOP] = next_hop;
    }

    /// Sets the number of hop addresses.
    pub fn set_hop_count(&mut self, hop_count: u8) {
        self.buffer.as_mut()[field::HOP_COUNT] = hop_count;
    }

    /// The inner packet, mutably (empty if the buffer ends before it).
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let start = self.header_len();
        self.buffer.as_mut().get_mut(start..).unwrap_or(&mut [])
    }
}

impl<T: AsRef<[u8]>> AsRef<[u8]> for GuePacket<T> {
    fn as_ref(&self) -> &[u8] {
        self.buffer.as_ref()
    }
}

/// Reads a big-endian u16; the caller has checked the length.
fn read_u16(data: &[u8], at: field::Field) -> u16 {
    let b = &data[at];
    u16::from_be_bytes([b[0], b[1]])
}

/// A validated GUE header with GLB private data.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct GueRepr {
    /// Family of the inner packet.
    pub inner: InnerProto,
    /// Index into `hops` of the next backend to try. Values at or past the
    /// end are legal: they mean "nowhere left to go, accept".
    pub next_hop: u8,
    /// Backends to try after the outer destination, in order.
    pub hops: Hops,
}

impl GueRepr {
    /// Parses and validates a GUE header with GLB private data.
    ///
    /// Checks lengths itself, so a view from
    /// [`GuePacket::new_unchecked`] is fine. `next_hop` is not checked
    /// against `hop_count`: past the end is the "last resort" signal.
    pub fn parse<T: AsRef<[u8]>>(packet: &GuePacket<T>) -> Result<Self, Error> {
        packet.check_len()?;
        if packet.version() != 0 {
            return Err(Error::BadVersion);
        }
        if packet.control() {
            return Err(Error::ControlBit);
        }
        let flags = packet.flags();
        if flags != 0 {
            return Err(Error::NonzeroFlags(flags));
        }
        let inner = InnerProto::try_from(packet.inner_proto())?;
        let raw_type = packet.private_type();
        let private_type = PrivateType::try_from(raw_type)?;
        let hop_count = packet.hop_count();
        let hlen = packet.hlen();
        // A hop count that no hlen could describe is reported as such rather
        // than as a mismatch with whatever hlen happens to be there.
        let expected = private_type
            .hlen(usize::from(hop_count))
            .ok_or(Error::TooManyHops)?;
        if hlen != expected {
            return Err(Error::HlenMismatch {
                hlen,
                hop_count,
                private_type: raw_type,
            });
        }
        let hop_bytes = packet
            .buffer
            .as_ref()
            .get(field::HOPS..packet.header_len())
            .ok_or(Error::Truncated)?;
        let hops = Hops::from_wire(private_type, hop_count, hop_bytes)?;
        Ok(GueRepr {
            inner,
            next_hop: packet.next_hop(),
            hops,
        })
    }

    /// `hlen` on the wire: the private data in 32-bit words.
    pub const fn hlen(&self) -> u8 {
        self.hops.hlen()
    }

    /// Bytes of GUE header plus private data, the inner packet excluded.
    pub const fn buffer_len(&self) -> usize {
        GUE_HEADER_LEN + self.hlen() as usize * HLEN_UNIT
    }

    /// Writes the header and private data at the start of `packet`; the
    /// payload is left alone.
    ///
    /// # Panics
    ///
    /// If the buffer is shorter than [`buffer_len`](Self::buffer_len).
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, packet: &mut GuePacket<T>) {
        packet.set_version(0);
        packet.set_control(false);
        packet.set_hlen(self.hlen());
        packet.set_inner_proto(self.inner.into());
        packet.set_flags(0);
        packet.set_private_type(self.hops.private_type().into());
        packet.set_next_hop(self.next_hop);
        packet.set_hop_count(self.hops.hop_count());
        let hops = &mut packet.buffer.as_mut()[field::HOPS..self.buffer_len()];
        if let Some(v4) = self.hops.as_v4() {
            let (chunks, _) = hops.as_chunks_mut::<4>();
            for (chunk, addr) in chunks.iter_mut().zip(v4) {
                *chunk = addr.octets();
            }
        } else if let Some(v6) = self.hops.as_v6() {
            let (chunks, _) = hops.as_chunks_mut::<16>();
            for (chunk, addr) in chunks.iter_mut().zip(v6) {
                *chunk = addr.octets();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOP_A: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 2);
    const HOP_B: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 7);
    const HOP_C: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 99);
    const HOP6_A: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 2);
    const HOP6_B: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0xbe, 0, 0, 0, 0, 0x1f);

    /// docs/spec.md section 2: inner IPv4, one IPv4 hop 198.51.100.2, next_hop 0.
    /// hlen = 1 + 1 = 2 words after the 4-byte GUE header.
    const V4_ONE_HOP: [u8; 12] = [
        0x02, 0x04, 0x00, 0x00, // ver 0, C 0, hlen 2 | proto 4 | flags 0
        0x00, 0x00, 0x00, 0x01, // private_type 0 | next_hop 0 | hop_count 1
        198, 51, 100, 2, // hop 0
    ];

    /// Inner IPv6, one IPv6 hop 2001:db8::2: hlen = 1 + 4 * 1 = 5.
    const V6_ONE_HOP: [u8; 24] = [
        0x05, 0x29, 0x00, 0x00, // ver 0, C 0, hlen 5 | proto 41 | flags 0
        0x00, 0x01, 0x00, 0x01, // private_type 1 | next_hop 0 | hop_count 1
        0x20, 0x01, 0x0d, 0xb8, 0x00, 0x00, 0x00, 0x00, // hop 0 ...
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x02, // ... 2001:db8::2
    ];

    fn parse(bytes: &[u8]) -> Result<GueRepr, Error> {
        GueRepr::parse(&GuePacket::new_unchecked(bytes))
    }

    /// Emits `repr` followed by `payload` and returns the buffer and its length.
    fn emit(repr: &GueRepr, payload: &[u8]) -> ([u8; 160], usize) {
        let mut buf = [0xeeu8; 160];
        let len = repr.buffer_len() + payload.len();
        let mut packet = GuePacket::new_unchecked(&mut buf[..len]);
        repr.emit(&mut packet);
        packet.payload_mut().copy_from_slice(payload);
        (buf, len)
    }

    fn round_trip(repr: GueRepr) {
        let payload = [0x45, 0x00, 0x00, 0x14];
        let (buf, len) = emit(&repr, &payload);
        let packet = GuePacket::new_checked(&buf[..len]).unwrap();
        assert_eq!(GueRepr::parse(&packet), Ok(repr));
        assert_eq!(packet.header_len(), repr.buffer_len());
        assert_eq!(packet.payload(), &payload);
    }

    #[test]
    fn emits_spec_example_with_one_ipv4_hop() {
        let repr = GueRepr {
            inner: InnerProto::Ipv4,
            next_hop: 0,
            hops: Hops::v4(&[HOP_A]).unwrap(),
        };
        assert_eq!(repr.buffer_len(), V4_ONE_HOP.len());
        let (buf, len) = emit(&repr, &[]);
        assert_eq!(&buf[..len], &V4_ONE_HOP);
    }

    #[test]
    fn emits_example_with_one_ipv6_hop() {
        let repr = GueRepr {
            inner: InnerProto::Ipv6,
            next_hop: 0,
            hops: Hops::v6(&[HOP6_A]).unwrap(),
        };
        assert_eq!(repr.buffer_len(), V6_ONE_HOP.len());
        let (buf, len) = emit(&repr, &[]);
        assert_eq!(&buf[..len], &V6_ONE_HOP);
    }

    #[test]
    fn view_reads_every_field_of_the_spec_example() {
        let packet = GuePacket::new_checked(&V4_ONE_HOP[..]).unwrap();
        assert_eq!(packet.version(), 0);
        assert!(!packet.control());
        assert_eq!(packet.hlen(), 2);
        assert_eq!(packet.header_len(), 12);
        assert_eq!(packet.inner_proto(), 4);
        assert_eq!(packet.flags(), 0);
        assert_eq!(packet.private_type(), 0);
        assert_eq!(packet.next_hop(), 0);
        assert_eq!(packet.hop_count(), 1);
        assert_eq!(packet.hop(0), Some(IpAddr::V4(HOP_A)));
        assert_eq!(packet.hop(1), None);
        assert_eq!(packet.payload(), &[] as &[u8]);
    }

    #[test]
    fn parses_example_with_one_ipv6_hop() {
        let repr = parse(&V6_ONE_HOP).unwrap();
        assert_eq!(repr.inner, InnerProto::Ipv6);
        assert_eq!(repr.next_hop, 0);
        assert_eq!(repr.hops.private_type(), PrivateType::Ipv6Hops);
        assert_eq!(repr.hops.as_v6(), Some(&[HOP6_A][..]));
        let packet = GuePacket::new_checked(&V6_ONE_HOP[..]).unwrap();
        assert_eq!(packet.hop(0), Some(IpAddr::V6(HOP6_A)));
    }

    #[test]
    fn round_trips_one_ipv4_hop() {
        round_trip(GueRepr {
            inner: InnerProto::Ipv4,
            next_hop: 0,
            hops: Hops::v4(&[HOP_A]).unwrap(),
        });
    }

    #[test]
    fn round_trips_several_ipv4_hops_with_ipv6_inner() {
        round_trip(GueRepr {
            inner: InnerProto::Ipv6,
            next_hop: 2,
            hops: Hops::v4(&[HOP_A, HOP_B, HOP_C]).unwrap(),
        });
    }

    #[test]
    fn round_trips_the_most_ipv4_hops_hlen_allows() {
        let mut addrs = [Ipv4Addr::UNSPECIFIED; MAX_V4_HOPS];
        for (i, a) in addrs.iter_mut().enumerate() {
            *a = Ipv4Addr::new(203, 0, 113, i as u8);
        }
        let repr = GueRepr {
            inner: InnerProto::Ipv4,
            next_hop: 29,
            hops: Hops::v4(&addrs).unwrap(),
        };
        assert_eq!(repr.hlen(), HLEN_MAX);
        round_trip(repr);
    }

    #[test]
    fn round_trips_ipv6_hops() {
        round_trip(GueRepr {
            inner: InnerProto::Ipv6,
            next_hop: 1,
            hops: Hops::v6(&[HOP6_A, HOP6_B]).unwrap(),
        });
        round_trip(GueRepr {
            inner: InnerProto::Ipv4,
            next_hop: 0,
            hops: Hops::v6(&[HOP6_B; MAX_V6_HOPS]).unwrap(),
        });
    }

    #[test]
    fn round_trips_an_empty_hop_list_of_either_family() {
        for ty in [PrivateType::Ipv4Hops, PrivateType::Ipv6Hops] {
            let repr = GueRepr {
                inner: InnerProto::Ipv4,
                next_hop: 0,
                hops: Hops::empty(ty),
            };
            assert_eq!(repr.hlen(), 1);
            round_trip(repr);
        }
    }

    #[test]
    fn next_hop_past_the_end_is_legal() {
        let mut bytes = V4_ONE_HOP;
        bytes[field::NEXT_HOP] = 1;
        assert_eq!(parse(&bytes).unwrap().next_hop, 1);
        bytes[field::NEXT_HOP] = 0xff;
        assert_eq!(parse(&bytes).unwrap().next_hop, 0xff);
        assert_eq!(GuePacket::new_unchecked(&bytes[..]).hop(0xff), None);
    }

    #[test]
    fn payload_starts_after_the_private_data() {
        let mut bytes = [0u8; 16];
        bytes[..12].copy_from_slice(&V4_ONE_HOP);
        bytes[12..].copy_from_slice(&[0x45, 1, 2, 3]);
        let packet = GuePacket::new_checked(&bytes[..]).unwrap();
        assert_eq!(packet.payload(), &[0x45, 1, 2, 3]);
        assert_eq!(parse(&bytes).unwrap(), parse(&V4_ONE_HOP).unwrap());
    }

    #[test]
    fn rejects_nonzero_version() {
        for version in 1..=3u8 {
            let mut bytes = V4_ONE_HOP;
            GuePacket::new_unchecked(&mut bytes[..]).set_version(version);
            assert_eq!(parse(&bytes), Err(Error::BadVersion));
        }
    }

    #[test]
    fn rejects_control_messages() {
        let mut bytes = V4_ONE_HOP;
        GuePacket::new_unchecked(&mut bytes[..]).set_control(true);
        assert_eq!(bytes[0], 0x22);
        assert_eq!(parse(&bytes), Err(Error::ControlBit));
    }

    #[test]
    fn rejects_nonzero_flags() {
        let mut bytes = V4_ONE_HOP;
        bytes[3] = 0x01;
        assert_eq!(parse(&bytes), Err(Error::NonzeroFlags(0x0001)));
        bytes[2] = 0x80;
        assert_eq!(parse(&bytes), Err(Error::NonzeroFlags(0x8001)));
    }

    #[test]
    fn rejects_unknown_inner_protocol() {
        let mut bytes = V4_ONE_HOP;
        for proto in [0u8, 6, 17, 47, 0xff] {
            bytes[field::INNER_PROTO] = proto;
            assert_eq!(parse(&bytes), Err(Error::UnknownInnerProto(proto)));
        }
    }

    #[test]
    fn rejects_unknown_private_type() {
        let mut bytes = V4_ONE_HOP;
        for (raw, want) in [([0x00, 0x02], 2u16), ([0x01, 0x00], 0x100)] {
            bytes[field::PRIVATE_TYPE].copy_from_slice(&raw);
            assert_eq!(parse(&bytes), Err(Error::UnknownPrivateType(want)));
        }
    }

    #[test]
    fn rejects_hlen_inconsistent_with_ipv4_hop_count() {
        // hlen 2 says one IPv4 hop; the count claims none.
        let mut bytes = V4_ONE_HOP;
        bytes[field::HOP_COUNT] = 0;
        assert_eq!(
            parse(&bytes),
            Err(Error::HlenMismatch {
                hlen: 2,
                hop_count: 0,
                private_type: 0
            })
        );
        // Enough bytes for hlen 3, but the count still says one.
        let mut long = [0u8; 16];
        long[..12].copy_from_slice(&V4_ONE_HOP);
        long[0] = 0x03;
        assert_eq!(
            parse(&long),
            Err(Error::HlenMismatch {
                hlen: 3,
                hop_count: 1,
                private_type: 0
            })
        );
    }

    #[test]
    fn rejects_ipv6_hops_with_ipv4_sized_hlen() {
        // GLB's hlen for one hop (2) with private_type 1 needs hlen 5.
        let mut bytes = V4_ONE_HOP;
        bytes[field::PRIVATE_TYPE].copy_from_slice(&[0x00, 0x01]);
        assert_eq!(
            parse(&bytes),
            Err(Error::HlenMismatch {
                hlen: 2,
                hop_count: 1,
                private_type: 1
            })
        );
    }

    #[test]
    fn rejects_hlen_zero() {
        // No private data at all: the bytes after the GUE header are the
        // inner packet, so whatever they say, the lengths cannot agree.
        let mut bytes = V4_ONE_HOP;
        bytes[0] = 0x00;
        assert!(matches!(
            parse(&bytes),
            Err(Error::HlenMismatch { hlen: 0, .. })
        ));
    }

    #[test]
    fn rejects_hop_counts_no_hlen_can_describe() {
        let mut bytes = [0u8; 128];
        bytes[..8].copy_from_slice(&V4_ONE_HOP[..8]);
        bytes[0] = HLEN_MAX;
        bytes[field::HOP_COUNT] = 31;
        assert_eq!(parse(&bytes), Err(Error::TooManyHops));
        bytes[field::PRIVATE_TYPE].copy_from_slice(&[0x00, 0x01]);
        bytes[field::HOP_COUNT] = 8;
        assert_eq!(parse(&bytes), Err(Error::TooManyHops));
    }

    #[test]
    fn hop_lists_are_capped_at_what_hlen_can_describe() {
        assert_eq!(MAX_V4_HOPS, 30);
        assert_eq!(MAX_V6_HOPS, 7);
        assert_eq!(PrivateType::Ipv4Hops.hlen(30), Some(31));
        assert_eq!(PrivateType::Ipv6Hops.hlen(7), Some(29));
        assert_eq!(PrivateType::Ipv4Hops.hlen(31), None);
        assert_eq!(PrivateType::Ipv6Hops.hlen(8), None);
        assert!(Hops::v4(&[HOP_A; MAX_V4_HOPS]).is_ok());
        assert_eq!(Hops::v4(&[HOP_A; MAX_V4_HOPS + 1]), Err(Error::TooManyHops));
        assert_eq!(Hops::v4(&[HOP_A; 300]), Err(Error::TooManyHops));
        assert!(Hops::v6(&[HOP6_A; MAX_V6_HOPS]).is_ok());
        assert_eq!(
            Hops::v6(&[HOP6_A; MAX_V6_HOPS + 1]),
            Err(Error::TooManyHops)
        );
    }

    #[test]
    fn hops_accessors_see_only_the_used_slots() {
        let hops = Hops::v4(&[HOP_A, HOP_B]).unwrap();
        assert_eq!(hops.len(), 2);
        assert!(!hops.is_empty());
        assert_eq!(hops.get(0), Some(IpAddr::V4(HOP_A)));
        assert_eq!(hops.get(1), Some(IpAddr::V4(HOP_B)));
        assert_eq!(hops.get(2), None);
        assert_eq!(hops.as_v6(), None);
        assert_eq!(hops.wire_len(), 8);
        let mut it = hops.iter();
        assert_eq!(it.next(), Some(IpAddr::V4(HOP_A)));
        assert_eq!(it.next(), Some(IpAddr::V4(HOP_B)));
        assert_eq!(it.next(), None);
        assert_ne!(
            Hops::empty(PrivateType::Ipv4Hops),
            Hops::empty(PrivateType::Ipv6Hops)
        );
        let hops6 = Hops::v6(&[HOP6_B]).unwrap();
        assert_eq!(hops6.get(0), Some(IpAddr::V6(HOP6_B)));
        assert_eq!(hops6.wire_len(), 16);
        assert_eq!(hops6.as_v4(), None);
    }

    #[test]
    fn every_prefix_of_a_valid_header_is_truncated() {
        for bytes in [&V4_ONE_HOP[..], &V6_ONE_HOP[..]] {
            assert!(parse(bytes).is_ok());
            for len in 0..bytes.len() {
                let prefix = &bytes[..len];
                assert_eq!(
                    GuePacket::new_checked(prefix),
                    Err(Error::Truncated),
                    "prefix of {len} bytes"
                );
                assert_eq!(
                    parse(prefix),
                    Err(Error::Truncated),
                    "prefix of {len} bytes"
                );
                let packet = GuePacket::new_unchecked(prefix);
                assert_eq!(packet.payload(), &[] as &[u8]);
                assert!(len < field::HOPS || packet.hop(0).is_none());
            }
        }
    }

    #[test]
    fn truncation_is_judged_by_hlen_not_by_the_inner_packet() {
        let repr = GueRepr {
            inner: InnerProto::Ipv4,
            next_hop: 0,
            hops: Hops::v4(&[HOP_A, HOP_B]).unwrap(),
        };
        let (buf, len) = emit(&repr, &[0x45; 20]);
        for cut in 0..=len {
            let got = parse(&buf[..cut]);
            if cut < repr.buffer_len() {
                assert_eq!(got, Err(Error::Truncated), "cut at {cut}");
            } else {
                assert_eq!(got, Ok(repr), "cut at {cut}");
            }
        }
    }

    #[test]
    fn parse_never_panics_on_any_single_byte_change() {
        let repr = GueRepr {
            inner: InnerProto::Ipv6,
            next_hop: 0,
            hops: Hops::v6(&[HOP6_A, HOP6_B]).unwrap(),
        };
        let (buf, len) = emit(&repr, &[0x60; 8]);
        for at in 0..len {
            for value in 0..=u8::MAX {
                let mut bytes = buf;
                bytes[at] = value;
                let packet = GuePacket::new_unchecked(&bytes[..len]);
                if let Ok(got) = GueRepr::parse(&packet) {
                    assert_eq!(got.buffer_len(), packet.header_len());
                }
                for i in 0..=u8::MAX {
                    let _ = packet.hop(i);
                }
                let _ = packet.payload();
            }
        }
    }

    #[test]
    fn next_hop_can_be_incremented_in_place() {
        let mut bytes = V4_ONE_HOP;
        let mut packet = GuePacket::new_checked(&mut bytes[..]).unwrap();
        let next = packet.next_hop() + 1;
        packet.set_next_hop(next);
        assert_eq!(packet.next_hop(), 1);
        let mut want = V4_ONE_HOP;
        want[field::NEXT_HOP] = 1;
        assert_eq!(bytes, want);
        assert_eq!(parse(&bytes).unwrap().next_hop, 1);
    }

    #[test]
    fn setters_touch_only_their_own_bits() {
        let mut bytes = [0u8; 8];
        let mut packet = GuePacket::new_unchecked(&mut bytes[..]);
        packet.set_version(3);
        packet.set_control(true);
        packet.set_hlen(0x1f);
        assert_eq!(packet.as_ref()[0], 0xff);
        packet.set_hlen(0x25); // only the low 5 bits fit
        assert_eq!(packet.hlen(), 0x05);
        assert_eq!(packet.version(), 3);
        assert!(packet.control());
        packet.set_control(false);
        packet.set_version(0);
        assert_eq!(packet.as_ref()[0], 0x05);
        packet.set_inner_proto(41);
        packet.set_flags(0xabcd);
        packet.set_private_type(0x0102);
        packet.set_next_hop(7);
        packet.set_hop_count(9);
        assert_eq!(
            packet.into_inner(),
            &[0x05, 41, 0xab, 0xcd, 0x01, 0x02, 7, 9]
        );
    }

    #[test]
    fn emit_leaves_the_payload_alone() {
        let mut buf = [0xaau8; 16];
        let repr = parse(&V4_ONE_HOP).unwrap();
        repr.emit(&mut GuePacket::new_unchecked(&mut buf[..]));
        assert_eq!(&buf[..12], &V4_ONE_HOP);
        assert_eq!(&buf[12..], &[0xaa; 4]);
    }

    #[test]
    fn enums_convert_to_and_from_their_wire_values() {
        assert_eq!(u8::from(InnerProto::Ipv4), 4);
        assert_eq!(u8::from(InnerProto::Ipv6), 41);
        assert_eq!(InnerProto::try_from(41), Ok(InnerProto::Ipv6));
        assert_eq!(u16::from(PrivateType::Ipv6Hops), 1);
        assert_eq!(PrivateType::try_from(0), Ok(PrivateType::Ipv4Hops));
        assert_eq!(PrivateType::try_from(7), Err(Error::UnknownPrivateType(7)));
    }

    #[cfg(feature = "std")]
    #[test]
    fn errors_name_the_offending_values() {
        let e = Error::HlenMismatch {
            hlen: 3,
            hop_count: 1,
            private_type: 0,
        };
        assert_eq!(
            e.to_string(),
            "GUE hlen 3 does not fit 1 hops of private data type 0"
        );
        assert_eq!(
            Error::NonzeroFlags(0x8000).to_string(),
            "GUE flags 0x8000 set"
        );
        assert_eq!(
            Error::TooManyHops.to_string(),
            "more hops than GUE hlen can describe (at most 30 IPv4 or 7 IPv6)"
        );
    }
}
