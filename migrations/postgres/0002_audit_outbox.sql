-- The audit outbox: a record is committed here before its URL is returned, and stays until
-- a shipper has put it into the log sink. `seq` orders the batches; `id` is the record id
-- (UUIDv7, also the `x-presignd-id` of the URL); `record` is the exact NDJSON line shipped
-- (`json`, not `jsonb`: validated, but kept byte for byte).
--
-- A shipper claims a batch by stamping its rows (`batch`, `claimed_by`, `claimed_at`; rows
-- picked with FOR UPDATE SKIP LOCKED, so instances never claim the same row) before it writes
-- the object, and deletes them after: a batch interrupted by a crash is shipped again with
-- exactly the same rows, hence the same object key.
CREATE TABLE audit_outbox (
    seq        BIGINT      NOT NULL GENERATED ALWAYS AS IDENTITY CONSTRAINT audit_outbox_pkey PRIMARY KEY,
    id         TEXT        NOT NULL CONSTRAINT audit_outbox_id_key UNIQUE,
    time       TIMESTAMPTZ NOT NULL,
    record     JSON        NOT NULL,
    batch      TEXT,
    claimed_by TEXT,
    claimed_at TIMESTAMPTZ,
    CONSTRAINT audit_outbox_claim_complete CHECK ((batch IS NULL) = (claimed_by IS NULL) AND (batch IS NULL) = (claimed_at IS NULL))
);

CREATE INDEX audit_outbox_batch ON audit_outbox (batch) WHERE batch IS NOT NULL;
