package pgsql

import (
	"context"
	"database/sql"
	"errors"
	"fmt"

	"github.com/picomdm/picomdm/storage"
)

var _ storage.PushTokenStore = (*Store)(nil)

// Push-token marks live in the enrollment row; the next TokenUpdate
// clears them (tokenUpdateSQL). Index: enrollments primary key.
const (
	invalidatePushTokenSQL = `
UPDATE enrollments
SET push_token_valid = FALSE, push_token_invalid_reason = $2, push_token_invalid_at = now(), updated_at = now()
WHERE id = $1`
	pushTokenValidSQL = `SELECT push_token_valid FROM enrollments WHERE id = $1`
)

// InvalidatePushToken implements storage.PushTokenStore: APNs refused
// enrollment id's push token for good, for reason.
func (s *Store) InvalidatePushToken(ctx context.Context, id, reason string) error {
	st, err := s.stmts.get(ctx, invalidatePushTokenSQL)
	if err != nil {
		return fmt.Errorf("invalidating push token of %q: %w", id, err)
	}
	var res sql.Result
	err = withRetry(ctx, func() error {
		var err error
		res, err = st.ExecContext(ctx, id, reason)
		return err
	})
	if err != nil {
		return fmt.Errorf("invalidating push token of %q: %w", id, err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return fmt.Errorf("invalidating push token of %q: %w", id, err)
	}
	if n == 0 {
		return fmt.Errorf("invalidating push token of %q: %w", id, storage.ErrNotFound)
	}
	return nil
}

// PushTokenValid implements storage.PushTokenStore.
func (s *Store) PushTokenValid(ctx context.Context, id string) (bool, error) {
	var valid bool
	err := s.queryRow(ctx, pushTokenValidSQL, []any{id}, &valid)
	if errors.Is(err, sql.ErrNoRows) {
		return false, fmt.Errorf("push token of %q: %w", id, storage.ErrNotFound)
	}
	if err != nil {
		return false, fmt.Errorf("push token of %q: %w", id, err)
	}
	return valid, nil
}
