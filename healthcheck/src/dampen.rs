//! One check's state from its results: `rise` passes in a row make it up,
//! `fall` failures in a row make it down, and until either happens for the
//! first time it is unknown. Pure: results in, state out.
//!
//! Unknown needs the same evidence as a change (`rise` passes or `fall`
//! failures), so a restarted checker gives no verdict that a running one
//! would not have given: it cannot mark a backend down on one failure, nor
//! bring one back on one pass.

/// What a check currently says.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum State {
    /// Not enough results yet: nothing is pushed for it.
    Unknown,
    /// Passing.
    Up,
    /// Failing.
    Down,
}

impl State {
    /// `unknown`, `up` or `down`.
    pub fn as_str(self) -> &'static str {
        match self {
            State::Unknown => "unknown",
            State::Up => "up",
            State::Down => "down",
        }
    }
}

/// One probe's result as the dampener sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Observation {
    /// The probe passed.
    Pass,
    /// The probe failed.
    Fail,
    /// The probe failed while the checker suspects its own network: not
    /// evidence against the backend, so it neither counts toward `fall`
    /// nor breaks a run of passes.
    SuspectFail,
    /// The checker could not probe (an internal error): no evidence either
    /// way.
    Error,
}

/// A check's rise/fall counter.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Dampener {
    rise: u32,
    fall: u32,
    state: State,
    /// The current run: passes (true) or failures, and how many in a row.
    run: Option<(bool, u32)>,
}

impl Dampener {
    /// A dampener in state unknown.
    pub fn new(rise: u32, fall: u32) -> Dampener {
        Dampener {
            rise: rise.max(1),
            fall: fall.max(1),
            state: State::Unknown,
            run: None,
        }
    }

    /// The state now.
    pub fn state(&self) -> State {
        self.state
    }

    /// Takes one result; returns the new state if it changed.
    pub fn observe(&mut self, o: Observation) -> Option<State> {
        self.observe_with(o, true)
    }

    /// Takes one result, but holds a fall that is due when `may_fall` is
    /// false: it stays pending ([`Dampener::fall_pending`]) until
    /// [`Dampener::commit_fall`], or until a pass or
    /// [`Dampener::forget_failures`] ends the run.
    pub fn observe_with(&mut self, o: Observation, may_fall: bool) -> Option<State> {
        let pass = match o {
            Observation::Pass => true,
            Observation::Fail => false,
            Observation::SuspectFail | Observation::Error => return None,
        };
        self.run = match self.run {
            Some((p, n)) if p == pass => Some((p, n.saturating_add(1))),
            _ => Some((pass, 1)),
        };
        let (target, needed) = if pass {
            (State::Up, self.rise)
        } else {
            (State::Down, self.fall)
        };
        let n = self.run.map_or(0, |(_, n)| n);
        if self.state != target && n >= needed && (pass || may_fall) {
            self.state = target;
            return Some(target);
        }
        None
    }

    /// Whether `fall` failures in a row are in and the state is not down
    /// yet: a fall held by [`Dampener::observe_with`].
    pub fn fall_pending(&self) -> bool {
        self.state != State::Down && matches!(self.run, Some((false, n)) if n >= self.fall)
    }

    /// Makes a pending fall happen; returns the new state if it did.
    pub fn commit_fall(&mut self) -> Option<State> {
        if !self.fall_pending() {
            return None;
        }
        self.state = State::Down;
        Some(State::Down)
    }

    /// Forgets a run of failures in progress: failures that led into (or
    /// happened during) a self-suspicion episode are no evidence against
    /// the backend, and must not combine with one failure after it.
    pub fn forget_failures(&mut self) {
        if let Some((false, _)) = self.run {
            self.run = None;
        }
    }

    /// Whether the state is unknown or results against it are piling up:
    /// then the check probes at its faster interval, so that a change is
    /// confirmed (or dismissed) sooner.
    pub fn changing(&self) -> bool {
        matches!(
            (self.state, self.run),
            (State::Unknown, _) | (State::Up, Some((false, _))) | (State::Down, Some((true, _)))
        )
    }
}

#[cfg(test)]
mod tests {
    use super::Observation::{Error, Fail, Pass, SuspectFail};
    use super::*;

    fn feed(d: &mut Dampener, obs: &[Observation]) -> Vec<Option<State>> {
        obs.iter().map(|o| d.observe(*o)).collect()
    }

    #[test]
    fn unknown_until_rise_passes_or_fall_failures() {
        let mut d = Dampener::new(3, 2);
        assert_eq!(d.state(), State::Unknown);
        assert_eq!(feed(&mut d, &[Pass, Pass]), [None, None]);
        assert_eq!(
            d.state(),
            State::Unknown,
            "two passes of three are not enough"
        );
        assert_eq!(d.observe(Pass), Some(State::Up));

        let mut d = Dampener::new(3, 2);
        assert_eq!(feed(&mut d, &[Fail, Fail]), [None, Some(State::Down)]);
    }

    #[test]
    fn a_restart_never_condemns_on_one_failure() {
        let mut d = Dampener::new(3, 3);
        assert_eq!(feed(&mut d, &[Fail, Pass, Fail, Pass]), [None; 4]);
        assert_eq!(d.state(), State::Unknown);
        assert!(d.changing());
    }

    #[test]
    fn rise_and_fall_are_separate_counts_of_results_in_a_row() {
        let mut d = Dampener::new(2, 4);
        feed(&mut d, &[Pass, Pass]);
        assert_eq!(d.state(), State::Up);
        assert_eq!(feed(&mut d, &[Fail, Fail, Fail]), [None; 3]);
        assert!(d.changing());
        assert_eq!(d.observe(Pass), None, "a pass breaks the run of failures");
        assert!(!d.changing());
        assert_eq!(feed(&mut d, &[Fail, Fail, Fail]), [None; 3]);
        assert_eq!(d.observe(Fail), Some(State::Down));
        assert_eq!(d.observe(Pass), None);
        assert_eq!(d.observe(Pass), Some(State::Up));
    }

    #[test]
    fn a_flapping_result_never_flips_the_state() {
        let mut d = Dampener::new(2, 2);
        feed(&mut d, &[Pass, Pass]);
        let flips = feed(&mut d, &[Fail, Pass].repeat(50));
        assert!(flips.iter().all(Option::is_none));
        assert_eq!(d.state(), State::Up);
    }

    #[test]
    fn flips_are_bounded_by_rise_and_fall() {
        // Results that change every second probe, with rise 2 and fall 3:
        // a flip needs at least min(rise, fall) results, so 60 results give
        // at most 30 flips; here every run is 2 long, so only rises happen
        // and the state goes up once.
        let mut d = Dampener::new(2, 3);
        let results = [Pass, Pass, Fail, Fail].repeat(15);
        let flips = feed(&mut d, &results).into_iter().flatten().count();
        assert_eq!(flips, 1);
        assert_eq!(d.state(), State::Up);
    }

    #[test]
    fn a_held_fall_waits_for_its_commit_and_a_pass_cancels_it() {
        let mut d = Dampener::new(1, 2);
        d.observe(Pass);
        assert_eq!(d.observe_with(Fail, false), None);
        assert_eq!(d.observe_with(Fail, false), None);
        assert!(d.fall_pending());
        assert_eq!(d.state(), State::Up);
        assert_eq!(d.commit_fall(), Some(State::Down));
        assert!(!d.fall_pending());

        let mut d = Dampener::new(1, 2);
        d.observe(Pass);
        d.observe_with(Fail, false);
        d.observe_with(Fail, false);
        d.observe(Pass);
        assert_eq!(d.commit_fall(), None, "the pass ended the run");
        assert_eq!(d.state(), State::Up);
    }

    #[test]
    fn internal_errors_and_suspect_failures_are_no_evidence() {
        let mut d = Dampener::new(2, 2);
        feed(&mut d, &[Pass, Pass]);
        assert_eq!(feed(&mut d, &[Fail, Error, SuspectFail, Error]), [None; 4]);
        assert_eq!(d.state(), State::Up);
        assert_eq!(
            d.observe(Fail),
            Some(State::Down),
            "the run of failures went on across them"
        );

        let mut d = Dampener::new(2, 2);
        feed(&mut d, &[Pass, Pass, Fail]);
        d.forget_failures();
        assert_eq!(d.observe(Fail), None, "the failure before was forgotten");
        assert_eq!(d.observe(Fail), Some(State::Down));

        let mut d = Dampener::new(2, 2);
        assert_eq!(feed(&mut d, &[Error, Error, SuspectFail]), [None; 3]);
        assert_eq!(d.state(), State::Unknown, "errors never make a state");
    }
}
