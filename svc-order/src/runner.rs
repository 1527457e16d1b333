//! The saga runner: claims due sagas (`FOR UPDATE SKIP LOCKED` and a lease,
//! so replicas share the work and a restarted process picks up what a dead
//! one left), runs their steps against the other services and records each
//! result before the next step starts. Every remote call is idempotent (the
//! order id is the reservation id; payment keys are derived from order id
//! and operation), so running a step again after a crash is safe.
//!
//! A transient failure (UNAVAILABLE, DEADLINE_EXCEEDED …) schedules another
//! try with backoff and lets go of the saga; forward steps give up at the
//! saga's deadline and compensate. Compensation steps are tried until they
//! succeed.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use shopmesh_platform::errors::{ErrorReason, reason_of};
use shopmesh_proto::shop::inventory::v1::ReservationStatus;
use shopmesh_proto::shop::payment::v1::{Payment, PaymentStatus};
use tokio::sync::{Notify, Semaphore, watch};
use tonic::{Code, Status};
use tonic_types::StatusExt;
use uuid::Uuid;

use crate::clients::{Clients, is_transient};
use crate::error::OrderError;
use crate::order::OrderStatus;
use crate::saga::{Effect, Phase, Step, backoff};
use crate::settings::OrderSettings;
use crate::store::{SagaJob, Store};

/// Sagas one process drives at once.
const CONCURRENCY: usize = 32;
/// How often the runner looks for due sagas when nobody wakes it.
const POLL: Duration = Duration::from_millis(500);
/// Longest wait between two tries of a forward step.
const FORWARD_MAX_BACKOFF: Duration = Duration::from_secs(5);

/// Wakes the runner, e.g. right after an order was stored.
#[derive(Clone)]
pub struct RunnerHandle {
    wake: Arc<Notify>,
}

impl RunnerHandle {
    pub fn wake(&self) {
        self.wake.notify_one();
    }
}

#[derive(Clone)]
struct Runner {
    store: Store,
    clients: Clients,
    owner: Uuid,
    lease: Duration,
    max_backoff: Duration,
    stopping: watch::Receiver<bool>,
}

/// How one try of a step ended.
enum Tried {
    Done(Effect),
    /// A business failure: compensate, ending FAILED.
    Refused {
        code: &'static str,
        reason: String,
        payment_id: Option<Uuid>,
    },
    Retry(String),
}

/// Starts the runner; it stops claiming when `closing` resolves (each saga
/// it drives finishes its current step and is let go) or when the pool closes.
pub fn spawn(
    store: Store,
    clients: Clients,
    settings: &OrderSettings,
    closing: impl Future<Output = ()> + Send + 'static,
) -> RunnerHandle {
    let (stop, stopping) = watch::channel(false);
    tokio::spawn(async move {
        closing.await;
        let _ = stop.send(true);
    });
    let runner = Runner {
        store,
        clients,
        owner: Uuid::now_v7(),
        lease: settings.saga_lease,
        max_backoff: settings.max_backoff,
        stopping,
    };
    let wake = Arc::new(Notify::new());
    tokio::spawn(runner.run(wake.clone()));
    RunnerHandle { wake }
}

impl Runner {
    fn stopping(&self) -> bool {
        *self.stopping.borrow() || self.store.is_closed()
    }

    async fn run(self, wake: Arc<Notify>) {
        let permits = Arc::new(Semaphore::new(CONCURRENCY));
        let mut stopping = self.stopping.clone();
        tracing::info!(runner = %self.owner, "saga runner started");
        loop {
            if self.stopping() {
                tracing::info!(runner = %self.owner, "saga runner stopped");
                return;
            }
            let free = permits.available_permits();
            let mut full = false;
            if free > 0 {
                match self
                    .store
                    .claim_due(self.owner, self.lease, free as i64)
                    .await
                {
                    Ok(ids) => {
                        full = ids.len() == free;
                        for id in ids {
                            let Ok(permit) = permits.clone().acquire_owned().await else {
                                return;
                            };
                            let runner = self.clone();
                            tokio::spawn(async move {
                                runner.drive(id).await;
                                drop(permit);
                            });
                        }
                    }
                    Err(OrderError::Database(sqlx::Error::PoolClosed)) => return,
                    Err(err) => tracing::warn!(error = %err, "cannot claim due sagas"),
                }
            }
            if full {
                continue;
            }
            tokio::select! {
                () = wake.notified() => {}
                () = tokio::time::sleep(POLL) => {}
                _ = stopping.changed() => {}
            }
        }
    }

    /// Runs the saga's steps while it holds the lease and they succeed.
    #[tracing::instrument(skip(self), fields(runner = %self.owner))]
    async fn drive(&self, order_id: Uuid) {
        if let Err(err) = self.drive_steps(order_id).await {
            // The lease runs out and the saga is picked up again.
            if !self.store.is_closed() {
                tracing::warn!(error = %err, "saga step could not be recorded");
            }
        }
    }

    async fn drive_steps(&self, order_id: Uuid) -> Result<(), OrderError> {
        loop {
            let Some(job) = self.store.job(order_id, self.owner).await? else {
                return Ok(()); // done, or another runner holds it now
            };
            let state = job.state.clone();
            if state.phase == Phase::Done {
                return self.store.release(self.owner, order_id).await;
            }
            if self.stopping() {
                return self.store.release(self.owner, order_id).await;
            }
            let recorded = if state.cancel_requested && state.before_commit() {
                self.record(order_id, |s| {
                    s.apply_cancel_request();
                    None
                })
                .await?
            } else if state.phase == Phase::Forward
                && state.step.has_deadline()
                && chrono::Utc::now() >= job.deadline
            {
                let (code, reason) = state.step.timeout_failure();
                tracing::warn!(
                    step = state.step.as_str(),
                    "saga deadline passed; compensating"
                );
                crate::metrics::saga_step(state.step, "timeout");
                self.record(order_id, |s| {
                    s.compensate(OrderStatus::Failed, code, reason);
                    None
                })
                .await?
            } else {
                let step = state.step;
                match self.try_step(&job).await {
                    Tried::Done(effect) => {
                        crate::metrics::saga_step(step, "ok");
                        tracing::info!(step = step.as_str(), "saga step done");
                        self.record(order_id, |s| {
                            if (s.phase, s.step) == (state.phase, step) {
                                s.succeeded(&effect)
                            } else {
                                None
                            }
                        })
                        .await?
                    }
                    Tried::Refused {
                        code,
                        reason,
                        payment_id,
                    } => {
                        crate::metrics::saga_step(step, "refused");
                        tracing::info!(step = step.as_str(), code, reason, "saga step refused");
                        self.record(order_id, |s| {
                            if payment_id.is_some() {
                                s.payment_id = payment_id;
                            }
                            s.compensate(OrderStatus::Failed, code, &reason);
                            None
                        })
                        .await?
                    }
                    Tried::Retry(error) => {
                        crate::metrics::saga_step(step, "retry");
                        let attempts = self.store.attempts(order_id).await?;
                        let cap = if state.phase == Phase::Forward {
                            FORWARD_MAX_BACKOFF
                        } else {
                            self.max_backoff
                        };
                        let wait = backoff(attempts + 1, cap);
                        tracing::info!(
                            step = step.as_str(),
                            attempts = attempts + 1,
                            retry_in_ms = wait.as_millis() as u64,
                            error,
                            "saga step failed for now"
                        );
                        return self
                            .store
                            .retry_later(self.owner, order_id, wait, &error)
                            .await;
                    }
                }
            };
            if !recorded {
                return Ok(());
            }
        }
    }

    async fn record(
        &self,
        order_id: Uuid,
        transition: impl FnOnce(&mut crate::saga::SagaState) -> Option<crate::saga::Entered>,
    ) -> Result<bool, OrderError> {
        self.store
            .record(self.owner, order_id, self.lease, transition)
            .await
    }

    /// One try of the saga's current step.
    async fn try_step(&self, job: &SagaJob) -> Tried {
        let order = &job.order;
        let state = &job.state;
        let clients = &self.clients;
        match state.step {
            Step::ReserveStock => match clients.reserve_stock(order).await {
                Ok(reservation)
                    if matches!(
                        reservation.status(),
                        ReservationStatus::Reserved | ReservationStatus::Committed
                    ) =>
                {
                    Tried::Done(Effect::default())
                }
                Ok(_) => refused("internal", "the stock reservation was closed".into()),
                Err(status) if is_transient(status.code()) => retry("svc-inventory", &status),
                Err(status) => reserve_refused(&status),
            },
            Step::AuthorizePayment => match clients.authorize(order, &job.card_token).await {
                Ok(payment) => authorized(&payment),
                Err(status) if is_transient(status.code()) => retry("svc-payment", &status),
                Err(status) => refused(
                    "payment_error",
                    format!("payment refused: {}", status.message()),
                ),
            },
            Step::CommitStock => match clients.commit_stock(order.id).await {
                Ok(_) => Tried::Done(Effect::default()),
                Err(status) if is_transient(status.code()) => retry("svc-inventory", &status),
                Err(status) => refused(
                    "internal",
                    format!("the stock could not be committed: {}", status.message()),
                ),
            },
            Step::CapturePayment => {
                let Some(payment_id) = state.payment_id else {
                    return refused("internal", "no payment to capture".into());
                };
                match clients.capture(order.id, payment_id).await {
                    Ok(payment) if payment.status() == PaymentStatus::Captured => {
                        Tried::Done(Effect::default())
                    }
                    Ok(payment) => Tried::Retry(format!(
                        "capture left the payment {}",
                        payment.status().as_str_name()
                    )),
                    Err(status) if is_transient(status.code()) => retry("svc-payment", &status),
                    Err(status) => refused(
                        "payment_error",
                        format!("payment capture refused: {}", status.message()),
                    ),
                }
            }
            Step::VoidPayment => {
                let Some(payment_id) = state.payment_id else {
                    return Tried::Done(Effect::default());
                };
                match clients
                    .void(order.id, payment_id, &state.outcome_reason)
                    .await
                {
                    Ok(_) => Tried::Done(Effect::default()),
                    Err(status) => void_refused(&status),
                }
            }
            Step::ReleaseStock => {
                match clients.release_stock(order.id, &state.outcome_reason).await {
                    Ok(_) => Tried::Done(Effect::default()),
                    Err(status) if status.code() == Code::FailedPrecondition => {
                        tracing::warn!(
                            message = status.message(),
                            "stock was committed, not released"
                        );
                        Tried::Done(Effect::default())
                    }
                    Err(status) => retry("svc-inventory", &status),
                }
            }
            Step::RefundPayment => {
                let Some(payment_id) = state.payment_id else {
                    return Tried::Done(Effect::default());
                };
                match clients
                    .refund(order.id, payment_id, &state.outcome_reason)
                    .await
                {
                    Ok(_) => Tried::Done(Effect::default()),
                    Err(status) if reason_of(&status) == Some(ErrorReason::PaymentRefunded) => {
                        Tried::Done(Effect::default())
                    }
                    Err(status) => retry("svc-payment", &status),
                }
            }
            Step::Finish => Tried::Done(Effect::default()),
            Step::SettleAuthorization => self.settle_authorization(job).await,
        }
    }

    /// Finds out what became of an authorization whose answer never came, by
    /// asking again under its key, and voids what it authorized.
    async fn settle_authorization(&self, job: &SagaJob) -> Tried {
        let order = &job.order;
        let payment = match self.clients.authorize(order, &job.card_token).await {
            Ok(payment) => payment,
            Err(status) if is_transient(status.code()) => return retry("svc-payment", &status),
            Err(status) => {
                tracing::warn!(
                    message = status.message(),
                    "authorization cannot be settled"
                );
                return Tried::Done(Effect::default());
            }
        };
        let payment_id = Uuid::parse_str(&payment.id).ok();
        match payment.status() {
            PaymentStatus::Pending => Tried::Retry("the authorization is still pending".into()),
            PaymentStatus::Authorized => match payment_id {
                Some(id) => match self
                    .clients
                    .void(order.id, id, &job.state.outcome_reason)
                    .await
                {
                    Ok(_) => Tried::Done(Effect {
                        payment_id,
                        needs_refund: false,
                    }),
                    Err(status) => retry("svc-payment", &status),
                },
                None => Tried::Done(Effect::default()),
            },
            _ => Tried::Done(Effect {
                payment_id,
                needs_refund: false,
            }),
        }
    }
}

fn retry(dependency: &str, status: &Status) -> Tried {
    Tried::Retry(format!(
        "{dependency}: {:?}: {}",
        status.code(),
        status.message()
    ))
}

fn refused(code: &'static str, reason: String) -> Tried {
    Tried::Refused {
        code,
        reason,
        payment_id: None,
    }
}

fn reserve_refused(status: &Status) -> Tried {
    match (status.code(), reason_of(status)) {
        (Code::FailedPrecondition, Some(ErrorReason::InsufficientStock)) => {
            let short: Vec<String> = status
                .get_error_details()
                .precondition_failure()
                .map(|p| p.violations.iter().map(|v| v.subject.clone()).collect())
                .unwrap_or_default();
            refused(
                "out_of_stock",
                format!("out of stock: {}", short.join(", ")),
            )
        }
        (Code::NotFound, _) => refused(
            "product_unavailable",
            format!("product unavailable: {}", status.message()),
        ),
        _ => refused(
            "internal",
            format!("stock could not be reserved: {}", status.message()),
        ),
    }
}

/// An authorization's answer: approved, declined, or not known yet.
fn authorized(payment: &Payment) -> Tried {
    let payment_id = Uuid::parse_str(&payment.id).ok();
    match payment.status() {
        PaymentStatus::Authorized | PaymentStatus::Captured => Tried::Done(Effect {
            payment_id,
            needs_refund: false,
        }),
        PaymentStatus::Pending => Tried::Retry("the authorization is pending".into()),
        PaymentStatus::Failed => {
            let declined = matches!(
                payment.failure_code.as_str(),
                "card_declined" | "insufficient_funds"
            );
            Tried::Refused {
                code: if declined {
                    "payment_declined"
                } else {
                    "payment_error"
                },
                reason: if declined {
                    format!("card declined: {}", payment.failure_code)
                } else {
                    format!("payment failed: {}", payment.failure_code)
                },
                payment_id,
            }
        }
        other => Tried::Refused {
            code: "payment_error",
            reason: format!("the payment is {}", other.as_str_name()),
            payment_id,
        },
    }
}

/// A void that did not go through: done when there is nothing to void,
/// a refund when the payment turned out captured, else another try.
fn void_refused(status: &Status) -> Tried {
    if status.code() == Code::NotFound {
        return Tried::Done(Effect::default());
    }
    match reason_of(status) {
        Some(ErrorReason::PaymentCaptured | ErrorReason::PaymentPartiallyRefunded) => {
            Tried::Done(Effect {
                payment_id: None,
                needs_refund: true,
            })
        }
        Some(
            ErrorReason::PaymentFailed | ErrorReason::PaymentVoided | ErrorReason::PaymentRefunded,
        ) => Tried::Done(Effect::default()),
        _ => retry("svc-payment", status),
    }
}
