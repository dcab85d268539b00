package file

import (
	"context"
	"fmt"
	"slices"

	"github.com/picomdm/picomdm/mdm"
	"github.com/picomdm/picomdm/storage"
)

// RetrieveMigrationCheckins implements storage.MigrationStore. Devices
// come in ID order; each device's messages are read under its lock (a
// consistent snapshot of it) and yielded after the lock is released, so a
// slow consumer never holds up the device.
func (s *Store) RetrieveMigrationCheckins(ctx context.Context, yield func(raw []byte) error) error {
	s.mu.RLock()
	var devices []string
	for id, e := range s.enrollments {
		if e.Enabled && !e.Type.IsUserChannel() {
			devices = append(devices, id)
		}
	}
	s.mu.RUnlock()
	slices.Sort(devices)
	for _, id := range devices {
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("migration: %w", err)
		}
		msgs, err := s.deviceCheckins(id)
		if err != nil {
			return fmt.Errorf("migration of %q: %w", id, err)
		}
		for _, raw := range msgs {
			if err := yield(raw); err != nil {
				return fmt.Errorf("migration: %w", err)
			}
		}
	}
	return nil
}

// deviceCheckins returns the check-in messages that recreate device id
// and its enabled user channels; none if it is no longer enabled.
func (s *Store) deviceCheckins(id string) ([][]byte, error) {
	mu := s.stripe(id)
	mu.Lock()
	defer mu.Unlock()
	rec, ok, err := s.readEnrollment(id)
	if err != nil || !ok || !rec.Enabled {
		return nil, err
	}
	dev, hasDevice, err := s.readDevice(id)
	if err != nil {
		return nil, err
	}
	var out [][]byte
	if hasDevice && len(dev.Authenticate) > 0 {
		out = append(out, dev.Authenticate)
	}
	tu, err := storage.TokenUpdateWithUnlockToken(rec.TokenUpdate, rec.UnlockToken)
	if err != nil {
		return nil, err
	}
	out = append(out, tu)

	s.mu.RLock()
	var users []string
	for child := range s.children[id] {
		users = append(users, child)
	}
	s.mu.RUnlock()
	slices.Sort(users)
	for _, uid := range users {
		u, ok, err := s.readEnrollment(uid)
		if err != nil {
			return nil, err
		}
		if !ok || !u.Enabled {
			continue
		}
		tu, err := storage.TokenUpdateWithUnlockToken(u.TokenUpdate, u.UnlockToken)
		if err != nil {
			return nil, err
		}
		out = append(out, tu)
	}

	if hasDevice && len(dev.BootstrapToken) > 0 {
		keys := mdm.Enrollment{UDID: id}
		if rec.Type == mdm.UserEnrollmentDevice {
			keys = mdm.Enrollment{EnrollmentID: id}
		}
		raw, err := storage.SetBootstrapTokenCheckin(keys, dev.BootstrapToken)
		if err != nil {
			return nil, err
		}
		out = append(out, raw)
	}
	return out, nil
}
