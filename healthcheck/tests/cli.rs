//! `healthcheck` as an operator runs it: what it says about bad input.
//! (Its probes are tested in namespaces: tests/tests/healthcheck_lab.rs.)
#![allow(clippy::unwrap_used)] // helpers of tests: a failure is the test failing

use std::path::PathBuf;
use std::process::{Command, Output};

/// A file in a directory of its own, removed on drop.
struct Scratch(PathBuf);

impl Scratch {
    fn path(&self) -> &str {
        self.0.to_str().unwrap()
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        if let Some(dir) = self.0.parent() {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

fn scratch(name: &str, text: &str) -> Scratch {
    let dir = std::env::temp_dir().join(format!("healthcheck-cli-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    Scratch(p)
}

fn healthcheck(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_healthcheck"))
        .args(args)
        .env("RUST_LOG", "warn")
        .output()
        .unwrap()
}

fn config(healthchecks: &str, extra: &str) -> String {
    format!(
        r#"{{"tables":[{{"name":"web","hash_key":"00000000000000000000000000000001","seed":"00000000000000000000000000000002",
            "binds":[{{"ip":"203.0.113.10","proto":"tcp","port":80}}],
            "backends":[{{"ip":"198.51.100.11","healthchecks":{healthchecks}}},{{"ip":"198.51.100.12"}}]}}]{extra}}}"#
    )
}

#[test]
fn a_bad_check_is_refused_naming_the_table_backend_and_field() {
    let c = scratch(
        "bad-check.json",
        &config(r#"{"http":{"port":80,"statuses":[700]}}"#, ""),
    );
    let out = healthcheck(&["--once", "--config", c.path()]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(r#"table "web".backends[0] (198.51.100.11).healthchecks.http.statuses: 700 is not a status"#),
        "{err}"
    );
}

#[test]
fn a_bad_setting_is_refused_naming_the_field() {
    let c = scratch(
        "bad-setting.json",
        &config(r#"{"tcp":22}"#, r#","healthcheck":{"fall":0}"#),
    );
    let out = healthcheck(&["--once", "--config", c.path()]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("healthcheck.fall: 0 is not a count from 1 to 100"),
        "{err}"
    );
}

#[test]
fn settings_in_two_places_are_refused() {
    let c = scratch(
        "two-places.json",
        &config(r#"{"tcp":22}"#, r#","healthcheck":{"fall":2}"#),
    );
    let s = scratch("two-places-settings.json", r#"{"fall":3}"#);
    let out = healthcheck(&["--once", "--config", c.path(), "--settings", s.path()]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("keep one"), "{err}");
}

#[test]
fn the_checkers_own_sections_are_not_warned_about_but_unknown_checks_are() {
    let c = scratch(
        "warnings.json",
        &config(
            r#"{"smtp":25}"#,
            r#","healthchecks":{"interval_ms":1000},"healthcheck":{"rise":2}"#,
        ),
    );
    let out = healthcheck(&["--once", "--config", c.path()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!err.contains("unknown field \"healthcheck"), "{err}");
    assert!(err.contains("unknown check \"smtp\" ignored"), "{err}");
    // No check left: the table has its header only.
    let table = String::from_utf8_lossy(&out.stdout);
    assert_eq!(table.lines().count(), 1, "{table}");
    assert!(table.starts_with("TABLE"), "{table}");
}
