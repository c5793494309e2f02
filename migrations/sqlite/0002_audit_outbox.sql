-- The audit outbox: a record is committed here before its URL is returned, and stays until
-- the shipper has put it into the log sink. `seq` orders the batches; `id` is the record id
-- (UUIDv7, also the `x-presignd-id` of the URL); `record` is the exact NDJSON line shipped.
--
-- A shipper claims a batch by stamping its rows (`batch`, `claimed_by`, `claimed_at` in unix
-- milliseconds) before it writes the object, and deletes them after: a batch interrupted by a
-- crash is shipped again with exactly the same rows, hence the same object key.
CREATE TABLE audit_outbox (
    seq        INTEGER NOT NULL CONSTRAINT audit_outbox_pkey PRIMARY KEY AUTOINCREMENT,
    id         TEXT    NOT NULL CONSTRAINT audit_outbox_id_key UNIQUE,
    time       TEXT    NOT NULL CONSTRAINT audit_outbox_time_is_utc CHECK (time LIKE '____-__-__T__:__:__%Z'),
    record     TEXT    NOT NULL CONSTRAINT audit_outbox_record_is_json CHECK (json_valid(record)),
    batch      TEXT,
    claimed_by TEXT,
    claimed_at INTEGER,
    CONSTRAINT audit_outbox_claim_complete CHECK ((batch IS NULL) = (claimed_by IS NULL) AND (batch IS NULL) = (claimed_at IS NULL))
) STRICT;

CREATE INDEX audit_outbox_batch ON audit_outbox (batch) WHERE batch IS NOT NULL;
