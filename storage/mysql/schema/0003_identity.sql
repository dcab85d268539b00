-- PicoMDM MySQL schema, version 3: identities (issue "Trust").
--
-- An identity certificate belongs to at most one device channel. Cert-auth
-- refused a hash already associated with another enrollment before, but
-- the check and the insert were two statements; the unique key makes the
-- database itself refuse the second owner, so the association can be made
-- inside StoreAuthenticate's transaction (checkin.go) with no race. Rows
-- that already share a hash (data migrated in) keep the lowest ID, the one
-- EnrollmentFromCertHash answered with anyway.
--
-- Enrollment IDs are validated where they are parsed: each part (UDID,
-- UserID, …, EnrollmentUserID) at most 255 bytes, so a user channel's
-- "part:part" is at most 511; a CommandUUID at most 255. The columns are
-- widened so that every ID the server accepts can be stored.
--
-- Each statement is safe to run again after a crash half-way through.
DELETE a FROM cert_auth_associations a
JOIN cert_auth_associations b ON a.sha256 = b.sha256 AND a.id > b.id;

ALTER TABLE cert_auth_associations DROP KEY cert_auth_sha256, ADD UNIQUE KEY cert_auth_sha256 (sha256);

ALTER TABLE enrollments MODIFY id VARBINARY(511) NOT NULL;

ALTER TABLE queue MODIFY id VARBINARY(511) NOT NULL, MODIFY command_uuid VARBINARY(255) NOT NULL;

ALTER TABLE results MODIFY id VARBINARY(511) NOT NULL, MODIFY command_uuid VARBINARY(255) NOT NULL;

ALTER TABLE commands MODIFY command_uuid VARBINARY(255) NOT NULL;

ALTER TABLE user_authenticate MODIFY id VARBINARY(511) NOT NULL;
