//! The director's XDP programs.
//!
//! - `director`: the GLB-style director of `docs/director.md`. It finds the
//!   bind of each packet for a VIP, hashes the flow into that bind's table,
//!   and sends the packet, wrapped in GUE with the row's alternates as the
//!   hop list (or, for an `ipip` table, in one outer IP header:
//!   `encap::director_ipip`), to the row's primary (`XDP_TX`); a packet
//!   too big for the path MTU once wrapped is answered with an ICMP error
//!   instead (`too_big`). Everything else passes untouched.
//! - `pass`: passes every frame (for the peer end of a veth in labs).
//! - With the crate's `bench` feature only, the benchmark's references
//!   (`bench`).
//!
//! The program never returns `XDP_ABORTED`: a packet it cannot handle is
//! passed (not ours) or dropped and counted (ours but broken).
//!
//! Hot path: untagged IPv4 and IPv6 TCP/UDP without options, extension
//! headers or fragments take a fast path with every offset a constant
//! (`forward_plain_v4`, `forward_plain_v6`), and so do the usual ICMP
//! frag-needed and packet-too-big errors (`quoted_flow`); everything else
//! goes to the general parser (`parse_and_forward`), which decides the same
//! for the packets the fast paths take. What every step reads travels in
//! one [`Env`] (the frame, the settings, the host VIP table), and a packet
//! matched to a bind in one [`Matched`].
//!
//! The rules the code keeps for the verifier and LLVM are written once, in
//! the crate's `lib.rs`, and cited by number. Besides them: no lookup cache
//! with "done" flags. The flow hash and the GUE encapsulation are inlined
//! (rule 5), so the verifier walks them once per parse path
//! (`director_verifies_well_within_the_kernel_complexity_limit` in
//! `tests/test_run.rs` watches the total).
#![no_std]
#![no_main]

#[cfg(feature = "bench")]
mod bench;
mod encap;
mod hash;
mod too_big;

use aya_ebpf::{
    bindings::xdp_action,
    macros::{map, xdp},
    maps::{Array, LpmTrie, PerCpuArray, lpm_trie::Key},
    programs::XdpContext,
};
use proto::maps::{
    BackendCounters, BackendEntry, BindCounters, BindInfo, DirectorSettings, DirectorStat,
    ENCAP_GUE, ENCAP_IPIP, FAMILY_V4, FAMILY_V6, LPM_LOOKUP_PREFIX_LEN, MAX_BACKENDS, MAX_BINDS,
    MAX_TABLES, MAX_VIPS, PortRange, TABLE_MAP_ROWS, TableHead, TableRow, VIP_PREFIXES_V4,
    VIP_PREFIXES_V6, VIP_TABLE_ENTRIES, VIP_TABLE_PROBES, VIP_TABLE_STRIDE, VipEntry, VipKey,
    VipSlot, row_index, vip_fold, vip_home,
};

use crate::encap::{Target, director_encapsulate};
use crate::hash::{Flow, HashArgs, addr_words, director_flow_hash, flow_hash};
use crate::too_big::director_too_big;
use director_xdp_ebpf::packet::{
    View, eth, frame_len, icmp, ipv4, ipv6, proto as ipproto, tcp, udp,
};

// Map names are those of `proto::maps::names`; the loader opens them by
// those names, so a rename here fails `Dataplane::load` (and its tests).

/// VIPs that are single addresses: the port ranges and their binds, in the
/// loader's open-addressing table (see `VipSlot`).
#[map]
static DIR_VIP_TABLE: Array<VipSlot> = Array::with_max_entries(VIP_TABLE_ENTRIES, 0);
/// VIP prefixes shorter than an address: the port ranges and their binds.
#[map]
static DIR_VIPS: LpmTrie<VipKey, VipEntry> = LpmTrie::with_max_entries(MAX_VIPS, 0);
/// Bind id -> table id: the loader's record, not read here (the VIP
/// entries' ranges carry the table id).
#[map]
static DIR_BINDS: Array<BindInfo> = Array::with_max_entries(MAX_BINDS, 0);
/// Table id -> active row slot, and each slot's packet hash key.
#[map]
static DIR_TABLE_HEADS: Array<TableHead> = Array::with_max_entries(MAX_TABLES, 0);
/// `row_index(table, slot, row)` -> backend indexes.
#[map]
static DIR_TABLES: Array<TableRow> = Array::with_max_entries(TABLE_MAP_ROWS, 0);
/// Backend index -> address, family, MAC.
#[map]
static DIR_BACKENDS: Array<BackendEntry> = Array::with_max_entries(MAX_BACKENDS, 0);
/// The one entry of global settings.
#[map]
static DIR_SETTINGS: Array<DirectorSettings> = Array::with_max_entries(1, 0);
/// Outcome counters, indexed by `DirectorStat`.
#[map]
static DIR_STATS: PerCpuArray<u64> = PerCpuArray::with_max_entries(DirectorStat::COUNT as u32, 0);
/// Per-bind traffic counters, indexed by bind id.
#[map]
static DIR_BIND_STATS: PerCpuArray<BindCounters> = PerCpuArray::with_max_entries(MAX_BINDS, 0);
/// Per-backend traffic counters, indexed like `DIR_BACKENDS` (the primary
/// a packet was encapsulated to).
#[map]
static DIR_BACKEND_STATS: PerCpuArray<BackendCounters> =
    PerCpuArray::with_max_entries(MAX_BACKENDS, 0);

/// What happens to a packet.
///
/// Fieldless, like every enum on the packet path (rule 2): data travels in
/// fully initialised structs.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Outcome {
    /// Not for a bind: `XDP_PASS`, untouched.
    Pass,
    /// For a VIP but malformed: `XDP_DROP`.
    Malformed,
    /// For a bind but not encapsulable: `XDP_DROP`.
    EncapFailure,
    /// Encapsulated in place (see [`Sent`]): `XDP_TX`.
    Sent,
    /// Too big for the path MTU once encapsulated to the primary
    /// `Sent::backend` with `Sent::hop_count` hops: answered with an ICMP
    /// error (`XDP_TX`) or dropped (`XDP_DROP`), see [`director`].
    TooBig,
}

/// How an encapsulated packet is counted besides its bind and backend.
///
/// Words, no `bool`s (rule 3: with an 11-byte struct LLVM zeroed it
/// through `memset` at the start of every packet), aligned to 8 (rule 4).
#[repr(C, align(8))]
struct Sent {
    bind: u32,
    /// The primary's backend index.
    backend: u32,
    /// `Sent::ICMP`, `Sent::ICMP_ERROR`, `Sent::FRAGMENT`,
    /// `Sent::MAC_FALLBACK`; for `Outcome::TooBig`, the hop count in bits
    /// `Sent::HOPS_SHIFT..` and `Sent::IPIP`.
    flags: u32,
}

impl Sent {
    /// An ICMP packet (echo, or an error quoting a VIP flow).
    const ICMP: u32 = 1;
    /// A fragment.
    const FRAGMENT: u32 = 2;
    /// Sent to the gateway MAC: the primary's is not resolved.
    const MAC_FALLBACK: u32 = 4;
    /// An ICMP error (frag-needed, packet-too-big): never answered with
    /// one when too big.
    const ICMP_ERROR: u32 = 8;
    /// Where a too-big packet's hop count is (8 bits).
    const HOPS_SHIFT: u32 = 8;
    /// A too-big packet's table is IP-in-IP.
    const IPIP: u32 = 1 << 16;

    /// The hop count of a too-big packet's table.
    #[inline(always)]
    fn hop_count(&self) -> usize {
        ((self.flags >> Self::HOPS_SHIFT) & 0xff) as usize
    }
}

/// The director.
#[xdp]
pub fn director(ctx: XdpContext) -> u32 {
    let mut sent = Sent {
        bind: 0,
        backend: 0,
        flags: 0,
    };
    match decide(&ctx, &mut sent) {
        Outcome::Pass => {
            count(DirectorStat::NotVip);
            xdp_action::XDP_PASS
        }
        Outcome::Malformed => {
            core::hint::cold_path();
            count(DirectorStat::Malformed);
            xdp_action::XDP_DROP
        }
        Outcome::EncapFailure => {
            core::hint::cold_path();
            count(DirectorStat::EncapFailure);
            xdp_action::XDP_DROP
        }
        Outcome::Sent => {
            // Counted in `forward`, but for the MAC fallback, known last.
            if sent.flags & Sent::MAC_FALLBACK != 0 {
                core::hint::cold_path();
                count(DirectorStat::MacFallback);
            }
            xdp_action::XDP_TX
        }
        Outcome::TooBig => {
            core::hint::cold_path();
            // Here rather than where the packet was found too big: one call
            // site, out of the way of the encapsulation's code.
            let args = too_big::Args {
                backend: sent.backend,
                hop_count: sent.hop_count(),
                icmp_error: sent.flags & Sent::ICMP_ERROR != 0,
                ipip: sent.flags & Sent::IPIP != 0,
            };
            if director_too_big(ctx.ctx, args.pack()) == too_big::ANSWERED {
                count(DirectorStat::TooBigIcmp);
                xdp_action::XDP_TX
            } else {
                count(DirectorStat::TooBigDropped);
                xdp_action::XDP_DROP
            }
        }
    }
}

/// What one packet of `len` bytes adds to a packet and a byte counter;
/// with `UNDO`, what takes it back (both negated, for wrapping adds).
#[inline(always)]
fn delta<const UNDO: bool>(len: u64) -> (u64, u64) {
    if UNDO {
        (1u64.wrapping_neg(), len.wrapping_neg())
    } else {
        (1, len)
    }
}

/// Counts a packet about to be encapsulated for `bind`, of `len` bytes as
/// received: `Encapsulated` and the bind's traffic; with `UNDO`, takes that
/// back (no encapsulation after all).
#[inline(always)]
fn count_bind<const UNDO: bool>(bind: u32, len: u64) {
    let (one, len) = delta::<UNDO>(len);
    if let Some(c) = DIR_STATS.get_ptr_mut(DirectorStat::Encapsulated.index()) {
        // SAFETY: a live per-CPU value of this CPU; nothing else writes it
        // while this program runs.
        unsafe { *c = (*c).wrapping_add(one) };
    }
    if let Some(c) = DIR_BIND_STATS.get_ptr_mut(bind) {
        // SAFETY: as above.
        unsafe {
            (*c).packets = (*c).packets.wrapping_add(one);
            (*c).bytes = (*c).bytes.wrapping_add(len);
        }
    }
}

/// [`count_bind`] for the traffic of the primary `backend`.
#[inline(always)]
fn count_backend<const UNDO: bool>(backend: u32, len: u64) {
    let (one, len) = delta::<UNDO>(len);
    if let Some(c) = DIR_BACKEND_STATS.get_ptr_mut(backend) {
        // SAFETY: as in `count_bind`.
        unsafe {
            (*c).packets = (*c).packets.wrapping_add(one);
            (*c).bytes = (*c).bytes.wrapping_add(len);
        }
    }
}

/// Passes every frame. Frames sent with `XDP_TX` out of a veth reach its peer
/// only when the peer runs XDP: labs attach this one there.
#[xdp]
pub fn pass(_ctx: XdpContext) -> u32 {
    xdp_action::XDP_PASS
}

#[inline(always)]
fn count(stat: DirectorStat) {
    if let Some(c) = DIR_STATS.get_ptr_mut(stat.index()) {
        // SAFETY: as in `count_bind`.
        unsafe { *c += 1 };
    }
}

/// Whether a fragment is the first of its datagram or a later one.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Frag {
    /// Not a fragment (an atomic fragment included).
    No,
    /// Offset 0, more fragments follow: the L4 header is here.
    First,
    /// Offset != 0: no L4 header.
    Later,
}

/// Where parsing goes next.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Step {
    /// Parsed; carry on.
    Go,
    /// Not ours.
    Pass,
    /// For a VIP, but malformed.
    Malformed,
}

/// What the L4 header says.
#[derive(Clone, Copy, PartialEq, Eq)]
enum L4 {
    /// TCP or UDP: the ports are in the flow.
    Ports,
    /// An ICMP echo request.
    Echo,
    /// An ICMP frag-needed / packet-too-big quoting a TCP or UDP packet:
    /// see the `quoted_*` fields.
    Quoted,
    /// Anything else, and later fragments: not forwarded by its L4.
    Other,
    /// Truncated or inconsistent.
    Malformed,
}

/// One packet for a VIP as the general parser finds it. Offsets are into
/// the frame; addresses stay there (`Packet` is on the stack, where copies
/// of every address would cost).
///
/// Headers past the IP header (L4, extension, quoted) need only be in the
/// frame, as docs/director.md's "bytes present" and `proto::director` have
/// it: the IP length fields are checked against the frame, not used as a
/// second bound.
struct Packet {
    v6: bool,
    /// Ethernet header length (14, or 18 with a VLAN tag).
    l2_len: usize,
    /// Offset of the L4 header (after options or extension headers).
    l4: usize,
    /// Protocol of the L4 header at `l4`.
    proto: u8,
    frag: Frag,
    /// Protocol of the fragmented datagram (IPv4 protocol, or the next
    /// header of the IPv6 fragment header).
    frag_proto: u8,
    /// The packet's own flow: addresses, and ports for TCP and UDP.
    flow: Flow,
    /// The VIP entry of the destination, found by the "is it a VIP"
    /// check: it holds the ranges of both protocols.
    vip: Option<&'static VipEntry>,
    /// The packet an ICMP error quotes (VIP -> client): protocol, address
    /// offsets and ports.
    quoted_proto: u8,
    quoted_src: usize,
    quoted_dst: usize,
    quoted_sport: u16,
    quoted_dport: u16,
}

impl Packet {
    const EMPTY: Packet = Packet {
        v6: false,
        l2_len: 0,
        l4: 0,
        proto: 0,
        frag: Frag::No,
        frag_proto: 0,
        flow: Flow {
            src: 0,
            dst: 0,
            sport: 0,
            dport: 0,
        },
        vip: None,
        quoted_proto: 0,
        quoted_src: 0,
        quoted_dst: 0,
        quoted_sport: 0,
        quoted_dport: 0,
    };
}

/// A VIP lookup key as the LPM trie wants it (prefix length, then
/// [`VipKey`]), 8-byte aligned so that it is built with three word stores.
#[repr(C, align(8))]
struct VipLookup {
    /// Prefix length, then family and pad (little-endian).
    head: u64,
    /// The address, IPv4 in the first 4 bytes.
    addr: [u64; 2],
}

const _: () = assert!(size_of::<VipLookup>() == 4 + size_of::<VipKey>());

/// The live host VIP table of `DIR_SETTINGS` (see `VipSlot`), and its
/// `vip_prefixes`. Whole words (rule 4): it sits on the stack in [`Env`].
#[repr(C, align(8))]
#[derive(Clone, Copy)]
struct VipTable {
    mult: u64,
    /// First entry of the live slot.
    base: u32,
    /// Log2 of the live slot's addressed entries.
    bits: u32,
    /// `VIP_PREFIXES_*` bits: families whose lookups go on to the LPM trie
    /// when the address is not a host VIP.
    prefixes: u64,
}

impl VipTable {
    #[inline(always)]
    fn of(s: &DirectorSettings) -> VipTable {
        let ([m0, m1], [b0, b1]) = (s.vip_mult, s.vip_bits);
        let slot = s.vip_slot & 1;
        let (mult, bits) = if slot == 0 { (m0, b0) } else { (m1, b1) };
        VipTable {
            mult,
            base: u32::from(slot) * VIP_TABLE_STRIDE,
            bits: u32::from(bits),
            prefixes: u64::from(s.vip_prefixes),
        }
    }
}

/// What every step of one packet's handling reads besides the packet
/// itself: the frame, the settings and the live host VIP table. Built once
/// per packet and passed by reference; the general parser, out of line,
/// takes it on the stack (rule 4).
#[repr(C, align(8))]
struct Env {
    ctx: XdpContext,
    settings: &'static DirectorSettings,
    vips: VipTable,
}

/// A packet matched to a bind, as the hash, the row lookup and the
/// encapsulation take it. Built where the bind is found and handed to
/// [`forward`], which is inlined: it never sits in memory.
struct Matched<'a> {
    /// The bind's port range: the bind and table ids.
    range: &'a PortRange,
    /// Addresses (offsets in the frame) and ports.
    flow: Flow,
    /// The fast paths': the client address as the hash takes it
    /// (`hash::addr_words`), read from the packet's source or from the
    /// destination an ICMP error quotes. The general parser leaves it
    /// zero and the hash reads the address at `flow.src`.
    client: [u64; 2],
    /// Ethernet header length (14, or 18 with a VLAN tag).
    l2_len: usize,
    v6: bool,
    /// Whether the hash may include the ports (not for fragments); the GUE
    /// source port mixes in the flow's source port only then.
    ports: bool,
}

/// The VIP entry for the address at `at` in the frame: the host VIP of
/// that address, else, if the family has VIP prefixes, the longest prefix
/// holding it.
#[inline(always)]
fn vip_lookup(env: &Env, v6: bool, at: usize) -> Option<&'static VipEntry> {
    let t = &env.vips;
    // The table's and the trie's address layout is the hash's.
    let addr = addr_words(&env.ctx, v6, at)?;
    let (family, bit) = if v6 {
        (FAMILY_V6, VIP_PREFIXES_V6)
    } else {
        (FAMILY_V4, VIP_PREFIXES_V4)
    };
    // The host VIP table: array lookups, which the verifier inlines.
    let home = t.base + vip_home(vip_fold(addr), t.mult, t.bits as u8);
    for i in 0..VIP_TABLE_PROBES {
        let Some(e) = DIR_VIP_TABLE.get(home + i) else {
            break;
        };
        if e.family == u64::from(family) && e.addr[0] == addr[0] && e.addr[1] == addr[1] {
            return Some(&e.entry);
        }
        if e.family == 0 {
            break;
        }
    }
    if t.prefixes & u64::from(bit) == 0 {
        return None;
    }
    let key = VipLookup {
        head: u64::from(LPM_LOOKUP_PREFIX_LEN) | (u64::from(family) << 32),
        addr,
    };
    // SAFETY: `Key<VipKey>` is the 24 bytes of `key` (packed): initialised
    // plain bytes.
    DIR_VIPS.get(unsafe { &*(&raw const key).cast::<Key<VipKey>>() })
}

/// Whether the addresses at `a` and `b` in the frame are equal (`false` if
/// either is not in the frame).
#[inline(always)]
fn same_addr(ctx: &XdpContext, v6: bool, a: usize, b: usize) -> bool {
    match (addr_words(ctx, v6, a), addr_words(ctx, v6, b)) {
        (Some(x), Some(y)) => x[0] == y[0] && x[1] == y[1],
        _ => false,
    }
}

// The range lookups below return a reference into the map value, which
// is a pointer (null for `None`): no undefined bytes (rule 2).

/// The entry's first range of protocol `proto` (the lowest ports):
/// fragments.
#[inline(always)]
fn first_range(entry: Option<&VipEntry>, proto: u8) -> Option<&PortRange> {
    let e = entry?;
    e.ranges
        .iter()
        .take(e.count as usize)
        .find(|r| r.proto == proto)
}

/// The range of an echo request: the entry's first TCP range, else its
/// first UDP range. Ranges are sorted by protocol (TCP, 6, first) and binds
/// are TCP or UDP only, so that is the first range.
#[inline(always)]
fn echo_range(entry: Option<&VipEntry>) -> Option<&PortRange> {
    match entry {
        Some(e) if e.count > 0 => e.ranges.first(),
        _ => None,
    }
}

/// The entry's range of protocol `proto` holding `port`.
#[inline(always)]
fn port_range(entry: Option<&VipEntry>, proto: u8, port: u16) -> Option<&PortRange> {
    let e = entry?;
    e.ranges
        .iter()
        .take(e.count as usize)
        .find(|r| r.proto == proto && r.contains(port))
}

/// "Is it a VIP": an entry for the destination (of either protocol),
/// remembered for the bind; looked up unless a fast path found it already.
#[inline(always)]
fn is_vip(env: &Env, p: &mut Packet) -> bool {
    if p.vip.is_none() {
        p.vip = vip_lookup(env, p.v6, p.flow.dst);
    }
    p.vip.is_some()
}

/// The outcome of one frame: a fast path's, or, for the frames they
/// decline, the general parser's.
fn decide(ctx: &XdpContext, sent: &mut Sent) -> Outcome {
    let Some(settings) = DIR_SETTINGS.get(0) else {
        return Outcome::Pass;
    };
    let env = Env {
        ctx: XdpContext::new(ctx.ctx),
        settings,
        vips: VipTable::of(settings),
    };
    // The VIP entry of the destination, if a fast path looked it up before
    // declining the packet.
    let mut found = None;
    if let Some(outcome) = forward_plain_v4(&env, &mut found, sent) {
        return outcome;
    }
    if let Some(outcome) = forward_plain_v6(&env, &mut found, sent) {
        return outcome;
    }
    // Rare on a director's links: kept out of the fast paths' code.
    core::hint::cold_path();
    parse_and_forward(&env, found, sent)
}

/// `Outcome::EncapFailure`, on a path marked cold so that LLVM lays the
/// fast paths' code out without it (see docs/director.md, "Why the code looks
/// the way it does").
#[inline(always)]
fn encap_failure() -> Outcome {
    core::hint::cold_path();
    Outcome::EncapFailure
}

/// The general parser: every packet the fast paths decline (VLAN tags,
/// IPv4 options, IPv6 extension headers, fragments, ICMP but the usual
/// errors, and anything malformed), parsed and forwarded. `found`: the
/// destination's VIP entry, if a fast path found it (the destination is
/// then at the offset where the parser reads it: no VLAN tag).
///
/// A BPF-to-BPF call, not inlined: it keeps the fast paths' code together
/// in a smaller program body, which measured faster for them (and for
/// packets that are not for a VIP) than the call costs the packets that
/// come here.
#[inline(never)]
fn parse_and_forward(env: &Env, found: Option<&'static VipEntry>, sent: &mut Sent) -> Outcome {
    let ctx = &env.ctx;
    let mut p = Packet::EMPTY;
    p.vip = found;
    match parse_ip(env, &mut p) {
        Step::Go => {}
        Step::Pass => return Outcome::Pass,
        Step::Malformed => return Outcome::Malformed,
    }
    let l4 = if p.frag == Frag::Later {
        L4::Other
    } else {
        parse_l4(ctx, &mut p)
    };
    if l4 == L4::Malformed {
        return Outcome::Malformed;
    }
    let matched = |range, flow, ports| Matched {
        range,
        flow,
        client: [0; 2],
        l2_len: p.l2_len,
        v6: p.v6,
        ports,
    };

    // Every fragment of a datagram, the first included, must reach the same
    // backend: the bind ignores the ports and so does the hash.
    if p.frag != Frag::No {
        let Some(range) = first_range(p.vip, p.frag_proto) else {
            return Outcome::Pass;
        };
        sent.flags |= Sent::FRAGMENT;
        return forward::<false>(env, &matched(range, p.flow, false), sent);
    }

    let (range, flow) = match l4 {
        L4::Ports => (port_range(p.vip, p.proto, p.flow.dport), p.flow),
        L4::Echo => {
            sent.flags |= Sent::ICMP;
            (echo_range(p.vip), p.flow)
        }
        L4::Quoted => {
            sent.flags |= Sent::ICMP | Sent::ICMP_ERROR;
            // A router answers the packet's source, so the quoted source is
            // usually the VIP the packet is addressed to, looked up already.
            let quoted_vip = if same_addr(ctx, p.v6, p.quoted_src, p.flow.dst) {
                p.vip
            } else {
                vip_lookup(env, p.v6, p.quoted_src)
            };
            // The quoted packet went from the VIP to the client: the flow
            // is its reverse, and the bind is the quoted source's.
            let flow = Flow {
                src: p.quoted_dst,
                dst: p.quoted_src,
                sport: p.quoted_dport,
                dport: p.quoted_sport,
            };
            (port_range(quoted_vip, p.quoted_proto, p.quoted_sport), flow)
        }
        L4::Other | L4::Malformed => (None, p.flow),
    };
    let Some(range) = range else {
        return Outcome::Pass;
    };
    forward::<false>(env, &matched(range, flow, true), sent)
}

/// The fast path of untagged IPv4 without options, not a fragment, TCP or
/// UDP with its header in the frame (or an ICMP error, see
/// [`quoted_flow`]): straight-line code with constant offsets. `None` when
/// the packet is not that case (or is, but malformed): then [`decide`]'s
/// general parser decides, and it decides the same for the packets taken
/// here (the golden tests run both kinds). `found` keeps the destination's
/// VIP entry for the general parser.
#[inline(always)]
fn forward_plain_v4(
    env: &Env,
    found: &mut Option<&'static VipEntry>,
    sent: &mut Sent,
) -> Option<Outcome> {
    const IP: usize = eth::HLEN;
    const AT_L4: usize = IP + ipv4::HLEN;
    let ctx = &env.ctx;
    let h = View::<{ AT_L4 + udp::HLEN }>::at(ctx, 0)?;
    if h.be16::<{ eth::TYPE }>() != eth::P_IPV4 || h.u8::<{ IP + ipv4::VER_IHL }>() != 0x45 {
        return None;
    }
    *found = vip_lookup(env, false, IP + ipv4::DST);
    let Some(vip) = *found else {
        return Some(Outcome::Pass);
    };
    let total = usize::from(h.be16::<{ IP + ipv4::TOTAL_LEN }>());
    let frag_word = h.be16::<{ IP + ipv4::FRAG }>();
    if frag_word & (ipv4::MF | ipv4::OFFSET_MASK) != 0
        || total < ipv4::HLEN
        || total > frame_len(ctx) - IP
    {
        return None;
    }
    let proto = h.u8::<{ IP + ipv4::PROTO }>();
    forward_plain_l4::<IP, AT_L4, false>(env, vip, proto, sent)
}

/// [`forward_plain_v4`] for untagged IPv6 whose next header is TCP, UDP or
/// ICMPv6 (no extension headers).
#[inline(always)]
fn forward_plain_v6(
    env: &Env,
    found: &mut Option<&'static VipEntry>,
    sent: &mut Sent,
) -> Option<Outcome> {
    const IP: usize = eth::HLEN;
    const AT_L4: usize = IP + ipv6::HLEN;
    let ctx = &env.ctx;
    let h = View::<{ AT_L4 + udp::HLEN }>::at(ctx, 0)?;
    if h.be16::<{ eth::TYPE }>() != eth::P_IPV6 || h.u8::<IP>() >> 4 != 6 {
        return None;
    }
    *found = vip_lookup(env, true, IP + ipv6::DST);
    let Some(vip) = *found else {
        return Some(Outcome::Pass);
    };
    if AT_L4 + usize::from(h.be16::<{ IP + ipv6::PAYLOAD_LEN }>()) > frame_len(ctx) {
        return None;
    }
    let proto = h.u8::<{ IP + ipv6::NEXT_HEADER }>();
    forward_plain_l4::<IP, AT_L4, true>(env, vip, proto, sent)
}

/// The rest of the fast paths, for an IP header without options or
/// extension headers at `IP` and what follows it at `AT_L4` (else `None`):
/// a TCP or UDP header, or an ICMP error ([`quoted_flow`]); the bind on
/// `vip`, then [`forward`] of the flow, with the client address as words
/// and the VIP at a constant offset.
///
/// Both kinds share one copy of the hash and the encapsulation: what
/// differs, where the client address is, comes to them as a value. (With
/// its own copy, out of line, an ICMP error cost about 10 ns more than a
/// TCP packet; inlined, the copy made TCP packets slower.) Each fast path
/// has its own copy, inlined: one shared by both would hash addresses at a
/// variable offset, which measured about 5 ns slower for TCP and UDP.
#[inline(always)]
fn forward_plain_l4<const IP: usize, const AT_L4: usize, const V6: bool>(
    env: &Env,
    vip: &VipEntry,
    proto: u8,
    sent: &mut Sent,
) -> Option<Outcome> {
    let ctx = &env.ctx;
    let icmp = proto == if V6 { ipproto::ICMPV6 } else { ipproto::ICMP };
    let (flow, client, bind_proto) = if icmp {
        quoted_flow::<IP, AT_L4, V6>(ctx)?
    } else {
        if proto == ipproto::TCP {
            if !tcp_header_ok(ctx, AT_L4) {
                return None;
            }
        } else if proto != ipproto::UDP {
            return None;
        }
        // The ports are at the same offsets in both.
        const { assert!(tcp::SPORT == udp::SPORT && tcp::DPORT == udp::DPORT) };
        let ports = View::<{ udp::HLEN }>::at(ctx, AT_L4)?;
        let (src, dst) = if V6 {
            (IP + ipv6::SRC, IP + ipv6::DST)
        } else {
            (IP + ipv4::SRC, IP + ipv4::DST)
        };
        let flow = Flow {
            src,
            dst,
            sport: ports.be16::<{ udp::SPORT }>(),
            dport: ports.be16::<{ udp::DPORT }>(),
        };
        (flow, addr_words(ctx, V6, src)?, proto)
    };
    let Some(range) = port_range(Some(vip), bind_proto, flow.dport) else {
        return Some(Outcome::Pass);
    };
    if icmp {
        // `quoted_flow` takes ICMP errors only.
        sent.flags |= Sent::ICMP | Sent::ICMP_ERROR;
    }
    let m = Matched {
        range,
        flow,
        client,
        l2_len: IP,
        v6: V6,
        ports: true,
    };
    Some(forward::<true>(env, &m, sent))
}

/// For [`forward_plain_l4`]: the flow of an ICMPv4 frag-needed or ICMPv6
/// packet-too-big at `AT_L4` quoting, right after its 8-byte header, an IP
/// header without options whose source is the packet's destination (the
/// VIP), and TCP or UDP ports. It goes where the quoted flow's packets
/// from the client go: that flow (the VIP at the packet's destination,
/// which the quoted source equals), the client address ([`addr_words`])
/// and the quoted protocol. `None` for anything else, which the general
/// parser decides (another address quoted, options, other ICMP types,
/// truncation).
#[inline(always)]
fn quoted_flow<const IP: usize, const AT_L4: usize, const V6: bool>(
    ctx: &XdpContext,
) -> Option<(Flow, [u64; 2], u8)> {
    let quoted = AT_L4 + icmp::HLEN;
    let (dst, q_src, q_dst, q_l4) = if V6 {
        let q = (quoted + ipv6::SRC, quoted + ipv6::DST, quoted + ipv6::HLEN);
        (IP + ipv6::DST, q.0, q.1, q.2)
    } else {
        let q = (quoted + ipv4::SRC, quoted + ipv4::DST, quoted + ipv4::HLEN);
        (IP + ipv4::DST, q.0, q.1, q.2)
    };
    // The ICMP header and the quoted IP header (IPv6's is the longer).
    let h = View::<{ icmp::HLEN + ipv6::HLEN }>::at(ctx, AT_L4)?;
    let (ty, code) = (h.u8::<{ icmp::TYPE }>(), h.u8::<{ icmp::CODE }>());
    let quoted_proto = if V6 {
        if ty != icmp::V6_PACKET_TOO_BIG {
            return None;
        }
        h.u8::<{ icmp::HLEN + ipv6::NEXT_HEADER }>()
    } else {
        if ty != icmp::V4_DEST_UNREACH
            || code != icmp::V4_FRAG_NEEDED
            || h.u8::<{ icmp::HLEN + ipv4::VER_IHL }>() != 0x45
        {
            return None;
        }
        h.u8::<{ icmp::HLEN + ipv4::PROTO }>()
    };
    if (quoted_proto != ipproto::TCP && quoted_proto != ipproto::UDP)
        || !same_addr(ctx, V6, q_src, dst)
    {
        return None;
    }
    // The ports are at the same offsets in TCP and UDP.
    let ports = View::<4>::at(ctx, q_l4)?;
    // The quoted packet went from the VIP to the client: the flow is its
    // reverse, and the bind is the quoted source port's.
    let flow = Flow {
        src: q_dst,
        dst,
        sport: ports.be16::<{ tcp::DPORT }>(),
        dport: ports.be16::<{ tcp::SPORT }>(),
    };
    Some((flow, addr_words(ctx, V6, q_dst)?, quoted_proto))
}

/// Ethernet, then IPv4 or IPv6 up to the L4 header.
#[inline(always)]
fn parse_ip(env: &Env, p: &mut Packet) -> Step {
    let ctx = &env.ctx;
    let Some(eth_header) = View::<{ eth::HLEN }>::at(ctx, 0) else {
        return Step::Pass;
    };
    let mut ethertype = eth_header.be16::<{ eth::TYPE }>();
    p.l2_len = eth::HLEN;
    if ethertype == eth::P_8021Q {
        let Some(tagged) = View::<{ eth::VLAN_HLEN }>::at(ctx, 0) else {
            return Step::Pass;
        };
        ethertype = tagged.be16::<{ eth::VLAN_TYPE }>();
        p.l2_len = eth::VLAN_HLEN;
    }
    match ethertype {
        eth::P_IPV4 => parse_ipv4(env, p),
        eth::P_IPV6 => parse_ipv6(env, p),
        _ => Step::Pass,
    }
}

#[inline(always)]
fn parse_ipv4(env: &Env, p: &mut Packet) -> Step {
    let ctx = &env.ctx;
    let l2 = p.l2_len;
    // Too short to read the destination: not ours to judge.
    let Some(h) = View::<{ ipv4::HLEN }>::at(ctx, l2) else {
        return Step::Pass;
    };
    let proto = h.u8::<{ ipv4::PROTO }>();
    p.v6 = false;
    p.flow.dst = l2 + ipv4::DST;
    if !is_vip(env, p) {
        return Step::Pass;
    }

    let present = frame_len(ctx) - l2;
    let ver_ihl = h.u8::<{ ipv4::VER_IHL }>();
    let total = usize::from(h.be16::<{ ipv4::TOTAL_LEN }>());
    let frag_word = h.be16::<{ ipv4::FRAG }>();
    let hl = usize::from(ver_ihl & 0x0f) * 4;
    if ver_ihl >> 4 != 4 || hl < ipv4::HLEN || hl > present || total < hl || total > present {
        return Step::Malformed;
    }
    p.frag = if frag_word & ipv4::OFFSET_MASK != 0 {
        Frag::Later
    } else if frag_word & ipv4::MF != 0 {
        Frag::First
    } else {
        Frag::No
    };
    p.l4 = l2 + hl;
    p.proto = proto;
    p.frag_proto = proto;
    p.flow.src = l2 + ipv4::SRC;
    Step::Go
}

#[inline(always)]
fn parse_ipv6(env: &Env, p: &mut Packet) -> Step {
    let ctx = &env.ctx;
    let l2 = p.l2_len;
    let Some(h) = View::<{ ipv6::HLEN }>::at(ctx, l2) else {
        return Step::Pass;
    };
    p.v6 = true;
    p.flow.dst = l2 + ipv6::DST;
    if !is_vip(env, p) {
        return Step::Pass;
    }

    let present = frame_len(ctx);
    let end = l2 + ipv6::HLEN + usize::from(h.be16::<{ ipv6::PAYLOAD_LEN }>());
    if h.u8::<0>() >> 4 != 6 || end > present {
        return Step::Malformed;
    }

    // The extension header walk: a bounded loop (the 7th round can only
    // stop or find a 7th header, which is malformed).
    let mut nh = h.u8::<{ ipv6::NEXT_HEADER }>();
    let mut off = l2 + ipv6::HLEN;
    let mut seen = 0;
    let mut frag = Frag::No;
    let mut frag_proto = 0;
    for _ in 0..=ipv6::MAX_EXT_HEADERS {
        match nh {
            ipv6::NH_HOP_BY_HOP | ipv6::NH_ROUTING | ipv6::NH_DEST_OPTS => {
                if seen == ipv6::MAX_EXT_HEADERS {
                    return Step::Malformed;
                }
                let Some(e) = View::<2>::at(ctx, off) else {
                    return Step::Malformed;
                };
                let hl = (usize::from(e.u8::<{ ipv6::EXT_LEN }>()) + 1) * 8;
                if off + hl > present {
                    return Step::Malformed;
                }
                nh = e.u8::<{ ipv6::EXT_NEXT }>();
                off += hl;
                seen += 1;
            }
            ipv6::NH_FRAGMENT => {
                if seen == ipv6::MAX_EXT_HEADERS {
                    return Step::Malformed;
                }
                let Some(f) = View::<{ ipv6::FRAG_HLEN }>::at(ctx, off) else {
                    return Step::Malformed;
                };
                let next = f.u8::<{ ipv6::EXT_NEXT }>();
                let offset_m = f.be16::<{ ipv6::FRAG_OFFSET_M }>();
                nh = next;
                off += ipv6::FRAG_HLEN;
                seen += 1;
                if offset_m >> 3 != 0 {
                    // What follows is the middle of the datagram, not headers.
                    if frag == Frag::No {
                        frag_proto = next;
                    }
                    frag = Frag::Later;
                    break;
                }
                if offset_m & ipv6::FRAG_M != 0 && frag == Frag::No {
                    frag = Frag::First;
                    frag_proto = next;
                }
            }
            _ => break,
        }
    }
    p.l4 = off;
    p.proto = nh;
    p.frag = frag;
    p.frag_proto = frag_proto;
    p.flow.src = l2 + ipv6::SRC;
    Step::Go
}

#[inline(always)]
fn parse_l4(ctx: &XdpContext, p: &mut Packet) -> L4 {
    let (icmp_proto, echo) = if p.v6 {
        (ipproto::ICMPV6, icmp::V6_ECHO_REQUEST)
    } else {
        (ipproto::ICMP, icmp::V4_ECHO_REQUEST)
    };
    let l4 = p.l4;
    match p.proto {
        ipproto::TCP => {
            let (true, Some(h)) = (tcp_header_ok(ctx, l4), View::<{ tcp::HLEN }>::at(ctx, l4))
            else {
                return L4::Malformed;
            };
            p.flow.sport = h.be16::<{ tcp::SPORT }>();
            p.flow.dport = h.be16::<{ tcp::DPORT }>();
            L4::Ports
        }
        ipproto::UDP => {
            let Some(h) = View::<{ udp::HLEN }>::at(ctx, l4) else {
                return L4::Malformed;
            };
            p.flow.sport = h.be16::<{ udp::SPORT }>();
            p.flow.dport = h.be16::<{ udp::DPORT }>();
            L4::Ports
        }
        proto if proto == icmp_proto => {
            let Some(h) = View::<{ icmp::HLEN }>::at(ctx, l4) else {
                return L4::Malformed;
            };
            let (ty, code) = (h.u8::<{ icmp::TYPE }>(), h.u8::<{ icmp::CODE }>());
            let quoted = l4 + icmp::HLEN;
            if ty == echo {
                L4::Echo
            } else if p.v6 && ty == icmp::V6_PACKET_TOO_BIG {
                quoted_ipv6(ctx, quoted, p)
            } else if !p.v6 && ty == icmp::V4_DEST_UNREACH && code == icmp::V4_FRAG_NEEDED {
                quoted_ipv4(ctx, quoted, p)
            } else {
                L4::Other
            }
        }
        _ => L4::Other,
    }
}

/// The IPv4 header and ports quoted by a frag-needed at `off`.
#[inline(always)]
fn quoted_ipv4(ctx: &XdpContext, off: usize, p: &mut Packet) -> L4 {
    let Some(h) = View::<{ ipv4::HLEN }>::at(ctx, off) else {
        return L4::Malformed;
    };
    let proto = h.u8::<{ ipv4::PROTO }>();
    let hl = usize::from(h.u8::<{ ipv4::VER_IHL }>() & 0x0f) * 4;
    if hl < ipv4::HLEN || off + hl > frame_len(ctx) {
        return L4::Malformed;
    }
    if proto != ipproto::TCP && proto != ipproto::UDP {
        return L4::Other;
    }
    record_quoted::<false>(ctx, p, proto, off, off + hl)
}

/// The IPv6 header and ports quoted by a packet-too-big at `off`.
#[inline(always)]
fn quoted_ipv6(ctx: &XdpContext, off: usize, p: &mut Packet) -> L4 {
    let Some(h) = View::<{ ipv6::HLEN }>::at(ctx, off) else {
        return L4::Malformed;
    };
    let proto = h.u8::<{ ipv6::NEXT_HEADER }>();
    if proto != ipproto::TCP && proto != ipproto::UDP {
        return L4::Other;
    }
    record_quoted::<true>(ctx, p, proto, off, off + ipv6::HLEN)
}

/// Records the quoted packet: its protocol, the offsets of the addresses
/// of its IP header at `ip` (IPv6 with `V6`), and the ports at `l4`.
/// `L4::Quoted`, or `L4::Malformed` if the ports are not there.
#[inline(always)]
fn record_quoted<const V6: bool>(
    ctx: &XdpContext,
    p: &mut Packet,
    proto: u8,
    ip: usize,
    l4: usize,
) -> L4 {
    let Some(ports) = View::<4>::at(ctx, l4) else {
        return L4::Malformed;
    };
    p.quoted_proto = proto;
    (p.quoted_src, p.quoted_dst) = if V6 {
        (ip + ipv6::SRC, ip + ipv6::DST)
    } else {
        (ip + ipv4::SRC, ip + ipv4::DST)
    };
    p.quoted_sport = ports.be16::<{ tcp::SPORT }>();
    p.quoted_dport = ports.be16::<{ tcp::DPORT }>();
    L4::Quoted
}

/// Whether a TCP header at `l4` is in the frame with a data offset of at
/// least 5 words, all of them present.
#[inline(always)]
fn tcp_header_ok(ctx: &XdpContext, l4: usize) -> bool {
    let Some(h) = View::<{ tcp::HLEN }>::at(ctx, l4) else {
        return false;
    };
    let doff = usize::from(h.u8::<{ tcp::DOFF }>() >> 4) * 4;
    doff >= tcp::HLEN && l4 + doff <= frame_len(ctx)
}

/// `offset` as 16 bits, saturating.
#[inline(always)]
fn offset16(offset: usize) -> u16 {
    u16::try_from(offset).unwrap_or(u16::MAX)
}

/// Forwards a packet matched to a bind, counted: [`hash_and_encapsulate`]
/// with the counters around it. `FAST`: a fast path's packet, whose client
/// address is in `m.client` and whose VIP is at a constant offset, so the
/// hash takes them without the general path's detour.
///
/// The packet is counted as early as each counter's index is known: the
/// bind's before the hash, so that those counters' memory is fetched while
/// the hash is computed, and the primary's before the frame is touched
/// (the same updates cost about 10 ns more each after the header stores).
/// A failure, or a packet too big to encapsulate, takes them back. See
/// docs/design/director-cost.md.
#[inline(always)]
fn forward<const FAST: bool>(env: &Env, m: &Matched<'_>, sent: &mut Sent) -> Outcome {
    sent.bind = u32::from(m.range.bind);
    let received = frame_len(&env.ctx) as u64;
    count_bind::<false>(sent.bind, received);
    // ICMP and fragments: known by now, counted as early.
    let kinds = sent.flags & (Sent::ICMP | Sent::FRAGMENT);
    if kinds != 0 {
        count_kinds::<false>(kinds);
    }
    let outcome = hash_and_encapsulate::<FAST>(env, m, received, sent);
    if outcome != Outcome::Sent {
        core::hint::cold_path();
        count_bind::<true>(sent.bind, received);
        count_kinds::<true>(kinds);
    }
    outcome
}

/// Counts (with `UNDO`, takes back) an encapsulated packet's
/// `Sent::ICMP` and `Sent::FRAGMENT` flags in `kinds`.
#[inline(always)]
fn count_kinds<const UNDO: bool>(kinds: u32) {
    let (one, _) = delta::<UNDO>(0);
    for (flag, stat) in [
        (Sent::ICMP, DirectorStat::IcmpHandled),
        (Sent::FRAGMENT, DirectorStat::Fragment),
    ] {
        if kinds & flag != 0
            && let Some(c) = DIR_STATS.get_ptr_mut(stat.index())
        {
            // SAFETY: as in `count_bind`.
            unsafe { *c = (*c).wrapping_add(one) };
        }
    }
}

/// [`forward`] after the bind is counted: the flow hash into the bind's
/// table, the row, the path MTU check and the encapsulation to the row's
/// primary (counted). `Sent`, `EncapFailure`, or, for a packet that would
/// not fit the path MTU once encapsulated, `TooBig`. `received`: the
/// frame's length as received.
#[inline(always)]
fn hash_and_encapsulate<const FAST: bool>(
    env: &Env,
    m: &Matched<'_>,
    received: u64,
    sent: &mut Sent,
) -> Outcome {
    let ctx = &env.ctx;
    let table = u32::from(m.range.table);
    let Some(head) = DIR_TABLE_HEADS.get(table) else {
        return encap_failure();
    };
    let slot = head.active;
    let Some(keys) = head.keys.get(slot as usize) else {
        return encap_failure();
    };
    let flow = m.flow;
    let mut hash = 0;
    let args = HashArgs {
        sport: flow.sport,
        dport: flow.dport,
        fields: env.settings.hash_fields,
        v6: m.v6,
        ports: m.ports,
    };
    if FAST {
        match flow_hash(ctx, keys, m.client, flow.dst, args) {
            Some(h) => hash = h,
            None => return encap_failure(),
        }
    } else {
        // 16 bits per offset: real ones are below `packet::MAX_OFFSET`, and
        // a larger one saturates to a value `packet::ptr_at` still refuses.
        let offsets = u32::from(offset16(flow.src)) | (u32::from(offset16(flow.dst)) << 16);
        if director_flow_hash(ctx.ctx, keys, offsets, args.pack(), &mut hash) == 0 {
            return encap_failure();
        }
    }
    let Some(row) = DIR_TABLES.get(row_index(table, slot, proto::flow::row_of(hash))) else {
        return encap_failure();
    };
    // The slot's encapsulation, beside its hops in the head already read:
    // a GUE packet pays one load and one compare for it here, and one
    // compare before the encapsulation.
    let encap = head.encap.get(slot as usize).copied().unwrap_or(ENCAP_GUE);
    let hops = usize::from(head.hops.get(slot as usize).copied().unwrap_or(0));
    if encap != ENCAP_GUE || hops == 0 || hops > encap::MAX_HOPS {
        core::hint::cold_path();
        if encap != ENCAP_IPIP {
            // Not a slot the loader wrote (IP-in-IP carries no hops).
            return encap_failure();
        }
    }
    let ipip = encap == ENCAP_IPIP;
    let first = u32::from(row.chain[0]);
    let Some(primary) = DIR_BACKENDS.get(first) else {
        return encap_failure();
    };
    sent.backend = first;
    // The path MTU: one compare with the slot's precomputed limit (the
    // outer family and hop count are the table's). Computed here from
    // `DIR_SETTINGS.mtu`, the primary's family and the hops, it measured
    // about 7 ns a packet more in alternated runs.
    let limit = head.max_inner.get(slot as usize).copied().unwrap_or(0);
    let original = received - m.l2_len as u64;
    if original > u64::from(limit) {
        core::hint::cold_path();
        sent.flags |= ((hops as u32) << Sent::HOPS_SHIFT) | if ipip { Sent::IPIP } else { 0 };
        return Outcome::TooBig;
    }
    count_backend::<false>(sent.backend, received);
    let client_port = if m.ports { flow.sport } else { 0 };
    let target = Target {
        source_port: proto::flow::gue_source_port(hash, client_port),
        vlan: m.l2_len == eth::VLAN_HLEN,
        inner_v6: m.v6,
    };
    // The alternates are looked up as their hops are written.
    let hop = |i: usize| {
        row.chain
            .get(i + 1)
            .and_then(|&b| DIR_BACKENDS.get(u32::from(b)))
    };
    let result = if ipip {
        // Out of line (see `director_ipip`): laid out after the GUE code.
        core::hint::cold_path();
        encap::director_ipip(ctx.ctx, encap::ipip_args(first, target.pack()))
    } else {
        director_encapsulate(ctx, env.settings, primary, hops, hop, target.pack())
    };
    match result {
        encap::SENT => Outcome::Sent,
        encap::SENT_MAC_FALLBACK => {
            sent.flags |= Sent::MAC_FALLBACK;
            Outcome::Sent
        }
        _ => {
            count_backend::<true>(sent.backend, received);
            encap_failure()
        }
    }
}

// `no_std` needs a handler. A panic path that survives optimisation would
// leave this endless loop in the object, which the verifier rejects: such a
// bug fails at load time (in the tests), never on a live packet.
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo<'_>) -> ! {
    loop {}
}

/// The kernel refuses GPL-only helpers to programs without a GPL-compatible
/// licence string.
#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";
