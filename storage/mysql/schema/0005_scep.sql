-- PicoMDM MySQL schema, version 5: the built-in SCEP CA, its one-time
-- challenges and the certificates it issued (issue #14; scep.go).
--
-- Times are DATETIME(6) in UTC, written from the times the callers pass
-- (truncated to microseconds, sqlstore.DBTime); NULL is "not set". Every
-- statement is a CREATE TABLE IF NOT EXISTS with its indexes inside, so a
-- re-run after a crash half-way through is harmless.
--
-- Private keys (scep_ca.key_pem here, push_certs.key_pem of version 1)
-- are stored sealed when a storage key is configured (-storage-key,
-- package storage/keyseal): a sealed key is text about 1.4 times the PEM
-- plus 60 bytes, so a BLOB (64 KiB) holds any key a PEM BLOB held.

-- scep_ca: the CA every replica issues from (DESIGN §6), one row named
-- 'default'. StoreSCEPCA without replace is a plain INSERT, so of two
-- replicas creating a CA at once the second fails on the primary key and
-- reads the first's.
-- Read by: RetrieveSCEPCA, StoreSCEPCA, SealPrivateKeys (PRIMARY).
CREATE TABLE IF NOT EXISTS scep_ca (
    name       VARBINARY(32) NOT NULL,
    cert_pem   BLOB          NOT NULL,
    key_pem    BLOB          NOT NULL,
    created_at DATETIME(6)   NOT NULL,
    updated_at DATETIME(6)   NOT NULL,
    PRIMARY KEY (name)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

-- scep_challenges: one-time challenge passwords, stored as their SHA-256
-- (hash, lower-case hex) only.
--   used_at     when a certificate was issued for it (NULL: unused)
--   revoked_at  when an operator revoked it (NULL: not revoked)
-- Read by: RetrieveSCEPChallenge, RevokeSCEPChallenge (PRIMARY);
-- ListSCEPChallenges (PRIMARY range, id order); StoreSCEPCert's
-- consumption of a challenge (scep_challenges_hash);
-- PurgeSCEPChallenges (scep_challenges_unused_expires: the range
-- used_at IS NULL, expires_at < ?, in expires_at then id order, so it
-- never walks the used challenges, which are kept).
CREATE TABLE IF NOT EXISTS scep_challenges (
    id         VARBINARY(64) NOT NULL,
    hash       VARBINARY(64) NOT NULL,
    note       VARCHAR(255)  NOT NULL,
    created_at DATETIME(6)   NOT NULL,
    expires_at DATETIME(6)   NOT NULL,
    used_at    DATETIME(6)   NULL,
    revoked_at DATETIME(6)   NULL,
    PRIMARY KEY (id),
    UNIQUE KEY scep_challenges_hash (hash),
    KEY scep_challenges_unused_expires (used_at, expires_at)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

-- scep_certs: the certificates the CA issued, by serial (lower-case hex,
-- which sorts in issue order).
--   cert_hash     lower-case hex SHA-256 of der, as cert-auth knows it
--   challenge_id  the one-time challenge it was issued for (NULL: the
--                 static challenge)
-- Read by: RetrieveSCEPCert (PRIMARY); ListSCEPCerts (PRIMARY range,
-- serial order); lookups by certificate (scep_certs_hash).
CREATE TABLE IF NOT EXISTS scep_certs (
    serial       VARBINARY(64)  NOT NULL,
    subject      VARCHAR(1024)  NOT NULL,
    cert_hash    VARBINARY(64)  NOT NULL,
    not_before   DATETIME(6)    NOT NULL,
    not_after    DATETIME(6)    NOT NULL,
    issued_at    DATETIME(6)    NOT NULL,
    challenge_id VARBINARY(64)  NULL,
    der          BLOB           NOT NULL,
    PRIMARY KEY (serial),
    KEY scep_certs_hash (cert_hash)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;
