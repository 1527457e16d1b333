-- Payments and every provider transaction made for them. Money is integer
-- minor units with its currency. A card number is never stored: only the
-- provider's token, the brand and the last four digits.

CREATE TABLE payments (
    id                      uuid PRIMARY KEY,
    -- The AuthorizePayment key: one payment per key, whoever retries it.
    idempotency_key         text NOT NULL,
    order_id                uuid NOT NULL,
    user_id                 uuid NOT NULL,
    status                  text NOT NULL,
    currency_code           text NOT NULL,
    amount_minor            bigint NOT NULL,
    captured_minor          bigint NOT NULL DEFAULT 0,
    refunded_minor          bigint NOT NULL DEFAULT 0,
    provider                text NOT NULL,
    card_token              text NOT NULL,
    card_brand              text NOT NULL,
    card_last4              text NOT NULL,
    -- How the method was given ("token" or "test_card"), so a repeat of the key
    -- with another method is told apart without keeping the number.
    method_kind             text NOT NULL,
    -- The provider's id of the authorization, which capture, void and refund name.
    authorization_reference text,
    failure_code            text,
    failure_message         text,
    created_at              timestamptz NOT NULL DEFAULT clock_timestamp(),
    updated_at              timestamptz NOT NULL DEFAULT clock_timestamp(),
    CONSTRAINT payments_idempotency_key_unique UNIQUE (idempotency_key),
    CONSTRAINT payments_status_known CHECK (status IN
        ('pending', 'authorized', 'captured', 'voided', 'partially_refunded', 'refunded', 'failed')),
    CONSTRAINT payments_currency_code CHECK (currency_code ~ '^[A-Z]{3}$'),
    CONSTRAINT payments_amount_positive CHECK (amount_minor > 0),
    CONSTRAINT payments_captured_range CHECK (captured_minor BETWEEN 0 AND amount_minor),
    -- Whatever the application does, no more is given back than was taken.
    CONSTRAINT payments_refunded_range CHECK (refunded_minor BETWEEN 0 AND captured_minor),
    CONSTRAINT payments_card_last4 CHECK (card_last4 ~ '^[0-9]{4}$'),
    CONSTRAINT payments_method_kind_known CHECK (method_kind IN ('token', 'test_card'))
);

-- ListOrderPayments: one order's payments, oldest first.
CREATE INDEX payments_order_idx ON payments (order_id, created_at, id);

-- One row per provider transaction: one request to the provider under one
-- provider idempotency key (the row's id). A retry after a timeout asks again
-- under the same key, so it stays the same transaction (`attempts` counts the
-- calls).
CREATE TABLE payment_transactions (
    id                 uuid PRIMARY KEY,
    payment_id         uuid NOT NULL REFERENCES payments (id),
    kind               text NOT NULL,
    status             text NOT NULL,
    -- The caller's key for this operation (AuthorizePayment's key for the
    -- authorization): a repeat finds this row instead of moving money again.
    idempotency_key    text NOT NULL,
    currency_code      text NOT NULL,
    amount_minor       bigint NOT NULL,
    provider_reference text,
    failure_code       text,
    failure_message    text,
    -- Why, for a void or a refund.
    reason             text NOT NULL DEFAULT '',
    attempts           integer NOT NULL DEFAULT 0,
    -- While set and in the future, one caller is asking the provider about this
    -- transaction; others wait for its answer instead of asking too.
    lease_until        timestamptz,
    created_at         timestamptz NOT NULL DEFAULT clock_timestamp(),
    updated_at         timestamptz NOT NULL DEFAULT clock_timestamp(),
    CONSTRAINT payment_transactions_key_unique UNIQUE (payment_id, kind, idempotency_key),
    CONSTRAINT payment_transactions_kind_known CHECK (kind IN ('authorize', 'capture', 'void', 'refund')),
    CONSTRAINT payment_transactions_status_known CHECK (status IN ('pending', 'succeeded', 'failed')),
    CONSTRAINT payment_transactions_amount_positive CHECK (amount_minor > 0)
);

CREATE INDEX payment_transactions_payment_idx ON payment_transactions (payment_id, created_at, id);
