package mysql

import (
	"context"
	"database/sql"
	"fmt"
	"github.com/picomdm/picomdm/storage/internal/sqlstore"
	"slices"
	"time"

	"github.com/picomdm/picomdm/storage"
)

var _ storage.RepushStore = (*Store)(nil)

// RecordPushes implements storage.RepushStore: which IDs name
// enrollments (knownEnrollments), then one multi-row upsert of their
// records per idChunk (push_records PRIMARY). A later record of the same
// ID in records replaces an earlier one.
func (s *Store) RecordPushes(ctx context.Context, records []storage.PushRecord) error {
	last := make(map[string]int, len(records))
	ids := make([]string, 0, len(records))
	for i, r := range records {
		if _, dup := last[r.ID]; !dup {
			ids = append(ids, r.ID)
		}
		last[r.ID] = i
	}
	known, err := s.knownEnrollments(ctx, ids)
	if err != nil {
		return fmt.Errorf("recording pushes: %w", err)
	}
	ids = slices.DeleteFunc(ids, func(id string) bool { _, ok := known[id]; return !ok })
	err = chunks(ids, func(chunk []string) error {
		args := make([]any, 0, 4*len(chunk))
		for _, id := range chunk {
			r := records[last[id]]
			args = append(args, r.ID, sqlstore.DBTime(r.PushedAt), max(r.Repushes, 0), sqlstore.DBTime(r.NextRepushAt))
		}
		return s.retry(ctx, func() error {
			_, err := s.db.ExecContext(ctx, `INSERT INTO push_records (id, pushed_at, repushes, next_repush_at)
VALUES `+placeholders(len(chunk), 4)+`
ON DUPLICATE KEY UPDATE pushed_at = VALUES(pushed_at), repushes = VALUES(repushes),
	next_repush_at = VALUES(next_repush_at)`, args...)
			return err
		})
	})
	if err != nil {
		return fmt.Errorf("recording pushes: %w", err)
	}
	return nil
}

// dueForRepushSQL reads push_records_next from its start (oldest
// next_repush_at first), joins each record's enrollment by PRIMARY and
// probes queue_next for a pending command (any, deferred or not).
//
// "Not seen since the push" compares pushed_at with last_seen_at, which
// each replica writes at most once per lastSeenInterval per enrollment:
// a device that checked in within that interval after an earlier write
// looks unseen until its next request past the interval, so it may get
// one push more than it needed (which brings that request). That is harmless (a push only asks the device to check in);
// the other way round — a device seen before the push taken as seen
// after it — cannot happen, since last_seen_at is never ahead of the
// device's last request.
const dueForRepushSQL = `SELECT p.id, p.pushed_at, p.repushes, p.next_repush_at
FROM push_records p
JOIN enrollments e ON e.id = p.id
WHERE p.next_repush_at <= ?
	AND e.enabled = TRUE AND e.push_token_valid = TRUE AND LENGTH(e.token) > 0
	AND p.pushed_at > e.last_seen_at
	AND EXISTS (SELECT 1 FROM queue q WHERE q.id = p.id)
ORDER BY p.next_repush_at, p.id
LIMIT ?`

// DueForRepush implements storage.RepushStore (dueForRepushSQL).
func (s *Store) DueForRepush(ctx context.Context, now time.Time, limit int) ([]storage.PushRecord, error) {
	if limit <= 0 {
		return nil, nil
	}
	rows, err := s.db.QueryContext(ctx, dueForRepushSQL, sqlstore.DBTime(now), limit)
	if err != nil {
		return nil, fmt.Errorf("listing enrollments due for a re-push: %w", err)
	}
	defer rows.Close()
	var out []storage.PushRecord
	for rows.Next() {
		r, err := scanPushRecord(rows)
		if err != nil {
			return nil, fmt.Errorf("listing enrollments due for a re-push: %w", err)
		}
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("listing enrollments due for a re-push: %w", err)
	}
	return out, nil
}

// scanPushRecord reads one push_records row: id, pushed_at, repushes,
// next_repush_at.
func scanPushRecord(rows *sql.Rows) (storage.PushRecord, error) {
	var r storage.PushRecord
	if err := rows.Scan(&r.ID, &r.PushedAt, &r.Repushes, &r.NextRepushAt); err != nil {
		return r, err
	}
	r.PushedAt = r.PushedAt.UTC()
	r.NextRepushAt = r.NextRepushAt.UTC()
	return r, nil
}
