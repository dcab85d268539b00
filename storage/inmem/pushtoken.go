package inmem

import (
	"context"
	"fmt"
	"time"

	"github.com/picomdm/picomdm/storage"
	"github.com/picomdm/picomdm/storage/internal/memindex"
)

var _ storage.PushTokenStore = (*Store)(nil)

// InvalidatePushToken implements storage.PushTokenStore.
func (s *Store) InvalidatePushToken(_ context.Context, id, reason string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	e := s.enrollments[id]
	if e == nil {
		return fmt.Errorf("invalidating push token of %q: %w", id, storage.ErrNotFound)
	}
	e.PushTokenInvalidAt, e.pushTokenInvalidReason = time.Now(), reason
	return nil
}

// PushTokenValid implements storage.PushTokenStore.
func (s *Store) PushTokenValid(_ context.Context, id string) (bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return memindex.PushTokenValid(id, s.channel(id))
}
