//! The answer to a packet too big for the path MTU once encapsulated
//! (docs/director.md, "Too big to encapsulate"): the frame becomes, in
//! place, the ICMPv4 frag-needed or ICMPv6 packet-too-big a router would
//! send the client, from the VIP, back out of the interface it came in by.
//!
//! A cold path: one global BPF function (rule 5 of the crate's `lib.rs`), called from one place in
//! `director`, which the verifier checks once (not once per path that
//! reaches it) and which costs the packets that fit nothing but the check
//! that sends the others here.

use aya_ebpf::{
    bindings::xdp_md,
    helpers::generated::{bpf_csum_diff, bpf_xdp_adjust_head, bpf_xdp_adjust_tail},
    programs::XdpContext,
};
use proto::Encap;
use proto::maps::FAMILY_V6;
use proto::mtu::{IPV4_QUOTE_MAX, IPV6_QUOTE_MAX, answerable_v4, max_inner_len};

use director_xdp_ebpf::packet::{
    View, WriteView, eth, frame_len, icmp, ipv4, ipv6, proto as ipproto, ptr_at,
};

/// [`director_too_big`]: the frame is now the ICMP error; `XDP_TX`.
pub const ANSWERED: u32 = 0;
/// [`director_too_big`]: no error may be sent (an ICMP error, IPv4 without
/// DF, a source that is not a single host) or none could be built;
/// `XDP_DROP`.
pub const DROPPED: u32 = 1;

/// TTL / hop limit of the errors.
const TTL: u8 = 64;
/// IPv4 type of service of the errors: precedence 6, internetwork control
/// (RFC 1812 4.3.2.5).
const TOS: u8 = 0xc0;
/// Largest piece `bpf_csum_diff` sums in one call.
const CSUM_PIECE: usize = 512;

// The quotes are summed in these pieces.
const _: () = assert!(IPV4_QUOTE_MAX == 512 + 32 + 4);
const _: () = assert!(IPV6_QUOTE_MAX == 2 * 512 + 128 + 64 + 16);

/// What [`director_too_big`] needs besides the frame and the settings.
#[derive(Clone, Copy)]
pub struct Args {
    /// The row's primary (index of `DIR_BACKENDS`): its family is the
    /// outer one.
    pub backend: u32,
    /// Hops the encapsulation would have carried.
    pub hop_count: usize,
    /// The packet is an ICMP error: never answered with one.
    pub icmp_error: bool,
    /// The table is IP-in-IP (its overhead is the outer header alone).
    pub ipip: bool,
}

impl Args {
    const HOPS_SHIFT: u32 = 32;
    const ICMP_ERROR: u64 = 1 << 40;
    const IPIP: u64 = 1 << 41;

    /// The argument word.
    #[inline(always)]
    pub fn pack(self) -> u64 {
        u64::from(self.backend)
            | ((self.hop_count as u64 & 0xff) << Self::HOPS_SHIFT)
            | if self.icmp_error { Self::ICMP_ERROR } else { 0 }
            | if self.ipip { Self::IPIP } else { 0 }
    }
}

/// Turns the frame, a packet for a bind too big for the path MTU once
/// encapsulated, into the ICMP error that answers it ([`ANSWERED`]), or
/// says it gets none ([`DROPPED`]; the frame may be half rewritten then,
/// and is dropped). `args` is [`Args::pack`]. The advertised MTU is the
/// largest packet that fits ([`max_inner_len`] of the path MTU, the
/// primary's family, the encapsulation and the hop count).
///
/// One copy per L2 length and family, so that every offset is a constant
/// (as in `encap::director_encapsulate`). The frame is one the director
/// parsed: at most one 802.1Q tag, then IPv4 or IPv6.
#[unsafe(no_mangle)]
#[inline(never)]
pub extern "C" fn director_too_big(ctx: *mut xdp_md, args: u64) -> u32 {
    // An error never answers an error (RFC 1122 3.2.2, RFC 4443 2.4(e)).
    if args & Args::ICMP_ERROR != 0 {
        return DROPPED;
    }
    let (Some(settings), Some(primary)) = (
        crate::DIR_SETTINGS.get(0),
        crate::DIR_BACKENDS.get(args as u32),
    ) else {
        return DROPPED;
    };
    let hop_count = ((args >> Args::HOPS_SHIFT) & 0xff) as usize;
    let encap = if args & Args::IPIP != 0 {
        Encap::Ipip
    } else {
        Encap::Gue
    };
    let mtu = max_inner_len(settings.mtu, encap, primary.family == FAMILY_V6, hop_count);
    let ctx = XdpContext::new(ctx);
    let Some(h) = View::<{ eth::VLAN_HLEN }>::at(&ctx, 0) else {
        return DROPPED;
    };
    let (vlan, ethertype) = match h.be16::<{ eth::TYPE }>() {
        eth::P_8021Q => (true, h.be16::<{ eth::VLAN_TYPE }>()),
        ethertype => (false, ethertype),
    };
    match (vlan, ethertype) {
        (false, eth::P_IPV4) => frag_needed::<{ eth::HLEN }, { eth::HLEN + V4_GROW }>(&ctx, mtu),
        (true, eth::P_IPV4) => {
            frag_needed::<{ eth::VLAN_HLEN }, { eth::VLAN_HLEN + V4_GROW }>(&ctx, mtu)
        }
        (false, eth::P_IPV6) => packet_too_big::<{ eth::HLEN }, { eth::HLEN + V6_GROW }>(&ctx, mtu),
        (true, eth::P_IPV6) => {
            packet_too_big::<{ eth::VLAN_HLEN }, { eth::VLAN_HLEN + V6_GROW }>(&ctx, mtu)
        }
        _ => DROPPED,
    }
}

/// Bytes an ICMPv4 error puts before its quote: IPv4 and ICMP headers.
const V4_GROW: usize = ipv4::HLEN + icmp::HLEN;
/// Bytes an ICMPv6 error puts before its quote.
const V6_GROW: usize = ipv6::HLEN + icmp::HLEN;

/// The received frame's Ethernet addresses and VLAN tag, to send the error
/// back where the frame came from.
struct Back {
    /// The received source MAC, in the low 48 bits: the destination.
    dst: u64,
    /// The received destination MAC (this host): the source.
    src: u64,
    /// The 802.1Q tag (TPID and TCI) as stored, if the frame has one.
    tag: u32,
}

impl Back {
    /// Read from the frame before it is reshaped (18 bytes are there: an
    /// IP header follows the Ethernet header).
    #[inline(always)]
    fn of(ctx: &XdpContext) -> Option<Back> {
        const MAC: u64 = 0xffff_ffff_ffff;
        let h = View::<{ eth::VLAN_HLEN }>::at(ctx, 0)?;
        Some(Back {
            dst: h.u64_raw::<{ eth::SRC }>() & MAC,
            src: h.u64_raw::<{ eth::DST }>() & MAC,
            tag: h.u32_raw::<{ eth::VLAN_TAG }>(),
        })
    }

    /// Writes the Ethernet header of an `L2`-byte header, with `ethertype`.
    #[inline(always)]
    fn write<const L2: usize, const W: usize>(&self, w: WriteView<W>, ethertype: u16) -> bool {
        let mut ok = w.put::<u64>(0, self.dst | (self.src << 48));
        ok &= w.put::<u32>(8, (self.src >> 16) as u32);
        if L2 == eth::VLAN_HLEN {
            ok &= w.put::<u32>(eth::VLAN_TAG, self.tag);
        }
        ok & w.put::<u16>(L2 - 2, ethertype.to_be())
    }
}

/// `v` in network order, as stored, widened.
#[inline(always)]
const fn be16(v: u16) -> u64 {
    v.to_be() as u64
}

/// The Internet checksum of words whose ones' complement sum is `sum`. The
/// sum is the same in either byte order, so words are summed as stored and
/// the result is stored as it comes out.
#[inline(always)]
fn checksum(sum: u64) -> u16 {
    let mut s = (sum & 0xffff_ffff) + (sum >> 32);
    s = (s & 0xffff) + (s >> 16);
    s = (s & 0xffff) + (s >> 16);
    s = (s & 0xffff) + (s >> 16);
    !(s as u16)
}

/// `w` as two 32-bit halves summed (no carry lost in a `u64` sum).
#[inline(always)]
fn halves(w: u64) -> u64 {
    (w & 0xffff_ffff) + (w >> 32)
}

/// Moves the original packet `grow` bytes further from the head, leaving
/// room for the error's headers after the `L2`-byte Ethernet header, and
/// cuts the frame `quote` bytes into the original packet; `false` if the
/// packet is shorter than that (see `proto::mtu::quote_len`) or the frame
/// has no room.
#[inline(always)]
fn reshape<const L2: usize>(ctx: &XdpContext, grow: usize, quote: usize) -> bool {
    let Some(cut) = frame_len(ctx).checked_sub(L2 + quote) else {
        return false;
    };
    // SAFETY: the helpers only move `data` and `data_end` within the
    // frame's buffer; they fail (non-zero) when it has no room.
    unsafe {
        bpf_xdp_adjust_head(ctx.ctx, -(grow as i32)) == 0
            && bpf_xdp_adjust_tail(ctx.ctx, -(cut as i32)) == 0
    }
}

/// The ones' complement sum (unfolded) of the `N` bytes at `at`.
#[inline(always)]
fn piece<const N: usize>(ctx: &XdpContext, at: usize) -> Option<u64> {
    const { assert!(N <= CSUM_PIECE && N.is_multiple_of(4)) };
    let p = ptr_at::<[u8; N]>(ctx, at)?;
    // SAFETY: `ptr_at` checked that the N bytes are in the frame; the
    // helper reads them and writes nothing.
    let sum = unsafe { bpf_csum_diff(core::ptr::null_mut(), 0, p.cast(), N as u32, 0) };
    u64::try_from(sum).ok()
}

/// The ones' complement sum (unfolded) of the quote of an IPv4 error (or,
/// with `V6`, of an IPv6 one) at `at`: `bpf_csum_diff` takes at most 512
/// bytes a call, in constant sizes for the verifier.
#[inline(always)]
fn quote_sum<const V6: bool>(ctx: &XdpContext, at: usize) -> Option<u64> {
    let first = piece::<CSUM_PIECE>(ctx, at)?;
    Some(if V6 {
        first
            + piece::<CSUM_PIECE>(ctx, at + 512)?
            + piece::<128>(ctx, at + 1024)?
            + piece::<64>(ctx, at + 1152)?
            + piece::<16>(ctx, at + 1216)?
    } else {
        first + piece::<32>(ctx, at + 512)? + piece::<4>(ctx, at + 544)?
    })
}

/// ICMPv4 frag-needed (RFC 792, RFC 1191) for an IPv4 packet after an
/// `L2`-byte Ethernet header; `W` is the length of the new headers.
#[inline(always)]
fn frag_needed<const L2: usize, const W: usize>(ctx: &XdpContext, mtu: u32) -> u32 {
    const { assert!(W == L2 + V4_GROW) };
    // The IP header first: when it is there, so is the Ethernet header,
    // and LLVM, which knows it, must not get to skip a check the verifier
    // needs (with the two checked the other way round, it dropped the
    // loads of the MACs on the path where the first check fails).
    let Some(ip) = View::<{ ipv4::HLEN }>::at(ctx, L2) else {
        return DROPPED;
    };
    let Some(back) = Back::of(ctx) else {
        return DROPPED;
    };
    let client = ip.u32_raw::<{ ipv4::SRC }>();
    let vip = ip.u32_raw::<{ ipv4::DST }>();
    // Without DF a router would fragment; the director cannot.
    if ip.be16::<{ ipv4::FRAG }>() & ipv4::DF == 0 || !answerable_v4(client.to_ne_bytes()) {
        return DROPPED;
    }
    let quote = IPV4_QUOTE_MAX;
    if !reshape::<L2>(ctx, V4_GROW, quote) {
        return DROPPED;
    }
    let Some(quoted) = quote_sum::<false>(ctx, W) else {
        return DROPPED;
    };
    let Some(w) = WriteView::<W>::at(ctx, 0) else {
        return DROPPED;
    };
    let mut ok = back.write::<L2, W>(w, eth::P_IPV4);
    // `45 c0 | total | 00 00 | 40 00 | 40 01 | checksum | VIP | client`.
    let total = (V4_GROW + quote) as u16;
    let w0 = 0x45 | (u64::from(TOS) << 8) | (be16(total) << 16);
    let w1 = be16(ipv4::DF) << 16;
    let w2 = u64::from(TTL) | (u64::from(ipproto::ICMP) << 8);
    let header = checksum(w0 + w1 + w2 + u64::from(vip) + u64::from(client));
    ok &= w.put::<u64>(L2, w0 | (w1 << 32));
    ok &= w.put::<u32>(L2 + 8, (w2 | (u64::from(header) << 16)) as u32);
    ok &= w.put::<u64>(L2 + ipv4::SRC, u64::from(vip) | (u64::from(client) << 32));
    // Type 3, code 4, checksum, 2 unused bytes, the next-hop MTU.
    let i0 = u64::from(icmp::V4_DEST_UNREACH) | (u64::from(icmp::V4_FRAG_NEEDED) << 8);
    let i1 = be16(u16::try_from(mtu).unwrap_or(u16::MAX)) << 16;
    let sum = checksum(i0 + i1 + quoted);
    ok &= w.put::<u32>(L2 + ipv4::HLEN, (i0 | (u64::from(sum) << 16)) as u32);
    ok &= w.put::<u32>(L2 + ipv4::HLEN + 4, i1 as u32);
    if ok { ANSWERED } else { DROPPED }
}

/// Whether an IPv6 source given as two words as stored names a single host
/// (`proto::mtu::answerable_v6`): not ::, ::1 or multicast.
#[inline(always)]
fn answerable_v6(a: [u64; 2]) -> bool {
    const LOOPBACK_LOW: u64 = 1 << 56;
    a[0] & 0xff != 0xff && !(a[0] == 0 && (a[1] == 0 || a[1] == LOOPBACK_LOW))
}

/// ICMPv6 packet-too-big (RFC 4443 3.2) for an IPv6 packet after an
/// `L2`-byte Ethernet header; `W` is the length of the new headers.
#[inline(always)]
fn packet_too_big<const L2: usize, const W: usize>(ctx: &XdpContext, mtu: u32) -> u32 {
    const { assert!(W == L2 + V6_GROW) };
    // The IP header first: when it is there, so is the Ethernet header,
    // and LLVM, which knows it, must not get to skip a check the verifier
    // needs (with the two checked the other way round, it dropped the
    // loads of the MACs on the path where the first check fails).
    let Some(ip) = View::<{ ipv6::HLEN }>::at(ctx, L2) else {
        return DROPPED;
    };
    let Some(back) = Back::of(ctx) else {
        return DROPPED;
    };
    let client = [
        ip.u64_raw::<{ ipv6::SRC }>(),
        ip.u64_raw::<{ ipv6::SRC + 8 }>(),
    ];
    let vip = [
        ip.u64_raw::<{ ipv6::DST }>(),
        ip.u64_raw::<{ ipv6::DST + 8 }>(),
    ];
    if !answerable_v6(client) {
        return DROPPED;
    }
    let quote = IPV6_QUOTE_MAX;
    if !reshape::<L2>(ctx, V6_GROW, quote) {
        return DROPPED;
    }
    let Some(quoted) = quote_sum::<true>(ctx, W) else {
        return DROPPED;
    };
    let Some(w) = WriteView::<W>::at(ctx, 0) else {
        return DROPPED;
    };
    let mut ok = back.write::<L2, W>(w, eth::P_IPV6);
    // Version 6, traffic class and flow label 0; payload length, ICMPv6,
    // hop limit; from the VIP to the client.
    let payload = (icmp::HLEN + quote) as u16;
    ok &= w.put::<u64>(
        L2,
        0x60 | (be16(payload) << 32) | (u64::from(ipproto::ICMPV6) << 48) | (u64::from(TTL) << 56),
    );
    ok &= w.put::<u64>(L2 + ipv6::SRC, vip[0]);
    ok &= w.put::<u64>(L2 + ipv6::SRC + 8, vip[1]);
    ok &= w.put::<u64>(L2 + ipv6::DST, client[0]);
    ok &= w.put::<u64>(L2 + ipv6::DST + 8, client[1]);
    // Type 2, code 0, checksum, the MTU; the checksum covers the
    // pseudo-header: addresses, upper-layer length, next header.
    let i0 = u64::from(icmp::V6_PACKET_TOO_BIG);
    let i1 = u64::from(mtu.to_be());
    let pseudo = halves(vip[0])
        + halves(vip[1])
        + halves(client[0])
        + halves(client[1])
        + u64::from(u32::from(payload).to_be())
        + u64::from(u32::from(ipproto::ICMPV6).to_be());
    let sum = checksum(pseudo + i0 + i1 + quoted);
    ok &= w.put::<u32>(L2 + ipv6::HLEN, (i0 | (u64::from(sum) << 16)) as u32);
    ok &= w.put::<u32>(L2 + ipv6::HLEN + 4, i1 as u32);
    if ok { ANSWERED } else { DROPPED }
}
