package mysql

import (
	"context"
	"fmt"
	"time"

	"github.com/picomdm/picomdm/storage"
	"github.com/picomdm/picomdm/storage/internal/sqlstore"
)

// exists runs a SELECT EXISTS(…) query.
func (s *Store) exists(ctx context.Context, query string, args ...any) (bool, error) {
	var ok bool
	if err := s.db.QueryRowContext(ctx, query, args...).Scan(&ok); err != nil {
		return false, err
	}
	return ok, nil
}

// HasCertHash implements storage.CertAuthStore. cert_auth_sha256.
func (s *Store) HasCertHash(ctx context.Context, hash string) (bool, error) {
	ok, err := s.exists(ctx, "SELECT EXISTS (SELECT 1 FROM cert_auth_associations WHERE sha256 = ?)", hash)
	if err != nil {
		return false, fmt.Errorf("looking up cert hash: %w", err)
	}
	return ok, nil
}

// EnrollmentHasCertHash implements storage.CertAuthStore. PRIMARY, id
// prefix.
func (s *Store) EnrollmentHasCertHash(ctx context.Context, id string) (bool, error) {
	ok, err := s.exists(ctx, "SELECT EXISTS (SELECT 1 FROM cert_auth_associations WHERE id = ?)", id)
	if err != nil {
		return false, fmt.Errorf("looking up cert hashes of %q: %w", id, err)
	}
	return ok, nil
}

// IsCertHashAssociated implements storage.CertAuthStore. PRIMARY.
func (s *Store) IsCertHashAssociated(ctx context.Context, id, hash string) (bool, error) {
	ok, err := s.exists(ctx, "SELECT EXISTS (SELECT 1 FROM cert_auth_associations WHERE id = ? AND sha256 = ?)", id, hash)
	if err != nil {
		return false, fmt.Errorf("looking up cert hash of %q: %w", id, err)
	}
	return ok, nil
}

// AssociateCertHash implements storage.CertAuthStore; associating a pair
// again updates its NotAfter. A hash another enrollment has (the unique
// cert_auth_sha256) is left with that enrollment. PRIMARY,
// cert_auth_sha256.
func (s *Store) AssociateCertHash(ctx context.Context, id, hash string, notAfter time.Time) error {
	var na any
	if !notAfter.IsZero() {
		na = notAfter.UTC()
	}
	_, err := s.exec(ctx, `INSERT INTO cert_auth_associations (id, sha256, not_after, created_at)
VALUES (?, ?, ?, UTC_TIMESTAMP(6))
ON DUPLICATE KEY UPDATE not_after = IF(id = VALUES(id), VALUES(not_after), not_after)`, id, hash, na)
	if err != nil {
		return fmt.Errorf("associating cert hash with %q: %w", id, err)
	}
	return nil
}

// RetrieveCertHashes implements storage.CertAuthInspector. PRIMARY prefix.
func (s *Store) RetrieveCertHashes(ctx context.Context, id string) ([]storage.CertHashInfo, error) {
	return sqlstore.RetrieveCertHashes(ctx, s.db, `SELECT sha256, not_after, created_at FROM cert_auth_associations
WHERE id = ? ORDER BY created_at, sha256`, id)
}

// DeleteCertHash implements storage.CertAuthInspector. PRIMARY.
func (s *Store) DeleteCertHash(ctx context.Context, id, hash string) error {
	return sqlstore.DeleteCertHash(ctx, s.db, `DELETE FROM cert_auth_associations WHERE id = ? AND sha256 = ?`, id, hash)
}
