package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"slices"
	"strings"
	"testing"
	"testing/fstest"
)

func TestSplitStatements(t *testing.T) {
	text := `-- a comment line; with a semicolon
CREATE TABLE a (
    -- inside; a comment
    x INT, y TEXT DEFAULT 'a;b'
);

CREATE TABLE b (x INT)
;
   ;
INSERT INTO b VALUES (1); -- not split here
SELECT 2`
	got := SplitStatements(text)
	want := []string{
		"CREATE TABLE a (\n    x INT, y TEXT DEFAULT 'a;b'\n)",
		"CREATE TABLE b (x INT)",
		"INSERT INTO b VALUES (1); -- not split here\nSELECT 2",
	}
	if !slices.Equal(got, want) {
		t.Fatalf("SplitStatements:\n got %q\nwant %q", got, want)
	}
	if got := SplitStatements("-- only comments\n\n"); len(got) != 0 {
		t.Fatalf("SplitStatements of comments = %q, want none", got)
	}
}

func TestLoadMigrations(t *testing.T) {
	fsys := fstest.MapFS{
		"schema/0002_more.sql":  {Data: []byte("CREATE TABLE b (x INT);\nCREATE TABLE c (x INT);\n")},
		"schema/0001_init.sql":  {Data: []byte("CREATE TABLE a (x INT);\n")},
		"schema/0010_later.sql": {Data: []byte("CREATE TABLE d (x INT);\n")},
		"schema/README.md":      {Data: []byte("not a migration")},
		"schema/sub/0003_x.sql": {Data: []byte("ignored: in a subdirectory")},
	}
	ms, err := LoadMigrations(fsys, "schema")
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, m := range ms {
		got = append(got, m.Name)
	}
	if want := []string{"init", "more", "later"}; !slices.Equal(got, want) {
		t.Fatalf("migration order %v, want %v", got, want)
	}
	if ms[2].Version != 10 || len(ms[1].Statements) != 2 {
		t.Fatalf("migrations parsed wrong: %+v", ms)
	}

	for name, bad := range map[string]fstest.MapFS{
		"no number":   {"s/init.sql": {Data: []byte("x;")}},
		"zero":        {"s/0000_init.sql": {Data: []byte("x;")}},
		"not numeric": {"s/00a1_init.sql": {Data: []byte("x;")}},
		"duplicate":   {"s/0001_a.sql": {Data: []byte("x;")}, "s/01_b.sql": {Data: []byte("y;")}},
	} {
		if _, err := LoadMigrations(bad, "s"); err == nil {
			t.Errorf("%s: LoadMigrations: no error", name)
		}
	}
	if _, err := LoadMigrations(fsys, "missing"); err == nil {
		t.Error("LoadMigrations of a missing directory: no error")
	}
}

// fakeDialect records its lock calls on the fake database.
type fakeDialect struct {
	db       *fakeDB
	lockErr  error
	rerunErr error
}

func (d fakeDialect) Lock(context.Context, *sql.Conn) error {
	if d.lockErr != nil {
		return d.lockErr
	}
	d.db.mu.Lock()
	d.db.locks++
	d.db.mu.Unlock()
	return nil
}

func (d fakeDialect) Unlock(context.Context, *sql.Conn) error {
	d.db.mu.Lock()
	d.db.locks--
	d.db.mu.Unlock()
	return nil
}

func (fakeDialect) Placeholder(int) string { return "?" }

// rerunDialect is fakeDialect with RerunTolerant.
type rerunDialect struct{ fakeDialect }

func (d rerunDialect) AlreadyApplied(err error) bool { return errors.Is(err, d.rerunErr) }

func TestMigrate(t *testing.T) {
	ctx := context.Background()
	fdb := newFakeDB()
	db := sql.OpenDB(&fakeConnector{db: fdb})
	defer db.Close()
	d := fakeDialect{db: fdb}
	ms := []Migration{
		{Version: 1, Name: "init", Statements: []string{"CREATE a", "CREATE b"}},
		{Version: 2, Name: "more", Statements: []string{"ALTER a"}},
	}
	applied, err := Migrate(ctx, db, d, ms)
	if err != nil || !slices.Equal(applied, []int{1, 2}) {
		t.Fatalf("Migrate: %v, %v; want [1 2]", applied, err)
	}
	if want := []string{"CREATE a", "CREATE b", "ALTER a"}; !slices.Equal(fdb.executed, want) {
		t.Fatalf("executed %q, want %q", fdb.executed, want)
	}
	if fdb.locks != 0 {
		t.Fatalf("lock count %d after Migrate, want 0 (released)", fdb.locks)
	}
	if v, err := Version(ctx, db); err != nil || v != 2 {
		t.Fatalf("Version = %d, %v; want 2", v, err)
	}

	// Again: nothing to do. A new migration: only it runs.
	fdb.executed = nil
	applied, err = Migrate(ctx, db, d, ms)
	if err != nil || len(applied) != 0 || len(fdb.executed) != 0 {
		t.Fatalf("second Migrate: applied %v, executed %q, %v; want nothing", applied, fdb.executed, err)
	}
	ms = append(ms, Migration{Version: 3, Name: "third", Statements: []string{"CREATE INDEX i", "CREATE c"}})
	applied, err = Migrate(ctx, db, d, ms)
	if err != nil || !slices.Equal(applied, []int{3}) {
		t.Fatalf("Migrate of a new version: %v, %v", applied, err)
	}

	// A failing statement stops the migration, unrecorded, and says
	// which it was.
	boom := errors.New("boom")
	fdb.fail["CREATE y"] = boom
	ms = append(ms, Migration{Version: 4, Name: "fourth", Statements: []string{"CREATE x", "CREATE y", "CREATE z"}})
	applied, err = Migrate(ctx, db, d, ms)
	if !errors.Is(err, boom) || len(applied) != 0 || !strings.Contains(err.Error(), "0004_fourth statement 2") {
		t.Fatalf("Migrate with a failing statement: %v, %v", applied, err)
	}
	if v, _ := Version(ctx, db); v != 3 {
		t.Fatalf("Version after a failed migration = %d, want 3", v)
	}
	if fdb.locks != 0 {
		t.Fatal("lock not released after a failed migration")
	}

	// A dialect that recognises the error as "already applied" goes on.
	rd := rerunDialect{fakeDialect{db: fdb, rerunErr: boom}}
	applied, err = Migrate(ctx, db, rd, ms)
	if err != nil || !slices.Equal(applied, []int{4}) {
		t.Fatalf("Migrate with a re-run-tolerant dialect: %v, %v", applied, err)
	}

	// No lock, no migration.
	lockErr := errors.New("lock held elsewhere")
	ms = append(ms, Migration{Version: 5, Name: "fifth", Statements: []string{"CREATE q"}})
	if _, err := Migrate(ctx, db, fakeDialect{db: fdb, lockErr: lockErr}, ms); !errors.Is(err, lockErr) {
		t.Fatalf("Migrate without the lock: %v, want %v", err, lockErr)
	}
	if v, _ := Version(ctx, db); v != 4 {
		t.Fatalf("Version after Migrate without the lock = %d, want 4", v)
	}
}
