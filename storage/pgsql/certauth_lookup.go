package pgsql

import (
	"context"
	"database/sql"
	"errors"
	"fmt"

	"github.com/picomdm/picomdm/storage"
)

// enrollmentFromCertHashSQL is backed by cert_auth_associations_sha256;
// the ORDER BY only matters in the (refused by cert-auth) case of a hash
// shared by several IDs, which it keeps deterministic.
const enrollmentFromCertHashSQL = `SELECT id FROM cert_auth_associations WHERE sha256 = $1 ORDER BY id LIMIT 1`

// EnrollmentFromCertHash implements storage.CertAuthLookup.
func (s *Store) EnrollmentFromCertHash(ctx context.Context, hash string) (string, error) {
	var id string
	err := s.queryRow(ctx, enrollmentFromCertHashSQL, []any{hash}, &id)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return "", fmt.Errorf("enrollment of cert hash %s: %w", hash, storage.ErrNotFound)
	case err != nil:
		return "", fmt.Errorf("enrollment of cert hash %s: %w", hash, err)
	}
	return id, nil
}
