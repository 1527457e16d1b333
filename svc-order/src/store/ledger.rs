//! The payment ledger in PostgreSQL (migrations/…_payment_ledger.sql):
//! `order_payment_ledger`, one row per payment as its events left it, and
//! `order_payment_mismatches`, the orders whose books disagree. Every function
//! runs in the caller's transaction (the inbox's, or the check's).

use std::time::Duration;

use sqlx::PgConnection;
use uuid::Uuid;

/// What one payment event adds to its payment's row.
#[derive(Debug, PartialEq, Eq)]
pub struct LedgerEntry {
    pub payment_id: Uuid,
    pub order_id: Uuid,
    pub currency_code: String,
    pub authorized_minor: i64,
    pub captured_minor: i64,
    /// The payment's refund total so far.
    pub refunded_minor: i64,
    pub voided: bool,
    pub failed: bool,
}

/// An order whose payments' net capture is not what its status says.
#[derive(Debug)]
pub struct Mismatch {
    pub order_id: Uuid,
    /// The order's status, or "unknown" for an order not in this database.
    pub status: String,
    pub expected_minor: i64,
    pub net_captured_minor: i64,
}

/// Applies one payment event to its payment's row.
pub async fn record_entry(conn: &mut PgConnection, entry: &LedgerEntry) -> Result<(), sqlx::Error> {
    // Amounts only grow (GREATEST), flags only turn on: applying the
    // events of one payment in any order gives the same row.
    sqlx::query(
        "INSERT INTO order_payment_ledger AS l (payment_id, order_id, currency_code, \
             authorized_minor, captured_minor, refunded_minor, voided, failed) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8) \
         ON CONFLICT (payment_id) DO UPDATE SET \
             authorized_minor = GREATEST(l.authorized_minor, EXCLUDED.authorized_minor), \
             captured_minor = GREATEST(l.captured_minor, EXCLUDED.captured_minor), \
             refunded_minor = GREATEST(l.refunded_minor, EXCLUDED.refunded_minor), \
             voided = l.voided OR EXCLUDED.voided, \
             failed = l.failed OR EXCLUDED.failed, \
             currency_code = CASE WHEN l.currency_code = '' THEN EXCLUDED.currency_code \
                                  ELSE l.currency_code END, \
             updated_at = now()",
    )
    .bind(entry.payment_id)
    .bind(entry.order_id)
    .bind(&entry.currency_code)
    .bind(entry.authorized_minor)
    .bind(entry.captured_minor)
    .bind(entry.refunded_minor)
    .bind(entry.voided)
    .bind(entry.failed)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// Orders settled in the last day (older ones were checked by earlier runs)
/// but not within `grace`, and payments for orders not in this database at
/// all, whose books disagree with what their payments' events say.
pub async fn mismatches(
    conn: &mut PgConnection,
    grace: Duration,
) -> Result<Vec<Mismatch>, sqlx::Error> {
    let grace_seconds = grace.as_secs_f64();
    let found: Vec<(Uuid, String, i64, i64)> = sqlx::query_as(
        "WITH settled AS ( \
             SELECT o.id, o.status, \
                    CASE WHEN o.status = 'confirmed' THEN o.total_minor ELSE 0 END AS expected \
             FROM orders o \
             WHERE o.status IN ('confirmed', 'cancelled', 'failed', 'refunded') \
               AND o.updated_at < now() - make_interval(secs => $1) \
               AND o.updated_at > now() - make_interval(secs => $1) - interval '1 day' \
         ), books AS ( \
             SELECT order_id, sum(captured_minor - refunded_minor)::bigint AS net, \
                    max(updated_at) AS updated_at \
             FROM order_payment_ledger GROUP BY order_id \
         ) \
         SELECT s.id, s.status, s.expected, COALESCE(b.net, 0) \
         FROM settled s LEFT JOIN books b ON b.order_id = s.id \
         WHERE COALESCE(b.net, 0) <> s.expected \
         UNION ALL \
         SELECT b.order_id, 'unknown', 0, b.net \
         FROM books b \
         WHERE b.updated_at < now() - make_interval(secs => $1) \
           AND b.updated_at > now() - make_interval(secs => $1) - interval '1 day' \
           AND NOT EXISTS (SELECT 1 FROM orders o WHERE o.id = b.order_id)",
    )
    .bind(grace_seconds)
    .fetch_all(&mut *conn)
    .await?;
    Ok(found
        .into_iter()
        .map(
            |(order_id, status, expected_minor, net_captured_minor)| Mismatch {
                order_id,
                status,
                expected_minor,
                net_captured_minor,
            },
        )
        .collect())
}

/// Records a mismatch; true when it is new (never seen, resolved since, or
/// with another amount), false when it was already open as it is.
pub async fn record_mismatch(
    conn: &mut PgConnection,
    mismatch: &Mismatch,
) -> Result<bool, sqlx::Error> {
    let new = sqlx::query(
        "INSERT INTO order_payment_mismatches \
             (order_id, status, expected_minor, net_captured_minor) \
         VALUES ($1, $2, $3, $4) \
         ON CONFLICT (order_id) DO UPDATE SET status = EXCLUDED.status, \
             expected_minor = EXCLUDED.expected_minor, \
             net_captured_minor = EXCLUDED.net_captured_minor, resolved_at = NULL \
         WHERE order_payment_mismatches.resolved_at IS NOT NULL \
            OR order_payment_mismatches.net_captured_minor <> EXCLUDED.net_captured_minor",
    )
    .bind(mismatch.order_id)
    .bind(&mismatch.status)
    .bind(mismatch.expected_minor)
    .bind(mismatch.net_captured_minor)
    .execute(&mut *conn)
    .await?
    .rows_affected();
    Ok(new > 0)
}

/// Resolves the open mismatches of every order but `still_open`.
pub async fn resolve_mismatches_except(
    conn: &mut PgConnection,
    still_open: &[Uuid],
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE order_payment_mismatches SET resolved_at = now() \
         WHERE resolved_at IS NULL AND NOT (order_id = ANY($1))",
    )
    .bind(still_open)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// How many mismatches are open.
pub async fn open_mismatches(conn: &mut PgConnection) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar("SELECT count(*) FROM order_payment_mismatches WHERE resolved_at IS NULL")
        .fetch_one(&mut *conn)
        .await
}
