-- SQLite shipper batches as ranges of `seq` instead of stamps on every row.
--
-- Stamping rewrote every record once more (the UPDATE of a claim) while holding SQLite's
-- single write lock, and group commits waited behind it. SQLite commits one transaction at a
-- time and `seq` is AUTOINCREMENT, so once a row with seq N is committed no row with a smaller
-- seq can appear: a batch is fully described by its first and last seq, and claiming one is a
-- one-row insert. Unclaimed rows are those above the highest claimed `last_seq`.
--
-- `shipped` is set once the batch's objects are stored; its rows are then deleted in small
-- chunks (each a short write), and the batch row last. A batch resumed with `shipped` set (a
-- crash during the deletes) is never shipped again, only finished.
CREATE TABLE audit_outbox_batches (
    batch      TEXT    NOT NULL CONSTRAINT audit_outbox_batches_pkey PRIMARY KEY,
    claimed_by TEXT    NOT NULL,
    claimed_at INTEGER NOT NULL,
    first_seq  INTEGER NOT NULL,
    last_seq   INTEGER NOT NULL,
    shipped    INTEGER NOT NULL DEFAULT 0 CONSTRAINT audit_outbox_batches_shipped_is_bool CHECK (shipped IN (0, 1)),
    CONSTRAINT audit_outbox_batches_range CHECK (first_seq <= last_seq)
) STRICT;

-- Batches claimed by stamping before this migration keep their rows (each such batch is a
-- contiguous run of seq: claims always took the oldest unclaimed rows).
INSERT INTO audit_outbox_batches (batch, claimed_by, claimed_at, first_seq, last_seq)
SELECT batch, min(claimed_by), min(claimed_at), min(seq), max(seq)
FROM audit_outbox WHERE batch IS NOT NULL GROUP BY batch;

UPDATE audit_outbox SET batch = NULL, claimed_by = NULL, claimed_at = NULL WHERE batch IS NOT NULL;
