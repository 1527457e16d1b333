//! The runtime kit every shopmesh binary uses, so that no service repeats it:
//! settings, telemetry, metrics, gRPC hosting, PostgreSQL, Redis, status
//! building, paging, service-to-service channels. Events (outbox, inbox,
//! Kafka) are the `shopmesh-events` crate, an [`app::Extension`] only the
//! services that publish or consume carry.

pub mod access;
pub mod app;
pub mod auth;
pub mod backoff;
pub mod clients;
pub mod db;
pub mod errors;
pub mod grpc;
pub mod lru;
pub mod metrics;
pub mod overload;
pub mod paging;
pub mod redis;
pub mod runner;
pub mod settings;
pub mod shutdown;
pub mod telemetry;
pub mod tracing_context;

pub use app::{Context, ServiceSpec};

pub use grpc::GrpcServer;
/// The global allocator every shopmesh binary installs:
/// `#[global_allocator] static ALLOCATOR: shopmesh_platform::Allocator = shopmesh_platform::Allocator;`
/// mimalloc's thread-local free lists instead of glibc's arenas, whose
/// malloc, free and consolidation took ~30 % of svc-product's CPU under load
/// (docs/benchmarks.md).
pub use mimalloc::MiMalloc as Allocator;
