//! The rendezvous forwarding table (docs/spec.md section 4).
//!
//! Every row ranks the backends by a keyed hash of (row, backend address).
//! A row is a chain of 1 + H backends: the primary (the first eligible
//! backend in rank order) and H alternates (the next backends that may hold
//! the row's established flows, in rank order). Adding, draining or failing
//! a backend only changes the rows where it ranks among the first few, and
//! a backend that may still hold flows stays in the chain, which is what
//! lets the backends' second-chance forwarding keep established connections
//! alive through up to H overlapping changes of a row.
//!
//! Scores depend only on the seed, the row and the address, never on a
//! backend's state or health. [`Rendezvous`] therefore keeps, per row, the
//! first [`PREFIX`] entries of the row's ranking, and recomputes only the
//! placement after a state or health change: a change costs a walk over a few
//! entries per row, not 65,536 x N hashes. A row whose prefix is too short
//! to decide (many unsuitable backends ranked first) is re-ranked alone.

use std::cmp::Ordering;
use std::collections::BTreeMap;
use std::net::IpAddr;

use crate::TABLE_ROWS;
use crate::siphash::{SipHasher24, finish_lanes, le_word, siphash24};

/// Entries of each row's ranking kept between updates.
pub const PREFIX: usize = 8;

/// Most alternates a row may have (a table's `hops`, docs/spec.md section 4).
pub const MAX_HOPS: u8 = 3;
/// Alternates per row of a table that does not say.
pub const DEFAULT_HOPS: u8 = 2;
/// Entries of the longest chain: the primary and [`MAX_HOPS`] alternates.
pub const MAX_CHAIN: usize = 1 + MAX_HOPS as usize;
const _: () = assert!(MAX_CHAIN == crate::maps::ROW_CHAIN);

/// One row of a table: the primary, then the alternates in order.
///
/// A fixed array with a length, so that 65,536 of them need no allocation.
/// Equality and hashing look at the used entries only.
#[derive(Clone, Copy)]
pub struct Chain<T: Copy> {
    len: u8,
    entries: [T; MAX_CHAIN],
}

impl<T: Copy> Chain<T> {
    /// `primary`, then `alternates` padded to `hops` entries by repeating
    /// the last one (the primary when there is none), as docs/spec.md section 4
    /// pads a row with too few backends. Alternates past `hops` are
    /// ignored; `hops` counts as at most [`MAX_HOPS`].
    pub fn padded(primary: T, alternates: &[T], hops: u8) -> Self {
        let hops = usize::from(hops.min(MAX_HOPS));
        let mut entries = [primary; MAX_CHAIN];
        let mut last = primary;
        for (i, e) in entries.iter_mut().enumerate().skip(1).take(hops) {
            if let Some(&a) = alternates.get(i - 1) {
                last = a;
            }
            *e = last;
        }
        Chain {
            len: 1 + hops as u8,
            entries,
        }
    }

    /// The chain whose entries are `entries` (primary first), or `None`
    /// when it has none or more than [`MAX_CHAIN`]. A chain of the primary
    /// alone is an IP-in-IP table's row (no hop list).
    pub fn from_slice(entries: &[T]) -> Option<Self> {
        let (&primary, alternates) = entries.split_first()?;
        if alternates.len() > usize::from(MAX_HOPS) {
            return None;
        }
        Some(Self::padded(primary, alternates, alternates.len() as u8))
    }

    /// The backend the packets go to (the outer destination).
    pub fn primary(&self) -> T {
        self.entries[0]
    }

    /// The alternates, in order (the GUE hop list).
    pub fn alternates(&self) -> &[T] {
        &self.entries[1..usize::from(self.len)]
    }

    /// Every entry, the primary first.
    pub fn as_slice(&self) -> &[T] {
        &self.entries[..usize::from(self.len)]
    }

    /// The chain with `f` applied to every entry.
    pub fn map<U: Copy>(&self, mut f: impl FnMut(T) -> U) -> Chain<U> {
        Chain {
            len: self.len,
            entries: self.entries.map(&mut f),
        }
    }
}

impl<T: Copy> core::ops::Deref for Chain<T> {
    type Target = [T];

    fn deref(&self) -> &[T] {
        self.as_slice()
    }
}

impl<T: Copy + PartialEq> PartialEq for Chain<T> {
    fn eq(&self, other: &Self) -> bool {
        self.as_slice() == other.as_slice()
    }
}

impl<T: Copy + Eq> Eq for Chain<T> {}

impl<T: Copy + core::hash::Hash> core::hash::Hash for Chain<T> {
    fn hash<H: core::hash::Hasher>(&self, state: &mut H) {
        self.as_slice().hash(state);
    }
}

impl<T: Copy + core::fmt::Debug> core::fmt::Debug for Chain<T> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_list().entries(self.as_slice()).finish()
    }
}

impl<T: Copy + serde::Serialize> serde::Serialize for Chain<T> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.as_slice().serialize(s)
    }
}

/// `hops` if a table may have it (1 to [`MAX_HOPS`]).
pub fn check_hops(hops: u8) -> Result<u8, TableError> {
    if (1..=MAX_HOPS).contains(&hops) {
        Ok(hops)
    } else {
        Err(TableError::Hops(hops))
    }
}

/// The alternates per row of a table with config `hops` and `encap`: its
/// `hops` for GUE, none for IP-in-IP (no hop list: a row is its primary).
pub fn chain_hops(encap: crate::Encap, hops: u8) -> u8 {
    match encap {
        crate::Encap::Gue => hops,
        crate::Encap::Ipip => 0,
    }
}

/// A backend's administrative state.
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum BackendState {
    /// Takes new and established flows.
    Active,
    /// Being added: placed exactly like `active` (GLB's name for the step
    /// in which the other backends still hold the flows of its rows).
    Filling,
    /// Being removed: takes no new flows (no row as primary while another
    /// backend can serve), keeps its place in the chains, and so its
    /// established flows.
    Draining,
    /// Not ranked at all.
    Inactive,
}

impl BackendState {
    /// Every state.
    pub const ALL: [BackendState; 4] = [
        BackendState::Active,
        BackendState::Filling,
        BackendState::Draining,
        BackendState::Inactive,
    ];

    /// The state of that name (as in configs and the API).
    pub fn from_name(name: &str) -> Option<BackendState> {
        Self::ALL.into_iter().find(|s| s.as_str() == name)
    }

    /// The name used in configs and the API.
    pub fn as_str(self) -> &'static str {
        match self {
            BackendState::Active => "active",
            BackendState::Filling => "filling",
            BackendState::Draining => "draining",
            BackendState::Inactive => "inactive",
        }
    }

    /// Whether a backend in this state takes new flows (`active`, `filling`).
    pub fn serves(self) -> bool {
        matches!(self, BackendState::Active | BackendState::Filling)
    }
}

impl core::fmt::Display for BackendState {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One backend of a table, as the builder needs it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Backend {
    /// The backend's address: the outer destination of its GUE packets.
    pub addr: IpAddr,
    /// Administrative state.
    pub state: BackendState,
    /// Last verdict of the health checks: false = takes no new flows (it
    /// keeps its place in the chains, and so its established flows).
    pub healthy: bool,
    /// Whether the host and its tunnel answer: false = nothing can be
    /// rescued there, it is in no row.
    pub reachable: bool,
}

impl Backend {
    /// A healthy, reachable backend in `state`.
    pub fn new(addr: IpAddr, state: BackendState) -> Self {
        Backend {
            addr,
            state,
            healthy: true,
            reachable: true,
        }
    }

    /// Whether it takes new flows when anyone can (`active` or `filling`,
    /// healthy and reachable): eligible to be a primary.
    pub fn takes_new_flows(&self) -> bool {
        self.state.serves() && self.healthy && self.reachable
    }
}

/// Why a table cannot be built or changed. Nothing is changed when one is
/// returned.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TableError {
    /// A table's backends must share one address family (one hop-list type).
    #[error("backend {other} is not of the same address family as backend {first}")]
    MixedFamilies { first: IpAddr, other: IpAddr },
    /// The same address twice in one table.
    #[error("backend {0} is listed twice")]
    DuplicateBackend(IpAddr),
    /// No backend may take a row: every row would be blackholed.
    #[error("no backend can take traffic: every backend is inactive, or there are none")]
    NoUsableBackend,
    /// A change names a backend the table does not have.
    #[error("backend {0} is not in the table")]
    UnknownBackend(IpAddr),
    /// A table's `hops` out of range.
    #[error("hops {0}: a row has 1 to {MAX_HOPS} alternates (none with IP-in-IP)")]
    Hops(u8),
}

/// Row seed of row `row`: the 8 digest bytes, little-endian (GLB's layout).
pub fn row_seed(seed: &[u8; 16], row: u32) -> [u8; 8] {
    siphash24(seed, &row.to_be_bytes()).to_le_bytes()
}

/// Score of `addr` in the row whose seed is `row_seed`: the digest bytes read
/// big-endian. Rows rank their backends by ascending score.
pub fn score(seed: &[u8; 16], row_seed: &[u8; 8], addr: IpAddr) -> u64 {
    let mut msg = [0u8; 24];
    msg[..8].copy_from_slice(row_seed);
    let len = match addr {
        IpAddr::V4(a) => {
            msg[8..12].copy_from_slice(&a.octets());
            12
        }
        IpAddr::V6(a) => {
            msg[8..24].copy_from_slice(&a.octets());
            24
        }
    };
    siphash24(seed, &msg[..len]).swap_bytes()
}

/// A backend address pre-split into the words the score hash absorbs after
/// the row seed.
#[derive(Clone, Copy, Debug)]
enum AddrWords {
    V4(u64),
    V6(u64, u64),
}

impl AddrWords {
    fn new(addr: IpAddr) -> Self {
        match addr {
            IpAddr::V4(a) => AddrWords::V4(le_word(&a.octets())),
            IpAddr::V6(a) => {
                let o = a.octets();
                AddrWords::V6(le_word(&o[..8]), le_word(&o[8..]))
            }
        }
    }

    /// Score given the hash state after the row seed (`score` without
    /// re-absorbing the seed).
    #[inline(always)]
    fn score(self, row_base: SipHasher24) -> u64 {
        match self {
            AddrWords::V4(w) => row_base.finish(w, 12).swap_bytes(),
            AddrWords::V6(w1, w2) => {
                let mut h = row_base;
                h.write_word(w1);
                h.write_word(w2);
                h.finish(0, 24).swap_bytes()
            }
        }
    }
}

/// The ranked backends of a table laid out for scoring several at once:
/// address words in arrays padded to a multiple of [`MAX_LANES`].
struct LaneSet {
    idx: Vec<u32>,
    w1: Vec<u64>,
    w2: Vec<u64>,
    v6: bool,
}

/// Widest lane count used (AVX-512: 8 x 64 bits).
const MAX_LANES: usize = 8;

impl LaneSet {
    fn new(ranked: &[(u32, AddrWords)]) -> Self {
        let mut set = LaneSet {
            idx: Vec::with_capacity(ranked.len()),
            w1: Vec::new(),
            w2: Vec::new(),
            v6: matches!(ranked.first(), Some((_, AddrWords::V6(..)))),
        };
        for &(i, w) in ranked {
            set.idx.push(i);
            match w {
                AddrWords::V4(a) => set.w1.push(a),
                AddrWords::V6(a, b) => {
                    set.w1.push(a);
                    set.w2.push(b);
                }
            }
        }
        let padded = ranked.len().next_multiple_of(MAX_LANES);
        set.w1.resize(padded, 0);
        set.w2.resize(padded, 0);
        set
    }
}

/// Computes the row seeds of `bases` (rows `first..`) and ranks every
/// backend of `lanes` in them.
#[inline(always)]
fn rank_rows_with<const L: usize>(
    seed: &[u8; 16],
    first: usize,
    bases: &mut [SipHasher24],
    ranks: &mut [RowRank],
    lanes: &LaneSet,
    slots: &[Option<Slot>],
) {
    let n = lanes.idx.len();
    let (w1, _) = lanes.w1.as_chunks::<L>();
    let (w2, _) = lanes.w2.as_chunks::<L>();
    for (k, (base, rank)) in bases.iter_mut().zip(ranks.iter_mut()).enumerate() {
        base.write_word(u64::from_le_bytes(row_seed(seed, (first + k) as u32)));
        for (c, a) in w1.iter().enumerate() {
            let scores = if lanes.v6 {
                finish_lanes(base, &[*a, w2[c]], &[0; L], 24)
            } else {
                finish_lanes(base, &[], a, 12)
            };
            let start = c * L;
            for (j, score) in scores.iter().enumerate().take(n.saturating_sub(start)) {
                rank.offer(score.swap_bytes(), lanes.idx[start + j], slots, true);
            }
        }
    }
}

/// AVX-512 scoring: 8 backends per instruction, and a vector compare that
/// skips the 8 at once when none ranks within the row's prefix (the common
/// case once the prefix is full).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw")]
fn rank_rows_avx512(
    seed: &[u8; 16],
    first: usize,
    bases: &mut [SipHasher24],
    ranks: &mut [RowRank],
    lanes: &LaneSet,
    slots: &[Option<Slot>],
) {
    use core::arch::x86_64::*;

    #[inline]
    #[target_feature(enable = "avx512f")]
    fn round(v: &mut [__m512i; 4]) {
        v[0] = _mm512_add_epi64(v[0], v[1]);
        v[1] = _mm512_rol_epi64::<13>(v[1]);
        v[1] = _mm512_xor_si512(v[1], v[0]);
        v[0] = _mm512_rol_epi64::<32>(v[0]);
        v[2] = _mm512_add_epi64(v[2], v[3]);
        v[3] = _mm512_rol_epi64::<16>(v[3]);
        v[3] = _mm512_xor_si512(v[3], v[2]);
        v[0] = _mm512_add_epi64(v[0], v[3]);
        v[3] = _mm512_rol_epi64::<21>(v[3]);
        v[3] = _mm512_xor_si512(v[3], v[0]);
        v[2] = _mm512_add_epi64(v[2], v[1]);
        v[1] = _mm512_rol_epi64::<17>(v[1]);
        v[1] = _mm512_xor_si512(v[1], v[2]);
        v[2] = _mm512_rol_epi64::<32>(v[2]);
    }
    #[inline]
    #[target_feature(enable = "avx512f")]
    fn write(v: &mut [__m512i; 4], m: __m512i) {
        v[3] = _mm512_xor_si512(v[3], m);
        round(v);
        round(v);
        v[0] = _mm512_xor_si512(v[0], m);
    }

    let n = lanes.idx.len();
    let (w1, _) = lanes.w1.as_chunks::<8>();
    let (w2, _) = lanes.w2.as_chunks::<8>();
    // Reverses the bytes of each 64-bit lane: scores are the digests read
    // big-endian.
    let bswap = _mm512_set_epi8(
        56, 57, 58, 59, 60, 61, 62, 63, 48, 49, 50, 51, 52, 53, 54, 55, 40, 41, 42, 43, 44, 45, 46,
        47, 32, 33, 34, 35, 36, 37, 38, 39, 24, 25, 26, 27, 28, 29, 30, 31, 16, 17, 18, 19, 20, 21,
        22, 23, 8, 9, 10, 11, 12, 13, 14, 15, 0, 1, 2, 3, 4, 5, 6, 7,
    );
    let bswap = _mm512_shuffle_i64x2::<0>(bswap, bswap);
    let len_word = _mm512_set1_epi64(if lanes.v6 { 24i64 << 56 } else { 12i64 << 56 });
    let ff = _mm512_set1_epi64(0xff);
    for (k, (base, rank)) in bases.iter_mut().zip(ranks.iter_mut()).enumerate() {
        base.write_word(u64::from_le_bytes(row_seed(seed, (first + k) as u32)));
        let st = base.state().map(|x| _mm512_set1_epi64(x as i64));
        for (c, a) in w1.iter().enumerate() {
            let mut v = st;
            // SAFETY: `a` and `w2[c]` are 8 u64s, 64 bytes; loadu takes any alignment.
            let a = unsafe { _mm512_loadu_si512(a.as_ptr().cast()) };
            let b = if lanes.v6 {
                write(&mut v, a);
                // SAFETY: as above.
                write(&mut v, unsafe { _mm512_loadu_si512(w2[c].as_ptr().cast()) });
                len_word
            } else {
                _mm512_or_si512(a, len_word)
            };
            write(&mut v, b);
            v[2] = _mm512_xor_si512(v[2], ff);
            round(&mut v);
            round(&mut v);
            round(&mut v);
            round(&mut v);
            let h = _mm512_xor_si512(_mm512_xor_si512(v[0], v[1]), _mm512_xor_si512(v[2], v[3]));
            let scores = _mm512_shuffle_epi8(h, bswap);
            let start = c * 8;
            let valid: u8 = if n - start >= 8 {
                0xff
            } else {
                (1u8 << (n - start)) - 1
            };
            // Ties go to the scalar path, which breaks them by address.
            let limit = if usize::from(rank.len) == PREFIX {
                rank.scores[PREFIX - 1]
            } else {
                u64::MAX
            };
            let mut hits = _mm512_cmple_epu64_mask(scores, _mm512_set1_epi64(limit as i64)) & valid;
            if hits == 0 {
                continue;
            }
            let mut out = [0u64; 8];
            // SAFETY: `out` is 64 bytes; storeu takes any alignment.
            unsafe { _mm512_storeu_si512(out.as_mut_ptr().cast(), scores) };
            while hits != 0 {
                let j = hits.trailing_zeros() as usize;
                hits &= hits - 1;
                rank.offer(out[j], lanes.idx[start + j], slots, true);
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn rank_rows_avx2(
    seed: &[u8; 16],
    first: usize,
    bases: &mut [SipHasher24],
    ranks: &mut [RowRank],
    lanes: &LaneSet,
    slots: &[Option<Slot>],
) {
    rank_rows_with::<4>(seed, first, bases, ranks, lanes, slots);
}

/// Which scoring code this CPU runs: "avx512", "avx2" or "portable".
pub fn scoring_path() -> &'static str {
    #[cfg(target_arch = "x86_64")]
    {
        if std::is_x86_feature_detected!("avx512f") && std::is_x86_feature_detected!("avx512bw") {
            return "avx512";
        }
        if std::is_x86_feature_detected!("avx2") {
            return "avx2";
        }
    }
    "portable"
}

/// [`rank_rows_with`] on the widest vectors this CPU has.
fn rank_rows(
    seed: &[u8; 16],
    first: usize,
    bases: &mut [SipHasher24],
    ranks: &mut [RowRank],
    lanes: &LaneSet,
    slots: &[Option<Slot>],
) {
    #[cfg(target_arch = "x86_64")]
    {
        if std::is_x86_feature_detected!("avx512f") && std::is_x86_feature_detected!("avx512bw") {
            // SAFETY: the CPU has AVX-512F and BW, checked just above.
            return unsafe { rank_rows_avx512(seed, first, bases, ranks, lanes, slots) };
        }
        if std::is_x86_feature_detected!("avx2") {
            // SAFETY: the CPU has AVX2, checked just above.
            return unsafe { rank_rows_avx2(seed, first, bases, ranks, lanes, slots) };
        }
    }
    rank_rows_with::<4>(seed, first, bases, ranks, lanes, slots);
}

/// A backend slot of the builder.
#[derive(Clone, Copy, Debug)]
struct Slot {
    backend: Backend,
    words: AddrWords,
    /// Address bytes, the tie-break of equal scores (never seen in practice,
    /// but the order must not depend on the order of the config).
    key: [u8; 16],
}

fn addr_key(addr: IpAddr) -> [u8; 16] {
    match addr {
        IpAddr::V4(a) => a.to_ipv6_mapped().octets(),
        IpAddr::V6(a) => a.octets(),
    }
}

/// The first entries of one row's ranking (slot indexes, by ascending score).
#[derive(Clone, Copy, Debug)]
struct RowRank {
    scores: [u64; PREFIX],
    slots: [u32; PREFIX],
    len: u8,
}

impl RowRank {
    const EMPTY: RowRank = RowRank {
        scores: [0; PREFIX],
        slots: [0; PREFIX],
        len: 0,
    };

    /// Offers a backend; keeps it if it ranks within the first `PREFIX`.
    /// `complete` says whether the entries hold every ranked backend; an
    /// incomplete prefix only takes a backend that ranks before its last
    /// entry, so it stays a true prefix of the ranking.
    #[inline(always)]
    fn offer(&mut self, score: u64, slot: u32, slots: &[Option<Slot>], complete: bool) {
        let len = usize::from(self.len);
        if len == PREFIX || !complete {
            match len.checked_sub(1) {
                Some(last) if before(score, slot, self.scores[last], self.slots[last], slots) => {}
                _ => return,
            }
        }
        let mut i = len.min(PREFIX - 1);
        while i > 0 && before(score, slot, self.scores[i - 1], self.slots[i - 1], slots) {
            self.scores[i] = self.scores[i - 1];
            self.slots[i] = self.slots[i - 1];
            i -= 1;
        }
        self.scores[i] = score;
        self.slots[i] = slot;
        if len < PREFIX {
            self.len += 1;
        }
    }

    fn remove(&mut self, slot: u32) {
        let len = usize::from(self.len);
        if let Some(pos) = self.slots[..len].iter().position(|&s| s == slot) {
            self.scores.copy_within(pos + 1..len, pos);
            self.slots.copy_within(pos + 1..len, pos);
            self.len -= 1;
        }
    }
}

/// Whether (score a, slot a) ranks before (score b, slot b).
#[inline(always)]
fn before(sa: u64, a: u32, sb: u64, b: u32, slots: &[Option<Slot>]) -> bool {
    match sa.cmp(&sb) {
        Ordering::Less => true,
        Ordering::Greater => false,
        Ordering::Equal => key_of(slots, a) < key_of(slots, b),
    }
}

fn key_of(slots: &[Option<Slot>], i: u32) -> [u8; 16] {
    slots
        .get(i as usize)
        .and_then(|s| s.as_ref())
        .map_or([0xff; 16], |s| s.key)
}

/// How strictly placement reads health: the first level at which some
/// backend is eligible applies to the whole table (docs/spec.md section 4, "fail
/// static": a table is never blackholed because every check failed at once).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Level {
    /// Keepers: not inactive and reachable; eligible: keepers that serve
    /// and are healthy.
    Normal,
    /// (a) Eligible: keepers that serve, healthy or not.
    IgnoreHealth,
    /// (b) Keepers: not inactive, reachable or not; eligible: keepers that
    /// serve.
    IgnoreReachable,
    /// (c) Keepers: not inactive; eligible: every keeper.
    Any,
}

impl Level {
    const ALL: [Level; 4] = [
        Level::Normal,
        Level::IgnoreHealth,
        Level::IgnoreReachable,
        Level::Any,
    ];

    /// Whether `b` may hold established flows of its rows: it stays in
    /// their chains.
    fn keeper(self, b: &Backend) -> bool {
        b.state != BackendState::Inactive
            && (b.reachable || matches!(self, Level::IgnoreReachable | Level::Any))
    }

    /// Whether `b` may be a primary.
    fn eligible(self, b: &Backend) -> bool {
        self.keeper(b)
            && match self {
                Level::Normal => b.takes_new_flows(),
                Level::IgnoreHealth | Level::IgnoreReachable => b.state.serves(),
                Level::Any => true,
            }
    }
}

/// The table-wide facts placement depends on.
#[derive(Clone, Copy, Debug)]
struct Pool {
    level: Level,
    /// Alternates per row.
    hops: u8,
    /// Ranked (not inactive) backends in all.
    ranked: usize,
}

impl Pool {
    fn slot<'a>(&self, slots: &'a [Option<Slot>], s: u32) -> Option<&'a Backend> {
        slots
            .get(s as usize)
            .and_then(|x| x.as_ref())
            .map(|x| &x.backend)
    }
}

/// Placement rule over a ranking given in order. Returns `None` when the
/// ranking seen is too short to decide (the caller has more to give):
///
/// - primary: the first eligible keeper;
/// - alternates: the first `hops` keepers other than the primary, in rank
///   order, wherever they rank;
/// - too few keepers (the ranking is `complete`): padded by repeating the
///   last entry.
fn place_in_order(
    pool: &Pool,
    ranking: impl Iterator<Item = u32>,
    slots: &[Option<Slot>],
    complete: bool,
) -> Option<Chain<u32>> {
    let hops = usize::from(pool.hops);
    let mut primary = None;
    let mut alternates = [0u32; MAX_HOPS as usize];
    let mut found = 0;
    for s in ranking {
        let Some(b) = pool.slot(slots, s) else {
            continue;
        };
        if !pool.level.keeper(b) {
            continue;
        }
        if primary.is_none() && pool.level.eligible(b) {
            primary = Some(s);
        } else if found < hops {
            alternates[found] = s;
            found += 1;
        }
        if let Some(p) = primary
            && found == hops
        {
            return Some(Chain::padded(p, &alternates[..found], pool.hops));
        }
    }
    match primary {
        Some(p) if complete => Some(Chain::padded(p, &alternates[..found], pool.hops)),
        _ => None,
    }
}

/// Placement rule in one pass over unordered (score, slot) pairs: the
/// fallback for rows whose ranking prefix could not decide.
fn place_scan(
    pool: &Pool,
    scored: impl Iterator<Item = (u64, u32)>,
    slots: &[Option<Slot>],
) -> Option<Chain<u32>> {
    // The first 1 + hops keepers and the first eligible one hold every
    // entry the rule can pick: the alternates are among the first 1 + hops
    // keepers whatever the primary is.
    let mut top: [(u64, u32); MAX_CHAIN] = [(0, 0); MAX_CHAIN];
    let mut kept = 0;
    let want = 1 + usize::from(pool.hops);
    let mut best: Option<(u64, u32)> = None;
    for (score, s) in scored {
        let Some(b) = pool.slot(slots, s) else {
            continue;
        };
        if !pool.level.keeper(b) {
            continue;
        }
        if pool.level.eligible(b) && best.is_none_or(|(bs, bi)| before(score, s, bs, bi, slots)) {
            best = Some((score, s));
        }
        let mut i = kept;
        if i == want {
            if !before(score, s, top[want - 1].0, top[want - 1].1, slots) {
                continue;
            }
            i -= 1;
        } else {
            kept += 1;
        }
        while i > 0 && before(score, s, top[i - 1].0, top[i - 1].1, slots) {
            top[i] = top[i - 1];
            i -= 1;
        }
        top[i] = (score, s);
    }
    let best = best?;
    // The best eligible one in rank order among the first keepers.
    let mut ranking: Vec<(u64, u32)> = top[..kept].to_vec();
    if !ranking.iter().any(|&(_, s)| s == best.1) {
        ranking.push(best);
    }
    place_in_order(pool, ranking.into_iter().map(|(_, s)| s), slots, true)
}

/// A forwarding table under construction and change: the backends, each
/// row's ranking prefix, and the current placement.
#[derive(Clone, Debug)]
pub struct Rendezvous {
    seed: [u8; 16],
    slots: Vec<Option<Slot>>,
    /// Per row, the hash state after absorbing the row seed.
    row_base: Vec<SipHasher24>,
    ranks: Vec<RowRank>,
    /// Ranked (present and not inactive) backends.
    ranked: usize,
    /// Alternates per row.
    hops: u8,
    rows: Vec<Chain<u32>>,
}

fn threads() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// Runs `f` on disjoint chunks of the rows, one per core.
fn par_rows<T: Send, U: Send>(
    a: &mut [T],
    b: &mut [U],
    f: impl Fn(usize, &mut [T], &mut [U]) + Sync,
) {
    let n = threads();
    let chunk = a.len().div_ceil(n).max(1);
    std::thread::scope(|sc| {
        for (i, (ca, cb)) in a.chunks_mut(chunk).zip(b.chunks_mut(chunk)).enumerate() {
            let f = &f;
            sc.spawn(move || f(i * chunk, ca, cb));
        }
    });
}

impl Rendezvous {
    /// Builds the table for `backends` (in any order: the result depends on
    /// the set, not the order), with `hops` alternates per row: 1 to
    /// [`MAX_HOPS`], or 0 for an IP-in-IP table, whose rows are their
    /// primary alone ([`chain_hops`]).
    pub fn build(seed: [u8; 16], hops: u8, backends: &[Backend]) -> Result<Self, TableError> {
        if hops > MAX_HOPS {
            return Err(TableError::Hops(hops));
        }
        check_backends(backends)?;
        let slots: Vec<Option<Slot>> = backends.iter().map(|b| Some(new_slot(*b))).collect();
        let mut row_base = vec![SipHasher24::new(&seed); TABLE_ROWS];
        let mut ranks = vec![RowRank::EMPTY; TABLE_ROWS];
        let ranked_slots = ranked_slots(&slots);
        let lanes = LaneSet::new(&ranked_slots);
        par_rows(&mut row_base, &mut ranks, |first, bases, ranks| {
            rank_rows(&seed, first, bases, ranks, &lanes, &slots);
        });
        let mut t = Rendezvous {
            seed,
            ranked: ranked_slots.len(),
            slots,
            row_base,
            ranks,
            hops,
            rows: vec![Chain::padded(0, &[], hops); TABLE_ROWS],
        };
        t.place()?;
        Ok(t)
    }

    /// The table's seed.
    pub fn seed(&self) -> [u8; 16] {
        self.seed
    }

    /// Alternates per row.
    pub fn hops(&self) -> u8 {
        self.hops
    }

    /// Each row's chain as backend indexes (see [`Rendezvous::backend`]).
    /// Indexes stay stable across changes.
    pub fn rows(&self) -> &[Chain<u32>] {
        &self.rows
    }

    /// The backend at `index`, if it is still in the table.
    pub fn backend(&self, index: u32) -> Option<&Backend> {
        self.slots.get(index as usize)?.as_ref().map(|s| &s.backend)
    }

    /// Every backend with its index.
    pub fn backends(&self) -> impl Iterator<Item = (u32, &Backend)> {
        self.slots
            .iter()
            .enumerate()
            .filter_map(|(i, s)| s.as_ref().map(|s| (i as u32, &s.backend)))
    }

    /// The index of the backend with address `addr`.
    pub fn index_of(&self, addr: IpAddr) -> Option<u32> {
        self.backends()
            .find(|(_, b)| b.addr == addr)
            .map(|(i, _)| i)
    }

    /// Each row's chain of addresses.
    pub fn row_addrs(&self) -> impl ExactSizeIterator<Item = Chain<IpAddr>> + '_ {
        self.rows
            .iter()
            .map(|r| r.map(|i| self.slot(i).backend.addr))
    }

    /// Sets a backend's state and re-places the rows.
    pub fn set_state(&mut self, addr: IpAddr, state: BackendState) -> Result<(), TableError> {
        let i = self
            .index_of(addr)
            .ok_or(TableError::UnknownBackend(addr))?;
        let old = self.slot(i).backend.state;
        let was_ranked = old != BackendState::Inactive;
        let ranked = state != BackendState::Inactive;
        if was_ranked && !ranked && self.ranked == 1 {
            return Err(TableError::NoUsableBackend);
        }
        if was_ranked && !ranked {
            self.unrank(i);
        }
        self.slot_mut(i).backend.state = state;
        if !was_ranked && ranked {
            self.rank(i);
        }
        self.place()
    }

    /// Sets a backend's health verdict and re-places the rows.
    pub fn set_healthy(&mut self, addr: IpAddr, healthy: bool) -> Result<(), TableError> {
        self.set_health(addr, |b| b.healthy = healthy)
    }

    /// Sets whether a backend is reachable and re-places the rows.
    pub fn set_reachable(&mut self, addr: IpAddr, reachable: bool) -> Result<(), TableError> {
        self.set_health(addr, |b| b.reachable = reachable)
    }

    /// Changes a backend with `set` (health only: its ranking stays) and
    /// re-places the rows.
    fn set_health(
        &mut self,
        addr: IpAddr,
        set: impl FnOnce(&mut Backend),
    ) -> Result<(), TableError> {
        let i = self
            .index_of(addr)
            .ok_or(TableError::UnknownBackend(addr))?;
        set(&mut self.slot_mut(i).backend);
        self.place()
    }

    /// Adds a backend and returns its index. Only the new backend's scores
    /// are computed.
    pub fn add(&mut self, backend: Backend) -> Result<u32, TableError> {
        if let Some((_, first)) = self.backends().next()
            && first.addr.is_ipv4() != backend.addr.is_ipv4()
        {
            return Err(TableError::MixedFamilies {
                first: first.addr,
                other: backend.addr,
            });
        }
        if self.index_of(backend.addr).is_some() {
            return Err(TableError::DuplicateBackend(backend.addr));
        }
        let slot = Some(new_slot(backend));
        let i = match self.slots.iter().position(Option::is_none) {
            Some(free) => {
                self.slots[free] = slot;
                free
            }
            None => {
                self.slots.push(slot);
                self.slots.len() - 1
            }
        } as u32;
        if backend.state != BackendState::Inactive {
            self.rank(i);
        }
        self.place()?;
        Ok(i)
    }

    /// Removes a backend. Its index may be reused by a later [`add`](Self::add).
    pub fn remove(&mut self, addr: IpAddr) -> Result<(), TableError> {
        let i = self
            .index_of(addr)
            .ok_or(TableError::UnknownBackend(addr))?;
        let ranked = self.slot(i).backend.state != BackendState::Inactive;
        if ranked && self.ranked == 1 {
            return Err(TableError::NoUsableBackend);
        }
        if ranked {
            self.unrank(i);
        }
        self.slots[i as usize] = None;
        self.place()
    }

    fn slot(&self, i: u32) -> &Slot {
        self.slots[i as usize]
            .as_ref()
            .expect("index of a present backend")
    }

    fn slot_mut(&mut self, i: u32) -> &mut Slot {
        self.slots[i as usize]
            .as_mut()
            .expect("index of a present backend")
    }

    /// Enters slot `i` into every row's ranking.
    fn rank(&mut self, i: u32) {
        let words = self.slot(i).words;
        let complete_len = self.ranked;
        let slots = &self.slots;
        par_rows(&mut self.ranks, &mut self.row_base, |_, ranks, bases| {
            for (rank, base) in ranks.iter_mut().zip(bases.iter()) {
                let complete = usize::from(rank.len) == complete_len;
                rank.offer(words.score(*base), i, slots, complete);
            }
        });
        self.ranked += 1;
    }

    /// Takes slot `i` out of every row's ranking.
    fn unrank(&mut self, i: u32) {
        for rank in &mut self.ranks {
            rank.remove(i);
        }
        self.ranked -= 1;
    }

    fn pool(&self) -> Pool {
        let backends = || self.slots.iter().flatten().map(|s| &s.backend);
        // A ranked backend is eligible at the last level at least.
        let level = Level::ALL
            .into_iter()
            .find(|l| backends().any(|b| l.eligible(b)))
            .unwrap_or(Level::Any);
        Pool {
            level,
            hops: self.hops,
            ranked: self.ranked,
        }
    }

    /// Recomputes every row's placement from the ranking prefixes. A row
    /// whose prefix cannot decide is re-ranked when removals shortened its
    /// prefix, and scanned in full when even a full prefix cannot decide
    /// (most of its first backends unsuitable).
    fn place(&mut self) -> Result<(), TableError> {
        if self.ranked == 0 {
            return Err(TableError::NoUsableBackend);
        }
        let pool = self.pool();
        let slots = &self.slots;
        let bases = &self.row_base;
        let ranked_slots = ranked_slots(slots);
        let mut rows = std::mem::take(&mut self.rows);
        let mut ranks = std::mem::take(&mut self.ranks);
        par_rows(&mut rows, &mut ranks, |first, out, ranks| {
            for (k, (row, rank)) in out.iter_mut().zip(ranks.iter_mut()).enumerate() {
                let base = bases[first + k];
                let decide = |rank: &RowRank| {
                    let len = usize::from(rank.len);
                    place_in_order(
                        &pool,
                        rank.slots[..len].iter().copied(),
                        slots,
                        len == pool.ranked,
                    )
                };
                let mut placed = decide(rank);
                if placed.is_none() && usize::from(rank.len) < PREFIX {
                    *rank = RowRank::EMPTY;
                    for &(i, words) in &ranked_slots {
                        rank.offer(words.score(base), i, slots, true);
                    }
                    placed = decide(rank);
                }
                let placed = placed.or_else(|| {
                    let scored = ranked_slots.iter().map(|&(i, w)| (w.score(base), i));
                    place_scan(&pool, scored, slots)
                });
                // A pool with a ranked backend always places a row.
                *row = placed.unwrap_or(Chain::padded(0, &[], pool.hops));
            }
        });
        self.rows = rows;
        self.ranks = ranks;
        Ok(())
    }
}

/// (index, address words) of every ranked backend.
fn ranked_slots(slots: &[Option<Slot>]) -> Vec<(u32, AddrWords)> {
    slots
        .iter()
        .enumerate()
        .filter_map(|(i, s)| s.as_ref().map(|s| (i as u32, s)))
        .filter(|(_, s)| s.backend.state != BackendState::Inactive)
        .map(|(i, s)| (i, s.words))
        .collect()
}

fn new_slot(backend: Backend) -> Slot {
    Slot {
        backend,
        words: AddrWords::new(backend.addr),
        key: addr_key(backend.addr),
    }
}

/// The checks [`Rendezvous::build`] makes before it hashes: one address
/// family, no duplicate, at least one backend that is not inactive.
pub fn check_backends(backends: &[Backend]) -> Result<(), TableError> {
    if let Some(first) = backends.first()
        && let Some(other) = backends
            .iter()
            .find(|b| b.addr.is_ipv4() != first.addr.is_ipv4())
    {
        return Err(TableError::MixedFamilies {
            first: first.addr,
            other: other.addr,
        });
    }
    let mut seen = std::collections::HashSet::new();
    for b in backends {
        if !seen.insert(b.addr) {
            return Err(TableError::DuplicateBackend(b.addr));
        }
    }
    if !backends.iter().any(|b| b.state != BackendState::Inactive) {
        return Err(TableError::NoUsableBackend);
    }
    Ok(())
}

/// Rows held by one backend before and after a change.
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Movement {
    /// The backend.
    pub ip: IpAddr,
    /// Rows it was the primary of.
    pub primary_before: usize,
    /// Rows it is the primary of.
    pub primary_after: usize,
    /// Rows it was an alternate of.
    pub alternate_before: usize,
    /// Rows it is an alternate of.
    pub alternate_after: usize,
}

/// Rows one backend holds in a table.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct RowCount {
    /// Rows it is the primary of.
    pub primary: usize,
    /// Rows it is an alternate of (once per row, padding or not).
    pub alternate: usize,
}

/// Rows held per backend, as primary and as alternate.
pub fn row_counts(rows: &[Chain<IpAddr>]) -> BTreeMap<IpAddr, RowCount> {
    let mut m: BTreeMap<IpAddr, RowCount> = BTreeMap::new();
    for chain in rows {
        m.entry(chain.primary()).or_default().primary += 1;
        for (i, &a) in chain.iter().enumerate().skip(1) {
            if !chain[..i].contains(&a) {
                m.entry(a).or_default().alternate += 1;
            }
        }
    }
    m
}

/// Why a change takes a backend out of every row on purpose.
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Release {
    /// It is no longer in the table.
    Removed,
    /// It was made inactive.
    Inactive,
    /// It is marked unreachable: nothing can be rescued there.
    Unreachable,
}

impl Release {
    /// Why `new` (the backend after the change; `None`: removed) is in no
    /// row on purpose, if it is.
    pub fn of(new: Option<&Backend>) -> Option<Release> {
        match new {
            None => Some(Release::Removed),
            Some(b) if b.state == BackendState::Inactive => Some(Release::Inactive),
            Some(b) if !b.reachable => Some(Release::Unreachable),
            Some(_) => None,
        }
    }

    /// The releases of a change from `old` to `new` backends: every old
    /// backend that is removed, inactive or unreachable after it.
    pub fn between(old: &[Backend], new: &[Backend]) -> BTreeMap<IpAddr, Release> {
        old.iter()
            .filter_map(|o| {
                let n = new.iter().find(|n| n.addr == o.addr);
                Release::of(n).map(|r| (o.addr, r))
            })
            .collect()
    }
}

/// Which members of each row's chain may hold established flows of the
/// row: the loss report counts a backend leaving a chain only where it may.
///
/// Flows are made on a row's primary (a SYN is accepted where it lands, and
/// UDP has no second chance), so the backends that may hold a row's flows
/// are those that were its primary since they last joined its chain. A
/// director that applies every change knows them ([`Holders::after`]); a
/// table alone only tells part ([`Holders::assumed`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Holders {
    /// Per row, bit `i`: the chain's entry `i` may hold flows (a backend
    /// padded into several places has the bit of its first).
    masks: Vec<u8>,
}

impl Holders {
    /// Every member of every chain: nothing is known.
    pub fn all(rows: &[Chain<IpAddr>]) -> Holders {
        Holders {
            masks: rows.iter().map(|c| first_places(c, |_| true)).collect(),
        }
    }

    /// As far as a table alone tells: the primary, and the members that
    /// take no new flows (draining, unhealthy, unreachable or inactive per
    /// `takes_new_flows`), which are in the chain because they may still
    /// hold flows. An alternate that takes new flows holds some only if it
    /// was the row's primary before the primary was added or became
    /// eligible: a change the table does not show.
    pub fn assumed(rows: &[Chain<IpAddr>], takes_new_flows: impl Fn(IpAddr) -> bool) -> Holders {
        Holders {
            masks: rows
                .iter()
                .map(|c| first_places(c, |(i, a)| i == 0 || !takes_new_flows(a)))
                .collect(),
        }
    }

    /// The holders once `old` (whose holders `self` are) became `new`: the
    /// members of a new chain that may hold flows in the old one, and every
    /// new primary. A backend that leaves a chain holds none of its flows
    /// after (they are lost, and the report of that change said so).
    pub fn after(&self, old: &[Chain<IpAddr>], new: &[Chain<IpAddr>]) -> Holders {
        Holders {
            masks: old
                .iter()
                .zip(new)
                .enumerate()
                .map(|(row, (o, n))| {
                    first_places(n, |(i, a)| {
                        i == 0
                            || o.iter()
                                .enumerate()
                                .any(|(j, &x)| x == a && self.holds(row, j))
                    })
                })
                .collect(),
        }
    }

    /// Whether entry `place` of row `row`'s chain may hold flows.
    pub fn holds(&self, row: usize, place: usize) -> bool {
        self.masks.get(row).is_some_and(|m| m & (1 << place) != 0)
    }
}

/// The mask of the places of `chain` where `pick` says yes, each backend
/// at its first place only.
fn first_places(chain: &Chain<IpAddr>, pick: impl Fn((usize, IpAddr)) -> bool) -> u8 {
    let mut mask = 0u8;
    for (i, &a) in chain.iter().enumerate() {
        if !chain[..i].contains(&a) && pick((i, a)) {
            mask |= 1 << i;
        }
    }
    mask
}

/// Rows where a backend that may hold established flows leaves the chain:
/// second chance can no longer find those flows, and they break.
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct LostRows {
    /// The backend.
    pub ip: IpAddr,
    /// Rows it was the primary of: it holds their newest flows.
    pub primary_rows: Vec<u32>,
    /// Rows it was an alternate of, and may hold flows of: it was their
    /// primary before an earlier change whose flows may still be open.
    pub alternate_rows: Vec<u32>,
}

/// Rows a backend leaves because the change takes it out on purpose.
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ReleasedRows {
    /// The backend.
    pub ip: IpAddr,
    /// Why.
    pub reason: Release,
    /// Rows whose chain held it before the change.
    pub rows: usize,
}

/// What a change does to a table's rows (`director-ctl table diff`, the
/// API's preview).
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct RowDiff {
    /// Rows whose chain changes.
    pub rows_changed: usize,
    /// Rows whose primary changes.
    pub rows_primary_changed: usize,
    /// Rows whose alternates change.
    pub rows_alternates_changed: usize,
    /// Rows in which some backend of the old chain that may hold flows is
    /// in no place of the new one, not released on purpose (the rows of
    /// [`RowDiff::lost`], each counted once).
    pub rows_lost: usize,
    /// Per backend, the rows in which it leaves the chain while it may
    /// hold established flows there, and was not released on purpose.
    pub lost: Vec<LostRows>,
    /// Per backend taken out on purpose (removed, inactive, unreachable),
    /// the rows it leaves.
    pub released: Vec<ReleasedRows>,
    /// Backends whose row counts change, by address.
    pub backends: Vec<Movement>,
    /// What the operator must know before making the change (an `ipip`
    /// table's flows moving: [`RowDiff::warn_no_second_chance`]).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
}

impl RowDiff {
    /// For a change of `table`, an `ipip` table (no hop list, so no second
    /// chance): a warning naming how many rows lose their established
    /// flows, if any do (which rows, per backend, are in
    /// [`RowDiff::lost`]). A drain or an addition in such a table moves
    /// every flow of the rows whose primary changes.
    pub fn warn_no_second_chance(&mut self, table: &str) {
        if self.rows_lost == 0 {
            return;
        }
        let backends: Vec<String> = self
            .lost
            .iter()
            .map(|l| {
                format!(
                    "{} ({} rows)",
                    l.ip,
                    l.primary_rows.len() + l.alternate_rows.len()
                )
            })
            .collect();
        self.warnings.push(format!(
            "table \"{table}\" is \"encap\": \"ipip\" (no hop list, no second chance): this change moves the established flows of {} rows, which are lost: {}",
            self.rows_lost,
            backends.join(", ")
        ));
    }

    /// Whether `ip`'s established flows of row `row` break.
    pub fn loses(&self, ip: IpAddr, row: u32) -> bool {
        self.lost.iter().any(|l| {
            l.ip == ip
                && (l.primary_rows.binary_search(&row).is_ok()
                    || l.alternate_rows.binary_search(&row).is_ok())
        })
    }
}

/// Compares two versions of a table, row by row. `holders`: which members
/// of the old chains may hold established flows; `released`: the backends
/// the change takes out on purpose ([`Release::between`]), whose rows are
/// reported apart from the rows lost.
pub fn diff_rows(
    old: &[Chain<IpAddr>],
    new: &[Chain<IpAddr>],
    holders: &Holders,
    released: &BTreeMap<IpAddr, Release>,
) -> RowDiff {
    let mut d = RowDiff::default();
    let mut lost: BTreeMap<IpAddr, LostRows> = BTreeMap::new();
    let mut gone: BTreeMap<IpAddr, usize> = BTreeMap::new();
    for (row, (a, b)) in old.iter().zip(new).enumerate() {
        let row = row as u32;
        d.rows_primary_changed += usize::from(a.primary() != b.primary());
        d.rows_alternates_changed += usize::from(a.alternates() != b.alternates());
        d.rows_changed += usize::from(a != b);
        let mut row_lost = false;
        for (i, &x) in a.iter().enumerate() {
            if a[..i].contains(&x) || b.contains(&x) {
                continue;
            }
            if released.contains_key(&x) {
                *gone.entry(x).or_default() += 1;
                continue;
            }
            if !holders.holds(row as usize, i) {
                continue;
            }
            row_lost = true;
            let l = lost.entry(x).or_insert_with(|| LostRows {
                ip: x,
                primary_rows: Vec::new(),
                alternate_rows: Vec::new(),
            });
            if i == 0 {
                l.primary_rows.push(row);
            } else {
                l.alternate_rows.push(row);
            }
        }
        d.rows_lost += usize::from(row_lost);
    }
    d.lost = lost.into_values().collect();
    d.released = gone
        .into_iter()
        .map(|(ip, rows)| ReleasedRows {
            ip,
            reason: released[&ip],
            rows,
        })
        .collect();
    let (before, after) = (row_counts(old), row_counts(new));
    let ips: std::collections::BTreeSet<IpAddr> =
        before.keys().chain(after.keys()).copied().collect();
    d.backends = ips
        .into_iter()
        .map(|ip| {
            let (b, a) = (before.get(&ip), after.get(&ip));
            let (b, a) = (
                b.copied().unwrap_or_default(),
                a.copied().unwrap_or_default(),
            );
            Movement {
                ip,
                primary_before: b.primary,
                primary_after: a.primary,
                alternate_before: b.alternate,
                alternate_after: a.alternate,
            }
        })
        .filter(|m| m.primary_before != m.primary_after || m.alternate_before != m.alternate_after)
        .collect();
    d
}

/// Content hash of a table as the director forwards with it: SipHash-2-4
/// under the keys `"glb-table-hash-0"` and `"glb-table-hash-1"` (ASCII)
/// of the hash key followed by every row's chain (the primary, then the
/// alternates), each address as 16 bytes (IPv4 as IPv4-mapped IPv6); the
/// two digests, big-endian, make 16 bytes. Two directors with the same
/// hash send every flow to the same backends with the same hop lists.
pub fn content_hash(hash_key: &[u8; 16], rows: impl Iterator<Item = Chain<IpAddr>>) -> [u8; 16] {
    let mut msg = Vec::with_capacity(16 + TABLE_ROWS * MAX_CHAIN * 16);
    msg.extend_from_slice(hash_key);
    for chain in rows {
        for a in chain.iter() {
            msg.extend_from_slice(&addr_key(*a));
        }
    }
    let mut out = [0u8; 16];
    out[..8].copy_from_slice(&siphash24(b"glb-table-hash-0", &msg).to_be_bytes());
    out[8..].copy_from_slice(&siphash24(b"glb-table-hash-1", &msg).to_be_bytes());
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{Ipv4Addr, Ipv6Addr};

    /// Every scoring path (the one this CPU dispatches to, and the portable
    /// ones that other CPUs use) ranks every row identically.
    #[test]
    fn every_scoring_path_ranks_alike() {
        for v6 in [false, true] {
            // 21 backends: two full chunks of 8 and a partial one.
            let slots: Vec<Option<Slot>> = (0..21u16)
                .map(|i| {
                    let addr = if v6 {
                        IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 9, i))
                    } else {
                        IpAddr::V4(Ipv4Addr::new(203, 0, 113, i as u8 + 1))
                    };
                    Some(new_slot(Backend::new(addr, BackendState::Active)))
                })
                .collect();
            let lanes = LaneSet::new(&ranked_slots(&slots));
            let seed = [0x42u8; 16];
            let rows = 512;
            let run = |f: &dyn Fn(&mut [SipHasher24], &mut [RowRank])| {
                let mut bases = vec![SipHasher24::new(&seed); rows];
                let mut ranks = vec![RowRank::EMPTY; rows];
                f(&mut bases, &mut ranks);
                ranks
                    .iter()
                    .map(|r| (r.len, r.slots, r.scores))
                    .collect::<Vec<_>>()
            };
            let dispatched = run(&|b, r| rank_rows(&seed, 100, b, r, &lanes, &slots));
            let four = run(&|b, r| rank_rows_with::<4>(&seed, 100, b, r, &lanes, &slots));
            let one = run(&|b, r| rank_rows_with::<1>(&seed, 100, b, r, &lanes, &slots));
            assert_eq!(dispatched, four, "v6={v6}");
            assert_eq!(dispatched, one, "v6={v6}");
            // And the scalar definition of a score agrees with the ranking.
            let (len, first, score0) = dispatched[7];
            assert_eq!(usize::from(len), PREFIX);
            let rs = row_seed(&seed, 107);
            let addr = slots[first[0] as usize].as_ref().unwrap().backend.addr;
            assert_eq!(score0[0], score(&seed, &rs, addr));
        }
    }
}
