//! Golden packets: the XDP director run with `BPF_PROG_TEST_RUN` on every
//! case of `golden/cases.rs`, its verdict and output bytes compared with
//! what `proto::director::Model` (the reference written from
//! docs/director.md) says, its counters compared with the model's.
//!
//! Modelled on Katran's `lib/testing` fixtures (description, input, expected
//! output, expected verdict) and aya's `prog_test_run` integration tests.
//! Every failing case is reported, not only the first.
//!
//! `golden_packets` needs root (CAP_BPF + CAP_PERFMON + CAP_NET_ADMIN) and
//! fails without it: a skipped proof is no proof. It attaches nothing to any
//! interface.
//! The other tests check the cases themselves and need no privilege.
#![allow(clippy::unwrap_used)] // helpers of tests: a failure is the test failing

// A test target's root is like a `mod.rs`: its modules sit beside it
// unless told otherwise.
#[path = "golden/cases.rs"]
mod cases;
#[path = "golden/packet.rs"]
mod packet;

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::IpAddr;
use std::ops::Range;

use aya::programs::{TestRun as _, TestRunOptions};
use director_xdp::dataplane::Dataplane;
use proto::director::{Outcome, Verdict};
use proto::maps::DirectorStat;

use cases::{Case, Cfg, names};

/// `BPF_PROG_TEST_RUN` refuses XDP input shorter than an Ethernet header
/// (net/bpf/test_run.c), so such cases are checked against the model only.
const MIN_TEST_RUN_FRAME: usize = 14;

/// The director's counters at one moment, summed over CPUs.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct Counters {
    stats: [u64; DirectorStat::COUNT],
    /// Per bind id: (packets, bytes).
    binds: BTreeMap<u32, (u64, u64)>,
    /// Per (table, backend) encapsulated to as primary: (packets, bytes).
    backends: BTreeMap<(String, IpAddr), (u64, u64)>,
}

impl Counters {
    fn read(dp: &Dataplane) -> Counters {
        let stats = dp.stats().expect("reading the director's counters");
        let mut c = Counters::default();
        for stat in DirectorStat::ALL {
            c.stats[stat.index() as usize] = stats.get(stat);
        }
        for b in &stats.per_bind {
            c.binds.insert(b.bind, (b.packets, b.bytes));
        }
        for b in &stats.per_backend {
            c.backends
                .insert((b.table.clone(), b.addr), (b.packets, b.bytes));
        }
        c
    }

    /// What the model says one case adds.
    fn of(outcome: &Outcome) -> Counters {
        let mut c = Counters::default();
        for stat in &outcome.counted {
            c.stats[stat.index() as usize] += 1;
        }
        if let Some((bind, b)) = outcome.bind_counters {
            c.binds.insert(bind, (b.packets, b.bytes));
            // What the bind gains, the primary it was sent to gains.
            if let Some(d) = &outcome.decision {
                c.backends
                    .insert((d.table.clone(), d.primary), (b.packets, b.bytes));
            }
        }
        c
    }

    fn add(&mut self, other: &Counters) {
        for (a, b) in self.stats.iter_mut().zip(other.stats) {
            *a += b;
        }
        for (bind, (p, b)) in &other.binds {
            let e = self.binds.entry(*bind).or_default();
            e.0 += p;
            e.1 += b;
        }
        for (backend, (p, b)) in &other.backends {
            let e = self.backends.entry(backend.clone()).or_default();
            e.0 += p;
            e.1 += b;
        }
    }

    /// `self - before`, dropping binds that did not move.
    fn since(&self, before: &Counters) -> Counters {
        let mut d = Counters::default();
        for (i, v) in self.stats.iter().enumerate() {
            d.stats[i] = v.wrapping_sub(before.stats[i]);
        }
        for (bind, (p, b)) in &self.binds {
            let (p0, b0) = before.binds.get(bind).copied().unwrap_or_default();
            if (*p, *b) != (p0, b0) {
                d.binds
                    .insert(*bind, (p.wrapping_sub(p0), b.wrapping_sub(b0)));
            }
        }
        for (backend, (p, b)) in &self.backends {
            let (p0, b0) = before.backends.get(backend).copied().unwrap_or_default();
            if (*p, *b) != (p0, b0) {
                d.backends
                    .insert(backend.clone(), (p.wrapping_sub(p0), b.wrapping_sub(b0)));
            }
        }
        d
    }

    fn describe(&self) -> String {
        let stats: Vec<String> = DirectorStat::ALL
            .iter()
            .filter(|s| self.stats[s.index() as usize] != 0)
            .map(|s| format!("{}={}", s.name(), self.stats[s.index() as usize]))
            .collect();
        let binds: Vec<String> = self
            .binds
            .iter()
            .map(|(id, (p, b))| format!("bind{id}={p}p/{b}B"))
            .collect();
        let backends: Vec<String> = self
            .backends
            .iter()
            .map(|((t, a), (p, b))| format!("{t}/{a}={p}p/{b}B"))
            .collect();
        format!(
            "[{}] [{}] [{}]",
            stats.join(" "),
            binds.join(" "),
            backends.join(" ")
        )
    }
}

/// Runs the director once on `frame`: the `xdp_action` and the frame as
/// the program left it.
fn run(dp: &Dataplane, frame: &[u8]) -> Result<(u32, Vec<u8>), String> {
    // Room for the encapsulation headers and more, so that a program that
    // grew the frame too much shows it instead of failing with ENOSPC.
    let mut out = vec![0u8; frame.len() + 512];
    let result = dp
        .program()
        .test_run(TestRunOptions {
            data_in: Some(frame),
            data_out: Some(&mut out),
            ..Default::default()
        })
        .map_err(|e| format!("BPF_PROG_TEST_RUN failed: {e}"))?;
    out.truncate(result.data_size_out as usize);
    Ok((result.return_value, out))
}

/// The headers of a frame as (name, byte range), to point a diff at one.
fn layers(frame: &[u8], encapsulated: bool) -> Vec<(&'static str, Range<usize>)> {
    let mut v = Vec::new();
    let mut at = 14;
    if frame.len() < at {
        return vec![("truncated Ethernet", 0..frame.len())];
    }
    if frame[12..14] == [0x81, 0x00] {
        at += 4;
    }
    v.push(("Ethernet", 0..at.min(frame.len())));
    let ip_len = |at: usize| match frame.get(at).map(|b| b >> 4) {
        Some(4) => usize::from(frame[at] & 0x0f).max(5) * 4,
        Some(6) => 40,
        _ => 0,
    };
    let mut push = |name: &'static str, len: usize, at: &mut usize| {
        let end = (*at + len).min(frame.len());
        v.push((name, *at..end));
        *at = end;
    };
    if encapsulated {
        let outer = ip_len(at);
        push("outer IP", outer, &mut at);
        push("UDP", 8, &mut at);
        let hlen = frame.get(at).map_or(0, |b| usize::from(b & 0x1f));
        push("GUE", 4, &mut at);
        push("GLB private data", 4 * hlen, &mut at);
    }
    let inner = ip_len(at);
    push(if encapsulated { "inner IP" } else { "IP" }, inner, &mut at);
    push("rest", frame.len() - at, &mut at);
    v
}

fn hex(bytes: &[u8]) -> String {
    bytes
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(" ")
}

/// A diff of the first header where `got` and `want` differ.
fn diff(got: &[u8], want: &[u8], encapsulated: bool) -> String {
    let first = got
        .iter()
        .zip(want)
        .position(|(a, b)| a != b)
        .unwrap_or(got.len().min(want.len()));
    let mut s = format!(
        "    {} bytes, want {}; first difference at byte {first}",
        got.len(),
        want.len()
    );
    let layer = layers(want, encapsulated)
        .into_iter()
        .find(|(_, r)| r.contains(&first))
        .unwrap_or(("past the end", first..first + 16));
    let (name, r) = layer;
    // Long payloads: only the 32 bytes around the difference.
    let r = if r.len() > 48 {
        first.saturating_sub(16)..first + 16
    } else {
        r
    };
    let slice = |b: &[u8]| hex(&b[r.start.min(b.len())..r.end.min(b.len())]);
    let _ = write!(
        s,
        " (in {name}, bytes {}..{})\n      got:  {}\n      want: {}",
        r.start,
        r.end,
        slice(got),
        slice(want)
    );
    s
}

#[test]
fn golden_packets() {
    let cases = cases::all();
    let mut dp = Dataplane::load().expect("loading the director (needs root)");
    let mut applied = None;
    let mut failures = Vec::new();
    let mut skipped = Vec::new();
    let mut want_total = Counters::default();
    let mut got_total = Counters::default();
    for case in cases {
        if applied != Some(case.config) {
            let config = cases::config(case.config);
            dp.apply(&config, &cases::mac_of)
                .unwrap_or_else(|e| panic!("applying config {:?}: {e:?}", case.config));
            applied = Some(case.config);
        }
        if case.input.len() < MIN_TEST_RUN_FRAME {
            skipped.push(case.name.as_str());
            continue;
        }
        let before = Counters::read(&dp);
        let result = run(&dp, &case.input);
        let got_counters = Counters::read(&dp).since(&before);
        let want_counters = Counters::of(&case.outcome);
        want_total.add(&want_counters);
        got_total.add(&got_counters);

        let mut problems = Vec::new();
        match result {
            Err(e) => problems.push(format!("    {e}")),
            Ok((action, out)) => {
                let got = Verdict::from_xdp_action(action);
                if got != Some(case.verdict) {
                    problems.push(format!(
                        "    verdict {} ({got:?}), want {} ({:?})",
                        action,
                        case.verdict.xdp_action(),
                        case.verdict
                    ));
                }
                // A dropped frame never leaves: its bytes are not part of
                // the contract.
                if case.verdict != Verdict::Drop && out != case.output {
                    let encapsulated = case.outcome.counts(DirectorStat::Encapsulated);
                    problems.push(diff(&out, &case.output, encapsulated));
                }
            }
        }
        if got_counters != want_counters {
            problems.push(format!(
                "    counters {}, want {}",
                got_counters.describe(),
                want_counters.describe()
            ));
        }
        if !problems.is_empty() {
            failures.push(format!(
                "{} (config {:?}):\n{}",
                case.name,
                case.config,
                problems.join("\n")
            ));
        }
    }
    let run = cases.len() - skipped.len();
    eprintln!(
        "golden: {run} cases run, {} failed; model-only (shorter than {MIN_TEST_RUN_FRAME} bytes): {skipped:?}",
        failures.len()
    );
    eprintln!(
        "golden: counters over all cases: got {}, want {}",
        got_total.describe(),
        want_total.describe()
    );
    assert!(
        failures.is_empty(),
        "{} of {run} golden cases failed:\n\n{}",
        failures.len(),
        failures.join("\n\n")
    );
    assert_eq!(got_total, want_total, "counters summed over all cases");
}

fn find(cases: &'static [Case], name: &str) -> &'static Case {
    cases
        .iter()
        .find(|c| c.name == name)
        .unwrap_or_else(|| panic!("no case {name}"))
}

fn decision(cases: &'static [Case], name: &str) -> proto::director::Decision {
    find(cases, name)
        .outcome
        .decision
        .clone()
        .unwrap_or_else(|| panic!("case {name} reads no row"))
}

#[test]
fn there_are_enough_cases_and_every_counter_is_exercised() {
    let cases = cases::all();
    assert!(cases.len() >= 45, "{} cases", cases.len());
    for stat in DirectorStat::ALL {
        assert!(
            cases.iter().any(|c| c.outcome.counts(stat)),
            "no case counts {}",
            stat.name()
        );
    }
    for verdict in [Verdict::Pass, Verdict::Drop, Verdict::Tx] {
        assert!(cases.iter().any(|c| c.verdict == verdict));
    }
    // Every config is used, and its cases run together.
    let mut order: Vec<Cfg> = cases.iter().map(|c| c.config).collect();
    order.dedup();
    assert_eq!(
        order,
        [
            Cfg::Main,
            Cfg::Swapped,
            Cfg::PortHash,
            Cfg::NoFallback,
            Cfg::PathMtu,
            Cfg::LongChains,
            Cfg::ShortChains,
            Cfg::Ipip
        ]
    );
}

#[test]
fn icmp_errors_land_on_the_backend_of_the_flow_they_quote() {
    let cases = cases::all();
    for (flow, error) in [
        (names::V4_TCP, names::FRAG_NEEDED),
        (names::V6_TCP_V6, names::TOO_BIG),
        (names::PH_FLOW, names::PH_FRAG_NEEDED),
        (names::PH_V6_FLOW, names::PH_TOO_BIG),
    ] {
        let (f, e) = (decision(cases, flow), decision(cases, error));
        assert_eq!(e.flow, f.flow, "{error} hashes the flow of {flow}");
        assert_eq!(
            (e.table.as_str(), e.hash, e.primary, &e.alternates),
            (f.table.as_str(), f.hash, f.primary, &f.alternates),
            "{error} lands where {flow} does"
        );
        // Same destination MAC and same GUE source port.
        let (fo, eo) = (&find(cases, flow).output, &find(cases, error).output);
        let udp = if f.primary.is_ipv4() { 34 } else { 54 };
        assert_eq!(fo[..6], eo[..6], "{error}");
        assert_eq!(fo[udp..udp + 2], eo[udp..udp + 2], "{error}");
    }
    // With ports hashed the match is not a coincidence of the source address.
    let ph = decision(cases, names::PH_FLOW);
    assert_ne!(ph.flow.src_port, 0);
    assert_eq!(ph.hash_fields, 0b1111);
}

#[test]
fn fragments_of_a_datagram_share_a_backend_and_hash_addresses_only() {
    let cases = cases::all();
    let groups: [&[&str]; 4] = [
        &[
            "ipv4_first_fragment",
            "ipv4_middle_fragment",
            "ipv4_last_fragment",
        ],
        &["ipv6_first_fragment", "ipv6_last_fragment"],
        &[
            "port_hash_ipv4_first_fragment_hashes_addresses_only",
            "port_hash_ipv4_last_fragment_hashes_addresses_only",
        ],
        &[
            "port_hash_ipv6_first_fragment_hashes_addresses_only",
            "port_hash_ipv6_last_fragment_hashes_addresses_only",
        ],
    ];
    for group in groups {
        let first = decision(cases, group[0]);
        for name in group {
            let d = decision(cases, name);
            assert!(find(cases, name).outcome.counts(DirectorStat::Fragment));
            assert_eq!((d.flow.src_port, d.flow.dst_port), (0, 0), "{name}");
            assert_eq!(
                (d.hash, d.primary, &d.alternates),
                (first.hash, first.primary, &first.alternates),
                "{name}"
            );
        }
    }
    // Hashed with every field configured, a fragment still hashes only the
    // addresses: SipHash(key, src || dst).
    let d = decision(cases, "port_hash_ipv4_first_fragment_hashes_addresses_only");
    assert_eq!(d.hash_fields, 0b0011);
    let key = cases::config(Cfg::PortHash).table("web4").unwrap().hash_key;
    let msg = [192, 0, 2, 100, 203, 0, 113, 10];
    assert_eq!(d.hash, proto::siphash::siphash24(&key, &msg));
    assert!(
        !find(cases, "ipv6_atomic_fragment_is_not_a_fragment")
            .outcome
            .counts(DirectorStat::Fragment)
    );
}

#[test]
fn table_swap_sends_the_same_packet_to_the_new_primary() {
    let cases = cases::all();
    let (before, after) = (
        find(cases, names::SWAP_BEFORE),
        find(cases, names::SWAP_AFTER),
    );
    assert_eq!(before.input, after.input);
    let (b, a) = (
        decision(cases, names::SWAP_BEFORE),
        decision(cases, names::SWAP_AFTER),
    );
    assert_eq!(b.row, a.row, "same key, same row");
    assert_ne!(b.primary, a.primary, "the drained primary is replaced");
    assert_ne!(before.output, after.output);
}

#[test]
fn binds_follow_the_longest_match_and_the_lowest_port() {
    let cases = cases::all();
    let bind = |name: &str| find(cases, name).outcome.bind;
    assert_eq!(bind("exact_vip_inside_a_cidr_of_another_table"), Some(11));
    assert_eq!(
        bind("cidr_range_still_applies_to_an_exact_vip_inside_it"),
        Some(5)
    );
    assert_eq!(
        bind("icmp_echo_request_to_udp_only_vip_goes_to_the_lowest_udp_bind"),
        Some(11)
    );
    assert_eq!(
        bind("icmp_echo_request_goes_to_the_lowest_tcp_bind"),
        Some(0)
    );
    assert_eq!(bind("port_range_first_port"), Some(2));
    assert_eq!(bind("port_range_last_port"), Some(2));
    assert_eq!(bind("ipv6_cidr_vip"), Some(10));
    assert_eq!(bind("ipv4_middle_fragment"), Some(1));
    assert_eq!(bind("ipv4_tcp_fragment_to_ipv6_backends"), Some(8));
}

#[test]
fn macs_vlan_tags_and_hops_are_as_configured() {
    let cases = cases::all();
    let gateway = [0x02, 0x00, 0x5e, 0x00, 0x53, 0x01];
    for name in [
        "ipv4_backend_with_resolved_mac_gets_its_mac",
        "ipv6_backend_with_resolved_mac_gets_its_mac",
    ] {
        let d = decision(cases, name);
        assert_eq!(
            find(cases, name).output[..6],
            cases::mac_of(d.primary).unwrap()
        );
    }
    for name in [
        "ipv4_backend_without_mac_goes_to_the_gateway",
        "ipv6_backend_without_mac_goes_to_the_gateway",
    ] {
        assert_eq!(find(cases, name).output[..6], gateway, "{name}");
        assert!(find(cases, name).outcome.counts(DirectorStat::MacFallback));
    }
    for name in [
        "vlan_tagged_ipv4_tcp_keeps_its_tag",
        "vlan_tagged_ipv6_tcp_keeps_its_tag",
    ] {
        let c = find(cases, name);
        assert_eq!(c.output[12..16], c.input[12..16], "{name}");
    }
    let d = decision(cases, "draining_backend_is_the_first_alternate");
    assert_eq!(d.alternates[0].to_string(), "198.51.100.14");
}

/// The one-backend table makes every encapsulation byte predictable: the
/// model's output, checked by hand.
#[test]
fn one_backend_case_matches_hand_checked_bytes() {
    let cases = cases::all();
    let c = find(cases, "one_backend_table_hops_to_its_primary");
    #[rustfmt::skip]
    let headers: [u8; 62] = [
        // Ethernet: to 198.51.100.99's MAC, from the director, IPv4
        0x02, 0x00, 0x00, 0x00, 0x01, 0x99,  0x02, 0x00, 0x00, 0x00, 0x00, 0x0a,  0x08, 0x00,
        // outer IPv4: total 20+8+20+40 = 88, DF, TTL 64, UDP, checksum 0x4dfd
        0x45, 0x00, 0x00, 0x58,  0x00, 0x00, 0x40, 0x00,  0x40, 0x11, 0x4d, 0xfd,
        192, 0, 2, 1,  198, 51, 100, 99,
        // UDP: 0x8000 | ((0x44a2 ^ 40005) & 0x7fff) = 0xd8e7 -> 19523, length 68, checksum 0;
        // 0x44a2 = SipHash-2-4(000102..0f, 192.0.2.100) & 0xffff
        0xd8, 0xe7, 0x4c, 0x43,  0x00, 0x44, 0x00, 0x00,
        // GUE: hlen 4, IPv4, flags 0 | GLB: IPv4 hops, next 0, 3 hops: the
        // table's one backend, the chain padded with it
        0x04, 0x04, 0x00, 0x00,  0x00, 0x00, 0x00, 0x03,
        198, 51, 100, 99,  198, 51, 100, 99,  198, 51, 100, 99,
    ];
    assert_eq!(c.output[..62], headers);
    assert_eq!(c.output[62..], c.input[14..]);
    assert_eq!(c.input.len(), 14 + 40);
}

#[test]
fn layers_point_at_the_right_header() {
    let cases = cases::all();
    let c = find(cases, names::V4_TCP);
    let mut got = c.output.clone();
    got[14 + 20 + 1] ^= 1; // UDP source port
    let d = diff(&got, &c.output, true);
    assert!(d.contains("in UDP"), "{d}");
}

/// The ICMP error of case `name`, read back from the bytes the model says
/// come out (and the kernel must send): checked field by field against
/// the RFCs, independently of how the model builds it.
fn check_answer(name: &str, advertised: u32) {
    let c = find(cases::all(), name);
    assert_eq!(c.verdict, Verdict::Tx, "{name}");
    assert_eq!(c.outcome.counted, [DirectorStat::TooBigIcmp], "{name}");
    assert!(
        c.outcome.bind_counters.is_none(),
        "{name}: not encapsulated"
    );
    let (input, out) = (&c.input, &c.output);
    // Back where it came from, in its VLAN.
    assert_eq!(out[..6], input[6..12], "{name}: to the sender's MAC");
    assert_eq!(
        out[6..12],
        input[..6],
        "{name}: from the MAC it was sent to"
    );
    let l3 = if input[12..14] == [0x81, 0x00] {
        18
    } else {
        14
    };
    assert_eq!(out[12..l3], input[12..l3], "{name}: tag and EtherType kept");
    let (ip, original) = (&out[l3..], &input[l3..]);
    let sum = |bytes: &[u8]| proto::director::ipv4_checksum(bytes);
    match ip[0] >> 4 {
        4 => {
            // 576 bytes (RFC 1812 4.3.2.3), from the VIP to the client.
            assert_eq!(ip.len(), 576, "{name}");
            assert_eq!(u16::from_be_bytes([ip[2], ip[3]]), 576);
            assert_eq!(ip[..2], [0x45, 0xc0], "{name}: precedence 6");
            assert_eq!((ip[8], ip[9]), (64, 1), "{name}: TTL 64, ICMP");
            assert_eq!(sum(&ip[..20]), 0, "{name}: IPv4 header checksum");
            assert_eq!(ip[12..16], original[16..20], "{name}: from the VIP");
            assert_eq!(ip[16..20], original[12..16], "{name}: to the client");
            let icmp = &ip[20..];
            assert_eq!(icmp[..2], [3, 4], "{name}: frag-needed");
            assert_eq!(sum(icmp), 0, "{name}: ICMP checksum");
            assert_eq!(icmp[4..6], [0, 0]);
            assert_eq!(
                u32::from(u16::from_be_bytes([icmp[6], icmp[7]])),
                advertised
            );
            assert_eq!(icmp[8..], original[..548], "{name}: the quote");
        }
        6 => {
            // 1280 bytes (RFC 4443 2.4(c)).
            assert_eq!(ip.len(), 1280, "{name}");
            assert_eq!(ip[..4], [0x60, 0, 0, 0], "{name}");
            assert_eq!(u16::from_be_bytes([ip[4], ip[5]]), 1240);
            assert_eq!((ip[6], ip[7]), (58, 64), "{name}: ICMPv6, hop limit 64");
            assert_eq!(ip[8..24], original[24..40], "{name}: from the VIP");
            assert_eq!(ip[24..40], original[8..24], "{name}: to the client");
            let icmp = &ip[40..];
            assert_eq!(icmp[..2], [2, 0], "{name}: packet too big");
            let mut pseudo = ip[8..40].to_vec();
            pseudo.extend_from_slice(&1240u32.to_be_bytes());
            pseudo.extend_from_slice(&[0, 0, 0, 58]);
            pseudo.extend_from_slice(icmp);
            assert_eq!(sum(&pseudo), 0, "{name}: ICMPv6 checksum");
            assert_eq!(
                u32::from_be_bytes([icmp[4], icmp[5], icmp[6], icmp[7]]),
                advertised
            );
            assert_eq!(icmp[8..], original[..1232], "{name}: the quote");
        }
        v => panic!("{name}: IP version {v}"),
    }
}

#[test]
fn a_packet_a_byte_over_the_limit_is_answered_and_one_at_it_is_encapsulated() {
    let cases = cases::all();
    for (at, over, limit) in names::AT_AND_OVER {
        let c = find(cases, at);
        let l3 = 14;
        assert_eq!(c.input.len() - l3, limit as usize, "{at}");
        assert!(c.outcome.counts(DirectorStat::Encapsulated), "{at}");
        // Outer header, UDP, GUE and the GLB fixed part, then the hops.
        let d = decision(cases, at);
        let hops = d.alternates.len() as u32;
        let overhead = if d.primary.is_ipv4() {
            36 + 4 * hops
        } else {
            56 + 16 * hops
        };
        assert_eq!(c.output.len() - l3, 1500, "{at}: exactly the path MTU");
        assert_eq!(limit + overhead, 1500, "{at}: {hops} hops");
        assert_eq!(find(cases, over).input.len() - l3, limit as usize + 1);
        check_answer(over, limit);
        // Same flow, same row: the answer is about the flow's own path.
        assert_eq!(decision(cases, over).primary, decision(cases, at).primary);
    }
    for (name, advertised) in names::ANSWERED {
        check_answer(name, advertised);
    }
}

#[test]
fn ipip_limits_are_the_path_mtu_less_the_outer_header() {
    let cases = cases::all();
    for (at, over, limit) in names::IPIP_AT_AND_OVER {
        let c = find(cases, at);
        let d = decision(cases, at);
        let outer = if d.primary.is_ipv4() { 20 } else { 40 };
        assert_eq!(c.input.len() - 14, limit as usize, "{at}");
        assert_eq!(c.output.len() - 14, 1500, "{at}: exactly the path MTU");
        assert_eq!(limit + outer, 1500, "{at}");
        check_answer(over, limit);
    }
}

/// Every IP-in-IP case's output checked by hand, not by the model: the
/// received L2 header (the tag kept, MACs and EtherType rewritten), one
/// outer header by the primary's family, then the received IP packet
/// byte for byte.
#[test]
fn ipip_output_is_one_outer_header_then_the_packet_unchanged() {
    let cases = cases::all();
    let mut seen = [0; 4];
    for c in cases.iter().filter(|c| {
        c.config == Cfg::Ipip
            && c.verdict == Verdict::Tx
            && c.outcome.counts(DirectorStat::Encapsulated)
            && c.name != names::IPIP_GUE_TABLE
    }) {
        let name = &c.name;
        let d = c.outcome.decision.as_ref().unwrap();
        assert_eq!(d.encap, proto::Encap::Ipip, "{name}");
        assert!(d.alternates.is_empty(), "{name}: no hop list");
        let l2 = if c.input[12..14] == [0x81, 0x00] {
            18
        } else {
            14
        };
        let (inner, out) = (&c.input[l2..], &c.output);
        assert_eq!(out[6..12], c.input[..6], "{name}: source MAC");
        assert_eq!(out[12..l2 - 2], c.input[12..l2 - 2], "{name}: tag kept");
        let inner_v6 = inner[0] >> 4 == 6;
        let protocol = if inner_v6 { 41 } else { 4 };
        let ip = &out[l2..];
        match d.primary {
            IpAddr::V4(primary) => {
                assert_eq!(out[l2 - 2..l2], [0x08, 0x00], "{name}");
                assert_eq!(ip[..2], [0x45, 0], "{name}");
                let total = u16::from_be_bytes([ip[2], ip[3]]) as usize;
                assert_eq!(total, 20 + inner.len(), "{name}");
                assert_eq!(ip[4..10], [0, 0, 0x40, 0, 64, protocol], "{name}");
                assert_eq!(ip[12..16], [192, 0, 2, 1], "{name}: source_v4");
                assert_eq!(ip[16..20], primary.octets(), "{name}");
                assert_eq!(cases::ones_complement_sum(&ip[..20]), 0xffff, "{name}");
                assert_eq!(&ip[20..], inner, "{name}");
                seen[usize::from(inner_v6)] += 1;
            }
            IpAddr::V6(primary) => {
                assert_eq!(out[l2 - 2..l2], [0x86, 0xdd], "{name}");
                assert_eq!(ip[..4], [0x60, 0, 0, 0], "{name}");
                let payload = u16::from_be_bytes([ip[4], ip[5]]) as usize;
                assert_eq!(payload, inner.len(), "{name}");
                assert_eq!((ip[6], ip[7]), (protocol, 64), "{name}");
                let src: IpAddr = "2001:db8::1".parse().unwrap();
                assert_eq!(IpAddr::from(<[u8; 16]>::try_from(&ip[8..24]).unwrap()), src);
                assert_eq!(ip[24..40], primary.octets(), "{name}");
                assert_eq!(&ip[40..], inner, "{name}");
                seen[2 + usize::from(inner_v6)] += 1;
            }
        }
    }
    // Every pair of inner and outer families.
    assert!(seen.iter().all(|&n| n > 0), "{seen:?}");
    // The GUE table of the same config is still GUE.
    let gue = find(cases, names::IPIP_GUE_TABLE);
    assert_eq!(
        gue.outcome.decision.as_ref().unwrap().encap,
        proto::Encap::Gue
    );
    assert_eq!(gue.output[14 + 9], 17, "UDP");
}

#[test]
fn too_big_packets_that_get_no_answer_are_dropped_and_counted() {
    let cases = cases::all();
    let dropped: Vec<&Case> = cases
        .iter()
        .filter(|c| c.outcome.counts(DirectorStat::TooBigDropped))
        .collect();
    assert_eq!(dropped.len(), 7);
    for c in dropped {
        assert_eq!(c.verdict, Verdict::Drop, "{}", c.name);
        assert_eq!(
            c.outcome.counted,
            [DirectorStat::TooBigDropped],
            "{}",
            c.name
        );
        assert!(c.outcome.bind_counters.is_none(), "{}", c.name);
        assert!(c.outcome.decision.is_some(), "{}: after the row", c.name);
    }
    // Without a path MTU (every other config) nothing is too big: the
    // 1500-byte first fragment goes to its backend there.
    assert_eq!(find(cases, "ipv4_first_fragment").verdict, Verdict::Tx);
}
