//! The cart's own metrics, beside the per-method gRPC ones every service has
//! (docs/conventions.md):
//! - `cart_operations_total{op, result}`: changes by kind (`create`, `add`,
//!   `update`, `remove`, `clear`, `merge`) and whether they changed the cart
//!   (`changed`) or found nothing to do (`unchanged`: a repeated remove, a
//!   merge of a cart already merged or expired). `checkout` counts answered
//!   checkouts: `changed` when this one took a confirmed order's lines out of
//!   the cart, `unchanged` otherwise (failed or under way, or a repeat).
//!   Refusals show in `grpc_server_requests_total` by code.
//! - `cart_dependency_errors_total{dependency}`: failed calls to
//!   `svc-product`, `svc-inventory`, `svc-user` or `svc-order`; each one is a
//!   cart a shopper could not see or check out.

use crate::error::Dependency;

/// A change that went through.
pub fn operation(op: &'static str, changed: bool) {
    let result = if changed { "changed" } else { "unchanged" };
    metrics::counter!("cart_operations_total", "op" => op, "result" => result).increment(1);
}

/// A call to a dependency that failed.
pub fn dependency_error(dependency: Dependency) {
    metrics::counter!("cart_dependency_errors_total", "dependency" => dependency.name())
        .increment(1);
}
