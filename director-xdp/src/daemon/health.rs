//! Health verdicts as runtime state, kept beside the config rather than in
//! it (docs/operations.md, "Health verdicts").
//!
//! The config file is the operator's: the backends, their states, the
//! binds. Health is observed, by the health checker or an operator's
//! `director-ctl health set`, and changes often. The verdicts live in a
//! state file of their own, written (atomically) at every change, read at
//! start so that a restarted director starts from the last verdicts. A
//! verdict is laid over the config's `healthy` and `reachable` of the same
//! backend; the config's own values count for backends without one. So a
//! verdict never rewrites the operator's file, never waits for a pending
//! hand edit of it, and is never lost to one.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use proto::config::Config;
use serde::{Deserialize, Serialize};

/// The state file's format version.
const VERSION: u32 = 1;

/// One backend's last verdict.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Verdict {
    /// false: takes no new flows.
    pub healthy: bool,
    /// false: in no row.
    pub reachable: bool,
    /// Why, as given with the verdict.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// One entry of the state file.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Entry {
    table: String,
    ip: IpAddr,
    healthy: bool,
    reachable: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    reason: Option<String>,
}

/// The state file.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    version: u32,
    verdicts: Vec<Entry>,
    /// The director is drained (`POST /v1/director/drain`): a restarted
    /// director stays drained. Absent: false.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    drained: bool,
}

/// Why the state file could not be read.
#[derive(Debug, thiserror::Error)]
pub(crate) enum StateError {
    /// Reading failed (not "it does not exist": that is an empty state).
    #[error("reading the health state file {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The file is not a state file of this version.
    #[error(
        "the health state file {path} is not valid ({message}); fix it or remove it (the verdicts then start from the config's, and the health checker sends its own again)"
    )]
    Invalid { path: PathBuf, message: String },
}

/// Every backend's last verdict, by (table, address).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Health {
    verdicts: BTreeMap<(String, IpAddr), Verdict>,
    /// The director is drained: it announces no VIP.
    pub drained: bool,
}

impl Health {
    /// The state file at `path`; empty when there is none.
    pub fn load(path: &Path) -> Result<Health, StateError> {
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Health::default()),
            Err(source) => {
                return Err(StateError::Read {
                    path: path.to_path_buf(),
                    source,
                });
            }
        };
        let invalid = |message: String| StateError::Invalid {
            path: path.to_path_buf(),
            message,
        };
        let file: File = serde_json::from_str(&text).map_err(|e| invalid(e.to_string()))?;
        if file.version != VERSION {
            return Err(invalid(format!(
                "version {} (this director reads version {VERSION})",
                file.version
            )));
        }
        let mut verdicts = BTreeMap::new();
        for e in file.verdicts {
            let key = (e.table, e.ip);
            if verdicts.contains_key(&key) {
                return Err(invalid(format!(
                    "backend {} of table \"{}\" is listed twice",
                    key.1, key.0
                )));
            }
            let v = Verdict {
                healthy: e.healthy,
                reachable: e.reachable,
                reason: e.reason,
            };
            verdicts.insert(key, v);
        }
        Ok(Health {
            verdicts,
            drained: file.drained,
        })
    }

    /// The state file's text.
    pub fn render(&self) -> String {
        let file = File {
            version: VERSION,
            verdicts: self
                .verdicts
                .iter()
                .map(|((table, ip), v)| Entry {
                    table: table.clone(),
                    ip: *ip,
                    healthy: v.healthy,
                    reachable: v.reachable,
                    reason: v.reason.clone(),
                })
                .collect(),
            drained: self.drained,
        };
        // Serialising plain data into a string cannot fail.
        format!(
            "{}\n",
            serde_json::to_string_pretty(&file).unwrap_or_default()
        )
    }

    /// The verdict of backend `ip` of table `table`, if any.
    pub fn get(&self, table: &str, ip: IpAddr) -> Option<&Verdict> {
        self.verdicts.get(&(table.to_string(), ip))
    }

    /// Sets a verdict; what `healthy` or `reachable` leaves out (`None`)
    /// stays as `current` has it.
    pub fn set(
        &mut self,
        table: &str,
        ip: IpAddr,
        current: (bool, bool),
        healthy: Option<bool>,
        reachable: Option<bool>,
        reason: Option<String>,
    ) {
        self.verdicts.insert(
            (table.to_string(), ip),
            Verdict {
                healthy: healthy.unwrap_or(current.0),
                reachable: reachable.unwrap_or(current.1),
                reason,
            },
        );
    }

    /// Forgets the verdicts of backends that `config` does not have.
    pub fn retain_in(&mut self, config: &Config) {
        self.verdicts.retain(|(t, ip), _| {
            config
                .table(t)
                .is_some_and(|t| t.backends.iter().any(|b| b.backend.addr == *ip))
        });
    }

    /// `config` with every verdict laid over its backend's flags.
    pub fn overlay(&self, config: &Config) -> Config {
        let mut out = config.clone();
        for t in &mut out.tables {
            for b in &mut t.backends {
                if let Some(v) = self.get(&t.name, b.backend.addr) {
                    b.backend.healthy = v.healthy;
                    b.backend.reachable = v.reachable;
                }
            }
        }
        out
    }
}

/// Where the verdicts of the config at `config_path` are kept:
/// `director.state_file`, else beside the config, `NAME.health.json` for a
/// config `NAME.json` (`NAME.health.json` for any other name too).
pub(crate) fn state_path(config_path: &Path, config: &Config) -> PathBuf {
    if let Some(p) = &config.director.state_file {
        return p.clone();
    }
    let stem = config_path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "director".to_string());
    config_path.with_file_name(format!("{stem}.health.json"))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // a failure is the test failing

    use super::*;

    const CONFIG: &str = r#"{"tables":[{"name":"web","hash_key":"000102030405060708090a0b0c0d0e0f",
        "seed":"49a3d861d661ae5ab06ed9326871a2f5","binds":[{"ip":"203.0.113.10","proto":"tcp","port":80}],
        "backends":[{"ip":"198.51.100.1"},{"ip":"198.51.100.2","healthy":false}]}]}"#;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn verdicts_lie_over_the_config_and_the_config_counts_where_there_is_none() {
        let config = Config::from_json(CONFIG).unwrap();
        let mut h = Health::default();
        h.set(
            "web",
            ip("198.51.100.1"),
            (true, true),
            None,
            Some(false),
            Some("no echo".into()),
        );
        let eff = h.overlay(&config);
        let flags: Vec<(bool, bool)> = eff.tables[0]
            .backends
            .iter()
            .map(|b| (b.backend.healthy, b.backend.reachable))
            .collect();
        assert_eq!(flags, [(true, false), (false, true)]);
        h.set(
            "web",
            ip("198.51.100.2"),
            (false, true),
            Some(true),
            None,
            None,
        );
        assert!(h.overlay(&config).tables[0].backends[1].backend.healthy);
        assert!(
            !config.tables[0].backends[1].backend.healthy,
            "the config is untouched"
        );
    }

    #[test]
    fn the_state_file_round_trips_and_a_bad_one_is_refused_by_name() {
        let dir = std::env::temp_dir().join(format!("glbt-health-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("d.health.json");
        assert_eq!(Health::load(&path).unwrap(), Health::default(), "none yet");
        let mut h = Health::default();
        h.set(
            "web",
            ip("198.51.100.1"),
            (true, true),
            Some(false),
            None,
            Some("http 503".into()),
        );
        h.set(
            "web",
            ip("2001:db8::1"),
            (true, true),
            None,
            Some(false),
            None,
        );
        std::fs::write(&path, h.render()).unwrap();
        assert_eq!(Health::load(&path).unwrap(), h);

        for (text, why) in [
            ("{\"version\":1,\"verdicts\":[", "EOF while parsing"),
            (
                "{\"version\":2,\"verdicts\":[]}",
                "version 2 (this director reads version 1)",
            ),
            (
                "{\"version\":1,\"verdicts\":[{\"table\":\"web\",\"ip\":\"198.51.100.1\",\"healthy\":true,\"reachable\":true},{\"table\":\"web\",\"ip\":\"198.51.100.1\",\"healthy\":false,\"reachable\":true}]}",
                "backend 198.51.100.1 of table \"web\" is listed twice",
            ),
        ] {
            std::fs::write(&path, text).unwrap();
            let e = Health::load(&path).unwrap_err().to_string();
            assert!(
                e.starts_with(&format!(
                    "the health state file {} is not valid (",
                    path.display()
                )) && e.contains(why),
                "{e}"
            );
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn verdicts_of_backends_the_config_lost_are_forgotten() {
        let config = Config::from_json(CONFIG).unwrap();
        let mut h = Health::default();
        h.set(
            "web",
            ip("198.51.100.1"),
            (true, true),
            Some(false),
            None,
            None,
        );
        h.set(
            "web",
            ip("198.51.100.9"),
            (true, true),
            Some(false),
            None,
            None,
        );
        h.set(
            "gone",
            ip("198.51.100.1"),
            (true, true),
            Some(false),
            None,
            None,
        );
        h.retain_in(&config);
        assert!(h.get("web", ip("198.51.100.1")).is_some());
        assert_eq!(h.verdicts.len(), 1);
    }

    #[test]
    fn the_state_file_sits_beside_the_config_unless_configured() {
        let config = Config::from_json(CONFIG).unwrap();
        assert_eq!(
            state_path(Path::new("/etc/glb/director.json"), &config),
            Path::new("/etc/glb/director.health.json")
        );
        assert_eq!(
            state_path(Path::new("/etc/glb/forwarding_table"), &config),
            Path::new("/etc/glb/forwarding_table.health.json")
        );
    }
}
