//! VIP announcements through BIRD (docs/operations.md, "A fleet").
//!
//! The director does not speak BGP itself: the host's BIRD does, with the
//! sessions, BFD and timers its operator configures. The daemon tells BIRD
//! which VIPs to announce by writing a config include
//! (`director.bird_include`) that holds two static protocols,
//! `glb_vips4` and `glb_vips6`, with one route per VIP to announce, and
//! then asking BIRD to read its config again over its control socket
//! (`director.bird_socket`, the `configure` command, as `birdc configure`
//! sends it). The operator's BGP protocols export those two; a restarted
//! BIRD reads the include as the daemon last left it.
//!
//! A VIP is announced while the program is attached, the director is not
//! drained or stopping, and a table of that address has a backend that
//! takes new flows ([`wanted`]). The writes and BIRD's answers happen in a
//! task of their own ([`Announcer`]), off the event loop: a BIRD that does
//! not answer delays no API call. A change BIRD refuses, or a BIRD that is
//! not there, is retried with backoff and reported (`failing`) meanwhile.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use proto::api::{Bgp, BgpState, Withheld};
use proto::config::Config;
use tokio::io::{AsyncBufReadExt as _, AsyncWriteExt as _, BufReader};
use tokio::net::UnixStream;
use tokio::sync::watch;
use tracing::{info, warn};

/// A prefix to announce: address and length, ordered.
pub(crate) type Prefix = (IpAddr, u8);

/// How long one exchange with BIRD may take.
const BIRD_TIMEOUT: Duration = Duration::from_secs(10);
/// Retries of a failed change: first after this, doubling up to [`MAX_RETRY`].
const FIRST_RETRY: Duration = Duration::from_millis(500);
const MAX_RETRY: Duration = Duration::from_secs(30);
/// How often an idle announcer asks BIRD whether it is there, so that a
/// BIRD that stopped is reported though nothing changed.
pub(crate) const LIVENESS: Duration = Duration::from_secs(5);

/// Why a VIP is not announced, in the API's words.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Hold {
    /// The director is drained.
    Drained,
    /// The program is not attached: nothing would forward.
    Detached,
    /// The daemon is stopping.
    Stopping,
}

impl Hold {
    fn as_str(self) -> &'static str {
        match self {
            Hold::Drained => "drained",
            Hold::Detached => "detached",
            Hold::Stopping => "stopping",
        }
    }
}

/// The VIPs to announce, and those withheld with why.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Want {
    pub announce: BTreeSet<Prefix>,
    pub withheld: BTreeMap<Prefix, &'static str>,
}

/// What the director should announce with `config` live: every bind's
/// prefix whose address has a table with a backend that takes new flows,
/// unless `hold` withholds them all.
pub(crate) fn wanted(config: &Config, hold: Option<Hold>) -> Want {
    let mut servable: BTreeMap<Prefix, bool> = BTreeMap::new();
    for t in &config.tables {
        let serves = t.backends.iter().any(|b| b.backend.takes_new_flows());
        for b in &t.binds {
            *servable.entry((b.prefix.addr, b.prefix.len)).or_default() |= serves;
        }
    }
    let mut want = Want::default();
    for (prefix, serves) in servable {
        match (hold, serves) {
            (Some(h), _) => {
                want.withheld.insert(prefix, h.as_str());
            }
            (None, false) => {
                want.withheld.insert(prefix, "no_backend");
            }
            (None, true) => {
                want.announce.insert(prefix);
            }
        }
    }
    want
}

fn show(p: Prefix) -> String {
    format!("{}/{}", p.0, p.1)
}

/// The include's text for `announce`.
pub(crate) fn include_text(announce: &BTreeSet<Prefix>) -> String {
    let mut v4 = String::new();
    let mut v6 = String::new();
    for &p in announce {
        let out = if p.0.is_ipv4() { &mut v4 } else { &mut v6 };
        out.push_str(&format!("  route {} blackhole;\n", show(p)));
    }
    format!(
        "# Written by director-xdp run (director.bird_include): the VIPs this\n\
         # director announces now. Rewritten at every change: do not edit.\n\
         protocol static glb_vips4 {{\n  ipv4;\n{v4}}}\n\
         protocol static glb_vips6 {{\n  ipv6;\n{v6}}}\n"
    )
}

/// What went wrong talking to BIRD.
#[derive(Debug, thiserror::Error)]
pub(crate) enum BirdError {
    #[error("writing {path}: {message}")]
    Write { path: PathBuf, message: String },
    #[error("BIRD's control socket {path}: {source}")]
    Socket {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("BIRD's control socket {path} did not answer within {}s", BIRD_TIMEOUT.as_secs())]
    Timeout { path: PathBuf },
    #[error("BIRD refused its config: {0}")]
    Refused(String),
}

/// Sends `command` over BIRD's control socket; BIRD's last line on
/// success (a reply code below 1000 is not an error, as birdc reads it).
pub(crate) async fn bird_command(socket: &Path, command: &str) -> Result<String, BirdError> {
    let io = |source| BirdError::Socket {
        path: socket.to_path_buf(),
        source,
    };
    let exchange = async {
        let stream = UnixStream::connect(socket).await.map_err(io)?;
        let (read, mut write) = stream.into_split();
        let mut lines = BufReader::new(read).lines();
        // The greeting: "0001 BIRD 2.0.12 ready."
        lines.next_line().await.map_err(io)?;
        write
            .write_all(format!("{command}\n").as_bytes())
            .await
            .map_err(io)?;
        let mut text = Vec::new();
        loop {
            let Some(line) = lines.next_line().await.map_err(io)? else {
                return Err(io(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    "BIRD closed the connection before its answer ended",
                )));
            };
            // "CODE-text" continues, " text" continues the last code,
            // "CODE text" ends the answer.
            let code = line
                .get(..4)
                .filter(|c| c.bytes().all(|b| b.is_ascii_digit()))
                .and_then(|c| c.parse::<u32>().ok());
            let rest = line.get(5..).unwrap_or_default().trim().to_string();
            match (code, line.as_bytes().get(4)) {
                (Some(code), Some(b' ') | None) => {
                    text.push(rest);
                    let all = text.join("; ");
                    return if code < 1000 {
                        Ok(all)
                    } else {
                        Err(BirdError::Refused(all))
                    };
                }
                (Some(_), _) => text.push(rest),
                (None, _) => text.push(line.trim().to_string()),
            }
        }
    };
    tokio::time::timeout(BIRD_TIMEOUT, exchange)
        .await
        .map_err(|_| BirdError::Timeout {
            path: socket.to_path_buf(),
        })?
}

/// Writes the include for `announce` and has BIRD read its config.
async fn announce(
    socket: &Path,
    include: &Path,
    announce: &BTreeSet<Prefix>,
) -> Result<(), BirdError> {
    let text = include_text(announce);
    let path = include.to_path_buf();
    tokio::task::spawn_blocking(move || {
        director_ctl::files::write_atomically(&path, text.as_bytes()).map_err(|e| {
            BirdError::Write {
                path: path.clone(),
                message: format!("{e:#}"),
            }
        })
    })
    .await
    .map_err(|e| BirdError::Write {
        path: include.to_path_buf(),
        message: e.to_string(),
    })??;
    bird_command(socket, "configure").await.map(drop)
}

/// At a start that adopts no pinned program, nothing forwards yet: what an
/// earlier run left in the include (a crash followed by an upgrade that
/// changed the maps, a reboot with the include on a disk) must not stay
/// announced until this run is attached. Empties the include if it
/// announces anything, and has BIRD read it (a BIRD that is not there
/// reads it when it starts). Whether anything was withdrawn.
pub(crate) async fn withdraw_left_over(socket: &Path, include: &Path) -> Result<bool, BirdError> {
    let left = std::fs::read_to_string(include).unwrap_or_default();
    if !left.lines().any(|l| l.trim_start().starts_with("route ")) {
        return Ok(false);
    }
    announce(socket, include, &BTreeSet::new())
        .await
        .map(|()| true)
}

/// Whether `path`'s directory is on a file system that a reboot empties
/// (tmpfs or ramfs), as the include should be: BIRD reads it at boot,
/// before any director runs. `None` when that cannot be told.
pub(crate) fn include_is_volatile(path: &Path) -> Option<bool> {
    const TMPFS_MAGIC: i64 = 0x0102_1994;
    const RAMFS_MAGIC: i64 = 0x8584_58f6;
    let dir = path.parent()?;
    let c = std::ffi::CString::new(dir.as_os_str().as_encoded_bytes()).ok()?;
    let mut st = std::mem::MaybeUninit::<libc::statfs>::uninit();
    // SAFETY: `c` is a NUL-terminated path and `st` is written by the
    // kernel on success only, and read only then.
    let rc = unsafe { libc::statfs(c.as_ptr(), st.as_mut_ptr()) };
    if rc != 0 {
        return None;
    }
    // SAFETY: statfs succeeded, so it filled `st`.
    #[allow(clippy::useless_conversion)] // f_type's width differs by target
    let kind = i64::from(unsafe { st.assume_init() }.f_type);
    Some(kind == TMPFS_MAGIC || kind == RAMFS_MAGIC)
}

/// What BIRD took last.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Taken {
    /// The [`Want`] sequence number it answers.
    pub seq: u64,
    /// The prefixes in the include BIRD last read.
    pub announced: BTreeSet<Prefix>,
    /// Why the last change was not taken.
    pub error: Option<String>,
}

/// Waits for the next change, asking BIRD every `liveness` meanwhile
/// whether it is there: a BIRD that does not answer is reported (the
/// routers have dropped this director's routes with its sessions), and
/// cleared once it answers again (a BIRD that starts reads the include as
/// the daemon last wrote it). False when the daemon is gone.
async fn idle(
    rx: &mut watch::Receiver<(u64, BTreeSet<Prefix>)>,
    socket: &Path,
    taken: &watch::Sender<Taken>,
    liveness: Duration,
) -> bool {
    loop {
        tokio::select! {
            r = rx.changed() => return r.is_ok(),
            () = tokio::time::sleep(liveness) => {}
        }
        let answer = bird_command(socket, "show status").await;
        taken.send_if_modified(|t| match (&answer, &t.error) {
            (Err(e), None) => {
                let e = e.to_string();
                warn!("BIRD does not answer: {e}; the routers no longer hear this director's VIPs");
                t.error = Some(e);
                true
            }
            (Ok(_), Some(_)) => {
                info!("BIRD answers again: {}", describe(&t.announced));
                t.error = None;
                true
            }
            _ => false,
        });
    }
}

/// The daemon's handle on the announcing task.
pub(crate) struct Announcer {
    want: Want,
    seq: u64,
    tx: watch::Sender<(u64, BTreeSet<Prefix>)>,
    taken: watch::Receiver<Taken>,
}

impl Announcer {
    /// Starts the task, announcing nothing until [`Announcer::set`]; once
    /// BIRD has taken a change, it is asked every `liveness` whether it is
    /// still there (`show status`).
    pub(crate) fn spawn(socket: PathBuf, include: PathBuf, liveness: Duration) -> Announcer {
        let (tx, mut rx) = watch::channel((0u64, BTreeSet::new()));
        let (taken_tx, taken) = watch::channel(Taken::default());
        tokio::spawn(async move {
            // Nothing is written before the daemon says what it wants: a
            // restarted daemon leaves the include as the last one left it
            // until it is attached.
            if rx.changed().await.is_err() {
                return;
            }
            let mut retry = FIRST_RETRY;
            loop {
                let (seq, want) = rx.borrow_and_update().clone();
                let result = announce(&socket, &include, &want).await;
                let failed = result.is_err();
                taken_tx.send_modify(|t| {
                    t.seq = seq;
                    match result {
                        Ok(()) => {
                            if t.error.is_some() || t.announced != want {
                                info!("BIRD took the announcements: {}", describe(&want));
                            }
                            t.announced = want;
                            t.error = None;
                        }
                        Err(e) => {
                            let e = e.to_string();
                            if t.error.as_ref() != Some(&e) {
                                warn!("announcing through BIRD: {e} (retrying)");
                            }
                            t.error = Some(e);
                        }
                    }
                });
                if failed {
                    tokio::select! {
                        r = rx.changed() => if r.is_err() { break },
                        () = tokio::time::sleep(retry) => {}
                    }
                    retry = (retry * 2).min(MAX_RETRY);
                } else {
                    retry = FIRST_RETRY;
                    if !idle(&mut rx, &socket, &taken_tx, liveness).await {
                        break;
                    }
                }
            }
        });
        Announcer {
            want: Want::default(),
            seq: 0,
            tx,
            taken,
        }
    }

    /// Announces `want` from now on (nothing happens when it is what is
    /// asked already).
    pub(crate) fn set(&mut self, want: Want) {
        if want.announce != self.want.announce || self.seq == 0 {
            self.seq += 1;
            let _ = self.tx.send((self.seq, want.announce.clone()));
        }
        self.want = want;
    }

    /// Waits until BIRD has taken (or refused) the last [`Announcer::set`],
    /// at most `timeout`; whether it took it.
    pub(crate) async fn settled(&mut self, timeout: Duration) -> bool {
        let seq = self.seq;
        let done = tokio::time::timeout(timeout, self.taken.wait_for(|t| t.seq >= seq)).await;
        matches!(done, Ok(Ok(t)) if t.error.is_none())
    }

    /// The API's view.
    pub(crate) fn status(&self) -> Bgp {
        let taken = self.taken.borrow();
        let state = if taken.error.is_some() {
            BgpState::Failing
        } else if taken.announced.is_empty() {
            BgpState::Withdrawn
        } else {
            BgpState::Announced
        };
        Bgp {
            state,
            announced: taken.announced.iter().map(|&p| show(p)).collect(),
            withheld: self
                .want
                .withheld
                .iter()
                .map(|(&p, why)| Withheld {
                    prefix: show(p),
                    reason: (*why).to_string(),
                })
                .collect(),
            error: taken.error.clone(),
        }
    }
}

fn describe(announce: &BTreeSet<Prefix>) -> String {
    if announce.is_empty() {
        "none (every VIP withdrawn)".to_string()
    } else {
        announce
            .iter()
            .map(|&p| show(p))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// `off`, for a director without BGP.
pub(crate) fn off() -> Bgp {
    Bgp {
        state: BgpState::Off,
        announced: Vec::new(),
        withheld: Vec::new(),
        error: None,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // a failure is the test failing

    use super::*;

    fn config(backends: &[(&str, &str, bool)]) -> Config {
        let b: Vec<String> = backends
            .iter()
            .map(|(ip, state, healthy)| {
                format!(r#"{{"ip":"{ip}","state":"{state}","healthy":{healthy}}}"#)
            })
            .collect();
        Config::from_json(&format!(
            r#"{{"tables":[
              {{"name":"web","hash_key":"0a4d8c2f7b1e93564fd0b5c2e1a87f36","seed":"49a3d861d661ae5ab06ed9326871a2f5",
                "binds":[{{"ip":"203.0.113.10","proto":"tcp","port":80}},{{"ip":"2001:db8:10::/120","proto":"tcp","port":80}}],
                "backends":[{b}]}},
              {{"name":"drained","hash_key":"0a4d8c2f7b1e93564fd0b5c2e1a87f36","seed":"49a3d861d661ae5ab06ed9326871a2f5",
                "binds":[{{"ip":"203.0.113.10","proto":"tcp","port":443}},{{"ip":"203.0.113.11","proto":"udp","port":53}}],
                "backends":[{{"ip":"198.51.100.20","state":"draining"}}]}}]}}"#,
            b = b.join(",")
        ))
        .unwrap()
    }

    fn p(s: &str, len: u8) -> Prefix {
        (s.parse().unwrap(), len)
    }

    #[test]
    fn a_vip_is_announced_when_one_of_its_tables_can_take_new_flows() {
        let c = config(&[
            ("198.51.100.11", "active", true),
            ("198.51.100.12", "draining", true),
        ]);
        let w = wanted(&c, None);
        // 203.0.113.10 has a backend through "web", though "drained" has none.
        assert_eq!(
            w.announce,
            [p("203.0.113.10", 32), p("2001:db8:10::", 120)].into()
        );
        assert_eq!(w.withheld, [(p("203.0.113.11", 32), "no_backend")].into());
        for (state, healthy) in [("draining", true), ("active", false), ("filling", false)] {
            let c = config(&[("198.51.100.11", state, healthy)]);
            assert!(wanted(&c, None).announce.is_empty(), "{state} {healthy}");
        }
        let w = wanted(
            &config(&[("198.51.100.11", "filling", true)]),
            Some(Hold::Drained),
        );
        assert!(w.announce.is_empty());
        assert_eq!(w.withheld.len(), 3);
        assert!(w.withheld.values().all(|r| *r == "drained"));
    }

    #[test]
    fn the_include_holds_one_static_protocol_per_family() {
        let text = include_text(&[p("203.0.113.10", 32), p("2001:db8:10::10", 128)].into());
        assert!(text.ends_with(
            "protocol static glb_vips4 {\n  ipv4;\n  route 203.0.113.10/32 blackhole;\n}\n\
             protocol static glb_vips6 {\n  ipv6;\n  route 2001:db8:10::10/128 blackhole;\n}\n"
        ));
        assert!(include_text(&BTreeSet::new()).ends_with(
            "protocol static glb_vips4 {\n  ipv4;\n}\nprotocol static glb_vips6 {\n  ipv6;\n}\n"
        ));
    }

    /// A fake BIRD on a socket: answers each connection's command with
    /// `answer` lines.
    async fn fake_bird(path: &Path, answer: &'static str) -> tokio::task::JoinHandle<Vec<String>> {
        let listener = tokio::net::UnixListener::bind(path).unwrap();
        tokio::spawn(async move {
            let mut seen = Vec::new();
            let (s, _) = listener.accept().await.unwrap();
            let (r, mut w) = s.into_split();
            w.write_all(b"0001 BIRD 2.0.12 ready.\n").await.unwrap();
            let mut lines = BufReader::new(r).lines();
            seen.push(lines.next_line().await.unwrap().unwrap());
            w.write_all(answer.as_bytes()).await.unwrap();
            seen
        })
    }

    #[tokio::test]
    async fn a_fresh_start_withdraws_what_an_earlier_run_left_announced() {
        let dir = std::env::temp_dir().join(format!("glb-bgp-left-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let include = dir.join("vips.conf");
        let sock = dir.join("bird.ctl");
        // Nothing announced: nothing to do, BIRD is not asked.
        std::fs::write(&include, include_text(&BTreeSet::new())).unwrap();
        assert!(!withdraw_left_over(&sock, &include).await.unwrap());
        // VIPs left over: emptied, and BIRD told.
        std::fs::write(&include, include_text(&[p("203.0.113.10", 32)].into())).unwrap();
        let bird = fake_bird(&sock, "0003 Reconfigured\n").await;
        assert!(withdraw_left_over(&sock, &include).await.unwrap());
        assert_eq!(bird.await.unwrap(), ["configure"]);
        assert_eq!(
            std::fs::read_to_string(&include).unwrap(),
            include_text(&BTreeSet::new())
        );
        // The file is emptied even when BIRD is not there to read it.
        std::fs::write(&include, include_text(&[p("203.0.113.10", 32)].into())).unwrap();
        assert!(
            withdraw_left_over(&dir.join("none.ctl"), &include)
                .await
                .is_err()
        );
        assert_eq!(
            std::fs::read_to_string(&include).unwrap(),
            include_text(&BTreeSet::new())
        );
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(include_is_volatile(Path::new("/proc/x")), Some(false));
        assert_eq!(include_is_volatile(Path::new("/no/such/dir/x")), None);
    }

    /// A fake BIRD that answers every command on every connection with
    /// `0013 Daemon is up and running`, until dropped.
    fn fake_bird_up(path: &Path) -> tokio::task::JoinHandle<()> {
        let _ = std::fs::remove_file(path);
        let listener = tokio::net::UnixListener::bind(path).unwrap();
        tokio::spawn(async move {
            while let Ok((s, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let (r, mut w) = s.into_split();
                    let _ = w.write_all(b"0001 BIRD 2.0.12 ready.\n").await;
                    let mut lines = BufReader::new(r).lines();
                    while let Ok(Some(_)) = lines.next_line().await {
                        let _ = w.write_all(b"0013 Daemon is up and running\n").await;
                    }
                });
            }
        })
    }

    #[tokio::test]
    async fn a_bird_that_stops_answering_is_reported_and_cleared_when_back() {
        let dir = std::env::temp_dir().join(format!("glb-bgp-live-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let sock = dir.join("bird.ctl");
        let bird = fake_bird_up(&sock);
        let mut a = Announcer::spawn(
            sock.clone(),
            dir.join("vips.conf"),
            Duration::from_millis(50),
        );
        let want = Want {
            announce: [p("203.0.113.10", 32)].into(),
            withheld: BTreeMap::new(),
        };
        a.set(want);
        assert!(a.settled(Duration::from_secs(5)).await);
        assert_eq!(a.status().state, BgpState::Announced);
        // BIRD goes away: reported though nothing changed.
        bird.abort();
        let _ = bird.await;
        std::fs::remove_file(&sock).unwrap();
        let mut taken = a.taken.clone();
        tokio::time::timeout(
            Duration::from_secs(5),
            taken.wait_for(|t| t.error.is_some()),
        )
        .await
        .unwrap()
        .unwrap();
        let st = a.status();
        assert_eq!(st.state, BgpState::Failing);
        assert_eq!(st.announced, ["203.0.113.10/32"]);
        // Back: cleared.
        let _bird = fake_bird_up(&sock);
        tokio::time::timeout(
            Duration::from_secs(5),
            taken.wait_for(|t| t.error.is_none()),
        )
        .await
        .unwrap()
        .unwrap();
        assert_eq!(a.status().state, BgpState::Announced);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[tokio::test]
    async fn birds_answers_are_read_to_their_last_line() {
        let dir = std::env::temp_dir().join(format!("glb-bgp-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let sock = dir.join("ok.ctl");
        let bird = fake_bird(
            &sock,
            "0002-Reading configuration from bird.conf\n0003 Reconfigured\n",
        )
        .await;
        assert_eq!(
            bird_command(&sock, "configure").await.unwrap(),
            "Reading configuration from bird.conf; Reconfigured"
        );
        assert_eq!(bird.await.unwrap(), ["configure"]);
        let sock = dir.join("bad.ctl");
        let _bird = fake_bird(
            &sock,
            "0002-Reading configuration from bird.conf\n8002 /etc/bird/glb.conf:2:8 syntax error\n",
        )
        .await;
        assert_eq!(
            bird_command(&sock, "configure")
                .await
                .unwrap_err()
                .to_string(),
            "BIRD refused its config: Reading configuration from bird.conf; /etc/bird/glb.conf:2:8 syntax error"
        );
        let missing = bird_command(&dir.join("none.ctl"), "configure")
            .await
            .unwrap_err();
        assert!(
            missing.to_string().starts_with("BIRD's control socket /"),
            "{missing}"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
