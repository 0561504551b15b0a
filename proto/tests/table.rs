//! The rendezvous table builder against GLB's published vectors, against a
//! naive reference implementation of docs/spec.md section 4 (full sort per row),
//! and against the properties operators rely on.
#![allow(clippy::unwrap_used)] // helpers of tests: a failure is the test failing

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use proto::TABLE_ROWS;
use proto::hex::decode_array;
use proto::table::{
    Backend, BackendState, Chain, Holders, MAX_HOPS, Release, Rendezvous, TableError, diff_rows,
    row_seed, score,
};

/// splitmix64: a small deterministic generator, so every run tests the same
/// cases and a failure names a reproducible case number.
struct Gen(u64);

impl Gen {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn seed(&mut self) -> [u8; 16] {
        let mut s = [0u8; 16];
        s[..8].copy_from_slice(&self.next().to_le_bytes());
        s[8..].copy_from_slice(&self.next().to_le_bytes());
        s
    }
    fn state(&mut self) -> BackendState {
        match self.below(10) {
            0..=5 => BackendState::Active,
            6 => BackendState::Filling,
            7 | 8 => BackendState::Draining,
            _ => BackendState::Inactive,
        }
    }
    fn addr(&mut self, v6: bool) -> IpAddr {
        if v6 {
            let low = self.next() as u16;
            IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 7, low))
        } else {
            let b = self.next().to_le_bytes();
            let net = [[192, 0, 2], [198, 51, 100], [203, 0, 113]][usize::from(b[0] % 3)];
            IpAddr::V4(Ipv4Addr::new(net[0], net[1], net[2], b[1]))
        }
    }
    fn hops(&mut self) -> u8 {
        1 + self.below(u64::from(MAX_HOPS)) as u8
    }
    /// `n` backends, healthy with `healthy_ratio` percent, reachable with
    /// `reachable_ratio` percent.
    fn backends_reach(
        &mut self,
        n: usize,
        v6: bool,
        healthy_ratio: u64,
        reachable_ratio: u64,
    ) -> Vec<Backend> {
        let mut out: Vec<Backend> = Vec::new();
        while out.len() < n {
            let addr = self.addr(v6);
            if out.iter().any(|b| b.addr == addr) {
                continue;
            }
            out.push(Backend {
                addr,
                state: self.state(),
                healthy: self.below(100) < healthy_ratio,
                reachable: self.below(100) < reachable_ratio,
            });
        }
        if out.iter().all(|b| b.state == BackendState::Inactive) {
            out[0].state = BackendState::Active;
        }
        out
    }
    fn backends(&mut self, n: usize, v6: bool, healthy_ratio: u64) -> Vec<Backend> {
        self.backends_reach(n, v6, healthy_ratio, 100)
    }
}

fn active(addr: &str) -> Backend {
    Backend::new(addr.parse().unwrap(), BackendState::Active)
}

fn serves(s: BackendState) -> bool {
    matches!(s, BackendState::Active | BackendState::Filling)
}

/// docs/spec.md section 4 written the obvious way: rank every backend of the row
/// with a full sort, pick the weakest sets that have an eligible backend,
/// then walk the ranked keepers.
fn reference_row(seed: &[u8; 16], hops: u8, backends: &[Backend], row: u32) -> Vec<IpAddr> {
    let rs = row_seed(seed, row);
    let mut ranked: Vec<(u64, Backend)> = backends
        .iter()
        .filter(|b| b.state != BackendState::Inactive)
        .map(|b| (score(seed, &rs, b.addr), *b))
        .collect();
    ranked.sort_by_key(|(s, b)| {
        let key = match b.addr {
            IpAddr::V4(a) => a.to_ipv6_mapped().octets(),
            IpAddr::V6(a) => a.octets(),
        };
        (*s, key)
    });
    let ranked: Vec<Backend> = ranked.into_iter().map(|(_, b)| b).collect();
    // (keeper, eligible) at each level, strongest first.
    type Rule = fn(&Backend) -> (bool, bool);
    let levels: [Rule; 4] = [
        |b| (b.reachable, b.reachable && serves(b.state) && b.healthy),
        |b| (b.reachable, b.reachable && serves(b.state)),
        |b| (true, serves(b.state)),
        |_| (true, true),
    ];
    let rule = levels
        .into_iter()
        .find(|rule| ranked.iter().any(|b| rule(b).1))
        .unwrap();
    let keepers: Vec<&Backend> = ranked.iter().filter(|b| rule(b).0).collect();
    let primary = keepers.iter().find(|b| rule(b).1).unwrap().addr;
    let mut chain = vec![primary];
    chain.extend(
        keepers
            .iter()
            .map(|b| b.addr)
            .filter(|a| *a != primary)
            .take(usize::from(hops)),
    );
    while chain.len() < 1 + usize::from(hops) {
        chain.push(*chain.last().unwrap());
    }
    chain
}

fn rows_of(t: &Rendezvous) -> Vec<Chain<IpAddr>> {
    t.row_addrs().collect()
}

/// Compares every `step`-th row with the reference.
fn assert_matches_reference(
    t: &Rendezvous,
    seed: &[u8; 16],
    backends: &[Backend],
    step: usize,
    case: &str,
) {
    let rows = rows_of(t);
    assert_eq!(rows.len(), TABLE_ROWS);
    for row in (0..TABLE_ROWS).step_by(step) {
        assert_eq!(
            rows[row].as_slice(),
            reference_row(seed, t.hops(), backends, row as u32),
            "{case}: row {row}, hops {}, backends {backends:?}",
            t.hops()
        );
    }
}

#[test]
fn glb_vectors_row_seeds_scores_and_rankings() {
    let doc: serde_json::Value =
        serde_json::from_str(include_str!("../compat/glb-rendezvous-vectors.json")).unwrap();
    let seed: [u8; 16] = decode_array(doc["seed"].as_str().unwrap()).unwrap();
    let row_seeds = doc["row_seeds"].as_array().unwrap();
    assert!(!row_seeds.is_empty());
    for v in row_seeds {
        let row = v["row"].as_u64().unwrap() as u32;
        let want: [u8; 8] = decode_array(v["row_seed"].as_str().unwrap()).unwrap();
        assert_eq!(row_seed(&seed, row), want, "row seed of row {row}");
    }
    let orders = doc["orders"].as_array().unwrap();
    assert!(!orders.is_empty());
    for v in orders {
        let row = v["row"].as_u64().unwrap() as u32;
        let rs = row_seed(&seed, row);
        let hosts: Vec<IpAddr> = v["hosts"]
            .as_array()
            .unwrap()
            .iter()
            .map(|h| h.as_str().unwrap().parse().unwrap())
            .collect();
        for (host, want) in v["scores"].as_object().unwrap() {
            let want = u64::from_be_bytes(decode_array(want.as_str().unwrap()).unwrap());
            assert_eq!(
                score(&seed, &rs, host.parse().unwrap()),
                want,
                "score of {host} in row {row}"
            );
        }
        let mut ranked = hosts.clone();
        ranked.sort_by_key(|h| score(&seed, &rs, *h));
        let want: Vec<IpAddr> = v["ranked"]
            .as_array()
            .unwrap()
            .iter()
            .map(|h| h.as_str().unwrap().parse().unwrap())
            .collect();
        assert_eq!(ranked, want, "ranking of row {row}");

        // The builder agrees: all active and healthy gives GLB's table
        // (rank 0 primary, rank 1 the first alternate), and the alternates
        // go on in rank order.
        let backends: Vec<Backend> = hosts.iter().map(|h| active(&h.to_string())).collect();
        for hops in 1..=MAX_HOPS {
            let t = Rendezvous::build(seed, hops, &backends).unwrap();
            assert_eq!(
                rows_of(&t)[row as usize].as_slice(),
                &want[..1 + usize::from(hops)],
                "placement of row {row}, hops {hops}"
            );
        }
    }
}

#[test]
fn builder_equals_reference_on_random_tables() {
    let mut g = Gen(1);
    for case in 0..80 {
        let n = 1 + g.below(24) as usize;
        let v6 = case % 3 == 0;
        // Mostly healthy, sometimes nobody healthy or reachable (the
        // fail-static levels).
        let healthy_ratio = [90, 50, 10, 0][case % 4];
        let reachable_ratio = [100, 80, 30, 0, 95][case % 5];
        let backends = g.backends_reach(n, v6, healthy_ratio, reachable_ratio);
        let seed = g.seed();
        let hops = g.hops();
        let t = Rendezvous::build(seed, hops, &backends).unwrap();
        let step = if case < 8 { 1 } else { 61 };
        assert_matches_reference(&t, &seed, &backends, step, &format!("case {case}"));
    }
}

/// Applies the same change to a backend list, as a config edit would.
fn apply(list: &mut Vec<Backend>, op: &Op) {
    let find = |list: &mut Vec<Backend>, a: IpAddr| -> usize {
        list.iter().position(|b| b.addr == a).unwrap()
    };
    match *op {
        Op::State(a, s) => {
            let i = find(list, a);
            list[i].state = s;
        }
        Op::Health(a, h) => {
            let i = find(list, a);
            list[i].healthy = h;
        }
        Op::Reach(a, r) => {
            let i = find(list, a);
            list[i].reachable = r;
        }
        Op::Add(b) => list.push(b),
        Op::Remove(a) => list.retain(|b| b.addr != a),
    }
}

#[derive(Debug, Clone, Copy)]
enum Op {
    State(IpAddr, BackendState),
    Health(IpAddr, bool),
    Reach(IpAddr, bool),
    Add(Backend),
    Remove(IpAddr),
}

fn apply_to(t: &mut Rendezvous, op: &Op) -> Result<(), TableError> {
    match *op {
        Op::State(a, s) => t.set_state(a, s),
        Op::Health(a, h) => t.set_healthy(a, h),
        Op::Reach(a, r) => t.set_reachable(a, r),
        Op::Add(b) => t.add(b).map(|_| ()),
        Op::Remove(a) => t.remove(a),
    }
}

#[test]
fn incremental_changes_equal_a_fresh_build() {
    let mut g = Gen(2);
    for case in 0..15 {
        let v6 = case % 2 == 1;
        let n = 4 + g.below(20) as usize;
        let mut list = g.backends_reach(n, v6, 70, 85);
        let seed = g.seed();
        let hops = g.hops();
        let mut t = Rendezvous::build(seed, hops, &list).unwrap();
        for step in 0..25 {
            let pick = list[g.below(list.len() as u64) as usize].addr;
            let op = match g.below(5) {
                0 => Op::State(pick, g.state()),
                1 => Op::Health(pick, g.below(2) == 0),
                2 => Op::Reach(pick, g.below(3) > 0),
                3 => {
                    let addr = g.addr(v6);
                    if list.iter().any(|b| b.addr == addr) {
                        continue;
                    }
                    Op::Add(Backend {
                        addr,
                        state: g.state(),
                        healthy: g.below(3) > 0,
                        reachable: g.below(4) > 0,
                    })
                }
                _ => Op::Remove(pick),
            };
            let mut next = list.clone();
            apply(&mut next, &op);
            let fresh = Rendezvous::build(seed, hops, &next);
            let result = apply_to(&mut t, &op);
            let what = format!("case {case} step {step} hops {hops} {op:?}");
            match fresh {
                Err(e) => {
                    // The change is refused and the table is left as it was.
                    assert_eq!(result, Err(e), "{what}");
                    assert_matches_reference(&t, &seed, &list, 257, &what);
                }
                Ok(fresh) => {
                    result.unwrap_or_else(|e| panic!("{what}: {e}"));
                    list = next;
                    assert_eq!(rows_of(&t), rows_of(&fresh), "{what}");
                    assert_matches_reference(&t, &seed, &list, 127, &what);
                }
            }
        }
    }
}

#[test]
fn primary_is_eligible_whenever_such_a_backend_exists_and_chains_hold_keepers() {
    let mut g = Gen(3);
    for case in 0..24 {
        let n = 2 + g.below(30) as usize;
        let backends = g.backends_reach(n, case % 2 == 0, 60, 80);
        let hops = g.hops();
        let t = Rendezvous::build(g.seed(), hops, &backends).unwrap();
        let by_addr: HashMap<IpAddr, Backend> = backends.iter().map(|b| (b.addr, *b)).collect();
        let eligible = |b: &Backend| b.reachable && b.healthy && serves(b.state);
        let exists = backends.iter().any(eligible);
        let any_reachable = backends
            .iter()
            .any(|b| b.reachable && b.state != BackendState::Inactive);
        for (row, chain) in rows_of(&t).into_iter().enumerate() {
            assert_eq!(chain.len(), 1 + usize::from(hops), "case {case} row {row}");
            for a in chain.iter() {
                let b = by_addr[a];
                assert_ne!(b.state, BackendState::Inactive, "case {case} row {row}");
                if any_reachable && exists {
                    assert!(b.reachable, "case {case} row {row}: {b:?}");
                }
            }
            if exists {
                let p = by_addr[&chain.primary()];
                assert!(eligible(&p), "case {case} row {row}: {p:?}");
            }
        }
    }
}

#[test]
fn removing_a_backend_changes_only_its_own_rows() {
    let mut g = Gen(4);
    for case in 0..12 {
        let n = 3 + g.below(40) as usize;
        let mut backends = g.backends(n, case % 2 == 0, 80);
        // Keep the table-wide facts (someone healthy and serving) unchanged
        // by the removal, as the property is stated for them.
        for b in backends.iter_mut().take(2) {
            b.state = BackendState::Active;
            b.healthy = true;
        }
        let seed = g.seed();
        let hops = g.hops();
        let victim = backends[2 + g.below(backends.len() as u64 - 2) as usize].addr;
        let before = rows_of(&Rendezvous::build(seed, hops, &backends).unwrap());
        backends.retain(|b| b.addr != victim);
        let after = rows_of(&Rendezvous::build(seed, hops, &backends).unwrap());
        let mut changed = 0;
        for (row, (b, a)) in before.iter().zip(&after).enumerate() {
            if b != a {
                changed += 1;
                assert!(
                    b.contains(&victim),
                    "case {case} row {row}: {b:?} -> {a:?} without {victim}"
                );
            }
            assert!(!a.contains(&victim));
        }
        let owned = before.iter().filter(|r| r.contains(&victim)).count();
        assert_eq!(changed, owned, "case {case}: every row it held changes");
    }
}

/// The entries of `chain` without the padding (the repeats of its last).
fn unpadded(chain: &[IpAddr]) -> Vec<IpAddr> {
    let mut v = chain.to_vec();
    while v.len() > 1 && v[v.len() - 1] == v[v.len() - 2] {
        v.pop();
    }
    v
}

/// `entries` cut or padded (repeating the last) to `len`.
fn padded(mut entries: Vec<IpAddr>, len: usize) -> Vec<IpAddr> {
    entries.truncate(len);
    while entries.len() < len {
        entries.push(*entries.last().unwrap());
    }
    entries
}

/// `chain` with `new` inserted at `pos`, cut to the same length.
fn inserted(chain: &Chain<IpAddr>, pos: usize, new: IpAddr) -> Vec<IpAddr> {
    let mut v = unpadded(chain);
    v.insert(pos, new);
    padded(v, chain.len())
}

#[test]
fn a_new_backend_takes_about_one_share_of_the_rows() {
    // Bound: the count of rows it takes as primary is binomial(65,536,
    // 1/(N+1)); we accept 5 standard deviations around the mean, which for
    // N <= 32 is within 9% of an even share.
    let mut g = Gen(5);
    for &n in &[1usize, 3, 9, 31, 99, 255] {
        let mut backends: Vec<Backend> = (0..n)
            .map(|i| {
                Backend::new(
                    IpAddr::V4(Ipv4Addr::new(
                        198,
                        51,
                        100 + (i / 250) as u8,
                        (i % 250) as u8 + 1,
                    )),
                    BackendState::Active,
                )
            })
            .collect();
        let seed = g.seed();
        let hops = g.hops();
        let before = rows_of(&Rendezvous::build(seed, hops, &backends).unwrap());
        let new = IpAddr::V4(Ipv4Addr::new(203, 0, 113, 77));
        backends.push(active(&new.to_string()));
        let after = rows_of(&Rendezvous::build(seed, hops, &backends).unwrap());
        let p = 1.0 / (n as f64 + 1.0);
        let mean = TABLE_ROWS as f64 * p;
        let sd = (TABLE_ROWS as f64 * p * (1.0 - p)).sqrt();
        let took = after.iter().filter(|r| r.primary() == new).count() as f64;
        assert!(
            (took - mean).abs() <= 5.0 * sd,
            "N={n}: took {took} rows, expected {mean:.0} +- {:.0}",
            5.0 * sd
        );
        for (row, (b, a)) in before.iter().zip(&after).enumerate() {
            // It enters the chains where it ranks among the first 1 + H,
            // and every old entry moves down one place: the old primary is
            // right behind it, so second chance finds its flows.
            match a.iter().position(|x| *x == new) {
                Some(pos) => assert_eq!(
                    a.as_slice(),
                    inserted(b, pos, new),
                    "N={n} hops={hops} row {row}"
                ),
                None => assert_eq!(a, b, "N={n} row {row}: untouched"),
            }
        }
    }
}

#[test]
fn draining_or_failing_a_backend_keeps_it_in_every_chain_it_was_in() {
    let mut g = Gen(6);
    for case in 0..12 {
        let n = 2 + g.below(30) as usize;
        let mut backends: Vec<Backend> = g.backends(n, case % 2 == 1, 100);
        for b in &mut backends {
            b.state = BackendState::Active;
            b.healthy = true;
        }
        let seed = g.seed();
        let hops = g.hops();
        let victim = backends[g.below(n as u64) as usize].addr;
        let mut t = Rendezvous::build(seed, hops, &backends).unwrap();
        let before = rows_of(&t);
        let op = if case % 2 == 0 {
            Op::State(victim, BackendState::Draining)
        } else {
            Op::Health(victim, false)
        };
        apply_to(&mut t, &op).unwrap();
        let after = rows_of(&t);
        for (row, (b, a)) in before.iter().zip(&after).enumerate() {
            let what = format!("case {case} hops {hops} {op:?} row {row}: {b:?} -> {a:?}");
            if n > 1 {
                assert_ne!(a.primary(), victim, "{what}: never primary");
            }
            if b.primary() == victim && n > 1 {
                // The first alternate takes over; the victim, ranked
                // first, is the first alternate, and the rest stay.
                let mut want = unpadded(b);
                want.swap(0, 1);
                assert_eq!(a.as_slice(), padded(want, b.len()), "{what}");
            } else {
                assert_eq!(a, b, "{what}: untouched");
            }
        }
    }
}

#[test]
fn an_unreachable_backend_leaves_every_row_and_only_its_rows_change() {
    let mut g = Gen(9);
    for case in 0..8 {
        let n = 3 + g.below(30) as usize;
        let mut backends = g.backends(n, case % 2 == 0, 100);
        for b in &mut backends {
            b.state = BackendState::Active;
        }
        let seed = g.seed();
        let hops = g.hops();
        let victim = backends[g.below(n as u64) as usize].addr;
        let mut t = Rendezvous::build(seed, hops, &backends).unwrap();
        let before = rows_of(&t);
        t.set_reachable(victim, false).unwrap();
        for (row, (b, a)) in before.iter().zip(&rows_of(&t)).enumerate() {
            assert!(!a.contains(&victim), "case {case} row {row}");
            if !b.contains(&victim) {
                assert_eq!(a, b, "case {case} row {row}");
            }
        }
        let d = diff_rows(
            &before,
            &rows_of(&t),
            &Holders::all(&before),
            &[(victim, Release::Unreachable)].into(),
        );
        assert!(d.lost.is_empty(), "case {case}: {:?}", d.lost);
        assert_eq!(d.released.len(), 1);
        assert_eq!(
            d.released[0].rows,
            before.iter().filter(|r| r.contains(&victim)).count()
        );
    }
}

/// A change made while earlier ones are still in flight.
#[derive(Debug, Clone, Copy)]
enum Change {
    Drain,
    Add,
    Unhealthy,
    Undrain,
    Healthy,
}

/// docs/spec.md section 4: "A chain of 1 + H survives up to H changes of the
/// same row in flight". From a table of active, healthy backends, any H
/// changes (drain, add, mark unhealthy, and their undoing) leave every
/// backend that was a row's primary at any step in that row's final chain,
/// so second chance still finds every flow. One more change than H loses
/// some, and the diff of the last change, with the holders tracked since
/// the start, names exactly those.
#[test]
fn up_to_hops_overlapping_changes_keep_every_past_primary_in_the_chain() {
    let mut g = Gen(10);
    let mut lost_beyond_h = 0;
    for case in 0..36 {
        let hops = 1 + (case % usize::from(MAX_HOPS)) as u8;
        let v6 = case % 4 == 3;
        let n = 3 + g.below(12) as usize;
        let mut list: Vec<Backend> = g
            .backends(n, v6, 100)
            .into_iter()
            .map(|b| Backend::new(b.addr, BackendState::Active))
            .collect();
        let seed = g.seed();
        let mut t = Rendezvous::build(seed, hops, &list).unwrap();
        let start = rows_of(&t);
        // Every backend takes new flows: only the primaries hold any.
        let mut tracked = Holders::assumed(&start, |_| true);
        // The same, kept by hand: per row, the past primaries still in it.
        let mut held: Vec<Vec<IpAddr>> = start.iter().map(|c| vec![c[0]]).collect();
        for step in 0..=usize::from(hops) {
            let before = rows_of(&t);
            let pick = |g: &mut Gen, list: &[Backend], f: &dyn Fn(&Backend) -> bool| {
                let c: Vec<IpAddr> = list.iter().filter(|b| f(b)).map(|b| b.addr).collect();
                (!c.is_empty()).then(|| c[g.below(c.len() as u64) as usize])
            };
            let op = match [
                Change::Drain,
                Change::Add,
                Change::Unhealthy,
                Change::Undrain,
                Change::Healthy,
            ][g.below(5) as usize]
            {
                Change::Drain => pick(&mut g, &list, &|b| b.state == BackendState::Active)
                    .map(|a| Op::State(a, BackendState::Draining)),
                Change::Undrain => pick(&mut g, &list, &|b| b.state == BackendState::Draining)
                    .map(|a| Op::State(a, BackendState::Active)),
                Change::Unhealthy => {
                    pick(&mut g, &list, &|b| b.healthy).map(|a| Op::Health(a, false))
                }
                Change::Healthy => {
                    pick(&mut g, &list, &|b| !b.healthy).map(|a| Op::Health(a, true))
                }
                Change::Add => {
                    let addr = g.addr(v6);
                    (!list.iter().any(|b| b.addr == addr))
                        .then(|| Op::Add(Backend::new(addr, BackendState::Active)))
                }
            };
            let Some(op) = op else { continue };
            if apply_to(&mut t, &op).is_err() {
                continue;
            }
            apply(&mut list, &op);
            let after = rows_of(&t);
            let d = diff_rows(&before, &after, &tracked, &Default::default());
            let within = step < usize::from(hops);
            let mut rows_lost = 0;
            for (row, chain) in after.iter().enumerate() {
                let what = format!(
                    "case {case} hops {hops} step {step} {op:?} row {row}: holders {:?}, chain {chain:?}",
                    held[row]
                );
                if row % 97 == 0 {
                    for (i, a) in before[row].iter().enumerate() {
                        let first = !before[row][..i].contains(a);
                        assert_eq!(
                            tracked.holds(row, i),
                            first && held[row].contains(a),
                            "{what}: place {i}"
                        );
                    }
                }
                let missing: Vec<IpAddr> = held[row]
                    .iter()
                    .copied()
                    .filter(|h| !chain.contains(h))
                    .collect();
                if within {
                    assert!(missing.is_empty(), "{what}");
                }
                for h in &held[row] {
                    assert_eq!(d.loses(*h, row as u32), missing.contains(h), "{what}: {h}");
                }
                rows_lost += usize::from(!missing.is_empty());
                lost_beyond_h += missing.len();
                held[row].retain(|h| chain.contains(h));
                if !held[row].contains(&chain[0]) {
                    held[row].push(chain[0]);
                }
            }
            assert_eq!(d.rows_lost, rows_lost, "case {case} step {step}");
            tracked = tracked.after(&before, &after);
        }
    }
    // One change more than H does lose flows (the bound is tight).
    assert!(lost_beyond_h > 0);
}

/// The case: with one hop, drain a backend, then add one while it
/// drains: the rows where the new one ranks above the drain-time primary
/// lose that primary (its flows since the drain), and the diff of the add,
/// with the holders known since the start, says so exactly; with two hops
/// nothing is lost and the diff names nothing.
#[test]
fn drain_then_add_loses_only_what_the_diff_reports() {
    let mut g = Gen(11);
    for hops in [1u8, 2] {
        let list: Vec<Backend> = (1..=6u8)
            .map(|i| active(&format!("198.51.100.{i}")))
            .collect();
        let seed = g.seed();
        let mut t = Rendezvous::build(seed, hops, &list).unwrap();
        let original = rows_of(&t);
        let holders = Holders::assumed(&original, |_| true);
        t.set_state(list[0].addr, BackendState::Draining).unwrap();
        let draining = rows_of(&t);
        let d = diff_rows(&original, &draining, &holders, &Default::default());
        assert_eq!(d.rows_lost, 0, "hops {hops}: a drain loses nothing");
        let holders = holders.after(&original, &draining);
        let new: IpAddr = "198.51.100.7".parse().unwrap();
        t.add(Backend::new(new, BackendState::Active)).unwrap();
        let added = rows_of(&t);
        let d = diff_rows(&draining, &added, &holders, &Default::default());
        let mut lost = 0;
        for (row, (o, n)) in draining.iter().zip(&added).enumerate() {
            // Flows of a row live on the primaries it had: the original
            // one and the drain-time one.
            for holder in [original[row][0], o[0]] {
                let survives = n.contains(&holder);
                assert_eq!(
                    !survives,
                    d.loses(holder, row as u32),
                    "hops {hops} row {row}: {o:?} -> {n:?}"
                );
                lost += usize::from(!survives);
            }
        }
        if hops == 1 {
            assert!(lost > 0, "one hop cannot hold two changes");
            assert_eq!(d.rows_lost, lost);
        } else {
            assert_eq!(lost, 0);
            assert_eq!(d.rows_lost, 0, "nothing that may hold flows leaves");
            assert!(d.lost.is_empty());
        }
        // Without the history, every member of the old chain may hold
        // flows: the alternates the new backend pushes out are reported.
        let blind = diff_rows(
            &draining,
            &added,
            &Holders::all(&draining),
            &Default::default(),
        );
        assert!(blind.rows_lost > d.rows_lost);
    }
}

#[test]
fn diff_counts_moves_and_reports_released_rows_apart() {
    let seed = [3u8; 16];
    let list: Vec<Backend> = (1..=5u8).map(|i| active(&format!("192.0.2.{i}"))).collect();
    let old = Rendezvous::build(seed, 2, &list).unwrap();
    let gone = list[1].addr;
    let mut next = list.clone();
    next.retain(|b| b.addr != gone);
    let new = Rendezvous::build(seed, 2, &next).unwrap();
    let (a, b) = (rows_of(&old), rows_of(&new));
    let released = Release::between(&list, &next);
    assert_eq!(released, [(gone, Release::Removed)].into());
    let all = Holders::all(&a);
    let d = diff_rows(&a, &b, &all, &released);
    assert!(d.lost.is_empty());
    assert_eq!(d.rows_lost, 0);
    let held = a.iter().filter(|r| r.contains(&gone)).count();
    assert_eq!(d.released.len(), 1);
    assert_eq!((d.released[0].ip, d.released[0].rows), (gone, held));
    assert_eq!(d.rows_changed, held);
    let primary = a.iter().filter(|r| r.primary() == gone).count();
    assert_eq!(d.rows_primary_changed, primary);
    let m = d.backends.iter().find(|m| m.ip == gone).unwrap();
    assert_eq!((m.primary_before, m.primary_after), (primary, 0));
    assert_eq!((m.alternate_before, m.alternate_after), (held - primary, 0));
    // Without the release, the same rows are reported lost, per place.
    let d = diff_rows(&a, &b, &all, &Default::default());
    assert_eq!(d.rows_lost, held);
    assert_eq!(d.lost.len(), 1);
    assert_eq!(d.lost[0].primary_rows.len(), primary);
    assert_eq!(d.lost[0].alternate_rows.len(), held - primary);
    assert!(d.released.is_empty());
}

#[test]
fn same_backends_in_any_order_give_the_same_table() {
    let mut g = Gen(7);
    let backends = g.backends_reach(40, false, 80, 90);
    let seed = g.seed();
    let a = rows_of(&Rendezvous::build(seed, 2, &backends).unwrap());
    let b = rows_of(&Rendezvous::build(seed, 2, &backends).unwrap());
    let mut reversed = backends.clone();
    reversed.reverse();
    let c = rows_of(&Rendezvous::build(seed, 2, &reversed).unwrap());
    assert_eq!(a, b);
    assert_eq!(a, c);
}

#[test]
fn edge_cases_of_placement() {
    let seed = [9u8; 16];
    let (a, b) = (
        "192.0.2.10".parse::<IpAddr>().unwrap(),
        "192.0.2.11".parse::<IpAddr>().unwrap(),
    );
    // One backend: the chain repeats it.
    let one = Rendezvous::build(seed, 3, &[active("192.0.2.10")]).unwrap();
    assert!(rows_of(&one).iter().all(|r| r.as_slice() == [a; 4]));

    // Two backends, two hops: padded with the last entry.
    let two = Rendezvous::build(seed, 2, &[active("192.0.2.10"), active("192.0.2.11")]).unwrap();
    for r in rows_of(&two) {
        assert_ne!(r[0], r[1]);
        assert_eq!(r[2], r[1], "{r:?}");
    }

    // Nobody healthy: placed by state alone, never blackholed.
    let mut sick = vec![active("192.0.2.10"), active("192.0.2.11")];
    sick.iter_mut().for_each(|b| b.healthy = false);
    let t = Rendezvous::build(seed, 1, &sick).unwrap();
    assert!(rows_of(&t).iter().all(|r| r[0] != r[1]));

    // One unhealthy: never primary, always in the chain.
    let mut one_sick = vec![active("192.0.2.10"), active("192.0.2.11")];
    one_sick[1].healthy = false;
    let t = Rendezvous::build(seed, 1, &one_sick).unwrap();
    assert!(rows_of(&t).iter().all(|r| r.as_slice() == [a, b]));

    // Only draining backends: they keep serving.
    let mut drained = vec![active("192.0.2.10"), active("192.0.2.11")];
    drained
        .iter_mut()
        .for_each(|b| b.state = BackendState::Draining);
    let t = Rendezvous::build(seed, 1, &drained).unwrap();
    assert!(rows_of(&t).iter().all(|r| r[0] != r[1]));

    // Nobody reachable: placed as if all were, never blackholed.
    let mut dark = vec![active("192.0.2.10"), active("192.0.2.11")];
    dark.iter_mut().for_each(|b| b.reachable = false);
    let t = Rendezvous::build(seed, 1, &dark).unwrap();
    assert!(rows_of(&t).iter().all(|r| r[0] != r[1]));

    // An unreachable backend is in no row while another is reachable.
    let mut one_dark = vec![active("192.0.2.10"), active("192.0.2.11")];
    one_dark[1].reachable = false;
    let t = Rendezvous::build(seed, 2, &one_dark).unwrap();
    assert!(rows_of(&t).iter().all(|r| r.as_slice() == [a, a, a]));

    // An inactive backend is never placed, healthy or not.
    let mut with_inactive = vec![active("192.0.2.10"), active("192.0.2.11")];
    with_inactive[1].state = BackendState::Inactive;
    let t = Rendezvous::build(seed, 1, &with_inactive).unwrap();
    assert!(rows_of(&t).iter().all(|r| r.as_slice() == [a, a]));
}

#[test]
fn bad_tables_and_changes_are_refused_whole() {
    let seed = [1u8; 16];
    let v4 = active("192.0.2.1");
    let v6 = active("2001:db8::1");
    assert_eq!(
        Rendezvous::build(seed, 1, &[v4, v6]).unwrap_err(),
        TableError::MixedFamilies {
            first: v4.addr,
            other: v6.addr
        }
    );
    assert_eq!(
        Rendezvous::build(seed, 1, &[v4, v4]).unwrap_err(),
        TableError::DuplicateBackend(v4.addr)
    );
    assert_eq!(
        Rendezvous::build(seed, 1, &[]).unwrap_err(),
        TableError::NoUsableBackend
    );
    assert_eq!(
        Rendezvous::build(seed, MAX_HOPS + 1, &[v4]).unwrap_err(),
        TableError::Hops(MAX_HOPS + 1)
    );
    let mut t = Rendezvous::build(seed, 2, &[v4]).unwrap();
    let before = rows_of(&t);
    assert_eq!(t.remove(v4.addr), Err(TableError::NoUsableBackend));
    assert_eq!(
        t.set_state(v4.addr, BackendState::Inactive),
        Err(TableError::NoUsableBackend)
    );
    assert_eq!(
        t.add(v6),
        Err(TableError::MixedFamilies {
            first: v4.addr,
            other: v6.addr
        })
    );
    assert_eq!(
        t.set_healthy(v6.addr, false),
        Err(TableError::UnknownBackend(v6.addr))
    );
    assert_eq!(
        t.set_reachable(v6.addr, false),
        Err(TableError::UnknownBackend(v6.addr))
    );
    assert_eq!(rows_of(&t), before);
    assert_eq!(t.backends().count(), 1);
}

/// An IP-in-IP table (no hop list) has the primaries of a GUE table of the
/// same backends, and its loss report says what no second chance means: a
/// drain or an addition loses every row whose primary changes, and
/// nothing else.
#[test]
fn ipip_rows_are_the_primaries_alone_and_every_moved_primary_loses_its_flows() {
    let seed = [0x3c; 16];
    let ip = |i: u8| IpAddr::V4(Ipv4Addr::new(198, 51, 100, i));
    let backends: Vec<Backend> = (1..=4)
        .map(|i| Backend::new(ip(i), BackendState::Active))
        .collect();
    let gue = Rendezvous::build(seed, 2, &backends).unwrap();
    let ipip = Rendezvous::build(seed, 0, &backends).unwrap();
    assert_eq!(ipip.hops(), 0);
    for (g, i) in gue.row_addrs().zip(ipip.row_addrs()) {
        assert_eq!(i.as_slice(), [g.primary()]);
    }
    let rows = |t: &Rendezvous| t.row_addrs().collect::<Vec<_>>();

    // Drain backend 2: exactly the rows it was primary of are lost.
    let before = rows(&ipip);
    let mut drained = ipip.clone();
    drained.set_state(ip(2), BackendState::Draining).unwrap();
    let after = rows(&drained);
    let d = diff_rows(&before, &after, &Holders::all(&before), &Default::default());
    let owned: Vec<u32> = (0..TABLE_ROWS as u32)
        .filter(|&r| before[r as usize].primary() == ip(2))
        .collect();
    assert!(!owned.is_empty());
    assert_eq!(d.lost.len(), 1);
    assert_eq!(d.lost[0].ip, ip(2));
    assert_eq!(d.lost[0].primary_rows, owned);
    assert!(d.lost[0].alternate_rows.is_empty());
    assert_eq!(d.rows_lost, owned.len());

    // Add backend 5: the rows it takes lose their old primary's flows.
    let mut added = ipip.clone();
    added
        .add(Backend::new(ip(5), BackendState::Active))
        .unwrap();
    let after = rows(&added);
    let d = diff_rows(&before, &after, &Holders::all(&before), &Default::default());
    let taken = after.iter().filter(|c| c.primary() == ip(5)).count();
    assert!(taken > 0);
    assert_eq!(d.rows_lost, taken);
    assert_eq!(d.rows_primary_changed, taken);

    // Chains of one entry read back as such.
    assert_eq!(Chain::from_slice(&[ip(1)]).unwrap().as_slice(), [ip(1)]);
}
