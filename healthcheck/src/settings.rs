//! The checker's own settings: the `healthcheck` section (in the config
//! next to `tables`, or a file of its own given with `--settings`), and
//! GLB's top-level `healthchecks` timing object (`interval_ms`,
//! `timeout_ms`, `trigger`), read as is. Every field is documented in
//! docs/healthcheck.md.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;
use serde_json::Value;

/// GLB's default probe interval.
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(2);
/// GLB's default probe timeout.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(1);
/// GLB's default count of equal results before a change (its `trigger`).
pub const DEFAULT_TRIGGER: u32 = 3;
/// Where `GET /health` and `/metrics` are served by default: GLB's
/// checker listens there.
pub const DEFAULT_LISTEN: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 19520);

/// A setting that was refused: where, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct SettingsError {
    /// The field (`healthcheck.tables.web.rise`).
    pub field: String,
    /// What is wrong, with the value.
    pub message: String,
}

fn invalid(field: impl Into<String>, message: impl Into<String>) -> SettingsError {
    SettingsError {
        field: field.into(),
        message: message.into(),
    }
}

/// How often and how patiently one check probes, and how many equal
/// results change its state.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Timing {
    /// Time between probes while the state is steady.
    pub interval: Duration,
    /// Time between probes while the state is unknown or changing.
    pub fast_interval: Duration,
    /// A probe without an answer by then failed.
    pub timeout: Duration,
    /// Passes in a row that make a check up.
    pub rise: u32,
    /// Failures in a row that make a check down.
    pub fall: u32,
    /// Spread of each wait around its interval, in thousandths: 200 means
    /// each wait is drawn from 90% to 110% of the interval.
    pub jitter_permille: u16,
}

impl Default for Timing {
    fn default() -> Self {
        Timing {
            interval: DEFAULT_INTERVAL,
            fast_interval: DEFAULT_INTERVAL / 4,
            timeout: DEFAULT_TIMEOUT,
            rise: DEFAULT_TRIGGER,
            fall: DEFAULT_TRIGGER,
            jitter_permille: 200,
        }
    }
}

/// Timing fields as written: each may be absent, and then comes from the
/// level above (check, table, section, GLB's `healthchecks`, defaults).
#[derive(Clone, Copy, Debug, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TimingFields {
    /// `interval_ms` (GLB's name).
    pub interval_ms: Option<u64>,
    /// `fast_interval_ms`.
    pub fast_interval_ms: Option<u64>,
    /// `timeout_ms` (GLB's name).
    pub timeout_ms: Option<u64>,
    /// `trigger` (GLB's name): both `rise` and `fall`.
    pub trigger: Option<u32>,
    /// `rise`.
    pub rise: Option<u32>,
    /// `fall`.
    pub fall: Option<u32>,
    /// `jitter`: a fraction from 0 to 1.
    pub jitter: Option<f64>,
}

impl TimingFields {
    /// The names these fields have in JSON.
    pub const NAMES: [&'static str; 7] = [
        "interval_ms",
        "fast_interval_ms",
        "timeout_ms",
        "trigger",
        "rise",
        "fall",
        "jitter",
    ];

    /// `base` with the fields given here applied, checked; `at` names where
    /// they were read, for errors.
    pub fn apply(&self, base: Timing, at: &str) -> Result<Timing, SettingsError> {
        let mut t = base;
        let ms = |v: Option<u64>,
                  name: &str,
                  least: u64|
         -> Result<Option<Duration>, SettingsError> {
            match v {
                None => Ok(None),
                Some(n) if (least..=3_600_000).contains(&n) => Ok(Some(Duration::from_millis(n))),
                Some(n) => Err(invalid(
                    format!("{at}.{name}"),
                    format!("{n} is not a time in milliseconds from {least} to 3600000"),
                )),
            }
        };
        if let Some(d) = ms(self.interval_ms, "interval_ms", 10)? {
            t.interval = d;
            // A faster interval never slower than the interval itself.
            if self.fast_interval_ms.is_none() {
                t.fast_interval = t.fast_interval.min(d);
            }
        }
        if let Some(d) = ms(self.fast_interval_ms, "fast_interval_ms", 10)? {
            t.fast_interval = d;
        }
        if let Some(d) = ms(self.timeout_ms, "timeout_ms", 1)? {
            t.timeout = d;
        }
        let count = |v: Option<u32>, name: &str| -> Result<Option<u32>, SettingsError> {
            match v {
                None => Ok(None),
                Some(n) if (1..=100).contains(&n) => Ok(Some(n)),
                Some(n) => Err(invalid(
                    format!("{at}.{name}"),
                    format!("{n} is not a count from 1 to 100"),
                )),
            }
        };
        if let Some(n) = count(self.trigger, "trigger")? {
            t.rise = n;
            t.fall = n;
        }
        if let Some(n) = count(self.rise, "rise")? {
            t.rise = n;
        }
        if let Some(n) = count(self.fall, "fall")? {
            t.fall = n;
        }
        if let Some(j) = self.jitter {
            if !(0.0..=1.0).contains(&j) {
                return Err(invalid(
                    format!("{at}.jitter"),
                    format!("{j} is not a fraction from 0 to 1"),
                ));
            }
            t.jitter_permille = (j * 1000.0).round() as u16;
        }
        if t.fast_interval > t.interval {
            return Err(invalid(
                format!("{at}.fast_interval_ms"),
                format!(
                    "{} ms is longer than interval_ms ({} ms)",
                    t.fast_interval.as_millis(),
                    t.interval.as_millis()
                ),
            ));
        }
        Ok(t)
    }
}

/// The `healthcheck` section as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Raw {
    #[serde(default)]
    directors: Vec<String>,
    api_token_file: Option<PathBuf>,
    listen: Option<String>,
    source_v4: Option<Ipv4Addr>,
    source_v6: Option<Ipv6Addr>,
    suspicion_fraction: Option<f64>,
    suspicion_min_failing: Option<usize>,
    resync_ms: Option<u64>,
    #[serde(default)]
    tables: BTreeMap<String, TimingFields>,
    // The timing fields, spelled out: serde refuses unknown fields only
    // without `flatten`.
    interval_ms: Option<u64>,
    fast_interval_ms: Option<u64>,
    timeout_ms: Option<u64>,
    trigger: Option<u32>,
    rise: Option<u32>,
    fall: Option<u32>,
    jitter: Option<f64>,
}

impl Raw {
    fn timing(&self) -> TimingFields {
        TimingFields {
            interval_ms: self.interval_ms,
            fast_interval_ms: self.fast_interval_ms,
            timeout_ms: self.timeout_ms,
            trigger: self.trigger,
            rise: self.rise,
            fall: self.fall,
            jitter: self.jitter,
        }
    }
}

/// The checker's settings, checked.
#[derive(Clone, Debug, PartialEq)]
pub struct Settings {
    /// Base URLs of the directors' APIs (`http://192.0.2.1:9610`), pushed
    /// to in this order.
    pub directors: Vec<String>,
    /// File whose first line is the directors' bearer token.
    pub api_token_file: Option<PathBuf>,
    /// Where `GET /health` and `/metrics` are served.
    pub listen: SocketAddr,
    /// Source address of IPv4 probes (and the inner source of `gue` probes).
    pub source_v4: Option<Ipv4Addr>,
    /// Source address of IPv6 probes.
    pub source_v6: Option<Ipv6Addr>,
    /// Self-suspicion: more than this share of all checks failing at once
    /// means the checker's own network is suspect.
    pub suspicion_fraction: f64,
    /// ... and at least this many of them.
    pub suspicion_min_failing: usize,
    /// Every director receives every verdict again this often, in case it
    /// restarted and lost them.
    pub resync: Duration,
    /// Timing for every check, unless its table or itself says otherwise.
    pub timing: Timing,
    /// Timing of a table's checks, by table name.
    pub tables: BTreeMap<String, Timing>,
}

impl Settings {
    /// Reads the settings from the `healthcheck` section (`None`: absent)
    /// and GLB's top-level `healthchecks` object (`None`: absent).
    pub fn from_values(
        section: Option<&Value>,
        glb: Option<&Value>,
    ) -> Result<Settings, SettingsError> {
        let mut timing = Timing::default();
        if let Some(g) = glb {
            // GLB's checker reads only these three there.
            #[derive(Deserialize)]
            struct Glb {
                interval_ms: Option<u64>,
                timeout_ms: Option<u64>,
                trigger: Option<u32>,
            }
            let g: Glb = serde_json::from_value(g.clone())
                .map_err(|e| invalid("healthchecks", e.to_string()))?;
            timing = TimingFields {
                interval_ms: g.interval_ms,
                timeout_ms: g.timeout_ms,
                trigger: g.trigger,
                ..TimingFields::default()
            }
            .apply(timing, "healthchecks")?;
        }
        let raw: Raw = match section {
            Some(v) => serde_json::from_value(v.clone())
                .map_err(|e| invalid("healthcheck", e.to_string()))?,
            None => Raw::default(),
        };
        let timing = raw.timing().apply(timing, "healthcheck")?;
        let mut tables = BTreeMap::new();
        for (name, f) in &raw.tables {
            tables.insert(
                name.clone(),
                f.apply(timing, &format!("healthcheck.tables.{name}"))?,
            );
        }
        let mut directors = Vec::new();
        for (i, d) in raw.directors.iter().enumerate() {
            let url = d.trim_end_matches('/');
            let rest = url.strip_prefix("http://").ok_or_else(|| {
                invalid(
                    format!("healthcheck.directors[{i}]"),
                    format!("\"{d}\" is not an http:// URL (like http://192.0.2.1:9610)"),
                )
            })?;
            if rest.is_empty() || rest.contains('/') {
                return Err(invalid(
                    format!("healthcheck.directors[{i}]"),
                    format!("\"{d}\" is not a base URL: scheme, host and port only"),
                ));
            }
            if directors.iter().any(|u| u == url) {
                return Err(invalid(
                    format!("healthcheck.directors[{i}]"),
                    format!("\"{d}\" is listed twice"),
                ));
            }
            directors.push(url.to_string());
        }
        if let Some(p) = &raw.api_token_file
            && !p.is_absolute()
        {
            return Err(invalid(
                "healthcheck.api_token_file",
                format!("\"{}\" is not an absolute path", p.display()),
            ));
        }
        let listen = match &raw.listen {
            None => DEFAULT_LISTEN,
            Some(s) => s.parse().map_err(|_| {
                invalid(
                    "healthcheck.listen",
                    format!("\"{s}\" is not an address and port (like 127.0.0.1:19520)"),
                )
            })?,
        };
        let suspicion_fraction = raw.suspicion_fraction.unwrap_or(0.5);
        if !(0.0..=1.0).contains(&suspicion_fraction) {
            return Err(invalid(
                "healthcheck.suspicion_fraction",
                format!(
                    "{suspicion_fraction} is not a fraction from 0 to 1 (1 turns self-suspicion off)"
                ),
            ));
        }
        let resync = match raw.resync_ms {
            None => Duration::from_secs(30),
            Some(n) if n >= 100 => Duration::from_millis(n),
            Some(n) => {
                return Err(invalid(
                    "healthcheck.resync_ms",
                    format!("{n} is below 100 ms"),
                ));
            }
        };
        Ok(Settings {
            directors,
            api_token_file: raw.api_token_file,
            listen,
            source_v4: raw.source_v4,
            source_v6: raw.source_v6,
            suspicion_fraction,
            suspicion_min_failing: raw.suspicion_min_failing.unwrap_or(2).max(1),
            resync,
            timing,
            tables,
        })
    }

    /// The timing of `table`'s checks before a check's own fields.
    pub fn table_timing(&self, table: &str) -> Timing {
        self.tables.get(table).copied().unwrap_or(self.timing)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // a failure is the test failing

    use super::*;
    use serde_json::json;

    #[test]
    fn defaults_are_glbs_two_seconds_one_second_three() {
        let s = Settings::from_values(None, None).unwrap();
        assert_eq!(s.timing.interval, Duration::from_secs(2));
        assert_eq!(s.timing.timeout, Duration::from_secs(1));
        assert_eq!((s.timing.rise, s.timing.fall), (3, 3));
        assert_eq!(s.listen, DEFAULT_LISTEN);
        assert_eq!(s.suspicion_fraction, 0.5);
    }

    #[test]
    fn glb_timing_is_read_and_the_section_and_tables_override_it() {
        let glb = json!({"interval_ms": 5000, "timeout_ms": 800, "trigger": 2});
        let section = json!({
            "directors": ["http://192.0.2.1:9610/"],
            "fall": 4,
            "tables": {"web": {"interval_ms": 1000, "rise": 1}}
        });
        let s = Settings::from_values(Some(&section), Some(&glb)).unwrap();
        assert_eq!(s.directors, vec!["http://192.0.2.1:9610".to_string()]);
        assert_eq!(s.timing.interval, Duration::from_millis(5000));
        assert_eq!((s.timing.rise, s.timing.fall), (2, 4));
        let web = s.table_timing("web");
        assert_eq!(web.interval, Duration::from_millis(1000));
        assert!(web.fast_interval <= web.interval);
        assert_eq!(
            (web.rise, web.fall, web.timeout),
            (1, 4, Duration::from_millis(800))
        );
        assert_eq!(s.table_timing("other"), s.timing);
    }

    #[test]
    fn the_example_settings_file_reads() {
        let v: Value =
            serde_json::from_str(include_str!("../../examples/healthcheck.json")).unwrap();
        let s = Settings::from_values(Some(&v), None).unwrap();
        assert_eq!(s.directors.len(), 2);
        assert_eq!(s.table_timing("web").fall, 2);
        assert_eq!(s.source_v4, Some(Ipv4Addr::new(192, 0, 2, 5)));
    }

    #[test]
    fn bad_settings_name_the_field_and_value() {
        let e = Settings::from_values(Some(&json!({"rise": 0})), None).unwrap_err();
        assert_eq!(
            e.to_string(),
            "healthcheck.rise: 0 is not a count from 1 to 100"
        );
        let e =
            Settings::from_values(Some(&json!({"directors": ["https://x:1"]})), None).unwrap_err();
        assert!(
            e.to_string()
                .starts_with("healthcheck.directors[0]: \"https://x:1\""),
            "{e}"
        );
        let e = Settings::from_values(Some(&json!({"intervall_ms": 1})), None).unwrap_err();
        assert!(e.to_string().contains("intervall_ms"), "{e}");
        let e = Settings::from_values(
            Some(&json!({"tables": {"web": {"fast_interval_ms": 5000}}})),
            None,
        )
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            "healthcheck.tables.web.fast_interval_ms: 5000 ms is longer than interval_ms (2000 ms)"
        );
    }
}
