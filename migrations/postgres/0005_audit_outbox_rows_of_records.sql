-- An outbox row holds a run of records instead of one: the NDJSON lines of a group commit
-- (split where the row passes 12 KiB, so a statement stays within one socket write, or where
-- the hour partition changes). Inserting, stamping a claim, reading and deleting cost per row
-- — heap tuples, three indexes, WAL — so a group of 20 now costs about what one record did.
--
-- `id` and `time` are the first record's, `last_id` the last one's (object keys name both);
-- `records` counts the lines. `lines` is text, not json: several lines are not one JSON value,
-- and the records were serialized by presignd itself.
ALTER TABLE audit_outbox ADD COLUMN last_id TEXT;
ALTER TABLE audit_outbox ADD COLUMN records INTEGER NOT NULL DEFAULT 1
    CONSTRAINT audit_outbox_records_positive CHECK (records > 0);
ALTER TABLE audit_outbox ALTER COLUMN record TYPE TEXT USING record::text || E'\n';
ALTER TABLE audit_outbox RENAME COLUMN record TO lines;
UPDATE audit_outbox SET last_id = id;
ALTER TABLE audit_outbox ALTER COLUMN last_id SET NOT NULL;
ALTER TABLE audit_outbox ALTER COLUMN records DROP DEFAULT;
ALTER TABLE audit_outbox ADD CONSTRAINT audit_outbox_lines_end CHECK (right(lines, 1) = E'\n');
-- Out of line and uncompressed: compressing every row cost PostgreSQL more CPU than the rows
-- saved, and compressed rows kept inline made every scan of the heap (a claim walking past
-- dead tuples) read kilobytes per row.
ALTER TABLE audit_outbox ALTER COLUMN lines SET STORAGE EXTERNAL;
