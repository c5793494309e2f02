-- Token revocations. `kind` 'subject': tokens of `value` (a `sub`) issued before `not_before`
-- are refused; 'token': the token whose `jti` is `value` is refused. `issuer` '' means any
-- issuer. Times are Unix seconds. A row is useless once `expires_at` has passed (no token it
-- covers can still be valid) and is then purged.
CREATE TABLE revocations (
    kind       TEXT        NOT NULL CONSTRAINT revocations_kind CHECK (kind IN ('subject', 'token')),
    issuer     TEXT        NOT NULL DEFAULT '',
    value      TEXT        NOT NULL CONSTRAINT revocations_value_not_empty CHECK (value <> ''),
    not_before BIGINT      NOT NULL,
    expires_at BIGINT      NOT NULL,
    created_by TEXT        NOT NULL,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    CONSTRAINT revocations_pkey PRIMARY KEY (kind, issuer, value),
    CONSTRAINT revocations_expires_after_not_before CHECK (expires_at >= not_before)
);
CREATE INDEX revocations_expires_at ON revocations (expires_at);

-- Every instance LISTENs on `presignd_changes` and reloads the table named in the payload, so
-- a change made anywhere (admin API, `presignd apply`, plain SQL) reaches every instance as
-- soon as it commits. Notifications are delivered only on commit, and duplicates within one
-- transaction are folded into one.
CREATE FUNCTION presignd_notify_change() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('presignd_changes', TG_TABLE_NAME);
    RETURN NULL;
END
$$;

CREATE TRIGGER access_points_notify_change
    AFTER INSERT OR UPDATE OR DELETE ON access_points
    FOR EACH ROW EXECUTE FUNCTION presignd_notify_change();

CREATE TRIGGER revocations_notify_change
    AFTER INSERT OR UPDATE OR DELETE ON revocations
    FOR EACH ROW EXECUTE FUNCTION presignd_notify_change();
