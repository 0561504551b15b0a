//! Hop chains end to end, with the kernel's TCP stack: a real director,
//! four backend hosts running the redirect agent, changes made through the
//! API with `director-ctl` while connections stay open (docs/spec.md section 4).
//!
//! - Two alternates per row hold 300 connections (IPv4 and IPv6) through
//!   three overlapping changes: a drain, a backend added during the drain,
//!   and a third backend marked unhealthy while it still serves.
//! - The loss report (`director-ctl preview`) names exactly the
//!   connections that a change breaks: with one alternate, adding a backend
//!   during a drain breaks the connections made on the drain-time primaries
//!   of some rows, and the report says which; with two, the report is empty
//!   and none breaks.
//!
//! The labs run one at a time (a lock): two cores, and timing-sensitive
//! assertions (a 3 s read timeout is a stalled connection).
#![allow(clippy::unwrap_used)] // a test: a failure is the test failing

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::Duration;

use lab_tests::glb::{Conn, Lab, VIP4, VIP6, backend_ip, connect_many, exchange};
use proto::config::Config;
use proto::flow::{Flow, flow_hash, row_of};
use proto::table::RowDiff;

static ONE_LAB_AT_A_TIME: Mutex<()> = Mutex::new(());

fn spread(conns: &[Conn]) -> BTreeMap<String, usize> {
    let mut m = BTreeMap::new();
    for c in conns {
        *m.entry(c.backend.clone()).or_default() += 1;
    }
    m
}

/// `director-ctl ARGS` with the lab's token; its stdout, or a panic with
/// its stderr.
fn ctl(lab: &Lab, args: &[&str]) -> String {
    let token = lab.token_file();
    let mut all = vec!["--token-file", token.to_str().unwrap()];
    all.extend_from_slice(args);
    let out = lab.ctl(&all).unwrap();
    assert!(
        out.status.success(),
        "director-ctl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn backend_name(i: usize) -> String {
    format!("backend-{}", backend_ip(i))
}

/// `n4` connections to the IPv4 VIP and `n6` to the IPv6 one.
fn open(lab: &Lab, n4: usize, n6: usize) -> Vec<Conn> {
    let mut conns = connect_many(&lab.client, VIP4, n4).unwrap();
    conns.extend(connect_many(&lab.client, VIP6, n6).unwrap());
    conns
}

#[test]
fn three_overlapping_changes_break_none_of_300_connections() {
    let _one = ONE_LAB_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let lab = Lab::with_hops(&["active", "active", "active", "absent"], 2).unwrap();
    let conns = open(&lab, 200, 100);
    let before = spread(&conns);
    for i in 0..3 {
        assert!(
            before.get(&backend_name(i)).copied().unwrap_or(0) > 40,
            "{before:?}"
        );
    }

    let (drained, added, sick) = (backend_ip(0), backend_ip(3), backend_ip(1));
    let x = exchange(
        conns,
        Duration::from_secs(10),
        vec![
            (
                Duration::from_secs(2),
                Box::new(|| {
                    ctl(&lab, &["backends", "drain", "lab", &drained]);
                }),
            ),
            (
                Duration::from_secs(4),
                Box::new(|| {
                    ctl(&lab, &["backends", "add", "lab", &added]);
                }),
            ),
            (
                Duration::from_secs(6),
                Box::new(|| {
                    ctl(
                        &lab,
                        &[
                            "health",
                            "set",
                            "lab",
                            &sick,
                            "--healthy",
                            "false",
                            "--reason",
                            "slow health endpoint",
                        ],
                    );
                }),
            ),
        ],
    );
    assert_eq!(x.failures, vec![], "connections broken by the changes");
    assert!(
        x.fewest >= 100,
        "a connection stalled: only {} echoes",
        x.fewest
    );
    assert_eq!(spread(&x.conns), before, "connections stay where they were");
    drop(x);

    // New connections avoid the drained and the unhealthy backend, and
    // some land on the added one.
    let fresh = open(&lab, 90, 30);
    let after = spread(&fresh);
    assert_eq!(after.get(&backend_name(0)), None, "{after:?}");
    assert_eq!(after.get(&backend_name(1)), None, "{after:?}");
    assert!(
        after.get(&backend_name(3)).copied().unwrap_or(0) >= 15,
        "{after:?}"
    );
    assert_eq!(after.values().sum::<usize>(), 120);
    drop(fresh);

    // The drained and the unhealthy backend kept serving their own
    // connections, which the others forwarded to them.
    let mut lab = lab;
    for i in [0, 1] {
        assert!(lab.backends[i].counter("accepted_established").unwrap() > 0);
    }
    for b in &mut lab.backends {
        assert_eq!(b.counter("forward_failed").unwrap(), 0);
    }
    assert!(lab.backends[3].counter("forwarded_to_alternate").unwrap() > 0);
}

/// The row of a connection from the lab's client: the lab hashes the
/// client's address and port.
fn row_of_conn(config: &Config, c: &Conn) -> u32 {
    let local = c.writer.local_addr().unwrap();
    let addr = match local.ip() {
        IpAddr::V4(a) => a.octets().to_vec(),
        IpAddr::V6(a) => a.octets().to_vec(),
    };
    let t = config.table("lab").unwrap();
    row_of(flow_hash(
        &t.hash_key,
        config.director.hash_fields.0,
        &Flow {
            src_addr: &addr,
            dst_addr: &[],
            src_port: local.port(),
            dst_port: 0,
        },
    ))
}

/// Opens connections, drains backend 0, opens more, asks for the loss
/// report of adding backend 3, adds it, and compares: returns the report
/// and the indexes of the connections it predicts and of those that broke.
fn drain_then_add(hops: u8) -> (RowDiff, BTreeSet<usize>, BTreeSet<usize>) {
    let lab = Lab::with_hops(&["active", "active", "active", "absent"], hops).unwrap();
    let mut conns = open(&lab, 100, 50);
    ctl(&lab, &["backends", "drain", "lab", &backend_ip(0)]);
    // Made during the drain: on the drain-time primaries.
    conns.extend(open(&lab, 100, 50));
    let added = backend_ip(3);
    let preview = ctl(&lab, &["--json", "preview", "lab", "add", &added]);
    let report: RowDiff = serde_json::from_str(&preview).unwrap();
    let config = Config::from_json(&std::fs::read_to_string(lab.config_path()).unwrap()).unwrap();
    let predicted: BTreeSet<usize> = conns
        .iter()
        .enumerate()
        .filter(|(_, c)| {
            let ip: IpAddr = c.backend.trim_start_matches("backend-").parse().unwrap();
            report.loses(ip, row_of_conn(&config, c))
        })
        .map(|(i, _)| i)
        .collect();

    let x = exchange(
        conns,
        Duration::from_secs(6),
        vec![(
            Duration::from_secs(1),
            Box::new(|| {
                ctl(&lab, &["backends", "add", "lab", &added]);
            }),
        )],
    );
    let broken: BTreeSet<usize> = x.failures.iter().map(|(i, _)| *i).collect();
    (report, predicted, broken)
}

#[test]
fn the_loss_report_names_exactly_the_connections_that_break() {
    let _one = ONE_LAB_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    // One alternate: a drain and an add in flight are one change too many
    // for the rows where the new backend ranks above the drain-time
    // primary.
    let (report, predicted, broken) = drain_then_add(1);
    assert!(
        !predicted.is_empty(),
        "{} rows lost, none with a connection",
        report.rows_lost
    );
    assert_eq!(broken, predicted, "the report predicts exactly what breaks");
    // Two alternates: the report is empty, and nothing breaks.
    let (report, predicted, broken) = drain_then_add(2);
    assert_eq!(predicted, BTreeSet::new());
    assert_eq!(broken, BTreeSet::new());
    let lost: Vec<(IpAddr, usize, usize)> = report
        .lost
        .iter()
        .map(|l| (l.ip, l.primary_rows.len(), l.alternate_rows.len()))
        .collect();
    assert_eq!((report.rows_lost, lost), (0, vec![]), "the report is empty");
}
