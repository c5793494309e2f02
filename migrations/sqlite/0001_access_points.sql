-- Access points: one row per name; `spec` is the admin API's JSON document.
CREATE TABLE access_points (
    name       TEXT    NOT NULL CONSTRAINT access_points_pkey PRIMARY KEY,
    spec       TEXT    NOT NULL CONSTRAINT access_points_spec_is_json CHECK (json_valid(spec)),
    version    INTEGER NOT NULL DEFAULT 1 CONSTRAINT access_points_version_positive CHECK (version >= 1),
    updated_at TEXT    NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
) STRICT;
