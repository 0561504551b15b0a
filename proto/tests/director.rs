//! The director's reference model against hand-checked frames and against
//! the properties docs/director.md promises.
//!
//! The constants of the two hand-checked frames (hashes, GUE source ports,
//! IPv4 checksums) were computed with a separate SipHash-2-4 and RFC 1071
//! implementation written from the papers, not with this crate; the tests
//! recompute the hashes with `proto::siphash` as a cross-check.
#![allow(clippy::unwrap_used)] // helpers of tests: a failure is the test failing

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use proto::config::Config;
use proto::director::{Model, Outcome, Verdict, ipv4_checksum, xdp_action};
use proto::maps::DirectorStat;
use proto::siphash::siphash24;
use proto::wire::{GuePacket, GueRepr, InnerProto};

/// One-backend tables, so that the chain is known without hashing (the
/// backend, repeated): "v4" serves 203.0.113.10:80/tcp from 198.51.100.11
/// (MAC known), "v6" serves [2001:db8:10::20]:53/udp from 2001:db8:20::1
/// (MAC unknown: the gateway's is used). One hop each: GLB's wire output.
const SOLO: &str = r#"{
  "tables": [
    { "name": "v4", "hash_key": "000102030405060708090a0b0c0d0e0f",
      "seed": "49a3d861d661ae5ab06ed9326871a2f5", "hops": 1,
      "binds": [ { "ip": "203.0.113.10", "proto": "tcp", "port": 80 } ],
      "backends": [ { "ip": "198.51.100.11" } ] },
    { "name": "v6", "hash_key": "0f0e0d0c0b0a09080706050403020100",
      "seed": "d1c3e5a79b2f4608a1b3c5d7e9f20416", "hops": 1,
      "binds": [ { "ip": "2001:db8:10::20", "proto": "udp", "port": 53 } ],
      "backends": [ { "ip": "2001:db8:20::1" } ] }
  ],
  "director": { "source_v4": "192.0.2.1", "source_v6": "2001:db8::1",
                "gateway_mac": "02:00:5e:00:53:01" }
}"#;

const BACKEND_MAC: [u8; 6] = [0x02, 0, 0, 0, 0x01, 0x11];

fn solo_macs(ip: IpAddr) -> Option<[u8; 6]> {
    (ip == IpAddr::V4(Ipv4Addr::new(198, 51, 100, 11))).then_some(BACKEND_MAC)
}

fn solo() -> Model {
    Model::new(&Config::from_json(SOLO).unwrap(), &solo_macs).unwrap()
}

#[rustfmt::skip]
const V4_TCP_SYN: [u8; 54] = [
    // Ethernet: to the director 02:00:00:00:00:0a, from the router 02:00:00:00:00:01, IPv4
    0x02, 0x00, 0x00, 0x00, 0x00, 0x0a,  0x02, 0x00, 0x00, 0x00, 0x00, 0x01,  0x08, 0x00,
    // IPv4: 45 00 | total 40 | id 1 | DF | TTL 64, TCP | checksum 0x3c60 | 192.0.2.100 -> 203.0.113.10
    0x45, 0x00, 0x00, 0x28,  0x00, 0x01, 0x40, 0x00,  0x40, 0x06, 0x3c, 0x60,
    192, 0, 2, 100,  203, 0, 113, 10,
    // TCP: 40000 -> 80, seq 1, ack 0, doff 5, SYN, window 65535, checksum (not checked), urg 0
    0x9c, 0x40, 0x00, 0x50,  0x00, 0x00, 0x00, 0x01,  0x00, 0x00, 0x00, 0x00,
    0x50, 0x02, 0xff, 0xff,  0x12, 0x34, 0x00, 0x00,
];

/// hash = SipHash-2-4(000102..0f, c0 00 02 64) = 0x840f2d063a4344a2;
/// GUE source port = 0x8000 | ((0x44a2 ^ 40000) & 0x7fff) = 0xd8e2.
#[rustfmt::skip]
const V4_TCP_SYN_OUT: [u8; 94] = [
    // Ethernet: to the backend's MAC, from the director (the frame's destination), IPv4
    0x02, 0x00, 0x00, 0x00, 0x01, 0x11,  0x02, 0x00, 0x00, 0x00, 0x00, 0x0a,  0x08, 0x00,
    // outer IPv4: 45 00 | total 20+8+4+8+40 = 80 | id 0 | DF | TTL 64, UDP | checksum 0x4e5d
    0x45, 0x00, 0x00, 0x50,  0x00, 0x00, 0x40, 0x00,  0x40, 0x11, 0x4e, 0x5d,
    // 192.0.2.1 (source_v4) -> 198.51.100.11 (primary)
    192, 0, 2, 1,  198, 51, 100, 11,
    // UDP: 0xd8e2 -> 19523 | length 8+4+8+40 = 60 | checksum 0
    0xd8, 0xe2, 0x4c, 0x43,  0x00, 0x3c, 0x00, 0x00,
    // GUE: hlen 2, inner IPv4, flags 0
    0x02, 0x04, 0x00, 0x00,
    // GLB: private type 0 (IPv4 hops), next hop 0, hop count 1, hop 198.51.100.11
    0x00, 0x00, 0x00, 0x01,  198, 51, 100, 11,
    // the original IPv4 packet
    0x45, 0x00, 0x00, 0x28,  0x00, 0x01, 0x40, 0x00,  0x40, 0x06, 0x3c, 0x60,
    192, 0, 2, 100,  203, 0, 113, 10,
    0x9c, 0x40, 0x00, 0x50,  0x00, 0x00, 0x00, 0x01,  0x00, 0x00, 0x00, 0x00,
    0x50, 0x02, 0xff, 0xff,  0x12, 0x34, 0x00, 0x00,
];

#[rustfmt::skip]
const V6_UDP_QUERY: [u8; 66] = [
    // Ethernet: to the director, from the router, IPv6
    0x02, 0x00, 0x00, 0x00, 0x00, 0x0a,  0x02, 0x00, 0x00, 0x00, 0x00, 0x01,  0x86, 0xdd,
    // IPv6: version 6, flow 0 | payload 12 | UDP, hop limit 64
    0x60, 0x00, 0x00, 0x00,  0x00, 0x0c, 0x11, 0x40,
    // 2001:db8:1::100
    0x20, 0x01, 0x0d, 0xb8, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01, 0x00,
    // 2001:db8:10::20
    0x20, 0x01, 0x0d, 0xb8, 0x00, 0x10, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x20,
    // UDP: 5353 -> 53 | length 12 | checksum (not checked) | "abcd"
    0x14, 0xe9, 0x00, 0x35,  0x00, 0x0c, 0xbe, 0xef,  b'a', b'b', b'c', b'd',
];

/// hash = SipHash-2-4(0f0e..00, 2001:db8:1::100) = 0x55eb1229ba13dd3e;
/// GUE source port = 0x8000 | ((0xdd3e ^ 5353) & 0x7fff) = 0xc9d7.
#[rustfmt::skip]
const V6_UDP_QUERY_OUT: [u8; 138] = [
    // Ethernet: to the gateway (the backend's MAC is unknown), from the director, IPv6
    0x02, 0x00, 0x5e, 0x00, 0x53, 0x01,  0x02, 0x00, 0x00, 0x00, 0x00, 0x0a,  0x86, 0xdd,
    // outer IPv6: version 6 | payload 8+4+20+52 = 84 | UDP, hop limit 64
    0x60, 0x00, 0x00, 0x00,  0x00, 0x54, 0x11, 0x40,
    // 2001:db8::1 (source_v6)
    0x20, 0x01, 0x0d, 0xb8, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01,
    // 2001:db8:20::1 (primary)
    0x20, 0x01, 0x0d, 0xb8, 0x00, 0x20, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01,
    // UDP: 0xc9d7 -> 19523 | length 84 | checksum 0
    0xc9, 0xd7, 0x4c, 0x43,  0x00, 0x54, 0x00, 0x00,
    // GUE: hlen 5, inner IPv6 (41), flags 0
    0x05, 0x29, 0x00, 0x00,
    // GLB: private type 1 (IPv6 hops), next hop 0, hop count 1, hop 2001:db8:20::1
    0x00, 0x01, 0x00, 0x01,
    0x20, 0x01, 0x0d, 0xb8, 0x00, 0x20, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01,
    // the original IPv6 packet
    0x60, 0x00, 0x00, 0x00,  0x00, 0x0c, 0x11, 0x40,
    0x20, 0x01, 0x0d, 0xb8, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01, 0x00,
    0x20, 0x01, 0x0d, 0xb8, 0x00, 0x10, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x20,
    0x14, 0xe9, 0x00, 0x35,  0x00, 0x0c, 0xbe, 0xef,  b'a', b'b', b'c', b'd',
];

/// A hex dump of the first 16-byte line where two frames differ.
fn first_difference(got: &[u8], want: &[u8]) -> String {
    let at = got
        .iter()
        .zip(want)
        .position(|(a, b)| a != b)
        .unwrap_or(got.len().min(want.len()));
    let line = at / 16 * 16;
    let hex = |b: &[u8]| {
        b.iter()
            .skip(line)
            .take(16)
            .map(|x| format!("{x:02x}"))
            .collect::<Vec<_>>()
            .join(" ")
    };
    format!(
        "lengths {} vs {}; first difference at byte {at}\n got  @{line:3}: {}\n want @{line:3}: {}",
        got.len(),
        want.len(),
        hex(got),
        hex(want)
    )
}

fn assert_frame(got: &[u8], want: &[u8]) {
    assert!(got == want, "{}", first_difference(got, want));
}

#[test]
fn hand_checked_constants_agree_with_the_crate() {
    // The test frames' own checksums are valid.
    assert_eq!(ipv4_checksum(&V4_TCP_SYN[14..34]), 0);
    assert_eq!(ipv4_checksum(&V4_TCP_SYN_OUT[14..34]), 0);
    // The hashes written in the comments above.
    let h4 = siphash24(
        &[0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15],
        &[192, 0, 2, 100],
    );
    assert_eq!(h4, 0x840f_2d06_3a43_44a2);
    let key6: [u8; 16] = core::array::from_fn(|i| 15 - i as u8);
    let client = "2001:db8:1::100".parse::<Ipv6Addr>().unwrap().octets();
    assert_eq!(siphash24(&key6, &client), 0x55eb_1229_ba13_dd3e);
}

#[test]
fn ipv4_checksum_matches_rfc_1071() {
    // A well-known header (192.168.0.1 -> 192.168.0.199, UDP) whose checksum is 0xb861.
    let mut h = [
        0x45, 0x00, 0x00, 0x73, 0x00, 0x00, 0x40, 0x00, 0x40, 0x11, 0x00, 0x00, 0xc0, 0xa8, 0x00,
        0x01, 0xc0, 0xa8, 0x00, 0xc7,
    ];
    assert_eq!(ipv4_checksum(&h), 0xb861);
    h[10..12].copy_from_slice(&0xb861u16.to_be_bytes());
    assert_eq!(ipv4_checksum(&h), 0);
    // An odd length is padded with a zero byte.
    assert_eq!(ipv4_checksum(&[0x01]), !0x0100);
    assert_eq!(ipv4_checksum(&[]), 0xffff);
}

#[test]
fn ipv4_tcp_to_an_ipv4_backend_is_encapsulated_byte_for_byte() {
    let out = solo().process(&V4_TCP_SYN);
    assert_eq!(out.verdict, Verdict::Tx);
    assert_frame(&out.output, &V4_TCP_SYN_OUT);
    assert_eq!(out.counted, [DirectorStat::Encapsulated]);
    assert_eq!(out.bind, Some(0));
    let (bind, counters) = out.bind_counters.unwrap();
    assert_eq!((bind, counters.packets, counters.bytes), (0, 1, 54));
    let d = out.decision.unwrap();
    assert_eq!(d.table, "v4");
    assert_eq!((d.hash, d.row), (0x840f_2d06_3a43_44a2, 0x44a2));
    let backend = IpAddr::V4(Ipv4Addr::new(198, 51, 100, 11));
    assert_eq!((d.primary, d.alternates), (backend, vec![backend]));
}

#[test]
fn ipv6_udp_to_an_ipv6_backend_is_encapsulated_byte_for_byte() {
    let out = solo().process(&V6_UDP_QUERY);
    assert_eq!(out.verdict, Verdict::Tx);
    assert_frame(&out.output, &V6_UDP_QUERY_OUT);
    assert_eq!(
        out.counted,
        [DirectorStat::Encapsulated, DirectorStat::MacFallback]
    );
    assert_eq!(out.bind, Some(1), "bind ids run across tables");
    let d = out.decision.unwrap();
    assert_eq!((d.table.as_str(), d.row), ("v6", 0xdd3e));
    assert_eq!(d.flow.src_port, 5353);
}

#[test]
fn verdicts_map_to_xdp_actions() {
    for v in [Verdict::Pass, Verdict::Drop, Verdict::Tx] {
        assert_eq!(Verdict::from_xdp_action(v.xdp_action()), Some(v));
    }
    assert_eq!(Verdict::Tx.xdp_action(), xdp_action::TX);
    assert_eq!(Verdict::from_xdp_action(xdp_action::ABORTED), None);
}

#[test]
fn frames_not_for_a_bind_pass_unchanged_and_count_not_vip() {
    let model = solo();
    let mut other_dst = V4_TCP_SYN;
    other_dst[33] = 11; // 203.0.113.11: not a VIP
    let mut other_port = V4_TCP_SYN;
    other_port[37] = 81;
    let mut arp = V4_TCP_SYN;
    arp[12..14].copy_from_slice(&[0x08, 0x06]);
    let frames: [&[u8]; 5] = [
        &other_dst,
        &other_port,
        &arp,
        &V4_TCP_SYN[..13],
        &V4_TCP_SYN[..14 + 19],
    ];
    for frame in frames {
        let out = model.process(frame);
        assert_eq!(out.verdict, Verdict::Pass, "{frame:02x?}");
        assert_eq!(out.output, frame);
        assert_eq!(out.counted, [DirectorStat::NotVip]);
        assert_eq!((out.bind, out.decision), (None, None));
    }
}

#[test]
fn malformed_packets_for_a_vip_are_dropped() {
    let model = solo();
    let mut bad_ihl = V4_TCP_SYN;
    bad_ihl[14] = 0x44;
    let mut long_total = V4_TCP_SYN;
    long_total[17] = 41;
    let short_tcp = &V4_TCP_SYN[..53];
    for frame in [&bad_ihl[..], &long_total[..], short_tcp] {
        let out = model.process(frame);
        assert_eq!(out.verdict, Verdict::Drop);
        assert_eq!(out.counted, [DirectorStat::Malformed]);
    }
}

#[test]
fn a_backend_without_any_mac_is_an_encap_failure() {
    let config = Config::from_json(&SOLO.replace(
        r#""gateway_mac": "02:00:5e:00:53:01""#,
        r#""api_listen": "127.0.0.1:9610""#,
    ))
    .unwrap();
    let model = Model::new(&config, &solo_macs).unwrap();
    assert_eq!(model.process(&V4_TCP_SYN).verdict, Verdict::Tx);
    let out = model.process(&V6_UDP_QUERY);
    assert_eq!(out.verdict, Verdict::Drop);
    assert_eq!(out.counted, [DirectorStat::EncapFailure]);
    assert_eq!(out.bind, Some(1));
    assert!(out.bind_counters.is_none());
    assert!(out.decision.is_some(), "the row was read before the MAC");
}

// ---- properties over many flows of a multi-backend table ----

/// Four backends per table, every hash field: ports matter, so a frag-needed
/// that lands on its flow's backend proves the quote was swapped.
const WIDE: &str = r#"{
  "tables": [
    { "name": "v4", "hash_key": "8a7b6c5d4e3f20110213243546576879",
      "seed": "0123456789abcdeffedcba9876543210",
      "binds": [ { "ip": "203.0.113.0/28", "proto": "tcp", "port_start": 80, "port_end": 90 },
                 { "ip": "2001:db8:10::10", "proto": "tcp", "port": 443 },
                 { "ip": "203.0.113.10", "proto": "udp", "port": 53 } ],
      "backends": [ { "ip": "198.51.100.1" }, { "ip": "198.51.100.2" },
                    { "ip": "198.51.100.3", "state": "draining" }, { "ip": "198.51.100.4" } ] },
    { "name": "v6", "hash_key": "f0e1d2c3b4a5968778695a4b3c2d1e0f",
      "seed": "00112233445566778899aabbccddeeff",
      "binds": [ { "ip": "2001:db8:10::/120", "proto": "tcp", "port": 80 },
                 { "ip": "203.0.113.20", "proto": "tcp", "port": 80 } ],
      "backends": [ { "ip": "2001:db8:20::1" }, { "ip": "2001:db8:20::2" },
                    { "ip": "2001:db8:20::3" } ] }
  ],
  "director": { "source_v4": "192.0.2.1", "source_v6": "2001:db8::1",
                "gateway_mac": "02:00:5e:00:53:01",
                "hash_fields": ["src_addr", "dst_addr", "src_port", "dst_port"] }
}"#;

fn wide() -> Model {
    let macs = |ip: IpAddr| match ip {
        IpAddr::V4(a) if a.octets()[3] % 2 == 0 => Some([0x02, 0, 0, 0, 0x04, a.octets()[3]]),
        _ => None,
    };
    Model::new(&Config::from_json(WIDE).unwrap(), &macs).unwrap()
}

/// splitmix64: deterministic flows.
struct Gen(u64);

impl Gen {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
}

const ETH: [u8; 12] = [0x02, 0, 0, 0, 0, 0x0a, 0x02, 0, 0, 0, 0, 0x01];

/// An IPv4 or IPv6 packet (no L2) carrying `l4` with protocol `proto`.
fn ip_packet(src: IpAddr, dst: IpAddr, proto: u8, l4: &[u8]) -> Vec<u8> {
    match (src, dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            let mut ip = vec![0x45, 0, 0, 0, 0, 7, 0x40, 0, 64, proto, 0, 0];
            ip[2..4].copy_from_slice(&(20 + l4.len() as u16).to_be_bytes());
            ip.extend_from_slice(&s.octets());
            ip.extend_from_slice(&d.octets());
            let c = ipv4_checksum(&ip);
            ip[10..12].copy_from_slice(&c.to_be_bytes());
            ip.extend_from_slice(l4);
            ip
        }
        (IpAddr::V6(s), IpAddr::V6(d)) => {
            let mut ip = vec![0x60, 0, 0, 0, 0, 0, proto, 64];
            ip[4..6].copy_from_slice(&(l4.len() as u16).to_be_bytes());
            ip.extend_from_slice(&s.octets());
            ip.extend_from_slice(&d.octets());
            ip.extend_from_slice(l4);
            ip
        }
        _ => unreachable!("one family per packet"),
    }
}

fn frame(ip: &[u8]) -> Vec<u8> {
    let mut f = ETH.to_vec();
    f.extend_from_slice(if ip[0] >> 4 == 4 {
        &[0x08, 0x00]
    } else {
        &[0x86, 0xdd]
    });
    f.extend_from_slice(ip);
    f
}

fn tcp(src_port: u16, dst_port: u16) -> Vec<u8> {
    let mut t = vec![0u8; 20];
    t[0..2].copy_from_slice(&src_port.to_be_bytes());
    t[2..4].copy_from_slice(&dst_port.to_be_bytes());
    t[12] = 0x50;
    t[13] = 0x10; // ACK
    t
}

/// ICMP frag-needed (IPv4) or packet-too-big (IPv6) quoting `quoted`.
fn too_big(from: IpAddr, to: IpAddr, quoted: &[u8]) -> Vec<u8> {
    let (proto, mut icmp) = match from {
        IpAddr::V4(_) => (1, vec![3, 4, 0, 0, 0, 0, 0x05, 0x78]),
        IpAddr::V6(_) => (58, vec![2, 0, 0, 0, 0, 0, 0x05, 0x00]),
    };
    icmp.extend_from_slice(quoted);
    frame(&ip_packet(from, to, proto, &icmp))
}

/// (client, VIP, VIP port) flows over every bind of [`WIDE`].
fn flows(g: &mut Gen, n: usize) -> Vec<(IpAddr, IpAddr, u16, u16)> {
    (0..n)
        .map(|i| {
            let r = g.next();
            let sport = 1024 + (r as u16 % 60000);
            let low = (r >> 16) as u8;
            match i % 4 {
                0 => (
                    IpAddr::V4(Ipv4Addr::new(192, 0, 2, low)),
                    IpAddr::V4(Ipv4Addr::new(203, 0, 113, low % 16)),
                    sport,
                    80 + u16::from(low % 11),
                ),
                1 => (
                    IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 1, 0, 0, 0, 0, u16::from(low))),
                    "2001:db8:10::10".parse().unwrap(),
                    sport,
                    443,
                ),
                2 => (
                    IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 2, 0, 0, 0, 0, r as u16)),
                    IpAddr::V6(Ipv6Addr::new(
                        0x2001,
                        0xdb8,
                        0x10,
                        0,
                        0,
                        0,
                        0,
                        u16::from(low),
                    )),
                    sport,
                    80,
                ),
                _ => (
                    IpAddr::V4(Ipv4Addr::new(198, 51, 100, 200 + low % 50)),
                    IpAddr::V4(Ipv4Addr::new(203, 0, 113, 20)),
                    sport,
                    80,
                ),
            }
        })
        .collect()
}

/// Checks the encapsulation's lengths and GUE header against the frame it
/// was made from and returns the inner packet's offset in the output.
fn check_encapsulation(input: &[u8], out: &Outcome) -> usize {
    let o = &out.output;
    let d = out.decision.as_ref().unwrap();
    let inner = &input[14..];
    assert_eq!(
        &o[6..12],
        &input[0..6],
        "source MAC = received destination MAC"
    );
    let (udp_at, v4_outer) = match u16::from_be_bytes([o[12], o[13]]) {
        0x0800 => (14 + 20, true),
        0x86dd => (14 + 40, false),
        t => panic!("outer EtherType {t:#06x}"),
    };
    assert_eq!(v4_outer, d.primary.is_ipv4());
    let l3_len = o.len() - 14;
    if v4_outer {
        assert_eq!(usize::from(u16::from_be_bytes([o[16], o[17]])), l3_len);
        assert_eq!(ipv4_checksum(&o[14..34]), 0);
        assert_eq!(&o[30..34], &octets(d.primary));
    } else {
        assert_eq!(usize::from(u16::from_be_bytes([o[18], o[19]])), l3_len - 40);
        assert_eq!(&o[38..54], &octets(d.primary));
    }
    let udp = &o[udp_at..];
    assert_eq!(usize::from(u16::from_be_bytes([udp[4], udp[5]])), udp.len());
    assert_eq!(u16::from_be_bytes([udp[2], udp[3]]), proto::GUE_PORT);
    assert_eq!(udp[0] & 0x80, 0x80, "source port keeps its top bit");
    let gue = GueRepr::parse(&GuePacket::new_unchecked(&udp[8..])).unwrap();
    let want_inner = if inner[0] >> 4 == 4 {
        InnerProto::Ipv4
    } else {
        InnerProto::Ipv6
    };
    assert_eq!(gue.inner, want_inner);
    assert_eq!(gue.next_hop, 0);
    assert_eq!(gue.hops.iter().collect::<Vec<_>>(), d.alternates);
    let inner_at = udp_at + 8 + gue.buffer_len();
    assert_eq!(
        &o[inner_at..],
        inner,
        "the original packet follows, untouched"
    );
    inner_at
}

fn octets(ip: IpAddr) -> Vec<u8> {
    match ip {
        IpAddr::V4(a) => a.octets().to_vec(),
        IpAddr::V6(a) => a.octets().to_vec(),
    }
}

#[test]
fn encapsulated_frames_end_with_the_original_packet_and_consistent_lengths() {
    let model = wide();
    let mut g = Gen(1);
    let mut fallbacks = 0;
    for (i, (client, vip, sport, dport)) in flows(&mut g, 400).into_iter().enumerate() {
        let mut payload = tcp(sport, dport);
        payload.extend(std::iter::repeat_n(i as u8, i % 37));
        let input = frame(&ip_packet(client, vip, 6, &payload));
        let out = model.process(&input);
        assert_eq!(
            out.verdict,
            Verdict::Tx,
            "flow {i}: {client} -> {vip}:{dport}"
        );
        check_encapsulation(&input, &out);
        if out.counts(DirectorStat::MacFallback) {
            fallbacks += 1;
        }
    }
    assert!(
        (1..400).contains(&fallbacks),
        "some backends have a MAC, some not"
    );
}

#[test]
fn frag_needed_lands_on_the_backend_of_the_tcp_flow_it_quotes() {
    let model = wide();
    let mut g = Gen(2);
    for (i, (client, vip, sport, dport)) in flows(&mut g, 400).into_iter().enumerate() {
        let flow = model.process(&frame(&ip_packet(client, vip, 6, &tcp(sport, dport))));
        // The VIP's reply, as a router on the way to the client quotes it.
        let reply = ip_packet(vip, client, 6, &tcp(dport, sport));
        let router = match client {
            IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::new(198, 51, 100, 254)),
            IpAddr::V6(_) => "2001:db8:ff::1".parse().unwrap(),
        };
        // Quote only what routers must: the IP header and 8 bytes.
        let quote_len = if client.is_ipv4() { 20 + 8 } else { 40 + 8 };
        let icmp = model.process(&too_big(router, vip, &reply[..quote_len]));
        assert_eq!(icmp.verdict, Verdict::Tx, "flow {i}");
        let (f, e) = (flow.decision.unwrap(), icmp.decision.as_ref().unwrap());
        assert_eq!(e.flow, f.flow, "flow {i}: the quote is swapped back");
        assert_eq!(
            (e.hash, e.primary, &e.alternates),
            (f.hash, f.primary, &f.alternates),
            "flow {i}"
        );
        assert!(icmp.counts(DirectorStat::IcmpHandled));
        let udp_at = if e.primary.is_ipv4() { 34 } else { 54 };
        assert_eq!(
            &icmp.output[udp_at..udp_at + 2],
            &flow.output[udp_at..udp_at + 2],
            "flow {i}: same GUE source port"
        );
    }
}

#[test]
fn fragments_of_one_datagram_share_a_backend_and_ignore_ports() {
    let model = wide();
    let mut g = Gen(3);
    for (i, (client, vip, sport, dport)) in flows(&mut g, 200).into_iter().enumerate() {
        let (first, later) = match (client, vip) {
            (IpAddr::V4(_), IpAddr::V4(_)) => {
                let mut a = ip_packet(client, vip, 6, &tcp(sport, dport));
                a[6] = 0x20; // MF, offset 0
                let mut b = ip_packet(client, vip, 6, &[0xab; 24]);
                b[6..8].copy_from_slice(&3u16.to_be_bytes()); // offset 24, last
                (a, b)
            }
            _ => {
                let frag = |offset: u16, more: bool, body: &[u8]| {
                    let mut l4 = vec![6, 0];
                    l4.extend_from_slice(&((offset << 3) | u16::from(more)).to_be_bytes());
                    l4.extend_from_slice(&[0, 0, 0, 42]);
                    l4.extend_from_slice(body);
                    ip_packet(client, vip, 44, &l4)
                };
                (
                    frag(0, true, &tcp(sport, dport)),
                    frag(3, false, &[0xab; 24]),
                )
            }
        };
        let a = model.process(&frame(&first));
        let b = model.process(&frame(&later));
        for out in [&a, &b] {
            assert_eq!(out.verdict, Verdict::Tx, "datagram {i}");
            assert!(out.counts(DirectorStat::Fragment));
            let d = out.decision.as_ref().unwrap();
            assert_eq!((d.flow.src_port, d.flow.dst_port), (0, 0));
            assert_eq!(d.hash_fields & 0b1100, 0, "fragments hash no ports");
        }
        let (da, db) = (a.decision.unwrap(), b.decision.unwrap());
        assert_eq!((da.hash, da.primary), (db.hash, db.primary), "datagram {i}");
    }
}

// ---- the path MTU: too big once encapsulated ----

/// [`SOLO`] with a path MTU of 1500 toward the backends.
fn solo_mtu() -> Model {
    let text = SOLO.replace(
        r#""gateway_mac": "02:00:5e:00:53:01""#,
        r#""gateway_mac": "02:00:5e:00:53:01", "mtu": 1500"#,
    );
    Model::new(&Config::from_json(&text).unwrap(), &solo_macs).unwrap()
}

/// A 1500-byte IPv4 TCP segment, DF, 192.0.2.100:40000 -> 203.0.113.10:80
/// (payload byte i = 7i), in a frame from the router; `flags` is the IPv4
/// flags/offset word and the header checksum is left for the caller.
fn big_v4(flags: u16) -> Vec<u8> {
    let mut f = ETH.to_vec();
    f.extend_from_slice(&[0x08, 0x00]);
    f.extend_from_slice(&[0x45, 0, 0x05, 0xdc, 0, 1]);
    f.extend_from_slice(&flags.to_be_bytes());
    f.extend_from_slice(&[64, 6, 0, 0, 192, 0, 2, 100, 203, 0, 113, 10]);
    f.extend_from_slice(&[0x9c, 0x40, 0, 0x50, 0, 0, 0, 1, 0, 0, 0, 0]);
    f.extend_from_slice(&[0x50, 0x10, 0xff, 0xff, 0, 0, 0, 0]);
    f.extend((0..1460u32).map(|i| (i * 7) as u8));
    f
}

/// The ICMP frag-needed headers (Ethernet, IPv4, ICMP) answering
/// `big_v4(0x4000)` under a 1500-byte path MTU to IPv4 backends; the
/// checksums were computed apart (`ip 0x36ac` in, `0x398e` and `0x620c` out).
#[rustfmt::skip]
const FRAG_NEEDED_HEADERS: [u8; 42] = [
    // Ethernet: back to the router, from the director, IPv4
    0x02, 0x00, 0x00, 0x00, 0x00, 0x01,  0x02, 0x00, 0x00, 0x00, 0x00, 0x0a,  0x08, 0x00,
    // IPv4: 45 c0 (precedence 6) | total 576 | id 0 | DF | TTL 64, ICMP | checksum
    0x45, 0xc0, 0x02, 0x40,  0x00, 0x00, 0x40, 0x00,  0x40, 0x01, 0x39, 0x8e,
    // 203.0.113.10 (the VIP) -> 192.0.2.100 (the client)
    203, 0, 113, 10,  192, 0, 2, 100,
    // ICMP: type 3, code 4 | checksum | unused | next-hop MTU 1500 - 40 = 1460
    0x03, 0x04, 0x62, 0x0c,  0x00, 0x00, 0x05, 0xb4,
];

#[test]
fn a_packet_too_big_once_encapsulated_gets_frag_needed_byte_for_byte() {
    let mut input = big_v4(0x4000);
    input[24..26].copy_from_slice(&0x36acu16.to_be_bytes());
    assert_eq!(ipv4_checksum(&input[14..34]), 0);
    let out = solo_mtu().process(&input);
    assert_eq!(out.verdict, Verdict::Tx);
    assert_eq!(out.counted, [DirectorStat::TooBigIcmp]);
    assert_eq!((out.bind, out.bind_counters), (Some(0), None));
    assert_eq!(out.decision.unwrap().table, "v4");
    assert_eq!(out.output.len(), 14 + 576);
    assert_frame(&out.output[..42], &FRAG_NEEDED_HEADERS);
    assert_frame(&out.output[42..], &input[14..14 + 548]);

    // Without DF, or without a path MTU, it is not answered.
    let mut no_df = big_v4(0);
    no_df[24..26].copy_from_slice(&0x76acu16.to_be_bytes());
    let out = solo_mtu().process(&no_df);
    assert_eq!((out.verdict, out.output), (Verdict::Drop, no_df));
    assert_eq!(out.counted, [DirectorStat::TooBigDropped]);
    let out = solo().process(&input);
    assert_eq!(out.verdict, Verdict::Tx);
    assert_eq!(out.counted, [DirectorStat::Encapsulated]);
    assert_eq!(out.output.len(), input.len() + 40);
}

/// The ICMPv6 packet-too-big headers answering a 1500-byte IPv6 UDP
/// datagram 2001:db8:1::100:5353 -> [2001:db8:10::20]:53 (payload byte i =
/// 13i) under a 1500-byte path MTU to IPv6 backends; the checksum was
/// computed apart.
#[rustfmt::skip]
const PACKET_TOO_BIG_HEADERS: [u8; 62] = [
    // Ethernet: back to the router, from the director, IPv6
    0x02, 0x00, 0x00, 0x00, 0x00, 0x01,  0x02, 0x00, 0x00, 0x00, 0x00, 0x0a,  0x86, 0xdd,
    // IPv6: version 6 | payload 8 + 1232 = 1240 | ICMPv6, hop limit 64
    0x60, 0x00, 0x00, 0x00,  0x04, 0xd8, 0x3a, 0x40,
    // 2001:db8:10::20 (the VIP)
    0x20, 0x01, 0x0d, 0xb8, 0x00, 0x10, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x20,
    // 2001:db8:1::100 (the client)
    0x20, 0x01, 0x0d, 0xb8, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01, 0x00,
    // ICMPv6: type 2, code 0 | checksum | MTU 1500 - 72 = 1428
    0x02, 0x00, 0xd0, 0x36,  0x00, 0x00, 0x05, 0x94,
];

#[test]
fn an_ipv6_packet_too_big_once_encapsulated_gets_packet_too_big_byte_for_byte() {
    let mut udp = Vec::new();
    udp.extend_from_slice(&[0x14, 0xe9, 0x00, 0x35, 0x05, 0xb4, 0xbe, 0xef]);
    udp.extend((0..1452u32).map(|i| (i * 13) as u8));
    let client: IpAddr = "2001:db8:1::100".parse().unwrap();
    let vip: IpAddr = "2001:db8:10::20".parse().unwrap();
    let input = frame(&ip_packet(client, vip, 17, &udp));
    assert_eq!(input.len(), 14 + 1500);
    let out = solo_mtu().process(&input);
    assert_eq!(out.verdict, Verdict::Tx);
    assert_eq!(out.counted, [DirectorStat::TooBigIcmp]);
    assert_eq!(out.output.len(), 14 + 1280);
    assert_frame(&out.output[..62], &PACKET_TOO_BIG_HEADERS);
    assert_frame(&out.output[62..], &input[14..14 + 1232]);

    // At the limit (1428 bytes), it is encapsulated to exactly 1500.
    let at_limit = frame(&ip_packet(client, vip, 17, &udp[..1428 - 40]));
    let out = solo_mtu().process(&at_limit);
    assert_eq!(
        out.counted,
        [DirectorStat::Encapsulated, DirectorStat::MacFallback]
    );
    assert_eq!(out.output.len(), 14 + 1500);
}

#[test]
fn an_icmp_error_too_big_once_encapsulated_is_dropped_not_answered() {
    // A frag-needed quoting the whole 1500-byte reply of the VIP.
    let reply = big_v4(0x4000);
    let mut quoted = reply[14..].to_vec();
    quoted[12..20].copy_from_slice(&[203, 0, 113, 10, 192, 0, 2, 100]);
    quoted[20..24].copy_from_slice(&[0, 0x50, 0x9c, 0x40]);
    let router = IpAddr::V4(Ipv4Addr::new(198, 51, 100, 254));
    let vip = IpAddr::V4(Ipv4Addr::new(203, 0, 113, 10));
    let input = too_big(router, vip, &quoted);
    let out = solo_mtu().process(&input);
    assert_eq!(out.verdict, Verdict::Drop);
    assert_eq!(out.counted, [DirectorStat::TooBigDropped]);
    // Quoting less, it fits and follows its flow as ever.
    let out = solo_mtu().process(&too_big(router, vip, &quoted[..28]));
    assert_eq!(
        out.counted,
        [DirectorStat::Encapsulated, DirectorStat::IcmpHandled]
    );
}
