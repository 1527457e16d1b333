-- Shopper profiles (one per account, keyed by svc-auth's user id) and their
-- address books.

CREATE TABLE profiles (
    user_id      uuid PRIMARY KEY,
    email        text NOT NULL,
    display_name text NOT NULL CHECK (char_length(display_name) BETWEEN 1 AND 100),
    phone        text NOT NULL DEFAULT '' CHECK (phone = '' OR phone ~ '^\+[1-9][0-9]{7,14}$'),
    email_opt_in boolean NOT NULL DEFAULT false,
    sms_opt_in   boolean NOT NULL DEFAULT false,
    -- Bumped by every update; the profile cache never replaces a newer version
    -- with an older one.
    version      bigint NOT NULL DEFAULT 1,
    created_at   timestamptz NOT NULL DEFAULT now(),
    updated_at   timestamptz NOT NULL DEFAULT now(),
    -- Named: the service maps a violation to a field error on marketing.sms_opt_in.
    CONSTRAINT profiles_sms_needs_phone CHECK (NOT sms_opt_in OR phone <> '')
);

CREATE TABLE addresses (
    id           uuid PRIMARY KEY,
    user_id      uuid NOT NULL REFERENCES profiles (user_id) ON DELETE CASCADE,
    label        text NOT NULL DEFAULT '',
    recipient    text NOT NULL,
    line1        text NOT NULL,
    line2        text NOT NULL DEFAULT '',
    city         text NOT NULL,
    region       text NOT NULL DEFAULT '',
    postal_code  text NOT NULL DEFAULT '',
    country_code char(2) NOT NULL CHECK (country_code ~ '^[A-Z]{2}$'),
    phone        text NOT NULL DEFAULT '' CHECK (phone = '' OR phone ~ '^\+[1-9][0-9]{7,14}$'),
    is_default   boolean NOT NULL DEFAULT false,
    created_at   timestamptz NOT NULL DEFAULT now(),
    updated_at   timestamptz NOT NULL DEFAULT now()
);

-- At most one default address per user, whatever the interleaving of writers.
CREATE UNIQUE INDEX addresses_one_default_per_user ON addresses (user_id) WHERE is_default;

-- The address book in list order: default first, then newest first.
CREATE INDEX addresses_user_list_idx ON addresses (user_id, is_default DESC, created_at DESC, id DESC);
