-- The recommender's signals and models (docs/recommendations.md).

-- One row per product of a confirmed order, from OrderConfirmed (and the demo
-- history). The key makes a redelivered or replayed order count once.
-- OrderRefunded sets refunded_at on every line of the order: refunded lines
-- are no training signal, but still "already bought" for the shopper.
CREATE TABLE purchases (
    order_id     uuid        NOT NULL,
    product_id   uuid        NOT NULL,
    user_id      uuid        NOT NULL,
    quantity     integer     NOT NULL CHECK (quantity > 0),
    purchased_at timestamptz NOT NULL,
    refunded_at  timestamptz,
    recorded_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (order_id, product_id)
);

-- A shopper's history, read on every RecommendForMe.
CREATE INDEX purchases_by_user ON purchases (user_id, product_id);

-- Trained models, newest last: the whole serving snapshot (a versioned
-- protobuf encoding, `format`), so a (re)started replica serves at once.
CREATE SEQUENCE model_seq;

CREATE TABLE models (
    seq        bigint      PRIMARY KEY,
    version    text        NOT NULL UNIQUE,
    format     integer     NOT NULL,
    trained_at timestamptz NOT NULL,
    snapshot   bytea       NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);
