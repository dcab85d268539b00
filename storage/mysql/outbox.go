package mysql

import (
	"context"
	"database/sql"
	"fmt"
	"time"

	"github.com/picomdm/picomdm/storage"
	"github.com/picomdm/picomdm/storage/internal/sqlstore"
)

var _ storage.OutboxStore = (*Store)(nil)

// StoreEvent implements storage.OutboxStore (storeEventSQL).
func (s *Store) StoreEvent(ctx context.Context, ev *storage.OutboxEvent) error {
	return sqlstore.StoreEvent(ctx, s.execCount, storeEventSQL, ev)
}

// storeEventSQL appends an event (sqlstore.EventArgs): seq, the
// AUTO_INCREMENT primary key, puts it behind every event stored before
// it; an ID already there (outbox_id) is left alone. A report batch
// carries it too (storage.PendingEvent).
const storeEventSQL = `INSERT INTO outbox
	(id, enrollment_id, topic, body, created_at, state, attempts, next_attempt_at, last_error)
VALUES (?, ?, ?, ?, ?, 'pending', ?, ?, ?)
ON DUPLICATE KEY UPDATE id = id`

// claimCandidatesSQL lists the heads that ClaimEvents tries to claim: the
// pending events, oldest first (outbox_state), that are due, not under a
// running claim, and have no earlier pending event of their enrollment
// (one outbox_enrollment range probe each). It is a plain read (a
// consistent read at READ COMMITTED: it locks nothing and sees every head
// another claimer holds locked as pending still), so an event behind a
// head another replica is claiming is never a candidate. Locking the
// candidates is the next statement's job: a locking read here would, on
// servers that apply the outer locking clause to subqueries too (MySQL
// 8.0 before 8.0.22 did), lock the NOT EXISTS subquery's rows as well —
// and with SKIP LOCKED skip a locked head there, and see past it.
// (MariaDB 10.11 reads the subquery without locks; the split costs one
// round trip and holds on every server.)
const claimCandidatesSQL = `SELECT o.seq FROM outbox o
WHERE o.state = 'pending'
	AND (o.next_attempt_at IS NULL OR o.next_attempt_at <= ?)
	AND (o.claimed_until IS NULL OR o.claimed_until <= ?)
	AND NOT EXISTS (SELECT 1 FROM outbox e
		WHERE e.enrollment_id = o.enrollment_id AND e.state = 'pending' AND e.seq < o.seq)
ORDER BY o.seq
LIMIT ?`

// ClaimEvents implements storage.OutboxStore in one short transaction:
// the candidate heads (claimCandidatesSQL), then those still pending, due
// and unclaimed locked by PRIMARY with FOR UPDATE SKIP LOCKED (a candidate
// another replica is claiming at this moment is skipped, not waited for),
// then one UPDATE claiming the locked rows. Two replicas never claim the
// same event: the second's locking read sees the first's committed claim,
// or skips the row while it is being claimed.
//
// A candidate that stopped being its enrollment's head between the two
// reads can only have done so by an earlier event of its enrollment
// becoming pending again (RedeliverEvent), which commutes with the claim:
// the outcome is that of the claim running just before the redelivery.
func (s *Store) ClaimEvents(ctx context.Context, owner string, now, leaseUntil time.Time, limit int) ([]storage.OutboxEvent, error) {
	if limit <= 0 {
		return nil, nil
	}
	now, leaseUntil = sqlstore.DBTime(now), sqlstore.DBTime(leaseUntil)
	var out []storage.OutboxEvent
	err := s.inTx(ctx, func(tx *sql.Tx) error {
		out = out[:0]
		seqs, err := querySeqs(ctx, tx, claimCandidatesSQL, now, now, limit)
		if err != nil || len(seqs) == 0 {
			return err
		}
		rows, err := tx.QueryContext(ctx, `SELECT `+sqlstore.OutboxColumns+` FROM outbox
WHERE seq IN (`+placeholders(len(seqs), 1)+`) AND state = 'pending'
	AND (next_attempt_at IS NULL OR next_attempt_at <= ?)
	AND (claimed_until IS NULL OR claimed_until <= ?)
ORDER BY seq
FOR UPDATE SKIP LOCKED`, append(seqs, now, now)...)
		if err != nil {
			return err
		}
		defer rows.Close()
		var locked []any
		for rows.Next() {
			seq, ev, err := sqlstore.ScanOutboxEvent(rows)
			if err != nil {
				return err
			}
			locked = append(locked, seq)
			out = append(out, ev)
		}
		if err := rows.Err(); err != nil {
			return err
		}
		rows.Close()
		if len(locked) == 0 {
			return nil
		}
		_, err = tx.ExecContext(ctx, `UPDATE outbox SET claimed_by = ?, claimed_until = ?
WHERE seq IN (`+placeholders(len(locked), 1)+`)`, append([]any{owner, leaseUntil}, locked...)...)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("claiming events: %w", err)
	}
	return out, nil
}

// querySeqs runs a query selecting seq values and returns them as
// arguments for an IN list.
func querySeqs(ctx context.Context, tx *sql.Tx, query string, args ...any) ([]any, error) {
	rows, err := tx.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var seqs []any
	for rows.Next() {
		var seq int64
		if err := rows.Scan(&seq); err != nil {
			return nil, err
		}
		seqs = append(seqs, seq)
	}
	return seqs, rows.Err()
}

// The statements on one claimed event name it by outbox_id, and change
// it only while owner still holds the claim. Retrying or setting an event
// aside releases the claim with it (claimed_until changes, so the row
// always counts as affected).
const (
	completeEventSQL = `DELETE FROM outbox WHERE id = ? AND claimed_by = ?`
	retryEventSQL    = `UPDATE outbox
SET attempts = ?, next_attempt_at = ?, last_error = ?, claimed_by = NULL, claimed_until = NULL
WHERE id = ? AND claimed_by = ?`
	setAsideEventSQL = `UPDATE outbox
SET state = 'failed', attempts = ?, last_error = ?, claimed_by = NULL, claimed_until = NULL
WHERE id = ? AND claimed_by = ?`
)

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

// ReleaseEvents implements storage.OutboxStore: one UPDATE over the
// pending range of outbox_state (a clean shutdown, not a request path;
// failed events hold no claims).
func (s *Store) ReleaseEvents(ctx context.Context, owner string) error {
	return sqlstore.ReleaseEvents(ctx, s.execCount, `UPDATE outbox SET claimed_by = NULL, claimed_until = NULL
WHERE state = 'pending' AND claimed_by = ?`, owner)
}

// ListEvents implements storage.OutboxStore: one outbox_state range, in
// seq order after the cursor's seq.
func (s *Store) ListEvents(ctx context.Context, state string, p storage.Page) ([]storage.OutboxEvent, string, error) {
	return sqlstore.ListEvents(ctx, s.db, `SELECT `+sqlstore.OutboxColumns+` FROM outbox
WHERE state = ? AND seq > ? ORDER BY seq LIMIT ?`, state, p)
}

// RedeliverEvent implements storage.OutboxStore: one UPDATE by outbox_id.
// The event keeps its seq, so it takes its original place among its
// enrollment's events.
func (s *Store) RedeliverEvent(ctx context.Context, id string) error {
	return sqlstore.RedeliverEvent(ctx, s.execCount, `UPDATE outbox
SET state = 'pending', attempts = 0, next_attempt_at = NULL, claimed_by = NULL, claimed_until = NULL
WHERE id = ? AND state = 'failed'`, id)
}

// DropEvent implements storage.OutboxStore: one DELETE by outbox_id.
func (s *Store) DropEvent(ctx context.Context, id string) error {
	return sqlstore.DropEvent(ctx, s.execCount, `DELETE FROM outbox WHERE id = ?`, id)
}

// OutboxStats implements storage.OutboxStore: counts over outbox_state
// (an index-only count per state) and the first pending row in seq
// order.
func (s *Store) OutboxStats(ctx context.Context) (storage.OutboxStats, error) {
	return sqlstore.OutboxStats(ctx, s.db, `SELECT
	(SELECT COUNT(*) FROM outbox WHERE state = 'pending'),
	(SELECT COUNT(*) FROM outbox WHERE state = 'failed'),
	(SELECT created_at FROM outbox WHERE state = 'pending' ORDER BY seq LIMIT 1)`)
}

// TrimOutbox implements storage.OutboxStore (sqlstore.TrimOutbox), on
// the outbox_state ranges: failed events from their start, then the
// oldest failed and pending ones.
func (s *Store) TrimOutbox(ctx context.Context, maxEvents int, failedBefore time.Time) (int, error) {
	return sqlstore.TrimOutbox(ctx, s.db, s.execCount, sqlstore.TrimQueries{
		Failed: `DELETE FROM outbox WHERE state = 'failed' AND created_at < ? ORDER BY seq LIMIT ?`,
		Oldest: `DELETE FROM outbox WHERE state = ? ORDER BY seq LIMIT ?`,
		Count:  `SELECT COUNT(*) FROM outbox`,
	}, purgeBatch, maxEvents, failedBefore)
}

// execCount runs one autocommit statement, retried on deadlock, and
// returns the rows it affected.
func (s *Store) execCount(ctx context.Context, query string, args ...any) (int64, error) {
	res, err := s.exec(ctx, query, args...)
	if err != nil {
		return 0, err
	}
	return res.RowsAffected()
}
