-- An outbox row holds a run of records instead of one: the NDJSON lines of a group commit
-- (split where the hour partition changes or the row passes 12 KiB). Inserting, claiming,
-- reading and deleting cost per row, and per row SQLite also updated the unique index on
-- `id` and parsed the record for `json_valid`: a group of 20 now costs about what one record
-- did.
--
-- `id` and `time` are the first record's, `last_id` the last one's (object keys name both);
-- `records` counts the lines. The stamp columns are gone: SQLite batches are ranges of `seq`
-- (0005). Rows keep their `seq`, so claimed ranges stay exact, and the sequence carries on
-- from where it was (never below a claimed `last_seq`).
CREATE TABLE audit_outbox_runs (
    seq      INTEGER NOT NULL CONSTRAINT audit_outbox_pkey PRIMARY KEY AUTOINCREMENT,
    id       TEXT    NOT NULL CONSTRAINT audit_outbox_id_key UNIQUE,
    time     TEXT    NOT NULL CONSTRAINT audit_outbox_time_is_utc CHECK (time LIKE '____-__-__T__:__:__%Z'),
    last_id  TEXT    NOT NULL,
    records  INTEGER NOT NULL CONSTRAINT audit_outbox_records_positive CHECK (records > 0),
    lines    TEXT    NOT NULL CONSTRAINT audit_outbox_lines_end CHECK (substr(lines, -1) = char(10))
) STRICT;

INSERT INTO audit_outbox_runs (seq, id, time, last_id, records, lines)
SELECT seq, id, time, id, 1, record || char(10) FROM audit_outbox ORDER BY seq;

DELETE FROM sqlite_sequence WHERE name = 'audit_outbox_runs';
INSERT INTO sqlite_sequence (name, seq)
SELECT 'audit_outbox_runs', max(seq) FROM (
    SELECT seq FROM sqlite_sequence WHERE name = 'audit_outbox'
    UNION ALL SELECT coalesce(max(last_seq), 0) FROM audit_outbox_batches
    UNION ALL SELECT coalesce(max(seq), 0) FROM audit_outbox_runs);

DROP TABLE audit_outbox;
ALTER TABLE audit_outbox_runs RENAME TO audit_outbox;
