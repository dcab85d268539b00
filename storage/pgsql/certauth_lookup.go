package pgsql

import (
	"context"

	"github.com/picomdm/picomdm/storage/internal/sqlstore"
)

// enrollmentFromCertHashSQL is backed by cert_auth_associations_sha256;
// the ORDER BY only matters in the (refused by cert-auth) case of a hash
// shared by several IDs, which it keeps deterministic.
const enrollmentFromCertHashSQL = `SELECT id FROM cert_auth_associations WHERE sha256 = $1 ORDER BY id LIMIT 1`

// EnrollmentFromCertHash implements storage.CertAuthLookup.
func (s *Store) EnrollmentFromCertHash(ctx context.Context, hash string) (string, error) {
	return sqlstore.EnrollmentFromCertHash(s.row(ctx, enrollmentFromCertHashSQL, hash), hash)
}
