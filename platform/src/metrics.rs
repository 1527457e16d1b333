//! Prometheus metrics: one process-wide recorder, a `/metrics` endpoint on its own
//! port, and the tower layer that counts and times every gRPC call by method and
//! status code.

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::OnceLock;
use std::task::{Context, Poll, ready};
use std::time::{Duration, Instant};

use http_body::Frame;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use tokio::net::TcpListener;

/// Latency buckets in seconds: fine below 100 ms where a healthy service lives,
/// coarse above, up to the gateway's default timeout.
const LATENCY_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 15.0,
];

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// The process-wide recorder, installed on first use (tests run several services
/// in one process, so installation must be idempotent).
pub fn handle() -> &'static PrometheusHandle {
    HANDLE.get_or_init(|| {
        let recorder = PrometheusBuilder::new()
            .set_buckets_for_metric(
                Matcher::Suffix("_duration_seconds".to_owned()),
                LATENCY_BUCKETS,
            )
            .map(|builder| builder.build_recorder());
        match recorder {
            Ok(recorder) => {
                let handle = recorder.handle();
                // Fails only if another recorder is installed; then ours still renders.
                let _ = metrics::set_global_recorder(recorder);
                handle
            }
            // The bucket list is a non-empty constant, so this cannot happen; fall back
            // to a recorder with default buckets rather than crash.
            Err(_) => PrometheusBuilder::new()
                .install_recorder()
                .unwrap_or_else(|_| PrometheusBuilder::new().build_recorder().handle()),
        }
    })
}

/// Binds the metrics listener (port 0 allowed, for tests).
pub async fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    TcpListener::bind(addr).await
}

/// Serves `GET /metrics` on `listener` until `shutdown` resolves.
pub async fn serve(
    listener: TcpListener,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let handle = handle();
    let app = axum::Router::new().route(
        "/metrics",
        axum::routing::get(move || async move {
            handle.run_upkeep();
            (
                [(http::header::CONTENT_TYPE, "text/plain; version=0.0.4")],
                handle.render(),
            )
        }),
    );
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
}

/// Publishes the pool's in-use and idle connection counts every few seconds.
pub fn report_pool(pool: sqlx::PgPool) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(5));
        loop {
            tick.tick().await;
            if pool.is_closed() {
                return;
            }
            let idle = pool.num_idle() as f64;
            let size = f64::from(pool.size());
            metrics::gauge!("db_pool_connections", "state" => "idle").set(idle);
            metrics::gauge!("db_pool_connections", "state" => "in_use").set(size - idle);
        }
    })
}

/// Counts a cache lookup as a hit or a miss.
pub fn cache_lookup(cache: &'static str, hit: bool) {
    let result = if hit { "hit" } else { "miss" };
    metrics::counter!("cache_requests_total", "cache" => cache, "result" => result).increment(1);
}

/// Splits `/shop.product.v1.ProductService/GetProduct` into service and method.
fn grpc_route(path: &str) -> (String, String) {
    let trimmed = path.trim_start_matches('/');
    match trimmed.split_once('/') {
        Some((service, method)) => (service.to_owned(), method.to_owned()),
        None => (trimmed.to_owned(), String::new()),
    }
}

/// The gRPC code name for a numeric `grpc-status`, as Prometheus label.
pub fn code_name(code: tonic::Code) -> &'static str {
    use tonic::Code::*;
    match code {
        Ok => "OK",
        Cancelled => "CANCELLED",
        Unknown => "UNKNOWN",
        InvalidArgument => "INVALID_ARGUMENT",
        DeadlineExceeded => "DEADLINE_EXCEEDED",
        NotFound => "NOT_FOUND",
        AlreadyExists => "ALREADY_EXISTS",
        PermissionDenied => "PERMISSION_DENIED",
        ResourceExhausted => "RESOURCE_EXHAUSTED",
        FailedPrecondition => "FAILED_PRECONDITION",
        Aborted => "ABORTED",
        OutOfRange => "OUT_OF_RANGE",
        Unimplemented => "UNIMPLEMENTED",
        Internal => "INTERNAL",
        Unavailable => "UNAVAILABLE",
        DataLoss => "DATA_LOSS",
        Unauthenticated => "UNAUTHENTICATED",
    }
}

fn status_in(headers: &http::HeaderMap) -> Option<tonic::Code> {
    headers
        .get("grpc-status")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<i32>().ok())
        .map(tonic::Code::from_i32)
}

/// One call's measurement, recorded exactly once: when the status is known, or
/// as CANCELLED if the client went away before the trailers were sent.
struct Measurement {
    service: String,
    method: String,
    start: Instant,
}

impl Measurement {
    fn record(self, code: tonic::Code) {
        let labels = [("service", self.service), ("method", self.method)];
        metrics::histogram!("grpc_server_request_duration_seconds", &labels)
            .record(self.start.elapsed().as_secs_f64());
        let [service, method] = labels;
        metrics::counter!(
            "grpc_server_requests_total",
            &[service, method, ("code", code_name(code).to_owned())]
        )
        .increment(1);
    }
}

struct PendingMeasurement(Option<Measurement>);

impl PendingMeasurement {
    fn finish(&mut self, code: tonic::Code) {
        if let Some(m) = self.0.take() {
            m.record(code);
        }
    }
}

impl Drop for PendingMeasurement {
    fn drop(&mut self) {
        self.finish(tonic::Code::Cancelled);
    }
}

/// Tower layer recording `grpc_server_requests_total` and
/// `grpc_server_request_duration_seconds` for every call.
#[derive(Clone, Copy, Debug, Default)]
pub struct GrpcMetricsLayer;

impl<S> tower::Layer<S> for GrpcMetricsLayer {
    type Service = GrpcMetrics<S>;
    fn layer(&self, inner: S) -> Self::Service {
        GrpcMetrics { inner }
    }
}

#[derive(Clone, Debug)]
pub struct GrpcMetrics<S> {
    inner: S,
}

impl<S, ReqBody, ResBody> tower::Service<http::Request<ReqBody>> for GrpcMetrics<S>
where
    S: tower::Service<http::Request<ReqBody>, Response = http::Response<ResBody>>,
{
    type Response = http::Response<MeteredBody<ResBody>>;
    type Error = S::Error;
    type Future = MeteredFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<ReqBody>) -> Self::Future {
        let (service, method) = grpc_route(req.uri().path());
        MeteredFuture {
            inner: self.inner.call(req),
            measurement: Some(Measurement {
                service,
                method,
                start: Instant::now(),
            }),
        }
    }
}

pin_project_lite::pin_project! {
    pub struct MeteredFuture<F> {
        #[pin]
        inner: F,
        measurement: Option<Measurement>,
    }
}

impl<F, ResBody, E> std::future::Future for MeteredFuture<F>
where
    F: std::future::Future<Output = Result<http::Response<ResBody>, E>>,
{
    type Output = Result<http::Response<MeteredBody<ResBody>>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let result = ready!(this.inner.poll(cx));
        let mut pending = PendingMeasurement(this.measurement.take());
        Poll::Ready(match result {
            Ok(response) => {
                // A "trailers-only" response (most errors) carries the status in its headers.
                if let Some(code) = status_in(response.headers()) {
                    pending.finish(code);
                }
                Ok(response.map(|inner| MeteredBody { inner, pending }))
            }
            Err(err) => {
                pending.finish(tonic::Code::Internal);
                Err(err)
            }
        })
    }
}

pin_project_lite::pin_project! {
    /// Response body that records the call when its trailers (with `grpc-status`) pass.
    pub struct MeteredBody<B> {
        #[pin]
        inner: B,
        pending: PendingMeasurement,
    }
}

impl<B: http_body::Body> http_body::Body for MeteredBody<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let this = self.project();
        let frame = ready!(this.inner.poll_frame(cx));
        match &frame {
            Some(Ok(frame)) => {
                if let Some(code) = frame.trailers_ref().and_then(status_in) {
                    this.pending.finish(code);
                }
            }
            Some(Err(_)) => this.pending.finish(tonic::Code::Internal),
            None => this.pending.finish(tonic::Code::Ok),
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grpc_paths_split_into_service_and_method() {
        assert_eq!(
            grpc_route("/shop.product.v1.ProductService/GetProduct"),
            (
                "shop.product.v1.ProductService".to_owned(),
                "GetProduct".to_owned()
            )
        );
        assert_eq!(grpc_route("/odd"), ("odd".to_owned(), String::new()));
    }
}
