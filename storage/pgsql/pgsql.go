// Package pgsql is PicoMDM's PostgreSQL storage backend (PostgreSQL 13+),
// built for several stateless replicas sharing one database.
//
// The schema (schema/*.sql, embedded) is migrated at Open under an
// advisory lock, so replicas may start at once. The command queue table
// holds pending commands only: a final answer moves the row to the results
// table in one statement, so finding the next command is one index probe
// whatever the enrollment's history. Answered results are purged (Purge,
// run by the app's background runner) after the retention period (or not kept at all with
// delete=1). See schema/0001_init.sql for the tables and which query uses
// which index.
//
// Options (-storage-options, see sqlstore.ParseOptions): delete, migrate,
// retention, purge_interval, max_open_conns, max_idle_conns,
// conn_max_lifetime, conn_max_idle_time.
package pgsql

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"embed"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/lib/pq"
	"github.com/picomdm/picomdm/storage"
	"github.com/picomdm/picomdm/storage/internal/sqlstore"
)

//go:embed schema/*.sql
var schemaFS embed.FS

// Advisory lock keys (pg_advisory_lock takes one bigint). The high bytes
// spell "picomdm", so they are unlikely to collide with another
// application's locks in a shared database.
const (
	migrateLockKey int64 = 0x7069636f6d646d01
	purgeLockKey   int64 = 0x7069636f6d646d02
)

// pingTimeout bounds the connectivity check in Open.
const pingTimeout = 30 * time.Second

// Waits between attempts to take the migration lock while another replica
// holds it: short at first (a migration usually takes a moment), longer
// while it lasts.
const (
	lockPollMin = 25 * time.Millisecond
	lockPollMax = time.Second
)

// Store is the PostgreSQL backend: it implements storage.Store. Build it
// with Open and release it with Close. It is safe for concurrent use, and
// any number of Stores (in one process or many) may share a database.
type Store struct {
	db     *sql.DB
	opts   sqlstore.Options
	stmts  stmtCache
	logger *slog.Logger // Purge reports here
	// sealer seals the private keys written (push certificates', the
	// SCEP CA's) and opens those read: keyseal.None without a storage key.
	sealer storage.KeySealer

	// seen throttles last_seen_at writes per enrollment (seenInterval).
	seen *sqlstore.Throttle

	closeOnce sync.Once
	closeErr  error
}

var (
	_ storage.Store                  = (*Store)(nil)
	_ storage.CommandReportAndNexter = (*Store)(nil)
)

// Option configures a Store beyond its DSN and -storage-options.
type Option func(*sqlstore.Config)

// WithLogger sets the logger the store reports to (migrations, the
// purge, server warnings), so its lines take the process's log
// format; nil means slog.Default(). Every line carries storage=pgsql.
func WithLogger(logger *slog.Logger) Option { return sqlstore.Logger(logger) }

// WithMigrateTimeout bounds how long Open waits for the migration lock
// (another replica migrating) and applies the migrations, default
// sqlstore.DefaultMigrateTimeout; past it Open fails with an error wrapping
// context.DeadlineExceeded. 0 or less keeps the default.
func WithMigrateTimeout(d time.Duration) Option { return sqlstore.MigrateTimeout(d) }

// WithKeySealer sets the KeySealer that seals the private keys the store
// writes (push certificates' and the SCEP CA's) and opens those it reads
// (-storage-key); nil means keyseal.None: keys are stored as they are, and
// sealed ones are refused.
func WithKeySealer(s storage.KeySealer) Option { return sqlstore.Sealer(s) }

// Open connects to the PostgreSQL database named by dsn (a lib/pq DSN:
// "postgres://user@host/db?sslmode=disable" or "host=… dbname=…"),
// sizes the connection pool and applies the schema migrations unless
// migrate=0. The purge (when delete=1 or retention is not 0) is Purge,
// which the app's background runner calls. options are the
// -storage-options key/value pairs.
//
// Unless the DSN sets binary_parameters itself, it is turned on: lib/pq
// then sends each parameterised query in one round trip instead of two.
// Unless it sets plan_cache_mode, each connection plans every execution of
// the prepared request-path statements afresh (see customPlans).
func Open(dsn string, options map[string]string, with ...Option) (*Store, error) {
	c := sqlstore.NewConfig("pgsql", with)
	opts, err := sqlstore.ParseOptions(options)
	if err != nil {
		return nil, fmt.Errorf("pgsql: %w", err)
	}
	cfg, err := pq.NewConfig(dsn)
	if err != nil {
		return nil, fmt.Errorf("pgsql: parsing DSN: %w", err)
	}
	if !strings.Contains(dsn, "binary_parameters") {
		cfg.BinaryParameters = true
	}
	if cfg.FallbackApplicationName == "" {
		cfg.FallbackApplicationName = "picomdm"
	}
	pqConnector, err := pq.NewConnectorConfig(cfg)
	if err != nil {
		return nil, fmt.Errorf("pgsql: %w", err)
	}
	var connector driver.Connector = pqConnector
	if !strings.Contains(dsn, "plan_cache_mode") {
		connector = customPlans{pqConnector}
	}
	db := sql.OpenDB(connector)
	opts.ApplyPool(db)

	ctx, cancel := context.WithTimeout(context.Background(), pingTimeout)
	err = db.PingContext(ctx)
	cancel()
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("pgsql: connecting: %w", err)
	}
	if opts.Migrate {
		ctx, cancel := context.WithTimeout(context.Background(), c.MigrateTimeout)
		err := migrate(ctx, db, c.Logger)
		cancel()
		if err != nil {
			db.Close()
			return nil, fmt.Errorf("pgsql: %w", err)
		}
	}
	warnIfNoAutovacuum(db, c.Logger)
	s := &Store{db: db, opts: opts, stmts: stmtCache{db: db}, logger: c.Logger, sealer: c.Sealer, seen: sqlstore.NewThrottle(seenInterval)}
	return s, nil
}

// Close closes the connection pool. Calling it again returns the first
// call's result.
func (s *Store) Close() error {
	s.closeOnce.Do(func() {
		s.stmts.close()
		s.closeErr = s.db.Close()
	})
	return s.closeErr
}

// Ping checks that the database is reachable.
func (s *Store) Ping(ctx context.Context) error {
	if err := s.db.PingContext(ctx); err != nil {
		return fmt.Errorf("pgsql: ping: %w", err)
	}
	return nil
}

// customPlans opens connections that plan every execution of a prepared
// statement with its actual parameters (plan_cache_mode =
// force_custom_plan). The request path prepares its statements (see
// stmtCache), and by default PostgreSQL would switch a prepared statement
// to a generic plan after five executions and keep it for the life of the
// connection: a generic plan made while a table was tiny (a sequential
// scan is cheapest there) would then be used on that table grown to
// millions of rows until autoanalyze invalidates it. Planning each time
// costs about 40µs here; parsing, which preparing saves, costs more.
//
// It is a SET on each new connection rather than a startup parameter, so
// that connection poolers that refuse unknown startup parameters
// (PgBouncer) still work.
type customPlans struct{ *pq.Connector }

// Connect implements driver.Connector.
func (c customPlans) Connect(ctx context.Context) (driver.Conn, error) {
	conn, err := c.Connector.Connect(ctx)
	if err != nil {
		return nil, err
	}
	exec, ok := conn.(driver.ExecerContext)
	if !ok {
		conn.Close()
		return nil, errors.New("pgsql: driver connection cannot execute statements")
	}
	if _, err := exec.ExecContext(ctx, "SET plan_cache_mode = force_custom_plan", nil); err != nil {
		conn.Close()
		return nil, fmt.Errorf("setting plan_cache_mode: %w", err)
	}
	return conn, nil
}

// dialect is sqlstore.Dialect for PostgreSQL: a session-level advisory
// lock serialises replicas migrating at once.
type dialect struct{ logger *slog.Logger }

// Lock takes the migration lock for conn's session, waiting while another
// replica holds it until ctx ends. Like the MySQL backend's GET_LOCK loop,
// it never blocks in the server past the deadline: it asks with
// pg_try_advisory_lock, which answers at once, and waits in between, so
// the deadline holds even where a cancel request cannot reach the server
// (some connection poolers).
func (d dialect) Lock(ctx context.Context, conn *sql.Conn) error {
	wait := lockPollMin
	for logged := false; ; logged = true {
		var got bool
		err := conn.QueryRowContext(ctx, "SELECT pg_try_advisory_lock($1)", migrateLockKey).Scan(&got)
		switch {
		case ctx.Err() != nil:
			return fmt.Errorf("waiting for the migration lock: %w", ctx.Err())
		case err != nil:
			return fmt.Errorf("pg_try_advisory_lock: %w", err)
		case got:
			return nil
		}
		if !logged {
			d.logger.InfoContext(ctx, "waiting for the schema migration lock, held by another replica")
		}
		timer := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			timer.Stop()
			return fmt.Errorf("waiting for the migration lock: %w", ctx.Err())
		case <-timer.C:
		}
		wait = min(wait*2, lockPollMax)
	}
}

// Unlock releases the migration lock.
func (dialect) Unlock(ctx context.Context, conn *sql.Conn) error {
	var released bool
	if err := conn.QueryRowContext(ctx, "SELECT pg_advisory_unlock($1)", migrateLockKey).Scan(&released); err != nil {
		return err
	}
	if !released {
		return errors.New("migration lock was not held")
	}
	return nil
}

// Placeholder returns PostgreSQL's n-th placeholder, $n.
func (dialect) Placeholder(n int) string { return fmt.Sprintf("$%d", n) }

// migrate applies the embedded schema migrations, within ctx's deadline.
func migrate(ctx context.Context, db *sql.DB, logger *slog.Logger) error {
	migrations, err := sqlstore.LoadMigrations(schemaFS, "schema")
	if err != nil {
		return err
	}
	applied, err := sqlstore.Migrate(ctx, db, dialect{logger: logger}, migrations)
	if err != nil {
		return err
	}
	if len(applied) > 0 {
		logger.Info("storage schema migrated", "versions", applied)
	}
	return nil
}

// warnIfNoAutovacuum logs a warning when the server runs without
// autovacuum: the queue tables churn (every answer deletes a queue row),
// and without vacuuming their space is never reclaimed and their indexes
// keep dead entries. The schema already asks for early vacuums of
// command_queue; only the server setting can turn it off.
func warnIfNoAutovacuum(db *sql.DB, logger *slog.Logger) {
	ctx, cancel := context.WithTimeout(context.Background(), pingTimeout)
	defer cancel()
	var setting string
	if err := db.QueryRowContext(ctx, "SELECT current_setting('autovacuum')").Scan(&setting); err != nil {
		return // not worth failing Open for
	}
	if setting != "on" {
		autovacuumWarning.Do(func() {
			logger.Warn("PostgreSQL autovacuum is off: the command queue tables will bloat and slow down unless they are vacuumed by other means")
		})
	}
}

// autovacuumWarning makes the warning once per process, however many
// stores it opens.
var autovacuumWarning sync.Once
