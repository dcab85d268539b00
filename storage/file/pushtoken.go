package file

import (
	"context"
	"fmt"
	"path/filepath"
	"time"

	"github.com/picomdm/picomdm/storage"
	"github.com/picomdm/picomdm/storage/internal/memindex"
)

var _ storage.PushTokenStore = (*Store)(nil)

// InvalidatePushToken implements storage.PushTokenStore. The mark lives in
// the enrollment's enrollment.json (push_token_invalid_at and
// push_token_invalid_reason), written under the device's lock like a
// TokenUpdate, which clears it.
func (s *Store) InvalidatePushToken(_ context.Context, id, reason string) error {
	deviceID, ok := s.deviceIDOf(id)
	if !ok {
		return fmt.Errorf("invalidating push token of %q: %w", id, storage.ErrNotFound)
	}
	mu := s.stripe(deviceID)
	mu.Lock()
	defer mu.Unlock()
	rec, ok, err := s.readEnrollment(id)
	if err != nil {
		return fmt.Errorf("invalidating push token of %q: %w", id, err)
	}
	if !ok {
		return fmt.Errorf("invalidating push token of %q: %w", id, storage.ErrNotFound)
	}
	rec.PushTokenInvalidAt, rec.PushTokenInvalidReason = time.Now(), reason
	if err := s.writeJSON(filepath.Join(s.enrollmentDir(id), "enrollment.json"), rec); err != nil {
		return fmt.Errorf("invalidating push token of %q: %w", id, err)
	}
	s.mu.Lock()
	if e := s.enrollments[id]; e != nil {
		e.PushTokenInvalidAt = rec.PushTokenInvalidAt
	}
	s.mu.Unlock()
	return nil
}

// PushTokenValid implements storage.PushTokenStore from the in-memory
// index: no file is read.
func (s *Store) PushTokenValid(_ context.Context, id string) (bool, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return memindex.PushTokenValid(id, s.channel(id))
}
