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

// How a command report is stored (DESIGN.md §2): each kind is one
// statement, so a report costs one round trip however it is answered.
//
//   - final (any Status but Idle and NotNow): delete the pending row and,
//     from what the delete returned, insert the result, in one statement
//     (a data-modifying CTE). Only the report that actually deleted the
//     row writes a result, so the first final answer wins; a duplicate, a
//     late answer after a re-enrollment, or a report for a command of
//     another enrollment deletes nothing and writes nothing. The upsert
//     replaces an interim NotNow result.
//   - NotNow: mark the pending row deferred (counting the NotNow) and
//     upsert a NotNow result — never over a final one.
//   - Idle: clear the deferral of the enrollment's NotNow'd rows.
//
// With delete=1 no result is written: a final answer only deletes the
// pending row, a NotNow only marks it. Command rows nobody refers to any
// more are then removed by the background purge (purge.go), not here: on
// this path that check would have to look at every other target of the
// command, or keep a per-command counter that every answer updates — one
// hot row all of a multi-target command's devices would queue on.
//
// Indexes: command_queue primary key (command_uuid, id) for the final and
// NotNow lookups; command_queue_deferred for Idle; command_results
// primary key for the upserts; enrollments primary key for last_seen_at.
type reportKind int

const (
	reportFinal reportKind = iota
	reportNotNow
	reportIdle
)

func kindOf(status string) reportKind {
	switch status {
	case "", mdm.StatusIdle:
		return reportIdle
	case mdm.StatusNotNow:
		return reportNotNow
	}
	return reportFinal
}

// The statements' building blocks. $1 is always the enrollment ID, $2 the
// CommandUUID; a result-keeping final answer adds $3 Status and $4 the
// raw report, a result-keeping NotNow $3 the raw report.
const (
	// seenCTE refreshes last_seen_at at most once a minute, whatever the
	// in-process throttle says (another replica may have written it).
	seenCTE = `seen AS (
    UPDATE enrollments SET last_seen_at = now()
    WHERE id = $1 AND last_seen_at < now() - interval '1 minute'
)`
	finalCTE = `done AS (
    DELETE FROM command_queue WHERE command_uuid = $2 AND id = $1
    RETURNING id, command_uuid, not_now_count, queued_at
)`
	finalResult = `INSERT INTO command_results AS r (id, command_uuid, status, result, not_now_count, queued_at, answered_at)
SELECT id, command_uuid, $3::text, $4::bytea, not_now_count, queued_at, now() FROM done
ON CONFLICT (id, command_uuid) DO UPDATE SET
    status        = EXCLUDED.status,
    result        = EXCLUDED.result,
    not_now_count = EXCLUDED.not_now_count,
    queued_at     = EXCLUDED.queued_at,
    answered_at   = EXCLUDED.answered_at`
	finalDelete = `DELETE FROM command_queue WHERE command_uuid = $2 AND id = $1`

	notNowCTE = `notnow AS (
    UPDATE command_queue
    SET deferred = TRUE, not_now_count = not_now_count + 1, last_not_now_at = now()
    WHERE command_uuid = $2 AND id = $1
    RETURNING id, command_uuid, not_now_count, queued_at
)`
	notNowResult = `INSERT INTO command_results AS r (id, command_uuid, status, result, not_now_count, queued_at, answered_at)
SELECT id, command_uuid, 'NotNow', $3::bytea, not_now_count, queued_at, now() FROM notnow
ON CONFLICT (id, command_uuid) DO UPDATE SET
    status        = EXCLUDED.status,
    result        = EXCLUDED.result,
    not_now_count = EXCLUDED.not_now_count,
    queued_at     = EXCLUDED.queued_at,
    answered_at   = EXCLUDED.answered_at
WHERE r.status = 'NotNow'`
	notNowMark = `UPDATE command_queue
SET deferred = TRUE, not_now_count = not_now_count + 1, last_not_now_at = now()
WHERE command_uuid = $2 AND id = $1`

	idleCTE = `undeferred AS (
    UPDATE command_queue SET deferred = FALSE
    WHERE id = $1 AND deferred
    RETURNING seq, command_uuid
)`
	idleUpdate = `UPDATE command_queue SET deferred = FALSE WHERE id = $1 AND deferred`
)

// nextSQL is the hot path: the enrollment's oldest pending command that
// is not deferred, with its body. The sub-select is one probe of
// command_queue_next (id, seq) reading forward until the first
// non-deferred row, then one probe of the commands primary key. Answered
// commands are not in command_queue, so the cost does not grow with the
// enrollment's history.
const nextSQL = `
SELECT c.command_uuid, c.request_type, c.command FROM commands c
WHERE c.command_uuid = (
    SELECT q.command_uuid FROM command_queue q
    WHERE q.id = $1 AND NOT q.deferred
    ORDER BY q.seq LIMIT 1
)`

// When the report and the next-command lookup share a statement, the
// lookup reads the snapshot from before the report's changes (PostgreSQL
// runs all parts of a statement on one snapshot). So after a final answer
// or a NotNow it leaves out the reported command explicitly, and after an
// Idle it adds the rows the Idle just made eligible again.
const (
	nextAfterAnswer = `SELECT c.command_uuid, c.request_type, c.command FROM commands c
WHERE c.command_uuid = (
    SELECT q.command_uuid FROM command_queue q
    WHERE q.id = $1 AND NOT q.deferred AND q.command_uuid <> $2
    ORDER BY q.seq LIMIT 1
)`
	nextAfterIdle = `SELECT c.command_uuid, c.request_type, c.command FROM commands c
WHERE c.command_uuid = (
    SELECT u.command_uuid FROM (
        (SELECT q.seq, q.command_uuid FROM command_queue q
         WHERE q.id = $1 AND NOT q.deferred ORDER BY q.seq LIMIT 1)
        UNION ALL
        (SELECT seq, command_uuid FROM undeferred ORDER BY seq LIMIT 1)
    ) u
    ORDER BY u.seq LIMIT 1
)`
)

// withCTEs prefixes main with a WITH clause of ctes (none: main alone).
func withCTEs(main string, ctes ...string) string {
	if len(ctes) == 0 {
		return main
	}
	return "WITH " + strings.Join(ctes, ",\n") + "\n" + main
}

// reportStatement is one variant of a report statement.
type reportStatement struct {
	kind     reportKind
	delete   bool // delete=1: keep no result
	seen     bool // refresh last_seen_at too
	withNext bool // also return the next command
	event    bool // also store the report's webhook event (outboxCTE)
}

// argCount is how many arguments the variant's report part takes; the
// outbox event's come after them.
func (v reportStatement) argCount() int {
	switch {
	case v.kind == reportIdle:
		return 1
	case v.delete:
		return 2
	case v.kind == reportFinal:
		return 4
	default: // NotNow
		return 3
	}
}

// outboxCTE stores the report's webhook event in the report's own
// statement (storage.PendingEvent), so it costs no round trip of its own
// and exists exactly when the report was stored. Its eight arguments
// start at $n+1 (the columns of storeEventSQL); the outbox primary key
// makes a retried statement store it once.
func outboxCTE(n int) string {
	return fmt.Sprintf(`outboxed AS (
    INSERT INTO outbox (id, enrollment_id, topic, body, created_at, state, attempts, next_attempt_at, last_error)
    VALUES ($%d, $%d, $%d, $%d, $%d, 'pending', $%d, $%d, $%d)
    ON CONFLICT (id) DO NOTHING
)`, n+1, n+2, n+3, n+4, n+5, n+6, n+7, n+8)
}

// sql builds the variant's statement text.
func (v reportStatement) sql() string {
	var ctes []string
	var main string
	switch v.kind {
	case reportFinal:
		switch {
		case v.delete && !v.withNext:
			main = finalDelete
		case v.delete:
			ctes, main = []string{finalCTE}, nextAfterAnswer
		case !v.withNext:
			ctes, main = []string{finalCTE}, finalResult
		default:
			ctes, main = []string{finalCTE, "stored AS (\n" + finalResult + "\n)"}, nextAfterAnswer
		}
	case reportNotNow:
		switch {
		case v.delete && !v.withNext:
			main = notNowMark
		case v.delete:
			ctes, main = []string{notNowCTE}, nextAfterAnswer
		case !v.withNext:
			ctes, main = []string{notNowCTE}, notNowResult
		default:
			ctes, main = []string{notNowCTE, "stored AS (\n" + notNowResult + "\n)"}, nextAfterAnswer
		}
	case reportIdle:
		if v.withNext {
			ctes, main = []string{idleCTE}, nextAfterIdle
		} else {
			main = idleUpdate
		}
	}
	if v.seen {
		ctes = append(ctes, seenCTE)
	}
	if v.event {
		ctes = append(ctes, outboxCTE(v.argCount()))
	}
	return withCTEs(main, ctes...)
}

// reportSQL holds every variant's text, built once.
var reportSQL = func() map[reportStatement]string {
	m := make(map[reportStatement]string)
	for _, kind := range []reportKind{reportFinal, reportNotNow, reportIdle} {
		for _, del := range []bool{false, true} {
			for _, seen := range []bool{false, true} {
				for _, next := range []bool{false, true} {
					for _, event := range []bool{false, true} {
						v := reportStatement{kind, del, seen, next, event}
						m[v] = v.sql()
					}
				}
			}
		}
	}
	return m
}()

// report returns the statement and arguments that store report for r,
// and whether the statement refreshes last_seen_at.
//
// With the event of a storage.PendingEvent, the statement stores it too
// (outboxCTE).
func (s *Store) report(r *mdm.Request, report *mdm.CommandResults, withNext bool, event *storage.OutboxEvent) (string, []any, bool) {
	v := reportStatement{
		kind:     kindOf(report.Status),
		delete:   s.opts.Delete,
		seen:     s.seen.Due(r.ID, time.Now()),
		withNext: withNext,
		event:    event != nil,
	}
	args := []any{r.ID}
	switch {
	case v.kind == reportIdle && v.withNext:
		// nextAfterIdle needs no CommandUUID.
	case v.kind == reportIdle:
	case v.delete:
		args = append(args, report.CommandUUID)
	case v.kind == reportFinal:
		args = append(args, report.CommandUUID, report.Status, rawOrEmpty(report.Raw))
	case v.kind == reportNotNow:
		args = append(args, report.CommandUUID, rawOrEmpty(report.Raw))
	}
	if event != nil {
		args = append(args, sqlstore.EventArgs(event)...)
	}
	return reportSQL[v], args, v.seen
}

// rawOrEmpty keeps NOT NULL BYTEA columns satisfied by a report built
// without its raw bytes.
func rawOrEmpty(b []byte) []byte {
	if b == nil {
		return []byte{}
	}
	return b
}

// StoreCommandReport implements storage.CommandQueueStore in one
// statement (see reportKind).
func (s *Store) StoreCommandReport(r *mdm.Request, report *mdm.CommandResults) error {
	q, args, seen := s.report(r, report, false, nil)
	if err := s.exec(r.Context, q, args...); err != nil {
		return fmt.Errorf("storing %s report of %q for command %q: %w", report.Status, r.ID, report.CommandUUID, err)
	}
	if seen {
		s.seen.Done(r.ID, time.Now())
	}
	return nil
}

// RetrieveNextCommand implements storage.CommandQueueStore with one
// indexed query (see nextSQL).
func (s *Store) RetrieveNextCommand(r *mdm.Request) (*mdm.Command, error) {
	cmd, err := s.queryCommand(r.Context, nextSQL, r.ID)
	if err != nil {
		return nil, fmt.Errorf("retrieving next command of %q: %w", r.ID, err)
	}
	return cmd, nil
}

// StoreCommandReportAndRetrieveNext implements
// storage.CommandReportAndNexter: it stores report, then returns r's next
// command (nil when there is none), like StoreCommandReport followed by
// RetrieveNextCommand but in ONE statement and round trip — the device
// request's whole storage work. The statement commits before its row
// reaches the caller (database/sql reads the reply up to ReadyForQuery),
// so a command is only handed out once the report is durable.
func (s *Store) StoreCommandReportAndRetrieveNext(r *mdm.Request, report *mdm.CommandResults) (*mdm.Command, error) {
	pending, withEvent := storage.PendingEventFrom(r.Context)
	var event *storage.OutboxEvent
	if withEvent {
		event = pending.Event
	}
	q, args, seen := s.report(r, report, true, event)
	cmd, err := s.queryCommand(r.Context, q, args...)
	if err != nil {
		return nil, fmt.Errorf("storing %s report of %q for command %q and retrieving the next: %w", report.Status, r.ID, report.CommandUUID, err)
	}
	if withEvent {
		pending.MarkStored()
	}
	if seen {
		s.seen.Done(r.ID, time.Now())
	}
	return cmd, nil
}

// queryCommand runs a statement returning at most one command row; no
// row is no command.
func (s *Store) queryCommand(ctx context.Context, query string, args ...any) (*mdm.Command, error) {
	cmd := new(mdm.Command)
	err := s.queryRow(ctx, query, args, &cmd.CommandUUID, &cmd.Command.RequestType, &cmd.Raw)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	return cmd, nil
}

// seenInterval is how stale an enrollment's last_seen_at may get: it is
// written at most once per interval per enrollment. The statements' own
// condition (seenCTE) enforces it across replicas; each process also
// remembers what it wrote (Store.seen), so that most reports skip the
// write entirely.
const seenInterval = time.Minute
