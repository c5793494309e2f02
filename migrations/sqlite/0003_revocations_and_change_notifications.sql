-- Token revocations. `kind` 'subject': tokens of `value` (a `sub`) issued before `not_before`
-- are refused; 'token': the token whose `jti` is `value` is refused. `issuer` '' means any
-- issuer. Times are Unix seconds. A row is useless once `expires_at` has passed (no token it
-- covers can still be valid) and is then purged.
--
-- (PostgreSQL also gets change-notification triggers here; SQLite serves one instance, which
-- applies its own changes at once and reloads periodically.)
CREATE TABLE revocations (
    kind       TEXT    NOT NULL CONSTRAINT revocations_kind CHECK (kind IN ('subject', 'token')),
    issuer     TEXT    NOT NULL DEFAULT '',
    value      TEXT    NOT NULL CONSTRAINT revocations_value_not_empty CHECK (value <> ''),
    not_before INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,
    created_by TEXT    NOT NULL,
    created_at TEXT    NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    CONSTRAINT revocations_pkey PRIMARY KEY (kind, issuer, value),
    CONSTRAINT revocations_expires_after_not_before CHECK (expires_at >= not_before)
) STRICT;
CREATE INDEX revocations_expires_at ON revocations (expires_at);
