package inmem

import (
	"bytes"
	"context"
	"fmt"
	"maps"
	"slices"

	"github.com/picomdm/picomdm/mdm"
	"github.com/picomdm/picomdm/storage"
	"github.com/picomdm/picomdm/storage/internal/memindex"
)

var _ storage.InspectionStore = (*Store)(nil)

// info builds e's EnrollmentInfo. Callers hold s.mu.
func (s *Store) info(e *enrollment) storage.EnrollmentInfo {
	i := e.Info()
	i.EnrolledAt, i.LastSeenAt, i.PendingCommands = e.enrolledAt, e.lastSeenAt, len(e.queue)
	if d := s.devices[e.DeviceID()]; d != nil {
		i.SerialNumber = d.serialNumber
		i.IdentityCertNotAfter = d.certNotAfter
	}
	return i
}

// ListEnrollments implements storage.InspectionStore.
func (s *Store) ListEnrollments(_ context.Context, f storage.EnrollmentFilter, p storage.Page) ([]storage.EnrollmentInfo, string, error) {
	after, err := storage.DecodeCursor(p.Cursor)
	if err != nil {
		return nil, "", err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	ids := memindex.SortedAfter(memindex.Candidates(s.enrollments, s.children, &f), after, func(id string) bool {
		return s.enrollments[id] != nil && s.enrollments[id].Matches(&f)
	})
	return memindex.Paginate(ids, p.Size(), func(id string) (storage.EnrollmentInfo, bool, error) {
		i := s.info(s.enrollments[id])
		return i, memindex.MatchesInfo(&i, &f), nil
	}, func(i *storage.EnrollmentInfo) string { return i.ID })
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
		c := s.commands[q.CommandUUID]
		if c == nil {
			c = &command{}
		}
		out = append(out, q.Queued(c.requestType, c.enqueuedAt))
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
	if i := memindex.Find(e.queue, commandUUID); i >= 0 {
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
	if i := memindex.Find(e.queue, commandUUID); i >= 0 {
		return e.queue[i].State(e.ID, c.enqueuedAt), true
	}
	st := storage.CommandState{EnrollmentID: e.ID, EnqueuedAt: c.enqueuedAt}
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
	after, err := storage.DecodeCursor(p.Cursor)
	if err != nil {
		return nil, "", err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	c := s.commands[commandUUID]
	if c == nil {
		return nil, "", fmt.Errorf("command %s: %w", commandUUID, storage.ErrNotFound)
	}
	ids := memindex.SortedAfter(maps.Keys(s.enrollments), after, nil)
	return memindex.Paginate(ids, p.Size(), func(id string) (storage.CommandState, bool, error) {
		st, ok := commandState(s.enrollments[id], commandUUID, c)
		return st, ok, nil
	}, func(st *storage.CommandState) string { return st.EnrollmentID })
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
