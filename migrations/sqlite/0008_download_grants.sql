-- Download grants (GET /g/{token}): revocable links good for `max_uses` downloads of one
-- object until `expires_at`. The token is the capability: only its SHA-256 is stored. Each
-- redemption is one conditional UPDATE (`uses < max_uses`, not revoked, not expired), so
-- the count is exact however many instances share the database. `groups` (a JSON array) and
-- `mfa` are the creator's, for the rules at redemption; `bucket` is the access point's target at
-- creation (a grant serves no more once it changes). Times are Unix seconds.
CREATE TABLE download_grants (
    grant_id                     TEXT    NOT NULL CONSTRAINT download_grants_pkey PRIMARY KEY,
    token_sha256                 TEXT    NOT NULL CONSTRAINT download_grants_token UNIQUE,
    access_point                 TEXT    NOT NULL,
    bucket                       TEXT    NOT NULL,
    request_key                  TEXT    NOT NULL,
    object_key                   TEXT    NOT NULL,
    issuer                       TEXT    NOT NULL,
    subject                      TEXT    NOT NULL,
    groups                       TEXT    NOT NULL,
    mfa                          INTEGER NOT NULL CONSTRAINT download_grants_mfa CHECK (mfa IN (0, 1)),
    response_content_disposition TEXT,
    max_uses                     INTEGER NOT NULL CONSTRAINT download_grants_max_uses CHECK (max_uses >= 1),
    uses                         INTEGER NOT NULL DEFAULT 0
        CONSTRAINT download_grants_uses CHECK (uses >= 0 AND uses <= max_uses),
    created_at                   INTEGER  NOT NULL,
    expires_at                   INTEGER  NOT NULL,
    revoked_at                   INTEGER
) STRICT;
CREATE INDEX download_grants_subject ON download_grants (subject, issuer);
CREATE INDEX download_grants_object ON download_grants (object_key);
CREATE INDEX download_grants_access_point ON download_grants (access_point);
