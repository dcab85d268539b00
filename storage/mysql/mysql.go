// Package mysql is PicoMDM's MySQL storage backend (MySQL 8.0+, MariaDB
// 10.11+), for running any number of stateless replicas against one
// database.
//
// The schema (schema/*.sql, embedded) is migrated at Open. Its design is
// explained in schema/0001_init.sql; in short, the command queue keeps only
// pending commands (a final answer moves the row to results), so the
// per-request queries are single index lookups whose cost does not grow
// with history, and a multi-target enqueue is a few set-based statements.
//
// Every session runs at READ COMMITTED: InnoDB then takes no gap locks,
// so reports for unknown commands, Idle updates and big enqueues do not
// block or deadlock each other. The rare deadlocks that remain are retried
// (see sqlstore.Retry).
package mysql

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"embed"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-sql-driver/mysql"

	"github.com/picomdm/picomdm/storage"
	"github.com/picomdm/picomdm/storage/internal/sqlstore"
)

//go:embed schema/*.sql
var schemaFS embed.FS

// MySQL error numbers the backend acts on.
const (
	errDupEntry        = 1062 // ER_DUP_ENTRY
	errLockWaitTimeout = 1205 // ER_LOCK_WAIT_TIMEOUT
	errLockDeadlock    = 1213 // ER_LOCK_DEADLOCK
	errUnknownSysVar   = 1193 // ER_UNKNOWN_SYSTEM_VARIABLE
)

// Tuning of the statements that handle many IDs at once.
const (
	// idChunk is how many IDs one IN list or multi-row INSERT carries.
	// With 2 placeholders per queue row that is 10,000 placeholders,
	// far below MySQL's 65,535; about 0.5 MB of SQL text when the
	// driver interpolates, far below max_allowed_packet; and an IN list
	// whose ranges fit MySQL's range_optimizer_max_mem_size (8 MB by
	// default; past it the optimizer would fall back to a table scan).
	// Larger chunks were measured no faster.
	idChunk = 5000
	// retryAttempts bounds how often a transaction is run when the
	// database rolls it back for a deadlock or a lock-wait timeout.
	retryAttempts = 5
	// lastSeenInterval is how stale an enrollment's last_seen_at may get.
	lastSeenInterval = time.Minute
	// rollbackTimeout bounds the ROLLBACK after a failed report batch.
	rollbackTimeout = 5 * time.Second
)

// Store is the MySQL backend. Build it with Open; Close it when done.
type Store struct {
	db     *sql.DB
	opts   sqlstore.Options
	dbName string
	logger *slog.Logger
	// sealer seals the private keys stored (push certificates', the SCEP
	// CA's) and opens them again; keyseal.None without a storage key.
	sealer storage.KeySealer
	// seen throttles last_seen_at writes per enrollment.
	seen *sqlstore.Throttle
	// multiStatements: connections take multi-statement requests, with
	// parameters interpolated client-side (see
	// StoreCommandReportAndRetrieveNext).
	multiStatements bool
	// retries counts transactions run again after a deadlock or lock-wait
	// timeout (for tests).
	retries atomic.Int64

	closeErr error
	closed   sync.Once
}

var (
	_ storage.Store                  = (*Store)(nil)
	_ storage.CommandReportAndNexter = (*Store)(nil)
)

// Option configures a Store beyond its DSN and -storage-options.
type Option func(*sqlstore.Config)

// WithLogger sets the logger the store reports to (migrations, the
// purge, and the messages the MySQL driver would otherwise print
// to stderr itself), so its lines take the process's log format; nil means
// slog.Default(). Every line carries storage=mysql.
func WithLogger(logger *slog.Logger) Option { return sqlstore.Logger(logger) }

// WithMigrateTimeout bounds how long Open waits for the migration lock
// (another replica migrating) and applies the migrations, default
// sqlstore.DefaultMigrateTimeout; past it Open fails with an error wrapping
// context.DeadlineExceeded. 0 or less keeps the default.
func WithMigrateTimeout(d time.Duration) Option { return sqlstore.MigrateTimeout(d) }

// WithKeySealer sets the KeySealer (-storage-key) that seals the private
// keys the store writes (push certificates', the SCEP CA's) and opens
// those it reads; nil means keyseal.None: keys are stored as given, and a
// sealed one does not open.
func WithKeySealer(s storage.KeySealer) Option { return sqlstore.Sealer(s) }

// driverLogger hands the MySQL driver's messages (dropped connections,
// malformed packets) to the store's logger: the driver's default prints
// them to stderr in a format of its own.
type driverLogger struct{ logger *slog.Logger }

// Print implements mysql.Logger.
func (l driverLogger) Print(v ...any) { l.logger.Warn("mysql driver", "detail", fmt.Sprint(v...)) }

// Open connects to the database named by dsn (a go-sql-driver/mysql DSN,
// "user:pass@tcp(host:3306)/dbname?param=value"), applies the embedded
// schema migrations unless migrate=0. The retention purge is Purge, which
// the app's background runner calls. options are the -storage-options (see sqlstore.Options):
// delete, migrate, retention, purge_interval, max_open_conns,
// max_idle_conns, conn_max_lifetime, conn_max_idle_time.
//
// The DSN is adjusted: parseTime=true and loc=UTC always (times are stored
// in UTC); interpolateParams=true unless the DSN sets it (one round trip
// per statement instead of prepare, execute and close; the driver escapes
// every value, binary ones as _binary literals, and refuses collations
// where that is unsafe); multiStatements=true when parameters are
// interpolated, unless the DSN sets it (a device request's report and
// next-command lookup then travel as one request; every statement is
// still built from constant text and escaped values); the session
// isolation level READ COMMITTED
// unless the DSN sets transaction_isolation or tx_isolation; and strict
// SQL mode (STRICT_ALL_TABLES added to the server's) unless the DSN sets
// sql_mode.
func Open(dsn string, options map[string]string, with ...Option) (*Store, error) {
	c := sqlstore.NewConfig("mysql", with)
	opts, err := sqlstore.ParseOptions(options)
	if err != nil {
		return nil, fmt.Errorf("mysql storage: %w", err)
	}
	cfg, err := mysql.ParseDSN(dsn)
	if err != nil {
		return nil, fmt.Errorf("mysql storage: parsing DSN: %w", err)
	}
	if cfg.DBName == "" {
		return nil, errors.New("mysql storage: the DSN names no database (…/dbname)")
	}
	cfg.ParseTime = true
	cfg.Loc = time.UTC
	cfg.Logger = driverLogger{c.Logger}
	if !dsnHasParam(dsn, "interpolateParams") {
		cfg.InterpolateParams = true
		if _, err := mysql.NewConnector(cfg); err != nil {
			// The DSN's collation makes interpolation unsafe and the
			// driver refuses it: use server-side prepared statements.
			cfg.InterpolateParams = false
		}
	}
	if cfg.InterpolateParams && !dsnHasParam(dsn, "multiStatements") {
		cfg.MultiStatements = true
	}
	ctx, cancel := context.WithTimeout(context.Background(), c.MigrateTimeout)
	defer cancel()
	if err := setIsolation(ctx, cfg); err != nil {
		return nil, err
	}
	if _, ok := cfg.Params["sql_mode"]; !ok {
		// Strict: a value too long for its column (an enrollment ID
		// over 255 bytes) is an error, never silently truncated into
		// another enrollment's ID.
		cfg.Params["sql_mode"] = "CONCAT(@@sql_mode, ',STRICT_ALL_TABLES')"
	}
	connector, err := mysql.NewConnector(cfg)
	if err != nil {
		return nil, fmt.Errorf("mysql storage: %w", err)
	}
	db := sql.OpenDB(connector)
	opts.ApplyPool(db)
	s := &Store{
		db:              db,
		opts:            opts,
		dbName:          cfg.DBName,
		logger:          c.Logger,
		sealer:          c.Sealer,
		seen:            sqlstore.NewThrottle(lastSeenInterval),
		multiStatements: cfg.InterpolateParams && cfg.MultiStatements,
	}
	if opts.Migrate {
		if err := s.migrate(ctx); err != nil {
			db.Close()
			return nil, err
		}
	}
	return s, nil
}

// Close closes the connection pool.
func (s *Store) Close() error {
	s.closed.Do(func() {
		s.closeErr = s.db.Close()
	})
	return s.closeErr
}

// Ping checks that the database is reachable.
func (s *Store) Ping(ctx context.Context) error {
	if err := s.db.PingContext(ctx); err != nil {
		return fmt.Errorf("mysql storage: ping: %w", err)
	}
	return nil
}

// dsnHasParam reports whether the DSN's query string sets name.
func dsnHasParam(dsn, name string) bool {
	_, query, ok := strings.Cut(dsn, "?")
	if !ok {
		return false
	}
	for _, kv := range strings.Split(query, "&") {
		if k, _, _ := strings.Cut(kv, "="); k == name {
			return true
		}
	}
	return false
}

// setIsolation makes every connection of cfg start in READ COMMITTED,
// unless the DSN chose an isolation level. The session variable is
// transaction_isolation on MySQL 8 and MariaDB 11.1+, tx_isolation on
// older MariaDB (MySQL 8 removed tx_isolation), so ask the server which it
// has. Setting it per connection costs nothing per transaction, where
// sql.TxOptions would cost a round trip for every BEGIN.
func setIsolation(ctx context.Context, cfg *mysql.Config) error {
	if cfg.Params == nil {
		cfg.Params = make(map[string]string)
	}
	if _, ok := cfg.Params["transaction_isolation"]; ok {
		return nil
	}
	if _, ok := cfg.Params["tx_isolation"]; ok {
		return nil
	}
	connector, err := mysql.NewConnector(cfg)
	if err != nil {
		return fmt.Errorf("mysql storage: %w", err)
	}
	db := sql.OpenDB(connector)
	defer db.Close()
	name := "transaction_isolation"
	var level string
	err = db.QueryRowContext(ctx, "SELECT @@SESSION.transaction_isolation").Scan(&level)
	if isMySQLError(err, errUnknownSysVar) {
		name = "tx_isolation"
		err = db.QueryRowContext(ctx, "SELECT @@SESSION.tx_isolation").Scan(&level)
	}
	if err != nil {
		return fmt.Errorf("mysql storage: connecting: %w", err)
	}
	cfg.Params[name] = "'READ-COMMITTED'"
	return nil
}

// isMySQLError reports whether err is a MySQL server error with number n.
func isMySQLError(err error, n uint16) bool {
	var me *mysql.MySQLError
	return errors.As(err, &me) && me.Number == n
}

// retryable reports whether err is a deadlock or lock-wait timeout: the
// database gave up on the transaction, and running it again will likely
// succeed.
func retryable(err error) bool {
	return isMySQLError(err, errLockDeadlock) || isMySQLError(err, errLockWaitTimeout)
}

// retry runs fn, a whole transaction or autocommit statement, again when
// the database reports a deadlock or lock-wait timeout.
func (s *Store) retry(ctx context.Context, fn func() error) error {
	return sqlstore.Retry(ctx, retryAttempts, func(err error) bool {
		if retryable(err) {
			s.retries.Add(1)
			return true
		}
		return false
	}, fn)
}

// inTx runs fn in a transaction, committed if fn returns nil, retried as
// a whole on deadlock.
func (s *Store) inTx(ctx context.Context, fn func(tx *sql.Tx) error) error {
	return s.retry(ctx, func() error { return sqlstore.InTx(ctx, s.db, fn) })
}

// lockName returns a GET_LOCK name for purpose that is specific to this
// database (lock names are server-wide) and within MySQL's 64 characters.
func (s *Store) lockName(purpose string) string {
	name := "picomdm_" + purpose + ":" + s.dbName
	if len(name) <= 64 {
		return name
	}
	sum := sha256.Sum256([]byte(s.dbName))
	return "picomdm_" + purpose + ":" + hex.EncodeToString(sum[:16])
}

// placeholders returns n comma-separated "?"; rows of width > 1 are
// parenthesised: placeholders(2, 2) is "(?, ?), (?, ?)".
func placeholders(n, width int) string {
	one := "?"
	if width > 1 {
		one = "(" + strings.Repeat("?, ", width-1) + "?)"
	}
	var b strings.Builder
	b.Grow(n * (len(one) + 2))
	for i := range n {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString(one)
	}
	return b.String()
}

// uniqueIDs returns ids without duplicates, in first-seen order.
func uniqueIDs(ids []string) []string {
	seen := make(map[string]struct{}, len(ids))
	out := make([]string, 0, len(ids))
	for _, id := range ids {
		if _, dup := seen[id]; dup {
			continue
		}
		seen[id] = struct{}{}
		out = append(out, id)
	}
	return out
}

// chunks calls fn with consecutive slices of items (IDs, or records of
// one ID each), each at most idChunk long.
func chunks[T any](items []T, fn func([]T) error) error {
	for len(items) > 0 {
		n := min(len(items), idChunk)
		if err := fn(items[:n]); err != nil {
			return err
		}
		items = items[n:]
	}
	return nil
}

// stringArgs converts strings to query arguments.
func stringArgs(ss []string) []any {
	args := make([]any, len(ss))
	for i, s := range ss {
		args[i] = s
	}
	return args
}
