package pgsql

import (
	"context"
	"fmt"
	"time"

	"github.com/picomdm/picomdm/storage"
	"github.com/picomdm/picomdm/storage/internal/sqlstore"
)

// Certificate-hash associations. Indexes: cert_auth_associations primary
// key (id, sha256) for the per-ID questions, the unique
// cert_auth_associations_sha256_key for "is this hash anyone's" and the
// upsert (a hash another enrollment has is left with it).
const (
	hasCertHashSQL           = `SELECT EXISTS (SELECT 1 FROM cert_auth_associations WHERE sha256 = $1)`
	enrollmentHasCertHashSQL = `SELECT EXISTS (SELECT 1 FROM cert_auth_associations WHERE id = $1)`
	isCertHashAssociatedSQL  = `SELECT EXISTS (SELECT 1 FROM cert_auth_associations WHERE id = $1 AND sha256 = $2)`
	associateCertHashSQL     = `
INSERT INTO cert_auth_associations (id, sha256, not_after) VALUES ($1, $2, $3::timestamptz)
ON CONFLICT (sha256) DO UPDATE SET not_after = EXCLUDED.not_after, updated_at = now()
WHERE cert_auth_associations.id = EXCLUDED.id`
)

// HasCertHash implements storage.CertAuthStore.
func (s *Store) HasCertHash(ctx context.Context, hash string) (bool, error) {
	var has bool
	if err := s.queryRow(ctx, hasCertHashSQL, []any{hash}, &has); err != nil {
		return false, fmt.Errorf("looking up cert hash %s: %w", hash, err)
	}
	return has, nil
}

// EnrollmentHasCertHash implements storage.CertAuthStore.
func (s *Store) EnrollmentHasCertHash(ctx context.Context, id string) (bool, error) {
	var has bool
	if err := s.queryRow(ctx, enrollmentHasCertHashSQL, []any{id}, &has); err != nil {
		return false, fmt.Errorf("looking up cert hashes of %q: %w", id, err)
	}
	return has, nil
}

// IsCertHashAssociated implements storage.CertAuthStore.
func (s *Store) IsCertHashAssociated(ctx context.Context, id, hash string) (bool, error) {
	var has bool
	if err := s.queryRow(ctx, isCertHashAssociatedSQL, []any{id, hash}, &has); err != nil {
		return false, fmt.Errorf("looking up cert hash %s of %q: %w", hash, id, err)
	}
	return has, nil
}

// AssociateCertHash implements storage.CertAuthStore. Associating a pair
// again updates its NotAfter.
func (s *Store) AssociateCertHash(ctx context.Context, id, hash string, notAfter time.Time) error {
	var na *time.Time
	if !notAfter.IsZero() {
		na = &notAfter
	}
	err := s.exec(ctx, associateCertHashSQL, id, hash, na)
	if err != nil {
		return fmt.Errorf("associating cert hash %s with %q: %w", hash, id, err)
	}
	return nil
}

// Listing and removing an enrollment's certificates. Index: the primary
// key.
const (
	retrieveCertHashesSQL = `SELECT sha256, not_after, created_at FROM cert_auth_associations WHERE id = $1 ORDER BY created_at, sha256`
	deleteCertHashSQL     = `DELETE FROM cert_auth_associations WHERE id = $1 AND sha256 = $2`
)

// RetrieveCertHashes implements storage.CertAuthInspector.
func (s *Store) RetrieveCertHashes(ctx context.Context, id string) ([]storage.CertHashInfo, error) {
	return sqlstore.RetrieveCertHashes(ctx, s.db, retrieveCertHashesSQL, id)
}

// DeleteCertHash implements storage.CertAuthInspector.
func (s *Store) DeleteCertHash(ctx context.Context, id, hash string) error {
	return sqlstore.DeleteCertHash(ctx, s.db, deleteCertHashSQL, id, hash)
}
