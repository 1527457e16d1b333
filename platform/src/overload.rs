//! Overload protection: admit what the process can serve quickly, refuse the
//! rest in microseconds, and keep the work in flight (and so memory) bounded.
//!
//! Two limits guard every server, gRPC and the gateway alike ([`AdmissionLayer`],
//! outermost, so a refused request costs neither a span, a request id, a
//! metric label lookup nor a log line):
//!
//! * **work in flight** — at most `OVERLOAD_MAX_IN_FLIGHT` requests being
//!   handled at once. This bounds memory and every queue behind the server (the
//!   database pool's waiters, Redis commands, upstream calls) whatever the
//!   offered load. Within it an adaptive limit answers for the queues a CPU
//!   signal cannot see (work waiting on Redis, a database, another service):
//!   every 100 ms the least time a request took to be served (a queue that
//!   stands, as below) is compared with the least seen over the last 30 s.
//!   While it exceeds that baseline by more than `OVERLOAD_QUEUE_TARGET_MS`,
//!   the limit is cut in proportion (at most halved each time); while the
//!   limit is in use and no queue stands, it grows by a sixteenth. The requests
//!   in flight settle where the work behind the server keeps up without a queue.
//! * **CPU** — a probe task sleeps a few milliseconds at a time and measures how
//!   late the runtime wakes it. When this process cannot get the CPU to run what
//!   is ready, every task is late by about as much, requests included: the
//!   lateness *is* the queueing delay a new request would see. While the least
//!   lateness of the last four samples (a standing queue, not one burst or one
//!   blocking call) is above `OVERLOAD_LAG_TARGET_MS`, the share of new requests
//!   admitted is cut by an eighth per sample; otherwise it grows back by 1/64
//!   per sample (AIMD, the
//!   way TCP finds a link's capacity), so admitted work settles where the
//!   process keeps up and the requests it serves stay fast. Lateness with
//!   fewer than 16 requests in flight is someone else's load (another process
//!   on the node) and refuses nothing. Refused requests
//!   are spread evenly over time (a Weyl sequence), not in bursts.
//!
//! A refusal is UNAVAILABLE with reason `OVERLOADED` and a one-second
//! `RetryInfo` (gRPC), or 503 with `Retry-After: 1` (the gateway), counted in
//! `overload_shed_total{server,reason}` and logged at most once a second.

use std::pin::Pin;
use std::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock, Weak};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use crate::settings::{Env, SettingsError};

/// The admitted share is a fixed-point fraction of this.
const ADMIT_ALL: u32 = 1 << 16;
/// Never refuse everything: a trickle keeps serving while the probe recovers.
const ADMIT_FLOOR: u32 = ADMIT_ALL / 100;
/// How long the probe sleeps between samples. tokio's timer has 1 ms ticks,
/// so an idle runtime wakes it within about 1 ms of this.
const PROBE_PERIOD: Duration = Duration::from_millis(2);
/// Late samples in a row that make a standing queue.
const STANDING_SAMPLES: usize = 4;
/// Requests in flight below which lateness is not ours to shed.
const LAG_MIN_IN_FLIGHT: usize = 16;
/// How often the probe publishes its gauges.
const GAUGE_EVERY: u32 = 100;
/// Probe samples per adaptive-limit interval (100 ms).
const LIMIT_EVERY: u32 = 50;
/// Served requests an interval needs before its latency says anything.
const LIMIT_MIN_SERVED: u64 = 16;
/// Intervals per baseline slot (1 s), and slots kept (30 s).
const BASELINE_SLOT_INTERVALS: u32 = 10;
const BASELINE_SLOTS: usize = 30;

/// Overload settings, from the environment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OverloadSettings {
    /// `OVERLOAD_MAX_IN_FLIGHT` (default 256): requests handled at once. By
    /// Little's law the queue it allows is this over the throughput: 256 at
    /// svc-product's 8,000 GetProduct/s on 2 cores is 32 ms. At 1024 a server
    /// whose work waits on I/O (no CPU lag to see) let 1.9 s queues build at
    /// twice its capacity (docs/benchmarks.md, "Overload").
    pub max_in_flight: usize,
    /// `OVERLOAD_LAG_TARGET_MS` (default 5; 0 turns the CPU limit off): the
    /// runtime lateness above which fewer new requests are admitted.
    pub lag_target: Duration,
    /// `OVERLOAD_QUEUE_TARGET_MS` (default 2; 0 keeps the in-flight limit at
    /// `max_in_flight`): the standing queueing time behind the server, over
    /// the least service time seen, above which the in-flight limit shrinks.
    pub queue_target: Duration,
    /// `GRPC_MAX_CONCURRENT_STREAMS` (default 256): HTTP/2 streams a client may
    /// open on one connection (gRPC servers); more wait in the client.
    pub max_concurrent_streams: u32,
}

impl Default for OverloadSettings {
    fn default() -> Self {
        Self {
            max_in_flight: 256,
            lag_target: Duration::from_millis(5),
            // 5 let the gateway's product reads at twice their capacity reach a
            // p99 of 53 ms; 2 held it at 32 ms (docs/benchmarks.md).
            queue_target: Duration::from_millis(2),
            max_concurrent_streams: 256,
        }
    }
}

impl OverloadSettings {
    pub fn from_env(env: &Env) -> Result<Self, SettingsError> {
        let defaults = Self::default();
        let max_in_flight: usize = env.within(
            "OVERLOAD_MAX_IN_FLIGHT",
            defaults.max_in_flight,
            1..=1_000_000,
        )?;
        let lag_ms: u64 = env.within("OVERLOAD_LAG_TARGET_MS", 5, 0..=10_000)?;
        let queue_ms: u64 = env.within(
            "OVERLOAD_QUEUE_TARGET_MS",
            defaults.queue_target.as_millis() as u64,
            0..=60_000,
        )?;
        let max_concurrent_streams: u32 = env.within(
            "GRPC_MAX_CONCURRENT_STREAMS",
            defaults.max_concurrent_streams,
            1..=100_000,
        )?;
        Ok(Self {
            max_in_flight,
            lag_target: Duration::from_millis(lag_ms),
            queue_target: Duration::from_millis(queue_ms),
            max_concurrent_streams,
        })
    }
}

/// Why a request was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// As many requests as the in-flight limit allows are being handled.
    InFlight,
    /// The runtime is late: the CPU is saturated.
    Lag,
}

impl Refusal {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::InFlight => "in_flight",
            Self::Lag => "lag",
        }
    }
}

/// One server's admission control; clones share it.
#[derive(Clone, Debug)]
pub struct Admission {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    server: &'static str,
    lag_target: Duration,
    in_flight: AtomicUsize,
    /// The in-flight limit now, at most `max_in_flight` (see [`Limit`]).
    limit: AtomicUsize,
    /// The most requests in flight at once since the probe last looked.
    peak_in_flight: AtomicUsize,
    /// Requests served since the probe last looked, and the least time one took
    /// (nanoseconds; `u64::MAX` when none).
    served: AtomicU64,
    least_service_ns: AtomicU64,
    /// The admitted share of new requests, out of [`ADMIT_ALL`].
    admit: AtomicU32,
    /// Numbers the requests for the even spread of refusals.
    ticket: AtomicU64,
    shed_in_flight: metrics::Counter,
    shed_lag: metrics::Counter,
    in_flight_log: LogThrottle,
    lag_log: LogThrottle,
}

impl Admission {
    /// Admission for the server named `server` (`grpc`, `http`: the metrics
    /// label). With a lag target, starts the probe on the current tokio
    /// runtime; it stops when the last clone is dropped.
    pub fn new(server: &'static str, settings: &OverloadSettings) -> Self {
        // The counters below bind to the recorder there is now: make sure it is ours.
        crate::metrics::handle();
        let shed = |reason: Refusal| metrics::counter!("overload_shed_total", "server" => server, "reason" => reason.as_str());
        let inner = Arc::new(Inner {
            server,
            lag_target: settings.lag_target,
            in_flight: AtomicUsize::new(0),
            limit: AtomicUsize::new(settings.max_in_flight),
            peak_in_flight: AtomicUsize::new(0),
            served: AtomicU64::new(0),
            least_service_ns: AtomicU64::new(u64::MAX),
            admit: AtomicU32::new(ADMIT_ALL),
            ticket: AtomicU64::new(0),
            shed_in_flight: shed(Refusal::InFlight),
            shed_lag: shed(Refusal::Lag),
            in_flight_log: LogThrottle::default(),
            lag_log: LogThrottle::default(),
        });
        let limit = (!settings.queue_target.is_zero())
            .then(|| Limit::new(settings.max_in_flight, settings.queue_target));
        if !settings.lag_target.is_zero() || limit.is_some() {
            tokio::spawn(probe(Arc::downgrade(&inner), limit));
        }
        Self { inner }
    }

    /// Admits a request (the permit frees its place when dropped) or says why not.
    pub fn try_admit(&self) -> Result<Permit, Refusal> {
        let inner = &self.inner;
        let admit = inner.admit.load(Ordering::Relaxed);
        if admit < ADMIT_ALL {
            // Golden-ratio Weyl sequence: the top 16 bits of n·φ·2⁶⁴ are spread
            // evenly over [0, 2¹⁶), so a share `admit` of tickets falls below it.
            let ticket = inner.ticket.fetch_add(1, Ordering::Relaxed);
            let position = (ticket.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 48) as u32;
            if position >= admit {
                return Err(self.refuse(Refusal::Lag));
            }
        }
        let previous = inner.in_flight.fetch_add(1, Ordering::AcqRel);
        if previous >= inner.limit.load(Ordering::Relaxed) {
            inner.in_flight.fetch_sub(1, Ordering::AcqRel);
            return Err(self.refuse(Refusal::InFlight));
        }
        inner
            .peak_in_flight
            .fetch_max(previous + 1, Ordering::Relaxed);
        Ok(Permit {
            inner: Arc::clone(inner),
            admitted: Instant::now(),
        })
    }

    /// Requests being handled now.
    pub fn in_flight(&self) -> usize {
        self.inner.in_flight.load(Ordering::Relaxed)
    }

    /// The in-flight limit now.
    pub fn limit(&self) -> usize {
        self.inner.limit.load(Ordering::Relaxed)
    }

    /// The share of new requests admitted now, 0.0–1.0.
    pub fn admitted_share(&self) -> f64 {
        f64::from(self.inner.admit.load(Ordering::Relaxed)) / f64::from(ADMIT_ALL)
    }

    fn refuse(&self, refusal: Refusal) -> Refusal {
        let inner = &self.inner;
        let (counter, log) = match refusal {
            Refusal::InFlight => (&inner.shed_in_flight, &inner.in_flight_log),
            Refusal::Lag => (&inner.shed_lag, &inner.lag_log),
        };
        counter.increment(1);
        if let Some(refused) = log.ready() {
            tracing::warn!(
                server = inner.server,
                reason = refusal.as_str(),
                refused,
                in_flight = inner.in_flight.load(Ordering::Relaxed),
                limit = inner.limit.load(Ordering::Relaxed),
                admitted_share =
                    f64::from(inner.admit.load(Ordering::Relaxed)) / f64::from(ADMIT_ALL),
                "overloaded: refusing requests"
            );
        }
        refusal
    }
}

/// A request's place among those in flight.
#[derive(Debug)]
pub struct Permit {
    inner: Arc<Inner>,
    admitted: Instant,
}

impl Drop for Permit {
    fn drop(&mut self) {
        let inner = &self.inner;
        inner.in_flight.fetch_sub(1, Ordering::AcqRel);
        let took = u64::try_from(self.admitted.elapsed().as_nanos()).unwrap_or(u64::MAX);
        inner.least_service_ns.fetch_min(took, Ordering::Relaxed);
        inner.served.fetch_add(1, Ordering::Relaxed);
    }
}

/// What the requests of one interval showed.
#[derive(Clone, Copy, Debug)]
struct Interval {
    served: u64,
    /// The least time one of them took: the queue that stood all interval.
    least: Duration,
    /// The most in flight at once.
    peak_in_flight: usize,
}

/// The adaptive in-flight limit: shrinks while a queue stands behind the
/// server, grows while the limit is in use and none does (module docs).
#[derive(Debug)]
struct Limit {
    max: usize,
    floor: usize,
    target: Duration,
    now: usize,
    /// The least service time of each of the last [`BASELINE_SLOTS`] seconds
    /// (`None`: no interval of that second said anything).
    slots: [Option<Duration>; BASELINE_SLOTS],
    intervals: u32,
}

impl Limit {
    fn new(max: usize, target: Duration) -> Self {
        Self {
            max,
            floor: LAG_MIN_IN_FLIGHT.min(max),
            target,
            now: max,
            slots: [None; BASELINE_SLOTS],
            intervals: 0,
        }
    }

    /// The limit after `interval`.
    fn next(&mut self, interval: Interval) -> usize {
        let slot = (self.intervals / BASELINE_SLOT_INTERVALS) as usize % BASELINE_SLOTS;
        if self.intervals.is_multiple_of(BASELINE_SLOT_INTERVALS) {
            self.slots[slot] = None;
        }
        self.intervals = self.intervals.wrapping_add(1);
        if interval.served < LIMIT_MIN_SERVED {
            return self.now;
        }
        let least = interval.least;
        self.slots[slot] = Some(self.slots[slot].map_or(least, |s| s.min(least)));
        let baseline = self.slots.iter().flatten().min().copied().unwrap_or(least);
        let bearable = baseline + self.target;
        self.now = if least > bearable {
            // Cut in proportion to the excess: a queue twice the bearable
            // halves the limit at once instead of in several steps.
            let keep = (bearable.as_secs_f64() / least.as_secs_f64()).max(0.5);
            ((self.now as f64 * keep) as usize).max(self.floor)
        } else if interval.peak_in_flight * 2 >= self.now {
            (self.now + self.now / 16 + 1).min(self.max)
        } else {
            self.now
        };
        self.now
    }
}

/// Measures the runtime's lateness and steers the admitted share (AIMD); every
/// [`LIMIT_EVERY`] samples, steers the in-flight limit.
async fn probe(inner: Weak<Inner>, mut limit: Option<Limit>) {
    let mut samples = 0u32;
    let mut lag_ewma = 0.0f64;
    let mut recent = [Duration::ZERO; STANDING_SAMPLES];
    loop {
        let asleep = Instant::now();
        tokio::time::sleep(PROBE_PERIOD).await;
        let lag = asleep.elapsed().saturating_sub(PROBE_PERIOD);
        let Some(inner) = inner.upgrade() else { return };
        recent[samples as usize % STANDING_SAMPLES] = lag;
        // The least lateness of the last few samples: a queue that stands, not
        // one burst or one blocking call (CoDel's observation).
        let standing = recent.iter().min().copied().unwrap_or_default();
        let admit = inner.admit.load(Ordering::Relaxed);
        // Late with little in flight: the CPU is taken by someone else (another
        // process on the node, a build on a laptop), and refusing our few
        // requests would not give it back.
        let busy = inner.in_flight.load(Ordering::Relaxed) >= LAG_MIN_IN_FLIGHT;
        let next = if inner.lag_target.is_zero() {
            ADMIT_ALL
        } else if busy && standing > inner.lag_target {
            (admit - admit / 8).max(ADMIT_FLOOR)
        } else {
            (admit + ADMIT_ALL / 64).min(ADMIT_ALL)
        };
        inner.admit.store(next, Ordering::Relaxed);
        lag_ewma = 0.9 * lag_ewma + 0.1 * lag.as_secs_f64();
        samples += 1;
        if let Some(limit) = limit.as_mut()
            && samples.is_multiple_of(LIMIT_EVERY)
        {
            let interval = Interval {
                served: inner.served.swap(0, Ordering::Relaxed),
                least: Duration::from_nanos(
                    inner.least_service_ns.swap(u64::MAX, Ordering::Relaxed),
                ),
                peak_in_flight: inner
                    .peak_in_flight
                    .swap(inner.in_flight.load(Ordering::Relaxed), Ordering::Relaxed),
            };
            inner.limit.store(limit.next(interval), Ordering::Relaxed);
        }
        if samples.is_multiple_of(GAUGE_EVERY) {
            let server = inner.server;
            metrics::gauge!("overload_admitted_ratio", "server" => server)
                .set(f64::from(next) / f64::from(ADMIT_ALL));
            metrics::gauge!("overload_in_flight_requests", "server" => server)
                .set(inner.in_flight.load(Ordering::Relaxed) as f64);
            metrics::gauge!("overload_in_flight_limit", "server" => server)
                .set(inner.limit.load(Ordering::Relaxed) as f64);
            metrics::gauge!("runtime_schedule_lag_seconds", "server" => server).set(lag_ewma);
        }
    }
}

/// Lets a message through at most once a second, counting what it held back.
#[derive(Debug, Default)]
pub struct LogThrottle {
    /// Milliseconds since [`epoch`] of the last message let through, plus one
    /// (0: never).
    last: AtomicU64,
    held_back: AtomicU64,
}

fn epoch() -> Instant {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

impl LogThrottle {
    pub const fn new() -> Self {
        Self {
            last: AtomicU64::new(0),
            held_back: AtomicU64::new(0),
        }
    }

    /// `Some(n)` when a message may be logged now, `n` counting the events
    /// since the last one let through (this one included); `None` otherwise.
    pub fn ready(&self) -> Option<u64> {
        self.ready_at(epoch().elapsed().as_millis() as u64 + 1)
    }

    /// [`ready`](Self::ready) at `now`, milliseconds since the epoch plus one.
    fn ready_at(&self, now: u64) -> Option<u64> {
        let last = self.last.load(Ordering::Relaxed);
        let let_through = (last == 0 || now >= last + 1000)
            && self
                .last
                .compare_exchange(last, now, Ordering::AcqRel, Ordering::Relaxed)
                .is_ok();
        if !let_through {
            self.held_back.fetch_add(1, Ordering::Relaxed);
            return None;
        }
        Some(self.held_back.swap(0, Ordering::AcqRel) + 1)
    }
}

/// Tower layer admitting requests through an [`Admission`]; a refused request
/// gets the response `refuse` builds from its headers, without reaching the
/// inner service.
#[derive(Clone)]
pub struct AdmissionLayer<F> {
    admission: Admission,
    refuse: F,
}

impl<F> AdmissionLayer<F> {
    pub fn new(admission: Admission, refuse: F) -> Self {
        Self { admission, refuse }
    }
}

impl<S, F: Clone> tower::Layer<S> for AdmissionLayer<F> {
    type Service = Admitted<S, F>;
    fn layer(&self, inner: S) -> Self::Service {
        Admitted {
            inner,
            admission: self.admission.clone(),
            refuse: self.refuse.clone(),
        }
    }
}

#[derive(Clone)]
pub struct Admitted<S, F> {
    inner: S,
    admission: Admission,
    refuse: F,
}

impl<S, F, ReqBody, ResBody> tower::Service<http::Request<ReqBody>> for Admitted<S, F>
where
    S: tower::Service<http::Request<ReqBody>, Response = http::Response<ResBody>>,
    F: Fn(&http::HeaderMap, Refusal) -> http::Response<ResBody>,
{
    type Response = http::Response<ResBody>;
    type Error = S::Error;
    type Future = AdmittedFuture<S::Future, ResBody>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<ReqBody>) -> Self::Future {
        match self.admission.try_admit() {
            Ok(permit) => AdmittedFuture::Admitted {
                inner: self.inner.call(request),
                permit: Some(permit),
            },
            Err(refusal) => AdmittedFuture::Refused {
                response: Some((self.refuse)(request.headers(), refusal)),
            },
        }
    }
}

pin_project_lite::pin_project! {
    /// The inner call holding its permit until the response head is ready (a
    /// streaming body does not hold a place), or the refusal.
    #[project = AdmittedProjection]
    pub enum AdmittedFuture<Fut, B> {
        Admitted { #[pin] inner: Fut, permit: Option<Permit> },
        Refused { response: Option<http::Response<B>> },
    }
}

impl<Fut, B, E> std::future::Future for AdmittedFuture<Fut, B>
where
    Fut: std::future::Future<Output = Result<http::Response<B>, E>>,
{
    type Output = Result<http::Response<B>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project() {
            AdmittedProjection::Admitted { inner, permit } => {
                let output = std::task::ready!(inner.poll(cx));
                drop(permit.take());
                Poll::Ready(output)
            }
            AdmittedProjection::Refused { response } => match response.take() {
                Some(response) => Poll::Ready(Ok(response)),
                // Polled again after completion: a contract breach by the caller.
                None => Poll::Pending,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(max_in_flight: usize) -> OverloadSettings {
        OverloadSettings {
            max_in_flight,
            lag_target: Duration::ZERO,
            queue_target: Duration::ZERO,
            max_concurrent_streams: 16,
        }
    }

    #[tokio::test]
    async fn in_flight_requests_are_bounded_and_places_come_back() {
        let admission = Admission::new("test", &settings(2));
        let first = admission.try_admit().unwrap();
        let _second = admission.try_admit().unwrap();
        assert_eq!(admission.try_admit().unwrap_err(), Refusal::InFlight);
        assert_eq!(admission.in_flight(), 2);
        drop(first);
        assert!(admission.try_admit().is_ok());
    }

    #[tokio::test]
    async fn a_reduced_share_refuses_that_share_evenly() {
        let admission = Admission::new("test", &settings(1_000_000));
        admission
            .inner
            .admit
            .store(ADMIT_ALL / 4, Ordering::Relaxed);
        let mut admitted = 0;
        let mut longest_refused_run = 0;
        let mut run = 0;
        for _ in 0..10_000 {
            match admission.try_admit() {
                Ok(_) => {
                    admitted += 1;
                    run = 0;
                }
                Err(refusal) => {
                    assert_eq!(refusal, Refusal::Lag);
                    run += 1;
                    longest_refused_run = longest_refused_run.max(run);
                }
            }
        }
        assert!((2_400..=2_600).contains(&admitted), "admitted {admitted}");
        assert!(
            longest_refused_run <= 8,
            "refusals bunched: {longest_refused_run}"
        );
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_blocked_runtime_lowers_the_admitted_share_and_it_recovers() {
        let admission = Admission::new(
            "test",
            &OverloadSettings {
                lag_target: Duration::from_millis(5),
                ..settings(100)
            },
        );
        let _busy: Vec<Permit> = (0..LAG_MIN_IN_FLIGHT)
            .map(|_| admission.try_admit().unwrap())
            .collect();
        tokio::time::sleep(Duration::from_millis(10)).await;
        for _ in 0..8 {
            // Hold the only thread: the probe wakes 30 ms late each time.
            std::thread::sleep(Duration::from_millis(30));
            tokio::task::yield_now().await;
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        assert!(
            admission.admitted_share() < 0.9,
            "share {}",
            admission.admitted_share()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert_eq!(admission.admitted_share(), 1.0);
    }

    #[tokio::test(flavor = "current_thread")]
    async fn lateness_with_little_in_flight_is_someone_elses_load() {
        let admission = Admission::new(
            "test",
            &OverloadSettings {
                lag_target: Duration::from_millis(5),
                ..settings(100)
            },
        );
        let _few = admission.try_admit().unwrap();
        tokio::time::sleep(Duration::from_millis(10)).await;
        for _ in 0..8 {
            std::thread::sleep(Duration::from_millis(30));
            tokio::task::yield_now().await;
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        assert_eq!(admission.admitted_share(), 1.0);
    }

    #[tokio::test(flavor = "current_thread")]
    async fn one_blocking_call_is_not_overload() {
        let admission = Admission::new(
            "test",
            &OverloadSettings {
                lag_target: Duration::from_millis(5),
                ..settings(100)
            },
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
        std::thread::sleep(Duration::from_millis(50));
        for _ in 0..10 {
            tokio::time::sleep(Duration::from_millis(1)).await;
            assert_eq!(admission.admitted_share(), 1.0);
        }
    }

    fn interval(served: u64, least_ms: u64, peak_in_flight: usize) -> Interval {
        Interval {
            served,
            least: Duration::from_millis(least_ms),
            peak_in_flight,
        }
    }

    #[test]
    fn a_standing_queue_cuts_the_limit_in_proportion_down_to_the_floor() {
        let mut limit = Limit::new(256, Duration::from_millis(5));
        // Served in 1 ms with the limit in use: no queue, the limit stays whole.
        assert_eq!(limit.next(interval(500, 1, 256)), 256);
        // 1 ms served plus a 5 ms target: 6 ms is bearable, 8 ms keeps 6/8.
        assert_eq!(limit.next(interval(500, 8, 256)), 192);
        // A queue far beyond the bearable halves it, never more at once.
        assert_eq!(limit.next(interval(500, 100, 192)), 96);
        for _ in 0..10 {
            limit.next(interval(500, 100, 96));
        }
        assert_eq!(limit.now, LAG_MIN_IN_FLIGHT);
    }

    #[test]
    fn the_limit_grows_back_only_while_it_is_in_use() {
        let mut limit = Limit::new(256, Duration::from_millis(5));
        limit.next(interval(500, 1, 10));
        for _ in 0..6 {
            limit.next(interval(500, 200, 256));
        }
        assert_eq!(limit.now, LAG_MIN_IN_FLIGHT);
        // Queue gone, but only 3 in flight: no reason to admit more.
        assert_eq!(limit.next(interval(500, 1, 3)), LAG_MIN_IN_FLIGHT);
        // In use: grows by a sixteenth (and one) per interval, back to the max
        // within a few seconds.
        assert_eq!(limit.next(interval(500, 1, 16)), 18);
        let mut intervals = 1;
        while limit.now < 256 {
            let now = limit.now;
            limit.next(interval(500, 2, now));
            intervals += 1;
        }
        assert!(intervals <= 50, "{intervals} intervals to recover");
        assert_eq!(limit.next(interval(500, 1, 256)), 256);
    }

    #[test]
    fn quiet_intervals_change_nothing() {
        let mut limit = Limit::new(256, Duration::from_millis(5));
        limit.next(interval(500, 1, 10));
        assert_eq!(
            limit.next(interval(LIMIT_MIN_SERVED - 1, 900, 256)),
            256,
            "a few slow calls are not a queue"
        );
    }

    #[test]
    fn the_baseline_forgets_after_thirty_seconds() {
        let mut limit = Limit::new(256, Duration::from_millis(5));
        limit.next(interval(500, 1, 10));
        // The work becomes slower for good (a bigger catalogue, a slower
        // disk): cut at first, then, once the fast second is forgotten, the
        // new service time is the baseline and the limit comes back.
        let mut cut = false;
        for _ in 0..(BASELINE_SLOTS as u32 + 1) * BASELINE_SLOT_INTERVALS {
            cut |= limit.next(interval(500, 20, limit.now)) < 256;
        }
        assert!(cut);
        for _ in 0..60 {
            limit.next(interval(500, 20, limit.now));
        }
        assert_eq!(limit.now, 256);
    }

    #[tokio::test]
    async fn slow_service_lowers_the_in_flight_limit() {
        let admission = Admission::new(
            "test",
            &OverloadSettings {
                queue_target: Duration::from_millis(5),
                ..settings(256)
            },
        );
        // 100 ms of fast requests set the baseline.
        for _ in 0..50 {
            for _ in 0..2 {
                drop(admission.try_admit().unwrap());
            }
            tokio::time::sleep(PROBE_PERIOD).await;
        }
        assert_eq!(admission.limit(), 256);
        // Then each waits 50 ms behind the server, with many in flight.
        for _ in 0..10 {
            let held: Vec<Permit> = (0..64).map(|_| admission.try_admit().unwrap()).collect();
            tokio::time::sleep(Duration::from_millis(50)).await;
            drop(held);
        }
        assert!(admission.limit() < 64, "limit {}", admission.limit());
    }

    #[test]
    fn the_log_throttle_lets_one_message_a_second_through() {
        let throttle = LogThrottle::default();
        assert_eq!(throttle.ready_at(10), Some(1));
        assert_eq!(throttle.ready_at(500), None);
        assert_eq!(throttle.ready_at(1009), None);
        assert_eq!(throttle.ready_at(1010), Some(3));
        assert_eq!(throttle.ready_at(1011), None);
    }

    #[test]
    fn settings_are_validated() {
        let env = Env::from_pairs([("OVERLOAD_MAX_IN_FLIGHT", "0")]);
        assert_eq!(
            OverloadSettings::from_env(&env).unwrap_err().variable,
            "OVERLOAD_MAX_IN_FLIGHT"
        );
        let env = Env::from_pairs([("OVERLOAD_QUEUE_TARGET_MS", "70000")]);
        assert_eq!(
            OverloadSettings::from_env(&env).unwrap_err().variable,
            "OVERLOAD_QUEUE_TARGET_MS"
        );
        let env = Env::from_pairs([("OVERLOAD_LAG_TARGET_MS", "0")]);
        assert!(
            OverloadSettings::from_env(&env)
                .unwrap()
                .lag_target
                .is_zero()
        );
        assert_eq!(
            OverloadSettings::from_env(&Env::from_pairs::<&str, &str>([])).unwrap(),
            OverloadSettings::default()
        );
    }
}
