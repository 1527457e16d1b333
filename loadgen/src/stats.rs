//! What a step measured: per request kind, counts by outcome and HDR latency
//! histograms (microseconds, 3 significant digits), merged from the lanes.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use serde::Serialize;

/// Index of a request kind in its workload's kind table.
pub type KindId = u16;

/// A request kind as the report names it (`product`, `search_facet`,
/// `browse/similar`). A journey is a multi-request user action whose own
/// latency (intended start to last response) is reported beside its requests
/// and not counted in the request totals.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Kind {
    pub name: String,
    pub journey: bool,
}

impl Kind {
    pub fn request(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            journey: false,
        }
    }

    pub fn journey(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            journey: true,
        }
    }
}

/// Why an arrival did not succeed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Failure {
    /// A non-success HTTP status.
    Http(u16),
    /// A gRPC status other than OK (the code's number).
    Grpc(i32),
    /// Connecting, sending or reading failed (refused, reset, protocol error).
    Transport,
    /// No complete response within `--timeout` (queueing for a connection included).
    Timeout,
    /// Not sent: `--max-in-flight` arrivals were already outstanding.
    ClientOverflow,
    /// Not sent: every shopper of the checkout pool was in a journey (`--users`).
    NoFreeShopper,
    /// A response that should have carried a field we need did not.
    BadResponse,
    /// A checkout journey ended in an order status its card does not explain
    /// (`order_failed`, `order_cancelled`, `order_not_declined`, `order_timeout`).
    Order(&'static str),
}

impl Failure {
    /// Client-side refusals are counted as offered, never as sent.
    pub fn client_side(self) -> bool {
        matches!(self, Self::ClientOverflow | Self::NoFreeShopper)
    }

    pub fn label(self) -> String {
        match self {
            Self::Http(status) => format!("http_{status}"),
            Self::Grpc(code) => format!("grpc_{}", grpc_code_name(code)),
            Self::Transport => "transport".to_owned(),
            Self::Timeout => "timeout".to_owned(),
            Self::ClientOverflow => "client_overflow".to_owned(),
            Self::NoFreeShopper => "no_free_shopper".to_owned(),
            Self::BadResponse => "bad_response".to_owned(),
            Self::Order(reason) => reason.to_owned(),
        }
    }
}

fn grpc_code_name(code: i32) -> &'static str {
    match code {
        1 => "cancelled",
        2 => "unknown",
        3 => "invalid_argument",
        4 => "deadline_exceeded",
        5 => "not_found",
        6 => "already_exists",
        7 => "permission_denied",
        8 => "resource_exhausted",
        9 => "failed_precondition",
        10 => "aborted",
        11 => "out_of_range",
        12 => "unimplemented",
        13 => "internal",
        14 => "unavailable",
        15 => "data_loss",
        16 => "unauthenticated",
        _ => "other",
    }
}

/// One finished (or refused) arrival or journey step.
#[derive(Clone, Copy, Debug)]
pub struct Sample {
    pub kind: KindId,
    /// When it was meant to start: the schedule's time for an arrival, the
    /// previous step's end for a later step of a journey.
    pub intended: Instant,
    pub finished: Instant,
    pub outcome: Result<(), Failure>,
}

/// What an arrival's future yields: one request, or the steps of a journey.
#[derive(Debug)]
pub enum Done {
    One(Sample),
    Many(Vec<Sample>),
}

/// Highest latency a histogram tracks: an hour, far above any timeout.
const HIGHEST_MICROS: u64 = 3_600_000_000;

/// An empty latency histogram: 1 µs to an hour at 3 significant digits
/// (about 180 KB of counters, allocated zeroed, so untouched pages cost no RSS).
pub fn latency_histogram() -> Histogram<u64> {
    match Histogram::new_with_bounds(1, HIGHEST_MICROS, 3) {
        Ok(histogram) => histogram,
        // The bounds are constants hdrhistogram accepts (a unit test builds one).
        Err(err) => unreachable!("latency histogram bounds: {err}"),
    }
}

fn micros(span: Duration) -> u64 {
    u64::try_from(span.as_micros()).unwrap_or(u64::MAX).max(1)
}

/// Counts and latencies of one request kind.
#[derive(Clone, Debug)]
pub struct KindStats {
    pub offered: u64,
    pub sent: u64,
    pub ok: u64,
    /// Successes whose response arrived before the measured window closed:
    /// goodput is these over the window.
    pub ok_in_window: u64,
    pub failures: BTreeMap<Failure, u64>,
    pub ok_latency: Histogram<u64>,
    pub all_latency: Histogram<u64>,
}

impl KindStats {
    fn new() -> Self {
        Self {
            offered: 0,
            sent: 0,
            ok: 0,
            ok_in_window: 0,
            failures: BTreeMap::new(),
            ok_latency: latency_histogram(),
            all_latency: latency_histogram(),
        }
    }

    fn record(&mut self, sample: &Sample, window_end: Instant) {
        let latency = micros(sample.finished.saturating_duration_since(sample.intended));
        self.offered += 1;
        match sample.outcome {
            Ok(()) => {
                self.sent += 1;
                self.ok += 1;
                if sample.finished <= window_end {
                    self.ok_in_window += 1;
                }
                self.ok_latency.saturating_record(latency);
                self.all_latency.saturating_record(latency);
            }
            Err(failure) => {
                if !failure.client_side() {
                    self.sent += 1;
                    self.all_latency.saturating_record(latency);
                }
                *self.failures.entry(failure).or_default() += 1;
            }
        }
    }

    fn merge(&mut self, other: &Self) {
        self.offered += other.offered;
        self.sent += other.sent;
        self.ok += other.ok;
        self.ok_in_window += other.ok_in_window;
        for (failure, count) in &other.failures {
            *self.failures.entry(*failure).or_default() += count;
        }
        // Same bounds on both sides: adding cannot fail.
        let _ = self.ok_latency.add(&other.ok_latency);
        let _ = self.all_latency.add(&other.all_latency);
    }
}

/// What one lane (or, merged, one step) recorded. Histograms are made only
/// for the kinds that occur.
#[derive(Clone, Debug)]
pub struct StepStats {
    pub kinds: Vec<Option<KindStats>>,
    /// How late loadgen itself handled arrivals (dispatch − intended start):
    /// large values mean loadgen, not the server, was short of CPU.
    pub lag: Histogram<u64>,
    window_end: Instant,
}

impl StepStats {
    pub fn new(kinds: usize, window_end: Instant) -> Self {
        Self {
            kinds: vec![None; kinds],
            lag: latency_histogram(),
            window_end,
        }
    }

    pub fn record(&mut self, sample: &Sample) {
        if let Some(slot) = self.kinds.get_mut(usize::from(sample.kind)) {
            slot.get_or_insert_with(KindStats::new)
                .record(sample, self.window_end);
        }
    }

    pub fn record_lag(&mut self, lag: Duration) {
        self.lag.saturating_record(micros(lag));
    }

    pub fn merge(&mut self, other: &Self) {
        for (mine, theirs) in self.kinds.iter_mut().zip(&other.kinds) {
            if let Some(theirs) = theirs {
                match mine {
                    Some(mine) => mine.merge(theirs),
                    None => *mine = Some(theirs.clone()),
                }
            }
        }
        let _ = self.lag.add(&other.lag);
    }

    /// All request kinds together (journeys left out: their requests are
    /// already counted by kind).
    pub fn requests_total(&self, kinds: &[Kind]) -> Option<KindStats> {
        let mut total: Option<KindStats> = None;
        for (stats, kind) in self.kinds.iter().zip(kinds) {
            if let (Some(stats), false) = (stats, kind.journey) {
                match &mut total {
                    Some(total) => total.merge(stats),
                    None => total = Some(stats.clone()),
                }
            }
        }
        total
    }
}

/// Percentiles of a histogram, in milliseconds.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct LatencySummary {
    pub count: u64,
    pub mean_ms: f64,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub p999_ms: f64,
    pub max_ms: f64,
}

impl LatencySummary {
    /// `None` for an empty histogram.
    pub fn of(histogram: &Histogram<u64>) -> Option<Self> {
        if histogram.is_empty() {
            return None;
        }
        let ms = |micros: u64| micros as f64 / 1e3;
        Some(Self {
            count: histogram.len(),
            mean_ms: histogram.mean() / 1e3,
            p50_ms: ms(histogram.value_at_quantile(0.50)),
            p90_ms: ms(histogram.value_at_quantile(0.90)),
            p99_ms: ms(histogram.value_at_quantile(0.99)),
            p999_ms: ms(histogram.value_at_quantile(0.999)),
            max_ms: ms(histogram.max()),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_latency_histogram_can_be_built() {
        let mut histogram = latency_histogram();
        histogram.saturating_record(HIGHEST_MICROS * 2);
        assert_eq!(histogram.len(), 1);
    }

    #[test]
    fn samples_are_counted_by_outcome() {
        let start = Instant::now();
        let window_end = start + Duration::from_secs(1);
        let mut stats = StepStats::new(2, window_end);
        let sample = |kind, finished_ms, outcome| Sample {
            kind,
            intended: start,
            finished: start + Duration::from_millis(finished_ms),
            outcome,
        };
        stats.record(&sample(0, 10, Ok(())));
        stats.record(&sample(0, 1500, Ok(())));
        stats.record(&sample(0, 20, Err(Failure::Http(503))));
        stats.record(&sample(0, 0, Err(Failure::ClientOverflow)));
        let kind = stats.kinds[0].as_ref().unwrap();
        assert_eq!(
            (kind.offered, kind.sent, kind.ok, kind.ok_in_window),
            (4, 3, 2, 1)
        );
        assert_eq!(kind.ok_latency.len(), 2);
        assert_eq!(kind.all_latency.len(), 3);
        assert_eq!(kind.failures[&Failure::Http(503)], 1);
        assert!(stats.kinds[1].is_none());
        assert_eq!(Failure::Grpc(14).label(), "grpc_unavailable");
    }
}
