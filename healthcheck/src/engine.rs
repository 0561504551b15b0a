//! Every check's results, dampened, turned into each backend's verdict,
//! with the self-suspicion rule. Pure: results and times come in as
//! values; the runner owns the only instance behind a lock.
//!
//! A backend's `healthy` is known once every one of its `http`, `https`
//! and `tcp` checks is known, and is true when they are all up; its
//! `reachable` likewise from its `gue` checks. A flag none of its checks
//! decides is never pushed (the director keeps what it has).

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::time::Duration;

use proto::api::Verdict;
use serde::Serialize;

use crate::checks::{CheckSpec, Holder, Plan};
use crate::dampen::{Dampener, Observation, State};
use crate::metrics::Histogram;
use crate::settings::Settings;

/// What one probe found.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "result", content = "reason", rename_all = "lowercase")]
pub enum Outcome {
    /// It passed.
    Pass,
    /// It failed, and why (`status 503`, `connection refused`).
    Fail(String),
    /// The checker could not probe (no raw socket, no source address):
    /// reported as such, never as a verdict on the backend.
    Error(String),
}

/// The most reason a verdict carries (the API's limit).
pub const MAX_REASON: usize = 1024;

/// A check's last probe.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Last {
    /// Its outcome.
    #[serde(flatten)]
    pub outcome: Outcome,
    /// How long it took, in milliseconds.
    pub latency_ms: f64,
    /// When it ended, in milliseconds since the Unix epoch.
    pub unix_ms: u64,
}

/// One check with its history.
#[derive(Clone, Debug)]
pub struct CheckState {
    /// What it probes.
    pub spec: CheckSpec,
    dampener: Dampener,
    /// Its last probe.
    pub last: Option<Last>,
    /// Probes made.
    pub probes: u64,
    /// Probes that failed.
    pub failures: u64,
    /// Probes that could not be made.
    pub errors: u64,
    /// Latency of the probes that got an answer (passed or failed).
    pub latency: Histogram,
    /// State changes, by the state reached.
    pub changes: BTreeMap<&'static str, u64>,
    /// When the probe that began the current run of counted failures
    /// started, in milliseconds since the Unix epoch.
    fail_since: Option<u64>,
}

impl CheckState {
    /// Its dampened state.
    pub fn state(&self) -> State {
        self.dampener.state()
    }
}

/// The engine: every check and every backend they decide.
#[derive(Clone, Debug)]
pub struct Engine {
    checks: Vec<CheckState>,
    holders: Vec<Holder>,
    fraction: f64,
    min_failing: usize,
    suspicious: bool,
    suspicion_episodes: u64,
    epoch: u64,
}

/// What a result changed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Recorded {
    /// The check's new state, if it changed.
    pub state: Option<State>,
    /// Other checks whose held fall this result let happen (by index).
    pub others: Vec<(usize, State)>,
    /// Self-suspicion began (true) or ended (false).
    pub suspicion: Option<bool>,
}

impl Recorded {
    /// Whether any verdict may have changed.
    pub fn changed(&self) -> bool {
        self.state.is_some() || !self.others.is_empty() || self.suspicion.is_some()
    }
}

impl Engine {
    /// Every check of `plan` unknown.
    pub fn new(plan: &Plan, settings: &Settings) -> Engine {
        Engine {
            checks: plan
                .checks
                .iter()
                .map(|s| CheckState {
                    spec: s.clone(),
                    dampener: Dampener::new(s.timing.rise, s.timing.fall),
                    last: None,
                    probes: 0,
                    failures: 0,
                    errors: 0,
                    latency: Histogram::default(),
                    changes: BTreeMap::new(),
                    fail_since: None,
                })
                .collect(),
            holders: plan.holders.clone(),
            fraction: settings.suspicion_fraction,
            min_failing: settings.suspicion_min_failing,
            suspicious: false,
            suspicion_episodes: 0,
            epoch: 0,
        }
    }

    /// The engine for a reloaded config: a check identical to one of
    /// this engine (same spec, timing included) keeps its state, history
    /// and counters, so a reload changes no verdict by itself; other
    /// checks start unknown. The epoch goes up: results of probes of the
    /// old plan are to be dropped.
    pub fn reloaded(&self, plan: &Plan, settings: &Settings) -> Engine {
        let mut e = Engine::new(plan, settings);
        for c in &mut e.checks {
            if let Some(old) = self.checks.iter().find(|o| o.spec == c.spec) {
                *c = old.clone();
            }
        }
        e.suspicious = self.suspicious;
        e.suspicion_episodes = self.suspicion_episodes;
        e.epoch = self.epoch + 1;
        e
    }

    /// Which plan the engine holds: results are recorded only by probes
    /// of the same epoch.
    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    /// The checks.
    pub fn checks(&self) -> &[CheckState] {
        &self.checks
    }

    /// Whether the checker suspects its own network now.
    pub fn suspicious(&self) -> bool {
        self.suspicious
    }

    /// How many times self-suspicion began.
    pub fn suspicion_episodes(&self) -> u64 {
        self.suspicion_episodes
    }

    /// Whether check `i` should probe at its faster interval.
    pub fn changing(&self, i: usize) -> bool {
        self.checks.get(i).is_some_and(|c| c.dampener.changing())
    }

    /// Takes check `i`'s result, which took `latency` and ended at
    /// `unix_ms`.
    pub fn record(
        &mut self,
        i: usize,
        outcome: Outcome,
        latency: Duration,
        unix_ms: u64,
    ) -> Recorded {
        let Some(c) = self.checks.get_mut(i) else {
            return Recorded::default();
        };
        c.probes += 1;
        match &outcome {
            Outcome::Pass => c.latency.observe(latency),
            Outcome::Fail(_) => {
                c.failures += 1;
                c.latency.observe(latency);
            }
            Outcome::Error(_) => c.errors += 1,
        }
        let failed = matches!(outcome, Outcome::Fail(_));
        let passed = outcome == Outcome::Pass;
        c.last = Some(Last {
            outcome,
            latency_ms: latency.as_secs_f64() * 1000.0,
            unix_ms,
        });
        // Judged on every check's last result, this one's included: a cut
        // of the checker's own link shows as most checks failing together.
        let was = self.suspicious;
        self.suspicious = self.suspect_now();
        let mut rec = Recorded::default();
        if self.suspicious != was {
            rec.suspicion = Some(self.suspicious);
            if self.suspicious {
                self.suspicion_episodes += 1;
            }
            // The failures that led into the episode, and the stale ones
            // still counted when it ends, are void: only `fall` fresh
            // failures after it condemn a backend.
            for c in &mut self.checks {
                c.dampener.forget_failures();
                c.fail_since = None;
            }
        }
        let obs = match (passed, failed, self.suspicious) {
            (true, _, _) => Observation::Pass,
            (_, true, false) => Observation::Fail,
            (_, true, true) => Observation::SuspectFail,
            _ => Observation::Error,
        };
        let started = unix_ms.saturating_sub(latency.as_millis() as u64);
        let c = &mut self.checks[i];
        match obs {
            Observation::Pass => c.fail_since = None,
            Observation::Fail => {
                c.fail_since.get_or_insert(started);
            }
            _ => {}
        }
        let may_fall = self.judged_since(i);
        let c = &mut self.checks[i];
        rec.state = c.dampener.observe_with(obs, may_fall);
        if let Some(s) = rec.state {
            *c.changes.entry(s.as_str()).or_default() += 1;
        }
        // This result may be the last one the held falls of other checks
        // were waiting for.
        if !self.suspicious {
            for j in 0..self.checks.len() {
                if j != i && self.checks[j].dampener.fall_pending() && self.judged_since(j) {
                    let c = &mut self.checks[j];
                    if let Some(s) = c.dampener.commit_fall() {
                        *c.changes.entry(s.as_str()).or_default() += 1;
                        rec.others.push((j, s));
                    }
                }
            }
        }
        rec
    }

    /// Whether every other check has a result from a probe started after
    /// check `i`'s failures began: only then does the self-suspicion rule
    /// judge on fresh results, so a fall waits for it. Without this the
    /// first check to see a cut of the checker's own link (probing faster
    /// once it fails) could fall before the others have seen the cut.
    fn judged_since(&self, i: usize) -> bool {
        // With the rule off there is nothing to wait for.
        if self.fraction >= 1.0 {
            return true;
        }
        let Some(since) = self.checks.get(i).and_then(|c| c.fail_since) else {
            return true;
        };
        self.checks.iter().enumerate().all(|(j, c)| {
            j == i
                || c.last
                    .as_ref()
                    .is_none_or(|l| l.unix_ms.saturating_sub(l.latency_ms as u64) >= since)
        })
    }

    fn suspect_now(&self) -> bool {
        let (mut failing, mut judged) = (0usize, 0usize);
        for c in &self.checks {
            match c.last.as_ref().map(|l| &l.outcome) {
                Some(Outcome::Pass) => judged += 1,
                Some(Outcome::Fail(_)) => {
                    judged += 1;
                    failing += 1;
                }
                _ => {}
            }
        }
        failing >= self.min_failing && failing as f64 > self.fraction * judged as f64
    }

    /// Every backend's known verdict: one per (table, backend) with at
    /// least one flag known.
    pub fn verdicts(&self) -> Vec<Verdict> {
        self.holders
            .iter()
            .filter_map(|h| {
                let (healthy, hr) = self.flag(h, false);
                let (reachable, rr) = self.flag(h, true);
                if healthy.is_none() && reachable.is_none() {
                    return None;
                }
                let reasons: Vec<String> = hr.into_iter().chain(rr).collect();
                Some(Verdict {
                    table: h.table.clone(),
                    ip: h.ip,
                    healthy,
                    reachable,
                    reason: (!reasons.is_empty()).then(|| cut(reasons.join("; "))),
                })
            })
            .collect()
    }

    /// One flag of holder `h` and the reasons of its down checks.
    fn flag(&self, h: &Holder, reachable: bool) -> (Option<bool>, Vec<String>) {
        let mine: Vec<&CheckState> = h
            .checks
            .iter()
            .filter_map(|i| self.checks.get(*i))
            .filter(|c| c.spec.kind.decides_reachable() == reachable)
            .collect();
        if mine.is_empty() || mine.iter().any(|c| c.state() == State::Unknown) {
            return (None, Vec::new());
        }
        let down: Vec<String> = mine
            .iter()
            .filter(|c| c.state() == State::Down)
            .map(|c| {
                let why = match c.last.as_ref().map(|l| &l.outcome) {
                    Some(Outcome::Fail(r)) => r.as_str(),
                    _ => "down",
                };
                format!("{}: {why}", c.spec)
            })
            .collect();
        (Some(down.is_empty()), down)
    }

    /// Every backend with its checks, for `GET /health` and `--once`.
    pub fn backends(&self) -> Vec<BackendReport> {
        let verdicts: BTreeMap<(String, IpAddr), Verdict> = self
            .verdicts()
            .into_iter()
            .map(|v| ((v.table.clone(), v.ip), v))
            .collect();
        self.holders
            .iter()
            .map(|h| {
                let v = verdicts.get(&(h.table.clone(), h.ip));
                BackendReport {
                    table: h.table.clone(),
                    ip: h.ip,
                    healthy: v.and_then(|v| v.healthy),
                    reachable: v.and_then(|v| v.reachable),
                    reason: v.and_then(|v| v.reason.clone()),
                    checks: h
                        .checks
                        .iter()
                        .filter_map(|i| self.checks.get(*i))
                        .map(CheckReport::of)
                        .collect(),
                }
            })
            .collect()
    }
}

fn cut(mut s: String) -> String {
    if s.len() > MAX_REASON {
        let mut at = MAX_REASON;
        while !s.is_char_boundary(at) {
            at -= 1;
        }
        s.truncate(at);
    }
    s
}

/// A backend as `GET /health` shows it.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct BackendReport {
    /// The table.
    pub table: String,
    /// The backend.
    pub ip: IpAddr,
    /// Its verdict (`null`: unknown, or no check decides it).
    pub healthy: Option<bool>,
    /// Its verdict (`null`: unknown, or no `gue` check).
    pub reachable: Option<bool>,
    /// Why a flag is false.
    pub reason: Option<String>,
    /// Its checks.
    pub checks: Vec<CheckReport>,
}

/// A check as `GET /health` shows it.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct CheckReport {
    /// `http 198.51.100.11:80/`.
    pub check: String,
    /// `http`, `https`, `tcp` or `gue`.
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// `unknown`, `up` or `down`.
    pub state: &'static str,
    /// Its last probe.
    pub last: Option<Last>,
    /// Probes made.
    pub probes: u64,
    /// Of them failed.
    pub failures: u64,
    /// Of them not made (internal errors).
    pub errors: u64,
    /// Its interval, timeout, rise and fall.
    pub interval_ms: u64,
    /// Timeout of one probe.
    pub timeout_ms: u64,
    /// Passes to rise.
    pub rise: u32,
    /// Failures to fall.
    pub fall: u32,
}

impl CheckReport {
    fn of(c: &CheckState) -> CheckReport {
        CheckReport {
            check: c.spec.to_string(),
            kind: c.spec.kind.as_str(),
            state: c.state().as_str(),
            last: c.last.clone(),
            probes: c.probes,
            failures: c.failures,
            errors: c.errors,
            interval_ms: c.spec.timing.interval.as_millis() as u64,
            timeout_ms: c.spec.timing.timeout.as_millis() as u64,
            rise: c.spec.timing.rise,
            fall: c.spec.timing.fall,
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // a failure is the test failing

    use super::*;
    use proto::config::Config;

    const MS: Duration = Duration::from_millis(1);

    /// `n` backends of table "web", each with an http and a gue check
    /// (checks 2i and 2i+1), rise and fall 2.
    fn engine(n: usize, section: &str) -> Engine {
        let backends: Vec<String> = (0..n)
            .map(|i| {
                format!(
                    r#"{{"ip":"198.51.100.{}","healthchecks":{{"http":80,"gue":19523}}}}"#,
                    11 + i
                )
            })
            .collect();
        let c = Config::from_json(&format!(
            r#"{{"tables":[{{"name":"web","hash_key":"00000000000000000000000000000001","seed":"00000000000000000000000000000002",
                "binds":[{{"ip":"203.0.113.10","proto":"tcp","port":80}}],"backends":[{}]}}]}}"#,
            backends.join(",")
        ))
        .unwrap();
        let s = Settings::from_values(Some(&serde_json::from_str(section).unwrap()), None).unwrap();
        let p = Plan::from_config(&c, &s).unwrap();
        Engine::new(&p, &s)
    }

    fn index(e: &Engine, backend: usize, kind: &str) -> usize {
        let ip: IpAddr = format!("198.51.100.{}", 11 + backend).parse().unwrap();
        e.checks()
            .iter()
            .position(|c| c.spec.addr == ip && c.spec.kind.as_str() == kind)
            .unwrap()
    }

    fn pass(e: &mut Engine, i: usize) -> Recorded {
        e.record(i, Outcome::Pass, MS, 0)
    }

    fn fail(e: &mut Engine, i: usize) -> Recorded {
        e.record(i, Outcome::Fail("connection refused".into()), MS, 0)
    }

    #[test]
    fn nothing_is_known_and_nothing_pushed_before_the_first_results() {
        let mut e = engine(2, r#"{"trigger":2}"#);
        assert!(e.verdicts().is_empty());
        let h0 = index(&e, 0, "http");
        pass(&mut e, h0);
        assert!(e.verdicts().is_empty(), "one pass of two");
        pass(&mut e, h0);
        let v = e.verdicts();
        assert_eq!(v.len(), 1);
        assert_eq!(
            (v[0].healthy, v[0].reachable),
            (Some(true), None),
            "gue still unknown"
        );
    }

    #[test]
    fn http_decides_healthy_and_gue_decides_reachable() {
        let mut e = engine(4, r#"{"trigger":2}"#);
        for b in 0..4 {
            for k in ["http", "gue"] {
                let i = index(&e, b, k);
                pass(&mut e, i);
                pass(&mut e, i);
            }
        }
        let (h, g) = (index(&e, 0, "http"), index(&e, 1, "gue"));
        fail(&mut e, h);
        assert_eq!(fail(&mut e, h).state, Some(State::Down));
        fail(&mut e, g);
        fail(&mut e, g);
        let v = e.verdicts();
        assert_eq!((v[0].healthy, v[0].reachable), (Some(false), Some(true)));
        assert_eq!(
            v[0].reason.as_deref(),
            Some("http 198.51.100.11:80/: connection refused")
        );
        assert_eq!((v[1].healthy, v[1].reachable), (Some(true), Some(false)));
        assert_eq!((v[2].healthy, v[2].reachable), (Some(true), Some(true)));
        assert_eq!(v[2].reason, None);
    }

    #[test]
    fn most_checks_failing_together_flip_no_verdict() {
        let mut e = engine(3, r#"{"trigger":2}"#);
        let all: Vec<usize> = (0..e.checks().len()).collect();
        for &i in &all {
            pass(&mut e, i);
            pass(&mut e, i);
        }
        let before = e.verdicts();
        // The checker's link is cut: every check fails, three rounds.
        let mut began = 0;
        for _ in 0..3 {
            for &i in &all {
                if fail(&mut e, i).suspicion == Some(true) {
                    began += 1;
                }
            }
        }
        assert!(e.suspicious());
        assert_eq!(began, 1);
        assert_eq!(e.suspicion_episodes(), 1);
        assert_eq!(e.verdicts(), before, "last verdicts kept");
        // The link comes back: suspicion ends, nothing ever flipped.
        for &i in &all {
            let r = pass(&mut e, i);
            assert_eq!(r.state, None);
        }
        assert!(!e.suspicious());
        assert_eq!(e.verdicts(), before);
    }

    #[test]
    fn failures_around_a_suspicion_episode_never_combine_into_a_flip() {
        // Four checks, fall 2: the cut's first two failures are counted
        // before suspicion begins (2 of 4 is not more than half).
        let mut e = engine(2, r#"{"trigger":2}"#);
        for i in 0..4 {
            pass(&mut e, i);
            pass(&mut e, i);
        }
        let before = e.verdicts();
        fail(&mut e, 0);
        fail(&mut e, 1);
        assert!(!e.suspicious());
        assert_eq!(fail(&mut e, 2).suspicion, Some(true));
        fail(&mut e, 3);
        // The link comes back: two passes end the episode...
        pass(&mut e, 2);
        assert_eq!(pass(&mut e, 3).suspicion, Some(false));
        // ... and one late failure of checks 0 and 1 is not their second.
        assert_eq!(fail(&mut e, 0).state, None);
        assert_eq!(fail(&mut e, 1).state, None);
        assert_eq!(e.verdicts(), before);
    }

    fn at(e: &mut Engine, i: usize, ok: bool, t: u64) -> Recorded {
        let o = if ok {
            Outcome::Pass
        } else {
            Outcome::Fail("network unreachable".into())
        };
        e.record(i, o, MS, t)
    }

    #[test]
    fn a_fall_waits_until_every_other_check_has_probed_since_the_failures_began() {
        let mut e = engine(2, r#"{"trigger":2}"#);
        for i in 0..4 {
            at(&mut e, i, true, 10);
            at(&mut e, i, true, 20);
        }
        // Check 0 fails twice at its fast interval before any other check
        // probed again: its fall is held.
        assert_eq!(at(&mut e, 0, false, 100).state, None);
        assert_eq!(at(&mut e, 0, false, 150).state, None);
        assert_eq!(e.checks()[0].state(), State::Up);
        // The others probe and pass: the backend alone failed, and the
        // last of them lets the fall happen.
        assert!(at(&mut e, 1, true, 160).others.is_empty());
        assert!(at(&mut e, 2, true, 170).others.is_empty());
        let r = at(&mut e, 3, true, 180);
        assert_eq!(r.others, vec![(0, State::Down)]);
        assert!(r.changed());
        assert_eq!(e.checks()[0].state(), State::Down);
    }

    #[test]
    fn a_cut_seen_first_by_one_check_flips_nothing() {
        let mut e = engine(2, r#"{"trigger":2}"#);
        for i in 0..4 {
            at(&mut e, i, true, 10);
            at(&mut e, i, true, 20);
        }
        let before = e.verdicts();
        // The checker's link goes at 90: check 0 sees it first, twice.
        at(&mut e, 0, false, 100);
        at(&mut e, 0, false, 150);
        // Then the others, one by one: suspicion begins at the third.
        assert!(at(&mut e, 1, false, 160).others.is_empty());
        assert_eq!(at(&mut e, 2, false, 170).suspicion, Some(true));
        at(&mut e, 3, false, 180);
        for t in [300, 400] {
            for i in 0..4 {
                assert_eq!(at(&mut e, i, false, t + i as u64).state, None);
            }
        }
        // Back.
        for i in 0..4 {
            let r = at(&mut e, i, true, 500 + i as u64);
            assert_eq!((r.state, r.others.len()), (None, 0));
        }
        assert!(!e.suspicious());
        assert_eq!(e.verdicts(), before);
    }

    #[test]
    fn a_minority_failing_is_believed() {
        let mut e = engine(3, r#"{"trigger":2}"#);
        let all: Vec<usize> = (0..e.checks().len()).collect();
        for &i in &all {
            pass(&mut e, i);
            pass(&mut e, i);
        }
        let (h, g) = (index(&e, 2, "http"), index(&e, 2, "gue"));
        for _ in 0..2 {
            fail(&mut e, h);
            fail(&mut e, g);
        }
        assert!(!e.suspicious(), "2 of 6 is not more than half");
        let v = e.verdicts();
        assert_eq!((v[2].healthy, v[2].reachable), (Some(false), Some(false)));
    }

    #[test]
    fn the_suspicion_share_and_minimum_are_settings() {
        // With one backend, its two checks failing are all checks failing;
        // at least three failing are needed to suspect: believed.
        let mut e = engine(1, r#"{"trigger":1,"suspicion_min_failing":3}"#);
        fail(&mut e, 0);
        fail(&mut e, 1);
        assert!(!e.suspicious());
        assert_eq!(e.verdicts()[0].healthy, Some(false));
        // A share of 1 turns the rule off.
        let mut e = engine(3, r#"{"trigger":1,"suspicion_fraction":1}"#);
        for i in 0..6 {
            fail(&mut e, i);
        }
        assert!(!e.suspicious());
        assert_eq!(e.verdicts().len(), 3);
    }

    #[test]
    fn a_reload_keeps_the_state_of_unchanged_checks_only() {
        let mut e = engine(2, r#"{"trigger":2}"#);
        for i in 0..4 {
            pass(&mut e, i);
            pass(&mut e, i);
        }
        let before = e.verdicts();
        // Backend 0 as it was, backend 1's http moved to 8080, backend 2 new.
        let c = Config::from_json(
            r#"{"tables":[{"name":"web","hash_key":"00000000000000000000000000000001","seed":"00000000000000000000000000000002",
                "binds":[{"ip":"203.0.113.10","proto":"tcp","port":80}],"backends":[
                {"ip":"198.51.100.11","healthchecks":{"http":80,"gue":19523}},
                {"ip":"198.51.100.12","healthchecks":{"http":8080,"gue":19523}},
                {"ip":"198.51.100.13","healthchecks":{"tcp":22}}]}]}"#,
        )
        .unwrap();
        let s = Settings::from_values(Some(&serde_json::json!({"trigger": 2})), None).unwrap();
        let r = e.reloaded(&Plan::from_config(&c, &s).unwrap(), &s);
        assert_eq!(r.epoch(), e.epoch() + 1);
        let v = r.verdicts();
        assert_eq!(v[0], before[0], "backend 0 unchanged: kept");
        // Backend 1's http moved to 8080: unknown again, its gue kept.
        assert_eq!((v[1].healthy, v[1].reachable), (None, Some(true)));
        assert_eq!(v.len(), 2, "backend 2 is new: unknown");
        let probes: u64 = r.checks().iter().map(|c| c.probes).sum();
        assert_eq!(probes, 6, "counters of the three kept checks");
    }

    #[test]
    fn internal_errors_are_reported_never_judged() {
        let mut e = engine(1, r#"{"trigger":1}"#);
        let h = index(&e, 0, "http");
        let r = e.record(h, Outcome::Error("no raw socket".into()), MS, 5);
        assert_eq!(r, Recorded::default());
        assert!(e.verdicts().is_empty());
        let c = &e.checks()[h];
        assert_eq!((c.errors, c.failures, c.state()), (1, 0, State::Unknown));
        assert_eq!(
            c.last.as_ref().map(|l| l.outcome.clone()),
            Some(Outcome::Error("no raw socket".into()))
        );
        pass(&mut e, h);
        for _ in 0..5 {
            e.record(h, Outcome::Error("no raw socket".into()), MS, 5);
        }
        assert_eq!(
            e.verdicts()[0].healthy,
            Some(true),
            "errors keep the last verdict"
        );
    }

    #[test]
    fn reports_serialize_results_with_reasons_and_timings() {
        let mut e = engine(1, r#"{"trigger":1}"#);
        let h = index(&e, 0, "http");
        e.record(
            h,
            Outcome::Fail("status 503".into()),
            Duration::from_millis(3),
            1_700_000_000_000,
        );
        let r = serde_json::to_value(e.backends()).unwrap();
        let check = &r[0]["checks"][h];
        assert_eq!(check["state"], "down");
        assert_eq!(check["last"]["result"], "fail");
        assert_eq!(check["last"]["reason"], "status 503");
        assert_eq!(check["last"]["latency_ms"], 3.0);
        assert_eq!(check["interval_ms"], 2000);
        assert_eq!(r[0]["healthy"], false);
        assert_eq!(r[0]["reachable"], serde_json::Value::Null);
    }
}
