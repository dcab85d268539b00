package mysql

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/picomdm/picomdm/mdm"
	"github.com/picomdm/picomdm/storage"
	"github.com/picomdm/picomdm/storage/internal/sqlstore"
)

// The command queue (DESIGN.md §2). The queue table holds only pending
// commands; see schema/0001_init.sql for the indexes named below.
//
// Per report, the writes are: the report itself (a final answer deletes
// the queue row and upserts the results row in one transaction; a NotNow
// updates the queue row and upserts the results row; an Idle clears the
// enrollment's deferred flags), plus at most one last_seen_at update a
// minute per enrollment.

// touchLastSeen records that an enrollment was seen. PRIMARY.
const touchLastSeen = "UPDATE enrollments SET last_seen_at = UTC_TIMESTAMP(6) WHERE id = ?"

// StoreCommandReport implements storage.CommandQueueStore: as one
// multi-statement request (see reportBatch) when the connections take
// them, else statement by statement.
func (s *Store) StoreCommandReport(r *mdm.Request, report *mdm.CommandResults) error {
	if s.multiStatements {
		if _, err := s.storeReportBatch(r, report, false); err != nil {
			return fmt.Errorf("storing %s report of %q for command %q: %w", report.Status, r.ID, report.CommandUUID, err)
		}
		return nil
	}
	ctx := reqCtx(r)
	now := time.Now()
	touch := s.seen.Due(r.ID, now)
	var err error
	switch {
	case report.Status == "" || report.Status == mdm.StatusIdle:
		err = s.storeIdle(ctx, r.ID, touch)
	case report.CommandUUID == "":
		// An answer naming no command: nothing to record.
		if touch {
			_, err = s.exec(ctx, touchLastSeen, r.ID)
		}
	case report.Status == mdm.StatusNotNow:
		err = s.storeNotNow(ctx, r.ID, report, touch)
	default:
		err = s.storeFinal(ctx, r.ID, report, touch)
	}
	if err != nil {
		return fmt.Errorf("storing %s report of %q for command %q: %w", report.Status, r.ID, report.CommandUUID, err)
	}
	if touch {
		s.seen.Done(r.ID, now)
	}
	return nil
}

// storeIdle ends id's NotNow deferral. queue_next, (id, deferred = 1)
// prefix: only deferred rows are read and locked, and with none the
// statement writes nothing.
func (s *Store) storeIdle(ctx context.Context, id string, touch bool) error {
	if _, err := s.exec(ctx, "UPDATE queue SET deferred = FALSE WHERE id = ? AND deferred = TRUE", id); err != nil {
		return fmt.Errorf("ending NotNow deferral: %w", err)
	}
	if touch {
		if _, err := s.exec(ctx, touchLastSeen, id); err != nil {
			return fmt.Errorf("recording last seen: %w", err)
		}
	}
	return nil
}

// storeNotNow counts a NotNow and defers the command until the next Idle,
// if it is pending for id; otherwise (unknown, final, someone else's) it
// does nothing.
func (s *Store) storeNotNow(ctx context.Context, id string, report *mdm.CommandResults, touch bool) error {
	// queue_id_command.
	const deferQ = `UPDATE queue
SET deferred = TRUE, not_now_count = not_now_count + 1, last_not_now_at = UTC_TIMESTAMP(6)
WHERE id = ? AND command_uuid = ?`
	if s.opts.Delete && !touch {
		_, err := s.exec(ctx, deferQ, id, report.CommandUUID)
		return err
	}
	return s.inTx(ctx, func(tx *sql.Tx) error {
		if touch {
			if _, err := tx.ExecContext(ctx, touchLastSeen, id); err != nil {
				return fmt.Errorf("recording last seen: %w", err)
			}
		}
		res, err := tx.ExecContext(ctx, deferQ, id, report.CommandUUID)
		if err != nil {
			return fmt.Errorf("deferring command: %w", err)
		}
		if n, err := res.RowsAffected(); err != nil || n == 0 || s.opts.Delete {
			return err
		}
		// PRIMARY.
		if _, err := tx.ExecContext(ctx, `INSERT INTO results
	(id, command_uuid, status, result, not_now_count, last_not_now_at, answered_at)
VALUES (?, ?, ?, ?, 1, UTC_TIMESTAMP(6), UTC_TIMESTAMP(6))
ON DUPLICATE KEY UPDATE status = ?, result = ?, not_now_count = not_now_count + 1,
	last_not_now_at = UTC_TIMESTAMP(6), answered_at = UTC_TIMESTAMP(6)`,
			id, report.CommandUUID, report.Status, notNil(report.Raw),
			report.Status, notNil(report.Raw)); err != nil {
			return fmt.Errorf("storing NotNow result: %w", err)
		}
		return nil
	})
}

// storeFinal records a final answer if the command is pending for id:
// the queue row is deleted and the result stored, in one transaction.
// The DELETE is what decides: of two answers racing, only the one whose
// DELETE removed the row writes a result, so the first final answer wins.
func (s *Store) storeFinal(ctx context.Context, id string, report *mdm.CommandResults, touch bool) error {
	// queue_id_command.
	const deleteQ = "DELETE FROM queue WHERE id = ? AND command_uuid = ?"
	var answered bool
	if s.opts.Delete && !touch {
		res, err := s.exec(ctx, deleteQ, id, report.CommandUUID)
		if err != nil {
			return fmt.Errorf("removing answered command: %w", err)
		}
		n, err := res.RowsAffected()
		if err != nil {
			return fmt.Errorf("removing answered command: %w", err)
		}
		answered = n > 0
	} else {
		err := s.inTx(ctx, func(tx *sql.Tx) error {
			answered = false
			if touch {
				if _, err := tx.ExecContext(ctx, touchLastSeen, id); err != nil {
					return fmt.Errorf("recording last seen: %w", err)
				}
			}
			res, err := tx.ExecContext(ctx, deleteQ, id, report.CommandUUID)
			if err != nil {
				return fmt.Errorf("removing answered command: %w", err)
			}
			n, err := res.RowsAffected()
			if err != nil || n == 0 {
				return err
			}
			answered = true
			if s.opts.Delete {
				return nil
			}
			// PRIMARY. A NotNow result row may exist: it becomes the
			// final one, keeping its NotNow count.
			if _, err := tx.ExecContext(ctx, `INSERT INTO results
	(id, command_uuid, status, result, not_now_count, answered_at)
VALUES (?, ?, ?, ?, 0, UTC_TIMESTAMP(6))
ON DUPLICATE KEY UPDATE status = ?, result = ?, answered_at = UTC_TIMESTAMP(6)`,
				id, report.CommandUUID, report.Status, notNil(report.Raw),
				report.Status, notNil(report.Raw)); err != nil {
				return fmt.Errorf("storing result: %w", err)
			}
			return nil
		})
		if err != nil {
			return err
		}
	}
	if answered && s.opts.Delete {
		return s.dropCommandIfDone(ctx, report.CommandUUID)
	}
	return nil
}

// dropCommandIfDone deletes a command no enrollment has pending any more
// (delete=1). It is safe without locks: a command's queue rows are all
// inserted, with the command, by the one transaction that enqueued it, so
// once none is left none can appear. Of several enrollments answering the
// last rows at once, at least the last to commit sees none left; the
// others' checks are harmless reads (queue_command, then PRIMARY), so
// answers to one shared command never contend on its row.
func (s *Store) dropCommandIfDone(ctx context.Context, commandUUID string) error {
	var one int
	err := s.db.QueryRowContext(ctx, "SELECT 1 FROM queue WHERE command_uuid = ? LIMIT 1", commandUUID).Scan(&one)
	switch {
	case err == nil:
		return nil // still pending somewhere
	case !errors.Is(err, sql.ErrNoRows):
		return fmt.Errorf("checking whether command is still pending: %w", err)
	}
	if _, err := s.exec(ctx, "DELETE FROM commands WHERE command_uuid = ?", commandUUID); err != nil {
		return fmt.Errorf("deleting answered command: %w", err)
	}
	return nil
}

// nextCommand is the next-command lookup: the subquery reads the first
// queue_next entry of (id, not deferred) — in seq order, covered by the
// index, no filesort — and the command is then one PRIMARY lookup. The
// scalar subquery (rather than a join) pins that plan whatever the table
// statistics: with a join, a fresh or small table can get a join buffer
// and a filesort. See schema/0001_init.sql for its EXPLAIN.
const nextCommand = `SELECT c.command_uuid, c.request_type, c.command
FROM commands c
WHERE c.command_uuid = (
	SELECT q.command_uuid FROM queue q
	WHERE q.id = ? AND q.deferred = FALSE
	ORDER BY q.seq
	LIMIT 1)`

// RetrieveNextCommand implements storage.CommandQueueStore with one
// indexed query whose cost does not depend on the enrollment's history.
func (s *Store) RetrieveNextCommand(r *mdm.Request) (*mdm.Command, error) {
	cmd := new(mdm.Command)
	err := s.db.QueryRowContext(reqCtx(r), nextCommand, r.ID).Scan(&cmd.CommandUUID, &cmd.Command.RequestType, &cmd.Raw)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return nil, nil
	case err != nil:
		return nil, fmt.Errorf("retrieving next command of %q: %w", r.ID, err)
	}
	return cmd, nil
}

// StoreCommandReportAndRetrieveNext implements
// storage.CommandReportAndNexter: the report and the next-command lookup
// are sent as one multi-statement request (see reportBatch), so a device
// request costs one round trip to the database instead of two to five
// (BEGIN, the report's statements, COMMIT, the lookup). The lookup runs
// after the COMMIT, whose failure stops the request, so a command is only
// handed out once the report is durable.
//
// Without multi-statement requests (a DSN that sets multiStatements=false,
// or interpolateParams=false, with which MySQL cannot take parameters
// beyond the first statement), it makes the two calls.
func (s *Store) StoreCommandReportAndRetrieveNext(r *mdm.Request, report *mdm.CommandResults) (*mdm.Command, error) {
	if !s.multiStatements {
		return storage.StoreReportThenRetrieveNext(s, r, report)
	}
	cmd, err := s.storeReportBatch(r, report, true)
	if err != nil {
		return nil, fmt.Errorf("storing %s report of %q for command %q and retrieving the next: %w", report.Status, r.ID, report.CommandUUID, err)
	}
	if pending, ok := storage.PendingEventFrom(r.Context); ok {
		pending.MarkStored()
	}
	return cmd, nil
}

// storeReportBatch stores report, and with withNext returns the next
// command, in one request; then, with delete=1, drops the command if that
// was its last pending answer.
func (s *Store) storeReportBatch(r *mdm.Request, report *mdm.CommandResults, withNext bool) (*mdm.Command, error) {
	ctx := reqCtx(r)
	now := time.Now()
	touch := s.seen.Due(r.ID, now)
	var event *storage.OutboxEvent
	if pending, ok := storage.PendingEventFrom(r.Context); ok && withNext {
		event = pending.Event
	}
	b := s.reportBatch(r.ID, report, touch, withNext, event)
	if b.empty() {
		return nil, nil // an answer naming no command, nothing to touch
	}
	var cmd *mdm.Command
	var answered bool
	var read func(*sql.Rows) error
	if b.withNext || b.answered {
		read = func(rows *sql.Rows) error {
			var err error
			cmd, answered, err = b.read(rows)
			return err
		}
	}
	err := s.retry(ctx, func() error {
		cmd, answered = nil, false
		return s.runBatch(ctx, &b.batch, read)
	})
	if err != nil {
		return nil, err
	}
	if touch {
		s.seen.Done(r.ID, now)
	}
	if answered && s.opts.Delete {
		if err := s.dropCommandIfDone(ctx, report.CommandUUID); err != nil {
			return nil, err
		}
	}
	return cmd, nil
}

// answeredVar is the session variable a report batch keeps the report's
// ROW_COUNT() in, between the statement that decides and those that act
// on it. Every batch sets it before reading it.
const answeredVar = "@picomdm_answered"

// reportBatch is the batch for one report and, with withNext, the
// next-command lookup.
type reportBatch struct {
	batch
	// answered: a result set with answeredVar, whether a final answer
	// removed the queue row, comes first (delete=1 then checks whether
	// the command is still pending).
	answered bool
	withNext bool
}

// reportBatch builds the batch for report: the statements of storeIdle,
// storeNotNow and storeFinal, in the same order, on the same indexes,
// with the decision those take in Go — write a result only if the queue
// row was there — taken in SQL from ROW_COUNT(). So the first final
// answer still wins: its DELETE locks the queue row, and a racing one
// deletes nothing once it gets the lock and so writes no result. With
// withNext the next-command lookup comes last, after the COMMIT. With
// event (a storage.PendingEvent's), the report's webhook event is stored
// in the same request: inside the report's transaction where it has one,
// else right after its statements, so a report that fails stores none.
func (s *Store) reportBatch(id string, report *mdm.CommandResults, touch, withNext bool, event *storage.OutboxEvent) *reportBatch {
	b := &reportBatch{withNext: withNext}
	touchQ := func() {
		if touch {
			b.add(touchLastSeen, id)
		}
	}
	addEvent := func() {
		if event != nil {
			b.add(storeEventSQL, sqlstore.EventArgs(event)...)
		}
	}
	switch {
	case report.Status == "" || report.Status == mdm.StatusIdle:
		// Autocommit statements, as storeIdle runs them.
		b.add("UPDATE queue SET deferred = FALSE WHERE id = ? AND deferred = TRUE", id)
		touchQ()
		addEvent()
	case report.CommandUUID == "":
		touchQ()
		addEvent()
	case report.Status == mdm.StatusNotNow:
		tx := touch || !s.opts.Delete
		if tx {
			b.begin()
		}
		touchQ()
		b.add(`UPDATE queue
SET deferred = TRUE, not_now_count = not_now_count + 1, last_not_now_at = UTC_TIMESTAMP(6)
WHERE id = ? AND command_uuid = ?`, id, report.CommandUUID)
		if !s.opts.Delete {
			b.add("SET " + answeredVar + " = ROW_COUNT()")
			b.add(`INSERT INTO results
	(id, command_uuid, status, result, not_now_count, last_not_now_at, answered_at)
SELECT ?, ?, ?, ?, 1, UTC_TIMESTAMP(6), UTC_TIMESTAMP(6) FROM DUAL WHERE `+answeredVar+` > 0
ON DUPLICATE KEY UPDATE status = ?, result = ?, not_now_count = not_now_count + 1,
	last_not_now_at = UTC_TIMESTAMP(6), answered_at = UTC_TIMESTAMP(6)`,
				id, report.CommandUUID, report.Status, notNil(report.Raw),
				report.Status, notNil(report.Raw))
		}
		addEvent()
		if tx {
			b.commit()
		}
	default:
		tx := touch || !s.opts.Delete
		if tx {
			b.begin()
		}
		touchQ()
		b.add("DELETE FROM queue WHERE id = ? AND command_uuid = ?", id, report.CommandUUID)
		b.add("SET " + answeredVar + " = ROW_COUNT()")
		if !s.opts.Delete {
			// A NotNow result row may exist: it becomes the final
			// one, keeping its NotNow count.
			b.add(`INSERT INTO results
	(id, command_uuid, status, result, not_now_count, answered_at)
SELECT ?, ?, ?, ?, 0, UTC_TIMESTAMP(6) FROM DUAL WHERE `+answeredVar+` > 0
ON DUPLICATE KEY UPDATE status = ?, result = ?, answered_at = UTC_TIMESTAMP(6)`,
				id, report.CommandUUID, report.Status, notNil(report.Raw),
				report.Status, notNil(report.Raw))
		}
		addEvent()
		if tx {
			b.commit()
		}
		if s.opts.Delete {
			b.answered = true
			b.add("SELECT " + answeredVar + " > 0")
		}
	}
	if withNext {
		b.add(nextCommand, id)
	}
	return b
}

// read reads the batch's result sets: whether the report answered a
// pending command, if the batch asks, and the next command (nil: none).
func (b *reportBatch) read(rows *sql.Rows) (cmd *mdm.Command, answered bool, err error) {
	if b.answered {
		if !rows.Next() {
			return nil, false, fmt.Errorf("reading whether the command was pending: %w", resultSetErr(rows))
		}
		if err := rows.Scan(&answered); err != nil {
			return nil, false, err
		}
		if b.withNext && !rows.NextResultSet() {
			return nil, false, fmt.Errorf("reading the next command: %w", resultSetErr(rows))
		}
	}
	if b.withNext && rows.Next() {
		cmd = new(mdm.Command)
		if err := rows.Scan(&cmd.CommandUUID, &cmd.Command.RequestType, &cmd.Raw); err != nil {
			return nil, false, err
		}
	}
	return cmd, answered, rows.Err()
}
