package file

import (
	"context"
	"fmt"
	"path/filepath"
	"time"

	"github.com/picomdm/picomdm/storage"
)

var _ storage.PushTokenStore = (*Store)(nil)

// InvalidatePushToken implements storage.PushTokenStore. The mark lives in
// the enrollment's enrollment.json (push_token_invalid_at and
// push_token_invalid_reason), written under the device's lock like a
// TokenUpdate, which clears it.
func (s *Store) InvalidatePushToken(_ context.Context, id, reason string) error {
	s.mu.RLock()
	e := s.enrollments[id]
	deviceID := id
	if e != nil && e.parentID != "" {
		deviceID = e.parentID
	}
	s.mu.RUnlock()
	if e == nil {
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
		e.pushTokenInvalid = true
	}
	s.mu.Unlock()
	return nil
}

// PushTokenValid implements storage.PushTokenStore from the in-memory
// index: no file is read.
func (s *Store) PushTokenValid(_ context.Context, id string) (bool, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	e := s.enrollments[id]
	if e == nil {
		return false, fmt.Errorf("push token of %q: %w", id, storage.ErrNotFound)
	}
	return !e.pushTokenInvalid, nil
}
