//! A whole GLB lab in namespaces: a client, a real `director-xdp run`, and
//! backends running `redirect-xdp` and a TCP server of ours, on
//! one L2 segment (a bridge in namespace "sw"). Documentation addresses
//! only (docs/spec.md section 5):
//!
//! ```text
//!   client   198.51.100.2   2001:db8:1::2   routes the VIPs via the director
//!   director 198.51.100.1   2001:db8:1::1
//!   backend i 198.51.100.1i 2001:db8:1::1i  VIPs on lo, redirect on eth0
//!   VIPs 203.0.113.10 and 2001:db8:10::10, TCP ports 80 and 8080
//! ```
//!
//! Port 80 is the lab's own server (below); port 8080 is free for a real
//! HTTP server that a user of the lab starts (the demo runs Python's).
//!
//! Every link keeps the veth default MTU, 1500: the director's path toward
//! the backends is 1500 bytes (its `director.mtu` is unset, so it reads its
//! interface's, unless [`Lab::set_mtu`] says otherwise), and full-size
//! client packets do not fit it once encapsulated.
//!
//! The director's API listens on [`API`] inside the director's namespace
//! (its loopback), with the token of [`Lab::token_file`]: [`Lab::api`]
//! and [`Lab::ctl`] reach it from there.
//!
//! The server greets every connection with its backend's name and a
//! newline, then echoes every line it reads: a client knows which backend
//! answered, and that its connection still works.

use std::io::{self, BufRead as _, BufReader, Write as _};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use crate::http::{Response, request};
use crate::{Daemon, Netns, Scratch, Switch, XdpPass, workspace_bin};

/// IPv4 VIP.
pub const VIP4: &str = "203.0.113.10";
/// IPv6 VIP.
pub const VIP6: &str = "2001:db8:10::10";
/// The director's addresses.
pub const DIRECTOR4: &str = "198.51.100.1";
/// The client's IPv4 address (and 2001:db8:1::2).
pub const CLIENT4: &str = "198.51.100.2";
/// The director's API, on the loopback of its namespace.
pub const API: &str = "127.0.0.1:9610";
/// The API's bearer token (in [`Lab::token_file`]).
pub const TOKEN: &str = "glb-lab-token-7d21";

/// Backend `i`'s IPv4 address.
pub fn backend_ip(i: usize) -> String {
    format!("198.51.100.{}", 11 + i)
}

pub(crate) fn backend_ip6(i: usize) -> String {
    format!("2001:db8:1::{}", 11 + i)
}

pub(crate) fn backend_mac(i: usize) -> String {
    format!("02:00:00:00:03:{:02x}", 0x11 + i)
}

/// One backend of the lab.
#[derive(Debug)]
pub struct Backend {
    /// Its namespace.
    pub ns: Netns,
    /// The redirect agent.
    pub agent: Daemon,
    /// How the agent was started: program, arguments, log file.
    agent_cmd: (String, Vec<String>, PathBuf),
    stop: Arc<AtomicBool>,
    servers: Vec<JoinHandle<()>>,
}

impl Backend {
    /// The agent's counters now (SIGUSR1, then the last `counters:` line).
    pub fn counters(&mut self) -> io::Result<Vec<(String, u64)>> {
        crate::redirect_lab::agent_counters(&self.agent)
    }

    /// Restarts the redirect agent as an operator would (SIGTERM, which
    /// detaches the module, then start it again): how long the interface
    /// went without it, from the signal to the new agent's "attached".
    pub fn restart_agent(&mut self) -> io::Result<Duration> {
        let start = std::time::Instant::now();
        self.agent.signal(libc::SIGTERM)?;
        while self.agent.running()? {
            if start.elapsed() > Duration::from_secs(10) {
                return Err(io::Error::other("the agent did not exit within 10 s"));
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        let (bin, args, log) = &self.agent_cmd;
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let log = log.with_extension("restarted.log");
        let mut agent = self.ns.spawn(bin, &args, log)?;
        let attached = agent.wait_for_log("redirect attached", Duration::from_secs(30));
        let gap = start.elapsed();
        // The old one has exited: dropping it reaps it.
        self.agent = agent;
        attached.map(|()| gap)
    }

    /// One counter now.
    pub fn counter(&mut self, name: &str) -> io::Result<u64> {
        Ok(self
            .counters()?
            .into_iter()
            .find(|(n, _)| n == name)
            .map_or(0, |(_, v)| v))
    }
}

impl Drop for Backend {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for s in self.servers.drain(..) {
            let _ = s.join();
        }
    }
}

/// The lab. Fields drop in order: processes and XDP first, namespaces last.
#[derive(Debug)]
pub struct Lab {
    /// The director daemon.
    pub director: Daemon,
    /// The backends.
    pub backends: Vec<Backend>,
    _peer_xdp: Vec<XdpPass>,
    /// The client host.
    pub client: Netns,
    /// The director host.
    pub director_ns: Netns,
    _sw: Switch,
    /// Config and logs.
    pub scratch: Scratch,
    states: Vec<String>,
    hops: u8,
    /// The table's `encap`: "gue" or "ipip".
    encap: &'static str,
    /// `director.mtu`; `None`: the director's interface's MTU (1500).
    mtu: Option<u32>,
}

impl Lab {
    /// Builds the lab with one backend per entry of `states` (a GLB
    /// state: "active", "draining", "inactive"...), all healthy, in a table
    /// of two alternates per row (the default).
    pub fn new(states: &[&str]) -> io::Result<Lab> {
        Lab::with_hops(states, 2)
    }

    /// [`Lab::new`] with `hops` alternates per row. A backend in state
    /// "absent" runs its host but is not in the config (the API can add it).
    pub fn with_hops(states: &[&str], hops: u8) -> io::Result<Lab> {
        Lab::with_table(states, hops, "gue")
    }

    /// [`Lab::with_hops`] with the table's `encap` ("gue" or "ipip"; the
    /// backends' agents take either).
    pub fn with_table(states: &[&str], hops: u8, encap: &'static str) -> io::Result<Lab> {
        let scratch = Scratch::new("glb")?;
        let mut sw = Switch::new()?;
        let client = Netns::new("cl")?;
        let director_ns = Netns::new("dir")?;
        let mut peer_xdp = Vec::new();
        let p = sw.plug(
            &director_ns,
            "02:00:00:00:03:01",
            &["198.51.100.1/24", "2001:db8:1::1/64"],
        )?;
        peer_xdp.push(XdpPass::attach(sw.ns(), &p)?);
        sw.plug(
            &client,
            "02:00:00:00:03:02",
            &["198.51.100.2/24", "2001:db8:1::2/64"],
        )?;
        // A veth leaves TCP checksums to "the hardware" (CHECKSUM_PARTIAL);
        // once the director's XDP has turned the frame into raw bytes,
        // nothing completes them and the backend drops the packet. A real
        // NIC sends complete checksums: do the same here.
        client.exec("ethtool", &["-K", "eth0", "tx", "off"])?;
        client.ip(&["route", "add", "203.0.113.10/32", "via", DIRECTOR4])?;
        client.ip(&[
            "-6",
            "route",
            "add",
            "2001:db8:10::10/128",
            "via",
            "2001:db8:1::1",
        ])?;

        let bin = workspace_bin("director-xdp")?;
        let bin = bin.to_str().ok_or_else(|| io::Error::other("path"))?;
        let mut backends = Vec::new();
        for i in 0..states.len() {
            let (b, xdp) = start_backend(
                &mut sw,
                &scratch,
                i,
                states.len(),
                &["198.51.100.1/32", "2001:db8:1::1/128"],
            )?;
            peer_xdp.push(xdp);
            backends.push(b);
        }
        for i in 0..states.len() {
            director_ns.add_neighbour(&backend_ip(i), &backend_mac(i))?;
        }
        let states: Vec<String> = states.iter().map(ToString::to_string).collect();
        let token = scratch.file("api-token");
        std::fs::write(&token, format!("{TOKEN}\n"))?;
        std::fs::set_permissions(&token, std::os::unix::fs::PermissionsExt::from_mode(0o600))?;
        let cfg = scratch.file("director.json");
        std::fs::write(&cfg, config(&states, hops, encap, None, &token))?;
        let mut director = director_ns.spawn(
            bin,
            &["run", "--config", cfg.to_str().unwrap_or_default()],
            scratch.file("director.log"),
        )?;
        director.wait_for_log("attached", Duration::from_secs(30))?;
        Ok(Lab {
            director,
            backends,
            _peer_xdp: peer_xdp,
            client,
            director_ns,
            _sw: sw,
            scratch,
            states,
            hops,
            encap,
            mtu: None,
        })
    }

    /// Rewrites the config with backend `i` in `state`, sends SIGHUP and
    /// waits for the director to apply it.
    pub fn set_state(&mut self, i: usize, state: &str) -> io::Result<()> {
        self.states[i] = state.to_string();
        self.reload()
    }

    /// Rewrites the config with `director.mtu` set to `mtu` (`None`: not
    /// set, so the director's interface's MTU, 1500), sends SIGHUP and
    /// waits for the director to apply it.
    pub fn set_mtu(&mut self, mtu: Option<u32>) -> io::Result<()> {
        self.mtu = mtu;
        self.reload()
    }

    fn reload(&mut self) -> io::Result<()> {
        let generation = self.director.log().matches("applied: generation").count() + 1;
        std::fs::write(
            self.scratch.file("director.json"),
            config(
                &self.states,
                self.hops,
                self.encap,
                self.mtu,
                &self.token_file(),
            ),
        )?;
        self.director.signal(libc::SIGHUP)?;
        self.director.wait_for_log(
            &format!("applied: generation {generation}"),
            Duration::from_secs(10),
        )
    }

    /// The path of the director's config.
    pub fn config_path(&self) -> PathBuf {
        self.scratch.file("director.json")
    }

    /// The file holding the API's bearer token ([`TOKEN`]).
    pub fn token_file(&self) -> PathBuf {
        self.scratch.file("api-token")
    }

    /// One call to the director's API from inside its namespace; `auth`
    /// sends the token.
    pub fn api(&self, method: &str, path: &str, auth: bool) -> io::Result<Response> {
        let addr: std::net::SocketAddr = API.parse().map_err(io::Error::other)?;
        let (m, p) = (method.to_string(), path.to_string());
        self.director_ns
            .run_in(move || request(addr, &m, &p, auth.then_some(TOKEN), None))
    }

    /// A health checker's config for this lab (written to the scratch dir):
    /// the director's table "lab", the first `backends` backends each with
    /// an HTTP check on port 8080 and a `gue` check, and a `healthcheck`
    /// section pushing to the lab's director with its token, plus
    /// `settings` (more fields of that section, or empty).
    pub fn healthcheck_config(&self, backends: usize, settings: &str) -> io::Result<PathBuf> {
        let list: Vec<String> = (0..backends)
            .map(|i| {
                format!(
                    r#"{{"ip":"{}","healthchecks":{{"http":8080,"gue":19523}}}}"#,
                    backend_ip(i)
                )
            })
            .collect();
        let extra = if settings.is_empty() {
            String::new()
        } else {
            format!(",{settings}")
        };
        let path = self.scratch.file("healthcheck.json");
        std::fs::write(
            &path,
            format!(
                r#"{{"tables":[{{"name":"lab","hash_key":"6c61622d686173682d6b65792d303031","seed":"6c61622d736565642d30303030303031",
                     "binds":[{{"ip":"{VIP4}","proto":"tcp","port":80}}],"backends":[{}]}}],
                   "healthcheck":{{"directors":["http://{API}"],"api_token_file":"{}"{extra}}}}}"#,
                list.join(","),
                self.token_file().display()
            ),
        )?;
        Ok(path)
    }

    /// `director-ctl ARGS` inside the director's namespace (its `--api`
    /// default is the lab's [`API`]).
    pub fn ctl(&self, args: &[&str]) -> io::Result<std::process::Output> {
        let ctl = workspace_bin("director-ctl")?;
        std::process::Command::new("ip")
            .args(["netns", "exec", self.director_ns.name()])
            .arg(ctl)
            .args(args)
            .output()
    }
}

/// Starts backend `i` of `n` on `sw`: its host with the VIPs on `lo`, the
/// lab's server on port 80 (both families), and the redirect agent, which
/// takes GUE from `allow` (the directors, a checker) and from the other
/// backends (second chance). Returns it with the XDP program its bridge
/// port needs (forwarded packets leave with XDP_TX).
pub(crate) fn start_backend(
    sw: &mut Switch,
    scratch: &Scratch,
    i: usize,
    n: usize,
    allow: &[&str],
) -> io::Result<(Backend, XdpPass)> {
    let agent_bin = workspace_bin("redirect-xdp")?;
    let agent_bin = agent_bin.to_str().ok_or_else(|| io::Error::other("path"))?;
    let ns = Netns::new("be")?;
    let p = sw.plug(
        &ns,
        &backend_mac(i),
        &[
            &format!("{}/24", backend_ip(i)),
            &format!("{}/64", backend_ip6(i)),
        ],
    )?;
    let xdp = XdpPass::attach(sw.ns(), &p)?;
    ns.ip(&["addr", "add", "203.0.113.10/32", "dev", "lo"])?;
    ns.ip(&["addr", "add", "2001:db8:10::10/128", "dev", "lo"])?;
    for key in [
        "net.ipv4.conf.eth0.forwarding=1",
        "net.ipv6.conf.eth0.forwarding=1",
        "net.ipv4.conf.all.rp_filter=0",
        "net.ipv4.conf.eth0.rp_filter=0",
    ] {
        ns.exec("sysctl", &["-qw", key])?;
    }
    // Second chance forwards to the other backends: their MACs.
    for j in (0..n).filter(|j| *j != i) {
        ns.add_neighbour(&backend_ip(j), &backend_mac(j))?;
    }
    let stop = Arc::new(AtomicBool::new(false));
    let name = format!("backend-{}", backend_ip(i));
    let mut servers = Vec::new();
    for addr in ["0.0.0.0:80", "[::]:80"] {
        let listener = ns.run_in(move || {
            let l = if addr.starts_with('[') {
                v6_only_listener()?
            } else {
                TcpListener::bind(addr)?
            };
            l.set_nonblocking(true)?;
            Ok(l)
        })?;
        servers.push(serve(listener, name.clone(), stop.clone()));
    }
    let log = scratch.file(&format!("redirect-{i}.log"));
    let (me, me6) = (backend_ip(i), backend_ip6(i));
    let mut args = vec!["--iface", "eth0", "--self", &me, "--self", &me6];
    // GUE comes from `allow`, and from the other backends (second
    // chance): the client is not allowed.
    let peers: Vec<String> = (0..n)
        .filter(|j| *j != i)
        .map(|j| format!("{}/32", backend_ip(j)))
        .collect();
    args.push("--allow");
    args.extend(allow);
    args.extend(peers.iter().map(String::as_str));
    let mut agent = ns.spawn(agent_bin, &args, log.clone())?;
    agent.wait_for_log("redirect attached", Duration::from_secs(30))?;
    let agent_cmd = (
        agent_bin.to_string(),
        args.iter().map(ToString::to_string).collect(),
        log,
    );
    Ok((
        Backend {
            ns,
            agent,
            agent_cmd,
            stop,
            servers,
        },
        xdp,
    ))
}

/// The lab's config: its one table "lab" with `hops` alternates per row
/// and `encap`, and `director.mtu` if `mtu` says.
fn config(
    states: &[String],
    hops: u8,
    encap: &str,
    mtu: Option<u32>,
    token_file: &std::path::Path,
) -> String {
    let backends: Vec<String> = states
        .iter()
        .enumerate()
        .filter(|(_, s)| *s != "absent")
        .map(|(i, s)| {
            format!(
                r#"{{"ip":"{}","state":"{s}","healthy":true}}"#,
                backend_ip(i)
            )
        })
        .collect();
    format!(
        r#"{{"tables":[{{"name":"lab","hash_key":"6c61622d686173682d6b65792d303031",
            "seed":"6c61622d736565642d30303030303031","hops":{hops},"encap":"{encap}",
            "binds":[{{"ip":"{VIP4}","proto":"tcp","port":80}},{{"ip":"{VIP6}","proto":"tcp","port":80}},
                     {{"ip":"{VIP4}","proto":"tcp","port":8080}},{{"ip":"{VIP6}","proto":"tcp","port":8080}}],
            "backends":[{}]}}],
          "director":{{"interface":"eth0","source_v4":"{DIRECTOR4}",
            "hash_fields":["src_addr","src_port"],"gateway_mac":"02:00:00:00:03:fe",
            "api_listen":"{API}","api_token_file":"{}"{}}}}}"#,
        backends.join(","),
        token_file.display(),
        mtu.map_or(String::new(), |m| format!(r#","mtu":{m}"#))
    )
}

fn v6_only_listener() -> io::Result<TcpListener> {
    use std::os::fd::FromRawFd as _;
    // SAFETY: plain socket calls on a fresh fd with a valid sockaddr.
    unsafe {
        let fd = libc::socket(libc::AF_INET6, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0);
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        let listener = TcpListener::from_raw_fd(fd);
        let one: libc::c_int = 1;
        libc::setsockopt(
            fd,
            libc::IPPROTO_IPV6,
            libc::IPV6_V6ONLY,
            (&one as *const libc::c_int).cast(),
            4,
        );
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_REUSEADDR,
            (&one as *const libc::c_int).cast(),
            4,
        );
        let mut sa: libc::sockaddr_in6 = std::mem::zeroed();
        sa.sin6_family = libc::AF_INET6 as u16;
        sa.sin6_port = 80u16.to_be();
        if libc::bind(
            fd,
            (&sa as *const libc::sockaddr_in6).cast(),
            std::mem::size_of::<libc::sockaddr_in6>() as u32,
        ) != 0
            || libc::listen(fd, 1024) != 0
        {
            return Err(io::Error::last_os_error());
        }
        Ok(listener)
    }
}

/// Accepts until `stop`; each connection: greet with `name`, echo lines.
fn serve(listener: TcpListener, name: String, stop: Arc<AtomicBool>) -> JoinHandle<()> {
    std::thread::spawn(move || {
        let mut conns = Vec::new();
        while !stop.load(Ordering::Relaxed) {
            match listener.accept() {
                Ok((s, _)) => {
                    let name = name.clone();
                    let stop = stop.clone();
                    conns.push(std::thread::spawn(move || {
                        let _ = echo(s, &name, &stop);
                    }));
                }
                Err(_) => std::thread::sleep(Duration::from_millis(5)),
            }
        }
        for c in conns {
            let _ = c.join();
        }
    })
}

fn echo(s: TcpStream, name: &str, stop: &AtomicBool) -> io::Result<()> {
    s.set_nodelay(true)?;
    s.set_read_timeout(Some(Duration::from_millis(200)))?;
    let mut w = s.try_clone()?;
    w.write_all(format!("{name}\n").as_bytes())?;
    let mut r = BufReader::new(s);
    let mut line = String::new();
    while !stop.load(Ordering::Relaxed) {
        match r.read_line(&mut line) {
            Ok(0) => return Ok(()),
            Ok(_) => {
                w.write_all(line.as_bytes())?;
                line.clear();
            }
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// A client connection through the VIP: who answered, and the stream.
#[derive(Debug)]
pub struct Conn {
    /// The greeting: `backend-ADDR`.
    pub backend: String,
    /// Line reader over the stream.
    pub reader: BufReader<TcpStream>,
    /// The stream, for writing.
    pub writer: TcpStream,
}

/// Opens `n` connections to `vip` port 80 from the client namespace and
/// reads each greeting.
pub fn connect_many(client: &Netns, vip: &'static str, n: usize) -> io::Result<Vec<Conn>> {
    client.run_in(move || {
        let addr: std::net::SocketAddr = if vip.contains(':') {
            format!("[{vip}]:80")
        } else {
            format!("{vip}:80")
        }
        .parse()
        .map_err(io::Error::other)?;
        let mut out = Vec::with_capacity(n);
        for _ in 0..n {
            let s = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
            s.set_nodelay(true)?;
            s.set_read_timeout(Some(Duration::from_secs(3)))?;
            let writer = s.try_clone()?;
            let mut reader = BufReader::new(s);
            let mut backend = String::new();
            reader.read_line(&mut backend)?;
            out.push(Conn {
                backend: backend.trim().to_string(),
                reader,
                writer,
            });
        }
        Ok(out)
    })
}

impl Conn {
    /// Sends one line and checks that it comes back.
    pub fn ping(&mut self, msg: &str) -> io::Result<()> {
        self.writer.write_all(format!("{msg}\n").as_bytes())?;
        let mut line = String::new();
        self.reader.read_line(&mut line)?;
        if line.trim_end() != msg {
            return Err(io::Error::other(format!(
                "sent {msg:?}, got {line:?} from {}",
                self.backend
            )));
        }
        Ok(())
    }
}

/// What [`exchange`] saw.
#[derive(Debug)]
pub struct Exchanged {
    /// Connections that failed (their index in the input, and why); a
    /// failed connection is not used again.
    pub failures: Vec<(usize, String)>,
    /// The fewest echoes any connection got.
    pub fewest: usize,
    /// The connections, in their input order.
    pub conns: Vec<Conn>,
}

/// A change made during [`exchange`], once `at` has passed since its start.
pub type Change<'a> = (Duration, Box<dyn FnOnce() + 'a>);

/// Runs `conns` in 4 worker threads, each line every ~50 ms per
/// connection, for `total`, and makes each of `changes` at its time (in
/// order, on this thread).
pub fn exchange(conns: Vec<Conn>, total: Duration, changes: Vec<Change<'_>>) -> Exchanged {
    let start = std::time::Instant::now();
    let running = Exchange::start(conns);
    for (at, change) in changes {
        while start.elapsed() < at {
            std::thread::sleep(Duration::from_millis(20));
        }
        change();
    }
    if let Some(rest) = total.checked_sub(start.elapsed()) {
        std::thread::sleep(rest);
    }
    running.finish()
}

/// Connections exchanging lines in the background until [`Exchange::finish`].
#[derive(Debug)]
pub struct Exchange {
    stop: Arc<AtomicBool>,
    /// Echoes received and connections failed so far, over all workers.
    live: Arc<(AtomicUsize, AtomicUsize)>,
    count: usize,
    workers: Vec<JoinHandle<Worked>>,
}

/// One worker's failures, echo counts and connections.
type Worked = (Vec<(usize, String)>, Vec<usize>, Vec<(usize, Conn)>);

impl Exchange {
    /// Starts `conns` in 4 worker threads, each line every ~50 ms per
    /// connection.
    pub fn start(conns: Vec<Conn>) -> Exchange {
        let stop = Arc::new(AtomicBool::new(false));
        let live = Arc::new((AtomicUsize::new(0), AtomicUsize::new(0)));
        let count = conns.len();
        let mut groups: Vec<Vec<(usize, Conn)>> = (0..4).map(|_| Vec::new()).collect();
        for (i, c) in conns.into_iter().enumerate() {
            groups[i % 4].push((i, c));
        }
        let workers = groups
            .into_iter()
            .map(|mut group| {
                let (stop, live) = (stop.clone(), live.clone());
                std::thread::spawn(move || {
                    let mut failures = Vec::new();
                    let mut echoes = vec![0usize; group.len()];
                    let mut round = 0;
                    while !stop.load(Ordering::Relaxed) {
                        let round_start = std::time::Instant::now();
                        for (k, (i, c)) in group.iter_mut().enumerate() {
                            if failures.iter().any(|(f, _)| f == i) {
                                continue;
                            }
                            match c.ping(&format!("conn {i} round {round}")) {
                                Ok(()) => {
                                    echoes[k] += 1;
                                    live.0.fetch_add(1, Ordering::Relaxed);
                                }
                                Err(e) => {
                                    failures.push((*i, format!("{}: {e}", c.backend)));
                                    live.1.fetch_add(1, Ordering::Relaxed);
                                }
                            }
                        }
                        round += 1;
                        let spent = round_start.elapsed();
                        if spent < Duration::from_millis(50) {
                            std::thread::sleep(Duration::from_millis(50) - spent);
                        }
                    }
                    (failures, echoes, group)
                })
            })
            .collect();
        Exchange {
            stop,
            live,
            count,
            workers,
        }
    }

    /// How many connections, echoes received so far, and connections
    /// failed so far.
    pub fn progress(&self) -> (usize, usize, usize) {
        (
            self.count,
            self.live.0.load(Ordering::Relaxed),
            self.live.1.load(Ordering::Relaxed),
        )
    }

    /// Stops the exchange (each worker ends its round) and tells what it saw.
    pub fn finish(self) -> Exchanged {
        self.stop.store(true, Ordering::Relaxed);
        let mut failures = Vec::new();
        let mut fewest = usize::MAX;
        let mut back: Vec<(usize, Conn)> = Vec::with_capacity(self.count);
        for w in self.workers {
            match w.join() {
                Ok((f, e, g)) => {
                    failures.extend(f);
                    fewest = fewest.min(e.into_iter().min().unwrap_or(0));
                    back.extend(g);
                }
                Err(_) => failures.push((usize::MAX, "a worker thread panicked".into())),
            }
        }
        back.sort_by_key(|(i, _)| *i);
        failures.sort();
        Exchanged {
            failures,
            fewest,
            conns: back.into_iter().map(|(_, c)| c).collect(),
        }
    }
}
