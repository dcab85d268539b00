package mysql

import (
	"context"
	"database/sql"
	"errors"
	"fmt"

	"github.com/picomdm/picomdm/storage"
)

// EnrollmentFromCertHash implements storage.CertAuthLookup. Index:
// cert_auth_sha256 (sha256); InnoDB secondary indexes carry the primary
// key, so (sha256, id) is read from the index alone, already in ID order.
func (s *Store) EnrollmentFromCertHash(ctx context.Context, hash string) (string, error) {
	var id string
	err := s.db.QueryRowContext(ctx,
		"SELECT id FROM cert_auth_associations WHERE sha256 = ? ORDER BY id LIMIT 1", hash).Scan(&id)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return "", fmt.Errorf("enrollment of cert hash %s: %w", hash, storage.ErrNotFound)
	case err != nil:
		return "", fmt.Errorf("enrollment of cert hash %s: %w", hash, err)
	}
	return id, nil
}
