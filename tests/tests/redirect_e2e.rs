//! End to end with the real kernel TCP stack: a client, a real director and
//! three backends running the redirect agent and a TCP server of ours (see
//! `lab_tests::glb`). Direct server return over IPv4 and IPv6, connection
//! survival while a backend is drained (by SIGHUP, and through the API
//! with `director-ctl`) or added, or while backends' redirect agents are
//! restarted (200 live connections exchanging a line every ~50 ms), and
//! GUE from the wrong source or malformed GUE dropped and counted.
//!
//! The labs run one at a time (a lock): two cores, and timing-sensitive
//! assertions (a 3 s read timeout is a stalled connection).
#![allow(clippy::unwrap_used)] // a test: a failure is the test failing

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Duration;

use lab_tests::glb::{Conn, Lab, VIP4, VIP6, backend_ip, connect_many, exchange};
use lab_tests::{Capture, Netns};
use serde_json::Value;

static ONE_LAB_AT_A_TIME: Mutex<()> = Mutex::new(());

fn spread(conns: &[Conn]) -> BTreeMap<String, usize> {
    let mut m = BTreeMap::new();
    for c in conns {
        *m.entry(c.backend.clone()).or_default() += 1;
    }
    m
}

#[test]
fn requests_over_ipv4_and_ipv6_reach_backends_and_replies_bypass_the_director() {
    let _one = ONE_LAB_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let mut lab = Lab::new(&["active", "active", "active"]).unwrap();
    let at_director = Capture::start(&lab.director_ns, "eth0").unwrap();
    let at_client = Capture::start(&lab.client, "eth0").unwrap();
    let mut conns = connect_many(&lab.client, VIP4, 60).unwrap();
    conns.extend(connect_many(&lab.client, VIP6, 60).unwrap());
    for (i, c) in conns.iter_mut().enumerate() {
        for n in 0..3 {
            c.ping(&format!("request {i} {n}")).unwrap();
        }
    }
    let by_backend = spread(&conns);
    drop(conns);
    std::thread::sleep(Duration::from_millis(300));
    let director_frames = at_director.finish().unwrap();
    let client_frames = at_client.finish().unwrap();

    // Every backend answered some, and every greeting names a backend.
    assert_eq!(by_backend.len(), 3, "{by_backend:?}");
    assert_eq!(by_backend.values().sum::<usize>(), 120);
    let vips = [
        VIP4.parse::<std::net::Ipv4Addr>()
            .unwrap()
            .octets()
            .to_vec(),
        VIP6.parse::<std::net::Ipv6Addr>()
            .unwrap()
            .octets()
            .to_vec(),
    ];
    let from_vip = |f: &Vec<u8>| match &f[12..14] {
        [0x08, 0x00] if f.len() >= 34 => vips.contains(&f[26..30].to_vec()),
        [0x86, 0xdd] if f.len() >= 54 => vips.contains(&f[22..38].to_vec()),
        _ => false,
    };
    // The director's stack saw no reply (requests never reach it: its XDP
    // program sends them on).
    let replies_at_director = director_frames.iter().filter(|f| from_vip(f)).count();
    assert_eq!(replies_at_director, 0, "reply packets reached the director");
    // The client got the replies straight from the backends' MACs.
    let replies: Vec<&Vec<u8>> = client_frames.iter().filter(|f| from_vip(f)).collect();
    assert!(
        replies.len() >= 120 * 4,
        "{} replies at the client",
        replies.len()
    );
    let backend_macs: Vec<[u8; 6]> = (0..3u8).map(|i| [2, 0, 0, 0, 3, 0x11 + i]).collect();
    for f in &replies {
        assert!(
            backend_macs.iter().any(|m| f[6..12] == *m),
            "a reply from MAC {:02x?}, not a backend's",
            &f[6..12]
        );
    }

    let mut syn = 0;
    for b in &mut lab.backends {
        let c: BTreeMap<String, u64> = b.counters().unwrap().into_iter().collect();
        syn += c["accepted_syn"];
        assert!(
            c["accepted_established"] + c["accepted_last_resort"] > 0,
            "{c:?}"
        );
        assert_eq!(c["dropped_not_allowed"] + c["dropped_invalid"], 0, "{c:?}");
        assert_eq!(c["forward_failed"], 0, "{c:?}");
    }
    // One per connection, plus the odd retransmitted SYN (a SYN-ACK that
    // waited for neighbour resolution).
    assert!(
        (120..=126).contains(&syn),
        "{syn} SYNs accepted for 120 connections"
    );
}

/// [`exchange`] with one change at `at`, as (failures, fewest echoes,
/// connections).
fn exchange_one(
    conns: Vec<Conn>,
    total: Duration,
    at: Duration,
    change: impl FnOnce(),
) -> (Vec<(usize, String)>, usize, Vec<Conn>) {
    let x = exchange(conns, total, vec![(at, Box::new(change))]);
    (x.failures, x.fewest, x.conns)
}

fn open_200(client: &Netns) -> Vec<Conn> {
    let mut conns = connect_many(client, VIP4, 150).unwrap();
    conns.extend(connect_many(client, VIP6, 50).unwrap());
    conns
}

/// After a drain during [`exchange`] (its result in `exchanged`): no
/// connection broke or stalled, each stayed on the backend it had
/// (`before`), and 90 new connections from `client` avoid `drained`: those
/// are returned, open.
fn assert_drain_kept_flows(
    client: &Netns,
    drained: &str,
    exchanged: (Vec<(usize, String)>, usize, Vec<Conn>),
    before: &BTreeMap<String, usize>,
) -> Vec<Conn> {
    let (failures, fewest, conns) = exchanged;
    assert_eq!(failures, vec![], "connections broken during the drain");
    assert!(fewest >= 60, "a connection stalled: only {fewest} echoes");
    assert_eq!(&spread(&conns), before, "connections stay where they were");
    drop(conns);

    let fresh = connect_many(client, VIP4, 90).unwrap();
    let after = spread(&fresh);
    assert_eq!(
        after.get(drained),
        None,
        "new connections on the drained backend: {after:?}"
    );
    assert_eq!(after.values().sum::<usize>(), 90);
    fresh
}

#[test]
fn draining_a_backend_breaks_no_connection_and_sends_it_no_new_one() {
    let _one = ONE_LAB_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let mut lab = Lab::new(&["active", "active", "active"]).unwrap();
    let drained = format!("backend-{}", backend_ip(0));
    let conns = open_200(&lab.client);
    let before = spread(&conns);
    assert!(
        before.get(&drained).copied().unwrap_or(0) > 20,
        "{before:?}"
    );

    let lab_ref = &mut lab;
    let (failures, fewest, conns) = exchange_one(
        conns,
        Duration::from_secs(6),
        Duration::from_secs(2),
        || {
            lab_ref.set_state(0, "draining").unwrap();
        },
    );
    let _fresh = assert_drain_kept_flows(&lab.client, &drained, (failures, fewest, conns), &before);

    let established = lab.backends[0].counter("accepted_established").unwrap();
    assert!(
        established > 0,
        "the drained backend kept serving its flows"
    );
    for b in &mut lab.backends[1..] {
        let forwarded = b.counter("forwarded_to_alternate").unwrap();
        assert!(forwarded > 0, "the new primaries forward the old flows");
        assert_eq!(b.counter("forward_failed").unwrap(), 0);
    }
}

#[test]
fn draining_through_the_api_breaks_no_connection_and_sends_it_no_new_one() {
    let _one = ONE_LAB_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let mut lab = Lab::new(&["active", "active", "active"]).unwrap();
    let ip = backend_ip(1);
    let drained = format!("backend-{ip}");
    let conns = open_200(&lab.client);
    let before = spread(&conns);
    assert!(
        before.get(&drained).copied().unwrap_or(0) > 20,
        "{before:?}"
    );

    let token = lab.token_file();
    let tf = token.to_str().unwrap();
    let lab_ref = &lab;
    let mut drain = None;
    let (failures, fewest, conns) = exchange_one(
        conns,
        Duration::from_secs(6),
        Duration::from_secs(2),
        || {
            drain = Some(
                lab_ref
                    .ctl(&["--token-file", tf, "backends", "drain", "lab", &ip])
                    .unwrap(),
            );
        },
    );
    let drain = drain.unwrap();
    assert!(
        drain.status.success(),
        "director-ctl backends drain: {}",
        String::from_utf8_lossy(&drain.stderr)
    );
    assert!(
        String::from_utf8_lossy(&drain.stdout).contains(&format!("backend {ip} draining")),
        "{}",
        String::from_utf8_lossy(&drain.stdout)
    );
    let fresh = assert_drain_kept_flows(&lab.client, &drained, (failures, fewest, conns), &before);

    // The API: draining, no row as primary; it is still an alternate of
    // rows (second chance finds its flows).
    let r = lab.api("GET", "/v1/tables/lab", false).unwrap();
    assert_eq!(r.status, 200, "{}", r.body);
    let table: Value = serde_json::from_str(&r.body).unwrap();
    let b = table["backends"]
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["ip"] == ip.as_str())
        .unwrap();
    assert_eq!(b["state"], "draining", "{b}");
    assert_eq!(b["rows_primary"], 0, "{b}");
    assert!(b["rows_alternate"].as_u64().unwrap() > 0, "{b}");
    // Per-backend counters: every packet encapsulated went to one backend
    // as primary (compared once the connections are closed and quiet).
    drop(fresh);
    std::thread::sleep(Duration::from_millis(500));
    let r = lab.api("GET", "/v1/stats", false).unwrap();
    let stats: Value = serde_json::from_str(&r.body).unwrap();
    let to_backends: u64 = stats["backends"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["packets"].as_u64().unwrap())
        .sum();
    assert_eq!(
        to_backends,
        stats["outcomes"]["encapsulated"].as_u64().unwrap(),
        "{stats}"
    );
    assert!(b["packets"].as_u64().unwrap() > 0, "{b}");
    // The drain is in the config file, for a restart.
    let on_disk = std::fs::read_to_string(lab.config_path()).unwrap();
    let c = proto::config::Config::from_json(&on_disk).unwrap();
    let addr: std::net::IpAddr = ip.parse().unwrap();
    let on_file = c.table("lab").unwrap().backends.iter();
    let state = on_file
        .map(|b| &b.backend)
        .find(|b| b.addr == addr)
        .unwrap()
        .state;
    assert_eq!(state, proto::table::BackendState::Draining);

    assert!(lab.backends[1].counter("accepted_established").unwrap() > 0);
    for i in [0, 2] {
        let b = &mut lab.backends[i];
        assert!(b.counter("forwarded_to_alternate").unwrap() > 0);
        assert_eq!(b.counter("forward_failed").unwrap(), 0);
    }
}

#[test]
fn adding_a_backend_breaks_no_connection_and_new_ones_land_on_it() {
    let _one = ONE_LAB_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let mut lab = Lab::new(&["active", "active", "inactive"]).unwrap();
    let added = format!("backend-{}", backend_ip(2));
    let conns = open_200(&lab.client);
    let before = spread(&conns);
    assert_eq!(before.get(&added), None, "{before:?}");

    let lab_ref = &mut lab;
    let (failures, fewest, conns) = exchange_one(
        conns,
        Duration::from_secs(6),
        Duration::from_secs(2),
        || {
            lab_ref.set_state(2, "active").unwrap();
        },
    );
    assert_eq!(
        failures,
        vec![],
        "connections broken while adding a backend"
    );
    assert!(fewest >= 60, "a connection stalled: only {fewest} echoes");
    assert_eq!(spread(&conns), before, "connections stay where they were");
    drop(conns);

    let fresh = connect_many(&lab.client, VIP4, 90).unwrap();
    let after = spread(&fresh);
    let landed = after.get(&added).copied().unwrap_or(0);
    assert!(
        landed >= 15,
        "new connections on the added backend: {after:?}"
    );

    let forwarded = lab.backends[2].counter("forwarded_to_alternate").unwrap();
    assert!(forwarded > 0, "the added backend forwards the old flows");
    for b in &mut lab.backends[..2] {
        assert!(b.counter("accepted_established").unwrap() > 0);
    }
}

#[test]
fn gue_from_a_disallowed_source_and_malformed_gue_are_dropped_and_counted() {
    let _one = ONE_LAB_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let mut lab = Lab::new(&["active"]).unwrap();
    let target = format!("{}:19523", backend_ip(0));
    // A well-formed GUE packet carrying a SYN "from" a spoofed client,
    // sent by the client host, which is not a director.
    let mut good = vec![2u8, 4, 0, 0, 0, 0, 0, 1, 198, 51, 100, 11];
    let mut inner = vec![0x45, 0, 0, 40, 0, 0, 0x40, 0, 64, 6, 0, 0];
    inner.extend_from_slice(&[192, 0, 2, 66, 203, 0, 113, 10]);
    inner.extend_from_slice(&[
        0x9c, 0x40, 0, 80, 0, 0, 0, 1, 0, 0, 0, 0, 0x50, 2, 0xff, 0xff,
    ]);
    inner.extend_from_slice(&[0, 0, 0, 0]);
    good.extend_from_slice(&inner);
    let t = target.clone();
    let g = good.clone();
    lab.client
        .run_in(move || {
            let s = std::net::UdpSocket::bind("198.51.100.2:0")?;
            for _ in 0..7 {
                s.send_to(&g, &t)?;
            }
            Ok(())
        })
        .unwrap();
    // From the director (allowed): malformed in 5 ways.
    let mut bad = Vec::new();
    let mut c = good.clone();
    c[0] = 3;
    bad.push(c);
    let mut c = good.clone();
    c[1] = 99;
    bad.push(c);
    let mut c = good.clone();
    c[5] = 7;
    bad.push(c);
    bad.push(good[..10].to_vec());
    let mut c = good.clone();
    c[12] = 0x65; // inner says IPv6 version in an IPv4 slot
    bad.push(c);
    lab.director_ns
        .run_in(move || {
            let s = std::net::UdpSocket::bind("198.51.100.1:0")?;
            for b in &bad {
                s.send_to(b, &target)?;
            }
            Ok(())
        })
        .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let c: BTreeMap<String, u64> = lab.backends[0].counters().unwrap().into_iter().collect();
    assert_eq!(c["dropped_not_allowed"], 7, "{c:?}");
    assert_eq!(c["dropped_invalid"], 5, "{c:?}");
    assert_eq!(c["total"], 12, "{c:?}");
    assert_eq!(c["accepted_syn"], 0, "{c:?}");
}

#[test]
fn restarting_the_redirect_agent_breaks_no_connection() {
    let _one = ONE_LAB_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let mut lab = Lab::new(&["active", "active", "active"]).unwrap();
    let conns = open_200(&lab.client);
    let before = spread(&conns);
    for i in 0..2 {
        let name = format!("backend-{}", backend_ip(i));
        assert!(before.get(&name).copied().unwrap_or(0) > 20, "{before:?}");
    }

    // Two backends' agents restarted one after the other under traffic:
    // while one is away its GUE reaches a stack that drops it, and TCP
    // retransmits once it is back.
    let gaps = std::sync::Mutex::new(Vec::new());
    let (b0, rest) = lab.backends.split_at_mut(1);
    let (b0, b1) = (&mut b0[0], &mut rest[0]);
    let x = exchange(
        conns,
        Duration::from_secs(8),
        vec![
            (
                Duration::from_secs(2),
                Box::new(|| gaps.lock().unwrap().push(b0.restart_agent().unwrap())),
            ),
            (
                Duration::from_secs(4),
                Box::new(|| gaps.lock().unwrap().push(b1.restart_agent().unwrap())),
            ),
        ],
    );
    eprintln!("agents away for {:?}", gaps.lock().unwrap());
    assert_eq!(x.failures, vec![], "connections broken by an agent restart");
    assert!(
        x.fewest >= 60,
        "a connection stalled: only {} echoes",
        x.fewest
    );
    assert_eq!(spread(&x.conns), before, "connections stay where they were");
    // The restarted agents serve the connections they hold.
    for b in &mut lab.backends[..2] {
        assert!(b.counter("accepted_established").unwrap() > 0);
    }
}
