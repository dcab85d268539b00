package inmem

import (
	"cmp"
	"context"
	"slices"
	"time"

	"github.com/picomdm/picomdm/storage"
	"github.com/picomdm/picomdm/storage/internal/outboxmem"
)

// The outbox and the leases have mutexes of their own (outboxmem): they
// share no state with the enrollments. The aliases keep the embedded
// fields unexported while their methods implement storage.OutboxStore and
// storage.LeaseStore.
type (
	outbox = outboxmem.Outbox
	leases = outboxmem.Leases
)

var (
	_ storage.OutboxStore = (*Store)(nil)
	_ storage.LeaseStore  = (*Store)(nil)
	_ storage.RepushStore = (*Store)(nil)
)

// RecordPushes implements storage.RepushStore.
func (s *Store) RecordPushes(_ context.Context, records []storage.PushRecord) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, r := range records {
		if s.enrollments[r.ID] != nil {
			s.pushRecords[r.ID] = r
		}
	}
	return nil
}

// DueForRepush implements storage.RepushStore. Every request of a device
// (check-in or command report) is seen at once.
func (s *Store) DueForRepush(_ context.Context, now time.Time, limit int) ([]storage.PushRecord, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var due []storage.PushRecord
	for id, r := range s.pushRecords {
		e := s.enrollments[id]
		if e == nil || !e.enabled || !e.pushTokenInvalidAt.IsZero() || len(e.queue) == 0 ||
			!r.PushedAt.After(e.lastSeenAt) || r.NextRepushAt.After(now) {
			continue
		}
		due = append(due, r)
	}
	slices.SortFunc(due, func(a, b storage.PushRecord) int {
		return cmp.Or(a.NextRepushAt.Compare(b.NextRepushAt), cmp.Compare(a.ID, b.ID))
	})
	return due[:min(len(due), max(limit, 0))], nil
}
