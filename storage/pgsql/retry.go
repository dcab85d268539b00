package pgsql

import (
	"context"
	"database/sql"

	"github.com/lib/pq"
	"github.com/lib/pq/pqerror"
	"github.com/picomdm/picomdm/storage/internal/sqlstore"
)

// maxAttempts bounds how often a statement runs when it keeps losing
// transient conflicts. Every statement here runs at READ COMMITTED and
// takes its row locks in one statement, so a deadlock (40P01) or
// serialization failure (40001) is rare — two statements meeting on the
// same rows in different orders (a device's Authenticate racing its own
// report), or a database configured for a stricter isolation level — and
// the losing statement was rolled back whole, so running it again is safe.
const maxAttempts = 5

// retryable reports whether err is a conflict worth running the statement
// again for.
func retryable(err error) bool {
	return pq.As(err, pqerror.TRSerializationFailure, pqerror.TRDeadlockDetected) != nil
}

// withRetry runs op, again after a short jittered backoff while it fails
// with a transient conflict, at most maxAttempts times (sqlstore.Retry).
func withRetry(ctx context.Context, op func() error) error {
	return sqlstore.Retry(ctx, maxAttempts, retryable, op)
}

// inTx runs fn in a transaction, committed if fn returns nil, run again
// on a transient conflict.
func (s *Store) inTx(ctx context.Context, fn func(tx *sql.Tx) error) error {
	return withRetry(ctx, func() error { return sqlstore.InTx(ctx, s.db, fn) })
}
