//! Payments and transactions in PostgreSQL: every SQL statement of the
//! service, as small functions on a connection, so that `lifecycle.rs`
//! composes them into one transaction per state change.

use std::collections::HashMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::{PgConnection, PgPool, Postgres};
use uuid::Uuid;

use crate::error::PaymentError;
use crate::payment::{
    CardSummary, MethodKind, Money, Payment, PaymentStatus, Transaction, TransactionKind,
    TransactionStatus,
};

const PAYMENT_COLUMNS: &str = "id, idempotency_key, order_id, user_id, status, currency_code, \
     amount_minor, captured_minor, refunded_minor, provider, card_token, card_brand, card_last4, \
     method_kind, authorization_reference, failure_code, failure_message, created_at, updated_at";

const TRANSACTION_COLUMNS: &str = "id, payment_id, kind, status, idempotency_key, currency_code, \
     amount_minor, provider_reference, failure_code, failure_message, reason, attempts, created_at";

#[derive(sqlx::FromRow)]
struct PaymentRow {
    id: Uuid,
    idempotency_key: String,
    order_id: Uuid,
    user_id: Uuid,
    status: String,
    currency_code: String,
    amount_minor: i64,
    captured_minor: i64,
    refunded_minor: i64,
    provider: String,
    card_token: String,
    card_brand: String,
    card_last4: String,
    method_kind: String,
    authorization_reference: Option<String>,
    failure_code: Option<String>,
    failure_message: Option<String>,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

impl PaymentRow {
    fn into_payment(self, transactions: Vec<Transaction>) -> Result<Payment, PaymentError> {
        Ok(Payment {
            status: PaymentStatus::parse(&self.status)
                .ok_or_else(|| PaymentError::Corrupt(format!("status {:?}", self.status)))?,
            method_kind: MethodKind::parse(&self.method_kind).ok_or_else(|| {
                PaymentError::Corrupt(format!("method kind {:?}", self.method_kind))
            })?,
            id: self.id,
            idempotency_key: self.idempotency_key,
            order_id: self.order_id,
            user_id: self.user_id,
            amount: Money {
                currency_code: self.currency_code,
                amount_minor: self.amount_minor,
            },
            captured_minor: self.captured_minor,
            refunded_minor: self.refunded_minor,
            provider: self.provider,
            card_token: self.card_token,
            card: CardSummary {
                brand: self.card_brand,
                last4: self.card_last4,
            },
            authorization_reference: self.authorization_reference,
            failure_code: self.failure_code,
            failure_message: self.failure_message,
            created_at: self.created_at,
            updated_at: self.updated_at,
            transactions,
        })
    }
}

#[derive(sqlx::FromRow)]
struct TransactionRow {
    id: Uuid,
    payment_id: Uuid,
    kind: String,
    status: String,
    idempotency_key: String,
    currency_code: String,
    amount_minor: i64,
    provider_reference: Option<String>,
    failure_code: Option<String>,
    failure_message: Option<String>,
    reason: String,
    attempts: i32,
    created_at: DateTime<Utc>,
}

impl TryFrom<TransactionRow> for Transaction {
    type Error = PaymentError;
    fn try_from(row: TransactionRow) -> Result<Self, PaymentError> {
        Ok(Transaction {
            kind: TransactionKind::parse(&row.kind)
                .ok_or_else(|| PaymentError::Corrupt(format!("transaction kind {:?}", row.kind)))?,
            status: TransactionStatus::parse(&row.status).ok_or_else(|| {
                PaymentError::Corrupt(format!("transaction status {:?}", row.status))
            })?,
            id: row.id,
            payment_id: row.payment_id,
            idempotency_key: row.idempotency_key,
            amount: Money {
                currency_code: row.currency_code,
                amount_minor: row.amount_minor,
            },
            provider_reference: row.provider_reference,
            failure_code: row.failure_code,
            failure_message: row.failure_message,
            reason: row.reason,
            attempts: row.attempts,
            created_at: row.created_at,
        })
    }
}

/// Begins a read-only transaction that sees one snapshot, so a payment and
/// its transactions are read as one state change left them.
pub async fn begin_snapshot(
    db: &PgPool,
) -> Result<sqlx::Transaction<'static, Postgres>, sqlx::Error> {
    let mut tx = db.begin().await?;
    sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        .execute(&mut *tx)
        .await?;
    Ok(tx)
}

/// A payment to create (PENDING, with its authorization transaction).
pub struct NewPayment<'a> {
    pub id: Uuid,
    pub idempotency_key: &'a str,
    pub order_id: Uuid,
    pub user_id: Uuid,
    pub amount: &'a Money,
    pub provider: &'a str,
    pub card_token: &'a str,
    pub card: &'a CardSummary,
    pub method_kind: MethodKind,
}

/// Inserts the payment unless its key is taken; false when it was.
pub async fn insert_payment(
    conn: &mut PgConnection,
    new: &NewPayment<'_>,
) -> Result<bool, sqlx::Error> {
    let inserted = sqlx::query(
        "INSERT INTO payments (id, idempotency_key, order_id, user_id, status, currency_code, \
         amount_minor, provider, card_token, card_brand, card_last4, method_kind) \
         VALUES ($1, $2, $3, $4, 'pending', $5, $6, $7, $8, $9, $10, $11) \
         ON CONFLICT ON CONSTRAINT payments_idempotency_key_unique DO NOTHING",
    )
    .bind(new.id)
    .bind(new.idempotency_key)
    .bind(new.order_id)
    .bind(new.user_id)
    .bind(&new.amount.currency_code)
    .bind(new.amount.amount_minor)
    .bind(new.provider)
    .bind(new.card_token)
    .bind(&new.card.brand)
    .bind(&new.card.last4)
    .bind(new.method_kind.as_str())
    .execute(conn)
    .await?;
    Ok(inserted.rows_affected() == 1)
}

/// A transaction to record, PENDING, leased to the caller for `lease`.
pub struct NewTransaction<'a> {
    pub payment_id: Uuid,
    pub kind: TransactionKind,
    pub idempotency_key: &'a str,
    pub amount: &'a Money,
    pub reason: &'a str,
    pub lease: Duration,
}

pub async fn insert_transaction(
    conn: &mut PgConnection,
    new: &NewTransaction<'_>,
) -> Result<Transaction, PaymentError> {
    let row: TransactionRow = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "INSERT INTO payment_transactions (id, payment_id, kind, status, idempotency_key, \
         currency_code, amount_minor, reason, attempts, lease_until) \
         VALUES ($1, $2, $3, 'pending', $4, $5, $6, $7, 1, \
                 clock_timestamp() + $8 * interval '1 millisecond') \
         RETURNING {TRANSACTION_COLUMNS}"
    )))
    .bind(Uuid::now_v7())
    .bind(new.payment_id)
    .bind(new.kind.as_str())
    .bind(new.idempotency_key)
    .bind(&new.amount.currency_code)
    .bind(new.amount.amount_minor)
    .bind(new.reason)
    .bind(millis(new.lease))
    .fetch_one(conn)
    .await?;
    row.try_into()
}

fn millis(duration: Duration) -> i64 {
    i64::try_from(duration.as_millis()).unwrap_or(i64::MAX)
}

/// Takes the lease of a PENDING transaction nobody holds (or whose holder's
/// lease ran out): the caller may now ask the provider. False when someone
/// else holds it or the transaction is settled.
pub async fn claim_lease(
    conn: &mut PgConnection,
    transaction_id: Uuid,
    lease: Duration,
) -> Result<bool, sqlx::Error> {
    let claimed = sqlx::query(
        "UPDATE payment_transactions \
         SET lease_until = clock_timestamp() + $2 * interval '1 millisecond', \
             attempts = attempts + 1, updated_at = clock_timestamp() \
         WHERE id = $1 AND status = 'pending' \
           AND (lease_until IS NULL OR lease_until < clock_timestamp())",
    )
    .bind(transaction_id)
    .bind(millis(lease))
    .execute(conn)
    .await?;
    Ok(claimed.rows_affected() == 1)
}

/// Gives up the lease of a transaction still PENDING (the provider did not
/// answer), so the next retry asks again at once.
pub async fn release_lease(
    conn: &mut PgConnection,
    transaction_id: Uuid,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE payment_transactions SET lease_until = NULL, updated_at = clock_timestamp() \
         WHERE id = $1 AND status = 'pending'",
    )
    .bind(transaction_id)
    .execute(conn)
    .await?;
    Ok(())
}

/// Records the provider's answer on a PENDING transaction; false if it was
/// already settled (by a caller whose lease had run out).
pub async fn settle_transaction(
    conn: &mut PgConnection,
    transaction_id: Uuid,
    status: TransactionStatus,
    provider_reference: Option<&str>,
    failure: Option<(&str, &str)>,
) -> Result<bool, sqlx::Error> {
    let settled = sqlx::query(
        "UPDATE payment_transactions \
         SET status = $2, provider_reference = $3, failure_code = $4, failure_message = $5, \
             lease_until = NULL, updated_at = clock_timestamp() \
         WHERE id = $1 AND status = 'pending'",
    )
    .bind(transaction_id)
    .bind(status.as_str())
    .bind(provider_reference)
    .bind(failure.map(|f| f.0))
    .bind(failure.map(|f| f.1))
    .execute(conn)
    .await?;
    Ok(settled.rows_affected() == 1)
}

/// The payment with `key`, without its transactions.
pub async fn payment_id_by_key(
    conn: &mut PgConnection,
    key: &str,
) -> Result<Option<Uuid>, sqlx::Error> {
    sqlx::query_scalar("SELECT id FROM payments WHERE idempotency_key = $1")
        .bind(key)
        .fetch_optional(conn)
        .await
}

/// The payment locked for update (transactions not loaded).
pub async fn lock_payment(
    conn: &mut PgConnection,
    id: Uuid,
) -> Result<Option<Payment>, PaymentError> {
    let row: Option<PaymentRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {PAYMENT_COLUMNS} FROM payments WHERE id = $1 FOR UPDATE"
    )))
    .bind(id)
    .fetch_optional(conn)
    .await?;
    row.map(|row| row.into_payment(Vec::new())).transpose()
}

/// The payment with its transactions, oldest first.
pub async fn payment(conn: &mut PgConnection, id: Uuid) -> Result<Option<Payment>, PaymentError> {
    let row: Option<PaymentRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {PAYMENT_COLUMNS} FROM payments WHERE id = $1"
    )))
    .bind(id)
    .fetch_optional(&mut *conn)
    .await?;
    let Some(row) = row else {
        return Ok(None);
    };
    let mut transactions = transactions_of(conn, &[id]).await?;
    let transactions = transactions.remove(&id).unwrap_or_default();
    row.into_payment(transactions).map(Some)
}

/// One page of an order's payments, oldest first, after `after` (created_at,
/// id); only `owner`'s when given.
pub async fn order_payments(
    conn: &mut PgConnection,
    order_id: Uuid,
    owner: Option<Uuid>,
    after: Option<(DateTime<Utc>, Uuid)>,
    limit: i64,
) -> Result<Vec<Payment>, PaymentError> {
    let rows: Vec<PaymentRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {PAYMENT_COLUMNS} FROM payments \
         WHERE order_id = $1 AND ($2::uuid IS NULL OR user_id = $2) \
           AND ($3::timestamptz IS NULL OR (created_at, id) > ($3, $4)) \
         ORDER BY created_at, id LIMIT $5"
    )))
    .bind(order_id)
    .bind(owner)
    .bind(after.map(|a| a.0))
    .bind(after.map(|a| a.1))
    .bind(limit)
    .fetch_all(&mut *conn)
    .await?;
    let ids: Vec<Uuid> = rows.iter().map(|row| row.id).collect();
    let mut transactions = transactions_of(conn, &ids).await?;
    rows.into_iter()
        .map(|row| {
            let own = transactions.remove(&row.id).unwrap_or_default();
            row.into_payment(own)
        })
        .collect()
}

async fn transactions_of(
    conn: &mut PgConnection,
    payment_ids: &[Uuid],
) -> Result<HashMap<Uuid, Vec<Transaction>>, PaymentError> {
    let rows: Vec<TransactionRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {TRANSACTION_COLUMNS} FROM payment_transactions \
         WHERE payment_id = ANY($1) ORDER BY created_at, id"
    )))
    .bind(payment_ids)
    .fetch_all(conn)
    .await?;
    let mut by_payment: HashMap<Uuid, Vec<Transaction>> = HashMap::new();
    for row in rows {
        let transaction = Transaction::try_from(row)?;
        by_payment
            .entry(transaction.payment_id)
            .or_default()
            .push(transaction);
    }
    Ok(by_payment)
}

/// The payment's transaction of `kind` made under `key`, if any.
pub async fn transaction_by_key(
    conn: &mut PgConnection,
    payment_id: Uuid,
    kind: TransactionKind,
    key: &str,
) -> Result<Option<Transaction>, PaymentError> {
    let row: Option<TransactionRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {TRANSACTION_COLUMNS} FROM payment_transactions \
         WHERE payment_id = $1 AND kind = $2 AND idempotency_key = $3"
    )))
    .bind(payment_id)
    .bind(kind.as_str())
    .bind(key)
    .fetch_optional(conn)
    .await?;
    row.map(Transaction::try_from).transpose()
}

/// The payment's transactions still waiting for the provider.
pub async fn pending_transactions(
    conn: &mut PgConnection,
    payment_id: Uuid,
) -> Result<Vec<Transaction>, PaymentError> {
    let rows: Vec<TransactionRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {TRANSACTION_COLUMNS} FROM payment_transactions \
         WHERE payment_id = $1 AND status = 'pending' ORDER BY created_at, id"
    )))
    .bind(payment_id)
    .fetch_all(conn)
    .await?;
    rows.into_iter().map(Transaction::try_from).collect()
}

/// Moves the payment to `status` after an authorization answer.
pub async fn record_authorization(
    conn: &mut PgConnection,
    payment_id: Uuid,
    status: PaymentStatus,
    reference: Option<&str>,
    failure: Option<(&str, &str)>,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE payments SET status = $2, authorization_reference = $3, failure_code = $4, \
         failure_message = $5, updated_at = clock_timestamp() WHERE id = $1",
    )
    .bind(payment_id)
    .bind(status.as_str())
    .bind(reference)
    .bind(failure.map(|f| f.0))
    .bind(failure.map(|f| f.1))
    .execute(conn)
    .await?;
    Ok(())
}

/// Sets the payment's status and amounts taken and given back.
pub async fn record_money(
    conn: &mut PgConnection,
    payment_id: Uuid,
    status: PaymentStatus,
    captured_minor: i64,
    refunded_minor: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE payments SET status = $2, captured_minor = $3, refunded_minor = $4, \
         updated_at = clock_timestamp() WHERE id = $1",
    )
    .bind(payment_id)
    .bind(status.as_str())
    .bind(captured_minor)
    .bind(refunded_minor)
    .execute(conn)
    .await?;
    Ok(())
}
