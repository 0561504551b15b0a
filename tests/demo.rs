//! `make demo`: the real thing in a lab of network namespaces. A client, a
//! director (`director-xdp run`, native XDP) and three backends (each with
//! the redirect agent, the VIPs on `lo` and Python's HTTP server). Real HTTP
//! requests go through the VIP, one backend is drained while connections
//! are open, and none of them breaks. Everything is removed at the end, on
//! every exit path. Documentation addresses only. Needs root.

use std::collections::BTreeMap;
use std::io;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use lab_tests::glb::{self, Conn, Lab, VIP4, VIP6};
use lab_tests::netns_exists;

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

fn show(seen: &BTreeMap<String, usize>) {
    let total: usize = seen.values().sum();
    for (who, n) in seen {
        println!("  {who:<22} {n:>4}  {}", "#".repeat(n * 40 / total.max(1)));
    }
}

fn demo() -> io::Result<()> {
    title("Building the lab: client, director, three backends (namespaces, one bridge)");
    let mut lab = Lab::new(&["active", "active", "active"])?;
    println!("  director: {}", lab.director_ns.name());
    for (i, b) in lab.backends.iter().enumerate() {
        println!(
            "  backend {}: {} ({})",
            i + 1,
            glb::backend_ip(i),
            b.ns.name()
        );
    }
    // A real HTTP server on every backend, answering with the backend's name.
    let mut servers = Vec::new();
    for (i, b) in lab.backends.iter().enumerate() {
        let dir = lab.scratch.file(&format!("www{i}"));
        std::fs::create_dir_all(&dir)?;
        std::fs::write(
            dir.join("index.html"),
            format!("backend-{}\n", glb::backend_ip(i)),
        )?;
        let log = lab.scratch.file(&format!("http{i}.log"));
        let mut s = b.ns.spawn(
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
        servers.push(s);
    }

    title(
        "60 HTTP requests to http://203.0.113.10:8080/ and 30 to http://[2001:db8:10::10]:8080/ (curl, one connection each)",
    );
    println!("  IPv4:");
    show(&http_requests(&lab, VIP4, 60)?);
    println!("  IPv6:");
    show(&http_requests(&lab, VIP6, 30)?);
    println!("  replies go straight from the backends to the client (direct server return)");

    title("Opening 90 long-lived connections (60 IPv4, 30 IPv6) that keep exchanging lines");
    let mut conns: Vec<Conn> = glb::connect_many(&lab.client, VIP4, 60)?;
    conns.extend(glb::connect_many(&lab.client, VIP6, 30)?);
    let mut by_backend: BTreeMap<String, usize> = BTreeMap::new();
    for c in &conns {
        *by_backend.entry(c.backend.clone()).or_insert(0) += 1;
    }
    show(&by_backend);

    title(&format!(
        "Draining backend 2 ({}) while they talk",
        glb::backend_ip(1)
    ));
    lab.set_state(1, "draining")?;
    println!(
        "  director: {}",
        lab.director
            .log()
            .lines()
            .rfind(|l| l.contains("applied"))
            .unwrap_or("")
    );
    let start = Instant::now();
    let mut rounds = 0;
    let mut broken = 0;
    let mut alive = vec![true; conns.len()];
    while start.elapsed() < Duration::from_secs(3) {
        for (c, ok) in conns.iter_mut().zip(alive.iter_mut()) {
            if *ok && c.ping(&format!("round {rounds}")).is_err() {
                *ok = false;
                broken += 1;
            }
        }
        rounds += 1;
        std::thread::sleep(Duration::from_millis(50));
    }
    println!(
        "  {} connections x {rounds} round trips after the drain: {broken} broken",
        conns.len()
    );

    title("New HTTP requests after the drain: none reaches the drained backend");
    show(&http_requests(&lab, VIP4, 60)?);

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
    if broken > 0 || left > 0 {
        return Err(io::Error::other(format!(
            "{broken} connections broke, {left} namespaces left"
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
