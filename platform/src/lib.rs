//! The runtime kit every shopmesh binary uses, so that no service repeats it:
//! settings, telemetry, metrics, gRPC hosting, PostgreSQL, Redis, status
//! building, paging, events (outbox, inbox, Kafka), and following stock.

pub mod access;
pub mod app;
pub mod auth;
pub mod clients;
pub mod db;
pub mod errors;
pub mod events;
pub mod grpc;
pub mod metrics;
pub mod overload;
pub mod paging;
pub mod redis;
pub mod settings;
pub mod shutdown;
pub mod stock;
pub mod telemetry;
pub mod testing;
pub mod tracing_context;

pub use app::{Context, ServiceSpec};
pub use grpc::GrpcServer;
