//! When each check probes next: its interval (or faster interval while its
//! state is changing), spread by jitter, and a first probe at a random
//! point of the first interval, so that many checks (and many checkers)
//! never probe in one burst. Pure: the randomness comes in as a number.

use std::time::Duration;

use crate::settings::Timing;

/// Delay before a check's first probe: `r` (from 0 to 1) of its fast
/// interval, so that the first verdicts come soon and the checks are spread.
pub fn first_delay(t: &Timing, r: f64) -> Duration {
    t.fast_interval.mul_f64(r.clamp(0.0, 1.0))
}

/// Delay before the next probe: the interval (the faster one while
/// `changing`), times a factor from `1 - jitter/2` to `1 + jitter/2` drawn
/// with `r` (from 0 to 1).
pub fn next_delay(t: &Timing, changing: bool, r: f64) -> Duration {
    let base = if changing {
        t.fast_interval
    } else {
        t.interval
    };
    let j = f64::from(t.jitter_permille) / 1000.0;
    base.mul_f64(1.0 - j / 2.0 + j * r.clamp(0.0, 1.0))
}

/// A small pseudo-random generator (SplitMix64): spreading probes needs
/// no cryptographic quality, and a seed from the clock and the pid keeps
/// two checkers apart.
#[derive(Clone, Debug)]
pub struct Spread(u64);

impl Spread {
    /// Seeded with `seed`.
    pub fn new(seed: u64) -> Spread {
        Spread(seed)
    }

    /// Seeded from the clock and the process id.
    pub fn from_entropy() -> Spread {
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        Spread(t ^ (u64::from(std::process::id()) << 32))
    }

    /// The next 64 bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A number from 0 (included) to 1 (excluded).
    pub fn fraction(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn timing(jitter_permille: u16) -> Timing {
        Timing {
            interval: Duration::from_millis(2000),
            fast_interval: Duration::from_millis(500),
            jitter_permille,
            ..Timing::default()
        }
    }

    #[test]
    fn jitter_bounds_each_wait_around_the_interval() {
        let t = timing(200);
        assert_eq!(next_delay(&t, false, 0.0), Duration::from_millis(1800));
        assert_eq!(next_delay(&t, false, 1.0), Duration::from_millis(2200));
        assert_eq!(next_delay(&t, false, 0.5), Duration::from_millis(2000));
        assert_eq!(
            next_delay(&timing(0), false, 0.9),
            Duration::from_millis(2000)
        );
    }

    #[test]
    fn a_changing_state_probes_at_the_faster_interval() {
        let t = timing(0);
        assert_eq!(next_delay(&t, true, 0.3), Duration::from_millis(500));
    }

    #[test]
    fn first_probes_of_many_checks_are_spread_over_the_first_interval() {
        let t = timing(200);
        let mut s = Spread::new(7);
        let mut buckets = [0u32; 10];
        for _ in 0..1000 {
            let d = first_delay(&t, s.fraction());
            assert!(d < t.fast_interval);
            buckets[(d.as_micros() * 10 / t.fast_interval.as_micros()) as usize] += 1;
        }
        // Uniform: every tenth of the interval gets about 100 of 1000.
        assert!(buckets.iter().all(|n| (50..150).contains(n)), "{buckets:?}");
    }
}
