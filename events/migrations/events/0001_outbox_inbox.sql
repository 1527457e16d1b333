-- The transactional outbox and the consumers' inbox, in every service's own
-- database (platform::events). Tracked in _shopmesh_events_migrations, apart
-- from the service's own _sqlx_migrations.

-- Events waiting to be published, written in the same transaction as the state
-- change they describe. `id` is the publish order.
CREATE TABLE IF NOT EXISTS outbox (
    id              bigserial   PRIMARY KEY,
    event_id        uuid        NOT NULL UNIQUE,
    topic           text        NOT NULL,
    key             text        NOT NULL,
    envelope        bytea       NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now(),
    published_at    timestamptz,
    attempts        integer     NOT NULL DEFAULT 0,
    last_error      text,
    -- Backoff: a row that failed is not claimed again before this time.
    next_attempt_at timestamptz NOT NULL DEFAULT now()
);

-- The relay's work queue: unpublished rows in publish order (small, partial).
CREATE INDEX IF NOT EXISTS outbox_unpublished_idx
    ON outbox (id) WHERE published_at IS NULL;
-- Per-key ordering check of the relay: unpublished rows of one record key.
CREATE INDEX IF NOT EXISTS outbox_unpublished_key_idx
    ON outbox (topic, key, id) WHERE published_at IS NULL;
-- Pruning published rows after the retention.
CREATE INDEX IF NOT EXISTS outbox_published_at_idx
    ON outbox (published_at) WHERE published_at IS NOT NULL;

-- Events a consumer group has applied, recorded in the same transaction as
-- the effect, so a redelivered event changes nothing.
CREATE TABLE IF NOT EXISTS inbox (
    consumer_group text        NOT NULL,
    event_id       uuid        NOT NULL,
    topic          text        NOT NULL,
    processed_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (consumer_group, event_id)
);

CREATE INDEX IF NOT EXISTS inbox_processed_at_idx ON inbox (processed_at);
