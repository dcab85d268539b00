package mysql

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/picomdm/picomdm/storage"
	"github.com/picomdm/picomdm/storage/internal/sqlstore"
)

// The built-in SCEP CA, its one-time challenges and the certificates it
// issued (storage.SCEPStore; schema/0005_scep.sql). Listings are keyset
// paginated like the inspection reads (inspect.go): ORDER BY the primary
// key, WHERE key > cursor, LIMIT n+1.

var (
	_ storage.SCEPStore        = (*Store)(nil)
	_ storage.PrivateKeySealer = (*Store)(nil)
)

// RetrieveSCEPCA implements storage.SCEPStore: the key is opened with the
// store's KeySealer. PRIMARY.
func (s *Store) RetrieveSCEPCA(ctx context.Context) (certPEM, keyPEM []byte, err error) {
	return sqlstore.RetrieveSCEPCA(s.db.QueryRowContext(ctx,
		"SELECT cert_pem, key_pem FROM scep_ca WHERE name = ?", sqlstore.SCEPCAName), s.sealer)
}

// StoreSCEPCA implements storage.SCEPStore. Without replace it is a plain
// INSERT, so of two replicas creating the CA at once the second fails on
// the primary key (ErrExists). PRIMARY.
func (s *Store) StoreSCEPCA(ctx context.Context, certPEM, keyPEM []byte, replace bool) error {
	stored, err := s.sealer.Seal(storage.SCEPCAKeyName, keyPEM)
	if err != nil {
		return fmt.Errorf("mysql storage: storing SCEP CA: sealing key: %w", err)
	}
	query := `INSERT INTO scep_ca (name, cert_pem, key_pem, created_at, updated_at)
VALUES (?, ?, ?, UTC_TIMESTAMP(6), UTC_TIMESTAMP(6))`
	args := []any{sqlstore.SCEPCAName, certPEM, stored}
	if replace {
		query += `
ON DUPLICATE KEY UPDATE cert_pem = ?, key_pem = ?, updated_at = UTC_TIMESTAMP(6)`
		args = append(args, certPEM, stored)
	}
	if _, err := s.exec(ctx, query, args...); err != nil {
		if isMySQLError(err, errDupEntry) {
			return fmt.Errorf("mysql storage: storing SCEP CA: %w", storage.ErrExists)
		}
		return fmt.Errorf("mysql storage: storing SCEP CA: %w", err)
	}
	return nil
}

// CreateSCEPChallenge implements storage.SCEPStore. A taken ID (PRIMARY)
// or hash (scep_challenges_hash) fails the INSERT: ErrExists.
func (s *Store) CreateSCEPChallenge(ctx context.Context, c *storage.SCEPChallenge) error {
	_, err := s.exec(ctx, `INSERT INTO scep_challenges (id, hash, note, created_at, expires_at, used_at, revoked_at)
VALUES (?, ?, ?, ?, ?, ?, ?)`,
		c.ID, c.Hash, c.Note, sqlstore.DBTime(c.CreatedAt), sqlstore.DBTime(c.ExpiresAt),
		sqlstore.NullTime(c.UsedAt), sqlstore.NullTime(c.RevokedAt))
	if err != nil {
		if isMySQLError(err, errDupEntry) {
			return fmt.Errorf("mysql storage: creating SCEP challenge %q: %w", c.ID, storage.ErrExists)
		}
		return fmt.Errorf("mysql storage: creating SCEP challenge %q: %w", c.ID, err)
	}
	return nil
}

// challengeSelect reads sqlstore.SCEPChallengeColumns.
const challengeSelect = `SELECT ` + sqlstore.SCEPChallengeColumns + ` FROM scep_challenges`

// RetrieveSCEPChallenge implements storage.SCEPStore. PRIMARY.
func (s *Store) RetrieveSCEPChallenge(ctx context.Context, id string) (*storage.SCEPChallenge, error) {
	return sqlstore.RetrieveSCEPChallenge(s.db.QueryRowContext(ctx, challengeSelect+" WHERE id = ?", id), id)
}

// RevokeSCEPChallenge implements storage.SCEPStore. A challenge revoked
// already keeps its first time, and the UPDATE then changes no row: only
// then is its existence checked. PRIMARY.
func (s *Store) RevokeSCEPChallenge(ctx context.Context, id string, now time.Time) error {
	res, err := s.exec(ctx, "UPDATE scep_challenges SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL",
		sqlstore.DBTime(now), id)
	if err != nil {
		return fmt.Errorf("mysql storage: revoking SCEP challenge %q: %w", id, err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return fmt.Errorf("mysql storage: revoking SCEP challenge %q: %w", id, err)
	}
	if n > 0 {
		return nil
	}
	var one int
	err = s.db.QueryRowContext(ctx, "SELECT 1 FROM scep_challenges WHERE id = ?", id).Scan(&one)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return fmt.Errorf("mysql storage: SCEP challenge %q: %w", id, storage.ErrNotFound)
	case err != nil:
		return fmt.Errorf("mysql storage: revoking SCEP challenge %q: %w", id, err)
	}
	return nil
}

// ListSCEPChallenges implements storage.SCEPStore: challenges in ID order
// (PRIMARY range).
func (s *Store) ListSCEPChallenges(ctx context.Context, p storage.Page) ([]storage.SCEPChallenge, string, error) {
	after, err := storage.DecodeCursor(p.Cursor)
	if err != nil {
		return nil, "", err
	}
	return sqlstore.ListSCEPChallenges(ctx, s.db, challengeSelect+" WHERE id > ? ORDER BY id LIMIT ?", after, p.Size())
}

// PurgeSCEPChallenges implements storage.SCEPStore: one DELETE of the
// unused challenges that expired before before, soonest expired first,
// at most limit. Index: scep_challenges_unused_expires (used_at,
// expires_at; InnoDB appends the primary key, which breaks ties), a range
// read in the ORDER BY's order that stops after limit rows and never
// visits the used challenges, which are kept forever. The ORDER BY names
// used_at (NULL in every row deleted) so that it is the index's own
// order: MariaDB sorts a DELETE's rows (a filesort of every expired one)
// when it starts at expires_at. The DELETE's
// locking read sees the latest used_at, so a challenge a concurrent
// StoreSCEPCert uses is kept (or, deleted first, is unusable to it).
func (s *Store) PurgeSCEPChallenges(ctx context.Context, before time.Time, limit int) (int, error) {
	if limit <= 0 {
		return 0, nil
	}
	n, err := s.execCount(ctx, `DELETE FROM scep_challenges
WHERE used_at IS NULL AND expires_at < ?
ORDER BY used_at, expires_at, id
LIMIT ?`, sqlstore.DBTime(before), limit)
	if err != nil {
		return 0, fmt.Errorf("mysql storage: purging SCEP challenges: %w", err)
	}
	return int(n), nil
}

// StoreSCEPCert implements storage.SCEPStore. With a challenge hash one
// transaction marks the challenge used (scep_challenges_hash; the UPDATE
// must change exactly one row, else the challenge is unusable), reads its
// ID (scep_challenges_hash) and inserts the certificate (PRIMARY): the
// UPDATE's row lock makes concurrent uses of one challenge wait for each
// other, and the second then finds it used. Anything failing rolls it all
// back, the challenge's use included.
func (s *Store) StoreSCEPCert(ctx context.Context, c *storage.SCEPCert, challengeHash string) error {
	issued := sqlstore.DBTime(c.IssuedAt)
	insert := func(ctx context.Context, q interface {
		ExecContext(context.Context, string, ...any) (sql.Result, error)
	}, challengeID string) error {
		_, err := q.ExecContext(ctx, `INSERT INTO scep_certs
	(serial, subject, cert_hash, not_before, not_after, issued_at, challenge_id, der)
VALUES (?, ?, ?, ?, ?, ?, ?, ?)`,
			c.Serial, c.Subject, c.CertHash, sqlstore.DBTime(c.NotBefore), sqlstore.DBTime(c.NotAfter),
			issued, sql.NullString{String: challengeID, Valid: challengeID != ""}, c.DER)
		if isMySQLError(err, errDupEntry) {
			return fmt.Errorf("mysql storage: storing SCEP cert %q: %w", c.Serial, storage.ErrExists)
		}
		if err != nil {
			return fmt.Errorf("mysql storage: storing SCEP cert %q: %w", c.Serial, err)
		}
		return nil
	}
	if challengeHash == "" {
		return s.retry(ctx, func() error { return insert(ctx, s.db, c.ChallengeID) })
	}
	var challengeID string
	err := s.inTx(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `UPDATE scep_challenges SET used_at = ?
WHERE hash = ? AND used_at IS NULL AND revoked_at IS NULL AND expires_at > ?`,
			issued, challengeHash, issued)
		if err != nil {
			return fmt.Errorf("mysql storage: using SCEP challenge: %w", err)
		}
		n, err := res.RowsAffected()
		if err != nil {
			return fmt.Errorf("mysql storage: using SCEP challenge: %w", err)
		}
		if n != 1 {
			return fmt.Errorf("mysql storage: storing SCEP cert %q: %w", c.Serial, storage.ErrChallengeUnusable)
		}
		if err := tx.QueryRowContext(ctx, "SELECT id FROM scep_challenges WHERE hash = ?", challengeHash).Scan(&challengeID); err != nil {
			return fmt.Errorf("mysql storage: reading SCEP challenge ID: %w", err)
		}
		return insert(ctx, tx, challengeID)
	})
	if err != nil {
		return err
	}
	c.ChallengeID = challengeID
	return nil
}

// certSelect reads sqlstore.SCEPCertColumns.
const certSelect = `SELECT ` + sqlstore.SCEPCertColumns + ` FROM scep_certs`

// RetrieveSCEPCert implements storage.SCEPStore. PRIMARY.
func (s *Store) RetrieveSCEPCert(ctx context.Context, serial string) (*storage.SCEPCert, error) {
	return sqlstore.RetrieveSCEPCert(s.db.QueryRowContext(ctx, certSelect+" WHERE serial = ?", serial), serial)
}

// ListSCEPCerts implements storage.SCEPStore: certificates in serial
// order (PRIMARY range).
func (s *Store) ListSCEPCerts(ctx context.Context, p storage.Page) ([]storage.SCEPCert, string, error) {
	after, err := storage.DecodeCursor(p.Cursor)
	if err != nil {
		return nil, "", err
	}
	return sqlstore.ListSCEPCerts(ctx, s.db, certSelect+" WHERE serial > ? ORDER BY serial LIMIT ?", after, p.Size())
}

// SealPrivateKeys implements storage.PrivateKeySealer: every key (push
// certificates, few: a PRIMARY scan; the CA by PRIMARY) is read and opened
// first (sqlstore.KeysToSeal), then each plaintext one is rewritten
// sealed by a compare-and-set UPDATE (PRIMARY) that changes it only while
// its row still holds the bytes read.
func (s *Store) SealPrivateKeys(ctx context.Context) (int, error) {
	keys, err := sqlstore.KeysToSeal(ctx, s.db, s.sealer, `SELECT 'push', topic, key_pem FROM push_certs
UNION ALL
SELECT 'ca', name, key_pem FROM scep_ca WHERE name = ?`, sqlstore.SCEPCAName)
	if err != nil {
		return 0, fmt.Errorf("mysql storage: sealing private keys: %w", err)
	}
	n := 0
	for _, k := range keys {
		update := "UPDATE push_certs SET key_pem = ? WHERE topic = ? AND key_pem = ?"
		if k.CA {
			update = "UPDATE scep_ca SET key_pem = ? WHERE name = ? AND key_pem = ?"
		}
		changed, err := s.execCount(ctx, update, k.Sealed, k.Row, k.Stored)
		if err != nil {
			return n, fmt.Errorf("mysql storage: sealing private keys: %s: %w", k.Name(), err)
		}
		n += int(changed)
	}
	return n, nil
}
