//! The daemon's metrics, rendered with the Prometheus client library
//! (OpenMetrics text): a registry built for each scrape from the data
//! plane's counters and the live tables, so that what is exported is
//! always what the kernel and the tables hold now. The library does the
//! encoding (names, label escaping, `_total` on counters, the final
//! `# EOF`).

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

/// A metric's labels.
pub(crate) type Labels = Vec<(String, String)>;

/// The labels of a sample.
pub(crate) fn labels(pairs: &[(&str, &str)]) -> Labels {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_string(), (*v).to_string()))
        .collect()
}

/// A count as a gauge's value (gauges are signed).
pub(crate) fn gauge_value(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// One scrape's registry.
#[derive(Default)]
pub(crate) struct Metrics {
    registry: Registry,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

impl Metrics {
    /// A counter family, `NAME_total` once rendered.
    pub(crate) fn counter(&mut self, name: &str, help: &str) -> Family<Labels, Counter> {
        let family = Family::<Labels, Counter>::default();
        self.registry.register(name, help, family.clone());
        family
    }

    /// A gauge family.
    pub(crate) fn gauge(&mut self, name: &str, help: &str) -> Family<Labels, Gauge> {
        let family = Family::<Labels, Gauge>::default();
        self.registry.register(name, help, family.clone());
        family
    }

    /// A gauge without labels.
    pub(crate) fn single_gauge(&mut self, name: &str, help: &str, value: u64) {
        let g = Gauge::<i64>::default();
        g.set(gauge_value(value));
        self.registry.register(name, help, g);
    }

    /// A counter without labels.
    pub(crate) fn single_counter(&mut self, name: &str, help: &str, value: u64) {
        let c = Counter::<u64>::default();
        c.inc_by(value);
        self.registry.register(name, help, c);
    }

    /// The OpenMetrics text.
    pub(crate) fn render(&self) -> String {
        let mut out = String::new();
        // Writing into a String does not fail.
        let _ = encode(&mut out, &self.registry);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_openmetrics_with_escaped_labels() {
        let mut m = Metrics::default();
        m.counter("glb_bind_packets", "Packets per bind")
            .get_or_create(&labels(&[
                ("table", "we\"b"),
                ("bind", "203.0.113.10:80/tcp"),
            ]))
            .inc_by(7);
        m.single_gauge("glb_director_generation", "Configs applied", 3);
        assert_eq!(
            m.render(),
            "# HELP glb_bind_packets Packets per bind.\n\
             # TYPE glb_bind_packets counter\n\
             glb_bind_packets_total{table=\"we\\\"b\",bind=\"203.0.113.10:80/tcp\"} 7\n\
             # HELP glb_director_generation Configs applied.\n\
             # TYPE glb_director_generation gauge\n\
             glb_director_generation 3\n\
             # EOF\n"
        );
    }
}
