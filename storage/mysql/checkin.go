package mysql

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/picomdm/picomdm/mdm"
	"github.com/picomdm/picomdm/storage"
)

// Lock order: transactions that touch several tables take their rows in
// the order cert_auth_associations → devices → enrollments → queue →
// results, so two of them never wait for each other in a cycle.

// reqCtx returns r's context.
func reqCtx(r *mdm.Request) context.Context {
	if r.Context != nil {
		return r.Context
	}
	return context.Background()
}

// channelsWhere returns the condition that selects the enrollments an
// Authenticate or CheckOut of r acts on — r's channel and, for a device
// channel, its user channels — and its argument. Both forms use an index:
// enrollments_device or PRIMARY.
func channelsWhere(r *mdm.Request) (string, string) {
	if r.Type.IsUserChannel() {
		return "e.id = ?", r.ID
	}
	return "e.device_id = ?", r.ID
}

// certFields returns the identity certificate's DER and NotAfter as query
// arguments (NULL for a request without one, such as a migration).
func certFields(r *mdm.Request) (der []byte, notAfter any) {
	if r.Certificate == nil {
		return nil, nil
	}
	return r.Certificate.Raw, r.Certificate.NotAfter.UTC()
}

// notNil returns b, or an empty slice for nil: the driver sends nil as
// NULL, which NOT NULL columns refuse.
func notNil(b []byte) []byte {
	if b == nil {
		return []byte{}
	}
	return b
}

// exec runs one autocommit statement, retried on deadlock.
func (s *Store) exec(ctx context.Context, query string, args ...any) (sql.Result, error) {
	var res sql.Result
	err := s.retry(ctx, func() error {
		var err error
		res, err = s.db.ExecContext(ctx, query, args...)
		return err
	})
	return res, err
}

// StoreAuthenticate implements storage.CheckinStore: one transaction
// stores the device and resets its channels (disabled, tally 0, pending
// queues emptied; results are history and stay until purged).
func (s *Store) StoreAuthenticate(r *mdm.Request, msg *mdm.Authenticate) error {
	ctx := reqCtx(r)
	der, notAfter := certFields(r)
	where, arg := channelsWhere(r)
	// The cert-auth association comes first, so a refusal stops the
	// transaction before anything else is written.
	stmts := certAssociationStatements(r)
	stmts = append(stmts,
		// PRIMARY.
		statement{"storing device", `INSERT INTO devices
	(id, serial_number, identity_cert, identity_cert_not_after, authenticate, authenticated_at)
VALUES (?, ?, ?, ?, ?, UTC_TIMESTAMP(6))
ON DUPLICATE KEY UPDATE
	serial_number = ?, identity_cert = ?, identity_cert_not_after = ?,
	authenticate = ?, authenticated_at = UTC_TIMESTAMP(6),
	bootstrap_token = NULL, bootstrap_token_at = NULL`, []any{
			r.ID, msg.SerialNumber, der, notAfter, msg.RawBytes(),
			msg.SerialNumber, der, notAfter, msg.RawBytes()}},
		// enrollments_device (or PRIMARY for a user channel).
		statement{"disabling channels", `UPDATE enrollments e
SET e.enabled = FALSE, e.token_update_tally = 0,
	e.last_seen_at = UTC_TIMESTAMP(6), e.updated_at = UTC_TIMESTAMP(6)
WHERE ` + where, []any{arg}},
		// enrollments_device, then queue_id_command by its id prefix.
		statement{"clearing queues", `DELETE q FROM queue q
JOIN enrollments e ON e.id = q.id
WHERE ` + where, []any{arg}},
	)
	if err := s.execTx(ctx, stmts...); err != nil {
		if isMySQLError(err, errDupEntry) {
			// Only the association's INSERT can collide: cert_auth_sha256
			// holds the hash for another enrollment.
			err = fmt.Errorf("%w (%w)", storage.ErrCertHashInUse, err)
		}
		return fmt.Errorf("storing Authenticate of %q: %w", r.ID, err)
	}
	return nil
}

// certAssociationStatements makes the cert-auth association r's context
// carries (none without one) as part of StoreAuthenticate's transaction:
// the device's earlier certificates are retired and the hash inserted,
// keeping its first association time if it was already the device's. The
// INSERT fails with a duplicate key on cert_auth_sha256 (unique) when
// another enrollment has the hash, and a concurrent Authenticate claiming
// the same hash waits on that key until the first commits, so exactly one
// wins. @picomdm_cert_at is per connection and set before every use.
func certAssociationStatements(r *mdm.Request) []statement {
	a, ok := storage.CertAssociationFrom(r.Context)
	if !ok {
		return nil
	}
	var na any
	if !a.NotAfter.IsZero() {
		na = a.NotAfter.UTC()
	}
	return []statement{
		// PRIMARY.
		{"reading cert association", `SET @picomdm_cert_at = (SELECT created_at FROM cert_auth_associations WHERE id = ? AND sha256 = ?)`, []any{r.ID, a.Hash}},
		// PRIMARY prefix.
		{"retiring certificates", `DELETE FROM cert_auth_associations WHERE id = ?`, []any{r.ID}},
		// PRIMARY, cert_auth_sha256 (unique).
		{"associating certificate", `INSERT INTO cert_auth_associations (id, sha256, not_after, created_at)
VALUES (?, ?, ?, COALESCE(@picomdm_cert_at, UTC_TIMESTAMP(6)))`, []any{r.ID, a.Hash, na}},
	}
}

// StoreTokenUpdate implements storage.CheckinStore: one upsert of the
// enrollment (PRIMARY), preceded in the same transaction by the device's
// UnlockToken when the message carries one (devices send it once).
func (s *Store) StoreTokenUpdate(r *mdm.Request, msg *mdm.TokenUpdate) error {
	ctx := reqCtx(r)
	_, notAfter := certFields(r)
	var parent any
	if r.ParentID != "" {
		parent = r.ParentID
	}
	// enrolled_at is assigned before enabled: MySQL evaluates the
	// assignments left to right, each seeing the ones before.
	upsert := statement{"upserting enrollment", `INSERT INTO enrollments
	(id, device_id, parent_id, type, topic, push_magic, token, push_token_valid,
	 enabled, token_update_tally, token_update, identity_cert_not_after,
	 enrolled_at, last_seen_at, updated_at)
VALUES (?, ?, ?, ?, ?, ?, ?, TRUE, TRUE, 1, ?, ?,
	UTC_TIMESTAMP(6), UTC_TIMESTAMP(6), UTC_TIMESTAMP(6))
ON DUPLICATE KEY UPDATE
	enrolled_at = IF(enabled, enrolled_at, UTC_TIMESTAMP(6)),
	topic = ?, push_magic = ?, token = ?, push_token_valid = TRUE, push_token_invalid_reason = NULL, push_token_invalid_at = NULL,
	enabled = TRUE, token_update_tally = token_update_tally + 1,
	token_update = ?, identity_cert_not_after = COALESCE(?, identity_cert_not_after),
	last_seen_at = UTC_TIMESTAMP(6), updated_at = UTC_TIMESTAMP(6)`, []any{
		r.ID, r.DeviceID(), parent, string(r.Type), msg.Topic, msg.PushMagic, notNil(msg.Token),
		notNil(msg.RawBytes()), notAfter,
		msg.Topic, msg.PushMagic, notNil(msg.Token), notNil(msg.RawBytes()), notAfter}}
	var err error
	// Apple sends the UnlockToken in the device channel's TokenUpdate
	// only; it belongs to the device.
	if len(msg.UnlockToken) > 0 && !r.Type.IsUserChannel() {
		err = s.execTx(ctx,
			// PRIMARY.
			statement{"storing UnlockToken", `INSERT INTO devices (id, unlock_token, unlock_token_at)
VALUES (?, ?, UTC_TIMESTAMP(6))
ON DUPLICATE KEY UPDATE unlock_token = ?, unlock_token_at = UTC_TIMESTAMP(6)`, []any{
				r.ID, msg.UnlockToken, msg.UnlockToken}},
			upsert)
	} else if _, err = s.exec(ctx, upsert.query, upsert.args...); err != nil {
		err = fmt.Errorf("%s: %w", upsert.what, err)
	}
	if err != nil {
		return fmt.Errorf("storing TokenUpdate of %q: %w", r.ID, err)
	}
	s.seen.Done(r.ID, time.Now())
	return nil
}

// StoreUserAuthenticate implements storage.CheckinStore. The first
// message of an exchange replaces the previous exchange; the one with the
// DigestResponse completes it. PRIMARY.
func (s *Store) StoreUserAuthenticate(r *mdm.Request, msg *mdm.UserAuthenticate) error {
	ctx := reqCtx(r)
	var err error
	if msg.DigestResponse == "" {
		_, err = s.exec(ctx, `INSERT INTO user_authenticate (id, first_message, first_at)
VALUES (?, ?, UTC_TIMESTAMP(6))
ON DUPLICATE KEY UPDATE first_message = ?, first_at = UTC_TIMESTAMP(6),
	digest_message = NULL, digest_at = NULL`,
			r.ID, msg.RawBytes(), msg.RawBytes())
	} else {
		_, err = s.exec(ctx, `INSERT INTO user_authenticate (id, digest_message, digest_at)
VALUES (?, ?, UTC_TIMESTAMP(6))
ON DUPLICATE KEY UPDATE digest_message = ?, digest_at = UTC_TIMESTAMP(6)`,
			r.ID, msg.RawBytes(), msg.RawBytes())
	}
	if err != nil {
		return fmt.Errorf("storing UserAuthenticate of %q: %w", r.ID, err)
	}
	return nil
}

// Disable implements storage.CheckinStore. enrollments_device (or
// PRIMARY for a user channel).
func (s *Store) Disable(r *mdm.Request) error {
	where, arg := channelsWhere(r)
	_, err := s.exec(reqCtx(r), `UPDATE enrollments e
SET e.enabled = FALSE, e.token_update_tally = 0, e.updated_at = UTC_TIMESTAMP(6)
WHERE `+where, arg)
	if err != nil {
		return fmt.Errorf("disabling %q: %w", r.ID, err)
	}
	return nil
}

// RetrieveTokenUpdateTally implements storage.TokenUpdateTallyStore.
// PRIMARY.
func (s *Store) RetrieveTokenUpdateTally(ctx context.Context, id string) (int, error) {
	var tally int
	err := s.db.QueryRowContext(ctx, "SELECT token_update_tally FROM enrollments WHERE id = ?", id).Scan(&tally)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return 0, fmt.Errorf("token update tally of %q: %w", id, storage.ErrNotFound)
	case err != nil:
		return 0, fmt.Errorf("token update tally of %q: %w", id, err)
	}
	return tally, nil
}

// StoreBootstrapToken implements storage.BootstrapTokenStore. The token
// belongs to the device channel; a device that never authenticated (only
// possible out of order) gets a row rather than failing the request.
// PRIMARY.
func (s *Store) StoreBootstrapToken(r *mdm.Request, msg *mdm.SetBootstrapToken) error {
	_, err := s.exec(reqCtx(r), `INSERT INTO devices (id, bootstrap_token, bootstrap_token_at)
VALUES (?, ?, UTC_TIMESTAMP(6))
ON DUPLICATE KEY UPDATE bootstrap_token = ?, bootstrap_token_at = UTC_TIMESTAMP(6)`,
		r.DeviceID(), msg.BootstrapToken, msg.BootstrapToken)
	if err != nil {
		return fmt.Errorf("storing bootstrap token of %q: %w", r.DeviceID(), err)
	}
	return nil
}

// RetrieveBootstrapToken implements storage.BootstrapTokenStore. PRIMARY.
func (s *Store) RetrieveBootstrapToken(r *mdm.Request, _ *mdm.GetBootstrapToken) (*mdm.BootstrapToken, error) {
	var token []byte
	err := s.db.QueryRowContext(reqCtx(r), "SELECT bootstrap_token FROM devices WHERE id = ?", r.DeviceID()).Scan(&token)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return nil, nil
	case err != nil:
		return nil, fmt.Errorf("retrieving bootstrap token of %q: %w", r.DeviceID(), err)
	case len(token) == 0:
		return nil, nil
	}
	return &mdm.BootstrapToken{BootstrapToken: token}, nil
}
