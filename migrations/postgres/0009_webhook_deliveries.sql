-- Webhook deliveries, the durable outbox of `[[webhooks]]`: one row per event per endpoint,
-- written in the same transaction as what caused the event (a verification's answer), so an
-- event is never lost to a crash; deleted once the endpoint answered 2xx. `delivery_id` is
-- the `webhook-id` header, the same on every attempt. `payload` is the exact body signed and
-- sent. `state`: 'pending' (due at `next_attempt_at_ms`), 'delivering' (claimed by one
-- instance until `claimed_until_ms`; a claim whose instance died is taken over) or 'dead'
-- (retried for `webhook_delivery.retry_for_seconds` in vain: a dead letter, kept until an
-- operator retries it). Times are Unix milliseconds.
CREATE TABLE webhook_deliveries (
    delivery_id        TEXT    NOT NULL CONSTRAINT webhook_deliveries_pkey PRIMARY KEY,
    endpoint           TEXT    NOT NULL,
    event_type         TEXT    NOT NULL,
    payload            TEXT    NOT NULL,
    created_at_ms      BIGINT  NOT NULL,
    next_attempt_at_ms BIGINT  NOT NULL,
    attempts           INTEGER NOT NULL DEFAULT 0,
    state              TEXT    NOT NULL DEFAULT 'pending'
        CONSTRAINT webhook_deliveries_state CHECK (state IN ('pending', 'delivering', 'dead')),
    claimed_until_ms   BIGINT,
    last_error         TEXT,
    last_status        INTEGER
);
CREATE INDEX webhook_deliveries_due ON webhook_deliveries (state, next_attempt_at_ms);
