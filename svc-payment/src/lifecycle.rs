//! The payment lifecycle: authorize, capture, void, refund.
//!
//! Each operation is (1) one transaction that locks the payment, checks its
//! state and the caller's key, and records a PENDING provider transaction
//! leased to this caller; (2) the provider call, outside any database
//! transaction and bounded by the provider deadline; (3) one transaction that
//! records the answer on the transaction and the payment (and will enqueue the
//! event). A repeat of a key finds its transaction: settled, it is answered as
//! before; PENDING, the repeat asks the provider again under the same provider
//! key (the transaction id), or waits while another caller holds the lease.

use std::time::{Duration, Instant};

use chrono::Utc;
use sqlx::{PgConnection, PgPool};
use uuid::Uuid;

use crate::error::PaymentError;
use crate::events;
use crate::payment::{
    AuthorizeCommand, MethodInput, Money, Payment, PaymentStatus, RefundCommand, Transaction,
    TransactionKind, TransactionStatus,
};
use crate::provider::{AuthorizeCall, Outcome, Provider, Tokenized};
use crate::store::{self, NewPayment, NewTransaction};

/// How often a caller waiting on another caller's provider call looks again.
const WAIT_POLL: Duration = Duration::from_millis(25);

#[derive(Clone)]
pub struct Payments {
    db: PgPool,
    provider: Provider,
}

impl Payments {
    pub fn new(db: PgPool, provider: Provider) -> Self {
        Self { db, provider }
    }

    /// A lease outlives the provider deadline, so a holder that is still
    /// waiting for its answer is never overtaken; one that died is.
    fn lease(&self) -> Duration {
        self.provider.deadline() + Duration::from_secs(5)
    }

    pub async fn tokenize(&self, method: &MethodInput) -> Result<Tokenized, PaymentError> {
        Ok(self.provider.tokenize(method).await?)
    }

    /// Creates the payment for the key (PENDING), asks the provider, and
    /// records its answer; a repeat of the key returns that payment.
    #[tracing::instrument(skip_all, fields(order_id = %command.order_id))]
    pub async fn authorize(&self, command: &AuthorizeCommand) -> Result<Payment, PaymentError> {
        let key = command.idempotency_key.as_str();
        let existing = store::payment_id_by_key(&mut *self.db.acquire().await?, key).await?;
        if let Some(id) = existing {
            return self.resume_authorization(id, command).await;
        }
        let tokenized = self.tokenize(&command.method).await?;
        let id = Uuid::now_v7();
        let mut tx = self.db.begin().await?;
        let new = NewPayment {
            id,
            idempotency_key: key,
            order_id: command.order_id,
            user_id: command.user_id,
            amount: &command.amount,
            provider: self.provider.name(),
            card_token: &tokenized.token,
            card: &tokenized.card,
            method_kind: command.method.kind(),
        };
        if !store::insert_payment(&mut tx, &new).await? {
            // Another call with the key got there first (and has committed:
            // the insert waited for it).
            tx.rollback().await?;
            let id = store::payment_id_by_key(&mut *self.db.acquire().await?, key)
                .await?
                .ok_or_else(|| PaymentError::Corrupt(format!("payment of key {key:?} vanished")))?;
            return self.resume_authorization(id, command).await;
        }
        let authorization = store::insert_transaction(
            &mut tx,
            &NewTransaction {
                payment_id: id,
                kind: TransactionKind::Authorize,
                idempotency_key: key,
                amount: &command.amount,
                reason: "",
                lease: self.lease(),
            },
        )
        .await?;
        let payment = store::lock_payment(&mut tx, id)
            .await?
            .ok_or(PaymentError::NotFound(id))?;
        tx.commit().await?;
        self.ask_provider(&payment, &authorization).await
    }

    async fn resume_authorization(
        &self,
        id: Uuid,
        command: &AuthorizeCommand,
    ) -> Result<Payment, PaymentError> {
        let payment = self.load(id).await?;
        let same = payment.order_id == command.order_id
            && payment.user_id == command.user_id
            && payment.amount == command.amount
            && command.method.matches(&payment);
        if !same {
            return Err(PaymentError::KeyReused(command.idempotency_key.clone()));
        }
        replayed("authorize");
        if payment.status != PaymentStatus::Pending {
            return Ok(payment);
        }
        let authorization = payment
            .transactions
            .iter()
            .find(|t| t.kind == TransactionKind::Authorize)
            .cloned()
            .ok_or_else(|| PaymentError::Corrupt(format!("payment {id} has no authorization")))?;
        self.settle_or_wait(&payment, &authorization).await
    }

    /// Takes the authorized amount.
    #[tracing::instrument(skip(self, key))]
    pub async fn capture(&self, payment_id: Uuid, key: &str) -> Result<Payment, PaymentError> {
        self.close_authorization(TransactionKind::Capture, payment_id, key, "")
            .await
    }

    /// Releases the hold of an authorization; a VOIDED payment is returned as it is.
    #[tracing::instrument(skip(self, key, reason))]
    pub async fn void(
        &self,
        payment_id: Uuid,
        key: &str,
        reason: &str,
    ) -> Result<Payment, PaymentError> {
        self.close_authorization(TransactionKind::Void, payment_id, key, reason)
            .await
    }

    /// Capture or void: what ends an authorization, once.
    async fn close_authorization(
        &self,
        kind: TransactionKind,
        payment_id: Uuid,
        key: &str,
        reason: &str,
    ) -> Result<Payment, PaymentError> {
        let mut tx = self.db.begin().await?;
        let payment = locked(&mut tx, payment_id).await?;
        if let Some(done) = store::transaction_by_key(&mut tx, payment_id, kind, key).await? {
            tx.commit().await?;
            replayed(kind.as_str());
            return self.replay(&payment, &done).await;
        }
        if kind == TransactionKind::Void && payment.status == PaymentStatus::Voided {
            tx.commit().await?;
            replayed(kind.as_str());
            return self.load(payment_id).await;
        }
        if payment.status != PaymentStatus::Authorized {
            return Err(wrong_state(&payment, kind.as_str(), "AUTHORIZED"));
        }
        refuse_if_closing(&mut tx, payment_id).await?;
        let transaction = store::insert_transaction(
            &mut tx,
            &NewTransaction {
                payment_id,
                kind,
                idempotency_key: key,
                amount: &payment.amount,
                reason,
                lease: self.lease(),
            },
        )
        .await?;
        tx.commit().await?;
        self.ask_provider(&payment, &transaction).await
    }

    /// Gives back part or all of what was captured and not yet refunded.
    /// Refunds still waiting for the provider count as given back, so
    /// concurrent refunds can never add up to more than was captured.
    #[tracing::instrument(skip_all, fields(payment_id = %command.payment_id))]
    pub async fn refund(&self, command: &RefundCommand) -> Result<Payment, PaymentError> {
        let payment_id = command.payment_id;
        let key = command.idempotency_key.as_str();
        let mut tx = self.db.begin().await?;
        let payment = locked(&mut tx, payment_id).await?;
        if let Some(done) =
            store::transaction_by_key(&mut tx, payment_id, TransactionKind::Refund, key).await?
        {
            if command.amount.as_ref().is_some_and(|a| *a != done.amount) {
                return Err(PaymentError::KeyReused(key.to_owned()));
            }
            tx.commit().await?;
            replayed("refund");
            return self.replay(&payment, &done).await;
        }
        if !matches!(
            payment.status,
            PaymentStatus::Captured | PaymentStatus::PartiallyRefunded
        ) {
            return Err(wrong_state(
                &payment,
                "refund",
                "CAPTURED or PARTIALLY_REFUNDED",
            ));
        }
        let in_flight: i64 = store::pending_transactions(&mut tx, payment_id)
            .await?
            .iter()
            .filter(|t| t.kind == TransactionKind::Refund)
            .map(|t| t.amount.amount_minor)
            .sum();
        let refundable = payment.captured_minor - payment.refunded_minor - in_flight;
        let amount = command
            .amount
            .clone()
            .unwrap_or_else(|| Money::new(&payment.amount.currency_code, refundable));
        check_refund(&payment, &amount, refundable)?;
        let refund = store::insert_transaction(
            &mut tx,
            &NewTransaction {
                payment_id,
                kind: TransactionKind::Refund,
                idempotency_key: key,
                amount: &amount,
                reason: &command.reason,
                lease: self.lease(),
            },
        )
        .await?;
        tx.commit().await?;
        self.ask_provider(&payment, &refund).await
    }

    /// The payment with its transactions.
    pub async fn load(&self, id: Uuid) -> Result<Payment, PaymentError> {
        let mut tx = store::begin_snapshot(&self.db).await?;
        let payment = store::payment(&mut tx, id).await?;
        tx.commit().await?;
        payment.ok_or(PaymentError::NotFound(id))
    }

    pub async fn order_payments(
        &self,
        order_id: Uuid,
        owner: Option<Uuid>,
        after: Option<(chrono::DateTime<Utc>, Uuid)>,
        limit: i64,
    ) -> Result<Vec<Payment>, PaymentError> {
        let mut tx = store::begin_snapshot(&self.db).await?;
        let payments = store::order_payments(&mut tx, order_id, owner, after, limit).await?;
        tx.commit().await?;
        Ok(payments)
    }

    /// Answers a repeated key from its transaction, finishing it first if it
    /// is still waiting for the provider.
    async fn replay(
        &self,
        payment: &Payment,
        transaction: &Transaction,
    ) -> Result<Payment, PaymentError> {
        if transaction.status == TransactionStatus::Pending {
            return self.settle_or_wait(payment, transaction).await;
        }
        answer(self.load(payment.id).await?, transaction)
    }

    /// Asks the provider about a PENDING transaction if nobody else is (or
    /// their lease ran out); otherwise waits for their answer, up to a little
    /// longer than the provider deadline.
    async fn settle_or_wait(
        &self,
        payment: &Payment,
        transaction: &Transaction,
    ) -> Result<Payment, PaymentError> {
        let give_up = Instant::now() + self.provider.deadline() + Duration::from_secs(1);
        loop {
            let claimed =
                store::claim_lease(&mut *self.db.acquire().await?, transaction.id, self.lease())
                    .await?;
            if claimed {
                return self.ask_provider(payment, transaction).await;
            }
            let current = self.load(payment.id).await?;
            let now = transaction_of(&current, transaction.id)?;
            if now.status != TransactionStatus::Pending {
                return answer(current, &now);
            }
            if Instant::now() >= give_up {
                return Err(PaymentError::InProgress);
            }
            tokio::time::sleep(WAIT_POLL).await;
        }
    }

    /// Makes the provider call of a transaction whose lease this caller holds,
    /// then records the answer. No database transaction is open meanwhile.
    async fn ask_provider(
        &self,
        payment: &Payment,
        transaction: &Transaction,
    ) -> Result<Payment, PaymentError> {
        let provider_key = transaction.id.to_string();
        let authorization = payment
            .authorization_reference
            .as_deref()
            .unwrap_or_default();
        let outcome = match transaction.kind {
            TransactionKind::Authorize => {
                self.provider
                    .authorize(AuthorizeCall {
                        idempotency_key: &provider_key,
                        token: &payment.card_token,
                        amount: &transaction.amount,
                    })
                    .await
            }
            TransactionKind::Capture => {
                self.provider
                    .capture(&provider_key, authorization, &transaction.amount)
                    .await
            }
            TransactionKind::Void => self.provider.void(&provider_key, authorization).await,
            TransactionKind::Refund => {
                self.provider
                    .refund(&provider_key, authorization, &transaction.amount)
                    .await
            }
        };
        let (reference, failure) = match &outcome {
            Outcome::Approved { reference } => (Some(reference.as_str()), None),
            Outcome::Declined { code, message } => (None, Some((code.as_str(), message.as_str()))),
            Outcome::Unavailable { reason } => {
                tracing::warn!(
                    payment_id = %payment.id,
                    transaction_id = %transaction.id,
                    kind = transaction.kind.as_str(),
                    reason = reason.as_str(),
                    "the payment provider gave no answer; the transaction stays pending"
                );
                store::release_lease(&mut *self.db.acquire().await?, transaction.id).await?;
                return Err(PaymentError::ProviderUnavailable);
            }
        };
        let mut tx = self.db.begin().await?;
        record_answer(&mut tx, payment.id, transaction, reference, failure).await?;
        tx.commit().await?;
        let payment = self.load(payment.id).await?;
        let settled = transaction_of(&payment, transaction.id)?;
        answer(payment, &settled)
    }
}

/// Records the provider's answer to `transaction` and its effect on the
/// payment, in the caller's transaction. The payment row is locked first, as
/// every state change does, so the effect applies to its current amounts.
async fn record_answer(
    conn: &mut PgConnection,
    payment_id: Uuid,
    transaction: &Transaction,
    reference: Option<&str>,
    failure: Option<(&str, &str)>,
) -> Result<(), PaymentError> {
    let mut payment = locked(conn, payment_id).await?;
    let status = if failure.is_some() {
        TransactionStatus::Failed
    } else {
        TransactionStatus::Succeeded
    };
    if !store::settle_transaction(conn, transaction.id, status, reference, failure).await? {
        // Settled meanwhile by a caller that took over an expired lease.
        return Ok(());
    }
    let mut settled = transaction.clone();
    settled.status = status;
    settled.provider_reference = reference.map(str::to_owned);
    let at = Utc::now();
    match (transaction.kind, failure) {
        (TransactionKind::Authorize, None) => {
            store::record_authorization(
                conn,
                payment_id,
                PaymentStatus::Authorized,
                reference,
                None,
            )
            .await?;
            payment.status = PaymentStatus::Authorized;
            payment.authorization_reference = reference.map(str::to_owned);
            events::publish(
                conn,
                payment_id,
                &events::authorized(&payment, &settled, at),
            )
            .await?;
        }
        (TransactionKind::Authorize, Some((code, message))) => {
            store::record_authorization(conn, payment_id, PaymentStatus::Failed, None, failure)
                .await?;
            payment.status = PaymentStatus::Failed;
            payment.failure_code = Some(code.to_owned());
            payment.failure_message = Some(message.to_owned());
            events::publish(conn, payment_id, &events::failed(&payment, at)).await?;
        }
        (TransactionKind::Capture, None) => {
            let captured = transaction.amount.amount_minor;
            store::record_money(conn, payment_id, PaymentStatus::Captured, captured, 0).await?;
            payment.status = PaymentStatus::Captured;
            payment.captured_minor = captured;
            events::publish(conn, payment_id, &events::captured(&payment, &settled, at)).await?;
        }
        (TransactionKind::Void, None) => {
            store::record_money(conn, payment_id, PaymentStatus::Voided, 0, 0).await?;
            payment.status = PaymentStatus::Voided;
            events::publish(conn, payment_id, &events::voided(&payment, &settled, at)).await?;
        }
        (TransactionKind::Refund, None) => {
            let refunded = payment.refunded_minor + transaction.amount.amount_minor;
            let status = if refunded == payment.captured_minor {
                PaymentStatus::Refunded
            } else {
                PaymentStatus::PartiallyRefunded
            };
            store::record_money(conn, payment_id, status, payment.captured_minor, refunded).await?;
            payment.status = status;
            payment.refunded_minor = refunded;
            events::publish(conn, payment_id, &events::refunded(&payment, &settled, at)).await?;
        }
        // A refused capture, void or refund leaves the payment as it was; the
        // failed transaction is the record.
        (TransactionKind::Capture | TransactionKind::Void | TransactionKind::Refund, Some(_)) => {}
    }
    Ok(())
}

async fn locked(conn: &mut PgConnection, payment_id: Uuid) -> Result<Payment, PaymentError> {
    store::lock_payment(conn, payment_id)
        .await?
        .ok_or(PaymentError::NotFound(payment_id))
}

/// A capture or void waiting for the provider decides the payment's fate; a
/// second one with another key must not race it.
async fn refuse_if_closing(conn: &mut PgConnection, payment_id: Uuid) -> Result<(), PaymentError> {
    let pending = store::pending_transactions(conn, payment_id).await?;
    match pending
        .iter()
        .find(|t| matches!(t.kind, TransactionKind::Capture | TransactionKind::Void))
    {
        Some(t) => Err(PaymentError::Busy(t.kind.as_str())),
        None => Ok(()),
    }
}

fn check_refund(payment: &Payment, amount: &Money, refundable: i64) -> Result<(), PaymentError> {
    if amount.currency_code != payment.amount.currency_code {
        return Err(PaymentError::InvalidRefund(format!(
            "is in {}, the payment is in {}",
            amount.currency_code, payment.amount.currency_code
        )));
    }
    if refundable <= 0 {
        return Err(PaymentError::InvalidRefund(
            "nothing remains refundable".to_owned(),
        ));
    }
    if amount.amount_minor <= 0 {
        return Err(PaymentError::InvalidRefund("must be positive".to_owned()));
    }
    if amount.amount_minor > refundable {
        return Err(PaymentError::InvalidRefund(format!(
            "{} exceeds the {refundable} that remains refundable",
            amount.amount_minor
        )));
    }
    Ok(())
}

fn wrong_state(payment: &Payment, action: &'static str, needs: &'static str) -> PaymentError {
    PaymentError::WrongState {
        id: payment.id,
        status: payment.status,
        action,
        needs,
    }
}

/// The answer to a call whose transaction is settled: the payment, or the
/// provider's refusal of a capture, void or refund (a declined authorization
/// is a FAILED payment, not an error).
fn answer(payment: Payment, transaction: &Transaction) -> Result<Payment, PaymentError> {
    match (transaction.kind, transaction.status) {
        (
            TransactionKind::Capture | TransactionKind::Void | TransactionKind::Refund,
            TransactionStatus::Failed,
        ) => Err(PaymentError::ProviderRefused {
            action: transaction.kind.as_str(),
            code: transaction.failure_code.clone().unwrap_or_default(),
        }),
        _ => Ok(payment),
    }
}

fn replayed(operation: &'static str) {
    metrics::counter!("payment_idempotent_replays_total", "operation" => operation).increment(1);
}

/// The transaction `id` of `payment` as just loaded; a payment without it was
/// changed under us, which the lifecycle never does.
fn transaction_of(payment: &Payment, id: Uuid) -> Result<Transaction, PaymentError> {
    payment
        .transactions
        .iter()
        .find(|t| t.id == id)
        .cloned()
        .ok_or_else(|| PaymentError::Corrupt(format!("transaction {id} vanished")))
}
