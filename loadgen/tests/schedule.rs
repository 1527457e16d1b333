//! The open-loop schedule: when each arrival is meant to start.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use loadgen::rng::Rng;
use loadgen::schedule::{Arrival, Arrivals, LaneSchedule, arrivals_in};

fn lanes(
    arrivals: Arrivals,
    rate: f64,
    warmup: Duration,
    duration: Duration,
    count: u64,
) -> Vec<Vec<Arrival>> {
    (0..count)
        .map(|lane| {
            LaneSchedule::new(
                arrivals,
                rate,
                warmup,
                duration,
                lane,
                count,
                Rng::new(9).fork(lane),
            )
            .collect()
        })
        .collect()
}

#[test]
fn constant_rate_arrivals_are_exactly_one_interval_apart_across_lanes() {
    let per_lane = lanes(
        Arrivals::Constant,
        1000.0,
        Duration::from_millis(100),
        Duration::from_secs(1),
        4,
    );
    // Each lane holds every fourth arrival, in time order.
    for (lane, arrivals) in per_lane.iter().enumerate() {
        assert_eq!(arrivals.len(), 275, "lane {lane}");
        assert!(arrivals.windows(2).all(|w| w[0].offset < w[1].offset));
    }
    let mut all: Vec<Arrival> = per_lane.into_iter().flatten().collect();
    all.sort_by_key(|a| a.offset);
    assert_eq!(all.len(), 1100);
    for (k, arrival) in all.iter().enumerate() {
        let intended = Duration::from_secs_f64(k as f64 / 1000.0);
        let error = arrival.offset.abs_diff(intended);
        assert!(error < Duration::from_nanos(10), "arrival {k}: {arrival:?}");
        // The first 100 (0.1 s at 1000/s) are the warm-up.
        assert_eq!(arrival.measured, k >= 100, "arrival {k}");
    }
    assert_eq!(
        LaneSchedule::window_start(Arrivals::Constant, 1000.0, Duration::from_millis(100)),
        Duration::from_millis(100)
    );
}

#[test]
fn a_step_offers_rate_times_duration_arrivals() {
    for (rate, secs, expected) in [
        (500.0, 1.0, 500),
        (333.3, 1.0, 333),
        (20_000.0, 0.5, 10_000),
        (0.5, 10.0, 5),
    ] {
        let duration = Duration::from_secs_f64(secs);
        assert_eq!(arrivals_in(rate, duration), expected);
        let offered: usize = lanes(Arrivals::Constant, rate, Duration::ZERO, duration, 3)
            .iter()
            .map(Vec::len)
            .sum();
        assert_eq!(offered as u64, expected, "{rate}/s for {secs} s");
    }
}

#[test]
fn poisson_arrivals_keep_the_mean_rate_within_the_window() {
    let per_lane = lanes(
        Arrivals::Poisson,
        10_000.0,
        Duration::from_millis(200),
        Duration::from_secs(1),
        4,
    );
    for arrivals in &per_lane {
        assert!(arrivals.windows(2).all(|w| w[0].offset <= w[1].offset));
        assert!(
            arrivals
                .iter()
                .all(|a| a.offset < Duration::from_millis(1200))
        );
        assert!(
            arrivals
                .iter()
                .all(|a| a.measured == (a.offset >= Duration::from_millis(200)))
        );
    }
    let measured = per_lane.iter().flatten().filter(|a| a.measured).count();
    // 10,000 expected; a Poisson count's standard deviation is 100.
    assert!((9_500..10_500).contains(&measured), "{measured}");
    // Same seed, same arrivals.
    let again = lanes(
        Arrivals::Poisson,
        10_000.0,
        Duration::from_millis(200),
        Duration::from_secs(1),
        4,
    );
    assert_eq!(again, per_lane);
}
