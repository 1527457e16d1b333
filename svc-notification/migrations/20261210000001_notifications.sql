-- Notifications (one row per source event and channel) and the shoppers'
-- channel preferences. See src/store.rs for how they are used.

CREATE TABLE notifications (
    id               uuid PRIMARY KEY,
    user_id          uuid NOT NULL,
    channel          text NOT NULL CHECK (channel IN ('email', 'sms')),
    event_type       text NOT NULL,
    -- event_id of the event that caused it: with the channel, what makes a
    -- redelivered event (even one the inbox no longer remembers) a no-op.
    source_event_id  uuid NOT NULL,
    subject          text NOT NULL DEFAULT '',
    body             text NOT NULL,
    -- pending: waiting for the sender; sent / failed / skipped are final.
    status           text NOT NULL CHECK (status IN ('pending', 'sent', 'failed', 'skipped')),
    status_reason    text NOT NULL DEFAULT '',
    -- Where it went (email address or phone), filled in by the sender.
    recipient        text NOT NULL DEFAULT '',
    -- Provider attempts so far, and when the sender may try again.
    attempts         integer NOT NULL DEFAULT 0,
    next_attempt_at  timestamptz NOT NULL DEFAULT now(),
    created_at       timestamptz NOT NULL DEFAULT now(),
    sent_at          timestamptz,
    -- Order in which notifications became final: what WatchMyNotifications
    -- follows and resumes from (a pending row settles after newer ones).
    settled_seq      bigint,
    CONSTRAINT notifications_event_channel UNIQUE (source_event_id, channel)
);

CREATE SEQUENCE notifications_settled_seq;

-- ListMyNotifications: a user's notifications newest first (UUIDv7 ids).
CREATE INDEX notifications_user_id ON notifications (user_id, id DESC);
-- The sender's queue.
CREATE INDEX notifications_pending ON notifications (next_attempt_at) WHERE status = 'pending';
-- WatchMyNotifications catch-up.
CREATE INDEX notifications_user_settled ON notifications (user_id, settled_seq) WHERE settled_seq IS NOT NULL;

CREATE TABLE notification_preferences (
    user_id     uuid NOT NULL,
    event_type  text NOT NULL,
    email       boolean NOT NULL,
    sms         boolean NOT NULL,
    updated_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (user_id, event_type)
);
