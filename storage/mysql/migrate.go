package mysql

import (
	"context"
	"database/sql"
	"fmt"
	"log/slog"

	"github.com/picomdm/picomdm/storage/internal/sqlstore"
)

// lockPoll is how long one GET_LOCK call waits before Lock checks its
// context and asks again.
const lockPoll = 5

// MySQL error numbers that mean a DDL statement's change is already in
// place: what re-running a migration that crashed half-way meets.
const (
	errTableExists   = 1050 // ER_TABLE_EXISTS_ERROR
	errDupFieldName  = 1060 // ER_DUP_FIELDNAME
	errDupKeyName    = 1061 // ER_DUP_KEYNAME
	errCantDropField = 1091 // ER_CANT_DROP_FIELD_OR_KEY
)

// dialect is the MySQL side of sqlstore.Migrate: a server-wide named lock
// (GET_LOCK), so that replicas starting at once migrate one at a time.
type dialect struct {
	lock   string
	logger *slog.Logger // nil: no "waiting" line (tests)
}

var (
	_ sqlstore.Dialect       = dialect{}
	_ sqlstore.RerunTolerant = dialect{}
)

// Lock takes the named lock on conn, waiting for it in short GET_LOCK
// calls so that ctx can end the wait (the driver also abandons a call in
// progress when ctx ends). The first call does not wait, so that a wait
// is logged as it begins. The lock is released when conn closes, so a
// replica that dies mid-migration does not leave it held.
func (d dialect) Lock(ctx context.Context, conn *sql.Conn) error {
	for wait := 0; ; wait = lockPoll {
		var got sql.NullInt64
		if err := conn.QueryRowContext(ctx, "SELECT GET_LOCK(?, ?)", d.lock, wait).Scan(&got); err != nil {
			if ctx.Err() != nil {
				return fmt.Errorf("waiting for lock %q: %w", d.lock, ctx.Err())
			}
			return fmt.Errorf("GET_LOCK(%q): %w", d.lock, err)
		}
		switch {
		case !got.Valid:
			return fmt.Errorf("GET_LOCK(%q) failed", d.lock)
		case got.Int64 == 1:
			return nil
		}
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("waiting for lock %q: %w", d.lock, err)
		}
		if wait == 0 && d.logger != nil {
			d.logger.InfoContext(ctx, "waiting for the schema migration lock, held by another replica", "lock", d.lock)
		}
	}
}

// Unlock releases the named lock.
func (d dialect) Unlock(ctx context.Context, conn *sql.Conn) error {
	var released sql.NullInt64
	if err := conn.QueryRowContext(ctx, "SELECT RELEASE_LOCK(?)", d.lock).Scan(&released); err != nil {
		return fmt.Errorf("RELEASE_LOCK(%q): %w", d.lock, err)
	}
	if released.Int64 != 1 {
		return fmt.Errorf("RELEASE_LOCK(%q): lock was not held", d.lock)
	}
	return nil
}

// Placeholder returns MySQL's bind placeholder.
func (dialect) Placeholder(int) string { return "?" }

// AlreadyApplied reports whether err only says that a DDL change is
// already there (MySQL 8.0 lacks CREATE INDEX IF NOT EXISTS and ADD
// COLUMN IF NOT EXISTS, so a re-run migration may meet these).
func (dialect) AlreadyApplied(err error) bool {
	for _, n := range []uint16{errTableExists, errDupFieldName, errDupKeyName, errCantDropField} {
		if isMySQLError(err, n) {
			return true
		}
	}
	return false
}

// migrate applies the embedded schema migrations.
func (s *Store) migrate(ctx context.Context) error {
	ms, err := sqlstore.LoadMigrations(schemaFS, "schema")
	if err != nil {
		return fmt.Errorf("mysql storage: %w", err)
	}
	applied, err := sqlstore.Migrate(ctx, s.db, dialect{lock: s.lockName("migrate"), logger: s.logger}, ms)
	if err != nil {
		return fmt.Errorf("mysql storage: %w", err)
	}
	if len(applied) > 0 {
		s.logger.Info("storage schema migrated", "versions", applied)
	}
	return nil
}
