-- PicoMDM PostgreSQL schema, version 3: identities (issue "Trust").
--
-- An identity certificate belongs to at most one device channel. The
-- unique index makes the database itself refuse a second owner, so the
-- association is made inside StoreAuthenticate's statement (checkin.go)
-- with no race: a concurrent Authenticate claiming the same hash waits on
-- the index entry and then sees the first one's. Rows that already share
-- a hash (data migrated in) keep the lowest ID, the one
-- EnrollmentFromCertHash answered with anyway.
DELETE FROM cert_auth_associations a
USING cert_auth_associations b
WHERE a.sha256 = b.sha256 AND a.id > b.id;

DROP INDEX IF EXISTS cert_auth_associations_sha256;

CREATE UNIQUE INDEX IF NOT EXISTS cert_auth_associations_sha256_key ON cert_auth_associations (sha256);
