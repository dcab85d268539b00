package storage

import (
	"context"
	"errors"
	"sync/atomic"
	"time"
)

// ErrLeaseLost says an outbox event is no longer claimed by the caller
// (its lease expired and another replica claimed it, or it was dropped):
// the caller's outcome is not recorded.
var ErrLeaseLost = errors.New("storage: event no longer claimed by this owner")

// The states of an outbox event.
const (
	// OutboxPending events wait for delivery (claimed or not).
	OutboxPending = "pending"
	// OutboxFailed events were set aside: the receiver refused them for
	// good. They are kept (visible through the API) but no longer
	// delivered, and no longer hold back their enrollment's later events.
	OutboxFailed = "failed"
)

// OutboxEvent is one webhook event in the durable outbox (DESIGN §5).
type OutboxEvent struct {
	// ID is the event's event_id, stable across redeliveries.
	ID string
	// EnrollmentID orders delivery: an enrollment's pending events are
	// delivered one at a time, oldest first.
	EnrollmentID string
	// Topic is the webhook topic, e.g. mdm.Connect.
	Topic string
	// Body is the exact JSON POSTed to the receiver.
	Body []byte
	// CreatedAt is when the event was stored.
	CreatedAt time.Time
	// State is OutboxPending or OutboxFailed.
	State string
	// Attempts counts the delivery attempts made so far.
	Attempts int
	// NextAttemptAt is when a pending event may be claimed again (zero:
	// at once).
	NextAttemptAt time.Time
	// LastError describes the last failed attempt.
	LastError string
}

// OutboxStats summarises the outbox.
type OutboxStats struct {
	// Pending and Failed count the events in each state.
	Pending, Failed int
	// OldestPending is when the oldest pending event was stored (zero
	// when none is).
	OldestPending time.Time
}

// OutboxStore is the webhook's durable outbox: events are stored before
// the device gets its answer and deleted only once the receiver accepted
// them, so no event is lost to a receiver that is down or to a restart.
// Any replica may deliver any event: a claim carries a lease, so two
// replicas never deliver one event at once and a dead replica's claims
// expire.
type OutboxStore interface {
	// StoreEvent appends ev as pending, behind every event stored before
	// it (store order decides delivery order; CreatedAt is informative).
	StoreEvent(ctx context.Context, ev *OutboxEvent) error
	// ClaimEvents claims for owner, until leaseUntil, up to limit events,
	// oldest first: for each enrollment its oldest pending event, if that
	// event is due (NextAttemptAt not after now) and not claimed under a
	// lease that is still running at now. An enrollment whose oldest
	// pending event is claimed or not due yields nothing, so its events
	// are delivered one at a time and in order; failed events hold
	// nothing back. The returned events carry Attempts and LastError as
	// stored.
	ClaimEvents(ctx context.Context, owner string, now, leaseUntil time.Time, limit int) ([]OutboxEvent, error)
	// CompleteEvent deletes event id, delivered by owner; ErrLeaseLost if
	// owner no longer holds its claim.
	CompleteEvent(ctx context.Context, id, owner string) error
	// RetryEvent records a failed attempt of owner's claimed event id:
	// it stays pending with attempts, lastErr and its next attempt at
	// next, and the claim is released; ErrLeaseLost as for CompleteEvent.
	RetryEvent(ctx context.Context, id, owner string, attempts int, next time.Time, lastErr string) error
	// SetAsideEvent marks owner's claimed event id failed (kept, not
	// delivered again unless redelivered), with attempts and lastErr;
	// ErrLeaseLost as for CompleteEvent.
	SetAsideEvent(ctx context.Context, id, owner string, attempts int, lastErr string) error
	// ReleaseEvents drops every claim owner holds, so that other replicas
	// may claim those events at once (a clean shutdown).
	ReleaseEvents(ctx context.Context, owner string) error
	// ListEvents pages through the events in state (OutboxPending or
	// OutboxFailed), oldest first; Body included.
	ListEvents(ctx context.Context, state string, p Page) ([]OutboxEvent, string, error)
	// RedeliverEvent makes failed event id pending again, due at once,
	// with no attempts; it takes its original place among its
	// enrollment's events. ErrNotFound when no failed event has that ID.
	RedeliverEvent(ctx context.Context, id string) error
	// DropEvent deletes event id, whatever its state; ErrNotFound when
	// there is none.
	DropEvent(ctx context.Context, id string) error
	// OutboxStats counts the events by state.
	OutboxStats(ctx context.Context) (OutboxStats, error)
	// TrimOutbox enforces the outbox's bounds and reports how many events
	// it deleted: failed events stored before failedBefore go; then, while
	// more than maxEvents remain, the oldest failed events, then the
	// oldest pending ones (maxEvents 0 or less: no count bound).
	TrimOutbox(ctx context.Context, maxEvents int, failedBefore time.Time) (int, error)
}

// LeaseStore hands out named, expiring leases, so that a periodic job
// several replicas run (a sweep, a purge) runs on one at a time.
type LeaseStore interface {
	// AcquireLease gives lease name to owner until until, if it is free,
	// expired at now, or already owner's (then it is extended), and
	// reports whether owner holds it.
	AcquireLease(ctx context.Context, name, owner string, now, until time.Time) (bool, error)
	// ReleaseLease gives up owner's lease name (nothing if owner does not
	// hold it).
	ReleaseLease(ctx context.Context, name, owner string) error
}

// PushRecord is one enrollment's push history, as the re-push sweep
// reads and writes it.
type PushRecord struct {
	// ID is the enrollment ID.
	ID string
	// PushedAt is when APNs last accepted a push to it.
	PushedAt time.Time
	// Repushes counts the sweep's pushes since the last ordinary one.
	Repushes int
	// NextRepushAt is when the sweep may push it again.
	NextRepushAt time.Time
}

// RepushStore keeps what the re-push sweep needs: APNs drops and
// coalesces pushes, so an enrollment that was pushed, has pending
// commands and has not checked in since is pushed again, with backoff.
type RepushStore interface {
	// RecordPushes stores each record (replacing the enrollment's
	// earlier one); IDs that name no enrollment are skipped.
	RecordPushes(ctx context.Context, records []PushRecord) error
	// DueForRepush returns up to limit enrollments, earliest
	// NextRepushAt first, that are enabled with a valid push token, have
	// at least one pending command, were last pushed after they were
	// last seen (they have not checked in since), and whose NextRepushAt
	// is not after now.
	DueForRepush(ctx context.Context, now time.Time, limit int) ([]PushRecord, error)
}

// Purger is implemented by backends that keep command results for a
// retention period: Purge deletes what is past it, in bounded batches,
// and reports how many results it deleted. The background runner calls
// it on one replica at a time.
type Purger interface {
	Purge(ctx context.Context, now time.Time) (int, error)
}

// PendingEvent is the outbox event of a command report, handed to the
// store with the report (WithPendingEvent) so that a backend that can
// writes it in the same operation as the report
// (CommandReportAndNexter.StoreCommandReportAndRetrieveNext): the event
// then rides in the report's transaction instead of costing a storage
// round trip of its own, and exists exactly when the report was stored.
// A store that wrote it calls MarkStored; the webhook stores an event left
// unmarked itself, still before the device gets its answer.
type PendingEvent struct {
	// Event is the event to store (state pending).
	Event  *OutboxEvent
	stored atomic.Bool
}

// MarkStored records that the store wrote the event.
func (p *PendingEvent) MarkStored() { p.stored.Store(true) }

// Stored reports whether a store wrote the event.
func (p *PendingEvent) Stored() bool { return p.stored.Load() }

type pendingEventKey struct{}

// WithPendingEvent returns ctx carrying p.
func WithPendingEvent(ctx context.Context, p *PendingEvent) context.Context {
	return context.WithValue(ctx, pendingEventKey{}, p)
}

// PendingEventFrom returns the PendingEvent ctx carries, if any.
func PendingEventFrom(ctx context.Context) (*PendingEvent, bool) {
	if ctx == nil {
		return nil, false
	}
	p, ok := ctx.Value(pendingEventKey{}).(*PendingEvent)
	return p, ok && p != nil && p.Event != nil
}
