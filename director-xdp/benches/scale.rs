//! Scale benchmark: the director's cost per packet as the number of VIPs
//! and tables grows, and the memory its maps take. Prints a Markdown
//! section for `docs/benchmarks.md`; with `BENCH_DATA` set, also writes
//! `scale.tsv` and `maps.tsv` there for the plots (see `make bench`).
//!
//! Method: `director.rs`'s (`BPF_PROG_TEST_RUN`, repeat 1, the original
//! packet every run, detached), with `LOADS` loads of the object per case,
//! each case's config applied to its own loads; every case, load and
//! program (the floor, the director) is measured in interleaved batches.
//! The packet is an IPv4 TCP SYN to the last VIP of the last table, so the
//! VIP lookup and the table it names are the ones added last.
//!
//! Map memory is what the kernel reports for this process's map
//! descriptors (`/proc/self/fdinfo`: type, key and value sizes, entries,
//! `memlock`), read while exactly one load of the object exists. Needs root.

mod common;

use std::net::{IpAddr, Ipv4Addr};

use director_xdp::{BENCH_FLOOR_PROGRAM, DIRECTOR_PROGRAM, Dataplane};
use proto::config::{Bind, Config, Prefix, Proto};
use proto::maps::{MAX_BINDS, MAX_TABLES, TABLE_ROWS, TABLE_SLOTS, TableRow};

use common::{batch_mean, median};

const LOADS: usize = 3;
const BATCHES: usize = 7;
const RUNS: usize = 2000;

/// (VIPs, tables) measured: each VIP is one bind (TCP port 80) of table
/// `vip % tables`. The limits of the maps are `MAX_BINDS` binds and
/// `MAX_TABLES` tables.
/// The last case, 16,384 VIPs, is one IPv6 bind of a /114 prefix instead
/// (the LPM trie's path): the way a config holds more VIPs than binds.
const CASES: [(usize, usize); 7] = [
    (1, 1),
    (100, 1),
    (256, 1),
    (16, 16),
    (100, 16),
    (256, 16),
    (CIDR_VIPS, 1),
];
const CIDR_VIPS: usize = 1 << 14;
const CIDR_PREFIX: &str = "2001:db8:10::";

/// VIP `k` (`k` < 256): 203.0.113.k.
fn vip(k: usize) -> Ipv4Addr {
    Ipv4Addr::new(203, 0, 113, k as u8)
}

/// `examples/director.json`'s director settings with `tables` copies of
/// its table "web" (same seed and backends) sharing `vips` VIPs.
fn config(example: &Config, vips: usize, tables: usize) -> Config {
    let web = example.table("web").expect("table web");
    let mut config = example.clone();
    if vips == CIDR_VIPS {
        let mut table = web.clone();
        table.name = "t0".into();
        table.binds = vec![Bind {
            prefix: Prefix {
                addr: CIDR_PREFIX.parse().expect("literal"),
                len: 114,
            },
            proto: Proto::Tcp,
            port_start: 80,
            port_end: 80,
        }];
        config.tables = vec![table];
        return config;
    }
    config.tables = (0..tables)
        .map(|t| {
            let mut table = web.clone();
            table.name = format!("t{t}");
            table.binds = (0..vips)
                .filter(|k| k % tables == t)
                .map(|k| Bind {
                    prefix: Prefix {
                        addr: IpAddr::V4(vip(k)),
                        len: 32,
                    },
                    proto: Proto::Tcp,
                    port_start: 80,
                    port_end: 80,
                })
                .collect();
            table
        })
        .collect();
    config
}

/// An IPv6 TCP SYN 40000 -> 80 to the last address of the /114 VIP.
fn eth_ipv6_syn() -> Vec<u8> {
    let mut f = vec![0x02, 0, 0, 0, 0, 0x01, 0x02, 0, 0, 0, 0, 0x02, 0x86, 0xdd];
    f.extend_from_slice(&[0x60, 0, 0, 0, 0, 20, 6, 64]);
    f.extend_from_slice(
        &"2001:db8:1::7"
            .parse::<std::net::Ipv6Addr>()
            .expect("literal")
            .octets(),
    );
    let mut dst = CIDR_PREFIX
        .parse::<std::net::Ipv6Addr>()
        .expect("literal")
        .octets();
    dst[14] = 0x3f;
    dst[15] = 0xff;
    f.extend_from_slice(&dst);
    f.extend_from_slice(&[
        0x9c, 0x40, 0, 80, 0, 0, 0, 1, 0, 0, 0, 0, 0x50, 0x02, 0xfa, 0xf0,
    ]);
    f.extend_from_slice(&[0, 0, 0, 0]);
    f
}

fn eth_ipv4_syn(dst: Ipv4Addr) -> Vec<u8> {
    let mut f = vec![0x02, 0, 0, 0, 0, 0x01, 0x02, 0, 0, 0, 0, 0x02, 0x08, 0x00];
    let mut ip = vec![0x45, 0, 0, 40, 0, 1, 0x40, 0, 64, 6, 0, 0, 192, 0, 2, 7];
    ip.extend_from_slice(&dst.octets());
    let mut sum: u32 = ip
        .chunks(2)
        .map(|c| u32::from(u16::from_be_bytes([c[0], c[1]])))
        .sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    ip[10..12].copy_from_slice(&(!(sum as u16)).to_be_bytes());
    f.extend(ip);
    // TCP SYN 40000 -> 80, 20-byte header.
    f.extend_from_slice(&[
        0x9c, 0x40, 0, 80, 0, 0, 0, 1, 0, 0, 0, 0, 0x50, 0x02, 0xfa, 0xf0,
    ]);
    f.extend_from_slice(&[0, 0, 0, 0]);
    f
}

/// One BPF map of this process as `/proc/self/fdinfo` gives it.
struct MapInfo {
    name: String,
    map_type: u32,
    key: u64,
    value: u64,
    entries: u64,
    memlock: u64,
}

/// Every BPF map this process holds a descriptor to (one per map: the
/// first descriptor seen).
fn process_maps() -> Vec<MapInfo> {
    let mut seen = std::collections::BTreeSet::new();
    let mut maps = Vec::new();
    let Ok(dir) = std::fs::read_dir("/proc/self/fdinfo") else {
        return maps;
    };
    for entry in dir.flatten() {
        let Ok(text) = std::fs::read_to_string(entry.path()) else {
            continue;
        };
        let field = |name: &str| -> Option<u64> {
            text.lines()
                .find_map(|l| l.strip_prefix(name))
                .and_then(|v| v.trim().parse().ok())
        };
        let (Some(id), Some(map_type)) = (field("map_id:"), field("map_type:")) else {
            continue;
        };
        if !seen.insert(id) {
            continue;
        }
        let name = aya::maps::MapInfo::from_id(id as u32)
            .ok()
            .and_then(|i| i.name_as_str().map(str::to_string))
            .unwrap_or_else(|| format!("id {id}"));
        maps.push(MapInfo {
            name,
            map_type: map_type as u32,
            key: field("key_size:").unwrap_or(0),
            value: field("value_size:").unwrap_or(0),
            entries: field("max_entries:").unwrap_or(0),
            memlock: field("memlock:").unwrap_or(0),
        });
    }
    maps.sort_by(|a, b| b.memlock.cmp(&a.memlock).then(a.name.cmp(&b.name)));
    maps
}

/// `enum bpf_map_type` names of the types the director uses.
fn type_name(t: u32) -> String {
    match t {
        1 => "hash".into(),
        2 => "array".into(),
        6 => "percpu_array".into(),
        11 => "lpm_trie".into(),
        other => format!("type {other}"),
    }
}

fn mib(bytes: u64) -> String {
    format!("{:.2}", bytes as f64 / (1024.0 * 1024.0))
}

fn main() {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../examples/director.json"
    ))
    .expect("examples/director.json");
    let example = Config::from_json(&text).expect("example config");
    let data = std::env::var_os("BENCH_DATA").map(std::path::PathBuf::from);
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());

    // Map memory, with one load only (the largest case's config).
    let maps = {
        let mut dp = Dataplane::load().expect("loading the director (root needed)");
        dp.apply(&config(&example, 256, 16), &|_| {
            Some([0x02, 0, 0, 0, 0, 0x11])
        })
        .expect("applying the config");
        let maps = process_maps();
        drop(dp);
        maps
    };

    let mut loads: Vec<Vec<Dataplane>> = Vec::new();
    for &(vips, tables) in &CASES {
        let cfg = config(&example, vips, tables);
        let mut per_case = Vec::new();
        for _ in 0..LOADS {
            let mut dp = Dataplane::load().expect("loading the director (root needed)");
            dp.apply(&cfg, &|_| Some([0x02, 0, 0, 0, 0, 0x11]))
                .unwrap_or_else(|e| panic!("{vips} VIPs, {tables} tables: {e}"));
            dp.load_program(BENCH_FLOOR_PROGRAM).expect("floor program");
            per_case.push(dp);
        }
        loads.push(per_case);
    }
    let packets: Vec<Vec<u8>> = CASES
        .iter()
        .map(|&(vips, _)| {
            if vips == CIDR_VIPS {
                eth_ipv6_syn()
            } else {
                eth_ipv4_syn(vip(vips - 1))
            }
        })
        .collect();
    let mut out = vec![0u8; 2048];
    // Per case, load, program (floor, director): batch means.
    let mut samples = vec![vec![[Vec::new(), Vec::new()]; LOADS]; CASES.len()];
    for _ in 0..BATCHES {
        for (c, per_case) in loads.iter().enumerate() {
            for (l, dp) in per_case.iter().enumerate() {
                for (k, name) in [BENCH_FLOOR_PROGRAM, DIRECTOR_PROGRAM].iter().enumerate() {
                    let prog = director_xdp::xdp_program(dp.ebpf(), name).expect("program");
                    let (ns, verdict) = batch_mean(prog, &packets[c], &mut out, RUNS);
                    if k == 1 {
                        assert_eq!(verdict, 3, "{:?}: the director must encapsulate", CASES[c]);
                    }
                    samples[c][l][k].push(ns);
                }
            }
        }
    }

    println!("### Scale: VIPs and tables (`BPF_PROG_TEST_RUN`, detached)\n");
    println!(
        "The director's cost for an IPv4 TCP SYN to the last VIP of the last table, as the number \
         of VIPs (one bind each, TCP port 80, /32) and tables (copies of `examples/director.json`'s \
         table `web`, VIP k in table k mod tables) grows. Method of the director table above: {LOADS} \
         loads per case, the median of {BATCHES} batch means of {RUNS} runs per load, all cases \
         interleaved; the figure is the median over loads. The maps hold at most {MAX_BINDS} binds \
         and {MAX_TABLES} tables (`proto::maps::MAX_BINDS`, `MAX_TABLES`), so 256 VIPs and 16 \
         tables are the largest cases that load with one bind per VIP; the last row holds \
         {CIDR_VIPS} VIPs in one bind, an IPv6 /114 prefix (`{CIDR_PREFIX}/114`, looked up in \
         the LPM trie), and its packet is an IPv6 TCP SYN to the prefix's last address.\n"
    );
    println!(
        "| VIPs | tables | floor (`XDP_TX`) | director above floor | lowest to highest load |"
    );
    println!("|---:|---:|---:|---:|---:|");
    let mut tsv = String::from("vips\ttables\tfloor_ns\tdirector_above_ns\tlow\thigh\n");
    for (c, &(vips, tables)) in CASES.iter().enumerate() {
        let per_load: Vec<(f64, f64)> = samples[c]
            .iter()
            .map(|[f, d]| {
                let f = median(f.clone());
                (f, median(d.clone()) - f)
            })
            .collect();
        let floor = median(per_load.iter().map(|p| p.0).collect());
        let above = median(per_load.iter().map(|p| p.1).collect());
        let (lo, hi) = per_load
            .iter()
            .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), p| {
                (lo.min(p.1), hi.max(p.1))
            });
        if vips == CIDR_VIPS {
            println!(
                "| {vips} (one /114 bind, IPv6) | {tables} | {floor:.1} | {above:.1} | {lo:.1} to {hi:.1} |"
            );
            continue;
        }
        println!("| {vips} | {tables} | {floor:.1} | {above:.1} | {lo:.1} to {hi:.1} |");
        tsv.push_str(&format!(
            "{vips}\t{tables}\t{floor:.2}\t{above:.2}\t{lo:.2}\t{hi:.2}\n"
        ));
    }

    let per_table = u64::from(TABLE_SLOTS) * u64::from(TABLE_ROWS) * size_of::<TableRow>() as u64;
    let total: u64 = maps.iter().map(|m| m.memlock).sum();
    println!("\n### Map memory\n");
    println!(
        "The director object's maps as the kernel reports them (`/proc/self/fdinfo` of the map \
         descriptors: `memlock` is what the map charges, per-CPU maps once per possible CPU; \
         {cpus} CPUs here). Every map is allocated whole when the object loads, whatever the \
         config holds: {} MiB in all. A table takes {TABLE_SLOTS} slots of {TABLE_ROWS} rows of \
         {} bytes (`TableRow`), {} MiB, inside `DIR_TABLES`, which holds {MAX_TABLES} tables. \
         An array's keys are its indexes (not stored); the LPM trie allocates a node per \
         prefix as it is inserted, so its `memlock` grows with the CIDR binds.\n",
        mib(total),
        size_of::<TableRow>(),
        mib(per_table)
    );
    println!(
        "| map | type | key bytes | value bytes | entries | value x entries, MiB | memlock, MiB |"
    );
    println!("|---|---|---:|---:|---:|---:|---:|");
    let mut maps_tsv = String::from("map\tmemlock\n");
    for m in &maps {
        println!(
            "| `{}` | {} | {} | {} | {} | {} | {} |",
            m.name,
            type_name(m.map_type),
            m.key,
            m.value,
            m.entries,
            mib(m.value * m.entries),
            mib(m.memlock)
        );
        maps_tsv.push_str(&format!("{}\t{}\n", m.name, m.memlock));
    }
    if let Some(dir) = data {
        std::fs::write(dir.join("scale.tsv"), tsv).expect("writing scale.tsv");
        std::fs::write(dir.join("maps.tsv"), maps_tsv).expect("writing maps.tsv");
    }
}
