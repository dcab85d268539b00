package metrics

import (
	"context"
	"time"

	"github.com/picomdm/picomdm/storage"
)

// ListEnrollments times storage.InspectionStore.ListEnrollments.
func (s *Store) ListEnrollments(ctx context.Context, f storage.EnrollmentFilter, p storage.Page) (_ []storage.EnrollmentInfo, _ string, err error) {
	defer func(start time.Time) { s.observe("ListEnrollments", start, err) }(time.Now())
	return s.Store.ListEnrollments(ctx, f, p)
}

// RetrieveEnrollment times storage.InspectionStore.RetrieveEnrollment.
func (s *Store) RetrieveEnrollment(ctx context.Context, id string) (_ *storage.EnrollmentInfo, err error) {
	defer func(start time.Time) { s.observe("RetrieveEnrollment", start, err) }(time.Now())
	return s.Store.RetrieveEnrollment(ctx, id)
}

// RetrieveQueue times storage.InspectionStore.RetrieveQueue.
func (s *Store) RetrieveQueue(ctx context.Context, id string) (_ []storage.QueuedCommand, err error) {
	defer func(start time.Time) { s.observe("RetrieveQueue", start, err) }(time.Now())
	return s.Store.RetrieveQueue(ctx, id)
}

// ClearQueue times storage.InspectionStore.ClearQueue.
func (s *Store) ClearQueue(ctx context.Context, id string) (_ int, err error) {
	defer func(start time.Time) { s.observe("ClearQueue", start, err) }(time.Now())
	return s.Store.ClearQueue(ctx, id)
}

// CancelCommand times storage.InspectionStore.CancelCommand.
func (s *Store) CancelCommand(ctx context.Context, id, commandUUID string) (err error) {
	defer func(start time.Time) { s.observe("CancelCommand", start, err) }(time.Now())
	return s.Store.CancelCommand(ctx, id, commandUUID)
}

// RetrieveCommand times storage.InspectionStore.RetrieveCommand.
func (s *Store) RetrieveCommand(ctx context.Context, commandUUID string) (_ *storage.CommandInfo, err error) {
	defer func(start time.Time) { s.observe("RetrieveCommand", start, err) }(time.Now())
	return s.Store.RetrieveCommand(ctx, commandUUID)
}

// ListCommandStates times storage.InspectionStore.ListCommandStates.
func (s *Store) ListCommandStates(ctx context.Context, commandUUID string, p storage.Page) (_ []storage.CommandState, _ string, err error) {
	defer func(start time.Time) { s.observe("ListCommandStates", start, err) }(time.Now())
	return s.Store.ListCommandStates(ctx, commandUUID, p)
}

// RetrieveCommandResult times storage.InspectionStore.RetrieveCommandResult.
func (s *Store) RetrieveCommandResult(ctx context.Context, commandUUID, id string) (_ *storage.CommandState, err error) {
	defer func(start time.Time) { s.observe("RetrieveCommandResult", start, err) }(time.Now())
	return s.Store.RetrieveCommandResult(ctx, commandUUID, id)
}
