package pgsql

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/picomdm/picomdm/mdm"
	"github.com/picomdm/picomdm/storage"
	"github.com/picomdm/picomdm/storage/internal/sqlstore"
)

// The inspection reads (storage.InspectionStore). Listings are keyset
// paginated: ORDER BY id, WHERE id > cursor, LIMIT n+1 (the extra row says
// whether there is a next page), each read as one index range, so a page
// deep in a table costs what the first one does. A cursor is the base64url
// of the last enrollment ID of the previous page.

var _ storage.InspectionStore = (*Store)(nil)

// The keyset helpers both SQL backends share.
var (
	decodeCursor   = storage.DecodeCursor
	encodeCursor   = storage.EncodeCursor
	pageLimit      = sqlstore.PageLimit
	utc            = sqlstore.UTC
	scanEnrollment = sqlstore.ScanEnrollment
)

// rebind turns the "?" placeholders of query into PostgreSQL's $1, $2, …
// (the queries here have no "?" in literals).
func rebind(query string) string {
	var b strings.Builder
	n := 0
	for _, r := range query {
		if r == '?' {
			n++
			fmt.Fprintf(&b, "$%d", n)
			continue
		}
		b.WriteRune(r)
	}
	return b.String()
}

// inspectTx runs fn in a transaction, committed if fn returns nil, run
// again on a transient conflict.
func (s *Store) inspectTx(ctx context.Context, fn func(tx *sql.Tx) error) error {
	return withRetry(ctx, func() error {
		tx, err := s.db.BeginTx(ctx, nil)
		if err != nil {
			return fmt.Errorf("pgsql storage: beginning transaction: %w", err)
		}
		if err := fn(tx); err != nil {
			tx.Rollback()
			return err
		}
		if err := tx.Commit(); err != nil {
			return fmt.Errorf("pgsql storage: committing: %w", err)
		}
		return nil
	})
}

// enrollmentSelect reads EnrollmentInfo columns (scanEnrollment). The
// pending count is a correlated COUNT on command_queue_next (id, seq): one
// index range per listed enrollment, covering.
const enrollmentSelect = `SELECT e.id, e.type, e.parent_id, d.serial_number, e.topic, e.enabled,
	e.token_update_tally, e.enrolled_at, e.last_seen_at, e.push_token_valid,
	COALESCE(e.identity_cert_not_after, d.identity_cert_not_after),
	(SELECT COUNT(*) FROM command_queue q WHERE q.id = e.id)
FROM enrollments e LEFT JOIN devices d ON d.id = e.device_id`

// ListEnrollments pages through the enrollments matching f in ID order
// (primary key range; with DeviceID, the enrollments_device_id index).
func (s *Store) ListEnrollments(ctx context.Context, f storage.EnrollmentFilter, p storage.Page) ([]storage.EnrollmentInfo, string, error) {
	after, err := decodeCursor(p.Cursor)
	if err != nil {
		return nil, "", err
	}
	limit := pageLimit(p.Limit)
	where, args := sqlstore.EnrollmentWhere(f, after)
	args = append(args, limit+1)
	rows, err := s.db.QueryContext(ctx, rebind(enrollmentSelect+" WHERE "+strings.Join(where, " AND ")+
		" ORDER BY e.id LIMIT ?"), args...)
	if err != nil {
		return nil, "", fmt.Errorf("pgsql storage: listing enrollments: %w", err)
	}
	defer rows.Close()
	out := []storage.EnrollmentInfo{}
	for rows.Next() {
		e, err := scanEnrollment(rows)
		if err != nil {
			return nil, "", fmt.Errorf("pgsql storage: listing enrollments: %w", err)
		}
		out = append(out, *e)
	}
	if err := rows.Err(); err != nil {
		return nil, "", fmt.Errorf("pgsql storage: listing enrollments: %w", err)
	}
	next := ""
	if len(out) > limit {
		out = out[:limit]
		next = encodeCursor(out[limit-1].ID)
	}
	return out, next, nil
}

// RetrieveEnrollment returns enrollment id.
func (s *Store) RetrieveEnrollment(ctx context.Context, id string) (*storage.EnrollmentInfo, error) {
	e, err := scanEnrollment(s.db.QueryRowContext(ctx, rebind(enrollmentSelect+" WHERE e.id = ?"), id))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("pgsql storage: enrollment %q: %w", id, storage.ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("pgsql storage: retrieving enrollment: %w", err)
	}
	return e, nil
}

// enrollmentExists reports whether id is a known enrollment.
func enrollmentExists(ctx context.Context, q interface {
	QueryRowContext(context.Context, string, ...any) *sql.Row
}, id string) error {
	var one int
	err := q.QueryRowContext(ctx, rebind("SELECT 1 FROM enrollments WHERE id = ?"), id).Scan(&one)
	if errors.Is(err, sql.ErrNoRows) {
		return fmt.Errorf("pgsql storage: enrollment %q: %w", id, storage.ErrNotFound)
	}
	if err != nil {
		return fmt.Errorf("pgsql storage: looking up enrollment: %w", err)
	}
	return nil
}

// RetrieveQueue returns id's pending commands in delivery (seq) order,
// deferred ones included. The enqueue time is the command's created_at.
func (s *Store) RetrieveQueue(ctx context.Context, id string) ([]storage.QueuedCommand, error) {
	if err := enrollmentExists(ctx, s.db, id); err != nil {
		return nil, err
	}
	rows, err := s.db.QueryContext(ctx, rebind(`SELECT q.command_uuid, c.request_type, c.created_at,
	q.not_now_count, q.last_not_now_at
FROM command_queue q JOIN commands c ON c.command_uuid = q.command_uuid
WHERE q.id = ? ORDER BY q.seq`), id)
	if err != nil {
		return nil, fmt.Errorf("pgsql storage: retrieving queue: %w", err)
	}
	defer rows.Close()
	out := []storage.QueuedCommand{}
	for rows.Next() {
		var (
			qc     storage.QueuedCommand
			lastNN sql.NullTime
		)
		if err := rows.Scan(&qc.CommandUUID, &qc.RequestType, &qc.EnqueuedAt, &qc.NotNowCount, &lastNN); err != nil {
			return nil, fmt.Errorf("pgsql storage: retrieving queue: %w", err)
		}
		qc.EnqueuedAt = qc.EnqueuedAt.UTC()
		qc.LastNotNowAt = utc(lastNN)
		if qc.NotNowCount > 0 {
			qc.Status = string(mdm.StatusNotNow)
		}
		out = append(out, qc)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("pgsql storage: retrieving queue: %w", err)
	}
	return out, nil
}

// ClearQueue deletes id's pending commands (command_queue_next prefix) and
// the interim NotNow results of those commands, which no final answer
// will replace now.
func (s *Store) ClearQueue(ctx context.Context, id string) (int, error) {
	var n int64
	err := s.inspectTx(ctx, func(tx *sql.Tx) error {
		if err := enrollmentExists(ctx, tx, id); err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, rebind(`DELETE FROM command_results r USING command_queue q
WHERE q.id = r.id AND q.command_uuid = r.command_uuid
	AND r.id = ? AND r.status = 'NotNow'`), id); err != nil {
			return fmt.Errorf("pgsql storage: clearing NotNow results: %w", err)
		}
		res, err := tx.ExecContext(ctx, rebind("DELETE FROM command_queue WHERE id = ?"), id)
		if err != nil {
			return fmt.Errorf("pgsql storage: clearing queue: %w", err)
		}
		n, err = res.RowsAffected()
		return err
	})
	return int(n), err
}

// CancelCommand deletes one pending queue row (command_queue primary key) and its
// interim NotNow result.
func (s *Store) CancelCommand(ctx context.Context, id, commandUUID string) error {
	return s.inspectTx(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, rebind("DELETE FROM command_queue WHERE id = ? AND command_uuid = ?"), id, commandUUID)
		if err != nil {
			return fmt.Errorf("pgsql storage: cancelling command: %w", err)
		}
		n, err := res.RowsAffected()
		if err != nil {
			return err
		}
		if n > 0 {
			if _, err := tx.ExecContext(ctx, rebind("DELETE FROM command_results WHERE id = ? AND command_uuid = ? AND status = 'NotNow'"),
				id, commandUUID); err != nil {
				return fmt.Errorf("pgsql storage: cancelling command: %w", err)
			}
			return nil
		}
		var status string
		err = tx.QueryRowContext(ctx, rebind("SELECT status FROM command_results WHERE id = ? AND command_uuid = ?"), id, commandUUID).Scan(&status)
		switch {
		case err == nil && status != string(mdm.StatusNotNow):
			return fmt.Errorf("pgsql storage: command %q for %q: %w", commandUUID, id, storage.ErrAlreadyAnswered)
		case err == nil || errors.Is(err, sql.ErrNoRows):
			return fmt.Errorf("pgsql storage: command %q for %q: %w", commandUUID, id, storage.ErrNotFound)
		default:
			return fmt.Errorf("pgsql storage: cancelling command: %w", err)
		}
	})
}

// RetrieveCommand returns an enqueued command (commands primary key).
func (s *Store) RetrieveCommand(ctx context.Context, commandUUID string) (*storage.CommandInfo, error) {
	var c storage.CommandInfo
	err := s.db.QueryRowContext(ctx, rebind("SELECT command_uuid, request_type, created_at, command FROM commands WHERE command_uuid = ?"),
		commandUUID).Scan(&c.CommandUUID, &c.RequestType, &c.EnqueuedAt, &c.Raw)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("pgsql storage: command %q: %w", commandUUID, storage.ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("pgsql storage: retrieving command: %w", err)
	}
	c.EnqueuedAt = c.EnqueuedAt.UTC()
	return &c, nil
}

// commandStateColumns are the columns scanCommandState reads, for the
// pending branch (q) and the answered branch (r). A pending row with a
// NotNow result is pending; a NotNow result without a queue row is no
// state at all.
const (
	pendingStateSelect = `SELECT q.id, CASE WHEN q.not_now_count > 0 THEN 'NotNow' ELSE 'pending' END AS state, q.not_now_count,
	NULL::timestamptz AS answered_at, NULL::bytea AS result FROM command_queue q`
	answeredStateSelect = `SELECT r.id, r.status, r.not_now_count, r.answered_at, r.result
	FROM command_results r`
)

func scanCommandState(sc interface{ Scan(...any) error }, enqueuedAt time.Time) (*storage.CommandState, error) {
	var (
		cs       storage.CommandState
		answered sql.NullTime
	)
	if err := sc.Scan(&cs.EnrollmentID, &cs.State, &cs.NotNowCount, &answered, &cs.Result); err != nil {
		return nil, err
	}
	cs.AnsweredAt = utc(answered)
	cs.EnqueuedAt = enqueuedAt
	return &cs, nil
}

// commandCreated returns a command's enqueue time; ErrNotFound if it is
// unknown.
func (s *Store) commandCreated(ctx context.Context, commandUUID string) (time.Time, error) {
	var t time.Time
	err := s.db.QueryRowContext(ctx, rebind("SELECT created_at FROM commands WHERE command_uuid = ?"), commandUUID).Scan(&t)
	if errors.Is(err, sql.ErrNoRows) {
		return t, fmt.Errorf("pgsql storage: command %q: %w", commandUUID, storage.ErrNotFound)
	}
	if err != nil {
		return t, fmt.Errorf("pgsql storage: looking up command: %w", err)
	}
	return t.UTC(), nil
}

// ListCommandStates pages through a command's per-enrollment states in ID
// order: the pending rows (command_queue primary key (command_uuid, id)
// range) merged with the final answers (command_results_command_id range), each
// branch limited to n+1 rows. An enrollment is in at most one branch: a
// final answer deletes its queue row in the same transaction.
func (s *Store) ListCommandStates(ctx context.Context, commandUUID string, p storage.Page) ([]storage.CommandState, string, error) {
	after, err := decodeCursor(p.Cursor)
	if err != nil {
		return nil, "", err
	}
	limit := pageLimit(p.Limit)
	created, err := s.commandCreated(ctx, commandUUID)
	if err != nil {
		return nil, "", err
	}
	rows, err := s.db.QueryContext(ctx, rebind(`SELECT * FROM (
	(`+pendingStateSelect+` WHERE q.command_uuid = ? AND q.id > ? ORDER BY q.id LIMIT ?)
	UNION ALL
	(`+answeredStateSelect+` WHERE r.command_uuid = ? AND r.id > ? AND r.status <> 'NotNow' ORDER BY r.id LIMIT ?)
) t ORDER BY 1 LIMIT ?`), commandUUID, after, limit+1, commandUUID, after, limit+1, limit+1)
	if err != nil {
		return nil, "", fmt.Errorf("pgsql storage: listing command states: %w", err)
	}
	defer rows.Close()
	out := []storage.CommandState{}
	for rows.Next() {
		cs, err := scanCommandState(rows, created)
		if err != nil {
			return nil, "", fmt.Errorf("pgsql storage: listing command states: %w", err)
		}
		out = append(out, *cs)
	}
	if err := rows.Err(); err != nil {
		return nil, "", fmt.Errorf("pgsql storage: listing command states: %w", err)
	}
	next := ""
	if len(out) > limit {
		out = out[:limit]
		next = encodeCursor(out[limit-1].EnrollmentID)
	}
	return out, next, nil
}

// RetrieveCommandResult returns id's state for a command: pending
// (command_queue primary key) or its final answer (command_results primary
// key).
func (s *Store) RetrieveCommandResult(ctx context.Context, commandUUID, id string) (*storage.CommandState, error) {
	created, err := s.commandCreated(ctx, commandUUID)
	if err != nil {
		return nil, err
	}
	cs, err := scanCommandState(s.db.QueryRowContext(ctx, rebind(`(`+pendingStateSelect+` WHERE q.id = ? AND q.command_uuid = ?)
UNION ALL
(`+answeredStateSelect+` WHERE r.id = ? AND r.command_uuid = ? AND r.status <> 'NotNow')
LIMIT 1`), id, commandUUID, id, commandUUID), created)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("pgsql storage: command %q for %q: %w", commandUUID, id, storage.ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("pgsql storage: retrieving command result: %w", err)
	}
	return cs, nil
}
