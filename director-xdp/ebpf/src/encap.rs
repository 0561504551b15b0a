//! Encapsulation in place: grow the frame at the head, then rewrite L2
//! and write the outer IP, UDP, GUE and GLB private data (or, for an
//! IP-in-IP table, the outer IP header alone) in front of the original IP
//! packet (docs/director.md, "Encapsulation").

use aya_ebpf::{bindings::xdp_md, helpers::generated::bpf_xdp_adjust_head, programs::XdpContext};
use proto::GUE_PORT;
use proto::maps::{
    BACKEND_MAC_RESOLVED, BackendEntry, DirectorSettings, FAMILY_V4, FAMILY_V6, ROW_CHAIN,
};
use proto::wire::{GLB_HEADER_LEN, GUE_HEADER_LEN, InnerProto, PrivateType, field};

use director_xdp_ebpf::packet::{
    View, WriteView, eth, frame_len, ipv4, ipv6, proto as ipproto, udp,
};

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

/// Where and how to send one packet, besides the map values that
/// [`director_encapsulate`] reads in place.
#[derive(Clone, Copy)]
pub struct Target {
    /// UDP source port of the GUE packet.
    pub source_port: u16,
    /// Whether the received frame has an 802.1Q tag.
    pub vlan: bool,
    /// Family of the original packet (GUE's inner protocol).
    pub inner_v6: bool,
}

impl Target {
    const VLAN: u64 = 1 << 16;
    const INNER_V6: u64 = 1 << 17;

    /// The argument word.
    #[inline(always)]
    pub fn pack(self) -> u64 {
        u64::from(self.source_port)
            | if self.vlan { Self::VLAN } else { 0 }
            | if self.inner_v6 { Self::INNER_V6 } else { 0 }
    }
}

/// [`director_encapsulate`]: not encapsulated, drop.
pub const FAILED: u32 = 0;
/// [`director_encapsulate`]: sent to the primary's MAC.
pub const SENT: u32 = 1;
/// [`director_encapsulate`]: sent to the gateway MAC (the primary's is not
/// resolved).
pub const SENT_MAC_FALLBACK: u32 = 2;

/// Most hops a row carries (`proto::maps::ROW_CHAIN` less the primary).
pub const MAX_HOPS: usize = ROW_CHAIN - 1;
const _: () = assert!(MAX_HOPS == 3);

/// Encapsulates the frame for a row whose primary is `primary` and whose
/// `hops` alternates `hop(0..hops)` gives, under `settings` (map values,
/// read in place) and `target` ([`Target::pack`]): [`SENT`] or
/// [`SENT_MAC_FALLBACK`] when done, [`FAILED`] when it cannot be
/// encapsulated (no outer source, no MAC, no headroom, a hop missing or of
/// another family), and then the frame is to be dropped. `hops` is 1 to
/// [`MAX_HOPS`]: the caller checks the table head's (the bytes written
/// stay inside the frame whatever it is, the header would not).
///
/// Inlined into its one caller, like the flow hash: a global BPF function
/// call cost about 13 ns a packet, for 7k fewer instructions verified.
///
/// One copy of the work per L2 length and family, so that every offset is
/// a constant (rule 6). The hop count stays a run-time value: a copy per hop
/// count as well (twelve in all, the program half as large again) measured
/// about 10 ns a packet slower in alternated runs. `hop` is called once per
/// hop, as it is written, so that the hops' entries are not held across
/// the header's writes.
#[inline(always)]
pub fn director_encapsulate<'a>(
    ctx: &XdpContext,
    s: &DirectorSettings,
    primary: &BackendEntry,
    hops: usize,
    hop: impl Fn(usize) -> Option<&'a BackendEntry>,
    target: u64,
) -> u32 {
    let row = Row {
        s,
        primary,
        hop,
        source_port: target as u16,
        inner_v6: target & Target::INNER_V6 != 0,
    };
    /// The new headers' length with `hops` hops: L2, outer IPv6 if `v6`
    /// else IPv4, UDP, GUE, GLB's fixed part and the hops.
    const fn w(l2: usize, v6: bool, hops: usize) -> usize {
        if v6 {
            l2 + ipv6::HLEN + UDP_GUE_LEN + 16 * hops
        } else {
            l2 + ipv4::HLEN + UDP_GUE_LEN + 4 * hops
        }
    }
    const E: usize = eth::HLEN;
    const T: usize = eth::VLAN_HLEN;
    match (target & Target::VLAN != 0, primary.family) {
        (false, FAMILY_V4) => {
            encapsulate_as::<E, false, { w(E, false, 1) }, { w(E, false, 2) }, { w(E, false, 3) }>(
                ctx, &row, hops,
            )
        }
        (false, FAMILY_V6) => {
            encapsulate_as::<E, true, { w(E, true, 1) }, { w(E, true, 2) }, { w(E, true, 3) }>(
                ctx, &row, hops,
            )
        }
        (true, FAMILY_V4) => {
            encapsulate_as::<T, false, { w(T, false, 1) }, { w(T, false, 2) }, { w(T, false, 3) }>(
                ctx, &row, hops,
            )
        }
        (true, FAMILY_V6) => {
            encapsulate_as::<T, true, { w(T, true, 1) }, { w(T, true, 2) }, { w(T, true, 3) }>(
                ctx, &row, hops,
            )
        }
        _ => {
            core::hint::cold_path();
            FAILED
        }
    }
}

/// The arguments of [`director_encapsulate`], unpacked.
struct Row<'s, F> {
    s: &'s DirectorSettings,
    primary: &'s BackendEntry,
    /// The row's alternates, by position.
    hop: F,
    source_port: u16,
    inner_v6: bool,
}

/// The first 8 bytes of `a`, as stored.
#[inline(always)]
fn word<const N: usize>(a: &[u8; N], i: usize) -> u64 {
    match a.get(i..i + 8) {
        // SAFETY: 8 bytes of `a` from `i`; unaligned read.
        Some(w) => unsafe { w.as_ptr().cast::<u64>().read_unaligned() },
        None => 0,
    }
}

/// The first 4 bytes of `a`, as stored.
#[inline(always)]
fn word32<const N: usize>(a: &[u8; N]) -> u32 {
    match a.first_chunk::<4>() {
        // SAFETY: 4 bytes of `a`; unaligned read.
        Some(w) => unsafe { w.as_ptr().cast::<u32>().read_unaligned() },
        None => 0,
    }
}

/// A MAC address as stored, in the low 48 bits: two loads (a 4-byte and a
/// 2-byte one; the object allows misaligned access), not six.
#[inline(always)]
fn mac_word(mac: &[u8; 6]) -> u64 {
    let p = mac.as_ptr();
    // SAFETY: bytes 0..4 and 4..6 of `mac`; unaligned reads.
    let (lo, hi) = unsafe {
        (
            p.cast::<u32>().read_unaligned(),
            p.add(4).cast::<u16>().read_unaligned(),
        )
    };
    u64::from(lo) | (u64::from(hi) << 32)
}

/// `v` in network order, as stored.
#[inline(always)]
const fn be16(v: u16) -> u64 {
    v.to_be() as u64
}

/// The Ethernet header and the outer IP header both encapsulations write
/// ([`put_outer`]), gathered before the frame moves. Whole words, built by
/// [`outer_ends`] and [`read_received_l2`] (rules 3 and 4).
struct Outer {
    /// The outer source address as the header takes it: IPv4 in the low 32
    /// bits of `src0`, IPv6 in both.
    src0: u64,
    src1: u64,
    /// The destination MAC, in the low 48 bits.
    dst_mac: u64,
    /// The received frame's destination MAC, the new source, low 48 bits.
    old_dst: u64,
    /// The received frame's VLAN tag (written only with an 18-byte L2).
    tag: u64,
    /// What follows the outer IP header, in bytes.
    payload_len: u64,
    /// The outer IP header's protocol (next header).
    protocol: u64,
}

impl Outer {
    const EMPTY: Outer = Outer {
        src0: 0,
        src1: 0,
        dst_mac: 0,
        old_dst: 0,
        tag: 0,
        payload_len: 0,
        protocol: 0,
    };
}

/// The source address (of the family `V6` names) and the destination MAC
/// (the primary's, else the gateway's) into `o`: [`SENT`], or
/// [`SENT_MAC_FALLBACK`] for the gateway's, or [`FAILED`] if the settings
/// have no such source or the MAC is unknown.
#[inline(always)]
fn outer_ends<const V6: bool>(s: &DirectorSettings, primary: &BackendEntry, o: &mut Outer) -> u32 {
    (o.src0, o.src1) = if V6 {
        (word(&s.src_v6, 0), word(&s.src_v6, 8))
    } else {
        (u64::from(word32(&s.src_v4)), 0)
    };
    if o.src0 == 0 && o.src1 == 0 {
        core::hint::cold_path();
        return FAILED;
    }
    let result;
    (o.dst_mac, result) = if primary.flags & BACKEND_MAC_RESOLVED != 0 {
        (mac_word(&primary.mac), SENT)
    } else {
        (mac_word(&s.gateway_mac), SENT_MAC_FALLBACK)
    };
    if o.dst_mac == 0 {
        core::hint::cold_path();
        return FAILED;
    }
    result
}

/// The received frame's destination MAC, which becomes the source, and its
/// VLAN tag, which stays, into `o`: read before the head moves. 18 bytes
/// are there even without a tag (an IP header follows the 14), so one read
/// serves both lengths; without a tag, `tag` is the EtherType and 2 bytes
/// of IP header, and unused. `false` if the frame is shorter.
#[inline(always)]
fn read_received_l2(ctx: &XdpContext, o: &mut Outer) -> bool {
    let Some(old) = View::<{ eth::VLAN_HLEN }>::at(ctx, 0) else {
        core::hint::cold_path();
        return false;
    };
    o.old_dst = old.u64_raw::<{ eth::DST }>() & 0xffff_ffff_ffff;
    o.tag = u64::from(old.u32_raw::<{ eth::VLAN_TAG }>());
    true
}

/// Writes `o`'s Ethernet header (`L2` bytes: 18 keeps the VLAN tag) and
/// outer IPv6 (`V6`) or IPv4 header to `primary` at the head of `w`, after
/// the frame grew: DF, TTL / hop limit 64, the IPv4 checksum.
#[inline(always)]
fn put_outer<const L2: usize, const V6: bool, const W: usize>(
    w: WriteView<W>,
    o: &Outer,
    primary: &BackendEntry,
) -> bool {
    let ethertype = if V6 { eth::P_IPV6 } else { eth::P_IPV4 };
    let payload_len = o.payload_len as u16;
    let mut ok = true;
    // Destination MAC, then the old destination MAC as the source.
    ok &= w.put::<u64>(0, o.dst_mac | (o.old_dst << 48));
    ok &= w.put::<u32>(8, (o.old_dst >> 16) as u32);
    if L2 == eth::VLAN_HLEN {
        ok &= w.put::<u32>(eth::VLAN_TAG, o.tag as u32);
    }
    ok &= w.put::<u16>(L2 - 2, ethertype.to_be());
    if V6 {
        // Version 6, traffic class and flow label 0; payload length, next
        // header, hop limit.
        ok &= w.put::<u64>(
            L2,
            0x60 | (be16(payload_len) << 32) | (o.protocol << 48) | (u64::from(OUTER_TTL) << 56),
        );
        ok &= w.put::<u64>(L2 + ipv6::SRC, o.src0);
        ok &= w.put::<u64>(L2 + ipv6::SRC + 8, o.src1);
        ok &= w.put::<u64>(L2 + ipv6::DST, word(&primary.addr, 0));
        ok &= w.put::<u64>(L2 + ipv6::DST + 8, word(&primary.addr, 8));
    } else {
        // `45 00 | total | 00 00 | 40 00 | 40 proto | checksum | src | dst`,
        // as three words and the addresses. The ones' complement sum is
        // the same in either byte order, so it is taken over the words as
        // stored and stored as it comes out.
        let total = ipv4::HLEN as u16 + payload_len;
        let w0 = 0x45 | (be16(total) << 16);
        let w1 = be16(IPV4_DF) << 16;
        let w2 = u64::from(OUTER_TTL) | (o.protocol << 8);
        let dst = u64::from(word32(&primary.addr));
        let mut sum = w0 + w1 + w2 + o.src0 + dst;
        sum = (sum & 0xffff) + (sum >> 16);
        sum = (sum & 0xffff) + (sum >> 16);
        sum = (sum & 0xffff) + (sum >> 16);
        let checksum = !(sum as u16);
        ok &= w.put::<u64>(L2, w0 | (w1 << 32));
        ok &= w.put::<u32>(L2 + 8, (w2 | (u64::from(checksum) << 16)) as u32);
        ok &= w.put::<u64>(L2 + ipv4::SRC, o.src0 | (dst << 32));
    }
    ok
}

/// [`director_encapsulate`] for an `L2`-byte Ethernet header and an outer
/// header (and hops) of IPv6 if `V6`, else IPv4; `W`, `W2` and `W3` are
/// the lengths of the new headers with one, two and three hops. They are
/// written as words at constant offsets after one bounds check, and each
/// hop after the first after a check of its own.
#[inline(always)]
fn encapsulate_as<
    'a,
    const L2: usize,
    const V6: bool,
    const W: usize,
    const W2: usize,
    const W3: usize,
>(
    ctx: &XdpContext,
    t: &Row<'_, impl Fn(usize) -> Option<&'a BackendEntry>>,
    hops: usize,
) -> u32 {
    let mut outer = Outer::EMPTY;
    let result = outer_ends::<V6>(t.s, t.primary, &mut outer);
    if result == FAILED {
        return FAILED;
    }

    let (private_type, hop_len, outer_ip_len) = if V6 {
        (PrivateType::Ipv6Hops, 16, ipv6::HLEN)
    } else {
        (PrivateType::Ipv4Hops, 4, ipv4::HLEN)
    };
    const { assert!(PrivateType::Ipv6Hops.hop_len() == 16) };
    const { assert!(PrivateType::Ipv4Hops.hop_len() == 4) };
    let hops_len = hops * hop_len;
    let private_len = GLB_HEADER_LEN - GUE_HEADER_LEN + hops_len;
    let grow = outer_ip_len + UDP_GUE_LEN + hops_len;
    const { assert!(W == L2 + if V6 { ipv6::HLEN + 16 } else { ipv4::HLEN + 4 } + UDP_GUE_LEN) };
    const { assert!(W2 == W + if V6 { 16 } else { 4 }) };
    const { assert!(W3 == W2 + if V6 { 16 } else { 4 }) };

    if !read_received_l2(ctx, &mut outer) {
        return FAILED;
    }
    // L: the original IP packet and any bytes after it.
    let inner_len = frame_len(ctx) - L2;
    let udp_len = (UDP_GUE_LEN + hops_len + inner_len) as u16;
    outer.payload_len = u64::from(udp_len);
    outer.protocol = u64::from(ipproto::UDP);

    // SAFETY: the helper only moves `data` within the frame's headroom; it
    // fails (non-zero) when there is not enough.
    if unsafe { bpf_xdp_adjust_head(ctx.ctx, -(grow as i32)) } != 0 {
        core::hint::cold_path();
        return FAILED;
    }

    // Every packet pointer is derived again after the move (rule 8). The
    // new headers: one window.
    let Some(w) = WriteView::<W>::at(ctx, 0) else {
        core::hint::cold_path();
        return FAILED;
    };
    let mut ok = put_outer::<L2, V6, W>(w, &outer, t.primary);

    let inner = if t.inner_v6 {
        u8::from(InnerProto::Ipv6)
    } else {
        u8::from(InnerProto::Ipv4)
    };
    let hlen = (private_len / proto::wire::HLEN_UNIT) as u8;
    // UDP: source port, destination port, length, checksum 0 (none).
    let at = L2 + outer_ip_len;
    ok &= w.put::<u64>(
        at,
        be16(t.source_port) | (be16(GUE_PORT) << 16) | (be16(udp_len) << 32),
    );
    // GUE: version 0, C 0, hlen; inner protocol; flags 0. GLB: private
    // type, next hop 0, hop count.
    ok &= w.put::<u64>(
        at + udp::HLEN,
        u64::from(hlen)
            | (u64::from(inner) << 8)
            | (be16(u16::from(private_type)) << 32)
            | ((hops as u64) << 56),
    );
    // All backends of a table share one family (the loader refuses
    // others), so the hops' is the outer header's; a row that mixes them
    // did not come from the loader.
    let family = t.primary.family;
    let hop = |i: usize| match (t.hop)(i) {
        Some(e) if e.family == family => Some(e),
        _ => {
            core::hint::cold_path();
            None
        }
    };
    // The first hop in the window of the fixed headers; each further one
    // (the frame grew by it too) in a window of its own.
    match hop(0) {
        Some(e) => ok &= put_hop::<V6, W>(w, W - hop_len, e),
        None => return FAILED,
    }
    if hops > 1 {
        match (hop(1), WriteView::<W2>::at(ctx, 0)) {
            (Some(e), Some(w)) => ok &= put_hop::<V6, W2>(w, W, e),
            _ => return FAILED,
        }
    }
    if hops > 2 {
        match (hop(2), WriteView::<W3>::at(ctx, 0)) {
            (Some(e), Some(w)) => ok &= put_hop::<V6, W3>(w, W2, e),
            _ => return FAILED,
        }
    }
    if ok { result } else { FAILED }
}

/// The argument word of [`director_ipip`]: the primary's backend index
/// and `target` ([`Target::pack`]; its source port is unused).
#[inline(always)]
pub fn ipip_args(backend: u32, target: u64) -> u64 {
    (u64::from(backend) << 32) | (target & 0xffff_ffff)
}

/// Encapsulates the frame in plain IP-in-IP to the primary and target of
/// `args` ([`ipip_args`]): the outer IPv4 or IPv6 header of the primary's
/// family, protocol (next header) 4 for an IPv4 original packet and 41 for
/// IPv6, its other fields as GUE's outer header. [`SENT`],
/// [`SENT_MAC_FALLBACK`] or [`FAILED`] as [`director_encapsulate`].
///
/// A global BPF function (rule 5), like `director_too_big`: inlined into every
/// parse path it made the hot code a third larger, and LLVM then moved the
/// whole packet path out of the program into a BPF-to-BPF call, which GUE
/// packets would pay for. Out of line, the verifier checks it once and
/// GUE packets pass its call site only; an IP-in-IP packet pays the call
/// and the two array lookups here (the settings, its primary).
#[unsafe(no_mangle)]
#[inline(never)]
pub extern "C" fn director_ipip(ctx: *mut xdp_md, args: u64) -> u32 {
    let (Some(s), Some(primary)) = (
        crate::DIR_SETTINGS.get(0),
        crate::DIR_BACKENDS.get((args >> 32) as u32),
    ) else {
        return FAILED;
    };
    let ctx = XdpContext::new(ctx);
    let ctx = &ctx;
    let target = args;
    let inner_v6 = target & Target::INNER_V6 != 0;
    const E: usize = eth::HLEN;
    const T: usize = eth::VLAN_HLEN;
    match (target & Target::VLAN != 0, primary.family) {
        (false, FAMILY_V4) => ipip_as::<E, false, { E + ipv4::HLEN }>(ctx, s, primary, inner_v6),
        (false, FAMILY_V6) => ipip_as::<E, true, { E + ipv6::HLEN }>(ctx, s, primary, inner_v6),
        (true, FAMILY_V4) => ipip_as::<T, false, { T + ipv4::HLEN }>(ctx, s, primary, inner_v6),
        (true, FAMILY_V6) => ipip_as::<T, true, { T + ipv6::HLEN }>(ctx, s, primary, inner_v6),
        _ => {
            core::hint::cold_path();
            FAILED
        }
    }
}

/// [`director_ipip`] for an `L2`-byte Ethernet header and an outer IPv6
/// header if `V6`, else IPv4; `W` is the new headers' length, written as
/// words at constant offsets after one bounds check.
#[inline(always)]
fn ipip_as<const L2: usize, const V6: bool, const W: usize>(
    ctx: &XdpContext,
    s: &DirectorSettings,
    primary: &BackendEntry,
    inner_v6: bool,
) -> u32 {
    let mut outer = Outer::EMPTY;
    let result = outer_ends::<V6>(s, primary, &mut outer);
    if result == FAILED {
        return FAILED;
    }
    let outer_ip_len = if V6 { ipv6::HLEN } else { ipv4::HLEN };
    const { assert!(W == L2 + if V6 { ipv6::HLEN } else { ipv4::HLEN }) };
    let protocol = if inner_v6 {
        u8::from(InnerProto::Ipv6)
    } else {
        u8::from(InnerProto::Ipv4)
    };
    if !read_received_l2(ctx, &mut outer) {
        return FAILED;
    }
    // L: the original IP packet and any bytes after it.
    outer.payload_len = (frame_len(ctx) - L2) as u16 as u64;
    outer.protocol = u64::from(protocol);

    // SAFETY: as in `encapsulate_as`.
    if unsafe { bpf_xdp_adjust_head(ctx.ctx, -(outer_ip_len as i32)) } != 0 {
        core::hint::cold_path();
        return FAILED;
    }
    let Some(w) = WriteView::<W>::at(ctx, 0) else {
        core::hint::cold_path();
        return FAILED;
    };
    if put_outer::<L2, V6, W>(w, &outer, primary) {
        result
    } else {
        FAILED
    }
}

/// Writes `hop`'s address (16 bytes if `V6`, else 4) at `at` of `w`.
#[inline(always)]
fn put_hop<const V6: bool, const N: usize>(w: WriteView<N>, at: usize, hop: &BackendEntry) -> bool {
    if V6 {
        w.put::<u64>(at, word(&hop.addr, 0)) & w.put::<u64>(at + 8, word(&hop.addr, 8))
    } else {
        w.put::<u32>(at, word32(&hop.addr))
    }
}
