//! svc-order's metrics (names in docs/conventions.md).

use crate::order::OrderStatus;
use crate::saga::Step;

/// One try of a saga step: `ok`, `retry` (a transient failure, tried again
/// later) or `refused` (a business failure: the saga compensates).
pub fn saga_step(step: Step, outcome: &'static str) {
    metrics::counter!("order_saga_steps_total", "step" => step.as_str(), "outcome" => outcome)
        .increment(1);
}

/// An order entered `status` (`pending` counts orders created).
pub fn order_entered(status: OrderStatus) {
    metrics::counter!("orders_total", "status" => status.as_str()).increment(1);
}
