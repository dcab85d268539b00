package pgsql

import (
	"context"
	"database/sql"
	"fmt"
	"sync"

	"github.com/picomdm/picomdm/storage/internal/sqlstore"
)

// stmtCache prepares the statements of the request path once per process
// and reuses them: PostgreSQL then parses each of them once per connection
// rather than on every request (it still plans every execution: see
// customPlans). Measured here, that takes the next-command lookup from
// about 200µs to about 120µs, against a 48µs round trip for SELECT 1.
// database/sql prepares a statement again on each pooled connection it
// runs on, transparently.
//
// Statements are prepared lazily, on first use, so that a store opened
// with migrate=0 on a database whose schema is not there yet still opens.
type stmtCache struct {
	db *sql.DB
	mu sync.Mutex
	m  map[string]*sql.Stmt
}

// get returns the prepared statement for query.
func (c *stmtCache) get(ctx context.Context, query string) (*sql.Stmt, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if st, ok := c.m[query]; ok {
		return st, nil
	}
	st, err := c.db.PrepareContext(ctx, query)
	if err != nil {
		return nil, fmt.Errorf("preparing statement: %w", err)
	}
	if c.m == nil {
		c.m = make(map[string]*sql.Stmt)
	}
	c.m[query] = st
	return st, nil
}

// close closes every prepared statement.
func (c *stmtCache) close() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for q, st := range c.m {
		st.Close()
		delete(c.m, q)
	}
}

// exec runs a prepared statement, retrying transient conflicts.
func (s *Store) exec(ctx context.Context, query string, args ...any) error {
	st, err := s.stmts.get(ctx, query)
	if err != nil {
		return err
	}
	return withRetry(ctx, func() error {
		_, err := st.ExecContext(ctx, args...)
		return err
	})
}

// queryRow runs a prepared single-row query, retrying transient conflicts,
// and scans its row into dest; sql.ErrNoRows when there is none.
func (s *Store) queryRow(ctx context.Context, query string, args []any, dest ...any) error {
	st, err := s.stmts.get(ctx, query)
	if err != nil {
		return err
	}
	return withRetry(ctx, func() error {
		return st.QueryRowContext(ctx, args...).Scan(dest...)
	})
}

// row is queryRow as a sqlstore.RowScanner: the query runs when the row
// is scanned.
func (s *Store) row(ctx context.Context, query string, args ...any) sqlstore.RowScanner {
	return sqlstore.ScanFunc(func(dest ...any) error { return s.queryRow(ctx, query, args, dest...) })
}
