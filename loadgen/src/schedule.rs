//! When each arrival of a step is meant to start: the open-loop schedule.
//!
//! Intended start times depend only on the rate, never on responses, so a
//! slow server cannot slow the load down (no coordinated omission): latency is
//! measured from the intended start. A step's arrivals are dealt round-robin to
//! `lanes` (arrival `k` to lane `k % lanes`), so each lane walks its own share
//! without sharing a clock or a queue with the others.

use std::time::Duration;

use crate::rng::Rng;

/// How arrivals are spaced.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Arrivals {
    /// Exactly `1/rate` apart: arrival `k` at `k/rate` seconds.
    Constant,
    /// A Poisson process of the same mean rate (exponential gaps), the way
    /// independent shoppers arrive.
    Poisson,
}

/// One arrival: its intended start as an offset from the step's start, and
/// whether it falls in the measured window (after the warm-up).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Arrival {
    pub offset: Duration,
    pub measured: bool,
}

/// Arrivals a constant-rate step has in `span`: `round(rate × span)`.
pub fn arrivals_in(rate: f64, span: Duration) -> u64 {
    (rate * span.as_secs_f64()).round() as u64
}

/// The arrivals of one step that belong to one lane, in time order.
#[derive(Clone, Debug)]
pub struct LaneSchedule {
    rate: f64,
    lanes: u64,
    warmup: Duration,
    horizon: Duration,
    process: Process,
}

#[derive(Clone, Debug)]
enum Process {
    Constant {
        next: u64,
        warmup_arrivals: u64,
        total: u64,
    },
    Poisson {
        at: f64,
        rng: Rng,
    },
}

impl LaneSchedule {
    /// Lane `lane` of `lanes` for a step of `rate` req/s: `warmup`, then the
    /// measured `duration`.
    pub fn new(
        arrivals: Arrivals,
        rate: f64,
        warmup: Duration,
        duration: Duration,
        lane: u64,
        lanes: u64,
        rng: Rng,
    ) -> Self {
        let lanes = lanes.max(1);
        let process = match arrivals {
            Arrivals::Constant => {
                let warmup_arrivals = arrivals_in(rate, warmup);
                Process::Constant {
                    next: lane,
                    warmup_arrivals,
                    total: warmup_arrivals + arrivals_in(rate, duration),
                }
            }
            Arrivals::Poisson => {
                let mut rng = rng;
                let at = exponential(&mut rng, rate / lanes as f64);
                Process::Poisson { at, rng }
            }
        };
        Self {
            rate,
            lanes,
            warmup,
            horizon: warmup + duration,
            process,
        }
    }

    /// Where the measured window starts, as an offset from the step's start.
    pub fn window_start(arrivals: Arrivals, rate: f64, warmup: Duration) -> Duration {
        match arrivals {
            Arrivals::Constant => Duration::from_secs_f64(arrivals_in(rate, warmup) as f64 / rate),
            Arrivals::Poisson => warmup,
        }
    }
}

impl Iterator for LaneSchedule {
    type Item = Arrival;

    fn next(&mut self) -> Option<Arrival> {
        match &mut self.process {
            Process::Constant {
                next,
                warmup_arrivals,
                total,
            } => {
                if *next >= *total {
                    return None;
                }
                let k = *next;
                *next += self.lanes;
                Some(Arrival {
                    offset: Duration::from_secs_f64(k as f64 / self.rate),
                    measured: k >= *warmup_arrivals,
                })
            }
            Process::Poisson { at, rng } => {
                let offset = Duration::from_secs_f64(*at);
                if offset >= self.horizon {
                    return None;
                }
                *at += exponential(rng, self.rate / self.lanes as f64);
                Some(Arrival {
                    offset,
                    measured: offset >= self.warmup,
                })
            }
        }
    }
}

/// An exponential gap (seconds) for a Poisson process of `rate` per second.
fn exponential(rng: &mut Rng, rate: f64) -> f64 {
    -rng.unit().ln() / rate
}
