//! The open-loop engine. A step runs `lanes` tasks; each walks its share of the
//! schedule, starts every arrival at its intended time without waiting for
//! earlier ones to finish, and keeps the arrivals in flight in its own
//! `FuturesUnordered`, so nothing is spawned or locked per request and each lane
//! records into its own histograms (merged when the step ends).
//!
//! tokio's timer has a 1 ms resolution, so arrivals leave in small bursts at
//! most 1 ms late; that lateness (and any more, when loadgen is short of CPU)
//! counts in latency, which is measured from the intended start, and is
//! reported on its own as the step's `lag`.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use futures::stream::{FuturesUnordered, StreamExt};
use tokio::time::Sleep;

use crate::rng::Rng;
use crate::schedule::{Arrivals, LaneSchedule};
use crate::stats::{Done, Failure, Kind, KindId, Sample, StepStats};

/// The work of one arrival, started by [`Workload::start`].
pub type ArrivalFuture = Pin<Box<dyn Future<Output = Done> + Send + 'static>>;

/// What an arrival will do, chosen before it is admitted, so an arrival refused
/// for `--max-in-flight` is still counted against the kind it would have been.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Choice {
    /// The kind, counted from the workload's own first kind.
    pub kind: KindId,
    /// Which of the workload's prepared requests (its own numbering).
    pub action: u32,
}

/// A target: a user behaviour or a single method.
pub trait Workload: Send + Sync + 'static {
    /// The request kinds it reports, in the order its `KindId`s count.
    fn kinds(&self) -> Vec<Kind>;

    /// Picks what the next arrival does.
    fn choose(&self, rng: &mut Rng) -> Choice;

    /// Starts it. Samples are reported with kind ids offset by `base` (a mix
    /// places each of its parts' kinds after the previous part's).
    fn start(
        &self,
        choice: Choice,
        rng: &mut Rng,
        intended: Instant,
        base: KindId,
    ) -> ArrivalFuture;
}

/// One step of the plan.
#[derive(Clone, Copy, Debug)]
pub struct StepSpec {
    pub rate: f64,
    pub warmup: Duration,
    pub duration: Duration,
    pub arrivals: Arrivals,
}

/// What every step of a run shares.
#[derive(Clone, Debug)]
pub struct EngineConfig {
    pub lanes: usize,
    pub max_in_flight: usize,
    pub seed: u64,
    /// Arrivals left for the whole run (`--max-requests`); a step that finds it
    /// empty stops early and says so.
    pub budget: Arc<AtomicU64>,
}

/// What a step measured.
#[derive(Debug)]
pub struct StepOutcome {
    pub kinds: Vec<Kind>,
    pub stats: StepStats,
    /// `--max-requests` ran out during the step.
    pub truncated: bool,
    /// Wall time of the whole step: warm-up, window and the drain of the
    /// requests still in flight at its end.
    pub elapsed: Duration,
}

/// Runs one step against `workload` and waits for all of its arrivals to finish.
pub async fn run_step(
    workload: Arc<dyn Workload>,
    spec: StepSpec,
    config: &EngineConfig,
    step: u64,
) -> anyhow::Result<StepOutcome> {
    let kinds = workload.kinds();
    let lanes = config.lanes.max(1);
    // A little lead so every lane is running before the first arrival is due.
    let start = Instant::now() + Duration::from_millis(5);
    let window_start = start + LaneSchedule::window_start(spec.arrivals, spec.rate, spec.warmup);
    let window_end = window_start + spec.duration;
    let in_flight = Arc::new(AtomicUsize::new(0));
    let seed = Rng::new(config.seed).fork(step);
    let handles: Vec<_> = (0..lanes)
        .map(|lane| {
            let rng = seed.fork(lane as u64 + 1);
            let schedule = LaneSchedule::new(
                spec.arrivals,
                spec.rate,
                spec.warmup,
                spec.duration,
                lane as u64,
                lanes as u64,
                rng.fork(0),
            );
            tokio::spawn(Lane {
                workload: Arc::clone(&workload),
                schedule: schedule.peekable(),
                start,
                in_flight: Arc::clone(&in_flight),
                max_in_flight: config.max_in_flight,
                budget: Arc::clone(&config.budget),
                rng,
                stats: Some(StepStats::new(kinds.len(), window_end)),
                running: FuturesUnordered::new(),
                timer: Box::pin(tokio::time::sleep_until(start.into())),
                truncated: false,
            })
        })
        .collect();
    let mut stats = StepStats::new(kinds.len(), window_end);
    let mut truncated = false;
    for handle in handles {
        let (lane_stats, lane_truncated) = handle.await?;
        stats.merge(&lane_stats);
        truncated |= lane_truncated;
    }
    Ok(StepOutcome {
        kinds,
        stats,
        truncated,
        elapsed: start.elapsed(),
    })
}

/// An arrival in flight, tagged with whether it is measured (not warm-up).
struct Tagged {
    measured: bool,
    work: ArrivalFuture,
}

impl Future for Tagged {
    type Output = (bool, Done);

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<(bool, Done)> {
        let measured = self.measured;
        self.work.as_mut().poll(cx).map(|done| (measured, done))
    }
}

struct Lane {
    workload: Arc<dyn Workload>,
    schedule: std::iter::Peekable<LaneSchedule>,
    start: Instant,
    in_flight: Arc<AtomicUsize>,
    max_in_flight: usize,
    budget: Arc<AtomicU64>,
    rng: Rng,
    stats: Option<StepStats>,
    running: FuturesUnordered<Tagged>,
    timer: Pin<Box<Sleep>>,
    truncated: bool,
}

/// Rounds of collecting and dispatching before a busy lane yields to the
/// other tasks of its worker thread.
const ROUNDS_BEFORE_YIELD: usize = 8;

impl Lane {
    fn finished(&mut self, measured: bool, done: Done) {
        self.in_flight.fetch_sub(1, Ordering::Relaxed);
        let Some(stats) = self.stats.as_mut() else {
            return;
        };
        if !measured {
            return;
        }
        match done {
            Done::One(sample) => stats.record(&sample),
            Done::Many(samples) => samples.iter().for_each(|s| stats.record(s)),
        }
    }

    /// Starts (or refuses) every arrival that is due; true if any was.
    fn dispatch_due(&mut self) -> bool {
        let now = Instant::now();
        let mut any = false;
        while let Some(arrival) = self.schedule.peek().copied() {
            let intended = self.start + arrival.offset;
            if intended > now {
                break;
            }
            self.schedule.next();
            any = true;
            if self
                .budget
                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |left| {
                    left.checked_sub(1)
                })
                .is_err()
            {
                self.truncated = true;
                self.schedule.by_ref().for_each(drop);
                break;
            }
            let choice = self.workload.choose(&mut self.rng);
            let admitted = self
                .in_flight
                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
                    (n < self.max_in_flight).then_some(n + 1)
                })
                .is_ok();
            if let (true, Some(stats)) = (arrival.measured, self.stats.as_mut()) {
                stats.record_lag(now.saturating_duration_since(intended));
                if !admitted {
                    stats.record(&Sample {
                        kind: choice.kind,
                        intended,
                        finished: now,
                        outcome: Err(Failure::ClientOverflow),
                    });
                }
            }
            if admitted {
                let work = self.workload.start(choice, &mut self.rng, intended, 0);
                self.running.push(Tagged {
                    measured: arrival.measured,
                    work,
                });
            }
        }
        any
    }
}

impl Future for Lane {
    type Output = (StepStats, bool);

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let lane = self.get_mut();
        for _ in 0..ROUNDS_BEFORE_YIELD {
            while let Poll::Ready(Some((measured, done))) = lane.running.poll_next_unpin(cx) {
                lane.finished(measured, done);
            }
            if lane.dispatch_due() {
                // Poll what was just started before sleeping.
                continue;
            }
            match lane.schedule.peek() {
                Some(next) => {
                    let due = lane.start + next.offset;
                    lane.timer.as_mut().reset(due.into());
                    if lane.timer.as_mut().poll(cx).is_ready() {
                        continue;
                    }
                    return Poll::Pending;
                }
                None if lane.running.is_empty() => {
                    let stats = lane
                        .stats
                        .take()
                        .unwrap_or_else(|| StepStats::new(0, Instant::now()));
                    return Poll::Ready((stats, lane.truncated));
                }
                None => return Poll::Pending,
            }
        }
        cx.waker().wake_by_ref();
        Poll::Pending
    }
}
