-- PicoMDM PostgreSQL schema, version 5: the built-in SCEP CA, its one-time
-- challenges and the certificates it issued (issue #14, scep.go).
--
-- Times come from the callers (the SCEP service takes "now" explicitly),
-- except the CA's created_at/updated_at, which record when the row was
-- written. Private keys (scep_ca.key_pem, push_certs.key_pem) are stored
-- sealed when a storage key is configured (storage/keyseal): text of about
-- 1.4 times the PEM, which BYTEA holds whatever its size.
-- Every statement is IF NOT EXISTS: an interrupted migration is simply
-- run again.


-- scep_ca: the CA every replica issues from (DESIGN §6), one row named
-- 'default'. Created once with INSERT ... ON CONFLICT DO NOTHING, so of
-- two replicas creating it at their first start exactly one wins.
CREATE TABLE IF NOT EXISTS scep_ca (
    name       TEXT COLLATE "C" NOT NULL PRIMARY KEY CHECK (name = 'default'),
    cert_pem   BYTEA NOT NULL,
    key_pem    BYTEA NOT NULL,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at TIMESTAMPTZ NOT NULL DEFAULT now()
);


-- scep_challenges: one-time challenge passwords minted through the API.
--   id     the API's name for it; IDs sort in creation order, so the
--          primary key serves ListSCEPChallenges' keyset pages
--   hash   hex SHA-256 of the password (never the password itself); its
--          unique index serves StoreSCEPCert's consuming UPDATE
--   used_at, revoked_at  NULL: not used, not revoked
CREATE TABLE IF NOT EXISTS scep_challenges (
    id         TEXT COLLATE "C" NOT NULL PRIMARY KEY,
    hash       TEXT COLLATE "C" NOT NULL UNIQUE,
    note       TEXT NOT NULL DEFAULT '',
    created_at TIMESTAMPTZ NOT NULL,
    expires_at TIMESTAMPTZ NOT NULL,
    used_at    TIMESTAMPTZ,
    revoked_at TIMESTAMPTZ
);

-- PurgeSCEPChallenges: the unused challenges in expiry order (then id),
-- so the purge reads the expired ones oldest first and stops at its
-- limit; partial, so the used challenges, which are kept, are not in it.
CREATE INDEX IF NOT EXISTS scep_challenges_unused_expires
    ON scep_challenges (expires_at, id) WHERE used_at IS NULL;


-- scep_certs: the certificates the CA issued. Serials sort in issue order,
-- so the primary key serves ListSCEPCerts' keyset pages.
--   cert_hash     hex SHA-256 of the DER, what cert-auth associates
--   challenge_id  the one-time challenge it consumed; NULL for the static
--                 challenge
CREATE TABLE IF NOT EXISTS scep_certs (
    serial       TEXT COLLATE "C" NOT NULL PRIMARY KEY,
    subject      TEXT NOT NULL,
    cert_hash    TEXT COLLATE "C" NOT NULL,
    not_before   TIMESTAMPTZ NOT NULL,
    not_after    TIMESTAMPTZ NOT NULL,
    issued_at    TIMESTAMPTZ NOT NULL,
    challenge_id TEXT COLLATE "C",
    der          BYTEA NOT NULL
);

-- Finding the issued certificate of a certificate hash (cert-auth, the
-- API).
CREATE INDEX IF NOT EXISTS scep_certs_cert_hash ON scep_certs (cert_hash);
