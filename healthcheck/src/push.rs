//! Pushing verdicts: one task per director sends, in one `PUT /v1/health`
//! per round of changes, every verdict the director has not acknowledged.
//! A failed push is retried with backoff; a director that failed (or was
//! never reached) gets every current verdict in its next batch, and every
//! director gets them all again every `resync_ms`, in case it restarted
//! and lost them.
//!
//! [`batch`] (what to send) is pure.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use proto::api::{HealthBatch, HealthBatchAnswer, TableBackend, Verdict};
use serde::Serialize;
use tokio::sync::watch;

use crate::engine::Engine;
use crate::schedule::Spread;

/// The flags a director acknowledged, by (table, backend).
pub type Acked = BTreeMap<(String, IpAddr), (Option<bool>, Option<bool>)>;

/// Time given to more changes to join a round before it is pushed: the
/// checks of one event (a backend's http and gue failing) land within it.
pub const COALESCE: Duration = Duration::from_millis(100);
/// First wait after a failed push.
pub const BACKOFF_MIN: Duration = Duration::from_millis(250);
/// Longest wait between retries.
pub const BACKOFF_MAX: Duration = Duration::from_secs(10);

/// The verdicts to send: all of them when `full`, else those whose flags
/// differ from what the director acknowledged.
pub fn batch(verdicts: &[Verdict], acked: &Acked, full: bool) -> Vec<Verdict> {
    verdicts
        .iter()
        .filter(|v| full || acked.get(&(v.table.clone(), v.ip)) != Some(&(v.healthy, v.reachable)))
        .cloned()
        .collect()
}

/// The next wait after a failure: doubled, at most [`BACKOFF_MAX`].
pub fn next_backoff(d: Duration) -> Duration {
    (d * 2).clamp(BACKOFF_MIN, BACKOFF_MAX)
}

/// One director as `GET /health` and `/metrics` show it.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct DirectorStats {
    /// Its API's base URL.
    pub url: String,
    /// Batches accepted.
    pub pushes: u64,
    /// Pushes that failed.
    pub failures: u64,
    /// Whether it acknowledged every current verdict.
    pub in_sync: bool,
    /// Why the last push failed, while it is failing.
    pub last_error: Option<String>,
    /// Its configs applied, from its last answer.
    pub generation: Option<u64>,
    /// Its tables' content hashes, from its last answer.
    pub hashes: BTreeMap<String, Option<String>>,
    /// Backends it did not know, from its last answer.
    pub unknown: Vec<TableBackend>,
}

/// Why a push failed.
#[derive(Debug, thiserror::Error)]
pub enum PushError {
    /// The token file could not be read.
    #[error("reading the token file {path}: {source}")]
    Token {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// No answer.
    #[error("PUT {url}: {source}")]
    Send {
        /// The URL.
        url: String,
        /// Why.
        source: reqwest::Error,
    },
    /// An answer other than 200.
    #[error("PUT {url}: status {status}: {body}")]
    Refused {
        /// The URL.
        url: String,
        /// The status.
        status: u16,
        /// The answer's body.
        body: String,
    },
}

/// Sends one batch to `base` and returns the director's answer.
pub async fn put(
    client: &reqwest::Client,
    base: &str,
    token_file: Option<&PathBuf>,
    batch: &HealthBatch,
) -> Result<HealthBatchAnswer, PushError> {
    let url = format!("{base}{}", proto::api::path::HEALTH);
    let mut req = client.put(&url).json(batch);
    if let Some(path) = token_file {
        let text = std::fs::read_to_string(path).map_err(|source| PushError::Token {
            path: path.clone(),
            source,
        })?;
        req = req.bearer_auth(text.lines().next().unwrap_or_default().trim());
    }
    let answer = req.send().await.map_err(|source| PushError::Send {
        url: url.clone(),
        source,
    })?;
    let status = answer.status().as_u16();
    let body = answer.text().await.map_err(|source| PushError::Send {
        url: url.clone(),
        source,
    })?;
    if status != 200 {
        return Err(PushError::Refused {
            url,
            status,
            body: proto::config::shorten(&body),
        });
    }
    serde_json::from_str(&body).map_err(|e| PushError::Refused {
        url,
        status,
        body: format!("unreadable answer ({e}): {}", proto::config::shorten(&body)),
    })
}

/// Runs the pushes to director `k` until the process ends: wakes when the
/// verdicts may have changed (`changed`), or to resync.
pub async fn run_director(
    k: usize,
    engine: Arc<Mutex<Engine>>,
    stats: Arc<Mutex<Vec<DirectorStats>>>,
    mut changed: watch::Receiver<u64>,
    token_file: Option<PathBuf>,
    resync: Duration,
) {
    let Some(url) = stats
        .lock()
        .ok()
        .and_then(|s| s.get(k).map(|d| d.url.clone()))
    else {
        return;
    };
    let client = match reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(2))
        .timeout(Duration::from_secs(5))
        .no_proxy()
        .build()
    {
        Ok(c) => c,
        Err(e) => {
            tracing::error!("building the HTTP client for {url}: {e}");
            return;
        }
    };
    let mut spread = Spread::from_entropy();
    let mut acked = Acked::new();
    let mut full = true;
    let mut backoff = BACKOFF_MIN;
    let mut last_full = tokio::time::Instant::now();
    loop {
        tokio::time::sleep(COALESCE).await;
        if last_full.elapsed() >= resync {
            full = true;
        }
        let verdicts = match engine.lock() {
            Ok(e) => e.verdicts(),
            Err(_) => return,
        };
        let todo = batch(&verdicts, &acked, full);
        if todo.is_empty() {
            set(&stats, k, |d| d.in_sync = true);
            let wait = resync.saturating_sub(last_full.elapsed());
            tokio::select! {
                r = changed.changed() => if r.is_err() { return },
                () = tokio::time::sleep(wait) => {}
            }
            continue;
        }
        let was_full = full;
        match put(
            &client,
            &url,
            token_file.as_ref(),
            &HealthBatch {
                verdicts: todo.clone(),
            },
        )
        .await
        {
            Ok(answer) => {
                for v in &todo {
                    acked.insert((v.table.clone(), v.ip), (v.healthy, v.reachable));
                }
                if was_full {
                    last_full = tokio::time::Instant::now();
                }
                full = false;
                backoff = BACKOFF_MIN;
                if answer.changed {
                    tracing::info!(
                        "{url}: {} verdicts pushed, tables changed (generation {})",
                        todo.len(),
                        answer.generation
                    );
                }
                if !answer.unknown.is_empty() {
                    tracing::warn!("{url}: unknown to the director: {:?}", answer.unknown);
                }
                set(&stats, k, |d| {
                    d.pushes += 1;
                    d.last_error = None;
                    d.generation = Some(answer.generation);
                    d.hashes = answer.hashes.clone();
                    d.unknown = answer.unknown.clone();
                });
            }
            Err(e) => {
                tracing::warn!("{e}; retrying in {} ms", backoff.as_millis());
                full = true;
                set(&stats, k, |d| {
                    d.failures += 1;
                    d.in_sync = false;
                    d.last_error = Some(e.to_string());
                });
                // Spread so that many checkers do not retry in step.
                tokio::time::sleep(backoff.mul_f64(0.75 + 0.5 * spread.fraction())).await;
                backoff = next_backoff(backoff);
            }
        }
    }
}

fn set(stats: &Mutex<Vec<DirectorStats>>, k: usize, f: impl FnOnce(&mut DirectorStats)) {
    if let Ok(mut s) = stats.lock()
        && let Some(d) = s.get_mut(k)
    {
        f(d);
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // a failure is the test failing

    use super::*;

    fn v(ip: &str, healthy: Option<bool>) -> Verdict {
        Verdict {
            table: "web".into(),
            ip: ip.parse().unwrap(),
            healthy,
            reachable: None,
            reason: None,
        }
    }

    #[test]
    fn only_what_the_director_did_not_acknowledge_is_sent() {
        let all = [
            v("198.51.100.11", Some(true)),
            v("198.51.100.12", Some(false)),
        ];
        let mut acked = Acked::new();
        assert_eq!(batch(&all, &acked, false).len(), 2);
        acked.insert(
            ("web".into(), "198.51.100.11".parse().unwrap()),
            (Some(true), None),
        );
        assert_eq!(batch(&all, &acked, false), vec![all[1].clone()]);
        acked.insert(
            ("web".into(), "198.51.100.12".parse().unwrap()),
            (Some(false), None),
        );
        assert!(batch(&all, &acked, false).is_empty());
        // A director that was unreachable gets everything.
        assert_eq!(batch(&all, &acked, true).len(), 2);
    }

    #[test]
    fn backoff_doubles_up_to_its_bound() {
        let mut d = BACKOFF_MIN;
        let mut seen = vec![d];
        for _ in 0..10 {
            d = next_backoff(d);
            seen.push(d);
        }
        assert_eq!(seen[1], BACKOFF_MIN * 2);
        assert_eq!(*seen.last().unwrap(), BACKOFF_MAX);
    }
}
