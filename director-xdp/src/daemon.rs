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
//! - SIGINT or SIGTERM: detach the program and exit 0.

use std::collections::{BTreeSet, HashMap};
use std::ffi::CString;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, anyhow};
use aya::programs::XdpMode;
use aya::programs::xdp::XdpLinkId;
use director_xdp::dataplane::{ApplyReport, Dataplane, DataplaneError};
use proto::config::Config;
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::Notify;
use tracing::{debug, error, info, warn};

use crate::{Failure, load_config};
use director_xdp::neigh::{self, Resolver, Snapshot, Unresolved, Watcher};

/// How often next hops are resolved without a notification, and how often
/// at most an unresolved next hop is probed.
const POLL_INTERVAL: Duration = Duration::from_secs(5);
/// Wait after a netlink notification before resolving, so that a burst of
/// changes (a flapping link, a neighbour table flush) costs one resolution.
const SETTLE: Duration = Duration::from_millis(200);

/// Runs the daemon until SIGINT or SIGTERM.
pub fn run(config_path: &Path) -> Result<(), Failure> {
    // One thread is enough: the daemon waits on signals and timers, and
    // every map update is a short sequence of syscalls.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")
        .map_err(Failure::runtime)?;
    runtime.block_on(run_async(config_path))
}

async fn run_async(config_path: &Path) -> Result<(), Failure> {
    // Handlers first: a SIGTERM that arrives during start-up waits in the
    // stream and ends the loop as soon as it starts, after a clean attach.
    let mut hup = signal_stream(SignalKind::hangup())?;
    let mut int = signal_stream(SignalKind::interrupt())?;
    let mut term = signal_stream(SignalKind::terminate())?;

    let config = load_config(config_path).map_err(Failure::usage)?;
    let interface = config.director.interface.clone().ok_or_else(|| {
        Failure::usage(anyhow!(
            "config {}: director.interface is required to run a director",
            config_path.display()
        ))
    })?;
    let ifindex = interface_index(&interface).map_err(Failure::runtime)?;

    let dataplane = Dataplane::load()
        .context("loading the director program (needs root)")
        .map_err(Failure::runtime)?;
    let resolver = Resolver::new(ifindex)
        .with_context(|| format!("resolving next hops on {interface}"))
        .map_err(Failure::runtime)?;
    // Subscribed before the first probes, so their answers are seen.
    let changed = Arc::new(Notify::new());
    let notify = Arc::clone(&changed);
    let _watcher = Watcher::spawn(ifindex, move || notify.notify_one())
        .context("watching route and neighbour changes")
        .map_err(Failure::runtime)?;

    let mut daemon = Daemon {
        config_path: config_path.to_path_buf(),
        generation: 1,
        backends: backend_addrs(&config),
        config,
        dataplane,
        resolver,
        snapshot: Snapshot::default(),
        probed: HashMap::new(),
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
    daemon.snapshot = snapshot;
    daemon.probe_unresolved();

    let (link, mode) =
        attach(&mut daemon.dataplane, &interface, ifindex).map_err(Failure::runtime)?;
    info!(
        interface = %interface,
        ifindex,
        mode,
        "director attached to {interface} in {mode} mode"
    );

    let mut poll = tokio::time::interval(POLL_INTERVAL);
    poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    poll.tick().await; // the first tick is immediate; resolution just ran
    let signal_name = loop {
        tokio::select! {
            _ = hup.recv() => daemon.reload(),
            _ = int.recv() => break "SIGINT",
            _ = term.recv() => break "SIGTERM",
            () = changed.notified() => {
                tokio::time::sleep(SETTLE).await;
                daemon.refresh();
            }
            _ = poll.tick() => {
                daemon.refresh();
                daemon.probe_unresolved();
            }
        }
    };
    info!("{signal_name}: detaching from {interface}");
    daemon
        .dataplane
        .program_mut()
        .detach(link)
        .with_context(|| format!("detaching the director from {interface}"))
        .map_err(Failure::runtime)?;
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
    info!("director detached from {interface}; exiting");
    Ok(())
}

fn signal_stream(kind: SignalKind) -> Result<tokio::signal::unix::Signal, Failure> {
    signal(kind)
        .with_context(|| format!("installing a handler for signal {}", kind.as_raw_value()))
        .map_err(Failure::runtime)
}

/// The running director's state.
struct Daemon {
    config_path: PathBuf,
    /// Configs applied since start, the first included: tells the log
    /// lines of successive reloads apart.
    generation: u64,
    /// The config whose tables are live.
    config: Config,
    /// Addresses of the live config's backends, whose next hops are tracked.
    backends: BTreeSet<IpAddr>,
    dataplane: Dataplane,
    resolver: Resolver,
    /// The next hops as last written to the data plane.
    snapshot: Snapshot,
    /// When each unresolved backend was last probed.
    probed: HashMap<IpAddr, Instant>,
}

impl Daemon {
    /// SIGHUP: apply the config file again, or keep the running one.
    fn reload(&mut self) {
        let path = self.config_path.display().to_string();
        info!("SIGHUP: reloading config {path}");
        let config = match load_config(&self.config_path) {
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
        let backends = backend_addrs(&config);
        let snapshot = match self.resolver.resolve(&backends) {
            Ok(s) => s,
            Err(e) => {
                error!(
                    "config refused, keeping the running tables: resolving the next hops of config {path}: {:#}",
                    anyhow::Error::from(e)
                );
                return;
            }
        };
        match self.dataplane.apply(&config, &|ip| snapshot.mac_of(ip)) {
            Ok(report) => {
                self.generation += 1;
                info!(
                    "config {path} applied: {}",
                    summary(self.generation, &report)
                );
                self.config = config;
                self.backends = backends;
                self.log_changes(&snapshot);
                self.snapshot = snapshot;
                self.probed.retain(|ip, _| self.backends.contains(ip));
                self.probe_unresolved();
            }
            Err(e) if is_refusal(&e) => error!(
                "config refused, keeping the running tables: applying config {path}: {:#}",
                anyhow::Error::from(e)
            ),
            // Past the checks, so some maps may hold part of the new
            // config; the data plane rewrites what it is unsure of at the
            // next apply, so a SIGHUP retries.
            Err(e) => error!(
                "applying config {path} failed part-way (send SIGHUP to retry): {:#}",
                anyhow::Error::from(e)
            ),
        }
    }

    /// Resolves the next hops again and rewrites the MACs that moved.
    fn refresh(&mut self) {
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

/// The interface's index in this network namespace.
pub(crate) fn interface_index(name: &str) -> anyhow::Result<u32> {
    let c_name = CString::new(name).with_context(|| format!("interface name {name:?}"))?;
    // SAFETY: `c_name` is a valid NUL-terminated string for the call.
    let index = unsafe { libc::if_nametoindex(c_name.as_ptr()) };
    if index == 0 {
        return Err(std::io::Error::last_os_error())
            .with_context(|| format!("looking up interface {name} (director.interface)"));
    }
    Ok(index)
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
    format!(
        "generation {generation}; tables: {}; {} binds, {} VIP entries ({} removed), {} backends ({} entries written, {} without a next-hop MAC)",
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
