//! `director-xdp run` smoke test, in two network namespaces joined by a
//! veth pair: the daemon attaches to its end, survives a SIGHUP with a
//! broken config (keeping its tables), takes the interface's MTU as the
//! path MTU (read again at a reload), and on SIGTERM detaches and exits 0.
//! Needs root; the namespaces and the daemon are removed on every exit path,
//! panics included, and the root namespace's interfaces are never touched.

use std::io::{BufRead as _, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How long the daemon may take to load, build its tables and attach: a
/// debug build on a shared two-core machine builds 65,536-row tables.
const START_TIMEOUT: Duration = Duration::from_secs(120);
const STEP_TIMEOUT: Duration = Duration::from_secs(30);

/// Runs a command, failing the test with its stderr if it fails.
fn run(cmd: &str, args: &[&str]) -> String {
    let out = Command::new(cmd)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("running {cmd} {}: {e}", args.join(" ")));
    assert!(
        out.status.success(),
        "{cmd} {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr).trim()
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A network namespace deleted on drop (with its interfaces, which also
/// detaches any XDP program left on them).
struct Netns(String);

impl Netns {
    fn new(suffix: &str) -> Netns {
        let name = format!("glbt-run-{}-{suffix}", std::process::id());
        run("ip", &["netns", "add", &name]);
        let ns = Netns(name);
        ns.ip(&["link", "set", "lo", "up"]);
        ns
    }

    /// `ip -n <ns> args...`.
    fn ip(&self, args: &[&str]) -> String {
        let mut all = vec!["-n", self.0.as_str()];
        all.extend_from_slice(args);
        run("ip", &all)
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "delete", &self.0])
            .output();
    }
}

/// A directory removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> TempDir {
        let path = std::env::temp_dir().join(format!("glbt-run-{}", std::process::id()));
        std::fs::create_dir_all(&path).expect("creating a temp dir");
        TempDir(path)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The daemon, killed on drop if it is still running, with its stderr
/// collected line by line.
struct Daemon {
    child: Child,
    lines: Receiver<String>,
    log: Arc<Mutex<Vec<String>>>,
}

impl Daemon {
    fn start(ns: &Netns, config: &Path) -> Daemon {
        let mut child = Command::new("ip")
            .args(["netns", "exec", &ns.0])
            .arg(env!("CARGO_BIN_EXE_director-xdp"))
            .arg("run")
            .arg("--config")
            .arg(config)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("starting director-xdp run");
        let stderr = child.stderr.take().expect("piped stderr");
        let (tx, lines) = mpsc::channel();
        let log = Arc::new(Mutex::new(Vec::new()));
        let keep = Arc::clone(&log);
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                keep.lock().expect("log lock").push(line.clone());
                let _ = tx.send(line);
            }
        });
        Daemon { child, lines, log }
    }

    fn pid(&self) -> i32 {
        i32::try_from(self.child.id()).expect("pid fits in pid_t")
    }

    fn signal(&self, signal: i32) {
        // SAFETY: kill(2) on our own child's pid.
        let rc = unsafe { libc::kill(self.pid(), signal) };
        assert_eq!(rc, 0, "kill({}, {signal})", self.pid());
    }

    /// Waits for a log line containing `needle`; fails with the whole log.
    fn wait_for(&mut self, needle: &str, timeout: Duration) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) if line.contains(needle) => return line,
                Ok(_) => {}
                Err(RecvTimeoutError::Timeout) => {
                    panic!(
                        "no log line with {needle:?} within {timeout:?}:\n{}",
                        self.log()
                    )
                }
                Err(RecvTimeoutError::Disconnected) => panic!(
                    "the daemon exited ({:?}) before logging {needle:?}:\n{}",
                    self.child.try_wait(),
                    self.log()
                ),
            }
        }
    }

    fn log(&self) -> String {
        self.log.lock().expect("log lock").join("\n")
    }

    fn running(&mut self) -> bool {
        self.child.try_wait().expect("polling the daemon").is_none()
    }

    fn wait_exit(&mut self, timeout: Duration) -> std::process::ExitStatus {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().expect("polling the daemon") {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "the daemon did not exit within {timeout:?}:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if self.running() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Whether an XDP program is attached to `dev`, per `ip -d link show`.
fn xdp_attached(ns: &Netns, dev: &str) -> bool {
    ns.ip(&["-d", "link", "show", "dev", dev])
        .contains("prog/xdp")
}

fn config_json(interface: &str) -> String {
    format!(
        r#"{{
  "tables": [
    {{
      "name": "web",
      "hash_key": "0a4d8c2f7b1e93564fd0b5c2e1a87f36",
      "seed": "49a3d861d661ae5ab06ed9326871a2f5",
      "binds": [ {{ "ip": "203.0.113.10", "proto": "tcp", "port": 80 }} ],
      "backends": [
        {{ "ip": "198.51.100.2", "state": "active", "healthy": true }},
        {{ "ip": "198.51.100.3", "state": "active", "healthy": true }}
      ]
    }}
  ],
  "director": {{
    "interface": "{interface}",
    "source_v4": "198.51.100.1",
    "gateway_mac": "02:00:5e:00:53:01"
  }}
}}"#
    )
}

#[test]
fn run_attaches_keeps_tables_on_a_broken_reload_and_detaches_on_sigterm() {
    // Declared before the daemon, so dropped after it: the daemon dies
    // first, then its namespace goes.
    let a = Netns::new("a");
    let b = Netns::new("b");
    // Both ends are created inside the namespaces, never in the root one.
    a.ip(&[
        "link", "add", "va", "type", "veth", "peer", "name", "vb", "netns", &b.0,
    ]);
    a.ip(&["addr", "add", "198.51.100.1/24", "dev", "va"]);
    b.ip(&["addr", "add", "198.51.100.2/24", "dev", "vb"]);
    a.ip(&["link", "set", "va", "up"]);
    b.ip(&["link", "set", "vb", "up"]);
    assert!(
        !xdp_attached(&a, "va"),
        "nothing attached before the daemon"
    );

    let dir = TempDir::new();
    let config = dir.0.join("director.json");
    std::fs::write(&config, config_json("va")).expect("writing the config");

    let mut daemon = Daemon::start(&a, &config);
    // `ip netns exec` execs the command, so the child is the daemon itself
    // and the signals below reach it.
    daemon.wait_for("attached to va", START_TIMEOUT);
    let comm = std::fs::read_to_string(format!("/proc/{}/comm", daemon.pid()))
        .expect("reading the daemon's command name");
    assert_eq!(comm.trim(), "director-xdp");
    assert!(
        xdp_attached(&a, "va"),
        "ip -d link shows the program:\n{}",
        daemon.log()
    );
    // The backend on the link answers ARP; the daemon picks its MAC up.
    daemon.wait_for("next hop resolved", STEP_TIMEOUT);

    std::fs::write(&config, "{ \"tables\": [ oops").expect("breaking the config");
    daemon.signal(libc::SIGHUP);
    let refused = daemon.wait_for("config refused", STEP_TIMEOUT);
    assert!(refused.contains("keeping the running tables"), "{refused}");
    assert!(
        refused.contains("not valid JSON"),
        "the reason is logged: {refused}"
    );
    std::thread::sleep(Duration::from_millis(500));
    assert!(
        daemon.running(),
        "a refused reload does not stop the daemon"
    );
    assert!(
        xdp_attached(&a, "va"),
        "still attached after the refused reload"
    );
    let applied = daemon.log().matches("applied: generation").count();
    assert_eq!(
        applied,
        1,
        "only the start-up config was applied:\n{}",
        daemon.log()
    );

    // The path MTU toward the backends is the interface's (no
    // director.mtu), read again at each reload.
    assert!(
        daemon.log().contains("path MTU 1500 (interface va)"),
        "{}",
        daemon.log()
    );
    a.ip(&["link", "set", "va", "mtu", "2000"]);
    std::fs::write(&config, config_json("va")).expect("restoring the config");
    daemon.signal(libc::SIGHUP);
    let applied = daemon.wait_for("applied: generation 2", STEP_TIMEOUT);
    assert!(
        applied.contains("path MTU 2000 (interface va)"),
        "{applied}"
    );

    daemon.signal(libc::SIGTERM);
    let status = daemon.wait_exit(STEP_TIMEOUT);
    assert_eq!(
        status.code(),
        Some(0),
        "clean exit on SIGTERM:\n{}",
        daemon.log()
    );
    assert!(
        daemon.log().contains("detached from va"),
        "{}",
        daemon.log()
    );
    assert!(!xdp_attached(&a, "va"), "the program is detached");
}
