//! The redirect module run on real bytes with `BPF_PROG_TEST_RUN`, from a
//! thread inside a lab namespace: its socket lookups and FIB lookups see
//! that namespace only (a veth `eth0` with forwarding on and permanent
//! neighbours), never the host's. Expected bytes are built here from
//! SPEC.md sections 2-3, independently of the eBPF code.
//!
//! Decisions that need no socket: not allowed, invalid GUE, not GUE, SYN,
//! last resort, next hop is self, forward (IPv4 and IPv6 outer), inner UDP
//! and ICMP, ICMP errors following their (socketless) TCP flow. Sockets:
//! an established connection and a listener (which alone accepts nothing).
#![allow(clippy::unwrap_used)] // a test: a failure is the test failing

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use aya::programs::{TestRun as _, TestRunOptions, Xdp};
use director_xdp::redirect::{Redirect, RedirectConfig};
use lab_tests::{Netns, veth};
use proto::maps::RedirectStat;

const XDP_DROP: u32 = 1;
const XDP_PASS: u32 = 2;
const XDP_TX: u32 = 3;

const HOST_MAC: [u8; 6] = [0x02, 0, 0, 0, 0x02, 0x11];
const PEER_MAC: [u8; 6] = [0x02, 0, 0, 0, 0x02, 0x12];
const DIRECTOR_MAC: [u8; 6] = [0x02, 0, 0, 0, 0x02, 0x01];
const DIRECTOR: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 1);
const DIRECTOR6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 1, 0, 0, 0, 0, 1);
const ME: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 11);
const ME6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 1, 0, 0, 0, 0, 0x11);
const OTHER: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 12);
const OTHER6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 1, 0, 0, 0, 0, 0x12);
const CLIENT: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 7);
const CLIENT6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 2, 0, 0, 0, 0, 7);
const VIP: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 10);
const VIP6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0x10, 0, 0, 0, 0, 0x10);

/// A backend host (`eth0` = `HOST_MAC`, addresses `ME`/`ME6`, forwarding
/// on, `OTHER`/`OTHER6` as permanent neighbours at `PEER_MAC`) and the
/// peer namespace holding the other end of its veth.
struct Lab {
    host: Netns,
    _peer: Netns,
}

fn lab() -> Lab {
    let host = Netns::new("rtr").unwrap();
    let peer = Netns::new("rtp").unwrap();
    veth(
        &host,
        "eth0",
        "02:00:00:00:02:11",
        &peer,
        "eth0",
        "02:00:00:00:02:12",
    )
    .unwrap();
    host.ip(&["addr", "add", "198.51.100.11/24", "dev", "eth0"])
        .unwrap();
    host.ip(&["addr", "add", "2001:db8:1::11/64", "dev", "eth0", "nodad"])
        .unwrap();
    for (ip, fam) in [("198.51.100.12", "-4"), ("2001:db8:1::12", "-6")] {
        host.ip(&[
            fam,
            "neigh",
            "add",
            ip,
            "lladdr",
            "02:00:00:00:02:12",
            "dev",
            "eth0",
            "nud",
            "permanent",
        ])
        .unwrap();
    }
    for key in [
        "net.ipv4.conf.eth0.forwarding=1",
        "net.ipv6.conf.eth0.forwarding=1",
    ] {
        host.exec("sysctl", &["-qw", key]).unwrap();
    }
    Lab { host, _peer: peer }
}

fn config() -> RedirectConfig {
    RedirectConfig {
        selves: vec![IpAddr::V4(ME), IpAddr::V6(ME6)],
        allow: vec![
            "198.51.100.0/28".parse().unwrap(),
            "2001:db8:1::/124".parse().unwrap(),
        ],
        netns_id: None,
    }
}

fn ifindex(name: &str) -> u32 {
    let c = std::ffi::CString::new(name).unwrap();
    // SAFETY: a valid NUL-terminated name.
    unsafe { libc::if_nametoindex(c.as_ptr()) }
}

/// Runs the program once on `frame` as received on `eth0`.
fn run(program: &Xdp, frame: &[u8]) -> (u32, Vec<u8>) {
    let mut out = vec![0u8; frame.len() + 256];
    let mut ctx = [0u8; 24];
    ctx[4..8].copy_from_slice(&(frame.len() as u32).to_ne_bytes());
    ctx[12..16].copy_from_slice(&ifindex("eth0").to_ne_bytes());
    let result = program
        .test_run(TestRunOptions {
            data_in: Some(frame),
            data_out: Some(&mut out),
            ctx_in: Some(&ctx),
            ..Default::default()
        })
        .expect("BPF_PROG_TEST_RUN");
    out.truncate(result.data_size_out as usize);
    (result.return_value, out)
}

fn checksum(bytes: &[u8]) -> u16 {
    let mut sum: u32 = bytes
        .chunks(2)
        .map(|w| u32::from(u16::from_be_bytes([w[0], *w.get(1).unwrap_or(&0)])))
        .sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

fn ipv4(src: Ipv4Addr, dst: Ipv4Addr, proto: u8, ttl: u8, payload: &[u8]) -> Vec<u8> {
    let mut h = vec![0x45, 0];
    h.extend_from_slice(&(20 + payload.len() as u16).to_be_bytes());
    h.extend_from_slice(&[0, 0, 0x40, 0, ttl, proto, 0, 0]);
    h.extend_from_slice(&src.octets());
    h.extend_from_slice(&dst.octets());
    let c = checksum(&h);
    h[10..12].copy_from_slice(&c.to_be_bytes());
    h.extend_from_slice(payload);
    h
}

fn ipv6(src: Ipv6Addr, dst: Ipv6Addr, next: u8, hop_limit: u8, payload: &[u8]) -> Vec<u8> {
    let mut h = vec![0x60, 0, 0, 0];
    h.extend_from_slice(&(payload.len() as u16).to_be_bytes());
    h.extend_from_slice(&[next, hop_limit]);
    h.extend_from_slice(&src.octets());
    h.extend_from_slice(&dst.octets());
    h.extend_from_slice(payload);
    h
}

const SYN: u8 = 0x02;
const ACK: u8 = 0x10;

fn tcp(sport: u16, dport: u16, flags: u8) -> Vec<u8> {
    let mut h = Vec::new();
    h.extend_from_slice(&sport.to_be_bytes());
    h.extend_from_slice(&dport.to_be_bytes());
    h.extend_from_slice(&[0, 0, 0, 1, 0, 0, 0, 1, 0x50, flags, 0xff, 0xff, 0, 0, 0, 0]);
    h.extend_from_slice(b"data");
    h
}

fn udp(sport: u16, dport: u16, payload: &[u8]) -> Vec<u8> {
    let mut h = Vec::new();
    h.extend_from_slice(&sport.to_be_bytes());
    h.extend_from_slice(&dport.to_be_bytes());
    h.extend_from_slice(&(8 + payload.len() as u16).to_be_bytes());
    h.extend_from_slice(&[0, 0]);
    h.extend_from_slice(payload);
    h
}

fn eth(dst: [u8; 6], src: [u8; 6], ethertype: u16, payload: &[u8]) -> Vec<u8> {
    let mut f = dst.to_vec();
    f.extend_from_slice(&src);
    f.extend_from_slice(&ethertype.to_be_bytes());
    f.extend_from_slice(payload);
    f
}

fn octets(a: IpAddr) -> Vec<u8> {
    match a {
        IpAddr::V4(a) => a.octets().to_vec(),
        IpAddr::V6(a) => a.octets().to_vec(),
    }
}

/// GUE + GLB private data (SPEC.md section 2) and the inner packet.
fn gue(next_hop: u8, hops: &[IpAddr], inner: &[u8]) -> Vec<u8> {
    let v6 = hops.first().is_some_and(IpAddr::is_ipv6);
    let hop_bytes: Vec<u8> = hops.iter().flat_map(|h| octets(*h)).collect();
    let hlen = 1 + hop_bytes.len() / 4;
    let inner_proto = if inner[0] >> 4 == 6 { 41 } else { 4 };
    let mut g = vec![hlen as u8, inner_proto, 0, 0, 0, u8::from(v6), next_hop];
    g.push(hops.len() as u8);
    g.extend_from_slice(&hop_bytes);
    g.extend_from_slice(inner);
    g
}

/// A GUE frame from `src` to `dst` (the outer family is theirs).
fn gue_frame(src: IpAddr, dst: IpAddr, gue: &[u8]) -> Vec<u8> {
    let u = udp(0x8123, 19523, gue);
    let u = {
        let mut u = u;
        u[6..8].copy_from_slice(&[0, 0]);
        u
    };
    match (src, dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            eth(HOST_MAC, DIRECTOR_MAC, 0x0800, &ipv4(s, d, 17, 64, &u))
        }
        (IpAddr::V6(s), IpAddr::V6(d)) => {
            eth(HOST_MAC, DIRECTOR_MAC, 0x86dd, &ipv6(s, d, 17, 64, &u))
        }
        _ => unreachable!("one family"),
    }
}

/// What an accepted packet becomes: the inner packet behind a fresh
/// Ethernet header with the received MACs.
fn stripped(inner: &[u8]) -> Vec<u8> {
    let ty = if inner[0] >> 4 == 6 { 0x86dd } else { 0x0800 };
    eth(HOST_MAC, DIRECTOR_MAC, ty, inner)
}

fn inner_tcp4(flags: u8) -> Vec<u8> {
    ipv4(CLIENT, VIP, 6, 61, &tcp(40000, 80, flags))
}

fn inner_tcp6(flags: u8) -> Vec<u8> {
    ipv6(CLIENT6, VIP6, 6, 61, &tcp(40000, 80, flags))
}

/// Runs `body` in the lab's host namespace with a loaded, configured module.
fn in_lab(
    config: RedirectConfig,
    body: impl FnOnce(&Redirect) + Send + 'static,
) -> Vec<(RedirectStat, u64)> {
    let lab = lab();
    lab.host
        .run_in(move || {
            let mut module = match Redirect::load() {
                Ok(m) => m,
                Err(e) => panic!("loading the redirect module (needs root): {e:?}"),
            };
            module.configure(&config).unwrap();
            body(&module);
            Ok(module.stats().unwrap())
        })
        .unwrap()
}

fn get(stats: &[(RedirectStat, u64)], stat: RedirectStat) -> u64 {
    stats
        .iter()
        .find(|(s, _)| *s == stat)
        .map_or(0, |(_, n)| *n)
}

/// Every counter other than those listed is zero, and `total` is their sum.
fn assert_only(stats: &[(RedirectStat, u64)], want: &[(RedirectStat, u64)]) {
    for (stat, n) in stats {
        let expected = if *stat == RedirectStat::Total {
            want.iter().map(|(_, n)| n).sum()
        } else {
            want.iter().find(|(s, _)| s == stat).map_or(0, |(_, n)| *n)
        };
        assert_eq!(*n, expected, "counter {}: {stats:?}", stat.name());
    }
}

#[test]
fn gue_from_a_source_not_allowed_is_dropped_and_counted() {
    let stats = in_lab(config(), |m| {
        for src in [
            IpAddr::V4(Ipv4Addr::new(198, 51, 100, 16)),
            IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1)),
        ] {
            let f = gue_frame(src, ME.into(), &gue(0, &[OTHER.into()], &inner_tcp4(SYN)));
            assert_eq!(run(m.program(), &f).0, XDP_DROP);
        }
        let f = gue_frame(
            Ipv6Addr::new(0x2001, 0xdb8, 1, 0, 0, 0, 0, 0x10).into(),
            ME6.into(),
            &gue(0, &[OTHER6.into()], &inner_tcp6(SYN)),
        );
        assert_eq!(run(m.program(), &f).0, XDP_DROP);
    });
    assert_only(&stats, &[(RedirectStat::DroppedNotAllowed, 3)]);
}

#[test]
fn malformed_gue_is_dropped_and_counted() {
    let stats = in_lab(config(), |m| {
        let good = gue(0, &[OTHER.into()], &inner_tcp4(SYN));
        let mut cases: Vec<(&str, Vec<u8>)> = Vec::new();
        let mut c = good.clone();
        c[0] = 3; // hlen says 2 hops, hop_count 1
        cases.push(("hlen inconsistent with hop_count", c));
        let mut c = good.clone();
        c[1] = 17;
        cases.push(("unknown inner protocol", c));
        let mut c = good.clone();
        c[5] = 2;
        cases.push(("unknown private type", c));
        let mut c = good.clone();
        c[0] |= 0x40;
        cases.push(("version 1", c));
        let mut c = good.clone();
        c[0] |= 0x20;
        cases.push(("control bit", c));
        let mut c = good.clone();
        c[3] = 1;
        cases.push(("flags set", c));
        let mut c = good.clone();
        c[1] = 41;
        cases.push(("inner protocol IPv6, packet IPv4", c));
        let mut c = good.clone();
        c[5] = 1;
        c[0] = 5;
        cases.push(("IPv6 hops in an IPv4 outer packet", c));
        cases.push(("truncated in the hops", good[..10].to_vec()));
        cases.push(("truncated in the GUE header", good[..6].to_vec()));
        cases.push(("inner packet truncated", good[..12 + 10].to_vec()));
        cases.push(("inner TCP truncated", good[..12 + 20 + 8].to_vec()));
        for (what, g) in &cases {
            let f = gue_frame(DIRECTOR.into(), ME.into(), g);
            assert_eq!(run(m.program(), &f).0, XDP_DROP, "{what}");
        }
        assert_eq!(cases.len(), 12);
    });
    assert_only(&stats, &[(RedirectStat::DroppedInvalid, 12)]);
}

#[test]
fn traffic_that_is_not_gue_passes_untouched_and_uncounted() {
    let stats = in_lab(config(), |m| {
        let frames = [
            eth(
                HOST_MAC,
                DIRECTOR_MAC,
                0x0800,
                &ipv4(DIRECTOR, ME, 17, 64, &udp(1, 53, b"dns")),
            ),
            eth(
                HOST_MAC,
                DIRECTOR_MAC,
                0x0800,
                &ipv4(CLIENT, ME, 6, 64, &tcp(1, 19523, ACK)),
            ),
            eth(
                HOST_MAC,
                DIRECTOR_MAC,
                0x86dd,
                &ipv6(DIRECTOR6, ME6, 17, 64, &udp(1, 53, b"x")),
            ),
            eth(HOST_MAC, DIRECTOR_MAC, 0x0806, &[0u8; 28]),
        ];
        for f in frames {
            assert_eq!(run(m.program(), &f), (XDP_PASS, f.clone()));
        }
    });
    assert_only(&stats, &[]);
}

#[test]
fn syn_is_accepted_and_decapsulated_for_the_local_stack() {
    let stats = in_lab(config(), |m| {
        let inner = inner_tcp4(SYN);
        let f = gue_frame(DIRECTOR.into(), ME.into(), &gue(0, &[OTHER.into()], &inner));
        assert_eq!(run(m.program(), &f), (XDP_PASS, stripped(&inner)));
        // IPv6 client in an IPv4 tunnel, and IPv6 in IPv6.
        let inner = inner_tcp6(SYN);
        let f = gue_frame(DIRECTOR.into(), ME.into(), &gue(0, &[OTHER.into()], &inner));
        assert_eq!(run(m.program(), &f), (XDP_PASS, stripped(&inner)));
        let f = gue_frame(
            DIRECTOR6.into(),
            ME6.into(),
            &gue(0, &[OTHER6.into()], &inner),
        );
        assert_eq!(run(m.program(), &f), (XDP_PASS, stripped(&inner)));
    });
    assert_only(&stats, &[(RedirectStat::AcceptedSyn, 3)]);
}

#[test]
fn ack_without_socket_and_no_hop_left_is_accepted_as_last_resort() {
    let stats = in_lab(config(), |m| {
        let inner = inner_tcp4(ACK);
        for (next, hops) in [(1u8, vec![IpAddr::from(OTHER)]), (0, vec![])] {
            let g = gue(next, &hops, &inner);
            let g = if hops.is_empty() {
                let mut g = g;
                g[5] = 0;
                g
            } else {
                g
            };
            let f = gue_frame(DIRECTOR.into(), ME.into(), &g);
            assert_eq!(run(m.program(), &f), (XDP_PASS, stripped(&inner)));
        }
        let inner = inner_tcp6(ACK);
        let f = gue_frame(
            DIRECTOR6.into(),
            ME6.into(),
            &gue(5, &[OTHER6.into()], &inner),
        );
        assert_eq!(run(m.program(), &f), (XDP_PASS, stripped(&inner)));
    });
    assert_only(&stats, &[(RedirectStat::AcceptedLastResort, 3)]);
}

#[test]
fn ack_whose_next_hop_is_this_host_is_accepted() {
    let stats = in_lab(config(), |m| {
        let inner = inner_tcp4(ACK);
        let f = gue_frame(DIRECTOR.into(), ME.into(), &gue(0, &[ME.into()], &inner));
        assert_eq!(run(m.program(), &f), (XDP_PASS, stripped(&inner)));
        let f = gue_frame(
            DIRECTOR.into(),
            ME.into(),
            &gue(1, &[OTHER.into(), ME.into()], &inner),
        );
        assert_eq!(run(m.program(), &f), (XDP_PASS, stripped(&inner)));
        let inner = inner_tcp6(ACK);
        let f = gue_frame(DIRECTOR6.into(), ME6.into(), &gue(0, &[ME6.into()], &inner));
        assert_eq!(run(m.program(), &f), (XDP_PASS, stripped(&inner)));
    });
    assert_only(&stats, &[(RedirectStat::ForwardedToSelf, 3)]);
}

/// The forwarded frame SPEC.md section 3 step 6 describes.
fn forwarded(received_gue: &[u8], next_hop_index: usize, v6: bool) -> Vec<u8> {
    let mut g = received_gue.to_vec();
    g[6] = next_hop_index as u8 + 1;
    let mut u = udp(0x8123, 19523, &g);
    u[6..8].copy_from_slice(&[0, 0]);
    if v6 {
        eth(PEER_MAC, HOST_MAC, 0x86dd, &ipv6(ME6, OTHER6, 17, 64, &u))
    } else {
        eth(PEER_MAC, HOST_MAC, 0x0800, &ipv4(ME, OTHER, 17, 64, &u))
    }
}

#[test]
fn ack_without_socket_is_forwarded_to_the_next_hop_with_exact_bytes() {
    let stats = in_lab(config(), |m| {
        let inner = inner_tcp4(ACK);
        let g = gue(0, &[OTHER.into()], &inner);
        let f = gue_frame(DIRECTOR.into(), ME.into(), &g);
        assert_eq!(run(m.program(), &f), (XDP_TX, forwarded(&g, 0, false)));
        // Second of two hops, outer TTL reset.
        let g = gue(1, &[ME.into(), OTHER.into()], &inner);
        let mut f = gue_frame(DIRECTOR.into(), ME.into(), &g);
        f[14 + 8] = 3;
        let c = checksum(&{
            let mut h = f[14..34].to_vec();
            h[10] = 0;
            h[11] = 0;
            h
        });
        f[24..26].copy_from_slice(&c.to_be_bytes());
        assert_eq!(run(m.program(), &f), (XDP_TX, forwarded(&g, 1, false)));
        let inner = inner_tcp6(ACK);
        let g = gue(0, &[OTHER6.into()], &inner);
        let f = gue_frame(DIRECTOR6.into(), ME6.into(), &g);
        assert_eq!(run(m.program(), &f), (XDP_TX, forwarded(&g, 0, true)));
    });
    assert_only(&stats, &[(RedirectStat::ForwardedToAlternate, 3)]);
}

#[test]
fn forward_without_a_neighbour_or_route_is_dropped_and_counted() {
    let stats = in_lab(config(), |m| {
        // On-link but no neighbour entry, then no route at all.
        for hop in [
            Ipv4Addr::new(198, 51, 100, 13),
            Ipv4Addr::new(192, 0, 2, 200),
        ] {
            let f = gue_frame(
                DIRECTOR.into(),
                ME.into(),
                &gue(0, &[hop.into()], &inner_tcp4(ACK)),
            );
            assert_eq!(run(m.program(), &f).0, XDP_DROP);
        }
    });
    assert_only(&stats, &[(RedirectStat::ForwardFailed, 2)]);
}

#[test]
fn inner_udp_and_icmp_are_accepted_whatever_the_hops() {
    let stats = in_lab(config(), |m| {
        let inners = [
            ipv4(CLIENT, VIP, 17, 61, &udp(5000, 53, b"query")),
            ipv4(CLIENT, VIP, 1, 61, &[8, 0, 0, 0, 0, 1, 0, 1, b'p', b'i']),
            ipv6(CLIENT6, VIP6, 58, 61, &[128, 0, 0, 0, 0, 1, 0, 1]),
            ipv6(CLIENT6, VIP6, 17, 61, &udp(5000, 53, b"q6")),
        ];
        for inner in inners {
            let f = gue_frame(DIRECTOR.into(), ME.into(), &gue(0, &[OTHER.into()], &inner));
            assert_eq!(run(m.program(), &f), (XDP_PASS, stripped(&inner)));
        }
    });
    assert_only(&stats, &[(RedirectStat::AcceptedOther, 4)]);
}

#[test]
fn icmp_too_big_follows_the_tcp_flow_it_quotes() {
    let stats = in_lab(config(), |m| {
        // The quoted packet went from the VIP to the client.
        let quoted4 = ipv4(VIP, CLIENT, 6, 64, &tcp(80, 40000, ACK));
        let mut icmp4 = vec![3, 4, 0, 0, 0, 0, 0x05, 0xdc];
        icmp4.extend_from_slice(&quoted4[..28]);
        let inner = ipv4(Ipv4Addr::new(192, 0, 2, 254), VIP, 1, 61, &icmp4);
        // No socket for that flow here: forwarded like its TCP packets.
        let g = gue(0, &[OTHER.into()], &inner);
        let f = gue_frame(DIRECTOR.into(), ME.into(), &g);
        assert_eq!(run(m.program(), &f), (XDP_TX, forwarded(&g, 0, false)));
        // Last resort, like its TCP packets.
        let f = gue_frame(DIRECTOR.into(), ME.into(), &gue(1, &[OTHER.into()], &inner));
        assert_eq!(run(m.program(), &f), (XDP_PASS, stripped(&inner)));

        let quoted6 = ipv6(VIP6, CLIENT6, 6, 64, &tcp(80, 40000, ACK));
        let mut icmp6 = vec![2, 0, 0, 0, 0, 0, 0x05, 0x00];
        icmp6.extend_from_slice(&quoted6[..48]);
        let inner = ipv6(
            Ipv6Addr::new(0x2001, 0xdb8, 2, 0, 0, 0, 0, 0xfe),
            VIP6,
            58,
            61,
            &icmp6,
        );
        let g = gue(0, &[OTHER6.into()], &inner);
        let f = gue_frame(DIRECTOR6.into(), ME6.into(), &g);
        assert_eq!(run(m.program(), &f), (XDP_TX, forwarded(&g, 0, true)));
        // Quoting UDP: accepted.
        let quoted = ipv4(VIP, CLIENT, 17, 64, &udp(53, 5000, b""));
        let mut icmp = vec![3, 4, 0, 0, 0, 0, 0x05, 0xdc];
        icmp.extend_from_slice(&quoted);
        let inner = ipv4(Ipv4Addr::new(192, 0, 2, 254), VIP, 1, 61, &icmp);
        let f = gue_frame(DIRECTOR.into(), ME.into(), &gue(0, &[OTHER.into()], &inner));
        assert_eq!(run(m.program(), &f), (XDP_PASS, stripped(&inner)));
    });
    assert_only(
        &stats,
        &[
            (RedirectStat::ForwardedToAlternate, 2),
            (RedirectStat::AcceptedLastResort, 1),
            (RedirectStat::AcceptedOther, 1),
        ],
    );
}

#[test]
fn established_socket_accepts_its_flow_and_a_listener_alone_does_not() {
    let stats = in_lab(config(), |m| {
        // The VIP and a client address on lo; a listener and one
        // connection to it, inside the lab namespace.
        lab_tests::run("ip", &["addr", "add", "203.0.113.10/32", "dev", "lo"]).unwrap();
        lab_tests::run("ip", &["addr", "add", "192.0.2.7/32", "dev", "lo"]).unwrap();
        let listener = std::net::TcpListener::bind("203.0.113.10:80").unwrap();
        let client = socket_from("192.0.2.7:0", "203.0.113.10:80");
        let (_server, _) = listener.accept().unwrap();
        let port = client.local_addr().unwrap().port();

        let inner = ipv4(CLIENT, VIP, 6, 61, &tcp(port, 80, ACK));
        let f = gue_frame(DIRECTOR.into(), ME.into(), &gue(0, &[OTHER.into()], &inner));
        assert_eq!(run(m.program(), &f), (XDP_PASS, stripped(&inner)));
        // Another port: only the listener matches, so it is forwarded.
        let inner = ipv4(CLIENT, VIP, 6, 61, &tcp(port ^ 1, 80, ACK));
        let g = gue(0, &[OTHER.into()], &inner);
        let f = gue_frame(DIRECTOR.into(), ME.into(), &g);
        assert_eq!(run(m.program(), &f), (XDP_TX, forwarded(&g, 0, false)));
        // A frag-needed quoting the established flow follows it.
        let quoted = ipv4(VIP, CLIENT, 6, 64, &tcp(80, port, ACK));
        let mut icmp = vec![3, 4, 0, 0, 0, 0, 0x05, 0xdc];
        icmp.extend_from_slice(&quoted[..28]);
        let inner = ipv4(Ipv4Addr::new(192, 0, 2, 254), VIP, 1, 61, &icmp);
        let f = gue_frame(DIRECTOR.into(), ME.into(), &gue(0, &[OTHER.into()], &inner));
        assert_eq!(run(m.program(), &f), (XDP_PASS, stripped(&inner)));
    });
    assert_only(
        &stats,
        &[
            (RedirectStat::AcceptedEstablished, 2),
            (RedirectStat::ForwardedToAlternate, 1),
        ],
    );
}

/// A TCP connection from `local` to `remote`.
fn socket_from(local: &str, remote: &str) -> std::net::TcpStream {
    use std::os::fd::FromRawFd as _;
    let local: std::net::SocketAddrV4 = local.parse().unwrap();
    let remote: std::net::SocketAddrV4 = remote.parse().unwrap();
    let sockaddr = |a: std::net::SocketAddrV4| libc::sockaddr_in {
        sin_family: libc::AF_INET as u16,
        sin_port: a.port().to_be(),
        sin_addr: libc::in_addr {
            s_addr: u32::from_ne_bytes(a.ip().octets()),
        },
        sin_zero: [0; 8],
    };
    // SAFETY: plain socket calls on a fresh fd with valid sockaddrs.
    unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_STREAM, 0);
        assert!(fd >= 0);
        let l = sockaddr(local);
        let len = std::mem::size_of::<libc::sockaddr_in>() as u32;
        assert_eq!(
            libc::bind(fd, (&l as *const libc::sockaddr_in).cast(), len),
            0
        );
        let r = sockaddr(remote);
        assert_eq!(
            libc::connect(fd, (&r as *const libc::sockaddr_in).cast(), len),
            0
        );
        std::net::TcpStream::from_raw_fd(fd)
    }
}

#[test]
fn redirect_verifies_well_within_the_kernel_complexity_limit() {
    let module = Redirect::load().unwrap_or_else(|e| panic!("loading: {e:?}"));
    let info = module.program().info().unwrap();
    let verified = info.verified_instruction_count().unwrap();
    eprintln!("redirect: {verified} instructions verified");
    assert!(verified < 500_000, "{verified} instructions verified");
    assert_eq!(get(&module.stats().unwrap(), RedirectStat::Total), 0);
}
