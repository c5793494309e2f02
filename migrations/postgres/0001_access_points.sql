-- Access points: one row per name; `spec` is the admin API's JSON document.
CREATE TABLE access_points (
    name       TEXT        NOT NULL CONSTRAINT access_points_pkey PRIMARY KEY
                           CONSTRAINT access_points_name_format CHECK (name ~ '^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$'),
    spec       JSONB       NOT NULL,
    version    BIGINT      NOT NULL DEFAULT 1 CONSTRAINT access_points_version_positive CHECK (version >= 1),
    updated_at TIMESTAMPTZ NOT NULL DEFAULT now()
);
