package sqlstore

import (
	"context"
	"database/sql"
	"fmt"

	"github.com/picomdm/picomdm/storage"
)

// RetrieveCertHashes runs query (selecting sha256, not_after, created_at
// of one enrollment's associations, in order) with id and scans the rows:
// storage.CertAuthInspector.RetrieveCertHashes for both SQL backends.
func RetrieveCertHashes(ctx context.Context, db *sql.DB, query, id string) ([]storage.CertHashInfo, error) {
	rows, err := db.QueryContext(ctx, query, id)
	if err != nil {
		return nil, fmt.Errorf("cert hashes of %q: %w", id, err)
	}
	defer rows.Close()
	out := []storage.CertHashInfo{}
	for rows.Next() {
		var (
			info     storage.CertHashInfo
			notAfter sql.NullTime
		)
		if err := rows.Scan(&info.Hash, &notAfter, &info.AssociatedAt); err != nil {
			return nil, fmt.Errorf("cert hashes of %q: %w", id, err)
		}
		info.NotAfter = UTC(notAfter)
		info.AssociatedAt = info.AssociatedAt.UTC()
		out = append(out, info)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("cert hashes of %q: %w", id, err)
	}
	return out, nil
}

// DeleteCertHash runs query (deleting the association of hash with id)
// and answers storage.ErrNotFound when it deleted nothing:
// storage.CertAuthInspector.DeleteCertHash for both SQL backends.
func DeleteCertHash(ctx context.Context, db *sql.DB, query, id, hash string) error {
	res, err := db.ExecContext(ctx, query, id, hash)
	if err != nil {
		return fmt.Errorf("deleting cert hash %s of %q: %w", hash, id, err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return fmt.Errorf("deleting cert hash %s of %q: %w", hash, id, err)
	}
	if n == 0 {
		return fmt.Errorf("cert hash %s of %q: %w", hash, id, storage.ErrNotFound)
	}
	return nil
}
