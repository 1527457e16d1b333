-- Orders, their lines and status history, and the checkout saga that drives
-- each order (one row per order). See src/store.rs for how they are used.

CREATE TABLE orders (
    id                  uuid PRIMARY KEY,
    user_id             uuid NOT NULL,
    idempotency_key     text NOT NULL,
    -- sha256 of the canonical lines and shipping address: a repeat of the key
    -- with other content is refused (ALREADY_EXISTS).
    request_fingerprint text NOT NULL,
    status              text NOT NULL CHECK (status IN ('pending', 'stock_reserved',
                            'payment_authorized', 'confirmed', 'cancelled', 'failed', 'refunded')),
    status_reason       text NOT NULL DEFAULT '',
    currency_code       text NOT NULL,
    subtotal_minor      bigint NOT NULL CHECK (subtotal_minor >= 0),
    total_minor         bigint NOT NULL CHECK (total_minor >= 0),
    -- A copy of the address as given: later address-book edits do not change it.
    shipping_address    jsonb NOT NULL,
    -- The provider's card token and the card's brand and last four digits;
    -- never a card number.
    card_token          text NOT NULL,
    card_brand          text NOT NULL,
    card_last4          text NOT NULL,
    payment_id          uuid,
    created_at          timestamptz NOT NULL DEFAULT now(),
    updated_at          timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT orders_user_idempotency_key UNIQUE (user_id, idempotency_key)
);

-- ListMyOrders: a user's orders newest first (ids are UUIDv7, so id order is time order).
CREATE INDEX orders_user_newest ON orders (user_id, id DESC);

CREATE TABLE order_lines (
    order_id         uuid NOT NULL REFERENCES orders (id) ON DELETE CASCADE,
    position         integer NOT NULL,
    product_id       uuid NOT NULL,
    sku              text NOT NULL,
    name             text NOT NULL,
    quantity         integer NOT NULL CHECK (quantity BETWEEN 1 AND 99),
    unit_price_minor bigint NOT NULL CHECK (unit_price_minor >= 0),
    PRIMARY KEY (order_id, position)
);

CREATE TABLE order_status_history (
    seq        bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    order_id   uuid NOT NULL REFERENCES orders (id) ON DELETE CASCADE,
    status     text NOT NULL,
    reason     text NOT NULL,
    changed_at timestamptz NOT NULL DEFAULT clock_timestamp()
);

CREATE INDEX order_status_history_order ON order_status_history (order_id, seq);

-- The saga of one order: where it is, what is left to do, who runs it.
CREATE TABLE order_sagas (
    order_id          uuid PRIMARY KEY REFERENCES orders (id) ON DELETE CASCADE,
    -- forward: the checkout steps; compensating: undoing them; done: nothing left.
    phase             text NOT NULL CHECK (phase IN ('forward', 'compensating', 'done')),
    -- The step to run next (see src/saga.rs).
    step              text NOT NULL,
    -- The status compensation ends in: failed, cancelled or refunded.
    outcome           text,
    -- Why the saga compensates, and the stable failure code for OrderFailed.
    outcome_reason    text NOT NULL DEFAULT '',
    failure_code      text NOT NULL DEFAULT '',
    -- Set by CancelOrder; the runner acts on it between steps.
    cancel_requested  boolean NOT NULL DEFAULT false,
    cancel_reason     text NOT NULL DEFAULT '',
    cancelled_by      text NOT NULL DEFAULT '',
    -- The saga reached the authorization step: a payment may exist even when
    -- no answer told us its id.
    authorize_started boolean NOT NULL DEFAULT false,
    -- Stock was committed: past this point the saga goes forward, no release.
    stock_committed   boolean NOT NULL DEFAULT false,
    -- Tries of the current step so far.
    attempts          integer NOT NULL DEFAULT 0,
    next_attempt_at   timestamptz NOT NULL DEFAULT now(),
    -- The runner holding the saga, and until when; an expired lease is free.
    lease_owner       uuid,
    lease_until       timestamptz,
    -- Forward steps retried past this instant give up and compensate.
    deadline          timestamptz NOT NULL,
    last_error        text NOT NULL DEFAULT '',
    updated_at        timestamptz NOT NULL DEFAULT now()
);

-- The runner's work queue: sagas with something left to do, by due time.
CREATE INDEX order_sagas_due ON order_sagas (next_attempt_at) WHERE phase <> 'done';
