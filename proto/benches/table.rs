//! Table-builder benchmark: a full build, and an update after one change,
//! for 16 to 1,024 backends. Prints a Markdown section for
//! `docs/benchmarks.md` (see `make bench`).
//!
//! Method: each figure is the median of `RUNS` timed runs (after one warm-up
//! run), with the minimum beside it; every update run starts from a clone of
//! the same built table, made outside the timed region.

use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::{Duration, Instant};

use proto::table::{Backend, BackendState, DEFAULT_HOPS, Rendezvous};

const RUNS: usize = 15;
const SEED: [u8; 16] = *b"bench-seed-00001";

/// `n` distinct backends. IPv4 ones are numbered in 198.18.0.0/15, the
/// benchmarking range (RFC 2544): the documentation ranges hold fewer than
/// 1,024 hosts, and nothing is ever sent to these addresses.
fn backends(n: usize, v6: bool) -> Vec<Backend> {
    (0..n)
        .map(|i| {
            let addr = if v6 {
                IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 1, i as u16))
            } else {
                IpAddr::V4(Ipv4Addr::from(
                    u32::from(Ipv4Addr::new(198, 18, 0, 1)) + i as u32,
                ))
            };
            Backend::new(addr, BackendState::Active)
        })
        .collect()
}

/// Median and minimum time of `run`; what `run` returns is dropped after the
/// clock stops (freeing a table is not part of building or updating it).
fn time<T, U>(mut setup: impl FnMut() -> T, mut run: impl FnMut(T) -> U) -> (Duration, Duration) {
    drop(run(setup()));
    let mut samples: Vec<Duration> = (0..RUNS)
        .map(|_| {
            let input = setup();
            let t = Instant::now();
            let out = run(input);
            let elapsed = t.elapsed();
            drop(out);
            elapsed
        })
        .collect();
    samples.sort();
    (samples[RUNS / 2], samples[0])
}

fn ms(d: Duration) -> String {
    format!("{:.3}", d.as_secs_f64() * 1e3)
}

/// Share of rows whose primary (the backend new flows go to) differs
/// between `a` and `b`.
fn moved(a: &Rendezvous, b: &Rendezvous) -> f64 {
    let changed = a
        .row_addrs()
        .zip(b.row_addrs())
        .filter(|(x, y)| x.primary() != y.primary())
        .count();
    changed as f64 / a.rows().len() as f64
}

fn main() {
    // `cargo bench` passes `--bench`; nothing else is taken.
    let data = std::env::var_os("BENCH_DATA").map(std::path::PathBuf::from);
    let mut times_tsv =
        String::from("backends\tfamily\tfull_ms\tdrain_ms\tunhealthy_ms\tadd_ms\tremove_ms\n");
    let mut moved_rows: Vec<(usize, f64, f64)> = Vec::new();
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    println!("### Table builder (`proto::table::Rendezvous`)\n");
    println!(
        "65,536 rows of 1 + {DEFAULT_HOPS} backends; median (min) of {RUNS} runs, ms; {threads} threads; \
         scoring code: {}. Update = one change to an already built table, placement of every row \
         included.\n",
        proto::table::scoring_path()
    );
    println!(
        "| backends | family | full build | drain one | one unhealthy | add one | remove one |"
    );
    println!("|---:|---|---:|---:|---:|---:|---:|");
    for &(n, v6) in &[
        (16, false),
        (64, false),
        (256, false),
        (1024, false),
        (256, true),
    ] {
        let list = backends(n, v6);
        let built = Rendezvous::build(SEED, DEFAULT_HOPS, &list).expect("valid table");
        let victim = list[n / 2].addr;
        let newcomer = if v6 {
            IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 2, 1))
        } else {
            IpAddr::V4(Ipv4Addr::new(198, 19, 255, 254))
        };
        let full = time(
            || (),
            |_| {
                black_box(
                    Rendezvous::build(SEED, DEFAULT_HOPS, black_box(&list)).expect("valid table"),
                )
            },
        );
        let drain = time(
            || built.clone(),
            |mut t| {
                t.set_state(victim, BackendState::Draining)
                    .expect("known backend");
                t
            },
        );
        let sick = time(
            || built.clone(),
            |mut t| {
                t.set_healthy(victim, false).expect("known backend");
                t
            },
        );
        let add = time(
            || built.clone(),
            |mut t| {
                t.add(Backend::new(newcomer, BackendState::Active))
                    .expect("new backend");
                t
            },
        );
        let remove = time(
            || built.clone(),
            |mut t| {
                t.remove(victim).expect("known backend");
                t
            },
        );
        if !v6 {
            let mut added = built.clone();
            added
                .add(Backend::new(newcomer, BackendState::Active))
                .expect("new backend");
            let mut removed = built.clone();
            removed.remove(victim).expect("known backend");
            moved_rows.push((n, moved(&built, &added), moved(&built, &removed)));
        }
        times_tsv.push_str(&format!(
            "{n}\t{}\t{}\t{}\t{}\t{}\t{}\n",
            if v6 { "IPv6" } else { "IPv4" },
            ms(full.0),
            ms(drain.0),
            ms(sick.0),
            ms(add.0),
            ms(remove.0)
        ));
        let cell = |(med, min): (Duration, Duration)| format!("{} ({})", ms(med), ms(min));
        println!(
            "| {n} | {} | {} | {} | {} | {} | {} |",
            if v6 { "IPv6" } else { "IPv4" },
            cell(full),
            cell(drain),
            cell(sick),
            cell(add),
            cell(remove)
        );
    }
    println!(
        "\nRows moved per change: the share of the 65,536 rows whose primary (the backend new \
         flows go to) changes when one backend is added to N, or one of N removed, against the \
         ideal of a consistent table, 1/(N+1) and 1/N.\n"
    );
    println!("| backends N | add one: moved | ideal 1/(N+1) | remove one: moved | ideal 1/N |");
    println!("|---:|---:|---:|---:|---:|");
    let mut moved_tsv =
        String::from("backends\tadd_moved\tadd_ideal\tremove_moved\tremove_ideal\n");
    for (n, add, remove) in &moved_rows {
        let (ia, ir) = (1.0 / (*n as f64 + 1.0), 1.0 / *n as f64);
        println!(
            "| {n} | {:.3}% | {:.3}% | {:.3}% | {:.3}% |",
            add * 100.0,
            ia * 100.0,
            remove * 100.0,
            ir * 100.0
        );
        moved_tsv.push_str(&format!("{n}\t{add:.6}\t{ia:.6}\t{remove:.6}\t{ir:.6}\n"));
    }
    if let Some(dir) = data {
        std::fs::write(dir.join("table.tsv"), times_tsv).expect("writing table.tsv");
        std::fs::write(dir.join("moved.tsv"), moved_tsv).expect("writing moved.tsv");
    }
}
