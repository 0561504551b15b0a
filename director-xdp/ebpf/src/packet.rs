//! Bounds-checked access to the frame, and the header offsets the director
//! reads and writes.
//!
//! Every read or write of packet memory goes through [`ptr_at`]: it carries
//! the comparison against `data_end` that the verifier demands, and a cap on
//! the offset that lets the verifier bound pointers built from offsets read
//! out of the packet itself (IHL, TCP data offset, extension header lengths).

use aya_ebpf::programs::XdpContext;

/// Largest offset [`ptr_at`] accepts. The verifier only tracks packet
/// pointers whose variable offset it can bound below 64 KiB; XDP frames
/// without fragments live in one page, so no real offset comes near this.
const MAX_OFFSET: usize = 0x3fff;

/// A pointer to a `T` at `offset` bytes into the frame, or `None` when the
/// frame ends before the whole `T`: the only way this program touches packet
/// memory.
#[inline(always)]
pub fn ptr_at<T>(ctx: &XdpContext, offset: usize) -> Option<*mut T> {
    if offset > MAX_OFFSET {
        return None;
    }
    let start = ctx.data();
    let end = ctx.data_end();
    if start + offset + size_of::<T>() > end {
        return None;
    }
    Some((start + offset) as *mut T)
}

/// `N` bytes of the frame at a checked offset: a header, read field by
/// field at constant indexes, so one bounds check serves the whole header.
#[derive(Clone, Copy)]
pub struct View<const N: usize> {
    p: *const u8,
}

impl<const N: usize> View<N> {
    /// The `N` bytes at `offset`, if they are inside the frame.
    #[inline(always)]
    pub fn at(ctx: &XdpContext, offset: usize) -> Option<Self> {
        // LLVM rewrites `p + 1 > end` as `p >= end`, from which the
        // verifier learns no range at all for a pointer with a variable
        // offset: every window is at least 2 bytes.
        const { assert!(N >= 2) };
        ptr_at::<[u8; N]>(ctx, offset).map(|p| View {
            p: p.cast_const().cast(),
        })
    }

    /// The byte at `I`.
    #[inline(always)]
    pub fn u8<const I: usize>(self) -> u8 {
        const { assert!(I < N) };
        // SAFETY: `at` checked that N bytes from `p` are in the frame; I < N.
        unsafe { *self.p.add(I) }
    }

    /// The big-endian `u16` at `I`.
    #[inline(always)]
    pub fn be16<const I: usize>(self) -> u16 {
        const { assert!(I + 2 <= N) };
        // SAFETY: as in `u8`, for bytes I and I + 1.
        unsafe { u16::from_be_bytes([*self.p.add(I), *self.p.add(I + 1)]) }
    }

    /// The `u32` at `I` as stored (little-endian load of network bytes).
    #[inline(always)]
    pub fn u32_raw<const I: usize>(self) -> u32 {
        const { assert!(I + 4 <= N) };
        // SAFETY: as in `u8`, for bytes I..I + 4; unaligned read.
        unsafe { self.p.add(I).cast::<u32>().read_unaligned() }
    }

    /// The `u64` at `I` as stored (little-endian load of network bytes).
    #[inline(always)]
    pub fn u64_raw<const I: usize>(self) -> u64 {
        const { assert!(I + 8 <= N) };
        // SAFETY: as in `u8`, for bytes I..I + 8; unaligned read.
        unsafe { self.p.add(I).cast::<u64>().read_unaligned() }
    }

    /// The `M` bytes at `I` (the redirect module copies addresses out).
    #[inline(always)]
    pub fn array<const I: usize, const M: usize>(self) -> [u8; M] {
        const { assert!(I + M <= N) };
        // SAFETY: as in `u8`; a byte array has no alignment requirement.
        unsafe { *self.p.add(I).cast::<[u8; M]>() }
    }
}

/// Writes `value` at `offset`; `false` if it does not fit in the frame.
#[inline(always)]
pub fn write<const N: usize>(ctx: &XdpContext, offset: usize, value: [u8; N]) -> bool {
    // As in `View::at`.
    const { assert!(N >= 2) };
    match ptr_at::<[u8; N]>(ctx, offset) {
        Some(p) => {
            // SAFETY: in bounds (checked by `ptr_at`), alignment 1.
            unsafe { *p = value };
            true
        }
        None => false,
    }
}

/// `N` writable bytes of the frame at a checked offset: one bounds check
/// for a whole block of headers, written as words at constant indexes.
#[derive(Clone, Copy)]
pub struct WriteView<const N: usize> {
    p: *mut u8,
}

impl<const N: usize> WriteView<N> {
    /// The `N` bytes at `offset`, if they are inside the frame.
    #[inline(always)]
    pub fn at(ctx: &XdpContext, offset: usize) -> Option<Self> {
        // As in `View::at`.
        const { assert!(N >= 2) };
        ptr_at::<[u8; N]>(ctx, offset).map(|p| WriteView { p: p.cast() })
    }

    /// Stores `v` as it is in memory (little-endian) at `i`; `false` (and
    /// nothing written) if that is not inside the window. Callers pass
    /// constants, so the check folds away.
    #[inline(always)]
    pub fn put<T: Copy>(self, i: usize, v: T) -> bool {
        if i + size_of::<T>() > N {
            return false;
        }
        // SAFETY: `at` checked that N bytes from `p` are in the frame, and
        // i + size_of::<T>() <= N; unaligned write.
        unsafe { self.p.add(i).cast::<T>().write_unaligned(v) };
        true
    }
}

/// Frame length in bytes.
#[inline(always)]
pub fn frame_len(ctx: &XdpContext) -> usize {
    ctx.data_end() - ctx.data()
}

/// Ethernet II.
pub mod eth {
    /// Header without a VLAN tag.
    pub const HLEN: usize = 14;
    /// Destination MAC.
    pub const DST: usize = 0;
    /// Source MAC.
    pub const SRC: usize = 6;
    /// EtherType, or the TPID of a VLAN tag.
    pub const TYPE: usize = 12;
    /// Header with one 802.1Q tag.
    pub const VLAN_HLEN: usize = 18;
    /// The 802.1Q tag: TPID and TCI.
    pub const VLAN_TAG: usize = 12;
    /// EtherType after one 802.1Q tag.
    pub const VLAN_TYPE: usize = 16;
    /// 802.1Q TPID.
    pub const P_8021Q: u16 = 0x8100;
    /// IPv4.
    pub const P_IPV4: u16 = 0x0800;
    /// IPv6.
    pub const P_IPV6: u16 = 0x86dd;
}

/// IPv4 (RFC 791).
pub mod ipv4 {
    /// Header without options.
    pub const HLEN: usize = 20;
    /// Version (high nibble) and IHL (low nibble).
    pub const VER_IHL: usize = 0;
    /// Total length.
    pub const TOTAL_LEN: usize = 2;
    /// Flags (3 bits) and fragment offset (13 bits).
    pub const FRAG: usize = 6;
    /// Don't-fragment flag in the big-endian flags/offset word.
    pub const DF: u16 = 0x4000;
    /// More-fragments flag in the big-endian flags/offset word.
    pub const MF: u16 = 0x2000;
    /// Fragment offset mask in that word.
    pub const OFFSET_MASK: u16 = 0x1fff;
    /// Protocol.
    pub const PROTO: usize = 9;
    /// Source address.
    pub const SRC: usize = 12;
    /// Destination address.
    pub const DST: usize = 16;
}

/// IPv6 (RFC 8200).
pub mod ipv6 {
    /// Fixed header.
    pub const HLEN: usize = 40;
    /// Payload length.
    pub const PAYLOAD_LEN: usize = 4;
    /// Next header.
    pub const NEXT_HEADER: usize = 6;
    /// Source address.
    pub const SRC: usize = 8;
    /// Destination address.
    pub const DST: usize = 24;
    /// Hop-by-hop options header.
    pub const NH_HOP_BY_HOP: u8 = 0;
    /// Routing header.
    pub const NH_ROUTING: u8 = 43;
    /// Fragment header.
    pub const NH_FRAGMENT: u8 = 44;
    /// Destination options header.
    pub const NH_DEST_OPTS: u8 = 60;
    /// Fragment header length.
    pub const FRAG_HLEN: usize = 8;
    /// Next header, in an extension header.
    pub const EXT_NEXT: usize = 0;
    /// Length in 8-byte units, not counting the first 8, in an extension
    /// header (not the fragment header).
    pub const EXT_LEN: usize = 1;
    /// Fragment offset (13 bits, in 8-byte units, shifted left by 3) and M
    /// flag, big-endian, at this offset in the fragment header.
    pub const FRAG_OFFSET_M: usize = 2;
    /// M flag in that word.
    pub const FRAG_M: u16 = 1;
    /// Extension headers walked at most (more is malformed).
    pub const MAX_EXT_HEADERS: usize = 6;
}

/// IP protocol numbers.
pub mod proto {
    /// ICMP for IPv4.
    pub const ICMP: u8 = 1;
    /// TCP.
    pub const TCP: u8 = 6;
    /// UDP.
    pub const UDP: u8 = 17;
    /// ICMPv6.
    pub const ICMPV6: u8 = 58;
}

/// TCP header.
pub mod tcp {
    /// Header without options.
    pub const HLEN: usize = 20;
    /// Source port.
    pub const SPORT: usize = 0;
    /// Destination port.
    pub const DPORT: usize = 2;
    /// Data offset (high nibble), in 32-bit words.
    pub const DOFF: usize = 12;
}

/// UDP header.
pub mod udp {
    /// Header length.
    pub const HLEN: usize = 8;
    /// Source port.
    pub const SPORT: usize = 0;
    /// Destination port.
    pub const DPORT: usize = 2;
}

/// ICMP and ICMPv6 headers (type, code, checksum, 4 more bytes).
pub mod icmp {
    /// Header length; a quoted packet starts right after it.
    pub const HLEN: usize = 8;
    /// Type.
    pub const TYPE: usize = 0;
    /// Code.
    pub const CODE: usize = 1;
    /// ICMPv4 echo request.
    pub const V4_ECHO_REQUEST: u8 = 8;
    /// ICMPv4 destination unreachable...
    pub const V4_DEST_UNREACH: u8 = 3;
    /// ...code fragmentation needed.
    pub const V4_FRAG_NEEDED: u8 = 4;
    /// ICMPv6 echo request.
    pub const V6_ECHO_REQUEST: u8 = 128;
    /// ICMPv6 packet too big.
    pub const V6_PACKET_TOO_BIG: u8 = 2;
}
