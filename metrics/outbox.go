package metrics

import (
	"context"
	"errors"
	"time"

	"github.com/picomdm/picomdm/storage"
)

// The outbox and lease methods are timed like every other storage call:
// StoreEvent runs on the device's request, the others in the background.

// notLost is err, except that ErrLeaseLost (another replica took the
// event over: an expected outcome) is no storage failure.
func notLost(err error) error {
	if errors.Is(err, storage.ErrLeaseLost) {
		return nil
	}
	return err
}

// StoreEvent times storage.OutboxStore.StoreEvent.
func (s *Store) StoreEvent(ctx context.Context, ev *storage.OutboxEvent) (err error) {
	defer func(start time.Time) { s.observe("StoreEvent", start, err) }(time.Now())
	return s.Store.StoreEvent(ctx, ev)
}

// ClaimEvents times storage.OutboxStore.ClaimEvents.
func (s *Store) ClaimEvents(ctx context.Context, owner string, now, leaseUntil time.Time, limit int) (_ []storage.OutboxEvent, err error) {
	defer func(start time.Time) { s.observe("ClaimEvents", start, err) }(time.Now())
	return s.Store.ClaimEvents(ctx, owner, now, leaseUntil, limit)
}

// CompleteEvent times storage.OutboxStore.CompleteEvent.
func (s *Store) CompleteEvent(ctx context.Context, id, owner string) (err error) {
	defer func(start time.Time) { s.observe("CompleteEvent", start, notLost(err)) }(time.Now())
	return s.Store.CompleteEvent(ctx, id, owner)
}

// RetryEvent times storage.OutboxStore.RetryEvent.
func (s *Store) RetryEvent(ctx context.Context, id, owner string, attempts int, next time.Time, lastErr string) (err error) {
	defer func(start time.Time) { s.observe("RetryEvent", start, notLost(err)) }(time.Now())
	return s.Store.RetryEvent(ctx, id, owner, attempts, next, lastErr)
}

// SetAsideEvent times storage.OutboxStore.SetAsideEvent.
func (s *Store) SetAsideEvent(ctx context.Context, id, owner string, attempts int, lastErr string) (err error) {
	defer func(start time.Time) { s.observe("SetAsideEvent", start, notLost(err)) }(time.Now())
	return s.Store.SetAsideEvent(ctx, id, owner, attempts, lastErr)
}

// ReleaseEvents times storage.OutboxStore.ReleaseEvents.
func (s *Store) ReleaseEvents(ctx context.Context, owner string) (err error) {
	defer func(start time.Time) { s.observe("ReleaseEvents", start, err) }(time.Now())
	return s.Store.ReleaseEvents(ctx, owner)
}

// OutboxStats times storage.OutboxStore.OutboxStats.
func (s *Store) OutboxStats(ctx context.Context) (_ storage.OutboxStats, err error) {
	defer func(start time.Time) { s.observe("OutboxStats", start, err) }(time.Now())
	return s.Store.OutboxStats(ctx)
}

// TrimOutbox times storage.OutboxStore.TrimOutbox.
func (s *Store) TrimOutbox(ctx context.Context, maxEvents int, failedBefore time.Time) (_ int, err error) {
	defer func(start time.Time) { s.observe("TrimOutbox", start, err) }(time.Now())
	return s.Store.TrimOutbox(ctx, maxEvents, failedBefore)
}

// AcquireLease times storage.LeaseStore.AcquireLease.
func (s *Store) AcquireLease(ctx context.Context, name, owner string, now, until time.Time) (_ bool, err error) {
	defer func(start time.Time) { s.observe("AcquireLease", start, err) }(time.Now())
	return s.Store.AcquireLease(ctx, name, owner, now, until)
}

// ReleaseLease times storage.LeaseStore.ReleaseLease.
func (s *Store) ReleaseLease(ctx context.Context, name, owner string) (err error) {
	defer func(start time.Time) { s.observe("ReleaseLease", start, err) }(time.Now())
	return s.Store.ReleaseLease(ctx, name, owner)
}

// ListEvents times storage.OutboxStore.ListEvents.
func (s *Store) ListEvents(ctx context.Context, state string, p storage.Page) (_ []storage.OutboxEvent, _ string, err error) {
	defer func(start time.Time) { s.observe("ListEvents", start, err) }(time.Now())
	return s.Store.ListEvents(ctx, state, p)
}

// RedeliverEvent times storage.OutboxStore.RedeliverEvent.
func (s *Store) RedeliverEvent(ctx context.Context, id string) (err error) {
	defer func(start time.Time) { s.observe("RedeliverEvent", start, err) }(time.Now())
	return s.Store.RedeliverEvent(ctx, id)
}

// DropEvent times storage.OutboxStore.DropEvent.
func (s *Store) DropEvent(ctx context.Context, id string) (err error) {
	defer func(start time.Time) { s.observe("DropEvent", start, err) }(time.Now())
	return s.Store.DropEvent(ctx, id)
}
