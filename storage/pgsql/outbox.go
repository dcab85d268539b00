package pgsql

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/picomdm/picomdm/storage"
	"github.com/picomdm/picomdm/storage/internal/sqlstore"
)

var _ storage.OutboxStore = (*Store)(nil)

// Outbox statements. The event ID's unique index (outbox_id_key) serves
// every statement that names one event.
const (
	// storeEventSQL appends an event: seq, the identity primary key, puts
	// it behind every event stored before it. An event ID already there
	// is left alone, so a call retried after an unknown outcome stores the
	// event once.
	storeEventSQL = `
INSERT INTO outbox (id, enrollment_id, topic, body, created_at, state, attempts, next_attempt_at, last_error)
VALUES ($1, $2, $3, $4, $5, 'pending', $6, $7, $8)
ON CONFLICT (id) DO NOTHING`

	// claimEventsSQL claims, in one statement, up to $4 heads: pending
	// events, oldest first (outbox_state_seq), due and not under a running
	// claim at $1, with no earlier pending event of their enrollment (one
	// probe of outbox_pending_enrollment each). FOR UPDATE SKIP LOCKED
	// locks them, skipping any another claimer is locking at this moment,
	// and the UPDATE claims them for $2 until $3.
	//
	// Two claimers never get the same event: a row another committed
	// claim changed is re-checked on its new version (READ COMMITTED
	// follows the update), and its claim is running. An event behind a
	// head another claimer holds locked is never taken: the NOT EXISTS
	// is a plain read, not a locking one (only the rows of the outer FROM
	// are locked), so it sees that head as pending still.
	claimEventsSQL = `
WITH heads AS (
    SELECT o.seq FROM outbox o
    WHERE o.state = 'pending'
      AND (o.next_attempt_at IS NULL OR o.next_attempt_at <= $1)
      AND (o.claimed_until IS NULL OR o.claimed_until <= $1)
      AND NOT EXISTS (SELECT 1 FROM outbox e
          WHERE e.state = 'pending' AND e.enrollment_id = o.enrollment_id AND e.seq < o.seq)
    ORDER BY o.seq
    LIMIT $4
    FOR UPDATE SKIP LOCKED
)
UPDATE outbox o SET claimed_by = $2, claimed_until = $3
FROM heads h WHERE o.seq = h.seq
RETURNING o.seq, o.id, o.enrollment_id, o.topic, o.body, o.created_at, o.state, o.attempts,
    o.next_attempt_at, o.last_error`

	completeEventSQL = `DELETE FROM outbox WHERE id = $1 AND claimed_by = $2`

	retryEventSQL = `
UPDATE outbox
SET attempts = $1, next_attempt_at = $2, last_error = $3, claimed_by = NULL, claimed_until = NULL
WHERE id = $4 AND claimed_by = $5`

	setAsideEventSQL = `
UPDATE outbox
SET state = 'failed', attempts = $1, last_error = $2, claimed_by = NULL, claimed_until = NULL
WHERE id = $3 AND claimed_by = $4`

	// releaseEventsSQL drops owner's claims: the pending range of
	// outbox_state_seq (a clean shutdown, not a request path).
	releaseEventsSQL = `
UPDATE outbox SET claimed_by = NULL, claimed_until = NULL
WHERE state = 'pending' AND claimed_by = $1`

	// listEventsSQL is one page of a state: an outbox_state_seq range
	// after the cursor's seq.
	listEventsSQL = `SELECT ` + sqlstore.OutboxColumns + ` FROM outbox
WHERE state = $1 AND seq > $2 ORDER BY seq LIMIT $3`

	// redeliverEventSQL keeps the event's seq, so that it takes its
	// original place among its enrollment's events.
	redeliverEventSQL = `
UPDATE outbox
SET state = 'pending', attempts = 0, next_attempt_at = NULL, claimed_by = NULL, claimed_until = NULL
WHERE id = $1 AND state = 'failed'`

	dropEventSQL = `DELETE FROM outbox WHERE id = $1`

	// outboxStatsSQL counts each state over outbox_state_seq (index-only
	// scans once the table is vacuumed) and reads the first pending row
	// in seq order.
	outboxStatsSQL = `SELECT
    (SELECT count(*) FROM outbox WHERE state = 'pending'),
    (SELECT count(*) FROM outbox WHERE state = 'failed'),
    (SELECT created_at FROM outbox WHERE state = 'pending' ORDER BY seq LIMIT 1)`

	// trimFailedSQL deletes a batch of failed events stored before $1
	// (the failed range of outbox_state_seq).
	trimFailedSQL = `
DELETE FROM outbox WHERE seq = ANY (ARRAY(
    SELECT seq FROM outbox WHERE state = 'failed' AND created_at < $1 ORDER BY seq LIMIT $2
))`

	// trimOldestSQL deletes the $2 oldest events of state $1 (the start
	// of its outbox_state_seq range).
	trimOldestSQL = `
DELETE FROM outbox WHERE seq = ANY (ARRAY(
    SELECT seq FROM outbox WHERE state = $1 ORDER BY seq LIMIT $2
))`
)

// execCount runs a prepared statement, retrying transient conflicts, and
// returns the rows it affected.
func (s *Store) execCount(ctx context.Context, query string, args ...any) (int64, error) {
	st, err := s.stmts.get(ctx, query)
	if err != nil {
		return 0, err
	}
	var n int64
	err = withRetry(ctx, func() error {
		res, err := st.ExecContext(ctx, args...)
		if err != nil {
			return err
		}
		n, err = res.RowsAffected()
		return err
	})
	return n, err
}

// StoreEvent implements storage.OutboxStore (storeEventSQL).
func (s *Store) StoreEvent(ctx context.Context, ev *storage.OutboxEvent) error {
	return sqlstore.StoreEvent(ctx, s.execCount, storeEventSQL, ev)
}

// ClaimEvents implements storage.OutboxStore in one statement
// (claimEventsSQL).
func (s *Store) ClaimEvents(ctx context.Context, owner string, now, leaseUntil time.Time, limit int) ([]storage.OutboxEvent, error) {
	if limit <= 0 {
		return nil, nil
	}
	st, err := s.stmts.get(ctx, claimEventsSQL)
	if err != nil {
		return nil, fmt.Errorf("claiming events: %w", err)
	}
	type claimed struct {
		seq int64
		ev  storage.OutboxEvent
	}
	var got []claimed
	err = withRetry(ctx, func() error {
		got = got[:0]
		rows, err := st.QueryContext(ctx, sqlstore.DBTime(now), owner, sqlstore.DBTime(leaseUntil), limit)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			seq, ev, err := sqlstore.ScanOutboxEvent(rows)
			if err != nil {
				return err
			}
			got = append(got, claimed{seq, ev})
		}
		return rows.Err()
	})
	if err != nil {
		return nil, fmt.Errorf("claiming events: %w", err)
	}
	// RETURNING comes in no particular order.
	slices.SortFunc(got, func(a, b claimed) int { return cmp.Compare(a.seq, b.seq) })
	out := make([]storage.OutboxEvent, len(got))
	for i, c := range got {
		out[i] = c.ev
	}
	return out, nil
}

// CompleteEvent implements storage.OutboxStore (completeEventSQL).
func (s *Store) CompleteEvent(ctx context.Context, id, owner string) error {
	return sqlstore.CompleteEvent(ctx, s.execCount, completeEventSQL, id, owner)
}

// RetryEvent implements storage.OutboxStore (retryEventSQL).
func (s *Store) RetryEvent(ctx context.Context, id, owner string, attempts int, next time.Time, lastErr string) error {
	return sqlstore.RetryEvent(ctx, s.execCount, retryEventSQL, id, owner, attempts, next, lastErr)
}

// SetAsideEvent implements storage.OutboxStore (setAsideEventSQL).
func (s *Store) SetAsideEvent(ctx context.Context, id, owner string, attempts int, lastErr string) error {
	return sqlstore.SetAsideEvent(ctx, s.execCount, setAsideEventSQL, id, owner, attempts, lastErr)
}

// ReleaseEvents implements storage.OutboxStore (releaseEventsSQL).
func (s *Store) ReleaseEvents(ctx context.Context, owner string) error {
	return sqlstore.ReleaseEvents(ctx, s.execUnprepared, releaseEventsSQL, owner)
}

// ListEvents implements storage.OutboxStore (listEventsSQL).
func (s *Store) ListEvents(ctx context.Context, state string, p storage.Page) ([]storage.OutboxEvent, string, error) {
	return sqlstore.ListEvents(ctx, s.db, listEventsSQL, state, p)
}

// RedeliverEvent implements storage.OutboxStore (redeliverEventSQL).
func (s *Store) RedeliverEvent(ctx context.Context, id string) error {
	return sqlstore.RedeliverEvent(ctx, s.execCount, redeliverEventSQL, id)
}

// DropEvent implements storage.OutboxStore (dropEventSQL).
func (s *Store) DropEvent(ctx context.Context, id string) error {
	return sqlstore.DropEvent(ctx, s.execCount, dropEventSQL, id)
}

// OutboxStats implements storage.OutboxStore (outboxStatsSQL).
func (s *Store) OutboxStats(ctx context.Context) (storage.OutboxStats, error) {
	return sqlstore.OutboxStats(ctx, s.db, outboxStatsSQL)
}

// TrimOutbox implements storage.OutboxStore (sqlstore.TrimOutbox with
// trimFailedSQL and trimOldestSQL).
func (s *Store) TrimOutbox(ctx context.Context, maxEvents int, failedBefore time.Time) (int, error) {
	return sqlstore.TrimOutbox(ctx, s.db, s.execUnprepared, sqlstore.TrimQueries{
		Failed: trimFailedSQL, Oldest: trimOldestSQL, Count: `SELECT count(*) FROM outbox`,
	}, purgeBatch, maxEvents, failedBefore)
}

// execUnprepared runs a statement that is not on the request path (a
// batch of a trim, a shutdown's release) without preparing it, retrying
// transient conflicts, and returns the rows it affected.
func (s *Store) execUnprepared(ctx context.Context, query string, args ...any) (int64, error) {
	var n int64
	err := withRetry(ctx, func() error {
		res, err := s.db.ExecContext(ctx, query, args...)
		if err != nil {
			return err
		}
		n, err = res.RowsAffected()
		return err
	})
	return n, err
}
