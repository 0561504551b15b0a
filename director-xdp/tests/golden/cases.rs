//! The golden cases: Katran-style fixtures of (name, config, input frame,
//! expected verdict, expected output frame).
//!
//! Each case states the verdict it expects by hand; the expected bytes come
//! from `proto::director::Model` (the reference written from
//! docs/director.md), cross-checked by hand-written constants for the
//! one-backend table, where every byte is predictable. Nothing here runs the
//! eBPF program. A few clients are chosen by asking the model which backend
//! their row names (to cover a resolved and an unresolved MAC): that picks
//! inputs, never expected outputs.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::OnceLock;

use proto::config::Config;
use proto::director::{Decision, Model, Outcome, Verdict};

use crate::packet::*;

/// The configs the cases run under, applied in this order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Cfg {
    /// [`MAIN`]: hash on the source address (GLB's default).
    Main,
    /// [`MAIN`] with the backend that serves the swap case's flow drained.
    Swapped,
    /// [`MAIN`] with every hash field.
    PortHash,
    /// [`MAIN`] without a gateway MAC.
    NoFallback,
    /// [`MAIN`] with a path MTU of 1500 toward the backends (the others
    /// set none: nothing is too big).
    PathMtu,
    /// [`MAIN`] with chains of three alternates in "web4" and "web6".
    LongChains,
    /// [`MAIN`] with two alternates in "web4" and one in "web6".
    ShortChains,
    /// [`MAIN`] with "web4" and "web6" in IP-in-IP ("solo" stays GUE) and
    /// a path MTU of 1500.
    Ipip,
}

/// Four IPv4 backends ("web4", one alternate per row: GLB's wire output),
/// three IPv6 backends ("web6", two alternates), and a one-backend table
/// ("solo", three alternates: the backend repeated). Bind ids (config
/// order):
///
/// | id | bind | table |
/// |---|---|---|
/// | 0 | 203.0.113.10:80/tcp | web4 |
/// | 1 | 203.0.113.10:53/udp | web4 |
/// | 2 | 203.0.113.10:8000-8099/tcp | web4 |
/// | 3 | [2001:db8:10::10]:443/tcp | web4 |
/// | 4 | [2001:db8:10::10]:443/udp | web4 |
/// | 5 | 203.0.113.64/26:5000-5999/udp | web4 |
/// | 6 | [2001:db8:10::20]:80/tcp | web6 |
/// | 7 | [2001:db8:10::20]:53/udp | web6 |
/// | 8 | 203.0.113.20:80/tcp | web6 |
/// | 9 | 203.0.113.20:4500/udp | web6 |
/// | 10 | 2001:db8:10:100::/56:443/tcp | web6 |
/// | 11 | 203.0.113.70:53/udp (inside bind 5's prefix) | web6 |
/// | 12 | 203.0.113.30:22/tcp | solo |
pub const MAIN: &str = r#"{
  "tables": [
    { "name": "web4",
      "hash_key": "6a09e667f3bcc908bb67ae8584caa73b",
      "seed": "3c6ef372fe94f82ba54ff53a5f1d36f1",
      "hops": 1,
      "binds": [
        { "ip": "203.0.113.10", "proto": "tcp", "port": 80 },
        { "ip": "203.0.113.10", "proto": "udp", "port": 53 },
        { "ip": "203.0.113.10", "proto": "tcp", "port_start": 8000, "port_end": 8099 },
        { "ip": "2001:db8:10::10", "proto": "tcp", "port": 443 },
        { "ip": "2001:db8:10::10", "proto": "udp", "port": 443 },
        { "ip": "203.0.113.64/26", "proto": "udp", "port_start": 5000, "port_end": 5999 }
      ],
      "backends": [
        { "ip": "198.51.100.11", "state": "active", "healthy": true },
        { "ip": "198.51.100.12", "state": "active", "healthy": true },
        { "ip": "198.51.100.13", "state": "active", "healthy": true },
        { "ip": "198.51.100.14", "state": "draining", "healthy": true }
      ] },
    { "name": "web6",
      "hash_key": "510e527fade682d19b05688c2b3e6c1f",
      "seed": "1f83d9abfb41bd6b5be0cd19137e2179",
      "hops": 2,
      "binds": [
        { "ip": "2001:db8:10::20", "proto": "tcp", "port": 80 },
        { "ip": "2001:db8:10::20", "proto": "udp", "port": 53 },
        { "ip": "203.0.113.20", "proto": "tcp", "port": 80 },
        { "ip": "203.0.113.20", "proto": "udp", "port": 4500 },
        { "ip": "2001:db8:10:100::/56", "proto": "tcp", "port": 443 },
        { "ip": "203.0.113.70", "proto": "udp", "port": 53 }
      ],
      "backends": [
        { "ip": "2001:db8:20::1", "state": "active", "healthy": true },
        { "ip": "2001:db8:20::2", "state": "active", "healthy": true },
        { "ip": "2001:db8:20::3", "state": "active", "healthy": true }
      ] },
    { "name": "solo",
      "hash_key": "000102030405060708090a0b0c0d0e0f",
      "seed": "0f0e0d0c0b0a09080706050403020100",
      "hops": 3,
      "binds": [ { "ip": "203.0.113.30", "proto": "tcp", "port": 22 } ],
      "backends": [ { "ip": "198.51.100.99", "state": "active", "healthy": true } ] }
  ],
  "director": {
    "source_v4": "192.0.2.1",
    "source_v6": "2001:db8::1",
    "gateway_mac": "02:00:5e:00:53:01",
    "hash_fields": ["src_addr"]
  }
}"#;

/// The neighbour table the cases run with: some backends resolved, the
/// others sent to the gateway MAC.
pub fn mac_of(ip: IpAddr) -> Option<[u8; 6]> {
    match ip.to_string().as_str() {
        "198.51.100.11" => Some([0x02, 0x00, 0x00, 0x00, 0x01, 0x11]),
        "198.51.100.99" => Some([0x02, 0x00, 0x00, 0x00, 0x01, 0x99]),
        "2001:db8:20::1" => Some([0x02, 0x00, 0x00, 0x00, 0x02, 0x01]),
        _ => None,
    }
}

/// The client and flow of the table-swap case.
const SWAP_CLIENT: &str = "192.0.2.77";

/// The config text of `cfg`.
pub fn config_text(cfg: Cfg) -> String {
    match cfg {
        Cfg::Main => MAIN.to_string(),
        Cfg::Swapped => {
            // Drain whichever backend serves the swap flow under MAIN, so
            // that the same packet must go elsewhere.
            let main = model(Cfg::Main);
            let primary = main
                .process(&swap_packet())
                .decision
                .expect("the swap flow is for a bind")
                .primary;
            let from = format!(r#""ip": "{primary}", "state": "active""#);
            let to = format!(r#""ip": "{primary}", "state": "draining""#);
            replace_once(MAIN, &from, &to)
        }
        Cfg::PortHash => replace_once(
            MAIN,
            r#""hash_fields": ["src_addr"]"#,
            r#""hash_fields": ["src_addr", "dst_addr", "src_port", "dst_port"]"#,
        ),
        // Without source_v6 the loader refuses a config with IPv6 backends
        // (CheckError::MissingSource), so that encap_failure cannot be
        // reached through a config.
        Cfg::NoFallback => replace_once(MAIN, r#""gateway_mac": "02:00:5e:00:53:01","#, ""),
        Cfg::PathMtu => replace_once(
            MAIN,
            r#""hash_fields": ["src_addr"]"#,
            r#""hash_fields": ["src_addr"], "mtu": 1500"#,
        ),
        Cfg::LongChains => with_hops(3, 3),
        Cfg::ShortChains => with_hops(2, 1),
        Cfg::Ipip => {
            let text = replace_once(
                MAIN,
                r#""hash_fields": ["src_addr"]"#,
                r#""hash_fields": ["src_addr"], "mtu": 1500"#,
            );
            // "hops" stays: an IP-in-IP table ignores it.
            let text = replace_once(&text, r#""hops": 1,"#, r#""hops": 1, "encap": "ipip","#);
            replace_once(&text, r#""hops": 2,"#, r#""hops": 2, "encap": "ipip","#)
        }
    }
}

/// [`MAIN`] with `web4` and `web6` hops of alternates per row.
fn with_hops(web4: u8, web6: u8) -> String {
    let text = replace_once(
        MAIN,
        r#""seed": "3c6ef372fe94f82ba54ff53a5f1d36f1",
      "hops": 1,"#,
        &format!(
            r#""seed": "3c6ef372fe94f82ba54ff53a5f1d36f1",
      "hops": {web4},"#
        ),
    );
    replace_once(
        &text,
        r#""seed": "1f83d9abfb41bd6b5be0cd19137e2179",
      "hops": 2,"#,
        &format!(
            r#""seed": "1f83d9abfb41bd6b5be0cd19137e2179",
      "hops": {web6},"#
        ),
    )
}

/// `text` with its one occurrence of `from` replaced.
fn replace_once(text: &str, from: &str, to: &str) -> String {
    assert_eq!(text.matches(from).count(), 1, "{from} once in the config");
    text.replace(from, to)
}

/// The ones' complement sum of `bytes` (16-bit words): 0xffff over a
/// header whose checksum is right.
pub fn ones_complement_sum(bytes: &[u8]) -> u16 {
    let mut sum: u32 = bytes
        .chunks(2)
        .map(|w| u32::from(u16::from_be_bytes([w[0], *w.get(1).unwrap_or(&0)])))
        .sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    sum as u16
}

/// The parsed config of `cfg`.
pub fn config(cfg: Cfg) -> Config {
    Config::from_json(&config_text(cfg))
        .unwrap_or_else(|e| panic!("config {cfg:?} of the golden cases: {e}"))
}

/// The reference model under `cfg`.
pub fn model(cfg: Cfg) -> Model {
    Model::new(&config(cfg), &mac_of).unwrap_or_else(|e| panic!("model of {cfg:?}: {e}"))
}

fn swap_packet() -> Vec<u8> {
    frame(&ip_from(SWAP_CLIENT, "203.0.113.10").tcp(41000, 80, PSH_ACK, b"GET / HTTP/1.1\r\n\r\n"))
}

/// One golden case.
#[derive(Clone, Debug)]
pub struct Case {
    /// The behaviour it proves.
    pub name: String,
    /// The config the director runs when the case runs.
    pub config: Cfg,
    /// The frame given to the director.
    pub input: Vec<u8>,
    /// The verdict, stated by hand.
    pub verdict: Verdict,
    /// The frame that must come out (for `Pass` and `Tx`).
    pub output: Vec<u8>,
    /// What the model says, counters and decision included.
    pub outcome: Outcome,
}

/// Builds the cases, checking each hand-stated verdict against the model.
struct Builder {
    models: HashMap<Cfg, Model>,
    cases: Vec<Case>,
}

impl Builder {
    fn model(&mut self, cfg: Cfg) -> &Model {
        self.models.entry(cfg).or_insert_with(|| model(cfg))
    }

    fn add(&mut self, name: &str, cfg: Cfg, verdict: Verdict, input: Vec<u8>) {
        let outcome = self.model(cfg).process(&input);
        assert_eq!(
            outcome.verdict, verdict,
            "case {name}: the model disagrees with the verdict the case states ({outcome:?})"
        );
        assert!(
            !self.cases.iter().any(|c| c.name == name),
            "case name {name} used twice"
        );
        self.cases.push(Case {
            name: name.to_string(),
            config: cfg,
            input,
            verdict,
            output: outcome.output.clone(),
            outcome,
        });
    }

    fn tx(&mut self, name: &str, input: Vec<u8>) {
        self.add(name, Cfg::Main, Verdict::Tx, input);
    }

    fn pass(&mut self, name: &str, input: Vec<u8>) {
        self.add(name, Cfg::Main, Verdict::Pass, input);
    }

    fn drop(&mut self, name: &str, input: Vec<u8>) {
        self.add(name, Cfg::Main, Verdict::Drop, input);
    }

    /// The first client in 192.0.2.0/24 whose flow to `vip` on `table`
    /// satisfies `want`, for cases that need a particular kind of backend.
    fn client_where(
        &mut self,
        cfg: Cfg,
        packet: impl Fn(&str) -> Vec<u8>,
        want: impl Fn(&Outcome, &Decision) -> bool,
    ) -> Vec<u8> {
        let model = self.model(cfg);
        for host in 1..=254u8 {
            let client = format!("192.0.2.{host}");
            let input = packet(&client);
            let out = model.process(&input);
            if let Some(d) = &out.decision
                && want(&out, d)
            {
                return input;
            }
        }
        panic!("no client in 192.0.2.0/24 fits");
    }
}

/// An ICMPv4 frag-needed from `router` to `vip` quoting `quoted` (next-hop
/// MTU 1400).
fn frag_needed(router: &str, vip: &str, quoted: &[u8]) -> Vec<u8> {
    frame(&ip_from(router, vip).icmp(3, 4, [0, 0, 0x05, 0x78], quoted))
}

/// An ICMPv6 packet-too-big from `router` to `vip` quoting `quoted` (MTU 1280).
fn packet_too_big(router: &str, vip: &str, quoted: &[u8]) -> Vec<u8> {
    frame(&ip_from(router, vip).icmp(2, 0, [0, 0, 0x05, 0x00], quoted))
}

/// What a router quotes of a too-big packet: the IP header and 8 bytes.
fn quote(packet: &[u8]) -> Vec<u8> {
    let hlen = if packet[0] >> 4 == 4 {
        usize::from(packet[0] & 0x0f) * 4
    } else {
        40
    };
    packet[..hlen + 8].to_vec()
}

/// Names of the cases the relation checks refer to.
pub mod names {
    pub const V4_TCP: &str = "ipv4_tcp_to_ipv4_backends";
    pub const V6_TCP_V6: &str = "ipv6_tcp_to_ipv6_backends";
    pub const FRAG_NEEDED: &str = "icmp_frag_needed_follows_the_tcp_flow_it_quotes";
    pub const TOO_BIG: &str = "icmpv6_packet_too_big_follows_the_tcp_flow_it_quotes";
    pub const SWAP_BEFORE: &str = "table_swap_before";
    pub const SWAP_AFTER: &str = "table_swap_after_draining_the_primary";
    pub const PH_FLOW: &str = "port_hash_tcp_flow";
    pub const PH_FRAG_NEEDED: &str = "port_hash_frag_needed_follows_the_tcp_flow";
    pub const PH_TOO_BIG: &str = "port_hash_packet_too_big_follows_the_tcp_flow";
    pub const PH_V6_FLOW: &str = "port_hash_ipv6_tcp_flow";
    /// Under [`super::Cfg::PathMtu`]: per outer family and client family,
    /// the case at the limit (encapsulated) and the one a byte over
    /// (answered), and the limit.
    pub const AT_AND_OVER: [(&str, &str, u32); 4] = [
        (
            "path_mtu_ipv4_tcp_to_ipv4_backends_at_the_limit_is_encapsulated",
            "path_mtu_ipv4_tcp_to_ipv4_backends_a_byte_over_gets_frag_needed",
            1460,
        ),
        (
            "path_mtu_ipv4_tcp_to_ipv6_backends_at_the_limit_is_encapsulated",
            "path_mtu_ipv4_tcp_to_ipv6_backends_a_byte_over_gets_frag_needed",
            1412,
        ),
        (
            "path_mtu_ipv6_tcp_to_ipv4_backends_at_the_limit_is_encapsulated",
            "path_mtu_ipv6_tcp_to_ipv4_backends_a_byte_over_gets_packet_too_big",
            1460,
        ),
        (
            "path_mtu_ipv6_tcp_to_ipv6_backends_at_the_limit_is_encapsulated",
            "path_mtu_ipv6_tcp_to_ipv6_backends_a_byte_over_gets_packet_too_big",
            1412,
        ),
    ];
    /// Under [`super::Cfg::Ipip`]: as [`AT_AND_OVER`], with IP-in-IP's
    /// limits.
    pub const IPIP_AT_AND_OVER: [(&str, &str, u32); 4] = [
        (
            "ipip_path_mtu_ipv4_tcp_to_ipv4_backends_at_the_limit_is_encapsulated",
            "ipip_path_mtu_ipv4_tcp_to_ipv4_backends_a_byte_over_gets_frag_needed",
            1480,
        ),
        (
            "ipip_path_mtu_ipv4_tcp_to_ipv6_backends_at_the_limit_is_encapsulated",
            "ipip_path_mtu_ipv4_tcp_to_ipv6_backends_a_byte_over_gets_frag_needed",
            1460,
        ),
        (
            "ipip_path_mtu_ipv6_tcp_to_ipv4_backends_at_the_limit_is_encapsulated",
            "ipip_path_mtu_ipv6_tcp_to_ipv4_backends_a_byte_over_gets_packet_too_big",
            1480,
        ),
        (
            "ipip_path_mtu_ipv6_tcp_to_ipv6_backends_at_the_limit_is_encapsulated",
            "ipip_path_mtu_ipv6_tcp_to_ipv6_backends_a_byte_over_gets_packet_too_big",
            1460,
        ),
    ];
    /// Under [`super::Cfg::Ipip`]: the GUE table beside the IP-in-IP ones.
    pub const IPIP_GUE_TABLE: &str = "ipip_config_keeps_gue_for_its_gue_table";
    /// Under [`super::Cfg::PathMtu`]: other packets answered with an ICMP
    /// error, and the MTU it advertises.
    pub const ANSWERED: [(&str, u32); 9] = [
        ("path_mtu_ipv4_udp_too_big_gets_frag_needed", 1460),
        (
            "path_mtu_vlan_tagged_ipv4_too_big_gets_frag_needed_in_its_vlan",
            1460,
        ),
        (
            "path_mtu_vlan_tagged_ipv6_too_big_gets_packet_too_big_in_its_vlan",
            1412,
        ),
        ("path_mtu_ipv4_options_too_big_are_quoted", 1460),
        ("path_mtu_ipv4_fragment_with_df_gets_frag_needed", 1460),
        ("path_mtu_ipv6_fragment_too_big_gets_packet_too_big", 1412),
        (
            "path_mtu_ipv6_extension_headers_too_big_get_packet_too_big",
            1412,
        ),
        ("path_mtu_icmp_echo_request_too_big_gets_frag_needed", 1460),
        (
            "path_mtu_icmpv6_echo_request_too_big_gets_packet_too_big",
            1460,
        ),
    ];
}

/// Every case, in the order the runner runs them (grouped by config).
/// Built once per test binary: the models hash 65,536 rows per table.
pub fn all() -> &'static [Case] {
    static CASES: OnceLock<Vec<Case>> = OnceLock::new();
    CASES.get_or_init(build)
}

fn build() -> Vec<Case> {
    let mut b = Builder {
        models: HashMap::new(),
        cases: Vec::new(),
    };
    let get = b"GET / HTTP/1.1\r\nHost: example.com\r\n\r\n";
    let dns =
        b"\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\x07example\x03com\x00\x00\x01\x00\x01";
    let client4 = "192.0.2.100";
    let client6 = "2001:db8:1::100";

    // ---- the four inner/outer family pairs, TCP and UDP ----
    let v4_tcp = ip_from(client4, "203.0.113.10").tcp(40000, 80, SYN, &[]);
    b.tx(names::V4_TCP, frame(&v4_tcp));
    b.tx(
        "ipv4_udp_to_ipv4_backends",
        frame(&ip_from(client4, "203.0.113.10").udp(53000, 53, dns)),
    );
    b.tx(
        "ipv6_tcp_to_ipv4_backends",
        frame(&ip_from(client6, "2001:db8:10::10").tcp(40001, 443, SYN, &[])),
    );
    b.tx(
        "ipv6_udp_to_ipv4_backends",
        frame(&ip_from(client6, "2001:db8:10::10").udp(40002, 443, &[0xc3; 64])),
    );
    b.tx(
        "ipv4_tcp_to_ipv6_backends",
        frame(&ip_from(client4, "203.0.113.20").tcp(40003, 80, PSH_ACK, get)),
    );
    b.tx(
        "ipv4_udp_to_ipv6_backends",
        frame(&ip_from(client4, "203.0.113.20").udp(4500, 4500, &[0; 32])),
    );
    let v6_tcp = ip_from(client6, "2001:db8:10::20").tcp(40004, 80, SYN, &[]);
    b.tx(names::V6_TCP_V6, frame(&v6_tcp));
    b.tx(
        "ipv6_udp_to_ipv6_backends",
        frame(&ip_from(client6, "2001:db8:10::20").udp(53001, 53, dns)),
    );
    b.tx(
        "one_backend_table_hops_to_its_primary",
        frame(&ip_from(client4, "203.0.113.30").tcp(40005, 22, SYN, &[])),
    );

    // ---- MACs: resolved, or the gateway's ----
    let v4_to = |vip: &'static str, port: u16| {
        move |c: &str| frame(&ip_from(c, vip).tcp(40010, port, SYN, &[]))
    };
    let resolved = |o: &Outcome, _: &Decision| !o.counts(proto::maps::DirectorStat::MacFallback);
    let fallback = |o: &Outcome, _: &Decision| o.counts(proto::maps::DirectorStat::MacFallback);
    let input = b.client_where(Cfg::Main, v4_to("203.0.113.10", 80), resolved);
    b.tx("ipv4_backend_with_resolved_mac_gets_its_mac", input);
    let input = b.client_where(Cfg::Main, v4_to("203.0.113.10", 80), fallback);
    b.tx("ipv4_backend_without_mac_goes_to_the_gateway", input);
    let input = b.client_where(Cfg::Main, v4_to("203.0.113.20", 80), resolved);
    b.tx("ipv6_backend_with_resolved_mac_gets_its_mac", input);
    let input = b.client_where(Cfg::Main, v4_to("203.0.113.20", 80), fallback);
    b.tx("ipv6_backend_without_mac_goes_to_the_gateway", input);
    let input = b.client_where(Cfg::Main, v4_to("203.0.113.10", 80), |_, d| {
        d.alternates[0].to_string() == "198.51.100.14"
    });
    b.tx("draining_backend_is_the_first_alternate", input);

    // ---- port ranges ----
    let to_port = |port: u16| frame(&ip_from(client4, "203.0.113.10").tcp(40020, port, SYN, &[]));
    b.tx("port_range_first_port", to_port(8000));
    b.tx("port_range_middle_port", to_port(8042));
    b.tx("port_range_last_port", to_port(8099));
    b.pass("port_range_below_first_port_passes", to_port(7999));
    b.pass("port_range_above_last_port_passes", to_port(8100));

    // ---- CIDR VIPs and the longest match ----
    let udp_to = |dst: &str, port: u16| frame(&ip_from(client4, dst).udp(40030, port, &[7; 16]));
    b.tx("cidr_vip_first_address", udp_to("203.0.113.64", 5000));
    b.tx("cidr_vip_last_address", udp_to("203.0.113.127", 5999));
    b.pass(
        "cidr_vip_address_outside_prefix_passes",
        udp_to("203.0.113.128", 5000),
    );
    b.pass(
        "cidr_vip_port_outside_range_passes",
        udp_to("203.0.113.65", 6000),
    );
    b.tx(
        "exact_vip_inside_a_cidr_of_another_table",
        udp_to("203.0.113.70", 53),
    );
    b.tx(
        "cidr_range_still_applies_to_an_exact_vip_inside_it",
        udp_to("203.0.113.70", 5999),
    );
    b.tx(
        "ipv6_cidr_vip",
        frame(&ip_from(client6, "2001:db8:10:1ff::1").tcp(40031, 443, SYN, &[])),
    );
    b.pass(
        "ipv6_cidr_vip_address_outside_prefix_passes",
        frame(&ip_from(client6, "2001:db8:10:200::1").tcp(40031, 443, SYN, &[])),
    );

    // ---- not for a bind ----
    b.pass(
        "non_vip_ipv4_address_passes",
        frame(&ip_from(client4, "203.0.113.11").tcp(40040, 80, SYN, &[])),
    );
    b.pass(
        "non_vip_ipv6_address_passes",
        frame(&ip_from(client6, "2001:db8:10::11").tcp(40041, 80, SYN, &[])),
    );
    b.pass("vip_on_wrong_port_passes", to_port(81));
    b.pass(
        "ipv6_vip_on_wrong_port_passes",
        frame(&ip_from(client6, "2001:db8:10::20").tcp(40042, 8080, SYN, &[])),
    );
    b.pass(
        "vip_with_wrong_protocol_udp_on_tcp_bind_passes",
        udp_to("203.0.113.10", 80),
    );
    b.pass(
        "vip_with_wrong_protocol_tcp_on_udp_bind_passes",
        frame(&ip_from(client4, "203.0.113.10").tcp(40043, 53, SYN, &[])),
    );
    b.pass(
        "vip_with_other_protocol_sctp_passes",
        frame(
            &ip_from(client4, "203.0.113.10")
                .raw(SCTP, &[0x9c, 0x40, 0, 80, 0, 0, 0, 0, 0, 0, 0, 0]),
        ),
    );
    b.pass(
        "arp_passes",
        eth(
            ETH_ARP,
            &[
                0, 1, 8, 0, 6, 4, 0, 1, 2, 0, 0, 0, 0, 1, 192, 0, 2, 100, 0, 0, 0, 0, 0, 0, 203, 0,
                113, 10,
            ],
        ),
    );
    let mut qinq = frame_vlan(100, &v4_tcp);
    qinq[12..14].copy_from_slice(&ETH_QINQ.to_be_bytes());
    b.pass("qinq_outer_tag_passes", qinq);
    let double = {
        let mut inner_tag = 200u16.to_be_bytes().to_vec();
        inner_tag.extend_from_slice(&ETH_IPV4.to_be_bytes());
        inner_tag.extend_from_slice(&v4_tcp);
        let mut outer = 100u16.to_be_bytes().to_vec();
        outer.extend_from_slice(&ETH_VLAN.to_be_bytes());
        outer.extend_from_slice(&inner_tag);
        eth(ETH_VLAN, &outer)
    };
    b.pass("second_vlan_tag_passes", double);

    // ---- VLAN ----
    b.tx(
        "vlan_tagged_ipv4_tcp_keeps_its_tag",
        frame_vlan(42, &v4_tcp),
    );
    b.tx(
        "vlan_tagged_ipv6_tcp_keeps_its_tag",
        frame_vlan(4094, &v6_tcp),
    );

    // ---- ICMP echo ----
    let ping = |src: &str, dst: &str| {
        frame(&ip_from(src, dst).icmp(8, 0, [0x12, 0x34, 0, 1], &[0xa5; 56]))
    };
    let ping6 = |src: &str, dst: &str| {
        frame(&ip_from(src, dst).icmp(128, 0, [0x12, 0x34, 0, 1], &[0xa5; 56]))
    };
    b.tx(
        "icmp_echo_request_goes_to_the_lowest_tcp_bind",
        ping(client4, "203.0.113.10"),
    );
    b.tx(
        "icmp_echo_request_to_udp_only_vip_goes_to_the_lowest_udp_bind",
        ping(client4, "203.0.113.70"),
    );
    b.tx(
        "icmp_echo_request_to_cidr_vip",
        ping(client4, "203.0.113.100"),
    );
    b.tx("icmpv6_echo_request", ping6(client6, "2001:db8:10::20"));
    b.tx(
        "icmp_echo_request_with_a_nonzero_code",
        frame(&ip_from(client4, "203.0.113.10").icmp(8, 1, [0x12, 0x34, 0, 2], &[])),
    );
    b.tx(
        "icmpv6_echo_request_to_ipv4_backends",
        ping6(client6, "2001:db8:10::10"),
    );
    b.pass(
        "icmp_echo_reply_passes",
        frame(&ip_from(client4, "203.0.113.10").icmp(0, 0, [0x12, 0x34, 0, 1], &[0xa5; 8])),
    );
    b.pass(
        "icmpv6_echo_reply_passes",
        frame(&ip_from(client6, "2001:db8:10::20").icmp(129, 0, [0x12, 0x34, 0, 1], &[0xa5; 8])),
    );
    b.pass(
        "icmp_echo_request_to_non_vip_passes",
        ping(client4, "203.0.113.11"),
    );

    // ---- ICMP errors: frag-needed and packet-too-big ----
    let reply4 = ip_from("203.0.113.10", client4).tcp(80, 40000, ACK, &[0; 1440]);
    b.tx(
        names::FRAG_NEEDED,
        frag_needed("198.51.100.254", "203.0.113.10", &quote(&reply4)),
    );
    b.tx(
        "icmp_frag_needed_with_the_whole_packet_quoted",
        frag_needed("198.51.100.254", "203.0.113.10", &reply4[..548]),
    );
    let reply6 = ip_from("2001:db8:10::20", client6).tcp(80, 40004, ACK, &[0; 1400]);
    b.tx(
        names::TOO_BIG,
        packet_too_big("2001:db8:ff::1", "2001:db8:10::20", &quote(&reply6)),
    );
    let reply4u = ip_from("203.0.113.10", client4).udp(53, 53000, &[0; 1472]);
    b.tx(
        "icmp_frag_needed_quoting_udp_uses_the_udp_bind",
        frag_needed("198.51.100.254", "203.0.113.10", &quote(&reply4u)),
    );
    let reply4_range = ip_from("203.0.113.10", client4).tcp(8099, 40020, ACK, &[0; 1440]);
    b.tx(
        "icmp_frag_needed_quoting_a_port_range_flow",
        frag_needed("198.51.100.254", "203.0.113.10", &quote(&reply4_range)),
    );
    let echo_reply = ip_from("203.0.113.10", client4).icmp(0, 0, [0, 1, 0, 1], &[0; 1472]);
    b.pass(
        "icmp_frag_needed_quoting_icmp_passes",
        frag_needed("198.51.100.254", "203.0.113.10", &quote(&echo_reply)),
    );
    b.pass(
        "icmp_frag_needed_quoting_icmp_without_ports_passes",
        frag_needed("198.51.100.254", "203.0.113.10", &echo_reply[..20]),
    );
    // Addressed to one VIP, quoting a flow of another (a router answering
    // the quoted source would not do it, a spoofer could): the quoted flow
    // decides, looked up by its own source.
    let other_vip = ip_from("203.0.113.20", client4).tcp(80, 40030, ACK, &[0; 1440]);
    b.tx(
        "icmp_frag_needed_to_one_vip_quoting_another_vips_flow_follows_that_flow",
        frag_needed("198.51.100.254", "203.0.113.10", &quote(&other_vip)),
    );
    let other_vip6 = ip_from("2001:db8:10::10", client6).udp(443, 40031, &[0; 1400]);
    b.tx(
        "icmpv6_packet_too_big_to_one_vip_quoting_another_vips_udp_flow_follows_that_flow",
        packet_too_big("2001:db8:ff::1", "2001:db8:10::20", &quote(&other_vip6)),
    );
    let not_ours = ip_from("203.0.113.11", client4).tcp(80, 40000, ACK, &[0; 1440]);
    b.pass(
        "icmp_frag_needed_quoting_a_non_vip_source_passes",
        frag_needed("198.51.100.254", "203.0.113.10", &quote(&not_ours)),
    );
    let wrong_port = ip_from("203.0.113.10", client4).tcp(81, 40000, ACK, &[0; 1440]);
    b.pass(
        "icmp_frag_needed_quoting_an_unbound_port_passes",
        frag_needed("198.51.100.254", "203.0.113.10", &quote(&wrong_port)),
    );
    b.pass(
        "icmp_port_unreachable_passes",
        frame(&ip_from("198.51.100.254", "203.0.113.10").icmp(3, 3, [0; 4], &quote(&reply4))),
    );
    let reply6_ext = ip_from("2001:db8:10::20", client6)
        .ext(Ext::DestOpts(0))
        .tcp(80, 40004, ACK, &[0; 1400]);
    b.pass(
        "icmpv6_packet_too_big_quoting_an_extension_header_passes",
        packet_too_big("2001:db8:ff::1", "2001:db8:10::20", &reply6_ext[..48 + 8]),
    );
    b.pass(
        "icmpv6_destination_unreachable_passes",
        frame(&ip_from("2001:db8:ff::1", "2001:db8:10::20").icmp(1, 4, [0; 4], &quote(&reply6))),
    );

    // ---- IPv4 options ----
    let router_alert = [0x94, 0x04, 0x00, 0x00];
    b.tx(
        "ipv4_options_are_skipped_and_kept",
        frame(
            &ip_from(client4, "203.0.113.10")
                .options(&router_alert)
                .tcp(40050, 80, SYN, &[]),
        ),
    );
    let mut forty = vec![0x01u8; 39]; // NOPs
    forty.push(0x00); // end of options
    b.tx(
        "ipv4_forty_bytes_of_options",
        frame(
            &ip_from(client4, "203.0.113.20")
                .options(&forty)
                .udp(40051, 4500, &[1; 8]),
        ),
    );

    // ---- IPv6 extension headers ----
    let ext_tcp = |exts: &[Ext]| {
        let mut p = ip_from(client6, "2001:db8:10::20");
        for e in exts {
            p = p.ext(e.clone());
        }
        p.tcp(40060, 80, SYN, &[])
    };
    b.tx(
        "ipv6_hop_by_hop_header_is_walked",
        frame(&ext_tcp(&[Ext::HopByHop(0)])),
    );
    b.tx(
        "ipv6_destination_options_are_walked",
        frame(&ext_tcp(&[Ext::DestOpts(2)])),
    );
    let segments = vec![ip6("2001:db8:10::20"), ip6("2001:db8:30::1")];
    b.tx(
        "ipv6_routing_header_is_walked",
        frame(&ext_tcp(&[
            Ext::HopByHop(0),
            Ext::Routing(segments),
            Ext::DestOpts(0),
        ])),
    );
    let six = [
        Ext::HopByHop(0),
        Ext::DestOpts(0),
        Ext::DestOpts(1),
        Ext::DestOpts(0),
        Ext::DestOpts(0),
        Ext::DestOpts(0),
    ];
    b.tx(
        "ipv6_six_extension_headers_are_walked",
        frame(&ext_tcp(&six)),
    );
    let mut seven = six.to_vec();
    seven.push(Ext::DestOpts(0));
    b.drop(
        "ipv6_seven_extension_headers_are_malformed",
        frame(&ext_tcp(&seven)),
    );
    b.tx(
        "ipv6_atomic_fragment_is_not_a_fragment",
        frame(&ext_tcp(&[Ext::Fragment {
            offset: 0,
            more: false,
            id: 7,
        }])),
    );

    // ---- fragments ----
    // A 3008-byte UDP datagram in fragments of 1480, 1480 and 48 bytes.
    let first4 = ip_from(client4, "203.0.113.10")
        .id(0x4242)
        .fragment(true, 0)
        .udp(53000, 53, &[0x11; 3000]);
    b.tx("ipv4_first_fragment", frame(&cut(&first4, 20 + 1480)));
    b.tx(
        "ipv4_middle_fragment",
        frame(
            &ip_from(client4, "203.0.113.10")
                .id(0x4242)
                .fragment(true, 185)
                .raw(UDP, &[0x11; 1480]),
        ),
    );
    b.tx(
        "ipv4_last_fragment",
        frame(
            &ip_from(client4, "203.0.113.10")
                .id(0x4242)
                .fragment(false, 370)
                .raw(UDP, &[0x11; 48]),
        ),
    );
    b.tx(
        "ipv4_tcp_fragment_to_ipv6_backends",
        frame(
            &ip_from(client4, "203.0.113.20")
                .fragment(false, 100)
                .raw(TCP, &[0x22; 64]),
        ),
    );
    b.pass(
        "ipv4_fragment_of_icmp_passes",
        frame(
            &ip_from(client4, "203.0.113.10")
                .fragment(false, 185)
                .raw(ICMP, &[0; 64]),
        ),
    );
    b.pass(
        "ipv4_first_fragment_of_an_echo_request_passes",
        frame(&ip_from(client4, "203.0.113.10").fragment(true, 0).icmp(
            8,
            0,
            [0, 1, 0, 1],
            &[0xa5; 64],
        )),
    );
    b.pass(
        "ipv4_fragment_to_non_vip_passes",
        frame(
            &ip_from(client4, "203.0.113.11")
                .fragment(false, 185)
                .raw(UDP, &[0; 64]),
        ),
    );
    let frag6 = |offset: u16, more: bool| Ext::Fragment {
        offset,
        more,
        id: 0xdead_beef,
    };
    b.tx(
        "ipv6_first_fragment",
        frame(
            &ip_from(client6, "2001:db8:10::20")
                .ext(frag6(0, true))
                .udp(53001, 53, &[0x33; 1000]),
        ),
    );
    b.tx(
        "ipv6_last_fragment",
        frame(
            &ip_from(client6, "2001:db8:10::20")
                .ext(frag6(126, false))
                .raw(UDP, &[0x33; 200]),
        ),
    );
    b.tx(
        "ipv6_fragment_after_hop_by_hop_to_ipv4_backends",
        frame(
            &ip_from(client6, "2001:db8:10::10")
                .ext(Ext::HopByHop(0))
                .ext(frag6(126, true))
                .raw(TCP, &[0x44; 256]),
        ),
    );

    // ---- truncated at every header boundary ----
    let v4_udp = ip_from(client4, "203.0.113.10").udp(53000, 53, dns);
    let full = frame(&v4_tcp);
    b.pass("truncated_ethernet_header_passes", full[..13].to_vec());
    b.pass("ethernet_header_without_ip_passes", full[..14].to_vec());
    b.pass(
        "truncated_vlan_tag_passes",
        frame_vlan(42, &v4_tcp)[..16].to_vec(),
    );
    b.pass(
        "vlan_tag_without_ip_passes",
        frame_vlan(42, &v4_tcp)[..18].to_vec(),
    );
    b.pass("truncated_ipv4_header_passes", full[..14 + 19].to_vec());
    let with_opts =
        ip_from(client4, "203.0.113.10")
            .options(&router_alert)
            .tcp(40050, 80, SYN, &[]);
    b.drop(
        "truncated_ipv4_options_are_malformed",
        frame(&cut(&with_opts, 22)),
    );
    b.pass(
        "truncated_ipv6_header_passes",
        frame(&v6_tcp)[..14 + 39].to_vec(),
    );
    b.drop(
        "truncated_ipv6_extension_header_is_malformed",
        frame(&cut(&ext_tcp(&[Ext::HopByHop(1)]), 40 + 12)),
    );
    b.drop(
        "ipv6_extension_header_without_its_length_byte_is_malformed",
        frame(&cut(&ext_tcp(&[Ext::DestOpts(0)]), 40 + 1)),
    );
    b.drop(
        "truncated_ipv6_fragment_header_is_malformed",
        frame(&cut(
            &ext_tcp(&[Ext::Fragment {
                offset: 0,
                more: true,
                id: 1,
            }]),
            40 + 6,
        )),
    );
    b.drop(
        "truncated_tcp_header_is_malformed",
        frame(&cut(&v4_tcp, 20 + 19)),
    );
    b.drop(
        "ipv4_without_tcp_header_is_malformed",
        frame(&cut(&v4_tcp, 20)),
    );
    b.drop(
        "truncated_ipv6_tcp_header_is_malformed",
        frame(&cut(&v6_tcp, 40 + 19)),
    );
    let tcp_opts = ip_from(client4, "203.0.113.10").tcp_with_options(
        40070,
        80,
        SYN,
        &[2, 4, 5, 0xb4, 1, 1, 4, 2, 1, 3, 3, 7],
        &[],
    );
    b.tx("tcp_options_are_allowed", frame(&tcp_opts));
    b.drop(
        "truncated_tcp_options_are_malformed",
        frame(&cut(&tcp_opts, 20 + 28)),
    );
    let mut doff4 = v4_tcp.clone();
    doff4[20 + 12] = 0x40;
    b.drop("tcp_data_offset_below_five_is_malformed", frame(&doff4));
    b.drop(
        "truncated_udp_header_is_malformed",
        frame(&cut(&v4_udp, 20 + 7)),
    );
    b.drop(
        "truncated_ipv6_udp_header_is_malformed",
        frame(&cut(
            &ip_from(client6, "2001:db8:10::20").udp(53001, 53, dns),
            40 + 7,
        )),
    );
    let ping4 = ip_from(client4, "203.0.113.10").icmp(8, 0, [0, 1, 0, 1], &[]);
    b.tx("icmp_echo_request_without_data", frame(&ping4));
    b.drop(
        "truncated_icmp_header_is_malformed",
        frame(&cut(&ping4, 20 + 7)),
    );
    let ping6_bare = ip_from(client6, "2001:db8:10::20").icmp(128, 0, [0, 1, 0, 1], &[]);
    b.drop(
        "truncated_icmpv6_header_is_malformed",
        frame(&cut(&ping6_bare, 40 + 7)),
    );
    b.drop(
        "truncated_quoted_ipv4_header_is_malformed",
        frag_needed("198.51.100.254", "203.0.113.10", &reply4[..19]),
    );
    b.drop(
        "truncated_quoted_ports_are_malformed",
        frag_needed("198.51.100.254", "203.0.113.10", &reply4[..23]),
    );
    let reply4_opts =
        ip_from("203.0.113.10", client4)
            .options(&router_alert)
            .tcp(80, 40000, ACK, &[]);
    b.tx(
        "icmp_frag_needed_quoting_ipv4_options",
        frag_needed("198.51.100.254", "203.0.113.10", &quote(&reply4_opts)),
    );
    b.drop(
        "truncated_quoted_ipv4_options_are_malformed",
        frag_needed("198.51.100.254", "203.0.113.10", &reply4_opts[..22]),
    );
    let mut quoted_ihl4 = quote(&reply4);
    quoted_ihl4[0] = 0x44;
    b.drop(
        "quoted_ipv4_header_with_bad_ihl_is_malformed",
        frag_needed("198.51.100.254", "203.0.113.10", &quoted_ihl4),
    );
    b.drop(
        "truncated_quoted_ipv6_header_is_malformed",
        packet_too_big("2001:db8:ff::1", "2001:db8:10::20", &reply6[..39]),
    );
    b.drop(
        "truncated_quoted_ipv6_ports_are_malformed",
        packet_too_big("2001:db8:ff::1", "2001:db8:10::20", &reply6[..43]),
    );

    // ---- inconsistent IP headers ----
    let mut ihl4 = v4_tcp.clone();
    ihl4[0] = 0x44;
    refresh_v4_checksum(&mut ihl4);
    b.drop("ipv4_ihl_below_five_is_malformed", frame(&ihl4));
    let mut v6_in_v4 = v4_tcp.clone();
    v6_in_v4[0] = 0x65;
    b.drop(
        "ipv4_ethertype_with_version_6_is_malformed",
        eth(ETH_IPV4, &v6_in_v4),
    );
    let mut v4_in_v6 = v6_tcp.clone();
    v4_in_v6[0] = 0x40;
    b.drop(
        "ipv6_ethertype_with_version_4_is_malformed",
        eth(ETH_IPV6, &v4_in_v6),
    );
    let mut long = v4_tcp.clone();
    long[2..4].copy_from_slice(&41u16.to_be_bytes());
    refresh_v4_checksum(&mut long);
    b.drop(
        "ipv4_total_length_beyond_the_frame_is_malformed",
        frame(&long),
    );
    let mut short = v4_tcp.clone();
    short[2..4].copy_from_slice(&19u16.to_be_bytes());
    refresh_v4_checksum(&mut short);
    b.drop(
        "ipv4_total_length_below_the_header_is_malformed",
        frame(&short),
    );
    let mut long6 = v6_tcp.clone();
    long6[4..6].copy_from_slice(&21u16.to_be_bytes());
    b.drop(
        "ipv6_payload_length_beyond_the_frame_is_malformed",
        frame(&long6),
    );
    let mut ihl4_other = ip_from(client4, "203.0.113.11").tcp(40080, 80, SYN, &[]);
    ihl4_other[0] = 0x44;
    refresh_v4_checksum(&mut ihl4_other);
    b.pass("bad_ihl_to_a_non_vip_address_passes", frame(&ihl4_other));
    let mut padded = frame(&v4_tcp);
    padded.extend_from_slice(&[0; 6]); // Ethernet minimum frame of 60 bytes
    b.tx("ethernet_padding_after_the_ip_packet_is_carried", padded);
    let mut low_total = frame(&ip_from(client4, "203.0.113.10").udp(53000, 53, dns));
    low_total[14 + 2..14 + 4].copy_from_slice(&(20 + 8 + 4u16).to_be_bytes());
    refresh_v4_checksum(&mut low_total[14..]);
    b.tx("bytes_past_the_ipv4_total_length_are_carried", low_total);

    // ---- "present" means in the frame, not within the IP length ----
    // (docs/director.md uses "bytes present" for the frame in its
    // total-length rule; the model reads every "present" the same way.)
    let with_total = |packet: &[u8], total: u16| {
        let mut p = packet.to_vec();
        p[2..4].copy_from_slice(&total.to_be_bytes());
        refresh_v4_checksum(&mut p);
        frame(&p)
    };
    b.tx(
        "tcp_header_past_the_ipv4_total_length_is_read_from_the_frame",
        with_total(&v4_tcp, 20 + 10),
    );
    let icmp_err =
        ip_from("198.51.100.254", "203.0.113.10").icmp(3, 4, [0, 0, 0x05, 0x78], &quote(&reply4));
    b.tx(
        "quoted_ports_past_the_ipv4_total_length_are_read_from_the_frame",
        with_total(&icmp_err, 20 + 8 + 22),
    );
    let mut short_payload = ext_tcp(&[Ext::HopByHop(1)]);
    short_payload[4..6].copy_from_slice(&8u16.to_be_bytes());
    b.tx(
        "ipv6_headers_past_the_payload_length_are_read_from_the_frame",
        frame(&short_payload),
    );

    // ---- IPv6 fragments are looked up by the fragment header's next header ----
    b.pass(
        "ipv6_first_fragment_with_options_after_the_fragment_header_passes",
        frame(
            &ip_from(client6, "2001:db8:10::20")
                .ext(frag6(0, true))
                .ext(Ext::DestOpts(0))
                .tcp(40100, 80, SYN, &[]),
        ),
    );
    b.pass(
        "ipv6_later_fragment_with_options_after_the_fragment_header_passes",
        frame(
            &ip_from(client6, "2001:db8:10::20")
                .ext(frag6(126, false))
                .raw(DEST_OPTS, &[TCP, 200, 0, 0, 0, 0, 0, 0, 1, 2, 3, 4]),
        ),
    );
    b.tx(
        "ipv6_fragment_after_destination_options_is_looked_up_by_its_protocol",
        frame(
            &ip_from(client6, "2001:db8:10::20")
                .ext(Ext::DestOpts(0))
                .ext(frag6(126, false))
                .raw(TCP, &[0x55; 64]),
        ),
    );

    // ---- a table swap between two packets ----
    b.tx(names::SWAP_BEFORE, swap_packet());
    b.add(names::SWAP_AFTER, Cfg::Swapped, Verdict::Tx, swap_packet());

    // ---- hashing with ports ----
    let ph = Cfg::PortHash;
    let flow = ip_from(client4, "203.0.113.10").tcp(40090, 80, PSH_ACK, get);
    b.add(names::PH_FLOW, ph, Verdict::Tx, frame(&flow));
    let reply = ip_from("203.0.113.10", client4).tcp(80, 40090, ACK, &[0; 1440]);
    b.add(
        names::PH_FRAG_NEEDED,
        ph,
        Verdict::Tx,
        frag_needed("198.51.100.254", "203.0.113.10", &quote(&reply)),
    );
    let flow6 = ip_from(client6, "2001:db8:10::10").tcp(40091, 443, PSH_ACK, get);
    b.add(names::PH_V6_FLOW, ph, Verdict::Tx, frame(&flow6));
    let reply6 = ip_from("2001:db8:10::10", client6).tcp(443, 40091, ACK, &[0; 1400]);
    b.add(
        names::PH_TOO_BIG,
        ph,
        Verdict::Tx,
        packet_too_big("2001:db8:ff::1", "2001:db8:10::10", &quote(&reply6)),
    );
    b.add(
        "port_hash_ipv4_first_fragment_hashes_addresses_only",
        ph,
        Verdict::Tx,
        frame(&cut(&first4, 20 + 1480)),
    );
    b.add(
        "port_hash_ipv4_last_fragment_hashes_addresses_only",
        ph,
        Verdict::Tx,
        frame(
            &ip_from(client4, "203.0.113.10")
                .id(0x4242)
                .fragment(false, 370)
                .raw(UDP, &[0x11; 48]),
        ),
    );
    b.add(
        "port_hash_ipv6_first_fragment_hashes_addresses_only",
        ph,
        Verdict::Tx,
        frame(
            &ip_from(client6, "2001:db8:10::20")
                .ext(frag6(0, true))
                .udp(53001, 53, &[0x33; 1000]),
        ),
    );
    b.add(
        "port_hash_ipv6_last_fragment_hashes_addresses_only",
        ph,
        Verdict::Tx,
        frame(
            &ip_from(client6, "2001:db8:10::20")
                .ext(frag6(126, false))
                .raw(UDP, &[0x33; 200]),
        ),
    );
    b.add(
        "port_hash_icmp_echo_hashes_zero_ports",
        ph,
        Verdict::Tx,
        ping(client4, "203.0.113.10"),
    );

    // ---- encapsulation failures ----
    let nf = Cfg::NoFallback;
    let input = b.client_where(nf, v4_to("203.0.113.10", 80), |o, _| {
        o.verdict == Verdict::Drop
    });
    b.add(
        "unresolved_mac_without_gateway_is_an_encap_failure",
        nf,
        Verdict::Drop,
        input,
    );
    let input = b.client_where(nf, v4_to("203.0.113.10", 80), |o, _| {
        o.verdict == Verdict::Tx
    });
    b.add("resolved_mac_needs_no_gateway", nf, Verdict::Tx, input);
    let input = b.client_where(nf, v4_to("203.0.113.20", 80), |o, _| {
        o.verdict == Verdict::Drop
    });
    b.add(
        "unresolved_ipv6_backend_without_gateway_is_an_encap_failure",
        nf,
        Verdict::Drop,
        input,
    );
    b.add(
        "not_vip_is_unaffected_by_missing_settings",
        nf,
        Verdict::Pass,
        frame(&ip_from(client4, "203.0.113.11").tcp(40040, 80, SYN, &[])),
    );

    // ---- the path MTU (1500): too big once encapsulated ----
    let pm = Cfg::PathMtu;
    // A TCP segment whose IP packet is `len` bytes long.
    let sized = |client: &str, vip: &str, port: u16, len: usize| {
        let header = if client.contains(':') { 60 } else { 40 };
        ip_from(client, vip).tcp(40200, port, PSH_ACK, &vec![0x5a; len - header])
    };
    let targets = [
        (client4, "203.0.113.10", 80),
        (client4, "203.0.113.20", 80),
        (client6, "2001:db8:10::10", 443),
        (client6, "2001:db8:10::20", 80),
    ];
    for ((at, over, limit), (client, vip, port)) in names::AT_AND_OVER.into_iter().zip(targets) {
        let limit = limit as usize;
        b.add(at, pm, Verdict::Tx, frame(&sized(client, vip, port, limit)));
        b.add(
            over,
            pm,
            Verdict::Tx,
            frame(&sized(client, vip, port, limit + 1)),
        );
    }
    let [
        udp_over,
        vlan4,
        vlan6,
        options,
        df_fragment,
        frag6_over,
        ext6,
        ping4,
        ping6_over,
    ] = names::ANSWERED.map(|(name, _)| name);
    b.add(
        udp_over,
        pm,
        Verdict::Tx,
        frame(&ip_from(client4, "203.0.113.10").udp(53000, 53, &[0x3c; 1472])),
    );
    b.add(
        vlan4,
        pm,
        Verdict::Tx,
        frame_vlan(42, &sized(client4, "203.0.113.10", 80, 1500)),
    );
    b.add(
        vlan6,
        pm,
        Verdict::Tx,
        frame_vlan(4094, &sized(client6, "2001:db8:10::20", 80, 1500)),
    );
    b.add(
        options,
        pm,
        Verdict::Tx,
        frame(
            &ip_from(client4, "203.0.113.10").options(&router_alert).tcp(
                40201,
                80,
                PSH_ACK,
                &[0x5a; 1456],
            ),
        ),
    );
    // The rule looks at DF alone, in fragments too (Linux routers do).
    b.add(
        df_fragment,
        pm,
        Verdict::Tx,
        frame(
            &ip_from(client4, "203.0.113.10")
                .fragment(false, 185)
                .df(true)
                .raw(UDP, &[0x11; 1480]),
        ),
    );
    b.add(
        frag6_over,
        pm,
        Verdict::Tx,
        frame(
            &ip_from(client6, "2001:db8:10::20")
                .ext(frag6(0, true))
                .udp(53001, 53, &[0x33; 1400]),
        ),
    );
    b.add(
        ext6,
        pm,
        Verdict::Tx,
        frame(
            &ip_from(client6, "2001:db8:10::20")
                .ext(Ext::HopByHop(0))
                .tcp(40202, 80, PSH_ACK, &[0x5a; 1400]),
        ),
    );
    b.add(
        ping4,
        pm,
        Verdict::Tx,
        frame(&ip_from(client4, "203.0.113.10").icmp(8, 0, [0x12, 0x34, 0, 1], &[0xa5; 1472])),
    );
    b.add(
        ping6_over,
        pm,
        Verdict::Tx,
        frame(&ip_from(client6, "2001:db8:10::10").icmp(128, 0, [0x12, 0x34, 0, 1], &[0xa5; 1413])),
    );
    // Dropped: a router would fragment these, or must not answer them.
    b.add(
        "path_mtu_ipv4_without_df_too_big_is_dropped",
        pm,
        Verdict::Drop,
        frame(
            &ip_from(client4, "203.0.113.10")
                .df(false)
                .tcp(40203, 80, PSH_ACK, &[0x5a; 1460]),
        ),
    );
    b.add(
        "path_mtu_ipv4_first_fragment_without_df_too_big_is_dropped",
        pm,
        Verdict::Drop,
        frame(&cut(&first4, 20 + 1480)),
    );
    let whole_reply4 = ip_from("203.0.113.10", client4).tcp(80, 40000, ACK, &[0; 1440]);
    b.add(
        "path_mtu_too_big_frag_needed_is_dropped_not_answered",
        pm,
        Verdict::Drop,
        frag_needed("198.51.100.254", "203.0.113.10", &whole_reply4),
    );
    let whole_reply6 = ip_from("2001:db8:10::20", client6).tcp(80, 40004, ACK, &[0; 1400]);
    b.add(
        "path_mtu_too_big_packet_too_big_is_dropped_not_answered",
        pm,
        Verdict::Drop,
        packet_too_big("2001:db8:ff::1", "2001:db8:10::20", &whole_reply6),
    );
    b.add(
        "path_mtu_too_big_from_an_ipv4_multicast_source_is_dropped",
        pm,
        Verdict::Drop,
        frame(&sized("224.0.0.5", "203.0.113.10", 80, 1500)),
    );
    b.add(
        "path_mtu_too_big_from_an_ipv6_multicast_source_is_dropped",
        pm,
        Verdict::Drop,
        frame(&sized("ff02::1", "2001:db8:10::20", 80, 1500)),
    );
    // Small packets under the same config are untouched by it.
    b.add(
        "path_mtu_small_packets_are_encapsulated_as_ever",
        pm,
        Verdict::Tx,
        frame(&v4_tcp),
    );

    // ---- hop chains: every hop count with IPv4 and IPv6 hops ----
    for (cfg, prefix) in [(Cfg::LongChains, "long"), (Cfg::ShortChains, "short")] {
        let name = |what: &str| format!("{prefix}_chains_{what}");
        b.add(
            &name("ipv4_tcp_to_ipv4_backends"),
            cfg,
            Verdict::Tx,
            frame(&v4_tcp),
        );
        b.add(
            &name("ipv6_tcp_to_ipv4_backends"),
            cfg,
            Verdict::Tx,
            frame(&ip_from(client6, "2001:db8:10::10").tcp(40001, 443, SYN, &[])),
        );
        b.add(
            &name("ipv4_tcp_to_ipv6_backends"),
            cfg,
            Verdict::Tx,
            frame(&ip_from(client4, "203.0.113.20").tcp(40003, 80, PSH_ACK, get)),
        );
        b.add(
            &name("ipv6_tcp_to_ipv6_backends"),
            cfg,
            Verdict::Tx,
            frame(&v6_tcp),
        );
        b.add(
            &name("vlan_tagged_ipv4_tcp_to_ipv4_backends"),
            cfg,
            Verdict::Tx,
            frame_vlan(42, &v4_tcp),
        );
        b.add(
            &name("vlan_tagged_ipv6_tcp_to_ipv6_backends"),
            cfg,
            Verdict::Tx,
            frame_vlan(4094, &v6_tcp),
        );
        b.add(
            &name("frag_needed_follows_its_flow"),
            cfg,
            Verdict::Tx,
            frag_needed("198.51.100.254", "203.0.113.10", &quote(&reply4)),
        );
        b.add(
            &name("packet_too_big_follows_its_flow"),
            cfg,
            Verdict::Tx,
            packet_too_big("2001:db8:ff::1", "2001:db8:10::20", &quote(&reply6)),
        );
    }

    // ---- IP-in-IP tables: no hop list, outer protocol 4 or 41 ----
    let ii = Cfg::Ipip;
    let ipip = |b: &mut Builder, name: &str, input: Vec<u8>| {
        b.add(&format!("ipip_{name}"), ii, Verdict::Tx, input);
    };
    ipip(&mut b, "ipv4_tcp_to_ipv4_backends", frame(&v4_tcp));
    ipip(
        &mut b,
        "ipv4_udp_to_ipv4_backends",
        frame(&ip_from(client4, "203.0.113.10").udp(53000, 53, dns)),
    );
    ipip(
        &mut b,
        "ipv6_tcp_to_ipv4_backends",
        frame(&ip_from(client6, "2001:db8:10::10").tcp(40001, 443, SYN, &[])),
    );
    ipip(
        &mut b,
        "ipv4_tcp_to_ipv6_backends",
        frame(&ip_from(client4, "203.0.113.20").tcp(40003, 80, PSH_ACK, get)),
    );
    ipip(&mut b, "ipv6_tcp_to_ipv6_backends", frame(&v6_tcp));
    ipip(
        &mut b,
        "ipv6_udp_to_ipv6_backends",
        frame(&ip_from(client6, "2001:db8:10::20").udp(53001, 53, dns)),
    );
    ipip(
        &mut b,
        "vlan_tagged_ipv4_tcp_to_ipv4_backends",
        frame_vlan(42, &v4_tcp),
    );
    ipip(
        &mut b,
        "vlan_tagged_ipv6_tcp_to_ipv6_backends",
        frame_vlan(4094, &v6_tcp),
    );
    ipip(
        &mut b,
        "frag_needed_follows_its_flow",
        frag_needed("198.51.100.254", "203.0.113.10", &quote(&reply4)),
    );
    ipip(
        &mut b,
        "packet_too_big_follows_its_flow",
        packet_too_big("2001:db8:ff::1", "2001:db8:10::20", &quote(&reply6)),
    );
    ipip(
        &mut b,
        "ipv4_first_fragment",
        frame(&cut(&first4, 20 + 512)),
    );
    ipip(
        &mut b,
        "ipv6_later_fragment",
        frame(
            &ip_from(client6, "2001:db8:10::20")
                .ext(frag6(185, false))
                .raw(UDP, &[0x33; 64]),
        ),
    );
    ipip(
        &mut b,
        "icmp_echo_request",
        frame(&ip_from(client4, "203.0.113.10").icmp(8, 0, [0x12, 0x34, 0, 1], &[0xa5; 56])),
    );
    let input = b.client_where(ii, v4_to("203.0.113.10", 80), fallback);
    ipip(
        &mut b,
        "ipv4_backend_without_mac_goes_to_the_gateway",
        input,
    );
    let input = b.client_where(ii, v4_to("203.0.113.20", 80), resolved);
    ipip(&mut b, "ipv6_backend_with_resolved_mac_gets_its_mac", input);
    b.add(
        names::IPIP_GUE_TABLE,
        ii,
        Verdict::Tx,
        frame(&ip_from(client4, "203.0.113.30").tcp(40005, 22, SYN, &[])),
    );
    // The path MTU with IP-in-IP's smaller overhead: 1480 bytes to IPv4
    // backends, 1460 to IPv6 ones.
    for ((at, over, limit), (client, vip, port)) in names::IPIP_AT_AND_OVER.into_iter().zip(targets)
    {
        let limit = limit as usize;
        b.add(at, ii, Verdict::Tx, frame(&sized(client, vip, port, limit)));
        b.add(
            over,
            ii,
            Verdict::Tx,
            frame(&sized(client, vip, port, limit + 1)),
        );
    }
    b.add(
        "ipip_path_mtu_ipv4_without_df_too_big_is_dropped",
        ii,
        Verdict::Drop,
        frame(
            &ip_from(client4, "203.0.113.10")
                .df(false)
                .tcp(40203, 80, PSH_ACK, &[0x5a; 1460]),
        ),
    );

    b.cases
}
