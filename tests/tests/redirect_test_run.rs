//! The redirect module run on real bytes with `BPF_PROG_TEST_RUN`, from a
//! thread inside a lab namespace: its socket lookups and FIB lookups see
//! that namespace only (a veth `eth0` with forwarding on and permanent
//! neighbours), never the host's. Expected bytes are built here from
//! docs/spec.md sections 2-3, independently of the eBPF code.
//!
//! Decisions that need no socket: not allowed, invalid GUE, not GUE, SYN,
//! last resort, next hop is self, forward (IPv4 and IPv6 outer), inner UDP
//! and ICMP, ICMP errors following their (socketless) TCP flow; and the
//! same steps along chains of H = 2 and 3 hops (forward from the middle of
//! the list, last resort at its end, this host as a later hop, hlen not
//! matching hop_count). Sockets: an established connection and a listener
//! (which alone accepts nothing).
#![allow(clippy::unwrap_used)] // a test: a failure is the test failing

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddrV4};

use director_xdp::redirect::{Redirect, RedirectConfig};
use lab_tests::pkt::{ACK, Macs, SYN, checksum, eth, gue, ipv4, ipv6, udp};
use lab_tests::redirect_lab::{
    CLIENT, CLIENT6, DIRECTOR, DIRECTOR6, Lab, LabSpec, ME, ME6, OTHER, OTHER6, VIP, VIP6,
    XDP_DROP, XDP_PASS, XDP_TX, assert_only, connect_from, get, load, run,
};
use proto::maps::RedirectStat;

const MACS: Macs = Macs {
    host: [0x02, 0, 0, 0, 0x02, 0x11],
    peer: [0x02, 0, 0, 0, 0x02, 0x12],
    director: [0x02, 0, 0, 0, 0x02, 0x01],
};

/// A backend host (`eth0` = `MACS.host`, addresses `ME`/`ME6`, forwarding
/// on, `OTHER`/`OTHER6` as permanent neighbours at `MACS.peer`) and the
/// peer namespace holding the other end of its veth.
fn lab() -> Lab {
    Lab::new(&LabSpec {
        role: "rtr",
        peer_role: Some("rtp"),
        macs: &MACS,
        addrs: &[(IpAddr::V4(ME), 24), (IpAddr::V6(ME6), 64)],
        neighbours: &[IpAddr::V4(OTHER), IpAddr::V6(OTHER6)],
    })
    .unwrap()
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

/// A TCP header (seq 1, ack 1) and 4 bytes of payload.
fn tcp(sport: u16, dport: u16, flags: u8) -> Vec<u8> {
    let mut h = lab_tests::pkt::tcp(sport, dport, flags);
    h.extend_from_slice(b"data");
    h
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
            let module = load(&config);
            body(&module);
            Ok(module.stats().unwrap())
        })
        .unwrap()
}

#[test]
fn gue_from_a_source_not_allowed_is_dropped_and_counted() {
    let stats = in_lab(config(), |m| {
        for src in [
            IpAddr::V4(Ipv4Addr::new(198, 51, 100, 16)),
            IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1)),
        ] {
            let f = MACS.gue_frame(src, ME.into(), &gue(0, &[OTHER.into()], &inner_tcp4(SYN)));
            assert_eq!(run(m.program(), &f).0, XDP_DROP);
        }
        let f = MACS.gue_frame(
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
            let f = MACS.gue_frame(DIRECTOR.into(), ME.into(), g);
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
                MACS.host,
                MACS.director,
                0x0800,
                &ipv4(DIRECTOR, ME, 17, 64, &udp(1, 53, b"dns")),
            ),
            eth(
                MACS.host,
                MACS.director,
                0x0800,
                &ipv4(CLIENT, ME, 6, 64, &tcp(1, 19523, ACK)),
            ),
            eth(
                MACS.host,
                MACS.director,
                0x86dd,
                &ipv6(DIRECTOR6, ME6, 17, 64, &udp(1, 53, b"x")),
            ),
            eth(MACS.host, MACS.director, 0x0806, &[0u8; 28]),
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
        let f = MACS.gue_frame(DIRECTOR.into(), ME.into(), &gue(0, &[OTHER.into()], &inner));
        assert_eq!(run(m.program(), &f), (XDP_PASS, MACS.stripped(&inner)));
        // IPv6 client in an IPv4 tunnel, and IPv6 in IPv6.
        let inner = inner_tcp6(SYN);
        let f = MACS.gue_frame(DIRECTOR.into(), ME.into(), &gue(0, &[OTHER.into()], &inner));
        assert_eq!(run(m.program(), &f), (XDP_PASS, MACS.stripped(&inner)));
        let f = MACS.gue_frame(
            DIRECTOR6.into(),
            ME6.into(),
            &gue(0, &[OTHER6.into()], &inner),
        );
        assert_eq!(run(m.program(), &f), (XDP_PASS, MACS.stripped(&inner)));
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
            let f = MACS.gue_frame(DIRECTOR.into(), ME.into(), &g);
            assert_eq!(run(m.program(), &f), (XDP_PASS, MACS.stripped(&inner)));
        }
        let inner = inner_tcp6(ACK);
        let f = MACS.gue_frame(
            DIRECTOR6.into(),
            ME6.into(),
            &gue(5, &[OTHER6.into()], &inner),
        );
        assert_eq!(run(m.program(), &f), (XDP_PASS, MACS.stripped(&inner)));
    });
    assert_only(&stats, &[(RedirectStat::AcceptedLastResort, 3)]);
}

#[test]
fn ack_whose_next_hop_is_this_host_is_accepted() {
    let stats = in_lab(config(), |m| {
        let inner = inner_tcp4(ACK);
        let f = MACS.gue_frame(DIRECTOR.into(), ME.into(), &gue(0, &[ME.into()], &inner));
        assert_eq!(run(m.program(), &f), (XDP_PASS, MACS.stripped(&inner)));
        let f = MACS.gue_frame(
            DIRECTOR.into(),
            ME.into(),
            &gue(1, &[OTHER.into(), ME.into()], &inner),
        );
        assert_eq!(run(m.program(), &f), (XDP_PASS, MACS.stripped(&inner)));
        let inner = inner_tcp6(ACK);
        let f = MACS.gue_frame(DIRECTOR6.into(), ME6.into(), &gue(0, &[ME6.into()], &inner));
        assert_eq!(run(m.program(), &f), (XDP_PASS, MACS.stripped(&inner)));
    });
    assert_only(&stats, &[(RedirectStat::ForwardedToSelf, 3)]);
}

/// The forwarded frame docs/spec.md section 3 step 6 describes, to `OTHER` or
/// `OTHER6`.
fn forwarded(received_gue: &[u8], next_hop_index: usize, v6: bool) -> Vec<u8> {
    if v6 {
        MACS.forwarded(received_gue, next_hop_index, ME6.into(), OTHER6.into())
    } else {
        MACS.forwarded(received_gue, next_hop_index, ME.into(), OTHER.into())
    }
}

#[test]
fn ack_without_socket_is_forwarded_to_the_next_hop_with_exact_bytes() {
    let stats = in_lab(config(), |m| {
        let inner = inner_tcp4(ACK);
        let g = gue(0, &[OTHER.into()], &inner);
        let f = MACS.gue_frame(DIRECTOR.into(), ME.into(), &g);
        assert_eq!(run(m.program(), &f), (XDP_TX, forwarded(&g, 0, false)));
        // Second of two hops, outer TTL reset.
        let g = gue(1, &[ME.into(), OTHER.into()], &inner);
        let mut f = MACS.gue_frame(DIRECTOR.into(), ME.into(), &g);
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
        let f = MACS.gue_frame(DIRECTOR6.into(), ME6.into(), &g);
        assert_eq!(run(m.program(), &f), (XDP_TX, forwarded(&g, 0, true)));
    });
    assert_only(&stats, &[(RedirectStat::ForwardedToAlternate, 3)]);
}

/// Backends of longer chains (docs/spec.md section 4: 1 + H backends, H up to
/// 3) besides `ME` and `OTHER`: inside the allowed prefixes, so that they
/// may have forwarded the packet here, but never sent to from here.
const FAR: [Ipv4Addr; 2] = [
    Ipv4Addr::new(198, 51, 100, 13),
    Ipv4Addr::new(198, 51, 100, 14),
];
/// The same, IPv6.
const FAR6: [Ipv6Addr; 2] = [
    Ipv6Addr::new(0x2001, 0xdb8, 1, 0, 0, 0, 0, 3),
    Ipv6Addr::new(0x2001, 0xdb8, 1, 0, 0, 0, 0, 4),
];

/// The hop lists of chains of H = 2 and 3 in one family: `me`, `other`
/// and `far` placed as `layout` says ('M', 'O', 'F', 'G').
fn chain(layout: &str, me: IpAddr, other: IpAddr, far: [IpAddr; 2]) -> Vec<IpAddr> {
    layout
        .chars()
        .map(|c| match c {
            'M' => me,
            'O' => other,
            'F' => far[0],
            _ => far[1],
        })
        .collect()
}

/// Both families' versions of `layout`: (outer source it arrives from,
/// this host, hops), IPv4 then IPv6.
fn chains(layout: &str) -> [(IpAddr, IpAddr, Vec<IpAddr>); 2] {
    [
        (
            FAR[0].into(),
            ME.into(),
            chain(layout, ME.into(), OTHER.into(), FAR.map(IpAddr::from)),
        ),
        (
            FAR6[0].into(),
            ME6.into(),
            chain(layout, ME6.into(), OTHER6.into(), FAR6.map(IpAddr::from)),
        ),
    ]
}

#[test]
fn chains_of_two_and_three_hops_forward_from_the_middle_with_exact_bytes() {
    let stats = in_lab(config(), |m| {
        // (hop list, next_hop on arrival): the next hop is OTHER, after
        // one or two backends that passed the packet on.
        for (layout, next) in [("FO", 1u8), ("FOG", 1), ("FGO", 2)] {
            for (from, me, hops) in chains(layout) {
                for inner in [inner_tcp4(ACK), inner_tcp6(ACK)] {
                    let g = gue(next, &hops, &inner);
                    let f = MACS.gue_frame(from, me, &g);
                    let want = forwarded(&g, next.into(), me.is_ipv6());
                    assert_eq!(
                        run(m.program(), &f),
                        (XDP_TX, want.clone()),
                        "hops {hops:?}, next_hop {next}"
                    );
                    // next_hop moved on by one, hop_count and the hops kept.
                    let at = 14 + if me.is_ipv6() { 40 } else { 20 } + 8;
                    assert_eq!(want[at + 6..at + 8], [next + 1, hops.len() as u8]);
                }
            }
        }
    });
    assert_only(&stats, &[(RedirectStat::ForwardedToAlternate, 12)]);
}

#[test]
fn chains_of_two_and_three_hops_end_in_last_resort_or_this_host() {
    let stats = in_lab(config(), |m| {
        // next_hop == hop_count: nowhere left, even when the last hop is
        // this host (step 4 comes before step 5).
        for (layout, next) in [("OF", 2u8), ("OFG", 3), ("OM", 2), ("OFM", 3), ("OFG", 7)] {
            for (from, me, hops) in chains(layout) {
                let inner = inner_tcp4(ACK);
                let f = MACS.gue_frame(from, me, &gue(next, &hops, &inner));
                assert_eq!(
                    run(m.program(), &f),
                    (XDP_PASS, MACS.stripped(&inner)),
                    "hops {hops:?}, next_hop {next}"
                );
            }
        }
        // The next hop is this host, at the end of a chain of three: the
        // packet stops here, not sent on to the hop after nor to itself.
        for (layout, next) in [("FOM", 2u8), ("FMO", 1)] {
            for (from, me, hops) in chains(layout) {
                let inner = inner_tcp6(ACK);
                let f = MACS.gue_frame(from, me, &gue(next, &hops, &inner));
                assert_eq!(
                    run(m.program(), &f),
                    (XDP_PASS, MACS.stripped(&inner)),
                    "hops {hops:?}, next_hop {next}"
                );
            }
        }
    });
    assert_only(
        &stats,
        &[
            (RedirectStat::AcceptedLastResort, 10),
            (RedirectStat::ForwardedToSelf, 4),
        ],
    );
}

#[test]
fn chains_of_two_and_three_hops_with_an_inconsistent_hlen_are_dropped_and_counted() {
    let stats = in_lab(config(), |m| {
        let mut n = 0;
        for layout in ["FO", "FOG"] {
            for (from, me, hops) in chains(layout) {
                let h = hops.len();
                let words = if me.is_ipv6() { 4 } else { 1 };
                let good = gue(0, &hops, &inner_tcp4(ACK));
                assert_eq!(usize::from(good[0]), 1 + h * words, "the builder's hlen");
                let mut cases: Vec<(String, Vec<u8>)> = Vec::new();
                // hlen of one hop fewer or more than hop_count says.
                for hlen in [1 + (h - 1) * words, 1 + (h + 1) * words] {
                    let mut g = good.clone();
                    g[0] = hlen as u8;
                    cases.push((format!("hlen {hlen}"), g));
                }
                // hlen of the other private type's hops.
                let mut g = good.clone();
                g[0] = (1 + h * if me.is_ipv6() { 1 } else { 4 }) as u8;
                cases.push((format!("hlen {} of the other hop size", g[0]), g));
                // hop_count one fewer or more than hlen says.
                for count in [h - 1, h + 1] {
                    let mut g = good.clone();
                    g[7] = count as u8;
                    cases.push((format!("hop_count {count}"), g));
                }
                // Consistent, but the frame ends inside the last hop.
                let hops_end = 8 + h * 4 * words;
                cases.push(("cut in the last hop".into(), good[..hops_end - 2].to_vec()));
                for (what, g) in &cases {
                    let f = MACS.gue_frame(from, me, g);
                    assert_eq!(run(m.program(), &f).0, XDP_DROP, "{hops:?}: {what}");
                }
                n += cases.len();
            }
        }
        assert_eq!(n, 24);
    });
    assert_only(&stats, &[(RedirectStat::DroppedInvalid, 24)]);
}

#[test]
fn forward_without_a_neighbour_or_route_is_dropped_and_counted() {
    let stats = in_lab(config(), |m| {
        // On-link but no neighbour entry, then no route at all.
        for hop in [
            Ipv4Addr::new(198, 51, 100, 13),
            Ipv4Addr::new(192, 0, 2, 200),
        ] {
            let f = MACS.gue_frame(
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
            let f = MACS.gue_frame(DIRECTOR.into(), ME.into(), &gue(0, &[OTHER.into()], &inner));
            assert_eq!(run(m.program(), &f), (XDP_PASS, MACS.stripped(&inner)));
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
        let f = MACS.gue_frame(DIRECTOR.into(), ME.into(), &g);
        assert_eq!(run(m.program(), &f), (XDP_TX, forwarded(&g, 0, false)));
        // Last resort, like its TCP packets.
        let f = MACS.gue_frame(DIRECTOR.into(), ME.into(), &gue(1, &[OTHER.into()], &inner));
        assert_eq!(run(m.program(), &f), (XDP_PASS, MACS.stripped(&inner)));

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
        let f = MACS.gue_frame(DIRECTOR6.into(), ME6.into(), &g);
        assert_eq!(run(m.program(), &f), (XDP_TX, forwarded(&g, 0, true)));
        // Quoting UDP: accepted.
        let quoted = ipv4(VIP, CLIENT, 17, 64, &udp(53, 5000, b""));
        let mut icmp = vec![3, 4, 0, 0, 0, 0, 0x05, 0xdc];
        icmp.extend_from_slice(&quoted);
        let inner = ipv4(Ipv4Addr::new(192, 0, 2, 254), VIP, 1, 61, &icmp);
        let f = MACS.gue_frame(DIRECTOR.into(), ME.into(), &gue(0, &[OTHER.into()], &inner));
        assert_eq!(run(m.program(), &f), (XDP_PASS, MACS.stripped(&inner)));
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
        let client =
            connect_from(SocketAddrV4::new(CLIENT, 0), SocketAddrV4::new(VIP, 80)).unwrap();
        let (_server, _) = listener.accept().unwrap();
        let port = client.local_addr().unwrap().port();

        let inner = ipv4(CLIENT, VIP, 6, 61, &tcp(port, 80, ACK));
        let f = MACS.gue_frame(DIRECTOR.into(), ME.into(), &gue(0, &[OTHER.into()], &inner));
        assert_eq!(run(m.program(), &f), (XDP_PASS, MACS.stripped(&inner)));
        // Another port: only the listener matches, so it is forwarded.
        let inner = ipv4(CLIENT, VIP, 6, 61, &tcp(port ^ 1, 80, ACK));
        let g = gue(0, &[OTHER.into()], &inner);
        let f = MACS.gue_frame(DIRECTOR.into(), ME.into(), &g);
        assert_eq!(run(m.program(), &f), (XDP_TX, forwarded(&g, 0, false)));
        // A frag-needed quoting the established flow follows it.
        let quoted = ipv4(VIP, CLIENT, 6, 64, &tcp(80, port, ACK));
        let mut icmp = vec![3, 4, 0, 0, 0, 0, 0x05, 0xdc];
        icmp.extend_from_slice(&quoted[..28]);
        let inner = ipv4(Ipv4Addr::new(192, 0, 2, 254), VIP, 1, 61, &icmp);
        let f = MACS.gue_frame(DIRECTOR.into(), ME.into(), &gue(0, &[OTHER.into()], &inner));
        assert_eq!(run(m.program(), &f), (XDP_PASS, MACS.stripped(&inner)));
    });
    assert_only(
        &stats,
        &[
            (RedirectStat::AcceptedEstablished, 2),
            (RedirectStat::ForwardedToAlternate, 1),
        ],
    );
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
