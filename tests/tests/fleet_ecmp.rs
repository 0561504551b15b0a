//! The fleet (tests/fleet_lab.rs): three directors behind a router that
//! spreads flows over them with ECMP, learned over BGP from each
//! director's BIRD, with BFD; four backends; the health checker pushing to
//! every director. 300 held connections (200 IPv4, 100 IPv6) exchange a
//! line every 50 ms each, and a steady HTTP load runs through the VIPs,
//! while, one after the other: a backend is drained fleet-wide, a
//! director's host loses its link, a director's daemon is restarted
//! hitlessly, and a director is drained through its API and then stopped;
//! the drained and an announcing director's status pages, in headless
//! Chromium, show their BGP state. A second test: a director with no
//! backend to serve withdraws, SIGTERM withdraws before the daemon stops
//! forwarding, and a director whose BIRD crashes is dropped at once and
//! reports it.
//! Not one connection breaks and not one request fails. Needs root.
#![allow(clippy::unwrap_used)] // a test: a failure is the test failing

use std::time::{Duration, Instant};

use lab_tests::chromium::{self, text};
use lab_tests::fleet_lab::{DIRECTORS, FleetLab, Load, director_ip};
use lab_tests::glb::{Exchange, VIP4, VIP6, backend_ip, connect_many};

fn director(lab: &FleetLab, k: usize) -> proto::api::DirectorStatus {
    let r = lab.api(k, "GET", proto::api::path::DIRECTOR).unwrap();
    assert_eq!(r.status, 200, "{}", r.body);
    serde_json::from_str(&r.body).unwrap()
}

fn ctl(lab: &FleetLab, args: &[&str]) -> String {
    let out = lab.ctl(args).unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "director-ctl {args:?}: {text}");
    text
}

/// Whether director `k` is among the router's next hops of both VIPs.
fn routed(lab: &FleetLab, k: usize) -> (bool, bool) {
    let v6 = format!("2001:db8:1::{}", 21 + k);
    (
        lab.next_hops(VIP4).unwrap().contains(&director_ip(k)),
        lab.next_hops(VIP6).unwrap().contains(&v6),
    )
}

/// Stops the load and the held connections: not one broke, not one
/// request failed. What the load saw.
fn nothing_broke(load: Load, held: Exchange) -> lab_tests::fleet_lab::LoadReport {
    let report = load.finish().unwrap();
    let exchanged = held.finish();
    eprintln!(
        "requests: {} ok, {} failed; held connections: {} failed, fewest echoes {}",
        report.ok,
        report.failed.len(),
        exchanged.failures.len(),
        exchanged.fewest
    );
    assert_eq!(exchanged.failures, [], "held connections broke");
    assert!(exchanged.fewest > 0);
    assert_eq!(report.failed, Vec::<String>::new(), "requests failed");
    report
}

#[test]
fn a_fleet_keeps_every_connection_through_a_dead_host_a_restart_and_a_drain() {
    // Director 2 restarts hitlessly (its link and maps stay pinned).
    let mut lab = FleetLab::new([&[], &[], &["--keep-on-exit"]]).unwrap();
    lab.start_checker().unwrap();
    for k in 0..DIRECTORS {
        let d = director(&lab, k);
        assert_eq!(d.bgp.state, proto::api::BgpState::Announced, "{d:?}");
        assert_eq!(d.bgp.announced, ["203.0.113.10/32", "2001:db8:10::10/128"]);
    }
    let before: Vec<u64> = (0..DIRECTORS)
        .map(|k| director(&lab, k).vip_packets)
        .collect();
    let mut conns = connect_many(&lab.client, VIP4, 200).unwrap();
    conns.extend(connect_many(&lab.client, VIP6, 100).unwrap());
    let held = Exchange::start(conns);
    let load = Load::start(&lab, Duration::from_millis(50));
    std::thread::sleep(Duration::from_secs(2));

    // The router spreads the flows over every director.
    let spread: Vec<u64> = (0..DIRECTORS)
        .map(|k| director(&lab, k).vip_packets - before[k])
        .collect();
    eprintln!("VIP packets per director in the first 2 s: {spread:?}");
    assert!(spread.iter().all(|n| *n > 100), "{spread:?}");

    // A backend drained on every director, in one command.
    let urls = lab.urls().join(",");
    let out = ctl(
        &lab,
        &[
            "fleet",
            "backends",
            "--directors",
            &urls,
            "drain",
            "lab",
            &backend_ip(0),
        ],
    );
    assert_eq!(
        out.matches(": table \"lab\": backend 198.51.100.11 draining")
            .count(),
        3,
        "{out}"
    );
    assert!(
        out.contains("1 of 1 tables agree across 3 directors"),
        "{out}"
    );

    // Director 0's host dies (its cable is cut): BFD tells the router.
    let cut = Instant::now();
    lab.set_cable(0, false).unwrap();
    while routed(&lab, 0) != (false, false) {
        assert!(
            cut.elapsed() < Duration::from_secs(3),
            "the router still routes to director 0 after {:?} (BFD should drop it in about 0.3 s; BGP's hold time is 9 s)",
            cut.elapsed()
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    let detected = cut.elapsed();
    eprintln!("director 0's cable cut: withdrawn by the router in {detected:?}");
    std::thread::sleep(Duration::from_secs(2));
    lab.set_cable(0, true).unwrap();
    let back = lab
        .wait_for_next_hops(DIRECTORS, Duration::from_secs(30))
        .unwrap();
    eprintln!("director 0's cable back: routed again in {back:?}");

    // Director 2 restarted: the pinned program forwards meanwhile, and the
    // VIPs stay announced.
    let restart = Instant::now();
    lab.stop_director(2).unwrap();
    assert_eq!(routed(&lab, 2), (true, true), "a restart withdraws nothing");
    lab.start_director(2).unwrap();
    eprintln!("director 2 restarted in {:?}", restart.elapsed());
    assert_eq!(routed(&lab, 2), (true, true));

    // Director 1 drained through its API: withdrawn, then quiet.
    let api1 = format!("http://{}", lab_tests::fleet_lab::director_api(1));
    let out = ctl(&lab, &["--api", &api1, "director", "drain", "--wait", "30"]);
    assert!(
        out.contains("drained: VIPs withdrawn, no VIP packet for 2 s"),
        "{out}"
    );
    assert_eq!(routed(&lab, 1), (false, false));
    let d = director(&lab, 1);
    assert!(
        d.drained && d.bgp.state == proto::api::BgpState::Withdrawn,
        "{d:?}"
    );
    assert!(
        d.bgp.withheld.iter().all(|w| w.reason == "drained"),
        "{d:?}"
    );
    let m = lab.api(1, "GET", "/metrics").unwrap().body;
    for line in [
        "glb_director_drained 1",
        "glb_director_bgp_failing 0",
        r#"glb_director_vip_announced{prefix="203.0.113.10/32",reason="drained"} 0"#,
        r#"glb_director_vip_announced{prefix="2001:db8:10::10/128",reason="drained"} 0"#,
    ] {
        assert!(m.lines().any(|l| l == line), "{line} not in\n{m}");
    }
    // The status page of the drained director says so, and the
    // announced one's says what it announces (screenshots kept in target/).
    for (k, state, announced, withheld) in [
        (
            1,
            "withdrawn",
            "none",
            "203.0.113.10/32 (drained), 2001:db8:10::10/128 (drained)",
        ),
        (
            0,
            "announced",
            "203.0.113.10/32, 2001:db8:10::10/128",
            "none",
        ),
    ] {
        let url = format!(
            "http://{}/#token={}",
            lab_tests::fleet_lab::director_api(k),
            lab_tests::fleet_lab::TOKEN
        );
        let (dom, console) = chromium::run(
            &lab.ops,
            &lab.scratch,
            &format!("dom-{k}"),
            &url,
            &["--dump-dom"],
        );
        assert!(console.is_empty(), "console: {console:#?}");
        assert_eq!(text(&dom, r#"id="bgp-state""#), state, "director {k}");
        assert_eq!(
            text(&dom, r#"id="bgp-announced""#),
            announced,
            "director {k}"
        );
        assert_eq!(text(&dom, r#"id="bgp-withheld""#), withheld, "director {k}");
        let drained = if k == 1 { "drained" } else { "undrained" };
        assert_eq!(text(&dom, r#"id="drained""#), drained, "director {k}");
        let png = lab_tests::workspace_bin("director-xdp")
            .unwrap()
            .parent()
            .and_then(std::path::Path::parent)
            .unwrap()
            .join(format!("status-page-fleet-director-{k}.png"));
        chromium::run(
            &lab.ops,
            &lab.scratch,
            &format!("png-{k}"),
            &url,
            &[
                &format!("--screenshot={}", png.display()),
                "--window-size=1280,900",
            ],
        );
        assert!(png.exists(), "{}", png.display());
    }
    let m = lab.api(0, "GET", "/metrics").unwrap().body;
    for line in [
        "glb_director_drained 0",
        r#"glb_director_vip_announced{prefix="203.0.113.10/32",reason=""} 1"#,
    ] {
        assert!(m.lines().any(|l| l == line), "{line} not in\n{m}");
    }
    // ... then stopped.
    let status = lab.stop_director(1).unwrap();
    assert!(status.success(), "{status:?}");
    std::thread::sleep(Duration::from_secs(2));

    let report = nothing_broke(load, held);
    assert!(report.ok > 100, "{} requests", report.ok);
    // The two that run agree (the checker's verdicts included).
    let out = ctl(&lab, &["fleet", "status", &lab.urls()[0], &lab.urls()[2]]);
    assert!(
        out.contains("1 of 1 tables agree across 2 directors"),
        "{out}"
    );
}

#[test]
fn a_director_withdraws_when_nothing_can_serve_before_it_stops_and_with_its_bird() {
    let mut lab = FleetLab::new([&[], &[], &[]]).unwrap();
    let mut conns = connect_many(&lab.client, VIP4, 60).unwrap();
    conns.extend(connect_many(&lab.client, VIP6, 30).unwrap());
    let held = Exchange::start(conns);
    let load = Load::start(&lab, Duration::from_millis(50));

    // Every backend unhealthy on director 0 only, in one change (no
    // checker runs here): it has nothing to serve new flows with, and
    // withdraws. (Its rows stay as they were: a table with no healthy
    // backend fails static.)
    let verdicts = |healthy: bool| {
        let v: Vec<String> = (0..lab_tests::fleet_lab::BACKENDS)
            .map(|i| {
                format!(
                    r#"{{"table":"lab","ip":"{}","healthy":{healthy}}}"#,
                    backend_ip(i)
                )
            })
            .collect();
        format!(r#"{{"verdicts":[{}]}}"#, v.join(","))
    };
    let r = lab
        .api_with(0, "PUT", proto::api::path::HEALTH, Some(&verdicts(false)))
        .unwrap();
    assert_eq!(r.status, 200, "{}", r.body);
    lab.wait_for_next_hops(DIRECTORS - 1, Duration::from_secs(10))
        .unwrap();
    assert_eq!(routed(&lab, 0), (false, false));
    let d = director(&lab, 0);
    assert_eq!(d.bgp.state, proto::api::BgpState::Withdrawn, "{d:?}");
    assert_eq!(d.bgp.withheld.len(), 2, "{d:?}");
    assert!(
        d.bgp.withheld.iter().all(|w| w.reason == "no_backend"),
        "{d:?}"
    );
    // Healthy again: announced again.
    let r = lab
        .api_with(0, "PUT", proto::api::path::HEALTH, Some(&verdicts(true)))
        .unwrap();
    assert_eq!(r.status, 200, "{}", r.body);
    lab.wait_for_next_hops(DIRECTORS, Duration::from_secs(30))
        .unwrap();
    assert_eq!(
        director(&lab, 0).bgp.announced,
        ["203.0.113.10/32", "2001:db8:10::10/128"]
    );

    // SIGTERM to a director that serves: the routers stop sending to it
    // while it still forwards, and only then does it detach.
    let stop = Instant::now();
    let mut daemon = lab.directors[1].daemon.take().unwrap();
    daemon.signal(libc::SIGTERM).unwrap();
    while routed(&lab, 1) != (false, false) {
        assert!(
            daemon.running().unwrap(),
            "director 1 stopped before the router withdrew it"
        );
        assert!(stop.elapsed() < Duration::from_secs(10));
        std::thread::sleep(Duration::from_millis(5));
    }
    let withdrawn = stop.elapsed();
    assert!(
        daemon.running().unwrap(),
        "director 1 stopped before the router withdrew it"
    );
    let status = daemon.stop().unwrap();
    let stopped = stop.elapsed();
    assert!(status.success(), "{status:?}");
    eprintln!(
        "SIGTERM: withdrawn by the router after {withdrawn:?}, the daemon exited after {stopped:?} (withdraw delay {} ms)",
        lab_tests::fleet_lab::WITHDRAW_DELAY_MS
    );
    assert!(
        stopped >= Duration::from_millis(u64::from(lab_tests::fleet_lab::WITHDRAW_DELAY_MS)),
        "the daemon did not forward for the withdraw delay: exited after {stopped:?}"
    );
    std::thread::sleep(Duration::from_secs(1));

    // Director 2's BIRD crashes: its BGP sessions close, the router drops
    // it at once, and the daemon reports BIRD failing (it asks every 5 s).
    let crash = Instant::now();
    lab.kill_bird(2).unwrap();
    lab.wait_for_next_hops(1, Duration::from_secs(5)).unwrap();
    eprintln!(
        "director 2's BIRD killed: withdrawn by the router after {:?}",
        crash.elapsed()
    );
    let start = Instant::now();
    while director(&lab, 2).bgp.state != proto::api::BgpState::Failing {
        assert!(
            start.elapsed() < Duration::from_secs(15),
            "{:?}",
            director(&lab, 2)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    // BIRD back: it reads the include as the daemon left it, and the
    // router has director 2 again.
    lab.start_bird(2).unwrap();
    lab.wait_for_next_hops(2, Duration::from_secs(30)).unwrap();
    let start = Instant::now();
    while director(&lab, 2).bgp.state != proto::api::BgpState::Announced {
        assert!(
            start.elapsed() < Duration::from_secs(15),
            "{:?}",
            director(&lab, 2)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_secs(1));

    nothing_broke(load, held);
}
