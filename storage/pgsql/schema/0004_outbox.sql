-- PicoMDM PostgreSQL schema, version 4: the webhook outbox, leases and
-- push records (issue "Nothing lost, nothing stuck").
--
-- Times here come from the callers (the outbox, the leases and the
-- re-push sweep take "now" explicitly, so that every replica decides on
-- the values it was given and tests can drive them), not from now().
-- Every statement is IF NOT EXISTS: an interrupted migration is simply
-- run again.


-- outbox: webhook events (DESIGN.md §5), stored before the device gets its
-- answer and deleted once the receiver accepted them (outbox.go).
--   seq            the delivery order (store order), an identity column
--   id             the event_id, stable across redeliveries
--   state          'pending' (waiting for delivery, claimed or not) or
--                  'failed' (set aside: kept, not delivered)
--   next_attempt_at  NULL: due at once
--   claimed_by, claimed_until  the replica delivering it and until when;
--                  a claim whose time has passed is free to take again
-- Rows are deleted on delivery, so the table is vacuumed early, like
-- command_queue.
CREATE TABLE IF NOT EXISTS outbox (
    seq             BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    id              TEXT COLLATE "C" NOT NULL UNIQUE,
    enrollment_id   TEXT COLLATE "C" NOT NULL,
    topic           TEXT NOT NULL,
    body            BYTEA NOT NULL,
    created_at      TIMESTAMPTZ NOT NULL,
    state           TEXT NOT NULL,
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at TIMESTAMPTZ,
    last_error      TEXT NOT NULL DEFAULT '',
    claimed_by      TEXT COLLATE "C",
    claimed_until   TIMESTAMPTZ
) WITH (
    autovacuum_vacuum_scale_factor = 0.01,
    autovacuum_vacuum_threshold = 1000,
    autovacuum_vacuum_insert_scale_factor = 0.01
);

-- ListEvents, OutboxStats, TrimOutbox, ReleaseEvents and the claim's scan
-- of pending events: (state, seq) ranges, oldest first. The event ID's
-- unique index (outbox_id_key) serves the per-event updates.
CREATE INDEX IF NOT EXISTS outbox_state_seq ON outbox (state, seq);

-- The claim's head test: "has this enrollment an earlier pending event",
-- one probe of a partial index that holds pending events only.
CREATE INDEX IF NOT EXISTS outbox_pending_enrollment ON outbox (enrollment_id, seq) WHERE state = 'pending';


-- leases: named, expiring leases, so that a periodic job several replicas
-- run (the outbox trim, the re-push sweep, the purge) runs on one at a
-- time (lease.go). A lease is free once held_until has passed.
CREATE TABLE IF NOT EXISTS leases (
    name       TEXT COLLATE "C" NOT NULL PRIMARY KEY,
    owner      TEXT COLLATE "C" NOT NULL,
    held_until TIMESTAMPTZ NOT NULL
);


-- push_records: each enrollment's push history as the re-push sweep needs
-- it (repush.go): when APNs last accepted a push to it, how many re-pushes
-- the sweep sent since the last ordinary push, and when it may push again.
-- A table of its own rather than columns of enrollments, so that pushes
-- never rewrite the enrollment rows every device request reads (and do not
-- spend their HOT room). Written only for known enrollments; enrollments
-- are never deleted, so no row is left orphaned.
CREATE TABLE IF NOT EXISTS push_records (
    id             TEXT COLLATE "C" NOT NULL PRIMARY KEY,
    pushed_at      TIMESTAMPTZ NOT NULL,
    repushes       INTEGER NOT NULL DEFAULT 0,
    next_repush_at TIMESTAMPTZ NOT NULL
);

-- DueForRepush: records in next_repush_at order, up to now.
CREATE INDEX IF NOT EXISTS push_records_next ON push_records (next_repush_at);
