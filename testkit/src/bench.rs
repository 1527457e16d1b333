//! Latencies a benchmark measured, and their percentiles: one definition for
//! every `examples/*_bench.rs`.
//!
//! Recorded as loadgen records them (`loadgen/src/stats.rs`), so a bench and a
//! load test mean the same thing by "p99": an HDR histogram of microseconds
//! (1 µs to an hour, 3 significant digits), read nearest-rank.

use std::fmt;
use std::time::Duration;

use hdrhistogram::Histogram;

/// Highest latency tracked: an hour, far above any call; longer ones are
/// recorded as an hour.
const HIGHEST_MICROS: u64 = 3_600_000_000;

/// A recorder of latencies.
///
/// `percentile(q)` is nearest-rank: the smallest latency with at least a
/// fraction `q` of the samples at or below it (`ceil(q × count)`-th in sorted
/// order, the first for `q = 0`), as hdrhistogram's `value_at_quantile`
/// computes it and loadgen reports it. It is given as the top of its
/// histogram bucket, at most 0.1 % above the sample itself.
#[derive(Clone, Debug)]
pub struct Latencies {
    micros: Histogram<u64>,
}

impl Default for Latencies {
    fn default() -> Self {
        Self::new()
    }
}

impl Latencies {
    /// An empty recorder (about 180 KB of counters, allocated zeroed).
    pub fn new() -> Self {
        let micros = Histogram::new_with_bounds(1, HIGHEST_MICROS, 3)
            .expect("constant bounds hdrhistogram accepts");
        Self { micros }
    }

    pub fn record(&mut self, latency: Duration) {
        let micros = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX);
        self.micros.saturating_record(micros.max(1));
    }

    /// Adds what `other` recorded (say, another client task's latencies).
    pub fn merge(&mut self, other: &Self) {
        self.micros
            .add(&other.micros)
            .expect("both histograms have the same bounds");
    }

    /// Forgets everything recorded so far (after a warm-up).
    pub fn clear(&mut self) {
        self.micros.reset();
    }

    pub fn count(&self) -> u64 {
        self.micros.len()
    }

    pub fn is_empty(&self) -> bool {
        self.micros.is_empty()
    }

    /// The nearest-rank percentile `q` (0.0 to 1.0; 0.99 is p99); zero when
    /// nothing was recorded.
    pub fn percentile(&self, q: f64) -> Duration {
        Duration::from_micros(self.micros.value_at_quantile(q))
    }

    /// The largest latency recorded; zero when nothing was.
    pub fn max(&self) -> Duration {
        Duration::from_micros(self.micros.max())
    }

    /// The given percentiles on one line, in milliseconds:
    /// `format!("{:.1}", latencies.summary(&[0.5, 0.99, 1.0]))` gives
    /// `p50 3.1 ms  p99 7.9 ms  max 12.4 ms`. `1.0` is shown as `max`, `0.0` as
    /// `min`; the formatter's width and precision (default 2) apply to each
    /// number.
    pub fn summary<'a>(&'a self, quantiles: &'a [f64]) -> Summary<'a> {
        Summary {
            latencies: self,
            quantiles,
        }
    }
}

impl Extend<Duration> for Latencies {
    fn extend<I: IntoIterator<Item = Duration>>(&mut self, latencies: I) {
        for latency in latencies {
            self.record(latency);
        }
    }
}

impl FromIterator<Duration> for Latencies {
    fn from_iter<I: IntoIterator<Item = Duration>>(latencies: I) -> Self {
        let mut recorder = Self::new();
        recorder.extend(latencies);
        recorder
    }
}

/// Percentiles of [`Latencies`] on one line: see [`Latencies::summary`].
#[derive(Clone, Copy, Debug)]
pub struct Summary<'a> {
    latencies: &'a Latencies,
    quantiles: &'a [f64],
}

impl fmt::Display for Summary<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let width = f.width().unwrap_or(0);
        let precision = f.precision().unwrap_or(2);
        for (i, &q) in self.quantiles.iter().enumerate() {
            if i > 0 {
                f.write_str("  ")?;
            }
            let ms = self.latencies.percentile(q).as_secs_f64() * 1e3;
            write!(f, "{} {ms:>width$.precision$} ms", label(q))?;
        }
        Ok(())
    }
}

/// `p50`, `p99`, `p99.9`; `max` for 1.0, `min` for 0.0.
fn label(q: f64) -> String {
    if q >= 1.0 {
        return "max".to_owned();
    }
    if q <= 0.0 {
        return "min".to_owned();
    }
    // Rounded, so 0.999 reads p99.9 and not p99.89999999999999.
    let percent = (q * 100_000.0).round() / 1_000.0;
    format!("p{percent}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn percentiles_are_nearest_rank() {
        let latencies: Latencies = (1..=100).map(ms).collect();
        assert_eq!(latencies.count(), 100);
        // ceil(q × 100)-th of 1..=100 ms; the bucket top is within 0.1 %.
        for (q, rank) in [(0.5, 50), (0.9, 90), (0.99, 99), (0.991, 100), (1.0, 100)] {
            let got = latencies.percentile(q);
            assert!(
                got >= ms(rank) && got <= ms(rank) * 1001 / 1000,
                "p{q}: {got:?}"
            );
        }
        assert!(latencies.percentile(0.0) <= ms(1));
        assert!(latencies.max() >= ms(100) && latencies.max() <= ms(100) * 1001 / 1000);

        // Fewer samples than 1/(1−q): p99 is the largest, not an interpolation.
        let three: Latencies = [ms(10), ms(20), ms(300)].into_iter().collect();
        assert!(three.percentile(0.99) >= ms(300));
        assert!(three.percentile(0.5) >= ms(20) && three.percentile(0.5) < ms(21));
    }

    #[test]
    fn merged_and_cleared_recorders_count_what_they_hold() {
        let mut all = Latencies::new();
        assert!(all.is_empty());
        assert_eq!(all.percentile(0.99), Duration::ZERO);
        assert_eq!(all.max(), Duration::ZERO);
        all.record(Duration::from_nanos(10));
        all.merge(&[ms(5), ms(7)].into_iter().collect());
        assert_eq!(all.count(), 3);
        assert!(all.percentile(0.0) <= Duration::from_micros(1));
        assert!(all.max() >= ms(7));
        all.clear();
        assert!(all.is_empty());
    }

    #[test]
    fn a_summary_is_one_line_in_milliseconds() {
        let latencies: Latencies = [ms(2), ms(4), ms(8)].into_iter().collect();
        assert_eq!(
            format!("{}", latencies.summary(&[0.5, 0.999, 1.0])),
            "p50 4.00 ms  p99.9 8.00 ms  max 8.00 ms"
        );
        assert_eq!(
            format!("{:>5.1}", latencies.summary(&[0.0, 0.9])),
            "min   2.0 ms  p90   8.0 ms"
        );
    }
}
