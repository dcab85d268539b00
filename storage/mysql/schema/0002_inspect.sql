-- PicoMDM MySQL schema, version 2: indexes of the inspection API
-- (inspect.go).
--
-- A command's per-enrollment states are listed in enrollment-ID order with
-- a keyset cursor: WHERE command_uuid = ? AND id > ? ORDER BY id LIMIT n.
-- queue_command is (command_uuid) and InnoDB appends the primary key (seq)
-- to it, not id, so the pending branch needs (command_uuid, id) to read a
-- page as one index range. The results branch gets (command_uuid, id) too:
-- results_command is (command_uuid) extended by the primary key, but
-- MariaDB 10.11 then preferred a PRIMARY range on id > cursor, which reads
-- every result of every later enrollment. inspect.go names both indexes in
-- FORCE INDEX hints, so the page is always read as one (command_uuid, id)
-- range. (queue_command and results_command are prefixes of the new
-- indexes and could be dropped by a later migration.)
--
-- The enqueue time shown for queued commands is commands.created_at (a
-- CommandUUID is enqueued exactly once, at that time), so the queue table
-- needs no time stamp column.
--
-- MySQL 8.0 has no ADD INDEX IF NOT EXISTS: a re-run meets a duplicate key
-- name error, which the dialect's AlreadyApplied treats as applied.
ALTER TABLE queue ADD KEY queue_command_id (command_uuid, id);

ALTER TABLE results ADD KEY results_command_id (command_uuid, id);
