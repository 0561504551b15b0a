//! `/metrics` in the Prometheus text format: probes, failures, errors and
//! latency per check, state changes, self-suspicion, and pushes per
//! director with their failures.

use std::fmt::Write as _;
use std::time::Duration;

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

/// Escapes a label value.
fn label(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// The whole exposition.
pub fn render(engine: &Engine, directors: &[DirectorStats]) -> String {
    let mut o = String::new();
    let checks = engine.checks();
    let family = |o: &mut String, name: &str, kind: &str, help: &str| {
        let _ = writeln!(o, "# HELP {name} {help}\n# TYPE {name} {kind}");
    };
    family(
        &mut o,
        "glb_healthcheck_probes_total",
        "counter",
        "Probes made, by check.",
    );
    for c in checks {
        let _ = writeln!(
            o,
            "glb_healthcheck_probes_total{{check=\"{}\",type=\"{}\"}} {}",
            label(&c.spec.to_string()),
            c.spec.kind.as_str(),
            c.probes
        );
    }
    family(
        &mut o,
        "glb_healthcheck_probe_failures_total",
        "counter",
        "Probes that failed (the backend did not answer as required), by check.",
    );
    for c in checks {
        let _ = writeln!(
            o,
            "glb_healthcheck_probe_failures_total{{check=\"{}\"}} {}",
            label(&c.spec.to_string()),
            c.failures
        );
    }
    family(
        &mut o,
        "glb_healthcheck_probe_errors_total",
        "counter",
        "Probes the checker could not make (internal errors, no verdict), by check.",
    );
    for c in checks {
        let _ = writeln!(
            o,
            "glb_healthcheck_probe_errors_total{{check=\"{}\"}} {}",
            label(&c.spec.to_string()),
            c.errors
        );
    }
    family(
        &mut o,
        "glb_healthcheck_check_up",
        "gauge",
        "A check's dampened state: 1 up, 0 down, -1 unknown.",
    );
    for c in checks {
        let v = match c.state() {
            crate::dampen::State::Up => 1,
            crate::dampen::State::Down => 0,
            crate::dampen::State::Unknown => -1,
        };
        let _ = writeln!(
            o,
            "glb_healthcheck_check_up{{check=\"{}\"}} {v}",
            label(&c.spec.to_string())
        );
    }
    family(
        &mut o,
        "glb_healthcheck_state_changes_total",
        "counter",
        "State changes of a check, by the state reached.",
    );
    for c in checks {
        for to in ["up", "down"] {
            let _ = writeln!(
                o,
                "glb_healthcheck_state_changes_total{{check=\"{}\",to=\"{to}\"}} {}",
                label(&c.spec.to_string()),
                c.changes.get(to).copied().unwrap_or(0)
            );
        }
    }
    family(
        &mut o,
        "glb_healthcheck_probe_seconds",
        "histogram",
        "Latency of probes that got an answer or timed out, by check.",
    );
    for c in checks {
        let name = label(&c.spec.to_string());
        let mut cumulative = 0;
        let h = &c.latency;
        for (b, n) in BUCKETS.iter().zip(h.counts) {
            cumulative += n;
            let _ = writeln!(
                o,
                "glb_healthcheck_probe_seconds_bucket{{check=\"{name}\",le=\"{b}\"}} {cumulative}"
            );
        }
        let _ = writeln!(
            o,
            "glb_healthcheck_probe_seconds_bucket{{check=\"{name}\",le=\"+Inf\"}} {}",
            h.count()
        );
        let _ = writeln!(
            o,
            "glb_healthcheck_probe_seconds_sum{{check=\"{name}\"}} {}",
            h.sum
        );
        let _ = writeln!(
            o,
            "glb_healthcheck_probe_seconds_count{{check=\"{name}\"}} {}",
            h.count()
        );
    }
    family(
        &mut o,
        "glb_healthcheck_self_suspicion",
        "gauge",
        "1 while more than the configured share of all checks fail together: verdicts are kept as they were.",
    );
    let _ = writeln!(
        o,
        "glb_healthcheck_self_suspicion {}",
        u8::from(engine.suspicious())
    );
    family(
        &mut o,
        "glb_healthcheck_self_suspicion_episodes_total",
        "counter",
        "Times self-suspicion began.",
    );
    let _ = writeln!(
        o,
        "glb_healthcheck_self_suspicion_episodes_total {}",
        engine.suspicion_episodes()
    );
    family(
        &mut o,
        "glb_healthcheck_pushes_total",
        "counter",
        "Batches pushed to a director and accepted.",
    );
    for d in directors {
        let _ = writeln!(
            o,
            "glb_healthcheck_pushes_total{{director=\"{}\"}} {}",
            label(&d.url),
            d.pushes
        );
    }
    family(
        &mut o,
        "glb_healthcheck_push_failures_total",
        "counter",
        "Pushes to a director that failed (unreachable, refused); each is retried.",
    );
    for d in directors {
        let _ = writeln!(
            o,
            "glb_healthcheck_push_failures_total{{director=\"{}\"}} {}",
            label(&d.url),
            d.failures
        );
    }
    family(
        &mut o,
        "glb_healthcheck_director_in_sync",
        "gauge",
        "1 when the director acknowledged every current verdict.",
    );
    for d in directors {
        let _ = writeln!(
            o,
            "glb_healthcheck_director_in_sync{{director=\"{}\"}} {}",
            label(&d.url),
            u8::from(d.in_sync)
        );
    }
    o
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
    fn label_values_are_escaped() {
        assert_eq!(label("a\"b\\c"), "a\\\"b\\\\c");
    }
}
