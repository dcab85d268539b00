// Package sqltest gives tests throw-away MySQL and PostgreSQL databases on
// the servers named by PICOMDM_TEST_MYSQL_DSN and PICOMDM_TEST_PGSQL_DSN
// (tools/testenv.sh sets both). Without the variable a test skips with a
// message — except under CI=true, where SQL tests must never skip, so it
// fails instead.
package sqltest

import (
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"net/url"
	"os"
	"strings"
	"testing"

	"github.com/go-sql-driver/mysql"
	_ "github.com/lib/pq" // registers the "postgres" driver
)

// Environment variables naming the test database servers.
const (
	MySQLEnv = "PICOMDM_TEST_MYSQL_DSN"
	PgSQLEnv = "PICOMDM_TEST_PGSQL_DSN"
)

func baseDSN(tb testing.TB, env string) string {
	tb.Helper()
	dsn := os.Getenv(env)
	if dsn == "" {
		if os.Getenv("CI") == "true" {
			tb.Fatalf("%s is not set: SQL tests must run in CI (see tools/testenv.sh)", env)
		}
		tb.Skipf("%s is not set: skipping this SQL test (run `make test`, which sets it, to include it)", env)
	}
	return dsn
}

func randomName() string {
	b := make([]byte, 6)
	rand.Read(b)
	return "picomdm_t_" + hex.EncodeToString(b)
}

// MySQL creates a fresh MySQL/MariaDB database, drops it when the test
// ends, and returns a DSN for it (with parseTime=true).
func MySQL(tb testing.TB) string {
	tb.Helper()
	cfg, err := mysql.ParseDSN(baseDSN(tb, MySQLEnv))
	if err != nil {
		tb.Fatalf("parsing %s: %v", MySQLEnv, err)
	}
	name := randomName()
	admin := cfg.Clone()
	admin.DBName = ""
	db, err := sql.Open("mysql", admin.FormatDSN())
	if err != nil {
		tb.Fatal(err)
	}
	if _, err := db.Exec("CREATE DATABASE " + name); err != nil {
		db.Close()
		tb.Fatalf("creating test database: %v", err)
	}
	tb.Cleanup(func() {
		db.Exec("DROP DATABASE IF EXISTS " + name)
		db.Close()
	})
	cfg.DBName = name
	cfg.ParseTime = true
	return cfg.FormatDSN()
}

// PostgreSQL creates a fresh PostgreSQL database, drops it when the test
// ends, and returns a DSN (URL form) for it.
func PostgreSQL(tb testing.TB) string {
	tb.Helper()
	base := baseDSN(tb, PgSQLEnv)
	u, err := url.Parse(base)
	if err != nil || (u.Scheme != "postgres" && u.Scheme != "postgresql") {
		tb.Fatalf("%s must be a postgres:// URL: %q", PgSQLEnv, base)
	}
	db, err := sql.Open("postgres", base)
	if err != nil {
		tb.Fatal(err)
	}
	name := randomName()
	if _, err := db.Exec("CREATE DATABASE " + name); err != nil {
		db.Close()
		tb.Fatalf("creating test database: %v", err)
	}
	tb.Cleanup(func() {
		// Terminate stragglers (pools of the code under test) so the
		// drop does not wait on them.
		db.Exec("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()", name)
		db.Exec("DROP DATABASE IF EXISTS " + name)
		db.Close()
	})
	u.Path = "/" + strings.TrimPrefix(name, "/")
	return u.String()
}
