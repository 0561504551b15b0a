//! The director program run on real bytes with `BPF_PROG_TEST_RUN`, which
//! attaches nothing to any interface, after [`Dataplane::apply`] of the
//! example config. Needs root (CAP_BPF + CAP_PERFMON + CAP_NET_ADMIN);
//! without it these tests fail rather than skip, because a skipped proof is
//! no proof.
//!
//! These are smoke tests of each path; the exhaustive byte-for-byte cases
//! are the golden tests. The expected packets are built here from
//! docs/director.md with `proto`'s hash and table builder, independently of
//! the eBPF code.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use aya::programs::{TestRun as _, TestRunOptions, Xdp};
use director_xdp::{Dataplane, bind_ids};
use proto::config::{Config, HashFields};
use proto::flow::{Flow, flow_hash, gue_source_port, row_of};
use proto::maps::{DirectorStat, HASH_DST_PORT, HASH_SRC_PORT};

/// Verdicts of `enum xdp_action` (include/uapi/linux/bpf.h).
const XDP_DROP: u32 = 1;
const XDP_PASS: u32 = 2;
const XDP_TX: u32 = 3;

const CLIENT_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x01];
const DIRECTOR_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x02];
/// Next-hop MAC that `resolved_macs` gives every backend.
const BACKEND_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0xbe];
const CLIENT_V4: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 77);
const CLIENT_V6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0x99, 0, 0, 0, 0, 0x77);
const WEB_VIP: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 10);
const WEB_VIP6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0x10, 0, 0, 0, 0, 0x10);
const DNS_VIP: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 53);

fn example() -> Config {
    let text = include_str!("../../examples/director.json");
    Config::from_json(text).expect("examples/director.json is a valid config")
}

fn resolved_macs(_: IpAddr) -> Option<[u8; 6]> {
    Some(BACKEND_MAC)
}

fn no_macs(_: IpAddr) -> Option<[u8; 6]> {
    None
}

fn loaded(config: &Config, mac_of: &dyn Fn(IpAddr) -> Option<[u8; 6]>) -> Dataplane {
    let mut dp = match Dataplane::load() {
        Ok(dp) => dp,
        // `{:?}` carries the verifier log when the kernel refused the program.
        Err(e) => panic!("loading the director (needs root): {e:?}"),
    };
    dp.apply(config, mac_of).expect("applying the config");
    dp
}

/// Runs `program` once on `frame`; the verdict and the frame as it left.
fn run(program: &Xdp, frame: &[u8]) -> (u32, Vec<u8>) {
    // Room for the largest encapsulation (72 bytes) and more, so that a
    // program growing the frame too much would show instead of ENOSPC.
    let mut out = vec![0u8; frame.len() + 256];
    let result = program
        .test_run(TestRunOptions {
            data_in: Some(frame),
            data_out: Some(&mut out),
            ..Default::default()
        })
        .expect("BPF_PROG_TEST_RUN");
    out.truncate(result.data_size_out as usize);
    (result.return_value, out)
}

fn checksum(bytes: &[u8]) -> u16 {
    let (words, rest) = bytes.as_chunks::<2>();
    let mut sum: u32 = words
        .iter()
        .map(|&w| u32::from(u16::from_be_bytes(w)))
        .sum();
    if let [b] = rest {
        sum += u32::from(*b) << 8;
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

fn ethernet(vlan: Option<u16>, ethertype: u16) -> Vec<u8> {
    let mut f = Vec::new();
    f.extend_from_slice(&DIRECTOR_MAC);
    f.extend_from_slice(&CLIENT_MAC);
    if let Some(tci) = vlan {
        f.extend_from_slice(&0x8100u16.to_be_bytes());
        f.extend_from_slice(&tci.to_be_bytes());
    }
    f.extend_from_slice(&ethertype.to_be_bytes());
    f
}

fn ipv4(src: Ipv4Addr, dst: Ipv4Addr, proto: u8, payload: &[u8]) -> Vec<u8> {
    let mut h = vec![0x45, 0];
    h.extend_from_slice(&(20 + payload.len() as u16).to_be_bytes());
    h.extend_from_slice(&[0x12, 0x34, 0x40, 0, 64, proto, 0, 0]);
    h.extend_from_slice(&src.octets());
    h.extend_from_slice(&dst.octets());
    let c = checksum(&h);
    h[10..12].copy_from_slice(&c.to_be_bytes());
    h.extend_from_slice(payload);
    h
}

fn ipv6(src: Ipv6Addr, dst: Ipv6Addr, next: u8, payload: &[u8]) -> Vec<u8> {
    let mut h = vec![0x60, 0, 0, 0];
    h.extend_from_slice(&(payload.len() as u16).to_be_bytes());
    h.extend_from_slice(&[next, 64]);
    h.extend_from_slice(&src.octets());
    h.extend_from_slice(&dst.octets());
    h.extend_from_slice(payload);
    h
}

/// A TCP SYN with some payload-free header; checksum left 0 (never checked).
fn tcp(sport: u16, dport: u16) -> Vec<u8> {
    let mut h = Vec::new();
    h.extend_from_slice(&sport.to_be_bytes());
    h.extend_from_slice(&dport.to_be_bytes());
    h.extend_from_slice(&[0, 0, 0, 1, 0, 0, 0, 0, 0x50, 0x02, 0xff, 0xff, 0, 0, 0, 0]);
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

fn frame(vlan: Option<u16>, ip: &[u8]) -> Vec<u8> {
    let ethertype = if ip[0] >> 4 == 6 { 0x86dd } else { 0x0800 };
    let mut f = ethernet(vlan, ethertype);
    f.extend_from_slice(ip);
    f
}

/// What docs/director.md says the director sends for `received`.
struct Expect<'a> {
    config: &'a Config,
    table: &'a str,
    /// The flow hashed: client, VIP and ports.
    src: IpAddr,
    dst: IpAddr,
    sport: u16,
    dport: u16,
    /// Whether ports may enter the hash (not for fragments).
    ports: bool,
    /// Destination MAC of the output.
    mac: [u8; 6],
}

impl Expect<'_> {
    fn packet(&self, received: &[u8]) -> Vec<u8> {
        let table = self.config.table(self.table).expect("table in config");
        let mut fields = self.config.director.hash_fields.0;
        if !self.ports {
            fields &= !(HASH_SRC_PORT | HASH_DST_PORT);
        }
        let octets = |a: IpAddr| match a {
            IpAddr::V4(a) => a.octets().to_vec(),
            IpAddr::V6(a) => a.octets().to_vec(),
        };
        let (src, dst) = (octets(self.src), octets(self.dst));
        let hash = flow_hash(
            &table.hash_key,
            fields,
            &Flow {
                src_addr: &src,
                dst_addr: &dst,
                src_port: self.sport,
                dst_port: self.dport,
            },
        );
        let rendezvous = table.rendezvous().expect("table builds");
        let chain = rendezvous
            .row_addrs()
            .nth(row_of(hash) as usize)
            .expect("row in table");
        let primary = chain.primary();
        let client_port = if self.ports { self.sport } else { 0 };

        let vlan = received[12..14] == [0x81, 0x00];
        let l2 = if vlan { 18 } else { 14 };
        let inner = &received[l2..];
        let hops: Vec<u8> = chain.alternates().iter().flat_map(|a| octets(*a)).collect();
        let private_len = 4 + hops.len();
        let udp_len = 8 + 4 + private_len + inner.len();
        let mut out = Vec::new();
        out.extend_from_slice(&self.mac);
        out.extend_from_slice(&received[0..6]);
        if vlan {
            out.extend_from_slice(&received[12..16]);
        }
        let d = &self.config.director;
        match primary {
            IpAddr::V4(p) => {
                out.extend_from_slice(&0x0800u16.to_be_bytes());
                let mut h = vec![0x45, 0];
                h.extend_from_slice(&(20 + udp_len as u16).to_be_bytes());
                h.extend_from_slice(&[0, 0, 0x40, 0, 0x40, 0x11, 0, 0]);
                h.extend_from_slice(&d.source_v4.expect("source_v4").octets());
                h.extend_from_slice(&p.octets());
                let c = checksum(&h);
                h[10..12].copy_from_slice(&c.to_be_bytes());
                out.extend_from_slice(&h);
            }
            IpAddr::V6(p) => {
                out.extend_from_slice(&0x86ddu16.to_be_bytes());
                out.extend_from_slice(&[0x60, 0, 0, 0]);
                out.extend_from_slice(&(udp_len as u16).to_be_bytes());
                out.extend_from_slice(&[0x11, 0x40]);
                out.extend_from_slice(&d.source_v6.expect("source_v6").octets());
                out.extend_from_slice(&p.octets());
            }
        }
        out.extend_from_slice(&gue_source_port(hash, client_port).to_be_bytes());
        out.extend_from_slice(&19523u16.to_be_bytes());
        out.extend_from_slice(&(udp_len as u16).to_be_bytes());
        out.extend_from_slice(&[0, 0]);
        let inner_proto = if inner[0] >> 4 == 6 { 41 } else { 4 };
        out.extend_from_slice(&[(private_len / 4) as u8, inner_proto, 0, 0]);
        let private_type = if primary.is_ipv6() { 1 } else { 0 };
        let hop_count = chain.alternates().len() as u8;
        out.extend_from_slice(&[0, private_type, 0, hop_count]);
        out.extend_from_slice(&hops);
        out.extend_from_slice(inner);
        out
    }
}

/// The id of bind `index` of table `table` in `config`.
fn bind_id(config: &Config, table: &str, index: usize) -> u32 {
    bind_ids(config)
        .into_iter()
        .find(|b| b.table == table && b.index == index)
        .expect("bind in config")
        .id
}

#[test]
fn ipv4_tcp_to_a_vip_is_encapsulated_to_the_rows_primary() {
    let config = example();
    let dp = loaded(&config, &resolved_macs);
    let received = frame(None, &ipv4(CLIENT_V4, WEB_VIP, 6, &tcp(40000, 80)));

    let (verdict, out) = run(dp.program(), &received);

    assert_eq!(verdict, XDP_TX);
    let want = Expect {
        config: &config,
        table: "web",
        src: CLIENT_V4.into(),
        dst: WEB_VIP.into(),
        sport: 40000,
        dport: 80,
        ports: true,
        mac: BACKEND_MAC,
    }
    .packet(&received);
    assert_eq!(out, want);
    // The fields docs/director.md spells out, checked literally once.
    assert_eq!(&out[14..16], &[0x45, 0x00]);
    assert_eq!(&out[18..24], &[0, 0, 0x40, 0, 0x40, 0x11]);
    assert_eq!(checksum(&out[14..34]), 0, "outer IPv4 checksum");
    assert_eq!(&out[26..30], &[192, 0, 2, 1], "director.source_v4");
    assert_eq!(&out[36..38], &19523u16.to_be_bytes());
    assert_eq!(&out[40..42], &[0, 0], "UDP checksum 0");
    // Table "web" has two alternates: hlen 3 words, two IPv4 hops.
    assert_eq!(&out[42..50], &[3, 4, 0, 0, 0, 0, 0, 2], "GUE + GLB header");
    assert_eq!(&out[58..], &received[14..], "the original packet follows");

    let stats = dp.stats().expect("stats");
    assert_eq!(stats.get(DirectorStat::Encapsulated), 1);
    assert_eq!(stats.get(DirectorStat::MacFallback), 0);
    let bind = bind_id(&config, "web", 0);
    let per_bind = stats.per_bind[bind as usize];
    assert_eq!(
        (per_bind.packets, per_bind.bytes),
        (1, received.len() as u64)
    );
    // Per backend: the primary the packet went to, and no other.
    let primary = IpAddr::from(<[u8; 4]>::try_from(&out[30..34]).expect("4 bytes"));
    let backends = config.table("web").expect("web").backends.len();
    assert_eq!(
        stats
            .per_backend
            .iter()
            .filter(|b| b.table == "web")
            .count(),
        backends
    );
    for b in &stats.per_backend {
        let want = if b.table == "web" && b.addr == primary {
            (1, received.len() as u64)
        } else {
            (0, 0)
        };
        assert_eq!((b.packets, b.bytes), want, "{b:?}");
        assert_eq!(dp.backend_index(&b.table, b.addr), Some(b.index));
    }
}

#[test]
fn packet_for_no_vip_passes_untouched() {
    let config = example();
    let dp = loaded(&config, &resolved_macs);
    let other = Ipv4Addr::new(203, 0, 113, 99);
    let received = frame(None, &ipv4(CLIENT_V4, other, 6, &tcp(40000, 80)));
    // A VIP, but a port no bind serves.
    let wrong_port = frame(None, &ipv4(CLIENT_V4, WEB_VIP, 6, &tcp(40000, 81)));

    for f in [&received, &wrong_port] {
        let (verdict, out) = run(dp.program(), f);
        assert_eq!(verdict, XDP_PASS);
        assert_eq!(&out, f);
    }
    let stats = dp.stats().expect("stats");
    assert_eq!(stats.get(DirectorStat::NotVip), 2);
    assert_eq!(stats.get(DirectorStat::Encapsulated), 0);
}

#[test]
fn vlan_tagged_ipv6_client_keeps_its_tag_and_goes_to_ipv4_backends() {
    let config = example();
    let dp = loaded(&config, &no_macs);
    let received = frame(
        Some(0x0123),
        &ipv6(CLIENT_V6, WEB_VIP6, 6, &tcp(50000, 443)),
    );

    let (verdict, out) = run(dp.program(), &received);

    assert_eq!(verdict, XDP_TX);
    let want = Expect {
        config: &config,
        table: "web",
        src: CLIENT_V6.into(),
        dst: WEB_VIP6.into(),
        sport: 50000,
        dport: 443,
        ports: true,
        mac: config.director.gateway_mac.expect("gateway_mac"),
    }
    .packet(&received);
    assert_eq!(out, want);
    assert_eq!(&out[12..16], &[0x81, 0x00, 0x01, 0x23], "the tag is kept");
    assert_eq!(&out[16..18], &[0x08, 0x00], "outer family: the backends'");
    assert_eq!(out[18 + 20 + 8 + 1], 41, "GUE inner protocol IPv6");
    let stats = dp.stats().expect("stats");
    assert_eq!(stats.get(DirectorStat::MacFallback), 1);
    assert_eq!(stats.get(DirectorStat::Encapsulated), 1);
}

#[test]
fn udp_to_a_vip_with_ipv6_backends_gets_an_ipv6_outer_header_and_hop() {
    let config = example();
    let dp = loaded(&config, &resolved_macs);
    let received = frame(
        None,
        &ipv4(CLIENT_V4, DNS_VIP, 17, &udp(5353, 53, b"query")),
    );

    let (verdict, out) = run(dp.program(), &received);

    assert_eq!(verdict, XDP_TX);
    let want = Expect {
        config: &config,
        table: "dns",
        src: CLIENT_V4.into(),
        dst: DNS_VIP.into(),
        sport: 5353,
        dport: 53,
        ports: true,
        mac: BACKEND_MAC,
    }
    .packet(&received);
    assert_eq!(out, want);
    assert_eq!(&out[12..14], &[0x86, 0xdd]);
    // Two IPv6 hops (the default): hlen 1 + 2 x 4 words.
    assert_eq!(&out[14 + 40 + 8..14 + 40 + 16], &[9, 4, 0, 0, 0, 1, 0, 2]);
    assert_eq!(out.len(), received.len() + 40 + 8 + 4 + 4 + 2 * 16);
}

#[test]
fn director_hash_equals_proto_flow_hash_for_every_field_set() {
    let mut config = example();
    let mut dp = loaded(&config, &resolved_macs);
    let v4 = frame(None, &ipv4(CLIENT_V4, WEB_VIP, 6, &tcp(40001, 443)));
    let v6 = frame(None, &ipv6(CLIENT_V6, WEB_VIP6, 6, &tcp(40002, 443)));
    // Every subset of the four fields, in both families: the absorber in
    // the eBPF program meets every alignment of every field.
    for bits in 1..=15u8 {
        config.director.hash_fields = HashFields(bits);
        dp.apply(&config, &resolved_macs).expect("re-applying");
        for (received, src, dst, sport) in [
            (&v4, IpAddr::from(CLIENT_V4), IpAddr::from(WEB_VIP), 40001),
            (&v6, IpAddr::from(CLIENT_V6), IpAddr::from(WEB_VIP6), 40002),
        ] {
            let (verdict, out) = run(dp.program(), received);
            assert_eq!(verdict, XDP_TX, "fields {bits:#x}, client {src}");
            let want = Expect {
                config: &config,
                table: "web",
                src,
                dst,
                sport,
                dport: 443,
                ports: true,
                mac: BACKEND_MAC,
            }
            .packet(received);
            assert_eq!(out, want, "fields {bits:#x}, client {src}");
        }
    }
}

#[test]
fn fragments_are_hashed_without_ports_and_use_the_first_bind() {
    let mut config = example();
    config.director.hash_fields = HashFields(0xf);
    let dp = loaded(&config, &resolved_macs);
    // A later fragment (offset 185 x 8) of a TCP datagram to the web VIP:
    // no ports, the VIP's first bind (port 80).
    let mut ip = ipv4(CLIENT_V4, WEB_VIP, 6, &[0xab; 24]);
    ip[6..8].copy_from_slice(&185u16.to_be_bytes());
    ip[10..12].copy_from_slice(&[0, 0]);
    let c = checksum(&ip[..20]);
    ip[10..12].copy_from_slice(&c.to_be_bytes());
    let received = frame(None, &ip);

    let (verdict, out) = run(dp.program(), &received);

    assert_eq!(verdict, XDP_TX);
    let want = Expect {
        config: &config,
        table: "web",
        src: CLIENT_V4.into(),
        dst: WEB_VIP.into(),
        sport: 0,
        dport: 0,
        ports: false,
        mac: BACKEND_MAC,
    }
    .packet(&received);
    assert_eq!(out, want);
    let stats = dp.stats().expect("stats");
    assert_eq!(stats.get(DirectorStat::Fragment), 1);
    assert_eq!(
        stats.per_bind[bind_id(&config, "web", 0) as usize].packets,
        1
    );
}

#[test]
fn icmp_frag_needed_follows_the_flow_it_quotes() {
    let mut config = example();
    config.director.hash_fields = HashFields(0xf);
    let dp = loaded(&config, &resolved_macs);
    // The VIP's reply 203.0.113.10:443 -> client:40003, quoted by a router.
    let quoted = ipv4(WEB_VIP, CLIENT_V4, 6, &tcp(443, 40003));
    let mut icmp = vec![3, 4, 0, 0, 0, 0, 0x05, 0xdc];
    icmp.extend_from_slice(&quoted[..28]);
    let router = Ipv4Addr::new(198, 51, 100, 1);
    let received = frame(None, &ipv4(router, WEB_VIP, 1, &icmp));

    let (verdict, out) = run(dp.program(), &received);

    assert_eq!(verdict, XDP_TX);
    let want = Expect {
        config: &config,
        table: "web",
        src: CLIENT_V4.into(),
        dst: WEB_VIP.into(),
        sport: 40003,
        dport: 443,
        ports: true,
        mac: BACKEND_MAC,
    }
    .packet(&received);
    assert_eq!(out, want);
    let stats = dp.stats().expect("stats");
    assert_eq!(stats.get(DirectorStat::IcmpHandled), 1);
    assert_eq!(
        stats.per_bind[bind_id(&config, "web", 1) as usize].packets,
        1
    );
}

#[test]
fn malformed_packets_for_a_vip_are_dropped() {
    let config = example();
    let dp = loaded(&config, &resolved_macs);
    let good = ipv4(CLIENT_V4, WEB_VIP, 6, &tcp(40000, 80));
    // Total length longer than the frame.
    let mut long = good.clone();
    long[2..4].copy_from_slice(&200u16.to_be_bytes());
    // IHL 4.
    let mut short_ihl = good.clone();
    short_ihl[0] = 0x44;
    // TCP header cut at 12 bytes (total length says so too).
    let mut cut = ipv4(CLIENT_V4, WEB_VIP, 6, &tcp(40000, 80)[..12]);
    cut.truncate(32);

    for ip in [&long, &short_ihl, &cut] {
        let (verdict, _) = run(dp.program(), &frame(None, ip));
        assert_eq!(verdict, XDP_DROP);
    }
    let stats = dp.stats().expect("stats");
    assert_eq!(stats.get(DirectorStat::Malformed), 3);
}

#[test]
fn unresolved_mac_without_gateway_is_an_encap_failure() {
    let mut config = example();
    config.director.gateway_mac = None;
    let dp = loaded(&config, &no_macs);
    let received = frame(None, &ipv4(CLIENT_V4, WEB_VIP, 6, &tcp(40000, 80)));

    let (verdict, _) = run(dp.program(), &received);

    assert_eq!(verdict, XDP_DROP);
    let stats = dp.stats().expect("stats");
    assert_eq!(stats.get(DirectorStat::EncapFailure), 1);
    assert_eq!(stats.get(DirectorStat::Encapsulated), 0);
}

// The benchmark's references: `make test` runs these with the `bench`
// feature, which builds them into the object.
#[cfg(feature = "bench")]
#[test]
fn bench_floor_transmits_the_frame_untouched() {
    let mut dp = loaded(&example(), &no_macs);
    let received = frame(None, &ipv4(CLIENT_V4, WEB_VIP, 6, &tcp(40000, 80)));

    let program = dp
        .load_program(director_xdp::BENCH_FLOOR_PROGRAM)
        .expect("bench_floor");
    let (verdict, out) = run(program, &received);

    assert_eq!(verdict, XDP_TX);
    assert_eq!(out, received);
}

#[cfg(feature = "bench")]
#[test]
fn bench_min_encap_prepends_40_bytes_and_writes_54() {
    let mut dp = loaded(&example(), &no_macs);
    let received = frame(None, &ipv4(CLIENT_V4, WEB_VIP, 6, &tcp(40000, 80)));

    let program = dp
        .load_program(director_xdp::BENCH_MIN_ENCAP_PROGRAM)
        .expect("bench_min_encap");
    let (verdict, out) = run(program, &received);

    assert_eq!(verdict, XDP_TX);
    assert_eq!(out.len(), received.len() + 40);
    #[rustfmt::skip]
    let header: [u8; 54] = [
        // Ethernet 02:00:00:00:00:02 <- 02:00:00:00:00:01, IPv4.
        0x02, 0, 0, 0, 0, 0x02, 0x02, 0, 0, 0, 0, 0x01, 0x08, 0x00,
        // IPv4, total length 40, DF, TTL 64, UDP, 192.0.2.1 -> 198.51.100.11.
        0x45, 0, 0, 40, 0, 0, 0x40, 0, 64, 17, 0, 0, 192, 0, 2, 1, 198, 51, 100, 11,
        // UDP 32768 -> 19523 (0x4c43), length 20.
        0x80, 0, 0x4c, 0x43, 0, 20, 0, 0,
        // GUE-like data and one hop, 198.51.100.12.
        2, 4, 0, 0, 0, 0, 0, 1, 198, 51, 100, 12,
    ];
    assert_eq!(out[..54], header, "the constant outer header");
    assert_eq!(&out[54..], &received[14..], "the IP packet after 54 bytes");
}

#[cfg(feature = "bench")]
#[test]
fn bench_siphash_transmits_frames_of_32_bytes_or_more_untouched() {
    let mut dp = loaded(&example(), &no_macs);
    let received = frame(None, &ipv6(CLIENT_V6, WEB_VIP6, 6, &tcp(40000, 443)));
    // The program's hash of the first 32 bytes: key state, then message.
    let word = |i: usize| u64::from_le_bytes(received[i..i + 8].try_into().expect("8 bytes"));
    let mut h = proto::siphash::SipHasher24::from_state([word(0), word(8), word(16), word(24)]);
    h.write_word(word(16));
    h.write_word(word(24));
    assert_ne!(h.finish(0, 16), 0, "a hash of zero would be dropped");

    let program = dp
        .load_program(director_xdp::BENCH_SIPHASH_PROGRAM)
        .expect("bench_siphash");
    let (verdict, out) = run(program, &received);
    assert_eq!(verdict, XDP_TX);
    assert_eq!(out, received);

    let (verdict, out) = run(program, &received[..31]);
    assert_eq!(verdict, XDP_DROP, "a frame shorter than 32 bytes");
    assert_eq!(out, &received[..31]);
}

#[test]
fn director_verifies_well_within_the_kernel_complexity_limit() {
    let dp = loaded(&example(), &no_macs);
    let info = dp.program().info().expect("program info");
    let verified = info
        .verified_instruction_count()
        .expect("the kernel reports verified instructions (5.16+)");
    let translated = info.size_translated().unwrap_or_default();
    eprintln!("director: {verified} instructions verified, {translated} bytes translated");
    // The kernel stops at 1,000,000. About 360,000 now: each fast path
    // (IPv4, IPv6) inlines its own hash and encapsulation, shared by its
    // TCP, UDP and ICMP error packets, and the verifier walks the
    // counting and its undo on each path to a failure or to a packet too
    // big for the path MTU (the ICMP error itself, `director_too_big`, is
    // a global function checked once: about 1,500, and so is the IP-in-IP
    // encapsulation, `director_ipip`). 600,000 leaves
    // room to grow and tells when a change makes the verifier's walk
    // explode (moving the non-default hash fields out of line, tried,
    // took it to 740,000).
    assert!(verified < 600_000, "{verified} instructions verified");
}

#[test]
fn every_host_vip_is_found_when_many_share_the_host_vip_table() {
    use aya::maps::Array;
    use proto::config::{Bind, Prefix, Proto};
    use proto::maps::{DirectorSettings, VipSlot, names, vip_fold, vip_home};

    // 240 single-address VIPs, one bind each: 40 sequential IPv4 ones and
    // 200 IPv6 ones with scattered bits, too many for the loader to give
    // every one its home entry, so some sit further along and the program
    // must probe for them.
    let mut config = example();
    config.tables.truncate(1);
    let mut state: u64 = 0x5eed;
    let mut scattered = move || {
        // splitmix64
        state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let z = (state ^ (state >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        let z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    };
    let vips: Vec<IpAddr> = (1..=40u8)
        .map(|n| IpAddr::V4(Ipv4Addr::new(203, 0, 113, n)))
        .chain((0..200).map(|_| {
            let low = u128::from(scattered()) | (u128::from(scattered() as u32) << 64);
            IpAddr::V6(Ipv6Addr::from_bits((0x2001_0db8u128 << 96) | low))
        }))
        .collect();
    config.tables[0].binds = vips
        .iter()
        .map(|&addr| Bind {
            prefix: Prefix {
                addr,
                len: if addr.is_ipv4() { 32 } else { 128 },
            },
            proto: Proto::Tcp,
            port_start: 80,
            port_end: 80,
        })
        .collect();
    let dp = loaded(&config, &resolved_macs);

    // Some VIP is off its home entry (else this test proves less than it says).
    let settings: DirectorSettings = Array::<_, DirectorSettings>::try_from(
        dp.ebpf().map(names::SETTINGS).expect("settings map"),
    )
    .expect("settings array")
    .get(&0, 0)
    .expect("settings");
    let slot = u32::from(settings.vip_slot & 1);
    let (mult, bits) = (
        settings.vip_mult[slot as usize],
        settings.vip_bits[slot as usize],
    );
    let table = Array::<_, VipSlot>::try_from(dp.ebpf().map(names::VIP_TABLE).expect("VIP table"))
        .expect("VIP table array");
    let base = slot * proto::maps::VIP_TABLE_STRIDE;
    let off_home = (0..(1u32 << bits) + proto::maps::VIP_TABLE_PROBES)
        .filter_map(|i| {
            let e = table.get(&(base + i), 0).expect("entry");
            (e.family != 0 && vip_home(vip_fold(e.addr), mult, bits) != i).then_some(())
        })
        .count();
    assert!(off_home > 0, "every VIP in its home entry");

    for (i, &vip) in vips.iter().enumerate() {
        let ip = match vip {
            IpAddr::V4(v) => ipv4(CLIENT_V4, v, 6, &tcp(40000, 80)),
            IpAddr::V6(v) => ipv6(CLIENT_V6, v, 6, &tcp(40000, 80)),
        };
        let (verdict, _) = run(dp.program(), &frame(None, &ip));
        assert_eq!(verdict, XDP_TX, "VIP {vip}");
        let stats = dp.stats().expect("stats");
        assert_eq!(stats.per_bind[i].packets, 1, "bind of VIP {vip}");
    }
    let stats = dp.stats().expect("stats");
    assert_eq!(stats.get(DirectorStat::Encapsulated), vips.len() as u64);
    assert_eq!(stats.get(DirectorStat::NotVip), 0);
}
