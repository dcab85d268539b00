package inmem

import (
	"bytes"
	"context"
	"fmt"
	"slices"
	"strings"

	"github.com/picomdm/picomdm/mdm"
	"github.com/picomdm/picomdm/storage"
)

var _ storage.InspectionStore = (*Store)(nil)

// The cursor helpers every backend shares.
var (
	encodeCursor = storage.EncodeCursor
	decodeCursor = storage.DecodeCursor
)

// pageLimit clamps a page size to 1…MaxPageLimit (0 or less is the most).
func pageLimit(p storage.Page) int {
	if p.Limit <= 0 || p.Limit > storage.MaxPageLimit {
		return storage.MaxPageLimit
	}
	return p.Limit
}

// deviceOf returns the device record of enrollment e (its own, or its
// parent's for a user channel). Callers hold s.mu.
func (s *Store) deviceOf(e *enrollment) *device {
	if e.parentID != "" {
		return s.devices[e.parentID]
	}
	return s.devices[e.id]
}

// info builds e's EnrollmentInfo. Callers hold s.mu.
func (s *Store) info(e *enrollment) storage.EnrollmentInfo {
	i := storage.EnrollmentInfo{
		ID:               e.id,
		Type:             e.typ,
		ParentID:         e.parentID,
		Topic:            e.push.Topic,
		Enabled:          e.enabled,
		TokenUpdateTally: e.tally,
		EnrolledAt:       e.enrolledAt,
		LastSeenAt:       e.lastSeenAt,
		PushTokenValid:   e.pushTokenInvalidAt.IsZero(),
		PendingCommands:  len(e.queue),
	}
	if d := s.deviceOf(e); d != nil {
		i.SerialNumber = d.serialNumber
		i.IdentityCertNotAfter = d.certNotAfter
	}
	return i
}

// matches reports whether e passes f. Callers hold s.mu.
func (s *Store) matches(e *enrollment, f *storage.EnrollmentFilter) bool {
	if f.Type != "" && e.typ != f.Type {
		return false
	}
	if f.Enabled != nil && e.enabled != *f.Enabled {
		return false
	}
	if f.Topic != "" && e.push.Topic != f.Topic {
		return false
	}
	if f.DeviceID != "" && e.id != f.DeviceID && e.parentID != f.DeviceID {
		return false
	}
	if f.Serial != "" {
		d := s.deviceOf(e)
		if d == nil || d.serialNumber != f.Serial {
			return false
		}
	}
	if !f.SeenBefore.IsZero() && !e.lastSeenAt.Before(f.SeenBefore) {
		return false
	}
	if !f.SeenAfter.IsZero() && !e.lastSeenAt.After(f.SeenAfter) {
		return false
	}
	return true
}

// ListEnrollments implements storage.InspectionStore.
func (s *Store) ListEnrollments(_ context.Context, f storage.EnrollmentFilter, p storage.Page) ([]storage.EnrollmentInfo, string, error) {
	after, err := decodeCursor(p.Cursor)
	if err != nil {
		return nil, "", err
	}
	limit := pageLimit(p)
	s.mu.Lock()
	defer s.mu.Unlock()
	var ids []string
	if f.DeviceID != "" {
		ids = append(ids, f.DeviceID)
		for id := range s.children[f.DeviceID] {
			ids = append(ids, id)
		}
	} else {
		ids = make([]string, 0, len(s.enrollments))
		for id := range s.enrollments {
			ids = append(ids, id)
		}
	}
	slices.Sort(ids)
	out := []storage.EnrollmentInfo{}
	for _, id := range ids {
		if after != "" && id <= after {
			continue
		}
		e := s.enrollments[id]
		if e == nil || !s.matches(e, &f) {
			continue
		}
		if len(out) == limit {
			return out, encodeCursor(out[len(out)-1].ID), nil
		}
		out = append(out, s.info(e))
	}
	return out, "", nil
}

// RetrieveEnrollment implements storage.InspectionStore.
func (s *Store) RetrieveEnrollment(_ context.Context, id string) (*storage.EnrollmentInfo, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	e := s.enrollments[id]
	if e == nil {
		return nil, fmt.Errorf("enrollment %q: %w", id, storage.ErrNotFound)
	}
	i := s.info(e)
	return &i, nil
}

// RetrieveQueue implements storage.InspectionStore.
func (s *Store) RetrieveQueue(_ context.Context, id string) ([]storage.QueuedCommand, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	e := s.enrollments[id]
	if e == nil {
		return nil, fmt.Errorf("queue of %q: %w", id, storage.ErrNotFound)
	}
	out := make([]storage.QueuedCommand, 0, len(e.queue))
	for _, q := range e.queue {
		qc := storage.QueuedCommand{
			CommandUUID:  q.commandUUID,
			NotNowCount:  q.notNow,
			LastNotNowAt: q.lastNotNow,
		}
		if q.notNow > 0 {
			qc.Status = mdm.StatusNotNow
		}
		if c := s.commands[q.commandUUID]; c != nil {
			qc.RequestType, qc.EnqueuedAt = c.requestType, c.enqueuedAt
		}
		out = append(out, qc)
	}
	return out, nil
}

// ClearQueue implements storage.InspectionStore.
func (s *Store) ClearQueue(_ context.Context, id string) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	e := s.enrollments[id]
	if e == nil {
		return 0, fmt.Errorf("clearing queue of %q: %w", id, storage.ErrNotFound)
	}
	n := len(e.queue)
	e.queue = nil
	return n, nil
}

// CancelCommand implements storage.InspectionStore.
func (s *Store) CancelCommand(_ context.Context, id, commandUUID string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	e := s.enrollments[id]
	if e == nil {
		return fmt.Errorf("cancelling %s for %q: %w", commandUUID, id, storage.ErrNotFound)
	}
	if i := slices.IndexFunc(e.queue, func(q *queued) bool { return q.commandUUID == commandUUID }); i >= 0 {
		e.queue = slices.Delete(e.queue, i, i+1)
		return nil
	}
	if r := e.results[commandUUID]; r != nil && r.status != mdm.StatusNotNow {
		return fmt.Errorf("cancelling %s for %q: %w", commandUUID, id, storage.ErrAlreadyAnswered)
	}
	return fmt.Errorf("cancelling %s for %q: %w", commandUUID, id, storage.ErrNotFound)
}

// RetrieveCommand implements storage.InspectionStore.
func (s *Store) RetrieveCommand(_ context.Context, commandUUID string) (*storage.CommandInfo, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	c := s.commands[commandUUID]
	if c == nil {
		return nil, fmt.Errorf("command %s: %w", commandUUID, storage.ErrNotFound)
	}
	return &storage.CommandInfo{
		CommandUUID: commandUUID,
		RequestType: c.requestType,
		EnqueuedAt:  c.enqueuedAt,
		Raw:         bytes.Clone(c.raw),
	}, nil
}

// commandState returns e's state for command c, if it has one: pending
// (or NotNow) while queued, else its final answer. Callers hold s.mu.
func commandState(e *enrollment, commandUUID string, c *command) (storage.CommandState, bool) {
	st := storage.CommandState{EnrollmentID: e.id, EnqueuedAt: c.enqueuedAt}
	if i := slices.IndexFunc(e.queue, func(q *queued) bool { return q.commandUUID == commandUUID }); i >= 0 {
		q := e.queue[i]
		st.State, st.NotNowCount = "pending", q.notNow
		if q.notNow > 0 {
			st.State = mdm.StatusNotNow
		}
		return st, true
	}
	r := e.results[commandUUID]
	if r == nil || r.status == mdm.StatusNotNow {
		// Never queued to e, or cleared or cancelled before a final
		// answer.
		return st, false
	}
	st.State, st.NotNowCount, st.AnsweredAt, st.Result = r.status, r.notNow, r.at, bytes.Clone(r.raw)
	return st, true
}

// ListCommandStates implements storage.InspectionStore.
func (s *Store) ListCommandStates(_ context.Context, commandUUID string, p storage.Page) ([]storage.CommandState, string, error) {
	after, err := decodeCursor(p.Cursor)
	if err != nil {
		return nil, "", err
	}
	limit := pageLimit(p)
	s.mu.Lock()
	defer s.mu.Unlock()
	c := s.commands[commandUUID]
	if c == nil {
		return nil, "", fmt.Errorf("command %s: %w", commandUUID, storage.ErrNotFound)
	}
	var states []storage.CommandState
	for id, e := range s.enrollments {
		if after != "" && id <= after {
			continue
		}
		if st, ok := commandState(e, commandUUID, c); ok {
			states = append(states, st)
		}
	}
	slices.SortFunc(states, func(a, b storage.CommandState) int { return strings.Compare(a.EnrollmentID, b.EnrollmentID) })
	if len(states) > limit {
		return states[:limit], encodeCursor(states[limit-1].EnrollmentID), nil
	}
	if states == nil {
		states = []storage.CommandState{}
	}
	return states, "", nil
}

// RetrieveCommandResult implements storage.InspectionStore.
func (s *Store) RetrieveCommandResult(_ context.Context, commandUUID, id string) (*storage.CommandState, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	c, e := s.commands[commandUUID], s.enrollments[id]
	if c != nil && e != nil {
		if st, ok := commandState(e, commandUUID, c); ok {
			return &st, nil
		}
	}
	return nil, fmt.Errorf("result of %s for %q: %w", commandUUID, id, storage.ErrNotFound)
}
