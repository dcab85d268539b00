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
func RetrieveCertHashes(ctx context.Context, db Querier, query, id string) ([]storage.CertHashInfo, error) {
	out, err := queryAll(ctx, db, func(sc RowScanner) (storage.CertHashInfo, error) {
		var info storage.CertHashInfo
		var notAfter sql.NullTime
		if err := sc.Scan(&info.Hash, &notAfter, &info.AssociatedAt); err != nil {
			return info, err
		}
		info.NotAfter = UTC(notAfter)
		info.AssociatedAt = info.AssociatedAt.UTC()
		return info, nil
	}, query, id)
	if err != nil {
		return nil, fmt.Errorf("cert hashes of %q: %w", id, err)
	}
	return out, nil
}

// DeleteCertHash runs query (deleting the association of hash with id)
// and answers storage.ErrNotFound when it deleted nothing:
// storage.CertAuthInspector.DeleteCertHash for both SQL backends.
func DeleteCertHash(ctx context.Context, db Querier, query, id, hash string) error {
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

// EnrollmentFromCertHash implements
// storage.CertAuthLookup.EnrollmentFromCertHash: row is the id of the
// enrollment hash is associated with (the lowest, should several be).
func EnrollmentFromCertHash(row RowScanner, hash string) (string, error) {
	var id string
	if err := row.Scan(&id); err != nil {
		return "", notFound(err, "enrollment of cert hash "+hash)
	}
	return id, nil
}
