-- Search, cache versions and availability for the catalog issue.

-- Trigram similarity for typo-tolerant matching on product names. The extension
-- ships with the PostgreSQL server package; creating it needs a superuser (or a
-- role trusted to create it) the first time only.
CREATE EXTENSION IF NOT EXISTS pg_trgm;

-- Every committed write to a product (update, delete) bumps its version. The
-- Redis cache stores the version beside the cached copy and refuses to replace
-- a newer copy with an older one, so a slow read can never put back a product
-- that an admin has just changed.
ALTER TABLE products ADD COLUMN version bigint NOT NULL DEFAULT 1;

-- Full-text document: the name weighs most (A), then the description (B), then
-- attribute values such as brand or colour (C). Generated, so it can never
-- drift from the columns it is built from.
ALTER TABLE products ADD COLUMN search_document tsvector GENERATED ALWAYS AS (
    setweight(to_tsvector('english', name), 'A')
    || setweight(to_tsvector('english', description), 'B')
    || setweight(jsonb_to_tsvector('english', attributes, '["string"]'), 'C')
) STORED;

-- GIN indexes without the fast-update pending list: the catalog is written
-- rarely and searched constantly, so a new product goes straight into the index
-- rather than into a list every search must scan until the next vacuum.
CREATE INDEX products_search_idx ON products USING gin (search_document)
    WITH (fastupdate = off) WHERE deleted_at IS NULL;
CREATE INDEX products_name_trgm_idx ON products USING gin (name gin_trgm_ops)
    WITH (fastupdate = off) WHERE deleted_at IS NULL;
-- An exact (case-insensitive) name match ranks first; indexed like the other two
-- ways a product can match text.
CREATE INDEX products_name_lower_idx ON products (lower(name))
    WHERE deleted_at IS NULL;
-- Attribute filters are containment tests (attributes @> '{"colour": "Black"}').
CREATE INDEX products_attributes_idx ON products USING gin (attributes jsonb_path_ops)
    WITH (fastupdate = off) WHERE deleted_at IS NULL;

-- Available stock per SKU as svc-inventory last reported it over WatchStock.
-- A copy for filtering only: inventory stays the authority, and a SKU without a
-- row here counts as not in stock.
CREATE TABLE stock_levels (
    sku         text PRIMARY KEY,
    available   bigint NOT NULL CHECK (available >= 0),
    -- Inventory's update time of this level; an older report never overwrites a newer one.
    updated_at  timestamptz NOT NULL,
    received_at timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX stock_levels_in_stock_idx ON stock_levels (sku) WHERE available > 0;
