package pgsql

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/lib/pq"
	"github.com/picomdm/picomdm/storage"
	"github.com/picomdm/picomdm/storage/internal/sqlstore"
)

var _ storage.RepushStore = (*Store)(nil)

// Re-push statements.
const (
	// recordPushesSQL upserts every record in one statement: the records
	// travel as four parallel arrays, joined to the enrollments primary
	// key (records of unknown IDs are skipped), then upserted by the
	// push_records primary key. The caller passes each ID once (ON
	// CONFLICT cannot update one row twice in a statement).
	recordPushesSQL = `
INSERT INTO push_records (id, pushed_at, repushes, next_repush_at)
SELECT e.id, r.pushed_at, r.repushes, r.next_repush_at
FROM unnest($1::text[], $2::timestamptz[], $3::int[], $4::timestamptz[])
    AS r(id, pushed_at, repushes, next_repush_at)
JOIN enrollments e ON e.id = r.id
ON CONFLICT (id) DO UPDATE SET pushed_at = EXCLUDED.pushed_at, repushes = EXCLUDED.repushes,
    next_repush_at = EXCLUDED.next_repush_at`

	// dueForRepushSQL reads push_records_next from its start (earliest
	// next_repush_at first), joins each record's enrollment by its primary
	// key and probes command_queue_next for a pending command (any,
	// deferred or not).
	//
	// "Not seen since the push" compares pushed_at with last_seen_at,
	// which is refreshed at most once per seenInterval per enrollment
	// (seenCTE's guard holds across replicas): a device that checked in
	// within that interval after the previous refresh looks unseen until
	// its next request past the interval, so it may get one push more
	// than it needed (which brings that request).
	// That is harmless (a push only asks the device to check in); the
	// other way round — a device seen before the push taken as seen after
	// it — cannot happen, since last_seen_at is never ahead of the
	// device's last request.
	dueForRepushSQL = `
SELECT p.id, p.pushed_at, p.repushes, p.next_repush_at
FROM push_records p
JOIN enrollments e ON e.id = p.id
WHERE p.next_repush_at <= $1
  AND e.enabled AND e.push_token_valid AND length(e.token) > 0
  AND p.pushed_at > e.last_seen_at
  AND EXISTS (SELECT 1 FROM command_queue q WHERE q.id = p.id)
ORDER BY p.next_repush_at, p.id
LIMIT $2`
)

// timeText formats t for a timestamptz[] parameter.
func timeText(t time.Time) string { return sqlstore.DBTime(t).Format(time.RFC3339Nano) }

// RecordPushes implements storage.RepushStore in one statement
// (recordPushesSQL). A later record of the same ID in records replaces an
// earlier one (sqlstore.LatestPushRecords); IDs PostgreSQL cannot store
// name no enrollment and are skipped.
func (s *Store) RecordPushes(ctx context.Context, records []storage.PushRecord) error {
	records = slices.DeleteFunc(sqlstore.LatestPushRecords(records),
		func(r storage.PushRecord) bool { return !storable(r.ID) })
	if len(records) == 0 {
		return nil
	}
	var (
		ids, pushed, next []string
		repushes          []int64
	)
	for _, r := range records {
		ids = append(ids, r.ID)
		pushed = append(pushed, timeText(r.PushedAt))
		repushes = append(repushes, int64(max(r.Repushes, 0)))
		next = append(next, timeText(r.NextRepushAt))
	}
	if err := s.exec(ctx, recordPushesSQL, pq.Array(ids), pq.Array(pushed), pq.Array(repushes), pq.Array(next)); err != nil {
		return fmt.Errorf("recording pushes: %w", err)
	}
	return nil
}

// DueForRepush implements storage.RepushStore (dueForRepushSQL).
func (s *Store) DueForRepush(ctx context.Context, now time.Time, limit int) ([]storage.PushRecord, error) {
	return sqlstore.DueForRepush(ctx, s.db, dueForRepushSQL, now, limit)
}
