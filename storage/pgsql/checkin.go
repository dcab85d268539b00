package pgsql

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/picomdm/picomdm/mdm"
	"github.com/picomdm/picomdm/storage"
)

// authenticateSQL stores the device and resets it for a fresh enrollment,
// atomically in one statement: upsert the device (bootstrap token
// cleared), disable its channels with their tallies reset, and delete
// their pending commands (NotNow'd ones included).
//
// With a cert-auth association ($6 hash, $7 expiry; NULL without one, as
// for migration) the hash is upserted first: on the unique
// cert_auth_associations_sha256_key it stays another enrollment's (no row
// comes back from assoc), and every other write is gated on ok, so a
// refused Authenticate writes nothing. A concurrent statement inserting
// the same hash waits on the index entry and then takes the conflict
// branch. The device's other certificates are retired (primary key
// prefix). The answer is ok: whether the Authenticate was stored.
//
// Indexes: devices primary key; enrollments_device_id (and the primary key
// for a user channel's own ID); command_queue_next for the deletes — the
// IDs are handed over as an array so the planner probes the index per
// channel instead of considering a scan of the whole queue.
const authenticateSQL = `
WITH assoc AS (
    INSERT INTO cert_auth_associations AS c (id, sha256, not_after)
    SELECT $1, $6, $7::timestamptz WHERE $6::text IS NOT NULL
    ON CONFLICT (sha256) DO UPDATE SET not_after = EXCLUDED.not_after, updated_at = now()
    WHERE c.id = EXCLUDED.id
    RETURNING 1
), ok AS (
    SELECT $6::text IS NULL OR EXISTS (SELECT 1 FROM assoc) AS ok
), retired AS (
    DELETE FROM cert_auth_associations
    WHERE id = $1 AND sha256 <> $6 AND EXISTS (SELECT 1 FROM assoc)
), device AS (
    INSERT INTO devices AS d (id, serial_number, identity_cert, identity_cert_not_after, authenticate, authenticated_at)
    SELECT $1, $2, $3::bytea, $4::timestamptz, $5::bytea, now() FROM ok WHERE ok.ok
    ON CONFLICT (id) DO UPDATE SET
        serial_number           = EXCLUDED.serial_number,
        identity_cert           = COALESCE(EXCLUDED.identity_cert, d.identity_cert),
        identity_cert_not_after = COALESCE(EXCLUDED.identity_cert_not_after, d.identity_cert_not_after),
        authenticate            = EXCLUDED.authenticate,
        authenticated_at        = EXCLUDED.authenticated_at,
        bootstrap_token         = NULL,
        bootstrap_token_at      = NULL,
        updated_at              = now()
), channels AS (
    UPDATE enrollments
    SET enabled = FALSE, token_update_tally = 0, last_seen_at = now(), updated_at = now()
    WHERE (device_id = $1 OR id = $1) AND (SELECT ok FROM ok)
    RETURNING id
), cleared AS (
    DELETE FROM command_queue WHERE id = ANY (ARRAY(SELECT id FROM channels))
)
SELECT ok FROM ok`

// StoreAuthenticate implements storage.CheckinStore.
func (s *Store) StoreAuthenticate(r *mdm.Request, msg *mdm.Authenticate) error {
	var certDER []byte
	var notAfter *time.Time
	if r.Certificate != nil {
		certDER = r.Certificate.Raw
		notAfter = &r.Certificate.NotAfter
	}
	ctx := r.Context
	var (
		hash         *string
		certNotAfter *time.Time
	)
	if a, ok := storage.CertAssociationFrom(ctx); ok {
		hash = &a.Hash
		if !a.NotAfter.IsZero() {
			certNotAfter = &a.NotAfter
		}
	}
	var stored bool
	err := s.queryRow(ctx, authenticateSQL, []any{r.ID, msg.SerialNumber, certDER, notAfter, msg.RawBytes(), hash, certNotAfter}, &stored)
	if err != nil {
		return fmt.Errorf("storing Authenticate of %q: %w", r.ID, err)
	}
	if !stored {
		return fmt.Errorf("storing Authenticate of %q: %w", r.ID, storage.ErrCertHashInUse)
	}
	s.seen.Done(r.ID, time.Now()) // the statement refreshed last_seen_at
	return nil
}

// tokenUpdateSQL creates or re-enables the channel with its push info and
// counts the TokenUpdate, and, when the device channel's message carries
// an UnlockToken ($10), stores it with the device (devices only get one
// in their first TokenUpdate, so it must not be overwritten by NULL).
// Concurrent TokenUpdates of one channel serialise on its row lock, so no
// increment is lost. Indexes: enrollments and devices primary keys.
const tokenUpdateSQL = `
WITH enrollment AS (
    INSERT INTO enrollments AS e (id, device_id, type, parent_id, topic, push_magic, token, token_update, identity_cert_not_after)
    VALUES ($1, $2, $3, $4, $5, $6, $7::bytea, $8::bytea, $9::timestamptz)
    ON CONFLICT (id) DO UPDATE SET
        topic                     = EXCLUDED.topic,
        push_magic                = EXCLUDED.push_magic,
        token                     = EXCLUDED.token,
        push_token_valid          = TRUE,
        push_token_invalid_reason = NULL,
        push_token_invalid_at     = NULL,
        token_update              = EXCLUDED.token_update,
        identity_cert_not_after   = COALESCE(EXCLUDED.identity_cert_not_after, e.identity_cert_not_after),
        token_update_tally        = e.token_update_tally + 1,
        enrolled_at               = CASE WHEN e.enabled THEN e.enrolled_at ELSE now() END,
        enabled                   = TRUE,
        last_seen_at              = now(),
        updated_at                = now()
)
INSERT INTO devices AS d (id, unlock_token, unlock_token_at)
SELECT $2, $10::bytea, now() WHERE $10::bytea IS NOT NULL
ON CONFLICT (id) DO UPDATE SET
    unlock_token    = EXCLUDED.unlock_token,
    unlock_token_at = EXCLUDED.unlock_token_at,
    updated_at      = now()`

// StoreTokenUpdate implements storage.CheckinStore.
func (s *Store) StoreTokenUpdate(r *mdm.Request, msg *mdm.TokenUpdate) error {
	var parentID *string
	if r.ParentID != "" {
		parentID = &r.ParentID
	}
	var notAfter *time.Time
	if r.Certificate != nil {
		notAfter = &r.Certificate.NotAfter
	}
	// The UnlockToken belongs to the device; a user channel never has one.
	var unlockToken []byte
	if len(msg.UnlockToken) > 0 && !r.Type.IsUserChannel() {
		unlockToken = msg.UnlockToken
	}
	token := msg.Token
	if token == nil {
		token = []byte{} // NOT NULL column; "no token" is the empty token
	}
	ctx := r.Context
	err := s.exec(ctx, tokenUpdateSQL,
		r.ID, r.DeviceID(), string(r.Type), parentID,
		msg.Topic, msg.PushMagic, token, msg.RawBytes(), notAfter,
		unlockToken)
	if err != nil {
		return fmt.Errorf("storing TokenUpdate of %q: %w", r.ID, err)
	}
	s.seen.Done(r.ID, time.Now())
	return nil
}

// The two UserAuthenticate messages of an exchange are kept side by side.
// Index: user_authenticate primary key.
const (
	storeUserAuthenticateSQL = `
INSERT INTO user_authenticate (id, device_id, first_message, first_message_at)
VALUES ($1, $2, $3::bytea, now())
ON CONFLICT (id) DO UPDATE SET
    device_id        = EXCLUDED.device_id,
    first_message    = EXCLUDED.first_message,
    first_message_at = EXCLUDED.first_message_at`
	storeUserAuthenticateDigestSQL = `
INSERT INTO user_authenticate (id, device_id, digest_message, digest_message_at)
VALUES ($1, $2, $3::bytea, now())
ON CONFLICT (id) DO UPDATE SET
    device_id         = EXCLUDED.device_id,
    digest_message    = EXCLUDED.digest_message,
    digest_message_at = EXCLUDED.digest_message_at`
)

// StoreUserAuthenticate implements storage.CheckinStore. It does not make
// the user channel a known enrollment; its TokenUpdate does.
func (s *Store) StoreUserAuthenticate(r *mdm.Request, msg *mdm.UserAuthenticate) error {
	q := storeUserAuthenticateSQL
	if msg.DigestResponse != "" {
		q = storeUserAuthenticateDigestSQL
	}
	ctx := r.Context
	err := s.exec(ctx, q, r.ID, r.DeviceID(), msg.RawBytes())
	if err != nil {
		return fmt.Errorf("storing UserAuthenticate of %q: %w", r.ID, err)
	}
	return nil
}

// Disabling a device channel disables its user channels too; the tally
// restarts so the next enrollment's first TokenUpdate counts 1 again.
// Indexes: enrollments_device_id, or the primary key for a user channel.
const (
	disableDeviceSQL = `
UPDATE enrollments SET enabled = FALSE, token_update_tally = 0, updated_at = now()
WHERE device_id = $1`
	disableChannelSQL = `
UPDATE enrollments SET enabled = FALSE, token_update_tally = 0, updated_at = now()
WHERE id = $1`
)

// Disable implements storage.CheckinStore.
func (s *Store) Disable(r *mdm.Request) error {
	q := disableDeviceSQL
	if r.Type.IsUserChannel() {
		q = disableChannelSQL
	}
	ctx := r.Context
	err := s.exec(ctx, q, r.ID)
	if err != nil {
		return fmt.Errorf("disabling %q: %w", r.ID, err)
	}
	return nil
}

// tallySQL reads a tally. Index: enrollments primary key.
const tallySQL = `SELECT token_update_tally FROM enrollments WHERE id = $1`

// RetrieveTokenUpdateTally implements storage.TokenUpdateTallyStore.
func (s *Store) RetrieveTokenUpdateTally(ctx context.Context, id string) (int, error) {
	var tally int
	err := s.queryRow(ctx, tallySQL, []any{id}, &tally)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, fmt.Errorf("token update tally of %q: %w", id, storage.ErrNotFound)
	}
	if err != nil {
		return 0, fmt.Errorf("token update tally of %q: %w", id, err)
	}
	return tally, nil
}

// storeBootstrapTokenSQL escrows the token with the device, creating the
// row for a device that never authenticated (a migrated one) rather than
// failing its request. Index: devices primary key.
const storeBootstrapTokenSQL = `
INSERT INTO devices AS d (id, bootstrap_token, bootstrap_token_at)
VALUES ($1, $2::bytea, now())
ON CONFLICT (id) DO UPDATE SET
    bootstrap_token    = EXCLUDED.bootstrap_token,
    bootstrap_token_at = EXCLUDED.bootstrap_token_at,
    updated_at         = now()`

// StoreBootstrapToken implements storage.BootstrapTokenStore. A user
// channel's message stores its device's token.
func (s *Store) StoreBootstrapToken(r *mdm.Request, msg *mdm.SetBootstrapToken) error {
	token := msg.BootstrapToken
	if token == nil {
		token = []byte{}
	}
	ctx := r.Context
	err := s.exec(ctx, storeBootstrapTokenSQL, r.DeviceID(), token)
	if err != nil {
		return fmt.Errorf("storing bootstrap token of %q: %w", r.DeviceID(), err)
	}
	return nil
}

// retrieveBootstrapTokenSQL reads a device's token. Index: devices
// primary key.
const retrieveBootstrapTokenSQL = `SELECT bootstrap_token FROM devices WHERE id = $1`

// RetrieveBootstrapToken implements storage.BootstrapTokenStore.
func (s *Store) RetrieveBootstrapToken(r *mdm.Request, _ *mdm.GetBootstrapToken) (*mdm.BootstrapToken, error) {
	var token []byte
	err := s.queryRow(r.Context, retrieveBootstrapTokenSQL, []any{r.DeviceID()}, &token)
	if errors.Is(err, sql.ErrNoRows) || (err == nil && len(token) == 0) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("retrieving bootstrap token of %q: %w", r.DeviceID(), err)
	}
	return &mdm.BootstrapToken{BootstrapToken: token}, nil
}
