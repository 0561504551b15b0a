//! The short fuzz run of `make test`: every input of the fuzz targets'
//! corpora (director-xdp/fuzz/corpus/TARGET/) and, for each, a fixed set of
//! mutations (bytes flipped, cut, repeated, spliced with another input),
//! run through the same checks as the cargo-fuzz targets of `make fuzz`
//! (director-xdp/fuzz/checks.rs): the config parser, the GUE parser, the
//! API request bodies and the pcap/pcapng reader. Deterministic: a failing
//! input is printed in hex.
#![allow(clippy::unwrap_used)] // a test: a failure is the test failing

#[path = "../fuzz/checks.rs"]
mod checks;

// The checks read captures through `crate::pcap`.
use director_xdp::pcap;

use std::path::Path;

/// Mutations per corpus input.
const MUTATIONS: u64 = 20_000;

/// xorshift64*: small, seeded, reproducible.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

/// Input `i`'s mutation of `seed` (another corpus input, `other`, for
/// splices).
fn mutate(seed: &[u8], other: &[u8], rng: &mut Rng) -> Vec<u8> {
    let mut v = seed.to_vec();
    for _ in 0..=rng.below(4) {
        match rng.below(6) {
            0 if !v.is_empty() => {
                let i = rng.below(v.len());
                v[i] ^= 1 << rng.below(8);
            }
            1 if !v.is_empty() => {
                let i = rng.below(v.len());
                v[i] = rng.next() as u8;
            }
            2 => v.truncate(rng.below(v.len() + 1)),
            3 if !v.is_empty() => {
                let (a, b) = (rng.below(v.len()), rng.below(v.len()));
                let (a, b) = (a.min(b), a.max(b));
                let piece = v[a..b].to_vec();
                let at = rng.below(v.len());
                v.splice(at..at, piece);
            }
            4 if !other.is_empty() => {
                let at = rng.below(v.len() + 1);
                let from = rng.below(other.len());
                v.truncate(at);
                v.extend_from_slice(&other[from..]);
            }
            _ => {
                // Interesting bytes where a length or a number may be.
                if !v.is_empty() {
                    let i = rng.below(v.len());
                    v[i] = [0, 0xff, 0x7f, 0x80, b'9', b'"', b'{'][rng.below(7)];
                }
            }
        }
    }
    v
}

fn run(target: &str, check: fn(&[u8])) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/corpus")
        .join(target);
    let mut inputs: Vec<Vec<u8>> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| std::fs::read(e.unwrap().path()).unwrap())
        .collect();
    inputs.sort();
    assert!(!inputs.is_empty(), "no corpus in {}", dir.display());
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15 ^ target.len() as u64);
    let mut count = 0u64;
    for (k, seed) in inputs.iter().enumerate() {
        let other = &inputs[(k + 1) % inputs.len()];
        let mut cases = vec![seed.clone()];
        cases.extend((0..MUTATIONS).map(|_| mutate(seed, other, &mut rng)));
        for case in cases {
            let result = std::panic::catch_unwind(|| check(&case));
            if result.is_err() {
                let hex: String = case.iter().map(|b| format!("{b:02x}")).collect();
                panic!("{target}: the input above breaks the check; hex: {hex}");
            }
            count += 1;
        }
    }
    eprintln!("{target}: {count} inputs checked");
}

#[test]
fn config_parser() {
    run("config", checks::config);
}

#[test]
fn gue_parser() {
    run("gue", checks::gue);
}

#[test]
fn api_request_bodies() {
    run("api_body", checks::api_body);
}

#[test]
fn capture_reader() {
    run("capture", checks::capture);
}
