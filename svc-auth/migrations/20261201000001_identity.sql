-- Identity: accounts, their roles, the signing keys of access tokens, refresh
-- tokens (hashed) and the svc-user profiles still to be created.

CREATE TABLE users (
    id            uuid PRIMARY KEY,
    -- As the user typed it (trimmed); shown back, never compared.
    email         text NOT NULL,
    -- The comparison form (trimmed, lowercased): one account per address.
    email_key     text NOT NULL,
    -- Argon2id PHC string (parameters and salt included).
    password_hash text NOT NULL,
    display_name  text NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT users_email_key UNIQUE (email_key)
);

CREATE TABLE user_roles (
    user_id    uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    role       text NOT NULL,
    granted_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (user_id, role)
);

CREATE INDEX user_roles_role_idx ON user_roles (role);

-- Ed25519 keys that sign access tokens. Exactly one is current (activated, not
-- retired); one more waits as the next key, so verifiers learn it before the
-- first token it signs; retired keys stay verifiable until retires_at (their
-- last token's expiry plus a margin) and are deleted after.
CREATE TABLE signing_keys (
    kid          text PRIMARY KEY,
    seed         bytea NOT NULL CHECK (octet_length(seed) = 32),
    created_at   timestamptz NOT NULL DEFAULT now(),
    activated_at timestamptz,
    retires_at   timestamptz,
    CONSTRAINT signing_keys_retired_after_use CHECK (retires_at IS NULL OR activated_at IS NOT NULL)
);

CREATE UNIQUE INDEX signing_keys_one_current ON signing_keys ((true))
    WHERE activated_at IS NOT NULL AND retires_at IS NULL;
CREATE UNIQUE INDEX signing_keys_one_next ON signing_keys ((true))
    WHERE activated_at IS NULL;

-- Refresh tokens, only as SHA-256 hashes. A family is the chain of tokens one
-- sign-in produced by rotation; it belongs to one session. `used_at` marks a
-- token that was rotated: presenting it again is reuse, and kills the family.
CREATE TABLE refresh_tokens (
    id         uuid PRIMARY KEY,
    token_hash bytea NOT NULL CHECK (octet_length(token_hash) = 32),
    user_id    uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    session_id uuid NOT NULL,
    family_id  uuid NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    expires_at timestamptz NOT NULL,
    used_at    timestamptz,
    revoked_at timestamptz,
    CONSTRAINT refresh_tokens_hash_key UNIQUE (token_hash)
);

CREATE INDEX refresh_tokens_session_idx ON refresh_tokens (session_id);
CREATE INDEX refresh_tokens_family_idx ON refresh_tokens (family_id);
CREATE INDEX refresh_tokens_live_user_idx ON refresh_tokens (user_id) WHERE revoked_at IS NULL;

-- Profiles svc-user has not confirmed yet. Written in the registration's
-- transaction, deleted once CreateProfile succeeded; a background task retries
-- due rows with backoff, so no account stays without a profile.
CREATE TABLE pending_profiles (
    user_id         uuid PRIMARY KEY REFERENCES users (id) ON DELETE CASCADE,
    attempts        integer NOT NULL DEFAULT 0,
    next_attempt_at timestamptz NOT NULL,
    last_error      text,
    created_at      timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX pending_profiles_due_idx ON pending_profiles (next_attempt_at);
