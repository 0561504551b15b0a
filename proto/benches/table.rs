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

fn main() {
    // `cargo bench` passes `--bench`; nothing else is taken.
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
}
