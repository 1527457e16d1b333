//! The checkout saga as a state machine, independent of storage and of the
//! remote calls: which step comes next after a step succeeded, was refused or
//! ran out of time, and what status the order enters on the way.
//!
//! Forward: `reserve_stock` (→ STOCK_RESERVED) → `authorize_payment`
//! (→ PAYMENT_AUTHORIZED) → `commit_stock` → `capture_payment` (→ CONFIRMED).
//! A refusal, a forward step still failing at the saga's deadline, or a
//! cancellation before `commit_stock` switches to compensating:
//! `void_payment` (when a payment is known) → `release_stock` (unless stock
//! was committed) → `finish` (→ FAILED or CANCELLED), and, when the saga
//! reached authorization without ever learning the payment, a last
//! `settle_authorization` that asks svc-payment under the same key and voids
//! whatever it authorized. A cancelled CONFIRMED order runs `refund_payment`
//! → `finish` (→ REFUNDED). Once stock is committed the saga only goes
//! forward: capture is retried until it succeeds (its refusal compensates
//! with a void, the committed stock stays sold).

use std::time::Duration;

use shopmesh_platform::backoff::Backoff;
use uuid::Uuid;

use crate::order::OrderStatus;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    Forward,
    Compensating,
    Done,
}

impl Phase {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Forward => "forward",
            Self::Compensating => "compensating",
            Self::Done => "done",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        [Self::Forward, Self::Compensating, Self::Done]
            .into_iter()
            .find(|p| p.as_str() == raw)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    ReserveStock,
    AuthorizePayment,
    CommitStock,
    CapturePayment,
    VoidPayment,
    ReleaseStock,
    RefundPayment,
    Finish,
    SettleAuthorization,
}

impl Step {
    pub const ALL: [Self; 9] = [
        Self::ReserveStock,
        Self::AuthorizePayment,
        Self::CommitStock,
        Self::CapturePayment,
        Self::VoidPayment,
        Self::ReleaseStock,
        Self::RefundPayment,
        Self::Finish,
        Self::SettleAuthorization,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::ReserveStock => "reserve_stock",
            Self::AuthorizePayment => "authorize_payment",
            Self::CommitStock => "commit_stock",
            Self::CapturePayment => "capture_payment",
            Self::VoidPayment => "void_payment",
            Self::ReleaseStock => "release_stock",
            Self::RefundPayment => "refund_payment",
            Self::Finish => "finish",
            Self::SettleAuthorization => "settle_authorization",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.as_str() == raw)
    }

    /// Forward steps that give up at the saga's deadline. Commit and capture
    /// do not. A commit whose answer was lost (inventory killed or slow) may
    /// already have taken the stock, and a release cannot undo a commit: giving
    /// up there left a FAILED order whose units were gone. So commit is retried
    /// until inventory answers; a reservation that expired meanwhile (saga
    /// timeout + 5 min) is refused, and that refusal compensates. Capture runs
    /// after the commit, so the sale must complete.
    pub fn has_deadline(self) -> bool {
        matches!(self, Self::ReserveStock | Self::AuthorizePayment)
    }

    /// The failure code and reason when this step ran out of time.
    pub fn timeout_failure(self) -> (&'static str, &'static str) {
        match self {
            Self::AuthorizePayment => (
                "payment_error",
                "the payment service did not answer in time",
            ),
            _ => ("internal", "the inventory service did not answer in time"),
        }
    }
}

/// Everything the runner keeps about one order's saga.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SagaState {
    pub order_id: Uuid,
    pub phase: Phase,
    pub step: Step,
    /// The status compensation ends in.
    pub outcome: Option<OrderStatus>,
    pub outcome_reason: String,
    pub failure_code: String,
    pub cancel_requested: bool,
    pub cancel_reason: String,
    pub authorize_started: bool,
    pub stock_committed: bool,
    /// The payment, once svc-payment named it.
    pub payment_id: Option<Uuid>,
}

/// What a successful step learned.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Effect {
    pub payment_id: Option<Uuid>,
    /// A void found the payment captured: refund it instead.
    pub needs_refund: bool,
}

/// A status the order enters, with the reason kept in its history.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entered {
    pub status: OrderStatus,
    pub reason: String,
}

fn entered(status: OrderStatus, reason: impl Into<String>) -> Option<Entered> {
    Some(Entered {
        status,
        reason: reason.into(),
    })
}

impl SagaState {
    /// A new order's saga, about to reserve stock.
    pub fn start(order_id: Uuid) -> Self {
        Self {
            order_id,
            phase: Phase::Forward,
            step: Step::ReserveStock,
            outcome: None,
            outcome_reason: String::new(),
            failure_code: String::new(),
            cancel_requested: false,
            cancel_reason: String::new(),
            authorize_started: false,
            stock_committed: false,
            payment_id: None,
        }
    }

    /// The current step succeeded; moves on and returns the status entered.
    pub fn succeeded(&mut self, effect: &Effect) -> Option<Entered> {
        if effect.payment_id.is_some() {
            self.payment_id = effect.payment_id;
        }
        match (self.phase, self.step) {
            (Phase::Forward, Step::ReserveStock) => {
                self.step = Step::AuthorizePayment;
                self.authorize_started = true;
                entered(OrderStatus::StockReserved, "stock reserved")
            }
            (Phase::Forward, Step::AuthorizePayment) => {
                self.step = Step::CommitStock;
                entered(OrderStatus::PaymentAuthorized, "payment authorized")
            }
            (Phase::Forward, Step::CommitStock) => {
                self.stock_committed = true;
                self.step = Step::CapturePayment;
                None
            }
            (Phase::Forward, Step::CapturePayment) => {
                if self.cancel_requested {
                    // Cancelled while capturing: the sale completed, so it is refunded.
                    self.phase = Phase::Compensating;
                    self.step = Step::RefundPayment;
                    self.outcome = Some(OrderStatus::Refunded);
                    self.outcome_reason = self.cancel_reason.clone();
                } else {
                    self.phase = Phase::Done;
                    self.step = Step::Finish;
                }
                entered(OrderStatus::Confirmed, "payment captured")
            }
            (Phase::Compensating, Step::VoidPayment) => {
                self.step = if effect.needs_refund {
                    Step::RefundPayment
                } else {
                    self.after_payment_undone()
                };
                None
            }
            (Phase::Compensating, Step::RefundPayment) => {
                self.step = if self.outcome == Some(OrderStatus::Refunded) {
                    Step::Finish
                } else {
                    self.after_payment_undone()
                };
                None
            }
            (Phase::Compensating, Step::ReleaseStock) => {
                self.step = Step::Finish;
                None
            }
            (Phase::Compensating, Step::Finish) => {
                let status = self.outcome.unwrap_or(OrderStatus::Failed);
                if self.payment_id.is_none()
                    && self.authorize_started
                    && status != OrderStatus::Refunded
                {
                    self.step = Step::SettleAuthorization;
                } else {
                    self.phase = Phase::Done;
                }
                entered(status, self.outcome_reason.clone())
            }
            (Phase::Compensating, Step::SettleAuthorization) => {
                self.phase = Phase::Done;
                self.step = Step::Finish;
                None
            }
            // Nothing else runs; a stray call leaves the saga as it is.
            _ => None,
        }
    }

    /// Forward and not yet at `commit_stock`: what a cancellation still stops.
    pub fn before_commit(&self) -> bool {
        self.phase == Phase::Forward
            && matches!(self.step, Step::ReserveStock | Step::AuthorizePayment)
    }

    fn after_payment_undone(&self) -> Step {
        if self.stock_committed {
            Step::Finish
        } else {
            Step::ReleaseStock
        }
    }

    /// Starts the compensations ending in `outcome` (FAILED, CANCELLED or
    /// REFUNDED) with `reason` and, for FAILED, a failure code. A saga that is
    /// already compensating keeps its course.
    pub fn compensate(&mut self, outcome: OrderStatus, code: &str, reason: &str) {
        if self.phase != Phase::Forward
            && !(self.phase == Phase::Done && outcome == OrderStatus::Refunded)
        {
            return;
        }
        self.phase = Phase::Compensating;
        self.outcome = Some(outcome);
        self.outcome_reason = reason.to_owned();
        self.failure_code = code.to_owned();
        self.step = if outcome == OrderStatus::Refunded {
            Step::RefundPayment
        } else if self.payment_id.is_some() {
            Step::VoidPayment
        } else {
            self.after_payment_undone()
        };
    }

    /// Applies a cancellation request between steps: before the saga reaches
    /// `commit_stock` it stops and compensates to CANCELLED; from there on it
    /// goes on and `succeeded` turns the confirmation into a refund. A commit
    /// may have taken the stock even when its answer was lost, and a release
    /// cannot give it back.
    pub fn apply_cancel_request(&mut self) {
        if self.cancel_requested && self.before_commit() {
            let reason = self.cancel_reason.clone();
            self.compensate(OrderStatus::Cancelled, "", &reason);
        }
    }
}

/// The wait before the next try after `attempts` failed ones: 250 ms
/// doubling, at most `max`, jittered.
pub fn backoff(attempts: i32, max: Duration) -> Duration {
    Backoff::new(Duration::from_millis(250), max).jittered(attempts.try_into().unwrap_or(0))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(state: &mut SagaState, effect: Effect) -> Option<OrderStatus> {
        state.succeeded(&effect).map(|e| e.status)
    }

    fn paid() -> Effect {
        Effect {
            payment_id: Some(Uuid::now_v7()),
            needs_refund: false,
        }
    }

    #[test]
    fn the_happy_path_reserves_authorizes_commits_and_captures() {
        let mut saga = SagaState::start(Uuid::now_v7());
        assert_eq!(
            run(&mut saga, Effect::default()),
            Some(OrderStatus::StockReserved)
        );
        assert!(saga.authorize_started);
        assert_eq!(run(&mut saga, paid()), Some(OrderStatus::PaymentAuthorized));
        assert_eq!(saga.step, Step::CommitStock);
        assert_eq!(run(&mut saga, Effect::default()), None);
        assert!(saga.stock_committed);
        assert_eq!(
            run(&mut saga, Effect::default()),
            Some(OrderStatus::Confirmed)
        );
        assert_eq!(saga.phase, Phase::Done);
    }

    #[test]
    fn a_decline_voids_nothing_it_does_not_know_and_releases_the_stock() {
        let mut saga = SagaState::start(Uuid::now_v7());
        run(&mut saga, Effect::default());
        // The decline named its (failed) payment.
        saga.payment_id = Some(Uuid::now_v7());
        saga.compensate(OrderStatus::Failed, "payment_declined", "card declined");
        assert_eq!(saga.step, Step::VoidPayment);
        assert_eq!(run(&mut saga, Effect::default()), None);
        assert_eq!(saga.step, Step::ReleaseStock);
        assert_eq!(run(&mut saga, Effect::default()), None);
        assert_eq!(run(&mut saga, Effect::default()), Some(OrderStatus::Failed));
        assert_eq!(saga.phase, Phase::Done);
    }

    #[test]
    fn out_of_stock_only_releases() {
        let mut saga = SagaState::start(Uuid::now_v7());
        saga.compensate(OrderStatus::Failed, "out_of_stock", "out of stock: A");
        assert_eq!(saga.step, Step::ReleaseStock);
        run(&mut saga, Effect::default());
        assert_eq!(run(&mut saga, Effect::default()), Some(OrderStatus::Failed));
        assert_eq!(saga.phase, Phase::Done, "no payment was ever asked for");
    }

    #[test]
    fn an_unknown_authorization_is_settled_after_the_order_failed() {
        let mut saga = SagaState::start(Uuid::now_v7());
        run(&mut saga, Effect::default());
        saga.compensate(OrderStatus::Failed, "payment_error", "timeout");
        assert_eq!(saga.step, Step::ReleaseStock);
        run(&mut saga, Effect::default());
        assert_eq!(run(&mut saga, Effect::default()), Some(OrderStatus::Failed));
        assert_eq!(
            (saga.phase, saga.step),
            (Phase::Compensating, Step::SettleAuthorization)
        );
        run(&mut saga, paid());
        assert_eq!(saga.phase, Phase::Done);
    }

    #[test]
    fn cancelling_before_commit_compensates_and_from_commit_on_refunds() {
        // Cancelled while authorizing: the stock is released and the
        // authorization's outcome settled at the end (a lost one is voided).
        let mut early = SagaState::start(Uuid::now_v7());
        run(&mut early, Effect::default());
        early.cancel_requested = true;
        early.cancel_reason = "changed my mind".into();
        early.apply_cancel_request();
        assert_eq!(early.step, Step::ReleaseStock);
        run(&mut early, Effect::default());
        assert_eq!(
            run(&mut early, Effect::default()),
            Some(OrderStatus::Cancelled)
        );
        assert_eq!(early.step, Step::SettleAuthorization);

        // At commit_stock (a commit may have taken the stock, its answer lost)
        // and after it: the sale completes and is refunded.
        for commits_before_cancel in [0, 1] {
            let mut late = SagaState::start(Uuid::now_v7());
            run(&mut late, Effect::default());
            run(&mut late, paid());
            for _ in 0..commits_before_cancel {
                run(&mut late, Effect::default());
            }
            late.cancel_requested = true;
            late.apply_cancel_request();
            assert_eq!(late.phase, Phase::Forward, "past the point of no return");
            if commits_before_cancel == 0 {
                assert_eq!(run(&mut late, Effect::default()), None);
            }
            assert_eq!(late.step, Step::CapturePayment);
            assert_eq!(
                run(&mut late, Effect::default()),
                Some(OrderStatus::Confirmed)
            );
            assert_eq!(late.step, Step::RefundPayment);
            assert_eq!(run(&mut late, Effect::default()), None);
            assert_eq!(
                run(&mut late, Effect::default()),
                Some(OrderStatus::Refunded)
            );
            assert_eq!(late.phase, Phase::Done);
        }
    }

    #[test]
    fn a_confirmed_order_is_refunded_and_a_void_of_a_captured_payment_refunds() {
        let mut saga = SagaState::start(Uuid::now_v7());
        for effect in [
            Effect::default(),
            paid(),
            Effect::default(),
            Effect::default(),
        ] {
            run(&mut saga, effect);
        }
        saga.compensate(OrderStatus::Refunded, "", "cancelled by customer");
        assert_eq!(
            (saga.phase, saga.step),
            (Phase::Compensating, Step::RefundPayment)
        );

        let mut failing = SagaState::start(Uuid::now_v7());
        run(&mut failing, Effect::default());
        run(&mut failing, paid());
        failing.compensate(OrderStatus::Failed, "internal", "x");
        run(
            &mut failing,
            Effect {
                payment_id: None,
                needs_refund: true,
            },
        );
        assert_eq!(failing.step, Step::RefundPayment);
        run(&mut failing, Effect::default());
        assert_eq!(failing.step, Step::ReleaseStock);
    }

    #[test]
    fn names_round_trip() {
        for step in Step::ALL {
            assert_eq!(Step::parse(step.as_str()), Some(step));
        }
        for phase in [Phase::Forward, Phase::Compensating, Phase::Done] {
            assert_eq!(Phase::parse(phase.as_str()), Some(phase));
        }
    }
}
