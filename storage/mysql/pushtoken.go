package mysql

import (
	"context"
	"database/sql"
	"errors"
	"fmt"

	"github.com/picomdm/picomdm/storage"
)

// InvalidatePushToken implements storage.PushTokenStore: APNs refused the
// enrollment's token. The next TokenUpdate sets push_token_valid again.
// Uses the enrollments primary key.
func (s *Store) InvalidatePushToken(ctx context.Context, id, reason string) error {
	res, err := s.db.ExecContext(ctx, `UPDATE enrollments
SET push_token_valid = FALSE, push_token_invalid_reason = ?, push_token_invalid_at = UTC_TIMESTAMP(6)
WHERE id = ?`, reason, id)
	if err != nil {
		return fmt.Errorf("invalidating push token of %q: %w", id, err)
	}
	// The timestamp changes on every call, so a known row always counts.
	if n, err := res.RowsAffected(); err == nil && n == 0 {
		return fmt.Errorf("invalidating push token of %q: %w", id, storage.ErrNotFound)
	}
	return nil
}

// PushTokenValid implements storage.PushTokenStore (enrollments primary
// key).
func (s *Store) PushTokenValid(ctx context.Context, id string) (bool, error) {
	var valid bool
	err := s.db.QueryRowContext(ctx, `SELECT push_token_valid FROM enrollments WHERE id = ?`, id).Scan(&valid)
	if errors.Is(err, sql.ErrNoRows) {
		return false, fmt.Errorf("push token of %q: %w", id, storage.ErrNotFound)
	}
	if err != nil {
		return false, fmt.Errorf("push token of %q: %w", id, err)
	}
	return valid, nil
}
