//! The REST edge: every `google.api.http` route of the contracts, translated to a
//! gRPC call on the owning service, with proto3 JSON, problem+json errors,
//! request ids, trace propagation, timeouts, body limits, CORS and compression.

mod edge;
pub mod openapi;
pub mod problem;
pub mod routes;
pub mod settings;
pub mod template;
pub mod transcode;
pub mod upstream;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::serve::ListenerExt as _;
use shopmesh_platform::auth::{GrpcKeySource, SessionStore, TokenVerifier};
use tokio::net::TcpListener;

pub use edge::AppState;
pub use edge::cache::EdgeCache;
pub use edge::router;
use routes::RouteTable;
use settings::GatewaySettings;
use upstream::Upstreams;

/// The OpenAPI document of every routed method, as pretty JSON.
pub fn openapi_json() -> anyhow::Result<String> {
    let table = routes::routes(&routes::descriptor_pool()?)?;
    Ok(serde_json::to_string_pretty(&openapi::document(&table))?)
}

/// The gateway with its listeners bound, not yet serving.
pub struct Gateway {
    listener: TcpListener,
    metrics_listener: TcpListener,
    router: axum::Router,
    drain: std::time::Duration,
}

impl Gateway {
    /// Loads the route table, prepares the upstream channels and the token
    /// verifier (JWKS from svc-auth, sessions in Redis) and binds both ports.
    pub async fn build(settings: &GatewaySettings) -> anyhow::Result<Self> {
        let redis = shopmesh_platform::redis::connect(&settings.redis).await?;
        let auth_url = settings
            .upstreams
            .get("auth")
            .ok_or_else(|| anyhow::anyhow!("no AUTH_GRPC_URL"))?;
        let verifier = TokenVerifier::new(
            Arc::new(GrpcKeySource::new(auth_url)?),
            SessionStore::new(redis),
            &settings.jwt_issuer,
            &settings.jwt_audience,
        );
        let state = app_state(settings, Arc::new(verifier))?;
        tracing::info!(routes = state.table.routes().len(), "route table loaded");
        Ok(Self {
            listener: TcpListener::bind(settings.http_addr).await?,
            metrics_listener: shopmesh_platform::metrics::bind(settings.metrics_addr).await?,
            router: router(Arc::new(state), &settings.cors),
            drain: settings.drain,
        })
    }

    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    pub fn metrics_addr(&self) -> std::io::Result<SocketAddr> {
        self.metrics_listener.local_addr()
    }

    /// Serves until `shutdown`, then stops accepting and lets in-flight requests
    /// finish for at most the drain period.
    pub async fn serve(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let (metrics_stop, metrics_stopped) = tokio::sync::oneshot::channel::<()>();
        let metrics = tokio::spawn(shopmesh_platform::metrics::serve(
            self.metrics_listener,
            async {
                let _ = metrics_stopped.await;
            },
        ));
        tracing::info!(addr = %self.listener.local_addr()?, "gateway listening");
        let (begin_drain, draining) = tokio::sync::oneshot::channel::<()>();
        let app = self
            .router
            .into_make_service_with_connect_info::<SocketAddr>();
        // TCP_NODELAY: no Nagle delay on multi-segment responses.
        let listener = self.listener.tap_io(|tcp| {
            if let Err(err) = tcp.set_nodelay(true) {
                tracing::warn!(error = %err, "cannot set TCP_NODELAY");
            }
        });
        let server = axum::serve(listener, app).with_graceful_shutdown(async {
            let _ = draining.await;
        });
        let server = server.into_future();
        tokio::pin!(server);
        let result = tokio::select! {
            result = &mut server => result.map_err(Into::into),
            () = shutdown => {
                tracing::info!(drain_seconds = self.drain.as_secs(), "draining in-flight requests");
                let _ = begin_drain.send(());
                match tokio::time::timeout(self.drain, &mut server).await {
                    Ok(result) => result.map_err(Into::into),
                    Err(_) => {
                        tracing::warn!("drain period over, closing remaining requests");
                        Ok(())
                    }
                }
            }
        };
        let _ = metrics_stop.send(());
        let _ = metrics.await;
        result
    }
}

/// The shared state of the request handlers. With the edge cache on, this
/// also starts following svc-product's catalog stream in the background (on
/// the current Tokio runtime, until the state is dropped); it does not wait
/// for it.
pub fn app_state(
    settings: &GatewaySettings,
    verifier: Arc<TokenVerifier>,
) -> anyhow::Result<AppState> {
    let pool = routes::descriptor_pool()?;
    let table = routes::routes(&pool)?;
    let openapi = serde_json::to_vec(&openapi::document(&table))?;
    let upstreams = Upstreams::new(&settings.upstreams, std::time::Duration::from_secs(2))?;
    let edge_cache = match settings.edge_cache_bytes {
        0 => None,
        budget => {
            let product = upstreams
                .channel("product")
                .ok_or_else(|| anyhow::anyhow!("no PRODUCT_GRPC_URL"))?;
            tracing::info!(
                budget_mb = budget >> 20,
                ttl_seconds = settings.edge_cache_ttl.as_secs(),
                "edge cache of product pages on, serving once the catalog stream is live"
            );
            Some(EdgeCache::watching(
                budget,
                settings.edge_cache_ttl,
                product,
            )?)
        }
    };
    Ok(AppState {
        table: RouteTable::new(table),
        upstreams,
        openapi: openapi.into(),
        timeout: settings.request_timeout,
        body_limit: settings.body_limit,
        verifier,
        trusted_proxy_hops: settings.trusted_proxy_hops,
        overload: settings.overload,
        edge_cache,
    })
}
