package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"

	"github.com/picomdm/picomdm/storage"
)

// What the shared reads and writes run on. Each backend keeps its SQL
// text and hands it in; these types say how it is run.

// Querier runs statements: a *sql.DB, *sql.Tx or *sql.Conn.
type Querier interface {
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
}

// RowScanner is one row to scan: a *sql.Row, *sql.Rows, or a backend's
// single-row query that runs when it is scanned.
type RowScanner interface{ Scan(dest ...any) error }

// ScanFunc is a RowScanner from a function: a backend's single-row query
// (prepared, retried) that runs when it is scanned.
type ScanFunc func(dest ...any) error

// Scan implements RowScanner.
func (f ScanFunc) Scan(dest ...any) error { return f(dest...) }

// ExecFunc runs a statement, retrying as the backend retries transient
// conflicts, and returns the rows it affected.
type ExecFunc func(ctx context.Context, query string, args ...any) (int64, error)

// TxFunc runs fn in one transaction, committed if fn returns nil, run
// again as the backend retries transient conflicts.
type TxFunc func(ctx context.Context, fn func(tx *sql.Tx) error) error

// InTx runs fn in a transaction of db, committed if fn returns nil,
// rolled back if not. A backend's TxFunc wraps it in its retry.
func InTx(ctx context.Context, db *sql.DB, fn func(tx *sql.Tx) error) error {
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("beginning transaction: %w", err)
	}
	if err := fn(tx); err != nil {
		tx.Rollback()
		return err
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("committing: %w", err)
	}
	return nil
}

// notFound wraps the error of a single-row read with what: sql.ErrNoRows
// as storage.ErrNotFound; nil stays nil.
func notFound(err error, what string) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, sql.ErrNoRows):
		return fmt.Errorf("%s: %w", what, storage.ErrNotFound)
	default:
		return fmt.Errorf("%s: %w", what, err)
	}
}

// retrieve reads one item from row with scan; what names the item in
// errors (storage.ErrNotFound when there is none).
func retrieve[T any](row RowScanner, scan func(RowScanner) (T, error), what string) (*T, error) {
	item, err := scan(row)
	if err != nil {
		return nil, notFound(err, what)
	}
	return &item, nil
}

// queryAll runs query with args and reads every row with scan.
func queryAll[T any](ctx context.Context, db Querier, scan func(RowScanner) (T, error), query string, args ...any) ([]T, error) {
	rows, err := db.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := []T{}
	for rows.Next() {
		item, err := scan(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, item)
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	return out, nil
}

// KeysetPage reads one page of a keyset-paginated listing (ORDER BY key,
// WHERE key > cursor, LIMIT limit+1: the extra row says whether there is
// a next page): query with args, each row read by scan. It returns at most
// limit items and the cursor of the next page (the base64url of the last
// item's key), "" after the last page. what names the listing in errors.
func KeysetPage[T any](ctx context.Context, db Querier, what string, limit int, scan func(RowScanner) (T, error),
	key func(*T) string, query string, args ...any) ([]T, string, error) {
	out, err := queryAll(ctx, db, scan, query, args...)
	if err != nil {
		return nil, "", fmt.Errorf("%s: %w", what, err)
	}
	next := ""
	if len(out) > limit {
		out = out[:limit]
		next = storage.EncodeCursor(key(&out[limit-1]))
	}
	return out, next, nil
}
