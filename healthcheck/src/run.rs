//! The daemon: a task per check probing on its schedule, a task per
//! director pushing, and the HTTP endpoints; and `--once`, one round
//! printed as a table.

use std::fmt::Write as _;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context as _;
use tokio::signal::unix::SignalKind;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::checks::{CheckSpec, Kind, Plan};
use crate::engine::{Engine, Outcome};
use crate::probe::Prober;
use crate::push::DirectorStats;
use crate::schedule::{Spread, first_delay, next_delay};
use crate::serve::Shared;
use crate::settings::Settings;

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Reads the config and settings again (at SIGHUP).
pub type Loader = Box<dyn Fn() -> anyhow::Result<(Plan, Settings)> + Send>;

/// The tasks of one plan: a probe loop per check, a push loop per director.
struct Tasks {
    checks: Vec<JoinHandle<()>>,
    pushers: Vec<JoinHandle<()>>,
}

impl Tasks {
    fn abort(self) {
        for t in self.checks.into_iter().chain(self.pushers) {
            t.abort();
        }
    }
}

/// Runs until SIGINT or SIGTERM; at SIGHUP, `reload` gives the config
/// again, which replaces the running one if it is valid (a check that is
/// the same keeps its state: a reload changes no verdict by itself).
pub async fn run(plan: Plan, settings: Settings, reload: Loader) -> anyhow::Result<()> {
    let engine = Arc::new(Mutex::new(Engine::new(&plan, &settings)));
    let directors = Arc::new(Mutex::new(stats_for(&settings, &[])));
    let listener = tokio::net::TcpListener::bind(settings.listen)
        .await
        .with_context(|| format!("listening on {} (healthcheck.listen)", settings.listen))?;
    let (tx, rx) = watch::channel(0u64);
    let tx = Arc::new(tx);
    let app = crate::serve::router(Shared {
        engine: engine.clone(),
        directors: directors.clone(),
    });
    let server = tokio::spawn(async move { axum::serve(listener, app).await });
    let mut tasks = start(&plan, &settings, &engine, &directors, &tx, &rx);
    tracing::info!(
        "checking {} backends with {} checks; serving {} on {}",
        plan.holders.len(),
        plan.checks.len(),
        crate::serve::HEALTH,
        settings.listen
    );
    let mut current = settings;
    let signal = |k| {
        tokio::signal::unix::signal(k).with_context(|| format!("installing the handler of {k:?}"))
    };
    let mut hup = signal(SignalKind::hangup())?;
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    loop {
        tokio::select! {
            _ = hup.recv() => {}
            _ = term.recv() => break,
            _ = int.recv() => break,
        }
        let (plan, settings) = match reload() {
            Ok(p) => p,
            Err(e) => {
                tracing::error!("reload refused, the running config stays: {e:#}");
                continue;
            }
        };
        if settings.listen != current.listen {
            tracing::warn!(
                "healthcheck.listen changed to {}: it takes a restart; still serving on {}",
                settings.listen,
                current.listen
            );
        }
        tasks.abort();
        if let (Ok(mut e), Ok(mut d)) = (engine.lock(), directors.lock()) {
            *e = e.reloaded(&plan, &settings);
            let old = std::mem::take(&mut *d);
            *d = stats_for(&settings, &old);
        }
        tasks = start(&plan, &settings, &engine, &directors, &tx, &rx);
        tx.send_modify(|v| *v += 1);
        tracing::info!(
            "reloaded: checking {} backends with {} checks",
            plan.holders.len(),
            plan.checks.len()
        );
        current = settings;
    }
    tracing::info!("stopping");
    tasks.abort();
    server.abort();
    Ok(())
}

/// Every director's stats, kept for those already known.
fn stats_for(settings: &Settings, old: &[DirectorStats]) -> Vec<DirectorStats> {
    settings
        .directors
        .iter()
        .map(|url| {
            old.iter()
                .find(|d| &d.url == url)
                .cloned()
                .unwrap_or(DirectorStats {
                    url: url.clone(),
                    ..DirectorStats::default()
                })
        })
        .collect()
}

/// Starts the probe loops of `plan` and the push loops of `settings`.
fn start(
    plan: &Plan,
    settings: &Settings,
    engine: &Arc<Mutex<Engine>>,
    directors: &Arc<Mutex<Vec<DirectorStats>>>,
    tx: &Arc<watch::Sender<u64>>,
    rx: &watch::Receiver<u64>,
) -> Tasks {
    let prober = Prober::new(settings, plan.checks.iter().any(|c| c.kind == Kind::Gue));
    let epoch = engine.lock().map_or(0, |e| e.epoch());
    let mut seed = Spread::from_entropy();
    let checks = plan
        .checks
        .iter()
        .enumerate()
        .map(|(i, spec)| {
            let (engine, prober, tx, spec) =
                (engine.clone(), prober.clone(), tx.clone(), spec.clone());
            let spread = Spread::new(seed.next_u64());
            tokio::spawn(probe_loop(i, spec, epoch, engine, prober, tx, spread))
        })
        .collect();
    let pushers = (0..settings.directors.len())
        .map(|k| {
            tokio::spawn(crate::push::run_director(
                k,
                engine.clone(),
                directors.clone(),
                rx.clone(),
                settings.api_token_file.clone(),
                settings.resync,
            ))
        })
        .collect();
    Tasks { checks, pushers }
}

/// Probes check `i` on its schedule and records each result.
async fn probe_loop(
    i: usize,
    spec: CheckSpec,
    epoch: u64,
    engine: Arc<Mutex<Engine>>,
    prober: Arc<Prober>,
    tx: Arc<watch::Sender<u64>>,
    mut spread: Spread,
) {
    let mut at = tokio::time::Instant::now() + first_delay(&spec.timing, spread.fraction());
    // An internal error is logged when it begins or changes, not at every
    // probe (it is counted in /metrics and shown on /health).
    let mut error: Option<String> = None;
    loop {
        tokio::time::sleep_until(at).await;
        let (outcome, took) = prober.probe(&spec).await;
        match &outcome {
            Outcome::Error(why) if error.as_ref() != Some(why) => {
                tracing::error!("{spec}: could not probe: {why}");
                error = Some(why.clone());
            }
            Outcome::Error(_) => {}
            _ => {
                if error.take().is_some() {
                    tracing::info!("{spec}: probing again");
                }
            }
        }
        let (rec, changing) = {
            let Ok(mut e) = engine.lock() else { return };
            // A probe of a plan replaced meanwhile: its index means
            // another check now.
            if e.epoch() != epoch {
                return;
            }
            let r = e.record(i, outcome.clone(), took, unix_ms());
            (r, e.changing(i))
        };
        if let Some(s) = rec.state {
            let why = match &outcome {
                Outcome::Fail(r) | Outcome::Error(r) => format!(": {r}"),
                Outcome::Pass => String::new(),
            };
            tracing::info!("{spec}: {}{why}", s.as_str());
        }
        match rec.suspicion {
            Some(true) => tracing::warn!(
                "self-suspicion: most checks fail together; keeping the last verdicts (is this checker's own network down?)"
            ),
            Some(false) => tracing::info!("self-suspicion over: verdicts follow the checks again"),
            None => {}
        }
        for (j, s) in &rec.others {
            if let Ok(e) = engine.lock()
                && let Some(c) = e.checks().get(*j)
            {
                tracing::info!("{}: {}", c.spec, s.as_str());
            }
        }
        if rec.changed() {
            tx.send_modify(|v| *v += 1);
        }
        at += next_delay(&spec.timing, changing, spread.fraction());
        // A probe longer than its interval must not make the next ones
        // pile up.
        at = at.max(tokio::time::Instant::now());
    }
}

/// Probes every check once (at once, no dampening: rise and fall 1) and
/// returns the verdicts as a table.
pub async fn once(mut plan: Plan, settings: Settings) -> String {
    for c in &mut plan.checks {
        c.timing.rise = 1;
        c.timing.fall = 1;
    }
    // One round judges nothing together: every result stands.
    let settings = Settings {
        suspicion_fraction: 1.0,
        ..settings
    };
    let prober = Prober::new(&settings, plan.checks.iter().any(|c| c.kind == Kind::Gue));
    let probes = plan.checks.iter().map(|spec| {
        let prober = prober.clone();
        let spec = spec.clone();
        async move { prober.probe(&spec).await }
    });
    let results: Vec<(Outcome, Duration)> = futures_join(probes.collect()).await;
    let mut engine = Engine::new(&plan, &settings);
    for (i, (o, took)) in results.into_iter().enumerate() {
        engine.record(i, o, took, unix_ms());
    }
    table(&engine)
}

async fn futures_join(
    futs: Vec<impl std::future::Future<Output = (Outcome, Duration)> + Send + 'static>,
) -> Vec<(Outcome, Duration)> {
    let handles: Vec<_> = futs.into_iter().map(tokio::spawn).collect();
    let mut out = Vec::with_capacity(handles.len());
    for h in handles {
        out.push(
            h.await
                .unwrap_or_else(|e| (Outcome::Error(format!("probe task: {e}")), Duration::ZERO)),
        );
    }
    out
}

fn flag(v: Option<bool>) -> &'static str {
    match v {
        Some(true) => "yes",
        Some(false) => "no",
        None => "-",
    }
}

/// The verdicts and every check's result, aligned in columns.
pub fn table(engine: &Engine) -> String {
    let mut rows = vec![[
        "TABLE".to_string(),
        "BACKEND".into(),
        "HEALTHY".into(),
        "REACHABLE".into(),
        "CHECK".into(),
        "RESULT".into(),
        "MS".into(),
        "REASON".into(),
    ]];
    for b in engine.backends() {
        for (k, c) in b.checks.iter().enumerate() {
            let (result, reason, ms) = match &c.last {
                Some(l) => {
                    let (r, why) = match &l.outcome {
                        Outcome::Pass => ("pass", String::new()),
                        Outcome::Fail(w) => ("fail", w.clone()),
                        Outcome::Error(w) => ("error", w.clone()),
                    };
                    (r, why, format!("{:.1}", l.latency_ms))
                }
                None => ("-", String::new(), String::new()),
            };
            let first = k == 0;
            rows.push([
                if first {
                    b.table.clone()
                } else {
                    String::new()
                },
                if first {
                    b.ip.to_string()
                } else {
                    String::new()
                },
                if first {
                    flag(b.healthy).into()
                } else {
                    String::new()
                },
                if first {
                    flag(b.reachable).into()
                } else {
                    String::new()
                },
                c.check.clone(),
                result.into(),
                ms,
                reason,
            ]);
        }
    }
    let mut widths = [0usize; 8];
    for r in &rows {
        for (w, cell) in widths.iter_mut().zip(r) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    for r in &rows {
        let mut line = String::new();
        for (i, (w, cell)) in widths.iter().zip(r).enumerate() {
            if i + 1 == r.len() {
                line.push_str(cell);
            } else {
                let _ = write!(line, "{cell:<w$}  ");
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}
