//! Waits between retries, the same in every service: exponential from a first
//! wait, doubling per failure up to a cap, and jittered so that many callers
//! that failed together (one outage) do not all retry at the same instant.

use std::time::Duration;

/// Exponential backoff: `first` after the first failure, doubling with each
/// further one, never more than `max`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Backoff {
    pub first: Duration,
    pub max: Duration,
}

impl Backoff {
    pub const fn new(first: Duration, max: Duration) -> Self {
        Self { first, max }
    }

    /// The wait after `failures` failed attempts: `first · 2^(failures − 1)`,
    /// at most `max` (no failure yet counts as one).
    pub fn delay(&self, failures: u32) -> Duration {
        let doublings = failures.saturating_sub(1).min(30);
        self.first.saturating_mul(1 << doublings).min(self.max)
    }

    /// [`Backoff::delay`] jittered: uniformly between half of it and all of
    /// it ("equal jitter"), so it still grows, and still never exceeds `max`.
    pub fn jittered(&self, failures: u32) -> Duration {
        let delay = self.delay(failures);
        delay / 2 + (delay / 2).mul_f64(unit())
    }
}

/// `pause` scaled by a random factor between 0.5 and 1.5: a periodic task
/// (a poll, a resync) run by many replicas does not fall into step.
pub fn jitter(pause: Duration) -> Duration {
    pause.mul_f64(0.5 + unit())
}

/// Uniform in [0, 1).
fn unit() -> f64 {
    // The low 53 bits of a random v4 UUID: no RNG crate for one number.
    (uuid::Uuid::new_v4().as_u128() as u64 >> 11) as f64 / (1u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_delay_doubles_up_to_the_cap() {
        let backoff = Backoff::new(Duration::from_millis(250), Duration::from_secs(5));
        let waits: Vec<u128> = (0..=7).map(|n| backoff.delay(n).as_millis()).collect();
        assert_eq!(waits, [250, 250, 500, 1000, 2000, 4000, 5000, 5000]);
        assert_eq!(backoff.delay(u32::MAX), Duration::from_secs(5));
    }

    #[test]
    fn jitter_stays_within_its_bounds() {
        let backoff = Backoff::new(Duration::from_secs(1), Duration::from_secs(60));
        for failures in [1, 3, 10] {
            let delay = backoff.delay(failures);
            for _ in 0..200 {
                let wait = backoff.jittered(failures);
                assert!(wait >= delay / 2 && wait <= delay, "{wait:?} for {delay:?}");
            }
        }
        let pause = Duration::from_secs(10);
        let waits: Vec<Duration> = (0..200).map(|_| jitter(pause)).collect();
        assert!(waits.iter().all(|w| *w >= pause / 2 && *w < pause * 3 / 2));
        assert!(waits.iter().any(|w| *w != waits[0]), "jitter varies");
    }
}
