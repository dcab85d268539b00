package mysql

import (
	"context"
	"strings"
	"testing"

	"github.com/picomdm/picomdm/mdm"
	"github.com/picomdm/picomdm/storage/internal/sqlstore"
	"github.com/picomdm/picomdm/storage/internal/sqlstore/sqlstoretest"
	"github.com/picomdm/picomdm/storage/storagetest"
	"github.com/picomdm/picomdm/test/sqltest"
)

// openTest opens a store on a fresh throw-away database (see
// test/sqltest: PICOMDM_TEST_MYSQL_DSN names the server; without it the
// test skips, or fails under CI=true) and closes it when the test ends.
func openTest(tb testing.TB, options map[string]string) (*Store, string) {
	tb.Helper()
	dsn := sqltest.MySQL(tb)
	return openDSN(tb, dsn, options), dsn
}

// openDSN opens a store on dsn and closes it when the test ends.
func openDSN(tb testing.TB, dsn string, options map[string]string, with ...Option) *Store {
	tb.Helper()
	s, err := Open(dsn, options, with...)
	return sqlstoretest.Closing(tb, s, err)
}

func TestConformance(t *testing.T) {
	s, _ := openTest(t, nil)
	storagetest.Run(t, s)
	// Twice against the same database: the suite must not depend on a
	// fresh one.
	storagetest.Run(t, s)
}

// TestConformanceStatementByStatement: the suite on a store whose
// connections take no multi-statement requests (multiStatements=false in
// the DSN): reports and check-ins go statement by statement.
func TestConformanceStatementByStatement(t *testing.T) {
	_, dsn := openTest(t, nil)
	storagetest.Run(t, openDSNParam(t, dsn, nil, "multiStatements=false"))
}

// TestReportAndNextDeleteMode: the queue semantics through the
// report-and-next path with delete=1, whose report batches differ (no
// results, the command row dropped with its last answer). Only that group:
// the whole suite expects an answered CommandUUID to stay taken, which
// delete=1 does not keep here.
func TestReportAndNextDeleteMode(t *testing.T) {
	s, _ := openTest(t, map[string]string{"delete": "1"})
	storagetest.RunReportAndNext(t, s)
}

// count runs a SELECT COUNT(*) query.
func count(tb testing.TB, s *Store, query string, args ...any) int {
	tb.Helper()
	var n int
	if err := s.db.QueryRow(query, args...).Scan(&n); err != nil {
		tb.Fatalf("%s: %v", query, err)
	}
	return n
}

// TestOpenConcurrent: replicas starting at once against a fresh database
// all come up, and the schema is migrated exactly once.
func TestOpenConcurrent(t *testing.T) {
	dsn := sqltest.MySQL(t)
	stores := sqlstoretest.OpenReplicas(t, 4, func() (*Store, error) { return Open(dsn, nil) })
	ms, err := sqlstore.LoadMigrations(schemaFS, "schema")
	if err != nil {
		t.Fatal(err)
	}
	sqlstoretest.MigratedOnce(t, stores[0].db, ms)
	// Every replica works.
	d := storagetest.NewDevice()
	storagetest.Enroll(t, stores[1], d)
	cmd := storagetest.NewCommand("ProfileList")
	if _, err := stores[2].EnqueueCommand(context.Background(), []string{d.ID()}, cmd); err != nil {
		t.Fatal(err)
	}
	got, err := stores[3].RetrieveNextCommand(d.Request())
	if err != nil || got == nil || got.CommandUUID != cmd.CommandUUID {
		t.Fatalf("next command through another replica: %v, %v", got, err)
	}
}

// TestMigrateAgain: reopening a migrated database applies nothing, the
// statements are safe to re-run (as after a crash before the version was
// recorded), and migrate=0 skips migrating.
func TestMigrateAgain(t *testing.T) {
	s, _ := openTest(t, nil)
	ms, err := sqlstore.LoadMigrations(schemaFS, "schema")
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	applied, err := sqlstore.Migrate(ctx, s.db, dialect{lock: s.lockName("migrate")}, ms)
	if err != nil || len(applied) != 0 {
		t.Fatalf("migrating a migrated database: applied %v, %v; want none", applied, err)
	}
	// Forget the versions: every statement runs again.
	if _, err := s.db.Exec("DELETE FROM schema_migrations"); err != nil {
		t.Fatal(err)
	}
	applied, err = sqlstore.Migrate(ctx, s.db, dialect{lock: s.lockName("migrate")}, ms)
	if err != nil || len(applied) != len(ms) {
		t.Fatalf("re-running migrations: applied %v, %v; want all %d", applied, err, len(ms))
	}
	// A statement that fails because its change is already there.
	again := []sqlstore.Migration{{Version: 1000, Name: "again", Statements: []string{
		"ALTER TABLE devices ADD INDEX devices_serial_number (serial_number)",
	}}}
	if _, err := sqlstore.Migrate(ctx, s.db, dialect{lock: s.lockName("migrate")}, again); err != nil {
		t.Fatalf("re-running an index creation: %v", err)
	}

	fresh := sqltest.MySQL(t)
	s2, err := Open(fresh, map[string]string{"migrate": "0"})
	if err != nil {
		t.Fatalf("Open with migrate=0: %v", err)
	}
	defer s2.Close()
	if _, err := sqlstore.Version(ctx, s2.db); err == nil {
		t.Fatal("migrate=0 created schema_migrations")
	}
}

// TestDSN: Open's DSN adjustments and option errors.
func TestDSN(t *testing.T) {
	s, dsn := openTest(t, nil)
	var level string
	err := s.db.QueryRow("SELECT @@SESSION.transaction_isolation").Scan(&level)
	if err != nil {
		err = s.db.QueryRow("SELECT @@SESSION.tx_isolation").Scan(&level)
	}
	if err != nil || level != "READ-COMMITTED" {
		t.Fatalf("session isolation = %q, %v; want READ-COMMITTED", level, err)
	}
	var mode string
	if err := s.db.QueryRow("SELECT @@SESSION.sql_mode").Scan(&mode); err != nil || !strings.Contains(mode, "STRICT_ALL_TABLES") {
		t.Fatalf("session sql_mode = %q, %v; want it strict", mode, err)
	}
	// An ID too long for the schema is refused, not truncated into
	// another one.
	// (mdm refuses longer parts than 255 bytes before storage sees them;
	// this is the schema's own guard.)
	long := storagetest.NewDevice()
	lr := long.Request()
	lr.EnrollID = &mdm.EnrollID{Type: mdm.Device, ID: strings.Repeat("x", 600)}
	if err := s.StoreTokenUpdate(lr, long.TokenUpdate(nil)); err == nil {
		t.Fatal("TokenUpdate with a 600-byte enrollment ID: no error")
	}
	for _, tc := range []struct {
		dsn, param string
		want       bool
	}{
		{"u@tcp(h)/db?parseTime=true&interpolateParams=false", "interpolateParams", true},
		{"u@tcp(h)/db?parseTime=true", "interpolateParams", false},
		{"u@tcp(h)/db", "interpolateParams", false},
		{"u@tcp(h)/db?xinterpolateParams=1", "interpolateParams", false},
	} {
		if got := dsnHasParam(tc.dsn, tc.param); got != tc.want {
			t.Errorf("dsnHasParam(%q, %q) = %v, want %v", tc.dsn, tc.param, got, tc.want)
		}
	}
	if _, err := Open(dsn, map[string]string{"retention": "soon"}); err == nil {
		t.Error("Open with a bad option: no error")
	}
	if _, err := Open("root@tcp(127.0.0.1:3306)/", nil); err == nil {
		t.Error("Open without a database name: no error")
	}
	if err := s.Ping(context.Background()); err != nil {
		t.Errorf("Ping: %v", err)
	}
}
