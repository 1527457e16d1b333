//! Percentiles as the report computes them from the HDR histograms.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use loadgen::stats::{Failure, Kind, LatencySummary, Sample, StepStats, latency_histogram};

fn close(actual: f64, expected: f64) -> bool {
    // 3 significant digits: within 0.1 %.
    (actual - expected).abs() <= expected * 0.001
}

#[test]
fn percentiles_of_a_uniform_spread() {
    let mut histogram = latency_histogram();
    for micros in 1..=10_000 {
        histogram.saturating_record(micros);
    }
    let summary = LatencySummary::of(&histogram).unwrap();
    assert_eq!(summary.count, 10_000);
    assert!(close(summary.p50_ms, 5.0), "{summary:?}");
    assert!(close(summary.p90_ms, 9.0), "{summary:?}");
    assert!(close(summary.p99_ms, 9.9), "{summary:?}");
    assert!(close(summary.p999_ms, 9.99), "{summary:?}");
    assert!(close(summary.max_ms, 10.0), "{summary:?}");
    assert!(close(summary.mean_ms, 5.0005), "{summary:?}");
    assert!(LatencySummary::of(&latency_histogram()).is_none());
}

#[test]
fn a_slow_tail_shows_in_the_high_percentiles_only() {
    let start = Instant::now();
    let mut stats = StepStats::new(1, start + Duration::from_secs(3600));
    let sample = |ms: u64, outcome| Sample {
        kind: 0,
        intended: start,
        finished: start + Duration::from_millis(ms),
        outcome,
    };
    for _ in 0..989 {
        stats.record(&sample(2, Ok(())));
    }
    for _ in 0..10 {
        stats.record(&sample(400, Ok(())));
    }
    stats.record(&sample(2000, Ok(())));
    // Failures count in "all", not in the successes' percentiles.
    for _ in 0..100 {
        stats.record(&sample(5000, Err(Failure::Timeout)));
    }
    let kinds = [Kind::request("product")];
    let total = stats.requests_total(&kinds).unwrap();
    let ok = LatencySummary::of(&total.ok_latency).unwrap();
    assert!(close(ok.p50_ms, 2.0) && close(ok.p90_ms, 2.0), "{ok:?}");
    assert!(close(ok.p99_ms, 400.0), "{ok:?}");
    assert!(close(ok.max_ms, 2000.0), "{ok:?}");
    let all = LatencySummary::of(&total.all_latency).unwrap();
    assert_eq!(all.count, 1100);
    assert!(close(all.p99_ms, 5000.0), "{all:?}");
}

#[test]
fn lanes_merge_into_one_step() {
    let start = Instant::now();
    // The window closes half-way: lanes 2 and 3 finish after it.
    let end = start + Duration::from_millis(500);
    let mut lanes: Vec<StepStats> = (0..4).map(|_| StepStats::new(2, end)).collect();
    for (i, lane) in lanes.iter_mut().enumerate() {
        for ms in 1..=250u64 {
            lane.record(&Sample {
                kind: (ms % 2) as u16,
                intended: start,
                finished: start + Duration::from_millis(ms + i as u64 * 250),
                outcome: Ok(()),
            });
        }
    }
    let mut merged = StepStats::new(2, end);
    lanes.iter().for_each(|lane| merged.merge(lane));
    let kinds = [Kind::request("a"), Kind::request("b")];
    let total = merged.requests_total(&kinds).unwrap();
    assert_eq!(total.ok, 1000);
    assert_eq!(total.ok_in_window, 500);
    let summary = LatencySummary::of(&total.ok_latency).unwrap();
    assert!(close(summary.p50_ms, 500.0), "{summary:?}");
    assert!(close(summary.max_ms, 1000.0), "{summary:?}");
}
