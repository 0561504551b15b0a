//! `/metrics` (OpenMetrics text, encoded by the Prometheus client
//! library, as the director's): probes, failures, errors and latency per
//! check, state changes, self-suspicion, and pushes per director with
//! their failures. Built for each scrape from the engine's plain data.

use std::fmt;
use std::time::Duration;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::text::encode;
use prometheus_client::encoding::{DescriptorEncoder, NoLabelSet};
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;

use crate::dampen::State;
use crate::engine::Engine;
use crate::push::DirectorStats;

/// Upper bounds of the latency buckets, in seconds.
pub const BUCKETS: [f64; 12] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
];

/// A latency histogram with the [`BUCKETS`] bounds.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Histogram {
    /// Observations at or below each bound (not cumulative).
    counts: [u64; BUCKETS.len()],
    /// Observations above the last bound.
    over: u64,
    sum: f64,
}

impl Histogram {
    /// Counts one observation.
    pub fn observe(&mut self, d: Duration) {
        let s = d.as_secs_f64();
        self.sum += s;
        match BUCKETS.iter().position(|b| s <= *b) {
            Some(i) => self.counts[i] += 1,
            None => self.over += 1,
        }
    }

    /// Observations made.
    pub fn count(&self) -> u64 {
        self.counts.iter().sum::<u64>() + self.over
    }
}

/// A metric's labels.
type Labels = Vec<(String, String)>;

fn labels(pairs: &[(&str, &str)]) -> Labels {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_string(), (*v).to_string()))
        .collect()
}

/// What one scrape shows, copied out of the engine and the pushers so
/// that the locks are not held while encoding.
#[derive(Debug)]
struct Snapshot {
    /// Per check: name, type, probes, failures, errors, state (1 up, 0
    /// down, -1 unknown), changes to up and to down, latency.
    checks: Vec<CheckRow>,
    suspicious: bool,
    episodes: u64,
    directors: Vec<DirectorStats>,
}

#[derive(Debug)]
struct CheckRow {
    name: String,
    kind: &'static str,
    probes: u64,
    failures: u64,
    errors: u64,
    up: i64,
    to_up: u64,
    to_down: u64,
    latency: Histogram,
}

impl Snapshot {
    fn of(engine: &Engine, directors: &[DirectorStats]) -> Snapshot {
        Snapshot {
            checks: engine
                .checks()
                .iter()
                .map(|c| CheckRow {
                    name: c.spec.to_string(),
                    kind: c.spec.kind.as_str(),
                    probes: c.probes,
                    failures: c.failures,
                    errors: c.errors,
                    up: match c.state() {
                        State::Up => 1,
                        State::Down => 0,
                        State::Unknown => -1,
                    },
                    to_up: c.changes.get("up").copied().unwrap_or(0),
                    to_down: c.changes.get("down").copied().unwrap_or(0),
                    latency: c.latency.clone(),
                })
                .collect(),
            suspicious: engine.suspicious(),
            episodes: engine.suspicion_episodes(),
            directors: directors.to_vec(),
        }
    }
}

/// A counter family: `name_total` once encoded.
fn counters(
    enc: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    rows: impl IntoIterator<Item = (Labels, u64)>,
) -> fmt::Result {
    let mut m = enc.encode_descriptor(name, help, None, MetricType::Counter)?;
    for (l, v) in rows {
        m.encode_family(&l)?
            .encode_counter::<NoLabelSet, u64, u64>(&v, None)?;
    }
    Ok(())
}

fn gauges(
    enc: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    rows: impl IntoIterator<Item = (Labels, i64)>,
) -> fmt::Result {
    let mut m = enc.encode_descriptor(name, help, None, MetricType::Gauge)?;
    for (l, v) in rows {
        m.encode_family(&l)?.encode_gauge(&v)?;
    }
    Ok(())
}

impl Collector for Snapshot {
    fn encode(&self, mut enc: DescriptorEncoder) -> fmt::Result {
        let check = |c: &CheckRow| labels(&[("check", &c.name)]);
        counters(
            &mut enc,
            "glb_healthcheck_probes",
            "Probes made, by check.",
            self.checks
                .iter()
                .map(|c| (labels(&[("check", &c.name), ("type", c.kind)]), c.probes)),
        )?;
        counters(
            &mut enc,
            "glb_healthcheck_probe_failures",
            "Probes that failed (the backend did not answer as required), by check.",
            self.checks.iter().map(|c| (check(c), c.failures)),
        )?;
        counters(
            &mut enc,
            "glb_healthcheck_probe_errors",
            "Probes the checker could not make (internal errors, no verdict), by check.",
            self.checks.iter().map(|c| (check(c), c.errors)),
        )?;
        gauges(
            &mut enc,
            "glb_healthcheck_check_up",
            "A check's dampened state: 1 up, 0 down, -1 unknown.",
            self.checks.iter().map(|c| (check(c), c.up)),
        )?;
        counters(
            &mut enc,
            "glb_healthcheck_state_changes",
            "State changes of a check, by the state reached.",
            self.checks.iter().flat_map(|c| {
                [("up", c.to_up), ("down", c.to_down)]
                    .map(|(to, n)| (labels(&[("check", &c.name), ("to", to)]), n))
            }),
        )?;
        {
            let mut m = enc.encode_descriptor(
                "glb_healthcheck_probe_seconds",
                "Latency of probes that got an answer or timed out, by check.",
                None,
                MetricType::Histogram,
            )?;
            for c in &self.checks {
                let h = &c.latency;
                let mut buckets: Vec<(f64, u64)> = BUCKETS.iter().copied().zip(h.counts).collect();
                buckets.push((f64::INFINITY, h.over));
                m.encode_family(&check(c))?.encode_histogram::<NoLabelSet>(
                    h.sum,
                    h.count(),
                    &buckets,
                    None,
                )?;
            }
        }
        gauges(
            &mut enc,
            "glb_healthcheck_self_suspicion",
            "1 while more than the configured share of all checks fail together: verdicts are kept as they were.",
            [(Labels::new(), i64::from(self.suspicious))],
        )?;
        counters(
            &mut enc,
            "glb_healthcheck_self_suspicion_episodes",
            "Times self-suspicion began.",
            [(Labels::new(), self.episodes)],
        )?;
        let director = |d: &DirectorStats| labels(&[("director", &d.url)]);
        counters(
            &mut enc,
            "glb_healthcheck_pushes",
            "Batches pushed to a director and accepted.",
            self.directors.iter().map(|d| (director(d), d.pushes)),
        )?;
        counters(
            &mut enc,
            "glb_healthcheck_push_failures",
            "Pushes to a director that failed (unreachable, refused); each is retried.",
            self.directors.iter().map(|d| (director(d), d.failures)),
        )?;
        gauges(
            &mut enc,
            "glb_healthcheck_director_in_sync",
            "1 when the director acknowledged every current verdict.",
            self.directors
                .iter()
                .map(|d| (director(d), i64::from(d.in_sync))),
        )
    }
}

/// The whole exposition (OpenMetrics text, encoded by the Prometheus
/// client library).
pub fn render(engine: &Engine, directors: &[DirectorStats]) -> String {
    let mut registry = Registry::default();
    registry.register_collector(Box::new(Snapshot::of(engine, directors)));
    let mut out = String::new();
    // Writing into a String does not fail.
    let _ = encode(&mut out, &registry);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_buckets_hold_each_observation_once() {
        let mut h = Histogram::default();
        h.observe(Duration::from_micros(300));
        h.observe(Duration::from_millis(30));
        h.observe(Duration::from_secs(9));
        assert_eq!(h.count(), 3);
        assert_eq!(h.counts[0], 1);
        assert_eq!(h.counts[6], 1, "30 ms is in the 50 ms bucket");
        assert_eq!(h.over, 1);
    }

    #[test]
    fn latency_is_a_histogram_per_check_with_an_inf_bucket() {
        let c = proto::config::Config::from_json(
            r#"{"tables":[{"name":"web","hash_key":"00000000000000000000000000000001","seed":"00000000000000000000000000000002",
                "backends":[{"ip":"198.51.100.11","healthchecks":{"http":80}}]}]}"#,
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let s =
            crate::settings::Settings::from_values(None, None).unwrap_or_else(|e| panic!("{e}"));
        let mut e = Engine::new(
            &crate::checks::Plan::from_config(&c, &s).unwrap_or_else(|e| panic!("{e}")),
            &s,
        );
        e.record(0, crate::engine::Outcome::Pass, Duration::from_millis(3), 0);
        e.record(
            0,
            crate::engine::Outcome::Fail("status 503".into()),
            Duration::from_secs(9),
            0,
        );
        let text = render(&e, &[]);
        let l = "check=\"http 198.51.100.11:80/\"";
        for want in [
            format!("glb_healthcheck_probe_seconds_bucket{{le=\"0.0025\",{l}}} 0"),
            format!("glb_healthcheck_probe_seconds_bucket{{le=\"0.005\",{l}}} 1"),
            format!("glb_healthcheck_probe_seconds_bucket{{le=\"2.5\",{l}}} 1"),
            format!("glb_healthcheck_probe_seconds_bucket{{le=\"+Inf\",{l}}} 2"),
            format!("glb_healthcheck_probe_seconds_count{{{l}}} 2"),
            format!("glb_healthcheck_probes_total{{{l},type=\"http\"}} 2"),
            format!("glb_healthcheck_probe_failures_total{{{l}}} 1"),
            format!("glb_healthcheck_check_up{{{l}}} -1"),
        ] {
            assert!(text.contains(&want), "{want} in\n{text}");
        }
    }

    #[test]
    fn the_exposition_has_every_family_with_its_samples() {
        let e = Engine::new(
            &crate::checks::Plan::default(),
            &crate::settings::Settings::from_values(None, None).unwrap_or_else(|e| panic!("{e}")),
        );
        let d = [DirectorStats {
            url: "http://192.0.2.1:9610".into(),
            pushes: 3,
            failures: 1,
            ..DirectorStats::default()
        }];
        let text = render(&e, &d);
        assert!(
            text.contains("glb_healthcheck_pushes_total{director=\"http://192.0.2.1:9610\"} 3"),
            "{text}"
        );
        assert!(
            text.contains(
                "glb_healthcheck_push_failures_total{director=\"http://192.0.2.1:9610\"} 1"
            ),
            "{text}"
        );
        assert!(text.contains("glb_healthcheck_self_suspicion 0"), "{text}");
        assert!(text.ends_with("# EOF\n"), "{text}");
    }
}
