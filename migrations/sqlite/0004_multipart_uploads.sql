-- Multipart uploads started through presignd. Every row binds an S3 upload id to the
-- principal that started it (issuer + subject), its access point, bucket, full object key and
-- declared size: only that principal can get part URLs for it, complete it or abort it.
-- Times are Unix seconds. `state`: 'active', or claimed while S3 completes or aborts it
-- ('completing', 'aborting'); a claim whose `claimed_until` has passed (its instance died) is
-- taken over by the sweeper. The row is deleted once S3 has completed or aborted the upload.
CREATE TABLE multipart_uploads (
    upload_id        TEXT    NOT NULL CONSTRAINT multipart_uploads_pkey PRIMARY KEY,
    access_point     TEXT    NOT NULL,
    bucket           TEXT    NOT NULL,
    request_key      TEXT    NOT NULL,
    object_key       TEXT    NOT NULL,
    issuer           TEXT    NOT NULL,
    subject          TEXT    NOT NULL,
    content_length   INTEGER NOT NULL CONSTRAINT multipart_uploads_length CHECK (content_length > 0),
    part_size        INTEGER NOT NULL CONSTRAINT multipart_uploads_part_size CHECK (part_size > 0),
    part_count       INTEGER NOT NULL CONSTRAINT multipart_uploads_part_count CHECK (part_count BETWEEN 1 AND 10000),
    created_at       INTEGER NOT NULL,
    last_activity_at INTEGER NOT NULL,
    state            TEXT    NOT NULL DEFAULT 'active'
        CONSTRAINT multipart_uploads_state CHECK (state IN ('active', 'completing', 'aborting')),
    claimed_until    INTEGER
) STRICT;
CREATE INDEX multipart_uploads_last_activity ON multipart_uploads (last_activity_at);
