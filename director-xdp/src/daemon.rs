//! `director-xdp run`: the director daemon.
//!
//! Loads the config and the director program, resolves the backends'
//! next-hop MACs, writes the tables, attaches the program to
//! `director.interface`, then waits for one of:
//!
//! - SIGHUP: re-read the config. A refused config (it does not parse, or
//!   the data plane refuses it) is logged and changes nothing; the running
//!   tables stay as they were. Otherwise each table is written into its idle
//!   slot and flipped, so packets see the old table or the new one.
//! - a route or neighbour change on the interface (netlink notification),
//!   or the poll timer: resolve the next hops again and, when a MAC moved,
//!   rewrite the backends' MACs. The timer is the safety net for lost
//!   notifications and the moment unresolved next hops are probed again.
//! - a call of the HTTP API ([`crate::api`]): answered here, so the config
//!   and the data plane have one owner and calls are serialised. A change
//!   is applied and written over the config file before it is answered.
//! - a change of the interface itself (netlink notification: deleted,
//!   created again, renamed, up or down), or the poll timer: check that the
//!   program is still attached to `director.interface`, and attach it again
//!   when an interface of that name runs without it ([`watch`]). While it
//!   is not attached, `/healthz` answers 503 and API changes are refused.
//! - SIGINT or SIGTERM: withdraw the VIPs (with BGP, [`bgp`]) and keep
//!   forwarding for `director.withdraw_delay_ms` while the routers move
//!   away, then detach the program, remove the pins and exit 0; with
//!   `--keep-on-exit`, keep announcing and leave both for a restart to
//!   adopt.
//!
//! The maps and the XDP link are pinned in `director.pin_dir`
//! ([`crate::pins`]): a daemon started while they are pinned (after a
//! crash, a SIGKILL or `--keep-on-exit`) adopts them instead of attaching
//! anew, so the interface never goes without a director.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context as _, anyhow};
use aya::programs::XdpMode;
use aya::programs::links::FdLink;
use aya::programs::xdp::{XdpLink, XdpLinkId};
use director_xdp::dataplane::{ApplyReport, Dataplane, DataplaneError, PathMtu};
use proto::config::{ApiLimits, Config};
use proto::table::{Chain, Holders, Release, RowCount, row_counts};
use serde_json::Value;
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::{Notify, mpsc};
use tracing::{debug, error, info, warn};

use crate::api::{self, Call};
use crate::change::{self, Change, HealthVerdict, Kind, Refusal};
use crate::pins;
use crate::server;
use crate::{Failure, load_config_text};
use director_xdp::neigh::{self, Notice, Resolver, Snapshot, Unresolved, Watcher};

mod bgp;
mod health;
mod metrics;
mod watch;

use health::Health;

/// How often next hops are resolved without a notification, and how often
/// at most an unresolved next hop is probed.
const POLL_INTERVAL: Duration = Duration::from_secs(5);
/// Wait after a netlink notification before resolving, so that a burst of
/// changes (a flapping link, a neighbour table flush) costs one resolution.
const SETTLE: Duration = Duration::from_millis(200);

/// Runs the daemon until SIGINT or SIGTERM.
pub fn run(config_path: &Path, keep_on_exit: bool) -> Result<(), Failure> {
    // The event loop runs on this thread (block_on) and makes blocking
    // calls (netlink lookups, map writes, file writes); the HTTP server's
    // accept loop and connections run on the runtime's own worker, so that
    // they never wait for those: timeouts and caps hold while a change is
    // written.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .context("starting the async runtime")
        .map_err(Failure::runtime)?;
    runtime.block_on(run_async(config_path, keep_on_exit))
}

/// Removes fresh pins if the start fails before the link is pinned (pins
/// being adopted stay: the old program still serves through them).
struct PinGuard {
    dir: PathBuf,
    armed: bool,
}

impl Drop for PinGuard {
    fn drop(&mut self) {
        if self.armed
            && let Err(e) = pins::remove(&self.dir)
        {
            warn!("removing the pins in {}: {e:#}", self.dir.display());
        }
    }
}

async fn run_async(config_path: &Path, keep_on_exit: bool) -> Result<(), Failure> {
    let (mut daemon, mut inputs) = start(config_path).await?;
    let signal_name = event_loop(&mut daemon, &mut inputs).await;
    daemon.withdraw_before_stop(signal_name, keep_on_exit).await;
    shut_down(daemon, signal_name, keep_on_exit);
    Ok(())
}

/// What the event loop waits on besides its timers.
struct Inputs {
    hup: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
    term: tokio::signal::unix::Signal,
    /// The API's calls.
    calls: mpsc::Receiver<Call>,
    /// Route or neighbour changes.
    changed: Arc<Notify>,
    /// Link changes.
    link_changed: Arc<Notify>,
}

/// Start-up: the config and the last verdicts read, the program loaded (or
/// the pinned one adopted), the tables written, the API listening and the
/// program attached; a failure leaves nothing behind that was not there.
async fn start(config_path: &Path) -> Result<(Daemon, Inputs), Failure> {
    // Handlers first: a SIGTERM that arrives during start-up waits in the
    // stream and ends the loop as soon as it starts, after a clean attach.
    let hup = signal_stream(SignalKind::hangup())?;
    let int = signal_stream(SignalKind::interrupt())?;
    let term = signal_stream(SignalKind::terminate())?;

    // Before anything is opened: the API's connection cap is sized from it.
    let fd_limit = server::raise_fd_limit();
    let (file_config, on_disk) = load_config_text(config_path).map_err(Failure::usage)?;
    let token = read_token(&file_config).map_err(Failure::usage)?;
    // The last verdicts, laid over the file's: a restarted director starts
    // where it stopped. A state file that does not read stops the start
    // (the pinned data plane, if any, keeps forwarding meanwhile).
    let state_path = health::state_path(config_path, &file_config);
    director_ctl::files::Target::resolve(&state_path)
        .and_then(|t| t.refuse_inputs(&[config_path]))
        .context("director.state_file")
        .map_err(Failure::usage)?;
    if let Some(include) = &file_config.director.bird_include {
        director_ctl::files::Target::resolve(include)
            .and_then(|t| t.refuse_inputs(&[config_path, &state_path]))
            .context("director.bird_include")
            .map_err(Failure::usage)?;
    }
    let mut verdicts = Health::load(&state_path).map_err(Failure::usage)?;
    verdicts.retain_in(&file_config);
    let config = verdicts.overlay(&file_config);
    let interface = config.director.interface.clone().ok_or_else(|| {
        Failure::usage(anyhow!(
            "config {}: director.interface is required to run a director",
            config_path.display()
        ))
    })?;
    let ifindex = interface_index(&interface, "director.interface").map_err(Failure::runtime)?;
    let link_mtu = interface_mtu(&interface).map_err(Failure::runtime)?;

    pins::ensure_bpffs().map_err(Failure::runtime)?;
    let pin_dir = pins::pin_dir(&config, &interface).map_err(Failure::runtime)?;
    let mut found = pins::inspect(&pin_dir, &interface, ifindex).map_err(Failure::runtime)?;
    let mut dataplane = match Dataplane::load_pinned(&pin_dir) {
        Ok((dp, _)) => dp,
        Err(e) if matches!(found, pins::Found::Adopt(_)) => {
            warn!(
                "the pinned maps in {} do not fit this build ({:#}): an upgrade changed the maps; removing the pins and starting fresh: NOT hitless, {interface} has no director until it is attached again",
                pin_dir.display(),
                anyhow::Error::from(e)
            );
            found = pins::Found::Fresh;
            pins::reset(&pin_dir).map_err(Failure::runtime)?;
            Dataplane::load_pinned(&pin_dir)
                .map(|(dp, _)| dp)
                .context("loading the director program (needs root)")
                .map_err(Failure::runtime)?
        }
        Err(e) => {
            let _ = pins::remove(&pin_dir);
            return Err(Failure::runtime(
                anyhow::Error::from(e).context("loading the director program (needs root)"),
            ));
        }
    };
    let adopting = matches!(found, pins::Found::Adopt(_));
    if let (Some(socket), Some(include)) = (
        &file_config.director.bird_socket,
        &file_config.director.bird_include,
    ) {
        if bgp::include_is_volatile(include) == Some(false) {
            warn!(
                "director.bird_include {} is not on tmpfs: after a reboot BIRD announces what it holds before this director runs; keep it under /run (created empty by BIRD's service before BIRD starts)",
                include.display()
            );
        }
        // Nothing forwards until this run attaches: an earlier run's
        // announcements go first. A pinned program that is adopted keeps
        // forwarding, so its announcements stay.
        if !adopting {
            match bgp::withdraw_left_over(socket, include).await {
                Ok(true) => info!(
                    "withdrew the VIPs an earlier run left announced in {}: nothing forwards until this director is attached",
                    include.display()
                ),
                Ok(false) => {}
                Err(e @ bgp::BirdError::Write { .. }) => warn!(
                    "withdrawing the VIPs an earlier run left announced: {e}; they stay announced until this director attaches"
                ),
                Err(e) => warn!(
                    "withdrawing the VIPs an earlier run left announced: {e} (the include is emptied: BIRD reads it when it answers)"
                ),
            }
        }
    }
    let mut guard = PinGuard {
        dir: pin_dir.clone(),
        armed: !adopting,
    };
    if adopting {
        info!(
            "adopting the pinned maps and XDP link in {}: the running director keeps forwarding while this one takes over",
            pin_dir.display()
        );
    }
    let resolver = Resolver::new(ifindex)
        .with_context(|| format!("resolving next hops on {interface}"))
        .map_err(Failure::runtime)?;
    // Subscribed before the first probes, so their answers are seen.
    let changed = Arc::new(Notify::new());
    let link_changed = Arc::new(Notify::new());
    let (hops, link) = (Arc::clone(&changed), Arc::clone(&link_changed));
    let watcher = Watcher::spawn(ifindex, &interface, move |notice| match notice {
        Notice::NextHops => hops.notify_one(),
        Notice::Link => link.notify_one(),
    })
    .context("watching route, neighbour and link changes")
    .map_err(Failure::runtime)?;

    // Bound before the program is attached: a taken port fails the start
    // while nothing has changed yet. Calls wait in the channel until the
    // event loop runs.
    let api_listen = config.director.api_listen;
    let listener = server::listen(api_listen)
        .with_context(|| format!("listening on {api_listen} (director.api_listen)"))
        .map_err(Failure::runtime)?;
    let (call_tx, calls) = mpsc::channel::<Call>(64);
    let router = api::router(call_tx);
    // The connection cap leaves file descriptors for the daemon's own
    // work: no number of clients makes a reload fail with EMFILE.
    let api_budget = server::fd_budget(fd_limit);
    let (api_limits, limits) = tokio::sync::watch::channel(config.director.api_limits);
    let api_counts = server::ApiCounts::default();
    tokio::spawn(server::serve(
        listener,
        router,
        limits,
        api_budget,
        api_counts.clone(),
    ));
    info!(
        "API listening on http://{api_listen}/ ({}; {})",
        match &config.director.api_token_file {
            Some(p) => format!("changes need the bearer token of {}", p.display()),
            None => "read-only: no director.api_token_file".to_string(),
        },
        server::describe(&config.director.api_limits, api_budget)
    );

    // The path MTU toward the backends when director.mtu is not set.
    dataplane.set_link_mtu(&interface, link_mtu);
    warn_if_above_link(&config, &interface, link_mtu);
    let mut daemon = Daemon {
        config_path: config_path.to_path_buf(),
        generation: 1,
        backends: backend_addrs(&config),
        views: Vec::new(),
        config,
        dataplane,
        resolver,
        snapshot: Snapshot::default(),
        probed: HashMap::new(),
        on_disk,
        file_config,
        token,
        health: verdicts,
        state_path,
        last_apply: None,
        watch: watch::Watch::new(interface.clone(), pin_dir.join(pins::LINK), watcher),
        pin_dir: pin_dir.clone(),
        api_limits,
        api_budget,
        api_counts,
        bgp: None,
        withdrawn_at: Some(Instant::now()),
    };
    let snapshot = daemon
        .resolver
        .resolve(&daemon.backends)
        .context("resolving the backends' next hops")
        .map_err(Failure::runtime)?;
    daemon.log_changes(&snapshot);
    let report = daemon
        .dataplane
        .apply(&daemon.config, &|ip| snapshot.mac_of(ip))
        .map_err(|e| apply_failure(e, config_path))?;
    info!(
        "config {} applied: {}",
        config_path.display(),
        summary(1, &report)
    );
    daemon.views = views(&daemon.config, &[]).map_err(Failure::runtime)?;
    daemon.record("start", Ok(()));
    daemon.snapshot = snapshot;
    daemon.probe_unresolved();

    let link_path = pin_dir.join(pins::LINK);
    let program_id = daemon
        .dataplane
        .program()
        .info()
        .map(|i| i.id())
        .context("reading the director program's id")
        .map_err(Failure::runtime)?;
    let (link, pinned) = match found {
        pins::Found::Adopt(fd) => {
            let link = adopt(&mut daemon.dataplane, fd).map_err(Failure::runtime)?;
            info!(
                interface = %interface,
                ifindex,
                "director attached to {interface}: adopted the pinned link {} (program replaced in place, no packet missed)",
                link_path.display()
            );
            (link, true)
        }
        pins::Found::Fresh => {
            let (link, mode) =
                attach(&mut daemon.dataplane, &interface, ifindex).map_err(Failure::runtime)?;
            let (link, pinned) = pin_link(&mut daemon.dataplane, link, &link_path, ifindex, mode)
                .map_err(Failure::runtime)?;
            info!(
                interface = %interface,
                ifindex,
                mode,
                "director attached to {interface} in {mode} mode{}",
                if pinned {
                    format!("; maps and link pinned in {}", pin_dir.display())
                } else {
                    String::new()
                }
            );
            (link, pinned)
        }
    };
    guard.armed = false;
    daemon.watch.attached(
        watch::Attachment {
            link,
            ifindex,
            pinned,
        },
        program_id,
    );
    // Announced once the program forwards, not before.
    let d = &daemon.config.director;
    if let (Some(socket), Some(include)) = (d.bird_socket.clone(), d.bird_include.clone()) {
        info!(
            "announcing the VIPs through BIRD: {} (control socket {}){}",
            include.display(),
            socket.display(),
            if daemon.health.drained {
                "; drained, as the state file says: nothing is announced until undrained"
            } else {
                ""
            }
        );
        daemon.bgp = Some(bgp::Announcer::spawn(socket, include, bgp::LIVENESS));
    }
    daemon.sync_bgp();

    Ok((
        daemon,
        Inputs {
            hup,
            int,
            term,
            calls,
            changed,
            link_changed,
        },
    ))
}

/// The event loop: signals, API calls, notifications and the poll timer,
/// one at a time, until SIGINT or SIGTERM (whose name it returns).
async fn event_loop(daemon: &mut Daemon, inputs: &mut Inputs) -> &'static str {
    let Inputs {
        hup,
        int,
        term,
        calls,
        changed,
        link_changed,
    } = inputs;
    let mut poll = tokio::time::interval(POLL_INTERVAL);
    poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    poll.tick().await; // the first tick is immediate; resolution just ran
    // A notification is acted on once things settled (SETTLE after the
    // first of a burst), without holding up the loop meanwhile: API calls
    // and signals are answered while a settle runs.
    let mut settle_hops: Option<tokio::time::Instant> = None;
    let mut settle_link: Option<tokio::time::Instant> = None;
    let at = |deadline: Option<tokio::time::Instant>| {
        tokio::time::sleep_until(deadline.unwrap_or_else(tokio::time::Instant::now))
    };
    loop {
        tokio::select! {
            _ = hup.recv() => daemon.reload(),
            Some(call) = calls.recv() => {
                let reply = api::answer(daemon, &call);
                let _ = call.reply.send(reply);
            }
            _ = int.recv() => break "SIGINT",
            _ = term.recv() => break "SIGTERM",
            () = changed.notified() => {
                settle_hops.get_or_insert_with(|| tokio::time::Instant::now() + SETTLE);
            }
            () = link_changed.notified() => {
                settle_link.get_or_insert_with(|| tokio::time::Instant::now() + SETTLE);
            }
            () = at(settle_hops), if settle_hops.is_some() => {
                settle_hops = None;
                // Routes go with their interface: look at it first.
                daemon.watch_dataplane();
                daemon.refresh();
            }
            () = at(settle_link), if settle_link.is_some() => {
                settle_link = None;
                daemon.watch_dataplane();
            }
            _ = poll.tick() => {
                daemon.watch_dataplane();
                daemon.refresh();
                daemon.probe_unresolved();
            }
        }
        // Whatever happened may change what is announced.
        daemon.sync_bgp();
    }
}

/// Shut-down: detach (or, with --keep-on-exit, leave attached and pinned)
/// and log the counters.
fn shut_down(mut daemon: Daemon, signal_name: &str, keep_on_exit: bool) {
    let interface = daemon.watch.interface.clone();
    let pin_dir = daemon.pin_dir.clone();
    let attachment = daemon.watch.take();
    let pinned = attachment.as_ref().is_some_and(|a| a.pinned);
    if keep_on_exit && pinned {
        info!(
            "{signal_name}: leaving the director attached to {interface}, pinned in {} (--keep-on-exit)",
            pin_dir.display()
        );
        // Closing the link's descriptor leaves it attached: the pin holds it.
        drop(attachment);
    } else {
        if keep_on_exit {
            if attachment.is_some() {
                warn!("{signal_name}: the link is not pinned, --keep-on-exit cannot keep it");
            } else {
                warn!(
                    "{signal_name}: the director is not attached to {interface}: --keep-on-exit has nothing to keep"
                );
            }
        }
        info!("{signal_name}: detaching from {interface}");
        // The pin first: then dropping the last descriptor detaches.
        if let Err(e) = pins::remove(&pin_dir) {
            warn!("removing the pins in {}: {e:#}", pin_dir.display());
        }
        drop(attachment);
    }
    match daemon.dataplane.stats() {
        Ok(stats) => {
            let counts: Vec<String> = stats
                .outcomes
                .iter()
                .filter(|(_, n)| *n > 0)
                .map(|(stat, n)| format!("{} {n}", stat.name()))
                .collect();
            info!(
                "counters: {}",
                if counts.is_empty() {
                    "all zero".to_string()
                } else {
                    counts.join(", ")
                }
            );
        }
        Err(e) => warn!("reading the final counters: {:#}", anyhow::Error::from(e)),
    }
    if keep_on_exit && pinned {
        info!("director left attached to {interface}; exiting");
    } else {
        info!("director detached from {interface}; exiting");
    }
}

fn signal_stream(kind: SignalKind) -> Result<tokio::signal::unix::Signal, Failure> {
    signal(kind)
        .with_context(|| format!("installing a handler for signal {}", kind.as_raw_value()))
        .map_err(Failure::runtime)
}

/// The running director's state.
pub(crate) struct Daemon {
    config_path: PathBuf,
    /// Configs applied since start, the first included: tells the log
    /// lines of successive reloads apart.
    generation: u64,
    /// The config whose tables are live: the file's, with the health
    /// verdicts laid over it.
    config: Config,
    /// The config as the file holds it, which API changes rewrite.
    file_config: Config,
    /// Addresses of the live config's backends, whose next hops are tracked.
    backends: BTreeSet<IpAddr>,
    dataplane: Dataplane,
    resolver: Resolver,
    /// The next hops as last written to the data plane.
    snapshot: Snapshot,
    /// When each unresolved backend was last probed.
    probed: HashMap<IpAddr, Instant>,
    /// The live tables' rows, row counts and content hashes, in config order.
    views: Vec<TableView>,
    /// The config file as last read or written: an API change is refused
    /// when the file was edited since (the edit would be overwritten).
    on_disk: String,
    /// The API's bearer token (director.api_token_file), read at start and
    /// at each reload.
    token: Option<String>,
    /// The health verdicts, kept in their own file ([`health`]).
    health: Health,
    /// Where they are kept.
    state_path: PathBuf,
    /// What the last apply did: (source, when, error if it failed).
    last_apply: Option<(&'static str, SystemTime, Option<String>)>,
    /// Where the maps and the link are pinned.
    pin_dir: PathBuf,
    /// The program's attachment to the interface ([`watch`]).
    watch: watch::Watch,
    /// The API server's limits (director.api_*), changed by a SIGHUP for
    /// the connections that follow.
    api_limits: tokio::sync::watch::Sender<ApiLimits>,
    /// The connections the file descriptor limit leaves the API.
    api_budget: usize,
    /// The API's open and refused connections, for the metrics.
    api_counts: server::ApiCounts,
    /// The VIP announcements (`director.bird_socket`), if any.
    bgp: Option<bgp::Announcer>,
    /// Since when nothing has been announced.
    withdrawn_at: Option<Instant>,
}

/// What a table's rows are built from: the same inputs give the same rows
/// (seed, hops, backends, and the hash key for the content hash).
type ViewKey = ([u8; 16], u8, Vec<proto::table::Backend>, [u8; 16]);

/// One live table as the API shows it.
struct TableView {
    name: String,
    key: ViewKey,
    rows: Vec<Chain<IpAddr>>,
    /// Rows per backend, as primary and as alternate.
    counts: BTreeMap<IpAddr, RowCount>,
    /// Which members of each chain may hold established flows, as far as
    /// this daemon has seen the table change (the loss report's input).
    holders: Holders,
    hash: String,
}

/// Builds the views of `config`'s tables, reusing those of `old` whose
/// inputs did not change. A table of `old` with the same name carries its
/// flows' holders over to the new rows; a table seen for the first time
/// (at start, or added) gets what its rows alone tell
/// ([`Holders::assumed`]).
fn views(config: &Config, old: &[TableView]) -> anyhow::Result<Vec<TableView>> {
    config
        .tables
        .iter()
        .map(|t| {
            let key = (t.seed, t.hops, t.builder_backends(), t.hash_key);
            let previous = old.iter().find(|v| v.name == t.name);
            if let Some(v) = previous.filter(|v| v.key == key) {
                return Ok(TableView {
                    name: t.name.clone(),
                    key,
                    rows: v.rows.clone(),
                    counts: v.counts.clone(),
                    holders: v.holders.clone(),
                    hash: v.hash.clone(),
                });
            }
            let r = t
                .rendezvous()
                .with_context(|| format!("building table \"{}\"", t.name))?;
            let rows: Vec<Chain<IpAddr>> = r.row_addrs().collect();
            let holders = match previous {
                Some(v) => v.holders.after(&v.rows, &rows),
                None => {
                    let serving: HashSet<IpAddr> = key
                        .2
                        .iter()
                        .filter(|b| b.takes_new_flows())
                        .map(|b| b.addr)
                        .collect();
                    Holders::assumed(&rows, |ip| serving.contains(&ip))
                }
            };
            let counts = row_counts(&rows);
            let hash =
                proto::hex::encode(&proto::table::content_hash(&key.3, rows.iter().copied()));
            Ok(TableView {
                name: t.name.clone(),
                key,
                rows,
                counts,
                holders,
                hash,
            })
        })
        .collect()
}

/// Reads the API token named by the config: the file's first line, which
/// must not be empty.
fn read_token(config: &Config) -> anyhow::Result<Option<String>> {
    let Some(path) = &config.director.api_token_file else {
        return Ok(None);
    };
    let text = std::fs::read_to_string(path).with_context(|| {
        format!(
            "reading the API token {} (director.api_token_file)",
            path.display()
        )
    })?;
    let token = text.lines().next().unwrap_or_default().trim().to_string();
    if token.is_empty() {
        return Err(anyhow!(
            "the API token file {} (director.api_token_file) is empty",
            path.display()
        ));
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        if let Ok(m) = std::fs::metadata(path)
            && m.permissions().mode() & 0o077 != 0
        {
            warn!(
                "the API token file {} is readable by other users than its owner (mode {:o}); chmod 600 it",
                path.display(),
                m.permissions().mode() & 0o777
            );
        }
    }
    Ok(Some(token))
}

/// Why a config could not be applied.
enum ApplyFailure {
    /// Resolving next hops failed; nothing was written.
    Resolve(anyhow::Error),
    /// The data plane refused the config; nothing was written.
    Refused(anyhow::Error),
    /// A map write failed part-way.
    Failed(anyhow::Error),
}

impl ApplyFailure {
    fn message(self) -> String {
        match self {
            ApplyFailure::Resolve(e) => format!("resolving next hops: {e:#}"),
            ApplyFailure::Refused(e) | ApplyFailure::Failed(e) => format!("{e:#}"),
        }
    }
}

impl Daemon {
    /// SIGHUP: apply the config file again, or keep the running one.
    fn reload(&mut self) {
        let path = self.config_path.display().to_string();
        info!("SIGHUP: reloading config {path}");
        let (config, text) = match load_config_text(&self.config_path) {
            Ok(c) => c,
            Err(e) => {
                error!("config refused, keeping the running tables: {e:#}");
                return;
            }
        };
        if config.director.interface != self.config.director.interface {
            error!(
                "config refused, keeping the running tables: config {path}: director.interface changed from {:?} to {:?}; moving the director to another interface needs a restart",
                self.config.director.interface, config.director.interface
            );
            return;
        }
        if config.director.pin_dir != self.config.director.pin_dir {
            error!(
                "config refused, keeping the running tables: config {path}: director.pin_dir changed from {:?} to {:?}; moving the pins needs a restart (stop with SIGTERM, without --keep-on-exit, then start)",
                self.config.director.pin_dir, config.director.pin_dir
            );
            return;
        }
        if config.director.api_listen != self.config.director.api_listen {
            error!(
                "config refused, keeping the running tables: config {path}: director.api_listen changed from {} to {}; moving the API needs a restart",
                self.config.director.api_listen, config.director.api_listen
            );
            return;
        }
        let (old, new) = (&self.config.director, &config.director);
        if (&old.bird_socket, &old.bird_include) != (&new.bird_socket, &new.bird_include) {
            error!(
                "config refused, keeping the running tables: config {path}: director.bird_socket or director.bird_include changed; moving the announcements needs a restart"
            );
            return;
        }
        let token = match read_token(&config) {
            Ok(t) => t,
            Err(e) => {
                error!("config refused, keeping the running tables: {e:#}");
                return;
            }
        };
        // The interface's MTU may have changed (jumbo frames turned on).
        if let Some(interface) = &config.director.interface {
            match interface_mtu(interface) {
                Ok(mtu) => {
                    self.dataplane.set_link_mtu(interface, mtu);
                    warn_if_above_link(&config, interface, mtu);
                }
                Err(e) => warn!("keeping the last MTU read: {e:#}"),
            }
        }
        let file_config = config.clone();
        let config = self.health.overlay(&config);
        match self.apply_config(config) {
            Ok(report) => {
                self.file_config = file_config;
                info!(
                    "config {path} applied: {}",
                    summary(self.generation, &report)
                );
                if let Some(p) = self.watch.observe().problem {
                    warn!(
                        "config {path} is in the maps but not live: {}",
                        p.describe(&self.watch.interface)
                    );
                }
                self.token = token;
                self.on_disk = text;
                let limits = self.config.director.api_limits;
                let old = self.api_limits.send_replace(limits);
                server::log_change(&old, &limits, self.api_budget);
                self.record("sighup", Ok(()));
            }
            Err(e) => {
                let refused = !matches!(e, ApplyFailure::Failed(_));
                let message = e.message();
                if refused {
                    error!(
                        "config refused, keeping the running tables: applying config {path}: {message}"
                    );
                } else {
                    // Past the checks, so some maps may hold part of the new
                    // config; the data plane rewrites what it is unsure of at
                    // the next apply, so a SIGHUP retries.
                    error!(
                        "applying config {path} failed part-way (send SIGHUP to retry): {message}"
                    );
                }
                self.record("sighup", Err(message));
            }
        }
    }

    /// Resolves the next hops of `config`, applies it to the data plane
    /// and makes it the live config.
    fn apply_config(&mut self, config: Config) -> Result<ApplyReport, ApplyFailure> {
        let backends = backend_addrs(&config);
        let snapshot = self
            .resolver
            .resolve(&backends)
            .map_err(|e| ApplyFailure::Resolve(anyhow::Error::from(e)))?;
        let report = self
            .dataplane
            .apply(&config, &|ip| snapshot.mac_of(ip))
            .map_err(|e| {
                if is_refusal(&e) {
                    ApplyFailure::Refused(e.into())
                } else {
                    ApplyFailure::Failed(e.into())
                }
            })?;
        self.generation += 1;
        // The rows are the builder's, as the data plane's are: a failure
        // here would have failed the apply first.
        match views(&config, &self.views) {
            Ok(v) => self.views = v,
            Err(e) => error!("building the API's view of the tables: {e:#}"),
        }
        self.health.retain_in(&config);
        self.config = config;
        self.backends = backends;
        self.log_changes(&snapshot);
        self.snapshot = snapshot;
        self.probed.retain(|ip, _| self.backends.contains(ip));
        self.probe_unresolved();
        Ok(report)
    }

    fn record(&mut self, source: &'static str, result: Result<(), String>) {
        self.last_apply = Some((source, SystemTime::now(), result.err()));
    }

    /// Resolves the next hops again and rewrites the MACs that moved.
    /// Not while the program is not attached: the interface may be gone,
    /// and the next hops are resolved when it is attached again.
    fn refresh(&mut self) {
        if !self.watch.looks_attached() {
            return;
        }
        let snapshot = match self.resolver.resolve(&self.backends) {
            Ok(s) => s,
            Err(e) => {
                warn!(
                    "resolving next hops (keeping the current MACs): {:#}",
                    anyhow::Error::from(e)
                );
                return;
            }
        };
        if snapshot.macs == self.snapshot.macs {
            // Reasons may differ (a neighbour went from absent to
            // incomplete); keep them current for the logs and the probes.
            self.log_changes(&snapshot);
            self.snapshot = snapshot;
            return;
        }
        match self.dataplane.refresh_macs(&|ip| snapshot.mac_of(ip)) {
            Ok(updated) => {
                self.log_changes(&snapshot);
                info!(updated, "next-hop MACs rewritten");
                self.snapshot = snapshot;
            }
            // The old snapshot stays, so the next refresh tries again.
            Err(e) => error!("writing next-hop MACs: {:#}", anyhow::Error::from(e)),
        }
    }

    /// Logs each backend whose next hop changed from the current snapshot.
    fn log_changes(&self, new: &Snapshot) {
        let fallback = match self.config.director.gateway_mac {
            Some(mac) => format!(
                "packets to it go to director.gateway_mac {}",
                neigh::format_mac(&mac)
            ),
            None => "packets to it are dropped (no director.gateway_mac)".to_string(),
        };
        for ip in &self.backends {
            let (old_mac, new_mac) = (self.snapshot.mac_of(*ip), new.mac_of(*ip));
            let (old_why, new_why) = (self.snapshot.unresolved.get(ip), new.unresolved.get(ip));
            if let Some(mac) = new_mac
                && old_mac != new_mac
            {
                info!(backend = %ip, mac = %neigh::format_mac(&mac), "next hop resolved");
            }
            if let Some(why) = new_why
                && old_why != new_why
            {
                // A backend waiting for its first ARP answer is routine;
                // one that cannot be reached through this interface is not.
                match why {
                    Unresolved::NoNeighbour { .. } => {
                        info!(backend = %ip, "no next-hop MAC yet: {why}; {fallback}");
                    }
                    _ => warn!(backend = %ip, "no next-hop MAC: {why}; {fallback}"),
                }
            }
        }
    }

    /// Makes the kernel resolve the next hops that have no usable entry,
    /// each at most once per poll interval.
    fn probe_unresolved(&mut self) {
        if !self.watch.looks_attached() {
            return;
        }
        let now = Instant::now();
        for (ip, why) in &self.snapshot.unresolved {
            if !matches!(why, Unresolved::NoNeighbour { .. }) {
                continue;
            }
            if self
                .probed
                .get(ip)
                .is_some_and(|at| now.duration_since(*at) < POLL_INTERVAL)
            {
                continue;
            }
            self.probed.insert(*ip, now);
            if let Err(e) = neigh::probe(*ip) {
                debug!(backend = %ip, error = %e, "neighbour probe not sent");
            }
        }
    }
}

/// Every backend address of every table (inactive ones included: a state
/// change through the API must not wait for a resolution).
fn backend_addrs(config: &Config) -> BTreeSet<IpAddr> {
    config
        .tables
        .iter()
        .flat_map(|t| t.backends.iter().map(|b| b.backend.addr))
        .collect()
}

/// The interface's index in this network namespace; `setting` names
/// where the name came from, for the error.
pub(crate) fn interface_index(name: &str, setting: &str) -> anyhow::Result<u32> {
    director_xdp::interface_index(name)
        .with_context(|| format!("looking up interface {name} ({setting})"))
}

/// Warns when `director.mtu` is above the MTU of the interface the
/// encapsulated packets leave by: the config's word is taken, but a link
/// rarely carries more than its interface's MTU.
fn warn_if_above_link(config: &Config, interface: &str, link_mtu: u32) {
    if let Some(mtu) = config.director.mtu
        && mtu > link_mtu
    {
        warn!(
            "director.mtu {mtu} is above the MTU of {interface} ({link_mtu}), which the encapsulated packets leave by: packets between the two sizes may be lost without a word"
        );
    }
}

/// The interface's MTU in this network namespace (`SIOCGIFMTU`; not
/// sysfs, which under `nsenter --net` shows the mount namespace's network
/// namespace).
pub(crate) fn interface_mtu(name: &str) -> anyhow::Result<u32> {
    use std::os::fd::{AsRawFd as _, FromRawFd as _, OwnedFd};
    let what = || format!("reading the MTU of interface {name} (director.interface)");
    // SAFETY: a zeroed `ifreq` is a valid value (a name and a union of
    // integers).
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    let bytes = name.as_bytes();
    if bytes.len() >= req.ifr_name.len() {
        return Err(anyhow!("interface name {name:?} is too long")).with_context(what);
    }
    for (dst, src) in req.ifr_name.iter_mut().zip(bytes) {
        *dst = *src as libc::c_char;
    }
    // SAFETY: plain socket(2); the descriptor is owned right away.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error()).with_context(what);
    }
    // SAFETY: `fd` is a fresh descriptor nothing else owns.
    let sock = unsafe { OwnedFd::from_raw_fd(fd) };
    // SAFETY: SIOCGIFMTU reads the NUL-terminated name of `req` and writes
    // its `ifru_mtu`; `req` outlives the call.
    if unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCGIFMTU, &mut req) } != 0 {
        return Err(std::io::Error::last_os_error()).with_context(what);
    }
    // SAFETY: the kernel wrote the MTU member of the union.
    let mtu = unsafe { req.ifr_ifru.ifru_mtu };
    u32::try_from(mtu)
        .map_err(|_| anyhow!("the kernel gave MTU {mtu}"))
        .with_context(what)
}

/// Swaps this process's program into the adopted link (one
/// `BPF_LINK_UPDATE`: the interface always runs one program or the other)
/// and returns the link, owned by this process.
fn adopt(dataplane: &mut Dataplane, fd: FdLink) -> anyhow::Result<XdpLink> {
    let link = XdpLink::try_from(fd).context("the pinned link is not an XDP link")?;
    let program = dataplane.program_mut();
    let id = program
        .attach_to_link(link)
        .context("replacing the program of the pinned link")?;
    Ok(program.take_link(id)?)
}

/// Pins `link` at `path`; returns it, owned by this process, and whether
/// it is pinned. A link made through netlink (kernels without XDP
/// `bpf_link`) cannot be pinned: it is attached again, unpinned, with a
/// warning (a restart then detaches it).
fn pin_link(
    dataplane: &mut Dataplane,
    id: XdpLinkId,
    path: &Path,
    ifindex: u32,
    mode: &'static str,
) -> anyhow::Result<(XdpLink, bool)> {
    let program = dataplane.program_mut();
    let link = program.take_link(id)?;
    match FdLink::try_from(link) {
        Ok(fd) => {
            let pinned = fd
                .pin(path)
                .with_context(|| format!("pinning the XDP link at {}", path.display()))?;
            Ok((XdpLink::try_from(FdLink::from(pinned))?, true))
        }
        Err(_) => {
            warn!(
                "the XDP attachment is not a bpf_link (old kernel): it cannot be pinned, and a restart detaches the director"
            );
            let m = if mode == "native" {
                XdpMode::Driver
            } else {
                XdpMode::Skb
            };
            let id = program.attach(ifindex, m)?;
            Ok((program.take_link(id)?, false))
        }
    }
}

/// Attaches in native mode, else in generic mode with a warning; returns the
/// link and the mode's name.
fn attach(
    dataplane: &mut Dataplane,
    interface: &str,
    ifindex: u32,
) -> anyhow::Result<(XdpLinkId, &'static str)> {
    let program = dataplane.program_mut();
    match program.attach(ifindex, XdpMode::Driver) {
        Ok(link) => Ok((link, "native")),
        Err(native) => {
            warn!(
                "native XDP on {interface} failed ({:#}); falling back to generic (SKB) mode, which is much slower",
                anyhow::Error::from(native)
            );
            let link = program.attach(ifindex, XdpMode::Skb).with_context(|| {
                format!("attaching the director to {interface} in generic mode")
            })?;
            Ok((link, "generic"))
        }
    }
}

/// The exit status of a failed `apply`: 2 when the config was refused, 1
/// when writing the maps failed.
pub fn apply_failure(e: DataplaneError, config_path: &Path) -> Failure {
    let refused = is_refusal(&e);
    let error =
        anyhow::Error::from(e).context(format!("applying config {}", config_path.display()));
    if refused {
        Failure::usage(error)
    } else {
        Failure::runtime(error)
    }
}

/// Whether the data plane refused the config (it does not fit, or lacks a
/// source address) rather than failed to write it.
fn is_refusal(e: &DataplaneError) -> bool {
    matches!(e, DataplaneError::Check(_))
}

/// One line about an applied config, for the log.
fn summary(generation: u64, report: &ApplyReport) -> String {
    let tables: Vec<String> = report
        .tables
        .iter()
        .map(|t| {
            if t.flipped {
                format!(
                    "{} -> slot {} ({} rows written)",
                    t.name, t.active, t.rows_written
                )
            } else {
                format!("{} unchanged (slot {})", t.name, t.active)
            }
        })
        .collect();
    let path_mtu = match &report.path_mtu {
        PathMtu::Config(mtu) => format!("path MTU {mtu} (director.mtu)"),
        PathMtu::Interface { interface, .. } => format!(
            "path MTU {} (interface {interface})",
            report.path_mtu.value()
        ),
        PathMtu::None => "no path MTU".to_string(),
    };
    format!(
        "generation {generation}; tables: {}; {} binds, {} VIP entries ({} removed), {} backends ({} entries written, {} without a next-hop MAC); {path_mtu}",
        if tables.is_empty() {
            "none".to_string()
        } else {
            tables.join(", ")
        },
        report.binds,
        report.vips,
        report.vips_removed,
        report.backends,
        report.backends_written,
        report.unresolved_macs
    )
}

/// What the API reads and changes; every method runs on the event loop.
impl Daemon {
    pub(crate) fn token(&self) -> Option<&str> {
        self.token.as_deref()
    }

    pub(crate) fn api_is_loopback(&self) -> bool {
        self.config.director.api_listen.ip().is_loopback()
    }

    pub(crate) fn generation(&self) -> u64 {
        self.generation
    }

    pub(crate) fn config(&self) -> &Config {
        &self.config
    }

    fn stats(&self) -> Result<director_xdp::Stats, Refusal> {
        self.dataplane.stats().map_err(|e| {
            Refusal::new(
                Kind::Internal,
                format!("reading the counters: {:#}", anyhow::Error::from(e)),
            )
        })
    }

    /// Per bind of table `ti`: (bind, id, packets, bytes).
    fn binds_of(
        &self,
        ti: usize,
        stats: &director_xdp::Stats,
    ) -> Vec<(proto::config::Bind, u32, u64, u64)> {
        let t = &self.config.tables[ti];
        director_xdp::bind_ids(&self.config)
            .into_iter()
            .filter(|b| b.table == t.name)
            .map(|b| {
                let s = stats
                    .per_bind
                    .iter()
                    .find(|s| s.bind == b.id)
                    .copied()
                    .unwrap_or_default();
                (t.binds[b.index], b.id, s.packets, s.bytes)
            })
            .collect()
    }

    /// Traffic to backend `ip` of table `ti` as primary: (packets, bytes).
    fn backend_traffic(&self, ti: usize, ip: IpAddr, stats: &director_xdp::Stats) -> (u64, u64) {
        let name = &self.config.tables[ti].name;
        stats
            .per_backend
            .iter()
            .find(|b| b.addr == ip && &b.table == name)
            .map_or((0, 0), |b| (b.packets, b.bytes))
    }

    fn table_value(&self, ti: usize, stats: &director_xdp::Stats) -> proto::api::Table {
        let t = &self.config.tables[ti];
        let view = self.views.get(ti);
        let binds = self
            .binds_of(ti, stats)
            .into_iter()
            .map(|(b, id, packets, bytes)| proto::api::BindTraffic {
                bind: b.to_string(),
                id,
                packets,
                bytes,
            })
            .collect();
        let backends = t
            .backends
            .iter()
            .map(|b| {
                let ip = b.backend.addr;
                let rows = view
                    .and_then(|v| v.counts.get(&ip).copied())
                    .unwrap_or_default();
                let (packets, bytes) = self.backend_traffic(ti, ip, stats);
                proto::api::Backend {
                    ip,
                    state: b.backend.state,
                    healthy: b.backend.healthy,
                    reachable: b.backend.reachable,
                    health_reason: self.health.get(&t.name, ip).and_then(|v| v.reason.clone()),
                    rows_primary: rows.primary as u64,
                    rows_alternate: rows.alternate as u64,
                    packets,
                    bytes,
                    healthchecks: b.healthchecks.clone(),
                }
            })
            .collect();
        proto::api::Table {
            name: t.name.clone(),
            hops: t.chain_hops(),
            encap: t.encap,
            rows: view.map_or(0, |v| v.rows.len()),
            hash: view.map(|v| v.hash.clone()),
            binds,
            backends,
        }
    }

    /// Every table's content hash, by name.
    pub(crate) fn table_hashes(&self) -> BTreeMap<String, Option<String>> {
        self.config
            .tables
            .iter()
            .enumerate()
            .map(|(ti, t)| (t.name.clone(), self.views.get(ti).map(|v| v.hash.clone())))
            .collect()
    }

    pub(crate) fn table_json(&self, ti: usize) -> Result<proto::api::Table, Refusal> {
        let stats = self.stats()?;
        Ok(self.table_value(ti, &stats))
    }

    pub(crate) fn tables_json(&self) -> Result<proto::api::Tables, Refusal> {
        let stats = self.stats()?;
        Ok(proto::api::Tables {
            generation: self.generation,
            tables: (0..self.config.tables.len())
                .map(|ti| self.table_value(ti, &stats))
                .collect(),
        })
    }

    fn last_apply(&self) -> Option<proto::api::LastApply> {
        self.last_apply
            .as_ref()
            .map(|(source, at, error)| proto::api::LastApply {
                source: source.to_string(),
                ok: error.is_none(),
                error: error.clone(),
                unix_time: at
                    .duration_since(SystemTime::UNIX_EPOCH)
                    .map_or(0, |d| d.as_secs()),
            })
    }

    /// The path MTU the director applies, `None` for no limit.
    fn path_mtu(&self) -> Option<u32> {
        self.dataplane.live_path_mtu()
    }

    pub(crate) fn stats_json(&self) -> Result<proto::api::Stats, Refusal> {
        let stats = self.stats()?;
        let outcomes = stats
            .outcomes
            .iter()
            .map(|(s, n)| (s.name().to_string(), *n))
            .collect();
        let mut binds = Vec::new();
        let mut backends = Vec::new();
        for (ti, t) in self.config.tables.iter().enumerate() {
            for (b, id, packets, bytes) in self.binds_of(ti, &stats) {
                binds.push(proto::api::TableBindTraffic {
                    table: t.name.clone(),
                    traffic: proto::api::BindTraffic {
                        bind: b.to_string(),
                        id,
                        packets,
                        bytes,
                    },
                });
            }
            for b in &t.backends {
                let ip = b.backend.addr;
                let (packets, bytes) = self.backend_traffic(ti, ip, &stats);
                backends.push(proto::api::BackendTraffic {
                    table: t.name.clone(),
                    backend: ip,
                    packets,
                    bytes,
                });
            }
        }
        Ok(proto::api::Stats {
            generation: self.generation,
            outcomes,
            binds,
            backends,
            path_mtu: self.path_mtu(),
            last_apply: self.last_apply(),
        })
    }

    /// The metrics in the OpenMetrics text format, rendered by the
    /// Prometheus client library from the data plane's counters and the
    /// live tables.
    pub(crate) fn metrics(&self) -> Result<String, Refusal> {
        let stats = self.stats()?;
        let mut m = metrics::Metrics::default();
        let packets = m.counter(
            "glb_director_packets",
            "Packets by outcome (icmp_handled, fragment and mac_fallback are subsets of encapsulated)",
        );
        for (s, n) in &stats.outcomes {
            packets
                .get_or_create(&metrics::labels(&[("outcome", s.name())]))
                .inc_by(*n);
        }
        let bind_packets = m.counter("glb_bind_packets", "Packets encapsulated per bind");
        let bind_bytes = m.counter(
            "glb_bind_bytes",
            "Bytes (frames as received) encapsulated per bind",
        );
        let backend_packets = m.counter(
            "glb_backend_packets",
            "Packets encapsulated to a backend as the row's primary",
        );
        let backend_bytes = m.counter(
            "glb_backend_bytes",
            "Bytes (frames as received) encapsulated to a backend as the row's primary",
        );
        let rows = m.gauge(
            "glb_backend_rows",
            "Rows of the table held by a backend, as primary or as alternate",
        );
        let healthy = m.gauge(
            "glb_backend_healthy",
            "1 if the backend's last health verdict is healthy",
        );
        let reachable = m.gauge(
            "glb_backend_reachable",
            "1 if the backend is reachable (0: in no row)",
        );
        let state = m.gauge(
            "glb_backend_state",
            "The backend's state (1 for the current one)",
        );
        for (ti, t) in self.config.tables.iter().enumerate() {
            for (b, _, p, by) in self.binds_of(ti, &stats) {
                let l = metrics::labels(&[("table", &t.name), ("bind", &b.to_string())]);
                bind_packets.get_or_create(&l).inc_by(p);
                bind_bytes.get_or_create(&l).inc_by(by);
            }
            for b in &t.backends {
                let ip = b.backend.addr.to_string();
                let l = metrics::labels(&[("table", &t.name), ("backend", &ip)]);
                let held: RowCount = self
                    .views
                    .get(ti)
                    .and_then(|v| v.counts.get(&b.backend.addr).copied())
                    .unwrap_or_default();
                for (role, n) in [("primary", held.primary), ("alternate", held.alternate)] {
                    let l =
                        metrics::labels(&[("table", &t.name), ("backend", &ip), ("role", role)]);
                    rows.get_or_create(&l).set(metrics::gauge_value(n as u64));
                }
                healthy.get_or_create(&l).set(i64::from(b.backend.healthy));
                reachable
                    .get_or_create(&l)
                    .set(i64::from(b.backend.reachable));
                let s = metrics::labels(&[
                    ("table", &t.name),
                    ("backend", &ip),
                    ("state", b.backend.state.as_str()),
                ]);
                state.get_or_create(&s).set(1);
                let (p, by) = self.backend_traffic(ti, b.backend.addr, &stats);
                backend_packets.get_or_create(&l).inc_by(p);
                backend_bytes.get_or_create(&l).inc_by(by);
            }
        }
        self.attachment_metrics(&mut m);
        self.fleet_metrics(&mut m);
        m.single_gauge(
            "glb_api_connections_open",
            "Connections open to the API now",
            self.api_counts.open(),
        );
        let refused = m.counter(
            "glb_api_connections_refused",
            "Connections to the API refused with 503 at a cap: cap=\"total\" (director.api_max_connections, or the file descriptors left) or cap=\"address\" (director.api_max_connections_per_address)",
        );
        let (total, address) = self.api_counts.refused();
        for (cap, n) in [("total", total), ("address", address)] {
            refused
                .get_or_create(&metrics::labels(&[("cap", cap)]))
                .inc_by(n);
        }
        m.single_gauge(
            "glb_director_generation",
            "Configs applied since the daemon started, the first included",
            self.generation,
        );
        if let Some(mtu) = self.path_mtu() {
            m.single_gauge(
                "glb_director_path_mtu_bytes",
                "Path MTU toward the backends: larger packets, once encapsulated, are answered with ICMP (too_big_icmp) or dropped (too_big_dropped)",
                u64::from(mtu),
            );
        }
        if let Some((source, at, error)) = &self.last_apply {
            m.gauge(
                "glb_director_last_apply_success",
                "1 if the last apply (start, SIGHUP or API) succeeded",
            )
            .get_or_create(&metrics::labels(&[("source", source)]))
            .set(i64::from(error.is_none()));
            let secs = at
                .duration_since(SystemTime::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs());
            m.single_gauge(
                "glb_director_last_apply_timestamp_seconds",
                "When the last apply was attempted (Unix time)",
                secs,
            );
        }
        Ok(m.render())
    }

    /// The rows `change` would move in table `ti`; nothing is applied.
    pub(crate) fn preview(
        &self,
        ti: usize,
        change: &Change,
    ) -> Result<proto::api::Preview, Refusal> {
        let (new, _) = change::changed_config(&self.config, ti, change)?;
        let new = change::check_whole(&new, change)?;
        let t = &new.tables[ti];
        let after = views(&new, &self.views)
            .map_err(|e| Refusal::new(Kind::Conflict, format!("{e:#}")))?
            .swap_remove(ti);
        let before = self
            .views
            .get(ti)
            .map(|v| v.rows.as_slice())
            .unwrap_or_default();
        let (old_backends, holders) = match self.views.get(ti) {
            Some(v) => (v.key.2.as_slice(), v.holders.clone()),
            None => (&[][..], Holders::all(before)),
        };
        let released = Release::between(old_backends, &after.key.2);
        let mut diff = proto::table::diff_rows(before, &after.rows, &holders, &released);
        if t.encap == proto::Encap::Ipip {
            diff.warn_no_second_chance(&t.name);
        }
        Ok(proto::api::Preview {
            table: t.name.clone(),
            diff,
            hash_before: self.views.get(ti).map(|v| v.hash.clone()),
            hash_after: after.hash,
        })
    }

    /// Makes `change` to table `ti`: checked whole, applied to the data
    /// plane, written over the config file, in that order; an error leaves
    /// the data plane and the file as they were. Returns whether anything
    /// changed (a change to what already is changes nothing).
    pub(crate) fn change(&mut self, ti: usize, change: &Change) -> Result<bool, Refusal> {
        // Changes are made to the file's config; the verdicts lie over it.
        let (new, changed) = change::changed_config(&self.file_config, ti, change)?;
        if !changed {
            return Ok(false);
        }
        let path = self.config_path.display().to_string();

        match std::fs::read_to_string(&self.config_path) {
            Ok(text) if text == self.on_disk => {}
            _ => {
                return Err(Refusal::new(Kind::Conflict,
                    format!(
                        "config {path} was changed on disk since the director read it; send SIGHUP to load it (or undo the edit) before changing it through the API"
                    ),
                )
                .at("config", path));
            }
        }
        let mut new_file = change::check_whole(&new, change)?;
        // Warnings were reported when the file was read; the rendered
        // config has none to add.
        new_file.warnings.clear();
        // The fields this project does not read (GLB configs carry some for
        // other tools) are put back where they were.
        let rendered = match serde_json::from_str::<Value>(&self.on_disk) {
            Ok(original) => proto::config::to_json_keeping(&new_file, &original),
            Err(_) => proto::config::to_json(&new_file),
        };
        let text = format!("{rendered:#}\n");
        let (old, old_health) = (self.config.clone(), self.health.clone());
        match self.apply_config(self.health.overlay(&new_file)) {
            Ok(report) => info!("API change applied: {}", summary(self.generation, &report)),
            Err(e) => return Err(self.api_apply_failed(e, "change")),
        }
        // A crash at any moment leaves the old file or the new one; a
        // config reached through a symbolic link has the link's target
        // replaced, the link kept (director_ctl::files).
        if let Err(e) = director_ctl::files::write_atomically(&self.config_path, text.as_bytes()) {
            let message = format!("writing config {path}: {e}");
            return Err(self.roll_back_unsaved(Some(old), old_health, message, "change"));
        }
        self.on_disk = text;
        self.file_config = new_file;
        self.record("api", Ok(()));
        Ok(true)
    }

    /// An applied API call whose file write failed: nothing acknowledged
    /// may be lost, so the data plane is put back to `old` (when it was
    /// changed) and the verdicts to `old_health`, rather than answering for
    /// a state a restart would not find; the failure is recorded.
    fn roll_back_unsaved(
        &mut self,
        old: Option<Config>,
        old_health: Health,
        message: String,
        what: &str,
    ) -> Refusal {
        let undone = match old {
            Some(old) => self
                .apply_config(old)
                .map(|_| ())
                .map_err(ApplyFailure::message),
            None => Ok(()),
        };
        self.health = old_health;
        error!("API {what} not saved ({message}); rolled back: {undone:?}");
        self.record("api", Err(message.clone()));
        Refusal::internal(match undone {
            Ok(()) => {
                let was = if what.ends_with('s') { "were" } else { "was" };
                format!("{message}; the {what} {was} rolled back")
            }
            Err(u) => format!("{message}; rolling the {what} back failed too: {u}"),
        })
    }

    /// An API call's apply that failed, recorded, as a refusal: a conflict
    /// when the data plane refused `what` (nothing was written), internal
    /// when a write failed part-way.
    fn api_apply_failed(&mut self, e: ApplyFailure, what: &str) -> Refusal {
        let refused = !matches!(e, ApplyFailure::Failed(_));
        let message = e.message();
        self.record("api", Err(message.clone()));
        if refused {
            Refusal::conflict(format!("the data plane refused the {what}: {message}"))
        } else {
            Refusal::internal(format!(
                "writing the {what} to the data plane failed part-way: {message}"
            ))
        }
    }

    /// Sets health verdicts, of one call or of a batch, as one change: laid
    /// over the file's config, applied (each table flips once), then saved
    /// in the state file. A verdict leaves out what it does not set (`None`
    /// keeps the current flag). Never touches the config file, so a pending
    /// hand edit of it is no reason to refuse. Returns whether any table
    /// changed (a new reason alone is saved, and changes no table).
    pub(crate) fn set_health(&mut self, verdicts: &[HealthVerdict]) -> Result<bool, Refusal> {
        let mut new_health = self.health.clone();
        for v in verdicts {
            let t = &self.config.tables[v.table];
            let current = t
                .backends
                .iter()
                .find(|b| b.backend.addr == v.ip)
                .map_or((true, true), |b| (b.backend.healthy, b.backend.reachable));
            new_health.set(
                &t.name,
                v.ip,
                current,
                v.health.healthy,
                v.health.reachable,
                v.reason.clone(),
            );
        }
        if new_health == self.health {
            return Ok(false);
        }

        let new = new_health.overlay(&self.file_config);
        let changed = new != self.config;
        let (old, old_health) = (
            self.config.clone(),
            std::mem::replace(&mut self.health, new_health),
        );
        if changed {
            match self.apply_config(new) {
                Ok(report) => info!(
                    "health verdicts applied: {}",
                    summary(self.generation, &report)
                ),
                Err(e) => {
                    self.health = old_health;
                    return Err(self.api_apply_failed(e, "verdicts"));
                }
            }
        }
        let state = self.state_path.display().to_string();
        if let Err(e) =
            director_ctl::files::write_atomically(&self.state_path, self.health.render().as_bytes())
        {
            let message = format!("writing the health state file {state}: {e}");
            let old = changed.then_some(old);
            return Err(self.roll_back_unsaved(old, old_health, message, "verdicts"));
        }
        if changed {
            self.record("api", Ok(()));
        }
        Ok(changed)
    }
}

/// The director as a member of a fleet: drained or not, announcing what.
impl Daemon {
    /// Tells the announcer what to announce now.
    fn sync_bgp(&mut self) {
        let hold = if self.health.drained {
            Some(bgp::Hold::Drained)
        } else if !self.watch.looks_attached() {
            Some(bgp::Hold::Detached)
        } else {
            None
        };
        let want = bgp::wanted(&self.config, hold);
        match (want.announce.is_empty(), self.withdrawn_at) {
            (true, None) => self.withdrawn_at = Some(Instant::now()),
            (false, Some(_)) => self.withdrawn_at = None,
            _ => {}
        }
        if let Some(a) = &mut self.bgp {
            a.set(want);
        }
    }

    /// Before a stop that detaches: the VIPs withdrawn, then
    /// `director.withdraw_delay_ms` of forwarding (counted from the
    /// withdrawal, which may be older: a drained director) while the
    /// routers move their flows to the other directors. A director left
    /// attached (`--keep-on-exit`, a restart) keeps announcing.
    async fn withdraw_before_stop(&mut self, signal_name: &str, keep_on_exit: bool) {
        let pinned = self.watch.is_pinned();
        let Some(a) = &mut self.bgp else { return };
        if keep_on_exit && pinned {
            info!("{signal_name}: the VIPs stay announced (--keep-on-exit)");
            return;
        }
        a.set(bgp::wanted(&self.config, Some(bgp::Hold::Stopping)));
        let withdrawn_at = *self.withdrawn_at.get_or_insert_with(Instant::now);
        if !a.settled(Duration::from_secs(10)).await {
            warn!(
                "{signal_name}: BIRD did not take the withdrawal ({}); stopping anyway: the routers see the director go when its BGP session or BFD does",
                a.status().error.unwrap_or_else(|| "no answer".into())
            );
        }
        let delay = Duration::from_millis(u64::from(self.config.director.withdraw_delay_ms))
            .saturating_sub(withdrawn_at.elapsed());
        info!(
            "{signal_name}: VIPs withdrawn; forwarding for {} ms more while the routers converge",
            delay.as_millis()
        );
        tokio::time::sleep(delay).await;
    }

    /// `GET /v1/director`.
    pub(crate) fn director_status(&self) -> proto::api::DirectorStatus {
        use proto::maps::DirectorStat as S;
        let vip_packets = self.dataplane.stats().map_or(0, |st| {
            [
                S::Encapsulated,
                S::EncapFailure,
                S::TooBigIcmp,
                S::TooBigDropped,
            ]
            .into_iter()
            .map(|s| st.get(s))
            .sum()
        });
        proto::api::DirectorStatus {
            attached: self.watch.looks_attached(),
            drained: self.health.drained,
            vip_packets,
            bgp: self
                .bgp
                .as_ref()
                .map_or_else(bgp::off, bgp::Announcer::status),
        }
    }

    /// The fleet membership's metrics, for [`Daemon::metrics`]: the drain,
    /// and with BIRD settings, each VIP's announcement and BIRD's failure.
    fn fleet_metrics(&self, m: &mut metrics::Metrics) {
        m.single_gauge(
            "glb_director_drained",
            "1 while the director is drained (its VIPs withdrawn on purpose)",
            u64::from(self.health.drained),
        );
        let Some(bgp) = &self.bgp else { return };
        let status = bgp.status();
        let announced = m.gauge(
            "glb_director_vip_announced",
            "Per VIP prefix: 1 if BIRD announces it for this director, 0 if it is withheld (reason: drained, detached, stopping, no_backend) or not yet taken by BIRD",
        );
        for p in &status.announced {
            announced
                .get_or_create(&metrics::labels(&[("prefix", p), ("reason", "")]))
                .set(1);
        }
        for w in &status.withheld {
            announced
                .get_or_create(&metrics::labels(&[
                    ("prefix", &w.prefix),
                    ("reason", &w.reason),
                ]))
                .set(0);
        }
        m.single_gauge(
            "glb_director_bgp_failing",
            "1 while BIRD has not taken the daemon's last change (unreachable or refused; retried with backoff) or does not answer (asked every 5 s); see GET /v1/director",
            u64::from(status.state == proto::api::BgpState::Failing),
        );
    }

    /// Drains (or undrains) the director: saved in the state file, so a
    /// restarted director stays drained, then the announcements follow.
    pub(crate) fn set_drained(
        &mut self,
        drained: bool,
    ) -> Result<proto::api::DirectorStatus, Refusal> {
        if self.bgp.is_none() {
            return Err(Refusal::conflict(
                "director.bird_socket is not set: this director announces no VIP, so draining it would change nothing (the routers reach it by other means)",
            ));
        }
        if self.health.drained != drained {
            let old = self.health.clone();
            self.health.drained = drained;
            if let Err(e) = director_ctl::files::write_atomically(
                &self.state_path,
                self.health.render().as_bytes(),
            ) {
                self.health = old;
                return Err(Refusal::internal(format!(
                    "writing the state file {}: {e}; the director's drain state is unchanged",
                    self.state_path.display()
                )));
            }
            info!(
                "director {}: {}",
                if drained { "drained" } else { "undrained" },
                if drained {
                    "every VIP withdrawn; what still arrives is forwarded"
                } else {
                    "the VIPs are announced again"
                }
            );
            self.sync_bgp();
        }
        Ok(self.director_status())
    }
}

impl api::Director for Daemon {
    fn token(&self) -> Option<&str> {
        Daemon::token(self)
    }

    fn api_is_loopback(&self) -> bool {
        Daemon::api_is_loopback(self)
    }

    fn refuse_unless_attached(&self) -> Result<(), Refusal> {
        Daemon::refuse_unless_attached(self)
    }

    fn healthz(&self) -> (bool, proto::api::Healthz) {
        Daemon::healthz(self)
    }

    fn metrics(&self) -> Result<String, Refusal> {
        Daemon::metrics(self)
    }

    fn stats(&self) -> Result<proto::api::Stats, Refusal> {
        self.stats_json()
    }

    fn tables(&self) -> Result<proto::api::Tables, Refusal> {
        self.tables_json()
    }

    fn table(&self, ti: usize) -> Result<proto::api::Table, Refusal> {
        self.table_json(ti)
    }

    fn config(&self) -> &Config {
        Daemon::config(self)
    }

    fn generation(&self) -> u64 {
        Daemon::generation(self)
    }

    fn table_hashes(&self) -> BTreeMap<String, Option<String>> {
        Daemon::table_hashes(self)
    }

    fn preview(&self, ti: usize, change: &Change) -> Result<proto::api::Preview, Refusal> {
        Daemon::preview(self, ti, change)
    }

    fn change(&mut self, ti: usize, change: &Change) -> Result<bool, Refusal> {
        Daemon::change(self, ti, change)
    }

    fn set_health(&mut self, verdicts: &[HealthVerdict]) -> Result<bool, Refusal> {
        Daemon::set_health(self, verdicts)
    }

    fn director(&self) -> proto::api::DirectorStatus {
        self.director_status()
    }

    fn set_drained(&mut self, drained: bool) -> Result<proto::api::DirectorStatus, Refusal> {
        Daemon::set_drained(self, drained)
    }
}
