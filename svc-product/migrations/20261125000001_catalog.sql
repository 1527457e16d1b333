-- The catalog: a category tree and the products in it. Products are soft-deleted
-- (deleted_at) so order history can still name them.

CREATE TABLE categories (
    id         uuid PRIMARY KEY,
    parent_id  uuid REFERENCES categories (id),
    slug       text NOT NULL,
    name       text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT categories_slug_key UNIQUE (slug),
    CONSTRAINT categories_not_own_parent CHECK (parent_id <> id)
);

CREATE INDEX categories_parent_idx ON categories (parent_id);

CREATE TABLE products (
    id            uuid PRIMARY KEY,
    sku           text NOT NULL,
    name          text NOT NULL,
    description   text NOT NULL DEFAULT '',
    category_id   uuid NOT NULL REFERENCES categories (id),
    price_minor   bigint NOT NULL CHECK (price_minor >= 0),
    currency_code char(3) NOT NULL CHECK (currency_code ~ '^[A-Z]{3}$'),
    attributes    jsonb NOT NULL DEFAULT '{}'::jsonb CHECK (jsonb_typeof(attributes) = 'object'),
    image_urls    text[] NOT NULL DEFAULT '{}',
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now(),
    deleted_at    timestamptz
);

-- A SKU names one live product; a deleted product's SKU may be reused.
CREATE UNIQUE INDEX products_sku_key ON products (sku) WHERE deleted_at IS NULL;

-- Keyset paging: one index per sort order, live rows only.
CREATE INDEX products_newest_idx ON products (created_at DESC, id DESC) WHERE deleted_at IS NULL;
CREATE INDEX products_price_idx ON products (price_minor, id) WHERE deleted_at IS NULL;
CREATE INDEX products_category_idx ON products (category_id) WHERE deleted_at IS NULL;
