package mysql

import (
	"context"
	"database/sql"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"

	"github.com/picomdm/picomdm/storage/internal/sqlstore/sqlstoretest"
	"github.com/picomdm/picomdm/test/logtest"
	"github.com/picomdm/picomdm/test/sqltest"
)

// TestLogsThroughGivenLogger: the store's own lines and the MySQL
// driver's (which it would otherwise print to stderr in a format of its
// own) go to the logger the store was given, as JSON, tagged
// storage=mysql.
func TestLogsThroughGivenLogger(t *testing.T) {
	ctx := context.Background()
	var logs logtest.Buffer
	dsn := sqltest.MySQL(t)
	// One connection, so the one killed below is the one reused.
	s, err := Open(dsn, map[string]string{"max_open_conns": "1"}, WithLogger(sqlstoretest.JSONLogger(t, &logs)))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	sqlstoretest.MigrationLogged(t, &logs, "mysql")

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
	line := logs.Find(t, "mysql driver")
	if line["storage"] != "mysql" || line["detail"] == "" {
		t.Errorf("driver line %v, want storage=mysql and the driver's message", line)
	}
}

// TestMigrationGivesUpAtDeadline: sqlstoretest.MigrationGivesUpAtDeadline,
// another session holding the GET_LOCK migration lock.
func TestMigrationGivesUpAtDeadline(t *testing.T) {
	ctx := context.Background()
	dsn := sqltest.MySQL(t)
	cfg, err := mysql.ParseDSN(dsn)
	if err != nil {
		t.Fatal(err)
	}
	holder := sqlstoretest.Conn(t, "mysql", dsn)
	lock := (&Store{dbName: cfg.DBName}).lockName("migrate")
	var got int
	if err := holder.QueryRowContext(ctx, "SELECT GET_LOCK(?, 0)", lock).Scan(&got); err != nil || got != 1 {
		t.Fatalf("GET_LOCK: %v, %v", got, err)
	}
	sqlstoretest.MigrationGivesUpAtDeadline(t,
		func(timeout time.Duration, logger *slog.Logger) (io.Closer, error) {
			return Open(dsn, nil, WithMigrateTimeout(timeout), WithLogger(logger))
		},
		func(openErr error) bool { return strings.Contains(openErr.Error(), "schema_migrations") },
		func() {
			if _, err := holder.ExecContext(ctx, "SELECT RELEASE_LOCK(?)", lock); err != nil {
				t.Fatal(err)
			}
		})
}
