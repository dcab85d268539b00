package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/picomdm/picomdm/mdm"
	"github.com/picomdm/picomdm/storage"
)

// The inspection reads (storage.InspectionStore) of both SQL backends:
// each backend hands in its dialect's InspectSQL. Listings page with
// keysets (KeysetPage): ORDER BY id, WHERE id > cursor, LIMIT n+1. A
// cursor is the base64url of the last ID of the previous page.

// InspectSQL are one dialect's statements for the inspection reads. Each
// names its arguments in order.
type InspectSQL struct {
	// Placeholder is the dialect's n-th bind placeholder (1-based), for
	// the WHERE that ListEnrollments builds.
	Placeholder func(n int) string
	// Enrollments selects id, type, parent_id, serial_number, topic,
	// enabled, token_update_tally, enrolled_at, last_seen_at,
	// push_token_valid, the identity certificate's not_after and the
	// pending command count from enrollments e joined to their device d
	// (LEFT JOIN devices d ON d.id = e.device_id), with no WHERE:
	// ListEnrollments appends its filter, ORDER BY e.id and LIMIT.
	Enrollments string
	// Enrollment is Enrollments for one ID: id.
	Enrollment string
	// EnrollmentExists selects a row for a known enrollment: id.
	EnrollmentExists string
	// Queue selects command_uuid, request_type, created_at (the
	// command's), not_now_count, last_not_now_at of an enrollment's
	// pending commands in delivery order: id.
	Queue string
	// ClearNotNow deletes an enrollment's NotNow results of the commands
	// still queued for it; ClearQueued then its queue rows: id.
	ClearNotNow, ClearQueued string
	// CancelQueued deletes one queue row, CancelNotNow its NotNow result,
	// ResultStatus selects the status of its result: id, command_uuid.
	CancelQueued, CancelNotNow, ResultStatus string
	// Command selects command_uuid, request_type, created_at, command of
	// one command: command_uuid.
	Command string
	// CommandCreated selects the created_at of one command: command_uuid.
	CommandCreated string
	// CommandStates selects id, state, not_now_count, answered_at and
	// result (both NULL while pending) of a command's pending rows and
	// final answers, in ID order after the cursor: command_uuid, after,
	// limit of the pending branch, command_uuid, after, limit of the
	// answered branch, limit of the page.
	CommandStates string
	// CommandResult selects CommandStates' columns of one enrollment's
	// state for a command: id, command_uuid (pending), id, command_uuid
	// (answered).
	CommandResult string
}

// UTC returns t in UTC, or the zero time for NULL.
func UTC(t sql.NullTime) time.Time {
	if !t.Valid {
		return time.Time{}
	}
	return t.Time.UTC()
}

// ListEnrollments implements storage.InspectionStore.ListEnrollments.
func (q InspectSQL) ListEnrollments(ctx context.Context, db Querier, f storage.EnrollmentFilter, p storage.Page) ([]storage.EnrollmentInfo, string, error) {
	after, err := storage.DecodeCursor(p.Cursor)
	if err != nil {
		return nil, "", err
	}
	limit := p.Size()
	query, args := q.enrollmentQuery(f, after, limit+1)
	return KeysetPage(ctx, db, "listing enrollments", limit, scanEnrollment,
		func(e *storage.EnrollmentInfo) string { return e.ID }, query, args...)
}

// enrollmentQuery builds a listing of the n enrollments after the
// cursor's ID that match f, in ID order, and its arguments.
func (q InspectSQL) enrollmentQuery(f storage.EnrollmentFilter, after string, n int) (string, []any) {
	var (
		where []string
		args  []any
	)
	add := func(cond string, arg any) {
		args = append(args, arg)
		where = append(where, cond+q.Placeholder(len(args)))
	}
	add("e.id > ", after)
	if f.Type != "" {
		add("e.type = ", string(f.Type))
	}
	if f.Enabled != nil {
		add("e.enabled = ", *f.Enabled)
	}
	if f.Serial != "" {
		add("d.serial_number = ", f.Serial)
	}
	if f.Topic != "" {
		add("e.topic = ", f.Topic)
	}
	if f.DeviceID != "" {
		add("e.device_id = ", f.DeviceID)
	}
	if !f.SeenBefore.IsZero() {
		add("e.last_seen_at < ", f.SeenBefore.UTC())
	}
	if !f.SeenAfter.IsZero() {
		add("e.last_seen_at > ", f.SeenAfter.UTC())
	}
	args = append(args, n)
	return q.Enrollments + " WHERE " + strings.Join(where, " AND ") + " ORDER BY e.id LIMIT " + q.Placeholder(len(args)), args
}

// scanEnrollment reads one row of Enrollments.
func scanEnrollment(sc RowScanner) (storage.EnrollmentInfo, error) {
	var (
		e              storage.EnrollmentInfo
		typ            string
		parent, serial sql.NullString
		notAfter       sql.NullTime
	)
	if err := sc.Scan(&e.ID, &typ, &parent, &serial, &e.Topic, &e.Enabled, &e.TokenUpdateTally,
		&e.EnrolledAt, &e.LastSeenAt, &e.PushTokenValid, &notAfter, &e.PendingCommands); err != nil {
		return e, err
	}
	e.Type = mdm.EnrollType(typ)
	e.ParentID = parent.String
	e.SerialNumber = serial.String
	e.EnrolledAt = e.EnrolledAt.UTC()
	e.LastSeenAt = e.LastSeenAt.UTC()
	e.IdentityCertNotAfter = UTC(notAfter)
	return e, nil
}

// RetrieveEnrollment implements storage.InspectionStore.RetrieveEnrollment.
func (q InspectSQL) RetrieveEnrollment(ctx context.Context, db Querier, id string) (*storage.EnrollmentInfo, error) {
	return retrieve(db.QueryRowContext(ctx, q.Enrollment, id), scanEnrollment, fmt.Sprintf("retrieving enrollment %q", id))
}

// enrollmentExists answers storage.ErrNotFound for an unknown enrollment.
func (q InspectSQL) enrollmentExists(ctx context.Context, db Querier, id string) error {
	var one int
	err := db.QueryRowContext(ctx, q.EnrollmentExists, id).Scan(&one)
	return notFound(err, fmt.Sprintf("enrollment %q", id))
}

// RetrieveQueue implements storage.InspectionStore.RetrieveQueue: the
// enqueue time is the command's created_at.
func (q InspectSQL) RetrieveQueue(ctx context.Context, db Querier, id string) ([]storage.QueuedCommand, error) {
	if err := q.enrollmentExists(ctx, db, id); err != nil {
		return nil, err
	}
	out, err := queryAll(ctx, db, scanQueuedCommand, q.Queue, id)
	if err != nil {
		return nil, fmt.Errorf("retrieving queue: %w", err)
	}
	return out, nil
}

// scanQueuedCommand reads one row of Queue.
func scanQueuedCommand(sc RowScanner) (storage.QueuedCommand, error) {
	var (
		qc     storage.QueuedCommand
		lastNN sql.NullTime
	)
	if err := sc.Scan(&qc.CommandUUID, &qc.RequestType, &qc.EnqueuedAt, &qc.NotNowCount, &lastNN); err != nil {
		return qc, err
	}
	qc.EnqueuedAt = qc.EnqueuedAt.UTC()
	qc.LastNotNowAt = UTC(lastNN)
	if qc.NotNowCount > 0 {
		qc.Status = string(mdm.StatusNotNow)
	}
	return qc, nil
}

// ClearQueue implements storage.InspectionStore.ClearQueue in one
// transaction: the interim NotNow results of the pending commands, which
// no final answer will replace now, go with them.
func (q InspectSQL) ClearQueue(ctx context.Context, inTx TxFunc, id string) (int, error) {
	var n int64
	err := inTx(ctx, func(tx *sql.Tx) error {
		if err := q.enrollmentExists(ctx, tx, id); err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, q.ClearNotNow, id); err != nil {
			return fmt.Errorf("clearing NotNow results: %w", err)
		}
		res, err := tx.ExecContext(ctx, q.ClearQueued, id)
		if err != nil {
			return fmt.Errorf("clearing queue: %w", err)
		}
		n, err = res.RowsAffected()
		return err
	})
	return int(n), err
}

// CancelCommand implements storage.InspectionStore.CancelCommand in one
// transaction: the queue row and its interim NotNow result.
func (q InspectSQL) CancelCommand(ctx context.Context, inTx TxFunc, id, commandUUID string) error {
	return inTx(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, q.CancelQueued, id, commandUUID)
		if err != nil {
			return fmt.Errorf("cancelling command: %w", err)
		}
		n, err := res.RowsAffected()
		if err != nil {
			return err
		}
		if n > 0 {
			if _, err := tx.ExecContext(ctx, q.CancelNotNow, id, commandUUID); err != nil {
				return fmt.Errorf("cancelling command: %w", err)
			}
			return nil
		}
		var status string
		err = tx.QueryRowContext(ctx, q.ResultStatus, id, commandUUID).Scan(&status)
		switch {
		case err == nil && status != string(mdm.StatusNotNow):
			return fmt.Errorf("command %q for %q: %w", commandUUID, id, storage.ErrAlreadyAnswered)
		case err == nil || errors.Is(err, sql.ErrNoRows):
			return fmt.Errorf("command %q for %q: %w", commandUUID, id, storage.ErrNotFound)
		default:
			return fmt.Errorf("cancelling command: %w", err)
		}
	})
}

// RetrieveCommand implements storage.InspectionStore.RetrieveCommand.
func (q InspectSQL) RetrieveCommand(ctx context.Context, db Querier, commandUUID string) (*storage.CommandInfo, error) {
	var c storage.CommandInfo
	err := db.QueryRowContext(ctx, q.Command, commandUUID).Scan(&c.CommandUUID, &c.RequestType, &c.EnqueuedAt, &c.Raw)
	if err != nil {
		return nil, notFound(err, fmt.Sprintf("retrieving command %q", commandUUID))
	}
	c.EnqueuedAt = c.EnqueuedAt.UTC()
	return &c, nil
}

// commandStateScanner returns the reader of the rows of CommandStates or
// CommandResult for a command: storage.ErrNotFound if it is unknown.
func (q InspectSQL) commandStateScanner(ctx context.Context, db Querier, commandUUID string) (func(RowScanner) (storage.CommandState, error), error) {
	var enqueuedAt time.Time
	if err := db.QueryRowContext(ctx, q.CommandCreated, commandUUID).Scan(&enqueuedAt); err != nil {
		return nil, notFound(err, fmt.Sprintf("looking up command %q", commandUUID))
	}
	return func(sc RowScanner) (storage.CommandState, error) {
		cs := storage.CommandState{EnqueuedAt: enqueuedAt.UTC()}
		var answered sql.NullTime
		if err := sc.Scan(&cs.EnrollmentID, &cs.State, &cs.NotNowCount, &answered, &cs.Result); err != nil {
			return cs, err
		}
		cs.AnsweredAt = UTC(answered)
		return cs, nil
	}, nil
}

// ListCommandStates implements storage.InspectionStore.ListCommandStates.
func (q InspectSQL) ListCommandStates(ctx context.Context, db Querier, commandUUID string, p storage.Page) ([]storage.CommandState, string, error) {
	after, err := storage.DecodeCursor(p.Cursor)
	if err != nil {
		return nil, "", err
	}
	limit := p.Size()
	scan, err := q.commandStateScanner(ctx, db, commandUUID)
	if err != nil {
		return nil, "", err
	}
	n := limit + 1
	return KeysetPage(ctx, db, "listing command states", limit, scan,
		func(cs *storage.CommandState) string { return cs.EnrollmentID },
		q.CommandStates, commandUUID, after, n, commandUUID, after, n, n)
}

// RetrieveCommandResult implements
// storage.InspectionStore.RetrieveCommandResult.
func (q InspectSQL) RetrieveCommandResult(ctx context.Context, db Querier, commandUUID, id string) (*storage.CommandState, error) {
	scan, err := q.commandStateScanner(ctx, db, commandUUID)
	if err != nil {
		return nil, err
	}
	return retrieve(db.QueryRowContext(ctx, q.CommandResult, id, commandUUID, id, commandUUID), scan,
		fmt.Sprintf("command %q for %q", commandUUID, id))
}
