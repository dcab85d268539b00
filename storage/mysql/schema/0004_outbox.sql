-- PicoMDM MySQL schema, version 4: the webhook outbox, leases and push
-- records (issue "Nothing lost, nothing stuck").
--
-- Times here are written from the times the callers pass (the outbox, the
-- leases and the re-push sweep take "now" explicitly, so that every
-- replica's decision is made on the values it was given and tests can
-- drive them), in UTC. Every statement is a CREATE TABLE IF NOT EXISTS
-- with its indexes inside, so a re-run after a crash half-way through is
-- harmless.

-- outbox: webhook events (DESIGN.md §5), stored before the device gets its
-- answer and deleted once the receiver accepted them (outbox.go).
--   seq            the delivery order (store order)
--   id             the event_id, stable across redeliveries
--   state          'pending' (waiting for delivery, claimed or not) or
--                  'failed' (set aside: kept, not delivered)
--   next_attempt_at  NULL: due at once
--   claimed_by, claimed_until  the replica delivering it and until when;
--                  a claim whose time has passed is free to take again
-- Read by:
--   ClaimEvents: the pending events in seq order (outbox_state), each
--     probed for an earlier pending event of its enrollment
--     (outbox_enrollment: (enrollment_id, state, seq) ranges), then
--     locked by PRIMARY.
--   CompleteEvent, RetryEvent, SetAsideEvent, RedeliverEvent, DropEvent:
--     outbox_id.
--   ListEvents, OutboxStats, TrimOutbox, ReleaseEvents: outbox_state
--     ranges (state, seq), oldest first.
CREATE TABLE IF NOT EXISTS outbox (
    seq             BIGINT UNSIGNED NOT NULL AUTO_INCREMENT,
    id              VARBINARY(255)  NOT NULL,
    enrollment_id   VARBINARY(511)  NOT NULL,
    topic           VARCHAR(255)    NOT NULL,
    body            MEDIUMBLOB      NOT NULL,
    created_at      DATETIME(6)     NOT NULL,
    state           VARCHAR(15)     NOT NULL,
    attempts        INT UNSIGNED    NOT NULL DEFAULT 0,
    next_attempt_at DATETIME(6)     NULL,
    last_error      TEXT            NOT NULL,
    claimed_by      VARBINARY(255)  NULL,
    claimed_until   DATETIME(6)     NULL,
    PRIMARY KEY (seq),
    UNIQUE KEY outbox_id (id),
    KEY outbox_state (state, seq),
    KEY outbox_enrollment (enrollment_id, state, seq)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

-- leases: named, expiring leases, so that a periodic job several replicas
-- run (the outbox trim, the re-push sweep, the purge) runs on one at a
-- time (lease.go). A lease is free once held_until has passed. Read by:
-- AcquireLease and ReleaseLease (PRIMARY).
CREATE TABLE IF NOT EXISTS leases (
    name       VARBINARY(255) NOT NULL,
    owner      VARBINARY(255) NOT NULL,
    held_until DATETIME(6)    NOT NULL,
    PRIMARY KEY (name)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

-- push_records: each enrollment's push history as the re-push sweep needs
-- it (repush.go): when APNs last accepted a push to it, how many re-pushes
-- the sweep sent since the last ordinary push, and when it may push again.
-- A table of its own rather than columns of enrollments, so that pushes
-- never rewrite (and lock) the enrollment rows every device request reads.
-- Rows are written only for known enrollments; enrollments are never
-- deleted, so no row is left orphaned.
-- Read by: RecordPushes (PRIMARY upsert), DueForRepush (push_records_next,
-- oldest first, then enrollments by PRIMARY and a probe of queue_next).
CREATE TABLE IF NOT EXISTS push_records (
    id             VARBINARY(511) NOT NULL,
    pushed_at      DATETIME(6)    NOT NULL,
    repushes       INT UNSIGNED   NOT NULL DEFAULT 0,
    next_repush_at DATETIME(6)    NOT NULL,
    PRIMARY KEY (id),
    KEY push_records_next (next_repush_at)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;
