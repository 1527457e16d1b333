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
//!   offered load, and answers for the stalls a CPU signal cannot see (a slow
//!   database).
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
    /// `GRPC_MAX_CONCURRENT_STREAMS` (default 256): HTTP/2 streams a client may
    /// open on one connection (gRPC servers); more wait in the client.
    pub max_concurrent_streams: u32,
}

impl Default for OverloadSettings {
    fn default() -> Self {
        Self {
            max_in_flight: 256,
            lag_target: Duration::from_millis(5),
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
        let max_concurrent_streams: u32 = env.within(
            "GRPC_MAX_CONCURRENT_STREAMS",
            defaults.max_concurrent_streams,
            1..=100_000,
        )?;
        Ok(Self {
            max_in_flight,
            lag_target: Duration::from_millis(lag_ms),
            max_concurrent_streams,
        })
    }
}

/// Why a request was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// `max_in_flight` requests are already being handled.
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
    max_in_flight: usize,
    lag_target: Duration,
    in_flight: AtomicUsize,
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
            max_in_flight: settings.max_in_flight,
            lag_target: settings.lag_target,
            in_flight: AtomicUsize::new(0),
            admit: AtomicU32::new(ADMIT_ALL),
            ticket: AtomicU64::new(0),
            shed_in_flight: shed(Refusal::InFlight),
            shed_lag: shed(Refusal::Lag),
            in_flight_log: LogThrottle::default(),
            lag_log: LogThrottle::default(),
        });
        if !settings.lag_target.is_zero() {
            tokio::spawn(probe(Arc::downgrade(&inner)));
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
        if previous >= inner.max_in_flight {
            inner.in_flight.fetch_sub(1, Ordering::AcqRel);
            return Err(self.refuse(Refusal::InFlight));
        }
        Ok(Permit {
            inner: Arc::clone(inner),
        })
    }

    /// Requests being handled now.
    pub fn in_flight(&self) -> usize {
        self.inner.in_flight.load(Ordering::Relaxed)
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
}

impl Drop for Permit {
    fn drop(&mut self) {
        self.inner.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Measures the runtime's lateness and steers the admitted share (AIMD).
async fn probe(inner: Weak<Inner>) {
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
        let next = if busy && standing > inner.lag_target {
            (admit - admit / 8).max(ADMIT_FLOOR)
        } else {
            (admit + ADMIT_ALL / 64).min(ADMIT_ALL)
        };
        inner.admit.store(next, Ordering::Relaxed);
        lag_ewma = 0.9 * lag_ewma + 0.1 * lag.as_secs_f64();
        samples += 1;
        if samples.is_multiple_of(GAUGE_EVERY) {
            let server = inner.server;
            metrics::gauge!("overload_admitted_ratio", "server" => server)
                .set(f64::from(next) / f64::from(ADMIT_ALL));
            metrics::gauge!("overload_in_flight_requests", "server" => server)
                .set(inner.in_flight.load(Ordering::Relaxed) as f64);
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
