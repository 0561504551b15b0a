//! The daemon: a task per check probing on its schedule, a task per
//! director pushing, and the HTTP endpoints; and `--once`, one round
//! printed as a table.

use std::fmt::Write as _;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context as _;
use tokio::sync::watch;

use crate::checks::{Kind, Plan};
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

/// Runs until SIGINT or SIGTERM.
pub async fn run(plan: Plan, settings: Settings) -> anyhow::Result<()> {
    let engine = Arc::new(Mutex::new(Engine::new(&plan, &settings)));
    let directors = Arc::new(Mutex::new(
        settings
            .directors
            .iter()
            .map(|url| DirectorStats {
                url: url.clone(),
                ..DirectorStats::default()
            })
            .collect::<Vec<_>>(),
    ));
    let listener = tokio::net::TcpListener::bind(settings.listen)
        .await
        .with_context(|| format!("listening on {} (healthcheck.listen)", settings.listen))?;
    let (tx, rx) = watch::channel(0u64);
    let tx = Arc::new(tx);
    let prober = Prober::new(&settings, plan.checks.iter().any(|c| c.kind == Kind::Gue));
    let mut seed = Spread::from_entropy();
    for (i, spec) in plan.checks.iter().enumerate() {
        let (engine, prober, tx, spec) = (engine.clone(), prober.clone(), tx.clone(), spec.clone());
        let mut spread = Spread::new(seed.next_u64());
        tokio::spawn(async move {
            let mut at = tokio::time::Instant::now() + first_delay(&spec.timing, spread.fraction());
            loop {
                tokio::time::sleep_until(at).await;
                let (outcome, took) = prober.probe(&spec).await;
                if let Outcome::Error(why) = &outcome {
                    tracing::error!("{spec}: could not probe: {why}");
                }
                let (rec, changing) = {
                    let Ok(mut e) = engine.lock() else { return };
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
                    Some(false) => {
                        tracing::info!("self-suspicion over: verdicts follow the checks again")
                    }
                    None => {}
                }
                if rec.state.is_some() || rec.suspicion.is_some() {
                    tx.send_modify(|v| *v += 1);
                }
                at += next_delay(&spec.timing, changing, spread.fraction());
                // A probe longer than its interval must not make the next
                // ones pile up.
                at = at.max(tokio::time::Instant::now());
            }
        });
    }
    for k in 0..settings.directors.len() {
        tokio::spawn(crate::push::run_director(
            k,
            engine.clone(),
            directors.clone(),
            rx.clone(),
            settings.api_token_file.clone(),
            settings.resync,
        ));
    }
    let app = crate::serve::router(Shared {
        engine: engine.clone(),
        directors,
    });
    tracing::info!(
        "checking {} backends with {} checks; serving {} on {}",
        plan.holders.len(),
        plan.checks.len(),
        crate::serve::HEALTH,
        settings.listen
    );
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown())
        .await
        .context("serving /health and /metrics")?;
    tracing::info!("stopping");
    Ok(())
}

async fn shutdown() {
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(t) => t,
        Err(e) => {
            tracing::error!("installing the SIGTERM handler: {e}");
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
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
