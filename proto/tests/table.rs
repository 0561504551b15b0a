//! The rendezvous table builder against GLB's published vectors, against a
//! naive reference implementation of SPEC.md section 4 (full sort per row),
//! and against the properties operators rely on.
#![allow(clippy::unwrap_used)] // helpers of tests: a failure is the test failing

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use proto::TABLE_ROWS;
use proto::hex::decode_array;
use proto::table::{Backend, BackendState, Rendezvous, TableError, row_seed, score};

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
    fn backends(&mut self, n: usize, v6: bool, healthy_ratio: u64) -> Vec<Backend> {
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
            });
        }
        if out.iter().all(|b| b.state == BackendState::Inactive) {
            out[0].state = BackendState::Active;
        }
        out
    }
}

fn active(addr: &str) -> Backend {
    Backend {
        addr: addr.parse().unwrap(),
        state: BackendState::Active,
        healthy: true,
    }
}

fn serves(s: BackendState) -> bool {
    matches!(s, BackendState::Active | BackendState::Filling)
}

/// SPEC.md section 4 written the obvious way: rank every backend of the row
/// with a full sort, then apply the placement rule to the ranked list.
fn reference_row(seed: &[u8; 16], backends: &[Backend], row: u32) -> [IpAddr; 2] {
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
    let any_healthy = ranked.iter().any(|(_, b)| b.healthy);
    let pool: Vec<Backend> = ranked
        .into_iter()
        .map(|(_, b)| b)
        .filter(|b| b.healthy || !any_healthy)
        .collect();
    match pool.iter().position(|b| serves(b.state)) {
        Some(p) => {
            let primary = pool[p].addr;
            let secondary = pool[..p]
                .iter()
                .find(|b| b.state == BackendState::Draining)
                .or_else(|| pool[p + 1..].iter().find(|b| serves(b.state)))
                .map_or(primary, |b| b.addr);
            [primary, secondary]
        }
        None => [pool[0].addr, pool.get(1).unwrap_or(&pool[0]).addr],
    }
}

fn rows_of(t: &Rendezvous) -> Vec<[IpAddr; 2]> {
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
            rows[row],
            reference_row(seed, backends, row as u32),
            "{case}: row {row}, backends {backends:?}"
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

        // The builder agrees: all active and healthy gives GLB's rank 0
        // primary, rank 1 secondary.
        let backends: Vec<Backend> = hosts.iter().map(|h| active(&h.to_string())).collect();
        let t = Rendezvous::build(seed, &backends).unwrap();
        assert_eq!(
            rows_of(&t)[row as usize],
            [want[0], want[1]],
            "placement of row {row}"
        );
    }
}

#[test]
fn builder_equals_reference_on_random_tables() {
    let mut g = Gen(1);
    for case in 0..60 {
        let n = 1 + g.below(24) as usize;
        let v6 = case % 3 == 0;
        // Mostly healthy, sometimes nobody healthy (placement ignores health).
        let healthy_ratio = [90, 50, 10, 0][case % 4];
        let backends = g.backends(n, v6, healthy_ratio);
        let seed = g.seed();
        let t = Rendezvous::build(seed, &backends).unwrap();
        let step = if case < 6 { 1 } else { 61 };
        assert_matches_reference(&t, &seed, &backends, step, &format!("case {case}"));
    }
}

/// Applies the same change to a backend list, as a config edit would.
fn apply(list: &mut Vec<Backend>, op: &Op) {
    match *op {
        Op::State(a, s) => list.iter_mut().find(|b| b.addr == a).unwrap().state = s,
        Op::Health(a, h) => list.iter_mut().find(|b| b.addr == a).unwrap().healthy = h,
        Op::Add(b) => list.push(b),
        Op::Remove(a) => list.retain(|b| b.addr != a),
    }
}

#[derive(Debug)]
enum Op {
    State(IpAddr, BackendState),
    Health(IpAddr, bool),
    Add(Backend),
    Remove(IpAddr),
}

#[test]
fn incremental_changes_equal_a_fresh_build() {
    let mut g = Gen(2);
    for case in 0..12 {
        let v6 = case % 2 == 1;
        let n = 4 + g.below(20) as usize;
        let mut list = g.backends(n, v6, 70);
        let seed = g.seed();
        let mut t = Rendezvous::build(seed, &list).unwrap();
        for step in 0..25 {
            let pick = list[g.below(list.len() as u64) as usize].addr;
            let op = match g.below(4) {
                0 => Op::State(pick, g.state()),
                1 => Op::Health(pick, g.below(2) == 0),
                2 => {
                    let addr = g.addr(v6);
                    if list.iter().any(|b| b.addr == addr) {
                        continue;
                    }
                    Op::Add(Backend {
                        addr,
                        state: g.state(),
                        healthy: g.below(3) > 0,
                    })
                }
                _ => Op::Remove(pick),
            };
            let mut next = list.clone();
            apply(&mut next, &op);
            let fresh = Rendezvous::build(seed, &next);
            let result = match &op {
                Op::State(a, s) => t.set_state(*a, *s),
                Op::Health(a, h) => t.set_healthy(*a, *h),
                Op::Add(b) => t.add(*b).map(|_| ()),
                Op::Remove(a) => t.remove(*a),
            };
            let what = format!("case {case} step {step} {op:?}");
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
fn primary_is_healthy_and_serving_whenever_such_a_backend_exists() {
    let mut g = Gen(3);
    for case in 0..20 {
        let n = 2 + g.below(30) as usize;
        let backends = g.backends(n, case % 2 == 0, 60);
        let t = Rendezvous::build(g.seed(), &backends).unwrap();
        let by_addr: HashMap<IpAddr, Backend> = backends.iter().map(|b| (b.addr, *b)).collect();
        let exists = backends.iter().any(|b| b.healthy && serves(b.state));
        for (row, [p, s]) in rows_of(&t).into_iter().enumerate() {
            let p = by_addr[&p];
            assert_ne!(p.state, BackendState::Inactive, "case {case} row {row}");
            assert_ne!(
                by_addr[&s].state,
                BackendState::Inactive,
                "case {case} row {row}"
            );
            if exists {
                assert!(p.healthy && serves(p.state), "case {case} row {row}: {p:?}");
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
        // Keep the pool-wide facts (someone healthy and serving) unchanged by
        // the removal, as the property is stated for them.
        for b in backends.iter_mut().take(2) {
            b.state = BackendState::Active;
            b.healthy = true;
        }
        let seed = g.seed();
        let victim = backends[2 + g.below(backends.len() as u64 - 2) as usize].addr;
        let before = rows_of(&Rendezvous::build(seed, &backends).unwrap());
        backends.retain(|b| b.addr != victim);
        let after = rows_of(&Rendezvous::build(seed, &backends).unwrap());
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

#[test]
fn a_new_backend_takes_about_one_share_of_the_rows() {
    // Bound: the count of rows it takes as primary is binomial(65,536,
    // 1/(N+1)); we accept 5 standard deviations around the mean, which for
    // N <= 32 is within 9% of an even share.
    let mut g = Gen(5);
    for &n in &[1usize, 3, 9, 31, 99, 255] {
        let mut backends: Vec<Backend> = (0..n)
            .map(|i| Backend {
                addr: IpAddr::V4(Ipv4Addr::new(
                    198,
                    51,
                    100 + (i / 250) as u8,
                    (i % 250) as u8 + 1,
                )),
                state: BackendState::Active,
                healthy: true,
            })
            .collect();
        let seed = g.seed();
        let before = rows_of(&Rendezvous::build(seed, &backends).unwrap());
        let new = IpAddr::V4(Ipv4Addr::new(203, 0, 113, 77));
        backends.push(active(&new.to_string()));
        let after = rows_of(&Rendezvous::build(seed, &backends).unwrap());
        let p = 1.0 / (n as f64 + 1.0);
        let mean = TABLE_ROWS as f64 * p;
        let sd = (TABLE_ROWS as f64 * p * (1.0 - p)).sqrt();
        let took = after.iter().filter(|r| r[0] == new).count() as f64;
        assert!(
            (took - mean).abs() <= 5.0 * sd,
            "N={n}: took {took} rows, expected {mean:.0} +- {:.0}",
            5.0 * sd
        );
        for (row, (b, a)) in before.iter().zip(&after).enumerate() {
            if a[0] == new {
                // The old primary still owns the row's flows: it is the
                // secondary now, so second chance finds them.
                assert_eq!(a[1], b[0], "N={n} row {row}");
            } else if a[1] == new {
                assert_eq!(a[0], b[0], "N={n} row {row}: same primary");
            } else {
                assert_eq!(a, b, "N={n} row {row}: untouched");
            }
        }
    }
}

#[test]
fn draining_makes_it_secondary_of_exactly_the_rows_it_was_primary_of() {
    let mut g = Gen(6);
    for case in 0..8 {
        let n = 2 + g.below(30) as usize;
        let mut backends: Vec<Backend> = g.backends(n, case % 2 == 1, 100);
        for b in &mut backends {
            b.state = BackendState::Active;
            b.healthy = true;
        }
        let seed = g.seed();
        let victim = backends[g.below(n as u64) as usize].addr;
        let mut t = Rendezvous::build(seed, &backends).unwrap();
        let before = rows_of(&t);
        t.set_state(victim, BackendState::Draining).unwrap();
        let after = rows_of(&t);
        for (row, (b, a)) in before.iter().zip(&after).enumerate() {
            assert_ne!(
                a[0], victim,
                "case {case} row {row}: draining is never primary"
            );
            assert_eq!(
                a[1] == victim,
                b[0] == victim,
                "case {case} row {row}: {b:?} -> {a:?}"
            );
            if b[0] == victim {
                assert_eq!(
                    a[0], b[1],
                    "case {case} row {row}: the old secondary takes over"
                );
            } else if b[1] == victim {
                // It owns no flows there: the next serving backend (or the
                // primary itself) becomes the fallback.
                assert_eq!(a[0], b[0], "case {case} row {row}: same primary");
            } else {
                assert_eq!(a, b, "case {case} row {row}: untouched");
            }
        }
    }
}

#[test]
fn same_backends_in_any_order_give_the_same_table() {
    let mut g = Gen(7);
    let backends = g.backends(40, false, 80);
    let seed = g.seed();
    let a = rows_of(&Rendezvous::build(seed, &backends).unwrap());
    let b = rows_of(&Rendezvous::build(seed, &backends).unwrap());
    let mut reversed = backends.clone();
    reversed.reverse();
    let c = rows_of(&Rendezvous::build(seed, &reversed).unwrap());
    assert_eq!(a, b);
    assert_eq!(a, c);
}

#[test]
fn edge_cases_of_placement() {
    let seed = [9u8; 16];
    // One backend: it is primary and secondary of every row.
    let one = Rendezvous::build(seed, &[active("192.0.2.10")]).unwrap();
    assert!(rows_of(&one).iter().all(|r| r == &[r[0], r[0]]));

    // Nobody healthy: placed by state alone, never blackholed.
    let mut sick = vec![active("192.0.2.10"), active("192.0.2.11")];
    sick.iter_mut().for_each(|b| b.healthy = false);
    let t = Rendezvous::build(seed, &sick).unwrap();
    assert!(rows_of(&t).iter().all(|r| r[0] != r[1]));

    // Only draining backends: they keep serving.
    let mut drained = vec![active("192.0.2.10"), active("192.0.2.11")];
    drained
        .iter_mut()
        .for_each(|b| b.state = BackendState::Draining);
    let t = Rendezvous::build(seed, &drained).unwrap();
    assert!(rows_of(&t).iter().all(|r| r[0] != r[1]));

    // An inactive backend is never placed, healthy or not.
    let mut with_inactive = vec![active("192.0.2.10"), active("192.0.2.11")];
    with_inactive[1].state = BackendState::Inactive;
    let t = Rendezvous::build(seed, &with_inactive).unwrap();
    let only: IpAddr = "192.0.2.10".parse().unwrap();
    assert!(rows_of(&t).iter().all(|r| r == &[only, only]));
}

#[test]
fn bad_tables_and_changes_are_refused_whole() {
    let seed = [1u8; 16];
    let v4 = active("192.0.2.1");
    let v6 = active("2001:db8::1");
    assert_eq!(
        Rendezvous::build(seed, &[v4, v6]).unwrap_err(),
        TableError::MixedFamilies {
            first: v4.addr,
            other: v6.addr
        }
    );
    assert_eq!(
        Rendezvous::build(seed, &[v4, v4]).unwrap_err(),
        TableError::DuplicateBackend(v4.addr)
    );
    assert_eq!(
        Rendezvous::build(seed, &[]).unwrap_err(),
        TableError::NoUsableBackend
    );
    let mut t = Rendezvous::build(seed, &[v4]).unwrap();
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
    assert_eq!(rows_of(&t), before);
    assert_eq!(t.backends().count(), 1);
}

#[test]
fn vendored_vectors_equal_the_shared_ones() {
    // The team's shared/compat folder sits beside the repository (and beside
    // CI's clone). The copies in proto/compat let a clone alone build and
    // test; they must not drift from the originals.
    let shared = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/compat");
    if !shared.exists() {
        eprintln!(
            "no {} here: only the vendored copies are checked",
            shared.display()
        );
        return;
    }
    for name in ["glb-rendezvous-vectors.json", "siphash-vectors.json"] {
        let ours = std::fs::read(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("compat")
                .join(name),
        )
        .unwrap();
        let theirs = std::fs::read(shared.join(name)).unwrap();
        assert!(
            ours == theirs,
            "proto/compat/{name} differs from shared/compat/{name}"
        );
    }
}
