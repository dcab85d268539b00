package sqlstore

import (
	"context"
	"fmt"
	"time"

	"github.com/picomdm/picomdm/storage"
)

// LatestPushRecords returns records with each ID once, its last record
// (a later record of an ID replaces an earlier one), in the order the IDs
// first appear: what storage.RepushStore.RecordPushes stores.
func LatestPushRecords(records []storage.PushRecord) []storage.PushRecord {
	at := make(map[string]int, len(records))
	out := make([]storage.PushRecord, 0, len(records))
	for _, r := range records {
		if i, dup := at[r.ID]; dup {
			out[i] = r
			continue
		}
		at[r.ID] = len(out)
		out = append(out, r)
	}
	return out
}

// DueForRepush implements storage.RepushStore.DueForRepush: query
// selects id, pushed_at, repushes, next_repush_at of the records due at
// its first argument, at most its second.
func DueForRepush(ctx context.Context, db Querier, query string, now time.Time, limit int) ([]storage.PushRecord, error) {
	if limit <= 0 {
		return nil, nil
	}
	out, err := queryAll(ctx, db, func(sc RowScanner) (storage.PushRecord, error) {
		var r storage.PushRecord
		if err := sc.Scan(&r.ID, &r.PushedAt, &r.Repushes, &r.NextRepushAt); err != nil {
			return r, err
		}
		r.PushedAt, r.NextRepushAt = r.PushedAt.UTC(), r.NextRepushAt.UTC()
		return r, nil
	}, query, DBTime(now), limit)
	if err != nil {
		return nil, fmt.Errorf("listing enrollments due for a re-push: %w", err)
	}
	return out, nil
}
