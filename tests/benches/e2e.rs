//! End-to-end benchmark: HTTP requests per second and latency through the
//! VIP against straight to the backend, in the namespace lab of
//! `tests/glb.rs` (a client, a real `director-xdp run` attached to its
//! interface, one backend running `redirect-xdp`). Prints a Markdown
//! section for `docs/benchmarks.md`; with `BENCH_DATA` set, also writes
//! `e2e.tsv` there (see `make bench`).
//!
//! The server is nginx (Debian's `nginx-light`, one worker, `return 200`,
//! no logging) on port 8080 of the backend; the load generator is `wrk`
//! (Debian's) in the client's namespace, closed loop: the same threads,
//! connections and duration for both paths, so both carry the same load
//! and the same one server. The VIP path is client -> director (XDP, GUE)
//! -> backend (redirect module, decapsulation) -> nginx, replies straight
//! back (DSR); the direct path is client -> backend's own address -> nginx.
//! Paths are measured in interleaved rounds. Needs root.

use std::io;
use std::time::{Duration, Instant};

use lab_tests::Daemon;
use lab_tests::glb::{Lab, VIP4, backend_ip};

const ROUNDS: usize = 5;
const SECONDS: u32 = 4;
const CONNECTIONS: u32 = 16;
/// `wrk` and nginx each pinned to a CPU of their own, the same for both
/// paths: the packets a process sends are carried through the veths and
/// programs on its CPU (softirq), so the paths differ in work, not in
/// where the scheduler put it.
const CLIENT_CPU: &str = "0";
const SERVER_CPU: &str = "1";

/// One wrk run's figures.
#[derive(Clone, Copy, Debug, Default)]
struct Run {
    rps: f64,
    p50_us: f64,
    p99_us: f64,
    errors: u64,
}

/// wrk's duration text ("812.00us", "1.23ms", "1.00s") in µs.
fn micros(text: &str) -> Option<f64> {
    let (num, scale) = if let Some(n) = text.strip_suffix("us") {
        (n, 1.0)
    } else if let Some(n) = text.strip_suffix("ms") {
        (n, 1e3)
    } else {
        (text.strip_suffix('s')?, 1e6)
    };
    num.parse::<f64>().ok().map(|v| v * scale)
}

/// Reads `wrk --latency`'s report.
fn parse(out: &str) -> io::Result<Run> {
    let mut run = Run::default();
    for line in out.lines().map(str::trim) {
        let words: Vec<&str> = line.split_whitespace().collect();
        match words.as_slice() {
            ["50%", v] => run.p50_us = micros(v).unwrap_or(f64::NAN),
            ["99%", v] => run.p99_us = micros(v).unwrap_or(f64::NAN),
            ["Requests/sec:", v] => run.rps = v.parse().unwrap_or(f64::NAN),
            ["Non-2xx", "or", "3xx", "responses:", n] => run.errors += n.parse().unwrap_or(0),
            ["Socket", "errors:", rest @ ..] => {
                run.errors += rest
                    .iter()
                    .filter_map(|w| w.trim_end_matches(',').parse::<u64>().ok())
                    .sum::<u64>();
            }
            _ => {}
        }
    }
    if run.rps > 0.0 && run.p99_us > 0.0 {
        Ok(run)
    } else {
        Err(io::Error::other(format!("unreadable wrk report:\n{out}")))
    }
}

/// nginx in backend 0's namespace, on port 8080 (both families).
fn nginx(lab: &Lab) -> io::Result<Daemon> {
    let dir = lab.scratch.file("nginx");
    std::fs::create_dir_all(&dir)?;
    let d = dir.display();
    let conf = format!(
        "daemon off;\nmaster_process off;\nworker_processes 1;\nuser root;\n\
         pid {d}/nginx.pid;\nerror_log {d}/error.log;\n\
         events {{ worker_connections 1024; }}\n\
         http {{\n  access_log off;\n  keepalive_requests 1000000;\n\
         client_body_temp_path {d}/body;\n  proxy_temp_path {d}/proxy;\n\
         fastcgi_temp_path {d}/fastcgi;\n  uwsgi_temp_path {d}/uwsgi;\n  scgi_temp_path {d}/scgi;\n\
         server {{\n    listen 8080;\n    listen [::]:8080;\n\
         location / {{ return 200 \"ok\\n\"; }}\n  }}\n}}\n"
    );
    let path = dir.join("nginx.conf");
    std::fs::write(&path, conf)?;
    let path = path.to_str().ok_or_else(|| io::Error::other("path"))?;
    let prefix = format!("{d}/");
    lab.backends[0].ns.spawn(
        "taskset",
        &[
            "-c",
            SERVER_CPU,
            "nginx",
            "-p",
            &prefix,
            "-c",
            path,
            "-e",
            &format!("{d}/error.log"),
        ],
        lab.scratch.file("nginx.log"),
    )
}

/// Waits until `url` answers from the client's namespace.
fn wait_for(lab: &Lab, url: &str) -> io::Result<()> {
    let start = Instant::now();
    loop {
        if lab
            .client
            .exec("curl", &["-fsS", "-m", "1", "-o", "/dev/null", url])
            .is_ok()
        {
            return Ok(());
        }
        if start.elapsed() > Duration::from_secs(20) {
            return Err(io::Error::other(format!(
                "{url} did not answer within 20 s"
            )));
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn wrk(lab: &Lab, url: &str) -> io::Result<Run> {
    let out = lab.client.exec(
        "taskset",
        &[
            "-c",
            CLIENT_CPU,
            "wrk",
            "-t1",
            &format!("-c{CONNECTIONS}"),
            &format!("-d{SECONDS}s"),
            "--latency",
            url,
        ],
    )?;
    parse(&String::from_utf8_lossy(&out.stdout))
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    if let Err(e) = lab_tests::clean_up_on_signals("e2e bench") {
        eprintln!("e2e bench: {e}");
        std::process::exit(1);
    }
    if let Err(e) = run() {
        eprintln!("e2e bench: {e}");
        std::process::exit(1);
    }
}

fn run() -> io::Result<()> {
    let lab = Lab::new(&["active"])?;
    let server = nginx(&lab)?;
    let paths = [
        ("through the VIP", format!("http://{VIP4}:8080/")),
        (
            "straight to the backend",
            format!("http://{}:8080/", backend_ip(0)),
        ),
    ];
    for (_, url) in &paths {
        wait_for(&lab, url)?;
    }
    // One short warm-up run per path (ARP, the listen queue, caches).
    for (_, url) in &paths {
        let _ = wrk(&lab, url);
    }
    let mut runs: Vec<Vec<Run>> = vec![Vec::new(); paths.len()];
    for _ in 0..ROUNDS {
        for (i, (_, url)) in paths.iter().enumerate() {
            runs[i].push(wrk(&lab, url)?);
        }
    }
    drop(server);
    drop(lab);

    println!("### End to end: HTTP through the VIP against straight to the backend\n");
    println!(
        "The namespace lab of `tests/glb.rs`: a client, a director (`director-xdp run`, ATTACHED \
         in native mode to its veth), one backend (`redirect-xdp` attached) serving HTTP with \
         nginx (Debian's, one worker, a fixed 3-byte answer) on port 8080. Load: `wrk` (Debian's) \
         in the client's namespace, 1 thread, {CONNECTIONS} keep-alive connections, {SECONDS} s \
         per run, `wrk` pinned to CPU {CLIENT_CPU} and nginx to CPU {SERVER_CPU}, closed loop, the same for both paths (one server, the same load). The VIP path \
         is client, director (GUE), backend (decapsulation), nginx, replies straight back (DSR); \
         the other goes straight to the backend's address. Median of {ROUNDS} interleaved runs \
         per path; latency percentiles are wrk's.\n"
    );
    println!("| path | requests/s | p50, µs | p99, µs | errors |");
    println!("|---|---:|---:|---:|---:|");
    let mut tsv = String::from("path\trps\tp50_us\tp99_us\n");
    let mut figures = Vec::new();
    for (i, (name, _)) in paths.iter().enumerate() {
        let r = &runs[i];
        let rps = median(r.iter().map(|x| x.rps).collect());
        let p50 = median(r.iter().map(|x| x.p50_us).collect());
        let p99 = median(r.iter().map(|x| x.p99_us).collect());
        let errors: u64 = r.iter().map(|x| x.errors).sum();
        println!("| {name} | {rps:.0} | {p50:.0} | {p99:.0} | {errors} |");
        let short = if i == 0 { "VIP" } else { "direct" };
        tsv.push_str(&format!("{short}\t{rps:.1}\t{p50:.1}\t{p99:.1}\n"));
        figures.push((rps, p50, p99));
    }
    let (vip, direct) = (figures[0], figures[1]);
    let p99_ratio = vip.2 / direct.2;
    // Per round, as measured side by side.
    let round_ratios: Vec<f64> = (0..ROUNDS)
        .map(|k| runs[0][k].p99_us / runs[1][k].p99_us)
        .collect();
    let (lo, hi) = round_ratios
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), &x| {
            (lo.min(x), hi.max(x))
        });
    println!(
        "\nVIP / direct: requests per second {:.2}, p50 {:.2}, p99 {p99_ratio:.2} (per round \
         {lo:.2} to {hi:.2}). Target (issue [10]): the VIP path adds at most 10% to p99 \
         (ratio at most 1.10): {}.",
        vip.0 / direct.0,
        vip.1 / direct.1,
        if lo <= 1.10 && hi > 1.10 {
            "not settled by this run: its rounds fall on both sides of 1.10"
        } else if p99_ratio <= 1.10 {
            "holds in this run, in every round"
        } else {
            "does not hold in this run, in any round"
        }
    );
    println!(
        "\nWhat the VIP path adds to each request: two more crossings of the lab's switch (client \
         to director, director to backend) and two XDP programs (the director's encapsulation, \
         the redirect module's decapsulation); replies take the same path in both (straight from the backend to the client). In the lab \
         each crossing is a veth hop, run in softirq on the same CPUs as `wrk` and nginx (two \
         here): a request's hops run on `wrk`'s CPU, a reply's on nginx's, so that work \
         also waits behind them, which the tail (p99) shows more than the median."
    );
    if let Some(dir) = std::env::var_os("BENCH_DATA") {
        std::fs::write(std::path::Path::new(&dir).join("e2e.tsv"), tsv)?;
    }
    Ok(())
}
