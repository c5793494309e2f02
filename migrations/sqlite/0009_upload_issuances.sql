-- Uploads issued through presignd, kept so that verification (POST …/uploads/verify, and
-- every multipart completion) can compare the object S3 holds with what was signed. A
-- presigned PUT or POST gets its row when it is issued (`issuance_id` is its audit record's
-- id, the URL's `x-presignd-id`); a multipart upload (`upload_id`) when it is created, living
-- until it completes (then it is verified) or is aborted (then the row goes). `object_key` is
-- a prefix when `key_is_prefix` (a starts-with POST, whose key the browser completed). Sizes
-- in bytes; `max_length` NULL: up to S3's single-PUT limit.
-- `metadata` and `groups` are JSON. `state`: 'issued', 'verifying' (claimed until
-- `claimed_until`; a claim whose instance died is taken over), 'verified' or 'rejected', with
-- `outcome` the verification's answer (JSON). Rows are forgotten after `keep_until`. Times are
-- Unix seconds.
CREATE TABLE upload_issuances (
    issuance_id     TEXT    NOT NULL CONSTRAINT upload_issuances_pkey PRIMARY KEY,
    kind            TEXT    NOT NULL CONSTRAINT upload_issuances_kind CHECK (kind IN ('put', 'post', 'multipart')),
    access_point    TEXT    NOT NULL,
    bucket          TEXT    NOT NULL,
    object_key      TEXT    NOT NULL,
    key_is_prefix   INTEGER NOT NULL CONSTRAINT upload_issuances_prefix CHECK (key_is_prefix IN (0, 1)),
    issuer          TEXT    NOT NULL,
    subject         TEXT    NOT NULL,
    groups          TEXT    NOT NULL,
    min_length      INTEGER  NOT NULL CONSTRAINT upload_issuances_min CHECK (min_length >= 0),
    max_length      INTEGER,
    content_type    TEXT,
    checksum_sha256 TEXT,
    sse             TEXT    NOT NULL,
    metadata        TEXT    NOT NULL,
    created_at      INTEGER  NOT NULL,
    expires_at      INTEGER  NOT NULL,
    keep_until      INTEGER  NOT NULL,
    state           TEXT    NOT NULL DEFAULT 'issued'
        CONSTRAINT upload_issuances_state CHECK (state IN ('issued', 'verifying', 'verified', 'rejected')),
    claimed_until   INTEGER,
    outcome         TEXT,
    -- Once verified: the object's size if it is still there (0 if missing or removed).
    size            INTEGER,
    upload_id       TEXT
) STRICT;
CREATE INDEX upload_issuances_keep_until ON upload_issuances (keep_until);
CREATE INDEX upload_issuances_upload ON upload_issuances (upload_id);
-- Quota usage: one subject's issuances on one access point, by time.
CREATE INDEX upload_issuances_subject ON upload_issuances (access_point, issuer, subject, created_at);
