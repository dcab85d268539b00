package pgsql

import (
	"context"
	"fmt"
	"time"
)

// Certificate-hash associations. Indexes: cert_auth_associations primary
// key (id, sha256) for the per-ID questions and the upsert,
// cert_auth_associations_sha256 for "is this hash anyone's".
const (
	hasCertHashSQL           = `SELECT EXISTS (SELECT 1 FROM cert_auth_associations WHERE sha256 = $1)`
	enrollmentHasCertHashSQL = `SELECT EXISTS (SELECT 1 FROM cert_auth_associations WHERE id = $1)`
	isCertHashAssociatedSQL  = `SELECT EXISTS (SELECT 1 FROM cert_auth_associations WHERE id = $1 AND sha256 = $2)`
	associateCertHashSQL     = `
INSERT INTO cert_auth_associations (id, sha256, not_after) VALUES ($1, $2, $3::timestamptz)
ON CONFLICT (id, sha256) DO UPDATE SET not_after = EXCLUDED.not_after, updated_at = now()`
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

// associateNewCertHashSQL is cert-auth's decision at Authenticate in one
// statement: the hash is inserted only if nobody has it, and the answer is
// whether the enrollment has it now. Both EXISTS read the snapshot from
// before the insert, so "now" is "it was new, or already ours". Indexes:
// cert_auth_associations_sha256, the primary key.
const associateNewCertHashSQL = `
WITH known AS (
    SELECT EXISTS (SELECT 1 FROM cert_auth_associations WHERE sha256 = $2) AS taken,
           EXISTS (SELECT 1 FROM cert_auth_associations WHERE id = $1 AND sha256 = $2) AS ours
), associated AS (
    INSERT INTO cert_auth_associations (id, sha256, not_after)
    SELECT $1, $2, $3::timestamptz FROM known WHERE NOT known.taken
    ON CONFLICT (id, sha256) DO UPDATE SET not_after = EXCLUDED.not_after, updated_at = now()
)
SELECT ours OR NOT taken FROM known`

// AssociateNewCertHash implements storage.CertAuthAssociator in one
// statement.
func (s *Store) AssociateNewCertHash(ctx context.Context, id, hash string, notAfter time.Time) (bool, error) {
	var na *time.Time
	if !notAfter.IsZero() {
		na = &notAfter
	}
	var ours bool
	if err := s.queryRow(ctx, associateNewCertHashSQL, []any{id, hash, na}, &ours); err != nil {
		return false, fmt.Errorf("associating new cert hash %s with %q: %w", hash, id, err)
	}
	return ours, nil
}
