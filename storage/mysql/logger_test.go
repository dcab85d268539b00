package mysql

import (
	"context"
	"database/sql"
	"errors"
	"github.com/picomdm/picomdm/test/logtest"
	"strings"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"

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

// TestLogsThroughGivenLogger: the store's own lines and the MySQL
// driver's (which it would otherwise print to stderr in a format of its
// own) go to the logger the store was given, as JSON, tagged
// storage=mysql.
func TestLogsThroughGivenLogger(t *testing.T) {
	ctx := context.Background()
	var logs logtest.Buffer
	dsn := sqltest.MySQL(t)
	// One connection, so the one killed below is the one reused.
	s, err := Open(dsn, map[string]string{"max_open_conns": "1"}, jsonLogger(t, &logs))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	line := logs.Find(t, "storage schema migrated")
	if line == nil || line["storage"] != "mysql" || line["versions"] == nil {
		t.Fatalf("migration line %v, want one with storage=mysql and the versions applied: %v", line, logs.Lines(t))
	}

	// The server drops the store's idle connection: the driver notices
	// when the pool hands it out again, and logs it.
	var id int64
	if err := s.db.QueryRowContext(ctx, "SELECT CONNECTION_ID()").Scan(&id); err != nil {
		t.Fatal(err)
	}
	admin, err := sql.Open("mysql", dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close()
	if _, err := admin.ExecContext(ctx, "KILL ?", id); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for logs.Find(t, "mysql driver") == nil {
		if time.Now().After(deadline) {
			t.Fatalf("no driver line in the given logger: %v", logs.Lines(t))
		}
		// Each query reuses the connection until the driver has seen it
		// is gone (then database/sql opens a fresh one).
		var one int
		s.db.QueryRowContext(ctx, "SELECT 1").Scan(&one)
	}
	line = logs.Find(t, "mysql driver")
	if line["storage"] != "mysql" || line["detail"] == "" {
		t.Errorf("driver line %v, want storage=mysql and the driver's message", line)
	}
}

// TestMigrationGivesUpAtDeadline: while another session holds the
// migration lock, Open waits (and says so), then fails at its deadline
// with an error; once the lock is free it migrates.
func TestMigrationGivesUpAtDeadline(t *testing.T) {
	ctx := context.Background()
	dsn := sqltest.MySQL(t)
	cfg, err := mysql.ParseDSN(dsn)
	if err != nil {
		t.Fatal(err)
	}
	other, err := sql.Open("mysql", dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	holder, err := other.Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer holder.Close()
	lock := (&Store{dbName: cfg.DBName}).lockName("migrate")
	var got int
	if err := holder.QueryRowContext(ctx, "SELECT GET_LOCK(?, 0)", lock).Scan(&got); err != nil || got != 1 {
		t.Fatalf("GET_LOCK: %v, %v", got, err)
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
	if strings.Contains(err.Error(), "schema_migrations") {
		t.Errorf("Open got past the lock: %v", err)
	}
	if logs.Find(t, "waiting for the schema migration lock, held by another replica") == nil {
		t.Errorf("the wait was not logged: %v", logs.Lines(t))
	}

	if _, err := holder.ExecContext(ctx, "SELECT RELEASE_LOCK(?)", lock); err != nil {
		t.Fatal(err)
	}
	s, err = Open(dsn, nil, WithMigrateTimeout(time.Minute), jsonLogger(t, &logs))
	if err != nil {
		t.Fatalf("Open once the lock is free: %v", err)
	}
	s.Close()
}
