package sqlstore

import (
	"context"
	"database/sql/driver"
	"errors"
	"io"
	"strings"
	"sync"
)

// fakeDB is a tiny database/sql driver for testing Migrate: it knows the
// schema_migrations statements Migrate runs, records every other
// statement, and fails the ones it is told to.
type fakeDB struct {
	mu       sync.Mutex
	versions map[int64]string
	executed []string
	fail     map[string]error
	locks    int
}

func newFakeDB() *fakeDB {
	return &fakeDB{versions: map[int64]string{}, fail: map[string]error{}}
}

type fakeConnector struct{ db *fakeDB }

func (c *fakeConnector) Connect(context.Context) (driver.Conn, error) { return &fakeConn{c.db}, nil }
func (c *fakeConnector) Driver() driver.Driver                        { return fakeDriver{} }

type fakeDriver struct{}

func (fakeDriver) Open(string) (driver.Conn, error) { return nil, errors.New("use the connector") }

type fakeConn struct{ db *fakeDB }

func (c *fakeConn) Prepare(string) (driver.Stmt, error) {
	return nil, errors.New("no prepared statements")
}
func (c *fakeConn) Close() error              { return nil }
func (c *fakeConn) Begin() (driver.Tx, error) { return nil, errors.New("no transactions") }

func (c *fakeConn) ExecContext(_ context.Context, query string, args []driver.NamedValue) (driver.Result, error) {
	db := c.db
	db.mu.Lock()
	defer db.mu.Unlock()
	switch {
	case strings.HasPrefix(query, "CREATE TABLE IF NOT EXISTS schema_migrations"):
		return driver.RowsAffected(0), nil
	case strings.HasPrefix(query, "INSERT INTO schema_migrations"):
		v := args[0].Value.(int64)
		if _, dup := db.versions[v]; dup {
			return nil, errors.New("duplicate version")
		}
		db.versions[v] = args[1].Value.(string)
		return driver.RowsAffected(1), nil
	}
	if err := db.fail[query]; err != nil {
		return nil, err
	}
	db.executed = append(db.executed, query)
	return driver.RowsAffected(0), nil
}

func (c *fakeConn) QueryContext(_ context.Context, query string, _ []driver.NamedValue) (driver.Rows, error) {
	db := c.db
	db.mu.Lock()
	defer db.mu.Unlock()
	if query != "SELECT MAX(version) FROM schema_migrations" {
		return nil, errors.New("unexpected query: " + query)
	}
	var max any
	for v := range db.versions {
		if m, ok := max.(int64); !ok || v > m {
			max = v
		}
	}
	return &fakeRows{vals: []driver.Value{max}}, nil
}

type fakeRows struct {
	vals []driver.Value
	done bool
}

func (r *fakeRows) Columns() []string { return []string{"max"} }
func (r *fakeRows) Close() error      { return nil }
func (r *fakeRows) Next(dest []driver.Value) error {
	if r.done {
		return io.EOF
	}
	r.done = true
	copy(dest, r.vals)
	return nil
}

var (
	_ driver.ExecerContext  = (*fakeConn)(nil)
	_ driver.QueryerContext = (*fakeConn)(nil)
)
