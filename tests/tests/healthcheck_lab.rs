//! The health checker (`healthcheck`) in a lab of namespaces: a checker
//! host and backends on one L2 segment, each backend with the VIP on `lo`,
//! HTTP servers of this test (plain and PROXY protocol v1 and v2; Python's
//! `http.server` where a real one is killed or hung) and, when asked, a
//! real `redirect-xdp` agent that lets the checker in (`--allow`). The
//! checker pushes to real directors (`director-xdp run`), each in its own
//! namespace on a veth of its own to the checker's, whose API the tests
//! read: what a director holds (its backends' `healthy` and `reachable`,
//! their rows, the reason, the table's hash) and its generation, which
//! counts the health changes it applied (nothing else changes its config
//! here). Documentation addresses only:
//!
//! ```text
//!   checker    198.51.100.5    2001:db8:1::5      /health on its 127.0.0.1:19520
//!   backend i  198.51.100.1i   2001:db8:1::1i     VIPs 203.0.113.10, 2001:db8:10::10 on lo
//!   director k 192.0.2.(16k+1):9610 (API), on a veth to the checker's 192.0.2.(16k+2)/28
//! ```
//!
//! The detection-time test kills, restarts and hangs a backend's server
//! and measures until both directors hold the verdict, against the
//! checker's bounds (`interval x fall + timeout` down, `interval x rise +
//! timeout` up) plus a margin; `--nocapture` prints the times.
//!
//! One more test runs the checker in [`lab_tests::glb::Lab`] (client,
//! director and backends forwarding real connections), to show what its
//! verdicts do to established flows.
#![allow(clippy::unwrap_used)] // helpers of tests: a failure is the test failing

use std::collections::BTreeMap;
use std::io::{self, Read as _, Write as _};
use std::net::{IpAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::atomic::{AtomicBool, AtomicU16, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use lab_tests::{Daemon, Netns, Scratch, Switch, workspace_bin};
use serde_json::Value;

const CHECKER: &str = "198.51.100.5";
const VIP: &str = "203.0.113.10";
const CHECKER6: &str = "2001:db8:1::5";
const VIP6: &str = "2001:db8:10::10";
const TOKEN: &str = "hc-lab-token-5e1f";
const HEALTH: &str = "127.0.0.1:19520";

static NEXT_LOG: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);

fn backend_ip(i: usize) -> String {
    format!("198.51.100.{}", 11 + i)
}

fn backend_ip6(i: usize) -> String {
    format!("2001:db8:1::{}", 11 + i)
}

fn backend_mac(i: usize) -> String {
    format!("02:00:00:00:05:{:02x}", 0x11 + i)
}

/// What a test server expects first on each connection.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Expect {
    Plain,
    ProxyV1,
    ProxyV2,
}

/// A TCP server in a backend: reads the PROXY header it expects (or
/// nothing), then an HTTP request if one comes, and answers with `status`.
/// Records what each connection sent before its request ended.
#[derive(Debug)]
struct Server {
    status: Arc<AtomicU16>,
    /// Alternate 200 and 503 from one connection to the next.
    flap: Arc<AtomicBool>,
    seen: Arc<Mutex<Vec<Vec<u8>>>>,
    stop: Arc<AtomicBool>,
    handle: Option<JoinHandle<()>>,
}

impl Server {
    fn start(ns: &Netns, port: u16, expect: Expect) -> Server {
        let listener = ns
            .run_in(move || {
                let l = TcpListener::bind(("0.0.0.0", port))?;
                l.set_nonblocking(true)?;
                Ok(l)
            })
            .unwrap();
        let status = Arc::new(AtomicU16::new(200));
        let flap = Arc::new(AtomicBool::new(false));
        let seen = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (st, fl, sn, sp) = (status.clone(), flap.clone(), seen.clone(), stop.clone());
        let handle = std::thread::spawn(move || {
            let mut n = 0u64;
            while !sp.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((s, _)) => {
                        n += 1;
                        let status = if fl.load(Ordering::Relaxed) && n.is_multiple_of(2) {
                            503
                        } else {
                            st.load(Ordering::Relaxed)
                        };
                        let got = serve_one(s, expect, status);
                        sn.lock().unwrap().push(got);
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        Server {
            status,
            flap,
            seen,
            stop,
            handle: Some(handle),
        }
    }

    fn seen(&self) -> Vec<Vec<u8>> {
        self.seen.lock().unwrap().clone()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

fn serve_one(mut s: TcpStream, expect: Expect, status: u16) -> Vec<u8> {
    let _ = s.set_nonblocking(false);
    let _ = s.set_read_timeout(Some(Duration::from_secs(1)));
    let mut got = Vec::new();
    let header_ok = match expect {
        Expect::Plain => true,
        Expect::ProxyV1 => {
            let mut b = [0u8; 1];
            while !got.ends_with(b"\r\n") && got.len() < 108 {
                if s.read_exact(&mut b).is_err() {
                    break;
                }
                got.push(b[0]);
            }
            got.starts_with(b"PROXY ") && got.ends_with(b"\r\n")
        }
        Expect::ProxyV2 => {
            let mut h = [0u8; 16];
            if s.read_exact(&mut h).is_ok() {
                got.extend_from_slice(&h);
                let mut rest = vec![0u8; usize::from(u16::from_be_bytes([h[14], h[15]]))];
                if s.read_exact(&mut rest).is_ok() {
                    got.extend_from_slice(&rest);
                }
            }
            got.starts_with(b"\r\n\r\n\0\r\nQUIT\n")
        }
    };
    if !header_ok {
        // As a server that requires the header: no answer.
        return got;
    }
    let start = got.len();
    let mut buf = [0u8; 1024];
    while !got[start..].windows(4).any(|w| w == b"\r\n\r\n") {
        match s.read(&mut buf) {
            Ok(0) | Err(_) => return got,
            Ok(n) => got.extend_from_slice(&buf[..n]),
        }
    }
    let _ = s.write_all(
        format!("HTTP/1.1 {status} X\r\nContent-Length: 0\r\nConnection: close\r\n\r\n").as_bytes(),
    );
    got
}

/// A backend host.
#[derive(Debug)]
struct Backend {
    agent: Option<Daemon>,
    servers: BTreeMap<u16, Server>,
    agent_args: Vec<String>,
    ns: Netns,
}

impl Backend {
    fn start_agent(&mut self, log: PathBuf) {
        let bin = workspace_bin("redirect-xdp").unwrap();
        let args: Vec<&str> = self.agent_args.iter().map(String::as_str).collect();
        let mut agent = self.ns.spawn(bin.to_str().unwrap(), &args, log).unwrap();
        agent
            .wait_for_log("redirect attached", Duration::from_secs(30))
            .unwrap();
        self.agent = Some(agent);
    }
}
/// A real director of the lab: `director-xdp run` in its own namespace,
/// with table "web" holding every backend of the lab (healthy and
/// reachable in its config), its verdicts in its state file.
#[derive(Debug)]
struct Director {
    /// `None` while stopped.
    daemon: Option<Daemon>,
    ns: Netns,
}

/// What a director holds, as its API shows it.
#[derive(Debug)]
struct Held {
    /// Configs applied since it started: here, its health changes (the
    /// start is generation 1; nothing else changes its config).
    generation: u64,
    /// Its table "web".
    web: proto::api::Table,
}

impl Held {
    fn backend(&self, i: usize) -> &proto::api::Backend {
        let ip: IpAddr = backend_ip(i).parse().unwrap();
        self.web.backends.iter().find(|b| b.ip == ip).unwrap()
    }

    /// Backend i's (healthy, reachable).
    fn flags(&self, i: usize) -> (bool, bool) {
        let b = self.backend(i);
        (b.healthy, b.reachable)
    }
}

/// The lab: a checker, backends and directors. Fields drop in order:
/// processes first, namespaces last.
#[derive(Debug)]
struct Lab {
    directors: Vec<Director>,
    backends: Vec<Backend>,
    checker: Netns,
    _sw: Switch,
    scratch: Scratch,
}

impl Lab {
    /// Backend i runs an agent if `agents[i]`, and servers on port 80
    /// (plain), 8081 (PROXY v1) and 8082 (PROXY v2); `directors` real
    /// directors run, attached.
    fn new(agents: &[bool], directors: usize) -> Lab {
        let scratch = Scratch::new("hc").unwrap();
        std::fs::write(scratch.file("token"), format!("{TOKEN}\n")).unwrap();
        let mut sw = Switch::new().unwrap();
        let checker = Netns::new("hc").unwrap();
        sw.plug(
            &checker,
            "02:00:00:00:05:05",
            &[&format!("{CHECKER}/24"), &format!("{CHECKER6}/64")],
        )
        .unwrap();
        // The echo replies come from the VIP, which this host routes
        // nowhere in particular: no reverse-path filter.
        for key in [
            "net.ipv4.conf.all.rp_filter=0",
            "net.ipv4.conf.default.rp_filter=0",
            "net.ipv4.conf.eth0.rp_filter=0",
        ] {
            checker.exec("sysctl", &["-qw", key]).unwrap();
        }
        let mut backends = Vec::new();
        for (i, agent) in agents.iter().enumerate() {
            let ns = Netns::new("hcbe").unwrap();
            let (ip, ip6) = (backend_ip(i), backend_ip6(i));
            sw.plug(
                &ns,
                &backend_mac(i),
                &[&format!("{ip}/24"), &format!("{ip6}/64")],
            )
            .unwrap();
            ns.ip(&["addr", "add", &format!("{VIP}/32"), "dev", "lo"])
                .unwrap();
            ns.ip(&["addr", "add", &format!("{VIP6}/128"), "dev", "lo"])
                .unwrap();
            for key in [
                "net.ipv4.conf.eth0.forwarding=1",
                "net.ipv4.conf.all.rp_filter=0",
                "net.ipv4.conf.eth0.rp_filter=0",
            ] {
                ns.exec("sysctl", &["-qw", key]).unwrap();
            }
            let mut servers = BTreeMap::new();
            servers.insert(80, Server::start(&ns, 80, Expect::Plain));
            servers.insert(8081, Server::start(&ns, 8081, Expect::ProxyV1));
            servers.insert(8082, Server::start(&ns, 8082, Expect::ProxyV2));
            let agent_args = [
                "--iface",
                "eth0",
                "--self",
                &ip,
                "--self",
                &ip6,
                "--allow",
                &format!("{CHECKER}/32"),
                &format!("{CHECKER6}/128"),
            ]
            .map(String::from)
            .to_vec();
            let mut b = Backend {
                agent: None,
                servers,
                agent_args,
                ns,
            };
            if *agent {
                b.start_agent(scratch.file(&format!("redirect-{i}.log")));
            }
            backends.push(b);
        }
        let mut lab = Lab {
            directors: Vec::new(),
            backends,
            checker,
            _sw: sw,
            scratch,
        };
        for k in 0..directors {
            let ns = Netns::new("hcdir").unwrap();
            lab_tests::veth(
                &ns,
                "va",
                &format!("02:00:00:00:0d:{:02x}", 2 * k + 1),
                &lab.checker,
                &format!("d{k}"),
                &format!("02:00:00:00:0d:{:02x}", 2 * k + 2),
            )
            .unwrap();
            ns.ip(&[
                "addr",
                "add",
                &format!("{}/28", director_ip(k)),
                "dev",
                "va",
            ])
            .unwrap();
            lab.checker
                .ip(&[
                    "addr",
                    "add",
                    &format!("192.0.2.{}/28", 16 * k + 2),
                    "dev",
                    &format!("d{k}"),
                ])
                .unwrap();
            lab.write_director_config(k);
            lab.directors.push(Director { daemon: None, ns });
        }
        // Started together, then waited for: a debug director takes a few
        // seconds to attach.
        let started: Vec<Daemon> = (0..directors).map(|k| lab.spawn_director(k)).collect();
        for (k, mut d) in started.into_iter().enumerate() {
            d.wait_for_log("director attached", Duration::from_secs(120))
                .unwrap();
            lab.directors[k].daemon = Some(d);
        }
        lab
    }

    /// Director k's config: table "web" (as [`Lab::config`] writes it for
    /// the checker) with every backend, its API on its veth address.
    fn write_director_config(&self, k: usize) {
        let backends: Vec<String> = (0..self.backends.len())
            .map(|b| format!(r#"{{"ip":"{}"}}"#, backend_ip(b)))
            .collect();
        std::fs::write(
            self.scratch.file(&format!("director-{k}.json")),
            format!(
                r#"{{"tables":[{{"name":"web","hash_key":"00000000000000000000000000000001","seed":"00000000000000000000000000000002",
                     "binds":[{{"ip":"{VIP}","proto":"tcp","port":80}}],"backends":[{}]}}],
                   "director":{{"interface":"va","source_v4":"{}","gateway_mac":"02:00:5e:00:53:01",
                     "api_listen":"{}:9610","api_token_file":"{}"}}}}"#,
                backends.join(","),
                director_ip(k),
                director_ip(k),
                self.scratch.file("token").display()
            ),
        )
        .unwrap();
    }

    fn spawn_director(&self, k: usize) -> Daemon {
        let bin = workspace_bin("director-xdp").unwrap();
        let cfg = self.scratch.file(&format!("director-{k}.json"));
        let n = NEXT_LOG.fetch_add(1, Ordering::Relaxed);
        self.directors[k]
            .ns
            .spawn(
                bin.to_str().unwrap(),
                &["run", "--config", cfg.to_str().unwrap()],
                self.scratch.file(&format!("director-{k}-{n}.log")),
            )
            .unwrap()
    }

    /// Starts director k again (from its config and state file).
    fn start_director(&mut self, k: usize) {
        let mut d = self.spawn_director(k);
        d.wait_for_log("director attached", Duration::from_secs(120))
            .unwrap();
        self.directors[k].daemon = Some(d);
    }

    /// Stops director k (SIGTERM); it keeps its verdicts in its state file.
    fn stop_director(&mut self, k: usize) {
        self.directors[k].daemon.take().unwrap().stop().unwrap();
    }

    /// Director k's state file (its verdicts).
    fn director_state_file(&self, k: usize) -> PathBuf {
        self.scratch.file(&format!("director-{k}.health.json"))
    }

    fn director_url(k: usize) -> String {
        format!("http://{}:9610", director_ip(k))
    }

    /// What director k holds, read from its API inside its namespace
    /// (whatever the checker's link to it); `None` when it does not answer.
    fn held(&self, k: usize) -> Option<Held> {
        let addr: std::net::SocketAddr = format!("{}:9610", director_ip(k)).parse().unwrap();
        let r = self.directors[k]
            .ns
            .run_in(move || {
                lab_tests::http::request(addr, "GET", proto::api::path::TABLES, Some(TOKEN), None)
            })
            .ok()?;
        let tables: proto::api::Tables = serde_json::from_str(&r.body).ok()?;
        let web = tables.tables.into_iter().find(|t| t.name == "web")?;
        Some(Held {
            generation: tables.generation,
            web,
        })
    }

    /// Waits until director k holds what `f` wants; returns it.
    fn wait_held(&self, what: &str, k: usize, f: impl Fn(&Held) -> bool) -> Held {
        wait_until(
            &format!("director {k}: {what}"),
            Duration::from_secs(10),
            || self.held(k).filter(|h| f(h)),
        )
    }

    /// Writes a config of table "web" (VIP:80) whose backend i has
    /// `checks[i]` as its `healthchecks`, with more tables and the
    /// `healthcheck` section as given (the lab's directors and token are
    /// added); returns its path.
    fn config(&self, checks: &[&str], more_tables: &str, section: &str) -> PathBuf {
        let backends: Vec<String> = checks
            .iter()
            .enumerate()
            .map(|(i, c)| format!(r#"{{"ip":"{}","healthchecks":{c}}}"#, backend_ip(i)))
            .collect();
        let directors: Vec<String> = (0..self.directors.len())
            .map(|k| format!(r#""{}""#, Lab::director_url(k)))
            .collect();
        let section = if section.is_empty() {
            String::new()
        } else {
            format!(",{section}")
        };
        let text = format!(
            r#"{{"tables":[{{"name":"web","hash_key":"00000000000000000000000000000001","seed":"00000000000000000000000000000002",
                 "binds":[{{"ip":"{VIP}","proto":"tcp","port":80}}],"backends":[{}]}}{more_tables}],
               "healthcheck":{{"api_token_file":"{}","directors":[{}]{section}}}}}"#,
            backends.join(","),
            self.scratch.file("token").display(),
            directors.join(",")
        );
        let path = self.scratch.file("config.json");
        std::fs::write(&path, text).unwrap();
        path
    }

    fn once(&self, config: &Path) -> Output {
        let bin = workspace_bin("healthcheck").unwrap();
        self.checker
            .exec(
                bin.to_str().unwrap(),
                &["--once", "--config", config.to_str().unwrap()],
            )
            .unwrap()
    }

    fn daemon(&self, config: &Path) -> Daemon {
        let bin = workspace_bin("healthcheck").unwrap();
        let n = NEXT_LOG.fetch_add(1, Ordering::Relaxed);
        let mut d = self
            .checker
            .spawn(
                bin.to_str().unwrap(),
                &["--config", config.to_str().unwrap()],
                self.scratch.file(&format!("healthcheck-{n}.log")),
            )
            .unwrap();
        d.wait_for_log("serving /health", Duration::from_secs(10))
            .unwrap();
        d
    }

    fn get(&self, path: &'static str) -> String {
        self.checker
            .run_in(move || {
                lab_tests::http::request(
                    HEALTH.parse().map_err(io::Error::other)?,
                    "GET",
                    path,
                    None,
                    None,
                )
            })
            .unwrap()
            .body
    }

    fn health(&self) -> Value {
        serde_json::from_str(&self.get("/health")).unwrap()
    }

    /// Whether the checker has pushed to director k and it acknowledged
    /// every current verdict.
    fn in_sync(&self, k: usize) -> bool {
        let d = &self.health()["directors"][k];
        d["in_sync"] == true && d["pushes"].as_u64() >= Some(1)
    }

    /// Every check's probe count, in /health's order.
    fn probes(&self) -> Vec<u64> {
        self.health()["backends"]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|b| b["checks"].as_array().unwrap().clone())
            .map(|c| c["probes"].as_u64().unwrap())
            .collect()
    }

    /// Waits until every check has probed `n` more times than now.
    fn wait_probes(&self, what: &str, n: u64) {
        let before = self.probes();
        wait_until(what, Duration::from_secs(10), || {
            self.probes()
                .iter()
                .zip(&before)
                .all(|(now, b)| *now >= b + n)
                .then_some(())
        });
    }

    /// The backends' MACs as permanent neighbours of the checker.
    fn pin_neighbours(&self) {
        for i in 0..self.backends.len() {
            self.checker
                .ip(&[
                    "neigh",
                    "replace",
                    &backend_ip(i),
                    "lladdr",
                    &backend_mac(i),
                    "dev",
                    "eth0",
                    "nud",
                    "permanent",
                ])
                .unwrap();
        }
    }

    /// One line of `/metrics`'s value.
    fn metric(&self, line_start: &str) -> Option<f64> {
        self.get("/metrics")
            .lines()
            .find_map(|l| l.strip_prefix(line_start)?.trim().parse().ok())
    }
}

/// Director k's address: its API's, on its veth to the checker.
fn director_ip(k: usize) -> String {
    format!("192.0.2.{}", 16 * k + 1)
}

/// Polls `f` until it gives a value, for at most `timeout`.
fn wait_until<T>(what: &str, timeout: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(start.elapsed() < timeout, "not within {timeout:?}: {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Fast timing for the daemon tests: probes every 300 ms (100 ms while
/// changing), 200 ms to answer, two equal results to change.
const FAST: &str = r#""interval_ms":300,"fast_interval_ms":100,"timeout_ms":200,"trigger":2"#;

#[test]
fn once_reports_http_tcp_proxy_and_gue_results_per_backend() {
    let lab = Lab::new(&[true, false], 0);
    lab.backends[1].servers[&80]
        .status
        .store(503, Ordering::Relaxed);
    // Table "px" holds backend 0 again with PROXY checks; its gue check is
    // the same as web's (same VIP, same hops): probed once.
    let px = format!(
        r#",{{"name":"px","hash_key":"00000000000000000000000000000003","seed":"00000000000000000000000000000004",
             "binds":[{{"ip":"{VIP}","proto":"tcp","port":8081}}],
             "backends":[{{"ip":"{}","healthchecks":{{"http":{{"port":8081,"proxy_protocol":"v1","path":"/px"}},"tcp":{{"port":8082,"proxy_protocol":"v2"}},"gue":19523}}}}]}},
           {{"name":"v6","hash_key":"00000000000000000000000000000005","seed":"00000000000000000000000000000006",
             "binds":[{{"ip":"{VIP6}","proto":"tcp","port":80}}],
             "backends":[{{"ip":"{}","healthchecks":{{"gue":19523}}}},{{"ip":"{}","healthchecks":{{"gue":19523}}}}]}},
           {{"name":"mix","hash_key":"00000000000000000000000000000007","seed":"00000000000000000000000000000008",
             "binds":[{{"ip":"{VIP6}","proto":"tcp","port":81}}],
             "backends":[{{"ip":"{}","healthchecks":{{"gue":19523}}}}]}}"#,
        backend_ip(0),
        backend_ip6(0),
        backend_ip6(1),
        backend_ip(0)
    );
    let config = lab.config(
        &[
            r#"{"http":80,"gue":19523}"#,
            r#"{"http":80,"tcp":81,"gue":19523}"#,
        ],
        &px,
        r#""timeout_ms":500"#,
    );
    let out = lab.once(&config);
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}\n{table}",
        String::from_utf8_lossy(&out.stderr)
    );
    let row = |check: &str| -> String {
        table
            .lines()
            .find(|l| l.contains(check))
            .unwrap_or_else(|| panic!("no {check} in\n{table}"))
            .to_string()
    };
    let (b0, b1) = (backend_ip(0), backend_ip(1));
    assert!(
        row(&format!("http {b0}:80/ ")).contains(" pass "),
        "{table}"
    );
    assert!(
        row(&format!("gue {b0}:19523 to {VIP}")).contains(" pass "),
        "{table}"
    );
    assert!(
        row(&format!("http {b0}:8081/px")).contains(" pass "),
        "{table}"
    );
    assert!(row(&format!("tcp {b0}:8082")).contains(" pass "), "{table}");
    assert!(
        row(&format!("http {b1}:80/ ")).contains("status 503"),
        "{table}"
    );
    assert!(
        row(&format!("tcp {b1}:81")).contains("connection refused"),
        "{table}"
    );
    let gue1 = row(&format!("gue {b1}:19523"));
    assert!(
        gue1.contains(" fail ") && gue1.contains("port unreachable"),
        "{table}"
    );
    // IPv6: GUE with IPv6 hops, an ICMPv6 echo to the IPv6 VIP, the reply
    // read on the raw ICMPv6 socket.
    let (b06, b16) = (backend_ip6(0), backend_ip6(1));
    let gue06 = row(&format!("v6     {b06}"));
    assert!(
        gue06.contains(&format!("gue [{b06}]:19523 to {VIP6}")) && gue06.contains(" pass "),
        "{table}"
    );
    let gue16 = row(&format!("v6     {b16}"));
    assert!(
        gue16.contains(" fail ") && gue16.contains("port unreachable"),
        "{table}"
    );
    // An IPv6 VIP behind an IPv4 backend without source_v6: the checker
    // cannot probe, and says so; no verdict.
    let mix = row(&format!("mix    {b0}"));
    assert!(
        mix.contains(" -  ")
            && mix.contains(" error ")
            && mix.contains("set healthcheck.source_v6"),
        "{table}"
    );
    // The verdict columns: backend 0 healthy and reachable in both tables,
    // backend 1 neither.
    assert!(
        row(&format!("web    {b0}")).contains("yes      yes"),
        "{table}"
    );
    assert!(
        row(&format!("px     {b0}")).contains("yes      yes"),
        "{table}"
    );
    assert!(
        row(&format!("web    {b1}")).contains("no       no"),
        "{table}"
    );
    // One probe of the shared gue check for both tables: one echo (the
    // agent's counters would say so too; the table shows one row per
    // holder, the probe count is in the daemon's /health).

    // The PROXY headers as the servers saw them: the probe's own
    // connection, from the checker to the backend's port.
    let v1 = lab.backends[0].servers[&8081].seen();
    assert_eq!(v1.len(), 1, "{v1:?}");
    let text = String::from_utf8_lossy(&v1[0]);
    assert!(
        text.starts_with(&format!("PROXY TCP4 {CHECKER} {b0} "))
            && text.contains(" 8081\r\nGET /px HTTP/1.1\r\n"),
        "{text}"
    );
    let v2 = lab.backends[0].servers[&8082].seen();
    assert_eq!(v2.len(), 1, "{v2:?}");
    let h = &v2[0];
    assert_eq!(
        &h[12..16],
        &[0x21, 0x11, 0, 12],
        "PROXY, TCP over IPv4, 12 bytes"
    );
    assert_eq!(&h[16..24], &[198, 51, 100, 5, 198, 51, 100, 11]);
    assert_eq!(&h[26..28], &8082u16.to_be_bytes());
    assert_eq!(h.len(), 28, "a tcp check sends nothing after the header");
}

/// The director's view of table "lab" (its API, from its namespace).
fn director_table(lab: &lab_tests::glb::Lab) -> proto::api::Table {
    let r = lab
        .api("GET", &proto::api::path::table("lab"), false)
        .unwrap();
    assert_eq!(r.status, 200, "{}", r.body);
    serde_json::from_str(&r.body).unwrap()
}

fn director_flags(lab: &lab_tests::glb::Lab, i: usize) -> (bool, bool, u64) {
    let ip: IpAddr = lab_tests::glb::backend_ip(i).parse().unwrap();
    let t = director_table(lab);
    let b = t.backends.iter().find(|b| b.ip == ip).unwrap();
    (b.healthy, b.reachable, b.rows_primary)
}

#[test]
fn with_a_real_director_failed_http_keeps_established_flows_and_a_dead_tunnel_leaves_every_row() {
    use lab_tests::glb::{self, VIP4};
    let mut lab = glb::Lab::new(&["active", "active"]).unwrap();
    // The checker runs on the director's host (GLB's layout): the
    // backends' agents already allow its address. HTTP checks go to a
    // server of this test on port 8080 of each backend.
    let http: Vec<Server> = lab
        .backends
        .iter()
        .map(|b| Server::start(&b.ns, 8080, Expect::Plain))
        .collect();
    lab.director_ns
        .exec("sysctl", &["-qw", "net.ipv4.conf.all.rp_filter=0"])
        .unwrap();
    // Its own copy of the director's table (a central checker's layout):
    // same name and backends, with their checks.
    let config = lab.healthcheck_config(2, FAST).unwrap();
    let bin = workspace_bin("healthcheck").unwrap();
    let mut checker = lab
        .director_ns
        .spawn(
            bin.to_str().unwrap(),
            &["--config", config.to_str().unwrap()],
            lab.scratch.file("healthcheck.log"),
        )
        .unwrap();
    checker
        .wait_for_log("serving /health", Duration::from_secs(10))
        .unwrap();
    let health = |lab: &glb::Lab| -> Value {
        let r = lab
            .director_ns
            .run_in(|| {
                lab_tests::http::request(
                    HEALTH.parse().map_err(io::Error::other)?,
                    "GET",
                    "/health",
                    None,
                    None,
                )
            })
            .unwrap();
        serde_json::from_str(&r.body).unwrap()
    };
    wait_until(
        "the director acknowledged the first verdicts",
        Duration::from_secs(10),
        || {
            let h = health(&lab);
            let d = &h["directors"][0];
            let known = h["backends"]
                .as_array()
                .unwrap()
                .iter()
                .all(|b| b["healthy"] == true && b["reachable"] == true);
            (known && d["in_sync"] == true && d["pushes"].as_u64() >= Some(1)).then_some(())
        },
    );

    // Connections through the VIP, some on each backend.
    // 200 held, both families.
    let mut conns = glb::connect_many(&lab.client, VIP4, 150).unwrap();
    conns.extend(glb::connect_many(&lab.client, glb::VIP6, 50).unwrap());
    let on1 = conns
        .iter()
        .filter(|c| c.backend.ends_with(&glb::backend_ip(1)))
        .count();
    assert!(on1 > 0 && on1 < 200, "{on1} of 200 on backend 1");

    // Backend 1's HTTP fails: unhealthy on the director within
    // fall x fast interval + timeout (0.4 s here), waited for 5 s at most.
    let start = Instant::now();
    http[1].status.store(503, Ordering::Relaxed);
    wait_until(
        "backend 1 unhealthy on the director",
        Duration::from_secs(5),
        || (!director_flags(&lab, 1).0).then_some(()),
    );
    let took = start.elapsed();
    let (_, reachable, rows) = director_flags(&lab, 1);
    assert!(
        reachable && rows == 0,
        "unhealthy: reachable, primary of no row ({rows})"
    );
    let t = director_table(&lab);
    let b1 = t
        .backends
        .iter()
        .find(|b| b.ip.to_string() == glb::backend_ip(1))
        .unwrap();
    assert_eq!(
        b1.health_reason.as_deref(),
        Some(format!("http {}:8080/: status 503", glb::backend_ip(1)).as_str())
    );
    // The hash the director answered the push with is its table's.
    wait_until(
        "the checker saw the director's hash",
        Duration::from_secs(5),
        || {
            (health(&lab)["directors"][0]["hashes"]["lab"] == Value::from(t.hash.clone()))
                .then_some(())
        },
    );
    // Every established connection still works; new ones avoid backend 1.
    let held = glb::exchange(conns, Duration::from_millis(500), Vec::new());
    assert!(held.failures.is_empty(), "{:?}", held.failures);
    let fresh = glb::connect_many(&lab.client, VIP4, 20).unwrap();
    assert!(
        fresh
            .iter()
            .all(|c| c.backend.ends_with(&glb::backend_ip(0))),
        "new flows avoid the unhealthy backend"
    );
    drop(fresh);
    drop(held);

    // Back: healthy again.
    http[1].status.store(200, Ordering::Relaxed);
    wait_until("backend 1 healthy again", Duration::from_secs(5), || {
        director_flags(&lab, 1).0.then_some(())
    });

    // Backend 0's redirect agent stops (its HTTP still answers): its
    // tunnel is dead, it leaves every row.
    lab.backends[0].agent.signal(libc::SIGTERM).unwrap();
    wait_until(
        "backend 0 unreachable on the director",
        Duration::from_secs(5),
        || {
            let (healthy, reachable, rows) = director_flags(&lab, 0);
            (healthy && !reachable && rows == 0).then_some(())
        },
    );
    let alternate = director_table(&lab)
        .backends
        .iter()
        .find(|b| b.ip.to_string() == glb::backend_ip(0))
        .unwrap()
        .rows_alternate;
    assert_eq!(alternate, 0, "unreachable: in no row at all");
    lab.backends[0].restart_agent().unwrap();
    wait_until("backend 0 reachable again", Duration::from_secs(5), || {
        director_flags(&lab, 0).1.then_some(())
    });
    eprintln!("unhealthy on the director {took:?} after the HTTP failure");
}

/// A CA and a certificate for www.example.com signed by it, made with
/// openssl in `dir`: (ca.pem, leaf.pem, leaf.key).
fn certificates(dir: &Scratch) -> (PathBuf, PathBuf, PathBuf) {
    let (ca, ca_key) = (dir.file("ca.pem"), dir.file("ca.key"));
    let (leaf, key, csr, ext) = (
        dir.file("leaf.pem"),
        dir.file("leaf.key"),
        dir.file("leaf.csr"),
        dir.file("ext.cnf"),
    );
    std::fs::write(
        &ext,
        "subjectAltName=DNS:www.example.com\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    let s = |p: &PathBuf| p.to_str().unwrap().to_string();
    for args in [
        vec![
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-keyout",
            &s(&ca_key),
            "-out",
            &s(&ca),
            "-days",
            "2",
            "-subj",
            "/CN=healthcheck test CA",
        ],
        vec![
            "req",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-keyout",
            &s(&key),
            "-out",
            &s(&csr),
            "-subj",
            "/CN=www.example.com",
        ],
        vec![
            "x509",
            "-req",
            "-in",
            &s(&csr),
            "-CA",
            &s(&ca),
            "-CAkey",
            &s(&ca_key),
            "-CAcreateserial",
            "-out",
            &s(&leaf),
            "-days",
            "2",
            "-extfile",
            &s(&ext),
        ],
    ] {
        lab_tests::run("openssl", &args).unwrap();
    }
    (ca, leaf, key)
}

/// An HTTPS server (Python's) answering 200 to every GET.
const HTTPS_SERVER: &str = r#"
import http.server, ssl, sys
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()
    def log_message(self, *a):
        pass
s = http.server.ThreadingHTTPServer(("0.0.0.0", 8443), H)
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
ctx.load_cert_chain(sys.argv[1], sys.argv[2])
s.socket = ctx.wrap_socket(s.socket, server_side=True)
print("serving", flush=True)
s.serve_forever()
"#;

#[test]
fn https_verifies_the_certificate_and_name_unless_told_not_to() {
    let lab = Lab::new(&[false], 0);
    let (ca, leaf, key) = certificates(&lab.scratch);
    let script = lab.scratch.file("https.py");
    std::fs::write(&script, HTTPS_SERVER).unwrap();
    let mut server = lab.backends[0]
        .ns
        .spawn(
            "python3",
            &[
                script.to_str().unwrap(),
                leaf.to_str().unwrap(),
                key.to_str().unwrap(),
            ],
            lab.scratch.file("https.log"),
        )
        .unwrap();
    server
        .wait_for_log("serving", Duration::from_secs(10))
        .unwrap();
    // One table per way of checking the same server (each its own check).
    let b0 = backend_ip(0);
    let table = |name: &str, port: u16, check: &str| {
        format!(
            r#",{{"name":"{name}","hash_key":"00000000000000000000000000000001","seed":"00000000000000000000000000000002",
                 "binds":[{{"ip":"{VIP}","proto":"tcp","port":{port}}}],"backends":[{{"ip":"{b0}","healthchecks":{{"https":{check}}}}}]}}"#
        )
    };
    let ca = ca.display();
    let more = [
        table("roots", 81, r#"{"port":8443}"#),
        table(
            "ca",
            82,
            &format!(r#"{{"port":8443,"host":"www.example.com","ca_file":"{ca}"}}"#),
        ),
        table(
            "name",
            83,
            &format!(r#"{{"port":8443,"host":"other.example.com","ca_file":"{ca}"}}"#),
        ),
    ]
    .concat();
    let config = lab.config(
        &[r#"{"https":{"port":8443,"insecure":true}}"#],
        &more,
        r#""timeout_ms":2000"#,
    );
    let out = lab.once(&config);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}\n{text}",
        String::from_utf8_lossy(&out.stderr)
    );
    let row = |table: &str| -> String {
        text.lines()
            .find(|l| l.starts_with(&format!("{table} ")))
            .unwrap_or_else(|| panic!("no table {table} in\n{text}"))
            .to_string()
    };
    assert!(
        row("web").contains(" pass"),
        "insecure: any certificate\n{text}"
    );
    assert!(
        row("roots").contains(" fail") && row("roots").contains("UnknownIssuer"),
        "{text}"
    );
    assert!(
        row("ca").contains(" pass"),
        "the CA given, the name in SNI and the certificate\n{text}"
    );
    assert!(
        row("name").contains(" fail") && row("name").contains("not valid for name"),
        "{text}"
    );
}

#[test]
fn a_backend_flapping_at_every_probe_is_never_flipped() {
    let lab = Lab::new(&[false], 1);
    let config = lab.config(&[r#"{"http":80}"#], "", FAST);
    let _checker = lab.daemon(&config);
    wait_until(
        "the director acknowledged the first verdict",
        Duration::from_secs(10),
        || lab.in_sync(0).then_some(()),
    );
    let start = lab.held(0).unwrap();
    assert_eq!(start.flags(0), (true, true));
    // Every other probe fails: never `fall` (2) failures in a row.
    let server = &lab.backends[0].servers[&80];
    let before = server.seen().len();
    server.flap.store(true, Ordering::Relaxed);
    wait_until(
        "12 more probes, 6 of them failed",
        Duration::from_secs(10),
        || (server.seen().len() >= before + 12).then_some(()),
    );
    // No health change reached the director (a flip and its return would
    // be two).
    let end = lab.held(0).unwrap();
    assert_eq!(end.flags(0), (true, true));
    assert_eq!(end.generation, start.generation, "a health change applied");
    assert_eq!(end.web.hash, start.web.hash);
    let check = format!("http {}:80/", backend_ip(0));
    assert_eq!(
        lab.metric(&format!(
            "glb_healthcheck_state_changes_total{{check=\"{check}\",to=\"down\"}}"
        )),
        Some(0.0)
    );
    assert!(
        lab.metric(&format!(
            "glb_healthcheck_probe_failures_total{{check=\"{check}\"}}"
        ))
        .unwrap()
            >= 5.0
    );
}

#[test]
fn a_restarted_checker_pushes_only_the_verdicts_it_had() {
    let lab = Lab::new(&[false, false], 1);
    lab.backends[1].servers[&80]
        .status
        .store(503, Ordering::Relaxed);
    let config = lab.config(&[r#"{"http":80}"#, r#"{"http":80}"#], "", FAST);
    let first = lab.daemon(&config);
    lab.wait_held("backend 0 healthy, backend 1 not", 0, |h| {
        h.flags(0).0 && !h.flags(1).0
    });
    wait_until(
        "the director acknowledged every verdict",
        Duration::from_secs(10),
        || lab.in_sync(0).then_some(()),
    );
    first.stop().unwrap();
    let before = lab.held(0).unwrap();
    let same = |h: &Held| {
        assert_eq!(
            (h.generation, h.flags(0), h.flags(1), &h.web.hash),
            (
                before.generation,
                (true, true),
                (false, true),
                &before.web.hash
            ),
            "the director changed under the restarted checker"
        );
        assert_eq!(h.backend(1).health_reason, before.backend(1).health_reason);
    };
    let _second = lab.daemon(&config);
    // While it warms up (rise 2 passes, fall 2 failures) and once its
    // verdicts are acknowledged, the director holds what it held and
    // applies no change: a verdict pushed on one result could say healthy
    // for backend 1, and a flip and its return would be two changes.
    wait_until(
        "the restarted checker's verdicts acknowledged",
        Duration::from_secs(10),
        || {
            same(&lab.held(0).unwrap());
            lab.in_sync(0).then_some(())
        },
    );
    lab.wait_probes("two more probes of every check", 2);
    same(&lab.held(0).unwrap());
    // A push before its checks knew (a verdict without a flag) would have
    // been refused by the director.
    let director = Lab::director_url(0);
    assert_eq!(
        lab.metric(&format!(
            "glb_healthcheck_push_failures_total{{director=\"{director}\"}}"
        )),
        Some(0.0)
    );
    let h = lab.health();
    for b in h["backends"].as_array().unwrap() {
        assert!(
            b["checks"][0]["probes"].as_u64().unwrap() >= 2,
            "rise is 2: {h}"
        );
    }
}

#[test]
fn sighup_reloads_the_config_keeping_unchanged_checks_and_refusing_a_bad_one() {
    let lab = Lab::new(&[false, false], 1);
    lab.backends[1].servers[&80]
        .status
        .store(503, Ordering::Relaxed);
    let config = lab.config(&[r#"{"http":80}"#], "", FAST);
    let mut checker = lab.daemon(&config);
    wait_until(
        "the director acknowledged backend 0's verdict",
        Duration::from_secs(10),
        || lab.in_sync(0).then_some(()),
    );
    let start = lab.held(0).unwrap();
    assert_eq!(
        (start.flags(0), start.flags(1)),
        ((true, true), (true, true)),
        "backend 1 is not checked yet: its config's flags"
    );
    // A bad config: refused, the running one stays.
    std::fs::write(&config, "{").unwrap();
    checker.signal(libc::SIGHUP).unwrap();
    checker
        .wait_for_log("reload refused", Duration::from_secs(5))
        .unwrap();
    // Backend 1 added: checked and pushed; backend 0's check is the same
    // and keeps its state (its probe count goes on).
    let probes0 = || -> u64 {
        lab.health()["backends"][0]["checks"][0]["probes"]
            .as_u64()
            .unwrap()
    };
    let before = probes0();
    lab.config(&[r#"{"http":80}"#, r#"{"http":80}"#], "", FAST);
    checker.signal(libc::SIGHUP).unwrap();
    checker
        .wait_for_log("reloaded: checking 2 backends", Duration::from_secs(5))
        .unwrap();
    assert!(probes0() >= before, "backend 0's history kept");
    let end = lab.wait_held("backend 1 unhealthy", 0, |h| !h.flags(1).0);
    assert_eq!(
        end.backend(1).health_reason.as_deref(),
        Some(format!("http {}:80/: status 503", backend_ip(1)).as_str())
    );
    // One health change, backend 1's: backend 0 never flipped.
    assert_eq!(end.flags(0), (true, true));
    assert_eq!(end.generation, start.generation + 1);
}

#[test]
fn a_stopped_agent_makes_the_backend_unreachable_while_http_still_answers() {
    // Backend 1 keeps the table's rows when backend 0 leaves them.
    let mut lab = Lab::new(&[true, false], 1);
    let config = lab.config(&[r#"{"http":80,"gue":19523}"#, r#"{"http":80}"#], "", FAST);
    let _checker = lab.daemon(&config);
    wait_until(
        "the director acknowledged the first verdicts",
        Duration::from_secs(10),
        || lab.in_sync(0).then_some(()),
    );
    let start = lab.held(0).unwrap();
    assert_eq!(start.flags(0), (true, true));
    assert!(start.backend(0).rows_primary > 0);

    lab.backends[0].agent.take().unwrap().stop().unwrap();
    let gone = lab.wait_held("backend 0 unreachable", 0, |h| !h.flags(0).1);
    let b0 = gone.backend(0);
    assert!(b0.healthy, "http still answers: still healthy");
    assert_eq!(
        (b0.rows_primary, b0.rows_alternate),
        (0, 0),
        "unreachable: in no row"
    );
    assert!(
        b0.health_reason
            .as_deref()
            .unwrap()
            .starts_with(&format!("gue {}:19523 to {VIP}: ", backend_ip(0))),
        "{b0:?}"
    );
    assert_eq!(
        gone.generation,
        start.generation + 1,
        "one health change (healthy never flipped)"
    );

    let h = lab.health();
    let b = &h["backends"][0];
    assert_eq!(
        (b["healthy"].as_bool(), b["reachable"].as_bool()),
        (Some(true), Some(false)),
        "{h}"
    );
    let gue = b["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == "gue")
        .unwrap();
    assert_eq!(gue["state"], "down", "{h}");
    assert_eq!(gue["last"]["result"], "fail", "{h}");
    let check = format!("gue {}:19523 to {VIP}", backend_ip(0));
    assert_eq!(
        lab.metric(&format!(
            "glb_healthcheck_state_changes_total{{check=\"{check}\",to=\"down\"}}"
        )),
        Some(1.0)
    );

    // The agent back: reachable again, back in the rows.
    let log = lab.scratch.file("redirect-again.log");
    lab.backends[0].start_agent(log);
    let back = lab.wait_held("backend 0 reachable again", 0, |h| h.flags(0).1);
    assert!(back.backend(0).rows_primary > 0);
    assert_eq!(back.web.hash, start.web.hash, "the table it had");
}

#[test]
fn cutting_the_checkers_own_link_flips_no_verdict() {
    // The directors' API is on another link: a verdict the checker
    // believed would reach them.
    let lab = Lab::new(&[true, true], 1);
    let config = lab.config(
        &[r#"{"http":80,"gue":19523}"#, r#"{"http":80,"gue":19523}"#],
        "",
        FAST,
    );
    let _checker = lab.daemon(&config);
    wait_until(
        "the director acknowledged every flag known",
        Duration::from_secs(10),
        || {
            let h = lab.health();
            let known = h["backends"]
                .as_array()
                .unwrap()
                .iter()
                .all(|b| b["healthy"] == true && b["reachable"] == true);
            (known && lab.in_sync(0)).then_some(())
        },
    );
    let start = lab.held(0).unwrap();
    lab.checker.ip(&["link", "set", "eth0", "down"]).unwrap();
    wait_until("self-suspicion", Duration::from_secs(10), || {
        (lab.metric("glb_healthcheck_self_suspicion ") == Some(1.0)).then_some(())
    });
    // Every check fails four more times, twice its fall: enough to flip
    // every verdict if the checker believed itself.
    lab.wait_probes("four more probes of every check", 4);
    lab.checker.ip(&["link", "set", "eth0", "up"]).unwrap();
    // Its neighbours went with the link. Were they learnt again, an ARP
    // request lost while the switch's port follows the link back up (the
    // kernel tells the bridge up to a second later) would be retried a
    // second later, and for that second one backend alone would fail
    // while the others answer: the checker would rightly take it for that
    // backend failing. Given, they make the link's return the same for
    // every backend.
    lab.pin_neighbours();
    wait_until("self-suspicion over", Duration::from_secs(10), || {
        (lab.metric("glb_healthcheck_self_suspicion ") == Some(0.0)).then_some(())
    });
    lab.wait_probes("four more probes of every check", 4);
    let end = lab.held(0).unwrap();
    assert_eq!((end.flags(0), end.flags(1)), ((true, true), (true, true)));
    assert_eq!(end.generation, start.generation, "a health change applied");
    assert_eq!(end.web.hash, start.web.hash);
    assert!(lab.in_sync(0));
    assert!(
        lab.metric("glb_healthcheck_self_suspicion_episodes_total ")
            .unwrap()
            >= 1.0
    );
}

#[test]
fn a_director_that_was_down_or_cut_off_gets_every_verdict_when_it_is_back() {
    let mut lab = Lab::new(&[false, false], 2);
    lab.backends[1].servers[&80]
        .status
        .store(503, Ordering::Relaxed);
    // No periodic resend during the test: only the catch-up after failed
    // pushes brings a director what it missed. No self-suspicion: both
    // checks fail for a while, which it would take for the checker's own
    // network failing.
    let config = lab.config(
        &[r#"{"http":80}"#, r#"{"http":80}"#],
        "",
        &format!(r#"{FAST},"resync_ms":3600000,"suspicion_fraction":1"#),
    );
    let _checker = lab.daemon(&config);
    let holds = |h: &Held, b0: bool, b1: bool| h.flags(0).0 == b0 && h.flags(1).0 == b1;
    for k in 0..2 {
        lab.wait_held("backend 0 healthy, backend 1 not", k, |h| {
            holds(h, true, false)
        });
    }

    // Director 1 stops and loses its state file (a new disk, say): back,
    // it starts from its config's flags, every backend healthy. Backend
    // 0 fails meanwhile.
    lab.stop_director(1);
    std::fs::remove_file(lab.director_state_file(1)).unwrap();
    lab.backends[0].servers[&80]
        .status
        .store(503, Ordering::Relaxed);
    let d0 = lab.wait_held("backend 0 unhealthy", 0, |h| holds(h, false, false));
    assert_eq!(
        d0.backend(0).health_reason.as_deref(),
        Some(format!("http {}:80/: status 503", backend_ip(0)).as_str())
    );
    wait_until(
        "the checker counts failed pushes to director 1",
        Duration::from_secs(10),
        || (lab.health()["directors"][1]["failures"].as_u64() >= Some(1)).then_some(()),
    );
    lab.start_director(1);
    // Backend 1's verdict did not change while it was away: only a batch
    // of every verdict, not only the changes, gives it back.
    wait_until(
        "director 1 holds both backends unhealthy",
        Duration::from_secs(20),
        || lab.held(1).filter(|h| holds(h, false, false)),
    );
    let (t0, t1) = (lab.held(0).unwrap().web, lab.held(1).unwrap().web);
    assert!(t0.hash.is_some());
    assert_eq!(t0.hash, t1.hash, "the same table on both directors");
    assert_eq!(t0.backends, t1.backends);

    // Director 0 runs on, but the checker cannot reach its API; backend
    // 0 recovers meanwhile.
    lab.checker.ip(&["link", "set", "d0", "down"]).unwrap();
    let failures = lab.health()["directors"][0]["failures"].as_u64().unwrap();
    lab.backends[0].servers[&80]
        .status
        .store(200, Ordering::Relaxed);
    lab.wait_held("backend 0 healthy again", 1, |h| holds(h, true, false));
    wait_until(
        "the checker counts failed pushes to director 0",
        Duration::from_secs(10),
        || (lab.health()["directors"][0]["failures"].as_u64() > Some(failures)).then_some(()),
    );
    let cut = lab.held(0).unwrap();
    assert!(
        holds(&cut, false, false),
        "cut off, it keeps the last verdicts it was given: {:?}",
        cut.web.backends
    );
    lab.checker.ip(&["link", "set", "d0", "up"]).unwrap();
    wait_until(
        "director 0 holds backend 0 healthy again",
        Duration::from_secs(20),
        || lab.held(0).filter(|h| holds(h, true, false)),
    );
    let (t0, t1) = (lab.held(0).unwrap().web, lab.held(1).unwrap().web);
    assert_eq!(t0.hash, t1.hash, "the same table on both directors");
    wait_until(
        "the checker saw both answers' hashes",
        Duration::from_secs(10),
        || {
            let h = lab.health();
            let hash = |k: usize| h["directors"][k]["hashes"]["web"].clone();
            (hash(0) == Value::from(t0.hash.clone()) && hash(1) == hash(0)).then_some(())
        },
    );
}

/// Python's HTTP server on `port` of backend i (a directory listing: 200).
fn python_http(lab: &Lab, i: usize, port: u16) -> Daemon {
    let dir = lab.scratch.file("www");
    std::fs::create_dir_all(&dir).unwrap();
    let n = NEXT_LOG.fetch_add(1, Ordering::Relaxed);
    let mut server = lab.backends[i]
        .ns
        .spawn(
            "python3",
            &[
                "-u",
                "-m",
                "http.server",
                &port.to_string(),
                "--bind",
                &backend_ip(i),
                "--directory",
                dir.to_str().unwrap(),
            ],
            lab.scratch.file(&format!("http-{n}.log")),
        )
        .unwrap();
    server
        .wait_for_log("Serving HTTP", Duration::from_secs(10))
        .unwrap();
    server
}

/// Polls every director of `lab` until each holds backend i's `healthy`
/// as given: how long each took since `start`.
fn until_every_director_holds(lab: &Lab, i: usize, healthy: bool, start: Instant) -> Vec<Duration> {
    let mut took: Vec<Option<Duration>> = vec![None; lab.directors.len()];
    while took.iter().any(Option::is_none) {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "backend {i} not healthy={healthy} on every director within 20 s: {took:?}"
        );
        for (k, t) in took.iter_mut().enumerate() {
            if t.is_none() && lab.held(k).is_some_and(|h| h.flags(i).0 == healthy) {
                *t = Some(start.elapsed());
            }
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    took.into_iter().flatten().collect()
}

#[test]
fn a_killed_or_hung_server_is_unhealthy_on_every_director_within_interval_x_fall_plus_timeout() {
    const INTERVAL: u64 = 500;
    const TIMEOUT: u64 = 300;
    const FALL: u64 = 3;
    const RISE: u64 = 2;
    // The bounds are the checker's decision (docs/healthcheck.md, "States
    // and verdicts", gives the finer one). The margin is what comes after
    // it: the push (changes within 100 ms are one round, then one HTTP
    // request per director), each director's apply (a debug build writing
    // the table's 65,536 rows), and this test's polling (every 50 ms, one
    // GET per director from a thread that enters its namespace), all on a
    // machine shared with other builds and tests.
    const MARGIN: Duration = Duration::from_secs(3);
    let down = Duration::from_millis(INTERVAL * FALL + TIMEOUT);
    let up = Duration::from_millis(INTERVAL * RISE + TIMEOUT);

    // Backend 0 runs the server; backend 1, always healthy, keeps the
    // table from being all unhealthy.
    let lab = Lab::new(&[false, false], 2);
    let server = python_http(&lab, 0, 8000);
    let config = lab.config(
        &[r#"{"http":8000}"#, r#"{"http":80}"#],
        "",
        &format!(
            r#""interval_ms":{INTERVAL},"fast_interval_ms":200,"timeout_ms":{TIMEOUT},"rise":{RISE},"fall":{FALL}"#
        ),
    );
    let _checker = lab.daemon(&config);
    wait_until(
        "both directors acknowledged backend 0 healthy",
        Duration::from_secs(10),
        || {
            (lab.health()["backends"][0]["healthy"] == true && lab.in_sync(0) && lab.in_sync(1))
                .then_some(())
        },
    );
    let reason = |why: &str| Some(format!("http {}:8000/: {why}", backend_ip(0)));
    let check = |what: &str, took: &[Duration], bound: Duration| {
        eprintln!("{what}: on the directors after {took:?} (bound {bound:?} + {MARGIN:?})");
        assert!(
            took.iter().all(|t| *t <= bound + MARGIN),
            "{what}: {took:?}, bound {bound:?} + {MARGIN:?}"
        );
    };

    // Killed: its port refuses connections.
    let start = Instant::now();
    server.stop().unwrap();
    let took = until_every_director_holds(&lab, 0, false, start);
    for k in 0..2 {
        let held = lab.held(k).unwrap();
        assert_eq!(held.backend(0).health_reason, reason("connection refused"));
    }
    check("killed, unhealthy", &took, down);

    // Started again (the clock includes Python's start).
    let start = Instant::now();
    let server = python_http(&lab, 0, 8000);
    let took = until_every_director_holds(&lab, 0, true, start);
    check("restarted, healthy", &took, up);

    // Hung: stopped, its kernel still accepts connections, nothing
    // answers; every probe times out.
    let start = Instant::now();
    server.signal(libc::SIGSTOP).unwrap();
    let took = until_every_director_holds(&lab, 0, false, start);
    for k in 0..2 {
        let held = lab.held(k).unwrap();
        assert_eq!(
            held.backend(0).health_reason,
            reason(&format!("no answer within {TIMEOUT} ms"))
        );
    }
    check("hung, unhealthy", &took, down);

    let start = Instant::now();
    server.signal(libc::SIGCONT).unwrap();
    let took = until_every_director_holds(&lab, 0, true, start);
    check("going on, healthy", &took, up);
}
