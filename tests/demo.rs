//! `make demo`: the real thing in a lab of network namespaces. A client, a
//! director (`director-xdp run`, native XDP) and four backend hosts (each
//! with the redirect agent, the VIPs on `lo` and Python's HTTP server; the
//! fourth not yet in the table). Real HTTP requests go through the VIP;
//! while connections are open, three overlapping changes are made: a
//! backend is drained and another added during the drain (`director-ctl`),
//! then the health checker (`healthcheck`, on the director's host) finds a
//! third backend's HTTP server stopped and marks it unhealthy, and healthy
//! again once it is back. None of the connections breaks. Everything is
//! removed at the end, on every exit path.
//! Documentation addresses only. Needs root.

use std::collections::BTreeMap;
use std::io;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use lab_tests::glb::{self, Conn, Lab, VIP4, VIP6};
use lab_tests::{Daemon, netns_exists, workspace_bin};

fn title(s: &str) {
    println!("\n\x1b[1m== {s}\x1b[0m");
}

/// `n` HTTP requests with curl from the client, each on a new connection;
/// returns who answered, counted.
fn http_requests(lab: &Lab, vip: &str, n: usize) -> io::Result<BTreeMap<String, usize>> {
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

/// Exchanges lines on every live connection for `secs`; returns the
/// round trips made and how many connections broke.
fn talk(conns: &mut [Conn], alive: &mut [bool], secs: u64) -> (usize, usize) {
    let start = Instant::now();
    let mut rounds = 0;
    let mut broken = 0;
    while start.elapsed() < Duration::from_secs(secs) {
        for (c, ok) in conns.iter_mut().zip(alive.iter_mut()) {
            if *ok && c.ping(&format!("round {rounds}")).is_err() {
                *ok = false;
                broken += 1;
            }
        }
        rounds += 1;
        std::thread::sleep(Duration::from_millis(50));
    }
    (rounds, broken)
}

/// Runs `director-ctl ARGS` (with the lab's token) as an operator would,
/// printing the command and what it answered.
fn ctl(lab: &Lab, args: &[&str]) -> io::Result<()> {
    let token = lab.token_file();
    let token = token.to_str().unwrap_or_default();
    println!("  $ director-ctl {}", args.join(" "));
    let mut all = vec!["--token-file", token];
    all.extend_from_slice(args);
    let out = lab.ctl(&all)?;
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

/// Round trips made and connections broken, over the demo.
#[derive(Default)]
struct Tally {
    rounds: usize,
    broken: usize,
}

impl Tally {
    fn add(&mut self, (rounds, broken): (usize, usize)) {
        self.rounds += rounds;
        self.broken += broken;
    }
}

/// Python's HTTP server on backend `i`, port 8080, answering with the
/// backend's name.
fn http_server(lab: &Lab, i: usize) -> io::Result<Daemon> {
    let dir = lab.scratch.file(&format!("www{i}"));
    std::fs::create_dir_all(&dir)?;
    std::fs::write(
        dir.join("index.html"),
        format!("backend-{}\n", glb::backend_ip(i)),
    )?;
    let n = std::fs::read_dir(lab.scratch.file(""))?.count();
    let log = lab.scratch.file(&format!("http{i}-{n}.log"));
    let mut s = lab.backends[i].ns.spawn(
        "python3",
        &[
            "-m",
            "http.server",
            "8080",
            "--bind",
            "::",
            "--directory",
            dir.to_str().unwrap_or("."),
        ],
        log,
    )?;
    s.wait_for_log("Serving HTTP", Duration::from_secs(10))?;
    Ok(s)
}

/// Stops a server (SIGTERM) and waits for it to be gone.
fn stop(server: &mut Daemon) -> io::Result<()> {
    server.signal(libc::SIGTERM)?;
    let start = Instant::now();
    while server.running()? {
        if start.elapsed() > Duration::from_secs(10) {
            return Err(io::Error::other("the HTTP server did not stop"));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(())
}

/// `healthcheck` on the director's host with the lab's table: every
/// backend's HTTP server and tunnel checked, verdicts pushed to the
/// director's API.
fn health_checker(lab: &Lab) -> io::Result<Daemon> {
    let config = lab.healthcheck_config(lab.backends.len(), "")?;
    let bin = workspace_bin("healthcheck")?;
    let mut checker = lab.director_ns.spawn(
        bin.to_str().unwrap_or("healthcheck"),
        &["--config", config.to_str().unwrap_or_default()],
        lab.scratch.file("healthcheck.log"),
    )?;
    checker.wait_for_log("serving /health", Duration::from_secs(10))?;
    Ok(checker)
}

/// Keeps the connections talking until the director's table has backend
/// `ip` with `healthy`: (seconds waited, its health reason).
fn wait_for_health(
    lab: &Lab,
    ip: &str,
    healthy: bool,
    conns: &mut [Conn],
    alive: &mut [bool],
    t: &mut Tally,
) -> io::Result<(f64, String)> {
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(30) {
        t.add(talk(conns, alive, 1));
        let r = lab.api("GET", "/v1/tables/lab", false)?;
        let table: proto::api::Table = serde_json::from_str(&r.body).map_err(io::Error::other)?;
        if let Some(b) = table
            .backends
            .iter()
            .find(|b| b.ip.to_string() == ip && b.healthy == healthy)
        {
            let reason = b
                .health_reason
                .clone()
                .unwrap_or_else(|| "no reason".into());
            return Ok((start.elapsed().as_secs_f64(), reason));
        }
    }
    Err(io::Error::other(format!(
        "backend {ip} is not healthy={healthy} on the director after 30 s"
    )))
}

fn show(seen: &BTreeMap<String, usize>) {
    let total: usize = seen.values().sum();
    for (who, n) in seen {
        println!("  {who:<22} {n:>4}  {}", "#".repeat(n * 40 / total.max(1)));
    }
}

fn demo() -> io::Result<()> {
    title(
        "Building the lab: client, director, four backend hosts (namespaces, one bridge); a table of three backends, two alternates per row",
    );
    let mut lab = Lab::with_hops(&["active", "active", "active", "absent"], 2)?;
    println!("  director: {}", lab.director_ns.name());
    for (i, b) in lab.backends.iter().enumerate() {
        println!(
            "  backend {}: {} ({}){}",
            i + 1,
            glb::backend_ip(i),
            b.ns.name(),
            if i == 3 { ", not in the table yet" } else { "" }
        );
    }
    // A real HTTP server on every backend, answering with the backend's name.
    let mut servers = Vec::new();
    for i in 0..lab.backends.len() {
        servers.push(http_server(&lab, i)?);
    }

    title(
        "60 HTTP requests to http://203.0.113.10:8080/ and 30 to http://[2001:db8:10::10]:8080/ (curl, one connection each)",
    );
    println!("  IPv4:");
    show(&http_requests(&lab, VIP4, 60)?);
    println!("  IPv6:");
    show(&http_requests(&lab, VIP6, 30)?);
    println!("  replies go straight from the backends to the client (direct server return)");

    title(
        "Starting the health checker on the director's host: each backend's HTTP server (8080) and tunnel (gue), verdicts pushed to the director",
    );
    let _checker = health_checker(&lab)?;
    println!(
        "  checks every 2 s (GLB's default), 3 failures make a backend unhealthy, 3 passes healthy"
    );

    title("Opening 90 long-lived connections (60 IPv4, 30 IPv6) that keep exchanging lines");
    let mut conns: Vec<Conn> = glb::connect_many(&lab.client, VIP4, 60)?;
    conns.extend(glb::connect_many(&lab.client, VIP6, 30)?);
    let mut by_backend: BTreeMap<String, usize> = BTreeMap::new();
    for c in &conns {
        *by_backend.entry(c.backend.clone()).or_insert(0) += 1;
    }
    show(&by_backend);

    let (b2, b3, b4) = (glb::backend_ip(1), glb::backend_ip(2), glb::backend_ip(3));
    let mut alive = vec![true; conns.len()];
    let mut t = Tally::default();
    t.add(talk(&mut conns, &mut alive, 1));

    title(&format!(
        "Change 1 of 3: drain backend 2 ({b2}) while they talk"
    ));
    ctl(&lab, &["backends", "drain", "lab", &b2])?;
    t.add(talk(&mut conns, &mut alive, 2));

    title(&format!(
        "Change 2 of 3, during the drain: add backend 4 ({b4}); first, what it would do"
    ));
    ctl(&lab, &["preview", "lab", "add", &b4])?;
    ctl(&lab, &["backends", "add", "lab", &b4])?;
    t.add(talk(&mut conns, &mut alive, 2));

    title(&format!(
        "Change 3 of 3: backend 3's HTTP server ({b3}:8080) stops; the health checker on the director's host notices"
    ));
    stop(&mut servers[2])?;
    println!("  (the backend host and its tunnel are up: its held connections keep working)");
    let (secs, found) = wait_for_health(&lab, &b3, false, &mut conns, &mut alive, &mut t)?;
    println!(
        "  after {secs:.1} s the director has backend 3 unhealthy ({found}): no new flows; its established ones stay"
    );
    println!(
        "\n  {} connections, {} rounds of round trips through the three changes: {} broken",
        conns.len(),
        t.rounds,
        t.broken
    );
    ctl(&lab, &["backends", "list", "lab"])?;

    title(
        "New HTTP requests now: none reaches the drained or the unhealthy backend; the new one takes its share",
    );
    show(&http_requests(&lab, VIP4, 60)?);

    title("Backend 3's HTTP server is started again; the checker marks it healthy");
    servers[2] = http_server(&lab, 2)?;
    let (secs, found) = wait_for_health(&lab, &b3, true, &mut conns, &mut alive, &mut t)?;
    println!("  after {secs:.1} s the director has backend 3 healthy again ({found})");
    println!(
        "  {} connections through all of it: {} broken",
        conns.len(),
        t.broken
    );

    title("What the backends' redirect modules counted (second chance at work)");
    for (i, b) in lab.backends.iter_mut().enumerate() {
        let c = b.counters()?;
        let pick = |n: &str| c.iter().find(|(k, _)| k == n).map_or(0, |(_, v)| *v);
        println!(
            "  backend {} {:<15} accepted_syn {:>4}  accepted_established {:>5}  forwarded_to_alternate {:>4}",
            i + 1,
            glb::backend_ip(i),
            pick("accepted_syn"),
            pick("accepted_established"),
            pick("forwarded_to_alternate"),
        );
    }
    drop(conns);
    drop(servers);
    let names: Vec<String> = std::iter::once(lab.director_ns.name().to_string())
        .chain(lab.backends.iter().map(|b| b.ns.name().to_string()))
        .chain(std::iter::once(lab.client.name().to_string()))
        .collect();
    drop(lab);
    title("Tearing the lab down");
    let left = names.iter().filter(|n| netns_exists(n)).count();
    println!("  namespaces left: {left}");
    if t.broken > 0 || left > 0 {
        return Err(io::Error::other(format!(
            "{} connections broke, {left} namespaces left",
            t.broken
        )));
    }
    Ok(())
}

fn main() -> ExitCode {
    match demo() {
        Ok(()) => {
            println!("\ndemo done.");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("demo failed: {e}");
            ExitCode::FAILURE
        }
    }
}
