package mysql

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/picomdm/picomdm/storage"
	"github.com/picomdm/picomdm/storage/internal/sqlstore"
)

var _ storage.RepushStore = (*Store)(nil)

// RecordPushes implements storage.RepushStore: which IDs name
// enrollments (knownEnrollments), then one multi-row upsert of their
// records per idChunk (push_records PRIMARY). A later record of the same
// ID in records replaces an earlier one (sqlstore.LatestPushRecords).
func (s *Store) RecordPushes(ctx context.Context, records []storage.PushRecord) error {
	records = sqlstore.LatestPushRecords(records)
	ids := make([]string, len(records))
	for i, r := range records {
		ids[i] = r.ID
	}
	known, err := s.knownEnrollments(ctx, ids)
	if err != nil {
		return fmt.Errorf("recording pushes: %w", err)
	}
	records = slices.DeleteFunc(records, func(r storage.PushRecord) bool { _, ok := known[r.ID]; return !ok })
	err = chunks(records, func(chunk []storage.PushRecord) error {
		args := make([]any, 0, 4*len(chunk))
		for _, r := range chunk {
			args = append(args, r.ID, sqlstore.DBTime(r.PushedAt), max(r.Repushes, 0), sqlstore.DBTime(r.NextRepushAt))
		}
		_, err := s.exec(ctx, `INSERT INTO push_records (id, pushed_at, repushes, next_repush_at)
VALUES `+placeholders(len(chunk), 4)+`
ON DUPLICATE KEY UPDATE pushed_at = VALUES(pushed_at), repushes = VALUES(repushes),
	next_repush_at = VALUES(next_repush_at)`, args...)
		return err
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
	return sqlstore.DueForRepush(ctx, s.db, dueForRepushSQL, now, limit)
}
