//! A fleet in namespaces: a client, a router running BIRD with ECMP over
//! three directors (each running BIRD and `director-xdp run`), four
//! backends running the redirect agent, the lab's echo server (port 80)
//! and Python's HTTP server (port 8080), and an operations host running
//! the health checker, which pushes to all three directors. Documentation
//! addresses only (docs/spec.md section 5):
//!
//! ```text
//!   client  192.0.2.2  2001:db8:2::2 ── down0 ┐
//!                                        router 192.0.2.1 2001:db8:2::1
//!                                               198.51.100.1 2001:db8:1::1 (eth0)
//!   one L2 segment (198.51.100.0/24, 2001:db8:1::/64):
//!   director k  198.51.100.2k  2001:db8:1::2k   AS 64513, BGP + BFD to the router
//!   backend i   198.51.100.1i  2001:db8:1::1i   VIPs on lo, replies via the router
//!   ops         198.51.100.30  2001:db8:1::30   health checker, operator
//!   VIPs 203.0.113.10 and 2001:db8:10::10, TCP ports 80 and 8080
//! ```
//!
//! The router (AS 64512) learns each VIP from every director that
//! announces it and installs one route with a next hop per director
//! (`merge paths on`), spread by the kernel's L4 hash; BFD (100 ms x 3)
//! drops a director whose host dies in about 0.3 s. The BGP hold time is
//! 9 s, so a faster withdrawal can only be BFD's.

use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use crate::glb::{self, Backend, VIP4, VIP6, backend_ip};
use crate::http::{Response, request};
use crate::{Daemon, Netns, Scratch, Switch, XdpPass, veth, workspace_bin};

/// The API's bearer token on every director.
pub const TOKEN: &str = "fleet-lab-token-5c3e";
/// How many directors.
pub const DIRECTORS: usize = 3;
/// How many backends.
pub const BACKENDS: usize = 4;
/// The ops host's address (the health checker's probes come from it).
pub const OPS4: &str = "198.51.100.30";
const ROUTER4: &str = "198.51.100.1";
const ROUTER6: &str = "2001:db8:1::1";
/// A director's withdraw delay in the lab (`director.withdraw_delay_ms`).
pub const WITHDRAW_DELAY_MS: u32 = 1000;
/// Loading the program and building tables in a debug build, three at
/// once on a shared two-core machine.
const START: Duration = Duration::from_secs(120);

/// Director `k`'s IPv4 address.
pub fn director_ip(k: usize) -> String {
    format!("198.51.100.{}", 21 + k)
}

fn director_ip6(k: usize) -> String {
    format!("2001:db8:1::{}", 21 + k)
}

fn director_mac(k: usize) -> String {
    format!("02:00:00:00:04:{:02x}", 0x21 + k)
}

/// Director `k`'s API.
pub fn director_api(k: usize) -> String {
    format!("{}:9610", director_ip(k))
}

/// One director host.
#[derive(Debug)]
pub struct Director {
    /// `director-xdp run`, while it runs.
    pub daemon: Option<Daemon>,
    /// Its BIRD.
    pub bird: Option<Daemon>,
    /// Its namespace.
    pub ns: Netns,
    /// Its config file.
    pub config: PathBuf,
    /// Arguments of `director-xdp run` besides the config.
    pub extra: Vec<String>,
    restarts: usize,
    /// Its port on the switch.
    port: String,
}

/// The fleet lab. Fields drop in order: processes first, namespaces last.
#[derive(Debug)]
pub struct FleetLab {
    /// The health checker, once started.
    pub checker: Option<Daemon>,
    /// The directors.
    pub directors: Vec<Director>,
    /// Python's HTTP servers, one per backend (port 8080).
    pub http: Vec<Daemon>,
    /// The backends.
    pub backends: Vec<Backend>,
    /// The router's BIRD.
    pub router_bird: Daemon,
    _peer_xdp: Vec<XdpPass>,
    /// The client host.
    pub client: Netns,
    /// The router.
    pub router: Netns,
    /// The operations host (health checker, `director-ctl`).
    pub ops: Netns,
    _sw: Switch,
    /// Configs, sockets and logs.
    pub scratch: Scratch,
}

fn bird_log() -> &'static str {
    "log stderr { info, remote, warning, error, auth, fatal, bug };"
}

const BFD: &str = r#"protocol bfd {
  interface "eth0" { min rx interval 100 ms; min tx interval 100 ms; multiplier 3; };
}"#;

/// BGP timers of every session: quick (re)connection in a lab that starts
/// everything at once; a hold time long enough that BFD is what detects
/// a dead peer.
const TIMERS: &str = "hold time 9; keepalive time 3; connect delay time 1; connect retry time 1; error wait time 1, 5;";

fn router_bird_config() -> String {
    let mut c = format!(
        "router id {ROUTER4};\n{}\nprotocol device {{ scan time 10; }}\n{BFD}\n\
         protocol kernel {{ ipv4 {{ import none; export all; }}; merge paths on; }}\n\
         protocol kernel {{ ipv6 {{ import none; export all; }}; merge paths on; }}\n",
        bird_log()
    );
    for k in 0..DIRECTORS {
        c.push_str(&format!(
            "protocol bgp d{k}v4 {{ local {ROUTER4} as 64512; neighbor {} as 64513; bfd on; {TIMERS}\n  ipv4 {{ import all; export none; }}; }}\n\
             protocol bgp d{k}v6 {{ local {ROUTER6} as 64512; neighbor {} as 64513; bfd on; {TIMERS}\n  ipv6 {{ import all; export none; }}; }}\n",
            director_ip(k),
            director_ip6(k)
        ));
    }
    c
}

/// A director's BIRD: the daemon's include, and one session per family
/// to the router exporting only the include's routes.
fn director_bird_config(k: usize, include: &str) -> String {
    format!(
        "router id {ip};\n{log}\ninclude \"{include}\";\nprotocol device {{ scan time 10; }}\n{BFD}\n\
         protocol bgp up4 {{ local {ip} as 64513; neighbor {ROUTER4} as 64512; bfd on; {TIMERS}\n\
           ipv4 {{ import none; export where proto = \"glb_vips4\"; }}; }}\n\
         protocol bgp up6 {{ local {ip6} as 64513; neighbor {ROUTER6} as 64512; bfd on; {TIMERS}\n\
           ipv6 {{ import none; export where proto = \"glb_vips6\"; }}; }}\n",
        ip = director_ip(k),
        ip6 = director_ip6(k),
        log = bird_log(),
    )
}

/// The tables every director holds: the glb lab's table "lab" over the
/// backends in `states` ("absent": not in the table), two alternates per
/// row.
fn tables(states: [&str; BACKENDS]) -> String {
    let backends: Vec<String> = (0..BACKENDS)
        .filter(|i| states[*i] != "absent")
        .map(|i| format!(r#"{{"ip":"{}","state":"{}"}}"#, backend_ip(i), states[i]))
        .collect();
    format!(
        r#"[{{"name":"lab","hash_key":"6c61622d686173682d6b65792d303031",
            "seed":"6c61622d736565642d30303030303031","hops":2,
            "binds":[{{"ip":"{VIP4}","proto":"tcp","port":80}},{{"ip":"{VIP6}","proto":"tcp","port":80}},
                     {{"ip":"{VIP4}","proto":"tcp","port":8080}},{{"ip":"{VIP6}","proto":"tcp","port":8080}}],
            "backends":[{}]}}]"#,
        backends.join(",")
    )
}

impl FleetLab {
    /// Builds and starts the fleet: returns once the router has a next hop
    /// per director for both VIPs. Director `k` runs with `extra[k]`
    /// arguments (`--keep-on-exit`).
    pub fn new(extra: [&[&str]; DIRECTORS]) -> io::Result<FleetLab> {
        FleetLab::with_backends(extra, ["active"; BACKENDS])
    }

    /// As [`FleetLab::new`], with backend `i` in state `states[i]` in
    /// every director's table ("absent": not in it, its host running).
    pub fn with_backends(
        extra: [&[&str]; DIRECTORS],
        states: [&str; BACKENDS],
    ) -> io::Result<FleetLab> {
        let scratch = Scratch::new("fleet")?;
        let mut sw = Switch::new()?;
        let client = Netns::new("cl")?;
        let router = Netns::new("rt")?;
        let ops = Netns::new("ops")?;
        let mut peer_xdp = Vec::new();

        veth(
            &client,
            "eth0",
            "02:00:00:00:05:02",
            &router,
            "down0",
            "02:00:00:00:05:01",
        )?;
        client.ip(&["addr", "add", "192.0.2.2/24", "dev", "eth0"])?;
        client.ip(&["addr", "add", "2001:db8:2::2/64", "dev", "eth0", "nodad"])?;
        client.ip(&["route", "add", "default", "via", "192.0.2.1"])?;
        client.ip(&["-6", "route", "add", "default", "via", "2001:db8:2::1"])?;
        // The directors' XDP sends the client's bytes on as they are: the
        // checksums must be complete (see glb.rs).
        client.exec("ethtool", &["-K", "eth0", "tx", "off"])?;
        router.ip(&["addr", "add", "192.0.2.1/24", "dev", "down0"])?;
        router.ip(&["addr", "add", "2001:db8:2::1/64", "dev", "down0", "nodad"])?;
        sw.plug(
            &router,
            "02:00:00:00:04:01",
            &["198.51.100.1/24", "2001:db8:1::1/64"],
        )?;
        for key in [
            "net.ipv4.ip_forward=1",
            "net.ipv6.conf.all.forwarding=1",
            // ECMP by the flow's ports too, so one client spreads.
            "net.ipv4.fib_multipath_hash_policy=1",
            "net.ipv6.fib_multipath_hash_policy=1",
            "net.ipv4.conf.all.rp_filter=0",
        ] {
            router.exec("sysctl", &["-qw", key])?;
        }
        sw.plug(
            &ops,
            "02:00:00:00:04:30",
            &[&format!("{OPS4}/24"), "2001:db8:1::30/64"],
        )?;
        ops.ip(&["route", "add", "192.0.2.0/24", "via", ROUTER4])?;

        let mut allow: Vec<String> = (0..DIRECTORS)
            .flat_map(|k| {
                [
                    format!("{}/32", director_ip(k)),
                    format!("{}/128", director_ip6(k)),
                ]
            })
            .collect();
        allow.push(format!("{OPS4}/32"));
        let allow: Vec<&str> = allow.iter().map(String::as_str).collect();
        let mut backends = Vec::new();
        let mut http = Vec::new();
        for i in 0..BACKENDS {
            let (b, xdp) = glb::start_backend(&mut sw, &scratch, i, BACKENDS, &allow)?;
            peer_xdp.push(xdp);
            // Replies go straight to the client, through the router.
            b.ns.ip(&["route", "add", "192.0.2.0/24", "via", ROUTER4])?;
            b.ns.ip(&["-6", "route", "add", "2001:db8:2::/64", "via", ROUTER6])?;
            http.push(http_server(&b.ns, &scratch, i)?);
            backends.push(b);
        }

        let router_conf = scratch.file("bird-router.conf");
        std::fs::write(&router_conf, router_bird_config())?;
        let router_bird = spawn_bird(&router, &scratch, "router", &router_conf)?;

        let token = scratch.file("api-token");
        std::fs::write(&token, format!("{TOKEN}\n"))?;
        std::fs::set_permissions(&token, std::os::unix::fs::PermissionsExt::from_mode(0o600))?;
        let mut directors = Vec::new();
        for (k, extra) in extra.iter().enumerate() {
            let ns = Netns::new("dir")?;
            let p = sw.plug(
                &ns,
                &director_mac(k),
                &[
                    &format!("{}/24", director_ip(k)),
                    &format!("{}/64", director_ip6(k)),
                ],
            )?;
            // The director sends with XDP_TX: its bridge port runs XDP.
            peer_xdp.push(XdpPass::attach(sw.ns(), &p)?);
            for i in 0..BACKENDS {
                ns.add_neighbour(&backend_ip(i), &glb::backend_mac(i))?;
                ns.add_neighbour(&glb::backend_ip6(i), &glb::backend_mac(i))?;
            }
            let include = scratch.file(&format!("bird-vips-{k}.conf"));
            // BIRD refuses a config whose include is missing.
            std::fs::write(&include, "")?;
            let conf = scratch.file(&format!("bird-director-{k}.conf"));
            std::fs::write(
                &conf,
                director_bird_config(k, &include.display().to_string()),
            )?;
            let bird = spawn_bird(&ns, &scratch, &format!("director-{k}"), &conf)?;
            let config = scratch.file(&format!("director-{k}.json"));
            std::fs::write(
                &config,
                format!(
                    r#"{{"tables":{},"director":{{"interface":"eth0","source_v4":"{}","source_v6":"{}",
                        "hash_fields":["src_addr","src_port"],"gateway_mac":"02:00:00:00:04:01",
                        "api_listen":"{}","api_token_file":"{}",
                        "bird_socket":"{}","bird_include":"{}","withdraw_delay_ms":{WITHDRAW_DELAY_MS}}}}}"#,
                    tables(states),
                    director_ip(k),
                    director_ip6(k),
                    director_api(k),
                    token.display(),
                    scratch.file(&format!("bird-director-{k}.ctl")).display(),
                    include.display(),
                ),
            )?;
            directors.push(Director {
                daemon: None,
                bird: Some(bird),
                ns,
                config,
                extra: extra.iter().map(ToString::to_string).collect(),
                restarts: 0,
                port: p,
            });
        }
        let mut lab = FleetLab {
            checker: None,
            directors,
            http,
            backends,
            router_bird,
            _peer_xdp: peer_xdp,
            client,
            router,
            ops,
            _sw: sw,
            scratch,
        };
        // All three load at once.
        for k in 0..DIRECTORS {
            lab.spawn_director(k)?;
        }
        for k in 0..DIRECTORS {
            if let Some(d) = &mut lab.directors[k].daemon {
                d.wait_for_log("attached", START)?;
            }
        }
        lab.wait_for_next_hops(DIRECTORS, Duration::from_secs(60))?;
        Ok(lab)
    }

    fn spawn_director(&mut self, k: usize) -> io::Result<()> {
        let bin = workspace_bin("director-xdp")?;
        let d = &mut self.directors[k];
        let config = d.config.display().to_string();
        let mut args = vec!["run", "--config", &config];
        args.extend(d.extra.iter().map(String::as_str));
        let log = self
            .scratch
            .file(&format!("director-{k}.{}.log", d.restarts));
        d.restarts += 1;
        d.daemon = Some(d.ns.spawn(bin.to_str().unwrap_or_default(), &args, log)?);
        Ok(())
    }

    /// Starts director `k`'s daemon again and waits for it to attach.
    pub fn start_director(&mut self, k: usize) -> io::Result<()> {
        self.spawn_director(k)?;
        match &mut self.directors[k].daemon {
            Some(d) => d.wait_for_log("attached", START),
            None => Err(io::Error::other("not started")),
        }
    }

    /// Stops director `k`'s daemon with SIGTERM and waits for it to exit.
    pub fn stop_director(&mut self, k: usize) -> io::Result<std::process::ExitStatus> {
        match self.directors[k].daemon.take() {
            Some(d) => d.stop(),
            None => Err(io::Error::other("not running")),
        }
    }

    /// Kills director `k`'s BIRD (SIGKILL: a crash).
    pub fn kill_bird(&mut self, k: usize) -> io::Result<()> {
        if let Some(b) = self.directors[k].bird.take() {
            b.signal(libc::SIGKILL)?;
            drop(b);
        }
        let _ = std::fs::remove_file(self.scratch.file(&format!("bird-director-{k}.ctl")));
        Ok(())
    }

    /// Starts director `k`'s BIRD again, with its config as at the start.
    pub fn start_bird(&mut self, k: usize) -> io::Result<()> {
        let conf = self.scratch.file(&format!("bird-director-{k}.conf"));
        let bird = spawn_bird(
            &self.directors[k].ns,
            &self.scratch,
            &format!("director-{k}"),
            &conf,
        )?;
        self.directors[k].bird = Some(bird);
        Ok(())
    }

    /// Cuts director `k`'s cable (its switch port goes down: the host sees
    /// its carrier go, the others see nothing but silence), or plugs it
    /// back.
    pub fn set_cable(&self, k: usize, plugged: bool) -> io::Result<()> {
        let state = if plugged { "up" } else { "down" };
        self._sw
            .ns()
            .ip(&["link", "set", &self.directors[k].port, state])
            .map(drop)
    }

    /// The router's next hops for `vip` now (the directors' addresses).
    pub fn next_hops(&self, vip: &str) -> io::Result<Vec<String>> {
        let family = if vip.contains(':') { "-6" } else { "-4" };
        let out = self.router.ip(&[family, "route", "show", vip])?;
        let text = String::from_utf8_lossy(&out.stdout);
        Ok(text
            .split_whitespace()
            .collect::<Vec<_>>()
            .windows(2)
            .filter(|w| w[0] == "via")
            .map(|w| w[1].to_string())
            .collect())
    }

    /// Waits until the router has `n` next hops for both VIPs.
    pub fn wait_for_next_hops(&self, n: usize, timeout: Duration) -> io::Result<Duration> {
        let start = Instant::now();
        loop {
            let (v4, v6) = (self.next_hops(VIP4)?, self.next_hops(VIP6)?);
            if v4.len() == n && v6.len() == n {
                return Ok(start.elapsed());
            }
            if start.elapsed() > timeout {
                return Err(io::Error::other(format!(
                    "the router has {v4:?} for {VIP4} and {v6:?} for {VIP6} after {timeout:?}, not {n} each; router BIRD log:\n{}",
                    self.router_bird.log()
                )));
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// One call to director `k`'s API from the ops host, with the token.
    pub fn api(&self, k: usize, method: &str, path: &str) -> io::Result<Response> {
        self.api_with(k, method, path, None)
    }

    /// [`FleetLab::api`] with a JSON body.
    pub fn api_with(
        &self,
        k: usize,
        method: &str,
        path: &str,
        body: Option<&str>,
    ) -> io::Result<Response> {
        let addr: SocketAddr = director_api(k).parse().map_err(io::Error::other)?;
        let (m, p) = (method.to_string(), path.to_string());
        let body = body.map(str::to_string);
        self.ops
            .run_in(move || request(addr, &m, &p, Some(TOKEN), body.as_deref()))
    }

    /// `director-ctl --token-file ... ARGS` on the ops host.
    pub fn ctl(&self, args: &[&str]) -> io::Result<std::process::Output> {
        let ctl = workspace_bin("director-ctl")?;
        std::process::Command::new("ip")
            .args(["netns", "exec", self.ops.name()])
            .arg(ctl)
            .arg("--token-file")
            .arg(self.scratch.file("api-token"))
            .args(args)
            .output()
    }

    /// The names of every namespace of the lab.
    pub fn namespaces(&self) -> Vec<String> {
        let mut names = vec![
            self.client.name().to_string(),
            self.router.name().to_string(),
            self.ops.name().to_string(),
            self._sw.ns().name().to_string(),
        ];
        names.extend(self.directors.iter().map(|d| d.ns.name().to_string()));
        names.extend(self.backends.iter().map(|b| b.ns.name().to_string()));
        names
    }

    /// Every director's API URL.
    pub fn urls(&self) -> Vec<String> {
        (0..DIRECTORS)
            .map(|k| format!("http://{}", director_api(k)))
            .collect()
    }

    /// Starts the health checker on the ops host: every backend's HTTP
    /// server (8080) and tunnel (`gue`), verdicts pushed to every director.
    pub fn start_checker(&mut self) -> io::Result<()> {
        let list: Vec<String> = (0..BACKENDS)
            .map(|i| {
                format!(
                    r#"{{"ip":"{}","healthchecks":{{"http":8080,"gue":19523}}}}"#,
                    backend_ip(i)
                )
            })
            .collect();
        let urls: Vec<String> = self.urls().iter().map(|u| format!("\"{u}\"")).collect();
        let path = self.scratch.file("healthcheck.json");
        std::fs::write(
            &path,
            format!(
                r#"{{"tables":[{{"name":"lab","hash_key":"6c61622d686173682d6b65792d303031","seed":"6c61622d736565642d30303030303031",
                     "binds":[{{"ip":"{VIP4}","proto":"tcp","port":80}}],"backends":[{}]}}],
                   "healthcheck":{{"directors":[{}],"api_token_file":"{}","interval_ms":1000,"timeout_ms":500,"listen":"127.0.0.1:9620"}}}}"#,
                list.join(","),
                urls.join(","),
                self.scratch.file("api-token").display()
            ),
        )?;
        let bin = workspace_bin("healthcheck")?;
        let mut checker = self.ops.spawn(
            bin.to_str().unwrap_or_default(),
            &["--config", path.to_str().unwrap_or_default()],
            self.scratch.file("healthcheck.log"),
        )?;
        checker.wait_for_log("serving /health", Duration::from_secs(10))?;
        self.checker = Some(checker);
        Ok(())
    }
}

fn spawn_bird(
    ns: &Netns,
    scratch: &Scratch,
    name: &str,
    conf: &std::path::Path,
) -> io::Result<Daemon> {
    let sock = if name == "router" {
        scratch.file("bird-router.ctl")
    } else {
        scratch.file(&format!("bird-{name}.ctl"))
    };
    let pid = scratch.file(&format!("bird-{name}.pid"));
    let mut bird = ns.spawn(
        "bird",
        &[
            "-f",
            "-c",
            conf.to_str().unwrap_or_default(),
            "-s",
            sock.to_str().unwrap_or_default(),
            "-P",
            pid.to_str().unwrap_or_default(),
        ],
        scratch.file(&format!("bird-{name}.log")),
    )?;
    // BIRD logs nothing once it runs quietly: its socket tells it is up.
    let start = Instant::now();
    while !sock.exists() {
        if !bird.running()? || start.elapsed() > Duration::from_secs(10) {
            return Err(io::Error::other(format!(
                "BIRD ({name}) did not start: {}",
                bird.log()
            )));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(bird)
}

/// Python's HTTP server on backend `i`'s host, port 8080, answering `/`
/// with the backend's name.
pub fn http_server(ns: &Netns, scratch: &Scratch, i: usize) -> io::Result<Daemon> {
    let dir = scratch.file(&format!("www{i}"));
    std::fs::create_dir_all(&dir)?;
    std::fs::write(
        dir.join("index.html"),
        format!("backend-{}\n", backend_ip(i)),
    )?;
    let n = std::fs::read_dir(scratch.file(""))?.count();
    let log = scratch.file(&format!("http{i}-{n}.log"));
    let mut s = ns.spawn(
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

/// A steady request load through the VIPs: HTTP GETs of `/` on port 8080,
/// one connection each, IPv4 and IPv6 in turn, from the client.
#[derive(Debug)]
pub struct Load {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    /// Requests answered and failed so far.
    live: std::sync::Arc<(AtomicUsize, AtomicUsize)>,
    worker: std::thread::JoinHandle<io::Result<LoadReport>>,
}

/// What a [`Load`] saw.
#[derive(Debug, Default)]
pub struct LoadReport {
    /// Requests answered 200 by a backend.
    pub ok: usize,
    /// The others, and why.
    pub failed: Vec<String>,
}

impl Load {
    /// Starts the load on the lab's client, a request every `every`.
    pub fn start(lab: &FleetLab, every: Duration) -> Load {
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = stop.clone();
        let live = std::sync::Arc::new((AtomicUsize::new(0), AtomicUsize::new(0)));
        let counts = live.clone();
        let worker = lab.client.spawn_in(move || {
            let mut report = LoadReport::default();
            let targets: [SocketAddr; 2] = [
                SocketAddr::from(([203, 0, 113, 10], 8080)),
                format!("[{VIP6}]:8080").parse().map_err(io::Error::other)?,
            ];
            let mut n = 0usize;
            while !flag.load(Ordering::Relaxed) {
                let t = Instant::now();
                let target = targets[n % 2];
                n += 1;
                match request(target, "GET", "/", None, None) {
                    Ok(r) if r.status == 200 && r.body.starts_with("backend-") => report.ok += 1,
                    Ok(r) => report
                        .failed
                        .push(format!("{target}: {} {:?}", r.status, r.body)),
                    Err(e) => report.failed.push(format!("{target}: {e}")),
                }
                counts.0.store(report.ok, Ordering::Relaxed);
                counts.1.store(report.failed.len(), Ordering::Relaxed);
                if let Some(rest) = every.checked_sub(t.elapsed()) {
                    std::thread::sleep(rest);
                }
            }
            Ok(report)
        });
        Load { stop, live, worker }
    }

    /// Requests answered and failed so far.
    pub fn progress(&self) -> (usize, usize) {
        (
            self.live.0.load(Ordering::Relaxed),
            self.live.1.load(Ordering::Relaxed),
        )
    }

    /// Stops the load and tells what it saw.
    pub fn finish(self) -> io::Result<LoadReport> {
        self.stop.store(true, Ordering::Relaxed);
        self.worker
            .join()
            .map_err(|_| io::Error::other("the load's thread panicked"))?
    }
}
