-- PicoMDM MySQL schema, version 1 (MySQL 8.0+, MariaDB 10.11+).
--
-- Applied by sqlstore.Migrate under GET_LOCK. DDL is not transactional in
-- MySQL, so every statement is safe to run again after a crash half-way
-- through (CREATE TABLE IF NOT EXISTS, indexes declared inside the CREATE:
-- MySQL 8.0 has no CREATE INDEX IF NOT EXISTS).
--
-- Identifiers (enrollment IDs, CommandUUIDs, topics, certificate hashes)
-- are VARBINARY: opaque byte strings compared exactly. A case-insensitive
-- or PAD SPACE collation would make "ABC" and "abc" (or "abc" and "abc ")
-- the same enrollment. Raw plists and certificates are BLOBs, stored and
-- returned byte for byte.
--
-- Times are DATETIME(6) in UTC, written by the server (UTC_TIMESTAMP(6)),
-- so every replica agrees on one clock for retention.
--
-- There are no foreign keys on purpose: an InnoDB foreign key makes every
-- queue insert take a shared lock on the parent command row, and 100,000
-- acknowledgements of one multi-target command would all touch that row.
-- The code keeps the references consistent instead (see enqueue.go and
-- purge.go).

-- devices: one row per device channel (UDID, or EnrollmentID for a User
-- Enrollment), written by Authenticate and by the messages that carry
-- device-wide data (SetBootstrapToken, the UnlockToken of a TokenUpdate).
-- Read by: GetBootstrapToken (PRIMARY), migration (PRIMARY).
CREATE TABLE IF NOT EXISTS devices (
    id                      VARBINARY(255) NOT NULL,
    serial_number           VARCHAR(127)   NULL,
    identity_cert           BLOB           NULL,
    identity_cert_not_after DATETIME(6)    NULL,
    authenticate            MEDIUMBLOB     NULL,
    authenticated_at        DATETIME(6)    NULL,
    unlock_token            BLOB           NULL,
    unlock_token_at         DATETIME(6)    NULL,
    bootstrap_token         BLOB           NULL,
    bootstrap_token_at      DATETIME(6)    NULL,
    created_at              DATETIME(6)    NOT NULL DEFAULT CURRENT_TIMESTAMP(6),
    PRIMARY KEY (id),
    -- Operators look devices up by serial number (inspection API); no
    -- per-request query uses it.
    KEY devices_serial_number (serial_number)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

-- enrollments: one row per channel, created by its first TokenUpdate (an
-- enrollment is "known", and can be queued to, from then on). device_id
-- is the device channel's ID (the row's own ID for a device channel), so
-- that a device and its user channels are one index range.
-- Read by: enqueue and push info (PRIMARY, set-based IN lists), tally
-- (PRIMARY), Authenticate and CheckOut (enrollments_device), migration
-- (enrollments_device).
CREATE TABLE IF NOT EXISTS enrollments (
    id                      VARBINARY(255) NOT NULL,
    device_id               VARBINARY(255) NOT NULL,
    parent_id               VARBINARY(255) NULL,
    type                    VARCHAR(31)    NOT NULL,
    topic                   VARCHAR(255)   NOT NULL,
    push_magic              VARCHAR(127)   NOT NULL,
    token                   VARBINARY(255) NOT NULL,
    -- Cleared when APNs reports the token unregistered, set again by the
    -- next TokenUpdate.
    push_token_valid        BOOLEAN        NOT NULL DEFAULT TRUE,
    push_token_invalid_reason VARCHAR(63)  NULL,
    push_token_invalid_at   DATETIME(6)    NULL,
    enabled                 BOOLEAN        NOT NULL DEFAULT TRUE,
    -- TokenUpdates since the enrollment was created, re-enrolled or
    -- checked out (1 on the first).
    token_update_tally      INT UNSIGNED   NOT NULL DEFAULT 1,
    token_update            MEDIUMBLOB     NOT NULL,
    identity_cert_not_after DATETIME(6)    NULL,
    enrolled_at             DATETIME(6)    NOT NULL,
    -- Written at most about once a minute per enrollment (see
    -- sqlstore.Throttle), so that polling devices do not turn every request
    -- into a write of this row.
    last_seen_at            DATETIME(6)    NOT NULL,
    updated_at              DATETIME(6)    NOT NULL,
    PRIMARY KEY (id),
    KEY enrollments_device (device_id, id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

-- commands: a command's raw plist, stored once however many enrollments
-- it is queued to. Its row lives while any queue or results row names it;
-- purge.go removes it after that.
-- Read by: next command (PRIMARY, eq_ref join), enqueue duplicate check
-- (PRIMARY), purge (commands_created).
CREATE TABLE IF NOT EXISTS commands (
    command_uuid VARBINARY(127) NOT NULL,
    request_type VARCHAR(255)   NOT NULL,
    command      MEDIUMBLOB     NOT NULL,
    created_at   DATETIME(6)    NOT NULL,
    PRIMARY KEY (command_uuid),
    KEY commands_created (created_at)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

-- queue: the PENDING set only. A row is a command not yet finally
-- answered by one enrollment; a final answer deletes it (and writes a
-- results row in the same transaction), so the pending set of an
-- enrollment never grows with its history.
--
-- seq is the enqueue order: strict FIFO, never by time or UUID. One
-- multi-target enqueue inserts its rows in one multi-row INSERT, in the
-- order the IDs were given, so they get increasing seq values.
--
-- deferred is set by a NotNow and cleared by the enrollment's next Idle
-- (DESIGN.md §2): a deferred row is skipped by the next-command lookup.
--
-- The next-command lookup (queue.go)
--     SELECT c.command_uuid, c.request_type, c.command FROM commands c
--     WHERE c.command_uuid = (SELECT q.command_uuid FROM queue q
--         WHERE q.id = ? AND q.deferred = FALSE ORDER BY q.seq LIMIT 1)
-- reads the first entry of queue_next for (id, 0) — the index is ordered
-- by seq after that prefix and covers command_uuid, so no filesort and no
-- row lookup — then one commands row by PRIMARY. EXPLAIN (MariaDB 10.11):
--     PRIMARY   c  const  PRIMARY     key_len 129  rows 1
--     SUBQUERY  q  ref    queue_next  key_len 258  ref const,const
--                                     Using where; Using index
-- Its cost does not depend on how many commands the enrollment answered
-- before: answered commands are not in this table. (Their index entries
-- stay delete-marked until InnoDB's purge removes them, normally moments
-- after each answer.) Measured (BenchmarkNextCommandInterleaved): 10,
-- 10,000 and 100,000 answered commands give lookups within 6% of each
-- other.
--
-- queue_next is (id, deferred, seq) rather than (id, seq) so that the
-- lookup seeks straight past deferred rows, and Idle's
--     UPDATE queue SET deferred = 0 WHERE id = ? AND deferred = 1
-- touches (and locks) only the deferred rows.
CREATE TABLE IF NOT EXISTS queue (
    seq             BIGINT UNSIGNED NOT NULL AUTO_INCREMENT,
    id              VARBINARY(255)  NOT NULL,
    command_uuid    VARBINARY(127)  NOT NULL,
    deferred        BOOLEAN         NOT NULL DEFAULT FALSE,
    not_now_count   INT UNSIGNED    NOT NULL DEFAULT 0,
    last_not_now_at DATETIME(6)     NULL,
    PRIMARY KEY (seq),
    -- One row per (enrollment, command); reports find their row by it
    -- (DELETE/UPDATE ... WHERE id = ? AND command_uuid = ?), Authenticate
    -- clears an enrollment's rows by its id prefix.
    UNIQUE KEY queue_id_command (id, command_uuid),
    KEY queue_next (id, deferred, seq, command_uuid),
    -- Whether a command is still pending anywhere: delete=1 and purge.
    KEY queue_command (command_uuid)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

-- results: the last answer of each enrollment to each command: a NotNow
-- (while the command is still pending) or the final answer (after it
-- left the queue). Not written at all with delete=1.
-- Written by: reports (PRIMARY upsert). Read by: purge (results_answered
-- for retention, results_command for orphaned commands).
CREATE TABLE IF NOT EXISTS results (
    id              VARBINARY(255) NOT NULL,
    command_uuid    VARBINARY(127) NOT NULL,
    status          VARCHAR(255)   NOT NULL,
    result          MEDIUMBLOB     NOT NULL,
    not_now_count   INT UNSIGNED   NOT NULL DEFAULT 0,
    last_not_now_at DATETIME(6)    NULL,
    answered_at     DATETIME(6)    NOT NULL,
    PRIMARY KEY (id, command_uuid),
    KEY results_answered (answered_at),
    KEY results_command (command_uuid)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

-- cert_auth_associations: identity-certificate hashes (lower-case hex
-- SHA-256 of the DER) associated with device-channel enrollment IDs.
-- Read by: IsCertHashAssociated (PRIMARY), EnrollmentHasCertHash (PRIMARY
-- prefix), HasCertHash (cert_auth_sha256).
CREATE TABLE IF NOT EXISTS cert_auth_associations (
    id         VARBINARY(255) NOT NULL,
    sha256     VARBINARY(64)  NOT NULL,
    not_after  DATETIME(6)    NULL,
    created_at DATETIME(6)    NOT NULL,
    PRIMARY KEY (id, sha256),
    KEY cert_auth_sha256 (sha256)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

-- push_certs: one APNs push certificate per topic. stale_token is derived
-- from the certificate and key, so it changes exactly when they do, and
-- every replica that stores the same pair writes the same token.
-- Read by: RetrievePushCert and IsPushCertStale (PRIMARY).
CREATE TABLE IF NOT EXISTS push_certs (
    topic       VARBINARY(255) NOT NULL,
    cert_pem    BLOB           NOT NULL,
    key_pem     BLOB           NOT NULL,
    stale_token VARCHAR(64)    NOT NULL,
    not_after   DATETIME(6)    NULL,
    updated_at  DATETIME(6)    NOT NULL,
    PRIMARY KEY (topic)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

-- user_authenticate: a user channel's UserAuthenticate messages: the
-- first one and the one carrying the DigestResponse.
CREATE TABLE IF NOT EXISTS user_authenticate (
    id                VARBINARY(255) NOT NULL,
    first_message     MEDIUMBLOB     NULL,
    first_at          DATETIME(6)    NULL,
    digest_message    MEDIUMBLOB     NULL,
    digest_at         DATETIME(6)    NULL,
    PRIMARY KEY (id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;
