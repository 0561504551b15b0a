//! The rendezvous forwarding table (SPEC.md section 4).
//!
//! Every row ranks the backends by a keyed hash of (row, backend address);
//! the first suitable backend is the row's primary and the next one its
//! secondary. Adding or removing a backend only changes the rows where it
//! ranks first or second, which is what lets the backends' second-chance
//! forwarding keep established connections alive.
//!
//! Scores depend only on the seed, the row and the address, never on a
//! backend's state or health. [`Rendezvous`] therefore keeps, per row, the
//! first [`PREFIX`] entries of the row's ranking, and recomputes only the
//! placement after a state or health change: a change costs a walk over a few
//! entries per row, not 65,536 x N hashes. A row whose prefix is too short
//! to decide (many unsuitable backends ranked first) is re-ranked alone.

use std::cmp::Ordering;
use std::net::IpAddr;

use crate::TABLE_ROWS;
use crate::siphash::{SipHasher24, finish_lanes, le_word, siphash24};

/// Entries of each row's ranking kept between updates.
pub const PREFIX: usize = 8;

/// A backend's administrative state.
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
    /// Being removed: keeps the rows' established flows as a secondary, takes
    /// no row as primary while any active backend is healthy.
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

    fn serves(self) -> bool {
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
    /// Last verdict of the health checks.
    pub healthy: bool,
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

/// What placement needs to know about a backend.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Role {
    /// Not in the pool this time (unhealthy while others are healthy).
    Out,
    Serving,
    Draining,
}

/// The table-wide facts placement depends on.
#[derive(Clone, Copy, Debug)]
struct Pool {
    /// Some ranked backend is healthy: unhealthy ones are left out.
    any_healthy: bool,
    /// Some pool member is active or filling: draining ones are never primary.
    any_serving: bool,
    /// Ranked backends in all.
    ranked: usize,
}

impl Pool {
    fn role(&self, b: &Backend) -> Role {
        if b.state == BackendState::Inactive || (self.any_healthy && !b.healthy) {
            Role::Out
        } else if b.state.serves() {
            Role::Serving
        } else {
            Role::Draining
        }
    }
}

/// Placement rule over a ranking given in order. Returns `None` when the
/// ranking seen is too short to decide (the caller has more to give).
///
/// - primary: the first serving pool member (the first pool member when none
///   serves);
/// - secondary: the highest-ranked draining pool member ranked above the
///   primary, else the next serving pool member after it (the next pool
///   member when none serves), else the primary itself.
fn place_in_order(
    pool: &Pool,
    ranking: impl Iterator<Item = u32>,
    slots: &[Option<Slot>],
    complete: bool,
) -> Option<[u32; 2]> {
    let mut draining_above = None;
    let mut primary = None;
    for s in ranking {
        let Some(slot) = slots.get(s as usize).and_then(|x| x.as_ref()) else {
            continue;
        };
        let role = pool.role(&slot.backend);
        match (primary, role) {
            (_, Role::Out) => {}
            (None, Role::Draining) if pool.any_serving => {
                draining_above.get_or_insert(s);
            }
            (None, _) => {
                if let Some(d) = draining_above {
                    return Some([s, d]);
                }
                primary = Some(s);
            }
            (Some(p), Role::Serving) => return Some([p, s]),
            (Some(p), Role::Draining) if !pool.any_serving => return Some([p, s]),
            (Some(_), Role::Draining) => {}
        }
    }
    match primary {
        Some(p) if complete => Some([p, p]),
        _ => None,
    }
}

/// Placement rule in one pass over unordered (score, slot) pairs: the
/// fallback for rows whose ranking prefix could not decide.
fn place_scan(
    pool: &Pool,
    scored: impl Iterator<Item = (u64, u32)>,
    slots: &[Option<Slot>],
) -> Option<[u32; 2]> {
    // The two best serving members, the best draining one, and the two best
    // members of any kind: enough for every case of the rule.
    let mut serving: [Option<(u64, u32)>; 2] = [None; 2];
    let mut draining: Option<(u64, u32)> = None;
    let mut any: [Option<(u64, u32)>; 2] = [None; 2];
    let better = |a: (u64, u32), b: Option<(u64, u32)>| match b {
        None => true,
        Some(b) => before(a.0, a.1, b.0, b.1, slots),
    };
    let push2 = |top: &mut [Option<(u64, u32)>; 2], e: (u64, u32)| {
        if better(e, top[0]) {
            top[1] = top[0];
            top[0] = Some(e);
        } else if better(e, top[1]) {
            top[1] = Some(e);
        }
    };
    for (score, s) in scored {
        let Some(slot) = slots.get(s as usize).and_then(|x| x.as_ref()) else {
            continue;
        };
        match pool.role(&slot.backend) {
            Role::Out => continue,
            Role::Serving => push2(&mut serving, (score, s)),
            Role::Draining => {
                if better((score, s), draining) {
                    draining = Some((score, s));
                }
            }
        }
        push2(&mut any, (score, s));
    }
    if let Some(p) = serving[0] {
        let second = match draining {
            Some(d) if before(d.0, d.1, p.0, p.1, slots) => d,
            _ => serving[1].unwrap_or(p),
        };
        Some([p.1, second.1])
    } else {
        let p = any[0]?;
        Some([p.1, any[1].unwrap_or(p).1])
    }
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
    rows: Vec<[u32; 2]>,
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
    /// the set, not the order).
    pub fn build(seed: [u8; 16], backends: &[Backend]) -> Result<Self, TableError> {
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
            rows: vec![[0; 2]; TABLE_ROWS],
        };
        t.place()?;
        Ok(t)
    }

    /// The table's seed.
    pub fn seed(&self) -> [u8; 16] {
        self.seed
    }

    /// Each row's `[primary, secondary]` as backend indexes (see
    /// [`Rendezvous::backend`]). Indexes stay stable across changes.
    pub fn rows(&self) -> &[[u32; 2]] {
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

    /// Each row's `[primary, secondary]` addresses.
    pub fn row_addrs(&self) -> impl ExactSizeIterator<Item = [IpAddr; 2]> + '_ {
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

    /// Sets a backend's health and re-places the rows.
    pub fn set_healthy(&mut self, addr: IpAddr, healthy: bool) -> Result<(), TableError> {
        let i = self
            .index_of(addr)
            .ok_or(TableError::UnknownBackend(addr))?;
        self.slot_mut(i).backend.healthy = healthy;
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
        let ranked = || {
            self.slots
                .iter()
                .flatten()
                .map(|s| s.backend)
                .filter(|b| b.state != BackendState::Inactive)
        };
        let any_healthy = ranked().any(|b| b.healthy);
        let any_serving = ranked().any(|b| b.state.serves() && (b.healthy || !any_healthy));
        Pool {
            any_healthy,
            any_serving,
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
                *row = placed.unwrap_or([0, 0]);
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
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Movement {
    /// The backend.
    pub ip: IpAddr,
    /// Rows it was the primary of.
    pub primary_before: usize,
    /// Rows it is the primary of.
    pub primary_after: usize,
    /// Rows it was the secondary of.
    pub secondary_before: usize,
    /// Rows it is the secondary of.
    pub secondary_after: usize,
}

/// What a change does to a table's rows (`director-ctl table diff`, the
/// API's preview).
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct RowDiff {
    /// Rows whose primary or secondary changes.
    pub rows_changed: usize,
    /// Rows whose primary changes.
    pub rows_primary_changed: usize,
    /// Rows whose secondary changes.
    pub rows_secondary_changed: usize,
    /// Rows whose old primary is neither the new primary nor the new
    /// secondary: second chance cannot find their established flows.
    pub rows_old_primary_unreachable: usize,
    /// Backends whose row counts change, by address.
    pub backends: Vec<Movement>,
}

/// Compares two versions of a table, row by row (`[primary, secondary]`).
pub fn diff_rows(old: &[[IpAddr; 2]], new: &[[IpAddr; 2]]) -> RowDiff {
    let mut d = RowDiff::default();
    let mut per: std::collections::BTreeMap<IpAddr, [usize; 4]> = Default::default();
    for (a, b) in old.iter().zip(new) {
        d.rows_primary_changed += usize::from(a[0] != b[0]);
        d.rows_secondary_changed += usize::from(a[1] != b[1]);
        d.rows_changed += usize::from(a != b);
        d.rows_old_primary_unreachable += usize::from(a[0] != b[0] && a[0] != b[1]);
        per.entry(a[0]).or_default()[0] += 1;
        per.entry(b[0]).or_default()[1] += 1;
        per.entry(a[1]).or_default()[2] += 1;
        per.entry(b[1]).or_default()[3] += 1;
    }
    d.backends = per
        .into_iter()
        .filter(|(_, m)| m[0] != m[1] || m[2] != m[3])
        .map(|(ip, m)| Movement {
            ip,
            primary_before: m[0],
            primary_after: m[1],
            secondary_before: m[2],
            secondary_after: m[3],
        })
        .collect();
    d
}

/// Content hash of a table as the director forwards with it: SipHash-2-4
/// under the keys `"glb-table-hash-0"` and `"glb-table-hash-1"` (ASCII)
/// of the hash key followed by every row's primary and secondary address
/// as 16 bytes (IPv4 as IPv4-mapped IPv6); the two digests, big-endian,
/// make 16 bytes. Two directors with the same hash send every flow to the
/// same backends.
pub fn content_hash(hash_key: &[u8; 16], rows: impl Iterator<Item = [IpAddr; 2]>) -> [u8; 16] {
    let mut msg = Vec::with_capacity(16 + TABLE_ROWS * 32);
    msg.extend_from_slice(hash_key);
    for [p, s] in rows {
        msg.extend_from_slice(&addr_key(p));
        msg.extend_from_slice(&addr_key(s));
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
                    Some(new_slot(Backend {
                        addr,
                        state: BackendState::Active,
                        healthy: true,
                    }))
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
