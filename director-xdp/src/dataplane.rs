//! [`Dataplane`]: the loaded director and the code that writes its maps from
//! a [`Config`].
//!
//! An update never shows a packet a half-written table: each table has two
//! row slots, the new rows and hash key go to the idle one, then the
//! table's `active` flips (docs/director.md, "Hash and row"). Backend
//! entries are shared by all tables through indexes, so the index allocator
//! never rewrites, during an update, an index that a live slot still points
//! at: indexes are kept per (table, backend address) across updates, new
//! backends get indexes that the previous config did not use, and indexes
//! of removed backends become free only once the update (and so every
//! flip) is done. `MAX_BACKENDS` is twice what a config may hold, so there
//! is always room.
//!
//! Writes are diffed against what this process last wrote (the maps are
//! created by [`Dataplane::load`] and start zeroed), so an update that
//! changes a few rows writes a few rows.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;
use std::net::IpAddr;
use std::path::Path;

use aya::{
    Ebpf, EbpfLoader,
    maps::{Array, LpmTrie, MapData, MapError, PerCpuArray, PerCpuValues, lpm_trie::Key},
    programs::Xdp,
};
use proto::config::{Bind, Config, Prefix};
use proto::maps::{
    BACKEND_MAC_RESOLVED, BackendCounters, BackendEntry, BindCounters, BindInfo, DirectorSettings,
    DirectorStat, MAX_BACKENDS, MAX_BINDS, MAX_PORT_RANGES, MAX_TABLES, MAX_VIPS, NO_INNER_LIMIT,
    PortRange, TABLE_ROWS, TABLE_SLOTS, TableHead, TableKeys, TableRow, VIP_PREFIXES_V4,
    VIP_PREFIXES_V6, VIP_TABLE_MAX_BITS, VIP_TABLE_PROBES, VIP_TABLE_STRIDE, VipEntry, VipKey,
    VipSlot, lpm_prefix_len, names, row_index, vip_fold, vip_home,
};
use proto::table::TableError;

use crate::{DIRECTOR_PROGRAM, LoadError, load_director, load_xdp, xdp_program};

/// The director's maps, pinned by [`Dataplane::load_pinned`] under their
/// names.
pub const PINNED_MAPS: [&str; 9] = [
    names::VIP_TABLE,
    names::VIPS,
    names::BINDS,
    names::TABLE_HEADS,
    names::TABLES,
    names::BACKENDS,
    names::SETTINGS,
    names::STATS,
    names::BIND_STATS,
];

/// Bump when a map's value changes meaning or size (aya checks sizes,
/// entries and flags of pinned maps itself, but a changed meaning it cannot
/// see). 2: the port ranges carry their bind's table id, and a VIP entry's
/// count comes first. 3: a row is a chain of four 16-bit backend indexes,
/// the table head holds each slot's hops and path MTU limit, the settings
/// carry the path MTU, and two more counters (`too_big_icmp`,
/// `too_big_dropped`). 4: the table head's padding after the hops is each
/// slot's encapsulation (GUE or IP-in-IP, with no hops).
pub const MAP_LAYOUT_VERSION: u32 = 4;

/// Name of the marker directory written beside the pins: the layout
/// version and the sizes of every map value, so that pins of a build with
/// another layout are recognised before anything is loaded.
pub fn layout_marker() -> String {
    use std::mem::size_of;
    let sizes = [
        size_of::<VipSlot>(),
        size_of::<VipKey>(),
        size_of::<VipEntry>(),
        size_of::<BindInfo>(),
        size_of::<TableHead>(),
        size_of::<TableRow>(),
        size_of::<BackendEntry>(),
        size_of::<DirectorSettings>(),
        size_of::<BindCounters>(),
    ];
    // FNV-1a over the version, the sizes and the limits.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let words = [
        MAP_LAYOUT_VERSION as usize,
        MAX_TABLES as usize,
        MAX_BINDS as usize,
    ]
    .into_iter()
    .chain([
        MAX_BACKENDS as usize,
        MAX_VIPS as usize,
        TABLE_ROWS as usize,
        DirectorStat::COUNT,
    ])
    .chain(sizes);
    for w in words {
        for b in (w as u64).to_le_bytes() {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
    }
    format!("layout-v{MAP_LAYOUT_VERSION}-{h:016x}")
}

/// Backends a config may hold in all: half the backend array, so that an
/// update always finds indexes the live tables do not use.
pub const MAX_CONFIG_BACKENDS: u32 = MAX_BACKENDS / 2;

/// Why the data plane refused a config; nothing was written.
#[derive(Debug, thiserror::Error)]
pub enum CheckError {
    /// More tables than `DIR_TABLE_SLOT` holds.
    #[error("{count} tables, the data plane holds at most {max}")]
    TooManyTables {
        /// Tables in the config.
        count: usize,
        /// [`MAX_TABLES`].
        max: u32,
    },
    /// More binds than `DIR_BINDS` holds.
    #[error("{count} binds in all, the data plane holds at most {max}")]
    TooManyBinds {
        /// Binds in the config, all tables together.
        count: usize,
        /// [`MAX_BINDS`].
        max: u32,
    },
    /// The backends of the tables up to `table` do not fit.
    #[error("table {table:?}: {count} backends{}, the data plane holds at most {max} in all",
        if total == count { String::new() } else { format!(" ({total} with the tables before it)") })]
    TooManyBackends {
        /// The first table that does not fit.
        table: String,
        /// Its backends.
        count: usize,
        /// Backends of the tables up to and including it.
        total: usize,
        /// [`MAX_CONFIG_BACKENDS`].
        max: u32,
    },
    /// A table's backends need an outer source address of their family.
    #[error(
        "table {table:?} has {family} backends, but director.{field} is not set (the outer source address of GUE packets to them)"
    )]
    MissingSource {
        /// The table.
        table: String,
        /// "IPv4" or "IPv6".
        family: &'static str,
        /// "source_v4" or "source_v6".
        field: &'static str,
    },
    /// A VIP prefix and protocol has more port ranges than a `VipEntry`
    /// holds for one protocol.
    #[error(
        "VIP {vip} {proto}: {count} port ranges (its binds and those of the prefixes containing it), the data plane holds at most {max}"
    )]
    TooManyRanges {
        /// The VIP prefix.
        vip: Prefix,
        /// "tcp" or "udp".
        proto: &'static str,
        /// Ranges after merging.
        count: usize,
        /// [`MAX_PORT_RANGES`].
        max: usize,
    },
    /// No host VIP table the director can search was found (not expected
    /// below [`MAX_VIPS`] VIPs).
    #[error("{count} single-address VIPs: no host VIP table found for them")]
    VipTable {
        /// Single-address VIPs in the config.
        count: usize,
    },
    /// More VIP prefix and protocol pairs than `DIR_VIPS` holds.
    #[error("{count} VIP prefix and protocol pairs, the data plane holds at most {max}")]
    TooManyVips {
        /// Pairs in the config.
        count: usize,
        /// [`MAX_VIPS`].
        max: u32,
    },
    /// The path MTU toward the backends (`director.mtu`, else the
    /// interface's) leaves clients less than IPv6's minimum MTU.
    #[error("{mtu}: {reason}")]
    PathMtu {
        /// The MTU and where it came from.
        mtu: PathMtu,
        /// Why it is refused.
        reason: proto::config::PathMtuTooSmall,
    },
    /// The table builder refused a table.
    #[error("building table {table:?}")]
    Table {
        /// The table.
        table: String,
        /// Why.
        #[source]
        source: TableError,
    },
}

/// Why a data-plane operation failed.
#[derive(Debug, thiserror::Error)]
pub enum DataplaneError {
    /// The object or the director program could not be loaded.
    #[error("loading the director")]
    Load(#[from] LoadError),
    /// The redirect module's object or program could not be loaded.
    #[error("loading the redirect module")]
    LoadRedirect(#[source] LoadError),
    /// The object lacks a map, or it has another type than expected.
    #[error("opening map {name} of the director object")]
    Map {
        /// The map's name ([`proto::maps::names`]).
        name: &'static str,
        /// What aya reported.
        #[source]
        source: MapError,
    },
    /// The config does not fit the data plane; nothing was written.
    #[error(transparent)]
    Check(#[from] CheckError),
    /// The redirect module's config does not fit; nothing was written.
    #[error(transparent)]
    RedirectCheck(#[from] crate::redirect::RedirectConfigError),
    /// A map update failed; the maps may hold part of the update (the next
    /// successful apply rewrites everything it is unsure of).
    #[error("writing {what} to map {map}")]
    Write {
        /// The map's name.
        map: &'static str,
        /// Which entry.
        what: String,
        /// What the kernel reported.
        #[source]
        source: MapError,
    },
    /// A map read failed.
    #[error("reading {what} from map {map}")]
    Read {
        /// The map's name.
        map: &'static str,
        /// Which entry.
        what: String,
        /// What the kernel reported.
        #[source]
        source: MapError,
    },
    /// The number of possible CPUs (for per-CPU values) is unknown.
    #[error("reading the number of possible CPUs from {path}")]
    Cpus {
        /// The file read.
        path: &'static str,
        /// Why it failed.
        #[source]
        source: std::io::Error,
    },
}

/// The path MTU toward the backends (`DirectorSettings::mtu`), and where
/// it comes from.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum PathMtu {
    /// `director.mtu`.
    Config(u32),
    /// The MTU of the interface the director runs on, `director.mtu` being
    /// unset.
    Interface {
        /// The interface.
        interface: String,
        /// Its MTU.
        mtu: u32,
    },
    /// Neither: no limit (`director-xdp replay`, which has no interface).
    #[default]
    None,
}

impl PathMtu {
    /// The value the director's settings hold: [`proto::mtu::NO_LIMIT`]
    /// for none; an interface's MTU capped at [`proto::mtu::MAX_MTU`]
    /// (loopback's is 65,536).
    pub fn value(&self) -> u32 {
        match self {
            PathMtu::Config(mtu) => *mtu,
            PathMtu::Interface { mtu, .. } => (*mtu).min(proto::mtu::MAX_MTU),
            PathMtu::None => proto::mtu::NO_LIMIT,
        }
    }
}

impl fmt::Display for PathMtu {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PathMtu::Config(_) => f.write_str("director.mtu"),
            PathMtu::Interface { interface, .. } => {
                write!(f, "the MTU of interface {interface} (director.mtu not set)")
            }
            PathMtu::None => f.write_str("no path MTU"),
        }
    }
}

/// A bind's id in `DIR_BINDS`, `DIR_BIND_STATS` and the VIP entries.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BindId {
    /// The table's name.
    pub table: String,
    /// Position of the bind in the table's `binds`.
    pub index: usize,
    /// The id.
    pub id: u32,
}

/// Bind ids of `config`: positions in the list of all binds, table by table
/// in config order, each table's binds in order.
pub fn bind_ids(config: &Config) -> Vec<BindId> {
    let mut out = Vec::new();
    for t in &config.tables {
        for index in 0..t.binds.len() {
            out.push(BindId {
                table: t.name.clone(),
                index,
                id: out.len() as u32,
            });
        }
    }
    out
}

/// What [`Dataplane::apply`] did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ApplyReport {
    /// Every table of the config, in config order.
    pub tables: Vec<TableReport>,
    /// Binds written.
    pub binds: usize,
    /// VIP entries in the config.
    pub vips: usize,
    /// VIP entries deleted (no longer in the config).
    pub vips_removed: usize,
    /// Backend entries in the config (one per table and address).
    pub backends: usize,
    /// Backend entries written (new, or changed MAC).
    pub backends_written: usize,
    /// Backends without a known MAC (sent to the gateway MAC, or dropped
    /// as `encap_failure` when there is none).
    pub unresolved_macs: usize,
    /// The path MTU written.
    pub path_mtu: PathMtu,
}

/// What happened to one table in [`Dataplane::apply`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TableReport {
    /// The table's name.
    pub name: String,
    /// Its id (index of `DIR_TABLE_HEADS`).
    pub id: u32,
    /// The slot the director reads after the update.
    pub active: u32,
    /// Whether the update wrote the idle slot and flipped to it (false: the
    /// rows and key were unchanged).
    pub flipped: bool,
    /// Rows written into the idle slot.
    pub rows_written: usize,
}

/// The director's counters, summed over CPUs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Stats {
    /// Every [`DirectorStat`] with its count, in index order.
    pub outcomes: Vec<(DirectorStat, u64)>,
    /// Traffic of every bind of the live config, by bind id.
    pub per_bind: Vec<BindStats>,
    /// Traffic to every backend of the live config as primary, by table
    /// name, then address.
    pub per_backend: Vec<BackendStats>,
}

impl Stats {
    /// The count of `stat`.
    pub fn get(&self, stat: DirectorStat) -> u64 {
        self.outcomes
            .iter()
            .find(|(s, _)| *s == stat)
            .map_or(0, |(_, n)| *n)
    }
}

/// One bind's traffic.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BindStats {
    /// The bind id (see [`bind_ids`]).
    pub bind: u32,
    /// Packets encapsulated.
    pub packets: u64,
    /// Their bytes as received.
    pub bytes: u64,
}

/// One backend's traffic: what was encapsulated to it as the primary of
/// its table's rows.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BackendStats {
    /// The table's name.
    pub table: String,
    /// The backend's address.
    pub addr: IpAddr,
    /// Its index in `DIR_BACKENDS` and `DIR_BACKEND_STATS`.
    pub index: u32,
    /// Packets encapsulated to it.
    pub packets: u64,
    /// Their bytes as received.
    pub bytes: u64,
}

/// What one row slot of a table holds, as far as this process knows.
#[derive(Clone, Debug)]
enum SlotRows {
    /// Never written: zero, as the map was created.
    Zero,
    /// Exactly these rows.
    Known(Box<[TableRow]>),
    /// A write failed part-way: rewrite every row.
    Unknown,
}

/// What this process has written for one table id.
#[derive(Clone, Debug)]
struct TableState {
    active: u32,
    rows: [SlotRows; TABLE_SLOTS as usize],
    /// The hash key whose SipHash state each slot's head holds, and the
    /// slot's hops and path MTU limit, if known.
    heads: [Option<SlotHead>; TABLE_SLOTS as usize],
}

/// What the table head says of one slot.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct SlotHead {
    key: [u8; 16],
    hops: u8,
    /// [`TableHead::encap`].
    encap: u8,
    /// The longest original packet that fits the path MTU once
    /// encapsulated ([`TableHead::max_inner`]).
    max_inner: u16,
}

impl Default for TableState {
    /// Fresh maps: zero rows, and zero key states, which no key gives (the
    /// all-zero key's state is not zero), so the first update writes one.
    fn default() -> Self {
        TableState {
            active: 0,
            rows: [SlotRows::Zero, SlotRows::Zero],
            heads: [None, None],
        }
    }
}

/// A VIP key: prefix length (in LPM key bits) and data. Full-length
/// prefixes (single addresses) go to the host VIP table `DIR_VIP_TABLE`,
/// others to `DIR_VIPS`.
type VipMapKey = (u32, VipKey);

/// Whether `k` is a single address (an entry of `DIR_VIP_TABLE`).
fn is_host((len, key): &VipMapKey) -> bool {
    let bits = if key.family == proto::maps::FAMILY_V4 {
        32
    } else {
        128
    };
    *len == lpm_prefix_len(bits)
}

/// `VIP_PREFIXES_*` bits of the families with entries in `DIR_VIPS`.
fn vip_prefix_families<'a>(keys: impl Iterator<Item = &'a VipMapKey>) -> u8 {
    keys.filter(|k| !is_host(k))
        .map(|(_, key)| {
            if key.family == proto::maps::FAMILY_V4 {
                VIP_PREFIXES_V4
            } else {
                VIP_PREFIXES_V6
            }
        })
        .fold(0, |a, b| a | b)
}

/// One slot's worth of the host VIP table (see [`VipSlot`]).
#[derive(Clone, Debug, PartialEq, Eq)]
struct VipTableImage {
    mult: u64,
    bits: u8,
    /// The entries from the slot's first on; the rest of the slot is
    /// unreachable.
    entries: Vec<VipSlot>,
}

/// Multipliers tried per table size.
const VIP_MULT_TRIES: usize = 64;

/// The host VIP table of the single-address VIPs of `vips`: the smallest
/// table (at least twice the VIPs) and multiplier under which every VIP
/// sits in its home entry, else, at the largest size, the multiplier that
/// keeps the VIPs nearest their homes (within [`VIP_TABLE_PROBES`]).
/// Deterministic: the same VIPs give the same table.
fn build_vip_table(vips: &HashMap<VipMapKey, VipEntry>) -> Result<VipTableImage, CheckError> {
    let mut hosts: Vec<(u64, [u64; 2], VipEntry)> = vips
        .iter()
        .filter(|(k, _)| is_host(k))
        .map(|((_, k), v)| (u64::from(k.family), VipSlot::addr_words(&k.addr), *v))
        .collect();
    hosts.sort_by_key(|h| (h.0, h.1));
    let min_bits = (2 * hosts.len())
        .next_power_of_two()
        .trailing_zeros()
        .max(1) as u8;
    // splitmix64, fixed seed.
    let mut state: u64 = 0x243f_6a88_85a3_08d3;
    let mut next = move || {
        state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    };
    // (largest displacement, bits, multiplier) of the best so far.
    let mut best: Option<(u32, u8, u64)> = None;
    let place = |mult: u64, bits: u8, out: Option<&mut Vec<VipSlot>>| -> u32 {
        let len = (1usize << bits) + VIP_TABLE_PROBES as usize;
        let mut used = vec![false; len];
        let mut worst = 0;
        let mut out = out;
        for (family, addr, entry) in &hosts {
            let home = vip_home(vip_fold(*addr), mult, bits) as usize;
            let Some(at) = (home..len).find(|&i| !used[i]) else {
                return u32::MAX;
            };
            used[at] = true;
            worst = worst.max((at - home) as u32);
            if let Some(out) = out.as_deref_mut() {
                out[at] = VipSlot {
                    family: *family,
                    addr: *addr,
                    entry: *entry,
                };
            }
        }
        worst
    };
    'search: for bits in min_bits..=VIP_TABLE_MAX_BITS {
        for _ in 0..VIP_MULT_TRIES {
            let mult = next() | 1;
            let worst = place(mult, bits, None);
            if best.is_none_or(|(w, ..)| worst < w) {
                best = Some((worst, bits, mult));
            }
            if worst == 0 {
                break 'search;
            }
        }
    }
    let (worst, bits, mult) = best.unwrap_or((0, 1, 1));
    if worst >= VIP_TABLE_PROBES {
        return Err(CheckError::VipTable { count: hosts.len() });
    }
    let mut entries = vec![VipSlot::default(); (1usize << bits) + VIP_TABLE_PROBES as usize];
    place(mult, bits, Some(&mut entries));
    Ok(VipTableImage {
        mult,
        bits,
        entries,
    })
}

/// `settings` with the host VIP table fields of `from`.
fn with_vip_table(settings: DirectorSettings, from: &DirectorSettings) -> DirectorSettings {
    DirectorSettings {
        vip_slot: from.vip_slot,
        vip_bits: from.vip_bits,
        vip_mult: from.vip_mult,
        ..settings
    }
}

/// Everything the maps hold, as last written by this process.
#[derive(Debug, Default)]
struct Written {
    /// Table name -> table id, for the tables of the live config.
    table_ids: HashMap<String, u32>,
    /// By table id.
    tables: Vec<TableState>,
    /// (table name, backend address) -> backend index, for the live config.
    backend_index: HashMap<(String, IpAddr), u32>,
    /// Backend entries by index (only those of the live config are
    /// meaningful).
    backends: BTreeMap<u32, BackendEntry>,
    /// VIP entries.
    vips: HashMap<VipMapKey, VipEntry>,
    /// The live slot of the host VIP table, if known.
    vip_table: Option<VipTableImage>,
    /// By bind id: whose bind it is and its table id.
    binds: Vec<(String, Bind, u32)>,
    /// Bind ids written (at least the live ones).
    bind_slots_used: u32,
    settings: Option<DirectorSettings>,
    /// After adopting pinned maps: table ids and backend indexes that the
    /// live slots (written by an earlier process) may reference. Not
    /// reused for another table or backend until the first update is done.
    reserved_tables: BTreeSet<u32>,
    reserved_backends: BTreeSet<u32>,
}

/// The loaded director: its object, program and maps, and what this
/// process wrote into them.
pub struct Dataplane {
    ebpf: Ebpf,
    written: Written,
    /// The MTU of the interface the director runs on, if it has one: the
    /// path MTU when the config sets none ([`Dataplane::set_link_mtu`]).
    link_mtu: Option<(String, u32)>,
}

impl fmt::Debug for Dataplane {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Dataplane")
            .field("tables", &self.written.table_ids)
            .field("backends", &self.written.backend_index.len())
            .field("vips", &self.written.vips.len())
            .field("binds", &self.written.binds.len())
            .finish_non_exhaustive()
    }
}

/// Everything an update writes, computed and checked before any write.
struct Plan {
    settings: DirectorSettings,
    /// Tables in config order: name, id, rows, hash key and hops.
    tables: Vec<(String, u32, Vec<TableRow>, SlotHead)>,
    backend_index: HashMap<(String, IpAddr), u32>,
    backends: BTreeMap<u32, BackendEntry>,
    vips: HashMap<VipMapKey, VipEntry>,
    vip_table: VipTableImage,
    binds: Vec<(String, Bind, u32)>,
    table_ids: HashMap<String, u32>,
    unresolved_macs: usize,
    path_mtu: PathMtu,
}

impl Dataplane {
    /// Loads the object and the director program (not attached). Needs root.
    pub fn load() -> Result<Self, DataplaneError> {
        Self::from_ebpf(load_director()?)
    }

    /// As [`Dataplane::load`], from another build of the director's object
    /// (the director benchmark compares builds in one run); its maps must
    /// have this build's layout.
    pub fn load_object(object: &[u8]) -> Result<Self, DataplaneError> {
        let mut ebpf =
            Ebpf::load(object).map_err(|e| DataplaneError::Load(LoadError::Object(e)))?;
        load_xdp(&mut ebpf, DIRECTOR_PROGRAM)?;
        Self::from_ebpf(ebpf)
    }

    fn from_ebpf(ebpf: Ebpf) -> Result<Self, DataplaneError> {
        let mut dp = Dataplane {
            ebpf,
            written: Written::default(),
            link_mtu: None,
        };
        dp.written.tables = vec![TableState::default(); MAX_TABLES as usize];
        // Fail now, not at the first apply, if a map is missing or has
        // another layout than `proto::maps` says.
        dp.check_maps()?;
        Ok(dp)
    }

    /// Loads the object with the director's maps pinned in `dir` (a
    /// directory on bpffs, which must exist): maps pinned there already are
    /// reused, if their type, key and value sizes, entries and flags are
    /// those of this build (else the load fails), and the others are
    /// created and pinned. Returns whether maps were reused; if so, what
    /// they hold is read back ([`Dataplane::apply`] then writes idle slots
    /// only and never reuses what the live slots point at).
    pub fn load_pinned(dir: &Path) -> Result<(Self, bool), DataplaneError> {
        let reused = PINNED_MAPS.iter().any(|n| dir.join(n).exists());
        let mut loader = EbpfLoader::new();
        for name in PINNED_MAPS {
            loader.map_pin_path(name, dir.join(name));
        }
        let mut ebpf = loader
            .load(crate::director_object())
            .map_err(|e| DataplaneError::Load(LoadError::Object(e)))?;
        load_xdp(&mut ebpf, DIRECTOR_PROGRAM)?;
        let mut dp = Dataplane {
            ebpf,
            written: Written::default(),
            link_mtu: None,
        };
        dp.written.tables = vec![TableState::default(); MAX_TABLES as usize];
        dp.check_maps()?;
        if reused {
            dp.read_back()?;
        }
        Ok((dp, reused))
    }

    /// Rebuilds what `written` knows from maps an earlier process wrote.
    fn read_back(&mut self) -> Result<(), DataplaneError> {
        let read = |map: &'static str, what: String| {
            move |source| DataplaneError::Read { map, what, source }
        };
        let settings = array::<DirectorSettings>(&mut self.ebpf, names::SETTINGS)?
            .get(&0, 0)
            .map_err(read(names::SETTINGS, "the settings".into()))?;
        self.written.settings = Some(settings);
        // Tables the binds point at (an unused bind reads as table 0).
        let mut live_tables = BTreeSet::new();
        {
            let binds = array::<BindInfo>(&mut self.ebpf, names::BINDS)?;
            for id in 0..MAX_BINDS {
                let b = binds
                    .get(&id, 0)
                    .map_err(read(names::BINDS, format!("bind {id}")))?;
                if b.table < MAX_TABLES {
                    live_tables.insert(b.table);
                }
            }
        }
        // Unused bind ids are rewritten (zeroed) by the first update.
        self.written.bind_slots_used = MAX_BINDS;
        let mut live_hops = BTreeMap::new();
        {
            let heads = array::<TableHead>(&mut self.ebpf, names::TABLE_HEADS)?;
            for id in 0..MAX_TABLES {
                let h = heads
                    .get(&id, 0)
                    .map_err(read(names::TABLE_HEADS, format!("table {id}")))?;
                self.written.tables[id as usize] = TableState {
                    active: h.active & 1,
                    rows: [SlotRows::Unknown, SlotRows::Unknown],
                    heads: [None, None],
                };
                live_hops.insert(id, h.hops[(h.active & 1) as usize]);
            }
        }
        let mut reserved = BTreeSet::new();
        {
            let rows = array::<TableRow>(&mut self.ebpf, names::TABLES)?;
            for &id in &live_tables {
                let active = self.written.tables[id as usize].active;
                // The chain's entries that packets use; the rest are zero.
                let used = 1 + usize::from(live_hops.get(&id).copied().unwrap_or(0));
                for row in 0..TABLE_ROWS {
                    let r = rows.get(&row_index(id, active, row), 0).map_err(read(
                        names::TABLES,
                        format!("row {row} of slot {active} of table {id}"),
                    ))?;
                    reserved.extend(r.chain.iter().take(used).map(|&i| u32::from(i)));
                }
            }
        }
        {
            let vips = vip_map(&mut self.ebpf)?;
            for item in vips.iter() {
                let (k, v) = item.map_err(read(names::VIPS, "the VIP prefixes".into()))?;
                self.written.vips.insert((k.prefix_len(), k.data()), v);
            }
        }
        self.written.reserved_tables = live_tables;
        self.written.reserved_backends = reserved;
        Ok(())
    }

    /// The director program, for attaching or `BPF_PROG_TEST_RUN`.
    pub fn program_mut(&mut self) -> &mut Xdp {
        self.ebpf
            .program_mut(DIRECTOR_PROGRAM)
            .and_then(|p| <&mut Xdp>::try_from(p).ok())
            .expect("Dataplane::load checked that the object has the XDP program `director`")
    }

    /// The director program, for `BPF_PROG_TEST_RUN`.
    pub fn program(&self) -> &Xdp {
        xdp_program(&self.ebpf, DIRECTOR_PROGRAM)
            .expect("Dataplane::load checked that the object has the XDP program `director`")
    }

    /// Loads another XDP program of the same object (the benchmark
    /// references, [`crate::BENCH_FLOOR_PROGRAM`],
    /// [`crate::BENCH_MIN_ENCAP_PROGRAM`] and
    /// [`crate::BENCH_SIPHASH_PROGRAM`]) and returns it, attached to nothing.
    pub fn load_program(&mut self, name: &str) -> Result<&mut Xdp, DataplaneError> {
        Ok(load_xdp(&mut self.ebpf, name)?)
    }

    /// The loaded object, to read its maps directly.
    pub fn ebpf(&self) -> &Ebpf {
        &self.ebpf
    }

    /// The id (index of `DIR_TABLE_HEADS`) of the live config's table `name`.
    pub fn table_id(&self, name: &str) -> Option<u32> {
        self.written.table_ids.get(name).copied()
    }

    /// The backend index (in `DIR_BACKENDS`) of `addr` in table `table` of
    /// the live config.
    pub fn backend_index(&self, table: &str, addr: IpAddr) -> Option<u32> {
        self.written
            .backend_index
            .get(&(table.to_string(), addr))
            .copied()
    }

    /// Checks `config` for what the data plane needs and can hold, builds
    /// every table, and writes all maps; each table's rows and hash key go
    /// to the idle slot, then that table's active slot flips. Nothing is
    /// written if the check fails. `mac_of(backend_ip)` gives the next-hop
    /// MAC when known.
    pub fn apply(
        &mut self,
        config: &Config,
        mac_of: &dyn Fn(IpAddr) -> Option<[u8; 6]>,
    ) -> Result<ApplyReport, DataplaneError> {
        let plan = self.plan(config, mac_of)?;
        self.write(plan)
    }

    /// Sets the MTU of the interface the director runs on (`interface`
    /// names it in messages): the path MTU toward the backends when the
    /// config has no `director.mtu`, from the next [`Dataplane::apply`] on.
    /// Without it (`director-xdp replay`, tests) such a config sets no
    /// limit.
    pub fn set_link_mtu(&mut self, interface: &str, mtu: u32) {
        self.link_mtu = Some((interface.to_string(), mtu));
    }

    /// The path MTU [`Dataplane::apply`] writes for `config`:
    /// `director.mtu`, else the interface's ([`Dataplane::set_link_mtu`]),
    /// else none.
    pub fn path_mtu(&self, config: &Config) -> PathMtu {
        match (config.director.mtu, &self.link_mtu) {
            (Some(mtu), _) => PathMtu::Config(mtu),
            (None, Some((interface, mtu))) => PathMtu::Interface {
                interface: interface.clone(),
                mtu: *mtu,
            },
            (None, None) => PathMtu::None,
        }
    }

    /// The path MTU the director applies now (as last written), `None` for
    /// no limit.
    pub fn live_path_mtu(&self) -> Option<u32> {
        self.written
            .settings
            .map(|s| s.mtu)
            .filter(|mtu| *mtu != proto::mtu::NO_LIMIT)
    }

    /// Rewrites only the MACs of the backend entries (neighbour changes), no
    /// table change. Returns the number of entries rewritten.
    pub fn refresh_macs(
        &mut self,
        mac_of: &dyn Fn(IpAddr) -> Option<[u8; 6]>,
    ) -> Result<usize, DataplaneError> {
        let mut changed: Vec<(u32, BackendEntry)> = Vec::new();
        let live: BTreeSet<u32> = self.written.backend_index.values().copied().collect();
        for index in live {
            let Some(old) = self.written.backends.get(&index) else {
                continue;
            };
            let Some(addr) = old.ip() else { continue };
            let new = backend_entry(addr, mac_of(addr));
            if new != *old {
                changed.push((index, new));
            }
        }
        let mut map = array::<BackendEntry>(&mut self.ebpf, names::BACKENDS)?;
        for (index, entry) in &changed {
            set(&mut map, names::BACKENDS, *index, entry, || {
                format!("backend {index}")
            })?;
        }
        let n = changed.len();
        self.written.backends.extend(changed);
        Ok(n)
    }

    /// Sums the per-CPU counters.
    pub fn stats(&self) -> Result<Stats, DataplaneError> {
        let outcomes = sum_counters(&self.ebpf, names::STATS, &DirectorStat::ALL, |s| {
            (s.index(), s.name())
        })?;
        let map = self
            .ebpf
            .map(names::BIND_STATS)
            .ok_or_else(|| missing(names::BIND_STATS))?;
        let binds: PerCpuArray<&MapData, BindCounters> =
            PerCpuArray::try_from(map).map_err(|source| DataplaneError::Map {
                name: names::BIND_STATS,
                source,
            })?;
        let mut per_bind = Vec::with_capacity(self.written.binds.len());
        for bind in 0..self.written.binds.len() as u32 {
            let values = binds.get(&bind, 0).map_err(|source| DataplaneError::Read {
                map: names::BIND_STATS,
                what: format!("bind {bind}"),
                source,
            })?;
            let mut s = BindStats {
                bind,
                ..BindStats::default()
            };
            for v in values.iter() {
                s.packets += v.packets;
                s.bytes += v.bytes;
            }
            per_bind.push(s);
        }
        let map = self
            .ebpf
            .map(names::BACKEND_STATS)
            .ok_or_else(|| missing(names::BACKEND_STATS))?;
        let counters: PerCpuArray<&MapData, BackendCounters> =
            PerCpuArray::try_from(map).map_err(|source| DataplaneError::Map {
                name: names::BACKEND_STATS,
                source,
            })?;
        let mut live: Vec<(&(String, IpAddr), &u32)> = self.written.backend_index.iter().collect();
        live.sort();
        let mut per_backend = Vec::with_capacity(live.len());
        for ((table, addr), &index) in live {
            let values = counters
                .get(&index, 0)
                .map_err(|source| DataplaneError::Read {
                    map: names::BACKEND_STATS,
                    what: format!("backend {index} ({addr} of table {table:?})"),
                    source,
                })?;
            let mut s = BackendStats {
                table: table.clone(),
                addr: *addr,
                index,
                packets: 0,
                bytes: 0,
            };
            for v in values.iter() {
                s.packets += v.packets;
                s.bytes += v.bytes;
            }
            per_backend.push(s);
        }
        Ok(Stats {
            outcomes,
            per_bind,
            per_backend,
        })
    }

    fn check_maps(&mut self) -> Result<(), DataplaneError> {
        array::<BindInfo>(&mut self.ebpf, names::BINDS)?;
        array::<TableHead>(&mut self.ebpf, names::TABLE_HEADS)?;
        array::<TableRow>(&mut self.ebpf, names::TABLES)?;
        array::<BackendEntry>(&mut self.ebpf, names::BACKENDS)?;
        array::<DirectorSettings>(&mut self.ebpf, names::SETTINGS)?;
        vip_map(&mut self.ebpf)?;
        array::<VipSlot>(&mut self.ebpf, names::VIP_TABLE)?;
        bind_stats_map(&mut self.ebpf)?;
        backend_stats_map(&mut self.ebpf)?;
        self.stats()?;
        Ok(())
    }

    /// Checks `config` and computes every map value; writes nothing.
    fn plan(
        &self,
        config: &Config,
        mac_of: &dyn Fn(IpAddr) -> Option<[u8; 6]>,
    ) -> Result<Plan, DataplaneError> {
        check_limits(config)?;

        // Table ids: a table keeps its id; a new one takes a free id, first
        // one that no table used before this update (the ids of tables
        // removed now are still referenced by binds until those are
        // rewritten).
        let mut table_ids = HashMap::new();
        for t in &config.tables {
            if let Some(&id) = self.written.table_ids.get(&t.name) {
                table_ids.insert(t.name.clone(), id);
            }
        }
        let previously_used: BTreeSet<u32> = self
            .written
            .table_ids
            .values()
            .chain(&self.written.reserved_tables)
            .copied()
            .collect();
        let mut free: Vec<u32> = (0..MAX_TABLES)
            .filter(|id| !previously_used.contains(id))
            .chain(previously_used.iter().copied())
            .filter(|id| !table_ids.values().any(|v| v == id))
            .collect();
        free.reverse();
        for t in &config.tables {
            if !table_ids.contains_key(&t.name) {
                // `check_limits` allowed at most MAX_TABLES tables.
                let id = free.pop().ok_or(CheckError::TooManyTables {
                    count: config.tables.len(),
                    max: MAX_TABLES,
                })?;
                table_ids.insert(t.name.clone(), id);
            }
        }
        let vips = compile_vips(config, &table_ids)?;
        let vip_table = build_vip_table(&vips)?;

        // Backend indexes: kept per (table, address); new ones from indexes
        // the previous config did not use, which no live slot references.
        let mut backend_index = HashMap::new();
        for t in &config.tables {
            for b in &t.backends {
                let k = (t.name.clone(), b.backend.addr);
                if let Some(&i) = self.written.backend_index.get(&k) {
                    backend_index.insert(k, i);
                }
            }
        }
        let in_use: BTreeSet<u32> = self
            .written
            .backend_index
            .values()
            .chain(backend_index.values())
            .chain(&self.written.reserved_backends)
            .copied()
            .collect();
        let mut free = (0..MAX_BACKENDS).filter(|i| !in_use.contains(i));
        let mut backends = BTreeMap::new();
        let mut unresolved_macs = 0;
        let path_mtu = self.path_mtu(config);
        let mtu = path_mtu.value();
        if path_mtu != PathMtu::None {
            proto::config::check_path_mtu(mtu, &config.tables).map_err(|reason| {
                CheckError::PathMtu {
                    mtu: path_mtu.clone(),
                    reason,
                }
            })?;
        }
        let mut tables = Vec::with_capacity(config.tables.len());
        for t in &config.tables {
            let table = t.rendezvous().map_err(|source| CheckError::Table {
                table: t.name.clone(),
                source,
            })?;
            // Rendezvous index -> backend index.
            let mut global = HashMap::new();
            for (local, b) in table.backends() {
                let k = (t.name.clone(), b.addr);
                let index = match backend_index.get(&k) {
                    Some(&i) => i,
                    None => {
                        // At most MAX_CONFIG_BACKENDS are live before and
                        // after, so half the array is always free.
                        let i = free.next().ok_or(CheckError::TooManyBackends {
                            table: t.name.clone(),
                            count: t.backends.len(),
                            total: backend_index.len() + 1,
                            max: MAX_CONFIG_BACKENDS,
                        })?;
                        backend_index.insert(k, i);
                        i
                    }
                };
                let mac = mac_of(b.addr);
                if mac.is_none() {
                    unresolved_macs += 1;
                }
                backends.insert(index, backend_entry(b.addr, mac));
                global.insert(local, index);
            }
            let rows: Vec<TableRow> = table
                .rows()
                .iter()
                .map(|chain| {
                    let mut row = TableRow::default();
                    for (e, local) in row.chain.iter_mut().zip(chain.iter()) {
                        // Indexes are below MAX_BACKENDS, which u16 holds.
                        *e = global.get(local).map_or(0, |&i| i as u16);
                    }
                    row
                })
                .collect();
            let outer_v6 = t.backends.first().is_some_and(|b| b.backend.addr.is_ipv6());
            let head = SlotHead {
                key: t.hash_key,
                hops: table.hops(),
                encap: t.encap.map_value(),
                max_inner: if mtu == proto::mtu::NO_LIMIT {
                    NO_INNER_LIMIT
                } else {
                    // At most MAX_MTU less the encapsulation: below the
                    // sentinel.
                    let hops = usize::from(table.hops());
                    let limit = proto::mtu::max_inner_len(mtu, t.encap, outer_v6, hops);
                    u16::try_from(limit).unwrap_or(NO_INNER_LIMIT - 1)
                },
            };
            tables.push((t.name.clone(), table_ids[&t.name], rows, head));
        }

        let d = &config.director;
        let settings = DirectorSettings {
            mtu,
            src_v4: d.source_v4.map_or([0; 4], |a| a.octets()),
            src_v6: d.source_v6.map_or([0; 16], |a| a.octets()),
            gateway_mac: d.gateway_mac.unwrap_or([0; 6]),
            hash_fields: d.hash_fields.0,
            vip_prefixes: vip_prefix_families(vips.keys()),
            // The host VIP table's fields are the live ones (`write`).
            ..DirectorSettings::default()
        };
        let binds = config
            .tables
            .iter()
            .flat_map(|t| {
                let id = table_ids[&t.name];
                t.binds.iter().map(move |b| (t.name.clone(), *b, id))
            })
            .collect();
        Ok(Plan {
            settings,
            tables,
            backend_index,
            backends,
            vips,
            vip_table,
            binds,
            table_ids,
            unresolved_macs,
            path_mtu,
        })
    }

    /// Writes `plan` in an order that keeps every packet on a consistent
    /// path: what a table will point at exists before the table flips, and
    /// what a VIP entry will point at exists before the entry.
    fn write(&mut self, plan: Plan) -> Result<ApplyReport, DataplaneError> {
        let mut report = ApplyReport {
            binds: plan.binds.len(),
            vips: plan.vips.len(),
            backends: plan.backend_index.len(),
            unresolved_macs: plan.unresolved_macs,
            path_mtu: plan.path_mtu.clone(),
            ..ApplyReport::default()
        };

        // 1. Settings. A source address the new config drops is kept until
        //    the end: tables of that family may be live until they flip;
        //    so is a family's VIP prefix flag, while its prefixes are.
        let mut first = plan.settings;
        first.vip_prefixes |= vip_prefix_families(self.written.vips.keys());
        if let Some(old) = self.written.settings {
            first = with_vip_table(first, &old);
            if first.src_v4 == [0; 4] {
                first.src_v4 = old.src_v4;
            }
            if first.src_v6 == [0; 16] {
                first.src_v6 = old.src_v6;
            }
        }
        self.write_settings(first)?;

        // 2. Backend entries: new indexes, and MACs that changed.
        {
            let mut map = array::<BackendEntry>(&mut self.ebpf, names::BACKENDS)?;
            for (&index, entry) in &plan.backends {
                if self.written.backends.get(&index) == Some(entry) {
                    continue;
                }
                set(&mut map, names::BACKENDS, index, entry, || {
                    format!("backend {index} ({:?})", entry.ip())
                })?;
                self.written.backends.insert(index, *entry);
                report.backends_written += 1;
            }
        }

        // 2b. Fresh counters for indexes new to the live config (an index
        //     freed by a removed backend may be given to another), before
        //     any table points at them.
        {
            let live: BTreeSet<u32> = self.written.backend_index.values().copied().collect();
            let fresh: BTreeSet<u32> = plan
                .backend_index
                .values()
                .copied()
                .filter(|i| !live.contains(i))
                .collect();
            if !fresh.is_empty() {
                let nr_cpus = nr_cpus()?;
                let mut counters = backend_stats_map(&mut self.ebpf)?;
                for index in fresh {
                    let zero = PerCpuValues::try_from(vec![BackendCounters::default(); nr_cpus])
                        .map_err(|source| DataplaneError::Cpus {
                            path: "/sys/devices/system/cpu/possible",
                            source,
                        })?;
                    counters
                        .set(index, zero, 0)
                        .map_err(|source| DataplaneError::Write {
                            map: names::BACKEND_STATS,
                            what: format!("zeroed counters of backend {index}"),
                            source,
                        })?;
                }
            }
        }

        // 3. Tables: the idle slot, then the flip.
        for (name, id, rows, head) in &plan.tables {
            report
                .tables
                .push(self.write_table(name, *id, rows, *head)?);
        }

        // 4. Binds -> tables, and fresh counters for ids that now belong to
        //    another bind.
        {
            let nr_cpus = nr_cpus()?;
            let mut binds = array::<BindInfo>(&mut self.ebpf, names::BINDS)?;
            for (id, (table, bind, table_id)) in plan.binds.iter().enumerate() {
                let id = id as u32;
                set(
                    &mut binds,
                    names::BINDS,
                    id,
                    &BindInfo {
                        table: *table_id,
                        _pad: 0,
                    },
                    || format!("bind {id} ({bind} of table {table:?})"),
                )?;
            }
            let stale = plan.binds.len() as u32..self.written.bind_slots_used;
            for id in stale.clone() {
                set(&mut binds, names::BINDS, id, &BindInfo::default(), || {
                    format!("unused bind {id}")
                })?;
            }
            let mut counters = bind_stats_map(&mut self.ebpf)?;
            let changed = plan.binds.iter().enumerate().filter(|(id, b)| {
                self.written
                    .binds
                    .get(*id)
                    .is_none_or(|old| old.0 != b.0 || old.1 != b.1)
            });
            for id in changed.map(|(id, _)| id as u32).chain(stale) {
                let zero = PerCpuValues::try_from(vec![BindCounters::default(); nr_cpus]).map_err(
                    |source| DataplaneError::Cpus {
                        path: "/sys/devices/system/cpu/possible",
                        source,
                    },
                )?;
                counters
                    .set(id, zero, 0)
                    .map_err(|source| DataplaneError::Write {
                        map: names::BIND_STATS,
                        what: format!("zeroed counters of bind {id}"),
                        source,
                    })?;
            }
        }
        self.written.bind_slots_used = self.written.bind_slots_used.max(plan.binds.len() as u32);
        self.written.binds = plan.binds;

        // 5. VIP entries: new and changed prefixes first, then the host
        //    table (idle slot, then the flip), then the prefixes gone.
        {
            for (k, v) in &plan.vips {
                if is_host(k) || self.written.vips.get(k) == Some(v) {
                    continue;
                }
                let mut vips = vip_map(&mut self.ebpf)?;
                vips.insert(&Key::new(k.0, k.1), v, 0)
                    .map_err(|source| DataplaneError::Write {
                        map: names::VIPS,
                        what: format!("VIP {}", show_vip(k)),
                        source,
                    })?;
                self.written.vips.insert(*k, *v);
            }
            self.write_vip_table(&plan.vip_table)?;
            report.vips_removed += self
                .written
                .vips
                .keys()
                .filter(|k| is_host(k) && !plan.vips.contains_key(k))
                .count();
            self.written.vips.retain(|k, _| !is_host(k));
            self.written
                .vips
                .extend(plan.vips.iter().filter(|(k, _)| is_host(k)));
            let gone: Vec<VipMapKey> = self
                .written
                .vips
                .keys()
                .filter(|k| !plan.vips.contains_key(k))
                .copied()
                .collect();
            for k in gone {
                let mut vips = vip_map(&mut self.ebpf)?;
                vips.remove(&Key::new(k.0, k.1))
                    .map_err(|source| DataplaneError::Write {
                        map: names::VIPS,
                        what: format!("deletion of VIP {}", show_vip(&k)),
                        source,
                    })?;
                self.written.vips.remove(&k);
                report.vips_removed += 1;
            }
        }

        // 6. The final settings.
        let live = self.written.settings.unwrap_or_default();
        self.write_settings(with_vip_table(plan.settings, &live))?;

        // 7. Only now are the indexes of removed backends free.
        self.written
            .backends
            .retain(|i, _| plan.backends.contains_key(i));
        self.written.backend_index = plan.backend_index;
        self.written.table_ids = plan.table_ids;
        // Every table flipped and every bind was rewritten: what an
        // earlier process left is no longer referenced.
        self.written.reserved_tables.clear();
        self.written.reserved_backends.clear();
        Ok(report)
    }

    /// Writes `table` to the idle slot of the host VIP table and flips to
    /// it, unless the live slot already holds it.
    fn write_vip_table(&mut self, table: &VipTableImage) -> Result<(), DataplaneError> {
        if self.written.vip_table.as_ref() == Some(table) {
            return Ok(());
        }
        let live = self.written.settings.unwrap_or_default();
        let idle = 1 - (live.vip_slot & 1);
        {
            let mut map = array::<VipSlot>(&mut self.ebpf, names::VIP_TABLE)?;
            for (i, e) in table.entries.iter().enumerate() {
                let i = i as u32;
                set(
                    &mut map,
                    names::VIP_TABLE,
                    u32::from(idle) * VIP_TABLE_STRIDE + i,
                    e,
                    || format!("entry {i} of slot {idle} of the host VIP table"),
                )?;
            }
        }
        // The idle slot's shape first (the live fields unchanged), then the
        // flip: one byte.
        let mut settings = live;
        settings.vip_bits[usize::from(idle)] = table.bits;
        settings.vip_mult[usize::from(idle)] = table.mult;
        self.written.vip_table = None;
        self.write_settings(settings)?;
        settings.vip_slot = idle;
        self.write_settings(settings)?;
        self.written.vip_table = Some(table.clone());
        Ok(())
    }

    fn write_settings(&mut self, settings: DirectorSettings) -> Result<(), DataplaneError> {
        if self.written.settings == Some(settings) {
            return Ok(());
        }
        let mut map = array::<DirectorSettings>(&mut self.ebpf, names::SETTINGS)?;
        set(&mut map, names::SETTINGS, 0, &settings, || {
            "the settings".to_string()
        })?;
        self.written.settings = Some(settings);
        Ok(())
    }

    /// Writes `rows`, the hash key and hops to table `id`'s idle slot and
    /// flips to it, unless the active slot already holds them.
    fn write_table(
        &mut self,
        name: &str,
        id: u32,
        rows: &[TableRow],
        slot_head: SlotHead,
    ) -> Result<TableReport, DataplaneError> {
        let state = self.written.tables[id as usize].clone();
        let active = state.active;
        let idle = 1 - active;
        let same = |slot: u32| {
            state.heads[slot as usize] == Some(slot_head)
                && match &state.rows[slot as usize] {
                    SlotRows::Known(known) => **known == *rows,
                    SlotRows::Zero => rows.iter().all(|r| *r == TableRow::default()),
                    SlotRows::Unknown => false,
                }
        };
        if same(active) {
            return Ok(TableReport {
                name: name.to_string(),
                id,
                active,
                flipped: false,
                rows_written: 0,
            });
        }

        let mut rows_written = 0;
        {
            // Until the slot is complete, nobody may trust its cache.
            self.written.tables[id as usize].rows[idle as usize] = SlotRows::Unknown;
            self.written.tables[id as usize].heads[idle as usize] = None;
            let mut map = array::<TableRow>(&mut self.ebpf, names::TABLES)?;
            for (row, want) in rows.iter().enumerate() {
                let have = match &state.rows[idle as usize] {
                    SlotRows::Known(known) => known.get(row).copied(),
                    SlotRows::Zero => Some(TableRow::default()),
                    SlotRows::Unknown => None,
                };
                if have == Some(*want) {
                    continue;
                }
                let row = row as u32;
                set(
                    &mut map,
                    names::TABLES,
                    row_index(id, idle, row),
                    want,
                    || format!("row {row} of slot {idle} of table {name:?} (id {id})"),
                )?;
                rows_written += 1;
            }
        }
        // The head as it is in the map (what an earlier process wrote
        // included): its live fields are written back unchanged, the idle
        // slot's key and hops first, then the flip.
        let mut heads = array::<TableHead>(&mut self.ebpf, names::TABLE_HEADS)?;
        let mut head = heads.get(&id, 0).map_err(|source| DataplaneError::Read {
            map: names::TABLE_HEADS,
            what: format!("table {name:?} (id {id})"),
            source,
        })?;
        head.keys[idle as usize] = TableKeys::new(&slot_head.key);
        head.hops[idle as usize] = slot_head.hops;
        head.encap[idle as usize] = slot_head.encap;
        head.max_inner[idle as usize] = slot_head.max_inner;
        head._pad2 = [0; 4];
        set(&mut heads, names::TABLE_HEADS, id, &head, || {
            format!("hash key and hops of slot {idle} of table {name:?} (id {id})")
        })?;
        let t = &mut self.written.tables[id as usize];
        t.rows[idle as usize] = SlotRows::Known(rows.into());
        t.heads[idle as usize] = Some(slot_head);

        head.active = idle;
        set(&mut heads, names::TABLE_HEADS, id, &head, || {
            format!("active slot {idle} of table {name:?} (id {id})")
        })?;
        self.written.tables[id as usize].active = idle;
        Ok(TableReport {
            name: name.to_string(),
            id,
            active: idle,
            flipped: true,
            rows_written,
        })
    }
}

// Free functions of the `Ebpf` rather than methods, so that a map can be
// open while `Dataplane::written` is updated.
fn array<'a, V: aya::Pod>(
    ebpf: &'a mut Ebpf,
    name: &'static str,
) -> Result<Array<&'a mut MapData, V>, DataplaneError> {
    let map = ebpf.map_mut(name).ok_or_else(|| missing(name))?;
    Array::try_from(map).map_err(|source| DataplaneError::Map { name, source })
}

fn vip_map(ebpf: &mut Ebpf) -> Result<LpmTrie<&'_ mut MapData, VipKey, VipEntry>, DataplaneError> {
    let map = ebpf
        .map_mut(names::VIPS)
        .ok_or_else(|| missing(names::VIPS))?;
    LpmTrie::try_from(map).map_err(|source| DataplaneError::Map {
        name: names::VIPS,
        source,
    })
}

fn bind_stats_map(
    ebpf: &mut Ebpf,
) -> Result<PerCpuArray<&'_ mut MapData, BindCounters>, DataplaneError> {
    let map = ebpf
        .map_mut(names::BIND_STATS)
        .ok_or_else(|| missing(names::BIND_STATS))?;
    PerCpuArray::try_from(map).map_err(|source| DataplaneError::Map {
        name: names::BIND_STATS,
        source,
    })
}

fn backend_stats_map(
    ebpf: &mut Ebpf,
) -> Result<PerCpuArray<&'_ mut MapData, BackendCounters>, DataplaneError> {
    let map = ebpf
        .map_mut(names::BACKEND_STATS)
        .ok_or_else(|| missing(names::BACKEND_STATS))?;
    PerCpuArray::try_from(map).map_err(|source| DataplaneError::Map {
        name: names::BACKEND_STATS,
        source,
    })
}

fn missing(name: &'static str) -> DataplaneError {
    DataplaneError::Map {
        name,
        source: MapError::InvalidName {
            name: name.to_string(),
        },
    }
}

fn set<V: aya::Pod>(
    map: &mut Array<&mut MapData, V>,
    name: &'static str,
    index: u32,
    value: &V,
    what: impl FnOnce() -> String,
) -> Result<(), DataplaneError> {
    map.set(index, value, 0)
        .map_err(|source| DataplaneError::Write {
            map: name,
            what: what(),
            source,
        })
}

fn nr_cpus() -> Result<usize, DataplaneError> {
    aya::util::nr_cpus()
        .map(|n| n.get() as usize)
        .map_err(|(path, source)| DataplaneError::Cpus { path, source })
}

fn backend_entry(addr: IpAddr, mac: Option<[u8; 6]>) -> BackendEntry {
    let mut e = BackendEntry::new(addr);
    if let Some(mac) = mac {
        e.mac = mac;
        e.flags = BACKEND_MAC_RESOLVED;
    }
    e
}

fn show_vip((len, key): &VipMapKey) -> String {
    let addr = proto::maps::decode_addr(key.family, &key.addr)
        .map_or_else(|| "?".to_string(), |a| a.to_string());
    format!("{addr}/{}", len - proto::maps::LPM_KEY_HEADER_BITS)
}

/// Counts that do not depend on the maps' contents.
fn check_limits(config: &Config) -> Result<(), CheckError> {
    if config.tables.len() > MAX_TABLES as usize {
        return Err(CheckError::TooManyTables {
            count: config.tables.len(),
            max: MAX_TABLES,
        });
    }
    let binds: usize = config.tables.iter().map(|t| t.binds.len()).sum();
    if binds > MAX_BINDS as usize {
        return Err(CheckError::TooManyBinds {
            count: binds,
            max: MAX_BINDS,
        });
    }
    let mut total = 0;
    for t in &config.tables {
        total += t.backends.len();
        if total > MAX_CONFIG_BACKENDS as usize {
            return Err(CheckError::TooManyBackends {
                table: t.name.clone(),
                count: t.backends.len(),
                total,
                max: MAX_CONFIG_BACKENDS,
            });
        }
    }
    for t in &config.tables {
        let has = |v4: bool| t.backends.iter().any(|b| b.backend.addr.is_ipv4() == v4);
        if has(true) && config.director.source_v4.is_none() {
            return Err(CheckError::MissingSource {
                table: t.name.clone(),
                family: "IPv4",
                field: "source_v4",
            });
        }
        if has(false) && config.director.source_v6.is_none() {
            return Err(CheckError::MissingSource {
                table: t.name.clone(),
                family: "IPv6",
                field: "source_v6",
            });
        }
    }
    Ok(())
}

/// The VIP entries of `config`: one per (family, prefix), holding the
/// ranges of both protocols of its own binds and of every shorter
/// configured prefix containing it (the longest match alone then decides),
/// sorted by protocol then ports.
///
/// The limits are those of one entry per (protocol, prefix): at most
/// [`MAX_PORT_RANGES`] ranges of each protocol, at most [`MAX_VIPS`] pairs.
fn compile_vips(
    config: &Config,
    table_ids: &HashMap<String, u32>,
) -> Result<HashMap<VipMapKey, VipEntry>, CheckError> {
    let ids = bind_ids(config);
    // (bind, bind id, table id)
    let all: Vec<(&Bind, u32, u32)> = config
        .tables
        .iter()
        .flat_map(|t| {
            let table = table_ids.get(&t.name).copied().unwrap_or_default();
            t.binds.iter().map(move |b| (b, table))
        })
        .zip(ids.iter().map(|b| b.id))
        .map(|((b, table), id)| (b, id, table))
        .collect();
    let mut groups: BTreeMap<(u8, bool, Vec<u8>, u8), Prefix> = BTreeMap::new();
    for (b, ..) in &all {
        groups.insert(group_key(b), b.prefix);
    }
    if groups.len() > MAX_VIPS as usize {
        return Err(CheckError::TooManyVips {
            count: groups.len(),
            max: MAX_VIPS,
        });
    }
    for ((proto, ..), prefix) in &groups {
        let count = all
            .iter()
            .filter(|(b, ..)| {
                b.proto.number() == *proto
                    && b.prefix.len <= prefix.len
                    && b.prefix.contains(prefix.addr)
            })
            .count();
        if count > MAX_PORT_RANGES {
            return Err(CheckError::TooManyRanges {
                vip: *prefix,
                proto: if *proto == 6 { "tcp" } else { "udp" },
                count,
                max: MAX_PORT_RANGES,
            });
        }
    }
    let mut out = HashMap::with_capacity(groups.len());
    for prefix in groups.values() {
        // One entry per prefix, whichever protocols it has binds of.
        let key = (
            lpm_prefix_len(u32::from(prefix.len)),
            VipKey::new(prefix.addr),
        );
        if out.contains_key(&key) {
            continue;
        }
        let mut ranges: Vec<PortRange> = all
            .iter()
            .filter(|(b, ..)| b.prefix.len <= prefix.len && b.prefix.contains(prefix.addr))
            .map(|(b, id, table)| PortRange {
                start: b.port_start,
                end: b.port_end,
                // `check_limits` keeps ids below MAX_BINDS, and `plan` table
                // ids below MAX_TABLES: both fit.
                bind: *id as u16,
                proto: b.proto.number(),
                table: *table as u8,
            })
            .collect();
        ranges.sort_by_key(|r| (r.proto, r.start, r.end));
        let mut entry = VipEntry {
            count: ranges.len() as u32,
            ..VipEntry::default()
        };
        entry.ranges[..ranges.len()].copy_from_slice(&ranges);
        out.insert(key, entry);
    }
    Ok(out)
}

/// Groups binds by (protocol, family, prefix).
fn group_key(b: &Bind) -> (u8, bool, Vec<u8>, u8) {
    let bytes = match b.prefix.addr {
        IpAddr::V4(a) => a.octets().to_vec(),
        IpAddr::V6(a) => a.octets().to_vec(),
    };
    (
        b.proto.number(),
        b.prefix.addr.is_ipv6(),
        bytes,
        b.prefix.len,
    )
}

const _: () = assert!(TABLE_ROWS as usize == proto::TABLE_ROWS);

// The daemon moves the data plane between tasks and threads.
const _: () = {
    const fn assert_send<T: Send>() {}
    assert_send::<Dataplane>();
};

/// Sums over the CPUs the `u64` counters of the per-CPU array `name`, one
/// for each of `stats` (`at` gives its index and name).
pub(crate) fn sum_counters<S: Copy>(
    ebpf: &Ebpf,
    name: &'static str,
    stats: &[S],
    at: impl Fn(S) -> (u32, &'static str),
) -> Result<Vec<(S, u64)>, DataplaneError> {
    let map = ebpf.map(name).ok_or_else(|| missing(name))?;
    let counters: PerCpuArray<&MapData, u64> =
        PerCpuArray::try_from(map).map_err(|source| DataplaneError::Map { name, source })?;
    stats
        .iter()
        .map(|&stat| {
            let (index, what) = at(stat);
            let values = counters
                .get(&index, 0)
                .map_err(|source| DataplaneError::Read {
                    map: name,
                    what: format!("counter {what}"),
                    source,
                })?;
            Ok((stat, values.iter().sum()))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{Ipv4Addr, Ipv6Addr};

    fn hosts(n: u32) -> HashMap<VipMapKey, VipEntry> {
        (0..n)
            .map(|i| {
                let addr = if i % 2 == 0 {
                    IpAddr::V4(Ipv4Addr::from(0xcb00_7100 + i))
                } else {
                    IpAddr::V6(Ipv6Addr::from(0x2001_0db8_0010_u128 << 80 | u128::from(i)))
                };
                let bits = if addr.is_ipv4() { 32 } else { 128 };
                let entry = VipEntry {
                    count: i,
                    ..VipEntry::default()
                };
                ((lpm_prefix_len(bits), VipKey::new(addr)), entry)
            })
            .collect()
    }

    /// Every host VIP is found by the director's probe, and a prefix is not
    /// in the table.
    fn check(vips: &HashMap<VipMapKey, VipEntry>, t: &VipTableImage) {
        assert_eq!(t.entries.len(), (1 << t.bits) + VIP_TABLE_PROBES as usize);
        for ((_, k), v) in vips.iter().filter(|(k, _)| is_host(k)) {
            let addr = VipSlot::addr_words(&k.addr);
            let home = vip_home(vip_fold(addr), t.mult, t.bits) as usize;
            let found = (home..home + VIP_TABLE_PROBES as usize)
                .map(|i| &t.entries[i])
                .take_while(|e| e.family != 0)
                .find(|e| e.family == u64::from(k.family) && e.addr == addr);
            assert_eq!(found.map(|e| e.entry), Some(*v), "{k:?}");
        }
        let used = t.entries.iter().filter(|e| e.family != 0).count();
        assert_eq!(used, vips.keys().filter(|k| is_host(k)).count());
    }

    #[test]
    fn host_vip_tables_are_found_for_up_to_max_vips_and_are_deterministic() {
        for n in [0, 1, 2, 3, 10, 100, 1000, MAX_VIPS] {
            let vips = hosts(n);
            let t = build_vip_table(&vips).expect("a host VIP table");
            check(&vips, &t);
            assert!(t.bits <= VIP_TABLE_MAX_BITS);
            assert!(1usize << t.bits >= 2 * n as usize, "{n}: {} bits", t.bits);
            assert_eq!(build_vip_table(&vips.clone()).ok(), Some(t));
        }
        // Few VIPs: collision-free, every VIP in its home entry.
        let vips = hosts(10);
        let t = build_vip_table(&vips).expect("a host VIP table");
        for (i, e) in t.entries.iter().enumerate() {
            if e.family != 0 {
                assert_eq!(vip_home(vip_fold(e.addr), t.mult, t.bits) as usize, i);
            }
        }
        // Prefixes stay out of it.
        let mut vips = hosts(4);
        vips.insert(
            (
                lpm_prefix_len(24),
                VipKey::new(IpAddr::V4(Ipv4Addr::new(10, 0, 0, 0))),
            ),
            VipEntry::default(),
        );
        check(&vips, &build_vip_table(&vips).expect("a host VIP table"));
    }
}
