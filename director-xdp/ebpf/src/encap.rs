//! GUE encapsulation in place: grow the frame at the head, then rewrite L2
//! and write the outer IP, UDP, GUE and GLB private data in front of the
//! original IP packet (docs/director.md, "Encapsulation").

use aya_ebpf::{bindings::xdp_md, helpers::generated::bpf_xdp_adjust_head, programs::XdpContext};
use proto::GUE_PORT;
use proto::maps::{BACKEND_MAC_RESOLVED, BackendEntry, DirectorSettings, FAMILY_V4, FAMILY_V6};
use proto::wire::{GLB_HEADER_LEN, GUE_HEADER_LEN, InnerProto, PrivateType, field};

use crate::packet::{View, eth, frame_len, ipv4, ipv6, proto as ipproto, udp, write};

// The GUE + GLB block below is written as one literal; it must agree with
// the offsets `proto::wire` parses.
const _: () = assert!(field::VER_C_HLEN == 0);
const _: () = assert!(field::INNER_PROTO == 1);
const _: () = assert!(field::FLAGS.start == 2 && field::FLAGS.end == 4);
const _: () = assert!(field::PRIVATE_TYPE.start == 4 && field::PRIVATE_TYPE.end == 6);
const _: () = assert!(field::NEXT_HOP == 6 && field::HOP_COUNT == 7);
const _: () = assert!(field::HOPS == GLB_HEADER_LEN);

/// UDP, GUE and the fixed part of the GLB private data: one write.
const UDP_GUE_LEN: usize = udp::HLEN + GLB_HEADER_LEN;
/// TTL / hop limit of the outer header.
const OUTER_TTL: u8 = 64;
/// IPv4 DF flag in the flags/offset word.
const IPV4_DF: u16 = 0x4000;

/// Where and how to send one packet: copies of the map values, since
/// [`director_encapsulate`] is a global function and can take only plain
/// memory.
#[repr(C)]
pub struct Target {
    pub settings: DirectorSettings,
    /// Outer destination.
    pub primary: BackendEntry,
    /// The one hop.
    pub secondary: BackendEntry,
    /// UDP source port of the GUE packet.
    pub source_port: u16,
    /// Whether the received frame has an 802.1Q tag.
    pub vlan: bool,
    /// Family of the original packet (GUE's inner protocol).
    pub inner_v6: bool,
    /// Out: whether the frame went to the gateway MAC (the primary's is not
    /// resolved).
    pub mac_fallback: bool,
}

/// Encapsulates the frame for `t`: 1 when done, 0 when it cannot be
/// encapsulated (no backend entry, no outer source, no MAC, no headroom),
/// and then the frame is to be dropped.
///
/// A global BPF function (exported, not inlined), like the flow hash: the
/// verifier checks it once instead of once per path reaching it.
///
/// One copy of the work per L2 length and family, so that every offset is
/// a constant: with `l2` a variable, LLVM specialised some offsets per
/// branch and not the bounds checks guarding them, and the verifier saw
/// unchecked writes.
#[unsafe(no_mangle)]
#[inline(never)]
pub extern "C" fn director_encapsulate(ctx: *mut xdp_md, t: *mut Target) -> u32 {
    // SAFETY: the verifier hands a global function either null or a valid
    // pointer to a whole `Target`; null is checked.
    let Some(t) = (unsafe { t.as_mut() }) else {
        return 0;
    };
    let ctx = XdpContext::new(ctx);
    let family = t.primary.family;
    // All backends of a table share one family (the loader refuses
    // others), so the hop's is the outer header's; a row that mixes them
    // did not come from the loader.
    if t.secondary.family != family {
        return 0;
    }
    let sent = match (t.vlan, family) {
        (false, FAMILY_V4) => encapsulate_as::<{ eth::HLEN }, false>(&ctx, t),
        (false, FAMILY_V6) => encapsulate_as::<{ eth::HLEN }, true>(&ctx, t),
        (true, FAMILY_V4) => encapsulate_as::<{ eth::VLAN_HLEN }, false>(&ctx, t),
        (true, FAMILY_V6) => encapsulate_as::<{ eth::VLAN_HLEN }, true>(&ctx, t),
        _ => false,
    };
    u32::from(sent)
}

/// [`encapsulate`] for an `L2`-byte Ethernet header and an outer header
/// (and hop) of IPv6 if `V6`, else IPv4.
#[inline(always)]
fn encapsulate_as<const L2: usize, const V6: bool>(ctx: &XdpContext, t: &mut Target) -> bool {
    let s = &t.settings;
    if (V6 && s.src_v6 == [0; 16]) || (!V6 && s.src_v4 == [0; 4]) {
        return false;
    }
    let dst_mac = if t.primary.flags & BACKEND_MAC_RESOLVED != 0 {
        t.primary.mac
    } else if s.gateway_mac != [0; 6] {
        s.gateway_mac
    } else {
        return false;
    };
    let mac_fallback = t.primary.flags & BACKEND_MAC_RESOLVED == 0;

    let (private_type, hop_len, outer_ip_len, ethertype) = if V6 {
        (PrivateType::Ipv6Hops, 16, ipv6::HLEN, eth::P_IPV6)
    } else {
        (PrivateType::Ipv4Hops, 4, ipv4::HLEN, eth::P_IPV4)
    };
    const { assert!(PrivateType::Ipv6Hops.hop_len() == 16) };
    const { assert!(PrivateType::Ipv4Hops.hop_len() == 4) };
    let private_len = GLB_HEADER_LEN - GUE_HEADER_LEN + hop_len;
    let grow = outer_ip_len + UDP_GUE_LEN + hop_len;

    // The received frame's destination MAC becomes the source, and its VLAN
    // tag stays: read both before the head moves. 18 bytes are there even
    // without a tag (an IP header follows the 14), so one read serves both
    // lengths; without a tag, `tag` is the EtherType and 2 bytes of IP
    // header, and unused.
    let Some(old) = View::<{ eth::VLAN_HLEN }>::at(ctx, 0) else {
        return false;
    };
    let old_dst = old.array::<{ eth::DST }, 6>();
    let tag = old.array::<{ eth::VLAN_TAG }, 4>();
    // L: the original IP packet and any bytes after it.
    let inner_len = frame_len(ctx) - L2;
    let udp_len = UDP_GUE_LEN + hop_len + inner_len;

    // SAFETY: the helper only moves `data` within the frame's headroom; it
    // fails (non-zero) when there is not enough.
    if unsafe { bpf_xdp_adjust_head(ctx.ctx, -(grow as i32)) } != 0 {
        return false;
    }

    // Every packet pointer is re-derived after the move (the verifier
    // invalidates the old ones, rightly).
    let mut ok = write(ctx, eth::DST, dst_mac) && write(ctx, eth::DST + 6, old_dst);
    if L2 == eth::VLAN_HLEN {
        ok = ok && write(ctx, eth::VLAN_TAG, tag);
    }
    ok = ok && write(ctx, L2 - 2, ethertype.to_be_bytes());

    ok = ok
        && if V6 {
            let [p0, p1] = (udp_len as u16).to_be_bytes();
            // Version 6, traffic class and flow label 0.
            write(ctx, L2, [0x60, 0, 0, 0, p0, p1, ipproto::UDP, OUTER_TTL])
                && write(ctx, L2 + ipv6::SRC, s.src_v6)
                && write(ctx, L2 + ipv6::DST, t.primary.addr)
        } else {
            write(ctx, L2, ipv4_header(s, &t.primary, udp_len))
        };

    let [sp0, sp1] = t.source_port.to_be_bytes();
    let [dp0, dp1] = GUE_PORT.to_be_bytes();
    let [ul0, ul1] = (udp_len as u16).to_be_bytes();
    let inner = if t.inner_v6 {
        u8::from(InnerProto::Ipv6)
    } else {
        u8::from(InnerProto::Ipv4)
    };
    let [pt0, pt1] = u16::from(private_type).to_be_bytes();
    let hlen = (private_len / proto::wire::HLEN_UNIT) as u8;
    #[rustfmt::skip]
    let udp_gue: [u8; UDP_GUE_LEN] = [
        // UDP: source port, destination port, length, checksum 0 (none).
        sp0, sp1, dp0, dp1, ul0, ul1, 0, 0,
        // GUE: version 0, C 0, hlen; inner protocol; flags 0.
        hlen, inner, 0, 0,
        // GLB: private type, next hop 0, one hop.
        pt0, pt1, 0, 1,
    ];
    let at = L2 + outer_ip_len;
    ok = ok && write(ctx, at, udp_gue);
    let hop_at = at + UDP_GUE_LEN;
    ok = ok
        && if V6 {
            write(ctx, hop_at, t.secondary.addr)
        } else {
            match t.secondary.addr.first_chunk::<4>() {
                Some(a) => write(ctx, hop_at, *a),
                None => false,
            }
        };
    t.mac_fallback = mac_fallback;
    ok
}

/// `45 00 | total | 00 00 | 40 00 | 40 11 | checksum | src | dst`.
#[inline(always)]
fn ipv4_header(s: &DirectorSettings, primary: &BackendEntry, udp_len: usize) -> [u8; ipv4::HLEN] {
    let total = (ipv4::HLEN + udp_len) as u16;
    let [a0, a1, a2, a3] = s.src_v4;
    let [b0, b1, b2, b3] = primary.addr.first_chunk::<4>().copied().unwrap_or([0; 4]);
    let ver_ihl: u8 = 0x45;
    let ttl_proto = u16::from_be_bytes([OUTER_TTL, ipproto::UDP]);
    // Ones' complement sum of the header's 16-bit words, checksum field 0.
    let mut sum = u32::from(u16::from_be_bytes([ver_ihl, 0]))
        + u32::from(total)
        + u32::from(IPV4_DF)
        + u32::from(ttl_proto)
        + u32::from(u16::from_be_bytes([a0, a1]))
        + u32::from(u16::from_be_bytes([a2, a3]))
        + u32::from(u16::from_be_bytes([b0, b1]))
        + u32::from(u16::from_be_bytes([b2, b3]));
    sum = (sum & 0xffff) + (sum >> 16);
    sum = (sum & 0xffff) + (sum >> 16);
    let [c0, c1] = (!(sum as u16)).to_be_bytes();
    let [t0, t1] = total.to_be_bytes();
    let [f0, f1] = IPV4_DF.to_be_bytes();
    #[rustfmt::skip]
    let header = [
        ver_ihl, 0, t0, t1,
        0, 0, f0, f1,
        OUTER_TTL, ipproto::UDP, c0, c1,
        a0, a1, a2, a3,
        b0, b1, b2, b3,
    ];
    header
}

/// Length of the benchmark's constant outer header.
const BENCH_HEADER_LEN: usize = 54;
/// Bytes the benchmark adds in front of the frame.
const BENCH_GROW: usize = 40;

/// `bench_min_encap`: moves the head by 40 bytes and writes 54 constant
/// bytes (Ethernet, IPv4, UDP and 12 bytes of GUE-like data) at the new
/// head. `false` if there is no headroom.
#[inline(always)]
pub fn bench_min_encap(ctx: &XdpContext) -> bool {
    // SAFETY: as in `encapsulate`.
    if unsafe { bpf_xdp_adjust_head(ctx.ctx, -(BENCH_GROW as i32)) } != 0 {
        return false;
    }
    const HEADER: [u8; BENCH_HEADER_LEN] = [
        // Ethernet: locally administered MACs, IPv4.
        0x02, 0, 0, 0, 0, 0x02, 0x02, 0, 0, 0, 0, 0x01, 0x08, 0x00,
        // IPv4 192.0.2.1 -> 198.51.100.11, UDP (checksum left 0).
        0x45, 0, 0, 40, 0, 0, 0x40, 0, 64, 17, 0, 0, 192, 0, 2, 1, 198, 51, 100, 11,
        // UDP 32768 -> 19523, length 20, no checksum.
        0x80, 0, 0x4c, 0x43, 0, 20, 0, 0,
        // GUE-like: hlen 2, IPv4 inner, flags 0; GLB type 0, next 0, 1 hop;
        // one hop 198.51.100.12.
        2, 4, 0, 0, 0, 0, 0, 1, 198, 51, 100, 12,
    ];
    write(ctx, 0, HEADER)
}
