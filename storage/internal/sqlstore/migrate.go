package sqlstore

import (
	"context"
	"database/sql"
	"fmt"
	"io/fs"
	"path"
	"sort"
	"strconv"
	"strings"
	"time"
)

// DefaultMigrateTimeout bounds how long a backend's Open waits for the
// migration lock (another replica migrating) and applies its own
// migrations. A replica that cannot migrate in that time fails to start
// with an error instead of hanging.
const DefaultMigrateTimeout = 10 * time.Minute

// Migration is one versioned schema change: a file NNNN_name.sql.
type Migration struct {
	Version int
	Name    string
	// Statements are the file's statements, split on lines that are just
	// ";" or end in ";" (the files are written for that).
	Statements []string
}

// LoadMigrations reads every NNNN_name.sql file in dir of fsys, in version
// order. Versions must be unique and positive.
func LoadMigrations(fsys fs.FS, dir string) ([]Migration, error) {
	entries, err := fs.ReadDir(fsys, dir)
	if err != nil {
		return nil, fmt.Errorf("reading migrations: %w", err)
	}
	var ms []Migration
	seen := map[int]string{}
	for _, e := range entries {
		if e.IsDir() || !strings.HasSuffix(e.Name(), ".sql") {
			continue
		}
		num, name, ok := strings.Cut(strings.TrimSuffix(e.Name(), ".sql"), "_")
		v, err := strconv.Atoi(num)
		if !ok || err != nil || v <= 0 {
			return nil, fmt.Errorf("migration file %q: want NNNN_name.sql", e.Name())
		}
		if prev, dup := seen[v]; dup {
			return nil, fmt.Errorf("migration version %d twice: %s and %s", v, prev, e.Name())
		}
		seen[v] = e.Name()
		b, err := fs.ReadFile(fsys, path.Join(dir, e.Name()))
		if err != nil {
			return nil, fmt.Errorf("reading migration %s: %w", e.Name(), err)
		}
		ms = append(ms, Migration{Version: v, Name: name, Statements: SplitStatements(string(b))})
	}
	sort.Slice(ms, func(i, j int) bool { return ms[i].Version < ms[j].Version })
	return ms, nil
}

// SplitStatements splits SQL text into statements at semicolons that end a
// line, dropping "--" comment lines and empty statements.
func SplitStatements(text string) []string {
	var out []string
	var cur strings.Builder
	for _, line := range strings.Split(text, "\n") {
		trimmed := strings.TrimSpace(line)
		if trimmed == "" || strings.HasPrefix(trimmed, "--") {
			continue
		}
		cur.WriteString(line)
		cur.WriteByte('\n')
		if strings.HasSuffix(trimmed, ";") {
			if s := strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(cur.String()), ";")); s != "" {
				out = append(out, s)
			}
			cur.Reset()
		}
	}
	if s := strings.TrimSpace(cur.String()); s != "" {
		out = append(out, s)
	}
	return out
}

// Dialect is what Migrate needs from a backend: a cross-process lock held
// on one connection (so that replicas starting at once migrate one after
// the other), and its placeholder style.
type Dialect interface {
	// Lock takes the migration lock on conn, waiting for it.
	Lock(ctx context.Context, conn *sql.Conn) error
	// Unlock releases it.
	Unlock(ctx context.Context, conn *sql.Conn) error
	// Placeholder returns the n-th (1-based) bind placeholder: "?" or "$n".
	Placeholder(n int) string
}

// RerunTolerant is an optional interface of a Dialect whose DDL cannot
// always be written to be re-run (MySQL 8.0 has no CREATE INDEX IF NOT
// EXISTS nor ADD COLUMN IF NOT EXISTS). Migrate skips a failing statement
// when AlreadyApplied says its error only means the change is already in
// place (a duplicate index or column left by a migration that crashed
// before it was recorded).
type RerunTolerant interface {
	AlreadyApplied(err error) bool
}

// Migrate applies the migrations newer than the database's version, each
// recorded in the schema_migrations table, under the dialect's lock. It is
// idempotent: run again (or by another replica) it does nothing. DDL is
// not transactional on MySQL, so each statement must be safe to re-run
// after a crash mid-migration (CREATE TABLE IF NOT EXISTS …; see also
// RerunTolerant).
func Migrate(ctx context.Context, db *sql.DB, d Dialect, migrations []Migration) (applied []int, err error) {
	conn, err := db.Conn(ctx)
	if err != nil {
		return nil, fmt.Errorf("migrate: connecting: %w", err)
	}
	defer conn.Close()
	if err := d.Lock(ctx, conn); err != nil {
		return nil, fmt.Errorf("migrate: taking lock: %w", err)
	}
	defer func() {
		if uerr := d.Unlock(context.WithoutCancel(ctx), conn); uerr != nil && err == nil {
			err = fmt.Errorf("migrate: releasing lock: %w", uerr)
		}
	}()
	if _, err := conn.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (
	version INTEGER NOT NULL PRIMARY KEY,
	name VARCHAR(255) NOT NULL,
	applied_at TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP
)`); err != nil {
		return nil, fmt.Errorf("migrate: creating schema_migrations: %w", err)
	}
	current, err := version(ctx, conn)
	if err != nil {
		return nil, err
	}
	for _, m := range migrations {
		if m.Version <= current {
			continue
		}
		for i, stmt := range m.Statements {
			if _, err := conn.ExecContext(ctx, stmt); err != nil {
				if rt, ok := d.(RerunTolerant); ok && rt.AlreadyApplied(err) {
					continue
				}
				return applied, fmt.Errorf("migration %04d_%s statement %d: %w", m.Version, m.Name, i+1, err)
			}
		}
		q := fmt.Sprintf("INSERT INTO schema_migrations (version, name) VALUES (%s, %s)", d.Placeholder(1), d.Placeholder(2))
		if _, err := conn.ExecContext(ctx, q, m.Version, m.Name); err != nil {
			return applied, fmt.Errorf("recording migration %d: %w", m.Version, err)
		}
		applied = append(applied, m.Version)
	}
	return applied, nil
}

// Version returns the highest applied migration version (0 for none).
func Version(ctx context.Context, db *sql.DB) (int, error) {
	conn, err := db.Conn(ctx)
	if err != nil {
		return 0, fmt.Errorf("reading schema version: connecting: %w", err)
	}
	defer conn.Close()
	return version(ctx, conn)
}

func version(ctx context.Context, conn *sql.Conn) (int, error) {
	var v sql.NullInt64
	if err := conn.QueryRowContext(ctx, "SELECT MAX(version) FROM schema_migrations").Scan(&v); err != nil {
		return 0, fmt.Errorf("reading schema version: %w", err)
	}
	return int(v.Int64), nil
}
