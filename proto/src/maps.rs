//! Layouts of the BPF maps shared by the eBPF programs and the loader.
//!
//! Every struct is `#[repr(C)]` with its padding spelled out as `_pad*`
//! fields and a compile-time size check: the kernel copies keys and values
//! as raw bytes, so implicit padding would be uninitialised memory in map
//! keys (breaking lookups) and a silent layout difference between the
//! `bpfel` and the host build. Padding is always written as zero.
//!
//! Multi-byte integers are in host byte order (the eBPF program and the
//! loader run on the same machine); addresses are raw network-order bytes.
//!
//! With feature `user`, every struct is `aya::Pod` so the loader can put it
//! in a map.

use core::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Address family tag for IPv4 (the IP version number).
pub const FAMILY_V4: u8 = 4;
/// Address family tag for IPv6 (the IP version number).
pub const FAMILY_V6: u8 = 6;

/// Port ranges per VIP prefix and protocol (its binds and those of the
/// prefixes containing it).
pub const MAX_PORT_RANGES: usize = 8;
/// Port ranges a [`VipEntry`] holds: those of both protocols.
pub const VIP_ENTRY_RANGES: usize = 2 * MAX_PORT_RANGES;
/// Entries of the bind array (bind ids are `0..MAX_BINDS`).
pub const MAX_BINDS: u32 = 256;
/// Forwarding tables a director holds at once.
pub const MAX_TABLES: u32 = 16;
/// Row slots per table: the live one and the one being rewritten.
pub const TABLE_SLOTS: u32 = 2;
/// Rows in one table, as the `u32` that BPF map indexes are.
pub const TABLE_ROWS: u32 = crate::TABLE_ROWS as u32;
/// Entries of the row array: every slot of every table.
pub const TABLE_MAP_ROWS: u32 = MAX_TABLES * TABLE_SLOTS * TABLE_ROWS;
/// Entries of the backend array, shared by all tables. Twice the backends a
/// config may hold, so that an update never has to reuse an index that the
/// live table still points at.
pub const MAX_BACKENDS: u32 = 8192;
/// Entries of each VIP map (VIP prefixes).
pub const MAX_VIPS: u32 = 1024;

/// Most entries one slot of the host VIP table addresses (`1 << bits`,
/// `bits` at most [`VIP_TABLE_MAX_BITS`]).
pub const VIP_TABLE_MAX_BITS: u8 = 12;
/// Entries a lookup of the host VIP table probes at most, from the
/// address's home entry on: the loader places every host VIP within them.
pub const VIP_TABLE_PROBES: u32 = 8;
/// Entries of one slot of the host VIP table: the addressed ones, then room
/// for the probes of the last (probing never wraps).
pub const VIP_TABLE_STRIDE: u32 = (1 << VIP_TABLE_MAX_BITS) + VIP_TABLE_PROBES;
/// Slots of the host VIP table: the live one and the one being rewritten.
pub const VIP_TABLE_SLOTS: u32 = 2;
/// Entries of the host VIP array.
pub const VIP_TABLE_ENTRIES: u32 = VIP_TABLE_SLOTS * VIP_TABLE_STRIDE;

/// The 64 bits of an address (as raw network-order bytes, read in host
/// order) that the host VIP table hashes: IPv4 zero-extended, IPv6 its two
/// halves XORed. `addr` is [`VipSlot::addr`].
pub const fn vip_fold(addr: [u64; 2]) -> u64 {
    addr[0] ^ addr[1]
}

/// Home entry (within its slot) of an address of fold `fold` in a host VIP
/// table of `1 << bits` entries hashed by `mult`: the top `bits` bits of
/// `fold * mult` (multiplicative hashing). `bits` above
/// [`VIP_TABLE_MAX_BITS`] counts as that; 0 gives entry 0.
#[inline(always)]
pub const fn vip_home(fold: u64, mult: u64, bits: u8) -> u32 {
    let bits = if bits > VIP_TABLE_MAX_BITS {
        VIP_TABLE_MAX_BITS
    } else {
        bits
    };
    // Two shifts so that neither reaches 64 (bits = 0).
    ((fold.wrapping_mul(mult) >> (64 - VIP_TABLE_MAX_BITS as u32))
        >> (VIP_TABLE_MAX_BITS - bits) as u32) as u32
}

/// Names of the director's maps in the eBPF object, shared by the program
/// and the loader.
pub mod names {
    /// `Array<VipSlot>`, [`super::VIP_TABLE_ENTRIES`] entries: the VIPs
    /// that are single addresses (/32, /128), in two slots of
    /// [`super::VIP_TABLE_STRIDE`] entries (see [`super::VipSlot`]).
    pub const VIP_TABLE: &str = "DIR_VIP_TABLE";
    /// `LpmTrie<VipKey, VipEntry>`, [`super::MAX_VIPS`] entries: the VIP
    /// prefixes shorter than an address.
    pub const VIPS: &str = "DIR_VIPS";
    /// `Array<BindInfo>`, [`super::MAX_BINDS`] entries: the loader's
    /// record of each bind's table (the director reads the table id in the
    /// VIP entry's [`super::PortRange`]).
    pub const BINDS: &str = "DIR_BINDS";
    /// `Array<TableHead>`, [`super::MAX_TABLES`] entries: each table's
    /// active slot and the hash key of each slot.
    pub const TABLE_HEADS: &str = "DIR_TABLE_HEADS";
    /// `Array<TableRow>`, [`super::TABLE_MAP_ROWS`] entries.
    pub const TABLES: &str = "DIR_TABLES";
    /// `Array<BackendEntry>`, [`super::MAX_BACKENDS`] entries.
    pub const BACKENDS: &str = "DIR_BACKENDS";
    /// `Array<DirectorSettings>`, one entry.
    pub const SETTINGS: &str = "DIR_SETTINGS";
    /// `PerCpuArray<u64>`, [`super::DirectorStat::COUNT`] entries.
    pub const STATS: &str = "DIR_STATS";
    /// `PerCpuArray<BindCounters>`, [`super::MAX_BINDS`] entries.
    pub const BIND_STATS: &str = "DIR_BIND_STATS";
    /// `PerCpuArray<BackendCounters>`, [`super::MAX_BACKENDS`] entries,
    /// indexed like [`BACKENDS`]: the traffic encapsulated to each backend
    /// index as primary.
    pub const BACKEND_STATS: &str = "DIR_BACKEND_STATS";

    /// Every name above.
    pub const ALL: [&str; 10] = [
        VIP_TABLE,
        VIPS,
        BINDS,
        TABLE_HEADS,
        TABLES,
        BACKENDS,
        SETTINGS,
        STATS,
        BIND_STATS,
        BACKEND_STATS,
    ];
}

/// Names of the backend-side redirect module's maps in the eBPF object.
pub mod redirect_names {
    /// `LpmTrie<AllowKey, u8>`, [`super::MAX_ALLOWED`] entries: director
    /// source prefixes GUE is accepted from.
    pub const ALLOW: &str = "RDR_ALLOW";
    /// `HashMap<AllowKey, u8>`, [`super::MAX_SELF`] entries: this host's
    /// addresses (full-length keys), for "the next hop is this host".
    pub const SELF: &str = "RDR_SELF";
    /// `Array<RedirectSettings>`, one entry.
    pub const SETTINGS: &str = "RDR_SETTINGS";
    /// `PerCpuArray<u64>`, [`super::RedirectStat::COUNT`] entries.
    pub const STATS: &str = "RDR_STATS";
}

/// Entries of the redirect module's allowed-source trie.
pub const MAX_ALLOWED: u32 = 256;
/// Entries of the redirect module's own-address set.
pub const MAX_SELF: u32 = 64;

/// [`RedirectSettings::flags`] bit: also look sockets up in the network
/// namespace [`RedirectSettings::netns_id`].
pub const REDIRECT_NETNS: u8 = 1;

/// The redirect module's settings (a one-entry array).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct RedirectSettings {
    /// Outer IPv4 source of forwarded packets (this host); zero: none.
    pub self_v4: [u8; 4],
    /// Outer IPv6 source of forwarded packets (this host); zero: none.
    pub self_v6: [u8; 16],
    /// Network namespace id (the nsid of that namespace as seen from the
    /// interface's namespace) where sockets are looked up as well.
    pub netns_id: u32,
    /// `REDIRECT_*` bits.
    pub flags: u8,
    /// Zero; brings the size to a multiple of 8.
    pub _pad: [u8; 7],
}

const _: () = assert!(core::mem::size_of::<RedirectSettings>() == 32);

const _: () = assert!(crate::TABLE_ROWS == TABLE_ROWS as usize);
// The row index below must not overflow for any valid table, slot and row.
const _: () =
    assert!((MAX_TABLES as u64) * (TABLE_SLOTS as u64) * (TABLE_ROWS as u64) <= u32::MAX as u64);

/// Bits of an LPM key's data before the address (family and pad): always
/// matched in full, so a lookup never crosses families.
pub const LPM_KEY_HEADER_BITS: u32 = 32;
/// Prefix length for lookups of a single address, IPv4 or IPv6.
///
/// IPv4 keys carry zeros after their 4 address bytes, and stored IPv4
/// prefixes are at most 64 bits, so one length serves both families.
pub const LPM_LOOKUP_PREFIX_LEN: u32 = lpm_prefix_len(128);

/// LPM prefix length for an address prefix of `addr_prefix_bits` bits, for
/// both [`VipKey`] and [`AllowKey`]: the 32 header bits plus the prefix.
///
/// The header's pad bytes are always zero in stored keys and in lookup
/// keys, so matching them in full never excludes a key.
pub const fn lpm_prefix_len(addr_prefix_bits: u32) -> u32 {
    LPM_KEY_HEADER_BITS + addr_prefix_bits
}

/// An address as a family tag and 16 bytes (IPv4 in the first 4, rest zero).
pub const fn encode_addr(addr: IpAddr) -> (u8, [u8; 16]) {
    match addr {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            let mut bytes = [0u8; 16];
            bytes[0] = o[0];
            bytes[1] = o[1];
            bytes[2] = o[2];
            bytes[3] = o[3];
            (FAMILY_V4, bytes)
        }
        IpAddr::V6(v6) => (FAMILY_V6, v6.octets()),
    }
}

/// The address that [`encode_addr`] produced, or `None` for an unknown family.
pub const fn decode_addr(family: u8, bytes: &[u8; 16]) -> Option<IpAddr> {
    match family {
        FAMILY_V4 => Some(IpAddr::V4(Ipv4Addr::new(
            bytes[0], bytes[1], bytes[2], bytes[3],
        ))),
        FAMILY_V6 => Some(IpAddr::V6(Ipv6Addr::from_octets(*bytes))),
        _ => None,
    }
}

/// Key of the VIP hash map, and data part of a key of the VIP LPM trie
/// (aya's `lpm_trie::Key` adds the `u32` prefix length). One entry serves
/// both protocols.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct VipKey {
    /// [`FAMILY_V4`] or [`FAMILY_V6`].
    pub family: u8,
    /// Zero; matched as part of the header bits.
    pub _pad: [u8; 3],
    /// VIP address, network order; IPv4 in the first 4 bytes, rest zero.
    pub addr: [u8; 16],
}

const _: () = assert!(core::mem::size_of::<VipKey>() == 20);
const _: () = assert!(core::mem::offset_of!(VipKey, addr) * 8 == LPM_KEY_HEADER_BITS as usize);

impl VipKey {
    /// The key for `addr`.
    pub const fn new(addr: IpAddr) -> Self {
        let (family, addr) = encode_addr(addr);
        VipKey {
            family,
            _pad: [0; 3],
            addr,
        }
    }
}

/// An inclusive range of destination ports of one protocol served by one
/// bind.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct PortRange {
    /// First port, host order.
    pub start: u16,
    /// Last port (inclusive), host order.
    pub end: u16,
    /// Index into the bind array (below [`MAX_BINDS`]).
    pub bind: u16,
    /// IP protocol of the bind (6 = TCP, 17 = UDP).
    pub proto: u8,
    /// The bind's table id (below [`MAX_TABLES`]), beside the bind: the
    /// director goes from the VIP entry straight to the table, one map
    /// lookup fewer per packet, and a packet always sees a bind and table
    /// that belong together (the loader replaces a VIP entry whole).
    pub table: u8,
}

const _: () = assert!(core::mem::size_of::<PortRange>() == 8);
const _: () = assert!(MAX_BINDS <= u16::MAX as u32 + 1);
const _: () = assert!(MAX_TABLES <= u8::MAX as u32 + 1);

impl PortRange {
    /// Whether `port` (host order) is in the range.
    pub const fn contains(&self, port: u16) -> bool {
        self.start <= port && port <= self.end
    }
}

/// Value of the VIP maps: the port ranges bound on that VIP, of both
/// protocols, sorted by (protocol, first port, last port).
///
/// A fixed array rather than a map per VIP keeps the director to one
/// lookup and a short bounded scan.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct VipEntry {
    /// Used ranges (at most [`VIP_ENTRY_RANGES`]; more are ignored). First,
    /// so that it shares a cache line with the first ranges (and, in a
    /// [`VipSlot`], with the address).
    pub count: u32,
    /// Zero; aligns the ranges to 8.
    pub _pad: u32,
    /// The ranges; only the first `count` are used.
    pub ranges: [PortRange; VIP_ENTRY_RANGES],
}

const _: () = assert!(core::mem::size_of::<VipEntry>() == 136);

impl VipEntry {
    /// The bind of the first used range of protocol `proto` that contains
    /// `port` (host order).
    pub fn find_bind(&self, proto: u8, port: u16) -> Option<u32> {
        self.ranges
            .iter()
            .take(self.count as usize)
            .find(|r| r.proto == proto && r.contains(port))
            .map(|r| u32::from(r.bind))
    }
}

/// Entry of the host VIP table (`DIR_VIP_TABLE`): an open-addressing
/// table of the single-address VIPs, built by the loader.
///
/// Slot `s` (`DirectorSettings::vip_slot`) holds entries
/// `s * VIP_TABLE_STRIDE..`; an address of fold `f` ([`vip_fold`]) has
/// its home at [`vip_home`]`(f, vip_mult[s], vip_bits[s])` and is in one of
/// the [`VIP_TABLE_PROBES`] entries from there on, before any empty one
/// (`family` 0). The loader writes a new table into the idle slot, then
/// flips `vip_slot`, so a packet never sees a half-written table.
#[repr(C, align(8))]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct VipSlot {
    /// [`FAMILY_V4`] or [`FAMILY_V6`]; 0: empty.
    pub family: u64,
    /// The address: its raw network-order bytes read as two host-order
    /// words; IPv4 in the first 4 bytes, the rest zero.
    pub addr: [u64; 2],
    /// The VIP's port ranges.
    pub entry: VipEntry,
}

const _: () = assert!(core::mem::size_of::<VipSlot>() == 160);

impl VipSlot {
    /// `addr` as [`VipSlot::addr`] holds it.
    pub const fn addr_words(addr: &[u8; 16]) -> [u64; 2] {
        let mut lo = [0u8; 8];
        let mut hi = [0u8; 8];
        let mut i = 0;
        while i < 8 {
            lo[i] = addr[i];
            hi[i] = addr[8 + i];
            i += 1;
        }
        [u64::from_ne_bytes(lo), u64::from_ne_bytes(hi)]
    }
}

/// Value of the bind array: which forwarding table serves the bind.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct BindInfo {
    /// Table id, `0..MAX_TABLES`.
    pub table: u32,
    /// Zero; room for per-bind options without a layout change.
    pub _pad: u32,
}

const _: () = assert!(core::mem::size_of::<BindInfo>() == 8);

/// Entries of a [`TableRow`]: the primary and at most 3 alternates (a
/// table's `hops`, docs/spec.md section 4).
pub const ROW_CHAIN: usize = 4;

/// One forwarding table row: its chain, as indexes into the backend array.
/// 16-bit indexes keep a chain of four in 8 bytes, so the row array is no
/// bigger than with GLB's pair of 32-bit indexes.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct TableRow {
    /// `[0]`: the backend that receives the packet (the outer
    /// destination); `[1..=hops]`: the alternates, the GUE hop list in
    /// order (`hops` is the slot's, in [`TableHead::hops`]). Entries past
    /// `hops` are zero.
    pub chain: [u16; ROW_CHAIN],
}

const _: () = assert!(core::mem::size_of::<TableRow>() == 8);
const _: () = assert!(MAX_BACKENDS <= u16::MAX as u32 + 1);

/// Value of the per-table head array: which of the table's two row slots
/// the director reads, and the hash key and hop count of each slot.
///
/// The loader writes a new table into the idle slot (rows, then this
/// entry with the idle slot's key and hops), then flips `active`, so the
/// director never sees a half-written table nor a key or hop count from
/// another slot. Each write leaves the live fields' bytes as they are, and
/// a flip changes one byte (0 <-> 1), so a packet reading the entry during
/// a write reads a consistent one.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct TableHead {
    /// Active slot, `0..TABLE_SLOTS`.
    pub active: u32,
    /// Per slot: the alternates per row (1 to `ROW_CHAIN - 1`; 0 with
    /// [`ENCAP_IPIP`], which carries none); any other value makes the
    /// director drop the table's packets (`encap_failure`).
    pub hops: [u8; TABLE_SLOTS as usize],
    /// Per slot: [`ENCAP_GUE`] or [`ENCAP_IPIP`], how the slot's packets
    /// are wrapped; read beside `hops`, with no lookup of its own.
    pub encap: [u8; TABLE_SLOTS as usize],
    /// Per slot: the longest original packet (from its IP header to the end
    /// of the frame) that fits the path MTU once encapsulated to the
    /// table's backends with the slot's hops (`proto::mtu::max_inner_len`),
    /// [`NO_INNER_LIMIT`] for none: the director's path MTU check, one
    /// compare, with no arithmetic on the packet's path.
    pub max_inner: [u16; TABLE_SLOTS as usize],
    /// Zero.
    pub _pad2: [u8; 4],
    /// Per slot: the hash key of its rows.
    pub keys: [TableKeys; TABLE_SLOTS as usize],
}

/// [`TableHead::encap`]: GUE with GLB's private data (zero, so that a
/// head written before the field existed reads as GUE).
pub const ENCAP_GUE: u8 = 0;
/// [`TableHead::encap`]: plain IP-in-IP, no hop list.
pub const ENCAP_IPIP: u8 = 1;

/// [`TableHead::max_inner`] for no limit: no XDP frame is that long.
pub const NO_INNER_LIMIT: u16 = u16::MAX;

const _: () = assert!(core::mem::size_of::<TableHead>() == 80);

/// Index into the row array of `row` in `slot` of `table`.
///
/// Callers keep `row < TABLE_ROWS` (the hash is masked with `0xffff`) and
/// `slot < TABLE_SLOTS`, else the index aliases a neighbouring slot. An
/// out-of-range `table` saturates or lands past [`TABLE_MAP_ROWS`], where
/// the map lookup fails, rather than wrapping into another table.
pub const fn row_index(table: u32, slot: u32, row: u32) -> u32 {
    table
        .saturating_mul(TABLE_SLOTS)
        .saturating_add(slot)
        .saturating_mul(TABLE_ROWS)
        .saturating_add(row)
}

/// [`BackendEntry::flags`] bit: `mac` came from the neighbour table; when
/// clear the director sends to the gateway MAC instead.
pub const BACKEND_MAC_RESOLVED: u8 = 1;

/// Value of the backend array.
///
/// 24 bytes, a multiple of 8 with no padding needed.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct BackendEntry {
    /// Backend address, network order; IPv4 in the first 4 bytes.
    pub addr: [u8; 16],
    /// [`FAMILY_V4`] or [`FAMILY_V6`]; also the outer header's family.
    pub family: u8,
    /// [`BACKEND_MAC_RESOLVED`] or 0.
    pub flags: u8,
    /// Next-hop MAC for the backend, valid when [`BACKEND_MAC_RESOLVED`] is set.
    pub mac: [u8; 6],
}

const _: () = assert!(core::mem::size_of::<BackendEntry>() == 24);

impl BackendEntry {
    /// An entry for `addr` with no resolved MAC (gateway fallback).
    pub const fn new(addr: IpAddr) -> Self {
        let (family, addr) = encode_addr(addr);
        BackendEntry {
            addr,
            family,
            flags: 0,
            mac: [0; 6],
        }
    }

    /// The backend address, or `None` if `family` is unknown.
    pub const fn ip(&self) -> Option<IpAddr> {
        decode_addr(self.family, &self.addr)
    }
}

/// [`DirectorSettings::hash_fields`] bit: hash the client source address.
pub const HASH_SRC_ADDR: u8 = 1;
/// [`DirectorSettings::hash_fields`] bit: hash the destination (VIP) address.
pub const HASH_DST_ADDR: u8 = 2;
/// [`DirectorSettings::hash_fields`] bit: hash the client source port.
pub const HASH_SRC_PORT: u8 = 4;
/// [`DirectorSettings::hash_fields`] bit: hash the destination port.
pub const HASH_DST_PORT: u8 = 8;
/// GLB's default field set: source address only (docs/spec.md section 1).
pub const DEFAULT_HASH_FIELDS: u8 = HASH_SRC_ADDR;

/// [`DirectorSettings::vip_prefixes`] bit: some IPv4 VIP is a prefix
/// shorter than /32 (in `DIR_VIPS`), so an address missing from
/// the host VIP table (`DIR_VIP_TABLE`) must be looked up there too.
pub const VIP_PREFIXES_V4: u8 = 1;
/// [`DirectorSettings::vip_prefixes`] bit: the same for IPv6 (/128).
pub const VIP_PREFIXES_V6: u8 = 2;

/// The director's global settings (a one-entry array).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct DirectorSettings {
    /// Outer IPv4 source address, network order.
    pub src_v4: [u8; 4],
    /// Outer IPv6 source address, network order.
    pub src_v6: [u8; 16],
    /// MAC to send to when a backend's MAC is not resolved.
    pub gateway_mac: [u8; 6],
    /// `HASH_*` bits: the fields of the packet hash.
    pub hash_fields: u8,
    /// `VIP_PREFIXES_*` bits: the families with VIP prefixes in `DIR_VIPS`.
    pub vip_prefixes: u8,
    /// Active slot of the host VIP table (0 or 1; see [`VipSlot`]).
    pub vip_slot: u8,
    /// Per host VIP table slot: log2 of its addressed entries.
    pub vip_bits: [u8; 2],
    /// Zero.
    pub _pad: u8,
    /// Per host VIP table slot: its hash multiplier.
    pub vip_mult: [u64; 2],
    /// Path MTU toward the backends: the largest IP packet, outer header
    /// included, the director may send them ([`crate::mtu`]);
    /// [`crate::mtu::NO_LIMIT`]: none.
    pub mtu: u32,
    /// Zero; brings the size to a multiple of 8.
    pub _pad2: u32,
}

const _: () = assert!(core::mem::size_of::<DirectorSettings>() == 56);

impl Default for DirectorSettings {
    // Not derived: an all-zero `hash_fields` would hash nothing and send
    // every flow to one row.
    fn default() -> Self {
        DirectorSettings {
            src_v4: [0; 4],
            src_v6: [0; 16],
            gateway_mac: [0; 6],
            hash_fields: DEFAULT_HASH_FIELDS,
            vip_prefixes: 0,
            vip_slot: 0,
            vip_bits: [0; 2],
            _pad: 0,
            vip_mult: [0; 2],
            mtu: crate::mtu::NO_LIMIT,
            _pad2: 0,
        }
    }
}

/// A table slot's packet hash key ([`TableHead::keys`]), as the SipHash
/// state it starts from (v0..v3), so that the director does not derive it
/// for every packet.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct TableKeys {
    /// `SipHasher24::new(hash_key).state()` for the table's `hash_key`
    /// (docs/spec.md section 1).
    pub state: [u64; 4],
}

const _: () = assert!(core::mem::size_of::<TableKeys>() == 32);

impl TableKeys {
    /// The value for the SipHash key `hash_key`.
    pub const fn new(hash_key: &[u8; 16]) -> Self {
        TableKeys {
            state: crate::siphash::SipHasher24::new(hash_key).state(),
        }
    }

    /// A fresh hasher keyed with this key.
    #[inline(always)]
    pub const fn hasher(&self) -> crate::siphash::SipHasher24 {
        crate::siphash::SipHasher24::from_state(self.state)
    }
}

/// Per-CPU counters of the director, indexed by the stat's value.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u32)]
pub enum DirectorStat {
    /// Packets encapsulated and sent to a backend.
    Encapsulated,
    /// Packets not addressed to a VIP bind, passed to the stack.
    NotVip,
    /// Packets too short or inconsistent to parse.
    Malformed,
    /// Of the encapsulated: ICMP echo requests, and frag-needed /
    /// packet-too-big routed by the flow they quote.
    IcmpHandled,
    /// Of the encapsulated: IP fragments (hashed without ports).
    Fragment,
    /// Packets sent to the gateway MAC because the backend's was unresolved.
    MacFallback,
    /// Packets dropped because encapsulation failed (headroom, missing row).
    EncapFailure,
    /// Packets too big for the path MTU once encapsulated, answered with
    /// an ICMP frag-needed or ICMPv6 packet-too-big (sent back, `XDP_TX`).
    TooBigIcmp,
    /// Packets too big for the path MTU once encapsulated that get no
    /// answer: IPv4 without DF, ICMP errors, sources that are not a single
    /// host (dropped).
    TooBigDropped,
}

impl DirectorStat {
    /// Number of counters (entries of the stats array).
    pub const COUNT: usize = 9;
    /// Every counter, in index order.
    pub const ALL: [DirectorStat; Self::COUNT] = [
        DirectorStat::Encapsulated,
        DirectorStat::NotVip,
        DirectorStat::Malformed,
        DirectorStat::IcmpHandled,
        DirectorStat::Fragment,
        DirectorStat::MacFallback,
        DirectorStat::EncapFailure,
        DirectorStat::TooBigIcmp,
        DirectorStat::TooBigDropped,
    ];

    /// Index into the stats array.
    pub const fn index(self) -> u32 {
        self as u32
    }

    /// snake_case name, for metrics and logs.
    pub const fn name(self) -> &'static str {
        match self {
            DirectorStat::Encapsulated => "encapsulated",
            DirectorStat::NotVip => "not_vip",
            DirectorStat::Malformed => "malformed",
            DirectorStat::IcmpHandled => "icmp_handled",
            DirectorStat::Fragment => "fragment",
            DirectorStat::MacFallback => "mac_fallback",
            DirectorStat::EncapFailure => "encap_failure",
            DirectorStat::TooBigIcmp => "too_big_icmp",
            DirectorStat::TooBigDropped => "too_big_dropped",
        }
    }
}

/// Per-CPU counters of the backend-side redirect module, named as GLB's
/// `glb-redirect` names them so existing dashboards keep working.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u32)]
pub enum RedirectStat {
    /// GUE packets seen, and IP-in-IP from allowed sources.
    Total,
    /// Accepted: a SYN.
    AcceptedSyn,
    /// Accepted: a local socket owns the flow.
    AcceptedEstablished,
    /// Accepted: an ACK with a valid SYN cookie.
    AcceptedSynCookie,
    /// Accepted: no hops left.
    AcceptedLastResort,
    /// Accepted: the next hop is this host.
    ForwardedToSelf,
    /// Forwarded to the next hop.
    ForwardedToAlternate,
    /// Dropped: the outer source is not allowed (neither a director nor
    /// another backend).
    DroppedNotAllowed,
    /// Dropped: GUE that failed validation.
    DroppedInvalid,
    /// Accepted: inner UDP, ICMP (other than errors quoting a TCP flow)
    /// or other protocols, which have no second chance (not a GLB counter).
    AcceptedOther,
    /// Dropped: to be forwarded, but no route, neighbour or source address
    /// for the next hop (not a GLB counter).
    ForwardFailed,
    /// Accepted: plain IP-in-IP from an allowed source (an `ipip` table's
    /// packet), which has no hop list (not a GLB counter).
    AcceptedIpip,
}

impl RedirectStat {
    /// Number of counters (entries of the stats array).
    pub const COUNT: usize = 12;
    /// Every counter, in index order.
    pub const ALL: [RedirectStat; Self::COUNT] = [
        RedirectStat::Total,
        RedirectStat::AcceptedSyn,
        RedirectStat::AcceptedEstablished,
        RedirectStat::AcceptedSynCookie,
        RedirectStat::AcceptedLastResort,
        RedirectStat::ForwardedToSelf,
        RedirectStat::ForwardedToAlternate,
        RedirectStat::DroppedNotAllowed,
        RedirectStat::DroppedInvalid,
        RedirectStat::AcceptedOther,
        RedirectStat::ForwardFailed,
        RedirectStat::AcceptedIpip,
    ];

    /// Index into the stats array.
    pub const fn index(self) -> u32 {
        self as u32
    }

    /// GLB's counter name.
    pub const fn name(self) -> &'static str {
        match self {
            RedirectStat::Total => "total",
            RedirectStat::AcceptedSyn => "accepted_syn",
            RedirectStat::AcceptedEstablished => "accepted_established",
            RedirectStat::AcceptedSynCookie => "accepted_syn_cookie",
            RedirectStat::AcceptedLastResort => "accepted_last_resort",
            RedirectStat::ForwardedToSelf => "forwarded_to_self",
            RedirectStat::ForwardedToAlternate => "forwarded_to_alternate",
            RedirectStat::DroppedNotAllowed => "dropped_not_allowed",
            RedirectStat::DroppedInvalid => "dropped_invalid",
            RedirectStat::AcceptedOther => "accepted_other",
            RedirectStat::ForwardFailed => "forward_failed",
            RedirectStat::AcceptedIpip => "accepted_ipip",
        }
    }
}

/// Per-CPU traffic counters of one bind (array indexed by bind id).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct BindCounters {
    /// Packets encapsulated for the bind.
    pub packets: u64,
    /// Bytes of those packets as received (before encapsulation).
    pub bytes: u64,
}

const _: () = assert!(core::mem::size_of::<BindCounters>() == 16);

/// Per-CPU traffic counters of one backend index (array indexed like
/// `DIR_BACKENDS`): what the director encapsulated to it as the row's
/// primary. An index is shared by no two (table, backend) pairs of a live
/// config; the loader zeroes it before giving it to another.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct BackendCounters {
    /// Packets encapsulated to the backend.
    pub packets: u64,
    /// Bytes of those packets as received (before encapsulation).
    pub bytes: u64,
}

const _: () = assert!(core::mem::size_of::<BackendCounters>() == 16);

/// Data part of a key of the redirect module's LPM trie of director source
/// addresses it accepts GUE from.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct AllowKey {
    /// [`FAMILY_V4`] or [`FAMILY_V6`].
    pub family: u8,
    /// Zero; matched as part of the header bits.
    pub _pad: [u8; 3],
    /// Source address, network order; IPv4 in the first 4 bytes, rest zero.
    pub addr: [u8; 16],
}

const _: () = assert!(core::mem::size_of::<AllowKey>() == 20);
const _: () = assert!(core::mem::offset_of!(AllowKey, addr) * 8 == LPM_KEY_HEADER_BITS as usize);

impl AllowKey {
    /// The key for `addr`.
    pub const fn new(addr: IpAddr) -> Self {
        let (family, addr) = encode_addr(addr);
        AllowKey {
            family,
            _pad: [0; 3],
            addr,
        }
    }
}

#[cfg(feature = "user")]
mod pod {
    //! The loader reads and writes these as raw bytes; the size asserts
    //! above are what make that sound (no padding, no pointers).
    use super::*;

    unsafe impl aya::Pod for VipKey {}
    unsafe impl aya::Pod for PortRange {}
    unsafe impl aya::Pod for VipEntry {}
    unsafe impl aya::Pod for VipSlot {}
    unsafe impl aya::Pod for BindInfo {}
    unsafe impl aya::Pod for TableRow {}
    unsafe impl aya::Pod for TableHead {}
    unsafe impl aya::Pod for BackendEntry {}
    unsafe impl aya::Pod for DirectorSettings {}
    unsafe impl aya::Pod for TableKeys {}
    unsafe impl aya::Pod for BindCounters {}
    unsafe impl aya::Pod for BackendCounters {}
    unsafe impl aya::Pod for AllowKey {}
    unsafe impl aya::Pod for RedirectSettings {}
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::mem::{align_of, offset_of, size_of};

    #[test]
    fn vip_key_layout() {
        assert_eq!(size_of::<VipKey>(), 20);
        assert_eq!(align_of::<VipKey>(), 1);
        assert_eq!(offset_of!(VipKey, family), 0);
        assert_eq!(offset_of!(VipKey, _pad), 1);
        assert_eq!(offset_of!(VipKey, addr), 4);
    }

    #[test]
    fn port_range_and_vip_entry_layout() {
        assert_eq!(size_of::<PortRange>(), 8);
        assert_eq!(offset_of!(PortRange, start), 0);
        assert_eq!(offset_of!(PortRange, end), 2);
        assert_eq!(offset_of!(PortRange, bind), 4);
        assert_eq!(offset_of!(PortRange, proto), 6);
        assert_eq!(offset_of!(PortRange, table), 7);
        assert_eq!(size_of::<VipEntry>(), 136);
        assert_eq!(offset_of!(VipEntry, count), 0);
        assert_eq!(offset_of!(VipEntry, _pad), 4);
        assert_eq!(offset_of!(VipEntry, ranges), 8);
    }

    #[test]
    fn vip_slot_layout_and_home() {
        assert_eq!(size_of::<VipSlot>(), 160);
        assert_eq!(align_of::<VipSlot>(), 8);
        assert_eq!(offset_of!(VipSlot, family), 0);
        assert_eq!(offset_of!(VipSlot, addr), 8);
        assert_eq!(offset_of!(VipSlot, entry), 24);
        let v4 = VipKey::new(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 10)));
        let words = VipSlot::addr_words(&v4.addr);
        assert_eq!(words[1], 0);
        assert_eq!(words[0].to_ne_bytes(), [192, 0, 2, 10, 0, 0, 0, 0]);
        assert_eq!(vip_fold(words), words[0]);
        assert_eq!(vip_fold([3, 5]), 6);
        // The top `bits` bits of the product, never past the table.
        let m = 0x9e37_79b9_7f4a_7c15;
        for bits in 0..=VIP_TABLE_MAX_BITS + 2 {
            for fold in [0, 1, u64::MAX, 0xc000_0201, 0x1234_5678_9abc_def0] {
                let home = vip_home(fold, m, bits);
                let b = bits.min(VIP_TABLE_MAX_BITS);
                assert!(home < 1 << b, "{bits} {fold:#x}");
                if b > 0 {
                    assert_eq!(u64::from(home), fold.wrapping_mul(m) >> (64 - u32::from(b)));
                }
            }
        }
        assert_eq!(
            VIP_TABLE_ENTRIES,
            2 * ((1 << VIP_TABLE_MAX_BITS) + VIP_TABLE_PROBES)
        );
    }

    #[test]
    fn bind_info_table_row_and_slot_layout() {
        assert_eq!(size_of::<BindInfo>(), 8);
        assert_eq!(offset_of!(BindInfo, table), 0);
        assert_eq!(offset_of!(BindInfo, _pad), 4);
        assert_eq!(size_of::<TableRow>(), 8);
        assert_eq!(offset_of!(TableRow, chain), 0);
        assert_eq!(size_of::<TableHead>(), 80);
        assert_eq!(offset_of!(TableHead, active), 0);
        assert_eq!(offset_of!(TableHead, hops), 4);
        assert_eq!(offset_of!(TableHead, encap), 6);
        assert_eq!(offset_of!(TableHead, max_inner), 8);
        assert_eq!(offset_of!(TableHead, _pad2), 12);
        assert_eq!(offset_of!(TableHead, keys), 16);
    }

    #[test]
    fn backend_entry_layout() {
        assert_eq!(size_of::<BackendEntry>(), 24);
        assert_eq!(size_of::<BackendEntry>() % 8, 0);
        assert_eq!(offset_of!(BackendEntry, addr), 0);
        assert_eq!(offset_of!(BackendEntry, family), 16);
        assert_eq!(offset_of!(BackendEntry, flags), 17);
        assert_eq!(offset_of!(BackendEntry, mac), 18);
    }

    #[test]
    fn director_settings_and_table_keys_layout() {
        assert_eq!(size_of::<DirectorSettings>(), 56);
        assert_eq!(offset_of!(DirectorSettings, src_v4), 0);
        assert_eq!(offset_of!(DirectorSettings, src_v6), 4);
        assert_eq!(offset_of!(DirectorSettings, gateway_mac), 20);
        assert_eq!(offset_of!(DirectorSettings, hash_fields), 26);
        assert_eq!(offset_of!(DirectorSettings, vip_prefixes), 27);
        assert_eq!(offset_of!(DirectorSettings, vip_slot), 28);
        assert_eq!(offset_of!(DirectorSettings, vip_bits), 29);
        assert_eq!(offset_of!(DirectorSettings, _pad), 31);
        assert_eq!(offset_of!(DirectorSettings, vip_mult), 32);
        assert_eq!(offset_of!(DirectorSettings, mtu), 48);
        assert_eq!(offset_of!(DirectorSettings, _pad2), 52);
        assert_eq!(size_of::<TableKeys>(), 32);
        assert_eq!(offset_of!(TableKeys, state), 0);
        let key = *b"0123456789abcdef";
        assert_eq!(
            TableKeys::new(&key).hasher().finish(0, 0),
            crate::siphash::siphash24(&key, &[]),
            "the stored state hashes as the key does"
        );
    }

    #[test]
    fn bind_counters_and_allow_key_layout() {
        assert_eq!(size_of::<BindCounters>(), 16);
        assert_eq!(align_of::<BindCounters>(), 8);
        assert_eq!(offset_of!(BindCounters, packets), 0);
        assert_eq!(offset_of!(BindCounters, bytes), 8);
        assert_eq!(size_of::<BackendCounters>(), 16);
        assert_eq!(align_of::<BackendCounters>(), 8);
        assert_eq!(offset_of!(BackendCounters, packets), 0);
        assert_eq!(offset_of!(BackendCounters, bytes), 8);
        assert_eq!(size_of::<AllowKey>(), 20);
        assert_eq!(offset_of!(AllowKey, family), 0);
        assert_eq!(offset_of!(AllowKey, _pad), 1);
        assert_eq!(offset_of!(AllowKey, addr), 4);
    }

    #[test]
    fn redirect_settings_layout() {
        assert_eq!(size_of::<RedirectSettings>(), 32);
        assert_eq!(offset_of!(RedirectSettings, self_v4), 0);
        assert_eq!(offset_of!(RedirectSettings, self_v6), 4);
        assert_eq!(offset_of!(RedirectSettings, netns_id), 20);
        assert_eq!(offset_of!(RedirectSettings, flags), 24);
        assert_eq!(offset_of!(RedirectSettings, _pad), 25);
    }

    #[test]
    fn lpm_prefix_len_counts_the_header_bits() {
        assert_eq!(lpm_prefix_len(0), 32);
        assert_eq!(lpm_prefix_len(24), 56);
        assert_eq!(lpm_prefix_len(32), 64);
        assert_eq!(lpm_prefix_len(128), 160);
        assert_eq!(LPM_LOOKUP_PREFIX_LEN as usize, size_of::<VipKey>() * 8);
        assert_eq!(LPM_LOOKUP_PREFIX_LEN as usize, size_of::<AllowKey>() * 8);
    }

    #[test]
    fn keys_put_ipv4_in_the_first_four_bytes_with_zero_padding() {
        let key = VipKey::new(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 10)));
        assert_eq!((key.family, key._pad), (FAMILY_V4, [0, 0, 0]));
        assert_eq!(
            key.addr,
            [192, 0, 2, 10, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]
        );
        let v6 = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0x10);
        let key = VipKey::new(IpAddr::V6(v6));
        assert_eq!(key.family, FAMILY_V6);
        assert_eq!(key.addr, v6.octets());
        let allow = AllowKey::new(IpAddr::V4(Ipv4Addr::new(198, 51, 100, 1)));
        assert_eq!((allow.family, allow._pad), (FAMILY_V4, [0; 3]));
        assert_eq!(&allow.addr[..4], &[198, 51, 100, 1]);
    }

    #[test]
    fn backend_address_round_trips() {
        for ip in [
            IpAddr::V4(Ipv4Addr::new(203, 0, 113, 5)),
            IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 1, 0, 0, 0, 0, 5)),
        ] {
            let entry = BackendEntry::new(ip);
            assert_eq!(entry.ip(), Some(ip));
            assert_eq!(entry.flags & BACKEND_MAC_RESOLVED, 0);
        }
        assert_eq!(decode_addr(5, &[0; 16]), None);
    }

    #[test]
    fn vip_entry_scans_only_used_inclusive_ranges_of_the_protocol() {
        let range = |start, end, bind, proto| PortRange {
            start,
            end,
            bind,
            proto,
            table: 0,
        };
        let mut entry = VipEntry::default();
        entry.ranges[0] = range(80, 80, 3, 6);
        entry.ranges[1] = range(8000, 8099, 4, 6);
        entry.ranges[2] = range(0, u16::MAX, 9, 6);
        entry.ranges[3] = range(0, u16::MAX, 7, 17);
        entry.count = 2;
        assert_eq!(entry.find_bind(6, 80), Some(3));
        assert_eq!(entry.find_bind(6, 8000), Some(4));
        assert_eq!(entry.find_bind(6, 8099), Some(4));
        assert_eq!(entry.find_bind(6, 8100), None);
        assert_eq!(entry.find_bind(6, 443), None);
        assert_eq!(entry.find_bind(17, 80), None);
        entry.count = 3;
        assert_eq!(entry.find_bind(6, 443), Some(9));
        assert_eq!(entry.find_bind(17, 443), None);
        entry.count = 4;
        assert_eq!(entry.find_bind(17, 443), Some(7));
        entry.count = u32::MAX;
        assert_eq!(entry.find_bind(6, 443), Some(9));
    }

    #[test]
    fn default_settings_hash_the_source_address() {
        let settings = DirectorSettings::default();
        assert_eq!(settings.hash_fields, HASH_SRC_ADDR);
        let all = HASH_SRC_ADDR | HASH_DST_ADDR | HASH_SRC_PORT | HASH_DST_PORT;
        assert_eq!(all.count_ones(), 4);
    }

    #[test]
    fn default_settings_limit_no_packet_size() {
        assert_eq!(DirectorSettings::default().mtu, crate::mtu::NO_LIMIT);
    }

    #[test]
    fn director_map_names_are_unique_and_prefixed() {
        for (i, n) in names::ALL.iter().enumerate() {
            assert!(n.starts_with("DIR_"), "{n}");
            assert!(!names::ALL[i + 1..].contains(n), "{n} twice");
        }
        assert_eq!(names::BACKEND_STATS, "DIR_BACKEND_STATS");
    }

    #[test]
    fn director_stats_are_indexed_in_order_with_unique_names() {
        for (i, stat) in DirectorStat::ALL.iter().enumerate() {
            assert_eq!(stat.index() as usize, i);
            for other in &DirectorStat::ALL[i + 1..] {
                assert_ne!(stat.name(), other.name());
            }
        }
        assert_eq!(
            DirectorStat::TooBigDropped.index() as usize + 1,
            DirectorStat::COUNT
        );
        assert_eq!(DirectorStat::NotVip.name(), "not_vip");
    }

    #[test]
    fn redirect_stats_use_glb_names_in_order() {
        let names = RedirectStat::ALL.map(RedirectStat::name);
        assert_eq!(
            names,
            [
                "total",
                "accepted_syn",
                "accepted_established",
                "accepted_syn_cookie",
                "accepted_last_resort",
                "forwarded_to_self",
                "forwarded_to_alternate",
                "dropped_not_allowed",
                "dropped_invalid",
                "accepted_other",
                "forward_failed",
                "accepted_ipip",
            ]
        );
        for (i, stat) in RedirectStat::ALL.iter().enumerate() {
            assert_eq!(stat.index() as usize, i);
        }
    }

    #[test]
    fn row_index_corners_are_distinct_and_in_bounds() {
        let last_table = MAX_TABLES - 1;
        let last_slot = TABLE_SLOTS - 1;
        let last_row = TABLE_ROWS - 1;
        let corners = [
            (0, 0, 0),
            (0, 0, last_row),
            (0, last_slot, 0),
            (0, last_slot, last_row),
            (1, 0, 0),
            (last_table, 0, 0),
            (last_table, last_slot, 0),
            (last_table, last_slot, last_row),
        ];
        let indexes = corners.map(|(t, s, r)| row_index(t, s, r));
        for (i, a) in indexes.iter().enumerate() {
            assert!(*a < TABLE_MAP_ROWS, "{:?}", corners[i]);
            for b in &indexes[i + 1..] {
                assert_ne!(a, b);
            }
        }
        assert_eq!(row_index(0, 0, 0), 0);
        assert_eq!(row_index(0, 1, 0), TABLE_ROWS);
        assert_eq!(row_index(1, 0, 0), 2 * TABLE_ROWS);
        assert_eq!(
            row_index(last_table, last_slot, last_row),
            TABLE_MAP_ROWS - 1
        );
        assert!(row_index(MAX_TABLES, 0, 0) >= TABLE_MAP_ROWS);
        assert_eq!(row_index(u32::MAX, 1, 5), u32::MAX);
    }
}
