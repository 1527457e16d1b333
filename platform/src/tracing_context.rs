//! W3C trace context across process boundaries: read from incoming HTTP/gRPC
//! headers, written into outgoing gRPC metadata.

use opentelemetry::propagation::{Extractor, Injector};
use tracing_opentelemetry::OpenTelemetrySpanExt;

struct HeaderExtractor<'a>(&'a http::HeaderMap);

impl Extractor for HeaderExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }
    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(|k| k.as_str()).collect()
    }
}

struct HeaderInjector<'a>(&'a mut http::HeaderMap);

impl Injector for HeaderInjector<'_> {
    fn set(&mut self, key: &str, value: String) {
        if let (Ok(name), Ok(value)) = (
            http::HeaderName::from_bytes(key.as_bytes()),
            http::HeaderValue::from_str(&value),
        ) {
            self.0.insert(name, value);
        }
    }
}

/// Makes `span` a child of the caller's trace when `traceparent` is present.
pub fn attach_remote_parent(span: &tracing::Span, headers: &http::HeaderMap) {
    if headers.contains_key("traceparent") {
        let parent = opentelemetry::global::get_text_map_propagator(|p| {
            p.extract(&HeaderExtractor(headers))
        });
        let _ = span.set_parent(parent);
    }
}

/// Writes the current span's trace context into `headers` (when tracing is exported).
pub fn inject_current(headers: &mut http::HeaderMap) {
    let context = tracing::Span::current().context();
    opentelemetry::global::get_text_map_propagator(|p| {
        p.inject_context(&context, &mut HeaderInjector(headers))
    });
}

/// The correlation data of the call (or event) being handled: what an event
/// produced while handling it carries on, even when traces are not exported.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CallContext {
    pub request_id: String,
    pub traceparent: String,
    pub tracestate: String,
}

tokio::task_local! {
    static CALL_CONTEXT: CallContext;
}

impl CallContext {
    /// From incoming request headers (`x-request-id`, `traceparent`, `tracestate`).
    pub fn from_headers(headers: &http::HeaderMap) -> Self {
        let header = |name: &str| {
            headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_owned()
        };
        Self {
            request_id: header("x-request-id"),
            traceparent: header("traceparent"),
            tracestate: header("tracestate"),
        }
    }

    /// The context of the current task, if it runs inside [`CallContext::scope`].
    pub fn current() -> Option<Self> {
        CALL_CONTEXT.try_with(Clone::clone).ok()
    }

    /// Runs `future` with this context as the current one.
    pub async fn scope<F: std::future::Future>(self, future: F) -> F::Output {
        CALL_CONTEXT.scope(self, future).await
    }

    /// The W3C trace context to hand on: the current span's when traces are
    /// exported (so the consumer's span is a child of ours), else the caller's.
    pub fn current_trace() -> (String, String) {
        let mut headers = http::HeaderMap::new();
        inject_current(&mut headers);
        let get = |name: &str| {
            headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        };
        match get("traceparent") {
            Some(traceparent) => (traceparent, get("tracestate").unwrap_or_default()),
            None => Self::current()
                .map(|c| (c.traceparent, c.tracestate))
                .unwrap_or_default(),
        }
    }
}

/// Tower layer that makes each request's [`CallContext`] current while it is served.
#[derive(Clone, Copy, Debug, Default)]
pub struct CallContextLayer;

impl<S> tower::Layer<S> for CallContextLayer {
    type Service = CallContextService<S>;
    fn layer(&self, inner: S) -> Self::Service {
        CallContextService { inner }
    }
}

/// See [`CallContextLayer`].
#[derive(Clone, Debug)]
pub struct CallContextService<S> {
    inner: S,
}

impl<S, B> tower::Service<http::Request<B>> for CallContextService<S>
where
    S: tower::Service<http::Request<B>>,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future =
        std::pin::Pin<Box<dyn std::future::Future<Output = Result<S::Response, S::Error>> + Send>>;

    fn poll_ready(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let context = CallContext::from_headers(request.headers());
        Box::pin(CALL_CONTEXT.scope(context, self.inner.call(request)))
    }
}

#[cfg(test)]
mod tests {
    use tower::{Layer as _, Service as _, ServiceExt as _};

    use super::*;

    #[tokio::test]
    async fn a_call_sees_its_request_id_and_trace_context() {
        let inner = tower::service_fn(|_request: http::Request<()>| async {
            Ok::<_, std::convert::Infallible>(CallContext::current())
        });
        let mut service = CallContextLayer.layer(inner);
        let request = http::Request::builder()
            .header("x-request-id", "req-7")
            .header(
                "traceparent",
                "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
            )
            .body(())
            .unwrap();
        let seen = service.ready().await.unwrap().call(request).await.unwrap();
        let seen = seen.unwrap();
        assert_eq!(seen.request_id, "req-7");
        assert_eq!(CallContext::current(), None, "only inside the call");
        let (traceparent, _) = seen
            .clone()
            .scope(async { CallContext::current_trace() })
            .await;
        assert_eq!(traceparent, seen.traceparent);
    }
}
