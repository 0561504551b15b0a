//! Data-plane fuzzing: the director and the redirect module run with
//! `BPF_PROG_TEST_RUN` on generated frames, every frame checked.
//!
//! - **Director**: the verdict and the output bytes equal what
//!   `proto::director::Model` says (the golden tests' approach, on the
//!   golden cases' configs), the program never returns `XDP_ABORTED`, a
//!   frame passed is passed unchanged, and an encapsulated frame is
//!   well-formed GUE (parsed with `proto::wire`) whose inner packet is the
//!   input after its Ethernet header and whose primary and hop list are the
//!   row's chain in the table `proto::table` builds. The counters (the
//!   outcomes, per bind, per backend) summed over each config's packets
//!   equal the model's.
//! - **Redirect module**: run in a network namespace of its own (a veth
//!   `eth0` holding this host's addresses, one permanent neighbour per
//!   family, a listener per family and one established connection), so
//!   its decision is a function of the bytes: the
//!   expected verdict and bytes are computed here from docs/spec.md
//!   section 3 and docs/backend.md, with `proto::wire`'s parser deciding
//!   what valid GUE is. Whatever the reference says, a frame that is not
//!   GUE passes unchanged, and GUE that is invalid or from outside `allow`
//!   is never accepted.
//!
//! Frames come from a deterministic generator: for packet `i` of a
//! program, a PRNG seeded with (`FUZZ_SEED`, program, `i`), so any packet
//! can be rebuilt alone. One packet in four truncates a seed frame (the
//! golden cases for the director) at the next (length, seed) pair, lengths
//! in increasing order: a run long enough cuts every seed at every offset;
//! the others are valid packets, packets at the path MTU limits, field
//! corruption, random truncation, random lengths and bytes, VLAN stacks,
//! IPv6 extension chains, fragments and ICMP errors quoting garbage (and
//! for the redirect module GUE with any hop list, from outside `allow`,
//! and traffic next to GUE). Frames a test run does not hand a program
//! whole are counted as skipped.
//!
//! Environment: `FUZZ_PACKETS` (per program, default 50,000), `FUZZ_SEED`
//! (decimal or 0x-hex, default fixed; printed), `FUZZ_ONLY=director:INDEX`
//! or `redirect:INDEX` to rerun one packet and print it, `FUZZ_REPORT=DIR`
//! to write each program's summary there (`make fuzz`).
//!
//! Needs root, like the golden tests; attaches nothing anywhere.
#![allow(clippy::unwrap_used)] // a test: a failure is the test failing

#[allow(dead_code)] // the golden runner uses what this file does not
#[path = "golden/cases.rs"]
mod cases;
#[allow(dead_code)]
#[path = "golden/packet.rs"]
mod packet;

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::PathBuf;
use std::process::Command;
use std::time::Instant;

use aya::programs::{TestRun as _, TestRunOptions, Xdp};
use director_xdp::dataplane::Dataplane;
use director_xdp::redirect::{Redirect, RedirectConfig};
use proto::director::{Model, Outcome, Verdict, ipv4_checksum};
use proto::maps::{DirectorStat, RedirectStat};
use proto::table::Chain;
use proto::wire::{GuePacket, GueRepr, InnerProto, PrivateType};

use cases::Cfg;
use packet::{Ext, ip_from};
use proto::config::Config;

/// Default packets per program: `make test` runs this many.
const DEFAULT_PACKETS: u64 = 50_000;
/// Default seed (any fixed value: the short run is the same every time).
const DEFAULT_SEED: u64 = 0x5eed_0fd1_ec70_4242;
/// `BPF_PROG_TEST_RUN` refuses XDP input shorter than an Ethernet header.
const MIN_FRAME: usize = 14;
/// Failures shown in full (all are counted).
const SHOWN_FAILURES: usize = 8;

// ---------------------------------------------------------------- settings

#[derive(Debug, Clone)]
struct Settings {
    seed: u64,
    packets: u64,
    only: Option<(String, u64)>,
    report: Option<PathBuf>,
}

fn parse_u64(s: &str) -> Option<u64> {
    let s = s.trim().replace('_', "");
    match s.strip_prefix("0x") {
        Some(hex) => u64::from_str_radix(hex, 16).ok(),
        None => s.parse().ok(),
    }
}

fn settings() -> Settings {
    let var = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
    let seed = var("FUZZ_SEED").map_or(DEFAULT_SEED, |s| {
        parse_u64(&s).unwrap_or_else(|| panic!("FUZZ_SEED={s}: not a number"))
    });
    let packets = var("FUZZ_PACKETS").map_or(DEFAULT_PACKETS, |s| {
        parse_u64(&s).unwrap_or_else(|| panic!("FUZZ_PACKETS={s}: not a number"))
    });
    let only = var("FUZZ_ONLY").map(|s| {
        let (program, index) = s
            .split_once(':')
            .unwrap_or_else(|| panic!("FUZZ_ONLY={s}: want PROGRAM:INDEX"));
        let index = parse_u64(index).unwrap_or_else(|| panic!("FUZZ_ONLY={s}: bad index"));
        (program.to_string(), index)
    });
    Settings {
        seed,
        packets,
        only,
        report: var("FUZZ_REPORT").map(PathBuf::from),
    }
}

impl Settings {
    /// The packet indexes this run covers for `program`.
    fn indexes(&self, program: &str) -> Vec<u64> {
        match &self.only {
            Some((p, i)) if p == program => vec![*i],
            Some(_) => Vec::new(),
            None => (0..self.packets).collect(),
        }
    }

    fn reproduce(&self, program: &str, index: u64) -> String {
        format!(
            "FUZZ_SEED={:#x} FUZZ_ONLY={program}:{index} cargo test -p director-xdp --test fuzz_dataplane -- --nocapture {program}",
            self.seed
        )
    }
}

// ---------------------------------------------------------------- PRNG

/// SplitMix64: small, fast, and the same on every machine.
#[derive(Debug, Clone)]
struct Rng(u64);

fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

impl Rng {
    /// The generator of packet `index` of `program`.
    fn for_packet(seed: u64, program: u64, index: u64) -> Rng {
        Rng(mix(seed
            ^ mix(program.wrapping_add(1))
            ^ mix(index ^ 0x6a09_e667_f3bc_c908)))
    }

    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        mix(self.0)
    }

    /// Uniform in `0..n` (`n` > 0).
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    /// Uniform in `lo..=hi`.
    fn range(&mut self, lo: usize, hi: usize) -> usize {
        lo + self.below(hi - lo + 1)
    }

    /// True with probability `percent`%.
    fn chance(&mut self, percent: usize) -> bool {
        self.below(100) < percent
    }

    fn byte(&mut self) -> u8 {
        self.next() as u8
    }

    fn u16(&mut self) -> u16 {
        self.next() as u16
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }

    fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.byte()).collect()
    }

    /// Random bytes, fewer than `n`.
    fn bytes_below(&mut self, n: usize) -> Vec<u8> {
        let k = self.below(n);
        self.bytes(k)
    }

    /// Random bytes, as many as [`Rng::len`] says.
    fn bytes_len(&mut self, max: usize) -> Vec<u8> {
        let k = self.len(max);
        self.bytes(k)
    }

    /// An index into `weights`, chosen in proportion to them.
    fn weighted(&mut self, weights: &[usize]) -> usize {
        let mut x = self.below(weights.iter().sum());
        for (i, w) in weights.iter().enumerate() {
            if x < *w {
                return i;
            }
            x -= w;
        }
        weights.len() - 1
    }

    /// A length: mostly small, sometimes large, up to `max`.
    fn len(&mut self, max: usize) -> usize {
        match self.below(10) {
            0..=5 => self.below(64.min(max + 1)),
            6..=8 => self.below(1600.min(max + 1)),
            _ => self.below(max + 1),
        }
    }
}

// ---------------------------------------------------------------- tally

/// What a run did, for the summary and docs/reliability.md.
#[derive(Debug, Default)]
struct Tally {
    run: u64,
    skipped_short: u64,
    skipped_long: u64,
    verdicts: BTreeMap<&'static str, u64>,
    kinds: BTreeMap<&'static str, u64>,
    outcomes: BTreeMap<&'static str, u64>,
    failures: u64,
    shown: Vec<String>,
    /// Cuts of seed frames: (seed, length) pairs covered, and how many exist.
    sweep_pairs: u64,
    sweep_total: u64,
}

fn verdict_name(action: u32) -> &'static str {
    match action {
        0 => "XDP_ABORTED",
        1 => "XDP_DROP",
        2 => "XDP_PASS",
        3 => "XDP_TX",
        4 => "XDP_REDIRECT",
        _ => "other",
    }
}

fn hex(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(s, "{b:02x}");
    }
    s
}

impl Tally {
    #[allow(clippy::too_many_arguments)]
    fn fail(
        &mut self,
        settings: &Settings,
        program: &str,
        index: u64,
        kind: &str,
        frame: &[u8],
        out: &[u8],
        problems: &[String],
    ) {
        self.failures += 1;
        if self.shown.len() < SHOWN_FAILURES {
            self.shown.push(format!(
                "{program} packet {index} ({kind}, {} bytes):\n    {}\n  input:  {}\n  output: {}\n  rerun:  {}",
                frame.len(),
                problems.join("\n    "),
                hex(frame),
                hex(out),
                settings.reproduce(program, index)
            ));
        }
    }

    fn summary(&self, program: &str, settings: &Settings, secs: f64) -> String {
        let list = |m: &BTreeMap<&str, u64>| {
            m.iter()
                .map(|(k, v)| format!("{k} {v}"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let mut s = String::new();
        let _ = writeln!(
            s,
            "{program}: seed {:#x}, {} packets generated, {} run in {secs:.1} s ({:.0} packets/s), skipped: {} shorter than {MIN_FRAME} bytes, {} longer than a test run takes; failures: {}",
            settings.seed,
            self.run + self.skipped_short + self.skipped_long,
            self.run,
            self.run as f64 / secs.max(1e-9),
            self.skipped_short,
            self.skipped_long,
            self.failures
        );
        let _ = writeln!(s, "{program}: verdicts: {}", list(&self.verdicts));
        let _ = writeln!(s, "{program}: outcomes: {}", list(&self.outcomes));
        let _ = writeln!(s, "{program}: generators: {}", list(&self.kinds));
        let _ = writeln!(
            s,
            "{program}: seed cuts: {} of {} (seed, length) pairs{}",
            self.sweep_pairs.min(self.sweep_total),
            self.sweep_total,
            if self.sweep_pairs >= self.sweep_total {
                ": every seed cut at every offset"
            } else {
                ""
            }
        );
        s
    }

    /// The run as a few lines of Markdown, for docs/reliability.md.
    fn markdown(&self, program: &str, settings: &Settings, secs: f64, max: usize) -> String {
        let n = |v: u64| {
            let s = v.to_string();
            let mut out = String::new();
            for (i, c) in s.chars().enumerate() {
                if i > 0 && (s.len() - i).is_multiple_of(3) {
                    out.push(',');
                }
                out.push(c);
            }
            out
        };
        let list = |m: &BTreeMap<&str, u64>| {
            let mut v: Vec<(&&str, &u64)> = m.iter().collect();
            v.sort_by(|a, b| b.1.cmp(a.1));
            v.iter()
                .map(|(k, c)| format!("{k} {}", n(**c)))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let cuts = if self.sweep_pairs >= self.sweep_total {
            format!(
                "all {} (seed, length) pairs, every seed cut at every offset",
                n(self.sweep_total)
            )
        } else {
            format!(
                "{} of the {} (seed, length) pairs, shortest cuts first",
                n(self.sweep_pairs),
                n(self.sweep_total)
            )
        };
        format!(
            "**{program}**: {} packets generated (seed `{:#x}`), {} run in {secs:.0} s \
             ({} packets/s); skipped: {} shorter than {MIN_FRAME} bytes, {} longer than \
             {max} bytes. **Failures: {}.**\n\n\
             - generators: {}; seed cuts: {cuts}\n\
             - verdicts: {}\n\
             - outcomes (the reference's counters): {}\n",
            n(self.run + self.skipped_short + self.skipped_long),
            settings.seed,
            n(self.run),
            n((self.run as f64 / secs.max(1e-9)) as u64),
            n(self.skipped_short),
            n(self.skipped_long),
            n(self.failures),
            list(&self.kinds),
            list(&self.verdicts),
            list(&self.outcomes),
        )
    }

    fn finish(&self, program: &str, settings: &Settings, started: Instant) {
        let secs = started.elapsed().as_secs_f64();
        let summary = self.summary(program, settings, secs);
        eprint!("{summary}");
        if let Some(dir) = &settings.report {
            std::fs::create_dir_all(dir).unwrap();
            let md = self.markdown(program, settings, secs, max_frame());
            std::fs::write(dir.join(format!("{program}.md")), md).unwrap();
        }
        assert!(
            self.failures == 0,
            "{program}: {} of {} packets failed (seed {:#x}); the first ones:\n\n{}",
            self.failures,
            self.run,
            settings.seed,
            self.shown.join("\n\n")
        );
    }
}

// ---------------------------------------------------------------- test runs

/// Runs `prog` on `frame` (as received on `ifindex`, if given).
fn test_run(prog: &Xdp, frame: &[u8], ifindex: Option<u32>) -> Result<(u32, Vec<u8>), String> {
    let mut out = vec![0u8; frame.len() + 512];
    let mut ctx = [0u8; 24];
    if let Some(i) = ifindex {
        ctx[4..8].copy_from_slice(&(frame.len() as u32).to_ne_bytes());
        ctx[12..16].copy_from_slice(&i.to_ne_bytes());
    }
    let result = prog
        .test_run(TestRunOptions {
            data_in: Some(frame),
            data_out: Some(&mut out),
            ctx_in: ifindex.map(|_| &ctx[..]),
            ..Default::default()
        })
        .map_err(|e| format!("BPF_PROG_TEST_RUN failed: {e}"))?;
    out.truncate(result.data_size_out as usize);
    Ok((result.return_value, out))
}

/// The longest frame a test run hands a program whole. Longer ones are
/// taken too, but the kernel puts what does not fit in the first page
/// (less the 256 bytes of XDP headroom and the 320 of `skb_shared_info`)
/// in fragments the program does not see, and a driver never gives a
/// program without frags support such a frame: they are skipped.
fn max_frame() -> usize {
    // SAFETY: sysconf has no preconditions.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    usize::try_from(page).unwrap_or(4096) - 256 - 320
}

// ---------------------------------------------------------------- building blocks

fn be16(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes([*b.get(at)?, *b.get(at + 1)?]))
}

fn octets(a: IpAddr) -> Vec<u8> {
    match a {
        IpAddr::V4(a) => a.octets().to_vec(),
        IpAddr::V6(a) => a.octets().to_vec(),
    }
}

fn addr_at(b: &[u8], at: usize, v6: bool) -> Option<IpAddr> {
    if v6 {
        let o: [u8; 16] = b.get(at..at + 16)?.try_into().ok()?;
        Some(IpAddr::from(o))
    } else {
        let o: [u8; 4] = b.get(at..at + 4)?.try_into().ok()?;
        Some(IpAddr::from(o))
    }
}

/// A fresh Ethernet header (director's MAC, router's) and `ethertype`.
fn eth(ethertype: u16, payload: &[u8]) -> Vec<u8> {
    packet::eth(ethertype, payload)
}

fn ethertype_of(ip: &[u8]) -> u16 {
    if ip.first().is_some_and(|b| b >> 4 == 6) {
        0x86dd
    } else {
        0x0800
    }
}

/// The Ethernet header's length (one 802.1Q tag looked at).
fn l2_len(frame: &[u8]) -> usize {
    if be16(frame, 12) == Some(0x8100) {
        18
    } else {
        14
    }
}

/// Interesting values for a corrupted byte: header lengths, versions,
/// protocol and extension header numbers, flags, limits.
const INTERESTING: [u8; 24] = [
    0x00, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x08, 0x10, 0x11, 0x12, 0x1f, 0x20, 0x29, 0x2b, 0x2c,
    0x3a, 0x3c, 0x40, 0x45, 0x4f, 0x60, 0x80, 0xff,
];

/// `frame` with 1 to 4 bytes changed, mostly in its headers.
fn corrupt(rng: &mut Rng, mut frame: Vec<u8>) -> Vec<u8> {
    if frame.is_empty() {
        return frame;
    }
    for _ in 0..rng.range(1, 4) {
        let at = if rng.chance(75) {
            rng.below(frame.len().min(100))
        } else {
            rng.below(frame.len())
        };
        frame[at] = match rng.below(10) {
            0..=3 => rng.byte(),
            4..=6 => frame[at] ^ (1 << rng.below(8)),
            _ => *rng.pick(&INTERESTING),
        };
    }
    frame
}

/// `frame` cut to `len` bytes; with `fix`, the IP length fields (and the
/// IPv4 checksum) rewritten to match, as [`packet::cut`] does.
fn cut_frame(frame: &[u8], len: usize, fix: bool) -> Vec<u8> {
    let mut f = frame[..len.min(frame.len())].to_vec();
    let l2 = l2_len(&f);
    if fix && f.len() > l2 {
        let ip = &mut f[l2..];
        match ip[0] >> 4 {
            4 if ip.len() >= 20 => {
                let n = ip.len() as u16;
                ip[2..4].copy_from_slice(&n.to_be_bytes());
                packet::refresh_v4_checksum(ip);
            }
            6 if ip.len() >= 40 => {
                let n = (ip.len() - 40) as u16;
                ip[4..6].copy_from_slice(&n.to_be_bytes());
            }
            _ => {}
        }
    }
    f
}

/// Seed frames cut at every length from 14 up, lengths in increasing
/// order: the `p`-th (seed, length) pair.
#[derive(Debug)]
struct Sweep {
    /// For each cut length (from 14), the seeds longer than it.
    by_len: Vec<Vec<usize>>,
    /// Pairs before each length.
    before: Vec<u64>,
    total: u64,
}

impl Sweep {
    fn new(lens: &[usize]) -> Sweep {
        let longest = lens.iter().copied().max().unwrap_or(MIN_FRAME);
        let mut by_len = Vec::new();
        let mut before = Vec::new();
        let mut total = 0u64;
        for len in MIN_FRAME..longest {
            let seeds: Vec<usize> = (0..lens.len()).filter(|&s| lens[s] > len).collect();
            before.push(total);
            total += seeds.len() as u64;
            by_len.push(seeds);
        }
        Sweep {
            by_len,
            before,
            total,
        }
    }

    /// Pair `p` (wrapping): (seed, cut length, lap).
    fn pair(&self, p: u64) -> (usize, usize, u64) {
        let (lap, p) = (p / self.total, p % self.total);
        let at = self.before.partition_point(|&b| b <= p) - 1;
        let seed = self.by_len[at][(p - self.before[at]) as usize];
        (seed, MIN_FRAME + at, lap)
    }
}

// ---------------------------------------------------------------- director generators

/// A config the director is fuzzed under.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Conf {
    /// One of the golden cases'.
    Golden(Cfg),
    /// The golden [`cases::MAIN`] with a fourth table of 240 more host
    /// VIPs, for a host VIP table large enough for probe sequences.
    ManyVips,
}

/// The configs the director is fuzzed under.
const CONFIGS: [Conf; 8] = [
    Conf::Golden(Cfg::Main),
    Conf::Golden(Cfg::Swapped),
    Conf::Golden(Cfg::PortHash),
    Conf::Golden(Cfg::NoFallback),
    Conf::Golden(Cfg::PathMtu),
    Conf::Golden(Cfg::LongChains),
    Conf::Golden(Cfg::ShortChains),
    Conf::ManyVips,
];

/// The many-VIP table's VIPs: `203.0.113.128` and up, `2001:db8:10:ffff::1`
/// and up.
const MANY_VIPS: u8 = 120;

/// The config `conf` stands for.
fn conf_config(conf: Conf) -> Config {
    match conf {
        Conf::Golden(cfg) => cases::config(cfg),
        Conf::ManyVips => {
            let mut binds = Vec::new();
            for i in 0..MANY_VIPS {
                binds.push(format!(
                    r#"{{ "ip": "203.0.113.{}", "proto": "tcp", "port_start": 80, "port_end": 90 }}"#,
                    128 + u16::from(i)
                ));
                binds.push(format!(
                    r#"{{ "ip": "2001:db8:10:ffff::{:x}", "proto": "udp", "port": 443 }}"#,
                    1 + u16::from(i)
                ));
            }
            let table = format!(
                r#"{{ "name": "many",
      "hash_key": "243f6a8885a308d313198a2e03707344",
      "seed": "a4093822299f31d0082efa98ec4e6c89",
      "hops": 2,
      "binds": [ {} ],
      "backends": [
        {{ "ip": "198.51.100.21", "state": "active", "healthy": true }},
        {{ "ip": "198.51.100.22", "state": "active", "healthy": true }},
        {{ "ip": "198.51.100.23", "state": "draining", "healthy": true }},
        {{ "ip": "198.51.100.24", "state": "active", "healthy": false }},
        {{ "ip": "198.51.100.11", "state": "active", "healthy": true }}
      ] }},
    {{ "name": "web4","#,
                binds.join(",\n        ")
            );
            let text = cases::MAIN.replacen(r#"{ "name": "web4","#, &table, 1);
            Config::from_json(&text).unwrap_or_else(|e| panic!("the many-VIP config: {e}"))
        }
    }
}

/// The reference model under `conf`.
fn conf_model(conf: Conf) -> Model {
    Model::new(&conf_config(conf), &cases::mac_of).unwrap_or_else(|e| panic!("{conf:?}: {e}"))
}

/// Destinations: every VIP of the golden configs, addresses in and out of
/// their prefixes, and non-VIP neighbours.
const DST4: [&str; 12] = [
    "203.0.113.10",
    "203.0.113.10",
    "203.0.113.20",
    "203.0.113.30",
    "203.0.113.64",
    "203.0.113.70",
    "203.0.113.100",
    "203.0.113.127",
    "203.0.113.128",
    "203.0.113.11",
    "203.0.113.63",
    "198.51.100.11",
];
const DST6: [&str; 8] = [
    "2001:db8:10::10",
    "2001:db8:10::10",
    "2001:db8:10::20",
    "2001:db8:10::20",
    "2001:db8:10:100::1",
    "2001:db8:10:1ff:ffff:ffff:ffff:ffff",
    "2001:db8:10:200::1",
    "2001:db8:10::11",
];
/// Bound ports and their edges.
const PORTS: [u16; 16] = [
    80, 80, 53, 443, 22, 4500, 8000, 8042, 8099, 7999, 8100, 5000, 5999, 6000, 81, 0,
];

fn port(rng: &mut Rng) -> u16 {
    if rng.chance(80) {
        *rng.pick(&PORTS)
    } else {
        rng.u16()
    }
}

/// A client address: documentation ranges mostly, anything sometimes
/// (multicast and unspecified sources matter to the path MTU rule).
fn client(rng: &mut Rng, v6: bool) -> String {
    if v6 {
        if rng.chance(85) {
            format!("2001:db8:1::{:x}", rng.u16())
        } else {
            Ipv6Addr::from(u128::from(rng.next()) << 64 | u128::from(rng.next())).to_string()
        }
    } else if rng.chance(85) {
        format!("192.0.2.{}", rng.byte())
    } else {
        Ipv4Addr::from(rng.next() as u32).to_string()
    }
}

fn dst(rng: &mut Rng, v6: bool) -> String {
    match rng.below(100) {
        0..=79 if v6 => rng.pick(&DST6).to_string(),
        0..=79 => rng.pick(&DST4).to_string(),
        // Neighbours of the VIPs, which share their host VIP table entries
        // or probe sequences.
        80..=84 if v6 => format!("2001:db8:10::{:x}", rng.u16()),
        85..=89 if v6 => format!("2001:db8:10:ffff::{:x}", rng.below(256)),
        80..=89 => format!("203.0.113.{}", rng.byte()),
        // IPv6 addresses that fold (high half XOR low half) to a VIP's
        // fold: the same home entry, another address.
        90..=94 if v6 => {
            let vip: Ipv6Addr = rng.pick(&DST6).parse().unwrap();
            let x = rng.next() | 1;
            let (hi, lo) = ((u128::from(vip) >> 64) as u64, u128::from(vip) as u64);
            Ipv6Addr::from(u128::from(hi ^ x) << 64 | u128::from(lo ^ x)).to_string()
        }
        _ => client(rng, v6),
    }
}

/// An IPv4 options field: NOPs, a router alert, random bytes; 4 to 40 bytes.
fn v4_options(rng: &mut Rng) -> Vec<u8> {
    let len = 4 * rng.range(1, 10);
    match rng.below(3) {
        0 => vec![1; len],
        1 => {
            let mut o = vec![0x94, 0x04, 0, 0];
            o.resize(len, 0);
            o
        }
        _ => rng.bytes(len),
    }
}

/// A TCP, UDP, ICMP or other packet to a VIP (or not), IPv4 or IPv6, with
/// options or extension headers sometimes; checksums and lengths right.
fn valid_ip(rng: &mut Rng, v6: bool, max: usize) -> Vec<u8> {
    let target = rng.chance(60).then(|| bind_target(rng, v6));
    let src = client(rng, v6);
    let dst = match &target {
        Some((d, _, _)) => d.clone(),
        None => dst(rng, v6),
    };
    let mut ip = ip_from(&src, &dst);
    if v6 {
        if rng.chance(15) {
            for _ in 0..rng.range(1, 3) {
                ip = ip.ext(if rng.chance(50) {
                    Ext::HopByHop(rng.below(3) as u8)
                } else {
                    Ext::DestOpts(rng.below(3) as u8)
                });
            }
        }
    } else {
        if rng.chance(15) {
            ip = ip.options(&v4_options(rng));
        }
        if rng.chance(15) {
            ip = ip.df(false);
        }
        ip = ip.id(rng.u16());
    }
    let room = max.saturating_sub(18 + 60 + 48);
    let payload = rng.bytes_len(room);
    let branch = match target {
        Some((_, proto, _)) if rng.chance(85) => usize::from(proto != 6) * 8,
        _ => rng.below(20),
    };
    let port = |rng: &mut Rng| match target {
        Some((_, _, p)) if rng.chance(90) => p,
        _ => port(rng),
    };
    match branch {
        0..=7 => {
            let flags = *rng.pick(&[0x02, 0x10, 0x18, 0x12, 0x04, 0x11, 0x00, 0xff]);
            if rng.chance(15) {
                let n = 4 * rng.range(1, 10);
                let opts = rng.bytes(n);
                ip.tcp_with_options(rng.u16(), port(rng), flags, &opts, &payload)
            } else {
                ip.tcp(rng.u16(), port(rng), flags, &payload)
            }
        }
        8..=13 => ip.udp(rng.u16(), port(rng), &payload),
        14..=15 => {
            let ty = if v6 { 128 } else { 8 };
            ip.icmp(ty, rng.below(2) as u8, [1, 2, 3, 4], &payload)
        }
        16 => {
            let ty = rng.byte();
            ip.icmp(ty, rng.byte(), [0; 4], &payload)
        }
        17..=18 => quoting_error(rng, v6, &dst, ip),
        _ => {
            let proto = {
                let any = rng.byte();
                *rng.pick(&[132, 47, 50, 4, 41, any])
            };
            ip.raw(proto, &payload)
        }
    }
}

/// The binds of the golden configs: (VIP, protocol, port).
const BINDS4: [(&str, u8, u16, u16); 8] = [
    ("203.0.113.10", 6, 80, 80),
    ("203.0.113.10", 17, 53, 53),
    ("203.0.113.10", 6, 8000, 8099),
    ("203.0.113.20", 6, 80, 80),
    ("203.0.113.20", 17, 4500, 4500),
    ("203.0.113.70", 17, 53, 53),
    ("203.0.113.30", 6, 22, 22),
    ("203.0.113.64", 17, 5000, 5999),
];
const BINDS6: [(&str, u8, u16, u16); 5] = [
    ("2001:db8:10::10", 6, 443, 443),
    ("2001:db8:10::10", 17, 443, 443),
    ("2001:db8:10::20", 6, 80, 80),
    ("2001:db8:10::20", 17, 53, 53),
    ("2001:db8:10:100::", 6, 443, 443),
];

/// A bind to aim at: its VIP (an address of the prefix for a CIDR bind),
/// protocol and a port of its range.
fn bind_target(rng: &mut Rng, v6: bool) -> (String, u8, u16) {
    if rng.chance(15) {
        // The many-VIP table's.
        let i = rng.below(usize::from(MANY_VIPS));
        return if v6 {
            (format!("2001:db8:10:ffff::{:x}", i + 1), 17, 443)
        } else {
            (
                format!("203.0.113.{}", 128 + i),
                6,
                rng.range(80, 90) as u16,
            )
        };
    }
    let (vip, proto, lo, hi) = if v6 {
        *rng.pick(&BINDS6)
    } else {
        *rng.pick(&BINDS4)
    };
    let vip = match vip {
        "203.0.113.64" => format!("203.0.113.{}", rng.range(64, 127)),
        "2001:db8:10:100::" => format!("2001:db8:10:1{:02x}::{:x}", rng.byte(), rng.u16()),
        v => v.to_string(),
    };
    (vip, proto, rng.range(lo.into(), hi.into()) as u16)
}

/// A frag-needed / packet-too-big (or another ICMP error) sent to `vip`
/// by a router, quoting a reply from the VIP, whole, cut or garbled, or
/// garbage.
fn quoting_error(rng: &mut Rng, v6: bool, vip: &str, ip: packet::Ip) -> Vec<u8> {
    let (ty, code) = match (v6, rng.chance(85)) {
        (false, true) => (3, 4),
        (true, true) => (2, 0),
        _ => (rng.byte(), rng.byte()),
    };
    let quote = match rng.below(4) {
        0 => rng.bytes_below(80),
        _ => {
            // The reply this error is about: from a VIP (this one mostly)
            // to a client.
            let target = bind_target(rng, v6);
            let from = match rng.below(10) {
                0..=5 => vip.to_string(),
                6..=8 => target.0.clone(),
                _ => dst(rng, v6),
            };
            let port = |rng: &mut Rng| {
                if rng.chance(70) { target.2 } else { port(rng) }
            };
            let mut reply = ip_from(&from, &client(rng, v6));
            if v6 && rng.chance(10) {
                reply = reply.ext(Ext::DestOpts(0));
            }
            if !v6 && rng.chance(10) {
                reply = reply.options(&v4_options(rng));
            }
            let body = rng.bytes_below(64);
            let mut q = match rng.below(5) {
                0..=1 => reply.tcp(port(rng), rng.u16(), 0x10, &body),
                2..=3 => reply.udp(port(rng), rng.u16(), &body),
                _ => reply.icmp(rng.byte(), 0, [0; 4], &body),
            };
            // Routers quote the header and 8 bytes; some quote more, some
            // less; some garble it.
            let keep = match rng.below(3) {
                0 => q.len(),
                1 => q.len().min(if v6 { 48 } else { 28 }),
                _ => rng.below(q.len() + 1),
            };
            q.truncate(keep);
            if rng.chance(30) {
                q = corrupt(rng, q);
            }
            q
        }
    };
    let mtu = (rng.u16() as u32).to_be_bytes();
    ip.icmp(ty, code, mtu, &quote)
}

/// `ip` in an Ethernet frame, with one 802.1Q tag sometimes.
fn framed(rng: &mut Rng, ip: &[u8]) -> Vec<u8> {
    if rng.chance(12) {
        packet::frame_vlan(rng.u16() & 0x0fff, ip)
    } else {
        packet::frame(ip)
    }
}

fn valid_frame(rng: &mut Rng, max: usize) -> Vec<u8> {
    let v6 = rng.chance(45);
    let ip = valid_ip(rng, v6, max);
    framed(rng, &ip)
}

/// An IPv6 packet to a VIP behind a chain of up to 8 extension headers of
/// any kind, lengths and offsets, then TCP, UDP, ICMPv6 or anything.
fn ext_chain(rng: &mut Rng, max: usize) -> Vec<u8> {
    let (src, dst) = (client(rng, true), dst(rng, true));
    let n = rng.below(9);
    let kinds: Vec<u8> = (0..n)
        .map(|_| {
            let any = rng.byte();
            *rng.pick(&[0, 43, 60, 60, 44, 44, 0, 59, 51, 135, any])
        })
        .collect();
    let last = {
        let any = rng.byte();
        *rng.pick(&[6, 6, 17, 17, 58, 59, 44, any])
    };
    let mut chain = Vec::new();
    for (i, &kind) in kinds.iter().enumerate() {
        let next = kinds.get(i + 1).copied().unwrap_or(last);
        if kind == 44 {
            let offset: u16 = if rng.chance(50) { 0 } else { rng.u16() >> 3 };
            let more = u16::from(rng.chance(50));
            chain.push(next);
            chain.push(0);
            chain.extend_from_slice(&((offset << 3) | more).to_be_bytes());
            chain.extend_from_slice(&rng.bytes(4));
        } else {
            let len = if rng.chance(90) {
                rng.below(3)
            } else {
                rng.byte() as usize
            };
            chain.push(next);
            chain.push(len as u8);
            let body = (len + 1) * 8 - 2;
            chain.extend_from_slice(&rng.bytes(body.min(max / 2)));
        }
    }
    let l4 = match last {
        6 => {
            let mut t =
                packet::ip_from("2001:db8::1", "2001:db8::2").tcp(rng.u16(), port(rng), 0x02, &[]);
            t.drain(..40);
            t
        }
        17 => {
            let mut u =
                packet::ip_from("2001:db8::1", "2001:db8::2").udp(rng.u16(), port(rng), &[]);
            u.drain(..40);
            u
        }
        58 => {
            let mut m = vec![*rng.pick(&[128, 2, 1, 129]), 0, 0, 0, 0, 0, 5, 0];
            if m[0] == 2 {
                let q = ip_from(&dst, &client(rng, true)).tcp(port(rng), rng.u16(), 0x10, &[]);
                m.extend_from_slice(&q[..48]);
            }
            m
        }
        _ => rng.bytes_below(32),
    };
    let mut p = vec![
        0x60,
        0,
        0,
        0,
        0,
        0,
        kinds.first().copied().unwrap_or(last),
        64,
    ];
    p.extend_from_slice(&octets(src.parse().unwrap()));
    p.extend_from_slice(&octets(dst.parse().unwrap()));
    p.extend_from_slice(&chain);
    p.extend_from_slice(&l4);
    p.extend_from_slice(&rng.bytes_below(64));
    p.truncate(max - 18);
    let payload = if rng.chance(85) {
        (p.len() - 40) as u16
    } else {
        rng.u16()
    };
    p[4..6].copy_from_slice(&payload.to_be_bytes());
    if rng.chance(15) {
        let keep = rng.range(40, p.len());
        p.truncate(keep);
    }
    framed(rng, &p)
}

/// An IPv4 or IPv6 fragment (first, middle or last; DF or not) of a TCP,
/// UDP, ICMP or other datagram to a VIP.
fn fragment(rng: &mut Rng, max: usize) -> Vec<u8> {
    let v6 = rng.chance(45);
    let (src, dst) = (client(rng, v6), dst(rng, v6));
    let first = rng.chance(40);
    let offset: u16 = if first {
        0
    } else {
        rng.range(1, 0x1fff) as u16
    };
    let more = if first { true } else { rng.chance(50) };
    let mut ip = ip_from(&src, &dst);
    if v6 {
        if rng.chance(30) {
            ip = ip.ext(Ext::HopByHop(0));
        }
        ip = ip.ext(Ext::Fragment {
            offset,
            more,
            id: rng.next() as u32,
        });
        if rng.chance(10) {
            ip = ip.ext(Ext::DestOpts(0));
        }
    } else {
        ip = ip.fragment(more, offset).id(rng.u16());
        if rng.chance(20) {
            ip = ip.df(true);
        }
    }
    let room = max.saturating_sub(18 + 64 + 20);
    let payload = rng.bytes_len(room);
    let proto = {
        let any = rng.byte();
        *rng.pick(&[6, 17, 17, if v6 { 58 } else { 1 }, any])
    };
    let mut p = if first {
        match proto {
            6 => ip.tcp(rng.u16(), port(rng), 0x18, &payload),
            17 => ip.udp(rng.u16(), port(rng), &payload),
            1 | 58 => ip.icmp(if v6 { 128 } else { 8 }, 0, [0; 4], &payload),
            p => ip.raw(p, &payload),
        }
    } else {
        ip.raw(proto, &payload)
    };
    if first && rng.chance(20) {
        // A first fragment too short for its L4 header.
        let hl = if v6 { 48 } else { 20 };
        let keep = rng.range(hl.min(p.len()), p.len());
        p = packet::cut(&p, keep);
    }
    framed(rng, &p)
}

/// A frame under up to four 802.1Q / 802.1ad tags (or unknown TPIDs).
fn vlan_stack(rng: &mut Rng, inner: &[u8]) -> Vec<u8> {
    let l2 = l2_len(inner);
    let (ethertype, ip) = (
        be16(inner, l2 - 2).unwrap_or(0x0800),
        &inner[l2.min(inner.len())..],
    );
    let mut tags = Vec::new();
    for _ in 0..rng.range(1, 4) {
        let tpid = {
            let any = rng.u16();
            *rng.pick(&[0x8100, 0x8100, 0x88a8, 0x9100, any])
        };
        tags.push((tpid, rng.u16()));
    }
    let mut f = Vec::new();
    f.extend_from_slice(&packet::DIRECTOR_MAC);
    f.extend_from_slice(&packet::ROUTER_MAC);
    for (tpid, tci) in &tags {
        f.extend_from_slice(&tpid.to_be_bytes());
        f.extend_from_slice(&tci.to_be_bytes());
    }
    let ethertype = if rng.chance(85) { ethertype } else { rng.u16() };
    f.extend_from_slice(&ethertype.to_be_bytes());
    f.extend_from_slice(ip);
    f
}

/// Random bytes: a whole random frame, random after a real Ethernet
/// header, or random after an IP header to a VIP.
fn random_frame(rng: &mut Rng, max: usize) -> Vec<u8> {
    let len = rng.len(max);
    match rng.below(3) {
        0 => {
            let n = len.max(rng.below(MIN_FRAME + 1));
            rng.bytes(n)
        }
        1 => {
            let et = {
                let any = rng.u16();
                *rng.pick(&[0x0800, 0x86dd, 0x8100, 0x0806, any])
            };
            eth(et, &rng.bytes(len.saturating_sub(14)))
        }
        _ => {
            let v6 = rng.chance(45);
            let (src, dst) = (client(rng, v6), dst(rng, v6));
            let proto = {
                let any = rng.byte();
                *rng.pick(&[6, 17, 1, 58, 0, 43, 44, 60, any])
            };
            let body = rng.bytes(len.saturating_sub(54));
            let ip = ip_from(&src, &dst).raw(proto, &body);
            packet::frame(&ip)
        }
    }
}

/// The director's generators, with their weights (the seed cuts come on
/// top, one packet in four).
const DIRECTOR_KINDS: [(&str, usize); 9] = [
    ("valid", 12),
    ("corrupted", 22),
    ("truncated", 8),
    ("random bytes", 12),
    ("VLAN stack", 8),
    ("IPv6 extension chain", 12),
    ("fragment", 12),
    ("ICMP quoting garbage", 14),
    ("size at the path MTU", 6),
];

/// The kind index of "size at the path MTU", whose packets run under
/// [`Cfg::PathMtu`] mostly.
const SIZE_EDGE: usize = 8;

/// The config and generator of a packet that is not a seed cut: the first
/// draws of its PRNG.
fn head(rng: &mut Rng) -> (Conf, usize) {
    let cfg = *rng.pick(&CONFIGS);
    let weights: Vec<usize> = DIRECTOR_KINDS.iter().map(|k| k.1).collect();
    let k = rng.weighted(&weights);
    if k == SIZE_EDGE && rng.chance(75) {
        return (Conf::Golden(Cfg::PathMtu), k);
    }
    (cfg, k)
}

/// The largest client packets that fit a 1500-byte path once encapsulated
/// (docs/director.md: 1460 to IPv4 backends with one hop, 1452 with three,
/// 1412 to IPv6 backends with two), the IPv6 minimum MTU, and the path.
const SIZE_LIMITS: [usize; 5] = [1460, 1452, 1412, 1280, 1500];

/// A packet to a bind, or an ICMP error to a VIP, whose IP packet is a
/// byte or two from a path MTU limit (or at it).
fn size_edge(rng: &mut Rng) -> Vec<u8> {
    let v6 = rng.chance(45);
    let len = (*rng.pick(&SIZE_LIMITS) + rng.below(5)).saturating_sub(2);
    let (vip, proto, port) = bind_target(rng, v6);
    let src = client(rng, v6);
    let options = rng.chance(15).then(|| v4_options(rng));
    let ext = rng.chance(15);
    let (df, frag) = (rng.chance(85), rng.below(6));
    let flags = *rng.pick(&[0x02, 0x10, 0x18]);
    let kind = rng.below(10);
    let (sport, ty) = (rng.u16(), rng.byte());
    // Built twice: empty, then with the payload that makes it `len` long.
    let build = |pad: usize| {
        let mut ip = ip_from(&src, &vip);
        if v6 {
            if ext {
                ip = ip.ext(Ext::DestOpts(0));
            }
            if frag == 0 {
                ip = ip.ext(Ext::Fragment {
                    offset: 0,
                    more: true,
                    id: 7,
                });
            }
        } else {
            if let Some(o) = &options {
                ip = ip.options(o);
            }
            if frag == 0 {
                ip = ip.fragment(true, 0);
            }
            ip = ip.df(df);
        }
        let payload = vec![0x5a; pad];
        match kind {
            0..=3 if proto == 6 => ip.tcp(sport, port, flags, &payload),
            0..=3 => ip.udp(sport, port, &payload),
            4..=5 => ip.udp(sport, port, &payload),
            6 => ip.tcp(sport, port, flags, &payload),
            7 => ip.icmp(if v6 { 128 } else { 8 }, 0, [0, 1, 0, 1], &payload),
            8 => {
                // An error quoting a reply from the VIP: never answered.
                let reply = ip_from(&vip, &src).tcp(port, sport, 0x10, &payload);
                let (t, c) = if v6 { (2, 0) } else { (3, 4) };
                ip.icmp(t, c, [0, 0, 5, 0x78], &reply)
            }
            _ => ip.icmp(ty, 0, [0; 4], &payload),
        }
    };
    let empty = build(0).len();
    let ip = build(len.saturating_sub(empty));
    if rng.chance(15) {
        packet::frame_vlan(rng.u16() & 0xfff, &ip)
    } else {
        packet::frame(&ip)
    }
}

/// What the director generator needs beyond the PRNG.
struct DirectorGen<'a> {
    seeds: &'a [cases::Case],
    sweep: Sweep,
    max: usize,
}

impl DirectorGen<'_> {
    /// Packet `index`: its config, generator and frame.
    fn packet(&self, seed: u64, index: u64) -> (Conf, &'static str, Vec<u8>) {
        let mut rng = Rng::for_packet(seed, 1, index);
        if index.is_multiple_of(4) {
            let (s, len, lap) = self.sweep.pair(index / 4);
            let case = &self.seeds[s];
            return (
                Conf::Golden(case.config),
                "seed cut",
                cut_frame(&case.input, len, lap % 2 == 1),
            );
        }
        let (cfg, k) = head(&mut rng);
        let base = |rng: &mut Rng| {
            if rng.chance(60) {
                self.seeds[rng.below(self.seeds.len())].input.clone()
            } else {
                valid_frame(rng, self.max)
            }
        };
        let frame = match k {
            0 => valid_frame(&mut rng, self.max),
            1 => {
                let b = base(&mut rng);
                corrupt(&mut rng, b)
            }
            2 => {
                let b = base(&mut rng);
                let len = rng.below(b.len());
                let fix = rng.chance(50);
                cut_frame(&b, len.max(rng.below(MIN_FRAME + 1)), fix)
            }
            3 => random_frame(&mut rng, self.max),
            4 => {
                let b = base(&mut rng);
                vlan_stack(&mut rng, &b)
            }
            5 => ext_chain(&mut rng, self.max),
            6 => fragment(&mut rng, self.max),
            SIZE_EDGE => size_edge(&mut rng),
            _ => {
                let v6 = rng.chance(45);
                let vip = dst(&mut rng, v6);
                let ip = ip_from(&client(&mut rng, v6), &vip);
                let p = quoting_error(&mut rng, v6, &vip, ip);
                framed(&mut rng, &p)
            }
        };
        (cfg, DIRECTOR_KINDS[k].0, frame)
    }
}

// ---------------------------------------------------------------- director checks

/// The chains of every table of every config, as `proto::table` builds
/// them: what an encapsulated packet's primary and hops must be.
type Chains = HashMap<(Conf, String), Vec<Chain<IpAddr>>>;

fn chains() -> Chains {
    let mut m = HashMap::new();
    for cfg in CONFIGS {
        for t in &conf_config(cfg).tables {
            let rows = t.rendezvous().unwrap().row_addrs().collect();
            m.insert((cfg, t.name.clone()), rows);
        }
    }
    m
}

/// The model-independent checks of an encapsulated frame: well-formed
/// GUE whose inner packet is the input's and whose chain is the row's.
fn check_gue(input: &[u8], out: &[u8], o: &Outcome, cfg: Conf, chains: &Chains) -> Vec<String> {
    let mut p = Vec::new();
    let Some(d) = &o.decision else {
        return vec!["encapsulated without a decision".into()];
    };
    let l2 = l2_len(input);
    if out.len() < l2 || out[12..l2 - 2] != input[12..l2 - 2] {
        p.push("the 802.1Q tag is not kept".into());
        return p;
    }
    if out[6..12] != input[..6] {
        p.push("source MAC is not the received destination MAC".into());
    }
    let v6 = d.primary.is_ipv6();
    let (ip_len, ethertype) = if v6 { (40, 0x86dd) } else { (20, 0x0800) };
    if be16(out, l2 - 2) != Some(ethertype) {
        p.push(format!("EtherType {:?}", be16(out, l2 - 2)));
    }
    let outer = &out[l2..];
    if outer.len() < ip_len + 8 {
        p.push("no room for the outer headers".into());
        return p;
    }
    let rest = (outer.len() - ip_len) as u16;
    if v6 {
        if outer[..4] != [0x60, 0, 0, 0] || outer[6] != 17 || outer[7] != 64 {
            p.push(format!("outer IPv6 header {}", hex(&outer[..8])));
        }
        if be16(outer, 4) != Some(rest) {
            p.push("outer payload length".into());
        }
    } else {
        if outer[..2] != [0x45, 0] || outer[6..10] != [0x40, 0, 64, 17] {
            p.push(format!("outer IPv4 header {}", hex(&outer[..12])));
        }
        if be16(outer, 2) != Some(outer.len() as u16) {
            p.push("outer total length".into());
        }
        if ipv4_checksum(&outer[..20]) != 0 {
            p.push("outer IPv4 checksum".into());
        }
    }
    let dst_at = if v6 { 24 } else { 16 };
    if addr_at(outer, dst_at, v6) != Some(d.primary) {
        p.push(format!(
            "outer destination {:?}, primary {}",
            addr_at(outer, dst_at, v6),
            d.primary
        ));
    }
    let udp = &outer[ip_len..];
    if be16(udp, 2) != Some(proto::GUE_PORT)
        || be16(udp, 4) != Some(rest)
        || be16(udp, 6) != Some(0)
        || udp[0] & 0x80 == 0
    {
        p.push(format!("UDP header {}", hex(&udp[..8])));
    }
    let gue = match GuePacket::new_checked(&udp[8..]) {
        Ok(g) => g,
        Err(e) => {
            p.push(format!("GUE does not parse: {e}"));
            return p;
        }
    };
    let repr = match GueRepr::parse(&gue) {
        Ok(r) => r,
        Err(e) => {
            p.push(format!("GUE does not parse: {e}"));
            return p;
        }
    };
    let l3 = l2_len(input);
    let inner_v6 = input[l3] >> 4 == 6;
    let want_inner = if inner_v6 {
        InnerProto::Ipv6
    } else {
        InnerProto::Ipv4
    };
    if repr.inner != want_inner || repr.next_hop != 0 {
        p.push(format!(
            "GUE inner {:?} next_hop {}",
            repr.inner, repr.next_hop
        ));
    }
    if gue.payload() != &input[l3..] {
        p.push("the inner packet is not the input after its Ethernet header".into());
    }
    let want_type = if v6 {
        PrivateType::Ipv6Hops
    } else {
        PrivateType::Ipv4Hops
    };
    if repr.hops.private_type() != want_type {
        p.push("hop family is not the primary's".into());
    }
    match chains.get(&(cfg, d.table.clone())) {
        None => p.push(format!("no table {}", d.table)),
        Some(rows) => {
            let chain = &rows[d.row as usize];
            let hops: Vec<IpAddr> = repr.hops.iter().collect();
            if chain.primary() != d.primary || hops != chain.alternates() {
                p.push(format!(
                    "row {} of {}: chain {:?}, sent to {} with hops {hops:?}",
                    d.row,
                    d.table,
                    chain.as_slice(),
                    d.primary
                ));
            }
        }
    }
    p
}

/// Every check of one director run.
fn check_director(
    input: &[u8],
    action: u32,
    out: &[u8],
    o: &Outcome,
    cfg: Conf,
    chains: &Chains,
) -> Vec<String> {
    let mut p = Vec::new();
    let got = Verdict::from_xdp_action(action);
    if action == 0 {
        p.push("XDP_ABORTED".into());
    }
    if got != Some(o.verdict) {
        p.push(format!(
            "verdict {} , the model says {:?} (counts {:?})",
            verdict_name(action),
            o.verdict,
            o.counted
        ));
    }
    if got == Some(Verdict::Pass) && out != input {
        p.push("passed, but the bytes changed".into());
    }
    if o.verdict != Verdict::Drop && got == Some(o.verdict) && out != o.output {
        let first = out
            .iter()
            .zip(&o.output)
            .position(|(a, b)| a != b)
            .unwrap_or(out.len().min(o.output.len()));
        p.push(format!(
            "output differs from the model's at byte {first} ({} bytes, the model {}): model {}",
            out.len(),
            o.output.len(),
            hex(&o.output)
        ));
    }
    if got == Some(Verdict::Tx) && o.counts(DirectorStat::Encapsulated) {
        p.extend(check_gue(input, out, o, cfg, chains));
    }
    p
}

// ---------------------------------------------------------------- the director run

#[test]
fn director() {
    let settings = settings();
    let indexes = settings.indexes("director");
    if indexes.is_empty() {
        return;
    }
    let mut dp = Dataplane::load().expect("loading the director (needs root)");
    let max = max_frame();
    // The limit is the kernel's: a UDP datagram to a VIP filling `max`
    // bytes is encapsulated; one a byte longer is seen cut (its IP length
    // beyond the bytes the program sees: malformed).
    dp.apply(&cases::config(Cfg::Main), &cases::mac_of).unwrap();
    for (len, want) in [(max, 3), (max + 1, 1)] {
        let ip = ip_from("192.0.2.1", "203.0.113.10").udp(1, 53, &vec![0; len - 14 - 28]);
        let (action, _) = test_run(dp.program(), &packet::frame(&ip), None).unwrap();
        assert_eq!(
            action, want,
            "a {len}-byte frame, the test run's limit being {max}"
        );
    }
    eprintln!(
        "director: seed {:#x} (FUZZ_SEED), {} packets (FUZZ_PACKETS), frames of {MIN_FRAME} to {max} bytes",
        settings.seed,
        indexes.len()
    );
    let seeds = cases::all();
    let lens: Vec<usize> = seeds.iter().map(|c| c.input.len()).collect();
    let generator = DirectorGen {
        seeds,
        sweep: Sweep::new(&lens),
        max,
    };
    let models: HashMap<Conf, Model> = CONFIGS.iter().map(|&c| (c, conf_model(c))).collect();
    let chains = chains();
    let mut tally = Tally {
        sweep_total: generator.sweep.total,
        ..Tally::default()
    };
    let started = Instant::now();
    for cfg in CONFIGS {
        // Grouped by config, so that each is applied once.
        let mine: Vec<u64> = indexes
            .iter()
            .copied()
            .filter(|&i| generator.packet_cfg(settings.seed, i) == cfg)
            .collect();
        if mine.is_empty() {
            continue;
        }
        dp.apply(&conf_config(cfg), &cases::mac_of)
            .unwrap_or_else(|e| panic!("applying config {cfg:?}: {e:?}"));
        let before = dp.stats().unwrap();
        let mut want = [0u64; DirectorStat::COUNT];
        // Per bind and per (table, primary): (packets, bytes as received).
        let mut want_binds: BTreeMap<u32, (u64, u64)> = BTreeMap::new();
        let mut want_backends: BTreeMap<(String, IpAddr), (u64, u64)> = BTreeMap::new();
        let model = &models[&cfg];
        for i in mine {
            let (_, kind, frame) = generator.packet(settings.seed, i);
            *tally.kinds.entry(kind).or_default() += 1;
            if kind == "seed cut" {
                tally.sweep_pairs += 1;
            }
            if frame.len() < MIN_FRAME {
                tally.skipped_short += 1;
                continue;
            }
            if frame.len() > max {
                tally.skipped_long += 1;
                continue;
            }
            let o = model.process(&frame);
            let (action, out) = match test_run(dp.program(), &frame, None) {
                Ok(r) => r,
                Err(e) => {
                    tally.run += 1;
                    tally.fail(&settings, "director", i, kind, &frame, &[], &[e]);
                    continue;
                }
            };
            tally.run += 1;
            if let Some((bind, c)) = o.bind_counters {
                let e = want_binds.entry(bind).or_default();
                (e.0, e.1) = (e.0 + c.packets, e.1 + c.bytes);
                if let Some(d) = &o.decision {
                    let e = want_backends
                        .entry((d.table.clone(), d.primary))
                        .or_default();
                    (e.0, e.1) = (e.0 + c.packets, e.1 + c.bytes);
                }
            }
            for s in &o.counted {
                want[s.index() as usize] += 1;
                *tally.outcomes.entry(s.name()).or_default() += 1;
            }
            *tally.verdicts.entry(verdict_name(action)).or_default() += 1;
            let problems = check_director(&frame, action, &out, &o, cfg, &chains);
            if settings.only.is_some() {
                eprintln!(
                    "director packet {i} ({kind}, config {cfg:?}):\n  input:  {}\n  verdict {}\n  output: {}\n  model:  {:?} {:?}",
                    hex(&frame),
                    verdict_name(action),
                    hex(&out),
                    o.verdict,
                    o.counted
                );
            }
            if !problems.is_empty() {
                tally.fail(&settings, "director", i, kind, &frame, &out, &problems);
            }
        }
        let after = dp.stats().unwrap();
        let moved = |b: (u64, u64), a: (u64, u64)| (a.0.wrapping_sub(b.0), a.1.wrapping_sub(b.1));
        let mut got_binds = BTreeMap::new();
        for a in &after.per_bind {
            let b = before.per_bind.iter().find(|b| b.bind == a.bind);
            let d = moved(
                b.map_or((0, 0), |b| (b.packets, b.bytes)),
                (a.packets, a.bytes),
            );
            if d != (0, 0) {
                got_binds.insert(a.bind, d);
            }
        }
        let mut got_backends = BTreeMap::new();
        for a in &after.per_backend {
            let b = before
                .per_backend
                .iter()
                .find(|b| (&b.table, b.addr) == (&a.table, a.addr));
            let d = moved(
                b.map_or((0, 0), |b| (b.packets, b.bytes)),
                (a.packets, a.bytes),
            );
            if d != (0, 0) {
                got_backends.insert((a.table.clone(), a.addr), d);
            }
        }
        if got_binds != want_binds || got_backends != want_backends {
            tally.failures += 1;
            tally.shown.push(format!(
                "director, config {cfg:?}: per-bind counters moved by {got_binds:?}, the model says {want_binds:?}; per backend {got_backends:?}, the model says {want_backends:?}"
            ));
        }
        for stat in DirectorStat::ALL {
            let got = after.get(stat).wrapping_sub(before.get(stat));
            let w = want[stat.index() as usize];
            if got != w {
                tally.failures += 1;
                tally.shown.push(format!(
                    "director, config {cfg:?}: counter {} moved by {got}, the model says {w}",
                    stat.name()
                ));
            }
        }
    }
    tally.finish("director", &settings, started);
}

impl DirectorGen<'_> {
    /// The config packet `index` runs under (cheaper than building it).
    fn packet_cfg(&self, seed: u64, index: u64) -> Conf {
        if index.is_multiple_of(4) {
            let (s, _, _) = self.sweep.pair(index / 4);
            Conf::Golden(self.seeds[s].config)
        } else {
            head(&mut Rng::for_packet(seed, 1, index)).0
        }
    }
}

// ---------------------------------------------------------------- redirect lab

/// The backend's MACs: its `eth0`, and the other end of the veth, where
/// its neighbours are.
const HOST_MAC: [u8; 6] = [0x02, 0, 0, 0, 0x02, 0x11];
const PEER_MAC: [u8; 6] = [0x02, 0, 0, 0, 0x02, 0x12];
const DIRECTOR_MAC: [u8; 6] = [0x02, 0, 0, 0, 0x02, 0x01];
/// This host.
const ME: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 11);
const ME6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 1, 0, 0, 0, 0, 0x11);
/// The backend that is a neighbour: a forward to it succeeds.
const OTHER: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 12);
const OTHER6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 1, 0, 0, 0, 0, 0x12);
/// The lab's MTU: a forward of a longer packet fails (the FIB says so).
const LAB_MTU: usize = 1500;
/// The lab's sockets: a listener on each VIP's port 80, one connection to
/// the IPv4 one from `CLIENT:CLIENT_PORT`.
const VIP: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 10);
const VIP6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0x10, 0, 0, 0, 0, 0x10);
const CLIENT: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 7);
const CLIENT6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 2, 0, 0, 0, 0, 7);
const CLIENT_PORT: u16 = 40000;
/// The established flow as (client, VIP, client port, VIP port).
const ESTABLISHED: (Option<IpAddr>, Option<IpAddr>, Option<u16>, Option<u16>) = (
    Some(IpAddr::V4(CLIENT)),
    Some(IpAddr::V4(VIP)),
    Some(CLIENT_PORT),
    Some(80),
);

/// A TCP connection from `CLIENT:CLIENT_PORT` to `VIP:80` (std cannot
/// bind a client socket before connecting).
fn connect_from_client() -> std::net::TcpStream {
    use std::os::fd::FromRawFd as _;
    let sockaddr = |a: Ipv4Addr, port: u16| libc::sockaddr_in {
        sin_family: libc::AF_INET as u16,
        sin_port: port.to_be(),
        sin_addr: libc::in_addr {
            s_addr: u32::from_ne_bytes(a.octets()),
        },
        sin_zero: [0; 8],
    };
    let len = std::mem::size_of::<libc::sockaddr_in>() as u32;
    let (local, remote) = (sockaddr(CLIENT, CLIENT_PORT), sockaddr(VIP, 80));
    // SAFETY: socket(2), then bind(2) and connect(2) on that descriptor
    // with sockaddrs of the length given; the stream owns it from then on.
    unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_STREAM, 0);
        assert!(fd >= 0, "socket: {}", std::io::Error::last_os_error());
        let stream = std::net::TcpStream::from_raw_fd(fd);
        let rc = libc::bind(fd, (&raw const local).cast(), len);
        assert_eq!(rc, 0, "bind: {}", std::io::Error::last_os_error());
        let rc = libc::connect(fd, (&raw const remote).cast(), len);
        assert_eq!(rc, 0, "connect: {}", std::io::Error::last_os_error());
        stream
    }
}

fn redirect_config() -> RedirectConfig {
    RedirectConfig {
        selves: vec![IpAddr::V4(ME), IpAddr::V6(ME6)],
        allow: vec![
            "198.51.100.0/28".parse().unwrap(),
            "2001:db8:1::/124".parse().unwrap(),
        ],
        netns_id: None,
    }
}

fn allowed(a: IpAddr) -> bool {
    redirect_config().allow.iter().any(|p| p.contains(a))
}

fn mac(m: [u8; 6]) -> String {
    m.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

fn sh(cmd: &str, args: &[&str]) {
    let st = Command::new(cmd)
        .args(args)
        .status()
        .unwrap_or_else(|e| panic!("{cmd}: {e}"));
    assert!(st.success(), "{cmd} {args:?}: {st}");
}

/// Runs `body` on a thread in a network namespace of its own (gone when
/// the thread ends): a veth `eth0` (this host's addresses, forwarding on,
/// `OTHER`/`OTHER6` as permanent neighbours) and its peer `eth1`, the VIPs
/// and `CLIENT` on `lo`, the listeners and the established connection.
fn in_lab<T: Send + 'static>(body: impl FnOnce(u32) -> T + Send + 'static) -> T {
    std::thread::spawn(move || {
        // SAFETY: unshare(2) of this thread's network namespace only.
        let rc = unsafe { libc::unshare(libc::CLONE_NEWNET) };
        assert_eq!(rc, 0, "unshare: {}", std::io::Error::last_os_error());
        let (host, peer) = (mac(HOST_MAC), mac(PEER_MAC));
        sh(
            "ip",
            &[
                "link", "add", "eth0", "address", &host, "type", "veth", "peer", "name", "eth1",
                "address", &peer,
            ],
        );
        sh("ip", &["link", "set", "eth0", "up"]);
        sh("ip", &["link", "set", "eth1", "up"]);
        sh("ip", &["addr", "add", "198.51.100.11/24", "dev", "eth0"]);
        sh(
            "ip",
            &["addr", "add", "2001:db8:1::11/64", "dev", "eth0", "nodad"],
        );
        for other in [OTHER.to_string(), OTHER6.to_string()] {
            sh(
                "ip",
                &[
                    "neigh",
                    "add",
                    &other,
                    "lladdr",
                    &peer,
                    "dev",
                    "eth0",
                    "nud",
                    "permanent",
                ],
            );
        }
        sh(
            "sysctl",
            &[
                "-qw",
                "net.ipv4.conf.eth0.forwarding=1",
                "net.ipv6.conf.eth0.forwarding=1",
            ],
        );
        // The sockets: what the module's lookups find.
        sh("ip", &["link", "set", "lo", "up"]);
        for a in [VIP.to_string() + "/32", CLIENT.to_string() + "/32"] {
            sh("ip", &["addr", "add", &a, "dev", "lo"]);
        }
        sh(
            "ip",
            &[
                "addr",
                "add",
                &(VIP6.to_string() + "/128"),
                "dev",
                "lo",
                "nodad",
            ],
        );
        let listener = std::net::TcpListener::bind((VIP, 80)).unwrap();
        let _listener6 = std::net::TcpListener::bind((VIP6, 80)).unwrap();
        let _client = connect_from_client();
        let _server = listener.accept().unwrap();
        let name = std::ffi::CString::new("eth0").unwrap();
        // SAFETY: a valid NUL-terminated name.
        let ifindex = unsafe { libc::if_nametoindex(name.as_ptr()) };
        assert_ne!(ifindex, 0, "eth0 in the lab");
        body(ifindex)
    })
    .join()
    .unwrap_or_else(|e| std::panic::resume_unwind(e))
}

// ---------------------------------------------------------------- redirect reference

/// What the redirect module must do with a frame, in the lab.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Want {
    /// Not GUE as far as the module goes: passed untouched, uncounted.
    NotGue,
    /// Dropped and counted.
    Drop(RedirectStat),
    /// Decapsulated (the inner packet at this offset) and passed up.
    Accept(RedirectStat, usize),
    /// Forwarded to the neighbour `hop`.
    Forward(IpAddr),
}

/// docs/spec.md section 3 and docs/backend.md ("what the module looks at",
/// "the decision"), for the lab: one local socket matches a flow
/// ([`ESTABLISHED`]; the listeners alone accept nothing and never sent a
/// SYN cookie), `ME` and `ME6` are this host, `OTHER` and `OTHER6` are the
/// only neighbours.
fn redirect_reference(f: &[u8]) -> Want {
    let v6 = match be16(f, 12) {
        Some(0x0800) => false,
        Some(0x86dd) => true,
        _ => return Want::NotGue,
    };
    let l3 = 14;
    let ip_len = if v6 { 40 } else { 20 };
    if f.len() < l3 + ip_len {
        return Want::NotGue;
    }
    let ip = &f[l3..];
    // Plain IP-in-IP (protocol 4 or 41 right after an outer IPv6 header,
    // or an IPv4 one without options or fragmentation): decapsulated from
    // an allowed source, left alone from any other.
    let protocol = if v6 { ip[6] } else { ip[9] };
    let plain_v4 = ip[0] == 0x45 && be16(ip, 6).unwrap() & 0x3fff == 0;
    if (protocol == 4 || protocol == 41) && (v6 || plain_v4) {
        let src = addr_at(ip, if v6 { 8 } else { 12 }, v6).unwrap();
        if !allowed(src) {
            return Want::NotGue;
        }
        let inner = l3 + ip_len;
        let (want_version, len) = if protocol == 41 { (6, 40) } else { (4, 20) };
        return match f.get(inner..inner + len) {
            Some(h) if h[0] >> 4 == want_version => Want::Accept(RedirectStat::AcceptedIpip, inner),
            _ => Want::Drop(RedirectStat::DroppedInvalid),
        };
    }
    let is_udp = if v6 {
        ip[6] == 17
    } else {
        // Untagged, no options, not a fragment.
        ip[0] == 0x45 && ip[9] == 17 && be16(ip, 6).unwrap() & 0x3fff == 0
    };
    let udp = l3 + ip_len;
    if !is_udp || f.len() < udp + 8 || be16(f, udp + 2) != Some(proto::GUE_PORT) {
        return Want::NotGue;
    }
    let src = addr_at(ip, if v6 { 8 } else { 12 }, v6).unwrap();
    if !allowed(src) {
        return Want::Drop(RedirectStat::DroppedNotAllowed);
    }
    let gue_at = udp + 8;
    let gue = GuePacket::new_unchecked(&f[gue_at..]);
    let Ok(repr) = GueRepr::parse(&gue) else {
        return Want::Drop(RedirectStat::DroppedInvalid);
    };
    let want_type = if v6 {
        PrivateType::Ipv6Hops
    } else {
        PrivateType::Ipv4Hops
    };
    if repr.hops.private_type() != want_type {
        return Want::Drop(RedirectStat::DroppedInvalid);
    }
    let inner = gue_at + repr.buffer_len();
    let invalid = Want::Drop(RedirectStat::DroppedInvalid);
    let other = Want::Accept(RedirectStat::AcceptedOther, inner);
    let i = &f[inner.min(f.len())..];
    let (proto, l4) = if repr.inner == InnerProto::Ipv6 {
        if i.len() < 40 || i[0] >> 4 != 6 {
            return invalid;
        }
        (i[6], 40)
    } else {
        if i.len() < 20 || i[0] >> 4 != 4 {
            return invalid;
        }
        let hl = usize::from(i[0] & 0x0f) * 4;
        if hl < 20 || hl > i.len() {
            return invalid;
        }
        if be16(i, 6).unwrap() & 0x1fff != 0 {
            return other; // a later fragment
        }
        (i[9], hl)
    };
    let inner_v6 = repr.inner == InnerProto::Ipv6;
    let l4b = &i[l4..];
    if proto == 6 {
        if l4b.len() < 20 {
            return invalid;
        }
        let flags = l4b[13];
        if flags & 0x02 != 0 && flags & 0x10 == 0 {
            return Want::Accept(RedirectStat::AcceptedSyn, inner);
        }
        let flow = (
            addr_at(i, if inner_v6 { 8 } else { 12 }, inner_v6),
            addr_at(i, if inner_v6 { 24 } else { 16 }, inner_v6),
            be16(l4b, 0),
            be16(l4b, 2),
        );
        if flow == ESTABLISHED {
            return Want::Accept(RedirectStat::AcceptedEstablished, inner);
        }
    } else if proto == if inner_v6 { 58 } else { 1 } {
        if l4b.len() < 8 {
            return other;
        }
        let q = &l4b[8..];
        let quotes_tcp = if inner_v6 {
            l4b[0] == 2 && q.len() >= 44 && q[6] == 6
        } else {
            let hl = q.first().map_or(0, |b| usize::from(b & 0x0f) * 4);
            l4b[0] == 3
                && l4b[1] == 4
                && q.len() >= 20
                && q[9] == 6
                && hl >= 20
                && q.len() >= hl + 4
        };
        if !quotes_tcp {
            return other;
        }
        // The quoted packet went from the VIP to the client: its reverse
        // is the flow.
        let hl = if inner_v6 {
            40
        } else {
            usize::from(q[0] & 0x0f) * 4
        };
        let flow = (
            addr_at(q, if inner_v6 { 24 } else { 16 }, inner_v6),
            addr_at(q, if inner_v6 { 8 } else { 12 }, inner_v6),
            be16(q, hl + 2),
            be16(q, hl),
        );
        if flow == ESTABLISHED {
            return Want::Accept(RedirectStat::AcceptedEstablished, inner);
        }
    } else {
        return other;
    }
    // No other socket in the lab: steps 4 to 6.
    if repr.next_hop >= repr.hops.hop_count() {
        return Want::Accept(RedirectStat::AcceptedLastResort, inner);
    }
    let hop = repr.hops.get(usize::from(repr.next_hop)).unwrap();
    if hop == IpAddr::V4(ME) || hop == IpAddr::V6(ME6) {
        return Want::Accept(RedirectStat::ForwardedToSelf, inner);
    }
    // The FIB answers for the neighbours, for a packet the link takes (the
    // length the outer header announces).
    let announced = if v6 {
        usize::from(be16(ip, 4).unwrap().wrapping_add(40))
    } else {
        usize::from(be16(ip, 2).unwrap())
    };
    if (hop == IpAddr::V4(OTHER) || hop == IpAddr::V6(OTHER6)) && announced <= LAB_MTU {
        Want::Forward(hop)
    } else {
        Want::Drop(RedirectStat::ForwardFailed)
    }
}

/// The frame a forward to `hop` leaves: docs/backend.md step 3.6.
fn forwarded(f: &[u8], hop: IpAddr) -> Vec<u8> {
    let mut out = f.to_vec();
    out[..6].copy_from_slice(&PEER_MAC);
    out[6..12].copy_from_slice(&HOST_MAC);
    let ip = &mut out[14..];
    let gue_at = match hop {
        IpAddr::V6(h) => {
            ip[7] = 64;
            ip[8..24].copy_from_slice(&ME6.octets());
            ip[24..40].copy_from_slice(&h.octets());
            14 + 48
        }
        IpAddr::V4(h) => {
            ip[8] = 64;
            ip[12..16].copy_from_slice(&ME.octets());
            ip[16..20].copy_from_slice(&h.octets());
            ip[10..12].copy_from_slice(&[0, 0]);
            let c = ipv4_checksum(&ip[..20]);
            ip[10..12].copy_from_slice(&c.to_be_bytes());
            14 + 28
        }
    };
    out[gue_at + 6] += 1;
    out
}

/// Every check of one redirect run.
fn check_redirect(f: &[u8], action: u32, out: &[u8], want: &Want) -> Vec<String> {
    let mut p = Vec::new();
    if action == 0 {
        p.push("XDP_ABORTED".into());
    }
    // Independent of the reference's details: what is not GUE passes
    // untouched; GUE from outside `allow`, or that proto::wire refuses, is
    // never decapsulated.
    let decapsulated = action == 2 && out != f;
    match want {
        Want::NotGue if (action, out) != (2, f) => {
            p.push("not GUE, but not passed untouched".into());
        }
        Want::Drop(RedirectStat::DroppedNotAllowed) if action != 1 => {
            p.push("GUE from a source outside allow is not dropped".into());
        }
        Want::Drop(RedirectStat::DroppedInvalid) if decapsulated => {
            p.push("invalid GUE was decapsulated and passed up".into());
        }
        _ => {}
    }
    let (want_action, want_out) = match want {
        Want::NotGue => (2, f.to_vec()),
        Want::Drop(_) => (1, Vec::new()),
        Want::Accept(_, inner) => {
            let ip = &f[*inner..];
            let mut o = f[..12].to_vec();
            o.extend_from_slice(&ethertype_of(ip).to_be_bytes());
            o.extend_from_slice(ip);
            (2, o)
        }
        Want::Forward(hop) => (3, forwarded(f, *hop)),
    };
    if action != want_action {
        p.push(format!(
            "verdict {}, want {} ({want:?})",
            verdict_name(action),
            verdict_name(want_action)
        ));
    } else if want_action != 1 && out != want_out {
        let first = out
            .iter()
            .zip(&want_out)
            .position(|(a, b)| a != b)
            .unwrap_or(out.len().min(want_out.len()));
        p.push(format!(
            "output differs at byte {first} ({} bytes, want {}): want {}",
            out.len(),
            want_out.len(),
            hex(&want_out)
        ));
    }
    if let (3, Want::Forward(hop)) = (action, want) {
        // Well-formed GUE, to the hop, next_hop moved on by one.
        let v6 = hop.is_ipv6();
        let at = 14 + if v6 { 48 } else { 28 };
        match (
            GueRepr::parse(&GuePacket::new_unchecked(&out[at.min(out.len())..])),
            GueRepr::parse(&GuePacket::new_unchecked(&f[at..])),
        ) {
            (Ok(o), Ok(i)) if o.next_hop == i.next_hop + 1 && o.hops == i.hops => {}
            (o, i) => p.push(format!("forwarded GUE {o:?}, received {i:?}")),
        }
        if addr_at(&out[14..], if v6 { 24 } else { 16 }, v6) != Some(*hop) {
            p.push("forwarded to another address than the next hop".into());
        }
    }
    p
}

// ---------------------------------------------------------------- redirect generators

/// Sources of GUE: the director, backends, and outsiders.
fn gue_source(rng: &mut Rng, v6: bool, allowed_only: bool) -> IpAddr {
    let inside = allowed_only || rng.chance(85);
    match (v6, inside) {
        (false, true) => IpAddr::V4(Ipv4Addr::new(198, 51, 100, rng.below(16) as u8)),
        (true, true) => IpAddr::V6(Ipv6Addr::new(
            0x2001,
            0xdb8,
            1,
            0,
            0,
            0,
            0,
            rng.below(16) as u16,
        )),
        (false, false) => IpAddr::V4(Ipv4Addr::new(198, 51, 100, rng.range(16, 255) as u8)),
        (true, false) => IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 2, 0, 0, 0, 0, rng.u16())),
    }
}

/// A hop: this host, the neighbour, a backend with no neighbour entry, an
/// address with no route, or anything.
fn hop(rng: &mut Rng, v6: bool) -> IpAddr {
    if v6 {
        IpAddr::V6(match rng.below(6) {
            0 => ME6,
            1 | 2 => OTHER6,
            3 => Ipv6Addr::new(0x2001, 0xdb8, 1, 0, 0, 0, 0, 0x13),
            4 => Ipv6Addr::new(0x2001, 0xdb8, 9, 0, 0, 0, 0, 1),
            _ => Ipv6Addr::from(u128::from(rng.next()) << 64 | u128::from(rng.next())),
        })
    } else {
        IpAddr::V4(match rng.below(6) {
            0 => ME,
            1 | 2 => OTHER,
            3 => Ipv4Addr::new(198, 51, 100, 13),
            4 => Ipv4Addr::new(192, 0, 2, 200),
            _ => Ipv4Addr::from(rng.next() as u32),
        })
    }
}

/// A client packet as the director carries it: TCP with any flags (SYN,
/// ACK, RST...), UDP, ICMP echo, frag-needed or packet-too-big quoting TCP
/// or UDP or garbage, fragments, options, extension headers.
fn inner_packet(rng: &mut Rng, max: usize) -> Vec<u8> {
    let v6 = rng.chance(40);
    match rng.below(10) {
        0..=4 => {
            let (src, dst) = (client(rng, v6), dst(rng, v6));
            let mut ip = ip_from(&src, &dst);
            if !v6 && rng.chance(10) {
                ip = ip.options(&v4_options(rng));
            }
            if v6 && rng.chance(10) {
                ip = ip.ext(Ext::DestOpts(0));
            }
            let flags = {
                let any = rng.byte();
                *rng.pick(&[0x02, 0x10, 0x10, 0x18, 0x12, 0x04, 0x11, 0x00, any])
            };
            let payload = rng.bytes_len(max.saturating_sub(200));
            ip.tcp(rng.u16(), port(rng), flags, &payload)
        }
        5 => {
            let (src, dst) = (client(rng, v6), dst(rng, v6));
            ip_from(&src, &dst).udp(rng.u16(), port(rng), &rng.bytes_below(64))
        }
        6..=7 => {
            let vip = dst(rng, v6);
            let ip = ip_from(&client(rng, v6), &vip);
            quoting_error(rng, v6, &vip, ip)
        }
        8 if rng.chance(50) => fragment(rng, max)[14..].to_vec(),
        8 => lab_flow(rng, v6),
        _ => {
            let mut v = valid_ip(rng, v6, max);
            if rng.chance(50) {
                v = corrupt(rng, v);
            }
            v
        }
    }
}

/// A packet of the flows the lab has sockets for (the established one,
/// its neighbours, the IPv6 listener's), or an ICMP error quoting one,
/// with any flags, sometimes cut or garbled.
fn lab_flow(rng: &mut Rng, v6: bool) -> Vec<u8> {
    let (client, vip) = if v6 {
        (IpAddr::V6(CLIENT6), IpAddr::V6(VIP6))
    } else {
        (IpAddr::V4(CLIENT), IpAddr::V4(VIP))
    };
    let (client, vip) = (client.to_string(), vip.to_string());
    let sport = CLIENT_PORT + *rng.pick(&[0, 0, 0, 1]);
    let flags = {
        let any = rng.byte();
        *rng.pick(&[0x10, 0x10, 0x18, 0x11, 0x04, 0x14, 0x12, 0x02, any])
    };
    let mut p = if rng.chance(70) {
        let opts = if rng.chance(20) {
            let n = 4 * rng.range(1, 10);
            rng.bytes(n)
        } else {
            Vec::new()
        };
        let payload = rng.bytes_below(64);
        ip_from(&client, &vip).tcp_with_options(sport, 80, flags, &opts, &payload)
    } else {
        let reply = ip_from(&vip, &client).tcp(80, sport, 0x10, &[0; 64]);
        let quote = &reply[..if v6 { 48 } else { 28 }];
        let (ty, code) = if v6 { (2, 0) } else { (3, 4) };
        let router = if v6 { "2001:db8:ff::1" } else { "192.0.2.254" };
        ip_from(router, &vip).icmp(ty, code, [0, 0, 5, 0x78], quote)
    };
    if rng.chance(20) {
        p = corrupt(rng, p);
    }
    if rng.chance(10) {
        let keep = rng.below(p.len() + 1);
        p.truncate(keep);
    }
    p
}

/// A GUE frame from `src` to this host: hops of the outer family (or of
/// the other one sometimes), any next_hop, `inner` behind.
fn gue_frame(rng: &mut Rng, src: IpAddr, inner: &[u8]) -> Vec<u8> {
    let v6 = src.is_ipv6();
    let hop_v6 = if rng.chance(5) { !v6 } else { v6 };
    let hops: Vec<IpAddr> = (0..rng.below(5)).map(|_| hop(rng, hop_v6)).collect();
    let next_hop = match rng.below(10) {
        0..=5 => 0,
        6..=8 => rng.below(hops.len() + 2) as u8,
        _ => rng.byte(),
    };
    let hop_bytes: Vec<u8> = hops.iter().flat_map(|h| octets(*h)).collect();
    let inner_proto = match (rng.chance(5), inner.first().map(|b| b >> 4)) {
        (true, _) => {
            let any = rng.byte();
            *rng.pick(&[4, 41, 6, 17, any])
        }
        (false, Some(6)) => 41,
        _ => 4,
    };
    let mut g = vec![
        (1 + hop_bytes.len() / 4) as u8,
        inner_proto,
        0,
        0,
        0,
        u8::from(hop_v6),
        next_hop,
        hops.len() as u8,
    ];
    g.extend_from_slice(&hop_bytes);
    g.extend_from_slice(inner);
    let dst = if v6 { IpAddr::V6(ME6) } else { IpAddr::V4(ME) };
    let sport = 0x8000 | rng.u16();
    let mut u = sport.to_be_bytes().to_vec();
    u.extend_from_slice(&proto::GUE_PORT.to_be_bytes());
    u.extend_from_slice(&((8 + g.len()) as u16).to_be_bytes());
    u.extend_from_slice(&[0, 0]);
    u.extend_from_slice(&g);
    let mut ip = match (src, dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            let mut h = vec![0x45, 0];
            h.extend_from_slice(&((20 + u.len()) as u16).to_be_bytes());
            h.extend_from_slice(&[0, 0, 0x40, 0, rng.range(1, 64) as u8, 17, 0, 0]);
            h.extend_from_slice(&s.octets());
            h.extend_from_slice(&d.octets());
            let c = ipv4_checksum(&h);
            h[10..12].copy_from_slice(&c.to_be_bytes());
            h
        }
        (IpAddr::V6(s), IpAddr::V6(d)) => {
            let mut h = vec![0x60, 0, 0, 0];
            h.extend_from_slice(&(u.len() as u16).to_be_bytes());
            h.extend_from_slice(&[17, rng.range(1, 64) as u8]);
            h.extend_from_slice(&s.octets());
            h.extend_from_slice(&d.octets());
            h
        }
        _ => unreachable!("one family"),
    };
    ip.extend_from_slice(&u);
    let mut f = HOST_MAC.to_vec();
    f.extend_from_slice(&DIRECTOR_MAC);
    f.extend_from_slice(&ethertype_of(&ip).to_be_bytes());
    f.extend_from_slice(&ip);
    f
}

/// IP-in-IP to this host: from the director, a backend or an outsider;
/// an inner packet of the announced family, of the other one, cut short,
/// or behind IPv4 options or fragmentation (not IP-in-IP to the module).
fn ipip_frame(rng: &mut Rng, max: usize) -> Vec<u8> {
    let v6 = rng.chance(40);
    let src = gue_source(rng, v6, false);
    let inner = inner_packet(rng, max.saturating_sub(80));
    let mut protocol = if inner.first().map(|b| b >> 4) == Some(6) {
        41
    } else {
        4
    };
    if rng.chance(10) {
        protocol = 45 - protocol;
    }
    let mut f = gue_frame(rng, src, &[]);
    let at = 14 + if v6 { 40 } else { 20 };
    f.truncate(at);
    f[14 + if v6 { 6 } else { 9 }] = protocol;
    f.extend_from_slice(&inner);
    if rng.chance(10) {
        let keep = rng.range(at, f.len());
        f.truncate(keep);
    }
    if !v6 && rng.chance(5) {
        f[14 + 6] |= 0x20;
    }
    f
}

fn valid_gue(rng: &mut Rng, max: usize) -> Vec<u8> {
    let v6 = rng.chance(40);
    let src = gue_source(rng, v6, true);
    let inner = inner_packet(rng, max.saturating_sub(140));
    gue_frame(rng, src, &inner)
}

/// Traffic the module must leave alone: UDP to other ports, TCP to the GUE
/// port, GUE behind IPv4 options, in fragments, behind IPv6 extension
/// headers or a VLAN tag, ARP, and valid frames of any kind.
fn not_gue(rng: &mut Rng, max: usize) -> Vec<u8> {
    let g = valid_gue(rng, max);
    let v6 = be16(&g, 12) == Some(0x86dd);
    let ip = g[14..].to_vec();
    match rng.below(8) {
        0 => {
            let mut f = g;
            let at = 14 + if v6 { 42 } else { 22 };
            let other = if rng.chance(50) {
                rng.u16()
            } else {
                proto::GUE_PORT + 1
            };
            f[at..at + 2].copy_from_slice(&other.to_be_bytes());
            f
        }
        1 => {
            let mut f = g;
            f[14 + if v6 { 6 } else { 9 }] = 6;
            f
        }
        2 if !v6 => {
            // IPv4 options in front of the UDP header.
            let mut p = ip;
            p[0] = 0x46;
            p.splice(20..20, [1u8, 1, 1, 0]);
            eth(0x0800, &p)
        }
        3 if !v6 => {
            let mut f = g;
            let mf = rng.chance(50);
            let off: u16 = if mf { 0 } else { rng.range(1, 0x1fff) as u16 };
            f[14 + 6..14 + 8].copy_from_slice(&((u16::from(mf) << 13) | off).to_be_bytes());
            f
        }
        3 => {
            // A hop-by-hop header before the UDP header.
            let mut p = ip;
            p[6] = 0;
            p.splice(40..40, [17u8, 0, 1, 4, 0, 0, 0, 0]);
            eth(0x86dd, &p)
        }
        4 => packet::frame_vlan(rng.u16() & 0xfff, &ip),
        5 => eth(0x0806, &rng.bytes(28)),
        _ => valid_frame(rng, max),
    }
}

const REDIRECT_KINDS: [(&str, usize); 8] = [
    ("valid GUE", 24),
    ("IP-in-IP", 8),
    ("corrupted GUE", 24),
    ("truncated GUE", 10),
    ("GUE from outside allow", 8),
    ("not GUE", 14),
    ("random bytes", 10),
    ("GUE with random payload", 10),
];

struct RedirectGen {
    seeds: Vec<Vec<u8>>,
    sweep: Sweep,
    max: usize,
}

impl RedirectGen {
    fn new(max: usize) -> RedirectGen {
        // Seeds for the cuts: fixed (not FUZZ_SEED's), so that every run
        // cuts the same frames.
        let seeds: Vec<Vec<u8>> = (0..64)
            .map(|i| {
                let mut rng = Rng::for_packet(0, 99, i);
                let mut f = valid_gue(&mut rng, 400);
                f.truncate(400);
                f
            })
            .collect();
        let lens: Vec<usize> = seeds.iter().map(Vec::len).collect();
        RedirectGen {
            sweep: Sweep::new(&lens),
            seeds,
            max,
        }
    }

    fn packet(&self, seed: u64, index: u64) -> (&'static str, Vec<u8>) {
        let mut rng = Rng::for_packet(seed, 2, index);
        if index.is_multiple_of(4) {
            let (s, len, lap) = self.sweep.pair(index / 4);
            return ("seed cut", cut_frame(&self.seeds[s], len, lap % 2 == 1));
        }
        let weights: Vec<usize> = REDIRECT_KINDS.iter().map(|k| k.1).collect();
        let k = rng.weighted(&weights);
        let max = self.max;
        let frame = match k {
            0 => valid_gue(&mut rng, max),
            1 => ipip_frame(&mut rng, max),
            2 => {
                let mut f = valid_gue(&mut rng, max);
                // Mostly in the outer headers and GUE.
                for _ in 0..rng.range(1, 3) {
                    let at = if rng.chance(80) {
                        rng.below(f.len().min(14 + 48 + 8 + 64))
                    } else {
                        rng.below(f.len())
                    };
                    f[at] = match rng.below(3) {
                        0 => rng.byte(),
                        1 => f[at] ^ (1 << rng.below(8)),
                        _ => *rng.pick(&INTERESTING),
                    };
                }
                f
            }
            3 => {
                let f = valid_gue(&mut rng, max);
                let len = rng.range(MIN_FRAME, f.len());
                let fix = rng.chance(50);
                cut_frame(&f, len, fix)
            }
            4 => {
                let v6 = rng.chance(40);
                let src = gue_source(&mut rng, v6, false);
                let src = if allowed(src) {
                    if v6 {
                        IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 1, 0, 0, 0, 0, 0x10))
                    } else {
                        IpAddr::V4(Ipv4Addr::new(198, 51, 100, 16))
                    }
                } else {
                    src
                };
                let inner = inner_packet(&mut rng, max.saturating_sub(140));
                gue_frame(&mut rng, src, &inner)
            }
            5 => not_gue(&mut rng, max),
            6 => {
                if rng.chance(50) {
                    random_frame(&mut rng, max)
                } else {
                    // Random after an outer header and a UDP header to the
                    // GUE port, from an allowed source.
                    let v6 = rng.chance(40);
                    let src = gue_source(&mut rng, v6, true);
                    let mut f = gue_frame(&mut rng, src, &[]);
                    let at = 14 + if v6 { 48 } else { 28 };
                    f.truncate(at);
                    let n = rng.len(max.saturating_sub(at));
                    f.extend_from_slice(&rng.bytes(n));
                    f
                }
            }
            _ => {
                let v6 = rng.chance(40);
                let src = gue_source(&mut rng, v6, true);
                let n = rng.len(max.saturating_sub(160));
                let inner = rng.bytes(n);
                gue_frame(&mut rng, src, &inner)
            }
        };
        (REDIRECT_KINDS[k].0, frame)
    }
}

fn want_name(w: &Want) -> &'static str {
    match w {
        Want::NotGue => "not GUE (untouched)",
        Want::Drop(s) | Want::Accept(s, _) => s.name(),
        Want::Forward(_) => RedirectStat::ForwardedToAlternate.name(),
    }
}

// ---------------------------------------------------------------- the redirect run

#[test]
fn redirect() {
    let settings = settings();
    let indexes = settings.indexes("redirect");
    if indexes.is_empty() {
        return;
    }
    let s = settings.clone();
    let tally = in_lab(move |ifindex| {
        let settings = s;
        let mut module = Redirect::load().expect("loading the redirect module (needs root)");
        module
            .configure(&redirect_config())
            .expect("configuring the redirect module");
        let max = max_frame();
        eprintln!(
            "redirect: seed {:#x} (FUZZ_SEED), {} packets (FUZZ_PACKETS), frames of {MIN_FRAME} to {max} bytes",
            settings.seed,
            indexes.len()
        );
        let generator = RedirectGen::new(max);
        let mut tally = Tally {
            sweep_total: generator.sweep.total,
            ..Tally::default()
        };
        let mut want_stats = [0u64; RedirectStat::COUNT];
        let before = module.stats().unwrap();
        let started = Instant::now();
        for i in indexes {
            let (kind, frame) = generator.packet(settings.seed, i);
            *tally.kinds.entry(kind).or_default() += 1;
            if kind == "seed cut" {
                tally.sweep_pairs += 1;
            }
            if frame.len() < MIN_FRAME {
                tally.skipped_short += 1;
                continue;
            }
            if frame.len() > max {
                tally.skipped_long += 1;
                continue;
            }
            tally.run += 1;
            let want = redirect_reference(&frame);
            let (action, out) = match test_run(module.program(), &frame, Some(ifindex)) {
                Ok(r) => r,
                Err(e) => {
                    tally.fail(&settings, "redirect", i, kind, &frame, &[], &[e]);
                    continue;
                }
            };
            *tally.verdicts.entry(verdict_name(action)).or_default() += 1;
            *tally.outcomes.entry(want_name(&want)).or_default() += 1;
            let stat = match &want {
                Want::NotGue => None,
                Want::Drop(s) | Want::Accept(s, _) => Some(*s),
                Want::Forward(_) => Some(RedirectStat::ForwardedToAlternate),
            };
            if let Some(s) = stat {
                want_stats[s.index() as usize] += 1;
                want_stats[RedirectStat::Total.index() as usize] += 1;
            }
            let problems = check_redirect(&frame, action, &out, &want);
            if settings.only.is_some() {
                eprintln!(
                    "redirect packet {i} ({kind}):\n  input:  {}\n  verdict {}\n  output: {}\n  reference: {want:?}",
                    hex(&frame),
                    verdict_name(action),
                    hex(&out)
                );
            }
            if !problems.is_empty() {
                tally.fail(&settings, "redirect", i, kind, &frame, &out, &problems);
            }
        }
        let after = module.stats().unwrap();
        for ((stat, b), (_, a)) in before.iter().zip(&after) {
            let got = a - b;
            let w = want_stats[stat.index() as usize];
            if got != w {
                tally.failures += 1;
                tally.shown.push(format!(
                    "redirect: counter {} moved by {got}, the reference says {w}",
                    stat.name()
                ));
            }
        }
        (tally, started)
    });
    let (tally, started) = tally;
    tally.finish("redirect", &settings, started);
}
