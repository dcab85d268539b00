package pgsql

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"github.com/picomdm/picomdm/storage/internal/sqlstore"
	"time"

	"github.com/picomdm/picomdm/storage"
)

var _ storage.LeaseStore = (*Store)(nil)

// Lease statements (leases primary key).
const (
	// acquireLeaseSQL takes lease $1 for $2 until $4 in one upsert: a new
	// row is $2's; an existing one changes hands only if it is $2's
	// already or expired at $3. It returns a row exactly when $2 holds the
	// lease afterwards (ON CONFLICT's WHERE refused the update otherwise).
	acquireLeaseSQL = `
INSERT INTO leases (name, owner, held_until) VALUES ($1, $2, $4)
ON CONFLICT (name) DO UPDATE SET owner = EXCLUDED.owner, held_until = EXCLUDED.held_until
WHERE leases.owner = EXCLUDED.owner OR leases.held_until <= $3
RETURNING owner`

	releaseLeaseSQL = `DELETE FROM leases WHERE name = $1 AND owner = $2`
)

// AcquireLease implements storage.LeaseStore (acquireLeaseSQL).
func (s *Store) AcquireLease(ctx context.Context, name, owner string, now, until time.Time) (bool, error) {
	var holder string
	err := s.queryRow(ctx, acquireLeaseSQL, []any{name, owner, sqlstore.DBTime(now), sqlstore.DBTime(until)}, &holder)
	if errors.Is(err, sql.ErrNoRows) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("acquiring lease %s: %w", name, err)
	}
	return holder == owner, nil
}

// ReleaseLease implements storage.LeaseStore (releaseLeaseSQL).
func (s *Store) ReleaseLease(ctx context.Context, name, owner string) error {
	if err := s.exec(ctx, releaseLeaseSQL, name, owner); err != nil {
		return fmt.Errorf("releasing lease %s: %w", name, err)
	}
	return nil
}
