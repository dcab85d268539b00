package mysql

import (
	"context"

	"github.com/picomdm/picomdm/storage/internal/sqlstore"
)

// EnrollmentFromCertHash implements storage.CertAuthLookup. Index:
// cert_auth_sha256 (sha256); InnoDB secondary indexes carry the primary
// key, so (sha256, id) is read from the index alone, already in ID order.
func (s *Store) EnrollmentFromCertHash(ctx context.Context, hash string) (string, error) {
	return sqlstore.EnrollmentFromCertHash(s.db.QueryRowContext(ctx,
		"SELECT id FROM cert_auth_associations WHERE sha256 = ? ORDER BY id LIMIT 1", hash), hash)
}
