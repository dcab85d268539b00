package pgsql

import (
	"context"
	"database/sql"
	"errors"
	"github.com/picomdm/picomdm/test/logtest"
	"testing"
	"time"

	pmlog "github.com/picomdm/picomdm/log"
	"github.com/picomdm/picomdm/test/sqltest"
)

func jsonLogger(t *testing.T, b *logtest.Buffer) Option {
	t.Helper()
	logger, err := pmlog.New(b, "json", true)
	if err != nil {
		t.Fatal(err)
	}
	return WithLogger(logger)
}

// TestLogsThroughGivenLogger: the store's lines go to the logger it was
// given, as JSON, tagged storage=pgsql; none to slog.Default (which
// TestMain discards, so a line sent there would be missing here).
func TestLogsThroughGivenLogger(t *testing.T) {
	var logs logtest.Buffer
	s, err := Open(sqltest.PostgreSQL(t), nil, jsonLogger(t, &logs))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	line := logs.Find(t, "storage schema migrated")
	if line == nil {
		t.Fatalf("no migration line in the given logger: %v", logs.Lines(t))
	}
	if line["storage"] != "pgsql" || line["versions"] == nil {
		t.Errorf("migration line %v, want storage=pgsql and the versions applied", line)
	}
}

// TestMigrationGivesUpAtDeadline: while another session holds the
// migration lock, Open waits (and says so), then fails at its deadline
// with an error instead of hanging; once the lock is free it migrates.
func TestMigrationGivesUpAtDeadline(t *testing.T) {
	ctx := context.Background()
	dsn := sqltest.PostgreSQL(t)
	other, err := sql.Open("postgres", dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	holder, err := other.Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer holder.Close()
	if _, err := holder.ExecContext(ctx, "SELECT pg_advisory_lock($1)", migrateLockKey); err != nil {
		t.Fatal(err)
	}

	const deadline = 300 * time.Millisecond
	var logs logtest.Buffer
	start := time.Now()
	s, err := Open(dsn, nil, WithMigrateTimeout(deadline), jsonLogger(t, &logs))
	elapsed := time.Since(start)
	if err == nil {
		s.Close()
		t.Fatal("Open migrated although another session held the migration lock")
	}
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Open: %v, want the migration deadline", err)
	}
	if elapsed < deadline || elapsed > deadline+5*time.Second {
		t.Errorf("Open gave up after %v, want about %v", elapsed, deadline)
	}
	if logs.Find(t, "waiting for the schema migration lock, held by another replica") == nil {
		t.Errorf("the wait was not logged: %v", logs.Lines(t))
	}
	var tables int
	if err := other.QueryRowContext(ctx, "SELECT count(*) FROM information_schema.tables WHERE table_name = 'schema_migrations'").Scan(&tables); err != nil {
		t.Fatal(err)
	}
	if tables != 0 {
		t.Error("the migration ran without its lock")
	}

	if _, err := holder.ExecContext(ctx, "SELECT pg_advisory_unlock($1)", migrateLockKey); err != nil {
		t.Fatal(err)
	}
	s, err = Open(dsn, nil, WithMigrateTimeout(time.Minute), jsonLogger(t, &logs))
	if err != nil {
		t.Fatalf("Open once the lock is free: %v", err)
	}
	s.Close()
}
