package pgsql

import (
	"context"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/picomdm/picomdm/storage/internal/sqlstore/sqlstoretest"
	"github.com/picomdm/picomdm/test/logtest"
	"github.com/picomdm/picomdm/test/sqltest"
)

// TestLogsThroughGivenLogger: the store's lines go to the logger it was
// given, as JSON, tagged storage=pgsql; none to slog.Default (which
// TestMain discards, so a line sent there would be missing here).
func TestLogsThroughGivenLogger(t *testing.T) {
	var logs logtest.Buffer
	open(t, sqltest.PostgreSQL(t), nil, WithLogger(sqlstoretest.JSONLogger(t, &logs)))
	sqlstoretest.MigrationLogged(t, &logs, "pgsql")
}

// TestMigrationGivesUpAtDeadline: sqlstoretest.MigrationGivesUpAtDeadline,
// another session holding the advisory migration lock.
func TestMigrationGivesUpAtDeadline(t *testing.T) {
	ctx := context.Background()
	dsn := sqltest.PostgreSQL(t)
	holder := sqlstoretest.Conn(t, "postgres", dsn)
	if _, err := holder.ExecContext(ctx, "SELECT pg_advisory_lock($1)", migrateLockKey); err != nil {
		t.Fatal(err)
	}
	sqlstoretest.MigrationGivesUpAtDeadline(t,
		func(timeout time.Duration, logger *slog.Logger) (io.Closer, error) {
			return Open(dsn, nil, WithMigrateTimeout(timeout), WithLogger(logger))
		},
		func(error) bool {
			var tables int
			if err := holder.QueryRowContext(ctx, "SELECT count(*) FROM information_schema.tables WHERE table_name = 'schema_migrations'").Scan(&tables); err != nil {
				t.Fatal(err)
			}
			return tables != 0
		},
		func() {
			if _, err := holder.ExecContext(ctx, "SELECT pg_advisory_unlock($1)", migrateLockKey); err != nil {
				t.Fatal(err)
			}
		})
}
