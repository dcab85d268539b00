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

// scepCAName is the name of the one scep_ca row.
const scepCAName = "default"

// RetrieveSCEPCA implements storage.SCEPStore: the key is opened with the
// store's KeySealer. PRIMARY.
func (s *Store) RetrieveSCEPCA(ctx context.Context) (certPEM, keyPEM []byte, err error) {
	err = s.db.QueryRowContext(ctx, "SELECT cert_pem, key_pem FROM scep_ca WHERE name = ?", scepCAName).Scan(&certPEM, &keyPEM)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return nil, nil, fmt.Errorf("mysql storage: SCEP CA: %w", storage.ErrNotFound)
	case err != nil:
		return nil, nil, fmt.Errorf("mysql storage: retrieving SCEP CA: %w", err)
	}
	keyPEM, err = s.sealer.Open(storage.SCEPCAKeyName, keyPEM)
	if err != nil {
		return nil, nil, fmt.Errorf("mysql storage: retrieving SCEP CA: opening key: %w", err)
	}
	return certPEM, keyPEM, nil
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
	args := []any{scepCAName, certPEM, stored}
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

// challengeSelect reads SCEPChallenge columns (scanChallenge).
const challengeSelect = `SELECT id, hash, note, created_at, expires_at, used_at, revoked_at FROM scep_challenges`

// scanChallenge reads one challengeSelect row.
func scanChallenge(sc interface{ Scan(...any) error }) (*storage.SCEPChallenge, error) {
	var c storage.SCEPChallenge
	var created, expires time.Time
	var used, revoked sql.NullTime
	if err := sc.Scan(&c.ID, &c.Hash, &c.Note, &created, &expires, &used, &revoked); err != nil {
		return nil, err
	}
	c.CreatedAt, c.ExpiresAt = created.UTC(), expires.UTC()
	c.UsedAt, c.RevokedAt = utc(used), utc(revoked)
	return &c, nil
}

// RetrieveSCEPChallenge implements storage.SCEPStore. PRIMARY.
func (s *Store) RetrieveSCEPChallenge(ctx context.Context, id string) (*storage.SCEPChallenge, error) {
	c, err := scanChallenge(s.db.QueryRowContext(ctx, challengeSelect+" WHERE id = ?", id))
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return nil, fmt.Errorf("mysql storage: SCEP challenge %q: %w", id, storage.ErrNotFound)
	case err != nil:
		return nil, fmt.Errorf("mysql storage: retrieving SCEP challenge %q: %w", id, err)
	}
	return c, nil
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
// (PRIMARY range). The cursor is the base64url of the last ID of the
// previous page.
func (s *Store) ListSCEPChallenges(ctx context.Context, p storage.Page) ([]storage.SCEPChallenge, string, error) {
	after, err := decodeCursor(p.Cursor)
	if err != nil {
		return nil, "", err
	}
	limit := p.Size()
	rows, err := s.db.QueryContext(ctx, challengeSelect+" WHERE id > ? ORDER BY id LIMIT ?", after, limit+1)
	if err != nil {
		return nil, "", fmt.Errorf("mysql storage: listing SCEP challenges: %w", err)
	}
	defer rows.Close()
	out := []storage.SCEPChallenge{}
	for rows.Next() {
		c, err := scanChallenge(rows)
		if err != nil {
			return nil, "", fmt.Errorf("mysql storage: listing SCEP challenges: %w", err)
		}
		out = append(out, *c)
	}
	if err := rows.Err(); err != nil {
		return nil, "", fmt.Errorf("mysql storage: listing SCEP challenges: %w", err)
	}
	next := ""
	if len(out) > limit {
		out = out[:limit]
		next = encodeCursor(out[limit-1].ID)
	}
	return out, next, nil
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
	res, err := s.exec(ctx, `DELETE FROM scep_challenges
WHERE used_at IS NULL AND expires_at < ?
ORDER BY used_at, expires_at, id
LIMIT ?`, sqlstore.DBTime(before), limit)
	if err != nil {
		return 0, fmt.Errorf("mysql storage: purging SCEP challenges: %w", err)
	}
	n, err := res.RowsAffected()
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

// certSelect reads SCEPCert columns (scanCert).
const certSelect = `SELECT serial, subject, cert_hash, not_before, not_after, issued_at, challenge_id, der FROM scep_certs`

// scanCert reads one certSelect row.
func scanCert(sc interface{ Scan(...any) error }) (*storage.SCEPCert, error) {
	var c storage.SCEPCert
	var challengeID sql.NullString
	if err := sc.Scan(&c.Serial, &c.Subject, &c.CertHash, &c.NotBefore, &c.NotAfter, &c.IssuedAt, &challengeID, &c.DER); err != nil {
		return nil, err
	}
	c.NotBefore, c.NotAfter, c.IssuedAt = c.NotBefore.UTC(), c.NotAfter.UTC(), c.IssuedAt.UTC()
	c.ChallengeID = challengeID.String
	return &c, nil
}

// RetrieveSCEPCert implements storage.SCEPStore. PRIMARY.
func (s *Store) RetrieveSCEPCert(ctx context.Context, serial string) (*storage.SCEPCert, error) {
	c, err := scanCert(s.db.QueryRowContext(ctx, certSelect+" WHERE serial = ?", serial))
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return nil, fmt.Errorf("mysql storage: SCEP cert %q: %w", serial, storage.ErrNotFound)
	case err != nil:
		return nil, fmt.Errorf("mysql storage: retrieving SCEP cert %q: %w", serial, err)
	}
	return c, nil
}

// ListSCEPCerts implements storage.SCEPStore: certificates in serial
// order (PRIMARY range). The cursor is the base64url of the last serial
// of the previous page.
func (s *Store) ListSCEPCerts(ctx context.Context, p storage.Page) ([]storage.SCEPCert, string, error) {
	after, err := decodeCursor(p.Cursor)
	if err != nil {
		return nil, "", err
	}
	limit := p.Size()
	rows, err := s.db.QueryContext(ctx, certSelect+" WHERE serial > ? ORDER BY serial LIMIT ?", after, limit+1)
	if err != nil {
		return nil, "", fmt.Errorf("mysql storage: listing SCEP certs: %w", err)
	}
	defer rows.Close()
	out := []storage.SCEPCert{}
	for rows.Next() {
		c, err := scanCert(rows)
		if err != nil {
			return nil, "", fmt.Errorf("mysql storage: listing SCEP certs: %w", err)
		}
		out = append(out, *c)
	}
	if err := rows.Err(); err != nil {
		return nil, "", fmt.Errorf("mysql storage: listing SCEP certs: %w", err)
	}
	next := ""
	if len(out) > limit {
		out = out[:limit]
		next = encodeCursor(out[limit-1].Serial)
	}
	return out, next, nil
}

// storedKey is one private key as it is stored.
type storedKey struct {
	name   string // what the KeySealer binds it to
	row    string // its row's primary key
	update string // the compare-and-set UPDATE that rewrites it: key_pem, row, the old key_pem
	stored []byte
}

// The UPDATEs that rewrite a stored key if it is still the one read
// (PRIMARY).
const (
	updatePushKey = "UPDATE push_certs SET key_pem = ? WHERE topic = ? AND key_pem = ?"
	updateCAKey   = "UPDATE scep_ca SET key_pem = ? WHERE name = ? AND key_pem = ?"
)

// SealPrivateKeys implements storage.PrivateKeySealer. Every key (push
// certificates, few: a PRIMARY scan; the CA by PRIMARY) is read and
// opened first, so a key that does not open fails the call before
// anything is rewritten. A plaintext key is then rewritten sealed only if
// its row still holds the bytes read, so a key another replica stored
// meanwhile is never overwritten with the old one. The stale token stays:
// it is derived from the plaintext key.
func (s *Store) SealPrivateKeys(ctx context.Context) (int, error) {
	keys, err := s.storedKeys(ctx)
	if err != nil {
		return 0, fmt.Errorf("mysql storage: sealing private keys: %w", err)
	}
	type rewrite struct {
		key    storedKey
		sealed []byte
	}
	var rewrites []rewrite
	for _, k := range keys {
		plain, err := s.sealer.Open(k.name, k.stored)
		if err != nil {
			return 0, fmt.Errorf("mysql storage: sealing private keys: %w", err)
		}
		if s.sealer.IsSealed(k.stored) {
			continue
		}
		sealed, err := s.sealer.Seal(k.name, plain)
		if err != nil {
			return 0, fmt.Errorf("mysql storage: sealing private keys: %s: %w", k.name, err)
		}
		if s.sealer.IsSealed(sealed) {
			rewrites = append(rewrites, rewrite{k, sealed})
		}
	}
	n := 0
	for _, r := range rewrites {
		res, err := s.exec(ctx, r.key.update, r.sealed, r.key.row, r.key.stored)
		if err != nil {
			return n, fmt.Errorf("mysql storage: sealing private keys: %s: %w", r.key.name, err)
		}
		changed, err := res.RowsAffected()
		if err != nil {
			return n, fmt.Errorf("mysql storage: sealing private keys: %s: %w", r.key.name, err)
		}
		n += int(changed)
	}
	return n, nil
}

// storedKeys reads every stored private key: the push certificates' and
// the SCEP CA's.
func (s *Store) storedKeys(ctx context.Context) ([]storedKey, error) {
	rows, err := s.db.QueryContext(ctx, "SELECT topic, key_pem FROM push_certs ORDER BY topic")
	if err != nil {
		return nil, fmt.Errorf("reading push cert keys: %w", err)
	}
	defer rows.Close()
	var keys []storedKey
	for rows.Next() {
		k := storedKey{update: updatePushKey}
		if err := rows.Scan(&k.row, &k.stored); err != nil {
			return nil, fmt.Errorf("reading push cert keys: %w", err)
		}
		k.name = storage.PushKeyNamePrefix + k.row
		keys = append(keys, k)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("reading push cert keys: %w", err)
	}
	ca := storedKey{name: storage.SCEPCAKeyName, row: scepCAName, update: updateCAKey}
	err = s.db.QueryRowContext(ctx, "SELECT key_pem FROM scep_ca WHERE name = ?", scepCAName).Scan(&ca.stored)
	switch {
	case errors.Is(err, sql.ErrNoRows):
	case err != nil:
		return nil, fmt.Errorf("reading SCEP CA key: %w", err)
	default:
		keys = append(keys, ca)
	}
	return keys, nil
}
