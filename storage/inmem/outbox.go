package inmem

import (
	"context"
	"time"

	"github.com/picomdm/picomdm/storage"
	"github.com/picomdm/picomdm/storage/internal/memindex"
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
		if e == nil || !e.Enabled || !e.PushTokenValid() || len(e.queue) == 0 ||
			!r.PushedAt.After(e.lastSeenAt) || r.NextRepushAt.After(now) {
			continue
		}
		due = append(due, r)
	}
	memindex.SortDue(due)
	return due[:min(len(due), max(limit, 0))], nil
}
