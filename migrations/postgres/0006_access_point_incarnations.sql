-- ETags must never repeat for a name: `version` restarts at 1 when an access point is deleted
-- and created again, so a stale `If-Match: "1"` would match the new one (ABA). Each creation
-- gets a random `incarnation`, kept across updates; the ETag is `"<version>-<incarnation>"`.
-- Rows created by earlier releases get one here (new rows get theirs from presignd).
ALTER TABLE access_points ADD COLUMN incarnation TEXT NOT NULL DEFAULT '';
UPDATE access_points SET incarnation = substr(md5(random()::text || clock_timestamp()::text || name), 1, 16);
