package mysql

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"strings"
)

// batch is several statements sent as one multi-statement request: one
// round trip to the database instead of one per statement (and two more
// for BEGIN and COMMIT). Open enables multi-statement requests only with
// client-side parameter interpolation, so every statement may carry
// parameters; statements are constant text, every value is escaped by
// the driver. Stores built without them (multiStatements false) never
// run a batch.
type batch struct {
	sql  strings.Builder
	args []any
	// tx: the batch opens a transaction, which a failure mid-batch
	// leaves open on its connection.
	tx bool
}

// add appends one statement and its arguments.
func (b *batch) add(query string, args ...any) {
	if b.sql.Len() > 0 {
		b.sql.WriteString(";\n")
	}
	b.sql.WriteString(query)
	b.args = append(b.args, args...)
}

// empty reports whether b has no statement.
func (b *batch) empty() bool { return b.sql.Len() == 0 }

// begin starts a transaction; commit ends it. MySQL stops a
// multi-statement request at the first failing statement, so a failure
// before the COMMIT never commits.
func (b *batch) begin()  { b.tx = true; b.add("START TRANSACTION") }
func (b *batch) commit() { b.add("COMMIT") }

// runBatch sends b on a connection of its own. With read, it is sent as a
// query and read reads its result sets (from the first that has columns);
// without, as an exec whose results are discarded, an error in any
// statement included. A batch that fails mid-transaction is rolled back
// before its connection goes back to the pool; a deadlock has already
// rolled it back, and the caller's retry runs the whole batch again.
func (s *Store) runBatch(ctx context.Context, b *batch, read func(*sql.Rows) error) (err error) {
	conn, err := s.db.Conn(ctx)
	if err != nil {
		return err
	}
	defer conn.Close()
	if b.tx {
		defer func() {
			if err != nil {
				rollback(conn)
			}
		}()
	}
	if read == nil {
		_, err = conn.ExecContext(ctx, b.sql.String(), b.args...)
		return err
	}
	rows, err := conn.QueryContext(ctx, b.sql.String(), b.args...)
	if err != nil {
		return err
	}
	defer rows.Close()
	if err := read(rows); err != nil {
		return err
	}
	return rows.Close()
}

// resultSetErr is the error behind a missing row or result set: the
// driver's, or a protocol surprise.
func resultSetErr(rows *sql.Rows) error {
	if err := rows.Err(); err != nil {
		return err
	}
	return errors.New("result set missing")
}

// rollback ends whatever transaction a failed batch left open on conn, or,
// if it cannot, makes database/sql close the connection instead of pooling
// it: a pooled connection inside a transaction would fold the next user's
// statements into it.
func rollback(conn *sql.Conn) {
	ctx, cancel := context.WithTimeout(context.Background(), rollbackTimeout)
	defer cancel()
	if _, err := conn.ExecContext(ctx, "ROLLBACK"); err != nil {
		conn.Raw(func(any) error { return driver.ErrBadConn })
	}
}

// statement is one SQL statement, its arguments, and what it does (for
// error messages).
type statement struct {
	what  string
	query string
	args  []any
}

// execTx runs stmts as one transaction, retried as a whole on deadlock:
// one multi-statement request when the connections take them, else
// BEGIN, each statement, COMMIT.
func (s *Store) execTx(ctx context.Context, stmts ...statement) error {
	if s.multiStatements {
		b := new(batch)
		b.begin()
		for _, st := range stmts {
			b.add(st.query, st.args...)
		}
		b.commit()
		return s.retry(ctx, func() error { return s.runBatch(ctx, b, nil) })
	}
	return s.inTx(ctx, func(tx *sql.Tx) error {
		for _, st := range stmts {
			if _, err := tx.ExecContext(ctx, st.query, st.args...); err != nil {
				return fmt.Errorf("%s: %w", st.what, err)
			}
		}
		return nil
	})
}
