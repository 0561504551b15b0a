//! The backend-side redirect module (docs/spec.md section 3, docs/backend.md):
//! GUE from an allowed source (a director, or another backend passing a
//! second-chance packet on) is either accepted (outer headers stripped,
//! the inner packet handed to the local stack) or forwarded to the next hop
//! of its hop list (second chance). Plain IP-in-IP from an allowed source
//! (an `ipip` table's packet: no hop list) is always accepted.
//!
//! Only untagged Ethernet with an outer IPv4 header without options and not
//! fragmented, or an outer IPv6 header followed directly by UDP (or by the
//! inner IPv4 or IPv6 header), is looked at; anything else passes
//! untouched. The kernel has no GUE receiver on backends (no FOU), so GUE
//! it gets is never decapsulated by it; IP-in-IP from a source not
//! allowed passes untouched too, to whatever tunnel the host has.
//!
//! Its own object, apart from the director's: it is built without
//! `+allows-misaligned-mem-access` (rule 4 of the crate's `lib.rs`, which
//! holds the rules the code keeps for the verifier and LLVM, cited here by
//! number).
#![no_std]
#![no_main]

use core::ffi::c_void;
use core::mem::MaybeUninit;

use aya_ebpf::{
    bindings::{
        BPF_F_CURRENT_NETNS, BPF_TCP_LISTEN, bpf_fib_lookup, bpf_sock_tuple,
        bpf_sock_tuple__bindgen_ty_1, bpf_sock_tuple__bindgen_ty_1__bindgen_ty_1 as SockTupleV4,
        bpf_sock_tuple__bindgen_ty_1__bindgen_ty_2 as SockTupleV6,
    },
    helpers::generated::{
        bpf_fib_lookup as fib_lookup, bpf_redirect, bpf_sk_release, bpf_skc_lookup_tcp,
        bpf_tcp_check_syncookie, bpf_xdp_adjust_head,
    },
    macros::{map, xdp},
    maps::{Array, HashMap, LpmTrie, PerCpuArray, lpm_trie::Key},
    programs::XdpContext,
};
use proto::GUE_PORT;
use proto::maps::{
    AllowKey, FAMILY_V4, FAMILY_V6, LPM_LOOKUP_PREFIX_LEN, MAX_ALLOWED, MAX_SELF, REDIRECT_NETNS,
    RedirectSettings, RedirectStat,
};
use proto::wire::{GLB_HEADER_LEN, GUE_HEADER_LEN, HLEN_UNIT, field};

use director_xdp_ebpf::packet::{
    View, WriteView, eth, frame_len, icmp, ipv4, ipv6, proto as ipproto, ptr_at, tcp, udp, write,
};

/// Source prefixes GUE is accepted from: directors and other backends.
#[map]
static RDR_ALLOW: LpmTrie<AllowKey, u8> = LpmTrie::with_max_entries(MAX_ALLOWED, 0);
/// This host's addresses ("the next hop is this host").
#[map]
static RDR_SELF: HashMap<AllowKey, u8> = HashMap::with_max_entries(MAX_SELF, 0);
/// The one entry of settings.
#[map]
static RDR_SETTINGS: Array<RedirectSettings> = Array::with_max_entries(1, 0);
/// Counters, indexed by `RedirectStat`.
#[map]
static RDR_STATS: PerCpuArray<u64> = PerCpuArray::with_max_entries(RedirectStat::COUNT as u32, 0);

/// What happens to a frame. Fieldless, as on the director's path.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Outcome {
    /// Not GUE: `XDP_PASS`, untouched, not counted.
    NotGue,
    NotAllowed,
    Invalid,
    AcceptSyn,
    AcceptEstablished,
    AcceptCookie,
    AcceptLastResort,
    AcceptSelf,
    AcceptOther,
    /// Judged "forward"; [`forward_to_next_hop`] does it.
    Forward,
}

/// The TCP flags the decision reads.
const TCP_FLAGS: usize = 13;
const TCP_SYN: u8 = 0x02;
const TCP_RST: u8 = 0x04;
const TCP_ACK: u8 = 0x10;
/// TTL / hop limit of a forwarded packet's outer header, as the director's.
const OUTER_TTL: u8 = 64;
const AF_INET: u8 = 2;
const AF_INET6: u8 = 10;

/// The redirect module.
#[xdp]
pub fn redirect(ctx: XdpContext) -> u32 {
    use aya_ebpf::bindings::xdp_action::{XDP_DROP, XDP_PASS};
    let Some(e) = View::<{ eth::HLEN }>::at(&ctx, 0) else {
        return XDP_PASS;
    };
    let ethertype = e.be16::<{ eth::TYPE }>();
    let ipip = match ethertype {
        eth::P_IPV4 => classify_ipip::<false>(&ctx),
        eth::P_IPV6 => classify_ipip::<true>(&ctx),
        _ => NOT_IPIP,
    };
    if ipip != NOT_IPIP {
        return accept_ipip(&ctx, ipip, ethertype == eth::P_IPV6);
    }
    let parsed = match ethertype {
        eth::P_IPV4 => parse_gue::<false>(&ctx),
        eth::P_IPV6 => parse_gue::<true>(&ctx),
        _ => Err(Outcome::NotGue),
    };
    if let Err(Outcome::NotGue) = parsed {
        return XDP_PASS;
    }
    count(RedirectStat::Total);
    let g = match parsed {
        Ok(g) => g,
        Err(outcome) => return count_dropped(outcome),
    };
    let outcome = if g.inner_v6 != 0 {
        decide_on_inner::<true>(&ctx, &g)
    } else {
        decide_on_inner::<false>(&ctx, &g)
    };
    let stat = match outcome {
        Outcome::NotAllowed | Outcome::Invalid | Outcome::NotGue => return count_dropped(outcome),
        Outcome::Forward => {
            let action = forward_to_next_hop(&ctx, &g);
            if action == XDP_DROP {
                count(RedirectStat::ForwardFailed);
            } else {
                count(RedirectStat::ForwardedToAlternate);
            }
            return action;
        }
        Outcome::AcceptSyn => RedirectStat::AcceptedSyn,
        Outcome::AcceptEstablished => RedirectStat::AcceptedEstablished,
        Outcome::AcceptCookie => RedirectStat::AcceptedSynCookie,
        Outcome::AcceptLastResort => RedirectStat::AcceptedLastResort,
        Outcome::AcceptSelf => RedirectStat::ForwardedToSelf,
        Outcome::AcceptOther => RedirectStat::AcceptedOther,
    };
    if !strip_outer_headers(&ctx, g.inner, g.inner_v6 != 0) {
        // Only a failing head adjustment gets here, which the offsets
        // checked above rule out.
        count(RedirectStat::DroppedInvalid);
        return XDP_DROP;
    }
    count(stat);
    XDP_PASS
}

/// Counts a GUE packet dropped with `outcome` (`Total` is counted).
#[inline(always)]
fn count_dropped(outcome: Outcome) -> u32 {
    count(if outcome == Outcome::NotAllowed {
        RedirectStat::DroppedNotAllowed
    } else {
        RedirectStat::DroppedInvalid
    });
    aya_ebpf::bindings::xdp_action::XDP_DROP
}

#[inline(always)]
fn count(stat: RedirectStat) {
    if let Some(c) = RDR_STATS.get_ptr_mut(stat.index()) {
        // SAFETY: a live per-CPU value of this CPU.
        unsafe { *c += 1 };
    }
}

/// One GUE packet as parsed: offsets into the frame, and what forwarding
/// needs.
///
/// Whole words, built with their values rather than zeroed first, as every
/// struct this program keeps on the stack (rule 3): no `bool`, byte or
/// byte-array fields; addresses are the `u32` words of their bytes as in
/// the packet, IPv4 in the first. Aligned to 8, no padding (rule 4).
#[repr(C, align(8))]
pub struct Gue {
    /// Offset of the GUE header.
    gue: u32,
    /// Offset of the inner IP header.
    inner: u32,
    /// Offset of the hop list.
    hops: u32,
    next_hop: u32,
    hop_count: u32,
    /// 1 for an outer IPv6 header.
    outer_v6: u32,
    /// 1 for an inner IPv6 header.
    inner_v6: u32,
    _pad: u32,
}

const _: () = assert!(size_of::<Gue>() == 8 * 4);

/// An [`AllowKey`] in words (rule 3): the family, then its zero pad
/// (little-endian), and the address.
#[repr(C)]
struct AddrKey {
    family: u32,
    addr: [u32; 4],
}

const _: () = assert!(size_of::<AddrKey>() == size_of::<AllowKey>());

impl AddrKey {
    #[inline(always)]
    fn as_allow_key(&self) -> &AllowKey {
        // SAFETY: the same 20 initialised bytes, laid out as `AllowKey`
        // (family, pad, address); `AllowKey` has alignment 1.
        unsafe { &*(self as *const AddrKey).cast::<AllowKey>() }
    }
}

/// A key of `RDR_ALLOW` as the LPM trie wants it (prefix length, then
/// [`AllowKey`]), in words (rule 3).
#[repr(C, align(8))]
struct AllowLookup {
    prefix_len: u32,
    key: AddrKey,
}

const _: () = assert!(size_of::<AllowLookup>() == size_of::<Key<AllowKey>>());

impl AllowLookup {
    #[inline(always)]
    fn as_lpm_key(&self) -> &Key<AllowKey> {
        // SAFETY: as in `AddrKey::as_allow_key`: `Key<AllowKey>` is the
        // prefix length then the key, packed (alignment 1).
        unsafe { &*(self as *const AllowLookup).cast::<Key<AllowKey>>() }
    }
}

/// The 16-byte address at `$at` in the view `$v`, as words (rule 3).
macro_rules! addr_words {
    ($v:expr, $at:expr) => {{
        let v = $v;
        [
            v.u32_raw::<{ $at }>(),
            v.u32_raw::<{ $at + 4 }>(),
            v.u32_raw::<{ $at + 8 }>(),
            v.u32_raw::<{ $at + 12 }>(),
        ]
    }};
}

/// Writes the address `a` (words, rule 3) at `offset`.
#[inline(always)]
fn write_addr(ctx: &XdpContext, offset: usize, a: [u32; 4]) -> bool {
    let [a0, a1, a2, a3] = a;
    WriteView::<16>::at(ctx, offset)
        .is_some_and(|w| w.put(0, a0) && w.put(4, a1) && w.put(8, a2) && w.put(12, a3))
}

/// The address of the next hop in the hop list of `g`, if in the frame.
#[inline(always)]
fn next_hop_addr(ctx: &XdpContext, g: &Gue) -> Option<[u32; 4]> {
    let at = g.hops as usize;
    let n = g.next_hop as usize;
    if g.outer_v6 != 0 {
        let h = View::<16>::at(ctx, at + n * 16)?;
        Some(addr_words!(h, 0))
    } else {
        let h = View::<4>::at(ctx, at + n * 4)?;
        Some([h.u32_raw::<0>(), 0, 0, 0])
    }
}

/// [`classify_ipip`]: not IP-in-IP; the GUE checks follow.
const NOT_IPIP: u32 = 0;
/// [`classify_ipip`]: IP-in-IP from a source not allowed: passed untouched.
const IPIP_NOT_ALLOWED: u32 = 1;
/// [`classify_ipip`]: IP-in-IP from an allowed source whose inner header is
/// truncated or not of the family the outer header announces: dropped.
const IPIP_INVALID: u32 = 2;
/// [`classify_ipip`]: IP-in-IP from an allowed source carrying IPv4.
const IPIP_INNER_V4: u32 = 3;
/// [`classify_ipip`]: IP-in-IP from an allowed source carrying IPv6.
const IPIP_INNER_V6: u32 = 4;

/// Whether the frame is plain IP-in-IP (an outer IPv4 header without
/// options or fragmentation, or an outer IPv6 header, directly followed by
/// IPv4 or IPv6: protocol 4 or 41) and what becomes of it: one of the
/// `NOT_IPIP`, `IPIP_*` codes (a code rather than an enum with data, as
/// everywhere on the packet path).
#[inline(always)]
fn classify_ipip<const V6: bool>(ctx: &XdpContext) -> u32 {
    const L3: usize = eth::HLEN;
    let protocol = if V6 {
        match View::<{ ipv6::HLEN }>::at(ctx, L3) {
            Some(h) => h.u8::<{ ipv6::NEXT_HEADER }>(),
            None => return NOT_IPIP,
        }
    } else {
        let Some(h) = View::<{ ipv4::HLEN }>::at(ctx, L3) else {
            return NOT_IPIP;
        };
        if h.u8::<{ ipv4::VER_IHL }>() != 0x45
            || h.be16::<{ ipv4::FRAG }>() & (ipv4::MF | ipv4::OFFSET_MASK) != 0
        {
            return NOT_IPIP;
        }
        h.u8::<{ ipv4::PROTO }>()
    };
    let inner_v6 = match protocol {
        IPPROTO_IPIP => false,
        IPPROTO_IPV6 => true,
        _ => return NOT_IPIP,
    };
    let src = if V6 {
        let Some(a) = View::<16>::at(ctx, L3 + ipv6::SRC) else {
            return NOT_IPIP;
        };
        addr_words!(a, 0)
    } else {
        let Some(a) = View::<4>::at(ctx, L3 + ipv4::SRC) else {
            return NOT_IPIP;
        };
        [a.u32_raw::<0>(), 0, 0, 0]
    };
    let allow = AllowLookup {
        prefix_len: LPM_LOOKUP_PREFIX_LEN,
        key: AddrKey {
            family: u32::from(if V6 { FAMILY_V6 } else { FAMILY_V4 }),
            addr: src,
        },
    };
    if RDR_ALLOW.get(allow.as_lpm_key()).is_none() {
        return IPIP_NOT_ALLOWED;
    }
    let inner = L3 + if V6 { ipv6::HLEN } else { ipv4::HLEN };
    // The inner header whole, and of the announced version.
    let version = if inner_v6 {
        View::<{ ipv6::HLEN }>::at(ctx, inner).map(|h| h.u8::<0>() >> 4)
    } else {
        View::<{ ipv4::HLEN }>::at(ctx, inner).map(|h| h.u8::<0>() >> 4)
    };
    match (version, inner_v6) {
        (Some(6), true) => IPIP_INNER_V6,
        (Some(4), false) => IPIP_INNER_V4,
        _ => IPIP_INVALID,
    }
}

/// IP protocol numbers of IP-in-IP: IPv4 in IP, IPv6 in IP.
const IPPROTO_IPIP: u8 = 4;
const IPPROTO_IPV6: u8 = 41;

/// Acts on an [`classify_ipip`] code other than [`NOT_IPIP`]: strips the outer
/// header (IPv6 if `outer_v6`) and passes the inner packet up, counted
/// `accepted_ipip`; never forwards (there is no hop list).
#[inline(always)]
fn accept_ipip(ctx: &XdpContext, code: u32, outer_v6: bool) -> u32 {
    use aya_ebpf::bindings::xdp_action::{XDP_DROP, XDP_PASS};
    if code == IPIP_NOT_ALLOWED {
        return XDP_PASS;
    }
    count(RedirectStat::Total);
    if code == IPIP_INVALID {
        return count_dropped(Outcome::Invalid);
    }
    let inner = eth::HLEN + if outer_v6 { ipv6::HLEN } else { ipv4::HLEN };
    if !strip_outer_headers(ctx, inner as u32, code == IPIP_INNER_V6) {
        count(RedirectStat::DroppedInvalid);
        return XDP_DROP;
    }
    count(RedirectStat::AcceptedIpip);
    XDP_PASS
}

/// Outer IP, UDP, allow list and GUE validation: the packet, or the
/// outcome when it is not an acceptable GUE packet.
#[inline(always)]
fn parse_gue<const V6: bool>(ctx: &XdpContext) -> Result<Gue, Outcome> {
    const L3: usize = eth::HLEN;
    let (ip_len, src_off, family) = if V6 {
        (ipv6::HLEN, L3 + ipv6::SRC, FAMILY_V6)
    } else {
        (ipv4::HLEN, L3 + ipv4::SRC, FAMILY_V4)
    };
    if V6 {
        let Some(h) = View::<{ ipv6::HLEN }>::at(ctx, L3) else {
            return Err(Outcome::NotGue);
        };
        if h.u8::<{ ipv6::NEXT_HEADER }>() != ipproto::UDP {
            return Err(Outcome::NotGue);
        }
    } else {
        let Some(h) = View::<{ ipv4::HLEN }>::at(ctx, L3) else {
            return Err(Outcome::NotGue);
        };
        // Options or fragments: not GUE as far as this module goes (the
        // director sends neither).
        if h.u8::<{ ipv4::VER_IHL }>() != 0x45
            || h.u8::<{ ipv4::PROTO }>() != ipproto::UDP
            || h.be16::<{ ipv4::FRAG }>() & (ipv4::MF | ipv4::OFFSET_MASK) != 0
        {
            return Err(Outcome::NotGue);
        }
    }
    let udp_off = L3 + ip_len;
    let Some(u) = View::<{ udp::HLEN }>::at(ctx, udp_off) else {
        return Err(Outcome::NotGue);
    };
    if u.be16::<{ udp::DPORT }>() != GUE_PORT {
        return Err(Outcome::NotGue);
    }

    let src = if V6 {
        let Some(a) = View::<16>::at(ctx, src_off) else {
            return Err(Outcome::Invalid);
        };
        addr_words!(a, 0)
    } else {
        let Some(a) = View::<4>::at(ctx, src_off) else {
            return Err(Outcome::Invalid);
        };
        [a.u32_raw::<0>(), 0, 0, 0]
    };
    let allow = AllowLookup {
        prefix_len: LPM_LOOKUP_PREFIX_LEN,
        key: AddrKey {
            family: u32::from(family),
            addr: src,
        },
    };
    if RDR_ALLOW.get(allow.as_lpm_key()).is_none() {
        return Err(Outcome::NotAllowed);
    }

    // GUE and the fixed GLB private data (proto::wire::GueRepr::parse).
    let gue_off = udp_off + udp::HLEN;
    let Some(h) = View::<{ GLB_HEADER_LEN }>::at(ctx, gue_off) else {
        return Err(Outcome::Invalid);
    };
    let b0 = h.u8::<{ field::VER_C_HLEN }>();
    let inner_proto = h.u8::<{ field::INNER_PROTO }>();
    let hlen = usize::from(b0 & field::HLEN_MASK);
    let private_type = h.be16::<{ field::PRIVATE_TYPE.start }>();
    let hop_count = h.u8::<{ field::HOP_COUNT }>();
    if b0 & (field::VERSION_MASK | field::C_BIT) != 0 || h.be16::<{ field::FLAGS.start }>() != 0 {
        return Err(Outcome::Invalid);
    }
    let inner_v6 = match inner_proto {
        4 => false,
        41 => true,
        _ => return Err(Outcome::Invalid),
    };
    // hlen counts the 4 fixed bytes and the hops, in 32-bit words.
    let hop_words = match private_type {
        0 => 1,
        1 => 4,
        _ => return Err(Outcome::Invalid),
    };
    if hlen != 1 + usize::from(hop_count) * hop_words {
        return Err(Outcome::Invalid);
    }
    // The hops of one packet share the outer family (docs/spec.md section 4);
    // a hop list of the other family has nowhere to go from here.
    if (private_type == 1) != V6 {
        return Err(Outcome::Invalid);
    }
    Ok(Gue {
        gue: gue_off as u32,
        inner: (gue_off + GUE_HEADER_LEN + hlen * HLEN_UNIT) as u32,
        hops: (gue_off + GLB_HEADER_LEN) as u32,
        next_hop: u32::from(h.u8::<{ field::NEXT_HOP }>()),
        hop_count: u32::from(hop_count),
        outer_v6: u32::from(V6),
        inner_v6: u32::from(inner_v6),
        _pad: 0,
    })
}

/// The inner packet: TCP and ICMP errors quoting TCP get the second-chance
/// decision, the rest is accepted.
#[inline(always)]
fn decide_on_inner<const V6: bool>(ctx: &XdpContext, g: &Gue) -> Outcome {
    let inner = g.inner as usize;
    let (proto, l4) = if V6 {
        let Some(h) = View::<{ ipv6::HLEN }>::at(ctx, inner) else {
            return Outcome::Invalid;
        };
        if h.u8::<0>() >> 4 != 6 {
            return Outcome::Invalid;
        }
        (h.u8::<{ ipv6::NEXT_HEADER }>(), inner + ipv6::HLEN)
    } else {
        let Some(h) = View::<{ ipv4::HLEN }>::at(ctx, inner) else {
            return Outcome::Invalid;
        };
        let ver_ihl = h.u8::<{ ipv4::VER_IHL }>();
        let hl = usize::from(ver_ihl & 0x0f) * 4;
        if ver_ihl >> 4 != 4 || hl < ipv4::HLEN || inner + hl > frame_len(ctx) {
            return Outcome::Invalid;
        }
        if h.be16::<{ ipv4::FRAG }>() & ipv4::OFFSET_MASK != 0 {
            // A later fragment: no L4 header to judge by.
            return Outcome::AcceptOther;
        }
        (h.u8::<{ ipv4::PROTO }>(), inner + hl)
    };

    // The query gives the addresses' offsets: `find_local_socket` reads
    // them straight into the socket tuple. Read here, their words stayed
    // in registers until the query was built, spilled to the stack, and
    // this program's stack grew past the 512 bytes it may take.
    let (src, dst) = if V6 {
        (ipv6::SRC, ipv6::DST)
    } else {
        (ipv4::SRC, ipv4::DST)
    };
    let icmp_proto = if V6 { ipproto::ICMPV6 } else { ipproto::ICMP };
    let q = if proto == ipproto::TCP {
        let Some(t) = View::<{ tcp::HLEN }>::at(ctx, l4) else {
            return Outcome::Invalid;
        };
        let flags = t.u8::<TCP_FLAGS>();
        if flags & TCP_SYN != 0 && flags & TCP_ACK == 0 {
            return Outcome::AcceptSyn;
        }
        let doff = usize::from(t.u8::<{ tcp::DOFF }>() >> 4) * 4;
        let cookie = flags & (TCP_SYN | TCP_RST) == 0
            && flags & TCP_ACK != 0
            && doff >= tcp::HLEN
            && l4 + doff <= frame_len(ctx);
        SockQuery {
            src: (inner + src) as u32,
            dst: (inner + dst) as u32,
            sport: t.be16::<{ tcp::SPORT }>(),
            dport: t.be16::<{ tcp::DPORT }>(),
            v6: u32::from(V6),
            cookie: u32::from(cookie),
            ip: g.inner,
            tcp: if cookie { l4 as u32 } else { 0 },
            _pad: 0,
        }
    } else if proto == icmp_proto {
        let Some(i) = View::<{ icmp::HLEN }>::at(ctx, l4) else {
            return Outcome::AcceptOther;
        };
        let (ty, code) = (i.u8::<{ icmp::TYPE }>(), i.u8::<{ icmp::CODE }>());
        let quoted = l4 + icmp::HLEN;
        let ports = if V6 && ty == icmp::V6_PACKET_TOO_BIG {
            let Some(h) = View::<{ ipv6::HLEN }>::at(ctx, quoted) else {
                return Outcome::AcceptOther;
            };
            let Some(p) = View::<4>::at(ctx, quoted + ipv6::HLEN) else {
                return Outcome::AcceptOther;
            };
            if h.u8::<{ ipv6::NEXT_HEADER }>() != ipproto::TCP {
                return Outcome::AcceptOther;
            }
            p
        } else if !V6 && ty == icmp::V4_DEST_UNREACH && code == icmp::V4_FRAG_NEEDED {
            let Some(h) = View::<{ ipv4::HLEN }>::at(ctx, quoted) else {
                return Outcome::AcceptOther;
            };
            let hl = usize::from(h.u8::<{ ipv4::VER_IHL }>() & 0x0f) * 4;
            if h.u8::<{ ipv4::PROTO }>() != ipproto::TCP || hl < ipv4::HLEN {
                return Outcome::AcceptOther;
            }
            let Some(p) = View::<4>::at(ctx, quoted + hl) else {
                return Outcome::AcceptOther;
            };
            p
        } else {
            return Outcome::AcceptOther;
        };
        // The quoted packet went from the VIP to the client: its reverse
        // is the flow to judge.
        SockQuery {
            src: (quoted + dst) as u32,
            dst: (quoted + src) as u32,
            sport: ports.be16::<{ tcp::DPORT }>(),
            dport: ports.be16::<{ tcp::SPORT }>(),
            v6: u32::from(V6),
            cookie: 0,
            ip: g.inner,
            tcp: 0,
            _pad: 0,
        }
    } else {
        return Outcome::AcceptOther;
    };

    match find_local_socket(ctx, &q) {
        SOCK_ESTABLISHED => return Outcome::AcceptEstablished,
        SOCK_COOKIE => return Outcome::AcceptCookie,
        _ => {}
    }
    decide_by_hops(ctx, g)
}

/// Steps 4 to 6 of docs/spec.md section 3.
#[inline(always)]
fn decide_by_hops(ctx: &XdpContext, g: &Gue) -> Outcome {
    if g.next_hop >= g.hop_count {
        return Outcome::AcceptLastResort;
    }
    let Some(addr) = next_hop_addr(ctx, g) else {
        return Outcome::Invalid;
    };
    let family = if g.outer_v6 != 0 {
        FAMILY_V6
    } else {
        FAMILY_V4
    };
    let me = AddrKey {
        family: u32::from(family),
        addr,
    };
    if RDR_SELF.get_ptr(me.as_allow_key()).is_some() {
        return Outcome::AcceptSelf;
    }
    Outcome::Forward
}

/// Strips everything before the inner packet and writes a fresh Ethernet
/// header for its family (same MACs, so the stack takes it as for this
/// host).
#[inline(always)]
fn strip_outer_headers(ctx: &XdpContext, inner: u32, inner_v6: bool) -> bool {
    let Some(old) = View::<12>::at(ctx, 0) else {
        return false;
    };
    let macs = old.array::<0, 12>();
    let delta = inner as i32 - eth::HLEN as i32;
    // SAFETY: the helper checks that the new head stays inside the frame.
    if unsafe { bpf_xdp_adjust_head(ctx.ctx, delta) } != 0 {
        return false;
    }
    let [t0, t1] = if inner_v6 {
        eth::P_IPV6.to_be_bytes()
    } else {
        eth::P_IPV4.to_be_bytes()
    };
    let [m0, m1, m2, m3, m4, m5, m6, m7, m8, m9, m10, m11] = macs;
    write(
        ctx,
        0,
        [m0, m1, m2, m3, m4, m5, m6, m7, m8, m9, m10, m11, t0, t1],
    )
}

/// A socket query: the flow as the local stack sees it (client -> VIP).
/// Words, as [`Gue`], with no padding (rules 3 and 4).
#[repr(C, align(8))]
struct SockQuery {
    /// Offsets of the source and destination addresses in the frame.
    src: u32,
    dst: u32,
    /// Ports, host order.
    sport: u16,
    dport: u16,
    /// 1 for IPv6.
    v6: u32,
    /// 1 for a pure ACK that may carry a SYN cookie, whose TCP header is
    /// whole in the frame (`tcp` and `ip` are then set).
    cookie: u32,
    /// Offset of the inner IP header.
    ip: u32,
    /// Offset of the TCP header.
    tcp: u32,
    _pad: u32,
}

const _: () = assert!(size_of::<SockQuery>() == 4 * 8);

const SOCK_NONE: u32 = 0;
const SOCK_ESTABLISHED: u32 = 1;
const SOCK_COOKIE: u32 = 2;

/// Whether a local socket owns the flow of `q` (established, time-wait or
/// request socket), or, for a pure ACK, a local listener validates its SYN
/// cookie; in the interface's network namespace, then in the configured
/// one. A listener alone means nothing: `bpf_skc_lookup_tcp` returns the
/// listener for any ACK to a listening port.
///
/// Inlined, on the path of most packets (rule 5): as a global function,
/// its call cost an established flow's packet a few ns and a forwarded
/// one's more. The socket references it takes are released in it.
#[inline(always)]
fn find_local_socket(frame: &XdpContext, q: &SockQuery) -> u32 {
    let (sport, dport) = (q.sport.to_be(), q.dport.to_be());
    let (src, dst) = (q.src as usize, q.dst as usize);
    // Built from the member the helper reads (the IPv4 one's 12 bytes, or
    // the IPv6 one's 36), not zeroed first (rule 3).
    let (tuple, size) = if q.v6 != 0 {
        let (Some(s), Some(d)) = (View::<16>::at(frame, src), View::<16>::at(frame, dst)) else {
            return SOCK_NONE;
        };
        let ipv6 = SockTupleV6 {
            saddr: addr_words!(s, 0),
            daddr: addr_words!(d, 0),
            sport,
            dport,
        };
        (bpf_sock_tuple__bindgen_ty_1 { ipv6 }, 36)
    } else {
        let (Some(s), Some(d)) = (View::<4>::at(frame, src), View::<4>::at(frame, dst)) else {
            return SOCK_NONE;
        };
        let ipv4 = SockTupleV4 {
            saddr: s.u32_raw::<0>(),
            daddr: d.u32_raw::<0>(),
            sport,
            dport,
        };
        (bpf_sock_tuple__bindgen_ty_1 { ipv4 }, 12)
    };
    let mut tuple = bpf_sock_tuple {
        __bindgen_anon_1: tuple,
    };
    let found = lookup_socket_in(frame, q, &mut tuple, size, BPF_F_CURRENT_NETNS as u64);
    if found != SOCK_NONE {
        return found;
    }
    // The other namespace, if configured: read only now, as most packets
    // here belong to a socket of the interface's namespace.
    match RDR_SETTINGS.get(0) {
        Some(s) if s.flags & REDIRECT_NETNS != 0 => {
            lookup_socket_in(frame, q, &mut tuple, size, u64::from(s.netns_id))
        }
        _ => SOCK_NONE,
    }
}

/// [`find_local_socket`] in the namespace `netns`, with the first `size`
/// bytes of `tuple` (a separate argument: kept in a struct beside the
/// tuple, LLVM merged its store with the tuple's and the verifier lost
/// its value).
#[inline(always)]
fn lookup_socket_in(
    frame: &XdpContext,
    q: &SockQuery,
    tuple: &mut bpf_sock_tuple,
    size: u32,
    netns: u64,
) -> u32 {
    // SAFETY: a valid tuple of `size` bytes; the returned reference is
    // released below on every path.
    let sk = unsafe { bpf_skc_lookup_tcp(frame.ctx.cast(), tuple, size, netns, 0) };
    if sk.is_null() {
        return SOCK_NONE;
    }
    // SAFETY: a live socket reference; `state` is readable on every socket.
    let state = unsafe { (*sk).state };
    let found = if state != BPF_TCP_LISTEN {
        SOCK_ESTABLISHED
    } else if q.cookie != 0 && syn_cookie_valid(frame, q, sk.cast()) {
        SOCK_COOKIE
    } else {
        SOCK_NONE
    };
    // SAFETY: the reference from the lookup above, released once.
    unsafe { bpf_sk_release(sk.cast()) };
    found
}

/// Whether the listener `sk` validates the SYN cookie the ACK of `q`
/// carries. The helper reads the IP header's addresses and the fixed TCP
/// header (it checks only that the length given covers that), so both are
/// handed to it in the frame, at constant lengths (rule 7 is for variable
/// ones): no copy to the stack.
#[inline(always)]
fn syn_cookie_valid(frame: &XdpContext, q: &SockQuery, sk: *mut c_void) -> bool {
    let Some(th) = ptr_at::<[u8; tcp::HLEN]>(frame, q.tcp as usize) else {
        return false;
    };
    let (ip, ip_len) = if q.v6 != 0 {
        let Some(ip) = ptr_at::<[u8; ipv6::HLEN]>(frame, q.ip as usize) else {
            return false;
        };
        (ip.cast::<c_void>(), ipv6::HLEN as u32)
    } else {
        let Some(ip) = ptr_at::<[u8; ipv4::HLEN]>(frame, q.ip as usize) else {
            return false;
        };
        (ip.cast::<c_void>(), ipv4::HLEN as u32)
    };
    // SAFETY: a live listener reference; both pointers checked in the
    // frame for the lengths given.
    unsafe { bpf_tcp_check_syncookie(sk, ip, ip_len, th.cast(), tcp::HLEN as u32) == 0 }
}

/// Forwards the packet of `g` to its next hop: outer source = this host,
/// outer destination = the hop, `next_hop + 1`, TTL 64, IPv4 checksum;
/// next-hop MAC from the kernel's FIB. Returns the XDP action (`XDP_TX`,
/// or `XDP_REDIRECT` when the route leaves by another interface), or
/// `XDP_DROP` when there is no source address, route or neighbour.
///
/// Inlined (rule 5): the program's stack has room for it, and as a global
/// function its call cost a forwarded packet a few ns.
#[inline(always)]
fn forward_to_next_hop(ctx: &XdpContext, g: &Gue) -> u32 {
    use aya_ebpf::bindings::xdp_action::{XDP_DROP, XDP_TX};
    let Some(s) = RDR_SETTINGS.get(0) else {
        return XDP_DROP;
    };
    // Read again from the hop list, which nothing has written since
    // `decide_by_hops` read it: `Gue` is built before the hop is known, and
    // a zeroed placeholder in it would be a `memset` call.
    let Some(hop) = next_hop_addr(ctx, g) else {
        return XDP_DROP;
    };
    const L3: usize = eth::HLEN;
    let (family, tot_len, src) = if g.outer_v6 != 0 {
        if s.self_v6 == [0; 16] {
            return XDP_DROP;
        }
        let Some(h) = View::<{ ipv6::HLEN }>::at(ctx, L3) else {
            return XDP_DROP;
        };
        let tot_len = h.be16::<{ ipv6::PAYLOAD_LEN }>() + ipv6::HLEN as u16;
        if !(write(ctx, L3 + 6, [ipproto::UDP, OUTER_TTL])
            && write(ctx, L3 + ipv6::SRC, s.self_v6)
            && write_addr(ctx, L3 + ipv6::DST, hop))
        {
            return XDP_DROP;
        }
        (AF_INET6, tot_len, u128_words(s.self_v6))
    } else {
        if s.self_v4 == [0; 4] {
            return XDP_DROP;
        }
        let Some(h) = View::<{ ipv4::HLEN }>::at(ctx, L3) else {
            return XDP_DROP;
        };
        let [v, tos, l0, l1, i0, i1, f0, f1, _ttl, p, _c0, _c1, ..] =
            h.array::<0, { ipv4::HLEN }>();
        let [a0, a1, a2, a3] = s.self_v4;
        let [hop, ..] = hop;
        let [b0, b1, b2, b3] = hop.to_ne_bytes();
        #[rustfmt::skip]
        let mut header = [
            v, tos, l0, l1, i0, i1, f0, f1, OUTER_TTL, p, 0, 0,
            a0, a1, a2, a3, b0, b1, b2, b3,
        ];
        let [c0, c1] = ipv4_checksum(&header).to_be_bytes();
        if let Some(c) = header.get_mut(10..12) {
            c.copy_from_slice(&[c0, c1]);
        }
        if !write(ctx, L3, header) {
            return XDP_DROP;
        }
        (
            AF_INET,
            u16::from_be_bytes([l0, l1]),
            [u32::from_ne_bytes(s.self_v4), 0, 0, 0],
        )
    };
    let Some(u) = View::<{ udp::HLEN }>::at(ctx, L3 + if g.outer_v6 != 0 { 40 } else { 20 }) else {
        return XDP_DROP;
    };
    // next_hop and hop_count, rewritten together (2-byte windows only).
    if !write(
        ctx,
        g.gue as usize + field::NEXT_HOP,
        // Both came from single bytes.
        [(g.next_hop as u8).wrapping_add(1), g.hop_count as u8],
    ) {
        return XDP_DROP;
    }
    // SAFETY: the context of a running program.
    let ifindex = unsafe { (*ctx.ctx).ingress_ifindex };
    let mut request = MaybeUninit::uninit();
    let fib = &mut FibRequest::zero(&mut request).0;
    fib.family = family;
    fib.l4_protocol = ipproto::UDP;
    fib.sport = u.be16::<{ udp::SPORT }>().to_be();
    fib.dport = GUE_PORT.to_be();
    fib.__bindgen_anon_1.tot_len = tot_len;
    fib.ifindex = ifindex;
    fib.__bindgen_anon_3.ipv6_src = src;
    fib.__bindgen_anon_4.ipv6_dst = hop;
    // SAFETY: a request of its own size on the stack.
    let rc = unsafe { fib_lookup(ctx.ctx.cast(), fib, size_of::<bpf_fib_lookup>() as i32, 0) };
    if rc != 0 {
        return XDP_DROP;
    }
    // SAFETY: a successful lookup fills in both MACs.
    let (smac, dmac) = unsafe {
        (
            fib.__bindgen_anon_6.__bindgen_anon_2.smac,
            fib.__bindgen_anon_6.__bindgen_anon_2.dmac,
        )
    };
    // Rebuilt from their bytes: written as they are, the arrays are
    // copied from the request with `memmove` calls (rule 3).
    let ([d0, d1, d2, d3, d4, d5], [s0, s1, s2, s3, s4, s5]) = (dmac, smac);
    if !(write(ctx, 0, [d0, d1, d2, d3, d4, d5]) && write(ctx, 6, [s0, s1, s2, s3, s4, s5])) {
        return XDP_DROP;
    }
    if fib.ifindex == ifindex {
        XDP_TX
    } else {
        // SAFETY: plain helper call with an interface index.
        unsafe { bpf_redirect(fib.ifindex, 0) as u32 }
    }
}

/// A `bpf_fib_lookup`, 8-byte aligned (rule 4).
#[repr(C, align(8))]
struct FibRequest(bpf_fib_lookup);

impl FibRequest {
    /// Zeroes `request` in place, with volatile word stores. The helper
    /// reads all of it, so the verifier wants every byte initialised, and
    /// a request has fewer fields to fill in than zero bytes: LLVM merges
    /// plain zero stores of 16 bytes or more into a `memset` call (rule
    /// 3), volatile ones not. In place, because LLVM would turn a copy
    /// of the zeroed request into a `memset` too.
    #[inline(always)]
    fn zero(request: &mut MaybeUninit<FibRequest>) -> &mut FibRequest {
        let words = request.as_mut_ptr().cast::<u64>();
        for i in 0..size_of::<FibRequest>() / 8 {
            // SAFETY: word `i` of the request, aligned to 8.
            unsafe { words.add(i).write_volatile(0) };
        }
        // SAFETY: every byte written above; all-zero is a valid request.
        unsafe { request.assume_init_mut() }
    }
}

const _: () = assert!(size_of::<FibRequest>() == size_of::<bpf_fib_lookup>());

#[inline(always)]
fn u128_words(a: [u8; 16]) -> [u32; 4] {
    // SAFETY: same size, plain data.
    unsafe { core::mem::transmute::<[u8; 16], [u32; 4]>(a) }
}

#[inline(always)]
fn ipv4_checksum(h: &[u8; ipv4::HLEN]) -> u16 {
    let mut sum: u32 = h
        .as_chunks::<2>()
        .0
        .iter()
        .map(|w| u32::from(u16::from_be_bytes(*w)))
        .sum();
    sum = (sum & 0xffff) + (sum >> 16);
    sum = (sum & 0xffff) + (sum >> 16);
    !(sum as u16)
}

/// Benchmark reference: the cost of the XDP_TX path alone (as the
/// director's object has it), measured beside `redirect`; built only with
/// the crate's `bench` feature.
#[cfg(feature = "bench")]
#[xdp]
pub fn bench_floor(_ctx: XdpContext) -> u32 {
    aya_ebpf::bindings::xdp_action::XDP_TX
}

// As in the director's object: a panic path left in the object is an
// endless loop, which the verifier rejects at load time (in the tests).
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo<'_>) -> ! {
    loop {}
}

/// GPL-only helpers need a GPL-compatible licence string.
#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";
