//! End to end: a real `director-xdp run` attached (native XDP) to a veth in
//! its namespace, a client that sends 3,000 flows to a VIP, and three backend
//! hosts that capture what reaches them. Every packet must arrive
//! GUE-encapsulated at the primary the table names for its flow, with the
//! row's alternates as its hop list, and the spread must be even within 15%.
//!
//! Lab (documentation addresses only, one L2 segment through a bridge):
//!
//! ```text
//!   client 198.51.100.2 ─┐
//!   director 198.51.100.1 ┼─ bridge (namespace "sw")
//!   backends .11 .12 .13 ─┘
//!   VIP 203.0.113.10 is routed by the client via the director.
//! ```
#![allow(clippy::unwrap_used)] // a test: a failure is the test failing

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use lab_tests::{Capture, Netns, Scratch, Switch, XdpPass, workspace_bin};
use proto::config::Config;
use proto::flow::{Flow, flow_hash};
use proto::maps::{HASH_SRC_ADDR, HASH_SRC_PORT};
use proto::wire::{GuePacket, GueRepr};

const FLOWS: u16 = 3000;
const FIRST_PORT: u16 = 20000;
const BACKENDS: [(&str, &str); 3] = [
    ("198.51.100.11", "02:00:00:00:01:11"),
    ("198.51.100.12", "02:00:00:00:01:12"),
    ("198.51.100.13", "02:00:00:00:01:13"),
];
const DIRECTOR_MAC: &str = "02:00:00:00:01:01";

fn config() -> String {
    let backends: Vec<String> = BACKENDS
        .iter()
        .map(|(ip, _)| format!(r#"{{"ip":"{ip}","state":"active","healthy":true}}"#))
        .collect();
    format!(
        r#"{{"tables":[{{"name":"lab","hash_key":"6c61622d686173682d6b65792d303031",
            "seed":"6c61622d736565642d30303030303031",
            "binds":[{{"ip":"203.0.113.10","proto":"udp","port":53}}],
            "backends":[{}]}}],
          "director":{{"interface":"eth0","source_v4":"198.51.100.1",
            "hash_fields":["src_addr","src_port"],"gateway_mac":"02:00:00:00:01:fe"}}}}"#,
        backends.join(",")
    )
}

fn mac_bytes(s: &str) -> [u8; 6] {
    proto::config::parse_mac(s).unwrap()
}

#[test]
fn director_sends_every_flow_to_its_primary_with_its_alternates_as_hops() {
    let scratch = Scratch::new("smoke").unwrap();
    let cfg_path = scratch.file("director.json");
    std::fs::write(&cfg_path, config()).unwrap();
    let config = Config::from_json(&config()).unwrap();
    let table = &config.tables[0];
    let rendezvous = table.rendezvous().unwrap();

    // Hosts. Declared before the daemon and captures, so those are dropped
    // (stopped) first and the namespaces deleted last.
    let mut sw = Switch::new().unwrap();
    let client = Netns::new("cl").unwrap();
    let director = Netns::new("dir").unwrap();
    let backends: Vec<Netns> = (0..BACKENDS.len())
        .map(|_| Netns::new("be").unwrap())
        .collect();
    let mut attach = |host: &Netns, mac: &str, addr: &str| sw.plug(host, mac, &[addr]).unwrap();
    let director_port = attach(&director, DIRECTOR_MAC, "198.51.100.1/24");
    attach(&client, "02:00:00:00:01:02", "198.51.100.2/24");
    for (ns, (ip, mac)) in backends.iter().zip(BACKENDS) {
        attach(ns, mac, &format!("{ip}/24"));
    }
    // Frames the director sends back out with XDP_TX arrive at its peer in
    // the switch; a veth delivers them only if that end runs XDP.
    let _peer_xdp = XdpPass::attach(sw.ns(), &director_port).unwrap();
    client
        .ip(&["route", "add", "203.0.113.10/32", "via", "198.51.100.1"])
        .unwrap();
    client.add_neighbour("198.51.100.1", DIRECTOR_MAC).unwrap();
    for (ip, mac) in BACKENDS {
        director.add_neighbour(ip, mac).unwrap();
    }

    let bin = workspace_bin("director-xdp").unwrap();
    let mut daemon = director
        .spawn(
            bin.to_str().unwrap(),
            &["run", "--config", cfg_path.to_str().unwrap()],
            scratch.file("director.log"),
        )
        .unwrap();
    daemon
        .wait_for_log("attached", Duration::from_secs(30))
        .unwrap();
    let link = String::from_utf8(
        director
            .ip(&["-d", "link", "show", "dev", "eth0"])
            .unwrap()
            .stdout,
    )
    .unwrap();
    assert!(
        link.contains("xdp"),
        "no XDP program on the director's interface:\n{link}"
    );

    let captures: Vec<Capture> = backends
        .iter()
        .map(|ns| Capture::start(ns, "eth0").unwrap())
        .collect();
    client
        .run_in(|| {
            for i in 0..FLOWS {
                let s = std::net::UdpSocket::bind(("198.51.100.2", FIRST_PORT + i))?;
                s.send_to(&i.to_be_bytes(), "203.0.113.10:53")?;
                if i % 100 == 99 {
                    // Stay well under what a veth queue holds.
                    std::thread::sleep(Duration::from_millis(2));
                }
            }
            Ok(())
        })
        .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let frames: Vec<Vec<Vec<u8>>> = captures.into_iter().map(|c| c.finish().unwrap()).collect();

    let client_addr = [198u8, 51, 100, 2];
    let mut seen: HashMap<u16, IpAddr> = HashMap::new();
    let mut per_backend = [0usize; 3];
    for (b, got) in frames.iter().enumerate() {
        let (me, my_mac) = BACKENDS[b];
        let me: IpAddr = me.parse().unwrap();
        for f in got {
            // Ethernet + IPv4 + UDP to 19523 only (ARP and the like are not ours).
            if f.len() < 42
                || f[12..14] != [0x08, 0x00]
                || f[23] != 17
                || f[36..38] != 19523u16.to_be_bytes()
            {
                continue;
            }
            assert_eq!(f[0..6], mac_bytes(my_mac), "destination MAC");
            assert_eq!(f[6..12], mac_bytes(DIRECTOR_MAC), "source MAC");
            assert_eq!(f[14], 0x45);
            assert_eq!(&f[26..30], &[198, 51, 100, 1], "outer source");
            assert_eq!(
                IpAddr::V4(Ipv4Addr::new(f[30], f[31], f[32], f[33])),
                me,
                "outer destination"
            );
            let gue = GuePacket::new_checked(&f[42..]).unwrap();
            let repr = GueRepr::parse(&gue).unwrap();
            let inner = gue.payload();
            // The original packet: IPv4 UDP from the client to the VIP.
            assert_eq!(&inner[12..16], &client_addr);
            assert_eq!(&inner[16..20], &[203, 0, 113, 10]);
            let sport = u16::from_be_bytes([inner[20], inner[21]]);
            let hash = flow_hash(
                &table.hash_key,
                HASH_SRC_ADDR | HASH_SRC_PORT,
                &Flow {
                    src_addr: &client_addr,
                    dst_addr: &[],
                    src_port: sport,
                    dst_port: 53,
                },
            );
            let chain = rendezvous.rows()[(hash & 0xffff) as usize]
                .map(|i| rendezvous.backend(i).unwrap().addr);
            assert_eq!(
                chain.primary(),
                me,
                "flow from port {sport} reached the wrong backend"
            );
            assert_eq!(repr.next_hop, 0);
            assert_eq!(
                repr.hops.iter().collect::<Vec<_>>(),
                chain.alternates(),
                "hops of the flow from port {sport}"
            );
            assert!(
                seen.insert(sport, me).is_none(),
                "flow from port {sport} arrived twice"
            );
            per_backend[b] += 1;
        }
    }
    assert_eq!(
        seen.len(),
        usize::from(FLOWS),
        "every flow arrives, once: per backend {per_backend:?}"
    );
    let even = f64::from(FLOWS) / 3.0;
    for (b, n) in per_backend.iter().enumerate() {
        let off = (*n as f64 - even).abs() / even;
        assert!(
            off <= 0.15,
            "backend {} got {n} of {FLOWS} flows ({:.1}% off even)",
            BACKENDS[b].0,
            off * 100.0
        );
    }
    let status = daemon.stop().unwrap();
    assert!(status.success(), "director exit: {status}");
    let link = String::from_utf8(
        director
            .ip(&["-d", "link", "show", "dev", "eth0"])
            .unwrap()
            .stdout,
    )
    .unwrap();
    assert!(
        !link.contains("prog/xdp"),
        "XDP program left attached:\n{link}"
    );
}
