package pgsql

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/lib/pq"
	"github.com/lib/pq/pqerror"
	"github.com/picomdm/picomdm/storage"
	"github.com/picomdm/picomdm/storage/internal/sqlstore"
)

// The built-in SCEP CA's storage (storage.SCEPStore): the CA, its one-time
// challenges and the certificates it issued (schema/0005_scep.sql).

var _ storage.SCEPStore = (*Store)(nil)

// SCEP CA statements. Index: scep_ca primary key. Creating inserts nothing
// when the row exists (RETURNING then returns no row): of two replicas
// creating it at once, the loser sees that and reads the winner's.
const (
	retrieveSCEPCASQL = `SELECT cert_pem, key_pem FROM scep_ca WHERE name = $1`
	createSCEPCASQL   = `
INSERT INTO scep_ca (name, cert_pem, key_pem) VALUES ($1, $2::bytea, $3::bytea)
ON CONFLICT (name) DO NOTHING
RETURNING name`
	replaceSCEPCASQL = `
INSERT INTO scep_ca (name, cert_pem, key_pem) VALUES ($1, $2::bytea, $3::bytea)
ON CONFLICT (name) DO UPDATE SET
    cert_pem   = EXCLUDED.cert_pem,
    key_pem    = EXCLUDED.key_pem,
    updated_at = now()
RETURNING name`
)

// RetrieveSCEPCA implements storage.SCEPStore (retrieveSCEPCASQL): a key
// that does not open with the store's KeySealer is an error.
func (s *Store) RetrieveSCEPCA(ctx context.Context) (certPEM, keyPEM []byte, err error) {
	return sqlstore.RetrieveSCEPCA(s.row(ctx, retrieveSCEPCASQL, sqlstore.SCEPCAName), s.sealer)
}

// StoreSCEPCA implements storage.SCEPStore. The key is stored sealed by the
// store's KeySealer.
func (s *Store) StoreSCEPCA(ctx context.Context, certPEM, keyPEM []byte, replace bool) error {
	sealed, err := s.sealer.Seal(storage.SCEPCAKeyName, keyPEM)
	if err != nil {
		return fmt.Errorf("storing SCEP CA: sealing its key: %w", err)
	}
	query := createSCEPCASQL
	if replace {
		query = replaceSCEPCASQL
	}
	var name string
	err = s.queryRow(ctx, query, []any{sqlstore.SCEPCAName, certPEM, sealed}, &name)
	if errors.Is(err, sql.ErrNoRows) {
		return fmt.Errorf("storing SCEP CA: %w", storage.ErrExists)
	}
	if err != nil {
		return fmt.Errorf("storing SCEP CA: %w", err)
	}
	return nil
}

// SCEP challenge statements. Index: scep_challenges primary key (the
// insert also checks the unique index on hash).
const (
	createSCEPChallengeSQL = `
INSERT INTO scep_challenges (id, hash, note, created_at, expires_at, used_at, revoked_at)
VALUES ($1, $2, $3, $4::timestamptz, $5::timestamptz, $6::timestamptz, $7::timestamptz)`
	scepChallengeSelect      = `SELECT ` + sqlstore.SCEPChallengeColumns + ` FROM scep_challenges`
	retrieveSCEPChallengeSQL = scepChallengeSelect + ` WHERE id = $1`
	listSCEPChallengesSQL    = scepChallengeSelect + ` WHERE id > $1 ORDER BY id LIMIT $2`
	// Revoking again keeps the first time.
	revokeSCEPChallengeSQL = `
UPDATE scep_challenges SET revoked_at = COALESCE(revoked_at, $2::timestamptz)
WHERE id = $1
RETURNING id`
)

// purgeSCEPChallengesSQL deletes up to $2 unused challenges that expired
// before $1, soonest expired first. Index: scep_challenges_unused_expires
// (the partial index of the unused challenges on expires_at, id): the
// subquery reads it in order and stops after $2 rows, which the DELETE
// finds by primary key (or, for a limit near the table's size, by a scan
// the planner judges cheaper). The outer
// used_at IS NULL is re-checked on the latest row version when a
// concurrent StoreSCEPCert holds the row, so a challenge used meanwhile is
// kept.
const purgeSCEPChallengesSQL = `
DELETE FROM scep_challenges
WHERE id IN (
    SELECT id FROM scep_challenges
    WHERE used_at IS NULL AND expires_at < $1::timestamptz
    ORDER BY expires_at, id
    LIMIT $2
) AND used_at IS NULL`

// PurgeSCEPChallenges implements storage.SCEPStore.
func (s *Store) PurgeSCEPChallenges(ctx context.Context, before time.Time, limit int) (int, error) {
	if limit <= 0 {
		return 0, nil
	}
	n, err := s.execCount(ctx, purgeSCEPChallengesSQL, before.UTC(), limit)
	if err != nil {
		return 0, fmt.Errorf("purging SCEP challenges: %w", err)
	}
	return int(n), nil
}

// CreateSCEPChallenge implements storage.SCEPStore.
func (s *Store) CreateSCEPChallenge(ctx context.Context, c *storage.SCEPChallenge) error {
	err := s.exec(ctx, createSCEPChallengeSQL, c.ID, c.Hash, c.Note, c.CreatedAt.UTC(), c.ExpiresAt.UTC(),
		nullTime(c.UsedAt), nullTime(c.RevokedAt))
	if isUniqueViolation(err) {
		return fmt.Errorf("creating SCEP challenge %q: %w", c.ID, storage.ErrExists)
	}
	if err != nil {
		return fmt.Errorf("creating SCEP challenge %q: %w", c.ID, err)
	}
	return nil
}

// RetrieveSCEPChallenge implements storage.SCEPStore
// (retrieveSCEPChallengeSQL).
func (s *Store) RetrieveSCEPChallenge(ctx context.Context, id string) (*storage.SCEPChallenge, error) {
	if !storable(id) {
		return nil, fmt.Errorf("retrieving SCEP challenge %q: %w", id, storage.ErrNotFound)
	}
	return sqlstore.RetrieveSCEPChallenge(s.row(ctx, retrieveSCEPChallengeSQL, id), id)
}

// RevokeSCEPChallenge implements storage.SCEPStore.
func (s *Store) RevokeSCEPChallenge(ctx context.Context, id string, now time.Time) error {
	if !storable(id) {
		return fmt.Errorf("revoking SCEP challenge %q: %w", id, storage.ErrNotFound)
	}
	var got string
	err := s.queryRow(ctx, revokeSCEPChallengeSQL, []any{id, now.UTC()}, &got)
	if errors.Is(err, sql.ErrNoRows) {
		return fmt.Errorf("revoking SCEP challenge %q: %w", id, storage.ErrNotFound)
	}
	if err != nil {
		return fmt.Errorf("revoking SCEP challenge %q: %w", id, err)
	}
	return nil
}

// ListSCEPChallenges implements storage.SCEPStore (listSCEPChallengesSQL):
// a keyset page of the primary key.
func (s *Store) ListSCEPChallenges(ctx context.Context, p storage.Page) ([]storage.SCEPChallenge, string, error) {
	after, err := storableCursor(p.Cursor)
	if err != nil {
		return nil, "", fmt.Errorf("listing SCEP challenges: %w", err)
	}
	return sqlstore.ListSCEPChallenges(ctx, s.db, listSCEPChallengesSQL, after, p.Size())
}

// storableCursor returns the key a listing's cursor names: a cursor
// PostgreSQL could not compare is none this backend issued.
func storableCursor(cursor string) (string, error) {
	after, err := storage.DecodeCursor(cursor)
	if err != nil {
		return "", err
	}
	if !storable(after) {
		return "", fmt.Errorf("cursor %q: %w", cursor, storage.ErrBadCursor)
	}
	return after, nil
}

// Issued certificate statements. Index: scep_certs primary key.
//
// storeSCEPCertWithChallengeSQL consumes the challenge and records the
// certificate in one statement, so that it is atomic without a
// transaction: the UPDATE (scep_challenges' unique index on hash) marks the
// challenge used only if it is unused, unrevoked and unexpired at the
// issue time, and the INSERT reads its one returned row, so a challenge
// that is not usable inserts nothing (no row returned) and a refused
// insert (an existing serial) fails the whole statement, leaving the
// challenge unused. Of replicas racing for one challenge, the others wait
// on its row lock and then find used_at set (READ COMMITTED re-checks the
// updated row), so they update and insert nothing.
const (
	storeSCEPCertSQL = `
INSERT INTO scep_certs (serial, subject, cert_hash, not_before, not_after, issued_at, der, challenge_id)
VALUES ($1, $2, $3, $4::timestamptz, $5::timestamptz, $6::timestamptz, $7::bytea, $8)`
	storeSCEPCertWithChallengeSQL = `
WITH used AS (
    UPDATE scep_challenges SET used_at = $6::timestamptz
    WHERE hash = $8 AND used_at IS NULL AND revoked_at IS NULL AND expires_at > $6::timestamptz
    RETURNING id
)
INSERT INTO scep_certs (serial, subject, cert_hash, not_before, not_after, issued_at, der, challenge_id)
SELECT $1, $2, $3, $4::timestamptz, $5::timestamptz, $6::timestamptz, $7::bytea, used.id FROM used
RETURNING challenge_id`
	scepCertSelect      = `SELECT ` + sqlstore.SCEPCertColumns + ` FROM scep_certs`
	retrieveSCEPCertSQL = scepCertSelect + ` WHERE serial = $1`
	listSCEPCertsSQL    = scepCertSelect + ` WHERE serial > $1 ORDER BY serial LIMIT $2`
)

// StoreSCEPCert implements storage.SCEPStore. With a challenge hash,
// c.ChallengeID becomes the ID of the challenge it consumed.
func (s *Store) StoreSCEPCert(ctx context.Context, c *storage.SCEPCert, challengeHash string) error {
	args := []any{c.Serial, c.Subject, c.CertHash, c.NotBefore.UTC(), c.NotAfter.UTC(), c.IssuedAt.UTC(), c.DER}
	if challengeHash == "" {
		err := s.exec(ctx, storeSCEPCertSQL, append(args, nullString(c.ChallengeID))...)
		if isUniqueViolation(err) {
			return fmt.Errorf("storing SCEP cert %s: %w", c.Serial, storage.ErrExists)
		}
		if err != nil {
			return fmt.Errorf("storing SCEP cert %s: %w", c.Serial, err)
		}
		return nil
	}
	if !storable(challengeHash) {
		return fmt.Errorf("storing SCEP cert %s: %w", c.Serial, storage.ErrChallengeUnusable)
	}
	var challengeID string
	err := s.queryRow(ctx, storeSCEPCertWithChallengeSQL, append(args, challengeHash), &challengeID)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return fmt.Errorf("storing SCEP cert %s: %w", c.Serial, storage.ErrChallengeUnusable)
	case isUniqueViolation(err):
		return fmt.Errorf("storing SCEP cert %s: %w", c.Serial, storage.ErrExists)
	case err != nil:
		return fmt.Errorf("storing SCEP cert %s: %w", c.Serial, err)
	}
	c.ChallengeID = challengeID
	return nil
}

// RetrieveSCEPCert implements storage.SCEPStore (retrieveSCEPCertSQL).
func (s *Store) RetrieveSCEPCert(ctx context.Context, serial string) (*storage.SCEPCert, error) {
	if !storable(serial) {
		return nil, fmt.Errorf("retrieving SCEP cert %q: %w", serial, storage.ErrNotFound)
	}
	return sqlstore.RetrieveSCEPCert(s.row(ctx, retrieveSCEPCertSQL, serial), serial)
}

// ListSCEPCerts implements storage.SCEPStore (listSCEPCertsSQL): a keyset
// page of the primary key, as ListSCEPChallenges.
func (s *Store) ListSCEPCerts(ctx context.Context, p storage.Page) ([]storage.SCEPCert, string, error) {
	after, err := storableCursor(p.Cursor)
	if err != nil {
		return nil, "", fmt.Errorf("listing SCEP certs: %w", err)
	}
	return sqlstore.ListSCEPCerts(ctx, s.db, listSCEPCertsSQL, after, p.Size())
}

// isUniqueViolation reports whether err is a unique (or primary) key
// violation, SQLSTATE 23505.
func isUniqueViolation(err error) bool {
	return err != nil && pq.As(err, pqerror.UniqueViolation) != nil
}

// nullTime is t in UTC as a parameter, or NULL for the zero time.
func nullTime(t time.Time) any {
	if t.IsZero() {
		return nil
	}
	return t.UTC()
}

// nullString is s as a parameter, or NULL for "".
func nullString(s string) any {
	if s == "" {
		return nil
	}
	return s
}
