-- PicoMDM PostgreSQL schema, version 1 (PostgreSQL 13+).
--
-- Applied by sqlstore.Migrate under a PostgreSQL advisory lock, one
-- statement at a time. Every statement is idempotent (IF NOT EXISTS), so a
-- migration interrupted half-way is simply run again.
--
-- Design, in short (DESIGN.md §2 and §6):
--
--   * The command queue holds PENDING rows only. A final answer moves the
--     row out of command_queue and into command_results in one statement,
--     so finding an enrollment's next command is one index probe on
--     command_queue_next whose cost does not depend on how many commands
--     the enrollment answered before.
--   * FIFO is by command_queue.seq, an identity column: strict enqueue
--     order, never a timestamp (two enqueues can share a clock tick).
--   * No foreign keys between the queue, the results and the commands.
--     A foreign key from command_results to commands would take a
--     FOR KEY SHARE lock on the shared command row for every answer: 1,000
--     devices acknowledging one multi-target command would all lock (and
--     create multixacts on) that one hot row. Integrity is kept by the
--     statements instead: a command row is written in the same statement
--     as its queue rows and only purged when nothing refers to it.
--   * Identifiers (enrollment IDs, CommandUUIDs, topics, hashes) are opaque
--     byte strings to us: they use the "C" collation, so they compare
--     byte-wise (fast, case-sensitive, independent of the server locale).
--   * Raw Apple messages and commands are BYTEA: delivered byte-exact.
--   * Time stamps are TIMESTAMPTZ, written with now() by the database so
--     that replicas with skewed clocks agree.
--
-- Lines are split into statements at a ";" ending a line, so comments in
-- this file never end in a semicolon.


-- devices: one row per device channel (UDID, or EnrollmentID for a User
-- Enrollment), written by Authenticate. Also holds what belongs to the
-- device rather than to a channel: the unlock token (sent in the device
-- channel's first TokenUpdate) and the escrowed bootstrap token. A
-- TokenUpdate or SetBootstrapToken for a device that never authenticated
-- (a migrated one) creates the row with the other columns NULL.
CREATE TABLE IF NOT EXISTS devices (
    id                      TEXT COLLATE "C" NOT NULL PRIMARY KEY,
    serial_number           TEXT,
    identity_cert           BYTEA,
    identity_cert_not_after TIMESTAMPTZ,
    authenticate            BYTEA,
    authenticated_at        TIMESTAMPTZ,
    unlock_token            BYTEA,
    unlock_token_at         TIMESTAMPTZ,
    bootstrap_token         BYTEA,
    bootstrap_token_at      TIMESTAMPTZ,
    created_at              TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at              TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- Operators look devices up by serial number (inspection API); never on
-- the request path, written only by Authenticate.
CREATE INDEX IF NOT EXISTS devices_serial_number ON devices (serial_number);


-- enrollments: one row per MDM channel (device channel or user channel),
-- created by its first TokenUpdate. A channel is "known" (can be queued
-- to) from then on, even while disabled.
--   device_id   the device channel's ID: the row's own ID for a device
--               channel, its parent's for a user channel
--   parent_id   NULL for device channels
--   token_update_tally  TokenUpdates since created, re-enrolled or checked
--               out (1 on the first)
--   token_update        the raw latest TokenUpdate (migration replays it)
--   last_seen_at        refreshed at most once a minute per enrollment
--   push_token_valid    FALSE once APNs refused the token for good
--                       (push_token_invalid_reason, _at say why and
--                       when), TRUE again at the next TokenUpdate
-- fillfactor 90 leaves room on each page so that the frequent updates of
-- non-indexed columns (last_seen_at, push info, tally) stay HOT updates.
CREATE TABLE IF NOT EXISTS enrollments (
    id                        TEXT COLLATE "C" NOT NULL PRIMARY KEY,
    device_id                 TEXT COLLATE "C" NOT NULL,
    type                      TEXT NOT NULL,
    parent_id                 TEXT COLLATE "C",
    topic                     TEXT NOT NULL,
    push_magic                TEXT NOT NULL,
    token                     BYTEA NOT NULL,
    push_token_valid          BOOLEAN NOT NULL DEFAULT TRUE,
    push_token_invalid_reason TEXT,
    push_token_invalid_at     TIMESTAMPTZ,
    enabled                   BOOLEAN NOT NULL DEFAULT TRUE,
    token_update_tally        INTEGER NOT NULL DEFAULT 1,
    token_update              BYTEA NOT NULL,
    identity_cert_not_after   TIMESTAMPTZ,
    enrolled_at               TIMESTAMPTZ NOT NULL DEFAULT now(),
    last_seen_at              TIMESTAMPTZ NOT NULL DEFAULT now(),
    created_at                TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at                TIMESTAMPTZ NOT NULL DEFAULT now()
) WITH (fillfactor = 90);

-- A device and all its channels: Authenticate (disable + clear queues),
-- CheckOut of a device channel, migration's user-channel lookup.
CREATE INDEX IF NOT EXISTS enrollments_device_id ON enrollments (device_id);


-- user_authenticate: the latest UserAuthenticate messages of a user
-- channel, the first one and the one carrying a DigestResponse.
CREATE TABLE IF NOT EXISTS user_authenticate (
    id                TEXT COLLATE "C" NOT NULL PRIMARY KEY,
    device_id         TEXT COLLATE "C" NOT NULL,
    first_message     BYTEA,
    first_message_at  TIMESTAMPTZ,
    digest_message    BYTEA,
    digest_message_at TIMESTAMPTZ
);


-- commands: every enqueued command once, however many targets: its
-- CommandUUID (globally unique: a second enqueue of it is refused), its
-- RequestType and the raw plist exactly as enqueued.
CREATE TABLE IF NOT EXISTS commands (
    command_uuid TEXT COLLATE "C" NOT NULL PRIMARY KEY,
    request_type TEXT NOT NULL,
    command      BYTEA NOT NULL,
    created_at   TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- The background purge walks old commands in (created_at, command_uuid)
-- order with a keyset cursor to drop those nothing refers to any more.
CREATE INDEX IF NOT EXISTS commands_created_at ON commands (created_at, command_uuid);


-- command_queue: the PENDING set only. One row per (enrollment, command)
-- not yet answered finally. A final answer deletes the row (and records
-- the result); Authenticate deletes the device's rows.
--   seq             strict FIFO order of enqueues (identity, never reused)
--   deferred        set by NotNow, cleared by the enrollment's next Idle:
--                   while set, the command is skipped (DESIGN.md §2)
--   not_now_count   NotNows so far, copied into the final result
-- The primary key is (command_uuid, id) rather than (id, command_uuid):
-- the same uniqueness, and with the CommandUUID first the one index serves
-- both the per-report lookup (command_uuid = $2 AND id = $1) and the
-- purge's "is this command still queued anywhere" probe, so the table
-- needs no separate command_uuid index.
-- Rows come and go constantly, so the table is vacuumed early (1% dead
-- rows or 1,000, instead of PostgreSQL's default 20%): dead index entries
-- of answered commands are what a queue table's lookups would otherwise
-- wade through.
CREATE TABLE IF NOT EXISTS command_queue (
    id              TEXT COLLATE "C" NOT NULL,
    command_uuid    TEXT COLLATE "C" NOT NULL,
    seq             BIGINT GENERATED ALWAYS AS IDENTITY,
    deferred        BOOLEAN NOT NULL DEFAULT FALSE,
    not_now_count   INTEGER NOT NULL DEFAULT 0,
    last_not_now_at TIMESTAMPTZ,
    queued_at       TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (command_uuid, id)
) WITH (
    fillfactor = 90,
    autovacuum_vacuum_scale_factor = 0.01,
    autovacuum_vacuum_threshold = 1000,
    autovacuum_vacuum_insert_scale_factor = 0.01
);

-- The hot path: an enrollment's next command (WHERE id = $1 AND NOT
-- deferred ORDER BY seq LIMIT 1), and Authenticate's clearing of a
-- device's queues.
CREATE INDEX IF NOT EXISTS command_queue_next ON command_queue (id, seq);

-- Idle (UPDATE ... WHERE id = $1 AND deferred): a tiny partial index, so
-- the most frequent report costs one probe of an index that holds only
-- the NotNow'd rows.
CREATE INDEX IF NOT EXISTS command_queue_deferred ON command_queue (id) WHERE deferred;


-- command_results: the last answer of an enrollment to a command. Final
-- answers move here from command_queue; an interim NotNow is recorded here
-- too (and replaced by the final answer). Kept for the retention option,
-- then purged in the background; not written at all with delete=1.
CREATE TABLE IF NOT EXISTS command_results (
    id            TEXT COLLATE "C" NOT NULL,
    command_uuid  TEXT COLLATE "C" NOT NULL,
    status        TEXT NOT NULL,
    result        BYTEA NOT NULL,
    not_now_count INTEGER NOT NULL DEFAULT 0,
    queued_at     TIMESTAMPTZ,
    answered_at   TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (id, command_uuid)
);

-- Retention purge: DELETE results with answered_at older than the cutoff,
-- in batches.
CREATE INDEX IF NOT EXISTS command_results_answered_at ON command_results (answered_at);

-- Purge of unreferenced commands: "does any result still refer to this
-- CommandUUID" (the primary key starts with the enrollment ID).
CREATE INDEX IF NOT EXISTS command_results_command_uuid ON command_results (command_uuid);


-- cert_auth_associations: identity-certificate hash (lower-case hex
-- SHA-256 of the DER) associated with a device-channel enrollment ID.
-- The primary key answers "is (id, hash) associated" and "does id have
-- any hash"; the sha256 index answers "is hash associated with anyone".
CREATE TABLE IF NOT EXISTS cert_auth_associations (
    id         TEXT COLLATE "C" NOT NULL,
    sha256     TEXT COLLATE "C" NOT NULL,
    not_after  TIMESTAMPTZ,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (id, sha256)
);

CREATE INDEX IF NOT EXISTS cert_auth_associations_sha256 ON cert_auth_associations (sha256);


-- push_certs: one APNs push certificate per topic. stale_token changes
-- whenever the certificate or key changes (it is derived from them), so
-- replicas caching a certificate can tell it was replaced.
CREATE TABLE IF NOT EXISTS push_certs (
    topic       TEXT COLLATE "C" NOT NULL PRIMARY KEY,
    cert_pem    BYTEA NOT NULL,
    key_pem     BYTEA NOT NULL,
    stale_token TEXT NOT NULL,
    not_after   TIMESTAMPTZ NOT NULL,
    updated_at  TIMESTAMPTZ NOT NULL DEFAULT now()
);
