-- PicoMDM PostgreSQL schema, version 2: indexes of the inspection API
-- (inspect.go).
--
-- A command's per-enrollment states are listed in enrollment-ID order with
-- a keyset cursor: WHERE command_uuid = $1 AND id > $2 ORDER BY id LIMIT n.
-- The pending branch reads the command_queue primary key (command_uuid,
-- id); the answered branch needs the same order on command_results, whose
-- primary key starts with the enrollment ID.
CREATE INDEX IF NOT EXISTS command_results_command_id ON command_results (command_uuid, id);
