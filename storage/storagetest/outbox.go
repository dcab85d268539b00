package storagetest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/picomdm/picomdm/storage"
)

// RunOutbox runs the storage.OutboxStore conformance tests against store,
// each behaviour as its own subtest.
//
// The outbox is global (ClaimEvents, ListEvents, OutboxStats and
// TrimOutbox see every event), so unlike the rest of the suite these
// subtests empty it before they start and when they end: nothing else in
// the suite stores events, and the subtests run one after the other. Run
// them only against a store no server is using.
//
// Semantics it fixes, beyond the interface documentation:
//   - An event stored with a zero NextAttemptAt, and one redelivered, is
//     due at any now (no clock of the backend's own decides it).
//   - CreatedAt round-trips to within a millisecond; Body byte for byte
//     (it is not re-encoded as JSON).
//   - CompleteEvent, RetryEvent and SetAsideEvent fail with ErrLeaseLost
//     for an event another owner claimed since, one that was dropped, and
//     one the caller never claimed.
//   - ListEvents pages like the inspection listings: Page.Limit bounds a
//     page, the next cursor is "" exactly when no further event exists,
//     and a cursor the backend did not issue fails with ErrBadCursor.
//   - TrimOutbox's failedBefore and "oldest" go by CreatedAt (the tests
//     store events in CreatedAt order, so store order agrees).
func RunOutbox(t *testing.T, store storage.Store) {
	tests := []struct {
		name string
		fn   func(*testing.T, storage.Store)
	}{
		{"RoundTrip", testOutboxRoundTrip},
		{"PerEnrollmentOrder", testOutboxPerEnrollmentOrder},
		{"Retry", testOutboxRetry},
		{"LeaseExpiry", testOutboxLeaseExpiry},
		{"LeaseLost", testOutboxLeaseLost},
		{"SetAside", testOutboxSetAside},
		{"Redeliver", testOutboxRedeliver},
		{"Drop", testOutboxDrop},
		{"Release", testOutboxRelease},
		{"ListPaging", testOutboxListPaging},
		{"Stats", testOutboxStats},
		{"Trim", testOutboxTrim},
		{"ClaimLimit", testOutboxClaimLimit},
		{"OldestFirstAcrossEnrollments", testOutboxOldestFirst},
		{"ConcurrentClaims", testOutboxConcurrentClaims},
		{"ReportEvent", testOutboxReportEvent},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			clearOutbox(t, store)
			t.Cleanup(func() { clearOutbox(t, store) })
			tc.fn(t, store)
		})
	}
}

// timeTolerance is how far a time may move through a backend: SQL
// backends keep microseconds, and some round rather than truncate.
const timeTolerance = time.Millisecond

func sameTime(a, b time.Time) bool {
	d := a.Sub(b)
	return d < timeTolerance && d > -timeTolerance
}

// clearOutbox drops every event, pending or failed.
func clearOutbox(t testing.TB, s storage.Store) {
	t.Helper()
	ctx := context.Background()
	for _, state := range []string{storage.OutboxPending, storage.OutboxFailed} {
		for range 100 {
			evs, _, err := s.ListEvents(ctx, state, storage.Page{Limit: storage.MaxPageLimit})
			if err != nil {
				t.Fatalf("ListEvents(%s): %v", state, err)
			}
			if len(evs) == 0 {
				break
			}
			for _, ev := range evs {
				if err := s.DropEvent(ctx, ev.ID); err != nil && !errors.Is(err, storage.ErrNotFound) {
					t.Fatalf("DropEvent(%s): %v", ev.ID, err)
				}
			}
		}
	}
}

// eventBody is a webhook body written the way no JSON encoder would write
// it (spacing, key order, escapes, non-ASCII), so that a backend that
// re-encodes it (a jsonb column) fails the byte-exact checks.
const eventBody = "{\"topic\":  \"%s\", \"z\": 1,\n\t\"a\": \"Grüße ✓ \\u00e9 <&> 日本\",\"event_id\":\"%s\", \"n\": 1.50, \"dup\": 1, \"dup\": 2}\n"

// newEvent returns a fresh event of enrollment for topic, created at
// createdAt (time.Now() when zero).
func newEvent(enrollment, topic string, createdAt time.Time) *storage.OutboxEvent {
	if createdAt.IsZero() {
		createdAt = time.Now()
	}
	id := NewUUID()
	return &storage.OutboxEvent{
		ID:           id,
		EnrollmentID: enrollment,
		Topic:        topic,
		Body:         fmt.Appendf(nil, eventBody, topic, id),
		CreatedAt:    createdAt,
	}
}

// newEnrollmentID returns a fresh enrollment ID for events.
func newEnrollmentID() string { return NewUUID() }

func mustStoreEvents(t testing.TB, s storage.Store, evs ...*storage.OutboxEvent) {
	t.Helper()
	for _, ev := range evs {
		if err := s.StoreEvent(context.Background(), ev); err != nil {
			t.Fatalf("StoreEvent(%s): %v", ev.ID, err)
		}
	}
}

func claim(t testing.TB, s storage.Store, owner string, now, leaseUntil time.Time, limit int) []storage.OutboxEvent {
	t.Helper()
	evs, err := s.ClaimEvents(context.Background(), owner, now, leaseUntil, limit)
	if err != nil {
		t.Fatalf("ClaimEvents(%s, limit %d): %v", owner, limit, err)
	}
	if len(evs) > limit {
		t.Fatalf("ClaimEvents(%s, limit %d): %d events", owner, limit, len(evs))
	}
	return evs
}

func eventIDs(evs []storage.OutboxEvent) []string {
	ids := make([]string, len(evs))
	for i, ev := range evs {
		ids[i] = ev.ID
	}
	return ids
}

func wantIDsOf(evs ...*storage.OutboxEvent) []string {
	ids := make([]string, len(evs))
	for i, ev := range evs {
		ids[i] = ev.ID
	}
	return ids
}

// wantClaimed claims for owner and asserts it gets exactly want, in order.
func wantClaimed(t testing.TB, s storage.Store, owner string, now, leaseUntil time.Time, want ...*storage.OutboxEvent) []storage.OutboxEvent {
	t.Helper()
	got := claim(t, s, owner, now, leaseUntil, 100)
	if !slices.Equal(eventIDs(got), wantIDsOf(want...)) {
		t.Fatalf("ClaimEvents(%s) = %q, want %q", owner, eventIDs(got), wantIDsOf(want...))
	}
	return got
}

// wantEvent asserts that got is want as stored, in state with attempts
// and lastErr.
func wantEvent(t testing.TB, got storage.OutboxEvent, want *storage.OutboxEvent, state string, attempts int, lastErr string) {
	t.Helper()
	if got.ID != want.ID || got.EnrollmentID != want.EnrollmentID || got.Topic != want.Topic {
		t.Fatalf("event = {ID %q, EnrollmentID %q, Topic %q}, want {%q, %q, %q}",
			got.ID, got.EnrollmentID, got.Topic, want.ID, want.EnrollmentID, want.Topic)
	}
	if !bytes.Equal(got.Body, want.Body) {
		t.Fatalf("event %s body not byte-exact:\n got %q\nwant %q", want.ID, got.Body, want.Body)
	}
	if !sameTime(got.CreatedAt, want.CreatedAt) {
		t.Fatalf("event %s CreatedAt = %v, want %v", want.ID, got.CreatedAt, want.CreatedAt)
	}
	if got.State != state || got.Attempts != attempts || got.LastError != lastErr {
		t.Fatalf("event %s = {State %q, Attempts %d, LastError %q}, want {%q, %d, %q}",
			want.ID, got.State, got.Attempts, got.LastError, state, attempts, lastErr)
	}
}

func mustComplete(t testing.TB, s storage.Store, ev *storage.OutboxEvent, owner string) {
	t.Helper()
	if err := s.CompleteEvent(context.Background(), ev.ID, owner); err != nil {
		t.Fatalf("CompleteEvent(%s, %s): %v", ev.ID, owner, err)
	}
}

func mustSetAside(t testing.TB, s storage.Store, ev *storage.OutboxEvent, owner string, attempts int, lastErr string) {
	t.Helper()
	if err := s.SetAsideEvent(context.Background(), ev.ID, owner, attempts, lastErr); err != nil {
		t.Fatalf("SetAsideEvent(%s, %s): %v", ev.ID, owner, err)
	}
}

// listEvents lists every event in state, page by page with limit, and
// checks the pagination contract.
func listEvents(t testing.TB, s storage.Store, state string, limit int) (evs []storage.OutboxEvent, pages int) {
	t.Helper()
	cursor := ""
	seen := make(map[string]bool)
	for {
		page, next, err := s.ListEvents(context.Background(), state, storage.Page{Cursor: cursor, Limit: limit})
		if err != nil {
			t.Fatalf("ListEvents(%s, cursor %q, limit %d): %v", state, cursor, limit, err)
		}
		pages++
		if len(page) > limit {
			t.Fatalf("ListEvents(%s): %d events, limit %d", state, len(page), limit)
		}
		for _, ev := range page {
			if seen[ev.ID] {
				t.Fatalf("ListEvents(%s): %s listed twice", state, ev.ID)
			}
			if ev.State != state {
				t.Fatalf("ListEvents(%s): %s has state %q", state, ev.ID, ev.State)
			}
			seen[ev.ID] = true
			evs = append(evs, ev)
		}
		if next == "" {
			return evs, pages
		}
		if len(page) == 0 {
			t.Fatalf("ListEvents(%s): empty page with next cursor %q", state, next)
		}
		if pages > 100 {
			t.Fatalf("ListEvents(%s): more than 100 pages", state)
		}
		cursor = next
	}
}

func wantListed(t testing.TB, s storage.Store, state string, want ...*storage.OutboxEvent) []storage.OutboxEvent {
	t.Helper()
	got, _ := listEvents(t, s, state, 100)
	if !slices.Equal(eventIDs(got), wantIDsOf(want...)) {
		t.Fatalf("ListEvents(%s) = %q, want %q", state, eventIDs(got), wantIDsOf(want...))
	}
	return got
}

func wantStats(t testing.TB, s storage.Store, pending, failed int, oldest time.Time) {
	t.Helper()
	st, err := s.OutboxStats(context.Background())
	if err != nil {
		t.Fatalf("OutboxStats: %v", err)
	}
	if st.Pending != pending || st.Failed != failed {
		t.Fatalf("OutboxStats = %d pending, %d failed; want %d, %d", st.Pending, st.Failed, pending, failed)
	}
	if oldest.IsZero() != st.OldestPending.IsZero() || (!oldest.IsZero() && !sameTime(st.OldestPending, oldest)) {
		t.Fatalf("OutboxStats.OldestPending = %v, want %v", st.OldestPending, oldest)
	}
}

// testOutboxRoundTrip: a stored event comes back whole from ClaimEvents
// and ListEvents, and CompleteEvent deletes it.
func testOutboxRoundTrip(t *testing.T, s storage.Store) {
	ev := newEvent(newEnrollmentID(), "mdm.Connect", time.Now().Add(-time.Minute))
	mustStoreEvents(t, s, ev)
	listed := wantListed(t, s, storage.OutboxPending, ev)
	wantEvent(t, listed[0], ev, storage.OutboxPending, 0, "")
	wantListed(t, s, storage.OutboxFailed)

	now := time.Now()
	got := wantClaimed(t, s, "owner-1", now, now.Add(time.Minute), ev)
	wantEvent(t, got[0], ev, storage.OutboxPending, 0, "")
	mustComplete(t, s, ev, "owner-1")
	wantListed(t, s, storage.OutboxPending)
	wantClaimed(t, s, "owner-2", now.Add(time.Hour), now.Add(2*time.Hour))
	if err := s.CompleteEvent(context.Background(), ev.ID, "owner-1"); !errors.Is(err, storage.ErrLeaseLost) {
		t.Fatalf("CompleteEvent of a completed event: %v, want ErrLeaseLost", err)
	}
}

// testOutboxPerEnrollmentOrder: an enrollment's events go one at a time,
// oldest first; other enrollments' do not wait on it.
func testOutboxPerEnrollmentOrder(t *testing.T, s storage.Store) {
	a, b := newEnrollmentID(), newEnrollmentID()
	e1 := newEvent(a, "mdm.Authenticate", time.Time{})
	e2 := newEvent(a, "mdm.TokenUpdate", time.Time{})
	f1 := newEvent(b, "mdm.Authenticate", time.Time{})
	mustStoreEvents(t, s, e1, e2, f1)

	now := time.Now()
	lease := now.Add(time.Minute)
	got := wantClaimed(t, s, "owner-1", now, lease, e1, f1)
	wantEvent(t, got[0], e1, storage.OutboxPending, 0, "")
	wantEvent(t, got[1], f1, storage.OutboxPending, 0, "")
	// e1's lease runs: e2 waits, and no one gets e1 or f1 twice.
	wantClaimed(t, s, "owner-2", now.Add(time.Second), lease)
	mustComplete(t, s, f1, "owner-1")
	wantClaimed(t, s, "owner-2", now.Add(time.Second), lease)

	mustComplete(t, s, e1, "owner-1")
	got = wantClaimed(t, s, "owner-2", now.Add(time.Second), lease, e2)
	wantEvent(t, got[0], e2, storage.OutboxPending, 0, "")
	mustComplete(t, s, e2, "owner-2")
	wantClaimed(t, s, "owner-2", now.Add(time.Second), lease)
}

// testOutboxRetry: a retried event is not due before its next attempt,
// holds back its enrollment's later events until then, and comes back
// with its attempts and last error.
func testOutboxRetry(t *testing.T, s storage.Store) {
	a, b := newEnrollmentID(), newEnrollmentID()
	e1 := newEvent(a, "mdm.Connect", time.Time{})
	e2 := newEvent(a, "mdm.Connect", time.Time{})
	f1 := newEvent(b, "mdm.Connect", time.Time{})
	mustStoreEvents(t, s, e1, e2)

	now := time.Now()
	wantClaimed(t, s, "owner-1", now, now.Add(time.Minute), e1)
	next := now.Add(time.Hour)
	if err := s.RetryEvent(context.Background(), e1.ID, "owner-1", 1, next, "connection refused"); err != nil {
		t.Fatalf("RetryEvent: %v", err)
	}
	mustStoreEvents(t, s, f1)
	// Not due: e1 waits, e2 waits behind it, b's event goes.
	wantClaimed(t, s, "owner-2", now, now.Add(time.Minute), f1)
	mustComplete(t, s, f1, "owner-2")
	wantClaimed(t, s, "owner-2", next.Add(-time.Second), next.Add(time.Minute))
	listed := wantListed(t, s, storage.OutboxPending, e1, e2)
	wantEvent(t, listed[0], e1, storage.OutboxPending, 1, "connection refused")
	if !sameTime(listed[0].NextAttemptAt, next) {
		t.Fatalf("NextAttemptAt after RetryEvent = %v, want %v", listed[0].NextAttemptAt, next)
	}

	// Due: the claim was released, so any owner gets it, attempts kept.
	got := wantClaimed(t, s, "owner-2", next.Add(time.Second), next.Add(time.Minute), e1)
	wantEvent(t, got[0], e1, storage.OutboxPending, 1, "connection refused")
	if err := s.RetryEvent(context.Background(), e1.ID, "owner-2", 2, next.Add(time.Minute), "timeout"); err != nil {
		t.Fatalf("RetryEvent: %v", err)
	}
	wantClaimed(t, s, "owner-3", next.Add(30*time.Second), next.Add(time.Hour))
	got = wantClaimed(t, s, "owner-3", next.Add(2*time.Minute), next.Add(time.Hour), e1)
	wantEvent(t, got[0], e1, storage.OutboxPending, 2, "timeout")
	mustComplete(t, s, e1, "owner-3")
	got = wantClaimed(t, s, "owner-3", next.Add(2*time.Minute), next.Add(time.Hour), e2)
	wantEvent(t, got[0], e2, storage.OutboxPending, 0, "")
}

// testOutboxLeaseExpiry: a claim whose lease ran out goes to the next
// claimer, and the first owner's outcome is refused.
func testOutboxLeaseExpiry(t *testing.T, s storage.Store) {
	ctx := context.Background()
	a := newEnrollmentID()
	e1 := newEvent(a, "mdm.Connect", time.Time{})
	e2 := newEvent(a, "mdm.Connect", time.Time{})
	mustStoreEvents(t, s, e1, e2)

	now := time.Now()
	lease := now.Add(time.Minute)
	wantClaimed(t, s, "owner-1", now, lease, e1)
	wantClaimed(t, s, "owner-2", lease.Add(-time.Second), lease.Add(time.Minute))
	wantClaimed(t, s, "owner-2", lease.Add(time.Second), lease.Add(time.Hour), e1)

	if err := s.CompleteEvent(ctx, e1.ID, "owner-1"); !errors.Is(err, storage.ErrLeaseLost) {
		t.Fatalf("CompleteEvent by the expired owner: %v, want ErrLeaseLost", err)
	}
	if err := s.RetryEvent(ctx, e1.ID, "owner-1", 1, now, "x"); !errors.Is(err, storage.ErrLeaseLost) {
		t.Fatalf("RetryEvent by the expired owner: %v, want ErrLeaseLost", err)
	}
	if err := s.SetAsideEvent(ctx, e1.ID, "owner-1", 1, "x"); !errors.Is(err, storage.ErrLeaseLost) {
		t.Fatalf("SetAsideEvent by the expired owner: %v, want ErrLeaseLost", err)
	}
	// Nothing owner-1 tried stuck: owner-2 still holds e1, as stored.
	listed := wantListed(t, s, storage.OutboxPending, e1, e2)
	wantEvent(t, listed[0], e1, storage.OutboxPending, 0, "")
	wantClaimed(t, s, "owner-3", lease.Add(2*time.Second), lease.Add(time.Hour))
	mustComplete(t, s, e1, "owner-2")
	wantClaimed(t, s, "owner-3", lease.Add(2*time.Second), lease.Add(time.Hour), e2)
}

// testOutboxLeaseLost: outcomes for an event the caller never claimed, or
// that was dropped, or that is unknown, fail with ErrLeaseLost and change
// nothing.
func testOutboxLeaseLost(t *testing.T, s storage.Store) {
	ctx := context.Background()
	ev := newEvent(newEnrollmentID(), "mdm.Connect", time.Time{})
	mustStoreEvents(t, s, ev)
	outcomes := func(id, owner string) {
		t.Helper()
		if err := s.CompleteEvent(ctx, id, owner); !errors.Is(err, storage.ErrLeaseLost) {
			t.Fatalf("CompleteEvent(%s, %s): %v, want ErrLeaseLost", id, owner, err)
		}
		if err := s.RetryEvent(ctx, id, owner, 1, time.Now().Add(time.Hour), "x"); !errors.Is(err, storage.ErrLeaseLost) {
			t.Fatalf("RetryEvent(%s, %s): %v, want ErrLeaseLost", id, owner, err)
		}
		if err := s.SetAsideEvent(ctx, id, owner, 1, "x"); !errors.Is(err, storage.ErrLeaseLost) {
			t.Fatalf("SetAsideEvent(%s, %s): %v, want ErrLeaseLost", id, owner, err)
		}
	}
	outcomes(ev.ID, "owner-1") // never claimed
	outcomes(NewUUID(), "owner-1")
	now := time.Now()
	got := wantClaimed(t, s, "owner-1", now, now.Add(time.Minute), ev)
	wantEvent(t, got[0], ev, storage.OutboxPending, 0, "")
	outcomes(ev.ID, "owner-2") // claimed by someone else
	listed := wantListed(t, s, storage.OutboxPending, ev)
	wantEvent(t, listed[0], ev, storage.OutboxPending, 0, "")
	if err := s.DropEvent(ctx, ev.ID); err != nil {
		t.Fatalf("DropEvent: %v", err)
	}
	outcomes(ev.ID, "owner-1") // dropped while claimed
	wantListed(t, s, storage.OutboxPending)
	wantListed(t, s, storage.OutboxFailed)
}

// testOutboxSetAside: a set-aside event is kept as failed, not delivered,
// and no longer holds back its enrollment.
func testOutboxSetAside(t *testing.T, s storage.Store) {
	a := newEnrollmentID()
	e1 := newEvent(a, "mdm.SetBootstrapToken", time.Now().Add(-2*time.Minute))
	e2 := newEvent(a, "mdm.Connect", time.Now().Add(-time.Minute))
	mustStoreEvents(t, s, e1, e2)
	now := time.Now()
	wantClaimed(t, s, "owner-1", now, now.Add(time.Minute), e1)
	mustSetAside(t, s, e1, "owner-1", 3, "HTTP 500")

	failed := wantListed(t, s, storage.OutboxFailed, e1)
	wantEvent(t, failed[0], e1, storage.OutboxFailed, 3, "HTTP 500")
	wantListed(t, s, storage.OutboxPending, e2)
	wantStats(t, s, 1, 1, e2.CreatedAt)
	got := wantClaimed(t, s, "owner-1", now, now.Add(time.Minute), e2)
	wantEvent(t, got[0], e2, storage.OutboxPending, 0, "")
	mustComplete(t, s, e2, "owner-1")
	// Even long after, a failed event is never claimed again.
	wantClaimed(t, s, "owner-2", now.Add(24*time.Hour), now.Add(25*time.Hour))
	wantListed(t, s, storage.OutboxFailed, e1)
	if err := s.CompleteEvent(context.Background(), e1.ID, "owner-1"); !errors.Is(err, storage.ErrLeaseLost) {
		t.Fatalf("CompleteEvent of a set-aside event: %v, want ErrLeaseLost", err)
	}
}

// testOutboxRedeliver: a redelivered event is pending again, due at once,
// with no attempts, ahead of its enrollment's later events.
func testOutboxRedeliver(t *testing.T, s storage.Store) {
	ctx := context.Background()
	a, b := newEnrollmentID(), newEnrollmentID()
	e1 := newEvent(a, "mdm.SetBootstrapToken", time.Time{})
	e2 := newEvent(a, "mdm.Connect", time.Time{})
	e3 := newEvent(a, "mdm.Connect", time.Time{})
	f1 := newEvent(b, "mdm.Connect", time.Time{})
	mustStoreEvents(t, s, e1, e2, e3, f1)
	now := time.Now()
	wantClaimed(t, s, "owner-1", now, now.Add(time.Minute), e1, f1)
	mustSetAside(t, s, e1, "owner-1", 4, "HTTP 400")
	wantClaimed(t, s, "owner-1", now, now.Add(time.Minute), e2)
	mustComplete(t, s, e2, "owner-1")

	if err := s.RedeliverEvent(ctx, e1.ID); err != nil {
		t.Fatalf("RedeliverEvent: %v", err)
	}
	wantListed(t, s, storage.OutboxFailed)
	wantListed(t, s, storage.OutboxPending, e1, e3, f1)
	now = time.Now()
	got := wantClaimed(t, s, "owner-2", now, now.Add(time.Minute), e1)
	if got[0].State != storage.OutboxPending || got[0].Attempts != 0 {
		t.Fatalf("redelivered event: State %q, Attempts %d; want pending, 0", got[0].State, got[0].Attempts)
	}
	mustComplete(t, s, e1, "owner-2")
	wantClaimed(t, s, "owner-2", now, now.Add(time.Minute), e3)

	for _, id := range []string{e3.ID, NewUUID()} { // pending, unknown
		if err := s.RedeliverEvent(ctx, id); !errors.Is(err, storage.ErrNotFound) {
			t.Fatalf("RedeliverEvent(%s): %v, want ErrNotFound", id, err)
		}
	}
}

// testOutboxDrop: DropEvent deletes an event in any state.
func testOutboxDrop(t *testing.T, s storage.Store) {
	ctx := context.Background()
	a := newEnrollmentID()
	e1 := newEvent(a, "mdm.Connect", time.Time{})
	e2 := newEvent(a, "mdm.Connect", time.Time{})
	e3 := newEvent(a, "mdm.Connect", time.Time{})
	mustStoreEvents(t, s, e1, e2, e3)
	now := time.Now()
	wantClaimed(t, s, "owner-1", now, now.Add(time.Minute), e1)
	mustSetAside(t, s, e1, "owner-1", 1, "HTTP 403")
	for _, ev := range []*storage.OutboxEvent{e1, e2} { // failed, pending
		if err := s.DropEvent(ctx, ev.ID); err != nil {
			t.Fatalf("DropEvent(%s): %v", ev.ID, err)
		}
		if err := s.DropEvent(ctx, ev.ID); !errors.Is(err, storage.ErrNotFound) {
			t.Fatalf("DropEvent(%s) again: %v, want ErrNotFound", ev.ID, err)
		}
	}
	if err := s.DropEvent(ctx, NewUUID()); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("DropEvent(unknown): %v, want ErrNotFound", err)
	}
	wantListed(t, s, storage.OutboxFailed)
	wantListed(t, s, storage.OutboxPending, e3)
	if err := s.RedeliverEvent(ctx, e1.ID); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("RedeliverEvent of a dropped event: %v, want ErrNotFound", err)
	}
	wantClaimed(t, s, "owner-1", now, now.Add(time.Minute), e3)
}

// testOutboxRelease: ReleaseEvents hands an owner's claims back at once,
// and only that owner's.
func testOutboxRelease(t *testing.T, s storage.Store) {
	ctx := context.Background()
	e1 := newEvent(newEnrollmentID(), "mdm.Connect", time.Time{})
	f1 := newEvent(newEnrollmentID(), "mdm.Connect", time.Time{})
	g1 := newEvent(newEnrollmentID(), "mdm.Connect", time.Time{})
	mustStoreEvents(t, s, e1, f1)
	now := time.Now()
	lease := now.Add(time.Hour)
	wantClaimed(t, s, "owner-1", now, lease, e1, f1)
	mustStoreEvents(t, s, g1)
	wantClaimed(t, s, "owner-2", now, lease, g1)
	wantClaimed(t, s, "owner-3", now, lease)

	if err := s.ReleaseEvents(ctx, "owner-1"); err != nil {
		t.Fatalf("ReleaseEvents: %v", err)
	}
	if err := s.ReleaseEvents(ctx, "owner-4"); err != nil { // holds nothing
		t.Fatalf("ReleaseEvents(owner without claims): %v", err)
	}
	got := wantClaimed(t, s, "owner-3", now, lease, e1, f1)
	wantEvent(t, got[0], e1, storage.OutboxPending, 0, "")
	if err := s.CompleteEvent(ctx, e1.ID, "owner-1"); !errors.Is(err, storage.ErrLeaseLost) {
		t.Fatalf("CompleteEvent after ReleaseEvents: %v, want ErrLeaseLost", err)
	}
	mustComplete(t, s, g1, "owner-2")
	mustComplete(t, s, e1, "owner-3")
	mustComplete(t, s, f1, "owner-3")
}

// testOutboxListPaging: ListEvents pages each state oldest first.
func testOutboxListPaging(t *testing.T, s storage.Store) {
	ctx := context.Background()
	base := time.Now().Add(-time.Hour)
	evs := make([]*storage.OutboxEvent, 5)
	for i := range evs {
		evs[i] = newEvent(newEnrollmentID(), "mdm.Connect", base.Add(time.Duration(i)*time.Minute))
	}
	mustStoreEvents(t, s, evs...)
	now := time.Now()
	wantClaimed(t, s, "owner-1", now, now.Add(time.Minute), evs...)
	failed := []*storage.OutboxEvent{evs[0], evs[2], evs[3]}
	for _, ev := range failed {
		mustSetAside(t, s, ev, "owner-1", 2, "HTTP 422")
	}
	if err := s.ReleaseEvents(ctx, "owner-1"); err != nil {
		t.Fatalf("ReleaseEvents: %v", err)
	}

	all, next, err := s.ListEvents(ctx, storage.OutboxFailed, storage.Page{Limit: 3})
	if err != nil {
		t.Fatalf("ListEvents(failed, limit 3): %v", err)
	}
	if !slices.Equal(eventIDs(all), wantIDsOf(failed...)) || next != "" {
		t.Fatalf("ListEvents(failed, limit 3) = %q, next %q; want %q and no next page", eventIDs(all), next, wantIDsOf(failed...))
	}
	for i, ev := range all {
		wantEvent(t, ev, failed[i], storage.OutboxFailed, 2, "HTTP 422")
	}
	for limit, wantPages := range map[int]int{1: 3, 2: 2} {
		got, pages := listEvents(t, s, storage.OutboxFailed, limit)
		if !slices.Equal(eventIDs(got), wantIDsOf(failed...)) || pages != wantPages {
			t.Fatalf("ListEvents(failed, limit %d) = %q in %d pages; want %q in %d", limit, eventIDs(got), pages, wantIDsOf(failed...), wantPages)
		}
	}
	pending, pages := listEvents(t, s, storage.OutboxPending, 1)
	if !slices.Equal(eventIDs(pending), wantIDsOf(evs[1], evs[4])) || pages != 2 {
		t.Fatalf("ListEvents(pending, limit 1) = %q in %d pages; want %q in 2", eventIDs(pending), pages, wantIDsOf(evs[1], evs[4]))
	}
	wantEvent(t, pending[1], evs[4], storage.OutboxPending, 0, "")

	for _, cursor := range []string{"!!not a cursor!!", "%%%"} {
		if _, _, err := s.ListEvents(ctx, storage.OutboxFailed, storage.Page{Cursor: cursor, Limit: 2}); !errors.Is(err, storage.ErrBadCursor) {
			t.Errorf("ListEvents(cursor %q): %v, want ErrBadCursor", cursor, err)
		}
	}
}

// testOutboxStats: OutboxStats counts by state and dates the oldest
// pending event.
func testOutboxStats(t *testing.T, s storage.Store) {
	wantStats(t, s, 0, 0, time.Time{})
	base := time.Now().Add(-time.Hour)
	a := newEnrollmentID()
	e1 := newEvent(a, "mdm.Connect", base)
	e2 := newEvent(a, "mdm.Connect", base.Add(time.Minute))
	f1 := newEvent(newEnrollmentID(), "mdm.Connect", base.Add(2*time.Minute))
	mustStoreEvents(t, s, e1, e2, f1)
	wantStats(t, s, 3, 0, e1.CreatedAt)
	now := time.Now()
	wantClaimed(t, s, "owner-1", now, now.Add(time.Minute), e1, f1)
	wantStats(t, s, 3, 0, e1.CreatedAt) // claimed events are pending
	mustSetAside(t, s, e1, "owner-1", 1, "HTTP 500")
	wantStats(t, s, 2, 1, e2.CreatedAt)
	mustComplete(t, s, f1, "owner-1")
	wantStats(t, s, 1, 1, e2.CreatedAt)
	if err := s.DropEvent(context.Background(), e2.ID); err != nil {
		t.Fatalf("DropEvent: %v", err)
	}
	wantStats(t, s, 0, 1, time.Time{})
}

// testOutboxTrim: TrimOutbox drops failed events past the age cut, then
// the oldest failed, then the oldest pending beyond the count bound.
func testOutboxTrim(t *testing.T, s storage.Store) {
	ctx := context.Background()
	base := time.Now().Add(-10 * time.Hour)
	at := func(h int) time.Time { return base.Add(time.Duration(h) * time.Hour) }
	f1 := newEvent(newEnrollmentID(), "mdm.Connect", at(0))
	f2 := newEvent(newEnrollmentID(), "mdm.Connect", at(1))
	f3 := newEvent(newEnrollmentID(), "mdm.Connect", at(2))
	p1 := newEvent(newEnrollmentID(), "mdm.Connect", at(3))
	p2 := newEvent(newEnrollmentID(), "mdm.Connect", at(4))
	p3 := newEvent(newEnrollmentID(), "mdm.Connect", at(5))
	mustStoreEvents(t, s, f1, f2, f3)
	now := time.Now()
	wantClaimed(t, s, "owner-1", now, now.Add(time.Minute), f1, f2, f3)
	for _, ev := range []*storage.OutboxEvent{f1, f2, f3} {
		mustSetAside(t, s, ev, "owner-1", 1, "HTTP 500")
	}
	mustStoreEvents(t, s, p1, p2, p3)

	trim := func(maxEvents int, failedBefore time.Time, want int) {
		t.Helper()
		n, err := s.TrimOutbox(ctx, maxEvents, failedBefore)
		if err != nil {
			t.Fatalf("TrimOutbox(%d, %v): %v", maxEvents, failedBefore, err)
		}
		if n != want {
			t.Fatalf("TrimOutbox(%d, %v) deleted %d, want %d", maxEvents, failedBefore, n, want)
		}
	}
	trim(0, time.Time{}, 0)
	trim(10, at(0).Add(-time.Minute), 0)
	trim(6, at(1).Add(30*time.Minute), 2) // f1, f2 by age; 6 events fit
	wantListed(t, s, storage.OutboxFailed, f3)
	wantListed(t, s, storage.OutboxPending, p1, p2, p3)
	trim(3, time.Time{}, 1) // f3 first: failed events go before pending ones
	wantListed(t, s, storage.OutboxFailed)
	wantListed(t, s, storage.OutboxPending, p1, p2, p3)
	trim(3, time.Time{}, 0)
	trim(1, time.Now(), 2) // the oldest pending ones; pending events have no age cut
	wantListed(t, s, storage.OutboxPending, p3)
	wantStats(t, s, 1, 0, p3.CreatedAt)
	trim(-1, time.Now(), 0)
}

// testOutboxClaimLimit: ClaimEvents returns at most limit events, the
// oldest, and the next claim the next oldest.
func testOutboxClaimLimit(t *testing.T, s storage.Store) {
	evs := make([]*storage.OutboxEvent, 5)
	for i := range evs {
		evs[i] = newEvent(newEnrollmentID(), "mdm.Connect", time.Time{})
	}
	mustStoreEvents(t, s, evs...)
	now := time.Now()
	lease := now.Add(time.Minute)
	for _, want := range [][]*storage.OutboxEvent{evs[0:2], evs[2:4]} {
		got := claim(t, s, "owner-1", now, lease, 2)
		if !slices.Equal(eventIDs(got), wantIDsOf(want...)) {
			t.Fatalf("ClaimEvents(limit 2) = %q, want %q", eventIDs(got), wantIDsOf(want...))
		}
	}
	if got := claim(t, s, "owner-1", now, lease, 1); !slices.Equal(eventIDs(got), wantIDsOf(evs[4])) {
		t.Fatalf("ClaimEvents(limit 1) = %q, want %q", eventIDs(got), evs[4].ID)
	}
	wantClaimed(t, s, "owner-1", now, lease)
}

// testOutboxOldestFirst: across many enrollments a claim returns each
// one's oldest pending event, in store order (not in enrollment ID order).
func testOutboxOldestFirst(t *testing.T, s storage.Store) {
	const enrollments, perEnrollment = 12, 3
	ids := make([]string, enrollments)
	for i := range ids {
		ids[i] = newEnrollmentID()
	}
	// Stored round-robin, so the k-th claim round gets the k-th event of
	// every enrollment, in the order the enrollments were first used.
	rounds := make([][]*storage.OutboxEvent, perEnrollment)
	for k := range rounds {
		for _, id := range ids {
			ev := newEvent(id, "mdm.Connect", time.Time{})
			mustStoreEvents(t, s, ev)
			rounds[k] = append(rounds[k], ev)
		}
	}
	now := time.Now()
	for k, want := range rounds {
		owner := fmt.Sprintf("owner-%d", k)
		got := wantClaimed(t, s, owner, now, now.Add(time.Minute), want...)
		for i, ev := range got {
			wantEvent(t, ev, want[i], storage.OutboxPending, 0, "")
			mustComplete(t, s, want[i], owner)
		}
	}
	wantClaimed(t, s, "owner-last", now, now.Add(time.Minute))
}

// testOutboxConcurrentClaims: claimers racing over one outbox deliver
// every event exactly once, each enrollment's in order.
func testOutboxConcurrentClaims(t *testing.T, s storage.Store) {
	const (
		claimers      = 8
		enrollments   = 40
		perEnrollment = 5
		total         = enrollments * perEnrollment
	)
	ctx := context.Background()
	type origin struct {
		enrollment string
		index      int
	}
	ids := make([]string, enrollments)
	for e := range ids {
		ids[e] = newEnrollmentID()
	}
	origins := make(map[string]origin, total)
	for k := range perEnrollment {
		for _, id := range ids {
			ev := newEvent(id, "mdm.Connect", time.Time{})
			mustStoreEvents(t, s, ev)
			origins[ev.ID] = origin{ev.EnrollmentID, k}
		}
	}

	var (
		mu        sync.Mutex
		delivered = make(map[string]int)
		lastIndex = make(map[string]int)
		errs      []error
	)
	fail := func(err error) {
		mu.Lock()
		errs = append(errs, err)
		mu.Unlock()
	}
	done := func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(delivered) == total || len(errs) > 0
	}
	deadline := time.Now().Add(60 * time.Second)
	var wg sync.WaitGroup
	for c := range claimers {
		owner := fmt.Sprintf("claimer-%d", c)
		wg.Go(func() {
			for !done() {
				if time.Now().After(deadline) {
					fail(errors.New("deadline passed before every event was delivered"))
					return
				}
				now := time.Now()
				evs, err := s.ClaimEvents(ctx, owner, now, now.Add(time.Minute), 3)
				if err != nil {
					fail(fmt.Errorf("ClaimEvents(%s): %w", owner, err))
					return
				}
				for _, ev := range evs {
					o, ok := origins[ev.ID]
					mu.Lock()
					switch {
					case !ok:
						errs = append(errs, fmt.Errorf("claimed unknown event %s", ev.ID))
					case delivered[ev.ID] > 0:
						errs = append(errs, fmt.Errorf("event %s claimed twice (by %s)", ev.ID, owner))
					default:
						if last, seen := lastIndex[o.enrollment]; (seen && o.index != last+1) || (!seen && o.index != 0) {
							errs = append(errs, fmt.Errorf("%s: event %d claimed after event %d", o.enrollment, o.index, last))
						}
						lastIndex[o.enrollment] = o.index
					}
					delivered[ev.ID]++
					mu.Unlock()
					if err := s.CompleteEvent(ctx, ev.ID, owner); err != nil {
						fail(fmt.Errorf("CompleteEvent(%s, %s): %w", ev.ID, owner, err))
						return
					}
				}
			}
		})
	}
	wg.Wait()
	for _, err := range errs {
		t.Error(err)
	}
	if len(delivered) != total {
		t.Fatalf("%d of %d events delivered", len(delivered), total)
	}
	wantStats(t, s, 0, 0, time.Time{})
}

// RunLease runs the storage.LeaseStore conformance tests against store,
// each behaviour as its own subtest. Every subtest uses lease names of its
// own, so it may run more than once against one store.
func RunLease(t *testing.T, store storage.Store) {
	t.Run("AcquireRelease", func(t *testing.T) { testLeaseAcquireRelease(t, store) })
	t.Run("Concurrent", func(t *testing.T) { testLeaseConcurrent(t, store) })
}

func wantAcquire(t testing.TB, s storage.Store, name, owner string, now, until time.Time, want bool) {
	t.Helper()
	got, err := s.AcquireLease(context.Background(), name, owner, now, until)
	if err != nil {
		t.Fatalf("AcquireLease(%s, %s): %v", name, owner, err)
	}
	if got != want {
		t.Fatalf("AcquireLease(%s, %s, now %v, until %v) = %v, want %v", name, owner, now, until, got, want)
	}
}

func mustRelease(t testing.TB, s storage.Store, name, owner string) {
	t.Helper()
	if err := s.ReleaseLease(context.Background(), name, owner); err != nil {
		t.Fatalf("ReleaseLease(%s, %s): %v", name, owner, err)
	}
}

// testLeaseAcquireRelease: a lease is held by one owner at a time, until
// it expires or is released; its owner extends it.
func testLeaseAcquireRelease(t *testing.T, s storage.Store) {
	name, other := "storagetest-"+NewUUID(), "storagetest-"+NewUUID()
	now := time.Now()
	min := func(m int) time.Time { return now.Add(time.Duration(m) * time.Minute) }
	wantAcquire(t, s, name, "owner-1", now, min(1), true)
	wantAcquire(t, s, other, "owner-2", now, min(1), true) // names are independent
	wantAcquire(t, s, name, "owner-2", now.Add(30*time.Second), min(2), false)
	wantAcquire(t, s, name, "owner-1", now.Add(30*time.Second), min(3), true) // extended to 3
	wantAcquire(t, s, name, "owner-2", min(2), min(4), false)
	wantAcquire(t, s, name, "owner-2", min(3).Add(time.Second), min(5), true) // expired
	wantAcquire(t, s, name, "owner-1", min(4), min(6), false)

	mustRelease(t, s, name, "owner-1") // not the holder: nothing
	wantAcquire(t, s, name, "owner-1", min(4), min(6), false)
	mustRelease(t, s, name, "owner-2")
	wantAcquire(t, s, name, "owner-1", min(4), min(6), true)
	mustRelease(t, s, "storagetest-"+NewUUID(), "owner-1") // unknown lease: nothing
	wantAcquire(t, s, other, "owner-1", now.Add(30*time.Second), min(2), false)
}

// testLeaseConcurrent: owners racing for one free lease: exactly one wins.
func testLeaseConcurrent(t *testing.T, s storage.Store) {
	const owners = 8
	for round := range 5 {
		name := "storagetest-" + NewUUID()
		now := time.Now()
		won := make([]bool, owners)
		errs := make([]error, owners)
		var wg sync.WaitGroup
		for i := range owners {
			wg.Go(func() {
				won[i], errs[i] = s.AcquireLease(context.Background(), name, fmt.Sprintf("owner-%d", i), now, now.Add(time.Minute))
			})
		}
		wg.Wait()
		winners := 0
		for i := range owners {
			if errs[i] != nil {
				t.Fatalf("round %d: AcquireLease(owner-%d): %v", round, i, errs[i])
			}
			if won[i] {
				winners++
			}
		}
		if winners != 1 {
			t.Fatalf("round %d: %d owners acquired one lease, want exactly 1", round, winners)
		}
	}
}
