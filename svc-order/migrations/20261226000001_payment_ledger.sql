-- What svc-payment announced about each order's payments (shop.payment.events,
-- consumed in group svc-order through the inbox; see src/ledger.rs), and the
-- orders whose books disagree with their status after a grace period.

CREATE TABLE order_payment_ledger (
    payment_id       uuid PRIMARY KEY,
    -- No foreign key: the ledger records what the payment service says, even
    -- about an order this database does not know (that is itself a finding).
    order_id         uuid NOT NULL,
    currency_code    text NOT NULL,
    authorized_minor bigint NOT NULL DEFAULT 0 CHECK (authorized_minor >= 0),
    captured_minor   bigint NOT NULL DEFAULT 0 CHECK (captured_minor >= 0),
    -- The payment's running refund total (PaymentRefunded.total_refunded).
    refunded_minor   bigint NOT NULL DEFAULT 0 CHECK (refunded_minor >= 0),
    voided           boolean NOT NULL DEFAULT false,
    failed           boolean NOT NULL DEFAULT false,
    updated_at       timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX order_payment_ledger_order ON order_payment_ledger (order_id);

-- A terminal order whose money does not match its status: captured − refunded
-- should equal the total for a CONFIRMED order and 0 otherwise. One row per
-- order, first time seen; `resolved_at` is set when a later check finds the
-- books agree again (e.g. a late refund event arrived).
CREATE TABLE order_payment_mismatches (
    order_id       uuid PRIMARY KEY,
    status         text NOT NULL,
    expected_minor bigint NOT NULL,
    net_captured_minor bigint NOT NULL,
    first_seen_at  timestamptz NOT NULL DEFAULT now(),
    resolved_at    timestamptz
);

CREATE INDEX order_payment_mismatches_open ON order_payment_mismatches (order_id)
    WHERE resolved_at IS NULL;
-- The check looks at orders settled in a window; this keeps it off a full scan.
CREATE INDEX orders_terminal_recent ON orders (updated_at)
    WHERE status IN ('confirmed', 'cancelled', 'failed', 'refunded');
