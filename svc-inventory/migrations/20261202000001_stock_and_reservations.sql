-- Stock per SKU, the reservations that hold it for orders, and the audit log of
-- every change. `available = on_hand - reserved` is never stored: the CHECK
-- constraints keep it from going below zero whatever the application does.

CREATE TABLE stock (
    sku        text PRIMARY KEY,
    on_hand    bigint NOT NULL,
    reserved   bigint NOT NULL DEFAULT 0,
    -- Bumped by every change, so a watcher can drop a level older than one it sent.
    version    bigint NOT NULL DEFAULT 1,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT stock_on_hand_not_negative CHECK (on_hand >= 0),
    CONSTRAINT stock_reserved_not_negative CHECK (reserved >= 0),
    CONSTRAINT stock_available_not_negative CHECK (on_hand - reserved >= 0)
);

-- One reservation per order. A ReleaseReservation for an order that never
-- reserved leaves a `released` row without lines, so a late ReserveStock fails.
CREATE TABLE reservations (
    order_id   uuid PRIMARY KEY,
    status     text NOT NULL,
    expires_at timestamptz NOT NULL,
    -- The service that asked for the reservation (or released the unknown order).
    actor      text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT reservations_status_known
        CHECK (status IN ('reserved', 'committed', 'released', 'expired'))
);

-- What the sweeper looks for: live reservations past their expiry.
CREATE INDEX reservations_live_expiry_idx ON reservations (expires_at) WHERE status = 'reserved';

CREATE TABLE reservation_lines (
    order_id uuid NOT NULL REFERENCES reservations (order_id),
    sku      text NOT NULL REFERENCES stock (sku),
    quantity integer NOT NULL,
    -- The line's place in the request, so the reservation reads back as asked.
    position smallint NOT NULL,
    PRIMARY KEY (order_id, sku),
    CONSTRAINT reservation_lines_quantity_range CHECK (quantity BETWEEN 1 AND 99)
);

-- The audit log: one row per SKU per change of on_hand or reserved.
CREATE TABLE stock_changes (
    id             uuid PRIMARY KEY,
    -- Insertion order. A change is written while its stock row is locked, so per
    -- SKU this is the order the changes were committed in: the keyset of the log.
    seq            bigint GENERATED ALWAYS AS IDENTITY,
    sku            text NOT NULL REFERENCES stock (sku),
    kind           text NOT NULL,
    on_hand_delta  bigint NOT NULL,
    reserved_delta bigint NOT NULL,
    on_hand_after  bigint NOT NULL,
    reserved_after bigint NOT NULL,
    reason         text NOT NULL,
    actor          text NOT NULL,
    order_id       uuid,
    created_at     timestamptz NOT NULL DEFAULT clock_timestamp(),
    CONSTRAINT stock_changes_kind_known
        CHECK (kind IN ('set', 'adjust', 'reserve', 'release', 'commit', 'expire'))
);

CREATE INDEX stock_changes_sku_seq_idx ON stock_changes (sku, seq DESC);

-- AdjustStock idempotency keys: a retry with the same key for the same SKU is
-- applied once.
CREATE TABLE stock_adjustments (
    sku             text NOT NULL REFERENCES stock (sku),
    idempotency_key text NOT NULL,
    delta           bigint NOT NULL,
    change_id       uuid NOT NULL REFERENCES stock_changes (id),
    created_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (sku, idempotency_key)
);

-- Every committed change of a stock row is announced on `inventory_stock`, from
-- inside the changing transaction: PostgreSQL delivers it only on commit, in
-- commit order, to the listeners of every replica. WatchStock fans it out.
CREATE FUNCTION stock_announce() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('inventory_stock', json_build_object(
        'sku', NEW.sku,
        'on_hand', NEW.on_hand,
        'reserved', NEW.reserved,
        'version', NEW.version,
        'updated_at_us', (extract(epoch FROM NEW.updated_at) * 1000000)::bigint
    )::text);
    RETURN NULL;
END
$$;

CREATE TRIGGER stock_announce AFTER INSERT OR UPDATE ON stock
    FOR EACH ROW EXECUTE FUNCTION stock_announce();
