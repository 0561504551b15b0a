//! `make demo`: a fleet in network namespaces (tests/fleet_lab.rs). A
//! client, a router running BIRD that spreads flows with ECMP over three
//! directors (each running BIRD and `director-xdp run`, announcing the VIPs
//! over BGP, with BFD), four backend hosts (the redirect agent, the VIPs on
//! `lo`, Python's HTTP server; the fourth not yet in the table) and an
//! operations host running the health checker, which pushes to every
//! director. Under 300 long-lived connections and a steady HTTP load, one
//! change after the other: a backend drained fleet-wide, another added
//! during the drain, a third one's HTTP server stopped (the checker marks
//! it unhealthy on every director) and started again, a director's host
//! cut off (BFD withdraws it), and a director drained and stopped. A
//! progress line per phase shows the connections, the requests and the
//! router's next hops live. Nothing breaks; everything is removed at the
//! end, on every exit path. Documentation addresses only. Needs root.

use std::collections::BTreeMap;
use std::io::{self, Write as _};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use lab_tests::fleet_lab::{DIRECTORS, FleetLab, Load, director_api, director_ip};
use lab_tests::glb::{self, Exchange, VIP4, VIP6};
use lab_tests::netns_exists;

fn title(s: &str) {
    println!("\n\x1b[1m== {s}\x1b[0m");
}

/// Director `k` as the demo names it (1-based).
fn name(k: usize) -> String {
    format!("director {}", k + 1)
}

/// Which directors the router sends `vip` to now, by name.
fn routed(lab: &FleetLab, vip: &str) -> io::Result<Vec<usize>> {
    let hops = lab.next_hops(vip)?;
    Ok((0..DIRECTORS)
        .filter(|k| {
            hops.iter()
                .any(|h| *h == director_ip(*k) || *h == format!("2001:db8:1::{}", 21 + k))
        })
        .collect())
}

/// What runs in the background while the phases go on.
struct Traffic {
    held: Exchange,
    load: Load,
}

impl Traffic {
    /// Requests failed so far.
    fn failed(&self) -> usize {
        self.load.progress().1
    }

    /// Ends a phase that began with `failed_before` failed requests: says
    /// how many failed in it; an error unless `expected` explains them.
    fn end_phase(&self, failed_before: usize, expected: Option<&str>) -> io::Result<()> {
        match (self.failed() - failed_before, expected) {
            (0, _) => Ok(()),
            (n, Some(why)) => {
                println!("  {n} requests failed in this phase: {why}");
                Ok(())
            }
            (n, None) => Err(io::Error::other(format!(
                "{n} requests failed in this phase"
            ))),
        }
    }
}

/// Shows a live progress line until `done` says so (or `max` passes):
/// time in the phase, connections alive, round trips, requests and the
/// router's next hops. Returns how long it took, or an error naming what
/// did not happen.
fn watch(
    lab: &FleetLab,
    traffic: &Traffic,
    what: &str,
    max: Duration,
    mut done: impl FnMut() -> io::Result<bool>,
) -> io::Result<Duration> {
    let start = Instant::now();
    loop {
        let (count, echoes, broken) = traffic.held.progress();
        let (ok, failed) = traffic.load.progress();
        let hops: Vec<String> = routed(lab, VIP4)?
            .iter()
            .map(|k| format!("d{}", k + 1))
            .collect();
        print!(
            "\r  {what} {:>5.1} s | connections {}/{count} alive, {echoes} round trips | requests {ok} ok, {failed} failed | router -> {:<9}",
            start.elapsed().as_secs_f64(),
            count - broken,
            hops.join(" ")
        );
        io::stdout().flush()?;
        if done()? {
            println!();
            return Ok(start.elapsed());
        }
        if start.elapsed() > max {
            println!();
            return Err(io::Error::other(format!("{what}: not within {max:?}")));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Keeps the progress line going for `d`.
fn hold(lab: &FleetLab, traffic: &Traffic, d: Duration) -> io::Result<()> {
    let start = Instant::now();
    watch(lab, traffic, "running", d + Duration::from_secs(1), || {
        Ok(start.elapsed() >= d)
    })
    .map(drop)
}

/// Runs `director-ctl ARGS` on the operations host, printing the command
/// and what it answered.
fn ctl(lab: &FleetLab, args: &[&str]) -> io::Result<()> {
    println!("  $ director-ctl {}", args.join(" "));
    let out = lab.ctl(args)?;
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        println!("    {line}");
    }
    if !out.status.success() {
        return Err(io::Error::other(format!(
            "director-ctl {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        )));
    }
    Ok(())
}

/// `n` HTTP requests with curl from the client, each on a new connection;
/// who answered, counted.
fn http_requests(lab: &FleetLab, vip: &str, n: usize) -> io::Result<BTreeMap<String, usize>> {
    let url = if vip.contains(':') {
        format!("http://[{vip}]:8080/")
    } else {
        format!("http://{vip}:8080/")
    };
    let mut seen = BTreeMap::new();
    for _ in 0..n {
        let out = lab
            .client
            .exec("curl", &["-sS", "--max-time", "5", "--fail", &url])?;
        let who = String::from_utf8_lossy(&out.stdout).trim().to_string();
        *seen.entry(who).or_insert(0) += 1;
    }
    Ok(seen)
}

fn show(seen: &BTreeMap<String, usize>) {
    let total: usize = seen.values().sum();
    for (who, n) in seen {
        println!(
            "    {who:<22} {n:>4}  {}",
            "#".repeat(n * 40 / total.max(1))
        );
    }
}

fn director_status(lab: &FleetLab, k: usize) -> io::Result<proto::api::DirectorStatus> {
    let r = lab.api(k, "GET", proto::api::path::DIRECTOR)?;
    serde_json::from_str(&r.body).map_err(|e| io::Error::other(format!("{e}: {}", r.body)))
}

fn vip_packets(lab: &FleetLab) -> io::Result<Vec<u64>> {
    (0..DIRECTORS)
        .map(|k| director_status(lab, k).map(|d| d.vip_packets))
        .collect()
}

/// Whether backend `ip` has `healthy` on directors `ks`.
fn healthy_on(lab: &FleetLab, ks: &[usize], ip: &str, healthy: bool) -> io::Result<bool> {
    for k in ks {
        let r = lab.api(*k, "GET", &proto::api::path::table("lab"))?;
        let t: proto::api::Table = serde_json::from_str(&r.body).map_err(io::Error::other)?;
        if !t
            .backends
            .iter()
            .any(|b| b.ip.to_string() == ip && b.healthy == healthy)
        {
            return Ok(false);
        }
    }
    Ok(true)
}

fn demo(lab: &mut FleetLab) -> io::Result<()> {
    for k in 0..DIRECTORS {
        println!(
            "  {}: {} ({}), BIRD announcing the VIPs to the router",
            name(k),
            director_ip(k),
            lab.directors[k].ns.name()
        );
    }
    for (i, b) in lab.backends.iter().enumerate() {
        println!(
            "  backend {}: {} ({}){}",
            i + 1,
            glb::backend_ip(i),
            b.ns.name(),
            if i == 3 { ", not in the table yet" } else { "" }
        );
    }
    let out = lab.router.ip(&["route", "show", VIP4])?;
    println!("  the router's route to the VIP, learned over BGP from every director:");
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        println!("    {}", line.trim());
    }

    title(
        "Starting the health checker on the operations host: each backend's HTTP server and tunnel, verdicts pushed to all three directors",
    );
    lab.start_checker()?;
    println!("  checks every second; 3 failures make a backend unhealthy, 3 passes healthy");

    title(
        "60 HTTP requests to http://203.0.113.10:8080/ and 30 to http://[2001:db8:10::10]:8080/ (curl, one connection each)",
    );
    let before = vip_packets(lab)?;
    println!("  answered by:");
    show(&http_requests(lab, VIP4, 60)?);
    show(&http_requests(lab, VIP6, 30)?);
    let after = vip_packets(lab)?;
    println!(
        "  carried by (VIP packets each director forwarded; the router's ECMP hash picks one per flow):"
    );
    for k in 0..DIRECTORS {
        println!("    {:<12} {:>5}", name(k), after[k] - before[k]);
    }

    title(
        "Opening 300 long-lived connections (200 IPv4, 100 IPv6) that keep exchanging lines, and a steady HTTP load (a request every 50 ms)",
    );
    let mut conns = glb::connect_many(&lab.client, VIP4, 200)?;
    conns.extend(glb::connect_many(&lab.client, VIP6, 100)?);
    let mut by_backend: BTreeMap<String, usize> = BTreeMap::new();
    for c in &conns {
        *by_backend.entry(c.backend.clone()).or_insert(0) += 1;
    }
    show(&by_backend);
    let traffic = Traffic {
        held: Exchange::start(conns),
        load: Load::start(lab, Duration::from_millis(50)),
    };
    let result = phases(lab, &traffic);
    let report = traffic.load.finish()?;
    let exchanged = traffic.held.finish();
    result?;

    title("What happened to the traffic");
    println!(
        "  300 connections through every phase: {} broken (the one that got the fewest echoes got {})",
        exchanged.failures.len(),
        exchanged.fewest
    );
    println!(
        "  HTTP requests through the VIPs: {} answered, {} failed",
        report.ok,
        report.failed.len()
    );
    for f in report.failed.iter().take(3) {
        println!("    failed: {f}");
    }
    println!("  what the backends' redirect modules counted (second chance at work):");
    for (i, b) in lab.backends.iter_mut().enumerate() {
        let c = b.counters()?;
        let pick = |n: &str| c.iter().find(|(k, _)| k == n).map_or(0, |(_, v)| *v);
        println!(
            "    backend {} {:<15} accepted_syn {:>5}  accepted_established {:>6}  forwarded_to_alternate {:>5}",
            i + 1,
            glb::backend_ip(i),
            pick("accepted_syn"),
            pick("accepted_established"),
            pick("forwarded_to_alternate"),
        );
    }
    // A request that failed outside phase 3 has ended the demo already.
    if !exchanged.failures.is_empty() {
        return Err(io::Error::other(format!(
            "{} connections broke",
            exchanged.failures.len()
        )));
    }
    Ok(())
}

fn phases(lab: &mut FleetLab, traffic: &Traffic) -> io::Result<()> {
    hold(lab, traffic, Duration::from_secs(2))?;
    let urls = lab.urls();
    let all = urls.join(",");
    let (b2, b3, b4) = (glb::backend_ip(1), glb::backend_ip(2), glb::backend_ip(3));

    title(&format!(
        "Phase 1: drain backend 2 ({b2}) on every director, in one command"
    ));
    let failed = traffic.failed();
    ctl(
        lab,
        &[
            "fleet",
            "backends",
            "--directors",
            &all,
            "drain",
            "lab",
            &b2,
        ],
    )?;
    hold(lab, traffic, Duration::from_secs(2))?;
    traffic.end_phase(failed, None)?;

    title(&format!(
        "Phase 2, during the drain: add backend 4 ({b4}) on every director; first, what it would do"
    ));
    let failed = traffic.failed();
    ctl(lab, &["--api", &urls[0], "preview", "lab", "add", &b4])?;
    ctl(
        lab,
        &["fleet", "backends", "--directors", &all, "add", "lab", &b4],
    )?;
    hold(lab, traffic, Duration::from_secs(2))?;
    traffic.end_phase(failed, None)?;

    title(&format!(
        "Phase 3: backend 3's HTTP server ({b3}:8080) stops; the health checker tells every director"
    ));
    let failed = traffic.failed();
    let server = lab.http.remove(2);
    server.stop()?;
    let took = watch(
        lab,
        traffic,
        "waiting for the verdict",
        Duration::from_secs(30),
        || healthy_on(lab, &[0, 1, 2], &b3, false),
    )?;
    println!(
        "  after {:.1} s all three directors have backend 3 unhealthy: no new flows; its tunnel answers, so its established flows stay",
        took.as_secs_f64()
    );
    hold(lab, traffic, Duration::from_secs(1))?;
    traffic.end_phase(
        failed,
        Some("new connections that reached backend 3 before the verdict were refused by its host (nothing listened on 8080); the held connections are untouched"),
    )?;

    title("Phase 4: director 1's host loses its link (its cable is cut)");
    let failed = traffic.failed();
    lab.set_cable(0, false)?;
    let took = watch(
        lab,
        traffic,
        "waiting for the router",
        Duration::from_secs(10),
        || Ok(!routed(lab, VIP4)?.contains(&0) && !routed(lab, VIP6)?.contains(&0)),
    )?;
    println!(
        "  the router dropped director 1 after {} ms (BFD: 100 ms x 3); its flows went to directors 2 and 3, which hold the same table",
        took.as_millis()
    );
    hold(lab, traffic, Duration::from_secs(2))?;
    println!("  the cable is plugged back in:");
    lab.set_cable(0, true)?;
    let took = watch(
        lab,
        traffic,
        "waiting for BGP",
        Duration::from_secs(60),
        || Ok(routed(lab, VIP4)?.len() == DIRECTORS && routed(lab, VIP6)?.len() == DIRECTORS),
    )?;
    println!(
        "  director 1 is routed again after {:.1} s",
        took.as_secs_f64()
    );
    traffic.end_phase(failed, None)?;

    title("Phase 5: backend 3's HTTP server starts again");
    let failed = traffic.failed();
    lab.http.insert(
        2,
        lab_tests::fleet_lab::http_server(&lab.backends[2].ns, &lab.scratch, 2)?,
    );
    let took = watch(
        lab,
        traffic,
        "waiting for the verdict",
        Duration::from_secs(30),
        || healthy_on(lab, &[0, 1, 2], &b3, true),
    )?;
    println!(
        "  after {:.1} s all three directors have backend 3 healthy again",
        took.as_secs_f64()
    );
    traffic.end_phase(failed, None)?;

    title("Phase 6: director 3 is drained through its API, then stopped (as before maintenance)");
    let failed = traffic.failed();
    let api3 = format!("http://{}", director_api(2));
    ctl(lab, &["--api", &api3, "director", "drain"])?;
    let mut last = (director_status(lab, 2)?.vip_packets, Instant::now());
    let took = watch(
        lab,
        traffic,
        "waiting for director 3 to go quiet",
        Duration::from_secs(30),
        || {
            let n = director_status(lab, 2)?.vip_packets;
            if n != last.0 {
                last = (n, Instant::now());
            }
            Ok(!routed(lab, VIP4)?.contains(&2) && last.1.elapsed() > Duration::from_secs(2))
        },
    )?;
    println!(
        "  withdrawn, and no VIP packet for 2 s after {:.1} s",
        took.as_secs_f64()
    );
    ctl(lab, &["--api", &api3, "director", "status"])?;
    let status = lab.stop_director(2)?;
    println!("  director 3's daemon stopped ({status})");
    hold(lab, traffic, Duration::from_secs(2))?;
    traffic.end_phase(failed, None)?;

    title("The two directors that run hold the same tables");
    ctl(lab, &["fleet", "status", &urls[0], &urls[1]])?;
    Ok(())
}

fn main() -> ExitCode {
    title(
        "Building the fleet: client, router (BIRD, ECMP), three directors (BIRD + director-xdp), four backends, an operations host",
    );
    let mut lab =
        match FleetLab::with_backends([&[], &[], &[]], ["active", "active", "active", "absent"]) {
            Ok(lab) => lab,
            Err(e) => {
                eprintln!("demo failed: building the lab: {e}");
                return ExitCode::FAILURE;
            }
        };
    let result = demo(&mut lab);
    let names = lab.namespaces();
    let pids = lab.bird_pids();
    drop(lab);
    title("Tearing the lab down");
    let left = names.iter().filter(|n| netns_exists(n)).count();
    let birds = pids
        .iter()
        .filter(|p| std::path::Path::new(&format!("/proc/{p}")).exists())
        .count();
    println!("  namespaces left: {left}; BIRD processes left: {birds}");
    match result {
        Ok(()) if left == 0 && birds == 0 => {
            println!("\ndemo done.");
            ExitCode::SUCCESS
        }
        Ok(()) => {
            eprintln!("demo failed: {left} namespaces and {birds} BIRD processes left behind");
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("demo failed: {e}");
            ExitCode::FAILURE
        }
    }
}
