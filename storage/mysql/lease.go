package mysql

import (
	"context"
	"database/sql"
	"fmt"
	"github.com/picomdm/picomdm/storage/internal/sqlstore"
	"time"

	"github.com/picomdm/picomdm/storage"
)

var _ storage.LeaseStore = (*Store)(nil)

// acquireLeaseSQL takes or extends a lease in one upsert (leases PRIMARY):
// a new row is owner's; an existing one changes hands only if it is
// owner's already or expired at now. The assignments run left to right,
// so held_until is decided by the owner column as the first assignment
// left it: owner's exactly when owner holds the lease now.
const acquireLeaseSQL = `INSERT INTO leases (name, owner, held_until) VALUES (?, ?, ?)
ON DUPLICATE KEY UPDATE
	owner = IF(owner = VALUES(owner) OR held_until <= ?, VALUES(owner), owner),
	held_until = IF(owner = VALUES(owner), VALUES(held_until), held_until)`

// AcquireLease implements storage.LeaseStore: the upsert, then a read of
// the row it locked, in one transaction.
func (s *Store) AcquireLease(ctx context.Context, name, owner string, now, until time.Time) (bool, error) {
	var holder string
	err := s.inTx(ctx, func(tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx, acquireLeaseSQL, name, owner, sqlstore.DBTime(until), sqlstore.DBTime(now)); err != nil {
			return err
		}
		return tx.QueryRowContext(ctx, `SELECT owner FROM leases WHERE name = ?`, name).Scan(&holder)
	})
	if err != nil {
		return false, fmt.Errorf("acquiring lease %s: %w", name, err)
	}
	return holder == owner, nil
}

// ReleaseLease implements storage.LeaseStore: one DELETE by PRIMARY.
func (s *Store) ReleaseLease(ctx context.Context, name, owner string) error {
	err := s.retry(ctx, func() error {
		_, err := s.db.ExecContext(ctx, `DELETE FROM leases WHERE name = ? AND owner = ?`, name, owner)
		return err
	})
	if err != nil {
		return fmt.Errorf("releasing lease %s: %w", name, err)
	}
	return nil
}
